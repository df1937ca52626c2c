//! Runs of windows one series spends away from its forecast: an excursion
//! (scoring beyond 1 one way), the run outside the band, and which alert
//! already covers them.

use crate::{Config, Direction};

/// Consecutive windows outside the band the same way, each scoring at
/// least half the z-threshold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutsideRun {
    /// Start of its newest window.
    pub(crate) last: i64,
    pub(crate) direction: Direction,
    /// Their scores summed.
    pub(crate) sum_z: f64,
    pub(crate) windows: u32,
    /// The highest log ratio of units to the bias-corrected expectation
    /// among them.
    pub(crate) hi: f64,
    /// Log of its first window's bias-corrected expectation, and the
    /// lowest and highest log ratio of units to it (a forecast that
    /// follows the move partway does not make one new level look like two).
    pub(crate) base: f64,
    pub(crate) ulo: f64,
    pub(crate) uhi: f64,
}

impl OutsideRun {
    /// The run with one more window (a new run if `start` does not follow
    /// on, or goes the other way).
    pub(crate) fn then(
        run: Option<Self>,
        start: i64,
        width: i64,
        d: Direction,
        z: f64,
        (ln_r, ln_y): (f64, f64),
    ) -> Self {
        match run {
            Some(r) if r.last == start - width && r.direction == d => OutsideRun {
                last: start,
                direction: d,
                sum_z: r.sum_z + z,
                windows: r.windows + 1,
                hi: r.hi.max(ln_r),
                base: r.base,
                ulo: r.ulo.min(ln_y - r.base),
                uhi: r.uhi.max(ln_y - r.base),
            },
            _ => OutsideRun {
                last: start,
                direction: d,
                sum_z: z,
                windows: 1,
                hi: ln_r,
                base: ln_y - ln_r,
                ulo: ln_r,
                uhi: ln_r,
            },
        }
    }
}

/// Whether an excursion is part of an alert already raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Cover {
    /// Not alerted.
    #[default]
    None,
    /// The series' own alert.
    Own,
    /// Another series' alert (as a child, or a parent that deferred to it).
    Other,
    /// Another series' `drop_to_zero`: this series moves because of an
    /// outage, and no level shift of its own is called for it.
    Outage,
    /// An ancestor's spike or drop named it among its children, or its
    /// own was within its usual range (`usual-range-windows`): it moved
    /// within that, and no level shift of its own is called for it.
    Within,
}

impl Cover {
    /// Part of another series' alert.
    pub(crate) fn by_another(self) -> bool {
        matches!(self, Cover::Other | Cover::Outage | Cover::Within)
    }
}

/// Consecutive windows of one series scoring beyond 1 in one direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Excursion {
    pub(crate) direction: Direction,
    pub(crate) windows: u32,
    /// One of them broke out of the band (a spike or drop verdict).
    pub(crate) outside: bool,
    /// One of them was a `drop_to_zero` (an outage is no level shift).
    pub(crate) outage: bool,
    pub(crate) cover: Cover,
    /// It began right after an alerted excursion the other way ended.
    pub(crate) recovery: bool,
    /// Its alert named a child that moved by `level-shift-max-factor` or
    /// more: a burst below, which a level shift is not.
    pub(crate) burst: bool,
    /// The largest absolute log ratio of units to the bias-corrected
    /// expectation among its windows (infinite in an outage).
    pub(crate) peak: f64,
}

impl Excursion {
    /// Its peak with one more window (log ratio `ln_r`, an outage's or not).
    pub(crate) fn peak_with(peak: f64, outage: bool, ln_r: f64) -> f64 {
        if outage {
            f64::INFINITY
        } else {
            peak.max(ln_r.abs())
        }
    }

    /// A jump: out of the band, part of an alert, or a recovery from one
    /// (a gradual drift is none of these).
    pub(crate) fn jump(&self) -> bool {
        self.outside || self.cover != Cover::None || self.recovery
    }

    /// A drift that breaks out of the band now: its spike clock starts
    /// here, and a cover by another series' alert was of the drift, not
    /// of this jump, which is its own (a store drifting up with a
    /// category's move, then spiking itself).
    pub(crate) fn start_jump(&mut self) {
        if !self.outside && !self.recovery {
            self.windows = 1;
            if self.cover.by_another() {
                self.cover = Cover::None;
            }
        }
    }

    /// A jump still no longer than a spike (or a recovery) may last.
    pub(crate) fn young(&self, cfg: &Config) -> bool {
        self.jump() && self.windows <= self.limit(cfg)
    }

    /// How long it may last and still be a spike (or a recovery: the
    /// forecast takes a while to forget what it followed).
    pub(crate) fn limit(&self, cfg: &Config) -> u32 {
        if self.recovery {
            2 * cfg.spike_max_windows
        } else {
            cfg.spike_max_windows
        }
    }
}
