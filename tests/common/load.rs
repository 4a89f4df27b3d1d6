//! Load for the process-level tests: many senders of real payloads, and
//! what the database file holds afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Delivery, compact, open_db, payload_files};

/// Real payloads, compacted, cycled through by the load loops.
pub fn bodies() -> Arc<Vec<(String, Vec<u8>)>> {
    Arc::new(
        payload_files()
            .iter()
            .map(|(e, p)| (e.clone(), compact(p)))
            .collect(),
    )
}

pub struct Load {
    pub acked: Vec<String>,
    pub failed: usize,
}

/// Sends `total` deliveries from `connections` concurrent senders; calls
/// `on_ack` with the running count after each 2xx. Bounded by count and by
/// a 120 s deadline.
pub async fn drive(
    base: &str,
    total: usize,
    connections: usize,
    prefix: &str,
    on_ack: impl Fn(usize) + Send + Sync + 'static,
) -> Load {
    let bodies = bodies();
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let on_ack = Arc::new(on_ack);
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, next, acks, acked, failed, on_ack, client, base, prefix) = (
            bodies.clone(),
            next.clone(),
            acks.clone(),
            acked.clone(),
            failed.clone(),
            on_ack.clone(),
            client.clone(),
            base.to_string(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total || Instant::now() > deadline {
                    break;
                }
                let (event, body) = &bodies[i % bodies.len()];
                let guid = format!("{prefix}-{i}");
                match Delivery::json(event, &guid, body.clone())
                    .send(&client, &base)
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push(guid);
                        on_ack(acks.fetch_add(1, Ordering::SeqCst) + 1);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    Load {
        acked,
        failed: failed.load(Ordering::SeqCst),
    }
}

/// GUID → number of journal rows, read from the database file.
pub fn journaled(db: &Path) -> HashMap<String, i64> {
    let conn = open_db(db);
    let mut stmt = conn
        .prepare("SELECT guid, count(*) FROM deliveries GROUP BY guid")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub fn integrity_ok(db: &Path) {
    let conn = open_db(db);
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
}
