//! Command-line parsing only; the work happens in `gatehouse::app`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::cli::safe;
use gatehouse::{app, cli, config::Config, control, logging};

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
    /// Browse and retry journaled deliveries (works beside a running server).
    Deliveries {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DeliveriesCmd,
    },
    /// List routes with their backlog and dead letters; pause, resume, or
    /// drop the jobs of a removed one.
    Routes {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: HoldCmd,
    },
    /// The GitHub credential pool: `status` probes every App installation
    /// and token for its budgets now (GET /rate_limit, which costs nothing).
    Github {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: GithubCmd,
    },
    /// API gateway clients: each has its own token, scopes and owners.
    Clients {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: ClientsCmd,
    },
    /// Write a consistent copy of the journal to PATH while it runs (a new
    /// file; checked with integrity_check before it gets its name).
    Backup {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        path: PathBuf,
    },
    /// The admin UI: `set-password` writes the hash of a new login password.
    Admin {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminCmd,
    },
    /// Recovery of deliveries GitHub failed to make (works beside a running
    /// server).
    Recovery {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: RecoveryCmd,
    },
    /// GitHub Actions reports from the actions-metrics sink's state.
    Actions {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: ActionsCmd,
    },
    /// Pause or resume one route's partition (an organisation, by default).
    Partitions {
        #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: PartitionHoldCmd,
    },
}

#[derive(clap::Args, Clone)]
struct FilterArgs {
    #[arg(long)]
    event: Option<String>,
    #[arg(long)]
    partition: Option<String>,
    /// A job state: pending, done or dead.
    #[arg(long)]
    state: Option<String>,
    #[arg(long)]
    route: Option<String>,
    /// 30m, 6h, 2d, or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Subcommand)]
enum DeliveriesCmd {
    /// The newest deliveries first, with their jobs.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One delivery (by GUID), its jobs and every attempt.
    Show {
        guid: String,
        #[arg(long)]
        json: bool,
    },
    /// Run jobs again: one GUID's (optionally only --route's), every dead
    /// letter matching the filters (--dead), or, with --route R --since T
    /// alone, back-fill route R with the deliveries it missed since T.
    Retry {
        guid: Option<String>,
        #[arg(long)]
        dead: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Read a new admin password (prompted, or one line on stdin) and write
    /// its argon2 hash to [admin] password_hash_file, else beside the
    /// journal. A running server uses it from the next login.
    SetPassword {
        /// Print the hash instead of writing it (for [admin] password_hash).
        #[arg(long, conflicts_with = "output")]
        print: bool,
        /// Write the hash to this file instead (the file systemd's
        /// LoadCredential= reads, say).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RecoveryCmd {
    /// Each source's last walk: pages, deliveries seen, missing found,
    /// redeliveries asked, failures; and its last complete walk.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server to walk every source now and follow it.
    Run {
        /// Walk back this far (30m, 6h, 2d, or an RFC 3339 time) instead of
        /// to the last complete walk.
        #[arg(long)]
        since: Option<String>,
        /// Stop following after this many seconds (the walk goes on).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum ActionsCmd {
    /// Per workflow: runs completed, success rate, run duration and job
    /// queue time percentiles.
    Report {
        /// The window: 30m, 6h, 7d, or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GithubCmd {
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClientsCmd {
    /// Create a client and print its token (once: only a hash is kept).
    Add {
        name: String,
        /// 'METHOD PATH_REGEX' (the regex matches the whole path, without
        /// /api/v3 and the query; METHOD may be *, or QUERY or MUTATION for
        /// GraphQL operations: 'QUERY /graphql' is read-only GraphQL).
        /// Repeat for more; none = any request.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An organisation or user the client may act for. Repeat for
        /// more; none = any. Requests naming no owner use the first.
        #[arg(long = "owner")]
        owners: Vec<String>,
    },
    /// Every client with its last hour's requests and rate-limit units.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refuse a client's token from now on.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum HoldCmd {
    /// Each route: running or paused, backlog, oldest pending, dead
    /// letters, partitions paused; and routes no longer configured that
    /// still have jobs.
    List {
        #[arg(long)]
        json: bool,
    },
    Pause {
        route: String,
    },
    Resume {
        route: String,
    },
    /// Delete every job of a route no longer in the config (pending jobs
    /// and dead letters included), so its deliveries can be pruned. Without
    /// this, its jobs wait for the route to come back.
    Drop {
        route: String,
    },
}

#[derive(Subcommand)]
enum PartitionHoldCmd {
    Pause { route: String, partition: String },
    Resume { route: String, partition: String },
}

/// A command whose output goes to a closed pipe (`| head`) ends quietly,
/// as Unix tools do, instead of panicking in `println!`. Not for `serve`,
/// whose sockets must not kill it.
fn default_sigpipe() {
    // SAFETY: resetting a signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        default_sigpipe();
    }
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Deliveries { config, action } => {
            operate(config, |c, conn| deliveries(c, conn, action))
        }
        Command::Github { config, action } => github(config, action),
        Command::Clients { config, action } => operate(config, |_, conn| clients(conn, action)),
        Command::Backup { config, path } => operate(config, |config, conn| {
            gatehouse::cli::backup::backup(conn, &config.storage.path, &path)
                .map_err(control::ControlError::Invalid)
        }),
        Command::Admin {
            config,
            action: AdminCmd::SetPassword { print, output },
        } => {
            let out = match (print, output) {
                (true, _) => gatehouse::cli::admin::Output::Print,
                (false, Some(p)) => gatehouse::cli::admin::Output::File(p),
                (false, None) => gatehouse::cli::admin::Output::Configured,
            };
            let config = match config.as_ref() {
                Some(p) => Config::load_without_secrets(p).map_err(|e| e.to_string()),
                None => Ok(Config::default()),
            };
            match config.and_then(|c| gatehouse::cli::admin::set_password(&c, out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Recovery { config, action } => operate(config, |config, conn| match action {
            RecoveryCmd::Status { json } => cli::recovery::status(conn, json),
            RecoveryCmd::Run { since, wait } => {
                cli::recovery::run(config, conn, since.as_deref(), wait)
            }
        }),
        Command::Actions {
            config,
            action: ActionsCmd::Report { since, json },
        } => operate(config, |_, conn| cli::actions::report(conn, &since, json)),
        Command::Routes { config, action } => operate(config, |config, conn| {
            let (route, hold) = match action {
                HoldCmd::Pause { route } => (route, true),
                HoldCmd::Resume { route } => (route, false),
                HoldCmd::Drop { route } => return drop_route(config, conn, &route),
                HoldCmd::List { json } => return cli::routes::list(config, conn, json),
            };
            known_route(config, &route)?;
            control::hold_route(conn, &route, hold)?;
            println!("route {route} {}", if hold { "paused" } else { "resumed" });
            Ok(())
        }),
        Command::Partitions { config, action } => operate(config, |config, conn| {
            let (route, partition, hold) = match action {
                PartitionHoldCmd::Pause { route, partition } => (route, partition, true),
                PartitionHoldCmd::Resume { route, partition } => (route, partition, false),
            };
            known_route(config, &route)?;
            control::hold_partition(conn, &route, &partition, hold)?;
            println!(
                "partition {partition} of route {route} {}",
                if hold { "paused" } else { "resumed" }
            );
            Ok(())
        }),
    }
}

/// A route (or built-in sink) the config has; a typo says which exist.
fn known_route(config: &Config, route: &str) -> Result<(), control::ControlError> {
    let catalog = gatehouse::sinks::Catalog::new(config);
    if catalog.has(route) {
        return Ok(());
    }
    let names = catalog.names();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    let hint = gatehouse::config::validate::did_you_mean(route, &known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default();
    Err(control::ControlError::Invalid(format!(
        "no route {route:?} in the config{hint}; routes: {}",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// `gatehouse routes drop NAME`: only for a route the config no longer has.
fn drop_route(
    config: &Config,
    conn: &mut rusqlite::Connection,
    route: &str,
) -> Result<(), control::ControlError> {
    if gatehouse::sinks::Catalog::new(config).has(route) {
        return Err(control::ControlError::Invalid(format!(
            "route {route:?} is in the config: remove it there first (its jobs would run again otherwise)"
        )));
    }
    let d = control::drop_sink(conn, route)?;
    println!(
        "dropped {} pending job(s) and {} dead letter(s) of route {}",
        d.pending,
        d.dead,
        safe(route)
    );
    Ok(())
}

fn clients(
    conn: &mut rusqlite::Connection,
    action: ClientsCmd,
) -> Result<(), control::ControlError> {
    use gatehouse::gateway::clients;
    let now = gatehouse::clock::now_ms();
    let err = |e: clients::ClientError| control::ControlError::Invalid(e.to_string());
    match action {
        ClientsCmd::Add {
            name,
            scopes,
            owners,
        } => {
            let token = clients::add(conn, &name, &scopes, &owners, now).map_err(err)?;
            for s in &scopes {
                if clients::Scope::parse(s).is_ok_and(|s| s.posts_graphql()) {
                    eprintln!(
                        "note: --scope {s:?} allows GraphQL mutations too; 'QUERY /graphql' allows reads only"
                    );
                }
            }
            eprintln!("client {name} created; its token (shown only this once):");
            println!("{token}");
        }
        ClientsCmd::Revoke { name } => {
            clients::revoke(conn, &name, now).map_err(err)?;
            println!("client {name} revoked");
        }
        ClientsCmd::List { json } => {
            let rows = clients::list(conn, now).map_err(err)?;
            if json {
                cli::print_json(&rows);
                return Ok(());
            }
            println!(
                "{:<20}  {:<8}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  scopes / owners",
                "client",
                "state",
                "requests",
                "hits",
                "revalidated",
                "misses",
                "bypass",
                "spent",
                "saved"
            );
            for r in rows {
                let u = &r.last_hour;
                let any = |v: &[String]| {
                    if v.is_empty() {
                        "any".to_string()
                    } else {
                        v.join("; ")
                    }
                };
                println!(
                    "{:<20}  {:<8}  {:>8}  {:>6}  {:>11}  {:>6}  {:>6}  {:>6}  {:>6}  {} / {}",
                    r.name,
                    if r.revoked_at_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    u.requests,
                    u.hits,
                    u.revalidated,
                    u.misses,
                    u.bypassed,
                    u.units_spent,
                    u.units_saved,
                    any(&r.scopes),
                    any(&r.owners),
                );
            }
            println!("(usage over the last hour)");
        }
    }
    Ok(())
}

fn github(path: Option<PathBuf>, action: GithubCmd) -> ExitCode {
    let GithubCmd::Status { json } = action;
    let Some(path) = path else {
        eprintln!("gatehouse: github status needs --config (the embedded default has no [github])");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows = runtime.block_on(async {
        let pool = gatehouse::github::Pool::new(&config.github)?;
        pool.probe().await
    });
    match rows {
        Ok(rows) if json => {
            cli::print_json(&rows);
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            let now = gatehouse::clock::now_ms() / 1000;
            println!(
                "{:<36}  {:<20}  {:<8}  {:>9}  {:>9}  reset",
                "credential", "owner", "resource", "remaining", "limit"
            );
            for r in rows {
                println!(
                    "{:<36}  {:<20}  {:<8}  {:>9}  {:>9}  {} (in {} s)",
                    r.credential,
                    safe(&r.owner),
                    safe(&r.resource),
                    r.remaining,
                    r.limit,
                    cli::deliveries::time(r.reset * 1000),
                    (r.reset - now).max(0)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config (or the embedded default's paths), opens the journal
/// for operator actions, and runs `f`.
fn operate(
    path: Option<PathBuf>,
    f: impl FnOnce(&Config, &mut rusqlite::Connection) -> Result<(), control::ControlError>,
) -> ExitCode {
    // Nothing here uses a secret: they are not read (on a systemd install
    // they are credentials only the service can open).
    let config = match path.as_ref() {
        Some(p) => Config::load_without_secrets(p),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}",
                cli::check::problems(path.as_deref().unwrap_or(std::path::Path::new("-")), &e)
            );
            return ExitCode::from(2);
        }
    };
    let result = control::open(&config.storage.path).and_then(|mut conn| f(&config, &mut conn));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn filter_of(a: &FilterArgs) -> Result<control::Filter, control::ControlError> {
    Ok(control::Filter {
        event: a.event.clone(),
        partition: a.partition.clone(),
        state: a.state.clone(),
        route: a.route.clone(),
        since_ms: a
            .since
            .as_deref()
            .map(|s| control::parse_since(s, gatehouse::clock::now_ms()))
            .transpose()?,
        ..control::Filter::default()
    })
}

fn deliveries(
    config: &Config,
    conn: &mut rusqlite::Connection,
    action: DeliveriesCmd,
) -> Result<(), control::ControlError> {
    match action {
        DeliveriesCmd::List {
            filter,
            limit,
            json,
        } => {
            let rows = control::list(conn, &filter_of(&filter)?, limit)?;
            if json {
                cli::print_json(&rows);
            } else {
                println!(
                    "{:<24}  {:<36}  {:<28}  {:<20}  jobs",
                    "received", "guid", "event", "partition"
                );
                for r in rows {
                    let event = match &r.action {
                        Some(a) => format!("{}.{a}", r.event),
                        None => r.event.clone(),
                    };
                    println!(
                        "{:<24}  {:<36}  {:<28}  {:<20}  {}{}",
                        cli::deliveries::time(r.received_at_ms),
                        safe(&r.guid),
                        safe(&event),
                        safe(&r.partition),
                        safe(&r.jobs.join(" ")),
                        if r.recovered { "  (recovered)" } else { "" }
                    );
                }
            }
        }
        DeliveriesCmd::Show { guid, json } => cli::deliveries::show(config, conn, &guid, json)?,
        DeliveriesCmd::Retry { guid, dead, filter } => {
            let n = if let Some(g) = guid {
                control::retry_guid(conn, &g, filter.route.as_deref())?.jobs
            } else if dead {
                control::retry_dead(conn, &filter_of(&filter)?)?.jobs
            } else if let (Some(name), Some(since)) =
                (filter.route.as_deref(), filter.since.as_deref())
            {
                let catalog = gatehouse::sinks::Catalog::new(config);
                if !catalog.has(name) {
                    return Err(control::ControlError::Invalid(format!(
                        "no route {name:?} in the config (nor an enabled built-in sink)"
                    )));
                }
                control::backfill(
                    conn,
                    name,
                    |meta| catalog.wants(name, meta),
                    control::parse_since(since, gatehouse::clock::now_ms())?,
                )?
            } else {
                return Err(control::ControlError::Invalid(
                    "give a GUID, --dead [filters], or --route R --since T to back-fill".into(),
                ));
            };
            println!("{n} job(s) queued; a running gatehouse picks them up within 10 s");
        }
    }
    Ok(())
}

fn load(path: Option<&PathBuf>) -> Result<(Config, app::Generated), String> {
    match path {
        Some(p) => Config::load(p)
            .map(|c| (c, app::Generated::default()))
            .map_err(|e| e.to_string()),
        None => app::embedded_default()
            .map_err(|e| format!("cannot set up the embedded default in ./gatehouse-data: {e}")),
    }
}

/// Large allocations (request bodies of up to 25 MB) get pages of their
/// own and give them back when freed. glibc's default raises the mmap
/// threshold to the size of each large block freed, so after one burst of
/// big bodies later ones come from the heap and the process stays at its
/// peak size; a fixed threshold turns that off.
fn return_memory_after_bursts() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; called
    // once, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    return_memory_after_bursts();
    let (config, generated) = match load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: config error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log.format, &config.log.level);
    if path.is_none() {
        print_default_banner(&config, &generated);
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
fn print_default_banner(config: &Config, generated: &app::Generated) {
    let url = format!("http://{}/webhooks/github", config.server.listen);
    let secret_path = app::default_secret_path(&config.storage.path);
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
    println!("  Journal:      {}", config.storage.path.display());
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

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        println!("no --config given: gatehouse serve would run on the embedded default");
        return ExitCode::SUCCESS;
    };
    match Config::load(&path) {
        Ok(c) => {
            println!("{}", cli::check::summary(&path, &c));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", cli::check::problems(&path, &e));
            ExitCode::from(2)
        }
    }
}
