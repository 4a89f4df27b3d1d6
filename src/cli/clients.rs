//! `gatehouse clients add|rotate|revoke|list|usage` and `gatehouse
//! reload`: the API gateway's clients.

use std::path::Path;

use super::CliError;
use super::{print_json, safe};
use crate::gateway::clients::{self, Actor, Origin, Settings};
use crate::gateway::registry;
use crate::gateway::report::{self, By};
use crate::store::Store;

/// The CLI's actor in the audit log: the login behind sudo, else the user.
pub(crate) fn actor() -> Actor {
    let who = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    Actor {
        origin: Origin::Cli,
        who,
    }
}

fn graphql_note(scopes: &[String]) {
    for s in scopes {
        if clients::Scope::parse(s).is_ok_and(|s| s.posts_graphql()) {
            eprintln!(
                "note: --scope {s:?} allows GraphQL mutations too; 'QUERY /graphql' allows reads only"
            );
        }
    }
}

/// Creates a client and prints its token (once: only a hash is kept).
pub async fn add(store: &Store, settings: &Settings) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let token = clients::add(store, settings, &actor(), now).await?;
    graphql_note(&settings.scopes);
    eprintln!(
        "client {} created; its token (shown only this once):",
        safe(&settings.name)
    );
    println!("{token}");
    Ok(())
}

/// A new token and the clients file entry that admits it; nothing is
/// stored: the entry takes effect when the file is applied.
pub fn print_entry(settings: &Settings) -> Result<(), CliError> {
    let token = clients::new_token();
    let entry = registry::entry(settings, &token)?;
    graphql_note(&settings.scopes);
    eprintln!(
        "token for client {} (shown only this once; give it to the client, not to the file):",
        safe(&settings.name)
    );
    println!("{token}");
    eprintln!("\nentry for the clients file (it holds the token's SHA-256 only):");
    println!("\n{entry}");
    Ok(())
}

/// A new token for a client; the old one is refused from now on.
pub async fn rotate(store: &Store, name: &str) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let token = clients::rotate(store, name, &actor(), now).await?;
    eprintln!(
        "client {}: new token (shown only this once; the old one no longer works):",
        safe(name)
    );
    println!("{token}");
    Ok(())
}

/// Refuses a client's token from now on.
pub async fn revoke(store: &Store, name: &str) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    clients::revoke(store, name, &actor(), now).await?;
    println!("client {} revoked", safe(name));
    Ok(())
}

/// Applies the clients file, checked whole first; prints what changed.
pub async fn reload(store: &Store, file: Option<&Path>) -> Result<(), CliError> {
    let Some(file) = file.filter(|f| !f.as_os_str().is_empty()) else {
        println!("no [gateway] clients_file is configured: nothing to apply");
        return Ok(());
    };
    let applied = registry::apply(store, file, crate::clock::now_ms()).await?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!(
        "clients file {} applied: added {}; changed {}; revoked {}; {} unchanged",
        file.display(),
        list(&applied.added),
        list(&applied.changed),
        list(&applied.revoked),
        applied.unchanged
    );
    Ok(())
}

/// Units spent and saved, and refusals by rule, since `since`, summed by
/// client, route, credential or owner.
pub async fn usage(store: &Store, since: &str, by: By, json: bool) -> Result<(), CliError> {
    let now = crate::clock::now_ms();
    let since_ms = crate::clock::parse_since(since, now)?;
    let lines = store.usage_lines(since_ms / 60_000).await?;
    let rows = report::breakdown(&lines, by);
    if json {
        print_json(&rows);
        return Ok(());
    }
    let head = match by {
        By::Client => "client",
        By::Route => "client  route",
        By::Credential => "credential",
        By::Owner => "owner",
    };
    let width = rows
        .iter()
        .map(|r| r.key.chars().count())
        .chain([head.len()])
        .max()
        .unwrap_or(0);
    println!(
        "{head:<width$}  {:>8}  {:>7}  {:>7}  refused",
        "requests", "spent", "saved"
    );
    for r in &rows {
        let refused: Vec<String> = r.refused.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "{:<width$}  {:>8}  {:>7}  {:>7}  {}",
            safe(&r.key),
            r.requests,
            r.units_spent,
            r.units_saved,
            if refused.is_empty() {
                "-".to_string()
            } else {
                refused.join(", ")
            }
        );
    }
    if rows.is_empty() {
        println!("(no gateway requests since {since})");
    } else {
        println!("(rate-limit units since {since}; saved = answered by the cache or a 304)");
    }
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
        "{:<20}  {:<8}  {:<6}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  scopes / owners",
        "client",
        "state",
        "from",
        "requests",
        "hits",
        "revalidated",
        "misses",
        "bypass",
        "spent",
        "saved"
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
            "{:<20}  {:<8}  {:<6}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  {} / {}",
            r.name,
            if r.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            r.origin.as_str(),
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
