//! `[[notify]]`: a JSON POST with a Slack-compatible `text` when a problem
//! opens and when it clears, for operators without Alertmanager. A
//! message carries the problem's line (route, credential and source names,
//! counts; never a secret, a URL or payload content), never the
//! receiver's URL in a log. At most `max_per_hour` messages per receiver;
//! changes past it are counted and told in the next message allowed. A
//! message the receiver fails is tried again at the next look, in order,
//! for up to an hour.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Problem, Severity};
use crate::config::{NotifyConfig, Secret};

const HOUR_MS: i64 = 3_600_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A problem opened or cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Opened(Problem),
    Cleared(Problem),
}

impl Change {
    /// The changes from `before` to `now`, by key: opened in `now`'s
    /// order, then cleared.
    pub fn between(before: &[Problem], now: &[Problem]) -> Vec<Change> {
        let opened = now
            .iter()
            .filter(|p| !before.iter().any(|b| b.key == p.key))
            .map(|p| Change::Opened(p.clone()));
        let cleared = before
            .iter()
            .filter(|b| !now.iter().any(|p| p.key == b.key))
            .map(|b| Change::Cleared(b.clone()));
        opened.chain(cleared).collect()
    }

    fn message(&self, base: &str, held_back: u64) -> Value {
        let (state, p, head) = match self {
            Change::Opened(p) => (
                "open",
                p,
                match p.severity {
                    Severity::Critical => ":red_circle: gatehouse problem",
                    Severity::Warning => ":warning: gatehouse problem",
                },
            ),
            Change::Cleared(p) => ("clear", p, ":white_check_mark: gatehouse problem cleared"),
        };
        let link = format!("{base}{}", p.link);
        let mut text = format!("{head}: {} ({link})", p.text);
        if held_back > 0 {
            text.push_str(&format!(
                "\n({held_back} earlier change(s) were not sent: over max_per_hour)"
            ));
        }
        json!({
            "text": text,
            "state": state,
            "key": p.key,
            "severity": p.severity,
            "problem": p.text,
            "link": link,
        })
    }
}

/// One receiver, its queue and its hourly allowance.
pub struct Notifier {
    /// Its position in the config: how logs and metrics name it (the URL
    /// is a secret).
    pub name: String,
    url: Secret,
    max_per_hour: usize,
    http: reqwest::Client,
    /// Messages waiting to go (queued at, message), oldest first.
    queue: VecDeque<(i64, Change)>,
    /// When the messages of the last hour went.
    sent: VecDeque<i64>,
    /// Changes not sent because of the allowance, since the last message.
    held_back: u64,
}

/// What became of one look's messages to one receiver.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    pub failed: u64,
    pub held_back: u64,
}

impl Notifier {
    pub fn all(config: &[NotifyConfig]) -> Vec<Notifier> {
        config
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                Some(Notifier {
                    name: format!("notify[{i}]"),
                    url: n.url.clone()?,
                    max_per_hour: n.max_per_hour.max(1) as usize,
                    http: reqwest::Client::builder()
                        .timeout(TIMEOUT)
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .expect("a client with a timeout builds"),
                    queue: VecDeque::new(),
                    sent: VecDeque::new(),
                    held_back: 0,
                })
            })
            .collect()
    }

    pub fn queue(&mut self, changes: &[Change], now_ms: i64) {
        self.queue
            .extend(changes.iter().map(|c| (now_ms, c.clone())));
    }

    /// Sends what is queued, in order, within the allowance; stops at the
    /// first failure (tried again next time). `base` prefixes links.
    pub async fn flush(&mut self, now_ms: i64, base: &str) -> Sent {
        let mut out = Sent::default();
        while self.sent.front().is_some_and(|t| now_ms - t >= HOUR_MS) {
            self.sent.pop_front();
        }
        // A receiver down for an hour gets the news since, not a backlog.
        while self
            .queue
            .front()
            .is_some_and(|(t, _)| now_ms - t >= HOUR_MS)
        {
            self.queue.pop_front();
            out.failed += 1;
        }
        while let Some((_, change)) = self.queue.front() {
            if self.sent.len() >= self.max_per_hour {
                let n = self.queue.len() as u64;
                self.held_back += n;
                out.held_back += n;
                self.queue.clear();
                break;
            }
            let body = change.message(base, self.held_back);
            let answer = self
                .http
                .post(String::from_utf8_lossy(self.url.expose()).as_ref())
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(a) if a.status().is_success() => {
                    self.queue.pop_front();
                    self.sent.push_back(now_ms);
                    self.held_back = 0;
                    out.sent += 1;
                }
                Ok(a) => {
                    tracing::warn!(receiver = %self.name, status = a.status().as_u16(), "notification refused; tried again at the next look");
                    out.failed += 1;
                    break;
                }
                Err(e) => {
                    // The error may quote the URL: only its kind is logged.
                    let why = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    };
                    tracing::warn!(receiver = %self.name, why, "notification not delivered; tried again at the next look");
                    out.failed += 1;
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};

    use super::*;

    fn p(key: &str) -> Problem {
        Problem {
            key: key.into(),
            severity: Severity::Warning,
            text: format!("{key} is wrong"),
            link: "/admin/".into(),
        }
    }

    #[test]
    fn changes_are_by_key_whatever_the_text() {
        let mut changed = p("a");
        changed.text = "a is wrong twice".into();
        let c = Change::between(&[p("a"), p("b")], &[changed, p("c")]);
        assert_eq!(c, vec![Change::Opened(p("c")), Change::Cleared(p("b"))]);
        assert!(Change::between(&[p("a")], &[p("a")]).is_empty());
    }

    /// A receiver on a loopback port that answers `status` and keeps the
    /// texts it got.
    async fn receiver(status: Arc<AtomicU16>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::routing::post;
        let got: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let keep = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |axum::Json(v): axum::Json<Value>| {
                let (keep, status) = (keep.clone(), status.clone());
                async move {
                    let code = status.load(Ordering::SeqCst);
                    if code == 200 {
                        keep.lock()
                            .unwrap()
                            .push(v["text"].as_str().unwrap().to_string());
                    }
                    http::StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, got)
    }

    #[tokio::test]
    async fn the_allowance_holds_back_and_a_failure_is_tried_again_in_order() {
        let status = Arc::new(AtomicU16::new(200));
        let (url, got) = receiver(status.clone()).await;
        let mut n = Notifier::all(&[NotifyConfig {
            url: Some(Secret::new(url)),
            max_per_hour: 2,
            ..NotifyConfig::default()
        }])
        .remove(0);
        let hour = 3_600_000;
        let opened: Vec<Change> = ["a", "b", "c"]
            .iter()
            .map(|k| Change::Opened(p(k)))
            .collect();
        n.queue(&opened, 0);
        let sent = n.flush(0, "").await;
        assert_eq!((sent.sent, sent.held_back, sent.failed), (2, 1, 0));
        // The receiver fails: kept, and sent first once it answers.
        status.store(503, Ordering::SeqCst);
        n.queue(&[Change::Cleared(p("a"))], hour);
        assert_eq!(n.flush(hour, "").await.failed, 1);
        n.queue(&[Change::Cleared(p("b"))], hour + 1);
        status.store(200, Ordering::SeqCst);
        let sent = n.flush(hour + 2, "").await;
        assert_eq!((sent.sent, sent.failed), (2, 0));
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[2].contains("cleared: a is wrong"), "{got:?}");
        assert!(
            got[2].contains("(1 earlier change(s) were not sent"),
            "{got:?}"
        );
        assert!(
            got[3].contains("cleared: b is wrong") && !got[3].contains("earlier"),
            "{got:?}"
        );
    }

    #[test]
    fn a_message_says_what_and_where_and_what_was_held_back() {
        let m = Change::Cleared(p("a")).message("http://127.0.0.1:9", 3);
        let text = m["text"].as_str().unwrap();
        assert!(
            text.contains("cleared: a is wrong (http://127.0.0.1:9/admin/)"),
            "{text}"
        );
        assert!(text.contains("3 earlier change(s) were not sent"), "{text}");
        assert_eq!(m["state"], "clear");
    }
}
