//! The gateway's cache of GitHub answers, as stored.

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
