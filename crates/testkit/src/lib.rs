//! Test fixtures for lookout, all real parts: a hub on `127.0.0.1:0` with its own
//! data directory, HTTP targets on loopback, and headless Chromium.
//!
//! Used as a dev-dependency only.

pub mod bench;
pub mod brokers;
pub mod browser;
pub mod podman;
pub mod postgres;
pub mod receiver;
pub mod sse;
pub mod systemd;
pub mod target;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lookout_hub::clock::SharedClock;
use lookout_hub::{Application, Config};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use brokers::{Mosquitto, SmtpSink};
pub use browser::Browser;
pub use podman::Podman;
pub use receiver::{Received, Receiver};
pub use sse::{SseClient, SseMessage};
pub use systemd::SystemdSandbox;
pub use target::Target;

/// The fields of a form that has none but its CSRF token (buttons).
pub const NO_FIELDS: &[(&str, &str)] = &[];

/// A running hub with its own temporary data directory.
pub struct TestHub {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    data_dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    tweak: Arc<dyn Fn(&mut Config) + Send + Sync>,
    /// Set when the hub is a `lookout serve` process rather than in this one.
    process: Option<std::process::Child>,
    /// The CSRF cookie this client was given, once a form was posted.
    csrf: std::sync::Mutex<Option<String>>,
    /// The PostgreSQL database the hub uses, when the suite runs on
    /// PostgreSQL (`LOOKOUT_TEST_DATABASE=postgres`); kept across restarts.
    database: Option<String>,
    /// What a `lookout serve` process has logged so far.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // The hub closes keep-alive connections idle for its header timeout
        // (15 s by default): the client lets them go sooner, as browsers do,
        // rather than race the close.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Starts `command` (a `lookout serve ... --listen 127.0.0.1:0` command line,
/// possibly wrapped, e.g. in `nsenter`) and waits for it to announce its
/// address. The process gets SIGTERM when the hub is stopped or dropped.
pub fn spawn_hub_process(
    mut command: std::process::Command,
    data_dir: tempfile::TempDir,
) -> TestHub {
    use std::io::{BufRead, BufReader};
    // A test's registry holds what the test puts there: the hub's own
    // service only when the test asks for it (`--self-check on`).
    if !command.get_envs().any(|(k, _)| k == "LOOKOUT_SELF_CHECK") {
        command.env("LOOKOUT_SELF_CHECK", "off");
    }
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start lookout serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let kept = log.clone();
    std::thread::spawn(move || {
        // `RUST_LOG=... cargo test` shows what hub processes log.
        let echo = std::env::var_os("RUST_LOG").is_some();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if echo {
                eprintln!("hub: {line}");
            }
            kept.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
            let at = line
                .find("listening on http://")
                .map(|at| at + 20)
                .or_else(|| line.find("listening on https://").map(|at| at + 21));
            if let Some(at) = at {
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr.parse().expect("socket address"),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("lookout serve did not announce its address ({status:?})");
        }
    };
    TestHub {
        addr,
        client: http_client(),
        data_dir: Arc::new(data_dir),
        stop: None,
        task: None,
        tweak: Arc::new(|_| {}),
        process: Some(child),
        csrf: std::sync::Mutex::default(),
        database: None,
        log,
    }
}

/// Starts a hub with default settings on a fresh data directory.
pub async fn spawn_hub() -> TestHub {
    spawn_hub_with(|_| {}).await
}

/// Starts a hub after letting the test adjust its configuration.
pub async fn spawn_hub_with(tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> TestHub {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    start(dir, Arc::new(tweak), None, suite_database().await).await
}

/// A fresh PostgreSQL database when the suite runs on PostgreSQL, else none
/// (the hub's SQLite file in its data directory).
async fn suite_database() -> Option<String> {
    if postgres::hubs_on_postgres() {
        Some(postgres::fresh_database().await)
    } else {
        None
    }
}

/// Starts a hub with an injected clock.
pub async fn spawn_hub_with_clock(
    tweak: impl Fn(&mut Config) + Send + Sync + 'static,
    clock: SharedClock,
) -> TestHub {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    start(dir, Arc::new(tweak), Some(clock), suite_database().await).await
}

async fn start(
    data_dir: Arc<tempfile::TempDir>,
    tweak: Arc<dyn Fn(&mut Config) + Send + Sync>,
    clock: Option<SharedClock>,
    database: Option<String>,
) -> TestHub {
    // `RUST_LOG=warn cargo test ... -- --nocapture` shows what in-process hubs log.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let mut config = Config::with_data_dir(
        "127.0.0.1:0".parse().expect("socket address"),
        data_dir.path().to_path_buf(),
    );
    if let Some(url) = &database {
        config.database = lookout_hub::config::DatabaseUrl::Postgres(url.clone());
    }
    tweak(&mut config);
    let app = match clock {
        Some(clock) => Application::build_with_clock(config, clock).await,
        None => Application::build(config).await,
    }
    .expect("hub builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestHub {
        addr,
        client: http_client(),
        data_dir,
        stop: Some(stop),
        task: Some(task),
        tweak,
        process: None,
        csrf: std::sync::Mutex::default(),
        database,
        log: Arc::default(),
    }
}

impl TestHub {
    /// The lines a `lookout serve` process logged so far (none for a hub
    /// in this process).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The PID of a hub running as its own process.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(std::process::Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The PostgreSQL URL the hub stores in, when the suite runs on PostgreSQL.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.path().join(lookout_hub::config::DB_FILE)
    }

    /// Stops the hub gracefully and waits until its database is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("hub task").expect("hub stopped cleanly");
        }
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
        }
    }

    /// Sends SIGTERM to a hub running as its own process and returns how it exited
    /// (`None` if it had to be killed or is not a process).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.process
            .take()
            .and_then(|mut child| terminate(&mut child))
    }

    /// SIGKILLs a hub running as its own process: it stops mid-whatever,
    /// without giving anything back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the hub and starts a new one on the same data directory.
    pub async fn restart(mut self) -> TestHub {
        self.stop().await;
        start(
            self.data_dir.clone(),
            self.tweak.clone(),
            None,
            self.database.clone(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// A page's HTML (or any text body) from a successful GET.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.text().await.expect("text body")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("JSON body")
    }

    /// A POST without a body (control actions, scans, tests of a channel).
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.client.post(self.url(path)).send().await.expect("POST")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// Posts a dashboard form as a browser does: with the CSRF cookie a page
    /// of the hub set, and its token in the form.
    pub async fn post_form<K: AsRef<str>, V: AsRef<str>>(
        &self,
        path: &str,
        fields: &[(K, V)],
    ) -> reqwest::Response {
        let csrf = self.csrf_token().await;
        let mut form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        form.push(("_csrf", &csrf));
        self.client
            .post(self.url(path))
            .header(reqwest::header::COOKIE, format!("lookout_csrf={csrf}"))
            .form(&form)
            .send()
            .await
            .expect("POST form")
    }

    /// The CSRF token a page of the hub hands this client.
    pub async fn csrf_token(&self) -> String {
        if let Some(token) = self.csrf.lock().expect("csrf lock").clone() {
            return token;
        }
        let r = self.get("/login").await;
        let token = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("lookout_csrf="))
            .and_then(|c| c.split(';').next())
            .expect("a page sets the CSRF cookie")
            .to_owned();
        *self.csrf.lock().expect("csrf lock") = Some(token.clone());
        token
    }

    /// Registers a service and returns its object; panics unless the hub says 201.
    pub async fn create_service(&self, body: Value) -> Value {
        let r = self.post_json("/api/services", &body).await;
        let status = r.status();
        let body: Value = r.json().await.expect("JSON body");
        assert_eq!(status, 201, "create failed: {body}");
        body
    }

    pub async fn service(&self, id: i64) -> Value {
        self.get_json(&format!("/api/services/{id}")).await
    }

    /// Polls a service until `done` holds, or panics after `deadline`.
    pub async fn wait_for_service(
        &self,
        id: i64,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let s = self.service(id).await;
            if done(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "service {id} did not reach the expected state within {deadline:?}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
        }
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within 10 s.
#[allow(clippy::disallowed_methods)] // Drop is synchronous: polling a child process for its exit.
fn terminate(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The files `lookout check add --user` leaves for check `name` under `root`
/// (`config/lookout/checks/NAME`, `config/systemd/user/lookout-NAME.{service,timer}`),
/// without loading them into a systemd manager: an agent with
/// `XDG_CONFIG_HOME=root/config` and `XDG_STATE_HOME=root/state` follows
/// `root/state/lookout/checks/NAME.log`. For a second host beside the one
/// systemd sandbox, and for benchmarks. Returns the log's path.
pub fn write_check_files(root: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let scripts = root.join("config/lookout/checks");
    let units = root.join("config/systemd/user");
    let logs = root.join("state/lookout/checks");
    for d in [&scripts, &units, &logs] {
        std::fs::create_dir_all(d).expect("check directories");
    }
    let copy = scripts.join(name);
    std::fs::write(&copy, script).expect("script copy");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    std::fs::write(
        units.join(format!("lookout-{name}.service")),
        "[Service]\nType=oneshot\n",
    )
    .expect("service unit");
    std::fs::write(
        units.join(format!("lookout-{name}.timer")),
        "[Timer]\nOnCalendar=hourly\n",
    )
    .expect("timer unit");
    logs.join(format!("{name}.log"))
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A loopback UDP port nothing is bound to (at the time of asking).
pub fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// A free loopback port within `range` (e.g. the web ports 3000-9999).
pub fn free_port_in(range: std::ops::Range<u16>) -> u16 {
    let span = u32::from(range.end - range.start);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for i in 0..span {
        let port = range.start
            + u16::try_from((seed.wrapping_add(i.wrapping_mul(7919))) % span).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {range:?}");
}
