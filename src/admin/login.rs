//! Log in and out. The login form carries its own CSRF token, paired with a
//! short-lived cookie (double submit), so another site cannot log a
//! browser into a session of its choosing.

use askama::Template;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::auth::{LoginError, random_token, same_token};
use super::{SESSION_COOKIE, Session, Shared, cookie, secure, see_other, set_cookie};

const LOGIN_COOKIE: &str = "gatehouse_login";

#[cfg(test)]
mod tests {
    #[test]
    fn next_is_our_page_in_visible_ascii() {
        use super::safe_next;
        assert_eq!(
            safe_next(Some("/admin/deliveries?state=dead")),
            "/admin/deliveries?state=dead"
        );
        for bad in [
            "/admin/\r\nX: y",
            "/admin/a b",
            "/admin/\u{e9}",
            "https://x/admin/",
            "/admin\\x",
            "/x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin/", "{bad:?}");
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
    has_password: bool,
    asset_version: &'static str,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only our own pages are places to go back to after logging in, and only
/// as visible ASCII: anything else (a control character, a space) would
/// not make a valid `Location`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/admin/")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/admin/".to_string(),
    }
}

fn login_page(
    state: &Shared,
    headers: &HeaderMap,
    next: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        error,
        has_password: state.auth.has_password(),
        asset_version: super::static_files::version(),
    };
    match page.render() {
        Ok(html) => (
            status,
            [(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, &csrf, Some(3600), secure(headers)),
            )],
            axum::response::Html(html),
        )
            .into_response(),
        Err(e) => super::AdminError::from(e).into_response(),
    }
}

pub async fn form(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    login_page(
        &state,
        &headers,
        safe_next(q.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<Shared>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // The peer address is set by our listener; without one (never in
    // service) all such requests share one throttle.
    let ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.0.0.ip());
    let next = safe_next(form.next.as_deref());
    let paired = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_token(&c, &form.csrf));
    if !paired || !super::same_origin(&headers) {
        return login_page(
            &state,
            &headers,
            next,
            Some("The login form expired; try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    match state.auth.login(ip, form.password).await {
        Ok(token) => {
            tracing::info!(client = %ip, "admin login");
            let mut resp = see_other(&next);
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, None, secure(&headers)),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, "", Some(0), secure(&headers)),
            );
            resp
        }
        Err(LoginError::Throttled(wait)) => {
            tracing::warn!(client = %ip, "admin login throttled");
            let mut resp = login_page(
                &state,
                &headers,
                next,
                Some(format!(
                    "Too many failed logins from your address; wait {} s.",
                    wait.as_secs()
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                wait.as_secs().to_string().parse().expect("digits"),
            );
            resp
        }
        Err(LoginError::Wrong) => {
            tracing::warn!(client = %ip, "admin login failed");
            login_page(
                &state,
                &headers,
                next,
                Some("Wrong password.".into()),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(LoginError::Store(e)) => {
            tracing::warn!(error = %e, "admin login: the session could not be stored");
            login_page(
                &state,
                &headers,
                next,
                Some("The session could not be stored; try again shortly.".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
        Err(LoginError::NoPassword) => login_page(
            &state,
            &headers,
            next,
            Some("No admin password is set.".into()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

pub async fn logout(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.auth.logout(&session.token).await {
        tracing::warn!(error = %e, "admin logout: the session could not be ended");
        return super::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot be written now; try again shortly",
        );
    }
    let mut resp = see_other("/admin/login");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), secure(&headers)),
    );
    resp
}
