//! The wrapper systemd runs for a check (`lookout check exec SCRIPT`): it runs
//! the script with its timeout and prints what the check's log gets.
//!
//! A run yields either the script's own result lines (exit 0, every line
//! well formed) or exactly one `ERROR` line saying why the check itself did
//! not work: it could not start, exited non-zero, timed out, or printed
//! something that is not a result. An `ERROR` is never a `FAILURE` of the
//! service: the hub shows it as a broken check. Nagios plugins (`# format:
//! nagios`) are translated into one result line, performance data kept.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use lookout_proto::check::{
    format_line, parse_line, parse_metadata, parse_nagios, CheckFormat, LineStatus,
};

/// What a run printed for the log, and whether the check worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub lines: Vec<String>,
    /// False when the one line is an `ERROR`.
    pub ok: bool,
}

/// The longest excerpt of a script's output quoted in an `ERROR` line.
const EXCERPT: usize = 200;

fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(EXCERPT) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn error(now: DateTime<FixedOffset>, message: &str) -> RunReport {
    RunReport {
        lines: vec![format_line(now, LineStatus::Error, message)],
        ok: false,
    }
}

/// Runs `script` as its headers say and reports what its log gets. `now`
/// gives the time written on lines the wrapper makes itself.
pub async fn run(script: &Path, now: impl Fn() -> DateTime<FixedOffset>) -> RunReport {
    let text = match std::fs::read_to_string(script) {
        Ok(t) => t,
        Err(e) => return error(now(), &format!("cannot read {}: {e}", script.display())),
    };
    let meta = match parse_metadata(&text) {
        Ok(m) => m,
        Err(errors) => {
            let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return error(now(), &format!("invalid metadata: {}", why.join("; ")));
        }
    };
    let child = tokio::process::Command::new(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return error(now(), &format!("cannot start {}: {e}", script.display())),
    };
    let limit = Duration::from_secs(u64::from(meta.timeout_secs));
    // On timeout the child is dropped, which kills it; systemd then stops
    // whatever it left in the unit's cgroup.
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return error(now(), &format!("cannot wait for the script: {e}")),
        Err(_) => return error(now(), &format!("timed out after {} s", meta.timeout_secs)),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let Some(code) = output.status.code() else {
        return error(now(), &format!("killed ({})", output.status));
    };
    match meta.format {
        CheckFormat::Nagios => match parse_nagios(code, &stdout) {
            Ok(r) => {
                let message = match &r.perfdata {
                    Some(perf) => format!("{} | {perf}", r.message),
                    None => r.message,
                };
                RunReport {
                    lines: vec![format_line(now(), r.status, &message)],
                    ok: true,
                }
            }
            Err(why) => {
                let said = excerpt(if stdout.trim().is_empty() {
                    &stderr
                } else {
                    &stdout
                });
                error(now(), &format!("{why}: {said}"))
            }
        },
        CheckFormat::Lookout => {
            if code != 0 {
                let said = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                let mut message = format!("exited with status {code}");
                if !said.is_empty() {
                    message.push_str(&format!(": {}", excerpt(said)));
                }
                return error(now(), &message);
            }
            let mut lines = Vec::new();
            for (i, line) in stdout.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                if let Err(e) = parse_line(line) {
                    return error(
                        now(),
                        &format!("malformed output line {}: {e}: {}", i + 1, excerpt(line)),
                    );
                }
                lines.push(line.to_owned());
            }
            if lines.is_empty() {
                return error(now(), "printed no result line (TIMESTAMP, STATUS, MESSAGE)");
            }
            RunReport { lines, ok: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_proto::check::LineTime;
    use std::os::unix::fs::PermissionsExt as _;

    fn at() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00+01:00").unwrap()
    }

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("check");
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn only_error(r: &RunReport) -> String {
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.lines.len(), 1, "{r:?}");
        let line = parse_line(&r.lines[0]).unwrap();
        assert_eq!(line.status, LineStatus::Error);
        assert_eq!(line.time, LineTime::Zoned(at()));
        line.message
    }

    const HEAD: &str = "#!/bin/sh\n# name: t\n# schedule: hourly\n# timeout: 1\n";

    #[tokio::test]
    async fn good_lines_pass_through_and_every_broken_run_is_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let ok = script(
            dir.path(),
            &format!("{HEAD}echo '2026-11-25 10:00:00, OK, fine, really'\necho\necho '2026-11-25 10:00:01, WARNING, 91%'\n"),
        );
        let r = run(&ok, at).await;
        assert!(r.ok);
        assert_eq!(
            r.lines,
            [
                "2026-11-25 10:00:00, OK, fine, really",
                "2026-11-25 10:00:01, WARNING, 91%"
            ]
        );

        let cases: &[(&str, &str)] = &[
            (
                "echo '2026-11-25 10:00:00, OK, x'; echo oops >&2; exit 3\n",
                "exited with status 3: oops",
            ),
            ("echo 'all good'\n", "malformed output line 1"),
            ("echo '2026-11-25 10:00:00, SUPER, x'\n", "is not a status"),
            ("true\n", "printed no result line"),
            ("sleep 5\n", "timed out after 1 s"),
            ("kill -9 $$\n", "killed"),
        ];
        for (body, expected) in cases {
            let path = script(dir.path(), &format!("{HEAD}{body}"));
            let message = only_error(&run(&path, at).await);
            assert!(message.contains(expected), "{body:?}: {message}");
        }
        let message = only_error(&run(&dir.path().join("missing"), at).await);
        assert!(message.starts_with("cannot read"), "{message}");
        let path = script(dir.path(), "#!/bin/sh\necho hi\n");
        let message = only_error(&run(&path, at).await);
        assert!(message.contains("# name:"), "{message}");
        // No shebang: the kernel cannot run it.
        let path = script(dir.path(), "# name: t\n# schedule: hourly\necho hi\n");
        let message = only_error(&run(&path, at).await);
        assert!(message.starts_with("cannot start"), "{message}");
    }

    #[tokio::test]
    async fn nagios_plugins_are_translated() {
        let dir = tempfile::tempdir().unwrap();
        let head = "#!/bin/sh\n# name: n\n# schedule: hourly\n# format: nagios\n";
        let path = script(
            dir.path(),
            &format!("{head}echo 'DISK WARNING - free space: / 10% | /=90%;80;95'\nexit 1\n"),
        );
        let r = run(&path, at).await;
        assert!(r.ok, "{r:?}");
        let line = parse_line(&r.lines[0]).unwrap();
        assert_eq!(line.status, LineStatus::Warning);
        assert_eq!(
            line.message,
            "DISK WARNING - free space: / 10% | /=90%;80;95"
        );
        let path = script(
            dir.path(),
            &format!("{head}echo 'no such plugin' >&2\nexit 127\n"),
        );
        let message = only_error(&run(&path, at).await);
        assert!(
            message.contains("exited with 127") && message.contains("no such plugin"),
            "{message}"
        );
    }
}
