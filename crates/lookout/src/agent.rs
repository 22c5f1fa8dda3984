//! `lookout agent ...`: the agent of one host (register once, then run).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use lookout_agent::daemon::{self, Credentials, Options};
use lookout_agent::Layout;

fn credentials_arg() -> Arg {
    Arg::new("credentials")
        .long("credentials")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("credentials file (default /var/lib/lookout-agent/credentials.json, or $XDG_STATE_HOME/lookout/agent.json with --user)")
}

pub fn command() -> Command {
    Command::new("agent")
        .about("Run this host's agent: send check results and the systemd scan to a hub")
        .subcommand_required(true)
        .arg(
            Arg::new("user")
                .long("user")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("your user manager's checks and units instead of the system's"),
        )
        .subcommand(
            Command::new("register")
                .about("Trade a one-time claim token (from the hub's Servers page or POST /api/v1/agents/register) for this agent's key")
                .arg(Arg::new("hub").long("hub").required(true).value_name("URL").help("the hub, e.g. https://status.example.org"))
                .arg(Arg::new("claim_token").long("claim-token").required(true).value_name("TOKEN"))
                .arg(
                    Arg::new("ca")
                        .long("ca")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("PEM certificate to trust for the hub (self-signed hubs)"),
                )
                .arg(credentials_arg()),
        )
        .subcommand(
            Command::new("run")
                .about("Follow the checks' logs and keep the hub up to date (runs until stopped)")
                .arg(credentials_arg())
                .arg(
                    Arg::new("allow_control")
                        .long("allow-control")
                        .env("LOOKOUT_AGENT_ALLOW_CONTROL")
                        .value_name("LIST")
                        .help("what the hub may ask of this host, comma-separated: unit names and container:NAME (start/stop/restart) and check:NAME (run now); default nothing"),
                )
                .arg(
                    Arg::new("hub")
                        .long("hub")
                        .env("LOOKOUT_AGENT_HUBS")
                        .value_name("URL")
                        .value_delimiter(',')
                        .action(ArgAction::Append)
                        .help("another hub sharing the same database, tried in turn after the registered one when the connection is lost (repeat, or comma-separated)"),
                )
                .arg(
                    Arg::new("no_scan")
                        .long("no-scan")
                        .action(ArgAction::SetTrue)
                        .help("do not send the host's systemd services and timers"),
                )
                .arg(
                    Arg::new("containers")
                        .long("containers")
                        .env("LOOKOUT_CONTAINERS")
                        .default_value("auto")
                        .value_name("auto|off|SOCKET")
                        .help("the container engine whose containers the scan includes (Docker, or Podman's API service): auto ($DOCKER_HOST, else the usual sockets that exist), off, or its socket's path"),
                )
                .arg(
                    Arg::new("log")
                        .long("log")
                        .env("LOOKOUT_LOG")
                        .default_value("info")
                        .value_name("FILTER"),
                ),
        )
}

fn credentials_path(m: &ArgMatches, user: bool) -> anyhow::Result<PathBuf> {
    match m.get_one::<PathBuf>("credentials") {
        Some(p) => Ok(p.clone()),
        None => daemon::default_credentials(user).map_err(|e| anyhow::anyhow!("--user: {e}")),
    }
}

/// The exit status of an agent whose key the hub refused: the shipped unit
/// does not restart it (`RestartPreventExitStatus=`), since retrying cannot help.
pub const EXIT_REFUSED: u8 = 3;

pub fn run(m: &ArgMatches) -> anyhow::Result<std::process::ExitCode> {
    let user = m.get_flag("user");
    let (sub, sm) = crate::args::subcommand(m)?;
    let runtime = tokio::runtime::Runtime::new()?;
    match sub {
        "register" => {
            let path = credentials_path(sm, user)?;
            let hub = crate::args::required::<String>(sm, "hub")?;
            let token = crate::args::required::<String>(sm, "claim_token")?;
            let ca = sm.get_one::<PathBuf>("ca");
            let c = runtime.block_on(daemon::register(
                hub,
                token,
                ca.map(PathBuf::as_path),
                &path,
            ))?;
            println!(
                "registered as {} ({}) with {}; credentials in {}",
                c.server_name,
                c.agent_id,
                c.hub,
                path.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        "run" => {
            let path = credentials_path(sm, user)?;
            let credentials = Credentials::load(&path)?;
            let layout = if user {
                Layout::user().map_err(|e| anyhow::anyhow!("--user: {e}"))?
            } else {
                Layout::system()
            };
            crate::init_logging(sm.get_one::<String>("log").map_or("info", String::as_str))?;
            let allow = sm
                .get_one::<String>("allow_control")
                .map(|list| {
                    list.split(',')
                        .filter(|e| !e.trim().is_empty())
                        .map(daemon::parse_allowed)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("invalid --allow-control entry {e}"))?
                .unwrap_or_default();
            let other_hubs: Vec<String> = sm
                .get_many::<String>("hub")
                .into_iter()
                .flatten()
                .filter(|h| !h.trim().is_empty())
                .map(|h| {
                    daemon::hub_url(h.trim())
                        .map(|u| u.as_str().trim_end_matches('/').to_owned())
                        .map_err(|e| anyhow::anyhow!("--hub: {e}"))
                })
                .collect::<Result<_, _>>()?;
            let containers = match sm.get_one::<String>("containers").map(String::as_str) {
                None | Some("auto") => lookout_containers::auto_socket(),
                Some("off") => None,
                Some(path) if path.starts_with('/') => Some(PathBuf::from(path)),
                Some(other) => anyhow::bail!(
                    "--containers: expected auto, off or the absolute path of the engine's socket, got {other:?}"
                ),
            };
            let opts = Options {
                credentials,
                layout,
                scan: !sm.get_flag("no_scan"),
                containers,
                poll: Duration::from_secs(1),
                allow,
                other_hubs,
            };
            let ran = runtime.block_on(async move {
                let stop = tokio_util::sync::CancellationToken::new();
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    crate::shutdown_signal().await;
                    on_signal.cancel();
                });
                tracing::info!(server = %opts.credentials.server_name, hub = %opts.credentials.hub, "lookout agent starting");
                daemon::run(opts, stop).await
            });
            match ran {
                Ok(()) => Ok(std::process::ExitCode::SUCCESS),
                Err(e @ daemon::AgentError::Refused(_)) => {
                    eprintln!("lookout: {e}");
                    Ok(std::process::ExitCode::from(EXIT_REFUSED))
                }
                Err(e) => Err(e.into()),
            }
        }
        _ => unreachable!("clap knows the subcommands"),
    }
}
