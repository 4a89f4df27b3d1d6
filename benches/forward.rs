//! Forwarding benchmark: the release `gatehouse` binary with one route to a
//! consumer in this process that answers 200 at once. Run:
//!
//!     cargo bench --bench forward [-- --phases drain,latency,idle --drain 100000 --orgs 500 --breaker off]
//!     cargo bench --bench forward -- --phases drain,drain-batch,prburst
//!
//! Phases, each on a fresh server and journal:
//!   drain:   the route is paused, `--drain` deliveries across `--orgs` orgs
//!            are journaled, the route is resumed; deliveries/s from the
//!            first to the last arrival at the consumer, and peak RSS.
//!   drain-batch: the same with `batch = { max = 50 }` on the route.
//!   prburst: a pull-request burst (per pull request a synchronize, then
//!            check runs and statuses of its head commit, pull requests
//!            interleaved) to a consumer that calls GitHub for what each
//!            request concerns; its requests and calls one delivery per
//!            request, with `batch`, and with `batch` + `coalesce`.
//!   latency: a steady 200 deliveries/s for 20 s; time from the POST to
//!            gatehouse until the consumer has the delivery, p50/p99/max.
//!   idle:    10,000 partitions known (one delivery each, all forwarded),
//!            then 60 s with nothing to do: CPU time used.
//!
//! Every loop is bounded by count and time.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, bodies, consumer, post_all, wait_for};

/// `--breaker off`: the route's circuit breaker off (its check costs a
/// store read per turn when on, the default).
static BREAKER_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The one route every phase forwards to; `extra` adds keys to it.
fn route(consumer: &str, extra: &str) -> String {
    let breaker = if *BREAKER_OFF.get().unwrap_or(&false) {
        "[routes.breaker]\nfailures = 0\n"
    } else {
        ""
    };
    format!("[[routes]]\nname = \"bench\"\nurl = {consumer:?}\n{extra}{breaker}")
}

async fn drain(dir: &Path, n: usize, orgs: usize, extra: &str) {
    let (url, c) = consumer().await;
    let server = Server::start(&dir.join("drain"), &route(&url, extra));
    server.cli(&["routes", "pause", "bench"]);
    let bodies = bodies(orgs);
    let t = Instant::now();
    post_all(std::slice::from_ref(&server.base), &bodies, n, "d").await;
    println!(
        "drain       journaled {n} deliveries across {orgs} orgs in {:.1} s (route paused)",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(c.count.load(Ordering::Relaxed), 0);
    server.cli(&["routes", "resume", "bench"]);
    wait_for(&c, n, Duration::from_secs(600)).await;
    let times: Vec<Instant> = c.arrivals.lock().unwrap().values().copied().collect();
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    let secs = (last - first).as_secs_f64();
    let how = if extra.is_empty() {
        "one per request"
    } else {
        "batch 50"
    };
    println!(
        "drain       [{how}] forwarded {n} in {secs:.1} s: {:.0} deliveries/s ({} requests, peak RSS {:.1} MB)",
        n as f64 / secs,
        c.count.load(Ordering::Relaxed),
        server.peak_rss_mb()
    );
    server.stop();
}

async fn latency(dir: &Path) {
    let (url, c) = consumer().await;
    let server = Server::start(&dir.join("latency"), &route(&url, ""));
    let rate = 200u32;
    let total = rate * 20;
    let lat =
        common::paced_latencies(std::slice::from_ref(&server.base), &c, rate, total, "l").await;
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "latency     {total} deliveries at {rate}/s: POST → consumer p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(0.5),
        pct(0.99),
        lat.last().unwrap()
    );
    server.stop();
}

async fn idle(dir: &Path) {
    let (url, c) = consumer().await;
    let server = Server::start(&dir.join("idle"), &route(&url, ""));
    let n = 10_000;
    post_all(std::slice::from_ref(&server.base), &bodies(n), n, "i").await;
    wait_for(&c, n, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.cpu_secs();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let used = server.cpu_secs() - before;
    println!(
        "idle        {n} partitions known, {:.0} s idle: {:.2} s CPU = {:.3}% of a core",
        t.elapsed().as_secs_f64(),
        used,
        used / t.elapsed().as_secs_f64() * 100.0
    );
    server.stop();
}

const BATCH_50: &str = "batch = { max = 50, wait = \"200ms\" }\n";
const COALESCE_50: &str = "batch = { max = 50, wait = \"200ms\" }\ncoalesce = \"pull_request\"\n";

/// Pull requests, their orgs, and per pull request how many check runs
/// and statuses follow its synchronize.
const PRS: usize = 60;
const PR_ORGS: usize = 3;
const CHECKS: usize = 6;
/// What one GitHub call costs the consumer.
const CALL: Duration = Duration::from_millis(10);

/// One burst delivery: (event, guid, body, signature).
type Event = (&'static str, String, bytes::Bytes, String);

/// The burst, pull requests interleaved: round by round, each pull
/// request's next event. Also which pull request each head commit is.
fn burst() -> (Vec<Event>, HashMap<String, (usize, usize)>) {
    let fixture = |path: &str| -> serde_json::Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/github/payloads")
            .join(path);
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (sync, check, status) = (
        fixture("pull_request/synchronize.payload.json"),
        fixture("check_run/completed.payload.json"),
        fixture("status/payload.json"),
    );
    let mut shas = HashMap::new();
    let per_pr: Vec<Vec<(&'static str, serde_json::Value)>> = (0..PRS)
        .map(|p| {
            let org = format!("org-{}", p % PR_ORGS);
            let sha = format!("{p:040x}");
            shas.insert(sha.clone(), (p % PR_ORGS, p));
            let place = |mut v: serde_json::Value| {
                v["repository"]["owner"]["login"] = org.clone().into();
                v["repository"]["full_name"] = format!("{org}/repo").into();
                v
            };
            let mut s = place(sync.clone());
            s["number"] = p.into();
            s["pull_request"]["number"] = p.into();
            s["pull_request"]["head"]["sha"] = sha.clone().into();
            let mut out = vec![("pull_request", s)];
            for i in 0..CHECKS {
                let mut c = place(check.clone());
                c["check_run"]["id"] = i.into();
                c["check_run"]["head_sha"] = sha.clone().into();
                c["check_run"]["pull_requests"] =
                    serde_json::json!([{ "number": p, "head": { "sha": sha } }]);
                out.push(("check_run", c));
                let mut st = place(status.clone());
                st["sha"] = sha.clone().into();
                st["id"] = i.into();
                out.push(("status", st));
            }
            out
        })
        .collect();
    let mut events = vec![];
    for round in 0..per_pr[0].len() {
        for (p, evs) in per_pr.iter().enumerate() {
            let (event, v) = &evs[round];
            let body = serde_json::to_vec(v).unwrap();
            let sig = common::sign(&body);
            events.push((*event, format!("pr{p}-{round}"), body.into(), sig));
        }
    }
    (events, shas)
}

/// What the burst consumer counted.
#[derive(Default)]
struct Calls {
    requests: usize,
    deliveries: usize,
    /// One call per pull request each request concerns (a delivery about
    /// none is one call of its own).
    per_pull_request: usize,
    last: Option<Instant>,
}

/// The pull request a delivery is about, as the consumer sees it.
fn pull_of(event: &serde_json::Value, shas: &HashMap<String, (usize, usize)>) -> Option<usize> {
    if let Some(n) = event.pointer("/pull_request/number") {
        return n.as_u64().map(|n| n as usize);
    }
    if let Some(n) = event.pointer("/check_run/pull_requests/0/number") {
        return n.as_u64().map(|n| n as usize);
    }
    event["sha"].as_str().and_then(|s| shas.get(s)).map(|p| p.1)
}

async fn pr_burst(dir: &Path, mode: &str, extra: &str) {
    let (events, shas) = burst();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (calls, shas) = (calls.clone(), Arc::new(shas));
            move |h: http::HeaderMap, body: bytes::Bytes| async move {
                let payloads: Vec<serde_json::Value> = if h.contains_key("x-gatehouse-batch") {
                    let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                    items.into_iter().map(|mut i| i["payload"].take()).collect()
                } else {
                    vec![serde_json::from_slice(&body).unwrap()]
                };
                let mut pulls = std::collections::HashSet::new();
                let mut loose = 0;
                for p in &payloads {
                    match pull_of(p, &shas) {
                        Some(n) => {
                            pulls.insert(n);
                        }
                        None => loose += 1,
                    }
                }
                let n = pulls.len() + loose;
                tokio::time::sleep(CALL * n as u32).await;
                let mut c = calls.lock().unwrap();
                c.requests += 1;
                c.deliveries += payloads.len();
                c.per_pull_request += n;
                c.last = Some(Instant::now());
                http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let consumer = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = Server::start(&dir.join("prburst"), &route(&url, extra));
    let client = reqwest::Client::new();
    let start = Instant::now();
    // In order, 8 at a time: a burst arriving about as GitHub sends one.
    for chunk in events.chunks(8) {
        let posts = chunk.iter().map(|(event, guid, body, sig)| {
            common::post_event(&client, &server.base, event, guid, body, sig)
        });
        for ok in futures_util::future::join_all(posts).await {
            assert!(ok);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while calls.lock().unwrap().deliveries < events.len() {
        assert!(Instant::now() < deadline, "burst not drained in 5 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = calls.lock().unwrap();
    println!(
        "prburst     [{mode}] {} deliveries ({PRS} pull requests, {PR_ORGS} orgs): {} requests (= calls at one per request), {} calls at one per pull request per request; drained in {:.1} s",
        events.len(),
        c.requests,
        c.per_pull_request,
        (c.last.unwrap() - start).as_secs_f64()
    );
    drop(c);
    server.stop();
    consumer.abort();
}

fn main() {
    let mut phases = vec!["drain".to_string(), "latency".into(), "idle".into()];
    let (mut n, mut orgs) = (100_000usize, 500usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--phases" => phases = args.next().unwrap().split(',').map(String::from).collect(),
            "--drain" => n = args.next().unwrap().parse().unwrap(),
            "--orgs" => orgs = args.next().unwrap().parse().unwrap(),
            "--breaker" => {
                let _ = BREAKER_OFF.set(args.next().as_deref() == Some("off"));
            }
            _ => {}
        }
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench-data/forward"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for p in &phases {
            match p.as_str() {
                "drain" => drain(&dir, n, orgs, "").await,
                "drain-batch" => drain(&dir, n, orgs, BATCH_50).await,
                "prburst" => {
                    for (mode, extra) in [
                        ("one per request", ""),
                        ("batch 50", BATCH_50),
                        ("batch 50 + coalesce", COALESCE_50),
                    ] {
                        pr_burst(&dir, mode, extra).await;
                    }
                }
                "latency" => latency(&dir).await,
                "idle" => idle(&dir).await,
                other => eprintln!("unknown phase {other}"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
