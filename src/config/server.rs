//! The `[server]` section: the webhook listener and its limits.

use std::net::SocketAddr;

use serde::Deserialize;

use super::DEFAULT_LISTEN;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Open connections beyond this wait in the kernel's backlog, so memory
    /// stays bounded under a flood.
    pub max_connections: usize,
    /// A client that has not sent its request headers by then is cut off.
    pub header_timeout_secs: u64,
    /// A request body that has not fully arrived by then gets 408.
    pub body_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Connections served at once for one client address (an IPv6 /64);
    /// past it they wait for one of that address's own, as many again may
    /// wait, and the rest are closed at once, so one address cannot take
    /// every slot. Absent = a quarter of `max_connections`; 0 = no cap.
    /// Behind a reverse proxy on this host every connection comes from its
    /// address.
    pub max_connections_per_address: Option<usize>,
    /// A body must average at least this many bytes per second after its
    /// first 5 s, or gets 408; 0 = only `body_timeout_secs` applies.
    pub min_body_bytes_per_sec: u64,
    /// Request bodies held in memory at once, across all connections
    /// (webhooks and the gateway); past it a request gets 503 with
    /// Retry-After before its body is read. Absent = sized for the machine.
    pub body_budget_bytes: Option<u64>,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout_secs: u64,
    /// Requests one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
}

/// The default body budget: a quarter of the memory this process may
/// use (the cgroup's limit, else the machine's), between 64 MiB and
/// 512 MiB.
fn machine_body_budget() -> u64 {
    const MIB: u64 = 1024 * 1024;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let memory = [meminfo, cgroup].into_iter().flatten().min();
    memory.map_or(512 * MIB, |m| (m / 4).clamp(64 * MIB, 512 * MIB))
}

impl ServerConfig {
    /// Connections served at once per client address (0 = no cap).
    pub fn per_address(&self) -> usize {
        self.max_connections_per_address
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// The budget for request bodies in memory at once.
    pub fn body_budget(&self) -> u64 {
        self.body_budget_bytes.unwrap_or_else(machine_body_budget)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            shutdown_grace_secs: 20,
            max_connections_per_address: None,
            min_body_bytes_per_sec: 1024,
            body_budget_bytes: None,
            idle_timeout_secs: 60,
            h2_max_concurrent_streams: 16,
        }
    }
}
