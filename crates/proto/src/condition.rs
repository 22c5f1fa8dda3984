//! Conditions on a check's result, in Gatus's syntax, so a Gatus user's
//! lines work as they are:
//!
//! ```text
//! [STATUS] == 200                      [STATUS] < 400
//! [BODY] == pat(*ok*)                  [BODY].status == UP
//! [RESPONSE_TIME] < 300                [CERTIFICATE_EXPIRATION] > 72h
//! [CONNECTED] == true                  [DNS_RCODE] == NOERROR
//! [BODY].items[0].name == any(a, b)    len([BODY].items) > 0
//! has([BODY].errors) == false          [STATUS] == 200 for 5m
//! [MEMORY_PERCENT] < 90 for 5m         [CPU_PERCENT] < 80 for 10m
//! [MEMORY] < 512MiB                    [DISK_FULL_IN] > 7d
//! ```
//!
//! `[CPU_PERCENT]` (of one core), `[MEMORY]` (bytes), `[MEMORY_PERCENT]`
//! (of the host's memory) and `[TASKS]` read what the service's unit uses,
//! as last sampled. On a `host://` service they read the host's figures
//! instead (`[CPU_PERCENT]` of all cores), with three of the host's own:
//! `[DISK_PERCENT]` (the fullest filesystem), `[DISK_FULL_IN]` (how long
//! until a filesystem is full at its rate over the last hours) and `[LOAD]`
//! (the 1-minute load average).
//!
//! A condition is `LEFT OP RIGHT`, with `OP` one of `==`, `!=`, `<`, `<=`,
//! `>`, `>=`. Each side is a placeholder, `len(placeholder)`,
//! `has(placeholder)`, `pat(glob)` (`*` for any run of characters), `any(a,
//! b, ...)` or a literal. `==` compares numbers as numbers and everything
//! else as text; the ordering operators compare numbers (`0.5` too), a
//! duration (`72h`, `30m`, `1h30m`, `14d`, `500ms`) counts in milliseconds,
//! as `[RESPONSE_TIME]`, `[CERTIFICATE_EXPIRATION]` and `[DISK_FULL_IN]`
//! do, and a size (`512MiB`, `2 GB`, `100KiB`) in bytes, as `[MEMORY]` does. A trailing `for
//! DURATION` holds a condition: it must fail that long before it counts.
//!
//! Pure: parsing and evaluating do no I/O, so the parser can be fuzzed and
//! the API validates a condition before it is saved.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::Status;

/// Longest condition accepted, in bytes.
pub const CONDITION_MAX_LEN: usize = 1024;
/// Most conditions on one service.
pub const CONDITIONS_MAX: usize = 32;

/// A condition as saved: its text, what a failure makes the check, and the
/// parsed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    expr: String,
    on_fail: Status,
    parsed: Parsed,
}

/// By its text and what a failure makes the check: the parsed form follows
/// from the text.
impl std::hash::Hash for Condition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expr.hash(state);
        self.on_fail.hash(state);
    }
}

/// The two ways a condition is written in the API and in files: a bare
/// string, or an object saying what its failure makes the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConditionSpec {
    /// `"[STATUS] == 200"`: failing makes the check FAILURE.
    Expr(String),
    /// `{"expr": "[CERTIFICATE_EXPIRATION] > 336h", "on_fail": "WARNING"}`.
    Object {
        expr: String,
        #[serde(default = "failure")]
        on_fail: Status,
    },
}

fn failure() -> Status {
    Status::Failure
}

impl Condition {
    /// Parses one condition; the message says what is wrong with it.
    pub fn parse(expr: &str, on_fail: Status) -> Result<Self, crate::error::Invalid> {
        if !matches!(on_fail, Status::Failure | Status::Warning) {
            return Err(format!(
                "on_fail must be FAILURE or WARNING, not {}",
                on_fail.as_str()
            )
            .into());
        }
        if expr.len() > CONDITION_MAX_LEN {
            return Err(format!("must be at most {CONDITION_MAX_LEN} bytes").into());
        }
        let parsed = Parsed::parse(expr.trim())?;
        Ok(Self {
            expr: expr.trim().to_owned(),
            on_fail,
            parsed,
        })
    }

    pub fn from_spec(spec: &ConditionSpec) -> Result<Self, crate::error::Invalid> {
        match spec {
            ConditionSpec::Expr(e) => Self::parse(e, Status::Failure),
            ConditionSpec::Object { expr, on_fail } => Self::parse(expr, *on_fail),
        }
    }

    pub fn to_spec(&self) -> ConditionSpec {
        if self.on_fail == Status::Failure {
            ConditionSpec::Expr(self.expr.clone())
        } else {
            ConditionSpec::Object {
                expr: self.expr.clone(),
                on_fail: self.on_fail,
            }
        }
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// `FAILURE` or `WARNING`.
    pub fn on_fail(&self) -> Status {
        self.on_fail
    }

    /// How long the condition must fail before it counts.
    pub fn hold(&self) -> Option<Duration> {
        self.parsed.hold
    }

    /// Whether the condition reads this placeholder (on either side).
    pub fn mentions(&self, p: PlaceholderKind) -> bool {
        self.placeholders().any(|k| k == p)
    }

    /// The placeholders it reads.
    pub fn placeholders(&self) -> impl Iterator<Item = PlaceholderKind> + '_ {
        [&self.parsed.left, &self.parsed.right]
            .into_iter()
            .filter_map(|o| o.placeholder().map(Placeholder::kind))
    }

    /// Whether it reads only resource usage (no check's answer).
    pub fn reads_usage(&self) -> bool {
        self.placeholders().all(PlaceholderKind::is_usage)
    }

    /// Evaluates the condition against what a check observed: `Ok(())`
    /// when it holds, else the reason a person reads ("[BODY].status == UP:
    /// was DOWN").
    pub fn evaluate(&self, seen: &Observation<'_>) -> Result<(), crate::error::Invalid> {
        let left = self.parsed.left.resolve(seen);
        let right = self.parsed.right.resolve(seen);
        // The side that shows what was seen: the left unless only the
        // right is a placeholder.
        let (seen_side, about) = if self.parsed.left.placeholder().is_none()
            && self.parsed.right.placeholder().is_some()
        {
            (&right, self.parsed.right.placeholder())
        } else {
            (&left, self.parsed.left.placeholder())
        };
        let shown = |v: &Resolved| match v {
            Resolved::Missing(what) => format!("{what} is missing"),
            other => format!("was {}", other.display(about)),
        };
        if let Resolved::Missing(_) = seen_side {
            return Err(format!("{}: {}", self.expr, shown(seen_side)).into());
        }
        if compare(&left, self.parsed.op, &right) {
            Ok(())
        } else {
            Err(format!("{}: {}", self.expr, shown(seen_side)).into())
        }
    }
}

/// What a check observed, for the conditions to read.
#[derive(Debug, Clone, Default)]
pub struct Observation<'a> {
    /// The HTTP status code.
    pub status: Option<u16>,
    /// Milliseconds from the start of the check to its answer.
    pub response_time_ms: Option<u64>,
    /// The response body (HTTP), or the answers (DNS).
    pub body: Option<&'a str>,
    /// Whether a connection (or a ping's reply) was made.
    pub connected: bool,
    /// Milliseconds until the server's certificate expires (negative once
    /// expired).
    pub certificate_expires_in_ms: Option<i64>,
    /// The DNS answer's response code (`NOERROR`, `NXDOMAIN`, ...).
    pub dns_rcode: Option<&'a str>,
    /// The address the check reached.
    pub ip: Option<&'a str>,
    /// What the service's unit uses now (its last usage sample), when it
    /// has one.
    pub usage: Option<UsageSeen>,
}

/// A unit's or a host's use as conditions read it: `[CPU_PERCENT]` (of one
/// core for a unit, of all cores for a host), `[MEMORY]` (bytes),
/// `[MEMORY_PERCENT]` (of the host's memory), `[TASKS]` (a unit's), and a
/// host's `[DISK_PERCENT]`, `[DISK_FULL_IN]` and `[LOAD]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageSeen {
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_percent: Option<f64>,
    pub tasks: Option<u64>,
    /// The fullest filesystem's use, in percent.
    pub disk_percent: Option<f64>,
    /// Milliseconds until the first filesystem to fill is full at its
    /// current rate; [`NEVER`] when none is filling.
    pub disk_full_in_ms: Option<i64>,
    /// The 1-minute load average.
    pub load: Option<f64>,
}

/// `[DISK_FULL_IN]` of a host whose filesystems are not filling.
pub const NEVER: i64 = i64::MAX;

/// The placeholders, for messages.
const PLACEHOLDERS: &str = "[STATUS], [BODY], [RESPONSE_TIME], [CONNECTED], [CERTIFICATE_EXPIRATION], [DNS_RCODE], [IP], [CPU_PERCENT], [MEMORY], [MEMORY_PERCENT], [TASKS], [DISK_PERCENT], [DISK_FULL_IN], [LOAD]";

/// The placeholders a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceholderKind {
    Status,
    ResponseTime,
    Body,
    Connected,
    CertificateExpiration,
    DnsRcode,
    Ip,
    CpuPercent,
    Memory,
    MemoryPercent,
    Tasks,
    DiskPercent,
    DiskFullIn,
    Load,
}

impl PlaceholderKind {
    /// Whether it reads resource usage (a unit's or a host's) rather than a
    /// check's answer.
    pub fn is_usage(self) -> bool {
        matches!(
            self,
            PlaceholderKind::CpuPercent
                | PlaceholderKind::Memory
                | PlaceholderKind::MemoryPercent
                | PlaceholderKind::Tasks
        ) || self.is_host_only()
    }

    /// Whether only a host has it (`host://` checks).
    pub fn is_host_only(self) -> bool {
        matches!(
            self,
            PlaceholderKind::DiskPercent | PlaceholderKind::DiskFullIn | PlaceholderKind::Load
        )
    }

    /// Whether only a unit has it (not a `host://` check).
    pub fn is_unit_only(self) -> bool {
        self == PlaceholderKind::Tasks
    }

    /// As written in a condition.
    pub fn name(self) -> &'static str {
        match self {
            PlaceholderKind::Status => "[STATUS]",
            PlaceholderKind::ResponseTime => "[RESPONSE_TIME]",
            PlaceholderKind::Body => "[BODY]",
            PlaceholderKind::Connected => "[CONNECTED]",
            PlaceholderKind::CertificateExpiration => "[CERTIFICATE_EXPIRATION]",
            PlaceholderKind::DnsRcode => "[DNS_RCODE]",
            PlaceholderKind::Ip => "[IP]",
            PlaceholderKind::CpuPercent => "[CPU_PERCENT]",
            PlaceholderKind::Memory => "[MEMORY]",
            PlaceholderKind::MemoryPercent => "[MEMORY_PERCENT]",
            PlaceholderKind::Tasks => "[TASKS]",
            PlaceholderKind::DiskPercent => "[DISK_PERCENT]",
            PlaceholderKind::DiskFullIn => "[DISK_FULL_IN]",
            PlaceholderKind::Load => "[LOAD]",
        }
    }

    const ALL: [PlaceholderKind; 14] = [
        PlaceholderKind::Status,
        PlaceholderKind::ResponseTime,
        PlaceholderKind::Body,
        PlaceholderKind::Connected,
        PlaceholderKind::CertificateExpiration,
        PlaceholderKind::DnsRcode,
        PlaceholderKind::Ip,
        PlaceholderKind::CpuPercent,
        PlaceholderKind::Memory,
        PlaceholderKind::MemoryPercent,
        PlaceholderKind::Tasks,
        PlaceholderKind::DiskPercent,
        PlaceholderKind::DiskFullIn,
        PlaceholderKind::Load,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    kind: PlaceholderKind,
    /// `[BODY].a.b[0]`: the JSON path after `[BODY]`.
    path: Vec<Segment>,
    /// As written, for messages.
    text: String,
}

impl Placeholder {
    fn kind(&self) -> PlaceholderKind {
        self.kind
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Placeholder(Placeholder),
    Len(Placeholder),
    Has(Placeholder),
    Pattern(String),
    Any(Vec<String>),
    Literal(String),
}

impl Operand {
    fn placeholder(&self) -> Option<&Placeholder> {
        match self {
            Operand::Placeholder(p) | Operand::Len(p) | Operand::Has(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    left: Operand,
    op: Op,
    right: Operand,
    hold: Option<Duration>,
}

impl Parsed {
    fn parse(expr: &str) -> Result<Self, crate::error::Invalid> {
        if expr.is_empty() {
            return Err("is empty".into());
        }
        if expr.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        // The first operator of the list found, at its first place: a
        // literal on the right may hold any text (`pat(*a < b*)`).
        let (at, token, op) = Op::ALL
            .iter()
            .filter_map(|(token, op)| expr.find(token).map(|at| (at, *token, *op)))
            .min_by_key(|(at, token, _)| (*at, std::cmp::Reverse(token.len())))
            .ok_or("has no operator (==, !=, <, <=, >, >=)")?;
        let left = expr[..at].trim();
        let mut right = expr[at + token.len()..].trim();
        let mut hold = None;
        if let Some(i) = right.rfind(" for ") {
            if let Some(d) = parse_duration(right[i + 5..].trim()) {
                hold = Some(d);
                right = right[..i].trim();
            }
        }
        if left.is_empty() {
            return Err(format!("has nothing left of {token}").into());
        }
        if right.is_empty() {
            return Err(format!("has nothing right of {token}").into());
        }
        let left = operand(left)?;
        let right = operand(right)?;
        if left.placeholder().is_none() && right.placeholder().is_none() {
            return Err(format!("compares no placeholder ({PLACEHOLDERS})").into());
        }
        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
            && [&left, &right]
                .iter()
                .any(|o| matches!(o, Operand::Pattern(_) | Operand::Any(_)))
        {
            return Err(format!("{token} compares numbers, not pat() or any()").into());
        }
        Ok(Self {
            left,
            op,
            right,
            hold,
        })
    }
}

fn operand(text: &str) -> Result<Operand, crate::error::Invalid> {
    let call = |name: &str| {
        text.strip_prefix(name)
            .and_then(|t| t.strip_prefix('('))
            .and_then(|t| t.strip_suffix(')'))
    };
    if let Some(inner) = call("len") {
        return Ok(Operand::Len(placeholder(inner.trim())?));
    }
    if let Some(inner) = call("has") {
        return Ok(Operand::Has(placeholder(inner.trim())?));
    }
    if let Some(inner) = call("pat") {
        return Ok(Operand::Pattern(inner.to_owned()));
    }
    if let Some(inner) = call("any") {
        return Ok(Operand::Any(
            inner.split(',').map(|s| s.trim().to_owned()).collect(),
        ));
    }
    if text.starts_with('[') {
        return Ok(Operand::Placeholder(placeholder(text)?));
    }
    Ok(Operand::Literal(text.to_owned()))
}

fn placeholder(text: &str) -> Result<Placeholder, crate::error::Invalid> {
    let end = text
        .find(']')
        .ok_or_else(|| format!("{text:?} is not a placeholder"))?;
    let (name, rest) = text.split_at(end + 1);
    let kind = PlaceholderKind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("{name} is not a placeholder lookout knows ({PLACEHOLDERS})"))?;
    let path = if rest.is_empty() {
        Vec::new()
    } else if kind == PlaceholderKind::Body {
        json_path(rest).map_err(|e| format!("{text}: {e}"))?
    } else {
        return Err(format!("{name} takes no path ({rest:?})").into());
    };
    Ok(Placeholder {
        kind,
        path,
        text: text.to_owned(),
    })
}

/// `.a.b[0].c` → keys and indexes.
fn json_path(mut rest: &str) -> Result<Vec<Segment>, crate::error::Invalid> {
    let mut path = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key.is_empty() || key.contains([' ', ']']) {
                return Err(format!("{:?} is not a key", key).into());
            }
            path.push(Segment::Key(key.to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or("an index is not closed with ]")?;
            let index = after[..end]
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("[{}] is not an index", &after[..end]))?;
            path.push(Segment::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(format!("expected .key or [index], found {rest:?}").into());
        }
    }
    Ok(path)
}

/// A Go-style duration, as Gatus writes them: `72h`, `1h30m`, `500ms`,
/// `30s`, plus `d` for days.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms_per)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

/// A value a side of a condition stands for.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Text(String),
    Number(f64),
    Pattern(String),
    Any(Vec<String>),
    /// A placeholder with nothing to read: no body, no such key ...
    Missing(String),
}

impl Resolved {
    fn display(&self, about: Option<&Placeholder>) -> String {
        match (self, about.map(Placeholder::kind)) {
            (Resolved::Number(ms), Some(PlaceholderKind::CertificateExpiration)) => {
                human_ms(*ms as i64)
            }
            (Resolved::Number(ms), Some(PlaceholderKind::DiskFullIn)) => {
                if *ms >= NEVER as f64 {
                    "never: no filesystem is filling".into()
                } else {
                    human_ms(*ms as i64)
                }
            }
            (Resolved::Number(ms), Some(PlaceholderKind::ResponseTime)) => format!("{ms} ms"),
            (
                Resolved::Number(p),
                Some(
                    PlaceholderKind::CpuPercent
                    | PlaceholderKind::MemoryPercent
                    | PlaceholderKind::DiskPercent,
                ),
            ) => format!("{}%", decimal(*p, 1)),
            (Resolved::Number(b), Some(PlaceholderKind::Memory)) => human_bytes(*b),
            (Resolved::Number(n), Some(PlaceholderKind::Load)) => decimal(*n, 2),
            (Resolved::Number(n), _) => decimal(*n, 3),
            (Resolved::Text(t), _) => {
                let mut t: String = t.chars().take(80).collect();
                if t.is_empty() {
                    t = "empty".into();
                }
                t
            }
            (Resolved::Pattern(p), _) => format!("pat({p})"),
            (Resolved::Any(v), _) => format!("any({})", v.join(", ")),
            (Resolved::Missing(what), _) => format!("{what} (missing)"),
        }
    }

    /// As a number: a number, a duration in milliseconds or a size in
    /// bytes.
    fn number(&self) -> Option<f64> {
        match self {
            Resolved::Number(n) => Some(*n),
            Resolved::Text(t) => {
                let t = t.trim();
                decimal_number(t)
                    .or_else(|| parse_duration(t).map(|d| d.as_millis() as f64))
                    .or_else(|| parse_size(t).map(|b| b as f64))
            }
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Resolved::Number(n) => Some(decimal(*n, 3)),
            Resolved::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

/// `-12`, `3`, `0.25`: digits with at most one point, nothing else (no
/// `NaN`, `inf` or exponent).
fn decimal_number(t: &str) -> Option<f64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let ok = !digits.is_empty()
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1;
    ok.then(|| t.parse().ok()).flatten()
}

/// A size: `512MiB`, `2 GB`, `100KiB`, `64B` (K, M, G, T in powers of
/// 1000; Ki, Mi, Gi, Ti in powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let number = decimal_number(&text[..split])?;
    let factor: f64 = match text[split..].trim_start().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes.round() as u64)
}

/// `n` with at most `places` decimals, none when whole.
fn decimal(n: f64, places: usize) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    let text = format!("{n:.places$}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `128 MiB`, `3.2 GiB`.
fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{} {}", decimal(v, 1), UNITS[unit])
}

/// `3d 4h`, `5h 12m`, `40s`; `expired 2d ago` below zero.
fn human_ms(ms: i64) -> String {
    let ago = ms < 0;
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let text = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    };
    if ago {
        format!("expired {text} ago")
    } else {
        text
    }
}

impl Operand {
    fn resolve(&self, seen: &Observation<'_>) -> Resolved {
        match self {
            Operand::Literal(l) => Resolved::Text(l.clone()),
            Operand::Pattern(p) => Resolved::Pattern(p.clone()),
            Operand::Any(v) => Resolved::Any(v.clone()),
            Operand::Placeholder(p) => read(p, seen).map_or_else(
                || Resolved::Missing(p.text.clone()),
                |v| match v {
                    Read::Number(n) => Resolved::Number(n),
                    Read::Text(t) => Resolved::Text(t),
                    Read::Json(j) => Resolved::Text(match j {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    }),
                },
            ),
            Operand::Len(p) => match read(p, seen) {
                Some(Read::Json(serde_json::Value::Array(a))) => Resolved::Number(len(a.len())),
                Some(Read::Json(serde_json::Value::Object(o))) => Resolved::Number(len(o.len())),
                Some(Read::Json(serde_json::Value::String(s))) | Some(Read::Text(s)) => {
                    Resolved::Number(len(s.chars().count()))
                }
                Some(Read::Json(other)) => Resolved::Number(len(other.to_string().len())),
                Some(Read::Number(n)) => Resolved::Number(len(n.to_string().len())),
                None => Resolved::Missing(p.text.clone()),
            },
            Operand::Has(p) => Resolved::Text(read(p, seen).is_some().to_string()),
        }
    }
}

fn len(n: usize) -> f64 {
    n as f64
}

enum Read {
    Number(f64),
    Text(String),
    Json(serde_json::Value),
}

fn read(p: &Placeholder, seen: &Observation<'_>) -> Option<Read> {
    Some(match p.kind {
        PlaceholderKind::Status => Read::Number(f64::from(seen.status?)),
        PlaceholderKind::ResponseTime => Read::Number(seen.response_time_ms? as f64),
        PlaceholderKind::Connected => Read::Text(seen.connected.to_string()),
        PlaceholderKind::CertificateExpiration => {
            Read::Number(seen.certificate_expires_in_ms? as f64)
        }
        PlaceholderKind::DnsRcode => Read::Text(seen.dns_rcode?.to_owned()),
        PlaceholderKind::Ip => Read::Text(seen.ip?.to_owned()),
        PlaceholderKind::CpuPercent => Read::Number(seen.usage?.cpu_percent?),
        PlaceholderKind::Memory => Read::Number(seen.usage?.memory_bytes? as f64),
        PlaceholderKind::MemoryPercent => Read::Number(seen.usage?.memory_percent?),
        PlaceholderKind::Tasks => Read::Number(seen.usage?.tasks? as f64),
        PlaceholderKind::DiskPercent => Read::Number(seen.usage?.disk_percent?),
        PlaceholderKind::DiskFullIn => Read::Number(seen.usage?.disk_full_in_ms? as f64),
        PlaceholderKind::Load => Read::Number(seen.usage?.load?),
        PlaceholderKind::Body => {
            let body = seen.body?;
            if p.path.is_empty() {
                Read::Text(body.to_owned())
            } else {
                let mut value: serde_json::Value = serde_json::from_str(body).ok()?;
                for segment in &p.path {
                    value = match (segment, value) {
                        (Segment::Key(k), serde_json::Value::Object(mut o)) => o.remove(k)?,
                        (Segment::Index(i), serde_json::Value::Array(mut a)) if *i < a.len() => {
                            a.swap_remove(*i)
                        }
                        _ => return None,
                    };
                }
                Read::Json(value)
            }
        }
    })
}

fn compare(left: &Resolved, op: Op, right: &Resolved) -> bool {
    match op {
        Op::Eq => equal(left, right),
        Op::Ne => !equal(left, right),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let (Some(a), Some(b)) = (left.number(), right.number()) else {
                return false;
            };
            match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a >= b,
            }
        }
    }
}

fn equal(left: &Resolved, right: &Resolved) -> bool {
    match (left, right) {
        (Resolved::Missing(_), _) | (_, Resolved::Missing(_)) => false,
        (Resolved::Pattern(p), v) | (v, Resolved::Pattern(p)) => {
            v.text().is_some_and(|t| glob(p, &t))
        }
        (Resolved::Any(options), v) | (v, Resolved::Any(options)) => v.text().is_some_and(|t| {
            options
                .iter()
                .any(|o| same(&Resolved::Text(o.clone()), &Resolved::Text(t.clone())))
        }),
        (a, b) => same(a, b),
    }
}

/// Numbers as numbers, everything else as text.
fn same(a: &Resolved, b: &Resolved) -> bool {
    match (a, b) {
        (Resolved::Number(x), other) | (other, Resolved::Number(x)) => other.number() == Some(*x),
        _ => a.text() == b.text(),
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// Parses a list of conditions as the API and files carry them: each
/// error names its place (`conditions[2]: ...`).
pub fn parse_conditions(
    specs: &[ConditionSpec],
) -> Result<Vec<Condition>, Vec<(usize, crate::error::Invalid)>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        match Condition::from_spec(spec) {
            Ok(c) => out.push(c),
            Err(e) => errors.push((i, e)),
        }
    }
    if specs.len() > CONDITIONS_MAX {
        errors.push((
            CONDITIONS_MAX,
            format!("at most {CONDITIONS_MAX} conditions").into(),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expr: &str, seen: &Observation<'_>) -> Result<(), crate::error::Invalid> {
        Condition::parse(expr, Status::Failure)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .evaluate(seen)
    }

    fn http(status: u16, body: &str, ms: u64) -> Observation<'_> {
        Observation {
            status: Some(status),
            response_time_ms: Some(ms),
            body: Some(body),
            connected: true,
            ..Observation::default()
        }
    }

    #[test]
    fn gatus_lines_hold_and_fail_as_in_gatus() {
        let body = r#"{"status": "UP", "items": [{"name": "b"}, {"name": "z"}], "count": 3, "errors": null}"#;
        let ok = http(200, body, 120);
        for expr in [
            "[STATUS] == 200",
            "[STATUS] < 400",
            "[STATUS] == any(200, 201)",
            "[STATUS] == pat(2*)",
            "[BODY] == pat(*UP*)",
            "[BODY].status == UP",
            "[BODY].items[0].name == any(a, b)",
            "[BODY].count > 2",
            "[BODY].count == 3",
            "len([BODY].items) == 2",
            "has([BODY].errors) == true",
            "has([BODY].missing) == false",
            "[RESPONSE_TIME] < 300",
            "[RESPONSE_TIME] <= 1s",
            "[CONNECTED] == true",
            "[STATUS] != 500",
            "200 == [STATUS]",
        ] {
            assert_eq!(check(expr, &ok), Ok(()), "{expr}");
        }
        let down = http(503, r#"{"status": "DOWN", "items": []}"#, 812);
        assert_eq!(
            check("[BODY].status == UP", &down).unwrap_err(),
            "[BODY].status == UP: was DOWN".into()
        );
        assert_eq!(
            check("[STATUS] == 200", &down).unwrap_err(),
            "[STATUS] == 200: was 503".into()
        );
        assert_eq!(
            check("[RESPONSE_TIME] < 300", &down).unwrap_err(),
            "[RESPONSE_TIME] < 300: was 812 ms".into()
        );
        assert_eq!(
            check("len([BODY].items) > 0", &down).unwrap_err(),
            "len([BODY].items) > 0: was 0".into()
        );
        assert_eq!(
            check("[BODY].items[0].name == a", &down).unwrap_err(),
            "[BODY].items[0].name == a: [BODY].items[0].name is missing".into()
        );
        let text = http(200, "<html>hello</html>", 5);
        assert_eq!(
            check("[BODY].status == UP", &text).unwrap_err(),
            "[BODY].status == UP: [BODY].status is missing".into(),
            "a body that is not JSON has no path"
        );
    }

    #[test]
    fn certificates_and_dns_compare_durations_and_codes() {
        let cert = Observation {
            connected: true,
            certificate_expires_in_ms: Some(5 * 86_400_000),
            ..Observation::default()
        };
        assert_eq!(check("[CERTIFICATE_EXPIRATION] > 72h", &cert), Ok(()));
        assert_eq!(
            check("[CERTIFICATE_EXPIRATION] > 14d", &cert).unwrap_err(),
            "[CERTIFICATE_EXPIRATION] > 14d: was 5d 0h".into()
        );
        assert_eq!(
            check("14d < [CERTIFICATE_EXPIRATION]", &cert).unwrap_err(),
            "14d < [CERTIFICATE_EXPIRATION]: was 5d 0h".into(),
            "the seen side's units, on either side"
        );
        let expired = Observation {
            certificate_expires_in_ms: Some(-2 * 86_400_000),
            ..Observation::default()
        };
        assert_eq!(
            check("[CERTIFICATE_EXPIRATION] > 0", &expired).unwrap_err(),
            "[CERTIFICATE_EXPIRATION] > 0: was expired 2d 0h ago".into()
        );
        let dns = Observation {
            dns_rcode: Some("NXDOMAIN"),
            ..Observation::default()
        };
        assert_eq!(
            check("[DNS_RCODE] == NOERROR", &dns).unwrap_err(),
            "[DNS_RCODE] == NOERROR: was NXDOMAIN".into()
        );
        let nothing = Observation::default();
        assert_eq!(
            check("[CONNECTED] == true", &nothing).unwrap_err(),
            "[CONNECTED] == true: was false".into()
        );
        assert_eq!(
            check("[STATUS] == 200", &nothing).unwrap_err(),
            "[STATUS] == 200: [STATUS] is missing".into()
        );
    }

    #[test]
    fn a_hold_and_a_warning_are_read() {
        let c = Condition::parse("[STATUS] == 200 for 5m", Status::Warning).unwrap();
        assert_eq!(c.hold(), Some(Duration::from_secs(300)));
        assert_eq!(c.on_fail(), Status::Warning);
        assert_eq!(
            c.to_spec(),
            ConditionSpec::Object {
                expr: "[STATUS] == 200 for 5m".into(),
                on_fail: Status::Warning
            }
        );
        assert!(c.mentions(PlaceholderKind::Status));
        assert!(!c.mentions(PlaceholderKind::Body));
        // "for" inside a literal is text, not a hold.
        let c = Condition::parse("[BODY] == pat(*waiting for godot*)", Status::Failure).unwrap();
        assert_eq!(c.hold(), None);
        assert_eq!(
            c.evaluate(&http(200, "still waiting for godot now", 1)),
            Ok(())
        );
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        for (expr, wanted) in [
            ("", "is empty"),
            ("[STATUS]", "has no operator"),
            ("[STATUS] ==", "has nothing right of =="),
            ("== 200", "has nothing left of =="),
            ("[STATUSES] == 200", "[STATUSES] is not a placeholder"),
            ("[BODY].a[x] == 1", "is not an index"),
            ("[STATUS].a == 1", "takes no path"),
            ("200 == 200", "compares no placeholder"),
            ("[STATUS] < pat(2*)", "compares numbers"),
            ("[BODY].a[0 == 1", "not closed"),
        ] {
            let e = Condition::parse(expr, Status::Failure).unwrap_err();
            assert!(e.contains(wanted), "{expr:?}: {e}");
        }
        assert!(Condition::parse("[STATUS] == 200", Status::Ok).is_err());
        assert!(Condition::parse(&"x".repeat(2000), Status::Failure).is_err());
    }

    #[test]
    fn usage_placeholders_read_the_units_last_sample() {
        let held = Condition::parse("[MEMORY_PERCENT] < 90 for 5m", Status::Warning).unwrap();
        assert!(held.mentions(PlaceholderKind::MemoryPercent));
        assert!(PlaceholderKind::MemoryPercent.is_usage());
        assert_eq!(held.hold(), Some(Duration::from_secs(300)));
        let seen = |usage: Option<UsageSeen>| Observation {
            usage,
            ..Observation::default()
        };
        let high = UsageSeen {
            cpu_percent: Some(85.4),
            memory_bytes: Some(3 << 30),
            memory_percent: Some(93.2),
            tasks: Some(12),
            ..UsageSeen::default()
        };
        let why = held.evaluate(&seen(Some(high))).unwrap_err();
        assert_eq!(why.to_string(), "[MEMORY_PERCENT] < 90 for 5m: was 93.2%");
        let cpu = Condition::parse("[CPU_PERCENT] < 80", Status::Failure).unwrap();
        assert!(cpu.evaluate(&seen(Some(high))).is_err());
        let tasks = Condition::parse("[TASKS] <= 12", Status::Failure).unwrap();
        assert!(tasks.evaluate(&seen(Some(high))).is_ok());
        let memory = Condition::parse("[MEMORY] < 4294967296", Status::Failure).unwrap();
        assert!(memory.evaluate(&seen(Some(high))).is_ok());
        // Sizes in the units people write them, and the figure shown so.
        let memory = Condition::parse("[MEMORY] < 2 GiB", Status::Failure).unwrap();
        assert_eq!(
            memory.evaluate(&seen(Some(high))).unwrap_err().to_string(),
            "[MEMORY] < 2 GiB: was 3 GiB"
        );
        assert!(check("[MEMORY] < 3.5GiB", &seen(Some(high))).is_ok());
        assert!(
            check("[MEMORY] > 3GB", &seen(Some(high))).is_ok(),
            "3 GiB > 3 GB"
        );
        // A fraction of a percent counts.
        assert!(check("[MEMORY_PERCENT] > 93.1", &seen(Some(high))).is_ok());
        assert!(check("[MEMORY_PERCENT] < 93.3", &seen(Some(high))).is_ok());
        // No sample (the unit is stopped, or the service has none): the
        // condition cannot hold.
        assert!(cpu.evaluate(&seen(None)).is_err());
    }

    #[test]
    fn host_placeholders_read_disk_load_and_the_fill_estimate() {
        let host = UsageSeen {
            cpu_percent: Some(12.5),
            memory_percent: Some(40.0),
            disk_percent: Some(91.46),
            disk_full_in_ms: Some(3 * 86_400_000 + 4 * 3_600_000),
            load: Some(3.7),
            ..UsageSeen::default()
        };
        let seen = Observation {
            usage: Some(host),
            ..Observation::default()
        };
        assert_eq!(
            check("[DISK_PERCENT] < 90", &seen).unwrap_err().to_string(),
            "[DISK_PERCENT] < 90: was 91.5%"
        );
        assert_eq!(
            check("[DISK_FULL_IN] > 7d", &seen).unwrap_err().to_string(),
            "[DISK_FULL_IN] > 7d: was 3d 4h"
        );
        assert!(check("[DISK_FULL_IN] > 3d", &seen).is_ok());
        // The load is a fraction: 3.7 is under 4 and over 3.5.
        assert!(check("[LOAD] < 4", &seen).is_ok());
        assert_eq!(
            check("[LOAD] < 3.5", &seen).unwrap_err().to_string(),
            "[LOAD] < 3.5: was 3.7"
        );
        let steady = Observation {
            usage: Some(UsageSeen {
                disk_full_in_ms: Some(NEVER),
                ..host
            }),
            ..Observation::default()
        };
        assert!(check("[DISK_FULL_IN] > 3650d", &steady).is_ok());
        assert!(PlaceholderKind::DiskFullIn.is_usage());
        assert!(PlaceholderKind::Load.is_host_only());
        assert!(!PlaceholderKind::Memory.is_host_only());
        assert!(PlaceholderKind::Tasks.is_unit_only());
        for kind in PlaceholderKind::ALL {
            assert!(PLACEHOLDERS.contains(kind.name()), "{kind:?} is listed");
        }
    }

    #[test]
    fn sizes_and_numbers_are_read_strictly() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Some(1536));
        assert_eq!(parse_size("64b"), Some(64));
        for bad in ["", "MiB", "5", "5 XB", "-5MiB", "1.2.3GB", ".5GB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(decimal_number("0.25"), Some(0.25));
        assert_eq!(decimal_number("-12"), Some(-12.0));
        for bad in ["NaN", "inf", "1e5", "1.", ".1", "-", ""] {
            assert_eq!(decimal_number(bad), None, "{bad}");
        }
        // Text that is no number is still compared as text.
        let body = http(200, "NaN", 1);
        assert!(check("[BODY] == NaN", &body).is_ok());
        assert!(check("[BODY] != 1", &body).is_ok());
    }

    #[test]
    fn durations_are_read_as_go_writes_them() {
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("14d"), Some(Duration::from_secs(14 * 86400)));
        for bad in ["", "h", "5", "5x", "-5s", "99999999999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn patterns_match_as_globs() {
        assert!(glob("*ok*", "all ok here"));
        assert!(glob("ok", "ok"));
        assert!(!glob("ok", "okay"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("*", ""));
        assert!(!glob("ab*ba", "aba"), "the ends may not overlap");
    }
}
