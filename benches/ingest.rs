//! Ingest benchmark: starts the release `gatehouse` binary on a loopback
//! port with its journal on the real disk, drives it with signed real GitHub
//! payloads, and prints deliveries/s, ack latency (p50/p99/max) and the
//! server's peak RSS. Not a test: run it with
//!
//!     cargo bench --bench ingest [-- --seconds 20 --connections 64 --rate 1000]
//!
//! Phases, each on a fresh server and database so that peak RSS belongs to
//! that phase alone:
//!   0. disk: the raw rate of 4 KB write + fdatasync in the same directory,
//!      the cap one commit per delivery would put on durable acks;
//!   1. throughput: `--connections` closed-loop senders for `--seconds`;
//!   2. steady: an open-loop `--rate` deliveries/s for `--seconds`, latency
//!      measured from each request's scheduled time (no coordinated omission);
//!   3. large: one 25 MB push delivery;
//!   4. retention (not in the default list): the steady load while the
//!      retention task prunes 100,000 expired deliveries, then again after.
//!
//! Every loop is bounded by count and time and stops by itself.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, sign};

struct Args {
    seconds: u64,
    connections: usize,
    rate: u64,
    data_dir: PathBuf,
    phases: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 20,
        connections: 64,
        rate: 1000,
        data_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench-data")),
        phases: vec![
            "disk".into(),
            "throughput".into(),
            "steady".into(),
            "large".into(),
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().expect("seconds"),
            "--connections" => a.connections = value().parse().expect("connections"),
            "--rate" => a.rate = value().parse().expect("rate"),
            "--data-dir" => a.data_dir = PathBuf::from(value()),
            "--phases" => a.phases = value().split(',').map(String::from).collect(),
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    a
}

/// Every fixture payload, compacted and signed once up front so the load
/// generator spends its CPU on sending, not hashing.
fn payloads() -> Vec<(String, bytes::Bytes, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github/payloads");
    let mut out = Vec::new();
    for event in std::fs::read_dir(&dir).expect("fixtures at ../shared/fixtures/github") {
        let event = event.unwrap();
        for file in std::fs::read_dir(event.path()).unwrap() {
            let path = file.unwrap().path();
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let body = serde_json::to_vec(&v).unwrap();
            let sig = sign(&body);
            out.push((event.file_name().into_string().unwrap(), body.into(), sig));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    i: u64,
    (event, body, sig): &(String, bytes::Bytes, String),
) -> bool {
    client
        .post(format!("{base}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event.as_str())
        .header("x-github-delivery", format!("bench-{i}"))
        .header("x-github-hook-id", "1")
        .header("x-hub-signature-256", sig.as_str())
        .body(body.clone())
        .send()
        .await
        .map(|r| r.status() == 202)
        .unwrap_or(false)
}

struct Sample {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
    bytes: u64,
}

fn report(phase: &str, s: &mut Sample, rss: f64) {
    s.latencies.sort();
    let pct = |p: f64| {
        s.latencies
            .get(((s.latencies.len() as f64 * p) as usize).min(s.latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    let n = s.latencies.len();
    println!(
        "{phase:<11} acked {n:>7}  errors {:>4}  {:>8.0} deliveries/s  {:>6.1} MB/s  ack latency ms p50 {:>6.2}  p99 {:>6.2}  max {:>7.2}  peak RSS {:>6.1} MB",
        s.errors,
        n as f64 / s.elapsed.as_secs_f64(),
        s.bytes as f64 / s.elapsed.as_secs_f64() / 1e6,
        pct(0.50),
        pct(0.99),
        s.latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
        rss,
    );
}

/// Closed loop: each connection sends its next delivery when the last one
/// was acknowledged.
async fn throughput(args: &Args, payloads: Arc<Vec<(String, bytes::Bytes, String)>>) {
    let server = Server::start(&args.data_dir.join("throughput"), "");
    let client = client(args.connections);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, base, next, errors, bytes, payloads) = (
            client.clone(),
            server.base.clone(),
            next.clone(),
            errors.clone(),
            bytes.clone(),
            payloads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let p = &payloads[i as usize % payloads.len()];
                let t = Instant::now();
                if send(&client, &base, i, p).await {
                    lat.push(t.elapsed());
                    bytes.fetch_add(p.1.len() as u64, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let mut s = Sample {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        bytes: bytes.load(Ordering::Relaxed),
    };
    let rss = server.peak_rss_mb();
    print_batches(&server.base).await;
    report("throughput", &mut s, rss);
    server.stop();
}

/// Open loop: requests are scheduled at a fixed rate whatever the server
/// does; latency counts from the scheduled time.
/// Open loop: deliveries at `args.rate`/s for `args.seconds` against a
/// running server, latency measured from each one's scheduled time (no
/// coordinated omission). GUIDs start at `first`.
async fn open_loop(
    args: &Args,
    base: &str,
    payloads: Arc<Vec<(String, bytes::Bytes, String)>>,
    first: u64,
) -> Sample {
    let client = client(args.connections);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.connections));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let total = args.rate * args.seconds;
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = started + period * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, base, slots, latencies, errors, bytes, payloads) = (
            client.clone(),
            base.to_string(),
            slots.clone(),
            latencies.clone(),
            errors.clone(),
            bytes.clone(),
            payloads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let p = &payloads[i as usize % payloads.len()];
            if send(&client, &base, first + i, p).await {
                latencies.lock().unwrap().push(scheduled.elapsed());
                bytes.fetch_add(p.1.len() as u64, Ordering::Relaxed);
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Sample {
        latencies: std::mem::take(&mut *latencies.lock().unwrap()),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        bytes: bytes.load(Ordering::Relaxed),
    }
}

async fn steady(args: &Args, payloads: Arc<Vec<(String, bytes::Bytes, String)>>) {
    let server = Server::start(&args.data_dir.join("steady"), "");
    let mut s = open_loop(args, &server.base, payloads, 0).await;
    let rss = server.peak_rss_mb();
    print_batches(&server.base).await;
    report("steady", &mut s, rss);
    server.stop();
}

/// How many old deliveries the retention phase starts with.
const OLD_DELIVERIES: u64 = 100_000;

/// Open-loop ingest while retention prunes 100,000 expired deliveries
/// (real payloads, each with a done job and its attempt, received 40 days
/// ago: past the default 30), then the same once pruning is over.
async fn retention(args: &Args, payloads: Arc<Vec<(String, bytes::Bytes, String)>>) {
    let dir = args.data_dir.join("retention");
    Server::start(&dir, "").stop();
    let db = dir.join("gatehouse.db");
    let filled = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 40 * 86_400_000;
        let tx = conn.transaction().unwrap();
        for i in 0..OLD_DELIVERIES as i64 {
            let (event, body, _) = &payloads[i as usize % payloads.len()];
            let org = format!("org-{}", i % 20);
            tx.execute(
                "INSERT INTO deliveries (id, hook_id, guid, event, owner, partition_key,
                     received_at_ms, body_size, content_kind, parse_status)
                 VALUES (?1, '1', ?2, ?3, ?4, ?4, ?5, ?6, 'json', 'ok')",
                rusqlite::params![
                    i + 1,
                    format!("old-{i}"),
                    event,
                    org,
                    at + i,
                    body.len() as i64
                ],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO delivery_payloads (delivery_id, headers, body) VALUES (?1, x'', ?2)",
                rusqlite::params![i + 1, &body[..]],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO jobs (id, delivery_id, sink, partition_key, state, attempts, next_at_ms, updated_at_ms)
                 VALUES (?1, ?1, 'ci', ?2, 'done', 1, ?3, ?3)",
                rusqlite::params![i + 1, org, at + i],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO attempts (job_id, n, started_at_ms, duration_ms, status_code, outcome)
                 VALUES (?1, 1, ?2, 20, 200, 'done')",
                rusqlite::params![i + 1, at + i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    // The fill wrote without fsync: flush it now, or the kernel's
    // write-back of a gigabyte would stall the server's commits and be
    // measured as pruning.
    std::fs::File::open(&db).unwrap().sync_all().unwrap();
    unsafe { libc::sync() };
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "retention   {OLD_DELIVERIES} expired deliveries ({:.0} MB) made in {:.0} s",
        size as f64 / 1e6,
        filled.elapsed().as_secs_f64()
    );
    let old = || -> i64 {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE guid LIKE 'old-%'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(-1)
    };
    // Pruning starts with the server.
    let server = Server::start_in_place(&dir, "");
    let started = Instant::now();
    let mut during = open_loop(args, &server.base, payloads.clone(), 0).await;
    let left = old();
    report("  pruning", &mut during, server.peak_rss_mb());
    println!(
        "            {} of {OLD_DELIVERIES} expired deliveries still there at the end of the window{}",
        left,
        if left == 0 {
            " (pruning ended inside it)"
        } else {
            ""
        }
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    while old() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "            pruned all {OLD_DELIVERIES} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut after = open_loop(args, &server.base, payloads, 1_000_000).await;
    report("  after", &mut after, server.peak_rss_mb());
    let p99 = |s: &Sample| s.latencies[(s.latencies.len() * 99 / 100).min(s.latencies.len() - 1)];
    println!(
        "            p99 during pruning / after: {:.2}x",
        p99(&during).as_secs_f64() / p99(&after).as_secs_f64()
    );
    server.stop();
}

async fn large(args: &Args) {
    let server = Server::start(&args.data_dir.join("large"), "");
    let idle_rss = server.peak_rss_mb();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github/payloads/push/with-new-branch.payload.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let commit = serde_json::to_value(serde_json::json!({
        "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "message": "Update README.md with a longer message to make the commit a realistic size",
        "timestamp": "2019-05-15T15:20:30-05:00",
        "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", "username": "Codertocat"},
        "added": [], "removed": [], "modified": ["README.md"]
    }))
    .unwrap();
    let one = serde_json::to_vec(&commit).unwrap().len() + 1;
    let target = 25 * 1024 * 1024 - 4096;
    let count = (target - serde_json::to_vec(&v).unwrap().len()) / one;
    v["commits"] = serde_json::Value::Array(vec![commit; count]);
    let body: bytes::Bytes = serde_json::to_vec(&v).unwrap().into();
    let payload = ("push".to_string(), body.clone(), sign(&body));
    let client = client(1);
    let t = Instant::now();
    let ok = send(&client, &server.base, 1, &payload).await;
    let took = t.elapsed();
    let mut s = Sample {
        latencies: if ok { vec![took] } else { vec![] },
        errors: usize::from(!ok),
        elapsed: took,
        bytes: body.len() as u64,
    };
    let rss = server.peak_rss_mb();
    report("large", &mut s, rss);
    println!(
        "            body {:.1} MB, server peak RSS before {:.1} MB, after {:.1} MB",
        body.len() as f64 / 1048576.0,
        idle_rss,
        rss
    );
    server.stop();
}

/// Appends 4 KB and fdatasyncs, for 3 s: what one durable commit per
/// delivery would cost on this disk.
fn disk(args: &Args) {
    use std::io::Write;
    std::fs::create_dir_all(&args.data_dir).unwrap();
    let path = args.data_dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [7u8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(3) && n < 1_000_000 {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    println!(
        "disk        {rate:>8.0} fsyncs/s (4 KB append + fdatasync): the ceiling for one commit per delivery"
    );
}

async fn print_batches(base: &str) {
    let (commits, per_commit, mean_ms) = common::commit_stats(base).await;
    println!(
        "            {commits:.0} commits, {per_commit:.1} deliveries per commit on average, mean commit {mean_ms:.2} ms"
    );
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let payloads = Arc::new(payloads());
    println!(
        "gatehouse ingest benchmark: {} real payloads, {} s per phase, {} connections, steady rate {}/s, journal in {}",
        payloads.len(),
        args.seconds,
        args.connections,
        args.rate,
        args.data_dir.display()
    );
    runtime.block_on(async {
        for phase in &args.phases {
            match phase.as_str() {
                "disk" => disk(&args),
                "throughput" => throughput(&args, payloads.clone()).await,
                "steady" => steady(&args, payloads.clone()).await,
                "large" => large(&args).await,
                "retention" => retention(&args, payloads.clone()).await,
                other => eprintln!("unknown phase {other}"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&args.data_dir);
}
