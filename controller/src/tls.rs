//! Builds the `reqwest::Client` shared by the Consul and Nomad clients: rustls on ring, optional custom CA and mTLS,
//! and a redirect policy that never carries an ACL token to another origin.
//!
//! No client-wide request timeout is set: each request sets its own, because a blocking query must be allowed to
//! outlive its `wait` (see [`blocking_timeout`]) and the Nomad event stream has no end at all (its liveness is checked
//! by heartbeats instead).

use std::sync::Once;
use std::time::Duration;

/// How long a TCP connect plus TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of a request that does not block on the server.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to a blocking query's longest server-side time, for network and scheduling delay.
pub const BLOCKING_MARGIN: Duration = Duration::from_secs(10);

/// The client could not be built. Never retryable: a file or setting has to be fixed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} file {path:?}")]
    ReadFileFailed {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file's path.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file did not hold a usable certificate or key.
    #[error("invalid {what} in {path:?}")]
    ParsePemFailed {
        /// `CA certificate` or `client certificate and key`.
        what: &'static str,
        /// The file's path (the certificate's, for a client identity).
        path: String,
        /// The parser's complaint.
        #[source]
        source: reqwest::Error,
    },
    /// A CA file held no certificate at all (trusting an empty set would fail every handshake later, obscurely).
    #[error("no certificate found in {what} file {path:?}")]
    NoCertificates {
        /// `CA certificate`.
        what: &'static str,
        /// The file's path.
        path: String,
    },
    /// reqwest refused the assembled settings.
    #[error("cannot build the HTTP client")]
    BuildClientFailed(#[source] reqwest::Error),
}

impl TlsError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ReadFileFailed { .. } => "read_file_failed",
            Self::ParsePemFailed { .. } => "parse_pem_failed",
            Self::NoCertificates { .. } => "no_certificates",
            Self::BuildClientFailed(_) => "build_client_failed",
        }
    }
}

/// TLS material for one server; all paths are PEM files.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsFiles<'a> {
    /// When set, the only trusted root (as HashiCorp's CLIs do with `*_CACERT`).
    pub ca_cert: Option<&'a str>,
    /// Client certificate chain for mTLS; needs `client_key`.
    pub client_cert: Option<&'a str>,
    /// Private key for `client_cert`.
    pub client_key: Option<&'a str>,
}

/// The most redirects followed for one request, all within the origin it was sent to (reqwest's default count).
pub const MAX_REDIRECTS: usize = 10;

/// A redirect the HTTP client refused to follow; the `source()` of the `reqwest::Error` the request then fails with
/// (`reqwest::Error::is_redirect` is true). Not retryable: the configured address must change.
#[derive(Debug, thiserror::Error)]
pub enum RedirectRefused {
    /// The server sent Drover to another scheme, host or port. Following it would hand `X-Consul-Token` or
    /// `X-Nomad-Token` to that host: reqwest strips only the standard credential headers (`Authorization`,
    /// `Cookie`) on a cross-host redirect, and forwards every other header.
    #[error(
        "refused a redirect from {from} to another origin, {to}: Drover never sends its token to another host \
         (point the address at {to} if that is the server)"
    )]
    CrossOrigin {
        /// The origin that answered with the redirect (`scheme://host:port`).
        from: String,
        /// The origin it pointed to.
        to: String,
    },
    /// More than [`MAX_REDIRECTS`] redirects within one origin: a loop.
    #[error("stopped after {MAX_REDIRECTS} redirects (a redirect loop)")]
    TooMany,
}

/// The redirect policy of both clients: follow a redirect only within the origin (scheme, host and port) of the URL
/// that answered it, at most [`MAX_REDIRECTS`] times, and fail the request otherwise.
///
/// Neither API redirects on the endpoints Drover calls (contract: the only redirect is Consul's `301` to a cleaned
/// path for a literal `//` or `/../`, which is same-origin and which Drover's percent-encoding never triggers), so a
/// cross-origin redirect means a proxy or a wrong address, and the token must not follow it.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url().origin();
        // `previous()` ends with the URL that answered this redirect (reqwest pushes it before asking the policy).
        let from = attempt.previous().last().map(reqwest::Url::origin);
        match from {
            Some(from) if from == next && next.is_tuple() => {
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error(RedirectRefused::TooMany)
                } else {
                    attempt.follow()
                }
            }
            from => attempt.error(RedirectRefused::CrossOrigin {
                from: from.map_or_else(|| "an unknown origin".to_owned(), |o| o.ascii_serialization()),
                to: next.ascii_serialization(),
            }),
        }
    })
}

/// Installs ring as rustls' process-wide crypto provider, once. Installing it twice, or after someone else
/// installed one, is harmless: the first provider stays.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An Err only means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `drover/<version> (pid <pid>)`: what every request to Consul and Nomad says it comes from, so server logs (and
/// the simulator's request log) tell replicas apart.
pub fn user_agent() -> String {
    format!("drover/{} (pid {})", env!("CARGO_PKG_VERSION"), std::process::id())
}

/// Builds an HTTP/1.1 client with [`CONNECT_TIMEOUT`], the given TLS material and [`redirect_policy`].
///
/// HTTP/1.1 only: the Nomad event stream is a raw body ended by `Connection: close`, and neither server speaks h2
/// on its HTTP API port without TLS ALPN anyway.
pub fn build_http_client(files: TlsFiles<'_>) -> Result<reqwest::Client, TlsError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent())
        .connect_timeout(CONNECT_TIMEOUT)
        .http1_only()
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(redirect_policy())
        .tls_backend_rustls();
    if let Some(path) = files.ca_cert {
        let pem = read(path, "CA certificate")?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| TlsError::ParsePemFailed {
            what: "CA certificate",
            path: path.to_owned(),
            source,
        })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificates { what: "CA certificate", path: path.to_owned() });
        }
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert_path), Some(key_path)) = (files.client_cert, files.client_key) {
        let mut pem = read(cert_path, "client certificate")?;
        pem.push(b'\n');
        pem.extend(read(key_path, "client key")?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|source| TlsError::ParsePemFailed {
            what: "client certificate and key",
            path: cert_path.to_owned(),
            source,
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(TlsError::BuildClientFailed)
}

/// The client-side timeout for a blocking query with this `wait`, as the server will treat it: a zero wait means the
/// server's `default_wait`, and anything above `max_wait` is clamped.
///
/// The server may hold the request for that wait plus up to wait/16 of jitter (contract A2 rule 2, C3), so the
/// client must wait longer than wait × 17/16, plus [`BLOCKING_MARGIN`] for the network.
pub fn blocking_timeout(wait: Duration, default_wait: Duration, max_wait: Duration) -> Duration {
    let wait = if wait.is_zero() { default_wait } else { wait.min(max_wait) };
    wait + wait / 16 + BLOCKING_MARGIN
}

/// Characters escaped in a URL path segment: everything but RFC 3986 unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'*');

/// Escapes a path that may hold `/` separators (a Consul key): each segment is escaped, `/` is kept.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Escapes one path segment, `/` included (a Nomad job ID such as `parent/periodic-1` becomes `parent%2Fperiodic-1`,
/// contract B6).
pub(crate) fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// Builds `?a=1&flag&b=x` from parameters; `None` values are presence-only flags (contract A1: Consul reads
/// `recurse`, `keys`, `consistent` by presence, so "false" is expressed by leaving the flag out).
pub(crate) fn encode_query(params: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if let Some(value) = value {
            out.push('=');
            out.extend(percent_encoding::utf8_percent_encode(value, PATH_SEGMENT));
        }
    }
    out
}

fn read(path: &str, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFileFailed { what, path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_timeout_should_exceed_wait_plus_jitter() {
        let wait = Duration::from_secs(300);
        let five_min = Duration::from_secs(300);
        let t = blocking_timeout(wait, five_min, Duration::from_secs(600));
        assert!(t > wait * 17 / 16, "{t:?}");
        // A wait above the server's maximum is clamped by the server, so the timeout follows the clamp.
        let t = blocking_timeout(Duration::from_secs(900), five_min, five_min);
        assert_eq!(t, five_min * 17 / 16 + BLOCKING_MARGIN);
        // No wait means the server's default wait, not "no blocking".
        let t = blocking_timeout(Duration::ZERO, five_min, Duration::from_secs(600));
        assert!(t > five_min * 17 / 16, "{t:?}");
    }

    /// A throwaway P-256 test CA and a client certificate it signed (valid until 2126), generated with openssl for
    /// these tests only.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBiTCCAS+gAwIBAgIUd7FKVA7vlvpTDH8ZBBhanjMaCa4wCgYIKoZIzj0EAwIw\nGTEXMBUGA1UEAwwOZHJvdmVyLXRlc3QtY2EwIBcNMjYxMTIzMTYyNzA1WhgPMjEy\nNjEwMzAxNjI3MDVaMBkxFzAVBgNVBAMMDmRyb3Zlci10ZXN0LWNhMFkwEwYHKoZI\nzj0CAQYIKoZIzj0DAQcDQgAEDZQ/+dcoRuy5p0THIV7Co1jUhl9GjP4Z8VtbFNju\nJhkgDVkcZdUXbjRev5R5GUuBKqLtJ6rU3FbYa5lyR81nm6NTMFEwHQYDVR0OBBYE\nFFEumGxMvKy2YkvSaTbdPE+iil+MMB8GA1UdIwQYMBaAFFEumGxMvKy2YkvSaTbd\nPE+iil+MMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAOrDvWbW\nB2X63YpQsTRtA+dHJf3eg1l9tiLq35cU9vIGAiA4ZOY+0XzapsdlTQ2Etve4z6yR\nnpTLgrOVN8sOa0ccFQ==\n-----END CERTIFICATE-----\n";
    const TEST_CLIENT_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBpTCCAUqgAwIBAgIUcHEVpa9ul+ijBx1TP0uuUtT8JVMwCgYIKoZIzj0EAwIw\nGTEXMBUGA1UEAwwOZHJvdmVyLXRlc3QtY2EwIBcNMjYxMTIzMTYyNzU2WhgPMjEy\nNjEwMzAxNjI3NTZaMBgxFjAUBgNVBAMMDWRyb3Zlci1jbGllbnQwWTATBgcqhkjO\nPQIBBggqhkjOPQMBBwNCAASRaT/7n+l//G0l9j4NdY41YqxwEu+Q1FQel1VNuR/T\n1uHm8SeJ5AUFfRb9c7CmLZDT1xTkMPJ6bb3Qb58G4HK2o28wbTAJBgNVHRMEAjAA\nMBMGA1UdJQQMMAoGCCsGAQUFBwMCMAsGA1UdDwQEAwIHgDAdBgNVHQ4EFgQUDDtL\nqVB5mQIZudMO1v8bxypyRwYwHwYDVR0jBBgwFoAUUS6YbEy8rLZiS9JpNt08T6KK\nX4wwCgYIKoZIzj0EAwIDSQAwRgIhAJnMvLBqS1OLIzHr4de6wVO58KvHzNpfe9Tm\nzAqGB/vUAiEA3dIawZDUuC5esPBcO3pGVPqwFlHbXh0rjiKD+6SIOK0=\n-----END CERTIFICATE-----\n";
    const TEST_CLIENT_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpqvTjgjrUxTyYFsw\nF1KGgovudH2//2X7pOCPg5+23vChRANCAASRaT/7n+l//G0l9j4NdY41YqxwEu+Q\n1FQel1VNuR/T1uHm8SeJ5AUFfRb9c7CmLZDT1xTkMPJ6bb3Qb58G4HK2\n-----END PRIVATE KEY-----\n";

    fn temp_file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("drover-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn build_http_client_should_load_a_ca_and_a_client_identity() {
        let ca = temp_file("ca.pem", TEST_CA);
        let cert = temp_file("client.pem", TEST_CLIENT_CERT);
        let key = temp_file("client.key", TEST_CLIENT_KEY);
        build_http_client(TlsFiles { ca_cert: Some(&ca), client_cert: Some(&cert), client_key: Some(&key) }).unwrap();
        // A "key" file holding a certificate is refused up front, naming the certificate file.
        let err = build_http_client(TlsFiles { ca_cert: None, client_cert: Some(&cert), client_key: Some(&cert) })
            .unwrap_err();
        assert_eq!(err.kind(), "parse_pem_failed", "{err}");
        assert!(err.to_string().contains(&cert), "{err}");
    }

    #[test]
    fn build_http_client_should_reject_a_ca_file_without_certificates() {
        let path = std::env::temp_dir().join(format!("drover-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let err = build_http_client(TlsFiles { ca_cert: Some(&path), ..TlsFiles::default() }).unwrap_err();
        assert!(matches!(err.kind(), "no_certificates" | "parse_pem_failed"), "{err}");
        assert!(err.to_string().contains(&path), "{err}");
    }

    #[test]
    fn encode_query_should_send_flags_by_presence_only() {
        let q = encode_query(&[
            ("recurse", None),
            ("index", Some("7".into())),
            ("wait", Some("5000ms".into())),
            ("namespace", Some("*".into())),
        ]);
        assert_eq!(q, "?recurse&index=7&wait=5000ms&namespace=*");
        assert_eq!(encode_query(&[]), "");
    }

    #[test]
    fn encode_path_should_keep_slashes_and_escape_the_rest() {
        assert_eq!(encode_path("drover/apps/default/web-1"), "drover/apps/default/web-1");
        assert_eq!(encode_path("a b/c?d"), "a%20b/c%3Fd");
        assert_eq!(encode_segment("parent/periodic-1"), "parent%2Fperiodic-1");
    }

    #[test]
    fn build_http_client_should_work_without_tls_files_and_twice() {
        build_http_client(TlsFiles::default()).unwrap();
        build_http_client(TlsFiles::default()).unwrap();
    }

    #[test]
    fn build_http_client_should_name_a_missing_ca_file() {
        let err = build_http_client(TlsFiles { ca_cert: Some("/nonexistent/drover-ca.pem"), ..TlsFiles::default() })
            .unwrap_err();
        assert_eq!(err.kind(), "read_file_failed");
        assert!(err.to_string().contains("drover-ca.pem"), "{err}");
    }
}
