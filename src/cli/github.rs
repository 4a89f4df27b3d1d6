//! `gatehouse github status`: each credential's budgets, asked of GitHub.

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
    let rows = runtime.block_on(async {
        let pool = crate::github::Pool::new(&config.github)?;
        pool.probe().await
    });
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}
