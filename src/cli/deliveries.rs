//! `gatehouse deliveries list|show|retry`: the journal's deliveries, one
//! with its jobs and every attempt (what the consumer answered), and jobs
//! run again.

use super::CliError;
use super::{print_json, safe};
use crate::config::{Config, Ordering};
use crate::store::Store;
use crate::store::operator::{Cursor, Filter, Waiting};

/// RFC 3339 with milliseconds, UTC.
pub fn time(ms: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

/// The newest deliveries matching `filter`, with their jobs.
pub async fn list(
    store: &Store,
    filter: &Filter,
    limit: usize,
    json: bool,
) -> Result<(), CliError> {
    let rows = store.list(filter, Cursor::Newest, limit).await?.rows;
    if json {
        print_json(&rows);
    } else {
        println!(
            "{:<24}  {:<36}  {:<28}  {:<20}  jobs",
            "received", "guid", "event", "partition"
        );
        for r in rows {
            let event = match &r.action {
                Some(a) => format!("{}.{a}", r.event),
                None => r.event.clone(),
            };
            println!(
                "{:<24}  {:<36}  {:<28}  {:<20}  {}{}",
                time(r.received_at_ms),
                safe(&r.guid),
                safe(&event),
                safe(&r.partition),
                safe(&r.jobs.join(" ")),
                if r.recovered { "  (recovered)" } else { "" }
            );
        }
    }
    Ok(())
}

/// Runs jobs again: one GUID's (only `filter.route`'s, if given), every
/// dead letter matching `filter` (`dead`), or, with a route and `since`
/// alone, back-fills that route with the deliveries it missed.
pub async fn retry(
    config: &Config,
    store: &Store,
    guid: Option<String>,
    dead: bool,
    filter: &Filter,
    since: Option<&str>,
) -> Result<(), CliError> {
    let n = if let Some(g) = guid {
        store.retry_guid(&g, filter.route.as_deref()).await?.jobs
    } else if dead {
        store.retry_dead(filter).await?.jobs
    } else if let (Some(name), Some(since)) = (filter.route.as_deref(), since) {
        let catalog = crate::sinks::Catalog::new(config);
        if !catalog.has(name) {
            return Err(CliError::Invalid(format!(
                "no route {name:?} in the config (nor an enabled built-in sink)"
            )));
        }
        let now = crate::clock::now_ms();
        let since_ms = crate::clock::parse_since(since, now)?;
        let sink = name.to_string();
        store
            .backfill(
                name,
                Box::new(move |meta| catalog.wants(&sink, meta)),
                since_ms,
                now,
            )
            .await?
    } else {
        return Err(CliError::Invalid(
            "give a GUID, --dead [filters], or --route R --since T to back-fill".into(),
        ));
    };
    println!("{n} job(s) queued; a running gatehouse picks them up within 10 s");
    Ok(())
}

/// Lets order move past a GUID's dead letters (or `route`'s).
pub async fn skip(store: &Store, guid: &str, route: Option<&str>) -> Result<(), CliError> {
    let ids = store.ids_of_guid(guid).await?;
    if ids.is_empty() {
        return Err(CliError::Invalid(format!(
            "no delivery {guid:?} in the journal"
        )));
    }
    let by = super::clients::actor().label();
    let now = crate::clock::now_ms();
    let mut n = 0;
    for id in ids {
        n += store.skip_dead(id, route, &by, now).await?.jobs;
    }
    if n == 0 {
        return Err(CliError::Invalid(format!(
            "{guid:?} has no dead letter left to skip{}",
            route
                .map(|r| format!(" on route {r:?}"))
                .unwrap_or_default()
        )));
    }
    println!(
        "{n} dead letter(s) skipped: the deliveries behind them go on (a running gatehouse within 10 s); they stay dead letters to retry later"
    );
    Ok(())
}

pub async fn show(config: &Config, store: &Store, guid: &str, json: bool) -> Result<(), CliError> {
    let mut found = Vec::new();
    for id in store.ids_of_guid(guid).await? {
        found.extend(store.show(id).await?);
    }
    if found.is_empty() {
        return Err(CliError::Invalid(format!(
            "no delivery with GUID {}",
            safe(guid)
        )));
    }
    if json {
        print_json(&found);
        return Ok(());
    }
    let now = crate::clock::now_ms();
    for d in found {
        let l = &d.listed;
        println!(
            "delivery {} (hook {}): {}{} for {} at {}",
            safe(&l.guid),
            safe(&l.hook_id),
            safe(&l.event),
            safe(
                &l.action
                    .as_deref()
                    .map(|a| format!(".{a}"))
                    .unwrap_or_default()
            ),
            safe(&l.partition),
            time(l.received_at_ms)
        );
        println!(
            "  repository {}  installation {}  {} bytes  {}",
            safe(d.repository.as_deref().unwrap_or("-")),
            d.installation_id
                .map(|i| i.to_string())
                .unwrap_or("-".into()),
            d.body_size,
            d.parse_status
        );
        if l.recovered {
            println!(
                "  recovered: GitHub sent it again because gatehouse asked; it may have come after later deliveries"
            );
        }
        for j in &d.jobs {
            let route = config.routes.iter().find(|r| r.name == j.route);
            let max = route.map_or(String::new(), |r| format!(" of {}", r.max_attempts()));
            let paused = j.history.iter().filter(|a| a.outcome == "paused").count();
            let not_counted = if paused > 0 {
                format!(", {paused} paused (not counted)")
            } else {
                String::new()
            };
            let strict = route.is_none_or(|r| r.ordering == Ordering::Strict);
            let waiting = match j.waiting(now, strict) {
                Waiting::Nothing => String::new(),
                Waiting::Behind(head) => format!("; waiting behind job #{head}"),
                Waiting::At(at) => format!("; next attempt at {}", time(at)),
                Waiting::Now => "; due now".into(),
            };
            println!(
                "  route {} (job #{}): {}, {}{max} attempt(s) counted{not_counted}{waiting}",
                safe(&j.route),
                j.id,
                j.state,
                j.attempts
            );
            if j.holding {
                println!(
                    "    its partition waits behind it (on_dead = hold): `gatehouse deliveries retry {0}` or `gatehouse deliveries skip {0}`",
                    safe(&l.guid)
                );
            }
            if let Some((at, by)) = &j.skipped {
                println!(
                    "    skipped: order moved past it at {} ({})",
                    time(*at),
                    safe(by)
                );
            }
            for a in &j.history {
                println!(
                    "    attempt {} at {}  {} ms  {}  {}{}",
                    a.n,
                    time(a.started_at_ms),
                    a.duration_ms,
                    a.outcome,
                    a.status_code.map_or("-".into(), |c| c.to_string()),
                    safe(
                        &a.error
                            .as_deref()
                            .map(|e| format!("  {e}"))
                            .unwrap_or_default()
                    )
                );
                if let Some(url) = &a.url {
                    println!("      sent to {}", safe(url));
                }
                if let Some(excerpt) = a.response_excerpt.as_deref().filter(|e| !e.is_empty()) {
                    for line in excerpt.lines().take(EXCERPT_LINES) {
                        println!("      | {}", safe(line));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Lines of a consumer's answer printed per attempt (the whole excerpt is
/// in --json).
const EXCERPT_LINES: usize = 8;
