//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body bytes,
//! compared in constant time, against every configured secret (rotation).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";

/// The signature header value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// True when `header` is a well-formed signature of `body` under any of
/// `secrets`. A malformed header is simply not valid; it never panics.
pub fn verify(secrets: &[Secret], body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(expected) = header.and_then(parse_header) else {
        return false;
    };
    // Every secret is tried so the time taken does not depend on which one
    // matched; each comparison is constant-time (`verify_slice`).
    secrets.iter().fold(false, |matched, secret| {
        let mut mac =
            HmacSha256::new_from_slice(secret.expose()).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&expected).is_ok() | matched
    })
}

fn parse_header(value: &[u8]) -> Option<[u8; 32]> {
    let hex_part = value.strip_prefix(PREFIX.as_bytes())?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_docs_vector() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let s = [Secret::new("k")];
        for h in [
            &b""[..],
            b"sha256=",
            b"sha1=abcd",
            b"sha256=zz",
            b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            b"\xff\xfe",
        ] {
            assert!(!verify(&s, b"x", Some(h)));
        }
        assert!(!verify(&s, b"x", None));
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let s = [Secret::new("k")];
        let sig = sign(b"k", b"body")
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        assert!(verify(&s, b"body", Some(sig.as_bytes())));
    }
}
