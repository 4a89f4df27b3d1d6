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
pub mod state;

use rusqlite::OptionalExtension;

use crate::config::ActionsMetricsConfig;
use crate::journal::{ContentKind, DeliveryMeta, Journal, JournalError, ParseStatus};
use crate::scheduler::sink::{Batch, Sink, Turn, TurnResult};
use crate::scheduler::store::{self as jobs, Job};
use aggregate::{Aggregates, Exposition};
use event::Observation;

/// The sink's name in jobs, partitions and metrics (not usable by a route).
pub const SINK: &str = "actions-metrics";
const EVENTS: [&str; 2] = ["workflow_run", "workflow_job"];

/// Whether a delivery feeds the Actions state. A body that is not JSON has
/// nothing to give (it is still journaled, invariant 7).
pub fn wants(meta: &DeliveryMeta) -> bool {
    EVENTS.contains(&meta.event.as_str()) && meta.parse_status == ParseStatus::Ok
}

pub struct ActionsSink {
    aggregates: Aggregates,
    stale_after_ms: i64,
}

/// How one job ended: applied (changed the state or not), or dead with why.
pub type Outcome = Result<(), String>;

impl ActionsSink {
    /// Rebuilds the counters and histograms from the state rows, so they
    /// survive restarts.
    pub async fn load(
        journal: &Journal,
        config: &ActionsMetricsConfig,
    ) -> Result<ActionsSink, JournalError> {
        let sink = ActionsSink {
            aggregates: Aggregates::new(labels::Policy::new(config)),
            stale_after_ms: config.stale_after_secs.saturating_mul(1000) as i64,
        };
        let started = std::time::Instant::now();
        let sink = journal
            .reader()
            .run(move |r| {
                let mut rows = 0usize;
                r.query(|c| {
                    state::each_row(c, |change| {
                        rows += 1;
                        sink.aggregates.apply(&[change]);
                    })
                })?;
                tracing::info!(
                    rows,
                    took_ms = started.elapsed().as_millis() as u64,
                    "actions metrics loaded from the state"
                );
                Ok(sink)
            })
            .await?;
        Ok(sink)
    }

    /// Applies a batch of this sink's jobs: each delivery merged into its
    /// row, and the job closed, in one transaction. Returns each job's
    /// outcome in order; None when the lease passed on (nothing written).
    pub async fn run(
        &self,
        journal: &Journal,
        batch: &[Job],
        partition: &str,
        fence: &jobs::Fence,
        lease_ms: i64,
    ) -> Result<Option<Vec<Outcome>>, JournalError> {
        let ids: Vec<i64> = batch.iter().map(|j| j.delivery_id).collect();
        let observations = journal
            .reader()
            .run(move |r| r.query(|c| read_observations(c, &ids)))
            .await?;
        let job_ids: Vec<i64> = batch.iter().map(|j| j.id).collect();
        let (partition, fence) = (partition.to_string(), fence.clone());
        let done = journal
            .exec(move |tx| {
                let now = crate::clock::now_ms();
                // The renewal is the fence check, first: a lost lease
                // writes nothing.
                if !jobs::renew(tx, SINK, &partition, &fence, now + lease_ms)? {
                    return Ok(None);
                }
                let mut changes = Vec::new();
                let mut outcomes = Vec::with_capacity(job_ids.len());
                for (job_id, obs) in job_ids.into_iter().zip(observations) {
                    let outcome = match obs {
                        Ok(obs) => {
                            changes.extend(state::merge(tx, &obs)?);
                            Ok(())
                        }
                        Err(why) => Err(why),
                    };
                    jobs::close(tx, job_id, now, outcome.as_ref().err().map(String::as_str))?;
                    outcomes.push(outcome);
                }
                Ok(Some((changes, outcomes)))
            })
            .await?;
        Ok(done.map(|(changes, outcomes)| {
            self.aggregates.apply(&changes);
            outcomes
        }))
    }

    /// The metrics as of now: the sums, and the unfinished rows read now.
    pub async fn exposition(&self, journal: &Journal) -> Result<Exposition, JournalError> {
        let (runs, jobs) = journal.reader().run(|r| r.query(state::active)).await?;
        Ok(self
            .aggregates
            .exposition(runs, jobs, crate::clock::now_ms(), self.stale_after_ms))
    }
}

/// Reads and parses the deliveries behind a batch, in the batch's order.
fn read_observations(
    c: &rusqlite::Connection,
    delivery_ids: &[i64],
) -> rusqlite::Result<Vec<Result<Observation, String>>> {
    let mut st = c.prepare_cached(
        "SELECT d.event, d.content_kind, p.body FROM deliveries d
         JOIN delivery_payloads p ON p.delivery_id = d.id WHERE d.id = ?1",
    )?;
    let mut out = Vec::with_capacity(delivery_ids.len());
    for id in delivery_ids {
        let row = st
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        out.push(match row {
            None => Err("delivery no longer in the journal".to_string()),
            Some((event, kind, body)) => match ContentKind::parse(&kind) {
                Some(ContentKind::Form) => crate::webhook::form_payload(&body)
                    .ok_or_else(|| "form body without a payload field".to_string()),
                _ => Ok(body),
            }
            .and_then(|json| event::parse(&event, &json)),
        });
    }
    Ok(out)
}

/// The scheduler runs this sink's jobs like a route's: a turn applies a
/// batch in-process, one read and one transaction. Nothing here waits on a
/// consumer, so there is no pause or backoff; a delivery that cannot be
/// read as a workflow event is dead at once.
impl Sink for ActionsSink {
    fn turn<'a>(&'a self, turn: &'a mut Turn<'_>) -> TurnResult<'a> {
        Box::pin(async move {
            let (sink, partition) = (turn.sink, turn.partition);
            let jobs = jobs::pending(
                turn.journal,
                sink,
                partition,
                Some(turn.now_ms()),
                turn.batch_size,
            )
            .await?;
            if jobs.is_empty() {
                return jobs::next_due(turn.journal, sink, partition)
                    .await
                    .map(Batch::Next);
            }
            let started = std::time::Instant::now();
            let started_ms = turn.now_ms();
            let Some(outcomes) = self
                .run(turn.journal, &jobs, partition, &turn.fence, turn.lease_ms)
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
