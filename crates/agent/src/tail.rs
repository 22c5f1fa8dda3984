//! Following a check's log file: new complete lines as they are appended,
//! through truncation (copytruncate) and rotation (rename and re-create)
//! without losing or repeating a line, each line turned into a result with
//! its UTC time and ordinal.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use chrono::{DateTime, Local, TimeZone as _, Utc};
use lookout_proto::agent::StatusUpdate;
use lookout_proto::check::{parse_line, LineTime};

/// The UTC time of a line: zoned times carry their offset, local ones are
/// read in the host's time zone (the earlier reading in a DST fold).
pub fn to_utc(time: LineTime) -> Option<DateTime<Utc>> {
    match time {
        LineTime::Zoned(t) => Some(t.with_timezone(&Utc)),
        LineTime::Local(naive) => Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// One check's log, followed.
#[derive(Debug)]
pub struct Tailer {
    pub check: String,
    pub path: PathBuf,
    file: Option<File>,
    inode: Option<u64>,
    offset: u64,
    /// Bytes after the last newline, waiting for the rest of their line.
    partial: Vec<u8>,
    /// How many lines carried each recent time: a line's ordinal is the
    /// count before it (times repeat in a DST fold, or when a script prints
    /// several lines at once).
    counts: std::collections::BTreeMap<DateTime<Utc>, u32>,
}

/// Times kept for ordinals: a day and an hour before the newest (a DST fold
/// repeats an hour; a day covers any clock change worth following).
const ORDINAL_HORIZON: chrono::TimeDelta = chrono::TimeDelta::hours(25);

impl Tailer {
    pub fn new(check: String, path: PathBuf) -> Self {
        Self {
            check,
            path,
            file: None,
            inode: None,
            offset: 0,
            partial: Vec::new(),
            counts: std::collections::BTreeMap::new(),
        }
    }

    /// A tailer for `path` that counts ordinals on from `self` (the file it
    /// follows was rotated from `self`'s).
    pub fn continued(self, path: PathBuf) -> Self {
        Self {
            counts: self.counts,
            ..Self::new(self.check, path)
        }
    }

    fn update(&mut self, line: &str) -> Option<StatusUpdate> {
        let parsed = match parse_line(line) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(check = %self.check, error = %e, "skipping a line that is not a result");
                return None;
            }
        };
        let at = to_utc(parsed.time)?;
        let seen = self.counts.entry(at).or_insert(0);
        let ordinal = *seen;
        *seen += 1;
        if self.counts.len() > 4096 {
            if let Some(newest) = self.counts.keys().next_back().copied() {
                self.counts = self.counts.split_off(&(newest - ORDINAL_HORIZON));
            }
        }
        Some(StatusUpdate {
            service_name: self.check.clone(),
            timestamp: at,
            ordinal,
            status: parsed.status,
            message: parsed.message,
        })
    }

    fn take_lines(&mut self, bytes: &[u8], out: &mut Vec<StatusUpdate>) {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            if !line.trim().is_empty() {
                if let Some(u) = self.update(line) {
                    out.push(u);
                }
            }
        }
    }

    /// Reads what is new in `file` from the current offset.
    fn drain(&mut self, out: &mut Vec<StatusUpdate>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated in place: what is there now is new.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(usize::try_from(len - self.offset).unwrap_or(0));
        file.take(len - self.offset).read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.take_lines(&bytes, out);
        Ok(())
    }

    /// Every result appended since the last call. After a rotation the rest
    /// of the old file is read before the new one.
    pub fn poll(&mut self) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if self.file.is_some() && current != self.inode {
            // Rotated (or removed): finish the file we hold open first.
            if let Err(e) = self.drain(&mut out) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read a rotated log");
            }
            self.file = None;
            self.offset = 0;
            self.partial.clear();
        }
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => {
                    self.inode = f.metadata().ok().map(|m| m.ino());
                    self.file = Some(f);
                    self.offset = 0;
                }
                Err(_) => return out, // no log yet
            }
        }
        if let Err(e) = self.drain(&mut out) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot read a log");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn messages(updates: &[StatusUpdate]) -> Vec<(String, u32)> {
        updates
            .iter()
            .map(|u| (u.message.clone(), u.ordinal))
            .collect()
    }

    #[test]
    fn appends_truncation_and_rotation_lose_and_repeat_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut t = Tailer::new("c".into(), path.clone());
        assert!(t.poll().is_empty(), "no file yet");

        append(
            &path,
            "2026-11-25T10:00:00Z, OK, a\n2026-11-25T10:00:00Z, OK, b\n2026-11-25T10:00:01Z, WARN",
        );
        assert_eq!(messages(&t.poll()), [("a".into(), 0), ("b".into(), 1)]);
        // The rest of a line written in two goes.
        append(&path, "ING, c, with comma\n");
        let got = t.poll();
        assert_eq!(messages(&got), [("c, with comma".into(), 0)]);
        assert_eq!(got[0].status, lookout_proto::check::LineStatus::Warning);
        assert!(t.poll().is_empty());

        // Rotation: a line lands in the old file after the rename, then the
        // new file starts.
        let rotated = dir.path().join("c.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&rotated, "2026-11-25T10:00:02Z, OK, d (late, old file)\n");
        append(&path, "2026-11-25T10:00:03Z, OK, e (new file)\n");
        assert_eq!(
            messages(&t.poll()),
            [("d (late, old file)".into(), 0), ("e (new file)".into(), 0)]
        );

        // copytruncate: the file shrinks; what follows is new.
        std::fs::write(&path, "").unwrap();
        append(&path, "2026-11-25T10:00:04Z, FAILURE, f\n");
        assert_eq!(messages(&t.poll()), [("f".into(), 0)]);

        // Garbage is skipped, not fatal.
        append(&path, "not a result\n2026-11-25T10:00:05Z, OK, g\n");
        assert_eq!(messages(&t.poll()), [("g".into(), 0)]);
    }

    #[test]
    fn ordinals_count_every_earlier_line_with_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        append(
            &path,
            "2026-10-25T01:00:00Z, OK, a\n2026-10-25T01:45:00Z, OK, b\n2026-10-25T01:00:00Z, OK, c\n",
        );
        let mut t = Tailer::new("c".into(), path.clone());
        assert_eq!(
            messages(&t.poll()),
            [("a".into(), 0), ("b".into(), 0), ("c".into(), 1)]
        );
        // Across a rotation the count goes on.
        let rotated = dir.path().join("c.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, "2026-10-25T01:00:00Z, OK, d\n");
        assert_eq!(messages(&t.poll()), [("d".into(), 2)]);
        let mut replay = Tailer::new("c".into(), rotated);
        let mut all = replay.poll();
        let mut current = replay.continued(path);
        all.extend(current.poll());
        assert_eq!(
            messages(&all),
            [
                ("a".into(), 0),
                ("b".into(), 0),
                ("c".into(), 1),
                ("d".into(), 2)
            ]
        );
    }

    #[test]
    fn local_times_become_utc() {
        let naive =
            chrono::NaiveDateTime::parse_from_str("2026-07-01 12:00:00", "%Y-%m-%d %H:%M:%S")
                .unwrap();
        let utc = to_utc(LineTime::Local(naive)).unwrap();
        let expected = Local.from_local_datetime(&naive).earliest().unwrap();
        assert_eq!(utc, expected.with_timezone(&Utc));
        let zoned = chrono::DateTime::parse_from_rfc3339("2026-07-01T12:00:00+02:00").unwrap();
        assert_eq!(
            to_utc(LineTime::Zoned(zoned)).unwrap().to_rfc3339(),
            "2026-07-01T10:00:00+00:00"
        );
    }
}
