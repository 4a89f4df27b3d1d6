//! `gatehouse clients add|list|revoke`: the API gateway's clients.

use super::{print_json, safe};
use crate::control::ControlError;
use crate::gateway::clients::{self, ClientError};

fn err(e: ClientError) -> ControlError {
    ControlError::Invalid(e.to_string())
}

/// Creates a client and prints its token (once: only a hash is kept).
pub fn add(
    conn: &rusqlite::Connection,
    name: &str,
    scopes: &[String],
    owners: &[String],
) -> Result<(), ControlError> {
    let now = crate::clock::now_ms();
    let token = clients::add(conn, name, scopes, owners, now).map_err(err)?;
    for s in scopes {
        if clients::Scope::parse(s).is_ok_and(|s| s.posts_graphql()) {
            eprintln!(
                "note: --scope {s:?} allows GraphQL mutations too; 'QUERY /graphql' allows reads only"
            );
        }
    }
    eprintln!(
        "client {} created; its token (shown only this once):",
        safe(name)
    );
    println!("{token}");
    Ok(())
}

/// Refuses a client's token from now on.
pub fn revoke(conn: &rusqlite::Connection, name: &str) -> Result<(), ControlError> {
    let now = crate::clock::now_ms();
    clients::revoke(conn, name, now).map_err(err)?;
    println!("client {} revoked", safe(name));
    Ok(())
}

/// Every client with its last hour's requests and rate-limit units.
pub fn list(conn: &rusqlite::Connection, json: bool) -> Result<(), ControlError> {
    let now = crate::clock::now_ms();
    let rows = clients::list(conn, now).map_err(err)?;
    if json {
        print_json(&rows);
        return Ok(());
    }
    println!(
        "{:<20}  {:<8}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  scopes / owners",
        "client", "state", "requests", "hits", "revalidated", "misses", "bypass", "spent", "saved"
    );
    for r in rows {
        let u = &r.last_hour;
        let any = |v: &[String]| {
            if v.is_empty() {
                "any".to_string()
            } else {
                v.join("; ")
            }
        };
        println!(
            "{:<20}  {:<8}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  {} / {}",
            r.name,
            if r.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            u.requests,
            u.hits,
            u.revalidated,
            u.misses,
            u.bypassed,
            u.units_spent,
            u.units_saved,
            any(&r.scopes),
            any(&r.owners),
        );
    }
    println!("(usage over the last hour)");
    Ok(())
}
