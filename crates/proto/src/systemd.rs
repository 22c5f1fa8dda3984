//! Which systemd manager a hub or an agent talks to.

/// Which systemd manager to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The system manager (PID 1), on the system bus.
    System,
    /// The calling user's manager, on the session bus (`$XDG_RUNTIME_DIR/bus`).
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User => "user",
        }
    }
}

/// Whether `pattern` is a unit name pattern lookout takes: a unit name in
/// which `*` stands for any run of characters and `?` for one, with its type
/// (`*.service`, `backup-*.timer`, `web@?.service`).
pub fn check_unit_pattern(pattern: &str) -> Result<(), crate::error::Invalid> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@*?".contains(c);
    if pattern.is_empty() || pattern.len() > 256 {
        return Err("a unit pattern has 1 to 256 characters".into());
    }
    if let Some(c) = pattern.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{c:?} cannot be in a unit name pattern (letters, digits, :-_.\\@ and the wildcards * and ?)"
        ).into());
    }
    match pattern.rsplit_once('.') {
        Some((_, kind)) if !kind.is_empty() && !kind.contains(['*', '?']) => Ok(()),
        _ => Err(
            format!("{pattern} does not end in a unit type (such as .service or .timer)").into(),
        ),
    }
}

/// Whether unit `name` matches `pattern`: `*` is any run of characters
/// (none too), `?` one character, anything else itself.
pub fn unit_pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Where the last `*` was and the part of `name` it took up to now.
    let (mut i, mut j, mut star) = (0, 0, None::<(usize, usize)>);
    while j < n.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(c) if *c == '?' || *c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                // The last `*` takes one more character.
                Some((s, taken)) => {
                    star = Some((s, taken + 1));
                    i = s + 1;
                    j = taken + 1;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod pattern_tests {
    use super::{check_unit_pattern, unit_pattern_matches};

    #[test]
    fn patterns_match_as_shell_globs_do() {
        for (pattern, name, matches) in [
            ("*.service", "web.service", true),
            ("*.service", "web.timer", false),
            ("backup-*.timer", "backup-photos.timer", true),
            ("backup-*.timer", "backup-.timer", true),
            ("backup-*.timer", "nightly-backup.timer", false),
            ("web@?.service", "web@1.service", true),
            ("web@?.service", "web@10.service", false),
            ("*-*-*.service", "a-b-c.service", true),
            ("*-*-*.service", "a-b.service", false),
            ("exact.service", "exact.service", true),
            ("exact.service", "exact.services", false),
            ("**.socket", "x.socket", true),
        ] {
            assert_eq!(
                unit_pattern_matches(pattern, name),
                matches,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn a_pattern_is_a_unit_name_with_wildcards_and_a_type() {
        for good in ["*.service", "backup-*.timer", "web@?.service", "a.socket"] {
            assert_eq!(check_unit_pattern(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "1 to 256"),
            ("web", "unit type"),
            ("*.*", "unit type"),
            ("web service", "' '"),
            ("web;rm.service", "';'"),
        ] {
            let e = check_unit_pattern(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
