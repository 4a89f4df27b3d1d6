//! Discovery: which credentials can act for an owner (each App's
//! installation there, with the repositories it was given when they are a
//! selection, found once and cached an hour, and the tokens allowed for
//! it), and what every credential's budgets are (`probe`).

use std::collections::HashSet;

use http::StatusCode;

use super::Pool;
use super::credential::{CredId, Reach};
use super::error::{PoolError, http_error};
use super::minting::{AppEntry, Found};

/// What discovery learned is looked up again after this long (an
/// `installation` or `installation_repositories` delivery forgets it at
/// once).
const REFRESH_MS: i64 = 3_600_000;

/// The repository a REST path is about (`/repos/{owner}/{repo}/...`).
pub(super) fn repo_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/repos/")?;
    let rest = rest.split(['?', '#']).next()?;
    let mut parts = rest.split('/');
    let (_owner, repo) = (parts.next()?, parts.next()?);
    (!repo.is_empty()).then_some(repo)
}

/// One credential's budget for one resource, as `GET /rate_limit` says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeRow {
    pub credential: String,
    /// The account an installation is on, or the owners a token may serve.
    pub owner: String,
    pub resource: String,
    pub limit: u64,
    pub remaining: u64,
    pub reset: i64,
}

/// Where an App is installed for an owner, as discovery found it.
pub struct Installed {
    pub app: i64,
    pub owner: String,
    pub installation: Option<i64>,
    /// The repositories of an installation on a selection (None: all).
    pub selected: Option<Vec<String>>,
}

impl Pool {
    /// The installations and tokens that can act for `owner` within `reach`.
    /// With `repo`, an installation counts only if it can see that
    /// repository.
    pub(super) async fn candidates(
        &self,
        owner: &str,
        reach: Reach<'_>,
        purpose: Option<crate::config::Purpose>,
        repo: Option<&str>,
    ) -> Result<Vec<CredId>, PoolError> {
        let lower = owner.to_lowercase();
        let mut out = Vec::new();
        if reach.allows_installation_on(&lower) {
            let apps = self
                .apps
                .iter()
                .filter(|a| purpose.is_none_or(|p| a.purposes.contains(&p)));
            for app in apps {
                let found = self.installation_of(app, owner).await?;
                if let (Some(installation), true) = (found.installation, found.sees(repo)) {
                    out.push(CredId::Installation {
                        app: app.auth.id,
                        installation,
                    });
                }
            }
        }
        out.extend(
            self.tokens
                .iter()
                .filter(|t| t.serves(&lower, reach) && t.for_purpose(purpose))
                .map(|t| CredId::Token(t.name.clone())),
        );
        Ok(out)
    }

    /// Where an App is installed for `owner` (an org, else a user), and on
    /// which repositories when a selection; cached an hour.
    async fn installation_of(&self, app: &AppEntry, owner: &str) -> Result<Found, PoolError> {
        let key = owner.to_lowercase();
        let now = self.clock.now_ms();
        if let Some(found) = app
            .installations
            .lock()
            .expect("installations lock")
            .get(&key)
            .filter(|f| now - f.at_ms < REFRESH_MS)
        {
            return Ok(found.clone());
        }
        let mut found = Found {
            installation: None,
            selected: None,
            at_ms: now,
        };
        for kind in ["orgs", "users"] {
            let resp = self
                .http
                .get(format!("{}/{kind}/{owner}/installation", self.api))
                .bearer_auth(app.auth.jwt())
                .send()
                .await
                .map_err(http_error)?;
            match resp.status() {
                StatusCode::OK => {
                    let v: serde_json::Value = resp.json().await.map_err(http_error)?;
                    found.installation = v["id"].as_i64();
                    if let (Some(id), Some("selected")) =
                        (found.installation, v["repository_selection"].as_str())
                    {
                        found.selected = Some(self.selected_repositories(app, id).await?);
                    }
                    break;
                }
                StatusCode::NOT_FOUND => continue,
                s => {
                    return Err(PoolError::Http(format!(
                        "installation lookup for {owner}: HTTP {s}"
                    )));
                }
            }
        }
        app.installations
            .lock()
            .expect("installations lock")
            .insert(key, found.clone());
        Ok(found)
    }

    /// The repositories an installation on a selection may see (`GET
    /// /installation/repositories`, every page), lowercase names.
    async fn selected_repositories(
        &self,
        app: &AppEntry,
        installation: i64,
    ) -> Result<HashSet<String>, PoolError> {
        let token = self.installation_token(app, installation, false).await?;
        let mut names = HashSet::new();
        // Bounded: GitHub caps a selection far below 100 pages of 100.
        for page in 1..=100 {
            let resp = self
                .http
                .get(format!(
                    "{}/installation/repositories?per_page=100&page={page}",
                    self.api
                ))
                .header(http::header::AUTHORIZATION, format!("token {token}"))
                .send()
                .await
                .map_err(http_error)?;
            if !resp.status().is_success() {
                return Err(PoolError::Http(format!(
                    "installation {installation}: GET /installation/repositories: HTTP {}",
                    resp.status()
                )));
            }
            let v: serde_json::Value = resp.json().await.map_err(http_error)?;
            let list = v["repositories"].as_array().cloned().unwrap_or_default();
            names.extend(
                list.iter()
                    .filter_map(|r| r["name"].as_str())
                    .map(str::to_lowercase),
            );
            let total = v["total_count"].as_u64().unwrap_or(0) as usize;
            if list.len() < 100 || names.len() >= total {
                break;
            }
        }
        Ok(names)
    }

    /// Asks GitHub for every credential's budgets now: each App's
    /// installations (through `GET /app/installations`) and each token, via
    /// `GET /rate_limit`, which costs nothing.
    pub async fn probe(&self) -> Result<Vec<ProbeRow>, PoolError> {
        let mut rows = Vec::new();
        for app in &self.apps {
            let resp = self
                .http
                .get(format!("{}/app/installations?per_page=100", self.api))
                .bearer_auth(app.auth.jwt())
                .send()
                .await
                .map_err(http_error)?;
            if !resp.status().is_success() {
                return Err(PoolError::Http(format!(
                    "app {}: GET /app/installations: HTTP {}",
                    app.auth.id,
                    resp.status()
                )));
            }
            let list: serde_json::Value = resp.json().await.map_err(http_error)?;
            for inst in list.as_array().into_iter().flatten() {
                let Some(id) = inst["id"].as_i64() else {
                    continue;
                };
                let owner = inst["account"]["login"].as_str().unwrap_or("?").to_string();
                let token = self.installation_token(app, id, false).await?;
                let cred = CredId::Installation {
                    app: app.auth.id,
                    installation: id,
                };
                rows.extend(
                    self.rate_limit_rows(&cred, &owner, &format!("token {token}"))
                        .await?,
                );
            }
        }
        for t in &self.tokens {
            let auth = format!("token {}", String::from_utf8_lossy(t.secret().expose()));
            let scope = if t.owners.is_empty() {
                "any owner".to_string()
            } else {
                t.owners.join(",")
            };
            rows.extend(
                self.rate_limit_rows(&CredId::Token(t.name.clone()), &scope, &auth)
                    .await?,
            );
        }
        Ok(rows)
    }

    async fn rate_limit_rows(
        &self,
        cred: &CredId,
        owner: &str,
        auth: &str,
    ) -> Result<Vec<ProbeRow>, PoolError> {
        let resp = self
            .http
            .get(format!("{}/rate_limit", self.api))
            .header(http::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(http_error)?;
        if !resp.status().is_success() {
            return Err(PoolError::Http(format!(
                "{cred}: GET /rate_limit: HTTP {}",
                resp.status()
            )));
        }
        let v: serde_json::Value = resp.json().await.map_err(http_error)?;
        Ok(rate_limit_rows(cred, owner, &v))
    }

    /// Forgets what discovery learned about `owner` (an `installation`
    /// webhook said it changed).
    pub fn forget_owner(&self, owner: &str) {
        self.forget_owner_learned_before(owner, i64::MAX);
    }

    /// Forgets what discovery learned about `owner` before `before_ms`
    /// (so a burst of 404s for a repository that does not exist looks the
    /// owner up once, not once each).
    pub(super) fn forget_owner_learned_before(&self, owner: &str, before_ms: i64) {
        let key = owner.to_lowercase();
        for app in &self.apps {
            let mut known = app.installations.lock().expect("installations lock");
            if known.get(&key).is_some_and(|f| f.at_ms < before_ms) {
                known.remove(&key);
            }
        }
    }

    /// What discovery has learned: per App, each owner it looked up and the
    /// installation there (None: not installed). For the admin UI.
    pub fn installations(&self) -> Vec<Installed> {
        let mut out: Vec<Installed> = self
            .apps
            .iter()
            .flat_map(|app| {
                let known = app.installations.lock().expect("installations lock");
                known
                    .iter()
                    .map(|(owner, found)| Installed {
                        app: app.auth.id,
                        owner: owner.clone(),
                        installation: found.installation,
                        selected: found.selected.as_ref().map(|s| {
                            let mut names: Vec<String> = s.iter().cloned().collect();
                            names.sort();
                            names
                        }),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| (&a.owner, a.app).cmp(&(&b.owner, b.app)));
        out
    }
}

/// The rows of one `GET /rate_limit` answer.
fn rate_limit_rows(cred: &CredId, owner: &str, v: &serde_json::Value) -> Vec<ProbeRow> {
    v["resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(resource, b)| ProbeRow {
            credential: cred.to_string(),
            owner: owner.to_string(),
            resource: resource.clone(),
            limit: b["limit"].as_u64().unwrap_or(0),
            remaining: b["remaining"].as_u64().unwrap_or(0),
            reset: b["reset"].as_i64().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GithubAppConfig, GithubConfig, GithubTokenConfig, Secret};

    /// A pool of one App (fakehub's test key) and three tokens, whose App
    /// has already found its installation on acme and none on globex: no
    /// request is made.
    fn pool() -> Pool {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fakehub/testdata/app-a.pem"
        ))
        .unwrap();
        let token = |name: &str, owners: &[&str], confined: bool| GithubTokenConfig {
            name: name.into(),
            token: Some(Secret::new(format!("ghp_{name}"))),
            token_file: None,
            owners: owners.iter().map(|o| o.to_string()).collect(),
            purposes: crate::config::Purpose::ALL.to_vec(),
            confined,
        };
        let cfg = GithubConfig {
            api_url: "http://127.0.0.1:9".into(),
            apps: vec![GithubAppConfig {
                id: 5,
                private_key: Some(Secret::new(pem)),
                private_key_file: None,
                webhook: true,
                purposes: crate::config::Purpose::ALL.to_vec(),
            }],
            tokens: vec![
                token("any", &[], false),
                token("acme", &["Acme"], true),
                token("loose", &["acme"], false),
            ],
            ..Default::default()
        };
        let pool = Pool::new(&cfg).unwrap();
        let known = &pool.apps[0].installations;
        let found = |installation| Found {
            installation,
            selected: None,
            at_ms: i64::MAX / 2,
        };
        known.lock().unwrap().insert("acme".into(), found(Some(77)));
        known.lock().unwrap().insert("globex".into(), found(None));
        pool
    }

    fn names(ids: Vec<CredId>) -> Vec<String> {
        ids.iter().map(|c| c.to_string()).collect()
    }

    #[tokio::test]
    async fn an_owner_is_served_by_its_installation_and_the_tokens_routed_to_it() {
        let p = pool();
        let any = names(p.candidates("ACME", Reach::Any, None, None).await.unwrap());
        assert_eq!(
            any,
            [
                "app:5/installation:77",
                "token:any",
                "token:acme",
                "token:loose"
            ]
        );
        let globex = names(
            p.candidates("globex", Reach::Any, None, None)
                .await
                .unwrap(),
        );
        assert_eq!(globex, ["token:any"], "not installed there");
    }

    #[tokio::test]
    async fn a_caller_limited_to_acme_gets_only_what_reaches_no_further() {
        let p = pool();
        let acme = vec!["acme".to_string()];
        let within = names(
            p.candidates("acme", Reach::Within(&acme), None, None)
                .await
                .unwrap(),
        );
        assert_eq!(within, ["app:5/installation:77", "token:acme"]);
        let outside = p
            .candidates("globex", Reach::Within(&acme), None, None)
            .await
            .unwrap();
        assert!(outside.is_empty());
    }

    #[tokio::test]
    async fn forgetting_an_owner_drops_what_discovery_learned_of_it() {
        let p = pool();
        assert_eq!(p.installations().len(), 2);
        p.forget_owner("ACME");
        let left: Vec<String> = p.installations().into_iter().map(|i| i.owner).collect();
        assert_eq!(left, ["globex"]);
    }

    #[test]
    fn a_rate_limit_answer_becomes_one_row_per_resource() {
        let v = serde_json::json!({"resources": {
            "core": {"limit": 5000, "remaining": 4999, "reset": 1700000000},
            "graphql": {"limit": 5000, "remaining": 5000, "reset": 1700000100}
        }});
        let rows = rate_limit_rows(&CredId::Token("t".into()), "acme", &v);
        let got: Vec<(&str, u64, i64)> = rows
            .iter()
            .map(|r| (r.resource.as_str(), r.remaining, r.reset))
            .collect();
        assert_eq!(
            got,
            [
                ("core", 4999, 1_700_000_000),
                ("graphql", 5000, 1_700_000_100)
            ]
        );
        assert!(rate_limit_rows(&CredId::App(1), "-", &serde_json::json!({})).is_empty());
    }
}
