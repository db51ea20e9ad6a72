//! The ACL model: tokens, policies with `key`/`key_prefix` and `session`/`session_prefix` rules, and the
//! authorizer checks the KV, session and txn endpoints make (api-contract.md A1 "Token", "Error mapping",
//! "ACL visibility rules").
//!
//! ACLs are on iff `Shared::acl_bootstrap_token` is set. Then the default policy is **deny** (the usual production
//! setting; `X-Consul-Default-ACL-Policy: deny`), the bootstrap token is a management token, and the anonymous token
//! (no token sent) has no policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::http::go_quote;

/// The anonymous token's AccessorID [C:acl/acl.go].
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// An access level in a rule, as in Consul's policy language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Explicitly denied; wins over everything when policies are merged.
    Deny,
    /// Read only.
    Read,
    /// Read and write.
    Write,
}

impl Access {
    /// Consul's `takesPrecedenceOver` when merging policies: deny > write > read.
    fn rank(self) -> u8 {
        match self {
            Access::Deny => 3,
            Access::Write => 2,
            Access::Read => 1,
        }
    }
}

/// The rules of a policy, as created through `POST /_sim/consul/acl/policy`.
///
/// ```json
/// {"Name": "drover", "Rules": {"key_prefix": {"drover/": "write"}, "key": {"drover/secret": "deny"},
///                              "session_prefix": {"": "write"}, "session": {}}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// `key_prefix "p" { policy = ... }` rules.
    #[serde(default)]
    pub key_prefix: BTreeMap<String, Access>,
    /// Exact `key "k" { policy = ... }` rules; they beat any prefix rule on the same key.
    #[serde(default)]
    pub key: BTreeMap<String, Access>,
    /// `session_prefix "node" { policy = ... }` rules (matched on the session's node name).
    #[serde(default)]
    pub session_prefix: BTreeMap<String, Access>,
    /// Exact `session "node" { policy = ... }` rules.
    #[serde(default)]
    pub session: BTreeMap<String, Access>,
}

impl Rules {
    fn merge(&mut self, other: &Rules) {
        fn merge_map(into: &mut BTreeMap<String, Access>, from: &BTreeMap<String, Access>) {
            for (k, a) in from {
                into.entry(k.clone())
                    .and_modify(|cur| {
                        if a.rank() > cur.rank() {
                            *cur = *a;
                        }
                    })
                    .or_insert(*a);
            }
        }
        merge_map(&mut self.key_prefix, &other.key_prefix);
        merge_map(&mut self.key, &other.key);
        merge_map(&mut self.session_prefix, &other.session_prefix);
        merge_map(&mut self.session, &other.session);
    }
}

/// Longest-match lookup: an exact rule first, then the longest matching prefix rule.
fn lookup(exact: &BTreeMap<String, Access>, prefix: &BTreeMap<String, Access>, name: &str) -> Option<Access> {
    if let Some(a) = exact.get(name) {
        return Some(*a);
    }
    prefix.iter().filter(|(p, _)| name.starts_with(p.as_str())).max_by_key(|(p, _)| p.len()).map(|(_, a)| *a)
}

/// A token as stored by the simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public identifier, shown in denial texts.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// The secret sent in requests.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Names of the policies linked to the token.
    #[serde(rename = "Policies")]
    pub policies: Vec<String>,
}

/// Who a request runs as.
#[derive(Debug, Clone)]
pub enum Identity {
    /// ACLs are disabled: everything is allowed.
    Disabled,
    /// The management (bootstrap) token.
    Management,
    /// A token (or the anonymous token) with its merged rules.
    Token {
        /// Its AccessorID (the anonymous one for requests without a token).
        accessor: String,
        /// The union of its policies' rules.
        rules: Rules,
    },
}

/// The resource class of a denied permission.
#[derive(Debug, Clone, Copy)]
enum Resource {
    Key,
    Session,
}

impl Identity {
    /// True for the anonymous token, whose filtered listings do not get `X-Consul-Results-Filtered-By-ACLs`.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Identity::Token { accessor, .. } if accessor == ANONYMOUS_ACCESSOR)
    }

    fn level(&self, resource: Resource, name: &str) -> Option<Access> {
        match self {
            Identity::Disabled | Identity::Management => Some(Access::Write),
            Identity::Token { rules, .. } => match resource {
                Resource::Key => lookup(&rules.key, &rules.key_prefix, name),
                Resource::Session => lookup(&rules.session, &rules.session_prefix, name),
            },
        }
    }

    fn denied(&self, resource: Resource, access: &str, name: &str) -> ApiError {
        let res = match resource {
            Resource::Key => "key",
            Resource::Session => "session",
        };
        // `PermissionDeniedError.Error()`: the ` on "<name>"` part only for a named resource.
        let on = if name.is_empty() { String::new() } else { format!(" on {}", go_quote(name)) };
        let text = match self {
            Identity::Token { accessor, .. } if accessor == ANONYMOUS_ACCESSOR => format!(
                "Permission denied: anonymous token lacks permission '{res}:{access}'{on}. The anonymous token is \
                 used implicitly when a request does not specify a token."
            ),
            Identity::Token { accessor, .. } => {
                format!("Permission denied: token with AccessorID '{accessor}' lacks permission '{res}:{access}'{on}")
            }
            Identity::Disabled | Identity::Management => {
                format!("Permission denied: token with AccessorID '' lacks permission '{res}:{access}'{on}")
            }
        };
        ApiError::forbidden(text)
    }

    /// Whether the key may be read (default deny when no rule matches).
    pub fn can_read_key(&self, key: &str) -> bool {
        matches!(self.level(Resource::Key, key), Some(Access::Read | Access::Write))
    }

    /// `KeyReadAllowed`.
    pub fn key_read(&self, key: &str) -> Result<(), ApiError> {
        if self.can_read_key(key) { Ok(()) } else { Err(self.denied(Resource::Key, "read", key)) }
    }

    /// `KeyWriteAllowed`.
    pub fn key_write(&self, key: &str) -> Result<(), ApiError> {
        match self.level(Resource::Key, key) {
            Some(Access::Write) => Ok(()),
            _ => Err(self.denied(Resource::Key, "write", key)),
        }
    }

    /// `KeyWritePrefixAllowed`: the longest *prefix* rule covering the prefix grants write, and no rule (exact or
    /// prefix) at or under the prefix grants less than write.
    pub fn key_write_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        let Identity::Token { rules, .. } = self else {
            return Ok(());
        };
        let base = rules
            .key_prefix
            .iter()
            .filter(|(p, _)| prefix.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, a)| *a);
        let below_denies =
            rules.key_prefix.iter().chain(rules.key.iter()).any(|(p, a)| p.starts_with(prefix) && *a != Access::Write);
        if base == Some(Access::Write) && !below_denies {
            Ok(())
        } else {
            Err(self.denied(Resource::Key, "write", prefix))
        }
    }

    /// `SessionReadAllowed` on a node.
    pub fn can_read_session(&self, node: &str) -> bool {
        matches!(self.level(Resource::Session, node), Some(Access::Read | Access::Write))
    }

    /// `SessionWriteAllowed` on a node.
    pub fn session_write(&self, node: &str) -> Result<(), ApiError> {
        match self.level(Resource::Session, node) {
            Some(Access::Write) => Ok(()),
            _ => Err(self.denied(Resource::Session, "write", node)),
        }
    }
}

/// Tokens and policies of one Consul model.
#[derive(Debug, Clone, Default)]
pub struct AclStore {
    /// Policies by name.
    pub policies: BTreeMap<String, Rules>,
    /// Tokens by SecretID.
    pub tokens: BTreeMap<String, Token>,
}

impl AclStore {
    /// Resolves a request's token. `bootstrap` is `Shared::acl_bootstrap_token`; when it is `None` ACLs are off.
    /// An unknown secret is 403 `ACL not found`; an empty one is the anonymous token.
    pub fn resolve(&self, bootstrap: Option<&str>, secret: &str) -> Result<Identity, ApiError> {
        let Some(bootstrap) = bootstrap else {
            return Ok(Identity::Disabled);
        };
        if secret.is_empty() {
            return Ok(Identity::Token { accessor: ANONYMOUS_ACCESSOR.to_owned(), rules: Rules::default() });
        }
        if secret == bootstrap {
            return Ok(Identity::Management);
        }
        let token = self.tokens.get(secret).ok_or_else(|| ApiError::forbidden("ACL not found"))?;
        let mut rules = Rules::default();
        for name in &token.policies {
            if let Some(p) = self.policies.get(name) {
                rules.merge(p);
            }
        }
        Ok(Identity::Token { accessor: token.accessor_id.clone(), rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(rules: Rules) -> Identity {
        Identity::Token { accessor: "acc".into(), rules }
    }

    #[test]
    fn identity_should_apply_longest_prefix_and_exact_rules() {
        let mut r = Rules::default();
        r.key_prefix.insert("".into(), Access::Read);
        r.key_prefix.insert("drover/".into(), Access::Write);
        r.key_prefix.insert("drover/locked/".into(), Access::Deny);
        r.key.insert("drover/locked/open".into(), Access::Write);
        let id = ident(r);
        assert!(id.key_read("other").is_ok());
        assert!(id.key_write("other").is_err());
        assert!(id.key_write("drover/x").is_ok());
        assert!(id.key_read("drover/locked/x").is_err());
        assert!(id.key_write("drover/locked/open").is_ok());
        assert!(id.key_write_prefix("drover/").is_err(), "a deny rule under the prefix forbids a tree delete");
        assert_eq!(
            id.key_write("other").unwrap_err().to_string(),
            "Permission denied: token with AccessorID 'acc' lacks permission 'key:write' on \"other\""
        );
    }
}
