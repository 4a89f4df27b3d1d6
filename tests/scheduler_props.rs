//! Property test of the scheduler (invariant 3): whatever the interleaving
//! of arrivals, crashes and consumer answers (success, failure and retry,
//! pause), each organisation's deliveries reach the consumer in received
//! order, one at a time, and every delivery at least once (exactly once
//! when nothing crashed); every job ends done or dead, and the journal
//! records no attempt that did not happen.
//!
//! Real parts: the journal on a SQLite file, the real scheduler and
//! forwarder, a consumer on a loopback port. A crash ends the runtime the
//! scheduler runs on, so every task stops at its next await whatever it
//! was doing (a request in flight, a commit awaited); the journal is then
//! closed and opened again, as a restarted process would. Time is the
//! test's: the scheduler compares on a manual clock, and where it would
//! sit out a backoff or a consumer's pause the test moves that clock past
//! it and wakes the partitions (`advance`). `PROPTEST_CASES` sets how
//! many cases run (default 24).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::clock::ManualClock;
use gatehouse::config::ProcessingConfig;
use gatehouse::store::Store as Journal;
use proptest::prelude::*;
use tokio::runtime::Runtime;

const ORGS: usize = 4;
/// How far `advance` moves the clock: past any wait a case can make.
const LEAP_MS: i64 = 31_000;
const MAX_ATTEMPTS: u32 = 3;

/// How the consumer answers one request for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 500: a failed attempt, retried after a backoff, dead after three.
    Fail,
    /// 429 with `Retry-After: 1`: the organisation waits; not an attempt
    /// that counts.
    Pause,
}

impl Answer {
    fn status(self) -> u16 {
        match self {
            Answer::Ok => 200,
            Answer::Fail => 500,
            Answer::Pause => 429,
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A delivery for `org` is journaled; the consumer gives `answers` to
    /// its requests in turn, then 200.
    Arrive {
        org: usize,
        answers: Vec<Answer>,
    },
    /// The scheduler runs this long, then the clock moves past any wait.
    Run {
        ms: u64,
    },
    Crash,
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![5 => Just(Answer::Ok), 3 => Just(Answer::Fail), 1 => Just(Answer::Pause)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..ORGS, prop::collection::vec(answer(), 0..5))
            .prop_map(|(org, answers)| Step::Arrive { org, answers }),
        3 => (0u64..60).prop_map(|ms| Step::Run { ms }),
        1 => Just(Step::Crash),
    ]
}

/// One answered request, in the order the consumer answered them.
#[derive(Debug, Clone)]
struct Answered {
    guid: String,
    org: String,
    status: u16,
}

/// The answers the consumer gives, per GUID, and what it answered so far.
#[derive(Default)]
struct Script {
    answers: HashMap<String, Vec<Answer>>,
    log: Vec<Answered>,
}

/// One run of "the process": a runtime with the scheduler on it and the
/// journal it opened.
struct Life {
    rt: Runtime,
    journal: Journal,
    /// The case's time: it lives across crashes, as the wall clock would.
    clock: Arc<ManualClock>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Life {
    fn start(db: &Path, url: &str, processing: &ProcessingConfig, clock: Arc<ManualClock>) -> Life {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // The previous life's last handles may take a moment to drop.
        let deadline = Instant::now() + Duration::from_secs(10);
        let journal = loop {
            match gatehouse::store::open(
                &gatehouse::store::Location::Sqlite(db.to_path_buf()),
                gatehouse::metrics::Metrics::new().journal,
                gatehouse::store::Options::default(),
            ) {
                Ok(j) => break j,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reopening: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("journal did not reopen: {e}"),
            }
        };
        let mut route = common::route("ci", url);
        route.max_attempts = MAX_ATTEMPTS;
        // The model lets order move past a dead letter (a held partition
        // is tested in scheduler_step and the store's conformance cases).
        route.on_dead = Some(gatehouse::config::OnDeadConfig::Skip);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        rt.block_on(
            gatehouse::scheduler::Scheduler::new(
                journal.clone(),
                gatehouse::sinks::scheduled(&[route], None, processing.workers),
                processing.clone(),
                gatehouse::metrics::Metrics::new().sinks,
                stop_rx,
            )
            .with_clock(clock.clone())
            .spawn(),
        )
        .unwrap();
        Life {
            rt,
            journal,
            clock,
            _stop: stop,
        }
    }

    /// Ends the process abruptly, as kill -9 would: the journal commits
    /// what it was given and then nothing more; then every task stops at
    /// its next await, whatever it was doing. (Stopping the runtime first
    /// would let a worker whose connection task was dropped first record
    /// a failed attempt no real crash could.)
    fn crash(self) {
        self.journal.close();
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }

    fn append(&self, org: &str, guid: &str, n: usize) {
        let appended = self
            .rt
            .block_on(
                self.journal
                    .append(common::journal_push(org, guid, n, "ci")),
            )
            .unwrap();
        assert!(matches!(
            appended,
            gatehouse::journal::Appended::Queued { .. }
        ));
    }

    /// The clock moves on past every backoff (at most 4 s here), pause
    /// (1 s) and a crashed life's lease (30 s); the scheduler, which
    /// slept on the system's timer, is woken for each partition with work
    /// as it would be at the due time. Returns how many have work.
    fn advance(&self) -> usize {
        self.clock.advance(LEAP_MS);
        let pending = self.rt.block_on(self.journal.due_partitions()).unwrap();
        let n = pending.len();
        for (sink, partition, _) in pending {
            self.journal.wake(sink, partition);
        }
        n
    }
}

struct Job {
    guid: String,
    org: String,
    state: String,
    /// The outcomes of the attempts the journal recorded, in order.
    attempts: Vec<String>,
    /// Their errors, for the failure message.
    errors: String,
}

fn jobs(life: &Life) -> Vec<Job> {
    use gatehouse::store::operator::{Cursor, Filter};
    life.rt.block_on(async {
        let listed = life
            .journal
            .list(&Filter::default(), Cursor::Newest, 100_000)
            .await
            .unwrap()
            .rows;
        let mut out = Vec::new();
        // Oldest first, as they were journaled.
        for d in listed.iter().rev() {
            let shown = life.journal.show(d.id).await.unwrap().unwrap();
            for j in shown.jobs {
                out.push(Job {
                    guid: d.guid.clone(),
                    org: d.partition.clone(),
                    state: j.state,
                    attempts: j.history.iter().map(|a| a.outcome.clone()).collect(),
                    errors: j
                        .history
                        .iter()
                        .filter_map(|a| a.error.clone())
                        .collect::<Vec<_>>()
                        .join(" | "),
                });
            }
        }
        out
    })
}

fn outcome(status: u16) -> &'static str {
    match status {
        200 => "done",
        429 => "paused",
        _ => "failed",
    }
}

fn run_case(steps: &[Step], processing: &ProcessingConfig) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let world = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let script: Arc<Mutex<Script>> = Arc::default();
    let consumer = {
        let script = script.clone();
        // A 2 ms answer, so that a crash can land while a request is in
        // flight.
        world.block_on(common::consumer::start(
            Duration::from_millis(2),
            Arc::new(move |a: &common::consumer::Arrival, _| {
                let mut s = script.lock().unwrap();
                let seen = s.log.iter().filter(|l| l.guid == a.guid).count();
                let answer = s
                    .answers
                    .get(&a.guid)
                    .and_then(|v| v.get(seen).copied())
                    .unwrap_or(Answer::Ok);
                s.log.push(Answered {
                    guid: a.guid.clone(),
                    org: a.org.clone(),
                    status: answer.status(),
                });
                let extra = match answer {
                    Answer::Pause => vec![("retry-after", "1".to_string())],
                    _ => vec![],
                };
                (answer.status(), extra)
            }),
        ))
    };

    let clock = ManualClock::starting_now();
    let mut life = Life::start(&db, &consumer.url, processing, clock.clone());
    let mut crashes = 0;
    // (GUID, organisation) of each delivery, in received order.
    let mut received: Vec<(String, String)> = Vec::new();
    for step in steps {
        match step {
            Step::Arrive { org, answers } => {
                let org = format!("org-{org}");
                let guid = format!("d-{}", received.len());
                script
                    .lock()
                    .unwrap()
                    .answers
                    .insert(guid.clone(), answers.clone());
                life.append(&org, &guid, received.len());
                received.push((guid, org));
            }
            Step::Run { ms } => {
                std::thread::sleep(Duration::from_millis(*ms));
                life.advance();
            }
            Step::Crash => {
                life.crash();
                crashes += 1;
                life = Life::start(&db, &consumer.url, processing, clock.clone());
            }
        }
    }
    // Settle: let time pass until every job is done or dead.
    let deadline = Instant::now() + Duration::from_secs(30);
    while life.advance() > 0 {
        prop_assert!(
            Instant::now() < deadline,
            "jobs still pending after 30 s: {:?}",
            jobs(&life)
                .iter()
                .filter(|j| j.state == "pending")
                .map(|j| (&j.guid, &j.attempts))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let jobs = jobs(&life);
    life.crash();
    common::load::integrity_ok(&db);
    let log = script.lock().unwrap().log.clone();
    world.shutdown_background();

    // Seen with --nocapture: what the cases covered.
    eprintln!(
        "case: {} deliveries, {} crashes, {} requests answered, {} dead",
        received.len(),
        crashes,
        log.len(),
        jobs.iter().filter(|j| j.state == "dead").count()
    );
    prop_assert_eq!(jobs.len(), received.len(), "one job per delivery");
    // Order: per organisation, every request for a delivery comes before
    // any request for a later one (retries and redeliveries included).
    let index: HashMap<&str, usize> = received
        .iter()
        .enumerate()
        .map(|(i, (g, _))| (g.as_str(), i))
        .collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for a in &log {
        let i = index[a.guid.as_str()];
        prop_assert_eq!(&a.org, &received[i].1);
        if let Some(prev) = last.insert(a.org.as_str(), i) {
            prop_assert!(
                prev <= i,
                "{}: a request for {} after one for the later {}",
                a.org,
                a.guid,
                received[prev].0
            );
        }
    }
    for job in &jobs {
        let answered: Vec<&str> = log
            .iter()
            .filter(|a| a.guid == job.guid)
            .map(|a| outcome(a.status))
            .collect();
        let successes = answered.iter().filter(|o| **o == "done").count();
        let failures = answered.iter().filter(|o| **o == "failed").count();
        // Nothing is recorded that the consumer did not answer.
        prop_assert!(
            job.attempts.len() <= answered.len(),
            "{}: {:?} recorded ({}), {:?} answered",
            job.guid,
            job.attempts,
            job.errors,
            answered
        );
        match job.state.as_str() {
            // At least once.
            "done" => prop_assert!(successes >= 1, "{} done unanswered", job.guid),
            "dead" => prop_assert!(
                failures >= MAX_ATTEMPTS as usize,
                "{} dead after {answered:?}",
                job.guid
            ),
            other => prop_assert!(false, "{} ended {other}", job.guid),
        }
        prop_assert_eq!(&job.org, &received[index[job.guid.as_str()]].1);
        if crashes == 0 {
            // Without a crash: exactly once, and the journal's history of
            // the job is what the consumer answered, answer for answer.
            prop_assert!(successes <= 1, "{} accepted twice", job.guid);
            prop_assert_eq!(&job.attempts, &answered, "{}", job.guid);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_keeps_order_and_delivers_at_least_once(
        steps in prop::collection::vec(step(), 1..40),
        workers in 1usize..4,
        batch_size in 1usize..5,
    ) {
        let processing = ProcessingConfig { workers, lease_secs: 30, batch_size };
        run_case(&steps, &processing)?;
    }
}
