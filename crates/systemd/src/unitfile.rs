//! Writing unit files: quoting an argv for `ExecStart=` and validating what
//! goes into a unit, so a value can never add a line or a directive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Scope;

/// Quotes one argument for an `Exec*=` line: double quotes with C-style
/// escapes, `$` doubled (no variable expansion) and `%` doubled (no
/// specifier expansion).
pub fn quote_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes a value for `Environment=`: like [`quote_arg`] but `$` stays as it
/// is, since systemd does not expand variables in assignments.
pub fn quote_assignment(value: &str) -> String {
    quote_arg(value).replace("$$", "$")
}

/// `%` must be doubled anywhere systemd expands specifiers.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// A problem with a value meant for a unit file, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct UnitFileError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> UnitFileError {
    UnitFileError {
        field: field.into(),
        message: message.into(),
    }
}

/// How a value appears in a unit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Inside double quotes with C-style escapes ([`quote_arg`]): `\`, `\n`
    /// and `\r` are escaped, so only NUL could still end the line.
    Quoted,
    /// As it is, after `Key=`.
    Bare,
}

/// The one rule for every value lookout writes into a unit file: it can never
/// add a line or a directive. systemd ends a line at `\n`, `\r` and NUL, and
/// joins a line that ends in `\` with the next one; a bare value is also
/// kept free of any other control character.
fn unit_value(field: &str, value: &str, written: Written) -> Result<(), UnitFileError> {
    if value.contains('\0') {
        return Err(err(field, "must not contain NUL"));
    }
    if written == Written::Bare {
        if value.contains(['\n', '\r']) {
            return Err(err(field, "must be one line"));
        }
        if value.chars().any(char::is_control) {
            return Err(err(field, "must not contain control characters"));
        }
        if value.ends_with('\\') {
            return Err(err(field, "must not end with a backslash"));
        }
    }
    Ok(())
}

/// A long-running service lookout writes as `lookout-app-<name>.service`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedService {
    pub description: String,
    /// argv: an absolute program path, then its arguments.
    pub command: Vec<String>,
    pub working_directory: Option<PathBuf>,
    pub environment: BTreeMap<String, String>,
}

impl ManagedService {
    /// Checks every value; the first problem is returned with its field name.
    pub fn validate(&self) -> Result<(), UnitFileError> {
        let Some(program) = self.command.first() else {
            return Err(err("command", "must name a program"));
        };
        if !program.starts_with('/') {
            return Err(err(
                "command",
                "must start with an absolute program path, e.g. /usr/bin/python3",
            ));
        }
        for (i, arg) in self.command.iter().enumerate() {
            unit_value(&format!("command[{i}]"), arg, Written::Quoted)?;
        }
        unit_value("description", &self.description, Written::Bare)?;
        if let Some(dir) = &self.working_directory {
            let text = dir.to_string_lossy();
            unit_value("working_directory", &text, Written::Bare)?;
            if !dir.is_absolute() || text.contains(['"', '\\']) || text.ends_with(' ') {
                return Err(err(
                    "working_directory",
                    "must be an absolute path without quotes, backslashes or line breaks",
                ));
            }
        }
        for (key, value) in &self.environment {
            let valid_key = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_key {
                return Err(err(
                    format!("environment.{key}"),
                    "is not a valid variable name",
                ));
            }
            unit_value(&format!("environment.{key}"), value, Written::Quoted)?;
            if value.contains(['\n', '\r']) {
                return Err(err(format!("environment.{key}"), "must be one line"));
            }
        }
        Ok(())
    }

    /// The unit file text. Call [`ManagedService::validate`] first.
    pub fn render(&self, scope: Scope) -> String {
        let mut unit = String::new();
        unit.push_str("# Written by lookout. Edit through lookout, or remove the lookout-app- prefix to own it.\n");
        unit.push_str("[Unit]\n");
        unit.push_str(&format!(
            "Description={}\n",
            escape_specifiers(&self.description)
        ));
        unit.push_str("After=network.target\n\n[Service]\nType=simple\n");
        let argv: Vec<String> = self.command.iter().map(|a| quote_arg(a)).collect();
        unit.push_str(&format!("ExecStart={}\n", argv.join(" ")));
        if let Some(dir) = &self.working_directory {
            unit.push_str(&format!(
                "WorkingDirectory={}\n",
                escape_specifiers(&dir.to_string_lossy())
            ));
        }
        for (key, value) in &self.environment {
            unit.push_str(&format!(
                "Environment={}\n",
                quote_assignment(&format!("{key}={value}"))
            ));
        }
        unit.push_str("Restart=on-failure\nRestartSec=5\n\n[Install]\n");
        unit.push_str(match scope {
            Scope::System => "WantedBy=multi-user.target\n",
            Scope::User => "WantedBy=default.target\n",
        });
        unit
    }
}

/// Where unit files for `scope` go: `/etc/systemd/system`, or
/// `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`).
pub fn unit_dir(scope: Scope) -> Option<PathBuf> {
    match scope {
        Scope::System => Some(PathBuf::from("/etc/systemd/system")),
        Scope::User => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
            .map(|base| base.join("systemd/user")),
    }
}

/// A check script's pair of units: a oneshot service that runs it with its
/// output appended to a log file, and the timer that starts it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckUnits {
    pub description: String,
    /// argv of `ExecStart=`: an absolute program path, then its arguments.
    pub command: Vec<String>,
    /// systemd's own limit; the wrapper enforces the script's timeout first.
    pub timeout: std::time::Duration,
    pub log_file: PathBuf,
    /// An `OnCalendar=` expression that systemd accepted.
    pub schedule: String,
    /// The service the timer starts.
    pub service: String,
    /// The manager the units are installed for; the script is told which
    /// (`LOOKOUT_SYSTEMD_SCOPE`), so its `systemctl` calls ask the same one.
    pub scope: Scope,
}

impl CheckUnits {
    pub fn validate(&self) -> Result<(), UnitFileError> {
        match self.command.first() {
            Some(p) if p.starts_with('/') => {}
            _ => return Err(err("command", "must start with an absolute program path")),
        }
        for arg in &self.command {
            unit_value("command", arg, Written::Quoted)?;
        }
        unit_value("description", &self.description, Written::Bare)?;
        // `StandardOutput=append:` takes the path as it is: no quoting.
        let log = self.log_file.to_string_lossy();
        unit_value("log_file", &log, Written::Bare)?;
        if !self.log_file.is_absolute() || log.chars().any(char::is_whitespace) {
            return Err(err(
                "log_file",
                "must be an absolute path without spaces or control characters",
            ));
        }
        unit_value("schedule", &self.schedule, Written::Bare)?;
        if self.schedule.is_empty() || self.schedule.contains('%') {
            return Err(err("schedule", "must be one calendar expression without %"));
        }
        unit_value("service", &self.service, Written::Bare)?;
        if !self.service.ends_with(".service") || self.service.contains(char::is_whitespace) {
            return Err(err("service", "must be a service unit name"));
        }
        Ok(())
    }

    /// The service unit's text. Call [`CheckUnits::validate`] first.
    pub fn render_service(&self) -> String {
        let exec: Vec<String> = self.command.iter().map(|a| quote_arg(a)).collect();
        format!(
            "# Written by `lookout check add`; remove with `lookout check remove`.\n\
             [Unit]\n\
             Description={description}\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             Environment=LOOKOUT_SYSTEMD_SCOPE={scope}\n\
             ExecStart={exec}\n\
             TimeoutStartSec={timeout}\n\
             StandardOutput=append:{log}\n\
             StandardError=journal\n",
            description = escape_specifiers(&self.description),
            exec = exec.join(" "),
            timeout = self.timeout.as_secs().max(1),
            log = escape_specifiers(&self.log_file.to_string_lossy()),
            scope = self.scope.as_str(),
        )
    }

    /// The timer unit's text. Call [`CheckUnits::validate`] first.
    pub fn render_timer(&self) -> String {
        format!(
            "# Written by `lookout check add`; remove with `lookout check remove`.\n\
             [Unit]\n\
             Description={description} (schedule)\n\
             \n\
             [Timer]\n\
             OnCalendar={schedule}\n\
             AccuracySec=1s\n\
             Persistent=true\n\
             Unit={service}\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            description = escape_specifiers(&self.description),
            schedule = self.schedule,
            service = self.service,
        )
    }
}

/// Writes `contents` to `dir/name` atomically (temp file, then rename), so a
/// half-written unit is never seen by systemd.
pub fn write_atomically(dir: &Path, name: &str, contents: &str) -> std::io::Result<PathBuf> {
    write_file_atomically(dir, name, contents.as_bytes(), 0o644)
}

/// Writes `bytes` to `dir/name` with `mode`, atomically: a temporary file in
/// the same directory, renamed into place, removed if anything fails.
pub fn write_file_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(command: &[&str]) -> ManagedService {
        ManagedService {
            description: "App 100%".into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            working_directory: Some("/srv/app".into()),
            environment: [("PORT".to_owned(), "8080".to_owned())].into(),
        }
    }

    fn check() -> CheckUnits {
        CheckUnits {
            description: "lookout check: Disk 100%".into(),
            command: vec![
                "/usr/bin/lookout".into(),
                "check".into(),
                "exec".into(),
                "/x/disk".into(),
            ],
            timeout: std::time::Duration::from_secs(50),
            log_file: "/var/log/lookout/disk.log".into(),
            schedule: "*:0/5".into(),
            scope: Scope::System,
            service: "lookout-disk.service".into(),
        }
    }

    #[test]
    fn check_units_render_and_refuse_what_could_break_them() {
        let c = check();
        c.validate().unwrap();
        let service = c.render_service();
        assert!(service.contains("Type=oneshot\n"), "{service}");
        assert!(service.contains("ExecStart=\"/usr/bin/lookout\" \"check\" \"exec\" \"/x/disk\"\n"));
        assert!(service.contains("StandardOutput=append:/var/log/lookout/disk.log\n"));
        assert!(service.contains("Description=lookout check: Disk 100%%\n"));
        assert!(service.contains("TimeoutStartSec=50\n"));
        let timer = c.render_timer();
        assert!(
            timer.contains("OnCalendar=*:0/5\n") && timer.contains("Unit=lookout-disk.service\n")
        );
        assert!(timer.contains("WantedBy=timers.target"));
        let broken: [fn(&mut CheckUnits); 5] = [
            |c| c.command[0] = "lookout".into(),
            |c| c.description = "a\nExecStartPre=/bin/evil".into(),
            |c| c.log_file = "/var/log/my checks.log".into(),
            |c| c.schedule = "hourly\nOnBootSec=1".into(),
            |c| c.service = "evil.target".into(),
        ];
        for b in broken {
            let mut c = check();
            b(&mut c);
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn quoting_neutralises_expansion_and_injection() {
        assert_eq!(quote_arg("plain"), "\"plain\"");
        assert_eq!(quote_arg("a b"), "\"a b\"");
        assert_eq!(quote_arg("$HOME"), "\"$$HOME\"");
        assert_eq!(quote_arg("%n"), "\"%%n\"");
        assert_eq!(quote_arg("x\"; rm -rf /"), "\"x\\\"; rm -rf /\"");
        assert_eq!(
            quote_arg("line\nExecStartPre=/bin/evil"),
            "\"line\\nExecStartPre=/bin/evil\""
        );
        assert_eq!(quote_assignment("A=$HOME 100%"), "\"A=$HOME 100%%\"");
    }

    #[test]
    fn renders_a_unit_with_one_line_per_directive() {
        let unit = app(&["/usr/bin/python3", "-m", "http.server", "8080"]).render(Scope::User);
        assert!(unit.contains("ExecStart=\"/usr/bin/python3\" \"-m\" \"http.server\" \"8080\"\n"));
        assert!(unit.contains("Description=App 100%%\n"));
        assert!(unit.contains("Environment=\"PORT=8080\"\n"));
        assert!(unit.contains("WantedBy=default.target"));
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(app(&[]).validate().unwrap_err().field, "command");
        assert_eq!(app(&["python3"]).validate().unwrap_err().field, "command");
        let mut a = app(&["/bin/true"]);
        a.environment.insert("BAD-KEY".into(), "x".into());
        assert_eq!(a.validate().unwrap_err().field, "environment.BAD-KEY");
        let mut a = app(&["/bin/true"]);
        a.description = "two\nlines".into();
        assert_eq!(a.validate().unwrap_err().field, "description");
        let mut a = app(&["/bin/true"]);
        a.working_directory = Some("relative".into());
        assert_eq!(a.validate().unwrap_err().field, "working_directory");
        assert!(app(&["/bin/true", "a b", "$x"]).validate().is_ok());
    }

    /// Every character, in every field lookout writes into a unit, either is
    /// refused or leaves the unit with the same lines and directives.
    #[test]
    fn no_value_adds_a_line_or_a_directive() {
        let chars = (0u32..0x250)
            .chain([0x2028, 0x2029, 0xfeff])
            .filter_map(char::from_u32);
        let lines = |unit: &str| -> Vec<String> {
            assert!(!unit.contains(['\0', '\r']), "{unit:?}");
            unit.split('\n')
                .map(|l| l.split('=').next().unwrap_or_default().to_owned())
                .collect()
        };
        let plain_app = app(&["/bin/app", "x"]);
        let app_lines = lines(&plain_app.render(Scope::User));
        let plain_check = check();
        let check_lines = (
            lines(&plain_check.render_service()),
            lines(&plain_check.render_timer()),
        );
        let mut refused = 0;
        for c in chars {
            for value in [format!("a{c}b"), format!("a{c}"), format!("a{c}\nX=y")] {
                let variants: Vec<(&str, ManagedService)> = vec![
                    (
                        "description",
                        ManagedService {
                            description: value.clone(),
                            ..plain_app.clone()
                        },
                    ),
                    (
                        "working_directory",
                        ManagedService {
                            working_directory: Some(format!("/srv/{value}").into()),
                            ..plain_app.clone()
                        },
                    ),
                    (
                        "command",
                        ManagedService {
                            command: vec!["/bin/app".into(), value.clone()],
                            ..plain_app.clone()
                        },
                    ),
                    (
                        "environment",
                        ManagedService {
                            environment: [("K".to_owned(), value.clone())].into(),
                            ..plain_app.clone()
                        },
                    ),
                ];
                for (field, service) in variants {
                    match service.validate() {
                        Ok(()) => {
                            let unit = service.render(Scope::User);
                            assert_eq!(
                                lines(&unit),
                                app_lines,
                                "{field} {value:?} changed the unit:\n{unit}"
                            );
                            assert!(
                                !unit.lines().any(|l| l.ends_with('\\')),
                                "{field} {value:?}: {unit}"
                            );
                        }
                        Err(e) => {
                            assert!(e.field.starts_with(field), "{e}");
                            refused += 1;
                        }
                    }
                }
                let checks = [
                    (
                        "description",
                        CheckUnits {
                            description: value.clone(),
                            ..plain_check.clone()
                        },
                    ),
                    (
                        "log_file",
                        CheckUnits {
                            log_file: format!("/var/log/{value}").into(),
                            ..plain_check.clone()
                        },
                    ),
                    (
                        "schedule",
                        CheckUnits {
                            schedule: format!("*:0/{value}"),
                            ..plain_check.clone()
                        },
                    ),
                    (
                        "command",
                        CheckUnits {
                            command: vec!["/x".into(), value.clone()],
                            ..plain_check.clone()
                        },
                    ),
                ];
                for (field, units) in checks {
                    match units.validate() {
                        Ok(()) => {
                            let (service, timer) = (units.render_service(), units.render_timer());
                            assert_eq!(
                                (lines(&service), lines(&timer)),
                                check_lines,
                                "{field} {value:?}"
                            );
                            assert!(
                                !service
                                    .lines()
                                    .chain(timer.lines())
                                    .any(|l| l.ends_with('\\')),
                                "{field} {value:?}"
                            );
                        }
                        Err(e) => {
                            assert!(e.field.starts_with(field), "{e}");
                            refused += 1;
                        }
                    }
                }
            }
        }
        assert!(refused > 0);
        // What a red team tried: NUL and a trailing backslash in a description.
        let mut a = app(&["/bin/true"]);
        a.description = "web\0ExecStartPre=/bin/sh -c evil".into();
        assert_eq!(
            a.validate().unwrap_err().to_string(),
            "description must not contain NUL"
        );
        a.description = "web \\".into();
        assert_eq!(
            a.validate().unwrap_err().to_string(),
            "description must not end with a backslash"
        );
        let mut a = app(&["/bin/true"]);
        a.working_directory = Some("/srv/a\0b".into());
        assert_eq!(a.validate().unwrap_err().field, "working_directory");
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_atomically(dir.path(), "x.service", "[Unit]\n").unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "[Unit]\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.service"]);
    }
}
