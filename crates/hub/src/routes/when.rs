//! Times on pages. The server writes them in UTC inside `<time>` elements;
//! the page's script rewrites them in the reader's time zone (absolute times)
//! or keeps them current ("3 min ago", with the absolute time on hover).
//! Without the script the UTC text stays, and is still right.

use std::fmt;

use askama::filters::HtmlSafe;
use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-12-03 08:52:15 UTC`, as plain text (logs, notices).
pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(crate) use crate::history::relative;

/// An absolute time on a page: `<time datetime=…>` that the script shows in
/// the reader's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(pub DateTime<Utc>);

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only digits, dashes, colons and letters of the format: safe as HTML.
        write!(
            f,
            r#"<time datetime="{}">{}</time>"#,
            self.0.to_rfc3339_opts(SecondsFormat::Secs, true),
            stamp(self.0)
        )
    }
}

impl HtmlSafe for Stamp {}

/// A relative time on a page (`3 min ago`), kept current by the script, with
/// the absolute time on hover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ago {
    pub at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl Ago {
    pub(crate) fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> Ago {
        Ago { at, now }
    }
}

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"<time class="ago" datetime="{}" title="{}">{}</time>"#,
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            stamp(self.at),
            relative(self.at, self.now)
        )
    }
}

impl HtmlSafe for Ago {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn relative_times_in_words() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let at = |secs: i64| relative(now - chrono::Duration::seconds(secs), now);
        assert_eq!(at(0), "0 s ago");
        assert_eq!(at(59), "59 s ago");
        assert_eq!(at(90), "2 min ago");
        assert_eq!(at(3 * 3600), "3 h ago");
        assert_eq!(at(3 * 86_400), "3 d ago");
        assert_eq!(at(-600), "in 10 min");
    }

    #[test]
    fn times_render_as_time_elements_with_the_utc_text() {
        let t = Utc.with_ymd_and_hms(2026, 12, 3, 8, 52, 15).unwrap();
        assert_eq!(
            Stamp(t).to_string(),
            r#"<time datetime="2026-12-03T08:52:15Z">2026-12-03 08:52:15 UTC</time>"#
        );
        let ago = Ago::new(t, t + chrono::Duration::minutes(3)).to_string();
        assert_eq!(
            ago,
            r#"<time class="ago" datetime="2026-12-03T08:52:15Z" title="2026-12-03 08:52:15 UTC">3 min ago</time>"#
        );
    }
}
