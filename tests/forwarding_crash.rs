//! kill -9 while forwarding a backlog, one delivery to a request or in
//! batches: after a restart every delivery reaches the consumer at least
//! once, in order per organisation, and a repeat is the same delivery
//! (same X-GitHub-Delivery, same bytes).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::binary::{self, Server};
use common::consumer;
use common::{Delivery, compact};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarding_survives_kill_9_at_least_once_and_in_order() {
    kill_9_mid_backlog("", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_survive_kill_9_at_least_once_and_in_order() {
    kill_9_mid_backlog("batch = { max = 25, wait = \"50ms\" }\n", 25).await;
}

/// 3,000 pushes across 10 orgs to a 20 ms consumer, kill -9 a third of
/// the way through, restart: each arrives, first arrivals in journal
/// order, repeats at most what 8 workers had in flight (`per_request`
/// deliveries each).
async fn kill_9_mid_backlog(route_extra: &str, per_request: usize) {
    let c = consumer::start(Duration::from_millis(20), consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[processing]\nworkers = 8\n\n[[routes]]\nname = \"ci\"\nurl = \"{}\"\n{route_extra}",
            c.url
        ),
    );
    let mut server = Server::start(&config);
    let template: Value = serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/push/payload.json"),
    ))
    .unwrap();
    let client = reqwest::Client::new();
    let total = 3000;
    // Posted 32 at a time, far faster than a 20 ms consumer drains 10 orgs
    // (~500/s), so a backlog builds.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = Vec::new();
    for _ in 0..32 {
        let (client, base, template, next) = (
            client.clone(),
            server.base.clone(),
            template.clone(),
            next.clone(),
        );
        posters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let mut v = template.clone();
                v["repository"]["owner"]["login"] = format!("org-{}", i % 10).into();
                v["after"] = format!("{i:040}").into();
                let d = Delivery::json("push", &format!("g-{i}"), serde_json::to_vec(&v).unwrap());
                assert_eq!(d.send(&client, &base).await.unwrap().status(), 202);
            }
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
    // Mid-backlog: some forwarded, many pending, some in flight.
    c.wait_for("a third of the backlog", Duration::from_secs(60), |a| {
        a.len() >= total / 3
    })
    .await;
    server.kill9();
    let before = c.arrivals().len();
    assert!(before < total, "killed mid-stream ({before} of {total})");

    let _server = Server::start(&config);
    c.wait_for("every delivery", Duration::from_secs(120), |a| {
        a.iter().map(|x| &x.guid).collect::<HashSet<_>>().len() == total
    })
    .await;

    let census = common::census::Census::of_file(&db);
    let arrivals = c.arrivals();
    let mut first: HashMap<String, Vec<String>> = HashMap::new();
    let mut bodies: HashMap<&str, &Vec<u8>> = HashMap::new();
    for a in &arrivals {
        match bodies.get(a.guid.as_str()) {
            Some(b) => assert_eq!(*b, &a.body, "a repeat of {} is the same bytes", a.guid),
            None => {
                bodies.insert(&a.guid, &a.body);
                first.entry(a.org.clone()).or_default().push(a.guid.clone());
            }
        }
    }
    for (org, got) in &first {
        // Received order: the census lists newest first.
        let want: Vec<String> = census
            .0
            .iter()
            .rev()
            .filter(|d| &d.partition == org)
            .map(|d| d.guid.clone())
            .collect();
        assert_eq!(got, &want, "{org}: first arrivals in journal order");
    }
    let repeats = arrivals.len() - total;
    assert!(
        repeats <= 8 * 2 * per_request,
        "at most the jobs in flight at the kill are repeated, got {repeats}"
    );
    if per_request > 1 {
        assert!(
            arrivals
                .iter()
                .any(|a| a.batch.as_ref().is_some_and(|b| b.size > 1)),
            "sent in batches"
        );
    }
}

/// A consumer answering 500s opens its route's breaker after the
/// configured failures; then only one probe goes per interval, and the
/// breaker stays open across kill -9; the first success closes it and
/// every partition drains in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_consumer_opens_the_breaker_which_survives_kill_9_and_closes_on_success() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = consumer::start(Duration::ZERO, consumer::up_when(up.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[[routes]]\nname = \"ci\"\nurl = \"{}\"\n\n[routes.breaker]\nfailures = 4\nwindow = \"1m\"\nprobe_every = \"1s\"\n",
            c.url
        ),
    );
    let mut server = Server::start(&config);
    let template: Value = serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/push/payload.json"),
    ))
    .unwrap();
    let client = reqwest::Client::new();
    // Two deliveries for each of six organisations.
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for k in 0..2 {
        for o in 0..6 {
            let org = format!("org-{o}");
            let mut v = template.clone();
            v["repository"]["owner"]["login"] = org.clone().into();
            let guid = format!("{org}-{k}");
            let d = Delivery::json("push", &guid, serde_json::to_vec(&v).unwrap());
            assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
            sent.entry(org).or_default().push(guid);
        }
    }
    let open = |m: &str| common::metric(m, "gatehouse_route_breaker_open{sink=\"ci\"}");
    let scrape = |base: String| async move { common::scrape(&reqwest::Client::new(), &base).await };
    common::eventually("the breaker open", Duration::from_secs(20), async || {
        open(&scrape(server.base.clone()).await) == Some(1.0)
    })
    .await;
    // Open: one probe a second at most, whatever the six partitions do.
    let at_open = c.arrivals().len();
    c.wait_for("two probes", Duration::from_secs(10), |a| {
        a.len() >= at_open + 2
    })
    .await;
    let a = c.arrivals();
    let probes = &a[at_open..];
    assert!(
        probes[1].at - probes[0].at >= Duration::from_millis(900),
        "probes {:?} apart",
        probes[1].at - probes[0].at
    );
    // kill -9 while open: it is still open after the restart.
    server.kill9();
    let server = Server::start(&config);
    assert_eq!(open(&scrape(server.base.clone()).await), Some(1.0));
    let before = c.arrivals().len();
    c.wait_for("a probe after the restart", Duration::from_secs(10), |a| {
        a.len() > before
    })
    .await;
    // The consumer is back: the next probe closes it and all drain in order.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = |a: &[consumer::Arrival], guid: &str| a.iter().any(|x| x.guid == guid);
    c.wait_for("everything delivered", Duration::from_secs(30), |a| {
        sent.values().flatten().all(|g| done(a, g))
    })
    .await;
    assert_eq!(open(&scrape(server.base.clone()).await), Some(0.0));
    let arrivals = c.arrivals();
    for (org, guids) in &sent {
        // The last arrival of each delivery, in sending order, per org.
        let firsts: Vec<usize> = guids
            .iter()
            .map(|g| arrivals.iter().position(|a| &a.guid == g).unwrap())
            .collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{org}: {firsts:?}");
    }
    // Failed probes were not counted against max_attempts.
    let (ok, out) = binary::run(
        &[
            "deliveries",
            "list",
            "--state",
            "dead",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok.success(), "{out}");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 0);
}
