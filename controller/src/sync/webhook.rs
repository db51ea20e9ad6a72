//! The webhook of `drover sync --watch`: `POST /api/v1/sync/<name>` authenticated as GitHub signs its deliveries,
//! `X-Hub-Signature-256: sha256=<hex of HMAC-SHA256(secret, body)>`
//! (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>). Gitea, Forgejo and
//! GitLab-compatible senders can be set to the same form.
//!
//! HMAC (RFC 2104) is written here over `sha2`, already a dependency, rather than adding the `hmac` crate for one
//! function; the RFC 4231 and GitHub test vectors below pin it. The comparison is constant-time.

use sha2::{Digest, Sha256};

/// The header GitHub sends.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// SHA-256's block size, which HMAC pads the key to.
const BLOCK: usize = 64;

/// Why a delivery is refused. Never retryable: the sender's secret or the body is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    /// The header is not `sha256=` and 64 hex digits.
    #[error("the X-Hub-Signature-256 header is not sha256=<64 hex digits>")]
    Malformed,
    /// The signature is not the body's HMAC with this secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The header value a sender with `secret` puts on `body`: `sha256=<hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

/// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body` and `secret`, in constant time for a
/// well-formed header.
///
/// # Errors
/// The header is missing, malformed, or does not match.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digits = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let given = hex::decode(hex_digits).map_err(|_| SignatureError::Malformed)?;
    if given.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let expected = hmac_sha256(secret, body);
    let difference = given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference == 0 { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_should_match_rfc_4231() {
        // Test case 2 (a short key) and test case 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn verify_should_accept_githubs_documented_example_and_refuse_others() {
        // From GitHub's "Validating webhook deliveries" page.
        let secret = b"It's a Secret to Everybody";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, b"Hello, World!"), header);
        assert_eq!(verify(secret, b"Hello, World!", Some(header)), Ok(()));
        assert_eq!(verify(secret, b"Hello, World?", Some(header)), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", b"Hello, World!", Some(header)), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, b"x", None), Err(SignatureError::Missing));
        assert_eq!(verify(secret, b"x", Some("sha1=abcd")), Err(SignatureError::Malformed));
        assert_eq!(verify(secret, b"x", Some("sha256=zz")), Err(SignatureError::Malformed));
        assert_eq!(verify(secret, b"x", Some("sha256=abcd")), Err(SignatureError::Malformed));
    }
}
