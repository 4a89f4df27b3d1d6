//! The storage contract checked directly, case by case, through the
//! store's own operations (not through the scheduler that uses them). It
//! runs on the SQLite journal; the PostgreSQL backend (part 13) is to be
//! held to the same cases.
//!
//! So far: fenced leases.

mod common;

use gatehouse::journal::Journal;
use gatehouse::scheduler::sink::{Attempt, Outcome};
use gatehouse::scheduler::store::{self, After, Fence, Lease};

const LEASE_MS: i64 = 30_000;

fn open(dir: &std::path::Path) -> Journal {
    Journal::open(
        &dir.join("gatehouse.db"),
        gatehouse::metrics::Metrics::new().journal,
    )
    .unwrap()
}

async fn append(journal: &Journal, org: &str, guid: &str) {
    journal
        .append(common::journal_push(org, guid, 1, "ci"))
        .await
        .unwrap();
}

async fn claim(journal: &Journal, owner: &str, now_ms: i64) -> Option<Fence> {
    match store::acquire(journal, "ci", "acme", owner, now_ms, LEASE_MS)
        .await
        .unwrap()
    {
        Lease::Taken { fence, .. } => Some(fence),
        Lease::Busy => None,
        Lease::Held => panic!("not held"),
    }
}

fn failed_at(now_ms: i64) -> Attempt {
    Attempt {
        outcome: Outcome::Failed,
        status_code: Some(500),
        started_at_ms: now_ms,
        duration_ms: 1,
        error: Some("HTTP 500".into()),
        response_excerpt: None,
        url: Some("http://127.0.0.1:9/hook".into()),
        response_headers: None,
    }
}

/// Records a failed attempt of `job` (acme's, on ci) under `fence`,
/// retried at `retry_at_ms` if the fence holds.
async fn record_failed(
    journal: &Journal,
    job: &store::Job,
    fence: &Fence,
    retry_at_ms: i64,
) -> After {
    let now = gatehouse::clock::now_ms();
    store::record(
        journal,
        job,
        "ci",
        "acme",
        fence,
        failed_at(now),
        3,
        retry_at_ms,
        LEASE_MS,
    )
    .await
    .unwrap()
}

async fn attempts(journal: &Journal) -> i64 {
    journal
        .reader()
        .run(|r| r.query(|c| c.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lease_passes_on_only_when_expired_and_each_claim_raises_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let a = claim(&journal, "worker-a", now).await.expect("free: taken");
    assert!(
        claim(&journal, "worker-b", now + 1).await.is_none(),
        "another holder's unexpired lease is busy"
    );
    let a2 = claim(&journal, "worker-a", now + 2)
        .await
        .expect("ours again");
    assert!(a2.epoch > a.epoch, "every claim raises the epoch");
    // Expired: another claims it, with a higher epoch still.
    let b = claim(&journal, "worker-b", now + LEASE_MS + 10)
        .await
        .expect("expired: claimable");
    assert!(b.epoch > a2.epoch);
}

#[tokio::test]
async fn a_stale_fence_writes_nothing_and_cannot_free_the_new_holders_lease() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let a = claim(&journal, "worker-a", now).await.unwrap();
    let job = store::pending(&journal, "ci", "acme", None, 10)
        .await
        .unwrap()
        .remove(0);
    // worker-a froze past its lease; worker-b took over.
    let b = claim(&journal, "worker-b", now + LEASE_MS + 10)
        .await
        .unwrap();
    let stale = record_failed(&journal, &job, &a, now + 1000).await;
    assert_eq!(stale, After::LeaseLost);
    assert_eq!(attempts(&journal).await, 0, "nothing recorded");
    assert!(
        !store::bury(&journal, job.id, "ci", "acme", &a, LEASE_MS, "gone")
            .await
            .unwrap()
    );
    assert!(
        !store::extend(&journal, "ci", "acme", &a, now + 99_999)
            .await
            .unwrap()
    );
    // The same owner name with an old epoch is stale too (a restarted
    // worker reusing its name cannot act on its earlier claim).
    let old_b = Fence {
        owner: b.owner.clone(),
        epoch: b.epoch - 1,
    };
    assert_eq!(
        record_failed(&journal, &job, &old_b, now).await,
        After::LeaseLost
    );
    store::release(&journal, "ci", "acme", &a).await.unwrap();
    assert!(
        claim(&journal, "worker-c", now + LEASE_MS + 20)
            .await
            .is_none(),
        "a stale release did not free worker-b's lease"
    );
    // The holder's own writes go through.
    let fresh = record_failed(&journal, &job, &b, now + 1000).await;
    assert_eq!(
        fresh,
        After::Retry {
            next_at_ms: now + 1000
        }
    );
    assert_eq!(attempts(&journal).await, 1);
    store::release(&journal, "ci", "acme", &b).await.unwrap();
    assert!(
        claim(&journal, "worker-c", now + 1).await.is_some(),
        "released"
    );
}

#[tokio::test]
async fn leases_left_by_a_dead_process_expire_at_start_and_keep_their_fences() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let dead = claim(&journal, "gone-process", now).await.unwrap();
    let n = store::expire_leases_of_the_dead(&journal).await.unwrap();
    assert_eq!(n, 1);
    let next = claim(&journal, "new-process", now + 1)
        .await
        .expect("claimable at once");
    assert!(next.epoch > dead.epoch, "the old claim's fence is stale");
    let job = store::pending(&journal, "ci", "acme", None, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        record_failed(&journal, &job, &dead, now).await,
        After::LeaseLost
    );
}
