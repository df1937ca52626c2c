//! Trend breaks: each window against the same window a period (a day)
//! earlier, a CUSUM of how far the ratio strays from the usual one, and
//! the day slots and spans it is judged by.

use std::collections::VecDeque;

use crate::series::{log_ratio, median};
use crate::weekly::WeeklyCalls;
use crate::{AlertKind, Config, Direction, Verdict};

/// Weight of the newest window in [`TrendState::disp`] (about 100
/// windows).
pub(crate) const TREND_ALPHA: f64 = 0.01;
/// Largest difference in the share of lines on promotion between a window
/// and the same window a period earlier for their units to be compared.
pub(crate) const TREND_PROMO_DIFF: f64 = 0.05;
/// The least share of a window's units a period earlier the SKUs no
/// promotion touched must have sold for a window to be compared by them
/// (see [`TrendState::promo_free`]).
pub(crate) const PROMO_FREE_MIN_SHARE: f64 = 0.5;
/// Windows of day-over-day ratios a series needs before its spread is known.
pub(crate) const TREND_MIN_SEEN: u32 = 30;
/// The trend CUSUM's allowance, in standard deviations of one window's
/// ratio: a drift smaller than this is never summed.
pub(crate) const TREND_K: f64 = 0.5;
/// The most one window adds to the trend CUSUM beyond its allowance, in
/// standard deviations (a lone outlier the other detectors let pass cannot
/// make a trend).
pub(crate) const TREND_CLIP: f64 = 2.0;
/// Least slope, in standard errors, of a trend's deviations over the
/// windows summed.
pub(crate) const TREND_SLOPE_T: f64 = 2.0;
/// Least share of a flat trend CUSUM's windows (see [`TrendSide::both`])
/// compared with two periods before as well as one, for it to be called a
/// level shift: a move the day before that passed unseen also reads as a
/// flat move today against it, but not against the day before that.
pub(crate) const STEP_CONFIRMED_SHARE: f64 = 0.75;
/// How many times `trend-z` a flat trend CUSUM that is not confirmed
/// against two periods before (see [`STEP_CONFIRMED_SHARE`]) must reach,
/// with a window that surprised its forecast its way, to be called a level
/// shift all the same: the day two periods before held promotions, or
/// preceded the series' first forecasts (seed 20's cat-13|app-uk halved
/// at 00:05 on its first scored day and summed 31 by 02:25, unconfirmed).
pub(crate) const UNCONFIRMED_SUM: f64 = 4.0;
/// The longest run, in `trend-windows`, a trend break is summed over
/// (eight of 9 windows: six hours of five-minute windows); a longer one is
/// what is usual wandering, and starts over.
pub(crate) const TREND_MAX_RUN: usize = 8;
/// Weight of the newest quiet window in [`TrendState::base`] (about three
/// hours of five-minute windows).
pub(crate) const TREND_BASE_ALPHA: f64 = 1.0 / 36.0;
/// A series is compared with the period before only while its windows'
/// ratios to the same windows a period earlier deviate from the usual
/// ratio by less than this share of how far its units deviate from their
/// level over the period. A series without a daily shape deviates about
/// 1.4 times as much from the day before as from its level. The generated
/// sales at category x store level (seed 1's last day): their log units
/// deviate about 0.55 from their daily mean and their day-over-day ratios
/// about 0.24 from the usual; the share is 0.44 at the median series, 0.63
/// at the 90th percentile (small, noisy categories, which raised most
/// false trend breaks).
pub(crate) const TREND_SHAPE_MAX: f64 = 0.65;
/// How far, as a share of a step's jump, the newer half of the windows
/// after it may stand beyond the older half for it to be a step, not a
/// climb (see [`TrendState::steps_within`]; a climb split in its first
/// half rises further than this).
pub(crate) const STEP_FLAT_SHARE: f64 = 0.35;
/// How far off its forecast's median, in standard deviations of a
/// window's ratio to the day before (counts' noise times the series'
/// dispersion), a step's first window may be for the forecast not to have
/// seen it coming even inside the band: at night a band learnt from the
/// evening's residuals is far wider than the counts' noise (seed 20's
/// cat-13|app-uk sold 18 against 62 in a band of 17-95).
pub(crate) const STEP_SURPRISE_SD: f64 = 3.0;
/// How far, as a share of a step's mean deviation from the usual ratio,
/// the windows before it must already stand its way for it to be the
/// newest stretch of a climb (a trend break), not a step.
pub(crate) const CLIMB_LEAD_SHARE: f64 = 0.18;
/// The fewest windows of a step against the day before (a spike lasts up
/// to `spike-max-windows`, 3 by default, and raises its own alert).
pub(crate) const STEP_MIN_WINDOWS: u32 = 3;

/// One side (up or down) of the trend CUSUM.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TrendSide {
    /// The cumulative sum, in standard deviations.
    pub(crate) s: f64,
    /// Windows since it was last zero, and their log ratios less the usual.
    pub(crate) n: u32,
    pub(crate) moved: f64,
    /// Sums for the least-squares slope of the log deviations over the
    /// run: of window index times deviation, of index squared, and of the
    /// deviations' variances.
    pub(crate) id: f64,
    pub(crate) ii: f64,
    pub(crate) var: f64,
    /// Windows of the run whose deviation was also measured against two
    /// periods before (the less of the two).
    pub(crate) both: u32,
    /// One of the run's first `trend-windows` windows surprised its
    /// forecast this side's way (see [`TrendState::detect`]): the
    /// move is the series' today, not the day before's (whose anomaly,
    /// unseen, reads as a flat move back today, which the forecast,
    /// learnt over more than a day, expected).
    pub(crate) surprised: bool,
    /// The start (ms) of the run's first window.
    pub(crate) first: i64,
}

impl TrendSide {
    /// Add a window's standardized deviation `z` (the sign of this side)
    /// less the allowance `k`, and its log deviation `d` and that
    /// deviation's standard deviation `sd`; `both`: measured against two
    /// periods before as well; `surprising`: the window surprised its
    /// forecast this side's way (see [`TrendWindow::surprising`]); `now`:
    /// the window's start (ms).
    pub(crate) fn add(
        &mut self,
        z: f64,
        k: f64,
        (d, sd): (f64, f64),
        (both, surprising): (bool, bool),
        now: i64,
    ) {
        self.s += z - k;
        if self.s <= 0.0 {
            *self = TrendSide::default();
        } else {
            if self.n == 0 {
                self.first = now;
            }
            let i = f64::from(self.n);
            self.n += 1;
            self.moved += d;
            self.id += i * d;
            self.ii += i * i;
            self.var += sd * sd;
            self.both += u32::from(both);
            self.surprised |= surprising;
        }
    }

    /// The slope of the deviations over the run, in standard errors (a
    /// climb rises; a step, or a day before that was low all along, is
    /// flat).
    pub(crate) fn slope_t(&self) -> f64 {
        let n = f64::from(self.n);
        let mean_i = (n - 1.0) / 2.0;
        let sxx = self.ii - n * mean_i * mean_i;
        if self.n < 3 || sxx <= 0.0 {
            return 0.0;
        }
        let b = (self.id - mean_i * self.moved) / sxx;
        b / (self.var / n / sxx).sqrt()
    }
}

/// The index of a direction's side in [`TrendState::sides`].
fn side_of(d: Direction) -> usize {
    match d {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

/// Per-series state of the trend-break detector (see `trend-windows`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrendState {
    /// The moves called against the day before over the last week: one
    /// called the same way at about the same time a week (seven periods)
    /// earlier is the weekly shape (a Monday against its Sunday), not
    /// news. About: within `trend-windows` windows, how far a call's
    /// timing wanders with the spans it is judged by.
    pub(crate) calls: WeeklyCalls,
    /// The usual units by position in the period (see [`DaySlot`]).
    pub(crate) day: Vec<DaySlot>,
    /// The newest windows, oldest first, before they become the period's
    /// usual units (see [`TrendState::remember`]).
    pub(crate) queued: VecDeque<Queued>,
    /// Log ratios of each window's units to the same window one and two
    /// periods earlier, the newest `3 x trend-windows` of each, oldest
    /// first.
    pub(crate) ratios: [VecDeque<f64>; 2],
    /// Exponentially weighted mean absolute difference between successive
    /// ratios, each over its standard deviation were the units Poisson
    /// counts (`pi / 2` times its square is the variance multiplier: 1
    /// for Poisson counts, more for overdispersed ones; a trend barely
    /// moves it).
    pub(crate) disp: f64,
    /// The previous window's ratio and its variance as Poisson counts.
    pub(crate) prev: Option<(f64, f64)>,
    pub(crate) seen: u32,
    /// The usual log ratios to one and two periods earlier (a steady
    /// weekday difference), learnt while the CUSUM is quiet and the series
    /// is not away after a move (see [`TrendState::away`]), and how many
    /// windows each has learnt from since they were last reset (a jump
    /// starts them anew).
    pub(crate) base: [f64; 2],
    pub(crate) base_n: [u32; 2],
    /// `base` and `base_n` before the newest window was learnt from (see
    /// [`TrendState::moved_with_another`]).
    pub(crate) base_before: Option<([f64; 2], [u32; 2])>,
    /// The CUSUM of the ratios' deviations from the usual, up and down.
    pub(crate) sides: [TrendSide; 2],
    /// A trend break in progress and its calm windows.
    pub(crate) going: Option<Direction>,
    pub(crate) settled: u32,
    /// Whether the series has a shape over the period: the exponentially
    /// weighted (over about a period) log units, the mean absolute
    /// deviation from them, and that of the ratio from the usual one (see
    /// [`TREND_SHAPE_MAX`]).
    pub(crate) shape: [f64; 3],
    /// The newest window's ratio to a period earlier (None: no comparison
    /// there), and the usual ratio when the last trend break was called
    /// (what its end returns to).
    pub(crate) last_r: Option<f64>,
    pub(crate) called_base: f64,
    /// The last level shift or trend break called within the period: its
    /// direction, the usual ratio from before the first of a series of
    /// them (home) and its window's start. A window of the period after it
    /// whose ratio to the day before is still its way from home is no
    /// usual one for its time of day (tomorrow is not judged against it).
    pub(crate) away: Option<(Direction, f64, i64)>,
    /// Whether the last window with a comparison was still away (a window
    /// without one is taken to be where the last one was).
    pub(crate) away_held: bool,
    /// The previous compared window's deviation from the usual ratio, and
    /// the run of windows since then beyond the allowance one way (see
    /// [`StepRun`]).
    pub(crate) prev_d: Option<f64>,
    pub(crate) step: Option<StepRun>,
}

/// A run of windows whose ratio to the day before stands beyond the
/// trend allowance one way, begun with a jump of at least
/// `trend-min-change` from a window at the usual ratio: a step the
/// forecast may already have followed (a climb crosses the allowance a
/// little at a time, and is a trend break's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepRun {
    pub(crate) direction: Direction,
    pub(crate) windows: u32,
    /// Sum of the windows' deviations in standard deviations (each at most
    /// `z-threshold`), and of the deviations themselves.
    pub(crate) sum_z: f64,
    pub(crate) sum_d: f64,
    /// Its first window was outside the forecast's band its way: the
    /// forecast did not see the step coming (a day before that was itself
    /// off makes steps the forecast knew).
    pub(crate) surprised: bool,
}

/// The window number of `at` (window start, width, period) and the
/// windows in a period (its position is the number modulo those).
pub(crate) fn window_in_period(at: (i64, i64, i64)) -> (i64, i64) {
    let (start, width, period) = at;
    (
        start.div_euclid(width.max(1)),
        (period / width.max(1)).max(1),
    )
}

/// A window waiting in [`TrendState::queued`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    /// Its window number, units and share of lines on promotion.
    pub(crate) n: i64,
    pub(crate) units: f32,
    pub(crate) share: f32,
    /// It is a usual window (see [`TrendState::remember`]).
    pub(crate) usual: bool,
    /// How it compared with the period before (see [`DaySlot::checked`]).
    pub(crate) checked: Checked,
}

/// How a window compared with the same window a period earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// No comparison (the series' first period, or promotions then or now).
    No,
    /// Its ratio to the earlier one was within the trend allowance of the
    /// usual ratio.
    Agrees,
    /// It was further off.
    Differs,
}

impl Checked {
    /// How a window whose ratio to the period before is `r` (None: no
    /// comparison) compared, given the usual ratio `base` and the trend
    /// allowance.
    pub(crate) fn of(r: Option<f64>, base: f64, allowance: f64) -> Checked {
        match r {
            None => Checked::No,
            Some(r) if (r - base).abs() < allowance => Checked::Agrees,
            Some(_) => Checked::Differs,
        }
    }
}

/// One position of a series' period in [`TrendState::day`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaySlot {
    /// The period its units are from (`u32::MAX`: none yet).
    pub(crate) round: u32,
    /// Usual units and share of lines on promotion there in that period...
    pub(crate) units: f32,
    pub(crate) share: f32,
    /// ...and in the period before it (NaN: unknown).
    pub(crate) older: f32,
    pub(crate) older_share: f32,
    /// Its units were carried over an unusual window (once only).
    pub(crate) carried: bool,
    /// The window `units` (and `older`) are of was itself compared with
    /// the period before it and found usual. A series' first period never
    /// is: an anomaly then passes for what is usual, and carried over the
    /// next period's return from it (which reads as a move, no usual
    /// window) it would be judged against the period after that too.
    pub(crate) checked: bool,
    pub(crate) older_checked: bool,
}

impl DaySlot {
    /// It holds the period just before the `round`-th.
    fn precedes(&self, round: u32) -> bool {
        self.round != u32::MAX && self.round.wrapping_add(1) == round
    }

    pub(crate) const EMPTY: DaySlot = DaySlot {
        round: u32::MAX,
        units: 0.0,
        share: 0.0,
        older: f32::NAN,
        older_share: 0.0,
        carried: false,
        checked: false,
        older_checked: false,
    };
}

impl TrendState {
    /// Learn from this window whether the same window a period earlier
    /// tells more about the series than its level over the period does
    /// (`a`: a window's weight, about one over the windows in a period).
    /// A day-over-day ratio means something only on a series with a
    /// shape over the day: on one without, it is noise on noise.
    pub(crate) fn shaped(&mut self, y: f64, r: f64, a: f64) -> bool {
        let ly = (y.max(0.0) + 1.0).ln();
        let a = a.max(1.0 / f64::from(self.seen.max(1)));
        if self.seen <= 1 {
            self.shape[0] = ly;
        }
        let [level, off_level, off_usual] = &mut self.shape;
        *off_level += a * ((ly - *level).abs() - *off_level);
        *level += a * (ly - *level);
        *off_usual += a * ((r - self.base[0]).abs() - *off_usual);
        *off_usual < TREND_SHAPE_MAX * *off_level
    }

    /// The log ratios of `y` (units, share of lines on promotion) at `at`
    /// (window start, width, period) to the window one and two periods
    /// before (None without one). Promotions come and go at any hour: a
    /// window whose share of lines on promotion differs from the earlier
    /// one's is no comparison.
    pub(crate) fn compare(&mut self, at: (i64, i64, i64), y: (f64, f64)) -> [Option<f64>; 2] {
        let (y, share) = y;
        let (n, slots) = window_in_period(at);
        if self.day.len() != slots as usize {
            self.day = vec![DaySlot::EMPTY; slots as usize];
            self.queued.clear();
        }
        let d = self.day[n.rem_euclid(slots) as usize];
        let fresh = d.precedes(n.div_euclid(slots) as u32);
        let vs = |units: f32, s: f32| {
            (fresh && !units.is_nan() && (share - f64::from(s)).abs() <= TREND_PROMO_DIFF)
                .then(|| log_ratio(y, f64::from(units)))
        };
        [vs(d.units, d.share), vs(d.older, d.older_share)]
    }

    /// The day slot of the window a period before the one at `at` (start,
    /// width, period) when it holds the series' own units then: None in the
    /// series' first period, with no units there, or with units carried
    /// over an unusual window (they, and their share, are of the period
    /// before it).
    fn own_before(&self, at: (i64, i64, i64)) -> Option<&DaySlot> {
        let (n, slots) = window_in_period(at);
        let d = self.day.get(n.rem_euclid(slots) as usize)?;
        (d.precedes(n.div_euclid(slots) as u32) && !d.carried && !d.units.is_nan()).then_some(d)
    }

    /// The share of lines on promotion of the window a period before the
    /// one at `at` (see [`TrendState::own_before`]).
    pub(crate) fn share_before(&self, at: (i64, i64, i64)) -> Option<f64> {
        self.own_before(at).map(|d| f64::from(d.share))
    }

    /// A window whose share of lines on promotion differs from the same
    /// window's a period earlier, compared by the SKUs no promotion touched
    /// in either (its units and the earlier ones less those of the SKUs
    /// with lines on promotion in one of them, `w.promoted`): the log
    /// ratio and the units it is of. None unless the earlier window is the
    /// series' own units then (not carried over an anomaly, which the SKUs'
    /// units then would not know) and the SKUs left sold at least
    /// [`PROMO_FREE_MIN_SHARE`] of them.
    fn promo_free(&self, w: &TrendWindow) -> Option<(f64, f64)> {
        let before = f64::from(self.own_before(w.at)?.units);
        // Only now, the one window in twenty or so that needs them, are
        // the SKUs below summed.
        let (now, then) = (w.promoted)()?;
        let (y, y0) = ((w.y - now).max(0.0), before - then);
        (y0 > 0.0 && y0 >= PROMO_FREE_MIN_SHARE * before).then(|| (log_ratio(y, y0), y))
    }

    /// Queue `y` (as in [`TrendState::compare`], which comes first) to
    /// become what is usual at its position in the period once `hold`
    /// newer windows have come; `checked`: how it compared with the period
    /// before. A window in an anomaly (`usual` false, or marked by
    /// [`TrendState::moved`] while queued) keeps the position's earlier
    /// units, so tomorrow is not judged against today's anomaly (a climb
    /// today would read as a slide tomorrow), but only once, and only units
    /// that were themselves checked or that this window agreed with: a
    /// second one, or earlier units never compared with anything that this
    /// window differed from (which of the two was the anomaly is unknown;
    /// see [`DaySlot::checked`]), leave the position no comparison.
    pub(crate) fn remember(
        &mut self,
        at: (i64, i64, i64),
        y: (f64, f64),
        (usual, checked): (bool, Checked),
        hold: usize,
    ) {
        let (y, share) = y;
        let (n, slots) = window_in_period(at);
        self.queued.push_back(Queued {
            n,
            units: y as f32,
            share: share as f32,
            usual,
            checked,
        });
        while self.queued.len() > hold.min(slots as usize - 1) {
            let q = self.queued.pop_front().expect("not empty");
            let slot = &mut self.day[q.n.rem_euclid(slots) as usize];
            let round = q.n.div_euclid(slots) as u32;
            let follows = slot.precedes(round);
            if !q.usual {
                // Not what is usual there: the day before's units are the
                // reference the next period, once; then the slot stays as
                // it was, and a period old is no comparison (carried on,
                // an anomaly in it would be judged again every day).
                if follows && !slot.carried {
                    slot.round = round;
                    if !slot.checked && q.checked != Checked::Agrees {
                        slot.units = f32::NAN;
                    }
                    slot.older = f32::NAN;
                    slot.carried = true;
                }
                continue;
            }
            *slot = DaySlot {
                round,
                units: q.units,
                share: q.share,
                older: if follows { slot.units } else { f32::NAN },
                older_share: slot.share,
                carried: false,
                checked: q.checked != Checked::No,
                older_checked: follows && slot.checked,
            };
        }
    }

    /// Add a window's ratios to one and two periods before, keeping the
    /// newest `keep`. A window without the first (a promotion here or then)
    /// holds a gap (NaN) in both, once there are ratios at all, so that
    /// three spans stay three spans of time: skipped, they would set this
    /// afternoon's ratios against this morning's. The second stays aligned
    /// with the first the same way.
    pub(crate) fn push_ratios(&mut self, r1: Option<f64>, r2: Option<f64>, keep: usize) {
        if r1.is_none() && self.ratios[0].is_empty() {
            return;
        }
        self.ratios[0].push_back(r1.unwrap_or(f64::NAN));
        self.ratios[1].push_back(r1.and(r2).unwrap_or(f64::NAN));
        for r in self.ratios.iter_mut() {
            while r.len() > keep {
                r.pop_front();
            }
        }
    }

    /// The usual ratio from before the first of the last series of moves
    /// (see [`TrendState::away`]); the usual one without a move.
    pub(crate) fn home(&self) -> f64 {
        self.away.map_or(self.base[0], |(_, home, _)| home)
    }

    /// A level shift or trend break was called on the window `at` (start,
    /// width, period; see [`TrendState::away`]): the windows queued since
    /// it began are of the move too, no usual ones, and the trend CUSUM
    /// starts over.
    pub(crate) fn moved(&mut self, d: Direction, at: (i64, i64, i64)) {
        let now = at.0;
        self.away = Some((d, self.home(), now));
        self.away_held = true;
        for q in self.queued.iter_mut() {
            q.usual = false;
        }
        // The move's CUSUM may have summed it for longer than the queue
        // holds: its earlier windows are no usual ones either.
        let side = self.sides[side_of(d)];
        if side.n > 0 {
            self.unlearn(side.first, at);
        }
        self.sides = Default::default();
    }

    /// A trend sum past `trend-z` that no call explained (flat, with no
    /// day before that to confirm it a step, say) is still a move away
    /// from what is usual: its windows, and those without a comparison
    /// while it stands there, are no reference for the next period, or the
    /// series' return to its usual units would read as a move the other
    /// way then (seed 15's cat-18|app-uk stood at twice its units at night
    /// unseen, and was called a slide the next morning).
    fn unsure_move(&mut self, cfg: &Config, at: (i64, i64, i64)) {
        if self.going.is_some() {
            return;
        }
        for side in self.sides {
            if side.s >= cfg.trend_z {
                self.unusual_since(side.first, at);
            }
        }
    }

    /// The windows from `since` (a start, ms) to the window `at` are no
    /// usual ones: those still queued are marked so, and those already
    /// learnt are taken back (see [`TrendState::unlearn`]). Also a single
    /// window that moved with an ancestor's spike or drop (see
    /// `Alerting::moved_below`): a series that moved with its store's spike
    /// without a verdict of its own otherwise reads as a step down against
    /// it the next day.
    pub(crate) fn unusual_since(&mut self, since: i64, at: (i64, i64, i64)) {
        let first = since.div_euclid(at.1.max(1));
        for q in self.queued.iter_mut().filter(|q| q.n >= first) {
            q.usual = false;
        }
        self.unlearn(since, at);
    }

    /// The newest window moved with another series' spike or drop (an
    /// ancestor's, see `Alerting::moved_below`): like a jump of its own
    /// (see [`TrendState::observe`]), its deviation is that move's, so the
    /// step test and the trend sums start over from the next window (a
    /// category that tripled for three windows with its store read as a
    /// three-window step against the day before). Nor is its ratio a usual
    /// one: what the window taught is taken back.
    pub(crate) fn moved_with_another(&mut self) {
        if let Some((base, n)) = self.base_before.take() {
            (self.base, self.base_n) = (base, n);
        }
        self.step = None;
        self.prev_d = None;
        self.sides = Default::default();
    }

    /// Take back the windows from `since` (a start, ms) to the window `at`
    /// that were already learnt as the usual units at their position
    /// (older than the queue): each goes back, once, to the units of the
    /// period before it (none: no comparison there), as a window that was
    /// no usual one would have kept them. A climb the CUSUM took three
    /// hours to be sure of would otherwise be tomorrow's reference for
    /// those hours, and tomorrow's usual units a slide against it.
    fn unlearn(&mut self, since: i64, at: (i64, i64, i64)) {
        let slots = self.day.len() as i64;
        if slots == 0 {
            return;
        }
        let (now, _) = window_in_period(at);
        let to = self.queued.front().map_or(now, |q| q.n);
        let from = since.div_euclid(at.1.max(1)).max(to - slots + 1);
        for n in from..to {
            let slot = &mut self.day[n.rem_euclid(slots) as usize];
            if slot.round == n.div_euclid(slots) as u32 && !slot.carried {
                slot.units = if slot.older_checked {
                    slot.older
                } else {
                    f32::NAN
                };
                slot.checked = slot.older_checked;
                slot.share = slot.older_share;
                slot.older = f32::NAN;
                slot.carried = true;
            }
        }
    }

    /// Whether a window at `now` with ratio `r1` to the day before is
    /// still away from home after the last move (see
    /// [`TrendState::away`]): within the period after it, and its ratio at
    /// least `back` the move's way from home. A window without a
    /// comparison (its share of lines on promotion differs from the day
    /// before's) is where the last window with one was: no news is no
    /// return home, and remembered as usual it would be tomorrow's
    /// reference in the middle of the move (seed 18's cat-00|web-uk, 1.8x
    /// for ten hours with a comparison in one window of two, read as a
    /// slide against them the next day).
    pub(crate) fn away_at(&mut self, now: i64, period: i64, r1: Option<f64>, back: f64) -> bool {
        if self.away.is_some_and(|(_, _, since)| now - since >= period) {
            self.away = None;
        }
        let Some((d, home, _)) = self.away else {
            return false;
        };
        if let Some(r) = r1 {
            self.away_held = (r - home) * d.sign() >= back;
        }
        self.away_held
    }

    /// Medians of the three spans of `w` ratios to `back` (0: one period,
    /// 1: two) periods before, oldest first (None until there are three,
    /// or while a span has fewer than half its ratios: the gaps of windows
    /// without a comparison), and the fewest ratios a span had.
    pub(crate) fn spans(
        &self,
        back: usize,
        w: usize,
        scratch: &mut Vec<f64>,
    ) -> Option<([f64; 3], usize)> {
        let ratios = &self.ratios[back];
        if w == 0 || ratios.len() < 3 * w {
            return None;
        }
        let mut m = [0.0; 3];
        let mut fewest = w;
        for (k, mk) in m.iter_mut().enumerate() {
            scratch.clear();
            scratch.extend(ratios.iter().skip(k * w).take(w).filter(|r| !r.is_nan()));
            if 2 * scratch.len() < w {
                return None;
            }
            fewest = fewest.min(scratch.len());
            *mk = median(scratch);
        }
        Some((m, fewest))
    }
}

/// One window as the trend detector sees it.
pub(crate) struct TrendWindow<'a> {
    /// Its start, its width and the period (a day), in ms.
    pub(crate) at: (i64, i64, i64),
    /// Its units.
    pub(crate) y: f64,
    /// Its share of lines on promotion.
    pub(crate) share: f64,
    /// The forecast's p10 and p90 for it, and its median.
    pub(crate) band: (f64, f64),
    pub(crate) p50: f64,
    /// A step of the series' own: a verdict here, a level shift going on,
    /// or its own alert's excursion.
    pub(crate) own: bool,
    /// `own`, or it moved with another series' alert (a store's spike over
    /// its categories).
    pub(crate) jump: bool,
    /// The series is scored: only a window the detector could have flagged
    /// is a usual one (before then, an outage passes unseen).
    pub(crate) scored: bool,
    /// The units now and a period earlier of the SKUs below it that had
    /// lines on promotion in either window (see `promoted::Promoted`),
    /// summed only when asked.
    pub(crate) promoted: &'a dyn Fn() -> Option<(f64, f64)>,
}

impl TrendWindow<'_> {
    /// Whether the window surprised its forecast the way `way`: outside
    /// its band, or its log ratio to the median [`STEP_SURPRISE_SD`] times
    /// `sd` (the ratio's standard deviation) that way.
    fn surprising(&self, way: Direction, sd: f64) -> bool {
        (match way {
            Direction::Up => self.y > self.band.1,
            Direction::Down => self.y < self.band.0,
        }) || log_ratio(self.y, self.p50) * way.sign() >= STEP_SURPRISE_SD * sd
    }
}

impl TrendState {
    /// Trend breaks: the series' units against the same window a period
    /// earlier drift away from their usual ratio (a CUSUM of the
    /// deviations), with no step of its own (a spike, drop, shift or
    /// another's alert) meanwhile. Feeds one first-emitted window. A trend
    /// break going on makes the window its silent continuation; a call
    /// sets `verdict` (a trend break, or a level shift against the day
    /// before) and returns its move: the mean log ratio to a period
    /// earlier, less the usual one, and over how many windows. A call the
    /// same way as one a week earlier is silent (see
    /// [`TrendState::calls`]).
    pub(crate) fn observe(
        &mut self,
        cfg: &Config,
        w: &TrendWindow,
        verdict: &mut Option<Verdict>,
        silent: &mut bool,
        scratch: &mut Vec<f64>,
    ) -> Option<(f64, u32)> {
        let (now, width_ms, period) = w.at;
        let tw = cfg.trend_windows as usize;
        self.base_before = None;
        if let Some(d) = verdict
            .filter(|v| v.0 == AlertKind::LevelShift)
            .map(|v| v.1)
        {
            self.moved(d, w.at);
        }
        let allowance = cfg.trend_allowance();
        let [mut r1, mut r2] = self.compare(w.at, (w.y, w.share));
        // Units the ratio is of (for its variance below).
        let mut y_compared = w.y;
        if let Some((r, y)) = r1.is_none().then(|| self.promo_free(w)).flatten() {
            (r1, r2, y_compared) = (Some(r), None, y);
        }
        // Not one of a move that still holds either.
        let away = self.away_at(now, period, r1, allowance);
        let usual = !w.jump && !away && self.going.is_none() && w.scored;
        let checked = Checked::of(r1, self.base[0], allowance);
        self.remember(w.at, (w.y, w.share), (usual, checked), 3 * tw);
        self.push_ratios(r1, r2, 3 * tw);
        self.last_r = r1;
        if w.jump || r1.is_none() {
            self.step = None;
            self.prev_d = None;
        }
        if w.jump {
            // A step here ends a trend break going on, and what is usual
            // is learnt anew after a step of the series' own.
            self.going = None;
            if w.own {
                self.base_n = [0, 0];
            }
            self.sides = Default::default();
            self.prev = None;
        }
        let Some(r) = r1.filter(|_| !w.jump) else {
            // (After a jump the sums were just reset: nothing to mark.)
            self.unsure_move(cfg, w.at);
            return None;
        };
        // The ratio's variance were the units Poisson counts (that of
        // ln((y + 1) / (y0 + 1)), with y0 + 1 = (y + 1) / e^r).
        let v = (1.0 + r.exp()) / (y_compared.max(0.0) + 1.0);
        if let Some((pr, pv)) = self.prev {
            self.seen = self.seen.saturating_add(1);
            let a = TREND_ALPHA.max(1.0 / f64::from(self.seen));
            self.disp += a * ((r - pr).abs() / (v + pv).sqrt() - self.disp);
        }
        self.prev = Some((r, v));
        let shaped = self.shaped(w.y, r, width_ms as f64 / period as f64);
        let sd = (std::f64::consts::FRAC_PI_2 * v).sqrt() * self.disp;
        match self.going {
            Some(dir) => {
                self.follow(dir, tw, verdict, silent, scratch);
                None
            }
            None => {
                let called = self.detect(cfg, w, (r, r2, sd), (shaped, away), verdict, scratch);
                // The same call a week earlier: the weekly shape, silent.
                if let (Some(_), Some((_, d, _))) = (called, *verdict) {
                    *silent |= self.calls.again(w.at, d, tw);
                }
                called
            }
        }
    }

    /// A trend break going on lasts while the newest span keeps moving its
    /// way (no verdict here: that would be a jump), each window its silent
    /// continuation; then its new level is the usual.
    fn follow(
        &mut self,
        dir: Direction,
        tw: usize,
        verdict: &mut Option<Verdict>,
        silent: &mut bool,
        scratch: &mut Vec<f64>,
    ) {
        let spans = self.spans(0, tw, scratch);
        let same = spans.is_some_and(|([m0, _, m2], _)| (m2 - m0) * dir.sign() > 0.0);
        self.settled = if same { 0 } else { self.settled + 1 };
        if self.settled >= tw as u32 {
            self.going = None;
            self.relearn(tw, scratch);
            self.sides = Default::default();
        } else {
            *silent = true;
            *verdict = Some((AlertKind::TrendBreak, dir, 0.0));
        }
    }

    /// What is usual, learnt anew: the median of the newest `tw` ratios to
    /// one and to two periods before.
    fn relearn(&mut self, tw: usize, scratch: &mut Vec<f64>) {
        for (b, ratios) in self.ratios.iter().enumerate() {
            scratch.clear();
            let newest = ratios.iter().rev().take(tw);
            scratch.extend(newest.filter(|r| !r.is_nan()));
            self.base_n[b] = scratch.len() as u32;
            if !scratch.is_empty() {
                self.base[b] = median(scratch);
            }
        }
    }

    /// With no trend break going on: the window's ratio `r` to a period
    /// earlier (and `r2` to two, when known) against the usual,
    /// into the step test and the trend CUSUM, which may call; then what is
    /// usual is learnt, while the CUSUM is quiet. `sd`: the ratio's standard
    /// deviation; `shaped`: the series has a shape over the period; `away`:
    /// a move that still holds.
    fn detect(
        &mut self,
        cfg: &Config,
        w: &TrendWindow,
        (r, r2, sd): (f64, Option<f64>, f64),
        (shaped, away): (bool, bool),
        verdict: &mut Option<Verdict>,
        scratch: &mut Vec<f64>,
    ) -> Option<(f64, u32)> {
        let tw = cfg.trend_windows as usize;
        let mut trend = None;
        let active = self.seen >= TREND_MIN_SEEN && self.base_n[0] >= tw as u32 && sd > 0.0;
        if active {
            // Moved against the day before and, when known, the day before
            // that too (by the less of the two): an anomaly the day before
            // that passed unseen is no trend today.
            let r2_known = r2.filter(|_| self.base_n[1] >= tw as u32);
            let d = self.deviation(r, r2_known);
            trend = self.step_test(cfg, w, d, sd, (shaped, away), verdict);
            let allowance = cfg.trend_allowance();
            let k = TREND_K.max(allowance / sd);
            let z = (d / sd).clamp(-k - TREND_CLIP, k + TREND_CLIP);
            let both = r2_known.is_some();
            // Only a run's first `tw` windows: a real step surprises the
            // forecast as it begins, and one window in ten is outside the
            // band by chance over a run of hours.
            let early = |side: usize| self.sides[side].n < tw as u32;
            let up = (both, early(0) && w.surprising(Direction::Up, sd));
            let down = (both, early(1) && w.surprising(Direction::Down, sd));
            self.sides[0].add(z, k, (d, sd), up, w.at.0);
            self.sides[1].add(-z, k, (d, sd), down, w.at.0);
            if let Some(called) = self.call(cfg, w.at, (shaped, away), verdict, scratch) {
                trend = Some(called);
            }
            self.unsure_move(cfg, w.at);
        }
        // What is usual is learnt while the CUSUM is quiet, and not from a
        // move that still holds.
        let quiet = self.sides.iter().all(|x| x.s < 0.25 * cfg.trend_z);
        if self.going.is_none() && (!active || quiet) && !away {
            self.base_before = Some((self.base, self.base_n));
            for (b, r) in [Some(r), r2].into_iter().enumerate() {
                if let Some(r) = r {
                    self.base_n[b] = self.base_n[b].saturating_add(1);
                    // The mean of the first `trend-windows`, then slow to
                    // follow.
                    let a = if self.base_n[b] <= tw as u32 {
                        1.0 / f64::from(self.base_n[b])
                    } else {
                        TREND_BASE_ALPHA
                    };
                    self.base[b] += a * (r - self.base[b]);
                }
            }
        }
        trend
    }

    /// A step (see [`StepRun`]) in the deviation `d` from the usual ratio:
    /// called once it has lasted longer than a spike, sure at `z-threshold`
    /// over its windows (each counting at most that) and material as a
    /// trend would be. Sets `verdict` to the level shift (a trend break,
    /// going on from here, when the windows before it already stood part
    /// of the way: see [`CLIMB_LEAD_SHARE`]) and returns its move.
    fn step_test(
        &mut self,
        cfg: &Config,
        w: &TrendWindow,
        d: f64,
        sd: f64,
        (shaped, away): (bool, bool),
        verdict: &mut Option<Verdict>,
    ) -> Option<(f64, u32)> {
        let allowance = cfg.trend_allowance();
        let tw = cfg.trend_windows as usize;
        let wz = (d / sd).clamp(-cfg.z_threshold, cfg.z_threshold);
        self.step = match self.step {
            Some(mut run) if d * run.direction.sign() >= allowance => {
                run.windows += 1;
                run.sum_z += wz;
                run.sum_d += d;
                Some(run)
            }
            // Twice the allowance beyond the windows before it, which were
            // within it: not already moving its way (a climb part way up,
            // with a noisy window back near the usual, jumps as far from
            // that window), and not one noisy window short of a start.
            _ if self.prev_d.is_some() && {
                let lead = self.lead_in(d.signum(), tw);
                lead.abs() < allowance && d.abs() - lead >= 2.0 * allowance
            } =>
            {
                let way = if d > 0.0 {
                    Direction::Up
                } else {
                    Direction::Down
                };
                Some(StepRun {
                    direction: way,
                    windows: 1,
                    sum_z: wz,
                    sum_d: d,
                    surprised: w.surprising(way, sd),
                })
            }
            _ => None,
        };
        self.prev_d = Some(d);
        let run = self.step.filter(|run| {
            let n = f64::from(run.windows);
            run.windows >= STEP_MIN_WINDOWS
                && run.surprised
                && (run.sum_z * run.direction.sign()) / n.sqrt() >= cfg.z_threshold
                && ((run.sum_d / n).exp() - 1.0).abs() >= cfg.trend_min_change
                && shaped
                && !away
        })?;
        let n = f64::from(run.windows);
        let dir = run.direction;
        let mean = run.sum_d / n;
        // The windows before it already part of the way there: the newest
        // stretch of a climb, no step.
        let before = self.mean_deviation(run.windows as usize, tw) * dir.sign();
        let climb = before >= CLIMB_LEAD_SHARE * mean * dir.sign();
        self.moved(dir, w.at);
        self.step = None;
        let kind = if climb {
            self.begin_trend(dir);
            AlertKind::TrendBreak
        } else {
            AlertKind::LevelShift
        };
        *verdict = Some((kind, dir, run.sum_z.abs() / n.sqrt()));
        Some((mean, run.windows))
    }

    /// A side of the trend CUSUM that reached `trend-z` (with no verdict
    /// on the window yet) calls: a climb (its deviations rise) is a trend
    /// break, which goes on from here; a flat sum mostly confirmed against
    /// two periods before is a level shift. Returns the move called.
    fn call(
        &mut self,
        cfg: &Config,
        at: (i64, i64, i64),
        (shaped, away): (bool, bool),
        verdict: &mut Option<Verdict>,
        scratch: &mut Vec<f64>,
    ) -> Option<(f64, u32)> {
        let tw = cfg.trend_windows as usize;
        let mut trend = None;
        for dir in [Direction::Up, Direction::Down] {
            let side = side_of(dir);
            let TrendSide {
                s,
                n,
                moved,
                both,
                surprised,
                ..
            } = self.sides[side];
            if n as usize > TREND_MAX_RUN * tw {
                // Hours of a slow wander: what is usual moved, not the
                // series. It is learnt anew from the newest ratios (the
                // CUSUM away from it is not quiet, and nothing else would
                // teach it: a usual ratio learnt against an anomaly the
                // day before kept the sum far from zero for hours).
                self.sides[side] = TrendSide::default();
                self.relearn(tw, scratch);
                continue;
            }
            if s < cfg.trend_z || !shaped || verdict.is_some() {
                continue;
            }
            // A climb: its deviations rise (the slope is worked out only
            // for a sum that reached the threshold). Flat ones, not rising
            // at all, are a step the forecast followed and the step test
            // missed (windows without a comparison between, or a first
            // window part way up), or a day before that was low all along:
            // a step once most of them were confirmed against the day
            // before that too, or, with none to confirm them against, once
            // the sum has gone `UNCONFIRMED_SUM` times as far from a start
            // that surprised the forecast. In between, neither.
            let slope = self.sides[side].slope_t() * dir.sign();
            let confirmed = f64::from(both) >= STEP_CONFIRMED_SHARE * f64::from(n)
                || (surprised && s >= UNCONFIRMED_SUM * cfg.trend_z);
            // A run that began a window or two before a step rises all the
            // same: a step by its windows (confirmed as a flat sum must be)
            // is a level shift.
            let rising = slope >= TREND_SLOPE_T;
            let step = confirmed
                && !away
                && if rising {
                    self.steps_within(dir, n as usize, tw, cfg.trend_allowance())
                } else {
                    slope <= 0.0
                };
            let climb = rising && !step;
            if !climb && !step {
                continue;
            }
            let moved = moved / f64::from(n);
            // Material, as a level shift must be.
            if (moved.exp() - 1.0).abs() < cfg.level_shift_min_change {
                self.sides[side] = TrendSide::default();
                continue;
            }
            self.moved(dir, at);
            trend = Some((moved, n));
            if !climb {
                *verdict = Some((AlertKind::LevelShift, dir, s));
                continue;
            }
            self.begin_trend(dir);
            *verdict = Some((AlertKind::TrendBreak, dir, s));
        }
        trend
    }
}

impl TrendState {
    /// A window's deviation from what is usual: its ratio to a period
    /// earlier `r` less the usual one, and, when its ratio to two periods
    /// earlier `r2` is known, the less of that and the same for two periods
    /// (nothing when the two disagree on the way): an anomaly the day
    /// before that passed unseen is no move today.
    fn deviation(&self, r: f64, r2: Option<f64>) -> f64 {
        let d1 = r - self.base[0];
        let Some(r2) = r2 else {
            return d1;
        };
        let d2 = r2 - self.base[1];
        if d2 * d1 <= 0.0 {
            0.0
        } else if d2.abs() < d1.abs() {
            d2
        } else {
            d1
        }
    }

    /// A trend break its way `dir` is called: it goes on from here, and its
    /// end returns to what is usual now.
    fn begin_trend(&mut self, dir: Direction) {
        self.going = Some(dir);
        self.called_base = self.base[0];
        self.settled = 0;
    }

    /// The mean deviation from the usual ratio of the `tw` compared windows
    /// before the newest `skip` (0 without any).
    fn mean_deviation(&self, skip: usize, tw: usize) -> f64 {
        let before = self.ratios[0].iter().rev().skip(skip).take(tw);
        let (sum, n) = before
            .filter(|r| !r.is_nan())
            .fold((0.0, 0usize), |(s, n), r| (s + r - self.base[0], n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }

    /// The mean deviation from the usual ratio, the way `sign`, of the `tw`
    /// compared windows before the newest (0 without any).
    fn lead_in(&self, sign: f64, tw: usize) -> f64 {
        sign * self.mean_deviation(1, tw)
    }

    /// Whether the newest `n` compared windows (a trend CUSUM's run, side
    /// `dir`) rose as a step rather than a climb: split somewhere, the
    /// later windows (three or more) stand at least twice the allowance
    /// beyond the earlier ones, which are less than half as far from the
    /// usual ratio as they are, and the later windows are flat (their
    /// newer half no more than [`STEP_FLAT_SHARE`] of the jump beyond their
    /// older half). A climb's later windows keep rising; a run that began
    /// a window or two before a step has a rising slope all the same.
    pub(crate) fn steps_within(&self, dir: Direction, n: usize, tw: usize, allowance: f64) -> bool {
        let two = self.base_n[1] >= tw as u32;
        let mut devs: Vec<f64> = self.ratios[0]
            .iter()
            .zip(self.ratios[1].iter())
            .rev()
            .filter(|(r1, _)| !r1.is_nan())
            .take(n)
            .map(|(&r1, &r2)| self.deviation(r1, (two && !r2.is_nan()).then_some(r2)))
            .map(|d| d * dir.sign())
            .collect();
        devs.reverse();
        let m = devs.len();
        if m < 4 {
            return false;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        (1..=m - 3).any(|t| {
            let (pre, post) = devs.split_at(t);
            let jump = mean(post) - mean(pre);
            let (early, late) = post.split_at(post.len() / 2);
            // Flat before the split too, when there is enough of it to
            // tell: the last third of a linear climb stands a step beyond
            // the rest and is about flat itself.
            let (pre_early, pre_late) = pre.split_at(pre.len() / 2);
            let pre_flat =
                pre.len() < 4 || mean(pre_late) - mean(pre_early) <= STEP_FLAT_SHARE * jump;
            mean(pre) < 0.5 * mean(post)
                && jump >= 2.0 * allowance
                && mean(late) - mean(early) <= STEP_FLAT_SHARE * jump
                && pre_flat
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trend state whose newest ratios to the day before are `devs`
    /// (the usual ratio 0, none to two periods before).
    fn with_ratios(devs: &[f64]) -> TrendState {
        let mut t = TrendState::default();
        for &d in devs {
            t.push_ratios(Some(d), None, devs.len());
        }
        t
    }

    fn no_promotions() -> Option<(f64, f64)> {
        None
    }

    /// A window far above its forecast's band (a step's first window
    /// surprises the forecast), with no promotions.
    fn surprising_window() -> TrendWindow<'static> {
        TrendWindow {
            at: (0, 1, 10),
            y: 100.0,
            share: 0.0,
            band: (0.0, 1.0),
            p50: 0.5,
            own: false,
            jump: false,
            scored: true,
            promoted: &no_promotions,
        }
    }

    #[test]
    fn a_flat_sum_not_confirmed_two_periods_back_needs_a_surprising_start() {
        let cfg = Config::default();
        let (sd, k) = (0.1, TREND_K);
        // A halving held flat for hours, with nothing two periods back to
        // confirm it against (the series' first periods, or promotions
        // then): each window 2 standard deviations beyond the allowance,
        // drifting back a little (no climb).
        let run = |surprising_start: bool, windows: u32| {
            let mut t = TrendState::default();
            for i in 0..windows {
                let surprising = surprising_start && i == 1;
                t.sides[side_of(Direction::Down)].add(
                    2.0 + k,
                    k,
                    (-0.69 + 0.001 * f64::from(i), sd),
                    (false, surprising),
                    i64::from(i),
                );
            }
            let mut verdict = None;
            let called = t.call(
                &cfg,
                (0, 1, 10),
                (true, false),
                &mut verdict,
                &mut Vec::new(),
            );
            (called.is_some(), verdict.map(|v| (v.0, v.1)))
        };
        let called_down = (true, Some((AlertKind::LevelShift, Direction::Down)));
        let enough = (UNCONFIRMED_SUM * cfg.trend_z / 2.0).ceil() as u32;
        // Its second window fell far below the forecast: the series moved.
        assert_eq!(run(true, enough), called_down);
        // Not yet four times the sum a confirmed one needs.
        assert_eq!(run(true, enough - 1), (false, None));
        // The forecast expected every window: the day before was the
        // anomaly, and today reads as a flat move back from it.
        assert_eq!(run(false, 3 * enough), (false, None));
    }

    #[test]
    fn the_last_third_of_a_linear_climb_is_no_step() {
        let cfg = Config::default();
        let (tw, allowance) = (cfg.trend_windows as usize, cfg.trend_allowance());
        // 29 windows climbing 0.03 a window: split at 19, the last ten stand
        // a step beyond the first and are about flat themselves; but so
        // was the climb before them.
        let climb: Vec<f64> = (0..29).map(|i| 0.03 * f64::from(i)).collect();
        let t = with_ratios(&climb);
        assert!(!t.steps_within(Direction::Up, climb.len(), tw, allowance));
        // A step two windows into the run is one.
        let mut step = vec![0.01, 0.02];
        step.extend(std::iter::repeat_n(0.5, 10));
        let t = with_ratios(&step);
        assert!(t.steps_within(Direction::Up, step.len(), tw, allowance));
        // And so is one after a flat stretch of noise.
        let mut step: Vec<f64> = (0..12)
            .map(|i| if i % 2 == 0 { 0.03 } else { -0.02 })
            .collect();
        step.extend(std::iter::repeat_n(0.5, 6));
        let t = with_ratios(&step);
        assert!(t.steps_within(Direction::Up, step.len(), tw, allowance));
    }

    #[test]
    fn a_jump_part_way_up_a_climb_starts_no_step() {
        let cfg = Config::default();
        let allowance = cfg.trend_allowance();
        // Nine windows already 1.5 allowances up, then a window within it
        // and one twice it beyond: a noisy climb, no step from the usual.
        let mut devs = vec![1.5 * allowance; 9];
        devs.extend([0.5 * allowance, 2.6 * allowance]);
        let mut t = with_ratios(&devs);
        t.prev_d = Some(0.5 * allowance);
        let w = surprising_window();
        let mut verdict = None;
        t.step_test(&cfg, &w, 2.6 * allowance, 0.05, (true, false), &mut verdict);
        assert!(t.step.is_none());
        // From windows about the usual it does.
        let mut devs = vec![0.0; 9];
        devs.extend([0.5 * allowance, 2.6 * allowance]);
        let mut t = with_ratios(&devs);
        t.prev_d = Some(0.5 * allowance);
        t.step_test(&cfg, &w, 2.6 * allowance, 0.05, (true, false), &mut verdict);
        assert!(t.step.is_some_and(|s| s.windows == 1));
    }

    #[test]
    fn a_step_from_windows_already_part_way_there_is_a_climbs_newest_stretch() {
        let cfg = Config::default();
        let w = surprising_window();
        // Nine windows at `before` from the usual ratio, then three at
        // +0.45: a step by the step test's measure, called on the third.
        let called = |before: f64| {
            let mut t = with_ratios(&[before; 9]);
            t.prev_d = Some(before);
            let mut verdict = None;
            for _ in 0..3 {
                t.push_ratios(Some(0.45), None, 27);
                t.step_test(&cfg, &w, 0.45, 0.05, (true, false), &mut verdict);
            }
            (verdict.map(|v| (v.0, v.1)), t.going)
        };
        // A quarter of the way there before it: a climb (seed 6's
        // cat-16|app-uk doubling over three hours, its windows 10-15 called
        // a step at +51% after nine at +16%).
        assert_eq!(
            called(0.1),
            (
                Some((AlertKind::TrendBreak, Direction::Up)),
                Some(Direction::Up)
            )
        );
        // From the usual ratio it is a step.
        assert_eq!(
            called(0.0),
            (Some((AlertKind::LevelShift, Direction::Up)), None)
        );
    }

    #[test]
    fn a_wander_longer_than_a_run_relearns_what_is_usual() {
        // The usual ratio to the day before was learnt as +0.7 against a
        // day that was itself halved; the series has been back at its
        // day-before level since, and the down side of the CUSUM has
        // summed that for longer than a run may last.
        let cfg = Config::default();
        let tw = cfg.trend_windows as usize;
        let mut t = TrendState {
            base: [0.7, 0.0],
            base_n: [tw as u32, 0],
            ..TrendState::default()
        };
        for i in 0..3 * tw {
            let r = if i % 2 == 0 { 0.02 } else { -0.02 };
            t.push_ratios(Some(r), None, 3 * tw);
        }
        t.sides[1] = TrendSide {
            s: 50.0,
            n: (TREND_MAX_RUN * tw + 1) as u32,
            ..TrendSide::default()
        };
        let (mut verdict, mut scratch) = (None, Vec::new());
        assert_eq!(
            t.call(&cfg, (0, 1, 10), (true, false), &mut verdict, &mut scratch),
            None
        );
        assert!(verdict.is_none());
        // What is usual now is the newest ratios', and the sum starts over
        // from it (it would restart at once against +0.7).
        assert!(t.base[0].abs() <= 0.02, "{:?}", t.base);
        assert_eq!(t.base_n[0], tw as u32);
        assert_eq!(t.sides[1].s, 0.0);
    }
}
