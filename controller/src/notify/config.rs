//! The notifications file (`drover run --notifications FILE`): read once at start, checked completely, and turned
//! into typed [`Target`]s. Every problem is reported with its field path (`targets[1].headers.Authorization.env`),
//! all of them at once; unknown keys are errors, so a misspelt `selector` cannot silently send everything.
//!
//! ```yaml
//! targets:
//!   - name: ops-slack                 # [A-Za-z0-9_.-]{1,63}, unique: the `target` label of the metric
//!     url: https://hooks.slack.com/services/T000/B000/XXXX
//!     format: slack                   # drover (default) or slack
//!     events: [RolloutAborted, AnalysisFailed, Drifted]   # default: every event
//!     selector:                       # default: every app
//!       namespaces: [prod-*]          # globs: `*` any run of characters, `?` one; no wildcard = exact
//!       apps: [web, "payments/*"]     # a name, or namespace/name
//!     headers:
//!       Authorization: {env: OPS_WEBHOOK_TOKEN}      # or {file: /run/secrets/token}, or a literal string
//! ```
//!
//! Secrets are read here, once: a missing variable or unreadable file stops `drover run` before it starts, rather
//! than failing every delivery later. A secret file's trailing newline is dropped (what `echo` and most secret
//! mounts leave). Relative `file:` paths are relative to the working directory. Header values from `env`/`file`
//! are marked sensitive, so they never appear in logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::events::EventKind;
use crate::app::parse::{render_path, yaml_options};
use crate::app::{AppKey, FieldError, index_path, join_path, key_path};

/// The largest notifications file read.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// The most targets a file may list: each is a task, a queue and a label value of `drover_notifications_total`.
pub const MAX_TARGETS: usize = 32;

/// Why a notifications file cannot be used. Neither is retryable: the file (or the environment) must change.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("--notifications {path}: cannot read the file")]
    ReadFailed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; each is one line of the message, `path: reason`.
    #[error("--notifications {path}: {} problem(s):\n{}", errors.len(), lines(errors))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        errors: Vec<FieldError>,
    },
}

fn lines(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

/// The payload a target receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Drover's JSON: `{event, app, namespace, generation, phase, reason, message, at}`.
    #[default]
    Drover,
    /// Slack's incoming-webhook shape: `{text, blocks: [{type: section, text: {type: mrkdwn, text}}]}`.
    Slack,
}

/// A name pattern: `*` matches any run of characters (also none), `?` one character; anything else is literal, so
/// a pattern without either is an exact name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text (any text is a pattern).
    pub fn new(text: impl Into<String>) -> Pattern {
        Pattern(text.into())
    }

    /// Whether `text` matches the whole pattern. Iterative with one backtrack point (the classic wildcard match),
    /// so time is linear in practice and never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    // Let the last `*` swallow one more character and try again from there.
                    Some((sp, st)) => {
                        star = Some((sp, st + 1));
                        pi = sp + 1;
                        ti = st + 1;
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// Which apps a target hears about. An empty list does not restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Namespace patterns; the app's namespace must match one.
    pub namespaces: Vec<Pattern>,
    /// App patterns: a pattern with a `/` matches `namespace/name`, one without matches the name.
    pub apps: Vec<Pattern>,
}

impl Selector {
    /// Whether the app is selected.
    pub fn selects(&self, app: &AppKey) -> bool {
        let namespace_ok = self.namespaces.is_empty() || self.namespaces.iter().any(|p| p.matches(&app.namespace));
        let full = app.to_string();
        let app_ok = self.apps.is_empty()
            || self.apps.iter().any(|p| if p.0.contains('/') { p.matches(&full) } else { p.matches(&app.name) });
        namespace_ok && app_ok
    }
}

/// One webhook target, checked and with its secrets read.
#[derive(Clone)]
pub struct Target {
    /// Unique name: the `target` label of `drover_notifications_total`, and how logs name it.
    pub name: String,
    /// Where payloads are POSTed (http or https).
    pub url: reqwest::Url,
    /// Extra request headers (secret values marked sensitive).
    pub headers: HeaderMap,
    /// The events sent; `None` sends every event.
    pub events: Option<BTreeSet<EventKind>>,
    /// The apps whose events are sent.
    pub selector: Selector,
    /// The payload shape.
    pub format: Format,
}

impl Target {
    /// Whether this target wants `kind` events of `app`.
    pub fn wants(&self, kind: EventKind, app: &AppKey) -> bool {
        self.wants_kind(kind) && self.selector.selects(app)
    }

    /// Whether this target's `events:` list takes `kind` (all kinds when it has none).
    pub fn wants_kind(&self, kind: EventKind) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&kind))
    }
}

impl std::fmt::Debug for Target {
    /// Header values are left out: they are often secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .field("selector", &self.selector)
            .field("format", &self.format)
            .finish()
    }
}

/// The file, as written (types checked; values checked by [`check_target`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// Each target is read on its own, so one target's type error does not hide another's.
    targets: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetDoc {
    name: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    events: Option<Vec<EventKind>>,
    #[serde(default)]
    selector: Option<SelectorDoc>,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorDoc {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

/// Reads and checks the notifications file at `path`; `lookup` reads environment variables (a seam for tests).
///
/// # Errors
/// The file cannot be read, or has problems (all of them, each with its path).
pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Target>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::ReadFailed { path: path.to_owned(), source })?;
    parse(&bytes, lookup).map_err(|errors| LoadError::Invalid { path: path.to_owned(), errors })
}

/// Parses and checks a notifications file's bytes.
///
/// # Errors
/// Every problem found, each with its field path.
pub fn parse(bytes: &[u8], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Target>, Vec<FieldError>> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(vec![FieldError::new(
            "",
            format!("the file is {} bytes; the limit is {MAX_FILE_BYTES}", bytes.len()),
        )]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| vec![FieldError::new("", "the file is not UTF-8 text")])?;
    let doc: FileDoc = typed(yaml_doc(text)?, "")?;
    if doc.targets.is_empty() {
        return Err(vec![FieldError::new("targets", "lists no target; remove --notifications instead")]);
    }
    if doc.targets.len() > MAX_TARGETS {
        return Err(vec![FieldError::new(
            "targets",
            format!("lists {} targets; the limit is {MAX_TARGETS}", doc.targets.len()),
        )]);
    }
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, value) in doc.targets.into_iter().enumerate() {
        let at = index_path("targets", i);
        let target = match typed::<TargetDoc>(value, &at) {
            Ok(t) => t,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        if let Some(first) = names.insert(target.name.clone(), i) {
            errors.push(FieldError::new(
                join_path(&at, "name"),
                format!("{:?} is also the name of targets[{first}]; names must be unique", target.name),
            ));
        }
        match check_target(target, &at, lookup) {
            Ok(t) => targets.push(t),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(targets) } else { Err(errors) }
}

/// YAML text → `Value`, under the record parser's budgets.
fn yaml_doc(text: &str) -> Result<Value, Vec<FieldError>> {
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        serde_path_to_error::deserialize::<_, Value>(de).map_err(|e| {
            path = render_path(&e.path().iter().cloned().collect::<Vec<_>>());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let text = e.to_string();
        vec![FieldError::new(path, format!("not valid YAML: {}", text.lines().next().unwrap_or("").trim()))]
    })
}

/// `Value` → `T`, the first type error (unknown key, wrong type, missing field) with its path under `at`.
fn typed<T: serde::de::DeserializeOwned>(value: Value, at: &str) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = join_path(at, &render_path(&e.path().iter().cloned().collect::<Vec<_>>()));
        vec![FieldError::new(path, e.inner().to_string())]
    })
}

/// Checks a target's values and reads its secrets, collecting every problem.
fn check_target(doc: TargetDoc, at: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Target, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name_ok = !doc.name.is_empty()
        && doc.name.len() <= 63
        && doc.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !name_ok {
        errors.push(FieldError::new(
            join_path(at, "name"),
            format!("{:?} must be 1 to 63 characters of A-Z, a-z, 0-9, `_`, `.`, `-` (it is a metric label)", doc.name),
        ));
    }
    let url = match reqwest::Url::parse(&doc.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
        Ok(u) => {
            errors.push(FieldError::new(
                join_path(at, "url"),
                format!("scheme {:?} is not supported: write an http:// or https:// URL", u.scheme()),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(join_path(at, "url"), format!("not a URL: {e}")));
            None
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in doc.headers {
        let path = key_path(&join_path(at, "headers"), &name);
        match header(&name, value, &path, lookup) {
            Ok((n, v)) => {
                headers.insert(n, v);
            }
            Err(e) => errors.push(e),
        }
    }
    let events = match doc.events {
        Some(list) if list.is_empty() => {
            errors.push(FieldError::new(join_path(at, "events"), "lists no event; leave it out to send every event"));
            None
        }
        Some(list) => Some(list.into_iter().collect()),
        None => None,
    };
    let mut selector = Selector::default();
    if let Some(s) = doc.selector {
        let sel = join_path(at, "selector");
        for (field, list, out) in
            [("namespaces", s.namespaces, &mut selector.namespaces), ("apps", s.apps, &mut selector.apps)]
        {
            for (i, p) in list.into_iter().enumerate() {
                if p.is_empty() || p.matches('/').count() > 1 {
                    let path = index_path(&join_path(&sel, field), i);
                    errors.push(FieldError::new(path, "must be a name or glob (apps: name or namespace/name)"));
                } else {
                    out.push(Pattern::new(p));
                }
            }
        }
    }
    match url {
        Some(url) if errors.is_empty() => {
            Ok(Target { name: doc.name, url, headers, events, selector, format: doc.format })
        }
        _ => Err(errors),
    }
}

/// One header: a literal string, `{env: VAR}` or `{file: PATH}`.
fn header(
    name: &str,
    value: Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(HeaderName, HeaderValue), FieldError> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| FieldError::new(path, format!("{name:?} is not a valid HTTP header name")))?;
    let (text, secret) = match &value {
        Value::String(s) => (s.clone(), false),
        Value::Object(map) if map.len() == 1 => match map.iter().next() {
            Some((k, Value::String(var))) if k == "env" => match lookup(var) {
                Some(v) => (v, true),
                None => {
                    return Err(FieldError::new(
                        join_path(path, "env"),
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
            Some((k, Value::String(file))) if k == "file" => match std::fs::read_to_string(file) {
                Ok(v) => {
                    (v.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&v).to_string(), true)
                }
                Err(e) => return Err(FieldError::new(join_path(path, "file"), format!("cannot read {file}: {e}"))),
            },
            _ => return Err(FieldError::new(path, "must be a string, {env: VAR} or {file: PATH}")),
        },
        _ => return Err(FieldError::new(path, "must be a string, {env: VAR} or {file: PATH}")),
    };
    let mut header_value = HeaderValue::from_str(&text)
        .map_err(|_| FieldError::new(path, "the value has characters an HTTP header cannot carry (e.g. a newline)"))?;
    header_value.set_sensitive(secret);
    Ok((header_name, header_value))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
