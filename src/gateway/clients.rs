//! Gateway clients: who may call the gateway, with which token, for which
//! requests and owners. Tokens are shown once and stored as SHA-256 only
//! (invariant 8); the table is the journal's `clients`.

use http::Method;
use regex::Regex;

use sha2::{Digest, Sha256};

use super::graphql::Operation;
use super::refusal::Refusal;
pub use crate::store::clients::{Actor, ClientSpec, Limits, Origin, Priority};
use crate::store::{Store, StoreError};

/// Prefix of every client token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "gth_";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error("a client named {0:?} already exists (revoke it first to replace it)")]
    Exists(String),
    #[error("no active client named {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One `--scope 'METHOD PATH_REGEX'` rule. The regex must match the whole
/// path (without `/api/v3` and without the query); `*` matches any method,
/// and a GET rule also allows HEAD. `QUERY` and `MUTATION` are GraphQL
/// operations (`QUERY /graphql` is read-only GraphQL); `POST /graphql`
/// allows both.
#[derive(Debug, Clone)]
pub struct Scope {
    verb: Verb,
    path: Regex,
    text: String,
}

#[derive(Debug, Clone)]
enum Verb {
    Any,
    Http(Method),
    Graphql(Operation),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, ClientError> {
        let bad = |why: String| ClientError::Invalid(format!("scope {text:?}: {why}"));
        let (method, path) = text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("use 'METHOD PATH_REGEX', e.g. 'GET ^/repos/acme/.*'".into()))?;
        let verb = match method.to_ascii_uppercase().as_str() {
            "*" => Verb::Any,
            "QUERY" => Verb::Graphql(Operation::Query),
            "MUTATION" => Verb::Graphql(Operation::Mutation),
            m => Verb::Http(
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| bad(format!("{method:?} is not an HTTP method")))?,
            ),
        };
        let path = path.trim();
        let anchored = format!(
            "^(?:{})$",
            path.trim_start_matches('^').trim_end_matches('$')
        );
        let path = Regex::new(&anchored).map_err(|e| bad(e.to_string()))?;
        Ok(Scope {
            verb,
            path,
            text: text.trim().to_string(),
        })
    }

    /// Whether this rule admits a REST request.
    fn allows(&self, method: &Method, path: &str) -> bool {
        let method_ok = match &self.verb {
            Verb::Any => true,
            Verb::Http(m) => m == method || (m == Method::GET && method == Method::HEAD),
            Verb::Graphql(_) => false,
        };
        method_ok && self.path.is_match(path)
    }

    /// Whether this rule admits a GraphQL operation (sent as a POST).
    fn allows_graphql(&self, op: Operation, path: &str) -> bool {
        let verb_ok = match &self.verb {
            Verb::Any => true,
            Verb::Http(m) => m == Method::POST,
            Verb::Graphql(o) => *o == op,
        };
        verb_ok && self.path.is_match(path)
    }

    /// A rule that allows GraphQL mutations through `POST /graphql`; worth
    /// a word when a client is added, since the rule reads like a read.
    pub fn posts_graphql(&self) -> bool {
        matches!(&self.verb, Verb::Http(m) if m == Method::POST) && self.path.is_match("/graphql")
    }
}

/// An active client, as the gateway sees it on each request.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Lowercase; empty = any owner.
    pub owners: Vec<String>,
    pub limits: Limits,
}

impl Client {
    /// Whether the scopes allow this request; the refusal names the rules.
    pub fn check_scope(&self, method: &Method, path: &str) -> Result<(), Refusal> {
        if self.scopes.is_empty() || self.scopes.iter().any(|s| s.allows(method, path)) {
            return Ok(());
        }
        Err(self.refusal(method.as_str(), path))
    }

    /// Whether the scopes allow this GraphQL operation.
    pub fn check_graphql(&self, op: Operation, path: &str) -> Result<(), Refusal> {
        if self.scopes.is_empty() || self.scopes.iter().any(|s| s.allows_graphql(op, path)) {
            return Ok(());
        }
        Err(self.refusal(&format!("run a GraphQL {}", op.as_str()), path))
    }

    fn refusal(&self, what: &str, path: &str) -> Refusal {
        let rules: Vec<&str> = self.scopes.iter().map(|s| s.text.as_str()).collect();
        Refusal::Scope {
            client: self.name.clone(),
            what: what.to_string(),
            path: path.to_string(),
            scopes: rules.join("; "),
        }
    }

    /// Whether the client may act for `owner`.
    pub fn check_owner(&self, owner: &str) -> Result<(), Refusal> {
        if self.owners.is_empty() || self.owners.iter().any(|o| o.eq_ignore_ascii_case(owner)) {
            return Ok(());
        }
        Err(Refusal::Owner {
            client: self.name.clone(),
            owners: self.owners.join(", "),
            owner: owner.to_string(),
        })
    }
}

pub use crate::store::clients::{ClientRow, Usage};

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: 160 random bits after [`TOKEN_PREFIX`].
pub fn new_token() -> String {
    let mut bytes = [0u8; 20];
    rand::fill(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn check_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(ClientError::Invalid(format!(
            "client name {name:?}: use up to 64 letters, digits, '.', '-' and '_'"
        )));
    }
    Ok(())
}

/// What a client may do, as the CLI, the admin UI and the clients file
/// give it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub limits: Limits,
}

/// Checks settings the same way whoever gives them; owners come back
/// lowercase, ready to store under `token_hash`.
pub fn spec(settings: &Settings, token_hash: String) -> Result<ClientSpec, ClientError> {
    check_name(&settings.name)?;
    if settings.limits.weight == 0 {
        return Err(ClientError::Invalid("weight must be at least 1".into()));
    }
    if settings.limits.quota_per_hour == Some(0) {
        return Err(ClientError::Invalid(
            "a quota must be at least 1 unit per hour".into(),
        ));
    }
    for s in &settings.scopes {
        Scope::parse(s)?;
    }
    let owners: Vec<String> = settings
        .owners
        .iter()
        .map(|o| o.trim().to_lowercase())
        .collect();
    if let Some(o) = owners
        .iter()
        .find(|o| o.is_empty() || o.contains('/') || o.contains(char::is_whitespace))
    {
        return Err(ClientError::Invalid(format!(
            "owner {o:?}: give an organisation or user login"
        )));
    }
    Ok(ClientSpec {
        name: settings.name.clone(),
        token_hash,
        scopes: settings.scopes.clone(),
        owners,
        limits: settings.limits.clone(),
    })
}

fn named(e: StoreError, name: &str) -> ClientError {
    match e {
        StoreError::NotFound(_) => ClientError::Unknown(name.to_string()),
        StoreError::Invalid(why) => ClientError::Invalid(why),
        e => e.into(),
    }
}

/// Creates a client and returns its token, which is not stored and cannot
/// be shown again. A revoked client's name may be reused.
pub async fn add(
    store: &Store,
    settings: &Settings,
    by: &Actor,
    now_ms: i64,
) -> Result<String, ClientError> {
    let token = new_token();
    let spec = spec(settings, hash_token(&token))?;
    match store.add_client(&spec, by, now_ms).await {
        Ok(()) => Ok(token),
        Err(StoreError::Invalid(_)) => Err(ClientError::Exists(settings.name.clone())),
        Err(e) => Err(e.into()),
    }
}

/// Gives a client a new token (returned, shown once); the old one is
/// refused from the next request.
pub async fn rotate(
    store: &Store,
    name: &str,
    by: &Actor,
    now_ms: i64,
) -> Result<String, ClientError> {
    let token = new_token();
    store
        .rotate_client(name, &hash_token(&token), by, now_ms)
        .await
        .map_err(|e| named(e, name))?;
    Ok(token)
}

pub async fn revoke(store: &Store, name: &str, by: &Actor, now_ms: i64) -> Result<(), ClientError> {
    store
        .revoke_client(name, by, now_ms)
        .await
        .map_err(|e| named(e, name))
}

/// The active client holding this token, by the token's hash. A stored
/// scope that no longer parses is an error, not a client with fewer rules.
pub async fn lookup(store: &Store, token_hash: &str) -> Result<Option<Client>, ClientError> {
    let Some(c) = store.client_by_token(token_hash).await? else {
        return Ok(None);
    };
    let scopes = c
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()?;
    Ok(Some(Client {
        name: c.name,
        scopes,
        owners: c.owners,
        limits: c.limits,
    }))
}

/// `--quota 100/h`: rate-limit units per hour (`/h` may be left out).
pub fn parse_quota(text: &str) -> Result<u64, ClientError> {
    let t = text.trim();
    let units = t.strip_suffix("/h").unwrap_or(t).trim();
    units.parse::<u64>().ok().filter(|u| *u > 0).ok_or_else(|| {
        ClientError::Invalid(format!(
            "quota {text:?}: give rate-limit units per hour, such as 500/h"
        ))
    })
}

/// Every client, newest first, with its usage over the hour before `now_ms`.
pub async fn list(store: &Store, now_ms: i64) -> Result<Vec<ClientRow>, ClientError> {
    Ok(store.clients(now_ms).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(scopes: &[&str], owners: &[&str]) -> Client {
        Client {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
            owners: owners.iter().map(|s| s.to_string()).collect(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn scopes_match_whole_paths_and_name_the_rules() {
        let c = client(&["GET /repos/acme/.*", "post ^/graphql$"], &[]);
        assert!(c.check_scope(&Method::GET, "/repos/acme/w/pulls").is_ok());
        assert!(c.check_scope(&Method::HEAD, "/repos/acme/w").is_ok());
        assert!(c.check_scope(&Method::POST, "/graphql").is_ok());
        // Anchored: a prefix elsewhere in the path does not match.
        let e = c
            .check_scope(&Method::GET, "/x/repos/acme/w")
            .unwrap_err()
            .to_string();
        assert!(e.contains("GET /repos/acme/.*"), "{e}");
        let e = c
            .check_scope(&Method::POST, "/repos/acme/w/issues/1/comments")
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not POST"), "{e}");
        assert!(client(&[], &[]).check_scope(&Method::DELETE, "/x").is_ok());
        assert!(
            client(&["* /user"], &[])
                .check_scope(&Method::PATCH, "/user")
                .is_ok()
        );
    }

    #[test]
    fn graphql_scopes_tell_queries_from_mutations() {
        let ro = client(&["QUERY /graphql"], &[]);
        assert!(ro.check_graphql(Operation::Query, "/graphql").is_ok());
        let e = ro
            .check_graphql(Operation::Mutation, "/graphql")
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not run a GraphQL MUTATION"), "{e}");
        assert!(
            ro.check_scope(&Method::POST, "/graphql").is_err(),
            "an operation scope is not an HTTP method"
        );
        let rw = client(&["POST /graphql"], &[]);
        assert!(rw.check_graphql(Operation::Mutation, "/graphql").is_ok());
        assert!(Scope::parse("POST /graphql").unwrap().posts_graphql());
        assert!(!Scope::parse("QUERY /graphql").unwrap().posts_graphql());
        let w = client(&["mutation /graphql"], &[]);
        assert!(w.check_graphql(Operation::Query, "/graphql").is_err());
        assert!(w.check_graphql(Operation::Mutation, "/graphql").is_ok());
        assert!(
            client(&["GET /.*"], &[])
                .check_graphql(Operation::Query, "/graphql")
                .is_err()
        );
    }

    #[test]
    fn bad_scopes_are_refused() {
        for bad in ["GET", "FETCH( /x", "GET /repos/(", ""] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn owners_are_case_insensitive() {
        let c = client(&[], &["acme"]);
        assert!(c.check_owner("ACME").is_ok());
        let e = c.check_owner("evil").unwrap_err().to_string();
        assert!(e.contains("only for acme") && e.contains("\"evil\""), "{e}");
    }
}
