//! Gateway clients: who may call the gateway, with which token, for which
//! requests and owners. Tokens are shown once and stored as SHA-256 only
//! (invariant 8); the table is the journal's `clients`.

use http::Method;
use regex::Regex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::graphql::Operation;

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
    Sqlite(#[from] rusqlite::Error),
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
        let bad = |why: String| ClientError::Invalid(format!("--scope {text:?}: {why}"));
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
}

impl Client {
    /// Whether the scopes allow this request; the refusal names the rules.
    pub fn check_scope(&self, method: &Method, path: &str) -> Result<(), String> {
        if self.scopes.is_empty() || self.scopes.iter().any(|s| s.allows(method, path)) {
            return Ok(());
        }
        Err(self.refusal(method.as_str(), path))
    }

    /// Whether the scopes allow this GraphQL operation.
    pub fn check_graphql(&self, op: Operation, path: &str) -> Result<(), String> {
        if self.scopes.is_empty() || self.scopes.iter().any(|s| s.allows_graphql(op, path)) {
            return Ok(());
        }
        Err(self.refusal(&format!("run a GraphQL {}", op.as_str()), path))
    }

    fn refusal(&self, what: &str, path: &str) -> String {
        let rules: Vec<&str> = self.scopes.iter().map(|s| s.text.as_str()).collect();
        format!(
            "gatehouse: client {:?} may not {what} {path}: no scope allows it (scopes: {})",
            self.name,
            rules.join("; ")
        )
    }

    /// Whether the client may act for `owner`.
    pub fn check_owner(&self, owner: &str) -> Result<(), String> {
        if self.owners.is_empty() || self.owners.iter().any(|o| o.eq_ignore_ascii_case(owner)) {
            return Ok(());
        }
        Err(format!(
            "gatehouse: client {:?} may act only for {}; this request is for {owner:?}",
            self.name,
            self.owners.join(", ")
        ))
    }
}

/// What `gatehouse clients list` shows of one client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_hour: Usage,
}

/// Requests and rate-limit units over a window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub requests: i64,
    pub hits: i64,
    pub revalidated: i64,
    pub misses: i64,
    pub bypassed: i64,
    pub units_spent: i64,
    pub units_saved: i64,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
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

/// Creates a client and returns its token, which is not stored and cannot
/// be shown again. A revoked client's name may be reused.
pub fn add(
    conn: &Connection,
    name: &str,
    scopes: &[String],
    owners: &[String],
    now_ms: i64,
) -> Result<String, ClientError> {
    check_name(name)?;
    for s in scopes {
        Scope::parse(s)?;
    }
    let owners: Vec<String> = owners.iter().map(|o| o.trim().to_lowercase()).collect();
    if let Some(o) = owners
        .iter()
        .find(|o| o.is_empty() || o.contains('/') || o.contains(char::is_whitespace))
    {
        return Err(ClientError::Invalid(format!(
            "--owner {o:?}: give an organisation or user login"
        )));
    }
    let token = new_token();
    let scopes_json = serde_json::to_string(scopes).expect("strings serialise");
    let owners_json = serde_json::to_string(&owners).expect("strings serialise");
    // Immediate: the write lock up front, so a server writing meanwhile
    // makes this wait (busy_timeout), not fail when the read turns write.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let active: Option<Option<i64>> = tx
        .query_row(
            "SELECT revoked_at_ms FROM clients WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(None) = active {
        return Err(ClientError::Exists(name.to_string()));
    }
    tx.execute(
        "INSERT OR REPLACE INTO clients (name, token_hash, scopes, owners, created_at_ms, revoked_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
        params![name, hash_token(&token), scopes_json, owners_json, now_ms],
    )?;
    tx.commit()?;
    Ok(token)
}

pub fn revoke(conn: &Connection, name: &str, now_ms: i64) -> Result<(), ClientError> {
    let n = conn.execute(
        "UPDATE clients SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
        params![name, now_ms],
    )?;
    if n == 0 {
        return Err(ClientError::Unknown(name.to_string()));
    }
    Ok(())
}

/// The active client holding this token, by the token's hash.
pub fn lookup(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<Client>> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT name, scopes, owners FROM clients
             WHERE token_hash = ?1 AND revoked_at_ms IS NULL",
        )?
        .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((name, scopes, owners)) = row else {
        return Ok(None);
    };
    let corrupt = |e: String| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    };
    let scopes: Vec<String> = serde_json::from_str(&scopes).map_err(|e| corrupt(e.to_string()))?;
    let scopes = scopes
        .iter()
        .map(|s| Scope::parse(s).map_err(|e| corrupt(e.to_string())))
        .collect::<Result<_, _>>()?;
    let owners = serde_json::from_str(&owners).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(Client {
        name,
        scopes,
        owners,
    }))
}

/// Every client, newest first, with its usage over the hour before `now_ms`.
pub fn list(conn: &Connection, now_ms: i64) -> Result<Vec<ClientRow>, ClientError> {
    let since = now_ms / 60_000 - 60;
    let mut stmt = conn.prepare(
        "SELECT c.name, c.scopes, c.owners, c.created_at_ms, c.revoked_at_ms,
                COALESCE(SUM(u.requests), 0), COALESCE(SUM(u.hits), 0),
                COALESCE(SUM(u.revalidated), 0), COALESCE(SUM(u.misses), 0),
                COALESCE(SUM(u.bypassed), 0), COALESCE(SUM(u.units_spent), 0),
                COALESCE(SUM(u.units_saved), 0)
         FROM clients c LEFT JOIN client_usage u ON u.client = c.name AND u.minute > ?1
         GROUP BY c.name ORDER BY c.created_at_ms DESC, c.name",
    )?;
    let rows = stmt.query_map([since], |r| {
        let scopes: String = r.get(1)?;
        let owners: String = r.get(2)?;
        Ok(ClientRow {
            name: r.get(0)?,
            scopes: serde_json::from_str(&scopes).unwrap_or_default(),
            owners: serde_json::from_str(&owners).unwrap_or_default(),
            created_at_ms: r.get(3)?,
            revoked_at_ms: r.get(4)?,
            last_hour: Usage {
                requests: r.get(5)?,
                hits: r.get(6)?,
                revalidated: r.get(7)?,
                misses: r.get(8)?,
                bypassed: r.get(9)?,
                units_spent: r.get(10)?,
                units_saved: r.get(11)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(scopes: &[&str], owners: &[&str]) -> Client {
        Client {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
            owners: owners.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scopes_match_whole_paths_and_name_the_rules() {
        let c = client(&["GET /repos/acme/.*", "post ^/graphql$"], &[]);
        assert!(c.check_scope(&Method::GET, "/repos/acme/w/pulls").is_ok());
        assert!(c.check_scope(&Method::HEAD, "/repos/acme/w").is_ok());
        assert!(c.check_scope(&Method::POST, "/graphql").is_ok());
        // Anchored: a prefix elsewhere in the path does not match.
        let e = c.check_scope(&Method::GET, "/x/repos/acme/w").unwrap_err();
        assert!(e.contains("GET /repos/acme/.*"), "{e}");
        let e = c
            .check_scope(&Method::POST, "/repos/acme/w/issues/1/comments")
            .unwrap_err();
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
            .unwrap_err();
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
        let e = c.check_owner("evil").unwrap_err();
        assert!(e.contains("only for acme") && e.contains("\"evil\""), "{e}");
    }
}
