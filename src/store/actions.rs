//! The Actions state's rows: one per workflow run and per job, what a
//! delivery observes of them, and how two observations rank (so merging is
//! independent of order and repeats, invariant 6).

use serde::Serialize;
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

/// A row that moved: what it was (None: new) and what it is now.
#[derive(Debug, Clone)]
pub enum Change {
    Run { old: Option<RunRow>, new: RunRow },
    Job { old: Option<JobRow>, new: JobRow },
}

/// Where a page of every row starts: runs by (run id, attempt), then jobs
/// by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsAfter {
    Start,
    Run { run_id: i64, run_attempt: i64 },
    Job(i64),
}

impl RowsAfter {
    /// Where the page's runs start, after (run id, attempt); None when the
    /// runs are done and the page is jobs only.
    pub fn runs_after(self) -> Option<(i64, i64)> {
        match self {
            RowsAfter::Start => Some((i64::MIN, i64::MIN)),
            RowsAfter::Run {
                run_id,
                run_attempt,
            } => Some((run_id, run_attempt)),
            RowsAfter::Job(_) => None,
        }
    }

    /// Where the page's jobs start, after this job id.
    pub fn jobs_after(self) -> i64 {
        match self {
            RowsAfter::Job(id) => id,
            _ => i64::MIN,
        }
    }

    /// The page after this row.
    pub fn of(change: &Change) -> RowsAfter {
        match change {
            Change::Run { new, .. } => RowsAfter::Run {
                run_id: new.run_id,
                run_attempt: new.run_attempt,
            },
            Change::Job { new, .. } => RowsAfter::Job(new.job_id),
        }
    }
}

/// Runs and jobs completed in a window, as the reports read them. The
/// (repository, workflow) pairs and conclusions are listed once and
/// referred to by index: a month holds hundreds of thousands of rows and
/// a handful of distinct names.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// (repository, workflow name).
    pub workflows: Vec<(String, String)>,
    pub conclusions: Vec<String>,
    pub runs: Vec<FinishedRun>,
    pub jobs: Vec<FinishedJob>,
}

/// A completed run: indexes into [`Finished`]'s lists, and its times.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRun {
    pub workflow: u32,
    pub conclusion: Option<u32>,
    pub run_started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
}

/// A completed job: its workflow's index and its queue times.
#[derive(Debug, Clone, Copy)]
pub struct FinishedJob {
    pub workflow: u32,
    pub created_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
}
