//! The admin UI over HTTP against the real server: every page and action,
//! with and without a session and a CSRF token; what the pages say matches
//! the journal; attacker-controlled payloads render as text.

mod common;

use std::time::Duration;

use common::admin::{Admin, FormExt, PASSWORD, client_from, field, hostile_payload};
use common::census::{held, job_details, partition, shown, wait_census};
use common::consumer;
use common::{Delivery, TestApp, compact, eventually, push_for, route, wait_until};
use gatehouse::store::operator::JobDetail;
use reqwest::StatusCode;

/// Every page an operator can open, with a query where it needs one.
const PAGES: &[&str] = &[
    "/admin/",
    "/admin/deliveries",
    "/admin/deliveries/1",
    "/admin/bulk?state=dead",
    "/admin/partitions",
    "/admin/github",
    "/admin/clients",
    "/admin/reports",
];

/// Every state-changing action with a form that would be valid.
const ACTIONS: &[(&str, &[(&str, &str)])] = &[
    ("/admin/deliveries/1/retry", &[]),
    ("/admin/deliveries/1/skip", &[]),
    ("/admin/bulk/retry", &[("state", "dead")]),
    (
        "/admin/partitions/hold",
        &[("sink", "ci"), ("action", "pause")],
    ),
    ("/admin/routes/drop", &[("sink", "gone")]),
    ("/admin/clients/add", &[("name", "forged")]),
    ("/admin/clients/rotate", &[("name", "forged")]),
    ("/admin/clients/revoke", &[("name", "forged")]),
    ("/admin/logout", &[]),
];

/// No gateway client was made by a refused action.
async fn no_clients(t: &TestApp) {
    let rows = t.store().clients(gatehouse::clock::now_ms()).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

/// gatehouse with one route whose consumer refuses everything once (so
/// each delivery becomes a dead letter at its first attempt).
async fn with_dead_letters(n: usize) -> (TestApp, consumer::Consumer) {
    let c = consumer::start(Duration::ZERO, consumer::always(500)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.max_attempts = 1;
        // Many dead letters per partition: order may move past each.
        r.on_dead = Some(gatehouse::config::OnDeadConfig::Skip);
        cfg.routes = vec![r];
    })
    .await;
    for i in 0..n {
        let org = if i % 2 == 0 { "acme" } else { "globex" };
        let d = Delivery::json("push", &format!("guid-{i}"), push_for(org, i));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    wait_census(&t.store(), "every job dead", Duration::from_secs(30), |c| {
        c.jobs(None, Some("dead")) == n
    })
    .await;
    (t, c)
}

#[tokio::test]
async fn pages_and_actions_need_a_session() {
    let (t, _c) = with_dead_letters(1).await;
    let anon = Admin::anonymous(&t.base);
    for page in PAGES {
        let p = anon.get(page).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{page}");
        assert!(
            p.location().starts_with("/admin/login?next="),
            "{page}: {}",
            p.location()
        );
    }
    let forged = Admin {
        session: Some("gatehouse_session=0123456789abcdef".into()),
        ..Admin::anonymous(&t.base)
    };
    assert_eq!(forged.get("/admin/").await.status, StatusCode::SEE_OTHER);
    for (path, form) in ACTIONS {
        let mut f = vec![("csrf", "anything")];
        f.extend_from_slice(form);
        assert_eq!(
            anon.post_raw(path, &f).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            forged.post_raw(path, &f).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // Nothing changed: the dead letter is still dead, no pause was made.
    assert_eq!(t.census().await.jobs(None, Some("dead")), 1);
    assert_eq!(held(&t.store()).await, []);
    no_clients(&t).await;
    // The login page says where it will go back to.
    let login = anon.get("/admin/login?next=%2Fadmin%2Fgithub").await;
    assert_eq!(field(&login.body, "next").as_deref(), Some("/admin/github"));
    // ... but only to our own pages.
    let login = anon
        .get("/admin/login?next=https%3A%2F%2Fevil.example%2F")
        .await;
    assert_eq!(field(&login.body, "next").as_deref(), Some("/admin/"));
}

#[tokio::test]
async fn every_page_loads_with_a_strict_policy_and_no_inline_code() {
    let (t, _c) = with_dead_letters(3).await;
    let admin = Admin::login(&t.base).await;
    for page in PAGES.iter().chain(["/admin/login"].iter()) {
        let p = admin.get(page).await;
        assert_eq!(p.status, StatusCode::OK, "{page}: {}", p.body);
        let csp = p.headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{page}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(p.headers["x-frame-options"], "DENY");
        assert_eq!(p.headers["x-content-type-options"], "nosniff");
        assert_eq!(p.headers["cache-control"], "no-store", "{page}");
        // Inline script and style would be refused by the policy anyway;
        // none is written.
        assert_eq!(
            p.body.matches("<script").count(),
            p.body.matches("<script src=").count(),
            "{page}"
        );
        assert!(!p.body.contains(" style="), "{page}");
        assert!(!p.body.contains("<style"), "{page}");
    }
    // Unknown ids are a 404 page, not an error.
    assert_eq!(
        admin.get("/admin/deliveries/999999").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn login_cookie_is_strict_and_logout_ends_the_session() {
    let t = TestApp::spawn().await;
    let mut admin = Admin::anonymous(&t.base);
    let p = admin.try_login(PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/admin/");
    let session = p
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain HTTP on loopback: {session}"
    );
    assert_eq!(admin.get("/admin/").await.status, StatusCode::OK);

    // Behind a TLS proxy the cookie is Secure.
    let form = admin.get("/admin/login").await;
    let pair = form.cookies()[0].split(';').next().unwrap().to_string();
    let resp = admin
        .client
        .post(format!("{}/admin/login", t.base))
        .header("cookie", pair)
        .header("x-forwarded-proto", "https")
        .form_pairs(&[("csrf", form.csrf().as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("gatehouse_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );

    let out = admin.post("/admin/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookies()[0].contains("Max-Age=0"));
    assert_eq!(admin.get("/admin/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let t = TestApp::spawn_with(|c| c.admin.login_attempts_per_minute = 3).await;
    let mut bad = Admin {
        client: client_from(Some("127.0.0.2".parse().unwrap())),
        ..Admin::anonymous(&t.base)
    };
    for _ in 0..3 {
        let p = bad.try_login("guess").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("Wrong password"));
    }
    // Now even the right password is refused from that address, with a
    // time to wait.
    let p = bad.try_login(PASSWORD).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    assert!(bad.session.is_none());
    // Another address is not affected.
    let mut good = Admin {
        client: client_from(Some("127.0.0.3".parse().unwrap())),
        ..Admin::anonymous(&t.base)
    };
    assert_eq!(good.try_login(PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_without_its_form_token_is_refused() {
    let t = TestApp::spawn().await;
    let anon = Admin::anonymous(&t.base);
    // A cross-site form post carries neither our cookie nor its token.
    let p = anon
        .post_raw("/admin/login", &[("password", PASSWORD), ("csrf", "x")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(
        !p.cookies()
            .iter()
            .any(|c| c.starts_with("gatehouse_session="))
    );
}

#[tokio::test]
async fn actions_without_the_csrf_token_change_nothing() {
    let (t, _c) = with_dead_letters(2).await;
    let admin = Admin::login(&t.base).await;
    let token = admin.get("/admin/").await.csrf();
    for (path, form) in ACTIONS {
        for bad in ["", "0000", &token[..token.len() - 1]] {
            let mut f = vec![("csrf", bad)];
            f.extend_from_slice(form);
            let p = admin.post_raw(path, &f).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} with {bad:?}");
        }
        let p = admin.post_raw(path, form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path} without a token");
        // Right token, but sent from another origin.
        let mut f = vec![("csrf", token.as_str())];
        f.extend_from_slice(form);
        let resp = admin
            .client
            .post(format!("{}{path}", t.base))
            .header("cookie", admin.session.clone().unwrap())
            .header("origin", "https://evil.example")
            .form_pairs(&f)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path} cross-origin");
    }
    assert_eq!(t.census().await.jobs(None, Some("dead")), 2);
    assert_eq!(held(&t.store()).await, []);
    no_clients(&t).await;
    assert_eq!(
        admin.get("/admin/").await.status,
        StatusCode::OK,
        "still logged in"
    );
}

#[tokio::test]
async fn retrying_a_dead_letter_from_its_page_runs_it_again() {
    let c = consumer::start(
        Duration::ZERO,
        std::sync::Arc::new(|_: &consumer::Arrival, i: usize| {
            (if i >= 1 { 200 } else { 500 }, vec![])
        }),
    )
    .await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.max_attempts = 1;
        cfg.routes = vec![r];
    })
    .await;
    let d = Delivery::json("push", "retry-me", push_for("acme", 1));
    t.send(&d).await;
    wait_census(&t.store(), "a dead letter", Duration::from_secs(30), |c| {
        c.jobs(None, Some("dead")) == 1
    })
    .await;
    let admin = Admin::login(&t.base).await;
    let page = admin.get("/admin/deliveries/1").await;
    assert!(page.body.contains("Retry ci"), "{}", page.body);
    assert!(page.body.contains(">dead<"));
    let p = admin
        .post("/admin/deliveries/1/retry", &[("sink", "ci")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/admin/deliveries/1?retried=1");
    // The scheduler is woken: the retry runs well before its 10 s rescan.
    let started = std::time::Instant::now();
    c.wait_for("the retried attempt", Duration::from_secs(30), |a| {
        a.len() == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    wait_census(&t.store(), "the job done", Duration::from_secs(10), |c| {
        c.jobs(None, Some("done")) == 1
    })
    .await;
    let page = admin.get("/admin/deliveries/1?retried=1").await;
    assert!(page.body.contains("1 job(s) queued again"));
    // Both attempts are listed, the second one done with its status.
    let attempts = page.body.split("class=\"attempts\"").nth(1).unwrap();
    assert_eq!(
        attempts.matches("<tr><td class=\"num\">").count(),
        2,
        "{attempts}"
    );
    assert!(attempts.contains(">500<") && attempts.contains(">200<"));
    // A pending or done job offers no per-sink retry of a dead letter now,
    // but the "retry all" of finished jobs is there.
    assert!(page.body.contains("Retry all finished jobs"));
}

#[tokio::test]
async fn bulk_retry_counts_then_retries_only_what_the_filter_matches() {
    let (t, _c) = with_dead_letters(6).await;
    let admin = Admin::login(&t.base).await;
    let confirm = admin.get("/admin/bulk?partition=acme&state=dead").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("<p class=\"big\">3 <small>"),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains("Retry 3 dead letter(s)"));
    assert_eq!(field(&confirm.body, "partition").as_deref(), Some("acme"));
    let p = admin
        .post(
            "/admin/bulk/retry",
            &[("partition", "acme"), ("state", "dead")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/admin/deliveries?partition=acme&retried=3");
    // Only acme's were queued again (they die again: the consumer still
    // refuses), globex's were never touched.
    let store = t.store();
    let globex = job_details(&store, &partition("globex")).await;
    let untouched = |jobs: &[JobDetail]| {
        jobs.iter()
            .filter(|j| j.attempts == 1 && j.state == "dead" && j.history.len() == 1)
            .count()
    };
    assert_eq!((globex.len(), untouched(&globex)), (3, 3));
    eventually("acme's retried", Duration::from_secs(30), async || {
        let acme = job_details(&store, &partition("acme")).await;
        acme.iter().map(|j| j.history.len()).sum::<usize>() == 6
    })
    .await;
    let globex = job_details(&store, &partition("globex")).await;
    assert_eq!(untouched(&globex), 3, "globex's still untouched");
    let nothing = admin.get("/admin/bulk?partition=nobody&state=dead").await;
    assert!(nothing.body.contains("Nothing to retry"));
}

#[tokio::test]
async fn partitions_and_routes_pause_and_resume_from_the_page() {
    let (t, _c) = with_dead_letters(2).await;
    let admin = Admin::login(&t.base).await;
    let page = admin.get("/admin/partitions").await;
    assert!(
        page.body.contains(">acme</a>") && page.body.contains(">globex</a>"),
        "{}",
        page.body
    );
    let p = admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "ci"), ("partition", "acme"), ("action", "pause")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let acme = || ("ci".to_string(), "acme".to_string());
    assert_eq!(held(&t.store()).await, [acme()]);
    let page = admin.get("/admin/partitions?sink=ci").await;
    assert!(page.body.contains("paused by an operator"));
    assert!(page.body.contains("value=\"resume\""));
    let overview = admin.get("/admin/").await;
    assert!(overview.body.contains("paused by an operator"));

    admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "ci"), ("partition", "acme"), ("action", "resume")],
        )
        .await;
    assert_eq!(held(&t.store()).await, []);

    admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "ci"), ("action", "pause")],
        )
        .await;
    let paused = async || {
        let states = t.store().route_states(&[], 0).await.unwrap();
        states
            .into_iter()
            .filter(|r| r.paused)
            .map(|r| r.route)
            .collect::<Vec<_>>()
    };
    assert_eq!(paused().await, ["ci"]);
    assert!(
        admin
            .get("/admin/partitions")
            .await
            .body
            .contains("Resume route")
    );
    admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "ci"), ("action", "resume")],
        )
        .await;
    assert_eq!(paused().await, Vec::<String>::new());

    // Unknown routes and actions are refused with a reason.
    let p = admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "nope"), ("action", "pause")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("no route"));
    let p = admin
        .post(
            "/admin/partitions/hold",
            &[("sink", "ci"), ("action", "explode")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
}

/// The ids on a deliveries page, in order.
fn ids(body: &str) -> Vec<i64> {
    body.split("<td class=\"num opt\"><a href=\"/admin/deliveries/")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The href of a pager link (`rel="prev"` or `rel="next"`), unescaped.
fn pager(body: &str, rel: &str) -> Option<String> {
    let end = body.find(&format!("\" rel=\"{rel}\""))?;
    let start = body[..end].rfind("href=\"")? + 6;
    Some(body[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

#[tokio::test]
async fn deliveries_filter_and_page_by_keyset() {
    let t = TestApp::spawn().await;
    for i in 0..130 {
        let org = ["acme", "globex"][i % 2];
        let d = Delivery::json("push", &format!("push-{i}"), push_for(org, i));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let issue = compact(&common::fixtures().join("payloads/issues/opened.payload.json"));
    t.send(&Delivery::json("issues", "issue-1", issue)).await;
    let admin = Admin::login(&t.base).await;

    // Newest first, 50 a page; "Older" walks back by id, "Newer" returns.
    let first = admin
        .get("/admin/deliveries?event=push&partition=acme")
        .await;
    let ids1 = ids(&first.body);
    assert_eq!(ids1.len(), 50);
    assert!(ids1.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(ids1[0], 129, "the newest acme push");
    assert!(pager(&first.body, "prev").is_none());
    let older = pager(&first.body, "next").unwrap();
    assert!(
        older.contains("event=push") && older.contains("partition=acme"),
        "{older}"
    );
    let second = admin.get(&older).await;
    let ids2 = ids(&second.body);
    assert_eq!(ids2.len(), 15, "65 acme pushes in all");
    assert!(ids2[0] < ids1[49]);
    assert!(pager(&second.body, "next").is_none());
    let back = admin.get(&pager(&second.body, "prev").unwrap()).await;
    assert_eq!(ids(&back.body), ids1);

    // Each filter narrows as the journal says: counted here from the
    // whole list, not by the filter under test.
    let all = t.census().await.0;
    let n = |f: &dyn Fn(&gatehouse::store::operator::Listed) -> bool| {
        all.iter().filter(|d| f(d)).count()
    };
    for (query, want) in [
        ("event=issues", n(&|d| d.event == "issues")),
        ("guid=push-7", n(&|d| d.guid == "push-7")),
        (
            "repository=globex%2Frepo",
            n(&|d| d.repository.as_deref() == Some("globex/repo")),
        ),
        (
            "action=opened",
            n(&|d| d.action.as_deref() == Some("opened")),
        ),
        ("since=1h", all.len()),
        ("until=1h", 0),
        ("state=dead", 0),
    ] {
        let want = want.min(50);
        let p = admin.get(&format!("/admin/deliveries?{query}")).await;
        assert_eq!(p.status, StatusCode::OK, "{query}");
        assert_eq!(ids(&p.body).len(), want, "{query}");
    }
    // The filter stays in the form.
    let p = admin.get("/admin/deliveries?guid=push-7").await;
    assert_eq!(field(&p.body, "guid").as_deref(), Some("push-7"));
    // Bad input says what is wrong.
    let p = admin.get("/admin/deliveries?since=yesterday-ish").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(
        p.body.contains("since &#34;yesterday-ish&#34;"),
        "{}",
        p.body
    );
    let p = admin.get("/admin/deliveries?state=zombie").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_payloads_render_as_text() {
    let t = TestApp::spawn_with(|c| c.routes = vec![route("ci", "http://127.0.0.1:9/")]).await;
    let d = Delivery::json("issues", "hostile-1", hostile_payload())
        .header("x-evil", "<script>window.__xss=1</script>");
    assert_eq!(t.send(&d).await.status(), 202);
    let admin = Admin::login(&t.base).await;
    for page in [
        "/admin/",
        "/admin/deliveries",
        "/admin/deliveries?guid=hostile-1",
        "/admin/deliveries/1",
        "/admin/partitions",
        "/admin/reports",
    ] {
        let p = admin.get(page).await;
        assert_eq!(p.status, StatusCode::OK, "{page}");
        assert!(!p.body.contains("<script>window"), "{page}");
        assert!(!p.body.contains("<img"), "{page}");
        assert!(!p.body.contains("onerror=\"window"), "{page}");
    }
    let p = admin.get("/admin/deliveries/1").await;
    assert!(
        p.body.contains("&#60;script&#62;window.__xss="),
        "escaped, shown"
    );
    assert!(p.body.contains("x-evil"));
    // The raw body downloads byte for byte, as an attachment that no
    // browser renders.
    let raw = admin.get("/admin/deliveries/1/body").await;
    assert_eq!(raw.headers["content-type"], "application/octet-stream");
    assert!(
        raw.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(raw.body.as_bytes(), &d.body[..]);
}

/// Retention shorter than GitHub's redelivery window prunes a delivery's
/// stored request but keeps its row: the page says so and a redelivery
/// is still a duplicate.
#[tokio::test]
async fn a_delivery_whose_body_was_pruned_says_so_and_stays_deduplicated() {
    let t = TestApp::spawn().await;
    let body = compact(&common::fixtures().join("payloads/ping/payload.json"));
    let d = Delivery::json("ping", "pruned-1", body);
    assert_eq!(t.send(&d).await.status(), 202);
    let now = gatehouse::clock::now_ms();
    let pruned = t.app.journal().prune(now + 1, 0, 10).await.unwrap();
    assert_eq!((pruned.bodies, pruned.deliveries), (1, 0));
    let admin = Admin::login(&t.base).await;
    let p = admin.get("/admin/deliveries/1").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Pruned by retention"), "{}", p.body);
    assert!(!p.body.contains("Download the raw body"));
    assert!(p.body.contains("pruned-1"));
    assert_eq!(t.send(&d).await.status(), 200, "still a duplicate");
}

#[tokio::test]
async fn pages_report_what_the_journal_holds() {
    let (t, _c) = with_dead_letters(8).await;
    let issue = compact(&common::fixtures().join("payloads/issues/opened.payload.json"));
    let d = Delivery::json("issues", "issue-1", issue);
    assert_eq!(t.send(&d).await.status(), 202);
    // A repeat is no new delivery: it counts nowhere.
    assert_eq!(t.send(&d).await.status(), 200);
    wait_census(
        &t.store(),
        "the issue's dead letter",
        Duration::from_secs(30),
        |c| c.jobs(None, Some("dead")) == 9,
    )
    .await;
    let admin = Admin::login(&t.base).await;
    let o = admin.get("/admin/").await;
    // 9 deliveries this hour and today, each a dead letter for ci.
    assert!(
        o.body.contains("Deliveries, last hour <small>9</small>"),
        "{}",
        o.body
    );
    assert!(o.body.contains("Deliveries, last day <small>9</small>"));
    assert!(
        o.body.contains("state=dead&amp;route=ci\">9</a>"),
        "{}",
        o.body
    );
    assert_eq!(
        o.body.matches("<rect ").count(),
        60 + 24,
        "a bar per minute and hour"
    );
    assert!(o.body.contains("data-refresh=\"10\""));

    let r = admin.get("/admin/reports?days=1").await;
    let owners = r.body.split("By organisation").nth(1).unwrap();
    assert!(
        owners.contains("<td class=\"wrap\">acme</td><td class=\"num\">4</td>"),
        "{owners}"
    );
    assert!(owners.contains("<td class=\"wrap\">globex</td><td class=\"num\">4</td>"));
    let events = r.body.split("By event").nth(1).unwrap();
    assert!(events.contains("<td class=\"wrap\">push</td><td class=\"num\">8</td>"));
    let consumers = r.body.split("<h2>Consumers</h2>").nth(1).unwrap();
    // 9 attempts, all failed: 0% success.
    assert!(
        consumers.contains(
            "<td>ci</td><td class=\"num\">9</td><td class=\"num\">0.0%</td><td class=\"num opt\">9</td>"
        ),
        "{consumers}"
    );
    let g = admin.get("/admin/github").await;
    assert!(g.body.contains("No <code>[[github.apps]]</code>"));
}

#[tokio::test]
async fn static_assets_are_cached_and_revalidated() {
    let t = TestApp::spawn().await;
    let anon = Admin::anonymous(&t.base);
    let css = anon.get("/admin/static/admin.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let etag = css.headers["etag"].to_str().unwrap().to_string();
    let again = anon
        .client
        .get(format!("{}/admin/static/admin.css", t.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // Pages link the assets with the same version.
    let login = anon.get("/admin/login").await;
    assert!(
        login
            .body
            .contains(&format!("admin.css?v={}", etag.trim_matches('"')))
    );
    assert_eq!(
        anon.get("/admin/static/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        anon.get("/admin/static/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_ui_can_be_turned_off() {
    let t = TestApp::spawn_with(|c| c.admin.enabled = false).await;
    assert_eq!(
        Admin::anonymous(&t.base).get("/admin/login").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn latency_buckets_in_rust_and_in_the_trigger_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let journal = tokio::task::spawn_blocking(move || common::open_store(&path))
        .await
        .unwrap();
    let bounds = gatehouse::admin::LATENCY_BUCKETS_MS;
    let durations: Vec<i64> = std::iter::once(0)
        .chain(bounds.iter().flat_map(|b| [*b, b + 1]))
        .collect();
    // Attempts recorded the scheduler's way: one job, under a lease, each
    // attempt failing so the next one comes.
    journal
        .append(common::journal_push("acme", "g", 1, "ci"))
        .await
        .unwrap();
    let fence = match journal.acquire("ci", "acme", "t", 0, 60_000).await.unwrap() {
        gatehouse::store::jobs::Lease::Taken { fence, .. } => fence,
        _ => panic!("lease not taken"),
    };
    let job = journal
        .pending("ci", "acme", None, 1)
        .await
        .unwrap()
        .remove(0);
    for ms in &durations {
        let attempt = gatehouse::store::jobs::Attempt {
            duration_ms: *ms,
            ..gatehouse::store::jobs::Attempt::in_process(0, Some("x"))
        };
        journal
            .record(
                &job,
                "ci",
                "acme",
                &fence,
                attempt,
                gatehouse::store::jobs::Limit::attempts(1000),
                0,
                60_000,
            )
            .await
            .unwrap();
    }
    let mut want = [0i64; 12];
    for ms in &durations {
        want[bounds.iter().position(|b| ms <= b).unwrap_or(bounds.len())] += 1;
    }
    let got: Vec<(usize, i64)> = journal
        .reports(0)
        .await
        .unwrap()
        .attempts
        .into_iter()
        .filter(|a| a.0 == "ci")
        .map(|a| (a.2, a.3))
        .collect();
    let mut have = [0i64; 12];
    for (b, n) in got {
        have[b] += n;
    }
    assert_eq!(have, want);
    journal.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn set_password_writes_a_hash_the_running_server_uses() {
    use common::binary;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.db");
    let config = binary::write_config(dir.path(), &db, "");
    let cfg = config.to_str().unwrap();
    let server = binary::Server::start(&config);
    let mut admin = Admin::anonymous(&server.base);
    let form = admin.get("/admin/login").await;
    assert!(
        form.body.contains("No admin password is set"),
        "{}",
        form.body
    );

    let hash_file = dir.path().join("admin-password.hash");
    let (status, out) = binary::run_with_input(
        &["admin", "set-password", "--config", cfg],
        None,
        Some("short\n"),
    );
    assert!(!status.success());
    assert!(out.contains("at least 12 characters"), "{out}");
    assert!(!hash_file.exists());

    let new = "correct horse battery staple";
    let (status, out) = binary::run_with_input(
        &["admin", "set-password", "--config", cfg],
        None,
        Some(&format!("{new}\n")),
    );
    assert!(status.success(), "{out}");
    assert!(out.contains(&hash_file.display().to_string()), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&hash_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No restart needed.
    assert_eq!(admin.try_login(new).await.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/admin/").await.status, StatusCode::OK);

    // --print gives a hash for [admin] password_hash; --output writes where told.
    let (status, out) = binary::run_with_input(
        &["admin", "set-password", "--print"],
        None,
        Some("another long password\n"),
    );
    assert!(status.success(), "{out}");
    assert!(
        gatehouse::admin::password::verify(out.trim(), "another long password"),
        "{out}"
    );
    let elsewhere = dir.path().join("creds/admin.hash");
    let (status, out) = binary::run_with_input(
        &[
            "admin",
            "set-password",
            "--output",
            elsewhere.to_str().unwrap(),
        ],
        None,
        Some("a third long password\n"),
    );
    assert!(status.success(), "{out}");
    let written = std::fs::read_to_string(&elsewhere).unwrap();
    assert!(gatehouse::admin::password::verify(
        written.trim(),
        "a third long password"
    ));
}

#[tokio::test]
async fn github_page_shows_budgets_installations_clients_and_no_secrets() {
    let hub = common::hub::octo_hub(vec![]).await;
    let github = common::hub::github_config(&hub, &[(101, "app-a.pem")], &[]);
    let t = TestApp::spawn_with(|c| {
        c.github = github;
        c.gateway = Some(gatehouse::config::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
    })
    .await;
    // A client of the gateway, and a request through it that spends the
    // installation's budget.
    let token = common::add_client(&t.db_path, "ci-bot", &["GET /orgs/.*"], &["octo-org"]);
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let resp = reqwest::Client::new()
        .get(format!("{gw}/orgs/octo-org"))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let store = t.store();
    eventually(
        "the client's usage flushed",
        Duration::from_secs(15),
        async || {
            let clients = store.clients(gatehouse::clock::now_ms()).await.unwrap();
            let bot = clients.iter().find(|c| c.name == "ci-bot").unwrap();
            bot.last_hour.requests == 1
        },
    )
    .await;
    eventually("the recovery walk", Duration::from_secs(15), async || {
        !store.last_complete().await.unwrap().is_empty()
    })
    .await;

    let admin = Admin::login(&t.base).await;
    let g = admin.get("/admin/github").await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.body.contains("app:101/installation:11"), "{}", g.body);
    assert!(
        g.body.contains("<meter min=\"0\" max=\"5000\""),
        "{}",
        g.body
    );
    assert!(g.body.contains(
        "<td>octo-org</td><td>app 101</td><td class=\"wrap\">installation 11, all repositories</td>"
    ));
    assert!(g.body.contains("ci-bot") && g.body.contains("GET /orgs/.*"));
    let o = admin.get("/admin/").await;
    assert!(
        o.body.contains("<td>app:101</td><td>complete</td>"),
        "{}",
        o.body
    );
    assert!(o.body.contains("app:101/installation:11"));
    // No secret anywhere: not the App's key, not the client's token, not
    // the webhook secret.
    let key = common::hub::key("app-a.pem");
    let key_line = key.lines().nth(1).unwrap();
    for page in PAGES.iter().chain(["/admin/github"].iter()) {
        let p = admin.get(page).await;
        for secret in [key_line, token.as_str(), common::SECRET] {
            assert!(!p.body.contains(secret), "{page} shows a secret");
        }
    }
}

#[tokio::test]
async fn reports_show_the_actions_workflows() {
    let t = TestApp::spawn().await;
    let mut v: serde_json::Value = serde_json::from_slice(&compact(
        &common::fixtures().join("payloads/workflow_run/completed.payload.json"),
    ))
    .unwrap();
    let now = std::time::SystemTime::now();
    let at =
        |ago: u64| humantime::format_rfc3339_seconds(now - Duration::from_secs(ago)).to_string();
    v["workflow_run"]["name"] = "Build & <test>".into();
    v["workflow_run"]["created_at"] = at(400).into();
    v["workflow_run"]["run_started_at"] = at(300).into();
    v["workflow_run"]["updated_at"] = at(60).into();
    let d = Delivery::json("workflow_run", "run-1", serde_json::to_vec(&v).unwrap());
    assert_eq!(t.send(&d).await.status(), 202);
    eventually("the run in state", Duration::from_secs(15), async || {
        t.store().finished_workflows(0).await.unwrap().runs.len() == 1
    })
    .await;
    let admin = Admin::login(&t.base).await;
    let r = admin.get("/admin/reports?days=1").await;
    let actions = r.body.split("GitHub Actions workflows").nth(1).unwrap();
    assert!(
        actions.contains(
            "<td class=\"opt\">octo-org/octo-repo</td><td>Build &#38; &#60;test&#62;</td><td class=\"num\">1</td>"
        ),
        "{actions}"
    );
    // One successful run of 4 minutes: 100%, p50 = p95 = 4m 0s.
    assert!(actions.contains("value=\"100\""), "{actions}");
    assert!(actions.contains("4m 0s / 4m 0s"), "{actions}");
    let off = TestApp::spawn_with(|c| c.actions_metrics.enabled = false).await;
    let r = Admin::login(&off.base).await.get("/admin/reports").await;
    assert!(r.body.contains("The Actions metrics sink is off"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_logins_get_only_the_allowed_checks() {
    let t = TestApp::spawn_with(|c| c.admin.login_attempts_per_minute = 5).await;
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let base = t.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = Admin {
                client: client_from(Some("127.0.0.7".parse().unwrap())),
                ..Admin::anonymous(&base)
            };
            a.try_login("a wrong guess").await.status
        }));
    }
    let mut checked = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            s => panic!("{s}"),
        }
    }
    assert_eq!(checked, 5, "60 at once from one address: 5 password checks");
}

#[tokio::test]
async fn a_new_password_ends_every_open_session() {
    let dir = tempfile::tempdir().unwrap();
    let hash_file = dir.path().join("admin.hash");
    gatehouse::admin::password::store(&hash_file, common::admin::password_hash()).unwrap();
    let t = TestApp::spawn_with(|c| {
        c.admin.password_hash = None;
        c.admin.password_hash_file = Some(hash_file.clone());
    })
    .await;
    let admin = Admin::login(&t.base).await;
    assert_eq!(admin.get("/admin/").await.status, StatusCode::OK);
    // `gatehouse admin set-password` writes a new hash beside it.
    let (status, out) = common::binary::run_with_input(
        &[
            "admin",
            "set-password",
            "--output",
            hash_file.to_str().unwrap(),
        ],
        None,
        Some("a brand new password\n"),
    );
    assert!(status.success(), "{out}");
    let p = admin.get("/admin/").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "the old session ended");
    assert!(p.location().starts_with("/admin/login"), "{}", p.location());
    let mut again = Admin::anonymous(&t.base);
    assert_eq!(
        again.try_login("a brand new password").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn odd_next_targets_and_unknown_admin_paths_are_answered_safely() {
    let t = TestApp::spawn().await;
    // A login whose `next` carries control characters or leaves the UI
    // lands on the overview.
    for next in [
        "/admin/\r\nSet-Cookie: x=1",
        "/admin/\u{7f}",
        "/admin/%0d%0a",
        "//evil.example/admin/",
        "/admin/\u{e9}",
    ] {
        let mut a = Admin::anonymous(&t.base);
        let p = a.try_login_to(PASSWORD, next).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{next:?}");
        let to = p.location();
        assert!(
            to == "/admin/"
                || (to.starts_with("/admin/") && to.bytes().all(|b| b.is_ascii_graphic())),
            "{next:?} → {to:?}"
        );
        assert!(!to.contains("evil"), "{to}");
    }
    // Every answer under /admin carries the CSP and frame headers, 404s and
    // 405s included.
    let anon = Admin::anonymous(&t.base);
    for (method, path, status) in [
        ("GET", "/admin/no-such-page", 404),
        ("DELETE", "/admin/login", 405),
        ("PUT", "/admin/static/admin.css", 405),
        ("GET", "/admin/static/nope.js", 404),
    ] {
        let r = anon
            .client
            .request(method.parse().unwrap(), format!("{}{path}", t.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let h = r.headers();
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{method} {path}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{method} {path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_offers_to_drop_the_jobs_of_a_removed_route() {
    let t = TestApp::spawn_with(|c| {
        // Nothing listens on port 9: the jobs stay pending.
        c.routes = vec![route("gone", "http://127.0.0.1:9/hook")];
    })
    .await;
    for i in 0..3 {
        let d = Delivery::json("push", &format!("gone-{i}"), push_for("octo-org", i));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let mut config = t.app_config();
    let dir = t.stop().await;
    config.routes.clear();
    let t = TestApp::start_in(dir, config).await;
    let admin = Admin::login(&t.base).await;
    let page = admin.get("/admin/").await;
    assert!(
        page.body.contains("not configured") && page.body.contains("Drop its jobs"),
        "{}",
        page.body
    );
    let p = admin.post("/admin/routes/drop", &[("sink", "gone")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(t.census().await.jobs(Some("gone"), None), 0);
    assert!(!admin.get("/admin/").await.body.contains("Drop its jobs"));
}

#[tokio::test]
async fn deliveries_open_by_guid_and_unknown_ones_get_a_page() {
    let (t, c) = with_dead_letters(1).await;
    let admin = Admin::login(&t.base).await;
    let id = t.store().ids_of_guid("guid-0").await.unwrap()[0];
    let p = admin.get("/admin/deliveries/guid-0").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), format!("/admin/deliveries/{id}"));
    for path in [
        "/admin/deliveries/no-such-guid",
        "/admin/deliveries/99999",
        "/admin/deliveries/x%20y/body",
    ] {
        let p = admin.get(path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            p.body.contains("<html") && p.body.contains("no delivery"),
            "{path}: {}",
            p.body
        );
        assert!(p.headers.contains_key("content-security-policy"));
    }
    // GET / goes to the admin UI.
    let r = admin
        .client
        .get(format!("{}/", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/");
    // The delivery page says where each attempt went and what came back.
    let page = admin.get(&format!("/admin/deliveries/{id}")).await;
    assert!(
        page.body.contains(&c.url),
        "the consumer URL: {}",
        page.body
    );
    assert!(page.body.contains("response headers"), "{}", page.body);
    assert!(page.body.contains("content-length"), "{}", page.body);
}

#[tokio::test]
async fn refused_webhooks_show_on_the_overview_by_reason_without_their_signature() {
    let t = TestApp::spawn().await;
    let admin = Admin::login(&t.base).await;
    let before = admin.get("/admin/").await;
    assert!(
        before
            .body
            .contains("every webhook request in the last hour was accepted")
    );
    // A wrong secret on GitHub's side, from one address, three times.
    let from = client_from(Some("127.0.0.7".parse().unwrap()));
    let wrong = Delivery::json("issues", "wrong-secret", push_for("acme", 1)).signed_with("not-it");
    let signature = wrong.signature.clone().unwrap();
    for _ in 0..3 {
        assert_eq!(wrong.send(&from, &t.base).await.unwrap().status(), 401);
    }
    // A request without GitHub's delivery header.
    let mut headless = Delivery::json("push", "x", push_for("acme", 2));
    headless.guid = None;
    assert_eq!(
        headless.send(&t.client, &t.base).await.unwrap().status(),
        400
    );
    // An accepted one does not count.
    let ok = Delivery::json("push", "fine", push_for("acme", 3));
    assert_eq!(t.send(&ok).await.status(), 202);

    let page = admin.get("/admin/").await;
    assert!(
        page.body
            .contains("Refused webhooks, last hour <small>4</small>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("bad signature: 3"), "{}", page.body);
    assert!(
        page.body.contains("missing GitHub header: 1"),
        "{}",
        page.body
    );
    assert!(page.body.contains("127.0.0.7"), "the source address");
    assert!(
        page.body.contains("<td class=\"wrap\">issues</td>"),
        "the event header"
    );
    assert!(
        page.body.contains("secret set on GitHub"),
        "the hint for 401s"
    );
    assert!(!page.body.contains(&signature), "never the signature");
    assert!(!page.body.contains("acme"), "never the body");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_partitions_page_says_what_each_partition_waits_for() {
    // Every answer takes a while, so "sending" can be seen; all fail.
    let c = consumer::start(Duration::from_millis(1500), consumer::always(500)).await;
    let t = TestApp::spawn_with(|cfg| {
        let mut r = route("ci", &c.url);
        r.max_attempts = 2;
        cfg.routes = vec![r];
    })
    .await;
    for guid in ["head", "behind"] {
        let d = Delivery::json("push", guid, push_for("acme", 1));
        assert_eq!(t.send(&d).await.status(), 202);
    }
    let admin = Admin::login(&t.base).await;
    wait_until("a request out", Duration::from_secs(10), || {
        *c.max_total_in_flight.lock().unwrap() == 1
    })
    .await;
    let page = admin.get("/admin/partitions?sink=ci").await;
    assert!(
        page.body.contains("sending #1 (attempt 1 of 2)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("#1, attempt 1 of 2"), "{}", page.body);
    // Held while the attempt is out: it ends, and nothing runs after it.
    let form = [("sink", "ci"), ("partition", "acme"), ("action", "pause")];
    assert_eq!(
        admin.post("/admin/partitions/hold", &form).await.status,
        StatusCode::SEE_OTHER
    );
    let store = t.store();
    eventually(
        "the attempt recorded",
        Duration::from_secs(10),
        async || !shown(&store, "head").await.jobs[0].history.is_empty(),
    )
    .await;
    let page = admin.get("/admin/partitions?sink=ci").await;
    assert!(page.body.contains("paused by an operator"), "{}", page.body);
    assert!(
        !page.body.contains("sending #"),
        "not sending once answered"
    );
    assert!(page.body.contains("#1, attempt 2 of 2"), "{}", page.body);
    assert!(
        page.body.contains("failed · 500"),
        "the last answer: {}",
        page.body
    );
    assert!(page.body.contains("when resumed"), "{}", page.body);
    assert!(
        page.body.contains("2 attempts, doubling from 1 s, over 1s"),
        "the route's retry schedule: {}",
        page.body
    );
    // The job behind the head waits for it, and says so.
    let id = store.ids_of_guid("behind").await.unwrap()[0];
    let behind = admin.get(&format!("/admin/deliveries/{id}")).await;
    assert!(
        behind.body.contains("waiting behind job #1"),
        "{}",
        behind.body
    );
    assert!(
        behind.body.contains("0 of 2 attempt(s) counted"),
        "{}",
        behind.body
    );
    // Resumed, the head dies, and (on_dead = "hold") the partition waits
    // behind it: "behind" is not sent.
    let form = [("sink", "ci"), ("partition", "acme"), ("action", "resume")];
    admin.post("/admin/partitions/hold", &form).await;
    wait_census(&store, "the head dead", Duration::from_secs(40), |c| {
        c.jobs(None, Some("dead")) == 1
    })
    .await;
    let page = admin.get("/admin/partitions?sink=ci").await;
    assert!(
        page.body
            .contains("waiting behind dead letter #1 (1 behind it)"),
        "{}",
        page.body
    );
    let head = store.ids_of_guid("head").await.unwrap()[0];
    let dead = admin.get(&format!("/admin/deliveries/{head}")).await;
    assert!(
        dead.body.contains("Its partition waits behind it"),
        "{}",
        dead.body
    );
    let overview = admin.get("/admin/").await;
    assert!(
        overview
            .body
            .contains("1 partition(s) of route ci wait behind a dead letter"),
        "{}",
        overview.body
    );
    let m = t.metrics().await;
    assert_eq!(
        common::metric(&m, "gatehouse_partitions_held_by_dead_letter{sink=\"ci\"}"),
        Some(1.0)
    );
    assert_eq!(shown(&store, "behind").await.jobs[0].history.len(), 0);
    // Skipped from its page: it stays dead, marked; "behind" goes (and
    // dies too); the partition counts its dead letters.
    let p = admin
        .post(&format!("/admin/deliveries/{head}/skip"), &[("sink", "ci")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    wait_census(&store, "both dead", Duration::from_secs(40), |c| {
        c.jobs(None, Some("dead")) == 2
    })
    .await;
    let job = shown(&store, "head").await.jobs.remove(0);
    assert!(
        job.skipped
            .is_some_and(|(_, by)| by.starts_with("admin:session "))
    );
    let page = admin.get("/admin/partitions?sink=ci").await;
    assert!(
        page.body
            .contains("state=dead&amp;route=ci&amp;partition=acme\">2</a>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("waiting behind dead letter #2"),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_charts_forwarding_lag_and_dead_letters() {
    let (t, _c) = with_dead_letters(3).await;
    let admin = Admin::login(&t.base).await;
    // A sample (the server takes one a minute) writes the attempts counted
    // since the last, and each sink's lag and dead letters.
    t.app.sample_now().await.unwrap();
    let page = admin.get("/admin/").await;
    assert!(
        page.body.contains("Forward attempts per minute"),
        "{}",
        page.body
    );
    assert!(page.body.contains("</i>failed: 3</span>"), "{}", page.body);
    assert!(page.body.contains("</i>done: 0</span>"), "{}", page.body);
    assert!(page.body.contains("Dead letters by sink"), "{}", page.body);
    assert!(page.body.contains("</i>ci: 3</span>"), "{}", page.body);
    assert!(
        page.body.contains("<polyline class=\"s0\""),
        "{}",
        page.body
    );
    let now = gatehouse::clock::now_ms();
    let overview = t
        .store()
        .overview(gatehouse::store::views::OverviewQuery {
            now_ms: now,
            from_minute: 0,
            from_hour: 0,
            paused_limit: 0,
            cache_from_minute: now / 60_000,
            samples_from_minute: 0,
            with_recovery: false,
        })
        .await
        .unwrap();
    let samples: Vec<_> = overview
        .sink_samples
        .iter()
        .filter(|(_, sink, _, dead)| sink == "ci" && *dead == 3)
        .collect();
    assert_eq!(samples.len(), 1, "{:?}", overview.sink_samples);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_outlives_a_restart_and_a_logout_ends_it() {
    let t = TestApp::spawn().await;
    let config = common::test_config(t.dir.path());
    let admin = Admin::login(&t.base).await;
    assert_eq!(admin.get("/admin/").await.status, StatusCode::OK);
    let dir = t.stop().await;
    // The session is in the store: the restarted server knows it.
    let t = TestApp::start_in(dir, config).await;
    let again = Admin {
        base: t.base.clone(),
        ..admin
    };
    let page = again.get("/admin/").await;
    assert_eq!(page.status, StatusCode::OK, "still logged in");
    let out = again.post("/admin/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = again.get("/admin/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "logged out");
    assert!(after.location().starts_with("/admin/login"));
}

#[tokio::test]
async fn the_github_page_shows_who_spends_what_and_the_incidents_avoided() {
    let mut hub_config = fakehub::Config::default()
        .org("octo-org", &["widgets"])
        .app(101, &common::hub::key("app-a.pub.pem"), &[(11, "octo-org")]);
    hub_config.fixtures = Some(common::fixtures());
    let hub = fakehub::FakeHub::start(hub_config).await.unwrap();
    let t = TestApp::spawn_with(|cfg| {
        cfg.github = common::hub::github_config(&hub, &[(101, "app-a.pem")], &[]);
        cfg.gateway = Some(gatehouse::config::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // One credential "would have had" 3 units an hour.
            single_credential_limit: 3,
            ..Default::default()
        });
    })
    .await;
    let gw = format!("http://{}", t.app.gateway_addr().unwrap());
    let token = common::add_client(&t.db_path, "ci", &[], &["octo-org"]);
    // One miss and four 304s: 1 unit spent, 4 saved, 5 asked for.
    for _ in 0..5 {
        let r =
            common::gateway_get(&t.client, format!("{gw}/repos/octo-org/widgets"), &token).await;
        assert_eq!(r.status(), 200);
    }
    let admin = Admin::login(&t.base).await;
    eventually(
        "usage on the GitHub page",
        Duration::from_secs(20),
        async || {
            let p = admin.get("/admin/github").await;
            p.body.contains("ci  GET /repos/{owner}/{repo}")
        },
    )
    .await;
    let page = admin.get("/admin/github").await;
    let owners = &page.body[page.body.find("id=\"owners\"").unwrap()..];
    let row = &owners[owners
        .find("<td>octo-org</td>")
        .expect("octo-org has a row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("1 min"),
        "5 units asked for in a minute, 3 allowed: {row}"
    );
    assert!(row.contains("3/h"), "{row}");
    assert!(
        row.contains("of 5,000"),
        "the owner's remaining budget: {row}"
    );
    assert!(row.contains("lasts until its reset"), "{row}");
    let spenders = &page.body[page.body.find("id=\"spenders\"").unwrap()..];
    assert!(spenders.contains("<title>ci</title>"), "a line for ci");
    let creds = &page.body[page.body.find("id=\"by-credential\"").unwrap()..];
    assert!(creds.contains("app:101/installation:11"), "by credential");
    let m = t.metrics().await;
    let cred = "{credential=\"app:101/installation:11\"}";
    assert_eq!(
        common::metric(
            &m,
            &format!("gatehouse_gateway_credential_units_spent_total{cred}")
        ),
        Some(1.0)
    );
    assert_eq!(
        common::metric(
            &m,
            &format!("gatehouse_gateway_credential_units_saved_total{cred}")
        ),
        Some(4.0),
        "four 304s"
    );
}
