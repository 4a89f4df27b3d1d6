//! What operations cost the webhooks (parts 17 and 18).
//!
//!     cargo bench --bench operations [-- --rate 200 --seconds 6 --runs 3 --seen 700000]
//!     GATEHOUSE_BIN=/path/to/other/gatehouse cargo bench --bench operations
//!
//! 1. restart: deliveries in an open loop at `--rate`/s for `--seconds`,
//!    each on a connection of its own (as GitHub sends them); halfway, the
//!    server gets SIGTERM and a new one starts. Twice side by side: binding
//!    its own listener (as before part 18), and on a listener held across
//!    the restart as systemd holds gatehouse.socket. Reported: deliveries
//!    acknowledged, failed (refused or reset), and ack latency.
//! 2. reload: the same loop with `gatehouse reload` (a route changed)
//!    halfway: how long the reload takes, failures, ack latency.
//! 3. scrape: `/metrics` time with completeness computed over a GHES
//!    week of `--seen` deliveries a walk read (100,000 a day), median of
//!    20 scrapes, beside the same server with recovery's tables empty.
//!
//! Every load is bounded by `--rate` × `--seconds` requests with a 30 s
//! timeout each.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, bodies, post_push, write_config};

struct Args {
    rate: u32,
    seconds: u32,
    runs: usize,
    seen: usize,
}

fn args() -> Args {
    let mut a = Args {
        rate: 200,
        seconds: 6,
        runs: 3,
        seen: 700_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match flag.as_str() {
            "--rate" => a.rate = value().parse().expect("rate"),
            "--seconds" => a.seconds = value().parse().expect("seconds"),
            "--runs" => a.runs = value().parse().expect("runs"),
            "--seen" => a.seen = value().parse().expect("seen"),
            _ => {}
        }
    }
    a
}

/// gatehouse on `config`; with `fd`, on that listener as descriptor 3 (as
/// systemd passes gatehouse.socket's).
fn spawn(config: &Path, fd: Option<i32>) -> Child {
    let mut cmd = match fd {
        Some(_) => {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=webhooks exec \"$0\" \"$@\"",
                &bin(),
            ]);
            c
        }
        None => Command::new(bin()),
    };
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(fd) = fd {
        // SAFETY: dup2(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn().expect("start gatehouse")
}

async fn ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "gatehouse did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

struct Load {
    acked: usize,
    failed: usize,
    /// Ack latency in ms, sorted.
    latency: Vec<f64>,
}

/// The open loop; `midway` starts halfway on a thread of its own (a
/// restart, a reload), so the loop keeps its pace meanwhile, and is
/// joined at the end.
async fn load(base: &str, a: &Args, midway: impl FnOnce() + Send + 'static) -> Load {
    let bodies = Arc::new(bodies(50));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let total = a.rate * a.seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut midway = Some(midway);
    let mut side = None;
    for i in 0..total {
        tokio::time::sleep_until(
            (started + Duration::from_secs_f64(i as f64 / a.rate as f64)).into(),
        )
        .await;
        if i == total / 2
            && let Some(m) = midway.take()
        {
            side = Some(std::thread::spawn(m));
        }
        let (client, base, bodies) = (client.clone(), base.to_string(), bodies.clone());
        let scheduled = started + Duration::from_secs_f64(i as f64 / a.rate as f64);
        tasks.push(tokio::spawn(async move {
            let (body, sig) = &bodies[i as usize % bodies.len()];
            let ok = post_push(&client, &base, &format!("op-{i}"), body, sig).await;
            (ok, scheduled.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut out = Load {
        acked: 0,
        failed: 0,
        latency: Vec::new(),
    };
    for t in tasks {
        let (ok, ms) = t.await.unwrap();
        if ok {
            out.acked += 1;
            out.latency.push(ms);
        } else {
            out.failed += 1;
        }
    }
    out.latency.sort_by(|a, b| a.total_cmp(b));
    if let Some(t) = side {
        t.join().unwrap();
    }
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn say(what: &str, l: &Load) {
    println!(
        "{what:<34} acked {:>5}  failed {:>4}  ack p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        l.acked,
        l.failed,
        pct(&l.latency, 0.5),
        pct(&l.latency, 0.99),
        pct(&l.latency, 1.0)
    );
}

async fn restart(a: &Args, held: bool, run: usize) -> Load {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-ops-{}-{held}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let base = format!("http://{addr}");
    let config = write_config(&dir, &addr.to_string(), "", "");
    let fd = held.then(|| socket.as_raw_fd());
    if !held {
        drop(socket);
    }
    let mut first = spawn(&config, fd);
    ready(&base).await;
    let second: Arc<std::sync::Mutex<Option<Child>>> = Arc::default();
    let (next, cfg) = (second.clone(), config.clone());
    let l = load(&base, a, move || {
        stop(&mut first);
        *next.lock().unwrap() = Some(spawn(&cfg, fd));
    })
    .await;
    if let Some(mut s) = second.lock().unwrap().take() {
        stop(&mut s);
    }
    let _ = std::fs::remove_dir_all(&dir);
    l
}

async fn reload(a: &Args, run: usize) -> (Load, Duration) {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-ops-reload-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let route = |url: &str| format!("[[routes]]\nname = \"ci\"\nurl = {url:?}\n");
    let config = write_config(&dir, "127.0.0.1:18931", "", &route("http://127.0.0.1:9/a"));
    let mut child = spawn(&config, None);
    let base = "http://127.0.0.1:18931".to_string();
    ready(&base).await;
    // The server reports itself (for `gatehouse reload` to find it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took: Arc<std::sync::Mutex<Duration>> = Arc::default();
    let (spent, d, cfg) = (took.clone(), dir.clone(), config.clone());
    let l = load(&base, a, move || {
        write_config(&d, "127.0.0.1:18931", "", &route("http://127.0.0.1:9/b"));
        let t = Instant::now();
        let out = Command::new(bin())
            .args(["reload", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        *spent.lock().unwrap() = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    })
    .await;
    let took = *took.lock().unwrap();
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    (l, took)
}

/// Median /metrics time (ms) over 20 scrapes, with `seen` rows a walk read
/// over the last 7 days (and a thousandth of them found missing).
async fn scrape(seen: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-ops-scrape-{}-{seen}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"));
    // An App whose API answers nothing: recovery runs (and is counted) but
    // walks nothing new.
    let extra = format!(
        "[recovery]\ninterval_secs = 86400\n[github]\napi_url = \"http://127.0.0.1:9\"\ntimeout_secs = 1\n[[github.apps]]\nid = 1\nprivate_key_file = {keys:?}\n"
    );
    let config = write_config(&dir, "127.0.0.1:18932", "", &extra);
    // The schema first (a server start), then the rows, then the server.
    let out = Command::new(bin())
        .args(["migrate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    {
        let conn = rusqlite::Connection::open(dir.join("gatehouse.db")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut seen_st = tx
                .prepare("INSERT INTO recovery_seen (source, guid, delivered_at_ms) VALUES ('app:1', ?1, ?2)")
                .unwrap();
            let mut found = tx
                .prepare("INSERT INTO recovery_requests (source, guid, delivery_id, requested_at_ms, outcome, delivered_at_ms) VALUES ('app:1', ?1, ?2, 0, 'found', ?3)")
                .unwrap();
            for i in 0..seen {
                let at = now - (i as i64 * 7 * 86_400_000 / seen.max(1) as i64);
                seen_st
                    .execute(rusqlite::params![format!("g-{i}"), at])
                    .unwrap();
                if i % 1000 == 0 {
                    found
                        .execute(rusqlite::params![format!("g-{i}"), i as i64, at])
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    let mut child = spawn(&config, None);
    let base = "http://127.0.0.1:18932";
    ready(base).await;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..20 {
        let (ms, text) = common::timed_scrape(&client, base).await;
        times.push(ms);
        assert!(text.contains("gatehouse_recovery_completeness_ratio"));
    }
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    times.sort_by(|a, b| a.total_cmp(b));
    pct(&times, 0.5)
}

#[tokio::main]
async fn main() {
    let a = args();
    println!(
        "gatehouse operations: {} deliveries/s for {} s, {} runs ({})",
        a.rate,
        a.seconds,
        a.runs,
        bin()
    );
    for run in 0..a.runs {
        println!("run {}", run + 1);
        say("restart, own listener", &restart(&a, false, run).await);
        say(
            "restart, socket held (systemd)",
            &restart(&a, true, run).await,
        );
        let (l, took) = reload(&a, run).await;
        say(&format!("reload ({} ms)", took.as_millis()), &l);
    }
    for run in 0..a.runs {
        println!(
            "run {}: /metrics median {:.1} ms with {} seen rows, {:.1} ms with none",
            run + 1,
            scrape(a.seen).await,
            a.seen,
            scrape(0).await
        );
    }
}
