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
use crate::clock::{Clock, Term};
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
    /// How long the lease can be trusted by this process's clock.
    trust: Term,
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
            trust: Term::granted(taken_at, Duration::from_millis(lease_ms as u64)),
        }
    }

    /// Makes sure the lease outlives a step of `timeout` plus the margin,
    /// extending it first if not; once extended, the step must still fit
    /// (the trust window: a worker frozen past its lease must not send
    /// after it passed on). False: it passed on, or this worker cannot
    /// tell that it did not.
    pub async fn ensure_lease(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        if self
            .trust
            .covers(timeout + Duration::from_secs(LEASE_MARGIN_SECS))
        {
            return Ok(true);
        }
        // Twice at most. The window runs from before the write, so a
        // process frozen between the extension's commit and reading its
        // answer wakes with it spent, and the lease may have passed on
        // meanwhile. A slow write may eat into the margin, not into the
        // step; if the step no longer fits, a second extension finds out
        // (its fence no longer holds) or opens a fresh window.
        for _ in 0..2 {
            let before = Instant::now();
            let until = self.now_ms() + self.lease_ms;
            if !self
                .store
                .extend(self.sink, self.partition, &self.fence, until)
                .await?
            {
                return Ok(false);
            }
            self.renewed(before);
            if self.trust.covers(timeout) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After a write that renewed the lease, issued at `before`.
    pub fn renewed(&mut self, before: Instant) {
        self.trust = Term::granted(before, Duration::from_millis(self.lease_ms as u64));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::journal::{ContentKind, DeliveryMeta, NewDelivery, ParseStatus, model};
    use crate::store::jobs::Lease;
    use crate::store::{Location, Options, metrics::JournalMetrics};

    const LEASE_MS: i64 = 10_000;

    fn push(guid: &str) -> NewDelivery {
        NewDelivery {
            meta: DeliveryMeta {
                hook_id: "1".into(),
                guid: guid.into(),
                event: "push".into(),
                action: None,
                installation_id: None,
                target_type: None,
                target_id: None,
                repository: Some("acme/repo".into()),
                owner: Some("acme".into()),
                partition_key: "acme".into(),
                received_at_ms: crate::clock::now_ms(),
                content_kind: ContentKind::Json,
                parse_status: ParseStatus::Ok,
            },
            headers: model::encode_headers([("x-github-event", b"push".as_slice())]),
            body: b"{}".to_vec().into(),
            sinks: vec!["ci".into()],
            event_label: "push",
        }
    }

    /// A turn on a lease taken 5 s ago by this process's clock.
    fn turn<'a>(
        store: &'a Store,
        fence: &Fence,
        parts: &'a (watch::Receiver<bool>, SinkMetrics, InFlight, AttemptMinutes),
        clock: &'a ManualClock,
    ) -> Turn<'a> {
        let taken_at = Instant::now() - Duration::from_secs(5);
        let (stop, metrics, in_flight, attempts) = parts;
        Turn::new(
            store,
            "ci",
            "acme",
            0,
            fence.clone(),
            taken_at,
            LEASE_MS,
            1,
            stop,
            metrics,
            in_flight,
            attempts,
            clock,
        )
    }

    /// The longest route timeout the configuration allows beside this
    /// lease: with the margin it fills the lease, so every step extends
    /// first, and only the margin is left for the extension's write.
    const STEP: Duration = Duration::from_millis(LEASE_MS as u64 - LEASE_MARGIN_SECS * 1000);

    #[tokio::test]
    async fn a_worker_frozen_while_its_lease_is_extended_does_not_trust_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gatehouse.db");
        let store = crate::store::open(
            &Location::Sqlite(db.clone()),
            JournalMetrics::unregistered(),
            Options::default(),
        )
        .unwrap();
        store.append(push("g1")).await.unwrap();
        let clock = ManualClock::starting_now();
        let t0 = clock.now_ms();
        let Lease::Taken { fence, .. } = store
            .acquire("ci", "acme", "worker-a", t0, LEASE_MS)
            .await
            .unwrap()
        else {
            panic!("a free partition is taken");
        };
        let parts = (
            watch::channel(false).1,
            SinkMetrics::register(&mut Default::default()),
            InFlight::default(),
            AttemptMinutes::default(),
        );

        // Not frozen: the extension gives a fresh window, even for the
        // longest timeout the configuration allows.
        clock.advance(500);
        assert!(
            turn(&store, &fence, &parts, &clock)
                .ensure_lease(STEP)
                .await
                .unwrap(),
            "a lease extended in time is trusted for a step of the full timeout"
        );

        // Frozen (this runtime's only thread blocked, as SIGSTOP would)
        // from just after the next extension committed, longer than the
        // margin, while another worker took the partition over.
        clock.advance(500);
        let extended_to = clock.now_ms() + LEASE_MS;
        let freeze = async {
            std::thread::scope(|s| {
                s.spawn(|| takeover(&db, extended_to)).join().unwrap();
            });
            std::thread::sleep(Duration::from_secs(LEASE_MARGIN_SECS) + Duration::from_millis(100));
        };
        let mut frozen = turn(&store, &fence, &parts, &clock);
        let (trusted, ()) = tokio::join!(frozen.ensure_lease(STEP), freeze);
        assert!(
            !trusted.unwrap(),
            "a window spent while frozen is not trusted: the lease passed on"
        );
    }

    /// Another worker, on its own handle: waits until the extension to
    /// `extended_to` is committed, then claims the partition once that
    /// lease has expired by the database's clock.
    fn takeover(db: &std::path::Path, extended_to: i64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let other = crate::store::open_beside(&Location::Sqlite(db.to_path_buf())).unwrap();
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let view = other.partitions(Some("ci"), extended_to, 10).await.unwrap();
                if view.rows[0].lease_until_ms == extended_to {
                    break;
                }
                assert!(Instant::now() < deadline, "the extension never committed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let taken = other
                .acquire("ci", "acme", "worker-b", extended_to + 1, LEASE_MS)
                .await
                .unwrap();
            assert!(matches!(taken, Lease::Taken { .. }), "expired: claimable");
        });
    }
}
