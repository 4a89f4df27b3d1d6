//! Realistic bodies: objects taken from GitHub's own webhook fixtures and
//! rewritten for each repository fakehub serves (owner, name, URLs, ids).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The fixtures' example repository, replaced by each configured one.
const FIXTURE_OWNER: &str = "Codertocat";
const FIXTURE_FULL_NAME: &str = "Codertocat/Hello-World";
const GITHUB_API: &str = "https://api.github.com";

#[derive(Debug, thiserror::Error)]
#[error("fixture {path}: {message}")]
pub struct TemplateError {
    path: PathBuf,
    message: String,
}

/// One example of each object fakehub serves.
pub struct Templates {
    pub dir: PathBuf,
    pub repository: Value,
    pub pull_request: Value,
    pub issue: Value,
    pub comment: Value,
    /// A commit as the REST API returns it (the `status` event embeds one).
    pub commit: Value,
    pub status: Value,
    pub check_run: Value,
    pub user: Value,
    pub installation: Value,
    pub app: Value,
}

fn load(dir: &Path, file: &str) -> Result<Value, TemplateError> {
    let path = dir.join("payloads").join(file);
    let text = std::fs::read(&path).map_err(|e| TemplateError {
        path: path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| TemplateError {
        path,
        message: e.to_string(),
    })
}

fn pick(v: &Value, pointer: &str, file: &str) -> Result<Value, TemplateError> {
    v.pointer(pointer).cloned().ok_or_else(|| TemplateError {
        path: PathBuf::from(file),
        message: format!("has no {pointer}"),
    })
}

/// Where GitHub's fixtures are: `$FAKEHUB_FIXTURES`, else
/// `../shared/fixtures/github` beside the workspace.
pub fn default_fixtures_dir() -> PathBuf {
    std::env::var_os("FAKEHUB_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/github")
        })
}

impl Templates {
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let pr = load(dir, "pull_request/opened.payload.json")?;
        let issues = load(dir, "issues/opened.payload.json")?;
        let comment = load(dir, "issue_comment/created.payload.json")?;
        let status = load(dir, "status/payload.json")?;
        let check_run = load(dir, "check_run/created.payload.json")?;
        let installation = load(dir, "installation/created.payload.json")?;
        let mut status_obj = Map::new();
        for key in [
            "id",
            "sha",
            "context",
            "description",
            "state",
            "target_url",
            "created_at",
            "updated_at",
            "avatar_url",
        ] {
            if let Some(v) = status.get(key) {
                status_obj.insert(key.into(), v.clone());
            }
        }
        status_obj.insert("creator".into(), pick(&status, "/sender", "status")?);
        Ok(Templates {
            dir: dir.to_path_buf(),
            repository: pick(&pr, "/repository", "pull_request/opened")?,
            pull_request: pick(&pr, "/pull_request", "pull_request/opened")?,
            issue: pick(&issues, "/issue", "issues/opened")?,
            comment: pick(&comment, "/comment", "issue_comment/created")?,
            commit: pick(&status, "/commit", "status")?,
            status: Value::Object(status_obj),
            check_run: pick(&check_run, "/check_run", "check_run/created")?,
            user: pick(&pr, "/sender", "pull_request/opened")?,
            installation: pick(&installation, "/installation", "installation/created")?,
            app: pick(&check_run, "/check_run/app", "check_run/created")?,
        })
    }

    /// A fixture payload file, parsed.
    pub fn payload(&self, event: &str, file: &str) -> Result<Value, TemplateError> {
        load(&self.dir, &format!("{event}/{file}"))
    }

    /// Every fixture payload as (event, file name), sorted.
    pub fn corpus(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(events) = std::fs::read_dir(self.dir.join("payloads")) {
            for event in events.flatten() {
                if let Ok(files) = std::fs::read_dir(event.path()) {
                    for f in files.flatten() {
                        let name = f.file_name().to_string_lossy().into_owned();
                        if name.ends_with(".json") {
                            out.push((event.file_name().to_string_lossy().into_owned(), name));
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// Rewrites every string in a fixture object so it belongs to `owner/repo`
/// served at `base`.
pub struct Rewriter {
    pairs: Vec<(String, String)>,
}

impl Rewriter {
    pub fn for_repo(base: &str, owner: &str, repo: &str) -> Rewriter {
        Rewriter {
            pairs: vec![
                (
                    format!("{GITHUB_API}/repos/{FIXTURE_FULL_NAME}"),
                    format!("{base}/repos/{owner}/{repo}"),
                ),
                (GITHUB_API.to_string(), base.to_string()),
                (FIXTURE_FULL_NAME.to_string(), format!("{owner}/{repo}")),
                (format!("{FIXTURE_OWNER}:"), format!("{owner}:")),
            ],
        }
    }

    /// Only the API base, for objects not tied to a repository.
    pub fn for_base(base: &str) -> Rewriter {
        Rewriter {
            pairs: vec![(GITHUB_API.to_string(), base.to_string())],
        }
    }

    /// Also replaces `from` with `to` (after the repository rewrite).
    pub fn and(mut self, from: impl Into<String>, to: impl Into<String>) -> Rewriter {
        self.pairs.push((from.into(), to.into()));
        self
    }

    pub fn apply(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                let mut out = s.clone();
                for (from, to) in &self.pairs {
                    if out.contains(from.as_str()) {
                        out = out.replace(from.as_str(), to);
                    }
                }
                Value::String(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.apply(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.apply(x))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Makes a payload belong to `owner`: every place GitHub names the account
/// (repository owner and full name, organization, installation account,
/// marketplace account, sponsorable) says `owner`, so receivers that
/// partition by owner see one owner per payload.
pub fn assign_owner(v: &mut Value, owner: &str) {
    if let Some(repo) = v.get_mut("repository").filter(|r| r.is_object()) {
        let name = repo["name"].as_str().unwrap_or("repo").to_string();
        repo["full_name"] = Value::String(format!("{owner}/{name}"));
        if repo.get("owner").is_some_and(Value::is_object) {
            repo["owner"]["login"] = Value::String(owner.to_string());
        }
    }
    for pointer in [
        "/organization",
        "/installation/account",
        "/marketplace_purchase/account",
        "/sponsorship/sponsorable",
    ] {
        if let Some(obj) = v.pointer_mut(pointer).filter(|o| o.is_object()) {
            obj["login"] = Value::String(owner.to_string());
        }
    }
}
