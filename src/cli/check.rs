//! `gatehouse check-config`: every problem, or what the file sets up.

use crate::config::{Config, ConfigError};

/// Each problem on a line of its own, after a count.
pub fn problems(path: &std::path::Path, e: &ConfigError) -> String {
    let lines = e.lines();
    match lines.as_slice() {
        [one] => format!("gatehouse: config error: {one}"),
        many => format!(
            "gatehouse: config error: {} problems in {}:\n{}",
            many.len(),
            path.display(),
            many.iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// What a sound file sets up: listeners, journal, routes and sinks,
/// credentials, and where each secret comes from (never the secret).
pub fn summary(path: &std::path::Path, c: &Config) -> String {
    let mut out = vec![format!("{}: OK", path.display())];
    let mut line = |s: String| out.push(format!("  {s}"));
    line(format!(
        "webhooks     http://{}/webhooks/github, partition by {:?}, bodies up to {} bytes",
        c.server.listen, c.webhooks.partition_by, c.webhooks.max_body_bytes
    ));
    match c.admin.listen {
        Some(a) if c.admin.enabled => {
            line(format!("admin UI     http://{a}/admin/ (and /metrics)"))
        }
        _ if c.admin.enabled => line(format!(
            "admin UI     http://{}/admin/ (and /metrics)",
            c.server.listen
        )),
        _ => line("admin UI     off".into()),
    }
    if let Some(g) = &c.gateway {
        line(format!("gateway      http://{}", g.listen));
    }
    line(format!(
        "journal      {} (retention {} days)",
        c.storage.describe(),
        c.storage.retention_days
    ));
    let secrets =
        c.webhooks.secrets.len() - c.webhooks.secret_files.len().min(c.webhooks.secrets.len());
    let mut from = Vec::new();
    if secrets > 0 {
        from.push(format!("{secrets} in the file"));
    }
    from.extend(
        c.webhooks
            .secret_files
            .iter()
            .map(|p| p.display().to_string()),
    );
    line(format!("secrets      webhooks: {}", from.join(", ")));
    if c.routes.is_empty() {
        line("routes       none".into());
    }
    for r in &c.routes {
        let events = if r.events.is_empty() {
            "every event".to_string()
        } else {
            r.events.join(", ")
        };
        let signed = match (&r.secret_file, &r.secret) {
            (Some(f), _) => format!("re-signed with {}", f.display()),
            (None, Some(_)) => "re-signed with a secret in the file".into(),
            (None, None) => "GitHub's signature passed on".into(),
        };
        let retry = r.schedule().map_or_else(|e| e, |s| s.summary());
        line(format!(
            "route        {} → {} ({events}; {signed}; {retry}; ordering {:?}; {})",
            r.name,
            r.url,
            r.ordering,
            r.sends()
        ));
    }
    line(format!(
        "sink         actions-metrics {}",
        if c.actions_metrics.enabled {
            "on"
        } else {
            "off"
        }
    ));
    for a in &c.github.apps {
        line(format!(
            "credential   app {} (key from {}; {}{})",
            a.id,
            a.private_key_file
                .as_ref()
                .map_or("the file".to_string(), |p| p.display().to_string()),
            purposes(&a.purposes),
            if a.webhook { "" } else { "; no webhook" }
        ));
    }
    for (source, why) in crate::recovery::Source::skipped(c) {
        line(format!("recovery     {source} not walked: {why}"));
    }
    for t in &c.github.tokens {
        let owners = if t.owners.is_empty() {
            "any owner".to_string()
        } else {
            t.owners.join(", ")
        };
        line(format!(
            "credential   token {} for {owners}{} (from {}; {})",
            t.name,
            if t.confined { ", confined" } else { "" },
            t.token_file
                .as_ref()
                .map_or("the file".to_string(), |p| p.display().to_string()),
            purposes(&t.purposes)
        ));
    }
    if !c.github.apps.is_empty() || !c.github.tokens.is_empty() {
        line(format!("github       {}", c.github.api_url));
    }
    if c.admin.enabled {
        line(format!(
            "admin login  {}",
            match (&c.admin.password_hash, &c.admin.password_hash_file) {
                (Some(_), _) => "password hash in the file".to_string(),
                (None, Some(p)) => format!("password hash from {}", p.display()),
                (None, None) => format!(
                    "password hash from {}",
                    c.admin.hash_path(&c.storage.path).display()
                ),
            }
        ));
    }
    out.join("\n")
}

/// A credential's purposes, in words.
fn purposes(p: &[crate::config::Purpose]) -> String {
    if crate::config::Purpose::ALL.iter().all(|x| p.contains(x)) {
        return "for every purpose".into();
    }
    let names: Vec<&str> = p.iter().map(|x| x.as_str()).collect();
    format!("only for {}", names.join(", "))
}
