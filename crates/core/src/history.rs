//! History figures: uptime over the usual windows, latency series over the
//! chart's ranges (hourly rollups of check results beyond the raw ones),
//! incidents, and their small server-rendered SVG graphs.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use lookout_proto::series::{coarsen, downsample, slot, Bucket, Sample};
use lookout_proto::service::StatusEventView;
use lookout_proto::status::{uptime, Status};
use serde::Serialize;

use crate::store::{Store, StoreError};

/// How long ago, or how soon: `12 s ago`, `3 min ago`, `in 2 h`, `5 d ago`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, unit) = match secs.unsigned_abs() {
        s @ 0..=59 => (s, "s"),
        s @ 60..=3599 => ((s + 30) / 60, "min"),
        s @ 3600..=172_799 => ((s + 1800) / 3600, "h"),
        s => ((s + 43_200) / 86_400, "d"),
    };
    if secs >= 0 {
        format!("{n} {unit} ago")
    } else {
        format!("in {n} {unit}")
    }
}

/// A duration as people say it: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`
/// (notices say how long an outage lasted with it, pages an incident).
pub fn span_words(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 if secs % 3600 / 60 == 0 => format!("{} h", secs / 3600),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ if secs % 86_400 / 3600 == 0 => format!("{} d", secs / 86_400),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A range of the response-time chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Hour, Range::Day, Range::Week, Range::Month];

    /// `1h`, `24h`, `7d` or `30d`.
    pub fn parse(text: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// "1 hour", "24 hours", "7 days", "30 days".
    pub fn words(self) -> &'static str {
        match self {
            Range::Hour => "1 hour",
            Range::Day => "24 hours",
            Range::Week => "7 days",
            Range::Month => "30 days",
        }
    }

    pub fn span(self) -> Duration {
        match self {
            Range::Hour => Duration::hours(1),
            Range::Day => Duration::hours(24),
            Range::Week => Duration::days(7),
            Range::Month => Duration::days(30),
        }
    }

    /// The width of one point of the chart: about a hundred points a range.
    pub fn bucket(self) -> Duration {
        match self {
            Range::Hour => Duration::minutes(1),
            Range::Day => Duration::minutes(15),
            Range::Week => Duration::hours(1),
            Range::Month => Duration::hours(6),
        }
    }

    /// Time-axis ticks: how many intervals the range is cut into.
    fn intervals(self) -> i32 {
        match self {
            Range::Hour | Range::Day => 4,
            Range::Week => 7,
            Range::Month => 6,
        }
    }
}

/// A service's check results over `range` up to `now`, in the range's
/// buckets: from the raw results for the last day, from the hourly rollups
/// (and the raw results of the hours not rolled up yet) beyond it.
pub async fn latency_series(
    store: &dyn Store,
    id: i64,
    range: Range,
    now: DateTime<Utc>,
) -> Result<Vec<Bucket>, StoreError> {
    let from = slot(now - range.span(), range.bucket());
    let raw = |from| async move {
        let samples = store.check_samples(Some(id), from, now).await?;
        Ok::<_, StoreError>(samples.into_iter().map(|(_, s)| s))
    };
    match range {
        Range::Hour | Range::Day => Ok(downsample(raw(from).await?, range.bucket())),
        Range::Week | Range::Month => {
            let mut hours = store.check_hours(id, from, now).await?;
            // The last hours may not be rolled up yet.
            let recent = downsample(
                raw(slot(now, Duration::hours(1)) - Duration::hours(2)).await?,
                Duration::hours(1),
            );
            for b in recent {
                if !hours.iter().any(|h| h.start == b.start) {
                    hours.push(b);
                }
            }
            hours.sort_by_key(|b| b.start);
            Ok(coarsen(&hours, range.bucket()))
        }
    }
}

/// Rolls the complete hours of raw check results up into hourly buckets:
/// from a little before the last hour rolled up (results can arrive late),
/// or from `kept` ago on a database without rollups, one day at a time.
/// Returns how many hours were written.
pub async fn roll_up_hours(
    store: &dyn Store,
    now: DateTime<Utc>,
    kept: Duration,
) -> Result<usize, StoreError> {
    let hour = Duration::hours(1);
    let to = slot(now, hour);
    let from = match store.last_check_hour().await? {
        Some(last) => (last - hour * 2).max(to - kept),
        None => slot(to - kept, hour),
    };
    let mut written = 0;
    let mut start = from;
    while start < to {
        let end = (start + Duration::days(1)).min(to);
        let mut by_service: HashMap<i64, Vec<Sample>> = HashMap::new();
        for (id, s) in store.check_samples(None, start, end).await? {
            by_service.entry(id).or_default().push(s);
        }
        let rows: Vec<(i64, Bucket)> = by_service
            .into_iter()
            .flat_map(|(id, samples)| downsample(samples, hour).into_iter().map(move |b| (id, b)))
            .collect();
        store.put_check_hours(&rows).await?;
        written += rows.len();
        start = end;
    }
    Ok(written)
}

/// A time a service was failing: from the change to FAILURE to the next
/// change away from it (`end` is `None` while it lasts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub duration_secs: i64,
    /// Why it began.
    pub reason: String,
}

/// The incidents in a service's status changes (given newest first, as the
/// store lists them), newest first.
pub fn incidents(changes: &[StatusEventView], now: DateTime<Utc>) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    let mut open: Option<(DateTime<Utc>, String)> = None;
    for e in changes.iter().rev() {
        match (&open, e.new == Status::Failure) {
            (None, true) => open = Some((e.at, e.reason.clone())),
            (Some(_), false) => {
                if let Some((start, reason)) = open.take() {
                    out.push(Incident {
                        start,
                        end: Some(e.at),
                        duration_secs: (e.at - start).num_seconds(),
                        reason,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((start, reason)) = open {
        out.push(Incident {
            start,
            end: None,
            duration_secs: (now - start).num_seconds(),
            reason,
        });
    }
    out.reverse();
    out
}

/// Uptime over the last 24 hours, 7 days and 30 days (0.0 to 1.0; `None` when
/// nothing is known in the window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Uptime {
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

/// The longest uptime window, in days: how far back the registry keeps
/// each service's status changes.
pub const LONGEST_WINDOW_DAYS: i64 = 30;

/// Uptime over the last day, week and month from the status in force before
/// `changes` (`initial`) and the changes, oldest first.
pub fn uptimes(
    initial: Option<Status>,
    changes: &[(DateTime<Utc>, Status)],
    now: DateTime<Utc>,
) -> Uptime {
    let window = |days: i64| uptime_between(initial, changes, now - Duration::days(days), now);
    Uptime {
        day: window(1),
        week: window(7),
        month: window(LONGEST_WINDOW_DAYS),
    }
}

/// Uptime from `start` to `end` (0.0 to 1.0; `None` when nothing is known
/// then), from the status in force before `changes` (`initial`) and the
/// changes, oldest first.
pub fn uptime_between(
    initial: Option<Status>,
    changes: &[(DateTime<Utc>, Status)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<f64> {
    // The status in force at `start` is the last change at or before it.
    let before = changes
        .iter()
        .take_while(|(at, _)| *at <= start)
        .last()
        .map(|(_, s)| *s)
        .or(initial);
    let within: Vec<_> = changes
        .iter()
        .copied()
        .filter(|(at, _)| *at > start && *at < end)
        .collect();
    uptime(before, &within, start, end)
}

/// "99.95 %", or "—" when unknown.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        None => "—".into(),
        Some(r) if r >= 0.9999 => "100 %".into(),
        Some(r) => format!("{:.2} %", r * 100.0),
    }
}

/// "12 ms", "1.5 s": a latency for an axis or a tooltip.
fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        let s = format!("{:.1}", ms / 1000.0);
        format!("{} s", s.trim_end_matches(".0"))
    } else {
        format!("{ms:.0} ms")
    }
}

/// A round step for about `lines` grid lines up to `top`: 1, 2 or 5 × 10ⁿ.
fn grid_step(top: f64, lines: f64) -> f64 {
    let rough = (top / lines).max(1.0);
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power)
}

/// One point of a [`chart`]: a bucket's least, mean and greatest value
/// (`None`: no value in it), how many of its samples failed, and its
/// tooltip.
#[derive(Debug, Clone)]
pub struct ChartPoint {
    pub start: DateTime<Utc>,
    pub spread: Option<(f64, f64, f64)>,
    pub failed: u32,
    pub tooltip: String,
}

/// What a [`chart`] draws, besides its points.
#[derive(Debug, Clone, Copy)]
pub struct ChartAxes {
    /// "response time", "CPU": the chart's accessible name.
    pub what: &'static str,
    pub span: Duration,
    /// One point's width.
    pub bucket: Duration,
    /// Time ticks: how many intervals the range is cut into.
    pub intervals: i32,
    /// "6 h", "1 day": the range in words.
    pub words: &'static str,
    /// The value axis's labels.
    pub unit: fn(f64) -> String,
    /// The value axis reaches at least this (100 for a percent of a whole).
    pub floor: f64,
    /// The drawing's width (its height is fixed): narrower for charts
    /// shown side by side, so their labels stay legible.
    pub width: f64,
}

/// A chart of a range: the mean of each bucket as a line over the band
/// from its least to its greatest value, failures as red marks along the
/// time axis, value gridlines with units, and time ticks in words ("6 h
/// ago", "now"). Each bucket has a tooltip with its figures. Only numbers
/// and fixed words go into it, so it is safe to embed.
pub fn chart(points: &[ChartPoint], axes: ChartAxes, now: DateTime<Utc>) -> String {
    let w = axes.width;
    const H: f64 = 220.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 26.0;
    let (pw, ph) = (w - LEFT - RIGHT, H - TOP - BOTTOM);
    let from = now - axes.span;
    let span_ms = axes.span.num_milliseconds() as f64;
    let x_of = |t: DateTime<Utc>| {
        LEFT + ((t - from).num_milliseconds() as f64 / span_ms).clamp(0.0, 1.0) * pw
    };
    let bucket_ms = axes.bucket.num_milliseconds();
    let highest = points
        .iter()
        .filter_map(|p| p.spread.map(|s| s.2))
        .fold(0.0, f64::max);
    let step = grid_step(highest.max(axes.floor).max(1.0), 4.0);
    let top = (highest.max(axes.floor) / step).ceil().max(1.0) * step;
    let y_of = |v: f64| TOP + ph - (v / top).clamp(0.0, 1.0) * ph;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {H}" role="img" aria-label="{what} over the last {words}"><title>{what} over the last {words}</title>"#,
        what = axes.what,
        words = axes.words
    );
    // Value grid and its labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let y = y_of(v);
        svg.push_str(&format!(
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            w - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            (axes.unit)(v)
        ));
        v += step;
    }
    // Time ticks.
    let n = axes.intervals;
    for i in 0..=n {
        let t = from + axes.span * i / n;
        let x = x_of(t);
        let anchor = match i {
            0 => "start",
            _ if i == n => "end",
            _ => "middle",
        };
        let text = if i == n {
            "now".to_owned()
        } else {
            relative(t, now)
        };
        svg.push_str(&format!(
            r#"<line class="tick" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/><text class="axis" x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{text}</text>"#,
            TOP + ph,
            TOP + ph + 4.0,
            H - 6.0
        ));
    }
    // The band and the line, broken where buckets are missing.
    type Run = Vec<(DateTime<Utc>, (f64, f64, f64))>;
    let mut runs: Vec<Run> = Vec::new();
    let mut last: Option<DateTime<Utc>> = None;
    for p in points {
        let Some(spread) = p.spread else { continue };
        let joined = last.is_some_and(|l| (p.start - l).num_milliseconds() <= bucket_ms);
        match runs.last_mut() {
            Some(run) if joined => run.push((p.start, spread)),
            _ => runs.push(vec![(p.start, spread)]),
        }
        last = Some(p.start);
    }
    let width_px = (bucket_ms as f64 / span_ms * pw).max(1.0);
    let mid = |t: DateTime<Utc>| x_of(t) + width_px / 2.0;
    for run in &runs {
        let at = |pick: fn(&(f64, f64, f64)) -> f64, (t, s): &(DateTime<Utc>, (f64, f64, f64))| {
            format!("{:.1},{:.1}", mid(*t), y_of(pick(s)))
        };
        if let [(t, (_, mean, _))] = run.as_slice() {
            svg.push_str(&format!(
                r#"<circle class="mean" cx="{:.1}" cy="{:.1}" r="2"/>"#,
                mid(*t),
                y_of(*mean)
            ));
        } else {
            let upper: Vec<String> = run.iter().map(|p| at(|s| s.2, p)).collect();
            let lower: Vec<String> = run.iter().rev().map(|p| at(|s| s.0, p)).collect();
            let line: Vec<String> = run.iter().map(|p| at(|s| s.1, p)).collect();
            svg.push_str(&format!(
                r#"<polygon class="band" points="{} {}"/><polyline class="mean" points="{}"/>"#,
                upper.join(" "),
                lower.join(" "),
                line.join(" ")
            ));
        }
    }
    // Failures along the axis, and each bucket's tooltip.
    for p in points {
        let x = x_of(p.start);
        if p.failed > 0 {
            svg.push_str(&format!(
                r#"<rect class="fail" x="{x:.1}" y="{:.1}" width="{width_px:.1}" height="5"/>"#,
                TOP + ph - 5.0
            ));
        }
        svg.push_str(&format!(
            r#"<rect class="hover" x="{x:.1}" y="{TOP}" width="{width_px:.1}" height="{ph}"><title>{}: {}</title></rect>"#,
            relative(p.start, now),
            p.tooltip
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The response-time chart of a range: each bucket's mean latency over its
/// fastest to slowest check, failed checks marked.
pub fn latency_chart(buckets: &[Bucket], range: Range, now: DateTime<Utc>) -> String {
    let points: Vec<ChartPoint> = buckets
        .iter()
        .map(|b| {
            let spread = match (b.least(), b.mean(), b.most()) {
                (Some(lo), Some(mean), Some(hi)) => Some((lo, mean, hi)),
                _ => None,
            };
            let figures = match spread {
                Some((lo, mean, hi)) => {
                    format!("mean {}, {}–{}", millis(mean), millis(lo), millis(hi))
                }
                None => "no latency".to_owned(),
            };
            let checks = if b.count == 1 { "check" } else { "checks" };
            ChartPoint {
                start: b.start,
                spread,
                failed: b.failed(),
                tooltip: format!("{figures}; {} {checks}, {} failed", b.count, b.failed()),
            }
        })
        .collect();
    chart(
        &points,
        ChartAxes {
            what: "response time",
            span: range.span(),
            bucket: range.bucket(),
            intervals: range.intervals(),
            words: range.words(),
            unit: millis,
            floor: 0.0,
            width: 720.0,
        },
        now,
    )
}

/// The last checks as a row of bars, oldest first (Uptime Kuma's beat
/// bar): `ok` when a check passed, `fail` when it failed, right-aligned in
/// room for `slots`, the rest `none`. Numbers and class names only.
pub fn beat_bar(passed: &[bool], slots: usize) -> String {
    const WIDTH: usize = 4;
    const GAP: usize = 2;
    const HEIGHT: usize = 16;
    let shown = &passed[passed.len().saturating_sub(slots)..];
    let empty = slots - shown.len();
    let width = (slots * (WIDTH + GAP)).saturating_sub(GAP);
    let ok = shown.iter().filter(|p| **p).count();
    let mut svg = format!(
        r#"<svg class="beats" viewBox="0 0 {width} {HEIGHT}" width="{width}" height="{HEIGHT}" role="img" aria-label="last {n} checks: {ok} passed"><title>last {n} checks: {ok} passed</title>"#,
        n = shown.len()
    );
    let states =
        std::iter::repeat_n("none", empty)
            .chain(shown.iter().map(|p| if *p { "ok" } else { "fail" }));
    for (i, class) in states.enumerate() {
        svg.push_str(&format!(
            r#"<rect class="{class}" x="{}" y="0" width="{WIDTH}" height="{HEIGHT}" rx="1"/>"#,
            i * (WIDTH + GAP)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HealthCheck, SqlStore};
    use chrono::TimeZone;
    use lookout_proto::service::{parse_new_service, HealthStatus};

    fn change(at: DateTime<Utc>, old: Status, new: Status, reason: &str) -> StatusEventView {
        StatusEventView {
            id: 0,
            service_id: 1,
            at,
            old,
            new,
            reason: reason.into(),
        }
    }

    #[test]
    fn incidents_run_from_failure_to_recovery_newest_first() {
        let t =
            |m: i64| Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap() + Duration::minutes(m);
        // Newest first, as the store lists them.
        let changes = [
            change(t(100), Status::Ok, Status::Failure, "HTTP 502"),
            change(t(50), Status::Warning, Status::Ok, "fine"),
            change(t(20), Status::Failure, Status::Warning, "slow"),
            change(t(0), Status::Unknown, Status::Failure, "connection refused"),
        ];
        let found = incidents(&changes, t(130));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].start, t(100));
        assert_eq!(
            (found[0].end, found[0].duration_secs),
            (None, 30 * 60),
            "ongoing"
        );
        assert_eq!(found[0].reason, "HTTP 502");
        assert_eq!(found[1].start, t(0));
        assert_eq!(found[1].end, Some(t(20)), "a warning ends it");
        assert_eq!(found[1].reason, "connection refused");
        assert!(incidents(&[], t(0)).is_empty());
    }

    #[test]
    fn durations_and_ranges_in_words() {
        assert_eq!(span_words(45), "45 s");
        assert_eq!(span_words(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(span_words(2 * 86_400), "2 d");
        assert_eq!(Range::parse("7d"), Some(Range::Week));
        assert_eq!(Range::parse("2d"), None);
        assert_eq!(grid_step(230.0, 4.0), 100.0);
        assert_eq!(grid_step(38.0, 4.0), 10.0);
        assert_eq!(millis(1500.0), "1.5 s");
        assert_eq!(millis(2000.0), "2 s");
    }

    #[test]
    fn the_chart_has_units_time_ticks_failures_and_tooltips() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let at = |m: i64| now - Duration::minutes(m);
        let buckets = downsample(
            [
                Sample {
                    at: at(300),
                    passed: true,
                    value: Some(40.0),
                },
                Sample {
                    at: at(290),
                    passed: true,
                    value: Some(120.0),
                },
                Sample {
                    at: at(60),
                    passed: false,
                    value: None,
                },
                Sample {
                    at: at(30),
                    passed: true,
                    value: Some(80.0),
                },
            ],
            Range::Day.bucket(),
        );
        let svg = latency_chart(&buckets, Range::Day, now);
        assert!(svg.starts_with(r#"<svg class="chart""#));
        for label in [
            "0 ms", "50 ms", "100 ms", "150 ms", "24 h ago", "12 h ago", ">now<",
        ] {
            assert!(svg.contains(label), "{label} missing from {svg}");
        }
        assert_eq!(svg.matches(r#"<rect class="fail""#).count(), 1);
        assert!(
            svg.contains("mean 80 ms, 40 ms–120 ms; 2 checks, 0 failed"),
            "{svg}"
        );
        assert!(svg.contains("no latency; 1 check, 1 failed"));
        // Two runs apart (five hours between): two dots, no line across the gap.
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(!svg.contains("<polyline"));
        assert!(!svg.contains("script"));
    }

    #[tokio::test]
    async fn hourly_rollups_outlive_the_raw_results_and_draw_the_long_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("h.db")).await.unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 20, 0).unwrap();
        let new = parse_new_service(serde_json::json!({"name": "s"}).as_object().unwrap()).unwrap();
        let s = store.create_service(&new, now).await.unwrap();
        let check = |at: DateTime<Utc>, ok: bool, ms: u64| HealthCheck {
            service_id: s.id,
            checked_at: at,
            status: if ok {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            },
            url: None,
            response_code: None,
            latency_ms: Some(ms),
            error: None,
            warning: None,
            cert_expires_at: None,
        };
        let three_days_ago = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        for (minute, ok, ms) in [(5, true, 10), (30, true, 30), (50, false, 5000)] {
            let c = check(three_days_ago + Duration::minutes(minute), ok, ms);
            store.record_health_check(&c).await.unwrap();
        }
        // This hour's check is not rolled up yet.
        store
            .record_health_check(&check(now - Duration::minutes(10), true, 7))
            .await
            .unwrap();

        let kept = Duration::days(7);
        let written = roll_up_hours(&store, now, kept).await.unwrap();
        assert_eq!(written, 1, "one complete hour had checks");
        // Again: the same hour is written again, not twice.
        roll_up_hours(&store, now, kept).await.unwrap();
        let hours = store
            .check_hours(s.id, now - Duration::days(30), now)
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].count, hours[0].passed), (3, 2));
        assert_eq!(
            hours[0].mean(),
            Some(20.0),
            "failed checks' latencies are left out"
        );

        // The raw results go; the month's chart still has them.
        store
            .prune(now - Duration::days(1), now, now - Duration::days(400))
            .await
            .unwrap();
        assert!(store
            .check_samples(Some(s.id), three_days_ago, now - Duration::hours(1))
            .await
            .unwrap()
            .is_empty());
        let month = latency_series(&store, s.id, Range::Month, now)
            .await
            .unwrap();
        let counts: Vec<u32> = month.iter().map(|b| b.count).collect();
        assert_eq!(
            counts,
            [3, 1],
            "the rolled-up hour and this hour's raw check"
        );
        assert_eq!(month[0].failed(), 1);
        let day = latency_series(&store, s.id, Range::Day, now).await.unwrap();
        assert_eq!(day.len(), 1);
        assert_eq!(day[0].mean(), Some(7.0));
    }

    #[test]
    fn beat_bars_right_align_the_last_checks() {
        let svg = beat_bar(&[true, false, true], 5);
        assert!(svg.contains("last 3 checks: 2 passed"), "{svg}");
        let classes: Vec<&str> = svg
            .split(r#"<rect class=""#)
            .skip(1)
            .map(|r| r.split('"').next().unwrap())
            .collect();
        assert_eq!(classes, ["none", "none", "ok", "fail", "ok"]);
        // More checks than room: the newest.
        let svg = beat_bar(&[false; 40], 30);
        assert_eq!(svg.matches(r#"class="fail""#).count(), 30);
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(Some(1.0)), "100 %");
        assert_eq!(percent(Some(0.875)), "87.50 %");
        assert_eq!(percent(None), "—");
    }
}
