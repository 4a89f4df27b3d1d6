//! The fakehub binary: `serve` from the documented config, `storm` at a rate.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fakehub");

#[tokio::test]
async fn serve_runs_from_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fakehub.example.toml"))
            .unwrap();
    let config = example
        .replace("listen = \"127.0.0.1:9900\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "\"testdata/app-a.pub.pem\"",
            &format!(
                "{:?}",
                concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/app-a.pub.pem")
            ),
        );
    let path = dir.path().join("fakehub.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("fakehub listening on ")
        .expect(&line)
        .to_string();
    let r = reqwest::Client::new()
        .get(format!("{url}/repos/octo-org/widgets"))
        .header(
            "authorization",
            "token ghp_devtoken000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn storm_subcommand_paces_by_rate_and_reports_json() {
    let rx = common::receiver(202, Duration::ZERO).await;
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "storm",
                "--target",
                &rx.url,
                "--secret",
                "s",
                "--deliveries",
                "40",
                "--rate",
                "100",
                "--orgs",
                "2",
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    // 40 sends at 100/s are spread over at least 0.39 s.
    assert!(started.elapsed() >= Duration::from_millis(390));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["acked_guids"], 40);
    assert_eq!(report["status_counts"]["202"], 40);
    assert!(report["elapsed_secs"].as_f64().unwrap() >= 0.39);
}
