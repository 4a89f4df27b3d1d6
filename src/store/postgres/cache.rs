//! The gateway's response cache in the shared database, so an answer one
//! replica fetched is a hit on every other. Eviction is a statement any
//! replica may run; the gateway runs it under a duty, one at a time.

use async_trait::async_trait;
use deadpool_postgres::Pool;

use super::{Timed, checkout, read_err, write_err};
use crate::store::StoreError;
use crate::store::cache::{CacheStore, Entry, Key};
use crate::store::metrics::JournalMetrics;

pub(super) struct PgCache {
    pub pool: Pool,
    pub metrics: JournalMetrics,
}

impl PgCache {
    async fn client(&self, op: &'static str) -> Result<Timed, StoreError> {
        checkout(&self.pool, &self.metrics, op).await
    }
}

fn key_of(bytes: &[u8]) -> Key {
    let mut key = [0u8; 32];
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
    }
    key
}

#[async_trait]
impl CacheStore for PgCache {
    async fn get(&self, key: Key) -> Result<Option<Entry>, StoreError> {
        let client = self.client("cache_get").await?;
        let stmt = client
            .prepare_cached(
                "SELECT scope, path, status, headers, body, content_etag, etag,
                        etag_credential, token_tag, last_modified, validated_at_ms
                 FROM gateway_cache WHERE key = $1",
            )
            .await
            .map_err(read_err)?;
        let row = client
            .query_opt(&stmt, &[&&key[..]])
            .await
            .map_err(read_err)?;
        Ok(row.map(|r| Entry {
            scope: r.get(0),
            path: r.get(1),
            status: r.get::<_, i32>(2) as u16,
            headers: r.get(3),
            body: bytes::Bytes::from(r.get::<_, Vec<u8>>(4)),
            content_etag: r.get(5),
            etag: r.get(6),
            etag_credential: r.get(7),
            token_tag: r.get(8),
            last_modified: r.get(9),
            validated_at_ms: r.get(10),
        }))
    }

    async fn put(&self, key: Key, e: Entry, now_ms: i64) -> Result<(), StoreError> {
        let client = self.client("cache_put").await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO gateway_cache (key, scope, path, status, headers, body,
                     content_etag, etag, etag_credential, token_tag, last_modified,
                     validated_at_ms, last_used_ms, size)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (key) DO UPDATE SET
                     scope = EXCLUDED.scope, path = EXCLUDED.path,
                     status = EXCLUDED.status, headers = EXCLUDED.headers,
                     body = EXCLUDED.body, content_etag = EXCLUDED.content_etag,
                     etag = EXCLUDED.etag, etag_credential = EXCLUDED.etag_credential,
                     token_tag = EXCLUDED.token_tag, last_modified = EXCLUDED.last_modified,
                     validated_at_ms = EXCLUDED.validated_at_ms,
                     last_used_ms = EXCLUDED.last_used_ms, size = EXCLUDED.size",
            )
            .await
            .map_err(write_err)?;
        client
            .execute(
                &stmt,
                &[
                    &&key[..],
                    &e.scope,
                    &e.path,
                    &i32::from(e.status),
                    &e.headers,
                    &&e.body[..],
                    &e.content_etag,
                    &e.etag,
                    &e.etag_credential,
                    &e.token_tag,
                    &e.last_modified,
                    &e.validated_at_ms,
                    &now_ms,
                    &(e.size() as i64),
                ],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn revalidated(&self, key: Key, headers: Vec<u8>, now_ms: i64) -> Result<(), StoreError> {
        let client = self.client("cache_revalidated").await?;
        let stmt = client
            .prepare_cached(
                "UPDATE gateway_cache SET headers = $2, validated_at_ms = $3, last_used_ms = $3
                 WHERE key = $1",
            )
            .await
            .map_err(write_err)?;
        client
            .execute(&stmt, &[&&key[..], &headers, &now_ms])
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn delete(&self, keys: Vec<Key>) -> Result<(), StoreError> {
        let client = self.client("cache_delete").await?;
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let stmt = client
            .prepare_cached("DELETE FROM gateway_cache WHERE key = ANY($1)")
            .await
            .map_err(write_err)?;
        client.execute(&stmt, &[&keys]).await.map_err(write_err)?;
        Ok(())
    }

    async fn expire_prefix(&self, prefix: String) -> Result<usize, StoreError> {
        let client = self.client("cache_expire").await?;
        // The largest code point closes the range of everything that
        // starts with `prefix`, in byte order.
        let upper = format!("{prefix}\u{10FFFF}");
        let stmt = client
            .prepare_cached(
                "UPDATE gateway_cache SET validated_at_ms = 0
                 WHERE path COLLATE \"C\" >= $1 AND path COLLATE \"C\" < $2",
            )
            .await
            .map_err(write_err)?;
        let n = client
            .execute(&stmt, &[&prefix, &upper])
            .await
            .map_err(write_err)?;
        Ok(n as usize)
    }

    async fn used(&self, touched: Vec<(Key, i64)>) -> Result<(), StoreError> {
        let client = self.client("cache_used").await?;
        let keys: Vec<&[u8]> = touched.iter().map(|(k, _)| &k[..]).collect();
        let times: Vec<i64> = touched.iter().map(|(_, t)| *t).collect();
        // Only ever forward: another replica may have used it later.
        let stmt = client
            .prepare_cached(
                "UPDATE gateway_cache c SET last_used_ms = u.at
                 FROM unnest($1::bytea[], $2::bigint[]) AS u(key, at)
                 WHERE c.key = u.key AND c.last_used_ms < u.at",
            )
            .await
            .map_err(write_err)?;
        client
            .execute(&stmt, &[&keys, &times])
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn index(&self) -> Result<Vec<(Key, u64, i64)>, StoreError> {
        let client = self.client("cache_index").await?;
        let rows = client
            .query(
                "SELECT key, size, last_used_ms FROM gateway_cache ORDER BY last_used_ms, key",
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    key_of(r.get::<_, &[u8]>(0)),
                    r.get::<_, i64>(1) as u64,
                    r.get(2),
                )
            })
            .collect())
    }

    async fn totals(&self) -> Result<(u64, u64), StoreError> {
        let client = self.client("cache_totals").await?;
        let row = client
            .query_one(
                "SELECT count(*), coalesce(sum(size), 0)::bigint FROM gateway_cache",
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    async fn evict_to(&self, max_bytes: u64) -> Result<usize, StoreError> {
        let client = self.client("cache_evict").await?;
        let n = client
            .execute(
                "DELETE FROM gateway_cache WHERE key IN (
                     SELECT key FROM (
                         SELECT key, sum(size) OVER (ORDER BY last_used_ms DESC, key) AS kept
                         FROM gateway_cache) t
                     WHERE kept > $1::bigint)",
                &[&(max_bytes as i64)],
            )
            .await
            .map_err(write_err)?;
        Ok(n as usize)
    }
}
