//! The real `gatehouse` binary as a child process, for what only a real
//! process shows: kill -9, SIGTERM, a second process on the same file.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Writes a config file for the binary: loopback port 0, the given journal.
pub fn write_config(dir: &Path, db: &Path, extra: &str) -> PathBuf {
    let path = dir.join("gatehouse.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = {:?}\n\n[webhooks]\nsecrets = [{:?}]\n{extra}",
            db.display().to_string(),
            super::SECRET
        ),
    )
    .unwrap();
    path
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    output: Arc<Mutex<Vec<String>>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

impl Server {
    /// Starts `gatehouse serve --config CONFIG` and waits for its listen line.
    pub fn start(config: &Path) -> Server {
        Server::start_args(&["serve", "--config", config.to_str().unwrap()], None, &[])
    }

    pub fn start_args(args: &[&str], cwd: Option<&Path>, env: &[(&str, &Path)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args).envs(env.iter().copied());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Server::spawn(cmd)
    }

    /// `gatehouse serve --config CONFIG` under this umask.
    pub fn start_with_umask(config: &Path, umask: u32) -> Server {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", config.to_str().unwrap()]);
        // SAFETY: umask(2) is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
        Server::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Server {
        cmd.env_remove("GATEHOUSE_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gatehouse");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = output.lock().unwrap().iter().find_map(|l| {
                let rest = l.split("listening on http://").nth(1)?;
                // Text or JSON logs: the address ends at a space or a quote.
                let end = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                    .unwrap_or(rest.len());
                rest[..end].parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                return Server {
                    child,
                    addr,
                    base: format!("http://{addr}"),
                    output,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "gatehouse exited before listening ({status}):\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "gatehouse did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The API gateway's address, from its start line.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.output.lock().unwrap().iter().find_map(|l| {
            let rest = l.split("API gateway serving on http://").nth(1)?;
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// kill -9: no cleanup, no final commit, exactly like a crash.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        wait_bounded(&mut self.child, Duration::from_secs(30))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only the process this test started, by its own handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `gatehouse deliveries retry --dead --route ROUTE`, as an operator
/// runs it once the consumer is fixed; it must succeed.
pub fn retry_dead(config: &Path, route: &str) {
    let (ok, out) = run(
        &[
            "deliveries",
            "retry",
            "--dead",
            "--route",
            route,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok.success(), "{out}");
}

/// `gatehouse clients add NAME --owner OWNER` through the CLI, as an
/// operator adds a client; the token it prints once.
pub fn add_client(config: &Path, name: &str, owner: &str) -> String {
    let (status, out) = run(
        &[
            "clients",
            "add",
            name,
            "--owner",
            owner,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    out.lines()
        .find(|l| l.starts_with("gth_"))
        .unwrap_or_else(|| panic!("no token printed: {out}"))
        .trim()
        .to_string()
}

/// Runs the binary to completion (bounded) and returns status and output.
pub fn run(args: &[&str], cwd: Option<&Path>) -> (ExitStatus, String) {
    run_with_input(args, cwd, None)
}

/// [`run`], with `input` on its stdin.
pub fn run_with_input(
    args: &[&str],
    cwd: Option<&Path>,
    input: Option<&str>,
) -> (ExitStatus, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        collect(child.stdout.take().unwrap(), output.clone()),
        collect(child.stderr.take().unwrap(), output.clone()),
    ];
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    // The pipes close when the process exits, so the readers end.
    for r in readers {
        r.join().unwrap();
    }
    let text = output.lock().unwrap().join("\n");
    (status, text)
}
