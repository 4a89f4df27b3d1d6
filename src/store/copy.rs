//! `gatehouse storage copy`: an embedded SQLite journal moved into an empty
//! PostgreSQL database, for an operator growing past one machine.
//! Everything that is state moves (deliveries with their bodies and dedupe
//! keys, jobs with their attempts and dead letters, holds and pauses,
//! clients and their usage, Actions state, recovery walks and requests,
//! the admin UI's roll-ups), ids kept, and each delivery gets the
//! per-partition sequence number PostgreSQL schedules by, in journal
//! order. Admin sessions do not move (operators log in again), nor do
//! leases (the new replicas take them afresh).
//!
//! The SQLite side is read in one read transaction, so a copy of a live
//! journal is a consistent snapshot; deliveries acknowledged after it
//! began are not in it (stop the server first, or let recovery fetch
//! them).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use tokio_postgres::types::{ToSql, Type};

use crate::store::postgres::{self, PgError, Target};

/// Copied in this order (parents before children); the SQLite `ORDER BY`
/// (deliveries in journal order, for their sequence numbers).
const TABLES: &[(&str, &str)] = &[
    ("deliveries", "id"),
    ("delivery_payloads", "delivery_id"),
    ("jobs", "id"),
    ("attempts", "job_id, n"),
    ("partitions", "sink, partition_key"),
    ("route_holds", "sink"),
    ("clients", "name"),
    ("client_usage", "client, minute"),
    (
        "gateway_usage",
        "minute, client, owner, route, credential, refused_by",
    ),
    ("audit_log", "id"),
    ("actions_runs", "run_id, run_attempt"),
    ("actions_jobs", "job_id"),
    ("recovery_walks", "id"),
    ("recovery_requests", "source, guid"),
    ("recovery_triggers", "id"),
    ("recovery_seen", "source, guid"),
    ("volume_minutes", "minute"),
    ("volume_hours", "hour"),
    ("volume_days", "day, owner, event"),
    ("attempt_hours", "hour, sink, outcome, bucket"),
    ("attempt_minutes", "minute, sink, outcome"),
    ("sink_samples", "minute, sink"),
];

/// Tables whose ids PostgreSQL generates: copied ids are kept, and the
/// generator moved past them.
const IDENTITIES: &[&str] = &[
    "deliveries",
    "jobs",
    "recovery_walks",
    "recovery_triggers",
    "audit_log",
];

/// Rows per INSERT.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(
        "the SQLite journal has schema version {found}, this gatehouse writes {want}: \
         start this release's `gatehouse serve` on it once (or `gatehouse migrate`) first"
    )]
    SourceVersion { found: u32, want: u32 },
    #[error(
        "the PostgreSQL database already holds {0} deliveries: copy into an empty database \
         (a copy never merges two journals)"
    )]
    NotEmpty(i64),
    #[error("{table}.{column}: a value of SQLite type {found} cannot become PostgreSQL {want}")]
    Type {
        table: &'static str,
        column: String,
        found: &'static str,
        want: String,
    },
    #[error("after the copy {table} holds {copied} rows in PostgreSQL, {read} were read")]
    Mismatch {
        table: &'static str,
        read: u64,
        copied: i64,
    },
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> CopyError {
        CopyError::Postgres(PgError::Db(e))
    }
}

/// Where a copy is, for its progress line.
pub struct Progress<'a> {
    pub table: &'a str,
    pub done: u64,
    pub total: u64,
}

/// What a copy moved: rows per table.
#[derive(Debug, Default)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies the journal at `source` into the empty database at `target`
/// (migrated first), table by table in batches, all in one transaction
/// (a failed copy leaves the database empty), calling `progress` at most
/// about once a second and at each table's end; every table's count is
/// checked before the commit. Not `Send`: run it with `block_on`.
pub async fn sqlite_to_postgres(
    source: &Path,
    target: &Target,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied, CopyError> {
    let path = source.display().to_string();
    let sq = |e: rusqlite::Error| CopyError::Sqlite {
        path: path.clone(),
        source: e,
    };
    let mut conn =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sq)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sq)?;
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sq)?;
    let want = crate::store::sqlite::latest_version();
    if found != want {
        return Err(CopyError::SourceVersion { found, want });
    }
    // One snapshot for every table.
    let snapshot = conn.transaction().map_err(sq)?;

    postgres::Postgres::migrate_only(target, true).await?;
    let mut client = target.connect_one("gatehouse-copy").await?;
    // All or nothing: a copy that fails leaves the database empty, ready
    // for another try.
    let tx = client.transaction().await?;
    let held: i64 = tx
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await?
        .get(0);
    if held > 0 {
        return Err(CopyError::NotEmpty(held));
    }

    let mut copied = Copied::default();
    // Per partition, the last sequence number given; per delivery, its.
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut seq_of: HashMap<i64, i64> = HashMap::new();
    for &(table, order) in TABLES {
        let total = snapshot
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sq)? as u64;
        let sqlite_cols: Vec<String> = {
            let mut st = snapshot
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .map_err(sq)?;
            st.query_map([], |r| r.get(0))
                .map_err(sq)?
                .collect::<Result<_, _>>()
                .map_err(sq)?
        };
        let pg_cols: Vec<String> = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
                &[&table],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let common: Vec<String> = pg_cols
            .iter()
            .filter(|c| sqlite_cols.contains(c))
            .cloned()
            .collect();
        // The sequence number PostgreSQL orders by, given here.
        let with_seq = matches!(table, "deliveries" | "jobs");
        let mut insert_cols = common.clone();
        if with_seq {
            insert_cols.push("seq".into());
        }
        let types = param_types(&tx, table, &insert_cols).await?;
        let idx = |name: &str| common.iter().position(|c| c == name);
        let (id_at, partition_at, delivery_at) =
            (idx("id"), idx("partition_key"), idx("delivery_id"));

        let mut st = snapshot
            .prepare(&format!(
                "SELECT {} FROM {table} ORDER BY {order}",
                common.join(", ")
            ))
            .map_err(sq)?;
        let mut rows = st.query([]).map_err(sq)?;
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
        let (mut done, mut told) = (0u64, Instant::now());
        loop {
            let next = rows.next().map_err(sq)?;
            let end = next.is_none();
            if let Some(row) = next {
                let mut values: Vec<Value> = (0..common.len())
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<Result<_, _>>()
                    .map_err(sq)?;
                if with_seq {
                    let seq = if table == "deliveries" {
                        let partition = text(&values[partition_at.expect("a column")]);
                        let n = last_seq.entry(partition).or_insert(0);
                        *n += 1;
                        seq_of.insert(integer(&values[id_at.expect("a column")]), *n);
                        *n
                    } else {
                        let delivery = integer(&values[delivery_at.expect("a column")]);
                        seq_of.get(&delivery).copied().unwrap_or(0)
                    };
                    values.push(Value::Integer(seq));
                }
                batch.push(values);
            }
            if batch.len() == BATCH || (end && !batch.is_empty()) {
                insert(&tx, table, &insert_cols, &types, &batch).await?;
                done += batch.len() as u64;
                batch.clear();
                if told.elapsed() >= Duration::from_secs(1) {
                    progress(Progress { table, done, total });
                    told = Instant::now();
                }
            }
            if end {
                break;
            }
        }
        progress(Progress { table, done, total });
        let held: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        if held as u64 != done {
            return Err(CopyError::Mismatch {
                table,
                read: done,
                copied: held,
            });
        }
        copied.tables.push((table, done));
    }
    // What PostgreSQL keeps beside the rows: each partition's last
    // sequence number, the id generators, and no lease (taken afresh).
    for (partition, last) in &last_seq {
        tx.execute(
            "INSERT INTO partition_seqs (partition_key, last_seq) VALUES ($1, $2)",
            &[partition, last],
        )
        .await?;
    }
    for table in IDENTITIES {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               GREATEST((SELECT max(id) FROM {table}), 1))"
            ),
            &[],
        )
        .await?;
    }
    tx.execute(
        "UPDATE partitions SET lease_owner = NULL, lease_until_ms = 0",
        &[],
    )
    .await?;
    tx.commit().await?;
    drop(snapshot);
    Ok(copied)
}

/// The PostgreSQL types of `columns` of `table`, as an INSERT takes them.
async fn param_types(
    client: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &[String],
) -> Result<Vec<Type>, CopyError> {
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let st = client
        .prepare(&format!(
            "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        ))
        .await?;
    Ok(st.params().to_vec())
}

/// One multi-row INSERT of `rows`, ids kept.
async fn insert(
    client: &tokio_postgres::Transaction<'_>,
    table: &'static str,
    columns: &[String],
    types: &[Type],
    rows: &[Vec<Value>],
) -> Result<(), CopyError> {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
        Vec::with_capacity(rows.len() * columns.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let mut slots = Vec::with_capacity(columns.len());
        for (i, value) in row.iter().enumerate() {
            params.push(to_pg(table, &columns[i], value, &types[i])?);
            slots.push(format!("${}", params.len()));
        }
        tuples.push(format!("({})", slots.join(", ")));
    }
    let sql = format!(
        "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES {}",
        columns.join(", "),
        tuples.join(", ")
    );
    let refs: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    client.execute(&sql, &refs).await?;
    Ok(())
}

/// A SQLite value as the PostgreSQL column's type wants it (SQLite keeps
/// booleans as integers, and is loose about text and blobs).
fn to_pg(
    table: &'static str,
    column: &str,
    value: &Value,
    ty: &Type,
) -> Result<Box<dyn ToSql + Sync + Send>, CopyError> {
    let wrong = || CopyError::Type {
        table,
        column: column.to_string(),
        found: match value {
            Value::Null => "NULL",
            Value::Integer(_) => "INTEGER",
            Value::Real(_) => "REAL",
            Value::Text(_) => "TEXT",
            Value::Blob(_) => "BLOB",
        },
        want: ty.to_string(),
    };
    Ok(match (ty, value) {
        (t, Value::Null) if *t == Type::INT8 => Box::new(None::<i64>),
        (t, Value::Null) if *t == Type::INT4 => Box::new(None::<i32>),
        (t, Value::Null) if *t == Type::BOOL => Box::new(None::<bool>),
        (t, Value::Null) if *t == Type::TEXT => Box::new(None::<String>),
        (t, Value::Null) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (t, Value::Integer(n)) if *t == Type::INT8 => Box::new(*n),
        (t, Value::Integer(n)) if *t == Type::INT4 => {
            Box::new(i32::try_from(*n).map_err(|_| wrong())?)
        }
        (t, Value::Integer(n)) if *t == Type::BOOL => Box::new(*n != 0),
        (t, Value::Text(s)) if *t == Type::TEXT => Box::new(s.clone()),
        (t, Value::Integer(n)) if *t == Type::TEXT => Box::new(n.to_string()),
        (t, Value::Blob(b)) if *t == Type::BYTEA => Box::new(b.clone()),
        (t, Value::Text(s)) if *t == Type::BYTEA => Box::new(s.clone().into_bytes()),
        _ => return Err(wrong()),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Integer(n) => n.to_string(),
        _ => String::new(),
    }
}

fn integer(v: &Value) -> i64 {
    match v {
        Value::Integer(n) => *n,
        _ => 0,
    }
}
