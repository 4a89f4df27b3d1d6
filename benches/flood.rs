//! Memory under unauthenticated floods of large bodies, and after them.
//!
//!     cargo bench --bench flood [-- --uploads 40 --mb 25 --runs 3]
//!     GATEHOUSE_BIN=/path/to/other/gatehouse cargo bench --bench flood
//!
//! Two phases, each on a fresh release server with its defaults:
//!   1. h1: `--uploads` HTTP/1.1 connections each POST an unsigned body of
//!      `--mb` MB to /webhooks/github, all at once;
//!   2. h2: one HTTP/2 (h2c, prior knowledge) connection carrying the same
//!      uploads as concurrent streams.
//!
//! Each phase sends its burst twice (glibc raises its mmap threshold after
//! the first, so the second is where memory tends to stick), keeping the
//! client's connections open. Reported per phase: answers by status, the
//! server's peak RSS (VmHWM), and its RSS 3 s after each burst's last
//! answer (memory given back or kept).
//! Every load is bounded: `--uploads` requests, each with a 60 s timeout.

mod common;

use std::time::{Duration, Instant};

use common::Server;

struct Args {
    uploads: usize,
    mb: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        uploads: 40,
        mb: 25,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match flag.as_str() {
            "--uploads" => a.uploads = value().parse().expect("uploads"),
            "--mb" => a.mb = value().parse().expect("mb"),
            "--runs" => a.runs = value().parse().expect("runs"),
            _ => {}
        }
    }
    a
}

fn rss_mb(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

struct Outcome {
    statuses: std::collections::BTreeMap<String, usize>,
    idle_mb: f64,
    peak_mb: f64,
    /// 3 s after each burst.
    after_mb: Vec<f64>,
    took: Duration,
}

async fn phase(h2: bool, a: &Args) -> Outcome {
    let dir = std::env::temp_dir().join(format!("gatehouse-flood-{}", std::process::id()));
    let server = Server::start(&dir, "");
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_mb = rss_mb(pid, "VmRSS:");
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
    builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.pool_max_idle_per_host(a.uploads)
    };
    let client = builder.build().unwrap();
    let body = bytes::Bytes::from(vec![b'x'; a.mb * 1_000_000]);
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    let mut after_mb = Vec::new();
    for burst in 0..2 {
        let mut tasks = Vec::new();
        for i in 0..a.uploads {
            let (client, body, url) = (
                client.clone(),
                body.clone(),
                format!("{}/webhooks/github", server.base),
            );
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("flood-{burst}-{i}"))
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(e) if e.is_timeout() => "timeout".to_string(),
                    Err(_) => "closed".to_string(),
                }
            }));
        }
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        after_mb.push(rss_mb(pid, "VmRSS:"));
    }
    let took = started.elapsed();
    let out = Outcome {
        statuses,
        idle_mb,
        peak_mb: rss_mb(pid, "VmHWM:"),
        after_mb,
        took,
    };
    drop(client);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a = args();
    println!(
        "gatehouse flood benchmark: {} unsigned uploads of {} MB at once, {} runs, binary {}",
        a.uploads,
        a.mb,
        a.runs,
        common::bin()
    );
    for h2 in [false, true] {
        let name = if h2 {
            "h2c, one connection"
        } else {
            "HTTP/1.1"
        };
        let mut peaks = Vec::new();
        let mut afters = Vec::new();
        for run in 0..a.runs {
            let o = phase(h2, &a).await;
            println!(
                "  {name} run {}: answers {:?} in {:.1} s; RSS idle {:.1} MB, peak {:.1} MB, 3 s after each burst {:.1} / {:.1} MB",
                run + 1,
                o.statuses,
                o.took.as_secs_f64(),
                o.idle_mb,
                o.peak_mb,
                o.after_mb[0],
                o.after_mb[1]
            );
            peaks.push(o.peak_mb);
            afters.push(o.after_mb[1]);
        }
        println!(
            "{name}: median peak RSS {:.1} MB, median RSS 3 s after the second burst {:.1} MB",
            median(peaks),
            median(afters)
        );
    }
}
