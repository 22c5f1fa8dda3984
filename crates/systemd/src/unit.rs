//! Unit names, checked against systemd's grammar before any call.

use std::fmt;

/// Unit types systemd knows (the suffix after the last `.`).
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "path",
    "slice",
    "scope",
];

/// Longest unit name systemd accepts (UNIT_NAME_MAX - 1).
pub const UNIT_NAME_MAX: usize = 255;

/// A syntactically valid unit name, e.g. `nginx.service` or `getty@tty1.service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UnitName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid unit name: {reason}")]
pub struct InvalidUnitName {
    pub name: String,
    pub reason: &'static str,
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')
}

impl UnitName {
    /// Checks `name` against systemd's unit-name rules (`unit_name_is_valid`):
    /// at most 255 characters from `[A-Za-z0-9:_.\-@\\]`, a known type suffix, a
    /// non-empty prefix, at most one `@` separating template and instance. A
    /// leading `-` is refused too, so a name can never be read as an option.
    pub fn parse(name: &str) -> Result<Self, InvalidUnitName> {
        let fail = |reason| {
            Err(InvalidUnitName {
                name: name.chars().take(300).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.len() > UNIT_NAME_MAX {
            return fail("it is longer than 255 characters");
        }
        if !name.chars().all(valid_char) {
            return fail("only letters, digits and : - _ . \\ @ are allowed");
        }
        if name.starts_with('-') {
            return fail("it must not start with '-'");
        }
        let Some((prefix, suffix)) = name.rsplit_once('.') else {
            return fail("it has no type suffix such as .service");
        };
        if !UNIT_TYPES.contains(&suffix) {
            return fail("its suffix is not a unit type (.service, .socket, .timer, ...)");
        }
        if prefix.is_empty() {
            return fail("the part before the suffix is empty");
        }
        if let Some((template, instance)) = prefix.split_once('@') {
            if template.is_empty() {
                return fail("nothing before '@'");
            }
            if instance.contains('@') {
                return fail("more than one '@'");
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// Like [`UnitName::parse`], appending `.service` when the name has no suffix.
    pub fn parse_service(name: &str) -> Result<Self, InvalidUnitName> {
        let has_type = name
            .rsplit_once('.')
            .is_some_and(|(_, s)| UNIT_TYPES.contains(&s));
        if has_type {
            Self::parse(name)
        } else {
            Self::parse(&format!("{name}.service"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unit type, e.g. `service`.
    pub fn kind(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(_, s)| s)
    }

    /// `foo@.service`: a template that cannot be started itself.
    pub fn is_template(&self) -> bool {
        self.0
            .rsplit_once('.')
            .is_some_and(|(prefix, _)| prefix.ends_with('@'))
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in [
            "nginx.service",
            "getty@tty1.service",
            "foo@.service",
            "dev-sda1.device",
            "a.b.c.timer",
            "system-systemd\\x2dfsck.slice",
            "x:y.socket",
        ] {
            assert!(UnitName::parse(name).is_ok(), "{name}");
        }
        assert!(UnitName::parse("foo@.service").unwrap().is_template());
        assert!(!UnitName::parse("foo@bar.service").unwrap().is_template());
        assert_eq!(UnitName::parse("a.timer").unwrap().kind(), "timer");
    }

    #[test]
    fn invalid_names() {
        let long = format!("{}.service", "a".repeat(250));
        for name in [
            "",
            "nginx",
            ".service",
            "nginx.exe",
            "foo bar.service",
            "foo;rm -rf.service",
            "../etc/passwd.service",
            "foo/bar.service",
            "-x.service",
            "@x.service",
            "a@b@c.service",
            "$(reboot).service",
            "nginx.service\n",
            long.as_str(),
        ] {
            assert!(UnitName::parse(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn service_suffix_is_added_when_missing() {
        assert_eq!(
            UnitName::parse_service("nginx").unwrap().as_str(),
            "nginx.service"
        );
        assert_eq!(
            UnitName::parse_service("nginx.service").unwrap().as_str(),
            "nginx.service"
        );
        assert_eq!(
            UnitName::parse_service("web.socket").unwrap().as_str(),
            "web.socket"
        );
        assert!(UnitName::parse_service("bad name").is_err());
    }
}
