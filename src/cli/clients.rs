//! `gatehouse clients add|list|revoke`: the API gateway's clients.

use super::CliError;
use super::{print_json, safe};
use crate::gateway::clients;
use crate::store::Store;

/// Creates a client and prints its token (once: only a hash is kept).
pub async fn add(
    store: &Store,
    name: &str,
    scopes: &[String],
    owners: &[String],
    limits: &clients::Limits,
) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let token = clients::add(store, name, scopes, owners, limits, now).await?;
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
pub async fn revoke(store: &Store, name: &str) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    clients::revoke(store, name, now).await?;
    println!("client {} revoked", safe(name));
    Ok(())
}

/// Every client with its last hour's requests and rate-limit units.
pub async fn list(store: &Store, json: bool) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let rows = clients::list(store, now).await?;
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
