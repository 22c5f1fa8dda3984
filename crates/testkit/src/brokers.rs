//! Real message servers on loopback for notification tests: Debian's
//! `python3-aiosmtpd` as an SMTP server that prints what it receives, and
//! Debian's `mosquitto` as an MQTT broker. Both are killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn wait_for_port(port: u16) {
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "nothing listens on {port}"
        );
        std::thread::yield_now();
    }
}

/// An SMTP server (aiosmtpd's debugging handler) collecting every message.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        assert!(
            std::path::Path::new("/usr/lib/python3/dist-packages/aiosmtpd").exists(),
            "python3-aiosmtpd is missing: run scripts/test (it installs it) or apt-get install python3-aiosmtpd"
        );
        let port = crate::closed_port();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().expect("stdout");
        let output: Arc<Mutex<String>> = Arc::default();
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        });
        wait_for_port(port);
        SmtpSink {
            port,
            child,
            output,
        }
    }

    /// The messages received so far, each from headers to body.
    pub fn messages(&self) -> Vec<String> {
        let out = self
            .output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .map(|m| {
                m.split("------------ END MESSAGE ------------")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT broker on a loopback port.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        assert!(
            std::path::Path::new("/usr/sbin/mosquitto").exists(),
            "mosquitto is missing: run scripts/test (it installs it) or apt-get install mosquitto"
        );
        let port = crate::closed_port();
        let child = Command::new("/usr/sbin/mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        wait_for_port(port);
        Mosquitto { port, child }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
