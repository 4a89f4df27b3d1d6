//! GitHub's webhook protocol as more than one layer speaks it: ingest
//! verifies signatures and reads form-encoded bodies; forwarding signs
//! again; the admin UI and the Actions sink decode forms.

pub mod signature;

/// The JSON inside a form-encoded body (`payload=<url-encoded json>`).
pub fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_payload_decodes_plus_and_percent() {
        assert_eq!(
            form_payload(b"a=1&payload=%7B%22x%22%3A+1%7D").as_deref(),
            Some(&b"{\"x\": 1}"[..])
        );
        assert_eq!(form_payload(b"other=1"), None);
    }
}
