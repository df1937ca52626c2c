//! Online forecast scoring: every forecast is recorded when it is made and
//! scored when its actual arrives, so nothing peeks at the future.
//!
//! Metrics, per horizon step and overall:
//! - MASE: mean absolute error scaled by the series' mean absolute seasonal
//!   difference (its in-sample seasonal-naive error), averaged over points;
//! - sMAPE: `200 |y - f| / (|y| + |f|)`, in percent (points where both are 0
//!   are skipped);
//! - pinball: mean quantile loss over p10, p50 and p90, scaled like MASE;
//! - coverage: share of actuals inside `[p10, p90]`.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use salescast_stream_core::Level;
use serde::Serialize;

use crate::Forecast;

/// Pinball (quantile) loss of predicting `f` for quantile `q` when `y` happened.
pub fn pinball(q: f64, y: f64, f: f64) -> f64 {
    let d = y - f;
    if d >= 0.0 {
        q * d
    } else {
        (q - 1.0) * d
    }
}

type SeriesId = (Level, Arc<str>);
/// Forecasts awaiting their actual: (step ahead, p10/p50/p90).
type Predictions = Vec<(usize, [f64; 3])>;

#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    n: u64,
    abs_scaled: f64,
    smape: f64,
    smape_n: u64,
    pinball_scaled: f64,
    covered: u64,
}

impl Acc {
    fn add(&mut self, y: f64, q: [f64; 3], scale: f64) {
        self.n += 1;
        self.abs_scaled += (y - q[1]).abs() / scale;
        let denom = y.abs() + q[1].abs();
        if denom > 0.0 {
            self.smape += 200.0 * (y - q[1]).abs() / denom;
            self.smape_n += 1;
        }
        self.pinball_scaled +=
            (pinball(0.1, y, q[0]) + pinball(0.5, y, q[1]) + pinball(0.9, y, q[2])) / 3.0 / scale;
        self.covered += (y >= q[0] && y <= q[2]) as u64;
    }
}

/// Scores of one model on one dataset.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Scores {
    /// Points scored (all steps).
    pub points: u64,
    /// MASE over the whole horizon.
    pub mase: f64,
    /// MASE of the one-step forecasts.
    pub mase_1: f64,
    /// sMAPE over the whole horizon, percent.
    pub smape: f64,
    /// sMAPE of the one-step forecasts, percent.
    pub smape_1: f64,
    /// Mean scaled pinball loss over the whole horizon.
    pub pinball: f64,
    /// Share of actuals inside the p10-p90 band, whole horizon.
    pub coverage: f64,
    /// Share of actuals inside the one-step p10-p90 band.
    pub coverage_1: f64,
    /// The same, over the one-step forecasts of a series' quiet windows:
    /// median forecast under half the series' mean (the night of a daily
    /// cycle). Calibrated bands cover about as often here as at the peak.
    pub coverage_1_quiet: f64,
    /// The same, over its busy windows: median forecast above the series'
    /// mean.
    pub coverage_1_busy: f64,
}

/// Records forecasts and scores them against actuals as they arrive.
#[derive(Debug)]
pub struct Scorer {
    season: usize,
    pending: FxHashMap<(SeriesId, i64), Predictions>,
    /// Per series: (actual, target start, step, quantiles) awaiting the scale.
    scored: FxHashMap<SeriesId, Vec<(f64, usize, [f64; 3])>>,
    history: FxHashMap<SeriesId, Vec<f64>>,
}

impl Scorer {
    /// A scorer whose MASE scale uses seasonal differences of `season` windows.
    pub fn new(season: usize) -> Self {
        Scorer {
            season: season.max(1),
            pending: FxHashMap::default(),
            scored: FxHashMap::default(),
            history: FxHashMap::default(),
        }
    }

    /// Feed the forecasts of one batch: first score what they reveal (their
    /// actuals), then record their horizons for later.
    pub fn observe(&mut self, forecasts: &[Forecast]) {
        for f in forecasts {
            if f.revision > 0 {
                continue;
            }
            let id: SeriesId = (f.level, f.key.clone());
            let y = f.actual.units as f64;
            self.history.entry(id.clone()).or_default().push(y);
            if let Some(preds) = self.pending.remove(&(id.clone(), f.window_start_ms)) {
                let s = self.scored.entry(id.clone()).or_default();
                for (step, q) in preds {
                    s.push((y, step, q));
                }
            }
            for (step, p) in f.horizon.iter().enumerate() {
                self.pending
                    .entry((id.clone(), p.start_ms))
                    .or_default()
                    .push((step, [p.p10, p.p50, p.p90]));
            }
        }
    }

    /// The scores so far.
    pub fn scores(&self) -> Scores {
        let (mut all, mut one) = (Acc::default(), Acc::default());
        let (mut quiet, mut busy) = (Acc::default(), Acc::default());
        for (id, points) in &self.scored {
            let h = &self.history[id];
            let mean = h.iter().sum::<f64>() / h.len().max(1) as f64;
            let m = self.season;
            let diffs: Vec<f64> = (m..h.len()).map(|i| (h[i] - h[i - m]).abs()).collect();
            let mut scale = diffs.iter().sum::<f64>() / diffs.len().max(1) as f64;
            if scale.is_nan() || scale <= 0.0 {
                // Too short or constant: fall back to one-step differences, then 1.
                let d1: Vec<f64> = (1..h.len()).map(|i| (h[i] - h[i - 1]).abs()).collect();
                scale = d1.iter().sum::<f64>() / d1.len().max(1) as f64;
                if scale.is_nan() || scale <= 0.0 {
                    scale = 1.0;
                }
            }
            for (y, step, q) in points {
                all.add(*y, *q, scale);
                if *step == 0 {
                    one.add(*y, *q, scale);
                    if q[1] < 0.5 * mean {
                        quiet.add(*y, *q, scale);
                    } else if q[1] > mean {
                        busy.add(*y, *q, scale);
                    }
                }
            }
        }
        let div = |a: f64, n: u64| if n == 0 { f64::NAN } else { a / n as f64 };
        Scores {
            points: all.n,
            mase: div(all.abs_scaled, all.n),
            mase_1: div(one.abs_scaled, one.n),
            smape: div(all.smape, all.smape_n),
            smape_1: div(one.smape, one.smape_n),
            pinball: div(all.pinball_scaled, all.n),
            coverage: div(all.covered as f64, all.n),
            coverage_1: div(one.covered as f64, one.n),
            coverage_1_quiet: div(quiet.covered as f64, quiet.n),
            coverage_1_busy: div(busy.covered as f64, busy.n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinball_loss_and_its_slope() {
        // Under-forecast costs q per unit, over-forecast (1 - q).
        assert_eq!(pinball(0.9, 10.0, 8.0), 0.9 * 2.0);
        assert!((pinball(0.9, 8.0, 10.0) - 0.1 * 2.0).abs() < 1e-12);
        assert_eq!(pinball(0.5, 3.0, 3.0), 0.0);
        // Subgradient in f: -q below the actual, 1 - q above it.
        let g = |q: f64, y: f64, f: f64| (pinball(q, y, f + 1e-6) - pinball(q, y, f)) / 1e-6;
        assert!((g(0.1, 5.0, 4.0) + 0.1).abs() < 1e-6);
        assert!((g(0.1, 5.0, 6.0) - 0.9).abs() < 1e-6);
    }
}

#[cfg(test)]
mod calibration_tests {
    use super::*;
    use crate::{Config, Ewma, Inference};
    use salescast_stream_core::{WindowAgg, WindowBatch, WindowRecord};

    /// One-step coverage of the p10-p90 band on a stream of known
    /// distribution, with and without the conformal correction.
    fn coverage(rate: f64, noise: impl Fn(u64) -> f64) -> f64 {
        let cfg = Config {
            calibration_rate: rate,
            min_residuals: 10,
            residual_window: 60,
            ..Config::default()
        };
        let mut inf = Inference::new(cfg, 60_000)
            .unwrap()
            .with_model(Box::new(Ewma::new(10)));
        let mut early = Scorer::new(1);
        let mut late = Scorer::new(1);
        for i in 0..3000u64 {
            let units = (100.0 + noise(i)).round().max(0.0) as i64;
            let r = WindowRecord {
                level: Level::Total,
                key: "total".into(),
                start_ms: i as i64 * 60_000,
                end_ms: (i as i64 + 1) * 60_000,
                revision: 0,
                parent: None,
                agg: WindowAgg {
                    units,
                    lines: 1,
                    ..WindowAgg::default()
                },
            };
            let f = inf.process(&WindowBatch::from_records(&[r]));
            if i < 1000 {
                early.observe(&f)
            } else {
                late.observe(&f)
            }
        }
        late.scores().coverage_1
    }

    /// A deterministic heavy-tailed noise (a mix of a narrow and a wide spread).
    fn noise(i: u64) -> f64 {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        if i % 7 == 0 {
            60.0 * u
        } else {
            10.0 * u
        }
    }

    #[test]
    fn conformal_correction_drives_coverage_to_target() {
        let with = coverage(0.02, noise);
        assert!((0.76..=0.84).contains(&with), "calibrated coverage {with}");
    }
}
