//! The agent daemon (`lookout agent run`): follows the logs of the installed
//! checks and sends every result to the hub over one WebSocket, with the
//! host's systemd scan (sent again within moments of a unit's change) and a
//! heartbeat.
//!
//! The logs are the buffer: nothing is kept elsewhere. On every connection
//! the hub says the newest result it holds per check, and the agent sends
//! every line after it, so an hour without the hub loses nothing; the hub
//! stores a result once however often it is sent. Reconnects back off
//! exponentially with jitter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use lookout_proto::agent::{
    AgentAuth, AgentMessage, CheckDecl, ControlAction, ControlResult, Cursor, HubMessage,
    StatusUpdate,
};
use lookout_proto::check::parse_metadata;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::checks::installed;
use crate::tail::Tailer;
use crate::Layout;

/// What `lookout agent register` stores and `lookout agent run` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The hub's base URL, `http(s)://host:port`.
    pub hub: String,
    pub agent_id: String,
    pub api_key: String,
    pub server_name: String,
    /// A PEM certificate to trust for the hub (a self-signed hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// Why the agent stopped or could not start; each reads as one line.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Claim(String),
    /// The hub refused the agent's key: unknown, revoked or never claimed.
    #[error("the hub refused this agent: {0}")]
    Refused(String),
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AgentError::Credentials(format!(
                "cannot read the credentials {}: {e} (run `lookout agent register` first)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            AgentError::Credentials(format!("invalid credentials file {}: {e}", path.display()))
        })
    }

    /// Writes the file with mode 0600 (its directory 0700), atomically.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let fail = |e: std::io::Error| {
            AgentError::Credentials(format!("cannot write {}: {e}", path.display()))
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        let tmp = dir.join(format!(".credentials.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }
}

/// Where the credentials live by default: `/var/lib/lookout-agent/credentials.json`
/// for the system, `$XDG_STATE_HOME/lookout/agent.json` for a user.
pub fn default_credentials(user: bool) -> Result<PathBuf, crate::layout::NoHome> {
    if !user {
        return Ok(PathBuf::from("/var/lib/lookout-agent/credentials.json"));
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .map(|d| d.join("lookout/agent.json"))
        .ok_or(crate::layout::NoHome("XDG_STATE_HOME"))
}

/// Checks a hub URL: `http` or `https`, a host, nothing else.
pub fn hub_url(hub: &str) -> Result<reqwest::Url, lookout_proto::error::Invalid> {
    let url = reqwest::Url::parse(hub).map_err(|e| format!("invalid hub URL {hub:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("invalid hub URL {hub:?}: expected http(s)://HOST[:PORT]").into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("invalid hub URL {hub:?}: no credentials in the URL").into());
    }
    Ok(url)
}

fn read_ca(ca: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(ca).map_err(|source| ConnectError::ReadCa {
        path: ca.to_owned(),
        source,
    })
}

/// Why the agent could not open its connection to the hub.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    HubUrl(#[from] lookout_proto::error::Invalid),
    #[error("cannot build the WebSocket URL")]
    WebSocketUrl,
    #[error("cannot reach {address}: timed out")]
    Timeout { address: String },
    #[error("cannot reach {address}: {source}")]
    Unreachable {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the CA certificate {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid CA certificate: {0}")]
    CaPem(#[source] rustls_pki_types::pem::Error),
    #[error("invalid CA certificate: {0}")]
    Ca(#[source] rustls::Error),
    #[error("TLS setup: {0}")]
    TlsSetup(#[source] rustls::Error),
    #[error("invalid hub host name: {0}")]
    HostName(#[source] rustls_pki_types::InvalidDnsNameError),
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("WebSocket handshake with {host}: {source}")]
    Handshake {
        host: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
}

/// Trades a one-time claim token for the agent's key and saves the
/// credentials at `path`.
pub async fn register(
    hub: &str,
    claim_token: &str,
    ca: Option<&Path>,
    path: &Path,
) -> Result<Credentials, AgentError> {
    let base = hub_url(hub).map_err(|e| AgentError::Claim(e.into()))?;
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let pem = read_ca(ca).map_err(|e| AgentError::Claim(e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            AgentError::Claim(format!("invalid CA certificate {}: {e}", ca.display()))
        })?;
        client = client.add_root_certificate(cert);
    }
    let client = client
        .build()
        .map_err(|e| AgentError::Claim(format!("cannot make an HTTP client: {e}")))?;
    let url = base
        .join("/api/v1/agents/claim")
        .map_err(|e| AgentError::Claim(e.to_string()))?;
    let hostname = lookout_systemd::hostname();
    let response = client
        .post(url)
        .json(&lookout_proto::agent::ClaimRequest {
            claim_token: claim_token.to_owned(),
            hostname,
        })
        .send()
        .await
        .map_err(|e| AgentError::Claim(format!("cannot reach the hub at {base}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or("no reason given");
        return Err(AgentError::Claim(format!(
            "the hub refused the claim token ({status}): {message}"
        )));
    }
    let claimed: lookout_proto::agent::ClaimResponse = response
        .json()
        .await
        .map_err(|e| AgentError::Claim(format!("unexpected answer from the hub: {e}")))?;
    let credentials = Credentials {
        hub: base.as_str().trim_end_matches('/').to_owned(),
        agent_id: claimed.agent_id,
        api_key: claimed.api_key,
        server_name: claimed.server_name,
        ca: ca.map(Path::to_path_buf),
    };
    credentials.save(path)?;
    Ok(credentials)
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub credentials: Credentials,
    pub layout: Layout,
    /// Send the host's systemd scan (every minute, and when a unit changes).
    pub scan: bool,
    /// The container engine's socket whose containers the scan includes.
    pub containers: Option<std::path::PathBuf>,
    /// How often logs are looked at besides file events.
    pub poll: Duration,
    /// Send what the host and its running units use this often (`None`:
    /// never).
    pub usage_every: Option<Duration>,
    /// What the hub may ask this agent to do: unit names, `container:NAME`,
    /// and `check:NAME`.
    /// Empty: nothing.
    pub allow: Vec<String>,
    /// More hubs sharing one database, tried in turn after the registered
    /// one when a connection is lost (`--hub`); each checked by [`hub_url`].
    pub other_hubs: Vec<String>,
}

impl Options {
    /// The hub URLs to connect to, the registered one first.
    fn hubs(&self) -> Vec<&str> {
        std::iter::once(self.credentials.hub.as_str())
            .chain(self.other_hubs.iter().map(String::as_str))
            .collect()
    }
}

/// Checks an allow-list entry: a unit name, or `check:` and a check's name.
pub fn parse_allowed(entry: &str) -> Result<String, lookout_proto::error::Invalid> {
    let entry = entry.trim();
    if let Some(name) = entry.strip_prefix("container:") {
        return lookout_proto::container::ContainerName::parse(name)
            .map(|c| format!("container:{c}"))
            .map_err(|e| format!("{entry:?}: a container name {e}").into());
    }
    match entry.strip_prefix("check:") {
        Some(name) => lookout_proto::check::CheckName::parse(name)
            .map(|_| entry.to_owned())
            .map_err(|e| format!("{entry:?}: check name {e}").into()),
        None => lookout_systemd::UnitName::parse(entry)
            .map(|u| u.to_string())
            .map_err(|e| format!("{entry:?}: {e}").into()),
    }
}

/// Starts, stops or restarts a container of the host's engine.
async fn perform_on_container(
    engine: Option<&std::path::Path>,
    action: ControlAction,
    name: &str,
) -> (bool, String) {
    let Some(socket) = engine else {
        return (
            false,
            "this agent has no container engine (--containers)".into(),
        );
    };
    let name = match lookout_proto::container::ContainerName::parse(name) {
        Ok(n) => n,
        Err(e) => return (false, format!("a container name {e}")),
    };
    let what = match action {
        ControlAction::Start => lookout_containers::Action::Start,
        ControlAction::Stop => lookout_containers::Action::Stop,
        _ => lookout_containers::Action::Restart,
    };
    let done = async {
        lookout_containers::Engine::connect(socket)?
            .control(&name, what)
            .await
    }
    .await;
    match done {
        Ok(c) => (true, format!("container {}, now {}", name, c.state)),
        Err(e) => (false, e.to_string()),
    }
}

/// Carries out a control request the allow-list permits.
async fn perform(
    layout: &Layout,
    engine: Option<&std::path::Path>,
    action: ControlAction,
    target: &str,
) -> (bool, String) {
    if let Some(name) = target.strip_prefix("container:") {
        if action != ControlAction::Run {
            return perform_on_container(engine, action, name).await;
        }
    }
    if action == ControlAction::Run {
        let name = target.strip_prefix("check:").unwrap_or(target);
        return match crate::checks::run_now(layout, name).await {
            Ok(Some(line)) => (true, format!("{} {}", line.status.as_str(), line.message)),
            Ok(None) => (true, "ran; no result in its log yet".into()),
            Err(e) => (false, e.to_string()),
        };
    }
    let unit = match lookout_systemd::UnitName::parse(target) {
        Ok(u) => u,
        Err(e) => return (false, e.to_string()),
    };
    let what = match action {
        ControlAction::Start => lookout_systemd::Action::Start,
        ControlAction::Stop => lookout_systemd::Action::Stop,
        _ => lookout_systemd::Action::Restart,
    };
    let done = async {
        let systemd = lookout_systemd::Systemd::connect(layout.scope).await?;
        systemd.control(&unit, what, Duration::from_secs(60)).await
    }
    .await;
    match done {
        Ok(o) => (
            o.job_result == "done",
            format!(
                "job {}, now {} ({})",
                o.job_result, o.status.active_state, o.status.sub_state
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Opens the WebSocket: TCP, TLS for https hubs (system roots, or the
/// configured CA), then the upgrade.
async fn connect(credentials: &Credentials, hub: &str) -> Result<Socket, ConnectError> {
    let base = hub_url(hub)?;
    let host = base.host_str().unwrap_or_default().to_owned();
    let tls = base.scheme() == "https";
    let port = base
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let mut ws_url = base.clone();
    ws_url
        .set_scheme(if tls { "wss" } else { "ws" })
        .map_err(|()| ConnectError::WebSocketUrl)?;
    ws_url.set_path("/api/v1/agent/connect");
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)),
    )
    .await
    .map_err(|_| ConnectError::Timeout {
        address: format!("{host}:{port}"),
    })?
    .map_err(|source| ConnectError::Unreachable {
        address: format!("{host}:{port}"),
        source,
    })?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let mut roots = rustls::RootCertStore::empty();
        match &credentials.ca {
            Some(ca) => {
                use rustls_pki_types::pem::PemObject as _;
                let pem = read_ca(ca)?;
                for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(ConnectError::CaPem)?;
                    roots.add(cert).map_err(ConnectError::Ca)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ConnectError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(ConnectError::HostName)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                host: host.clone(),
                source,
            })?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let handshake = |source| ConnectError::Handshake {
        host: host.clone(),
        source,
    };
    let request = ws_url.as_str().into_client_request().map_err(handshake)?;
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(handshake)?;
    Ok(socket)
}

/// How a session ended.
enum End {
    /// Asked to stop.
    Shutdown,
    /// The hub refused the credentials: retrying will not help.
    Refused(String),
    /// Anything else: reconnect.
    Lost(String),
}

/// The checks installed now, with their headers.
/// `None` when the unit directory cannot be read: an empty list would make
/// the hub drop every check of this host.
async fn declared(layout: &Layout) -> Option<Vec<CheckDecl>> {
    let names = match installed(layout).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the installed checks");
            return None;
        }
    };
    let decls = names
        .into_iter()
        .map(|name| {
            let meta = std::fs::read_to_string(layout.script(&name))
                .ok()
                .and_then(|t| parse_metadata(&t).ok());
            CheckDecl {
                name: name.to_string(),
                display_name: meta.as_ref().map(|m| m.display_name.clone()),
                description: meta.as_ref().and_then(|m| m.description.clone()),
                schedule: meta.map(|m| m.schedule),
            }
        })
        .collect();
    Some(decls)
}

fn text(message: &AgentMessage) -> Message {
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

/// The follower state that outlives a connection: one tailer per check and
/// the results read but not yet handed to a hub.
#[derive(Debug, Default)]
struct Followers {
    tailers: BTreeMap<String, Tailer>,
    pending: Vec<StatusUpdate>,
}

impl Followers {
    /// Follows exactly the checks in `names`.
    fn track(&mut self, layout: &Layout, names: &BTreeSet<String>) {
        self.tailers.retain(|name, _| names.contains(name));
        for name in names {
            if let Ok(check) = lookout_proto::check::CheckName::parse(name) {
                self.tailers
                    .entry(name.clone())
                    .or_insert_with(|| Tailer::new(name.clone(), layout.log(&check)));
            }
        }
    }

    /// Everything new in every log.
    fn poll(&mut self) -> Vec<StatusUpdate> {
        let mut out = std::mem::take(&mut self.pending);
        for tailer in self.tailers.values_mut() {
            out.extend(tailer.poll());
        }
        out
    }

    /// Whole logs again from their start, the last rotated file
    /// (`NAME.log.1`) first, after what a rotated file still held: for a new
    /// connection to pick from with its cursors.
    fn replay(&mut self) -> Vec<StatusUpdate> {
        let mut out = self.poll();
        for tailer in self.tailers.values_mut() {
            let mut rotated = tailer.path.clone().into_os_string();
            rotated.push(".1");
            let mut previous = Tailer::new(tailer.check.clone(), PathBuf::from(rotated));
            out.extend(previous.poll());
            *tailer = previous.continued(tailer.path.clone());
            out.extend(tailer.poll());
        }
        out
    }

    /// Reads what is new while no hub listens, so a log truncated in place
    /// (copytruncate) during an outage loses nothing; kept for the next
    /// connection, at most `MAX_PENDING` (the rest is still in the logs).
    fn hold(&mut self) {
        let mut fresh = self.poll();
        if fresh.len() > MAX_PENDING {
            fresh.drain(..fresh.len() - MAX_PENDING);
        }
        self.pending = fresh;
    }
}

/// Results that come after the hub's cursors, oldest first per check.
fn after_cursors(
    updates: Vec<StatusUpdate>,
    cursors: &BTreeMap<String, Cursor>,
) -> Vec<StatusUpdate> {
    let mut out: Vec<StatusUpdate> = updates
        .into_iter()
        .filter(|u| {
            cursors
                .get(&u.service_name)
                .is_none_or(|c| c.before(u.timestamp, u.ordinal))
        })
        .collect();
    out.sort_by(|a, b| {
        (a.timestamp, a.ordinal, &a.service_name).cmp(&(b.timestamp, b.ordinal, &b.service_name))
    });
    out.dedup();
    out
}

const BATCH: usize = 500;
/// Results held in memory while the hub is away.
const MAX_PENDING: usize = 100_000;

async fn session(
    opts: &Options,
    hub: &str,
    followers: &mut Followers,
    shutdown: &CancellationToken,
) -> End {
    let socket = tokio::select! {
        () = shutdown.cancelled() => return End::Shutdown,
        s = connect(&opts.credentials, hub) => s,
    };
    let (mut tx, mut rx) = match socket {
        Ok(s) => s.split(),
        Err(e) => return End::Lost(e.to_string()),
    };
    let hostname = lookout_systemd::hostname();
    let auth = AgentMessage::Auth(AgentAuth {
        agent_id: opts.credentials.agent_id.clone(),
        api_key: opts.credentials.api_key.clone(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        hostname,
        allow: opts.allow.clone(),
    });
    if let Err(e) = tx.send(text(&auth)).await {
        return End::Lost(format!("cannot send: {e}"));
    }
    let answer = tokio::time::timeout(Duration::from_secs(15), rx.next()).await;
    let (heartbeat, cursors) = match answer {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<HubMessage>(&t) {
            Ok(HubMessage::AuthOk {
                heartbeat_secs,
                cursors,
                server_name,
                ..
            }) => {
                tracing::info!(server = %server_name, %hub, "connected to the hub");
                (Duration::from_secs(heartbeat_secs.clamp(1, 3600)), cursors)
            }
            Ok(HubMessage::AuthFailed { reason }) => return End::Refused(reason),
            _ => return End::Lost(format!("unexpected answer to auth: {t}")),
        },
        // Only an `auth_failed` is a refusal; a close without one (the hub
        // could not check the key now) is worth another try.
        Ok(Some(Ok(Message::Close(frame)))) => {
            let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
            return End::Lost(format!("the hub closed the connection: {reason}"));
        }
        Ok(other) => return End::Lost(format!("no answer to auth: {other:?}")),
        Err(_) => return End::Lost("no answer to auth within 15 s".into()),
    };

    // What is installed, then every result the hub does not have yet.
    let Some(mut checks) = declared(&opts.layout).await else {
        return End::Lost("cannot list the installed checks".into());
    };
    let names: BTreeSet<String> = checks.iter().map(|c| c.name.clone()).collect();
    followers.track(&opts.layout, &names);
    if let Err(e) = tx
        .send(text(&AgentMessage::Checks {
            checks: checks.clone(),
        }))
        .await
    {
        return End::Lost(format!("cannot send: {e}"));
    }
    let backlog = after_cursors(followers.replay(), &cursors);
    if !backlog.is_empty() {
        tracing::info!(
            results = backlog.len(),
            "sending results the hub does not have"
        );
    }
    for chunk in backlog.chunks(BATCH) {
        let message = AgentMessage::StatusUpdates {
            updates: chunk.to_vec(),
        };
        if let Err(e) = tx.send(text(&message)).await {
            return End::Lost(format!("cannot send: {e}"));
        }
    }

    // Follow: file events wake the loop at once; a tick catches the rest.
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
    let _ = std::fs::create_dir_all(&opts.layout.logs);
    let watcher = {
        use notify::Watcher as _;
        let wake_tx = wake_tx.clone();
        notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = wake_tx.try_send(());
        })
        .and_then(|mut w| {
            w.watch(&opts.layout.logs, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        })
    };
    if let Err(e) = &watcher {
        tracing::warn!(error = %e, "cannot watch the log directory; polling it");
    }
    let (done_tx, mut done) = tokio::sync::mpsc::channel::<ControlResult>(16);
    let mut last_declared = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(opts.poll);
    let mut beat = tokio::time::interval(heartbeat);
    let mut scan_every = tokio::time::interval(SCAN_EVERY);
    let mut usage_every =
        tokio::time::interval(opts.usage_every.unwrap_or(Duration::from_secs(3600)));
    let mut sampler = lookout_usage::Sampler::new(
        lookout_usage::Cgroups::detect(),
        lookout_usage::HostReader::default(),
    );
    let mut host = Host {
        engine: opts
            .containers
            .as_deref()
            .and_then(|socket| lookout_containers::Engine::connect(socket).ok()),
        ..Host::default()
    };
    loop {
        let scan_at = host.scan_at();
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return End::Shutdown;
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<HubMessage>(&t) {
                    Ok(HubMessage::Error { message }) => {
                        tracing::warn!(%message, "the hub could not use a message");
                    }
                    Ok(HubMessage::Control { id, action, target, requested_by }) => {
                        let key = if action == ControlAction::Run && !target.starts_with("check:") {
                            format!("check:{target}")
                        } else {
                            target.clone()
                        };
                        if !opts.allow.contains(&key) {
                            tracing::warn!(%requested_by, action = action.as_str(), %target, "control refused: not in the allow-list");
                            let refused = ControlResult {
                                id,
                                ok: false,
                                refused: true,
                                message: format!("{key} is not in this agent's allow-list (--allow-control)"),
                            };
                            if let Err(e) = tx.send(text(&AgentMessage::ControlResult(refused))).await {
                                return End::Lost(format!("cannot send: {e}"));
                            }
                        } else {
                            tracing::info!(%requested_by, action = action.as_str(), %target, "control requested by the hub");
                            let (layout, done_tx) = (opts.layout.clone(), done_tx.clone());
                            let engine = opts.containers.clone();
                            tokio::spawn(async move {
                                let (ok, message) =
                                    perform(&layout, engine.as_deref(), action, &target).await;
                                let _ = done_tx
                                    .send(ControlResult { id, ok, refused: false, message })
                                    .await;
                            });
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (f.code, f.reason.to_string()))
                        .unwrap_or((CloseCode::Normal, String::new()));
                    return End::Lost(format!("the hub closed the connection ({code}): {reason}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return End::Lost(e.to_string()),
                None => return End::Lost("the connection closed".into()),
            },
            _ = beat.tick() => {
                if let Err(e) = tx.send(text(&AgentMessage::Heartbeat {})).await {
                    return End::Lost(format!("cannot send: {e}"));
                }
            }
            _ = scan_every.tick(), if opts.scan => host.due(Duration::ZERO),
            change = host.next_change(), if opts.scan => match change {
                Change::Signal | Change::Container => host.due(SETTLE),
                // The connection closed: the next scan connects again.
                Change::SystemdGone => host.forget(),
                // The engine's stream ended: the next scan subscribes again.
                Change::EngineGone => host.container_events = None,
            },
            () = sleep_until(scan_at), if opts.scan => {
                if let Some(scan) = host.scan(opts.layout.scope).await {
                    if let Err(e) = tx.send(text(&AgentMessage::Scan { scan })).await {
                        return End::Lost(format!("cannot send: {e}"));
                    }
                }
            }
            _ = usage_every.tick(), if opts.usage_every.is_some() => {
                let usage = host.usage(&mut sampler);
                if let Err(e) = tx.send(text(&usage)).await {
                    return End::Lost(format!("cannot send: {e}"));
                }
            }
            Some(result) = done.recv() => {
                if let Err(e) = tx.send(text(&AgentMessage::ControlResult(result))).await {
                    return End::Lost(format!("cannot send: {e}"));
                }
            }
            _ = tick.tick() => {}
            _ = wake.recv() => {}
        }
        // Checks added or removed since: tell the hub, follow their logs.
        // Listing the unit directory is cheap; the scripts' headers are read
        // again only when the list changed, or once a minute.
        let names_now: Option<BTreeSet<String>> = installed(&opts.layout)
            .await
            .ok()
            .map(|n| n.iter().map(ToString::to_string).collect());
        let listed: BTreeSet<String> = checks.iter().map(|c| c.name.clone()).collect();
        let stale = names_now.is_some_and(|n| n != listed)
            || last_declared.elapsed() >= Duration::from_secs(60);
        let now_declared = if stale {
            last_declared = tokio::time::Instant::now();
            declared(&opts.layout)
                .await
                .unwrap_or_else(|| checks.clone())
        } else {
            checks.clone()
        };
        if now_declared != checks {
            checks = now_declared;
            let names: BTreeSet<String> = checks.iter().map(|c| c.name.clone()).collect();
            followers.track(&opts.layout, &names);
            if let Err(e) = tx
                .send(text(&AgentMessage::Checks {
                    checks: checks.clone(),
                }))
                .await
            {
                return End::Lost(format!("cannot send: {e}"));
            }
        }
        let fresh = followers.poll();
        for chunk in fresh.chunks(BATCH) {
            let message = if chunk.len() == 1 {
                AgentMessage::StatusUpdate(chunk[0].clone())
            } else {
                AgentMessage::StatusUpdates {
                    updates: chunk.to_vec(),
                }
            };
            if let Err(e) = tx.send(text(&message)).await {
                // Keep them for the next connection (they may be in a
                // rotated file by then).
                followers.pending.extend(fresh);
                return End::Lost(format!("cannot send: {e}"));
            }
        }
    }
}

/// A container engine's events, as the agent follows them.
type ContainerEvents = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<lookout_containers::ContainerEvent, lookout_containers::Error>,
            > + Send,
    >,
>;

/// What changed on the host.
enum Change {
    Signal,
    SystemdGone,
    Container,
    EngineGone,
}

/// A full scan of the host however quiet its manager is.
const SCAN_EVERY: Duration = Duration::from_secs(60);
/// A unit's one change comes as several signals: the scan waits this long
/// after the first.
const SETTLE: Duration = Duration::from_millis(150);
/// Scans follow each other at most this often (a crash-looping unit
/// changes many times a second).
const SCAN_GAP: Duration = Duration::from_secs(1);

/// The host's systemd manager, followed live: a unit that changes state
/// (started, stopped, failed, restarted, loaded or removed) sends a fresh
/// scan within moments; the minutely scan is the safety net.
#[derive(Default)]
struct Host {
    systemd: Option<lookout_systemd::Systemd>,
    signals:
        Option<Box<dyn futures::Stream<Item = lookout_systemd::follow::Signal> + Send + Unpin>>,
    /// When the next scan is due.
    due: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
    /// The container engine, whose containers each scan includes.
    engine: Option<lookout_containers::Engine>,
    /// Its events, followed like the manager's signals.
    container_events: Option<ContainerEvents>,
    /// The running service units of the last scan, with a process of each.
    running: Vec<(String, u32)>,
    /// The running containers of the last scan (`container NAME`), with
    /// their main process.
    running_containers: Vec<(String, u32)>,
    /// Each unit's cgroup, by the process it was read from.
    groups: std::collections::HashMap<String, (u32, String)>,
}

impl Host {
    /// What the host and its running units (those of the last scan) used
    /// since the last call.
    fn usage(&mut self, sampler: &mut lookout_usage::Sampler) -> AgentMessage {
        let mut units = Vec::new();
        for (unit, pid) in self.running.iter().chain(&self.running_containers) {
            let known = self
                .groups
                .get(unit)
                .filter(|(p, _)| p == pid)
                .map(|(_, g)| g.clone());
            let group = match known {
                Some(g) => g,
                None => match lookout_usage::cgroup_of(*pid) {
                    Some(g) => {
                        self.groups.insert(unit.clone(), (*pid, g.clone()));
                        g
                    }
                    None => continue,
                },
            };
            units.push((unit.clone(), group));
        }
        self.groups.retain(|u, _| {
            self.running
                .iter()
                .chain(&self.running_containers)
                .any(|(r, _)| r == u)
        });
        #[allow(
            clippy::disallowed_methods,
            reason = "the agent's figures are dated by its host's clock, as its results are"
        )]
        let now = chrono::Utc::now();
        let (host, units) = sampler.sample(now, &units);
        AgentMessage::Usage {
            host,
            units: units
                .into_iter()
                .map(|(unit, mut usage)| {
                    // A container's process another manager moved in a v1
                    // controller: that figure would be an empty cgroup's.
                    if let Some((_, pid)) = self.running_containers.iter().find(|(c, _)| *c == unit)
                    {
                        lookout_usage::without(&mut usage, &lookout_usage::split_controllers(*pid));
                    }
                    lookout_proto::agent::UnitUsageEntry { unit, usage }
                })
                .collect(),
        }
    }

    /// A scan is due within `after` (or sooner, if one already is).
    fn due(&mut self, after: Duration) {
        let at = tokio::time::Instant::now() + after;
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    fn forget(&mut self) {
        self.signals = None;
        self.systemd = None;
    }

    /// The next change of the host: a signal of its manager or an event of
    /// its container engine; never, while neither is followed.
    async fn next_change(&mut self) -> Change {
        let container = async {
            match &mut self.container_events {
                Some(events) => match events.next().await {
                    Some(Ok(_)) => Change::Container,
                    Some(Err(_)) | None => Change::EngineGone,
                },
                None => std::future::pending().await,
            }
        };
        let signal = async {
            match &mut self.signals {
                Some(signals) => match signals.next().await {
                    Some(_) => Change::Signal,
                    None => Change::SystemdGone,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = container => c,
            c = signal => c,
        }
    }

    /// The engine's containers, following its events from now on.
    async fn containers(&mut self) -> Option<serde_json::Value> {
        let engine = self.engine.clone()?;
        if self.container_events.is_none() {
            self.container_events = Some(Box::pin(engine.events()));
        }
        match engine.list().await {
            Ok(list) => {
                self.running_containers = list
                    .iter()
                    .filter(|c| c.up())
                    .filter_map(|c| Some((format!("container {}", c.name), c.pid?)))
                    .collect();
                Some(serde_json::to_value(&list).unwrap_or_default())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the containers");
                self.container_events = None;
                None
            }
        }
    }

    /// When the next scan runs: when it is due, and at least [`SCAN_GAP`]
    /// after the last.
    fn scan_at(&self) -> Option<tokio::time::Instant> {
        let due = self.due?;
        Some(self.last.map_or(due, |last| due.max(last + SCAN_GAP)))
    }

    /// Scans the host, connecting (and following) first if needed: its
    /// systemd units and timers, and its containers when an engine is
    /// there; `None` when neither can be read (said in the log).
    async fn scan(&mut self, scope: lookout_systemd::Scope) -> Option<serde_json::Value> {
        self.due = None;
        self.last = Some(tokio::time::Instant::now());
        let units = self.systemd_scan(scope).await;
        let containers = self.containers().await;
        match (units, containers) {
            (None, None) => None,
            (units, containers) => {
                let mut scan = units.unwrap_or_else(|| serde_json::json!({}));
                if let (Some(object), Some(containers)) = (scan.as_object_mut(), containers) {
                    object.insert("containers".into(), containers);
                }
                Some(scan)
            }
        }
    }

    async fn systemd_scan(&mut self, scope: lookout_systemd::Scope) -> Option<serde_json::Value> {
        if self.systemd.is_none() {
            let systemd = match lookout_systemd::Systemd::connect(scope).await {
                Ok(systemd) => systemd,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach systemd to scan it");
                    return None;
                }
            };
            // Every unit's changes: the scan says what they mean.
            match systemd.signals().await {
                Ok((signals, _every_unit)) => self.signals = Some(Box::new(signals)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow systemd; scanning it every minute")
                }
            }
            self.systemd = Some(systemd);
        }
        let systemd = self.systemd.as_ref()?;
        match systemd.scan().await {
            Ok(scan) => {
                self.running = scan
                    .services
                    .iter()
                    .filter(|s| s.active_state == "active")
                    .filter_map(|s| {
                        Some((
                            s.name.clone(),
                            s.main_pid.or_else(|| s.pids.first().copied())?,
                        ))
                    })
                    .collect();
                Some(serde_json::to_value(&scan).unwrap_or_default())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan systemd");
                self.forget();
                None
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A random factor in [0.8, 1.2) for the reconnect delay.
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    0.8 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.4
}

/// Runs until `shutdown`, reconnecting with exponential backoff and jitter
/// (0.5 s doubling to 30 s). Returns an error only when the hub refuses the
/// agent's credentials.
pub async fn run(opts: Options, shutdown: CancellationToken) -> Result<(), AgentError> {
    let mut followers = Followers::default();
    let mut delay = Duration::from_millis(500);
    let hubs = opts.hubs();
    let mut turn = 0;
    loop {
        let started = tokio::time::Instant::now();
        let hub = hubs[turn % hubs.len()];
        match session(&opts, hub, &mut followers, &shutdown).await {
            End::Shutdown => return Ok(()),
            End::Refused(reason) => return Err(AgentError::Refused(reason)),
            End::Lost(why) => {
                if started.elapsed() > Duration::from_secs(30) {
                    delay = Duration::from_millis(500);
                }
                // With several hubs the next one is tried; the backoff
                // grows once every hub was tried.
                turn += 1;
                let wait = if turn % hubs.len() != 0 {
                    Duration::from_millis(100)
                } else {
                    let wait = delay.mul_f64(jitter());
                    delay = (delay * 2).min(Duration::from_secs(30));
                    wait
                };
                tracing::warn!(%why, %hub, retry_in_ms = wait.as_millis() as u64, "hub connection lost");
                let until = tokio::time::Instant::now() + wait;
                while tokio::time::Instant::now() < until {
                    followers.hold();
                    let step = opts.poll.min(until - tokio::time::Instant::now());
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(step) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_proto::check::LineStatus;

    fn u(check: &str, at: &str, ordinal: u32) -> StatusUpdate {
        StatusUpdate {
            service_name: check.into(),
            timestamp: at.parse().unwrap(),
            ordinal,
            status: LineStatus::Ok,
            message: String::new(),
        }
    }

    #[test]
    fn only_what_follows_the_cursors_is_sent_once_in_order() {
        let cursors = BTreeMap::from([(
            "a".to_owned(),
            Cursor {
                timestamp: "2026-11-25T10:00:00Z".parse().unwrap(),
                ordinal: 0,
            },
        )]);
        let got = after_cursors(
            vec![
                u("a", "2026-11-25T10:00:01Z", 0),
                u("a", "2026-11-25T09:00:00Z", 0),
                u("a", "2026-11-25T10:00:00Z", 0),
                u("a", "2026-11-25T10:00:00Z", 1),
                u("b", "2026-11-25T08:00:00Z", 0),
                u("a", "2026-11-25T10:00:01Z", 0),
            ],
            &cursors,
        );
        let keys: Vec<(&str, u32)> = got
            .iter()
            .map(|u| (u.service_name.as_str(), u.ordinal))
            .collect();
        assert_eq!(keys, [("b", 0), ("a", 1), ("a", 0)]);
    }

    #[test]
    fn hub_urls() {
        assert!(hub_url("https://hub.example:8443").is_ok());
        assert!(hub_url("http://127.0.0.1:8000/").is_ok());
        for bad in ["ftp://hub", "hub:8000", "http://user:pw@hub", "https://"] {
            assert!(hub_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/agent.json");
        let c = Credentials {
            hub: "https://hub.example".into(),
            agent_id: "agt-1".into(),
            api_key: "lkk_secret".into(),
            server_name: "web-01".into(),
            ca: None,
        };
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(Credentials::load(&path).unwrap(), c);
        assert!(Credentials::load(&dir.path().join("nope")).is_err());
    }
}
