//! The first-party check library (`checks/*.bash`), run for real: every
//! script passes `lookout check validate` under the name of its file, and
//! `lookout check exec` runs each one (as its systemd unit would) with
//! environment overrides that force each of its outcomes: thresholds, real
//! certificates and a real TLS server, backup files with set ages, and a real
//! systemd user manager with failed units.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout_proto::check::{parse_line, parse_metadata, CheckLine, LineStatus, LineTime};
use lookout_testkit::SystemdSandbox;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The scripts this file tests one by one (any other script in `checks/` is
/// still validated).
const LIBRARY: [&str; 7] = [
    "backup-age",
    "disk-usage",
    "failed-units",
    "load",
    "memory",
    "system-updates",
    "tls-expiry",
];

/// Every setting the scripts read from their environment: cleared before each
/// run so that the environment of whoever runs the tests cannot steer them.
const SETTINGS: [&str; 16] = [
    "DISK_PATHS",
    "DISK_EXCLUDE_TYPES",
    "WARN_PERCENT",
    "FAIL_PERCENT",
    "WARN_AVAILABLE_PERCENT",
    "FAIL_AVAILABLE_PERCENT",
    "WARN_PER_CPU",
    "FAIL_PER_CPU",
    "SYSTEMCTL_USER",
    "TLS_TARGET",
    "WARN_DAYS",
    "FAIL_DAYS",
    "CONNECT_TIMEOUT",
    "BACKUP_GLOB",
    "WARN_HOURS",
    "FAIL_HOURS",
];

fn checks_dir() -> PathBuf {
    Path::new(ROOT).join("checks")
}

fn script(name: &str) -> PathBuf {
    checks_dir().join(format!("{name}.bash"))
}

/// Adds `check exec SCRIPT` and the settings to `command` (the wrapper passes
/// its environment on to the script).
fn exec_in(mut command: Command, name: &str, env: &[(&str, &str)]) -> Command {
    command.args(["check", "exec"]).arg(script(name));
    for setting in SETTINGS {
        command.env_remove(setting);
    }
    command.envs(env.iter().copied());
    command.stdin(Stdio::null());
    command
}

/// Runs `command` (a `lookout check exec`): its exit status and the lines it printed.
fn run(mut command: Command) -> (Option<i32>, Vec<String>, String) {
    let out = command.output().expect("run lookout check exec");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (
        out.status.code(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one result line of a run that worked, checked to be stamped with the
/// host's local time, now.
fn result_of(command: Command) -> CheckLine {
    let (code, lines, stderr) = run(command);
    assert_eq!(code, Some(0), "the check did not work: {lines:?} {stderr}");
    assert_eq!(lines.len(), 1, "not one result line: {lines:?}");
    let line = parse_line(&lines[0]).unwrap_or_else(|e| panic!("{:?}: {e}", lines[0]));
    assert_ne!(line.status, LineStatus::Error, "{lines:?}");
    let LineTime::Local(at) = line.time else {
        panic!("not a host local time: {:?}", lines[0]);
    };
    let gap = (chrono::Local::now().naive_local() - at)
        .num_seconds()
        .abs();
    assert!(gap < 120, "stamped {at}, {gap} s from now: {:?}", lines[0]);
    line
}

/// Runs library script `name` with `env` and returns its one result line.
fn result(name: &str, env: &[(&str, &str)]) -> CheckLine {
    result_of(exec_in(Command::new(BIN), name, env))
}

/// Runs `name` with `env`, expecting `status`; returns the message.
fn expect(name: &str, env: &[(&str, &str)], status: LineStatus) -> String {
    let line = result(name, env);
    assert_eq!(line.status, status, "{name} {env:?}: {}", line.message);
    line.message
}

/// Runs `name` with `env`, expecting the check itself to break: exit 1 and
/// one ERROR line. Returns the ERROR's message.
fn expect_error_of(command: Command) -> String {
    let (code, lines, stderr) = run(command);
    assert_eq!(code, Some(1), "{lines:?} {stderr}");
    assert_eq!(lines.len(), 1, "not one line: {lines:?}");
    let line = parse_line(&lines[0]).unwrap_or_else(|e| panic!("{:?}: {e}", lines[0]));
    assert_eq!(line.status, LineStatus::Error, "{lines:?}");
    line.message
}

fn expect_error(name: &str, env: &[(&str, &str)]) -> String {
    expect_error_of(exec_in(Command::new(BIN), name, env))
}

fn number_before<'a>(text: &'a str, suffix: &str) -> &'a str {
    let at = text
        .find(suffix)
        .unwrap_or_else(|| panic!("no {suffix:?} in {text:?}"));
    let head = &text[..at];
    let start = head
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    &head[start..]
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("a sane clock")
}

#[test]
fn every_script_in_checks_is_valid_and_named_after_its_file() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(checks_dir()).expect("checks/ exists") {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = file
            .strip_suffix(".bash")
            .unwrap_or_else(|| panic!("{file}: a check script is named NAME.bash"));
        let text = std::fs::read_to_string(&path).expect("read script");
        assert!(text.starts_with("#!/bin/bash\n"), "{file}: no bash shebang");
        assert!(
            text.contains("\n# --- Configuration ---\n") && text.contains("\nset -u\n"),
            "{file}: no configuration section or no set -u"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{file}: mode {mode:o}");

        let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            syntax.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );

        let meta = parse_metadata(&text).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(
            meta.name.as_str(),
            stem,
            "{file}: # name: {}",
            meta.display_name
        );
        assert!(
            (10..=120).contains(&meta.timeout_secs),
            "{file}: timeout {} s",
            meta.timeout_secs
        );
        assert!(
            meta.description.is_some() && meta.version.is_some(),
            "{file}"
        );

        // The CLI agrees, systemd-analyze included (it judges the schedule).
        let out = Command::new(BIN)
            .args(["check", "validate"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = format!(
            "{}: valid: check {stem} ({}), schedule {}, timeout {} s",
            path.display(),
            meta.display_name,
            meta.schedule,
            meta.timeout_secs
        );
        assert!(stdout.starts_with(&expected), "{stdout}");
        found.push(stem.to_owned());
    }
    for name in LIBRARY {
        assert!(
            found.iter().any(|f| f == name),
            "checks/{name}.bash is missing"
        );
    }
}

/// `PATH is N% full`: N, checked to be a percentage.
fn percent_full(message: &str, path: &str) -> u32 {
    let rest = message
        .strip_prefix(&format!("{path} is "))
        .unwrap_or_else(|| panic!("does not name {path}: {message}"));
    let percent: u32 = number_before(rest, "% full").parse().unwrap();
    assert!(percent <= 100, "{message}");
    percent
}

#[test]
fn disk_usage_reports_the_fullest_filesystem_against_its_thresholds() {
    let never = [("WARN_PERCENT", "101"), ("FAIL_PERCENT", "101")];
    let message = expect("disk-usage", &never, LineStatus::Ok);
    // Only / by default.
    let percent = percent_full(&message, "/");
    assert_eq!(message, format!("/ is {percent}% full"));

    let message = expect(
        "disk-usage",
        &[("WARN_PERCENT", "0"), ("FAIL_PERCENT", "101")],
        LineStatus::Warning,
    );
    let percent = percent_full(&message, "/");
    assert_eq!(message, format!("/ is {percent}% full, warning at 0%"));

    let message = expect("disk-usage", &[("FAIL_PERCENT", "0")], LineStatus::Failure);
    let percent = percent_full(&message, "/");
    assert_eq!(message, format!("/ is {percent}% full, failure at 0%"));

    // Several paths: the message names one of them and says how many.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().to_str().unwrap();
    let paths = format!("{tmp} /");
    let message = expect(
        "disk-usage",
        &[("DISK_PATHS", &paths), never[0], never[1]],
        LineStatus::Ok,
    );
    assert!(
        message.ends_with(" (the fullest of 2 checked)"),
        "{message}"
    );
    assert!(
        message.starts_with(&format!("{tmp} is ")) || message.starts_with("/ is "),
        "{message}"
    );

    // Every mounted real filesystem: mount points.
    let line = result("disk-usage", &[("DISK_PATHS", "all"), never[0], never[1]]);
    assert_eq!(line.status, LineStatus::Ok, "{}", line.message);
    assert!(
        line.message.starts_with('/') && line.message.contains("% full"),
        "{}",
        line.message
    );

    // A path that does not exist is a broken check, not a full disk.
    let message = expect_error("disk-usage", &[("DISK_PATHS", "/nonexistent/lookout")]);
    assert!(
        message.contains("df -P failed") && message.contains("/nonexistent/lookout"),
        "{message}"
    );
}

#[test]
fn memory_compares_available_memory_with_its_thresholds() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    let of_total = format!(" of {} MiB)", total_kb / 1024);
    let form = |message: &str| {
        let percent: f64 = number_before(message, "% of memory available (")
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&percent), "{message}");
        assert!(message.contains(&of_total), "{message}");
    };

    let message = expect(
        "memory",
        &[
            ("WARN_AVAILABLE_PERCENT", "0"),
            ("FAIL_AVAILABLE_PERCENT", "0"),
        ],
        LineStatus::Ok,
    );
    form(&message);
    assert!(message.ends_with(&of_total), "{message}");

    let message = expect(
        "memory",
        &[
            ("WARN_AVAILABLE_PERCENT", "101"),
            ("FAIL_AVAILABLE_PERCENT", "0"),
        ],
        LineStatus::Warning,
    );
    form(&message);
    assert!(message.ends_with(", warning under 101%"), "{message}");

    let message = expect(
        "memory",
        &[("FAIL_AVAILABLE_PERCENT", "100.5")],
        LineStatus::Failure,
    );
    form(&message);
    assert!(message.ends_with(", failure under 100.5%"), "{message}");
}

#[test]
fn load_compares_the_load_per_cpu_with_its_thresholds() {
    let nproc = Command::new("nproc").output().unwrap();
    let cpus: u32 = String::from_utf8_lossy(&nproc.stdout)
        .trim()
        .parse()
        .unwrap();
    // `load 0.79 over 5 minutes on 2 CPUs (0.40 per CPU)`, the arithmetic right.
    let form = |message: &str| {
        let load: f64 = number_before(message, " over 5 minutes on ")
            .parse()
            .unwrap();
        let unit = if cpus == 1 { "CPU" } else { "CPUs" };
        let on = format!(" over 5 minutes on {cpus} {unit} (");
        assert!(
            message.starts_with("load ") && message.contains(&on),
            "{message}"
        );
        let per_cpu: f64 = number_before(message, " per CPU)").parse().unwrap();
        assert!(
            (per_cpu - load / f64::from(cpus)).abs() <= 0.006,
            "{message}"
        );
    };

    let huge = "1000000";
    let message = expect(
        "load",
        &[("WARN_PER_CPU", huge), ("FAIL_PER_CPU", huge)],
        LineStatus::Ok,
    );
    form(&message);
    assert!(message.ends_with(" per CPU)"), "{message}");

    // Over 0: any load at all (the 5-minute average is above 0.00 on a
    // machine that is running these tests).
    let message = expect(
        "load",
        &[("WARN_PER_CPU", "0"), ("FAIL_PER_CPU", huge)],
        LineStatus::Warning,
    );
    form(&message);
    assert!(message.ends_with(", warning over 0 per CPU"), "{message}");

    let message = expect("load", &[("FAIL_PER_CPU", "0")], LineStatus::Failure);
    form(&message);
    assert!(message.ends_with(", failure over 0 per CPU"), "{message}");
}

#[test]
fn system_updates_counts_pending_updates_or_says_it_cannot_tell() {
    let has_apt = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("apt-get").is_file()))
        .unwrap_or(false);
    // The machine's state is not ours to set: whatever it is, the line has
    // the form of its status.
    let line = result("system-updates", &[]);
    match line.status {
        LineStatus::Ok => assert_eq!(line.message, "System is up to date"),
        LineStatus::Update => {
            let (total, rest) = line
                .message
                .split_once(" available updates (")
                .unwrap_or_else(|| panic!("{}", line.message));
            let security = rest
                .strip_suffix(" security updates)")
                .unwrap_or_else(|| panic!("{}", line.message));
            let total: u32 = total.parse().unwrap();
            let security: u32 = security.parse().unwrap();
            assert!(total >= 1 && security <= total, "{}", line.message);
        }
        LineStatus::Unknown => {
            assert!(!has_apt, "apt-get is installed: {}", line.message);
            assert_eq!(
                line.message,
                "apt-get not found: not a Debian/Ubuntu system"
            );
        }
        other => panic!("{other:?}: {}", line.message),
    }
    if has_apt {
        assert_ne!(line.status, LineStatus::Unknown, "{}", line.message);
    }

    // Where there is no apt-get it cannot tell, and says so: a PATH with
    // nothing but `date`.
    let dir = tempfile::tempdir().unwrap();
    let date = ["/usr/bin/date", "/bin/date"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("date");
    std::os::unix::fs::symlink(date, dir.path().join("date")).unwrap();
    let message = expect(
        "system-updates",
        &[("PATH", dir.path().to_str().unwrap())],
        LineStatus::Unknown,
    );
    assert_eq!(message, "apt-get not found: not a Debian/Ubuntu system");
}

#[test]
fn failed_units_names_the_failed_units_of_a_real_user_manager() {
    let sb = SystemdSandbox::start();
    let exec = |sb: &SystemdSandbox| {
        result_of(exec_in(
            sb.command(BIN),
            "failed-units",
            &[("SYSTEMCTL_USER", "1")],
        ))
    };
    let line = exec(&sb);
    assert_eq!(
        (line.status, line.message.as_str()),
        (LineStatus::Ok, "no failed units")
    );

    sb.write_unit(
        "doomed.service",
        "[Unit]\nDescription=fails, on purpose\n[Service]\nExecStart=/bin/false\n",
    );
    sb.write_unit(
        "also-doomed.service",
        "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
    );
    sb.daemon_reload();
    // A simple service: the start job succeeds, then the process fails.
    let _ = sb.systemctl(&["start", "doomed.service"]);
    sb.wait_for(
        "doomed.service",
        "ActiveState",
        "failed",
        Duration::from_secs(10),
    );
    let line = exec(&sb);
    assert_eq!(
        (line.status, line.message.as_str()),
        (LineStatus::Failure, "1 failed: doomed.service")
    );

    let _ = sb.systemctl(&["start", "also-doomed.service"]);
    sb.wait_for(
        "also-doomed.service",
        "ActiveState",
        "failed",
        Duration::from_secs(10),
    );
    let line = exec(&sb);
    assert_eq!(
        (line.status, line.message.as_str()),
        (
            LineStatus::Failure,
            "2 failed: also-doomed.service, doomed.service"
        )
    );

    // Once reset, the manager is healthy again and so is the check.
    sb.systemctl_ok(&["reset-failed"]);
    let line = exec(&sb);
    assert_eq!(
        (line.status, line.message.as_str()),
        (LineStatus::Ok, "no failed units")
    );
}

#[test]
fn failed_units_without_a_reachable_manager_is_an_error_of_the_check() {
    let message = expect_error(
        "failed-units",
        &[
            ("SYSTEMCTL_USER", "1"),
            ("XDG_RUNTIME_DIR", "/nonexistent/lookout"),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/lookout/bus",
            ),
        ],
    );
    assert!(
        message.starts_with(
            "exited with status 1: failed-units: cannot list the failed units of the user manager: "
        ),
        "{message}"
    );
}

/// A self-signed certificate (and its key) valid for `days` days, made by openssl.
fn certificate(dir: &Path, days: u32) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("cert-{days}.pem"));
    let key = dir.join(format!("key-{days}.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", &days.to_string(), "-subj", "/CN=test"])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The certificate's end as the script writes it: `2026-12-05 08:09 UTC`.
fn end_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-enddate", "-noout", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // notAfter=Dec  5 08:09:46 2026 GMT
    let date = text.trim().strip_prefix("notAfter=").expect("notAfter");
    let date = date.split_whitespace().collect::<Vec<_>>().join(" ");
    chrono::NaiveDateTime::parse_from_str(&date, "%b %d %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("{date:?}: {e}"))
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// `certificate for TARGET expires in N days (END)`, N being `days` or one
/// less (a day started since the certificate was made).
fn assert_expires(message: &str, target: &str, days: u32, end: &str) {
    let ok = [days, days - 1]
        .iter()
        .any(|n| message == format!("certificate for {target} expires in {n} days ({end})"));
    assert!(ok, "expected {days} days to {end} for {target}: {message}");
}

#[test]
fn tls_expiry_reads_certificate_files_against_its_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    for (days, status) in [
        (3, LineStatus::Failure),
        (10, LineStatus::Warning),
        (100, LineStatus::Ok),
    ] {
        let (cert, _key) = certificate(dir.path(), days);
        let target = cert.to_str().unwrap();
        let message = expect("tls-expiry", &[("TLS_TARGET", target)], status);
        assert_expires(&message, target, days, &end_of(&cert));
    }

    // The thresholds are settings: 10 days left is fine when warned at 5.
    let (cert, _key) = certificate(dir.path(), 10);
    let target = cert.to_str().unwrap();
    let message = expect(
        "tls-expiry",
        &[
            ("TLS_TARGET", target),
            ("WARN_DAYS", "5"),
            ("FAIL_DAYS", "2"),
        ],
        LineStatus::Ok,
    );
    assert_expires(&message, target, 10, &end_of(&cert));

    // Expired (openssl cannot backdate one; rcgen can).
    let mut params = rcgen::CertificateParams::new(vec!["test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = dir.path().join("expired.pem");
    std::fs::write(&expired, params.self_signed(&key).unwrap().pem()).unwrap();
    let target = expired.to_str().unwrap();
    let message = expect("tls-expiry", &[("TLS_TARGET", target)], LineStatus::Failure);
    let days_ago = (unix_now() - 1_609_459_200) / 86_400; // since 2021-01-01
    let ok = [days_ago, days_ago - 1].iter().any(|n| {
        message == format!("certificate for {target} expired {n} days ago (2021-01-01 00:00 UTC)")
    });
    assert!(ok, "{message}");

    // No certificate to read: a missing file, a file that is not one.
    for target in [
        dir.path().join("missing.pem"),
        dir.path().join("key-100.pem"),
    ] {
        let target = target.to_str().unwrap();
        let message = expect("tls-expiry", &[("TLS_TARGET", target)], LineStatus::Failure);
        assert_eq!(message, format!("cannot read the certificate of {target}"));
    }
}

/// `openssl s_server` on a loopback port of its choosing, killed on drop.
pub(crate) struct TlsServer {
    child: Child,
    pub(crate) port: u16,
}

impl TlsServer {
    pub(crate) fn start(cert: &Path, key: &Path) -> TlsServer {
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let stdout = child.stdout.take().expect("stdout");
        // `ACCEPT 127.0.0.1:PORT` once it listens.
        let port = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:")?.trim().parse().ok());
        let mut server = TlsServer { child, port: 0 };
        server.port = port.expect("openssl s_server did not say where it listens");
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_expiry_reads_the_certificate_a_tls_service_presents() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), 10);
    let server = TlsServer::start(&cert, &key);
    let target = format!("127.0.0.1:{}", server.port);
    let message = expect(
        "tls-expiry",
        &[("TLS_TARGET", &target)],
        LineStatus::Warning,
    );
    assert_expires(&message, &target, 10, &end_of(&cert));

    // The service gone: unreachable is a failure of the service.
    drop(server);
    let message = expect(
        "tls-expiry",
        &[("TLS_TARGET", &target)],
        LineStatus::Failure,
    );
    assert_eq!(message, format!("cannot read the certificate of {target}"));
}

/// `touch -d WHEN FILE`.
fn touch(file: &Path, when: &str) {
    let status = Command::new("touch")
        .arg("-d")
        .arg(when)
        .arg(file)
        .status()
        .expect("touch");
    assert!(status.success(), "touch -d {when:?} {}", file.display());
}

/// `newest backup FILE is N hours old...`: N.
fn hours_old(message: &str, file: &Path) -> u32 {
    let rest = message
        .strip_prefix(&format!("newest backup {} is ", file.display()))
        .unwrap_or_else(|| panic!("does not name {}: {message}", file.display()));
    number_before(rest, " hours old").parse().unwrap()
}

#[test]
fn backup_age_reports_the_newest_backup_against_its_thresholds() {
    let top = tempfile::tempdir().unwrap();
    // A space in the directory: the glob must survive it.
    let dir = top.path().join("nightly backups");
    std::fs::create_dir(&dir).unwrap();
    let glob = format!("{}/*.tar*", dir.display());
    let env = [("BACKUP_GLOB", glob.as_str())];

    let message = expect("backup-age", &env, LineStatus::Failure);
    assert_eq!(message, format!("no backup found matching {glob}"));
    // A directory that matches, and a fresh file that does not, are no backups.
    std::fs::create_dir(dir.join("staging.tar.d")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a backup").unwrap();
    let message = expect("backup-age", &env, LineStatus::Failure);
    assert_eq!(message, format!("no backup found matching {glob}"));

    let old = dir.join("old.tar.gz");
    std::fs::write(&old, "backup").unwrap();
    touch(&old, "3 days ago");
    let message = expect("backup-age", &env, LineStatus::Failure);
    let hours = hours_old(&message, &old);
    // Three calendar days: 72 hours, give or take a change of daylight saving time.
    assert!((71..=73).contains(&hours), "{message}");
    assert!(
        message.ends_with(" hours old, failure over 50 hours"),
        "{message}"
    );

    let late = dir.join("late.tar");
    std::fs::write(&late, "backup").unwrap();
    touch(&late, "30 hours ago");
    let message = expect("backup-age", &env, LineStatus::Warning);
    assert_eq!(
        message,
        format!(
            "newest backup {} is 30 hours old, warning over 26 hours",
            late.display()
        )
    );
    // The thresholds are settings.
    let message = expect(
        "backup-age",
        &[env[0], ("WARN_HOURS", "31")],
        LineStatus::Ok,
    );
    assert_eq!(hours_old(&message, &late), 30, "{message}");
    let message = expect(
        "backup-age",
        &[env[0], ("FAIL_HOURS", "29")],
        LineStatus::Failure,
    );
    assert!(
        message.ends_with(" hours old, failure over 29 hours"),
        "{message}"
    );

    let fresh = dir.join("fresh.tar.zst");
    std::fs::write(&fresh, "backup").unwrap();
    let message = expect("backup-age", &env, LineStatus::Ok);
    assert_eq!(
        message,
        format!("newest backup {} is 0 hours old", fresh.display())
    );
}

#[test]
fn bad_settings_are_an_error_of_the_check_not_a_status() {
    for (name, setting, value) in [
        ("disk-usage", "WARN_PERCENT", "eighty"),
        ("memory", "FAIL_AVAILABLE_PERCENT", "5%"),
        ("load", "WARN_PER_CPU", "1,5"),
        ("tls-expiry", "WARN_DAYS", "-1"),
        ("backup-age", "FAIL_HOURS", "2d"),
        ("failed-units", "SYSTEMCTL_USER", "yes"),
    ] {
        let message = expect_error(name, &[(setting, value)]);
        assert!(
            message.starts_with(&format!("exited with status 1: {name}: {setting} must be")),
            "{name} {setting}={value}: {message}"
        );
        assert!(message.contains(&format!("\"{value}\"")), "{message}");
    }
}
