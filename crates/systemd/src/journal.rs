//! Recent log lines of a unit, from the journal.
//!
//! `journalctl -o json` with an argv of field matches (never a shell, never
//! `-u NAME` where a name could look like an option). The matches cover both
//! system and user units, so one query works for either manager.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Systemd, UnitName};

/// Most lines one request may ask for.
pub const MAX_LINES: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    pub time: Option<DateTime<Utc>>,
    /// syslog priority, 0 (emerg) to 7 (debug).
    pub priority: Option<u8>,
    pub pid: Option<u32>,
    pub identifier: Option<String>,
    pub message: String,
}

impl Systemd {
    /// The last `lines` entries of `unit`, oldest first.
    pub async fn logs(&self, unit: &UnitName, lines: u32) -> Result<Vec<LogEntry>, Error> {
        let lines = lines.clamp(1, MAX_LINES);
        let mut args = vec![format!("--lines={lines}")];
        args.extend(unit_matches(unit));
        let run = tokio::process::Command::new("journalctl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .map_err(|_| Error::Journal("journalctl took longer than 20 s".into()))?
            .map_err(|e| Error::Journal(format!("cannot run journalctl: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Journal(format!(
                "journalctl failed ({}): {}",
                output.status,
                stderr.lines().next().unwrap_or_default()
            )));
        }
        Ok(parse_json_lines(&output.stdout))
    }
}

/// The journal of one unit as it is written: `journalctl --follow` of the
/// same matches as [`Systemd::logs`], from now on. The process ends when
/// this is dropped.
#[derive(Debug)]
pub struct LogFollower {
    /// Killed when dropped (`kill_on_drop`).
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl LogFollower {
    /// The next entry written; `None` when journalctl ended.
    pub async fn next(&mut self) -> Option<LogEntry> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Some(entry) = parse_json_lines(line.as_bytes()).pop() {
                return Some(entry);
            }
        }
    }
}

impl Systemd {
    /// Follows `unit`'s journal from now on.
    pub fn follow_logs(&self, unit: &UnitName) -> Result<LogFollower, Error> {
        use tokio::io::AsyncBufReadExt as _;
        let mut args = vec!["--follow".to_owned(), "--lines=0".to_owned()];
        args.extend(unit_matches(unit));
        let mut child = tokio::process::Command::new("journalctl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Journal(format!("cannot run journalctl: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Journal("journalctl has no output".into()))?;
        Ok(LogFollower {
            _child: child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        })
    }
}

/// journalctl's output options and the matches of `unit`'s entries: the
/// system manager's (`_SYSTEMD_UNIT`, and `UNIT` for systemd's own messages
/// about it) or a user manager's (`_SYSTEMD_USER_UNIT`, `USER_UNIT`), as
/// argv words.
fn unit_matches(unit: &UnitName) -> [String; 10] {
    let name = unit.as_str();
    [
        "--no-pager".to_owned(),
        "--quiet".to_owned(),
        "--output=json".to_owned(),
        format!("_SYSTEMD_UNIT={name}"),
        "+".to_owned(),
        format!("UNIT={name}"),
        "+".to_owned(),
        format!("_SYSTEMD_USER_UNIT={name}"),
        "+".to_owned(),
        format!("USER_UNIT={name}"),
    ]
}

/// Parses `journalctl -o json` output; lines that are not JSON objects are skipped.
pub fn parse_json_lines(output: &[u8]) -> Vec<LogEntry> {
    output
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .map(|entry| LogEntry {
            time: text(&entry, "__REALTIME_TIMESTAMP")
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_micros),
            priority: text(&entry, "PRIORITY").and_then(|p| p.parse().ok()),
            pid: text(&entry, "_PID").and_then(|p| p.parse().ok()),
            identifier: text(&entry, "SYSLOG_IDENTIFIER"),
            message: text(&entry, "MESSAGE").unwrap_or_default(),
        })
        .collect()
}

/// A journal field as text. Fields with non-UTF-8 content come as byte arrays.
fn text(entry: &Value, field: &str) -> Option<String> {
    match entry.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_journal_json_including_binary_messages() {
        let out = br#"{"__REALTIME_TIMESTAMP":"1700000000000000","PRIORITY":"6","_PID":"42","SYSLOG_IDENTIFIER":"web","MESSAGE":"hello, world"}
{"__REALTIME_TIMESTAMP":"1700000001000000","MESSAGE":[104,105,255]}
not json
"#;
        let entries = super::parse_json_lines(out);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].message, "hello, world");
        assert_eq!(entries[0].pid, Some(42));
        assert_eq!(entries[0].priority, Some(6));
        assert_eq!(entries[0].time.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(entries[1].message, "hi\u{fffd}");
    }
}
