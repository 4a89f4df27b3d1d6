//! SQLite on one node against PostgreSQL with one, two and three replicas,
//! side by side in one run, every server the release binary on loopback,
//! PostgreSQL a throwaway cluster from the machine's packages on the same
//! disk. Run:
//!
//!     cargo bench --bench replicas [-- --seconds 10 --rate 1000 --drain 20000 --setups sqlite,pg1,pg2,pg3]
//!
//! For each setup, on a fresh journal (a new database for PostgreSQL):
//!   throughput: with no route (ingest alone, as in the ingest benchmark),
//!               64 closed-loop senders for `--seconds`, each keeping to
//!               one replica (connection i to replica i % n, as a load
//!               balancer would spread them): acks/s, ack p50/p99, and for
//!               PostgreSQL the commits per acknowledged delivery (every
//!               transaction of the database: ingest, scheduler, probes);
//!   steady:     an open loop at `--rate`/s, latency from each request's
//!               scheduled time: p50/p99 and errors;
//!   drain:      one route paused, `--drain` deliveries across 100 orgs
//!               journaled, the route resumed: deliveries/s from the first
//!               to the last arrival at a consumer answering 200 at once;
//!   e2e:        200 deliveries/s for 10 s: POST to arrival, p50/p99.
//!
//! All replicas and PostgreSQL share this machine's cores, so more
//! replicas do not mean more CPU: the numbers show what the shared
//! database costs, not how replicas scale on separate VMs.
//! Every loop is bounded by count and time and stops by itself.

mod common;

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, bodies, consumer, post_all, post_push, wait_for};

/// For the PostgreSQL helper shared with the tests.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Args {
    seconds: u64,
    rate: u64,
    drain: usize,
    setups: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        rate: 1000,
        drain: 20_000,
        setups: ["sqlite", "pg1", "pg2", "pg3"].map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().unwrap(),
            "--rate" => a.rate = value().parse().unwrap(),
            "--drain" => a.drain = value().parse().unwrap(),
            "--setups" => a.setups = value().split(',').map(String::from).collect(),
            _ => {}
        }
    }
    a
}

/// One setup's servers.
struct Setup {
    servers: Vec<Server>,
    /// For PostgreSQL, a URL to read its statistics.
    url: Option<String>,
}

impl Setup {
    async fn start(name: &str, dir: &Path, cluster: &pg::Cluster, db: &str, extra: &str) -> Setup {
        let _ = std::fs::remove_dir_all(dir);
        match name.strip_prefix("pg") {
            None => Setup {
                servers: vec![Server::start(dir, extra)],
                url: None,
            },
            Some(n) => {
                let url = cluster.database(db).await;
                let n: usize = n.parse().expect("pg1, pg2 or pg3");
                let servers = (0..n)
                    .map(|i| {
                        Server::start_with_storage(
                            &dir.join(format!("r{i}")),
                            &format!("url = {url:?}"),
                            extra,
                        )
                    })
                    .collect();
                Setup {
                    servers,
                    url: Some(url),
                }
            }
        }
    }

    fn bases(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.base.clone()).collect()
    }

    /// Transactions committed in the database so far.
    async fn commits(&self) -> Option<i64> {
        let url = self.url.as_ref()?;
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // Statistics are flushed by each backend now and then; ask for it.
        let _ = client
            .execute("SELECT pg_stat_force_next_flush()", &[])
            .await;
        let row = client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        Some(row.get(0))
    }

    fn stop(self) {
        for s in self.servers {
            s.stop();
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Closed loop from 64 senders: (acks/s, p50 ms, p99 ms, acked).
async fn throughput(bases: &[String], seconds: u64) -> (f64, f64, f64, u64) {
    let bodies = Arc::new(bodies(100));
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..64 {
        let (client, base, next, bodies) = (
            client.clone(),
            bases[c % bases.len()].clone(),
            next.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (body, sig) = &bodies[i as usize % bodies.len()];
                let t = Instant::now();
                if post_push(&client, &base, &format!("t-{i}"), body, sig).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    (
        lat.len() as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len() as u64,
    )
}

/// Open loop at `rate`/s: (p50 ms, p99 ms, errors).
async fn steady(bases: &[String], rate: u64, seconds: u64) -> (f64, f64, usize) {
    let bodies = Arc::new(bodies(100));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(at.into()).await;
        let (client, base, bodies, errors) = (
            client.clone(),
            bases[i as usize % bases.len()].clone(),
            bodies.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (body, sig) = &bodies[i as usize % bodies.len()];
            let ok = post_push(&client, &base, &format!("s-{i}"), body, sig).await;
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            at.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.unwrap());
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        errors.load(Ordering::Relaxed),
    )
}

/// A paused route's backlog of `n` across 100 orgs, resumed: deliveries/s.
async fn drain(setup: &Setup, c: &common::Consumer, n: usize) -> f64 {
    setup.servers[0].cli(&["routes", "pause", "bench"]);
    post_all(&setup.bases(), &bodies(100), n, "d").await;
    setup.servers[0].cli(&["routes", "resume", "bench"]);
    wait_for(c, n, Duration::from_secs(600)).await;
    let times: Vec<Instant> = c.arrivals.lock().unwrap().values().copied().collect();
    let secs = (*times.iter().max().unwrap() - *times.iter().min().unwrap()).as_secs_f64();
    n as f64 / secs
}

/// 200/s for 10 s, POST to arrival: (p50 ms, p99 ms).
async fn e2e(bases: &[String], c: &common::Consumer) -> (f64, f64) {
    let lat = common::paced_latencies(bases, c, 200, 2000, "e").await;
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn main() {
    let a = args();
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench-data/replicas"));
    std::fs::create_dir_all(&dir).unwrap();
    // The cluster's data on the same disk as the SQLite journals.
    // SAFETY: set before any thread that reads the environment starts.
    unsafe { std::env::set_var("TMPDIR", &dir) };
    let cluster = pg::Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!(
            "{:<7} {:>9} {:>8} {:>8} {:>12} {:>10} | {:>9} {:>8} {:>8} {:>6} | {:>9} | {:>9} {:>8}",
            "setup", "acks/s", "p50 ms", "p99 ms", "commits/ack", "batch, ms", "rate", "p50 ms", "p99 ms", "errors", "drain/s", "e2e p50", "e2e p99"
        );
        for (k, name) in a.setups.iter().enumerate() {
            let (url, c) = consumer().await;
            let route = format!("[[routes]]\nname = \"bench\"\nurl = {url:?}\n");
            // Ingest alone (no route, as in the ingest benchmark).
            let setup = Setup::start(name, &dir.join(name), &cluster, &format!("ingest{k}"), "").await;
            let before = setup.commits().await;
            let (acks, p50, p99, acked) = throughput(&setup.bases(), a.seconds).await;
            let (_, per_commit, commit_ms) = common::commit_stats(&setup.servers[0].base).await;
            let commits = match (before, setup.commits().await) {
                (Some(b), Some(after)) => format!("{:.3}", (after - b) as f64 / acked as f64),
                _ => "-".into(),
            };
            let (s50, s99, errors) = steady(&setup.bases(), a.rate, a.seconds).await;
            setup.stop();
            // Forwarding, on a fresh journal.
            let setup = Setup::start(name, &dir.join(name), &cluster, &format!("forward{k}"), &route).await;
            let drained = drain(&setup, &c, a.drain).await;
            let (e50, e99) = e2e(&setup.bases(), &c).await;
            setup.stop();
            println!(
                "{name:<7} {acks:>9.0} {p50:>8.2} {p99:>8.2} {commits:>12} {:>10} | {:>9} {s50:>8.2} {s99:>8.2} {errors:>6} | {drained:>9.0} | {e50:>9.2} {e99:>8.2}",
                format!("{per_commit:.0}, {commit_ms:.1}"),
                format!("{}/s", a.rate)
            );
        }
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
