//! Store contract cases written once and run on every backend: each takes
//! the store as a parameter (`store_conformance.rs` on SQLite,
//! `store_postgres.rs` on PostgreSQL).

use gatehouse::store::clients::Usage;
use gatehouse::store::jobs::{After, Attempt, Fence, Lease, Limit, Outcome};
use gatehouse::store::sessions::{NewSession, SEEN_GRANULARITY_MS};
use gatehouse::store::{Clients, Deliveries, Jobs, Operator, Recovery, Sessions, StoreError};

pub const LEASE_MS: i64 = 30_000;

/// A delivery as the journal takes it, for `hook` and `sinks`, received at
/// `at_ms`.
pub fn delivery(
    hook: &str,
    org: &str,
    guid: &str,
    sinks: &[&str],
    at_ms: i64,
) -> gatehouse::journal::NewDelivery {
    let mut d = super::journal_push(org, guid, 1, "ci");
    d.meta.hook_id = hook.into();
    d.meta.received_at_ms = at_ms;
    d.sinks = sinks.iter().map(|s| s.to_string()).collect();
    d
}

pub async fn append<S: Deliveries + ?Sized>(journal: &S, org: &str, guid: &str) {
    journal
        .append(super::journal_push(org, guid, 1, "ci"))
        .await
        .unwrap();
}

pub async fn claim<S: Jobs + ?Sized>(journal: &S, owner: &str, now_ms: i64) -> Option<Fence> {
    match journal
        .acquire("ci", "acme", owner, now_ms, LEASE_MS)
        .await
        .unwrap()
    {
        Lease::Taken { fence, .. } => Some(fence),
        Lease::Busy => None,
        Lease::Held => panic!("not held"),
    }
}

pub fn failed_at(now_ms: i64) -> Attempt {
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

fn spec(name: &str, hash: &str) -> gatehouse::store::clients::ClientSpec {
    gatehouse::store::clients::ClientSpec {
        name: name.into(),
        token_hash: hash.into(),
        scopes: vec![],
        owners: vec![],
        limits: gatehouse::store::clients::Limits::default(),
    }
}

fn actor(origin: gatehouse::store::clients::Origin) -> gatehouse::store::clients::Actor {
    gatehouse::store::clients::Actor {
        origin,
        who: "conformance".into(),
    }
}

/// Clients are kept by token hash; a name is unique while active and may
/// be reused once revoked; rotation swaps the hash; every change is in
/// the audit log; usage adds up per minute and per line.
pub async fn clients<S: Clients + ?Sized>(store: &S) {
    use gatehouse::store::clients::{Limits, Origin, Priority, UsageLine};
    let cli = actor(Origin::Cli);
    let scopes = vec!["GET /repos/.*".to_string()];
    let limits = Limits {
        quota_per_hour: Some(500),
        weight: 3,
        priority: Priority::High,
    };
    let first = gatehouse::store::clients::ClientSpec {
        scopes: scopes.clone(),
        owners: vec!["acme".into()],
        limits: limits.clone(),
        ..spec("ci", "hash-1")
    };
    store.add_client(&first, &cli, 1).await.unwrap();
    assert!(matches!(
        store.add_client(&spec("ci", "hash-2"), &cli, 2).await,
        Err(StoreError::Invalid(_))
    ));
    let c = store.client_by_token("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (c.name.as_str(), c.scopes, c.owners, c.limits),
        ("ci", scopes, vec!["acme".to_string()], limits)
    );
    assert!(store.client_by_token("hash-2").await.unwrap().is_none());
    // Usage: two flushes of one minute add up; an older minute is cut.
    let now = 1_700_000_000_000i64;
    let minute = now / 60_000;
    let used = |requests, hits| Usage {
        requests,
        hits,
        ..Usage::default()
    };
    let line = |minute, route: &str, credential: &str, refused: &str, spent| UsageLine {
        minute,
        client: "ci".into(),
        owner: "acme".into(),
        route: route.into(),
        credential: credential.into(),
        refused_by: refused.into(),
        requests: 1,
        units_spent: spent,
        units_saved: 0,
    };
    store
        .add_usage(
            vec![(("ci".into(), minute), used(3, 2))],
            vec![line(minute, "GET /a", "token:x", "", 2)],
            minute - 120,
            minute - 120,
        )
        .await
        .unwrap();
    store
        .add_usage(
            vec![(("ci".into(), minute), used(4, 1))],
            vec![
                line(minute, "GET /a", "token:x", "", 3),
                line(minute, "GET /a", "", "quota", 0),
                // Older than kept: dropped in the same transaction.
                line(minute - 500, "GET /a", "token:x", "", 9),
            ],
            minute - 120,
            minute - 120,
        )
        .await
        .unwrap();
    store
        .add_usage(
            vec![(
                ("ci".into(), minute - 1),
                Usage {
                    units_spent: 5,
                    ..Usage::default()
                },
            )],
            vec![line(minute - 1, "GET /b", "token:y", "", 5)],
            minute - 120,
            minute - 120,
        )
        .await
        .unwrap();
    let rows = store.clients(now).await.unwrap();
    assert_eq!(rows[0].last_hour.requests, 7);
    assert_eq!(rows[0].last_hour.hits, 3);
    assert_eq!(rows[0].limits.quota_per_hour, Some(500));
    assert_eq!(rows[0].origin, Origin::Cli);
    // Units by minute: only minutes that spent, from the one asked on.
    assert_eq!(
        store.units_by_minute(minute - 1).await.unwrap(),
        vec![("ci".to_string(), minute - 1, 5)]
    );
    assert!(store.units_by_minute(minute).await.unwrap().is_empty());
    // Lines sum over minutes by key; refusals keep their rule.
    let mut lines = store.usage_lines(minute - 60).await.unwrap();
    lines.sort_by(|a, b| (&a.route, &a.refused_by).cmp(&(&b.route, &b.refused_by)));
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.route.as_str(),
                l.credential.as_str(),
                l.refused_by.as_str(),
                l.requests,
                l.units_spent,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET /a", "token:x", "", 2, 5),
            ("GET /a", "", "quota", 1, 0),
            ("GET /b", "token:y", "", 1, 5),
        ]
    );
    assert!(
        store.usage_lines(minute - 1000).await.unwrap().len() == 3,
        "the old line was cut"
    );
    assert_eq!(
        store.owner_minutes(minute - 60).await.unwrap(),
        vec![
            ("acme".to_string(), minute - 1, 5, 0),
            ("acme".to_string(), minute, 5, 0),
        ],
        "refusals spend nothing"
    );
    // Rotation: the old hash stops working at once.
    store.rotate_client("ci", "hash-1b", &cli, 3).await.unwrap();
    assert!(store.client_by_token("hash-1").await.unwrap().is_none());
    assert_eq!(
        store
            .client_by_token("hash-1b")
            .await
            .unwrap()
            .unwrap()
            .name,
        "ci"
    );
    store.revoke_client("ci", &cli, 3).await.unwrap();
    assert!(store.client_by_token("hash-1b").await.unwrap().is_none());
    assert!(matches!(
        store.revoke_client("ci", &cli, 4).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.rotate_client("ci", "hash-x", &cli, 4).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .add_client(&spec("ci", "hash-3"), &cli, 5)
        .await
        .unwrap();
    let rows = store.clients(now).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].revoked_at_ms.is_none());
    assert_eq!(
        store.client_by_token("hash-3").await.unwrap().unwrap().name,
        "ci"
    );
    // The clients file: adds, changes, revokes its own, never others'.
    let file = actor(Origin::File);
    let applied = store
        .apply_client_file(&[spec("bot", "hash-b"), spec("app", "hash-a")], &file, 6)
        .await
        .unwrap();
    assert_eq!(
        (
            applied.added.len(),
            applied.changed.len(),
            applied.revoked.len()
        ),
        (2, 0, 0)
    );
    let again = store
        .apply_client_file(&[spec("bot", "hash-b2")], &file, 7)
        .await
        .unwrap();
    assert_eq!(again.changed, vec!["bot".to_string()]);
    assert_eq!(again.revoked, vec!["app".to_string()]);
    assert!(store.client_by_token("hash-b").await.unwrap().is_none());
    assert!(store.client_by_token("hash-a").await.unwrap().is_none());
    assert_eq!(
        store
            .client_by_token("hash-b2")
            .await
            .unwrap()
            .unwrap()
            .name,
        "bot"
    );
    // A file naming a CLI client changes nothing at all.
    assert!(matches!(
        store
            .apply_client_file(&[spec("bot", "hash-b3"), spec("ci", "hash-c")], &file, 8)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.client_by_token("hash-b2").await.unwrap().is_some());
    assert!(store.client_by_token("hash-3").await.unwrap().is_some());
    // The CLI may not change the file's clients.
    assert!(matches!(
        store.revoke_client("bot", &cli, 9).await,
        Err(StoreError::Invalid(_))
    ));
    let unchanged = store
        .apply_client_file(&[spec("bot", "hash-b2")], &file, 10)
        .await
        .unwrap();
    assert_eq!(unchanged.unchanged, 1);
    let log = store.audit_log(100).await.unwrap();
    let actions: Vec<(String, String)> = log
        .iter()
        .rev()
        .map(|a| (a.action.clone(), a.subject.clone()))
        .collect();
    let expect: Vec<(String, String)> = [
        ("add", "ci"),
        ("rotate", "ci"),
        ("revoke", "ci"),
        ("add", "ci"),
        ("add", "bot"),
        ("add", "app"),
        ("change", "bot"),
        ("revoke", "app"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actions, expect);
    assert_eq!(log[1].actor, "file:conformance");
    assert_eq!(log[0].detail, "no longer in the clients file");
    assert!(
        log.iter().all(|a| !a.detail.contains("hash")),
        "no hash in the log"
    );
}

/// Sessions are found by digest, idle out, end, and stay bounded with the
/// least recently seen going first.
pub async fn sessions<S: Sessions + ?Sized>(store: &S) {
    let t0 = 1_700_000_000_000;
    let new = |n: u8, now_ms: i64| NewSession {
        token_digest: [n; 32],
        csrf: format!("csrf-{n}"),
        password_digest: [9; 32],
        now_ms,
    };
    for n in 1..=3 {
        store
            .open_session(&new(n, t0 + i64::from(n)), 0, 3)
            .await
            .unwrap();
    }
    let s = store.session([2; 32], t0 + 10, 0).await.unwrap().unwrap();
    assert_eq!((s.csrf.as_str(), s.password_digest), ("csrf-2", [9; 32]));
    assert_eq!(store.session([7; 32], t0, 0).await.unwrap(), None);
    // A fourth past max = 3: the least recently seen (1) makes room.
    store.open_session(&new(4, t0 + 20), 0, 3).await.unwrap();
    assert_eq!(store.session([1; 32], t0 + 20, 0).await.unwrap(), None);
    assert!(store.session([3; 32], t0 + 20, 0).await.unwrap().is_some());
    // Seen again only past the granularity; idle ones end when looked at.
    let later = t0 + SEEN_GRANULARITY_MS + 5;
    let seen = store.session([3; 32], later, 0).await.unwrap().unwrap();
    assert_eq!(seen.last_seen_ms, later);
    assert_eq!(
        store.session([4; 32], later, later).await.unwrap(),
        None,
        "idle"
    );
    assert_eq!(
        store.session([4; 32], later, 0).await.unwrap(),
        None,
        "ended"
    );
    store.end_session([3; 32]).await.unwrap();
    store.end_session([3; 32]).await.unwrap();
    assert_eq!(store.session([3; 32], later, 0).await.unwrap(), None);
}

/// Failed authentications per address: counted in a sliding window,
/// checked and counted in one step, forgiven on success.
pub async fn auth_failures<S: Sessions + ?Sized>(store: &S) {
    use gatehouse::store::sessions::Tally;
    let (t0, minute) = (1_700_000_000_000, 60_000);
    let (a, b) = ("login:10.0.0.1", "login:10.0.0.2");
    for i in 0..3 {
        assert_eq!(
            store
                .tally_failure(a, Tally::Reserve, t0 + i, minute, 3)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .tally_failure(a, Tally::Reserve, t0 + 10, minute, 3)
            .await
            .unwrap(),
        Some(t0),
        "full: refused, with the oldest failure's time"
    );
    assert_eq!(
        store
            .tally_failure(a, Tally::Check, t0 + 10, minute, 3)
            .await
            .unwrap(),
        Some(t0),
        "the refused reservation was not counted"
    );
    assert_eq!(
        store
            .tally_failure(b, Tally::Check, t0 + 10, minute, 3)
            .await
            .unwrap(),
        None,
        "another address is apart"
    );
    // A minute after the first, one slot is free again.
    let later = t0 + minute;
    assert_eq!(
        store
            .tally_failure(a, Tally::Check, later, minute, 3)
            .await
            .unwrap(),
        None
    );
    store
        .tally_failure(a, Tally::Record, later, minute, 3)
        .await
        .unwrap();
    assert_eq!(
        store
            .tally_failure(a, Tally::Check, later, minute, 3)
            .await
            .unwrap(),
        Some(t0 + 1)
    );
    store.forgive_failures(a).await.unwrap();
    assert_eq!(
        store
            .tally_failure(a, Tally::Check, later, minute, 3)
            .await
            .unwrap(),
        None,
        "forgiven"
    );
    // Many at once: exactly the limit pass.
    let passed = futures_util::future::join_all(
        (0..20).map(|_| store.tally_failure(b, Tally::Reserve, later, minute, 5)),
    )
    .await
    .into_iter()
    .filter(|r| matches!(r, Ok(None)))
    .count();
    assert_eq!(passed, 5);
}

pub async fn appends_dedupe_and_fan_out<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    use gatehouse::journal::Appended;
    let now = gatehouse::clock::now_ms();
    let first = journal
        .append(delivery("1", "acme", "g1", &["ci", "audit"], now))
        .await
        .unwrap();
    let Appended::Queued { id } = first else {
        panic!("new delivery not queued: {first:?}")
    };
    assert_eq!(
        journal
            .append(delivery("1", "acme", "g1", &["ci", "audit"], now))
            .await
            .unwrap(),
        Appended::Duplicate,
        "the same (hook, GUID) changes nothing"
    );
    // GitHub sends one GUID to every hook subscribed: each is its own.
    assert!(matches!(
        journal
            .append(delivery("2", "acme", "g1", &["ci"], now))
            .await
            .unwrap(),
        Appended::Queued { .. }
    ));
    assert_eq!(journal.ids_of_guid("g1").await.unwrap().len(), 2);
    let shown = journal.show(id).await.unwrap().unwrap();
    let mut routes: Vec<&str> = shown.jobs.iter().map(|j| j.route.as_str()).collect();
    routes.sort();
    assert_eq!(routes, ["audit", "ci"], "one pending job per sink");
    assert!(shown.jobs.iter().all(|j| j.state == "pending"));
    let row = journal.delivery("1", "g1").await.unwrap().unwrap();
    assert_eq!(row.id, id);
    let payload = journal.payload(id).await.unwrap().unwrap();
    assert_eq!(payload.body, super::push_for("acme", 1));
    assert!(journal.delivery("3", "g1").await.unwrap().is_none());
    // The repositories deliveries name, once each, since a time.
    journal
        .append(delivery("1", "globex", "g2", &["ci"], now + 10))
        .await
        .unwrap();
    assert_eq!(
        journal.repositories_seen(now - 1, 10).await.unwrap(),
        ["acme/repo", "globex/repo"]
    );
    assert_eq!(
        journal.repositories_seen(now + 5, 10).await.unwrap(),
        ["globex/repo"]
    );
}

pub async fn pending_in_order<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    let now = gatehouse::clock::now_ms();
    for (i, org) in ["acme", "globex", "acme", "acme", "globex"]
        .iter()
        .enumerate()
    {
        journal
            .append(delivery("1", org, &format!("g{i}"), &["ci"], now))
            .await
            .unwrap();
    }
    let acme = journal.pending("ci", "acme", None, 10).await.unwrap();
    let ids: Vec<i64> = acme.iter().map(|j| j.delivery_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "FIFO by journal order");
    assert_eq!(ids.len(), 3);
    assert_eq!(
        journal.pending("ci", "acme", None, 2).await.unwrap().len(),
        2
    );
    let due = journal.due_partitions().await.unwrap();
    let mut parts: Vec<&str> = due.iter().map(|d| d.1.as_str()).collect();
    parts.sort();
    assert_eq!(parts, ["acme", "globex"]);
}

pub async fn holds<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    let now = gatehouse::clock::now_ms();
    append(journal, "acme", "g1").await;
    journal.hold_partition("ci", "acme", true).await.unwrap();
    assert!(matches!(
        journal
            .acquire("ci", "acme", "w", now, LEASE_MS)
            .await
            .unwrap(),
        Lease::Held
    ));
    assert!(journal.due_partitions().await.unwrap().is_empty());
    journal.hold_partition("ci", "acme", false).await.unwrap();
    journal.hold_route("ci", true).await.unwrap();
    journal.hold_route("ci", true).await.unwrap();
    let states = journal.route_states(&["ci".into()], now).await.unwrap();
    assert!(states[0].paused, "idempotent");
    assert!(matches!(
        journal
            .acquire("ci", "acme", "w", now, LEASE_MS)
            .await
            .unwrap(),
        Lease::Held
    ));
    journal.hold_route("ci", false).await.unwrap();
    assert!(matches!(
        journal
            .acquire("ci", "acme", "w", now, LEASE_MS)
            .await
            .unwrap(),
        Lease::Taken { .. }
    ));
}

/// A batch's attempt is recorded whole in one transaction: its done jobs
/// done, each failed one moved on by the outcome, the others untouched;
/// a stale fence writes nothing. Payloads come in the order asked, gone
/// ones as None, within a byte budget.
pub async fn batches<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    use gatehouse::store::jobs::OnDead;
    let now = gatehouse::clock::now_ms();
    for g in ["b1", "b2", "b3", "b4"] {
        append(journal, "acme", g).await;
    }
    let jobs = journal.pending("ci", "acme", None, 10).await.unwrap();
    assert_eq!(jobs.len(), 4);
    let ids: Vec<i64> = jobs.iter().map(|j| j.delivery_id).collect();
    let read = journal.payloads(ids.clone(), u64::MAX).await.unwrap();
    assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), ids);
    assert!(read.iter().all(|r| r.1.is_some()));
    let one = read[0].1.as_ref().unwrap().body.len() as u64;
    let capped = journal.payloads(ids.clone(), one).await.unwrap();
    assert_eq!(capped.len(), 2, "stops after the one past the budget");
    let missing = journal.payloads(vec![ids[0], -1], u64::MAX).await.unwrap();
    assert!(missing[1].1.is_none(), "a gone one is None");

    let limit = Limit {
        max_attempts: 3,
        on_dead: OnDead::Hold,
    };
    let stale = claim(journal, "w", now).await.unwrap();
    journal.release("ci", "acme", &stale).await.unwrap();
    let fence = claim(journal, "w", now).await.unwrap();
    let lost = journal
        .record_batch(
            &jobs[..2],
            &jobs[2..3],
            "ci",
            "acme",
            &stale,
            failed_at(now),
            limit,
            now + 1000,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(lost, After::LeaseLost);
    assert_eq!(
        journal.pending("ci", "acme", None, 10).await.unwrap().len(),
        4
    );
    let after = journal
        .record_batch(
            &jobs[..2],
            &jobs[2..3],
            "ci",
            "acme",
            &fence,
            failed_at(now),
            limit,
            now + 1000,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        after,
        After::Retry {
            next_at_ms: now + 1000
        }
    );
    let left = journal.pending("ci", "acme", None, 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|j| (j.id, j.attempts, j.next_at_ms))
            .collect::<Vec<_>>(),
        [
            (jobs[2].id, 1, now + 1000),
            (jobs[3].id, 0, jobs[3].next_at_ms)
        ],
        "the failed one counted and due later; the last untouched"
    );
    for (i, job) in jobs[..2].iter().enumerate() {
        let shown = journal.show(job.delivery_id).await.unwrap().unwrap();
        let j = &shown.jobs[0];
        assert_eq!((j.state.as_str(), j.attempts), ("done", 1), "b{}", i + 1);
        assert_eq!(j.history.len(), 1);
        assert_eq!(j.history[0].outcome, "done");
        assert_eq!(j.history[0].error, None, "done, whatever the rest came to");
    }
    let last = journal.show(jobs[3].delivery_id).await.unwrap().unwrap();
    assert!(last.jobs[0].history.is_empty(), "not reached: no attempt");
    // All done at once.
    let rest = journal.pending("ci", "acme", None, 10).await.unwrap();
    let mut ok = failed_at(now);
    ok.outcome = Outcome::Done;
    let after = journal
        .record_batch(&rest, &[], "ci", "acme", &fence, ok, limit, now, LEASE_MS)
        .await
        .unwrap();
    assert_eq!(after, After::Done);
    assert!(
        journal
            .pending("ci", "acme", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A strict route's dead head holds its partition until it is retried or
/// skipped, in the transaction that buried it; `skip` lets order move on
/// and says where it broke.
pub async fn dead_heads<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    use gatehouse::store::jobs::OnDead;
    let now = gatehouse::clock::now_ms();
    append(journal, "acme", "h1").await;
    append(journal, "acme", "h2").await;
    let hold = Limit {
        max_attempts: 1,
        on_dead: OnDead::Hold,
    };
    let die = async |limit: Limit| {
        let fence = claim(journal, "w", now).await.unwrap();
        let job = journal
            .pending("ci", "acme", None, 1)
            .await
            .unwrap()
            .remove(0);
        let after = journal
            .record(
                &job,
                "ci",
                "acme",
                &fence,
                failed_at(now),
                limit,
                now,
                LEASE_MS,
            )
            .await
            .unwrap();
        journal.release("ci", "acme", &fence).await.unwrap();
        assert_eq!(after, After::Dead);
        job.delivery_id
    };
    let first = die(hold).await;
    // Held: not due, not claimable, though h2 is pending behind it.
    assert!(journal.due_partitions().await.unwrap().is_empty());
    assert!(matches!(
        journal
            .acquire("ci", "acme", "w", now, LEASE_MS)
            .await
            .unwrap(),
        Lease::Held
    ));
    let shown = journal.show(first).await.unwrap().unwrap();
    assert!(shown.jobs[0].holding, "{:?}", shown.jobs[0]);
    let second = journal.ids_of_guid("h2").await.unwrap()[0];
    let waiting = journal.show(second).await.unwrap().unwrap();
    assert_eq!(
        waiting.jobs[0].behind,
        Some(shown.jobs[0].id),
        "h2 waits behind the dead h1"
    );
    // Retried: the head again, the partition runs.
    journal.retry_delivery(first, None).await.unwrap();
    assert_eq!(journal.due_partitions().await.unwrap().len(), 1);
    assert!(!journal.show(first).await.unwrap().unwrap().jobs[0].holding);
    // Dies again; this time an operator skips it: it stays dead, marked,
    // and h2 goes.
    assert_eq!(die(hold).await, first);
    let skipped = journal
        .skip_dead(first, Some("ci"), "cli:alice", now)
        .await
        .unwrap();
    assert_eq!(skipped.jobs, 1);
    assert_eq!(journal.due_partitions().await.unwrap().len(), 1);
    let job = journal.show(first).await.unwrap().unwrap().jobs.remove(0);
    assert_eq!((job.state.as_str(), job.holding), ("dead", false));
    assert_eq!(job.skipped, Some((now, "cli:alice".to_string())));
    assert_eq!(
        journal
            .skip_dead(first, None, "cli:alice", now)
            .await
            .unwrap()
            .jobs,
        0,
        "once"
    );
    // on_dead = skip: h2 dies, nothing is held, and the skip is recorded.
    let skip = Limit {
        max_attempts: 1,
        on_dead: OnDead::Skip,
    };
    assert_eq!(die(skip).await, second);
    let job = journal.show(second).await.unwrap().unwrap().jobs.remove(0);
    assert!(!job.holding);
    assert_eq!(job.skipped.map(|s| s.1).as_deref(), Some("on_dead = skip"));
    // A retry gives a skipped job a clean slate.
    journal.retry_delivery(second, None).await.unwrap();
    let job = journal.show(second).await.unwrap().unwrap().jobs.remove(0);
    assert_eq!((job.state.as_str(), job.skipped), ("pending", None));
}

pub async fn retry_and_backfill<S: Deliveries + Jobs + Operator + ?Sized>(journal: &S) {
    use gatehouse::store::operator::Filter;
    let now = gatehouse::clock::now_ms();
    append(journal, "acme", "g1").await;
    let fence = claim(journal, "w", now).await.unwrap();
    let job = journal
        .pending("ci", "acme", None, 1)
        .await
        .unwrap()
        .remove(0);
    let dead = journal
        .record(
            &job,
            "ci",
            "acme",
            &fence,
            failed_at(now),
            Limit::attempts(1),
            now,
            LEASE_MS,
        )
        .await
        .unwrap();
    assert_eq!(dead, After::Dead, "max_attempts 1");
    let dead_ones = Filter {
        state: Some("dead".into()),
        ..Filter::default()
    };
    assert_eq!(journal.count_dead(&dead_ones).await.unwrap(), 1);
    let requeued = journal.retry_dead(&dead_ones).await.unwrap();
    assert_eq!(requeued.jobs, 1);
    assert!(
        requeued
            .partitions
            .contains(&("ci".to_string(), "acme".to_string()))
    );
    assert_eq!(journal.count_dead(&dead_ones).await.unwrap(), 0);
    let again = journal.pending("ci", "acme", None, 1).await.unwrap();
    assert_eq!(again[0].attempts, 0, "a clean slate");
    // A bad filter is refused, not read as "everything".
    let typo = Filter {
        state: Some("deda".into()),
        ..Filter::default()
    };
    assert!(matches!(
        journal.count_dead(&typo).await,
        Err(gatehouse::store::StoreError::Invalid(_))
    ));
    // A back-fill gives a new sink the deliveries it wants, once.
    let wants = || -> gatehouse::store::operator::Wants { Box::new(|m| m.event == "push") };
    assert_eq!(journal.backfill("audit", wants(), 0, now).await.unwrap(), 1);
    assert_eq!(journal.backfill("audit", wants(), 0, now).await.unwrap(), 0);
    assert_eq!(
        journal
            .pending("audit", "acme", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A complete walk is the next one's checkpoint; what walks find is kept
/// once and asked for oldest first, once within the window; triggers are
/// taken once.
pub async fn recovery<S: Recovery + ?Sized>(journal: &S) {
    let mut walk = journal.start_walk("app:1", 10, 0, true).await.unwrap();
    assert_eq!(walk.stop_at_id, None, "no complete walk yet");
    assert_eq!(
        journal.running_walk("app:1").await.unwrap().map(|w| w.id),
        Some(walk.id)
    );
    walk.newest_id = Some(500);
    journal.save_walk(&walk, true, 20).await.unwrap();
    assert!(journal.running_walk("app:1").await.unwrap().is_none());
    let next = journal.start_walk("app:1", 30, 0, true).await.unwrap();
    assert_eq!(next.stop_at_id, Some(500), "stops where the last one began");
    // Found twice, kept once; asked for once within the window.
    let found = vec![
        ("g-old".to_string(), 7, Some(1_000)),
        ("g-new".to_string(), 9, Some(2_000)),
    ];
    assert_eq!(journal.found("app:1", found.clone()).await.unwrap(), 2);
    assert_eq!(journal.found("app:1", found).await.unwrap(), 0);
    let ask: Vec<String> = journal
        .to_ask("app:1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(ask, ["g-old", "g-new"], "oldest delivery first");
    assert!(journal.claim("app:1", "g-old", 7, 100, 50).await.unwrap());
    journal.settle("app:1", "g-old", Some(202)).await.unwrap();
    assert!(
        !journal.claim("app:1", "g-old", 7, 101, 50).await.unwrap(),
        "asked within the window"
    );
    assert!(
        journal.claim("app:1", "g-old", 7, 200, 150).await.unwrap(),
        "after it"
    );
    let id = journal.trigger(None, 300).await.unwrap();
    assert!(journal.pending_trigger().await.unwrap());
    assert_eq!(journal.trigger_taken(id).await.unwrap(), None);
    assert_eq!(journal.take_trigger(301).await.unwrap(), Some((id, None)));
    assert_eq!(journal.take_trigger(302).await.unwrap(), None, "taken once");
    assert_eq!(journal.trigger_taken(id).await.unwrap(), Some(301));
    let status = journal.recovery_status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].requests.get("found"), Some(&1));
    assert_eq!(status[0].requests.get("asking"), Some(&1));
    let walks = journal.walks(10).await.unwrap();
    assert_eq!(walks.len(), 2, "newest first");
    assert!(walks[0].id > walks[1].id);
    assert_eq!(
        journal.last_complete().await.unwrap(),
        [("app:1".to_string(), 20)]
    );
}

pub mod actions_merge {
    //! The Actions merge under every order: observations of a few jobs in
    //! every status, applied in two orders (one shuffled, with repeats) in
    //! different batch sizes; the rows kept must be, per job, the
    //! observation with the highest version, computed here.

    use std::collections::BTreeMap;

    use gatehouse::store::actions::{Change, JobRow, Observation, Place};
    use gatehouse::store::jobs::Lease;
    use gatehouse::store::{ActionsState, Deliveries, Jobs};
    use proptest::prelude::*;

    const SINK: &str = "actions-metrics";

    fn job(job_id: i64, status: &str, runner: u8) -> Observation {
        let done = status == "completed";
        Observation::Job(JobRow {
            job_id,
            run_id: 7,
            run_attempt: 1,
            status: status.into(),
            conclusion: done.then(|| "success".into()),
            place: Place {
                owner: "acme".into(),
                organization: "acme".into(),
                repository: "acme/app".into(),
                workflow_name: "CI".into(),
                head_branch: "main".into(),
            },
            job_name: "build".into(),
            labels: vec!["ubuntu-latest".into()],
            // Two deliveries of one status may differ (a runner named or
            // not): the version's digest decides between them.
            runner_name: (runner > 0).then(|| format!("runner-{runner}")),
            runner_group: None,
            created_at_ms: Some(1_000),
            started_at_ms: (status != "queued").then_some(2_000),
            completed_at_ms: done.then_some(3_000),
        })
    }

    fn observation() -> impl Strategy<Value = Observation> {
        (
            1i64..4,
            prop_oneof![Just("queued"), Just("in_progress"), Just("completed")],
            0u8..3,
        )
            .prop_map(|(id, status, runner)| job(id, status, runner))
    }

    /// One case: the observations in two orders and two batch sizes.
    #[derive(Debug, Clone)]
    pub struct Case {
        pub orders: [Vec<Observation>; 2],
        pub batches: [usize; 2],
    }

    pub fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(observation(), 1..12),
            any::<u64>(),
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            1usize..5,
            1usize..5,
        )
            .prop_map(|(obs, shuffle_seed, repeats, a, b)| {
                // The same observations, shuffled, some of them twice.
                let mut other = obs.clone();
                for r in &repeats {
                    other.push(obs[r.index(obs.len())].clone());
                }
                let mut seed = shuffle_seed | 1;
                for i in (1..other.len()).rev() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    other.swap(i, (seed % (i as u64 + 1)) as usize);
                }
                Case {
                    orders: [obs, other],
                    batches: [a, b],
                }
            })
    }

    /// The rule, computed here: per job, the highest version.
    pub fn highest(obs: &[Observation]) -> BTreeMap<i64, String> {
        let mut want: BTreeMap<i64, &Observation> = BTreeMap::new();
        for o in obs {
            let Observation::Job(j) = o else {
                unreachable!()
            };
            let best = want.entry(j.job_id).or_insert(o);
            if o.version() > best.version() {
                *best = o;
            }
        }
        want.into_iter()
            .map(|(id, o)| match o {
                Observation::Job(j) => (id, format!("{j:?}")),
                Observation::Run(_) => unreachable!(),
            })
            .collect()
    }

    /// The rows an empty store keeps after `obs`, applied in batches of
    /// `batch` under the partition's lease, as Debug text by job id.
    pub async fn apply<S: Deliveries + Jobs + ActionsState + ?Sized>(
        store: &S,
        obs: &[Observation],
        batch: usize,
    ) -> BTreeMap<i64, String> {
        for i in 0..obs.len() {
            store
                .append(crate::common::journal_push(
                    "acme",
                    &format!("w{i}"),
                    i,
                    SINK,
                ))
                .await
                .unwrap();
        }
        let now = gatehouse::clock::now_ms();
        let Lease::Taken { fence, .. } = store
            .acquire(SINK, "acme", "conformance", now, super::LEASE_MS)
            .await
            .unwrap()
        else {
            panic!("the lease is free");
        };
        let jobs = store.pending(SINK, "acme", None, 10_000).await.unwrap();
        assert_eq!(jobs.len(), obs.len());
        let pairs: Vec<(i64, Observation)> =
            jobs.iter().map(|j| j.id).zip(obs.iter().cloned()).collect();
        for chunk in pairs.chunks(batch.max(1)) {
            let applied = store
                .apply_workflow_jobs(
                    "acme",
                    &fence,
                    now,
                    super::LEASE_MS,
                    chunk.iter().map(|(id, o)| (*id, Ok(o.clone()))).collect(),
                )
                .await
                .unwrap();
            assert!(applied.is_some(), "the fence holds");
        }
        crate::common::census::workflow_rows(store)
            .await
            .into_iter()
            .map(|c| match c {
                Change::Job { new, .. } => (new.job_id, format!("{new:?}")),
                Change::Run { new, .. } => panic!("no run was observed: {new:?}"),
            })
            .collect()
    }
}

/// The admin UI's reads: the overview's volume and backlog, the
/// partitions page with each partition's head and its last attempt, the
/// reports' per-day volume and attempt latencies, and the samples.
pub async fn views<S: Deliveries + Jobs + gatehouse::store::Views + ?Sized>(journal: &S) {
    use gatehouse::store::views::OverviewQuery;
    let now = gatehouse::clock::now_ms();
    for (i, org) in ["acme", "acme", "globex"].iter().enumerate() {
        journal
            .append(delivery("1", org, &format!("v{i}"), &["ci"], now))
            .await
            .unwrap();
    }
    // acme's head fails once (a 500 in 30 ms), to be retried later.
    let fence = claim(journal, "w", now).await.unwrap();
    let head = journal
        .pending("ci", "acme", None, 1)
        .await
        .unwrap()
        .remove(0);
    let mut failed = failed_at(now);
    failed.duration_ms = 30;
    journal
        .record(
            &head,
            "ci",
            "acme",
            &fence,
            failed,
            Limit::attempts(5),
            now + 60_000,
            LEASE_MS,
        )
        .await
        .unwrap();
    journal
        .add_attempt_minutes(vec![((now / 60_000, "ci".into(), "failed"), 1)])
        .await
        .unwrap();
    journal.sample_sinks(now, 60).await.unwrap();

    let o = journal
        .overview(OverviewQuery {
            now_ms: now,
            from_minute: now / 60_000 - 60,
            from_hour: now / 3_600_000 - 24,
            paused_limit: 10,
            cache_from_minute: 0,
            samples_from_minute: now / 60_000 - 60,
            with_recovery: false,
        })
        .await
        .unwrap();
    assert_eq!(o.per_minute.iter().map(|m| m.1).sum::<i64>(), 3);
    assert_eq!(o.per_hour.iter().map(|h| h.1).sum::<i64>(), 3);
    assert_eq!(o.backlog.per_sink, [("ci".to_string(), 3, Some(now), 0)]);
    assert_eq!(
        o.attempt_outcomes,
        [(now / 60_000, "failed".to_string(), 1)]
    );
    assert_eq!(o.sink_samples.len(), 1);
    assert_eq!(o.sink_samples[0].1, "ci");
    assert!(o.paused.is_empty() && o.held_routes.is_empty());

    let p = journal.partitions(Some("ci"), now, 10).await.unwrap();
    assert_eq!(p.total, 2);
    let names: Vec<&str> = p.rows.iter().map(|r| r.partition.as_str()).collect();
    assert_eq!(names, ["acme", "globex"], "most pending first");
    let acme = &p.rows[0];
    assert_eq!(acme.pending, 2);
    assert_eq!(acme.lease_owner.as_deref(), Some("w"));
    let h = acme.head.as_ref().unwrap();
    assert_eq!((h.job_id, h.attempts), (head.id, 1));
    assert_eq!(h.next_at_ms, now + 60_000);
    assert_eq!(
        (h.last_status, h.last_outcome.as_deref()),
        (Some(500), Some("failed"))
    );
    assert!(p.rows[1].head.as_ref().unwrap().last_outcome.is_none());

    let r = journal.reports(now / 86_400_000).await.unwrap();
    let pushes: i64 = r.per_day.iter().map(|d| d.3).sum();
    assert_eq!(pushes, 3);
    // 30 ms falls in the 25–50 ms bucket (2).
    assert_eq!(r.attempts, [("ci".to_string(), "failed".to_string(), 2, 1)]);
}

/// Retention: unfinished work keeps everything; a finished delivery past
/// the bodies horizon keeps its row and key (a redelivery is still a
/// duplicate) but not its body; past the keys horizon it goes whole.
pub async fn prune_keeps_keys_while_github_may_redeliver<S: Deliveries + ?Sized>(journal: &S) {
    use gatehouse::journal::Appended;
    const DAY: i64 = 86_400_000;
    let now = gatehouse::clock::now_ms();
    let (bodies, keys) = (now - DAY, now - 3 * DAY);
    let at = |days: i64| now - days * DAY - 1;
    let queued = |a: Appended| match a {
        Appended::Queued { id } => id,
        other => panic!("not queued: {other:?}"),
    };
    let pending = queued(
        journal
            .append(delivery("1", "acme", "pending", &["ci"], at(5)))
            .await
            .unwrap(),
    );
    let recent = queued(
        journal
            .append(delivery("1", "acme", "recent", &[], now))
            .await
            .unwrap(),
    );
    let body_only = queued(
        journal
            .append(delivery("1", "acme", "two-days", &[], at(2)))
            .await
            .unwrap(),
    );
    let whole = queued(
        journal
            .append(delivery("1", "acme", "five-days", &[], at(5)))
            .await
            .unwrap(),
    );
    let n = journal.prune(bodies, keys, 100).await.unwrap();
    assert_eq!((n.bodies, n.deliveries), (1, 1), "{n:?}");
    assert!(
        journal.payload(pending).await.unwrap().is_some(),
        "unfinished work keeps its body"
    );
    assert!(journal.payload(recent).await.unwrap().is_some());
    assert!(
        journal.payload(body_only).await.unwrap().is_none(),
        "the body went"
    );
    assert!(journal.payload(whole).await.unwrap().is_none());
    assert!(
        journal.delivery("1", "two-days").await.unwrap().is_some(),
        "the key stayed"
    );
    assert!(
        journal.delivery("1", "five-days").await.unwrap().is_none(),
        "past GitHub's window"
    );
    // GitHub redelivering each: within its window, a duplicate; past it,
    // GitHub cannot, and a delivery with that GUID is new.
    let again = journal
        .append(delivery("1", "acme", "two-days", &[], now))
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate);
    let again = journal
        .append(delivery("1", "acme", "five-days", &[], now))
        .await
        .unwrap();
    assert!(matches!(again, Appended::Queued { .. }), "{again:?}");
    // Nothing more to do; limits hold.
    let n = journal.prune(bodies, keys, 100).await.unwrap();
    assert_eq!((n.bodies, n.deliveries), (0, 0));
    for i in 0..5 {
        journal
            .append(delivery("2", "acme", &format!("old-{i}"), &[], at(9)))
            .await
            .unwrap();
    }
    let n = journal.prune(bodies, keys, 2).await.unwrap();
    assert_eq!((n.bodies, n.deliveries), (0, 2), "{n:?}");
}

/// One holder of a periodic duty at a time, until it lapses.
pub async fn duties<S: gatehouse::store::Lifecycle + ?Sized>(store: &S, shared: bool) {
    let now = gatehouse::clock::now_ms();
    assert!(store.take_duty("retention", "a", now, 1_000).await.unwrap());
    assert!(
        store
            .take_duty("retention", "a", now + 10, 1_000)
            .await
            .unwrap(),
        "renewed"
    );
    let b = store
        .take_duty("retention", "b", now + 500, 1_000)
        .await
        .unwrap();
    // One process owns a SQLite file: there is no other holder to refuse.
    assert_eq!(b, !shared, "another holder waits while the duty is held");
    assert!(
        store
            .take_duty("recovery", "b", now + 500, 1_000)
            .await
            .unwrap(),
        "duties are apart"
    );
    assert!(
        store
            .take_duty("retention", "b", now + 1_200, 1_000)
            .await
            .unwrap(),
        "lapsed: taken over"
    );
    if shared {
        assert!(
            !store
                .take_duty("retention", "a", now + 1_300, 1_000)
                .await
                .unwrap()
        );
    }
    assert_eq!(store.heartbeat("a", now, 30_000).await.unwrap(), 1);
    if shared {
        assert_eq!(store.heartbeat("b", now, 30_000).await.unwrap(), 2);
        assert_eq!(
            store.heartbeat("b", now + 40_000, 30_000).await.unwrap(),
            1,
            "a is gone"
        );
    }
    // Lanes carry their last holder's notes.
    let lane = "github:app:1/installation:2";
    assert_eq!(
        store.take_lane(lane, "a", now, 1_000).await.unwrap(),
        Some(None)
    );
    store
        .release_lane(lane, "a", Some("n1".into()))
        .await
        .unwrap();
    if !shared {
        // One process: nothing to hand on.
        assert!(store.lane_notes("github:").await.unwrap().is_empty());
        return;
    }
    assert_eq!(
        store.take_lane(lane, "b", now, 1_000).await.unwrap(),
        Some(Some("n1".into())),
        "given back: taken at once, with the notes"
    );
    assert_eq!(
        store.take_lane(lane, "a", now + 10, 1_000).await.unwrap(),
        None,
        "held by b"
    );
    // A holder whose term passed to another writes nothing.
    store
        .release_lane(lane, "a", Some("stale".into()))
        .await
        .unwrap();
    store.release_lane(lane, "b", None).await.unwrap();
    assert_eq!(
        store.lane_notes("github:").await.unwrap(),
        vec![(lane.to_string(), "n1".to_string())],
        "None leaves the last notes; another prefix is not listed"
    );
    assert_eq!(
        store.take_lane(lane, "a", now + 20, 1_000).await.unwrap(),
        Some(Some("n1".into()))
    );
}

/// The gateway cache: answers by key, replaced by a put, revalidated,
/// expired by prefix across scopes, used, evicted least recently used
/// first. Returns the key left holding "uno".
pub async fn cache<C: gatehouse::store::cache::CacheStore + ?Sized>(cache: &C) -> [u8; 32] {
    use gatehouse::store::cache::Entry;
    let entry = |scope: &str, path: &str, body: &str| Entry {
        scope: scope.into(),
        path: path.into(),
        status: 200,
        headers: b"etag: \"e1\"\r\n".to_vec(),
        body: bytes::Bytes::from(body.to_string()),
        content_etag: format!("W/\"{body}\""),
        etag: Some("\"e1\"".into()),
        etag_credential: Some("app:1/installation:2".into()),
        token_tag: Some("t1".into()),
        last_modified: None,
        validated_at_ms: 1_000,
    };
    let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let scope = "acme|within:acme";
    cache
        .put(a, entry(scope, "/repos/acme/app", "one"), 1_000)
        .await
        .unwrap();
    cache
        .put(b, entry(scope, "/repos/acme/app/pulls", "two"), 2_000)
        .await
        .unwrap();
    // Another scope, a path outside the prefix below.
    cache
        .put(
            c,
            entry("other|within:other", "/repos/acme/apple", "three"),
            2_500,
        )
        .await
        .unwrap();
    let got = cache.get(a).await.unwrap().unwrap();
    assert_eq!(
        (got.path.as_str(), &got.body[..], got.status),
        ("/repos/acme/app", &b"one"[..], 200)
    );
    assert_eq!(got.etag_credential.as_deref(), Some("app:1/installation:2"));
    assert!(cache.get([9; 32]).await.unwrap().is_none());
    // A put under the same key replaces the answer.
    cache
        .put(a, entry(scope, "/repos/acme/app", "uno"), 3_000)
        .await
        .unwrap();
    assert_eq!(&cache.get(a).await.unwrap().unwrap().body[..], b"uno");
    // A 304 keeps the body and takes the new headers and time.
    cache
        .revalidated(a, b"etag: \"e2\"\r\n".to_vec(), 5_000)
        .await
        .unwrap();
    let r = cache.get(a).await.unwrap().unwrap();
    assert_eq!((&r.body[..], r.validated_at_ms), (&b"uno"[..], 5_000));
    assert_eq!(r.headers, b"etag: \"e2\"\r\n");
    // A change under a prefix makes its entries stale (not gone); a path
    // that merely shares the prefix's letters is another repository but
    // also starts with them, as it does for the gateway.
    assert_eq!(
        cache
            .expire_prefix("/repos/acme/app/".into())
            .await
            .unwrap(),
        1
    );
    assert!(cache.get(b).await.unwrap().unwrap().validated_at_ms < 2_000);
    assert_eq!(cache.get(a).await.unwrap().unwrap().validated_at_ms, 5_000);
    // The index lists oldest use first; use moves an entry back.
    cache.used(vec![(b, 9_000)]).await.unwrap();
    let order: Vec<[u8; 32]> = cache
        .index()
        .await
        .unwrap()
        .iter()
        .map(|(k, ..)| *k)
        .collect();
    assert_eq!(order, [c, a, b]);
    let (entries, bytes) = cache.totals().await.unwrap();
    let sizes: u64 = cache.index().await.unwrap().iter().map(|(_, s, _)| s).sum();
    assert_eq!((entries, bytes), (3, sizes));
    // Eviction keeps the most recently used that fit.
    assert_eq!(cache.evict_to(bytes).await.unwrap(), 0, "within the bound");
    assert_eq!(cache.evict_to(bytes - 1).await.unwrap(), 1);
    assert!(
        cache.get(c).await.unwrap().is_none(),
        "least recently used went"
    );
    cache.used(vec![(a, 10_000)]).await.unwrap();
    let size_a = cache.index().await.unwrap()[1].1;
    assert_eq!(cache.evict_to(size_a).await.unwrap(), 1);
    assert!(cache.get(b).await.unwrap().is_none());
    assert!(cache.get(a).await.unwrap().is_some(), "used last, kept");
    cache.delete(vec![a]).await.unwrap();
    assert_eq!(cache.totals().await.unwrap(), (0, 0));
    cache
        .put(a, entry(scope, "/repos/acme/app", "uno"), 11_000)
        .await
        .unwrap();
    a
}

/// Completeness: what walks saw, once per (source, GUID) at its earliest
/// time; found deliveries count as recovered once journaled, else as
/// missing with the oldest's time; a window leaves older ones out. And a
/// replica's report is replaced, not added.
pub async fn completeness<S: Recovery + Deliveries + gatehouse::store::Lifecycle + ?Sized>(
    store: &S,
) {
    let seen = |v: &[(&str, i64)]| v.iter().map(|(g, t)| (g.to_string(), *t)).collect();
    store
        .seen(
            "app:1",
            seen(&[("g-a", 1_000), ("g-b", 2_000), ("g-c", 3_000)]),
        )
        .await
        .unwrap();
    // Read again by a later walk (a redelivery's newer attempt): once, at
    // the earliest time.
    store.seen("app:1", seen(&[("g-b", 9_000)])).await.unwrap();
    store.seen("hook:o:2", seen(&[("g-z", 500)])).await.unwrap();
    store
        .found(
            "app:1",
            vec![
                ("g-b".into(), 20, Some(2_000)),
                ("g-c".into(), 30, Some(3_000)),
            ],
        )
        .await
        .unwrap();
    append(store, "octo-org", "g-c").await;
    let all = store.completeness(0).await.unwrap();
    let app = all.iter().find(|c| c.source == "app:1").unwrap();
    assert_eq!(
        (
            app.attempted,
            app.recovered,
            app.missing,
            app.oldest_missing_ms
        ),
        (3, 1, 1, Some(2_000))
    );
    let hook = all.iter().find(|c| c.source == "hook:o:2").unwrap();
    assert_eq!((hook.attempted, hook.missing), (1, 0));
    let later = store.completeness(2_500).await.unwrap();
    let app = later.iter().find(|c| c.source == "app:1").unwrap();
    assert_eq!(
        (app.attempted, app.recovered, app.missing),
        (1, 1, 0),
        "only g-c is in the window"
    );
    assert!(later.iter().all(|c| c.source != "hook:o:2"));

    store.report("r1", "{\"a\":1}".into(), 1_000).await.unwrap();
    store.report("r1", "{\"a\":2}".into(), 2_000).await.unwrap();
    store.report("r2", "{\"b\":1}".into(), 3_000).await.unwrap();
    let reports = store.replica_reports().await.unwrap();
    assert_eq!(
        reports,
        [
            ("r2".to_string(), 3_000, "{\"b\":1}".to_string()),
            ("r1".to_string(), 2_000, "{\"a\":2}".to_string())
        ]
    );
}
