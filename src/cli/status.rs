//! `gatehouse status`: what the operator who logged in over SSH wants
//! first. Each running server (replica) reports itself to the store every
//! `[problems] interval_secs`: version, uptime, config, listeners,
//! credential budgets, open problems; this prints those reports, the
//! store's size and backlog, and the open problems (computed from the
//! store alone when no server reported lately). Ends 1 while a problem is
//! open, so it can be a cron or monitoring check too.

use serde::Serialize;

use super::CliError;
use crate::clock::{now_ms, span};
use crate::config::Config;
use crate::problems::report::Report;
use crate::problems::{Problem, Watch};
use crate::store::Store;

/// A report older than this many intervals is from a server gone.
const FRESH_INTERVALS: i64 = 3;

#[derive(Serialize)]
struct Status {
    servers: Vec<Report>,
    /// True when no server reported lately: the problems are the store's
    /// alone (no credential or journal-writability view).
    stale: bool,
    journal_bytes: u64,
    backlog: Vec<crate::store::operator::RouteState>,
    completeness: Option<Vec<crate::store::recovery::Completeness>>,
    problems: Vec<Problem>,
}

pub async fn status(config: &Config, store: &Store, json: bool) -> Result<(), CliError> {
    let now = now_ms();
    let fresh_ms = (config.problems.interval_secs as i64 * 1000 * FRESH_INTERVALS).max(30_000);
    let servers: Vec<Report> = Report::all(store)
        .await?
        .into_iter()
        .filter(|(_, at, _)| now - at <= fresh_ms)
        .map(|(_, _, r)| r)
        .collect();
    let watch = Watch::new(config, store.clone(), None, crate::clock::system());
    let stale = servers.is_empty();
    let (problems, completeness) = if stale {
        let (problems, completeness) = watch.look().await;
        (problems, completeness?)
    } else {
        // One line per problem, whichever replicas see it.
        let mut all: Vec<Problem> = Vec::new();
        for p in servers.iter().flat_map(|s| &s.problems) {
            if !all.iter().any(|a| a.key == p.key) {
                all.push(p.clone());
            }
        }
        (all, watch.completeness().await?)
    };
    let names = crate::sinks::Catalog::new(config).names();
    let status = Status {
        stale,
        journal_bytes: store.size_bytes(),
        backlog: store.route_states(&names, now).await?,
        completeness,
        problems,
        servers,
    };
    if json {
        super::print_json(&status);
    } else {
        print_text(&status, config, now);
    }
    match status.problems.len() {
        0 => Ok(()),
        n => Err(CliError::Invalid(format!("{n} open problem(s)"))),
    }
}

fn print_text(s: &Status, config: &Config, now: i64) {
    if s.stale {
        println!(
            "no server has reported in the last {}: is it running? (problems below are read from the store alone)",
            span((config.problems.interval_secs as i64 * 1000 * FRESH_INTERVALS).max(30_000))
        );
    }
    for r in &s.servers {
        println!(
            "server       gatehouse {} (pid {}), up {}, reported {} ago",
            r.version,
            r.pid,
            span(now - r.started_at_ms),
            span(now - r.reported_at_ms)
        );
        println!(
            "  config     {} (loaded {} ago)",
            r.config_file.as_deref().unwrap_or("the embedded default"),
            span(now - r.config_loaded_at_ms)
        );
        if let Some(reload) = &r.reload {
            match &reload.error {
                Some(why) => println!(
                    "  RELOAD REFUSED {} ago, the previous config runs: {}",
                    span(now - reload.at_ms),
                    super::safe(why)
                ),
                None => println!(
                    "  reloaded   {} ago: {}",
                    span(now - reload.at_ms),
                    if reload.applied.is_empty() {
                        "nothing changed".to_string()
                    } else {
                        reload.applied.join("; ")
                    }
                ),
            }
            for what in &reload.restart_needed {
                println!("  needs a restart to apply: {}", super::safe(what));
            }
        }
        println!(
            "  journal    {}{}",
            crate::human::bytes(r.journal_bytes),
            r.journal_growth_per_day.map_or(String::new(), |g| format!(
                ", {}{}/day since it started",
                if g < 0 { "-" } else { "+" },
                crate::human::bytes(g.unsigned_abs())
            ))
        );
        for (what, at) in &r.listeners {
            println!("  listening  {at}  {what}");
        }
        for (cred, remaining, limit, reset) in &r.budgets {
            let left = (reset * 1000 - now).max(0);
            println!(
                "  budget     {}: {remaining} of {limit} left, refilled in {}",
                super::safe(cred),
                span(left)
            );
        }
    }
    println!("journal      {}", crate::human::bytes(s.journal_bytes));
    for r in &s.backlog {
        println!(
            "route        {:<20} {:>8} pending  {:>6} dead{}{}",
            super::safe(&r.route),
            r.pending,
            r.dead,
            r.oldest_pending_ms
                .map_or(String::new(), |t| format!("  oldest {} ago", span(now - t))),
            if r.paused { "  (paused)" } else { "" }
        );
    }
    if let Some(all) = &s.completeness {
        let t = crate::store::recovery::Completeness::total(all);
        println!(
            "completeness {} of GitHub's attempted deliveries in the journal; {} missing",
            crate::problems::percent(t.ratio()),
            t.missing
        );
    }
    if s.problems.is_empty() {
        println!("problems     none");
    }
    for p in &s.problems {
        println!(
            "PROBLEM      [{}] {}",
            format!("{:?}", p.severity).to_lowercase(),
            super::safe(&p.text)
        );
    }
}
