//! `gatehouse reload`: checks the config file here, then asks each server
//! running on this machine to reload it (SIGHUP, as `systemctl reload`
//! does) and prints what each applied, refused or left for a restart, as
//! its next report says. With no server running, the clients file is
//! applied to the store (the rest applies at the next start).

use std::time::{Duration, Instant};

use super::CliError;
use crate::config::Config;
use crate::problems::report::Report;
use crate::store::Store;

/// How long to wait for a server's report after signalling it.
const WAIT: Duration = Duration::from_secs(30);
/// A report older than this is from a server gone.
const FRESH_MS: i64 = 120_000;

pub async fn reload(config: &Config, store: &Store) -> Result<(), CliError> {
    let host = crate::problems::report::hostname();
    let now = crate::clock::now_ms();
    let here: Vec<(String, Report)> = Report::all(store)
        .await?
        .into_iter()
        .filter(|(_, at, _)| now - at <= FRESH_MS)
        .map(|(holder, _, r)| (holder, r))
        .collect();
    let (local, remote): (Vec<_>, Vec<_>) = here.into_iter().partition(|(_, r)| r.host == host);
    for (_, r) in &remote {
        println!(
            "gatehouse on {} (pid {}) is another machine's: run `gatehouse reload` (or `systemctl reload gatehouse`) there",
            super::safe(&r.host),
            r.pid
        );
    }
    if local.is_empty() {
        println!("no gatehouse server runs here: the rest of the config applies at its next start");
        let file = config.gateway.as_ref().map(|g| g.clients_file.as_path());
        return super::clients::reload(store, file).await;
    }
    let mut refused = 0;
    for (holder, before) in local {
        let pid = before.pid;
        if !is_gatehouse(pid) {
            println!("pid {pid} is not a gatehouse process any more; skipped");
            continue;
        }
        // SAFETY: kill(2) with a pid read from the store and checked above.
        if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
            return Err(CliError::Io {
                what: format!("signalling gatehouse (pid {pid})"),
                source: std::io::Error::last_os_error(),
            });
        }
        let given = config.source.as_ref().map(|s| s.0.display().to_string());
        if let (Some(runs), Some(given)) = (&before.config_file, &given)
            && runs != given
        {
            println!(
                "gatehouse (pid {pid}) runs on {}: it reloads that file, not {}",
                super::safe(runs),
                super::safe(given)
            );
        }
        let since = before.reload.as_ref().map_or(0, |r| r.at_ms);
        let deadline = Instant::now() + WAIT;
        let after = loop {
            let mine = Report::all(store)
                .await?
                .into_iter()
                .find(|(h, _, _)| *h == holder)
                .map(|(_, _, r)| r);
            if let Some(status) = mine.and_then(|r| r.reload).filter(|s| s.at_ms > since) {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(CliError::Invalid(format!(
                    "gatehouse (pid {pid}) was signalled but reported no reload within {}s: see its log",
                    WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match &after.error {
            Some(why) => {
                refused += 1;
                println!(
                    "gatehouse (pid {pid}) refused the new config and runs the previous one: {}",
                    super::safe(why)
                );
            }
            None if after.applied.is_empty() => {
                println!("gatehouse (pid {pid}) reloaded: nothing changed")
            }
            None => println!(
                "gatehouse (pid {pid}) reloaded: {}",
                super::safe(&after.applied.join("; "))
            ),
        }
        for what in &after.restart_needed {
            println!("  needs a restart to apply: {}", super::safe(what));
        }
    }
    if refused > 0 {
        return Err(CliError::Invalid("the new config was refused".into()));
    }
    Ok(())
}

/// Whether `pid` is a running gatehouse (its executable's name).
fn is_gatehouse(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("gatehouse"))
        })
        .unwrap_or(false)
}
