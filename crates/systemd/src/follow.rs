//! Following a manager live: the signals it sends about its units, so a
//! change reaches lookout within moments instead of at the next scan.
//!
//! After `Subscribe` (done on connecting) systemd announces every change of
//! a unit's properties (`PropertiesChanged` on the unit's object), units
//! loaded and unloaded (`UnitNew`, `UnitRemoved`) and the end of a
//! `daemon-reload` (`Reloading` false). The values in a `PropertiesChanged`
//! are not all there (some are only "invalidated"), so a follower reads the
//! unit's state again ([`Systemd::status`]) rather than trusting them.
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
    Changed(String),
    /// A unit was loaded (a new unit file, a unit started the first time,
    /// or one that something asked about).
    New(String),
    /// A unit was unloaded.
    Removed(String),
    /// The manager finished re-reading its unit files.
    Reloaded,
}

/// Signals queued before the subscriber reads them; more hold the connection.
const QUEUE: usize = 4096;

impl Systemd {
    /// The manager's announcements about its units, until the connection
    /// closes (the stream then ends).
    pub async fn signals(&self) -> Result<impl Stream<Item = Signal> + Send + Unpin, Error> {
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.systemd1")
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1"))
            .map_err(|e| self.bus_error(e))?
            .build();
        let stream = MessageStream::for_match_rule(rule, &self.conn, Some(QUEUE))
            .await
            .map_err(|e| self.bus_error(e))?;
        Ok(stream.filter_map(|message| std::future::ready(message.ok().and_then(|m| read(&m)))))
    }
}

fn read(message: &zbus::Message) -> Option<Signal> {
    let header = message.header();
    match header.member()?.as_str() {
        "PropertiesChanged" => unit_name_from_path(header.path()?.as_str()).map(Signal::Changed),
        "UnitNew" => {
            let (name, _path): (String, zbus::zvariant::OwnedObjectPath) =
                message.body().deserialize().ok()?;
            Some(Signal::New(name))
        }
        "UnitRemoved" => {
            let (name, _path): (String, zbus::zvariant::OwnedObjectPath) =
                message.body().deserialize().ok()?;
            Some(Signal::Removed(name))
        }
        "Reloading" => {
            let active: bool = message.body().deserialize().ok()?;
            (!active).then_some(Signal::Reloaded)
        }
        _ => None,
    }
}
