//! The admin UI in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver, both installed by scripts/test). An operator
//! logs in, finds a delivery by GUID, opens it, retries its dead letter and
//! sees the new attempt; a hostile payload runs no script. Screenshots of
//! every page land in target/admin-screenshots/ as artefacts.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{PASSWORD, hostile_payload};
use common::consumer::{self, Arrival};
use common::{Delivery, TestApp, compact, payload_files, route};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a loopback port; killed (by its pid) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    /// Ends chromedriver and the browsers it started (its process group:
    /// a test that panicked never closed its browser).
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: a signal to the process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Driver {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: scripts/test installs Debian's chromium and chromium-driver"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        // Its own process group, so the browsers it starts end with it.
        .process_group(0)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    // The flags keep Chromium off the network (this machine has none) and
    // quiet; --no-sandbox because tests may run as root.
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// The browser was sent to the login form.
async fn at_login(b: &Client) {
    let url = b.current_url().await.unwrap();
    assert!(url.path().ends_with("/admin/login"), "{url}");
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text_of(b: &Client, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_finds_and_retries_a_dead_letter_in_chromium() {
    // The consumer refuses the first try of "browser-dead" and takes the rest.
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = consumer::start(
        Duration::ZERO,
        std::sync::Arc::new(move |a: &Arrival, _| {
            let first = a.guid == "browser-dead"
                && !refused.swap(true, std::sync::atomic::Ordering::SeqCst);
            (if first { 500 } else { 200 }, vec![])
        }),
    )
    .await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.max_attempts = 1;
        cfg.routes = vec![r];
    })
    .await;
    // A realistic journal: every GitHub fixture once, then the one that dies.
    for (i, (event, file)) in payload_files().iter().enumerate() {
        let d = Delivery::json(event, &format!("fixture-{i}"), compact(file));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let push = compact(&common::fixtures().join("payloads/push/payload.json"));
    t.send(&Delivery::json("push", "browser-dead", push)).await;
    let hostile = hostile_payload();
    t.send(&Delivery::json("issues", "browser-hostile", hostile))
        .await;
    common::census::wait_census(
        &t.store(),
        "browser-dead dead-lettered",
        Duration::from_secs(60),
        |c| c.all_dead("browser-dead"),
    )
    .await;

    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let b = browser(&driver, profile.path()).await;
    let base = &t.base;

    // Any page sends us to the login form first.
    b.goto(&format!("{base}/admin/deliveries")).await.unwrap();
    at_login(&b).await;
    shot(&b, "login").await;
    let pw = b.find(Locator::Css("input[name=password]")).await.unwrap();
    pw.send_keys(PASSWORD).await.unwrap();
    click(&b, "form.login button").await;
    b.wait()
        .for_element(Locator::Css("table.deliveries"))
        .await
        .unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/admin/deliveries");

    // Find the delivery by its GUID.
    let guid = b.find(Locator::Css("input[name=guid]")).await.unwrap();
    guid.send_keys("browser-dead").await.unwrap();
    click(&b, "form.filters button").await;
    b.wait()
        .for_element(Locator::Css("input[name=guid][value='browser-dead']"))
        .await
        .unwrap();
    let rows = b
        .find_all(Locator::Css("table.deliveries tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    shot(&b, "deliveries").await;

    // Open it: a dead letter with one failed attempt.
    click(&b, "table.deliveries td.mono a").await;
    b.wait().for_element(Locator::Css("#job-ci")).await.unwrap();
    assert!(text_of(&b, "#job-ci h3").await.contains("dead"));
    assert_eq!(
        b.find_all(Locator::Css("#job-ci table.attempts > tbody > tr"))
            .await
            .unwrap()
            .len(),
        1
    );
    shot(&b, "delivery-dead").await;

    // Retry it and watch the new attempt arrive.
    click(&b, "#job-ci form button").await;
    b.wait().for_element(Locator::Css("p.ok")).await.unwrap();
    assert!(text_of(&b, "p.ok").await.contains("1 job(s) queued again"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.refresh().await.unwrap();
        let rows = b
            .find_all(Locator::Css("#job-ci table.attempts > tbody > tr"))
            .await
            .unwrap();
        if rows.len() == 2 && text_of(&b, "#job-ci h3").await.contains("done") {
            let second = rows[1].text().await.unwrap();
            assert!(
                second.contains("200") && second.contains("done"),
                "{second}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retried attempt never showed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shot(&b, "delivery-retried").await;

    // A payload of script in every string runs nothing: the only script
    // element is our own, no image was made, no handler fired.
    let id = t.store().ids_of_guid("browser-hostile").await.unwrap()[0];
    b.goto(&format!("{base}/admin/deliveries/{id}"))
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css("details.json"))
        .await
        .unwrap();
    let probe = b
        .execute(
            "return [document.scripts.length, document.images.length, typeof window.__xss,
                     document.body.innerText.includes('<script>window.__xss')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(probe, serde_json::json!([1, 0, "undefined", true]));
    shot(&b, "delivery-hostile").await;

    // Every page renders in the browser, on a desktop and on a phone
    // (390 px wide: nothing wider than the screen, the important columns
    // kept); the overview refreshes itself unless the switch is off.
    let dead_id = t.store().ids_of_guid("browser-dead").await.unwrap()[0];
    let dead_page = format!("/admin/deliveries/{dead_id}");
    for (width, height) in [(1280, 900), (390, 844)] {
        b.set_window_size(width, height).await.unwrap();
        for (path, name, marker, kept) in [
            ("/admin/", "overview", "figure.chart svg", "Sinks"),
            (
                "/admin/deliveries",
                "deliveries",
                "table.deliveries",
                "browser-dead",
            ),
            (dead_page.as_str(), "delivery", "#job-ci", "Retry ci"),
            ("/admin/partitions", "partitions", "table", "Backlog"),
            ("/admin/github", "github", "main h1", "GitHub"),
            ("/admin/reports", "reports", "figure.chart svg", "Reports"),
            ("/admin/bulk?state=dead", "bulk", "main h1", "dead"),
        ] {
            b.goto(&format!("{base}{path}")).await.unwrap();
            b.wait().for_element(Locator::Css(marker)).await.unwrap();
            let fits = b
                .execute(
                    "const d = document.documentElement;
                     const wide = [...document.querySelectorAll('body *')]
                       .filter(e => e.getBoundingClientRect().right > d.clientWidth + 0.5)
                       .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.textContent.slice(0, 40));
                     return [d.scrollWidth, d.clientWidth, document.body.innerText, wide];",
                    vec![],
                )
                .await
                .unwrap();
            shot(&b, &format!("{name}-{width}")).await;
            let (scroll, client) = (fits[0].as_i64().unwrap(), fits[1].as_i64().unwrap());
            assert!(
                scroll <= client,
                "{path} at {width} px is {scroll} px wide (screen {client}): {}",
                fits[3]
            );
            assert!(
                fits[2].as_str().unwrap().contains(kept),
                "{path} at {width} px lost {kept:?}"
            );
        }
    }
    b.set_window_size(1280, 900).await.unwrap();
    b.goto(&format!("{base}/admin/")).await.unwrap();
    let live = b
        .wait()
        .for_element(Locator::Css("#live-toggle"))
        .await
        .unwrap();
    assert!(
        live.is_displayed().await.unwrap(),
        "the script shows the switch"
    );
    assert!(
        live.is_selected().await.unwrap(),
        "live refresh is on by default"
    );
    live.click().await.unwrap();
    let stored = b
        .execute("return localStorage.getItem('gatehouse.live')", vec![])
        .await
        .unwrap();
    assert_eq!(stored, serde_json::json!("off"));

    // Log out: the next page asks for the password again.
    click(&b, "form[action='/admin/logout'] button").await;
    b.wait()
        .for_element(Locator::Css("input[name=password]"))
        .await
        .unwrap();
    b.goto(&format!("{base}/admin/")).await.unwrap();
    at_login(&b).await;
    b.close().await.unwrap();
}

/// Not a test: regenerates README's screenshot from a running gatehouse
/// (the admin benchmark's million-delivery journal, say):
///
///     GATEHOUSE_URL=http://127.0.0.1:PORT GATEHOUSE_PASSWORD=... \
///         cargo test --test admin_browser -- --ignored readme_screenshot
#[tokio::test]
#[ignore]
async fn readme_screenshot() {
    let base = std::env::var("GATEHOUSE_URL").expect("GATEHOUSE_URL");
    let password = std::env::var("GATEHOUSE_PASSWORD").expect("GATEHOUSE_PASSWORD");
    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let b = browser(&driver, profile.path()).await;
    b.set_window_size(1280, 900).await.unwrap();
    b.goto(&format!("{base}/admin/login")).await.unwrap();
    let pw = b.find(Locator::Css("input[name=password]")).await.unwrap();
    pw.send_keys(&password).await.unwrap();
    click(&b, "form.login button").await;
    b.wait()
        .for_element(Locator::Css("figure.chart svg"))
        .await
        .unwrap();
    let png = b.screenshot().await.unwrap();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/admin-overview.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, png).unwrap();
    b.close().await.unwrap();
}

/// Logs in from whatever page the browser was sent to the form from.
async fn log_in(b: &Client) {
    at_login(b).await;
    let pw = b.find(Locator::Css("input[name=password]")).await.unwrap();
    pw.send_keys(PASSWORD).await.unwrap();
    click(b, "form.login button").await;
}

/// Clicks a button whose form asks to confirm, and accepts.
async fn click_confirmed(b: &Client, css: &str) {
    click(b, css).await;
    b.accept_alert().await.unwrap();
}

#[tokio::test]
async fn an_operator_adds_rotates_and_revokes_a_gateway_client_in_chromium() {
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &common::hub::key("app-a.pub.pem"), &[(11, "octo-org")]);
    hub_config.fixtures = Some(common::fixtures());
    let hub = fakehub::FakeHub::start(hub_config).await.unwrap();
    let t = TestApp::spawn_with(|cfg| {
        cfg.github = common::hub::github_config(&hub, &[(101, "app-a.pem")], &[]);
        cfg.gateway = Some(gatehouse::config::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
    })
    .await;
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let http = reqwest::Client::new();
    let status = async |token: &str| {
        common::gateway_get(&http, format!("{gw}/repos/octo-org/widgets"), token)
            .await
            .status()
            .as_u16()
    };

    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let b = browser(&driver, profile.path()).await;
    b.goto(&format!("{}/admin/clients", t.base)).await.unwrap();
    log_in(&b).await;
    b.wait()
        .for_element(Locator::Css("form#add-client"))
        .await
        .unwrap();
    // Every page the browser showed, to count where each token appeared.
    let mut pages = vec![b.source().await.unwrap()];

    // Add: the token is on the next page, once.
    let fill = async |name: &str, value: &str| {
        b.find(Locator::Css(&format!("form#add-client [name={name}]")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    };
    fill("name", "deploy-bot").await;
    fill("owners", "octo-org").await;
    fill("quota", "500/h").await;
    b.find(Locator::Css(
        "form#add-client select[name=priority] option[value=high]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    shot(&b, "clients").await;
    click(&b, "form#add-client button").await;
    b.wait().for_element(Locator::Css("#token")).await.unwrap();
    let first = text_of(&b, "#token").await;
    assert!(first.starts_with("gth_"), "{first}");
    pages.push(b.source().await.unwrap());
    assert_eq!(status(&first).await, 200, "the new token works at once");

    // The list shows it, with its limits and no token.
    b.goto(&format!("{}/admin/clients", t.base)).await.unwrap();
    let row = text_of(&b, "tr[data-client=deploy-bot]").await;
    assert!(
        row.contains("quota 500/h") && row.contains("priority high"),
        "{row}"
    );
    pages.push(b.source().await.unwrap());

    // Rotate: a new token, shown once; the old one is refused at once.
    click_confirmed(&b, "tr[data-client=deploy-bot] form[action$=rotate] button").await;
    b.wait().for_element(Locator::Css("#token")).await.unwrap();
    let second = text_of(&b, "#token").await;
    assert!(second.starts_with("gth_") && second != first, "{second}");
    pages.push(b.source().await.unwrap());
    assert_eq!(status(&first).await, 401);
    assert_eq!(status(&second).await, 200);

    // Revoke: refused from the next request.
    b.goto(&format!("{}/admin/clients", t.base)).await.unwrap();
    click_confirmed(&b, "tr[data-client=deploy-bot] form[action$=revoke] button").await;
    b.wait().for_element(Locator::Css("p.ok")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/admin/clients?revoked=1")
    );
    assert_eq!(status(&second).await, 401);
    pages.push(b.source().await.unwrap());

    // The audit log shows each action, newest first, by this session.
    let audit = text_of(&b, "table#audit tbody").await;
    let lines: Vec<&str> = audit.lines().filter(|l| l.contains("deploy-bot")).collect();
    assert_eq!(lines.len(), 3, "{audit}");
    for (line, action) in lines.iter().zip(["revoke", "rotate", "add"]) {
        assert!(
            line.contains(action) && line.contains("admin:session ") && line.contains("127.0.0.1"),
            "{line}"
        );
    }
    shot(&b, "clients-audit").await;
    for token in [&first, &second] {
        let shown = pages.iter().filter(|p| p.contains(token.as_str())).count();
        assert_eq!(shown, 1, "a token appears on exactly one page");
        assert!(!audit.contains(token.as_str()));
    }
    b.close().await.unwrap();
}
