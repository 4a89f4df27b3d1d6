//! Operator actions on PostgreSQL: list and show deliveries, retry jobs,
//! back-fill a new route, hold and resume routes and partitions, drop a
//! removed route's jobs. Every value is bound, never spliced, except the
//! job state, which comes from a closed list.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{Postgres, read_err, write_err};
use crate::store::StoreError;
use crate::store::jobs::Backlog;
use crate::store::operator::{
    AttemptRow, Cursor, Filter, JobDetail, Listed, Orphaned, Page, Requeued, RouteState, STATES,
    Shown, Wants,
};

type Param = Box<dyn ToSql + Sync + Send>;

/// A WHERE clause being built, with its values numbered as they come.
#[derive(Default)]
struct Clause {
    parts: Vec<String>,
    values: Vec<Param>,
}

impl Clause {
    /// `$n` for a new value.
    fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(v));
        format!("${}", self.values.len())
    }

    fn sql(&self) -> String {
        if self.parts.is_empty() {
            "true".into()
        } else {
            self.parts.join(" AND ")
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn filter_clause(f: &Filter) -> Result<Clause, StoreError> {
    let mut c = Clause::default();
    for (column, v) in [
        ("event", &f.event),
        ("action", &f.action),
        ("repository", &f.repository),
        ("partition_key", &f.partition),
        ("guid", &f.guid),
    ] {
        if let Some(v) = v {
            let p = c.bind(v.clone());
            c.parts.push(format!("d.{column} = {p}"));
        }
    }
    if let Some(t) = f.since_ms {
        let p = c.bind(t);
        c.parts.push(format!("d.received_at_ms >= {p}"));
    }
    if let Some(t) = f.until_ms {
        let p = c.bind(t);
        c.parts.push(format!("d.received_at_ms < {p}"));
    }
    let state =
        match f.state.as_deref() {
            None => None,
            Some(s) => Some(*STATES.iter().find(|k| **k == s).ok_or_else(|| {
                StoreError::Invalid(format!("state {s:?}: pending, done or dead"))
            })?),
        };
    let sink = match &f.route {
        Some(r) => format!(" AND j.sink = {}", c.bind(r.clone())),
        None => String::new(),
    };
    match state {
        Some(s) => c.parts.push(format!(
            "EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.state = '{s}'{sink})"
        )),
        None if f.route.is_some() => c.parts.push(format!(
            "EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id{sink})"
        )),
        None => {}
    }
    Ok(c)
}

const LISTED: &str = "d.id, d.guid, d.hook_id, d.event, d.action, d.partition_key,
    d.received_at_ms, d.repository,
    (SELECT string_agg(j.sink || ':' || j.state, ' ' ORDER BY j.sink) FROM jobs j
      WHERE j.delivery_id = d.id),
    d.recovered";

fn listed(r: &tokio_postgres::Row) -> Listed {
    let jobs: Option<String> = r.get(8);
    Listed {
        id: r.get(0),
        guid: r.get(1),
        hook_id: r.get(2),
        event: r.get(3),
        action: r.get(4),
        partition: r.get(5),
        received_at_ms: r.get(6),
        repository: r.get(7),
        jobs: jobs
            .map(|j| j.split(' ').map(String::from).collect())
            .unwrap_or_default(),
        recovered: r.get(9),
    }
}

impl Postgres {
    /// Runs every finished job matching `clause` (over `jobs`) again from
    /// a clean slate.
    async fn requeue(&self, mut clause: Clause) -> Result<Requeued, StoreError> {
        let now = clause.bind(crate::clock::now_ms());
        let mut client = self.client("requeue").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE jobs SET state = 'pending', attempts = 0, next_at_ms = {now},
                         updated_at_ms = {now}, skipped_at_ms = NULL, skipped_by = NULL
                     WHERE state <> 'pending' AND {} RETURNING id, sink, partition_key",
                    clause.sql()
                ),
                &clause.refs(),
            )
            .await
            .map_err(write_err)?;
        // A dead head retried is the head again: its partition runs.
        let out = freed(&tx, rows).await?;
        tx.commit().await.map_err(write_err)?;
        // Every replica's scheduler hears of it, this one's included.
        super::deliveries::announce(self.pool.clone(), out.partitions.iter().cloned().collect())
            .await;
        Ok(out)
    }

    /// Lets order move past a delivery's dead jobs; see the trait.
    async fn skip(
        &self,
        id: i64,
        route: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<Requeued, StoreError> {
        let mut client = self.client("skip_dead").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let rows = tx
            .query(
                "UPDATE jobs SET skipped_at_ms = $3, skipped_by = $4
                 WHERE delivery_id = $1 AND state = 'dead' AND skipped_at_ms IS NULL
                   AND ($2::TEXT IS NULL OR sink = $2)
                 RETURNING id, sink, partition_key",
                &[&id, &route, &now_ms, &by],
            )
            .await
            .map_err(write_err)?;
        let out = freed(&tx, rows).await?;
        tx.commit().await.map_err(write_err)?;
        super::deliveries::announce(self.pool.clone(), out.partitions.iter().cloned().collect())
            .await;
        Ok(out)
    }

    /// The dead letters among the deliveries matching `f`, over `jobs`.
    fn dead_of(f: &Filter) -> Result<Clause, StoreError> {
        let mut c = filter_clause(f)?;
        let w = c.sql();
        let mut parts = vec![
            "jobs.state = 'dead'".to_string(),
            format!("EXISTS (SELECT 1 FROM deliveries d WHERE d.id = jobs.delivery_id AND {w})"),
        ];
        if let Some(r) = &f.route {
            parts.push(format!("jobs.sink = {}", c.bind(r.clone())));
        }
        c.parts = parts;
        Ok(c)
    }
}

#[async_trait]
impl crate::store::Operator for Postgres {
    async fn list(
        &self,
        filter: &Filter,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut c = filter_clause(filter)?;
        let (keyset, order) = match cursor {
            Cursor::Newest => (String::new(), "DESC"),
            Cursor::Before(id) => (format!(" AND d.id < {}", c.bind(id)), "DESC"),
            Cursor::After(id) => (format!(" AND d.id > {}", c.bind(id)), "ASC"),
        };
        let lim = c.bind(limit as i64 + 1);
        let client = self.client("list").await?;
        let found = client
            .query(
                &format!(
                    "SELECT {LISTED} FROM deliveries d WHERE {}{keyset} ORDER BY d.id {order}
                     LIMIT {lim}",
                    c.sql()
                ),
                &c.refs(),
            )
            .await
            .map_err(read_err)?;
        let rows: Vec<Listed> = found.iter().map(listed).collect();
        Ok(Page::of(rows, limit, cursor))
    }

    async fn ids_of_guid(&self, guid: &str) -> Result<Vec<i64>, StoreError> {
        let client = self.client("ids_of_guid").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT id FROM deliveries WHERE guid = $1 ORDER BY id")
                    .await
                    .map_err(read_err)?,
                &[&guid],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn repositories_seen(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client("repositories_seen").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT DISTINCT repository FROM deliveries
                 WHERE received_at_ms >= $1 AND repository IS NOT NULL
                 ORDER BY repository LIMIT $2",
                    )
                    .await
                    .map_err(read_err)?,
                &[&since_ms, &(limit as i64)],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn show(&self, delivery_id: i64) -> Result<Option<Shown>, StoreError> {
        let client = self.client("show").await?;
        let Some(r) = client
            .query_opt(
                &format!(
                    "SELECT {LISTED}, d.installation_id, d.body_size, d.parse_status,
                            d.content_kind, d.parse_error
                     FROM deliveries d WHERE d.id = $1"
                ),
                &[&delivery_id],
            )
            .await
            .map_err(read_err)?
        else {
            return Ok(None);
        };
        let mut shown = Shown {
            listed: Listed {
                jobs: vec![],
                ..listed(&r)
            },
            repository: r.get(7),
            installation_id: r.get(10),
            body_size: r.get(11),
            parse_status: r.get(12),
            content_kind: r.get(13),
            parse_error: r.get(14),
            jobs: vec![],
        };
        // The job a pending one waits behind is its partition's first in
        // sequence order.
        let jobs = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT j.id, j.sink, j.state, j.attempts::BIGINT, j.next_at_ms,
                        CASE WHEN j.state = 'pending' THEN
                          COALESCE((SELECT p.dead_head FROM partitions p WHERE p.sink = j.sink
                                      AND p.partition_key = j.partition_key),
                                   (SELECT h.id FROM jobs h WHERE h.sink = j.sink
                                      AND h.partition_key = j.partition_key AND h.state = 'pending'
                                    ORDER BY h.seq LIMIT 1))
                        END,
                        EXISTS (SELECT 1 FROM partitions p WHERE p.sink = j.sink
                                  AND p.partition_key = j.partition_key AND p.dead_head = j.id),
                        j.skipped_at_ms, j.skipped_by
                 FROM jobs j WHERE j.delivery_id = $1 ORDER BY j.sink",
                    )
                    .await
                    .map_err(read_err)?,
                &[&delivery_id],
            )
            .await
            .map_err(read_err)?;
        for j in jobs {
            let job_id: i64 = j.get(0);
            let history = client
                .query(
                    &client.prepare_cached("SELECT n::BIGINT, started_at_ms, duration_ms, status_code::BIGINT, outcome,
                            error, response_excerpt, url, response_headers
                     FROM attempts WHERE job_id = $1 ORDER BY n").await.map_err(read_err)?,
                    &[&job_id],
                )
                .await
                .map_err(read_err)?
                .iter()
                .map(|a| {
                    let headers: Option<Vec<u8>> = a.get(8);
                    AttemptRow {
                        n: a.get(0),
                        started_at_ms: a.get(1),
                        duration_ms: a.get(2),
                        status_code: a.get(3),
                        outcome: a.get(4),
                        error: a.get(5),
                        response_excerpt: a.get(6),
                        url: a.get(7),
                        response_headers: headers
                            .map(|h| {
                                crate::journal::model::decode_headers(&h)
                                    .into_iter()
                                    .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect();
            let (route, state): (String, String) = (j.get(1), j.get(2));
            let head: Option<i64> = j.get(5);
            shown.listed.jobs.push(format!("{route}:{state}"));
            shown.jobs.push(JobDetail {
                id: job_id,
                route,
                state,
                attempts: j.get(3),
                next_at_ms: j.get(4),
                behind: head.filter(|h| *h != job_id),
                holding: j.get(6),
                skipped: j
                    .get::<_, Option<i64>>(7)
                    .map(|at| (at, j.get::<_, Option<String>>(8).unwrap_or_default())),
                history,
            });
        }
        Ok(Some(shown))
    }

    async fn retry_guid(&self, guid: &str, route: Option<&str>) -> Result<Requeued, StoreError> {
        let mut c = Clause::default();
        let g = c.bind(guid.to_string());
        c.parts.push(format!(
            "delivery_id IN (SELECT id FROM deliveries WHERE guid = {g})"
        ));
        if let Some(r) = route {
            let p = c.bind(r.to_string());
            c.parts.push(format!("sink = {p}"));
        }
        self.requeue(c).await
    }

    async fn skip_dead(
        &self,
        id: i64,
        route: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<Requeued, StoreError> {
        self.skip(id, route, by, now_ms).await
    }

    async fn retry_delivery(&self, id: i64, route: Option<&str>) -> Result<Requeued, StoreError> {
        let mut c = Clause::default();
        let p = c.bind(id);
        c.parts.push(format!("delivery_id = {p}"));
        if let Some(r) = route {
            let p = c.bind(r.to_string());
            c.parts.push(format!("sink = {p}"));
        }
        self.requeue(c).await
    }

    async fn count_dead(&self, filter: &Filter) -> Result<i64, StoreError> {
        let c = Postgres::dead_of(filter)?;
        let client = self.client("count_dead").await?;
        let row = client
            .query_one(
                &format!("SELECT COUNT(*) FROM jobs WHERE {}", c.sql()),
                &c.refs(),
            )
            .await
            .map_err(read_err)?;
        Ok(row.get(0))
    }

    async fn retry_dead(&self, filter: &Filter) -> Result<Requeued, StoreError> {
        self.requeue(Postgres::dead_of(filter)?).await
    }

    /// The new jobs take their deliveries' sequence numbers, so they run
    /// in received order with the partition's other work.
    async fn backfill(
        &self,
        sink: &str,
        wants: Wants,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut client = self.client("backfill").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT id, hook_id, guid, event, action, installation_id, target_type, target_id,
                        repository, owner, partition_key, received_at_ms, body_size, content_kind,
                        parse_status, parse_error, seq
                 FROM deliveries d
                 WHERE d.received_at_ms >= $1
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.sink = $2)
                 ORDER BY d.partition_key, d.seq").await.map_err(write_err)?,
                &[&since_ms, &sink],
            )
            .await
            .map_err(write_err)?;
        let mut n = 0;
        let mut work = std::collections::BTreeSet::new();
        for r in &rows {
            let d = super::deliveries::row_to_delivery(r)?;
            if !wants(&d.meta) {
                continue;
            }
            let seq: i64 = r.get(16);
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO jobs (delivery_id, sink, partition_key, seq, state, attempts,
                                   next_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
                )
                .await
                .map_err(write_err)?,
                &[&d.id, &sink, &d.meta.partition_key, &seq, &now_ms],
            )
            .await
            .map_err(write_err)?;
            tx.execute(
                &tx.prepare_cached("INSERT INTO partitions (sink, partition_key) VALUES ($1, $2) ON CONFLICT DO NOTHING").await.map_err(write_err)?,
                &[&sink, &d.meta.partition_key],
            )
            .await
            .map_err(write_err)?;
            work.insert((sink.to_string(), d.meta.partition_key.clone()));
            n += 1;
        }
        tx.commit().await.map_err(write_err)?;
        super::deliveries::announce(self.pool.clone(), work.into_iter().collect()).await;
        Ok(n)
    }

    async fn route_states(
        &self,
        configured: &[String],
        now_ms: i64,
    ) -> Result<Vec<RouteState>, StoreError> {
        let backlog: Backlog = crate::store::Jobs::backlog(self, now_ms).await?;
        let held = self.held_routes().await?;
        let client = self.client("route_states").await?;
        let paused: Vec<(String, i64)> = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT sink, COUNT(*) FROM partitions WHERE held OR paused_until_ms > $1
                 GROUP BY sink",
                    )
                    .await
                    .map_err(read_err)?,
                &[&now_ms],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(RouteState::all(&backlog, configured, &held, &paused))
    }

    async fn hold_route(&self, route: &str, hold: bool) -> Result<(), StoreError> {
        let client = self.client("hold_route").await?;
        let sql = if hold {
            "INSERT INTO route_holds (sink) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM route_holds WHERE sink = $1"
        };
        client.execute(sql, &[&route]).await.map_err(write_err)?;
        Ok(())
    }

    async fn hold_partition(
        &self,
        route: &str,
        partition: &str,
        hold: bool,
    ) -> Result<(), StoreError> {
        let client = self.client("hold_partition").await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO partitions (sink, partition_key, held) VALUES ($1, $2, $3)
                 ON CONFLICT (sink, partition_key) DO UPDATE SET held = excluded.held",
                    )
                    .await
                    .map_err(write_err)?,
                &[&route, &partition, &hold],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn orphans(&self, configured: &[String]) -> Result<Vec<Orphaned>, StoreError> {
        let client = self.client("orphans").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT s.sink,
                        (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'pending'),
                        (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'dead')
                 FROM (SELECT DISTINCT sink FROM partitions) s ORDER BY s.sink",
                    )
                    .await
                    .map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| Orphaned {
                sink: r.get(0),
                pending: r.get(1),
                dead: r.get(2),
            })
            .filter(|o| !configured.contains(&o.sink) && o.pending + o.dead > 0)
            .collect())
    }

    async fn drop_sink(&self, sink: &str) -> Result<Orphaned, StoreError> {
        let mut client = self.client("drop_sink").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let row = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT COUNT(*) FILTER (WHERE state = 'pending'),
                        COUNT(*) FILTER (WHERE state = 'dead')
                 FROM jobs WHERE sink = $1",
                )
                .await
                .map_err(write_err)?,
                &[&sink],
            )
            .await
            .map_err(write_err)?;
        for sql in [
            "DELETE FROM jobs WHERE sink = $1",
            "DELETE FROM partitions WHERE sink = $1",
            "DELETE FROM route_holds WHERE sink = $1",
        ] {
            tx.execute(sql, &[&sink]).await.map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)?;
        Ok(Orphaned {
            sink: sink.to_string(),
            pending: row.get(0),
            dead: row.get(1),
        })
    }
}

/// The jobs a retry or a skip changed (rows of id, sink, partition): what
/// to wake, and the partitions held behind one of them run again.
async fn freed(
    tx: &tokio_postgres::Transaction<'_>,
    rows: Vec<tokio_postgres::Row>,
) -> Result<Requeued, StoreError> {
    let mut out = Requeued::default();
    let mut ids: Vec<i64> = Vec::new();
    for r in rows {
        out.jobs += 1;
        ids.push(r.get(0));
        out.partitions.insert((r.get(1), r.get(2)));
    }
    if !ids.is_empty() {
        tx.execute(
            "UPDATE partitions SET dead_head = NULL WHERE dead_head = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(write_err)?;
    }
    Ok(out)
}
