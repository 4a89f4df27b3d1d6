//! Gateway clients and their per-minute usage on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::clients::{ClientRow, Limits, StoredClient, Usage};

fn limits(json: &str, col: usize) -> rusqlite::Result<Limits> {
    Limits::from_json(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    })
}

/// Scopes and owners are kept as JSON arrays of strings.
fn strings(json: &str, col: usize) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    })
}

#[async_trait]
impl crate::store::Clients for Sqlite {
    async fn add_client(
        &self,
        name: &str,
        token_hash: &str,
        scopes: &[String],
        owners: &[String],
        limits: &Limits,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (name, token_hash) = (name.to_string(), token_hash.to_string());
        let limits = limits.to_json();
        let scopes = serde_json::to_string(scopes).expect("strings serialise");
        let owners = serde_json::to_string(owners).expect("strings serialise");
        let taken = self
            .write(move |tx| {
                let active: Option<Option<i64>> = tx
                    .query_row(
                        "SELECT revoked_at_ms FROM clients WHERE name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(None) = active {
                    return Ok(Some(name));
                }
                tx.execute(
                    "INSERT OR REPLACE INTO clients (name, token_hash, scopes, owners, limits, created_at_ms, revoked_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                    params![name, token_hash, scopes, owners, limits, now_ms],
                )?;
                Ok(None)
            })
            .await?;
        match taken {
            Some(name) => Err(StoreError::Invalid(format!(
                "a client named {name:?} already exists"
            ))),
            None => Ok(()),
        }
    }

    async fn revoke_client(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        let owned = name.to_string();
        let n = self
            .write(move |tx| {
                tx.execute(
                    "UPDATE clients SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
                    params![owned, now_ms],
                )
            })
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no active client named {name:?}"
            )));
        }
        Ok(())
    }

    async fn client_by_token(&self, token_hash: &str) -> Result<Option<StoredClient>, StoreError> {
        let token_hash = token_hash.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT name, scopes, owners, limits FROM clients
                 WHERE token_hash = ?1 AND revoked_at_ms IS NULL",
            )?
            .query_row([&token_hash], |r| {
                Ok(StoredClient {
                    name: r.get(0)?,
                    scopes: strings(&r.get::<_, String>(1)?, 1)?,
                    owners: strings(&r.get::<_, String>(2)?, 2)?,
                    limits: limits(&r.get::<_, String>(3)?, 3)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn clients(&self, now_ms: i64) -> Result<Vec<ClientRow>, StoreError> {
        let since = now_ms / 60_000 - 60;
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT c.name, c.scopes, c.owners, c.created_at_ms, c.revoked_at_ms, c.limits,
                        COALESCE(SUM(u.requests), 0), COALESCE(SUM(u.hits), 0),
                        COALESCE(SUM(u.revalidated), 0), COALESCE(SUM(u.misses), 0),
                        COALESCE(SUM(u.bypassed), 0), COALESCE(SUM(u.units_spent), 0),
                        COALESCE(SUM(u.units_saved), 0)
                 FROM clients c LEFT JOIN client_usage u ON u.client = c.name AND u.minute > ?1
                 GROUP BY c.name ORDER BY c.created_at_ms DESC, c.name",
            )?;
            let rows = stmt.query_map([since], |r| {
                let scopes: String = r.get(1)?;
                let owners: String = r.get(2)?;
                Ok(ClientRow {
                    name: r.get(0)?,
                    scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                    owners: serde_json::from_str(&owners).unwrap_or_default(),
                    created_at_ms: r.get(3)?,
                    revoked_at_ms: r.get(4)?,
                    limits: limits(&r.get::<_, String>(5)?, 5)?,
                    last_hour: Usage {
                        requests: r.get(6)?,
                        hits: r.get(7)?,
                        revalidated: r.get(8)?,
                        misses: r.get(9)?,
                        bypassed: r.get(10)?,
                        units_spent: r.get(11)?,
                        units_saved: r.get(12)?,
                    },
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn units_by_minute(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT client, minute, units_spent FROM client_usage
                 WHERE minute >= ?1 AND units_spent > 0",
            )?;
            let rows = stmt.query_map([since_minute], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
        .await
    }

    async fn add_usage(
        &self,
        rows: Vec<((String, i64), Usage)>,
        oldest_minute: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO client_usage (client, minute, requests, hits, revalidated,
                     misses, bypassed, units_spent, units_saved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (client, minute) DO UPDATE SET
                     requests = requests + excluded.requests,
                     hits = hits + excluded.hits,
                     revalidated = revalidated + excluded.revalidated,
                     misses = misses + excluded.misses,
                     bypassed = bypassed + excluded.bypassed,
                     units_spent = units_spent + excluded.units_spent,
                     units_saved = units_saved + excluded.units_saved",
            )?;
            for ((client, minute), u) in &rows {
                stmt.execute(params![
                    client,
                    minute,
                    u.requests,
                    u.hits,
                    u.revalidated,
                    u.misses,
                    u.bypassed,
                    u.units_spent,
                    u.units_saved
                ])?;
            }
            tx.execute(
                "DELETE FROM client_usage WHERE minute < ?1",
                [oldest_minute],
            )?;
            Ok(())
        })
        .await
    }
}
