//! What one attempt at a job came to, as a sink reports it and the store
//! records it (a leaf both use, so neither imports the other for it).

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The consumer asked us to wait (429/503 with Retry-After, or a spent
    /// rate limit): pause the partition; the attempt does not count.
    Pause {
        until_ms: i64,
    },
    /// Anything else: retry later, or dead letter after max_attempts.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    /// Where it was sent (None: run in-process).
    pub url: Option<String>,
    /// The consumer's answer headers, in wire form.
    pub response_headers: Option<Vec<u8>>,
}

impl Attempt {
    /// An attempt run in-process (no consumer): done, or failed with why.
    pub fn in_process(now_ms: i64, failed_because: Option<&str>) -> Attempt {
        Attempt {
            outcome: match failed_because {
                None => Outcome::Done,
                Some(_) => Outcome::Failed,
            },
            status_code: None,
            started_at_ms: now_ms,
            duration_ms: 0,
            error: failed_because.map(str::to_string),
            response_excerpt: None,
            url: None,
            response_headers: None,
        }
    }
}
