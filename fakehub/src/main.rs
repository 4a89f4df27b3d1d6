//! The fakehub binary: `serve` a GitHub stand-in from a TOML config, or
//! send a `storm` of webhooks at a target.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fakehub::config::ContentType;
use fakehub::webhooks::storm::{self, Storm};
use fakehub::{Config, FakeHub};

#[derive(Parser)]
#[command(
    name = "fakehub",
    about = "A faithful GitHub stand-in for tests, benchmarks and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (REST, GraphQL, App auth, delivery logs) from a config.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Send many fixture deliveries to a webhook URL and report the answers.
    Storm {
        /// The webhook receiver, e.g. http://127.0.0.1:8080/webhooks/github
        #[arg(long)]
        target: String,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, default_value_t = 1000)]
        deliveries: usize,
        #[arg(long, default_value_t = 4)]
        orgs: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Deliveries per second (default: as fast as concurrency allows).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 0.0)]
        duplicates: f64,
        #[arg(long, default_value_t = 0.0)]
        out_of_order: f64,
        #[arg(long, default_value_t = 1)]
        hook_id: i64,
        #[arg(long)]
        form: bool,
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
        /// Print every send as JSON lines after the summary.
        #[arg(long)]
        verbose: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => {
            let config = match config.as_deref().map(Config::load).transpose() {
                Ok(c) => c.unwrap_or_else(|| Config::default().org("octo-org", &["widgets"])),
                Err(e) => {
                    eprintln!("fakehub: {e}");
                    return ExitCode::from(2);
                }
            };
            let hub = match FakeHub::start(config).await {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("fakehub: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("fakehub listening on {}", hub.url());
            let _ = tokio::signal::ctrl_c().await;
            hub.stop().await;
            ExitCode::SUCCESS
        }
        Command::Storm {
            target,
            secret,
            deliveries,
            orgs,
            concurrency,
            rate,
            duplicates,
            out_of_order,
            hook_id,
            form,
            max_secs,
            verbose,
        } => {
            let dir = fakehub::templates::default_fixtures_dir();
            let templates = match fakehub::templates::Templates::load(&dir) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("fakehub: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut s = Storm::new(&target, secret.as_deref(), deliveries);
            s.orgs = orgs;
            s.concurrency = concurrency;
            s.rate = rate;
            s.duplicate_share = duplicates;
            s.out_of_order_share = out_of_order;
            s.hook_id = hook_id;
            s.content_type = if form {
                ContentType::Form
            } else {
                ContentType::Json
            };
            s.max_secs = max_secs;
            s.timeout = Duration::from_secs(10);
            let report = storm::run(&templates, s).await;
            let mut summary = serde_json::to_value(&report).expect("serializable");
            summary.as_object_mut().expect("object").remove("sends");
            println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
            if verbose {
                for x in &report.sends {
                    println!("{}", serde_json::to_string(x).expect("json"));
                }
            }
            ExitCode::SUCCESS
        }
    }
}
