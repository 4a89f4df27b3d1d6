//! Several replicas of the real binary on one real PostgreSQL, behind a
//! real haproxy, as the README's "Several replicas" section sets them up;
//! deliveries posted through the load balancer while replicas and the
//! database fail under them. What must hold is what holds on one node:
//! every acknowledged delivery reaches the consumer; per organisation,
//! first arrivals follow acknowledgement order, no delivery starts before
//! the previous one succeeded, and never two are in flight; one delivery
//! sent to every replica at once is accepted once. Towards GitHub: never
//! two requests in flight per installation at fakehub, one budget, one
//! gateway cache and one login throttle for all replicas.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::Server;
use common::haproxy::Haproxy;
use common::pg::Cluster;
use common::{Delivery, compact, consumer};
use serde_json::Value;

/// Short enough for a test to wait one out; a route's timeout plus the
/// trust margin must fit under it.
const LEASE_SECS: u64 = 10;
const ROUTE_TIMEOUT_SECS: u64 = 3;

struct Replica {
    config: PathBuf,
    port: u16,
    server: Option<Server>,
}

impl Replica {
    fn new(dir: &Path, i: usize, url: &str, consumer: &str) -> Replica {
        let port = common::free_port();
        let own = dir.join(format!("r{i}"));
        std::fs::create_dir_all(&own).unwrap();
        let config = own.join("gatehouse.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [storage]\npath = {:?}\nurl = {url:?}\n\n\
                 [webhooks]\nsecrets = [{:?}]\n\n\
                 [processing]\nworkers = 8\nlease_secs = {LEASE_SECS}\n\n\
                 [[routes]]\nname = \"ci\"\nurl = {consumer:?}\ntimeout_secs = {ROUTE_TIMEOUT_SECS}\n",
                own.join("gatehouse.db").display().to_string(),
                common::SECRET,
            ),
        )
        .unwrap();
        Replica {
            config,
            port,
            server: None,
        }
    }

    fn start(&mut self) {
        self.server = Some(Server::start(&self.config));
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> i32 {
        self.server.as_ref().expect("running").pid()
    }
}

/// GitHub's push payload, the template of every delivery here.
fn push_template() -> Value {
    serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/push/payload.json"),
    ))
    .unwrap()
}

/// A push for `org`, its `k`th.
fn push(template: &Value, org: &str, k: usize) -> Vec<u8> {
    let mut v = template.clone();
    v["repository"]["owner"]["login"] = org.into();
    v["after"] = format!("{k:040}").into();
    serde_json::to_vec(&v).unwrap()
}

/// Posts `d` until a 2xx (as a sender that retries would), bounded.
async fn post_until_acked(client: &reqwest::Client, base: &str, d: &Delivery) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = d.send(client, base).await
            && r.status().is_success()
        {
            return r.status().as_u16();
        }
        assert!(Instant::now() < deadline, "{:?} never acknowledged", d.guid);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_keep_every_invariant_through_faults() {
    let pg = Cluster::start();
    let url = pg.database("gatehouse").await;
    // The consumer fails the first attempt of every seventh delivery, and
    // notes when each delivery first succeeded.
    let succeeded: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let script: consumer::Script = {
        let succeeded = succeeded.clone();
        Arc::new(move |a, seen| {
            let k: usize = a.guid.rsplit('-').next().unwrap().parse().unwrap();
            if seen == 0 && k % 7 == 3 {
                return (500, vec![]);
            }
            succeeded
                .lock()
                .unwrap()
                .entry(a.guid.clone())
                .or_insert_with(Instant::now);
            (200, vec![])
        })
    };
    let c = consumer::start(Duration::from_millis(20), script).await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::new(dir.path(), i, &url, &c.url))
        .collect();
    // Started together: they take turns migrating.
    std::thread::scope(|s| {
        for r in &mut replicas {
            s.spawn(|| r.start());
        }
    });
    let lb = Haproxy::start(&replicas.iter().map(|r| r.port).collect::<Vec<_>>());
    let template = push_template();

    // Ten organisations, each posting one delivery every 250 ms for about
    // 30 s, in order: a delivery is sent once the previous one was acked.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    const ORGS: usize = 10;
    const PER_ORG: usize = 120;
    let acked: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let mut posters = Vec::new();
    for o in 0..ORGS {
        let (client, base, template, acked) = (
            client.clone(),
            lb.base.clone(),
            template.clone(),
            acked.clone(),
        );
        posters.push(tokio::spawn(async move {
            let org = format!("org-{o}");
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            for k in 0..PER_ORG {
                tick.tick().await;
                let guid = format!("{org}-{k}");
                let d = Delivery::json("push", &guid, push(&template, &org, k));
                post_until_acked(&client, &base, &d).await;
                acked
                    .lock()
                    .unwrap()
                    .entry(org.clone())
                    .or_default()
                    .push(guid);
            }
        }));
    }

    // The faults, while deliveries flow.
    let started = Instant::now();
    let at = |secs: u64| tokio::time::sleep_until((started + Duration::from_secs(secs)).into());
    at(4).await;
    replicas[0].server.as_mut().unwrap().kill9();
    at(7).await;
    replicas[0].start();
    // Frozen past its lease: its partitions pass to the others, and
    // when it wakes it sends nothing on a lease it no longer holds.
    at(9).await;
    let frozen = replicas[1].pid();
    unsafe { libc::kill(frozen, libc::SIGSTOP) };
    at(9 + LEASE_SECS + 3).await;
    unsafe { libc::kill(frozen, libc::SIGCONT) };
    at(24).await;
    pg.restart_immediate();
    at(27).await;
    let killed = terminate_listeners(&pg).await;
    assert_eq!(
        killed, 3,
        "every replica's LISTEN connection was there to kill"
    );
    for p in posters {
        p.await.unwrap();
    }

    // Every acknowledged delivery arrives.
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert_eq!(total, ORGS * PER_ORG);
    c.wait_for(
        "every acknowledged delivery",
        Duration::from_secs(120),
        |a| {
            let got: std::collections::HashSet<&str> = a.iter().map(|x| x.guid.as_str()).collect();
            acked.values().flatten().all(|g| got.contains(g.as_str()))
        },
    )
    .await;

    let arrivals = c.arrivals();
    let succeeded = succeeded.lock().unwrap().clone();
    for (org, order) in &acked {
        // First arrivals follow acknowledgement order.
        let mut first: Vec<&str> = Vec::new();
        let mut first_at: HashMap<&str, Instant> = HashMap::new();
        for a in arrivals.iter().filter(|a| &a.org == org) {
            if !first_at.contains_key(a.guid.as_str()) {
                first_at.insert(&a.guid, a.at);
                first.push(&a.guid);
            }
        }
        let want: Vec<&str> = order.iter().map(String::as_str).collect();
        assert_eq!(
            first, want,
            "{org}: first arrivals in acknowledgement order"
        );
        // No delivery started before the one before it had succeeded.
        for pair in order.windows(2) {
            let done = succeeded[&pair[0]];
            assert!(
                first_at[pair[1].as_str()] > done,
                "{org}: {} started before {} succeeded",
                pair[1],
                pair[0]
            );
        }
    }
    let max = c.max_in_flight.lock().unwrap().clone();
    assert!(
        max.values().all(|n| *n == 1),
        "never two in flight per organisation: {max:?}"
    );
    let failed_once = (0..PER_ORG).filter(|k| k % 7 == 3).count() * ORGS;
    let repeats = arrivals.len() - total - failed_once;
    assert!(
        repeats <= 3 * 8 * 2,
        "only jobs in flight at a fault are repeated, got {repeats}"
    );

    // One delivery sent to every replica at the same instant: one 202,
    // the others 200 (a duplicate).
    let d = Delivery::json("push", "to-all-at-once", push(&template, "org-x", 0));
    let sends = replicas.iter().map(|r| {
        let (client, base, d) = (client.clone(), r.base(), &d);
        async move { d.send(&client, &base).await.unwrap().status().as_u16() }
    });
    let mut statuses = futures_util::future::join_all(sends).await;
    statuses.sort();
    assert_eq!(statuses, [200, 200, 202]);

    // Each replica's /metrics tells of the others and of the backend.
    let scrape = async |r: &Replica| common::scrape(&client, &r.base()).await;
    common::eventually(
        "every replica counts three alive",
        Duration::from_secs(45),
        async || {
            for r in &replicas {
                let m = scrape(r).await;
                if common::metric(&m, "gatehouse_storage_replicas_alive") != Some(3.0) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let mut retention_holders = 0.0;
    for r in &replicas {
        let m = scrape(r).await;
        retention_holders +=
            common::metric(&m, "gatehouse_duty_held{duty=\"retention\"}").unwrap_or(0.0);
        assert!(
            common::metric(&m, "gatehouse_storage_notifications_received_total").unwrap_or(0.0)
                > 0.0,
            "{m}"
        );
        assert!(
            common::metric(
                &m,
                "gatehouse_storage_operation_duration_seconds_count{op=\"acquire\"}"
            )
            .unwrap_or(0.0)
                > 0.0,
            "{m}"
        );
        assert!(m.contains("gatehouse_storage_clock_offset_seconds"), "{m}");
    }
    assert!(retention_holders <= 1.0, "one replica prunes at a time");
    drop(lb);
}

/// Ends every replica's LISTEN connection, as a network blip or an
/// administrator would; returns how many there were.
async fn terminate_listeners(pg: &Cluster) -> i64 {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // The replicas reconnect after the server's restart on their own
    // schedule: wait (bounded) until all three listen again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gatehouse-listen'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} replicas listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'gatehouse-listen'",
            &[],
        )
        .await
        .unwrap()
        .len() as i64
}

/// A config for one server: `storage` is the `[storage]` body.
fn server_config(dir: &Path, storage: &str, ci: &str, flaky: &str) -> PathBuf {
    let path = dir.join(format!("gatehouse-{}.toml", storage.len()));
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\n{storage}\n\n\
             [webhooks]\nsecrets = [{:?}]\n\n\
             [[routes]]\nname = \"ci\"\nurl = {ci:?}\n\n\
             [[routes]]\nname = \"flaky\"\nurl = {flaky:?}\nmax_attempts = 1\non_dead = \"skip\"\n\n\
             [routes.breaker]\nfailures = 0\n",
            common::SECRET,
        ),
    )
    .unwrap();
    path
}

fn gatehouse(args: &[&str]) -> (bool, String) {
    let (status, out) = common::binary::run(args, None);
    (status.success(), out)
}

fn dead_letters(config: &Path) -> usize {
    let (ok, out) = gatehouse(&[
        "deliveries",
        "list",
        "--config",
        config.to_str().unwrap(),
        "--state",
        "dead",
        "--json",
    ]);
    assert!(ok, "{out}");
    let start = out.find('[').expect("a JSON list");
    serde_json::from_str::<Vec<Value>>(&out[start..])
        .unwrap()
        .len()
}

/// An operator outgrowing one VM: the SQLite journal, with work still
/// pending and dead letters, moves to PostgreSQL with `gatehouse storage
/// copy`; a server on PostgreSQL then drains the pending work in journal
/// order, keeps the dead letters and still knows every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_journal_moves_to_postgres_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let failing = consumer::start(Duration::ZERO, consumer::always(500)).await;
    // Nothing listens here yet: ci's jobs stay pending.
    let closed = format!("http://127.0.0.1:{}/hook", common::free_port());
    let db = dir.path().join("journal.db");
    let sqlite_config = server_config(
        dir.path(),
        &format!("path = {:?}", db.display().to_string()),
        &closed,
        &failing.url,
    );
    let mut server = Server::start(&sqlite_config);
    let template = push_template();
    let client = reqwest::Client::new();
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for k in 0..5 {
        for org in ["org-a", "org-b", "org-c"] {
            let guid = format!("{org}-{k}");
            let d = Delivery::json("push", &guid, push(&template, org, k));
            assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
            sent.entry(org.to_string()).or_default().push(guid);
        }
    }
    common::eventually(
        "flaky's dead letters",
        Duration::from_secs(30),
        async || dead_letters(&sqlite_config) == 15,
    )
    .await;
    assert!(server.terminate().success());

    let pg = Cluster::start();
    let url = pg.database("moved").await;
    let working = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let pg_config = server_config(
        dir.path(),
        &format!(
            "path = {:?}\nurl = {url:?}",
            dir.path().join("replica.db").display().to_string()
        ),
        &working.url,
        &failing.url,
    );
    let cfg = pg_config.to_str().unwrap();
    let copy = || {
        gatehouse(&[
            "storage",
            "copy",
            "--from",
            db.to_str().unwrap(),
            "--to",
            &url,
        ])
    };
    // A dry run names every migration and changes nothing.
    let (ok, out) = gatehouse(&["migrate", "--config", cfg, "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("would apply: 1 journal, 2 jobs"), "{out}");
    assert!(out.contains("dry run: nothing changed"), "{out}");
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let migrated: bool = admin
        .query_one("SELECT to_regclass('gatehouse_schema') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!migrated, "a dry run migrates nothing");

    let (ok, out) = copy();
    assert!(ok, "{out}");
    assert!(out.contains("deliveries"), "{out}");
    assert!(out.contains("every count checked"), "{out}");
    let (ok, out) = gatehouse(&["migrate", "--config", cfg]);
    assert!(ok && out.contains("nothing to do"), "{out}");

    // On PostgreSQL: the pending work drains, in journal order.
    let server = Server::start(&pg_config);
    working
        .wait_for("the pending jobs", Duration::from_secs(30), |a| {
            a.len() >= 15
        })
        .await;
    for (org, guids) in &sent {
        let got: Vec<String> = working
            .arrivals()
            .iter()
            .filter(|a| &a.org == org)
            .map(|a| a.guid.clone())
            .collect();
        assert_eq!(&got, guids, "{org}: journal order");
    }
    assert_eq!(dead_letters(&pg_config), 15, "dead letters stay dead");
    // GitHub redelivering one it sent before the move: a duplicate.
    let d = Delivery::json("push", "org-a-0", push(&template, "org-a", 0));
    assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 200);
    let d = Delivery::json("push", "org-a-5", push(&template, "org-a", 5));
    assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
    working
        .wait_for(
            "a new delivery after the copied ones",
            Duration::from_secs(10),
            |a| a.iter().any(|x| x.guid == "org-a-5"),
        )
        .await;
    // A second copy never merges journals.
    let (ok, out) = copy();
    assert!(!ok && out.contains("already holds 16 deliveries"), "{out}");
}

/// With no traffic at all, a replica notices its database gone within
/// seconds (`/readyz` 503, so the load balancer stops sending), refuses
/// deliveries meanwhile, and is ready again by itself once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_database_without_traffic() {
    let pg = Cluster::start();
    let url = pg.database("gatehouse").await;
    let c = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::new(dir.path(), 0, &url, &c.url);
    r.start();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = async |client: &reqwest::Client| {
        client
            .get(format!("{}/readyz", r.base()))
            .send()
            .await
            .map(|x| x.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready(&client).await, 200);
    pg.stop_immediate();
    common::eventually(
        "/readyz 503 without traffic",
        Duration::from_secs(10),
        async || ready(&client).await == 503,
    )
    .await;
    let template = push_template();
    let d = Delivery::json("push", "while-down", push(&template, "acme", 0));
    assert_eq!(d.send(&client, &r.base()).await.unwrap().status(), 503);
    pg.start_again();
    common::eventually("/readyz 200 again", Duration::from_secs(20), async || {
        ready(&client).await == 200
    })
    .await;
    assert_eq!(d.send(&client, &r.base()).await.unwrap().status(), 202);
    c.wait_for("the delivery", Duration::from_secs(20), |a| a.len() == 1)
        .await;
}

/// The `github_workflow_*` lines of an exposition.
fn workflow_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("github_workflow_"))
        .map(str::to_string)
        .collect()
}

/// Workflow deliveries shuffled and repeated, spread over three replicas:
/// every replica's `github_workflow_*` metrics come out byte-equal to each
/// other's and to one SQLite node's fed the same deliveries, whichever
/// replica merged which.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_shows_the_actions_metrics_one_node_would() {
    use common::actions::{Rng, Shape, plan};
    let plan = plan(
        &common::fixtures(),
        &Shape {
            orgs: &["octo-org", "acme"],
            repos_per_org: 2,
            runs: 12,
            jobs_per_run: 3,
            start: 1_767_225_600,
            first_run: 9_000_000,
            seed: 13,
            open_jobs: 0,
            only_final: false,
        },
    );
    let mut deliveries = plan.deliveries.clone();
    // Out of order, with a third of them again.
    let mut rng = Rng::new(7);
    rng.shuffle(&mut deliveries);
    let again: Vec<_> = deliveries.iter().step_by(3).cloned().collect();
    deliveries.extend(again);

    let pg = Cluster::start();
    let url = pg.database("gatehouse").await;
    let dir = tempfile::tempdir().unwrap();
    let unused = format!("http://127.0.0.1:{}/hook", common::free_port());
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::new(dir.path(), i, &url, &unused))
        .collect();
    std::thread::scope(|s| {
        for r in &mut replicas {
            s.spawn(|| r.start());
        }
    });
    let single_dir = dir.path().join("single");
    std::fs::create_dir_all(&single_dir).unwrap();
    let single = Server::start(&common::binary::write_config(
        &single_dir,
        &single_dir.join("gatehouse.db"),
        "",
    ));
    let client = reqwest::Client::new();
    for (i, p) in deliveries.iter().enumerate() {
        let d = Delivery::json(p.event, &p.guid, p.body.clone());
        let to = &replicas[i % 3];
        let status = d.send(&client, &to.base()).await.unwrap().status().as_u16();
        assert!(status == 202 || status == 200, "{status}");
        let status = d
            .send(&client, &single.base)
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(status == 202 || status == 200, "{status}");
    }
    let want = async || workflow_lines(&common::scrape(&client, &single.base).await);
    common::eventually(
        "the single node's metrics settle",
        Duration::from_secs(30),
        async || {
            let m = common::scrape(&client, &single.base).await;
            common::metric(&m, "gatehouse_jobs_pending{sink=\"actions-metrics\"}") == Some(0.0)
        },
    )
    .await;
    let want = want().await;
    assert!(
        want.iter()
            .any(|l| l.starts_with("github_workflow_jobs_completed_total")),
        "{want:?}"
    );
    for r in &replicas {
        common::eventually(
            "a replica shows the same",
            Duration::from_secs(30),
            async || workflow_lines(&common::scrape(&client, &r.base()).await) == want,
        )
        .await;
    }
}

/// The gateway cache's bound in the GitHub replicas' test: room for a
/// few answers, so that the replicas' answers pass it.
const CACHE_MAX: u64 = 64 * 1024;

/// One replica's config for the GitHub side: the App, a gateway with a
/// fresh window for one path, the admin login.
fn github_replica(dir: &Path, i: usize, url: &str, hub: &fakehub::FakeHub) -> PathBuf {
    let own = dir.join(format!("g{i}"));
    std::fs::create_dir_all(&own).unwrap();
    let key = format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"));
    let written = common::binary::write_config(
        &own,
        &own.join("gatehouse.db"),
        &format!(
            "[github]\napi_url = {:?}\nreserve = 10\n\
             [[github.apps]]\nid = 101\nprivate_key_file = {key:?}\n\
             [gateway]\nlisten = \"127.0.0.1:0\"\ncache_max_bytes = {CACHE_MAX}\n\
             fair_share_below = 0\npriority_share = 0\n\
             [[gateway.fresh]]\npath = \"^/repos/octo-org/widgets$\"\nsecs = 300\n\
             [admin]\npassword_hash = {:?}\nlogin_attempts_per_minute = 3\n",
            hub.url().to_string(),
            common::admin::password_hash(),
        ),
    );
    let text = std::fs::read_to_string(&written).unwrap();
    let path = dir.join(format!("g{i}.toml"));
    std::fs::write(
        &path,
        text.replace("[storage]\n", &format!("[storage]\nurl = {url:?}\n")),
    )
    .unwrap();
    path
}

/// What replicas share of GitHub, through the real binaries: never two
/// requests in flight per installation, one budget (its reserve kept, no
/// 403 from GitHub), one response cache; and one login throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_githubs_limits_the_gateway_cache_and_the_login_throttle() {
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &common::hub::key("app-a.pub.pem"), &[(11, "octo-org")]);
    hub_config.fixtures = Some(common::fixtures());
    hub_config.rate_limit.core = 40;
    hub_config.rate_limit.window_secs = 600;
    // Long enough for requests from three replicas to overlap.
    let mut slow = fakehub::config::FaultConfig::new("GET /repos/**");
    slow.latency_ms = 5;
    hub_config.faults.push(slow);
    let hub = fakehub::FakeHub::start(hub_config).await.unwrap();
    let pg = Cluster::start();
    let url = pg.database("github").await;
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Server> = (0..3)
        .map(|i| Server::start(&github_replica(dir.path(), i, &url, &hub)))
        .collect();
    let gateways: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.gateway_addr().expect("gateway started")))
        .collect();
    // A client added through one replica's CLI works on every replica.
    let token = common::binary::add_client(&dir.path().join("g0.toml"), "ci", "octo-org");
    let client = reqwest::Client::new();
    let get = |i: usize, path: String| {
        let (client, base, token) = (client.clone(), gateways[i % 3].clone(), token.clone());
        async move {
            let r = common::gateway_get(&client, format!("{base}{path}"), &token).await;
            let cache = r
                .headers()
                .get("x-gatehouse-cache")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), cache)
        }
    };

    // 24 different reads at once, 8 through each replica.
    let answers = futures_util::future::join_all(
        (0..24).map(|i| get(i, format!("/repos/octo-org/widgets?i={i}"))),
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let installation = |hub: &fakehub::FakeHub| hub.stats().installations[&11].clone();
    assert_eq!(installation(&hub).requests, 24);
    assert_eq!(
        installation(&hub).max_concurrency,
        1,
        "one request in flight per installation across replicas"
    );

    // One replica's fetch is the others' hit.
    assert_eq!(
        get(0, "/repos/octo-org/widgets".into()).await,
        (200, Some("miss".into()))
    );
    assert_eq!(
        get(1, "/repos/octo-org/widgets".into()).await,
        (200, Some("hit".into()))
    );
    assert_eq!(
        get(2, "/repos/octo-org/widgets".into()).await,
        (200, Some("hit".into()))
    );
    assert_eq!(installation(&hub).requests, 25);

    // Limit 40, reserve 10: five more units, whichever replica asks, then
    // gatehouse refuses before GitHub has to (fair shares are off here, so
    // the reserve alone decides).
    let mut statuses = Vec::new();
    for i in 0..9 {
        statuses.push(get(i, format!("/repos/octo-org/widgets?more={i}")).await.0);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses[5..].iter().all(|s| *s == 403), "{statuses:?}");
    let spent = installation(&hub);
    assert_eq!((spent.units_spent, spent.rate_limited), (30, 0));

    // Three wrong passwords, one at each replica: the fourth attempt is
    // refused wherever it goes, even with the right password.
    for base in servers.iter().map(|s| s.base.clone()) {
        let page = common::admin::Admin::anonymous(&base)
            .try_login("wrong")
            .await;
        assert_eq!(page.status, 401, "{}", page.body);
    }
    let page = common::admin::Admin::anonymous(&servers[1].base)
        .try_login(common::admin::PASSWORD)
        .await;
    assert_eq!(page.status, 429, "{}", page.body);

    // Past its bound, the shared cache is trimmed by one replica at a time
    // (a pass every few seconds), and every replica reports its size.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut scrapes = Vec::new();
        for s in &servers {
            scrapes.push(
                client
                    .get(format!("{}/metrics", s.base))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        let of = |m: &str, name: &str| common::metric(m, name).unwrap_or(0.0);
        let evicted: f64 = scrapes
            .iter()
            .map(|m| of(m, "gatehouse_gateway_cache_evictions_total"))
            .sum();
        let holders: f64 = scrapes
            .iter()
            .map(|m| of(m, "gatehouse_duty_held{duty=\"gateway-cache\"}"))
            .sum();
        let within = scrapes.iter().all(|m| {
            let size = of(m, "gatehouse_gateway_cache_size_bytes");
            size > 0.0 && size <= CACHE_MAX as f64
        });
        assert!(holders <= 1.0, "one replica evicts at a time");
        if evicted > 0.0 && within {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache was not trimmed: {scrapes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fair shares hold across replicas: each replica keeps its own tally and
/// sees only the clients that reach it, so each grants its part of a
/// share. A runaway pinned to one replica cannot spend what a client on
/// another needs; GitHub refuses nothing and the reserve is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runaway_on_one_replica_cannot_spend_another_replicas_clients_share() {
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &common::hub::key("app-a.pub.pem"), &[(11, "octo-org")]);
    hub_config.fixtures = Some(common::fixtures());
    hub_config.rate_limit.core = 100;
    hub_config.rate_limit.window_secs = 600;
    let hub = fakehub::FakeHub::start(hub_config).await.unwrap();
    let pg = Cluster::start();
    let url = pg.database("shares").await;
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let path = github_replica(dir.path(), i, &url, &hub);
            let text = std::fs::read_to_string(&path).unwrap();
            let on = text.replace(
                "fair_share_below = 0\npriority_share = 0\n",
                "fair_share_below = 0.5\npriority_share = 0.1\n",
            );
            assert_ne!(on, text, "the replica's config turned the rules off");
            std::fs::write(&path, on).unwrap();
            Server::start(&path)
        })
        .collect();
    let http = reqwest::Client::new();
    // Each replica counts the other alive (the first beat of the first
    // one only saw itself).
    common::eventually("both replicas alive", Duration::from_secs(30), async || {
        for s in &servers {
            let m = common::scrape(&http, &s.base).await;
            if common::metric(&m, "gatehouse_storage_replicas_alive") != Some(2.0) {
                return false;
            }
        }
        true
    })
    .await;
    let config = dir.path().join("g0.toml");
    let token = |name: &str| common::binary::add_client(&config, name, "octo-org");
    let (runaway, normal) = (token("runaway"), token("normal"));
    let gateways: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.gateway_addr().expect("gateway started")))
        .collect();
    let get = |i: usize, token: &str, path: String| {
        let (http, base, token) = (http.clone(), gateways[i].clone(), token.to_string());
        async move {
            let r = common::gateway_get(&http, format!("{base}{path}"), &token).await;
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    // The runaway reads without end through replica 0; the normal client
    // reads now and then through replica 1.
    let (mut refused, mut normal_ok, mut message) = (0, 0, String::new());
    for i in 0..200 {
        let (status, body) = get(0, &runaway, format!("/repos/octo-org/widgets?r={i}")).await;
        if status == 403 {
            refused += 1;
            message = body;
        } else {
            assert_eq!(status, 200, "{body}");
        }
        if i % 20 == 0 {
            let (status, body) = get(1, &normal, format!("/repos/octo-org/widgets?n={i}")).await;
            assert_eq!(
                status, 200,
                "the normal client keeps working (read {i}): {body}"
            );
            normal_ok += 1;
        }
    }
    assert_eq!(normal_ok, 10);
    assert!(refused > 100, "{refused}");
    assert!(
        message.contains("fair_share") && message.contains("on this replica, one of 2"),
        "{message}"
    );
    let spent = hub.stats().installations[&11].clone();
    assert_eq!(spent.rate_limited, 0, "GitHub never had to refuse");
    assert!(
        spent.units_spent <= 100 - 10,
        "the reserve of 10 is never touched: {spent:?}"
    );
    assert_eq!(
        spent.requests,
        (200 - refused) + normal_ok,
        "nothing refused reached GitHub"
    );
}
