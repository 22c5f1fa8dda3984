//! Resource usage for lookout: what a unit's cgroup has used
//! ([`cgroup::Cgroups`]) and what the host uses ([`host::HostReader`]),
//! read from the kernel's files and turned into the rates and levels
//! `lookout_proto::usage` carries. Used by the hub for its own host and by
//! the agent for its host; it depends on `proto` alone.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cgroup;
pub mod host;

pub use cgroup::{CgroupCounters, CgroupReader, Cgroups};
pub use host::{HostCounters, HostReader};

use lookout_proto::usage::UnitUsage;

/// A unit's use between two readings of its cgroup, `secs` apart.
pub fn unit_usage(
    now: &CgroupCounters,
    earlier: Option<&CgroupCounters>,
    secs: f64,
    at: chrono::DateTime<chrono::Utc>,
) -> UnitUsage {
    let rate = |now: Option<u64>, then: Option<u64>, per: f64| match (now, then) {
        (Some(n), Some(t)) if secs > 0.0 && n >= t => Some((n - t) as f64 / secs / per),
        _ => None,
    };
    let earlier = earlier.copied().unwrap_or_default();
    UnitUsage {
        at,
        // Microseconds of CPU per second, as a percent of one core.
        cpu_percent: rate(now.cpu_usec, earlier.cpu_usec, 10_000.0),
        memory_bytes: now.memory_bytes,
        tasks: now.tasks,
        io_read_bps: rate(now.io_read_bytes, earlier.io_read_bytes, 1.0),
        io_write_bps: rate(now.io_write_bytes, earlier.io_write_bytes, 1.0),
        cpu_seconds_total: now.cpu_usec.map(|us| us as f64 / 1e6),
        io_read_bytes_total: now.io_read_bytes,
        io_write_bytes_total: now.io_write_bytes,
    }
}

/// The cgroup of process `pid`, as systemd's `ControlGroup` names it: the
/// unified hierarchy's path (`0::`), else the v1 `name=systemd` one.
pub fn cgroup_of(pid: u32) -> Option<String> {
    path_in(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The v1 controllers among `memory`, `pids` and `blkio` that hold process
/// `pid` somewhere else than its cgroup ([`cgroup_of`]): their files there
/// are not its figures. Empty where the hierarchies agree (as systemd and
/// container engines keep them) and on a unified-only host.
pub fn split_controllers(pid: u32) -> Vec<&'static str> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| split_in(&text))
        .unwrap_or_default()
}

fn split_in(text: &str) -> Vec<&'static str> {
    let Some(path) = path_in(text) else {
        return Vec::new();
    };
    let mut split = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(at)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if at == path {
            continue;
        }
        for c in controllers.split(',') {
            if let Some(known) = ["memory", "pids", "blkio"].into_iter().find(|k| *k == c) {
                split.push(known);
            }
        }
    }
    split
}

/// Leaves out of `usage` the figures of the controllers in `split`.
pub fn without(usage: &mut UnitUsage, split: &[&str]) {
    for controller in split {
        match *controller {
            "memory" => usage.memory_bytes = None,
            "pids" => usage.tasks = None,
            "blkio" => {
                usage.io_read_bps = None;
                usage.io_write_bps = None;
                usage.io_read_bytes_total = None;
                usage.io_write_bytes_total = None;
            }
            _ => {}
        }
    }
}

fn path_in(text: &str) -> Option<String> {
    let path = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .filter(|p| p.starts_with('/') && *p != "/")
            .map(str::to_owned)
    };
    path("0::").or_else(|| {
        text.lines()
            .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p.to_owned()))
            .filter(|p| p.starts_with('/') && p != "/")
    })
}

/// Samples units and the host interval after interval: each unit's use
/// since its last reading, the host's since the last round. Units whose
/// cgroup is gone are left out (they stopped).
#[derive(Debug)]
pub struct Sampler {
    files: CgroupReader,
    host: HostReader,
    last_host: Option<HostCounters>,
    last: std::collections::HashMap<String, (CgroupCounters, chrono::DateTime<chrono::Utc>)>,
}

impl Sampler {
    pub fn new(cgroups: Cgroups, host: HostReader) -> Self {
        Sampler {
            files: CgroupReader::new(cgroups),
            host,
            last_host: None,
            last: std::collections::HashMap::new(),
        }
    }

    /// One round at `now`: `units` are (unit name, cgroup path). The host's
    /// use is `None` on the first round (a rate needs two readings).
    pub fn sample(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        units: &[(String, String)],
    ) -> (
        Option<lookout_proto::usage::HostUsage>,
        Vec<(String, UnitUsage)>,
    ) {
        self.sample_with(now, units, Vec::new())
    }

    /// [`Sampler::sample`], with the counters of more units read some other
    /// way (the hub: systemd's accounting where a cgroup cannot be read).
    pub fn sample_with(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        units: &[(String, String)],
        elsewhere: Vec<(String, CgroupCounters)>,
    ) -> (
        Option<lookout_proto::usage::HostUsage>,
        Vec<(String, UnitUsage)>,
    ) {
        let host = self.host.counters(now, true);
        let host_usage = self.last_host.as_ref().map(|earlier| host.usage(earlier));
        self.last_host = Some(host);
        let mut out = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let read: Vec<(String, CgroupCounters)> = units
            .iter()
            .filter_map(|(unit, group)| Some((unit.clone(), self.files.read(group)?)))
            .chain(elsewhere)
            .collect();
        for (unit, counters) in read {
            let earlier = self.last.get(&unit).copied();
            let secs = earlier.map_or(0.0, |(_, t)| (now - t).num_milliseconds() as f64 / 1000.0);
            out.push((
                unit.clone(),
                unit_usage(&counters, earlier.as_ref().map(|(c, _)| c), secs, now),
            ));
            seen.insert(unit, (counters, now));
        }
        self.files.end_round();
        self.last = seen;
        (host_usage, out)
    }
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn a_process_pulled_back_to_a_controllers_root_is_split_there() {
        // As seen on these machines: a container whose `memory` and `pids`
        // placement another manager moved back to the root.
        let moved = "9:name=systemd:/libpod_parent/libpod-64b7\n8:pids:/\n7:blkio:/libpod_parent/libpod-64b7\n4:memory:/\n2:cpuacct:/libpod_parent/libpod-64b7\n1:cpu:/\n0::/libpod_parent/libpod-64b7\n";
        assert_eq!(
            path_in(moved).as_deref(),
            Some("/libpod_parent/libpod-64b7")
        );
        assert_eq!(split_in(moved), ["pids", "memory"]);
        let kept = "4:memory:/system.slice/a.service\n2:cpu,cpuacct:/system.slice/a.service\n0::/system.slice/a.service\n";
        assert!(split_in(kept).is_empty());
        assert!(
            split_in("0::/system.slice/a.service\n").is_empty(),
            "unified only"
        );
        let mut usage = UnitUsage {
            memory_bytes: Some(1),
            tasks: Some(2),
            cpu_percent: Some(3.0),
            ..UnitUsage::default()
        };
        without(&mut usage, &split_in(moved));
        assert_eq!(
            (usage.memory_bytes, usage.tasks, usage.cpu_percent),
            (None, None, Some(3.0))
        );
    }
}
