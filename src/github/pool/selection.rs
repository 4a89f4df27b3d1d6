//! Choosing among the credentials that may serve a request: the usable one
//! with the most remaining budget (the fewest waiting on a tie), or the
//! one holding the caller's ETag when usable (a 304 costs nothing).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::bookkeeping::Slot;
use super::credential::CredId;
use crate::github::budget::Resource;

/// The chosen lane, or when (epoch seconds) the first of them is usable
/// again.
pub(super) fn choose(
    lanes: &[Arc<Slot>],
    resource: Resource,
    prefer: Option<&CredId>,
    reserve: u64,
    now_ms: i64,
) -> Result<Arc<Slot>, i64> {
    let mut best: Option<(u64, usize, &Arc<Slot>)> = None;
    let mut earliest = i64::MAX;
    for slot in lanes {
        match slot.usable(resource, now_ms, reserve) {
            Ok(_) if prefer == Some(&slot.id) => return Ok(slot.clone()),
            Ok(remaining) => {
                let waiting = slot.waiting.load(Ordering::SeqCst);
                let better = match &best {
                    None => true,
                    Some((r, w, _)) => remaining > *r || (remaining == *r && waiting < *w),
                };
                if better {
                    best = Some((remaining, waiting, slot));
                }
            }
            Err(back_at) => earliest = earliest.min(back_at),
        }
    }
    best.map(|(_, _, s)| s.clone()).ok_or(earliest)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::super::bookkeeping::tests::{budget, headers};
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn lane(name: &str, remaining: Option<&str>) -> Arc<Slot> {
        let s = Slot::new(CredId::Token(name.into()));
        if let Some(r) = remaining {
            s.observe(
                StatusCode::OK,
                &budget(r, "1700003600"),
                b"",
                Resource::Core,
                NOW,
            );
        }
        Arc::new(s)
    }

    fn chosen(lanes: &[Arc<Slot>], prefer: Option<&CredId>, reserve: u64) -> Result<String, i64> {
        choose(lanes, Resource::Core, prefer, reserve, NOW).map(|s| s.id.to_string())
    }

    #[test]
    fn the_most_remaining_wins_and_an_unused_one_before_any() {
        let lanes = [
            lane("a", Some("10")),
            lane("b", Some("900")),
            lane("c", Some("50")),
        ];
        assert_eq!(chosen(&lanes, None, 0), Ok("token:b".into()));
        let with_new = [lanes[0].clone(), lanes[1].clone(), lane("new", None)];
        assert_eq!(chosen(&with_new, None, 0), Ok("token:new".into()));
    }

    #[test]
    fn on_a_tie_the_shorter_queue_wins() {
        let lanes = [lane("a", Some("10")), lane("b", Some("10"))];
        lanes[0].waiting.store(3, Ordering::SeqCst);
        assert_eq!(chosen(&lanes, None, 0), Ok("token:b".into()));
    }

    #[test]
    fn the_etag_holder_wins_while_usable() {
        let lanes = [lane("a", Some("10")), lane("b", Some("900"))];
        let a = CredId::Token("a".into());
        assert_eq!(chosen(&lanes, Some(&a), 0), Ok("token:a".into()));
        // At the reserve it is not usable: the best other one serves.
        assert_eq!(chosen(&lanes, Some(&a), 10), Ok("token:b".into()));
    }

    #[test]
    fn spent_and_paused_ones_are_passed_over_and_the_earliest_return_reported() {
        let spent = lane("spent", None);
        spent.observe(
            StatusCode::OK,
            &budget("0", "1700000500"),
            b"",
            Resource::Core,
            NOW,
        );
        let paused = lane("paused", Some("4000"));
        paused.observe(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "60")]),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(
            chosen(&[spent.clone(), paused.clone()], None, 0),
            Err(1_700_000_060)
        );
        let ok = lane("ok", Some("1"));
        assert_eq!(chosen(&[spent, paused, ok], None, 0), Ok("token:ok".into()));
        assert_eq!(
            chosen(&[], None, 0),
            Err(i64::MAX),
            "nothing to choose from"
        );
    }
}
