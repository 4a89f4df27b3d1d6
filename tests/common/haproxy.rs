//! A real load balancer for the replica tests: Debian's haproxy, in the
//! foreground, on a loopback port, health-checking each replica's
//! `/readyz` the way the README's example does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

/// The README's example, with short checks so a test sees a replica go
/// down and come back within a second.
pub fn config(port: u16, replicas: &[u16]) -> String {
    let mut cfg = format!(
        "global
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    # A delivery is deduplicated by its GUID, so retrying one on another
    # replica is safe, even after the first may have committed it.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503

frontend webhooks
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
"
    );
    for (i, p) in replicas.iter().enumerate() {
        cfg.push_str(&format!("    server r{i} 127.0.0.1:{p} check\n"));
    }
    cfg
}

impl Haproxy {
    /// Starts haproxy in front of `replicas` and waits until it accepts
    /// connections.
    pub fn start(replicas: &[u16]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config(port, replicas)).unwrap();
        let child = Command::new(binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

fn binary() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed: scripts/test installs it from Debian")
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
