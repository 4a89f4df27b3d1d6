//! The scheduler stepped by hand on a clock the test holds: each pass
//! (`run_once`) is a point to assert at, and time moves because the test
//! moves it, never by sleeping. Real parts: the journal file, the forward
//! sink, a consumer on a loopback port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gatehouse::clock::{Clock, ManualClock};
use gatehouse::config::ProcessingConfig;
use gatehouse::scheduler::Scheduler;

#[tokio::test(flavor = "multi_thread")]
async fn retries_wait_their_backoff_and_pauses_their_retry_after_on_the_schedulers_clock() {
    // 500, then 429 asking for a minute, then 200.
    let c = common::consumer::start(
        Duration::ZERO,
        Arc::new(|_, seen| match seen {
            0 => (500, vec![]),
            1 => (429, vec![("retry-after", "60".to_string())]),
            _ => (200, vec![]),
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let journal = common::open_store(&dir.path().join("gatehouse.db"));
    journal
        .append(common::journal_push("acme", "g1", 1, "ci"))
        .await
        .unwrap();
    let clock = ManualClock::starting_now();
    let processing = ProcessingConfig::default();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = Scheduler::new(
        journal.clone(),
        gatehouse::sinks::scheduled(&[common::route("ci", &c.url)], None, 1),
        processing,
        gatehouse::metrics::Metrics::new().sinks,
        stop_rx,
    )
    .with_clock(clock.clone());
    let sent = || c.arrivals().len();

    assert_eq!(scheduler.run_once().await.unwrap(), 1);
    assert_eq!(sent(), 1, "the first attempt, answered 500");
    assert_eq!(
        scheduler.run_once().await.unwrap(),
        0,
        "its retry is not due"
    );
    assert_eq!(sent(), 1);

    // The first delay is a second, with at most a fifth added.
    clock.advance(1_200);
    assert_eq!(scheduler.run_once().await.unwrap(), 1);
    assert_eq!(sent(), 2, "the retry, answered 429 Retry-After: 60");

    clock.advance(30_000);
    assert_eq!(
        scheduler.run_once().await.unwrap(),
        0,
        "paused for a minute"
    );
    assert_eq!(sent(), 2);

    clock.advance(31_000);
    assert_eq!(scheduler.run_once().await.unwrap(), 1);
    assert_eq!(sent(), 3, "after the pause, answered 200");
    assert_eq!(scheduler.run_once().await.unwrap(), 0, "nothing left");

    // The journal's record agrees: two attempts counted, the pause not.
    let id = journal.ids_of_guid("g1").await.unwrap()[0];
    let shown = journal.show(id).await.unwrap().unwrap();
    let job = &shown.jobs[0];
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    let outcomes: Vec<&str> = job.history.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "paused", "done"]);
    // Attempts are stamped with the scheduler's clock.
    assert_eq!(job.history[2].started_at_ms, clock.now_ms());
}

/// The scheduler for one route, on `clock`, over `journal`.
fn scheduler_for(
    journal: &gatehouse::store::Store,
    route: gatehouse::config::RouteConfig,
    clock: Arc<ManualClock>,
) -> (Scheduler, tokio::sync::watch::Sender<bool>) {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let s = Scheduler::new(
        journal.clone(),
        gatehouse::sinks::scheduled(&[route], None, 1),
        ProcessingConfig::default(),
        gatehouse::metrics::Metrics::new().sinks,
        stop_rx,
    )
    .with_clock(clock);
    (s, stop)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_down_for_three_hours_loses_nothing_and_order_holds_on_the_default_schedule() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = common::consumer::start(Duration::ZERO, common::consumer::up_when(up.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = common::open_store(&dir.path().join("gatehouse.db"));
    for (i, guid) in ["g1", "g2", "g3"].iter().enumerate() {
        journal
            .append(common::journal_push("acme", guid, i + 1, "ci"))
            .await
            .unwrap();
    }
    let mut route = common::route("ci", &c.url);
    route.max_attempts = 0; // the default schedule
    let schedule = route.schedule().unwrap();
    let clock = ManualClock::starting_now();
    let start = clock.now_ms();
    let (scheduler, _stop) = scheduler_for(&journal, route, clock.clone());
    // Three hours down, looked at every 10 s of clock time.
    let step = 10_000;
    while clock.now_ms() - start < 3 * 3_600_000 {
        scheduler.run_once().await.unwrap();
        clock.advance(step);
    }
    let arrivals = c.arrivals();
    assert!(
        arrivals.iter().all(|a| a.guid == "g1"),
        "nothing passed the head"
    );
    // 1s, 5s, 30s, 2m, 10m, 30m, 1h: the 8th attempt is before 2 h 4 m
    // even with a fifth added to each delay; the 9th waits 2 h more.
    assert_eq!(arrivals.len(), 8, "attempts as the schedule says");
    let id = journal.ids_of_guid("g1").await.unwrap()[0];
    let job = journal.show(id).await.unwrap().unwrap().jobs.remove(0);
    assert_eq!(job.state, "pending", "no dead letter");
    for (n, pair) in job.history.windows(2).enumerate() {
        let gap = pair[1].started_at_ms - pair[0].started_at_ms;
        let d = schedule.delay(n as u32 + 1).as_millis() as i64;
        assert!(
            gap >= d && gap <= d + d / 5 + step,
            "retry {}: {gap} ms after the last, schedule says {d} ms",
            n + 1
        );
    }
    // Back up: the head goes at its next retry, then the rest in order.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    while c.arrivals().len() < 11 && clock.now_ms() - start < 5 * 3_600_000 {
        scheduler.run_once().await.unwrap();
        clock.advance(step);
    }
    let order: Vec<String> = c.arrivals()[8..].iter().map(|a| a.guid.clone()).collect();
    assert_eq!(order, ["g1", "g2", "g3"]);
    for guid in ["g1", "g2", "g3"] {
        let id = journal.ids_of_guid(guid).await.unwrap()[0];
        let shown = journal.show(id).await.unwrap().unwrap();
        assert_eq!(shown.jobs[0].state, "done", "{guid}");
    }
}
