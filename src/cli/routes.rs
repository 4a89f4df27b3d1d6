//! `gatehouse routes list|pause|resume|drop` and `partitions pause|resume`:
//! each route's state, backlog and dead letters; holds; the jobs of a
//! removed route.

use super::CliError;
use super::{print_json, safe};
use crate::config::Config;
use crate::store::Store;

pub async fn list(config: &Config, store: &Store, json: bool) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let names = crate::sinks::Catalog::new(config).names();
    let rows = store.route_states(&names, now).await?;
    if json {
        print_json(&rows);
        return Ok(());
    }
    println!(
        "{:<24}  {:<16}  {:>9}  {:>14}  {:>6}  partitions paused",
        "route", "state", "backlog", "oldest pending", "dead"
    );
    for r in &rows {
        let state = match (r.configured, r.paused) {
            (false, _) => "not configured",
            (true, true) => "paused",
            (true, false) => "running",
        };
        println!(
            "{:<24}  {:<16}  {:>9}  {:>14}  {:>6}  {}",
            safe(&r.route),
            state,
            r.pending,
            r.oldest_pending_ms
                .map_or("-".into(), |t| crate::clock::span(now - t)),
            r.dead,
            r.partitions_paused
        );
    }
    if rows.iter().any(|r| !r.configured) {
        println!(
            "\nroutes not configured keep their jobs until they return; `gatehouse routes drop ROUTE` deletes them"
        );
    }
    Ok(())
}

/// A route (or built-in sink) the config has; a typo says which exist.
pub fn known(config: &Config, route: &str) -> Result<(), CliError> {
    let catalog = crate::sinks::Catalog::new(config);
    if catalog.has(route) {
        return Ok(());
    }
    let names = catalog.names();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    let hint = crate::config::validate::did_you_mean(route, &known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default();
    Err(CliError::Invalid(format!(
        "no route {route:?} in the config{hint}; routes: {}",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// `gatehouse routes drop NAME`: only for a route the config no longer has.
pub async fn drop(config: &Config, store: &Store, route: &str) -> Result<(), CliError> {
    if crate::sinks::Catalog::new(config).has(route) {
        return Err(CliError::Invalid(format!(
            "route {route:?} is in the config: remove it there first (its jobs would run again otherwise)"
        )));
    }
    let d = store.drop_sink(route).await?;
    println!(
        "dropped {} pending job(s) and {} dead letter(s) of route {}",
        d.pending,
        d.dead,
        safe(route)
    );
    Ok(())
}

/// Pauses or resumes a route as a whole, or one of its partitions.
pub async fn hold(
    config: &Config,
    store: &Store,
    route: &str,
    partition: Option<&str>,
    hold: bool,
) -> Result<(), CliError> {
    known(config, route)?;
    let word = if hold { "paused" } else { "resumed" };
    match partition {
        None => {
            store.hold_route(route, hold).await?;
            println!("route {} {word}", safe(route));
        }
        Some(p) => {
            store.hold_partition(route, p, hold).await?;
            println!("partition {} of route {} {word}", safe(p), safe(route));
        }
    }
    Ok(())
}
