//! Percentiles of an hdrhistogram, as reports print them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// p50, p90, p99, p99.9 and max of one measure, with how many values it holds.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl Percentiles {
    /// Reads them from a histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }

    /// `p50 a  p90 b  p99 c  p99.9 d  max e` with a unit.
    pub fn line(&self, unit: &str) -> String {
        format!(
            "p50 {}{unit}  p90 {}{unit}  p99 {}{unit}  p99.9 {}{unit}  max {}{unit}  (n={})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.count
        )
    }
}

/// A histogram of values up to an hour in microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // invariant: these bounds (1 ≤ low, high ≥ 2·low, sigfig ≤ 5) are valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_recorded_values() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!((p.count, p.p50, p.max), (1000, 500, 1000));
        assert!((989..=991).contains(&p.p99), "{p:?}");
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
        let mut zeros = histogram();
        zeros.record(0).unwrap();
        zeros.record(0).unwrap();
        let p = Percentiles::of(&zeros);
        assert_eq!(
            (p.count, p.p50, p.max),
            (2, 0, 0),
            "no loss reads as 0, not 1"
        );
    }
}
