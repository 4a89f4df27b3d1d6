//! Primary and secondary rate limits and conditional requests.

mod common;

use std::time::Duration;

use common::*;
use fakehub::config::FaultConfig;
use serde_json::Value;

// "Rate limits for the REST API": every response carries x-ratelimit-*;
// an exhausted budget answers 403 with remaining 0.
#[tokio::test]
async fn exhausting_the_primary_limit_answers_403_until_reset() {
    let mut c = world();
    c.rate_limit.core = 3;
    c.rate_limit.window_secs = 2;
    let hub = start(c).await;
    let t = token_for(&hub, ORG_INST).await;
    for want in ["2", "1", "0"] {
        let r = get(&hub, "/repos/octo-org/widgets", Some(&t)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-remaining"), want);
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(header(&r, "x-ratelimit-resource"), "core");
    }
    let r = get(&hub, "/repos/octo-org/widgets", Some(&t)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let reset: i64 = header(&r, "x-ratelimit-reset").parse().unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        format!("API rate limit exceeded for installation ID {ORG_INST}.")
    );
    // GET /rate_limit is free and says the same.
    let r = get(&hub, "/rate_limit", Some(&t)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resources"]["core"]["remaining"], 0);
    assert_eq!(v["resources"]["core"]["reset"], reset);
    // After the reset time the budget is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&hub, "/repos/octo-org/widgets", Some(&t)).await;
        if r.status() == 200 {
            assert!(now() >= reset);
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_installations_tokens_share_its_budget() {
    let mut c = world();
    c.rate_limit.core = 10;
    let hub = start(c).await;
    let a = token_for(&hub, ORG_INST).await;
    let b = token_for(&hub, ORG_INST).await;
    assert_ne!(a, b);
    get(&hub, "/repos/octo-org/widgets", Some(&a)).await;
    let r = get(&hub, "/repos/octo-org/widgets", Some(&b)).await;
    assert_eq!(header(&r, "x-ratelimit-used"), "2");
    let other = token_for(&hub, USER_INST).await;
    let r = get(&hub, "/repos/octo-user/dotfiles", Some(&other)).await;
    assert_eq!(header(&r, "x-ratelimit-used"), "1");
}

// "Best practices for using the REST API": conditional requests answered
// 304 do not count against the primary rate limit.
#[tokio::test]
async fn a_304_costs_nothing_and_has_no_body() {
    let hub = start(world()).await;
    let t = format!("token {PAT}");
    let r = get(&hub, "/repos/octo-org/widgets/pulls/1", Some(&t)).await;
    let etag = header(&r, "etag");
    let remaining = header(&r, "x-ratelimit-remaining");
    assert!(!etag.is_empty());
    let r = reqwest::Client::new()
        .get(format!("{}/repos/octo-org/widgets/pulls/1", hub.url()))
        .header("authorization", &t)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "x-ratelimit-remaining"), remaining);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let s = hub.stats();
    assert_eq!(s.tokens["pat:ci"].not_modified, 1);
    assert_eq!(s.tokens["pat:ci"].units_spent, 1);
    assert_eq!(s.tokens["pat:ci"].requests, 2);
}

#[tokio::test]
async fn etags_depend_on_the_token_that_read() {
    let hub = start(world()).await;
    let pat = format!("token {PAT}");
    let inst = token_for(&hub, ORG_INST).await;
    let a = get(&hub, "/repos/octo-org/widgets/issues/4", Some(&pat)).await;
    let b = get(&hub, "/repos/octo-org/widgets/issues/4", Some(&inst)).await;
    let (ea, eb) = (header(&a, "etag"), header(&b, "etag"));
    assert_eq!(
        a.text().await.unwrap(),
        b.text().await.unwrap(),
        "same body"
    );
    assert_ne!(ea, eb, "different token, different ETag");
    // A validator stored under one token gets a full 200 under another.
    let r = reqwest::Client::new()
        .get(format!("{}/repos/octo-org/widgets/issues/4", hub.url()))
        .header("authorization", &inst)
        .header("if-none-match", &ea)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn if_modified_since_is_honoured_and_mutations_change_etags() {
    let hub = start(world()).await;
    let t = format!("token {PAT}");
    let r = get(&hub, "/repos/octo-org/widgets/issues/4", Some(&t)).await;
    let lm = header(&r, "last-modified");
    let etag = header(&r, "etag");
    assert!(!lm.is_empty());
    let client = reqwest::Client::new();
    let url = format!("{}/repos/octo-org/widgets/issues/4", hub.url());
    let r = client
        .get(&url)
        .header("authorization", &t)
        .header("if-modified-since", &lm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A new comment changes the issue: its ETag no longer matches.
    let r = client
        .post(format!("{url}/comments"))
        .header("authorization", &t)
        .json(&serde_json::json!({"body": "a new comment"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(&url)
        .header("authorization", &t)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(header(&r, "etag"), etag);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["comments"], 3, "two seeded comments and the new one");
}

// "Rate limits for the REST API", secondary rate limits: too many
// concurrent requests answer 403 with retry-after.
#[tokio::test]
async fn two_concurrent_requests_trip_a_limit_of_one() {
    let mut c = world();
    c.secondary.max_concurrent = 1;
    c.secondary.retry_after_secs = 7;
    let mut slow = FaultConfig::new("GET /repos/*/*");
    slow.latency_ms = 300;
    c.faults.push(slow);
    let hub = start(c).await;
    let t = token_for(&hub, ORG_INST).await;
    let (a, b) = tokio::join!(
        get(&hub, "/repos/octo-org/widgets", Some(&t)),
        get(&hub, "/repos/octo-org/gadgets", Some(&t))
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 403]);
    let refused = if a.status() == 403 { a } else { b };
    assert_eq!(header(&refused, "retry-after"), "7");
    let v: Value = refused.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    let s = hub.stats();
    assert_eq!(s.installations[&ORG_INST].max_concurrency, 2);
    assert_eq!(s.installations[&ORG_INST].secondary_limited, 1);
}

#[tokio::test]
async fn serial_requests_show_a_max_concurrency_of_one() {
    let mut c = world();
    let mut slow = FaultConfig::new("* /**");
    slow.latency_ms = 20;
    c.faults.push(slow);
    let hub = start(c).await;
    let t = token_for(&hub, ORG_INST).await;
    for _ in 0..5 {
        assert_eq!(
            get(&hub, "/repos/octo-org/widgets", Some(&t))
                .await
                .status(),
            200
        );
    }
    let s = hub.stats();
    let token = t.trim_start_matches("token ");
    assert_eq!(s.tokens[token].max_concurrency, 1);
    assert_eq!(s.tokens[token].requests, 5);
    assert_eq!(s.installations[&ORG_INST].max_concurrency, 1);
    // The same numbers over HTTP, for tools outside the process.
    let v: Value = get(&hub, "/_fakehub/stats", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["installations"][ORG_INST.to_string()]["max_concurrency"],
        1
    );
    assert_eq!(v["tokens"][token]["units_spent"], 5);
}
