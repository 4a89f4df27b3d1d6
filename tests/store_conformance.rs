//! The storage contract checked directly, case by case, through the
//! store's own operations (not through the scheduler that uses them). It
//! runs on the SQLite journal; the PostgreSQL backend (part 13) is to be
//! held to the same cases.
//!
//! The cases: appends (dedupe, fan-out), FIFO per partition, fenced
//! leases, holds, retries and back-fills, prune, clients, recovery
//! checkpoints, admin sessions, and the Actions merge under every order
//! (a property test).

mod common;

use common::conformance::{LEASE_MS, append, claim, failed_at};
use gatehouse::store::Store as Journal;
use gatehouse::store::jobs::{After, Fence, Job};

fn open(dir: &std::path::Path) -> Journal {
    common::open_store(&dir.join("gatehouse.db"))
}

/// Records a failed attempt of `job` (acme's, on ci) under `fence`,
/// retried at `retry_at_ms` if the fence holds.
async fn record_failed(journal: &Journal, job: &Job, fence: &Fence, retry_at_ms: i64) -> After {
    let now = gatehouse::clock::now_ms();
    journal
        .record(
            job,
            "ci",
            "acme",
            fence,
            failed_at(now),
            gatehouse::store::jobs::Limit::attempts(3),
            retry_at_ms,
            LEASE_MS,
        )
        .await
        .unwrap()
}

/// Attempts recorded for g1's job, as an operator sees them.
async fn attempts(journal: &Journal) -> usize {
    let id = journal.ids_of_guid("g1").await.unwrap()[0];
    let shown = journal.show(id).await.unwrap().unwrap();
    shown.jobs[0].history.len()
}

#[tokio::test]
async fn a_lease_passes_on_only_when_expired_and_each_claim_raises_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&*journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let a = claim(&*journal, "worker-a", now)
        .await
        .expect("free: taken");
    assert!(
        claim(&*journal, "worker-b", now + 1).await.is_none(),
        "another holder's unexpired lease is busy"
    );
    let a2 = claim(&*journal, "worker-a", now + 2)
        .await
        .expect("ours again");
    assert!(a2.epoch > a.epoch, "every claim raises the epoch");
    // Expired: another claims it, with a higher epoch still.
    let b = claim(&*journal, "worker-b", now + LEASE_MS + 10)
        .await
        .expect("expired: claimable");
    assert!(b.epoch > a2.epoch);
}

#[tokio::test]
async fn a_stale_fence_writes_nothing_and_cannot_free_the_new_holders_lease() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&*journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let a = claim(&*journal, "worker-a", now).await.unwrap();
    let job = journal
        .pending("ci", "acme", None, 10)
        .await
        .unwrap()
        .remove(0);
    // worker-a froze past its lease; worker-b took over.
    let b = claim(&*journal, "worker-b", now + LEASE_MS + 10)
        .await
        .unwrap();
    let stale = record_failed(&journal, &job, &a, now + 1000).await;
    assert_eq!(stale, After::LeaseLost);
    assert_eq!(attempts(&journal).await, 0, "nothing recorded");
    assert!(
        !journal
            .bury(job.id, "ci", "acme", &a, now, LEASE_MS, "gone")
            .await
            .unwrap()
    );
    assert!(
        !journal
            .extend("ci", "acme", &a, now + 99_999)
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
    journal.release("ci", "acme", &a).await.unwrap();
    assert!(
        claim(&*journal, "worker-c", now + LEASE_MS + 20)
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
    journal.release("ci", "acme", &b).await.unwrap();
    assert!(
        claim(&*journal, "worker-c", now + 1).await.is_some(),
        "released"
    );
}

#[tokio::test]
async fn leases_left_by_a_dead_process_expire_at_start_and_keep_their_fences() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    append(&*journal, "acme", "g1").await;
    let now = gatehouse::clock::now_ms();
    let dead = claim(&*journal, "gone-process", now).await.unwrap();
    let n = journal.expire_leases_of_the_dead().await.unwrap();
    assert_eq!(n, 1);
    let next = claim(&*journal, "new-process", now + 1)
        .await
        .expect("claimable at once");
    assert!(next.epoch > dead.epoch, "the old claim's fence is stale");
    let job = journal
        .pending("ci", "acme", None, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        record_failed(&journal, &job, &dead, now).await,
        After::LeaseLost
    );
}

#[tokio::test]
async fn an_append_is_deduplicated_by_hook_and_guid_and_fans_out_to_each_sink() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::appends_dedupe_and_fan_out(&*open(dir.path())).await;
}

#[tokio::test]
async fn pending_jobs_come_in_journal_order_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::pending_in_order(&*open(dir.path())).await;
}

#[tokio::test]
async fn holds_keep_a_partition_and_a_route_from_running_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::holds(&*open(dir.path())).await;
}

#[tokio::test]
async fn a_dead_head_holds_its_partition_until_retried_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::dead_heads(&*open(dir.path())).await;
}

#[tokio::test]
async fn a_batch_attempt_is_recorded_whole_under_its_fence() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::batches(&*open(dir.path())).await;
}

#[tokio::test]
async fn a_dead_letter_is_retried_from_a_clean_slate_and_a_backfill_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::retry_and_backfill(&*open(dir.path())).await;
}

#[tokio::test]
async fn prune_keeps_unfinished_work_and_keys_while_github_may_redeliver() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::prune_keeps_keys_while_github_may_redeliver(&*open(dir.path())).await;
}

#[tokio::test]
async fn the_one_server_on_a_file_holds_every_duty() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::duties(&*open(dir.path()), false).await;
}

#[tokio::test]
async fn clients_are_kept_by_token_hash_and_a_revoked_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::clients(&*open(dir.path())).await;
}

#[tokio::test]
async fn completeness_counts_seen_recovered_and_missing_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::completeness(&*open(dir.path())).await;
}

#[tokio::test]
async fn a_complete_walk_is_the_next_walks_checkpoint_and_a_claim_is_asked_once() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::recovery(&*open(dir.path())).await;
}

#[tokio::test]
async fn sessions_are_found_by_digest_idle_out_end_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::sessions(&*open(dir.path())).await;
}

#[tokio::test]
async fn failed_authentications_are_counted_per_address_in_a_sliding_window() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::auth_failures(&*open(dir.path())).await;
}

#[tokio::test]
async fn the_admin_views_read_what_the_writes_rolled_up() {
    let dir = tempfile::tempdir().unwrap();
    common::conformance::views(&*open(dir.path())).await;
}

mod actions_merge {
    //! `apply_workflow_jobs` keeps, per run and job, the observation that
    //! ranks highest by `Observation::version`, whatever the order, the
    //! batches and the repeats (the case is common::conformance's).

    use proptest::prelude::*;

    use super::common::conformance::actions_merge::{Case, apply, case, highest};

    async fn merged(case: &Case, which: usize) -> std::collections::BTreeMap<i64, String> {
        let dir = tempfile::tempdir().unwrap();
        let store = super::open(dir.path());
        let rows = apply(&*store, &case.orders[which], case.batches[which]).await;
        store.close();
        rows
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn any_order_batching_and_repeats_keep_the_highest_version(c in case()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (a, b) = rt.block_on(async { (merged(&c, 0).await, merged(&c, 1).await) });
            let want = highest(&c.orders[0]);
            prop_assert_eq!(&a, &want);
            prop_assert_eq!(&b, &want);
        }
    }
}

#[tokio::test]
async fn the_gateway_cache_keeps_answers_by_key_revalidates_expires_and_evicts() {
    use gatehouse::store::cache::{CacheFile, CacheStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway-cache.db");
    let cache = CacheFile::open(&path).unwrap();
    let kept = common::conformance::cache(&cache).await;
    // What was stored survives reopening.
    drop(cache);
    let again = CacheFile::open(&path).unwrap();
    assert_eq!(&again.get(kept).await.unwrap().unwrap().body[..], b"uno");
}
