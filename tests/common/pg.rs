//! A throwaway PostgreSQL cluster from the machine's packages: `initdb`
//! (as the `postgres` user when we are root: it refuses root) in a temp
//! directory, started on a free loopback port, stopped by pid when the
//! test drops it. About a second to start. If it cannot start, the test
//! fails: nothing here skips.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// Debian keeps the server's programs in /usr/lib/postgresql/N/bin.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a server program, as `postgres` when we are root.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let exe = bin.join(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .output()
    } else {
        Command::new(&exe).args(args).output()
    }
    .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_ctl start` on loopback `port`, sockets and log in `dir` (pg_ctl
/// keeps a first start's options for `restart`, not for `start`).
fn start(bin: &Path, dir: &Path, port: u16) {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
        dir.display()
    );
    run(
        bin,
        "pg_ctl",
        &[
            "-D",
            data.to_str().unwrap(),
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "30",
            "start",
        ],
    );
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let owner = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owner.success(), "chown of the cluster's directory");
        }
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "gatehouse",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = super::free_port();
        start(&bin, dir.path(), port);
        Cluster { dir, bin, port }
    }

    /// A URL for the cluster's default database.
    pub fn url(&self) -> String {
        format!("postgres://gatehouse@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        format!("postgres://gatehouse@127.0.0.1:{}/{name}", self.port)
    }

    /// Restarts the server at once (`-m immediate`: no shutdown
    /// checkpoint, as a crash would leave it).
    pub fn restart_immediate(&self) {
        let data = self.dir.path().join("data");
        // With a log file: else the new server keeps pg_ctl's output
        // open, and waiting for it never ends.
        let log = self.dir.path().join("server.log");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "restart",
            ],
        );
    }
}

impl Cluster {
    /// Stops the server at once, as a crash would.
    pub fn stop_immediate(&self) {
        let data = self.dir.path().join("data");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts a stopped server again, on the same port.
    pub fn start_again(&self) {
        start(&self.bin, self.dir.path(), self.port);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let exe = self.bin.join("pg_ctl");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .status()
        } else {
            Command::new(&exe).args(args).status()
        };
    }
}
