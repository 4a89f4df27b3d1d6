//! Work notices across replicas: after an append commits, its (sink,
//! partition) pairs are announced with NOTIFY (after the commit, never in
//! the ingest transaction: it would serialise commits); every replica
//! LISTENs on its own connection and hands them to its scheduler. A
//! notification sent while a replica's LISTEN connection was down is
//! lost, so after every (re)connect the listener announces every partition
//! that has due work: the rescan that catches what was missed.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::store::WorkNotice;

pub const CHANNEL: &str = "gatehouse_work";
/// NOTIFY payloads must stay under 8,000 bytes.
const PAYLOAD_MAX: usize = 7_000;

/// The payloads announcing `pairs`: `sink\tpartition` lines, split to fit.
pub fn payloads(pairs: &[WorkNotice]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (sink, partition) in pairs {
        let line = format!("{sink}\t{partition}\n");
        if !cur.is_empty() && cur.len() + line.len() > PAYLOAD_MAX {
            out.push(std::mem::take(&mut cur));
        }
        cur.push_str(&line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse(payload: &str) -> impl Iterator<Item = WorkNotice> + '_ {
    payload.lines().filter_map(|l| {
        let (sink, partition) = l.split_once('\t')?;
        Some((sink.to_string(), partition.to_string()))
    })
}

/// Listens until `tx` has no receiver, reconnecting with a growing pause;
/// after each connect, announces every partition with due work.
pub async fn listen(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    pool: Pool,
    tx: mpsc::UnboundedSender<WorkNotice>,
    heard: prometheus_client::metrics::counter::Counter,
) {
    let mut pause = Duration::from_millis(100);
    while !tx.is_closed() {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                pause = Duration::from_millis(100);
                let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                let listening = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    rescan(&pool, &tx).await;
                    Ok::<_, tokio_postgres::Error>(())
                };
                // The connection must be polled for LISTEN to complete.
                let mut listening = std::pin::pin!(listening);
                let mut ready = false;
                loop {
                    tokio::select! {
                        done = &mut listening, if !ready => {
                            if let Err(e) = done {
                                tracing::warn!(error = %e, "LISTEN failed");
                                break;
                            }
                            ready = true;
                        }
                        m = messages.next() => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                heard.inc();
                                for notice in parse(n.payload()) {
                                    if tx.send(notice).is_err() {
                                        return;
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the LISTEN connection dropped; reconnecting");
                                break;
                            }
                            None => break,
                        },
                        _ = tx.closed() => return,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for work; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tx.closed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Announces every (sink, partition) with pending work.
async fn rescan(pool: &Pool, tx: &mpsc::UnboundedSender<WorkNotice>) {
    let Ok(client) = pool.get().await else {
        return;
    };
    let rows = client
        .query(
            "SELECT DISTINCT sink, partition_key FROM jobs WHERE state = 'pending'",
            &[],
        )
        .await;
    for r in rows.into_iter().flatten() {
        let _ = tx.send((r.get(0), r.get(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_fit_a_notify_and_read_back() {
        let pairs: Vec<WorkNotice> = (0..2_000)
            .map(|i| ("ci".to_string(), format!("org-{i}")))
            .collect();
        let out = payloads(&pairs);
        assert!(out.len() > 1 && out.iter().all(|p| p.len() <= PAYLOAD_MAX));
        let back: Vec<WorkNotice> = out
            .iter()
            .flat_map(|p| parse(p).collect::<Vec<_>>())
            .collect();
        assert_eq!(back, pairs);
        assert!(payloads(&[]).is_empty());
    }
}
