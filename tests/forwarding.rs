//! Forward routes: per-organisation order with one in flight (invariant 3),
//! at least once with the same GUID (invariant 4), re-signing, backoff,
//! dead letters, pauses, ordering policies and filters.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::census::{shown, wait_census};
use common::consumer::{self, Consumer};
use common::{Delivery, SECRET, TestApp, compact, push_for, route, sign};
use gatehouse::config::{Ordering, Secret};

/// GUIDs of one partition in journal (received) order.
async fn journal_order(t: &TestApp, org: &str) -> Vec<String> {
    let filter = gatehouse::store::operator::Filter {
        partition: Some(org.into()),
        ..Default::default()
    };
    common::census::Census::matching(&t.store(), &filter)
        .await
        .guids()
}

/// First arrival of each GUID, per org, in arrival order.
fn first_arrivals(c: &Consumer) -> HashMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for a in c.arrivals() {
        if seen.insert(a.guid.clone()) {
            out.entry(a.org.clone()).or_default().push(a.guid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn each_org_arrives_in_journal_order_with_one_in_flight() {
    let c = consumer::start(Duration::from_millis(3), consumer::always(200)).await;
    let t = TestApp::spawn_with(|cfg| cfg.routes = vec![route("ci", &c.url)]).await;
    let orgs = ["org-a", "org-b", "org-c"];
    // Sent concurrently, so arrival order at gatehouse is not send order:
    // the journal decides the order.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let org = orgs[i % 3];
        let d = Delivery::json("push", &format!("{org}-{i}"), push_for(org, i));
        let (client, base) = (t.client.clone(), t.base.clone());
        tasks.push(tokio::spawn(async move {
            d.send(&client, &base).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    c.wait_for("90 deliveries", Duration::from_secs(30), |a| a.len() >= 90)
        .await;
    let got = first_arrivals(&c);
    for org in orgs {
        assert_eq!(
            got[org],
            journal_order(&t, org).await,
            "{org} arrives in journal order"
        );
        assert_eq!(
            c.max_in_flight.lock().unwrap()[org],
            1,
            "{org}: one in flight"
        );
    }
    assert!(
        *c.max_total_in_flight.lock().unwrap() > 1,
        "orgs proceed in parallel"
    );
    assert_eq!(t.census().await.jobs(None, Some("done")), 90);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_requests_are_githubs_resigned_or_passed_through() {
    let c1 = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let c2 = consumer::start(Duration::ZERO, consumer::always(202)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut signed = route("signed", &c1.url);
        signed.secret = Some(Secret::new("consumer-secret"));
        cfg.routes = vec![signed, route("passthrough", &c2.url)];
    })
    .await;
    let body = push_for("octo", 1);
    let d = Delivery::json("push", "sig-1", body.clone())
        .header("x-github-hook-installation-target-type", "integration");
    assert_eq!(t.send(&d).await.status(), 202);
    for c in [&c1, &c2] {
        c.wait_for("one delivery", Duration::from_secs(10), |a| a.len() == 1)
            .await;
    }
    let a1 = &c1.arrivals()[0];
    assert_eq!(a1.body, body, "same body bytes");
    assert_eq!(
        a1.headers["x-hub-signature-256"],
        sign("consumer-secret", &body).as_str()
    );
    assert_eq!(a1.headers["x-github-event"], "push");
    assert_eq!(a1.headers["x-github-delivery"], "sig-1");
    assert_eq!(a1.headers["x-github-hook-id"], "100");
    assert_eq!(
        a1.headers["x-github-hook-installation-target-type"],
        "integration"
    );
    assert_eq!(a1.headers["user-agent"], "GitHub-Hookshot/test");
    assert_eq!(a1.headers["content-type"], "application/json");
    assert_eq!(a1.attempt, 1);
    let a2 = &c2.arrivals()[0];
    assert_eq!(
        a2.headers["x-hub-signature-256"],
        sign(SECRET, &body).as_str(),
        "GitHub's own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_back_off_then_dead_letter_with_the_same_guid() {
    let c = consumer::start(Duration::ZERO, consumer::always(500)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.max_attempts = 3;
        cfg.routes = vec![r];
    })
    .await;
    t.send(&Delivery::json("push", "doomed", push_for("octo", 1)))
        .await;
    c.wait_for("three attempts", Duration::from_secs(15), |a| a.len() == 3)
        .await;
    let a = c.arrivals();
    assert!(a.iter().all(|x| x.guid == "doomed"));
    assert_eq!(
        a.iter().map(|x| x.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // max_attempts alone doubles from 1 s, a fifth at most added: 1-1.2 s,
    // then 2-2.4 s.
    let gap1 = a[1].at - a[0].at;
    let gap2 = a[2].at - a[1].at;
    assert!(
        gap1 >= Duration::from_millis(950) && gap1 < Duration::from_millis(1900),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1950) && gap2 < Duration::from_millis(3500),
        "{gap2:?}"
    );
    wait_census(&t.store(), "the dead letter", Duration::from_secs(5), |c| {
        c.jobs(None, Some("dead")) == 1
    })
    .await;
    let job = &shown(&t.store(), &a[0].guid).await.jobs[0];
    let history: Vec<(&str, Option<i64>)> = job
        .history
        .iter()
        .map(|x| (x.outcome.as_str(), x.status_code))
        .collect();
    assert_eq!(history, [("failed", Some(500)); 3]);
    assert_eq!(job.history[2].n, 3);
    assert_eq!(job.history[2].error.as_deref(), Some("HTTP 500"));
    let m = t.metrics().await;
    assert_eq!(
        common::metric(&m, r#"gatehouse_dead_letters{sink="ci"}"#),
        Some(1.0)
    );
    assert_eq!(
        common::metric(
            &m,
            r#"gatehouse_forward_attempts_total{sink="ci",outcome="failed"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        common::metric(
            &m,
            r#"gatehouse_jobs_finished_total{sink="ci",outcome="dead"}"#
        ),
        Some(1.0)
    );
    // Strict order, on_dead = "hold": the partition waits behind the dead
    // letter; a new delivery is journaled and not sent.
    assert_eq!(
        common::metric(&m, r#"gatehouse_partitions_held_by_dead_letter{sink="ci"}"#),
        Some(1.0)
    );
    t.send(&Delivery::json("push", "after", push_for("octo", 2)))
        .await;
    let after = &shown(&t.store(), "after").await.jobs[0];
    assert_eq!((after.state.as_str(), after.history.len()), ("pending", 0));
    assert_eq!(
        after.behind,
        Some(job.id),
        "it waits behind the dead letter"
    );
    // An operator skips the dead letter: the delivery behind it goes, and
    // the dead letter is not sent again.
    let id = t.store().ids_of_guid("doomed").await.unwrap()[0];
    let skipped = t.store().skip_dead(id, None, "test", 0).await.unwrap();
    for (sink, partition) in skipped.partitions {
        t.store().wake(sink, partition);
    }
    c.wait_for("the delivery after", Duration::from_secs(15), |a| {
        a.iter().any(|x| x.guid == "after")
    })
    .await;
    let doomed = c.arrivals().iter().filter(|x| x.guid == "doomed").count();
    assert_eq!(doomed, 3, "no attempt after the dead letter");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_pauses_the_partition_without_using_an_attempt() {
    let script: consumer::Script = Arc::new(|_, seen| {
        if seen == 0 {
            (503, vec![("retry-after", "2".to_string())])
        } else {
            (200, vec![])
        }
    });
    let c = consumer::start(Duration::ZERO, script).await;
    let t = TestApp::spawn_with(|cfg| cfg.routes = vec![route("ci", &c.url)]).await;
    t.send(&Delivery::json("push", "p-1", push_for("octo", 1)))
        .await;
    t.send(&Delivery::json("push", "p-2", push_for("octo", 2)))
        .await;
    c.wait_for("p-1 twice and p-2", Duration::from_secs(10), |a| {
        a.len() == 3
    })
    .await;
    let a = c.arrivals();
    assert_eq!(
        a.iter().map(|x| x.guid.as_str()).collect::<Vec<_>>(),
        ["p-1", "p-1", "p-2"]
    );
    let waited = a[1].at - a[0].at;
    assert!(
        waited >= Duration::from_millis(1900) && waited <= Duration::from_millis(3000),
        "paused {waited:?}"
    );
    assert_eq!(a[1].attempt, 1, "a pause is not an attempt");
    let job = &shown(&t.store(), "p-1").await.jobs[0];
    assert_eq!(job.attempts, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_ordering_blocks_behind_a_failing_head_and_none_steps_aside() {
    let script: consumer::Script = Arc::new(|a, _| {
        if a.guid.ends_with("bad") {
            (500, vec![])
        } else {
            (200, vec![])
        }
    });
    let strict = consumer::start(Duration::ZERO, script.clone()).await;
    let loose = consumer::start(Duration::ZERO, script).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut none = route("loose", &loose.url);
        none.ordering = Ordering::None;
        cfg.routes = vec![route("strict", &strict.url), none];
    })
    .await;
    for g in ["o-1", "o-bad", "o-3"] {
        t.send(&Delivery::json("push", g, push_for("octo", 1)))
            .await;
    }
    loose
        .wait_for(
            "o-3 goes past the failing job",
            Duration::from_secs(10),
            |a| a.iter().any(|x| x.guid == "o-3"),
        )
        .await;
    // o-3 was journaled before the requests below: by the second attempt
    // of o-bad the scheduler has worked the strict partition again with o-3
    // behind it.
    strict
        .wait_for("o-bad retried", Duration::from_secs(15), |a| {
            a.iter().filter(|x| x.guid == "o-bad").count() >= 2
        })
        .await;
    let s: Vec<String> = strict.arrivals().into_iter().map(|a| a.guid).collect();
    assert!(
        !s.contains(&"o-3".to_string()),
        "strict: o-3 waits behind o-bad: {s:?}"
    );
    assert!(
        s.iter().filter(|g| *g == "o-bad").count() >= 2,
        "o-bad is retried: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_filter_by_event_action_and_repository() {
    let c = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("prs", &c.url);
        r.events = vec!["pull_request".into()];
        r.actions = vec!["opened".into()];
        r.repositories = vec!["codertocat/*".into()];
        cfg.routes = vec![r];
    })
    .await;
    let fx = common::fixtures().join("payloads");
    t.send(&Delivery::json(
        "pull_request",
        "want",
        compact(&fx.join("pull_request/opened.payload.json")),
    ))
    .await;
    t.send(&Delivery::json(
        "pull_request",
        "closed",
        compact(&fx.join("pull_request/closed.payload.json")),
    ))
    .await;
    t.send(&Delivery::json(
        "push",
        "push",
        compact(&fx.join("push/payload.json")),
    ))
    .await;
    c.wait_for("the opened PR", Duration::from_secs(10), |a| a.len() == 1)
        .await;
    assert_eq!(c.arrivals()[0].guid, "want");
    assert_eq!(
        t.census().await.jobs(None, None),
        1,
        "only matching deliveries become jobs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_deliveries_with_unfinished_jobs() {
    let c = consumer::start(Duration::ZERO, consumer::always(500)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.events = vec!["push".into()];
        cfg.routes = vec![r];
    })
    .await;
    let fx = common::fixtures().join("payloads");
    t.send(&Delivery::json(
        "ping",
        "no-jobs",
        compact(&fx.join("ping/payload.json")),
    ))
    .await;
    t.send(&Delivery::json("push", "failing", push_for("octo", 1)))
        .await;
    c.wait_for("the failing attempt", Duration::from_secs(10), |a| {
        !a.is_empty()
    })
    .await;
    let no_jobs = t
        .store()
        .delivery("100", "no-jobs")
        .await
        .unwrap()
        .unwrap()
        .id;
    let deleted = t
        .app
        .journal()
        .prune(
            gatehouse::clock::now_ms() + 1,
            gatehouse::clock::now_ms() + 1,
            500,
        )
        .await
        .unwrap()
        .deliveries;
    assert_eq!(deleted, 1, "only the delivery without unfinished jobs goes");
    let census = t.census().await;
    assert_eq!(census.guids(), ["failing"]);
    let failing = t.store().ids_of_guid("failing").await.unwrap()[0];
    assert!(t.store().payload(failing).await.unwrap().is_some());
    assert!(
        t.store().payload(no_jobs).await.unwrap().is_none(),
        "payloads go with their delivery"
    );
}

/// A route whose consumer calls GitHub with the pool's credentials
/// (`github_budget = true`) waits while an organisation's credentials are
/// spent, and goes on at their reset; other organisations keep flowing.
#[tokio::test(flavor = "multi_thread")]
async fn github_budget_pauses_an_organisation_whose_credentials_are_spent_until_the_reset() {
    let mut hub_config = fakehub::Config::default()
        .org("acme", &["widgets"])
        .org("globex", &["gadgets"])
        .app(
            101,
            &common::hub::key("app-a.pub.pem"),
            &[(11, "acme"), (12, "globex")],
        );
    hub_config.rate_limit.core = 3;
    hub_config.rate_limit.window_secs = 6;
    let hub = fakehub::FakeHub::start(hub_config).await.unwrap();
    let c = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let t = TestApp::spawn_with(|cfg| {
        cfg.github = common::hub::github_config(&hub, &[(101, "app-a.pem")], &[]);
        cfg.gateway = Some(gatehouse::config::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            fair_share_below: 0.0,
            priority_share: 0.0,
            ..Default::default()
        });
        let mut r = route("ci", &c.url);
        r.github_budget = true;
        cfg.routes = vec![r];
    })
    .await;
    // Another tool spends acme's budget through the gateway.
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let token = common::add_client(&t.db_path, "tool", &[], &[]);
    let mut reset_ms = 0;
    for n in 0..3 {
        let r =
            common::gateway_get(&t.client, format!("{gw}/repos/acme/widgets?n={n}"), &token).await;
        assert_eq!(r.status(), 200);
        let reset: i64 = r.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        reset_ms = reset * 1000;
        if n == 2 {
            assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
        }
    }
    t.send(&Delivery::json("push", "acme-1", push_for("acme", 1)))
        .await;
    t.send(&Delivery::json("push", "globex-1", push_for("globex", 1)))
        .await;
    // globex goes at once; acme's partition says why it waits.
    c.wait_for("globex", Duration::from_secs(10), |a| {
        a.iter().any(|x| x.guid == "globex-1")
    })
    .await;
    let store = t.store();
    common::eventually("acme paused", Duration::from_secs(10), async || {
        let view = store
            .partitions(Some("ci"), gatehouse::clock::now_ms(), 10)
            .await
            .unwrap();
        view.rows.iter().any(|p| {
            p.partition == "acme"
                && p.paused_until_ms == reset_ms
                && p.pause_reason.as_deref()
                    == Some("acme's GitHub credentials are spent (github_budget)")
        })
    })
    .await;
    assert!(c.arrivals().iter().all(|a| a.guid != "acme-1"));
    // At the reset it goes, never before.
    c.wait_for("acme after the reset", Duration::from_secs(20), |a| {
        a.iter().any(|x| x.guid == "acme-1")
    })
    .await;
    // The consumer answered before the attempt was recorded.
    common::eventually("acme-1 recorded", Duration::from_secs(10), async || {
        !shown(&store, "acme-1").await.jobs[0].history.is_empty()
    })
    .await;
    let job = &shown(&store, "acme-1").await.jobs[0];
    assert_eq!(job.history.len(), 1, "one attempt, no 403 met");
    assert!(
        job.history[0].started_at_ms >= reset_ms,
        "sent at {} before the reset at {reset_ms}",
        job.history[0].started_at_ms
    );
    let m = t.metrics().await;
    assert!(
        common::metric(
            &m,
            r#"gatehouse_partitions_paused_for_github_budget_total{sink="ci"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
}
