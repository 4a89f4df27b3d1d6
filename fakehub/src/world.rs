//! The state fakehub serves: accounts, repositories and their pull
//! requests, issues, comments, commits, branches, statuses and check runs;
//! Apps, installations and tokens. Bodies are fixture objects rewritten
//! per repository (see `templates`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{AccountKind, Config, ContentType, SeedConfig};
use crate::templates::{Rewriter, Templates};

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-01-01T00:00:00Z`, as GitHub writes times.
pub fn iso(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

pub fn parse_iso(s: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

fn fake_sha(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))[..40].to_string()
}

pub fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub struct Account {
    pub login: String,
    pub kind: AccountKind,
    pub id: i64,
    pub json: Value,
}

pub struct Pull {
    pub json: Value,
    pub files: Vec<Value>,
    pub commits: Vec<Value>,
    pub updated: i64,
}

pub struct Issue {
    pub json: Value,
    pub comments: Vec<Value>,
    pub updated: i64,
}

pub struct Repo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub json: Value,
    pub updated: i64,
    pub pulls: BTreeMap<u64, Pull>,
    pub issues: BTreeMap<u64, Issue>,
    /// Newest first, as `GET /repos/{o}/{r}/commits` lists them.
    pub commits: Vec<Value>,
    pub branches: Vec<Value>,
    pub statuses: HashMap<String, Vec<Value>>,
    pub check_runs: HashMap<String, Vec<Value>>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// A commit by full SHA, branch name or unambiguous SHA prefix.
    pub fn resolve_ref(&self, r: &str) -> Option<String> {
        if let Some(b) = self.branches.iter().find(|b| b["name"].as_str() == Some(r)) {
            return b["commit"]["sha"].as_str().map(str::to_string);
        }
        let mut hits = self
            .commits
            .iter()
            .filter_map(|c| c["sha"].as_str())
            .filter(|s| r.len() >= 7 && s.starts_with(r));
        let first = hits.next()?;
        hits.next().is_none().then(|| first.to_string())
    }
}

/// Where an App's webhooks go.
#[derive(Clone)]
pub struct HookTarget {
    pub hook_id: i64,
    pub url: String,
    pub secret: Option<String>,
    pub content_type: ContentType,
}

pub struct App {
    pub id: i64,
    pub slug: String,
    pub key: DecodingKey,
    /// More keys GitHub accepts for this App (while one is rotated, both
    /// are valid, as on GitHub until the old one is deleted).
    pub more_keys: Vec<DecodingKey>,
    pub json: Value,
    pub hook: Option<HookTarget>,
}

pub struct Installation {
    pub id: i64,
    pub app_id: i64,
    pub account: String,
    /// Full names (lowercase) it may see; None = all of the account's.
    pub repositories: Option<BTreeSet<String>>,
    pub permissions: BTreeMap<String, String>,
    pub json: Value,
}

impl Installation {
    pub fn covers(&self, repo: &Repo) -> bool {
        key(&repo.owner) == key(&self.account)
            && self
                .repositories
                .as_ref()
                .is_none_or(|set| set.contains(&key(&repo.full_name())))
    }
}

pub struct Pat {
    pub name: String,
    pub login: String,
    pub repositories: Option<BTreeSet<String>>,
}

pub struct InstallationToken {
    pub installation_id: i64,
    pub expires_at: i64,
    pub repositories: Option<BTreeSet<String>>,
    pub permissions: BTreeMap<String, String>,
}

/// Repository and organisation hooks (App hooks live on the App).
#[derive(Clone)]
pub struct RepoHook {
    pub target: HookTarget,
    pub owner: String,
    pub repo: Option<String>,
}

pub struct World {
    pub base: String,
    pub templates: Templates,
    pub accounts: BTreeMap<String, Account>,
    pub repos: BTreeMap<String, Repo>,
    pub apps: BTreeMap<i64, App>,
    pub installations: BTreeMap<i64, Installation>,
    pub pats: HashMap<String, Pat>,
    pub installation_tokens: HashMap<String, InstallationToken>,
    pub hooks: BTreeMap<i64, RepoHook>,
    /// How long a minted installation token is valid.
    pub token_lifetime_secs: i64,
    next_id: i64,
}

/// GitHub's default permission set for an installation in these tests.
fn default_permissions() -> BTreeMap<String, String> {
    [
        "checks",
        "contents",
        "issues",
        "metadata",
        "pull_requests",
        "statuses",
    ]
    .iter()
    .map(|p| {
        (
            p.to_string(),
            if *p == "metadata" { "read" } else { "write" }.to_string(),
        )
    })
    .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("app {id}: {message}")]
    App { id: i64, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl World {
    pub fn build(config: &Config, base: &str, templates: Templates) -> Result<World, WorldError> {
        let mut w = World {
            base: base.to_string(),
            templates,
            accounts: BTreeMap::new(),
            repos: BTreeMap::new(),
            apps: BTreeMap::new(),
            installations: BTreeMap::new(),
            pats: HashMap::new(),
            installation_tokens: HashMap::new(),
            hooks: BTreeMap::new(),
            token_lifetime_secs: config.installation_token_secs,
            next_id: 1_000_000,
        };
        let epoch = now_secs() - 30 * 86_400;
        for account in &config.accounts {
            let id = w.next_id();
            let json = w.account_json(&account.login, id, account.kind);
            w.accounts.insert(
                key(&account.login),
                Account {
                    login: account.login.clone(),
                    kind: account.kind,
                    id,
                    json,
                },
            );
            for name in &account.repos {
                let private = account.private.contains(name);
                let repo = w.seed_repo(&account.login, name, private, &config.seed, epoch);
                w.repos.insert(key(&repo.full_name()), repo);
            }
        }
        for app in &config.apps {
            w.add_app(app)?;
        }
        for t in &config.tokens {
            w.pats.insert(
                t.token.clone(),
                Pat {
                    name: t.name.clone(),
                    login: t.login.clone(),
                    repositories: t
                        .repositories
                        .as_ref()
                        .map(|r| r.iter().map(|s| key(s)).collect()),
                },
            );
        }
        for h in &config.hooks {
            if !w.accounts.contains_key(&key(&h.owner)) {
                return Err(WorldError::Invalid(format!(
                    "hook {}: unknown owner {}",
                    h.id, h.owner
                )));
            }
            w.hooks.insert(
                h.id,
                RepoHook {
                    target: HookTarget {
                        hook_id: h.id,
                        url: h.url.clone(),
                        secret: h.secret.clone(),
                        content_type: h.content_type,
                    },
                    owner: h.owner.clone(),
                    repo: h.repo.clone(),
                },
            );
        }
        Ok(w)
    }

    pub fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn account_json(&self, login: &str, id: i64, kind: AccountKind) -> Value {
        let mut v = Rewriter::for_base(&self.base)
            .and("Codertocat", login)
            .apply(&self.templates.user);
        v["id"] = json!(id);
        v["type"] = json!(match kind {
            AccountKind::Organization => "Organization",
            AccountKind::User => "User",
        });
        v
    }

    fn add_app(&mut self, app: &crate::config::AppConfig) -> Result<(), WorldError> {
        let pem = match (&app.public_key, &app.public_key_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| WorldError::App {
                id: app.id,
                message: format!("cannot read {}: {e}", f.display()),
            })?,
            (None, None) => {
                return Err(WorldError::App {
                    id: app.id,
                    message: "needs public_key or public_key_file".into(),
                });
            }
        };
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| WorldError::App {
            id: app.id,
            message: format!("bad RSA public key: {e}"),
        })?;
        let mut json = Rewriter::for_base(&self.base).apply(&self.templates.app);
        json["id"] = json!(app.id);
        json["slug"] = json!(app.slug);
        json["name"] = json!(app.slug);
        let hook = app.webhook_url.as_ref().map(|url| HookTarget {
            hook_id: app.hook_id.unwrap_or(app.id),
            url: url.clone(),
            secret: app.webhook_secret.clone(),
            content_type: app.content_type,
        });
        for inst in &app.installations {
            let account = self
                .accounts
                .get(&self::key(&inst.account))
                .ok_or_else(|| WorldError::App {
                    id: app.id,
                    message: format!(
                        "installation {} on unknown account {}",
                        inst.id, inst.account
                    ),
                })?;
            let permissions = inst.permissions.clone().unwrap_or_else(default_permissions);
            let mut ij = Rewriter::for_base(&self.base).apply(&self.templates.installation);
            ij["id"] = json!(inst.id);
            ij["app_id"] = json!(app.id);
            ij["app_slug"] = json!(app.slug);
            ij["account"] = account.json.clone();
            ij["target_id"] = json!(account.id);
            ij["target_type"] = account.json["type"].clone();
            ij["permissions"] = json!(permissions);
            ij["repository_selection"] = json!(if inst.repositories.is_some() {
                "selected"
            } else {
                "all"
            });
            ij["access_tokens_url"] = json!(format!(
                "{}/app/installations/{}/access_tokens",
                self.base, inst.id
            ));
            ij["repositories_url"] = json!(format!("{}/installation/repositories", self.base));
            self.installations.insert(
                inst.id,
                Installation {
                    id: inst.id,
                    app_id: app.id,
                    account: account.login.clone(),
                    repositories: inst.repositories.as_ref().map(|names| {
                        names
                            .iter()
                            .map(|n| self::key(&format!("{}/{n}", inst.account)))
                            .collect()
                    }),
                    permissions,
                    json: ij,
                },
            );
        }
        self.apps.insert(
            app.id,
            App {
                id: app.id,
                slug: app.slug.clone(),
                key,
                more_keys: Vec::new(),
                json,
                hook,
            },
        );
        Ok(())
    }

    fn seed_repo(
        &mut self,
        owner: &str,
        name: &str,
        private: bool,
        seed: &SeedConfig,
        epoch: i64,
    ) -> Repo {
        let rw = Rewriter::for_repo(&self.base, owner, name);
        let id = self.next_id();
        let owner_json = self.accounts[&key(owner)].json.clone();
        let full = format!("{owner}/{name}");
        let mut json = rw.apply(&self.templates.repository);
        json["id"] = json!(id);
        json["name"] = json!(name);
        json["full_name"] = json!(full);
        json["owner"] = owner_json;
        json["private"] = json!(private);
        json["visibility"] = json!(if private { "private" } else { "public" });
        let mut repo = Repo {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            private,
            json,
            updated: epoch,
            pulls: BTreeMap::new(),
            issues: BTreeMap::new(),
            commits: Vec::new(),
            branches: Vec::new(),
            statuses: HashMap::new(),
            check_runs: HashMap::new(),
        };
        // Commits, oldest first while building; each the parent of the next.
        let mut parent: Option<String> = None;
        let mut commits = Vec::new();
        for i in 0..seed.commits.max(1) {
            let sha = fake_sha(&format!("{full}:commit:{i}"));
            let when = iso(epoch + i as i64 * 60);
            let mut c = rw.apply(&self.templates.commit);
            c["sha"] = json!(sha);
            c["url"] = json!(format!("{}/repos/{full}/commits/{sha}", self.base));
            c["html_url"] = json!(format!("https://github.com/{full}/commit/{sha}"));
            c["comments_url"] = json!(format!("{}/repos/{full}/commits/{sha}/comments", self.base));
            c["commit"]["message"] = json!(format!("Change {i} to {name}"));
            c["commit"]["author"]["date"] = json!(when);
            c["commit"]["committer"]["date"] = json!(when);
            c["parents"] = match &parent {
                Some(p) => {
                    json!([{"sha": p, "url": format!("{}/repos/{full}/commits/{p}", self.base)}])
                }
                None => json!([]),
            };
            parent = Some(sha);
            commits.push(c);
        }
        commits.reverse();
        repo.commits = commits;
        let head = repo.commits[0]["sha"].as_str().unwrap().to_string();
        let default_branch = repo.json["default_branch"]
            .as_str()
            .unwrap_or("main")
            .to_string();
        for b in 0..seed.branches.max(1) {
            let (bname, sha) = if b == 0 {
                (default_branch.clone(), head.clone())
            } else {
                let c = &repo.commits[b.min(repo.commits.len() - 1)];
                (
                    format!("feature-{b}"),
                    c["sha"].as_str().unwrap().to_string(),
                )
            };
            repo.branches.push(json!({
                "name": bname,
                "commit": {"sha": sha, "url": format!("{}/repos/{full}/commits/{sha}", self.base)},
                "protected": b == 0,
            }));
        }
        let mut status = rw.apply(&self.templates.status);
        status["id"] = json!(self.next_id());
        status["sha"] = json!(head);
        status["url"] = json!(format!("{}/repos/{full}/statuses/{head}", self.base));
        repo.statuses.insert(head.clone(), vec![status]);
        let mut check = rw.apply(&self.templates.check_run);
        check["id"] = json!(self.next_id());
        check["head_sha"] = json!(head);
        repo.check_runs.insert(head.clone(), vec![check]);

        // Pull requests first, then issues: they share one number sequence.
        let t_pr = self.templates.pull_request["number"].as_u64().unwrap_or(2);
        for n in 1..=seed.pulls as u64 {
            let updated = epoch + 3600 + n as i64 * 60;
            let head_commit = repo.commits[(n as usize) % repo.commits.len()].clone();
            let head_sha = head_commit["sha"].as_str().unwrap().to_string();
            let rwn = Rewriter::for_repo(&self.base, owner, name)
                .and(format!("/pulls/{t_pr}"), format!("/pulls/{n}"))
                .and(format!("/pull/{t_pr}"), format!("/pull/{n}"))
                .and(format!("/issues/{t_pr}"), format!("/issues/{n}"));
            let mut pr = rwn.apply(&self.templates.pull_request);
            pr["id"] = json!(self.next_id());
            pr["number"] = json!(n);
            pr["title"] = json!(format!("Pull request {n} for {name}"));
            pr["state"] = json!(if n % 3 == 0 { "closed" } else { "open" });
            pr["created_at"] = json!(iso(updated - 60));
            pr["updated_at"] = json!(iso(updated));
            pr["head"]["sha"] = json!(head_sha);
            pr["head"]["ref"] = json!(format!("feature-{n}"));
            pr["statuses_url"] = json!(format!("{}/repos/{full}/statuses/{head_sha}", self.base));
            let files = (0..(n % 3 + 1))
                .map(|f| {
                    let filename = format!("src/module_{n}_{f}.rs");
                    json!({
                        "sha": fake_sha(&format!("{full}:{n}:{f}")),
                        "filename": filename,
                        "status": if f == 0 { "modified" } else { "added" },
                        "additions": 10 + f,
                        "deletions": 2,
                        "changes": 12 + f,
                        "blob_url": format!("https://github.com/{full}/blob/{head_sha}/{filename}"),
                        "raw_url": format!("https://github.com/{full}/raw/{head_sha}/{filename}"),
                        "contents_url": format!("{}/repos/{full}/contents/{filename}?ref={head_sha}", self.base),
                        "patch": format!("@@ -1,2 +1,{} @@\n-old line\n+new line {n}", 10 + f),
                    })
                })
                .collect::<Vec<_>>();
            pr["changed_files"] = json!(files.len());
            repo.pulls.insert(
                n,
                Pull {
                    json: pr,
                    files,
                    commits: vec![head_commit],
                    updated,
                },
            );
        }
        let t_issue = self.templates.issue["number"].as_u64().unwrap_or(1);
        for k in 1..=seed.issues as u64 {
            let n = seed.pulls as u64 + k;
            let updated = epoch + 7200 + k as i64 * 60;
            let rwn = Rewriter::for_repo(&self.base, owner, name)
                .and(format!("/issues/{t_issue}"), format!("/issues/{n}"));
            let mut issue = rwn.apply(&self.templates.issue);
            issue["id"] = json!(self.next_id());
            issue["number"] = json!(n);
            issue["title"] = json!(format!("Issue {n} in {name}"));
            issue["created_at"] = json!(iso(updated - 60));
            issue["updated_at"] = json!(iso(updated));
            let mut comments = Vec::new();
            for c in 0..seed.comments {
                let cid = self.next_id();
                let mut comment = rwn.apply(&self.templates.comment);
                comment["id"] = json!(cid);
                comment["body"] = json!(format!("Comment {c} on issue {n}"));
                comment["url"] = json!(format!("{}/repos/{full}/issues/comments/{cid}", self.base));
                comment["html_url"] = json!(format!(
                    "https://github.com/{full}/issues/{n}#issuecomment-{cid}"
                ));
                comments.push(comment);
            }
            issue["comments"] = json!(comments.len());
            repo.issues.insert(
                n,
                Issue {
                    json: issue,
                    comments,
                    updated,
                },
            );
        }
        repo
    }

    /// A fixture payload rewritten to belong to `owner/repo` (and, for an
    /// App's delivery, to its installation).
    pub fn payload(
        &self,
        event: &str,
        file: &str,
        owner: &str,
        repo: &str,
    ) -> Result<Value, WorldError> {
        let raw = self.templates.payload(event, file)?;
        let mut v = Rewriter::for_repo(&self.base, owner, repo).apply(&raw);
        if let Some(r) = self.repos.get(&key(&format!("{owner}/{repo}")))
            && v.get("repository").is_some_and(Value::is_object)
        {
            v["repository"]["id"] = json!(r.id);
            v["repository"]["name"] = json!(r.name);
            v["repository"]["owner"] = self.accounts[&key(owner)].json.clone();
        }
        crate::templates::assign_owner(&mut v, owner);
        Ok(v)
    }

    pub fn installation_for_account(&self, app_id: i64, account: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.app_id == app_id && key(&i.account) == key(account))
    }
}
