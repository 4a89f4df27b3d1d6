//! Admin UI sessions on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::sessions::{NewSession, SEEN_GRANULARITY_MS, Session, Tally};

#[async_trait]
impl crate::store::Sessions for Sqlite {
    async fn open_session(
        &self,
        s: &NewSession,
        idle_before_ms: i64,
        max: usize,
    ) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM admin_sessions WHERE last_seen_ms < ?1",
                [idle_before_ms],
            )?;
            let live: i64 =
                tx.query_row("SELECT COUNT(*) FROM admin_sessions", [], |r| r.get(0))?;
            let over = live + 1 - max as i64;
            if over > 0 {
                tx.execute(
                    "DELETE FROM admin_sessions WHERE token_digest IN
                       (SELECT token_digest FROM admin_sessions ORDER BY last_seen_ms LIMIT ?1)",
                    [over],
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO admin_sessions
                   (token_digest, csrf, password_digest, created_at_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![
                    &s.token_digest[..],
                    s.csrf,
                    &s.password_digest[..],
                    s.now_ms
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(
        &self,
        token_digest: [u8; 32],
        now_ms: i64,
        idle_before_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        let found = self
            .read(move |c| {
                c.prepare_cached(
                    "SELECT csrf, password_digest, last_seen_ms FROM admin_sessions
                     WHERE token_digest = ?1",
                )?
                .query_row([&token_digest[..]], |r| {
                    let digest: Vec<u8> = r.get(1)?;
                    Ok(Session {
                        csrf: r.get(0)?,
                        password_digest: digest.try_into().unwrap_or([0; 32]),
                        last_seen_ms: r.get(2)?,
                    })
                })
                .optional()
            })
            .await?;
        let Some(mut s) = found else {
            return Ok(None);
        };
        if s.last_seen_ms < idle_before_ms {
            // Gone either way; a later open_session sweeps it if this fails.
            if let Err(e) = self.end_session(token_digest).await {
                tracing::debug!(error = %e, "idle admin session not deleted yet");
            }
            return Ok(None);
        }
        if now_ms - s.last_seen_ms >= SEEN_GRANULARITY_MS {
            // Best effort: an operator looking into a full disk still gets
            // the pages; the session just idles from its older mark.
            let touched = self
                .write(move |tx| {
                    tx.execute(
                        "UPDATE admin_sessions SET last_seen_ms = MAX(last_seen_ms, ?2)
                         WHERE token_digest = ?1",
                        params![&token_digest[..], now_ms],
                    )
                    .map(drop)
                })
                .await;
            match touched {
                Ok(()) => s.last_seen_ms = now_ms,
                Err(e) => tracing::debug!(error = %e, "admin session not marked seen"),
            }
        }
        Ok(Some(s))
    }

    async fn end_session(&self, token_digest: [u8; 32]) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM admin_sessions WHERE token_digest = ?1",
                [&token_digest[..]],
            )
            .map(drop)
        })
        .await
    }

    async fn tally_failure(
        &self,
        address: &str,
        tally: Tally,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>, StoreError> {
        let address = address.to_string();
        let since = now_ms - window_ms;
        if tally == Tally::Check {
            return self
                .read(move |c| over_limit(c, &address, since, limit, now_ms))
                .await;
        }
        // The writer runs one transaction at a time: check and count are
        // one step.
        self.write(move |tx| {
            tx.execute("DELETE FROM auth_failures WHERE at_ms <= ?1", [since])?;
            let over = over_limit(tx, &address, since, limit, now_ms)?;
            if over.is_none() || tally == Tally::Record {
                tx.prepare_cached("INSERT INTO auth_failures (address, at_ms) VALUES (?1, ?2)")?
                    .execute(params![address, now_ms])?;
            }
            Ok(over.filter(|_| tally == Tally::Reserve))
        })
        .await
    }

    async fn forgive_failures(&self, address: &str) -> Result<(), StoreError> {
        let address = address.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM auth_failures WHERE address = ?1", [address])
                .map(drop)
        })
        .await
    }
}

/// With `limit` or more failures from `address` since `since`, the oldest
/// one's time.
fn over_limit(
    c: &rusqlite::Connection,
    address: &str,
    since: i64,
    limit: u32,
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    let (n, oldest) = c
        .prepare_cached(
            "SELECT count(*), min(at_ms) FROM auth_failures WHERE address = ?1 AND at_ms > ?2",
        )?
        .query_row(params![address, since], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
    Ok((n >= i64::from(limit)).then(|| oldest.unwrap_or(now_ms)))
}
