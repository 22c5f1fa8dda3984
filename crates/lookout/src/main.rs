//! `lookout`: the one binary. Subcommands stay thin; the work lives in the
//! library crates.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use lookout_hub::config::{Origin, RawValue, SettingSpec, SETTINGS};
use lookout_hub::{Application, Config};

mod agent;
mod check;
mod kuma;
mod malloc;
mod probe;
mod status_page;

/// Self-hosted service registry and status monitor
#[derive(Parser)]
#[command(
    name = "lookout",
    version = lookout_hub::VERSION,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the hub: HTTP API, dashboard, storage and health checker
    Serve(ServeArgs),
    /// Manage accounts, against the same data directory or database as `serve`
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Manage public status pages (/status/SLUG), against the same data directory or database as `serve`
    StatusPage {
        #[command(subcommand)]
        command: status_page::StatusPageCommand,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Install, list, run and remove check scripts (systemd timers on this host)
    Check(check::CheckArgs),
    /// Run this host's agent: send check results and the systemd scan to a hub
    Agent(agent::AgentArgs),
    /// Check a URL once, as the hub would (http, https, tcp, tls, icmp, dns), and print the result
    Probe(probe::ProbeArgs),
    /// Write the whole database as one JSON document (docs/export.md): a backup, or a move to another database
    Export {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Load an export into a new, empty database (all or nothing), or Uptime Kuma's monitors as services
    Import {
        /// the export to load
        #[arg(value_name = "FILE", required_unless_present = "uptime_kuma")]
        file: Option<PathBuf>,
        /// register the monitors of Uptime Kuma's database (kuma.db) as services, beside those there are; stop the hub first, or restart it after
        #[arg(long, value_name = "KUMA_DB", conflicts_with = "file")]
        uptime_kuma: Option<PathBuf>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Monitors as code: the services made in the dashboard or the API as a file --monitors loads
    Monitors {
        #[command(subcommand)]
        command: MonitorsCommand,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Bring the database's schema up to date (serve does it too) and print its version
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Scan systemd once and print every service, its ports and timers
    Scan {
        #[command(flatten)]
        systemd: SystemdArg,
        /// ports that mark a web service (default 80,443,3000-9999)
        #[arg(long, env = "LOOKOUT_WEB_PORTS", value_name = "PORTS")]
        web_ports: Option<String>,
        /// print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// List the container engine's containers once (Docker, or Podman's API service): state, health, image, ports, restarts, by Compose project
    Containers {
        /// the engine's API socket (auto: $DOCKER_HOST, else the usual Podman and Docker sockets that exist)
        #[arg(
            long,
            env = "LOOKOUT_CONTAINERS",
            default_value = "auto",
            value_name = "auto|SOCKET"
        )]
        containers: String,
        /// print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MonitorsCommand {
    /// Write the services made in the dashboard or the API as a monitors file (TOML)
    Export {
        #[command(flatten)]
        output: Output,
    },
}

/// `--output FILE` of the commands that write a document.
#[derive(Args)]
struct Output {
    /// where to write it (default: standard output)
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `--systemd`: which manager a command talks to.
#[derive(Args)]
pub(crate) struct SystemdArg {
    /// which systemd manager to use: system, user (the session bus) or none
    #[arg(
        long,
        env = "LOOKOUT_SYSTEMD",
        value_name = "SCOPE",
        value_parser = ["system", "user", "none"],
        default_value = "system"
    )]
    systemd: String,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input when it is not a terminal, prompted otherwise
    Add {
        /// username
        #[arg(value_name = "NAME")]
        name: String,
        /// make it an administrator (default: viewer, read-only)
        #[arg(long)]
        admin: bool,
        /// e-mail address (a second login name)
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
    },
    /// List accounts
    List,
    /// Set a new password (read like `add`); signs the user out everywhere
    Passwd {
        /// username
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Turn off two-factor sign-in for a user who lost their authenticator app and recovery codes; they sign in with the password alone and can set it up again
    #[command(name = "reset-2fa")]
    ResetTwoFactor {
        /// username
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Delete an account and its sessions and tokens
    Remove {
        /// username
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// A setting of `SETTINGS` as a flag that also reads its `LOOKOUT_*`
/// variable.
fn setting_arg(spec: &SettingSpec) -> Arg {
    let arg = Arg::new(spec.key)
        .long(spec.flag().trim_start_matches("--").to_owned())
        .env(spec.env())
        .help(spec.help);
    if spec.key == lookout_hub::config::INSECURE_FLAG {
        arg.action(clap::ArgAction::SetTrue)
    } else {
        arg.value_name(spec.key.to_ascii_uppercase())
    }
}

/// `--config FILE`, as `serve` and the database commands take it.
fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .env("LOOKOUT_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("TOML file with settings (flags and LOOKOUT_* variables override it)")
}

/// The flags and variables of `specs` that were set, ranked by clap (a flag
/// beats a variable), each with where it came from.
fn overrides<'a>(
    m: &ArgMatches,
    specs: impl Iterator<Item = &'a SettingSpec>,
) -> BTreeMap<&'static str, RawValue> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let source = m.value_source(spec.key);
        let value = if spec.key == lookout_hub::config::INSECURE_FLAG {
            m.get_flag(spec.key).then(|| "true".to_owned())
        } else {
            m.get_one::<String>(spec.key).cloned()
        };
        let (Some(value), Some(source)) = (value, source) else {
            continue;
        };
        if source == ValueSource::DefaultValue {
            continue;
        }
        let origin = match source {
            ValueSource::EnvVariable => Origin::Env,
            _ => Origin::Flag,
        };
        out.insert(spec.key, RawValue { value, origin });
    }
    out
}

/// `lookout serve`'s arguments: `--config` and a flag for every setting
/// (`SETTINGS`: the keys the config file and `LOOKOUT_*` variables take),
/// each kept with where it came from.
struct ServeArgs {
    config: Option<PathBuf>,
    overrides: BTreeMap<&'static str, RawValue>,
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            config: m.get_one::<PathBuf>("config").cloned(),
            overrides: overrides(m, SETTINGS.iter()),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(config_arg()).args(SETTINGS.iter().map(setting_arg))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The settings that say where the hub's database is.
fn database_settings() -> impl Iterator<Item = &'static SettingSpec> {
    SETTINGS
        .iter()
        .filter(|s| ["data_dir", "database"].contains(&s.key))
}

/// `--config`, `--data-dir` and `--database`, as `serve` reads them: for the
/// commands that open the hub's database from the shell.
struct DatabaseArgs {
    config: Option<PathBuf>,
    overrides: BTreeMap<&'static str, RawValue>,
}

impl FromArgMatches for DatabaseArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            config: m.get_one::<PathBuf>("config").cloned(),
            overrides: overrides(m, database_settings()),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for DatabaseArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(config_arg().global(true))
            .args(database_settings().map(|spec| setting_arg(spec).global(true)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl DatabaseArgs {
    /// The database's configuration, from the flags, variables and file `serve` reads.
    fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(
            self.config.as_deref(),
            self.overrides.clone(),
        )?)
    }
}

/// Writes `text` to `path` readable by its owner only (exports hold
/// password and token hashes, monitors files request headers), or prints
/// it without a path.
fn write_private(path: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match path {
        Some(path) => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Opens the database the settings name (creating and migrating it).
async fn open_database(config: &Config) -> anyhow::Result<lookout_hub::store::SqlStore> {
    lookout_hub::app::open_database(&config.database).await
}

/// `lookout export`: the whole database as one JSON document.
/// `lookout monitors export`: the services people made, as a monitors file.
fn monitors(command: &MonitorsCommand, db: &DatabaseArgs) -> anyhow::Result<()> {
    let MonitorsCommand::Export { output } = command;
    let config = db.config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let services = runtime.block_on(async {
        let store = open_database(&config).await?;
        let services = lookout_hub::store::Store::list_services(
            &store,
            lookout_hub::store::ServiceFilter::Status(
                lookout_proto::service::RegistryStatus::Configured,
            ),
        )
        .await;
        lookout_hub::store::Store::close(&store).await;
        anyhow::Ok(services?)
    })?;
    // Not the file's own services, agents' checks (their agent declares
    // them) or the hub's check of itself.
    let made: Vec<_> = services
        .into_iter()
        .filter(|s| !s.from_file && s.server_id.is_none() && !lookout_hub::app::is_self_check(s))
        .collect();
    let text = lookout_hub::monitors::to_toml(&made);
    write_private(output.output.as_ref(), &text)
}

fn export(output: &Output, db: &DatabaseArgs) -> anyhow::Result<()> {
    let config = db.config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let dump = runtime.block_on(async {
        let store = open_database(&config).await?;
        let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
        let dump = store.export(now).await;
        lookout_hub::store::Store::close(&store).await;
        anyhow::Ok(dump?)
    })?;
    let text = serde_json::to_string_pretty(&dump)? + "\n";
    write_private(output.output.as_ref(), &text)
}

/// `lookout import FILE`: loads an export into an empty database.
fn import(
    file: Option<&PathBuf>,
    uptime_kuma: Option<&PathBuf>,
    db: &DatabaseArgs,
) -> anyhow::Result<()> {
    let config = db.config()?;
    if let Some(kuma) = uptime_kuma {
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(async {
            let monitors = kuma::read(kuma).await?;
            let store = open_database(&config).await?;
            let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
            let imported = kuma::import(&monitors, &store, now).await;
            lookout_hub::store::Store::close(&store).await;
            println!(
                "imported {} of {} monitors from {}",
                imported?,
                monitors.len(),
                kuma.display()
            );
            anyhow::Ok(())
        });
    }
    let file = file.ok_or_else(|| anyhow::anyhow!("missing argument <FILE>"))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let dump: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let loaded = runtime.block_on(async {
        let store = open_database(&config).await?;
        let loaded = store.import(&dump).await;
        lookout_hub::store::Store::close(&store).await;
        anyhow::Ok(loaded?)
    })?;
    println!("imported {loaded} rows from {}", file.display());
    Ok(())
}

/// `lookout migrate`: brings the database's schema up to date and says where it stands.
fn migrate(db: &DatabaseArgs) -> anyhow::Result<()> {
    let config = db.config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = open_database(&config).await?;
        let version = store.schema_version().await?;
        lookout_hub::store::Store::close(&store).await;
        println!(
            "{}: schema version {version}, up to date",
            config.database.display()
        );
        anyhow::Ok(())
    })
}

/// Reads a new password: prompted twice on a terminal, else one line of stdin.
fn read_password(username: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {username}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords do not match");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password on standard input (pipe it in, e.g. `printf '%s\\n' \"$PW\" | lookout user add ...`)"
    );
    Ok(password)
}

fn user(command: &UserCommand, db: &DatabaseArgs) -> anyhow::Result<()> {
    use lookout_hub::auth::UserRequest;
    use lookout_hub::store::accounts::{DeleteUser, Role};
    let config = db.config()?;
    let (sub, name, email, admin) = match command {
        UserCommand::Add { name, admin, email } => ("add", name.clone(), email.clone(), *admin),
        UserCommand::List => ("list", String::new(), None, false),
        UserCommand::Passwd { name } => ("passwd", name.clone(), None, false),
        UserCommand::ResetTwoFactor { name } => ("reset-2fa", name.clone(), None, false),
        UserCommand::Remove { name } => ("remove", name.clone(), None, false),
    };
    let password = match sub {
        "add" | "passwd" => Some(read_password(&name)?),
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = lookout_hub::app::open_store(&config).await?;
        let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
        let result = async {
            match sub {
                "add" => {
                    let request = UserRequest {
                        username: name.clone(),
                        email: email.clone(),
                        password: password.unwrap_or_default(),
                        role: if admin {
                            Role::Admin
                        } else {
                            Role::Viewer
                        },
                    };
                    if let Some(p) = request.problems().first() {
                        anyhow::bail!("invalid {}: {}", p.field, p.message);
                    }
                    let role = request.role;
                    let new = request.into_new_user().await?;
                    let user = store.create_user(&new, now).await.map_err(|e| match e {
                        lookout_hub::store::StoreError::Conflict { field, value } => {
                            anyhow::anyhow!("{field} {value:?} is already taken")
                        }
                        e => e.into(),
                    })?;
                    println!("created {} {}", role.as_str(), user.username);
                }
                "list" => {
                    println!(
                        "{:<24} {:<8} {:<32} {:<4} CREATED",
                        "USERNAME", "ROLE", "E-MAIL", "2FA"
                    );
                    for u in store.list_users().await? {
                        println!(
                            "{:<24} {:<8} {:<32} {:<4} {}",
                            u.username,
                            u.role.as_str(),
                            u.email.as_deref().unwrap_or("-"),
                            if u.two_factor() { "on" } else { "-" },
                            u.created_at.format("%Y-%m-%d %H:%M UTC")
                        );
                    }
                }
                "passwd" => {
                    let password = password.unwrap_or_default();
                    if let Err(why) = lookout_hub::auth::password::check_policy(&password) {
                        anyhow::bail!("invalid password: {why}");
                    }
                    let user = store
                        .find_user(&name)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no user {name:?}"))?;
                    let hash = lookout_hub::auth::password::hash(password).await?;
                    store.set_password(user.id, &hash, now).await?;
                    println!(
                        "new password set for {}; their sessions and tokens are revoked",
                        user.username
                    );
                }
                "reset-2fa" => {
                    let user = store
                        .find_user(&name)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no user {name:?}"))?;
                    if !user.two_factor() {
                        anyhow::bail!("{} does not use two-factor sign-in", user.username);
                    }
                    store.set_two_factor(user.id, None, &[]).await?;
                    let entry = lookout_hub::store::accounts::NewAuditEntry {
                        actor: None,
                        action: "user.2fa.reset",
                        target: Some(user.username.clone()),
                        client: Some("command line".into()),
                        outcome: lookout_hub::store::accounts::AuditOutcome::Ok,
                    };
                    store.append_audit(&entry, now).await?;
                    println!(
                        "two-factor sign-in is off for {}: they sign in with their password and can set it up again",
                        user.username
                    );
                }
                "remove" => {
                    let user = store
                        .find_user(&name)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no user {name:?}"))?;
                    match store.delete_user(user.id).await? {
                        DeleteUser::Deleted => println!("removed {}", user.username),
                        DeleteUser::NotFound => anyhow::bail!("no user {name:?}"),
                        DeleteUser::LastAdmin => anyhow::bail!(
                            "{} is the last admin; make another admin first",
                            user.username
                        ),
                    }
                }
                _ => unreachable!("clap knows the subcommands"),
            }
            anyhow::Ok(())
        }
        .await;
        store.close().await;
        result
    })
}

fn main() -> ExitCode {
    malloc::limit_arenas();
    let cli = Cli::parse();
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match &cli.command {
        Commands::Serve(args) => done(serve(args)),
        Commands::Scan {
            systemd,
            web_ports,
            json,
        } => done(scan(systemd, web_ports.as_deref(), *json)),
        Commands::Containers {
            containers: c,
            json,
        } => done(containers(c, *json)),
        Commands::User { command, db } => done(user(command, db)),
        Commands::StatusPage { command, db } => done(
            db.config()
                .and_then(|config| status_page::run(command, config)),
        ),
        Commands::Migrate { db } => done(migrate(db)),
        Commands::Export { output, db } => done(export(output, db)),
        Commands::Import {
            file,
            uptime_kuma,
            db,
        } => done(import(file.as_ref(), uptime_kuma.as_ref(), db)),
        Commands::Check(args) => check::run(args),
        Commands::Agent(args) => agent::run(args),
        Commands::Probe(args) => probe::run(args),
        Commands::Monitors { command, db } => done(monitors(command, db)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lookout: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), args.overrides.clone())?;
    init_logging(&config.log)?;
    fit_concurrency_to_fd_limit(&mut config);
    let on_network = !config.listen.ip().is_loopback();
    if on_network && config.auth.mode == lookout_hub::auth::AuthMode::Off {
        tracing::warn!(
            address = %config.listen,
            "SERVING WITHOUT AUTHENTICATION ON THE NETWORK (--insecure-no-auth-on-network): \
             anyone who can reach this address controls the hub and its systemd units"
        );
    }
    if on_network && config.tls.is_none() && config.auth.trusted_proxies.is_empty() {
        tracing::warn!(
            address = %config.listen,
            "serving plain HTTP on the network: passwords and tokens cross it in clear text; \
             use --tls-cert/--tls-key or a TLS reverse proxy (see README)"
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        tokio::spawn(malloc::return_freed_memory());
        let app = Application::build(config.clone()).await?;
        tracing::info!(
            address = %app.local_addr(),
            database = %config.database.display(),
            auth = config.auth.mode.as_str(),
            "lookout hub listening on {}://{}",
            app.scheme(),
            app.local_addr()
        );
        app.run_until(shutdown_signal()).await
    })
}

/// Each health check in flight holds a socket. Raise the soft limit on open
/// files to the hard limit (as Go's runtime does), and if that is still too low
/// for the configured concurrency, lower the concurrency rather than fail
/// checks with "too many open files".
fn fit_concurrency_to_fd_limit(config: &mut Config) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    // Leave room for the database, the listener and the clients of the API.
    let affordable = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    if config.checks.concurrency > affordable {
        tracing::warn!(
            limit,
            configured = config.checks.concurrency,
            using = affordable,
            "the open-files limit is too low for check_concurrency; lowering it"
        );
        config.checks.concurrency = affordable;
    }
}

fn containers(containers: &str, json: bool) -> anyhow::Result<()> {
    let socket = match containers {
        "auto" => lookout_containers::auto_socket().ok_or_else(|| {
            anyhow::anyhow!(
                "no container engine found: set DOCKER_HOST or --containers to the engine's socket"
            )
        })?,
        path if path.starts_with('/') => PathBuf::from(path),
        other => {
            anyhow::bail!("--containers: expected auto or the absolute path of the engine's socket, got {other:?}")
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let list = runtime.block_on(async {
        let engine = lookout_containers::Engine::connect(&socket)?;
        engine.list().await
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
            vec![
                dash(c.compose_project.clone().unwrap_or_default()),
                c.name.clone(),
                match &c.health {
                    Some(h) => format!("{} ({h})", c.state),
                    None => c.state.clone(),
                },
                c.image.clone(),
                dash(c.ports_text()),
                c.restarts.to_string(),
            ]
        })
        .collect();
    // By Compose project, those of none last.
    rows.sort_by(|a, b| ((a[0] == "-"), &a[0], &a[1]).cmp(&((b[0] == "-"), &b[0], &b[1])));
    print_table(
        &[
            "PROJECT",
            "CONTAINER",
            "STATE",
            "IMAGE",
            "PORTS",
            "RESTARTS",
        ],
        &rows,
    );
    Ok(())
}

fn scan(systemd: &SystemdArg, web_ports: Option<&str>, json: bool) -> anyhow::Result<()> {
    let scope = match systemd.systemd.as_str() {
        "user" => lookout_systemd::Scope::User,
        "none" => anyhow::bail!("--systemd none: there is nothing to scan"),
        _ => lookout_systemd::Scope::System,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let scan = runtime.block_on(async {
        let systemd = lookout_systemd::Systemd::connect(scope).await?;
        anyhow::Ok(systemd.scan().await?)
    })?;
    let web_ports = match web_ports {
        Some(v) => lookout_hub::discovery::WebPorts::parse(v)
            .map_err(|e| anyhow::anyhow!("invalid --web-ports {v:?}: {e}"))?,
        None => lookout_hub::discovery::WebPorts::default(),
    };
    let services: Vec<serde_json::Value> = scan
        .services
        .iter()
        .map(|s| {
            let c = lookout_hub::discovery::classify(s, &web_ports);
            serde_json::json!({
                "name": s.name, "description": s.description, "load_state": s.load_state,
                "active_state": s.active_state, "sub_state": s.sub_state,
                "unit_file_state": s.unit_file_state, "status": c.status, "port": c.port,
                "ports": c.ports, "main_pid": s.main_pid, "pids": s.pids,
            })
        })
        .collect();
    if json {
        let out = serde_json::json!({
            "scope": scan.scope, "services": services, "timers": scan.timers, "warnings": scan.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let ports: Vec<String> = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_u64())
                .map(|p| p.to_string())
                .collect();
            vec![
                text(&s["name"]),
                text(&s["active_state"]),
                text(&s["sub_state"]),
                text(&s["status"]),
                if ports.is_empty() {
                    "-".to_owned()
                } else {
                    ports.join(",")
                },
            ]
        })
        .collect();
    print_table(&["SERVICE", "ACTIVE", "SUB", "CLASS", "PORTS"], &rows);
    if !scan.timers.is_empty() {
        println!();
        let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(
                || "-".to_owned(),
                |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
            )
        };
        let rows: Vec<Vec<String>> = scan
            .timers
            .iter()
            .map(|t| {
                let result = match (&t.last_result, t.last_exit_status) {
                    (None, _) => "not run yet".to_owned(),
                    (Some(r), Some(code)) if code != 0 => format!("{r} (status {code})"),
                    (Some(r), _) => r.clone(),
                };
                vec![
                    t.name.clone(),
                    t.active_state.clone(),
                    t.unit.clone(),
                    when(t.last_trigger),
                    when(t.next_elapse),
                    result,
                ]
            })
            .collect();
        print_table(
            &[
                "TIMER",
                "ACTIVE",
                "STARTS",
                "LAST RUN",
                "NEXT RUN",
                "LAST RESULT",
            ],
            &rows,
        );
    }
    for w in &scan.warnings {
        eprintln!("lookout: warning: {w}");
    }
    Ok(())
}

/// Prints `rows` under `headers`, each column as wide as its widest cell, so
/// no long unit name pushes the others out of line.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    (*c).to_owned()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  "));
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    // Colour only on a terminal, and never with NO_COLOR set (no-color.org):
    // the journal, and the Logs page reading it, would show escape codes.
    use std::io::IsTerminal as _;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .init();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
