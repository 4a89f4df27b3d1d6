//! Request bodies, read under three bounds: a size limit per request, a
//! memory budget shared by every body in flight (so a flood of large
//! uploads is refused with 503 before it is read, instead of growing the
//! process by gigabytes), and a pace: a total deadline plus a minimum rate,
//! so a client trickling bytes cannot hold a connection for the whole
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget is counted in KiB: tokio's semaphore counts in u32.
const UNIT: u64 = 1024;
/// A body of unknown length reserves budget this much at a time.
const STEP: u64 = 64 * UNIT;
/// A body is not held to the minimum rate during its first seconds
/// (connection setup, a slow start).
pub const RATE_GRACE: Duration = Duration::from_secs(5);

/// Bytes of request bodies that may be held in memory at once, across
/// every connection and listener.
#[derive(Clone)]
pub struct Budget {
    units: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let total = bytes.div_ceil(UNIT).min(u64::from(u32::MAX)) as usize;
        Budget {
            units: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.total as u64 * UNIT
    }

    /// Bytes reserved by bodies now.
    pub fn in_use(&self) -> u64 {
        (self.total - self.units.available_permits()) as u64 * UNIT
    }

    fn reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
        self.units.clone().try_acquire_many_owned(units).ok()
    }
}

/// How one listener reads bodies.
#[derive(Clone)]
pub struct Limits {
    pub max_bytes: u64,
    pub budget: Budget,
    /// The whole body must have arrived by then.
    pub deadline: Duration,
    /// After [`RATE_GRACE`], the body must have averaged at least this
    /// many bytes per second; 0 = no minimum.
    pub min_rate: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("payload exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("too many request bodies in flight; retry shortly")]
    Busy,
    #[error("request body did not arrive in time")]
    Timeout,
    #[error("request body arrived too slowly (under {min_rate} bytes/s)")]
    TooSlow { min_rate: u64 },
    #[error("could not read request body: {0}")]
    Read(String),
}

/// A body read whole, with the share of the budget it holds until dropped
/// (keep it until the body is no longer needed: journaled, sent upstream).
pub struct Read {
    pub bytes: Bytes,
    _held: Vec<OwnedSemaphorePermit>,
}

impl Read {
    pub fn into_parts(self) -> (Bytes, Held) {
        (self.bytes, Held(self._held))
    }
}

/// Budget held by a body whose bytes moved elsewhere.
pub struct Held(#[allow(dead_code)] Vec<OwnedSemaphorePermit>);

/// The declared length, if any. A length over the limit is refused before
/// a single body byte is read.
pub fn declared(headers: &http::HeaderMap, limit: u64) -> Result<Option<u64>, BodyError> {
    let len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    match len {
        Some(n) if n > limit => Err(BodyError::TooLarge { limit }),
        other => Ok(other),
    }
}

/// Reads `body` under `limits`. A declared length is reserved from the
/// budget at once (refused with [`BodyError::Busy`] when it does not fit,
/// before anything is read); a body of unknown length reserves as it
/// grows.
pub async fn read(body: Body, declared: Option<u64>, limits: &Limits) -> Result<Read, BodyError> {
    let mut held = Vec::new();
    let mut reserved = 0u64;
    if let Some(n) = declared.filter(|n| *n > 0) {
        held.push(limits.budget.reserve(n).ok_or(BodyError::Busy)?);
        reserved = n.div_ceil(UNIT) * UNIT;
    }
    let started = Instant::now();
    let hard = started + limits.deadline;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limits.max_bytes) as usize);
    let mut body = body;
    loop {
        // The latest moment the next bytes may arrive and still keep the
        // average at min_rate.
        let paced = (limits.min_rate > 0).then(|| {
            started
                + RATE_GRACE
                + Duration::from_secs_f64(buf.len() as f64 / limits.min_rate as f64)
        });
        let until = paced.map_or(hard, |p| p.min(hard));
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(frame)) => frame.map_err(|e| BodyError::Read(e.to_string()))?,
            Ok(None) => break,
            Err(_) if until == hard => return Err(BodyError::Timeout),
            Err(_) => {
                return Err(BodyError::TooSlow {
                    min_rate: limits.min_rate,
                });
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = (buf.len() + data.len()) as u64;
        if len > limits.max_bytes {
            return Err(BodyError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        while len > reserved {
            held.push(limits.budget.reserve(STEP).ok_or(BodyError::Busy)?);
            reserved += STEP;
        }
        buf.extend_from_slice(&data);
    }
    Ok(Read {
        bytes: buf.freeze(),
        _held: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: u64) -> Limits {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            budget: Budget::new(budget),
            deadline: Duration::from_secs(60),
            min_rate: 0,
        }
    }

    #[tokio::test]
    async fn a_declared_body_reserves_its_length_until_dropped() {
        let l = limits(3 * 1024 * 1024);
        let body = vec![7u8; 2 * 1024 * 1024];
        let first = read(Body::from(body.clone()), Some(body.len() as u64), &l)
            .await
            .unwrap();
        assert_eq!(first.bytes.len(), body.len());
        assert_eq!(l.budget.in_use(), 2 * 1024 * 1024);
        let refused = read(Body::from(body.clone()), Some(body.len() as u64), &l).await;
        assert!(matches!(refused, Err(BodyError::Busy)));
        drop(first);
        assert_eq!(l.budget.in_use(), 0);
        assert!(
            read(Body::from(body.clone()), Some(body.len() as u64), &l)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_undeclared_body_reserves_as_it_grows() {
        let l = limits(256 * 1024);
        let small = read(Body::from(vec![1u8; 100_000]), None, &l)
            .await
            .unwrap();
        assert!(l.budget.in_use() >= 100_000);
        let big = read(Body::from(vec![1u8; 200_000]), None, &l).await;
        assert!(matches!(big, Err(BodyError::Busy)));
        drop(small);
        assert_eq!(l.budget.in_use(), 0, "a refused body gives its share back");
    }
}
