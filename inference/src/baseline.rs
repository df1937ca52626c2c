//! Baseline models: seasonal naive, EWMA, and the two combined (seasonal
//! naive once a season of history exists, EWMA before). All share one way of
//! making intervals: quantiles of the series' own recent one-step residuals
//! around the point forecast, at the levels its calibration asks for
//! ([`SeriesHistory::alpha`]), widened by `sqrt(h)` for step `h`; with too few
//! residuals, a Poisson-shaped band.

use crate::{Model, Path, SeriesHistory};

/// Linear-interpolated quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Residual-quantile band shared by the baselines.
#[derive(Debug, Clone)]
struct Band {
    min_residuals: usize,
    scratch: Vec<f64>,
}

impl Band {
    fn new(min_residuals: usize) -> Self {
        Band {
            min_residuals: min_residuals.max(2),
            scratch: Vec::new(),
        }
    }

    /// Lower and upper residual offsets for one series.
    fn offsets(&mut self, h: &SeriesHistory) -> Option<(f64, f64)> {
        if h.residuals.len() < self.min_residuals {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(h.residuals.iter().copied());
        self.scratch.sort_unstable_by(f64::total_cmp);
        let a = h.alpha;
        Some((
            quantile(&self.scratch, a / 2.0),
            quantile(&self.scratch, 1.0 - a / 2.0),
        ))
    }

    /// Non-crossing quantiles around one series' point forecasts.
    fn around(&mut self, h: &SeriesHistory, p50s: impl Iterator<Item = f64>) -> Vec<[f64; 3]> {
        let off = self.offsets(h);
        Self::path(off, p50s)
    }

    /// Non-crossing quantiles around point forecasts, given the series'
    /// residual offsets (computed once per series, see [`Band::offsets`]).
    fn path(off: Option<(f64, f64)>, p50s: impl Iterator<Item = f64>) -> Vec<[f64; 3]> {
        p50s.enumerate()
            .map(|(step, p50)| {
                let widen = ((step + 1) as f64).sqrt();
                let (lo, hi) = match off {
                    Some((q_lo, q_hi)) => (q_lo.min(0.0) * widen, q_hi.max(0.0) * widen),
                    None => {
                        let d = 1.28 * (p50.abs().max(1.0) * (step + 1) as f64).sqrt();
                        (-d, d)
                    }
                };
                let p10 = (p50 + lo).max(0.0).min(p50.max(0.0));
                let p50 = p50.max(p10);
                let p90 = (p50 + hi).max(p50);
                [p10, p50, p90]
            })
            .collect()
    }
}

fn seasonal(h: &SeriesHistory, season: usize, step: usize) -> f64 {
    let n = h.values.len();
    h.values[n - season + step % season]
}

/// Seasonal naive, or the last value until a season of history exists.
fn seasonal_or_last(h: &SeriesHistory, season: usize, step: usize) -> f64 {
    if h.values.len() >= season {
        seasonal(h, season, step)
    } else {
        h.values.back().copied().unwrap_or(0.0)
    }
}

/// Seasonal naive when a season of history exists, an EWMA level before.
#[derive(Debug, Clone)]
pub struct Baseline {
    season: usize,
    band: Band,
}

impl Baseline {
    /// A baseline with the given season length in windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        Baseline {
            season: season.max(1),
            band: Band::new(min_residuals),
        }
    }
}

impl Model for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        histories
            .iter()
            .map(|h| {
                let use_season = h.values.len() >= self.season;
                let season = self.season;
                let quantiles = self.band.around(
                    h,
                    (0..horizon).map(|s| {
                        if use_season {
                            seasonal(h, season, s)
                        } else {
                            h.level
                        }
                    }),
                );
                Path {
                    model: if use_season { "seasonal_naive" } else { "ewma" },
                    quantiles,
                    members: Vec::new(),
                }
            })
            .collect()
    }
}

/// Pure seasonal naive (the last value until a season of history exists):
/// the reference every other model is measured against.
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    season: usize,
    band: Band,
}

impl SeasonalNaive {
    /// Seasonal naive with the given season length in windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        SeasonalNaive {
            season: season.max(1),
            band: Band::new(min_residuals),
        }
    }
}

impl Model for SeasonalNaive {
    fn name(&self) -> &'static str {
        "seasonal_naive"
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        histories
            .iter()
            .map(|h| {
                let season = self.season;
                let quantiles = self
                    .band
                    .around(h, (0..horizon).map(|s| seasonal_or_last(h, season, s)));
                Path {
                    model: "seasonal_naive",
                    quantiles,
                    members: Vec::new(),
                }
            })
            .collect()
    }
}

/// The EWMA level, flat over the horizon.
#[derive(Debug, Clone)]
pub struct Ewma {
    band: Band,
}

impl Ewma {
    /// An EWMA model.
    pub fn new(min_residuals: usize) -> Self {
        Ewma {
            band: Band::new(min_residuals),
        }
    }
}

impl Model for Ewma {
    fn name(&self) -> &'static str {
        "ewma"
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        histories
            .iter()
            .map(|h| Path {
                model: "ewma",
                quantiles: self.band.around(h, (0..horizon).map(|_| h.level)),
                members: Vec::new(),
            })
            .collect()
    }
}

/// Additive Holt-Winters with a damped trend (EWMA until a season of history).
#[derive(Debug, Clone)]
pub struct HoltWintersModel {
    season: usize,
    band: Band,
}

impl HoltWintersModel {
    /// Holt-Winters with the given season length in windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        HoltWintersModel {
            season: season.max(1),
            band: Band::new(min_residuals),
        }
    }
}

fn hw_point(h: &SeriesHistory, season: usize, step: usize) -> f64 {
    match &h.hw {
        Some(hw) if h.values.len() >= season => hw.forecast(step),
        _ => h.level,
    }
}

impl Model for HoltWintersModel {
    fn name(&self) -> &'static str {
        "holt_winters"
    }

    fn needs_holt_winters(&self) -> bool {
        true
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        histories
            .iter()
            .map(|h| {
                let season = self.season;
                Path {
                    model: "holt_winters",
                    quantiles: self
                        .band
                        .around(h, (0..horizon).map(|s| hw_point(h, season, s))),
                    members: Vec::new(),
                }
            })
            .collect()
    }
}

/// Online ensemble of seasonal naive, Holt-Winters and EWMA: per series,
/// each member's quantiles are weighted by `exp(-eta * loss / mean loss)` of
/// its exponentially weighted pinball loss, and averaged quantile by quantile
/// (so quantiles never cross).
#[derive(Debug, Clone)]
pub struct Ensemble {
    season: usize,
    band: Band,
    eta: f64,
}

impl Ensemble {
    /// The ensemble, with the given season length in windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        Ensemble {
            season: season.max(1),
            band: Band::new(min_residuals),
            eta: 4.0,
        }
    }

    /// Member weights for one series (uniform until members were scored).
    pub fn weights(&self, h: &SeriesHistory) -> [f64; 3] {
        if h.member_loss.len() != 3 {
            return [1.0 / 3.0; 3];
        }
        let mean = h.member_loss.iter().sum::<f64>() / 3.0;
        if mean <= 0.0 || !mean.is_finite() {
            return [1.0 / 3.0; 3];
        }
        let w: Vec<f64> = h
            .member_loss
            .iter()
            .map(|l| (-self.eta * l / mean).exp())
            .collect();
        let sum: f64 = w.iter().sum();
        [w[0] / sum, w[1] / sum, w[2] / sum]
    }
}

impl Model for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn needs_holt_winters(&self) -> bool {
        true
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        let season = self.season;
        histories
            .iter()
            .map(|h| {
                // One residual band for all three members.
                let off = self.band.offsets(h);
                let sn = Band::path(off, (0..horizon).map(|s| seasonal_or_last(h, season, s)));
                let hw = Band::path(off, (0..horizon).map(|s| hw_point(h, season, s)));
                let ew = Band::path(off, (0..horizon).map(|_| h.level));
                let w = self.weights(h);
                let quantiles = (0..horizon)
                    .map(|s| {
                        let mut q = [0.0; 3];
                        for k in 0..3 {
                            q[k] = w[0] * sn[s][k] + w[1] * hw[s][k] + w[2] * ew[s][k];
                        }
                        q
                    })
                    .collect();
                let members = if horizon > 0 {
                    vec![sn[0], hw[0], ew[0]]
                } else {
                    Vec::new()
                };
                Path {
                    model: "ensemble",
                    quantiles,
                    members,
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
