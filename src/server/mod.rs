//! The HTTP listener: an accept loop with a connection cap (in all and per
//! client address), a deadline for the first byte, an idle timeout for
//! kept-alive connections, small HTTP/2 limits, and graceful shutdown that
//! lets in-flight requests finish (each may be waiting on a journal
//! commit).

pub mod activation;
pub mod body;
pub mod metrics;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::server::metrics::ListenerMetrics;
use crate::shutdown;

pub struct Limits {
    pub max_connections: usize,
    /// Open connections one client address may hold; 0 = no cap.
    pub max_per_address: usize,
    pub header_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    pub h2_max_streams: u32,
    pub shutdown_grace: Duration,
}

/// HTTP/2 header blocks larger than this are refused: GitHub's and API
/// clients' headers are a few KB.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// An HTTP/2 peer that does not answer a ping in this long is gone.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle connection being closed gracefully may take.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Connections per client address. An address past its cap waits for one
/// of its own connections to close (a burst from one busy client is
/// queued, not refused), and as many again may wait; past that its new
/// connections are closed at once. IPv6 addresses count per /64, the
/// block one host usually holds.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, Arc<AddressState>>>);

struct AddressState {
    slots: Arc<Semaphore>,
    /// Connections holding or waiting for a slot.
    users: AtomicUsize,
}

/// One connection's claim on its address; given back when dropped.
struct AddressSlot {
    map: Arc<PerAddress>,
    key: IpAddr,
    state: Arc<AddressState>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl PerAddress {
    /// Counts a connection from `ip`; None when the address already has
    /// `cap` connections and `cap` more waiting.
    fn enter(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut map = self.0.lock().expect("per-address lock");
        let state = map
            .entry(key)
            .or_insert_with(|| {
                Arc::new(AddressState {
                    slots: Arc::new(Semaphore::new(cap)),
                    users: AtomicUsize::new(0),
                })
            })
            .clone();
        if state.users.load(Ordering::SeqCst) >= cap.saturating_mul(2) {
            return None;
        }
        state.users.fetch_add(1, Ordering::SeqCst);
        Some(AddressSlot {
            map: self.clone(),
            key,
            state,
            held: None,
        })
    }
}

impl AddressSlot {
    /// Waits (up to `limit`) until the address has a free slot.
    async fn take(&mut self, limit: Duration) -> bool {
        let slots = self.state.slots.clone();
        match tokio::time::timeout(limit, slots.acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.held = Some(permit);
                true
            }
            _ => false,
        }
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.held.take();
        let mut map = self.map.0.lock().expect("per-address lock");
        if self.state.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            map.remove(&self.key);
        }
    }
}

/// Requests in flight on one connection and when the last one ended, so
/// an idle connection can be told from a busy one.
struct Activity {
    active: AtomicUsize,
    /// Requests begun on this connection, ever.
    started: AtomicUsize,
    /// Milliseconds since `born` when a request last ended.
    last_ms: AtomicU64,
    born: Instant,
}

struct InFlight(Arc<Activity>);

impl Activity {
    fn enter(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When to look again whether the connection is idle: `idle` after
    /// its last request ended, or, while one is in flight, `idle` from now.
    fn next_check(&self, idle: Duration) -> Instant {
        if self.active.load(Ordering::SeqCst) > 0 {
            return Instant::now() + idle;
        }
        self.born + Duration::from_millis(self.last_ms.load(Ordering::SeqCst)) + idle
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.active.load(Ordering::SeqCst) == 0 && self.next_check(idle) <= Instant::now()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms
            .store(a.born.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a connection accepted just before shutdown looks whether its
/// first request has begun.
const FIRST_REQUEST_POLL: Duration = Duration::from_millis(5);

/// Serves `router` on `listener` until `stop` turns true, then stops
/// accepting, waits up to the grace period for open requests, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: ListenerMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(H2_PING_TIMEOUT);

    loop {
        // Past the cap, new connections wait in the kernel's backlog
        // instead of costing us memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = shutdown::requested(&mut stop) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown::requested(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One address may not take every slot: past its share its new
        // connections wait for its own to close, and past twice its share
        // they are closed at once; other addresses keep theirs.
        let address_slot = match limits.max_per_address {
            0 => None,
            cap => match per_address.enter(peer.ip(), cap) {
                Some(slot) => Some(slot),
                None => {
                    metrics.refused("per_address");
                    tracing::debug!(%peer, "connection refused: too many from this address");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity {
            active: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            born: Instant::now(),
        });
        // Handlers that care who is asking (throttles) read the peer
        // address as axum's ConnectInfo; every request is counted in
        // flight until its answer is ready.
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let in_flight = activity.enter();
                let answer = router.clone().oneshot(req);
                async move {
                    let r = answer.await;
                    drop(in_flight);
                    r
                }
            })
        };
        let service = TowerToHyperService::new(service);
        let (builder, mut stop) = (builder.clone(), stop.clone());
        let (first_byte, idle) = (limits.header_timeout, limits.idle_timeout);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut address_slot = address_slot;
            if let Some(slot) = address_slot.as_mut()
                && !slot.take(first_byte).await
            {
                metrics.refused("per_address");
                tracing::debug!(%peer, "connection closed: waited too long behind this address's others");
                return;
            }
            let _open = metrics.open();
            // hyper's header deadline starts once a request begins; a
            // connection that never sends a byte would hold its slot
            // forever, so it gets the same deadline for its first byte.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "connection sent nothing in time; closed");
                    drop((permit, address_slot));
                    return;
                }
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            tokio::pin!(conn);
            let mut closing = false;
            // Shutting down before its first request was read: hyper would
            // close it unanswered, so it is closed after that request (its
            // bytes are here: it was peeked), at most `first_byte` later.
            let mut first_request_by: Option<Instant> = None;
            // An idle HTTP/2 peer may never answer the ping that ends a
            // graceful close; past this it is cut off.
            let mut cut_at = None;
            loop {
                let check_at = activity.next_check(idle);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // Kept alive with nothing to do: close it, so idle
                    // connections cannot hold every slot.
                    _ = tokio::time::sleep_until(check_at), if !closing => {
                        if activity.idle_for(idle) {
                            tracing::debug!(%peer, "idle connection closed");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                            cut_at = Some(Instant::now() + IDLE_CLOSE_GRACE);
                        }
                    }
                    _ = sleep_until(cut_at) => {
                        tracing::debug!(%peer, "idle connection did not close in time; cut off");
                        break;
                    }
                    _ = shutdown::requested(&mut stop), if !closing && first_request_by.is_none() => {
                        if activity.started.load(Ordering::SeqCst) > 0 {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        } else {
                            first_request_by = Some(Instant::now() + first_byte);
                        }
                    }
                    _ = tokio::time::sleep(FIRST_REQUEST_POLL), if !closing && first_request_by.is_some() => {
                        if activity.started.load(Ordering::SeqCst) > 0
                            || first_request_by.is_some_and(|t| Instant::now() >= t)
                        {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
            drop((permit, address_slot));
        });
    }
    drop(listener);
    // Every connection holds a slot until it has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace_secs = limits.shutdown_grace.as_secs(), "shutdown grace expired with connections still open");
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
