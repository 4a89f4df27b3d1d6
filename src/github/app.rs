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
    /// The key and its PEM's SHA-256 (to tell a rotation from the same
    /// key read again); replaced by a reload.
    key: std::sync::RwLock<(EncodingKey, [u8; 32])>,
}

impl AppAuth {
    /// `pem`: an RSA private key, PKCS#1 or PKCS#8.
    pub fn new(id: i64, pem: &[u8]) -> Result<AppAuth, jsonwebtoken::errors::Error> {
        Ok(AppAuth {
            id,
            key: std::sync::RwLock::new(Self::parse(pem)?),
        })
    }

    fn parse(pem: &[u8]) -> Result<(EncodingKey, [u8; 32]), jsonwebtoken::errors::Error> {
        use sha2::Digest;
        Ok((
            EncodingKey::from_rsa_pem(pem)?,
            sha2::Sha256::digest(pem).into(),
        ))
    }

    /// Signs from now on with the key in `pem`; true when it differs from
    /// the key in use. JWTs signed before stay what they are.
    pub fn rotate(&self, pem: &[u8]) -> Result<bool, jsonwebtoken::errors::Error> {
        let new = Self::parse(pem)?;
        let mut key = self.key.write().expect("app key lock");
        if key.1 == new.1 {
            return Ok(false);
        }
        *key = new;
        Ok(true)
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
        let key = self.key.read().expect("app key lock");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.0)
            .expect("signing with a parsed RSA key cannot fail")
    }
}
