//! Installing, listing, running and removing check scripts as systemd units.
//!
//! `add` copies the script, writes `lookout-<name>.service` (oneshot, the
//! wrapper `lookout check exec` with the script's timeout, output appended to
//! the check's log) and `lookout-<name>.timer`, reloads systemd and enables
//! and starts the timer. Anything that fails on the way is undone, so a
//! failed `add` leaves nothing behind. What is installed is read back from the
//! files and from systemd: there is no other record.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lookout_proto::check::{
    parse_line, parse_metadata, CheckLine, CheckMeta, CheckName, MetaError,
};
use lookout_systemd::unitfile::{write_atomically, write_file_atomically, CheckUnits};
use lookout_systemd::{Action, Systemd, UnitName};

use crate::Layout;

/// Why a check command failed; each reads as one line.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {path}: {}", joined(.errors))]
    Metadata {
        path: PathBuf,
        errors: Vec<MetaError>,
    },
    #[error("invalid {path}: # schedule: {message}")]
    Schedule { path: PathBuf, message: String },
    #[error("check {0} is installed already; remove it first with `lookout check remove {0}`")]
    Exists(CheckName),
    #[error("no check named {0:?} is installed")]
    NotFound(String),
    #[error("invalid check name {0:?}: {1}")]
    Name(String, String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Systemd(#[from] lookout_systemd::Error),
}

fn joined(errors: &[MetaError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> CheckError {
    CheckError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// systemd's own verdict on a calendar expression (`systemd-analyze
/// calendar`, run with an argv), its error message when it refuses.
pub async fn check_schedule(expression: &str) -> Result<(), lookout_proto::error::Invalid> {
    if expression.starts_with('-') {
        return Err(format!("{expression:?} is not a calendar expression").into());
    }
    let out = tokio::process::Command::new("systemd-analyze")
        .arg("calendar")
        .arg(expression)
        .output()
        .await
        .map_err(|e| format!("cannot run systemd-analyze to check it: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(lookout_proto::error::Invalid::from(
        stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("systemd-analyze refused it")
            .trim()
            .to_owned(),
    ))
}

/// Reads a script and its headers, and has systemd check its schedule.
pub async fn validate(file: &Path) -> Result<CheckMeta, CheckError> {
    let text = std::fs::read_to_string(file).map_err(|source| CheckError::Read {
        path: file.to_owned(),
        source,
    })?;
    let meta = parse_metadata(&text).map_err(|errors| CheckError::Metadata {
        path: file.to_owned(),
        errors,
    })?;
    check_schedule(&meta.schedule)
        .await
        .map_err(|message| CheckError::Schedule {
            path: file.to_owned(),
            message: message.into(),
        })?;
    Ok(meta)
}

/// The units a check is made of.
fn units(name: &CheckName) -> (UnitName, UnitName) {
    #[allow(
        clippy::expect_used,
        reason = "a CheckName is validated to make unit names systemd accepts"
    )]
    let parse = |u: String| UnitName::parse(&u).expect("check names make valid unit names");
    (parse(name.service_unit()), parse(name.timer_unit()))
}

/// What `add` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub meta: CheckMeta,
    pub script: PathBuf,
    pub log: PathBuf,
    pub service: UnitName,
    pub timer: UnitName,
}

/// How long systemd may let a check run: the script's timeout plus time for
/// the wrapper to report it.
fn unit_timeout(meta: &CheckMeta) -> Duration {
    Duration::from_secs(u64::from(meta.timeout_secs) + 30)
}

/// Installs `file` as a check run by `exe check exec` (normally this very
/// binary). Undoes everything it did if any step fails.
pub async fn add(layout: &Layout, file: &Path, exe: &Path) -> Result<Installed, CheckError> {
    let meta = validate(file).await?;
    let name = meta.name.clone();
    let (service, timer) = units(&name);
    let (script, service_file, timer_file) = (
        layout.script(&name),
        layout.service(&name),
        layout.timer(&name),
    );
    if [&script, &service_file, &timer_file]
        .iter()
        .any(|p| p.exists())
    {
        return Err(CheckError::Exists(name));
    }
    let unit_files = CheckUnits {
        description: format!("lookout check: {}", meta.display_name),
        command: vec![
            exe.to_string_lossy().into_owned(),
            "check".into(),
            "exec".into(),
            script.to_string_lossy().into_owned(),
        ],
        timeout: unit_timeout(&meta),
        log_file: layout.log(&name),
        schedule: meta.schedule.clone(),
        service: service.to_string(),
        scope: layout.scope,
    };
    unit_files
        .validate()
        .map_err(|e| CheckError::Io(format!("cannot write the units: {e}")))?;

    let mut written: Vec<PathBuf> = Vec::new();
    let result = async {
        std::fs::create_dir_all(&layout.logs).map_err(|e| io("create", &layout.logs, &e))?;
        let copy = std::fs::read(file).map_err(|source| CheckError::Read {
            path: file.to_owned(),
            source,
        })?;
        std::fs::create_dir_all(&layout.scripts).map_err(|e| io("create", &layout.scripts, &e))?;
        written.push(script.clone());
        // Executable by its owner and group only.
        write_file_atomically(&layout.scripts, name.as_str(), &copy, 0o750)
            .map_err(|e| io("write", &script, &e))?;
        for (path, text) in [
            (&service_file, unit_files.render_service()),
            (&timer_file, unit_files.render_timer()),
        ] {
            written.push(path.clone());
            let file_name = path.file_name().unwrap_or_default().to_string_lossy();
            write_atomically(&layout.units, &file_name, &text)
                .map_err(|e| io("write", path, &e))?;
        }
        let systemd = Systemd::connect(layout.scope).await?;
        systemd.reload().await?;
        systemd.enable(&[&timer]).await?;
        let started = systemd
            .control(&timer, Action::Start, Duration::from_secs(30))
            .await?;
        if started.job_result != "done" {
            return Err(CheckError::Io(format!(
                "systemd could not start {timer}: job {}",
                started.job_result
            )));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        undo(layout, &name, &written).await;
        return Err(e);
    }
    Ok(Installed {
        log: layout.log(&name),
        meta,
        script,
        service,
        timer,
    })
}

/// Best effort: takes a half-installed check out of systemd and off the disk.
async fn undo(layout: &Layout, name: &CheckName, written: &[PathBuf]) {
    let (_, timer) = units(name);
    if let Ok(systemd) = Systemd::connect(layout.scope).await {
        let _ = systemd
            .control(&timer, Action::Stop, Duration::from_secs(10))
            .await;
        let _ = systemd.disable(&[&timer]).await;
        for path in written {
            let _ = std::fs::remove_file(path);
        }
        let _ = systemd.reload().await;
    } else {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn parse_name(name: &str) -> Result<CheckName, CheckError> {
    CheckName::parse(name).map_err(|e| CheckError::Name(name.to_owned(), e.into()))
}

fn is_installed(layout: &Layout, name: &CheckName) -> bool {
    layout.timer(name).exists() || layout.service(name).exists() || layout.script(name).exists()
}

/// Stops and removes a check: its timer, service, script copy and log.
pub async fn remove(layout: &Layout, name: &str) -> Result<(), CheckError> {
    let name = parse_name(name)?;
    if !is_installed(layout, &name) {
        return Err(CheckError::NotFound(name.to_string()));
    }
    let (service, timer) = units(&name);
    let systemd = Systemd::connect(layout.scope).await?;
    for unit in [&timer, &service] {
        // A unit that is not loaded cannot be stopped; that is fine here.
        let _ = systemd
            .control(unit, Action::Stop, Duration::from_secs(30))
            .await;
    }
    systemd.disable(&[&timer]).await?;
    for path in [
        layout.timer(&name),
        layout.service(&name),
        layout.script(&name),
        layout.log(&name),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &path, &e)),
        }
    }
    systemd.reload().await?;
    Ok(())
}

/// One installed check, as systemd and its log see it.
#[derive(Debug, Clone)]
pub struct CheckInfo {
    pub name: CheckName,
    pub schedule: Vec<String>,
    pub timer_state: String,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    /// The last line of the check's log, parsed.
    pub last: Option<CheckLine>,
    /// The script copy is missing (someone removed it by hand).
    pub broken: bool,
}

/// Every installed check: each `lookout-<name>.timer` in the unit directory.
pub async fn installed(layout: &Layout) -> Result<Vec<CheckName>, CheckError> {
    let entries = match std::fs::read_dir(&layout.units) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &layout.units, &e)),
    };
    let mut names: Vec<CheckName> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let slug = file
                .strip_prefix("lookout-")?
                .strip_suffix(".timer")?
                .to_owned();
            CheckName::parse(&slug).ok()
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The installed checks with their schedule, next run and last result.
pub async fn list(layout: &Layout) -> Result<Vec<CheckInfo>, CheckError> {
    let names = installed(layout).await?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let systemd = Systemd::connect(layout.scope).await?;
    let mut out = Vec::new();
    for name in names {
        let (_, timer) = units(&name);
        let t = systemd.timer_status(&timer).await?;
        out.push(CheckInfo {
            schedule: t.schedule,
            timer_state: t.active_state,
            next_run: t.next_elapse,
            last_run: t.last_trigger,
            last: last_line(&layout.log(&name)).and_then(|l| parse_line(&l).ok()),
            broken: !layout.script(&name).exists(),
            name,
        });
    }
    Ok(out)
}

/// Runs a check now, through systemd, and waits for it to finish; returns
/// the last line of its log.
pub async fn run_now(layout: &Layout, name: &str) -> Result<Option<CheckLine>, CheckError> {
    let name = parse_name(name)?;
    if !is_installed(layout, &name) {
        return Err(CheckError::NotFound(name.to_string()));
    }
    let script = std::fs::read_to_string(layout.script(&name))
        .map_err(|e| io("read", &layout.script(&name), &e))?;
    let limit = parse_metadata(&script)
        .map(|m| unit_timeout(&m))
        .unwrap_or(Duration::from_secs(120));
    let (service, _) = units(&name);
    let log = layout.log(&name);
    let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let before = size();
    let systemd = Systemd::connect(layout.scope).await?;
    // A run its timer started may be under way: systemd then merges this
    // start into it, and its line (written perhaps before `before` was
    // read) is this run's answer.
    let under_way = systemd
        .status(&service)
        .await
        .is_ok_and(|s| s.active_state == "activating");
    // A oneshot's start job ends when the script has run.
    let outcome = systemd.control(&service, Action::Start, limit).await?;
    // Only a line this run wrote says how it went (an ERROR run fails the
    // job but still writes its line).
    if size() == before && !under_way {
        return Err(CheckError::Io(format!(
            "{service} did not run (job {}); see `journalctl -u {service}`",
            outcome.job_result
        )));
    }
    Ok(last_line(&log).and_then(|l| parse_line(&l).ok()))
}

/// The last non-empty line of a file, reading only its end.
pub fn last_line(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(8192);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn systemd_judges_schedules() {
        for good in ["hourly", "*:0/5", "Mon..Fri 08:00", "*-*-* *:*:0/3"] {
            assert_eq!(check_schedule(good).await, Ok(()), "{good}");
        }
        for bad in ["every tuesday", "25:00", "-h", "hourly\nOnBootSec=1"] {
            let e = check_schedule(bad).await.expect_err(bad);
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn the_last_line_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        assert_eq!(last_line(&path), None);
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("2026-11-25 10:00:00, OK, line {i}\n"));
        }
        text.push_str("\n\n");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            last_line(&path).as_deref(),
            Some("2026-11-25 10:00:00, OK, line 1999")
        );
    }
}
