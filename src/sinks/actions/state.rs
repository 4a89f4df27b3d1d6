//! The state tables' SQL: merging an observation into its row (inside the
//! writer's transaction), and reading rows back for the aggregates, the
//! gauges and the reports.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params_from_iter};

use super::event::{JobRow, Observation, Place, RunRow};

/// A row that moved: what it was (None: new) and what it is now.
#[derive(Debug, Clone)]
pub enum Change {
    Run { old: Option<RunRow>, new: RunRow },
    Job { old: Option<JobRow>, new: JobRow },
}

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
pub fn merge(tx: &Transaction<'_>, obs: &Observation) -> rusqlite::Result<Option<Change>> {
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

fn each<R: Stored>(conn: &Connection, mut f: impl FnMut(R)) -> rusqlite::Result<()> {
    let mut st = conn.prepare(&format!("SELECT {} FROM {}", R::COLUMNS, R::TABLE))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(R::from_row(r)?);
    }
    Ok(())
}

/// Every row, for rebuilding the aggregates at start (streamed: the state
/// may hold millions).
pub fn each_row(conn: &Connection, mut f: impl FnMut(Change)) -> rusqlite::Result<()> {
    each(conn, |new| f(Change::Run { old: None, new }))?;
    each(conn, |new| f(Change::Job { old: None, new }))
}

/// Unfinished runs and jobs, for the gauges (a partial index keeps this
/// to the active rows however many have finished).
pub fn active(conn: &Connection) -> rusqlite::Result<(Vec<RunRow>, Vec<JobRow>)> {
    let filter = "WHERE rank < 4";
    Ok((select(conn, filter, [])?, select(conn, filter, [])?))
}
