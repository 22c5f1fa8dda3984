//! Which processes belong to which unit, read from `/proc/PID/cgroup`.
//!
//! Every process in a unit's cgroup counts (workers and children included),
//! and a process is attributed to the innermost unit of this manager on its
//! cgroup path, so a user service inside `user@1000.service` belongs to the
//! user manager's unit, and to `user@1000.service` when the system manager asks.

use std::collections::{HashMap, HashSet};

/// The cgroup path of a process: the unified (v2) one when it is set, else the
/// `name=systemd` (v1) one.
pub fn cgroup_path(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup_file(&text)
}

fn parse_cgroup_file(text: &str) -> Option<String> {
    let mut legacy = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() && path != "/" {
            return Some(path.to_owned());
        }
        if controllers == "name=systemd" {
            legacy = Some(path.to_owned());
        }
    }
    legacy
}

/// The innermost component of `path` that is one of `units`.
pub fn unit_of<'a>(path: &str, units: &HashSet<&'a str>) -> Option<&'a str> {
    path.rsplit('/')
        .find_map(|component| units.get(component).copied())
}

/// All PIDs on the host grouped by the unit (among `units`) they belong to.
pub fn processes_by_unit<'a>(units: &HashSet<&'a str>) -> HashMap<&'a str, Vec<u32>> {
    let mut out: HashMap<&str, Vec<u32>> = HashMap::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in proc_dir.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(unit) = cgroup_path(pid).and_then(|path| unit_of(&path, units)) {
            out.entry(unit).or_default().push(pid);
        }
    }
    for pids in out.values_mut() {
        pids.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_path_wins_over_legacy() {
        let hybrid = "9:name=systemd:/system.slice/a.service\n4:memory:/x\n0::/system.slice/a.service/worker\n";
        assert_eq!(
            parse_cgroup_file(hybrid).as_deref(),
            Some("/system.slice/a.service/worker")
        );
        let legacy_only = "1:name=systemd:/app.slice/b.service\n0::/\n";
        assert_eq!(
            parse_cgroup_file(legacy_only).as_deref(),
            Some("/app.slice/b.service")
        );
        assert_eq!(parse_cgroup_file("0::/\n"), None);
    }

    #[test]
    fn innermost_known_unit() {
        let system: HashSet<&str> = ["user@1000.service", "nginx.service"].into();
        let user: HashSet<&str> = ["web.service"].into();
        let path = "/user.slice/user-1000.slice/user@1000.service/app.slice/web.service";
        assert_eq!(unit_of(path, &system), Some("user@1000.service"));
        assert_eq!(unit_of(path, &user), Some("web.service"));
        assert_eq!(
            unit_of("/system.slice/nginx.service/sub", &system),
            Some("nginx.service")
        );
        assert_eq!(unit_of("/init.scope", &system), None);
    }
}
