//! Which processes belong to which unit, read from `/proc/PID/cgroup`.
//!
//! Every process in a unit's cgroup counts (workers and children included),
//! and a process is attributed to the innermost unit of this manager on its
//! cgroup path, so a user service inside `user@1000.service` belongs to the
//! user manager's unit, and to `user@1000.service` when the system manager asks.

use std::collections::HashSet;

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

/// Every PID on the host.
pub fn all_pids() -> Vec<u32> {
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect()
}

/// Runs `f` over `items` on all cores: small /proc reads are the whole cost
/// of a scan's host side, so it is worth spreading them.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
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
