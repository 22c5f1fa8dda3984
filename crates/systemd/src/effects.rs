//! What a start, stop or restart would reach, followed before the job is
//! asked for: systemd has no dry run, and a job pulls in, stops and triggers
//! other units. Starting `exit.target` ends a user manager; on the system
//! manager a unit that wants `reboot.target` reboots the machine. So a
//! control request is judged by its effect, not by the name asked for.
//!
//! The walk follows what systemd's transaction would: a start starts what
//! the unit `Requires=`, `Wants=`, `BindsTo=` and `Upholds=`, stops what it
//! `Conflicts=` with, and (later) starts its `OnFailure=`/`OnSuccess=`
//! units; a stop stops what is `RequiredBy=`, `BoundBy=` or `PartOf=` it
//! (`ConsistsOf=`). Beyond the unit asked for, it does not follow a start
//! of a unit that is already active, nor a stop of one that is not: those
//! jobs are no-ops in systemd's transaction. (Every service requires
//! `sysinit.target`, which wants `local-fs.target`, whose `OnFailure=` is
//! `emergency.target`: followed through the active targets of a running
//! system, every start would look like a way to the emergency shell.)

use std::collections::{HashSet, VecDeque};
use std::future::Future;

use crate::Error;

/// The targets and services that end the service manager or the machine,
/// or take it to a rescue shell, when started.
pub const ENDS_THE_MANAGER: &[&str] = &[
    "shutdown.target",
    "exit.target",
    "reboot.target",
    "poweroff.target",
    "halt.target",
    "kexec.target",
    "soft-reboot.target",
    "rescue.target",
    "emergency.target",
    "systemd-exit.service",
    "systemd-halt.service",
    "systemd-kexec.service",
    "systemd-poweroff.service",
    "systemd-reboot.service",
    "systemd-soft-reboot.service",
    "rescue.service",
    "emergency.service",
];

/// Most units a walk visits before it gives up (and refuses).
pub const MAX_UNITS: usize = 4096;

/// A unit's dependencies, as the manager has loaded them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDeps {
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub binds_to: Vec<String>,
    pub upholds: Vec<String>,
    pub conflicts: Vec<String>,
    pub conflicted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub bound_by: Vec<String>,
    pub consists_of: Vec<String>,
    pub on_failure: Vec<String>,
    pub on_success: Vec<String>,
    pub allow_isolate: bool,
    /// The unit is active (or activating, reloading) now: a start job on it
    /// is a no-op, as is a stop job on one that is not.
    pub active: bool,
    /// `SuccessAction=`, `FailureAction=`, `JobTimeoutAction=`,
    /// `StartLimitAction=` that are set (not `none`): (setting, value).
    pub actions: Vec<(String, String)>,
}

/// Where a walk reads units from: the manager over D-Bus, or a recorded
/// graph in tests.
pub trait UnitGraph {
    /// The unit's dependencies; `None` when the manager has no such unit.
    fn deps(&self, unit: &str) -> impl Future<Output = Result<Option<UnitDeps>, Error>> + Send;
}

/// What a job does to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Start,
    Stop,
}

/// Why a control request must not go ahead: what it would do to which
/// unit, and how it gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hazard {
    /// The units from the one asked for to the one that does harm.
    pub path: Vec<String>,
    pub why: String,
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.len() > 1 {
            write!(f, "{} (through {})", self.why, self.path.join(" → "))
        } else {
            f.write_str(&self.why)
        }
    }
}

/// Follows what `jobs` on `unit` would reach (a restart is a stop and a
/// start) and returns the first hazard: a unit in [`ENDS_THE_MANAGER`]
/// started, a unit with an action setting started, a unit in `keep` (the
/// bus, lookout itself) stopped, or the unit asked for allows isolation.
pub async fn hazard<G: UnitGraph>(
    graph: &G,
    unit: &str,
    jobs: &[Job],
    keep: &[&str],
) -> Result<Option<Hazard>, Error> {
    let mut seen: HashSet<(String, Job)> = HashSet::new();
    let mut queue: VecDeque<(String, Job, Vec<String>)> = jobs
        .iter()
        .map(|job| (unit.to_owned(), *job, vec![unit.to_owned()]))
        .collect();
    while let Some((name, job, path)) = queue.pop_front() {
        if !seen.insert((name.clone(), job)) {
            continue;
        }
        if seen.len() > MAX_UNITS {
            return Ok(Some(Hazard {
                path,
                why: format!("it reaches more than {MAX_UNITS} units"),
            }));
        }
        let harm = match job {
            Job::Start if ENDS_THE_MANAGER.contains(&name.as_str()) => Some(format!(
                "it would start {name}, which ends the service manager or the machine"
            )),
            Job::Stop if keep.contains(&name.as_str()) => Some(format!(
                "it would stop {name}, which lookout needs to keep running"
            )),
            _ => None,
        };
        if let Some(why) = harm {
            return Ok(Some(Hazard { path, why }));
        }
        let Some(deps) = graph.deps(&name).await? else {
            continue;
        };
        let no_op = match job {
            Job::Start => deps.active,
            Job::Stop => !deps.active,
        };
        if no_op && name != unit {
            continue;
        }
        if job == Job::Start {
            if let Some((setting, value)) = deps.actions.first() {
                return Ok(Some(Hazard {
                    why: format!("it would start {name}, whose {setting}={value} acts on the service manager or the machine"),
                    path,
                }));
            }
            if deps.allow_isolate && name == unit {
                return Ok(Some(Hazard {
                    why: format!("{name} is a target the system can be isolated to"),
                    path,
                }));
            }
        }
        let next: Vec<(&Vec<String>, Job)> = match job {
            Job::Start => vec![
                (&deps.requires, Job::Start),
                (&deps.wants, Job::Start),
                (&deps.binds_to, Job::Start),
                (&deps.upholds, Job::Start),
                (&deps.on_failure, Job::Start),
                (&deps.on_success, Job::Start),
                (&deps.conflicts, Job::Stop),
                (&deps.conflicted_by, Job::Stop),
            ],
            Job::Stop => vec![
                (&deps.required_by, Job::Stop),
                (&deps.bound_by, Job::Stop),
                (&deps.consists_of, Job::Stop),
                (&deps.on_failure, Job::Start),
                (&deps.on_success, Job::Start),
            ],
        };
        for (units, job) in next {
            for other in units {
                if !seen.contains(&(other.clone(), job)) {
                    let mut path = path.clone();
                    path.push(other.clone());
                    queue.push_back((other.clone(), job, path));
                }
            }
        }
    }
    Ok(None)
}

impl UnitGraph for crate::Systemd {
    async fn deps(&self, unit: &str) -> Result<Option<UnitDeps>, Error> {
        let path = match self.manager.load_unit(unit).await {
            Ok(path) => path,
            Err(e) => {
                return match self.bus_error(e) {
                    Error::NoSuchUnit(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let properties = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.freedesktop.systemd1")
            .and_then(|b| b.path(path))
            .map_err(|e| self.bus_error(e))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.bus_error(e))?;
        let all = properties
            .get_all(zbus::names::InterfaceName::from_static_str_unchecked(
                "org.freedesktop.systemd1.Unit",
            ))
            .await
            .map_err(|e| self.bus_error(e.into()))?;
        let text = |key: &str| -> Option<String> {
            all.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| String::try_from(v).ok())
        };
        if text("LoadState").as_deref() == Some("not-found") {
            return Ok(None);
        }
        let list = |key: &str| -> Vec<String> {
            all.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Vec::<String>::try_from(v).ok())
                .unwrap_or_default()
        };
        let actions = [
            "SuccessAction",
            "FailureAction",
            "JobTimeoutAction",
            "StartLimitAction",
        ]
        .into_iter()
        .filter_map(|key| {
            text(key)
                .filter(|v| !v.is_empty() && v != "none")
                .map(|v| (key.to_owned(), v))
        })
        .collect();
        Ok(Some(UnitDeps {
            requires: list("Requires"),
            wants: list("Wants"),
            binds_to: list("BindsTo"),
            upholds: list("Upholds"),
            conflicts: list("Conflicts"),
            conflicted_by: list("ConflictedBy"),
            required_by: list("RequiredBy"),
            bound_by: list("BoundBy"),
            consists_of: list("ConsistsOf"),
            on_failure: list("OnFailure"),
            on_success: list("OnSuccess"),
            active: matches!(
                text("ActiveState").as_deref(),
                Some("active" | "activating" | "reloading")
            ),
            allow_isolate: all
                .get("AllowIsolate")
                .and_then(|v| bool::try_from(v).ok())
                .unwrap_or(false),
            actions,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A recorded graph.
    struct Graph(HashMap<&'static str, UnitDeps>);

    impl UnitGraph for Graph {
        async fn deps(&self, unit: &str) -> Result<Option<UnitDeps>, Error> {
            Ok(self.0.get(unit).cloned())
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The part of a system manager's graph around shutting down, modelled
    /// on Debian 12's unit files and systemd's default dependencies.
    fn system() -> Graph {
        let mut g = HashMap::new();
        for (target, service) in [
            ("reboot.target", "systemd-reboot.service"),
            ("poweroff.target", "systemd-poweroff.service"),
            ("halt.target", "systemd-halt.service"),
            ("kexec.target", "systemd-kexec.service"),
        ] {
            g.insert(
                target,
                UnitDeps {
                    requires: names(&[service]),
                    allow_isolate: true,
                    ..Default::default()
                },
            );
            g.insert(
                service,
                UnitDeps {
                    requires: names(&["shutdown.target", "umount.target", "final.target"]),
                    ..Default::default()
                },
            );
        }
        g.insert(
            "rescue.target",
            UnitDeps {
                requires: names(&["sysinit.target", "rescue.service"]),
                conflicts: names(&["shutdown.target"]),
                allow_isolate: true,
                ..Default::default()
            },
        );
        g.insert(
            "sysinit.target",
            UnitDeps {
                wants: names(&["local-fs.target", "swap.target"]),
                conflicts: names(&["emergency.service", "emergency.target"]),
                ..Default::default()
            },
        );
        g.insert(
            "basic.target",
            UnitDeps {
                requires: names(&["sysinit.target"]),
                wants: names(&[
                    "sockets.target",
                    "timers.target",
                    "paths.target",
                    "slices.target",
                ]),
                conflicts: names(&["shutdown.target"]),
                ..Default::default()
            },
        );
        g.insert(
            "multi-user.target",
            UnitDeps {
                requires: names(&["basic.target"]),
                conflicts: names(&["rescue.service", "rescue.target"]),
                allow_isolate: true,
                ..Default::default()
            },
        );
        g.insert(
            "nginx.service",
            UnitDeps {
                requires: names(&["sysinit.target", "system.slice"]),
                wants: names(&["network-online.target"]),
                conflicts: names(&["shutdown.target"]),
                required_by: vec![],
                ..Default::default()
            },
        );
        g.insert(
            "backup.service",
            UnitDeps {
                requires: names(&["sysinit.target"]),
                on_failure: names(&["reboot.target"]),
                ..Default::default()
            },
        );
        g.insert(
            "upgrade.service",
            UnitDeps {
                requires: names(&["sysinit.target"]),
                actions: vec![("SuccessAction".into(), "reboot".into())],
                ..Default::default()
            },
        );
        g.insert(
            "dbus.socket",
            UnitDeps {
                required_by: names(&["dbus.service"]),
                ..Default::default()
            },
        );
        g.insert(
            "dbus.service",
            UnitDeps {
                requires: names(&["dbus.socket"]),
                ..Default::default()
            },
        );
        g.insert(
            "bus-helper.service",
            UnitDeps {
                bound_by: names(&["dbus.service"]),
                ..Default::default()
            },
        );
        Graph(g)
    }

    const KEEP: &[&str] = &["dbus.service", "dbus.socket", "lookout.service"];

    async fn judge(unit: &str, jobs: &[Job]) -> Option<Hazard> {
        hazard(&system(), unit, jobs, KEEP).await.unwrap()
    }

    #[tokio::test]
    async fn every_target_that_ends_the_system_is_refused_by_its_effect() {
        for target in [
            "reboot.target",
            "poweroff.target",
            "halt.target",
            "kexec.target",
            "rescue.target",
            "systemd-reboot.service",
        ] {
            let found = judge(target, &[Job::Start]).await;
            assert!(found.is_some(), "{target} was let through");
        }
        // Through what they pull in: the service reaches shutdown.target.
        let why = judge("systemd-reboot.service", &[Job::Start])
            .await
            .unwrap();
        assert!(why.why.contains("systemd-reboot.service"), "{why}");
    }

    #[tokio::test]
    async fn an_ordinary_service_passes_although_it_conflicts_with_shutdown() {
        // Starting it stops shutdown.target (a conflict), which is harmless.
        assert_eq!(judge("nginx.service", &[Job::Start]).await, None);
        assert_eq!(judge("nginx.service", &[Job::Stop, Job::Start]).await, None);
        // A target people start by hand is not isolated by a start, but it
        // can be isolated to: refused.
        assert!(judge("multi-user.target", &[Job::Start]).await.is_some());
    }

    #[tokio::test]
    async fn what_a_unit_triggers_or_does_on_success_counts() {
        let on_failure = judge("backup.service", &[Job::Start]).await.unwrap();
        assert_eq!(on_failure.path, ["backup.service", "reboot.target"]);
        assert!(on_failure
            .to_string()
            .contains("backup.service → reboot.target"));
        let action = judge("upgrade.service", &[Job::Start]).await.unwrap();
        assert!(action.why.contains("SuccessAction=reboot"), "{action}");
    }

    #[tokio::test]
    async fn stopping_what_carries_the_bus_is_refused_through_its_dependents() {
        let why = judge("dbus.socket", &[Job::Stop]).await.unwrap();
        assert!(why.why.contains("dbus.socket"), "{why}");
        // The bus is bound to the helper: stopping the helper stops the bus.
        let why = judge("bus-helper.service", &[Job::Stop]).await.unwrap();
        assert_eq!(why.path, ["bus-helper.service", "dbus.service"]);
        // Starting it is fine.
        assert_eq!(judge("dbus.socket", &[Job::Start]).await, None);
    }
}

/// The graph of a real system manager's unit files (Debian 12's systemd 252,
/// written by `scripts/system-graph`): the targets a user manager does not
/// have, as the distribution defines them.
#[cfg(test)]
mod system_graph {
    use super::*;
    use std::collections::HashMap;

    /// The recorded unit files, with the units a test says are active.
    struct Files(HashMap<String, serde_json::Value>, Vec<&'static str>);

    impl Files {
        fn load() -> Self {
            let text = include_str!("../testdata/system-graph.json");
            Files(
                serde_json::from_str(text).expect("the recorded graph"),
                Vec::new(),
            )
        }

        /// Adds `unit` `key` `other` (what systemd adds by itself, such as a
        /// service's `Requires=sysinit.target`).
        fn add(&mut self, unit: &str, key: &str, other: &str) {
            let entry = self
                .0
                .entry(unit.to_owned())
                .or_insert_with(|| serde_json::json!({}));
            match entry[key].as_array_mut() {
                Some(list) => list.push(other.into()),
                None => entry[key] = serde_json::json!([other]),
            }
        }
    }

    impl UnitGraph for Files {
        async fn deps(&self, unit: &str) -> Result<Option<UnitDeps>, Error> {
            let Some(entry) = self.0.get(unit) else {
                return Ok(None);
            };
            let list = |key: &str| -> Vec<String> {
                entry[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            Ok(Some(UnitDeps {
                requires: list("requires"),
                wants: list("wants"),
                binds_to: list("binds_to"),
                upholds: list("upholds"),
                conflicts: list("conflicts"),
                conflicted_by: list("conflicted_by"),
                required_by: list("required_by"),
                bound_by: list("bound_by"),
                consists_of: list("consists_of"),
                on_failure: list("on_failure"),
                on_success: list("on_success"),
                allow_isolate: entry["allow_isolate"].as_bool().unwrap_or(false),
                active: self.1.contains(&unit),
                actions: entry["actions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|pair| {
                                Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }))
        }
    }

    #[tokio::test]
    async fn every_target_that_ends_the_system_is_refused_as_debian_defines_it() {
        let files = Files::load();
        for unit in [
            "reboot.target",
            "poweroff.target",
            "halt.target",
            "kexec.target",
            "rescue.target",
            "emergency.target",
            "shutdown.target",
            "exit.target",
            // Aliases and the services behind them.
            "ctrl-alt-del.target",
            "runlevel0.target",
            "runlevel1.target",
            "runlevel6.target",
            "systemd-reboot.service",
            "systemd-poweroff.service",
            "systemd-halt.service",
            "systemd-kexec.service",
            "rescue.service",
            "emergency.service",
        ] {
            assert!(
                files.0.contains_key(unit),
                "{unit} is in the recorded graph"
            );
            let found = hazard(&files, unit, &[Job::Start], &[]).await.unwrap();
            assert!(found.is_some(), "starting {unit} must be refused");
        }
        // A restart is a stop then a start: as final.
        assert!(
            hazard(&files, "reboot.target", &[Job::Stop, Job::Start], &[])
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn ordinary_services_are_started_stopped_and_restarted() {
        let files = Files::load();
        let keep = ["dbus.service", "dbus.socket"];
        for unit in [
            "systemd-timesyncd.service",
            "systemd-networkd.service",
            "mosquitto.service",
            "postgresql.service",
            "prometheus.service",
            "fstrim.service",
        ] {
            for jobs in [&[Job::Start][..], &[Job::Stop], &[Job::Stop, Job::Start]] {
                let found = hazard(&files, unit, jobs, &keep).await.unwrap();
                assert_eq!(found, None, "{unit} {jobs:?}");
            }
        }
        // Stopping the bus is refused, starting it is not.
        assert!(hazard(&files, "dbus.service", &[Job::Stop], &keep)
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            hazard(&files, "dbus.service", &[Job::Start], &keep)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_running_system_s_active_targets_are_not_followed() {
        // systemd gives every service Requires=sysinit.target; sysinit.target
        // wants local-fs.target, whose OnFailure= is emergency.target.
        let mut files = Files::load();
        files.add("mosquitto.service", "requires", "sysinit.target");
        assert_eq!(
            files.0["sysinit.target"]["wants"]
                .as_array()
                .map(|w| w.iter().any(|u| u == "local-fs.target")),
            Some(true),
            "as Debian ships it"
        );
        // Nothing running (the files alone): the walk reaches the emergency shell.
        let found = hazard(&files, "mosquitto.service", &[Job::Start], &[])
            .await
            .unwrap()
            .expect("refused");
        assert!(found.to_string().contains("emergency.target"), "{found}");
        // A running system: those targets are up, starting them is a no-op.
        files.1 = vec!["sysinit.target", "local-fs.target", "basic.target"];
        assert_eq!(
            hazard(&files, "mosquitto.service", &[Job::Start], &[])
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_target_that_can_be_isolated_is_refused_and_says_why() {
        let files = Files::load();
        for unit in ["multi-user.target", "graphical.target"] {
            let why = hazard(&files, unit, &[Job::Start], &[])
                .await
                .unwrap()
                .expect("refused")
                .to_string();
            assert!(why.contains("can be isolated to"), "{unit}: {why}");
        }
    }
}
