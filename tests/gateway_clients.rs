//! Real GitHub clients, unchanged but for their base URL and token, through
//! the real `gatehouse` binary's gateway to fakehub: PyGithub (PyPI) and
//! octokit's REST client (npm), installed by tests/clients/install. Also
//! what an operator relies on: `clients add|list|revoke` beside a running
//! server, and client tokens absent from logs and from the database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::{self, Server};
use common::hub::key;
use fakehub::{Config as HubConfig, FakeHub};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn install_clients() {
    let status = Command::new(root().join("tests/clients/install"))
        .status()
        .expect("run tests/clients/install");
    assert!(status.success(), "installing PyGithub and octokit failed");
}

/// Runs one client script; returns its exit status success, stdout, stderr.
fn run_client(
    program: &str,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, String)],
) -> (bool, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env("PYTHONPATH", root().join("target/clients/python"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start client");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn add_client(config: &Path, name: &str) -> String {
    binary::add_client(config, name, "octo-org")
}

fn clients_list(config: &Path) -> Vec<Value> {
    let (status, out) = binary::run(
        &[
            "clients",
            "list",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    serde_json::from_str(&out).unwrap()
}

fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn pygithub_and_octokit_work_through_the_gateway_unchanged() {
    clients_walk(false).await;
}

/// The same against GitHub Enterprise Server: the pool's `api_url` is
/// `https://HOST/api/v3` (GraphQL at `/api/graphql`), and both clients are
/// pointed at the gateway as at a GHES (`/api/v3`), pagination included.
#[tokio::test(flavor = "multi_thread")]
async fn pygithub_and_octokit_work_through_the_gateway_against_ghes() {
    clients_walk(true).await;
}

async fn clients_walk(ghes: bool) {
    install_clients();
    let mut hub_config = HubConfig::default().org("octo-org", &["widgets"]).app(
        101,
        &key("app-a.pub.pem"),
        &[(11, "octo-org")],
    );
    if ghes {
        hub_config = hub_config.enterprise("3.19.0");
    }
    hub_config.fixtures = Some(common::fixtures());
    let hub = FakeHub::start(hub_config).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[github]\napi_url = {:?}\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
            hub.url(),
            root()
                .join("fakehub/testdata/app-a.pem")
                .display()
                .to_string()
        ),
    );
    let server = Server::start(&config);
    let gw = format!("http://{}", server.gateway_addr().expect("gateway started"));
    let py_token = add_client(&config, "pygithub");
    let node_token = add_client(&config, "octokit");

    let common_env = |api: String, token: &str, issue: &str| {
        vec![
            ("GATEHOUSE_API", api),
            ("GATEHOUSE_TOKEN", token.to_string()),
            ("OWNER", "octo-org".to_string()),
            ("REPO", "widgets".to_string()),
            ("ISSUE", issue.to_string()),
        ]
    };
    let clients = root().join("tests/clients");
    let (ok, py_out, py_err) = run_client(
        "python3",
        &["walk.py"],
        &clients.join("python"),
        &common_env(format!("{gw}/api/v3"), &py_token, "4"),
    );
    assert!(ok, "PyGithub failed:\n{py_err}");
    // On github.com octokit's base is the gateway's root; on GHES its
    // /api/v3, as for any GHES.
    let node_base = if ghes {
        format!("{gw}/api/v3")
    } else {
        gw.clone()
    };
    let (ok, node_out, node_err) = run_client(
        "node",
        &["walk.mjs"],
        &clients.join("node"),
        &common_env(node_base, &node_token, "5"),
    );
    assert!(ok, "octokit failed:\n{node_err}");

    for (who, out) in [("PyGithub", &py_out), ("octokit", &node_out)] {
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{who} printed no JSON ({e}): {out}"));
        // fakehub seeds pull requests 1..3, newest first, one page each.
        assert_eq!(v["pulls"], serde_json::json!([3, 2, 1]), "{who}: {v}");
        assert_eq!(v["pull_title"], "Pull request 1 for widgets", "{who}");
        assert_eq!(v["pull_files"].as_array().unwrap().len(), 2, "{who}: {v}");
        assert_eq!(
            v["comments_after"].as_u64().unwrap(),
            v["comments_before"].as_u64().unwrap() + 1,
            "{who}: the posted comment is read back, never a stale list"
        );
        assert!(
            v["posted_url"].as_str().unwrap().starts_with(&gw),
            "{who}: {}",
            v["posted_url"]
        );
        assert_eq!(v["graphql_title"], "Pull request 1 for widgets", "{who}");
        assert!(
            v["rate_remaining"].as_u64().unwrap() > 0,
            "{who}: x-ratelimit-* pass through"
        );
        assert!(
            !out.contains("ghs_"),
            "{who} never sees an installation token"
        );
    }

    // Usage per client reaches `clients list` (flushed every 5 s): the
    // second client's read of the same pull request was revalidated.
    let deadline = Instant::now() + Duration::from_secs(20);
    let octokit = loop {
        let rows = clients_list(&config);
        let row = rows
            .iter()
            .find(|r| r["name"] == "octokit")
            .cloned()
            .unwrap();
        if row["last_hour"]["requests"].as_u64().unwrap() > 0 {
            break row;
        }
        assert!(Instant::now() < deadline, "usage never reached the journal");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        octokit["last_hour"]["revalidated"].as_u64().unwrap() >= 1,
        "{octokit}"
    );
    assert!(
        octokit["last_hour"]["units_saved"].as_u64().unwrap() >= 1,
        "{octokit}"
    );

    // Revoked: the same script now fails with GitHub's 401.
    let (status, out) = binary::run(
        &[
            "clients",
            "revoke",
            "pygithub",
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    let (ok, _, err) = run_client(
        "python3",
        &["walk.py"],
        &clients.join("python"),
        &common_env(format!("{gw}/api/v3"), &py_token, "4"),
    );
    assert!(!ok && err.contains("Bad credentials"), "{err}");

    // Tokens never reach the log or the database in clear.
    let log = server.output();
    for token in [&py_token, &node_token] {
        assert!(!log.contains(token.as_str()), "token in the log");
        for f in [
            "gatehouse.db",
            "gatehouse.db-wal",
            "gateway-cache.db",
            "gateway-cache.db-wal",
        ] {
            assert!(!file_contains(&dir.path().join(f), token), "token in {f}");
        }
    }
    // The store finds the client by the token's hash.
    let hash = gatehouse::gateway::clients::hash_token(&node_token);
    let found = common::beside(&db, async move |s| s.client_by_token(&hash).await.unwrap());
    assert_eq!(found.map(|c| c.name).as_deref(), Some("octokit"));
}

/// The clock gatehouse runs on for the quota test: all spending falls in
/// one minute whose hour ends at a minute boundary 7 to 67 s from now, so
/// the reset the clients are told is that near in their (real) time.
fn quota_clock() -> std::sync::Arc<gatehouse::clock::ManualClock> {
    let now = gatehouse::clock::now_ms();
    let mut boundary = (now / 60_000 + 1) * 60_000;
    if boundary - now < 7_000 {
        boundary += 60_000;
    }
    let clock = gatehouse::clock::ManualClock::starting_now();
    // Frozen an hour before that boundary, a few seconds into its minute.
    clock.advance(boundary - 3_600_000 + 2_000 - now);
    clock
}

#[tokio::test(flavor = "multi_thread")]
async fn octokits_throttling_plugin_and_pygithub_wait_out_a_quota_and_go_on() {
    use gatehouse::clock::Clock;
    install_clients();
    let mut hub_config = HubConfig::default().org("octo-org", &["widgets"]).app(
        101,
        &key("app-a.pub.pem"),
        &[(11, "octo-org")],
    );
    hub_config.fixtures = Some(common::fixtures());
    let hub = FakeHub::start(hub_config).await.unwrap();
    let clock = quota_clock();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.github = common::hub::github_config(&hub, &[(101, "app-a.pem")], &[]);
    config.gateway = Some(gatehouse::config::GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    });
    let app = common::TestApp::start_on(dir, config, clock.clone()).await;
    let gw = format!("http://{}", app.app.gateway_addr().unwrap());
    let quota = gatehouse::gateway::clients::Limits {
        quota_per_hour: Some(3),
        ..Default::default()
    };
    let mut tokens = Vec::new();
    for name in ["octokit", "pygithub"] {
        let settings = gatehouse::gateway::clients::Settings {
            name: name.into(),
            owners: vec!["octo-org".into()],
            limits: quota.clone(),
            ..Default::default()
        };
        let t = gatehouse::gateway::clients::add(
            &app.store(),
            &settings,
            &common::test_actor(),
            clock.now_ms(),
        )
        .await
        .unwrap();
        tokens.push(t);
    }
    let env = |api: String, token: &str| {
        vec![
            ("GATEHOUSE_API", api),
            ("GATEHOUSE_TOKEN", token.to_string()),
            ("OWNER", "octo-org".to_string()),
            ("REPO", "widgets".to_string()),
            ("READS", "5".to_string()),
        ]
    };
    let clients = root().join("tests/clients");
    let (node_env, py_env) = (
        env(gw.clone(), &tokens[0]),
        env(format!("{gw}/api/v3"), &tokens[1]),
    );
    let (node_dir, py_dir) = (clients.join("node"), clients.join("python"));
    let node = tokio::task::spawn_blocking(move || {
        run_client("node", &["quota.mjs"], &node_dir, &node_env)
    });
    let py =
        tokio::task::spawn_blocking(move || run_client("python3", &["quota.py"], &py_dir, &py_env));
    // Both meet their quota (3 reads of 5); then the hour moves on, as it
    // will have by the reset they were told.
    let refused = |m: &str, who: &str| {
        common::metric(
            m,
            &format!("gatehouse_gateway_refusals_total{{client=\"{who}\",rule=\"quota\"}}"),
        )
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = app.metrics().await;
        if refused(&m, "octokit") >= 1.0 && refused(&m, "pygithub") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clients never met their quota:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.advance(3_600_000);
    for (who, run) in [
        ("octokit", node.await.unwrap()),
        ("PyGithub", py.await.unwrap()),
    ] {
        let (ok, out, err) = run;
        assert!(ok, "{who} surfaced an error:\n{err}");
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{who} printed no JSON ({e}): {out}"));
        assert_eq!(v["ok"], 5, "{who}: every read succeeded: {v}");
        let waits = match &v["waits"] {
            Value::Array(w) => w.len() as u64,
            n => n.as_u64().unwrap(),
        };
        assert!(waits >= 1, "{who} backed off for the quota: {v}");
    }
    let m = app.metrics().await;
    assert!(
        m.contains("gatehouse_gateway_route_requests_total{client=\"octokit\",route=\"GET /repos/{owner}/{repo}\"}"),
        "usage by route template: {m}"
    );
    app.stop().await;
}

/// `clients add --print-entry`: the token on its own line, then the entry.
fn print_entry(config: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["clients", "add"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--print-entry", "--config", config.to_str().unwrap()]);
    // Stdout alone: the explanations go to stderr, and two pipes read
    // apart interleave as they please.
    let run = std::process::Command::new(binary::BIN)
        .args(&all)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let token = out
        .lines()
        .find(|l| l.starts_with("gth_"))
        .unwrap_or_else(|| panic!("no token printed: {out}"))
        .trim()
        .to_string();
    let entry = &out[out.find("[[client]]").expect("an entry is printed")..];
    let entry = entry[..entry.find("\n\n").unwrap_or(entry.len())].to_string();
    assert!(!entry.contains(&token), "the entry holds no token: {entry}");
    (token, entry + "\n")
}

/// Polls /metrics until `series` reaches `at_least`; returns the scrape.
async fn wait_metric(base: &str, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        let m = common::scrape(&http, base).await;
        if common::metric(&m, series).unwrap_or(0.0) >= at_least {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_file_is_the_registry_at_start_on_sighup_and_on_reload() {
    let mut hub_config = HubConfig::default().org("octo-org", &["widgets"]).app(
        101,
        &key("app-a.pub.pem"),
        &[(11, "octo-org")],
    );
    hub_config.fixtures = Some(common::fixtures());
    let hub = FakeHub::start(hub_config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[github]\napi_url = {:?}\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[gateway]\nlisten = \"127.0.0.1:0\"\nclients_file = \"clients.toml\"\n",
            hub.url(),
            root()
                .join("fakehub/testdata/app-a.pem")
                .display()
                .to_string()
        ),
    );
    let file = dir.path().join("clients.toml");
    let (ci, ci_entry) = print_entry(&config, &["ci", "--owner", "octo-org", "--quota", "500/h"]);
    let (bot, bot_entry) = print_entry(&config, &["bot", "--scope", "GET /repos/.*"]);
    assert!(ci_entry.contains("quota = \"500/h\""), "{ci_entry}");
    std::fs::write(&file, format!("# reviewed in infra/gatehouse\n{ci_entry}")).unwrap();
    // A file check-config cannot read names the line and the key.
    let bad = format!("{ci_entry}\n[[client]]\nname = \"bot\"\nqouta = 5\n");
    let bad_line = bad.lines().position(|l| l.starts_with("qouta")).unwrap() + 1;
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        binary::run(
            &["check-config", "--config", config.to_str().unwrap()],
            None,
        )
    };
    let (status, out) = check(&bad);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("line {bad_line}")) && out.contains("qouta"),
        "{out}"
    );
    let (status, out) = check(&format!("# reviewed in infra/gatehouse\n{ci_entry}"));
    assert!(
        status.success() && out.contains("clients      1 in"),
        "{out}"
    );

    // At start: the file's client works; the CLI shows where it came from.
    let server = Server::start(&config);
    let gw = format!("http://{}", server.gateway_addr().unwrap());
    let http = reqwest::Client::new();
    let get = async |token: &str| {
        common::gateway_get(&http, format!("{gw}/repos/octo-org/widgets"), token)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(get(&ci).await, 200);
    assert_eq!(get(&bot).await, 401, "not in the file yet");
    let rows = clients_list(&config);
    assert_eq!(rows.len(), 1, "--print-entry stored nothing: {rows:?}");
    assert_eq!(rows[0]["origin"], "file");
    let loads =
        |result: &str| format!("gatehouse_gateway_clients_file_loads_total{{result=\"{result}\"}}");

    // SIGHUP: the file now has both.
    std::fs::write(&file, format!("{ci_entry}\n{bot_entry}")).unwrap();
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    wait_metric(&server.base, &loads("applied"), 2.0).await;
    assert_eq!(get(&bot).await, 200);

    // A bad file keeps the registry as it was, and says why.
    std::fs::write(&file, &bad).unwrap();
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    let m = wait_metric(&server.base, &loads("refused"), 1.0).await;
    assert_eq!(
        (get(&ci).await, get(&bot).await),
        (200, 200),
        "the old registry stands"
    );
    let log = server.output();
    assert!(
        log.contains(&format!("line {bad_line}")) && log.contains("qouta"),
        "the log names the line and the key:\n{log}"
    );
    assert_eq!(
        common::metric(&m, "gatehouse_gateway_clients_file_ok"),
        Some(0.0)
    );

    // `gatehouse reload`: ci leaves the file and is refused from the next
    // request; the CLI may not revoke what the file owns.
    std::fs::write(&file, &bot_entry).unwrap();
    let (status, out) = binary::run(&["reload", "--config", config.to_str().unwrap()], None);
    assert!(status.success() && out.contains("revoked ci"), "{out}");
    assert_eq!(get(&ci).await, 401);
    assert_eq!(get(&bot).await, 200);
    let (status, out) = binary::run(
        &[
            "clients",
            "revoke",
            "bot",
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(!status.success() && out.contains("clients file"), "{out}");
    // Who spent what, by route template and by credential (usage is
    // flushed every 5 s).
    let usage = |by: &str| {
        let (status, out) = binary::run(
            &[
                "clients",
                "usage",
                "--by",
                by,
                "--json",
                "--config",
                config.to_str().unwrap(),
            ],
            None,
        );
        assert!(status.success(), "{out}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let routes = loop {
        let rows = usage("route");
        if rows
            .iter()
            .any(|r| r["key"] == "bot  GET /repos/{owner}/{repo}")
        {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the store: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ci_row = routes
        .iter()
        .find(|r| r["key"] == "ci  GET /repos/{owner}/{repo}")
        .unwrap_or_else(|| panic!("{routes:?}"));
    assert_eq!(ci_row["units_spent"], 1, "{ci_row}");
    // ci and bot read under different cache scopes (bot may act for any
    // owner): two misses, the rest revalidated for free.
    let creds = usage("credential");
    assert!(
        creds
            .iter()
            .any(|r| r["key"] == "app:101/installation:11" && r["units_spent"] == 2),
        "{creds:?}"
    );
    // Tokens never reach the file, the log or the database.
    let log = server.output();
    for token in [&ci, &bot] {
        assert!(!log.contains(token.as_str()), "token in the log");
        assert!(!file_contains(&file, token), "token in the clients file");
        assert!(
            !file_contains(&db, token)
                && !file_contains(&dir.path().join("gatehouse.db-wal"), token)
        );
    }
}
