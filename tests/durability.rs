//! Invariant 1 (ack means durable) and the process contract, against the
//! real binary: kill -9 mid-stream, SIGTERM, a second process on the same
//! file, a full disk, the embedded default, check-config.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::binary::{self, Server};
use common::load::{bodies, drive, integrity_ok, journaled};
use common::{Delivery, compact, count, open_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_delivery_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let mut server = Server::start(&config);
    let pid = server.pid();

    // Kill -9 once 1,500 of 4,000 concurrent deliveries are acknowledged:
    // hundreds are then in flight, some mid-commit.
    let killed = Arc::new(AtomicUsize::new(0));
    let k = killed.clone();
    let load = drive(&server.base, 4000, 64, "crash", move |acks| {
        if acks >= 1500 && k.swap(1, Ordering::SeqCst) == 0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    })
    .await;
    server.kill9();
    assert_eq!(
        killed.load(Ordering::SeqCst),
        1,
        "the kill happened mid-stream"
    );
    assert!(load.acked.len() >= 1500, "acked {}", load.acked.len());
    assert!(load.failed > 0, "the kill cut requests off");

    // Restart on the same file: everything acknowledged is there, once.
    let server = Server::start(&config);
    let rows = journaled(&db);
    for guid in &load.acked {
        assert_eq!(
            rows.get(guid),
            Some(&1),
            "acked {guid} must be journaled exactly once"
        );
    }
    integrity_ok(&db);
    // And every one of them is now a duplicate.
    let client = reqwest::Client::new();
    let bodies = bodies();
    for guid in load.acked.iter().take(200) {
        let i: usize = guid.trim_start_matches("crash-").parse().unwrap();
        let (event, body) = &bodies[i % bodies.len()];
        let r = Delivery::json(event, guid, body.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{guid} is a duplicate after restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let mut server = Server::start(&config);
    let pid = server.pid();
    let term = Arc::new(AtomicUsize::new(0));
    let t = term.clone();
    let load = drive(&server.base, 3000, 32, "term", move |acks| {
        if acks >= 500 && t.swap(1, Ordering::SeqCst) == 0 {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    })
    .await;
    let status = binary::wait_bounded(&mut server.child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    let output = server.output();
    assert!(output.contains("stopped"), "{output}");
    let rows = journaled(&db);
    for guid in &load.acked {
        assert_eq!(rows.get(guid), Some(&1), "{guid}");
    }
    // A clean stop leaves a checkpointed database and an empty WAL.
    let wal = std::fs::metadata(dir.path().join("gatehouse.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0);
    integrity_ok(&db);
}

#[test]
fn second_process_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let first = Server::start(&config);
    let (status, output) = binary::run(&["serve", "--config", config.to_str().unwrap()], None);
    assert!(!status.success());
    assert!(
        output.contains(&format!(
            "in use by another gatehouse process (pid {})",
            first.pid()
        )),
        "{output}"
    );
    // After the first one is gone (even by kill -9), the file is free again.
    drop(first);
    let again = Server::start(&config);
    assert!(again.base.starts_with("http://127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_generates_a_secret_once_and_uses_it() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = Server::start_args(&["serve"], Some(cwd.path()), &[]);
    assert_eq!(server.addr.to_string(), "127.0.0.1:8080");
    let output = server.output();
    let secret_file = cwd.path().join("gatehouse-data/webhook-secret");
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(secret.len(), 48);
    assert!(
        output.contains(&format!("Secret:       {secret}")),
        "{output}"
    );
    assert!(
        output.contains("http://127.0.0.1:8080/webhooks/github"),
        "{output}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let d = Delivery::json("ping", "default-1", body.clone()).signed_with(&secret);
    assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
    // An admin password too: printed once, only its hash kept, and it logs in.
    let password = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Admin login:  "))
        .expect("the admin password is printed")
        .trim()
        .to_string();
    assert_eq!(password.len(), 20, "{output}");
    let hash_file = cwd.path().join("gatehouse-data/admin-password.hash");
    let hash = std::fs::read_to_string(&hash_file).unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&password));
    assert_eq!(
        std::fs::metadata(&hash_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut admin = common::admin::Admin::anonymous(&server.base);
    assert_eq!(admin.try_login(&password).await.status, 303);
    assert!(server.terminate().success());

    // Second start: the same secret, not printed again.
    let mut server = Server::start_args(&["serve"], Some(cwd.path()), &[]);
    let output = server.output();
    assert!(
        !output.contains(&secret) && !output.contains(&password),
        "the secret and the password are shown only once: {output}"
    );
    assert_eq!(std::fs::read_to_string(&hash_file).unwrap(), hash);
    assert!(
        output.contains("stored in gatehouse-data/webhook-secret"),
        "{output}"
    );
    let d = Delivery::json("ping", "default-2", body).signed_with(&secret);
    assert_eq!(d.send(&client, &server.base).await.unwrap().status(), 202);
    assert!(server.terminate().success());
    assert_eq!(
        count(
            &open_db(&cwd.path().join("gatehouse-data/gatehouse.db")),
            "SELECT count(*) FROM deliveries"
        ),
        2
    );
}

#[test]
fn check_config_accepts_good_files_and_names_key_and_line_of_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = binary::write_config(
        dir.path(),
        &dir.path().join("x.db"),
        "partition_by = \"repository\"\n",
    );
    let (status, out) = binary::run(&["check-config", "--config", good.to_str().unwrap()], None);
    assert!(status.success(), "{out}");
    assert!(out.contains("OK"), "{out}");

    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n[webhooks]\nsecrets=[\"x\"]\n",
            ":3: server.port: unknown field",
        ),
        (
            "[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = \"big\"\n",
            ":3: webhooks.max_body_bytes:",
        ),
        (
            "[webhooks]\nsecret_files = [\"/nonexistent/s\"]\n",
            ":2: webhooks.secret_files[0]: cannot read secret file /nonexistent/s",
        ),
        (
            "[storage]\npath = \"x.db\"\n",
            "webhooks.secrets: at least one webhook secret",
        ),
        ("[webhooks\nsecrets = 1\n", ":1:"),
    ];
    for (text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let (status, out) =
            binary::run(&["check-config", "--config", path.to_str().unwrap()], None);
        assert!(!status.success(), "{text}");
        assert!(out.contains(want), "expected {want:?} in {out:?}");
    }
    let (status, out) = binary::run(&["check-config", "--config", "/nonexistent.toml"], None);
    assert!(!status.success());
    assert!(
        out.contains("cannot read config file /nonexistent.toml"),
        "{out}"
    );
}

/// A small tmpfs mounted for this test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let s = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_answers_503_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let Some(fs) = Tmpfs::mount(&data, "2m") else {
        // Mounting needs root (CI and the dev machines run as root).
        panic!("cannot mount a tmpfs for the disk-full test: run the suite as root");
    };
    let db = data.join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let mut server = Server::start(&config);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/pull_request/opened.payload.json"));

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let guid = format!("full-{i}");
        let r = Delivery::json("pull_request", &guid, body.clone())
            .send(&client, &server.base)
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => acked.push(guid),
            503 => {
                refused = Some(r);
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let refused = refused.expect("a 2 MB file system fills up");
    assert_eq!(refused.headers()["retry-after"], "5");
    assert!(!acked.is_empty());
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // Space returns: gatehouse notices by itself, without a delivery.
    fs.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = Delivery::json("pull_request", "after-full", body.clone())
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(server.terminate().success());
    let rows = journaled(&db);
    for guid in acked
        .iter()
        .chain(std::iter::once(&"after-full".to_string()))
    {
        assert_eq!(rows.get(guid), Some(&1), "{guid}");
    }
    integrity_ok(&db);
    drop(server);
    drop(fs);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_name_rejected_guids_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("second-secret");
    std::fs::write(&secret_file, "file-secret-value-42\n").unwrap();
    let config = binary::write_config(
        dir.path(),
        &dir.path().join("g.db"),
        &format!(
            "secret_files = [{:?}]\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
            secret_file.display().to_string()
        ),
    );
    let mut server = Server::start(&config);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let bad = Delivery::json("push", "guid-with-bad-signature", body.clone()).signed_with("wrong");
    assert_eq!(bad.send(&client, &server.base).await.unwrap().status(), 401);
    let good = Delivery::json("push", "guid-ok", body.clone()).signed_with("file-secret-value-42");
    assert_eq!(
        good.send(&client, &server.base).await.unwrap().status(),
        202
    );
    assert!(server.terminate().success());

    let output = server.output();
    for secret in [common::SECRET, "file-secret-value-42"] {
        assert!(!output.contains(secret), "a secret reached the logs");
    }
    assert!(!output.contains(bad.signature.as_deref().unwrap()));
    let mut rejected = false;
    for line in output.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["delivery"] == "guid-with-bad-signature" {
            assert_eq!(v["level"], "WARN");
            assert!(
                v["reason"]
                    .as_str()
                    .unwrap()
                    .contains("X-Hub-Signature-256")
            );
            rejected = true;
        }
    }
    assert!(rejected, "the rejection is logged with its GUID: {output}");
}
