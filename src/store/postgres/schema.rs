//! Numbered migrations embedded in the binary, applied at start under an
//! advisory lock so replicas starting together take turns; a database
//! written by a newer release is refused.

use tokio_postgres::Client;

use super::PgError;

/// Every migration, in order; the number is the schema version.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "journal",
        include_str!("../../../migrations/postgres/0001_journal.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../../migrations/postgres/0002_jobs.sql"),
    ),
    (
        3,
        "clients_sessions",
        include_str!("../../../migrations/postgres/0003_clients_sessions.sql"),
    ),
    (
        4,
        "recovery",
        include_str!("../../../migrations/postgres/0004_recovery.sql"),
    ),
    (
        5,
        "actions",
        include_str!("../../../migrations/postgres/0005_actions.sql"),
    ),
    (
        6,
        "views",
        include_str!("../../../migrations/postgres/0006_views.sql"),
    ),
    (
        7,
        "replicas",
        include_str!("../../../migrations/postgres/0007_replicas.sql"),
    ),
    (
        8,
        "actions_version",
        include_str!("../../../migrations/postgres/0008_actions_version.sql"),
    ),
    (
        9,
        "shared_gateway",
        include_str!("../../../migrations/postgres/0009_shared_gateway.sql"),
    ),
    (
        10,
        "client_limits",
        include_str!("../../../migrations/postgres/0010_client_limits.sql"),
    ),
    (
        11,
        "gateway_usage",
        include_str!("../../../migrations/postgres/0011_gateway_usage.sql"),
    ),
    (
        12,
        "forwarding_holds",
        include_str!("../../../migrations/postgres/0012_forwarding_holds.sql"),
    ),
    (
        13,
        "completeness_reports",
        include_str!("../../../migrations/postgres/0013_completeness_reports.sql"),
    ),
];

/// Any constant: every gatehouse migrating this database takes this lock.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573; // "gatehous"

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// The version the database is at (0: a new database).
pub async fn version(client: &Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('gatehouse_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT max(version) FROM gatehouse_schema", &[])
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)).unwrap_or(0))
}

/// Brings the database to this build's version, one transaction per
/// migration, each under the advisory lock (taken again per transaction,
/// so a replica that finds the work done by another just reads the
/// version). Returns the migrations applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, PgError> {
    let mut applied = Vec::new();
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS gatehouse_schema (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let found: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM gatehouse_schema",
                &[],
            )
            .await?
            .get(0);
        if found > latest_version() {
            return Err(PgError::TooNew {
                found,
                known: latest_version(),
            });
        }
        let Some((n, name, sql)) = MIGRATIONS.iter().find(|m| m.0 == found + 1) else {
            tx.commit().await?;
            return Ok(applied);
        };
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO gatehouse_schema (version, name) VALUES ($1, $2)",
            &[n, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = n, name, "PostgreSQL schema migrated");
        applied.push(*n);
    }
}
