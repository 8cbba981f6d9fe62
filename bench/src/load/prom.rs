//! One Prometheus histogram read from a `/metrics` page, and percentiles of the observations
//! made between two readings (at bucket resolution: the bucket's upper bound).

use serde::Serialize;

/// Cumulative bucket counts of one histogram: (upper bound in seconds, count), ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, u64)>);

impl Buckets {
    /// The buckets of histogram `name` in the text exposition format `page` (no labels other
    /// than `le`); empty when the page does not have it.
    pub fn parse(page: &str, name: &str) -> Self {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, u64)> = page
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (le, rest) = rest.split_once("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count = rest.trim().parse::<f64>().ok()?;
                Some((le, count as u64))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self(buckets)
    }

    /// The observations made since `before` (same buckets), still cumulative.
    pub fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|&(le, count)| {
                    let was = before
                        .0
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0, |(_, c)| *c);
                    (le, count.saturating_sub(was))
                })
                .collect(),
        )
    }

    /// Percentiles in milliseconds, each the upper bound of the bucket it falls in.
    pub fn summary(&self) -> Option<BucketSummary> {
        let count = self.0.last()?.1;
        if count == 0 {
            return None;
        }
        let at = |q: f64| -> Option<f64> {
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            self.0
                .iter()
                .find(|(_, c)| *c >= rank)
                .map(|(le, _)| le * 1000.0)
                .filter(|v| v.is_finite())
        };
        Some(BucketSummary {
            count,
            p50_le: at(0.5),
            p90_le: at(0.9),
            p99_le: at(0.99),
            p99_9_le: at(0.999),
            max_le: at(1.0),
        })
    }
}

/// Percentiles known to a bucket: "at most this many milliseconds" (`None`: above the largest
/// finite bucket).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketSummary {
    /// Observations.
    pub count: u64,
    /// Median, at most.
    pub p50_le: Option<f64>,
    /// 90th percentile, at most.
    pub p90_le: Option<f64>,
    /// 99th percentile, at most.
    pub p99_le: Option<f64>,
    /// 99.9th percentile, at most.
    pub p99_9_le: Option<f64>,
    /// Largest, at most.
    pub max_le: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE x histogram\n\
        x_bucket{le=\"0.01\"} 1\nx_bucket{le=\"0.1\"} 2\nx_bucket{le=\"+Inf\"} 2\nx_sum 0.1\nx_count 2\n";
    const AFTER: &str = "x_bucket{le=\"0.01\"} 91\nx_bucket{le=\"0.1\"} 101\n\
        x_bucket{le=\"+Inf\"} 102\nother_bucket{le=\"0.01\"} 5\n";

    #[test]
    fn percentiles_of_what_happened_between_two_pages() {
        let before = Buckets::parse(BEFORE, "x");
        assert_eq!(before.0.len(), 3);
        let run = Buckets::parse(AFTER, "x").since(&before);
        assert_eq!(run.0, vec![(0.01, 90), (0.1, 99), (f64::INFINITY, 100)]);
        let s = run.summary().expect("observations");
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_le, Some(10.0));
        assert_eq!(s.p90_le, Some(10.0));
        assert_eq!(s.p99_le, Some(100.0));
        assert_eq!(s.max_le, None);
        assert_eq!(Buckets::parse(AFTER, "missing").summary(), None);
        assert_eq!(before.since(&before).summary(), None);
    }
}
