//! Routes with `batch`: a partition's pending deliveries go several to a
//! request, in order, one request in flight per partition, signed as a
//! whole; a consumer's `{"done": K}` marks a prefix done and only the
//! rest is tried again; `coalesce = "pull_request"` gathers one pull
//! request's events past other pull requests' but never past other
//! events. (kill -9 with batches: tests/forwarding_crash.rs.)

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::census::shown;
use common::consumer::{self, Arrival};
use common::{Delivery, TestApp, compact, push_for, route, sign};
use gatehouse::config::{BatchConfig, BatchFormat, Coalesce, RouteConfig, Secret};

fn batching(mut r: RouteConfig, max: usize, wait: &str, format: BatchFormat) -> RouteConfig {
    r.batch = Some(BatchConfig {
        max,
        wait: wait.into(),
        max_bytes: 10 << 20,
        format,
    });
    r
}

/// The batches the consumer received, as GUIDs, in arrival order.
fn batches(arrivals: &[Arrival]) -> Vec<Vec<String>> {
    let mut out: Vec<(usize, Vec<String>)> = vec![];
    for a in arrivals {
        let b = a.batch.as_ref().expect("a batch");
        match out.last_mut() {
            Some((r, guids)) if *r == b.request => guids.push(a.guid.clone()),
            _ => out.push((b.request, vec![a.guid.clone()])),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_carries_a_partition_in_order_and_is_signed_as_a_whole() {
    let json = consumer::start(Duration::from_millis(5), consumer::always(200)).await;
    let nd = consumer::start(Duration::from_millis(5), consumer::always(200)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut signed = batching(route("json", &json.url), 4, "500ms", BatchFormat::Json);
        signed.secret = Some(Secret::new("consumer-secret"));
        cfg.routes = vec![
            signed,
            batching(route("nd", &nd.url), 4, "500ms", BatchFormat::Ndjson),
        ];
    })
    .await;
    let mut sent: HashMap<&str, Vec<String>> = HashMap::new();
    for i in 0..13 {
        let org = if i % 3 == 2 { "globex" } else { "acme" };
        let guid = format!("{org}-{i}");
        let d = Delivery::json("push", &guid, push_for(org, i));
        assert_eq!(t.send(&d).await.status(), 202);
        sent.entry(org).or_default().push(guid);
    }
    for c in [&json, &nd] {
        c.wait_for("13 deliveries", Duration::from_secs(20), |a| a.len() >= 13)
            .await;
        let arrivals = c.arrivals();
        assert_eq!(arrivals.len(), 13, "each once");
        for (org, want) in &sent {
            let got: Vec<String> = arrivals
                .iter()
                .filter(|a| &a.org == org)
                .map(|a| a.guid.clone())
                .collect();
            assert_eq!(&got, want, "{org} in journal order");
            assert_eq!(
                c.max_in_flight.lock().unwrap()[*org],
                1,
                "{org}: one in flight"
            );
        }
        let b = batches(&arrivals);
        assert!(b.iter().all(|b| b.len() <= 4), "at most max: {b:?}");
        assert!(b.len() < 13, "several to a request: {b:?}");
        for batch in &b {
            let orgs: HashSet<&str> = batch.iter().map(|g| g.split('-').next().unwrap()).collect();
            assert_eq!(orgs.len(), 1, "a batch is one partition's: {batch:?}");
        }
    }
    // Signed as a whole with the route's secret; each item keeps GitHub's
    // headers but not its signature.
    for a in json.arrivals() {
        let b = a.batch.as_ref().unwrap();
        assert_eq!(
            a.headers["x-hub-signature-256"],
            sign("consumer-secret", &b.body).as_str()
        );
        assert_eq!(a.headers["content-type"], "application/json");
        assert_eq!(a.headers["x-gatehouse-batch"], b.size.to_string().as_str());
        let items: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        let item = &items[b.index];
        assert_eq!(item["headers"]["x-github-event"], "push");
        assert_eq!(item["headers"]["x-gatehouse-attempt"], "1");
        assert!(item["headers"].get("x-hub-signature-256").is_none());
        let i: usize = a.guid.rsplit('-').next().unwrap().parse().unwrap();
        let github = push_for(&a.org, i);
        assert!(
            b.body.windows(github.len()).any(|w| w == github.as_slice()),
            "the payload's bytes as GitHub sent them"
        );
    }
    for a in nd.arrivals() {
        assert_eq!(a.headers["content-type"], "application/x-ndjson");
        assert!(
            a.headers.get("x-hub-signature-256").is_none(),
            "no secret, no signature"
        );
    }
    assert_eq!(t.census().await.jobs(None, Some("done")), 26);
    let m = t.metrics().await;
    assert_eq!(
        common::metric(&m, r#"gatehouse_forward_batch_deliveries_sum{sink="json"}"#),
        Some(13.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_answer_marks_a_prefix_done_and_only_the_rest_is_sent_again() {
    let answered = Arc::new(Mutex::new(0usize));
    let script = {
        let answered = answered.clone();
        Arc::new(move |_: &[Arrival]| {
            let mut n = answered.lock().unwrap();
            *n += 1;
            match *n {
                1 => (
                    500,
                    r#"{"done": 2, "error": "the third one broke"}"#.to_string(),
                ),
                _ => (200, String::new()),
            }
        })
    };
    let c = consumer::start_with(Duration::ZERO, consumer::always(200), script).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = batching(route("ci", &c.url), 5, "2s", BatchFormat::Json);
        r.retry = vec!["200ms".into(), "200ms".into()];
        r.max_attempts = 0;
        cfg.routes = vec![r];
    })
    .await;
    let guids: Vec<String> = (0..5).map(|i| format!("g-{i}")).collect();
    for (i, g) in guids.iter().enumerate() {
        let d = Delivery::json("push", g, push_for("acme", i));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    c.wait_for("the rest again", Duration::from_secs(20), |a| a.len() >= 8)
        .await;
    let arrivals = c.arrivals();
    let b = batches(&arrivals);
    assert_eq!(
        b,
        [guids.clone(), guids[2..].to_vec()],
        "the rest, from the first not done"
    );
    assert_eq!(arrivals[5].attempt, 2, "the failed one's second attempt");
    assert_eq!(arrivals[6].attempt, 1, "those behind it never counted one");
    assert_eq!(arrivals[5].headers["x-gatehouse-attempt"], "2");
    let store = t.store();
    common::eventually("all done", Duration::from_secs(10), async || {
        t.census().await.jobs(None, Some("done")) == 5
    })
    .await;
    let mut histories = vec![];
    for g in &guids {
        let job = &shown(&store, g).await.jobs[0];
        let outcomes: Vec<String> = job.history.iter().map(|h| h.outcome.clone()).collect();
        histories.push((job.attempts, outcomes));
    }
    let done = |n| (n, vec!["done".to_string()]);
    assert_eq!(
        histories,
        [
            done(1),
            done(1),
            (2, vec!["failed".to_string(), "done".to_string()]),
            done(1),
            done(1),
        ]
    );
    // Waiting, for the batch to fill or for the retry, is not turns spent.
    let m = t.metrics().await;
    let turns = |outcome: &str| {
        common::metric(
            &m,
            &format!(r#"gatehouse_scheduler_turns_total{{sink="ci",outcome="{outcome}"}}"#),
        )
        .unwrap_or(0.0)
    };
    assert!(turns("gathering") >= 1.0, "{m}");
    assert!(turns("ran") <= 6.0, "{m}");
    let failed = &shown(&store, "g-2").await.jobs[0].history[0];
    assert_eq!(failed.status_code, Some(500));
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("took 2 of a batch of 5"),
        "{failed:?}"
    );
}

/// A fixture payload for `org/repo`, changed by `edit`.
fn payload(path: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&compact(&common::fixtures().join(path))).unwrap();
    v["repository"]["full_name"] = "acme/widgets".into();
    v["repository"]["owner"]["login"] = "acme".into();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn pull_request(number: u64, sha: &str) -> Vec<u8> {
    payload("payloads/pull_request/synchronize.payload.json", |v| {
        v["number"] = number.into();
        v["pull_request"]["number"] = number.into();
        v["pull_request"]["head"]["sha"] = sha.into();
    })
}

fn check_run(number: u64, sha: &str) -> Vec<u8> {
    payload("payloads/check_run/completed.payload.json", |v| {
        v["check_run"]["head_sha"] = sha.into();
        v["check_run"]["pull_requests"] =
            serde_json::json!([{ "number": number, "head": { "sha": sha } }]);
    })
}

fn status(sha: &str) -> Vec<u8> {
    payload("payloads/status/payload.json", |v| v["sha"] = sha.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn coalescing_gathers_a_pull_requests_events_and_keeps_order_around_the_rest() {
    let c = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = batching(route("ci", &c.url), 10, "1s", BatchFormat::Json);
        r.coalesce = Some(Coalesce::PullRequest);
        cfg.routes = vec![r];
    })
    .await;
    let events: Vec<(&str, &str, Vec<u8>)> = vec![
        ("pull_request", "pr1-sync", pull_request(1, "a1")),
        ("pull_request", "pr2-sync", pull_request(2, "b1")),
        ("check_run", "pr1-check", check_run(1, "a1")),
        ("status", "a1-status", status("a1")),
        ("status", "b1-status", status("b1")),
        ("push", "push", push_for("acme", 1)),
        ("pull_request", "pr1-again", pull_request(1, "a2")),
        ("status", "stray-status", status("ffff")),
    ];
    for (event, guid, body) in &events {
        let d = Delivery::json(event, guid, body.clone());
        assert_eq!(t.send(&d).await.status(), 202);
    }
    c.wait_for("every event", Duration::from_secs(20), |a| {
        a.len() >= events.len()
    })
    .await;
    let got = batches(&c.arrivals());
    let want: Vec<Vec<&str>> = vec![
        vec!["pr1-sync", "pr1-check", "a1-status"],
        vec!["pr2-sync", "b1-status"],
        // Nothing went past the push, and it went after all before it.
        vec!["push"],
        // A later pull request event and a status of no known pull request:
        // not one pull request's, so each goes as it comes.
        vec!["pr1-again"],
        vec!["stray-status"],
    ];
    assert_eq!(got, want);
}
