//! Output of the CLI commands that live in the library (the newer ones;
//! `main.rs` parses arguments and hands off here).

pub mod actions;
pub mod admin;
pub mod backup;
pub mod check;
pub mod clients;
pub mod config;
pub mod deliveries;
pub mod docs;
pub mod github;
pub mod recovery;
pub mod reload;
pub mod routes;
pub mod serve;
pub mod status;
pub mod storage;

/// Why an operator command failed (printed, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Open(#[from] crate::store::OpenError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Client(#[from] crate::gateway::clients::ClientError),
    #[error(transparent)]
    Registry(#[from] crate::gateway::registry::RegistryError),
    /// What the operator asked for does not make sense (a typo, a
    /// missing argument); the message says what would.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Since(#[from] crate::clock::BadSince),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Text that came from a payload, GitHub or a client, made safe for a
/// terminal: control characters (ESC starts sequences that move the
/// cursor, retitle the window or rewrite what was printed) are shown
/// escaped, `\u{1b}`. JSON output escapes them by itself.
pub fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `--json` output: pretty-printed, one document.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(super::safe("octo-org/widgets"), "octo-org/widgets");
        assert_eq!(super::safe("a\x1b]0;pwned\x07b"), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(super::safe("x\u{9b}2J\r\n"), "x\\u{9b}2J\\u{d}\\u{a}");
        assert_eq!(super::safe("café ✓"), "café ✓");
    }
}
