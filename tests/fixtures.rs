//! Every real GitHub payload and every signature vector from
//! ../shared/fixtures/github, through the real HTTP endpoint into the real
//! SQLite journal.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Delivery, TestApp, compact, payload_files};
use gatehouse::config::{PartitionBy, Secret};
use gatehouse::journal::ParseStatus;
use serde_json::Value;

/// What the journal must record for a payload, read here from the JSON by
/// following GitHub's documented shapes (fixtures README, "Notes for
/// routing by organization or owner").
struct Expected {
    action: Option<String>,
    repository: Option<String>,
    owner: Option<String>,
    installation_id: Option<i64>,
}

fn expected(v: &Value) -> Expected {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
    Expected {
        action: s("/action"),
        repository: s("/repository/full_name"),
        owner: s("/repository/owner/login")
            .or_else(|| s("/organization/login"))
            .or_else(|| s("/installation/account/login"))
            .or_else(|| s("/marketplace_purchase/account/login"))
            .or_else(|| s("/sponsorship/sponsorable/login")),
        installation_id: v.pointer("/installation/id").and_then(Value::as_i64),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_payload_is_journaled_with_its_envelope() {
    let t = TestApp::spawn().await;
    let files = payload_files();
    assert!(
        files.len() >= 250,
        "expected the full fixture set, found {}",
        files.len()
    );
    for (i, (event, path)) in files.iter().enumerate() {
        let body = compact(path);
        let guid = format!("fixture-{i}");
        let r = t.send(&Delivery::json(event, &guid, body.clone())).await;
        assert_eq!(r.status(), 202, "{}", path.display());

        let v: Value = serde_json::from_slice(&body).unwrap();
        let want = expected(&v);
        let row = t
            .app
            .journal()
            .delivery("100", &guid)
            .await
            .unwrap()
            .unwrap();
        let name = path.display();
        assert_eq!(row.meta.event, *event, "{name}");
        assert_eq!(row.meta.action, want.action, "{name}");
        assert_eq!(row.meta.repository, want.repository, "{name}");
        assert_eq!(row.meta.owner, want.owner, "{name}");
        assert_eq!(row.meta.installation_id, want.installation_id, "{name}");
        assert_eq!(
            row.meta.partition_key,
            want.owner.clone().unwrap_or("-".into()),
            "{name}"
        );
        assert_eq!(row.meta.parse_status, ParseStatus::Ok, "{name}");
        let payload = t.app.journal().payload(row.id).await.unwrap().unwrap();
        assert_eq!(payload.body, body, "{name}: raw bytes kept exactly");
    }
    assert_eq!(t.census().await.deliveries(), files.len());
}

/// Spot checks with literal values, so the rule above is not only checked
/// against itself.
#[tokio::test(flavor = "multi_thread")]
async fn owner_falls_back_as_github_documents() {
    let t = TestApp::spawn().await;
    let fx = common::fixtures().join("payloads");
    let cases = [
        ("push", "push/payload.json", "Codertocat"),
        (
            "installation",
            "installation/created.payload.json",
            "Codertocat",
        ),
        ("membership", "membership/added.payload.json", "Octocoders"),
        (
            "security_advisory",
            "security_advisory/published.payload.json",
            "-",
        ),
    ];
    for (event, file, partition) in cases {
        let r = t
            .send(&Delivery::json(event, file, compact(&fx.join(file))))
            .await;
        assert_eq!(r.status(), 202);
        let row = t
            .app
            .journal()
            .delivery("100", file)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.meta.partition_key, partition, "{file}");
    }
    for (event, dir) in [
        ("sponsorship", "sponsorship"),
        ("marketplace_purchase", "marketplace_purchase"),
    ] {
        for entry in std::fs::read_dir(fx.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let guid = path.display().to_string();
            t.send(&Delivery::json(event, &guid, compact(&path))).await;
            let row = t
                .app
                .journal()
                .delivery("100", &guid)
                .await
                .unwrap()
                .unwrap();
            assert_ne!(row.meta.partition_key, "-", "{guid} names its account");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_by_repository_uses_full_name_and_falls_back_to_owner() {
    let t = TestApp::spawn_with(|c| c.webhooks.partition_by = PartitionBy::Repository).await;
    let fx = common::fixtures().join("payloads");
    t.send(&Delivery::json(
        "push",
        "a",
        compact(&fx.join("push/payload.json")),
    ))
    .await;
    t.send(&Delivery::json(
        "membership",
        "b",
        compact(&fx.join("membership/added.payload.json")),
    ))
    .await;
    let r = t.app.journal();
    assert_eq!(
        r.delivery("100", "a")
            .await
            .unwrap()
            .unwrap()
            .meta
            .partition_key,
        "Codertocat/Hello-World"
    );
    assert_eq!(
        r.delivery("100", "b")
            .await
            .unwrap()
            .unwrap()
            .meta
            .partition_key,
        "Octocoders"
    );
}

struct Vector {
    id: String,
    secrets: Vec<String>,
    body: Vec<u8>,
    header: String,
    valid: bool,
}

fn vectors() -> Vec<Vector> {
    let text = std::fs::read(common::fixtures().join("signature-vectors.json")).unwrap();
    let doc: Value = serde_json::from_slice(&text).unwrap();
    let mut out = Vec::new();
    for key in ["vectors", "fallback_secret_vectors"] {
        for v in doc[key].as_array().unwrap() {
            let mut secrets = vec![v["secret"].as_str().unwrap().to_string()];
            for extra in v["additional_secrets"].as_array().into_iter().flatten() {
                secrets.push(extra.as_str().unwrap().to_string());
            }
            out.push(Vector {
                id: v["id"].as_str().unwrap().to_string(),
                secrets,
                body: BASE64
                    .decode(v["payload_base64"].as_str().unwrap())
                    .unwrap(),
                header: v["signature_header"].as_str().unwrap().to_string(),
                valid: v["valid"].as_bool().unwrap(),
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_signature_vector_gives_its_verdict_over_http() {
    let all = vectors();
    assert!(all.len() >= 10, "found {} vectors", all.len());
    for Vector {
        id,
        secrets,
        body,
        header,
        valid,
    } in all
    {
        let t = TestApp::spawn_with(|c| {
            c.webhooks.secrets = secrets.iter().map(Secret::new).collect();
        })
        .await;
        let mut d = Delivery::json("ping", &id, body);
        d.signature = Some(header);
        let r = t.send(&d).await;
        let journaled = t.census().await.deliveries();
        if valid {
            assert_eq!(r.status(), 202, "{id}");
            assert_eq!(journaled, 1, "{id}");
        } else {
            assert_eq!(r.status(), 401, "{id}");
            assert_eq!(journaled, 0, "{id}");
        }
        t.stop().await;
    }
}

#[test]
fn every_signature_vector_gives_its_verdict_in_the_verifier() {
    for Vector {
        id,
        secrets,
        body,
        header,
        valid,
    } in vectors()
    {
        let secrets: Vec<Secret> = secrets.iter().map(Secret::new).collect();
        assert_eq!(
            gatehouse::webhook::signature::verify(&secrets, &body, Some(header.as_bytes())),
            valid,
            "{id}"
        );
    }
}
