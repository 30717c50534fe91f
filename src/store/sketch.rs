//! Processing times as a mergeable histogram with logarithmic buckets (the DDSketch idea): bucket
//! `i` holds the values in `(γ^(i-1), γ^i]`, and is read back as `2γ^i / (γ + 1)`, which is within
//! [`RELATIVE_ERROR`] of every value in it. Merging two histograms adds their counts, so per-minute
//! rollups add up to any window, and a percentile read from the sum is off by at most that error.

use std::collections::BTreeMap;

/// γ: each bucket's upper bound is this many times its lower bound.
pub const GAMMA: f64 = 1.02;
/// The largest relative error of a value read back from its bucket: (γ − 1) / (γ + 1) < 1 %.
pub const RELATIVE_ERROR: f64 = (GAMMA - 1.0) / (GAMMA + 1.0);
const _: () = assert!(RELATIVE_ERROR < 0.01);

/// The bucket of zero and negative values, read back as 0.
pub const ZERO_BUCKET: i16 = i16::MIN;

/// The bucket of `value`, as the store's SQL computes it (see [`bucket_sql`]).
pub fn bucket_of(value: f64) -> i16 {
    if value.is_nan() || value <= 0.0 {
        return ZERO_BUCKET;
    }
    (value.ln() / GAMMA.ln()).ceil().clamp(-32_767.0, 32_767.0) as i16
}

/// The value bucket `b` stands for.
pub fn value_of(bucket: i16) -> f64 {
    if bucket == ZERO_BUCKET {
        return 0.0;
    }
    2.0 * GAMMA.powi(i32::from(bucket)) / (GAMMA + 1.0)
}

/// [`bucket_of`] in ClickHouse SQL, over the nullable column `column` (rows with NULL get none).
pub fn bucket_sql(column: &str) -> String {
    format!(
        "if(assumeNotNull({column}) <= 0, toInt16(-32768), toInt16(greatest(-32767, least(32767, ceil(log(assumeNotNull({column})) / log({GAMMA:?}))))))"
    )
}

/// Counts per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram(BTreeMap<i16, u64>);

impl Histogram {
    pub fn add(&mut self, bucket: i16, count: u64) {
        *self.0.entry(bucket).or_insert(0) += count;
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The nearest-rank percentile `p`, within [`RELATIVE_ERROR`] of the exact one.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = super::metrics::nearest_rank(usize::try_from(n).ok()?, p) as u64;
        let mut seen = 0;
        for (bucket, count) in &self.0 {
            seen += count;
            if seen >= rank {
                return Some(value_of(*bucket));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_within_one_percent() {
        let mut v = 1e-6;
        while v < 1e6 {
            let back = value_of(bucket_of(v));
            assert!(
                ((back - v) / v).abs() <= RELATIVE_ERROR + 1e-12,
                "{v} → {back}"
            );
            v *= 1.0037;
        }
        assert_eq!(value_of(bucket_of(0.0)), 0.0);
        assert_eq!(value_of(bucket_of(-3.0)), 0.0);
    }

    #[test]
    fn percentiles_of_merged_histograms_are_within_the_bound_of_the_exact_ones() {
        let values: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 0.013).collect();
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.add(bucket_of(*v), 1);
        }
        let mut merged = a.clone();
        for (bucket, count) in &b.0 {
            merged.add(*bucket, *count);
        }
        for p in [0.5, 0.95, 0.99] {
            let exact = super::super::metrics::percentile(&values, p).unwrap();
            let got = merged.percentile(p).unwrap();
            assert!(
                ((got - exact) / exact).abs() <= RELATIVE_ERROR + 1e-12,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(Histogram::default().percentile(0.5), None);
    }
}
