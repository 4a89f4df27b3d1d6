//! The stylesheet and script, built into the binary. Pages link them with a
//! content hash in the query, so browsers may cache them for a year and
//! still get a new one with each release that changes them.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/admin.css"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/admin.js"),
    ),
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (_, _, body) in FILES {
        h.update(body);
    }
    hex::encode(&h.finalize()[..6])
});

/// The assets' content hash, for `?v=` in links and as their ETag.
pub fn version() -> &'static str {
    &VERSION
}

pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, mime, body)) = FILES.iter().find(|(name, _, _)| *name == file) else {
        return super::error_page(StatusCode::NOT_FOUND, "not found");
    };
    let etag = format!("\"{}\"", version());
    let cache = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (header::ETAG, HeaderValue::from_str(&etag).expect("hex")),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, HeaderValue::from_static(mime))],
        *body,
    )
        .into_response()
}
