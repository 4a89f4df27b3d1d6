//! The admin UI under `/admin/`: server-rendered pages (askama templates in
//! `templates/`), a stylesheet and one small script (`static/`). Every page
//! needs a session; every POST needs the session's CSRF token; every
//! response carries a strict Content-Security-Policy.

mod auth;
mod clients;
mod deliveries;
mod delivery;
mod github;
mod login;
mod overview;
mod partitions;
pub mod password;
mod reports;
mod static_files;
mod view;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

pub use auth::Auth;
pub use reports::LATENCY_BUCKETS_MS;

use crate::store::{Store, StoreError};

const SESSION_COOKIE: &str = "gatehouse_session";
/// Forms are small; a bigger body on an admin POST is not ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Everything the admin handlers need, and nothing else.
pub struct AdminState {
    pub journal: Store,
    pub auth: Auth,
    pub pool: Option<Arc<crate::github::Pool>>,
    /// Configured routes and built-in sinks, for filters and pause
    /// buttons (replaced by a reload).
    pub sinks: crate::live::Live<Vec<String>>,
    /// Recovery walks run (else its panel says it is off).
    pub recovery: bool,
    /// The open problems and completeness the overview leads with.
    pub problems: Arc<crate::problems::Watch>,
    /// The Actions sink runs (else its report says it is off).
    pub actions: bool,
    /// Webhook requests refused lately (kept by the webhook handler).
    pub rejections: Arc<crate::ingest::rejections::Rejections>,
    /// What this process's scheduler is sending now.
    pub in_flight: Arc<crate::scheduler::in_flight::InFlight>,
    /// Forward routes as configured now (replaced by a reload).
    pub routes: crate::live::Live<crate::sinks::Catalog>,
    /// The gateway's clients file, shown; empty = none.
    pub clients_file: String,
    /// The gateway's settings the GitHub page reads (None = no gateway).
    pub gateway: Option<crate::config::GatewayConfig>,
}

/// What the pages say about a route's jobs.
#[derive(Debug, Clone)]
pub struct RouteFacts {
    /// The retry schedule in words: attempts, span, delays.
    pub schedule: String,
    /// One delivery per request, or its batches, in words.
    pub sends: String,
    pub max_attempts: u32,
    /// Strict order: a failing head holds the jobs behind it.
    pub strict: bool,
}

impl RouteFacts {
    pub fn of(r: &crate::config::RouteConfig) -> RouteFacts {
        RouteFacts {
            schedule: r.schedule().map_or_else(|e| e, |s| s.summary()),
            sends: r.sends(),
            max_attempts: r.max_attempts(),
            strict: r.ordering == crate::config::Ordering::Strict,
        }
    }
}

impl AdminState {
    /// What the pages say of route `name`, as configured now.
    pub fn route(&self, name: &str) -> Option<RouteFacts> {
        self.routes
            .get()
            .routes
            .iter()
            .find(|r| r.name == name)
            .map(RouteFacts::of)
    }

    /// Configured routes and built-in sinks now.
    pub fn sinks(&self) -> Vec<String> {
        self.sinks.get().to_vec()
    }
}

type Shared = Arc<AdminState>;

pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let pages = Router::new()
        .route("/admin/", get(overview::page))
        .route("/admin/deliveries", get(deliveries::list))
        .route("/admin/deliveries/{id}", get(delivery::page))
        .route("/admin/deliveries/{id}/body", get(delivery::body))
        .route("/admin/deliveries/{id}/retry", post(delivery::retry))
        .route("/admin/deliveries/{id}/skip", post(delivery::skip))
        .route("/admin/bulk", get(deliveries::bulk))
        .route("/admin/bulk/retry", post(deliveries::bulk_retry))
        .route("/admin/partitions", get(partitions::page))
        .route("/admin/partitions/hold", post(partitions::hold))
        .route("/admin/routes/drop", post(overview::drop_sink))
        .route("/admin/github", get(github::page))
        .route("/admin/clients", get(clients::page))
        .route("/admin/clients/add", post(clients::add))
        .route("/admin/clients/rotate", post(clients::rotate))
        .route("/admin/clients/revoke", post(clients::revoke))
        .route("/admin/reports", get(reports::page))
        .route("/admin/logout", post(login::logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin/") }))
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/login", get(login::form).post(login::submit))
        .route("/admin/static/{file}", get(static_files::serve))
        .merge(pages)
        .with_state(state)
}

/// What every page's layout needs: the CSRF token for its forms (logout is
/// one), which tab is active, and whether it refreshes itself.
pub struct Chrome {
    pub csrf: String,
    pub active: &'static str,
    /// Seconds between live refreshes; 0 = none.
    pub refresh: u32,
    pub asset_version: &'static str,
}

impl Chrome {
    fn new(session: &Session, active: &'static str) -> Chrome {
        Chrome {
            csrf: session.csrf.clone(),
            active,
            refresh: 0,
            asset_version: static_files::version(),
        }
    }
}

/// The session a request arrived with (set by [`require_session`]).
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    token: String,
}

impl Session {
    /// Names the session in the audit log without giving its cookie away:
    /// the first 8 hex digits of its SHA-256.
    pub fn tag(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.token.as_bytes())[..4])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not found")]
    NotFound,
    #[error(
        "no delivery {0:?} in the journal (by journal id or GUID; pruned after retention_days)"
    )]
    NoDelivery(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the journal could not be read or written: {0}")]
    Journal(#[source] StoreError),
    #[error("page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::Invalid(why) => AdminError::BadRequest(why),
            e => AdminError::Journal(e),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::NotFound | AdminError::NoDelivery(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Journal(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
        }
        error_page(status, &self.to_string())
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// Renders a page template into a response.
fn render(t: impl Template) -> Result<Response, AdminError> {
    Ok(Html(t.render()?).into_response())
}

/// After a retry (one write through the store's writer): a wake-up for
/// every partition it gave work, so it runs now, not at the next rescan.
fn woken(state: &AdminState, done: crate::store::operator::Requeued) -> usize {
    for (sink, partition) in done.partitions {
        state.journal.wake(sink, partition);
    }
    done.jobs
}

/// A 303 to `to`. Pages report what a POST did from numbers in the query
/// (`?retried=3`), never from text, so a link cannot put words on a page.
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Cookies are marked Secure when the request came over TLS (a reverse
/// proxy in front says so), so a browser never sends them in clear.
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

/// Lets a request through only with a live session; a POST also needs the
/// session's CSRF token in its form and, when the browser names one, our
/// own origin.
async fn require_session(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let session = match cookie(req.headers(), SESSION_COOKIE) {
        Some(token) => match state.auth.session(&token).await {
            Ok(csrf) => csrf.map(|csrf| Session { csrf, token }),
            Err(e) => {
                tracing::warn!(error = %e, "admin session unreadable");
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store cannot be read now; try again shortly",
                );
            }
        },
        None => None,
    };
    let Some(session) = session else {
        if req.method() == http::Method::GET {
            let next = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let to = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            return see_other(&format!("/admin/login?{to}"));
        }
        return error_page(StatusCode::UNAUTHORIZED, "log in first");
    };
    let req = if req.method() == http::Method::POST {
        if !same_origin(req.headers()) {
            return error_page(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return error_page(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
        };
        let token = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !auth::same_token(&token, &session.csrf) {
            return error_page(
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale: reload the page and try again",
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let mut req = req;
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// False when the browser says the request comes from another origin
/// (Origin, else Referer) than the Host it is sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (host, from) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(host), Some(from)) => from
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .is_some_and(|h| h.eq_ignore_ascii_case(host)),
    }
}

/// Headers on every response under `/admin` (404s and 405s from the
/// routers' fallbacks too, so this wraps the whole listener): a strict CSP
/// (our own stylesheet and script only, no inline code, no framing), and
/// no caching of pages.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let admin = path == "/admin" || path.starts_with("/admin/");
    let is_static = path.starts_with("/admin/static/");
    let mut resp = next.run(req).await;
    if !admin {
        return resp;
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
