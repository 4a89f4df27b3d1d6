//! Apps as organisations really install them: several Apps on one
//! organisation, each on all repositories or a selection that drifts.
//! Every repository is served by a credential that can see it; a
//! repository leaving a selection (an `installation_repositories`
//! delivery, through the journal) stops going to that App; a repository
//! no App covers gets a clear answer.

mod common;

use common::hub::{github_config, key};
use common::{SECRET, TestApp, free_port, test_config};
use fakehub::{Config as HubConfig, FakeHub};
use gatehouse::config::GatewayConfig;

/// octo-org (widgets, gadgets): App 101 on all of it (installation 11),
/// App 202 on widgets only (21), its webhook to gatehouse on `port`.
/// other-org (alpha, beta): App 202 on alpha only (22).
async fn hub(port: u16) -> FakeHub {
    let mut c = HubConfig::default()
        .org("octo-org", &["widgets", "gadgets"])
        .org("other-org", &["alpha", "beta"])
        .app(101, &key("app-a.pub.pem"), &[(11, "octo-org")])
        .app(
            202,
            &key("app-b.pub.pem"),
            &[(21, "octo-org"), (22, "other-org")],
        );
    c.apps[1].installations[0].repositories = Some(vec!["widgets".into()]);
    c.apps[1].installations[1].repositories = Some(vec!["alpha".into()]);
    c.apps[1].webhook_url = Some(format!("http://127.0.0.1:{port}/webhooks/github"));
    c.apps[1].webhook_secret = Some(SECRET.into());
    c.apps[1].hook_id = Some(777);
    c.fixtures = Some(common::fixtures());
    FakeHub::start(c).await.unwrap()
}

/// Requests fakehub served per installation so far.
fn served(hub: &FakeHub, installation: i64) -> u64 {
    hub.stats()
        .installations
        .get(&installation)
        .map_or(0, |u| u.requests)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_repository_goes_to_an_app_that_can_see_it_as_selections_change() {
    let port = free_port();
    let hub = hub(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.github = github_config(&hub, &[(101, "app-a.pem"), (202, "app-b.pem")], &[]);
    c.recovery.enabled = false;
    c.gateway = Some(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    });
    let t = TestApp::start_in(dir, c).await;
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let token = common::add_client(&t.db_path, "ci", &[], &[]);
    let client = reqwest::Client::new();
    let get = async |path: &str| {
        let r = common::gateway_get(&client, format!("{gw}{path}"), &token).await;
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };

    // gadgets: only App 101 sees it, however often it is asked for.
    for _ in 0..8 {
        let (status, body) = get("/repos/octo-org/gadgets").await;
        assert_eq!(status, 200, "{body}");
    }
    // Installation 21 made one request: the listing of its selection.
    assert_eq!(served(&hub, 21), 1, "App 202 was never asked about gadgets");
    // widgets: both may serve it; the pool spreads by budget, so both do.
    for _ in 0..8 {
        assert_eq!(get("/repos/octo-org/widgets").await.0, 200);
    }
    assert!(served(&hub, 21) > 0, "App 202's selection is used");

    // widgets leaves App 202's selection: GitHub tells the App, gatehouse
    // journals that and looks octo-org up again.
    let record = hub
        .hub()
        .change_selection(21, "widgets", false)
        .await
        .unwrap()
        .expect("App 202 has a webhook");
    assert_eq!(record.status_code, 202, "gatehouse took the delivery");
    let before = served(&hub, 21);
    for _ in 0..8 {
        let (status, body) = get("/repos/octo-org/widgets").await;
        assert_eq!(status, 200, "{body}");
    }
    // One request with installation 21's token: listing its new selection.
    assert_eq!(
        served(&hub, 21),
        before + 1,
        "widgets no longer goes to App 202"
    );

    // other-org/beta: no App sees it, and no token serves other-org.
    let (status, body) = get("/repos/other-org/beta").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no App gatehouse holds is installed on that repository"),
        "{body}"
    );
    assert_eq!(get("/repos/other-org/alpha").await.0, 200);

    // Deliveries name beta: the GitHub page and `github status` list it
    // as a repository no credential covers, and alpha not.
    for (i, repo) in ["beta", "alpha"].iter().enumerate() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&common::push_for("other-org", i)).unwrap();
        v["repository"]["name"] = (*repo).into();
        v["repository"]["full_name"] = format!("other-org/{repo}").into();
        let d = common::Delivery::json(
            "push",
            &format!("seen-{repo}"),
            serde_json::to_vec(&v).unwrap(),
        );
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let admin = common::admin::Admin::login(&t.base).await;
    let page = admin.get("/admin/github").await;
    let listed = page
        .body
        .split("Repositories no credential covers")
        .nth(1)
        .unwrap_or_else(|| panic!("no such section: {}", page.body));
    assert!(listed.contains("other-org/beta"), "{listed}");
    assert!(!listed.contains("other-org/alpha"), "{listed}");
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fakehub/testdata");
    let cli_dir = tempfile::tempdir().unwrap();
    let file = common::binary::write_config(
        cli_dir.path(),
        &t.db_path,
        &format!(
            "\n[github]\napi_url = \"{}\"\n\n[[github.apps]]\nid = 101\nprivate_key_file = {:?}\n\n[[github.apps]]\nid = 202\nprivate_key_file = {:?}\n",
            hub.url(),
            keys.join("app-a.pem"),
            keys.join("app-b.pem")
        ),
    );
    let (ok, out) = tokio::task::spawn_blocking(move || {
        common::binary::run(
            &["github", "status", "--config", file.to_str().unwrap()],
            None,
        )
    })
    .await
    .unwrap();
    assert!(ok.success(), "{out}");
    assert!(
        out.contains("1 of 2 repositories deliveries named in the last 7 days have no credential"),
        "{out}"
    );
    assert!(
        out.contains("other-org/beta: no credential can act for other-org/beta"),
        "{out}"
    );

    t.stop().await;
}

/// A delivery names the installation of an App gatehouse does not hold
/// (App 202's); a consumer acting on it through the gateway is served by
/// whichever of gatehouse's Apps is installed on that owner (App 101), as
/// PullApprove's "authorize itself if the App id does not match" did.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_from_another_apps_installation_is_acted_on_with_ours() {
    let port = free_port();
    let hub = hub(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    // Only App 101's key: App 202 is someone else's.
    c.github = github_config(&hub, &[(101, "app-a.pem")], &[]);
    c.recovery.enabled = false;
    c.gateway = Some(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    });
    let t = TestApp::start_in(dir, c).await;
    let record = hub
        .hub()
        .deliver(
            fakehub::HookRef::App(202),
            "push",
            "payload.json",
            "octo-org",
            "widgets",
        )
        .await
        .unwrap();
    assert_eq!(record.status_code, 202);
    let store = t.store();
    let id = store.ids_of_guid(&record.guid).await.unwrap()[0];
    let shown = store.show(id).await.unwrap().unwrap();
    assert_eq!(shown.installation_id, Some(21), "App 202's installation");
    // The consumer asks about the repository the delivery named.
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let token = common::add_client(&t.db_path, "consumer", &[], &[]);
    let before = served(&hub, 11);
    let r = reqwest::Client::new()
        .get(format!("{gw}/repos/octo-org/widgets"))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        served(&hub, 11) > before,
        "App 101's installation served it"
    );
    assert_eq!(served(&hub, 21), 0, "App 202's never used");
    t.stop().await;
}
