//! `POST /graphql`: a small, real subset of GitHub's schema (`viewer`,
//! `repository` with `pullRequest`/`issue`/connections, `rateLimit`, and
//! introspection of those types: `__typename`, `__type`, `__schema`),
//! answered from the same world as REST. Points are charged per query;
//! validation errors and the exhausted limit come back as GitHub shapes
//! them (HTTP 200 with `errors`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use graphql_parser::query::{
    Definition, Document, Field, OperationDefinition, Selection, SelectionSet, Value as GqlValue,
};
use serde_json::{Map, Value, json};

use super::Cred;
use super::introspection;
use super::respond::ApiError;
use crate::auth::Credential;
use crate::hub::Hub;
use crate::limits::{Bucket, Resource};
use crate::world::{Repo, World, iso, key, now_secs};

const MAX_FIRST: i64 = 100;

enum Node<'a> {
    Query,
    User(Value),
    Repo(&'a Repo),
    Pull(&'a Value),
    Issue(&'a crate::world::Issue),
    Comment(&'a Value),
    Branch(String),
    RateLimit,
    Conn(Vec<Node<'a>>, usize),
    /// Introspection: the schema, a type (by reference: `Int!`,
    /// `[Issue]`, `Repository`), a field of one, an enum's value.
    Schema,
    Type(String),
    FieldDef(&'static str, &'static str),
    EnumValue(&'static str),
}

impl Node<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Query => "Query",
            Node::User(_) => "User",
            Node::Repo(_) => "Repository",
            Node::Pull(_) => "PullRequest",
            Node::Issue(_) => "Issue",
            Node::Comment(_) => "IssueComment",
            Node::Branch(_) => "Ref",
            Node::RateLimit => "RateLimit",
            Node::Conn(..) => "Connection",
            Node::Schema => "__Schema",
            Node::Type(_) => "__Type",
            Node::FieldDef(..) => "__Field",
            Node::EnumValue(_) => "__EnumValue",
        }
    }
}

struct Ctx<'a> {
    world: &'a World,
    cred: &'a Credential,
    vars: &'a Map<String, Value>,
    bucket: Bucket,
    /// Points this query costs (`rateLimit.cost`).
    cost: u64,
    errors: Vec<Value>,
    /// Errors that mean the query is invalid (nothing runs, nothing is charged).
    invalid: bool,
    fragments: Vec<&'a graphql_parser::query::FragmentDefinition<'a, String>>,
}

fn gql_to_json(v: &GqlValue<'_, String>, vars: &Map<String, Value>) -> Value {
    match v {
        GqlValue::Variable(n) => vars.get(n).cloned().unwrap_or(Value::Null),
        GqlValue::Int(i) => json!(i.as_i64()),
        GqlValue::Float(f) => json!(f),
        GqlValue::String(s) => json!(s),
        GqlValue::Boolean(b) => json!(b),
        GqlValue::Null => Value::Null,
        GqlValue::Enum(e) => json!(e),
        GqlValue::List(l) => Value::Array(l.iter().map(|x| gql_to_json(x, vars)).collect()),
        GqlValue::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), gql_to_json(x, vars)))
                .collect(),
        ),
    }
}

fn arg(f: &Field<'_, String>, name: &str, vars: &Map<String, Value>) -> Option<Value> {
    f.arguments
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| gql_to_json(v, vars))
        .filter(|v| !v.is_null())
}

fn loc(f: &Field<'_, String>) -> Value {
    json!([{"line": f.position.line, "column": f.position.column}])
}

impl<'a> Ctx<'a> {
    fn undefined(&mut self, f: &Field<'_, String>, type_name: &str, path: &[Value]) {
        self.invalid = true;
        self.errors.push(json!({
            "path": path,
            "extensions": {"code": "undefinedField", "typeName": type_name, "fieldName": f.name},
            "locations": loc(f),
            "message": format!("Field '{}' doesn't exist on type '{}'", f.name, type_name),
        }));
    }

    fn arg_error(&mut self, f: &Field<'_, String>, message: String, path: &[Value]) {
        self.invalid = true;
        self.errors
            .push(json!({"path": path, "locations": loc(f), "message": message}));
    }

    /// The fields of a selection set, with fragments spread in place.
    fn fields<'s>(&self, set: &'s SelectionSet<'a, String>) -> Vec<&'s Field<'a, String>>
    where
        'a: 's,
    {
        let mut out = Vec::new();
        for item in &set.items {
            match item {
                Selection::Field(f) => out.push(f),
                Selection::InlineFragment(inl) => out.extend(self.fields(&inl.selection_set)),
                Selection::FragmentSpread(sp) => {
                    if let Some(fd) = self.fragments.iter().find(|d| d.name == sp.fragment_name) {
                        out.extend(self.fields(&fd.selection_set));
                    }
                }
            }
        }
        out
    }

    fn object(&mut self, node: &Node<'a>, set: &SelectionSet<'a, String>, path: &[Value]) -> Value {
        let mut out = Map::new();
        for f in self.fields(set) {
            let name = f.alias.clone().unwrap_or_else(|| f.name.clone());
            let mut p = path.to_vec();
            p.push(json!(name));
            let v = self.field(node, f, &p);
            out.insert(name, v);
        }
        Value::Object(out)
    }

    /// A list field: each node answers the field's selection.
    fn list(&mut self, nodes: Vec<Node<'a>>, f: &Field<'a, String>, path: &[Value]) -> Value {
        Value::Array(
            nodes
                .iter()
                .map(|n| self.object(n, &f.selection_set, path))
                .collect(),
        )
    }

    fn sub(&mut self, node: Node<'a>, f: &Field<'a, String>, path: &[Value]) -> Value {
        match node {
            Node::Conn(items, total) => {
                let mut out = Map::new();
                for cf in self.fields(&f.selection_set) {
                    let name = cf.alias.clone().unwrap_or_else(|| cf.name.clone());
                    let mut p = path.to_vec();
                    p.push(json!(name));
                    let v = match cf.name.as_str() {
                        "totalCount" => json!(total),
                        "nodes" => Value::Array(
                            items
                                .iter()
                                .map(|n| self.object(n, &cf.selection_set, &p))
                                .collect(),
                        ),
                        "pageInfo" => {
                            json!({"hasNextPage": items.len() < total, "hasPreviousPage": false, "endCursor": null, "startCursor": null})
                        }
                        _ => {
                            self.undefined(cf, "Connection", &p);
                            Value::Null
                        }
                    };
                    out.insert(name, v);
                }
                Value::Object(out)
            }
            other => self.object(&other, &f.selection_set, path),
        }
    }

    fn connection<T>(
        &mut self,
        f: &Field<'a, String>,
        path: &[Value],
        all: Vec<T>,
        wrap: impl Fn(T) -> Node<'a>,
    ) -> Value {
        let Some(first) = arg(f, "first", self.vars).or_else(|| arg(f, "last", self.vars)) else {
            self.arg_error(
                f,
                format!("You must provide a `first` or `last` value to properly paginate the `{}` connection.", f.name),
                path,
            );
            return Value::Null;
        };
        let n = first.as_i64().unwrap_or(0);
        if !(0..=MAX_FIRST).contains(&n) {
            self.arg_error(
                f,
                format!("Requesting {n} records on the `{}` connection exceeds the `first` limit of 100 records.", f.name),
                path,
            );
            return Value::Null;
        }
        let total = all.len();
        let items = all.into_iter().take(n as usize).map(wrap).collect();
        self.sub(Node::Conn(items, total), f, path)
    }

    fn field(&mut self, node: &Node<'a>, f: &Field<'a, String>, path: &[Value]) -> Value {
        let name = f.name.as_str();
        if name == "__typename" {
            return json!(node.type_name());
        }
        let world = self.world;
        match node {
            Node::Query => match name {
                "viewer" => {
                    let login = match self.cred {
                        Credential::Pat { login, .. } => login.clone(),
                        _ => "fakehub-app[bot]".to_string(),
                    };
                    let user = world
                        .accounts
                        .get(&key(&login))
                        .map(|a| a.json.clone())
                        .unwrap_or_else(
                            || json!({"login": login, "id": 0, "node_id": "", "html_url": ""}),
                        );
                    self.sub(Node::User(user), f, path)
                }
                "repository" => {
                    let owner =
                        arg(f, "owner", self.vars).and_then(|v| v.as_str().map(String::from));
                    let rname =
                        arg(f, "name", self.vars).and_then(|v| v.as_str().map(String::from));
                    let (Some(owner), Some(rname)) = (owner, rname) else {
                        self.arg_error(
                            f,
                            "Field 'repository' is missing required arguments: owner, name".into(),
                            path,
                        );
                        return Value::Null;
                    };
                    let repo = world
                        .repos
                        .get(&key(&format!("{owner}/{rname}")))
                        .filter(|r| super::repos::can_see(world, self.cred, r));
                    match repo {
                        Some(r) => self.sub(Node::Repo(r), f, path),
                        None => {
                            self.errors.push(json!({
                                "type": "NOT_FOUND",
                                "path": path,
                                "locations": loc(f),
                                "message": format!("Could not resolve to a Repository with the name '{owner}/{rname}'."),
                            }));
                            Value::Null
                        }
                    }
                }
                "rateLimit" => self.sub(Node::RateLimit, f, path),
                "__schema" => self.sub(Node::Schema, f, path),
                "__type" => {
                    let name = arg(f, "name", self.vars)
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    match introspection::named(&name) {
                        Some(_) => self.sub(Node::Type(name), f, path),
                        None => Value::Null,
                    }
                }
                _ => {
                    self.undefined(f, "Query", path);
                    Value::Null
                }
            },
            Node::Schema => match name {
                "queryType" => self.sub(Node::Type("Query".into()), f, path),
                "types" => {
                    let all = introspection::TYPES
                        .iter()
                        .map(|(n, _, _)| Node::Type(n.to_string()))
                        .collect();
                    self.list(all, f, path)
                }
                "directives" => json!([]),
                "mutationType" | "subscriptionType" | "description" => Value::Null,
                _ => {
                    self.undefined(f, "__Schema", path);
                    Value::Null
                }
            },
            Node::Type(r) => {
                use introspection::Ref;
                let (kind, named, of) = match introspection::parse(r) {
                    Ref::NonNull(inner) => ("NON_NULL", None, Some(inner.to_string())),
                    Ref::List(inner) => ("LIST", None, Some(inner.to_string())),
                    Ref::Named(n) => (
                        introspection::named(n).map_or("SCALAR", |t| t.0),
                        Some(n.to_string()),
                        None,
                    ),
                };
                let object = kind == "OBJECT";
                match name {
                    "kind" => json!(kind),
                    "name" => json!(named),
                    "ofType" => match of {
                        Some(inner) => self.sub(Node::Type(inner), f, path),
                        None => Value::Null,
                    },
                    "fields" if object => {
                        let fields = named
                            .as_deref()
                            .and_then(introspection::named)
                            .map(|t| t.1)
                            .unwrap_or_default()
                            .iter()
                            .map(|(n, t)| Node::FieldDef(n, t))
                            .collect();
                        self.list(fields, f, path)
                    }
                    "enumValues" if kind == "ENUM" => {
                        let values = introspection::enum_values(named.as_deref().unwrap_or(""))
                            .iter()
                            .map(|v| Node::EnumValue(v))
                            .collect();
                        self.list(values, f, path)
                    }
                    "interfaces" if object => json!([]),
                    "fields" | "enumValues" | "interfaces" | "possibleTypes" | "inputFields"
                    | "description" | "specifiedByURL" => Value::Null,
                    _ => {
                        self.undefined(f, "__Type", path);
                        Value::Null
                    }
                }
            }
            Node::FieldDef(field, ty) => match name {
                "name" => json!(field),
                "type" => self.sub(Node::Type(ty.to_string()), f, path),
                "args" => json!([]),
                "isDeprecated" => json!(false),
                "description" | "deprecationReason" => Value::Null,
                _ => {
                    self.undefined(f, "__Field", path);
                    Value::Null
                }
            },
            Node::EnumValue(v) => match name {
                "name" => json!(v),
                "isDeprecated" => json!(false),
                "description" | "deprecationReason" => Value::Null,
                _ => {
                    self.undefined(f, "__EnumValue", path);
                    Value::Null
                }
            },
            Node::RateLimit => match name {
                "limit" => json!(self.bucket.limit),
                "cost" => json!(self.cost),
                "remaining" => json!(self.bucket.remaining()),
                "used" => json!(self.bucket.used),
                "resetAt" => json!(iso(self.bucket.reset)),
                "nodeCount" => json!(0),
                _ => {
                    self.undefined(f, "RateLimit", path);
                    Value::Null
                }
            },
            Node::User(u) => match name {
                "login" => u["login"].clone(),
                "name" => u.get("name").cloned().unwrap_or(Value::Null),
                "id" => u["node_id"].clone(),
                "databaseId" => u["id"].clone(),
                "url" => u["html_url"].clone(),
                _ => {
                    self.undefined(f, "User", path);
                    Value::Null
                }
            },
            Node::Repo(r) => {
                let j = &r.json;
                match name {
                    "name" => json!(r.name),
                    "nameWithOwner" => json!(r.full_name()),
                    "description" => j["description"].clone(),
                    "url" => j["html_url"].clone(),
                    "isPrivate" => json!(r.private),
                    "stargazerCount" => j["stargazers_count"].clone(),
                    "forkCount" => j["forks_count"].clone(),
                    "createdAt" => j["created_at"].clone(),
                    "updatedAt" => json!(iso(r.updated)),
                    "id" => j["node_id"].clone(),
                    "databaseId" => json!(r.id),
                    "owner" => self.sub(Node::User(j["owner"].clone()), f, path),
                    "defaultBranchRef" => {
                        let b = j["default_branch"].as_str().unwrap_or("main").to_string();
                        self.sub(Node::Branch(b), f, path)
                    }
                    "pullRequest" | "issue" => {
                        let n = arg(f, "number", self.vars).and_then(|v| v.as_u64());
                        let Some(n) = n else {
                            self.arg_error(
                                f,
                                format!("Field '{name}' is missing required arguments: number"),
                                path,
                            );
                            return Value::Null;
                        };
                        let found = if name == "pullRequest" {
                            r.pulls.get(&n).map(|p| Node::Pull(&p.json))
                        } else {
                            r.issues.get(&n).map(Node::Issue)
                        };
                        match found {
                            Some(node) => self.sub(node, f, path),
                            None => {
                                let what = if name == "pullRequest" {
                                    "PullRequest"
                                } else {
                                    "Issue"
                                };
                                self.errors.push(json!({
                                    "type": "NOT_FOUND", "path": path, "locations": loc(f),
                                    "message": format!("Could not resolve to a {what} with the number of {n}."),
                                }));
                                Value::Null
                            }
                        }
                    }
                    "pullRequests" => {
                        let states: Vec<String> = arg(f, "states", self.vars)
                            .and_then(|v| v.as_array().cloned())
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
                            .collect();
                        let all: Vec<&Value> = r
                            .pulls
                            .values()
                            .map(|p| &p.json)
                            .filter(|p| {
                                states.is_empty() || states.iter().any(|s| p["state"] == s.as_str())
                            })
                            .collect();
                        self.connection(f, path, all, Node::Pull)
                    }
                    "issues" => {
                        let all: Vec<&crate::world::Issue> = r.issues.values().collect();
                        self.connection(f, path, all, Node::Issue)
                    }
                    _ => {
                        self.undefined(f, "Repository", path);
                        Value::Null
                    }
                }
            }
            Node::Pull(p) => match name {
                "number" => p["number"].clone(),
                "title" => p["title"].clone(),
                "body" => p["body"].clone(),
                "state" => {
                    let s = if p["merged"] == true {
                        "MERGED"
                    } else if p["state"] == "closed" {
                        "CLOSED"
                    } else {
                        "OPEN"
                    };
                    json!(s)
                }
                "url" => p["html_url"].clone(),
                "createdAt" => p["created_at"].clone(),
                "updatedAt" => p["updated_at"].clone(),
                "headRefName" => p["head"]["ref"].clone(),
                "baseRefName" => p["base"]["ref"].clone(),
                "headRefOid" => p["head"]["sha"].clone(),
                "merged" => p["merged"].clone(),
                "isDraft" => p["draft"].clone(),
                "additions" => p["additions"].clone(),
                "deletions" => p["deletions"].clone(),
                "changedFiles" => p["changed_files"].clone(),
                "id" => p["node_id"].clone(),
                "databaseId" => p["id"].clone(),
                "author" => self.sub(Node::User(p["user"].clone()), f, path),
                _ => {
                    self.undefined(f, "PullRequest", path);
                    Value::Null
                }
            },
            Node::Issue(i) => {
                let j = &i.json;
                match name {
                    "number" => j["number"].clone(),
                    "title" => j["title"].clone(),
                    "body" => j["body"].clone(),
                    "state" => json!(j["state"].as_str().unwrap_or("open").to_ascii_uppercase()),
                    "url" => j["html_url"].clone(),
                    "createdAt" => j["created_at"].clone(),
                    "updatedAt" => j["updated_at"].clone(),
                    "id" => j["node_id"].clone(),
                    "databaseId" => j["id"].clone(),
                    "author" => self.sub(Node::User(j["user"].clone()), f, path),
                    "comments" => {
                        let all: Vec<&Value> = i.comments.iter().collect();
                        self.connection(f, path, all, Node::Comment)
                    }
                    _ => {
                        self.undefined(f, "Issue", path);
                        Value::Null
                    }
                }
            }
            Node::Comment(c) => match name {
                "body" => c["body"].clone(),
                "createdAt" => c["created_at"].clone(),
                "url" => c["html_url"].clone(),
                "id" => c["node_id"].clone(),
                "databaseId" => c["id"].clone(),
                "author" => self.sub(Node::User(c["user"].clone()), f, path),
                _ => {
                    self.undefined(f, "IssueComment", path);
                    Value::Null
                }
            },
            Node::Branch(b) => match name {
                "name" => json!(b),
                "prefix" => json!("refs/heads/"),
                _ => {
                    self.undefined(f, "Ref", path);
                    Value::Null
                }
            },
            Node::Conn(..) => Value::Null,
        }
    }
}

fn errors_only(errors: Vec<Value>) -> Response {
    Json(json!({ "errors": errors })).into_response()
}

pub async fn handle(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    body: Option<Json<Value>>,
) -> Response {
    match cred {
        Credential::Anonymous => {
            return ApiError {
                status: http::StatusCode::UNAUTHORIZED,
                message: "This endpoint requires you to be authenticated.".into(),
                docs: "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
            }
            .into_response();
        }
        Credential::App { .. } => return ApiError::not_accessible().into_response(),
        _ => {}
    }
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        return errors_only(vec![
            json!({"message": "A query attribute must be specified and must be a string."}),
        ]);
    };
    let vars = body
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let doc: Document<'_, String> = match graphql_parser::parse_query::<String>(query) {
        Ok(d) => d,
        Err(e) => {
            return errors_only(vec![
                json!({"message": format!("Parse error: {}", e.to_string().trim())}),
            ]);
        }
    };
    let wanted = body.get("operationName").and_then(Value::as_str);
    let mut fragments = Vec::new();
    let mut operation = None;
    for d in &doc.definitions {
        match d {
            Definition::Fragment(fd) => fragments.push(fd),
            Definition::Operation(op) => {
                let (name, set, is_query) = match op {
                    OperationDefinition::SelectionSet(s) => (None, s, true),
                    OperationDefinition::Query(q) => (q.name.as_deref(), &q.selection_set, true),
                    OperationDefinition::Mutation(m) => {
                        (m.name.as_deref(), &m.selection_set, false)
                    }
                    OperationDefinition::Subscription(s) => {
                        (s.name.as_deref(), &s.selection_set, false)
                    }
                };
                if wanted.is_none() || wanted == name {
                    operation.get_or_insert((set, is_query));
                }
            }
        }
    }
    let Some((set, is_query)) = operation else {
        return errors_only(vec![json!({"message": "No operations in query document"})]);
    };
    if !is_query {
        return errors_only(vec![
            json!({"message": "fakehub answers queries only; mutations and subscriptions are not part of its schema", "extensions": {"code": "undefinedField"}}),
        ]);
    }
    let now = now_secs();
    let world = hub.world();
    let mut ctx = Ctx {
        world: &world,
        cred: &cred,
        vars: &vars,
        bucket: hub.limits.bucket(&cred, Resource::Graphql, now),
        cost: 1,
        errors: Vec::new(),
        invalid: false,
        fragments,
    };
    // First pass validates; an invalid query costs nothing.
    ctx.object(&Node::Query, set, &[json!("query")]);
    if ctx.invalid {
        return errors_only(ctx.errors);
    }
    let cost = hub.limits.graphql_points();
    ctx.cost = cost;
    match hub.limits.try_spend(&cred, Resource::Graphql, cost, now) {
        Err(_) => {
            let message = cred.exhausted_message(&world);
            errors_only(vec![json!({"type": "RATE_LIMITED", "message": message})])
        }
        Ok(bucket) => {
            ctx.bucket = bucket;
            ctx.errors.clear();
            let data = ctx.object(&Node::Query, set, &[]);
            let mut out = json!({ "data": data });
            if !ctx.errors.is_empty() {
                out["errors"] = Value::Array(ctx.errors);
            }
            Json(out).into_response()
        }
    }
}
