//! A real PostgreSQL server for tests: Debian's `initdb` into a temporary
//! directory and `postgres` on a free loopback port, one per test process,
//! with a fresh database for every caller.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` user the Debian package creates. It is started with
//! `setpriv --pdeathsig KILL` from a thread that lives as long as the test
//! process, so it dies with the process; directories left by dead processes
//! are removed by the next start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether the suite was asked to run its hubs on PostgreSQL
/// (`LOOKOUT_TEST_DATABASE=postgres`), as `scripts/test` does for its second pass.
pub fn hubs_on_postgres() -> bool {
    std::env::var("LOOKOUT_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The test process's PostgreSQL server.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: PathBuf,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The server, started on first use.
pub fn pg_server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A new, empty database on the test server: its `postgres://` URL.
pub async fn fresh_database() -> String {
    pg_server().create_database().await
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (Debian package postgresql; scripts/test installs it)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/postgres")
        .1
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// `command` run as the `postgres` user when we are root; dies with this process.
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    if is_root() {
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ]);
    }
    c.arg("--pdeathsig=KILL").arg(program);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Removes the data directories of test processes that are gone.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lookout-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl PgServer {
    fn start() -> PgServer {
        let bin = bin_dir();
        let base = std::env::temp_dir();
        sweep_stale(&base);
        let dir = base.join(format!("lookout-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("PostgreSQL directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {} to postgres", dir.display());
        }
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "lookout", "--auth=trust", "-E", "UTF8", "--no-locale"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        // Started from a thread that never ends, so that the parent-death
        // signal comes when the process ends, not when a test's thread does.
        // The thread copies the server's log to a file and says when the
        // server is ready.
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let log_path = dir.join("postgres.log");
        let spawn_dir = dir.clone();
        std::thread::Builder::new()
            .name("postgres-holder".into())
            .spawn(move || {
                use std::io::{BufRead, Write};
                let child = as_postgres(&bin.join("postgres"))
                    .arg("-D")
                    .arg(spawn_dir.join("data"))
                    .arg("-p")
                    .arg(port.to_string())
                    .arg("-k")
                    .arg(&spawn_dir)
                    .args([
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "max_connections=400",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn();
                let mut child = match child {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let mut log = std::fs::File::create(&log_path).ok();
                let stderr = child.stderr.take().expect("piped stderr");
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(log) = log.as_mut() {
                        let _ = writeln!(log, "{line}");
                    }
                    if line.contains("ready to accept connections") {
                        let _ = tx.send(Ok(()));
                    }
                }
                let _ = tx.send(Err(format!("postgres exited: {:?}", child.wait())));
                loop {
                    std::thread::park();
                }
            })
            .expect("holder thread");
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "postgres did not start: {e}\n{}",
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            ),
            Err(_) => panic!("postgres did not become ready on port {port} within 60 s"),
        }
        PgServer { port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://lookout@127.0.0.1:{}/{name}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let admin = self.url("postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The server accepts TCP before it accepts logins.
            let created = async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            }
            .await;
            match created {
                Ok(()) => return self.url(&name),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create database {name}: {e}"),
            }
        }
    }
}
