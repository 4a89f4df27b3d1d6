//! What the journal needs to know about a payload (action, installation,
//! repository, owner, partition key), read without building the whole JSON
//! tree: the large parts of a payload (commits, diffs) are skipped by serde,
//! so a 25 MB push costs little more than its bytes.

use serde::Deserialize;
use serde_json::Value;

use crate::config::PartitionBy;

/// Deliveries that name no owner at all share this partition.
pub const NO_PARTITION: &str = "-";

/// The journal's view of one payload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub owner: Option<String>,
}

impl Envelope {
    /// The unit of ordering (DESIGN.md): the owner login, or the
    /// repository's full name when partitioning by repository.
    pub fn partition_key(&self, by: PartitionBy) -> String {
        let key = match by {
            PartitionBy::Repository => self.repository.as_ref().or(self.owner.as_ref()),
            PartitionBy::Owner => self.owner.as_ref(),
        };
        key.cloned().unwrap_or_else(|| NO_PARTITION.to_string())
    }
}

/// The top-level fields we read. Each is kept as a small `Value` rather
/// than a typed struct, so an odd shape in one field (a `repository` that
/// is a string, say) cannot make a valid payload
/// unparseable. Unknown keys are skipped by serde's `IgnoredAny`, which
/// allocates nothing (a `flatten` catch-all would buffer them all).
#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    action: Option<Value>,
    #[serde(default)]
    repository: Option<Value>,
    #[serde(default)]
    organization: Option<Value>,
    #[serde(default)]
    installation: Option<Value>,
    #[serde(default)]
    marketplace_purchase: Option<Value>,
    #[serde(default)]
    sponsorship: Option<Value>,
}

/// Reads the envelope of a JSON payload. Errors say why the bytes are not a
/// JSON object; the caller journals them anyway (invariant 7).
pub fn extract(json: &[u8]) -> Result<Envelope, String> {
    // serde would also read a struct from a JSON array, positionally.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("payload is not a JSON object".to_string());
    }
    let top: Top = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let login =
        |v: Option<&Value>| -> Option<String> { v?.get("login")?.as_str().map(str::to_string) };
    let repo = top.repository.as_ref();
    // In most events `installation` is only {id}; its `account` exists in
    // installation events, which have no repository.
    let owner = login(repo.and_then(|r| r.get("owner")))
        .or_else(|| login(top.organization.as_ref()))
        .or_else(|| login(top.installation.as_ref().and_then(|i| i.get("account"))))
        .or_else(|| {
            login(
                top.marketplace_purchase
                    .as_ref()
                    .and_then(|m| m.get("account")),
            )
        })
        .or_else(|| login(top.sponsorship.as_ref().and_then(|s| s.get("sponsorable"))));
    Ok(Envelope {
        action: top
            .action
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_string),
        installation_id: top
            .installation
            .as_ref()
            .and_then(|i| i.get("id"))
            .and_then(Value::as_i64),
        repository: repo
            .and_then(|r| r.get("full_name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_comes_from_repository_first() {
        let e = extract(
            br#"{"action":"opened","repository":{"full_name":"o/r","owner":{"login":"o"}},
                "organization":{"login":"org"},"installation":{"id":7}}"#,
        )
        .unwrap();
        assert_eq!(e.owner.as_deref(), Some("o"));
        assert_eq!(e.repository.as_deref(), Some("o/r"));
        assert_eq!(e.installation_id, Some(7));
        assert_eq!(e.partition_key(PartitionBy::Owner), "o");
        assert_eq!(e.partition_key(PartitionBy::Repository), "o/r");
    }

    #[test]
    fn odd_shapes_do_not_make_valid_json_unparseable() {
        let e = extract(br#"{"repository":"x","action":5,"installation":[1]}"#).unwrap();
        assert_eq!(e, Envelope::default());
        assert_eq!(e.partition_key(PartitionBy::Owner), NO_PARTITION);
    }

    #[test]
    fn non_objects_and_garbage_are_errors() {
        assert!(extract(b"[1,2]").is_err());
        assert!(extract(b"not json").is_err());
        assert!(extract(b"{\"a\":").is_err());
        assert!(extract(b"").is_err());
    }

    fn nested(key: &str, depth: usize) -> String {
        format!("{{\"{key}\":{}{}}}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn deep_nesting_never_crashes() {
        // Skipped fields are walked without recursion: valid JSON stays ok.
        assert!(extract(nested("commits", 100_000).as_bytes()).is_ok());
        // A field we read hits serde_json's recursion limit: an error.
        assert!(extract(nested("repository", 100_000).as_bytes()).is_err());
    }
}
