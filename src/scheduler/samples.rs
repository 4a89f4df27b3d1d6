//! Each sink's backlog, lag and dead letters once a minute, so the
//! overview can chart them over the last hour and day (a gauge on
//! `/metrics` only says "now").

use std::time::Duration;

use tokio::sync::watch;

use crate::clock;
use crate::journal::{Journal, JournalError};
use crate::shutdown;

/// Samples and per-minute attempt counts are kept this long: the charts
/// show a day.
pub const KEEP_MINUTES: i64 = 2 * 24 * 60;

/// Samples every minute until `stop`.
pub async fn run(journal: Journal, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sample(&journal, clock::now_ms()).await {
            tracing::debug!(error = %e, "could not sample the sinks' backlog");
        }
        // Just past the next minute's start, so each minute gets one.
        let into = clock::now_ms().rem_euclid(60_000) as u64;
        let wait = Duration::from_millis(60_000 - into + 500);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown::requested(&mut stop) => return,
        }
    }
}

/// Records the sinks' state now (read apart from the writer, written in
/// its next group commit) and drops what is older than [`KEEP_MINUTES`].
pub async fn sample(journal: &Journal, now_ms: i64) -> Result<(), JournalError> {
    let backlog = journal
        .reader()
        .run(move |r| r.query(|c| super::store::backlog_on(c, now_ms)))
        .await?;
    let minute = now_ms / 60_000;
    journal
        .exec(move |tx| {
            let mut put = tx.prepare_cached(
                "INSERT INTO sink_samples (minute, sink, pending, lag_ms, dead)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (minute, sink) DO UPDATE SET pending = excluded.pending,
                   lag_ms = excluded.lag_ms, dead = excluded.dead",
            )?;
            for (sink, pending, oldest, dead) in &backlog.per_sink {
                let lag = oldest.map_or(0, |t| (now_ms - t).max(0));
                put.execute(rusqlite::params![minute, sink, pending, lag, dead])?;
            }
            for sql in [
                "DELETE FROM sink_samples WHERE minute < ?1",
                "DELETE FROM attempt_minutes WHERE minute < ?1",
            ] {
                tx.prepare_cached(sql)?.execute([minute - KEEP_MINUTES])?;
            }
            Ok(())
        })
        .await
}
