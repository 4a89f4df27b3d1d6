//! The gateway's response cache: GitHub answers keyed by the credential
//! scope they were read under (never served across owners), the path and
//! query, and the request headers that change an answer. On one node they
//! live in a SQLite file of their own and a size bound evicts the least
//! recently used at once; where replicas share a PostgreSQL store they
//! live in it, so one replica's fetch is every replica's hit, and one
//! replica at a time (a duty) evicts down to the bound every few seconds.
//! A cache failure is logged and treated as a miss: the gateway keeps
//! answering.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::duties::Duty;
use crate::gateway::metrics::GatewayMetrics;
use crate::store::StoreError;
use crate::store::cache::{CacheFile, CacheStore};
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
}

impl Lru {
    fn touch(&mut self, key: &Key) {
        if let Some((tick, size)) = self.by_key.get(key).copied() {
            self.order.remove(&tick);
            self.tick += 1;
            self.order.insert(self.tick, *key);
            self.by_key.insert(*key, (self.tick, size));
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
    store: Arc<dyn CacheStore>,
    /// On one node: which entries exist and how recently each was used, so
    /// that serving a hit writes nothing and eviction needs no query. None
    /// where replicas share the cache (see [`Cache::maintain`]).
    lru: Option<Mutex<Lru>>,
    /// Uses not yet written (for the eviction order, and after a restart).
    touched: Mutex<HashMap<Key, i64>>,
    /// Where replicas share the cache: the duty of evicting it.
    duty: Option<Duty>,
    max_bytes: u64,
    fresh: Vec<(Regex, Duration)>,
    metrics: GatewayMetrics,
}

/// The duty of evicting the shared cache down to its bound, held this
/// long past each pass, so a holder that dies frees it soon.
pub const EVICTION_DUTY: &str = "gateway-cache";
pub const EVICTION_DUTY_TERM: Duration = Duration::from_secs(30);

fn fresh_rules(fresh: &[crate::config::FreshRule]) -> Result<Vec<(Regex, Duration)>, CacheError> {
    fresh
        .iter()
        .map(|f| {
            Regex::new(&f.path)
                .map(|r| (r, Duration::from_secs(f.secs)))
                .map_err(|source| CacheError::Fresh {
                    path: f.path.clone(),
                    source,
                })
        })
        .collect()
}

impl Cache {
    /// Opens (or creates) this node's cache file and reads its index.
    pub async fn open(
        path: &Path,
        max_bytes: u64,
        fresh: &[crate::config::FreshRule],
        metrics: GatewayMetrics,
    ) -> Result<Cache, CacheError> {
        let fresh = fresh_rules(fresh)?;
        let path = path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || CacheFile::open(&path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("gateway cache: {e}")))??;
        let mut lru = Lru::default();
        for (key, size, _) in file.index().await? {
            lru.insert(key, size);
        }
        let cache = Cache {
            store: Arc::new(file),
            lru: Some(Mutex::new(lru)),
            touched: Mutex::default(),
            duty: None,
            max_bytes,
            fresh,
            metrics,
        };
        cache.evict().await;
        cache.export();
        Ok(cache)
    }

    /// The cache replicas share (`store`), evicted under `duty`
    /// ([`EVICTION_DUTY`]).
    pub fn shared(
        store: Arc<dyn CacheStore>,
        duty: Duty,
        max_bytes: u64,
        fresh: &[crate::config::FreshRule],
        metrics: GatewayMetrics,
    ) -> Result<Cache, CacheError> {
        Ok(Cache {
            store,
            lru: None,
            touched: Mutex::default(),
            duty: Some(duty),
            max_bytes,
            fresh: fresh_rules(fresh)?,
            metrics,
        })
    }

    fn export(&self) {
        if let Some(lru) = &self.lru {
            let lru = lru.lock().expect("lru lock");
            self.metrics.cache_bytes.set(lru.total as i64);
            self.metrics.cache_entries.set(lru.by_key.len() as i64);
        }
    }

    /// On one node, evicts the least recently used past the bound.
    async fn evict(&self) {
        let Some(lru) = &self.lru else {
            return;
        };
        let gone = lru.lock().expect("lru lock").evict_to(self.max_bytes);
        if gone.is_empty() {
            return;
        }
        self.metrics.cache_evictions.inc_by(gone.len() as u64);
        {
            let mut touched = self.touched.lock().expect("touched lock");
            for k in &gone {
                touched.remove(k);
            }
        }
        logged(self.store.delete(gone).await);
    }

    /// How long answers for this path may be served without asking GitHub.
    pub fn fresh_for(&self, path_and_query: &str) -> Option<Duration> {
        self.fresh
            .iter()
            .find(|(r, _)| r.is_match(path_and_query))
            .map(|(_, d)| *d)
    }

    pub async fn get(&self, key: Key) -> Option<Entry> {
        let found = logged(self.store.get(key).await).flatten()?;
        if let Some(lru) = &self.lru {
            lru.lock().expect("lru lock").touch(&key);
        }
        self.touched
            .lock()
            .expect("touched lock")
            .insert(key, crate::clock::now_ms());
        Some(found)
    }

    pub async fn put(&self, key: Key, entry: Entry) {
        let size = entry.size();
        if size > self.max_bytes / MAX_ENTRY_SHARE {
            self.remove(key).await;
            return;
        }
        if logged(self.store.put(key, entry, crate::clock::now_ms()).await).is_none() {
            return;
        }
        if let Some(lru) = &self.lru {
            lru.lock().expect("lru lock").insert(key, size);
            self.evict().await;
            self.export();
        }
    }

    /// GitHub said 304: the entry is current, with these headers.
    pub async fn revalidated(&self, key: Key, headers: Vec<u8>) {
        logged(
            self.store
                .revalidated(key, headers, crate::clock::now_ms())
                .await,
        );
    }

    pub async fn remove(&self, key: Key) {
        logged(self.store.delete(vec![key]).await);
        self.touched.lock().expect("touched lock").remove(&key);
        if let Some(lru) = &self.lru {
            lru.lock().expect("lru lock").remove(&key);
            self.export();
        }
    }

    /// Entries under `prefix`, in every scope (a change is a change for
    /// every client), are revalidated before their next use, even inside a
    /// fresh window.
    pub async fn expire_prefix(&self, prefix: String) {
        logged(self.store.expire_prefix(prefix).await);
    }

    /// Writes the recorded uses (called every few seconds).
    pub async fn flush_used(&self) {
        let touched: Vec<(Key, i64)> = self.touched.lock().expect("touched lock").drain().collect();
        if !touched.is_empty() {
            logged(self.store.used(touched).await);
        }
    }

    /// Where replicas share the cache (called every few seconds, after
    /// [`Cache::flush_used`]): publishes its size, and past the bound, the
    /// replica holding the eviction duty evicts the least recently used.
    /// The bound may be passed by what is stored between two passes.
    pub async fn maintain(&self) {
        let Some(duty) = &self.duty else {
            return;
        };
        let Some((entries, bytes)) = logged(self.store.totals().await) else {
            return;
        };
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.cache_entries.set(entries as i64);
        if bytes <= self.max_bytes {
            return;
        }
        if !duty.mine().await {
            return;
        }
        if let Some(gone) = logged(self.store.evict_to(self.max_bytes).await) {
            self.metrics.cache_evictions.inc_by(gone as u64);
            if let Some((entries, bytes)) = logged(self.store.totals().await) {
                self.metrics.cache_bytes.set(bytes as i64);
                self.metrics.cache_entries.set(entries as i64);
            }
        }
    }
}

/// A cache failure is logged and read as "nothing cached".
fn logged<T>(r: Result<T, StoreError>) -> Option<T> {
    r.map_err(|e| tracing::warn!(error = %e, "gateway cache I/O failed"))
        .ok()
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
        lru.touch(&[1; 32]);
        assert_eq!(lru.evict_to(20), vec![[2; 32]]);
        assert_eq!(lru.evict_to(10), vec![[3; 32]]);
        assert_eq!(lru.total, 10);
    }
}
