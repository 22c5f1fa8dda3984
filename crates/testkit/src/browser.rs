//! Debian's headless Chromium driven through chromedriver (WebDriver), for
//! dashboard tests that click what a user clicks.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// Debian's Chromium, which the tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session. The driver process is killed on drop.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// A test that fails before [`Browser::close`] would leave its Chromium
/// running (chromedriver starts it in a process group of its own): on drop,
/// every process that uses this browser's profile is killed.
impl Drop for Browser {
    fn drop(&mut self) {
        let flag = format!("--user-data-dir={}", self._profile.path().display());
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == flag.as_bytes())
                    .then(|| pid.to_string())
            })
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The chromedriver process, killed on drop, even when start-up panics halfway.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a fresh headless session.
    /// Panics with an install hint when Chromium is missing: `scripts/test`
    /// installs it.
    pub async fn start() -> Browser {
        Browser::start_in_zone(None).await
    }

    /// As [`Browser::start`], with the browser's time zone set (`TZ`, e.g.
    /// `Asia/Tokyo`), for pages that show times in the reader's zone.
    pub async fn start_in_zone(zone: Option<&str>) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/test (it installs chromium and chromium-driver) \
                 or `apt-get install chromium chromium-driver`"
            );
        }
        let port = crate::closed_port();
        let mut command = Command::new(CHROMEDRIVER);
        if let Some(zone) = zone {
            // chromedriver passes its environment to the browser it starts.
            command.env("TZ", zone);
        }
        let driver = Driver(
            command
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = caps.as_object().expect("object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "chromedriver did not come up: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the session; the driver stops when `self` drops.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
