//! Connection settings and numbered migrations embedded in the binary.

use rusqlite::Connection;

/// Every migration, in order. The number is also the schema version stored
/// in `PRAGMA user_version` once it is applied.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "journal",
        include_str!("../../../migrations/sqlite/0001_journal.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../../migrations/sqlite/0002_jobs.sql"),
    ),
    (
        3,
        "holds",
        include_str!("../../../migrations/sqlite/0003_holds.sql"),
    ),
    (
        4,
        "clients",
        include_str!("../../../migrations/sqlite/0004_clients.sql"),
    ),
    (
        5,
        "actions",
        include_str!("../../../migrations/sqlite/0005_actions.sql"),
    ),
    (
        6,
        "recovery",
        include_str!("../../../migrations/sqlite/0006_recovery.sql"),
    ),
    (
        7,
        "admin",
        include_str!("../../../migrations/sqlite/0007_admin.sql"),
    ),
    (
        8,
        "operator",
        include_str!("../../../migrations/sqlite/0008_operator.sql"),
    ),
    (
        9,
        "fence",
        include_str!("../../../migrations/sqlite/0009_fence.sql"),
    ),
    (
        10,
        "attempt_minutes",
        include_str!("../../../migrations/sqlite/0010_attempt_minutes.sql"),
    ),
    (
        11,
        "sessions",
        include_str!("../../../migrations/sqlite/0011_sessions.sql"),
    ),
    (
        12,
        "auth_failures",
        include_str!("../../../migrations/sqlite/0012_auth_failures.sql"),
    ),
    (
        13,
        "client_limits",
        include_str!("../../../migrations/sqlite/0013_client_limits.sql"),
    ),
    (
        14,
        "gateway_usage",
        include_str!("../../../migrations/sqlite/0014_gateway_usage.sql"),
    ),
    (
        15,
        "forwarding_holds",
        include_str!("../../../migrations/sqlite/0015_forwarding_holds.sql"),
    ),
    (
        16,
        "completeness_reports",
        include_str!("../../../migrations/sqlite/0016_completeness_reports.sql"),
    ),
];

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "database schema version {found} is newer than this gatehouse knows ({known}); \
         it was written by a newer release: run that release, or restore a backup"
    )]
    TooNew { found: u32, known: u32 },
    #[error("migration {number} ({name}) failed: {source}")]
    Migration {
        number: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("journal_mode stayed {0}; WAL is required (is the file on a network file system?)")]
    NoWal(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Settings every connection needs. WAL lets readers run beside the writer;
/// synchronous=FULL makes a commit durable before we acknowledge it.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Switches the file to WAL (a persistent setting) and checks it took.
pub fn enable_wal(conn: &Connection) -> Result<(), SchemaError> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SchemaError::NoWal(mode));
    }
    Ok(())
}

/// Applies every migration newer than the file's version, each in its own
/// transaction together with the version bump, so a crash mid-way leaves the
/// previous version intact.
pub fn migrate(conn: &mut Connection) -> Result<u32, SchemaError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = latest_version();
    if current > known {
        return Err(SchemaError::TooNew {
            found: current,
            known,
        });
    }
    for &(number, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let fail = |source| SchemaError::Migration {
            number,
            name,
            source,
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", number)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(number, name, "applied migration");
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_are_all_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|(n, name, _)| format!("{n:04}_{name}.sql"))
            .collect();
        assert_eq!(files, embedded);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0 as usize, i + 1, "migrations are numbered 1, 2, 3...");
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db")).unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, SchemaError::TooNew { .. }), "{err}");
    }

    #[test]
    fn migrate_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db")).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
        assert_eq!(migrate(&mut conn).unwrap(), latest_version());
    }
}
