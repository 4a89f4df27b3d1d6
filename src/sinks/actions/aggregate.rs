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
use crate::store::actions::Change;

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

    /// Where the capped labels sit in the family's label values (checked
    /// against the names by a test).
    fn at(self) -> At {
        match self {
            Family::JobsQueued
            | Family::JobsStarted
            | Family::JobsCompleted
            | Family::JobConclusions => At {
                repo: 4,
                workflow: 5,
                job_name: Some(1),
                runs_on: Some(0),
            },
            Family::JobQueueDuration | Family::JobRunDuration => JOB_PLACE_AT,
            Family::RunsCompleted | Family::RunDuration => RUN_PLACE_AT,
        }
    }
}

/// Positions of the labels a cap folds into `other`.
#[derive(Debug, Clone, Copy)]
struct At {
    repo: usize,
    workflow: usize,
    job_name: Option<usize>,
    runs_on: Option<usize>,
}

const JOB_PLACE_AT: At = At {
    repo: 2,
    workflow: 3,
    job_name: None,
    runs_on: Some(4),
};
const RUN_PLACE_AT: At = At {
    repo: 2,
    workflow: 3,
    job_name: None,
    runs_on: None,
};

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
    first_seen: FirstSeen,
}

/// The earliest `created_at` of every label value a cap limits: labelled
/// repositories, workflows per repository, job names and runner label
/// sets per workflow. A cap keeps the longest-known values (ties by
/// name), so which keep their label is a function of the rows, and labels
/// do not move as new values come.
#[derive(Default)]
struct FirstSeen {
    repos: HashMap<Text, i64>,
    workflows: HashMap<Text, HashMap<Text, i64>>,
    job_names: HashMap<(Text, Text), HashMap<Text, i64>>,
    runners: HashMap<(Text, Text), HashMap<Text, i64>>,
}

fn note(map: &mut HashMap<Text, i64>, value: &str, at: i64) {
    match map.get_mut(value) {
        Some(seen) => *seen = (*seen).min(at),
        None => {
            map.insert(text(value), at);
        }
    }
}

/// The `n` longest-known values; None when every one fits.
fn longest_known(map: &HashMap<Text, i64>, n: usize) -> Option<HashSet<Text>> {
    if map.len() <= n {
        return None;
    }
    let mut values: Vec<(&i64, &Text)> = map.iter().map(|(v, t)| (t, v)).collect();
    values.sort();
    Some(values.into_iter().take(n).map(|(_, v)| v.clone()).collect())
}

/// What keeps its label under the caps, for one scrape. Maps hold only
/// the parents over their cap.
struct Kept {
    repos: Option<HashSet<Text>>,
    workflows: HashMap<Text, HashSet<Text>>,
    job_names: HashMap<(Text, Text), HashSet<Text>>,
    runners: HashMap<(Text, Text), HashSet<Text>>,
}

impl Kept {
    /// Folds what the caps do not keep into `other`. A folded repository
    /// takes its workflow, job name and runner labels with it (the `other`
    /// repository's workflows would otherwise be every repository's), and
    /// a folded workflow its job names and runner labels.
    fn fold(&self, labels: &mut [Text], at: At, other: &Text) {
        let repo = labels[at.repo].clone();
        let workflow = labels[at.workflow].clone();
        let repo_kept = *repo != *OTHER && self.repos.as_ref().is_none_or(|k| k.contains(&repo));
        let workflow_kept = repo_kept
            && self
                .workflows
                .get(&repo)
                .is_none_or(|k| k.contains(&workflow));
        if !repo_kept {
            labels[at.repo] = other.clone();
        }
        if !workflow_kept {
            labels[at.workflow] = other.clone();
        }
        let place = (repo, workflow);
        if let Some(i) = at.job_name
            && !(workflow_kept
                && self
                    .job_names
                    .get(&place)
                    .is_none_or(|k| k.contains(&labels[i])))
        {
            labels[i] = other.clone();
        }
        if let Some(i) = at.runs_on
            && !(workflow_kept
                && self
                    .runners
                    .get(&place)
                    .is_none_or(|k| k.contains(&labels[i])))
        {
            labels[i] = other.clone();
        }
    }
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
                let seen = &mut inner.first_seen;
                note(&mut seen.repos, repo, at);
                let (workflow, job) = match c {
                    Change::Run { new, .. } => (&new.place.workflow_name, None),
                    Change::Job { new, .. } => (&new.place.workflow_name, Some(new)),
                };
                note(seen.workflows.entry(text(repo)).or_default(), workflow, at);
                if let Some(j) = job {
                    let place = (text(repo), text(workflow));
                    note(
                        seen.job_names.entry(place.clone()).or_default(),
                        &j.job_name,
                        at,
                    );
                    note(seen.runners.entry(place).or_default(), &j.runs_on(), at);
                }
            }
        }
    }

    /// What keeps its own label under the caps now.
    fn kept(&self, inner: &Inner) -> Kept {
        let p = &self.policy;
        let seen = &inner.first_seen;
        let over = |maps: &HashMap<(Text, Text), HashMap<Text, i64>>, n| {
            maps.iter()
                .filter_map(|(k, m)| Some((k.clone(), longest_known(m, n)?)))
                .collect()
        };
        Kept {
            repos: longest_known(&seen.repos, p.max_repositories),
            workflows: seen
                .workflows
                .iter()
                .filter_map(|(r, m)| Some((r.clone(), longest_known(m, p.max_workflows)?)))
                .collect(),
            job_names: over(&seen.job_names, p.max_job_names),
            runners: over(&seen.runners, p.max_runner_label_sets),
        }
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
        // Per family, in Family::ALL's order. Series folded into `other`
        // merge, so they go through a map; the rest are unique already.
        let mut folded: Vec<BTreeMap<Labels, Value>> = vec![BTreeMap::new(); Family::ALL.len()];
        let mut series: Vec<Vec<(Labels, Value)>> = vec![Vec::new(); Family::ALL.len()];
        let mut job_gauges: BTreeMap<Labels, Gauges> = BTreeMap::new();
        let mut run_gauges: BTreeMap<Labels, Gauges> = BTreeMap::new();
        for ((family, labels), v) in inner.series.iter() {
            let mut folded_labels = labels.to_vec();
            kept.fold(&mut folded_labels, family.at(), &other);
            let folds = *folded_labels != **labels;
            let labels: Labels = if folds {
                folded_labels.into()
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
                let mut key = place_labels(place, text(repo));
                let at = match &runs_on {
                    Some(r) => {
                        key.push(text(r));
                        JOB_PLACE_AT
                    }
                    None => RUN_PLACE_AT,
                };
                kept.fold(&mut key, at, &other);
                gauges.entry(key.into()).or_default().count(
                    rank,
                    stale(rank, created, started),
                    created,
                );
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
            now_ms,
        }
    }
}

/// Unfinished rows of one place: queued, waiting, in progress, stale.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    pub active: [i64; 3],
    pub stale: i64,
    /// When the oldest queued (not stale) one was created: a job waiting
    /// for a runner nobody provides.
    pub oldest_queued_ms: Option<i64>,
}

impl Gauges {
    fn count(&mut self, rank: i64, stale: bool, created: Option<i64>) {
        if stale {
            self.stale += 1;
        } else if (event::QUEUED..=event::IN_PROGRESS).contains(&rank) {
            self.active[(rank - 1) as usize] += 1;
            if rank == event::QUEUED
                && let Some(t) = created
            {
                self.oldest_queued_ms = Some(self.oldest_queued_ms.map_or(t, |o| o.min(t)));
            }
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
    now_ms: i64,
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
        // The age of the oldest job waiting for a runner, per place: what
        // an alert on jobs stuck queued watches.
        let mut metric = encoder.encode_descriptor(
            "github_workflow_jobs_oldest_queued",
            "Age of the oldest queued job (not stale) per place, 0 when none waits",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (labels, g) in &self.job_gauges {
            let age = g
                .oldest_queued_ms
                .map_or(0.0, |t| (self.now_ms - t).max(0) as f64 / 1000.0);
            metric
                .encode_family(&pairs(JOB_PLACE, labels))?
                .encode_gauge(&age)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_label_positions_match_the_names() {
        for f in Family::ALL {
            let (names, at) = (f.describe().3, f.at());
            assert_eq!(names[at.repo], "repository_full_name");
            assert_eq!(names[at.workflow], "workflow_name");
            assert_eq!(
                at.job_name.map(|i| names[i]),
                names.contains(&"job_name").then_some("job_name")
            );
            assert_eq!(
                at.runs_on.map(|i| names[i]),
                names.contains(&"runs_on").then_some("runs_on")
            );
        }
        assert_eq!(JOB_PLACE[JOB_PLACE_AT.runs_on.unwrap()], "runs_on");
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
