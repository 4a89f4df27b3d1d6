//! Command-line parsing only; the work happens in `gatehouse::app`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::{app, config::Config, logging};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Never miss a GitHub webhook: a durable journal, ordered processing and a rate-limit-aware API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config, runs on the embedded default:
    /// 127.0.0.1:8080 and ./gatehouse-data/.
    Serve {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit 0, or say what is wrong (key and line).
    CheckConfig {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
    }
}

fn load(path: Option<&PathBuf>) -> Result<(Config, Option<String>), String> {
    match path {
        Some(p) => Config::load(p)
            .map(|c| (c, None))
            .map_err(|e| e.to_string()),
        None => app::embedded_default()
            .map_err(|e| format!("cannot set up the embedded default in ./gatehouse-data: {e}")),
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let (config, fresh_secret) = match load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log.format, &config.log.level);
    if path.is_none() {
        print_default_banner(&config, fresh_secret.as_deref());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gatehouse failed to start");
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Shown when running on the embedded default: what to paste into GitHub.
fn print_default_banner(config: &Config, fresh_secret: Option<&str>) {
    let url = format!("http://{}/webhooks/github", config.server.listen);
    let secret_path = app::default_secret_path(&config.storage.path);
    println!("gatehouse is running on its embedded default (no --config).");
    println!(
        "  Payload URL:  {url}   (put a reverse proxy with TLS in front for GitHub to reach it)"
    );
    println!("  Content type: application/json");
    match fresh_secret {
        Some(secret) => {
            println!("  Secret:       {secret}");
            println!(
                "  (generated now and stored in {}; it is shown only this once)",
                secret_path.display()
            );
        }
        None => println!("  Secret:       stored in {}", secret_path.display()),
    }
    println!("  Journal:      {}", config.storage.path.display());
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let config = match path.as_ref() {
        Some(p) => Config::load(p),
        None => {
            println!("no --config given: gatehouse serve would run on the embedded default");
            return ExitCode::SUCCESS;
        }
    };
    match config {
        Ok(c) => {
            println!(
                "{}: OK (listen {}, journal {}, {} webhook secret(s), partition by {:?})",
                path.unwrap().display(),
                c.server.listen,
                c.storage.path.display(),
                c.webhooks.secrets.len(),
                c.webhooks.partition_by
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            ExitCode::from(2)
        }
    }
}
