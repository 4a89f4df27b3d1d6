//! Signature verification and its header parsing: any secret, any
//! `X-Hub-Signature-256` bytes, any body. Never panics; what we sign
//! verifies, and a changed body does not.
#![no_main]

use gatehouse::config::Secret;
use gatehouse::webhook::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (secret, rest) = rest.split_at((n as usize).min(rest.len()));
    let header_len = rest.len() / 3;
    let (header, body) = rest.split_at(header_len);
    let secret_text = String::from_utf8_lossy(secret).into_owned();
    let secrets = [Secret::new(secret_text.clone())];
    let _ = verify(&secrets, body, Some(header));
    let _ = verify(&secrets, body, None);
    let good = sign(secret_text.as_bytes(), body);
    assert!(verify(&secrets, body, Some(good.as_bytes())));
    let mut other = body.to_vec();
    other.push(0);
    assert!(!verify(&secrets, &other, Some(good.as_bytes())));
});
