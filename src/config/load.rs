//! From a file to a [`Config`]: TOML, relative paths, checks, and the
//! secrets the file names. Every problem found is reported, each with its
//! key and line, so an operator fixes a file in one pass.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, Secret, validate};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line.map(|l| format!(":{l}")).unwrap_or_default();
        write!(f, "{}{line}: {}: {}", self.file, self.key, self.message)
    }
}

/// What is wrong with a config file: it cannot be read, or every problem
/// in it, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems, one line each (a read error is one).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(p) => p.iter().map(Problem::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Whether loading reads the secret files the config names. Operator
/// commands that never use a secret (listing deliveries, a backup) skip
/// them: on a systemd install the files are credentials only the service
/// can read, through `$CREDENTIALS_DIRECTORY`, which a shell lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Read,
    Skip,
}

const CREDENTIALS_PREFIX: &str = "$CREDENTIALS_DIRECTORY/";

impl Config {
    /// Reads, parses and checks a config file, and reads every `*_file`
    /// secret it names (secrets from files end up in `webhooks.secrets`).
    /// Relative paths in it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Read)
    }

    /// [`Config::load`] for commands that need no secret: the secret files
    /// are neither read nor required to be readable.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Skip)
    }

    fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let mut config =
            Config::parse_with(&text, &path.display().to_string(), Some(base), secrets)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        config.source = Some((absolute, crate::clock::now_ms()));
        Ok(config)
    }

    /// Parses config text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, None, Secrets::Read)
    }

    fn parse_with(
        text: &str,
        file: &str,
        base: Option<&Path>,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        let problem = |line: Option<usize>, key: String, message: String| Problem {
            file: file.to_string(),
            line,
            key,
            message,
        };
        let mut config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(first) => {
                return Err(ConfigError::Invalid(toml_problems(text, file, first)));
            }
        };
        if let Some(base) = base {
            config.resolve_paths(base);
        }
        let mut found: Vec<Problem> = validate::problems(&config)
            .into_iter()
            .map(|(key, message)| problem(line_of_key(text, &key), key, message))
            .collect();
        if config.webhooks.secrets.is_empty() && config.webhooks.secret_files.is_empty() {
            found.push(problem(
                line_of_key(text, "webhooks"),
                "webhooks.secrets".into(),
                "at least one webhook secret is required (secrets or secret_files); \
                 GitHub signs every delivery with it"
                    .into(),
            ));
        }
        if secrets == Secrets::Read {
            for (key, message) in config.read_secret_files() {
                found.push(problem(line_of_key(text, &key), key, message));
            }
        }
        // Every command that opens the store needs these, so they are read
        // even when the other secrets are not.
        for (key, message) in config.read_storage_secrets() {
            found.push(problem(line_of_key(text, &key), key, message));
        }
        if found.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(found))
        }
    }

    /// Makes relative paths relative to the config file's directory (the
    /// embedded default's, with no file, stay relative to the working
    /// directory). `$CREDENTIALS_DIRECTORY/...` is left for reading time.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty()
                && p.is_relative()
                && !p.starts_with("$CREDENTIALS_DIRECTORY")
            {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.storage.path);
        self.storage.url_file.as_mut().map(fix);
        self.storage.password_file.as_mut().map(fix);
        self.webhooks.secret_files.iter_mut().for_each(fix);
        for r in &mut self.routes {
            r.secret_file.as_mut().map(fix);
        }
        for a in &mut self.github.apps {
            a.private_key_file.as_mut().map(fix);
        }
        for t in &mut self.github.tokens {
            t.token_file.as_mut().map(fix);
        }
        self.admin.password_hash_file.as_mut().map(fix);
        for n in &mut self.notify {
            n.url_file.as_mut().map(fix);
        }
        if let Some(g) = &mut self.gateway {
            fix(&mut g.cache_path);
            fix(&mut g.clients_file);
        }
    }

    /// Reads the PostgreSQL URL and password files, and checks the URL;
    /// returns each problem, as (key, why).
    fn read_storage_secrets(&mut self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let storage = &mut self.storage;
        if let Some(path) = &storage.url_file {
            match read_secret_file(path) {
                Ok(s) => storage.url = Some(s),
                Err(m) => failed.push(("storage.url_file".to_string(), m)),
            }
        }
        if let Some(path) = &storage.password_file {
            match read_secret_file(path) {
                Ok(s) => storage.password = Some(s),
                Err(m) => failed.push(("storage.password_file".to_string(), m)),
            }
        }
        if let Some(Err(m)) = storage.postgres() {
            let key = if storage.url_file.is_some() {
                "storage.url_file"
            } else {
                "storage.url"
            };
            failed.push((key.to_string(), m));
        }
        failed
    }

    /// Reads every secret file named; returns each that failed, as (key,
    /// why).
    fn read_secret_files(&mut self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for (i, path) in self.webhooks.secret_files.iter().enumerate() {
            match read_secret_file(path) {
                Ok(s) => self.webhooks.secrets.push(s),
                Err(m) => failed.push((format!("webhooks.secret_files[{i}]"), m)),
            }
        }
        for (i, n) in self.notify.iter_mut().enumerate() {
            if let Some(path) = &n.url_file {
                match read_secret_file(path) {
                    Ok(s) => n.url = Some(s),
                    Err(m) => failed.push((format!("notify[{i}].url_file"), m)),
                }
            }
        }
        for (i, app) in self.github.apps.iter_mut().enumerate() {
            if let Some(path) = &app.private_key_file {
                match read_secret_file(path) {
                    Ok(s) => app.private_key = Some(s),
                    Err(m) => {
                        failed.push((format!("github.apps[{i}].private_key_file"), m));
                        continue;
                    }
                }
            }
            let Some(key) = &app.private_key else {
                failed.push((
                    format!("github.apps[{i}]"),
                    format!("app {}: needs private_key or private_key_file", app.id),
                ));
                continue;
            };
            if let Err(e) = jsonwebtoken::EncodingKey::from_rsa_pem(key.expose()) {
                failed.push((
                    format!("github.apps[{i}].private_key_file"),
                    format!(
                        "app {}: not an RSA private key in PEM (PKCS#1 or PKCS#8): {e}",
                        app.id
                    ),
                ));
            }
        }
        for (i, t) in self.github.tokens.iter_mut().enumerate() {
            if let Some(path) = &t.token_file {
                match read_secret_file(path) {
                    Ok(s) => t.token = Some(s),
                    Err(m) => {
                        failed.push((format!("github.tokens[{i}].token_file"), m));
                        continue;
                    }
                }
            }
            if t.token.is_none() {
                failed.push((
                    format!("github.tokens[{i}]"),
                    format!("token {:?}: needs token or token_file", t.name),
                ));
            }
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(path) = &route.secret_file {
                match read_secret_file(path) {
                    Ok(s) => route.secret = Some(s),
                    Err(m) => failed.push((format!("routes[{i}].secret_file"), m)),
                }
            }
        }
        failed
    }
}

/// Every section's TOML error. serde stops at the first, so each top-level
/// section (with `[[routes]]` or `[github.apps]` counted in theirs) is
/// parsed again alone, with the other lines blanked so line numbers hold.
fn toml_problems(text: &str, file: &str, first: toml::de::Error) -> Vec<Problem> {
    // `parsed` is the text the error's span points into.
    let to_problem = |e: &toml::de::Error, parsed: &str| {
        let line = e.span().map(|s| line_of_offset(parsed, s.start));
        Problem {
            file: file.to_string(),
            line,
            key: line
                .and_then(|l| key_at_line(text, l))
                .unwrap_or_else(|| "(file)".to_string()),
            message: e.message().trim().to_string(),
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut section_of = Vec::with_capacity(lines.len());
    let mut current = String::new();
    for l in &lines {
        if let Some(h) = table_header(l.trim()) {
            current = h.split('.').next().unwrap_or("").trim().to_string();
        }
        section_of.push(current.clone());
    }
    let mut sections: Vec<String> = section_of.clone();
    sections.dedup();
    sections.sort();
    sections.dedup();
    // The whole file's own error is the most precise for its section.
    let first_problem = to_problem(&first, text);
    let first_section = first_problem
        .line
        .and_then(|l| section_of.get(l - 1))
        .cloned();
    let mut found = vec![first_problem];
    for s in sections
        .iter()
        .filter(|s| Some(*s) != first_section.as_ref())
    {
        let alone: Vec<&str> = lines
            .iter()
            .zip(&section_of)
            .map(|(l, of)| if of == s { *l } else { "" })
            .collect();
        let alone = alone.join("\n");
        if let Err(e) = toml::from_str::<Config>(&alone) {
            found.push(to_problem(&e, &alone));
        }
    }
    found.sort_by_key(|p| p.line);
    found.dedup();
    found
}

/// Reads one secret from a file (a systemd credential, say). Paths may
/// start with `$CREDENTIALS_DIRECTORY/`, which systemd sets for
/// `LoadCredential=`. A trailing newline is not part of the secret.
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    if path.starts_with("$CREDENTIALS_DIRECTORY")
        && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
    {
        return Err(format!(
            "{}: $CREDENTIALS_DIRECTORY is not set. systemd sets it for the service \
             (LoadCredential=); from a shell, point it at the directory the credentials \
             are loaded from, e.g. `sudo CREDENTIALS_DIRECTORY=/etc/gatehouse gatehouse ...`",
            path.display()
        ));
    }
    let path = expand_credentials_dir(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

pub(crate) fn expand_credentials_dir(path: &Path) -> PathBuf {
    match path
        .to_str()
        .and_then(|p| p.strip_prefix(CREDENTIALS_PREFIX))
    {
        Some(rest) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => PathBuf::from(dir).join(rest),
            None => path.to_path_buf(),
        },
        None => path.to_path_buf(),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key on a given 1-based line: the enclosing `[table]` plus the
/// key before `=`, or the table itself on a header line.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = table_header(l) {
            table = header;
            if i + 1 == line {
                return Some(table);
            }
        } else if i + 1 == line {
            let key = l.split('=').next()?.trim().trim_matches('"');
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// The line where a dotted key is written: `table.key`, a bare table, or
/// `table[i].key` (the i-th `[[table]]`). Falls back to the table's line.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (want_table, want_key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (t, Some(k)),
        None => (dotted, None),
    };
    // `routes[2]` → the third [[routes]]; a key's own index (`secret_files[0]`)
    // is dropped.
    let (want_table, nth) = match want_table.split_once('[') {
        Some((t, rest)) => (t, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (want_table, None),
    };
    let want_key = want_key.map(|k| k.split('[').next().unwrap_or(k));
    let mut seen = 0usize;
    let mut in_wanted = false;
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(table) = table_header(l) {
            in_wanted = false;
            if table == want_table {
                if nth.is_none_or(|n| n == seen) {
                    in_wanted = true;
                    if want_key.is_none() || table_line.is_none() {
                        table_line = Some(i + 1);
                    }
                    if want_key.is_none() {
                        return table_line;
                    }
                }
                seen += 1;
            }
        } else if in_wanted
            && let Some(k) = want_key
            && l.contains('=')
            && l.split('=').next().map(|s| s.trim().trim_matches('"')) == Some(k)
        {
            return Some(i + 1);
        }
    }
    table_line
}

fn table_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn batches_parse_as_an_inline_table_and_bad_ones_are_named() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n[[routes]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/\"\n";
        let c = Config::parse(
            &format!("{base}batch = {{ max = 50, wait = \"200ms\", format = \"ndjson\" }}\ncoalesce = \"pull_request\"\n"),
            "t.toml",
        )
        .unwrap();
        let b = c.routes[0].batching().unwrap().unwrap();
        assert_eq!(
            (b.max, b.wait.as_millis(), b.format),
            (50, 200, BatchFormat::Ndjson)
        );
        assert_eq!(b.coalesce, Some(Coalesce::PullRequest));
        assert_eq!(
            c.routes[0].sends(),
            "batches of up to 50 as NDJSON, waiting up to 200ms for more, a pull request's events together"
        );
        let e = err(&format!("{base}coalesce = \"pull_request\"\n"));
        assert!(
            e.contains("t.toml:6: routes[0].coalesce: route \"ci\": coalesce merges events into batches: set batch too"),
            "{e}"
        );
        let e = err(&format!("{base}batch = {{ max = 0 }}\n"));
        assert!(e.contains("batch.max 0 must be between 1 and 1000"), "{e}");
        let e = err(&format!("{base}batch = {{ max = 5, wait = \"soon\" }}\n"));
        assert!(e.contains("batch.wait \"soon\""), "{e}");
        let e = err(&format!("{base}batch = {{ max = 5, wait = \"2m\" }}\n"));
        assert!(e.contains("longer than 1m"), "{e}");
        let e = err(&format!("{base}batch = {{ max = 5, size = 3 }}\n"));
        assert!(e.contains("size"), "{e}");
        let e = err(&format!("{base}coalesce = \"issue\"\n"));
        assert!(e.contains("pull_request"), "{e}");
    }

    #[test]
    fn a_postgres_url_is_checked_and_never_repeated() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n[storage]\n";
        let e = err(&format!("{base}url = \"mysql://root:hunter2@db/x\"\n"));
        assert!(
            e.contains("t.toml:4: storage.url: not a PostgreSQL connection URL"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = err(&format!("{base}url = \"postgres://db:5432/x\"\n"));
        assert!(e.contains("names no user"), "{e}");
        let e = err(&format!("{base}url = \"postgres://u@db:5432\"\n"));
        assert!(e.contains("names no database"), "{e}");
        let e = err(&format!(
            "{base}url = \"postgres://u@db/x\"\nurl_file = \"/nonexistent/pg-url\"\n"
        ));
        assert!(
            e.contains("storage.url: set url or url_file, not both"),
            "{e}"
        );
        assert!(
            e.contains("storage.url_file: cannot read secret file /nonexistent/pg-url"),
            "{e}"
        );
        let e = err(&format!("{base}password_file = \"/nonexistent/pw\"\n"));
        assert!(
            e.contains("storage.password_file: is for PostgreSQL"),
            "{e}"
        );
        let c = Config::parse(
            &format!(
                "{base}url = \"postgres://gh:s3cret@db.internal:6432/gatehouse?sslmode=require\"\n"
            ),
            "t.toml",
        )
        .unwrap();
        assert!(c.storage.is_postgres());
        assert_eq!(
            c.storage.describe(),
            "postgres://gh@db.internal:6432/gatehouse"
        );
        assert!(matches!(
            c.storage.location(),
            crate::store::Location::Postgres(_)
        ));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_postgres_url_and_password_are_read_from_files_even_for_operator_commands() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("pg-url");
        let pw = dir.path().join("pg-password");
        std::fs::write(&url, "postgres://gh@db/gatehouse\n").unwrap();
        std::fs::write(&pw, "s3cret\n").unwrap();
        let config = dir.path().join("g.toml");
        std::fs::write(
            &config,
            "[webhooks]\nsecret_files = [\"/nonexistent/not-read\"]\n[storage]\n\
             url_file = \"pg-url\"\npassword_file = \"pg-password\"\n",
        )
        .unwrap();
        let c = Config::load_without_secrets(&config).unwrap();
        assert_eq!(c.storage.describe(), "postgres://gh@db:5432/gatehouse");
        assert_eq!(c.storage.password.as_ref().unwrap().expose(), b"s3cret");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(
            "[webhooks]\nsecrets = [\"x\"]\n\n[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n",
        );
        assert!(e.starts_with("t.toml:6: server.listne:"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_table_is_an_error() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\n[sever]\nlisten = 1\n");
        assert!(e.contains("unknown field `sever`"), "{e}");
    }

    #[test]
    fn bad_listen_address_names_key() {
        let e = err("[server]\nlisten = \"localhost\"\n[webhooks]\nsecrets=[\"x\"]\n");
        assert!(e.starts_with("t.toml:2: server.listen:"), "{e}");
    }

    #[test]
    fn bad_partition_by_names_key() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\npartition_by = \"org\"\n");
        assert!(e.starts_with("t.toml:3: webhooks.partition_by:"), "{e}");
    }

    #[test]
    fn zero_max_body_is_rejected_with_line() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = 0\n");
        assert!(
            e.starts_with("t.toml:3: webhooks.max_body_bytes: must be"),
            "{e}"
        );
    }

    #[test]
    fn negative_max_body_is_rejected() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = -5\n");
        assert!(e.starts_with("t.toml:3: webhooks.max_body_bytes:"), "{e}");
    }

    #[test]
    fn no_secret_is_an_error() {
        let e = err("[webhooks]\nmax_body_bytes = 10\n");
        assert!(
            e.contains("webhooks.secrets: at least one webhook secret"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_secret_file_names_path_not_content() {
        let e = err("[webhooks]\nsecret_files = [\"/nonexistent/gh-secret\"]\n");
        assert!(
            e.starts_with(
                "t.toml:2: webhooks.secret_files[0]: cannot read secret file /nonexistent/gh-secret"
            ),
            "{e}"
        );
    }

    #[test]
    fn secret_file_trailing_newline_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        let c = Config::parse(
            &format!(
                "[webhooks]\nsecret_files = [{:?}]\n",
                p.display().to_string()
            ),
            "t",
        )
        .unwrap();
        assert_eq!(c.webhooks.secrets, vec![Secret::new("abc")]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::parse("[webhooks]\nsecrets = [\"hunter2-very-secret\"]\n", "t").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn actions_metrics_is_on_by_default_and_validated() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let c = Config::parse(base, "t").unwrap();
        assert!(c.actions_metrics.enabled);
        assert_eq!(c.actions_metrics.stale_after_secs, 86_400);
        let e = err(&format!("{base}[actions_metrics]\nstale_after_secs = 5\n"));
        assert!(e.contains("actions_metrics.stale_after_secs"), "{e}");
        let e = err(&format!("{base}[actions_metrics]\nmax_repositories = 0\n"));
        assert!(e.contains("actions_metrics.max_repositories"), "{e}");
        let e = err(&format!("{base}[actions_metrics]\nrepos = []\n"));
        assert!(e.contains("repos"), "{e}");
        let e = err(&format!(
            "{base}[[routes]]\nname = \"actions-metrics\"\nurl = \"http://x\"\n"
        ));
        assert!(e.contains("built-in Actions metrics sink"), "{e}");
        let off = Config::parse(&format!("{base}[actions_metrics]\nenabled = false\n"), "t");
        assert!(!off.unwrap().actions_metrics.enabled);
    }

    #[test]
    fn recovery_defaults_and_hooks() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let c = Config::parse(base, "t").unwrap();
        assert!(c.recovery.enabled);
        assert_eq!(
            (c.recovery.interval_secs, c.recovery.lookback_hours),
            (300, None)
        );
        let e = err(&format!("{base}[recovery]\nper_page = 500\n"));
        assert!(e.contains("recovery.per_page"), "{e}");
        let e = err(&format!("{base}[recovery]\ninterval_secs = 0\n"));
        assert!(e.contains("recovery"), "{e}");
        let c = Config::parse(
            &format!(
                "{base}[[github.hooks]]\nowner = \"octo-org\"\nrepo = \"widgets\"\nid = 7\n[[github.hooks]]\nowner = \"octo-org\"\nid = 8\n"
            ),
            "t",
        )
        .unwrap();
        assert_eq!(c.github.hooks.len(), 2);
        assert_eq!(c.github.hooks[1].repo, None);
        let e = err(&format!("{base}[[github.hooks]]\nowner = \"o\"\n"));
        assert!(e.contains("id"), "{e}");
    }

    #[test]
    fn routes_are_validated() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"ftp://x\"\n"
        ));
        assert!(
            e.contains("routes[0].url") && e.contains("not an http(s) URL"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nname = \"a\"\nurl = \"http://y\"\n"
        ));
        assert!(e.contains("\"a\" is used twice"), "{e}");
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"http://x\"\nordering = \"fifo\"\n"
        ));
        assert!(e.starts_with("t.toml:6: routes.ordering:"), "{e}");
        let e = err(&format!(
            "{base}\n[[routes]]\nname = \"a\"\nurl = \"http://x\"\nsecret_file = \"/nonexistent/r\"\n"
        ));
        assert!(
            e.starts_with("t.toml:7: routes[0].secret_file: cannot read secret file"),
            "{e}"
        );
        let ok = Config::parse(
            &format!("{base}[[routes]]\nname = \"ci-1\"\nurl = \"https://ci.internal/hook\"\n"),
            "t",
        )
        .unwrap();
        // The default schedule spans more than a day.
        let s = ok.routes[0].schedule().unwrap();
        assert_eq!(s.max_attempts(), 13);
        assert!(
            s.span() > std::time::Duration::from_secs(24 * 3600),
            "{s:?}"
        );
        assert_eq!(ok.routes[0].ordering, Ordering::Strict);
    }

    #[test]
    fn github_credentials_are_read_and_checked() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!(
            "{base}[[github.apps]]\nid = 1\nprivate_key_file = \"/nonexistent/k.pem\"\n"
        ));
        assert!(
            e.contains(
                "github.apps[0].private_key_file: cannot read secret file /nonexistent/k.pem"
            ),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let e = err(&format!(
            "{base}[[github.apps]]\nid = 1\nprivate_key_file = {:?}\n",
            bad.display().to_string()
        ));
        assert!(e.contains("not an RSA private key"), "{e}");
        assert!(
            !e.contains("not a key"),
            "the key's content is never echoed: {e}"
        );
        let e = err(&format!("{base}[[github.tokens]]\nname = \"bot\"\n"));
        assert!(
            e.contains("github.tokens[0]: token \"bot\": needs token or token_file"),
            "{e}"
        );
        let good = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fakehub/testdata/app-a.pkcs1.pem"
        );
        let c = Config::parse(&format!("{base}[github]\napi_url = \"https://ghe.example/api/v3\"\n[[github.apps]]\nid = 7\nprivate_key_file = {good:?}\n"), "t").unwrap();
        assert_eq!(c.github.apps[0].id, 7);
        assert!(
            !format!("{c:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );
    }

    #[test]
    fn gateway_is_checked() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!("{base}[gateway]\nlisten = \"127.0.0.1:0\"\n"));
        assert!(e.contains("gateway: the gateway needs credentials"), "{e}");
        let creds = "[[github.tokens]]\nname = \"bot\"\ntoken = \"t\"\n";
        let e = err(&format!(
            "{base}{creds}[gateway]\n[[gateway.fresh]]\npath = \"(\"\nsecs = 5\n"
        ));
        assert!(e.contains("gateway.fresh.path"), "{e}");
        let e = err(&format!(
            "{base}{creds}[gateway]\npublic_url = \"ftp://x\"\n"
        ));
        assert!(e.contains("gateway.public_url"), "{e}");
        let c = Config::parse(
            &format!("{base}[storage]\npath = \"/d/g.db\"\n{creds}[gateway]\n"),
            "t",
        )
        .unwrap();
        let g = c.gateway.as_ref().unwrap();
        assert_eq!(g.listen.to_string(), "127.0.0.1:8081");
        assert!(g.fresh.is_empty(), "no fresh window unless configured");
        assert_eq!(
            c.gateway_cache_path().unwrap(),
            PathBuf::from("/d/gateway-cache.db")
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::parse("[webhooks]\nsecrets = [\"x\"]\n", "t").unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.webhooks.max_body_bytes, 26_214_400);
        assert_eq!(c.webhooks.partition_by, PartitionBy::Owner);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[server]\nlisten = \"nowhere\"\n\n[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = -1\n\n[log]\nlevel = \"info\"\nformt = \"json\"\n";
        let e = Config::parse(text, "t.toml").unwrap_err();
        let lines = e.lines();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].starts_with("t.toml:2: server.listen:"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("t.toml:6: webhooks.max_body_bytes:"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("t.toml:10: log.formt:"),
            "{}",
            lines[2]
        );
        let text = "[webhooks]\nsecrets = [\"x\"]\n[log]\nlevel = \"verbose\"\n[[routes]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nname = \"b\"\nurl = \"http://y\"\nevents = [\"push\", \"pushh\"]\n";
        let lines = Config::parse(text, "t.toml").unwrap_err().lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("t.toml:4: log.level:")
                && lines[0].contains("\"verbose\" is not a level"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("t.toml:11: routes[1].events:")
                && lines[1].contains("did you mean \"push\"?"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn relative_paths_are_the_config_files_and_secrets_can_wait() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            "[storage]\npath = \"data/g.db\"\n[webhooks]\nsecret_files = [\"secret\", \"$CREDENTIALS_DIRECTORY/other\"]\n",
        )
        .unwrap();
        let c = Config::load_without_secrets(&file).unwrap();
        assert_eq!(c.storage.path, dir.path().join("data/g.db"));
        assert!(c.webhooks.secrets.is_empty(), "no secret read");
        // Reading them says what to do about the missing variable.
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            let e = Config::load(&file).unwrap_err().to_string();
            assert!(
                e.contains("webhooks.secret_files[1]")
                    && e.contains("$CREDENTIALS_DIRECTORY is not set"),
                "{e}"
            );
        }
    }
}
