//! POST /graphql: real queries from the same data, points, GitHub errors.

mod common;

use common::*;
use serde_json::{Value, json};

async fn gql(hub: &fakehub::FakeHub, auth: Option<&str>, query: &str, vars: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/graphql", hub.url()))
        .json(&json!({"query": query, "variables": vars}));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

const QUERY: &str = r#"
query($owner: String!, $name: String!) {
  viewer { login }
  repository(owner: $owner, name: $name) {
    nameWithOwner
    isPrivate
    pr: pullRequest(number: 2) { number title state headRefOid author { login } }
    pullRequests(first: 2, states: [OPEN]) { totalCount nodes { number } }
  }
  rateLimit { limit cost remaining resetAt }
}"#;

// "Rate limits and query limits for the GraphQL API": points per query,
// reported by rateLimit { cost remaining }.
#[tokio::test]
async fn queries_are_answered_from_the_same_data_and_cost_points() {
    let hub = start(world()).await;
    let t = format!("bearer {PAT}");
    let (status, v) = gql(
        &hub,
        Some(&t),
        QUERY,
        json!({"owner": "octo-org", "name": "widgets"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v.get("errors").is_none(), "{v}");
    let d = &v["data"];
    assert_eq!(d["viewer"]["login"], "fakehub-bot");
    assert_eq!(d["repository"]["nameWithOwner"], "octo-org/widgets");
    assert_eq!(d["repository"]["pr"]["number"], 2);
    let rest: Value = get(&hub, "/repos/octo-org/widgets/pulls/2", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["repository"]["pr"]["title"], rest["title"]);
    assert_eq!(d["repository"]["pr"]["headRefOid"], rest["head"]["sha"]);
    assert_eq!(
        d["repository"]["pullRequests"]["totalCount"], 2,
        "PRs 1 and 2 open, 3 closed"
    );
    assert_eq!(d["rateLimit"]["cost"], 1);
    assert_eq!(d["rateLimit"]["remaining"], 4999);
    let (_, v) = gql(
        &hub,
        Some(&t),
        "{ rateLimit { remaining used } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["rateLimit"]["remaining"], 4998);
    // REST and GraphQL budgets are separate.
    let r = get(&hub, "/rate_limit", Some(&t)).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resources"]["graphql"]["used"], 2);
}

#[tokio::test]
async fn unknown_fields_are_githubs_errors_and_cost_nothing() {
    let hub = start(world()).await;
    let t = format!("bearer {PAT}");
    let (status, v) = gql(
        &hub,
        Some(&t),
        "{ repository(owner: \"octo-org\", name: \"widgets\") { nope } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v.get("data").is_none());
    let e = &v["errors"][0];
    assert_eq!(e["extensions"]["code"], "undefinedField");
    assert_eq!(
        e["message"],
        "Field 'nope' doesn't exist on type 'Repository'"
    );
    let (_, v) = gql(
        &hub,
        Some(&t),
        "{ repository(owner: \"octo-org\", name: \"nothing\") { name } }",
        json!({}),
    )
    .await;
    assert_eq!(v["errors"][0]["type"], "NOT_FOUND");
    assert_eq!(v["data"]["repository"], Value::Null);
    let (_, v) = gql(
        &hub,
        Some(&t),
        "{ repository(owner: \"octo-org\", name: \"widgets\") { issues { totalCount } } }",
        json!({}),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`first` or `last`")
    );
    let (_, v) = gql(&hub, Some(&t), "{ broken", json!({})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Parse error")
    );
    let usage = hub.stats().tokens["pat:ci"].clone();
    assert_eq!(usage.units_spent, 1, "only the NOT_FOUND query ran");
}

#[tokio::test]
async fn graphql_needs_a_token_and_a_budget() {
    let mut c = world();
    c.rate_limit.graphql = 1;
    let hub = start(c).await;
    let (status, _) = gql(&hub, None, "{ viewer { login } }", json!({})).await;
    assert_eq!(status, 401);
    let t = token_for(&hub, ORG_INST).await;
    let (_, v) = gql(&hub, Some(&t), "{ viewer { login } }", json!({})).await;
    assert_eq!(v["data"]["viewer"]["login"], "fakehub-app[bot]");
    let (status, v) = gql(&hub, Some(&t), "{ viewer { login } }", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(v["errors"][0]["type"], "RATE_LIMITED");
    // An installation token cannot see another account's repositories.
    let (_, v) = gql(
        &hub,
        Some(&format!("bearer {PAT}")),
        "{ repository(owner: \"octo-user\", name: \"dotfiles\") { name } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["repository"]["name"], "dotfiles");
}

/// Introspection as clients and code generators ask for it: `__typename`,
/// `__type(name:)` with fields and wrapped types, `__schema`. Every
/// scalar field the schema lists for a repository and a pull request
/// resolves (the table and the resolvers agree).
#[tokio::test]
async fn introspection_describes_the_types_served() {
    let hub = start(world()).await;
    let t = format!("bearer {PAT}");
    let (status, v) = gql(
        &hub,
        Some(&t),
        r#"{
          __schema { queryType { name } types { name kind } }
          pr: __type(name: "PullRequest") {
            name kind
            fields { name type { kind name ofType { kind name } } }
          }
          state: __type(name: "PullRequestState") { kind enumValues { name } }
          nothing: __type(name: "Nope") { name }
        }"#,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v.get("errors").is_none(), "{v}");
    let d = &v["data"];
    assert_eq!(d["__schema"]["queryType"]["name"], "Query");
    let types: Vec<&str> = d["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in ["Repository", "PullRequest", "RateLimit", "String"] {
        assert!(types.contains(&want), "{want} in {types:?}");
    }
    assert_eq!(d["pr"]["kind"], "OBJECT");
    let number = d["pr"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "number")
        .unwrap();
    assert_eq!(
        number["type"],
        json!({"kind": "NON_NULL", "name": null, "ofType": {"kind": "SCALAR", "name": "Int"}})
    );
    assert_eq!(
        d["state"]["enumValues"],
        json!([{"name": "OPEN"}, {"name": "CLOSED"}, {"name": "MERGED"}])
    );
    assert!(d["nothing"].is_null());

    // Every scalar field listed for Repository and PullRequest resolves.
    for (ty, wrap) in [
        (
            "Repository",
            "repository(owner: \"octo-org\", name: \"widgets\") { __typename %s }",
        ),
        (
            "PullRequest",
            "repository(owner: \"octo-org\", name: \"widgets\") { pullRequest(number: 1) { __typename %s } }",
        ),
    ] {
        let (_, v) = gql(
            &hub,
            Some(&t),
            &format!(
                "{{ __type(name: \"{ty}\") {{ fields {{ name type {{ kind name ofType {{ kind name }} }} }} }} }}"
            ),
            json!({}),
        )
        .await;
        let scalars: Vec<String> = v["data"]["__type"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                let t = &f["type"];
                let kind = if t["kind"] == "NON_NULL" {
                    &t["ofType"]["kind"]
                } else {
                    &t["kind"]
                };
                kind == "SCALAR" || kind == "ENUM"
            })
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        let query = format!("{{ {} }}", wrap.replace("%s", &scalars.join(" ")));
        let (_, v) = gql(&hub, Some(&t), &query, json!({})).await;
        assert!(v.get("errors").is_none(), "{ty}: {v}");
    }
}
