//! Gateway clients and their usage, and admin sessions, on PostgreSQL:
//! shared, so a client added or revoked, or a login, holds on every
//! replica at once.

use async_trait::async_trait;

use super::{Postgres, read_err, write_err};
use crate::store::StoreError;
use crate::store::clients::{
    Actor, Applied, AuditEntry, ClientRow, ClientSpec, Current, Limits, Origin, Plan, StoredClient,
    Usage, UsageLine, describe, refusal,
};
use crate::store::sessions::{NewSession, SEEN_GRANULARITY_MS, Session, Tally};

fn limits(json: &str) -> Result<Limits, StoreError> {
    Limits::from_json(json).map_err(|e| StoreError::Read(format!("a client's limits: {e}")))
}

/// Scopes and owners are kept as JSON arrays of strings.
fn strings(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Read(format!("a stored list: {e}")))
}

/// Every change to clients takes this lock first: replicas applying
/// their clients file at once, or an operator beside them, see each
/// other's changes whole.
const CLIENTS_LOCK: i64 = 0x6761_7465_636c_6e74; // "gatecInt"

async fn locked(tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLIENTS_LOCK])
        .await
        .map_err(write_err)?;
    Ok(())
}

async fn current(
    tx: &tokio_postgres::Transaction<'_>,
    name: Option<&str>,
) -> Result<Vec<Current>, StoreError> {
    let rows = tx
        .query(
            "SELECT name, token_hash, scopes, owners, limits, origin, revoked_at_ms IS NULL
             FROM clients WHERE $1::TEXT IS NULL OR name = $1",
            &[&name],
        )
        .await
        .map_err(read_err)?;
    rows.iter()
        .map(|r| {
            Ok(Current {
                spec: ClientSpec {
                    name: r.get(0),
                    token_hash: r.get(1),
                    scopes: strings(r.get(2))?,
                    owners: strings(r.get(3))?,
                    limits: limits(r.get(4))?,
                },
                origin: Origin::parse(r.get(5)),
                active: r.get(6),
            })
        })
        .collect()
}

async fn put(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &ClientSpec,
    origin: Origin,
    now_ms: i64,
) -> Result<(), StoreError> {
    let scopes = serde_json::to_string(&spec.scopes).expect("strings serialise");
    let owners = serde_json::to_string(&spec.owners).expect("strings serialise");
    tx.execute(
        "INSERT INTO clients (name, token_hash, scopes, owners, limits, origin, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash,
             scopes = excluded.scopes, owners = excluded.owners, limits = excluded.limits,
             origin = excluded.origin, created_at_ms = excluded.created_at_ms,
             revoked_at_ms = NULL",
        &[
            &spec.name,
            &spec.token_hash,
            &scopes,
            &owners,
            &spec.limits.to_json(),
            &origin.as_str(),
            &now_ms,
        ],
    )
    .await
    .map_err(write_err)?;
    Ok(())
}

async fn audit(
    tx: &tokio_postgres::Transaction<'_>,
    by: &Actor,
    action: &str,
    subject: &str,
    detail: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_log (at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&now_ms, &by.label(), &action, &subject, &detail],
    )
    .await
    .map_err(write_err)?;
    Ok(())
}

impl Postgres {
    /// An operator's change to one active client (`update`: its statement
    /// and the value for `$2`), checked and logged as `action` in one
    /// transaction.
    async fn change_one(
        &self,
        name: &str,
        by: &Actor,
        now_ms: i64,
        update: (&str, &(dyn tokio_postgres::types::ToSql + Sync)),
        (action, detail): (&'static str, &str),
    ) -> Result<(), StoreError> {
        let mut client = self.client(action).await?;
        let tx = client.transaction().await.map_err(write_err)?;
        locked(&tx).await?;
        if let Some(e) = refusal(&current(&tx, Some(name)).await?, name, by) {
            return Err(e);
        }
        tx.execute(update.0, &[&name, update.1])
            .await
            .map_err(write_err)?;
        audit(&tx, by, action, name, detail, now_ms).await?;
        tx.commit().await.map_err(write_err)
    }
}

#[async_trait]
impl crate::store::Clients for Postgres {
    async fn add_client(
        &self,
        spec: &ClientSpec,
        by: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client("add_client").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        locked(&tx).await?;
        // A revoked name may be taken again; an active one may not.
        if current(&tx, Some(&spec.name))
            .await?
            .iter()
            .any(|c| c.active)
        {
            return Err(StoreError::Invalid(format!(
                "a client named {:?} already exists",
                spec.name
            )));
        }
        put(&tx, spec, by.origin, now_ms).await?;
        audit(&tx, by, "add", &spec.name, &describe(spec), now_ms).await?;
        tx.commit().await.map_err(write_err)
    }

    async fn revoke_client(&self, name: &str, by: &Actor, now_ms: i64) -> Result<(), StoreError> {
        let sql = "UPDATE clients SET revoked_at_ms = $2 WHERE name = $1 AND revoked_at_ms IS NULL";
        self.change_one(name, by, now_ms, (sql, &now_ms), ("revoke", ""))
            .await
    }

    async fn rotate_client(
        &self,
        name: &str,
        token_hash: &str,
        by: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE clients SET token_hash = $2 WHERE name = $1 AND revoked_at_ms IS NULL";
        self.change_one(
            name,
            by,
            now_ms,
            (sql, &token_hash),
            ("rotate", "new token"),
        )
        .await
    }

    async fn apply_client_file(
        &self,
        specs: &[ClientSpec],
        by: &Actor,
        now_ms: i64,
    ) -> Result<Applied, StoreError> {
        let mut client = self.client("apply_client_file").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        locked(&tx).await?;
        let plan = Plan::new(specs, &current(&tx, None).await?).map_err(StoreError::Invalid)?;
        let mut applied = Applied {
            unchanged: plan.unchanged,
            ..Applied::default()
        };
        for spec in &plan.add {
            put(&tx, spec, Origin::File, now_ms).await?;
            audit(&tx, by, "add", &spec.name, &describe(spec), now_ms).await?;
            applied.added.push(spec.name.clone());
        }
        for (spec, what) in &plan.change {
            tx.execute(
                "UPDATE clients SET token_hash = $2, scopes = $3, owners = $4, limits = $5
                 WHERE name = $1 AND revoked_at_ms IS NULL",
                &[
                    &spec.name,
                    &spec.token_hash,
                    &serde_json::to_string(&spec.scopes).expect("strings serialise"),
                    &serde_json::to_string(&spec.owners).expect("strings serialise"),
                    &spec.limits.to_json(),
                ],
            )
            .await
            .map_err(write_err)?;
            audit(&tx, by, "change", &spec.name, what, now_ms).await?;
            applied.changed.push(spec.name.clone());
        }
        for name in &plan.revoke {
            tx.execute(
                "UPDATE clients SET revoked_at_ms = $2 WHERE name = $1 AND revoked_at_ms IS NULL",
                &[name, &now_ms],
            )
            .await
            .map_err(write_err)?;
            audit(
                &tx,
                by,
                "revoke",
                name,
                "no longer in the clients file",
                now_ms,
            )
            .await?;
            applied.revoked.push(name.clone());
        }
        tx.commit().await.map_err(write_err)?;
        Ok(applied)
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client("audit_log").await?;
        let rows = client
            .query(
                "SELECT at_ms, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at_ms: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                subject: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    async fn client_by_token(&self, token_hash: &str) -> Result<Option<StoredClient>, StoreError> {
        let client = self.client("client_by_token").await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT name, scopes, owners, limits FROM clients
                 WHERE token_hash = $1 AND revoked_at_ms IS NULL",
                    )
                    .await
                    .map_err(read_err)?,
                &[&token_hash],
            )
            .await
            .map_err(read_err)?;
        row.map(|r| {
            Ok(StoredClient {
                name: r.get(0),
                scopes: strings(r.get(1))?,
                owners: strings(r.get(2))?,
                limits: limits(r.get(3))?,
            })
        })
        .transpose()
    }

    async fn clients(&self, now_ms: i64) -> Result<Vec<ClientRow>, StoreError> {
        let since = now_ms / 60_000 - 60;
        let client = self.client("clients").await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT c.name, c.scopes, c.owners, c.created_at_ms, c.revoked_at_ms, c.limits, c.origin,
                        COALESCE(SUM(u.requests), 0)::BIGINT, COALESCE(SUM(u.hits), 0)::BIGINT,
                        COALESCE(SUM(u.revalidated), 0)::BIGINT, COALESCE(SUM(u.misses), 0)::BIGINT,
                        COALESCE(SUM(u.bypassed), 0)::BIGINT, COALESCE(SUM(u.units_spent), 0)::BIGINT,
                        COALESCE(SUM(u.units_saved), 0)::BIGINT
                 FROM clients c LEFT JOIN client_usage u ON u.client = c.name AND u.minute > $1
                 GROUP BY c.name ORDER BY c.created_at_ms DESC, c.name").await.map_err(read_err)?,
                &[&since],
            )
            .await
            .map_err(read_err)?;
        rows.iter()
            .map(|r| {
                Ok(ClientRow {
                    name: r.get(0),
                    scopes: strings(r.get(1))?,
                    owners: strings(r.get(2))?,
                    created_at_ms: r.get(3),
                    revoked_at_ms: r.get(4),
                    limits: limits(r.get(5))?,
                    origin: Origin::parse(r.get(6)),
                    last_hour: Usage {
                        requests: r.get(7),
                        hits: r.get(8),
                        revalidated: r.get(9),
                        misses: r.get(10),
                        bypassed: r.get(11),
                        units_spent: r.get(12),
                        units_saved: r.get(13),
                    },
                })
            })
            .collect()
    }

    async fn units_by_minute(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let client = self.client("units_by_minute").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT client, minute, units_spent FROM client_usage
                         WHERE minute >= $1 AND units_spent > 0",
                    )
                    .await
                    .map_err(read_err)?,
                &[&since_minute],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    async fn add_usage(
        &self,
        rows: Vec<((String, i64), Usage)>,
        lines: Vec<UsageLine>,
        oldest_minute: i64,
        oldest_line_minute: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client("add_usage").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let upsert = tx
            .prepare_cached(
                "INSERT INTO client_usage (client, minute, requests, hits, revalidated,
                     misses, bypassed, units_spent, units_saved)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (client, minute) DO UPDATE SET
                     requests = client_usage.requests + excluded.requests,
                     hits = client_usage.hits + excluded.hits,
                     revalidated = client_usage.revalidated + excluded.revalidated,
                     misses = client_usage.misses + excluded.misses,
                     bypassed = client_usage.bypassed + excluded.bypassed,
                     units_spent = client_usage.units_spent + excluded.units_spent,
                     units_saved = client_usage.units_saved + excluded.units_saved",
            )
            .await
            .map_err(write_err)?;
        // Key order, so two replicas flushing at once lock rows alike.
        let mut rows = rows;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for ((client_name, minute), u) in &rows {
            tx.execute(
                &upsert,
                &[
                    client_name,
                    minute,
                    &u.requests,
                    &u.hits,
                    &u.revalidated,
                    &u.misses,
                    &u.bypassed,
                    &u.units_spent,
                    &u.units_saved,
                ],
            )
            .await
            .map_err(write_err)?;
        }
        tx.execute(
            &tx.prepare_cached("DELETE FROM client_usage WHERE minute < $1")
                .await
                .map_err(write_err)?,
            &[&oldest_minute],
        )
        .await
        .map_err(write_err)?;
        let upsert = tx
            .prepare_cached(
                "INSERT INTO gateway_usage (minute, client, owner, route, credential, refused_by,
                     requests, units_spent, units_saved)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (minute, client, owner, route, credential, refused_by) DO UPDATE SET
                     requests = gateway_usage.requests + excluded.requests,
                     units_spent = gateway_usage.units_spent + excluded.units_spent,
                     units_saved = gateway_usage.units_saved + excluded.units_saved",
            )
            .await
            .map_err(write_err)?;
        let mut lines = lines;
        lines.sort_by(|a, b| a.key().cmp(&b.key()));
        for l in &lines {
            tx.execute(
                &upsert,
                &[
                    &l.minute,
                    &l.client,
                    &l.owner,
                    &l.route,
                    &l.credential,
                    &l.refused_by,
                    &l.requests,
                    &l.units_spent,
                    &l.units_saved,
                ],
            )
            .await
            .map_err(write_err)?;
        }
        tx.execute(
            &tx.prepare_cached("DELETE FROM gateway_usage WHERE minute < $1")
                .await
                .map_err(write_err)?,
            &[&oldest_line_minute],
        )
        .await
        .map_err(write_err)?;
        tx.commit().await.map_err(write_err)
    }

    async fn usage_lines(&self, since_minute: i64) -> Result<Vec<UsageLine>, StoreError> {
        let client = self.client("usage_lines").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT client, owner, route, credential, refused_by,
                                SUM(requests)::BIGINT, SUM(units_spent)::BIGINT, SUM(units_saved)::BIGINT
                         FROM gateway_usage WHERE minute >= $1
                         GROUP BY client, owner, route, credential, refused_by",
                    )
                    .await
                    .map_err(read_err)?,
                &[&since_minute],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| UsageLine {
                minute: since_minute,
                client: r.get(0),
                owner: r.get(1),
                route: r.get(2),
                credential: r.get(3),
                refused_by: r.get(4),
                requests: r.get(5),
                units_spent: r.get(6),
                units_saved: r.get(7),
            })
            .collect())
    }

    async fn owner_minutes(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64, i64)>, StoreError> {
        let client = self.client("owner_minutes").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT owner, minute, SUM(units_spent)::BIGINT, SUM(units_saved)::BIGINT
                         FROM gateway_usage WHERE minute >= $1 AND owner <> '' AND refused_by = ''
                         GROUP BY owner, minute ORDER BY owner, minute",
                    )
                    .await
                    .map_err(read_err)?,
                &[&since_minute],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }
}

#[async_trait]
impl crate::store::Sessions for Postgres {
    async fn open_session(
        &self,
        s: &NewSession,
        idle_before_ms: i64,
        max: usize,
    ) -> Result<(), StoreError> {
        let mut client = self.client("open_session").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        tx.execute(
            &tx.prepare_cached("DELETE FROM admin_sessions WHERE last_seen_ms < $1")
                .await
                .map_err(write_err)?,
            &[&idle_before_ms],
        )
        .await
        .map_err(write_err)?;
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM admin_sessions WHERE token_digest IN
               (SELECT token_digest FROM admin_sessions ORDER BY last_seen_ms
                LIMIT GREATEST((SELECT COUNT(*) FROM admin_sessions) + 1 - $1, 0))",
            )
            .await
            .map_err(write_err)?,
            &[&(max as i64)],
        )
        .await
        .map_err(write_err)?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO admin_sessions
               (token_digest, csrf, password_digest, created_at_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (token_digest) DO UPDATE SET csrf = excluded.csrf,
                 password_digest = excluded.password_digest, last_seen_ms = excluded.last_seen_ms",
            )
            .await
            .map_err(write_err)?,
            &[
                &&s.token_digest[..],
                &s.csrf,
                &&s.password_digest[..],
                &s.now_ms,
            ],
        )
        .await
        .map_err(write_err)?;
        tx.commit().await.map_err(write_err)
    }

    async fn session(
        &self,
        token_digest: [u8; 32],
        now_ms: i64,
        idle_before_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        let client = self.client("session").await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT csrf, password_digest, last_seen_ms FROM admin_sessions
                 WHERE token_digest = $1",
                    )
                    .await
                    .map_err(read_err)?,
                &[&&token_digest[..]],
            )
            .await
            .map_err(read_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let digest: Vec<u8> = row.get(1);
        let mut s = Session {
            csrf: row.get(0),
            password_digest: digest.try_into().unwrap_or([0; 32]),
            last_seen_ms: row.get(2),
        };
        if s.last_seen_ms < idle_before_ms {
            // Gone either way; a later open_session sweeps it if this fails.
            if let Err(e) = self.end_session(token_digest).await {
                tracing::debug!(error = %e, "idle admin session not deleted yet");
            }
            return Ok(None);
        }
        if now_ms - s.last_seen_ms >= SEEN_GRANULARITY_MS {
            // Best effort, as on SQLite: the pages still answer.
            let touched = client
                .execute(
                    "UPDATE admin_sessions SET last_seen_ms = GREATEST(last_seen_ms, $2)
                     WHERE token_digest = $1",
                    &[&&token_digest[..], &now_ms],
                )
                .await;
            match touched {
                Ok(_) => s.last_seen_ms = now_ms,
                Err(e) => tracing::debug!(error = %e, "admin session not marked seen"),
            }
        }
        Ok(Some(s))
    }

    async fn end_session(&self, token_digest: [u8; 32]) -> Result<(), StoreError> {
        let client = self.client("end_session").await?;
        client
            .execute(
                &client
                    .prepare_cached("DELETE FROM admin_sessions WHERE token_digest = $1")
                    .await
                    .map_err(write_err)?,
                &[&&token_digest[..]],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn tally_failure(
        &self,
        address: &str,
        tally: Tally,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>, StoreError> {
        let since = now_ms - window_ms;
        let mut client = self.client("tally_failure").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        if tally != Tally::Check {
            // Replicas counting the same address take turns, so a check
            // and its count are one step across them.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&address],
            )
            .await
            .map_err(write_err)?;
            tx.execute(
                &tx.prepare_cached("DELETE FROM auth_failures WHERE at_ms <= $1")
                    .await
                    .map_err(write_err)?,
                &[&since],
            )
            .await
            .map_err(write_err)?;
        }
        let row = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT count(*), min(at_ms) FROM auth_failures
                     WHERE address = $1 AND at_ms > $2",
                )
                .await
                .map_err(read_err)?,
                &[&address, &since],
            )
            .await
            .map_err(read_err)?;
        let (n, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
        let over = (n >= i64::from(limit)).then(|| oldest.unwrap_or(now_ms));
        if tally == Tally::Record || (tally == Tally::Reserve && over.is_none()) {
            tx.execute(
                &tx.prepare_cached("INSERT INTO auth_failures (address, at_ms) VALUES ($1, $2)")
                    .await
                    .map_err(write_err)?,
                &[&address, &now_ms],
            )
            .await
            .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)?;
        Ok(over.filter(|_| tally != Tally::Record))
    }

    async fn forgive_failures(&self, address: &str) -> Result<(), StoreError> {
        let client = self.client("forgive_failures").await?;
        client
            .execute(
                &client
                    .prepare_cached("DELETE FROM auth_failures WHERE address = $1")
                    .await
                    .map_err(write_err)?,
                &[&address],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }
}
