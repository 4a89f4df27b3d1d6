//! GitHub-shaped answers: error bodies, JSON with `Last-Modified`, and
//! paginated lists with `Link` headers in absolute URLs.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri};
use serde_json::{Value, json};

pub const DOCS: &str = "https://docs.github.com/rest";

/// An error as GitHub writes it: `{"message", "documentation_url"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub docs: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            docs: DOCS,
        }
    }
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not Found")
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    /// What GitHub says when a token lacks a permission.
    pub fn not_accessible() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        )
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    /// App endpoints need a JWT; anything else is refused like this.
    pub fn jwt_required() -> ApiError {
        ApiError::unauthorized(crate::auth::JWT_UNDECODABLE)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "message": self.message, "documentation_url": self.docs })),
        )
            .into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A JSON body, with `Last-Modified` when the resource has a time.
pub fn json_at(status: StatusCode, v: Value, last_modified: Option<i64>) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    if let Some(t) = last_modified {
        let date = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
        );
        r.headers_mut().insert(
            http::header::LAST_MODIFIED,
            HeaderValue::from_str(&date).expect("http date is ascii"),
        );
    }
    r
}

pub fn ok(v: Value, last_modified: Option<i64>) -> ApiResult {
    Ok(json_at(StatusCode::OK, v, last_modified))
}

pub fn created(v: Value) -> ApiResult {
    Ok(json_at(StatusCode::CREATED, v, None))
}

/// The server's root: the API base without GHES's `/api/v3`, which the
/// request's own path (links are built from it) already carries.
pub fn root_of(base: &str) -> &str {
    base.strip_suffix("/api/v3").unwrap_or(base)
}

/// One page of `items` (per_page default 30, at most 100; page from 1),
/// with GitHub's `Link` header (`prev`, `next`, `last`, `first`).
pub fn page(
    base: &str,
    uri: &Uri,
    query: &HashMap<String, String>,
    items: Vec<Value>,
    last_modified: Option<i64>,
) -> ApiResult {
    let per_page = match query.get("per_page") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("per_page must be a number"))?
            .clamp(1, 100),
        None => 30,
    };
    let page = match query.get("page") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("page must be a number"))?
            .max(1),
        None => 1,
    };
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut r = json_at(StatusCode::OK, Value::Array(slice), last_modified);
    let link_to = |p: usize| {
        let mut q: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        q.sort();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q {
            ser.append_pair(k, v);
        }
        ser.append_pair("per_page", &per_page.to_string());
        ser.append_pair("page", &p.to_string());
        format!("<{}{}?{}>", root_of(base), uri.path(), ser.finish())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty() {
        r.headers_mut().insert(
            http::header::LINK,
            HeaderValue::from_str(&links.join(", ")).map_err(|_| ApiError::invalid("bad link"))?,
        );
    }
    Ok(r)
}
