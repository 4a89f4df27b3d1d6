//! REST resources: realistic bodies, pagination, mutations, faults.

mod common;

use std::collections::BTreeSet;

use common::*;
use fakehub::config::FaultConfig;
use serde_json::{Value, json};

/// The URL with rel="next" in a Link header, if any.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        (rel.trim() == "rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

// "Using pagination in the REST API": follow rel="next" in the Link header.
#[tokio::test]
async fn pagination_walks_every_page_with_absolute_links() {
    let mut c = world();
    c.seed.issues = 45;
    let hub = start(c).await;
    let client = reqwest::Client::new();
    let mut url = format!(
        "{}/repos/octo-org/widgets/issues?per_page=10&state=all",
        hub.url()
    );
    let (mut seen, mut pages) = (BTreeSet::new(), 0);
    loop {
        let r = client
            .get(&url)
            .header("authorization", format!("token {PAT}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        pages += 1;
        let link = header(&r, "link");
        let items: Vec<Value> = r.json().await.unwrap();
        assert!(items.len() <= 10);
        for i in items {
            assert!(seen.insert(i["number"].as_u64().unwrap()), "no item twice");
        }
        match next_link(&link) {
            Some(next) => {
                assert!(next.starts_with(hub.url()), "absolute: {next}");
                assert!(
                    next.contains("state=all"),
                    "keeps the other parameters: {next}"
                );
                url = next;
            }
            None => {
                assert!(
                    link.contains("rel=\"first\"") && link.contains("rel=\"prev\""),
                    "{link}"
                );
                break;
            }
        }
        assert!(pages < 20);
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 45);
    // The GHES prefix stays in the links.
    let r = get(
        &hub,
        "/api/v3/repos/octo-org/widgets/issues?per_page=10",
        Some(&format!("token {PAT}")),
    )
    .await;
    assert!(header(&r, "link").contains(&format!(
        "{}/api/v3/repos/octo-org/widgets/issues?",
        hub.url()
    )));
}

#[tokio::test]
async fn bodies_are_githubs_own_shapes_rewritten_for_the_repository() {
    let hub = start(world()).await;
    let t = format!("token {PAT}");
    let repo: Value = get(&hub, "/repos/octo-org/widgets", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repo["full_name"], "octo-org/widgets");
    assert_eq!(repo["owner"]["login"], "octo-org");
    assert_eq!(repo["owner"]["type"], "Organization");
    assert_eq!(repo["url"], format!("{}/repos/octo-org/widgets", hub.url()));
    assert!(
        repo.to_string().contains("pulls_url"),
        "fields from the real fixture"
    );
    let pr: Value = get(&hub, "/repos/octo-org/widgets/pulls/2", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pr["number"], 2);
    assert_eq!(
        pr["url"],
        format!("{}/repos/octo-org/widgets/pulls/2", hub.url())
    );
    let head = pr["head"]["sha"].as_str().unwrap();
    let commit = get(
        &hub,
        &format!("/repos/octo-org/widgets/commits/{head}"),
        Some(&t),
    )
    .await;
    assert_eq!(commit.status(), 200, "the PR's head commit exists");
    let files: Vec<Value> = get(&hub, "/repos/octo-org/widgets/pulls/2/files", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(files.len() as u64, pr["changed_files"].as_u64().unwrap());
    let commits: Vec<Value> = get(&hub, "/repos/octo-org/widgets/pulls/2/commits", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(commits[0]["sha"], head);
    let branches: Vec<Value> = get(&hub, "/repos/octo-org/widgets/branches", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    let main = branches[0]["name"].as_str().unwrap();
    let b: Value = get(
        &hub,
        &format!("/repos/octo-org/widgets/branches/{main}"),
        Some(&t),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(b["commit"]["sha"], branches[0]["commit"]["sha"]);
    let open: Vec<Value> = get(&hub, "/repos/octo-org/widgets/pulls", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert!(open.iter().all(|p| p["state"] == "open"));
    let all: Vec<Value> = get(&hub, "/repos/octo-org/widgets/pulls?state=all", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets/pulls/99", Some(&t))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn statuses_and_check_runs_change_state() {
    let hub = start(world()).await;
    let client = reqwest::Client::new();
    let inst = token_for(&hub, ORG_INST).await;
    let branches: Vec<Value> = get(&hub, "/repos/octo-org/widgets/branches", Some(&inst))
        .await
        .json()
        .await
        .unwrap();
    let sha = branches[0]["commit"]["sha"].as_str().unwrap().to_string();
    let status_url = format!("{}/repos/octo-org/widgets/statuses/{sha}", hub.url());
    let r = client
        .post(&status_url)
        .header("authorization", &inst)
        .json(&json!({"state": "failure", "context": "ci/lint", "description": "lint failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let combined: Value = get(
        &hub,
        &format!("/repos/octo-org/widgets/commits/{sha}/status"),
        Some(&inst),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(combined["state"], "failure");
    assert!(
        combined["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["context"] == "ci/lint")
    );
    let r = client
        .post(&status_url)
        .header("authorization", &inst)
        .json(&json!({"state": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let runs_url = format!("{}/repos/octo-org/widgets/check-runs", hub.url());
    let r = client
        .post(&runs_url)
        .header("authorization", &inst)
        .json(&json!({"name": "gatehouse-test", "head_sha": sha, "status": "completed", "conclusion": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let runs: Value = get(
        &hub,
        &format!("/repos/octo-org/widgets/commits/{sha}/check-runs"),
        Some(&inst),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(runs["check_runs"][0]["name"], "gatehouse-test");
    assert_eq!(runs["total_count"], 2);
    // Only Apps create check runs.
    let r = client
        .post(&runs_url)
        .header("authorization", format!("token {PAT}"))
        .json(&json!({"name": "x", "head_sha": sha}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn injected_faults_answer_errors_drop_connections_and_delay() {
    let mut c = world();
    let mut err = FaultConfig::new("GET /repos/*/*/pulls");
    err.error_rate = 1.0;
    err.error_status = 503;
    let mut reset = FaultConfig::new("GET /repos/*/*/issues");
    reset.reset_rate = 1.0;
    let mut slow = FaultConfig::new("GET /repos/*/*/branches");
    slow.latency_ms = 200;
    c.faults = vec![err, reset, slow];
    let hub = start(c).await;
    let t = format!("token {PAT}");
    let r = get(&hub, "/repos/octo-org/widgets/pulls", Some(&t)).await;
    assert_eq!(r.status(), 503);
    let e = reqwest::Client::new()
        .get(format!("{}/repos/octo-org/widgets/issues", hub.url()))
        .header("authorization", &t)
        .send()
        .await;
    assert!(e.is_err(), "the connection is dropped unanswered");
    let started = std::time::Instant::now();
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets/branches", Some(&t))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    // Unmatched routes are untouched.
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets", Some(&t))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn pats_can_be_limited_to_some_repositories() {
    let mut c = world();
    c.tokens[0].repositories = Some(vec!["octo-org/gadgets".into()]);
    let hub = start(c).await;
    let t = format!("token {PAT}");
    assert_eq!(
        get(&hub, "/repos/octo-org/gadgets", Some(&t))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets", Some(&t))
            .await
            .status(),
        404
    );
    let user: Value = get(&hub, "/user", Some(&t)).await.json().await.unwrap();
    assert_eq!(user["login"], "fakehub-bot");
}
