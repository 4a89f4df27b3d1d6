//! The clients file (`[gateway] clients_file`): the gateway's registry as
//! a file engineers review in a repository. It holds each client's
//! settings and the SHA-256 of its token, never the token. Applied at
//! start, on SIGHUP and by `gatehouse reload`: checked whole first, so a
//! bad file changes nothing and its error names the line and the key.
//!
//! ```toml
//! [[client]]
//! name = "ci"
//! token_sha256 = "9f86d0…"
//! scopes = ["GET /repos/acme/.*"]
//! owners = ["acme"]
//! quota = "500/h"
//! weight = 2
//! priority = "high"
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::clients::{self, Actor, ClientSpec, Limits, Origin, Priority, Settings};
use crate::store::Store;
use crate::store::clients::Applied;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    client: Vec<Spanned<Entry>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token_sha256: Spanned<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    owners: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<Quota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<Priority>,
}

/// `quota = "500/h"` or `quota = 500`.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Quota {
    Units(u64),
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("clients file {path}: {why}")]
    Read { path: String, why: String },
    #[error("clients file {path}, line {line}: {why}")]
    Invalid {
        path: String,
        line: usize,
        why: String,
    },
    #[error("clients file {path}: {why}")]
    Refused { path: String, why: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The file's clients, every one checked as the CLI checks them.
pub fn load(path: &Path) -> Result<Vec<ClientSpec>, RegistryError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Read {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    parse(&text, &shown)
}

fn parse(text: &str, shown: &str) -> Result<Vec<ClientSpec>, RegistryError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        RegistryError::Invalid {
            path: shown.to_string(),
            line,
            why: e.message().to_string(),
        }
    })?;
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut specs = Vec::new();
    for entry in &file.client {
        let line = line_of(text, entry.span().start);
        let e = entry.get_ref();
        let invalid = |line: usize, why: String| RegistryError::Invalid {
            path: shown.to_string(),
            line,
            why: format!("client {:?}: {why}", e.name),
        };
        let hash = e.token_sha256.get_ref().to_ascii_lowercase();
        let hash_line = line_of(text, e.token_sha256.span().start);
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                hash_line,
                "token_sha256: give the token's SHA-256 as 64 hex digits (gatehouse clients add --print-entry writes it)".into(),
            ));
        }
        if hash.starts_with(clients::TOKEN_PREFIX) {
            return Err(invalid(hash_line, "token_sha256 holds a token".into()));
        }
        let quota = match &e.quota {
            None => None,
            Some(Quota::Units(u)) => Some(*u),
            Some(Quota::Text(t)) => {
                Some(clients::parse_quota(t).map_err(|err| invalid(line, err.to_string()))?)
            }
        };
        let settings = Settings {
            name: e.name.clone(),
            scopes: e.scopes.clone(),
            owners: e.owners.clone(),
            limits: Limits {
                quota_per_hour: quota,
                weight: e.weight.unwrap_or(1),
                priority: e.priority.unwrap_or_default(),
            },
        };
        let spec =
            clients::spec(&settings, hash.clone()).map_err(|err| invalid(line, err.to_string()))?;
        if !names.insert(spec.name.clone()) {
            return Err(invalid(line, "named twice".into()));
        }
        if !hashes.insert(hash) {
            return Err(invalid(
                hash_line,
                "token_sha256 is another client's: each client needs its own token".into(),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Checks the file whole, then makes the store's file clients what it
/// says (one transaction); an error changes nothing.
pub async fn apply(store: &Store, path: &Path, now_ms: i64) -> Result<Applied, RegistryError> {
    let specs = load(path)?;
    let by = Actor {
        origin: Origin::File,
        who: path.display().to_string(),
    };
    store
        .apply_client_file(&specs, &by, now_ms)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Invalid(why) => RegistryError::Refused {
                path: path.display().to_string(),
                why,
            },
            e => e.into(),
        })
}

/// [`apply`] at the system's now, counted in the gateway's metrics
/// (`gatehouse_gateway_clients_file_loads_total`, `..._ok`).
pub async fn apply_counted(
    store: &Store,
    path: &Path,
    m: &crate::gateway::metrics::GatewayMetrics,
) -> Result<Applied, RegistryError> {
    let result = apply(store, path, crate::clock::now_ms()).await;
    let label = crate::gateway::metrics::ResultLabel {
        result: if result.is_ok() { "applied" } else { "refused" }.into(),
    };
    m.clients_file_loads.get_or_create(&label).inc();
    m.clients_file_ok.set(i64::from(result.is_ok()));
    result
}

/// The entry to paste into the clients file for a client holding `token`.
pub fn entry(settings: &Settings, token: &str) -> Result<String, clients::ClientError> {
    let spec = clients::spec(settings, clients::hash_token(token))?;
    #[derive(Serialize)]
    struct Out {
        client: Vec<Entry>,
    }
    let out = Out {
        client: vec![Entry {
            name: spec.name,
            token_sha256: Spanned::new(0..0, spec.token_hash),
            scopes: spec.scopes,
            owners: spec.owners,
            quota: spec
                .limits
                .quota_per_hour
                .map(|q| Quota::Text(format!("{q}/h"))),
            weight: Some(spec.limits.weight).filter(|w| *w != 1),
            priority: Some(spec.limits.priority).filter(|p| *p != Priority::Normal),
        }],
    };
    Ok(toml::to_string(&out).expect("an entry serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn an_entry_reads_back_as_it_was_written() {
        let settings = Settings {
            name: "ci".into(),
            scopes: vec!["GET /repos/acme/.*".into()],
            owners: vec!["Acme".into()],
            limits: Limits {
                quota_per_hour: Some(500),
                weight: 2,
                priority: Priority::High,
            },
        };
        let text = entry(&settings, "gth_x").unwrap();
        let specs = parse(&text, "clients.toml").unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].token_hash, clients::hash_token("gth_x"));
        assert_eq!(specs[0].owners, vec!["acme".to_string()]);
        assert_eq!(specs[0].limits, settings.limits);
        assert!(!text.contains("gth_x"), "{text}");
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let text = format!(
            "[[client]]\nname = \"ok\"\ntoken_sha256 = \"{HASH}\"\n\n[[client]]\nname = \"bad\"\ntoken_sha256 = \"abc\"\n"
        );
        let e = parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("line 7") && e.contains("token_sha256"), "{e}");
        let text =
            format!("[[client]]\nname = \"x\"\ntoken_sha256 = \"{HASH}\"\nscopes = [\"GET /(\"]\n");
        let e = parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("scope"), "{e}");
        let text = format!("[[client]]\nname = \"x\"\ntoken_sha256 = \"{HASH}\"\nqouta = 5\n");
        let e = parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("qouta"), "{e}");
        let text = format!(
            "[[client]]\nname = \"x\"\ntoken_sha256 = \"{HASH}\"\n[[client]]\nname = \"x\"\ntoken_sha256 = \"{}\"\n",
            HASH.replace('9', "8")
        );
        let e = parse(&text, "c.toml").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("named twice"), "{e}");
    }
}
