//! Cron schedules in a time zone, as Healthchecks takes them for a job that
//! pings: five fields (`0 3 * * *`, `*/15 * * * MON-FRI`) or a macro
//! (`@daily`), read in an IANA zone (`Europe/Berlin`, default UTC), so a
//! job at 03:00 local time is expected at 03:00 across daylight-saving
//! changes.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// A validated schedule: its expression and zone as given, ready to say
/// when it fires next.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    zone: Tz,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone == other.zone
    }
}

/// Which part of a schedule is wrong, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    Expression(String),
    Zone(String),
}

impl CronSchedule {
    /// Reads `expr` (five fields, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`) in `zone` (an IANA name; empty is UTC).
    pub fn parse(expr: &str, zone: &str) -> Result<CronSchedule, ScheduleError> {
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let zone = read_zone(zone).map_err(|name| {
            ScheduleError::Zone(format!(
                "{name:?} is not a time zone: write an IANA name such as Europe/Berlin or UTC"
            ))
        })?;
        let fields = expr.split(' ').count();
        if !expr.starts_with('@') && fields != 5 {
            return Err(ScheduleError::Expression(format!(
                "{expr:?} has {fields} fields: write five (minute hour day month weekday), such as 0 3 * * *"
            )));
        }
        let cron = Cron::from_str(&expr).map_err(|e| {
            ScheduleError::Expression(format!("{expr:?} is not a cron schedule: {e}"))
        })?;
        let schedule = CronSchedule { expr, zone, cron };
        // A schedule that never fires (February 30th) is refused too.
        if schedule.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::Expression(format!(
                "{:?} never fires",
                schedule.expr
            )));
        }
        Ok(schedule)
    }

    /// A schedule as stored, once [`CronSchedule::parse`] accepted it:
    /// read without looking for its first firing, which for a rare schedule
    /// searches years ahead (the status rules and the overdue sweep read it
    /// often).
    pub fn stored(expr: &str, zone: &str) -> Option<CronSchedule> {
        let zone = read_zone(zone).ok()?;
        let cron = Cron::from_str(expr).ok()?;
        Some(CronSchedule {
            expr: expr.to_owned(),
            zone,
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's IANA name.
    pub fn zone(&self) -> &str {
        self.zone.name()
    }

    /// The schedule as pages show it: `0 3 * * SUN (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.expr, self.zone())
    }

    /// The last time it fired at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|last| last.with_timezone(&Utc))
    }

    /// The first time it fires strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

/// An IANA zone by name; empty is UTC. The trimmed name when it is none.
fn read_zone(name: &str) -> Result<Tz, &str> {
    let name = name.trim();
    if name.is_empty() {
        Ok(Tz::UTC)
    } else {
        Tz::from_str(name).map_err(|_| name)
    }
}

/// A wall-clock time as a browser's `datetime-local` field sends it
/// (`2026-12-05T22:00`, seconds optional) read in `zone` (an IANA name;
/// empty is UTC). A time that a daylight-saving change skips is refused; one
/// it repeats is the earlier of the two.
pub fn local_time(text: &str, zone: &str) -> Result<DateTime<Utc>, crate::error::Invalid> {
    let tz = read_zone(zone).map_err(|name| format!("{name:?} is not a time zone"))?;
    let text = text.trim();
    let naive = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(|| format!("{text:?} is not a date and time such as 2026-12-05T22:00"))?;
    naive
        .and_local_timezone(tz)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            format!(
                "{text} does not exist in {} (the clocks skip it)",
                tz.name()
            )
            .into()
        })
}

/// Longest recurring maintenance window: a week, in minutes.
pub const WINDOW_MAX_MINUTES: u32 = 7 * 24 * 60;

/// A maintenance window that comes back: from each firing of `schedule`
/// (read in `tz`) for `minutes` (`{"schedule": "0 3 * * SUN", "tz":
/// "Europe/Berlin", "minutes": 120}`: Sundays 03:00 to 05:00 Berlin time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecurringWindow {
    pub schedule: String,
    /// An IANA zone; empty or absent is UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tz: String,
    /// 1 to 10080 (a week).
    pub minutes: u32,
}

impl RecurringWindow {
    /// Reads and checks one from a request's JSON object; a mistake says
    /// which part (`schedule`, `tz`, `minutes`, or the object itself).
    pub fn parse(v: &serde_json::Value) -> Result<RecurringWindow, (&'static str, String)> {
        let object = v.as_object().ok_or((
            "",
            "must be an object: {\"schedule\": \"0 3 * * SUN\", \"tz\": \"UTC\", \"minutes\": 120}"
                .to_owned(),
        ))?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !["schedule", "tz", "minutes"].contains(&k.as_str()))
        {
            return Err((
                "",
                format!("has no part {unknown:?}: schedule, tz and minutes"),
            ));
        }
        let schedule = object
            .get("schedule")
            .and_then(serde_json::Value::as_str)
            .ok_or((
                "schedule",
                "is required: a cron schedule such as 0 3 * * SUN".to_owned(),
            ))?;
        let tz = match object.get("tz") {
            None | Some(serde_json::Value::Null) => "",
            Some(v) => v.as_str().ok_or((
                "tz",
                "must be a time zone name such as Europe/Berlin".to_owned(),
            ))?,
        };
        let minutes = object
            .get("minutes")
            .and_then(serde_json::Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| (1..=WINDOW_MAX_MINUTES).contains(m))
            .ok_or((
                "minutes",
                format!("must be a number of minutes from 1 to {WINDOW_MAX_MINUTES} (a week)"),
            ))?;
        let cron = CronSchedule::parse(schedule, tz).map_err(|e| match e {
            ScheduleError::Expression(why) => ("schedule", why),
            ScheduleError::Zone(why) => ("tz", why),
        })?;
        Ok(RecurringWindow {
            schedule: cron.expr().to_owned(),
            tz: if tz.trim().is_empty() {
                String::new()
            } else {
                cron.zone().to_owned()
            },
            minutes,
        })
    }

    pub fn cron(&self) -> Option<CronSchedule> {
        CronSchedule::stored(&self.schedule, &self.tz)
    }

    fn length(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.minutes))
    }

    /// When the window `now` falls in ends, if `now` falls in one.
    pub fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let end = self.cron()?.last_at_or_before(now)? + self.length();
        (now < end).then_some(end)
    }

    /// When the next window begins after `now`.
    pub fn next_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron()?.next_after(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_daily_job_is_expected_at_its_local_time_across_daylight_saving() {
        let s = CronSchedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        assert_eq!((s.expr(), s.zone()), ("0 3 * * *", "Europe/Berlin"));
        // Winter: 03:00 CET is 02:00 UTC; summer: 03:00 CEST is 01:00 UTC.
        let winter = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(winter),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 2, 0, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(summer),
            Some(Utc.with_ymd_and_hms(2026, 7, 2, 1, 0, 0).unwrap())
        );
        // Strictly after: at the firing time, the next one.
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 2, 0, 0).unwrap();
        assert_eq!(
            s.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap())
        );
    }

    #[test]
    fn macros_spaces_and_utc_by_default() {
        let s = CronSchedule::parse("  @hourly ", "").unwrap();
        assert_eq!((s.expr(), s.zone()), ("@hourly", "UTC"));
        let s = CronSchedule::parse("*/15  *  * * MON-FRI", "UTC").unwrap();
        assert_eq!(s.expr(), "*/15 * * * MON-FRI");
    }

    #[test]
    fn a_recurring_window_is_open_from_each_firing_for_its_length() {
        let w = RecurringWindow::parse(&serde_json::json!(
            {"schedule": "0 3 * * SUN", "tz": "Europe/Berlin", "minutes": 120}
        ))
        .unwrap();
        // Sunday 2026-12-06, 03:00 Berlin is 02:00 UTC.
        let start = Utc.with_ymd_and_hms(2026, 12, 6, 2, 0, 0).unwrap();
        assert_eq!(
            w.open_until(start),
            Some(start + chrono::Duration::hours(2))
        );
        assert_eq!(
            w.open_until(start + chrono::Duration::minutes(119)),
            Some(start + chrono::Duration::hours(2))
        );
        assert_eq!(w.open_until(start + chrono::Duration::hours(2)), None);
        assert_eq!(w.open_until(start - chrono::Duration::seconds(1)), None);
        assert_eq!(
            w.next_start(start - chrono::Duration::hours(1)),
            Some(start)
        );
        for (bad, part) in [
            (
                serde_json::json!({"schedule": "0 3 * *", "minutes": 60}),
                "schedule",
            ),
            (
                serde_json::json!({"schedule": "0 3 * * *", "tz": "Nowhere/At_All", "minutes": 60}),
                "tz",
            ),
            (
                serde_json::json!({"schedule": "0 3 * * *", "minutes": 0}),
                "minutes",
            ),
            (serde_json::json!({"schedule": "0 3 * * *"}), "minutes"),
            (
                serde_json::json!({"schedule": "0 3 * * *", "minutes": 5, "every": 2}),
                "",
            ),
            (serde_json::json!("0 3 * * *"), ""),
        ] {
            assert_eq!(RecurringWindow::parse(&bad).unwrap_err().0, part, "{bad}");
        }
    }

    #[test]
    fn a_local_time_is_read_in_its_zone() {
        let at = |t, z| local_time(t, z);
        assert_eq!(
            at("2026-12-05T22:00", "Europe/Berlin"),
            Ok(Utc.with_ymd_and_hms(2026, 12, 5, 21, 0, 0).unwrap())
        );
        assert_eq!(
            at("2026-07-05T22:00:30", ""),
            Ok(Utc.with_ymd_and_hms(2026, 7, 5, 22, 0, 30).unwrap())
        );
        // 02:30 on the last Sunday of March does not happen in Berlin.
        assert!(at("2027-03-28T02:30", "Europe/Berlin")
            .unwrap_err()
            .contains("skip"));
        assert!(at("tomorrow", "UTC").unwrap_err().contains("not a date"));
        assert!(at("2026-12-05T22:00", "Moon/Base")
            .unwrap_err()
            .contains("time zone"));
    }

    #[test]
    fn mistakes_are_named() {
        let expr = |e: &str| match CronSchedule::parse(e, "UTC") {
            Err(ScheduleError::Expression(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(
            expr("0 3 * *").contains("has 4 fields"),
            "{}",
            expr("0 3 * *")
        );
        assert!(expr("0 3 * * * *").contains("has 6 fields"));
        assert!(expr("61 3 * * *").contains("not a cron schedule"));
        assert!(
            expr("0 0 30 2 *").contains("never fires"),
            "{}",
            expr("0 0 30 2 *")
        );
        match CronSchedule::parse("0 3 * * *", "Mars/Olympus") {
            Err(ScheduleError::Zone(why)) => assert!(why.contains("IANA"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
