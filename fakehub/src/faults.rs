//! Injected latency, error answers and dropped connections, per route.

use std::time::Duration;

use rand::RngExt;

use crate::config::FaultConfig;

pub struct Faults {
    rules: Vec<Rule>,
}

struct Rule {
    method: Option<String>,
    segments: Vec<String>,
    config: FaultConfig,
    hits: std::sync::atomic::AtomicU64,
}

/// What to do to one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub latency: Duration,
    pub error_status: Option<u16>,
    /// Answer as a secondary limit, with this retry-after.
    pub retry_after: Option<u64>,
    /// The error's message, instead of GitHub's.
    pub message: Option<String>,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        if self
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut i = 0;
        for (k, seg) in self.segments.iter().enumerate() {
            if seg == "**" && k == self.segments.len() - 1 {
                return true;
            }
            match parts.get(i) {
                Some(p) if seg == "*" || seg == p => i += 1,
                _ => return false,
            }
        }
        i == parts.len()
    }
}

impl Faults {
    pub fn new(configs: &[FaultConfig]) -> Faults {
        Faults {
            rules: configs
                .iter()
                .map(|c| {
                    let (method, path) = c.route.split_once(' ').unwrap_or(("*", &c.route));
                    Rule {
                        method: (method != "*").then(|| method.to_string()),
                        segments: path
                            .trim_matches('/')
                            .split('/')
                            .map(String::from)
                            .collect(),
                        config: c.clone(),
                        hits: Default::default(),
                    }
                })
                .collect(),
        }
    }

    fn rule(&self, method: &str, path: &str, credential: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.matches(method, path)
                && r.config
                    .credential
                    .as_deref()
                    .is_none_or(|c| Some(c) == credential)
        })
    }

    /// Whether to drop this connection unanswered, decided before the
    /// caller is known; it leaves the rule's error count alone, which
    /// `decide` spends once per request.
    pub fn resets(&self, method: &str, path: &str) -> bool {
        self.rule(method, path, None).is_some_and(|r| {
            r.config.reset_rate > 0.0 && rand::rng().random_bool(r.config.reset_rate.min(1.0))
        })
    }

    /// The first matching rule decides; no rule, no fault. `credential` is
    /// the caller's rate-limit key, when known.
    pub fn decide(&self, method: &str, path: &str, credential: Option<&str>) -> Decision {
        let Some(rule) = self.rule(method, path, credential) else {
            return Decision::default();
        };
        let c = &rule.config;
        let mut rng = rand::rng();
        let ms = match c.latency_max_ms {
            Some(max) if max > c.latency_ms => rng.random_range(c.latency_ms..=max),
            _ => c.latency_ms,
        };
        let mut error = c.error_rate > 0.0 && rng.random_bool(c.error_rate.min(1.0));
        if error && let Some(max) = c.max_hits {
            error = rule.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < max;
        }
        Decision {
            latency: Duration::from_millis(ms),
            error_status: error.then_some(c.error_status),
            retry_after: error.then_some(c.retry_after_secs).flatten(),
            message: error.then(|| c.message.clone()).flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_match_segments() {
        let mut c = FaultConfig::new("GET /repos/*/*/pulls");
        c.error_rate = 1.0;
        let f = Faults::new(&[c]);
        assert_eq!(
            f.decide("GET", "/repos/o/r/pulls", None).error_status,
            Some(502)
        );
        assert_eq!(
            f.decide("POST", "/repos/o/r/pulls", None).error_status,
            None
        );
        assert_eq!(
            f.decide("GET", "/repos/o/r/pulls/1", None).error_status,
            None
        );
        let mut all = FaultConfig::new("* /**");
        all.latency_ms = 5;
        assert_eq!(
            Faults::new(&[all]).decide("PUT", "/x/y", None).latency,
            Duration::from_millis(5)
        );
    }
}
