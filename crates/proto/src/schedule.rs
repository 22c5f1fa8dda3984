//! Cron schedules in a time zone, as Healthchecks takes them for a job that
//! pings: five fields (`0 3 * * *`, `*/15 * * * MON-FRI`) or a macro
//! (`@daily`), read in an IANA zone (`Europe/Berlin`, default UTC), so a
//! job at 03:00 local time is expected at 03:00 across daylight-saving
//! changes.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

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
        let zone = zone.trim();
        let zone = if zone.is_empty() {
            Tz::UTC
        } else {
            Tz::from_str(zone).map_err(|_| {
                ScheduleError::Zone(format!(
                    "{zone:?} is not a time zone: write an IANA name such as Europe/Berlin or UTC"
                ))
            })?
        };
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
        let zone = if zone.trim().is_empty() {
            Tz::UTC
        } else {
            Tz::from_str(zone.trim()).ok()?
        };
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

    /// The first time it fires strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
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
