//! ACL tokens and namespace capabilities (B1 "Token", B16), for `--acl-bootstrap-token`.

use std::collections::{BTreeMap, BTreeSet};

/// A token's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `AccessorID`, written into a registered job's `NomadTokenID`.
    pub accessor: String,
    /// Human name.
    pub name: String,
    /// Management tokens may do anything.
    pub management: bool,
    /// Namespace (or `*`) → capabilities.
    pub namespaces: BTreeMap<String, BTreeSet<String>>,
}

impl Token {
    /// Whether the token has `cap` in namespace `ns`. Policy shorthands `read`/`write` expand as
    /// Nomad's namespace policies do (read: list-jobs, read-job, …; write adds submit-job, scale-job, …).
    pub fn allows(&self, ns: &str, cap: &str) -> bool {
        if self.management {
            return true;
        }
        let caps = self.namespaces.get(ns).or_else(|| self.namespaces.get("*"));
        let Some(caps) = caps else { return false };
        caps.contains(cap)
            || (caps.contains("write") && WRITE.contains(&cap))
            || ((caps.contains("read") || caps.contains("write")) && READ.contains(&cap))
    }

    /// Whether the token has any capability in `ns` (namespace visible in `*` lists).
    pub fn sees(&self, ns: &str) -> bool {
        self.management || self.namespaces.contains_key(ns) || self.namespaces.contains_key("*")
    }
}

const READ: &[&str] =
    &["list-jobs", "parse-job", "read-job", "read-job-scaling", "list-scaling-policies", "read-scaling-policy"];
const WRITE: &[&str] =
    &["submit-job", "dispatch-job", "scale-job", "plan-job", "purge-job", "deregister-job", "alloc-lifecycle"];

/// The token table.
#[derive(Debug, Default)]
pub struct Acl {
    /// Secret → token.
    pub tokens: BTreeMap<String, Token>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// ACLs are disabled: everything is allowed, `NomadTokenID` stays empty.
    Open,
    /// A resolved token (or the anonymous one, which has no rights).
    Token(Token),
}

impl Caller {
    /// `ns`:`cap` allowed.
    pub fn allows(&self, ns: &str, cap: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => t.allows(ns, cap),
        }
    }

    /// Any of `caps` allowed in `ns`.
    pub fn allows_any(&self, ns: &str, caps: &[&str]) -> bool {
        caps.iter().any(|c| self.allows(ns, c))
    }

    /// Management rights.
    pub fn is_management(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => t.management,
        }
    }

    /// The AccessorID to store as `NomadTokenID` (empty with ACLs off).
    pub fn accessor(&self) -> String {
        match self {
            Caller::Open => String::new(),
            Caller::Token(t) => t.accessor.clone(),
        }
    }

    /// Whether a namespace is visible in `*` listings.
    pub fn sees(&self, ns: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => t.sees(ns),
        }
    }
}

/// AccessorID reported for the bootstrap (management) token.
pub const BOOTSTRAP_ACCESSOR: &str = "00000000-0000-0000-0000-000000000001";

/// The anonymous token: no rights (no anonymous policy is modelled).
pub fn anonymous() -> Token {
    Token {
        accessor: "anonymous".into(),
        name: "Anonymous Token".into(),
        management: false,
        namespaces: BTreeMap::new(),
    }
}
