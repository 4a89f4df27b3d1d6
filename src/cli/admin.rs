//! `gatehouse admin set-password`: hashes a new admin password (argon2id)
//! and writes the hash where the server reads it.

use std::io::{BufRead, IsTerminal};

use super::CliError;
use crate::admin::password;
use crate::config::Config;

/// Shorter passwords are refused: the login is reachable from the network.
const MIN_LEN: usize = 12;

/// Where `set-password` puts the hash.
pub enum Output {
    /// `[admin] password_hash_file`, else beside the journal.
    Configured,
    /// Stdout, for `[admin] password_hash`.
    Print,
    /// This file (the one systemd's `LoadCredential=` reads, say).
    File(std::path::PathBuf),
}

/// `gatehouse admin set-password`: loads the config (its secrets are not
/// needed) and sets the password, saying why on failure.
pub fn set_password_cmd(config: Option<&std::path::Path>, out: Output) -> std::process::ExitCode {
    let config = match super::config::load(config, crate::config::Secrets::Skip) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match set_password(&config, out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads the new password (prompted twice on a terminal, else one line of
/// stdin) and writes its hash where `out` says.
pub fn set_password(config: &Config, out: Output) -> Result<(), CliError> {
    let given = if std::io::stdin().is_terminal() {
        let prompt = |p: &str| {
            rpassword::prompt_password(p).map_err(|source| CliError::Io {
                what: "cannot read the password from the terminal".into(),
                source,
            })
        };
        let (a, b) = (prompt("New admin password: ")?, prompt("Again: ")?);
        if a != b {
            return Err(CliError::Invalid(
                "the two passwords differ; nothing changed".into(),
            ));
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| CliError::Io {
                what: "cannot read the password from stdin".into(),
                source,
            })?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if given.chars().count() < MIN_LEN {
        return Err(CliError::Invalid(format!(
            "the password needs at least {MIN_LEN} characters; nothing changed"
        )));
    }
    let phc = password::hash(&given);
    let path = match out {
        Output::Print => {
            println!("{phc}");
            return Ok(());
        }
        Output::File(p) => p,
        Output::Configured if config.admin.password_hash.is_some() => {
            return Err(CliError::Invalid("the config sets [admin] password_hash itself: run with --print and put the hash there".into()));
        }
        Output::Configured => {
            let path = config.admin.hash_path(&config.storage.path);
            if path.starts_with("$CREDENTIALS_DIRECTORY") {
                return Err(CliError::Invalid(format!(
                    "[admin] password_hash_file is {} (a systemd credential): write the file it is loaded from with --output PATH",
                    path.display()
                )));
            }
            path
        }
    };
    password::store(&path, &phc).map_err(|source| CliError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    })?;
    println!(
        "admin password hash written to {} (a running gatehouse uses it at the next login)",
        path.display()
    );
    Ok(())
}
