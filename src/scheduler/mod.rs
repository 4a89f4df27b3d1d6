//! The scheduler: a lease per (sink, partition); within one, jobs run
//! strictly in received order, one at a time; many partitions run in
//! parallel on a bounded pool of workers (invariant 3).
//!
//! Idle costs nothing: the dispatcher sleeps until new work is committed
//! (the journal's work notices), a worker finishes, or the next due time
//! (a retry's backoff, a consumer's pause) arrives. The one periodic
//! task is a rescan every `RESCAN` (one indexed query over pending jobs)
//! that notices work made by another process: `gatehouse deliveries
//! retry` and `resume` from the CLI.

pub mod in_flight;
pub mod metrics;
pub mod samples;
pub mod sink;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::clock::{self, Clock};
use crate::config::ProcessingConfig;
use crate::shutdown;
use crate::store::jobs::Lease;
use crate::store::{Store, StoreError, WorkNotice};
use sink::{Batch, Sink, Turn};

type Key = (String, String);

const RESCAN: Duration = Duration::from_secs(10);

pub use crate::config::LEASE_MARGIN_SECS;

/// What the workers share.
struct Shared {
    store: Store,
    /// Every sink by name: the routes and the built-in ones.
    /// Replaced whole by a reload; a turn keeps the sink it began with.
    sinks: Sinks,
    owner: String,
    lease_ms: i64,
    batch_size: usize,
    stop: watch::Receiver<bool>,
    metrics: crate::scheduler::metrics::SinkMetrics,
    in_flight: Arc<in_flight::InFlight>,
    attempts: Arc<samples::AttemptMinutes>,
    /// Every time the scheduler compares: due times, leases, pauses.
    clock: Arc<dyn Clock>,
    /// Beaten at every turn of the dispatcher's loop (the watchdog's).
    beat: crate::watchdog::Beat,
}

#[derive(Default)]
struct PartState {
    running: bool,
    /// Work arrived while running: look again as soon as it finishes.
    dirty: bool,
    due_ms: Option<i64>,
    /// Gathering: not due before then, whatever arrives.
    not_before: Option<i64>,
}

/// When a finished turn says its partition is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Then (None: when new work arrives).
    At(Option<i64>),
    /// Then and not sooner (a batch gathering).
    NotBefore(i64),
}

/// Every sink by name, as the config has them now.
pub type Sinks = crate::live::Live<HashMap<String, Arc<dyn Sink>>>;

/// The scheduler for a set of sinks (each forward route and the built-in
/// ones, by name): built, then spawned to run until `stop`, or stepped
/// with [`Scheduler::run_once`] by a test that holds the clock.
pub struct Scheduler {
    store: Store,
    sinks: Sinks,
    processing: ProcessingConfig,
    metrics: crate::scheduler::metrics::SinkMetrics,
    stop: watch::Receiver<bool>,
    in_flight: Arc<in_flight::InFlight>,
    attempts: Arc<samples::AttemptMinutes>,
    clock: Arc<dyn Clock>,
    owner: Option<String>,
    beat: crate::watchdog::Beat,
    shared: std::sync::OnceLock<Arc<Shared>>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        sinks: Vec<(String, Arc<dyn Sink>)>,
        processing: ProcessingConfig,
        metrics: crate::scheduler::metrics::SinkMetrics,
        stop: watch::Receiver<bool>,
    ) -> Scheduler {
        Scheduler {
            store,
            sinks: Sinks::new(sinks.into_iter().collect()),
            processing,
            metrics,
            stop,
            in_flight: in_flight::InFlight::new(),
            attempts: samples::AttemptMinutes::new(),
            clock: clock::system(),
            owner: None,
            beat: crate::watchdog::Beat::default(),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Shares what is in flight with another part (the admin UI).
    pub fn with_in_flight(mut self, in_flight: Arc<in_flight::InFlight>) -> Scheduler {
        self.in_flight = in_flight;
        self
    }

    /// Counts attempts per minute where the sampler writes them from.
    pub fn with_attempt_minutes(mut self, attempts: Arc<samples::AttemptMinutes>) -> Scheduler {
        self.attempts = attempts;
        self
    }

    /// Compares times on this clock instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Scheduler {
        self.clock = clock;
        self
    }

    /// The sinks, for a reload to replace.
    pub fn sinks(&self) -> Sinks {
        self.sinks.clone()
    }

    /// Beats `beat` at every turn of the dispatcher's loop.
    pub fn with_beat(mut self, beat: crate::watchdog::Beat) -> Scheduler {
        self.beat = beat;
        self
    }

    /// Names this process in leases (its replica name) instead of a name
    /// of its own.
    pub fn with_owner(mut self, owner: &str) -> Scheduler {
        self.owner = Some(owner.to_string());
        self
    }

    fn shared(&self) -> Arc<Shared> {
        self.shared
            .get_or_init(|| {
                Arc::new(Shared {
                    store: self.store.clone(),
                    sinks: self.sinks.clone(),
                    owner: self
                        .owner
                        .clone()
                        .unwrap_or_else(|| in_flight::worker_name(clock::now_ms())),
                    lease_ms: self.processing.lease_secs as i64 * 1000,
                    batch_size: self.processing.batch_size,
                    stop: self.stop.clone(),
                    metrics: self.metrics.clone(),
                    in_flight: self.in_flight.clone(),
                    attempts: self.attempts.clone(),
                    clock: self.clock.clone(),
                    beat: self.beat.clone(),
                })
            })
            .clone()
    }

    /// Starts the dispatcher; it ends when `stop` turns true, after its
    /// workers finish the job in hand.
    pub async fn spawn(self) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let notices = self
            .store
            .take_work_notices()
            .expect("one scheduler per journal");
        let expired = self.store.expire_leases_of_the_dead().await?;
        if expired > 0 {
            tracing::info!(
                leases = expired,
                "leases of a process that is gone expired (their fences stay)"
            );
        }
        report_orphans(&self.store, self.sinks.get().keys().cloned().collect()).await;
        let initial = self.store.due_partitions().await?;
        let shared = self.shared();
        Ok(tokio::spawn(dispatch(
            shared,
            notices,
            initial,
            self.processing.workers,
            self.stop.clone(),
        )))
    }

    /// One pass at the clock's now, as the dispatcher would make it: each
    /// partition due by then takes one turn, one after another. Returns
    /// how many turns were taken, so a test asserts after the scheduler
    /// looked (and moves its clock between passes instead of sleeping).
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let shared = self.shared();
        let now = shared.clock.now_ms();
        let mut turns = 0;
        for (sink, partition, at) in shared.store.due_partitions().await? {
            if at <= now {
                work(&shared, &sink, &partition).await;
                turns += 1;
            }
        }
        Ok(turns)
    }
}

/// Says at start which sinks have jobs but are no longer configured: they
/// wait (counted pending, their deliveries never pruned) until the route
/// returns or an operator drops them.
async fn report_orphans(store: &Store, configured: Vec<String>) {
    for o in store.orphans(&configured).await.unwrap_or_default() {
        tracing::warn!(
            sink = %o.sink,
            pending = o.pending,
            dead = o.dead,
            "route no longer configured but has jobs: they wait for it to return; `gatehouse routes drop {}` deletes them",
            o.sink
        );
    }
}

struct Dispatcher {
    parts: HashMap<Key, PartState>,
    due: BTreeSet<(i64, Key)>,
}

impl Dispatcher {
    /// Marks a partition due at `at` (earlier wins, but never before a
    /// gathering partition's time), unless it is running.
    fn schedule(&mut self, key: Key, at: i64, now: i64) {
        let p = self.parts.entry(key.clone()).or_default();
        let at = at.max(p.not_before.unwrap_or(at));
        if p.running {
            if at <= now {
                p.dirty = true;
            } else {
                p.due_ms = Some(p.due_ms.map_or(at, |d| d.min(at)));
            }
            return;
        }
        if let Some(old) = p.due_ms {
            if old <= at {
                return;
            }
            self.due.remove(&(old, key.clone()));
        }
        p.due_ms = Some(at);
        self.due.insert((at, key));
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    mut notices: mpsc::UnboundedReceiver<WorkNotice>,
    initial: Vec<(String, String, i64)>,
    workers: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut d = Dispatcher {
        parts: HashMap::new(),
        due: BTreeSet::new(),
    };
    for (sink, partition, at) in initial {
        d.schedule((sink, partition), at, shared.clock.now_ms());
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Key, Wake)>();
    let mut running = 0usize;
    let mut rescan = tokio::time::interval(RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        shared.beat.beat();
        let now = shared.clock.now_ms();
        while running < workers {
            let Some((at, key)) = d.due.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            d.due.remove(&(at, key.clone()));
            let p = d
                .parts
                .get_mut(&key)
                .expect("scheduled partitions are known");
            p.due_ms = None;
            p.not_before = None;
            p.running = true;
            running += 1;
            let (shared, done) = (shared.clone(), done_tx.clone());
            tokio::spawn(async move {
                let next = work(&shared, &key.0, &key.1).await;
                let _ = done.send((key, next));
            });
        }
        let wake = d
            .due
            .first()
            .filter(|_| running < workers)
            .map(|(at, _)| *at);
        let sleep = async {
            match wake {
                Some(at) => {
                    let ms = (at - shared.clock.now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((sink, partition)) = notices.recv() => { let now = shared.clock.now_ms(); d.schedule((sink, partition), now, now) },
            Some((key, wake)) = done_rx.recv() => {
                running -= 1;
                let p = d.parts.entry(key.clone()).or_default();
                p.running = false;
                let later = p.due_ms.take();
                let dirty = std::mem::take(&mut p.dirty);
                let at = match wake {
                    Wake::NotBefore(at) => {
                        p.not_before = Some(at);
                        Some(at)
                    }
                    Wake::At(_) if dirty => Some(shared.clock.now_ms()),
                    Wake::At(next) => [next, later].into_iter().flatten().min(),
                };
                match at {
                    Some(at) => d.schedule(key, at, shared.clock.now_ms()),
                    None => { d.parts.remove(&key); }
                }
            }
            _ = sleep => {}
            _ = rescan.tick() => {
                match shared.store.due_partitions().await {
                    Ok(found) => for (sink, partition, at) in found {
                        d.schedule((sink, partition), at, shared.clock.now_ms());
                    },
                    Err(e) => tracing::warn!(error = %e, "scheduler rescan failed"),
                }
            }
            _ = shutdown::requested(&mut stop) => break,
        }
    }
    // Let workers finish the job in hand; they stop between jobs.
    while running > 0 {
        if done_rx.recv().await.is_none() {
            break;
        }
        running -= 1;
    }
}

/// Runs one lease's worth of a partition's jobs. Returns when the partition
/// is next due.
async fn work(s: &Shared, sink: &str, partition: &str) -> Wake {
    match work_inner(s, sink, partition).await {
        Ok(next) => next,
        Err(e) => {
            // The journal cannot be written or read now: try again soon
            // (the lease expires by itself if it cannot be given back).
            tracing::warn!(sink, partition, error = %e, "scheduler could not work a partition");
            Wake::At(Some(s.clock.now_ms() + 1000))
        }
    }
}

/// The lease passed to another claim: stop touching the partition and
/// look again once a lease could have expired.
fn lost(s: &Shared, sink: &str, partition: &str) -> Option<i64> {
    tracing::warn!(
        sink,
        partition,
        "lease lost to another claim: this worker stops on the partition"
    );
    s.metrics.lease_lost(sink);
    Some(s.clock.now_ms() + s.lease_ms)
}

async fn work_inner(s: &Shared, sink: &str, partition: &str) -> Result<Wake, StoreError> {
    // Jobs of a sink that is no longer configured wait for it to return.
    let Some(runner) = s.sinks.get().get(sink).cloned() else {
        return Ok(Wake::At(None));
    };
    let now = s.clock.now_ms();
    let taken_at = Instant::now();
    let (paused_until, fence) = match s
        .store
        .acquire(sink, partition, &s.owner, now, s.lease_ms)
        .await?
    {
        Lease::Busy => {
            s.metrics.turn(sink, "busy");
            return Ok(Wake::At(Some(now + s.lease_ms)));
        }
        // Parked until an operator resumes it; the rescan finds it then.
        Lease::Held => {
            s.metrics.turn(sink, "held");
            return Ok(Wake::At(None));
        }
        Lease::Taken {
            paused_until_ms,
            fence,
        } => (paused_until_ms, fence),
    };
    let mut turn = Turn::new(
        &s.store,
        sink,
        partition,
        paused_until,
        fence,
        taken_at,
        s.lease_ms,
        s.batch_size,
        &s.stop,
        &s.metrics,
        &s.in_flight,
        &s.attempts,
        &*s.clock,
    );
    let next = runner.turn(&mut turn).await;
    let fence = turn.fence;
    match next {
        Ok(Batch::LeaseLost) => {
            s.metrics.turn(sink, "lease_lost");
            Ok(Wake::At(lost(s, sink, partition)))
        }
        Ok(Batch::Next(next)) => {
            s.store.release(sink, partition, &fence).await?;
            s.metrics.turn(sink, "ran");
            Ok(Wake::At(next))
        }
        Ok(Batch::Gather(at)) => {
            s.store.release(sink, partition, &fence).await?;
            s.metrics.turn(sink, "gathering");
            Ok(Wake::NotBefore(at))
        }
        Err(e) => {
            let _ = s.store.release(sink, partition, &fence).await;
            Err(e)
        }
    }
}
