//! The baseline model: seasonal naive with an EWMA fallback, and intervals
//! from each series' own residual quantiles.

use crate::{Model, Path, SeriesHistory};

/// Seasonal naive once a full season of history exists (the value one season
/// before the target window), an EWMA level before that. The p10/p90 band is
/// the 10th/90th percentile of the series' recent one-step residuals around
/// the point forecast, widened by `sqrt(h)` for step `h`; with too few
/// residuals it is a Poisson-shaped band (`p50 +- 1.28 sqrt(max(p50, 1) h)`).
#[derive(Debug, Clone)]
pub struct Baseline {
    season: usize,
    min_residuals: usize,
    scratch: Vec<f64>,
}

impl Baseline {
    /// A baseline with the given season length in windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        Baseline {
            season: season.max(1),
            min_residuals: min_residuals.max(2),
            scratch: Vec::new(),
        }
    }
}

/// Linear-interpolated quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Model for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        histories
            .iter()
            .map(|h| {
                let n = h.values.len();
                let seasonal = n >= self.season;
                let band = if h.residuals.len() >= self.min_residuals {
                    self.scratch.clear();
                    self.scratch.extend(h.residuals.iter().copied());
                    self.scratch.sort_unstable_by(f64::total_cmp);
                    Some((quantile(&self.scratch, 0.1), quantile(&self.scratch, 0.9)))
                } else {
                    None
                };
                let quantiles = (0..horizon)
                    .map(|step| {
                        let p50 = if seasonal {
                            h.values[n - self.season + step % self.season]
                        } else {
                            h.level
                        };
                        let widen = ((step + 1) as f64).sqrt();
                        let (lo, hi) = match band {
                            Some((q10, q90)) => (q10.min(0.0) * widen, q90.max(0.0) * widen),
                            None => {
                                let d = 1.28 * (p50.max(1.0) * (step + 1) as f64).sqrt();
                                (-d, d)
                            }
                        };
                        let p10 = (p50 + lo).max(0.0).min(p50);
                        let p90 = (p50 + hi).max(p50);
                        [p10, p50, p90]
                    })
                    .collect();
                Path {
                    model: if seasonal { "seasonal_naive" } else { "ewma" },
                    quantiles,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        let v = [0.0, 10.0];
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.9), 4.6);
    }
}
