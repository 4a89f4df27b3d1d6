//! Store contract cases written once and run on every backend: each takes
//! the store as a parameter (`store_conformance.rs` on SQLite,
//! `store_postgres.rs` on PostgreSQL).

use gatehouse::store::clients::Usage;
use gatehouse::store::sessions::{NewSession, SEEN_GRANULARITY_MS};
use gatehouse::store::{Clients, Sessions, StoreError};

/// Clients are kept by token hash; a name is unique while active and may
/// be reused once revoked; usage adds up per minute.
pub async fn clients<S: Clients + ?Sized>(store: &S) {
    let scopes = vec!["GET /repos/.*".to_string()];
    store
        .add_client("ci", "hash-1", &scopes, &["acme".into()], 1)
        .await
        .unwrap();
    assert!(matches!(
        store.add_client("ci", "hash-2", &[], &[], 2).await,
        Err(StoreError::Invalid(_))
    ));
    let c = store.client_by_token("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (c.name.as_str(), c.scopes, c.owners),
        ("ci", scopes, vec!["acme".to_string()])
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
    store
        .add_usage(vec![(("ci".into(), minute), used(3, 2))], minute - 120)
        .await
        .unwrap();
    store
        .add_usage(vec![(("ci".into(), minute), used(4, 1))], minute - 120)
        .await
        .unwrap();
    let rows = store.clients(now).await.unwrap();
    assert_eq!(rows[0].last_hour.requests, 7);
    assert_eq!(rows[0].last_hour.hits, 3);
    store.revoke_client("ci", 3).await.unwrap();
    assert!(store.client_by_token("hash-1").await.unwrap().is_none());
    assert!(matches!(
        store.revoke_client("ci", 4).await,
        Err(StoreError::NotFound(_))
    ));
    store.add_client("ci", "hash-3", &[], &[], 5).await.unwrap();
    let rows = store.clients(now).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].revoked_at_ms.is_none());
    assert_eq!(
        store.client_by_token("hash-3").await.unwrap().unwrap().name,
        "ci"
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
