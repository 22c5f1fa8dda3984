//! What a public status page shows, and nothing more: each service's name,
//! its status in words, its uptime by day, the incidents of the last week
//! and the maintenance under way. No address, host, port, unit or reason
//! leaves through it: those are what a page for the family must not leak.
//! Everything comes from the registry's memory, so a page costs no query
//! beyond reading its own row.

use chrono::{DateTime, Duration, DurationRound, Utc};
use lookout_proto::depends::ServiceRef;
use lookout_proto::status::Status;

use crate::history::uptime_between;
use lookout_proto::status_page::StatusPageView;
use serde::Serialize;

use crate::registry::Registry;
use crate::store::Service;

/// Days of uptime bars a page shows.
pub const DAYS: i64 = 30;
/// How far back a page lists incidents.
pub const INCIDENT_DAYS: i64 = 7;

/// A service's state as the public reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicState {
    Operational,
    Degraded,
    Down,
    Maintenance,
    Unknown,
}

impl PublicState {
    pub fn of(status: Status, in_maintenance: bool) -> Self {
        match (status, in_maintenance) {
            (_, true) => PublicState::Maintenance,
            (Status::Ok | Status::Update, false) => PublicState::Operational,
            (Status::Warning, false) => PublicState::Degraded,
            (Status::Failure, false) => PublicState::Down,
            (Status::Unknown, false) => PublicState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PublicState::Operational => "operational",
            PublicState::Degraded => "degraded",
            PublicState::Down => "down",
            PublicState::Maintenance => "maintenance",
            PublicState::Unknown => "unknown",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            PublicState::Operational => "Operational",
            PublicState::Degraded => "Degraded",
            PublicState::Down => "Down",
            PublicState::Maintenance => "Maintenance",
            PublicState::Unknown => "Unknown",
        }
    }
}

/// One day's bar: its date and the share of it the service was up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: chrono::NaiveDate,
    pub uptime: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicService {
    pub id: i64,
    pub name: String,
    pub state: PublicState,
    /// Over the days shown.
    pub uptime: Option<f64>,
    /// Oldest first, today last.
    pub days: Vec<Day>,
}

/// A time a service was down: no reason is given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicIncident {
    pub service: String,
    pub start: DateTime<Utc>,
    /// `None` while it lasts.
    pub end: Option<DateTime<Utc>>,
    pub duration_secs: i64,
}

/// Maintenance under way on a shown service, and when it ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicMaintenance {
    pub service: String,
    pub until: DateTime<Utc>,
}

/// Everything a status page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicStatus {
    pub title: String,
    pub description: String,
    pub notice: String,
    /// The worst state of the shown services.
    pub state: PublicState,
    /// "All services are operational", "1 service is down", …
    pub summary: String,
    pub services: Vec<PublicService>,
    /// Newest first.
    pub incidents: Vec<PublicIncident>,
    pub maintenance: Vec<PublicMaintenance>,
    pub at: DateTime<Utc>,
}

/// When a service's maintenance (planned or recurring) ends, if it is in
/// one now.
pub fn maintenance_until(s: &Service, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.in_planned_maintenance(now)
        .then_some(s.maintenance_until)
        .flatten()
        .or_else(|| s.maintenance_window.as_ref()?.open_until(now))
}

/// The services a page shows: those it names, in its order, then those with
/// one of its tags, by name. Services gone since are skipped.
pub fn shown(registry: &Registry, page: &StatusPageView) -> Vec<Service> {
    let mut out: Vec<Service> = page
        .services
        .iter()
        .filter_map(|id| registry.get(*id).map(|e| e.service.clone()))
        .collect();
    if !page.tags.is_empty() {
        let mut tagged: Vec<Service> = registry
            .services(&crate::registry::ListFilter::default())
            .into_iter()
            .filter(|s| s.tags.iter().any(|t| page.tags.contains(t)))
            .filter(|s| !out.iter().any(|o| o.id == s.id))
            .collect();
        tagged.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(tagged);
    }
    out
}

/// `refs` as service ids, each once, from `services`: by id, or by name
/// (exactly, else ignoring case). Whatever names no service is returned
/// instead, all of it.
pub fn resolve(services: &[Service], refs: &[ServiceRef]) -> Result<Vec<i64>, Vec<String>> {
    let mut ids = Vec::new();
    let mut unknown = Vec::new();
    for r in refs {
        let found = match r {
            ServiceRef::Id(id) => services.iter().find(|s| s.id == *id),
            ServiceRef::Name(name) => services
                .iter()
                .find(|s| s.name == *name)
                .or_else(|| services.iter().find(|s| s.name.eq_ignore_ascii_case(name))),
        };
        match found {
            Some(s) if !ids.contains(&s.id) => ids.push(s.id),
            Some(_) => {}
            None => unknown.push(r.to_string()),
        }
    }
    if unknown.is_empty() {
        Ok(ids)
    } else {
        Err(unknown)
    }
}

/// Uptime of each of the last `days` days (UTC), today last (up to `now`).
pub fn daily(
    initial: Option<Status>,
    changes: &[(DateTime<Utc>, Status)],
    now: DateTime<Utc>,
    days: i64,
) -> Vec<Day> {
    let today = now.duration_trunc(Duration::days(1)).unwrap_or(now);
    (0..days)
        .rev()
        .map(|back| {
            let start = today - Duration::days(back);
            Day {
                date: start.date_naive(),
                uptime: uptime_between(
                    initial,
                    changes,
                    start,
                    (start + Duration::days(1)).min(now),
                ),
            }
        })
        .collect()
}

/// The times a service was down since `since`, newest first.
pub fn downtimes(
    service: &str,
    initial: Option<Status>,
    changes: &[(DateTime<Utc>, Status)],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<PublicIncident> {
    let mut out = Vec::new();
    let mut open = (initial == Some(Status::Failure)).then_some(since);
    for (at, status) in changes {
        match (open, *status == Status::Failure) {
            (None, true) => open = Some(*at),
            (Some(start), false) => {
                open = None;
                if *at > since {
                    let start = start.max(since);
                    out.push(PublicIncident {
                        service: service.to_owned(),
                        start,
                        end: Some(*at),
                        duration_secs: (*at - start).num_seconds(),
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        let start = start.max(since);
        out.push(PublicIncident {
            service: service.to_owned(),
            start,
            end: None,
            duration_secs: (now - start).num_seconds(),
        });
    }
    out.reverse();
    out
}

fn summary(services: &[PublicService]) -> (PublicState, String) {
    let count = |state: PublicState| services.iter().filter(|s| s.state == state).count();
    let of = |n: usize, what: &str| match n {
        1 => format!("1 service is {what}"),
        n => format!("{n} services are {what}"),
    };
    let (down, degraded, maintenance, unknown) = (
        count(PublicState::Down),
        count(PublicState::Degraded),
        count(PublicState::Maintenance),
        count(PublicState::Unknown),
    );
    if services.is_empty() {
        (PublicState::Unknown, "No services are shown yet".into())
    } else if down > 0 {
        (PublicState::Down, of(down, "down"))
    } else if degraded > 0 {
        (PublicState::Degraded, of(degraded, "degraded"))
    } else if maintenance > 0 {
        (
            PublicState::Maintenance,
            of(maintenance, "under maintenance"),
        )
    } else if unknown == services.len() {
        (PublicState::Unknown, "Status not known yet".into())
    } else {
        (
            PublicState::Operational,
            "All services are operational".into(),
        )
    }
}

/// What `page` shows now.
pub fn public_status(
    registry: &Registry,
    page: &StatusPageView,
    now: DateTime<Utc>,
) -> PublicStatus {
    let since = now - Duration::days(INCIDENT_DAYS);
    let mut services = Vec::new();
    let mut incidents = Vec::new();
    let mut maintenance = Vec::new();
    for s in shown(registry, page) {
        let (initial, changes) = registry.timeline(s.id);
        let days = daily(initial, &changes, now, DAYS);
        incidents.extend(downtimes(&s.name, initial, &changes, since, now));
        let until = maintenance_until(&s, now);
        if let Some(until) = until {
            maintenance.push(PublicMaintenance {
                service: s.name.clone(),
                until,
            });
        }
        services.push(PublicService {
            id: s.id,
            name: s.name.clone(),
            state: PublicState::of(s.state, until.is_some()),
            uptime: uptime_between(initial, &changes, now - Duration::days(DAYS), now),
            days,
        });
    }
    incidents.sort_by_key(|i| std::cmp::Reverse(i.start));
    incidents.truncate(20);
    let (state, summary) = summary(&services);
    PublicStatus {
        title: page.title.clone(),
        description: page.description.clone(),
        notice: page.notice.clone(),
        state,
        summary,
        services,
        incidents,
        maintenance,
        at: now,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        // Midnight UTC, 2023-11-15.
        DateTime::from_timestamp(1_700_006_400, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn days_split_at_midnight_and_today_ends_now() {
        let changes = [
            (t(-36), Status::Ok),
            (t(-6), Status::Failure),
            (t(6), Status::Ok),
        ];
        let days = daily(None, &changes, t(12), 3);
        let got: Vec<_> = days.iter().map(|d| d.uptime).collect();
        // Two days ago: nothing known before 12:00, up after. Yesterday:
        // down its last 6 hours. Today: down 6 of the 12 hours so far.
        assert_eq!(got, [Some(1.0), Some(0.75), Some(0.5)]);
        assert_eq!(days[2].date, t(0).date_naive());
    }

    #[test]
    fn downtimes_are_the_failure_runs_of_the_week_newest_first() {
        let changes = [
            (t(-200), Status::Failure),
            (t(-190), Status::Ok),
            (t(-10), Status::Failure),
            (t(-9), Status::Ok),
            (t(-2), Status::Failure),
        ];
        let got = downtimes("nas", None, &changes, t(-168), t(0));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].start, got[0].end, got[0].duration_secs),
            (t(-2), None, 7200)
        );
        assert_eq!((got[1].start, got[1].end), (t(-10), Some(t(-9))));
        let spanning = downtimes(
            "nas",
            Some(Status::Failure),
            &[(t(-1), Status::Ok)],
            t(-5),
            t(0),
        );
        assert_eq!((spanning[0].start, spanning[0].end), (t(-5), Some(t(-1))));
    }

    #[test]
    fn the_summary_names_the_worst_state() {
        let svc = |state| PublicService {
            id: 1,
            name: "x".into(),
            state,
            uptime: None,
            days: Vec::new(),
        };
        let of =
            |states: &[PublicState]| summary(&states.iter().map(|s| svc(*s)).collect::<Vec<_>>());
        use PublicState::*;
        assert_eq!(
            of(&[Operational, Unknown]).1,
            "All services are operational"
        );
        assert_eq!(
            of(&[Down, Degraded, Down]),
            (Down, "2 services are down".into())
        );
        assert_eq!(
            of(&[Operational, Maintenance]),
            (Maintenance, "1 service is under maintenance".into())
        );
        assert_eq!(of(&[]).0, Unknown);
    }
}
