//! The systemd watchdog (`WatchdogSec=`): `WATCHDOG=1` is sent every half
//! period only while the process makes progress, so systemd kills and
//! restarts one that is wedged. Progress is:
//! - the journal writer: a probe (a tiny transaction through the same
//!   writer as every delivery) committed within the half period; a writer
//!   stuck in a hung disk, or failing every commit (a full disk), stops
//!   the pings;
//! - the scheduler: its dispatcher went round its loop recently (it does
//!   at least at every rescan, 10 s).
//!
//! Outside systemd (no `WATCHDOG_USEC`) nothing runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::shutdown;
use crate::store::Store;

/// A part's last sign of life, for the watchdog to read.
#[derive(Clone)]
pub struct Beat {
    born: Instant,
    /// Milliseconds since `born` at the last beat.
    last_ms: Arc<AtomicU64>,
}

impl Default for Beat {
    fn default() -> Self {
        Beat {
            born: Instant::now(),
            last_ms: Arc::default(),
        }
    }
}

impl Beat {
    pub fn beat(&self) {
        self.last_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// systemd's watchdog period for this process, if it set one.
pub fn period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}

/// The dispatcher loops at least every rescan; give it two and a margin.
const SCHEDULER_STALE: Duration = Duration::from_secs(25);

/// Pings systemd every half `period` while the writer commits and the
/// scheduler turns; ends with the process.
pub async fn run(store: Store, scheduler: Beat, period: Duration, mut stop: watch::Receiver<bool>) {
    let half = period / 2;
    let mut was_ok = true;
    loop {
        let writer = matches!(tokio::time::timeout(half, store.probe()).await, Ok(Ok(())));
        let turning = scheduler.age() < SCHEDULER_STALE.max(period);
        let ok = writer && turning;
        if ok {
            crate::systemd::notify("WATCHDOG=1");
        } else if was_ok {
            tracing::error!(
                writer_commits = writer,
                scheduler_turns = turning,
                "no progress: watchdog pings stop, and systemd restarts the service if it lasts"
            );
        }
        if ok && !was_ok {
            tracing::info!("progress again: watchdog pings resume");
        }
        was_ok = ok;
        tokio::select! {
            _ = tokio::time::sleep(half) => {}
            _ = shutdown::requested(&mut stop) => return,
        }
    }
}
