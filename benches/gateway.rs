//! The API gateway (part 5), the release binary against an in-process
//! fakehub:
//!
//! 1. Replay: 20 CI jobs (4 at a time), each reading the same 7 resources
//!    of 10 repositories (repository, open pulls, two pull requests, one
//!    pull request's files, a commit's statuses, an issue's comments) and
//!    posting one comment. Rate-limit units fakehub charged, with the jobs
//!    calling fakehub directly (a token each, no conditional requests, as
//!    CI scripts do) and through the gateway; hit ratio.
//! 2. Rotation: after a full read, the installation token is renewed; the
//!    share of the next pass's revalidations that still get a 304.
//! 3. Latency: sequential reads of one pull request, direct vs through the
//!    gateway (revalidated: a 304 upstream each time) vs a fresh-window hit.
//! 4. Throughput: 64 connections reading the 70 resources for 5 s.
//! 5. Runaway (part 14): a runaway client reading uncached URLs on 4
//!    connections against a small budget; once it has spent half, the
//!    replay's 20 jobs run. With fair share off and on: the jobs' success
//!    and units. Then the added latency of the
//!    quota and fair-share checks on a fresh hit.
//!
//! `cargo bench --bench gateway [-- replay|rotation|latency|throughput|runaway]`

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Server, key};
use fakehub::{Config as HubConfig, FakeHub};

const REPOS: usize = 10;
const JOBS: usize = 20;
const JOB_CONCURRENCY: usize = 4;
const PAT: &str = "ghp_benchmarkcitoken000000000000000000";

async fn hub(token_secs: Option<i64>) -> FakeHub {
    let repos: Vec<String> = (0..REPOS).map(|i| format!("repo-{i}")).collect();
    let names: Vec<&str> = repos.iter().map(String::as_str).collect();
    let mut c = HubConfig::default()
        .org("acme", &names)
        .app(1, &key("app-a.pub.pem"), &[(11, "acme")])
        .token("ci", PAT);
    c.rate_limit.core = 1_000_000_000;
    if let Some(s) = token_secs {
        c.installation_token_secs = s;
    }
    FakeHub::start(c).await.unwrap()
}

fn gateway(hub: &FakeHub, dir: &str, extra: &str) -> (Server, String) {
    let server = Server::start(
        &std::env::temp_dir().join(dir),
        &format!(
            "[github]\napi_url = {:?}\n[[github.apps]]\nid = 1\nprivate_key_file = {:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\n{extra}",
            hub.url(),
            format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR")),
        ),
    );
    let token = server
        .cli_output(&["clients", "add", "bench"])
        .trim()
        .to_string();
    (server, token)
}

/// The 70 reads of one job.
async fn paths(hub: &FakeHub) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..REPOS {
        let r = format!("/repos/acme/repo-{i}");
        let pr: serde_json::Value = http
            .get(format!("{}{r}/pulls/1", hub.url()))
            .header("authorization", format!("token {PAT}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sha = pr["head"]["sha"].as_str().unwrap().to_string();
        out.extend([
            r.clone(),
            format!("{r}/pulls"),
            format!("{r}/pulls/1"),
            format!("{r}/pulls/2"),
            format!("{r}/pulls/1/files"),
            format!("{r}/commits/{sha}/statuses"),
            format!("{r}/issues/4/comments"),
        ]);
    }
    out
}

#[derive(Default, Debug)]
struct Tally {
    outcomes: HashMap<String, u64>,
    requests: u64,
    /// Requests not answered 2xx.
    failed: u64,
    /// Jobs whose every request succeeded.
    jobs_ok: u64,
}

impl Tally {
    fn add(&mut self, t: Tally) {
        self.requests += t.requests;
        self.failed += t.failed;
        self.jobs_ok += t.jobs_ok;
        for (k, v) in t.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }
}

/// One read; a refusal or an error counts as failed.
async fn try_get(http: &reqwest::Client, base: &str, token: &str, path: &str, t: &mut Tally) {
    let r = http
        .get(format!("{base}{path}"))
        .header("authorization", format!("token {token}"))
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    if !r.status().is_success() {
        t.failed += 1;
    }
    if let Some(o) = r.headers().get("x-gatehouse-cache") {
        *t.outcomes
            .entry(o.to_str().unwrap().to_string())
            .or_default() += 1;
    }
    t.requests += 1;
    let _ = r.bytes().await.unwrap();
}

async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str, t: &mut Tally) {
    try_get(http, base, token, path, t).await;
    assert_eq!(t.failed, 0, "{path}");
}

async fn job(base: String, token: String, paths: Vec<String>, n: usize) -> Tally {
    let http = reqwest::Client::new();
    let mut t = Tally::default();
    for p in &paths {
        try_get(&http, &base, &token, p, &mut t).await;
    }
    let r = http
        .post(format!(
            "{base}/repos/acme/repo-{}/issues/4/comments",
            n % REPOS
        ))
        .header("authorization", format!("token {token}"))
        .json(&serde_json::json!({"body": format!("job {n} passed")}))
        .send()
        .await
        .unwrap();
    if r.status() != 201 {
        t.failed += 1;
    }
    t.requests += 1;
    t.jobs_ok = u64::from(t.failed == 0);
    t
}

async fn replay(base: &str, token: &str, paths: &[String]) -> Tally {
    let mut total = Tally::default();
    for wave in (0..JOBS).collect::<Vec<_>>().chunks(JOB_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &n in wave {
            set.spawn(job(base.to_string(), token.to_string(), paths.to_vec(), n));
        }
        for t in set.join_all().await {
            total.add(t);
        }
    }
    total
}

fn units(hub: &FakeHub, label: &str) -> u64 {
    let s = hub.stats();
    if let Ok(id) = label.parse::<i64>() {
        return s.installations.get(&id).map_or(0, |u| u.units_spent);
    }
    s.tokens.get(label).map_or(0, |u| u.units_spent)
}

async fn replay_bench() {
    let hub = hub(None).await;
    let paths = paths(&hub).await;
    hub.hub().limits.reset_stats();
    let t = Instant::now();
    let direct = replay(hub.url(), PAT, &paths).await;
    let direct_secs = t.elapsed().as_secs_f64();
    let direct_units = units(&hub, "pat:ci");

    let (server, token) = gateway(&hub, "gatehouse-bench-gateway", "");
    let base = server.gateway.clone().unwrap();
    let t = Instant::now();
    let via = replay(&base, &token, &paths).await;
    assert_eq!((direct.failed, via.failed), (0, 0));
    let via_secs = t.elapsed().as_secs_f64();
    let via_units = units(&hub, "11");
    let app_units = units(&hub, "app:1");
    let hits = via.outcomes.get("hit").copied().unwrap_or(0);
    let reval = via.outcomes.get("revalidated").copied().unwrap_or(0);
    let miss = via.outcomes.get("miss").copied().unwrap_or(0);
    println!(
        "replay: {} requests per run ({} reads, {} writes)",
        direct.requests,
        direct.requests - JOBS as u64,
        JOBS
    );
    println!("  direct:  {direct_units} units in {direct_secs:.2} s");
    println!(
        "  gateway: {via_units} units in {via_secs:.2} s (+{app_units} App-JWT units for token minting), saved {:.1}%",
        100.0 * (1.0 - via_units as f64 / direct_units as f64)
    );
    println!(
        "  reads: {hits} hit (coalesced), {reval} revalidated, {miss} miss; hit ratio {:.1}%",
        100.0 * (hits + reval) as f64 / (hits + reval + miss) as f64
    );
    server.stop();
}

async fn rotation_bench() {
    // Tokens the pool renews 5 minutes early live 2 s for it.
    let hub = hub(Some(302)).await;
    let paths = paths(&hub).await;
    let (server, token) = gateway(&hub, "gatehouse-bench-rotation", "");
    let base = server.gateway.clone().unwrap();
    let http = reqwest::Client::new();
    let pass = |label: &'static str| {
        let (http, base, token, paths) = (http.clone(), base.clone(), token.clone(), paths.clone());
        async move {
            let mut t = Tally::default();
            for p in &paths {
                get(&http, &base, &token, p, &mut t).await;
            }
            let reval = t.outcomes.get("revalidated").copied().unwrap_or(0);
            let miss = t.outcomes.get("miss").copied().unwrap_or(0);
            println!(
                "  {label}: {reval} of {} revalidations answered 304 ({:.1}%)",
                reval + miss,
                100.0 * reval as f64 / (reval + miss) as f64
            );
        }
    };
    println!("rotation:");
    let mut warm = Tally::default();
    for p in &paths {
        get(&http, &base, &token, p, &mut warm).await;
    }
    pass("same token         ").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pass("right after renewal").await;
    server.stop();
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency_bench() {
    let hub = hub(None).await;
    let (plain, token) = gateway(&hub, "gatehouse-bench-lat", "");
    let (fresh, fresh_token) = gateway(
        &hub,
        "gatehouse-bench-lat-fresh",
        "[[gateway.fresh]]\npath = \"^/repos/\"\nsecs = 3600\n",
    );
    let targets = [
        ("direct to fakehub", hub.url().to_string(), PAT.to_string()),
        (
            "gateway, revalidated",
            plain.gateway.clone().unwrap(),
            token,
        ),
        (
            "gateway, fresh hit",
            fresh.gateway.clone().unwrap(),
            fresh_token,
        ),
    ];
    let http = reqwest::Client::new();
    let path = "/repos/acme/repo-0/pulls/1";
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for (_, base, token) in &targets {
        let mut t = Tally::default();
        get(&http, base, token, path, &mut t).await; // warm: token, cache
    }
    for _round in 0..10 {
        for (i, (_, base, token)) in targets.iter().enumerate() {
            for _ in 0..200 {
                let mut t = Tally::default();
                let start = Instant::now();
                get(&http, base, token, path, &mut t).await;
                samples[i].push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    println!("latency, 2,000 sequential reads each (ms):");
    let mut p50s = Vec::new();
    for (i, (label, _, _)) in targets.iter().enumerate() {
        let s = &mut samples[i];
        s.sort_by(f64::total_cmp);
        p50s.push((pct(s, 0.5), pct(s, 0.99)));
        println!(
            "  {label:<22} p50 {:.3}  p99 {:.3}",
            pct(s, 0.5),
            pct(s, 0.99)
        );
    }
    for i in 1..targets.len() {
        println!(
            "  added by the gateway ({}): p50 {:.3}  p99 {:.3}",
            targets[i].0,
            p50s[i].0 - p50s[0].0,
            p50s[i].1 - p50s[0].1
        );
    }
    plain.stop();
    fresh.stop();
}

async fn throughput_bench() {
    let hub = hub(None).await;
    let paths = paths(&hub).await;
    let (server, token) = gateway(&hub, "gatehouse-bench-tput", "");
    let base = server.gateway.clone().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let mut warm = Tally::default();
    for p in &paths {
        get(&http, &base, &token, p, &mut warm).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut set = tokio::task::JoinSet::new();
    for c in 0..64 {
        let (http, base, token, paths) = (http.clone(), base.clone(), token.clone(), paths.clone());
        set.spawn(async move {
            let mut t = Tally::default();
            let mut i = c;
            while Instant::now() < deadline {
                get(&http, &base, &token, &paths[i % paths.len()], &mut t).await;
                i += 7;
            }
            t
        });
    }
    let mut total = Tally::default();
    for t in set.join_all().await {
        total.add(t);
    }
    println!(
        "throughput, 64 connections for 5 s over {} resources: {:.0} requests/s ({:?}); fakehub max concurrency per installation {}",
        paths.len(),
        total.requests as f64 / 5.0,
        total.outcomes,
        hub.stats()
            .installations
            .get(&11)
            .map_or(0, |u| u.max_concurrency)
    );
    server.stop();
}

/// The core budget of the runaway phase's installation.
const SMALL_BUDGET: u64 = 2_000;

/// A gateway on a small budget with two clients: `ci` (the 20 jobs) and
/// `runaway`.
async fn runaway_round(fair_share: bool, round: usize) -> RunawayResult {
    let repos: Vec<String> = (0..REPOS).map(|i| format!("repo-{i}")).collect();
    let names: Vec<&str> = repos.iter().map(String::as_str).collect();
    let mut c = HubConfig::default()
        .org("acme", &names)
        .app(1, &key("app-a.pub.pem"), &[(11, "acme")])
        .token("ci", PAT);
    c.rate_limit.core = SMALL_BUDGET;
    let hub = FakeHub::start(c).await.unwrap();
    let paths = paths(&hub).await;
    hub.hub().limits.reset_stats();
    let extra = if fair_share {
        "" // the defaults: fair_share_below = 0.25, priority_share = 0.1
    } else {
        "fair_share_below = 0\npriority_share = 0\n"
    };
    let (server, ci) = gateway(&hub, &format!("gatehouse-bench-runaway-{round}"), extra);
    let runaway = server
        .cli_output(&["clients", "add", "runaway"])
        .trim()
        .to_string();
    let base = server.gateway.clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 4 connections of uncached reads, bounded in count and time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut loops = tokio::task::JoinSet::new();
    for c in 0..4 {
        let (base, token, done) = (base.clone(), runaway.clone(), done.clone());
        loops.spawn(async move {
            let http = reqwest::Client::new();
            let mut t = Tally::default();
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && n < 5_000
                && Instant::now() < deadline
            {
                let path = format!("/repos/acme/repo-{}/pulls/1?loop={c}-{n}", n % REPOS);
                try_get(&http, &base, &token, &path, &mut t).await;
                n += 1;
            }
            t
        });
    }
    // The jobs start when the runaway has spent half the budget, as a CI
    // pipeline would find it mid-incident.
    while hub
        .stats()
        .installations
        .get(&11)
        .map_or(0, |u| u.units_spent)
        < SMALL_BUDGET / 2
    {
        assert!(Instant::now() < deadline, "the runaway never spent half");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let jobs = replay(&base, &ci, &paths).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut loop_total = Tally::default();
    for t in loops.join_all().await {
        loop_total.add(t);
    }
    let m = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let s = hub.stats();
    let inst = s.installations.get(&11).cloned().unwrap_or_default();
    server.stop();
    RunawayResult {
        jobs_ok: jobs.jobs_ok,
        job_requests_ok: jobs.requests - jobs.failed,
        job_requests: jobs.requests,
        ci_units: series("gatehouse_gateway_rate_limit_units_spent_total{client=\"bench\"}"),
        runaway_units: series("gatehouse_gateway_rate_limit_units_spent_total{client=\"runaway\"}"),
        runaway_refused: series(
            "gatehouse_gateway_refusals_total{client=\"runaway\",rule=\"fair_share\"}",
        ) + series(
            "gatehouse_gateway_refusals_total{client=\"runaway\",rule=\"priority\"}",
        ),
        runaway_requests: loop_total.requests,
        github_refused: inst.rate_limited,
        left: SMALL_BUDGET.saturating_sub(inst.units_spent),
    }
}

#[derive(Debug, Clone, Copy)]
struct RunawayResult {
    jobs_ok: u64,
    job_requests_ok: u64,
    job_requests: u64,
    ci_units: u64,
    runaway_units: u64,
    runaway_refused: u64,
    runaway_requests: u64,
    github_refused: u64,
    left: u64,
}

/// Reads of one fresh path: no upstream request, so what differs between
/// the two servers is the spending checks.
async fn check_latency() -> (f64, f64) {
    let hub = hub(None).await;
    let fresh = "[[gateway.fresh]]\npath = \"^/repos/\"\nsecs = 3600\n";
    let (off, off_token) = gateway(
        &hub,
        "gatehouse-bench-checks-off",
        &format!("fair_share_below = 0\npriority_share = 0\n{fresh}"),
    );
    let (on, _) = gateway(&hub, "gatehouse-bench-checks-on", fresh);
    // A quota far from spent: the check runs and admits.
    let on_token = on
        .cli_output(&[
            "clients",
            "add",
            "quota",
            "--quota",
            "1000000/h",
            "--weight",
            "2",
        ])
        .trim()
        .to_string();
    let targets = [
        (off.gateway.clone().unwrap(), off_token),
        (on.gateway.clone().unwrap(), on_token),
    ];
    let http = reqwest::Client::new();
    let path = "/repos/acme/repo-0/pulls/1";
    for (base, token) in &targets {
        let mut t = Tally::default();
        get(&http, base, token, path, &mut t).await; // warm: token, cache, budget
    }
    // Alternating request by request, so drift on a shared machine falls
    // on both alike.
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..5_000 {
        for (i, (base, token)) in targets.iter().enumerate() {
            let mut t = Tally::default();
            let start = Instant::now();
            get(&http, base, token, path, &mut t).await;
            samples[i].push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for s in &mut samples {
        s.sort_by(f64::total_cmp);
    }
    println!(
        "  fresh hit, checks off: p50 {:.3}  p99 {:.3} ms; quota + fair share on: p50 {:.3}  p99 {:.3} ms",
        pct(&samples[0], 0.5),
        pct(&samples[0], 0.99),
        pct(&samples[1], 0.5),
        pct(&samples[1], 0.99)
    );
    off.stop();
    on.stop();
    (
        pct(&samples[1], 0.5) - pct(&samples[0], 0.5),
        pct(&samples[1], 0.99) - pct(&samples[0], 0.99),
    )
}

async fn runaway_bench() {
    println!(
        "runaway: the replay's 20 jobs (client bench) beside a runaway client on 4 connections, {SMALL_BUDGET} units:"
    );
    for (round, fair) in [false, true].into_iter().enumerate() {
        let r = runaway_round(fair, round).await;
        println!(
            "  fair share {}: jobs ok {}/{JOBS}, job requests ok {}/{}, ci spent {} units; runaway sent {}, spent {}, refused {}; GitHub refused {}; {} units left",
            if fair { "on " } else { "off" },
            r.jobs_ok,
            r.job_requests_ok,
            r.job_requests,
            r.ci_units,
            r.runaway_requests,
            r.runaway_units,
            r.runaway_refused,
            r.github_refused,
            r.left
        );
    }
    let (p50, p99) = check_latency().await;
    println!("  added by the checks: p50 {p50:.3}  p99 {p99:.3} ms (goal < 0.05)");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for a list
    }
    let phases = ["replay", "rotation", "latency", "throughput", "runaway"];
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| phases.contains(&a.as_str()))
        .collect();
    let run = |p: &str| asked.is_empty() || asked.iter().any(|a| a == p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if run("replay") {
            replay_bench().await;
        }
        if run("rotation") {
            rotation_bench().await;
        }
        if run("latency") {
            latency_bench().await;
        }
        if run("throughput") {
            throughput_bench().await;
        }
        if run("runaway") {
            runaway_bench().await;
        }
    });
}
