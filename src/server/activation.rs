//! Socket activation (sd_listen_fds(3)): listeners systemd opened and
//! passed as file descriptors 3, 4, ... (`LISTEN_FDS`, for the process
//! `LISTEN_PID`, named by `LISTEN_FDNAMES`). systemd keeps its copy open
//! while the service restarts, so connections wait in the kernel's queue
//! instead of being refused. A descriptor named `admin` or `gateway`
//! serves that listener; the first other one serves webhooks. Without
//! them, each listener is bound from the config as before.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first descriptor systemd passes.
const FIRST_FD: RawFd = 3;

/// Passed listeners not yet taken, by name; read from the environment
/// once per process (a second server in one process binds its own).
static PASSED: Mutex<Option<Vec<(String, std::net::TcpListener)>>> = Mutex::new(None);

/// Reads the passed descriptors on first use.
fn passed() -> std::sync::MutexGuard<'static, Option<Vec<(String, std::net::TcpListener)>>> {
    let mut guard = PASSED.lock().expect("passed listeners lock");
    if guard.is_none() {
        *guard = Some(read_env());
    }
    guard
}

fn read_env() -> Vec<(String, std::net::TcpListener)> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .unwrap_or(0);
    if !for_us || count <= 0 {
        return Vec::new();
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for i in 0..count {
        let fd = FIRST_FD + i;
        let name = names.get(i as usize).cloned().unwrap_or_default();
        if !is_stream_socket(fd) {
            tracing::warn!(
                fd,
                name,
                "a passed descriptor is not a listening stream socket; ignored"
            );
            continue;
        }
        // SAFETY: systemd passed `fd` to this process (LISTEN_PID) for it
        // to own; it is taken once (PASSED), so nothing else closes it.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        // Not inherited by anything this process starts.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        out.push((name, listener));
    }
    out
}

fn is_stream_socket(fd: RawFd) -> bool {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    ok && kind == libc::SOCK_STREAM
}

/// Which listener a passed descriptor serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Webhooks,
    Admin,
    Gateway,
}

impl Role {
    fn wants(self, name: &str) -> bool {
        match self {
            Role::Admin => name == "admin",
            Role::Gateway => name == "gateway",
            // systemd names an unnamed socket after its unit.
            Role::Webhooks => name != "admin" && name != "gateway",
        }
    }
}

/// The passed listener for `role`, if systemd passed one (taken: a second
/// call for the same role gets None).
pub fn take(role: Role) -> Option<tokio::net::TcpListener> {
    let mut guard = passed();
    let list = guard.as_mut().expect("read above");
    let at = list.iter().position(|(name, _)| role.wants(name))?;
    let (name, std) = list.remove(at);
    if let Err(e) = std.set_nonblocking(true) {
        tracing::warn!(error = %e, name, "cannot use a passed socket");
        return None;
    }
    match tokio::net::TcpListener::from_std(std) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, name, "cannot use a passed socket");
            None
        }
    }
}

/// The listener for `role`: systemd's when it passed one (logged, with
/// the configured address it replaces), else bound at `addr`.
pub async fn listen(
    role: Role,
    addr: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::TcpListener, bool)> {
    if let Some(l) = take(role) {
        let at = l.local_addr()?;
        tracing::info!(listener = ?role, %at, configured = %addr, "listening on a socket systemd passed (socket activation)");
        return Ok((l, true));
    }
    Ok((tokio::net::TcpListener::bind(addr).await?, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_choose_the_listener() {
        assert!(Role::Webhooks.wants("gatehouse.socket"));
        assert!(Role::Webhooks.wants(""));
        assert!(Role::Webhooks.wants("webhooks"));
        assert!(!Role::Webhooks.wants("admin"));
        assert!(Role::Admin.wants("admin") && !Role::Admin.wants("webhooks"));
        assert!(Role::Gateway.wants("gateway"));
    }
}
