//! `POST /webhooks/github`: size limit, content type, GitHub's headers,
//! HMAC-SHA256 verification over the raw bytes, envelope extraction, and an
//! answer only after the journal has durably committed the delivery.

pub mod envelope;
pub mod metrics;
pub mod rejections;
mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::StatusCode;
use serde_json::json;

use crate::clock;
use crate::config::{PartitionBy, Secret};
use crate::ingest::metrics::{IngestMetrics, IngestResult};
use crate::journal::{Appended, ContentKind, DeliveryMeta, NewDelivery, ParseStatus, model};
use crate::server::body::{self, BodyError};
use crate::store::Store;
use crate::webhook::signature;
use request::GithubHeaders;

/// GitHub gives a receiver 10 s; answering 503 before that at least tells
/// GitHub (and the operator) the truth instead of timing out.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);
/// What a 503 asks a sender to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// What the webhook handler needs, and nothing more.
pub struct IngestState {
    pub journal: Store,
    /// Replaced by a reload (rotation: list the old and the new).
    pub secrets: crate::live::Live<Vec<Secret>>,
    pub partition_by: PartitionBy,
    /// How bodies are read: size, shared memory budget, pace.
    pub body: body::Limits,
    pub metrics: IngestMetrics,
    /// The sinks; a delivery becomes one job per sink that wants it.
    /// Replaced by a reload.
    pub sinks: crate::live::Live<crate::sinks::Catalog>,
    /// Told when an installation changes, so it discovers again.
    pub pool: Option<Arc<crate::github::Pool>>,
    /// Refused requests, for the admin overview.
    pub rejections: Arc<rejections::Rejections>,
}

/// Events that say where an App is installed has changed.
const INSTALLATION_EVENTS: &[&str] = &[
    "installation",
    "installation_repositories",
    "installation_target",
];

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/webhooks/github", post(receive))
        .with_state(Arc::new(state))
}

/// Why a request was not journaled. Each maps to one status and one metric
/// result, here at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("payload exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "unsupported content type {0:?}: GitHub sends application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType(String),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    #[error("{0} header sent more than once: ambiguous")]
    RepeatedHeader(&'static str),
    #[error("missing or invalid X-Hub-Signature-256")]
    BadSignature,
    #[error("request body did not arrive in time")]
    BodyTimeout,
    #[error("request body arrived too slowly (under {0} bytes/s)")]
    BodyTooSlow(u64),
    #[error("could not read request body: {0}")]
    BodyRead(String),
    /// Too many bytes of request bodies in flight: refused before reading.
    #[error("too many deliveries in flight; retry shortly")]
    Busy,
    #[error("journal unavailable, delivery not accepted")]
    Unavailable,
}

impl Rejection {
    /// The kind of problem, bounded (no sender's text): what the overview
    /// counts by.
    fn kind(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "payload too large",
            Rejection::UnsupportedMediaType(_) => "unsupported content type",
            Rejection::MissingHeader(_) => "missing GitHub header",
            Rejection::InvalidHeader(_) => "invalid GitHub header",
            Rejection::RepeatedHeader(_) => "repeated GitHub header",
            Rejection::BadSignature => "bad signature",
            Rejection::BodyTimeout | Rejection::BodyTooSlow(_) => "body too slow",
            Rejection::BodyRead(_) => "body unreadable",
            Rejection::Busy => "busy",
            Rejection::Unavailable => "journal unavailable",
        }
    }

    fn result(&self) -> IngestResult {
        match self {
            Rejection::TooLarge { .. } => IngestResult::TooLarge,
            Rejection::UnsupportedMediaType(_) => IngestResult::UnsupportedMediaType,
            Rejection::MissingHeader(_)
            | Rejection::InvalidHeader(_)
            | Rejection::RepeatedHeader(_)
            | Rejection::BodyTimeout
            | Rejection::BodyTooSlow(_)
            | Rejection::BodyRead(_) => IngestResult::BadRequest,
            Rejection::Busy => IngestResult::Busy,
            Rejection::BadSignature => IngestResult::BadSignature,
            Rejection::Unavailable => IngestResult::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::MissingHeader(_)
            | Rejection::InvalidHeader(_)
            | Rejection::RepeatedHeader(_)
            | Rejection::BodyRead(_) => StatusCode::BAD_REQUEST,
            Rejection::BodyTimeout | Rejection::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<BodyError> for Rejection {
    fn from(e: BodyError) -> Rejection {
        match e {
            BodyError::TooLarge { limit } => Rejection::TooLarge { limit },
            BodyError::Busy => Rejection::Busy,
            BodyError::Timeout => Rejection::BodyTimeout,
            BodyError::TooSlow { min_rate } => Rejection::BodyTooSlow(min_rate),
            BodyError::Read(e) => Rejection::BodyRead(e),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.to_string() }));
        match self {
            Rejection::Unavailable => (
                self.status(),
                [(http::header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
                body,
            )
                .into_response(),
            // The body was not read to its end; make the client open a new
            // connection rather than reuse one with unread bytes on it.
            Rejection::Busy => (
                self.status(),
                [
                    (http::header::RETRY_AFTER, "1"),
                    (http::header::CONNECTION, "close"),
                ],
                body,
            )
                .into_response(),
            Rejection::TooLarge { .. } | Rejection::BodyTimeout | Rejection::BodyTooSlow(_) => {
                (self.status(), [(http::header::CONNECTION, "close")], body).into_response()
            }
            _ => (self.status(), body).into_response(),
        }
    }
}

async fn receive(State(state): State<Arc<IngestState>>, req: Request) -> Response {
    let started = Instant::now();
    let received_at_ms = clock::now_ms();
    let event = req
        .headers()
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let guid = req
        .headers()
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let outcome = accept(&state, req, received_at_ms).await;
    let result = match &outcome {
        Ok((Appended::Queued { .. }, _)) => IngestResult::Queued,
        Ok((Appended::Duplicate, _)) => IngestResult::Duplicate,
        Err(r) => r.result(),
    };
    state.metrics.record(
        crate::journal::events::label(event.as_deref()),
        result,
        started.elapsed(),
    );
    match outcome {
        Ok((appended, guid)) => {
            let (status, word) = match appended {
                Appended::Queued { .. } => (StatusCode::ACCEPTED, "queued"),
                Appended::Duplicate => (StatusCode::OK, "duplicate"),
            };
            tracing::debug!(delivery = %guid, event = event.as_deref().unwrap_or("-"), status = word, "webhook");
            (
                status,
                axum::Json(json!({ "delivery": guid, "status": word })),
            )
                .into_response()
        }
        Err(rejection) => {
            // The GUID and event are not secret and help an operator find
            // the delivery in GitHub's log; the signature and secrets are
            // never logged.
            let delivery = guid.as_deref().unwrap_or("-");
            state.rejections.record(
                received_at_ms,
                rejection.status().as_u16(),
                event.as_deref(),
                peer,
                rejection.kind(),
                &rejection.to_string(),
            );
            let event = event.as_deref().unwrap_or("-");
            match rejection {
                Rejection::BadSignature | Rejection::Unavailable => {
                    tracing::warn!(delivery, event, reason = %rejection, "webhook rejected")
                }
                _ => tracing::info!(delivery, event, reason = %rejection, "webhook rejected"),
            }
            rejection.into_response()
        }
    }
}

/// Checks, verifies and journals one request. Returns the journal's answer
/// and the GUID.
async fn accept(
    state: &IngestState,
    req: Request,
    received_at_ms: i64,
) -> Result<(Appended, String), Rejection> {
    let (parts, body) = req.into_parts();
    let declared = body::declared(&parts.headers, state.body.max_bytes)?;
    let gh = GithubHeaders::parse(&parts.headers)?;
    let kind = request::content_kind(&parts.headers)?;
    // The budget this body holds is given back when `_held` goes, after
    // the journal has answered.
    let (body, _held) = body::read(body, declared, &state.body).await?.into_parts();

    let signature = parts
        .headers
        .get("x-hub-signature-256")
        .map(|v| v.as_bytes());
    if !signature::verify(&state.secrets.get(), &body, signature) {
        return Err(Rejection::BadSignature);
    }

    let (envelope, parse_status) = read_envelope(kind, &body);
    let headers = model::encode_headers(
        parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let meta = DeliveryMeta {
        hook_id: gh.hook_id,
        guid: gh.guid.clone(),
        event: gh.event,
        partition_key: envelope.partition_key(state.partition_by),
        action: envelope.action,
        installation_id: envelope.installation_id,
        target_type: gh.target_type,
        target_id: gh.target_id,
        repository: envelope.repository,
        owner: envelope.owner,
        received_at_ms,
        content_kind: kind,
        parse_status,
    };
    let changed_owner = (INSTALLATION_EVENTS.contains(&meta.event.as_str()))
        .then(|| meta.owner.clone())
        .flatten();
    let delivery = NewDelivery {
        sinks: state.sinks.get().sinks_for(&meta),
        event_label: crate::journal::events::label(Some(&meta.event)),
        meta,
        headers,
        body,
    };
    match tokio::time::timeout(COMMIT_TIMEOUT, state.journal.append(delivery)).await {
        Ok(Ok(appended)) => {
            if let (Some(pool), Some(owner), Appended::Queued { .. }) =
                (&state.pool, &changed_owner, appended)
            {
                pool.forget_owner(owner);
            }
            Ok((appended, gh.guid))
        }
        // Whatever the store says, nothing was committed: not acknowledged.
        Ok(Err(_)) | Err(_) => Err(Rejection::Unavailable),
    }
}

/// The envelope of a verified body. A body that is not JSON still gets
/// journaled (invariant 7): its envelope is empty and it is marked.
fn read_envelope(kind: ContentKind, body: &[u8]) -> (envelope::Envelope, ParseStatus) {
    let parsed = match kind {
        ContentKind::Json => envelope::extract(body),
        ContentKind::Form => match crate::webhook::form_payload(body) {
            Some(json) => envelope::extract(&json),
            None => Err("form body has no payload field".to_string()),
        },
    };
    match parsed {
        Ok(env) => (env, ParseStatus::Ok),
        Err(e) => (envelope::Envelope::default(), ParseStatus::Unparseable(e)),
    }
}
