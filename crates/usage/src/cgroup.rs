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
    /// The controllers the unified hierarchy has (none on a hybrid host):
    /// a figure whose controller is not there is read from v1 at once.
    unified_controllers: Vec<String>,
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
        found.learn_controllers();
        found
    }

    /// Reads which controllers the unified hierarchy has.
    fn learn_controllers(&mut self) {
        self.unified_controllers = self
            .unified
            .as_ref()
            .and_then(|u| read(&u.join("cgroup.controllers")))
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
    }

    fn unified_has(&self, controller: &str) -> bool {
        self.unified_controllers.iter().any(|c| c == controller)
    }

    /// Hierarchies laid out under `root` as on a host: `root` itself when it
    /// is a unified hierarchy (it has `cgroup.controllers`), else
    /// `root/unified` and `root/<controller>` where they exist. For fixtures.
    pub fn under(root: &Path) -> Cgroups {
        let mut found = Cgroups::default();
        if root.join("cgroup.controllers").exists() {
            found.unified = Some(root.to_owned());
            found.learn_controllers();
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
        found.learn_controllers();
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
        self.read_with(path, &mut |file: &Path| read(file))
    }

    /// [`Cgroups::read`], each file's text got through `text`.
    fn read_with(
        &self,
        path: &str,
        text: &mut dyn FnMut(&Path) -> Option<String>,
    ) -> Option<CgroupCounters> {
        let relative = relative(path)?;
        let unified = self.unified.as_ref().map(|u| u.join(relative));
        // `cpu.stat` is kept for every cgroup; the other v2 files only
        // where their controller is enabled.
        let v2 = |file: &str| {
            let controller = file.split('.').next().unwrap_or_default();
            (controller == "cpu" || self.unified_has(controller))
                .then(|| unified.as_ref().map(|u| u.join(file)))
                .flatten()
        };
        let v1 = |controller: &str, file: &str| {
            self.legacy
                .get(controller)
                .map(|l| l.join(relative).join(file))
        };
        let mut get = |file: Option<PathBuf>| file.and_then(|f| text(&f));
        let num = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());

        let cpu_usec = keyed(get(v2("cpu.stat")), "usage_usec")
            .or_else(|| num(get(v1("cpuacct", "cpuacct.usage"))).map(|ns| ns / 1000));
        let memory_bytes = num(get(v2("memory.current")))
            .or_else(|| num(get(v1("memory", "memory.usage_in_bytes"))));
        let tasks = num(get(v2("pids.current"))).or_else(|| num(get(v1("pids", "pids.current"))));
        let (io_read_bytes, io_write_bytes) = match get(v2("io.stat")) {
            Some(text) => io_v2(&text),
            None => get(v1("blkio", "blkio.throttle.io_service_bytes"))
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

/// Reads cgroups as [`Cgroups::read`] does, keeping each file open between
/// readings and reading it again from its start (one `pread`, where a
/// read by path walks the path and opens and closes the file each time:
/// a quarter of the cost for 200 units). A file whose cgroup is gone
/// (`ENODEV`) is opened again by path, which then fails if the unit
/// stopped. Files not read in a round are closed by [`CgroupReader::end_round`].
#[derive(Debug)]
pub struct CgroupReader {
    cgroups: Cgroups,
    open: HashMap<PathBuf, (std::fs::File, bool)>,
    buffer: Vec<u8>,
    max_open: usize,
}

/// At most this many files are kept open, and never more than a quarter
/// of what the process may open; beyond it files are read by path.
const MAX_OPEN: usize = 2048;

fn max_open() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(limit / 4).unwrap_or(MAX_OPEN).min(MAX_OPEN)
}

impl CgroupReader {
    pub fn new(cgroups: Cgroups) -> Self {
        CgroupReader {
            cgroups,
            open: HashMap::new(),
            buffer: Vec::with_capacity(4096),
            max_open: max_open(),
        }
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// What the cgroup at `path` has used, as [`Cgroups::read`] says.
    pub fn read(&mut self, path: &str) -> Option<CgroupCounters> {
        let Self {
            cgroups,
            open,
            buffer,
            max_open,
        } = self;
        cgroups.read_with(path, &mut |file: &Path| {
            text_of(open, buffer, *max_open, file)
        })
    }

    /// Closes the files not read since the last call.
    pub fn end_round(&mut self) {
        self.open.retain(|_, (_, used)| std::mem::take(used));
    }

    /// How many files are open now.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }
}

fn text_of(
    open: &mut HashMap<PathBuf, (std::fs::File, bool)>,
    buffer: &mut Vec<u8>,
    max_open: usize,
    file: &Path,
) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    if let Some((f, used)) = open.get_mut(file) {
        buffer.clear();
        buffer.resize(buffer.capacity().max(4096), 0);
        let mut filled = 0;
        let ok = loop {
            if filled == buffer.len() {
                buffer.resize(buffer.len() * 2, 0);
            }
            match f.read_at(&mut buffer[filled..], filled as u64) {
                Ok(0) => break true,
                Ok(n) => filled += n,
                Err(_) => break false,
            }
        };
        if ok {
            *used = true;
            return String::from_utf8(buffer[..filled].to_vec()).ok();
        }
        // Its cgroup went away: try the path again.
        open.remove(file);
    }
    let mut f = std::fs::File::open(file).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    if open.len() < max_open {
        open.insert(file.to_owned(), (f, true));
    }
    Some(text)
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

/// The value of `key` in a `key value` text such as `cpu.stat`'s.
fn keyed(text: Option<String>, key: &str) -> Option<u64> {
    text?.lines().find_map(|line| {
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

    #[test]
    fn a_reader_keeps_files_open_and_reads_them_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "memory pids\n");
        write(root, "a.service/cpu.stat", "usage_usec 10\n");
        write(root, "a.service/memory.current", "1000\n");
        write(root, "b.service/cpu.stat", "usage_usec 5\n");
        let mut reader = CgroupReader::new(Cgroups::under(root));
        assert_eq!(reader.read("/a.service").unwrap().cpu_usec, Some(10));
        assert_eq!(reader.read("/b.service").unwrap().cpu_usec, Some(5));
        reader.end_round();
        assert_eq!(reader.open_files(), 3, "the files that exist");
        // The same open file, read again: what it says now, whole.
        std::fs::write(
            root.join("a.service/cpu.stat"),
            "usage_usec 123456789\nuser_usec 1\n",
        )
        .unwrap();
        std::fs::write(root.join("a.service/memory.current"), "7\n").unwrap();
        let again = reader.read("/a.service").unwrap();
        assert_eq!(
            (again.cpu_usec, again.memory_bytes),
            (Some(123_456_789), Some(7))
        );
        reader.end_round();
        assert_eq!(
            reader.open_files(),
            2,
            "b's file was not read this round: closed"
        );
        assert_eq!(reader.read("/gone.service"), None);
    }

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
