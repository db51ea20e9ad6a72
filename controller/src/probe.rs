//! The start-up probe of `drover run`: one request to each server before anything starts, so that a TLS failure that
//! no retry can fix ends the process with one line naming the file and the reason, instead of a silent backoff loop.
//!
//! Policy (decided for issue #9):
//! - At start, `GET /v1/status/leader` once per server (neither API wants a token for it). A failed TLS handshake
//!   (the server certificate is from another CA, expired, not yet valid, X.509 v1, not for this host; the server
//!   refused or required a client certificate; the server does not speak TLS) is [`ProbeError`], and `drover run`
//!   exits non-zero. A certificate is replaced by a person, not by waiting.
//! - Anything else (connection refused, a timeout, a 5xx, no leader) is an outage: logged, and the ordinary
//!   retry/backoff takes over, exactly as without the probe. Drover may start before its servers.
//! - After start, a TLS failure is a transport error like any other and is retried with backoff (a server's
//!   certificate may be rotated while Drover runs; exiting then would turn one bad rotation into an outage of the
//!   controller). It is logged with the same explanation ([`explain`]).

use std::error::Error as StdError;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

use crate::tls::TlsFiles;

/// How long the probe waits for each server.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS handshake failed, as far as the client can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted CA.
    UnknownIssuer,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotYetValid,
    /// The server's certificate is not X.509 v3 (webpki accepts only v3 end-entity certificates).
    NotV3,
    /// The server's certificate does not name the host Drover connected to.
    WrongName,
    /// Another problem with the server's certificate; rustls' description.
    ServerCertificate(String),
    /// The server asked for a client certificate and none is configured.
    ClientCertificateRequired,
    /// The server refused the client certificate Drover sent, with this TLS alert.
    ClientCertificateRefused(String),
    /// The server did not answer with TLS (an `https://` address for a plain-HTTP port).
    NotTls,
    /// Another handshake failure; rustls' description.
    Other(String),
}

/// The start-up probe met a TLS failure. Never retryable: a certificate, a key or an address has to change.
#[derive(Debug, thiserror::Error)]
#[error("{server} at {addr}: TLS handshake failed: {reason}")]
pub struct ProbeError {
    /// `Consul` or `Nomad`.
    pub server: &'static str,
    /// The base URL probed.
    pub addr: String,
    /// What failed, naming the file concerned.
    pub reason: String,
    /// The classified failure, for tests and callers.
    pub failure: TlsFailure,
}

/// What the probe of one server needs: its name, its settings' names and files, and the client to use.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// `Consul` or `Nomad`.
    pub server: &'static str,
    /// Prefix of its environment variables: `CONSUL` or `NOMAD`.
    pub env: &'static str,
    /// Base URL.
    pub addr: &'a str,
    /// The files the client was built with.
    pub files: TlsFiles<'a>,
    /// The client itself (same TLS settings as every later request).
    pub http: &'a reqwest::Client,
}

/// Probes one server once. `Ok(None)`: it answered (any status). `Ok(Some(err))`: an outage, to be retried later as
/// usual (the caller logs it). `Err`: a TLS failure, fatal at start.
pub async fn probe(target: Target<'_>) -> Result<Option<reqwest::Error>, ProbeError> {
    let url = format!("{}/v1/status/leader", target.addr);
    match target.http.get(url).timeout(PROBE_TIMEOUT).send().await {
        Ok(_) => Ok(None),
        Err(err) => match classify(&err, target.files.client_cert.is_some()) {
            Some(failure) => Err(ProbeError {
                server: target.server,
                addr: target.addr.to_owned(),
                reason: explain(&failure, target.env, target.files),
                failure,
            }),
            None => Ok(Some(err)),
        },
    }
}

/// Finds the rustls error in a request failure's causes and classifies it; `None` when it was not a TLS failure.
/// `client_cert` says whether a client certificate was configured (a handshake failure then blames it).
pub fn classify(err: &(dyn StdError + 'static), client_cert: bool) -> Option<TlsFailure> {
    let tls = find_rustls(err)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => TlsFailure::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => TlsFailure::NotYetValid,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::WrongName
            }
            CertificateError::Other(other)
                if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::UnsupportedCertVersion)) =>
            {
                TlsFailure::NotV3
            }
            other => TlsFailure::ServerCertificate(other.to_string()),
        },
        // TLS 1.3 asks for the client certificate after the client considers the handshake done, so the refusal
        // arrives as an alert on the first read.
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => TlsFailure::ClientCertificateRequired,
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) if !client_cert => {
            TlsFailure::ClientCertificateRequired
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnknownCA
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure),
        ) if client_cert => TlsFailure::ClientCertificateRefused(format!("{alert:?}")),
        rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
        other => TlsFailure::Other(other.to_string()),
    })
}

/// One sentence saying what failed and which file (or setting) to look at.
pub fn explain(failure: &TlsFailure, env: &str, files: TlsFiles<'_>) -> String {
    let ca = match files.ca_cert {
        Some(path) => format!("the CA in {env}_CACERT {path:?}"),
        None => format!("the system's trusted roots ({env}_CACERT is not set)"),
    };
    match failure {
        TlsFailure::UnknownIssuer => format!("the server certificate is not signed by {ca}"),
        TlsFailure::Expired => format!("the server certificate has expired (checked against {ca})"),
        TlsFailure::NotYetValid => format!("the server certificate is not valid yet (checked against {ca})"),
        TlsFailure::NotV3 => {
            format!("the server certificate is X.509 v1, and only v3 certificates are accepted (checked against {ca})")
        }
        TlsFailure::WrongName => "the server certificate does not name the host in the address".to_owned(),
        TlsFailure::ServerCertificate(what) => format!("the server certificate was refused: {what} (CA: {ca})"),
        TlsFailure::ClientCertificateRequired => {
            format!("the server requires a client certificate; set {env}_CLIENT_CERT and {env}_CLIENT_KEY")
        }
        TlsFailure::ClientCertificateRefused(alert) => match files.client_cert {
            Some(path) => {
                format!("the server refused the client certificate in {env}_CLIENT_CERT {path:?} (TLS alert {alert})")
            }
            None => format!("the server refused the handshake (TLS alert {alert})"),
        },
        TlsFailure::NotTls => "the server does not speak TLS (try an http:// address)".to_owned(),
        TlsFailure::Other(what) => format!("{what} (CA: {ca})"),
    }
}

/// The first `rustls::Error` among `err`'s causes. `std::io::Error::source` skips the error it wraps, so a wrapped
/// error is looked into with `get_ref` (hyper and tokio-rustls hand rustls errors up inside `io::Error`).
fn find_rustls<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(tls) = find_rustls(inner) {
                return Some(tls);
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_wrapped(tls: rustls::Error) -> std::io::Error {
        std::io::Error::other(tls)
    }

    #[test]
    fn classify_should_find_rustls_inside_an_io_error() {
        let err = io_wrapped(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(classify(&err, false), Some(TlsFailure::UnknownIssuer));
        let err = io_wrapped(rustls::Error::AlertReceived(AlertDescription::CertificateRequired));
        assert_eq!(classify(&err, false), Some(TlsFailure::ClientCertificateRequired));
        let err = io_wrapped(rustls::Error::AlertReceived(AlertDescription::CertificateExpired));
        assert_eq!(classify(&err, true), Some(TlsFailure::ClientCertificateRefused("CertificateExpired".into())));
        let err = io_wrapped(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(webpki::Error::UnsupportedCertVersion),
        ))));
        assert_eq!(classify(&err, false), Some(TlsFailure::NotV3));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused, false), None, "an outage is not a TLS failure");
    }

    #[test]
    fn explain_should_name_the_file_and_the_variable() {
        let files = TlsFiles { ca_cert: Some("/etc/ca.pem"), client_cert: Some("/etc/c.pem"), client_key: None };
        let text = explain(&TlsFailure::Expired, "NOMAD", files);
        assert_eq!(text, "the server certificate has expired (checked against the CA in NOMAD_CACERT \"/etc/ca.pem\")");
        let text = explain(&TlsFailure::ClientCertificateRefused("BadCertificate".into()), "CONSUL", files);
        assert!(text.contains("CONSUL_CLIENT_CERT \"/etc/c.pem\"") && text.contains("BadCertificate"), "{text}");
        let text = explain(&TlsFailure::ClientCertificateRequired, "CONSUL", TlsFiles::default());
        assert!(text.contains("set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"), "{text}");
    }
}
