//! The shipped ACL policies (`manifests/acl/*.hcl`) translated into the simulator's token requests, so that the ACL
//! tests run with exactly what an operator installs and break when the files change.
//!
//! The translator reads the HCL subset the policies use, and refuses anything else (a panic naming the file and
//! the token), rather than skipping it:
//! - Consul: `key_prefix "p" { policy = "read" }`, likewise `key`, `session_prefix`, `session`
//!   (<https://developer.hashicorp.com/consul/docs/security/acl/acl-rules>);
//! - Nomad: `namespace "ns" { policy = "read" capabilities = ["list-jobs", …] }`
//!   (<https://developer.hashicorp.com/nomad/docs/other-specifications/acl-policy>).
//!
//! A "rule" is one Consul block or one Nomad capability: [`Rule`] lists them so a test can drop one at a time.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The shipped policies' directory.
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("manifests").join("acl")
}

/// Reads one of the shipped policy files (`consul-drover.hcl`, `nomad-drover.hcl`, …).
pub fn read_policy(name: &str) -> String {
    let path = policy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One rule of a policy, the unit a least-privilege test removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// A Consul block: `kind "name" { policy = "level" }`.
    Consul {
        /// `key_prefix`, `key`, `session_prefix` or `session`.
        kind: String,
        /// The key, prefix or node name.
        name: String,
        /// `read`, `write` or `deny`.
        policy: String,
    },
    /// One Nomad capability (or a `policy = "…"` shorthand) in a namespace.
    Nomad {
        /// The namespace (or `*`).
        namespace: String,
        /// A capability (`submit-job`) or a shorthand (`read`, `write`).
        capability: String,
    },
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Consul { kind, name, policy } => write!(f, "consul {kind} {name:?} {policy}"),
            Rule::Nomad { namespace, capability } => write!(f, "nomad namespace {namespace:?} {capability}"),
        }
    }
}

/// The rules of a Consul policy file, in file order.
pub fn consul_rules(hcl: &str) -> Vec<Rule> {
    parse(hcl)
        .into_iter()
        .map(|block| {
            assert!(
                matches!(block.kind.as_str(), "key_prefix" | "key" | "session_prefix" | "session"),
                "unsupported Consul rule {:?} (the translator knows key, key_prefix, session, session_prefix)",
                block.kind
            );
            let policy = match block.attrs.as_slice() {
                [(name, Value::String(level))] if name == "policy" => level.clone(),
                other => panic!(
                    "Consul rule {:?} {:?}: expected only `policy = \"…\"`, got {other:?}",
                    block.kind, block.label
                ),
            };
            Rule::Consul { kind: block.kind, name: block.label, policy }
        })
        .collect()
}

/// The rules of a Nomad policy file, in file order: each namespace's `policy` shorthand, then its capabilities.
pub fn nomad_rules(hcl: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for block in parse(hcl) {
        assert_eq!(block.kind, "namespace", "unsupported Nomad rule {:?} (the translator knows namespace)", block.kind);
        for (name, value) in block.attrs {
            let caps: Vec<String> = match (name.as_str(), value) {
                ("policy", Value::String(level)) => vec![level],
                ("capabilities", Value::Array(items)) => {
                    items.into_iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
                }
                (other, value) => panic!("Nomad namespace {:?}: unsupported `{other} = {value}`", block.label),
            };
            for capability in caps {
                rules.push(Rule::Nomad { namespace: block.label.clone(), capability });
            }
        }
    }
    rules
}

/// The simulator's Consul policy body for these rules: `{"key_prefix": {"drover/apps/": "read"}, …}`.
pub fn consul_sim_rules(rules: &[Rule]) -> Value {
    let mut out = Map::new();
    for rule in rules {
        if let Rule::Consul { kind, name, policy } = rule {
            let entry = out.entry(kind.clone()).or_insert_with(|| json!({}));
            entry[name.as_str()] = json!(policy);
        }
    }
    Value::Object(out)
}

/// The simulator's Nomad token `namespaces` for these rules: `{"*": ["list-jobs", …]}`.
pub fn nomad_sim_namespaces(rules: &[Rule]) -> Value {
    let mut out = Map::new();
    for rule in rules {
        if let Rule::Nomad { namespace, capability } = rule {
            let caps = out.entry(namespace.clone()).or_insert_with(|| json!([]));
            if let Value::Array(caps) = caps {
                caps.push(json!(capability));
            }
        }
    }
    Value::Object(out)
}

/// One `kind "label" { attr = value … }` block.
#[derive(Debug)]
struct Block {
    kind: String,
    label: String,
    attrs: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' => {
                chars.next();
                assert_eq!(chars.next(), Some('/'), "only `//` comments are supported");
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                        None => panic!("unterminated string in a policy"),
                    }
                }
                toks.push(Tok::Str(s));
            }
            '{' | '}' | '=' | '[' | ']' | ',' => {
                chars.next();
                toks.push(Tok::Punct(c));
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' => {
                let mut s = String::new();
                while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || *c == '_' || *c == '-') {
                    s.push(c);
                }
                toks.push(Tok::Ident(s));
            }
            other => panic!("unexpected character {other:?} in a policy"),
        }
    }
    toks
}

fn parse(text: &str) -> Vec<Block> {
    let mut toks = tokenize(text).into_iter().peekable();
    let mut blocks = Vec::new();
    while let Some(tok) = toks.next() {
        let Tok::Ident(kind) = tok else { panic!("expected a rule name, got {tok:?}") };
        let Some(Tok::Str(label)) = toks.next() else { panic!("rule {kind}: expected a quoted name") };
        assert_eq!(toks.next(), Some(Tok::Punct('{')), "rule {kind} {label:?}: expected `{{`");
        let mut attrs = Vec::new();
        loop {
            match toks.next() {
                Some(Tok::Punct('}')) => break,
                Some(Tok::Ident(name)) => {
                    assert_eq!(toks.next(), Some(Tok::Punct('=')), "{kind} {label:?}: expected `=` after {name}");
                    let value = match toks.next() {
                        Some(Tok::Str(s)) => Value::String(s),
                        Some(Tok::Punct('[')) => {
                            let mut items = Vec::new();
                            loop {
                                match toks.next() {
                                    Some(Tok::Punct(']')) => break,
                                    Some(Tok::Punct(',')) => {}
                                    Some(Tok::Str(s)) => items.push(Value::String(s)),
                                    other => panic!("{kind} {label:?}: unexpected {other:?} in a list"),
                                }
                            }
                            Value::Array(items)
                        }
                        other => panic!("{kind} {label:?}: unexpected value {other:?}"),
                    };
                    attrs.push((name, value));
                }
                other => panic!("{kind} {label:?}: unexpected {other:?}"),
            }
        }
        blocks.push(Block { kind, label, attrs });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translator_should_read_both_kinds_of_policy() {
        let consul = consul_rules(
            "# c\nkey_prefix \"drover/apps/\" {\n  policy = \"read\" # why\n}\nsession_prefix \"\" { policy = \"write\" }\n",
        );
        assert_eq!(
            consul_sim_rules(&consul),
            json!({"key_prefix": {"drover/apps/": "read"}, "session_prefix": {"": "write"}})
        );
        let nomad = nomad_rules("namespace \"*\" {\n  capabilities = [\"list-jobs\", # list\n \"read-job\",]\n}\n");
        assert_eq!(nomad.len(), 2);
        assert_eq!(nomad_sim_namespaces(&nomad), json!({"*": ["list-jobs", "read-job"]}));
    }
}
