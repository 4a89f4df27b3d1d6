//! fakehub-side helpers: the test-only App keys and a [github] section
//! that spends fakehub's credentials.

use fakehub::{FakeHub, HookRef, Record};
use gatehouse::config::{GithubAppConfig, GithubConfig, GithubTokenConfig, Secret};

/// A test-only RSA key from fakehub/testdata.
pub fn key(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fakehub/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The [github] section for these Apps (by key file) and tokens (each
/// named "bot", allowed for any owner).
pub fn github_config(hub: &FakeHub, apps: &[(i64, &str)], tokens: &[&str]) -> GithubConfig {
    GithubConfig {
        api_url: hub.url().to_string(),
        apps: apps
            .iter()
            .map(|(id, k)| GithubAppConfig {
                id: *id,
                private_key: Some(Secret::new(key(k))),
                private_key_file: None,
                webhook: true,
                purposes: gatehouse::config::Purpose::ALL.to_vec(),
            })
            .collect(),
        tokens: tokens
            .iter()
            .map(|t| GithubTokenConfig {
                name: "bot".into(),
                token: Some(Secret::new(*t)),
                token_file: None,
                owners: vec![],
                purposes: gatehouse::config::Purpose::ALL.to_vec(),
                confined: false,
            })
            .collect(),
        ..GithubConfig::default()
    }
}

/// Sends `n` real push deliveries (octo-org/widgets) from this App or hook,
/// as GitHub would; returns what fakehub's delivery log recorded.
pub async fn push_deliveries(hub: &FakeHub, hook: HookRef, n: usize) -> Vec<Record> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = hub
            .deliver(hook, "push", "payload.json", "octo-org", "widgets")
            .await
            .unwrap();
        out.push(r);
    }
    out
}

/// fakehub with octo-org (repository widgets) and other-org (secret), the
/// test App 101 installed on both (11, 12), GitHub's fixtures, and `faults`.
pub async fn octo_hub(faults: Vec<fakehub::config::FaultConfig>) -> FakeHub {
    let mut c = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .org("other-org", &["secret"])
        .app(
            101,
            &key("app-a.pub.pem"),
            &[(11, "octo-org"), (12, "other-org")],
        );
    c.fixtures = Some(super::fixtures());
    for f in faults {
        c = c.fault(f);
    }
    FakeHub::start(c).await.unwrap()
}
