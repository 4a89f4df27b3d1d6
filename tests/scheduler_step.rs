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

    // The first backoff is at most a second.
    clock.advance(1_000);
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
