//! The operator CLI on a live journal: list, show, retry dead letters,
//! pause and resume a route, back-fill a route added later.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::binary::{self, Server};
use common::census::Census;
use common::consumer;
use common::{Delivery, compact};

fn cli(config: &std::path::Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let (status, out) = binary::run(&all, None);
    assert!(status.success(), "{args:?}: {out}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_shown_and_retried_from_the_cli() {
    let healthy = Arc::new(AtomicBool::new(false));
    let c = consumer::start(Duration::ZERO, consumer::up_when(healthy.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[[routes]]\nname = \"ci\"\nurl = \"{}\"\nmax_attempts = 1\n",
            c.url
        ),
    );
    let server = Server::start(&config);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    Delivery::json("push", "will-die", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    c.wait_for("the failing attempt", Duration::from_secs(10), |a| {
        a.len() == 1
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let out = cli(&config, &["deliveries", "list", "--state", "dead"]);
        if out.contains("will-die") || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        listed.contains("will-die") && listed.contains("ci:dead"),
        "{listed}"
    );
    let shown = cli(&config, &["deliveries", "show", "will-die"]);
    assert!(
        shown.contains("route ci (job #1): dead, 1 of 1 attempt(s) counted"),
        "{shown}"
    );
    assert!(shown.contains("failed  500  HTTP 500"), "{shown}");
    let json = cli(&config, &["deliveries", "show", "will-die", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["jobs"][0]["history"][0]["status_code"], 500);

    healthy.store(true, Ordering::SeqCst);
    let out = cli(&config, &["deliveries", "retry", "--dead", "--route", "ci"]);
    assert!(out.starts_with("1 job(s) queued"), "{out}");
    c.wait_for("the retried delivery", Duration::from_secs(20), |a| {
        a.len() == 2
    })
    .await;
    assert_eq!(c.arrivals()[1].guid, "will-die");
    assert_eq!(
        c.arrivals()[1].attempt,
        1,
        "a retried dead letter starts over"
    );
}

/// Turns the scheduler took and found held (route or partition paused).
async fn held_turns(client: &reqwest::Client, base: &str) -> f64 {
    let m = common::scrape(client, base).await;
    common::metric(
        &m,
        r#"gatehouse_scheduler_turns_total{sink="ci",outcome="held"}"#,
    )
    .unwrap_or(0.0)
}

/// Waits (bounded) until the scheduler has taken one more held turn.
async fn wait_held_turn(client: &reqwest::Client, base: &str, before: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while held_turns(client, base).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler never looked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_route_holds_its_jobs_until_resumed_and_backfill_fills_a_new_route() {
    let c = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let late = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let routes = format!("\n[[routes]]\nname = \"ci\"\nurl = \"{}\"\n", c.url);
    let config = binary::write_config(dir.path(), &db, &routes);
    let mut server = Server::start(&config);
    cli(&config, &["routes", "pause", "ci"]);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let held = held_turns(&client, &server.base).await;
    Delivery::json("push", "held-1", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    // The scheduler took the partition's turn and found it held.
    wait_held_turn(&client, &server.base, held).await;
    assert!(c.arrivals().is_empty(), "a paused route forwards nothing");
    cli(&config, &["routes", "resume", "ci"]);
    c.wait_for(
        "the held delivery after resume",
        Duration::from_secs(20),
        |a| a.len() == 1,
    )
    .await;

    // A paused partition holds its own jobs; other partitions go on.
    cli(&config, &["partitions", "pause", "ci", "Codertocat"]);
    let mut other: serde_json::Value = serde_json::from_slice(&body).unwrap();
    other["repository"]["owner"]["login"] = "someone-else".into();
    let held = held_turns(&client, &server.base).await;
    Delivery::json("push", "held-2", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    Delivery::json("push", "free-1", serde_json::to_vec(&other).unwrap())
        .send(&client, &server.base)
        .await
        .unwrap();
    c.wait_for(
        "the other partition's delivery",
        Duration::from_secs(10),
        |a| a.iter().any(|x| x.guid == "free-1"),
    )
    .await;
    wait_held_turn(&client, &server.base, held).await;
    assert!(
        !c.arrivals().iter().any(|x| x.guid == "held-2"),
        "the paused partition waits"
    );
    cli(&config, &["partitions", "resume", "ci", "Codertocat"]);
    c.wait_for("held-2 after resume", Duration::from_secs(20), |a| {
        a.iter().any(|x| x.guid == "held-2")
    })
    .await;
    assert!(server.terminate().success());

    // A route added later gets old deliveries only when asked.
    let with_late = format!(
        "{routes}\n[[routes]]\nname = \"late\"\nurl = \"{}\"\nevents = [\"push\"]\n",
        late.url
    );
    let config = binary::write_config(dir.path(), &db, &with_late);
    let _server = Server::start(&config);
    // The new route has no jobs for what came before it: nothing to send.
    let v: serde_json::Value =
        serde_json::from_str(&cli(&config, &["routes", "list", "--json"])).unwrap();
    let late_route = v.as_array().unwrap().iter().find(|r| r["route"] == "late");
    assert_eq!(
        late_route.unwrap()["pending"],
        0,
        "no back-fill unless asked: {v}"
    );
    assert!(late.arrivals().is_empty(), "no back-fill unless asked");
    let out = cli(
        &config,
        &["deliveries", "retry", "--route", "late", "--since", "1h"],
    );
    assert!(out.starts_with("3 job(s) queued"), "{out}");
    late.wait_for("the back-filled deliveries", Duration::from_secs(20), |a| {
        a.len() == 3
    })
    .await;
    let mut got: Vec<String> = late.arrivals().into_iter().map(|a| a.guid).collect();
    got.sort();
    assert_eq!(got, ["free-1", "held-1", "held-2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_text_shows_control_characters_and_ends_quietly_on_a_closed_pipe() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let config = binary::write_config(dir.path(), &db, "");
    let server = Server::start(&config);
    let client = reqwest::Client::new();
    // A signed payload whose repository name and event carry terminal
    // escape sequences (clear the screen, retitle the window).
    let mut v: serde_json::Value = serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/push/payload.json"),
    ))
    .unwrap();
    v["repository"]["full_name"] = "octo-org/\u{1b}[2J\u{1b}]0;pwned\u{7}".into();
    v["repository"]["owner"]["login"] = "octo\u{9b}31m".into();
    let body = serde_json::to_vec(&v).unwrap();
    let r = Delivery::json("push", "escape-1", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for args in [
        &["deliveries", "list"][..],
        &["deliveries", "show", "escape-1"][..],
    ] {
        let out = cli(&config, args);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{9b}') && !out.contains('\u{7}'),
            "{args:?} printed a control character: {out:?}"
        );
        assert!(out.contains("\\u{1b}") || out.contains("\\u{9b}"), "{out}");
    }
    // Enough rows to fill a pipe; the reader takes one line and goes.
    for i in 0..600 {
        Delivery::json("push", &format!("pipe-{i:04}"), body.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
    }
    let mut child = std::process::Command::new(binary::BIN)
        .args([
            "deliveries",
            "list",
            "--limit",
            "600",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    let _ = child.stdout.as_mut().unwrap().read(&mut first).unwrap();
    drop(child.stdout.take());
    let status = binary::wait_bounded(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{status:?}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_a_removed_route_are_reported_and_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    // A route whose consumer is down (nothing listens on port 9): its jobs
    // stay pending.
    let with_route = binary::write_config(
        dir.path(),
        &db,
        "\n[[routes]]\nname = \"old\"\nurl = \"http://127.0.0.1:9/hook\"\nmax_attempts = 50\n",
    );
    let mut server = Server::start(&with_route);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    for i in 0..7 {
        let r = Delivery::json("push", &format!("orphan-{i}"), body.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    assert!(server.terminate().success());
    // The route leaves the config: the start says so, and the metric.
    let without = dir.path().join("without.toml");
    let text = std::fs::read_to_string(&with_route).unwrap();
    std::fs::write(&without, &text[..text.find("[[routes]]").unwrap()]).unwrap();
    let mut server = Server::start(&without);
    let said = server.output();
    assert!(
        said.contains("route no longer configured but has jobs")
            && said.contains("routes drop old"),
        "{said}"
    );
    let m = common::scrape(&client, &server.base).await;
    assert_eq!(
        common::metric(&m, "gatehouse_jobs_orphaned{sink=\"old\"}"),
        Some(7.0),
        "{m}"
    );
    // A route still configured is not dropped.
    let (status, out) = binary::run(
        &[
            "routes",
            "drop",
            "old",
            "--config",
            with_route.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !status.success() && out.contains("is in the config"),
        "{out}"
    );
    let out = cli(&without, &["routes", "drop", "old"]);
    assert!(
        out.contains("dropped 7 pending job(s) and 0 dead letter(s) of route old"),
        "{out}"
    );
    assert_eq!(Census::of_file(&db).jobs(Some("old"), None), 0);
    let m = common::scrape(&client, &server.base).await;
    assert_eq!(
        common::metric(&m, "gatehouse_jobs_orphaned{sink=\"old\"}"),
        None
    );
    assert!(server.terminate().success());
}

/// Every combination of the list's filters: the dead letters a bulk retry
/// counts (and retries) are exactly those `deliveries list --state dead`
/// shows with the same filters.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_retry_matches_the_list_for_every_combination_of_filters() {
    use gatehouse::store::operator::{Cursor, Filter};
    let c = consumer::start(Duration::ZERO, consumer::always(500)).await;
    let t = common::TestApp::spawn_with(|cfg| {
        // Many dead letters per partition: order may move past each.
        let skip = Some(gatehouse::config::OnDeadConfig::Skip);
        // ... and every one is a failure: no breaker opens on them.
        let mut a = common::route("ci", &c.url);
        a.max_attempts = 1;
        a.on_dead = skip;
        a.breaker.failures = 0;
        let mut b = common::route("audit", &c.url);
        b.max_attempts = 1;
        b.on_dead = skip;
        b.breaker.failures = 0;
        b.events = vec!["push".into()];
        cfg.routes = vec![a, b];
    })
    .await;
    let issue = compact(&common::fixtures().join("payloads/issues/opened.payload.json"));
    let mut jobs = 0;
    for i in 0..12 {
        let org = ["acme", "globex", "initech"][i % 3];
        let d = if i % 2 == 0 {
            jobs += 2;
            Delivery::json("push", &format!("p-{i}"), common::push_for(org, i))
        } else {
            jobs += 1;
            let mut v: serde_json::Value = serde_json::from_slice(&issue).unwrap();
            v["repository"]["owner"]["login"] = org.into();
            Delivery::json("issues", &format!("i-{i}"), serde_json::to_vec(&v).unwrap())
        };
        assert_eq!(t.send(&d).await.status(), 202);
    }
    common::census::wait_census(&t.store(), "every job dead", Duration::from_secs(30), |c| {
        c.jobs(None, Some("dead")) as i64 == jobs
    })
    .await;
    let store = t.app.journal();
    let now = gatehouse::clock::now_ms();
    let events = [None, Some("push"), Some("issues")];
    let partitions = [None, Some("acme"), Some("globex")];
    let routes = [None, Some("ci"), Some("audit")];
    let sinces = [None, Some(now - 3_600_000), Some(now + 3_600_000)];
    let mut combos = 0;
    for e in events {
        for p in partitions {
            for r in routes {
                for s in sinces {
                    let f = Filter {
                        event: e.map(String::from),
                        partition: p.map(String::from),
                        route: r.map(String::from),
                        since_ms: s,
                        state: Some("dead".into()),
                        ..Filter::default()
                    };
                    // The list shows deliveries; count their dead jobs on
                    // the route asked for (or any).
                    let listed: i64 = store
                        .list(&f, Cursor::Newest, 1000)
                        .await
                        .unwrap()
                        .rows
                        .iter()
                        .map(|d| {
                            d.jobs
                                .iter()
                                .filter(|j| {
                                    j.ends_with(":dead")
                                        && r.is_none_or(|r| j.starts_with(&format!("{r}:")))
                                })
                                .count() as i64
                        })
                        .sum();
                    let counted = store.count_dead(&f).await.unwrap();
                    assert_eq!(
                        counted, listed,
                        "event {e:?} partition {p:?} route {r:?} since {s:?}"
                    );
                    combos += 1;
                }
            }
        }
    }
    assert_eq!(combos, 81);
    // The CLI says the same, and retries exactly those.
    let audit_globex = Filter {
        route: Some("audit".into()),
        partition: Some("globex".into()),
        state: Some("dead".into()),
        ..Filter::default()
    };
    let want = store.count_dead(&audit_globex).await.unwrap();
    assert!(want > 0);
    let dir = tempfile::tempdir().unwrap();
    let config = binary::write_config(dir.path(), &t.db_path, "");
    let out = cli(
        &config,
        &[
            "deliveries",
            "retry",
            "--dead",
            "--route",
            "audit",
            "--partition",
            "globex",
        ],
    );
    assert!(out.contains(&format!("{want} job(s) queued")), "{out}");
    assert_eq!(store.count_dead(&audit_globex).await.unwrap(), 0);
}

#[test]
fn the_cli_works_on_a_systemd_install_and_says_what_to_do_for_secrets() {
    let etc = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("webhook-secret"), "s3cret\n").unwrap();
    // As systemd/gatehouse.toml writes it; the journal path is relative,
    // so it is under the config's directory, whatever the working one.
    let config = etc.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"data/gatehouse.db\"\n\
         [webhooks]\nsecret_files = [\"$CREDENTIALS_DIRECTORY/webhook-secret\"]\n\
         [[routes]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .unwrap();
    let run = |args: &[&str], creds: bool| {
        let mut cmd = std::process::Command::new(binary::BIN);
        cmd.args(args)
            .args(["--config", config.to_str().unwrap()])
            .current_dir(cwd.path())
            .env_remove("GATEHOUSE_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY");
        if creds {
            cmd.env("CREDENTIALS_DIRECTORY", etc.path());
        }
        let out = cmd.output().unwrap();
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // The service (with its credentials) checks the file and creates the
    // journal.
    let (status, out) = run(&["check-config"], true);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("route        ci → http://127.0.0.1:9/hook"),
        "{out}"
    );
    assert!(
        out.contains("$CREDENTIALS_DIRECTORY/webhook-secret"),
        "{out}"
    );
    let server = Server::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        Some(cwd.path()),
        &[("CREDENTIALS_DIRECTORY", etc.path())],
    );
    assert!(
        etc.path().join("data/gatehouse.db").exists(),
        "relative to the config"
    );
    assert!(!cwd.path().join("data").exists());
    // From a shell, without $CREDENTIALS_DIRECTORY: commands that need no
    // secret work.
    let backup = cwd.path().join("copy.db");
    for args in [
        &["deliveries", "list"][..],
        &["routes", "pause", "ci"][..],
        &["routes", "resume", "ci"][..],
        &["partitions", "pause", "ci", "octo-org"][..],
        &["clients", "list"][..],
        &["backup", backup.to_str().unwrap()][..],
    ] {
        let (status, out) = run(args, false);
        assert!(status.success(), "{args:?}: {out}");
    }
    // Those that need one say what to do.
    let (status, out) = run(&["check-config"], false);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("$CREDENTIALS_DIRECTORY is not set")
            && out.contains("CREDENTIALS_DIRECTORY=/etc/gatehouse"),
        "{out}"
    );
    // A typo is an error, and leaves nothing behind.
    for args in [
        &["routes", "pause", "cii"][..],
        &["partitions", "pause", "nope", "octo-org"][..],
    ] {
        let (status, out) = run(args, false);
        assert!(!status.success(), "{args:?}: {out}");
        assert!(
            out.contains("no route") && out.contains("routes: ci"),
            "{out}"
        );
    }
    let (_, out) = run(&["routes", "pause", "cii"], false);
    assert!(out.contains("did you mean \"ci\"?"), "{out}");
    let (routes, partitions) = common::beside(&etc.path().join("data/gatehouse.db"), async |s| {
        // Asked of the typo too: a hold on it would show as paused.
        let names = ["ci", "cii", "nope"].map(String::from);
        let routes = s.route_states(&names, 0).await.unwrap();
        let partitions = s.partitions(None, 0, 100_000).await.unwrap();
        (routes, partitions)
    });
    assert!(routes.iter().all(|r| !r.paused), "no phantom pause");
    assert!(
        partitions
            .rows
            .iter()
            .all(|p| p.sink != "cii" && p.sink != "nope"),
        "no phantom partition"
    );
    drop(server);
}

#[test]
fn check_config_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n\n[webhooks]\nsecrets = [\"x\"]\n\n\
         [log]\nlevel = \"verbose\"\n\n[[routes]]\nname = \"ci\"\nurl = \"http://x\"\n\
         events = [\"pushh\", \"pull_request\"]\n",
    )
    .unwrap();
    let (status, out) = binary::run(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(status.code(), Some(2));
    assert!(out.contains(":3: server.port: unknown field"), "{out}");
    // The other sections are checked too, even past a TOML error ...
    let path2 = dir.path().join("bad2.toml");
    std::fs::write(
        &path2,
        "[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = \"big\"\n\n[log]\nformt = \"json\"\n",
    )
    .unwrap();
    let (_, out2) = binary::run(&["check-config", "--config", path2.to_str().unwrap()], None);
    assert!(out2.contains("2 problems"), "{out2}");
    assert!(
        out2.contains(":3: webhooks.max_body_bytes:") && out2.contains(":6: log.formt:"),
        "{out2}"
    );
    // ... and once the TOML reads, every value is.
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[webhooks]\nsecrets = [\"x\"]\n\n\
         [log]\nlevel = \"verbose\"\n\n[[routes]]\nname = \"ci\"\nurl = \"http://x\"\n\
         events = [\"pushh\", \"pull_request\"]\n",
    )
    .unwrap();
    let (_, out) = binary::run(&["check-config", "--config", path.to_str().unwrap()], None);
    assert!(out.contains("2 problems"), "{out}");
    assert!(
        out.contains(":8: log.level:") && out.contains("\"verbose\" is not a level"),
        "{out}"
    );
    assert!(
        out.contains(":13: routes[0].events:") && out.contains("did you mean \"push\"?"),
        "{out}"
    );
}

/// A consumer that first asks to wait (429, Retry-After), then fails with
/// a body, so attempts that counted and those that did not both show.
async fn slow_then_down() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::post;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (
                        http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "3")],
                        "slow down\n",
                    )
                } else {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        [("x-consumer", "down")],
                        "database is down\nretry later\n",
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_list_and_show_tell_why_a_delivery_waits_with_counts_that_agree() {
    let (url, seen) = slow_then_down().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!("\n[[routes]]\nname = \"ci\"\nurl = \"{url}\"\nmax_attempts = 2\n"),
    );
    let server = Server::start(&config);
    let client = reqwest::Client::new();
    for guid in ["first", "second"] {
        let d = Delivery::json("push", guid, common::push_for("acme", 1));
        assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The consumer asked for 3 s; hold the partition meanwhile.
    cli(&config, &["partitions", "pause", "ci", "acme"]);
    let listed = cli(&config, &["routes", "list"]);
    let line = listed.lines().find(|l| l.starts_with("ci ")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (cols[1], cols[2], cols.last().copied()),
        ("running", "2", Some("1")),
        "{listed}"
    );
    let behind = cli(&config, &["deliveries", "show", "second"]);
    assert!(
        behind.contains("pending, 0 of 2 attempt(s) counted; waiting behind job #1"),
        "{behind}"
    );
    let head = cli(&config, &["deliveries", "show", "first"]);
    assert!(
        head.contains("0 of 2 attempt(s) counted, 1 paused (not counted)"),
        "{head}"
    );
    assert!(head.contains("      | slow down"), "the answer: {head}");
    assert!(head.contains(&format!("sent to {url}")), "{head}");

    // Resumed, the head dies, and its partition waits behind it (on_dead
    // = "hold"): the CLI says so and how to go on.
    cli(&config, &["partitions", "resume", "ci", "acme"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let head = loop {
        let head = cli(&config, &["deliveries", "show", "first"]);
        if head.contains("its partition waits behind it") {
            break head;
        }
        assert!(std::time::Instant::now() < deadline, "never held: {head}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(head.contains("gatehouse deliveries skip first"), "{head}");
    let behind = cli(&config, &["deliveries", "show", "second"]);
    assert!(
        behind.contains("0 of 2 attempt(s) counted; waiting behind job #1"),
        "{behind}"
    );
    // Skipped: the second goes and dies too (two counted attempts each).
    let skipped = cli(&config, &["deliveries", "skip", "first"]);
    assert!(skipped.contains("1 dead letter(s) skipped"), "{skipped}");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&cli(&config, &["routes", "list", "--json"])).unwrap();
        let ci = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == "ci")
            .unwrap();
        if ci["dead"] == 2 {
            assert_eq!(ci["pending"], 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never dead: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let head = cli(&config, &["deliveries", "show", "first"]);
    assert!(
        head.contains("dead, 2 of 2 attempt(s) counted, 1 paused (not counted)"),
        "{head}"
    );
    assert!(head.contains("skipped: order moved past it at "), "{head}");
    let attempts = head
        .lines()
        .filter(|l| l.starts_with("    attempt "))
        .count();
    assert_eq!(
        attempts, 3,
        "two counted and one paused, all listed: {head}"
    );
    assert!(
        head.contains("      | database is down\n      | retry later"),
        "{head}"
    );
    // JSON agrees with the text.
    let v: serde_json::Value =
        serde_json::from_str(&cli(&config, &["deliveries", "show", "first", "--json"])).unwrap();
    let job = &v[0]["jobs"][0];
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["history"].as_array().unwrap().len(), 3);
    drop(server);
}

/// The README's way from the embedded default to a config file: the same
/// journal and the secret GitHub already has, with paths relative to the
/// config file, whatever the working directory.
#[tokio::test(flavor = "multi_thread")]
async fn moving_from_the_embedded_default_to_a_config_file_keeps_journal_and_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Server::start_args(&["serve"], Some(dir.path()), &[]);
    let secret = std::fs::read_to_string(dir.path().join("gatehouse-data/webhook-secret")).unwrap();
    let secret = secret.trim();
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let d = Delivery::json("push", "before-the-move", body).signed_with(secret);
    assert_eq!(d.send(&client, &first.base).await.unwrap().status(), 202);
    assert!(first.terminate().success());

    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = \"gatehouse-data/gatehouse.db\"\n\n\
         [webhooks]\nsecret_files = [\"gatehouse-data/webhook-secret\"]\n\n\
         [admin]\npassword_hash_file = \"gatehouse-data/admin-password.hash\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, out) = binary::run(
        &["check-config", "--config", config.to_str().unwrap()],
        Some(elsewhere.path()),
    );
    assert!(status.success(), "{out}");
    let second = Server::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        Some(elsewhere.path()),
        &[],
    );
    // The same secret verifies, and the journal already has the delivery.
    assert_eq!(d.send(&client, &second.base).await.unwrap().status(), 200);
    assert!(
        !elsewhere.path().join("gatehouse-data").exists(),
        "nothing made in the working directory"
    );
    assert!(
        !second.output().contains("Secret:"),
        "no new secret printed"
    );
}

/// `gatehouse migrate` on the embedded journal: a dry run says what it
/// would apply and creates nothing; a real run applies it; a second has
/// nothing to do, and a dry run answers beside a running server.
#[test]
fn migrate_shows_then_applies_and_answers_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let cfg = config.to_str().unwrap();
    let (status, out) = binary::run(&["migrate", "--config", cfg, "--dry-run"], None);
    assert!(status.success(), "{out}");
    assert!(out.contains("schema version 0"), "{out}");
    assert!(out.contains("would apply: 1 journal, 2 jobs"), "{out}");
    assert!(!db.exists(), "a dry run creates nothing");
    let (status, out) = binary::run(&["migrate", "--config", cfg], None);
    assert!(status.success(), "{out}");
    assert!(out.contains("applied 1 journal"), "{out}");
    let (status, out) = binary::run(&["migrate", "--config", cfg], None);
    assert!(status.success() && out.contains("nothing to do"), "{out}");
    let mut server = Server::start(&config);
    let (status, out) = binary::run(&["migrate", "--config", cfg, "--dry-run"], None);
    assert!(status.success() && out.contains("nothing to do"), "{out}");
    assert!(server.terminate().success());
}
