//! Reload without restart, on the real binary under load: a route's URL,
//! a webhook secret (old and new both accepted across the switch), a
//! token and an App key (fakehub refuses the old ones after the switch),
//! gateway clients added and revoked; no request fails because of the
//! reload, and an invalid file keeps the running config.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::binary::{self, Server};
use common::hub::key;
use common::{Delivery, compact, consumer, fixtures};
use fakehub::FakeHub;
use gatehouse::gateway::clients::{Settings, new_token};

const OLD_SECRET: &str = "webhook-secret-old";
const NEW_SECRET: &str = "webhook-secret-new";
const OLD_PAT: &str = "ghp_oldoldoldoldoldoldoldoldoldoldold1";
const NEW_PAT: &str = "ghp_newnewnewnewnewnewnewnewnewnewnew2";

fn testdata(name: &str) -> String {
    format!("{}/fakehub/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A clients-file entry for `name` and its token.
fn client(name: &str) -> (String, String) {
    let token = new_token();
    let settings = Settings {
        name: name.into(),
        scopes: vec![],
        owners: vec![],
        limits: Default::default(),
    };
    (
        gatehouse::gateway::registry::entry(&settings, &token).unwrap(),
        token,
    )
}

/// The config: `secrets` as files, route `ci` to `url`, the token and App
/// key files as they are on disk, a gateway with the clients file.
fn write_config(dir: &Path, hub: &FakeHub, secrets: &[&str], url: &str, extra: &str) {
    let files: Vec<String> = secrets
        .iter()
        .map(|s| {
            let f = dir.join(format!("{s}.secret"));
            std::fs::write(&f, format!("{s}\n")).unwrap();
            format!("{:?}", f.display().to_string())
        })
        .collect();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = {db:?}\n\n[webhooks]\nsecret_files = [{files}]\n\n[github]\napi_url = {api:?}\n\n[[github.apps]]\nid = 101\nprivate_key_file = \"app.pem\"\n\n[[github.tokens]]\nname = \"bot\"\ntoken_file = \"bot.token\"\nowners = [\"other-org\"]\n\n[gateway]\nlisten = \"127.0.0.1:0\"\nclients_file = \"clients.toml\"\n\n[[routes]]\nname = \"ci\"\nurl = {url:?}\n{extra}",
        db = dir.join("gatehouse.db").display().to_string(),
        files = files.join(", "),
        api = hub.url(),
    );
    std::fs::write(dir.join("gatehouse.toml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_secrets_keys_and_clients_change_under_load_and_a_bad_file_changes_nothing() {
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .org("other-org", &["secret"])
        .app(101, &key("app-a.pub.pem"), &[(11, "octo-org")])
        .token_for("bot", OLD_PAT, &["other-org/secret"]);
    hub_config.fixtures = Some(fixtures());
    let hub = FakeHub::start(hub_config).await.unwrap();
    let a = consumer::start(Duration::ZERO, consumer::always(200)).await;
    let b = consumer::start(Duration::ZERO, consumer::always(200)).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testdata("app-a.pem"), dir.path().join("app.pem")).unwrap();
    std::fs::write(dir.path().join("bot.token"), format!("{OLD_PAT}\n")).unwrap();
    let (load_entry, load_token) = client("load");
    let (old_entry, old_token) = client("old");
    let (late_entry, late_token) = client("late");
    std::fs::write(
        dir.path().join("clients.toml"),
        format!("{load_entry}\n{old_entry}\n"),
    )
    .unwrap();
    write_config(dir.path(), &hub, &[OLD_SECRET], &a.url, "");
    let config = dir.path().join("gatehouse.toml");
    let mut server = Server::start(&config);
    let gw = format!("http://{}", server.gateway_addr().unwrap());
    let reload = || binary::run(&["reload", "--config", config.to_str().unwrap()], None);

    // Load all along: a delivery and two gateway reads (one on the App's
    // installation, one on the token) every 20 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let signing = Arc::new(Mutex::new(OLD_SECRET));
    let sent = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let load = {
        let (stop, signing, sent, failures) = (
            stop.clone(),
            signing.clone(),
            sent.clone(),
            failures.clone(),
        );
        let (base, gw, token) = (server.base.clone(), gw.clone(), load_token.clone());
        let body = compact(&fixtures().join("payloads/push/payload.json"));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let started = std::time::Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                i += 1;
                let secret = *signing.lock().unwrap();
                let r = Delivery::json("push", &format!("load-{i}"), body.clone())
                    .signed_with(secret)
                    .send(&client, &base)
                    .await;
                if !matches!(&r, Ok(r) if r.status() == 202) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("delivery {i}: {r:?}"));
                }
                for path in ["/repos/octo-org/widgets/issues", "/repos/other-org/secret"] {
                    let r = client
                        .get(format!("{gw}{path}?n={i}"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    if !matches!(&r, Ok(r) if r.status() == 200) {
                        let status = r.as_ref().map(|r| r.status().as_u16()).ok();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("GET {path} {i}: {status:?}"));
                    }
                }
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let progress = |n: u64| {
        let sent = sent.clone();
        async move {
            let from = sent.load(Ordering::SeqCst);
            common::wait_until("load to go on", Duration::from_secs(30), || {
                sent.load(Ordering::SeqCst) >= from + n
            })
            .await;
        }
    };
    progress(5).await;
    assert!(!a.arrivals().is_empty(), "route ci sends to A first");

    // GitHub's side of a rotation: the new token and App key are valid
    // beside the old ones for a while.
    {
        let mut world = hub.hub().world();
        world.pats.insert(
            NEW_PAT.into(),
            fakehub::world::Pat {
                name: "bot".into(),
                login: "bot".into(),
                repositories: Some(["other-org/secret".to_string()].into()),
            },
        );
        let b_key =
            jsonwebtoken::DecodingKey::from_rsa_pem(key("app-b.pub.pem").as_bytes()).unwrap();
        world.apps.get_mut(&101).unwrap().more_keys.push(b_key);
    }
    // Ours: new files, both webhook secrets, route ci to B, the clients
    // file with "late" added and "old" gone.
    std::fs::copy(testdata("app-b.pem"), dir.path().join("app.pem")).unwrap();
    std::fs::write(dir.path().join("bot.token"), format!("{NEW_PAT}\n")).unwrap();
    std::fs::write(
        dir.path().join("clients.toml"),
        format!("{load_entry}\n{late_entry}\n"),
    )
    .unwrap();
    write_config(dir.path(), &hub, &[OLD_SECRET, NEW_SECRET], &b.url, "");
    let (ok, out) = reload();
    assert!(ok.success(), "{out}");
    for said in [
        "route ci changed",
        "webhook secrets (2)",
        "app 101: new key",
        "token bot: new key",
        "clients file: added late; revoked old",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    // GitHub drops the old ones; tokens minted with the old key expire.
    {
        let mut world = hub.hub().world();
        world.pats.remove(OLD_PAT);
        let app = world.apps.get_mut(&101).unwrap();
        app.key = app.more_keys.remove(0);
        world.installation_tokens.clear();
    }
    *signing.lock().unwrap() = NEW_SECRET;
    progress(10).await;
    let arrived_at_b = b.arrivals().len();
    assert!(arrived_at_b > 0, "route ci sends to B after the reload");
    let client = reqwest::Client::new();
    let status = |token: String| {
        let (client, gw) = (client.clone(), gw.clone());
        async move {
            client
                .get(format!("{gw}/repos/octo-org/widgets"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(late_token.clone()).await,
        200,
        "an added client works"
    );
    assert_eq!(
        status(old_token.clone()).await,
        401,
        "a revoked client is refused"
    );

    // A config naming a secret file that is not there: the server refuses
    // it whole and keeps running the config it has.
    write_config(dir.path(), &hub, &[NEW_SECRET], &b.url, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("{NEW_SECRET}.secret"), "no-such.secret");
    std::fs::write(&config, text).unwrap();
    let (ok, out) = reload();
    assert_eq!(ok.code(), Some(1), "{out}");
    assert!(
        out.contains("refused the new config and runs the previous one"),
        "{out}"
    );
    assert!(out.contains("no-such.secret"), "{out}");
    let (_, status_out) = binary::run(&["status", "--config", config.to_str().unwrap()], None);
    assert!(status_out.contains("RELOAD REFUSED"), "{status_out}");
    assert!(status_out.contains("no-such.secret"), "{status_out}");
    // A file that does not even parse: `gatehouse reload` says where, and
    // SIGHUP (systemctl reload) leaves the server as it was.
    std::fs::write(&config, "[webhooks\nsecret_files = [").unwrap();
    let (ok, out) = reload();
    assert_eq!(ok.code(), Some(2), "{out}");
    assert!(out.contains("gatehouse.toml:1"), "{out}");
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    progress(5).await;
    assert!(
        b.arrivals().len() > arrived_at_b,
        "route ci still sends to B"
    );
    let metrics = common::scrape(&reqwest::Client::new(), &server.base).await;
    assert_eq!(
        common::metric(&metrics, "gatehouse_config_reload_ok"),
        Some(0.0)
    );

    // The rotation ends: only the new secret; the old one is refused.
    write_config(dir.path(), &hub, &[NEW_SECRET], &b.url, "");
    let (ok, out) = reload();
    assert!(ok.success(), "{out}");
    assert!(out.contains("webhook secrets (1)"), "{out}");
    progress(5).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "requests failed across the reloads: {failures:?}"
    );
    let body = compact(&fixtures().join("payloads/push/payload.json"));
    let r = Delivery::json("push", "with-the-old-secret", body)
        .signed_with(OLD_SECRET)
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(server.terminate().success());
}
