//! GitHub App authentication: the RS256 JWT that buys installation tokens
//! ("Generating a JSON Web Token (JWT) for a GitHub App").

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Issued this long in the past, against clock drift between us and GitHub.
const IAT_BACKDATE_SECS: i64 = 60;
/// GitHub refuses `exp` more than 10 minutes after its own clock; stay
/// well under so a fast clock here still passes.
const LIFETIME_SECS: i64 = 540;

pub struct AppAuth {
    pub id: i64,
    key: EncodingKey,
}

impl AppAuth {
    /// `pem`: an RSA private key, PKCS#1 or PKCS#8.
    pub fn new(id: i64, pem: &[u8]) -> Result<AppAuth, jsonwebtoken::errors::Error> {
        Ok(AppAuth {
            id,
            key: EncodingKey::from_rsa_pem(pem)?,
        })
    }

    /// A JWT for now. GitHub judges `iat` and `exp` by its clock, so they
    /// follow the system's, never a clock a test turns.
    pub fn jwt(&self) -> String {
        self.jwt_at(crate::clock::now_ms() / 1000)
    }

    pub fn jwt_at(&self, now_secs: i64) -> String {
        let claims = serde_json::json!({
            "iat": now_secs - IAT_BACKDATE_SECS,
            "exp": now_secs + LIFETIME_SECS,
            "iss": self.id.to_string(),
        });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .expect("signing with a parsed RSA key cannot fail")
    }
}
