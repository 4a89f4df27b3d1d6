//! Webhook requests that were refused, kept in memory for the admin UI's
//! overview: counts by reason over the last hour and the last few, with
//! time, event header, source address and reason (never the body or the
//! signature), so "GitHub says failed, gatehouse shows nothing" has an
//! answer (a wrong secret looks like silence otherwise).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

/// How many refusals are kept to show one by one.
const LAST: usize = 20;
/// Minutes of counts kept.
const WINDOW_MINUTES: i64 = 60;
/// Header text longer than this is cut: it came from anyone.
const MAX_TEXT: usize = 100;

/// One refused request, as shown.
#[derive(Debug, Clone)]
pub struct Refused {
    pub at_ms: i64,
    pub status: u16,
    /// The `X-GitHub-Event` header as sent (cut), or `-`.
    pub event: String,
    /// The peer's address, when the listener knew it.
    pub from: Option<IpAddr>,
    /// The kind of problem, as counted.
    pub kind: &'static str,
    /// The full reason (cut).
    pub reason: String,
}

#[derive(Default)]
struct Inner {
    last: VecDeque<Refused>,
    /// (minute, kind, count), oldest first.
    counts: VecDeque<(i64, &'static str, u64)>,
}

/// Shared by the webhook handler (which records) and the admin UI (which
/// reads).
#[derive(Default)]
pub struct Rejections(Mutex<Inner>);

fn cut(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

impl Rejections {
    pub fn record(
        &self,
        at_ms: i64,
        status: u16,
        event: Option<&str>,
        from: Option<IpAddr>,
        kind: &'static str,
        reason: &str,
    ) {
        let mut inner = self.0.lock().expect("rejections lock");
        let minute = at_ms / 60_000;
        while inner
            .counts
            .front()
            .is_some_and(|(m, _, _)| *m <= minute - WINDOW_MINUTES)
        {
            inner.counts.pop_front();
        }
        // Counted by kind, a fixed set, so senders cannot grow this.
        match inner
            .counts
            .iter_mut()
            .rev()
            .take_while(|(m, _, _)| *m == minute)
            .find(|(_, k, _)| *k == kind)
        {
            Some(c) => c.2 += 1,
            None => inner.counts.push_back((minute, kind, 1)),
        }
        if inner.last.len() == LAST {
            inner.last.pop_front();
        }
        inner.last.push_back(Refused {
            at_ms,
            status,
            event: cut(event.unwrap_or("-")),
            from,
            kind,
            reason: cut(reason),
        });
    }

    /// Counts by kind since `since_ms` (most first), and the last few
    /// refusals (newest first).
    pub fn since(&self, since_ms: i64) -> (Vec<(&'static str, u64)>, Vec<Refused>) {
        let inner = self.0.lock().expect("rejections lock");
        let first = since_ms / 60_000;
        let mut by: Vec<(&'static str, u64)> = Vec::new();
        for (m, kind, n) in &inner.counts {
            if *m < first {
                continue;
            }
            match by.iter_mut().find(|(k, _)| k == kind) {
                Some(e) => e.1 += n,
                None => by.push((kind, *n)),
            }
        }
        by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let last = inner
            .last
            .iter()
            .rev()
            .filter(|r| r.at_ms >= since_ms)
            .cloned()
            .collect();
        (by, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_keeps_the_last_few() {
        let r = Rejections::default();
        let ip: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
        for i in 0..30 {
            r.record(
                60_000 * 100 + i,
                401,
                Some("push"),
                ip,
                "bad signature",
                "bad",
            );
        }
        r.record(
            60_000 * 101,
            400,
            Some("x\u{1b}[2J"),
            ip,
            "missing GitHub header",
            "missing X-GitHub-Delivery header",
        );
        let (by, last) = r.since(60_000 * 90);
        assert_eq!(by[0], ("bad signature", 30));
        assert_eq!(by[1].1, 1);
        assert_eq!(last.len(), LAST);
        assert_eq!(last[0].status, 400, "newest first");
        assert_eq!(last[0].event, "x[2J", "control characters dropped");
        // An hour later the counts have aged out.
        r.record(
            60_000 * 170,
            413,
            None,
            None,
            "payload too large",
            "too large",
        );
        let (by, _) = r.since(60_000 * 111);
        assert_eq!(by, vec![("payload too large", 1)]);
    }
}
