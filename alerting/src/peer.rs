//! Peer comparison: each category in a store against the same category in
//! the other stores and the other categories in the same store.
//!
//! Every closed window, the order lines of the category x store table go
//! through a median polish of their logs (Tukey's: row and column medians
//! taken out in turn), which splits each cell into a category effect (the
//! time of day, the day of the week, a promotion of one of its SKUs: all
//! that moves the category in every store), a store effect (its traffic,
//! a store-wide spike or outage: all that moves the store's every
//! category), and what is the cell's own. Medians, so one cell's move
//! barely shifts either effect: it stays the cell's.
//!
//! A cell's expected lines are then `exp(category + store + theta)`, with
//! `theta` its usual own part, learned slowly while nothing is going on.
//! Lines (buyers), not units, because buyers arrive independently and a
//! line's units do not: the lines are close to Poisson around that
//! expectation, so each window adds its Poisson log-likelihood ratio for
//! the cell's lines being `exp(peer-delta)` times (up) or `exp(-peer-delta)`
//! times (down) their expectation to a one-sided CUSUM per direction; one
//! past `peer-h` is a move. Nothing here depends on a forecast: the
//! reference is what the category and the store did in the same window.
//!
//! A move is a step (a level shift) when a step fits the cell's last
//! windows better than a straight climb or slide from some window on (a
//! trend break), by [`STEP_MARGIN`] in log-likelihood; a climb when the
//! ramp fits better by [`RAMP_MARGIN`]; undecided, the call waits for more
//! windows, at most [`DECIDE_WINDOWS`]; a step that a ramp fits better
//! later, within [`RECONSIDER_WINDOWS`], is a climb after all (a climb's
//! noisy first windows can look like a step). A move ends when a CUSUM for the
//! cell being back at its expectation, rather than where the move stood,
//! passes `peer-h`; one that lasts [`SETTLE_WINDOWS`] is the cell's new
//! normal. A decided move may step further: a CUSUM for the cell being
//! `exp(peer-delta)` times further its way than where it stood that
//! passes `peer-h` (a second step on top of a first, or at the top of a
//! climb) is told a step of its own ([`Step::further`]) once a step
//! beyond where the move stood fits the windows since better than a
//! ramp, as a move is (a climb going on is not).
//!
//! The alerting stage raises the climbs and slides it calls as trend
//! breaks, in place of the forecast's trend detector on the categories it
//! covers: a climb is a few percent a window, inside a forecast band for
//! many windows, while against its peers the category's every window
//! counts. Steps stay the forecast's change detector's to call (a step
//! stands out of the band at once), but a category's level shift stands
//! only where this test leans its way. A step found here that nothing
//! else called, and that the series' own forecast confirms, is called
//! by the alerting stage as a level shift (see [`ALONE_MIN`]).
//!
//! SKUs in stores go through the same test against the same SKU in the
//! other stores ([`Peers::observe_within`]), with the store effects of
//! the category table: a SKU moving in every store is its promotion, not
//! its step, and a SKU's level shift too stands only where that leans.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::series::median;
use crate::tails::count_z;
use crate::{AlertKind, Direction};

/// Windows of the cell's history the step-or-ramp fit looks at (a trend
/// break's climb is called about ten windows in).
pub(crate) const FIT_WINDOWS: usize = 40;
/// How much better (log-likelihood) a step must fit than a ramp for a
/// level shift to be called at once.
const STEP_MARGIN: f64 = 5.0;
/// How much better a ramp must fit than a step for a trend break.
const RAMP_MARGIN: f64 = 1.0;
/// Windows an undecided move waits before it is called by whichever fits
/// better.
const DECIDE_WINDOWS: i64 = 16;
/// Windows a move told a step is fitted again (a climb's length): one
/// that a ramp then fits better is a climb after all.
const RECONSIDER_WINDOWS: i64 = 36;
/// Windows after which a move that has not ended is the cell's new
/// normal (a day of 5-minute windows).
const SETTLE_WINDOWS: i64 = 288;
/// Windows over which the cell's own part (`theta`) is averaged.
const THETA_WINDOWS: f64 = 288.0;
/// Windows a cell learns its own part before it is tested.
const LEARN_WINDOWS: u32 = 12;
/// Expected lines below which a cell is not tested (too few to tell).
const MIN_EXPECTED: f64 = 3.0;
/// CUSUM values below this count as nothing going on (theta learns).
const QUIET_CUSUM: f64 = 2.0;
/// How far (log) a step the peer test alone calls must stand from the
/// peers, and from the series' own forecast (about 1.35x, or 0.74x).
pub(crate) const ALONE_MIN: f64 = 0.3;
/// The share of the step's size from the peers that the series' own
/// forecast must see too, for the peer test to call it alone.
pub(crate) const FORECAST_SHARE: f64 = 0.5;
/// Share of `h` a CUSUM must hold for the cell's evidence to lean its way.
pub(crate) const LEANS: f64 = 0.25;
/// Windows after a move's end during which a step back is its end.
pub(crate) const END_GRACE: i64 = 3;
/// Windows since a move was found, or since its last further step was
/// told, before evidence for a further step its way counts (the move
/// decided by then; where it stands is measured over its last six).
const FURTHER_AFTER: i64 = 6;
/// Windows a further step's fit must keep before its start, at where the
/// move stood.
const FURTHER_BEFORE: usize = 3;
/// Sweeps of the median polish.
const POLISH_SWEEPS: usize = 4;
/// The least surprise (standard deviations off the peers' expectation in
/// one window) [`PeerView::surprise`] reports: the stage asks far more.
const SURPRISE_MIN: f64 = 3.0;
/// The share of [`SURPRISE_MIN`] the normal approximation must reach for
/// the count's own tail to be worked out (a count's tails are not the
/// normal's: heavier above at a few lines, lighter below).
const PREFILTER_SHARE: f64 = 0.5;

/// One cell of a window's table: a category in a store.
#[derive(Debug, Clone)]
pub(crate) struct PeerCell<'a> {
    /// Index of its forecast in the window's group.
    pub idx: usize,
    /// `<category>|<store>`.
    pub key: &'a Arc<str>,
    /// Order lines in the window.
    pub lines: f64,
    /// Whether it may raise a call (history, level).
    pub eligible: bool,
    /// The lines of the series above it this window and what its peers
    /// made expected (see [`PeerView::lines`]; none for a category): a SKU
    /// in a store is surprising (see [`PeerView::surprise`]) only beyond
    /// the move of the rest of its category there.
    pub parent: Option<(f64, f64)>,
}

/// What the peer test says of a window.
#[derive(Debug, Default)]
pub(crate) struct PeerView {
    /// Climbs and slides called this window: (group index, direction,
    /// the move's log ratio, see [`moved`]).
    pub calls: Vec<(usize, Direction, f64)>,
    /// Cells the test covers this window (their forecast trend breaks
    /// defer to it), in the group's order, and the direction its evidence
    /// leans, if it holds at least [`LEANS`] of `h` that way or a move
    /// goes on that way.
    pub covered: Vec<(usize, Option<Direction>)>,
    /// Cells in a move, its direction, and its kind once decided.
    pub moving: Vec<(usize, Direction, Option<AlertKind>)>,
    /// Cells whose decided move ended within the last [`END_GRACE`]
    /// windows: its direction and kind, and windows since (0: this one).
    pub ended: Vec<(usize, Direction, AlertKind, i64)>,
    /// The store effects of the window's table (log), by store.
    pub stores: Vec<(String, f64)>,
    /// Steps told this window (of a table whose moves are classified).
    pub steps: Vec<Step>,
    /// Cells whose lines stray from what their peers make expected by at
    /// least [`SURPRISE_MIN`] standard deviations this window (Poisson's,
    /// times the cell's dispersion), in the group's order: (group index,
    /// that many standard deviations, signed). Only cells in no move and
    /// past learning, of a table whose moves are not classified (the
    /// SKUs': the stage reads no other).
    pub surprise: Vec<(usize, f64)>,
    /// Each covered cell's lines this window and what its peers made
    /// expected, in the group's order.
    pub lines: Vec<(usize, f64, f64)>,
}

/// A step the test told.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// Group index.
    pub idx: usize,
    /// Its way.
    pub direction: Direction,
    /// The best-fitting step's level, as a log ratio (a further step's:
    /// to where the move stood before it).
    pub level: f64,
    /// Windows since that step's start.
    pub since: usize,
    /// Windows since the move was found (a further step: since it was).
    pub age: i64,
    /// A further step of a move going on, its way (a second step on top
    /// of a first while the first stands, or at the top of a climb): where
    /// the move stood before it, as a log ratio (`from + level` is where
    /// the cell stands against its usual). None: a first step.
    pub further: Option<f64>,
}

impl Step {
    /// The step `fit` tells of the cell at group index `idx`, its way `d`.
    fn of(idx: usize, direction: Direction, fit: &Fit, age: i64, further: Option<f64>) -> Step {
        Step {
            idx,
            direction,
            level: fit.level,
            since: fit.since,
            age,
            further,
        }
    }
}

#[derive(Debug, Clone)]
struct Move {
    direction: Direction,
    /// Windows since it was found.
    age: i64,
    /// Its kind, once decided (a level shift or trend break).
    kind: Option<AlertKind>,
    /// CUSUM for being back at the expectation rather than where the
    /// move stood.
    back: f64,
    /// Where it stood over its last windows (log ratio to the
    /// expectation), at least `delta` its way.
    level: f64,
    /// CUSUM for a further step its way, beyond where it stood (a
    /// decided move only), windows since it was last 0, and where the
    /// move stood then.
    further: (f64, usize, f64),
    /// Windows since it was found or last told a further step.
    fresh: i64,
    /// A further step found, not yet told a step or not.
    pending: Option<Pending>,
}

/// A further step found (see [`Move::further`]), not yet told a step or
/// not.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The windows it is fitted on: since its evidence began, and
    /// [`FURTHER_AFTER`] before.
    windows: usize,
    /// Where the move stood before it (log ratio).
    was: f64,
    /// Windows since it was found.
    waited: i64,
}

#[derive(Debug, Default, Clone)]
struct Cell {
    up: f64,
    down: f64,
    /// Decayed sums for theta: residual x expected lines, expected lines.
    num: f64,
    den: f64,
    /// Decayed sum of quiet windows' squared Pearson residuals, and their
    /// weight: the lines' dispersion over Poisson.
    pearson: f64,
    weight: f64,
    learned: u32,
    /// (lines, expected lines) of the last windows.
    hist: VecDeque<(f64, f64)>,
    moving: Option<Move>,
    /// The last decided move's direction and kind, and windows since it
    /// ended.
    ended: Option<(Direction, AlertKind, i64)>,
    last_ms: i64,
}

impl PeerView {
    /// Whether the test covers the series at group index `idx` this
    /// window (None if not), and the way its evidence leans.
    pub(crate) fn lean(&self, idx: usize) -> Option<Option<Direction>> {
        // (Covered cells are in the group's order.)
        self.covered
            .binary_search_by_key(&idx, |c| c.0)
            .ok()
            .map(|k| self.covered[k].1)
    }

    /// The lines of the series at group index `idx` this window and what
    /// its peers made expected, if the test covers it.
    pub(crate) fn lines_of(&self, idx: usize) -> Option<(f64, f64)> {
        self.lines
            .binary_search_by_key(&idx, |l| l.0)
            .ok()
            .map(|k| (self.lines[k].1, self.lines[k].2))
    }

    /// How far the series at group index `idx` strays from its peers this
    /// window, in standard deviations, if at least [`SURPRISE_MIN`] (see
    /// [`PeerView::surprise`]).
    pub(crate) fn surprise(&self, idx: usize) -> Option<f64> {
        self.surprise
            .binary_search_by_key(&idx, |c| c.0)
            .ok()
            .map(|k| self.surprise[k].1)
    }
}

impl Cell {
    /// The lines' variance over their mean (at least 1, Poisson's): a
    /// category whose lines come in clumps scores each window's evidence
    /// down by it.
    fn dispersion(&self) -> f64 {
        if self.weight >= 1.0 {
            (self.pearson / self.weight).max(1.0)
        } else {
            1.0
        }
    }

    fn theta(&self) -> f64 {
        if self.den > 0.0 {
            self.num / self.den
        } else {
            0.0
        }
    }
}

/// The peer test's state: one cell per category and store.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    cells: FxHashMap<Arc<str>, Cell>,
}

/// Poisson log-likelihood ratio of `x` at `e * exp(delta)` against `e`.
fn llr(x: f64, e: f64, delta: f64) -> f64 {
    x * delta - e * delta.exp_m1()
}

/// Median polish of a rows x cols table (row-major): row and column
/// effects whose sums leave each cell's residual.
pub(crate) fn polish(table: &[f64], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut r = table.to_vec();
    let (mut a, mut b) = (vec![0.0; rows], vec![0.0; cols]);
    let mut buf = Vec::with_capacity(rows.max(cols));
    for _ in 0..POLISH_SWEEPS {
        for (i, ai) in a.iter_mut().enumerate() {
            buf.clear();
            buf.extend_from_slice(&r[i * cols..(i + 1) * cols]);
            let m = median(&mut buf);
            *ai += m;
            r[i * cols..(i + 1) * cols].iter_mut().for_each(|v| *v -= m);
        }
        for (j, bj) in b.iter_mut().enumerate() {
            buf.clear();
            buf.extend((0..rows).map(|i| r[i * cols + j]));
            let m = median(&mut buf);
            *bj += m;
            (0..rows).for_each(|i| r[i * cols + j] -= m);
        }
    }
    (a, b)
}

/// Log-likelihood of `hist` with expectations scaled by `m(i)`.
fn loglik(hist: &[(f64, f64)], m: impl Fn(usize) -> f64) -> f64 {
    hist.iter()
        .enumerate()
        .map(|(i, &(x, e))| {
            let mu = (e * m(i)).max(1e-9);
            x * mu.ln() - mu
        })
        .sum()
}

/// How the cell's last windows fit a step against a ramp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fit {
    /// How much better (log-likelihood) the best step fits than the best
    /// ramp, each with its best start; positive: a step.
    pub margin: f64,
    /// The best step's level after its start (log ratio).
    pub level: f64,
    /// Windows since the best step's start.
    pub since: usize,
}

/// The best step of `hist`: its log-likelihood, level (log ratio) and
/// windows since its start.
fn best_step(hist: &[(f64, f64)]) -> (f64, f64, usize) {
    let mut best = (f64::NEG_INFINITY, 0.0, 0);
    for c in 0..hist.len() {
        let (sx, se) = hist[c..]
            .iter()
            .fold((0.0, 0.0), |s, &(x, e)| (s.0 + x, s.1 + e));
        let level = sx / se.max(1e-9);
        let ll = loglik(hist, |i| if i < c { 1.0 } else { level });
        if ll > best.0 {
            best = (ll, level.max(1e-9).ln(), hist.len() - c);
        }
    }
    best
}

/// The log-likelihood of the best ramp of `hist` (a straight climb or
/// slide from its best start).
fn best_ramp(hist: &[(f64, f64)]) -> f64 {
    let mut ramp = f64::NEG_INFINITY;
    for c in 0..hist.len() {
        for k in (-40..=40).filter(|k| *k != 0) {
            let slope = 0.005 * k as f64;
            let m = |i: usize| {
                if i < c {
                    1.0
                } else {
                    (1.0 + slope * (i - c + 1) as f64).max(0.02)
                }
            };
            ramp = ramp.max(loglik(hist, m));
        }
    }
    ramp
}

/// The step-or-ramp fit of the cell's last windows.
pub(crate) fn fit(hist: &[(f64, f64)]) -> Fit {
    let (step, level, since) = best_step(hist);
    Fit {
        margin: step - best_ramp(hist),
        level,
        since,
    }
}

impl Peers {
    /// Test one window's cells (all of one window start, first emissions
    /// only: a revision would count twice), with the CUSUM's shift
    /// `delta` (log) and threshold `h`.
    pub(crate) fn observe(
        &mut self,
        cells: &[PeerCell<'_>],
        at_ms: i64,
        delta: f64,
        h: f64,
    ) -> PeerView {
        let mut view = PeerView::default();
        // The table: categories by stores; a cell with no forecast this
        // window sold nothing.
        let mut cats: Vec<&str> = Vec::new();
        let mut stores: Vec<&str> = Vec::new();
        let mut at = Vec::with_capacity(cells.len());
        for c in cells {
            let Some((cat, store)) = c.key.split_once('|') else {
                at.push(None);
                continue;
            };
            let ci = cats.iter().position(|x| *x == cat).unwrap_or_else(|| {
                cats.push(cat);
                cats.len() - 1
            });
            let si = stores.iter().position(|x| *x == store).unwrap_or_else(|| {
                stores.push(store);
                stores.len() - 1
            });
            at.push(Some((ci, si)));
        }
        let (rows, cols) = (cats.len(), stores.len());
        if rows < 3 || cols < 3 {
            return view;
        }
        let mut table = vec![0.5f64.ln(); rows * cols];
        for (c, pos) in cells.iter().zip(&at) {
            if let Some((i, j)) = pos {
                table[i * cols + j] = (c.lines.max(0.0) + 0.5).ln();
            }
        }
        let (a, b) = polish(&table, rows, cols);
        view.stores = stores
            .iter()
            .map(|s| s.to_string())
            .zip(b.iter().copied())
            .collect();
        for (c, pos) in cells.iter().zip(&at) {
            let Some((i, j)) = *pos else { continue };
            let own = table[i * cols + j] - a[i] - b[j];
            self.test(&mut view, c, (a[i] + b[j], own), at_ms, (delta, h), true);
        }
        view
    }

    /// Test one window's cells of a finer table (SKUs by stores, keys
    /// `<sku>|<store>`) against the store effects `stores` of the same
    /// window's category table: each row's effect is the median over its
    /// stores of its log lines less the store's effect. Lean only: its
    /// moves are not told steps from climbs, and it calls nothing.
    pub(crate) fn observe_within(
        &mut self,
        cells: &[PeerCell<'_>],
        stores: &[(String, f64)],
        at_ms: i64,
        (delta, h): (f64, f64),
    ) -> PeerView {
        let mut view = PeerView::default();
        // Each cell's log lines less its store's effect, and that effect,
        // by row.
        let mut rows: FxHashMap<&str, Vec<(usize, f64, f64)>> = FxHashMap::default();
        for (n, c) in cells.iter().enumerate() {
            let Some((row, store)) = c.key.split_once('|') else {
                continue;
            };
            let Some(&(_, b)) = stores.iter().find(|(s, _)| s == store) else {
                continue;
            };
            rows.entry(row)
                .or_default()
                .push((n, (c.lines.max(0.0) + 0.5).ln() - b, b));
        }
        let mut buf = Vec::new();
        let mut tested: Vec<(usize, f64, f64)> = Vec::new();
        for row in rows.values().filter(|r| r.len() >= 3) {
            buf.clear();
            buf.extend(row.iter().map(|r| r.1));
            let a = median(&mut buf);
            tested.extend(row.iter().map(|&(n, v, b)| (n, a + b, v - a)));
        }
        // (In the cells' order, so the view is too.)
        tested.sort_by_key(|t| t.0);
        for (n, base, own) in tested {
            self.test(&mut view, &cells[n], (base, own), at_ms, (delta, h), false);
        }
        view
    }

    /// One cell's window: `base` its peers' effects (log), `own` what is
    /// its own this window; `classify`: tell a move's steps from climbs.
    fn test(
        &mut self,
        view: &mut PeerView,
        c: &PeerCell<'_>,
        (base, own): (f64, f64),
        at_ms: i64,
        (delta, h): (f64, f64),
        classify: bool,
    ) {
        let cell = self.cells.entry(c.key.clone()).or_default();
        cell.last_ms = at_ms;
        if let Some((d, kind, age)) = cell.ended.as_mut() {
            *age += 1;
            if *age <= END_GRACE {
                view.ended.push((c.idx, *d, *kind, *age));
            } else {
                cell.ended = None;
            }
        }
        let e = (base + cell.theta()).exp();
        if e < MIN_EXPECTED {
            return;
        }
        let x = c.lines.max(0.0);
        let phi = cell.dispersion();
        let covered = view.covered.len();
        view.covered.push((c.idx, None));
        view.lines.push((c.idx, x, e));
        cell.hist.push_back((x, e));
        if cell.hist.len() > FIT_WINDOWS {
            cell.hist.pop_front();
        }
        if cell.learned < LEARN_WINDOWS {
            learn(cell, own, (x, e));
            return;
        }
        if let Some(m) = cell.moving.as_mut() {
            view.covered[covered].1 = Some(m.direction);
            m.age += 1;
            m.fresh += 1;
            // Evidence for being back at the expectation rather than
            // where the move stood.
            m.back = (m.back - llr(x, e, m.level) / phi).max(0.0);
            let d = m.direction;
            // And for a further step its way (of a decided move, in a
            // table whose moves are classified), once where it stands
            // has been measured on windows of its own, one step at a time.
            if classify && m.kind.is_some() && m.pending.is_none() && m.fresh > FURTHER_AFTER {
                if m.further.0 <= 0.0 {
                    m.further.2 = m.level;
                }
                let further = llr(x, e * m.level.exp(), d.sign() * delta) / phi;
                m.further.0 = (m.further.0 + further).max(0.0);
                m.further.1 = if m.further.0 > 0.0 {
                    m.further.1 + 1
                } else {
                    0
                };
            }
            if m.kind.is_none() {
                if let Some((kind, fit)) = decide(cell, c.eligible) {
                    if kind == AlertKind::TrendBreak {
                        view.calls.push((c.idx, d, moved(&cell.hist, 6)));
                    } else if classify {
                        let age = cell.moving.as_ref().map_or(0, |m| m.age);
                        view.steps.push(Step::of(c.idx, d, &fit, age, None));
                    }
                    if let Some(m) = cell.moving.as_mut() {
                        m.kind = Some(kind);
                    }
                }
            } else if classify
                && m.kind == Some(AlertKind::LevelShift)
                && m.age <= RECONSIDER_WINDOWS
                && c.eligible
                && fit(cell.hist.make_contiguous()).margin <= -RAMP_MARGIN
            {
                // A step that keeps climbing is a climb.
                view.calls.push((c.idx, d, moved(&cell.hist, 6)));
                if let Some(m) = cell.moving.as_mut() {
                    m.kind = Some(AlertKind::TrendBreak);
                }
            }
            let Some(m) = cell.moving.as_mut() else {
                return;
            };
            // A further step its way is told a step once a step beyond
            // where the move stood fits the windows since better than a
            // ramp, as a move is (see `decide`); one a ramp fits better
            // (a climb going on) is not.
            if m.further.0 > h && m.back <= 0.0 {
                m.pending = Some(Pending {
                    windows: m.further.1 + FURTHER_AFTER as usize,
                    was: m.further.2,
                    waited: 0,
                });
                m.further = (0.0, 0, 0.0);
            }
            if let Some(mut p) = m.pending {
                let f = fit_from(&cell.hist, p.windows, p.was);
                let its_way = f.level * d.sign() >= delta && f.since + FURTHER_BEFORE <= p.windows;
                m.pending = None;
                if its_way && f.margin >= STEP_MARGIN {
                    m.fresh = 0;
                    if c.eligible {
                        view.steps
                            .push(Step::of(c.idx, d, &f, p.waited, Some(p.was)));
                    }
                } else if f.margin > -RAMP_MARGIN && p.waited < DECIDE_WINDOWS {
                    p.windows = (p.windows + 1).min(FIT_WINDOWS);
                    p.waited += 1;
                    m.pending = Some(p);
                }
            }
            if m.back > h {
                if let Some(kind) = m.kind {
                    view.ended.push((c.idx, d, kind, 0));
                    cell.ended = Some((d, kind, 0));
                }
                cell.moving = None;
            } else if m.age >= SETTLE_WINDOWS {
                // The new normal: its own part is where it now stands.
                let th = cell.theta() + moved(&cell.hist, FIT_WINDOWS);
                cell.num = th * cell.den.max(1.0);
                cell.den = cell.den.max(1.0);
                cell.moving = None;
            } else {
                view.moving.push((c.idx, d, m.kind));
                // (Not while it may be ending: its last windows are
                // then no measure of where it stood.)
                let level = stood(cell, d, delta);
                if let Some(m) = cell.moving.as_mut().filter(|m| m.back <= 0.0) {
                    m.level = level;
                }
            }
            return;
        }
        if !classify {
            if let Some(z) = surprise(c, (x, e), phi) {
                view.surprise.push((c.idx, z));
            }
        }
        cell.up = (cell.up + llr(x, e, delta) / phi).max(0.0);
        cell.down = (cell.down + llr(x, e, -delta) / phi).max(0.0);
        view.covered[covered].1 = if cell.up >= LEANS * h && cell.up >= cell.down {
            Some(Direction::Up)
        } else if cell.down >= LEANS * h {
            Some(Direction::Down)
        } else {
            None
        };
        let found = if cell.up > h {
            Some(Direction::Up)
        } else if cell.down > h {
            Some(Direction::Down)
        } else {
            None
        };
        if let Some(direction) = found {
            cell.up = 0.0;
            cell.down = 0.0;
            // Steps are the forecast's change detector's to call (it
            // does within a window or two); only climbs and slides are
            // called here.
            // (Unclassified, any move stands as a step.)
            let fit = classify.then(|| fit(cell.hist.make_contiguous()));
            let step = fit.is_none_or(|f| f.margin >= STEP_MARGIN);
            let kind = step.then_some(AlertKind::LevelShift);
            if let Some(f) = fit.filter(|_| step && c.eligible) {
                view.steps.push(Step::of(c.idx, direction, &f, 0, None));
            }
            cell.moving = Some(Move {
                direction,
                age: 0,
                kind,
                back: 0.0,
                level: stood(cell, direction, delta),
                further: (0.0, 0, 0.0),
                fresh: 0,
                pending: None,
            });
            view.moving.push((c.idx, direction, kind));
        } else if cell.up < QUIET_CUSUM && cell.down < QUIET_CUSUM {
            learn(cell, own, (x, e));
        }
    }

    /// Forget cells not seen since `before_ms`.
    pub(crate) fn prune(&mut self, before_ms: i64) {
        self.cells.retain(|_, c| c.last_ms >= before_ms);
    }
}

/// Learn a quiet window's own part of the cell, and its dispersion from
/// its lines `x` against their expectation `e`.
fn learn(cell: &mut Cell, resid: f64, (x, e): (f64, f64)) {
    let keep = 1.0 - 1.0 / THETA_WINDOWS;
    cell.num = cell.num * keep + resid * e;
    cell.den = cell.den * keep + e;
    cell.pearson = cell.pearson * keep + (x - e).powi(2) / e.max(1.0);
    cell.weight = cell.weight * keep + 1.0;
    cell.learned = cell.learned.saturating_add(1);
}

/// How far (standard deviations, signed) a cell's lines `x` stray from
/// their expectation `e` in one window, as a count with dispersion `phi`,
/// if at least [`SURPRISE_MIN`]. The rest of the series above it moving
/// as far its way makes the move no surprise (a category stepping up in
/// its best seller too); only its way: the rest's own noise is no
/// evidence.
fn surprise(c: &PeerCell<'_>, (x, e): (f64, f64), phi: f64) -> Option<f64> {
    let rest = c.parent.and_then(|p| rest_ratio(p, (x, e))).unwrap_or(1.0);
    let es = e * if x > e { rest.max(1.0) } else { rest.min(1.0) };
    // (The normal approximation first, to spare the tail's cost on the
    // many cells near their expectation.)
    if (x - es).abs() < PREFILTER_SHARE * SURPRISE_MIN * (phi * es).sqrt() {
        return None;
    }
    Some(count_z(x, es, phi)).filter(|z| z.abs() >= SURPRISE_MIN)
}

/// The rest of a series' lines, `part`'s left out, against what the peers
/// made expected of that rest, both `(lines, expected lines)`; None when
/// too few lines are expected of the rest to tell ([`MIN_EXPECTED`]).
pub(crate) fn rest_ratio((x, e): (f64, f64), (part_x, part_e): (f64, f64)) -> Option<f64> {
    (e - part_e >= MIN_EXPECTED).then(|| ((x - part_x).max(0.0) + 0.5) / (e - part_e))
}

/// The step-or-ramp fit of the last `n` windows of `hist`, their
/// expectations times `exp(was)`: beyond where a move stood.
fn fit_from(hist: &VecDeque<(f64, f64)>, n: usize, was: f64) -> Fit {
    let scaled: Vec<(f64, f64)> = hist
        .iter()
        .skip(hist.len().saturating_sub(n))
        .map(|&(x, e)| (x, e * was.exp()))
        .collect();
    fit(&scaled)
}

/// The kind of an undecided move, once the fit tells (or it has waited
/// long enough), and the fit; None: wait.
fn decide(cell: &mut Cell, eligible: bool) -> Option<(AlertKind, Fit)> {
    let age = cell.moving.as_ref()?.age;
    let fit = fit(cell.hist.make_contiguous());
    let margin = fit.margin;
    let kind = if margin >= STEP_MARGIN {
        AlertKind::LevelShift
    } else if margin <= -RAMP_MARGIN {
        AlertKind::TrendBreak
    } else if age >= DECIDE_WINDOWS {
        if margin >= 0.0 {
            AlertKind::LevelShift
        } else {
            AlertKind::TrendBreak
        }
    } else {
        return None;
    };
    eligible.then_some((kind, fit))
}

/// A move: the log ratio of a cell's lines to their expectation over its
/// last `n` windows of `hist`.
fn moved(hist: &VecDeque<(f64, f64)>, n: usize) -> f64 {
    let (sx, se) = hist
        .iter()
        .rev()
        .take(n)
        .fold((0.0, 0.0), |s, p| (s.0 + p.0, s.1 + p.1));
    ((sx + 0.5) / (se + 0.5)).ln()
}

/// Where a move `d` stands: its last few windows' log ratio, at least
/// `delta` its way.
fn stood(cell: &Cell, d: Direction, delta: f64) -> f64 {
    d.sign() * moved(&cell.hist, 6).abs().max(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys `<row>-<r>|store-<s>` of a rows x stores table.
    fn grid(row: &str, rows: usize, stores: usize) -> Vec<Vec<Arc<str>>> {
        (0..rows)
            .map(|r| {
                (0..stores)
                    .map(|s| Arc::from(format!("{row}-{r}|store-{s}")))
                    .collect()
            })
            .collect()
    }

    /// Six categories in five stores: each cell's lines are its category's
    /// weight times its store's times `scale`, with `shape(cat, store, w)`
    /// multiplying cell by cell.
    fn run(windows: i64, shape: impl Fn(usize, usize, i64) -> f64) -> Vec<(i64, PeerView)> {
        let keys = grid("cat", 6, 5);
        let mut peers = Peers::default();
        (0..windows)
            .map(|w| {
                // A day's shape all stores share.
                let scale = 1.0 + 0.5 * (w as f64 / 40.0).sin();
                let cells: Vec<PeerCell> = (0..6)
                    .flat_map(|c| (0..5).map(move |s| (c, s)))
                    .enumerate()
                    .map(|(idx, (c, s))| PeerCell {
                        idx,
                        key: &keys[c][s],
                        lines: (40.0 * (1.0 + c as f64) / (1.0 + s as f64)
                            * scale
                            * shape(c, s, w))
                        .round(),
                        eligible: true,
                        parent: None,
                    })
                    .collect();
                (w, peers.observe(&cells, w * 300_000, 0.2, 12.0))
            })
            .collect()
    }

    /// Index of cell (category, store) in `run`'s windows.
    fn at(c: usize, s: usize) -> usize {
        c * 5 + s
    }

    fn calls(views: &[(i64, PeerView)]) -> Vec<(i64, usize, AlertKind, Direction)> {
        views
            .iter()
            .flat_map(|(w, v)| {
                v.calls
                    .iter()
                    .map(move |c| (*w, c.0, AlertKind::TrendBreak, c.1))
            })
            .collect()
    }

    #[test]
    fn the_polish_leaves_one_cells_move_to_that_cell() {
        // Rows times columns in logs, one cell four times its share.
        let (rows, cols) = (5, 4);
        let mut t: Vec<f64> = (0..rows * cols)
            .map(|k| (k / cols) as f64 * 0.3 + (k % cols) as f64 * -0.2)
            .collect();
        t[2 * cols + 1] += 4f64.ln();
        let (a, b) = polish(&t, rows, cols);
        for k in 0..rows * cols {
            let resid = t[k] - a[k / cols] - b[k % cols];
            let want = if k == 2 * cols + 1 { 4f64.ln() } else { 0.0 };
            assert!((resid - want).abs() < 1e-9, "cell {k}: {resid}");
        }
    }

    #[test]
    fn a_step_fits_as_a_step_and_a_climb_as_a_climb() {
        let step: Vec<(f64, f64)> = (0..30)
            .map(|i| (if i < 20 { 100.0 } else { 180.0 }, 100.0))
            .collect();
        assert!(fit(&step).margin >= STEP_MARGIN, "{:?}", fit(&step));
        let climb: Vec<(f64, f64)> = (0..30)
            .map(|i| (100.0 * (1.0 + 0.03 * (i as f64 - 17.0).max(0.0)), 100.0))
            .collect();
        assert!(fit(&climb).margin <= -RAMP_MARGIN, "{:?}", fit(&climb));
    }

    #[test]
    fn a_quiet_table_raises_nothing() {
        let views = run(300, |_, _, _| 1.0);
        assert!(calls(&views).is_empty());
        assert!(views.iter().all(|(_, v)| v.moving.is_empty()));
    }

    #[test]
    fn a_climb_of_one_category_in_one_store_is_one_trend_break() {
        // cat-2 in store-1 climbs 3% of its level a window from window 100.
        let views = run(200, |c, s, w| {
            if (c, s) == (2, 1) && w >= 100 {
                1.0 + 0.03 * (w - 99) as f64
            } else {
                1.0
            }
        });
        let got = calls(&views);
        assert_eq!(got.len(), 1, "{got:?}");
        let (w, idx, kind, d) = got[0];
        assert_eq!(
            (idx, kind, d),
            (at(2, 1), AlertKind::TrendBreak, Direction::Up)
        );
        assert!((100..125).contains(&w), "called at {w}");
    }

    #[test]
    fn a_step_of_one_cell_is_told_a_level_shift_at_once_and_its_end_ends_it() {
        let views = run(260, |c, s, w| {
            if (c, s) == (4, 3) && (100..200).contains(&w) {
                0.5
            } else {
                1.0
            }
        });
        // Told a step as soon as found (no call of its own: the
        // forecast's change detector calls steps), or a window or two
        // later (then called here).
        let got = calls(&views);
        assert!(got.len() <= 1, "{got:?}");
        assert!(
            got.iter().all(|c| (c.1, c.2, c.3)
                == (at(4, 3), AlertKind::LevelShift, Direction::Down)
                && (100..106).contains(&c.0)),
            "{got:?}"
        );
        let found: Vec<(i64, Direction, Option<AlertKind>)> = views
            .iter()
            .flat_map(|(w, v)| {
                v.moving
                    .iter()
                    .filter(|m| m.0 == at(4, 3))
                    .map(move |m| (*w, m.1, m.2))
            })
            .collect();
        assert!((100..106).contains(&found[0].0), "found at {}", found[0].0);
        assert!(found.iter().all(|m| m.1 == Direction::Down));
        assert_eq!(found.last().map(|m| m.2), Some(Some(AlertKind::LevelShift)));
        // The step is reported once, with its size and start.
        let steps: Vec<(i64, usize, Direction, (f64, usize))> = views
            .iter()
            .flat_map(|(w, v)| {
                v.steps
                    .iter()
                    .map(move |s| (*w, s.idx, s.direction, (s.level, s.since)))
            })
            .collect();
        assert_eq!(steps.len(), 1, "{steps:?}");
        let (w, idx, d, (level, since)) = steps[0];
        assert_eq!((idx, d), (at(4, 3), Direction::Down));
        assert!((level - 0.5f64.ln()).abs() < 0.1, "{level}");
        assert_eq!(w + 1 - since as i64, 100, "{steps:?}");
        let ended: Vec<i64> = views
            .iter()
            .filter(|(_, v)| v.ended.iter().any(|e| e.0 == at(4, 3) && e.3 == 0))
            .map(|(w, _)| *w)
            .collect();
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert!((200..203).contains(&ended[0]), "ended at {}", ended[0]);
    }

    #[test]
    fn a_step_that_keeps_climbing_is_a_climb() {
        // cat-1 in store-2 steps to 2x at window 100, holds there for
        // twelve windows, then climbs 10% of its level a window.
        let views = run(200, |c, s, w| {
            if (c, s) == (1, 2) && w >= 100 {
                2.0 + 0.1 * (w - 112).max(0) as f64
            } else {
                1.0
            }
        });
        let kinds: Vec<(i64, Option<AlertKind>)> = views
            .iter()
            .flat_map(|(w, v)| {
                v.moving
                    .iter()
                    .filter(|m| m.0 == at(1, 2))
                    .map(move |m| (*w, m.2))
            })
            .collect();
        let first = kinds.iter().find_map(|k| k.1);
        assert_eq!(first, Some(AlertKind::LevelShift), "{kinds:?}");
        let got = calls(&views);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].1, got[0].3), (at(1, 2), Direction::Up));
        assert!((112..136).contains(&got[0].0), "called at {}", got[0].0);
        // (Its climb beyond where the step stood is no further step.)
        assert!(further(&views).is_empty(), "{:?}", further(&views));
    }

    /// The further steps told: (window, group index, level, windows since
    /// its start).
    fn further(views: &[(i64, PeerView)]) -> Vec<(i64, usize, f64, usize)> {
        views
            .iter()
            .flat_map(|(w, v)| {
                v.steps
                    .iter()
                    .filter(|s| s.further.is_some())
                    .map(move |s| (*w, s.idx, s.level, s.since))
            })
            .collect()
    }

    #[test]
    fn a_step_on_a_step_or_at_the_top_of_a_climb_is_a_further_step() {
        // cat-4 in store-3 steps to 2x at window 100 and on to 3.6x at
        // 160; cat-2 in store-1 climbs to 2x over 36 windows from window
        // 100 and steps on to 3.6x at 136; cat-1 in store-0 climbs to 2x
        // and stays.
        let views = run(220, |c, s, w| match (c, s) {
            (4, 3) if w >= 160 => 3.6,
            (4, 3) if w >= 100 => 2.0,
            (2, 1) | (1, 0) if (100..136).contains(&w) => 1.0 + (w - 99) as f64 / 36.0,
            (2, 1) if w >= 136 => 3.6,
            (2, 1) | (1, 0) if w >= 136 => 2.0,
            _ => 1.0,
        });
        let got = further(&views);
        assert_eq!(got.len(), 2, "{got:?}");
        for (&(w, idx, level, since), (cell, start)) in
            got.iter().zip([(at(2, 1), 136), (at(4, 3), 160)])
        {
            assert_eq!(idx, cell, "{got:?}");
            assert!((start..start + 4).contains(&w), "{got:?}");
            assert_eq!(w + 1 - since as i64, start, "{got:?}");
            assert!((level - 1.8f64.ln()).abs() < 0.15, "{got:?}");
        }
        // The first step is told as before, once.
        let first: Vec<(i64, bool)> = views
            .iter()
            .flat_map(|(w, v)| {
                v.steps
                    .iter()
                    .filter(|s| s.idx == at(4, 3))
                    .map(move |s| (*w, s.further.is_some()))
            })
            .collect();
        assert!(
            first.len() == 2 && !first[0].1 && (100..103).contains(&first[0].0),
            "{first:?}"
        );
        // The climbs are called as before, once each.
        let climbs: Vec<usize> = calls(&views).iter().map(|c| c.1).collect();
        assert_eq!(climbs, [at(1, 0), at(2, 1)], "{climbs:?}");
    }

    #[test]
    fn a_store_or_a_category_moving_as_a_whole_is_no_cells_move() {
        // store-2 doubles from window 100, cat-5 halves everywhere from 150.
        let views = run(260, |c, s, w| {
            let store = if s == 2 && w >= 100 { 2.0 } else { 1.0 };
            let cat = if c == 5 && w >= 150 { 0.5 } else { 1.0 };
            store * cat
        });
        assert!(calls(&views).is_empty(), "{:?}", calls(&views));
    }

    #[test]
    fn a_sku_leans_on_its_own_move_not_on_its_move_in_every_store() {
        // Four SKUs in five stores whose traffic differs: sku-0 doubles in
        // every store from window 100 (a promotion), sku-2 in store-3
        // only from window 150.
        let stores: Vec<(String, f64)> = (0..5)
            .map(|s| (format!("store-{s}"), -(s as f64) * 0.2))
            .collect();
        let keys = grid("sku", 4, 5);
        let mut peers = Peers::default();
        let mut lean = Vec::new();
        for w in 0..200 {
            let cells: Vec<PeerCell> = (0..4)
                .flat_map(|k| (0..5).map(move |s| (k, s)))
                .enumerate()
                .map(|(idx, (k, s))| {
                    let promo = if k == 0 && w >= 100 { 2.0 } else { 1.0 };
                    let own = if (k, s) == (2, 3) && w >= 150 {
                        2.0
                    } else {
                        1.0
                    };
                    PeerCell {
                        idx,
                        key: &keys[k][s],
                        lines: (100.0 / (1.0 + k as f64) * stores[s].1.exp() * promo * own).round(),
                        eligible: true,
                        parent: None,
                    }
                })
                .collect();
            let v = peers.observe_within(&cells, &stores, w * 300_000, (0.2, 12.0));
            assert!(v.calls.is_empty());
            lean.extend(v.covered.iter().filter_map(|c| c.1.map(|d| (w, c.0, d))));
        }
        // Only sku-2 in store-3 leans, up, from a window or two after 150.
        assert!(!lean.is_empty());
        assert!(
            lean.iter()
                .all(|&(w, idx, d)| idx == 2 * 5 + 3 && d == Direction::Up && w >= 150),
            "{lean:?}"
        );
        assert!(lean[0].0 <= 152, "{lean:?}");
    }

    /// The surprise of sku-0 in store-0 (see [`PeerView::surprise`]) in
    /// the window where it sells five times its lines, its category there
    /// selling `rest` times its other lines with it.
    fn burst_against(rest: f64) -> Option<f64> {
        let stores: Vec<(String, f64)> = (0..4).map(|s| (format!("store-{s}"), 0.0)).collect();
        let keys = grid("sku", 3, 4);
        let mut peers = Peers::default();
        let mut at = None;
        for w in 0..101 {
            let burst = w == 100;
            let cells: Vec<PeerCell> = (0..3)
                .flat_map(|k| (0..4).map(move |s| (k, s)))
                .enumerate()
                .map(|(idx, (k, s))| {
                    // Each SKU sells a quarter of its category's 120.
                    let mine = (k, s) == (0, 0) && burst;
                    let lines = 30.0 + ((w * 7 + idx * 3) % 5) as f64 - 2.0;
                    let rest = if s == 0 && burst { 90.0 * rest } else { 90.0 };
                    PeerCell {
                        idx,
                        key: &keys[k][s],
                        lines: if mine { 5.0 * lines } else { lines },
                        eligible: true,
                        parent: Some((rest + if mine { 5.0 * lines } else { lines }, 120.0)),
                    }
                })
                .collect();
            let v = peers.observe_within(&cells, &stores, w as i64 * 300_000, (0.2, 12.0));
            at = v.surprise(0);
            assert!(burst || v.surprise.is_empty(), "{w}: {:?}", v.surprise);
        }
        at
    }

    #[test]
    fn a_skus_burst_surprises_beyond_the_rest_of_its_category_only() {
        // Alone in its category it is far out; with the rest of the
        // category five times as busy too, it is the category's move.
        assert!(
            burst_against(1.0).is_some_and(|z| z > 10.0),
            "{:?}",
            burst_against(1.0)
        );
        assert_eq!(burst_against(5.0), None);
    }
}
