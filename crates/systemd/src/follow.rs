//! Following a manager live: the signals it sends about its units, so a
//! change reaches lookout within moments instead of at the next scan.
//!
//! After `Subscribe` (done on connecting) systemd announces every change of
//! a unit's properties (`PropertiesChanged` on the unit's object), the end
//! of every job (`JobRemoved`, with the unit's name) and the end of a
//! `daemon-reload` (`Reloading` false). A `PropertiesChanged` carries the new
//! values of the properties that changed ([`UnitDelta`]); one that names a
//! property without its value (systemd "invalidates" some) is
//! [`UnitDelta::incomplete`], and a follower reads the unit's state again
//! ([`Systemd::status`]).
//!
//! What the bus passes on is chosen by match rules ([`Following`]): at
//! first the property changes of every unit, then, once the follower knows
//! which units it keeps, those units' alone. Measured on a user manager, a
//! job on one service sends 38 signals: 8 about the service, 18 about the
//! slice and targets it touches, and 12 `UnitNew`/`UnitRemoved` as systemd
//! loads and unloads it; the job's end is one. Receiving a message is most
//! of what following costs, so lookout takes the 8 and the one.
//!
//! The stream must be read promptly: zbus holds the connection's other
//! messages (replies included) while a subscriber's queue is full. A
//! follower drains it into a set of unit names and reads states beside it.

use futures::{Stream, StreamExt as _};
use zbus::message::Type;
use zbus::{MatchRule, MessageStream};

use crate::dbus::unit_name_from_path;
use crate::{Error, Systemd};

/// What a manager announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A unit's properties changed: its state, its main PID, its restarts ...
    Changed(String, UnitDelta),
    /// A job of the unit ended (it was started, stopped, restarted, or
    /// failed to be): a unit lookout does not know yet is new.
    JobDone(String),
    /// The manager finished re-reading its unit files.
    Reloaded,
}

/// The new values a `PropertiesChanged` of a unit carried, of the
/// properties lookout keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDelta {
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    /// `ActiveEnterTimestamp`, microseconds since the epoch (0: never).
    pub active_enter_usec: Option<u64>,
    /// `MainPID` (0: none).
    pub main_pid: Option<u32>,
    pub restarts: Option<u32>,
    pub result: Option<String>,
    pub exit_status: Option<i32>,
    /// A property lookout keeps changed but its value was not sent.
    pub incomplete: bool,
}

impl UnitDelta {
    /// `later`'s values over these.
    pub fn merge(&mut self, later: UnitDelta) {
        fn over<T>(a: &mut Option<T>, b: Option<T>) {
            if b.is_some() {
                *a = b;
            }
        }
        over(&mut self.active_state, later.active_state);
        over(&mut self.sub_state, later.sub_state);
        over(&mut self.active_enter_usec, later.active_enter_usec);
        over(&mut self.main_pid, later.main_pid);
        over(&mut self.restarts, later.restarts);
        over(&mut self.result, later.result);
        over(&mut self.exit_status, later.exit_status);
        self.incomplete |= later.incomplete;
    }
}

const UNIT_PROPERTIES: &[&str] = &["ActiveState", "SubState", "ActiveEnterTimestamp"];
const SERVICE_PROPERTIES: &[&str] = &["MainPID", "NRestarts", "Result", "ExecMainStatus"];

/// A `PropertiesChanged` body (`sa{sv}as`) as lookout reads it: the
/// interface, the new values of the properties lookout keeps, and the names
/// of the properties sent without their values. The other values (a unit
/// sends some forty at each change) are stepped over, never built.
struct ChangedBody<'m> {
    interface: &'m str,
    kept: Vec<(&'m str, zbus::zvariant::Value<'m>)>,
    invalidated: Vec<&'m str>,
}

impl zbus::zvariant::Type for ChangedBody<'_> {
    const SIGNATURE: &'static zbus::zvariant::Signature = <(
        &str,
        std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
        Vec<&str>,
    ) as zbus::zvariant::Type>::SIGNATURE;
}

/// The properties kept of `interface`.
fn kept_of(interface: &str) -> &'static [&'static str] {
    match interface {
        "org.freedesktop.systemd1.Unit" => UNIT_PROPERTIES,
        "org.freedesktop.systemd1.Service" => SERVICE_PROPERTIES,
        _ => &[],
    }
}

impl<'de> serde::Deserialize<'de> for ChangedBody<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct Kept(&'static [&'static str]);
        impl<'de> DeserializeSeed<'de> for Kept {
            type Value = Vec<(&'de str, zbus::zvariant::Value<'de>)>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Kept {
            type Value = Vec<(&'de str, zbus::zvariant::Value<'de>)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a{sv}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                while let Some(name) = map.next_key::<&'de str>()? {
                    if self.0.contains(&name) {
                        kept.push((name, map.next_value()?));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(kept)
            }
        }

        struct Body;
        impl<'de> Visitor<'de> for Body {
            type Value = ChangedBody<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("(sa{sv}as)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let interface: &'de str = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let kept = seq
                    .next_element_seed(Kept(kept_of(interface)))?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let invalidated = seq.next_element()?.unwrap_or_default();
                Ok(ChangedBody {
                    interface,
                    kept,
                    invalidated,
                })
            }
        }
        deserializer.deserialize_tuple(3, Body)
    }
}

/// Reads a `PropertiesChanged` body; `None` when it is about an interface
/// whose properties lookout does not keep, or names none of them.
fn delta(message: &zbus::Message) -> Option<UnitDelta> {
    let body = message.body();
    let ChangedBody {
        interface,
        kept: changed,
        invalidated,
    } = body.deserialize().ok()?;
    let kept = kept_of(interface);
    if changed.is_empty() && !invalidated.iter().any(|k| kept.contains(k)) {
        return None;
    }
    let get = |key: &str| changed.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let text = |key: &str| match get(key) {
        Some(zbus::zvariant::Value::Str(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let number = |key: &str| get(key).and_then(|v| u32::try_from(v).ok());
    Some(UnitDelta {
        active_state: text("ActiveState"),
        sub_state: text("SubState"),
        active_enter_usec: get("ActiveEnterTimestamp").and_then(|v| u64::try_from(v).ok()),
        main_pid: number("MainPID"),
        restarts: number("NRestarts"),
        result: text("Result"),
        exit_status: get("ExecMainStatus").and_then(|v| i32::try_from(v).ok()),
        incomplete: invalidated.iter().any(|k| kept.contains(k)),
    })
}

/// Signals queued before the subscriber reads them; more hold the connection.
const QUEUE: usize = 4096;

/// Which units' property changes the bus passes on to a follower: every
/// unit's (one rule for their namespace per interface) or only those of
/// some units (one rule per unit). Dropping it leaves the rules in place
/// until the connection closes.
pub struct Following {
    bus: zbus::fdo::DBusProxy<'static>,
    /// `None`: every unit's; else these units' object paths.
    paths: Option<std::collections::BTreeSet<String>>,
    /// Most units followed one by one; with more, every unit is.
    limit: usize,
    scope: crate::Scope,
}

/// Most units followed by a rule each. A system bus allows a connection
/// some hundreds of match rules (dbus-daemon's default is 512), a session
/// bus tens of thousands.
fn rule_limit(scope: crate::Scope) -> usize {
    match scope {
        crate::Scope::System => 384,
        crate::Scope::User => 8192,
    }
}

impl Following {
    /// Follows these units' property changes and no others (every unit's,
    /// when they are more than a connection may have rules for). Rules for
    /// the new units go in before the old ones go out, so no change falls
    /// between.
    pub async fn only(&mut self, units: &std::collections::BTreeSet<String>) -> Result<(), Error> {
        let wanted: Option<std::collections::BTreeSet<String>> = (units.len() <= self.limit)
            .then(|| units.iter().map(|u| crate::dbus::unit_path(u)).collect());
        if wanted == self.paths {
            return Ok(());
        }
        let rules = |paths: &Option<std::collections::BTreeSet<String>>| match paths {
            None => namespace_rules(),
            Some(paths) => paths.iter().map(|p| path_rule(p)).collect(),
        };
        let (new, old) = (
            rules(&wanted).map_err(|e| self.error(e))?,
            rules(&self.paths).map_err(|e| self.error(e))?,
        );
        for rule in new.iter().filter(|r| !old.contains(r)) {
            self.add(rule).await?;
        }
        // From here on the new rules hold: the old ones are only extra.
        self.paths = wanted;
        for rule in old.iter().filter(|r| !new.contains(r)) {
            self.bus
                .remove_match_rule(rule.clone())
                .await
                .map_err(|e| self.error(e.into()))?;
        }
        Ok(())
    }

    async fn add(&self, rule: &MatchRule<'static>) -> Result<(), Error> {
        self.bus
            .add_match_rule(rule.clone())
            .await
            .map_err(|e| self.error(e.into()))
    }

    fn error(&self, e: zbus::Error) -> Error {
        Error::from_bus(self.scope, e)
    }
}

/// Property changes of every unit, of the interfaces lookout reads.
fn namespace_rules() -> zbus::Result<Vec<MatchRule<'static>>> {
    [
        "org.freedesktop.systemd1.Unit",
        "org.freedesktop.systemd1.Service",
    ]
    .into_iter()
    .map(|interface| {
        Ok(property_changes()?
            .path_namespace("/org/freedesktop/systemd1/unit")?
            .arg(0, interface)?
            .build())
    })
    .collect()
}

/// Property changes of one unit.
fn path_rule(path: &str) -> zbus::Result<MatchRule<'static>> {
    Ok(property_changes()?.path(path.to_owned())?.build())
}

fn property_changes() -> zbus::Result<zbus::match_rule::Builder<'static>> {
    MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.systemd1")?
        .interface("org.freedesktop.DBus.Properties")?
        .member("PropertiesChanged")
}

impl Systemd {
    /// The manager's announcements about its units, until the connection
    /// closes (the stream then ends), and the handle that chooses whose
    /// property changes they include (at first: every unit's).
    pub async fn signals(
        &self,
    ) -> Result<(impl Stream<Item = Signal> + Send + Unpin, Following), Error> {
        let manager = |member: &'static str| {
            MatchRule::builder()
                .msg_type(Type::Signal)
                .sender("org.freedesktop.systemd1")
                .and_then(|b| b.path("/org/freedesktop/systemd1"))
                .and_then(|b| b.interface("org.freedesktop.systemd1.Manager"))
                .and_then(|b| b.member(member))
                .map(|b| b.build())
                .map_err(|e| self.bus_error(e))
        };
        type Messages = std::pin::Pin<Box<dyn Stream<Item = zbus::Result<zbus::Message>> + Send>>;
        let mut streams: Vec<Messages> = Vec::new();
        for rule in [manager("JobRemoved")?, manager("Reloading")?] {
            streams.push(Box::pin(
                MessageStream::for_match_rule(rule, &self.conn, Some(QUEUE))
                    .await
                    .map_err(|e| self.bus_error(e))?,
            ));
        }
        // Property changes are most of the traffic, and their rules change
        // as units come and go. A zbus stream of its own per rule would
        // check each message against its rule by parsing the whole body
        // (some forty properties) once per rule; so the rules go to the bus
        // directly, and the messages are taken from the connection's stream
        // of everything it receives, told apart by their header.
        let bus = zbus::fdo::DBusProxy::new(&self.conn)
            .await
            .map_err(|e| self.bus_error(e))?;
        let following = Following {
            bus,
            paths: None,
            limit: rule_limit(self.scope),
            scope: self.scope,
        };
        for rule in namespace_rules().map_err(|e| self.bus_error(e))? {
            following.add(&rule).await?;
        }
        let mut everything = MessageStream::from(&self.conn);
        everything.set_max_queued(QUEUE);
        streams.push(Box::pin(everything.filter(|message| {
            std::future::ready(message.as_ref().is_ok_and(is_property_change))
        })));
        let signals = futures::stream::select_all(streams)
            .filter_map(|message| std::future::ready(message.ok().and_then(|m| read(&m))));
        Ok((signals, following))
    }
}

/// A unit's `PropertiesChanged`, by its header alone.
fn is_property_change(message: &zbus::Message) -> bool {
    let header = message.header();
    message.message_type() == Type::Signal
        && header
            .member()
            .is_some_and(|m| m.as_str() == "PropertiesChanged")
        && header
            .path()
            .is_some_and(|p| p.as_str().starts_with("/org/freedesktop/systemd1/unit/"))
}

fn read(message: &zbus::Message) -> Option<Signal> {
    let header = message.header();
    match header.member()?.as_str() {
        "PropertiesChanged" => {
            let unit = unit_name_from_path(header.path()?.as_str())?;
            Some(Signal::Changed(unit, delta(message)?))
        }
        "JobRemoved" => {
            let (_id, _job, unit, _result): (u32, zbus::zvariant::ObjectPath<'_>, String, &str) =
                message.body().deserialize().ok()?;
            Some(Signal::JobDone(unit))
        }
        "Reloading" => {
            let active: bool = message.body().deserialize().ok()?;
            (!active).then_some(Signal::Reloaded)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::zvariant::Value;

    use super::{read, Signal, UnitDelta};

    fn changed(
        interface: &str,
        values: HashMap<&str, Value<'_>>,
        invalidated: &[&str],
    ) -> Option<Signal> {
        let message = zbus::Message::signal(
            "/org/freedesktop/systemd1/unit/web_2dapp_2eservice",
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .unwrap()
        .build(&(interface, values, invalidated.to_vec()))
        .unwrap();
        read(&message)
    }

    #[test]
    fn a_change_keeps_its_values_and_steps_over_the_rest() {
        // What systemd sends: the kept values among many others, some of them
        // arrays and structures.
        let mut values = HashMap::new();
        values.insert("ActiveState", Value::from("failed"));
        values.insert("SubState", Value::from("failed"));
        values.insert(
            "ActiveEnterTimestamp",
            Value::from(1_700_000_000_000_000u64),
        );
        values.insert("Names", Value::from(vec!["web-app.service", "web.service"]));
        values.insert(
            "Conditions",
            Value::from(vec![(
                "ConditionPathExists",
                false,
                false,
                "/etc/web",
                0i32,
            )]),
        );
        values.insert("Description", Value::from("the web app"));
        assert_eq!(
            changed("org.freedesktop.systemd1.Unit", values, &[]),
            Some(Signal::Changed(
                "web-app.service".into(),
                UnitDelta {
                    active_state: Some("failed".into()),
                    sub_state: Some("failed".into()),
                    active_enter_usec: Some(1_700_000_000_000_000),
                    ..UnitDelta::default()
                }
            ))
        );

        let mut values = HashMap::new();
        values.insert("MainPID", Value::from(0u32));
        values.insert("NRestarts", Value::from(5u32));
        values.insert("Result", Value::from("exit-code"));
        values.insert("ExecMainStatus", Value::from(1i32));
        values.insert(
            "ExecStart",
            Value::from(vec![("/bin/false", vec!["false"])]),
        );
        assert_eq!(
            changed("org.freedesktop.systemd1.Service", values, &["StatusText"]),
            Some(Signal::Changed(
                "web-app.service".into(),
                UnitDelta {
                    main_pid: Some(0),
                    restarts: Some(5),
                    result: Some("exit-code".into()),
                    exit_status: Some(1),
                    ..UnitDelta::default()
                }
            ))
        );
    }

    #[test]
    fn a_kept_value_sent_without_its_value_is_incomplete_and_others_are_no_news() {
        let delta = changed(
            "org.freedesktop.systemd1.Service",
            HashMap::new(),
            &["MainPID"],
        );
        assert_eq!(
            delta,
            Some(Signal::Changed(
                "web-app.service".into(),
                UnitDelta {
                    incomplete: true,
                    ..UnitDelta::default()
                }
            ))
        );
        let mut values = HashMap::new();
        values.insert("Description", Value::from("renamed"));
        // Nothing lookout keeps: no signal at all.
        assert_eq!(
            changed("org.freedesktop.systemd1.Unit", values, &["Conditions"]),
            None
        );
        let mut values = HashMap::new();
        values.insert("ActiveState", Value::from("active"));
        assert_eq!(
            changed("org.freedesktop.systemd1.Socket", values, &[]),
            None,
            "the properties of other interfaces are not read"
        );
    }
}
