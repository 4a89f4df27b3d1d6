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
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
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
    assert!(server.terminate().success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 arrives");
    assert_eq!(&buf[..n], b"STOPPING=1");
}
