//! The Actions counters and histograms, held in memory as sums over the
//! state rows. Each committed change subtracts what the old row contributed
//! and adds what the new one does, so the sums are always a function of the
//! rows (and the rows of the set of deliveries): never of how often or in
//! what order deliveries came. At start they are rebuilt from the rows, so
//! a restart keeps every counter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::event::{self, JobRow, RunRow};
use super::labels::{OTHER, Policy, short_name};
use super::state::Change;

/// Histogram bounds in seconds: from a second to a day (GitHub lets a
/// self-hosted job run for 5 days, a hosted one for 6 hours).
pub const BUCKETS: [f64; 14] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0,
    86400.0,
];

/// A label value; shared, so that copying a series key copies no text.
type Text = Arc<str>;

fn text(s: &str) -> Text {
    Arc::from(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    JobsQueued,
    JobsStarted,
    JobsCompleted,
    JobConclusions,
    JobQueueDuration,
    JobRunDuration,
    RunsCompleted,
    RunDuration,
}

/// Job counters carry actions-runner-controller's labels; conclusions
/// and run times add the conclusion.
const JOB_LABELS_CONCLUSION: &[&str] = &[
    "runs_on",
    "job_name",
    "organization",
    "owner",
    "repository_full_name",
    "workflow_name",
    "head_branch",
    "job_conclusion",
];
const JOB_LABELS: &[&str] = JOB_LABELS_CONCLUSION
    .split_at(JOB_LABELS_CONCLUSION.len() - 1)
    .0;
/// Job histograms and gauges: by repository, workflow and runner labels.
/// A histogram is ~18 samples per label set, so it leaves out job name,
/// branch and conclusion, which multiply series without changing which
/// pool or workflow is slow.
const JOB_PLACE: &[&str] = &[
    "organization",
    "owner",
    "repository_full_name",
    "workflow_name",
    "runs_on",
];
const RUN_LABELS_CONCLUSION: &[&str] = &[
    "organization",
    "owner",
    "repository_full_name",
    "workflow_name",
    "head_branch",
    "event",
    "conclusion",
];
/// Run histograms and gauges: by repository and workflow (the place
/// labels every family starts with, see `place_labels`).
const RUN_PLACE: &[&str] = RUN_LABELS_CONCLUSION.split_at(4).0;

impl Family {
    const ALL: [Family; 8] = [
        Family::JobsQueued,
        Family::JobsStarted,
        Family::JobsCompleted,
        Family::JobConclusions,
        Family::JobQueueDuration,
        Family::JobRunDuration,
        Family::RunsCompleted,
        Family::RunDuration,
    ];

    /// Name (without `_total` or unit), help, whether a histogram, labels.
    fn describe(self) -> (&'static str, &'static str, bool, &'static [&'static str]) {
        match self {
            Family::JobsQueued => (
                "github_workflow_jobs_queued",
                "Workflow jobs queued (each job id counted once)",
                false,
                JOB_LABELS,
            ),
            Family::JobsStarted => (
                "github_workflow_jobs_started",
                "Workflow jobs a runner started (each job id counted once)",
                false,
                JOB_LABELS,
            ),
            Family::JobsCompleted => (
                "github_workflow_jobs_completed",
                "Workflow jobs completed (each job id counted once)",
                false,
                JOB_LABELS,
            ),
            Family::JobConclusions => (
                "github_workflow_job_conclusions",
                "Completed workflow jobs by conclusion (each job id counted once)",
                false,
                JOB_LABELS_CONCLUSION,
            ),
            Family::JobQueueDuration => (
                "github_workflow_job_queue_duration",
                "Workflow job queue time, created_at to started_at, in seconds",
                true,
                JOB_PLACE,
            ),
            Family::JobRunDuration => (
                "github_workflow_job_run_duration",
                "Workflow job run time, started_at to completed_at, in seconds",
                true,
                JOB_PLACE,
            ),
            Family::RunsCompleted => (
                "github_workflow_runs_completed",
                "Workflow run attempts completed, by conclusion (each run attempt counted once)",
                false,
                RUN_LABELS_CONCLUSION,
            ),
            Family::RunDuration => (
                "github_workflow_run_duration",
                "Workflow run attempt time, run_started_at to the completed update, in seconds",
                true,
                RUN_PLACE,
            ),
        }
    }

    /// Where the repository full name sits in the family's label values
    /// (checked against the names by a test).
    fn repo_index(self) -> usize {
        match self {
            Family::JobsQueued
            | Family::JobsStarted
            | Family::JobsCompleted
            | Family::JobConclusions => 4,
            _ => 2,
        }
    }
}

/// One series' sums: a counter uses `count`; a histogram all three. Sums
/// are whole milliseconds, so adding and taking back observations in any
/// order gives exactly the same result (floats would not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value {
    pub count: i64,
    pub sum_ms: i64,
    /// Per bucket (not cumulative); the last is +Inf.
    pub buckets: [i64; BUCKETS.len() + 1],
}

impl Value {
    fn add(&mut self, sign: i64, observed_ms: Option<i64>) {
        self.count += sign;
        if let Some(ms) = observed_ms {
            self.sum_ms += sign * ms;
            let i = BUCKETS
                .iter()
                .position(|b| ms as f64 <= b * 1000.0)
                .unwrap_or(BUCKETS.len());
            self.buckets[i] += sign;
        }
    }

    fn merge(&mut self, other: &Value) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }

    /// Nothing counted: every contribution was taken back.
    fn is_empty(&self) -> bool {
        *self == Value::default()
    }
}

/// A series' label values, in its family's order; shared, so that a
/// scrape copies no labels of a series it does not fold.
type Labels = Arc<[Text]>;
type SeriesKey = (Family, Labels);

/// `organization`, `owner`, `repository_full_name`, `workflow_name`: the
/// labels every family starts its place with (`repo` already bounded).
fn place_labels(place: &event::Place, repo: Text) -> Vec<Text> {
    vec![
        text(&place.organization),
        text(&place.owner),
        repo,
        text(&place.workflow_name),
    ]
}

fn millis(from: Option<i64>, to: Option<i64>) -> Option<i64> {
    Some((to? - from?).max(0))
}

fn job_contributions(p: &Policy, j: &JobRow) -> Vec<(SeriesKey, Option<i64>)> {
    let Some(repo) = p.repository(&j.place.repository) else {
        return Vec::new();
    };
    let runs_on = text(&j.runs_on());
    let mut place = place_labels(&j.place, text(repo));
    let mut labels = vec![runs_on.clone(), text(&j.job_name)];
    labels.extend(place.iter().cloned());
    labels.push(text(p.branch(&j.place.head_branch)));
    place.push(runs_on);
    let mut with_conclusion = labels.clone();
    with_conclusion.push(text(j.conclusion.as_deref().unwrap_or_default()));
    let (labels, place): (Labels, Labels) = (labels.into(), place.into());
    let mut out = vec![((Family::JobsQueued, labels.clone()), None)];
    if j.started_at_ms.is_some() {
        out.push(((Family::JobsStarted, labels.clone()), None));
        if let Some(d) = millis(j.created_at_ms, j.started_at_ms) {
            out.push(((Family::JobQueueDuration, place.clone()), Some(d)));
        }
    }
    if j.rank() == event::COMPLETED {
        out.push(((Family::JobsCompleted, labels), None));
        out.push(((Family::JobConclusions, with_conclusion.into()), None));
        if let Some(d) = millis(j.started_at_ms, j.completed_at_ms) {
            out.push(((Family::JobRunDuration, place), Some(d)));
        }
    }
    out
}

fn run_contributions(p: &Policy, r: &RunRow) -> Vec<(SeriesKey, Option<i64>)> {
    let Some(repo) = p.repository(&r.place.repository) else {
        return Vec::new();
    };
    if r.rank() != event::COMPLETED {
        return Vec::new();
    }
    let place = place_labels(&r.place, text(repo));
    let mut labels = place.clone();
    labels.extend([
        text(p.branch(&r.place.head_branch)),
        text(&r.event),
        text(r.conclusion.as_deref().unwrap_or_default()),
    ]);
    let mut out = vec![((Family::RunsCompleted, labels.into()), None)];
    if let Some(d) = millis(r.run_started_at_ms, r.completed_at_ms) {
        out.push(((Family::RunDuration, place.into()), Some(d)));
    }
    out
}

#[derive(Default)]
struct Inner {
    /// Sorted, so a scrape reads each family's series in order.
    series: BTreeMap<SeriesKey, Value>,
    /// Each labelled repository's earliest `created_at`: the cap keeps the
    /// longest-known repositories, so labels do not move as new ones come.
    first_seen: HashMap<String, i64>,
}

pub struct Aggregates {
    policy: Policy,
    inner: Mutex<Inner>,
}

impl Aggregates {
    pub fn new(policy: Policy) -> Aggregates {
        Aggregates {
            policy,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn apply(&self, changes: &[Change]) {
        let mut inner = self.inner.lock().expect("aggregates lock");
        for c in changes {
            let (old, new, repo, created) = match c {
                Change::Run { old, new } => (
                    old.as_ref().map(|o| run_contributions(&self.policy, o)),
                    run_contributions(&self.policy, new),
                    &new.place.repository,
                    new.created_at_ms,
                ),
                Change::Job { old, new } => (
                    old.as_ref().map(|o| job_contributions(&self.policy, o)),
                    job_contributions(&self.policy, new),
                    &new.place.repository,
                    new.created_at_ms,
                ),
            };
            for (key, v) in old.into_iter().flatten() {
                let value = inner.series.entry(key.clone()).or_default();
                value.add(-1, v);
                if value.is_empty() {
                    // Gone entirely (a label changed): forget the series, so
                    // what shows depends on the rows, not on their history.
                    inner.series.remove(&key);
                }
            }
            for (key, v) in new {
                inner.series.entry(key).or_default().add(1, v);
            }
            if let Some(repo) = self.policy.repository(repo).filter(|r| *r != OTHER) {
                let at = created.unwrap_or(i64::MAX);
                let seen = inner.first_seen.entry(repo.to_string()).or_insert(at);
                *seen = (*seen).min(at);
            }
        }
    }

    /// The repositories that keep their own label under the cap; None
    /// when every one does.
    fn kept(&self, inner: &Inner) -> Option<HashSet<Text>> {
        if inner.first_seen.len() <= self.policy.max_repositories {
            return None;
        }
        let mut repos: Vec<(&i64, &String)> =
            inner.first_seen.iter().map(|(r, t)| (t, r)).collect();
        repos.sort();
        let kept = repos
            .into_iter()
            .take(self.policy.max_repositories)
            .map(|(_, r)| text(r))
            .collect();
        Some(kept)
    }

    /// Everything `/metrics` shows, with the unfinished rows read just now.
    pub fn exposition(
        &self,
        runs: Vec<RunRow>,
        jobs: Vec<JobRow>,
        now_ms: i64,
        stale_after_ms: i64,
    ) -> Exposition {
        let other = text(OTHER);
        let inner = self.inner.lock().expect("aggregates lock");
        let kept = self.kept(&inner);
        let cap = |repo: &Text| -> Text {
            match &kept {
                Some(k) if !k.contains(repo) => other.clone(),
                _ => repo.clone(),
            }
        };
        // Per family, in Family::ALL's order. Series folded into `other`
        // merge, so they go through a map; the rest are unique already.
        let mut folded: Vec<BTreeMap<Labels, Value>> = vec![BTreeMap::new(); Family::ALL.len()];
        let mut series: Vec<Vec<(Labels, Value)>> = vec![Vec::new(); Family::ALL.len()];
        let mut job_gauges: BTreeMap<Labels, Gauges> = BTreeMap::new();
        let mut run_gauges: BTreeMap<Labels, Gauges> = BTreeMap::new();
        for ((family, labels), v) in inner.series.iter() {
            let i = family.repo_index();
            let folds = kept.as_ref().is_some_and(|k| !k.contains(&labels[i]));
            let labels: Labels = if folds {
                let mut l = labels.to_vec();
                l[i] = other.clone();
                l.into()
            } else {
                labels.clone()
            };
            // Every known place shows its gauges, at zero when idle.
            match family {
                Family::JobQueueDuration | Family::JobRunDuration => {
                    job_gauges.entry(labels.clone()).or_default();
                }
                Family::RunDuration => {
                    run_gauges.entry(labels.clone()).or_default();
                }
                _ => {}
            }
            let f = *family as usize;
            if folds {
                folded[f].entry(labels).or_default().merge(v);
            } else {
                series[f].push((labels, v.clone()));
            }
        }
        drop(inner);
        for (list, map) in series.iter_mut().zip(folded) {
            if !map.is_empty() {
                // Two sorted runs: a stable sort merges them in linear time.
                list.extend(map);
                list.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        let stale = |rank: i64, created: Option<i64>, started: Option<i64>| {
            let since = if rank == event::IN_PROGRESS {
                started.or(created)
            } else {
                created
            };
            since.is_some_and(|t| now_ms - t > stale_after_ms)
        };
        let place_gauge =
            |gauges: &mut BTreeMap<Labels, Gauges>,
             place: &event::Place,
             runs_on: Option<String>,
             (rank, created, started): (i64, Option<i64>, Option<i64>)| {
                let Some(repo) = self.policy.repository(&place.repository) else {
                    return;
                };
                let mut key = place_labels(place, cap(&text(repo)));
                key.extend(runs_on.as_deref().map(text));
                gauges
                    .entry(key.into())
                    .or_default()
                    .count(rank, stale(rank, created, started));
            };
        for j in &jobs {
            let times = (j.rank(), j.created_at_ms, j.started_at_ms);
            place_gauge(&mut job_gauges, &j.place, Some(j.runs_on()), times);
        }
        for r in &runs {
            let times = (r.rank(), r.created_at_ms, r.run_started_at_ms);
            place_gauge(&mut run_gauges, &r.place, None, times);
        }
        Exposition {
            series,
            job_gauges,
            run_gauges,
        }
    }
}

/// Unfinished rows of one place: queued, waiting, in progress, stale.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    pub active: [i64; 3],
    pub stale: i64,
}

impl Gauges {
    fn count(&mut self, rank: i64, stale: bool) {
        if stale {
            self.stale += 1;
        } else if (event::QUEUED..=event::IN_PROGRESS).contains(&rank) {
            self.active[(rank - 1) as usize] += 1;
        }
    }
}

/// A snapshot of the Actions metrics, encoded by prometheus-client.
#[derive(Debug)]
pub struct Exposition {
    /// Per family, in `Family::ALL`'s order, sorted by labels.
    series: Vec<Vec<(Labels, Value)>>,
    job_gauges: BTreeMap<Labels, Gauges>,
    run_gauges: BTreeMap<Labels, Gauges>,
}

/// Label pairs in the family's order, with `repository` (the short name)
/// beside `repository_full_name` as actions-runner-controller has both.
fn pairs<'a>(names: &[&'static str], values: &'a [Text]) -> Vec<(&'static str, &'a str)> {
    let mut out = Vec::with_capacity(names.len() + 2);
    for (n, v) in names.iter().zip(values) {
        if *n == "repository_full_name" {
            out.push(("repository", short_name(v)));
        }
        out.push((*n, v));
    }
    out
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in Family::ALL {
            let (name, help, histogram, names) = family.describe();
            let (unit, kind) = if histogram {
                (Some(&Unit::Seconds), MetricType::Histogram)
            } else {
                (None, MetricType::Counter)
            };
            let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
            for (labels, v) in &self.series[family as usize] {
                let labels = pairs(names, labels);
                let mut m = metric.encode_family(&labels)?;
                let count = v.count.max(0) as u64;
                if histogram {
                    let buckets: Vec<(f64, u64)> = BUCKETS
                        .iter()
                        .copied()
                        .chain([f64::INFINITY])
                        .zip(v.buckets.iter().map(|b| (*b).max(0) as u64))
                        .collect();
                    let sum = v.sum_ms.max(0) as f64 / 1000.0;
                    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                } else {
                    m.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
        for (what, gauges, names) in [
            ("jobs", &self.job_gauges, JOB_PLACE),
            ("runs", &self.run_gauges, RUN_PLACE),
        ] {
            let name = format!("github_workflow_{what}_active");
            let help = format!("Workflow {what} not finished, by status (stale ones left out)");
            let mut metric = encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
            for (labels, g) in gauges {
                for (i, status) in ["queued", "waiting", "in_progress"].iter().enumerate() {
                    let mut l = pairs(names, labels);
                    l.push(("status", status));
                    metric.encode_family(&l)?.encode_gauge(&g.active[i])?;
                }
            }
            let name = format!("github_workflow_{what}_stale");
            let help = format!(
                "Workflow {what} unfinished for longer than [actions_metrics] stale_after_secs"
            );
            let mut metric = encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
            for (labels, g) in gauges {
                metric
                    .encode_family(&pairs(names, labels))?
                    .encode_gauge(&g.stale)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_index_points_at_the_full_name() {
        for f in Family::ALL {
            assert_eq!(f.describe().3[f.repo_index()], "repository_full_name");
        }
    }

    #[test]
    fn families_are_listed_in_declaration_order() {
        // The exposition indexes per-family lists by `Family as usize`.
        for (i, f) in Family::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
    }

    #[test]
    fn sums_are_exact_whatever_the_order_of_adding_and_taking_back() {
        let mut a = Value::default();
        let mut b = Value::default();
        let obs = [1_234, 5_000_001, 7, 86_400_000, 86_400_001];
        for v in obs {
            a.add(1, Some(v));
        }
        for v in obs.iter().rev() {
            b.add(1, Some(*v));
            b.add(1, Some(999));
            b.add(-1, Some(999));
        }
        assert_eq!(a, b);
        assert_eq!(a.buckets[BUCKETS.len()], 1, "over a day is +Inf");
        assert_eq!(a.buckets[0], 1, "7 ms is in the first bucket");
    }
}
