//! One `workflow_run` or `workflow_job` delivery read into the state row it
//! stands for: the fields the state keeps, times as epoch ms taken from the
//! payload (never from when it arrived).

use serde::Deserialize;

use crate::clock::parse_rfc3339_ms as parse_time;
pub use crate::store::actions::{
    COMPLETED, IN_PROGRESS, JobRow, Observation, Place, QUEUED, RunRow, WAITING, rank, rank_name,
};
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
