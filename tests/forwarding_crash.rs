//! kill -9 while forwarding a backlog: after a restart every delivery
//! reaches the consumer at least once, in order per organisation, and a
//! repeat is the same delivery (same X-GitHub-Delivery, same bytes).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::binary::{self, Server};
use common::consumer;
use common::{Delivery, compact};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarding_survives_kill_9_at_least_once_and_in_order() {
    let c = consumer::start(Duration::from_millis(20), consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[processing]\nworkers = 8\n\n[[routes]]\nname = \"ci\"\nurl = \"{}\"\n",
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
        repeats <= 8 * 2,
        "at most the jobs in flight at the kill are repeated, got {repeats}"
    );
}
