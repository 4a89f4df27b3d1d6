//! Realistic GitHub Actions delivery sequences made from the real
//! `workflow_run` and `workflow_job` fixtures: the payloads are GitHub's,
//! with their ids, names, owners and timestamps rewritten so that runs and
//! jobs move through queued → (waiting →) in_progress → completed as they
//! do on GitHub. Also used by the benchmarks (`#[path]`).
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

/// A deterministic pseudo-random stream (splitmix64): tests must not
/// depend on the machine, only on the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

pub fn rfc3339(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub org: String,
    pub repo: String,
    pub workflow: String,
    pub branch: String,
    pub created: i64,
    pub started: i64,
    pub completed: i64,
    pub conclusion: &'static str,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub org: String,
    pub repo: String,
    pub workflow: String,
    pub branch: String,
    pub name: String,
    pub labels: Vec<String>,
    pub created: i64,
    /// None: cancelled while queued (never got a runner).
    pub started: Option<i64>,
    pub completed: i64,
    pub conclusion: &'static str,
    /// Waited for an environment's approval first.
    pub waits: bool,
}

/// What a delivery is about, so tests can shuffle one job's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Run(i64),
    Job(i64),
}

#[derive(Debug, Clone)]
pub struct Planned {
    pub event: &'static str,
    pub guid: String,
    pub body: Vec<u8>,
    pub subject: Subject,
    pub org: String,
}

pub struct Plan {
    pub runs: Vec<Run>,
    pub jobs: Vec<Job>,
    /// In the order GitHub would send them.
    pub deliveries: Vec<Planned>,
}

pub struct Shape<'a> {
    pub orgs: &'a [&'a str],
    pub repos_per_org: usize,
    pub runs: usize,
    pub jobs_per_run: usize,
    /// Epoch seconds of the first run's creation.
    pub start: i64,
    /// The first run's id; a job's id is its run's id × 16 + its index.
    pub first_run: i64,
    pub seed: u64,
    /// The last this many jobs (and their runs) never complete: they stop
    /// at in_progress, or queued if they never got a runner.
    pub open_jobs: usize,
    /// Only each run's and job's last delivery (to fill state quickly).
    pub only_final: bool,
}

struct Templates {
    run_requested: Value,
    run_completed: Value,
    job_queued: Value,
    job_waiting: Value,
    job_in_progress: Value,
    job_completed: Value,
}

fn load(dir: &Path, event: &str, file: &str) -> Value {
    let path = dir.join("payloads").join(event).join(file);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn templates(fixtures: &Path) -> Templates {
    Templates {
        run_requested: load(fixtures, "workflow_run", "requested.payload.json"),
        run_completed: load(fixtures, "workflow_run", "completed.payload.json"),
        job_queued: load(fixtures, "workflow_job", "queued.payload.json"),
        job_waiting: load(fixtures, "workflow_job", "waiting.payload.json"),
        job_in_progress: load(fixtures, "workflow_job", "in_progress.payload.json"),
        job_completed: load(
            fixtures,
            "workflow_job",
            "completed.success.with-organization.payload.json",
        ),
    }
}

fn place(v: &mut Value, org: &str, repo: &str) {
    let r = &mut v["repository"];
    r["name"] = json!(repo);
    r["full_name"] = json!(format!("{org}/{repo}"));
    r["owner"]["login"] = json!(org);
    let mut o = v
        .get("organization")
        .cloned()
        .unwrap_or_else(|| json!({"id": 1, "url": "https://api.github.com/orgs/x"}));
    o["login"] = json!(org);
    v["organization"] = o;
}

fn guid(n: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        n >> 32,
        n & 0xffff_ffff_ffff
    )
}

fn run_body(t: &Templates, r: &Run, stage: &str) -> Vec<u8> {
    let mut v = if stage == "completed" {
        t.run_completed.clone()
    } else {
        t.run_requested.clone()
    };
    place(&mut v, &r.org, &r.repo);
    v["action"] = json!(stage);
    let w = &mut v["workflow_run"];
    w["id"] = json!(r.id);
    w["run_attempt"] = json!(1);
    w["name"] = json!(r.workflow);
    w["head_branch"] = json!(r.branch);
    w["event"] = json!("push");
    w["created_at"] = json!(rfc3339(r.created));
    w["run_started_at"] = json!(rfc3339(r.started));
    let (status, conclusion, updated) = match stage {
        "requested" => ("queued", Value::Null, r.created),
        "in_progress" => ("in_progress", Value::Null, r.started),
        _ => ("completed", json!(r.conclusion), r.completed),
    };
    w["status"] = json!(status);
    w["conclusion"] = conclusion;
    w["updated_at"] = json!(rfc3339(updated));
    v["workflow"]["name"] = json!(r.workflow);
    serde_json::to_vec(&v).unwrap()
}

fn job_body(t: &Templates, j: &Job, stage: &str) -> Vec<u8> {
    let mut v = match stage {
        "queued" => t.job_queued.clone(),
        "waiting" => t.job_waiting.clone(),
        "in_progress" => t.job_in_progress.clone(),
        _ => t.job_completed.clone(),
    };
    place(&mut v, &j.org, &j.repo);
    v["action"] = json!(stage);
    let w = &mut v["workflow_job"];
    w["id"] = json!(j.id);
    w["run_id"] = json!(j.run_id);
    w["run_attempt"] = json!(1);
    w["name"] = json!(j.name);
    w["labels"] = json!(j.labels);
    w["workflow_name"] = json!(j.workflow);
    w["head_branch"] = json!(j.branch);
    w["created_at"] = json!(rfc3339(j.created));
    w["status"] = json!(stage);
    // GitHub fills started_at with created_at until a runner takes the job.
    let ran = j.started.is_some() && (stage == "in_progress" || stage == "completed");
    w["started_at"] = json!(rfc3339(if ran { j.started.unwrap() } else { j.created }));
    w["runner_name"] = if ran {
        json!(format!("runner-{}", j.id % 7))
    } else {
        Value::Null
    };
    w["runner_group_name"] = if ran { json!("Default") } else { Value::Null };
    if stage == "completed" {
        w["conclusion"] = json!(j.conclusion);
        w["completed_at"] = json!(rfc3339(j.completed));
    } else {
        w["conclusion"] = Value::Null;
        w["completed_at"] = Value::Null;
    }
    serde_json::to_vec(&v).unwrap()
}

const WORKFLOWS: [&str; 2] = ["CI", "CodeQL"];
const JOB_NAMES: [&str; 4] = ["build", "test (ubuntu-latest, 3.12)", "lint", "deploy"];

/// Plans runs and jobs across orgs and repositories, and every delivery
/// GitHub would send for them, in GitHub's order.
pub fn plan(fixtures: &Path, shape: &Shape) -> Plan {
    let t = templates(fixtures);
    let mut rng = Rng::new(shape.seed);
    let (mut runs, mut jobs, mut deliveries) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_guid = shape.seed.wrapping_mul(1_000_003);
    let mut send = |event: &'static str, body: Vec<u8>, subject: Subject, org: &str| {
        next_guid += 1;
        deliveries.push(Planned {
            event,
            guid: guid(next_guid),
            body,
            subject,
            org: org.to_string(),
        });
    };
    let total_jobs = shape.runs * shape.jobs_per_run;
    for i in 0..shape.runs {
        let org = shape.orgs[i % shape.orgs.len()].to_string();
        let repo = format!("repo-{}", (i / shape.orgs.len()) % shape.repos_per_org);
        let workflow = WORKFLOWS[i % WORKFLOWS.len()].to_string();
        let branch = if rng.below(3) == 0 {
            format!("feature/topic-{i}")
        } else {
            "main".to_string()
        };
        let created = shape.start + i as i64 * 37;
        let run_id = shape.first_run + i as i64;
        let mut run_jobs = Vec::new();
        for k in 0..shape.jobs_per_run {
            let jc = created + 1 + k as i64;
            let roll = rng.below(20);
            let started = (roll != 0).then(|| jc + 1 + rng.below(240) as i64);
            let completed = started.unwrap_or(jc + 30) + 5 + rng.below(1500) as i64;
            let conclusion = match (started, roll) {
                (None, _) => "cancelled",
                (_, 1..=3) => "failure",
                _ => "success",
            };
            run_jobs.push(Job {
                id: run_id * 16 + k as i64,
                run_id,
                org: org.clone(),
                repo: repo.clone(),
                workflow: workflow.clone(),
                branch: branch.clone(),
                name: JOB_NAMES[k % JOB_NAMES.len()].to_string(),
                labels: if k % 2 == 0 {
                    vec!["ubuntu-latest".into()]
                } else {
                    vec!["self-hosted".into(), "linux".into(), "x64".into()]
                },
                created: jc,
                started,
                completed,
                conclusion,
                waits: k % JOB_NAMES.len() == 3,
            });
        }
        let run = Run {
            id: run_id,
            org: org.clone(),
            repo: repo.clone(),
            workflow,
            branch,
            created,
            started: created,
            completed: run_jobs
                .iter()
                .map(|j| j.completed)
                .max()
                .unwrap_or(created)
                + 3,
            conclusion: if run_jobs.iter().any(|j| j.conclusion == "failure") {
                "failure"
            } else {
                "success"
            },
        };
        let is_open = |j: &Job| {
            let n =
                (j.run_id - shape.first_run) as usize * shape.jobs_per_run + (j.id % 16) as usize;
            n >= total_jobs - shape.open_jobs
        };
        let mut stages = vec!["requested", "in_progress"];
        if !run_jobs.iter().any(is_open) {
            stages.push("completed");
        }
        let mut job_stages = Vec::new();
        for j in &run_jobs {
            let mut mine = vec!["queued"];
            if j.waits {
                mine.push("waiting");
            }
            if j.started.is_some() {
                mine.push("in_progress");
            }
            if !is_open(j) {
                mine.push("completed");
            }
            job_stages.push(mine);
        }
        if shape.only_final {
            stages.drain(..stages.len() - 1);
            for mine in &mut job_stages {
                mine.drain(..mine.len() - 1);
            }
        }
        // GitHub's order: the run starts, its jobs go through their steps,
        // the run completes.
        let last = stages.pop_if(|s| *s == "completed");
        for stage in stages {
            send(
                "workflow_run",
                run_body(&t, &run, stage),
                Subject::Run(run.id),
                &org,
            );
        }
        for (j, mine) in run_jobs.iter().zip(job_stages) {
            for stage in mine {
                send(
                    "workflow_job",
                    job_body(&t, j, stage),
                    Subject::Job(j.id),
                    &org,
                );
            }
        }
        if let Some(stage) = last {
            send(
                "workflow_run",
                run_body(&t, &run, stage),
                Subject::Run(run.id),
                &org,
            );
        }
        runs.push(run);
        jobs.extend(run_jobs);
    }
    Plan {
        runs,
        jobs,
        deliveries,
    }
}
