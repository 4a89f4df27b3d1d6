//! systemd/gatehouse.service: it verifies, it rates OK or better, and the
//! binary speaks the `Type=notify` protocol it promises.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::binary::{self, BIN, Server};

/// The unit with ExecStart pointing at the binary under test (verify checks
/// that the executable exists).
fn unit_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/gatehouse.service"
    ))
    .unwrap();
    let path = dir.join("gatehouse.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gatehouse", BIN)).unwrap();
    // Its socket beside it (the service wants it).
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/gatehouse.socket"),
        dir.join("gatehouse.socket"),
    )
    .unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .arg(dir.path().join("gatehouse.socket"))
        .output()
        .expect("systemd-analyze is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "verify warnings: {stderr}");
}

#[test]
fn unit_security_exposure_is_ok_or_better() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    // 49 on systemd's 0-100 scale is the top of "OK"; worse fails the run.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=49", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let verdict = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .expect("a verdict line");
    assert!(
        ["OK", "SAFE", "PERFECT"]
            .iter()
            .any(|r| verdict.contains(r)),
        "{verdict}"
    );
}

#[test]
fn binary_notifies_ready_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let config = binary::write_config(dir.path(), &dir.path().join("g.db"), "");
    let mut server = Server::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        None,
        &[("NOTIFY_SOCKET", &socket_path)],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 arrives");
    assert_eq!(&buf[..n], b"READY=1");
    // READY comes after the listener is bound: the health check answers.
    let health = std::net::TcpStream::connect(server.addr);
    assert!(health.is_ok());
    // systemctl reload: RELOADING=1, then READY=1 once the config is read
    // again.
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    let n = socket.recv(&mut buf).expect("RELOADING=1 arrives");
    assert_eq!(&buf[..n], b"RELOADING=1");
    let n = socket
        .recv(&mut buf)
        .expect("READY=1 arrives after the reload");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(server.terminate().success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 arrives");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// `WatchdogSec=`: WATCHDOG=1 comes every half period while the writer
/// commits; a writer stalled behind another process's write transaction
/// (an operator's `sqlite3` session left open, say) stops the pings within
/// the period, and they resume once it can commit again.
#[test]
fn watchdog_pings_stop_while_the_writer_is_stalled_and_resume_after() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let db = dir.path().join("g.db");
    let config = binary::write_config(dir.path(), &db, "");
    let period = Duration::from_secs(1);
    let mut server = Server::start_args(
        &["serve", "--config", config.to_str().unwrap()],
        None,
        &[
            ("NOTIFY_SOCKET", &socket_path),
            ("WATCHDOG_USEC", std::path::Path::new("1000000")),
        ],
    );
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pings, done) = (pings.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = socket.recv(&mut buf)
                    && &buf[..n] == b"WATCHDOG=1"
                {
                    pings.lock().unwrap().push(Instant::now());
                }
            }
        })
    };
    let count = || pings.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() < 3 {
        assert!(Instant::now() < deadline, "no watchdog pings");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Another process takes the database's write lock and keeps it.
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.busy_timeout(Duration::from_secs(10)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stalled_at = Instant::now();
    std::thread::sleep(3 * period);
    let late: Vec<Duration> = pings
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > stalled_at + period)
        .map(|t| t.duration_since(stalled_at))
        .collect();
    assert!(
        late.is_empty(),
        "pings went on while the writer stalled: {late:?}"
    );

    // Released: the writer commits again, and the pings resume.
    blocker.execute_batch("ROLLBACK").unwrap();
    let released_at = Instant::now();
    let deadline = released_at + Duration::from_secs(20);
    while !pings.lock().unwrap().iter().any(|t| *t > released_at) {
        assert!(Instant::now() < deadline, "pings did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.terminate().success());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
}
