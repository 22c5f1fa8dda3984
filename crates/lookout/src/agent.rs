//! `lookout agent ...`: the agent of one host (register once, then run).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use lookout_agent::daemon::{self, Credentials, Options};
use lookout_agent::Layout;

#[derive(Args)]
#[command(subcommand_required = true)]
pub struct AgentArgs {
    /// your user manager's checks and units instead of the system's
    #[arg(long, global = true)]
    user: bool,
    #[command(subcommand)]
    command: AgentCommand,
}

/// `--credentials FILE`.
#[derive(Args)]
struct CredentialsArg {
    /// credentials file (default /var/lib/lookout-agent/credentials.json, or $XDG_STATE_HOME/lookout/agent.json with --user)
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Trade a one-time claim token (from the hub's Servers page or POST /api/v1/agents/register) for this agent's key
    Register {
        /// the hub, e.g. https://status.example.org
        #[arg(long, value_name = "URL")]
        hub: String,
        #[arg(long, value_name = "TOKEN")]
        claim_token: String,
        /// PEM certificate to trust for the hub (self-signed hubs)
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        #[command(flatten)]
        credentials: CredentialsArg,
    },
    /// Follow the checks' logs and keep the hub up to date (runs until stopped)
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    credentials: CredentialsArg,
    /// what the hub may ask of this host, comma-separated: unit names and container:NAME (start/stop/restart) and check:NAME (run now); default nothing
    #[arg(long, env = "LOOKOUT_AGENT_ALLOW_CONTROL", value_name = "LIST")]
    allow_control: Option<String>,
    /// another hub sharing the same database, tried in turn after the registered one when the connection is lost (repeat, or comma-separated)
    #[arg(
        long = "hub",
        env = "LOOKOUT_AGENT_HUBS",
        value_name = "URL",
        value_delimiter = ','
    )]
    hubs: Vec<String>,
    /// do not send the host's systemd services and timers
    #[arg(long)]
    no_scan: bool,
    /// send what the host and its running services use this often (e.g. 10s, 1m; off to send nothing)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = usage_every)]
    usage_every: UsageEvery,
    /// the container engine whose containers the scan includes (Docker, or Podman's API service): auto ($DOCKER_HOST, else the usual sockets that exist), off, or its socket's path
    #[arg(
        long,
        env = "LOOKOUT_CONTAINERS",
        default_value = "auto",
        value_name = "auto|off|SOCKET"
    )]
    containers: String,
    #[arg(
        long,
        env = "LOOKOUT_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
}

fn credentials_path(c: &CredentialsArg, user: bool) -> anyhow::Result<PathBuf> {
    match &c.credentials {
        Some(p) => Ok(p.clone()),
        None => daemon::default_credentials(user).map_err(|e| anyhow::anyhow!("--user: {e}")),
    }
}

/// The exit status of an agent whose key the hub refused: the shipped unit
/// does not restart it (`RestartPreventExitStatus=`), since retrying cannot help.
pub const EXIT_REFUSED: u8 = 3;

pub fn run(args: &AgentArgs) -> anyhow::Result<std::process::ExitCode> {
    let user = args.user;
    let runtime = tokio::runtime::Runtime::new()?;
    match &args.command {
        AgentCommand::Register {
            hub,
            claim_token,
            ca,
            credentials,
        } => {
            let path = credentials_path(credentials, user)?;
            let c = runtime.block_on(daemon::register(hub, claim_token, ca.as_deref(), &path))?;
            println!(
                "registered as {} ({}) with {}; credentials in {}",
                c.server_name,
                c.agent_id,
                c.hub,
                path.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        AgentCommand::Run(sm) => {
            let path = credentials_path(&sm.credentials, user)?;
            let credentials = Credentials::load(&path)?;
            let layout = if user {
                Layout::user().map_err(|e| anyhow::anyhow!("--user: {e}"))?
            } else {
                Layout::system()
            };
            crate::init_logging(&sm.log)?;
            let allow = sm
                .allow_control
                .as_ref()
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
                .hubs
                .iter()
                .filter(|h| !h.trim().is_empty())
                .map(|h| {
                    daemon::hub_url(h.trim())
                        .map(|u| u.as_str().trim_end_matches('/').to_owned())
                        .map_err(|e| anyhow::anyhow!("--hub: {e}"))
                })
                .collect::<Result<_, _>>()?;
            let containers = match sm.containers.as_str() {
                "auto" => lookout_containers::auto_socket(),
                "off" => None,
                path if path.starts_with('/') => Some(PathBuf::from(path)),
                other => anyhow::bail!(
                    "--containers: expected auto, off or the absolute path of the engine's socket, got {other:?}"
                ),
            };
            let opts = Options {
                credentials,
                layout,
                scan: !sm.no_scan,
                containers,
                poll: Duration::from_secs(1),
                usage_every: sm.usage_every.0,
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
    }
}

/// `--usage-every`: a duration (1 s to 1 h), or `off`.
#[derive(Debug, Clone, Copy)]
struct UsageEvery(Option<Duration>);

fn usage_every(text: &str) -> Result<UsageEvery, String> {
    if text == "off" {
        return Ok(UsageEvery(None));
    }
    lookout_hub::config::parse_duration(text)
        .ok()
        .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
        .map(|d| UsageEvery(Some(d)))
        .ok_or_else(|| format!("{text:?} is not a duration from 1s to 1h, nor off"))
}
