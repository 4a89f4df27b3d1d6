//! The PostgreSQL store (part 13, in progress) against a real PostgreSQL
//! from the machine's packages: migrations when replicas start together,
//! a newer schema refused, and the journal's contract across replicas:
//! one delivery sent to every replica at once is accepted once, each
//! partition's order follows acknowledgement order whoever acknowledged,
//! prune keeps unfinished work, and a server restarted under a replica
//! costs 503s, never a false acknowledgement.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg::Cluster;
use gatehouse::journal::Appended;
use gatehouse::store::metrics::JournalMetrics;
use gatehouse::store::postgres::{PgError, Postgres, Target, schema};
use gatehouse::store::{Deliveries, Lifecycle};

fn target(url: &str) -> Target {
    Target::new(url, None).expect("a valid URL")
}

async fn replica(url: &str) -> Postgres {
    Postgres::connect(&target(url), JournalMetrics::unregistered())
        .await
        .expect("connect and migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    // Three replicas start at the same instant on an empty database.
    let (a, b, c) = tokio::join!(replica(&url), replica(&url), replica(&url));
    drop((a, b, c));
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let applied: Vec<i32> = client
        .query("SELECT version FROM gatehouse_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i32> = (1..=schema::latest_version()).collect();
    assert_eq!(applied, want, "each migration once");
    // A release that knows more migrated it.
    client
        .execute(
            "INSERT INTO gatehouse_schema (version, name) VALUES ($1, 'from the future')",
            &[&(schema::latest_version() + 1)],
        )
        .await
        .unwrap();
    match Postgres::connect(&target(&url), JournalMetrics::unregistered()).await {
        Err(e @ PgError::TooNew { .. }) => {
            assert!(e.to_string().contains("newer release"), "{e}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_delivery_sent_to_three_replicas_at_once_is_accepted_once() {
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    let replicas = [
        replica(&url).await,
        replica(&url).await,
        replica(&url).await,
    ];
    for round in 0..20 {
        let guid = format!("same-{round}");
        let (a, b, c) = tokio::join!(
            replicas[0].append(common::journal_push("acme", &guid, round, "ci")),
            replicas[1].append(common::journal_push("acme", &guid, round, "ci")),
            replicas[2].append(common::journal_push("acme", &guid, round, "ci")),
        );
        let outcomes = [a.unwrap(), b.unwrap(), c.unwrap()];
        let queued = outcomes
            .iter()
            .filter(|o| matches!(o, Appended::Queued { .. }))
            .count();
        assert_eq!(queued, 1, "round {round}: {outcomes:?}");
    }
    // One row and one job each, whichever replica reads.
    let order = replicas[1].partition_order("acme").await.unwrap();
    assert_eq!(order.len(), 20);
    let journaled = replicas[2]
        .journaled((0..20).map(|r| format!("same-{r}")).collect())
        .await
        .unwrap();
    assert_eq!(journaled.len(), 20);
    // The same delivery several times in one replica's batch (with
    // others beside it): one row, one job, one payload.
    let one = &replicas[0];
    let sends = (0..8).map(|i| {
        let guid = if i % 2 == 0 {
            "twice-in-a-batch".to_string()
        } else {
            format!("beside-{i}")
        };
        one.append(common::journal_push("other", &guid, i, "ci"))
    });
    let outcomes: Vec<Appended> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let queued: Vec<i64> = outcomes
        .iter()
        .step_by(2)
        .filter_map(|o| match o {
            Appended::Queued { id } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(queued.len(), 1, "{outcomes:?}");
    assert!(one.payload(queued[0]).await.unwrap().is_some());
    let order = one.partition_order("other").await.unwrap();
    assert_eq!(order.len(), 5, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitions_order_follows_acknowledgement_order_across_replicas() {
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    let replicas: Vec<Arc<Postgres>> = vec![
        Arc::new(replica(&url).await),
        Arc::new(replica(&url).await),
        Arc::new(replica(&url).await),
    ];
    // Each replica appends its own stream for one organisation, each
    // append after the previous one's acknowledgement; the three streams
    // race. A global counter stamps when each append was sent and when
    // it was acknowledged.
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        let (store, clock) = (store.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            for i in 0..60 {
                let guid = format!("r{r}-{i}");
                let sent = clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let outcome = store
                    .append(common::journal_push("acme", &guid, i, "ci"))
                    .await
                    .unwrap();
                let acked = clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert!(matches!(outcome, Appended::Queued { .. }));
                log.push((guid, sent, acked));
            }
            log
        }));
    }
    let mut stamps = std::collections::HashMap::new();
    for t in tasks {
        for (guid, sent, acked) in t.await.unwrap() {
            stamps.insert(guid, (sent, acked));
        }
    }
    let order = replicas[0].partition_order("acme").await.unwrap();
    assert_eq!(order.len(), 180);
    let seq_of: std::collections::HashMap<&str, i64> =
        order.iter().map(|(s, g)| (g.as_str(), *s)).collect();
    // Whenever one append was acknowledged before another was sent, it is
    // earlier in the partition's order.
    let mut pairs = 0;
    for (a, (_, a_acked)) in &stamps {
        for (b, (b_sent, _)) in &stamps {
            if a_acked < b_sent {
                pairs += 1;
                assert!(
                    seq_of[a.as_str()] < seq_of[b.as_str()],
                    "{a} was acknowledged before {b} was sent, but is later"
                );
            }
        }
    }
    assert!(
        pairs > 10_000,
        "the streams overlapped in time ({pairs} ordered pairs)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restarted_under_a_replica_costs_refusals_never_a_false_ack() {
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    let store = Arc::new(replica(&url).await);
    assert!(matches!(
        store
            .append(common::journal_push("acme", "before", 1, "ci"))
            .await
            .unwrap(),
        Appended::Queued { .. }
    ));
    // Appends keep coming while the server restarts at once (no
    // shutdown checkpoint, as after a crash).
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..400 {
                let guid = format!("during-{i}");
                match store
                    .append(common::journal_push("acme", &guid, i, "ci"))
                    .await
                {
                    Ok(Appended::Queued { .. }) => acked.push(guid),
                    Ok(Appended::Duplicate) => panic!("{guid} is new"),
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| pg.restart_immediate());
    let (acked, refused) = writer.await.unwrap();
    eprintln!(
        "{} acknowledged, {refused} refused across the restart",
        acked.len()
    );
    assert!(refused > 0, "the restart was felt");
    // Every acknowledged delivery is there after the crash-restart.
    let journaled = store.journaled(acked.clone()).await.unwrap();
    assert_eq!(journaled.len(), acked.len(), "every acknowledgement held");
    // And the replica writes again on its own.
    assert!(matches!(
        store
            .append(common::journal_push("acme", "after", 2, "ci"))
            .await
            .unwrap(),
        Appended::Queued { .. }
    ));
    assert!(store.is_writable());
}

use common::conformance::{LEASE_MS, claim};

fn attempt(
    outcome: gatehouse::store::jobs::Outcome,
    now_ms: i64,
) -> gatehouse::store::jobs::Attempt {
    gatehouse::store::jobs::Attempt {
        outcome,
        status_code: Some(200),
        started_at_ms: now_ms,
        duration_ms: 1,
        error: None,
        response_excerpt: None,
        url: Some("http://127.0.0.1:9/hook".into()),
        response_headers: Some(b"content-type: text/plain\r\n".to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_holds_a_partitions_lease_and_a_stale_fence_writes_nothing() {
    use gatehouse::store::Jobs;
    use gatehouse::store::jobs::{After, Outcome};
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    let (a, b, c) = (
        replica(&url).await,
        replica(&url).await,
        replica(&url).await,
    );
    for (i, guid) in ["g1", "g2", "g3"].iter().enumerate() {
        a.append(common::journal_push("acme", guid, i, "ci"))
            .await
            .unwrap();
    }
    let now = gatehouse::clock::now_ms();
    // All three claim at once: one lease.
    let (fa, fb, fc) = tokio::join!(
        claim(&a, "a", now),
        claim(&b, "b", now),
        claim(&c, "c", now)
    );
    let fences: Vec<_> = [fa, fb, fc].into_iter().flatten().collect();
    assert_eq!(fences.len(), 1, "one holder: {fences:?}");
    let first = fences[0].clone();
    let holder = match first.owner.as_str() {
        "a" => &a,
        "b" => &b,
        _ => &c,
    };
    // The holder runs them in received order.
    let jobs = holder.pending("ci", "acme", None, 10).await.unwrap();
    let guids: Vec<String> = {
        let order = holder.partition_order("acme").await.unwrap();
        order.into_iter().map(|(_, g)| g).collect()
    };
    assert_eq!(guids, ["g1", "g2", "g3"]);
    assert_eq!(jobs.len(), 3);
    assert!(jobs.windows(2).all(|w| w[0].delivery_id < w[1].delivery_id));
    // While it lasts, nobody else; once expired, another replica takes it
    // with a higher epoch, and the first holder's writes are refused.
    // (Each replica converts its clock to the database's by an offset it
    // measured to within half a round trip: a few ms of slack.)
    assert!(claim(&b, "late", now + LEASE_MS - 50).await.is_none());
    let later = now + LEASE_MS + 50;
    let second = claim(&b, "b2", later).await.expect("expired: claimable");
    assert!(second.epoch > first.epoch);
    let stale = holder
        .record(
            &jobs[0],
            "ci",
            "acme",
            &first,
            attempt(Outcome::Done, later),
            gatehouse::store::jobs::Limit::attempts(3),
            0,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(stale, After::LeaseLost);
    assert!(
        !holder
            .extend("ci", "acme", &first, later + LEASE_MS)
            .await
            .unwrap()
    );
    // A stale release frees nothing.
    holder.release("ci", "acme", &first).await.unwrap();
    assert!(
        claim(&c, "c2", later + 1).await.is_none(),
        "b2 still holds it"
    );
    // The new holder's writes go through; the job is done, in order.
    let done = b
        .record(
            &jobs[0],
            "ci",
            "acme",
            &second,
            attempt(Outcome::Done, later),
            gatehouse::store::jobs::Limit::attempts(3),
            0,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(done, After::Done);
    let next = b.pending("ci", "acme", None, 10).await.unwrap();
    assert_eq!(
        next.iter().map(|j| j.id).collect::<Vec<_>>(),
        [jobs[1].id, jobs[2].id]
    );
    // A failure is retried later, a pause pauses the partition.
    let retry_at = later + 5_000;
    let failed = b
        .record(
            &next[0],
            "ci",
            "acme",
            &second,
            attempt(Outcome::Failed, later),
            gatehouse::store::jobs::Limit::attempts(3),
            retry_at,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        failed,
        After::Retry {
            next_at_ms: retry_at
        }
    );
    // Due by its earliest pending job: g3, waiting since it arrived (under
    // strict order the sink then keeps it behind g2's retry).
    let earliest = b.next_due("ci", "acme").await.unwrap().unwrap();
    assert!(earliest < retry_at);
    let due = b.due_partitions().await.unwrap();
    assert_eq!(due, [("ci".to_string(), "acme".to_string(), earliest)]);
    let retried = b.pending("ci", "acme", None, 10).await.unwrap();
    assert_eq!((retried[0].attempts, retried[0].next_at_ms), (1, retry_at));
    let backlog = c.backlog(later).await.unwrap();
    assert_eq!(backlog.per_sink.len(), 1);
    let (sink, pending, _, dead) = &backlog.per_sink[0];
    assert_eq!((sink.as_str(), *pending, *dead), ("ci", 2, 0));
    b.release("ci", "acme", &second).await.unwrap();
    assert!(claim(&c, "c3", later + 2).await.is_some(), "released: free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_and_sessions_keep_the_contract_sqlite_keeps() {
    let pg = Cluster::start();
    let store = replica(&pg.database("clients").await).await;
    common::conformance::clients(&store).await;
    let store = replica(&pg.database("sessions").await).await;
    common::conformance::sessions(&store).await;
    let store = replica(&pg.database("throttle").await).await;
    common::conformance::auth_failures(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_gateway_cache_keeps_the_contract_the_file_keeps() {
    use gatehouse::store::Lifecycle;
    let pg = Cluster::start();
    let url = pg.database("cache").await;
    let (one, two) = (replica(&url).await, replica(&url).await);
    let kept = common::conformance::cache(&*one.shared_cache().unwrap()).await;
    // What one replica stored, another serves.
    let other = two.shared_cache().unwrap();
    assert_eq!(&other.get(kept).await.unwrap().unwrap().body[..], b"uno");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_work_on_one_replica_wakes_the_others_even_after_their_listen_connection_dies() {
    let pg = Cluster::start();
    let url = pg.database("journal").await;
    let (a, b) = (replica(&url).await, replica(&url).await);
    let mut heard = b.take_work_notices().expect("the scheduler's notices");
    assert!(b.take_work_notices().is_none(), "one taker");
    let hear = async |heard: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
                      want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match tokio::time::timeout(left, heard.recv()).await {
                Ok(Some((sink, partition))) if sink == "ci" && partition == want => return,
                Ok(Some(_)) => continue,
                _ => panic!("replica b never heard of {want}'s work"),
            }
        }
    };
    a.append(common::journal_push("acme", "n1", 1, "ci"))
        .await
        .unwrap();
    hear(&mut heard, "acme").await;
    // The LISTEN connection is cut (as a failover or an idle timeout
    // would); work made meanwhile is still heard, by the rescan after the
    // reconnect if its notification was lost.
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'gatehouse-listen'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "one LISTEN connection per replica");
    a.append(common::journal_push("globex", "n2", 2, "ci"))
        .await
        .unwrap();
    hear(&mut heard, "globex").await;
    // And the connection is back: later work is heard too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'gatehouse-listen'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never listened again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.append(common::journal_push("initech", "n3", 3, "ci"))
        .await
        .unwrap();
    hear(&mut heard, "initech").await;
    // Closing refuses new appends.
    tokio::task::block_in_place(|| a.close());
    assert!(
        a.append(common::journal_push("acme", "n4", 4, "ci"))
            .await
            .is_err()
    );
    a.probe().await.unwrap();
    assert!(a.size_bytes() > 0);
    assert!(a.backup(std::path::Path::new("/tmp/x")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_journal_scheduler_and_operator_cases_sqlite_passes_pass_here() {
    let pg = Cluster::start();
    let store = replica(&pg.database("appends").await).await;
    common::conformance::appends_dedupe_and_fan_out(&store).await;
    let store = replica(&pg.database("fifo").await).await;
    common::conformance::pending_in_order(&store).await;
    let store = replica(&pg.database("holds").await).await;
    common::conformance::holds(&store).await;
    let store = replica(&pg.database("retry").await).await;
    common::conformance::retry_and_backfill(&store).await;
    let store = replica(&pg.database("dead_heads").await).await;
    common::conformance::dead_heads(&store).await;
    let store = replica(&pg.database("batches").await).await;
    common::conformance::batches(&store).await;
    let store = replica(&pg.database("recovery").await).await;
    common::conformance::recovery(&store).await;
    let store = replica(&pg.database("completeness").await).await;
    common::conformance::completeness(&store).await;
    let store = replica(&pg.database("views").await).await;
    common::conformance::views(&store).await;
    let store = replica(&pg.database("prune").await).await;
    common::conformance::prune_keeps_keys_while_github_may_redeliver(&store).await;
    let store = replica(&pg.database("duties").await).await;
    common::conformance::duties(&store, true).await;
    // Every operation of the store interface is implemented.
    let whole: Box<dyn gatehouse::store::Backend> = Box::new(store);
    drop(whole);
}

#[test]
fn the_actions_merge_keeps_the_highest_version_under_any_order_here_too() {
    use common::conformance::actions_merge::{apply, case, highest};
    use proptest::test_runner::{Config, TestRunner};
    let pg = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let databases = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 12,
        ..Config::default()
    });
    runner
        .run(&case(), |c| {
            let (a, b) = rt.block_on(async {
                let mut out = Vec::new();
                for which in 0..2 {
                    let n = databases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let store = replica(&pg.database(&format!("merge{n}")).await).await;
                    out.push(apply(&store, &c.orders[which], c.batches[which]).await);
                }
                (out.remove(0), out.remove(0))
            });
            let want = highest(&c.orders[0]);
            proptest::prop_assert_eq!(&a, &want);
            proptest::prop_assert_eq!(&b, &want);
            Ok(())
        })
        .unwrap();
}
