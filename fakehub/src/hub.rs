//! The shared state behind every handler, and the webhook operations that
//! need several parts of it (world, log, HTTP client).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use crate::faults::Faults;
use crate::limits::Limits;
use crate::webhooks::{self, DeliveryLog, HookRef, Outgoing, Record};
use crate::world::{World, WorldError, key};

pub struct Hub {
    pub world: Mutex<World>,
    pub limits: Arc<Limits>,
    pub faults: Faults,
    pub log: Mutex<DeliveryLog>,
    pub http: reqwest::Client,
    pub webhook_timeout: Duration,
    /// Set when fakehub plays GitHub Enterprise Server.
    pub enterprise: Option<crate::config::EnterpriseConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("unknown hook {0:?}")]
    UnknownHook(HookRef),
    #[error("app {0} has no webhook_url")]
    NoWebhook(i64),
    #[error("unknown repository {0}")]
    UnknownRepo(String),
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("no delivery {0} for this hook")]
    UnknownDelivery(i64),
    #[error("unknown installation {0}")]
    UnknownInstallation(i64),
}

impl Hub {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    /// Builds the delivery GitHub would send to `hook` for a fixture event
    /// about `owner/repo`, with a new GUID.
    pub fn outgoing(
        &self,
        hook: HookRef,
        event: &str,
        file: &str,
        owner: &str,
        repo: &str,
    ) -> Result<Outgoing, DeliverError> {
        let w = self.world();
        let mut payload = w.payload(event, file, owner, repo)?;
        let (target, target_type, target_id) = match hook {
            HookRef::App(app_id) => {
                let app = w.apps.get(&app_id).ok_or(DeliverError::UnknownHook(hook))?;
                let target = app.hook.clone().ok_or(DeliverError::NoWebhook(app_id))?;
                // App deliveries name the installation (as {id, node_id}).
                if let Some(i) = w.installation_for_account(app_id, owner) {
                    payload["installation"] = json!({"id": i.id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{}", i.id)});
                }
                (target, "integration", app_id)
            }
            HookRef::Hook(id) => {
                let h = w.hooks.get(&id).ok_or(DeliverError::UnknownHook(hook))?;
                match &h.repo {
                    Some(r) => {
                        let full = format!("{}/{r}", h.owner);
                        let rid = w
                            .repos
                            .get(&key(&full))
                            .map(|r| r.id)
                            .ok_or(DeliverError::UnknownRepo(full))?;
                        (h.target.clone(), "repository", rid)
                    }
                    None => (
                        h.target.clone(),
                        "organization",
                        w.accounts[&key(&h.owner)].id,
                    ),
                }
            }
        };
        Ok(Outgoing {
            hook,
            target,
            guid: uuid::Uuid::new_v4().to_string(),
            event: event.to_string(),
            payload,
            target_type,
            target_id,
            redelivery: false,
        })
    }

    /// Sends and logs one delivery; returns its record.
    pub async fn send(&self, out: Outgoing) -> Record {
        let id = self.next_delivery_id();
        self.send_as(out, id).await
    }

    /// The log id the next delivery gets: taken when GitHub accepts the
    /// work (a redelivery request), not when the send finishes.
    pub fn next_delivery_id(&self) -> i64 {
        self.log.lock().expect("log lock").next_id()
    }

    /// Sends with an id taken earlier, and logs the record when done.
    pub async fn send_as(&self, out: Outgoing, id: i64) -> Record {
        let record = webhooks::send(
            &self.http,
            self.webhook_timeout,
            out,
            id,
            self.enterprise.as_ref(),
        )
        .await;
        self.log.lock().expect("log lock").push(record.clone());
        record
    }

    /// Sends a fixture event to a hook now, as GitHub would.
    pub async fn deliver(
        &self,
        hook: HookRef,
        event: &str,
        file: &str,
        owner: &str,
        repo: &str,
    ) -> Result<Record, DeliverError> {
        let out = self.outgoing(hook, event, file, owner, repo)?;
        Ok(self.send(out).await)
    }

    /// Adds `repo` to an installation's selection (or removes it), as an
    /// owner does in the App's settings, and sends the App the
    /// `installation_repositories` delivery GitHub would (when it has a
    /// webhook). An installation on all repositories becomes a selection
    /// of the account's others when one is removed.
    pub async fn change_selection(
        &self,
        installation: i64,
        repo: &str,
        added: bool,
    ) -> Result<Option<Record>, DeliverError> {
        let out = {
            let mut w = self.world.lock().expect("world lock");
            let (app_id, account) = w
                .installations
                .get(&installation)
                .map(|i| (i.app_id, i.account.clone()))
                .ok_or(DeliverError::UnknownInstallation(installation))?;
            let full = key(&format!("{account}/{repo}"));
            let (repo_id, repo_name) = w
                .repos
                .get(&full)
                .map(|r| (r.id, r.name.clone()))
                .ok_or_else(|| DeliverError::UnknownRepo(full.clone()))?;
            let everything: std::collections::BTreeSet<String> = w
                .repos
                .keys()
                .filter(|k| k.starts_with(&format!("{}/", key(&account))))
                .cloned()
                .collect();
            let entry = w.installations.get_mut(&installation).expect("found above");
            let mut names = entry.repositories.clone().unwrap_or(everything);
            if added {
                names.insert(full.clone());
            } else {
                names.remove(&full);
            }
            entry.repositories = Some(names);
            entry.json["repository_selection"] = json!("selected");
            let inst_json = entry.json.clone();
            let has_hook = w.apps.get(&app_id).is_some_and(|a| a.hook.is_some());
            drop(w);
            if has_hook {
                let file = if added {
                    "added.payload.json"
                } else {
                    "removed.payload.json"
                };
                let mut out = self.outgoing(
                    HookRef::App(app_id),
                    "installation_repositories",
                    file,
                    &account,
                    repo,
                )?;
                let listed = json!([{
                    "id": repo_id,
                    "name": repo_name,
                    "full_name": format!("{account}/{repo_name}"),
                    "private": false,
                }]);
                out.payload["installation"] = inst_json;
                out.payload["repository_selection"] = json!("selected");
                let none = json!([]);
                let (plus, minus) = if added {
                    (listed, none)
                } else {
                    (none, listed)
                };
                out.payload["repositories_added"] = plus;
                out.payload["repositories_removed"] = minus;
                Some(out)
            } else {
                None
            }
        };
        Ok(match out {
            Some(out) => Some(self.send(out).await),
            None => None,
        })
    }

    /// Sends a logged delivery again, with the same GUID, as a new attempt
    /// marked `redelivery: true`.
    pub fn redeliver_outgoing(&self, hook: HookRef, id: i64) -> Result<Outgoing, DeliverError> {
        let log = self.log.lock().expect("log lock");
        let r = log.get(hook, id).ok_or(DeliverError::UnknownDelivery(id))?;
        let w = self.world();
        let target = match hook {
            HookRef::App(a) => w.apps.get(&a).and_then(|a| a.hook.clone()),
            HookRef::Hook(h) => w.hooks.get(&h).map(|h| h.target.clone()),
        }
        .ok_or(DeliverError::UnknownHook(hook))?;
        let find = |name: &str| {
            r.request_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let target_type = match find("X-GitHub-Hook-Installation-Target-Type").as_str() {
            "repository" => "repository",
            "organization" => "organization",
            _ => "integration",
        };
        Ok(Outgoing {
            hook,
            target,
            guid: r.guid.clone(),
            event: r.event.clone(),
            payload: r.payload.clone(),
            target_type,
            target_id: find("X-GitHub-Hook-Installation-Target-ID")
                .parse()
                .unwrap_or(0),
            redelivery: true,
        })
    }
}
