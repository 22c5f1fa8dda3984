//! Check scripts: the metadata headers a script starts with, the
//! `TIMESTAMP, STATUS, MESSAGE` lines it prints, and the results of Nagios
//! plugins (`# format: nagios`).
//!
//! Pure parsing: the agent's CLI validates scripts with it, the wrapper that
//! runs them and the daemon that reads their logs parse lines with it, and the
//! fuzz targets call it directly.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime};

/// The longest output line taken; longer ones are malformed.
pub const MAX_LINE: usize = 4096;
/// The longest `# schedule:` accepted.
const MAX_SCHEDULE: usize = 256;
/// Timeouts from 1 second to a day.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// The timeout when a script does not say.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// A check's name as used in unit and file names: lowercase letters, digits
/// and single dashes, 1 to 64 characters, derived from `# name:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckName(String);

impl CheckName {
    /// Checks a slug as given (e.g. on the command line).
    pub fn parse(s: &str) -> Result<Self, crate::error::Invalid> {
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !ok_chars || s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(
                "may contain only lowercase letters, digits and single dashes inside".into(),
            );
        }
        if s == "app" || s.starts_with("app-") || s == "agent" {
            return Err(format!(
                "{s:?} is reserved (lookout-app-* are managed services, lookout-agent the agent)"
            )
            .into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug of a display name: `System Updates` -> `system-updates`.
    pub fn from_display(name: &str) -> Result<Self, crate::error::Invalid> {
        let mut slug = String::new();
        for c in name.trim().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        while slug.ends_with('-') {
            slug.pop();
        }
        if slug.is_empty() {
            return Err("must contain a letter or a digit".into());
        }
        Self::parse(&slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `lookout-<name>.service`
    pub fn service_unit(&self) -> String {
        format!("lookout-{}.service", self.0)
    }

    /// `lookout-<name>.timer`
    pub fn timer_unit(&self) -> String {
        format!("lookout-{}.timer", self.0)
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a script reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    /// `TIMESTAMP, STATUS, MESSAGE` lines, exit 0.
    Lookout,
    /// A Nagios/monitoring-plugins plugin: the exit code is the status.
    Nagios,
}

impl CheckFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckFormat::Lookout => "lookout",
            CheckFormat::Nagios => "nagios",
        }
    }
}

/// The metadata headers of a check script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMeta {
    /// `# name:` as written.
    pub display_name: String,
    pub name: CheckName,
    pub description: Option<String>,
    pub version: Option<String>,
    /// A systemd `OnCalendar=` expression; its grammar is checked by systemd
    /// itself (`systemd-analyze calendar`) where the script is installed.
    pub schedule: String,
    pub timeout_secs: u32,
    pub format: CheckFormat,
}

/// A header that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    pub header: &'static str,
    pub message: String,
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "# {}: {}", self.header, self.message)
    }
}

const HEADERS: [&str; 6] = [
    "name",
    "description",
    "version",
    "schedule",
    "timeout",
    "format",
];

/// `# key: value` at the top of a script, if `line` is one for a known key.
fn header(line: &str) -> Option<(&'static str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let (key, value) = rest.split_once(':')?;
    let key = key.trim();
    HEADERS
        .iter()
        .find(|h| **h == key)
        .map(|h| (*h, value.trim()))
}

fn bad(header: &'static str, message: impl Into<String>) -> MetaError {
    MetaError {
        header,
        message: message.into(),
    }
}

/// A header value may not carry control characters (it ends up in a unit file).
fn plain(header: &'static str, value: &str, max: usize) -> Result<String, MetaError> {
    if value.chars().any(char::is_control) {
        return Err(bad(header, "must not contain control characters"));
    }
    if value.chars().count() > max {
        return Err(bad(header, format!("must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Reads the headers from the leading block of comments and blank lines
/// (after the shebang). Every problem is reported, each naming its header.
pub fn parse_metadata(script: &str) -> Result<CheckMeta, Vec<MetaError>> {
    let mut found: Vec<(&'static str, &str)> = Vec::new();
    let mut errors = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("#!") {
            continue;
        }
        if !line.starts_with('#') {
            break;
        }
        if let Some((key, value)) = header(line) {
            if found.iter().any(|(k, _)| *k == key) {
                errors.push(bad(key, "is given twice"));
            } else {
                found.push((key, value));
            }
        }
    }
    let get = |key: &str| found.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);

    let mut name = None;
    match get("name") {
        None | Some("") => errors.push(bad("name", "is required, e.g. `# name: Disk usage`")),
        Some(v) => match plain("name", v, 100) {
            Err(e) => errors.push(e),
            Ok(display) => match CheckName::from_display(&display) {
                Ok(slug) => name = Some((display, slug)),
                Err(e) => errors.push(bad("name", e)),
            },
        },
    }
    let mut text = |key: &'static str, max: usize| match get(key) {
        None | Some("") => None,
        Some(v) => plain(key, v, max).map_err(|e| errors.push(e)).ok(),
    };
    let description = text("description", 500);
    let version = text("version", 50);
    let schedule = match get("schedule") {
        None | Some("") => {
            errors.push(bad(
                "schedule",
                "is required: a systemd calendar expression such as `hourly` or `*:0/5`",
            ));
            None
        }
        Some(v) => plain("schedule", v, MAX_SCHEDULE)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let timeout_secs = match get("timeout") {
        None | Some("") => DEFAULT_TIMEOUT_SECS,
        Some(v) => {
            match v.parse::<u32>() {
                Ok(t) if (1..=MAX_TIMEOUT_SECS).contains(&t) => t,
                _ => {
                    errors.push(bad(
                    "timeout",
                    format!("must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}, got {v:?}"),
                ));
                    DEFAULT_TIMEOUT_SECS
                }
            }
        }
    };
    let format = match get("format") {
        None | Some("" | "lookout") => CheckFormat::Lookout,
        Some("nagios") => CheckFormat::Nagios,
        Some(v) => {
            errors.push(bad(
                "format",
                format!("must be lookout or nagios, got {v:?}"),
            ));
            CheckFormat::Lookout
        }
    };
    match (name, schedule) {
        (Some((display_name, name)), Some(schedule)) if errors.is_empty() => Ok(CheckMeta {
            display_name,
            name,
            description,
            version,
            schedule,
            timeout_secs,
            format,
        }),
        _ => Err(errors),
    }
}

/// The status of one result line. `Error` is not a status of the service: it
/// says the check itself could not run (non-zero exit, timeout, bad output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LineStatus {
    Ok,
    Update,
    Warning,
    Failure,
    Unknown,
    Error,
}

impl LineStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "OK" => LineStatus::Ok,
            "UPDATE" => LineStatus::Update,
            "WARNING" => LineStatus::Warning,
            "FAILURE" => LineStatus::Failure,
            "UNKNOWN" => LineStatus::Unknown,
            "ERROR" => LineStatus::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Ok => "OK",
            LineStatus::Update => "UPDATE",
            LineStatus::Warning => "WARNING",
            LineStatus::Failure => "FAILURE",
            LineStatus::Unknown => "UNKNOWN",
            LineStatus::Error => "ERROR",
        }
    }
}

/// When a line says it was written: host local time without an offset (the
/// convention of the example scripts) or a time with its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTime {
    Local(NaiveDateTime),
    Zoned(DateTime<FixedOffset>),
}

/// One parsed result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub time: LineTime,
    pub status: LineStatus,
    /// Everything after the second comma, commas included, trimmed.
    pub message: String,
}

/// Why a line is not a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("expected `TIMESTAMP, STATUS, MESSAGE`")]
    Shape,
    #[error("{0:?} is not a timestamp (YYYY-MM-DD HH:MM:SS, or RFC 3339)")]
    Time(String),
    #[error("{0:?} is not a status (OK, UPDATE, WARNING, FAILURE)")]
    Status(String),
}

fn parse_time(s: &str) -> Option<LineTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(LineTime::Zoned(t));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(LineTime::Local)
}

/// Parses `TIMESTAMP, STATUS, MESSAGE`. The message may contain commas.
pub fn parse_line(line: &str) -> Result<CheckLine, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ',');
    let (Some(time), Some(status)) = (parts.next(), parts.next()) else {
        return Err(LineError::Shape);
    };
    let message = parts.next().map(str::trim).unwrap_or_default();
    let time = time.trim();
    let status = status.trim();
    let time = parse_time(time).ok_or_else(|| LineError::Time(time.to_owned()))?;
    let status = LineStatus::parse(status).ok_or_else(|| LineError::Status(status.to_owned()))?;
    if message.chars().any(|c| c.is_control() && c != '\t') {
        return Err(LineError::Shape);
    }
    Ok(CheckLine {
        time,
        status,
        message: message.to_owned(),
    })
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
pub fn cut_to(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// Formats a result line as the wrapper writes it (the time with its offset).
pub fn format_line(time: DateTime<FixedOffset>, status: LineStatus, message: &str) -> String {
    // One line, whatever the message holds; tabs stay, as `parse_line` keeps
    // them. Cut to fit `MAX_LINE` with the time and status in front.
    let mut message: String = message
        .trim()
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect();
    cut_to(&mut message, MAX_LINE - 64);
    format!(
        "{}, {}, {}",
        time.format("%Y-%m-%dT%H:%M:%S%:z"),
        status.as_str(),
        message.trim()
    )
}

/// What a Nagios plugin said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NagiosResult {
    pub status: LineStatus,
    /// The first line of output, without its performance data.
    pub message: String,
    /// Performance data (`label=value;warn;crit;min;max ...`), if any.
    pub perfdata: Option<String>,
}

/// Reads a plugin's exit code and output (monitoring-plugins conventions:
/// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Any other code is an error.
pub fn parse_nagios(exit_code: i32, output: &str) -> Result<NagiosResult, crate::error::Invalid> {
    let status = match exit_code {
        0 => LineStatus::Ok,
        1 => LineStatus::Warning,
        2 => LineStatus::Failure,
        3 => LineStatus::Unknown,
        other => return Err(format!("plugin exited with {other}, not 0-3").into()),
    };
    let mut lines = output.lines();
    let first = lines.next().unwrap_or_default();
    let (message, first_perf) = match first.split_once('|') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (first.trim(), None),
    };
    // Long output may carry more performance data after a `|`.
    let more: Vec<&str> = lines
        .filter_map(|l| l.split_once('|').map(|(_, p)| p.trim()))
        .collect();
    let perf: Vec<&str> = first_perf
        .into_iter()
        .chain(more)
        .filter(|p| !p.is_empty())
        .collect();
    if message.is_empty() {
        return Err("plugin printed no output".into());
    }
    Ok(NagiosResult {
        status,
        message: message.to_owned(),
        perfdata: (!perf.is_empty()).then(|| perf.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_SCRIPT: &str = r#"#!/bin/bash

# name: System Updates
# description: Checking for system updates on Debian/Ubuntu
# version: 1.0
# schedule: *:0/01:00
# timeout: 20

# --- Description ---
# The following script checks for updates on a Debian system
# Returns ["ok", "System is up to date"] if there are no updates

# --- Constants ---
STATUS_OK="OK"
# name: not a header any more
"#;

    #[test]
    fn the_example_script_s_headers_are_read() {
        let m = parse_metadata(EXAMPLE_SCRIPT).unwrap();
        assert_eq!(m.display_name, "System Updates");
        assert_eq!(m.name.as_str(), "system-updates");
        assert_eq!(m.name.service_unit(), "lookout-system-updates.service");
        assert_eq!(m.name.timer_unit(), "lookout-system-updates.timer");
        assert_eq!(
            m.description.as_deref(),
            Some("Checking for system updates on Debian/Ubuntu")
        );
        assert_eq!(m.version.as_deref(), Some("1.0"));
        assert_eq!(m.schedule, "*:0/01:00");
        assert_eq!(m.timeout_secs, 20);
        assert_eq!(m.format, CheckFormat::Lookout);
    }

    #[test]
    fn bad_metadata_names_every_header_at_fault() {
        let cases: &[(&str, &[&str])] = &[
            ("#!/bin/sh\necho hi\n", &["name", "schedule"]),
            ("# name: x\n", &["schedule"]),
            ("# schedule: hourly\n", &["name"]),
            ("# name: !!!\n# schedule: hourly\n", &["name"]),
            ("# name: app-thing\n# schedule: hourly\n", &["name"]),
            ("# name: a\n# name: b\n# schedule: hourly\n", &["name"]),
            (
                "# name: a\n# schedule: hourly\n# timeout: 0\n",
                &["timeout"],
            ),
            (
                "# name: a\n# schedule: hourly\n# timeout: 5s\n",
                &["timeout"],
            ),
            (
                "# name: a\n# schedule: hourly\n# timeout: 86401\n",
                &["timeout"],
            ),
            (
                "# name: a\n# schedule: hourly\n# format: json\n",
                &["format"],
            ),
            (
                "# name: a\n# schedule: hourly\n# description: a\u{7}b\n",
                &["description"],
            ),
            (
                "# timeout: never\n# format: xml\n",
                &["name", "schedule", "timeout", "format"],
            ),
        ];
        for (script, headers) in cases {
            let errors = parse_metadata(script).expect_err(script);
            let mut got: Vec<&str> = errors.iter().map(|e| e.header).collect();
            got.sort_unstable();
            let mut want = headers.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{script:?}: {errors:?}");
            assert!(errors.iter().all(|e| !e.message.is_empty()));
        }
    }

    #[test]
    fn good_metadata_variants() {
        let m = parse_metadata(
            "#!/bin/sh\n#name:Disk   usage (root)\n#schedule: hourly\n#format: nagios\n",
        )
        .unwrap();
        assert_eq!(m.name.as_str(), "disk-usage-root");
        assert_eq!(m.format, CheckFormat::Nagios);
        assert_eq!(m.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert_eq!(m.description, None);
    }

    #[test]
    fn check_names() {
        for ok in ["disk", "a-b-c", "x1"] {
            assert!(CheckName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "a--b",
            "app-x",
            "agent",
            "a.b",
            &"x".repeat(65),
        ] {
            assert!(CheckName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn result_lines_table() {
        let local = |s: &str| {
            LineTime::Local(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
        };
        let good: &[(&str, LineTime, LineStatus, &str)] = &[
            (
                "2025-09-02 16:06:37, OK, System is up to date",
                local("2025-09-02 16:06:37"),
                LineStatus::Ok,
                "System is up to date",
            ),
            (
                "2025-09-02 16:06:37,UPDATE,3 available updates (1 security updates)",
                local("2025-09-02 16:06:37"),
                LineStatus::Update,
                "3 available updates (1 security updates)",
            ),
            (
                "2025-09-02 16:06:37, WARNING, disk 91%, inodes 40%, fine otherwise",
                local("2025-09-02 16:06:37"),
                LineStatus::Warning,
                "disk 91%, inodes 40%, fine otherwise",
            ),
            (
                "2025-09-02T16:06:37, failure, down\r\n",
                local("2025-09-02 16:06:37"),
                LineStatus::Failure,
                "down",
            ),
            (
                "2025-09-02 16:06:37, OK,",
                local("2025-09-02 16:06:37"),
                LineStatus::Ok,
                "",
            ),
            (
                "2025-09-02T16:06:37+02:00, ERROR, exited with status 3",
                LineTime::Zoned(DateTime::parse_from_rfc3339("2025-09-02T16:06:37+02:00").unwrap()),
                LineStatus::Error,
                "exited with status 3",
            ),
        ];
        for (line, time, status, message) in good {
            let l = parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                (&l.time, l.status, l.message.as_str()),
                (time, *status, *message),
                "{line:?}"
            );
        }
        type Case<'a> = (&'a str, fn(&LineError) -> bool);
        let bad: &[Case] = &[
            ("", |e| *e == LineError::Shape),
            ("just text", |e| *e == LineError::Shape),
            ("2025-09-02 16:06:37 OK fine", |e| *e == LineError::Shape),
            ("yesterday, OK, fine", |e| matches!(e, LineError::Time(_))),
            ("2025-13-02 16:06:37, OK, fine", |e| {
                matches!(e, LineError::Time(_))
            }),
            ("2025-09-02 16:06:37, GREAT, fine", |e| {
                matches!(e, LineError::Status(_))
            }),
            ("2025-09-02 16:06:37, , fine", |e| {
                matches!(e, LineError::Status(_))
            }),
            ("2025-09-02 16:06:37, OK, bell\u{7}", |e| {
                *e == LineError::Shape
            }),
        ];
        for (line, is) in bad {
            let e = parse_line(line).expect_err(line);
            assert!(is(&e), "{line:?}: {e:?}");
        }
        assert_eq!(
            parse_line(&"x".repeat(MAX_LINE + 1)),
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn formatted_lines_parse_back() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T09:00:00+01:00").unwrap();
        let line = format_line(t, LineStatus::Error, "timed out after 20 s,\nkilled");
        assert_eq!(
            line,
            "2026-11-25T09:00:00+01:00, ERROR, timed out after 20 s, killed"
        );
        let back = parse_line(&line).unwrap();
        assert_eq!(back.time, LineTime::Zoned(t));
        assert_eq!(back.message, "timed out after 20 s, killed");
        // Found by the fuzzer: a long message is cut to fit a line.
        let long = "é".repeat(MAX_LINE);
        assert!(parse_line(&format_line(t, LineStatus::Ok, &long)).is_ok());
        // Found by the fuzzer: a tab survives the round trip.
        let line = format_line(t, LineStatus::Ok, "a\tb");
        assert_eq!(parse_line(&line).unwrap().message, "a\tb");
    }

    #[test]
    fn nagios_results() {
        let r = parse_nagios(
            0,
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n",
        )
        .unwrap();
        assert_eq!(r.status, LineStatus::Ok);
        assert_eq!(r.message, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(r.perfdata.as_deref(), Some("/=2643MB;5948;5958;0;5968"));
        let r = parse_nagios(
            1,
            "LOAD WARNING - load average: 5.1\nmore text | load15=4.2\n",
        )
        .unwrap();
        assert_eq!(r.status, LineStatus::Warning);
        assert_eq!(r.perfdata.as_deref(), Some("load15=4.2"));
        assert_eq!(
            parse_nagios(2, "CRITICAL").unwrap().status,
            LineStatus::Failure
        );
        assert_eq!(
            parse_nagios(3, "UNKNOWN - no such file").unwrap().status,
            LineStatus::Unknown
        );
        assert!(parse_nagios(4, "what").is_err());
        assert!(parse_nagios(127, "not found").is_err());
        assert!(parse_nagios(0, "").is_err());
    }
}
