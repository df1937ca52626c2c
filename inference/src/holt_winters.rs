//! Additive Holt-Winters with a damped trend, updated one window at a time.

/// Smoothing of the level.
const ALPHA: f64 = 0.2;
/// Smoothing of the trend.
const BETA: f64 = 0.02;
/// Smoothing of the seasonal components.
const GAMMA: f64 = 0.15;
/// Trend damping per step.
const PHI: f64 = 0.95;

/// Level, damped trend and `season` additive seasonal components of one
/// series. O(1) per window.
#[derive(Debug, Clone, PartialEq)]
pub struct HoltWinters {
    level: f64,
    trend: f64,
    season: Vec<f32>,
    /// Index of the next window in the seasonal cycle.
    t: usize,
}

impl HoltWinters {
    /// Start from a first value.
    pub fn new(season: usize, first: f64) -> Self {
        HoltWinters {
            level: first,
            trend: 0.0,
            season: vec![0.0; season.max(1)],
            t: 0,
        }
    }

    /// Fold in the next window's value.
    pub fn update(&mut self, y: f64) {
        let m = self.season.len();
        let i = self.t % m;
        let s = self.season[i] as f64;
        let prev = self.level;
        self.level = ALPHA * (y - s) + (1.0 - ALPHA) * (prev + PHI * self.trend);
        self.trend = BETA * (self.level - prev) + (1.0 - BETA) * PHI * self.trend;
        self.season[i] = (GAMMA * (y - self.level) + (1.0 - GAMMA) * s) as f32;
        self.t += 1;
    }

    /// Point forecast `step` windows after the last one folded in (0 = next).
    pub fn forecast(&self, step: usize) -> f64 {
        let m = self.season.len();
        let mut damp = 0.0;
        let mut f = 1.0;
        for _ in 0..=step {
            f *= PHI;
            damp += f;
        }
        self.level + damp * self.trend + self.season[(self.t + step) % m] as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_seasonal_pattern() {
        let pattern = [10.0, 30.0, 20.0, 40.0];
        let mut hw = HoltWinters::new(4, 10.0);
        for i in 0..400 {
            hw.update(100.0 + pattern[i % 4]);
        }
        for step in 0..4 {
            let want = 100.0 + pattern[step % 4];
            assert!(
                (hw.forecast(step) - want).abs() < 1.0,
                "step {step}: {}",
                hw.forecast(step)
            );
        }
    }
}
