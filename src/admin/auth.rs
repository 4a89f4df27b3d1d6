//! Who may use the admin UI: the password check (throttled per client
//! address), sessions kept in the store (every replica knows a login; a
//! restart keeps it), and the CSRF token each session's forms carry.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::password;
use crate::clock::Clock;
use crate::config::AdminConfig;
use crate::store::sessions::NewSession;
use crate::store::{Store, StoreError};
use crate::throttle::Throttle;

/// Sessions are few (operators); this bounds memory against a flood of logins.
const MAX_SESSIONS: usize = 1_000;

pub struct Auth {
    /// Read at each login, so `gatehouse admin set-password` takes effect
    /// without a restart.
    config: AdminConfig,
    db_path: PathBuf,
    idle_ms: i64,
    /// Sessions, by the SHA-256 of their cookie token.
    store: Store,
    throttle: Throttle,
    /// Session idling and the login throttle read time here.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no admin password is set")]
    NoPassword,
    /// Too many failures from this address; try again after this long.
    #[error("too many failed logins; wait {0:?}")]
    Throttled(Duration),
    #[error("wrong password")]
    Wrong,
    /// The password was right but the session could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Auth {
    pub fn new(config: AdminConfig, db_path: &Path, store: Store, clock: Arc<dyn Clock>) -> Auth {
        Auth {
            idle_ms: config.session_idle_minutes as i64 * 60_000,
            throttle: {
                let t = Throttle::new(config.login_attempts_per_minute).with_clock(clock.clone());
                // Behind a load balancer, a guesser meets one limit.
                if store.is_shared() {
                    t.shared(store.clone(), "login")
                } else {
                    t
                }
            },
            config,
            db_path: db_path.to_path_buf(),
            store,
            clock,
        }
    }

    /// The password hash now; None (with a warning) when there is none or
    /// it cannot be read.
    fn hash(&self) -> Option<String> {
        match password::load(&self.config, &self.db_path) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "admin password hash unreadable");
                None
            }
        }
    }

    pub fn has_password(&self) -> bool {
        self.hash().is_some()
    }

    /// Checks the password and opens a session; returns its cookie token.
    /// A throttled address is refused before its password is looked at.
    pub async fn login(&self, from: IpAddr, given: String) -> Result<String, LoginError> {
        let Some(hash) = self.hash() else {
            return Err(LoginError::NoPassword);
        };
        // Counted as failed before the check, so 60 concurrent attempts
        // get 5 checks, not 46.
        self.throttle
            .reserve(from)
            .await
            .map_err(LoginError::Throttled)?;
        let checked = hash.clone();
        let ok = tokio::task::spawn_blocking(move || password::verify(&checked, &given))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(LoginError::Wrong);
        }
        self.throttle.forgive(from).await;
        self.open(&hash).await
    }

    async fn open(&self, hash: &str) -> Result<String, LoginError> {
        let token = random_token();
        let now = self.clock.now_ms();
        let session = NewSession {
            token_digest: digest(&token),
            csrf: random_token(),
            password_digest: digest(hash),
            now_ms: now,
        };
        self.store
            .open_session(&session, self.idle_before(now), MAX_SESSIONS)
            .await?;
        Ok(token)
    }

    /// The CSRF token of the live session `token` names, refreshing its
    /// idle timer; None when there is no such session, it idled out, or
    /// the password changed since it began (every session ends then).
    pub async fn session(&self, token: &str) -> Result<Option<String>, StoreError> {
        let key = digest(token);
        let now = self.clock.now_ms();
        let Some(s) = self.store.session(key, now, self.idle_before(now)).await? else {
            return Ok(None);
        };
        if self.hash().map(|h| digest(&h)) != Some(s.password_digest) {
            self.store.end_session(key).await?;
            return Ok(None);
        }
        Ok(Some(s.csrf))
    }

    /// Sessions last seen before this have been idle for the configured
    /// time (or longer) at `now`.
    fn idle_before(&self, now: i64) -> i64 {
        now - self.idle_ms + 1
    }

    pub async fn logout(&self, token: &str) -> Result<(), StoreError> {
        self.store.end_session(digest(token)).await
    }
}

/// Compares two tokens without leaking where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// A real store file in a temp dir, and the clock the Auth reads.
    struct Fixture {
        _dir: tempfile::TempDir,
        db: std::path::PathBuf,
        store: Store,
        clock: Arc<ManualClock>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let store = crate::store::open(
            &crate::store::Location::Sqlite(db.clone()),
            crate::store::metrics::JournalMetrics::unregistered(),
            crate::store::Options::default(),
        )
        .unwrap();
        Fixture {
            _dir: dir,
            db,
            store,
            clock: ManualClock::starting_now(),
        }
    }

    impl Fixture {
        fn auth(&self, config: AdminConfig) -> Auth {
            Auth::new(config, &self.db, self.store.clone(), self.clock.clone())
        }
    }

    fn with_password(per_minute: u32) -> AdminConfig {
        AdminConfig {
            password_hash: Some(password::hash("pw")),
            login_attempts_per_minute: per_minute,
            ..AdminConfig::default()
        }
    }

    #[tokio::test]
    async fn a_session_carries_its_csrf_token_until_logout() {
        let f = fixture();
        let config = with_password(5);
        let a = f.auth(config.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "pw".into()).await.unwrap();
        let csrf = a.session(&token).await.unwrap().unwrap();
        assert_eq!(a.session(&token).await.unwrap().unwrap(), csrf);
        assert!(a.session("forged").await.unwrap().is_none());
        // Another process on the same store (a replica) knows the login.
        let b = f.auth(config);
        assert_eq!(b.session(&token).await.unwrap(), Some(csrf));
        a.logout(&token).await.unwrap();
        assert!(a.session(&token).await.unwrap().is_none());
        assert!(
            b.session(&token).await.unwrap().is_none(),
            "logged out everywhere"
        );
    }

    #[tokio::test]
    async fn a_session_idles_out_on_the_clock_and_use_keeps_it_alive() {
        let f = fixture();
        let config = AdminConfig {
            session_idle_minutes: 30,
            ..with_password(5)
        };
        let a = f.auth(config);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "pw".into()).await.unwrap();
        f.clock.advance(29 * 60_000);
        assert!(
            a.session(&token).await.unwrap().is_some(),
            "used: idle from now"
        );
        f.clock.advance(29 * 60_000);
        assert!(a.session(&token).await.unwrap().is_some());
        f.clock.advance(30 * 60_000);
        assert!(
            a.session(&token).await.unwrap().is_none(),
            "idle for 30 minutes"
        );
    }

    #[tokio::test]
    async fn failures_throttle_one_address_only() {
        let f = fixture();
        let a = f.auth(with_password(3));
        let bad: IpAddr = "127.0.0.2".parse().unwrap();
        let good: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                a.login(bad, "no".into()).await,
                Err(LoginError::Wrong)
            ));
        }
        // Even the right password is refused while throttled.
        match a.login(bad, "pw".into()).await {
            Err(LoginError::Throttled(wait)) => assert!(wait <= Duration::from_secs(61)),
            other => panic!("{other:?}"),
        }
        assert!(a.login(good, "pw".into()).await.is_ok());
        // A minute later on the throttle's clock, the address may try again.
        f.clock.advance(60_000);
        assert!(a.login(bad, "pw".into()).await.is_ok());
    }

    #[tokio::test]
    async fn a_new_password_ends_every_session() {
        let f = fixture();
        let config = AdminConfig::default();
        password::store(&config.hash_path(&f.db), &password::hash("first")).unwrap();
        let a = f.auth(config.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "first".into()).await.unwrap();
        assert!(a.session(&token).await.unwrap().is_some());
        password::store(&config.hash_path(&f.db), &password::hash("second")).unwrap();
        assert!(
            a.session(&token).await.unwrap().is_none(),
            "the old session ended"
        );
        assert!(a.session(&token).await.unwrap().is_none());
        let again = a.login(ip, "second".into()).await.unwrap();
        assert!(a.session(&again).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn without_a_password_nobody_logs_in() {
        let f = fixture();
        let a = f.auth(AdminConfig::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(matches!(
            a.login(ip, "".into()).await,
            Err(LoginError::NoPassword)
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("abc", "abd"));
    }
}
