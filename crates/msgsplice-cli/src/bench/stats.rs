//! The arithmetic of a result: median and spread over runs, and the ratio
//! against a baseline.
//!
//! Every row of every table is a [`Summary`] of its runs' samples. The
//! median resists one disturbed run (the machine is shared); the spread is
//! shown as min..max, and the quartiles go into the JSON for those who want
//! the interquartile range.

use serde::{Deserialize, Serialize};

/// The samples of one row and their order statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One value per run, in the order measured.
    pub samples: Vec<f64>,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// First quartile (linear interpolation between order statistics).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
}

impl Summary {
    /// Summarises `samples`, or `None` if there are none (or any is NaN,
    /// which would make the order meaningless).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            samples: samples.to_vec(),
            median: quantile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
        })
    }

    /// Half the min..max range as a fraction of the median (0.05 = ±5 %).
    pub fn relative_spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / 2.0 / self.median.abs()
        }
    }
}

/// The `q` quantile (0..=1) of sorted, non-empty data, interpolating
/// linearly between neighbours (the common "type 7" definition).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// How much better `row` is than `baseline`, as a factor where above 1.0
/// means better: `row / baseline` when higher values are better (GB/s),
/// `baseline / row` when lower values are better (ns per operation).
/// `None` when the division has no meaning (a zero or non-finite input).
pub fn ratio(row: f64, baseline: f64, higher_is_better: bool) -> Option<f64> {
    let (num, den) = if higher_is_better {
        (row, baseline)
    } else {
        (baseline, row)
    };
    let r = num / den;
    (den != 0.0 && r.is_finite()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(Summary::of(&[5.0, 1.0, 3.0]).unwrap().median, 3.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of(&[7.0]).unwrap().median, 7.0);
    }

    #[test]
    fn spread_and_quartiles() {
        let s = Summary::of(&[10.0, 50.0, 20.0, 40.0, 30.0]).unwrap();
        assert_eq!((s.min, s.max), (10.0, 50.0));
        assert_eq!((s.q1, s.median, s.q3), (20.0, 30.0, 40.0));
        assert_eq!(s.samples, vec![10.0, 50.0, 20.0, 40.0, 30.0]);
        assert!((s.relative_spread() - 20.0 / 30.0).abs() < 1e-12);
        // Interpolated quartiles for four samples: positions 0.75 and 2.25.
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((s.q1, s.q3), (1.75, 3.25));
    }

    #[test]
    fn empty_or_nan_has_no_summary() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn ratio_direction() {
        // Throughput: twice the GB/s is 2x.
        assert_eq!(ratio(4.0, 2.0, true), Some(2.0));
        // Time: half the ns per op is also 2x.
        assert_eq!(ratio(5.0, 10.0, false), Some(2.0));
        assert_eq!(ratio(10.0, 10.0, false), Some(1.0));
        assert_eq!(ratio(1.0, 0.0, true), None);
        assert_eq!(ratio(0.0, 1.0, false), None);
    }
}
