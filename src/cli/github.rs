//! `gatehouse github status`: each credential's budgets, asked of GitHub;
//! then the repositories recent deliveries name that no credential
//! covers.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{print_json, safe};
use crate::config::Secrets;

/// Probes every credential's budgets now (GET /rate_limit, which costs
/// nothing) and prints them.
pub fn status(path: Option<PathBuf>, json: bool) -> ExitCode {
    let Some(path) = path else {
        eprintln!("gatehouse: github status needs --config (the embedded default has no [github])");
        return ExitCode::from(2);
    };
    let config = match super::config::load(Some(&path), Secrets::Read) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool = match crate::github::Pool::new(&config.github) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows = runtime.block_on(pool.probe());
    match rows {
        Ok(rows) if json => {
            print_json(&rows);
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            let now = crate::clock::now_ms() / 1000;
            println!(
                "{:<36}  {:<20}  {:<8}  {:>9}  {:>9}  reset",
                "credential", "owner", "resource", "remaining", "limit"
            );
            for r in rows {
                println!(
                    "{:<36}  {:<20}  {:<8}  {:>9}  {:>9}  {} (in {} s)",
                    r.credential,
                    safe(&r.owner),
                    safe(&r.resource),
                    r.remaining,
                    r.limit,
                    super::deliveries::time(r.reset * 1000),
                    (r.reset - now).max(0)
                );
            }
            coverage(&config, &pool, &runtime);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the repositories the journal's recent deliveries name that no
/// credential covers (an App on a selection without them, none
/// installed, no token for their owner), each with why.
fn coverage(
    config: &crate::config::Config,
    pool: &crate::github::Pool,
    runtime: &tokio::runtime::Runtime,
) {
    let store = {
        let _in = runtime.enter();
        crate::store::open_beside(&config.storage.location())
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => {
            println!("\nrepositories not checked: the journal cannot be read ({e})");
            return;
        }
    };
    let coverage = runtime.block_on(pool.coverage(&store, crate::clock::now_ms(), 10_000));
    store.close();
    let crate::github::Coverage { seen, uncovered } = match coverage {
        Ok(c) => c,
        Err(e) => {
            println!("\nrepositories not checked: {e}");
            return;
        }
    };
    let days = crate::github::COVERAGE_DAYS;
    println!();
    if uncovered.is_empty() {
        println!(
            "every repository deliveries named in the last {days} days ({seen}) has a credential"
        );
        return;
    }
    println!(
        "{} of {seen} repositories deliveries named in the last {days} days have no credential:",
        uncovered.len()
    );
    for (repo, why) in uncovered {
        println!("  {}: {}", safe(&repo), safe(&why));
    }
}
