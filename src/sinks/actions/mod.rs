//! The built-in `actions-metrics` sink: `workflow_run` and `workflow_job`
//! deliveries, taken through the scheduler like any route's jobs, become
//! state rows keyed by GitHub's ids (`state`), and the rows become the
//! Prometheus metrics (`aggregate`) and reports (`report`). Every step is a
//! function of the set of deliveries, never of their order or repeats
//! (invariant 6).

pub mod aggregate;
pub mod event;
pub mod labels;
pub mod report;

use std::sync::Arc;

use crate::config::ActionsMetricsConfig;
use crate::journal::model::{ContentKind, DeliveryMeta, ParseStatus};
use crate::scheduler::sink::{Batch, Sink, Turn, TurnResult};
use crate::store::actions::RowsAfter;
use crate::store::jobs::{Fence, Job};
use crate::store::{Store, StoreError};
use aggregate::{Aggregates, Exposition};
use event::Observation;

/// The sink's name in jobs, partitions and metrics (not usable by a route).
pub const SINK: &str = crate::config::ACTIONS_SINK;
const EVENTS: [&str; 2] = ["workflow_run", "workflow_job"];
/// Rows read per page when the sums are rebuilt at start.
const LOAD_PAGE: usize = 1_000;

/// Whether a delivery feeds the Actions state. A body that is not JSON has
/// nothing to give (it is still journaled, invariant 7).
pub fn wants(meta: &DeliveryMeta) -> bool {
    EVENTS.contains(&meta.event.as_str()) && meta.parse_status == ParseStatus::Ok
}

pub struct ActionsSink {
    /// Swapped whole when rebuilt (see `exposition`).
    aggregates: std::sync::RwLock<Arc<Aggregates>>,
    config: ActionsMetricsConfig,
    stale_after_ms: i64,
    /// On a store other replicas write too, the rows' version the sums
    /// were last built at.
    built_at: tokio::sync::Mutex<Option<i64>>,
}

/// How one job ended: applied (changed the state or not), or dead with why.
pub type Outcome = Result<(), String>;

impl ActionsSink {
    /// Rebuilds the counters and histograms from the state rows, so they
    /// survive restarts.
    pub async fn load(
        store: &Store,
        config: &ActionsMetricsConfig,
    ) -> Result<ActionsSink, StoreError> {
        let version = store.workflow_version().await?;
        let aggregates = build(store, config).await?;
        Ok(ActionsSink {
            aggregates: std::sync::RwLock::new(Arc::new(aggregates)),
            config: config.clone(),
            stale_after_ms: config.stale_after_secs.saturating_mul(1000) as i64,
            built_at: tokio::sync::Mutex::new(version),
        })
    }

    fn aggregates(&self) -> Arc<Aggregates> {
        self.aggregates.read().expect("aggregates lock").clone()
    }

    /// Applies a batch of this sink's jobs: each delivery merged into its
    /// row, and the job closed, in one transaction. Returns each job's
    /// outcome in order; None when the lease passed on (nothing written).
    pub async fn run(
        &self,
        store: &Store,
        batch: &[Job],
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Vec<Outcome>>, StoreError> {
        let bodies = store
            .workflow_bodies(batch.iter().map(|j| j.delivery_id).collect())
            .await?;
        let observations: Vec<(i64, Result<Observation, String>)> = batch
            .iter()
            .zip(bodies)
            .map(|(job, body)| (job.id, observe(body)))
            .collect();
        let outcomes: Vec<Outcome> = observations
            .iter()
            .map(|(_, o)| o.as_ref().map(|_| ()).map_err(String::clone))
            .collect();
        let changes = store
            .apply_workflow_jobs(partition, fence, now_ms, lease_ms, observations)
            .await?;
        Ok(changes.map(|changes| {
            self.aggregates().apply(&changes);
            outcomes
        }))
    }

    /// The metrics as of now: the sums, and the unfinished rows read now.
    /// Where other replicas change the rows too, sums built at an older
    /// version of the rows are rebuilt from them first, so every replica
    /// shows the same numbers (those a single node fed the same
    /// deliveries shows): the sums are a function of the rows. The version
    /// is read before the rows, so a change committed meanwhile makes the
    /// next scrape build again.
    pub async fn exposition(&self, store: &Store) -> Result<Exposition, StoreError> {
        if let Some(now) = store.workflow_version().await? {
            let mut built = self.built_at.lock().await;
            if *built != Some(now) {
                let fresh = build(store, &self.config).await?;
                *self.aggregates.write().expect("aggregates lock") = Arc::new(fresh);
                *built = Some(now);
            }
        }
        let (runs, jobs) = store.active_workflows().await?;
        Ok(self
            .aggregates()
            .exposition(runs, jobs, crate::clock::now_ms(), self.stale_after_ms))
    }
}

/// The sums over every state row, read a page at a time.
async fn build(store: &Store, config: &ActionsMetricsConfig) -> Result<Aggregates, StoreError> {
    let aggregates = Aggregates::new(labels::Policy::new(config));
    let started = std::time::Instant::now();
    let (mut after, mut n) = (RowsAfter::Start, 0);
    loop {
        let page = store.workflow_rows(after, LOAD_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = RowsAfter::of(last);
        n += page.len();
        aggregates.apply(&page);
    }
    tracing::info!(
        rows = n,
        took_ms = started.elapsed().as_millis() as u64,
        "actions metrics built from the state"
    );
    Ok(aggregates)
}

/// Parses one delivery behind a job (None: pruned since).
fn observe(body: Option<(String, String, Vec<u8>)>) -> Result<Observation, String> {
    let Some((event, kind, body)) = body else {
        return Err("delivery no longer in the journal".to_string());
    };
    match ContentKind::parse(&kind) {
        Some(ContentKind::Form) => crate::webhook::form_payload(&body)
            .ok_or_else(|| "form body without a payload field".to_string()),
        _ => Ok(body),
    }
    .and_then(|json| event::parse(&event, &json))
}

/// The scheduler runs this sink's jobs like a route's: a turn applies a
/// batch in-process, one read and one transaction. Nothing here waits on a
/// consumer, so there is no pause or backoff; a delivery that cannot be
/// read as a workflow event is dead at once.
impl Sink for ActionsSink {
    fn turn<'a>(&'a self, turn: &'a mut Turn<'_>) -> TurnResult<'a> {
        Box::pin(async move {
            let (sink, partition) = (turn.sink, turn.partition);
            let jobs = turn
                .store
                .pending(sink, partition, Some(turn.now_ms()), turn.batch_size)
                .await?;
            if jobs.is_empty() {
                return turn.store.next_due(sink, partition).await.map(Batch::Next);
            }
            let started = std::time::Instant::now();
            let started_ms = turn.now_ms();
            let Some(outcomes) = self
                .run(
                    turn.store,
                    &jobs,
                    partition,
                    &turn.fence,
                    started_ms,
                    turn.lease_ms,
                )
                .await?
            else {
                return Ok(Batch::LeaseLost);
            };
            turn.renewed(started);
            let each = started.elapsed() / outcomes.len() as u32;
            for (job, outcome) in jobs.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        turn.attempted("done", started_ms, each);
                        turn.metrics.finished(sink, "done");
                    }
                    Err(why) => {
                        tracing::warn!(sink, partition, job = job.id, error = %why, "job dead-lettered: not a usable workflow event");
                        turn.attempted("failed", started_ms, each);
                        turn.metrics.finished(sink, "dead");
                    }
                }
            }
            Ok(Batch::Next(Some(turn.now_ms())))
        })
    }
}
