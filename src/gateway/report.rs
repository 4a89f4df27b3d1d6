//! Who spends what: usage lines summed by client, route, credential or
//! owner; the minutes a single credential would have run dry ("incidents
//! avoided"); and when an owner's budget runs out at the current rate.
//! Shared by `gatehouse clients usage` and the admin UI's GitHub page.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::store::clients::UsageLine;

/// What to sum usage lines by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Client,
    Route,
    Credential,
    Owner,
}

/// Usage summed for one key.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub requests: i64,
    pub units_spent: i64,
    pub units_saved: i64,
    /// Refused requests by rule (quota, priority, fair_share).
    pub refused: BTreeMap<String, i64>,
}

/// Rows by `by`, most units spent first (then most requests). A route row
/// is per client too (`client  GET /repos/{owner}/{repo}`), so a noisy
/// route names its spender.
pub fn breakdown(lines: &[UsageLine], by: By) -> Vec<Row> {
    let mut rows: HashMap<String, Row> = HashMap::new();
    for l in lines {
        let key = match by {
            By::Client => l.client.clone(),
            By::Route => format!("{}  {}", l.client, l.route),
            By::Credential if l.credential.is_empty() => "(none: cache or refused)".into(),
            By::Credential => l.credential.clone(),
            By::Owner if l.owner.is_empty() => "(none)".into(),
            By::Owner => l.owner.clone(),
        };
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            key,
            ..Row::default()
        });
        row.requests += l.requests;
        row.units_spent += l.units_spent;
        row.units_saved += l.units_saved;
        if !l.refused_by.is_empty() {
            *row.refused.entry(l.refused_by.clone()).or_default() += l.requests;
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        (b.units_spent, b.requests, &a.key).cmp(&(a.units_spent, a.requests, &b.key))
    });
    rows
}

/// Per owner, the minutes in which the hour ending there asked for more
/// units (spent + saved) than `limit(owner)`: one credential without the
/// cache would have been spent then. `minutes` is (owner, minute, spent,
/// saved), ordered by owner and minute.
pub fn incidents_avoided(
    minutes: &[(String, i64, i64, i64)],
    limit: impl Fn(&str) -> u64,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < minutes.len() {
        let owner = &minutes[i].0;
        let cap = limit(owner) as i64;
        let mut window: VecDeque<(i64, i64)> = VecDeque::new();
        let mut sum = 0i64;
        let mut over = 0u64;
        while i < minutes.len() && &minutes[i].0 == owner {
            let (_, minute, spent, saved) = &minutes[i];
            window.push_back((*minute, spent + saved));
            sum += spent + saved;
            while window.front().is_some_and(|(m, _)| *m <= minute - 60) {
                sum -= window.pop_front().map_or(0, |(_, u)| u);
            }
            if sum > cap {
                over += 1;
            }
            i += 1;
        }
        out.insert(owner.clone(), over);
    }
    out
}

/// When an owner's budget would be spent at the current rate, if before
/// its reset: `remaining` units left, spending `per_minute`, resetting at
/// `reset_ms`. None = it lasts until the reset.
pub fn runs_out_at(remaining: u64, per_minute: f64, now_ms: i64, reset_ms: i64) -> Option<i64> {
    if per_minute <= 0.0 {
        return None;
    }
    let at = now_ms + (remaining as f64 / per_minute * 60_000.0) as i64;
    (at < reset_ms).then_some(at)
}

/// Units spent per minute over the last `window` minutes of `minutes`
/// (one owner's), for [`runs_out_at`].
pub fn rate(minutes: &[(String, i64, i64, i64)], owner: &str, now_minute: i64, window: i64) -> f64 {
    let spent: i64 = minutes
        .iter()
        .filter(|(o, m, _, _)| o == owner && *m > now_minute - window)
        .map(|(_, _, spent, _)| spent)
        .sum();
    spent as f64 / window as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(client: &str, route: &str, credential: &str, refused: &str, n: i64) -> UsageLine {
        UsageLine {
            client: client.into(),
            owner: "acme".into(),
            route: route.into(),
            credential: credential.into(),
            refused_by: refused.into(),
            requests: n,
            units_spent: if refused.is_empty() && !credential.is_empty() {
                n
            } else {
                0
            },
            units_saved: if credential.is_empty() && refused.is_empty() {
                n
            } else {
                0
            },
            ..UsageLine::default()
        }
    }

    #[test]
    fn breakdowns_sum_and_order_by_units() {
        let lines = vec![
            line("ci", "GET /a", "token:x", "", 5),
            line("ci", "GET /a", "", "", 7),
            line("bot", "GET /b", "token:x", "", 9),
            line("bot", "GET /b", "", "fair_share", 4),
        ];
        let by_client = breakdown(&lines, By::Client);
        assert_eq!(by_client[0].key, "bot");
        assert_eq!(by_client[0].units_spent, 9);
        assert_eq!(by_client[0].refused.get("fair_share"), Some(&4));
        assert_eq!(by_client[1].units_saved, 7);
        let by_cred = breakdown(&lines, By::Credential);
        assert_eq!(by_cred[0].key, "token:x");
        assert_eq!(by_cred[0].units_spent, 14);
        assert_eq!(breakdown(&lines, By::Route)[1].key, "ci  GET /a");
    }

    #[test]
    fn incidents_count_minutes_whose_hour_was_over() {
        // 100 units a minute for 90 minutes against 5,000/h: the hour is
        // over 5,000 from its 51st minute on, so 40 minutes.
        let minutes: Vec<_> = (0..90).map(|m| ("acme".to_string(), m, 60, 40)).collect();
        let got = incidents_avoided(&minutes, |_| 5_000);
        assert_eq!(got.get("acme"), Some(&40));
        let got = incidents_avoided(&minutes, |_| 15_000);
        assert_eq!(got.get("acme"), Some(&0));
    }

    #[test]
    fn a_budget_runs_out_only_before_its_reset() {
        assert_eq!(runs_out_at(600, 60.0, 0, 3_600_000), Some(600_000));
        assert_eq!(runs_out_at(600, 6.0, 0, 3_600_000), None);
        assert_eq!(runs_out_at(600, 0.0, 0, 3_600_000), None);
    }
}
