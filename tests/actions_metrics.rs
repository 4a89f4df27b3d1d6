//! The actions-metrics sink against the real server and a real SQLite file,
//! fed GitHub's own workflow_run/workflow_job payloads rewritten into
//! realistic sequences: the metrics are a function of the set of
//! deliveries (invariant 6), survive restarts, and stay bounded.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::actions::{Plan, Planned, Rng, Shape, Subject, plan};
use common::{Delivery, TestApp, binary, fixtures};
use gatehouse::config::Config;

const SINK: &str = "actions-metrics";
/// 2026-01-01T00:00:00Z: long finished, so nothing here is stale by accident.
const JAN_2026: i64 = 1_767_225_600;

fn shape(orgs: &'static [&'static str], runs: usize, seed: u64) -> Shape<'static> {
    Shape {
        orgs,
        repos_per_org: 3,
        runs,
        jobs_per_run: 4,
        start: JAN_2026,
        first_run: 7_000_000,
        seed,
        open_jobs: 0,
        only_final: false,
    }
}

fn delivery(p: &Planned, hook: &str) -> Delivery {
    Delivery::json(p.event, &p.guid, p.body.clone()).hook(hook)
}

/// Sends every delivery, `lanes` at a time (each lane its own connection),
/// and checks that each was acknowledged.
async fn send_all(app: &TestApp, deliveries: Vec<Delivery>, lanes: usize) {
    let mut queues: Vec<Vec<Delivery>> = vec![Vec::new(); lanes];
    for (i, d) in deliveries.into_iter().enumerate() {
        queues[i % lanes].push(d);
    }
    let tasks: Vec<_> = queues
        .into_iter()
        .map(|q| {
            let base = app.base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for d in q {
                    let status = d.send(&client, &base).await.unwrap().status().as_u16();
                    assert!(status == 202 || status == 200, "ingest answered {status}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Waits (bounded) until the sink has run `jobs` jobs and none is pending,
/// seen twice in a row: the in-memory sums are updated just after the
/// commit that marks a batch done.
async fn settle(app: &TestApp, jobs: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_once = false;
    loop {
        let census = app.census().await;
        let total = census.jobs(Some(SINK), None) as i64;
        let open = census.jobs(Some(SINK), Some("pending"));
        if total == jobs && open == 0 && !std::mem::replace(&mut seen_once, true) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if total == jobs && open == 0 {
            let dead = census.jobs(Some(SINK), Some("dead"));
            assert_eq!(dead, 0, "no Actions job may die on real payloads");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sink did not settle: {total}/{jobs} jobs, {open} pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Actions part of an exposition, line by line.
fn actions_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("github_workflow_"))
        .map(str::to_string)
        .collect()
}

/// Equal expositions, or a short account of where they differ.
fn assert_same(got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter()
            .filter(|l| !b.contains(l))
            .take(5)
            .cloned()
            .collect()
    };
    panic!(
        "expositions differ ({} vs {} lines)\nonly in got: {:#?}\nonly in want: {:#?}",
        got.len(),
        want.len(),
        only(got, want),
        only(want, got)
    );
}

/// Sum of every sample of `series` whose labels include all of `with`.
fn sum(text: &str, series: &str, with: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            if !labels.is_empty() && !labels.starts_with('{') {
                return None;
            }
            with.iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// Every label value `name` takes across the Actions series.
fn label_values(text: &str, name: &str) -> std::collections::BTreeSet<String> {
    let key = format!("{name}=\"");
    text.lines()
        .filter(|l| l.starts_with("github_workflow_"))
        .filter_map(|l| {
            let at = l.find(&key)? + key.len();
            Some(l[at..at + l[at..].find('"')?].to_string())
        })
        .collect()
}

/// Every run and job row the sink keeps, as the store gives them back.
async fn state_rows(app: &TestApp) -> (Vec<String>, Vec<String>) {
    use gatehouse::store::actions::Change;
    let (mut runs, mut jobs) = (Vec::new(), Vec::new());
    for change in common::census::workflow_rows(&*app.store()).await {
        match change {
            Change::Run { new, .. } => {
                runs.push(((new.run_id, new.run_attempt), format!("{new:?}")))
            }
            Change::Job { new, .. } => jobs.push((new.job_id, format!("{new:?}"))),
        }
    }
    runs.sort();
    jobs.sort();
    (
        runs.into_iter().map(|r| r.1).collect(),
        jobs.into_iter().map(|j| j.1).collect(),
    )
}

/// Checks an exposition against the plan, computed here independently.
fn assert_matches_plan(text: &str, p: &Plan) {
    let started: Vec<_> = p.jobs.iter().filter(|j| j.started.is_some()).collect();
    let by = |c: &str| p.jobs.iter().filter(|j| j.conclusion == c).count() as f64;
    assert_eq!(
        sum(text, "github_workflow_jobs_queued_total", &[]),
        p.jobs.len() as f64
    );
    assert_eq!(
        sum(text, "github_workflow_jobs_started_total", &[]),
        started.len() as f64
    );
    assert_eq!(
        sum(text, "github_workflow_jobs_completed_total", &[]),
        p.jobs.len() as f64
    );
    for c in ["success", "failure", "cancelled"] {
        assert_eq!(
            sum(
                text,
                "github_workflow_job_conclusions_total",
                &[("job_conclusion", c)]
            ),
            by(c),
            "{c} jobs"
        );
    }
    let queue: i64 = started.iter().map(|j| j.started.unwrap() - j.created).sum();
    assert_eq!(
        sum(
            text,
            "github_workflow_job_queue_duration_seconds_count",
            &[]
        ),
        started.len() as f64
    );
    assert_eq!(
        sum(text, "github_workflow_job_queue_duration_seconds_sum", &[]),
        queue as f64
    );
    let run: i64 = started
        .iter()
        .map(|j| j.completed - j.started.unwrap())
        .sum();
    assert_eq!(
        sum(text, "github_workflow_job_run_duration_seconds_sum", &[]),
        run as f64
    );
    assert_eq!(
        sum(
            text,
            "github_workflow_job_queue_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        started.len() as f64
    );
    assert_eq!(
        sum(text, "github_workflow_runs_completed_total", &[]),
        p.runs.len() as f64
    );
    let runs: i64 = p.runs.iter().map(|r| r.completed - r.started).sum();
    assert_eq!(
        sum(text, "github_workflow_run_duration_seconds_sum", &[]),
        runs as f64
    );
    assert_eq!(sum(text, "github_workflow_jobs_active", &[]), 0.0);
    assert_eq!(sum(text, "github_workflow_runs_active", &[]), 0.0);
    assert_eq!(sum(text, "github_workflow_jobs_stale", &[]), 0.0);
}

/// Orders each subject's events by one of the permutations, cycling per
/// kind of sequence (which events it has) so that every order occurs.
fn permuted(p: &Plan, rng: &mut Rng) -> Vec<Planned> {
    let mut groups: BTreeMap<usize, (Subject, Vec<Planned>)> = BTreeMap::new();
    let mut first: HashMap<Subject, usize> = HashMap::new();
    for (i, d) in p.deliveries.iter().enumerate() {
        let at = *first.entry(d.subject).or_insert(i);
        groups
            .entry(at)
            .or_insert((d.subject, Vec::new()))
            .1
            .push(d.clone());
    }
    let mut lanes: Vec<Vec<Planned>> = Vec::new();
    let mut next: HashMap<Vec<String>, usize> = HashMap::new();
    for (_, (_, mut events)) in groups {
        let n = next.entry(kind(&events)).or_default();
        permute(&mut events, *n);
        *n += 1;
        lanes.push(events);
    }
    // Interleave the subjects at random, each keeping its permuted order.
    let mut out = Vec::new();
    while !lanes.is_empty() {
        let i = rng.below(lanes.len() as u64) as usize;
        out.push(lanes[i].remove(0));
        if lanes[i].is_empty() {
            lanes.swap_remove(i);
        }
    }
    out
}

/// A sequence's actions, sorted: which events it has, not their order.
fn kind(events: &[Planned]) -> Vec<String> {
    let mut k: Vec<String> = events.iter().map(action).collect();
    k.sort();
    k
}

fn action(d: &Planned) -> String {
    let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
    v["action"].as_str().unwrap().to_string()
}

/// The `k`-th permutation (mod n!) of `v`, by the factorial number system.
fn permute<T>(v: &mut Vec<T>, mut k: usize) {
    let mut rest: Vec<T> = std::mem::take(v);
    let mut fact: usize = (1..=rest.len()).product();
    k %= fact.max(1);
    while !rest.is_empty() {
        fact /= rest.len();
        v.push(rest.remove(k / fact));
        k %= fact;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_and_any_order_give_the_same_metrics_as_one_in_order_run() {
    let p = plan(&fixtures(), &shape(&["octo-org", "Octocoders"], 48, 7));

    let in_order = TestApp::spawn().await;
    let once: Vec<Delivery> = p.deliveries.iter().map(|d| delivery(d, "100")).collect();
    send_all(&in_order, once, 1).await;
    settle(&in_order, p.deliveries.len() as i64).await;
    let reference = in_order.metrics().await;
    assert_matches_plan(&reference, &p);

    // Every delivery twice, through two hooks (GitHub sends one event to
    // every hook subscribed, with one GUID): both are journaled and both
    // reach the sink. Each job's events in a different order, the copies
    // after them in reverse, some as form posts, and some exact repeats.
    let disordered = TestApp::spawn().await;
    let mut rng = Rng::new(99);
    let shuffled = permuted(&p, &mut rng);
    let mut all: Vec<Delivery> = Vec::new();
    for (i, d) in shuffled.iter().enumerate() {
        all.push(if i % 3 == 0 {
            Delivery::form(d.event, &d.guid, &d.body).hook("100")
        } else {
            delivery(d, "100")
        });
    }
    for d in shuffled.iter().rev() {
        all.push(delivery(d, "200"));
    }
    for d in shuffled.iter().step_by(5) {
        all.push(delivery(d, "200"));
    }
    send_all(&disordered, all, 1).await;
    settle(&disordered, 2 * p.deliveries.len() as i64).await;
    let text = disordered.metrics().await;
    assert_same(&actions_lines(&text), &actions_lines(&reference));
    assert_eq!(state_rows(&disordered).await, state_rows(&in_order).await);
    // The sink saw every repeat and changed nothing for it.
    let jobs = common::census::job_details(&disordered.store(), &Default::default()).await;
    let attempts: usize = jobs
        .iter()
        .filter(|j| j.route == SINK)
        .map(|j| j.history.len())
        .sum();
    assert_eq!(attempts, 2 * p.deliveries.len());
    in_order.stop().await;
    disordered.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_permutations_cover_every_order_of_a_jobs_events() {
    // Guards the test above: jobs of 3 events come in all 6 orders, jobs
    // of 4 in all 24, runs in all 6.
    let p = plan(&fixtures(), &shape(&["octo-org", "Octocoders"], 48, 7));
    let shuffled = permuted(&p, &mut Rng::new(99));
    let mut orders: HashMap<Subject, Vec<String>> = HashMap::new();
    for d in &shuffled {
        orders.entry(d.subject).or_default().push(action(d));
    }
    let mut seen: HashMap<Vec<String>, std::collections::HashSet<Vec<String>>> = HashMap::new();
    for o in orders.into_values() {
        let mut k = o.clone();
        k.sort();
        seen.entry(k).or_default().insert(o);
    }
    let orders_of = |events: &[&str]| {
        let mut k: Vec<String> = events.iter().map(|s| s.to_string()).collect();
        k.sort();
        seen[&k].len()
    };
    assert_eq!(orders_of(&["queued", "in_progress", "completed"]), 6);
    assert_eq!(
        orders_of(&["queued", "waiting", "in_progress", "completed"]),
        24
    );
    assert_eq!(
        orders_of(&["requested", "in_progress", "completed"]),
        6,
        "runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_every_counter() {
    let p = plan(&fixtures(), &shape(&["octo-org"], 12, 3));
    let app = TestApp::spawn().await;
    let config = app.app_config();
    send_all(
        &app,
        p.deliveries.iter().map(|d| delivery(d, "1")).collect(),
        4,
    )
    .await;
    settle(&app, p.deliveries.len() as i64).await;
    let before = app.metrics().await;
    assert_matches_plan(&before, &p);
    let dir = app.stop().await;

    let again = TestApp::start_in(dir, config).await;
    let after = again.metrics().await;
    assert_same(&actions_lines(&after), &actions_lines(&before));
    // And the counters go on from there, not from zero.
    let more = plan(
        &fixtures(),
        &Shape {
            first_run: 8_000_000,
            ..shape(&["octo-org"], 5, 4)
        },
    );
    send_all(
        &again,
        more.deliveries.iter().map(|d| delivery(d, "1")).collect(),
        4,
    )
    .await;
    settle(&again, (p.deliveries.len() + more.deliveries.len()) as i64).await;
    let text = again.metrics().await;
    assert_eq!(
        sum(&text, "github_workflow_jobs_completed_total", &[]),
        (p.jobs.len() + more.jobs.len()) as f64
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_orgs_over_many_connections_end_with_nothing_in_progress() {
    const ORGS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let p = plan(&fixtures(), &shape(ORGS, 90, 11));
    let app = TestApp::spawn().await;
    let mut all: Vec<Planned> = p.deliveries.clone();
    Rng::new(5).shuffle(&mut all);
    send_all(&app, all.iter().map(|d| delivery(d, "1")).collect(), 16).await;
    settle(&app, p.deliveries.len() as i64).await;
    let text = app.metrics().await;
    assert_matches_plan(&text, &p);
    for org in ORGS {
        let planned = p.jobs.iter().filter(|j| j.org == *org).count() as f64;
        assert_eq!(
            sum(
                &text,
                "github_workflow_jobs_completed_total",
                &[("owner", org)]
            ),
            planned
        );
        for status in ["queued", "waiting", "in_progress"] {
            assert_eq!(
                sum(
                    &text,
                    "github_workflow_jobs_active",
                    &[("owner", org), ("status", status)]
                ),
                0.0
            );
        }
    }
    // Many partitions ran at once: one per organisation.
    let partitions = app
        .store()
        .partitions(Some(SINK), gatehouse::clock::now_ms(), 1000)
        .await
        .unwrap();
    assert_eq!(partitions.total, ORGS.len() as i64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_jobs_are_gauged_and_old_ones_flagged_stale() {
    let now = gatehouse::clock::now_ms() / 1000;
    // Recent: six jobs left open an hour ago. Old: the same, 30 hours ago.
    let recent = plan(
        &fixtures(),
        &Shape {
            start: now - 3600,
            open_jobs: 6,
            ..shape(&["octo-org"], 4, 21)
        },
    );
    let old = plan(
        &fixtures(),
        &Shape {
            start: now - 30 * 3600,
            open_jobs: 6,
            first_run: 7_100_000,
            ..shape(&["octo-org"], 4, 22)
        },
    );
    let app = TestApp::spawn().await;
    let all: Vec<Delivery> = recent
        .deliveries
        .iter()
        .chain(&old.deliveries)
        .map(|d| delivery(d, "1"))
        .collect();
    let n = all.len() as i64;
    send_all(&app, all, 4).await;
    settle(&app, n).await;
    let text = app.metrics().await;
    let open = &recent.jobs[recent.jobs.len() - 6..];
    let expect = |status: &str| {
        open.iter()
            .filter(|j| match status {
                "in_progress" => j.started.is_some(),
                "waiting" => j.started.is_none() && j.waits,
                _ => j.started.is_none() && !j.waits,
            })
            .count() as f64
    };
    for status in ["queued", "waiting", "in_progress"] {
        assert_eq!(
            sum(&text, "github_workflow_jobs_active", &[("status", status)]),
            expect(status),
            "{status}"
        );
    }
    assert!(expect("in_progress") > 0.0);
    // The old ones count as stale, not as in progress.
    assert_eq!(sum(&text, "github_workflow_jobs_stale", &[]), 6.0);
    assert_eq!(sum(&text, "github_workflow_runs_stale", &[]), 2.0);
    assert_eq!(
        sum(
            &text,
            "github_workflow_runs_active",
            &[("status", "in_progress")]
        ),
        2.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn label_values_stay_bounded() {
    let p = plan(&fixtures(), &shape(&["octo-org", "Octocoders"], 36, 13));
    let app = TestApp::spawn_with(|c: &mut Config| {
        c.actions_metrics.max_repositories = 3;
        c.actions_metrics.deny_repositories = vec!["Octocoders/repo-2".into()];
        c.actions_metrics.head_branches = vec!["main".into()];
    })
    .await;
    send_all(
        &app,
        p.deliveries.iter().map(|d| delivery(d, "1")).collect(),
        4,
    )
    .await;
    settle(&app, p.deliveries.len() as i64).await;
    let text = app.metrics().await;
    let repos = label_values(&text, "repository_full_name");
    // The three repositories seen first keep their names; later ones
    // (by created_at in the payloads) are counted as `other`.
    let mut first: Vec<(i64, String)> = Vec::new();
    for r in &p.runs {
        let full = format!("{}/{}", r.org, r.repo);
        if full != "Octocoders/repo-2" && !first.iter().any(|(_, f)| *f == full) {
            first.push((r.created, full));
        }
    }
    first.sort();
    let mut want: std::collections::BTreeSet<String> =
        first.iter().take(3).map(|(_, f)| f.clone()).collect();
    want.insert("other".into());
    assert_eq!(repos, want);
    assert!(
        !text.contains("Octocoders/repo-2"),
        "denied repository exported"
    );
    let branches = label_values(&text, "head_branch");
    assert_eq!(
        branches,
        ["main", "other"].iter().map(|s| s.to_string()).collect()
    );
    // Nothing is lost by folding: totals still count every allowed job.
    let allowed = p
        .jobs
        .iter()
        .filter(|j| !(j.org == "Octocoders" && j.repo == "repo-2"))
        .count();
    assert_eq!(
        sum(&text, "github_workflow_jobs_completed_total", &[]),
        allowed as f64
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_means_no_jobs_and_a_backfill_catches_up_later() {
    let p = plan(&fixtures(), &shape(&["octo-org"], 10, 17));
    let app = TestApp::spawn_with(|c: &mut Config| c.actions_metrics.enabled = false).await;
    let mut config = app.app_config();
    send_all(
        &app,
        p.deliveries.iter().map(|d| delivery(d, "1")).collect(),
        4,
    )
    .await;
    let text = app.metrics().await;
    assert!(actions_lines(&text).is_empty(), "metrics while disabled");
    assert_eq!(app.census().await.jobs(Some(SINK), None), 0);
    let dir = app.stop().await;

    config.actions_metrics.enabled = true;
    let again = TestApp::start_in(dir, config).await;
    let file = binary::write_config(again.dir.path(), &again.db_path, "");
    let (status, out) = binary::run(
        &[
            "deliveries",
            "retry",
            "--route",
            SINK,
            "--since",
            "1d",
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    assert!(
        out.contains(&format!("{} job(s) queued", p.deliveries.len())),
        "{out}"
    );
    // The running server finds CLI-made jobs on its rescan (≤ 10 s).
    settle(&again, p.deliveries.len() as i64).await;
    assert_matches_plan(&again.metrics().await, &p);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_gives_runs_success_rate_and_percentiles_per_workflow() {
    let p = plan(&fixtures(), &shape(&["octo-org"], 20, 23));
    let app = TestApp::spawn().await;
    send_all(
        &app,
        p.deliveries.iter().map(|d| delivery(d, "1")).collect(),
        4,
    )
    .await;
    settle(&app, p.deliveries.len() as i64).await;
    let file = binary::write_config(app.dir.path(), &app.db_path, "");
    let since = common::actions::rfc3339(JAN_2026 - 1);
    let (status, out) = binary::run(
        &[
            "actions",
            "report",
            "--since",
            &since,
            "--json",
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();

    // The expected figures, computed here from the plan.
    let nearest = |mut v: Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        let rank = ((q / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank - 1]
    };
    let mut keys: Vec<(String, String)> = p
        .runs
        .iter()
        .map(|r| (format!("{}/{}", r.org, r.repo), r.workflow.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(rows.len(), keys.len());
    for (repo, wf) in keys {
        let runs: Vec<_> = p
            .runs
            .iter()
            .filter(|r| format!("{}/{}", r.org, r.repo) == repo && r.workflow == wf)
            .collect();
        let jobs: Vec<_> = p
            .jobs
            .iter()
            .filter(|j| format!("{}/{}", j.org, j.repo) == repo && j.workflow == wf)
            .collect();
        let row = rows
            .iter()
            .find(|r| r["repository"] == repo.as_str() && r["workflow_name"] == wf.as_str())
            .unwrap_or_else(|| panic!("no row for {repo} {wf}"));
        let ok = runs.iter().filter(|r| r.conclusion == "success").count();
        assert_eq!(row["runs"], runs.len());
        assert_eq!(row["jobs"], jobs.len());
        assert_eq!(
            row["success_rate"].as_f64().unwrap(),
            ok as f64 / runs.len() as f64
        );
        let durations: Vec<f64> = runs
            .iter()
            .map(|r| (r.completed - r.started) as f64)
            .collect();
        assert_eq!(
            row["run_p50_secs"].as_f64().unwrap(),
            nearest(durations.clone(), 50.0)
        );
        assert_eq!(
            row["run_p95_secs"].as_f64().unwrap(),
            nearest(durations, 95.0)
        );
        let queue: Vec<f64> = jobs
            .iter()
            .filter_map(|j| Some((j.started? - j.created) as f64))
            .collect();
        assert_eq!(
            row["queue_p50_secs"].as_f64().unwrap(),
            nearest(queue.clone(), 50.0)
        );
        assert_eq!(
            row["queue_p95_secs"].as_f64().unwrap(),
            nearest(queue, 95.0)
        );
    }

    // The table, and a window with nothing in it.
    let (status, table) = binary::run(
        &[
            "actions",
            "report",
            "--since",
            &since,
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success(), "{table}");
    assert!(
        table.lines().next().unwrap().contains("queue p95"),
        "{table}"
    );
    assert!(table.contains("octo-org/repo-0"), "{table}");
    let (status, empty) = binary::run(
        &[
            "actions",
            "report",
            "--since",
            "1h",
            "--config",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(status.success());
    assert!(
        empty.contains("no workflow runs or jobs completed since 1h"),
        "{empty}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payload_that_is_no_workflow_event_is_a_dead_letter_not_a_guess() {
    let app = TestApp::spawn().await;
    let body = br#"{"action":"queued","repository":{"full_name":"o/r","owner":{"login":"o"}}}"#;
    let d = Delivery::json("workflow_job", "bad-00000000-0000", &body[..]);
    assert_eq!(app.send(&d).await.status(), 202);
    settle_dead(&app).await;
    let shown = common::census::shown(&app.store(), "bad-00000000-0000").await;
    let why = shown.jobs[0].history[0].error.clone().unwrap();
    assert!(why.contains("no workflow_job object"), "{why}");
    assert!(
        common::census::workflow_rows(&*app.store())
            .await
            .is_empty()
    );
    app.stop().await;
}

async fn settle_dead(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.census().await.jobs(Some(SINK), Some("dead")) == 0 {
        assert!(Instant::now() < deadline, "the job never died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rewrites a plan's workflow, job and runner names the way a contributor
/// can through expressions and pull requests: a workflow name per run
/// (mod 60), a job name per job, a runner label set per job (mod 30).
fn contributor_named(p: &Plan) -> Vec<Planned> {
    p.deliveries
        .iter()
        .map(|d| {
            let mut v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
            if let Some(j) = v.get_mut("workflow_job") {
                let (id, run) = (j["id"].as_i64().unwrap(), j["run_id"].as_i64().unwrap());
                j["name"] = format!("build {:x}", id.wrapping_mul(2_654_435_761)).into();
                j["labels"] = serde_json::json!(["self-hosted", format!("pool-{}", id % 30)]);
                j["workflow_name"] = format!("wf-{}", run % 60).into();
            } else {
                let run = v["workflow_run"]["id"].as_i64().unwrap();
                v["workflow_run"]["name"] = format!("wf-{}", run % 60).into();
                v["workflow"]["name"] = format!("wf-{}", run % 60).into();
            }
            Planned {
                body: serde_json::to_vec(&v).unwrap(),
                ..d.clone()
            }
        })
        .collect()
}

/// The label sets of every sample of `series`.
fn series_labels(text: &str, series: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix('{')?;
            let (labels, _) = rest.rsplit_once("} ")?;
            Some(
                labels
                    .split("\",")
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once("=\"")?;
                        Some((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contributor_named_workflows_jobs_and_runners_stay_bounded_whatever_the_order() {
    let p = plan(&fixtures(), &shape(&["octo-org"], 120, 29));
    let named = contributor_named(&p);
    let caps = |c: &mut Config| {
        c.actions_metrics.max_workflows = 5;
        c.actions_metrics.max_job_names = 10;
        c.actions_metrics.max_runner_label_sets = 4;
    };
    let a = TestApp::spawn_with(caps).await;
    send_all(&a, named.iter().map(|d| delivery(d, "1")).collect(), 4).await;
    settle(&a, named.len() as i64).await;
    let text = a.metrics().await;

    let mut per_repo: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut per_workflow: BTreeMap<
        (String, String),
        (
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
        ),
    > = BTreeMap::new();
    for l in series_labels(&text, "github_workflow_jobs_completed_total") {
        let (repo, wf) = (
            l["repository_full_name"].clone(),
            l["workflow_name"].clone(),
        );
        per_repo.entry(repo.clone()).or_default().insert(wf.clone());
        let e = per_workflow.entry((repo, wf)).or_default();
        e.0.insert(l["job_name"].clone());
        e.1.insert(l["runs_on"].clone());
    }
    assert!(!per_repo.is_empty());
    for (repo, wfs) in &per_repo {
        let named: Vec<_> = wfs.iter().filter(|w| *w != "other").collect();
        assert!(
            named.len() <= 5,
            "{repo}: {} workflows kept their name",
            named.len()
        );
        assert!(wfs.contains("other"), "{repo}: the rest are other");
    }
    for ((repo, wf), (jobs, runners)) in &per_workflow {
        if wf == "other" {
            assert_eq!(jobs.iter().collect::<Vec<_>>(), ["other"], "{repo}/{wf}");
            assert_eq!(runners.iter().collect::<Vec<_>>(), ["other"], "{repo}/{wf}");
            continue;
        }
        assert!(
            jobs.len() <= 11 && runners.len() <= 5,
            "{repo}/{wf}: {jobs:?} {runners:?}"
        );
    }
    for name in ["job_name", "runs_on", "workflow_name"] {
        let all = label_values(&text, name);
        assert!(all.len() <= 5 * 10 * 3 + 1, "{name}: {} values", all.len());
    }
    // Folding loses nothing: every job is still counted.
    assert_eq!(
        sum(&text, "github_workflow_jobs_completed_total", &[]),
        p.jobs.len() as f64
    );

    // Which names keep their label depends on the rows, not the order.
    let b = TestApp::spawn_with(caps).await;
    let mut shuffled = named.clone();
    Rng::new(3).shuffle(&mut shuffled);
    send_all(&b, shuffled.iter().map(|d| delivery(d, "1")).collect(), 4).await;
    settle(&b, named.len() as i64).await;
    assert_same(&actions_lines(&b.metrics().await), &actions_lines(&text));
    a.stop().await;
    b.stop().await;
}
