//! Who may pay for a request: credentials by what may be shown of them,
//! and which of them a caller's reach allows.

use std::fmt;

use crate::config::{Purpose, Secret};
use crate::github::budget::{Budget, Resource};

/// A credential, by what may be shown (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredId {
    /// The App itself, with its JWT: for the App's own endpoints
    /// (`/app/hook/deliveries`, say), not for any owner's data.
    App(i64),
    Installation {
        app: i64,
        installation: i64,
    },
    Token(String),
}

impl fmt::Display for CredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredId::App(app) => write!(f, "app:{app}"),
            CredId::Installation { app, installation } => {
                write!(f, "app:{app}/installation:{installation}")
            }
            CredId::Token(name) => write!(f, "token:{name}"),
        }
    }
}

/// Text that is no credential id.
#[derive(Debug, thiserror::Error)]
#[error("not a credential id: {0:?}")]
pub struct NotACredential(pub String);

impl std::str::FromStr for CredId {
    type Err = NotACredential;
    /// The inverse of `Display`, for ids stored by the gateway's cache.
    fn from_str(s: &str) -> Result<CredId, NotACredential> {
        if let Some(name) = s.strip_prefix("token:") {
            return Ok(CredId::Token(name.to_string()));
        }
        let parsed =
            s.strip_prefix("app:")
                .and_then(|rest| match rest.split_once("/installation:") {
                    Some((app, inst)) => Some(CredId::Installation {
                        app: app.parse().ok()?,
                        installation: inst.parse().ok()?,
                    }),
                    None => Some(CredId::App(rest.parse().ok()?)),
                });
        parsed.ok_or_else(|| NotACredential(s.to_string()))
    }
}

/// Which credentials may serve a request. A caller limited to some owners
/// (a gateway client added with `--owner`) must never be answered by a
/// credential that can read beyond them, whatever the path asks: GraphQL,
/// `/search`, `/repositories/{id}` or a redirect can reach any repository
/// the credential can. An App installation reaches only its account; a
/// token only when the operator declares it `confined` to its `owners`.
#[derive(Debug, Clone, Copy)]
pub enum Reach<'a> {
    /// Any credential that can act for the owner.
    Any,
    /// Only credentials whose reach lies within these owners (lowercase).
    Within(&'a [String]),
}

impl Reach<'_> {
    /// Whether an installation on `owner` (lowercase) may serve: it
    /// reaches only the account it is installed on.
    pub fn allows_installation_on(&self, owner: &str) -> bool {
        match self {
            Reach::Any => true,
            Reach::Within(allowed) => allowed.iter().any(|a| a == owner),
        }
    }
}

/// What the pool knows of one credential right now.
#[derive(Debug, Clone)]
pub struct CredStatus {
    pub id: CredId,
    pub budgets: Vec<(Resource, Budget)>,
    pub paused: bool,
}

/// A configured personal access token.
pub(super) struct TokenEntry {
    pub name: String,
    /// Replaced by a reload (rotation).
    pub secret: std::sync::RwLock<Secret>,
    /// Lowercase; empty: any owner.
    pub owners: Vec<String>,
    /// The operator says this token reaches nothing beyond `owners` (a
    /// fine-grained token whose resource owner is that organisation).
    pub confined: bool,
    /// What it may be spent on.
    pub purposes: Vec<Purpose>,
}

impl TokenEntry {
    /// The token as configured now.
    pub fn secret(&self) -> Secret {
        self.secret.read().expect("token lock").clone()
    }

    /// Whether it may be spent on `purpose` (None: asked for none).
    pub fn for_purpose(&self, purpose: Option<Purpose>) -> bool {
        purpose.is_none_or(|p| self.purposes.contains(&p))
    }

    /// Whether this token may serve `owner` (lowercase) for a caller of
    /// this reach.
    pub fn serves(&self, owner: &str, reach: Reach<'_>) -> bool {
        let routed = self.owners.is_empty() || self.owners.iter().any(|o| o == owner);
        match reach {
            Reach::Any => routed,
            Reach::Within(allowed) => {
                self.confined
                    && !self.owners.is_empty()
                    && self.owners.iter().any(|o| o == owner)
                    && self.owners.iter().all(|o| allowed.contains(o))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_what_they_print_and_refuse_the_rest() {
        for id in [
            CredId::App(7),
            CredId::Installation {
                app: 7,
                installation: 99,
            },
            CredId::Token("ci:bot".into()),
        ] {
            assert_eq!(id.to_string().parse::<CredId>().unwrap(), id);
        }
        for bad in [
            "",
            "app:",
            "app:x",
            "app:1/installation:",
            "installation:3",
            "tok:x",
        ] {
            assert!(bad.parse::<CredId>().is_err(), "{bad:?}");
        }
    }

    fn token(owners: &[&str], confined: bool) -> TokenEntry {
        TokenEntry {
            name: "t".into(),
            secret: std::sync::RwLock::new(Secret::new("x")),
            owners: owners.iter().map(|o| o.to_string()).collect(),
            confined,
            purposes: Purpose::ALL.to_vec(),
        }
    }

    #[test]
    fn a_token_serves_a_confined_caller_only_when_declared_confined_within_its_owners() {
        let within = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let acme = within(&["acme"]);
        let both = within(&["acme", "globex"]);
        // Any caller: routed by owners (none: any owner).
        assert!(token(&[], false).serves("acme", Reach::Any));
        assert!(token(&["acme"], false).serves("acme", Reach::Any));
        assert!(!token(&["globex"], false).serves("acme", Reach::Any));
        // A caller limited to acme.
        assert!(
            !token(&[], true).serves("acme", Reach::Within(&acme)),
            "reaches anything"
        );
        assert!(
            !token(&["acme"], false).serves("acme", Reach::Within(&acme)),
            "not declared"
        );
        assert!(token(&["acme"], true).serves("acme", Reach::Within(&acme)));
        assert!(
            !token(&["acme", "globex"], true).serves("acme", Reach::Within(&acme)),
            "reaches globex too"
        );
        assert!(token(&["acme", "globex"], true).serves("globex", Reach::Within(&both)));
        assert!(!token(&["acme"], true).serves("globex", Reach::Within(&both)));
    }

    #[test]
    fn an_installation_serves_a_confined_caller_only_on_an_allowed_account() {
        let allowed = vec!["acme".to_string()];
        assert!(Reach::Any.allows_installation_on("globex"));
        assert!(Reach::Within(&allowed).allows_installation_on("acme"));
        assert!(!Reach::Within(&allowed).allows_installation_on("globex"));
    }
}
