//! The gateway cache's own SQLite file, beside the journal. It holds
//! nothing that cannot be fetched again, so it trades durability for speed
//! (synchronous=NORMAL: no fsync per write) and is simply rebuilt when it
//! is unreadable or from another version. Opening is blocking; the
//! [`CacheStore`] operations run their SQLite calls on the blocking pool.

use std::path::Path;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::StoreError;
use crate::store::cache::{CacheStore, Entry, Key};

/// 2: expiry by path across scopes (an index on path alone).
const VERSION: u32 = 2;

const SCHEMA: &str = "
CREATE TABLE entries (
    key BLOB NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    content_etag TEXT NOT NULL,
    etag TEXT,
    etag_credential TEXT,
    token_tag TEXT,
    last_modified TEXT,
    validated_at_ms INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX entries_path ON entries (path);
";

#[derive(Clone)]
pub struct CacheFile {
    pool: Pool<SqliteConnectionManager>,
}

fn configure(c: &Connection) -> rusqlite::Result<()> {
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "synchronous", "NORMAL")
}

/// Opens the file, or starts it afresh when it is not a cache of this
/// version (or not readable at all).
fn prepare(path: &Path) -> Result<(), StoreError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("gateway cache {}: {e}", path.display()))
    };
    // Answers for private repositories: private to the service.
    crate::files::private_file(path).map_err(|e| unavailable(&e))?;
    let attempt = || -> rusqlite::Result<()> {
        let conn = Connection::open(path)?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == VERSION {
            conn.query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))?;
            return Ok(());
        }
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))?;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch("DROP TABLE IF EXISTS entries;")?;
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()
    };
    if let Err(e) = attempt() {
        tracing::warn!(path = %path.display(), error = %e, "gateway cache unreadable; starting it afresh");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        crate::files::private_file(path).map_err(|e| unavailable(&e))?;
        attempt().map_err(|e| unavailable(&e))?;
    }
    Ok(())
}

impl CacheFile {
    pub fn open(path: &Path) -> Result<CacheFile, StoreError> {
        let unavailable = |at: &Path, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{}: {e}", at.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::private_dir(dir).map_err(|e| unavailable(dir, &e))?;
        }
        prepare(path)?;
        for suffix in ["-wal", "-shm"] {
            let f = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            crate::files::tighten(&f, crate::files::FILE_MODE).map_err(|e| unavailable(&f, &e))?;
        }
        let manager =
            SqliteConnectionManager::file(path).with_init(|c: &mut Connection| configure(c));
        let pool = Pool::builder()
            .max_size(4)
            .build(manager)
            .map_err(|e| unavailable(path, &e))?;
        Ok(CacheFile { pool })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Read(e.to_string()))
    }

    fn get_now(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.conn()?
            .prepare_cached(
                "SELECT scope, path, status, headers, body, content_etag, etag,
                        etag_credential, token_tag, last_modified, validated_at_ms
                 FROM entries WHERE key = ?1",
            )?
            .query_row([&key[..]], |r| {
                Ok(Entry {
                    scope: r.get(0)?,
                    path: r.get(1)?,
                    status: r.get(2)?,
                    headers: r.get(3)?,
                    body: bytes::Bytes::from(r.get::<_, Vec<u8>>(4)?),
                    content_etag: r.get(5)?,
                    etag: r.get(6)?,
                    etag_credential: r.get(7)?,
                    token_tag: r.get(8)?,
                    last_modified: r.get(9)?,
                    validated_at_ms: r.get(10)?,
                })
            })
            .optional()
            .map_err(cache_err)
    }

    fn put_now(&self, key: &Key, e: &Entry, now_ms: i64) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached(
                "INSERT OR REPLACE INTO entries (key, scope, path, status, headers, body,
                     content_etag, etag, etag_credential, token_tag, last_modified,
                     validated_at_ms, last_used_ms, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                &key[..],
                e.scope,
                e.path,
                e.status,
                e.headers,
                &e.body[..],
                e.content_etag,
                e.etag,
                e.etag_credential,
                e.token_tag,
                e.last_modified,
                e.validated_at_ms,
                now_ms,
                e.size() as i64
            ])?;
        Ok(())
    }

    /// GitHub said 304: the stored answer is current as of `now_ms`, with
    /// the headers of that 304.
    fn revalidated_now(&self, key: &Key, headers: &[u8], now_ms: i64) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached(
                "UPDATE entries SET headers = ?2, validated_at_ms = ?3, last_used_ms = ?3
                 WHERE key = ?1",
            )?
            .execute(params![&key[..], headers, now_ms])?;
        Ok(())
    }

    fn delete_now(&self, keys: &[Key]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?;
            for k in keys {
                stmt.execute([&k[..]])?;
            }
        }
        tx.commit().map_err(cache_err)
    }

    /// After a change made through the gateway: entries under `prefix`
    /// must be revalidated before they are served again.
    fn expire_prefix_now(&self, prefix: &str) -> Result<usize, StoreError> {
        let upper = format!("{prefix}\u{10FFFF}");
        self.conn()?
            .prepare_cached(
                "UPDATE entries SET validated_at_ms = 0 WHERE path >= ?1 AND path < ?2",
            )?
            .execute(params![prefix, upper])
            .map_err(cache_err)
    }

    /// Records when entries were last served (batched; hits write nothing).
    fn used_now(&self, touched: &[(Key, i64)]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE entries SET last_used_ms = ?2 WHERE key = ?1")?;
            for (k, at) in touched {
                stmt.execute(params![&k[..], at])?;
            }
        }
        tx.commit().map_err(cache_err)
    }

    /// Every entry's key, size and last use, oldest use first.
    fn index_now(&self) -> Result<Vec<(Key, u64, i64)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT key, size, last_used_ms FROM entries ORDER BY last_used_ms")?;
        let rows = stmt.query_map([], |r| {
            let k: Vec<u8> = r.get(0)?;
            let mut key = [0u8; 32];
            if k.len() == 32 {
                key.copy_from_slice(&k);
            }
            Ok((key, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(cache_err)
    }

    fn totals_now(&self) -> Result<(u64, u64), StoreError> {
        self.conn()?
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM entries",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(cache_err)
    }

    fn evict_to_now(&self, max_bytes: u64) -> Result<usize, StoreError> {
        self.conn()?
            .prepare_cached(
                "DELETE FROM entries WHERE key IN (
                     SELECT key FROM (
                         SELECT key, sum(size) OVER (ORDER BY last_used_ms DESC, key) AS kept
                         FROM entries)
                     WHERE kept > ?1)",
            )?
            .execute([max_bytes as i64])
            .map_err(cache_err)
    }

    /// Runs `f` on the blocking pool with this file.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CacheFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Read(format!("gateway cache task: {e}")))?
    }
}

#[async_trait::async_trait]
impl CacheStore for CacheFile {
    async fn get(&self, key: Key) -> Result<Option<Entry>, StoreError> {
        self.blocking(move |c| c.get_now(&key)).await
    }

    async fn put(&self, key: Key, entry: Entry, now_ms: i64) -> Result<(), StoreError> {
        self.blocking(move |c| c.put_now(&key, &entry, now_ms))
            .await
    }

    async fn revalidated(&self, key: Key, headers: Vec<u8>, now_ms: i64) -> Result<(), StoreError> {
        self.blocking(move |c| c.revalidated_now(&key, &headers, now_ms))
            .await
    }

    async fn delete(&self, keys: Vec<Key>) -> Result<(), StoreError> {
        self.blocking(move |c| c.delete_now(&keys)).await
    }

    async fn expire_prefix(&self, prefix: String) -> Result<usize, StoreError> {
        self.blocking(move |c| c.expire_prefix_now(&prefix)).await
    }

    async fn used(&self, touched: Vec<(Key, i64)>) -> Result<(), StoreError> {
        self.blocking(move |c| c.used_now(&touched)).await
    }

    async fn index(&self) -> Result<Vec<(Key, u64, i64)>, StoreError> {
        self.blocking(|c| c.index_now()).await
    }

    async fn totals(&self) -> Result<(u64, u64), StoreError> {
        self.blocking(|c| c.totals_now()).await
    }

    async fn evict_to(&self, max_bytes: u64) -> Result<usize, StoreError> {
        self.blocking(move |c| c.evict_to_now(max_bytes)).await
    }
}

fn cache_err(e: rusqlite::Error) -> StoreError {
    StoreError::Read(format!("gateway cache: {e}"))
}
