//! `gatehouse recovery status|run`: what the walks did, and a walk asked
//! for now (the running server takes it within 5 s; this follows it).

use std::time::{Duration, Instant};

use super::CliError;
use crate::config::Config;
use crate::recovery::Source;
use crate::store::Store;

/// Each source's last walk and its last complete one; then (in text) the
/// Apps recovery leaves alone, and why.
pub async fn status(config: &Config, store: &Store, json: bool) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let rows = store.recovery_status().await?;
    let skipped = Source::skipped(config);
    let watch = crate::problems::Watch::new(config, store.clone(), None, crate::clock::system());
    let completeness = watch.completeness().await?.unwrap_or_default();
    // The JSON stays the walks' rows, each with its source's completeness
    // added; the Apps left alone are the config's, which check-config
    // prints too.
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("a status serializes");
                let c = completeness.iter().find(|c| c.source == r.source);
                v["completeness"] = serde_json::to_value(c).expect("completeness serializes");
                v
            })
            .collect();
        super::print_json(&rows);
        return Ok(());
    }
    if let Some(w) = &watch.recovery {
        let total = crate::store::recovery::Completeness::total(&completeness);
        println!(
            "completeness over the last {}h: {} of {} deliveries GitHub attempted are in the journal; {} recovered, {} missing{}",
            w.window_hours,
            crate::problems::percent(total.ratio()),
            total.attempted,
            total.recovered,
            total.missing,
            total.oldest_missing_ms.map_or(String::new(), |t| format!(
                " (oldest {} ago)",
                crate::clock::span(now - t)
            ))
        );
        for c in &completeness {
            println!(
                "  {:<28}  {:>9}  attempted {:>7}  recovered {:>5}  missing {:>5}",
                c.source,
                crate::problems::percent(c.ratio()),
                c.attempted.max(c.missing),
                c.recovered,
                c.missing
            );
        }
        println!();
    }
    let say_skipped = || {
        for (source, why) in &skipped {
            println!("{source}: not walked: {why}");
        }
    };
    if rows.is_empty() {
        println!("no recovery walk yet");
        say_skipped();
        return Ok(());
    }
    println!(
        "{:<28}  {:<9}  {:>10}  {:>5}  {:>6}  {:>7}  {:>6}  {:>8}  {:>13}  {:>6}",
        "source",
        "state",
        "started",
        "pages",
        "seen",
        "missing",
        "asked",
        "failures",
        "last complete",
        "retry"
    );
    for r in rows {
        let w = &r.last_walk;
        let ago = |t: i64| format!("{} ago", crate::clock::span(now - t));
        println!(
            "{:<28}  {:<9}  {:>10}  {:>5}  {:>6}  {:>7}  {:>6}  {:>8}  {:>13}  {:>6}",
            r.source,
            w.state.as_str(),
            ago(w.started_at_ms),
            w.pages,
            w.seen,
            w.missing,
            w.requested,
            w.failures,
            r.last_complete_at_ms.map_or("never".to_string(), ago),
            r.failed_requests,
        );
        if let Some(e) = &w.last_error {
            println!("  last error: {}", super::safe(e));
        }
    }
    say_skipped();
    Ok(())
}

/// The last `limit` walks of every source, newest first.
pub async fn walks(store: &Store, limit: usize, json: bool) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let walks = store.walks(limit).await?;
    if json {
        super::print_json(&walks);
        return Ok(());
    }
    println!(
        "{:>5}  {:<28}  {:<9}  {:>10}  {:>9}  {:>5}  {:>6}  {:>7}  {:>6}  {:>8}",
        "walk",
        "source",
        "state",
        "started",
        "took",
        "pages",
        "seen",
        "missing",
        "asked",
        "failures"
    );
    for w in walks {
        let took = w
            .finished_at_ms
            .map_or("-".to_string(), |f| crate::clock::span(f - w.started_at_ms));
        println!(
            "{:>5}  {:<28}  {:<9}  {:>10}  {:>9}  {:>5}  {:>6}  {:>7}  {:>6}  {:>8}",
            w.id,
            w.source,
            w.state.as_str(),
            format!("{} ago", crate::clock::span(now - w.started_at_ms)),
            took,
            w.pages,
            w.seen,
            w.missing,
            w.requested,
            w.failures,
        );
    }
    Ok(())
}

/// Asks the running server for a walk of every source (back to `since`,
/// else to the last complete walk) and prints its progress until it is
/// complete or `wait` seconds pass.
pub async fn run(
    config: &Config,
    store: &Store,
    since: Option<&str>,
    wait: u64,
) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let since_ms = since
        .map(|s| crate::clock::parse_since(s, now))
        .transpose()?;
    let id = store.trigger(since_ms, now).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let taken = loop {
        if let Some(t) = store.trigger_taken(id).await? {
            break t;
        }
        if Instant::now() > deadline {
            println!(
                "requested; no running gatehouse took it within 15 s, so it runs when gatehouse serve starts"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let sources: Vec<String> = Source::all(config).iter().map(Source::name).collect();
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut last = String::new();
    loop {
        let rows = store.recovery_status().await?;
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| {
                // A walk this trigger started, or an unfinished one it resumed.
                let w = &r.last_walk;
                sources.contains(&r.source)
                    && (w.started_at_ms >= taken || w.finished_at_ms.is_none_or(|f| f >= taken))
            })
            .collect();
        let line = mine
            .iter()
            .map(|r| {
                let w = &r.last_walk;
                format!(
                    "{}: {} pages, {} seen, {} missing, {} asked, {} failures ({})",
                    r.source, w.pages, w.seen, w.missing, w.requested, w.failures, w.state
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        if line != last && !line.is_empty() {
            println!("{line}");
            last = line;
        }
        let done = mine.len() == sources.len()
            && mine
                .iter()
                .all(|r| r.last_walk.state == crate::store::recovery::WalkState::Complete);
        if done {
            println!("recovery walk complete");
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("still walking after {wait} s; see `gatehouse recovery status`");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
