//! A host's use read from `/proc` and `/sys`: CPU time per core, load,
//! memory and swap, mounted filesystems (`statvfs`), network and disk
//! counters, temperatures (hwmon and thermal zones) and uptime. Counters
//! are cumulative; [`HostCounters::usage`] turns two readings into rates.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use lookout_proto::usage::{DiskUsage, FilesystemUsage, HostUsage, NetworkUsage, Temperature};

use crate::cgroup::{number, read};

/// Where the host's `/proc` and `/sys` are (elsewhere for fixtures).
#[derive(Debug, Clone)]
pub struct HostReader {
    proc: PathBuf,
    sys: PathBuf,
}

impl Default for HostReader {
    fn default() -> Self {
        HostReader::new("/proc", "/sys")
    }
}

/// Busy and total CPU time of one core (or all), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub busy: u64,
    pub total: u64,
}

/// One reading of the host's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostCounters {
    pub at: DateTime<Utc>,
    /// All cores first, then each core.
    pub cpu: Vec<CpuTicks>,
    pub load: [f64; 3],
    pub memory_total: u64,
    pub memory_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub filesystems: Vec<FilesystemUsage>,
    /// (interface, bytes received, bytes sent)
    pub networks: Vec<(String, u64, u64)>,
    /// (device, bytes read, bytes written)
    pub disks: Vec<(String, u64, u64)>,
    pub temperatures: Vec<Temperature>,
    pub uptime_secs: u64,
}

impl HostReader {
    pub fn new(proc: impl Into<PathBuf>, sys: impl Into<PathBuf>) -> Self {
        HostReader {
            proc: proc.into(),
            sys: sys.into(),
        }
    }

    /// Reads every counter now. A file that cannot be read leaves its
    /// figures empty; filesystems are read with `statvfs` when `statvfs`.
    pub fn counters(&self, at: DateTime<Utc>, statvfs: bool) -> HostCounters {
        let text = |file: &str| read(&self.proc.join(file)).unwrap_or_default();
        let meminfo = text("meminfo");
        let kib = |key: &str| meminfo_kib(&meminfo, key).saturating_mul(1024);
        let mut load = [0.0; 3];
        for (slot, value) in load.iter_mut().zip(text("loadavg").split_whitespace()) {
            *slot = value.parse().unwrap_or(0.0);
        }
        HostCounters {
            at,
            cpu: cpu_ticks(&text("stat")),
            load,
            memory_total: kib("MemTotal"),
            memory_available: kib("MemAvailable"),
            swap_total: kib("SwapTotal"),
            swap_free: kib("SwapFree"),
            filesystems: if statvfs {
                filesystems(&text("self/mounts"))
            } else {
                Vec::new()
            },
            networks: networks(&text("net/dev")),
            disks: disks(&text("diskstats"), &self.sys),
            temperatures: temperatures(&self.sys),
            uptime_secs: text("uptime")
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .map_or(0, |s| s as u64),
        }
    }
}

impl HostCounters {
    /// The host's use between `earlier` and this reading.
    pub fn usage(&self, earlier: &HostCounters) -> HostUsage {
        let secs = (self.at - earlier.at).num_milliseconds() as f64 / 1000.0;
        let rate = |now: u64, then: u64| {
            if secs > 0.0 {
                now.saturating_sub(then) as f64 / secs
            } else {
                0.0
            }
        };
        let busy = |now: &CpuTicks, then: &CpuTicks| {
            let total = now.total.saturating_sub(then.total);
            if total == 0 {
                0.0
            } else {
                now.busy.saturating_sub(then.busy) as f64 * 100.0 / total as f64
            }
        };
        let cpus: Vec<f64> = self
            .cpu
            .iter()
            .zip(
                earlier
                    .cpu
                    .iter()
                    .chain(std::iter::repeat(&CpuTicks::default())),
            )
            .map(|(now, then)| busy(now, then))
            .collect();
        let before = |list: &[(String, u64, u64)], name: &str| {
            list.iter()
                .find(|(n, _, _)| n == name)
                .map_or((0, 0), |(_, a, b)| (*a, *b))
        };
        HostUsage {
            at: self.at,
            cpu_percent: cpus.first().copied().unwrap_or(0.0),
            cores: cpus.iter().skip(1).copied().collect(),
            load: self.load,
            memory_total_bytes: self.memory_total,
            memory_used_bytes: self.memory_total.saturating_sub(self.memory_available),
            swap_total_bytes: self.swap_total,
            swap_used_bytes: self.swap_total.saturating_sub(self.swap_free),
            filesystems: self.filesystems.clone(),
            networks: self
                .networks
                .iter()
                .map(|(name, rx, tx)| {
                    let (rx0, tx0) = before(&earlier.networks, name);
                    NetworkUsage {
                        interface: name.clone(),
                        rx_bps: rate(*rx, rx0),
                        tx_bps: rate(*tx, tx0),
                    }
                })
                .collect(),
            disks: self
                .disks
                .iter()
                .map(|(name, r, w)| {
                    let (r0, w0) = before(&earlier.disks, name);
                    DiskUsage {
                        device: name.clone(),
                        read_bps: rate(*r, r0),
                        write_bps: rate(*w, w0),
                    }
                })
                .collect(),
            temperatures: self.temperatures.clone(),
            uptime_secs: self.uptime_secs,
        }
    }
}

/// `/proc/stat`'s `cpu` lines: busy is everything but idle and iowait.
fn cpu_ticks(stat: &str) -> Vec<CpuTicks> {
    stat.lines()
        .filter(|l| l.starts_with("cpu"))
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let total: u64 = fields.iter().sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            CpuTicks {
                busy: total.saturating_sub(idle),
                total,
            }
        })
        .collect()
}

fn meminfo_kib(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| {
            let (k, rest) = line.split_once(':')?;
            (k == key).then(|| rest.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// The writable filesystems on block devices (each device once), with
/// their use. Read-only ones (a snap's squashfs, a CD) are full by design
/// and cannot fill: they are left out.
fn filesystems(mounts: &str) -> Vec<FilesystemUsage> {
    let mut out: Vec<FilesystemUsage> = Vec::new();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount), Some(fs_type), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !device.starts_with("/dev/")
            || options.split(',').any(|o| o == "ro")
            || matches!(fs_type, "squashfs" | "iso9660" | "erofs" | "cramfs" | "udf")
            || out.iter().any(|f| f.device == device)
        {
            continue;
        }
        let mount = mount.replace("\\040", " ");
        let Ok(stat) = rustix::fs::statvfs(Path::new(&mount)) else {
            continue;
        };
        let fragment = stat.f_frsize.max(1);
        let size = stat.f_blocks.saturating_mul(fragment);
        if size == 0 {
            continue;
        }
        let free = stat.f_bfree.saturating_mul(fragment);
        let available = stat.f_bavail.saturating_mul(fragment);
        let used = size.saturating_sub(free);
        out.push(FilesystemUsage {
            mount,
            device: device.to_owned(),
            fs_type: fs_type.to_owned(),
            // What users can fill: used plus what is available to them.
            size_bytes: used.saturating_add(available),
            used_bytes: used,
            inodes: stat.f_files,
            inodes_used: stat.f_files.saturating_sub(stat.f_ffree),
        });
    }
    out
}

/// `/proc/net/dev`: bytes received and sent per interface, loopback left out.
fn networks(dev: &str) -> Vec<(String, u64, u64)> {
    dev.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let fields: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some((name.to_owned(), *fields.first()?, *fields.get(8)?))
        })
        .collect()
}

/// `/proc/diskstats`: bytes read and written per whole disk (those
/// `/sys/block` lists), loop and RAM devices left out.
fn disks(stats: &str, sys: &Path) -> Vec<(String, u64, u64)> {
    stats
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = *fields.get(2)?;
            if name.starts_with("loop")
                || name.starts_with("ram")
                || !sys.join("block").join(name).exists()
            {
                return None;
            }
            let sectors = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            Some((name.to_owned(), sectors(5)? * 512, sectors(9)? * 512))
        })
        .collect()
}

/// Every hwmon `temp*_input` and every thermal zone, in °C.
fn temperatures(sys: &Path) -> Vec<Temperature> {
    let mut out = Vec::new();
    let entries = |dir: PathBuf| -> Vec<PathBuf> {
        let mut list: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        list.sort();
        list
    };
    for hwmon in entries(sys.join("class/hwmon")) {
        let chip = read(&hwmon.join("name"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        for file in entries(hwmon.clone()) {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(index) = name
                .strip_prefix("temp")
                .and_then(|n| n.strip_suffix("_input"))
            else {
                continue;
            };
            let Some(milli) = number(&file) else { continue };
            let label = read(&hwmon.join(format!("temp{index}_label")))
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("temp{index}"));
            out.push(Temperature {
                sensor: if chip.is_empty() {
                    label
                } else {
                    format!("{chip} {label}")
                },
                celsius: milli as f64 / 1000.0,
            });
        }
    }
    for zone in entries(sys.join("class/thermal")) {
        let is_zone = zone
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("thermal_zone"));
        let Some(milli) = is_zone.then(|| read(&zone.join("temp"))).flatten() else {
            continue;
        };
        let Ok(milli) = milli.trim().parse::<i64>() else {
            continue;
        };
        let kind = read(&zone.join("type"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        out.push(Temperature {
            sensor: kind,
            celsius: milli as f64 / 1000.0,
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test stops at its first surprise")]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fixture(root: &Path, busy: u64, idle: u64, rx: u64, sectors: u64) {
        write(root, "proc/stat", &format!(
            "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 {idle} 0 0 0 0 0 0\nintr 1 2 3\n"
        ));
        write(root, "proc/loadavg", "0.50 0.25 0.10 1/100 4242\n");
        write(root, "proc/meminfo", "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\nSwapTotal:       1000000 kB\nSwapFree:         750000 kB\n");
        write(root, "proc/uptime", "12345.67 20000.00\n");
        write(root, "proc/net/dev", &format!(
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: {rx} 10 0 0 0 0 0 0 {rx} 10 0 0 0 0 0 0\n"
        ));
        write(root, "proc/diskstats", &format!(
            "   8       0 sda 10 0 {sectors} 5 20 0 {sectors} 9 0 0 0\n   8       1 sda1 10 0 {sectors} 5 20 0 {sectors} 9 0 0 0\n   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0\n"
        ));
        write(root, "sys/block/sda/size", "1000\n");
        write(root, "sys/class/hwmon/hwmon0/name", "coretemp\n");
        write(root, "sys/class/hwmon/hwmon0/temp1_input", "45000\n");
        write(root, "sys/class/hwmon/hwmon0/temp1_label", "Package id 0\n");
        write(root, "sys/class/hwmon/hwmon0/temp2_input", "41500\n");
        write(root, "sys/class/thermal/thermal_zone0/temp", "38000\n");
        write(root, "sys/class/thermal/thermal_zone0/type", "acpitz\n");
        write(
            root,
            "sys/class/thermal/cooling_device0/type",
            "Processor\n",
        );
    }

    #[test]
    fn two_readings_of_a_fixture_host_give_its_rates_and_levels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let reader = HostReader::new(root.join("proc"), root.join("sys"));
        let t0 = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        fixture(root, 100, 100, 1000, 0);
        let first = reader.counters(t0, false);
        // Ten seconds later: cpu0 busy 300 more ticks, cpu1 idle 100 more.
        fixture(root, 400, 200, 11_000, 20);
        let second = reader.counters(t0 + chrono::Duration::seconds(10), false);
        let usage = second.usage(&first);
        assert_eq!(usage.cpu_percent, 75.0);
        assert_eq!(usage.cores, vec![100.0, 0.0]);
        assert_eq!(usage.load, [0.5, 0.25, 0.1]);
        assert_eq!(usage.memory_total_bytes, 8_000_000 * 1024);
        assert_eq!(usage.memory_used_bytes, 2_000_000 * 1024);
        assert_eq!(usage.memory_percent(), 25.0);
        assert_eq!(usage.swap_percent(), 25.0);
        assert_eq!(
            usage.networks,
            vec![NetworkUsage {
                interface: "eth0".into(),
                rx_bps: 1000.0,
                tx_bps: 1000.0
            }]
        );
        // The whole disk only: not its partition, not a loop device.
        assert_eq!(
            usage.disks,
            vec![DiskUsage {
                device: "sda".into(),
                read_bps: 1024.0,
                write_bps: 1024.0
            }]
        );
        assert_eq!(usage.uptime_secs, 12345);
    }

    #[test]
    fn temperatures_come_from_hwmon_and_thermal_zones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fixture(root, 0, 0, 0, 0);
        let reader = HostReader::new(root.join("proc"), root.join("sys"));
        let counters = reader.counters(DateTime::UNIX_EPOCH, false);
        assert_eq!(
            counters.temperatures,
            vec![
                Temperature {
                    sensor: "coretemp Package id 0".into(),
                    celsius: 45.0
                },
                Temperature {
                    sensor: "coretemp temp2".into(),
                    celsius: 41.5
                },
                Temperature {
                    sensor: "acpitz".into(),
                    celsius: 38.0
                },
            ]
        );
    }

    #[test]
    fn read_only_filesystems_are_left_out() {
        let mounts = "/dev/sda1 / ext4 rw,relatime 0 0\n\
                      /dev/loop3 /snap/core/1 squashfs ro,nodev,relatime 0 0\n\
                      /dev/sr0 /media/cd iso9660 ro 0 0\n\
                      /dev/sdb1 /tmp ext4 ro,relatime 0 0\n\
                      tmpfs /run tmpfs rw 0 0\n\
                      /dev/sda1 /home ext4 rw 0 0\n";
        let found = filesystems(mounts);
        assert_eq!(
            found.iter().map(|f| f.mount.as_str()).collect::<Vec<_>>(),
            ["/"],
            "the writable block device once; read-only and virtual ones left out"
        );
    }

    #[test]
    fn a_host_without_sensors_has_no_temperatures_and_the_real_one_reads() {
        // These machines expose no sensor; the host's own counters still read.
        let counters = HostReader::default().counters(DateTime::UNIX_EPOCH, true);
        assert!(counters.memory_total > 0);
        assert!(counters.cpu.len() >= 2, "all cores and each core");
        assert!(counters.uptime_secs > 0);
        assert!(
            counters
                .filesystems
                .iter()
                .all(|f| f.used_bytes <= f.size_bytes),
            "{:?}",
            counters.filesystems
        );
    }
}
