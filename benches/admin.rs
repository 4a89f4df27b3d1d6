//! Admin UI benchmark: every page of the release binary against a journal
//! of a million deliveries. Run:
//!
//!     cargo bench --bench admin [-- --deliveries 1000000 --days 30 --rounds 20
//!                                   --keep /tmp/gatehouse-admin-bench]
//!
//! The journal is made by `gatehouse serve` (migrations), then filled
//! through SQL in large transactions (the same tables and triggers ingest
//! and the scheduler write; the volume roll-ups, which the writer keeps per
//! batch in service, are summed afterwards): `--deliveries` spread evenly over `--days`
//! across 40 organisations (Zipf-weighted, 10 repositories each) and 10
//! event types with actions; a `ci` job for each and an `audit` job for
//! push and pull_request; one attempt per finished job (three for each of
//! the 2,000 dead letters), latencies spread over 5 ms–2 s; the newest 500
//! pending; and 30,000 completed Actions runs with 120,000 jobs. Bodies are
//! small synthetic payloads (pages never read bodies but one). Both routes
//! are paused so nothing changes while pages are timed. With `--keep`, the
//! journal is kept and reused by the next run.
//!
//! Each page is fetched 3 times to warm up, then `--rounds` times in
//! turn; reported: median, p95 and max milliseconds, and the page size.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Server;
use rusqlite::params;

struct Args {
    deliveries: usize,
    days: i64,
    rounds: usize,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        deliveries: 1_000_000,
        days: 30,
        rounds: 20,
        keep: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--deliveries" => a.deliveries = v.parse().unwrap(),
            "--days" => a.days = v.parse().unwrap(),
            "--rounds" => a.rounds = v.parse().unwrap(),
            "--keep" => a.keep = Some(PathBuf::from(v)),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// xorshift64*: repeatable data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ORGS: usize = 40;
const EVENTS: &[(&str, &[&str], u64)] = &[
    ("push", &[], 30),
    ("pull_request", &["opened", "synchronize", "closed"], 20),
    ("issue_comment", &["created"], 10),
    ("check_run", &["created", "completed"], 10),
    ("workflow_job", &["queued", "in_progress", "completed"], 9),
    ("issues", &["opened", "closed", "labeled"], 8),
    ("workflow_run", &["requested", "completed"], 6),
    ("check_suite", &["completed"], 5),
    ("status", &[], 2),
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Fills the journal at `db`; returns (a mid-journal delivery id, its GUID).
fn fill(db: &std::path::Path, n: usize, days: i64) -> (i64, String) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let started = Instant::now();
    // Zipf-ish weights: org k gets 1/(k+1) of the traffic.
    let weights: Vec<f64> = (0..ORGS).map(|k| 1.0 / (k as f64 + 1.0)).collect();
    let total_w: f64 = weights.iter().sum();
    let total_e: u64 = EVENTS.iter().map(|e| e.2).sum();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let end = now_ms();
    let span = days * 86_400_000;
    let first = end - span;
    const CHUNK: usize = 50_000;
    let mut mid = (0, String::new());
    for chunk in 0..n.div_ceil(CHUNK) {
        let tx = conn.transaction().unwrap();
        {
            let mut ins_d = tx
                .prepare(
                    "INSERT INTO deliveries (id, hook_id, guid, event, action, repository, owner,
                         partition_key, received_at_ms, body_size, content_kind, parse_status)
                     VALUES (?1, '1000', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, 'json', 'ok')",
                )
                .unwrap();
            let mut ins_p = tx
                .prepare("INSERT INTO delivery_payloads (delivery_id, headers, body) VALUES (?1, ?2, ?3)")
                .unwrap();
            let mut ins_j = tx
                .prepare(
                    "INSERT INTO jobs (delivery_id, sink, partition_key, state, attempts, next_at_ms, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )
                .unwrap();
            let mut ins_a = tx
                .prepare(
                    "INSERT INTO attempts (job_id, n, started_at_ms, duration_ms, status_code, outcome, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap();
            for i in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
                let id = i as i64 + 1;
                let at = first + (i as i64 * span) / n as i64;
                let mut pick = rng.next() as f64 / u64::MAX as f64 * total_w;
                let mut org = 0;
                while org + 1 < ORGS && pick > weights[org] {
                    pick -= weights[org];
                    org += 1;
                }
                let owner = format!("org-{org:02}");
                let repo = format!("{owner}/repo-{}", rng.below(10));
                let mut e = rng.below(total_e);
                let (event, actions, _) = EVENTS
                    .iter()
                    .find(|(_, _, w)| {
                        if e < *w {
                            true
                        } else {
                            e -= w;
                            false
                        }
                    })
                    .unwrap();
                // One delivery in 100,000 is a rare event type.
                let event = if i % 100_000 == 50_000 { "meta" } else { event };
                let action = (!actions.is_empty())
                    .then(|| actions[rng.below(actions.len() as u64) as usize]);
                let guid = format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    rng.next() as u32,
                    i % 65536,
                    i % 4096,
                    org,
                    id
                );
                if i == n / 2 {
                    mid = (id, guid.clone());
                }
                let body = format!(
                    r#"{{"action":{},"repository":{{"full_name":"{repo}","owner":{{"login":"{owner}"}}}},"sender":{{"login":"bot"}},"n":{i}}}"#,
                    action.map_or("null".into(), |a| format!("\"{a}\""))
                );
                let headers = format!(
                    "User-Agent: GitHub-Hookshot/abc\r\nX-GitHub-Event: {event}\r\nX-GitHub-Delivery: {guid}\r\nX-GitHub-Hook-ID: 1000\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=0000\r\n"
                );
                ins_d
                    .execute(params![
                        id,
                        guid,
                        event,
                        action,
                        repo,
                        owner,
                        at,
                        body.len() as i64
                    ])
                    .unwrap();
                ins_p
                    .execute(params![id, headers.as_bytes(), body.as_bytes()])
                    .unwrap();
                let mut sinks = vec!["ci"];
                if event == "push" || event == "pull_request" {
                    sinks.push("audit");
                }
                for sink in sinks {
                    let pending = i + 500 >= n;
                    let dead = sink == "ci" && i % 500 == 7 && !pending;
                    let state = if pending {
                        "pending"
                    } else if dead {
                        "dead"
                    } else {
                        "done"
                    };
                    let tries = if pending {
                        0
                    } else if dead {
                        3
                    } else {
                        1
                    };
                    ins_j
                        .execute(params![id, sink, owner, state, tries, at])
                        .unwrap();
                    let job = tx.last_insert_rowid();
                    for t in 0..tries {
                        // 5 ms to 2 s, most of them short.
                        let ms = 5 + (rng.below(1000) * rng.below(1000)) as i64 / 500;
                        let (code, outcome, err) = if dead {
                            (500, "failed", Some("HTTP 500"))
                        } else {
                            (200, "done", None)
                        };
                        ins_a
                            .execute(params![
                                job,
                                t + 1,
                                at + 10 + t * 1000,
                                ms,
                                code,
                                outcome,
                                err
                            ])
                            .unwrap();
                    }
                }
            }
        }
        tx.commit().unwrap();
        eprint!("\r  {} of {n} deliveries", ((chunk + 1) * CHUNK).min(n));
    }
    eprintln!();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "INSERT OR IGNORE INTO partitions (sink, partition_key)
             SELECT DISTINCT sink, partition_key FROM jobs;
         INSERT OR IGNORE INTO route_holds (sink) VALUES ('ci'), ('audit');
         -- The writer keeps these per batch in service; summed here as
         -- migration 0007 does for an existing journal.
         DELETE FROM volume_minutes; DELETE FROM volume_hours; DELETE FROM volume_days;
         INSERT INTO volume_minutes (minute, n)
             SELECT received_at_ms / 60000, count(*) FROM deliveries GROUP BY 1;
         INSERT INTO volume_hours (hour, n)
             SELECT received_at_ms / 3600000, count(*) FROM deliveries GROUP BY 1;
         INSERT INTO volume_days (day, owner, event, n)
             SELECT received_at_ms / 86400000, COALESCE(owner, ''), event, count(*)
             FROM deliveries GROUP BY 1, 2, 3;",
    )
    .unwrap();
    // Actions: 1,000 completed runs a day with 4 jobs each.
    {
        let runs = 30_000i64;
        let mut ins_r = tx
            .prepare(
                "INSERT INTO actions_runs (run_id, run_attempt, rank, version, status, conclusion,
                     owner, organization, repository, workflow_name, head_branch, event,
                     created_at_ms, run_started_at_ms, completed_at_ms)
                 VALUES (?1, 1, 4, 0, 'completed', ?2, ?3, ?3, ?4, ?5, 'main', 'push', ?6, ?6, ?7)",
            )
            .unwrap();
        let mut ins_j = tx
            .prepare(
                "INSERT INTO actions_jobs (job_id, run_id, run_attempt, rank, version, status,
                     conclusion, owner, organization, repository, workflow_name, head_branch,
                     job_name, labels, created_at_ms, started_at_ms, completed_at_ms)
                 VALUES (?1, ?2, 1, 4, 0, 'completed', ?3, ?4, ?4, ?5, ?6, 'main', ?7,
                         '[\"ubuntu-latest\"]', ?8, ?9, ?10)",
            )
            .unwrap();
        for r in 0..runs {
            let org = format!("org-{:02}", r % 12);
            let repo = format!("{org}/repo-{}", r % 3);
            let wf = ["ci", "release"][(r % 2) as usize];
            let start = end - 30 * 86_400_000 + r * (30 * 86_400_000 / runs);
            let ok = if rng.below(10) == 0 {
                "failure"
            } else {
                "success"
            };
            let dur = 60_000 + rng.below(600_000) as i64;
            ins_r
                .execute(params![r, ok, org, repo, wf, start, start + dur])
                .unwrap();
            for j in 0..4 {
                let queued = rng.below(120_000) as i64;
                ins_j
                    .execute(params![
                        r * 4 + j,
                        r,
                        ok,
                        org,
                        repo,
                        wf,
                        format!("job-{j}"),
                        start,
                        start + queued,
                        start + queued + dur / 2
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    eprintln!("  filled in {:.0} s", started.elapsed().as_secs_f64());
    mid
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = a.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gatehouse-admin-bench-{}", std::process::id()))
    });
    let db = dir.join("gatehouse.db");
    let password = "admin bench password";
    let hash = gatehouse::admin::password::hash(password);
    let config = format!(
        "[[routes]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/\"\n[[routes]]\nname = \"audit\"\nurl = \"http://127.0.0.1:9/\"\nevents = [\"push\", \"pull_request\"]\n[admin]\npassword_hash = {hash:?}\n"
    );
    let meta = dir.join("bench-mid.txt");
    let mid = match std::fs::read_to_string(&meta) {
        Ok(s) if a.keep.is_some() && db.exists() => {
            let (id, guid) = s.trim().split_once(' ').unwrap();
            eprintln!("reusing the journal in {}", dir.display());
            (id.parse::<i64>().unwrap(), guid.to_string())
        }
        _ => {
            eprintln!(
                "making a journal of {} deliveries in {}",
                a.deliveries,
                dir.display()
            );
            Server::start(&dir, &config).stop();
            let mid = fill(&db, a.deliveries, a.days);
            std::fs::write(&meta, format!("{} {}", mid.0, mid.1)).unwrap();
            mid
        }
    };
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let server = Server::start_in_place(&dir, &config);
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Log in as a browser would.
    let form = client
        .get(format!("{base}/admin/login"))
        .send()
        .await
        .unwrap();
    let login_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = form.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("password", password)
        .finish();
    let resp = client
        .post(format!("{base}/admin/login"))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "login");
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let (mid_id, mid_guid) = mid;
    let pages: Vec<(String, String)> = vec![
        ("overview".into(), "/admin/".into()),
        ("deliveries, newest".into(), "/admin/deliveries".into()),
        (
            "deliveries, mid-journal page".into(),
            format!("/admin/deliveries?before={mid_id}"),
        ),
        (
            "filter event=push".into(),
            "/admin/deliveries?event=push".into(),
        ),
        (
            "filter rare event".into(),
            "/admin/deliveries?event=meta".into(),
        ),
        (
            "filter event+action".into(),
            "/admin/deliveries?event=pull_request&action=closed".into(),
        ),
        (
            "filter repository".into(),
            "/admin/deliveries?repository=org-07%2Frepo-3".into(),
        ),
        (
            "filter small partition".into(),
            "/admin/deliveries?partition=org-39".into(),
        ),
        (
            "filter state=dead".into(),
            "/admin/deliveries?state=dead".into(),
        ),
        (
            "filter state=pending".into(),
            "/admin/deliveries?state=pending".into(),
        ),
        (
            "filter route+state=done".into(),
            "/admin/deliveries?route=audit&state=done".into(),
        ),
        (
            "filter partition+dead".into(),
            "/admin/deliveries?partition=org-39&state=dead".into(),
        ),
        (
            "filter since=1h".into(),
            "/admin/deliveries?since=1h".into(),
        ),
        (
            "filter one day, 20 days ago".into(),
            "/admin/deliveries?since=20d&until=19d".into(),
        ),
        (
            "filter until=25d".into(),
            "/admin/deliveries?until=25d".into(),
        ),
        (
            "search GUID".into(),
            format!("/admin/deliveries?guid={mid_guid}"),
        ),
        ("delivery".into(), format!("/admin/deliveries/{mid_id}")),
        (
            "bulk count, all dead".into(),
            "/admin/bulk?state=dead".into(),
        ),
        (
            "bulk count, one org".into(),
            "/admin/bulk?state=dead&partition=org-00".into(),
        ),
        ("partitions".into(), "/admin/partitions".into()),
        ("github".into(), "/admin/github".into()),
        ("reports, 7 days".into(), "/admin/reports".into()),
        ("reports, 30 days".into(), "/admin/reports?days=30".into()),
    ];
    let get = |path: String| {
        let (client, base, session) = (client.clone(), base.clone(), session.clone());
        async move {
            let t = Instant::now();
            let resp = client
                .get(format!("{base}{path}"))
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let len = resp.bytes().await.unwrap().len();
            assert_eq!(status, 200, "{path}");
            (t.elapsed().as_secs_f64() * 1000.0, len)
        }
    };
    for (_, p) in &pages {
        for _ in 0..3 {
            get(p.clone()).await;
        }
    }
    let mut times: Vec<Vec<f64>> = vec![vec![]; pages.len()];
    let mut sizes = vec![0; pages.len()];
    let deadline = Instant::now() + Duration::from_secs(600);
    for _ in 0..a.rounds {
        for (i, (_, p)) in pages.iter().enumerate() {
            let (ms, len) = get(p.clone()).await;
            times[i].push(ms);
            sizes[i] = len;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    println!(
        "journal: {} deliveries over {} days, {:.0} MB; {} rounds\n",
        a.deliveries,
        a.days,
        size as f64 / 1e6,
        times[0].len()
    );
    println!("| page | p50 ms | p95 ms | max ms | size |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in pages.iter().enumerate() {
        let mut t = times[i].clone();
        t.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} KB |",
            percentile(&t, 50.0),
            percentile(&t, 95.0),
            t.last().unwrap(),
            sizes[i] / 1000
        );
    }
    println!("\nserver peak RSS: {:.0} MB", server.peak_rss_mb());
    server.stop();
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
