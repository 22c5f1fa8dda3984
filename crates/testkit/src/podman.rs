//! A real container engine for tests: Podman's Docker-compatible API service
//! (`podman system service`) from Debian's packages.
//!
//! The recipe (measured on these machines):
//! - Everything of the engine's lives in one temporary directory: its
//!   storage (`--root`, `--runroot`, `--tmpdir`), its `containers.conf` and
//!   its event log. The service runs in a network and mount namespace of its
//!   own (`unshare --net --mount`), so the bridge, the iptables rules and the
//!   overlay mounts of published ports and containers never touch the host;
//!   the test's `podman` commands enter the same namespaces (`nsenter`).
//!   The API socket, a file in the directory, is reached from the host.
//! - No image registry is reachable, so the one image is made here: `podman
//!   import` of a tar of Debian's static busybox with its applets linked.
//! - No systemd runs as PID 1: `cgroupfs` manages cgroups, events go to a
//!   file, and health checks run when a test says `podman healthcheck run`
//!   (the scheduled ones are systemd timers).
//! - `containers.conf` sets `default_ulimits = []`: the default asks for a
//!   file limit the sandboxed runtime may not raise; runc is the runtime
//!   (the one these tests were measured with).
//! - The service is ready when `/_ping` answers (40-100 ms); its event
//!   stream is lazy, so a follower subscribes before it lists.
//! - Containers that should stop promptly trap SIGTERM (`sh` as PID 1
//!   ignores it otherwise, and a stop waits out its timeout).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::systemd::poll;

/// The image every test container runs: busybox with `sh`, `httpd`,
/// `wget`, `sleep` and friends.
pub const IMAGE: &str = "localhost/lookout-test-busybox:latest";

const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "wget", "echo", "cat", "true", "false", "ls", "kill", "test", "mkdir",
    "rm",
];

pub struct Podman {
    service: Child,
    dir: tempfile::TempDir,
}

impl Podman {
    /// Whether this machine can run the engine (Debian's podman, runc and
    /// busybox-static; `scripts/test` installs them).
    pub fn available() -> bool {
        Path::new("/usr/bin/podman").exists()
            && Path::new("/usr/sbin/runc").exists()
            && Path::new("/bin/busybox").exists()
    }

    /// Starts the API service with the test image imported. Needs root.
    pub fn start() -> Podman {
        assert!(
            Self::available(),
            "the container tests need podman, runc and busybox-static (scripts/test installs them)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        for sub in ["tmp", "img/bin", "img/www", "img/etc"] {
            std::fs::create_dir_all(p.join(sub)).expect("dir");
        }
        std::fs::write(
            p.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
                p.join("events.log").display()
            ),
        )
        .expect("containers.conf");
        std::fs::copy("/bin/busybox", p.join("img/bin/busybox")).expect("busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", p.join("img/bin").join(applet)).expect("applet");
        }
        std::fs::write(p.join("img/www/index.html"), "hello from a container\n").expect("www");
        std::fs::write(p.join("img/etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(p.join("img"))
            .arg("-cf")
            .arg(p.join("image.tar"))
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success(), "tar of the image failed");
        let mut args = vec!["--net".to_owned(), "--mount".into(), "--propagation".into()];
        args.push("private".into());
        args.extend(["/bin/sh".into(), "-c".into()]);
        args.push(r#"ip link set lo up && exec podman "$@""#.into());
        args.push("sh".into());
        args.extend(Self::global_args(p));
        args.extend([
            "system".into(),
            "service".into(),
            "--time".into(),
            "0".into(),
        ]);
        args.push(format!("unix://{}", p.join("podman.sock").display()));
        let log = std::fs::File::create(p.join("service.log")).expect("log");
        let service = Command::new("unshare")
            .args(&args)
            .env("CONTAINERS_CONF", p.join("containers.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare podman system service");
        let podman = Podman { service, dir };
        let socket = podman.socket();
        let up = poll(Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_ok() && {
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    answer.contains("OK")
                }
            })
        });
        assert!(
            up,
            "podman system service did not come up: {}",
            std::fs::read_to_string(podman.dir.path().join("service.log")).unwrap_or_default()
        );
        let out = podman.run(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            &podman.dir.path().join("image.tar").display().to_string(),
            IMAGE,
        ]);
        assert!(out.status.success(), "podman import: {out:?}");
        podman
    }

    fn global_args(p: &Path) -> Vec<String> {
        vec![
            "--root".into(),
            p.join("root").display().to_string(),
            "--runroot".into(),
            p.join("runroot").display().to_string(),
            "--tmpdir".into(),
            p.join("tmp").display().to_string(),
            "--cgroup-manager=cgroupfs".into(),
            "--events-backend=file".into(),
            "--runtime".into(),
            "runc".into(),
        ]
    }

    /// The engine's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// `podman ARGS` against this engine, in its namespaces.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.service.id().to_string(),
            "-m",
            "-n",
            "--",
            "podman",
        ])
        .args(Self::global_args(self.dir.path()))
        .args(args)
        .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
        .stdin(Stdio::null());
        c
    }

    /// Runs `podman ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("podman")
    }

    /// Runs `podman ARGS` and fails the test unless it succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--force", "--all", "--time", "0"]);
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}
