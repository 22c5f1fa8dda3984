//! History figures: uptime over the usual windows and latency series, and
//! their small server-rendered SVG graphs.

use chrono::{DateTime, Duration, Utc};
use lookout_proto::status::{uptime, Status};
use serde::Serialize;

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
    let window = |days: i64| {
        let start = now - Duration::days(days);
        // The status in force at `start` is the last change at or before it.
        let before = changes
            .iter()
            .take_while(|(at, _)| *at <= start)
            .last()
            .map(|(_, s)| *s)
            .or(initial);
        let after: Vec<_> = changes
            .iter()
            .copied()
            .filter(|(at, _)| *at > start && *at <= now)
            .collect();
        uptime(before, &after, start, now)
    };
    Uptime {
        day: window(1),
        week: window(7),
        month: window(LONGEST_WINDOW_DAYS),
    }
}

/// "99.95 %", or "—" when unknown.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        None => "—".into(),
        Some(r) if r >= 0.9999 => "100 %".into(),
        Some(r) => format!("{:.2} %", r * 100.0),
    }
}

/// A polyline of latencies (gaps for failed checks), scaled into a
/// `width` × `height` SVG. Only numbers go into it, so it is safe to embed.
pub fn sparkline(latencies: &[Option<u64>], width: u32, height: u32) -> String {
    let max = latencies
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = latencies.len().max(2) - 1;
    let step = f64::from(width) / n as f64;
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    let mut failures = Vec::new();
    for (i, latency) in latencies.iter().enumerate() {
        let x = i as f64 * step;
        match latency {
            Some(ms) => {
                let y = f64::from(height) - 1.0 - (*ms as f64 / max) * (f64::from(height) - 2.0);
                if let Some(segment) = segments.last_mut() {
                    segment.push(format!("{x:.1},{y:.1}"));
                }
            }
            None => {
                failures.push(x);
                segments.push(Vec::new());
            }
        }
    }
    let mut svg = format!(
        r#"<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" preserveAspectRatio="none" role="img" aria-label="response time"><title>response time, last {} checks, peak {max:.0} ms</title>"#,
        latencies.len()
    );
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        if segment.len() == 1 {
            let (x, y) = segment[0].split_once(',').unwrap_or(("0", "0"));
            svg.push_str(&format!(r#"<circle cx="{x}" cy="{y}" r="1.5"/>"#));
        } else {
            svg.push_str(&format!(r#"<polyline points="{}"/>"#, segment.join(" ")));
        }
    }
    for x in failures {
        svg.push_str(&format!(
            r#"<line class="fail" x1="{x:.1}" y1="0" x2="{x:.1}" y2="{height}"/>"#
        ));
    }
    svg.push_str("</svg>");
    svg
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
    fn sparklines_are_numbers_only_and_mark_failures() {
        let svg = sparkline(&[Some(10), Some(20), None, Some(5)], 100, 20);
        assert!(svg.starts_with("<svg"));
        assert!(
            svg.contains("<polyline points=\"0.0,10.0 33.3,1.0\"/>"),
            "{svg}"
        );
        assert!(svg.contains(r#"class="fail""#));
        assert!(svg.contains("<circle"));
        assert!(!svg.contains("script"));
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(Some(1.0)), "100 %");
        assert_eq!(percent(Some(0.875)), "87.50 %");
        assert_eq!(percent(None), "—");
    }
}
