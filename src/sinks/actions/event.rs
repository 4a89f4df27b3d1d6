//! One `workflow_run` or `workflow_job` delivery read into the state row it
//! stands for: the fields the state keeps, times as epoch ms taken from the
//! payload (never from when it arrived).

use serde::{Deserialize, Serialize};

use crate::clock::parse_rfc3339_ms as parse_time;
use sha2::{Digest, Sha256};

/// Status ranks: state only moves up this ladder.
pub const QUEUED: i64 = 1;
pub const WAITING: i64 = 2;
pub const IN_PROGRESS: i64 = 3;
pub const COMPLETED: i64 = 4;

/// GitHub's statuses on the ladder; `requested`, `pending` and any status
/// GitHub adds later count as queued, the first step.
pub fn rank(status: &str) -> i64 {
    match status {
        "completed" => COMPLETED,
        "in_progress" => IN_PROGRESS,
        "waiting" => WAITING,
        _ => QUEUED,
    }
}

/// The gauge label for an unfinished rank.
pub fn rank_name(rank: i64) -> &'static str {
    match rank {
        COMPLETED => "completed",
        IN_PROGRESS => "in_progress",
        WAITING => "waiting",
        _ => "queued",
    }
}

/// Where a run or job belongs: the labels every metric shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    pub owner: String,
    /// The organisation's login; empty for a user's repository.
    pub organization: String,
    /// `owner/name`.
    pub repository: String,
    pub workflow_name: String,
    pub head_branch: String,
}

/// One attempt of a workflow run, keyed by (run id, run attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub run_id: i64,
    pub run_attempt: i64,
    pub status: String,
    pub conclusion: Option<String>,
    pub place: Place,
    pub event: String,
    pub created_at_ms: Option<i64>,
    pub run_started_at_ms: Option<i64>,
    /// The completed delivery's `updated_at` (GitHub sends no completed_at).
    pub completed_at_ms: Option<i64>,
}

/// One job, keyed by its id (a re-run makes new job ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    pub job_id: i64,
    pub run_id: i64,
    pub run_attempt: i64,
    pub status: String,
    pub conclusion: Option<String>,
    pub place: Place,
    pub job_name: String,
    pub labels: Vec<String>,
    pub runner_name: Option<String>,
    pub runner_group: Option<String>,
    pub created_at_ms: Option<i64>,
    /// Only for a job that got a runner: GitHub fills `started_at` with the
    /// creation time while a job is queued, which is no start at all.
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
}

impl RunRow {
    pub fn rank(&self) -> i64 {
        rank(&self.status)
    }
}

impl JobRow {
    pub fn rank(&self) -> i64 {
        rank(&self.status)
    }

    /// `runs-on` as actions-runner-controller labels it.
    pub fn runs_on(&self) -> String {
        self.labels.join(",")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Run(RunRow),
    Job(JobRow),
}

impl Observation {
    /// Orders two deliveries of one run or job: the higher status wins, and
    /// between two different deliveries of one status a digest of their
    /// content decides, so the winner never depends on arrival order.
    pub fn version(&self) -> (i64, i64) {
        let (rank, json) = match self {
            Observation::Run(r) => (r.rank(), serde_json::to_vec(r)),
            Observation::Job(j) => (j.rank(), serde_json::to_vec(j)),
        };
        let digest = Sha256::digest(json.expect("rows serialise"));
        let tiebreak = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 1;
        (rank, tiebreak)
    }
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Organization {
    login: String,
}

#[derive(Deserialize)]
struct WorkflowRef {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RunPayload {
    id: i64,
    #[serde(default = "first_attempt")]
    run_attempt: i64,
    #[serde(default)]
    name: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    head_branch: Option<String>,
    event: Option<String>,
    created_at: Option<String>,
    run_started_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct JobPayload {
    id: i64,
    run_id: i64,
    #[serde(default = "first_attempt")]
    run_attempt: i64,
    status: Option<String>,
    conclusion: Option<String>,
    name: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    runner_name: Option<String>,
    runner_group_name: Option<String>,
    workflow_name: Option<String>,
    head_branch: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
}

fn first_attempt() -> i64 {
    1
}

#[derive(Deserialize)]
struct Delivery {
    repository: Option<Repository>,
    organization: Option<Organization>,
    workflow_run: Option<RunPayload>,
    workflow: Option<WorkflowRef>,
    workflow_job: Option<JobPayload>,
}

/// Reads a delivery of `event` (its JSON body) into an observation.
pub fn parse(event: &str, json: &[u8]) -> Result<Observation, String> {
    let d: Delivery =
        serde_json::from_slice(json).map_err(|e| format!("not a {event} payload: {e}"))?;
    let repo = d
        .repository
        .ok_or_else(|| format!("{event} payload has no repository"))?;
    let place = |workflow_name: Option<String>, head_branch: Option<String>| Place {
        owner: repo.owner.login.clone(),
        organization: d
            .organization
            .as_ref()
            .map(|o| o.login.clone())
            .unwrap_or_default(),
        repository: repo.full_name.clone(),
        workflow_name: workflow_name.unwrap_or_default(),
        head_branch: head_branch.unwrap_or_default(),
    };
    match event {
        "workflow_run" => {
            let r = d
                .workflow_run
                .ok_or("workflow_run payload has no workflow_run object")?;
            let status = r.status.unwrap_or_else(|| "queued".into());
            let done = rank(&status) == COMPLETED;
            // `workflow_run.name` is the workflow's name; some payloads leave
            // it empty and carry it in `workflow.name`.
            let name = r
                .name
                .filter(|n| !n.is_empty())
                .or_else(|| d.workflow.and_then(|w| w.name));
            Ok(Observation::Run(RunRow {
                run_id: r.id,
                run_attempt: r.run_attempt,
                conclusion: r.conclusion.filter(|_| done),
                place: place(name, r.head_branch),
                event: r.event.unwrap_or_default(),
                created_at_ms: parse_time(r.created_at.as_deref()),
                run_started_at_ms: parse_time(r.run_started_at.as_deref()),
                completed_at_ms: parse_time(r.updated_at.as_deref()).filter(|_| done),
                status,
            }))
        }
        "workflow_job" => {
            let j = d
                .workflow_job
                .ok_or("workflow_job payload has no workflow_job object")?;
            let status = j.status.unwrap_or_else(|| "queued".into());
            let rank = rank(&status);
            let runner = j.runner_name.filter(|n| !n.is_empty());
            // In progress means a runner took it; a completed job without a
            // runner was cancelled or skipped before it ever started.
            let started = rank == IN_PROGRESS || (rank == COMPLETED && runner.is_some());
            Ok(Observation::Job(JobRow {
                job_id: j.id,
                run_id: j.run_id,
                run_attempt: j.run_attempt,
                conclusion: j.conclusion.filter(|_| rank == COMPLETED),
                place: place(j.workflow_name, j.head_branch),
                job_name: j.name.unwrap_or_default(),
                labels: j.labels,
                runner_group: j.runner_group_name.filter(|_| runner.is_some()),
                runner_name: runner,
                created_at_ms: parse_time(j.created_at.as_deref()),
                started_at_ms: parse_time(j.started_at.as_deref()).filter(|_| started),
                completed_at_ms: parse_time(j.completed_at.as_deref())
                    .filter(|_| rank == COMPLETED),
                status,
            }))
        }
        other => Err(format!("{other} is not a workflow event")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_only_climb() {
        assert!(rank("queued") < rank("waiting"));
        assert!(rank("waiting") < rank("in_progress"));
        assert!(rank("in_progress") < rank("completed"));
        assert_eq!(rank("requested"), QUEUED);
        assert_eq!(rank("pending"), QUEUED);
    }

    #[test]
    fn a_queued_job_has_not_started_whatever_started_at_says() {
        let body = br#"{"repository":{"full_name":"o/r","owner":{"login":"o"}},
            "workflow_job":{"id":1,"run_id":2,"status":"queued","name":"build","labels":["x"],
            "created_at":"2024-01-01T00:00:00Z","started_at":"2024-01-01T00:00:00Z"}}"#;
        let Observation::Job(j) = parse("workflow_job", body).unwrap() else {
            panic!("a job")
        };
        assert_eq!(j.started_at_ms, None);
        assert_eq!(j.created_at_ms, Some(1_704_067_200_000));
        assert_eq!(j.place.organization, "");
        assert_eq!(j.run_attempt, 1);
    }

    #[test]
    fn missing_objects_are_reported_not_guessed() {
        let e = parse(
            "workflow_job",
            br#"{"repository":{"full_name":"o/r","owner":{"login":"o"}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("no workflow_job"), "{e}");
        assert!(parse("workflow_run", b"[1,2]").is_err());
    }
}
