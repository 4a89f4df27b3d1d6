//! Actions metrics benchmark: the release `gatehouse` binary fed GitHub's
//! workflow_run/workflow_job payloads (rewritten into realistic runs and
//! jobs, as the tests do). Run:
//!
//!     cargo bench --bench actions [-- --phases apply,scrape --jobs 100000 --active 2000
//!                                      --orgs 5 --repos 20 --rounds 3]
//!
//! Phases, each on a fresh server and journal:
//!   apply:  the actions-metrics sink is paused, 20,000 jobs' full
//!           sequences (queued, waiting, in_progress, completed, plus their
//!           runs' events) are journaled across 25 orgs, the sink is
//!           resumed; deliveries applied per second from the first job done
//!           to the last (the jobs' own timestamps), `--rounds` times.
//!   scrape: `--jobs` finished jobs and `--active` in-progress ones put in
//!           state (each job's last delivery only, through the same path),
//!           across `--orgs` × `--repos` repositories (2 workflows, 4 job
//!           names, 2 runner label sets, main or a topic branch each), then
//!           `--rounds` times: restart on that state (time to listening:
//!           the counters are rebuilt from the rows) and GET /metrics 30
//!           times (p50/p95/max, size), beside the same on an empty journal.
//!
//! Every loop is bounded by count and time.

#[path = "../tests/common/actions.rs"]
mod actions;
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actions::{Planned, Shape};
use common::{Server, sign};

const SINK: &str = "actions-metrics";
const RUNS_PER_CHUNK: usize = 500;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github")
}

/// Plans `jobs` jobs (4 per run) in chunks, handing each chunk's
/// deliveries to `each` so that at most one chunk is in memory.
async fn in_chunks<F, Fut>(
    jobs: usize,
    active: usize,
    (orgs, repos): (usize, usize),
    only_final: bool,
    mut each: F,
) where
    F: FnMut(Vec<Planned>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let names: Vec<String> = (0..orgs).map(|i| format!("org-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let runs = jobs.div_ceil(4);
    let chunks = runs.div_ceil(RUNS_PER_CHUNK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for c in 0..chunks {
        let last = c + 1 == chunks;
        let n = RUNS_PER_CHUNK.min(runs - c * RUNS_PER_CHUNK);
        let plan = actions::plan(
            &fixtures(),
            &Shape {
                orgs: &names,
                repos_per_org: repos,
                runs: n,
                jobs_per_run: 4,
                // Finished work long ago; the active jobs started within
                // the last hour, so they are in progress, not stale.
                start: if last {
                    now - 3600
                } else {
                    1_767_225_600 + c as i64 * 20_000
                },
                first_run: 1_000_000 + (c * RUNS_PER_CHUNK) as i64,
                seed: c as u64 + 1,
                open_jobs: if last { active } else { 0 },
                only_final,
            },
        );
        each(plan.deliveries).await;
    }
}

/// Posts deliveries from 32 connections; bounded.
async fn post_all(client: &reqwest::Client, base: &str, deliveries: Vec<Planned>) {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, base, next, deliveries) = (
            client.clone(),
            base.to_string(),
            next.clone(),
            deliveries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deliveries.len() || Instant::now() > deadline {
                    break;
                }
                let d = &deliveries[i];
                let r = client
                    .post(format!("{base}/webhooks/github"))
                    .header("content-type", "application/json")
                    .header("x-github-event", d.event)
                    .header("x-github-delivery", &d.guid)
                    .header("x-github-hook-id", "1")
                    .header("x-hub-signature-256", sign(&d.body))
                    .body(d.body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("gatehouse.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// Waits (bounded) until the sink has no pending job; returns how many it
/// ran, split by event, and the span from the first done to the last.
fn drained(dir: &Path, limit: Duration) -> (i64, i64, Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let c = db(dir);
        let pending: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE sink = ?1 AND state = 'pending'",
                [SINK],
                |r| r.get(0),
            )
            .unwrap();
        if pending == 0 {
            let (jobs, job_events, first, last): (i64, i64, i64, i64) = c
                .query_row(
                    "SELECT COUNT(*), SUM(d.event = 'workflow_job'), MIN(j.updated_at_ms), MAX(j.updated_at_ms)
                     FROM jobs j JOIN deliveries d ON d.id = j.delivery_id WHERE j.sink = ?1 AND j.state = 'done'",
                    [SINK],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap();
            return (
                jobs,
                job_events,
                Duration::from_millis((last - first).max(1) as u64),
            );
        }
        assert!(Instant::now() < deadline, "{pending} jobs still pending");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Fills state with the sink paused, then resumes it and measures.
async fn fill(
    dir: &Path,
    jobs: usize,
    active: usize,
    shape: (usize, usize),
    only_final: bool,
) -> Server {
    let server = Server::start(dir, "");
    server.cli(&["routes", "pause", SINK]);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut sent = 0usize;
    in_chunks(jobs, active, shape, only_final, |d| {
        sent += d.len();
        post_all(&client, &server.base, d)
    })
    .await;
    eprintln!(
        "  journaled {sent} deliveries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    server.cli(&["routes", "resume", SINK]);
    server
}

async fn apply(dir: &Path, rounds: usize) {
    println!("## apply: 20,000 jobs' full sequences, 25 orgs, sink paused then resumed");
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let server = fill(dir, 20_000, 0, (25, 4), false).await;
        let (n, job_events, span) = drained(dir, Duration::from_secs(600));
        let rate = n as f64 / span.as_secs_f64();
        println!(
            "round {round}: {n} deliveries ({job_events} workflow_job) applied in {:.2} s = {rate:.0}/s, peak RSS {:.0} MB",
            span.as_secs_f64(),
            server.peak_rss_mb()
        );
        rates.push(rate);
        server.stop();
    }
    println!(
        "median: {:.0} deliveries applied/s (target: at least 5,000 workflow_job/s)",
        median(rates)
    );
}

async fn scrape_times(base: &str, n: usize) -> (Vec<f64>, usize, usize) {
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    let (mut bytes, mut lines) = (0, 0);
    for _ in 0..n {
        let (ms, body) = common::timed_scrape(&client, base).await;
        times.push(ms);
        bytes = body.len();
        lines = body
            .lines()
            .filter(|l| l.starts_with("github_workflow_"))
            .count();
    }
    times.sort_by(f64::total_cmp);
    (times, bytes, lines)
}

/// Time from spawning the binary to its "listening" line.
fn start_time(dir: &Path) -> (Server, f64) {
    let t = Instant::now();
    let s = Server::start_in_place(dir, "");
    (s, t.elapsed().as_secs_f64() * 1000.0)
}

async fn scrape(
    dir: &Path,
    jobs: usize,
    active: usize,
    (orgs, repos): (usize, usize),
    rounds: usize,
) {
    println!(
        "## scrape: {jobs} finished + {active} in-progress jobs in state (last delivery of each), {orgs} orgs x {repos} repositories"
    );
    let server = fill(dir, jobs + active, active, (orgs, repos), true).await;
    let (n, _, span) = drained(dir, Duration::from_secs(900));
    server.stop();
    println!(
        "applied {n} deliveries in {:.1} s = {:.0}/s",
        span.as_secs_f64(),
        n as f64 / span.as_secs_f64()
    );
    let (finished, open): (i64, i64) = db(dir)
        .query_row(
            "SELECT SUM(rank = 4), SUM(rank < 4) FROM actions_jobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    println!("state: {finished} finished jobs, {open} unfinished");
    // Each round: restart on this state (the counters are rebuilt from the
    // rows), 30 scrapes; then the same on an empty journal, side by side.
    let empty_dir = dir.with_extension("empty");
    println!(
        "| round | start ms | scrape p50 ms | p95 | max | bytes | github_workflow_ samples | empty: start ms | scrape p50 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut p50s, mut p95s, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (full, full_start) = start_time(dir);
        let (times, bytes, lines) = scrape_times(&full.base, 30).await;
        full.stop();
        let _ = std::fs::remove_dir_all(&empty_dir);
        let (empty, empty_start) = start_time(&empty_dir);
        let (base, _, _) = scrape_times(&empty.base, 30).await;
        empty.stop();
        println!(
            "| {round} | {full_start:.0} | {:.1} | {:.1} | {:.1} | {bytes} | {lines} | {empty_start:.0} | {:.1} |",
            pct(&times, 50.0),
            pct(&times, 95.0),
            pct(&times, 100.0),
            pct(&base, 50.0),
        );
        p50s.push(pct(&times, 50.0));
        p95s.push(pct(&times, 95.0));
        starts.push(full_start);
    }
    println!(
        "median: scrape p50 {:.1} ms, p95 {:.1} ms (target under 50 ms); start {:.0} ms",
        median(p50s),
        median(p95s),
        median(starts)
    );
    let _ = std::fs::remove_dir_all(&empty_dir);
}

fn main() {
    let mut phases = vec!["apply".to_string(), "scrape".into()];
    let (mut jobs, mut active, mut rounds) = (100_000usize, 2_000usize, 3usize);
    let (mut orgs, mut repos) = (5usize, 20usize);
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--phases" => phases = args.next().unwrap().split(',').map(String::from).collect(),
            "--jobs" => jobs = args.next().unwrap().parse().unwrap(),
            "--active" => active = args.next().unwrap().parse().unwrap(),
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--orgs" => orgs = args.next().unwrap().parse().unwrap(),
            "--repos" => repos = args.next().unwrap().parse().unwrap(),
            // Leave bench-data/actions in place, to look at it afterwards.
            "--keep" => keep = true,
            _ => {}
        }
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench-data/actions"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for p in &phases {
            match p.as_str() {
                "apply" => apply(&dir, rounds).await,
                "scrape" => scrape(&dir, jobs, active, (orgs, repos), rounds).await,
                other => eprintln!("unknown phase {other}"),
            }
        }
    });
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
