//! The scheduler's contract with sinks. For one turn on a (sink,
//! partition) the scheduler takes the lease and hands the sink a [`Turn`]:
//! the journal, the lease's fence, and what the turn may use; the sink
//! works the partition's due jobs in its own way, records each under the
//! fence, and says how the turn ended ([`Batch`]). Forward routes and the
//! Actions metrics sink implement [`Sink`]; a new sink is a new
//! implementation registered where the process is wired (app.rs), with no
//! scheduler code to touch.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::LEASE_MARGIN_SECS;
use super::in_flight::InFlight;
use super::samples::AttemptMinutes;
use crate::clock::Clock;
use crate::scheduler::metrics::SinkMetrics;
use crate::store::jobs::Fence;
pub use crate::store::jobs::{Attempt, Outcome};
use crate::store::{Store, StoreError};

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// When the partition is next due (None: nothing pending).
    Next(Option<i64>),
    /// Its work waits until then for more to gather (a batch filling):
    /// new work does not wake it sooner.
    Gather(i64),
    /// The lease passed to another claim: the sink stopped writing.
    LeaseLost,
}

/// One turn on a (sink, partition), under a lease this worker holds.
pub struct Turn<'a> {
    pub store: &'a Store,
    pub sink: &'a str,
    pub partition: &'a str,
    /// The consumer asked the partition to wait until then (0: not).
    pub paused_until_ms: i64,
    pub fence: Fence,
    /// The lease's length; each recorded job renews it that long.
    pub lease_ms: i64,
    /// Jobs one turn takes at most.
    pub batch_size: usize,
    pub stop: &'a watch::Receiver<bool>,
    pub metrics: &'a SinkMetrics,
    pub in_flight: &'a InFlight,
    attempts: &'a AttemptMinutes,
    clock: &'a dyn Clock,
    /// Until when the lease can be trusted by this process's monotonic
    /// clock (measured from before the write that took or renewed it, so
    /// never later than the database's idea).
    trust_until: Instant,
}

impl<'a> Turn<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        store: &'a Store,
        sink: &'a str,
        partition: &'a str,
        paused_until_ms: i64,
        fence: Fence,
        taken_at: Instant,
        lease_ms: i64,
        batch_size: usize,
        stop: &'a watch::Receiver<bool>,
        metrics: &'a SinkMetrics,
        in_flight: &'a InFlight,
        attempts: &'a AttemptMinutes,
        clock: &'a dyn Clock,
    ) -> Turn<'a> {
        Turn {
            store,
            sink,
            partition,
            paused_until_ms,
            fence,
            lease_ms,
            batch_size,
            stop,
            metrics,
            in_flight,
            attempts,
            clock,
            trust_until: taken_at + Duration::from_millis(lease_ms as u64),
        }
    }

    /// Makes sure the lease outlives a step of `timeout` plus the margin,
    /// extending it first if not (the trust window: a worker frozen past
    /// its lease must not send after it passed on). False: it passed on.
    pub async fn ensure_lease(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let needed = timeout + Duration::from_secs(LEASE_MARGIN_SECS);
        if Instant::now() + needed <= self.trust_until {
            return Ok(true);
        }
        let before = Instant::now();
        let until = self.now_ms() + self.lease_ms;
        if self
            .store
            .extend(self.sink, self.partition, &self.fence, until)
            .await?
        {
            self.renewed(before);
            return Ok(true);
        }
        Ok(false)
    }

    /// After a write that renewed the lease, issued at `before`.
    pub fn renewed(&mut self, before: Instant) {
        self.trust_until = before + Duration::from_millis(self.lease_ms as u64);
    }

    /// Now, on the scheduler's clock: what due times, retries and pauses
    /// are compared with.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// One attempt made (`outcome`: done, failed or paused), for
    /// `/metrics` and the overview's chart.
    pub fn attempted(&self, outcome: &'static str, started_at_ms: i64, took: Duration) {
        self.metrics.attempt(self.sink, outcome, took);
        self.attempts.add(self.sink, outcome, started_at_ms);
    }

    /// The scheduler is stopping: end the turn between jobs.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// What a turn of a sink returns.
pub type TurnResult<'a> = Pin<Box<dyn Future<Output = Result<Batch, StoreError>> + Send + 'a>>;

/// A kind of work the scheduler runs jobs for, in order per partition.
pub trait Sink: Send + Sync {
    /// Works the partition's due jobs (at most `turn.batch_size`), each
    /// recorded under `turn.fence`; says when the partition is next due,
    /// or that the lease was lost (then nothing more is written).
    fn turn<'a>(&'a self, turn: &'a mut Turn<'_>) -> TurnResult<'a>;
}
