//! Connection settings for Consul and Nomad, from flags with HashiCorp's own environment variables as fallback.
//!
//! The environment is read only through a `lookup` function (STYLE 10), so tests pass a map and never touch the
//! process environment. Flags win over the environment; every error names the flag or variable and the reason.

use std::fmt;
use std::sync::Arc;

use crate::consul::budget::{ByteRate, ByteRateError};
use crate::token::{Token, TokenFile};

/// Default Consul HTTP address when neither a flag nor `CONSUL_HTTP_ADDR` gives one.
pub const DEFAULT_CONSUL_ADDR: &str = "http://127.0.0.1:8500";
/// Default Nomad HTTP address when neither a flag nor `NOMAD_ADDR` gives one.
pub const DEFAULT_NOMAD_ADDR: &str = "http://127.0.0.1:4646";

/// A configuration value that could not be used. Never retryable: the operator has to fix the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An address is not `http://host:port`, `https://host:port` or a bare `host:port`.
    #[error("{source_name}: invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The flag or variable the value came from.
        source_name: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A boolean variable holds something other than a Go `strconv.ParseBool` spelling.
    #[error("{source_name}: invalid boolean {value:?}")]
    InvalidBool {
        /// The variable the value came from.
        source_name: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The token file named by a flag or `CONSUL_HTTP_TOKEN_FILE` could not be read.
    #[error("{source_name}: cannot read token file {path:?}")]
    TokenFileUnreadable {
        /// The flag or variable that named the file.
        source_name: &'static str,
        /// The file's path.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A value was given but is empty or only whitespace.
    #[error("{source_name}: must not be empty")]
    Empty {
        /// The flag or variable the value came from.
        source_name: &'static str,
    },
    /// The Consul watch budget is not a rate within bounds, e.g. `32MiB/s`.
    #[error("{source_name}: invalid watch budget {value:?}")]
    InvalidWatchBudget {
        /// The flag or variable the value came from.
        source_name: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected (the expected spelling or the bounds).
        #[source]
        source: ByteRateError,
    },
    /// A client certificate was given without its key, or the other way round.
    #[error("{cert_source} and {key_source} must be given together")]
    IncompleteClientCert {
        /// Where the certificate setting comes from.
        cert_source: &'static str,
        /// Where the key setting comes from.
        key_source: &'static str,
    },
}

impl ConfigError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidAddress { .. } => "invalid_address",
            Self::InvalidBool { .. } => "invalid_bool",
            Self::TokenFileUnreadable { .. } => "token_file_unreadable",
            Self::Empty { .. } => "empty",
            Self::IncompleteClientCert { .. } => "incomplete_client_cert",
            Self::InvalidWatchBudget { .. } => "invalid_watch_budget",
        }
    }
}

/// Values given on the command line for Consul; each `Some` wins over its environment variable.
#[derive(Clone, Debug, Default)]
pub struct ConsulFlags {
    /// `--consul-addr`.
    pub addr: Option<String>,
    /// `--consul-token`.
    pub token: Option<Secret>,
    /// `--consul-token-file`.
    pub token_file: Option<String>,
    /// `--consul-cacert`.
    pub ca_cert: Option<String>,
    /// `--consul-client-cert`.
    pub client_cert: Option<String>,
    /// `--consul-client-key`.
    pub client_key: Option<String>,
}

/// Values given on the command line for Nomad; each `Some` wins over its environment variable.
#[derive(Clone, Debug, Default)]
pub struct NomadFlags {
    /// `--nomad-addr`.
    pub addr: Option<String>,
    /// `--nomad-token`.
    pub token: Option<Secret>,
    /// `--nomad-token-file`.
    pub token_file: Option<String>,
    /// `--nomad-region`.
    pub region: Option<String>,
    /// `--nomad-cacert`.
    pub ca_cert: Option<String>,
    /// `--nomad-client-cert`.
    pub client_cert: Option<String>,
    /// `--nomad-client-key`.
    pub client_key: Option<String>,
}

/// How to reach Consul. `Debug` never shows the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsulConfig {
    /// Base URL without a trailing `/`, e.g. `http://127.0.0.1:8500`.
    pub addr: String,
    /// ACL token sent as `X-Consul-Token` (a token file is re-read when it changes).
    pub token: Option<Token>,
    /// PEM file of the CA that signs the server certificate; when set it is the only trusted root.
    pub ca_cert: Option<String>,
    /// PEM client certificate for mTLS.
    pub client_cert: Option<String>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<String>,
}

/// How to reach Nomad. `Debug` never shows the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NomadConfig {
    /// Base URL without a trailing `/`, e.g. `http://127.0.0.1:4646`.
    pub addr: String,
    /// ACL token sent as `X-Nomad-Token` (a token file is re-read when it changes).
    pub token: Option<Token>,
    /// Region sent as `?region=` on every request; `None` means the agent's own region.
    pub region: Option<String>,
    /// PEM file of the CA that signs the server certificate; when set it is the only trusted root.
    pub ca_cert: Option<String>,
    /// PEM client certificate for mTLS.
    pub client_cert: Option<String>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<String>,
}

impl ConsulConfig {
    /// Resolves the settings: each flag, else its variable, else the default.
    ///
    /// `CONSUL_HTTP_ADDR` may be a bare `host:port`; it then means `http`, or `https` when `CONSUL_HTTP_SSL` is true
    /// (as the Consul CLI does). The token comes from the token flag, else `CONSUL_HTTP_TOKEN`, else the token file
    /// (flag, else `CONSUL_HTTP_TOKEN_FILE`), trimmed and re-read when it changes ([`crate::token`]).
    pub fn resolve(flags: &ConsulFlags, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let ssl = match lookup("CONSUL_HTTP_SSL").filter(|v| !v.trim().is_empty()) {
            None => false,
            Some(v) => {
                parse_go_bool(&v).ok_or(ConfigError::InvalidBool { source_name: "CONSUL_HTTP_SSL", value: v })?
            }
        };
        let addr = match pick(flags.addr.as_deref(), "--consul-addr", "CONSUL_HTTP_ADDR", lookup)? {
            Some((value, source_name)) => normalize_addr(&value, ssl, source_name)?,
            None => DEFAULT_CONSUL_ADDR.to_owned(),
        };
        let token = resolve_token(
            (flags.token.as_ref(), "--consul-token", "CONSUL_HTTP_TOKEN"),
            (flags.token_file.as_deref(), "--consul-token-file", "CONSUL_HTTP_TOKEN_FILE"),
            lookup,
        )?;
        let ca_cert = pick(flags.ca_cert.as_deref(), "--consul-cacert", "CONSUL_CACERT", lookup)?;
        let client_cert = pick(flags.client_cert.as_deref(), "--consul-client-cert", "CONSUL_CLIENT_CERT", lookup)?;
        let client_key = pick(flags.client_key.as_deref(), "--consul-client-key", "CONSUL_CLIENT_KEY", lookup)?;
        check_pair(&client_cert, &client_key, "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY")?;
        Ok(Self {
            addr,
            token,
            ca_cert: ca_cert.map(|(v, _)| v),
            client_cert: client_cert.map(|(v, _)| v),
            client_key: client_key.map(|(v, _)| v),
        })
    }
}

impl NomadConfig {
    /// Resolves the settings: each flag, else its variable, else the default.
    ///
    /// A bare `host:port` in `NOMAD_ADDR` means `http`. The token comes from the token flag, else `NOMAD_TOKEN`,
    /// else the token file (flag, else `NOMAD_TOKEN_FILE`, Drover's own name in HashiCorp's style), re-read when it
    /// changes.
    pub fn resolve(flags: &NomadFlags, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addr = match pick(flags.addr.as_deref(), "--nomad-addr", "NOMAD_ADDR", lookup)? {
            Some((value, source_name)) => normalize_addr(&value, false, source_name)?,
            None => DEFAULT_NOMAD_ADDR.to_owned(),
        };
        let token = resolve_token(
            (flags.token.as_ref(), "--nomad-token", "NOMAD_TOKEN"),
            (flags.token_file.as_deref(), "--nomad-token-file", "NOMAD_TOKEN_FILE"),
            lookup,
        )?;
        let region = pick(flags.region.as_deref(), "--nomad-region", "NOMAD_REGION", lookup)?;
        let ca_cert = pick(flags.ca_cert.as_deref(), "--nomad-cacert", "NOMAD_CACERT", lookup)?;
        let client_cert = pick(flags.client_cert.as_deref(), "--nomad-client-cert", "NOMAD_CLIENT_CERT", lookup)?;
        let client_key = pick(flags.client_key.as_deref(), "--nomad-client-key", "NOMAD_CLIENT_KEY", lookup)?;
        check_pair(&client_cert, &client_key, "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY")?;
        Ok(Self {
            addr,
            token,
            region: region.map(|(v, _)| v),
            ca_cert: ca_cert.map(|(v, _)| v),
            client_cert: client_cert.map(|(v, _)| v),
            client_key: client_key.map(|(v, _)| v),
        })
    }
}

/// The Consul prefix watch's byte budget: `--watch-budget`, else `DROVER_WATCH_BUDGET`, else
/// [`crate::consul::budget::DEFAULT_BUDGET`]. See [`crate::consul::budget`] for what it limits.
pub fn resolve_watch_budget(
    flag: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ByteRate, ConfigError> {
    match pick(flag, "--watch-budget", "DROVER_WATCH_BUDGET", lookup)? {
        None => Ok(crate::consul::budget::DEFAULT_BUDGET),
        Some((value, source_name)) => {
            value.parse().map_err(|source| ConfigError::InvalidWatchBudget { source_name, value, source })
        }
    }
}

/// Shows whether a secret is set without showing it.
/// A token: its `Debug` never shows it, so no flag, configuration or client can print one by accident.
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// The token, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s.into())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.into())
    }
}

/// For clap: a token given on the command line.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.into()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The flag if given, else the variable; an empty environment variable counts as unset (as in HashiCorp's CLIs),
/// an empty flag is an error. Returns the value with the name of where it came from.
fn pick(
    flag: Option<&str>,
    flag_name: &'static str,
    var: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, &'static str)>, ConfigError> {
    if let Some(value) = flag {
        let value = value.trim();
        if value.is_empty() {
            return Err(ConfigError::Empty { source_name: flag_name });
        }
        return Ok(Some((value.to_owned(), flag_name)));
    }
    Ok(lookup(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(|v| (v, var)))
}

fn check_pair(
    cert: &Option<(String, &'static str)>,
    key: &Option<(String, &'static str)>,
    cert_var: &'static str,
    key_var: &'static str,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::IncompleteClientCert {
            cert_source: cert.as_ref().map_or(cert_var, |(_, s)| s),
            key_source: key.as_ref().map_or(key_var, |(_, s)| s),
        }),
        _ => Ok(()),
    }
}

/// A token: the token flag, else its variable, else the token file (flag, else variable), read once here so that a
/// missing file fails at start. Each pair is `(value, flag name, variable name)`.
fn resolve_token(
    token: (Option<&Secret>, &'static str, &'static str),
    file: (Option<&str>, &'static str, &'static str),
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Token>, ConfigError> {
    if let Some((value, _)) = pick(token.0.map(Secret::expose), token.1, token.2, lookup)? {
        return Ok(Some(Token::Fixed(Secret::from(value))));
    }
    match pick(file.0, file.1, file.2, lookup)? {
        Some((path, source_name)) => Ok(Some(Token::File(Arc::new(TokenFile::open(&path, source_name)?)))),
        None => Ok(None),
    }
}

/// Go's `strconv.ParseBool` spellings, which HashiCorp's CLIs use for their boolean variables.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Turns `host:port`, `http://host:port[/]` or `https://…` into a base URL without a trailing slash.
fn normalize_addr(value: &str, https: bool, source_name: &'static str) -> Result<String, ConfigError> {
    let invalid = |reason| ConfigError::InvalidAddress { source_name, value: value.to_owned(), reason };
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => ("http", rest),
            "https" => ("https", rest),
            "unix" => return Err(invalid("unix sockets are not supported")),
            _ => return Err(invalid("the scheme must be http or https")),
        },
        None => (if https { "https" } else { "http" }, value),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(invalid("the host is missing"));
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(invalid("a path, query or fragment is not allowed"));
    }
    if rest.chars().any(char::is_whitespace) {
        return Err(invalid("whitespace is not allowed"));
    }
    let url = format!("{scheme}://{rest}");
    reqwest::Url::parse(&url).map_err(|_| invalid("not a valid URL"))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn secret(token: &Option<Token>) -> Option<String> {
        token.as_ref().map(|t| t.current().expose().to_owned())
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn consul_config_should_default_to_local_agent() {
        let cfg = ConsulConfig::resolve(&ConsulFlags::default(), &env(&[])).unwrap();
        assert_eq!(cfg.addr, "http://127.0.0.1:8500");
        assert_eq!(cfg.token, None);
    }

    #[test]
    fn consul_config_should_use_https_for_bare_address_when_ssl_is_set() {
        let lookup = env(&[("CONSUL_HTTP_ADDR", "consul:8501"), ("CONSUL_HTTP_SSL", "true")]);
        let cfg = ConsulConfig::resolve(&ConsulFlags::default(), &lookup).unwrap();
        assert_eq!(cfg.addr, "https://consul:8501");
        let lookup = env(&[("CONSUL_HTTP_ADDR", "consul:8500")]);
        let cfg = ConsulConfig::resolve(&ConsulFlags::default(), &lookup).unwrap();
        assert_eq!(cfg.addr, "http://consul:8500");
    }

    #[test]
    fn consul_config_should_prefer_flags_over_env() {
        let lookup = env(&[("CONSUL_HTTP_ADDR", "http://env:8500"), ("CONSUL_HTTP_TOKEN", "env")]);
        let flags = ConsulFlags {
            addr: Some("https://flag:8501/".into()),
            token: Some("flag".into()),
            ..ConsulFlags::default()
        };
        let cfg = ConsulConfig::resolve(&flags, &lookup).unwrap();
        assert_eq!(cfg.addr, "https://flag:8501");
        assert_eq!(secret(&cfg.token).as_deref(), Some("flag"));
    }

    #[test]
    fn consul_config_should_read_token_file_when_no_token_is_given() {
        let dir = std::env::temp_dir().join(format!("drover-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "secret-from-file\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let lookup = env(&[("CONSUL_HTTP_TOKEN_FILE", &path)]);
        let cfg = ConsulConfig::resolve(&ConsulFlags::default(), &lookup).unwrap();
        assert_eq!(secret(&cfg.token).as_deref(), Some("secret-from-file"));
        let missing = env(&[("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/drover/token")]);
        let err = ConsulConfig::resolve(&ConsulFlags::default(), &missing).unwrap_err();
        assert!(err.to_string().contains("CONSUL_HTTP_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn config_errors_should_name_the_variable_or_flag() {
        let err =
            ConsulConfig::resolve(&ConsulFlags::default(), &env(&[("CONSUL_HTTP_ADDR", "ftp://x:1")])).unwrap_err();
        assert!(err.to_string().starts_with("CONSUL_HTTP_ADDR:"), "{err}");
        let flags = NomadFlags { addr: Some("http://nomad:4646/v1".into()), ..NomadFlags::default() };
        let err = NomadConfig::resolve(&flags, &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--nomad-addr:"), "{err}");
        let err = NomadConfig::resolve(&NomadFlags::default(), &env(&[("NOMAD_CLIENT_CERT", "/c.pem")])).unwrap_err();
        assert!(err.to_string().contains("NOMAD_CLIENT_KEY"), "{err}");
        let err = ConsulConfig::resolve(&ConsulFlags::default(), &env(&[("CONSUL_HTTP_SSL", "yes")])).unwrap_err();
        assert_eq!(err.kind(), "invalid_bool");
    }

    #[test]
    fn nomad_config_should_read_region_and_token_from_env() {
        let lookup = env(&[("NOMAD_ADDR", "nomad.service:4646"), ("NOMAD_TOKEN", "s3cret"), ("NOMAD_REGION", "eu")]);
        let cfg = NomadConfig::resolve(&NomadFlags::default(), &lookup).unwrap();
        assert_eq!(cfg.addr, "http://nomad.service:4646");
        assert_eq!(cfg.region.as_deref(), Some("eu"));
        assert_eq!(secret(&cfg.token).as_deref(), Some("s3cret"));
    }

    #[test]
    fn watch_budget_should_come_from_the_flag_else_the_env_else_the_default() {
        let lookup = env(&[("DROVER_WATCH_BUDGET", "8MiB/s")]);
        assert_eq!(resolve_watch_budget(None, &env(&[])).unwrap().to_string(), "32MiB/s");
        assert_eq!(resolve_watch_budget(None, &lookup).unwrap().to_string(), "8MiB/s");
        assert_eq!(resolve_watch_budget(Some("1GiB/s"), &lookup).unwrap().to_string(), "1GiB/s");
    }

    #[test]
    fn watch_budget_errors_should_name_the_flag_or_variable_and_the_reason() {
        let err = resolve_watch_budget(Some("32MiB"), &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("--watch-budget: invalid watch budget \"32MiB\""), "{err}");
        let reason = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
        assert!(reason.contains("/s"), "the cause says what is expected: {reason}");
        let err = resolve_watch_budget(None, &env(&[("DROVER_WATCH_BUDGET", "0B/s")])).unwrap_err();
        assert!(err.to_string().starts_with("DROVER_WATCH_BUDGET:"), "{err}");
        assert_eq!(err.kind(), "invalid_watch_budget");
        let err = resolve_watch_budget(Some(""), &env(&[])).unwrap_err();
        assert_eq!(err.kind(), "empty");
    }

    #[test]
    fn config_debug_should_never_show_tokens() {
        let lookup = env(&[("NOMAD_TOKEN", "s3cret"), ("CONSUL_HTTP_TOKEN", "t0ken")]);
        let nomad = NomadConfig::resolve(&NomadFlags::default(), &lookup).unwrap();
        let consul = ConsulConfig::resolve(&ConsulFlags::default(), &lookup).unwrap();
        let flags = NomadFlags { token: Some("flagtoken".into()), ..NomadFlags::default() };
        let shown = format!("{nomad:?} {consul:?} {flags:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("t0ken") && !shown.contains("flagtoken"));
        assert!(shown.contains("<redacted>"));
    }
}
