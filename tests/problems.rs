//! Open problems, as the real binary shows and tells them: a dead letter
//! opens one (in `gatehouse status`, which then ends 1, and as one message
//! to a `[[notify]]` receiver); a retry that succeeds clears it (one more
//! message; `status` ends 0). No message or log line carries a secret, the
//! receiver's URL or payload content.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::binary::{self, Server};
use common::{Delivery, SECRET, compact, consumer, eventually, fixtures};

const NOTIFY_TOKEN: &str = "notify-url-secret-77";
const ROUTE_SECRET: &str = "route-secret-value-41";

/// The store's reports of `db`'s server, newest first.
async fn report_times(db: &std::path::Path) -> Vec<i64> {
    let store = gatehouse::store::open_beside(
        &gatehouse::config::StorageConfig {
            path: db.to_path_buf(),
            ..Default::default()
        }
        .location(),
    )
    .unwrap();
    let times = store
        .replica_reports()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.1)
        .collect();
    store.close();
    times
}

/// Waits until the server has looked (and reported) `n` more times.
async fn looks(db: &std::path::Path, n: usize) {
    let start = report_times(db).await.first().copied().unwrap_or(0);
    let mut seen = 0;
    let mut last = start;
    eventually(
        "the server to look again",
        Duration::from_secs(20),
        async || {
            if let Some(t) = report_times(db).await.first().copied()
                && t > last
            {
                last = t;
                seen += 1;
            }
            seen >= n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_opens_one_problem_and_its_retry_clears_it() {
    let healthy = Arc::new(AtomicBool::new(false));
    let ci = consumer::start(Duration::ZERO, consumer::up_when(healthy.clone())).await;
    let receiver = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("notify-url");
    std::fs::write(
        &url_file,
        format!("{}?token={NOTIFY_TOKEN}\n", receiver.url),
    )
    .unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[problems]\ninterval_secs = 1\n\n[[notify]]\nurl_file = {:?}\n\n[[routes]]\nname = \"ci\"\nurl = {:?}\nsecret = {ROUTE_SECRET:?}\nmax_attempts = 1\n",
            url_file.display().to_string(),
            ci.url
        ),
    );
    let server = Server::start(&config);
    let status = || binary::run(&["status", "--config", config.to_str().unwrap()], None);

    // All well: status says so and ends 0.
    looks(&db, 1).await;
    let (ok, out) = status();
    assert!(ok.success(), "{out}");
    assert!(out.contains("problems     none"), "{out}");
    assert!(out.contains("server       gatehouse "), "{out}");
    assert!(
        out.contains(&format!("listening  {}", server.base)),
        "{out}"
    );

    // A delivery the consumer refuses, with one attempt: a dead letter.
    let body = compact(&fixtures().join("payloads/push/payload.json"));
    let client = reqwest::Client::new();
    let r = Delivery::json("push", "dead-1", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    receiver
        .wait_for("the problem's opening", Duration::from_secs(20), |a| {
            !a.is_empty()
        })
        .await;
    let (ok, out) = status();
    assert_eq!(ok.code(), Some(1), "an open problem ends status 1: {out}");
    assert!(
        out.contains("PROBLEM      [warning] Route ci has 1 dead letter(s)"),
        "{out}"
    );
    // The same as JSON, for scripts: the server's report and the problems.
    let json = std::process::Command::new(binary::BIN)
        .args(["status", "--json", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let keys: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"dead_letters:ci"), "{v}");
    assert_eq!(v["stale"], false);
    assert_eq!(v["servers"][0]["pid"], server.pid());
    assert_eq!(v["backlog"][0]["route"], "ci");
    assert_eq!(v["backlog"][0]["dead"], 1);

    // Fixed and retried: the problem clears.
    healthy.store(true, Ordering::SeqCst);
    binary::retry_dead(&config, "ci");
    receiver
        .wait_for("the problem's clearing", Duration::from_secs(20), |a| {
            a.len() >= 4
        })
        .await;
    // Three more looks: nothing more is sent.
    looks(&db, 3).await;
    let messages: Vec<serde_json::Value> = receiver
        .arrivals()
        .iter()
        .map(|a| serde_json::from_slice(&a.body).unwrap())
        .collect();
    // The dead letter, and (strict order, on_dead = hold by default) the
    // partition waiting behind it: each opened once, then cleared once.
    for (key, line, link) in [
        (
            "dead_letters:ci",
            "Route ci has 1 dead letter(s)",
            "/admin/deliveries?state=dead&route=ci",
        ),
        (
            "held_by_dead:ci",
            "1 partition(s) of route ci wait behind a dead letter",
            "/admin/partitions?sink=ci",
        ),
    ] {
        let mine: Vec<&serde_json::Value> = messages.iter().filter(|m| m["key"] == key).collect();
        let states: Vec<&str> = mine.iter().map(|m| m["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["open", "clear"], "{messages:?}");
        for m in mine {
            let text = m["text"].as_str().unwrap();
            assert!(text.contains(line), "{text}");
            assert!(text.contains(&format!("({}{link})", server.base)), "{text}");
        }
    }
    assert_eq!(messages.len(), 4, "{messages:?}");
    for a in receiver.arrivals() {
        assert_eq!(a.headers["content-type"], "application/json");
        let raw = String::from_utf8_lossy(&a.body);
        for secret in [SECRET, ROUTE_SECRET, NOTIFY_TOKEN, "refs/heads", "dead-1"] {
            assert!(!raw.contains(secret), "{secret} in {raw}");
        }
    }
    let (ok, out) = status();
    assert!(ok.success(), "{out}");
    assert!(out.contains("problems     none"), "{out}");
    let text = common::scrape(&reqwest::Client::new(), &server.base).await;
    assert_eq!(
        common::metric(&text, "gatehouse_notifications_total{result=\"sent\"}"),
        Some(4.0)
    );
    let mut server = server;
    assert!(server.terminate().success());
    let logs = server.output();
    assert!(!logs.contains(NOTIFY_TOKEN), "{logs}");
    assert!(!logs.contains(&receiver.url), "{logs}");
}
