//! Command-line parsing only: each command's work and output is in
//! `gatehouse::cli`, the server in `gatehouse::app`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::cli::{self, config::operate};
use gatehouse::store::operator::Filter;

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
    /// Write the man pages (one per command) and shell completions: what
    /// scripts/package puts in the Debian package.
    #[command(hide = true)]
    GenerateDocs {
        /// The directory for the man pages (section 1).
        #[arg(long)]
        man: PathBuf,
        /// Where to write the bash completion script.
        #[arg(long)]
        bash: Option<PathBuf>,
        /// Where to write the zsh completion function.
        #[arg(long)]
        zsh: Option<PathBuf>,
        /// Where to write the fish completions.
        #[arg(long)]
        fish: Option<PathBuf>,
    },
    /// What runs and what is wrong: each running server's version, uptime,
    /// config, listeners and credential budgets, the journal's size, the
    /// backlog per route, completeness and the open problems. Ends 1 while
    /// a problem is open.
    Status {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the servers running here to read the config and secret files
    /// again (SIGHUP, as `systemctl reload`), and print what each applied,
    /// refused (it keeps the running config) or leaves for a restart.
    /// With no server running, applies the clients file to the store.
    Reload {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Bring the store's schema to this release's (`serve` does it at
    /// start too); --dry-run shows the pending migrations. On PostgreSQL,
    /// beside running replicas, under an advisory lock.
    Migrate {
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Move between stores: `copy` puts an embedded SQLite journal into an
    /// empty PostgreSQL database (deliveries, jobs, state, clients).
    Storage {
        #[command(subcommand)]
        action: StorageCmd,
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
enum StorageCmd {
    /// Copy the SQLite journal at --from into the empty PostgreSQL
    /// database at --to (migrated first), keeping ids and dedupe keys;
    /// every table's count is checked after.
    Copy {
        /// The SQLite journal (stop its server first: a live one is copied
        /// as of the moment the copy starts).
        #[arg(long)]
        from: PathBuf,
        /// postgres://user@host:port/db (sslmode and other libpq keys as
        /// query parameters).
        #[arg(long)]
        to: String,
        /// The password, read from this file rather than put in the URL.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
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
    /// Let order move past a GUID's dead letter (or only --route's): it
    /// stays dead, and the deliveries its partition held behind it go on.
    Skip {
        guid: String,
        #[arg(long)]
        route: Option<String>,
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
        /// Instead, the last N walks of every source, newest first.
        #[arg(long, value_name = "N")]
        walks: Option<usize>,
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
    /// Probe every App installation and token for its budgets now.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PriorityArg {
    Normal,
    High,
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
        /// Rate-limit units the client's requests may spend upstream in
        /// any hour (cache hits and 304s cost nothing, GraphQL its points),
        /// as UNITS/h. None = no quota (fair share still applies).
        #[arg(long)]
        quota: Option<String>,
        /// Its part of a fair share when a budget runs low, against other
        /// active clients' weights.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// high: served from the part of each budget others cannot reach,
        /// and never held to a fair share (deploys, people).
        #[arg(long, value_enum, default_value_t = PriorityArg::Normal)]
        priority: PriorityArg,
        /// Store nothing: print a new token and the entry for the clients
        /// file ([gateway] clients_file), which holds its SHA-256 only.
        #[arg(long)]
        print_entry: bool,
    },
    /// Every client with its last hour's requests and rate-limit units.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Rate-limit units spent and saved, and refusals by rule, by client,
    /// GitHub route template, pool credential or owner.
    Usage {
        /// An age (30m, 6h, 2d) or an RFC 3339 time.
        #[arg(long, default_value = "1h")]
        since: String,
        #[arg(long, value_enum, default_value_t = ByArg::Client)]
        by: ByArg,
        #[arg(long)]
        json: bool,
    },
    /// Give a client a new token (printed once); the old one is refused
    /// from the next request.
    Rotate { name: String },
    /// Refuse a client's token from now on.
    Revoke { name: String },
}

/// A client's settings from `clients add`'s flags.
fn settings(
    name: String,
    scopes: Vec<String>,
    owners: Vec<String>,
    quota: Option<String>,
    weight: u32,
    priority: PriorityArg,
) -> Result<gatehouse::gateway::clients::Settings, cli::CliError> {
    use gatehouse::gateway::clients::{Limits, Priority, Settings, parse_quota};
    Ok(Settings {
        name,
        scopes,
        owners,
        limits: Limits {
            quota_per_hour: quota.as_deref().map(parse_quota).transpose()?,
            weight,
            priority: match priority {
                PriorityArg::Normal => Priority::Normal,
                PriorityArg::High => Priority::High,
            },
        },
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ByArg {
    Client,
    Route,
    Credential,
    Owner,
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
    /// Stop sending a route's deliveries (they keep arriving and wait).
    Pause { route: String },
    /// Send a paused route's deliveries again, in order.
    Resume { route: String },
    /// Delete every job of a route no longer in the config (pending jobs
    /// and dead letters included), so its deliveries can be pruned. Without
    /// this, its jobs wait for the route to come back.
    Drop { route: String },
}

#[derive(Subcommand)]
enum PartitionHoldCmd {
    /// Stop sending one partition's deliveries on a route (they wait).
    Pause { route: String, partition: String },
    /// Send a paused partition's deliveries again, in order.
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
        Command::Serve { config } => cli::serve::serve(config.as_deref()),
        Command::GenerateDocs {
            man,
            bash,
            zsh,
            fish,
        } => cli::docs::generate(
            <Cli as clap::CommandFactory>::command(),
            &man,
            [bash, zsh, fish],
        ),
        Command::CheckConfig { config } => cli::config::check(config),
        Command::Migrate { config, dry_run } => cli::storage::migrate(config, dry_run),
        Command::Storage {
            action:
                StorageCmd::Copy {
                    from,
                    to,
                    password_file,
                },
        } => cli::storage::copy(&from, &to, password_file.as_deref()),
        Command::Deliveries { config, action } => {
            operate(config, async |config, store| match action {
                DeliveriesCmd::List {
                    filter,
                    limit,
                    json,
                } => cli::deliveries::list(store, &filter_of(&filter)?, limit, json).await,
                DeliveriesCmd::Show { guid, json } => {
                    cli::deliveries::show(config, store, &guid, json).await
                }
                DeliveriesCmd::Skip { guid, route } => {
                    cli::deliveries::skip(store, &guid, route.as_deref()).await
                }
                DeliveriesCmd::Retry { guid, dead, filter } => {
                    cli::deliveries::retry(
                        config,
                        store,
                        guid,
                        dead,
                        &filter_of(&filter)?,
                        filter.since.as_deref(),
                    )
                    .await
                }
            })
        }
        Command::Github {
            config,
            action: GithubCmd::Status { json },
        } => cli::github::status(config, json),
        // The entry for the clients file needs no journal.
        Command::Clients {
            action:
                ClientsCmd::Add {
                    name,
                    scopes,
                    owners,
                    quota,
                    weight,
                    priority,
                    print_entry: true,
                },
            ..
        } => match settings(name, scopes, owners, quota, weight, priority)
            .and_then(|s| cli::clients::print_entry(&s))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gatehouse: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Clients { config, action } => operate(config, async |_, store| match action {
            ClientsCmd::Add {
                name,
                scopes,
                owners,
                quota,
                weight,
                priority,
                print_entry: _,
            } => {
                let settings = settings(name, scopes, owners, quota, weight, priority)?;
                cli::clients::add(store, &settings).await
            }
            ClientsCmd::List { json } => cli::clients::list(store, json).await,
            ClientsCmd::Usage { since, by, json } => {
                use gatehouse::gateway::report::By;
                let by = match by {
                    ByArg::Client => By::Client,
                    ByArg::Route => By::Route,
                    ByArg::Credential => By::Credential,
                    ByArg::Owner => By::Owner,
                };
                cli::clients::usage(store, &since, by, json).await
            }
            ClientsCmd::Rotate { name } => cli::clients::rotate(store, &name).await,
            ClientsCmd::Revoke { name } => cli::clients::revoke(store, &name).await,
        }),
        Command::Status { config, json } => operate(config, async |config, store| {
            cli::status::status(config, store, json).await
        }),
        Command::Reload { config } => operate(config, async |config, store| {
            cli::reload::reload(config, store).await
        }),
        Command::Backup { config, path } => {
            operate(config, async |_, store| cli::backup::backup(store, &path))
        }
        Command::Admin {
            config,
            action: AdminCmd::SetPassword { print, output },
        } => {
            let out = match (print, output) {
                (true, _) => cli::admin::Output::Print,
                (false, Some(p)) => cli::admin::Output::File(p),
                (false, None) => cli::admin::Output::Configured,
            };
            cli::admin::set_password_cmd(config.as_deref(), out)
        }
        Command::Recovery { config, action } => {
            operate(config, async |config, store| match action {
                RecoveryCmd::Status { walks: None, json } => {
                    cli::recovery::status(config, store, json).await
                }
                RecoveryCmd::Status {
                    walks: Some(n),
                    json,
                } => cli::recovery::walks(store, n, json).await,
                RecoveryCmd::Run { since, wait } => {
                    cli::recovery::run(config, store, since.as_deref(), wait).await
                }
            })
        }
        Command::Actions {
            config,
            action: ActionsCmd::Report { since, json },
        } => operate(config, async |_, store| {
            cli::actions::report(store, &since, json).await
        }),
        Command::Routes { config, action } => operate(config, async |config, store| match action {
            HoldCmd::List { json } => cli::routes::list(config, store, json).await,
            HoldCmd::Pause { route } => cli::routes::hold(config, store, &route, None, true).await,
            HoldCmd::Resume { route } => {
                cli::routes::hold(config, store, &route, None, false).await
            }
            HoldCmd::Drop { route } => cli::routes::drop(config, store, &route).await,
        }),
        Command::Partitions { config, action } => {
            operate(config, async |config, store| match action {
                PartitionHoldCmd::Pause { route, partition } => {
                    cli::routes::hold(config, store, &route, Some(&partition), true).await
                }
                PartitionHoldCmd::Resume { route, partition } => {
                    cli::routes::hold(config, store, &route, Some(&partition), false).await
                }
            })
        }
    }
}

/// `--filter` arguments as the store's filter (times parsed now).
fn filter_of(a: &FilterArgs) -> Result<Filter, cli::CliError> {
    Ok(Filter {
        event: a.event.clone(),
        partition: a.partition.clone(),
        state: a.state.clone(),
        route: a.route.clone(),
        since_ms: a
            .since
            .as_deref()
            .map(|s| gatehouse::clock::parse_since(s, gatehouse::clock::now_ms()))
            .transpose()?,
        ..Filter::default()
    })
}
