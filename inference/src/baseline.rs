//! Baseline models: seasonal naive, EWMA, and the two combined (seasonal
//! naive once a season of history exists, EWMA before). All share one way of
//! making intervals: quantiles of the series' own recent one-step residuals
//! around the point forecast, at the levels its calibration asks for
//! ([`SeriesHistory::alpha`]), in the units [`crate::BandScale`] sets
//! (one width at every level, or scaled to each forecast's level), widened
//! by `sqrt(h)` for step `h`; with too few residuals, a Poisson-shaped
//! band.

use crate::{BandScale, Example, Model, Neural, Path, SeriesHistory, TrainStats};

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

    /// Lower and upper residual offsets for one series, in its residuals'
    /// units (see [`SeriesHistory::residuals`]), and how they scale.
    fn offsets(&mut self, h: &SeriesHistory) -> Option<(f64, f64, BandScale)> {
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
            h.band_scale,
        ))
    }

    /// Non-crossing quantiles around one series' point forecasts.
    fn around(&mut self, h: &SeriesHistory, p50s: impl Iterator<Item = f64>) -> Vec<[f64; 3]> {
        let off = self.offsets(h);
        Self::path(off, p50s)
    }

    /// Non-crossing quantiles around point forecasts, given the series'
    /// residual offsets (computed once per series, see [`Band::offsets`]).
    fn path(off: Option<(f64, f64, BandScale)>, p50s: impl Iterator<Item = f64>) -> Vec<[f64; 3]> {
        p50s.enumerate()
            .map(|(step, p50)| {
                let widen = ((step + 1) as f64).sqrt();
                let (lo, hi) = match off {
                    Some((q_lo, q_hi, scale)) => {
                        let unit = widen * scale.at(p50);
                        (q_lo.min(0.0) * unit, q_hi.max(0.0) * unit)
                    }
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

/// Non-crossing quantiles with a Poisson-shaped band around point forecasts
/// (for series without residuals of their own).
pub(crate) fn poisson_band(p50s: impl Iterator<Item = f64>) -> Vec<[f64; 3]> {
    Band::path(None, p50s)
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

/// Least and most a season-ago forecast is scaled by in [`scaled_ratio`].
const SCALED_RANGE: (f64, f64) = (0.5, 2.0);

/// Largest difference in the share of lines on promotion between a window
/// and the same window a season earlier for [`scaled_ratio`] to compare
/// them.
const SCALED_PROMO_DIFF: f32 = 0.05;

/// The factor the scaled seasonal-naive member multiplies seasonal naive
/// by: how today runs against the same time a season earlier, the ratio of
/// the newest `max(3, season / 24)` windows' sum (the last hour of a day of
/// five-minute windows) to the same windows' a season before, plus one each
/// (so a window of zeros is no infinite ratio), within [`SCALED_RANGE`]. A
/// day busier than the day before, or a climb that comes earlier than it
/// did, is carried into the forecast at once, where seasonal naive repeats
/// yesterday and Holt-Winters and EWMA follow a step only as it goes by.
/// Only windows whose share of lines on promotion is about that of their
/// window a season earlier are compared (a promotion that ran yesterday but
/// not today is no quieter day); with none, and until the windows compared
/// exist, 1 (seasonal naive as it is). One factor for the whole horizon.
fn scaled_ratio(h: &SeriesHistory, season: usize) -> f64 {
    let n = h.values.len();
    let k = (season / 24).max(3);
    if n < season + k {
        return 1.0;
    }
    let (mut now, mut then) = (0.0, 0.0);
    for i in n - k..n {
        if (h.promo[i] - h.promo[i - season]).abs() <= SCALED_PROMO_DIFF {
            now += h.values[i].max(0.0);
            then += h.values[i - season].max(0.0);
        }
    }
    ((now + 1.0) / (then + 1.0)).clamp(SCALED_RANGE.0, SCALED_RANGE.1)
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
                    members_far: Vec::new(),
                    example: None,
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
                    members_far: Vec::new(),
                    example: None,
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
                members_far: Vec::new(),
                example: None,
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
                    members_far: Vec::new(),
                    example: None,
                }
            })
            .collect()
    }
}

/// The most members an [`Ensemble`] has (the four baselines and the
/// network).
const MAX_MEMBERS: usize = 5;

/// Online ensemble of seasonal naive, Holt-Winters, EWMA, seasonal naive
/// scaled by today's level against the day before's and (when given) the
/// neural model: per series, each member's quantiles are weighted by
/// `exp(-eta * (loss - best) / best)` of its exponentially weighted pinball
/// loss (`best` the lowest member's), and averaged quantile by quantile (so quantiles never cross).
pub struct Ensemble {
    season: usize,
    band: Band,
    eta: f64,
    neural: Option<Neural>,
}

impl std::fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("season", &self.season)
            .field("neural", &self.neural.is_some())
            .finish()
    }
}

impl Ensemble {
    /// The ensemble of the four baselines, with the given season length in
    /// windows.
    pub fn new(season: usize, min_residuals: usize) -> Self {
        Ensemble {
            season: season.max(1),
            band: Band::new(min_residuals),
            eta: 4.0,
            neural: None,
        }
    }

    /// Add the neural model as a fifth member.
    pub fn with_neural(mut self, neural: Neural) -> Self {
        self.neural = Some(neural);
        self
    }

    fn members(&self) -> usize {
        4 + self.neural.is_some() as usize
    }

    /// Member weights for one series (uniform until members were scored),
    /// in member order: seasonal naive, Holt-Winters, EWMA, scaled seasonal
    /// naive, neural.
    pub fn weights(&self, h: &SeriesHistory) -> Vec<f64> {
        self.weights_for(&h.member_loss)
    }

    /// Members' weights for each step of a horizon: from their one-step
    /// losses at the first step, from their losses at the horizon's far end
    /// ([`SeriesHistory::member_far_loss`]) at the last, and linearly
    /// between (the one-step weights throughout until the far losses exist).
    pub fn step_weights(&self, h: &SeriesHistory) -> StepWeights {
        let far = (h.member_far_loss.len() == self.members())
            .then(|| self.weights_for(&h.member_far_loss));
        StepWeights {
            near: self.weights_for(&h.member_loss),
            far,
        }
    }

    /// Weights from each member's loss (uniform without one per member).
    fn weights_for(&self, losses: &[f64]) -> Vec<f64> {
        let k = self.members();
        let uniform = || vec![1.0 / k as f64; k];
        if losses.len() != k {
            return uniform();
        }
        let mean = losses.iter().sum::<f64>() / k as f64;
        if mean <= 0.0 || !mean.is_finite() {
            return uniform();
        }
        // Losses relative to the best member's (a member twice as bad as
        // the best weighs exp(-eta) of it, however bad the worst one is); a
        // member with no loss at all (a noise-free series) takes it all.
        // The floor under the best is a share of the median member's loss,
        // not the mean's: one far worse member (a network still learning)
        // must not lift the floor so far that a member with a small loss,
        // still far above the best's, looks nearly as good (a noise-free
        // square wave was forecast 11-13% of the way back to the level
        // before each step).
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        // Sorted on the stack: this runs for every series in every batch.
        let mut buf = [0.0; MAX_MEMBERS];
        let sorted = &mut buf[..k];
        sorted.copy_from_slice(losses);
        sorted.sort_by(f64::total_cmp);
        let median = 0.5 * (sorted[(k - 1) / 2] + sorted[k / 2]);
        let scale = best.max(1e-3 * median).max(f64::MIN_POSITIVE);
        let w: Vec<f64> = losses
            .iter()
            .map(|l| (-self.eta * (l - best) / scale).exp())
            .collect();
        let sum: f64 = w.iter().sum();
        w.into_iter().map(|x| x / sum).collect()
    }
}

/// The ensemble members' weights along a horizon (see
/// [`Ensemble::step_weights`]).
#[derive(Debug, Clone)]
pub struct StepWeights {
    /// From the one-step losses.
    pub near: Vec<f64>,
    /// From the far-end losses, once there are some.
    pub far: Option<Vec<f64>>,
}

impl StepWeights {
    /// Member `m`'s weight at step `s` (0-based) of a `horizon`-step path.
    pub fn at(&self, m: usize, s: usize, horizon: usize) -> f64 {
        match &self.far {
            Some(far) if horizon > 1 => {
                let a = s as f64 / (horizon - 1) as f64;
                (1.0 - a) * self.near[m] + a * far[m]
            }
            _ => self.near[m],
        }
    }
}

impl Model for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn needs_holt_winters(&self) -> bool {
        true
    }

    fn version(&self) -> u64 {
        self.neural.as_ref().map_or(0, |n| n.version())
    }

    fn wants_examples(&self) -> bool {
        self.neural.as_ref().is_some_and(|n| n.wants_examples())
    }

    fn learn(&mut self, examples: Vec<Example>) {
        if let Some(n) = self.neural.as_mut() {
            n.learn(examples);
        }
    }

    fn checkpoint(&mut self) -> Result<(), crate::Error> {
        match self.neural.as_mut() {
            Some(n) => Model::checkpoint(n),
            None => Ok(()),
        }
    }

    fn train_stats(&self) -> Option<TrainStats> {
        self.neural.as_ref().map(|n| n.stats())
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<Path> {
        let season = self.season;
        // The network scores every series of the batch in one pass.
        let mut neural: Vec<Option<Path>> = match self.neural.as_mut() {
            Some(n) => n
                .forecast(histories, horizon)
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; histories.len()],
        };
        histories
            .iter()
            .zip(neural.iter_mut())
            .map(|(h, nn)| {
                // One residual band for the four baselines.
                let off = self.band.offsets(h);
                let ratio = scaled_ratio(h, season);
                let mut paths = vec![
                    Band::path(off, (0..horizon).map(|s| seasonal_or_last(h, season, s))),
                    Band::path(off, (0..horizon).map(|s| hw_point(h, season, s))),
                    Band::path(off, (0..horizon).map(|_| h.level)),
                    Band::path(
                        off,
                        (0..horizon).map(|s| seasonal_or_last(h, season, s) * ratio),
                    ),
                ];
                let mut example = None;
                if let Some(p) = nn.take() {
                    paths.push(p.quantiles);
                    example = p.example;
                }
                let w = self.step_weights(h);
                let quantiles = (0..horizon)
                    .map(|s| {
                        let mut q = [0.0; 3];
                        for (m, path) in paths.iter().enumerate() {
                            let wm = w.at(m, s, horizon);
                            for k in 0..3 {
                                q[k] += wm * path[s][k];
                            }
                        }
                        q
                    })
                    .collect();
                let members = if horizon > 0 {
                    paths.iter().map(|p| p[0]).collect()
                } else {
                    Vec::new()
                };
                let members_far = if horizon > 1 {
                    paths.iter().map(|p| p[horizon - 1][1] as f32).collect()
                } else {
                    Vec::new()
                };
                Path {
                    model: "ensemble",
                    quantiles,
                    members,
                    members_far,
                    example,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scaled seasonal-naive member's median `step` windows ahead.
    fn seasonal_scaled(h: &SeriesHistory, season: usize, step: usize) -> f64 {
        seasonal_or_last(h, season, step) * scaled_ratio(h, season)
    }

    /// A history of `values`, oldest first, as the pipeline keeps it.
    fn history(values: &[f64]) -> SeriesHistory {
        let mut inf = crate::Inference::new(crate::Config::default(), 60_000).unwrap();
        for (i, v) in values.iter().enumerate() {
            inf.process(&salescast_stream_core::WindowBatch::from_records(&[
                crate::tests::store_window("s", i as i64 * 60_000, 60_000, *v as i64),
            ]));
        }
        inf.series[&(salescast_stream_core::Level::Store, "s".into())].clone()
    }

    #[test]
    fn the_scaled_member_carries_today_against_yesterday_within_bounds() {
        // Season 4, three windows compared: yesterday 10, 19, 30, 40; the
        // newest three today sold 29, 45, 60 against 19, 30, 40 (plus one
        // each: 135 / 90 = 1.5).
        let h = history(&[10.0, 19.0, 30.0, 40.0, 10.0, 29.0, 45.0, 60.0]);
        assert_eq!(seasonal(&h, 4, 0), 10.0);
        assert!((seasonal_scaled(&h, 4, 0) - 15.0).abs() < 1e-9);
        assert!((seasonal_scaled(&h, 4, 1) - 43.5).abs() < 1e-9);
        // A dead hour today (or yesterday) is no zero (or infinite)
        // forecast: the ratio stays within half and twice.
        let h = history(&[10.0, 19.0, 29.0, 39.0, 10.0, 0.0, 0.0, 0.0]);
        assert_eq!(seasonal_scaled(&h, 4, 0), 5.0);
        let h = history(&[10.0, 0.0, 0.0, 0.0, 10.0, 50.0, 50.0, 50.0]);
        assert_eq!(seasonal_scaled(&h, 4, 0), 20.0);
        // Seasonal naive until the windows compared exist, the last value
        // before a season.
        let h = history(&[10.0, 19.0, 29.0, 39.0, 12.0]);
        assert_eq!(seasonal_scaled(&h, 4, 0), 19.0);
        let h = history(&[10.0, 19.0, 12.0]);
        assert_eq!(seasonal_scaled(&h, 4, 0), 12.0);
    }

    #[test]
    fn quantile_interpolates() {
        let v = [0.0, 10.0];
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.9), 4.6);
    }
}
