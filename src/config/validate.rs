//! Checks a parsed config for what its types alone do not rule out:
//! ranges, names, URLs, known event names, a log filter that logs. Every
//! problem is collected, so `check-config` can list them all at once.

use super::{Config, MAX_MAX_BODY_BYTES};

fn push<K: Into<String>>(out: &mut Vec<(String, String)>, (key, message): (K, String)) {
    out.push((key.into(), message));
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter that says what to log: every directive is a level, or
/// `target=level`. A bare word that is no level (`verbose`) would parse as
/// a target name and switch off every other log line.
fn log_filter_problem(filter: &str) -> Option<String> {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
        return Some(format!("not a valid filter: {e}"));
    }
    let is_level = |s: &str| LEVELS.contains(&s.trim().to_ascii_lowercase().as_str());
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match d.rsplit_once('=') {
            Some((_, level)) => is_level(level),
            None => is_level(d),
        };
        if !ok {
            return Some(format!(
                "{d:?} is not a level: use error, warn, info, debug or trace, or target=level (info,gatehouse=debug)"
            ));
        }
    }
    None
}

/// The known name closest to `word`, when it is close enough to be what
/// was meant (an edit or two away).
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.min(k.len() / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

/// Every value serde's types alone do not rule out, as (dotted key, what
/// is wrong with it); empty when the config is sound.
pub(super) fn problems(c: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if c.server.max_connections == 0 {
        push(
            &mut out,
            ("server.max_connections", "must be at least 1".into()),
        );
    }
    for (key, secs) in [
        ("server.header_timeout_secs", c.server.header_timeout_secs),
        ("server.body_timeout_secs", c.server.body_timeout_secs),
    ] {
        if secs == 0 {
            push(&mut out, (key, "must be at least 1 second".into()));
        }
    }
    if c.server.idle_timeout_secs == 0 || c.server.h2_max_concurrent_streams == 0 {
        push(
            &mut out,
            (
                "server",
                "idle_timeout_secs and h2_max_concurrent_streams must be at least 1".into(),
            ),
        );
    }
    let largest_body = c
        .gateway
        .as_ref()
        .map_or(0, |g| g.max_body_bytes)
        .max(c.webhooks.max_body_bytes);
    if let Some(budget) = c.server.body_budget_bytes
        && budget < largest_body
    {
        push(
            &mut out,
            (
                "server.body_budget_bytes",
                format!(
                    "{budget} is below the largest body allowed ({largest_body}, max_body_bytes): such a body could never be read"
                ),
            ),
        );
    }
    if c.storage.url.is_some() && c.storage.url_file.is_some() {
        push(
            &mut out,
            ("storage.url", "set url or url_file, not both".into()),
        );
    }
    if c.storage.password_file.is_some() && !c.storage.is_postgres() {
        push(
            &mut out,
            (
                "storage.password_file",
                "is for PostgreSQL: set url or url_file too".into(),
            ),
        );
    }
    if c.storage.path.as_os_str().is_empty() {
        push(&mut out, ("storage.path", "must not be empty".into()));
    }
    if c.webhooks.max_body_bytes == 0 || c.webhooks.max_body_bytes > MAX_MAX_BODY_BYTES {
        push(
            &mut out,
            (
                "webhooks.max_body_bytes",
                format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
            ),
        );
    }
    if c.webhooks.secrets.iter().any(|s| s.expose().is_empty()) {
        push(
            &mut out,
            ("webhooks.secrets", "a secret must not be empty".into()),
        );
    }
    let pr = &c.problems;
    if !(pr.completeness_objective > 0.0 && pr.completeness_objective <= 1.0) {
        push(
            &mut out,
            (
                "problems.completeness_objective",
                format!(
                    "{}: give a part, above 0 and at most 1 (0.999 = 99.9%)",
                    pr.completeness_objective
                ),
            ),
        );
    }
    if pr.interval_secs == 0 {
        push(
            &mut out,
            ("problems.interval_secs", "must be at least 1".into()),
        );
    }
    for (i, n) in c.notify.iter().enumerate() {
        let key = format!("notify[{i}]");
        if n.url.is_some() && n.url_file.is_some() {
            out.push((format!("{key}.url"), "set url or url_file, not both".into()));
        } else if n.url.is_none() && n.url_file.is_none() {
            out.push((key.clone(), "needs url or url_file".into()));
        }
        // Only a URL read already is checked (url_file's is read later);
        // its text stays out of the message: it is a secret.
        if let Some(url) = &n.url
            && !url.expose().is_empty()
            && !notify_url_ok(url.expose())
        {
            out.push((format!("{key}.url"), "is not an http(s) URL".into()));
        }
        if n.max_per_hour == 0 {
            out.push((format!("{key}.max_per_hour"), "must be at least 1".into()));
        }
    }
    if let Some(why) = log_filter_problem(&c.log.level) {
        push(&mut out, ("log.level", why));
    }
    let p = &c.processing;
    if p.workers == 0 || p.lease_secs == 0 || p.batch_size == 0 {
        push(
            &mut out,
            (
                "processing",
                "workers, lease_secs and batch_size must be at least 1".into(),
            ),
        );
    }
    if let Some(g) = &c.gateway {
        if c.github.apps.is_empty() && c.github.tokens.is_empty() {
            push(&mut out, (
                "gateway",
                "the gateway needs credentials to spend: add [[github.apps]] or [[github.tokens]]"
                    .into(),
            ));
        } else if !c.github.spends_on(super::Purpose::Gateway) {
            push(&mut out, (
                "gateway",
                "no App or token may be spent on the gateway: add \"gateway\" to one's purposes"
                    .into(),
            ));
        }
        if g.max_body_bytes == 0 || g.max_body_bytes > MAX_MAX_BODY_BYTES {
            push(
                &mut out,
                (
                    "gateway.max_body_bytes",
                    format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
                ),
            );
        }
        if !g.public_url.is_empty()
            && (!(g.public_url.starts_with("http://") || g.public_url.starts_with("https://"))
                || g.public_url.parse::<http::Uri>().is_err())
        {
            push(
                &mut out,
                (
                    "gateway.public_url",
                    format!("{:?} is not an http(s) URL", g.public_url),
                ),
            );
        }
        for (key, v) in [
            ("gateway.fair_share_below", g.fair_share_below),
            ("gateway.priority_share", g.priority_share),
        ] {
            if !(0.0..1.0).contains(&v) {
                push(
                    &mut out,
                    (
                        key,
                        format!("{v}: give a part of the budget, from 0 up to (not) 1"),
                    ),
                );
            }
        }
        if g.fair_share_below > 0.0 && g.priority_share >= g.fair_share_below {
            push(
                &mut out,
                (
                    "gateway.priority_share",
                    format!(
                        "{} is not below fair_share_below ({}): the fair share would have nothing to divide",
                        g.priority_share, g.fair_share_below
                    ),
                ),
            );
        }
        for f in &g.fresh {
            if let Err(e) = regex::Regex::new(&f.path) {
                push(
                    &mut out,
                    ("gateway.fresh.path", format!("{:?}: {e}", f.path)),
                );
            }
        }
    }
    for a in &c.github.apps {
        if a.purposes.is_empty() {
            push(
                &mut out,
                (
                    "github.apps.purposes",
                    format!(
                        "app {}: purposes is empty, so nothing may spend it: name gateway, sinks or recovery, or leave purposes out for all three",
                        a.id
                    ),
                ),
            );
        }
    }
    for t in &c.github.tokens {
        if t.purposes.is_empty() {
            push(
                &mut out,
                (
                    "github.tokens.purposes",
                    format!(
                        "token {:?}: purposes is empty, so nothing may spend it: name gateway, sinks or recovery, or leave purposes out for all three",
                        t.name
                    ),
                ),
            );
        }
        if t.confined && t.owners.is_empty() {
            push(
                &mut out,
                (
                    "github.tokens.confined",
                    format!(
                        "token {:?}: confined = true needs the owners it is confined to",
                        t.name
                    ),
                ),
            );
        }
    }
    let r = &c.recovery;
    if r.interval_secs == 0 || r.lookback_hours == Some(0) || r.reask_after_secs == 0 {
        push(
            &mut out,
            (
                "recovery",
                "interval_secs, lookback_hours and reask_after_secs must be at least 1".into(),
            ),
        );
    }
    if !(1..=100).contains(&r.per_page) {
        push(
            &mut out,
            ("recovery.per_page", "must be between 1 and 100".into()),
        );
    }
    if c.github.timeout_secs == 0 {
        push(
            &mut out,
            ("github.timeout_secs", "must be at least 1".into()),
        );
    }
    let admin = &c.admin;
    if admin.session_idle_minutes == 0 || admin.login_attempts_per_minute == 0 {
        push(
            &mut out,
            (
                "admin",
                "session_idle_minutes and login_attempts_per_minute must be at least 1".into(),
            ),
        );
    }
    if admin.password_hash.is_some() && admin.password_hash_file.is_some() {
        push(
            &mut out,
            (
                "admin.password_hash",
                "set password_hash or password_hash_file, not both".into(),
            ),
        );
    }
    if let Some(h) = &admin.password_hash
        && let Err(e) = argon2::password_hash::phc::PasswordHash::new(h)
    {
        push(
            &mut out,
            (
                "admin.password_hash",
                format!(
                    "not a password hash (PHC string, as `gatehouse admin set-password` writes): {e}"
                ),
            ),
        );
    }
    let a = &c.actions_metrics;
    if a.stale_after_secs < 60 {
        push(
            &mut out,
            (
                "actions_metrics.stale_after_secs",
                "must be at least 60".into(),
            ),
        );
    }
    for (key, n) in [
        ("actions_metrics.max_repositories", a.max_repositories),
        ("actions_metrics.max_workflows", a.max_workflows),
        ("actions_metrics.max_job_names", a.max_job_names),
        (
            "actions_metrics.max_runner_label_sets",
            a.max_runner_label_sets,
        ),
    ] {
        if n == 0 {
            push(&mut out, (key, "must be at least 1".into()));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            push(
                &mut out,
                (
                    key("name"),
                    format!("{:?}: use letters, digits, - and _", r.name),
                ),
            );
        }
        if r.name == super::ACTIONS_SINK {
            push(
                &mut out,
                (
                    key("name"),
                    format!("{:?} is the built-in Actions metrics sink's name", r.name),
                ),
            );
        }
        if !names.insert(r.name.as_str()) {
            push(
                &mut out,
                (key("name"), format!("{:?} is used twice", r.name)),
            );
        }
        if !(r.url.starts_with("http://") || r.url.starts_with("https://"))
            || r.url.parse::<http::Uri>().is_err()
        {
            push(
                &mut out,
                (
                    key("url"),
                    format!("route {:?}: {:?} is not an http(s) URL", r.name, r.url),
                ),
            );
        }
        // A worker starts an attempt only while its lease outlives the
        // attempt's timeout by a margin (the trust window).
        if r.timeout_secs + super::LEASE_MARGIN_SECS > c.processing.lease_secs {
            push(
                &mut out,
                (
                    key("timeout_secs"),
                    format!(
                        "route {:?}: timeout_secs {} must be at least {} s under [processing] lease_secs {}, so a lease outlives an attempt",
                        r.name,
                        r.timeout_secs,
                        super::LEASE_MARGIN_SECS,
                        c.processing.lease_secs
                    ),
                ),
            );
        }
        if r.timeout_secs == 0 {
            push(
                &mut out,
                (
                    key("timeout_secs"),
                    format!("route {:?}: timeout_secs must be at least 1", r.name),
                ),
            );
        }
        if r.ordering == super::Ordering::None
            && r.on_dead == Some(super::routes::OnDeadConfig::Hold)
        {
            push(
                &mut out,
                (
                    key("on_dead"),
                    format!(
                        "route {:?}: on_dead = \"hold\" keeps order, and ordering = \"none\" has none to keep",
                        r.name
                    ),
                ),
            );
        }
        if r.github_budget && !c.github.spends_on(super::Purpose::Sinks) {
            push(
                &mut out,
                (
                    key("github_budget"),
                    format!(
                        "route {:?}: github_budget follows the pool's credentials for the sinks, and [github] has none (an App or token with \"sinks\" among its purposes)",
                        r.name
                    ),
                ),
            );
        }
        if let Err((k, why)) = r.batching() {
            push(&mut out, (key(k), format!("route {:?}: {why}", r.name)));
        }
        if let Err(why) = r.breaker.times() {
            push(
                &mut out,
                (key("breaker"), format!("route {:?}: {why}", r.name)),
            );
        }
        if let Err(why) = r.schedule() {
            push(
                &mut out,
                (key("retry"), format!("route {:?}: {why}", r.name)),
            );
        }
        for e in &r.events {
            if crate::journal::events::KNOWN
                .binary_search(&e.as_str())
                .is_err()
            {
                let hint = did_you_mean(e, crate::journal::events::KNOWN)
                    .map(|k| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                push(
                    &mut out,
                    (
                        key("events"),
                        format!(
                            "route {:?}: {e:?} is not one of GitHub's webhook events{hint}",
                            r.name
                        ),
                    ),
                );
            }
        }
    }
    out
}

/// An http(s) URL with a host.
fn notify_url_ok(url: &[u8]) -> bool {
    std::str::from_utf8(url)
        .ok()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_receivers_and_objectives_are_checked_without_quoting_a_url() {
        let base = "[webhooks]\nsecrets = [\"s\"]\n";
        let err = |extra: &str| {
            Config::parse(&format!("{base}{extra}"), "t.toml")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("[[notify]]\n").contains("notify[0]: needs url or url_file"));
        let e = err("[[notify]]\nurl = \"ftp://hooks.example/T0K3N\"\n");
        assert!(e.contains("notify[0].url: is not an http(s) URL"), "{e}");
        assert!(!e.contains("T0K3N"), "a receiver's URL is a secret: {e}");
        let e = err("[problems]\ncompleteness_objective = 99.9\n");
        assert!(e.contains("problems.completeness_objective"), "{e}");
        assert!(err("[[notify]]\nurl = \"https://hooks.example/x\"\n").is_empty());
    }

    #[test]
    fn log_filters_must_name_levels() {
        for good in [
            "info",
            "INFO",
            "info,gatehouse=debug",
            "warn,gatehouse::app=info",
            "off",
        ] {
            assert_eq!(log_filter_problem(good), None, "{good}");
        }
        for bad in ["verbose", "info,loud", "gatehouse=chatty"] {
            assert!(log_filter_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn near_misses_are_suggested() {
        let known = crate::journal::events::KNOWN;
        assert_eq!(did_you_mean("pushh", known), Some("push"));
        assert_eq!(did_you_mean("pull_requests", known), Some("pull_request"));
        assert_eq!(did_you_mean("workflowjob", known), Some("workflow_job"));
        assert_eq!(did_you_mean("zzzzzz", known), None);
    }

    #[test]
    fn a_lease_must_outlive_a_route_timeout() {
        let mut c = Config::default();
        c.webhooks.secrets = vec![crate::config::Secret::new("x")];
        let mut r: crate::config::RouteConfig =
            toml::from_str("name = \"ci\"\nurl = \"http://127.0.0.1:9/\"").unwrap();
        r.timeout_secs = 26;
        c.routes = vec![r];
        let found = problems(&c);
        assert!(
            found
                .iter()
                .any(|(k, m)| k.ends_with("timeout_secs") && m.contains("lease_secs 30")),
            "{found:?}"
        );
        c.processing.lease_secs = 31;
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    }
}
