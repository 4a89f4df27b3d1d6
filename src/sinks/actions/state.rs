//! The state tables' SQL: merging an observation into its row (inside the
//! writer's transaction), and reading rows back for the aggregates, the
//! gauges and the reports.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

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

pub fn run_from(r: &Row) -> rusqlite::Result<RunRow> {
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

pub fn job_from(r: &Row) -> rusqlite::Result<JobRow> {
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

/// Merges one observation: the row becomes whichever of the two ranks
/// higher (`Observation::version`). Returns the change, or None when the
/// delivery is stale or a repeat.
pub fn merge(tx: &Transaction<'_>, obs: &Observation) -> rusqlite::Result<Option<Change>> {
    let (rank, version) = obs.version();
    match obs {
        Observation::Run(new) => {
            let old = tx
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS}, rank, version FROM actions_runs WHERE run_id = ?1 AND run_attempt = ?2"
                ))?
                .query_row(params![new.run_id, new.run_attempt], |r| {
                    Ok((run_from(r)?, r.get::<_, i64>(13)?, r.get::<_, i64>(14)?))
                })
                .optional()?;
            if old
                .as_ref()
                .is_some_and(|(_, r, v)| (*r, *v) >= (rank, version))
            {
                return Ok(None);
            }
            let p = &new.place;
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO actions_runs ({RUN_COLUMNS}, rank, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?
            .execute(params![
                new.run_id,
                new.run_attempt,
                new.status,
                new.conclusion,
                p.owner,
                p.organization,
                p.repository,
                p.workflow_name,
                p.head_branch,
                new.event,
                new.created_at_ms,
                new.run_started_at_ms,
                new.completed_at_ms,
                rank,
                version
            ])?;
            Ok(Some(Change::Run {
                old: old.map(|o| o.0),
                new: new.clone(),
            }))
        }
        Observation::Job(new) => {
            let old = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS}, rank, version FROM actions_jobs WHERE job_id = ?1"
                ))?
                .query_row([new.job_id], |r| {
                    Ok((job_from(r)?, r.get::<_, i64>(17)?, r.get::<_, i64>(18)?))
                })
                .optional()?;
            if old
                .as_ref()
                .is_some_and(|(_, r, v)| (*r, *v) >= (rank, version))
            {
                return Ok(None);
            }
            let p = &new.place;
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO actions_jobs ({JOB_COLUMNS}, rank, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ))?
            .execute(params![
                new.job_id,
                new.run_id,
                new.run_attempt,
                new.status,
                new.conclusion,
                p.owner,
                p.organization,
                p.repository,
                p.workflow_name,
                p.head_branch,
                new.job_name,
                serde_json::to_string(&new.labels).expect("strings serialise"),
                new.runner_name,
                new.runner_group,
                new.created_at_ms,
                new.started_at_ms,
                new.completed_at_ms,
                rank,
                version
            ])?;
            Ok(Some(Change::Job {
                old: old.map(|o| o.0),
                new: new.clone(),
            }))
        }
    }
}

/// Every row, for rebuilding the aggregates at start.
pub fn each_row(conn: &Connection, mut f: impl FnMut(Change)) -> rusqlite::Result<()> {
    let mut st = conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM actions_runs"))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(Change::Run {
            old: None,
            new: run_from(r)?,
        });
    }
    let mut st = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM actions_jobs"))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(Change::Job {
            old: None,
            new: job_from(r)?,
        });
    }
    Ok(())
}

/// Unfinished runs and jobs, for the gauges (a partial index keeps this
/// to the active rows however many have finished).
pub fn active(conn: &Connection) -> rusqlite::Result<(Vec<RunRow>, Vec<JobRow>)> {
    let runs = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM actions_runs WHERE rank < 4"
        ))?
        .query_map([], run_from)?
        .collect::<Result<_, _>>()?;
    let jobs = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM actions_jobs WHERE rank < 4"
        ))?
        .query_map([], job_from)?
        .collect::<Result<_, _>>()?;
    Ok((runs, jobs))
}

/// Runs and jobs completed at or after `since_ms`, for the reports.
pub fn completed_since(
    conn: &Connection,
    since_ms: i64,
) -> rusqlite::Result<(Vec<RunRow>, Vec<JobRow>)> {
    let runs = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM actions_runs WHERE rank = 4 AND completed_at_ms >= ?1"
        ))?
        .query_map([since_ms], run_from)?
        .collect::<Result<_, _>>()?;
    let jobs = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM actions_jobs WHERE rank = 4 AND completed_at_ms >= ?1"
        ))?
        .query_map([since_ms], job_from)?
        .collect::<Result<_, _>>()?;
    Ok((runs, jobs))
}
