//! The documented example config loads and serves.

mod common;

use fakehub::{Config, FakeHub};

#[tokio::test]
async fn the_example_config_loads_and_serves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fakehub.example.toml");
    let mut config = Config::load(&path).expect("example config is valid");
    config.listen = "127.0.0.1:0".parse().unwrap();
    assert_eq!(config.apps[0].installations.len(), 2);
    let hub = FakeHub::start(config).await.unwrap();
    let r = common::get(
        &hub,
        "/repos/octo-org/widgets",
        Some("token ghp_devtoken000000000000000000000000000000"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        common::get(&hub, "/repos/octo-org/secret", None)
            .await
            .status(),
        404
    );
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "listen = \"127.0.0.1:0\"\nlisen = 1\n").unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("unknown field `lisen`"), "{e}");
}
