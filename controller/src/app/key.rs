//! `AppKey`: where a record lives (`<prefix>/apps/<namespace>/<name>`) and its sibling keys.

use std::fmt;
use std::str::FromStr;

use super::spec::DEFAULT_NAMESPACE;

/// The identity of an app: its Nomad namespace and name. The record lives at
/// `<prefix>/apps/<namespace>/<name>`, its status at `<prefix>/status/…` and rollout commands at
/// `<prefix>/control/…` (DESIGN §2). Displays as `<namespace>/<name>`, which is also the value
/// of the job's `drover.io/app` meta key.
///
/// A key is only a location: it is not validated here (a record at a key with an invalid name
/// must still show up, as `Invalid`), so `validate` checks the segments.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppKey {
    /// The Nomad namespace (the third segment of the KV key).
    pub namespace: String,
    /// The app's name (the last segment of the KV key).
    pub name: String,
}

/// Why a string is not an `<namespace>/<name>` app key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAppKeyError {
    /// The text, or one of its two segments, is empty. Not retryable: the input is wrong.
    #[error("app key `{0}` has an empty namespace or name (write <namespace>/<name> or <name>)")]
    Empty(String),
    /// The text has more than one `/`. Not retryable: the input is wrong.
    #[error("app key `{0}` has more than two segments (write <namespace>/<name> or <name>)")]
    TooManySegments(String),
}

impl AppKey {
    /// A key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> AppKey {
        AppKey { namespace: namespace.into(), name: name.into() }
    }

    /// The app key of a record's KV key, e.g. `drover/apps/default/web` with prefix `drover`.
    /// `None` for anything else: another prefix or kind of key, an empty segment, or extra
    /// segments (so `drover/apps/default` or `drover/apps/a/b/c` are not records). A trailing
    /// `/` on `prefix` is ignored.
    #[must_use]
    pub fn from_kv_key(prefix: &str, key: &str) -> Option<AppKey> {
        let prefix = prefix.trim_end_matches('/');
        let rest = if prefix.is_empty() { key } else { key.strip_prefix(prefix)?.strip_prefix('/')? };
        let rest = rest.strip_prefix("apps/")?;
        let (namespace, name) = rest.split_once('/')?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(AppKey::new(namespace, name))
    }

    /// `<prefix>/apps/<namespace>/<name>`: where the record is stored.
    #[must_use]
    pub fn app_kv_key(&self, prefix: &str) -> String {
        self.kv_key(prefix, "apps")
    }

    /// `<prefix>/status/<namespace>/<name>`: where Drover writes the app's status.
    #[must_use]
    pub fn status_kv_key(&self, prefix: &str) -> String {
        self.kv_key(prefix, "status")
    }

    /// `<prefix>/control/<namespace>/<name>`: where rollout commands are written.
    #[must_use]
    pub fn control_kv_key(&self, prefix: &str) -> String {
        self.kv_key(prefix, "control")
    }

    fn kv_key(&self, prefix: &str, kind: &str) -> String {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            format!("{kind}/{}/{}", self.namespace, self.name)
        } else {
            format!("{prefix}/{kind}/{}/{}", self.namespace, self.name)
        }
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for AppKey {
    type Err = ParseAppKeyError;

    /// `<namespace>/<name>`, or `<name>` alone for the `default` namespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let (namespace, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => (DEFAULT_NAMESPACE, name),
            (Some(namespace), Some(name), None) => (namespace, name),
            _ => return Err(ParseAppKeyError::TooManySegments(s.to_owned())),
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(ParseAppKeyError::Empty(s.to_owned()));
        }
        Ok(AppKey::new(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_kv_key_should_accept_only_record_keys() {
        assert_eq!(AppKey::from_kv_key("drover", "drover/apps/default/web"), Some(AppKey::new("default", "web")));
        assert_eq!(AppKey::from_kv_key("drover/", "drover/apps/prod/api"), Some(AppKey::new("prod", "api")));
        for bad in [
            "drover/apps/default",
            "drover/apps/default/",
            "drover/apps//web",
            "drover/apps/a/b/c",
            "drover/status/default/web",
            "other/apps/default/web",
            "droverx/apps/default/web",
            "drover/apps",
            "",
        ] {
            assert_eq!(AppKey::from_kv_key("drover", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kv_keys_should_round_trip_through_from_kv_key() {
        let key = AppKey::new("default", "web");
        assert_eq!(key.app_kv_key("drover"), "drover/apps/default/web");
        assert_eq!(key.status_kv_key("drover"), "drover/status/default/web");
        assert_eq!(key.control_kv_key("drover"), "drover/control/default/web");
        assert_eq!(AppKey::from_kv_key("team/drover", &key.app_kv_key("team/drover")), Some(key));
    }

    #[test]
    fn from_str_should_default_the_namespace() {
        assert_eq!("web".parse(), Ok(AppKey::new("default", "web")));
        assert_eq!("prod/web".parse(), Ok(AppKey::new("prod", "web")));
        assert!("a/b/c".parse::<AppKey>().is_err());
        assert!("/web".parse::<AppKey>().is_err());
        assert!("".parse::<AppKey>().is_err());
        assert_eq!(AppKey::new("prod", "web").to_string(), "prod/web");
    }
}
