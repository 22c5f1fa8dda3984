//! A real systemd user manager in a private mount namespace, for tests.
//!
//! The recipe (measured on these machines): as root, `unshare --mount
//! --propagation private` a shell that mounts a tmpfs on `/run`, creates
//! `/run/systemd/system` and `/run/user/0`, starts `systemd-journald` (so unit
//! output lands in a journal) and `systemd --user` with private
//! `XDG_CONFIG_HOME`/`XDG_STATE_HOME`, then waits for them. The shell holds the
//! namespace; everything else enters it with `nsenter -t PID -m`.
//!
//! Never a system instance: its tmpfiles service would wipe the host's /tmp.
//! One sandbox at a time per test process: the user manager places its units
//! at the root of the cgroup tree, where two managers would collide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct SystemdSandbox {
    holder: Child,
    dir: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

const SCRIPT: &str = r#"#!/bin/sh
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system /run/user/0 /run/log/journal
chmod 700 /run/user/0
export XDG_RUNTIME_DIR=/run/user/0 XDG_CONFIG_HOME="$1/config" XDG_STATE_HOME="$1/state"
/usr/lib/systemd/systemd-journald >"$1/journald.log" 2>&1 &
echo $! >"$1/journald.pid"
systemd --user >"$1/systemd.log" 2>&1 &
echo $! >"$1/systemd.pid"
wait
"#;

/// Calls `done` every 50 ms until it says yes or `deadline` passes; its
/// last answer.
#[allow(clippy::disallowed_methods)] // Waiting on another process's state, with a deadline.
pub(crate) fn poll(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

impl SystemdSandbox {
    /// Starts the sandbox and waits until the user manager answers. Needs root
    /// (for the mount namespace), which `scripts/test` and CI have.
    pub fn start() -> SystemdSandbox {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let uid = String::from_utf8(Command::new("id").arg("-u").output().expect("id").stdout)
            .unwrap_or_default();
        assert_eq!(
            uid.trim(),
            "0",
            "the systemd sandbox needs root (run scripts/test as root)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config/systemd/user")).expect("unit dir");
        std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
        // A oneshot check whose process has exited can stay `deactivating
        // (stop-sigterm)` here: on a loaded machine the manager sometimes
        // misses its cgroup's "now empty" event and waits out the stop
        // timeout (90 s by default), and the check's timer has no next
        // elapse meanwhile. Two seconds bound that wait.
        std::fs::write(
            dir.path().join("config/systemd/user.conf"),
            "[Manager]\nDefaultTimeoutStopSec=2s\n",
        )
        .expect("user.conf");
        let script = dir.path().join("sandbox.sh");
        std::fs::write(&script, SCRIPT).expect("script");
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh"])
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let sandbox = SystemdSandbox {
            holder,
            dir,
            _lock: lock,
        };
        let up = poll(Duration::from_secs(30), || {
            sandbox
                .systemctl(&["is-system-running"])
                .stdout
                .starts_with(b"running")
                || sandbox
                    .systemctl(&["is-system-running"])
                    .stdout
                    .starts_with(b"degraded")
        });
        assert!(
            up,
            "systemd --user did not come up: {}",
            std::fs::read_to_string(sandbox.dir.path().join("systemd.log")).unwrap_or_default()
        );
        sandbox
    }

    /// The PID whose mount namespace is the sandbox.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Where user unit files go (`$XDG_CONFIG_HOME/systemd/user`).
    pub fn unit_dir(&self) -> PathBuf {
        self.dir.path().join("config/systemd/user")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command that runs `program` inside the sandbox, with the user
    /// manager's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid().to_string(), "-m", "--", "env"])
            .arg("XDG_RUNTIME_DIR=/run/user/0")
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                self.dir.path().join("config").display()
            ))
            .arg(format!(
                "XDG_STATE_HOME={}",
                self.dir.path().join("state").display()
            ))
            .arg("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus")
            .arg(program);
        c
    }

    /// `lookout serve` (the binary at `bin`) inside the sandbox, on its user
    /// manager, on a free loopback port with its own data directory, with
    /// more `serve` flags.
    pub fn spawn_hub(&self, bin: &str, flags: &[&str]) -> crate::TestHub {
        let data = tempfile::tempdir().expect("temp dir");
        let mut cmd = self.command(bin);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--systemd",
            "user",
            "--log",
            "info",
        ])
        .args(flags)
        .arg("--data-dir")
        .arg(data.path());
        crate::spawn_hub_process(cmd, data)
    }

    /// `systemctl --user ARGS` inside the sandbox.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.command("systemctl")
            .arg("--user")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("systemctl")
    }

    /// Like [`SystemdSandbox::systemctl`], panicking with systemctl's message on failure.
    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let out = self.systemctl(args);
        assert!(
            out.status.success(),
            "systemctl --user {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn write_unit(&self, name: &str, contents: &str) {
        std::fs::write(self.unit_dir().join(name), contents).expect("write unit");
    }

    pub fn remove_unit(&self, name: &str) {
        std::fs::remove_file(self.unit_dir().join(name)).expect("remove unit");
    }

    pub fn daemon_reload(&self) {
        self.systemctl_ok(&["daemon-reload"]);
    }

    /// One property of a unit, e.g. `ActiveState`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.systemctl_ok(&["show", unit, "-p", property, "--value"])
            .trim()
            .to_owned()
    }

    /// Waits until `unit`'s `property` is `value`.
    pub fn wait_for(&self, unit: &str, property: &str, value: &str, deadline: Duration) {
        let reached = poll(deadline, || self.property(unit, property) == value);
        assert!(
            reached,
            "{unit} {property} stayed {:?}, expected {value:?}",
            self.property(unit, property)
        );
    }
}

impl Drop for SystemdSandbox {
    fn drop(&mut self) {
        let _ = self.systemctl(&["exit"]);
        let pid_of =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let systemd_pid = pid_of("systemd.pid");
        poll(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{}", systemd_pid.trim())).exists()
                || systemd_pid.trim().is_empty()
        });
        for name in ["journald.pid", "systemd.pid"] {
            let pid = pid_of(name);
            if !pid.trim().is_empty() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !poll(Duration::from_secs(5), || {
            matches!(self.holder.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.holder.kill();
        }
        let _ = self.holder.wait();
    }
}
