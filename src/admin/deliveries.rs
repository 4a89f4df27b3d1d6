//! The deliveries list (keyset pages, filters in the URL) and the bulk
//! retry of the dead letters a filter matches.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

use super::view;
use super::{AdminError, Chrome, Session, Shared, render, see_other, woken};
use crate::clock;
use crate::store::operator::{Cursor, Filter, STATES};

const PAGE_SIZE: usize = 50;

/// The filter as the URL carries it; empty fields mean "any".
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FilterForm {
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub guid: String,
}

impl FilterForm {
    fn fields(&self) -> [(&'static str, &str); 9] {
        [
            ("event", &self.event),
            ("action", &self.action),
            ("repository", &self.repository),
            ("partition", &self.partition),
            ("state", &self.state),
            ("route", &self.route),
            ("since", &self.since),
            ("until", &self.until),
            ("guid", &self.guid),
        ]
    }

    /// The query string for links that keep this filter.
    pub fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.fields() {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        q.finish()
    }

    pub fn filter(&self) -> Result<Filter, AdminError> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let now = clock::now_ms();
        let time = |what: &str, s: &str| {
            opt(s)
                .map(|s| {
                    clock::parse_since(&s, now).map_err(|_| {
                        AdminError::BadRequest(format!(
                            "{what} {s:?}: use 30m, 6h, 2d (that long ago) or an RFC 3339 time"
                        ))
                    })
                })
                .transpose()
        };
        let state = opt(&self.state);
        if let Some(s) = &state
            && !STATES.contains(&s.as_str())
        {
            return Err(AdminError::BadRequest(format!(
                "state {s:?}: pending, done or dead"
            )));
        }
        Ok(Filter {
            event: opt(&self.event),
            action: opt(&self.action),
            repository: opt(&self.repository),
            partition: opt(&self.partition),
            guid: opt(&self.guid),
            state,
            route: opt(&self.route),
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
        })
    }
}

/// Where the page starts, and what a bulk retry just did.
#[derive(Deserialize)]
pub struct Paging {
    before: Option<i64>,
    after: Option<i64>,
    retried: Option<usize>,
}

pub struct Row {
    pub id: i64,
    pub time: String,
    pub event: String,
    pub guid: String,
    pub repository: String,
    pub partition: String,
    /// (sink, state) per job.
    pub jobs: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct ListPage {
    chrome: Chrome,
    form: FilterForm,
    sinks: Vec<String>,
    rows: Vec<Row>,
    error: Option<String>,
    newer: Option<String>,
    older: Option<String>,
    bulk: String,
    retried: Option<usize>,
}

pub async fn list(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Query(form): Query<FilterForm>,
    Query(paging): Query<Paging>,
) -> Result<Response, AdminError> {
    let chrome = Chrome::new(&session, "deliveries");
    let qs = form.query();
    let link = |k: &str, id: i64| {
        if qs.is_empty() {
            format!("/admin/deliveries?{k}={id}")
        } else {
            format!("/admin/deliveries?{qs}&{k}={id}")
        }
    };
    let cursor = match (paging.before, paging.after) {
        (Some(b), _) => Cursor::Before(b),
        (None, Some(a)) => Cursor::After(a),
        _ => Cursor::Newest,
    };
    let (rows, error, newer, older) = match form.filter() {
        Err(e) => (vec![], Some(e.to_string()), None, None),
        Ok(f) => {
            let page = state.journal.list(&f, cursor, PAGE_SIZE).await?;
            let newer = page
                .has_newer
                .then(|| page.rows.first().map(|r| link("after", r.id)))
                .flatten();
            let older = page
                .has_older
                .then(|| page.rows.last().map(|r| link("before", r.id)))
                .flatten();
            let rows = page
                .rows
                .into_iter()
                .map(|r| Row {
                    id: r.id,
                    time: view::time(r.received_at_ms),
                    event: match r.action {
                        Some(a) => format!("{}.{a}", r.event),
                        None => r.event,
                    },
                    guid: r.guid,
                    repository: r.repository.unwrap_or_default(),
                    partition: r.partition,
                    jobs: r
                        .jobs
                        .iter()
                        .filter_map(|j| j.rsplit_once(':'))
                        .map(|(s, st)| (s.to_string(), st.to_string()))
                        .collect(),
                })
                .collect();
            (rows, None, newer, older)
        }
    };
    let status = if error.is_some() {
        http::StatusCode::BAD_REQUEST
    } else {
        http::StatusCode::OK
    };
    let page = ListPage {
        chrome,
        bulk: format!("/admin/bulk?{qs}"),
        form,
        sinks: state.sinks(),
        rows,
        error,
        newer,
        older,
        retried: paging.retried,
    };
    let mut resp = render(page)?;
    *resp.status_mut() = status;
    Ok(resp)
}

#[derive(Template)]
#[template(path = "bulk.html")]
struct BulkPage {
    chrome: Chrome,
    describe: Vec<(&'static str, String)>,
    count: String,
    n: i64,
    back: String,
}

/// Step one of a bulk retry: how many dead letters the filter matches, and
/// a form to confirm.
pub async fn bulk(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Query(form): Query<FilterForm>,
) -> Result<Response, AdminError> {
    let f = form.filter()?;
    let n = state.journal.count_dead(&f).await?;
    let page = BulkPage {
        chrome: Chrome::new(&session, "deliveries"),
        describe: form
            .fields()
            .iter()
            .filter(|(k, v)| !v.trim().is_empty() && *k != "state")
            .map(|(k, v)| (*k, v.trim().to_string()))
            .collect(),
        back: format!("/admin/deliveries?{}", form.query()),
        count: view::count(n),
        n,
    };
    render(page)
}

pub async fn bulk_retry(
    State(state): State<Shared>,
    Form(form): Form<FilterForm>,
) -> Result<Response, AdminError> {
    // Dead letters that matched the filter after the count was shown are
    // retried too: they are what the filter names.
    let f = form.filter()?;
    let n = woken(&state, state.journal.retry_dead(&f).await?);
    tracing::info!(jobs = n, filter = %form.query(), "admin: retried dead letters");
    let mut back = FilterForm {
        state: String::new(),
        ..form
    }
    .query();
    if !back.is_empty() {
        back.push('&');
    }
    Ok(see_other(&format!("/admin/deliveries?{back}retried={n}")))
}
