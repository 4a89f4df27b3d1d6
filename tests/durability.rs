//! Invariant 1 (ack means durable) and the process contract, against the
//! real binary: kill -9 mid-stream, SIGTERM, a second process on the same
//! file, a full disk, the embedded default, check-config.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::binary::{self, Server};
use common::census::Census;
use common::load::{bodies, drive, integrity_ok, journaled};
use common::{Delivery, compact, open_db};

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
    // The same file through a symlinked path, a symlinked directory or a
    // hard link: the same lock.
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let hard = dir.path().join("hard.db");
    std::fs::hard_link(&db, &hard).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let via_dir = elsewhere.path().join("data");
    std::os::unix::fs::symlink(dir.path(), &via_dir).unwrap();
    for (other, pid_known) in [
        (link, true),
        (via_dir.join("gatehouse.db"), true),
        (hard, false),
    ] {
        let d = tempfile::tempdir().unwrap();
        let cfg = binary::write_config(d.path(), &other, "");
        let (status, output) = binary::run(&["serve", "--config", cfg.to_str().unwrap()], None);
        assert!(!status.success(), "{}: {output}", other.display());
        assert!(
            output.contains("in use by another gatehouse process"),
            "{output}"
        );
        if pid_known {
            assert!(
                output.contains(&format!("(pid {})", first.pid())),
                "{output}"
            );
        }
    }
    // After the first one is gone (even by kill -9), the file is free again.
    drop(first);
    let again = Server::start(&config);
    assert!(again.base.starts_with("http://127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_deleted_while_running_stops_every_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let mut server = Server::start(&config);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let send = |guid: String| {
        let (client, base, body) = (client.clone(), server.base.clone(), body.clone());
        async move {
            Delivery::json("push", &guid, body)
                .send(&client, &base)
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for i in 0..5 {
        assert_eq!(send(format!("before-{i}")).await, 202);
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // With no delivery coming, /readyz notices within the next checks.
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = loop {
        let r = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break r.text().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed 200 with the journal deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(said.contains("deleted or replaced"), "{said}");
    // Nothing is acknowledged any more, and it says why, loudly.
    for i in 0..8 {
        assert_eq!(send(format!("after-{i}")).await, 503);
    }
    assert!(
        server
            .output()
            .contains("deleted or replaced while gatehouse ran"),
        "{}",
        server.output()
    );
    assert!(server.terminate().success());
    // A restart starts a new journal, which has none of the deliveries
    // answered 503 (GitHub keeps those to redeliver).
    let server = Server::start(&config);
    drop(server);
    let rows = journaled(&db);
    assert!(rows.keys().all(|g| !g.starts_with("after-")), "{rows:?}");
}

#[test]
fn a_corrupt_journal_is_refused_at_start_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let mut server = Server::start(&config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = server.base.clone();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let body = compact(&common::fixtures().join("payloads/push/payload.json"));
        for i in 0..200 {
            let r = Delivery::json("push", &format!("c-{i}"), body.clone())
                .send(&client, &base)
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    });
    assert!(server.terminate().success());
    // Scribble over a page in the middle of the file (a disk that lost a
    // write, say): its b-tree header no longer makes sense.
    let len = std::fs::metadata(&db).unwrap().len();
    let page = 4096;
    let middle = (len / page / 2) * page;
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[middle as usize..(middle + 512) as usize] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let started = Instant::now();
    let (status, output) = binary::run(&["serve", "--config", config.to_str().unwrap()], None);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("is corrupt") && output.contains("restore it from a backup"),
        "{output}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An older release (or a loose umask) left these readable by others.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("gatehouse.db");
    let hub = common::hub::octo_hub(vec![]).await;
    let config = binary::write_config(
        dir.path(),
        &db,
        &format!(
            "[github]\napi_url = {:?}\n[[github.tokens]]\nname = \"bot\"\ntoken = \"t\"\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
            hub.url()
        ),
    );
    // Started under umask 000: nothing it makes may be open to others.
    let mut server = Server::start_with_umask(&config, 0o000);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let r = Delivery::json("push", "private-1", body)
        .send(&client, &server.base)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let backup = dir.path().join("copy.db");
    let (status, out) = binary::run(
        &[
            "backup",
            "--config",
            config.to_str().unwrap(),
            backup.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    for f in [
        "gatehouse.db",
        "gatehouse.db-wal",
        "gatehouse.db-shm",
        "gatehouse.db.lock",
        "gateway-cache.db",
    ] {
        let p = data.join(f);
        assert!(p.exists(), "{f}");
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    assert_eq!(mode(&backup), 0o600, "backup");
    assert!(server.terminate().success());
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
        Census::of_file(&cwd.path().join("gatehouse-data/gatehouse.db")).deliveries(),
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

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_answers_503_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let fs = common::tmpfs::Tmpfs::mount(&data, "2m");
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

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_wal_is_cut_back_once_no_reader_needs_it_and_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    // write_config has its own [storage]; the limit goes there.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[storage]\n",
        "[storage]\nwal_limit_bytes = 8388608\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut server = Server::start(&config);
    let client = reqwest::Client::new();
    let body = compact(&common::fixtures().join("payloads/push/payload.json"));
    let wal = dir.path().join("gatehouse.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut n = 0;
    let mut send = |count: usize| {
        let (client, base, body) = (client.clone(), server.base.clone(), body.clone());
        let first = n;
        n += count;
        async move {
            for i in first..first + count {
                let r = Delivery::json("push", &format!("w-{i}"), body.clone())
                    .send(&client, &base)
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }
    };
    // A long read (a report, a backup) pins the WAL: it cannot be reset.
    let reader = open_db(&db);
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    // 600 commits: the writer looks every 64, finds the WAL over its
    // limit each time, and says so once.
    send(600).await;
    let pinned = wal_size();
    assert!(
        pinned > 16 * 1_048_576,
        "the WAL grew past its limit: {pinned}"
    );
    let said = |what: &str| server.output().matches(what).count();
    assert_eq!(said("the WAL is over its limit"), 1, "{}", server.output());
    assert_eq!(said("back under its limit"), 0);
    // The read ends: the next look (within 64 commits) checkpoints it
    // whole, the next commit starts it over and cuts the file back to
    // the limit, and the look after says so.
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    send(192).await;
    assert_eq!(said("back under its limit"), 1, "{}", server.output());
    assert!(wal_size() < pinned / 2, "{} of {pinned}", wal_size());
    assert!(server.terminate().success());
    integrity_ok(&db);
}
