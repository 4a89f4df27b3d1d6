//! `gatehouse migrate`: where the store's schema stands, and bringing it
//! to this release's (a dry run shows what would be applied); and
//! `gatehouse storage copy`: an embedded journal moved to PostgreSQL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Secrets;

pub fn migrate(config: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let config = match super::config::load(config.as_deref(), Secrets::Skip) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = super::config::runtime();
    let _in = runtime.enter();
    let store = config.storage.describe();
    match crate::store::migrate(&config.storage.location(), !dry_run) {
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
        Ok(plan) => {
            let latest = plan.pending.last().map_or(plan.found, |m| m.0);
            let names = |v: &[(u32, &str)]| {
                v.iter()
                    .map(|(n, name)| format!("{n} {name}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if plan.pending.is_empty() {
                println!(
                    "{store}: schema version {} is this release's: nothing to do",
                    plan.found
                );
            } else if dry_run {
                println!(
                    "{store}: schema version {}, this release has {latest}\n\
                     would apply: {}\n(dry run: nothing changed)",
                    plan.found,
                    names(&plan.pending)
                );
            } else {
                println!(
                    "{store}: applied {}; schema version {} -> {}",
                    names(&plan.pending),
                    plan.found,
                    plan.now
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// `gatehouse storage copy --from PATH --to URL`: progress on stderr, what
/// was copied on stdout.
pub fn copy(from: &Path, to: &str, password_file: Option<&Path>) -> ExitCode {
    let password = match password_file
        .map(crate::config::read_secret_file)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse: --password-file: {e}");
            return ExitCode::from(2);
        }
    };
    let password = password
        .as_ref()
        .map(|p| String::from_utf8_lossy(p.expose()).into_owned());
    let target = match crate::store::postgres::Target::new(to, password.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gatehouse: --to: {e}");
            return ExitCode::from(2);
        }
    };
    if !from.exists() {
        eprintln!("gatehouse: --from: no journal at {}", from.display());
        return ExitCode::from(2);
    }
    let runtime = super::config::runtime();
    let started = std::time::Instant::now();
    let mut stderr = std::io::stderr();
    let mut progress = |p: crate::store::copy::Progress| {
        let pct = (p.done * 100).checked_div(p.total).unwrap_or(100);
        let _ = writeln!(
            stderr,
            "{:<18} {:>10} / {:<10} {pct:>3}%",
            p.table, p.done, p.total
        );
    };
    let done = runtime.block_on(crate::store::copy::sqlite_to_postgres(
        from,
        &target,
        &mut progress,
    ));
    match done {
        Ok(copied) => {
            println!(
                "copied {} into {} in {:.1} s:",
                from.display(),
                target.describe(),
                started.elapsed().as_secs_f64()
            );
            for (table, n) in copied.tables.iter().filter(|t| t.1 > 0) {
                println!("  {table:<18} {n}");
            }
            println!(
                "every count checked. Point [storage] url at it and start the replicas; \
                 admin sessions were not copied (log in again)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}
