//! The shipped Prometheus rules and Grafana dashboards, checked the way an
//! operator uses them: `promtool check rules` and `promtool test rules`
//! (Debian's prometheus package, installed by scripts/test); the
//! dashboards as Grafana's dashboard model; and a real Prometheus scraping
//! a real gatehouse through an incident (a consumer down, a credential
//! spent on fakehub, the journal's disk full): the alerts that should fire
//! fire and clear after recovery, every dashboard expression returns data,
//! and a gatehouse that stops answers to `GatehouseNotScraped`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{self, Server};
use common::hub::key;
use common::{Delivery, compact, consumer, fixtures, free_port};
use fakehub::{FakeHub, HookRef};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_rules_pass_promtools_checks_and_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "gatehouse-alerts.yml"]);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "tests/gatehouse-alerts.test.yml"]);
    assert!(ok, "{out}");
    // Every alert has its unit test, and says what to do and where.
    let rules = std::fs::read_to_string(deploy().join("prometheus/gatehouse-alerts.yml")).unwrap();
    let tests =
        std::fs::read_to_string(deploy().join("prometheus/tests/gatehouse-alerts.test.yml"))
            .unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut alerts = 0;
    for block in rules.split("  - alert: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        alerts += 1;
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} has no unit test"
        );
        for key in ["summary: ", "description: ", "runbook: "] {
            assert!(block.contains(key), "{name}: no {key}");
        }
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "{name}"
        );
        let anchor = block
            .split("runbook: README.md#")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap_or_else(|| panic!("{name}: runbook is no README section"));
        assert!(
            readme.contains(&format!("<a id=\"{anchor}\"></a>")),
            "{name}: README has no runbook section {anchor}"
        );
    }
    assert!(alerts >= 13, "{alerts}");
}

/// Each dashboard, as Grafana's dashboard model needs it: a schema
/// version, a datasource variable every query uses, panels with targets.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL expression of every panel: (dashboard, panel, expr).
fn expressions() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    file.clone(),
                    p["title"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn the_dashboards_load_as_grafana_dashboard_models() {
    let boards = dashboards();
    let names: Vec<&str> = boards.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        names,
        ["gatehouse-actions.json", "gatehouse-operations.json"]
    );
    let mut uids = BTreeSet::new();
    for (file, d) in &boards {
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{file}");
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{file}"
        );
        assert!(!d["title"].as_str().unwrap().is_empty(), "{file}");
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(ds["query"], "prometheus", "{file}");
        let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
        let mut targets = 0;
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: panel ids unique"
            );
            let g = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(g[k].is_u64(), "{file}: {} gridPos.{k}", p["title"]);
            }
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{file}"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], ds_ref, "{file}: {}", p["title"]);
            let ts = p["targets"].as_array().unwrap();
            assert!(!ts.is_empty(), "{file}: {} has no query", p["title"]);
            for t in ts {
                assert_eq!(t["datasource"]["uid"], ds_ref, "{file}");
                assert!(t["refId"].is_string() && t["expr"].is_string(), "{file}");
                targets += 1;
            }
        }
        assert!(targets >= 10, "{file}: {targets}");
        // Query variables read from the same datasource.
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"]["uid"], ds_ref, "{file}");
        }
    }
}

/// A Prometheus of our own on a loopback port, ended (by pid) on drop.
struct Prometheus {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rules` every second.
    async fn start(target: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: gatehouse\n    static_configs:\n      - targets: [{target:?}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = p.client.get(format!("{}/-/ready", p.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return p;
            }
            assert!(Instant::now() < deadline, "Prometheus did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET `path` of Prometheus's API, as JSON.
    async fn api(&self, path: &str) -> Value {
        self.client
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn query(&self, expr: &str) -> Vec<Value> {
        let v = self
            .api(&format!(
                "query?query={}",
                form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Alert names by state (firing, pending).
    async fn alerts(&self, state: &str) -> BTreeSet<String> {
        self.api("alerts").await["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == state)
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits (bounded) until `f` holds for the alerts firing now.
    async fn until_firing(
        &self,
        what: &str,
        limit: Duration,
        f: impl Fn(&BTreeSet<String>) -> bool,
    ) {
        self.until(what, limit, false, f).await
    }

    /// Waits (bounded) until `f` holds for the alerts seen firing since
    /// the wait began (an incident's alerts need not all fire at once).
    async fn until_fired(
        &self,
        what: &str,
        limit: Duration,
        f: impl Fn(&BTreeSet<String>) -> bool,
    ) {
        self.until(what, limit, true, f).await
    }

    async fn until(
        &self,
        what: &str,
        limit: Duration,
        accumulate: bool,
        f: impl Fn(&BTreeSet<String>) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        let mut seen = BTreeSet::new();
        loop {
            let mut firing = self.alerts("firing").await;
            if accumulate {
                seen.extend(firing);
                firing = seen.clone();
            }
            if f(&firing) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: firing {firing:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped rules with a test's time scale: `for:` durations of a
/// second or two, rate windows of 20 s, every group each second. The
/// thresholds and expressions are the shipped ones.
fn rules_at_test_speed() -> String {
    let text = std::fs::read_to_string(deploy().join("prometheus/gatehouse-alerts.yml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("for: ") {
            out.push_str(&format!("{indent}for: 2s\n"));
        } else if t.starts_with("interval: ") {
            out.push_str(&format!("{indent}interval: 1s\n"));
        } else {
            let mut l = line.to_string();
            for w in ["[5m]", "[10m]", "[15m]"] {
                l = l.replace(w, "[20s]");
            }
            out.push_str(&l);
            out.push('\n');
        }
    }
    assert!(out.contains("for: 2s") && out.contains("[20s]"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_fires_the_alerts_of_an_incident_and_clears_them() {
    let port = free_port();
    // fakehub: an App whose webhook points at gatehouse, and a budget of
    // 40 requests per 20 s, so a client can spend it.
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &key("app-a.pub.pem"), &[(11, "octo-org")]);
    hub_config.fixtures = Some(fixtures());
    hub_config.apps[0].webhook_url = Some(format!("http://127.0.0.1:{port}/webhooks/github"));
    hub_config.apps[0].webhook_secret = Some(common::SECRET.into());
    hub_config.apps[0].hook_id = Some(555);
    hub_config.rate_limit.core = 40;
    hub_config.rate_limit.window_secs = 20;
    let hub = FakeHub::start(hub_config).await.unwrap();
    // Deliveries GitHub fails to make before gatehouse runs: recovery
    // finds them (completeness has something to count).
    common::hub::push_deliveries(&hub, HookRef::App(101), 3).await;

    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ci = consumer::start(Duration::ZERO, consumer::up_when(healthy.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let disk = common::tmpfs::Tmpfs::mount(&data, "64m");
    let db = data.join("gatehouse.db");
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "\n[problems]\ninterval_secs = 1\n\n[github]\napi_url = {:?}\nreserve = 5\nmax_wait_secs = 0\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[gateway]\nlisten = \"127.0.0.1:0\"\nfair_share_below = 0.0\npriority_share = 0.0\n\n[[routes]]\nname = \"ci\"\nurl = {:?}\nmax_attempts = 1\nordering = \"none\"\nbreaker = {{ failures = 3, window = \"1m\", probe_every = \"2s\" }}\n",
            hub.url(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fakehub/testdata/app-a.pem")
                .display()
                .to_string(),
            ci.url
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"\n\n[storage]",
        &format!("listen = \"127.0.0.1:{port}\"\n\n[storage]"),
    );
    std::fs::write(&config, text).unwrap();
    let mut server = Server::start(&config);
    assert_eq!(server.base, format!("http://127.0.0.1:{port}"));
    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"), &rules_at_test_speed()).await;
    let client = reqwest::Client::new();

    // Traffic: pushes the consumer refuses (dead letters, its breaker),
    // GitHub Actions runs and jobs, gateway reads (cached and not).
    let push = compact(&fixtures().join("payloads/push/payload.json"));
    for i in 0..5 {
        let r = Delivery::json("push", &format!("push-{i}"), push.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    for (event, dir) in [
        ("workflow_run", "workflow_run"),
        ("workflow_job", "workflow_job"),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(fixtures().join("payloads").join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let r = Delivery::json(event, &format!("{event}-{i}"), compact(f))
                .send(&client, &server.base)
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", f.display());
        }
    }
    let gw = format!("http://{}", server.gateway_addr().expect("gateway"));
    let token = common::add_client(&db, "ci-bot", &[], &["octo-org"]);
    let get = |path: String| {
        client
            .get(format!("{gw}{path}"))
            .bearer_auth(&token)
            .header("accept", "application/vnd.github+json")
            .send()
    };
    // The same read twice (the second a cache hit); then a runaway
    // client reads new pages, twice a second, until told to stop (or two
    // minutes pass): it spends every credential for octo-org again at
    // each of fakehub's 20 s windows.
    for _ in 0..2 {
        assert_eq!(
            get("/repos/octo-org/widgets".into())
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let runaway = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hammer = {
        let (runaway, refused, token, gw) =
            (runaway.clone(), refused.clone(), token.clone(), gw.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            let mut page = 0;
            while runaway.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(120)
            {
                page += 1;
                let r = client
                    .get(format!("{gw}/repos/octo-org/widgets/issues?page={page}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if r.status() != 200 {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        })
    };
    common::eventually(
        "the runaway to spend the budget",
        Duration::from_secs(30),
        async || refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
    )
    .await;

    // The disk fills: the next commits fail.
    let filler = disk.fill();
    let mut unavailable = false;
    for i in 0..500 {
        let r = Delivery::json("push", &format!("full-{i}"), push.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
        if r.status() == 503 {
            unavailable = true;
            break;
        }
    }
    assert!(unavailable, "a full disk ends in 503");

    let incident = [
        "GatehouseJournalNotWritable",
        "GatehouseDeadLetters",
        "GatehouseRouteBreakerOpen",
        "GatehouseCredentialSpent",
    ];
    prometheus
        .until_fired("the incident's alerts", Duration::from_secs(60), |f| {
            incident.iter().all(|a| f.contains(*a))
        })
        .await;

    // Recovery: space, a consumer that answers, the dead letters retried;
    // nobody spends the budget any more.
    std::fs::remove_file(&filler).unwrap();
    runaway.store(false, std::sync::atomic::Ordering::SeqCst);
    hammer.await.unwrap();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    common::eventually("the journal to heal", Duration::from_secs(30), async || {
        client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    binary::retry_dead(&config, "ci");
    prometheus
        .until_firing(
            "the incident's alerts to clear",
            Duration::from_secs(90),
            |f| incident.iter().all(|a| !f.contains(*a)),
        )
        .await;

    // Every dashboard expression returns data from this gatehouse.
    let mut empty = Vec::new();
    for (file, panel, expr) in expressions() {
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$repository", ".*")
            .replace("$workflow", ".*");
        if prometheus.query(&q).await.is_empty() {
            empty.push(format!("{file} / {panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // A gatehouse that stops answering is an alert of its own.
    assert!(server.terminate().success());
    prometheus
        .until_firing("GatehouseNotScraped", Duration::from_secs(30), |f| {
            f.contains("GatehouseNotScraped")
        })
        .await;
    drop(prometheus);
    drop(disk);
}
