//! Minting: the Authorization header for each credential. An App signs
//! its JWT; an installation's token is minted with it, cached until shortly
//! before it expires, and minted again when GitHub refuses it; a personal
//! token is sent as configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use sha2::{Digest, Sha256};

use super::Pool;
use super::credential::CredId;
use super::error::{PoolError, http_error};
use crate::github::app::AppAuth;

/// Installation tokens live an hour; mint a new one this long before.
const REFRESH_AHEAD_SECS: i64 = 300;

/// An installation's token and its expiry (epoch seconds), behind an
/// async mutex held while minting.
type TokenCell = Arc<tokio::sync::Mutex<Option<(String, i64)>>>;

/// What discovery learned of an App on one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// None: not installed there.
    pub installation: Option<i64>,
    /// An installation on selected repositories: their names (lowercase,
    /// without the owner). None: every repository of the owner.
    pub selected: Option<std::collections::HashSet<String>>,
    /// When it was learned (the pool's clock, ms): looked up again an
    /// hour on.
    pub at_ms: i64,
}

impl Found {
    /// Whether it can serve a request about `repo` (None: about none).
    pub fn sees(&self, repo: Option<&str>) -> bool {
        self.installation.is_some()
            && match (&self.selected, repo) {
                (Some(names), Some(r)) => names.contains(&r.to_lowercase()),
                _ => true,
            }
    }
}

pub(super) struct AppEntry {
    pub auth: AppAuth,
    /// What its installations may be spent on.
    pub purposes: Vec<crate::config::Purpose>,
    /// Owner (lowercase) → where the App is installed there, if it is.
    pub installations: Mutex<HashMap<String, Found>>,
    /// Installation → its token; the async mutex makes minting
    /// single-flight per installation.
    tokens: Mutex<HashMap<i64, TokenCell>>,
}

impl AppEntry {
    /// Forgets the installation tokens minted so far: after a key
    /// rotation, the next are minted with the new key.
    pub fn forget_tokens(&self) {
        self.tokens.lock().expect("tokens lock").clear();
    }

    pub fn new(auth: AppAuth, purposes: Vec<crate::config::Purpose>) -> AppEntry {
        AppEntry {
            auth,
            purposes,
            installations: Mutex::default(),
            tokens: Mutex::default(),
        }
    }
}

/// The cached token, unless asked for a fresh one or it expires within
/// the refresh margin.
fn reusable(cached: Option<&(String, i64)>, fresh: bool, now_secs: i64) -> Option<&str> {
    cached
        .filter(|(_, expires)| !fresh && expires - REFRESH_AHEAD_SECS > now_secs)
        .map(|(token, _)| token.as_str())
}

/// A minted token and when it expires, from GitHub's answer (an hour when
/// it names no time it can be read by).
fn minted(v: &serde_json::Value, now_secs: i64) -> Result<(String, i64), PoolError> {
    let token = v["token"]
        .as_str()
        .ok_or_else(|| PoolError::Http("no token in answer".into()))?;
    let expires = crate::clock::parse_rfc3339_ms(v["expires_at"].as_str())
        .map(|ms| ms / 1000)
        .unwrap_or(now_secs + 3600);
    Ok((token.to_string(), expires))
}

/// Token expiry is GitHub's, so it is compared with the system's clock,
/// never the pool's as a test turns it.
fn githubs_now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}

impl Pool {
    /// The Authorization header for a credential, and its fingerprint.
    pub(super) async fn authorization(
        &self,
        id: &CredId,
        fresh: bool,
    ) -> Result<(String, String), PoolError> {
        let header = match id {
            CredId::App(app) => format!("Bearer {}", self.app(*app)?.auth.jwt()),
            CredId::Token(name) => {
                let t = self
                    .tokens
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| PoolError::Config(format!("token {name} is not configured")))?;
                format!("token {}", String::from_utf8_lossy(t.secret().expose()))
            }
            CredId::Installation { app, installation } => {
                let app = self.app(*app)?;
                format!(
                    "token {}",
                    self.installation_token(app, *installation, fresh).await?
                )
            }
        };
        let tag = hex::encode(&Sha256::digest(header.as_bytes())[..8]);
        Ok((header, tag))
    }

    pub(super) fn app(&self, id: i64) -> Result<&AppEntry, PoolError> {
        self.apps
            .iter()
            .find(|a| a.auth.id == id)
            .ok_or_else(|| PoolError::Config(format!("app {id} is not configured")))
    }

    /// A cached installation token, minted when missing, expiring soon, or
    /// refused; never minted twice at once for one installation.
    pub(super) async fn installation_token(
        &self,
        app: &AppEntry,
        installation: i64,
        fresh: bool,
    ) -> Result<String, PoolError> {
        let cell = app
            .tokens
            .lock()
            .expect("tokens lock")
            .entry(installation)
            .or_default()
            .clone();
        let mut cached = cell.lock().await;
        if let Some(token) = reusable(cached.as_ref(), fresh, githubs_now_secs()) {
            return Ok(token.to_string());
        }
        let resp = self
            .http
            .post(format!(
                "{}/app/installations/{installation}/access_tokens",
                self.api
            ))
            .bearer_auth(app.auth.jwt())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .send()
            .await
            .map_err(http_error)?;
        if resp.status() == StatusCode::NOT_FOUND {
            // Uninstalled: forget where we thought it was.
            app.installations
                .lock()
                .expect("installations lock")
                .retain(|_, v| v.installation != Some(installation));
        }
        if resp.status() != StatusCode::CREATED {
            return Err(PoolError::Http(format!(
                "app {} could not mint a token for installation {installation}: HTTP {}",
                app.auth.id,
                resp.status()
            )));
        }
        let v: serde_json::Value = resp.json().await.map_err(http_error)?;
        let (token, expires) = minted(&v, githubs_now_secs())?;
        *cached = Some((token.clone(), expires));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_until_five_minutes_before_it_expires_unless_refused() {
        let cached = ("ghs_x".to_string(), 10_000);
        assert_eq!(reusable(Some(&cached), false, 9_699), Some("ghs_x"));
        assert_eq!(
            reusable(Some(&cached), false, 9_700),
            None,
            "within the margin"
        );
        assert_eq!(reusable(Some(&cached), true, 0), None, "GitHub refused it");
        assert_eq!(reusable(None, false, 0), None);
    }

    #[test]
    fn a_minted_token_expires_when_github_says_else_in_an_hour() {
        let v = serde_json::json!({"token": "ghs_1", "expires_at": "2026-12-04T10:00:00Z"});
        assert_eq!(minted(&v, 0).unwrap(), ("ghs_1".into(), 1_796_378_400));
        let v = serde_json::json!({"token": "ghs_2", "expires_at": "soon"});
        assert_eq!(minted(&v, 100).unwrap(), ("ghs_2".into(), 3_700));
        assert!(minted(&serde_json::json!({"message": "Bad credentials"}), 0).is_err());
    }
}
