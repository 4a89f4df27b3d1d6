//! What the journal holds, read through the store's operator interface
//! (the same list `gatehouse deliveries list` shows), so tests count
//! deliveries and jobs the way gatehouse reports them, not by SQL on its
//! file.

use std::path::Path;

use gatehouse::store::Store;
use gatehouse::store::operator::{Cursor, Filter, JobDetail, Listed, Shown};

/// Every delivery matching a filter, newest first, with its jobs' states.
pub struct Census(pub Vec<Listed>);

impl Census {
    /// One read of every delivery.
    pub async fn of(store: &Store) -> Census {
        Census::matching(store, &Filter::default()).await
    }

    pub async fn matching(store: &Store, filter: &Filter) -> Census {
        let page = store
            .list(filter, Cursor::Newest, 10_000_000)
            .await
            .expect("the operator's list");
        assert!(!page.has_older, "a census reads every row");
        Census(page.rows)
    }

    /// The census of a journal file, taken beside whatever runs on it (or
    /// after it stopped), as the CLI would.
    pub fn of_file(db: &Path) -> Census {
        super::beside(db, async |s| Census::of(s).await)
    }

    pub fn deliveries(&self) -> usize {
        self.0.len()
    }

    /// Deliveries with this GUID (one per hook that sent it).
    pub fn with_guid(&self, guid: &str) -> usize {
        self.0.iter().filter(|d| d.guid == guid).count()
    }

    /// GUIDs in received (journal) order.
    pub fn guids(&self) -> Vec<String> {
        self.0.iter().rev().map(|d| d.guid.clone()).collect()
    }

    /// Jobs, optionally only one sink's and only in one state.
    pub fn jobs(&self, sink: Option<&str>, state: Option<&str>) -> usize {
        self.0
            .iter()
            .flat_map(|d| d.jobs.iter())
            .filter(|j| {
                let (s, st) = j.rsplit_once(':').expect("route:state");
                sink.is_none_or(|x| x == s) && state.is_none_or(|x| x == st)
            })
            .count()
    }

    /// Every job of `guid` is dead (and it has one).
    pub fn all_dead(&self, guid: &str) -> bool {
        let jobs: Vec<&String> = self
            .0
            .iter()
            .filter(|d| d.guid == guid)
            .flat_map(|d| d.jobs.iter())
            .collect();
        !jobs.is_empty() && jobs.iter().all(|j| j.ends_with(":dead"))
    }
}

/// The journal's whole record of the (first) delivery with this GUID:
/// its jobs and their attempts.
pub async fn shown(store: &Store, guid: &str) -> Shown {
    let id = *store
        .ids_of_guid(guid)
        .await
        .unwrap()
        .first()
        .unwrap_or_else(|| panic!("{guid} is not journaled"));
    store.show(id).await.unwrap().unwrap()
}

/// Waits (bounded, polling the store) until `f` holds of a fresh census.
pub async fn wait_census(
    store: &Store,
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut(&Census) -> bool,
) -> Census {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let c = Census::of(store).await;
        if f(&c) {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every job of the deliveries matching `filter`, with its attempts.
pub async fn job_details(store: &Store, filter: &Filter) -> Vec<JobDetail> {
    let mut out = Vec::new();
    for d in Census::matching(store, filter).await.0 {
        out.extend(store.show(d.id).await.unwrap().unwrap().jobs);
    }
    out
}

/// The (sink, partition) pairs an operator holds.
pub async fn held(store: &Store) -> Vec<(String, String)> {
    let view = store
        .partitions(None, gatehouse::clock::now_ms(), 100_000)
        .await
        .unwrap();
    view.rows
        .into_iter()
        .filter(|p| p.held)
        .map(|p| (p.sink, p.partition))
        .collect()
}

/// A filter on one partition (an organisation).
pub fn partition(org: &str) -> Filter {
    Filter {
        partition: Some(org.into()),
        ..Filter::default()
    }
}

/// Every Actions state row, read page by page as the sink reads them at
/// start (pages of 7, so paging itself is exercised).
pub async fn workflow_rows<S: gatehouse::store::ActionsState + ?Sized>(
    store: &S,
) -> Vec<gatehouse::store::actions::Change> {
    use gatehouse::store::actions::RowsAfter;
    let (mut out, mut after) = (Vec::new(), RowsAfter::Start);
    loop {
        let page = store.workflow_rows(after, 7).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        assert!(page.len() <= 7);
        after = RowsAfter::of(last);
        out.extend(page);
    }
}
