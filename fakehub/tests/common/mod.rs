//! Helpers for fakehub's tests: a standard world, JWTs signed with the
//! test keys, and a webhook receiver that records what it gets.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use fakehub::{Config, FakeHub};
use http::HeaderMap;
use serde_json::Value;

pub const PAT: &str = "ghp_testtoken0000000000000000000000000000";
pub const APP: i64 = 101;
pub const ORG_INST: i64 = 11;
pub const USER_INST: i64 = 12;

pub fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// octo-org (widgets, gadgets, private "secret"), octo-user (dotfiles);
/// App 101 installed on both; one PAT.
pub fn world() -> Config {
    let mut c = Config::default()
        .org("octo-org", &["widgets", "gadgets", "secret"])
        .user("octo-user", &["dotfiles"])
        .app(
            APP,
            &key("app-a.pub.pem"),
            &[(ORG_INST, "octo-org"), (USER_INST, "octo-user")],
        )
        .token("ci", PAT);
    c.accounts[0].private = vec!["secret".into()];
    c
}

pub async fn start(config: Config) -> FakeHub {
    FakeHub::start(config).await.expect("fakehub starts")
}

pub fn now() -> i64 {
    fakehub::world::now_secs()
}

/// A JWT for App 101 as GitHub's docs build it: iat 60 s ago, exp in 10 min.
pub fn jwt() -> String {
    jwt_at(now() - 60, now() + 600)
}

pub fn jwt_at(iat: i64, exp: i64) -> String {
    fakehub::auth::sign_app_jwt(APP, &key("app-a.pem"), iat, exp)
}

pub async fn get(hub: &FakeHub, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", hub.url()));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

pub async fn installation_token(
    hub: &FakeHub,
    installation: i64,
    body: Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/app/installations/{installation}/access_tokens",
            hub.url()
        ))
        .header("authorization", format!("Bearer {}", jwt()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn token_for(hub: &FakeHub, installation: i64) -> String {
    let r = installation_token(hub, installation, Value::Null).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    format!("token {}", v["token"].as_str().unwrap())
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// What a receiver got: each request's headers and body, in arrival order.
pub type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on a loopback port that records each request and
/// answers `status` after `delay`.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Received,
}

#[derive(Clone)]
struct RxState {
    got: Received,
    status: u16,
    delay: Duration,
}

pub async fn receiver(status: u16, delay: Duration) -> Receiver {
    let got = Arc::new(Mutex::new(Vec::new()));
    let state = RxState {
        got: got.clone(),
        status,
        delay,
    };
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(s): State<RxState>, headers: HeaderMap, body: bytes::Bytes| async move {
                    tokio::time::sleep(s.delay).await;
                    s.got.lock().unwrap().push((headers, body.to_vec()));
                    http::StatusCode::from_u16(s.status).unwrap()
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
