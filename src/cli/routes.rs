//! `gatehouse routes list`: each route's state, backlog and dead letters.

use super::{print_json, safe};
use crate::config::Config;
use crate::control::{self, ControlError};

pub fn list(config: &Config, conn: &rusqlite::Connection, json: bool) -> Result<(), ControlError> {
    let now = crate::clock::now_ms();
    let names = crate::sinks::Catalog::new(config).names();
    let rows = control::route_states(conn, &names, now)?;
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
