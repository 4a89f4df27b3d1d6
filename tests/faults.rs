//! Faults against the real binary: a backup of a live journal, slow and
//! hostile clients, hostile input. Every load loop is bounded in count and
//! time.

mod common;

use std::time::Duration;

use common::binary::{self, Server};
use common::census::{Census, shown, wait_census};
use common::load::{drive, integrity_ok, journaled};
use common::{Delivery, TestApp, compact};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_of_a_live_journal_is_consistent_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let cfg = config.to_str().unwrap().to_string();
    let server = Server::start(&config);
    // Some deliveries before, then a backup while 8 senders keep going.
    let before = drive(&server.base, 300, 8, "before", |_| {}).await;
    assert_eq!(before.failed, 0);
    let copy = dir.path().join("backup/copy.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let during = {
        let base = server.base.clone();
        tokio::spawn(async move { drive(&base, 3000, 8, "during", |_| {}).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, out) = tokio::task::spawn_blocking({
        let (cfg, copy) = (cfg.clone(), copy.clone());
        move || binary::run(&["backup", "--config", &cfg, copy.to_str().unwrap()], None)
    })
    .await
    .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("integrity ok"), "{out}");
    let during = during.await.unwrap();
    assert_eq!(during.failed, 0, "ingest went on during the backup");

    // The copy is whole: it opens, passes the check, holds everything
    // acknowledged before the backup began, and nothing the live journal
    // does not (a snapshot, not a mix).
    integrity_ok(&copy);
    let copied = journaled(&copy);
    for guid in &before.acked {
        assert_eq!(copied.get(guid), Some(&1), "{guid}");
    }
    let live = journaled(&db);
    assert!(copied.keys().all(|g| live.contains_key(g)));
    assert!(
        copied.len() < live.len(),
        "the copy is a snapshot taken mid-load"
    );
    assert!(!dir.path().join("backup/copy.db.partial").exists());

    // A backup never overwrites.
    let (status, out) = binary::run(&["backup", "--config", &cfg, copy.to_str().unwrap()], None);
    assert!(!status.success());
    assert!(out.contains("never overwrites"), "{out}");
    drop(server);

    // Restore: the copy in place of the journal serves, and still knows
    // what it holds (a repeat is a duplicate).
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join("gatehouse.db")).unwrap();
    let config = binary::write_config(&restored, &restored.join("gatehouse.db"), "");
    let server = Server::start(&config);
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let client = reqwest::Client::new();
    let again = Delivery::json("ping", &before.acked[0], body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    // Same hook id and GUID as journaled: a duplicate whatever its event.
    assert_eq!(again.status(), 200);
    let new = Delivery::json("ping", "after-restore", body)
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(new.status(), 202);
}

/// A raw HTTP/1.1 request with a signed body and any header bytes.
fn raw_delivery(event: &[u8], guid: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: ");
    r.extend_from_slice(event);
    r.extend_from_slice(b"\r\nX-GitHub-Delivery: ");
    r.extend_from_slice(guid);
    r.extend_from_slice(b"\r\nX-Hub-Signature-256: ");
    r.extend_from_slice(common::sign(common::SECRET, body).as_bytes());
    r.extend_from_slice(
        format!(
            "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    r.extend_from_slice(body);
    r
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_change_nothing_else() {
    let t = TestApp::spawn().await;
    let healthy = |t: &TestApp| {
        let url = format!("{}/healthz", t.base);
        let c = t.client.clone();
        async move { c.get(url).send().await.unwrap().status() == 200 }
    };

    // A megabyte of header: refused before any handler runs.
    let mut big = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend_from_slice(b"\r\n\r\n");
    let r = common::raw_http(&t.base, &big).await;
    assert!(r.is_empty() || status_of(&r) == 431, "{r}");
    assert!(healthy(&t).await);

    // Invalid UTF-8 in the event header, correctly signed: 400, kept out.
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let r = common::raw_http(&t.base, &raw_delivery(b"pu\xff\xfesh", b"bad-utf8", &body)).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(r.to_lowercase().contains("x-github-event"), "{r}");

    // JSON nested 100,000 deep: signed, so journaled (invariant 7), marked
    // unparseable; no stack overflow anywhere that reads it.
    let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let d = Delivery::json("workflow_job", "deep", deep.into_bytes());
    assert_eq!(t.send(&d).await.status(), 202);
    // 200,000 fields in one object.
    let mut wide = String::from("{");
    for i in 0..200_000 {
        wide.push_str(&format!("\"k{i}\":{i},"));
    }
    wide.push_str("\"repository\":{\"full_name\":\"a/b\",\"owner\":{\"login\":\"a\"}}}");
    let d = Delivery::json("push", "wide", wide.into_bytes());
    assert_eq!(t.send(&d).await.status(), 202);

    // SQL metacharacters in every header we store: kept verbatim. (Header
    // values must be visible ASCII without spaces, as GitHub's are; others
    // get a 400 that names the header.)
    let evil = "x');DROP/**/TABLE/**/deliveries;--\"";
    let event = "push';--";
    let spaced = Delivery::json("push' OR '1'='1", "spaced", body.clone());
    let r = t.send(&spaced).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("x-github-event")
    );
    let d = Delivery::json(event, evil, body.clone()).hook(evil);
    assert_eq!(t.send(&d).await.status(), 202);

    let store = t.store();
    // Ingest and the Actions sink read named fields and skip the rest
    // without recursing; the sink makes it a dead letter with its reason.
    // (The admin page below parses it whole and meets serde_json's depth
    // limit: it shows the raw text.)
    wait_census(&store, "deep dead-lettered", Duration::from_secs(15), |c| {
        c.all_dead("deep")
    })
    .await;
    let deep = shown(&store, "deep").await;
    let why = deep.jobs[0].history[0].error.clone().unwrap();
    assert!(why.contains("no repository"), "{why}");
    assert_eq!(shown(&store, "wide").await.parse_status, "ok");
    let census = t.census().await;
    let evil_rows: Vec<(&str, &str, &str)> = census
        .0
        .iter()
        .filter(|d| d.hook_id == evil)
        .map(|d| (d.guid.as_str(), d.event.as_str(), d.hook_id.as_str()))
        .collect();
    assert_eq!(evil_rows, [(evil, event, evil)]);
    assert_eq!(census.deliveries(), 3);

    // The admin UI finds and shows each of them, escaped.
    let admin = common::admin::Admin::login(&t.base).await;
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("guid", evil)
        .finish();
    let list = admin.get(&format!("/admin/deliveries?{q}")).await;
    assert_eq!(list.status, 200);
    assert!(
        list.body
            .contains("x&#39;);DROP/**/TABLE/**/deliveries;--&#34;"),
        "{}",
        list.body
    );
    for id in 1..=3 {
        assert_eq!(
            admin.get(&format!("/admin/deliveries/{id}")).await.status,
            200,
            "{id}"
        );
    }
    assert!(healthy(&t).await);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_a_connection_cap_holds() {
    let t = TestApp::spawn_with(|c| {
        c.server.header_timeout_secs = 1;
        c.server.body_timeout_secs = 2;
        c.server.max_connections = 8;
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Slowloris: headers a byte at a time never finish; the connection is
    // closed at the header deadline.
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for (i, b) in request.iter().cycle().take(200).enumerate() {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        if i % 10 == 0 {
            let mut buf = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
                && n == 0
            {
                closed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the slow header was cut");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // A body that trickles in: 408 at the body deadline.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let full = raw_delivery(b"ping", b"trickle", &body);
    let head_len = full.len() - body.len();
    s.write_all(&full[..head_len]).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    for b in &body[..body.len() / 2] {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            && n > 0
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.census().await.deliveries(), 0);

    // The cap: 8 idle connections (from 8 addresses, each within its own
    // share) hold every slot; a ninth waits in the kernel's backlog and is
    // served once the header deadline frees one.
    let mut idle = Vec::new();
    for i in 0..8 {
        idle.push(connect_from(&format!("127.0.0.{}", 10 + i), &addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let r = t
        .client
        .get(format!("{}/healthz", t.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "served at once past the cap: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(idle);
}

/// gatehouse with a gateway on `hub` (GitHub timeout `timeout_secs`) and a
/// client for octo-org with these scopes; returns it, the gateway's base
/// URL and the client's token.
async fn gateway_on(
    hub: &fakehub::FakeHub,
    timeout_secs: u64,
    scopes: &[&str],
) -> (TestApp, String, String) {
    let github = common::hub::github_config(hub, &[(101, "app-a.pem")], &[]);
    let t = TestApp::spawn_with(|c| {
        c.github = github;
        c.github.timeout_secs = timeout_secs;
        c.recovery.enabled = false;
        c.gateway = Some(gatehouse::config::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
    })
    .await;
    let token = common::add_client(&t.db_path, "ci", scopes, &["octo-org"]);
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    (t, gw, token)
}

#[tokio::test]
async fn gateway_paths_cannot_step_out_of_their_scope() {
    let hub = common::hub::octo_hub(vec![]).await;
    let (_t, gw, token) = gateway_on(&hub, 30, &["GET /repos/octo-org/.*"]).await;
    let ok = reqwest::Client::new()
        .get(format!("{gw}/repos/octo-org/widgets"))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let requests = || -> u64 {
        hub.hub()
            .limits
            .stats()
            .tokens
            .values()
            .map(|u| u.requests)
            .sum()
    };
    let before = requests();
    for path in [
        "/repos/octo-org/widgets/../../other-org/secret",
        "/repos/octo-org/widgets/%2e%2e/%2E%2E/other-org/secret",
        "/repos/octo-org/widgets/..%2f..%2fother-org%2fsecret",
        "/repos/octo-org/./widgets",
        "/api/v3/repos/octo-org/widgets/../../../user",
    ] {
        // Sent raw: HTTP libraries would resolve the dots themselves.
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n"
        );
        let r = common::raw_http(&gw, req.as_bytes()).await;
        assert_eq!(status_of(&r), 400, "{path}: {r}");
        assert!(r.contains("not allowed"), "{r}");
    }
    // Nothing of that reached GitHub.
    assert_eq!(requests(), before);
}

#[tokio::test]
async fn a_slow_or_failing_github_gets_callers_timely_answers() {
    let mut slow = fakehub::config::FaultConfig::new("GET /orgs/octo-org");
    slow.latency_ms = 5_000;
    let mut flaky = fakehub::config::FaultConfig::new("GET /repos/octo-org/widgets/issues");
    flaky.error_rate = 0.5;
    flaky.error_status = 502;
    let hub = common::hub::octo_hub(vec![slow, flaky]).await;
    let (t, gw, token) = gateway_on(&hub, 2, &[]).await;
    let http = reqwest::Client::new();
    let get = move |path: String| {
        let (http, gw, token) = (http.clone(), gw.clone(), token.clone());
        async move {
            let started = std::time::Instant::now();
            let r = http
                .get(format!("{gw}{path}"))
                .header("authorization", format!("token {token}"))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), started.elapsed())
        }
    };
    // A GitHub that takes 5 s is cut at the 2 s timeout: the caller hears
    // 502 in about that, not 5 s.
    let (status, took) = get("/orgs/octo-org".into()).await;
    assert_eq!(status, 502);
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Half the answers 502: every call is answered, each passes through.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let (status, took) = get("/repos/octo-org/widgets/issues".into()).await;
        assert!(took < Duration::from_secs(4), "{took:?}");
        *seen.entry(status).or_insert(0) += 1;
    }
    assert!(seen.keys().all(|s| [200, 502].contains(s)), "{seen:?}");
    assert!(
        seen.contains_key(&200) && seen.contains_key(&502),
        "{seen:?}"
    );
    // Nothing waits after: a clean stop in time.
    let started = std::time::Instant::now();
    t.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_logs_of_a_full_run() {
    use common::admin::Admin;
    let hub = common::hub::octo_hub(vec![]).await;
    let consumer = common::consumer::start(Duration::ZERO, common::consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"));
    let admin_password = "a very secret admin password";
    let route_secret = "route-secret-value-77";
    let extra = format!(
        "[log]\nformat = \"json\"\nlevel = \"debug\"\n\
         [[routes]]\nname = \"ci\"\nurl = {:?}\nsecret = {route_secret:?}\n\
         [github]\napi_url = {:?}\n[[github.apps]]\nid = 101\nprivate_key_file = {key_file:?}\n\
         [gateway]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\npassword_hash = {:?}\n",
        consumer.url,
        hub.url().to_string(),
        gatehouse::admin::password::hash(admin_password),
    );
    let config = binary::write_config(dir.path(), &dir.path().join("g.db"), &extra);
    let mut server = Server::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        None,
        &[("RUST_LOG", std::path::Path::new("debug"))],
    );
    let client_token = common::add_client(&dir.path().join("g.db"), "ci", &[], &[]);
    // Every part at work: ingest (a good and a badly signed delivery),
    // forwarding (re-signed), the gateway (an installation token minted),
    // recovery (the App's JWT), the admin login (wrong, then right).
    let http = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let good = Delivery::json("push", "logs-1", body.clone());
    assert_eq!(good.send(&http, &server.base).await.unwrap().status(), 202);
    let bad = Delivery::json("push", "logs-2", body).signed_with("wrong");
    assert_eq!(bad.send(&http, &server.base).await.unwrap().status(), 401);
    consumer
        .wait_for("the forward", Duration::from_secs(15), |a| !a.is_empty())
        .await;
    let gw = format!("http://{}", server.gateway_addr().unwrap());
    let r = common::gateway_get(&http, format!("{gw}/repos/octo-org/widgets"), &client_token).await;
    assert_eq!(r.status(), 200);
    let mut admin = Admin::anonymous(&server.base);
    assert_eq!(admin.try_login("not the password at all").await.status, 401);
    assert_eq!(admin.try_login(admin_password).await.status, 303);
    let session = admin.session.clone().unwrap();
    let walked = {
        let db = dir.path().join("g.db");
        move || !common::beside(&db, async |s| s.last_complete().await.unwrap()).is_empty()
    };
    common::wait_until("a recovery walk", Duration::from_secs(15), walked).await;
    assert!(server.terminate().success());

    let output = server.output();
    let key = std::fs::read_to_string(&key_file).unwrap();
    // The installation tokens fakehub minted for gatehouse, by value.
    let minted: Vec<String> = hub.hub().limits.stats().tokens.keys().cloned().collect();
    assert!(minted.iter().any(|t| t.starts_with("ghs_")), "{minted:?}");
    let mut secrets = vec![
        common::SECRET.to_string(),
        route_secret.to_string(),
        admin_password.to_string(),
        client_token.clone(),
        session.trim_start_matches("gatehouse_session=").to_string(),
        key.lines().nth(1).unwrap().to_string(),
        "ghs_".to_string(),
        "eyJ".to_string(),
    ];
    secrets.extend(minted.into_iter().filter(|c| c.starts_with("ghs_")));
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "{secret:?} reached the logs"
        );
    }
    assert!(
        output.lines().count() > 20,
        "debug logs were written: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_kill_9s_under_mixed_load_lose_nothing_acknowledged() {
    let hub = common::hub::octo_hub(vec![]).await;
    let consumer = common::consumer::start(Duration::ZERO, common::consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let key_file = format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR"));
    let extra = format!(
        "[[routes]]\nname = \"ci\"\nurl = {:?}\n\
         [github]\napi_url = {:?}\n[[github.apps]]\nid = 101\nprivate_key_file = {key_file:?}\n\
         [gateway]\nlisten = \"127.0.0.1:0\"\n[recovery]\nenabled = false\n",
        consumer.url,
        hub.url().to_string(),
    );
    let config = binary::write_config(dir.path(), &db, &extra);
    let token = {
        // The first start makes the journal; the client is added beside it.
        let mut s = Server::start(&config);
        let t = common::add_client(&db, "ci", &[], &[]);
        assert!(s.terminate().success());
        t
    };
    let mut acked_all: Vec<String> = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..20 {
        let mut server = Server::start(&config);
        let gw = format!("http://{}", server.gateway_addr().unwrap());
        let ingest = {
            let base = server.base.clone();
            tokio::spawn(async move { drive(&base, 2_000, 6, &format!("r{round}"), |_| {}).await })
        };
        let gateway = {
            let token = token.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for _ in 0..200 {
                    let r = http
                        .get(format!("{gw}/repos/octo-org/widgets"))
                        .header("authorization", format!("token {token}"))
                        .send()
                        .await;
                    if r.is_err() {
                        break;
                    }
                }
            })
        };
        // A random point: 200-1,200 ms into the load.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(200 + rng % 1000)).await;
        server.kill9();
        let load = ingest.await.unwrap();
        let _ = gateway.await;
        integrity_ok(&db);
        let rows = journaled(&db);
        for guid in &load.acked {
            assert_eq!(
                rows.get(guid),
                Some(&1),
                "round {round}: acked {guid} missing"
            );
        }
        acked_all.extend(load.acked);
        // Every journaled delivery has exactly its one forward job.
        let census = Census::of_file(&db);
        let without: Vec<&str> = census
            .0
            .iter()
            .filter(|d| d.jobs.iter().filter(|j| j.starts_with("ci:")).count() != 1)
            .map(|d| d.guid.as_str())
            .collect();
        assert!(without.is_empty(), "round {round}: {without:?}");
    }
    assert!(
        acked_all.len() > 1_000,
        "{} acked over 20 rounds",
        acked_all.len()
    );

    // One more start drains the backlog: every delivery reaches the
    // consumer, at least once, and per organisation in journal order.
    let server = Server::start(&config);
    let total = Census::of_file(&db).deliveries();
    common::wait_until("the backlog drained", Duration::from_secs(120), || {
        let c = Census::of_file(&db);
        c.jobs(None, Some("done")) == c.jobs(None, None)
    })
    .await;
    let arrivals = consumer.arrivals();
    let mut first: std::collections::HashMap<String, usize> = Default::default();
    for (i, a) in arrivals.iter().enumerate() {
        first.entry(a.guid.clone()).or_insert(i);
    }
    assert_eq!(first.len(), total, "every delivery forwarded");
    eprintln!(
        "after 20 kill -9s: {total} deliveries, {} forwards ({} repeats after crashes)",
        arrivals.len(),
        arrivals.len() - total
    );
    let mut last: std::collections::HashMap<String, usize> = Default::default();
    // Oldest first: received order.
    for d in Census::of_file(&db).0.iter().rev() {
        let (guid, org) = (d.guid.clone(), d.partition.clone());
        let at = first[&guid];
        if let Some(prev) = last.insert(org.clone(), at) {
            assert!(
                prev < at,
                "{org}: {guid} was first forwarded before an earlier delivery"
            );
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_built_while_the_consumer_was_down_drains_in_order() {
    // Down (every request 503, no Retry-After) until the whole backlog is
    // journaled, however long that takes on this machine: an hour of
    // outage compressed; the retries back off meanwhile.
    let up = std::sync::Arc::new(std::sync::OnceLock::<std::time::Instant>::new());
    let c = common::consumer::start(Duration::ZERO, {
        let up = up.clone();
        std::sync::Arc::new(move |a: &common::consumer::Arrival, _| {
            let is_up = up.get().is_some_and(|t| a.at >= *t);
            (if is_up { 200 } else { 503 }, vec![])
        })
    })
    .await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = common::route("ci", &c.url);
        r.max_attempts = 100;
        cfg.routes = vec![r];
    })
    .await;
    let orgs: Vec<String> = (0..10).map(|i| format!("org-{i}")).collect();
    for i in 0..2_000 {
        let org = &orgs[i % orgs.len()];
        let d = Delivery::json("push", &format!("down-{i}"), common::push_for(org, i));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let store = t.store();
    let tried = c.arrivals().len();
    assert!(tried > 0, "the consumer was tried while down");
    let up_at = std::time::Instant::now();
    up.set(up_at).unwrap();
    // A retry is due within about as long again as the outage lasted.
    let drained = wait_census(
        &store,
        "the backlog drained",
        Duration::from_secs(120),
        |c| c.jobs(None, Some("done")) == 2_000,
    )
    .await;
    assert_eq!(drained.jobs(None, Some("dead")), 0);
    // Every delivery's first successful arrival, per organisation, in the
    // order they were received; no delivery was accepted twice.
    let ok: Vec<_> = c.arrivals().into_iter().filter(|a| a.at >= up_at).collect();
    let mut seen = std::collections::HashSet::new();
    let mut last: std::collections::HashMap<String, usize> = Default::default();
    for a in &ok {
        assert!(seen.insert(a.guid.clone()), "{} accepted twice", a.guid);
        let n: usize = a.guid.trim_start_matches("down-").parse().unwrap();
        if let Some(prev) = last.insert(a.org.clone(), n) {
            assert!(prev < n, "{}: {n} after {prev}", a.org);
        }
    }
    assert_eq!(seen.len(), 2_000);
}

#[tokio::test]
async fn guessing_gateway_tokens_is_throttled_per_address() {
    let hub = common::hub::octo_hub(vec![]).await;
    let (t, gw, token) = gateway_on(&hub, 30, &[]).await;
    assert_eq!(t.app_config().gateway.unwrap().auth_failures_per_minute, 20);
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let (guesser, other) = (from("127.0.0.2"), from("127.0.0.3"));
    let get = |c: &reqwest::Client, token: &str| {
        c.get(format!("{gw}/repos/octo-org/widgets"))
            .header("authorization", format!("token {token}"))
            .send()
    };
    for i in 0..20 {
        let r = get(&guesser, &format!("ghp_guess{i:036}")).await.unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    // Now even a real token is refused from that address, with a wait.
    let r = get(&guesser, &token).await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    assert!(r.text().await.unwrap().contains("too many bad tokens"));
    // Others are not affected.
    assert_eq!(get(&other, &token).await.unwrap().status(), 200);
}

/// Reads until the peer closes or `limit` passes; true when it closed.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (false, got),
        }
    }
}

/// A connection from a given loopback address (the whole of 127/8 is
/// local on Linux), for per-address limits.
async fn connect_from(ip: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_past_the_memory_budget_are_refused_before_they_are_read() {
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_with(|c| {
        c.webhooks.max_body_bytes = 1024 * 1024;
        c.server.body_budget_bytes = Some(2 * 1024 * 1024);
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();
    // Two unsigned uploads of 900 KB each, half sent and held open: they
    // hold most of the budget.
    let head = |guid: &str| {
        format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {guid}\r\nContent-Length: 900000\r\nConnection: close\r\n\r\n"
        )
    };
    let mut held = Vec::new();
    for guid in ["held-1", "held-2"] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(head(guid).as_bytes()).await.unwrap();
        s.write_all(&vec![b' '; 450_000]).await.unwrap();
        held.push(s);
    }
    // A signed delivery of 900 KB now: no room; 503 with Retry-After at
    // once, before its body is read.
    let mut big: serde_json::Value = serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/push/payload.json"),
    ))
    .unwrap();
    big["padding"] = "x".repeat(850_000).into();
    let big = serde_json::to_vec(&big).unwrap();
    let d = Delivery::json("push", "after-the-flood", big.clone());
    // The held bodies reserve their share as soon as their headers are
    // read; wait (bounded) until the budget says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while common::metric(&t.metrics().await, "gatehouse_body_budget_in_use_bytes").unwrap_or(0.0)
        < 1_800_000.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the held uploads took no budget"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = Some(t.send(&d).await).filter(|r| r.status() == 503);
    let r = refused.expect("refused while the budget is taken");
    assert_eq!(r.headers()["retry-after"], "1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("retry"), "{v}");
    assert_eq!(t.census().await.deliveries(), 0);
    let m = t.metrics().await;
    assert!(
        common::metric(
            &m,
            "gatehouse_webhook_deliveries_total{event=\"push\",result=\"busy\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    // The held uploads finish (unsigned: 401) and give their share back;
    // the delivery is then accepted.
    for mut s in held {
        s.write_all(&vec![b' '; 450_000]).await.unwrap();
        let (_, answer) = closed_within(&mut s, Duration::from_secs(10)).await;
        assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 401);
    }
    assert_eq!(t.send(&d).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_every_connection_slot() {
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_with(|c| {
        c.server.max_connections = 16;
        c.server.max_connections_per_address = Some(4);
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();
    // Four connections from 127.0.0.1 that have begun a request and hold.
    let mut holding = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", &addr).await;
        s.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        holding.push(s);
    }
    // Wait (bounded) until all four are counted as open (scraping from
    // another address, which has slots of its own).
    let scraper = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let scrape = || common::scrape(&scraper, &t.base);
    let open = || async {
        common::metric(
            &scrape().await,
            "gatehouse_connections_open{listener=\"webhooks\"}",
        )
        .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open().await < 5.0 {
        // (4 held + the scrape's own connection)
        assert!(
            std::time::Instant::now() < deadline,
            "connections not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Four more from the same address wait behind those, unanswered ...
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", &addr).await;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        waiting.push(s);
    }
    let (closed, answer) = closed_within(&mut waiting[0], Duration::from_millis(500)).await;
    assert!(!closed && answer.is_empty(), "served past the cap");
    // ... and a ninth is closed at once, unanswered.
    let mut ninth = connect_from("127.0.0.1", &addr).await;
    let _ = ninth
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (closed, answer) = closed_within(&mut ninth, Duration::from_secs(3)).await;
    assert!(
        closed && answer.is_empty(),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", &addr).await;
    other
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = closed_within(&mut other, Duration::from_secs(5)).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 200);
    // One of the four gives its slot back: a waiting one is served.
    drop(holding.pop());
    let (_, answer) = closed_within(&mut waiting[0], Duration::from_secs(5)).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 200);
    let m = scrape().await;
    drop(holding);
    assert!(
        common::metric(
            &m,
            "gatehouse_connections_refused_total{listener=\"webhooks\",reason=\"per_address\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_trickling_connections_give_their_slots_back() {
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_with(|c| {
        c.server.idle_timeout_secs = 1;
        c.server.body_timeout_secs = 60;
        c.server.min_body_bytes_per_sec = 200;
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();

    // HTTP/1.1 kept alive after an answer, then idle: closed.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (closed, answer) = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "kept-alive idle connection still open");
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // HTTP/2 (h2c, prior knowledge): the server's SETTINGS caps concurrent
    // streams; a connection with no stream is closed when idle.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (closed, frames) = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "idle HTTP/2 connection still open");
    // The first frame is the server's SETTINGS: 6-byte entries.
    assert_eq!(frames[3], 0x4, "SETTINGS first");
    let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
    let max_streams = frames[9..9 + len].chunks(6).find_map(|e| {
        (u16::from_be_bytes([e[0], e[1]]) == 0x3)
            .then(|| u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
    });
    assert_eq!(max_streams, Some(16));
    // Frames after SETTINGS include a GOAWAY (type 7) before the close.
    let mut at = 9 + len;
    let mut goaway = false;
    while at + 9 <= frames.len() {
        let l = u32::from_be_bytes([0, frames[at], frames[at + 1], frames[at + 2]]) as usize;
        goaway |= frames[at + 3] == 0x7;
        at += 9 + l;
    }
    assert!(goaway, "a GOAWAY before the close");

    // A body trickling a byte every 300 ms, far under 200 bytes/s: 408
    // after the 5 s grace, long before the 60 s deadline.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let full = raw_delivery(b"ping", b"trickle-rate", &body);
    let head_len = full.len() - body.len();
    s.write_all(&full[..head_len]).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    for b in &body {
        if s.write_all(&[*b]).await.is_err() || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let (closed, got) = closed_within(&mut s, Duration::from_millis(300)).await;
        answer.extend(got);
        if closed || !answer.is_empty() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("too slowly"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(t.census().await.deliveries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_keep_their_own_listener_when_the_webhook_port_is_full() {
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_with(|c| {
        c.server.max_connections = 4;
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = format!("http://{}", t.app.admin_addr().unwrap());
    let addr = t.base.trim_start_matches("http://").to_string();
    // With one connection per address allowed (a quarter of 4), a client
    // pool that opened a second connection while its first sat idle would
    // wait for the idle timeout: one connection per request, closed after.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // On the webhook port: health, but no admin UI and no metrics.
    for (path, status) in [("/readyz", 200), ("/metrics", 404), ("/admin/login", 404)] {
        let r = http.get(format!("{}{path}", t.base)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path} on the webhook port");
    }
    // Every webhook slot taken by requests that never finish their headers
    // (from four addresses: one address alone may hold only its share).
    let mut holding = Vec::new();
    for i in 0..4 {
        let mut s = connect_from(&format!("127.0.0.{}", 20 + i), &addr).await;
        s.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        holding.push(s);
    }
    // Operators still get the admin UI, metrics and health on theirs.
    for (path, status) in [("/admin/login", 200), ("/metrics", 200), ("/readyz", 200)] {
        let r = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path} on the admin port");
    }
    // The server counts a connection once it has accepted it, which may
    // be a moment after the client's connect returned.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = common::scrape(&http, &admin).await;
        let open = common::metric(&m, "gatehouse_connections_open{listener=\"webhooks\"}");
        if open == Some(4.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open:?} open: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(holding);
}
