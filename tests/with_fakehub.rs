//! gatehouse driven by fakehub, GitHub's stand-in: storms of real payloads
//! with duplicates and disorder, and App webhooks with GitHub's delivery
//! log and redelivery.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::{SECRET, TestApp};
use fakehub::webhooks::storm::{self, Storm};
use fakehub::{FakeHub, HookRef};

fn fakehub_key(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fakehub/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_with_duplicates_is_journaled_once_per_delivery() {
    let t = TestApp::spawn().await;
    let templates =
        fakehub::templates::Templates::load(&common::fixtures()).expect("fixtures load");
    let mut s = Storm::new(&format!("{}/webhooks/github", t.base), Some(SECRET), 600);
    s.orgs = 5;
    s.concurrency = 32;
    s.duplicate_share = 0.1;
    s.out_of_order_share = 0.2;
    s.hook_id = 100;
    let report = storm::run(&templates, s).await;
    assert_eq!(report.no_answer, 0);
    assert_eq!(report.acked_guids, 600);
    assert!(report.duplicates_sent > 20);
    // Each GUID was queued exactly once; every other send of it was a duplicate.
    let mut queued: HashMap<&str, usize> = HashMap::new();
    for s in &report.sends {
        assert!(s.status == 202 || s.status == 200, "{}", s.status);
        if s.status == 202 {
            *queued.entry(s.guid.as_str()).or_default() += 1;
        }
    }
    assert_eq!(queued.len(), 600);
    assert!(queued.values().all(|&n| n == 1));
    let census = t.census().await;
    assert_eq!(census.deliveries(), 600);
    let storm = ["org-0", "org-1", "org-2", "org-3", "org-4", "-"];
    let outside = census
        .0
        .iter()
        .filter(|d| !storm.contains(&d.partition.as_str()))
        .count();
    assert_eq!(outside, 0, "every delivery is partitioned by its storm org");
}

#[tokio::test(flavor = "multi_thread")]
async fn app_webhooks_from_fakehub_are_journaled_and_redeliveries_are_duplicates() {
    let t = TestApp::spawn().await;
    let started = Instant::now();
    let mut config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &fakehub_key("app-a.pub.pem"), &[(11, "octo-org")]);
    config.fixtures = Some(common::fixtures());
    config.apps[0].webhook_url = Some(format!("{}/webhooks/github", t.base));
    config.apps[0].webhook_secret = Some(SECRET.into());
    config.apps[0].hook_id = Some(555);
    let hub = FakeHub::start(config).await.unwrap();
    eprintln!("fakehub started in {:?}", started.elapsed());

    let rec = hub
        .deliver(
            HookRef::App(101),
            "workflow_job",
            "queued.payload.json",
            "octo-org",
            "widgets",
        )
        .await
        .unwrap();
    assert_eq!(rec.status_code, 202);
    let row = t
        .app
        .journal()
        .delivery("555", &rec.guid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.meta.event, "workflow_job");
    assert_eq!(row.meta.partition_key, "octo-org");
    assert_eq!(row.meta.installation_id, Some(11));
    assert_eq!(row.meta.target_type.as_deref(), Some("integration"));
    assert_eq!(row.meta.target_id.as_deref(), Some("101"));

    // GitHub's redelivery keeps the GUID: gatehouse answers "duplicate".
    let out = hub
        .hub()
        .redeliver_outgoing(HookRef::App(101), rec.id)
        .unwrap();
    let again = hub.hub().send(out).await;
    assert!(again.redelivery);
    assert_eq!(again.status_code, 200);
    assert!(again.response_body.contains("duplicate"));
    assert_eq!(t.census().await.deliveries(), 1);
}
