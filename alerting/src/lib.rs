//! # salescast-alerting
//!
//! Watches every closed window against what its series' previous forecast
//! expected, and raises an [`Alert`] when the actual falls well outside the
//! p10-p90 band: a `spike` above it, a `drop` below it, or `drop_to_zero` when
//! a series that normally sells sold nothing. A cooldown per series and kind
//! keeps one incident from raising an alert every window; an alert's id is
//! stable (series, kind, window start), so every delivery is idempotent.
//! The JSON contract is in `docs/alerts.md`.
#![warn(missing_docs)]

use std::sync::Arc;

use rustc_hash::FxHashMap;
use salescast_inference::Forecast;
use salescast_stream_core::Level;
use serde::{Deserialize, Serialize};

/// Configuration of alerting (`[alerting]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// How many band widths outside the p10-p90 band an actual must fall.
    pub band_margin: f64,
    /// Smallest absolute difference from the band, in units, worth an alert
    /// (keeps tiny series quiet).
    pub min_units_outside: f64,
    /// A `drop_to_zero` needs the expected median to be at least this.
    pub min_expected_for_zero: f64,
    /// Windows after an alert during which the same series and kind stay quiet.
    pub cooldown_windows: i64,
    /// Lowest level alerted on (`sku_store` alerts on everything).
    pub min_level: Level,
    /// Windows of history a series needs before it can alert (young series
    /// have unreliable bands).
    pub min_history_windows: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            band_margin: 0.5,
            min_units_outside: 3.0,
            min_expected_for_zero: 5.0,
            cooldown_windows: 5,
            min_level: Level::SkuStore,
            min_history_windows: 30,
        }
    }
}

/// Errors of the alerting stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration. Not retryable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Actual well above the band.
    Spike,
    /// Actual well below the band.
    Drop,
    /// Nothing sold where the series normally sells.
    DropToZero,
}

impl AlertKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Spike => "spike",
            AlertKind::Drop => "drop",
            AlertKind::DropToZero => "drop_to_zero",
        }
    }
}

/// Severity, from how far outside the band the actual fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Up to two band widths outside.
    Low,
    /// Two to five band widths outside.
    Medium,
    /// More than five band widths outside, or a drop to zero.
    High,
}

/// An anomaly on one series in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: `<level>:<key>:<kind>:<window_start_ms>`.
    pub id: String,
    /// Hierarchy level.
    pub level: Level,
    /// Series key.
    pub key: Arc<str>,
    /// Kind of anomaly.
    pub kind: AlertKind,
    /// Severity.
    pub severity: Severity,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Window end, epoch ms.
    pub window_end_ms: i64,
    /// Units observed.
    pub observed: f64,
    /// Units expected (p50).
    pub expected: f64,
    /// Expected band `[p10, p90]`.
    pub band: [f64; 2],
    /// Distance outside the band in band widths.
    pub score: f64,
    /// Model that made the expectation.
    pub model: String,
    /// Its version.
    pub model_version: u64,
    /// One line for humans.
    pub explanation: String,
}

/// Format epoch ms as `YYYY-MM-DD HH:MM` (UTC).
pub fn fmt_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60
    )
}

/// The alerting stage.
#[derive(Debug)]
pub struct Alerting {
    cfg: Config,
    last: FxHashMap<(Level, Arc<str>, AlertKind), i64>,
    newest: i64,
    pruned_at: i64,
}

impl Alerting {
    /// Build the stage.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        if cfg.band_margin < 0.0 || cfg.cooldown_windows < 0 {
            return Err(Error::Config(
                "alerting.band-margin and cooldown-windows must be >= 0".into(),
            ));
        }
        Ok(Alerting {
            cfg,
            last: FxHashMap::default(),
            newest: i64::MIN,
            pruned_at: i64::MIN / 2,
        })
    }

    /// Score a batch of forecasts (first emissions only; revisions are not
    /// re-scored yet) and return the alerts raised.
    pub fn process(&mut self, forecasts: &[Forecast]) -> Vec<Alert> {
        let mut out = Vec::new();
        // Cooldown entries only matter for `cooldown_windows`: prune the
        // expired ones now and then, so the map stays bounded.
        if let Some(f) = forecasts.iter().max_by_key(|f| f.window_start_ms) {
            self.newest = self.newest.max(f.window_start_ms);
            let span = (f.window_end_ms - f.window_start_ms) * self.cfg.cooldown_windows.max(1);
            if self.newest - self.pruned_at >= span {
                self.pruned_at = self.newest;
                let cutoff = self.newest - span;
                self.last.retain(|_, at| *at >= cutoff);
            }
        }
        for f in forecasts {
            if f.revision > 0
                || f.level < self.cfg.min_level
                || f.history_windows < self.cfg.min_history_windows
            {
                continue;
            }
            let Some(e) = f.expected else { continue };
            let y = f.actual.units as f64;
            let width = (e.p90 - e.p10).max(1.0);
            let margin = self.cfg.band_margin * width;
            let (kind, dist) = if y == 0.0 && e.p50 >= self.cfg.min_expected_for_zero && e.p10 > 0.0
            {
                (AlertKind::DropToZero, e.p10)
            } else if y > e.p90 + margin && y - e.p90 >= self.cfg.min_units_outside {
                (AlertKind::Spike, y - e.p90)
            } else if y < e.p10 - margin && e.p10 - y >= self.cfg.min_units_outside {
                (AlertKind::Drop, e.p10 - y)
            } else {
                continue;
            };
            let window = f.window_end_ms - f.window_start_ms;
            let k = (f.level, f.key.clone(), kind);
            if let Some(prev) = self.last.get(&k) {
                if f.window_start_ms - prev <= self.cfg.cooldown_windows * window {
                    continue;
                }
            }
            self.last.insert(k, f.window_start_ms);
            let score = dist / width;
            let severity = match (kind, score) {
                (AlertKind::DropToZero, _) => Severity::High,
                (_, s) if s > 5.0 => Severity::High,
                (_, s) if s > 2.0 => Severity::Medium,
                _ => Severity::Low,
            };
            let explanation = format!(
                "{} {} units {} in {}-{} UTC, expected {} ({}-{})",
                f.level,
                f.key,
                y,
                fmt_utc(f.window_start_ms),
                &fmt_utc(f.window_end_ms)[11..],
                e.p50.round(),
                e.p10.round(),
                e.p90.round()
            );
            out.push(Alert {
                id: format!(
                    "{}:{}:{}:{}",
                    f.level,
                    f.key,
                    kind.as_str(),
                    f.window_start_ms
                ),
                level: f.level,
                key: f.key.clone(),
                kind,
                severity,
                window_start_ms: f.window_start_ms,
                window_end_ms: f.window_end_ms,
                observed: y,
                expected: e.p50,
                band: [e.p10, e.p90],
                score: (score * 1000.0).round() / 1000.0,
                model: f.model.clone(),
                model_version: f.model_version,
                explanation,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salescast_inference::{Actual, HorizonPoint};

    fn fc(start: i64, units: i64, p10: f64, p50: f64, p90: f64) -> Forecast {
        Forecast {
            id: String::new(),
            level: Level::Store,
            key: "web-uk".into(),
            window_start_ms: start,
            window_end_ms: start + 60_000,
            revision: 0,
            actual: Actual {
                units,
                returns: 0,
                lines: units,
                revenue: 0.0,
                avg_price: None,
                promo_share: 0.0,
            },
            history_windows: 100,
            expected: Some(HorizonPoint {
                start_ms: start,
                end_ms: start + 60_000,
                p10,
                p50,
                p90,
            }),
            model: "ewma".into(),
            model_version: 0,
            horizon: vec![],
        }
    }

    #[test]
    fn spike_drop_zero_and_quiet() {
        let mut a = Alerting::new(Config::default()).unwrap();
        assert!(a.process(&[fc(0, 42, 31.0, 42.0, 55.0)]).is_empty());
        let s = a.process(&[fc(60_000, 200, 31.0, 42.0, 55.0)]);
        assert_eq!(s[0].kind, AlertKind::Spike);
        assert_eq!(s[0].id, "store:web-uk:spike:60000");
        let z = a.process(&[fc(120_000, 0, 31.0, 42.0, 55.0)]);
        assert_eq!(z[0].kind, AlertKind::DropToZero);
        assert_eq!(z[0].severity, Severity::High);
        assert_eq!(
            z[0].explanation,
            "store web-uk units 0 in 1970-01-01 00:02-00:03 UTC, expected 42 (31-55)"
        );
        let d = a.process(&[fc(180_000, 5, 31.0, 42.0, 55.0)]);
        assert_eq!(d[0].kind, AlertKind::Drop);
    }

    #[test]
    fn cooldown_suppresses_repeats() {
        let mut a = Alerting::new(Config::default()).unwrap();
        let mut n = 0;
        for i in 0..10 {
            n += a.process(&[fc(i * 60_000, 200, 31.0, 42.0, 55.0)]).len();
        }
        assert_eq!(n, 2, "alerts at windows 0 and 6 only");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(fmt_utc(1_795_894_920_123), "2026-11-28 19:42");
        assert_eq!(fmt_utc(951_782_400_000), "2000-02-29 00:00");
    }
}
