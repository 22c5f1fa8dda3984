//! `lookout check` against a real systemd user manager: scripts become a
//! service and a timer, the timer fires, results land in the log, `list`
//! reads systemd, `run` runs now, `remove` leaves nothing behind, bad scripts
//! are refused whole, and a Debian monitoring-plugins check works as is.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lookout_proto::check::{parse_line, LineStatus};
use lookout_testkit::SystemdSandbox;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn check(sb: &SystemdSandbox, args: &[&str]) -> Output {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    all.push("--user");
    sb.command(BIN).args(&all).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn check_ok(sb: &SystemdSandbox, args: &[&str]) -> String {
    let out = check(sb, args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "check {args:?}: {stderr}{stdout}");
    stdout
}

/// Fails with one line on stderr naming `expected`.
fn check_refused(sb: &SystemdSandbox, args: &[&str], expected: &str) {
    let out = check(sb, args);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "check {args:?} succeeded: {stdout}");
    assert!(stderr.contains(expected), "check {args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
}

fn script(sb: &SystemdSandbox, file: &str, body: &str) -> PathBuf {
    let path = sb.dir().join(file);
    std::fs::write(&path, body).unwrap();
    path
}

fn log_of(sb: &SystemdSandbox, name: &str) -> PathBuf {
    sb.dir().join(format!("state/lookout/checks/{name}.log"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file lookout could have left for check `name`.
fn traces(sb: &SystemdSandbox, name: &str) -> Vec<PathBuf> {
    [
        sb.unit_dir().join(format!("lookout-{name}.service")),
        sb.unit_dir().join(format!("lookout-{name}.timer")),
        sb.unit_dir()
            .join(format!("timers.target.wants/lookout-{name}.timer")),
        sb.dir().join(format!("config/lookout/checks/{name}")),
        log_of(sb, name),
    ]
    .into_iter()
    .filter(|p| p.symlink_metadata().is_ok())
    .collect()
}

async fn wait_for_lines(path: &Path, n: usize, deadline: Duration) -> Vec<String> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let got = lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{} has {} lines, expected {n}: {got:?}",
            path.display(),
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TICK: &str = r#"#!/bin/bash
# name: Tick
# description: says OK, with a comma, every two seconds
# version: 1.0
# schedule: *:*:0/2
# timeout: 5
echo "$(date '+%Y-%m-%d %H:%M:%S'), OK, tick, pid $$"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_check_script_becomes_a_timer_whose_results_land_in_its_log() {
    let sb = SystemdSandbox::start();
    let file = script(&sb, "check-tick.bash", TICK);

    let out = check_ok(&sb, &["validate", file.to_str().unwrap()]);
    assert!(out.contains("valid: check tick"), "{out}");
    let out = check_ok(&sb, &["add", file.to_str().unwrap()]);
    assert!(
        out.starts_with("installed check tick (lookout-tick.timer"),
        "{out}"
    );

    // systemd has both units; the timer is enabled and waiting.
    assert_eq!(sb.property("lookout-tick.timer", "ActiveState"), "active");
    assert_eq!(
        sb.property("lookout-tick.timer", "UnitFileState"),
        "enabled"
    );
    assert_eq!(sb.property("lookout-tick.service", "Type"), "oneshot");
    // Units, the timer's link and the script copy (the log comes with the
    // first run, which may already have happened).
    let installed: Vec<PathBuf> = traces(&sb, "tick")
        .into_iter()
        .filter(|p| *p != log_of(&sb, "tick"))
        .collect();
    assert_eq!(installed.len(), 4, "{installed:?}");

    // The timer fires on its own; every run appends a result line.
    let got = wait_for_lines(&log_of(&sb, "tick"), 2, Duration::from_secs(20)).await;
    for line in &got {
        let parsed = parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(parsed.status, LineStatus::Ok);
        assert!(parsed.message.starts_with("tick, pid "), "{line}");
    }

    // `list` reads the schedule and times from systemd and the result from the log.
    let out = check_ok(&sb, &["list"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("tick "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("*-*-* *:*:00/2") && row.contains(" OK "),
        "{row}"
    );

    // `run` runs it now and prints the result.
    let before = lines(&log_of(&sb, "tick")).len();
    let out = check_ok(&sb, &["run", "tick"]);
    assert!(out.starts_with("tick: OK tick, pid "), "{out}");
    assert!(lines(&log_of(&sb, "tick")).len() > before);

    // Installing it twice is refused and changes nothing.
    check_refused(&sb, &["add", file.to_str().unwrap()], "installed already");

    // `remove` leaves nothing behind, in systemd or on disk.
    let out = check_ok(&sb, &["remove", "tick"]);
    assert_eq!(out.trim(), "removed check tick");
    assert_eq!(traces(&sb, "tick"), Vec::<PathBuf>::new());
    assert_eq!(sb.property("lookout-tick.timer", "LoadState"), "not-found");
    check_refused(&sb, &["remove", "tick"], "no check named \"tick\"");
    check_refused(&sb, &["run", "tick"], "no check named \"tick\"");
    let out = check_ok(&sb, &["list"]);
    assert!(out.starts_with("no checks installed"), "{out}");

    // A check that asks systemctl asks the manager it was installed for:
    // this sandbox has no system manager, so asking that one would fail.
    let failed_units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checks/failed-units.bash");
    check_ok(&sb, &["add", failed_units.to_str().unwrap()]);
    let out = check_ok(&sb, &["run", "failed-units"]);
    assert!(out.starts_with("failed-units: OK no failed units"), "{out}");
    check_ok(&sb, &["remove", "failed-units"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_scripts_are_refused_whole_and_broken_runs_are_errors() {
    let sb = SystemdSandbox::start();
    let cases = [
        (
            "no-name.sh",
            "#!/bin/sh\n# schedule: hourly\necho\n",
            "# name: is required",
        ),
        (
            "bad-schedule.sh",
            "#!/bin/sh\n# name: Bad schedule\n# schedule: every tuesday\n",
            "# schedule: Failed to parse calendar specification",
        ),
        (
            "bad-timeout.sh",
            "#!/bin/sh\n# name: Bad timeout\n# schedule: hourly\n# timeout: soon\n",
            "# timeout: must be a whole number",
        ),
    ];
    for (file, body, expected) in cases {
        let path = script(&sb, file, body);
        check_refused(&sb, &["add", path.to_str().unwrap()], expected);
        check_refused(&sb, &["validate", path.to_str().unwrap()], expected);
    }
    check_refused(
        &sb,
        &["add", "/nonexistent/check.sh"],
        "cannot read /nonexistent/check.sh",
    );
    check_refused(&sb, &["run", "Not A Name"], "invalid check name");
    for name in ["no-name", "bad-schedule", "bad-timeout"] {
        assert_eq!(traces(&sb, name), Vec::<PathBuf>::new(), "{name}");
    }

    // A script that exits non-zero is an ERROR of the check, not a FAILURE.
    let path = script(
        &sb,
        "broken.sh",
        "#!/bin/sh\n# name: Broken\n# schedule: hourly\necho 'something went wrong' >&2\nexit 3\n",
    );
    check_ok(&sb, &["add", path.to_str().unwrap()]);
    let out = check(&sb, &["run", "broken"]);
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stdout.trim(),
        "broken: ERROR exited with status 3: something went wrong"
    );
    let logged = lines(&log_of(&sb, "broken"));
    assert!(!logged.is_empty());
    for line in &logged {
        let parsed = parse_line(line).unwrap();
        assert_eq!(parsed.status, LineStatus::Error, "{line}");
        assert_eq!(parsed.message, "exited with status 3: something went wrong");
    }
    let out = check_ok(&sb, &["list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("broken ") && l.contains(" ERROR ")),
        "{out}"
    );
    check_ok(&sb, &["remove", "broken"]);
    assert_eq!(traces(&sb, "broken"), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitoring_plugins_check_runs_as_is_in_nagios_mode() {
    let plugin = "/usr/lib/nagios/plugins/check_load";
    assert!(
        Path::new(plugin).exists(),
        "{plugin} is missing: scripts/test installs monitoring-plugins-basic"
    );
    let sb = SystemdSandbox::start();
    let path = script(
        &sb,
        "load.sh",
        &format!(
            "#!/bin/sh\n# name: Load\n# schedule: hourly\n# timeout: 10\n# format: nagios\nexec {plugin} -w 1000,1000,1000 -c 2000,2000,2000\n"
        ),
    );
    check_ok(&sb, &["add", path.to_str().unwrap()]);
    let out = check_ok(&sb, &["run", "load"]);
    assert!(out.starts_with("load: OK LOAD OK - "), "{out}");
    let logged = lines(&log_of(&sb, "load"));
    let line = parse_line(logged.last().unwrap()).unwrap();
    assert_eq!(line.status, LineStatus::Ok);
    assert!(
        line.message.contains("| load1="),
        "perfdata kept: {}",
        line.message
    );

    // A plugin that says CRITICAL is a FAILURE of the service (check_dummy
    // reports the state it is given), UNKNOWN stays UNKNOWN.
    let dummy = "/usr/lib/nagios/plugins/check_dummy";
    for (name, code, expected) in [
        ("critical", 2, "critical: FAILURE CRITICAL: disk on fire"),
        ("unsure", 3, "unsure: UNKNOWN UNKNOWN: disk on fire"),
    ] {
        let path = script(
            &sb,
            &format!("{name}.sh"),
            &format!(
                "#!/bin/sh\n# name: {name}\n# schedule: hourly\n# format: nagios\nexec {dummy} {code} 'disk on fire'\n"
            ),
        );
        check_ok(&sb, &["add", path.to_str().unwrap()]);
        let out = check_ok(&sb, &["run", name]);
        assert_eq!(out.trim(), expected);
    }
}
