//! Pings on a push URL (`/api/push/{token}`), read the ways cron jobs and
//! scripts already send them:
//!
//! | request | what it says |
//! |---|---|
//! | `/api/push/{token}` | success |
//! | `/api/push/{token}/start` | a job run began; the ping that ends it measures its run time |
//! | `/api/push/{token}/fail` | failure |
//! | `/api/push/{token}/{exit-code}` | `0` success, `1`–`255` failure ("exit status N") |
//! | `?status=up\|down\|ok\|fail\|warning\|update` (any case) | that status, on the plain URL |
//! | `?msg=...` | the message shown with the status (else the request's body) |
//! | `?ping=MS` | how long the job or request took, in milliseconds |
//!
//! The suffixes and the body as a message are how Healthchecks pings read;
//! `status=up|down`, `msg` and `ping` are how Uptime Kuma's push monitors do.

use crate::error::FieldError;
use crate::status::Status;

/// Longest message kept with a ping, in characters.
pub const MESSAGE_MAX_CHARS: usize = 1000;

/// When a push check expects its pings: every `period_secs`, or at each
/// firing of `schedule` (a cron schedule in a zone); either way a ping may
/// be `grace_secs` late before the check fails.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTiming {
    pub period_secs: u64,
    pub grace_secs: u64,
    pub schedule: Option<crate::schedule::CronSchedule>,
}

/// What one ping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// A run of the job began.
    Start,
    /// A run ended, or the job reports how it stands.
    Result {
        status: Status,
        message: Option<String>,
        /// How long the run took, when the sender said (`?ping=`); else the
        /// time since its `/start`, if any.
        duration_ms: Option<u64>,
    },
}

impl Ping {
    /// Reads a ping from its path suffix (`start`, `fail`, an exit code or
    /// none), its query (`status`, `msg`, `ping`) and its body. Every
    /// offending part is named.
    pub fn parse(
        suffix: Option<&str>,
        query: &std::collections::HashMap<String, String>,
        body: &[u8],
    ) -> Result<Ping, Vec<FieldError>> {
        let mut errors = Vec::new();
        for key in query.keys() {
            if !["status", "msg", "ping"].contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key.clone(),
                    "is not a ping parameter (status, msg or ping)",
                ));
            }
        }
        let from_status = query.get("status").and_then(|s| match status_word(s) {
            Some(status) => Some(status),
            None => {
                errors.push(FieldError::new(
                    "status",
                    format!("{s:?} is not a status: use up, down, ok, fail, warning or update"),
                ));
                None
            }
        });
        // Uptime Kuma's URL ends in an empty `ping=` when there is none.
        let ping = query
            .get("ping")
            .map(|p| p.trim())
            .filter(|p| !p.is_empty());
        let duration_ms = ping.and_then(|p| {
            match p.parse::<f64>() {
                // Uptime Kuma's senders may send fractions of a millisecond.
                Ok(ms) if ms.is_finite() && (0.0..1e12).contains(&ms) => Some(ms.round() as u64),
                _ => {
                    errors.push(FieldError::new(
                        "ping",
                        "must be a number of milliseconds, e.g. ping=42",
                    ));
                    None
                }
            }
        });
        let (status, exit_note) = match suffix {
            None | Some("") => (from_status.unwrap_or(Status::Ok), None),
            Some(_) if from_status.is_some() => {
                errors.push(FieldError::new(
                    "status",
                    "cannot be given with /start, /fail or an exit code: the path says the status",
                ));
                (Status::Ok, None)
            }
            Some("start") => {
                if !errors.is_empty() {
                    return Err(errors);
                }
                return Ok(Ping::Start);
            }
            Some("fail") => (Status::Failure, None),
            Some(code) => match code.parse::<u8>() {
                Ok(0) => (Status::Ok, None),
                Ok(n) => (Status::Failure, Some(format!("exit status {n}"))),
                Err(_) => {
                    errors.push(FieldError::new(
                        "path",
                        format!(
                            "{code:?} is not a ping: use /start, /fail or an exit code from 0 to 255"
                        ),
                    ));
                    (Status::Ok, None)
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let message = query
            .get("msg")
            .map(String::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                (!text.is_empty()).then(|| text.to_owned())
            })
            .or(exit_note)
            .map(|m| m.chars().take(MESSAGE_MAX_CHARS).collect());
        Ok(Ping::Result {
            status,
            message,
            duration_ms,
        })
    }
}

/// A status as senders spell it, in any case.
fn status_word(word: &str) -> Option<Status> {
    match word.trim().to_ascii_lowercase().as_str() {
        "ok" | "up" | "success" => Some(Status::Ok),
        "fail" | "failure" | "down" | "error" => Some(Status::Failure),
        "warning" | "warn" => Some(Status::Warning),
        "update" => Some(Status::Update),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn result(status: Status, message: Option<&str>, duration_ms: Option<u64>) -> Ping {
        Ping::Result {
            status,
            message: message.map(str::to_owned),
            duration_ms,
        }
    }

    #[test]
    fn healthchecks_pings() {
        let none = query(&[]);
        assert_eq!(
            Ping::parse(None, &none, b""),
            Ok(result(Status::Ok, None, None))
        );
        assert_eq!(Ping::parse(Some("start"), &none, b""), Ok(Ping::Start));
        assert_eq!(
            Ping::parse(Some("fail"), &none, b"disk full\n"),
            Ok(result(Status::Failure, Some("disk full"), None))
        );
        assert_eq!(
            Ping::parse(Some("0"), &none, b""),
            Ok(result(Status::Ok, None, None))
        );
        assert_eq!(
            Ping::parse(Some("3"), &none, b""),
            Ok(result(Status::Failure, Some("exit status 3"), None))
        );
        // The job's output wins over the bare exit status.
        assert_eq!(
            Ping::parse(Some("1"), &none, b"rsync: connection refused"),
            Ok(result(
                Status::Failure,
                Some("rsync: connection refused"),
                None
            ))
        );
        let bad = Ping::parse(Some("256"), &none, b"").unwrap_err();
        assert_eq!(bad[0].field, "path");
        assert!(Ping::parse(Some("restart"), &none, b"").is_err());
    }

    #[test]
    fn status_words_in_any_case() {
        for (word, status) in [
            ("fail", Status::Failure),
            ("FAILURE", Status::Failure),
            ("Down", Status::Failure),
            ("up", Status::Ok),
            ("OK", Status::Ok),
            ("warning", Status::Warning),
            ("update", Status::Update),
        ] {
            assert_eq!(
                Ping::parse(None, &query(&[("status", word)]), b""),
                Ok(result(status, None, None)),
                "{word}"
            );
        }
        let bad = Ping::parse(None, &query(&[("status", "sideways")]), b"").unwrap_err();
        assert_eq!(bad[0].field, "status");
        assert!(bad[0].message.contains("sideways"), "{}", bad[0].message);
    }

    #[test]
    fn uptime_kuma_pings() {
        assert_eq!(
            Ping::parse(
                None,
                &query(&[("status", "up"), ("msg", "OK"), ("ping", "12.6")]),
                b""
            ),
            Ok(result(Status::Ok, Some("OK"), Some(13)))
        );
        // Its URL as Uptime Kuma shows it, the ping left empty.
        assert_eq!(
            Ping::parse(
                None,
                &query(&[("status", "up"), ("msg", "OK"), ("ping", "")]),
                b""
            ),
            Ok(result(Status::Ok, Some("OK"), None))
        );
        let bad = Ping::parse(None, &query(&[("ping", "soon")]), b"").unwrap_err();
        assert_eq!(bad[0].field, "ping");
    }

    #[test]
    fn every_offending_part_is_named() {
        let bad = Ping::parse(
            Some("fail"),
            &query(&[("status", "up"), ("ping", "-1"), ("colour", "red")]),
            b"",
        )
        .unwrap_err();
        let mut fields: Vec<&str> = bad.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["colour", "ping", "status"]);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(MESSAGE_MAX_CHARS + 50);
        let Ok(Ping::Result { message, .. }) = Ping::parse(None, &query(&[]), long.as_bytes())
        else {
            panic!("a result");
        };
        assert_eq!(message.map(|m| m.chars().count()), Some(MESSAGE_MAX_CHARS));
    }
}
