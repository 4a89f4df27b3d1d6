//! Reports: deliveries per day by organisation and event, each consumer's
//! success rate and latency, and the Actions workflows (part 6's report).

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::view::{self, Bars};
use super::{AdminError, Chrome, Session, Shared, render};
use crate::clock;

/// Upper bounds (ms) of the latency buckets of `attempt_hours`; the last
/// bucket holds everything slower. Kept in step with migration 0007's
/// trigger (a test checks that they agree).
pub const LATENCY_BUCKETS_MS: [i64; 11] =
    [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
/// Owners and events listed by name; the rest are summed as "others".
const TOP: usize = 12;

#[derive(Deserialize)]
pub struct Window {
    days: Option<i64>,
}

pub struct VolumeRow {
    pub name: String,
    pub total: String,
    pub chart: Bars,
}

pub struct ConsumerRow {
    pub sink: String,
    pub attempts: String,
    pub success: String,
    pub failed: String,
    pub paused: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub chart: Bars,
}

pub struct WorkflowRow {
    pub repository: String,
    pub workflow: String,
    pub runs: String,
    pub success: String,
    /// Success rate as a 0..=100 meter value; None without a verdict.
    pub rate: Option<u32>,
    pub run: String,
    pub queue: String,
    /// Widths (of 120) of the p50 and p95 run-duration bars.
    pub run_p50_w: String,
    pub run_p95_w: String,
    pub queue_p50_w: String,
    pub queue_p95_w: String,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    chrome: Chrome,
    days: i64,
    per_day: Bars,
    owners: Vec<VolumeRow>,
    events: Vec<VolumeRow>,
    consumers: Vec<ConsumerRow>,
    actions: bool,
    workflows: Vec<WorkflowRow>,
}

pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Query(w): Query<Window>,
) -> Result<Response, AdminError> {
    let days = w.days.unwrap_or(7).clamp(1, 90);
    let now = clock::now_ms();
    let today = now / 86_400_000;
    let first_day = today - days + 1;
    let since_ms = first_day * 86_400_000;
    let crate::store::views::Reports {
        per_day: volume,
        attempts,
    } = state.journal.reports(first_day).await?;
    let workflows = if state.actions {
        crate::sinks::actions::report::workflows(&state.journal, since_ms).await?
    } else {
        vec![]
    };

    let day_label = |d: i64| view::time(d * 86_400_000)[..10].to_string();
    let totals: Vec<(i64, i64)> = volume.iter().map(|(d, _, _, n)| (*d, *n)).collect();
    let per_day_points: Vec<(String, i64)> = view::dense(&totals, first_day, days)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (day_label(first_day + i as i64), n))
        .collect();
    let by = |key: fn(&(i64, String, String, i64)) -> &String| {
        let mut per: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for row in &volume {
            per.entry(key(row).clone())
                .or_default()
                .push((row.0, row.3));
        }
        volume_rows(per, first_day, days, &day_label)
    };

    let mut consumers: BTreeMap<String, ([i64; 12], i64, i64, i64)> = BTreeMap::new();
    for (sink, outcome, bucket, n) in attempts {
        let e = consumers.entry(sink).or_default();
        e.0[bucket.min(11)] += n;
        match outcome.as_str() {
            "done" => e.1 += n,
            "failed" => e.2 += n,
            _ => e.3 += n,
        }
    }
    let consumers = consumers
        .into_iter()
        .map(|(sink, (buckets, done, failed, paused))| {
            let points: Vec<(String, i64)> = buckets
                .iter()
                .enumerate()
                .map(|(i, n)| (bucket_label(i), *n))
                .collect();
            ConsumerRow {
                attempts: view::count(done + failed + paused),
                success: view::percent(done, done + failed),
                failed: view::count(failed),
                paused: view::count(paused),
                p50: percentile(&buckets, 0.50),
                p95: percentile(&buckets, 0.95),
                p99: percentile(&buckets, 0.99),
                chart: Bars::new(&format!("{sink}: attempts by latency"), &points, 240, 40),
                sink,
            }
        })
        .collect();

    let max_run = workflows
        .iter()
        .filter_map(|w| w.run_p95_secs)
        .fold(0.0, f64::max);
    let max_queue = workflows
        .iter()
        .filter_map(|w| w.queue_p95_secs)
        .fold(0.0, f64::max);
    let width = |v: Option<f64>, max: f64| {
        format!(
            "{:.1}",
            v.map_or(0.0, |v| if max > 0.0 { v / max * 120.0 } else { 0.0 })
        )
    };
    let secs = |p50: Option<f64>, p95: Option<f64>| match (p50, p95) {
        (Some(a), Some(b)) => format!(
            "{} / {}",
            view::span((a * 1000.0) as i64),
            view::span((b * 1000.0) as i64)
        ),
        _ => "–".into(),
    };
    let workflows = workflows
        .into_iter()
        .map(|w| WorkflowRow {
            runs: view::count(w.runs as i64),
            success: w
                .success_rate
                .map_or("–".into(), |r| format!("{:.1}%", r * 100.0)),
            rate: w.success_rate.map(|r| (r * 100.0).round() as u32),
            run: secs(w.run_p50_secs, w.run_p95_secs),
            queue: secs(w.queue_p50_secs, w.queue_p95_secs),
            run_p50_w: width(w.run_p50_secs, max_run),
            run_p95_w: width(w.run_p95_secs, max_run),
            queue_p50_w: width(w.queue_p50_secs, max_queue),
            queue_p95_w: width(w.queue_p95_secs, max_queue),
            repository: w.repository,
            workflow: w.workflow_name,
        })
        .collect();

    render(ReportsPage {
        chrome: Chrome::new(&session, "reports"),
        days,
        per_day: Bars::new(
            &format!("Deliveries per day, last {days} days"),
            &per_day_points,
            600,
            80,
        ),
        owners: by(|r| &r.1),
        events: by(|r| &r.2),
        consumers,
        actions: state.actions,
        workflows,
    })
}

/// The busiest `TOP` names with a per-day chart each, then the rest as one.
fn volume_rows(
    per: BTreeMap<String, Vec<(i64, i64)>>,
    first_day: i64,
    days: i64,
    day_label: &dyn Fn(i64) -> String,
) -> Vec<VolumeRow> {
    let mut named: Vec<(String, Vec<i64>)> = per
        .into_iter()
        .map(|(name, rows)| (name, view::dense(&rows, first_day, days)))
        .collect();
    named.sort_by_key(|(name, v)| (std::cmp::Reverse(v.iter().sum::<i64>()), name.clone()));
    let rest: Vec<(String, Vec<i64>)> = named.split_off(named.len().min(TOP));
    if !rest.is_empty() {
        let mut sum = vec![0; days as usize];
        for (_, v) in &rest {
            for (i, n) in v.iter().enumerate() {
                sum[i] += n;
            }
        }
        named.push((
            format!(
                "{} other{}",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
            sum,
        ));
    }
    named
        .into_iter()
        .map(|(name, v)| {
            let points: Vec<(String, i64)> = v
                .iter()
                .enumerate()
                .map(|(i, n)| (day_label(first_day + i as i64), *n))
                .collect();
            VolumeRow {
                total: view::count(v.iter().sum()),
                chart: Bars::new(&format!("{name} per day"), &points, 160, 24),
                name: if name.is_empty() {
                    "(no owner)".into()
                } else {
                    name
                },
            }
        })
        .collect()
}

fn bucket_label(i: usize) -> String {
    let ms = |ms: i64| {
        if ms < 1000 {
            format!("{ms} ms")
        } else {
            format!("{} s", ms as f64 / 1000.0)
        }
    };
    match LATENCY_BUCKETS_MS.get(i) {
        Some(b) => format!("≤ {}", ms(*b)),
        None => format!("> {}", ms(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1])),
    }
}

/// The bucket the `q` quantile falls in, as its bound (`≤ 250ms`).
fn percentile(buckets: &[i64; 12], q: f64) -> String {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return "–".into();
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_label(i);
        }
    }
    bucket_label(11)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_name_the_bucket_they_fall_in() {
        let mut b = [0i64; 12];
        b[2] = 90; // ≤ 50 ms
        b[6] = 9; // ≤ 1 s
        b[11] = 1; // > 30 s
        assert_eq!(percentile(&b, 0.5), "≤ 50 ms");
        assert_eq!(percentile(&b, 0.95), "≤ 1 s");
        assert_eq!(percentile(&b, 0.999), "> 30 s");
        assert_eq!(percentile(&[0; 12], 0.5), "–");
    }
}
