//! Per-series detector state: recent residuals, the change detector, the
//! usual promotion share, tail and zero rates, and the scores built on them.

use std::collections::VecDeque;

use salescast_inference::{Forecast, HorizonPoint};

use crate::excursion::{Cover, Excursion, OutsideRun};
use crate::novelty::Novelty;
use crate::trend::TrendState;
use crate::weekly::WeeklyCalls;
use crate::{tails, Alert, AlertKind, Config, Direction, Verdict};

/// Weight of the newest actual in [`SeriesState::mean_y`] (about 20 windows).
pub(crate) const MEAN_ALPHA: f64 = 0.05;

/// Weight of the newest window in [`SeriesState::auto`] (about 300
/// windows, a day of five-minute ones).
pub(crate) const AUTO_ALPHA: f64 = 1.0 / 300.0;
/// The most a window's score counts in [`SeriesState::auto`].
pub(crate) const AUTO_Z_CLIP: f64 = 3.0;
/// Windows a score waits before [`SeriesState::auto`] learns from it
/// (three hours of five-minute windows: longer than the change detector
/// takes to call a move).
pub(crate) const AUTO_HOLD: usize = 36;
/// The highest autocorrelation [`SeriesState::long_run`] allows for.
pub(crate) const AUTO_RHO_MAX: f64 = 0.8;

/// Weight of the newest window in [`SeriesState::promo_recent`] when its
/// share is higher.
pub(crate) const PROMO_RECENT_ALPHA: f64 = 0.2;
/// The highest lift in demand a promotion is assumed to bring: a share on
/// promotion up by less than `spike-min-change / (PROMO_LIFT_MAX - 1)`
/// (5 points at the default 20%) cannot explain a material rise (a total
/// whose share drifts from 2.5% to 3.4% while a store spikes).
pub(crate) const PROMO_LIFT_MAX: f64 = 5.0;
/// How far below the recent share on promotion a window's share must be
/// for a promotion to have ended.
pub(crate) const PROMO_END_FALL: f64 = 0.1;

/// A normal's rate of |z| >= 2.
pub(crate) const TAIL_P0: f64 = 0.0455;
/// Weight of the newest window in [`SeriesState::exceed`] (about 300 windows).
pub(crate) const TAIL_ALPHA: f64 = 1.0 / 300.0;
/// Windows before the tail scale applies.
pub(crate) const TAIL_MIN_WINDOWS: u32 = 100;
/// Least share of the z-threshold a lean candidate's score must reach (see
/// `Candidate::lean`).
pub(crate) const LEAN_Z_SHARE: f64 = 0.5;
/// Weight of the newest window in [`SeriesState::zero_rate`] (about 200
/// windows).
pub(crate) const ZERO_ALPHA: f64 = 1.0 / 200.0;
/// A series with zero windows more often than this does not "normally
/// sell": a zero there is no `drop_to_zero`.
pub(crate) const ZERO_RATE_MAX: f64 = 0.02;
/// One zero window alone is a `drop_to_zero` only when the band's p10 is
/// at least this share of its median: a band reaching down near zero says
/// zero is plausible there (a run of zero windows is judged as a whole).
pub(crate) const ZERO_BAND_FLOOR: f64 = 0.15;

/// The most spike or drop windows a series remembers for
/// `recurring-period-ms` (the newest).
pub(crate) const RECURRING_KEPT: usize = 64;

/// Per-series detector state.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesState {
    /// Recent residuals (observed - p50), oldest first.
    pub(crate) residuals: VecDeque<f64>,
    pub(crate) cusum_up: f64,
    pub(crate) cusum_down: f64,
    /// A level shift in progress: its direction; windows in that direction
    /// belong to it until the residuals settle.
    pub(crate) shift: Option<Direction>,
    /// Consecutive settled windows while a shift is in progress.
    pub(crate) settled: u32,
    pub(crate) last_start: i64,
    /// The units of the newest window inside its p10-p90 band.
    pub(crate) inside_units: f64,
    /// Exponentially weighted mean of the actuals (promotion windows left
    /// out): the floor of the expected mean of a sparse series.
    pub(crate) mean_y: f64,
    /// Exponentially weighted share of lines on promotion, over the windows
    /// no promotion explained (what the forecast learned from).
    pub(crate) promo_mean: f64,
    /// Exponentially weighted share of lines on promotion over all
    /// windows, promotions included, quick to rise (about 5 windows) and
    /// slow to fall (about 20): a share well below it is a promotion
    /// ending.
    pub(crate) promo_recent: f64,
    /// The newest window's anomaly strength (see [`Alerting::strength`]).
    pub(crate) strength: f64,
    /// Exponentially weighted rate of windows scoring |z| >= 2 (before the
    /// tail scale), over windows that raised nothing.
    pub(crate) exceed: f64,
    /// Windows folded into `exceed`.
    pub(crate) exceed_seen: u32,
    /// Exponentially weighted share of the windows that raised nothing in
    /// which nothing sold (the plain mean over the first 200).
    pub(crate) zero_rate: f64,
    /// Windows folded into `zero_rate`.
    pub(crate) zero_seen: u32,
    /// The current run of windows in which nothing sold: their summed
    /// expected median, the log-probability of selling nothing in all of
    /// them, and whether the run already raised its `drop_to_zero`.
    pub(crate) zero_run: (f64, f64, bool),
    /// The current excursion: consecutive windows scoring beyond 1 in one
    /// direction, and whether one of them broke out of the band (a spike
    /// or drop verdict); see [`Config::spike_max_windows`].
    pub(crate) excursion: Option<Excursion>,
    /// The direction of the last alerted excursion, the window start at
    /// which it ended and its peak (for recoveries).
    pub(crate) ended: Option<(Direction, i64, f64)>,
    /// The last level shift or trend break raised on the series (see
    /// `level-shift-memory-windows`).
    pub(crate) shifted: Option<Shifted>,
    /// The run of windows in a row, up to the newest, that fell outside the
    /// band the same way scoring at least half the z-threshold (see
    /// `level-shift-max-factor`).
    pub(crate) outside_run: Option<OutsideRun>,
    /// Starts of the last two periods' windows with a spike or drop verdict,
    /// or out of the band with another series' alert explaining the move,
    /// or with an outage (a `drop_to_zero`), oldest first, with their
    /// direction (see `recurring-period-ms`), whether it was faint (an
    /// outage, or out of the band by less than a spike: remembered only
    /// for the echo test) and whether it recurred (see [`Outside`]).
    pub(crate) outside_at: VecDeque<Outside>,
    /// The newest window's start and the way it fell out of the band, if
    /// it did, and whether by less than a spike or drop must (faint;
    /// whatever its score): remembered in `outside_at` when another
    /// series' alert explains the move.
    pub(crate) band_out: Option<Outside>,
    /// The trend-break detector's state (series at `trend-min-level` and
    /// above only: the thousands of SKUs carry none).
    pub(crate) trend: Option<Box<TrendState>>,
    /// Exponentially weighted means of the product of successive
    /// windows' scores (each clipped to +-[`AUTO_Z_CLIP`]) and of their
    /// square, over windows that raised nothing, and the previous window's
    /// score: the scores' lag-one autocorrelation (see
    /// [`SeriesState::long_run`]).
    pub(crate) auto: (f64, f64, Option<f64>),
    /// The newest [`AUTO_HOLD`] windows' products and squares, before they
    /// are learnt: a move the change detector is summing must not teach
    /// it that the series' errors linger (dropped when a shift is called).
    pub(crate) auto_held: VecDeque<(f32, f32)>,
    /// The pattern-novelty detector's state (series at
    /// `novelty-min-level` and above only).
    pub(crate) novelty: Option<Box<Novelty>>,
    /// The newest window kept out of the change detector (a promotion's):
    /// its start and absolute log ratio of units to the forecast's median
    /// (see `Alerting::cover`).
    pub(crate) kept_out: Option<(i64, f64)>,
    /// The newest [`RECENT_KEPT`] windows' deviations from the forecast,
    /// oldest first: how far the rest of a parent moved over a level
    /// shift's windows (see `root_cause::root_causes`).
    pub(crate) recent: VecDeque<Deviation>,
    /// The newest `usual-range-windows` windows' units, oldest first
    /// (empty when that is 0).
    pub(crate) range: VecDeque<f32>,
    /// The change detector's level-shift calls over the last week (see
    /// [`WeeklyCalls`]), not the windows that continue them.
    pub(crate) shift_calls: WeeklyCalls,
}

/// Windows a series keeps in [`SeriesState::recent`].
pub(crate) const RECENT_KEPT: usize = 6;

/// One window's units against the forecast's median.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deviation {
    /// The window's start (ms).
    pub(crate) start: i64,
    /// Its units less the expected median.
    pub(crate) dev: f32,
    /// The expected median.
    pub(crate) p50: f32,
}

impl SeriesState {
    /// Whether `y` is within the usual range its way `d`: more than
    /// `share` of the kept windows' units at or beyond it (never with
    /// none kept).
    pub(crate) fn within_range(&self, y: f64, d: Direction, share: f64) -> bool {
        let y = y as f32;
        let beyond = self
            .range
            .iter()
            .filter(|&&u| match d {
                Direction::Up => u >= y,
                Direction::Down => u <= y,
            })
            .count();
        beyond as f64 > share * self.range.len() as f64
    }

    /// Keep `y` among the newest `keep` windows' units (none when 0).
    pub(crate) fn keep_in_range(&mut self, y: f64, keep: usize) {
        if keep == 0 {
            return;
        }
        if self.range.len() >= keep {
            self.range.pop_front();
        }
        self.range.push_back(y as f32);
    }

    /// Remember a window's deviation from the forecast's median.
    pub(crate) fn remember_deviation(&mut self, start: i64, y: f64, p50: f64) {
        if self.recent.len() == RECENT_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(Deviation {
            start,
            dev: (y - p50) as f32,
            p50: p50 as f32,
        });
    }
}

/// A forecast's expected median (0 without one).
pub(crate) fn e_p50(f: &Forecast) -> f64 {
    f.expected.map_or(0.0, |e| e.p50)
}

/// Log ratio of `observed` to `expected` units, each plus one (and at
/// least one: returns can make units negative).
pub(crate) fn log_ratio(observed: f64, expected: f64) -> f64 {
    ((observed + 1.0).max(1.0) / (expected + 1.0).max(1.0)).ln()
}

/// Log ratio of a window's units to its expected median.
pub(crate) fn ln_ratio(f: &Forecast) -> f64 {
    log_ratio(f.actual.units as f64, e_p50(f))
}

/// The direction a score points, beyond 1 either way.
pub(crate) fn dir_of(z: f64) -> Option<Direction> {
    if z > 1.0 {
        Some(Direction::Up)
    } else if z < -1.0 {
        Some(Direction::Down)
    } else {
        None
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl SeriesState {
    /// A level shift `d` was called: windows its way belong to it until
    /// they settle, and the change detector starts anew.
    pub(crate) fn shift_called(&mut self, d: Direction) {
        self.shift = Some(d);
        self.auto_held.clear();
        self.settled = 0;
        self.cusum_up = 0.0;
        self.cusum_down = 0.0;
    }

    /// An alert's move, measured on actuals against the series' recent
    /// mean (the forecast may or may not have followed it): the log ratio
    /// of `observed` to that mean.
    pub(crate) fn move_of(&self, observed: f64) -> f64 {
        ((observed.max(0.0) + 1.0) / (self.mean_y.max(0.0) + 1.0)).ln()
    }

    /// How much heavier than the model the series' tails have been: the
    /// scale that brings the observed rate of |score| >= 2 back to the
    /// normal's 4.55% (1 when it is at or below it). Scores are divided by
    /// it, so a bursty series (tweets, CPU) needs a bigger jump to alert.
    pub(crate) fn tail_scale(&self) -> f64 {
        if self.exceed_seen < TAIL_MIN_WINDOWS || self.exceed <= TAIL_P0 {
            return 1.0;
        }
        let q = tails::normal_isf_ln((self.exceed / 2.0).ln());
        (2.0 / q.max(1e-6)).max(1.0)
    }

    /// Normal-equivalent score of `y` against what was expected, before the
    /// tail scale, and the residuals' median (None with too few residuals).
    /// The forecast's median is corrected by the median
    /// of the recent residuals (a forecast running high or low is not an
    /// anomaly every window); the spread is the residuals' robust one
    /// (1.4826 MAD) expressed as a dispersion over the series' level, never
    /// below Poisson's; the tail is a quasi-Poisson's (see [`tails`]).
    /// Also returns the log-probability of selling nothing in the window.
    pub(crate) fn score_z(
        &self,
        y: f64,
        p50: f64,
        scratch: &mut Vec<f64>,
    ) -> Option<(f64, f64, f64)> {
        if self.residuals.len() < 10 {
            return None;
        }
        scratch.clear();
        scratch.extend(self.residuals.iter().copied());
        let med = median(scratch);
        for x in scratch.iter_mut() {
            *x = (*x - med).abs();
        }
        let sigma = 1.4826 * median(scratch);
        // A sparse series' median forecast is often 0; its mean is not.
        let mu = (p50 + med).max(0.5 * self.mean_y).max(0.05);
        let phi = (sigma * sigma / mu.max(self.mean_y).max(1.0)).max(1.0);
        Some((tails::count_z(y, mu, phi), med, -(mu / phi)))
    }
}

/// A window remembered in [`SeriesState::outside_at`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outside {
    /// The window's start (ms).
    pub(crate) start: i64,
    /// The way it fell out of the band.
    pub(crate) direction: Direction,
    /// An outage, or out of the band by less than a spike (only for the
    /// echo test).
    pub(crate) faint: bool,
    /// Out the same way one and two periods before it as well: the
    /// series' shape, which echoes nothing the next period.
    pub(crate) recurring: bool,
}

impl SeriesState {
    /// Remember the window (start, width, period) if it fell out of the
    /// band `out` a spike or drop's way (or faintly: `out`'s flag),
    /// and forget what is older than two periods (see
    /// `recurring-period-ms`).
    pub(crate) fn remember_outside(
        &mut self,
        out: Option<Outside>,
        (start, width, period): (i64, i64, i64),
    ) {
        if let Some(o) = out {
            self.outside_at.push_back(o);
        }
        while self.outside_at.len() > RECURRING_KEPT
            || self
                .outside_at
                .front()
                .is_some_and(|o| o.start < start - 2 * period - width)
        {
            self.outside_at.pop_front();
        }
    }

    /// The share of lines on promotion over all windows: quick to follow
    /// a promotion, as slow to forget it as the forecast.
    pub(crate) fn follow_promo_recent(&mut self, share: f64) {
        self.promo_recent += if self.residuals.is_empty() {
            share - self.promo_recent
        } else if share > self.promo_recent {
            PROMO_RECENT_ALPHA * (share - self.promo_recent)
        } else {
            MEAN_ALPHA * (share - self.promo_recent)
        };
    }

    /// The usual share of lines on promotion (windows no promotion
    /// explained).
    pub(crate) fn follow_promo_mean(&mut self, share: f64) {
        self.promo_mean += if self.residuals.is_empty() {
            share - self.promo_mean
        } else {
            MEAN_ALPHA * (share - self.promo_mean)
        };
    }

    /// Learn from a window no promotion explained, its units and residual
    /// `(y, r)` and its score before the tail scale: how often the series
    /// sells nothing (windows that raised nothing, or an outage going on),
    /// how heavy its tails are (windows that raised nothing), its recent
    /// residuals and mean.
    pub(crate) fn learn(
        &mut self,
        cfg: &Config,
        (y, r): (f64, f64),
        raw_z: Option<f64>,
        quiet: bool,
        in_outage: bool,
    ) {
        if quiet || in_outage {
            let zero = (y <= 0.0) as u8 as f64;
            self.zero_seen = self.zero_seen.saturating_add(1);
            let a = ZERO_ALPHA.max(1.0 / self.zero_seen as f64);
            self.zero_rate += a * (zero - self.zero_rate);
        }
        if let Some(zv) = raw_z.filter(|_| quiet) {
            let hit = (zv.abs() >= 2.0) as u8 as f64;
            self.exceed += TAIL_ALPHA * (hit - self.exceed);
            self.exceed_seen = self.exceed_seen.saturating_add(1);
        }
        self.residuals.push_back(r);
        if self.residuals.len() == 1 {
            self.mean_y = y;
        } else {
            self.mean_y += MEAN_ALPHA * (y - self.mean_y);
        }
        while self.residuals.len() > cfg.residual_window.max(10) {
            self.residuals.pop_front();
        }
    }
}

/// How much further (log ratio) than the move it follows a recovery may go.
const RECOVERY_SLACK: f64 = 0.4;

/// A series' last level shift or trend break, as its end is judged by
/// (see `Alerting::end_of_shift`).
#[derive(Debug, Clone)]
pub(crate) struct Shifted {
    pub(crate) alert: Box<Alert>,
    /// Its move (see [`SeriesState::move_of`]).
    pub(crate) moved: f64,
    /// The trend detector's usual ratio when it was called
    /// (`TrendState::called_base` then: a trend break called as this one's
    /// end sets that anew before the end is judged).
    pub(crate) called_base: f64,
}

/// One scored window as the change detector sees it.
pub(crate) struct ShiftWindow {
    /// Its start and width, and the start of the series' previous window
    /// (ms).
    pub(crate) at: (i64, i64, i64),
    /// Its units.
    pub(crate) y: f64,
    /// What the forecast expected.
    pub(crate) e: HorizonPoint,
    /// Its score (none before the series is scored).
    pub(crate) z: Option<f64>,
    /// Log ratio of its units to the bias-corrected expectation.
    pub(crate) ln_r: f64,
    /// How far it is from the bias-corrected forecast, relative to the
    /// series' level.
    pub(crate) change: f64,
    /// The z a spike or drop must reach at its level.
    pub(crate) level_z: f64,
    /// A promotion explains a move up.
    pub(crate) promo: bool,
}

impl SeriesState {
    /// How much one window counts in the change detector: with successive
    /// scores correlated `rho` (a forecast off by the same for hours, as a
    /// total's is on a day busier than the one before), a run of them says
    /// less than as many independent ones. Their sum's variance is
    /// `(1 + rho) / (1 - rho)` times theirs, so each window's step beyond
    /// the allowance (which is about the mean, and stays) counts the square
    /// root of the inverse: the threshold, a sum's, is that much higher.
    pub(crate) fn long_run(&self) -> f64 {
        let (ac, zz, _) = self.auto;
        if zz <= 0.0 {
            return 1.0;
        }
        let rho = (ac / zz).clamp(0.0, AUTO_RHO_MAX);
        ((1.0 - rho) / (1.0 + rho)).sqrt()
    }

    /// Fold a window's score into the autocorrelation (`quiet`: it raised
    /// nothing; a window that did breaks the chain).
    fn follow_auto(&mut self, z: f64, quiet: bool) {
        let z = z.clamp(-AUTO_Z_CLIP, AUTO_Z_CLIP);
        let (ac, zz, prev) = &mut self.auto;
        if let (Some(p), true) = (*prev, quiet) {
            self.auto_held.push_back(((p * z) as f32, (z * z) as f32));
        }
        *prev = quiet.then_some(z);
        while self.auto_held.len() > AUTO_HOLD {
            let (pz, zz2) = self.auto_held.pop_front().expect("not empty");
            *ac += AUTO_ALPHA * (f64::from(pz) - *ac);
            *zz += AUTO_ALPHA * (f64::from(zz2) - *zz);
        }
    }

    /// Level shifts: a CUSUM over the robust z-scores (an outage's windows
    /// are its `drop_to_zero`, never a level shift of their own), the
    /// excursion the window extends or ends, and the run outside the band
    /// (rebuilt here; none without a score). A shift going on makes the
    /// window its silent continuation; a call sets `verdict` and returns
    /// the CUSUM statistic (0 otherwise).
    pub(crate) fn detect_shift(
        &mut self,
        cfg: &Config,
        w: &ShiftWindow,
        verdict: &mut Option<Verdict>,
        silent: &mut bool,
    ) -> f64 {
        let prior_run = self.outside_run.take();
        let Some(zv) = w.z else {
            return 0.0;
        };
        let (start, width_ms, _) = w.at;
        let (y, e, ln_r) = (w.y, w.e, w.ln_r);
        let (change, level_z, promo) = (w.change, w.level_z, w.promo);
        let mut shift_stat = 0.0;
        // One window adds at most 3/4 of the threshold: a shift needs
        // two windows or more, a lone spike never calls one.
        let cap = 0.75 * cfg.cusum_h + cfg.cusum_k;
        let zc = zv.clamp(-cap, cap);
        // Each window's step, beyond the allowance, in standard deviations
        // of a run's sum (see `long_run`): the threshold is for a sum.
        let lr = self.long_run();
        self.follow_auto(zv, verdict.is_none());
        self.cusum_up = (self.cusum_up + (zc - cfg.cusum_k) * lr).max(0.0);
        self.cusum_down = (self.cusum_down + (-zc - cfg.cusum_k) * lr).max(0.0);
        // Excursions: a jump out of the band that ends within
        // spike-max-windows was a spike, and its windows leave the
        // change detector; one still going on is no shift yet.
        let dir = dir_of(zv);
        // The run of windows outside the band with this one added.
        let extended = dir.map(|d| {
            OutsideRun::then(
                prior_run,
                start,
                width_ms,
                d,
                zv,
                (ln_r, (y.max(0.0) + 1.0).ln()),
            )
        });
        let outside = verdict
            .is_some_and(|v| matches!(v.0, AlertKind::Spike | AlertKind::Drop) && Some(v.1) == dir);
        let outage = verdict.is_some_and(|v| v.0 == AlertKind::DropToZero);
        self.extend_excursion(cfg, dir, (outside, outage), ln_r, w.at);
        // A jump (out of the band, alerted, or a recovery) is no shift
        // while it is young.
        let young_jump = |d: Direction| {
            self.excursion
                .as_ref()
                .is_some_and(|e| e.direction == d && e.young(cfg))
        };
        match self.shift {
            Some(d) => {
                // The shift lasts while residuals keep its direction;
                // three calm windows end it.
                let same = zv * d.sign() > 1.0;
                self.settled = if same { 0 } else { self.settled + 1 };
                if self.settled >= 3 {
                    self.shift = None;
                    self.cusum_up = 0.0;
                    self.cusum_down = 0.0;
                } else if verdict.is_none_or(|v| v.1 == d && v.0 != AlertKind::DropToZero) && same {
                    // Part of the shift already called: silent, but the
                    // series below that move with it are its consequence.
                    *silent = true;
                    *verdict = Some((AlertKind::LevelShift, d, 0.0));
                }
            }
            None => {
                // Called on a window that itself clearly moved the
                // shift's way (not one that lingers near the band, nor
                // one inside it: a forecast unsure enough to cover the
                // window has not been left behind).
                let clear = zv.abs() >= 0.5 * cfg.z_threshold && (y > e.p90 || y < e.p10);
                let up = self.cusum_up > cfg.cusum_h
                    && clear
                    && dir == Some(Direction::Up)
                    && !young_jump(Direction::Up);
                let down = self.cusum_down > cfg.cusum_h
                    && clear
                    && dir == Some(Direction::Down)
                    && !young_jump(Direction::Down);
                // Two windows in a row at the same new level, by the
                // size of the move no spike: confirmed now.
                let confirmed = cfg.level_shift_max_factor > 0.0
                    && clear
                    && y > 0.0
                    && !promo
                    && self.excursion.is_some_and(|x| {
                        !x.outage
                            && !x.recovery
                            && matches!(x.cover, Cover::None | Cover::Own)
                            && (x.direction == Direction::Down || !x.burst)
                    })
                    && extended.is_some_and(|r| {
                        (2..=cfg.spike_max_windows.max(2)).contains(&r.windows)
                            && r.sum_z.abs() / f64::from(r.windows).sqrt() >= level_z
                            && r.uhi - r.ulo <= 1.5f64.ln()
                            && (r.direction == Direction::Down
                                || r.hi < cfg.level_shift_max_factor.ln())
                    });
                let (up, down) = (
                    up || confirmed && dir == Some(Direction::Up),
                    down || confirmed && dir == Some(Direction::Down),
                );
                if (up || down) && change < cfg.level_shift_min_change {
                    // Statistically sure, practically nothing: a big
                    // series' forecast drifting by a percent.
                    self.cusum_up = 0.0;
                    self.cusum_down = 0.0;
                } else if up || down {
                    let d = if up { Direction::Up } else { Direction::Down };
                    let stat = self.cusum_up.max(self.cusum_down);
                    shift_stat = stat;
                    self.shift_called(d);
                    if verdict.is_none_or(|v| v.0 != AlertKind::DropToZero) {
                        *verdict = Some((AlertKind::LevelShift, d, stat));
                        // A call a week after one the same way at about
                        // the same time: the weekly shape (a weekend's
                        // level), which a forecast of a daily season keeps
                        // missing. Silent, and remembered, so each week's
                        // is.
                        let at = (start, width_ms, cfg.recurring_period_ms);
                        *silent |= self.shift_calls.again(at, d, cfg.trend_windows as usize);
                    }
                }
            }
        }
        // Kept while it stays outside the band its way, each window
        // scoring at least half the z-threshold.
        self.outside_run = extended.filter(|r| {
            let out = match r.direction {
                Direction::Up => y > e.p90,
                Direction::Down => y < e.p10 && y > 0.0,
            };
            out && zv.abs() >= 0.5 * cfg.z_threshold
        });
        shift_stat
    }
    /// The excursion with this window (scoring its way `dir`, beyond 1;
    /// `outside`: a spike or drop verdict its way; `outage`: a
    /// `drop_to_zero`): the same way, it goes on; otherwise the one before
    /// ends (a jump that ended within a spike's length leaves the change
    /// detector) and a new one starts, perhaps the recovery from it.
    fn extend_excursion(
        &mut self,
        cfg: &Config,
        dir: Option<Direction>,
        (outside, outage): (bool, bool),
        ln_r: f64,
        (start, width_ms, prev_start): (i64, i64, i64),
    ) {
        self.excursion = match (self.excursion.take(), dir) {
            (Some(mut e), Some(nd)) if e.direction == nd => {
                e.windows += 1;
                if outside {
                    e.start_jump();
                }
                e.outside |= outside;
                e.outage |= outage;
                e.peak = Excursion::peak_with(e.peak, outage, ln_r);
                Some(e)
            }
            (prev, nd) => {
                if let Some(e) = prev {
                    // A jump that ended within a spike's length, or a
                    // move another series' alert explained (of any
                    // length: the forecast may lag behind a store's
                    // spike for a window or two), leaves the change
                    // detector: it is no evidence of a shift here.
                    if (e.young(cfg) || e.cover.by_another()) && self.shift.is_none() {
                        match e.direction {
                            Direction::Up => self.cusum_up = 0.0,
                            Direction::Down => self.cusum_down = 0.0,
                        }
                    }
                    if e.cover != Cover::None {
                        // It ended after the series' previous window
                        // (a sparse series may have skipped some since).
                        self.ended = Some((e.direction, prev_start + width_ms, e.peak));
                    }
                }
                nd.map(|d| {
                    // Coming back within a spike's length after an
                    // alerted move (a total whose forecast followed a
                    // store's spike, an outage ending) is the recovery,
                    // not a new anomaly: the forecast may have caught up
                    // with the move for a window or two before it ended
                    // (seed 5's total, while app-de's spike went on); so
                    // is the series' first window since, when it sold
                    // nothing (and emitted no window) for no longer than
                    // a recovery may last. A recovery goes no further
                    // than about the way the move went (a store falling
                    // 16% and then selling three times its usual is
                    // a spike, not its recovery).
                    let recovery = self.ended.is_some_and(|(ed, at, peak)| {
                        let gap = start - prev_start;
                        let gap_ok =
                            gap <= width_ms * (2 * i64::from(cfg.spike_max_windows)).max(1);
                        ed != d
                            && ln_r.abs() <= peak + RECOVERY_SLACK
                            && (start - at <= width_ms * i64::from(cfg.spike_max_windows.max(1))
                                || (at == prev_start + width_ms && gap_ok))
                    });
                    Excursion {
                        direction: d,
                        windows: 1,
                        outside: outside && !recovery,
                        outage,
                        cover: Cover::None,
                        recovery,
                        burst: false,
                        peak: Excursion::peak_with(0.0, outage, ln_r),
                    }
                })
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores with lag-one autocorrelation `rho` (unit variance), from a
    /// fixed-seed generator.
    fn scores(rho: f64, n: usize) -> Vec<f64> {
        let (mut s, mut z) = (11u64, 0.0f64);
        let sd = (1.0 - rho * rho).sqrt() * 12f64.sqrt();
        (0..n)
            .map(|_| {
                let u = (crate::tests::lcg(&mut s) % 10_001) as f64 / 10_000.0 - 0.5;
                z = rho * z + sd * u;
                z
            })
            .collect()
    }

    #[test]
    fn correlated_scores_count_less_in_the_change_detector() {
        let weight = |rho: f64| {
            let mut st = SeriesState::default();
            for z in scores(rho, 3000) {
                st.follow_auto(z, true);
            }
            st.long_run()
        };
        // Independent scores count fully.
        assert!(weight(0.0) > 0.9, "{}", weight(0.0));
        // At 0.6, a run's sum has four times the variance: each counts half.
        assert!((weight(0.6) - 0.5).abs() < 0.1, "{}", weight(0.6));
        // The correlation allowed for is bounded (AUTO_RHO_MAX).
        let floor = ((1.0 - AUTO_RHO_MAX) / (1.0 + AUTO_RHO_MAX)).sqrt();
        assert!(weight(0.97) >= floor - 1e-9);
        // A window that raised something breaks the chain of pairs.
        let mut st = SeriesState::default();
        for (i, z) in scores(0.6, 3000).into_iter().enumerate() {
            st.follow_auto(z, i % 2 == 0);
        }
        assert_eq!(st.long_run(), 1.0);
    }
}
