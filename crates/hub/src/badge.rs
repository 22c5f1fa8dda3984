//! Badges for READMEs and wikis, drawn as shields.io draws them: a grey
//! label on the left, a coloured message on the right, in Verdana 11px.

/// shields.io's colours.
pub mod colour {
    pub const BRIGHT_GREEN: &str = "#4c1";
    pub const GREEN: &str = "#97ca00";
    pub const YELLOW: &str = "#dfb317";
    pub const ORANGE: &str = "#fe7d37";
    pub const RED: &str = "#e05d44";
    pub const BLUE: &str = "#007ec6";
    pub const GREY: &str = "#9f9f9f";
}

/// The width of `text` in Verdana 11px, near enough for a badge (shields.io
/// measures each glyph; these classes are within a pixel or two for the
/// words badges carry).
fn width(text: &str) -> f64 {
    text.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '!' | '|' | '\'' => 3.1,
            'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '/' => 4.6,
            'm' | 'w' | 'M' | 'W' | '%' => 10.3,
            'A'..='Z' => 7.5,
            '0'..='9' => 7.0,
            _ => 6.6,
        })
        .sum()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A flat badge: `label` on grey, `message` on `colour`.
pub fn svg(label: &str, message: &str, colour: &str) -> String {
    let (lw, mw) = (
        (width(label) + 10.0).round(),
        (width(message) + 10.0).round(),
    );
    let total = lw + mw;
    let (label, message) = (escape(label), escape(message));
    let (lx, mx) = (lw / 2.0 * 10.0, (lw + mw / 2.0) * 10.0);
    let (ltl, mtl) = ((lw - 10.0) * 10.0, (mw - 10.0) * 10.0);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {message}"><title>{label}: {message}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{colour}"/><rect width="{total}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{mtl}">{message}</text><text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{mtl}">{message}</text></g></svg>"##
    )
}

/// The colour of an uptime (0.0-1.0), as Gatus and Uptime Kuma shade it.
pub fn uptime_colour(ratio: f64) -> &'static str {
    match ratio {
        r if r >= 0.999 => colour::BRIGHT_GREEN,
        r if r >= 0.99 => colour::GREEN,
        r if r >= 0.95 => colour::YELLOW,
        r if r >= 0.90 => colour::ORANGE,
        _ => colour::RED,
    }
}

/// The colour of a response time in milliseconds.
pub fn latency_colour(ms: f64) -> &'static str {
    match ms {
        m if m < 200.0 => colour::BRIGHT_GREEN,
        m if m < 500.0 => colour::GREEN,
        m if m < 1000.0 => colour::YELLOW,
        m if m < 2000.0 => colour::ORANGE,
        _ => colour::RED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_is_as_wide_as_its_words_and_escapes_them() {
        let short = svg("status", "up", colour::BRIGHT_GREEN);
        let long = svg("status", "under maintenance", colour::BLUE);
        let w = |s: &str| -> f64 {
            s.split("width=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_default()
        };
        assert!(w(&long) > w(&short) + 50.0, "{} {}", w(&long), w(&short));
        assert!(short.contains(r##"fill="#4c1""##));
        let odd = svg("a<b>", "\"&\"", colour::GREY);
        assert!(odd.contains("a&lt;b&gt;: &quot;&amp;&quot;"));
        assert!(!odd.contains("<b>"));
    }

    #[test]
    fn colours_follow_the_usual_thresholds() {
        assert_eq!(uptime_colour(1.0), colour::BRIGHT_GREEN);
        assert_eq!(uptime_colour(0.995), colour::GREEN);
        assert_eq!(uptime_colour(0.5), colour::RED);
        assert_eq!(latency_colour(120.0), colour::BRIGHT_GREEN);
        assert_eq!(latency_colour(2500.0), colour::RED);
    }
}
