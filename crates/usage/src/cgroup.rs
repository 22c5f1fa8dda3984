//! A unit's use read from its cgroup, in whichever layout the host mounts:
//! the unified (v2) hierarchy at `/sys/fs/cgroup`, the legacy (v1) one
//! controller per directory, or the hybrid of both (v1 controllers, and a
//! unified hierarchy without controllers at `/sys/fs/cgroup/unified`).
//!
//! On a hybrid host a unit's CPU time is in the unified hierarchy's
//! `cpu.stat` (kept for every cgroup whatever its controllers), while systemd
//! itself reports `CPUUsageNSec` as not set when the v1 `cpuacct` controller
//! is not delegated to the unit; memory and tasks come from the v1
//! `memory` and `pids` controllers there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a cgroup has used so far: cumulative CPU time and IO, current
/// memory and tasks. A figure the layout does not keep is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    pub cpu_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
}

impl CgroupCounters {
    fn is_empty(&self) -> bool {
        *self == CgroupCounters::default()
    }
}

/// Where the host's cgroup hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// The unified (v2) hierarchy, with or without controllers.
    unified: Option<PathBuf>,
    /// Each v1 controller's hierarchy (`cpuacct`, `memory`, `pids`, `blkio`).
    legacy: HashMap<String, PathBuf>,
}

impl Cgroups {
    /// The hierarchies this process sees, from `/proc/self/mountinfo`.
    pub fn detect() -> Cgroups {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|text| Cgroups::from_mountinfo(&text))
            .unwrap_or_default()
    }

    /// The hierarchies a `mountinfo` table mounts.
    pub fn from_mountinfo(text: &str) -> Cgroups {
        let mut found = Cgroups::default();
        for line in text.lines() {
            let Some((mount, rest)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = mount.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape(point));
            let mut rest = rest.split(' ');
            match (rest.next(), rest.nth(1)) {
                (Some("cgroup2"), _) => {
                    found.unified.get_or_insert(point);
                }
                (Some("cgroup"), Some(options)) => {
                    for option in options.split(',') {
                        if matches!(option, "cpuacct" | "memory" | "pids" | "blkio") {
                            found
                                .legacy
                                .entry(option.to_owned())
                                .or_insert_with(|| point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// Hierarchies laid out under `root` as on a host: `root` itself when it
    /// is a unified hierarchy (it has `cgroup.controllers`), else
    /// `root/unified` and `root/<controller>` where they exist. For fixtures.
    pub fn under(root: &Path) -> Cgroups {
        let mut found = Cgroups::default();
        if root.join("cgroup.controllers").exists() {
            found.unified = Some(root.to_owned());
            return found;
        }
        if root.join("unified/cgroup.controllers").exists() {
            found.unified = Some(root.join("unified"));
        }
        for controller in ["cpuacct", "memory", "pids", "blkio"] {
            for dir in [controller, "cpu,cpuacct"] {
                let path = root.join(dir);
                if dir.contains(controller) && path.join("cgroup.procs").exists() {
                    found.legacy.entry(controller.to_owned()).or_insert(path);
                }
            }
        }
        found
    }

    /// Whether any hierarchy was found.
    pub fn is_empty(&self) -> bool {
        self.unified.is_none() && self.legacy.is_empty()
    }

    /// What the cgroup at `path` (as systemd's `ControlGroup` names it,
    /// e.g. `/system.slice/nginx.service`) has used; `None` when it does not
    /// exist in any hierarchy (the unit is not running) or the path is not
    /// a cgroup's.
    pub fn read(&self, path: &str) -> Option<CgroupCounters> {
        let relative = relative(path)?;
        let unified = self.unified.as_ref().map(|u| u.join(relative));
        let legacy = |controller: &str| self.legacy.get(controller).map(|l| l.join(relative));
        let v2 = |file: &str| unified.as_ref().map(|u| u.join(file));
        let v1 = |controller: &str, file: &str| legacy(controller).map(|l| l.join(file));

        let cpu_usec = v2("cpu.stat")
            .and_then(|f| keyed(&f, "usage_usec"))
            .or_else(|| {
                v1("cpuacct", "cpuacct.usage")
                    .and_then(|f| number(&f))
                    .map(|ns| ns / 1000)
            });
        let memory_bytes = v2("memory.current")
            .and_then(|f| number(&f))
            .or_else(|| v1("memory", "memory.usage_in_bytes").and_then(|f| number(&f)));
        let tasks = v2("pids.current")
            .and_then(|f| number(&f))
            .or_else(|| v1("pids", "pids.current").and_then(|f| number(&f)));
        let (io_read_bytes, io_write_bytes) = match v2("io.stat").and_then(|f| read(&f)) {
            Some(text) => io_v2(&text),
            None => v1("blkio", "blkio.throttle.io_service_bytes")
                .and_then(|f| read(&f))
                .map_or((None, None), |text| io_v1(&text)),
        };
        let counters = CgroupCounters {
            cpu_usec,
            memory_bytes,
            tasks,
            io_read_bytes,
            io_write_bytes,
        };
        (!counters.is_empty()).then_some(counters)
    }
}

/// A `ControlGroup` path relative to a hierarchy's root: absolute, of
/// plain components (no `..`), not the root itself.
fn relative(path: &str) -> Option<&Path> {
    let relative = path.strip_prefix('/')?;
    let ok = !relative.is_empty()
        && relative
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    ok.then(|| Path::new(relative))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub(crate) fn number(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// The value of `key` in a `key value` file such as `cpu.stat`.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path)?.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `io.stat`: `8:0 rbytes=1 wbytes=2 rios=...` per device, summed.
fn io_v2(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut read, mut written) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some(n) = field
            .strip_prefix("rbytes=")
            .and_then(|n| n.parse::<u64>().ok())
        {
            read = read.saturating_add(n);
        } else if let Some(n) = field
            .strip_prefix("wbytes=")
            .and_then(|n| n.parse::<u64>().ok())
        {
            written = written.saturating_add(n);
        }
    }
    (Some(read), Some(written))
}

/// `blkio.throttle.io_service_bytes`: `8:0 Read 123` per device, summed
/// (the `Total` line left out).
fn io_v1(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut read, mut written) = (0u64, 0u64);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(op), Some(n)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if !device.contains(':') {
            continue;
        }
        match op {
            "Read" => read = read.saturating_add(n),
            "Write" => written = written.saturating_add(n),
            _ => {}
        }
    }
    (Some(read), Some(written))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test stops at its first surprise")]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_unified_hierarchy_gives_every_figure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "cpu io memory pids\n");
        let unit = "system.slice/web.service";
        write(
            root,
            &format!("{unit}/cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        );
        write(root, &format!("{unit}/memory.current"), "73400320\n");
        write(root, &format!("{unit}/pids.current"), "7\n");
        write(
            root,
            &format!("{unit}/io.stat"),
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n8:16 rbytes=1 wbytes=0 rios=1 wios=0\n",
        );
        let cgroups = Cgroups::under(root);
        assert_eq!(
            cgroups.read("/system.slice/web.service"),
            Some(CgroupCounters {
                cpu_usec: Some(2_500_000),
                memory_bytes: Some(73_400_320),
                tasks: Some(7),
                io_read_bytes: Some(4097),
                io_write_bytes: Some(8192),
            })
        );
        // A unit that is not running has no cgroup.
        assert_eq!(cgroups.read("/system.slice/stopped.service"), None);
    }

    #[test]
    fn a_legacy_hierarchy_gives_every_figure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for controller in ["cpu,cpuacct", "memory", "pids", "blkio"] {
            write(root, &format!("{controller}/cgroup.procs"), "");
        }
        let unit = "system.slice/db.service";
        write(
            root,
            &format!("cpu,cpuacct/{unit}/cpuacct.usage"),
            "3000000000\n",
        );
        write(
            root,
            &format!("memory/{unit}/memory.usage_in_bytes"),
            "1048576\n",
        );
        write(root, &format!("pids/{unit}/pids.current"), "3\n");
        write(
            root,
            &format!("blkio/{unit}/blkio.throttle.io_service_bytes"),
            "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\nTotal 300\n",
        );
        let counters = Cgroups::under(root)
            .read("/system.slice/db.service")
            .unwrap();
        assert_eq!(counters.cpu_usec, Some(3_000_000));
        assert_eq!(counters.memory_bytes, Some(1_048_576));
        assert_eq!(counters.tasks, Some(3));
        assert_eq!(
            (counters.io_read_bytes, counters.io_write_bytes),
            (Some(100), Some(200))
        );
    }

    #[test]
    fn a_hybrid_host_reads_cpu_from_the_unified_hierarchy_and_the_rest_from_v1() {
        // As on these machines: cpuacct is not delegated to the unit (its
        // directory does not exist there), the unified hierarchy has no
        // controllers but keeps cpu.stat.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "unified/cgroup.controllers", "");
        for controller in ["cpuacct", "memory", "pids", "blkio"] {
            write(root, &format!("{controller}/cgroup.procs"), "");
        }
        let unit = "app.slice/burn.service";
        write(
            root,
            &format!("unified/{unit}/cpu.stat"),
            "usage_usec 6362841\n",
        );
        write(
            root,
            &format!("memory/{unit}/memory.usage_in_bytes"),
            "253952\n",
        );
        write(root, &format!("pids/{unit}/pids.current"), "1\n");
        let counters = Cgroups::under(root)
            .read("/app.slice/burn.service")
            .unwrap();
        assert_eq!(counters.cpu_usec, Some(6_362_841));
        assert_eq!(counters.memory_bytes, Some(253_952));
        assert_eq!(counters.tasks, Some(1));
        assert_eq!(counters.io_read_bytes, None);
    }

    #[test]
    fn mountinfo_names_the_hierarchies() {
        let text = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
38 30 0:34 / /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,blkio
";
        let found = Cgroups::from_mountinfo(text);
        assert_eq!(found.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            found.legacy["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            found.legacy["memory"],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            found.legacy["blkio"],
            PathBuf::from("/sys/fs/cgroup/odd name")
        );
        assert!(!found.legacy.contains_key("cpu"));
    }

    #[test]
    fn a_path_that_leaves_the_hierarchy_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cgroup.controllers", "");
        write(dir.path(), "memory.current", "1\n");
        let cgroups = Cgroups::under(dir.path());
        for path in ["/", "", "relative.service", "/a/../..", "/./x", "/a//b"] {
            assert_eq!(cgroups.read(path), None, "{path:?}");
        }
    }
}
