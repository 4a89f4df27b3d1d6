//! Recovery against fakehub: deliveries GitHub failed to make while
//! gatehouse was down are found in the App's delivery log and redelivered,
//! each exactly once; what arrived is never asked for; failed requests are
//! asked again; a tiny budget makes the walk wait; a walk resumes after
//! kill -9 without asking twice.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::census::Census;
use common::hub::{github_config, key, push_deliveries};
use common::{SECRET, TestApp, binary, free_port, test_config};
use fakehub::config::FaultConfig;
use fakehub::{FakeHub, HookRef};
use gatehouse::store::Store;
use gatehouse::store::recovery::{Walk, WalkState};

/// A loopback port free now, for a gatehouse that is not running yet
/// (fakehub's App webhook must point somewhere from the start).
async fn hub_for(port: u16, edit: impl FnOnce(&mut fakehub::Config)) -> FakeHub {
    let mut c = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &key("app-a.pub.pem"), &[(11, "octo-org")]);
    c.fixtures = Some(common::fixtures());
    c.apps[0].webhook_url = Some(format!("http://127.0.0.1:{port}/webhooks/github"));
    c.apps[0].webhook_secret = Some(SECRET.into());
    c.apps[0].hook_id = Some(555);
    edit(&mut c);
    FakeHub::start(c).await.unwrap()
}

/// Sends `n` push deliveries from the App; returns their GUIDs.
async fn send(hub: &FakeHub, n: usize) -> Vec<String> {
    let sent = push_deliveries(hub, HookRef::App(101), n).await;
    sent.into_iter().map(|r| r.guid).collect()
}

/// Redelivery attempts fakehub made, by GUID.
fn redeliveries(hub: &FakeHub) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in hub.hub().log.lock().unwrap().all() {
        if r.redelivery {
            *out.entry(r.guid.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// GitHub was asked to redeliver `n` GUIDs, each exactly once; which.
/// (fakehub logs a redelivery once gatehouse has answered it, a moment
/// after the journal has it: waited for, bounded.)
async fn asked_once_each(hub: &FakeHub, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while redeliveries(hub).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = redeliveries(hub);
    assert_eq!(asked.len(), n);
    let twice: Vec<_> = asked.iter().filter(|(_, k)| **k != 1).collect();
    assert!(twice.is_empty(), "asked for more than once: {twice:?}");
    asked
}

fn config(dir: &std::path::Path, port: u16, hub: &FakeHub) -> gatehouse::config::Config {
    let mut c = test_config(dir);
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.github = github_config(hub, &[(101, "app-a.pem")], &[]);
    c.recovery.interval_secs = 3600;
    c.recovery.per_page = 50;
    c
}

/// Waits (bounded) until the journal holds every one of `guids`.
async fn journaled_all(t: &TestApp, guids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let census = t.census().await;
        let missing = guids.iter().filter(|g| census.with_guid(g) == 0).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} deliveries never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Walks still running and requests not yet answered, as the store
/// reports them: at zero, the walk has written down what it did
/// (deliveries can land in the journal before the walk records the
/// request that brought them).
async fn unsettled(store: &Store) -> i64 {
    let status = store.recovery_status().await.unwrap();
    status
        .iter()
        .map(|s| {
            let running = i64::from(s.last_walk.state == WalkState::Running);
            let open: i64 = ["failed", "asking"]
                .iter()
                .filter_map(|o| s.requests.get(*o))
                .sum();
            running + open
        })
        .sum()
}

/// Waits (bounded) until every walk and request is settled. Generous: a
/// walk retries a failed page after 1, 2, 4, 8... s, so against a GitHub
/// failing half its answers one walk can take half a minute.
async fn until_settled(t: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while unsettled(&t.store()).await > 0 {
        assert!(Instant::now() < deadline, "still unsettled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_deliveries_missed_while_down_come_back_once_each() {
    let port = free_port();
    let hub = hub_for(port, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();

    // Up: 30 deliveries arrive. Down: 1,000 fail on GitHub's side. The
    // walk at start reads the empty log first: had it read a delivery, the
    // next walk would stop at that checkpoint and see one entry fewer.
    let c = config(dir.path(), port, &hub);
    let t = TestApp::start_in(dir, c).await;
    common::eventually("the walk at start", Duration::from_secs(30), async || {
        let status = t.app.journal().recovery_status().await.unwrap();
        status
            .first()
            .is_some_and(|s| s.last_complete_at_ms.is_some())
    })
    .await;
    let arrived = send(&hub, 30).await;
    let dir = t.stop().await;
    let missed = send(&hub, 1000).await;
    let failed = hub
        .hub()
        .log
        .lock()
        .unwrap()
        .all()
        .iter()
        .filter(|r| !r.ok())
        .count();
    assert_eq!(failed, 1000);

    let c = config(dir.path(), port, &hub);
    let started = Instant::now();
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(60)).await;
    eprintln!("1,000 missed deliveries back in {:?}", started.elapsed());

    // Each exactly once in the journal, each asked for exactly once, and
    // nothing that had arrived was asked for.
    let census = t.census().await;
    let distinct: std::collections::HashSet<String> = census.guids().into_iter().collect();
    assert_eq!((census.deliveries(), distinct.len()), (1030, 1030));
    let asked = asked_once_each(&hub, 1000).await;
    assert!(arrived.iter().all(|g| !asked.contains_key(g)));
    assert!(missed.iter().all(|g| asked.contains_key(g)));

    // The walk is recorded and visible.
    until_settled(&t).await;
    let status = t.app.journal().recovery_status().await.unwrap();
    let w = &status[0].last_walk;
    assert_eq!(status[0].source, "app:101");
    assert_eq!(
        (w.state.as_str(), w.missing, w.requested, w.failures),
        ("complete", 1000, 1000, 0)
    );
    assert_eq!(w.seen, 1030);
    assert_eq!(w.pages, 21, "1,030 entries at 50 a page");
    let text = t.metrics().await;
    assert_eq!(
        common::metric(
            &text,
            "gatehouse_recovery_missing_found_total{source=\"app:101\"}"
        ),
        Some(1000.0)
    );
    assert_eq!(
        common::metric(
            &text,
            "gatehouse_recovery_redeliveries_requested_total{source=\"app:101\"}"
        ),
        Some(1000.0)
    );
    assert!(text.contains("gatehouse_recovery_since_complete_walk_seconds{source=\"app:101\"}"));

    // A second walk (from the CLI) stops at the first one's checkpoint and
    // asks for nothing: everything is in the journal.
    let file = binary::write_config(
        t.dir.path(),
        &t.db_path,
        &format!(
            "[github]\napi_url = {:?}\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n",
            hub.url(),
            format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"))
        ),
    );
    let (status, out) = binary::run(
        &["recovery", "run", "--config", file.to_str().unwrap()],
        None,
    );
    assert!(status.success(), "{out}");
    assert!(out.contains("recovery walk complete"), "{out}");
    assert!(out.contains("0 missing, 0 asked"), "{out}");
    assert_eq!(redeliveries(&hub).len(), 1000);
    let (status, out) = binary::run(
        &["recovery", "status", "--config", file.to_str().unwrap()],
        None,
    );
    assert!(status.success(), "{out}");
    assert!(out.contains("app:101") && out.contains("complete"), "{out}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_redelivery_requests_are_asked_again_on_the_next_walk() {
    let port = free_port();
    // GitHub answers the first 10 redelivery requests 502.
    let hub = hub_for(port, |c| {
        let mut f = FaultConfig::new("POST /app/hook/deliveries/*/attempts");
        f.error_rate = 1.0;
        f.max_hits = Some(10);
        c.faults.push(f);
    })
    .await;
    let missed = send(&hub, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    c.recovery.interval_secs = 2;
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(30)).await;
    asked_once_each(&hub, 30).await;
    // Every request ends answered.
    until_settled(&t).await;
    let status = t.store().recovery_status().await.unwrap();
    assert_eq!(status[0].requests_total, 30);
    // The first walk got some 502s; the next one asked for those again.
    let walks = t.store().walks(100).await.unwrap();
    let first = walks.last().unwrap();
    assert_eq!((first.requested, first.failures), (20, 10));
    // GitHub keeps 3 days of deliveries (GHES 7): a first walk looks that
    // far.
    let days = if hub.hub().enterprise.is_some() { 7 } else { 3 };
    let back = first.started_at_ms - first.since_ms;
    assert!((back - days * 86_400_000).abs() < 60_000, "{back}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_budget_makes_the_walk_wait_for_the_reset_instead_of_failing() {
    let port = free_port();
    let hub = hub_for(port, |c| {
        c.rate_limit.core = 12;
        c.rate_limit.window_secs = 2;
    })
    .await;
    let missed = send(&hub, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    c.recovery.per_page = 10;
    let started = Instant::now();
    let t = TestApp::start_in(dir, c).await;
    // 4 pages + 40 redeliveries = 44 requests at 12 per 2 s: 4 windows.
    journaled_all(&t, &missed, Duration::from_secs(60)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let s = hub.stats();
    assert_eq!(
        s.tokens["app:101"].rate_limited, 0,
        "never sent past the limit"
    );
    asked_once_each(&hub, 40).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walk_of_fifty_pages_resumes_after_kill_9_without_asking_twice() {
    let port = free_port();
    // Each page of the log takes 150 ms and each redelivery request 10 ms:
    // the walk is still going when killed, first while it reads the log,
    // then while it asks.
    let hub = hub_for(port, |c| {
        let mut f = FaultConfig::new("GET /app/hook/deliveries");
        f.latency_ms = 150;
        c.faults.push(f);
        let mut f = FaultConfig::new("POST /app/hook/deliveries/*/attempts");
        f.latency_ms = 10;
        c.faults.push(f);
    })
    .await;
    let missed = send(&hub, 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let key_file = format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"));
    let file = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "[github]\napi_url = {:?}\n[[github.apps]]\nid = 101\nprivate_key_file = {key_file:?}\n\n[recovery]\nper_page = 20\ninterval_secs = 3600\n",
            hub.url()
        ),
    );
    // The config's listen must be the port fakehub sends to.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&file, text).unwrap();

    let mut server = binary::Server::start(&file);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let walks = common::beside(&db, async |s| s.walks(100).await.unwrap());
        let pages = walks.iter().map(|w| w.pages).max().unwrap_or(0);
        if pages >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the walk never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    // Nothing is asked before the whole log is read (oldest first needs it).
    assert_eq!(redeliveries(&hub).len(), 0, "asked while reading the log");
    let status = common::beside(&db, async |s| s.recovery_status().await.unwrap());
    let found = status[0].requests.get("found").copied().unwrap_or(0);
    assert!((1..1000).contains(&found), "killed mid-walk: {found} found");

    // The resumed walk reads on and starts asking; killed again meanwhile.
    let mut server = binary::Server::start(&file);
    let deadline = Instant::now() + Duration::from_secs(60);
    while redeliveries(&hub).len() < 100 {
        assert!(Instant::now() < deadline, "the resumed walk never asked");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    let before = redeliveries(&hub).len();
    assert!(
        (100..1000).contains(&before),
        "killed while asking: {before} asked"
    );

    let _server = binary::Server::start(&file);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let guids = Census::of_file(&db).guids();
        let n = guids.iter().collect::<std::collections::HashSet<_>>().len();
        if n == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} of 1,000 back");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing asked before the kills was asked again, except possibly the
    // one request in flight at the second kill: its redelivery found
    // gatehouse dead, so it was still missing and had to be asked again.
    let asked = redeliveries(&hub);
    assert_eq!(asked.len(), 1000);
    assert!(missed.iter().all(|g| asked.contains_key(g)));
    let twice: Vec<&String> = asked
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(g, _)| g)
        .collect();
    assert!(twice.len() <= 1, "asked twice: {twice:?}");
    for g in twice {
        let log = hub.hub().log.lock().unwrap();
        let first = log
            .all()
            .iter()
            .find(|r| r.redelivery && &r.guid == g)
            .unwrap();
        assert!(
            !first.ok(),
            "{g} was asked again though its redelivery had arrived"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::beside(&db, async |s| unsettled(s).await) > 0 {
        assert!(Instant::now() < deadline, "the walk never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    // As an operator sees the history: `recovery status --walks`.
    let (status, out) = binary::run(
        &[
            "recovery",
            "status",
            "--walks",
            "100",
            "--json",
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    let walks: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let complete: Vec<i64> = walks
        .iter()
        .filter(|w| w["state"] == "complete")
        .map(|w| w["pages"].as_i64().unwrap())
        .collect();
    assert_eq!(complete.len(), 1, "the walk was resumed, not started again");
    assert_eq!(complete[0], 50);
    let (_, table) = binary::run(
        &[
            "recovery",
            "status",
            "--walks",
            "5",
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        table.lines().next().unwrap().contains("pages") && table.contains("complete"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_hook_listed_in_the_config_is_walked_with_a_pool_token() {
    let port = free_port();
    let hub = hub_for(port, |c| {
        *c = std::mem::take(c).token("bot", "ghp_recoverytoken");
        c.hooks.push(fakehub::config::HookConfig {
            id: 77,
            owner: "octo-org".into(),
            repo: Some("widgets".into()),
            url: format!("http://127.0.0.1:{port}/webhooks/github"),
            secret: Some(SECRET.into()),
            content_type: Default::default(),
        });
    })
    .await;
    let mut missed = Vec::new();
    for r in push_deliveries(&hub, HookRef::Hook(77), 25).await {
        assert!(!r.ok());
        missed.push(r.guid);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    // No App: only the hook, read with the token.
    c.github = github_config(&hub, &[], &["ghp_recoverytoken"]);
    c.github.hooks = vec![gatehouse::config::GithubHookConfig {
        owner: "octo-org".into(),
        repo: Some("widgets".into()),
        id: 77,
    }];
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(30)).await;
    asked_once_each(&hub, 25).await;
    let status = t.app.journal().recovery_status().await.unwrap();
    assert_eq!(status[0].source, "hook:octo-org/widgets:77");
    assert_eq!(
        hub.stats().tokens["pat:bot"].requests,
        26,
        "one page and 25 redeliveries"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flaky_rate_limited_github_slows_the_walk_but_loses_nothing() {
    let port = free_port();
    // Half of GitHub's answers to log pages and to redelivery requests are
    // 502, and the budget is 40 requests per 2 s.
    let hub = hub_for(port, |c| {
        for route in [
            "GET /app/hook/deliveries",
            "POST /app/hook/deliveries/*/attempts",
        ] {
            let mut f = FaultConfig::new(route);
            f.error_rate = 0.5;
            f.error_status = 502;
            c.faults.push(f);
        }
        c.rate_limit.core = 40;
        c.rate_limit.window_secs = 2;
    })
    .await;
    let missed = send(&hub, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    c.recovery.per_page = 10;
    c.recovery.interval_secs = 2;
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(120)).await;
    asked_once_each(&hub, 50).await;
    until_settled(&t).await;
    let usage = &hub.stats().tokens["app:101"];
    assert_eq!(usage.rate_limited, 0, "never sent past the limit");
    // At the least 5 pages and 50 redelivery requests, each failing half
    // the time: about 110 on average, and the log pages again for the
    // redeliveries' own entries.
    assert!(
        usage.requests < 250,
        "{} requests to GitHub",
        usage.requests
    );
    let all = t.store().walks(10_000).await.unwrap();
    let walks = all.len();
    let requested: i64 = all.iter().map(|w| w.requested).sum();
    let failures: i64 = all.iter().map(|w| w.failures).sum();
    // Every redelivery GitHub accepted is counted by the walk that asked.
    assert_eq!(requested, 50);
    eprintln!(
        "{} requests to GitHub, {walks} walks, {failures} failed requests",
        usage.requests
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_github_slower_than_the_timeout_ends_the_walk_not_the_server() {
    let port = free_port();
    let hub = hub_for(port, |c| {
        let mut f = FaultConfig::new("GET /app/hook/deliveries");
        f.latency_ms = 5_000;
        c.faults.push(f);
    })
    .await;
    send(&hub, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    c.github.timeout_secs = 1;
    let started = Instant::now();
    let t = TestApp::start_in(dir, c).await;
    // Ingest is not held up meanwhile.
    let d = common::Delivery::json(
        "ping",
        "during-walk",
        common::compact(&common::fixtures().join("payloads/ping/payload.json")),
    );
    assert_eq!(t.send(&d).await.status(), 202);
    // Four tries, each cut at 1 s, 1 + 2 + 4 s apart: the walk gives up
    // in about 11 s, with why, and the next walk resumes it.
    let store = t.store();
    let gave_up = async || {
        let walks = store.walks(10).await.unwrap();
        let given_up: Vec<&Walk> = walks
            .iter()
            .filter(|w| w.state == WalkState::Running && w.last_error.is_some())
            .collect();
        (given_up.len() == 1).then(|| given_up[0].last_error.clone().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let why = loop {
        if let Some(why) = gave_up().await {
            break why;
        }
        assert!(Instant::now() < deadline, "the walk gave up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(20)).contains(&took),
        "{took:?}"
    );
    assert!(
        why.contains("timed out") || why.contains("timeout"),
        "{why}"
    );
    assert_eq!(hub.stats().tokens["app:101"].requests, 4);
    let stopping = Instant::now();
    t.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_deliveries_are_asked_for_oldest_first_and_arrive_marked_recovered() {
    let port = free_port();
    let hub = hub_for(port, |_| {}).await;
    let consumer = common::consumer::start(Duration::ZERO, common::consumer::always(200)).await;
    let make = |dir: &std::path::Path| {
        let mut c = config(dir, port, &hub);
        // Several log pages, read newest first.
        c.recovery.per_page = 7;
        c.routes = vec![common::route("ci", &consumer.url)];
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let c = make(dir.path());
    let t = TestApp::start_in(dir, c).await;
    let arrived = send(&hub, 3).await;
    let dir = t.stop().await;
    // Down: 40 deliveries fail, in this order.
    let missed = send(&hub, 40).await;
    let c = make(dir.path());
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(60)).await;
    // GitHub was asked for them in the order it first sent them. fakehub
    // numbers each redelivery when it takes the request (its log lists
    // them as they finish: GitHub, too, redelivers after answering 202, so
    // two redeliveries can cross on the way, and the last one can be in
    // the journal a moment before it is in the log).
    let logged = || -> Vec<(i64, String)> {
        hub.hub()
            .log
            .lock()
            .unwrap()
            .all()
            .iter()
            .filter(|r| r.redelivery)
            .map(|r| (r.id, r.guid.clone()))
            .collect()
    };
    common::eventually(
        "every redelivery in the log",
        Duration::from_secs(10),
        async || logged().len() >= missed.len(),
    )
    .await;
    let mut asked = logged();
    asked.sort();
    let asked: Vec<String> = asked.into_iter().map(|(_, g)| g).collect();
    assert_eq!(asked, missed, "oldest first");
    // Each is journaled once, marked recovered.
    let census = t.census().await;
    let mut in_journal: Vec<String> = census
        .0
        .iter()
        .filter(|d| d.recovered)
        .map(|d| d.guid.clone())
        .collect();
    in_journal.sort();
    let mut expected = missed.clone();
    expected.sort();
    assert_eq!(in_journal, expected, "each marked recovered, once");
    assert_eq!(
        census.0.iter().filter(|d| !d.recovered).count(),
        arrived.len()
    );
    // The consumer is told which ones recovery brought back.
    consumer
        .wait_for("every delivery", Duration::from_secs(30), |a| a.len() >= 43)
        .await;
    for a in consumer.arrivals.lock().unwrap().iter() {
        let marked = a
            .headers
            .get("x-gatehouse-recovered")
            .map(|v| v.to_str().unwrap());
        if missed.contains(&a.guid) {
            assert_eq!(marked, Some("true"), "{}", a.guid);
        } else {
            assert_eq!(marked, None, "{}", a.guid);
        }
    }
    let forwarded: Vec<String> = consumer
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|a| missed.contains(&a.guid))
        .map(|a| a.guid.clone())
        .collect();
    // In journal order: GitHub sends a redelivery after answering the
    // request for it, so two can arrive out of the order they were asked
    // for, and the journal's order is the one the consumer gets.
    let journal_order: Vec<String> = census
        .0
        .iter()
        .rev()
        .filter(|d| d.recovered)
        .map(|d| d.guid.clone())
        .collect();
    assert_eq!(forwarded, journal_order, "forwarded in journal order");
    t.stop().await;
}

/// An App configured with `webhook = false` has no delivery log: recovery
/// never spends its JWT on one, and says so at start and in check-config.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_without_webhooks_is_never_walked_and_the_operator_is_told() {
    let port = free_port();
    let hub = hub_for(port, |c| {
        c.apps.push(
            fakehub::Config::default()
                .app(202, &key("app-b.pub.pem"), &[(21, "octo-org")])
                .apps
                .remove(0),
        );
    })
    .await;
    let missed = send(&hub, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), port, &hub);
    c.github = github_config(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]);
    c.github.apps[1].webhook = false;
    let sources: Vec<String> = gatehouse::recovery::Source::all(&c)
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(sources, ["app:101"]);
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(30)).await;
    asked_once_each(&hub, 5).await;
    let status = t.store().recovery_status().await.unwrap();
    assert_eq!(
        status.iter().map(|s| s.source.as_str()).collect::<Vec<_>>(),
        ["app:101"]
    );
    assert!(
        !hub.stats().tokens.contains_key("app:202"),
        "App 202's JWT never spent: {:?}",
        hub.stats().tokens.keys().collect::<Vec<_>>()
    );
    t.stop().await;

    // check-config names it, with why.
    let dir = tempfile::tempdir().unwrap();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fakehub/testdata");
    let file = binary::write_config(
        dir.path(),
        &dir.path().join("gatehouse.db"),
        &format!(
            "\n[github]\napi_url = \"{}\"\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[[github.apps]]\nid = 202\nprivate_key_file = {:?}\nwebhook = false\npurposes = [\"recovery\", \"sinks\"]\n",
            hub.url(),
            keys.join("app-a.pem"),
            keys.join("app-b.pem")
        ),
    );
    let (ok, out) = binary::run(&["check-config", "--config", file.to_str().unwrap()], None);
    assert!(ok.success(), "{out}");
    assert!(
        out.contains("recovery     app:202 not walked: webhook = false"),
        "{out}"
    );
    assert!(
        out.contains("only for recovery, sinks; no webhook"),
        "{out}"
    );
}

/// Against GitHub Enterprise Server: the App's log at `/api/v3`, the
/// 7-day window its `/meta` implies, and its delivery headers kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ghes_app_log_is_walked_over_its_seven_day_window() {
    let port = free_port();
    let hub = hub_for(port, |c| {
        c.enterprise = Some(fakehub::config::EnterpriseConfig::default());
    })
    .await;
    assert!(hub.url().ends_with("/api/v3"));
    let missed = send(&hub, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), port, &hub);
    let t = TestApp::start_in(dir, c).await;
    journaled_all(&t, &missed, Duration::from_secs(30)).await;
    asked_once_each(&hub, 10).await;
    let walks = t.store().walks(10).await.unwrap();
    let first = walks.last().unwrap();
    let back = first.started_at_ms - first.since_ms;
    assert!((back - 168 * 3_600_000).abs() < 60_000, "{back}");
    // GHES's headers are journaled with the delivery.
    let id = t.store().ids_of_guid(&missed[0]).await.unwrap()[0];
    let payload = t.store().payload(id).await.unwrap().unwrap();
    let headers = gatehouse::journal::model::decode_headers(&payload.headers);
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(
        get("x-github-enterprise-version").as_deref(),
        Some("3.19.0")
    );
    assert_eq!(
        get("x-github-enterprise-host").as_deref(),
        Some("ghes.example")
    );
    t.stop().await;
}

/// GitHub keeps a delivery log 3 days, GitHub Enterprise Server 7. Of
/// deliveries missed 5 days ago, github.com lists none (nothing can be
/// asked again: the walk completes, finding none); GHES lists them all,
/// and recovery, looking back over GHES's window, gets every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_missed_five_days_ago_come_back_from_ghes_only() {
    for ghes in [false, true] {
        let port = free_port();
        let hub = hub_for(port, |c| {
            c.enterprise = ghes.then(fakehub::config::EnterpriseConfig::default);
        })
        .await;
        let missed = send(&hub, 6).await;
        hub.hub().log.lock().unwrap().age(5 * 86_400);
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), port, &hub);
        let t = TestApp::start_in(dir, c).await;
        if ghes {
            journaled_all(&t, &missed, Duration::from_secs(30)).await;
            asked_once_each(&hub, 6).await;
        } else {
            let deadline = Instant::now() + Duration::from_secs(30);
            let walk = loop {
                let walks = t.store().walks(10).await.unwrap();
                if let Some(w) = walks.into_iter().find(|w| w.state == WalkState::Complete) {
                    break w;
                }
                assert!(Instant::now() < deadline, "the walk never completed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!((walk.seen, walk.missing), (0, 0), "{walk:?}");
            assert!(redeliveries(&hub).is_empty());
            let census = t.census().await;
            assert!(missed.iter().all(|g| census.with_guid(g) == 0));
        }
        t.stop().await;
    }
}

/// Completeness: deliveries GitHub attempted while gatehouse was down show
/// as missing (ratio, count, oldest age) until a walk brings them back,
/// then as recovered; an App without webhooks is not counted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completeness_counts_what_was_missed_then_what_came_back() {
    let port = free_port();
    // GitHub fails the first 7 redelivery requests: the first walk finds
    // what is missing but cannot bring it back.
    let hub = hub_for(port, |c| {
        let mut f = FaultConfig::new("POST /app/hook/deliveries/*/attempts");
        f.error_rate = 1.0;
        f.max_hits = Some(7);
        c.faults.push(f);
        let mut b = fakehub::Config::default()
            .app(202, &key("app-b.pub.pem"), &[(21, "octo-org")])
            .apps
            .remove(0);
        // Its receiver is gone: every delivery fails on GitHub's side.
        b.webhook_url = Some(format!("http://127.0.0.1:{}/", free_port()));
        b.hook_id = Some(556);
        c.apps.push(b);
    })
    .await;
    let with_both = |dir: &std::path::Path| {
        let mut c = config(dir, port, &hub);
        c.github = github_config(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]);
        c.github.apps[1].webhook = false;
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let c = with_both(dir.path());
    let t = TestApp::start_in(dir, c).await;
    let arrived = send(&hub, 20).await;
    journaled_all(&t, &arrived, Duration::from_secs(30)).await;
    let dir = t.stop().await;
    let missed = send(&hub, 7).await;
    // App 202's log has failures too, but recovery is told it sends no
    // webhooks: it is neither walked nor counted.
    push_deliveries(&hub, HookRef::App(202), 3).await;
    // GitHub tried them an hour ago.
    hub.hub().log.lock().unwrap().age(3600);

    let c = with_both(dir.path());
    let t = TestApp::start_in(dir, c).await;
    // The walk is complete and its 7 requests failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = t.store().recovery_status().await.unwrap();
        let failed = status
            .first()
            .map_or(0, |s| s.requests.get("failed").copied().unwrap_or(0));
        if status
            .first()
            .is_some_and(|s| s.last_walk.state == WalkState::Complete)
            && failed == 7
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first walk never settled: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = t.metrics().await;
    let m = |s: &str| common::metric(&text, s);
    let ratio = m("gatehouse_recovery_completeness_ratio{source=\"app:101\"}").unwrap();
    assert!((ratio - 20.0 / 27.0).abs() < 1e-9, "{ratio}");
    let oldest = m("gatehouse_recovery_oldest_missing_seconds{source=\"app:101\"}").unwrap();
    assert!((3600.0..3700.0).contains(&oldest), "{oldest}");
    for (state, n) in [
        ("attempted", 27.0),
        ("held", 20.0),
        ("recovered", 0.0),
        ("missing", 7.0),
    ] {
        assert_eq!(
            m(&format!(
                "gatehouse_recovery_window_deliveries{{source=\"app:101\",state=\"{state}\"}}"
            )),
            Some(n),
            "{state}"
        );
    }
    assert!(
        !text.contains("source=\"app:202\""),
        "an App without webhooks is not counted"
    );
    // The overview leads with it, and lists the problem.
    let admin = common::admin::Admin::login(&t.base).await;
    let page = admin.get("/admin/").await.body;
    assert!(
        page.contains("74.1% of the last 7 days&#39; deliveries are in the journal; 7 missing"),
        "{page}"
    );
    assert!(page.contains("data-key=\"completeness:app:101\""), "{page}");

    // The next walk brings them back: recovered, nothing missing.
    t.store()
        .trigger(None, gatehouse::clock::now_ms())
        .await
        .unwrap();
    journaled_all(&t, &missed, Duration::from_secs(30)).await;
    let c = t.store().completeness(0).await.unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (
            c[0].attempted,
            c[0].recovered,
            c[0].missing,
            c[0].oldest_missing_ms
        ),
        (27, 7, 0, None)
    );
    let text = t.metrics().await;
    let m = |s: &str| common::metric(&text, s);
    assert_eq!(
        m("gatehouse_recovery_completeness_ratio{source=\"app:101\"}"),
        Some(1.0)
    );
    assert_eq!(
        m("gatehouse_recovery_oldest_missing_seconds{source=\"app:101\"}"),
        Some(0.0)
    );
    let page = admin.get("/admin/").await.body;
    assert!(
        !page.contains("data-key=\"completeness:app:101\""),
        "{page}"
    );
    assert!(page.contains("100% of the last 7 days"), "{page}");

    // `gatehouse recovery status` says the same.
    let file = binary::write_config(
        t.dir.path(),
        &t.db_path,
        &format!(
            "[github]\napi_url = {:?}\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n[[github.apps]]\nid = 202\nprivate_key_file = {:?}\nwebhook = false\n",
            hub.url(),
            format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR")),
            format!("{}/fakehub/testdata/app-b.pem", env!("CARGO_MANIFEST_DIR"))
        ),
    );
    let (status, out) = binary::run(
        &["recovery", "status", "--config", file.to_str().unwrap()],
        None,
    );
    assert!(status.success(), "{out}");
    assert!(
        out.contains(
            "100% of 27 deliveries GitHub attempted are in the journal; 7 recovered, 0 missing"
        ),
        "{out}"
    );
    assert!(!out.contains("  app:202 "), "{out}");
    t.stop().await;
}
