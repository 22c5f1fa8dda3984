//! `lookout`: the one binary. Subcommands stay thin; the work lives in the
//! library crates.

// Outside tests a panic is a bug: what can fail returns an error, and the
// few invariants that cannot say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};
use lookout_hub::config::{Origin, RawValue, SETTINGS};
use lookout_hub::{Application, Config};

mod agent;
mod args;
mod check;
mod kuma;
mod malloc;
mod probe;
mod status_page;

fn cli() -> Command {
    let mut serve = Command::new("serve")
        .about("Run the hub: HTTP API, dashboard, storage and health checker")
        .arg(
            Arg::new("config")
                .long("config")
                .env("LOOKOUT_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file with settings (flags and LOOKOUT_* variables override it)"),
        );
    for spec in SETTINGS {
        if spec.key == lookout_hub::config::INSECURE_FLAG {
            serve = serve.arg(
                Arg::new(spec.key)
                    .long(spec.flag().trim_start_matches("--").to_owned())
                    .env(spec.env())
                    .action(clap::ArgAction::SetTrue)
                    .help(spec.help),
            );
            continue;
        }
        serve = serve.arg(
            Arg::new(spec.key)
                .long(spec.flag().trim_start_matches("--").to_owned())
                .env(spec.env())
                .value_name(spec.key.to_ascii_uppercase())
                .help(spec.help),
        );
    }
    Command::new("lookout")
        .version(lookout_hub::VERSION)
        .about("Self-hosted service registry and status monitor")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(serve)
        .subcommand(user_command())
        .subcommand(with_database_args(status_page::command()))
        .subcommand(check::command())
        .subcommand(agent::command())
        .subcommand(probe::command())
        .subcommand(with_database_args(
            Command::new("export")
                .about("Write the whole database as one JSON document (docs/export.md): a backup, or a move to another database")
                .arg(output_arg()),
        ))
        .subcommand(with_database_args(
            Command::new("import")
                .about("Load an export into a new, empty database (all or nothing), or Uptime Kuma's monitors as services")
                .arg(
                    Arg::new("file")
                        .required_unless_present("uptime_kuma")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("uptime_kuma")
                        .long("uptime-kuma")
                        .value_name("KUMA_DB")
                        .conflicts_with("file")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("register the monitors of Uptime Kuma's database (kuma.db) as services, beside those there are; stop the hub first, or restart it after"),
                ),
        ))
        .subcommand(with_database_args(
            Command::new("monitors")
                .about("Monitors as code: the services made in the dashboard or the API as a file --monitors loads")
                .subcommand_required(true)
                .subcommand(
                    Command::new("export")
                        .about("Write the services made in the dashboard or the API as a monitors file (TOML)")
                        .arg(output_arg()),
                ),
        ))
        .subcommand(with_database_args(Command::new("migrate").about(
            "Bring the database's schema up to date (serve does it too) and print its version",
        )))
        .subcommand(
            Command::new("scan")
                .about("Scan systemd once and print every service, its ports and timers")
                .arg(systemd_arg())
                .arg(
                    Arg::new("web_ports")
                        .long("web-ports")
                        .env("LOOKOUT_WEB_PORTS")
                        .value_name("PORTS")
                        .help("ports that mark a web service (default 80,443,3000-9999)"),
                )
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(clap::ArgAction::SetTrue)
                        .help("print JSON instead of a table"),
                ),
        )
        .subcommand(
            Command::new("containers")
                .about("List the container engine's containers once (Docker, or Podman's API service): state, health, image, ports, restarts, by Compose project")
                .arg(
                    Arg::new("containers")
                        .long("containers")
                        .env("LOOKOUT_CONTAINERS")
                        .default_value("auto")
                        .value_name("auto|SOCKET")
                        .help("the engine's API socket (auto: $DOCKER_HOST, else the usual Podman and Docker sockets that exist)"),
                )
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(clap::ArgAction::SetTrue)
                        .help("print JSON instead of a table"),
                ),
        )
}

/// `--output FILE` of the commands that write a document.
fn output_arg() -> Arg {
    Arg::new("output")
        .long("output")
        .short('o')
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("where to write it (default: standard output)")
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

fn user_command() -> Command {
    let name = || {
        Arg::new("name")
            .required(true)
            .value_name("NAME")
            .help("username")
    };
    let cmd = Command::new("user")
        .about("Manage accounts, against the same data directory or database as `serve`")
        .subcommand_required(true)
        .subcommand(
            Command::new("add")
                .about("Create an account; the password is read from standard input when it is not a terminal, prompted otherwise")
                .arg(name())
                .arg(
                    Arg::new("admin")
                        .long("admin")
                        .action(clap::ArgAction::SetTrue)
                        .help("make it an administrator (default: viewer, read-only)"),
                )
                .arg(
                    Arg::new("email")
                        .long("email")
                        .value_name("ADDRESS")
                        .help("e-mail address (a second login name)"),
                ),
        )
        .subcommand(Command::new("list").about("List accounts"))
        .subcommand(
            Command::new("passwd")
                .about("Set a new password (read like `add`); signs the user out everywhere")
                .arg(name()),
        )
        .subcommand(
            Command::new("reset-2fa")
                .about("Turn off two-factor sign-in for a user who lost their authenticator app and recovery codes; they sign in with the password alone and can set it up again")
                .arg(name()),
        )
        .subcommand(
            Command::new("remove")
                .about("Delete an account and its sessions and tokens")
                .arg(name()),
        );
    with_database_args(cmd)
}

/// The settings that say where the hub's database is.
fn database_settings() -> impl Iterator<Item = &'static lookout_hub::config::SettingSpec> {
    SETTINGS
        .iter()
        .filter(|s| ["data_dir", "database"].contains(&s.key))
}

/// `--config`, `--data-dir` and `--database`, as `serve` reads them: for the
/// commands that open the hub's database from the shell.
fn with_database_args(mut cmd: Command) -> Command {
    cmd = cmd.arg(
        Arg::new("config")
            .long("config")
            .env("LOOKOUT_CONFIG")
            .global(true)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML file with settings, as for serve"),
    );
    for spec in database_settings() {
        cmd = cmd.arg(
            Arg::new(spec.key)
                .long(spec.flag().trim_start_matches("--").to_owned())
                .env(spec.env())
                .global(true)
                .value_name(spec.key.to_ascii_uppercase())
                .help(spec.help),
        );
    }
    cmd
}

/// The database's configuration, from the flags, variables and file `serve` reads.
fn database_config(m: &ArgMatches) -> anyhow::Result<Config> {
    let mut layers = BTreeMap::new();
    for spec in database_settings() {
        let key = spec.key;
        if let (Some(value), Some(source)) = (m.get_one::<String>(key), m.value_source(key)) {
            let origin = match source {
                ValueSource::EnvVariable => Origin::Env,
                _ => Origin::Flag,
            };
            layers.insert(
                spec.key,
                RawValue {
                    value: value.clone(),
                    origin,
                },
            );
        }
    }
    Ok(Config::load(
        m.get_one::<PathBuf>("config").map(PathBuf::as_path),
        layers,
    )?)
}

/// Opens the database the settings name (creating and migrating it).
async fn open_database(config: &Config) -> anyhow::Result<lookout_hub::store::SqlStore> {
    lookout_hub::app::open_database(&config.database).await
}

/// `lookout export`: the whole database as one JSON document.
/// `lookout monitors export`: the services people made, as a monitors file.
fn monitors(m: &ArgMatches) -> anyhow::Result<()> {
    let Some(("export", sub)) = m.subcommand() else {
        unreachable!("clap requires a known subcommand");
    };
    let config = database_config(m)?;
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
    write_private(sub.get_one::<PathBuf>("output"), &text)
}

fn export(m: &ArgMatches) -> anyhow::Result<()> {
    let config = database_config(m)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let dump = runtime.block_on(async {
        let store = open_database(&config).await?;
        let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
        let dump = store.export(now).await;
        lookout_hub::store::Store::close(&store).await;
        anyhow::Ok(dump?)
    })?;
    let text = serde_json::to_string_pretty(&dump)? + "\n";
    write_private(m.get_one::<PathBuf>("output"), &text)
}

/// `lookout import FILE`: loads an export into an empty database.
fn import(m: &ArgMatches) -> anyhow::Result<()> {
    let config = database_config(m)?;
    if let Some(kuma) = m.get_one::<PathBuf>("uptime_kuma") {
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
    let file = crate::args::required::<PathBuf>(m, "file")?;
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
fn migrate(m: &ArgMatches) -> anyhow::Result<()> {
    let config = database_config(m)?;
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

fn user(m: &ArgMatches) -> anyhow::Result<()> {
    use lookout_hub::auth::UserRequest;
    use lookout_hub::store::accounts::{DeleteUser, Role};
    let (sub, sm) = crate::args::subcommand(m)?;
    let config = database_config(sm)?;
    // `list` has no NAME argument.
    let name = sm
        .try_get_one::<String>("name")
        .ok()
        .flatten()
        .cloned()
        .unwrap_or_default();
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
                        email: sm.get_one::<String>("email").cloned(),
                        password: password.unwrap_or_default(),
                        role: if sm.get_flag("admin") {
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

fn systemd_arg() -> Arg {
    Arg::new("systemd")
        .long("systemd")
        .env("LOOKOUT_SYSTEMD")
        .value_name("SCOPE")
        .value_parser(["system", "user", "none"])
        .default_value("system")
        .help("which systemd manager to use: system, user (the session bus) or none")
}

/// The flags and variables that were set, ranked by clap (a flag beats a variable).
fn overrides(m: &ArgMatches) -> BTreeMap<&'static str, RawValue> {
    let mut out = BTreeMap::new();
    for spec in SETTINGS {
        if spec.key == lookout_hub::config::INSECURE_FLAG {
            if m.get_flag(spec.key) {
                out.insert(
                    spec.key,
                    RawValue {
                        value: "true".into(),
                        origin: Origin::Flag,
                    },
                );
            }
            continue;
        }
        let (Some(value), Some(source)) = (m.get_one::<String>(spec.key), m.value_source(spec.key))
        else {
            continue;
        };
        let origin = match source {
            ValueSource::EnvVariable => Origin::Env,
            _ => Origin::Flag,
        };
        out.insert(
            spec.key,
            RawValue {
                value: value.clone(),
                origin,
            },
        );
    }
    out
}

fn main() -> ExitCode {
    malloc::limit_arenas();
    let matches = cli().get_matches();
    let result = match matches.subcommand() {
        Some(("serve", m)) => serve(m).map(|()| ExitCode::SUCCESS),
        Some(("scan", m)) => scan(m).map(|()| ExitCode::SUCCESS),
        Some(("containers", m)) => containers(m).map(|()| ExitCode::SUCCESS),
        Some(("user", m)) => user(m).map(|()| ExitCode::SUCCESS),
        Some(("status-page", m)) => crate::args::subcommand(m)
            .and_then(|(_, sm)| database_config(sm))
            .and_then(|config| status_page::run(m, config))
            .map(|()| ExitCode::SUCCESS),
        Some(("migrate", m)) => migrate(m).map(|()| ExitCode::SUCCESS),
        Some(("export", m)) => export(m).map(|()| ExitCode::SUCCESS),
        Some(("import", m)) => import(m).map(|()| ExitCode::SUCCESS),
        Some(("check", m)) => check::run(m),
        Some(("agent", m)) => agent::run(m),
        Some(("probe", m)) => probe::run(m),
        Some(("monitors", m)) => monitors(m).map(|()| ExitCode::SUCCESS),
        _ => unreachable!("clap requires a known subcommand"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lookout: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(m: &ArgMatches) -> anyhow::Result<()> {
    let mut config = Config::load(
        m.get_one::<PathBuf>("config").map(PathBuf::as_path),
        overrides(m),
    )?;
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

fn containers(m: &ArgMatches) -> anyhow::Result<()> {
    let socket = match m.get_one::<String>("containers").map(String::as_str) {
        None | Some("auto") => lookout_containers::auto_socket().ok_or_else(|| {
            anyhow::anyhow!(
                "no container engine found: set DOCKER_HOST or --containers to the engine's socket"
            )
        })?,
        Some(path) if path.starts_with('/') => PathBuf::from(path),
        Some(other) => {
            anyhow::bail!("--containers: expected auto or the absolute path of the engine's socket, got {other:?}")
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let list = runtime.block_on(async {
        let engine = lookout_containers::Engine::connect(&socket)?;
        engine.list().await
    })?;
    if m.get_flag("json") {
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

fn scan(m: &ArgMatches) -> anyhow::Result<()> {
    let scope = match m.get_one::<String>("systemd").map(String::as_str) {
        Some("user") => lookout_systemd::Scope::User,
        Some("none") => anyhow::bail!("--systemd none: there is nothing to scan"),
        _ => lookout_systemd::Scope::System,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let scan = runtime.block_on(async {
        let systemd = lookout_systemd::Systemd::connect(scope).await?;
        anyhow::Ok(systemd.scan().await?)
    })?;
    let web_ports = match m.get_one::<String>("web_ports") {
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
    if m.get_flag("json") {
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
