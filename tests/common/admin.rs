//! A logged-in admin UI client: keeps the session cookie by hand (no
//! cookie jar, so tests see every Set-Cookie) and never follows redirects
//! (so tests see every 303).

use std::sync::OnceLock;

use reqwest::StatusCode;
use reqwest::redirect::Policy;

pub const PASSWORD: &str = "admin test password";

/// The argon2 hash of [`PASSWORD`], computed once per test binary.
pub fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| gatehouse::admin::password::hash(PASSWORD))
}

/// `.form()` without reqwest's form feature.
pub trait FormExt {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

pub struct Admin {
    pub base: String,
    pub client: reqwest::Client,
    /// `gatehouse_session=...`, once logged in.
    pub session: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value of the first hidden `csrf` field on the page.
    pub fn csrf(&self) -> String {
        field(&self.body, "csrf").expect("the page has a csrf field")
    }
}

/// The value of the first `name="{name}" value="..."` in `html`.
pub fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

pub fn client_from(local: Option<std::net::IpAddr>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().redirect(Policy::none());
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

impl Admin {
    pub fn anonymous(base: &str) -> Admin {
        Admin {
            base: base.to_string(),
            client: client_from(None),
            session: None,
        }
    }

    /// Logs in with the test password.
    pub async fn login(base: &str) -> Admin {
        let mut a = Admin::anonymous(base);
        let page = a.try_login(PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        a
    }

    /// Fetches the login form and submits `password` with its token.
    pub async fn try_login(&mut self, password: &str) -> Page {
        self.try_login_to(password, "/admin/").await
    }

    /// [`Admin::try_login`], asking to go on to `next`.
    pub async fn try_login_to(&mut self, password: &str, next: &str) -> Page {
        let form = self.get("/admin/login").await;
        let token = form.csrf();
        let login_cookie = form
            .cookies()
            .into_iter()
            .find(|c| c.starts_with("gatehouse_login="))
            .expect("the login form sets its cookie");
        let pair = login_cookie.split(';').next().unwrap().to_string();
        let resp = self
            .client
            .post(format!("{}/admin/login", self.base))
            .header("cookie", pair)
            .form_pairs(&[
                ("csrf", token.as_str()),
                ("password", password),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        let page = to_page(resp).await;
        if let Some(c) = page
            .cookies()
            .into_iter()
            .find(|c| c.starts_with("gatehouse_session="))
        {
            self.session = Some(c.split(';').next().unwrap().to_string());
        }
        page
    }

    pub async fn get(&self, path: &str) -> Page {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(s) = &self.session {
            req = req.header("cookie", s);
        }
        to_page(req.send().await.unwrap()).await
    }

    /// POSTs a form as-is (the caller decides the csrf field).
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .form_pairs(form);
        if let Some(s) = &self.session {
            req = req.header("cookie", s);
        }
        to_page(req.send().await.unwrap()).await
    }

    /// POSTs a form with the session's CSRF token (read off the overview).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let token = self.get("/admin/").await.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(form);
        self.post_raw(path, &all).await
    }
}

async fn to_page(resp: reqwest::Response) -> Page {
    Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// Every string in a JSON document replaced by hostile markup.
fn poison(v: &mut serde_json::Value, n: &mut usize) {
    match v {
        serde_json::Value::String(s) => {
            *n += 1;
            *s = format!(
                "<script>window.__xss={n}</script><img src=x onerror=\"window.__xss={n}\">\"'&{n}"
            );
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| poison(x, n)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| poison(x, n)),
        _ => {}
    }
}

/// An issues payload whose every string field is hostile markup, as a
/// hostile sender holding the webhook secret could send it.
pub fn hostile_payload() -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&super::compact(
        &super::fixtures().join("payloads/issues/opened.payload.json"),
    ))
    .unwrap();
    let mut n = 0;
    poison(&mut v, &mut n);
    assert!(n > 50, "the fixture has many strings ({n})");
    serde_json::to_vec(&v).unwrap()
}
