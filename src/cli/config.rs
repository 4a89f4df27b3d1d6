//! The config a command runs on, loaded one way for every command: the
//! file given with --config (every problem printed with key and line, exit
//! 2), or the embedded default's paths.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use crate::config::{Config, Secrets};
use crate::store::Store;

/// Loads `--config` for a command that needs the secrets or not; without
/// a file, the embedded default's paths (what `serve` would use).
/// Problems are printed; the command then ends with the returned code.
pub fn load(path: Option<&Path>, secrets: Secrets) -> Result<Config, ExitCode> {
    let Some(p) = path else {
        return Ok(Config::default());
    };
    let loaded = match secrets {
        Secrets::Read => Config::load(p),
        Secrets::Skip => Config::load_without_secrets(p),
    };
    loaded.map_err(|e| {
        eprintln!("{}", super::check::problems(p, &e));
        ExitCode::from(2)
    })
}

/// The config `serve` runs on: the file, or the embedded default (whose
/// secret and admin password are generated on its first start).
pub fn for_serve(path: Option<&Path>) -> Result<(Config, crate::app::Generated), ExitCode> {
    match path {
        Some(p) => load(Some(p), Secrets::Read).map(|c| (c, crate::app::Generated::default())),
        None => crate::app::embedded_default().map_err(|e| {
            eprintln!("gatehouse: cannot set up the embedded default in ./gatehouse-data: {e}");
            ExitCode::from(2)
        }),
    }
}

/// Loads the config (or the embedded default's paths), opens the store
/// beside a running server (the same operations, through the same writer
/// code, as the server's), and runs `f`.
pub fn operate(
    path: Option<PathBuf>,
    f: impl AsyncFnOnce(&Config, &Store) -> Result<(), CliError>,
) -> ExitCode {
    // Nothing here uses a secret: they are not read (on a systemd install
    // they are credentials only the service can open).
    let config = match load(path.as_deref(), Secrets::Skip) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = runtime();
    let opened = {
        let _in = runtime.enter();
        crate::store::open_beside(&config.storage.location())
    };
    let result = match opened {
        Err(e) => Err(e.into()),
        Ok(store) => {
            let done = runtime.block_on(f(&config, &store));
            store.close();
            done
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime for an operator command: multi-threaded, so a PostgreSQL
/// store's connections are driven while the store's blocking `open`
/// holds this thread (enter it first).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the command")
}

/// `gatehouse check-config`: every problem with key and line (exit 2), or
/// a summary of what the file sets up.
pub fn check(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        println!("no --config given: gatehouse serve would run on the embedded default");
        return ExitCode::SUCCESS;
    };
    match load(Some(&path), Secrets::Read) {
        Ok(c) => {
            // The clients file is part of the config: a bad one would
            // stop `serve` from starting.
            if let Some(g) = c
                .gateway
                .as_ref()
                .filter(|g| !g.clients_file.as_os_str().is_empty())
            {
                match crate::gateway::registry::load(&g.clients_file) {
                    Ok(specs) => println!(
                        "{}\n  clients      {} in {}",
                        super::check::summary(&path, &c),
                        specs.len(),
                        g.clients_file.display()
                    ),
                    Err(e) => {
                        eprintln!("gatehouse: config error: [gateway] clients_file: {e}");
                        return ExitCode::from(2);
                    }
                }
                return ExitCode::SUCCESS;
            }
            println!("{}", super::check::summary(&path, &c));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Shown when running on the embedded default: what to paste into GitHub.
pub fn banner(config: &Config, generated: &crate::app::Generated) {
    let url = format!("http://{}/webhooks/github", config.server.listen);
    let secret_path = crate::app::default_secret_path(&config.storage.path);
    println!("gatehouse is running on its embedded default (no --config).");
    println!(
        "  Payload URL:  {url}   (put a reverse proxy with TLS in front for GitHub to reach it)"
    );
    println!("  Content type: application/json");
    match &generated.secret {
        Some(secret) => {
            println!("  Secret:       {secret}");
            println!(
                "  (generated now and stored in {}; it is shown only this once)",
                secret_path.display()
            );
        }
        None => println!("  Secret:       stored in {}", secret_path.display()),
    }
    println!("  Journal:      {}", config.storage.describe());
    println!("  Admin UI:     http://{}/admin/", config.server.listen);
    let hash_path = config.admin.hash_path(&config.storage.path);
    match &generated.admin_password {
        Some(password) => {
            println!("  Admin login:  {password}");
            println!(
                "  (generated now; only its hash is stored, in {}; it is shown only this once. \
                 `gatehouse admin set-password` changes it)",
                hash_path.display()
            );
        }
        None => println!(
            "  Admin login:  the password whose hash is in {}",
            hash_path.display()
        ),
    }
}
