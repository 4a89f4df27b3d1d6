//! Who may use the admin UI: the password check (throttled per client
//! address), sessions held in memory (a restart logs everyone out), and
//! the CSRF token each session's forms carry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::password;
use crate::clock::Clock;
use crate::config::AdminConfig;
use crate::throttle::Throttle;

/// Sessions are few (operators); this bounds memory against a flood of logins.
const MAX_SESSIONS: usize = 1_000;

pub struct Auth {
    /// Read at each login, so `gatehouse admin set-password` takes effect
    /// without a restart.
    config: AdminConfig,
    db_path: PathBuf,
    idle_ms: i64,
    /// SHA-256 of the cookie token → session, so the map holds no usable
    /// token.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    throttle: Throttle,
    /// Session idling and the login throttle read time here.
    clock: Arc<dyn Clock>,
}

struct Session {
    csrf: String,
    /// Epoch ms on the clock.
    last_seen: i64,
    /// SHA-256 of the password hash it logged in with.
    password: [u8; 32],
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    NoPassword,
    /// Too many failures from this address; try again after this long.
    Throttled(Duration),
    Wrong,
}

impl Auth {
    pub fn new(config: AdminConfig, db_path: &Path) -> Auth {
        Auth::on_clock(config, db_path, crate::clock::system())
    }

    pub fn on_clock(config: AdminConfig, db_path: &Path, clock: Arc<dyn Clock>) -> Auth {
        Auth {
            idle_ms: config.session_idle_minutes as i64 * 60_000,
            throttle: Throttle::new(config.login_attempts_per_minute).with_clock(clock.clone()),
            config,
            db_path: db_path.to_path_buf(),
            sessions: Mutex::default(),
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
        self.throttle.reserve(from).map_err(LoginError::Throttled)?;
        let checked = hash.clone();
        let ok = tokio::task::spawn_blocking(move || password::verify(&checked, &given))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(LoginError::Wrong);
        }
        self.throttle.forgive(from);
        Ok(self.open(&hash))
    }

    fn open(&self, hash: &str) -> String {
        let token = random_token();
        let mut sessions = self.sessions.lock().expect("lock");
        let now = self.clock.now_ms();
        sessions.retain(|_, s| now - s.last_seen < self.idle_ms);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(&token),
            Session {
                csrf: random_token(),
                last_seen: now,
                password: digest(hash),
            },
        );
        token
    }

    /// The CSRF token of the live session `token` names, refreshing its
    /// idle timer; None when there is no such session, it idled out, or
    /// the password changed since it began (every session ends then).
    pub fn session(&self, token: &str) -> Option<String> {
        let current = self.hash().map(|h| digest(&h));
        let mut sessions = self.sessions.lock().expect("lock");
        let key = digest(token);
        let now = self.clock.now_ms();
        let s = sessions.get_mut(&key)?;
        if now - s.last_seen >= self.idle_ms || current != Some(s.password) {
            sessions.remove(&key);
            return None;
        }
        s.last_seen = now;
        Some(s.csrf.clone())
    }

    pub fn logout(&self, token: &str) {
        self.sessions.lock().expect("lock").remove(&digest(token));
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

    fn auth(per_minute: u32) -> Auth {
        let config = AdminConfig {
            password_hash: Some(password::hash("pw")),
            login_attempts_per_minute: per_minute,
            ..AdminConfig::default()
        };
        Auth::new(config, Path::new("/nonexistent/g.db"))
    }

    #[tokio::test]
    async fn a_session_carries_its_csrf_token_until_logout() {
        let a = auth(5);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "pw".into()).await.unwrap();
        let csrf = a.session(&token).unwrap();
        assert_eq!(a.session(&token).unwrap(), csrf);
        assert!(a.session("forged").is_none());
        a.logout(&token);
        assert!(a.session(&token).is_none());
    }

    #[tokio::test]
    async fn a_session_idles_out_on_the_clock_and_use_keeps_it_alive() {
        let clock = crate::clock::ManualClock::starting_now();
        let config = AdminConfig {
            password_hash: Some(password::hash("pw")),
            session_idle_minutes: 30,
            ..AdminConfig::default()
        };
        let a = Auth::on_clock(config, Path::new("/nonexistent/g.db"), clock.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "pw".into()).await.unwrap();
        clock.advance(29 * 60_000);
        assert!(a.session(&token).is_some(), "used: idle from now");
        clock.advance(29 * 60_000);
        assert!(a.session(&token).is_some());
        clock.advance(30 * 60_000);
        assert!(a.session(&token).is_none(), "idle for 30 minutes");
    }

    #[tokio::test]
    async fn failures_throttle_one_address_only() {
        let a = auth(3);
        let bad: IpAddr = "127.0.0.2".parse().unwrap();
        let good: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(a.login(bad, "no".into()).await, Err(LoginError::Wrong));
        }
        // Even the right password is refused while throttled.
        match a.login(bad, "pw".into()).await {
            Err(LoginError::Throttled(wait)) => assert!(wait <= Duration::from_secs(61)),
            other => panic!("{other:?}"),
        }
        assert!(a.login(good, "pw".into()).await.is_ok());
    }

    #[tokio::test]
    async fn a_new_password_ends_every_session() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let config = AdminConfig::default();
        password::store(&config.hash_path(&db), &password::hash("first")).unwrap();
        let a = Auth::new(config.clone(), &db);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let token = a.login(ip, "first".into()).await.unwrap();
        assert!(a.session(&token).is_some());
        password::store(&config.hash_path(&db), &password::hash("second")).unwrap();
        assert!(a.session(&token).is_none(), "the old session ended");
        assert!(a.session(&token).is_none());
        let again = a.login(ip, "second".into()).await.unwrap();
        assert!(a.session(&again).is_some());
    }

    #[tokio::test]
    async fn without_a_password_nobody_logs_in() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::new(AdminConfig::default(), &dir.path().join("g.db"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.login(ip, "".into()).await, Err(LoginError::NoPassword));
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
