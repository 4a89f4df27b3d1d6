//! The gateway's cache of GitHub answers, as stored: in its own SQLite
//! file beside the journal on one node ([`CacheFile`]), in the shared
//! database where replicas share a PostgreSQL store
//! ([`crate::store::Lifecycle::shared_cache`]). Either way it holds nothing
//! that cannot be fetched again.

use async_trait::async_trait;

use crate::store::StoreError;

/// A request's cache key (a digest of scope, path and varying headers).
pub type Key = [u8; 32];

pub use super::sqlite::cache::CacheFile;

/// One stored answer.
#[derive(Debug, Clone)]
pub struct Entry {
    pub scope: String,
    pub path: String,
    pub status: u16,
    /// End-to-end headers in wire form (`journal::model::encode_headers`).
    pub headers: Vec<u8>,
    pub body: bytes::Bytes,
    /// The validator clients see: a digest of the body, the same whatever
    /// token read it.
    pub content_etag: String,
    /// GitHub's ETag, the credential and token that read it.
    pub etag: Option<String>,
    pub etag_credential: Option<String>,
    pub token_tag: Option<String>,
    pub last_modified: Option<String>,
    pub validated_at_ms: i64,
}

impl Entry {
    pub fn size(&self) -> u64 {
        (self.headers.len() + self.body.len() + self.path.len() + 256) as u64
    }
}

/// Where cached answers are kept. Every operation is one statement or one
/// transaction; none is durable beyond what a cache needs (a lost write is
/// a later miss).
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The answer stored under `key`.
    async fn get(&self, key: Key) -> Result<Option<Entry>, StoreError>;
    /// Stores (or replaces) the answer under `key`, used at `now_ms`.
    async fn put(&self, key: Key, entry: Entry, now_ms: i64) -> Result<(), StoreError>;
    /// GitHub said 304: the stored answer is current as of `now_ms`, with
    /// the headers of that 304.
    async fn revalidated(&self, key: Key, headers: Vec<u8>, now_ms: i64) -> Result<(), StoreError>;
    async fn delete(&self, keys: Vec<Key>) -> Result<(), StoreError>;
    /// After a change made through the gateway: entries whose path starts
    /// with `prefix`, in every scope, must be revalidated before they are
    /// served again. Returns how many.
    async fn expire_prefix(&self, prefix: String) -> Result<usize, StoreError>;
    /// Records when entries were last served (batched; hits write nothing).
    async fn used(&self, touched: Vec<(Key, i64)>) -> Result<(), StoreError>;
    /// Every entry's key, size and last use, oldest use first.
    async fn index(&self) -> Result<Vec<(Key, u64, i64)>, StoreError>;
    /// How many entries, and their total size.
    async fn totals(&self) -> Result<(u64, u64), StoreError>;
    /// Removes least recently used entries until the rest fit in
    /// `max_bytes`; one transaction. Returns how many went.
    async fn evict_to(&self, max_bytes: u64) -> Result<usize, StoreError>;
}
