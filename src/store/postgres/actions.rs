//! The Actions metrics' state rows on PostgreSQL: each observation merged
//! into its row under the partition lease's fence (the row is locked while
//! compared, so two replicas cannot both think theirs is newer), rows read
//! back in pages for the aggregates, the gauges and the reports.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::jobs::{close, renew};
use super::{Postgres, read_err, write_err};
use crate::store::StoreError;
use crate::store::actions::{
    Change, Finished, FinishedJob, FinishedRun, JobRow, Observation, Place, RowsAfter, RunRow,
};
use crate::store::jobs::Fence;

/// The Actions sink's name in jobs and partitions.
const SINK: &str = "actions-metrics";

const RUN_COLUMNS: &str =
    "run_id, run_attempt, status, conclusion, owner, organization, repository,
    workflow_name, head_branch, event, created_at_ms, run_started_at_ms, completed_at_ms";

const JOB_COLUMNS: &str = "job_id, run_id, run_attempt, status, conclusion, owner, organization,
    repository, workflow_name, head_branch, job_name, labels, runner_name, runner_group,
    created_at_ms, started_at_ms, completed_at_ms";

fn place(r: &tokio_postgres::Row, at: usize) -> Place {
    Place {
        owner: r.get(at),
        organization: r.get(at + 1),
        repository: r.get(at + 2),
        workflow_name: r.get(at + 3),
        head_branch: r.get(at + 4),
    }
}

fn run_from(r: &tokio_postgres::Row) -> RunRow {
    RunRow {
        run_id: r.get(0),
        run_attempt: r.get(1),
        status: r.get(2),
        conclusion: r.get(3),
        place: place(r, 4),
        event: r.get(9),
        created_at_ms: r.get(10),
        run_started_at_ms: r.get(11),
        completed_at_ms: r.get(12),
    }
}

fn job_from(r: &tokio_postgres::Row) -> JobRow {
    let labels: String = r.get(11);
    JobRow {
        job_id: r.get(0),
        run_id: r.get(1),
        run_attempt: r.get(2),
        status: r.get(3),
        conclusion: r.get(4),
        place: place(r, 5),
        job_name: r.get(10),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        runner_name: r.get(12),
        runner_group: r.get(13),
        created_at_ms: r.get(14),
        started_at_ms: r.get(15),
        completed_at_ms: r.get(16),
    }
}

/// Merges one observation: the row becomes whichever of the two ranks
/// higher (`Observation::version`). Returns the change, or None when the
/// delivery is stale or a repeat.
async fn merge(
    tx: &Transaction<'_>,
    obs: &Observation,
) -> Result<Option<Change>, tokio_postgres::Error> {
    let (rank, version) = obs.version();
    let newer = |old: Option<(i64, i64)>| old.is_none_or(|o| o < (rank, version));
    match obs {
        Observation::Run(new) => {
            let old = tx
                .query_opt(
                    &format!(
                        "SELECT {RUN_COLUMNS}, rank, version FROM actions_runs
                         WHERE run_id = $1 AND run_attempt = $2 FOR UPDATE"
                    ),
                    &[&new.run_id, &new.run_attempt],
                )
                .await?;
            if !newer(old.as_ref().map(|r| (r.get(13), r.get(14)))) {
                return Ok(None);
            }
            let p = &new.place;
            tx.execute(
                &format!(
                    "INSERT INTO actions_runs ({RUN_COLUMNS}, rank, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT (run_id, run_attempt) DO UPDATE SET
                         status = excluded.status, conclusion = excluded.conclusion,
                         owner = excluded.owner, organization = excluded.organization,
                         repository = excluded.repository, workflow_name = excluded.workflow_name,
                         head_branch = excluded.head_branch, event = excluded.event,
                         created_at_ms = excluded.created_at_ms,
                         run_started_at_ms = excluded.run_started_at_ms,
                         completed_at_ms = excluded.completed_at_ms,
                         rank = excluded.rank, version = excluded.version"
                ),
                &[
                    &new.run_id,
                    &new.run_attempt,
                    &new.status,
                    &new.conclusion,
                    &p.owner,
                    &p.organization,
                    &p.repository,
                    &p.workflow_name,
                    &p.head_branch,
                    &new.event,
                    &new.created_at_ms,
                    &new.run_started_at_ms,
                    &new.completed_at_ms,
                    &rank,
                    &version,
                ],
            )
            .await?;
            Ok(Some(Change::Run {
                old: old.as_ref().map(run_from),
                new: new.clone(),
            }))
        }
        Observation::Job(new) => {
            let old = tx
                .query_opt(
                    &format!(
                        "SELECT {JOB_COLUMNS}, rank, version FROM actions_jobs
                         WHERE job_id = $1 FOR UPDATE"
                    ),
                    &[&new.job_id],
                )
                .await?;
            if !newer(old.as_ref().map(|r| (r.get(17), r.get(18)))) {
                return Ok(None);
            }
            let p = &new.place;
            let labels = serde_json::to_string(&new.labels).expect("strings serialise");
            tx.execute(
                &format!(
                    "INSERT INTO actions_jobs ({JOB_COLUMNS}, rank, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                             $16, $17, $18, $19)
                     ON CONFLICT (job_id) DO UPDATE SET
                         run_id = excluded.run_id, run_attempt = excluded.run_attempt,
                         status = excluded.status, conclusion = excluded.conclusion,
                         owner = excluded.owner, organization = excluded.organization,
                         repository = excluded.repository, workflow_name = excluded.workflow_name,
                         head_branch = excluded.head_branch, job_name = excluded.job_name,
                         labels = excluded.labels, runner_name = excluded.runner_name,
                         runner_group = excluded.runner_group,
                         created_at_ms = excluded.created_at_ms,
                         started_at_ms = excluded.started_at_ms,
                         completed_at_ms = excluded.completed_at_ms,
                         rank = excluded.rank, version = excluded.version"
                ),
                &[
                    &new.job_id,
                    &new.run_id,
                    &new.run_attempt,
                    &new.status,
                    &new.conclusion,
                    &p.owner,
                    &p.organization,
                    &p.repository,
                    &p.workflow_name,
                    &p.head_branch,
                    &new.job_name,
                    &labels,
                    &new.runner_name,
                    &new.runner_group,
                    &new.created_at_ms,
                    &new.started_at_ms,
                    &new.completed_at_ms,
                    &rank,
                    &version,
                ],
            )
            .await?;
            Ok(Some(Change::Job {
                old: old.as_ref().map(job_from),
                new: new.clone(),
            }))
        }
    }
}

#[async_trait]
impl crate::store::ActionsState for Postgres {
    async fn workflow_bodies(
        &self,
        delivery_ids: Vec<i64>,
    ) -> Result<Vec<Option<(String, String, Vec<u8>)>>, StoreError> {
        let client = self.client("workflow_bodies").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT d.id, d.event, d.content_kind, p.body FROM deliveries d
                 JOIN delivery_payloads p ON p.delivery_id = d.id WHERE d.id = ANY($1)",
                    )
                    .await
                    .map_err(read_err)?,
                &[&delivery_ids],
            )
            .await
            .map_err(read_err)?;
        let mut found: HashMap<i64, (String, String, Vec<u8>)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        Ok(delivery_ids.iter().map(|id| found.remove(id)).collect())
    }

    async fn apply_workflow_jobs(
        &self,
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
        jobs: Vec<(i64, Result<Observation, String>)>,
    ) -> Result<Option<Vec<Change>>, StoreError> {
        let mut client = self.client("apply_workflow_jobs").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        // The fence check first: a lost lease writes nothing.
        if !renew(&tx, SINK, partition, fence, self.db_ms(now_ms) + lease_ms)
            .await
            .map_err(write_err)?
        {
            return Ok(None);
        }
        let mut changes = Vec::new();
        for (job_id, obs) in &jobs {
            if let Ok(obs) = obs {
                changes.extend(merge(&tx, obs).await.map_err(write_err)?);
            }
            close(&tx, *job_id, now_ms, obs.as_ref().err().map(String::as_str))
                .await
                .map_err(write_err)?;
        }
        // Last, so the version row's lock is held only to the commit.
        if !changes.is_empty() {
            tx.execute("UPDATE actions_version SET version = version + 1", &[])
                .await
                .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)?;
        Ok(Some(changes))
    }

    async fn workflow_rows(
        &self,
        after: RowsAfter,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let client = self.client("workflow_rows").await?;
        let mut out = Vec::new();
        if let Some((run, attempt)) = after.runs_after() {
            let rows = client
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM actions_runs WHERE (run_id, run_attempt) > ($1, $2)
                         ORDER BY run_id, run_attempt LIMIT $3"
                    ),
                    &[&run, &attempt, &(limit as i64)],
                )
                .await
                .map_err(read_err)?;
            out.extend(rows.iter().map(|r| Change::Run {
                old: None,
                new: run_from(r),
            }));
        }
        let left = limit - out.len();
        if left > 0 {
            let job = after.jobs_after();
            let rows = client
                .query(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM actions_jobs WHERE job_id > $1
                         ORDER BY job_id LIMIT $2"
                    ),
                    &[&job, &(left as i64)],
                )
                .await
                .map_err(read_err)?;
            out.extend(rows.iter().map(|r| Change::Job {
                old: None,
                new: job_from(r),
            }));
        }
        Ok(out)
    }

    async fn workflow_version(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client("workflow_version").await?;
        let row = client
            .query_one("SELECT version FROM actions_version", &[])
            .await
            .map_err(read_err)?;
        Ok(Some(row.get(0)))
    }

    async fn active_workflows(&self) -> Result<(Vec<RunRow>, Vec<JobRow>), StoreError> {
        let client = self.client("active_workflows").await?;
        let runs = client
            .query(
                &format!("SELECT {RUN_COLUMNS} FROM actions_runs WHERE rank < 4"),
                &[],
            )
            .await
            .map_err(read_err)?;
        let jobs = client
            .query(
                &format!("SELECT {JOB_COLUMNS} FROM actions_jobs WHERE rank < 4"),
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok((
            runs.iter().map(run_from).collect(),
            jobs.iter().map(job_from).collect(),
        ))
    }

    /// Names are interned as they are read: a month holds hundreds of
    /// thousands of rows and a handful of distinct names.
    async fn finished_workflows(&self, since_ms: i64) -> Result<Finished, StoreError> {
        let client = self.client("finished_workflows").await?;
        let mut out = Finished::default();
        let mut workflows: HashMap<(String, String), u32> = HashMap::new();
        let mut conclusions: HashMap<String, u32> = HashMap::new();
        let mut workflow = |out: &mut Finished, repo: String, name: String| -> u32 {
            let next = out.workflows.len() as u32;
            *workflows
                .entry((repo.clone(), name.clone()))
                .or_insert_with(|| {
                    out.workflows.push((repo, name));
                    next
                })
        };
        let runs = client
            .query(
                &client.prepare_cached("SELECT repository, workflow_name, conclusion, run_started_at_ms, completed_at_ms
                 FROM actions_runs WHERE rank = 4 AND completed_at_ms >= $1").await.map_err(read_err)?,
                &[&since_ms],
            )
            .await
            .map_err(read_err)?;
        for r in &runs {
            let wf = workflow(&mut out, r.get(0), r.get(1));
            let conclusion = r.get::<_, Option<String>>(2).map(|c| {
                let next = out.conclusions.len() as u32;
                *conclusions.entry(c.clone()).or_insert_with(|| {
                    out.conclusions.push(c);
                    next
                })
            });
            out.runs.push(FinishedRun {
                workflow: wf,
                conclusion,
                run_started_at_ms: r.get(3),
                completed_at_ms: r.get(4),
            });
        }
        let jobs = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT repository, workflow_name, created_at_ms, started_at_ms
                 FROM actions_jobs WHERE rank = 4 AND completed_at_ms >= $1",
                    )
                    .await
                    .map_err(read_err)?,
                &[&since_ms],
            )
            .await
            .map_err(read_err)?;
        for r in &jobs {
            let wf = workflow(&mut out, r.get(0), r.get(1));
            out.jobs.push(FinishedJob {
                workflow: wf,
                created_at_ms: r.get(2),
                started_at_ms: r.get(3),
            });
        }
        Ok(out)
    }
}
