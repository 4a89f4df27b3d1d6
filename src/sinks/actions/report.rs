//! Per-workflow reports from the Actions state: runs, success rate, run
//! duration and job queue time percentiles. `gatehouse actions report`
//! prints them; the admin UI will chart them.

use serde::Serialize;

use crate::store::{Store, StoreError};

/// Conclusions that are a verdict on the code; cancelled, skipped, neutral
/// and action_required runs are left out of the success rate.
const VERDICTS: &[&str] = &["success", "failure", "timed_out", "startup_failure"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkflowReport {
    pub repository: String,
    pub workflow_name: String,
    /// Run attempts completed in the window.
    pub runs: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// succeeded / (succeeded + failed); None without a verdict.
    pub success_rate: Option<f64>,
    pub run_p50_secs: Option<f64>,
    pub run_p95_secs: Option<f64>,
    /// Jobs completed in the window, and the queue time of those that ran.
    pub jobs: usize,
    pub queue_p50_secs: Option<f64>,
    pub queue_p95_secs: Option<f64>,
}

/// Nearest-rank percentile of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[derive(Default)]
struct Acc {
    runs: usize,
    succeeded: usize,
    failed: usize,
    durations: Vec<f64>,
    jobs: usize,
    queue: Vec<f64>,
}

fn secs(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    Some((to? - from?).max(0) as f64 / 1000.0)
}

/// One row per (repository, workflow) with runs or jobs completed since
/// `since_ms`, busiest first.
pub async fn workflows(store: &Store, since_ms: i64) -> Result<Vec<WorkflowReport>, StoreError> {
    let f = store.finished_workflows(since_ms).await?;
    // Which conclusions count as a success or a failure, by index.
    let verdict: Vec<Option<bool>> = f
        .conclusions
        .iter()
        .map(|c| match c.as_str() {
            "success" => Some(true),
            c if VERDICTS.contains(&c) => Some(false),
            _ => None,
        })
        .collect();
    let mut acc: Vec<Acc> = (0..f.workflows.len()).map(|_| Acc::default()).collect();
    for r in &f.runs {
        let a = &mut acc[r.workflow as usize];
        a.runs += 1;
        match r.conclusion.and_then(|c| verdict[c as usize]) {
            Some(true) => a.succeeded += 1,
            Some(false) => a.failed += 1,
            None => {}
        }
        a.durations
            .extend(secs(r.run_started_at_ms, r.completed_at_ms));
    }
    for j in &f.jobs {
        let a = &mut acc[j.workflow as usize];
        a.jobs += 1;
        a.queue.extend(secs(j.created_at_ms, j.started_at_ms));
    }
    let acc = f.workflows.into_iter().zip(acc);
    let mut out: Vec<WorkflowReport> = acc
        .map(|((repository, workflow_name), mut a)| {
            a.durations.sort_by(f64::total_cmp);
            a.queue.sort_by(f64::total_cmp);
            let verdicts = a.succeeded + a.failed;
            WorkflowReport {
                repository,
                workflow_name,
                runs: a.runs,
                succeeded: a.succeeded,
                failed: a.failed,
                success_rate: (verdicts > 0).then(|| a.succeeded as f64 / verdicts as f64),
                run_p50_secs: percentile(&a.durations, 50.0),
                run_p95_secs: percentile(&a.durations, 95.0),
                jobs: a.jobs,
                queue_p50_secs: percentile(&a.queue, 50.0),
                queue_p95_secs: percentile(&a.queue, 95.0),
            }
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse((r.runs, r.jobs)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
    }
}
