//! fakehub's own endpoints (not GitHub's), under `/_fakehub`: usage stats
//! per token and installation, and a trigger to send a webhook now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::hub::Hub;
use crate::webhooks::HookRef;

pub async fn stats(State(hub): State<Arc<Hub>>) -> Response {
    Json(hub.limits.stats()).into_response()
}

pub async fn reset_stats(State(hub): State<Arc<Hub>>) -> Response {
    hub.limits.reset_stats();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct DeliverRequest {
    /// An App id (its webhook) or, with `hook`, a repository/org hook id.
    #[serde(default)]
    app: Option<i64>,
    #[serde(default)]
    hook: Option<i64>,
    event: String,
    /// A fixture file under payloads/<event>/, e.g. `opened.payload.json`.
    file: String,
    owner: String,
    repo: String,
}

/// `POST /_fakehub/deliver`: sends a fixture event now and returns the
/// delivery log record.
pub async fn deliver(State(hub): State<Arc<Hub>>, Json(req): Json<DeliverRequest>) -> Response {
    let hook = match (req.app, req.hook) {
        (Some(a), None) => HookRef::App(a),
        (None, Some(h)) => HookRef::Hook(h),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "give exactly one of app or hook"})),
            )
                .into_response();
        }
    };
    match hub
        .deliver(hook, &req.event, &req.file, &req.owner, &req.repo)
        .await
    {
        Ok(r) => Json(r.summary()).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
}
