//! HTTPS for both servers (`--tls-dir`): a certificate set (a CA, a server certificate for `127.0.0.1`/`localhost`,
//! a client certificate), the rustls server configuration built from it, and deliberately flawed sets for tests.
//!
//! Real Consul and Nomad agents serve their HTTP API over TLS with `tls { ca_file cert_file key_file }` and ask for a
//! client certificate only with `verify_https_client` / `verify_incoming_https` (the simulator's
//! `--tls-verify-incoming`). Clients then verify the server against the CA (`CONSUL_CACERT`, `NOMAD_CACERT`).
//!
//! Flaws a test can ask for, per certificate ([`Shape`]): expired, or X.509 version 1. rustls (through webpki)
//! refuses a v1 end-entity certificate (`webpki::Error::UnsupportedCertVersion`, `rustls-webpki` `src/cert.rs`
//! `version3`: "We allow only v3"). rcgen writes only v3, so a v1 certificate is made here from rcgen's v3 one: its
//! `version` and `extensions` fields are removed from the TBS and the result is signed again with the CA's key
//! (RFC 5280 §4.1: a certificate without the version field is v1, and v1 has no extensions). A certificate from
//! another CA is simply another [`CertSet`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SigningKey as _,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA certificate file a client trusts.
pub const CA_FILE: &str = "ca.pem";
/// The server's certificate (for `127.0.0.1` and `localhost`).
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The server certificate's private key.
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// A client certificate the CA signed, for mTLS.
pub const CLIENT_CERT_FILE: &str = "client.pem";
/// The client certificate's private key.
pub const CLIENT_KEY_FILE: &str = "client-key.pem";

/// Why TLS could not be set up. Never retryable: a file or the directory has to be fixed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not generate a key or a certificate.
    #[error("cannot generate the {what}")]
    GenerateFailed {
        /// Which certificate or key.
        what: &'static str,
        /// rcgen's complaint.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate or key file could not be written.
    #[error("cannot write {path:?}")]
    WriteFailed {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {path:?}")]
    ReadFailed {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("no usable PEM {what} in {path:?}")]
    InvalidPem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A DER certificate is not shaped as rcgen writes them (turning it into v1 needs that shape).
    #[error("cannot rewrite the {what} as X.509 v1: unexpected DER")]
    UnexpectedDer {
        /// Which certificate.
        what: &'static str,
    },
    /// rustls refused the server configuration (e.g. a key type it cannot sign with).
    #[error("rustls refused the server certificate and key")]
    ServerConfigFailed(#[source] rustls::Error),
    /// rustls refused the CA as a root for client certificates.
    #[error("rustls refused the CA for verifying client certificates")]
    ClientVerifierFailed(#[source] rustls::server::VerifierBuilderError),
}

/// How one certificate of a set is made: valid, or with one flaw a client or server must refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Valid from 1975 to 4096 (rcgen's defaults), v3 with the usual extensions.
    #[default]
    Valid,
    /// Valid only during 2020: expired for any clock running today.
    Expired,
    /// X.509 version 1 (no version field, no extensions); otherwise valid and signed by the set's CA.
    V1,
}

/// What [`CertSet::generate`] makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CertOptions {
    /// The server certificate's shape.
    pub server: Shape,
    /// The client certificate's shape.
    pub client: Shape,
}

/// A CA and the server and client certificates it signed, as PEM text (the five files of `--tls-dir`).
#[derive(Clone, Debug)]
pub struct CertSet {
    /// The CA certificate (self-signed, P-256).
    pub ca_pem: String,
    /// The server certificate for `127.0.0.1` and `localhost`.
    pub server_pem: String,
    /// The server's PKCS#8 private key.
    pub server_key_pem: String,
    /// The client certificate (`clientAuth`).
    pub client_pem: String,
    /// The client's PKCS#8 private key.
    pub client_key_pem: String,
}

impl CertSet {
    /// Generates a fresh CA and the two certificates it signs, shaped as `options` says.
    ///
    /// # Errors
    /// When rcgen fails (it does not for these parameters) or a v1 rewrite meets unexpected DER.
    pub fn generate(options: CertOptions) -> Result<CertSet, TlsError> {
        let gen_err = |what| move |source| TlsError::GenerateFailed { what, source };
        let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA certificate"))?;
        // A name of its own per set: a client that trusts another set's CA then finds no issuer at all
        // (`UnknownIssuer`), rather than an issuer of the same name whose signature fails (`BadSignature`).
        let ca_name = format!("drover-sim test CA {}", uuid::Uuid::new_v4().simple());
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca_params.self_signed(&ca_key).map_err(gen_err("CA certificate"))?.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |what: &'static str, names: Vec<String>, eku, shape| -> Result<(String, String), TlsError> {
            let key = KeyPair::generate().map_err(gen_err(what))?;
            let mut params = CertificateParams::new(names).map_err(gen_err(what))?;
            params.distinguished_name.push(DnType::CommonName, what);
            params.extended_key_usages = vec![eku];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            if shape == Shape::Expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = params.signed_by(&key, &issuer).map_err(gen_err(what))?;
            let pem = if shape == Shape::V1 {
                let der = to_v1(cert.der(), issuer.key(), what)?;
                pem("CERTIFICATE", &der)
            } else {
                cert.pem()
            };
            Ok((pem, key.serialize_pem()))
        };
        let server_names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (server_pem, server_key_pem) =
            leaf("drover-sim server", server_names, ExtendedKeyUsagePurpose::ServerAuth, options.server)?;
        let (client_pem, client_key_pem) =
            leaf("drover-sim client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, options.client)?;
        Ok(CertSet { ca_pem, server_pem, server_key_pem, client_pem, client_key_pem })
    }

    fn files(&self) -> [(&'static str, &str); 5] {
        [
            (CA_FILE, &self.ca_pem),
            (SERVER_CERT_FILE, &self.server_pem),
            (SERVER_KEY_FILE, &self.server_key_pem),
            (CLIENT_CERT_FILE, &self.client_pem),
            (CLIENT_KEY_FILE, &self.client_key_pem),
        ]
    }

    /// Writes the five files into `dir` (created if missing), replacing what is there.
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::WriteFailed { path: dir.to_owned(), source })?;
        for (name, text) in self.files() {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| TlsError::WriteFailed { path, source })?;
        }
        Ok(())
    }

    /// Reads the five files from `dir` (e.g. a set a test prepared with a flaw).
    ///
    /// # Errors
    /// When a file cannot be read.
    pub fn read(dir: &Path) -> Result<CertSet, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TlsError::ReadFailed { path, source })
        };
        Ok(CertSet {
            ca_pem: read(CA_FILE)?,
            server_pem: read(SERVER_CERT_FILE)?,
            server_key_pem: read(SERVER_KEY_FILE)?,
            client_pem: read(CLIENT_CERT_FILE)?,
            client_key_pem: read(CLIENT_KEY_FILE)?,
        })
    }

    /// The rustls configuration both servers use: this set's server certificate, HTTP/1.1 only, and when
    /// `verify_incoming` a client certificate signed by this set's CA is required (Consul's
    /// `verify_incoming`, Nomad's `verify_https_client`); without it no client certificate is asked for.
    ///
    /// # Errors
    /// When a PEM does not parse or rustls refuses the key or the CA.
    pub fn server_config(&self, verify_incoming: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = parse_certs(&self.server_pem, SERVER_CERT_FILE)?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .map_err(|_| TlsError::InvalidPem { what: "private key", path: SERVER_KEY_FILE.into() })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::ServerConfigFailed)?;
        let builder = if verify_incoming {
            let mut roots = rustls::RootCertStore::empty();
            for ca in parse_certs(&self.ca_pem, CA_FILE)? {
                roots.add(ca).map_err(TlsError::ServerConfigFailed)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(TlsError::ClientVerifierFailed)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        // Not `with_single_cert`: it parses the certificate with webpki and so refuses to *serve* a v1 one, which
        // real servers (Go's crypto/tls) do serve; refusing it is the client's job, and that is what is tested.
        let signing_key = provider.key_provider.load_private_key(key).map_err(TlsError::ServerConfigFailed)?;
        let certified = rustls::sign::CertifiedKey::new(certs, signing_key);
        let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// How `--tls-dir` sets up a simulator: generates a fresh set into `dir`, or with `keep_existing` uses the set
/// already there (a test's flawed one), and returns the server configuration.
///
/// # Errors
/// As [`CertSet::generate`], [`CertSet::write`], [`CertSet::read`] and [`CertSet::server_config`].
pub fn setup_dir(
    dir: &Path,
    keep_existing: bool,
    verify_incoming: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let set = if keep_existing {
        CertSet::read(dir)?
    } else {
        let set = CertSet::generate(CertOptions::default())?;
        set.write(dir)?;
        set
    };
    set.server_config(verify_incoming)
}

fn parse_certs(text: &str, file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes()).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::InvalidPem { what: "certificate", path: file.into() });
    }
    Ok(certs)
}

/// PEM armour with 64-column base64 lines (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Rewrites a v3 certificate as v1: drops `version [0]` and `extensions [3]` from the TBS, and signs the new TBS
/// with `ca_key` (the same algorithm as the original, which the outer `signatureAlgorithm` still names).
fn to_v1(der: &[u8], ca_key: &KeyPair, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let bad = || TlsError::UnexpectedDer { what };
    let (tag, cert, _) = der_read(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (tag, tbs, rest) = der_read(cert).ok_or_else(bad)?;
    let (alg_tag, _, _) = der_read(rest).ok_or_else(bad)?;
    if tag != 0x30 || alg_tag != 0x30 {
        return Err(bad());
    }
    let sig_alg_len = rest.len() - der_read(rest).map_or(0, |(_, _, after)| after.len());
    let sig_alg = &rest[..sig_alg_len];
    let mut fields = Vec::new();
    let mut input = tbs;
    while !input.is_empty() {
        let (tag, _, after) = der_read(input).ok_or_else(bad)?;
        let whole = &input[..input.len() - after.len()];
        // [0] EXPLICIT version and [3] EXPLICIT extensions: what makes a certificate v3.
        if tag != 0xA0 && tag != 0xA3 {
            fields.extend_from_slice(whole);
        }
        input = after;
    }
    let new_tbs = der_write(0x30, &fields);
    let signature = ca_key.sign(&new_tbs).map_err(|source| TlsError::GenerateFailed { what, source })?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut body = new_tbs;
    body.extend_from_slice(sig_alg);
    body.extend(der_write(0x03, &bits));
    Ok(der_write(0x30, &body))
}

/// Reads one DER TLV: `(tag, contents, rest)`. Single-byte tags, definite lengths (DER has nothing else).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (bytes, after) = input.split_at(n);
        input = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if input.len() < len {
        return None;
    }
    let (contents, rest) = input.split_at(len);
    Some((tag, contents, rest))
}

/// Writes one DER TLV with a minimal length.
fn der_write(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_der(pem_text: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem_text.as_bytes()).expect("a PEM certificate")
    }

    fn verify_server(set: &CertSet, ca: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(leaf_der(ca)).expect("the CA parses");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("a verifier");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
        let now = rustls::pki_types::UnixTime::now();
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &leaf_der(&set.server_pem),
            &[],
            &name,
            &[],
            now,
        )
        .map(|_| ())
    }

    #[test]
    fn cert_set_should_verify_against_its_own_ca_only() {
        let set = CertSet::generate(CertOptions::default()).unwrap();
        verify_server(&set, &set.ca_pem).expect("the server certificate verifies against its CA");
        let other = CertSet::generate(CertOptions::default()).unwrap();
        let err = verify_server(&set, &other.ca_pem).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), "{err:?}");
        set.server_config(true).expect("a server configuration with client verification");
    }

    #[test]
    fn cert_set_should_make_an_expired_server_certificate_on_request() {
        let set = CertSet::generate(CertOptions { server: Shape::Expired, ..CertOptions::default() }).unwrap();
        let err = verify_server(&set, &set.ca_pem).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn cert_set_should_make_a_v1_certificate_that_webpki_refuses_for_its_version() {
        let set = CertSet::generate(CertOptions { server: Shape::V1, ..CertOptions::default() }).unwrap();
        let der = leaf_der(&set.server_pem);
        let (_, cert, _) = der_read(&der).unwrap();
        let (_, tbs, _) = der_read(cert).unwrap();
        assert_eq!(tbs.first(), Some(&0x02), "a v1 TBS starts with the serial number, not [0] version");
        let err = verify_server(&set, &set.ca_pem).unwrap_err();
        assert!(format!("{err:?}").contains("UnsupportedCertVersion"), "{err:?}");
    }

    #[test]
    fn cert_set_should_round_trip_through_a_directory() {
        let dir = std::env::temp_dir().join(format!("drover-sim-tls-{}", std::process::id()));
        let set = CertSet::generate(CertOptions::default()).unwrap();
        set.write(&dir).unwrap();
        let back = CertSet::read(&dir).unwrap();
        assert_eq!(back.ca_pem, set.ca_pem);
        assert_eq!(back.client_key_pem, set.client_key_pem);
        setup_dir(&dir, true, false).expect("the written set serves");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn der_write_should_round_trip_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let body = vec![7u8; len];
            let tlv = der_write(0x04, &body);
            let (tag, contents, rest) = der_read(&tlv).unwrap();
            assert_eq!((tag, contents.len(), rest.len()), (0x04, len, 0));
        }
    }
}
