//! The gateway's response cache: GitHub answers stored in SQLite, keyed by
//! the credential scope they were read under (never served across owners),
//! the path and query, and the request headers that change an answer. A
//! size bound evicts least recently used entries. A cache failure is
//! logged and treated as a miss: the gateway keeps answering.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::gateway::metrics::GatewayMetrics;
use crate::store::StoreError;
use crate::store::cache::CacheFile;
pub use crate::store::cache::{Entry, Key};

/// Request headers GitHub answers differently to (its `Vary`, less the
/// credentials the pool replaces, plus `Time-Zone`, which shifts commit
/// times in bodies).
const VARY: [&str; 3] = ["accept", "x-github-api-version", "time-zone"];

/// A body larger than this share of the bound is not stored: it would
/// evict too much.
const MAX_ENTRY_SHARE: u64 = 4;

/// The cache key: the scope (whose credentials answered), the path and
/// query as sent, and the varying request headers.
pub fn key(scope: &str, path_and_query: &str, h: &HeaderMap) -> Key {
    let mut d = Sha256::new();
    d.update(scope.as_bytes());
    d.update([0]);
    d.update(path_and_query.as_bytes());
    for name in VARY {
        d.update([0]);
        for v in h.get_all(name) {
            d.update(v.as_bytes());
            d.update([b'\n']);
        }
    }
    d.finalize().into()
}

/// Which entries exist and how recently each was used, in memory, so that
/// serving a hit writes nothing and eviction needs no query.
#[derive(Default)]
struct Lru {
    by_key: HashMap<Key, (u64, u64)>,
    order: BTreeMap<u64, Key>,
    total: u64,
    tick: u64,
    /// Uses not yet written to the file (for the order after a restart).
    touched: HashMap<Key, i64>,
}

impl Lru {
    fn touch(&mut self, key: &Key, now_ms: i64) {
        if let Some((tick, size)) = self.by_key.get(key).copied() {
            self.order.remove(&tick);
            self.tick += 1;
            self.order.insert(self.tick, *key);
            self.by_key.insert(*key, (self.tick, size));
            self.touched.insert(*key, now_ms);
        }
    }

    fn insert(&mut self, key: Key, size: u64) {
        self.remove(&key);
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.by_key.insert(key, (self.tick, size));
        self.total += size;
    }

    fn remove(&mut self, key: &Key) {
        if let Some((tick, size)) = self.by_key.remove(key) {
            self.order.remove(&tick);
            self.total -= size;
            self.touched.remove(key);
        }
    }

    /// Removes least recently used entries until the total fits.
    fn evict_to(&mut self, max: u64) -> Vec<Key> {
        let mut out = Vec::new();
        while self.total > max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, size)) = self.by_key.remove(&key) {
                self.total -= size;
            }
            self.touched.remove(&key);
            out.push(key);
        }
        out
    }
}

/// Why the cache could not open.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gateway.fresh {path:?}: {source}")]
    Fresh { path: String, source: regex::Error },
}

pub struct Cache {
    store: CacheFile,
    lru: Mutex<Lru>,
    max_bytes: u64,
    fresh: Vec<(Regex, Duration)>,
    metrics: GatewayMetrics,
}

impl Cache {
    /// Opens (or creates) the cache file and reads its index. Blocking.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        fresh: &[crate::config::FreshRule],
        metrics: GatewayMetrics,
    ) -> Result<Cache, CacheError> {
        let store = CacheFile::open(path)?;
        let mut lru = Lru::default();
        for (key, size, _) in store.index()? {
            lru.insert(key, size);
        }
        let fresh = fresh
            .iter()
            .map(|f| {
                Regex::new(&f.path)
                    .map(|r| (r, Duration::from_secs(f.secs)))
                    .map_err(|source| CacheError::Fresh {
                        path: f.path.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        let cache = Cache {
            store,
            lru: Mutex::new(lru),
            max_bytes,
            fresh,
            metrics,
        };
        cache.evict();
        cache.export();
        Ok(cache)
    }

    fn export(&self) {
        let lru = self.lru.lock().expect("lru lock");
        self.metrics.cache_bytes.set(lru.total as i64);
        self.metrics.cache_entries.set(lru.by_key.len() as i64);
    }

    fn evict(&self) {
        let gone = self.lru.lock().expect("lru lock").evict_to(self.max_bytes);
        if gone.is_empty() {
            return;
        }
        self.metrics.cache_evictions.inc_by(gone.len() as u64);
        if let Err(e) = self.store.delete(&gone) {
            tracing::warn!(error = %e, "gateway cache: eviction failed");
        }
    }

    /// How long answers for this path may be served without asking GitHub.
    pub fn fresh_for(&self, path_and_query: &str) -> Option<Duration> {
        self.fresh
            .iter()
            .find(|(r, _)| r.is_match(path_and_query))
            .map(|(_, d)| *d)
    }

    pub async fn get(self: &Arc<Self>, key: Key) -> Option<Entry> {
        let me = self.clone();
        blocking(move || {
            let found = me.store.get(&key)?;
            if found.is_some() {
                me.lru
                    .lock()
                    .expect("lru lock")
                    .touch(&key, crate::clock::now_ms());
            }
            Ok(found)
        })
        .await
        .flatten()
    }

    pub async fn put(self: &Arc<Self>, key: Key, entry: Entry) {
        let size = entry.size();
        if size > self.max_bytes / MAX_ENTRY_SHARE {
            self.remove(key).await;
            return;
        }
        let me = self.clone();
        blocking(move || {
            me.store.put(&key, &entry, crate::clock::now_ms())?;
            me.lru.lock().expect("lru lock").insert(key, size);
            me.evict();
            me.export();
            Ok(())
        })
        .await;
    }

    /// GitHub said 304: the entry is current, with these headers.
    pub async fn revalidated(self: &Arc<Self>, key: Key, headers: Vec<u8>) {
        let me = self.clone();
        blocking(move || me.store.revalidated(&key, &headers, crate::clock::now_ms())).await;
    }

    pub async fn remove(self: &Arc<Self>, key: Key) {
        let me = self.clone();
        blocking(move || {
            me.store.delete(&[key])?;
            me.lru.lock().expect("lru lock").remove(&key);
            me.export();
            Ok(())
        })
        .await;
    }

    /// Entries under `prefix`, in every scope (a change is a change for
    /// every client), are revalidated before their next use, even inside a
    /// fresh window.
    pub async fn expire_prefix(self: &Arc<Self>, prefix: String) {
        let me = self.clone();
        blocking(move || me.store.expire_prefix(&prefix).map(drop)).await;
    }

    /// Writes the recorded uses to the file (called every few seconds).
    pub async fn flush_used(self: &Arc<Self>) {
        let touched: Vec<(Key, i64)> = self.lru.lock().expect("lru lock").touched.drain().collect();
        if touched.is_empty() {
            return;
        }
        let me = self.clone();
        blocking(move || me.store.used(&touched)).await;
    }
}

/// Runs cache I/O off the async threads; failures are logged and read as
/// "nothing cached".
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "gateway cache I/O failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "gateway cache task failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_scopes_paths_and_varying_headers() {
        let h = HeaderMap::new();
        let mut v3 = HeaderMap::new();
        v3.insert("accept", "application/vnd.github.v3.diff".parse().unwrap());
        let a = key("acme", "/repos/acme/w", &h);
        assert_ne!(a, key("other", "/repos/acme/w", &h));
        assert_ne!(a, key("acme", "/repos/acme/w?page=2", &h));
        assert_ne!(a, key("acme", "/repos/acme/w", &v3));
        let mut ua = HeaderMap::new();
        ua.insert("user-agent", "PyGithub".parse().unwrap());
        assert_eq!(
            a,
            key("acme", "/repos/acme/w", &ua),
            "User-Agent does not vary"
        );
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut lru = Lru::default();
        lru.insert([1; 32], 10);
        lru.insert([2; 32], 10);
        lru.insert([3; 32], 10);
        lru.touch(&[1; 32], 0);
        assert_eq!(lru.evict_to(20), vec![[2; 32]]);
        assert_eq!(lru.evict_to(10), vec![[3; 32]]);
        assert_eq!(lru.total, 10);
    }
}
