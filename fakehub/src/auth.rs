//! Who is calling: an App (RS256 JWT), an installation token, a personal
//! access token, or nobody. JWTs are checked the way GitHub checks them,
//! against fakehub's own clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::world::World;

/// GitHub limits a JWT's lifetime: `exp` may be at most 10 minutes past
/// GitHub's clock ("Generating a JSON Web Token (JWT) for a GitHub App").
pub const MAX_JWT_AHEAD_SECS: i64 = 600;
/// Installation access tokens expire after one hour ("Generating an
/// installation access token for a GitHub App").
pub const INSTALLATION_TOKEN_SECS: i64 = 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    App {
        app_id: i64,
    },
    Installation {
        installation_id: i64,
        token: String,
    },
    Pat {
        token: String,
        name: String,
        login: String,
    },
}

impl Credential {
    /// Whose budget a request spends. GitHub counts an installation's
    /// tokens against the installation and a PAT against its user.
    pub fn rate_key(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".into(),
            Credential::App { app_id } => format!("app:{app_id}"),
            Credential::Installation {
                installation_id, ..
            } => format!("installation:{installation_id}"),
            Credential::Pat { login, .. } => format!("user:{login}"),
        }
    }

    /// The per-token label used in stats (PATs by their configured name).
    pub fn token_label(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".into(),
            Credential::App { app_id } => format!("app:{app_id}"),
            Credential::Installation { token, .. } => token.clone(),
            Credential::Pat { name, .. } => format!("pat:{name}"),
        }
    }

    pub fn installation_id(&self) -> Option<i64> {
        match self {
            Credential::Installation {
                installation_id, ..
            } => Some(*installation_id),
            _ => None,
        }
    }

    /// The rate-limit message GitHub gives when this budget is spent.
    pub fn exhausted_message(&self, world: &World) -> String {
        match self {
            Credential::Installation {
                installation_id, ..
            } => format!("API rate limit exceeded for installation ID {installation_id}."),
            Credential::Pat { login, .. } => {
                let id = world
                    .accounts
                    .get(&crate::world::key(login))
                    .map(|a| a.id)
                    .unwrap_or(0);
                format!("API rate limit exceeded for user ID {id}.")
            }
            Credential::App { app_id } => format!("API rate limit exceeded for app ID {app_id}."),
            Credential::Anonymous => "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)".into(),
        }
    }
}

/// Why authentication failed; each is a 401 with GitHub's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Bad credentials")]
    BadCredentials,
    #[error("{0}")]
    Jwt(&'static str),
}

pub const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
pub const JWT_EXP_INVALID: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
pub const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
pub const JWT_IAT_INVALID: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
pub const JWT_ISS_INVALID: &str = "'Issuer' claim ('iss') must be an Integer";
pub const JWT_APP_UNKNOWN: &str = "Integration not found";

pub fn authenticate(world: &World, headers: &HeaderMap, now: i64) -> Result<Credential, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(Credential::Anonymous);
    };
    let value = value.to_str().map_err(|_| AuthError::BadCredentials)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::BadCredentials)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("token") && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::BadCredentials);
    }
    if token.matches('.').count() == 2 {
        return verify_jwt(world, token, now).map(|app_id| Credential::App { app_id });
    }
    if let Some(t) = world.installation_tokens.get(token) {
        if t.expires_at <= now {
            return Err(AuthError::BadCredentials);
        }
        return Ok(Credential::Installation {
            installation_id: t.installation_id,
            token: token.to_string(),
        });
    }
    if let Some(p) = world.pats.get(token) {
        return Ok(Credential::Pat {
            token: token.to_string(),
            name: p.name.clone(),
            login: p.login.clone(),
        });
    }
    Err(AuthError::BadCredentials)
}

/// Returns the App id of a valid JWT.
fn verify_jwt(world: &World, token: &str, now: i64) -> Result<i64, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Jwt(JWT_UNDECODABLE))?;
    if header.alg != Algorithm::RS256 {
        return Err(AuthError::Jwt(JWT_UNDECODABLE));
    }
    // The issuer says which App's key to check the signature with.
    let payload = token.split('.').nth(1).unwrap_or("");
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Jwt(JWT_UNDECODABLE))?;
    let app_id = match &claims["iss"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or(AuthError::Jwt(JWT_ISS_INVALID))?;
    let app = world
        .apps
        .get(&app_id)
        .ok_or(AuthError::Jwt(JWT_APP_UNKNOWN))?;
    let mut validation = Validation::new(Algorithm::RS256);
    // Times are checked below on fakehub's clock, with GitHub's rules.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    std::iter::once(&app.key)
        .chain(&app.more_keys)
        .find_map(|key| jsonwebtoken::decode::<Value>(token, key, &validation).ok())
        .ok_or(AuthError::Jwt(JWT_UNDECODABLE))?;
    let iat = claims["iat"]
        .as_i64()
        .ok_or(AuthError::Jwt(JWT_IAT_INVALID))?;
    if iat > now {
        return Err(AuthError::Jwt(JWT_IAT_INVALID));
    }
    let exp = claims["exp"]
        .as_i64()
        .ok_or(AuthError::Jwt(JWT_EXP_INVALID))?;
    if exp <= now {
        return Err(AuthError::Jwt(JWT_EXP_INVALID));
    }
    if exp > now + MAX_JWT_AHEAD_SECS {
        return Err(AuthError::Jwt(JWT_EXP_TOO_FAR));
    }
    Ok(app_id)
}

/// A new installation token: `ghs_` and 36 random characters, as GitHub's.
pub fn new_installation_token() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    let chars: String = (0..36)
        .map(|_| {
            let i = rng.random_range(0..62u8);
            (match i {
                0..=9 => b'0' + i,
                10..=35 => b'a' + i - 10,
                _ => b'A' + i - 36,
            }) as char
        })
        .collect();
    format!("ghs_{chars}")
}

/// Signs a GitHub App JWT; for tests and the demo (gatehouse has its own).
pub fn sign_app_jwt(app_id: i64, private_key_pem: &str, iat: i64, exp: i64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
        .expect("a valid RSA private key");
    let claims = serde_json::json!({"iat": iat, "exp": exp, "iss": app_id.to_string()});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims, &key)
        .expect("signing cannot fail with a valid key")
}
