//! Pattern novelty: is the distribution of a series' recent windows unlike
//! every stretch it has shown before?
//!
//! The forecast-band rules judge one window against its forecast. A series
//! whose windows each stay plausible can still change character: a CPU
//! that starts oscillating, a metric that settles at a level it never held,
//! a noisy series that goes quiet. This detector keeps the last `windows`
//! values, histograms them into `bins` equal bins between the smallest and
//! largest value seen so far, and compares that histogram, by relative
//! entropy (Kullback-Leibler divergence), with the stretches it remembers.
//! When the nearest is further than a chi-square test at `significance`
//! allows (`2 W KL` is asymptotically chi-square with `bins - 1` degrees of
//! freedom), the stretch is novel: it is reported once and remembered, so
//! the same pattern coming back is familiar. The approach is Wang et al.'s
//! relative-entropy test for data-centre metrics ("Statistical techniques
//! for online anomaly detection in data centers", 2011).
//!
//! One change is reported once: while the window slides across it, each
//! new mix of before and after is novel too, so novel stretches within one
//! stretch's length of a reported one are remembered but not reported.
//!
//! The alerting stage feeds it each window's residual (units less the
//! bias-corrected forecast), so the daily shape the forecast knows is not
//! news; the detector itself takes any integer series.
//!
//! Remembered stretches keep their raw values, so they are re-binned when
//! the range grows (a value beyond every earlier one moves the bins); at
//! most `memory` are kept, the least recently matched going first.

use std::collections::VecDeque;

use crate::tails;

/// Smoothing added to every bin's count (an empty bin is not impossible).
const SMOOTH: f64 = 1e-3;

/// A stretch found novel: how far it is from the nearest remembered one
/// (relative entropy over the threshold, so 1 is where novelty begins) and
/// whether its newest quarter is above that stretch's mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Novel {
    /// Divergence from the nearest remembered stretch over the threshold.
    pub score: f64,
    /// The stretch's newest quarter is above the nearest remembered one's mean.
    pub up: bool,
}

/// One remembered stretch.
#[derive(Debug, Clone)]
struct Seen {
    values: Box<[i64]>,
    /// Its histogram at `range` (recomputed when the range moves).
    hist: Vec<f64>,
    range: (i64, i64),
    mean: f64,
    /// The window count at which it was last the nearest.
    used: u64,
}

/// The detector's state for one series.
#[derive(Debug, Clone)]
pub struct Novelty {
    windows: usize,
    memory: usize,
    threshold: f64,
    recent: VecDeque<i64>,
    lo: i64,
    hi: i64,
    seen: Vec<Seen>,
    count: u64,
    hist: Vec<f64>,
    /// The push count of the last stretch reported.
    reported: Option<u64>,
}

/// Chi-square quantile with `k` degrees of freedom at upper tail `alpha`
/// (Wilson-Hilferty; within 0.2% at k = 4, alpha = 0.01).
fn chi2_isf(k: f64, alpha: f64) -> f64 {
    let z = tails::normal_isf_ln(alpha.ln());
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

fn histogram(values: impl Iterator<Item = i64>, lo: i64, hi: i64, out: &mut [f64]) {
    let bins = out.len();
    out.iter_mut().for_each(|b| *b = 0.0);
    let span = (hi - lo).max(1) as f64;
    let mut n = 0.0;
    for v in values {
        let b = ((v - lo) as f64 / span * bins as f64) as usize;
        out[b.min(bins - 1)] += 1.0;
        n += 1.0;
    }
    let total = n + SMOOTH * bins as f64;
    out.iter_mut().for_each(|b| *b = (*b + SMOOTH) / total);
}

fn divergence(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(p, q)| p * (p / q).ln()).sum()
}

impl Novelty {
    /// A detector over stretches of `windows` values in `bins` bins, novel
    /// at chi-square `significance`, remembering at most `memory` stretches.
    pub fn new(windows: usize, bins: usize, significance: f64, memory: usize) -> Self {
        let (windows, bins) = (windows.max(2), bins.max(2));
        Novelty {
            windows,
            memory: memory.max(1),
            threshold: chi2_isf((bins - 1) as f64, significance.clamp(1e-12, 0.5))
                / (2.0 * windows as f64),
            recent: VecDeque::with_capacity(windows + 1),
            lo: i64::MAX,
            hi: i64::MIN,
            seen: Vec::new(),
            count: 0,
            hist: vec![0.0; bins],
            reported: None,
        }
    }

    /// Add the newest value; `Some` when the stretch it completes is novel.
    pub fn push(&mut self, y: i64) -> Option<Novel> {
        self.count += 1;
        self.recent.push_back(y);
        if self.recent.len() > self.windows {
            self.recent.pop_front();
        }
        self.lo = self.lo.min(y);
        self.hi = self.hi.max(y);
        if self.recent.len() < self.windows {
            return None;
        }
        let (lo, hi) = (self.lo, self.hi);
        histogram(self.recent.iter().copied(), lo, hi, &mut self.hist);
        let mut nearest: Option<(usize, f64)> = None;
        for (i, s) in self.seen.iter_mut().enumerate() {
            if s.range != (lo, hi) {
                histogram(s.values.iter().copied(), lo, hi, &mut s.hist);
                s.range = (lo, hi);
            }
            let d = divergence(&self.hist, &s.hist);
            if nearest.is_none_or(|(_, b)| d < b) {
                nearest = Some((i, d));
            }
        }
        match nearest {
            Some((i, d)) if d < self.threshold => {
                self.seen[i].used = self.count;
                None
            }
            _ => {
                let mean = self.recent.iter().sum::<i64>() as f64 / self.windows as f64;
                // Which way it went: its newest quarter against the nearest's mean.
                let q = (self.windows / 4).max(1);
                let newest = self.recent.iter().rev().take(q).sum::<i64>() as f64 / q as f64;
                // The first stretch is the reference, not a novelty; one
                // within a stretch of the last reported is that change's.
                let count = self.count;
                let novel = nearest
                    .filter(|_| {
                        self.reported
                            .is_none_or(|r| count - r >= self.windows as u64)
                    })
                    .map(|(i, d)| Novel {
                        score: d / self.threshold,
                        up: newest > self.seen[i].mean,
                    });
                if novel.is_some() {
                    self.reported = Some(count);
                }
                if self.seen.len() >= self.memory {
                    let oldest = (0..self.seen.len())
                        .min_by_key(|&i| self.seen[i].used)
                        .expect("memory is at least 1");
                    self.seen.swap_remove(oldest);
                }
                self.seen.push(Seen {
                    values: self.recent.iter().copied().collect(),
                    hist: self.hist.clone(),
                    range: (lo, hi),
                    mean,
                    used: self.count,
                });
                novel
            }
        }
    }

    /// Stretches remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_quantile() {
        assert!((chi2_isf(4.0, 0.01) - 13.277).abs() < 0.05);
        assert!((chi2_isf(1.0, 0.05) - 3.841).abs() < 0.1);
    }

    fn noise(i: i64) -> i64 {
        100 + (i * 37 + i * i * 11) % 17 - 8
    }

    #[test]
    fn a_steady_noisy_series_is_novel_only_while_its_range_fills() {
        let mut d = Novelty::new(52, 5, 0.01, 32);
        let hits: Vec<i64> = (0..3000).filter(|&i| d.push(noise(i)).is_some()).collect();
        assert!(hits.iter().all(|&i| i < 200), "{hits:?}");
        assert!(d.remembered() <= 4);
    }

    #[test]
    fn a_new_level_is_novel_once_and_its_return_is_familiar() {
        let mut d = Novelty::new(52, 5, 0.01, 32);
        let level = |i: i64| if (1000..1500).contains(&i) { 160 } else { 100 };
        let hits: Vec<(i64, Novel)> = (0..3000)
            .filter_map(|i| d.push(level(i) + noise(i) - 100).map(|n| (i, n)))
            .collect();
        let after: Vec<&(i64, Novel)> = hits.iter().filter(|(i, _)| *i >= 1000).collect();
        // The move up is novel within the stretch, and so is the first
        // stretch all at the new level; the way back is not (the old level
        // and the mixes on the way are remembered).
        assert!(!after.is_empty() && after[0].0 < 1052, "{hits:?}");
        assert!(after[0].1.up && after[0].1.score > 1.0);
        assert!(after.iter().all(|(i, _)| *i < 1100), "{hits:?}");
        // The same stretches again (the move replayed from well before it)
        // are all familiar.
        let again: Vec<i64> = (2900..4000)
            .filter(|&i| d.push(level(i - 2000) + noise(i - 2000) - 100).is_some())
            .collect();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_series_going_quiet_is_novel_and_down() {
        let mut d = Novelty::new(20, 5, 0.01, 8);
        let wide = |i: i64| 50 + (i * 7919) % 100;
        for i in 0..1000 {
            d.push(wide(i));
        }
        let hits: Vec<(i64, Novel)> = (1000..1100)
            .filter_map(|i| d.push(20).map(|n| (i, n)))
            .collect();
        // Novel within a few windows, and lower than before once the flat
        // stretch is a good part of the window.
        assert!(hits.first().is_some_and(|h| h.0 < 1010), "{hits:?}");
        assert!(hits.iter().any(|h| h.0 < 1020 && !h.1.up), "{hits:?}");
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Novelty::new(10, 5, 0.01, 4);
        for i in 0..5000 {
            d.push((i / 37) % 11 * 100 + i % 3);
        }
        assert!(d.remembered() <= 4);
    }
}
