//! App authentication and installation tokens, as GitHub checks them.

mod common;

use common::*;
use fakehub::auth;
use serde_json::{Value, json};

async fn message(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["documentation_url"], "https://docs.github.com/rest");
    v["message"].as_str().unwrap().to_string()
}

// "Generating a JSON Web Token (JWT) for a GitHub App": iat 60 s in the
// past against clock drift, exp no more than 10 minutes into the future.
#[tokio::test]
async fn jwt_built_like_githubs_example_is_accepted() {
    let hub = start(world()).await;
    let r = get(&hub, "/app", Some(&format!("Bearer {}", jwt()))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], APP);
    assert!(v["owner"].is_object(), "a real App body from the fixtures");
}

#[tokio::test]
async fn jwt_expiring_more_than_10_minutes_ahead_is_refused() {
    let hub = start(world()).await;
    let token = jwt_at(now() - 60, now() + 660);
    let r = get(&hub, "/app", Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, auth::JWT_EXP_TOO_FAR);
}

#[tokio::test]
async fn expired_jwt_is_refused() {
    let hub = start(world()).await;
    let r = get(
        &hub,
        "/app",
        Some(&format!("Bearer {}", jwt_at(now() - 700, now() - 1))),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, auth::JWT_EXP_INVALID);
}

#[tokio::test]
async fn jwt_issued_in_the_future_is_refused() {
    let hub = start(world()).await;
    let r = get(
        &hub,
        "/app",
        Some(&format!("Bearer {}", jwt_at(now() + 30, now() + 300))),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, auth::JWT_IAT_INVALID);
}

#[tokio::test]
async fn jwt_signed_with_another_key_is_refused() {
    let hub = start(world()).await;
    let forged = auth::sign_app_jwt(APP, &key("app-b.pem"), now() - 60, now() + 500);
    let r = get(&hub, "/app", Some(&format!("Bearer {forged}"))).await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, auth::JWT_UNDECODABLE);
    // The same claims under the right key pass, and a PKCS#1 key signs alike.
    let pkcs1 = auth::sign_app_jwt(APP, &key("app-a.pkcs1.pem"), now() - 60, now() + 500);
    assert_eq!(
        get(&hub, "/app", Some(&format!("Bearer {pkcs1}")))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn app_endpoints_need_a_jwt_and_tokens_need_to_exist() {
    let hub = start(world()).await;
    let r = get(&hub, "/app", Some(&format!("token {PAT}"))).await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, auth::JWT_UNDECODABLE);
    let r = get(&hub, "/repos/octo-org/widgets", Some("token ghp_nope")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(message(r).await, "Bad credentials");
}

// "Get an organization installation for the authenticated app" and its
// user and repository twins.
#[tokio::test]
async fn installations_are_found_by_org_user_and_repository() {
    let hub = start(world()).await;
    let a = format!("Bearer {}", jwt());
    for (path, want) in [
        ("/orgs/octo-org/installation", Some(ORG_INST)),
        ("/users/octo-user/installation", Some(USER_INST)),
        ("/repos/octo-org/widgets/installation", Some(ORG_INST)),
        ("/repos/octo-user/dotfiles/installation", Some(USER_INST)),
        ("/users/octo-org/installation", None),
        ("/orgs/nobody/installation", None),
    ] {
        let r = get(&hub, path, Some(&a)).await;
        match want {
            Some(id) => {
                assert_eq!(r.status(), 200, "{path}");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["id"], id, "{path}");
                assert_eq!(v["app_id"], APP);
            }
            None => assert_eq!(r.status(), 404, "{path}"),
        }
    }
    let r = get(&hub, "/app/installations", Some(&a)).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    // GHES paths work the same.
    assert_eq!(
        get(&hub, "/api/v3/app/installations", Some(&a))
            .await
            .status(),
        200
    );
}

// "Create an installation access token for an app": valid one hour.
#[tokio::test]
async fn installation_tokens_last_an_hour_and_see_only_their_repositories() {
    let hub = start(world()).await;
    let r = installation_token(&hub, ORG_INST, Value::Null).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_") && token.len() == 40, "{token}");
    let expires = fakehub::world::parse_iso(v["expires_at"].as_str().unwrap()).unwrap();
    assert!((expires - now() - 3600).abs() <= 2);
    assert_eq!(v["permissions"]["issues"], "write");
    let t = format!("token {token}");
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets", Some(&t))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&hub, "/repos/octo-org/secret", Some(&t)).await.status(),
        200
    );
    assert_eq!(
        get(&hub, "/repos/octo-user/dotfiles", Some(&t))
            .await
            .status(),
        404
    );
    let r = get(&hub, "/installation/repositories", Some(&t)).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_count"], 3);
}

#[tokio::test]
async fn tokens_can_be_narrowed_but_not_widened() {
    let hub = start(world()).await;
    let r = installation_token(
        &hub,
        ORG_INST,
        json!({"repositories": ["widgets"], "permissions": {"issues": "read"}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repository_selection"], "selected");
    assert_eq!(v["repositories"].as_array().unwrap().len(), 1);
    let t = format!("token {}", v["token"].as_str().unwrap());
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets", Some(&t))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&hub, "/repos/octo-org/gadgets", Some(&t))
            .await
            .status(),
        404
    );
    // Read-only issues: commenting is refused.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/repos/octo-org/widgets/issues/4/comments",
            hub.url()
        ))
        .header("authorization", &t)
        .json(&json!({"body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(message(r).await, "Resource not accessible by integration");
    let r = installation_token(&hub, ORG_INST, json!({"repositories": ["dotfiles"]})).await;
    assert_eq!(r.status(), 422);
    let r = installation_token(
        &hub,
        ORG_INST,
        json!({"permissions": {"administration": "write"}}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = installation_token(&hub, 999, Value::Null).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn anonymous_reads_public_repositories_only() {
    let hub = start(world()).await;
    assert_eq!(
        get(&hub, "/repos/octo-org/widgets", None).await.status(),
        200
    );
    assert_eq!(
        get(&hub, "/repos/octo-org/secret", None).await.status(),
        404
    );
    let r = get(&hub, "/repos/octo-org/widgets", None).await;
    assert_eq!(header(&r, "x-ratelimit-limit"), "60");
}
