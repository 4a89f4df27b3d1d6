//! What this process is sending right now, per (sink, partition), for the
//! partitions page: a partition shows "sending" only while a request is
//! out, not for the whole time its lease is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One request out to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub job_id: i64,
    /// 1-based, counting the attempts that counted before it.
    pub attempt: u32,
    pub since_ms: i64,
}

type Key = (String, String);

/// Shared by the scheduler's workers (which mark) and the admin UI.
#[derive(Default)]
pub struct InFlight(Mutex<HashMap<Key, Sending>>);

/// Unmarks its partition when dropped, however the send ended (a
/// cancelled future included).
pub struct Mark<'a> {
    of: &'a InFlight,
    key: Key,
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        self.of.0.lock().expect("in-flight lock").remove(&self.key);
    }
}

impl InFlight {
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight::default())
    }

    /// Marks a send as out until the returned mark is dropped.
    pub fn mark(&self, sink: &str, partition: &str, sending: Sending) -> Mark<'_> {
        let key = (sink.to_string(), partition.to_string());
        self.0
            .lock()
            .expect("in-flight lock")
            .insert(key.clone(), sending);
        Mark { of: self, key }
    }

    pub fn get(&self, sink: &str, partition: &str) -> Option<Sending> {
        self.0
            .lock()
            .expect("in-flight lock")
            .get(&(sink.to_string(), partition.to_string()))
            .cloned()
    }
}

/// A name for this process as a lease holder that an operator can read
/// and find: the host, the pid and when it started (so a restarted
/// process with the same pid, as pid 1 in a container always is, is
/// another holder).
pub fn worker_name(started_ms: i64) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    let started = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(started_ms.max(0) as u64),
    );
    // The random tag keeps two replicas apart even where hostnames and
    // pids repeat (containers: every replica pid 1 on host "gatehouse"):
    // a lease row trusts its owner's name.
    let tag: u32 = rand::random();
    format!(
        "{host} pid {} (started {started}, {tag:08x})",
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_lasts_as_long_as_the_send() {
        let f = InFlight::default();
        let s = Sending {
            job_id: 7,
            attempt: 2,
            since_ms: 1,
        };
        {
            let _m = f.mark("ci", "acme", s.clone());
            assert_eq!(f.get("ci", "acme"), Some(s));
            assert_eq!(f.get("ci", "globex"), None);
        }
        assert_eq!(f.get("ci", "acme"), None);
        let name = worker_name(0);
        assert!(
            name.contains(&format!("pid {}", std::process::id())),
            "{name}"
        );
        assert!(name.contains("1970-01-01T00:00:00Z"), "{name}");
    }
}
