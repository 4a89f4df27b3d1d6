//! The Actions state tables' SQL: merging an observation into its row
//! (inside the writer's transaction, under the lease's fence), and reading
//! rows back for the aggregates, the gauges and the reports.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::actions::{
    Change, Finished, FinishedJob, FinishedRun, JobRow, Observation, Place, RowsAfter, RunRow,
};
use crate::store::jobs::Fence;

const RUN_COLUMNS: &str =
    "run_id, run_attempt, status, conclusion, owner, organization, repository,
    workflow_name, head_branch, event, created_at_ms, run_started_at_ms, completed_at_ms";

const JOB_COLUMNS: &str = "job_id, run_id, run_attempt, status, conclusion, owner, organization,
    repository, workflow_name, head_branch, job_name, labels, runner_name, runner_group,
    created_at_ms, started_at_ms, completed_at_ms";

fn place(r: &Row, at: usize) -> rusqlite::Result<Place> {
    Ok(Place {
        owner: r.get(at)?,
        organization: r.get(at + 1)?,
        repository: r.get(at + 2)?,
        workflow_name: r.get(at + 3)?,
        head_branch: r.get(at + 4)?,
    })
}

fn place_values(p: &Place) -> [Value; 5] {
    [
        p.owner.clone().into(),
        p.organization.clone().into(),
        p.repository.clone().into(),
        p.workflow_name.clone().into(),
        p.head_branch.clone().into(),
    ]
}

/// A state table's row: how it is read, written and found.
trait Stored: Sized + Clone {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    /// How many columns `COLUMNS` names (rank and version come after).
    const WIDTH: usize;
    /// The primary key, as a WHERE clause on ?1, ?2...
    const KEY: &'static str;
    fn from_row(r: &Row) -> rusqlite::Result<Self>;
    fn key(&self) -> Vec<Value>;
    /// Every `COLUMNS` value, in order.
    fn values(&self) -> Vec<Value>;
}

impl Stored for RunRow {
    const TABLE: &'static str = "actions_runs";
    const COLUMNS: &'static str = RUN_COLUMNS;
    const WIDTH: usize = 13;
    const KEY: &'static str = "run_id = ?1 AND run_attempt = ?2";

    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RunRow {
            run_id: r.get(0)?,
            run_attempt: r.get(1)?,
            status: r.get(2)?,
            conclusion: r.get(3)?,
            place: place(r, 4)?,
            event: r.get(9)?,
            created_at_ms: r.get(10)?,
            run_started_at_ms: r.get(11)?,
            completed_at_ms: r.get(12)?,
        })
    }

    fn key(&self) -> Vec<Value> {
        vec![self.run_id.into(), self.run_attempt.into()]
    }

    fn values(&self) -> Vec<Value> {
        let mut v: Vec<Value> = vec![
            self.run_id.into(),
            self.run_attempt.into(),
            self.status.clone().into(),
            self.conclusion.clone().into(),
        ];
        v.extend(place_values(&self.place));
        v.extend([
            self.event.clone().into(),
            self.created_at_ms.into(),
            self.run_started_at_ms.into(),
            self.completed_at_ms.into(),
        ]);
        v
    }
}

impl Stored for JobRow {
    const TABLE: &'static str = "actions_jobs";
    const COLUMNS: &'static str = JOB_COLUMNS;
    const WIDTH: usize = 17;
    const KEY: &'static str = "job_id = ?1";

    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        let labels: String = r.get(11)?;
        Ok(JobRow {
            job_id: r.get(0)?,
            run_id: r.get(1)?,
            run_attempt: r.get(2)?,
            status: r.get(3)?,
            conclusion: r.get(4)?,
            place: place(r, 5)?,
            job_name: r.get(10)?,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            runner_name: r.get(12)?,
            runner_group: r.get(13)?,
            created_at_ms: r.get(14)?,
            started_at_ms: r.get(15)?,
            completed_at_ms: r.get(16)?,
        })
    }

    fn key(&self) -> Vec<Value> {
        vec![self.job_id.into()]
    }

    fn values(&self) -> Vec<Value> {
        let mut v: Vec<Value> = vec![
            self.job_id.into(),
            self.run_id.into(),
            self.run_attempt.into(),
            self.status.clone().into(),
            self.conclusion.clone().into(),
        ];
        v.extend(place_values(&self.place));
        v.extend([
            self.job_name.clone().into(),
            serde_json::to_string(&self.labels)
                .expect("strings serialise")
                .into(),
            self.runner_name.clone().into(),
            self.runner_group.clone().into(),
            self.created_at_ms.into(),
            self.started_at_ms.into(),
            self.completed_at_ms.into(),
        ]);
        v
    }
}

/// Writes `new` unless its row already ranks at least as high. Returns
/// None for a stale or repeated delivery, else the row it replaced (None:
/// a new row).
fn upsert<R: Stored>(
    tx: &Transaction<'_>,
    new: &R,
    (rank, version): (i64, i64),
) -> rusqlite::Result<Option<Option<R>>> {
    let w = R::WIDTH;
    let old = tx
        .prepare_cached(&format!(
            "SELECT {}, rank, version FROM {} WHERE {}",
            R::COLUMNS,
            R::TABLE,
            R::KEY
        ))?
        .query_row(params_from_iter(new.key()), |r| {
            Ok((
                R::from_row(r)?,
                r.get::<_, i64>(w)?,
                r.get::<_, i64>(w + 1)?,
            ))
        })
        .optional()?;
    if old
        .as_ref()
        .is_some_and(|(_, r, v)| (*r, *v) >= (rank, version))
    {
        return Ok(None);
    }
    let slots: Vec<String> = (1..=w + 2).map(|i| format!("?{i}")).collect();
    let mut values = new.values();
    debug_assert_eq!(values.len(), w);
    values.extend([rank.into(), version.into()]);
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {} ({}, rank, version) VALUES ({})",
        R::TABLE,
        R::COLUMNS,
        slots.join(", ")
    ))?
    .execute(params_from_iter(values))?;
    Ok(Some(old.map(|o| o.0)))
}

/// Merges one observation: the row becomes whichever of the two ranks
/// higher (`Observation::version`). Returns the change, or None when the
/// delivery is stale or a repeat.
fn merge(tx: &Transaction<'_>, obs: &Observation) -> rusqlite::Result<Option<Change>> {
    let version = obs.version();
    Ok(match obs {
        Observation::Run(new) => upsert(tx, new, version)?.map(|old| Change::Run {
            old,
            new: new.clone(),
        }),
        Observation::Job(new) => upsert(tx, new, version)?.map(|old| Change::Job {
            old,
            new: new.clone(),
        }),
    })
}

fn select<R: Stored>(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<R>> {
    conn.prepare_cached(&format!("SELECT {} FROM {} {filter}", R::COLUMNS, R::TABLE))?
        .query_map(params, R::from_row)?
        .collect()
}

/// One page of every row, in primary-key order (keyset: each page starts
/// where the last ended, whatever the state holds).
fn rows_page(conn: &Connection, after: RowsAfter, limit: usize) -> rusqlite::Result<Vec<Change>> {
    let mut out = Vec::with_capacity(limit.min(10_000));
    if let Some((run, attempt)) = after.runs_after() {
        let runs: Vec<RunRow> = select(
            conn,
            "WHERE (run_id, run_attempt) > (?1, ?2) ORDER BY run_id, run_attempt LIMIT ?3",
            params![run, attempt, limit as i64],
        )?;
        out.extend(runs.into_iter().map(|new| Change::Run { old: None, new }));
    }
    let left = limit - out.len();
    if left > 0 {
        let job = after.jobs_after();
        let jobs: Vec<JobRow> = select(
            conn,
            "WHERE job_id > ?1 ORDER BY job_id LIMIT ?2",
            params![job, left as i64],
        )?;
        out.extend(jobs.into_iter().map(|new| Change::Job { old: None, new }));
    }
    Ok(out)
}

/// Unfinished runs and jobs, for the gauges (a partial index keeps this
/// to the active rows however many have finished).
fn active(conn: &Connection) -> rusqlite::Result<(Vec<RunRow>, Vec<JobRow>)> {
    let filter = "WHERE rank < 4";
    Ok((select(conn, filter, [])?, select(conn, filter, [])?))
}

/// The Actions sink's name in jobs and partitions.
const SINK: &str = "actions-metrics";

#[async_trait]
impl crate::store::ActionsState for Sqlite {
    async fn workflow_bodies(
        &self,
        delivery_ids: Vec<i64>,
    ) -> Result<Vec<Option<(String, String, Vec<u8>)>>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT d.event, d.content_kind, p.body FROM deliveries d
                 JOIN delivery_payloads p ON p.delivery_id = d.id WHERE d.id = ?1",
            )?;
            delivery_ids
                .iter()
                .map(|id| {
                    st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .collect()
        })
        .await
    }

    async fn apply_workflow_jobs(
        &self,
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
        jobs: Vec<(i64, Result<Observation, String>)>,
    ) -> Result<Option<Vec<Change>>, StoreError> {
        let (partition, fence) = (partition.to_string(), fence.clone());
        self.write(move |tx| {
            // The renewal is the fence check, first: a lost lease writes
            // nothing.
            if !super::jobs::renew(tx, SINK, &partition, &fence, now_ms + lease_ms)? {
                return Ok(None);
            }
            let mut changes = Vec::new();
            for (job_id, obs) in &jobs {
                if let Ok(obs) = obs {
                    changes.extend(merge(tx, obs)?);
                }
                super::jobs::close(tx, *job_id, now_ms, obs.as_ref().err().map(String::as_str))?;
            }
            Ok(Some(changes))
        })
        .await
    }

    async fn workflow_rows(
        &self,
        after: RowsAfter,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        self.read(move |c| rows_page(c, after, limit)).await
    }

    /// One server per file: its in-memory sums see every change.
    async fn workflow_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    async fn active_workflows(&self) -> Result<(Vec<RunRow>, Vec<JobRow>), StoreError> {
        self.read(active).await
    }

    async fn finished_workflows(&self, since_ms: i64) -> Result<Finished, StoreError> {
        // Only the columns the report needs, each query answered from its
        // covering index (migration 0007): a month of runs and jobs is a
        // sequential read, not a lookup per row. Names are interned as
        // they are read, so a row costs no allocation.
        self.read(move |c| {
            let mut out = Finished::default();
            let mut workflows: HashMap<String, HashMap<String, u32>> = HashMap::new();
            let mut conclusions: HashMap<String, u32> = HashMap::new();
            let mut workflow = |out: &mut Finished, r: &Row| -> rusqlite::Result<u32> {
                let repo = r.get_ref(0)?.as_str()?;
                let name = r.get_ref(1)?.as_str()?;
                if let Some(i) = workflows.get(repo).and_then(|m| m.get(name)) {
                    return Ok(*i);
                }
                let i = out.workflows.len() as u32;
                out.workflows.push((repo.to_string(), name.to_string()));
                workflows
                    .entry(repo.to_string())
                    .or_default()
                    .insert(name.to_string(), i);
                Ok(i)
            };
            let mut runs = c.prepare_cached(
                "SELECT repository, workflow_name, conclusion, run_started_at_ms, completed_at_ms
                 FROM actions_runs WHERE rank = 4 AND completed_at_ms >= ?1",
            )?;
            let mut rows = runs.query([since_ms])?;
            while let Some(r) = rows.next()? {
                let wf = workflow(&mut out, r)?;
                let conclusion = match r.get_ref(2)?.as_str_or_null()? {
                    None => None,
                    Some(name) => Some(match conclusions.get(name) {
                        Some(i) => *i,
                        None => {
                            let i = out.conclusions.len() as u32;
                            out.conclusions.push(name.to_string());
                            conclusions.insert(name.to_string(), i);
                            i
                        }
                    }),
                };
                out.runs.push(FinishedRun {
                    workflow: wf,
                    conclusion,
                    run_started_at_ms: r.get(3)?,
                    completed_at_ms: r.get(4)?,
                });
            }
            let mut jobs = c.prepare_cached(
                "SELECT repository, workflow_name, created_at_ms, started_at_ms
                 FROM actions_jobs WHERE rank = 4 AND completed_at_ms >= ?1",
            )?;
            let mut rows = jobs.query([since_ms])?;
            while let Some(r) = rows.next()? {
                let wf = workflow(&mut out, r)?;
                out.jobs.push(FinishedJob {
                    workflow: wf,
                    created_at_ms: r.get(2)?,
                    started_at_ms: r.get(3)?,
                });
            }
            Ok(out)
        })
        .await
    }
}
