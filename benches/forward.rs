//! Forwarding benchmark: the release `gatehouse` binary with one route to a
//! consumer in this process that answers 200 at once. Run:
//!
//!     cargo bench --bench forward [-- --phases drain,latency,idle --drain 100000 --orgs 500 --breaker off]
//!
//! Phases, each on a fresh server and journal:
//!   drain:   the route is paused, `--drain` deliveries across `--orgs` orgs
//!            are journaled, the route is resumed; deliveries/s from the
//!            first to the last arrival at the consumer, and peak RSS.
//!   latency: a steady 200 deliveries/s for 20 s; time from the POST to
//!            gatehouse until the consumer has the delivery, p50/p99/max.
//!   idle:    10,000 partitions known (one delivery each, all forwarded),
//!            then 60 s with nothing to do: CPU time used.
//!
//! Every loop is bounded by count and time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Server, bodies, consumer, post_all, wait_for};

/// `--breaker off`: the route's circuit breaker off (its check costs a
/// store read per turn when on, the default).
static BREAKER_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The one route every phase forwards to.
fn route(consumer: &str) -> String {
    let breaker = if *BREAKER_OFF.get().unwrap_or(&false) {
        "[routes.breaker]\nfailures = 0\n"
    } else {
        ""
    };
    format!("[[routes]]\nname = \"bench\"\nurl = {consumer:?}\n{breaker}")
}

async fn drain(dir: &Path, n: usize, orgs: usize) {
    let (url, c) = consumer().await;
    let server = Server::start(&dir.join("drain"), &route(&url));
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
    println!(
        "drain       forwarded {n} in {secs:.1} s: {:.0} deliveries/s ({} requests, peak RSS {:.1} MB)",
        n as f64 / secs,
        c.count.load(Ordering::Relaxed),
        server.peak_rss_mb()
    );
    server.stop();
}

async fn latency(dir: &Path) {
    let (url, c) = consumer().await;
    let server = Server::start(&dir.join("latency"), &route(&url));
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
    let server = Server::start(&dir.join("idle"), &route(&url));
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
                "drain" => drain(&dir, n, orgs).await,
                "latency" => latency(&dir).await,
                "idle" => idle(&dir).await,
                other => eprintln!("unknown phase {other}"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
