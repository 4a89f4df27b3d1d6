//! The credential pool against fakehub: App JWTs and installation tokens,
//! discovery, budget-based choice, one request in flight per credential,
//! secondary-limit pauses (invariant 5).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::hub::{github_config, key};
use fakehub::config::FaultConfig;
use fakehub::{Config as HubConfig, FakeHub};
use gatehouse::github::{CredId, Pool, PoolError, Request};

/// Two Apps (101, 202) both installed on octo-org (11 and 21).
fn two_apps() -> HubConfig {
    let mut c = HubConfig::default()
        .org("octo-org", &["widgets", "gadgets"])
        .user("octo-user", &["dotfiles"])
        .app(
            101,
            &key("app-a.pub.pem"),
            &[(11, "octo-org"), (12, "octo-user")],
        )
        .app(202, &key("app-b.pub.pem"), &[(21, "octo-org")])
        .token("bot", "ghp_pooltoken");
    c.fixtures = Some(common::fixtures());
    c
}

/// [`two_apps`], each repository read taking 3 ms: long enough for
/// callers to overlap.
fn slow_two_apps() -> HubConfig {
    let mut c = two_apps();
    let mut slow = FaultConfig::new("GET /repos/**");
    slow.latency_ms = 3;
    c.faults.push(slow);
    c
}

fn pool(hub: &FakeHub, apps: &[(i64, &str)], tokens: &[&str]) -> Pool {
    Pool::new(&github_config(hub, apps, tokens)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn app_jwts_and_installation_tokens_are_accepted_and_reused() {
    let hub = FakeHub::start(two_apps()).await.unwrap();
    // PKCS#8 and PKCS#1 keys both work.
    let p = pool(&hub, &[(101, "app-a.pkcs1.pem")], &[]);
    for _ in 0..3 {
        let a = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(
            a.credential,
            CredId::Installation {
                app: 101,
                installation: 11
            }
        );
    }
    let a = p
        .send("octo-user", Request::get("/repos/octo-user/dotfiles"))
        .await
        .unwrap();
    assert_eq!(
        a.credential,
        CredId::Installation {
            app: 101,
            installation: 12
        }
    );
    let s = hub.stats();
    // JWT calls: org lookup, one token for 11; user lookup (orgs 404, users), one token for 12.
    assert_eq!(
        s.tokens["app:101"].requests, 5,
        "tokens and discovery are cached"
    );
    assert_eq!(s.installations[&11].requests, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_spreads_by_budget_and_never_meets_a_rate_limit_while_budget_remains() {
    let mut c = two_apps();
    c.rate_limit.core = 5;
    let hub = FakeHub::start(c).await.unwrap();
    let p = pool(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]);
    let mut used = HashSet::new();
    for i in 0..10 {
        let a = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(
            a.status, 200,
            "request {i} met a limit while budget remained"
        );
        used.insert(a.credential);
    }
    assert_eq!(used.len(), 2, "both Apps carried traffic");
    let s = hub.stats();
    assert_eq!(s.installations[&11].units_spent, 5);
    assert_eq!(s.installations[&21].units_spent, 5);
    assert_eq!(
        s.installations[&11].rate_limited + s.installations[&21].rate_limited,
        0
    );
    // Both spent: an answer at once, shaped like GitHub's, with the reset.
    let started = Instant::now();
    let err = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(200));
    let PoolError::Exhausted { reset, .. } = err else {
        panic!("{err}")
    };
    let fakehub_reset = hub.hub().limits.bucket(
        &fakehub::auth::Credential::Installation {
            installation_id: 11,
            token: String::new(),
        },
        fakehub::limits::Resource::Core,
        fakehub::world::now_secs(),
    );
    assert!(
        (reset - fakehub_reset.reset).abs() <= 1,
        "reset {reset} vs {}",
        fakehub_reset.reset
    );
    let (status, headers, _) = err.github_shaped().unwrap();
    assert_eq!(status, 403);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-reset"], reset.to_string().as_str());
    assert_eq!(
        hub.stats().installations[&11].rate_limited,
        0,
        "nothing was sent to a spent credential"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_callers_keep_one_request_in_flight_per_credential() {
    let hub = FakeHub::start(slow_two_apps()).await.unwrap();
    let p = std::sync::Arc::new(pool(&hub, &[(101, "app-a.pem")], &[]));
    read_at_once(&[p], 64).await;
    let s = hub.stats();
    assert_eq!(s.installations[&11].requests, 64);
    assert_eq!(
        s.installations[&11].max_concurrency, 1,
        "serial per installation"
    );
    let token_max = s
        .tokens
        .iter()
        .filter(|(k, _)| k.starts_with("ghs_"))
        .map(|(_, u)| u.max_concurrency)
        .max();
    assert_eq!(token_max, Some(1), "serial per token");
    let minted = s.tokens.keys().filter(|k| k.starts_with("ghs_")).count();
    assert_eq!(minted, 1, "64 callers at once, one token minted");
}

/// Three replicas' pools on one PostgreSQL, 24 callers each at once: still
/// one request in flight per installation and per token at GitHub, the
/// lane being a row they share (a replica that frees it late, or never,
/// costs waiting, not a second request).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_a_database_keep_one_request_in_flight_per_credential() {
    let hub = FakeHub::start(slow_two_apps()).await.unwrap();
    let pg = common::pg::Cluster::start();
    let url = pg.database("lanes").await;
    let pools = replicas(&hub, &url, 3, |c| {
        *c = github_config(&hub, &[(101, "app-a.pem")], &[]);
    })
    .await;
    read_at_once(&pools, 24).await;
    let s = hub.stats();
    assert_eq!(s.installations[&11].requests, 72);
    assert_eq!(
        s.installations[&11].max_concurrency, 1,
        "serial per installation across replicas"
    );
}

/// A replica that took a credential's lane but hears so only after the
/// lane's margin (frozen, or its database's answers delayed) may find it
/// lapsed and taken by another replica, whose request is at GitHub now:
/// it must not send on the lane it took, but take it again, and wait.
/// Here the first replica's answers from PostgreSQL pass through a relay
/// that holds them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_hears_late_that_it_took_a_lane_does_not_send_on_it() {
    use gatehouse::clock::{Clock, ManualClock};
    use gatehouse::store::postgres::{Postgres, Target};
    let mut c = two_apps();
    // The other replica's read stays at GitHub well past the hold below.
    let mut slow = FaultConfig::new("GET /repos/octo-org/gadgets");
    slow.latency_ms = 8_000;
    c.faults.push(slow);
    let hub = FakeHub::start(c).await.unwrap();
    let pg = common::pg::Cluster::start();
    let url = pg.database("late").await;
    let mut config = github_config(&hub, &[], &["ghp_pooltoken"]);
    config.max_wait_secs = 30;
    let hold = Duration::from_secs(config.timeout_secs + 5);

    // The other replica first (it brings the schema), on a clock past the
    // first's lane: once that is taken, it has lapsed for this one.
    let other_store = Postgres::connect(
        &Target::new(&url, None).unwrap(),
        gatehouse::store::metrics::JournalMetrics::unregistered(),
    )
    .await
    .unwrap();
    let later = ManualClock::starting_now();
    later.advance(hold.as_millis() as i64 + 1_000);
    let other = std::sync::Arc::new(
        Pool::new(&config)
            .unwrap()
            .with_clock(later.clone() as std::sync::Arc<dyn Clock>)
            .with_shared_lanes(
                gatehouse::store::Store::from_backend(std::sync::Arc::new(other_store)),
                "replica-b".into(),
            ),
    );
    let relay = common::relay::Relay::start(pg.port).await;
    let relayed = url.replace(&format!(":{}/", pg.port), &format!(":{}/", relay.port));
    let late_store = Postgres::connect_beside(&Target::new(&relayed, None).unwrap())
        .await
        .unwrap();
    let late = std::sync::Arc::new(Pool::new(&config).unwrap().with_shared_lanes(
        gatehouse::store::Store::from_backend(std::sync::Arc::new(late_store)),
        "replica-a".into(),
    ));
    let read = |p: &std::sync::Arc<Pool>, repo: &'static str| {
        let p = p.clone();
        tokio::spawn(async move {
            p.send("octo-org", Request::get(&format!("/repos/octo-org/{repo}")))
                .await
                .unwrap()
                .status
        })
    };
    // Once with nothing held: its statements are prepared, so the next
    // answer it waits for is the lane's.
    assert_eq!(read(&late, "widgets").await.unwrap(), 200);

    relay.hold();
    let first = read(&late, "widgets");
    tokio::time::timeout(Duration::from_secs(10), relay.holding())
        .await
        .expect("the lane was taken, its answer held");
    let frozen_at = Instant::now();
    let second = read(&other, "gadgets");
    common::eventually(
        "the other replica's read is at GitHub",
        Duration::from_secs(10),
        async || hub.stats().tokens["pat:bot"].in_flight == 1,
    )
    .await;
    // Longer than the lane's margin: what the first replica took is spent.
    tokio::time::sleep_until((frozen_at + Duration::from_millis(5_500)).into()).await;
    relay.release();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let s = hub.stats();
    assert_eq!(s.tokens["pat:bot"].requests, 3);
    assert_eq!(
        s.tokens["pat:bot"].max_concurrency, 1,
        "the late replica waited for the lane instead of sending beside the other"
    );
}

/// `each` callers per pool read the same repository at once; every read
/// succeeds.
async fn read_at_once(pools: &[std::sync::Arc<Pool>], each: usize) {
    let mut tasks = Vec::new();
    for p in pools {
        for _ in 0..each {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                p.send("octo-org", Request::get("/repos/octo-org/widgets"))
                    .await
                    .unwrap()
                    .status
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

/// Pools as replicas would run them: each with its own store handle on one
/// PostgreSQL database, sharing lanes.
async fn replicas(
    hub: &FakeHub,
    url: &str,
    n: usize,
    cfg: impl Fn(&mut gatehouse::config::GithubConfig),
) -> Vec<std::sync::Arc<Pool>> {
    use gatehouse::store::postgres::{Postgres, Target};
    let mut pools = Vec::new();
    for i in 0..n {
        let store = Postgres::connect(
            &Target::new(url, None).unwrap(),
            gatehouse::store::metrics::JournalMetrics::unregistered(),
        )
        .await
        .unwrap();
        let store = gatehouse::store::Store::from_backend(std::sync::Arc::new(store));
        let mut c = github_config(hub, &[], &[]);
        cfg(&mut c);
        pools.push(std::sync::Arc::new(
            Pool::new(&c)
                .unwrap()
                .with_shared_lanes(store, format!("replica-{i}").into()),
        ));
    }
    pools
}

/// One budget per credential across replicas: what one replica's answer
/// said of remaining, reset and a secondary limit binds the others before
/// they send, not after GitHub refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_a_database_share_each_credentials_budget_and_pause() {
    let mut c = two_apps();
    c.rate_limit.core = 6;
    c.rate_limit.window_secs = 600;
    // The first request for gadgets meets a secondary limit.
    let mut secondary = FaultConfig::new("GET /repos/octo-org/gadgets");
    secondary.error_rate = 1.0;
    secondary.error_status = 403;
    secondary.retry_after_secs = Some(60);
    secondary.max_hits = Some(1);
    c.faults.push(secondary);
    let hub = FakeHub::start(c).await.unwrap();
    let pg = common::pg::Cluster::start();
    let url = pg.database("budgets").await;
    // Two replicas with the App's installation, two with the token.
    let with = |apps: &'static [(i64, &'static str)], tokens: &'static [&'static str]| {
        let hub = &hub;
        move |c: &mut gatehouse::config::GithubConfig| {
            *c = github_config(hub, apps, tokens);
            c.reserve = 2;
            c.max_wait_secs = 0;
        }
    };
    let pools = replicas(&hub, &url, 2, with(&[(101, "app-a.pem")], &[])).await;
    let tokened = replicas(&hub, &url, 2, with(&[], &["ghp_pooltoken"])).await;
    let installation = CredId::Installation {
        app: 101,
        installation: 11,
    };
    // Limit 6, reserve 2, the replicas taking turns: four requests in all
    // go to the installation; each replica alone would have sent more.
    let mut spent_on_installation = 0;
    for i in 0..8 {
        let a = pools[i % 2]
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await;
        match a {
            Ok(a) => {
                assert_eq!((a.status.as_u16(), &a.credential), (200, &installation));
                spent_on_installation += 1;
            }
            Err(e) => assert!(matches!(e, PoolError::Exhausted { .. }), "{e}"),
        }
    }
    assert_eq!(spent_on_installation, 4);
    let s = hub.stats();
    assert_eq!(
        s.installations[&11].units_spent, 4,
        "the reserve was never spent"
    );
    assert_eq!(s.installations[&11].rate_limited, 0);
    // The token meets its secondary limit through replica 0 ...
    let first = tokened[0]
        .send("octo-org", Request::get("/repos/octo-org/gadgets"))
        .await
        .unwrap();
    assert_eq!(first.status, 403);
    // ... and replica 1 sends it nothing for the pause.
    let err = tokened[1]
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::Exhausted { .. }), "{err}");
    assert_eq!(hub.stats().tokens["pat:bot"].requests, 1);
    // And without sending at all, replica 1 learns both by reading what
    // replica 0 left (its status and /metrics follow).
    let fresh = replicas(
        &hub,
        &url,
        1,
        with(&[(101, "app-a.pem")], &["ghp_pooltoken"]),
    )
    .await
    .remove(0);
    fresh.refresh_shared().await;
    let seen = fresh.snapshot();
    let of = |id: &CredId| seen.iter().find(|c| &c.id == id).unwrap();
    let core = of(&installation)
        .budgets
        .iter()
        .find(|(r, _)| *r == gatehouse::github::budget::Resource::Core)
        .map(|(_, b)| b.remaining);
    assert_eq!(core, Some(2));
    assert!(of(&CredId::Token("bot".into())).paused);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secondary_limit_pauses_that_credential_for_its_retry_after() {
    let mut c = two_apps();
    let mut secondary = FaultConfig::new("GET /repos/**");
    secondary.credential = Some("installation:11".into());
    secondary.error_rate = 1.0;
    secondary.error_status = 403;
    secondary.retry_after_secs = Some(2);
    secondary.max_hits = Some(1);
    c.faults.push(secondary);
    let hub = FakeHub::start(c).await.unwrap();
    // The pause is judged on the pool's clock, which the test moves.
    let clock = gatehouse::clock::ManualClock::starting_now();
    let p = pool(&hub, &[(101, "app-a.pem")], &["ghp_pooltoken"]).with_clock(clock.clone());
    // Fresh credentials are tried first: the installation, which is limited.
    let first = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(first.status, 403);
    assert_eq!(
        first.credential,
        CredId::Installation {
            app: 101,
            installation: 11
        }
    );
    // Until 4 ms before its retry-after (2 s) has passed.
    for _ in 0..4 {
        clock.advance(499);
        let a = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(
            a.credential,
            CredId::Token("bot".into()),
            "the paused credential gets nothing"
        );
    }
    assert_eq!(hub.stats().installations[&11].requests, 1);
    clock.advance(10);
    // After its retry-after it is chosen again (never used budget beats the token's).
    let a = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        a.credential,
        CredId::Installation {
            app: 101,
            installation: 11
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_without_an_installation_or_token_get_a_clear_error() {
    let hub = FakeHub::start(two_apps()).await.unwrap();
    let p = pool(&hub, &[(202, "app-b.pem")], &[]);
    let err = p
        .send("octo-user", Request::get("/repos/octo-user/dotfiles"))
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::NoCredential(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn installation_tokens_are_refreshed_ahead_of_expiry() {
    let mut c = two_apps();
    // The pool refreshes 300 s ahead; a 302 s token is fresh for 1-2 s
    // (expiry times have whole seconds, so 301 s could leave a few ms).
    c.installation_token_secs = 302;
    let hub = FakeHub::start(c).await.unwrap();
    let p = pool(&hub, &[(101, "app-a.pem")], &[]);
    p.send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    p.send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    let minted = |hub: &FakeHub| {
        hub.stats()
            .tokens
            .keys()
            .filter(|k| k.starts_with("ghs_"))
            .count()
    };
    assert_eq!(minted(&hub), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let a = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(minted(&hub), 2, "a new token before the old one expires");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reserve_is_left_for_people_and_a_near_reset_is_waited_for() {
    let mut c = two_apps();
    c.rate_limit.core = 5;
    c.rate_limit.window_secs = 2;
    let hub = FakeHub::start(c).await.unwrap();
    let mut cfg = github_config(&hub, &[(101, "app-a.pem")], &[]);
    cfg.reserve = 2;
    cfg.max_wait_secs = 5;
    let p = Pool::new(&cfg).unwrap();
    // Limit 5, reserve 2: three requests, then the pool waits for the
    // reset (2 s window) rather than dipping into the reserve.
    for _ in 0..3 {
        assert_eq!(
            p.send("octo-org", Request::get("/repos/octo-org/widgets"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let started = Instant::now();
    let a = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "waited for the reset: {:?}",
        started.elapsed()
    );
    let s = hub.stats();
    assert_eq!(s.installations[&11].rate_limited, 0);
    assert_eq!(
        s.installations[&11].units_spent, 4,
        "the reserve was never spent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installation_webhook_makes_the_pool_look_again() {
    let hub = FakeHub::start(two_apps()).await.unwrap();
    let t = common::TestApp::spawn_with(|c| {
        c.github = github_config(&hub, &[(101, "app-a.pem")], &[]);
        // Its walk of the App's delivery log would be one more JWT call.
        c.recovery.enabled = false;
    })
    .await;
    let p = t
        .app
        .github_pool()
        .expect("a pool when [github] names credentials")
        .clone();
    p.send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    p.send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    let jwt_calls = |hub: &FakeHub| hub.stats().tokens["app:101"].requests;
    assert_eq!(jwt_calls(&hub), 2, "one lookup, one token");
    // GitHub says the App's installation on octo-org changed.
    let mut v: serde_json::Value = serde_json::from_slice(&common::compact(
        &common::fixtures().join("payloads/installation/created.payload.json"),
    ))
    .unwrap();
    v["installation"]["account"]["login"] = "octo-org".into();
    let d = common::Delivery::json("installation", "inst-1", serde_json::to_vec(&v).unwrap());
    assert_eq!(t.send(&d).await.status(), 202);
    p.send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(jwt_calls(&hub), 3, "looked up again; the token was kept");
    let m = t.metrics().await;
    let cred = r#"credential="app:101/installation:11""#;
    assert_eq!(
        common::metric(&m, &format!("gatehouse_github_requests_total{{{cred}}}")),
        Some(3.0)
    );
    assert_eq!(
        common::metric(
            &m,
            &format!("gatehouse_github_queue_wait_seconds_count{{{cred}}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        common::metric(
            &m,
            &format!(r#"gatehouse_github_rate_remaining{{{cred},resource="core"}}"#)
        ),
        Some(4997.0)
    );
    assert_eq!(
        common::metric(
            &m,
            &format!(r#"gatehouse_github_rate_limit{{{cred},resource="core"}}"#)
        ),
        Some(5000.0)
    );
    assert!(!m.contains("ghs_"), "no token in the metrics");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_status_probes_every_credential_without_spending() {
    let mut c = two_apps();
    c.rate_limit.core = 50;
    let hub = FakeHub::start(c).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = common::binary::write_config(
        dir.path(),
        &dir.path().join("g.db"),
        &format!(
            "\n[github]\napi_url = \"{}\"\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[[github.tokens]]\nname = \"bot\"\ntoken = \"ghp_pooltoken\"\n",
            hub.url(),
            format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"))
        ),
    );
    let config = config.to_str().unwrap().to_string();
    let (status, out) = tokio::task::spawn_blocking(move || {
        common::binary::run(&["github", "status", "--config", &config], None)
    })
    .await
    .unwrap();
    assert!(status.success(), "{out}");
    for want in [
        "app:101/installation:11",
        "app:101/installation:12",
        "token:bot",
        "octo-user",
    ] {
        assert!(out.contains(want), "{want} in {out}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains("installation:11") && l.contains("core") && l.contains("50")),
        "{out}"
    );
    assert!(!out.contains("ghp_pooltoken"), "no secret in the output");
    let s = hub.stats();
    assert_eq!(
        s.installations[&11].units_spent, 0,
        "GET /rate_limit is free"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_itself_reads_its_hook_deliveries_one_request_at_a_time() {
    let mut c = two_apps();
    // Nothing listens there: every delivery is logged as failed, as when
    // gatehouse is down.
    c.apps[0].webhook_url = Some("http://127.0.0.1:9/webhooks/github".into());
    c.apps[0].webhook_secret = Some("s".into());
    let hub = FakeHub::start(c).await.unwrap();
    common::hub::push_deliveries(&hub, fakehub::HookRef::App(101), 3).await;
    let p = std::sync::Arc::new(pool(&hub, &[(101, "app-a.pem")], &[]));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                p.send_app(101, Request::get("/app/hook/deliveries?per_page=2"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.credential, CredId::App(101));
        let page: Vec<serde_json::Value> = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(page.len(), 2, "newest first, two per page");
        assert!(page.iter().all(|d| d["status_code"] != 200));
        assert!(a.headers.get("link").is_some(), "a next page");
    }
    let s = hub.stats();
    assert_eq!(s.tokens["app:101"].requests, 8);
    assert_eq!(
        s.tokens["app:101"].max_concurrency, 1,
        "one JWT request in flight"
    );
    // Its budget is tracked like any credential's; an unknown App is refused.
    assert!(p.snapshot().iter().any(|c| c.id == CredId::App(101)));
    assert!(matches!(
        p.send_app(999, Request::get("/app/hook/deliveries")).await,
        Err(PoolError::Config(_))
    ));
    assert_eq!("app:101".parse::<CredId>().unwrap(), CredId::App(101));
    assert_eq!(CredId::App(101).to_string(), "app:101");
}

/// GitHub Enterprise Server releases still word a secondary limit the old
/// way ("abuse detection mechanism"), and a 403 may carry only
/// `retry-after`: each pauses the credential that met it, and the next
/// request goes to another.
#[tokio::test(flavor = "multi_thread")]
async fn the_older_abuse_wording_and_a_bare_retry_after_pause_the_credential() {
    let abuse = "You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.";
    for (message, retry_after) in [(abuse, None), ("Forbidden", Some(30))] {
        let mut c = two_apps();
        let mut limited = FaultConfig::new("GET /repos/**");
        limited.credential = Some("installation:11".into());
        limited.error_rate = 1.0;
        limited.error_status = 403;
        limited.message = Some(message.into());
        limited.retry_after_secs = retry_after;
        limited.max_hits = Some(1);
        c.faults.push(limited);
        let hub = FakeHub::start(c).await.unwrap();
        let p = pool(&hub, &[(101, "app-a.pem")], &["ghp_pooltoken"]);
        let installation = CredId::Installation {
            app: 101,
            installation: 11,
        };
        let first = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(first.status, 403);
        assert_eq!(first.credential, installation);
        assert!(
            String::from_utf8_lossy(&first.body).contains(message),
            "fakehub said it"
        );
        let seen = p.snapshot();
        let paused = seen.iter().find(|c| c.id == installation).unwrap().paused;
        assert!(paused, "{message}: the installation is paused");
        let next = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(next.status, 200);
        assert_eq!(next.credential, CredId::Token("bot".into()), "{message}");
    }
}

/// `purposes` keeps a credential to its jobs: the gateway never spends an
/// App kept for recovery, recovery gets it, and a job no credential may
/// serve is told which setting to change.
#[tokio::test(flavor = "multi_thread")]
async fn purposes_keep_a_credential_to_its_jobs() {
    use gatehouse::config::Purpose;
    use gatehouse::github::Reach;
    let hub = FakeHub::start(two_apps()).await.unwrap();
    let mut cfg = github_config(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]);
    cfg.apps[0].purposes = vec![Purpose::Gateway];
    cfg.apps[1].purposes = vec![Purpose::Recovery];
    let p = Pool::new(&cfg).unwrap();
    let gateway = CredId::Installation {
        app: 101,
        installation: 11,
    };
    let recovery = CredId::Installation {
        app: 202,
        installation: 21,
    };
    for _ in 0..5 {
        let a = p
            .send_within(
                "octo-org",
                Reach::Any,
                Request::get("/repos/octo-org/widgets"),
            )
            .await
            .unwrap();
        assert_eq!(a.credential, gateway, "the gateway's");
    }
    let a = p
        .send_for(
            Purpose::Recovery,
            "octo-org",
            Request::get("/repos/octo-org/widgets"),
        )
        .await
        .unwrap();
    assert_eq!(a.credential, recovery, "recovery's");
    let e = p
        .send_for(
            Purpose::Sinks,
            "octo-org",
            Request::get("/repos/octo-org/widgets"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::NotForPurpose { .. }), "{e}");
    assert!(
        e.to_string().contains("add \"sinks\" to the purposes"),
        "{e}"
    );
    let s = hub.stats();
    assert_eq!(s.installations[&11].requests, 5);
    assert_eq!(s.installations[&21].requests, 1);
}

/// Against GitHub Enterprise Server (`api_url` = `https://HOST/api/v3`):
/// REST under the prefix, GraphQL at `/api/graphql`, and `/meta` says
/// which release it is; github.com's says none.
#[tokio::test(flavor = "multi_thread")]
async fn the_pool_speaks_to_github_enterprise_server() {
    let hub = FakeHub::start(two_apps().enterprise("3.19.0"))
        .await
        .unwrap();
    assert!(hub.url().ends_with("/api/v3"), "{}", hub.url());
    let p = pool(&hub, &[(101, "app-a.pem")], &[]);
    let a = p
        .send("octo-org", Request::get("/repos/octo-org/widgets"))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(
        body["url"].as_str().unwrap().starts_with(hub.url()),
        "GHES's URLs: {}",
        body["url"]
    );
    let mut q = Request::post("/graphql");
    q.body = bytes::Bytes::from_static(
        br#"{"query":"query { repository(owner: \"octo-org\", name: \"widgets\") { pullRequest(number: 1) { title } } }"}"#,
    );
    q.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let g = p.send("octo-org", q).await.unwrap();
    assert_eq!(g.status, 200, "{}", String::from_utf8_lossy(&g.body));
    let g: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(
        g["data"]["repository"]["pullRequest"]["title"], "Pull request 1 for widgets",
        "{g}"
    );
    assert_eq!(p.enterprise_version().await.as_deref(), Some("3.19.0"));

    let mut dotcom = two_apps();
    dotcom.enterprise = None;
    let dotcom = FakeHub::start(dotcom).await.unwrap();
    let p = pool(&dotcom, &[(101, "app-a.pem")], &[]);
    assert_eq!(p.enterprise_version().await, None);
}

/// A selection changed without the pool hearing of it (the App has no
/// webhook): the installation's 404 for a repository it no longer sees
/// makes the pool look the owner up again (at most every 30 s) and ask
/// another credential, so the caller never sees that 404.
#[tokio::test(flavor = "multi_thread")]
async fn a_404_from_an_installation_that_lost_the_repository_is_asked_elsewhere() {
    let hub = FakeHub::start(two_apps()).await.unwrap();
    let clock = gatehouse::clock::ManualClock::starting_now();
    let p = pool(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]).with_clock(clock.clone());
    for _ in 0..4 {
        let a = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
    }
    let served = |i: i64| hub.stats().installations.get(&i).map_or(0, |u| u.requests);
    assert!(served(21) > 0, "both installations served widgets");
    // widgets leaves installation 21's selection; nobody tells the pool.
    assert!(
        hub.hub()
            .change_selection(21, "widgets", false)
            .await
            .unwrap()
            .is_none(),
        "App 202 has no webhook: no delivery"
    );
    // What the pool learned is past the 30 s in which a 404 does not
    // make it look again.
    clock.advance(31_000);
    let before = served(21);
    for _ in 0..6 {
        let a = p
            .send("octo-org", Request::get("/repos/octo-org/widgets"))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "never the stale installation's 404");
        assert_eq!(
            a.credential,
            CredId::Installation {
                app: 101,
                installation: 11
            }
        );
    }
    assert!(
        served(21) - before <= 2,
        "one 404 (and the selection's listing), then it is not asked again"
    );
    let known = p.installations();
    let selected = known
        .iter()
        .find(|i| i.app == 202)
        .and_then(|i| i.selected.clone());
    assert_eq!(selected, Some(vec!["gadgets".to_string()]));
}
