//! Reads through an r2d2 pool of query-only connections. Every call is
//! blocking; async callers wrap it in `spawn_blocking` (see [`Reader::run`]).

use std::path::Path;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, Row, params};

use super::schema;
use crate::journal::model::{ContentKind, DeliveryMeta, DeliveryRow, ParseStatus};
use crate::store::{Payload, StoreError};

#[derive(Clone)]
pub struct Reader {
    pool: Pool<SqliteConnectionManager>,
}

/// The columns [`row_to_delivery`] reads, in its order (one mapping for
/// every read of a delivery's metadata).
pub const COLUMNS: &str =
    "id, hook_id, guid, event, action, installation_id, target_type, target_id,
     repository, owner, partition_key, received_at_ms, body_size, content_kind,
     parse_status, parse_error";

pub fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    let bad = |col: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, what.into())
    };
    let kind: String = r.get(13)?;
    let status: String = r.get(14)?;
    Ok(DeliveryRow {
        id: r.get(0)?,
        meta: DeliveryMeta {
            hook_id: r.get(1)?,
            guid: r.get(2)?,
            event: r.get(3)?,
            action: r.get(4)?,
            installation_id: r.get(5)?,
            target_type: r.get(6)?,
            target_id: r.get(7)?,
            repository: r.get(8)?,
            owner: r.get(9)?,
            partition_key: r.get(10)?,
            received_at_ms: r.get(11)?,
            content_kind: ContentKind::parse(&kind)
                .ok_or_else(|| bad(13, format!("unknown content_kind {kind:?}")))?,
            parse_status: ParseStatus::from_columns(&status, r.get(15)?)
                .ok_or_else(|| bad(14, format!("unknown parse_status {status:?}")))?,
        },
        body_size: r.get(12)?,
    })
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, r2d2::Error> {
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            schema::configure(c)?;
            c.pragma_update(None, "query_only", true)
        });
        let pool = Pool::builder().max_size(4).build(manager)?;
        Ok(Reader { pool })
    }

    /// Runs blocking read work on tokio's blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Read(e.to_string()))
    }

    /// A read-only query whose SQL belongs to another module (the
    /// scheduler's). Blocking, like every method here.
    pub fn query<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.conn()?;
        f(&conn).map_err(read_err)
    }

    pub fn get(&self, hook_id: &str, guid: &str) -> Result<Option<DeliveryRow>, StoreError> {
        self.conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE hook_id = ?1 AND guid = ?2"),
                params![hook_id, guid],
                row_to_delivery,
            )
            .optional()
            .map_err(read_err)
    }

    /// Several requests on one connection, in order, until `max_bytes`
    /// of bodies is passed (None: pruned).
    pub fn payloads(
        &self,
        ids: &[i64],
        max_bytes: u64,
    ) -> Result<Vec<(i64, Option<Payload>)>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare_cached(
                "SELECT p.headers, p.body, d.recovered FROM delivery_payloads p
                 JOIN deliveries d ON d.id = p.delivery_id WHERE p.delivery_id = ?1",
            )
            .map_err(read_err)?;
        let mut out = Vec::with_capacity(ids.len());
        let mut bytes = 0u64;
        for &id in ids {
            if bytes > max_bytes {
                break;
            }
            let found = st
                .query_row([id], |r| {
                    Ok(Payload {
                        headers: r.get(0)?,
                        body: r.get(1)?,
                        recovered: r.get(2)?,
                    })
                })
                .optional()
                .map_err(read_err)?;
            bytes += found.as_ref().map_or(0, |p| p.body.len() as u64);
            out.push((id, found));
        }
        Ok(out)
    }

    /// The stored headers and raw body of one delivery.
    pub fn payload(&self, id: i64) -> Result<Option<Payload>, StoreError> {
        Ok(self.payloads(&[id], u64::MAX)?.pop().and_then(|(_, p)| p))
    }
}

fn read_err(e: rusqlite::Error) -> StoreError {
    StoreError::Read(e.to_string())
}
