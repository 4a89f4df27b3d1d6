//! Sending webhooks as GitHub does, the delivery log, redelivery, storms.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use fakehub::HookRef;
use fakehub::config::{ContentType, HookConfig};
use fakehub::webhooks::storm::{self, Storm};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "hook-secret";

fn with_app_hook(url: &str) -> fakehub::Config {
    let mut c = world();
    c.apps[0].webhook_url = Some(url.to_string());
    c.apps[0].webhook_secret = Some(SECRET.into());
    c.apps[0].hook_id = Some(555);
    c.webhook_timeout_ms = 300;
    c
}

fn signature_ok(body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    header == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// "Webhook events and payloads", delivery headers; "Validating webhook
// deliveries": X-Hub-Signature-256 is HMAC-SHA256 of the body.
#[tokio::test]
async fn deliveries_carry_githubs_headers_and_a_valid_signature() {
    let rx = receiver(202, Duration::ZERO).await;
    let hub = start(with_app_hook(&rx.url)).await;
    let rec = hub
        .deliver(
            HookRef::App(APP),
            "pull_request",
            "opened.payload.json",
            "octo-org",
            "widgets",
        )
        .await
        .unwrap();
    assert!(rec.ok());
    assert_eq!(rec.status, "OK");
    let got = rx.got.lock().unwrap();
    let (h, body) = &got[0];
    assert_eq!(h["x-github-event"], "pull_request");
    assert_eq!(h["x-github-delivery"], rec.guid.as_str());
    assert_eq!(h["x-github-hook-id"], "555");
    assert_eq!(h["x-github-hook-installation-target-type"], "integration");
    assert_eq!(
        h["x-github-hook-installation-target-id"],
        APP.to_string().as_str()
    );
    assert!(
        h["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("GitHub-Hookshot/")
    );
    assert_eq!(h["content-type"], "application/json");
    assert!(signature_ok(
        body,
        h["x-hub-signature-256"].to_str().unwrap()
    ));
    assert!(!body.contains(&b'\n'), "compact JSON");
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["repository"]["full_name"], "octo-org/widgets");
    assert_eq!(v["installation"]["id"], ORG_INST);
    assert_eq!(rec.installation_id, Some(ORG_INST));
}

#[tokio::test]
async fn form_encoded_hooks_send_payload_field() {
    let rx = receiver(200, Duration::ZERO).await;
    let mut c = with_app_hook(&rx.url);
    c.apps[0].content_type = ContentType::Form;
    let hub = start(c).await;
    hub.deliver(
        HookRef::App(APP),
        "push",
        "payload.json",
        "octo-org",
        "widgets",
    )
    .await
    .unwrap();
    let got = rx.got.lock().unwrap();
    let (h, body) = &got[0];
    assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
    assert!(signature_ok(
        body,
        h["x-hub-signature-256"].to_str().unwrap()
    ));
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .unwrap()
        .1;
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["repository"]["full_name"], "octo-org/widgets");
}

// GitHub logs a delivery as failed when the target is down, too slow or
// answers non-2xx; it does not retry by itself.
#[tokio::test]
async fn failed_deliveries_are_logged_as_github_logs_them() {
    let err = receiver(503, Duration::ZERO).await;
    let slow = receiver(200, Duration::from_secs(2)).await;
    for (url, status, code) in [
        (err.url.clone(), "Invalid HTTP Response: 503", 503),
        (slow.url.clone(), "timed out", 0),
        (
            "http://127.0.0.1:9/hook".to_string(),
            "failed to connect to host",
            0,
        ),
    ] {
        let hub = start(with_app_hook(&url)).await;
        let rec = hub
            .deliver(
                HookRef::App(APP),
                "issues",
                "opened.payload.json",
                "octo-org",
                "widgets",
            )
            .await
            .unwrap();
        assert!(!rec.ok(), "{url}");
        assert_eq!(rec.status, status);
        assert_eq!(rec.status_code, code);
        assert_eq!(hub.deliveries().len(), 1, "logged once, not retried");
    }
}

// "List deliveries for an app webhook": cursor pagination, newest first;
// "Redeliver a delivery for an app webhook": same GUID, redelivery true.
#[tokio::test]
async fn delivery_log_pages_by_cursor_and_redelivery_keeps_the_guid() {
    let rx = receiver(500, Duration::ZERO).await;
    let hub = start(with_app_hook(&rx.url)).await;
    let mut guids = Vec::new();
    for _ in 0..25 {
        let r = hub
            .deliver(
                HookRef::App(APP),
                "issues",
                "opened.payload.json",
                "octo-org",
                "widgets",
            )
            .await
            .unwrap();
        guids.push(r.guid);
    }
    let a = format!("Bearer {}", jwt());
    let mut url = format!("{}/app/hook/deliveries?per_page=10", hub.url());
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = reqwest::Client::new()
            .get(&url)
            .header("authorization", &a)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let link = header(&r, "link");
        let page: Vec<Value> = r.json().await.unwrap();
        for d in &page {
            assert_eq!(d["status_code"], 500);
            assert_eq!(d["redelivery"], false);
            assert_eq!(d["event"], "issues");
            assert_eq!(d["action"], "opened");
            seen.push(d["guid"].as_str().unwrap().to_string());
        }
        match link
            .split(';')
            .next()
            .filter(|_| link.contains("rel=\"next\""))
        {
            Some(u) => url = u.trim_matches(|c| c == '<' || c == '>').to_string(),
            None => break,
        }
    }
    guids.reverse();
    assert_eq!(seen, guids, "every delivery once, newest first");

    let first = hub.deliveries()[0].clone();
    let detail: Value = get(
        &hub,
        &format!("/app/hook/deliveries/{}", first.id),
        Some(&a),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(detail["request"]["payload"]["action"], "opened");
    assert_eq!(
        detail["request"]["headers"]["X-GitHub-Delivery"],
        first.guid.as_str()
    );

    let r = reqwest::Client::new()
        .post(format!(
            "{}/app/hook/deliveries/{}/attempts",
            hub.url(),
            first.id
        ))
        .header("authorization", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the redelivery is logged", || hub.deliveries().len() == 26).await;
    let again = hub.deliveries().last().unwrap().clone();
    assert_eq!(again.guid, first.guid);
    assert!(again.redelivery);
    assert_ne!(again.id, first.id);
    let sent_twice = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|(h, _)| h["x-github-delivery"] == first.guid.as_str())
        .count();
    assert_eq!(sent_twice, 2);
    // Only with a JWT.
    assert_eq!(
        get(&hub, "/app/hook/deliveries", Some(&format!("token {PAT}")))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn repository_and_org_hooks_have_their_own_logs() {
    let rx = receiver(200, Duration::ZERO).await;
    let mut c = world();
    c.hooks.push(HookConfig {
        id: 7,
        owner: "octo-org".into(),
        repo: Some("widgets".into()),
        url: rx.url.clone(),
        secret: Some(SECRET.into()),
        content_type: ContentType::Json,
    });
    c.hooks.push(HookConfig {
        id: 8,
        owner: "octo-org".into(),
        repo: None,
        url: rx.url.clone(),
        secret: None,
        content_type: ContentType::Json,
    });
    let hub = start(c).await;
    hub.deliver(
        HookRef::Hook(7),
        "push",
        "payload.json",
        "octo-org",
        "widgets",
    )
    .await
    .unwrap();
    hub.deliver(
        HookRef::Hook(8),
        "membership",
        "added.payload.json",
        "octo-org",
        "widgets",
    )
    .await
    .unwrap();
    let t = format!("token {PAT}");
    let repo_log: Vec<Value> = get(&hub, "/repos/octo-org/widgets/hooks/7/deliveries", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repo_log.len(), 1);
    assert_eq!(repo_log[0]["event"], "push");
    let org_log: Vec<Value> = get(&hub, "/orgs/octo-org/hooks/8/deliveries", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org_log[0]["event"], "membership");
    assert_eq!(
        get(&hub, "/orgs/octo-org/hooks/7/deliveries", Some(&t))
            .await
            .status(),
        404
    );
    let got = rx.got.lock().unwrap();
    assert_eq!(
        got[0].0["x-github-hook-installation-target-type"],
        "repository"
    );
    assert_eq!(
        got[1].0["x-github-hook-installation-target-type"],
        "organization"
    );
    assert!(
        got[1].0.get("x-hub-signature-256").is_none(),
        "no secret, no signature"
    );
}

#[tokio::test]
async fn storm_sends_the_corpus_with_duplicates_and_disorder() {
    let rx = receiver(202, Duration::ZERO).await;
    let templates =
        fakehub::templates::Templates::load(&fakehub::templates::default_fixtures_dir()).unwrap();
    let mut s = Storm::new(&rx.url, Some(SECRET), 400);
    s.orgs = 4;
    s.concurrency = 8;
    s.duplicate_share = 0.1;
    s.out_of_order_share = 0.2;
    let report = storm::run(&templates, s).await;
    assert_eq!(report.acked_guids, 400);
    assert!(report.duplicates_sent > 10, "{}", report.duplicates_sent);
    assert_eq!(report.sent, 400 + report.duplicates_sent);
    assert!(report.out_of_order > 10);
    let got = rx.got.lock().unwrap();
    assert_eq!(got.len(), report.sent);
    let mut per_guid: HashMap<String, usize> = HashMap::new();
    let mut orgs = std::collections::BTreeSet::new();
    for (h, body) in got.iter() {
        assert!(signature_ok(
            body,
            h["x-hub-signature-256"].to_str().unwrap()
        ));
        *per_guid
            .entry(h["x-github-delivery"].to_str().unwrap().to_string())
            .or_default() += 1;
        let v: Value = serde_json::from_slice(body).unwrap();
        if let Some(o) = v.pointer("/repository/owner/login").and_then(Value::as_str) {
            orgs.insert(o.to_string());
        }
    }
    assert_eq!(per_guid.len(), 400);
    assert_eq!(
        per_guid.values().filter(|&&n| n == 2).count(),
        report.duplicates_sent
    );
    let want: std::collections::BTreeSet<String> = (0..4).map(|i| format!("org-{i}")).collect();
    assert_eq!(
        orgs, want,
        "every payload belongs to one of the storm's orgs"
    );
}

#[tokio::test]
async fn control_endpoint_triggers_a_delivery() {
    let rx = receiver(200, Duration::ZERO).await;
    let hub = start(with_app_hook(&rx.url)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/_fakehub/deliver", hub.url()))
        .json(&serde_json::json!({"app": APP, "event": "workflow_job", "file": "queued.payload.json", "owner": "octo-org", "repo": "gadgets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status_code"], 200);
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}
