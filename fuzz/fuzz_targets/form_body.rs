//! The `application/x-www-form-urlencoded` body GitHub may send
//! (`payload=<json>`): any bytes decode or are refused, never a panic.
//! Invalid UTF-8 in the value decodes lossily (U+FFFD): the JSON parser
//! then refuses it, and the raw signed bytes are kept regardless.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(json) = gatehouse::webhook::form_payload(data) {
        assert!(std::str::from_utf8(&json).is_ok());
    }
});
