//! What the journal stores and answers, as types. States are enums stored as
//! text with one conversion each.

use bytes::Bytes;

/// How the body was encoded when GitHub sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Json,
    /// `application/x-www-form-urlencoded` with the JSON in `payload=`.
    Form,
}

impl ContentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Json => "json",
            ContentKind::Form => "form",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(ContentKind::Json),
            "form" => Some(ContentKind::Form),
            _ => None,
        }
    }
}

/// Whether the signed payload could be read as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseStatus {
    Ok,
    /// Kept anyway (invariant 7), with why it could not be read.
    Unparseable(String),
}

impl ParseStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseStatus::Ok => "ok",
            ParseStatus::Unparseable(_) => "unparseable",
        }
    }
    pub fn error(&self) -> Option<&str> {
        match self {
            ParseStatus::Ok => None,
            ParseStatus::Unparseable(e) => Some(e),
        }
    }
    /// The inverse of `as_str` and `error`, for rows read back.
    pub fn from_columns(status: &str, error: Option<String>) -> Option<Self> {
        match status {
            "ok" => Some(ParseStatus::Ok),
            "unparseable" => Some(ParseStatus::Unparseable(error.unwrap_or_default())),
            _ => None,
        }
    }
}

/// What the journal records about a delivery besides its request bytes.
/// Lists and scheduling read only this, never bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// `X-GitHub-Hook-ID`, or empty when absent.
    pub hook_id: String,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub repository: Option<String>,
    pub owner: Option<String>,
    pub partition_key: String,
    pub received_at_ms: i64,
    pub content_kind: ContentKind,
    pub parse_status: ParseStatus,
}

/// One verified delivery, ready to be journaled.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub meta: DeliveryMeta,
    /// Request headers in HTTP/1 wire form.
    pub headers: Vec<u8>,
    /// The raw body, exactly as signed.
    pub body: Bytes,
    /// The sinks whose filters it matches: one job each, in the same
    /// transaction as the delivery, so an acknowledged delivery never lacks
    /// its jobs.
    pub sinks: Vec<String>,
    /// The event as the admin UI's roll-ups count it: GitHub's own names
    /// only, `other` for the rest (the row keeps the header as sent).
    pub event_label: &'static str,
}

/// What happened to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly committed, durably, with this journal sequence number.
    Queued { id: i64 },
    /// The same (hook id, GUID) was already journaled; nothing changed.
    Duplicate,
}

/// A journaled delivery's metadata (never its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The journal sequence: received order.
    pub id: i64,
    pub meta: DeliveryMeta,
    pub body_size: i64,
}

/// Encodes header pairs in HTTP/1 wire form. Values are kept as raw bytes so
/// that nothing a sender put in a header is altered on its way to consumers.
pub fn encode_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The inverse of [`encode_headers`].
pub fn decode_headers(wire: &[u8]) -> Vec<(String, Vec<u8>)> {
    wire.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).into_owned();
            let value = line[colon + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&line[colon + 1..]);
            Some((name, value.to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_including_non_utf8() {
        let raw: &[u8] = b"caf\xe9";
        let wire = encode_headers([("x-github-event", &b"push"[..]), ("x-odd", raw)]);
        assert_eq!(
            decode_headers(&wire),
            vec![
                ("x-github-event".to_string(), b"push".to_vec()),
                ("x-odd".to_string(), raw.to_vec())
            ]
        );
    }
}
