//! Gateway clients and their per-minute usage on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::clients::{
    Actor, Applied, AuditEntry, ClientRow, ClientSpec, Current, Limits, Origin, Plan, StoredClient,
    Usage, UsageLine, describe, refusal,
};

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

fn current(tx: &rusqlite::Transaction<'_>, name: Option<&str>) -> rusqlite::Result<Vec<Current>> {
    let mut stmt = tx.prepare_cached(
        "SELECT name, token_hash, scopes, owners, limits, origin, revoked_at_ms IS NULL
         FROM clients WHERE ?1 IS NULL OR name = ?1",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok(Current {
            spec: ClientSpec {
                name: r.get(0)?,
                token_hash: r.get(1)?,
                scopes: strings(&r.get::<_, String>(2)?, 2)?,
                owners: strings(&r.get::<_, String>(3)?, 3)?,
                limits: limits(&r.get::<_, String>(4)?, 4)?,
            },
            origin: Origin::parse(&r.get::<_, String>(5)?),
            active: r.get(6)?,
        })
    })?;
    rows.collect()
}

fn put(
    tx: &rusqlite::Transaction<'_>,
    spec: &ClientSpec,
    origin: Origin,
    now_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO clients (name, token_hash, scopes, owners, limits, origin, created_at_ms, revoked_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        params![
            spec.name,
            spec.token_hash,
            serde_json::to_string(&spec.scopes).expect("strings serialise"),
            serde_json::to_string(&spec.owners).expect("strings serialise"),
            spec.limits.to_json(),
            origin.as_str(),
            now_ms
        ],
    )?;
    Ok(())
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    by: &Actor,
    action: &str,
    subject: &str,
    detail: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (at_ms, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now_ms, by.label(), action, subject, detail])?;
    Ok(())
}

impl Sqlite {
    /// An operator's change to one active client (`update`: its statement
    /// and the value for `?2`), checked and logged as `action` in one
    /// transaction.
    async fn change_one(
        &self,
        name: &str,
        by: &Actor,
        now_ms: i64,
        update: (&'static str, rusqlite::types::Value),
        (action, detail): (&'static str, &'static str),
    ) -> Result<(), StoreError> {
        let (name, by) = (name.to_string(), by.clone());
        self.write(move |tx| {
            if let Some(e) = refusal(&current(tx, Some(&name))?, &name, &by) {
                return Ok(Err(e));
            }
            tx.execute(update.0, params![name, update.1])?;
            audit(tx, &by, action, &name, detail, now_ms)?;
            Ok(Ok(()))
        })
        .await?
    }
}

#[async_trait]
impl crate::store::Clients for Sqlite {
    async fn add_client(
        &self,
        spec: &ClientSpec,
        by: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (spec, by) = (spec.clone(), by.clone());
        let taken = self
            .write(move |tx| {
                if current(tx, Some(&spec.name))?.iter().any(|c| c.active) {
                    return Ok(Some(spec.name));
                }
                put(tx, &spec, by.origin, now_ms)?;
                audit(tx, &by, "add", &spec.name, &describe(&spec), now_ms)?;
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

    async fn revoke_client(&self, name: &str, by: &Actor, now_ms: i64) -> Result<(), StoreError> {
        let sql = "UPDATE clients SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL";
        self.change_one(name, by, now_ms, (sql, now_ms.into()), ("revoke", ""))
            .await
    }

    async fn rotate_client(
        &self,
        name: &str,
        token_hash: &str,
        by: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE clients SET token_hash = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL";
        let hash = rusqlite::types::Value::Text(token_hash.to_string());
        self.change_one(name, by, now_ms, (sql, hash), ("rotate", "new token"))
            .await
    }

    async fn apply_client_file(
        &self,
        specs: &[ClientSpec],
        by: &Actor,
        now_ms: i64,
    ) -> Result<Applied, StoreError> {
        let (specs, by) = (specs.to_vec(), by.clone());
        self.write(move |tx| {
            let plan = match Plan::new(&specs, &current(tx, None)?) {
                Ok(plan) => plan,
                Err(why) => return Ok(Err(StoreError::Invalid(why))),
            };
            let mut applied = Applied { unchanged: plan.unchanged, ..Applied::default() };
            for spec in &plan.add {
                put(tx, spec, Origin::File, now_ms)?;
                audit(tx, &by, "add", &spec.name, &describe(spec), now_ms)?;
                applied.added.push(spec.name.clone());
            }
            for (spec, what) in &plan.change {
                tx.execute(
                    "UPDATE clients SET token_hash = ?2, scopes = ?3, owners = ?4, limits = ?5
                     WHERE name = ?1 AND revoked_at_ms IS NULL",
                    params![
                        spec.name,
                        spec.token_hash,
                        serde_json::to_string(&spec.scopes).expect("strings serialise"),
                        serde_json::to_string(&spec.owners).expect("strings serialise"),
                        spec.limits.to_json()
                    ],
                )?;
                audit(tx, &by, "change", &spec.name, what, now_ms)?;
                applied.changed.push(spec.name.clone());
            }
            for name in &plan.revoke {
                tx.execute(
                    "UPDATE clients SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
                    params![name, now_ms],
                )?;
                audit(tx, &by, "revoke", name, "no longer in the clients file", now_ms)?;
                applied.revoked.push(name.clone());
            }
            Ok(Ok(applied))
        })
        .await?
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ms, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    subject: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
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
                "SELECT c.name, c.scopes, c.owners, c.created_at_ms, c.revoked_at_ms, c.limits, c.origin,
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
                    origin: Origin::parse(&r.get::<_, String>(6)?),
                    last_hour: Usage {
                        requests: r.get(7)?,
                        hits: r.get(8)?,
                        revalidated: r.get(9)?,
                        misses: r.get(10)?,
                        bypassed: r.get(11)?,
                        units_spent: r.get(12)?,
                        units_saved: r.get(13)?,
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
        lines: Vec<UsageLine>,
        oldest_minute: i64,
        oldest_line_minute: i64,
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
            let mut stmt = tx.prepare_cached(
                "INSERT INTO gateway_usage (minute, client, owner, route, credential, refused_by,
                     requests, units_spent, units_saved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (minute, client, owner, route, credential, refused_by) DO UPDATE SET
                     requests = requests + excluded.requests,
                     units_spent = units_spent + excluded.units_spent,
                     units_saved = units_saved + excluded.units_saved",
            )?;
            for l in &lines {
                stmt.execute(params![
                    l.minute,
                    l.client,
                    l.owner,
                    l.route,
                    l.credential,
                    l.refused_by,
                    l.requests,
                    l.units_spent,
                    l.units_saved
                ])?;
            }
            tx.execute(
                "DELETE FROM gateway_usage WHERE minute < ?1",
                [oldest_line_minute],
            )?;
            Ok(())
        })
        .await
    }

    async fn usage_lines(&self, since_minute: i64) -> Result<Vec<UsageLine>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT client, owner, route, credential, refused_by,
                        SUM(requests), SUM(units_spent), SUM(units_saved)
                 FROM gateway_usage WHERE minute >= ?1
                 GROUP BY client, owner, route, credential, refused_by",
            )?;
            let rows = stmt.query_map([since_minute], |r| {
                Ok(UsageLine {
                    minute: since_minute,
                    client: r.get(0)?,
                    owner: r.get(1)?,
                    route: r.get(2)?,
                    credential: r.get(3)?,
                    refused_by: r.get(4)?,
                    requests: r.get(5)?,
                    units_spent: r.get(6)?,
                    units_saved: r.get(7)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn owner_minutes(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64, i64)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT owner, minute, SUM(units_spent), SUM(units_saved)
                 FROM gateway_usage WHERE minute >= ?1 AND owner <> '' AND refused_by = ''
                 GROUP BY owner, minute ORDER BY owner, minute",
            )?;
            let rows = stmt.query_map([since_minute], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .await
    }
}
