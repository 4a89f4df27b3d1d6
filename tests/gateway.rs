//! The API gateway against fakehub: client tokens, scopes and owners, the
//! shared cache (free revalidations, coalescing, isolation per owner,
//! freshness after changes, token rotation, a size bound) and GitHub's
//! headers passed through with links back to the gateway.

mod common;

use gatehouse::clock::Clock;

use std::time::Duration;

use common::hub::{github_config, key};
use common::{TestApp, metric};
use fakehub::config::FaultConfig;
use fakehub::{Config as HubConfig, FakeHub};
use gatehouse::config::{Config, FreshRule, GatewayConfig};
use serde_json::Value;

const INSTALLATION: i64 = 11;

/// App 101 installed on octo-org (11) and other-org (12).
fn hub_config() -> HubConfig {
    let mut c = HubConfig::default()
        .org("octo-org", &["widgets", "gadgets"])
        .org("other-org", &["secrets"])
        .app(
            101,
            &key("app-a.pub.pem"),
            &[(INSTALLATION, "octo-org"), (12, "other-org")],
        );
    c.fixtures = Some(common::fixtures());
    c
}

struct Gw {
    hub: FakeHub,
    app: TestApp,
    base: String,
    http: reqwest::Client,
}

impl Gw {
    async fn start(hub: HubConfig, edit: impl FnOnce(&mut GatewayConfig)) -> Gw {
        Gw::start_on(hub, edit, gatehouse::clock::system()).await
    }

    async fn start_on(
        hub: HubConfig,
        edit: impl FnOnce(&mut GatewayConfig),
        clock: std::sync::Arc<dyn gatehouse::clock::Clock>,
    ) -> Gw {
        Gw::start_reserving(hub, 0, edit, clock).await
    }

    /// Each credential keeps `reserve` units for others.
    async fn start_reserving(
        hub: HubConfig,
        reserve: u64,
        edit: impl FnOnce(&mut GatewayConfig),
        clock: std::sync::Arc<dyn gatehouse::clock::Clock>,
    ) -> Gw {
        let hub = FakeHub::start(hub).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = common::test_config(dir.path());
        c.github = github_config(&hub, &[(101, "app-a.pem")], &[]);
        c.github.reserve = reserve;
        let mut gw = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayConfig::default()
        };
        edit(&mut gw);
        c.gateway = Some(gw);
        let app = TestApp::start_on(dir, c, clock).await;
        let base = format!("http://{}", app.app.gateway_addr().unwrap());
        Gw {
            hub,
            app,
            base,
            http: reqwest::Client::new(),
        }
    }

    fn client(&self, name: &str, scopes: &[&str], owners: &[&str]) -> String {
        common::add_client(&self.app.db_path, name, scopes, owners)
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("token {token}"))
            .header("accept", "application/vnd.github+json")
            .send()
            .await
            .unwrap()
    }

    /// A GraphQL-over-HTTP POST to `/graphql` with `body`.
    async fn graphql(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/graphql", self.base))
            .header("authorization", format!("token {token}"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    fn installation_usage(&self, id: i64) -> fakehub::limits::Usage {
        self.hub
            .stats()
            .installations
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

fn cache_of(r: &reqwest::Response) -> String {
    r.headers()["x-gatehouse-cache"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_missing_and_revoked_tokens_are_refused_as_github_does() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let r = gw.get("gth_not-a-client", "/repos/octo-org/widgets").await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Bad credentials");
    let r = gw
        .http
        .get(format!("{}/repos/octo-org/widgets", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let token = gw.client("ci", &[], &[]);
    assert!(token.starts_with("gth_"));
    // Bearer works as well as `token`.
    let r = gw
        .http
        .get(format!("{}/repos/octo-org/widgets", gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    common::beside(&gw.app.db_path, async |store| {
        gatehouse::gateway::clients::revoke(
            store,
            "ci",
            &common::test_actor(),
            gatehouse::clock::now_ms(),
        )
        .await
        .unwrap()
    });
    let r = gw.get(&token, "/repos/octo-org/widgets").await;
    assert_eq!(r.status(), 401, "a revoked token is refused at once");
    let m = gw.app.metrics().await;
    assert!(
        metric(
            &m,
            "gatehouse_gateway_requests_total{client=\"(unauthenticated)\",status=\"401\"}"
        )
        .unwrap()
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_and_owners_are_enforced_and_the_refusal_names_the_rule() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let ro = gw.client("reader", &["GET /repos/octo-org/.*"], &["octo-org"]);
    assert_eq!(
        gw.get(&ro, "/repos/octo-org/widgets/pulls").await.status(),
        200
    );
    assert_eq!(
        gw.get(&ro, "/api/v3/repos/octo-org/widgets").await.status(),
        200,
        "scopes match the path without /api/v3"
    );
    let r = gw
        .http
        .post(format!(
            "{}/repos/octo-org/widgets/issues/4/comments",
            gw.base
        ))
        .header("authorization", format!("token {ro}"))
        .json(&serde_json::json!({"body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("may not POST") && msg.contains("GET /repos/octo-org/.*"),
        "{msg}"
    );

    let octo = gw.client("octo", &[], &["octo-org"]);
    let r = gw.get(&octo, "/repos/other-org/secrets").await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("only for octo-org") && msg.contains("other-org"),
        "{msg}"
    );
    assert_eq!(
        gw.installation_usage(12).requests,
        0,
        "nothing was sent for the refused owner"
    );

    // A request that names no owner, from a client without one, with no
    // default owner and no token for any owner: refused, saying what to do.
    let anyone = gw.client("anyone", &[], &[]);
    let r = gw.get(&anyone, "/user").await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("default_owner"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_client_revalidates_for_free_and_gets_githubs_headers() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let a = gw.client("a", &[], &[]);
    let b = gw.client("b", &[], &[]);
    let path = "/repos/octo-org/widgets/pulls/1";

    let first = gw.get(&a, path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_of(&first), "miss");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with("W/\"gh-"),
        "clients get the gateway's validator: {etag}"
    );
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-github-request-id",
        "last-modified",
    ] {
        assert!(first.headers().contains_key(h), "{h} passes through");
    }
    let first_id = first.headers()["x-github-request-id"].clone();
    let first_body = first.bytes().await.unwrap();
    let spent_after_first = gw.installation_usage(INSTALLATION).units_spent;
    assert_eq!(spent_after_first, 1);

    let second = gw.get(&b, path).await;
    assert_eq!(
        second.status(),
        200,
        "a 304 upstream is a full 200 for the client"
    );
    assert_eq!(cache_of(&second), "revalidated");
    assert_ne!(
        second.headers()["x-github-request-id"],
        first_id,
        "live headers come from GitHub's latest answer"
    );
    assert_eq!(second.bytes().await.unwrap(), first_body);
    let u = gw.installation_usage(INSTALLATION);
    assert_eq!(u.units_spent, 1, "the revalidation spent nothing");
    assert_eq!(u.not_modified, 1);
    assert_eq!(u.max_concurrency, 1);

    // HEAD is answered from the same entry, without a body.
    let r = gw
        .http
        .head(format!("{}{path}", gw.base))
        .header("authorization", format!("token {b}"))
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), cache_of(&r)),
        (200, "revalidated".into())
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // The client's own conditional request, with the gateway's validator.
    let r = gw
        .http
        .get(format!("{}{path}", gw.base))
        .header("authorization", format!("token {b}"))
        .header("accept", "application/vnd.github+json")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    let m = gw.app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "gatehouse_gateway_rate_limit_units_spent_total{client=\"a\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_gateway_rate_limit_units_saved_total{client=\"b\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &m,
            "gatehouse_gateway_cache_total{client=\"b\",outcome=\"revalidated\"}"
        ),
        Some(3.0)
    );
    let ratio = metric(&m, "gatehouse_gateway_cache_hit_ratio").unwrap();
    assert!((ratio - 3.0 / 4.0).abs() < 1e-9, "{ratio}");
}

async fn comments(gw: &Gw, token: &str) -> (String, usize) {
    let r = gw
        .get(
            token,
            "/repos/octo-org/widgets/issues/4/comments?per_page=100",
        )
        .await;
    assert_eq!(r.status(), 200);
    let outcome = cache_of(&r);
    let v: Value = r.json().await.unwrap();
    (outcome, v.as_array().unwrap().len())
}

async fn comment(gw: &Gw, token: &str) {
    let r = gw
        .http
        .post(format!(
            "{}/repos/octo-org/widgets/issues/4/comments",
            gw.base
        ))
        .header("authorization", format!("token {token}"))
        .json(&serde_json::json!({"body": "from the gateway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(cache_of(&r), "bypass");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["url"].as_str().unwrap().starts_with(&gw.base),
        "API URLs in bodies point at the gateway: {}",
        v["url"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_shows_in_the_next_read_never_a_stale_copy() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    let (o1, n) = comments(&gw, &t).await;
    assert_eq!(o1, "miss");
    assert_eq!(comments(&gw, &t).await, ("revalidated".into(), n));
    comment(&gw, &t).await;
    let (o3, after) = comments(&gw, &t).await;
    assert_eq!(after, n + 1, "the new comment is there");
    assert_eq!(o3, "miss", "GitHub's ETag changed, so the answer is fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_window_serves_hits_until_a_change_made_through_the_gateway() {
    let gw = Gw::start(hub_config(), |g| {
        g.fresh = vec![FreshRule {
            path: "^/repos/[^/]+/[^/]+/issues/".into(),
            secs: 300,
        }]
    })
    .await;
    let t = gw.client("ci", &[], &[]);
    let (o1, n) = comments(&gw, &t).await;
    assert_eq!(o1, "miss");
    let before = gw.installation_usage(INSTALLATION).requests;
    assert_eq!(comments(&gw, &t).await, ("hit".into(), n));
    assert_eq!(
        gw.installation_usage(INSTALLATION).requests,
        before,
        "a hit asks GitHub nothing"
    );
    comment(&gw, &t).await;
    let (o3, after) = comments(&gw, &t).await;
    assert_eq!(after, n + 1, "never stale after our own change");
    assert_ne!(o3, "hit");
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_concurrent_reads_share_one_upstream_request() {
    let mut slow = FaultConfig::new("GET /repos/*/*/pulls");
    slow.latency_ms = 400;
    let gw = Gw::start(hub_config().fault(slow), |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    // Mint the installation token first, so only the reads remain.
    assert_eq!(gw.get(&t, "/repos/octo-org/widgets").await.status(), 200);
    let before = gw.installation_usage(INSTALLATION).requests;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        // Each read on its own task and connection, truly concurrent.
        let (http, url) = (
            gw.http.clone(),
            format!("{}/repos/octo-org/widgets/pulls", gw.base),
        );
        let auth = format!("token {t}");
        set.spawn(async move {
            http.get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
        });
    }
    let answers = set.join_all().await;
    let mut outcomes: Vec<String> = answers.iter().map(cache_of).collect();
    outcomes.sort();
    assert!(answers.iter().all(|r| r.status() == 200));
    assert_eq!(
        outcomes.iter().filter(|o| *o == "miss").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "hit").count(),
        15,
        "{outcomes:?}"
    );
    assert_eq!(gw.installation_usage(INSTALLATION).requests - before, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn installations_on_different_orgs_never_share_an_entry() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let octo = gw.client("octo", &[], &["octo-org"]);
    let other = gw.client("other", &[], &["other-org"]);
    // The same path, owner-less: each client's owner decides whose
    // installation answers, and so which cache entry is used.
    let names = |v: Value| -> Vec<String> {
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["full_name"].as_str().unwrap().to_string())
            .collect()
    };
    let r1 = gw.get(&octo, "/installation/repositories").await;
    assert_eq!(cache_of(&r1), "miss");
    let a = names(r1.json().await.unwrap());
    let r2 = gw.get(&other, "/installation/repositories").await;
    assert_eq!(cache_of(&r2), "miss", "not served from octo-org's entry");
    let b = names(r2.json().await.unwrap());
    assert!(
        a.iter().all(|n| n.starts_with("octo-org/")) && !a.is_empty(),
        "{a:?}"
    );
    assert_eq!(b, vec!["other-org/secrets".to_string()]);
    assert_eq!(gw.installation_usage(12).requests, 1);
    let cache_db = gatehouse::config::Config {
        storage: gatehouse::config::StorageConfig {
            path: gw.app.db_path.clone(),
            ..Default::default()
        },
        gateway: Some(GatewayConfig::default()),
        ..Default::default()
    }
    .gateway_cache_path()
    .unwrap();
    // Read beside the gateway, through the cache's own store.
    use gatehouse::store::cache::CacheStore;
    let cache = gatehouse::store::cache::CacheFile::open(&cache_db).unwrap();
    let mut scopes: Vec<String> = Vec::new();
    for (key, ..) in cache.index().await.unwrap() {
        let entry = cache.get(key).await.unwrap().unwrap();
        if entry.path == "/installation/repositories" {
            scopes.push(entry.scope);
        }
    }
    scopes.sort();
    // Each client is limited to its owner, so each answer is stored under
    // that owner and the set of owners its credential is confined to.
    assert_eq!(
        scopes,
        vec!["octo-org|within:octo-org", "other-org|within:other-org"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_links_stay_on_the_gateway() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    for prefix in ["", "/api/v3"] {
        let r = gw
            .get(
                &t,
                &format!("{prefix}/repos/octo-org/widgets/pulls?per_page=1"),
            )
            .await;
        let link = r.headers()["link"].to_str().unwrap().to_string();
        let next = link
            .split(',')
            .find(|l| l.contains("rel=\"next\""))
            .and_then(|l| l.split(['<', '>']).nth(1))
            .unwrap()
            .to_string();
        assert!(
            next.starts_with(&format!("{}{prefix}/repos/", gw.base)),
            "{link}"
        );
        assert!(!link.contains(gw.hub.url()), "{link}");
        let page2 = gw.get(&t, next.trim_start_matches(&gw.base)).await;
        assert_eq!(page2.status(), 200);
        let v: Value = page2.json().await.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_token_rotation_last_modified_keeps_revalidation_free() {
    let mut hub = hub_config();
    // Tokens the pool renews 5 minutes ahead: each lives 2 s for it.
    hub.installation_token_secs = 302;
    let gw = Gw::start(hub, |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    assert_eq!(
        cache_of(&gw.get(&t, "/repos/octo-org/widgets").await),
        "miss"
    );
    assert_eq!(
        cache_of(&gw.get(&t, "/repos/octo-org/widgets/branches").await),
        "miss"
    );
    let tokens_before = gw.hub.stats().tokens.len();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let r = gw.get(&t, "/repos/octo-org/widgets").await;
    assert!(
        gw.hub.stats().tokens.len() > tokens_before,
        "a new token was minted"
    );
    assert_eq!(
        cache_of(&r),
        "revalidated",
        "If-Modified-Since works whatever the token"
    );
    // Branches carry no Last-Modified: the old ETag cannot help.
    assert_eq!(
        cache_of(&gw.get(&t, "/repos/octo-org/widgets/branches").await),
        "miss"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_passes_through_with_the_clients_owner() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let t = gw.client("gql", &["POST /graphql"], &["octo-org"]);
    for path in ["/graphql", "/api/graphql"] {
        let r = gw
            .http
            .post(format!("{}{path}", gw.base))
            .header("authorization", format!("bearer {t}"))
            .json(&serde_json::json!({
                "query": "query { repository(owner: \"octo-org\", name: \"widgets\") { name } rateLimit { cost } }"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(cache_of(&r), "bypass");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"]["repository"]["name"], "widgets", "{v}");
    }
    let m = gw.app.metrics().await;
    assert!(
        metric(
            &m,
            "gatehouse_gateway_rate_limit_units_spent_total{client=\"gql\"}"
        )
        .unwrap()
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_within_its_bound() {
    // 12 answers of 4-20 KB (~140 KB): each fits a quarter of the bound
    // (an answer larger than that is not kept), all together do not.
    let gw = Gw::start(hub_config(), |g| g.cache_max_bytes = 96 * 1024).await;
    let t = gw.client("ci", &[], &[]);
    for repo in ["widgets", "gadgets"] {
        for n in 1..=3 {
            for (what, n) in [("pulls", n), ("issues", n + 3)] {
                let r = gw
                    .get(&t, &format!("/repos/octo-org/{repo}/{what}/{n}"))
                    .await;
                assert_eq!(r.status(), 200);
            }
        }
    }
    let m = gw.app.metrics().await;
    let size = metric(&m, "gatehouse_gateway_cache_size_bytes").unwrap();
    assert!(size > 0.0 && size <= 96.0 * 1024.0, "{size}");
    assert!(metric(&m, "gatehouse_gateway_cache_evictions_total").unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_reaches_the_journal_for_clients_list() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    for _ in 0..3 {
        gw.get(&t, "/repos/octo-org/widgets").await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows =
            gatehouse::gateway::clients::list(gw.app.app.journal(), gatehouse::clock::now_ms())
                .await
                .unwrap();
        let u = &rows[0].last_hour;
        if u.requests == 3 {
            assert_eq!(
                (u.misses, u.revalidated, u.units_spent, u.units_saved),
                (1, 2, 1, 2)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage not flushed: {u:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revalidated_page_carries_the_new_links_of_its_304() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let t = gw.client("ci", &[], &[]);
    let path = "/repos/octo-org/widgets/issues/4/comments?per_page=1";
    let last = |r: &reqwest::Response| -> String {
        let link = r.headers()["link"].to_str().unwrap().to_string();
        link.split(',')
            .find(|l| l.contains("rel=\"last\""))
            .unwrap_or_else(|| panic!("no last link: {link}"))
            .to_string()
    };
    let first = gw.get(&t, path).await;
    let before = last(&first);
    comment(&gw, &t).await;
    let again = gw.get(&t, path).await;
    // Page 1's items are unchanged, so GitHub answers 304, but the list
    // gained a page: the 304's Link replaces the stored one.
    assert_eq!(cache_of(&again), "revalidated");
    assert_ne!(last(&again), before, "pagination sees the new last page");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_and_usage_survive_a_restart() {
    let Gw { hub, app, http, .. } = Gw::start(hub_config(), |_| {}).await;
    let config = |dir: &std::path::Path| {
        let mut c = common::test_config(dir);
        c.github = github_config(&hub, &[(101, "app-a.pem")], &[]);
        c.gateway = Some(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayConfig::default()
        });
        c
    };
    let t = common::add_client(&app.db_path, "ci", &[], &[]);
    let get = |base: String| {
        let (http, t) = (http.clone(), t.clone());
        async move { common::gateway_get(&http, format!("{base}/repos/octo-org/widgets"), &t).await }
    };
    let base = format!("http://{}", app.app.gateway_addr().unwrap());
    assert_eq!(cache_of(&get(base).await), "miss");
    // Stopped at once, before the periodic flush: the last usage is kept.
    let dir = app.stop().await;
    let cfg = config(dir.path());
    let app = TestApp::start_in(dir, cfg).await;
    let rows = common::beside(&app.db_path, async |store| {
        gatehouse::gateway::clients::list(store, gatehouse::clock::now_ms())
            .await
            .unwrap()
    });
    assert_eq!(rows[0].last_hour.requests, 1, "usage flushed at shutdown");
    let base = format!("http://{}", app.app.gateway_addr().unwrap());
    let r = get(base).await;
    assert_eq!(r.status(), 200);
    // A new process mints a new token, so the stored ETag cannot match;
    // the stored Last-Modified still gets a 304.
    assert_eq!(
        cache_of(&r),
        "revalidated",
        "the cache outlived the process"
    );
}

/// fakehub with octo-org (widgets), victim-org (a private crown-jewels),
/// App 101 installed on octo-org only, a personal access token that sees
/// every repository, and a fine-grained one that sees octo-org/widgets.
async fn two_org_gateway(confined_token: bool) -> (FakeHub, TestApp, String) {
    let mut hc = HubConfig::default()
        .org("octo-org", &["widgets"])
        .org("victim-org", &["crown-jewels"])
        .private("victim-org", "crown-jewels")
        .app(101, &key("app-a.pub.pem"), &[(INSTALLATION, "octo-org")])
        .token("bot", "pat-everything")
        .token_for("octo-bot", "pat-octo", &["octo-org/widgets"]);
    hc.fixtures = Some(common::fixtures());
    let hub = FakeHub::start(hc).await.unwrap();
    let mut github = github_config(&hub, &[(101, "app-a.pem")], &["pat-everything"]);
    if confined_token {
        github.tokens.push(gatehouse::config::GithubTokenConfig {
            name: "octo-bot".into(),
            token: Some(gatehouse::config::Secret::new("pat-octo")),
            token_file: None,
            owners: vec!["octo-org".into()],
            purposes: gatehouse::config::Purpose::ALL.to_vec(),
            confined: true,
        });
    }
    let app = TestApp::spawn_with(|c: &mut Config| {
        c.github = github;
        c.gateway = Some(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..GatewayConfig::default()
        });
    })
    .await;
    let base = format!("http://{}", app.app.gateway_addr().unwrap());
    (hub, app, base)
}

/// A value of the other organisation (or the all-reaching token's user)
/// anywhere in an answer's data; GitHub's error messages, which echo what
/// was asked for, do not count.
fn leaked(body: &str) -> Option<String> {
    fn walk(v: &Value, found: &mut Option<String>) {
        match v {
            Value::String(s)
                if [
                    "victim-org",
                    "crown-jewels",
                    "victim-org/crown-jewels",
                    "fakehub-bot",
                ]
                .contains(&s.as_str()) =>
            {
                *found = Some(s.clone())
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| !["errors", "message"].contains(&k.as_str()))
                .for_each(|(_, x)| walk(x, found)),
            _ => {}
        }
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let mut found = None;
    walk(&v, &mut found);
    found
}

fn graphql(query: &str) -> serde_json::Value {
    serde_json::json!({ "query": query })
}

/// Every request a client limited to octo-org can make without naming an
/// owner (and two that name the victim), many times over: the pool's
/// choice among credentials must never make a leak intermittent.
async fn probe_owner_less(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    victim_id: i64,
) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    let gets = [
        "/user".to_string(),
        "/user/repos".to_string(),
        format!("/repositories/{victim_id}"),
        "/search/repositories?q=crown".to_string(),
        "/search/repositories?q=org:victim-org".to_string(),
        "/installation/repositories".to_string(),
        "/api/v3/api/v3/repos/victim-org/crown-jewels".to_string(),
        "/api/v3/user".to_string(),
    ];
    let queries = [
        r#"{ repository(owner: "victim-org", name: "crown-jewels") { name isPrivate } }"#,
        r#"query { viewer { login } }"#,
        r#"{ viewer { login repository(name: "crown-jewels") { name } } }"#,
    ];
    for round in 0..12 {
        for path in &gets {
            let r = http
                .get(format!("{base}{path}"))
                .header("authorization", format!("token {token}"))
                .header(
                    "cache-control",
                    if round % 2 == 0 { "no-store" } else { "" },
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            out.push((path.clone(), status, r.text().await.unwrap()));
        }
        for (i, q) in queries.iter().enumerate() {
            let path = if round % 2 == 0 {
                "/graphql"
            } else {
                "/api/graphql"
            };
            let r = http
                .post(format!("{base}{path}"))
                .header("authorization", format!("token {token}"))
                .json(&graphql(q))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            out.push((format!("graphql #{i}"), status, r.text().await.unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_limited_to_one_owner_never_reads_another_owners_data() {
    let (hub, app, base) = two_org_gateway(false).await;
    let http = reqwest::Client::new();
    let victim_id = {
        let r: Value = http
            .get(format!("{}/repos/victim-org/crown-jewels", hub.url()))
            .header("authorization", "token pat-everything")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["id"]
            .as_i64()
            .expect("the PAT sees the private repository")
    };
    let limited = common::add_client(
        &app.db_path,
        "octo-only",
        &["GET /.*", "POST /graphql"],
        &["octo-org"],
    );
    let pat_before = hub
        .stats()
        .tokens
        .get("pat:bot")
        .cloned()
        .unwrap_or_default();
    let answers = probe_owner_less(&http, &base, &limited, victim_id).await;
    assert_eq!(answers.len(), 12 * 11);
    for (what, status, body) in &answers {
        assert_eq!(leaked(body), None, "{what} ({status}) leaked: {body}");
    }
    let status_of = |what: &str| -> Vec<u16> {
        let mut v: Vec<u16> = answers
            .iter()
            .filter(|a| a.0 == what)
            .map(|a| a.1)
            .collect();
        v.dedup();
        v
    };
    assert_eq!(
        status_of("/api/v3/api/v3/repos/victim-org/crown-jewels"),
        [404],
        "a doubled prefix is not a GitHub path"
    );
    assert_eq!(
        status_of(&format!("/repositories/{victim_id}")),
        [404],
        "the installation on octo-org cannot see it"
    );
    assert_eq!(
        hub.stats()
            .tokens
            .get("pat:bot")
            .cloned()
            .unwrap_or_default()
            .requests,
        pat_before.requests,
        "the token that reaches every organisation served none of it"
    );
    // Naming the victim is refused before anything is sent.
    let r = common::gateway_get(
        &http,
        format!("{base}/repos/victim-org/crown-jewels"),
        &limited,
    )
    .await;
    assert_eq!(r.status(), 403);

    // A client allowed every owner is still served by the token.
    let open = common::add_client(&app.db_path, "anyone", &[], &[]);
    let r = common::gateway_get(&http, format!("{base}/user"), &open).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["login"], "fakehub-bot");
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_less_requests_of_a_limited_client_use_only_confined_credentials() {
    let (hub, app, base) = two_org_gateway(true).await;
    let http = reqwest::Client::new();
    let limited = common::add_client(&app.db_path, "octo-only", &[], &["octo-org"]);
    let answers = probe_owner_less(&http, &base, &limited, 1).await;
    for (what, status, body) in &answers {
        assert_eq!(leaked(body), None, "{what} ({status}) leaked: {body}");
    }
    // The declared-confined token serves what an installation cannot.
    assert!(
        answers
            .iter()
            .any(|(w, s, b)| w == "/user" && *s == 200 && b.contains("octo-bot")),
        "GET /user answered as the confined token"
    );
    let stats = hub.stats();
    assert!(
        stats
            .tokens
            .get("pat:octo-bot")
            .is_some_and(|u| u.requests > 0)
    );
    assert!(stats.tokens.get("pat:bot").is_none_or(|u| u.requests == 0));

    // Where no confined credential exists (the App is not installed on
    // victim-org, and the only token reaches everything), an owner-less
    // request is refused with the reason, never served by that token.
    let victims = common::add_client(&app.db_path, "victim-only", &[], &["victim-org"]);
    let before = hub
        .stats()
        .tokens
        .get("pat:bot")
        .cloned()
        .unwrap_or_default();
    for path in ["/user", "/graphql"] {
        let req = if path == "/graphql" {
            http.post(format!("{base}{path}"))
                .json(&graphql("{ viewer { login } }"))
        } else {
            http.get(format!("{base}{path}"))
        };
        let r = req
            .header("authorization", format!("token {victims}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("confined") && msg.contains("victim-org"),
            "{msg}"
        );
    }
    assert_eq!(
        hub.stats()
            .tokens
            .get("pat:bot")
            .cloned()
            .unwrap_or_default()
            .requests,
        before.requests
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_graphql_scope_refuses_mutations_before_they_go_upstream() {
    let gw = Gw::start(hub_config(), |_| {}).await;
    let reader = gw.client("reader", &["QUERY /graphql"], &["octo-org"]);
    let writer = gw.client("writer", &["MUTATION /graphql"], &["octo-org"]);
    let sent = || gw.installation_usage(INSTALLATION).requests;
    let query = graphql(r#"{ repository(owner: "octo-org", name: "widgets") { name } }"#);
    let r = gw.graphql(&reader, &query).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["repository"]["name"], "widgets");
    let after_query = sent();

    let mutation = graphql(
        r#"mutation { addComment(input: {subjectId: "I_1", body: "pwned"}) { clientMutationId } }"#,
    );
    // Disguised too: several operations, the mutation picked by name, or
    // in the GHES path.
    let picked = serde_json::json!({
        "query": "query Innocent { viewer { login } } mutation Evil { addStar(input: {starrableId: \"x\"}) { clientMutationId } }",
        "operationName": "Evil",
    });
    for body in [mutation.clone(), picked] {
        let r = gw.graphql(&reader, &body).await;
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains("MUTATION"), "{v}");
    }
    // A document whose operation cannot be told is refused, not guessed.
    for body in [
        serde_json::json!({"query": "query A { viewer { login } } mutation B { x }"}),
        serde_json::json!({"query": "mutation { x"}),
        serde_json::json!([{"query": "{ viewer { login } }"}]),
        serde_json::json!({"query": "subscription { x }"}),
    ] {
        let r = gw.graphql(&reader, &body).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(sent(), after_query, "nothing refused reached GitHub");

    // The writer's mutation goes upstream; its query does not.
    assert_eq!(gw.graphql(&writer, &query).await.status(), 403);
    gw.graphql(&writer, &mutation).await;
    assert_eq!(sent(), after_query + 1);
}

impl Gw {
    /// A client with these limits, any owner and scope.
    fn limited(&self, name: &str, limits: gatehouse::gateway::clients::Limits) -> String {
        let name = name.to_string();
        common::beside(&self.app.db_path, async move |store| {
            let settings = gatehouse::gateway::clients::Settings {
                name,
                limits,
                ..Default::default()
            };
            gatehouse::gateway::clients::add(
                store,
                &settings,
                &common::test_actor(),
                gatehouse::clock::now_ms(),
            )
            .await
            .unwrap()
        })
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_refuses_the_first_unit_over_it_as_github_would_and_free_answers_never_count() {
    let mut hub = hub_config();
    hub.rate_limit.graphql_points = 10;
    let clock = gatehouse::clock::ManualClock::starting_now();
    let gw = Gw::start_on(
        hub,
        |g| {
            g.fresh = vec![FreshRule {
                path: "^/repos/octo-org/widgets$".into(),
                secs: 600,
            }];
            // GraphQL names no owner: this one's credentials serve it.
            g.default_owner = "octo-org".into();
        },
        clock.clone(),
    )
    .await;
    let token = gw.limited(
        "batch",
        gatehouse::gateway::clients::Limits {
            quota_per_hour: Some(100),
            ..Default::default()
        },
    );
    // The first read of a fresh path costs one unit; its hits cost none.
    let r = gw.get(&token, "/repos/octo-org/widgets").await;
    assert_eq!((r.status().as_u16(), cache_of(&r)), (200, "miss".into()));
    assert_eq!(header(&r, "x-ratelimit-limit"), "100");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "99");
    assert_eq!(header(&r, "x-ratelimit-used"), "1");
    // GitHub's own budget is still told, aside.
    assert_eq!(header(&r, "x-gatehouse-upstream-ratelimit-limit"), "5000");
    for _ in 0..3 {
        let r = gw.get(&token, "/repos/octo-org/widgets").await;
        assert_eq!(
            (cache_of(&r), header(&r, "x-ratelimit-remaining")),
            ("hit".into(), "99".into())
        );
    }
    // A read GitHub answers 304 the second time: the 304 costs nothing.
    let pulls = "/repos/octo-org/widgets/pulls";
    assert_eq!(
        header(&gw.get(&token, pulls).await, "x-ratelimit-used"),
        "2"
    );
    let r = gw.get(&token, pulls).await;
    assert_eq!(
        (cache_of(&r), header(&r, "x-ratelimit-used")),
        ("revalidated".into(), "2".into())
    );
    // GraphQL counts the points GitHub charged (10 a query here). Its
    // headers give the window's total, so the cost is the drop since the
    // credential's last GraphQL answer: another client's query comes first
    // (a credential's first query after a start counts 1).
    let other = gw.client("other", &[], &[]);
    let viewer = graphql("query { viewer { login } }");
    let query = async |token: &str| gw.graphql(token, &viewer).await;
    assert_eq!(query(&other).await.status(), 200);
    let r = query(&token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-used"), "12");
    // 88 more units, each a different read: all served, the 100th too.
    for i in 0..88 {
        let r = gw
            .get(&token, &format!("/repos/octo-org/widgets?n={i}"))
            .await;
        assert_eq!(r.status(), 200, "unit {} of 100", i + 13);
    }
    let sent = gw.installation_usage(INSTALLATION).requests;
    // The 101st unit is refused, with GitHub's headers and nothing sent.
    let r = gw.get(&token, "/repos/octo-org/widgets?n=999").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&r, "x-ratelimit-limit"), "100");
    assert_eq!(header(&r, "x-ratelimit-used"), "100");
    assert_eq!(header(&r, "x-ratelimit-resource"), "core");
    let reset: i64 = header(&r, "x-ratelimit-reset").parse().unwrap();
    let now = clock.now_ms() / 1000;
    assert!(reset > now && reset <= now + 3600, "{reset} vs {now}");
    let v: Value = r.json().await.unwrap();
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("\"batch\"") && message.contains("quota"),
        "{message}"
    );
    assert_eq!(
        gw.installation_usage(INSTALLATION).requests,
        sent,
        "nothing sent upstream"
    );
    // Another client is not held to it.
    assert_eq!(
        gw.get(&other, "/repos/octo-org/widgets?n=999")
            .await
            .status(),
        200
    );
    let m = common::scrape(&gw.app.client, &gw.app.base).await;
    assert_eq!(
        metric(
            &m,
            "gatehouse_gateway_refusals_total{client=\"batch\",rule=\"quota\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // The hour slides: at the reset it announced, the client reads again.
    clock.advance(reset * 1000 - clock.now_ms() + 1);
    let r = gw.get(&token, "/repos/octo-org/widgets?n=1000").await;
    assert_eq!(r.status(), 200, "the quota's hour has moved on");
    assert_eq!(header(&r, "x-ratelimit-used"), "1");
}

/// A gateway whose owner's budget (100 units of the resource `limits`
/// sets, for 10 minutes, 5 in reserve) reaches the share rules quickly:
/// shares from half of it, the last 10% kept for high priority.
async fn sharing(limits: impl FnOnce(&mut fakehub::config::RateLimitConfig)) -> Gw {
    let mut hub = hub_config();
    limits(&mut hub.rate_limit);
    hub.rate_limit.window_secs = 600;
    Gw::start_reserving(
        hub,
        5,
        |g| {
            g.fair_share_below = 0.5;
            g.priority_share = 0.1;
        },
        gatehouse::clock::system(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_client_is_held_to_its_share_while_the_others_keep_working() {
    let gw = sharing(|limits| limits.core = 100).await;
    let runaway = gw.client("runaway", &[], &[]);
    let normal = gw.client("normal", &[], &[]);
    // Confined to another owner: its requests for octo-org are refused
    // before the spending rules, so it never counts as one of the clients
    // that share octo-org's budget.
    let outsider = gw.client("outsider", &[], &["other-org"]);
    let deploy = gw.limited(
        "deploy",
        gatehouse::gateway::clients::Limits {
            priority: gatehouse::gateway::clients::Priority::High,
            ..Default::default()
        },
    );
    // The runaway reads without end; the normal client reads now and then.
    let (mut runaway_refused, mut normal_ok, mut share) = (0u64, 0u64, 0u64);
    for i in 0..200 {
        let r = gw
            .get(&runaway, &format!("/repos/octo-org/widgets?r={i}"))
            .await;
        if r.status() == 403 {
            runaway_refused += 1;
            assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
            share = header(&r, "x-ratelimit-limit").parse().unwrap();
        } else {
            assert_eq!(r.status(), 200);
        }
        if i % 10 == 0 {
            let r = gw
                .get(&normal, &format!("/repos/octo-org/widgets?n={i}"))
                .await;
            assert_eq!(
                r.status(),
                200,
                "the normal client keeps working (read {i})"
            );
            normal_ok += 1;
            let r = gw
                .get(&outsider, &format!("/repos/octo-org/widgets?o={i}"))
                .await;
            assert_eq!(r.status(), 403);
            assert!(
                r.text()
                    .await
                    .unwrap()
                    .contains("may act only for other-org")
            );
        }
    }
    assert!(runaway_refused > 100, "{runaway_refused}");
    assert_eq!(normal_ok, 20);
    // Crossing half of 100 with 10 kept, the shares divide about 39: two
    // clients get about 19 each; had the outsider counted, a third (13).
    assert!((17..=20).contains(&share), "the runaway's share: {share}");
    // The priority part is left for high priority: a deploy still reads.
    assert_eq!(
        gw.get(&deploy, "/repos/octo-org/widgets?d=1")
            .await
            .status(),
        200
    );
    let spent = gw.installation_usage(INSTALLATION);
    assert_eq!(spent.rate_limited, 0, "GitHub never had to refuse");
    assert!(
        spent.units_spent <= 100 - 5,
        "the reserve of 5 is never touched: {spent:?}"
    );
    // Every read was a different path, so each one served is one request
    // upstream and each one refused is none.
    let served = (200 - runaway_refused) + normal_ok + 1;
    assert_eq!(spent.requests, served, "nothing refused reached GitHub");
    let m = common::scrape(&gw.app.client, &gw.app.base).await;
    assert!(
        metric(
            &m,
            "gatehouse_gateway_refusals_total{client=\"runaway\",rule=\"fair_share\"}"
        )
        .unwrap_or(0.0)
            > 0.0,
        "{m}"
    );
}

/// The same on GraphQL's budget, where a scope is judged on the operation
/// in the body: a client whose mutations its read-only scope refuses
/// never counts as one of the clients that share the owner's points.
#[tokio::test(flavor = "multi_thread")]
async fn a_graphql_request_its_scope_refuses_takes_no_share_of_the_points() {
    let gw = sharing(|limits| limits.graphql = 100).await;
    let runaway = gw.client("runaway", &[], &["octo-org"]);
    let normal = gw.client("normal", &[], &["octo-org"]);
    let reader = gw.client("reader", &["QUERY /graphql"], &["octo-org"]);
    let query = graphql(r#"{ repository(owner: "octo-org", name: "widgets") { name } }"#);
    let mutation = graphql(
        r#"mutation { addComment(input: {subjectId: "I_1", body: "x"}) { clientMutationId } }"#,
    );
    let (mut refused, mut normal_ok) = (0u64, 0u64);
    for i in 0..200 {
        let r = gw.graphql(&runaway, &query).await;
        if r.status() == 403 {
            refused += 1;
            assert_eq!(header(&r, "x-ratelimit-resource"), "graphql");
        } else {
            assert_eq!(r.status(), 200);
        }
        if i % 10 == 0 {
            let r = gw.graphql(&normal, &query).await;
            assert_eq!(
                r.status(),
                200,
                "the normal client keeps working (query {i})"
            );
            normal_ok += 1;
            let r = gw.graphql(&reader, &mutation).await;
            assert_eq!(r.status(), 403);
            assert!(
                r.text()
                    .await
                    .unwrap()
                    .contains("may not run a GraphQL MUTATION")
            );
        }
    }
    assert_eq!(normal_ok, 20);
    assert!(refused > 100, "{refused}");
    let spent = gw.installation_usage(INSTALLATION);
    assert_eq!(spent.rate_limited, 0, "GitHub never had to refuse");
}
