//! Socket activation: gatehouse serves on listeners passed the way
//! systemd passes them (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), and
//! a restart under a storm of deliveries refuses no connection and loses
//! nothing, because the socket outlives the process (systemd keeps its
//! copy; here the test does, as systemd would).

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::binary::{self, BIN};
use common::{Delivery, compact, fixtures};

/// Waits (bounded) for `child` to end.
fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    binary::wait_bounded(child, limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activate_passes_the_webhook_listener() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    // The config names another port: the passed socket wins.
    let config = binary::write_config(dir.path(), &db, "");
    let port = common::free_port();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=webhooks"])
        .arg(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (the systemd package)");
    let body = compact(&fixtures().join("payloads/push/payload.json"));
    let client = reqwest::Client::new();
    // It listens at once and starts gatehouse on the first connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match Delivery::json("push", "activated-1", body.clone())
            .send(&client, &format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "never answered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(answer.status(), 202);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait(&mut child, Duration::from_secs(30)).success());
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("listening on a socket systemd passed"),
        "{log}"
    );
    assert_eq!(common::load::journaled(&db).get("activated-1"), Some(&1));
}

/// gatehouse on the listener `fd` (as descriptor 3), as systemd starts a
/// socket-activated service.
fn start_on(fd: i32, config: &std::path::Path) -> Child {
    let mut cmd = Command::new("sh");
    // LISTEN_PID must be gatehouse's own pid: the shell's, which exec keeps.
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=webhooks exec \"$0\" \"$@\"",
    ])
    .arg(BIN)
    .args(["serve", "--config", config.to_str().unwrap()])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: dup2(2) is async-signal-safe; nothing else runs between fork
    // and exec. The copy on 3 is not close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_under_a_storm_refuses_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    // The socket, held here as systemd holds gatehouse.socket's.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", socket.local_addr().unwrap());
    let fd = socket.as_raw_fd();
    let mut first = start_on(fd, &config);

    // Eight senders, each delivery on a connection of its own (as GitHub
    // sends them), 1,200 deliveries in all, bounded in time.
    const SENDERS: usize = 8;
    const EACH: usize = 150;
    let body = Arc::new(compact(&fixtures().join("payloads/push/payload.json")));
    let sent = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (body, sent, base) = (body.clone(), sent.clone(), base.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut failures = Vec::new();
                for i in 0..EACH {
                    let guid = format!("storm-{s}-{i}");
                    match Delivery::json("push", &guid, body.to_vec())
                        .send(&client, &base)
                        .await
                    {
                        Ok(r) if r.status() == 202 => {}
                        Ok(r) => failures.push(format!("{guid}: {}", r.status())),
                        Err(e) => failures.push(format!("{guid}: {e}")),
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            })
        })
        .collect();

    // A third of the way in, the service restarts (SIGTERM, then a new
    // process on the same socket), as `systemctl restart` does.
    common::wait_until("a third of the storm", Duration::from_secs(60), || {
        sent.load(Ordering::SeqCst) >= SENDERS * EACH / 3
    })
    .await;
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert!(wait(&mut first, Duration::from_secs(30)).success());
    let during = sent.load(Ordering::SeqCst);
    let mut second = start_on(fd, &config);

    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(during < SENDERS * EACH, "the restart happened mid-storm");
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    assert!(wait(&mut second, Duration::from_secs(30)).success());
    let rows = common::load::journaled(&db);
    assert_eq!(rows.len(), SENDERS * EACH);
    assert!(
        rows.values().all(|n| *n == 1),
        "each delivery journaled once"
    );
    drop(socket);
}
