//! Time series made small: samples (check results) grouped into fixed-width
//! buckets with their count, how many passed, and the minimum, mean and
//! maximum of their values. The hub keeps
//! hourly buckets of check results after the raw results are pruned, and
//! draws every chart range from buckets of a width that fits it.

use chrono::{DateTime, Duration, Utc};

/// One sample: when, whether it passed, and its value (a latency in ms), if
/// it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub passed: bool,
    pub value: Option<f64>,
}

/// The samples of one time slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The slot's start (a multiple of its width since the Unix epoch).
    pub start: DateTime<Utc>,
    /// Samples in it.
    pub count: u32,
    /// Of those, how many passed.
    pub passed: u32,
    /// Of those, how many had a value; `sum`, `min` and `max` are theirs.
    pub values: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Bucket {
    fn empty(start: DateTime<Utc>) -> Bucket {
        Bucket {
            start,
            count: 0,
            passed: 0,
            values: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// The mean value, when any sample had one.
    pub fn mean(&self) -> Option<f64> {
        (self.values > 0).then(|| self.sum / f64::from(self.values))
    }

    /// The smallest value, when any sample had one.
    pub fn least(&self) -> Option<f64> {
        (self.values > 0).then_some(self.min)
    }

    /// The largest value, when any sample had one.
    pub fn most(&self) -> Option<f64> {
        (self.values > 0).then_some(self.max)
    }

    /// How many samples failed.
    pub fn failed(&self) -> u32 {
        self.count - self.passed
    }

    fn add(&mut self, s: &Sample) {
        self.count += 1;
        self.passed += u32::from(s.passed);
        if let Some(v) = s.value.filter(|v| v.is_finite()) {
            self.values += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    fn absorb(&mut self, b: &Bucket) {
        self.count += b.count;
        self.passed += b.passed;
        self.values += b.values;
        self.sum += b.sum;
        if b.values > 0 {
            self.min = self.min.min(b.min);
            self.max = self.max.max(b.max);
        }
    }
}

/// The start of the `width`-wide slot `at` falls in.
pub fn slot(at: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let w = width.num_milliseconds().max(1);
    let t = at.timestamp_millis();
    DateTime::from_timestamp_millis(t - t.rem_euclid(w)).unwrap_or(at)
}

/// Samples grouped into `width`-wide slots, oldest first; slots without a
/// sample are left out.
pub fn downsample(samples: impl IntoIterator<Item = Sample>, width: Duration) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    for s in samples {
        let start = slot(s.at, width);
        match buckets.binary_search_by_key(&start, |b| b.start) {
            Ok(i) => buckets[i].add(&s),
            Err(i) => {
                let mut b = Bucket::empty(start);
                b.add(&s);
                buckets.insert(i, b);
            }
        }
    }
    buckets
}

/// Buckets merged into wider `width`-wide slots (an hour's buckets into
/// days), oldest first.
pub fn coarsen(buckets: &[Bucket], width: Duration) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for b in buckets {
        let start = slot(b.start, width);
        match out.binary_search_by_key(&start, |o| o.start) {
            Ok(i) => out[i].absorb(b),
            Err(i) => {
                let mut o = Bucket::empty(start);
                o.absorb(b);
                out.insert(i, o);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).unwrap()
    }

    fn sample(h: u32, m: u32, passed: bool, value: Option<f64>) -> Sample {
        Sample {
            at: at(h, m),
            passed,
            value,
        }
    }

    #[test]
    fn samples_fall_into_aligned_slots_with_their_figures() {
        let hour = Duration::hours(1);
        let buckets = downsample(
            [
                sample(10, 59, true, Some(30.0)),
                sample(10, 5, true, Some(10.0)),
                sample(10, 30, false, None),
                sample(12, 0, true, Some(5.0)),
            ],
            hour,
        );
        assert_eq!(buckets.len(), 2, "the empty 11:00 slot is left out");
        let ten = buckets[0];
        assert_eq!(ten.start, at(10, 0));
        assert_eq!((ten.count, ten.passed, ten.failed()), (3, 2, 1));
        assert_eq!(ten.mean(), Some(20.0));
        assert_eq!((ten.least(), ten.most()), (Some(10.0), Some(30.0)));
        assert_eq!(buckets[1].start, at(12, 0));
    }

    #[test]
    fn a_slot_without_values_has_no_figures() {
        let b = downsample([sample(1, 0, false, None)], Duration::minutes(5));
        assert_eq!((b[0].mean(), b[0].least(), b[0].most()), (None, None, None));
    }

    #[test]
    fn coarser_buckets_add_up_the_finer_ones() {
        let fine = downsample(
            (0..24).map(|h| sample(h, 0, h % 2 == 0, Some(f64::from(h)))),
            Duration::hours(1),
        );
        let days = coarsen(&fine, Duration::days(1));
        assert_eq!(days.len(), 1);
        let d = days[0];
        assert_eq!((d.count, d.passed, d.values), (24, 12, 24));
        assert_eq!((d.least(), d.most()), (Some(0.0), Some(23.0)));
        assert_eq!(d.mean(), Some(11.5));
        // The same as downsampling the samples at that width directly.
        let direct = downsample(
            (0..24).map(|h| sample(h, 0, h % 2 == 0, Some(f64::from(h)))),
            Duration::days(1),
        );
        assert_eq!(direct, days);
    }
}
