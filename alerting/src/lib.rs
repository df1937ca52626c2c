//! # salescast-alerting
//!
//! Watches every closed window at every level against what its series'
//! previous forecast expected, and raises alerts an operator can act on:
//!
//! - `spike` / `drop`: the actual falls well outside the calibrated p10-p90
//!   band *and* its score is extreme: the actual's tail probability under a
//!   quasi-Poisson around the bias-corrected forecast (dispersion from the
//!   series' recent residuals, median/MAD), as a normal z ([`tails`]),
//!   divided by the series' tail scale (bursty series need bigger jumps);
//! - `drop_to_zero`: nothing sold where the series normally sells, raised in
//!   the window it happens;
//! - `level_shift`: a two-sided CUSUM over those scores, for material
//!   changes only; a shift is called once, and the windows that follow in
//!   the same direction are part of it (no spike or drop per window) until
//!   the residuals settle. A step the forecast followed within a window or
//!   two (its band wide, at night) is called against the same time a day
//!   earlier instead (see `trend_break`): a run of windows that jumped from
//!   the usual ratio, or the trend CUSUM summing flat deviations confirmed
//!   against two days before as well;
//! - `trend_break`: the units against the same time a day earlier climb or
//!   slide away from their usual ratio (a CUSUM of the deviations, which
//!   must rise), on series with a shape over the day.
//!
//! **Root cause across the hierarchy.** Candidates of one window are
//! grouped top-down (total, store, category x store, SKU x store): a
//! candidate absorbs its descendants that broke in the same direction, and
//! one alert is raised at the highest level that explains them, listing the
//! affected children. A SKU that breaks alone alerts on its own.
//!
//! **Revisions.** A revised window is re-scored; an alert that no longer
//! holds is followed by the same alert with `status: "retracted"`. A level
//! shift that a later one undoes is followed by itself with
//! `status: "resolved"` (not a new alert).
//!
//! **Not news.** A rise a promotion explains, and a spike or drop at the
//! same time of day as on each of the two days before (the series' shape
//! recurring), raise nothing.
//!
//! Cooldown per series and kind; an alert's id is stable (series, kind,
//! window start), so every delivery is idempotent. The JSON contract is in
//! `docs/alerts.md`. The stage is pure: time comes from window bounds.
#![warn(missing_docs)]

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use salescast_inference::Forecast;
use salescast_stream_core::Level;

mod alert;
mod config;
mod excursion;
pub mod nab;
pub mod novelty;
mod peer;
mod promoted;
mod root_cause;
mod series;
pub mod tails;
mod trend;
mod weekly;

pub use alert::{fmt_utc, Alert, AlertKind, Child, Direction, Severity, Status};
pub use config::Config;
use excursion::{Cover, Excursion};
use novelty::Novelty;
use series::*;
use trend::*;

/// Errors of the alerting stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration. Not retryable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A webhook delivery failed for good (after its retries). Not retryable
    /// here: the alert went to the webhook dead-letter file.
    #[error("webhook {url}: {reason}")]
    Webhook {
        /// The webhook.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// I/O on a dead-letter file. Retryable once the disk is fixed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A window's verdict before grouping: its kind, direction and score.
pub(crate) type Verdict = (AlertKind, Direction, f64);

/// A series' verdict on one window, before grouping and cooldown.
#[derive(Debug, Clone)]
struct Candidate {
    idx: usize,
    kind: AlertKind,
    direction: Direction,
    score: f64,
    z: f64,
    /// It takes part in root-cause grouping (a parent that moved because
    /// of it defers to it; its children are its consequence) but raises
    /// nothing: it continues a move already alerted, or the series' shape
    /// recurs (see [`Candidate::quiet`]).
    silent: bool,
    /// Silent only as an echo, and of what (see [`EchoOnly`]).
    echo_only: EchoOnly,
    /// It passed the series' z-threshold but not its level's (see
    /// `family-wise-correction`): it alerts only as the root cause a
    /// candidate above it defers to, never on its own.
    weak: bool,
    /// Out of its band by a spike's or drop's margin but short of the
    /// series' z-threshold (at least [`LEAN_Z_SHARE`] of it), on a series
    /// with series below it: it stands only as a root cause, where a
    /// child breaks with it and does not explain it alone, or where a
    /// candidate above it defers to it (a category that rose 1.6x with its
    /// best seller, its score just short; see `root_cause`).
    lean: bool,
    /// A promotion explains it: silent too, unless children no promotion
    /// explains broke with it (grouping then clears this).
    promo: bool,
    /// A trend break's (or a level shift against the day before's) move:
    /// the mean log ratio to a period earlier, less the usual one, over the
    /// windows it was measured on, and how many.
    trend: Option<(f64, u32)>,
    /// Which alert its series' move is part of, if any.
    cover: Cover,
    /// A spike or drop within the series' usual range (see
    /// `usual-range-windows`): silent, and its move is accounted for
    /// all the same, so its windows and its way back raise nothing either.
    usual: bool,
    /// Called by the peer test (see `peer`): the move's log ratio to what
    /// the category's peers make expected.
    peer: Option<f64>,
}

impl Candidate {
    /// A candidate of group index `idx` with nothing special about it.
    fn plain(idx: usize, kind: AlertKind, direction: Direction, score: f64) -> Self {
        Candidate {
            idx,
            kind,
            direction,
            score,
            z: 0.0,
            silent: false,
            echo_only: EchoOnly::No,
            weak: false,
            lean: false,
            promo: false,
            trend: None,
            cover: Cover::None,
            usual: false,
            peer: None,
        }
    }

    /// It raises nothing of its own (silent, or a promotion explains it).
    fn quiet(&self) -> bool {
        self.silent || self.promo
    }
}

/// A move out of the band where the series moved the other way one
/// `recurring-period-ms` before with an outage (a `drop_to_zero`), or
/// with another series' alert explaining it, or two periods before with
/// any move that was news, is that move's echo in the
/// forecast (the window, clipped in the forecaster's history, still pulls
/// the next period's expectation its way: by a fifth at seed 10's app-de,
/// by nearly half where the store was out two days running), and raises
/// nothing, only while the units stay within this factor of the newest
/// window's inside the band: the series itself went on as it was. A real
/// spike, or a shift, jumps.
const OUTAGE_ECHO_MAX: f64 = 1.5;

/// How far from the same time one and two `recurring-period-ms` before a
/// spike or drop the same way still makes the series' shape recurring,
/// as a share of the period (a quarter of an hour of a day; at least one
/// window). NAB's ec2_cpu_utilization_24ae8d bursts once a day, 284 to
/// 291 five-minute rows apart (a day is 288).
const RECURRING_NEAR: f64 = 1.0 / 96.0;

/// An outage (a `drop_to_zero` already raised) goes on through windows
/// that sell at most this share of their expected median: a line or two
/// straggling in (seed 17's web-uk sold 2 units against 10,621 in its
/// outage's last window, and two of its categories 1 each; alerted as
/// drops of their own, they were the same outage).
const OUTAGE_TRICKLE: f64 = 0.01;

/// Share of an alert's move that its children jumping by
/// `level-shift-max-factor` must carry for the move to be a burst below
/// (no level shift while young).
const BURST_SHARE: f64 = 0.5;

/// What a candidate silent only as an echo of a move a period before
/// hides below it (see `root_cause::children`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EchoOnly {
    /// Not silent only as an echo.
    No,
    /// A faint echo (an outage a period before, or a move another's alert
    /// explained): it hides no child that raises something of its own.
    Faint,
    /// The echo of its own news, which the forecast carries into today:
    /// it hides no child that raises something of its own and moved at
    /// least twice as far, in log ratios to the forecasts' medians (a
    /// store's spike read as the echo of yesterday's dip hid a category's
    /// labeled x1.8 step under it).
    News,
}

/// A series: its level and key.
type SeriesKey = (Level, Arc<str>);

/// Alerts remembered for retraction: (level, key, window start) -> kinds.
type Raised = FxHashMap<(Level, Arc<str>, i64), Vec<Alert>>;

/// The alerting stage.
#[derive(Debug)]
pub struct Alerting {
    cfg: Config,
    last: FxHashMap<(Level, Arc<str>, AlertKind), i64>,
    incident: FxHashMap<SeriesKey, (i64, f64)>,
    series: FxHashMap<SeriesKey, SeriesState>,
    raised: Raised,
    newest: i64,
    pruned_at: i64,
    scratch: Vec<f64>,
    /// The SKUs' units over the last period, for their categories'
    /// comparisons with the day before around promotions.
    promoted: promoted::Promoted,
    /// Each category in each store against its peers (see `peer`).
    peers: peer::Peers,
    /// Each SKU in each store against the same SKU in the other stores,
    /// through the store effects of the category table.
    sku_peers: peer::Peers,
    /// ln of the normal tail at `z-threshold` (the per-series false-alarm chance).
    ln_tail: f64,
    /// SKUs in stores whose outage goes on (see [`Outages`]).
    outages: Outages,
}

/// SKUs in stores at zero in an outage that goes on: the SKU, its
/// category in its store, when its outage began and the units it was
/// expected to sell then. After a few windows of zeros a SKU's windows
/// stop (`stream-core` fills zeros only for series that sold in most of
/// their last windows), so its category is left with the missing units
/// and no child to show where they went. An entry ends when the SKU
/// sells again, or after `level-shift-memory-windows` (at most a period:
/// a SKU delisted for good, its category's new level is then its own).
#[derive(Debug, Default)]
struct Outages(FxHashMap<Arc<str>, Out>);

/// One SKU's outage that goes on (see [`Outages`]).
#[derive(Debug)]
struct Out {
    /// Its category in its store.
    category: Arc<str>,
    /// The start of its first window at zero.
    since_ms: i64,
    /// The units it was expected to sell in that window.
    expected: f64,
}

impl Outages {
    /// Follow this window's SKUs: an outage begins with a drop-to-zero
    /// candidate, and ends when its series' own detector state says its
    /// run of nothing sold is over (see `SeriesState::zero_run`: a
    /// straggling line or two goes on with it) or after `memory_ms`.
    fn follow(
        &mut self,
        group: &[&Forecast],
        cands: &[Candidate],
        series: &FxHashMap<SeriesKey, SeriesState>,
        memory_ms: i64,
    ) {
        for c in cands.iter().filter(|c| c.kind == AlertKind::DropToZero) {
            let f = group[c.idx];
            if let (Level::SkuStore, Some(parent), 0) = (f.level, &f.parent, f.revision) {
                self.0.entry(f.key.clone()).or_insert_with(|| Out {
                    category: parent.clone(),
                    since_ms: f.window_start_ms,
                    expected: e_p50(f),
                });
            }
        }
        let Some(now) = group.first().map(|f| f.window_start_ms) else {
            return;
        };
        self.0.retain(|sku, o| {
            now - o.since_ms <= memory_ms
                && series
                    .get(&(Level::SkuStore, sku.clone()))
                    .is_some_and(|st| st.zero_run.2)
        });
    }

    /// The units expected of `category`'s SKUs whose outage goes on (0
    /// when none is out).
    fn missing(&self, category: &str) -> f64 {
        self.0
            .values()
            .filter(|o| *o.category == *category)
            .map(|o| o.expected)
            .sum()
    }
}

impl Alerting {
    /// Build the stage.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        if cfg.band_margin < 0.0 || cfg.cooldown_windows < 0 {
            return Err(Error::Config(
                "alerting.band-margin and cooldown-windows must be >= 0".into(),
            ));
        }
        let e = cfg.incident_escalation;
        if !(e == 0.0 || e >= 1.0) {
            return Err(Error::Config(
                "alerting.incident-escalation must be 0 (off) or at least 1".into(),
            ));
        }
        if cfg.cusum_h <= 0.0 || cfg.cusum_k < 0.0 || cfg.z_threshold < 0.0 {
            return Err(Error::Config(
                "alerting.cusum-h must be > 0, cusum-k and z-threshold >= 0".into(),
            ));
        }
        if !(cfg.peer_delta >= 0.0 && cfg.peer_h > 0.0) {
            return Err(Error::Config(
                "alerting.peer-delta must be >= 0 and peer-h > 0".into(),
            ));
        }
        if !(0.0..1.0).contains(&cfg.usual_range_share) {
            return Err(Error::Config(
                "alerting.usual-range-share must be at least 0 and below 1".into(),
            ));
        }
        let spike_ok = cfg.spike_min_change >= 0.0;
        if !spike_ok {
            return Err(Error::Config(
                "alerting.spike-min-change must be >= 0".into(),
            ));
        }
        let trend_ok = cfg.trend_z > 0.0 && cfg.trend_min_change >= 0.0;
        if !trend_ok {
            return Err(Error::Config(
                "alerting.trend-z must be > 0 and trend-min-change >= 0".into(),
            ));
        }
        if cfg.novelty_bins < 2
            || !(cfg.novelty_significance > 0.0 && cfg.novelty_significance < 0.5)
            || cfg.novelty_memory == 0
        {
            return Err(Error::Config(
                "alerting.novelty-bins must be >= 2, novelty-significance in (0, 0.5), novelty-memory >= 1".into(),
            ));
        }
        Ok(Alerting {
            ln_tail: tails::normal_sf_ln(cfg.z_threshold),
            outages: Outages::default(),
            cfg,
            last: FxHashMap::default(),
            incident: FxHashMap::default(),
            series: FxHashMap::default(),
            raised: FxHashMap::default(),
            newest: i64::MIN,
            pruned_at: i64::MIN / 2,
            scratch: Vec::new(),
            promoted: promoted::Promoted::default(),
            peers: peer::Peers::default(),
            sku_peers: peer::Peers::default(),
        })
    }

    /// Number of series with detector state.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// How anomalous a series' newest window looked to the detector, as a
    /// continuous strength: the larger of its score over `z-threshold` and
    /// its CUSUM statistic over `cusum-h` (1 is where alerts begin). For
    /// benchmarks that sweep a threshold over a score (NAB); alerts do not
    /// depend on it.
    pub fn strength(&self, level: Level, key: &str) -> Option<f64> {
        self.series
            .get(&(level, Arc::from(key)))
            .map(|s| s.strength)
    }

    /// Score a batch of forecasts and return the alerts raised (and
    /// retracted), window start by window start.
    pub fn process(&mut self, forecasts: &[Forecast]) -> Vec<Alert> {
        self.prune(forecasts);
        let mut sorted: Vec<&Forecast> = forecasts.iter().collect();
        sorted.sort_by_key(|f| f.window_start_ms);
        let mut out = Vec::new();
        for group in sorted.chunk_by(|a, b| a.window_start_ms == b.window_start_ms) {
            self.window(group, &mut out);
        }
        out
    }

    /// Keep the cooldown, series and retraction maps bounded.
    fn prune(&mut self, forecasts: &[Forecast]) {
        let Some(f) = forecasts.iter().max_by_key(|f| f.window_start_ms) else {
            return;
        };
        self.newest = self.newest.max(f.window_start_ms);
        let w = (f.window_end_ms - f.window_start_ms).max(1);
        let keep = self
            .cfg
            .cooldown_windows
            .max(self.cfg.revision_memory_windows)
            .max(self.cfg.incident_cooldown_windows)
            .max(1);
        let span = w * keep;
        if self.newest - self.pruned_at < span {
            return;
        }
        self.pruned_at = self.newest;
        let cutoff = self.newest - span;
        self.last.retain(|_, at| *at >= cutoff);
        self.incident.retain(|_, (at, _)| *at >= cutoff);
        self.raised.retain(|k, _| k.2 >= cutoff);
        // Detector state of series silent for a long time (100 x the memory).
        let stale = self.newest - span * 100;
        self.series.retain(|_, s| s.last_start >= stale);
        self.promoted.prune(stale.div_euclid(w));
        self.peers.prune(stale);
        self.sku_peers.prune(stale);
    }

    /// Verdict for one forecast, updating the series' detector state for a
    /// first emission (a revision is re-scored against the state as is).
    fn candidate(
        &mut self,
        idx: usize,
        f: &Forecast,
        (level_z, peer_z): (f64, Option<f64>),
    ) -> Option<Candidate> {
        let e = f.expected?;
        let y = f.actual.units as f64;
        let r = y - e.p50;
        let promo_free = f.level == Level::CategoryStore && self.compares_promo_free();
        let cfg = &self.cfg;
        let st = self.series.entry((f.level, f.key.clone())).or_default();
        let scored = st.score_z(y, e.p50, &mut self.scratch);
        let raw_z = scored.map(|s| s.0);
        let z = raw_z.map(|z| z / st.tail_scale());
        // How far this window is from the bias-corrected forecast, relative
        // to the series' level (a level shift must be material): its recent
        // mean, or the forecast when higher (a mean lagging a morning climb
        // makes a forecast's few percent off look material).
        let change = scored.map_or(0.0, |s| {
            (r - s.1).abs() / st.mean_y.max(e.p50 + s.1).max(1.0)
        });
        // Log ratio of the units to the bias-corrected expectation (to the
        // forecast itself before the series is scored); a spike or drop
        // must be that far off (`spike-min-change`).
        let bias = scored.map_or(0.0, |s| s.1);
        let off = ((y + 1.0) / (e.p50 + bias + 1.0).max(1.0)).ln();
        let material = cfg.spike_min_change.ln_1p();
        let ln_r = scored.map_or(0.0, |_| off);
        let width = (e.p90 - e.p10).max(1.0);
        let margin = cfg.band_margin * width;
        let eligible = f.level >= cfg.min_level && f.history_windows >= cfg.min_history_windows;
        let z_ok = |z: Option<f64>| z.is_none_or(|z| z.abs() >= cfg.z_threshold);
        // A SKU's lines that far from what the same SKU in the other
        // stores makes expected (see `peer::PeerView::surprise`) count as
        // its score too: its own residuals, promotions among them, can
        // scale a 5x burst at night down below the threshold.
        let peer_past = |d: Direction, bar: f64| peer_z.is_some_and(|p| p * d.sign() >= bar);
        // Promotions explain a move up: most lines on promotion, or more
        // than usual and the units outside promotion lines no more than
        // usual (one promoted best seller lifting its category). Units are
        // split by the share of lines.
        let (share, usual) = (f.actual.promo_share, st.promo_mean);
        let promo = cfg.promo_share_explains_spike < 1.0
            && (share >= cfg.promo_share_explains_spike
                || (share >= usual + cfg.spike_min_change / (PROMO_LIFT_MAX - 1.0)
                    && y > e.p90
                    && y * (1.0 - share) <= (e.p90 + margin) * (1.0 - usual)));
        // ...and a move down when a promotion ends: a share well below the
        // recent one, and the units outside promotion lines no fewer than
        // the band's bottom once the recent share on promotion is taken
        // out (a best seller's promotion ending takes its category down).
        // The same holds against the window a period earlier: the
        // forecast's seasonal members copy yesterday's units, so a
        // promotion then that is over now reads as a drop (seed 5's total
        // sold 4% of its lines on promotion at 21:50 against 33% the day
        // before, and was forecast 22% above what it sold).
        let promo_gone = |then: f64| {
            share + PROMO_END_FALL < then
                && y < e.p10
                && y * (1.0 - share) >= (e.p10 - margin).max(0.0) * (1.0 - then)
        };
        let width_ms = f.window_end_ms - f.window_start_ms;
        let period = cfg.recurring_period_ms;
        // (A series has trend state only with a period; its day slot is
        // read only when the recent share does not already explain it.)
        let promo_end = cfg.promo_share_explains_spike < 1.0
            && (promo_gone(st.promo_recent)
                || st.trend.as_ref().is_some_and(|t| {
                    t.share_before((f.window_start_ms, width_ms, period))
                        .is_some_and(promo_gone)
                }));
        // Zero sales: nothing sold (returns alone can make net units negative).
        let zero_ok = z.is_none_or(|z| z <= -0.5 * cfg.z_threshold);
        // A run of zero windows is judged as a whole: three windows that
        // each expected 8 are an outage as sure as one that expected 24.
        let (run_expected, run_lnp, run_alerted) = st.zero_run;
        // An outage already called goes on while next to nothing sells (a
        // straggling line or two).
        let nothing = y <= 0.0 || (run_alerted && y <= OUTAGE_TRICKLE * e.p50);
        let run = nothing.then(|| {
            let lnp = scored.map_or(0.0, |s| s.2);
            (run_expected + e.p50.max(0.0), run_lnp + lnp)
        });
        let run_ok = run.is_some_and(|(m, lnp)| {
            m >= cfg.min_expected_for_zero
                && e.p50 >= 1.0
                && !run_alerted
                && scored.is_some()
                && -tails::normal_isf_ln(lnp) / st.tail_scale() <= -0.5 * cfg.z_threshold
        });
        let single_ok = e.p50 >= cfg.min_expected_for_zero
            && e.p10 >= ZERO_BAND_FLOOR * e.p50
            && zero_ok
            && !run_alerted;
        // An outage already called goes on: one alert for all of it.
        let in_outage = run.is_some() && run_alerted;
        // Out of the band by the margin and off the forecast by
        // `spike-min-change`, as a spike or drop must be (which also needs
        // its score and a few units).
        let far = |d: Direction| match d {
            Direction::Up => y > e.p90 + margin && off >= material,
            Direction::Down => y < e.p10 - margin && -off >= material,
        };
        // The spike (up) or drop (down) verdict, scored by how far out of
        // the band in band widths.
        let out_verdict = |d: Direction| match d {
            Direction::Up => (AlertKind::Spike, d, (y - e.p90) / width),
            Direction::Down => (AlertKind::Drop, d, (e.p10 - y) / width),
        };
        let mut verdict = if in_outage {
            Some((AlertKind::DropToZero, Direction::Down, 0.0))
        } else if y <= 0.0 && (single_ok || run_ok) && st.zero_rate <= ZERO_RATE_MAX {
            Some((AlertKind::DropToZero, Direction::Down, e.p10 / width))
        } else if far(Direction::Up)
            && y - e.p90 >= cfg.min_units_outside
            && (z_ok(z) || peer_past(Direction::Up, cfg.z_threshold))
        {
            Some(out_verdict(Direction::Up))
        } else if far(Direction::Down)
            && e.p10 - y >= cfg.min_units_outside
            && (z_ok(z) || peer_past(Direction::Down, cfg.z_threshold))
        {
            Some(out_verdict(Direction::Down))
        } else {
            None
        };
        // The series' shape recurring: out of the band the same way one
        // and two periods ago, within a window.
        let out_dir =
            verdict.and_then(|v| matches!(v.0, AlertKind::Spike | AlertKind::Drop).then_some(v.1));
        // Out of the band the way `d` within `near` of the same time `ago`
        // before, in a window `which` accepts.
        let out_near = |d: Direction, ago: i64, near: i64, which: &dyn Fn(&Outside) -> bool| {
            st.outside_at.iter().any(|o| {
                o.direction == d && which(o) && (o.start - (f.window_start_ms - ago)).abs() <= near
            })
        };
        // The shape recurs at about the same time of day: within a window,
        // or `RECURRING_NEAR` of the period when that is more (a daily
        // burst's hour wanders a little).
        let near = width_ms.max((RECURRING_NEAR * period as f64) as i64);
        let recurs = |d: Direction, ago: i64| out_near(d, ago, near, &|o| !o.faint);
        let recurring =
            period > 0 && out_dir.is_some_and(|d| recurs(d, period) && recurs(d, 2 * period));
        // ...or echoing: out of the band (with a verdict or not: a level
        // shift's window) the other way than one period ago. The forecast
        // carries yesterday's anomaly (a spike copied into today's seasonal
        // expectation reads as a drop today). Zero sales are never an echo.
        let band_dir = if y > e.p90 {
            Some(Direction::Up)
        } else if y < e.p10 {
            Some(Direction::Down)
        } else {
            None
        };
        // Only news echoes: a window out of the band the way it was one
        // and two periods before too was the series' shape that the
        // forecast keeps missing (a daily step it lags), no anomaly it
        // carries into today.
        let news = |o: &Outside| !o.faint && !o.recurring;
        // The forecast moved, not the series: it stands where it stood
        // (`OUTAGE_ECHO_MAX`), or at least the forecast moved as far from
        // there as it did. A series that jumped from a forecast where it
        // stood is news, whatever the day before held (seed 27's
        // cat-19|web-de halved at 12:05, forecast at its usual level, a
        // day after its store's spike at 12:05).
        // (Every echo is out of the band: only then is the move measured.)
        let moved = band_dir.map(|_| log_ratio(y, st.inside_units).abs());
        let stands = moved.is_some_and(|m| m < OUTAGE_ECHO_MAX.ln());
        let echo = period > 0
            && band_dir.is_some_and(|d| out_near(d.opposite(), period, width_ms, &news))
            && (stands || moved.is_some_and(|m| log_ratio(e.p50, st.inside_units).abs() >= m));
        // An outage a period ago (or a move another's alert explained,
        // out of the band by less than a spike) echoes too, but faintly:
        // only while the series stands where it stood (`OUTAGE_ECHO_MAX`).
        // So does any move that was news two periods ago: the forecast
        // can carry part of it a second day (seed 16's cat-18|web-uk
        // halved at 09:05 and was expected at 684, then at 854, at 09:05
        // on the next two days, selling about 1,250).
        let faint_echo = period > 0
            && !echo
            && band_dir.is_some_and(|d| {
                out_near(d.opposite(), period, width_ms, &|o| o.faint)
                    || out_near(d.opposite(), 2 * period, width_ms, &|o| o.faint || news(o))
            })
            && stands;
        // A spike or drop within the series' usual range (see
        // `usual-range-windows`): its usual bursts and dips, not news.
        let jumps = |k: AlertKind| matches!(k, AlertKind::Spike | AlertKind::Drop);
        let usual = cfg.usual_range_windows > 0
            && verdict
                .is_some_and(|v| jumps(v.0) && st.within_range(y, v.1, cfg.usual_range_share));
        let candidate = |v: Option<Verdict>, silent: bool| {
            v.filter(|_| eligible).map(|(kind, direction, score)| {
                // (The verdict may have become a level shift since.)
                let usual = usual && jumps(kind);
                Candidate {
                    idx,
                    kind,
                    direction,
                    score,
                    z: z.unwrap_or(0.0),
                    silent: silent
                        || recurring
                        || usual
                        || ((echo || faint_echo) && kind != AlertKind::DropToZero),
                    echo_only: match (echo, faint_echo) {
                        _ if silent || recurring => EchoOnly::No,
                        (true, _) if kind != AlertKind::DropToZero => EchoOnly::News,
                        (_, true) => EchoOnly::Faint,
                        _ => EchoOnly::No,
                    },
                    promo: match direction {
                        Direction::Up => promo,
                        Direction::Down => promo_end,
                    },
                    // Past the series' own threshold but not its level's.
                    weak: matches!(kind, AlertKind::Spike | AlertKind::Drop)
                        && z.is_some_and(|z| z.abs() < level_z)
                        && !peer_past(direction, level_z),
                    lean: false,
                    trend: None,
                    cover: Cover::None,
                    usual,
                    peer: None,
                }
            })
        };
        let mut silent = in_outage;
        if f.revision > 0 {
            // Re-score only: the detector state moved on with later windows.
            return candidate(verdict, in_outage);
        }
        let prev_start = st.last_start;
        st.last_start = f.window_start_ms;
        st.keep_in_range(y, cfg.usual_range_windows as usize);
        st.remember_deviation(f.window_start_ms, y, e.p50);
        if band_dir.is_none() {
            st.inside_units = y;
        }
        // Out of the band, and whether by less than a spike or drop must
        // be, whatever its score (a total's wide residuals keep its z low).
        st.band_out = band_dir.filter(|_| y > 0.0 && period > 0).map(|d| Outside {
            start: f.window_start_ms,
            direction: d,
            faint: !far(d),
            recurring: false,
        });
        // Pattern novelty over the bias-corrected residuals (the forecast
        // already knows the daily shape; what it has not seen is new).
        let novel = scored
            .filter(|_| cfg.novelty_windows > 0 && f.level >= cfg.novelty_min_level)
            .and_then(|(_, med, _)| {
                st.novelty
                    .get_or_insert_with(|| {
                        Box::new(Novelty::new(
                            cfg.novelty_windows as usize,
                            cfg.novelty_bins as usize,
                            cfg.novelty_significance,
                            cfg.novelty_memory as usize,
                        ))
                    })
                    .push((r - med).round() as i64)
            });
        if period > 0 {
            // An outage is remembered too, as a faint one: tomorrow's
            // forecast carries it (see the echo test), though it never
            // recurs as a spike or drop.
            let zero = verdict.filter(|v| v.0 == AlertKind::DropToZero);
            let out = out_dir
                .map(|d| (d, false))
                .or(zero.map(|v| (v.1, true)))
                .map(|(direction, faint)| Outside {
                    start: f.window_start_ms,
                    direction,
                    faint,
                    // Only a spike or drop recurs (`recurring` is false
                    // for an outage).
                    recurring,
                });
            st.remember_outside(out, (f.window_start_ms, width_ms, period));
        }
        st.zero_run = match run {
            Some((m, lnp)) => (
                m,
                lnp,
                run_alerted || verdict.is_some_and(|v| v.0 == AlertKind::DropToZero),
            ),
            None => (0.0, 0.0, false),
        };
        st.follow_promo_recent(share);
        if promo || promo_end {
            // A promotion window (or one where a promotion ends) tells
            // nothing about the usual level: keep it out of the residuals
            // and the change detector.
            st.outside_run = None;
            st.kept_out = Some((f.window_start_ms, ln_ratio(f).abs()));
            return candidate(verdict, false);
        }
        st.follow_promo_mean(share);
        let shift_stat = st.detect_shift(
            cfg,
            &ShiftWindow {
                at: (f.window_start_ms, width_ms, prev_start),
                y,
                e,
                z,
                ln_r,
                change,
                level_z,
                promo,
            },
            &mut verdict,
            &mut silent,
        );
        // Trend breaks: the series' units against the same window a period
        // earlier drift away from their usual ratio (a CUSUM of the
        // deviations), with no step of its own (a spike, drop, shift or
        // another's alert) meanwhile.
        let mut trend = None;
        if cfg.trend_windows > 0 && period > 0 && f.level >= cfg.trend_min_level {
            // A step of the series' own; or it moved with another series'
            // alert (a store's spike over its categories).
            let own = verdict.is_some()
                || st.shift.is_some()
                || st.excursion.is_some_and(|x| x.cover == Cover::Own);
            let at = (f.window_start_ms, width_ms, period);
            let promoted = &self.promoted;
            let window = TrendWindow {
                at,
                y,
                share,
                band: (e.p10, e.p90),
                p50: e.p50,
                own,
                jump: own || st.excursion.is_some_and(|x| x.cover.by_another()),
                scored: scored.is_some(),
                promoted: &|| promo_free.then(|| promoted.sums(&f.key, at)).flatten(),
            };
            let t = st.trend.get_or_insert_with(Default::default);
            trend = t.observe(cfg, &window, &mut verdict, &mut silent, &mut self.scratch);
        }
        // A level shift against the day before (a step, or a flat sum).
        if let (Some((AlertKind::LevelShift, d, _)), Some(_)) = (verdict, trend) {
            st.shift_called(d);
        }
        // A novel pattern no other verdict explains, outside any move.
        if let Some(n) = novel.filter(|_| {
            verdict.is_none()
                && st.shift.is_none()
                && st.excursion.is_none_or(|x| x.cover == Cover::None)
        }) {
            let d = if n.up { Direction::Up } else { Direction::Down };
            verdict = Some((AlertKind::PatternChange, d, n.score));
        }
        // Windows that continue a move already alerted belong to that alert:
        // silent, but still the root cause of what moves below them. A
        // level shift is still called once the move outlasts a spike (a new
        // alert: the spike was the start of a new level, here or below),
        // but not on a series that only moved with another's outage. A
        // recovery stays silent while it is no longer than a spike.
        if cfg.spike_max_windows > 0 {
            if let (Some(e), Some(v)) = (&st.excursion, verdict) {
                let continues = v.1 == e.direction && v.0 != AlertKind::DropToZero;
                let shift_call = v.0 == AlertKind::LevelShift && !silent;
                if continues
                    && e.cover != Cover::None
                    && (!shift_call || matches!(e.cover, Cover::Outage | Cover::Within) || e.outage)
                    || (e.recovery && v.1 == e.direction && e.young(cfg))
                {
                    silent = true;
                }
            }
        }
        st.strength = z
            .map_or(0.0, |z| z.abs() / cfg.z_threshold.max(1e-9))
            .max(st.cusum_up.max(st.cusum_down).max(shift_stat) / cfg.cusum_h)
            .max(novel.map_or(0.0, |n| n.score));
        st.learn(cfg, (y, r), raw_z, verdict.is_none(), in_outage);
        let cover = st.excursion.map_or(Cover::None, |x| x.cover);
        // No verdict, but out by a spike's margin with most of its score:
        // a lean candidate (see `Candidate::lean`), the series' own state
        // untouched by it.
        let lean = band_dir.filter(|&d| {
            verdict.is_none()
                && f.level != Level::SkuStore
                && !silent
                && far(d)
                && (y - e.p50).abs() >= cfg.min_units_outside
                && z.is_some_and(|z| {
                    z.abs() >= LEAN_Z_SHARE * cfg.z_threshold && (z > 0.0) == (y > e.p50)
                })
        });
        if let Some(d) = lean {
            return candidate(Some(out_verdict(d)), false)
                .filter(|c| !c.quiet())
                .map(|c| Candidate {
                    lean: true,
                    weak: false,
                    cover,
                    ..c
                });
        }
        candidate(verdict, silent).map(|c| Candidate { trend, cover, ..c })
    }

    /// Whether categories are compared with the day before by their SKUs
    /// no promotion touched (the trend detector runs on them).
    fn compares_promo_free(&self) -> bool {
        self.cfg.trend_windows > 0
            && self.cfg.recurring_period_ms > 0
            && self.cfg.trend_min_level <= Level::CategoryStore
    }

    /// The z a spike or drop must reach at each level, given how many
    /// series of each level this window scores (`family-wise-correction`).
    fn thresholds(&self, group: &[&Forecast]) -> [f64; 4] {
        let mut n = [0usize; 4];
        for f in group.iter().filter(|f| f.expected.is_some()) {
            n[f.level.code() as usize] += 1;
        }
        n.map(|n| {
            if self.cfg.family_wise_correction && n > 1 {
                tails::normal_isf_ln(self.ln_tail - (n as f64).ln()).max(self.cfg.z_threshold)
            } else {
                self.cfg.z_threshold
            }
        })
    }

    /// All forecasts of one window start.
    fn window(&mut self, group: &[&Forecast], out: &mut Vec<Alert>) {
        let thresholds = self.thresholds(group);
        if self.compares_promo_free() {
            self.promoted.record(group, self.cfg.recurring_period_ms);
        }
        let views = self.observe_peers(group);
        let mut cands: Vec<Candidate> = Vec::new();
        for (i, f) in group.iter().enumerate() {
            // A SKU's surprise against the same SKU in the other stores.
            let peer_z = views.as_ref().and_then(|v| v.1.surprise(i));
            let level_z = thresholds[f.level.code() as usize];
            if let Some(c) = self.candidate(i, f, (level_z, peer_z)) {
                cands.push(c);
            }
        }
        let memory = group.first().map_or(0, |f| self.shift_memory_ms(f));
        self.outages.follow(group, &cands, &self.series, memory);
        let ended = self.peer_test(group, &mut cands, views);
        self.retract_revised(group, &cands, out);
        // Root cause: index candidates by their nearest ancestor that is a
        // candidate too, then walk top-down.
        let mut parent_of = None;
        let groups = root_cause::Groups::new(group, &cands, &mut parent_of);
        root_cause::unexplain_promotions(group, &mut cands, &groups.plain);
        let mut absorbed = vec![false; cands.len()];
        let mut top: Vec<usize> = (0..cands.len()).collect();
        top.sort_by_key(|&ci| std::cmp::Reverse(group[cands[ci].idx].level));
        // A candidate whose deviation one child accounts for (root-cause-share)
        // is that child's consequence: the child is the root cause (a total
        // that dropped because one store did, a category because one SKU).
        let (explains, deferred) =
            root_cause::root_causes(&self.cfg, group, &cands, &groups, &top, &self.series);
        // A weak candidate stands only where a candidate above it that is
        // neither weak nor lean defers to it: the ancestor's test found the
        // move, the child explains it.
        let backed: FxHashSet<usize> = explains
            .iter()
            .filter(|(_, up)| up.iter().any(|&u| !cands[u].weak && !cands[u].lean))
            .map(|(&k, _)| k)
            .collect();
        // A lean candidate stands only where a child that is not lean, and
        // not yet another's, breaks the same way with it (and, not
        // deferred to, does not explain it alone).
        let leads = |ci: usize, absorbed: &[bool]| {
            let f = group[cands[ci].idx];
            groups
                .lean
                .get(&(f.level, f.key.clone()))
                .is_some_and(|ks| {
                    ks.iter().any(|&k| {
                        !absorbed[k]
                            && !cands[k].lean
                            && !cands[k].quiet()
                            && cands[k].direction == cands[ci].direction
                    })
                })
        };
        for ci in top {
            if absorbed[ci]
                || deferred[ci]
                || (cands[ci].weak && !backed.contains(&ci))
                || (cands[ci].lean && !leads(ci, &absorbed))
            {
                continue;
            }
            let c = cands[ci].clone();
            let f = group[c.idx];
            // Descendants that broke the same way are explained by this one.
            let below = groups.of(&c);
            let children = root_cause::children(group, &cands, below, ci, &mut absorbed);
            absorbed[ci] = true;
            // Whatever this candidate explains is part of its incident.
            let by = if c.kind == AlertKind::DropToZero {
                Cover::Outage
            } else {
                Cover::Other
            };
            // Series below a spike or drop moved within it: a level shift
            // of theirs called as it ends is the spike's, not news.
            let within = match c.kind {
                AlertKind::Spike | AlertKind::Drop => Cover::Within,
                _ => by,
            };
            for ch in &children {
                self.cover(f.window_start_ms, (ch.level, &ch.key), c.direction, within);
            }
            // A spike or drop alerted (now, or continuing its own alert)
            // moved the series below it too, children or not.
            let jump = matches!(
                c.kind,
                AlertKind::Spike | AlertKind::Drop | AlertKind::DropToZero
            );
            if jump && (!c.quiet() || c.cover == Cover::Own) && f.revision == 0 {
                let map = parent_of.get_or_insert_with(|| parents(group));
                self.moved_below(group, map, f, c.direction);
            }
            for &k in explains.get(&ci).map(Vec::as_slice).unwrap_or(&[]) {
                let g = group[cands[k].idx];
                self.cover(f.window_start_ms, (g.level, &g.key), c.direction, by);
            }
            // A usual burst or dip is the series' own move, but news to
            // no one: covered as one within a spike (no level shift of its
            // own is called for its windows).
            if c.usual && f.revision == 0 {
                self.cover(
                    f.window_start_ms,
                    (f.level, &f.key),
                    c.direction,
                    Cover::Within,
                );
            }
            if c.quiet() {
                continue;
            }
            // Its own move is alerted now, or was (cooldown); ancestors
            // moving the same way moved because of it.
            self.cover(
                f.window_start_ms,
                (f.level, &f.key),
                c.direction,
                Cover::Own,
            );
            self.mark_burst(f, &children);
            let map = parent_of.get_or_insert_with(|| parents(group));
            for (pl, p) in ancestors(f, map) {
                self.cover(f.window_start_ms, (pl, &p), c.direction, by);
            }
            if self.within_categorys_move(f, &c) {
                continue;
            }
            if !self.admit(f, c.kind) {
                continue;
            }
            let mut a = self.alert(f, &c, children);
            // A level shift or trend break the other way that brings the
            // series back is the end of its last move, not news.
            if matches!(c.kind, AlertKind::LevelShift | AlertKind::TrendBreak) && f.revision == 0 {
                if let Some(done) = self.end_of_shift(f, &a, (c.trend, c.peer.is_some())) {
                    out.push(done);
                    continue;
                }
            }
            if let Some(up) = explains.get(&ci) {
                let names: Vec<String> = up
                    .iter()
                    .map(|&k| {
                        let g = group[cands[k].idx];
                        format!("{} {}", g.level, g.key)
                    })
                    .collect();
                a.explanation
                    .push_str(&format!("; accounts for the move of {}", names.join(", ")));
            }
            self.raised
                .entry((f.level, f.key.clone(), f.window_start_ms))
                .or_default()
                .push(a.clone());
            out.push(a);
        }
        for (idx, d) in ended {
            if let Some(done) = self.peer_move_ended(group[idx], d) {
                out.push(done);
            }
        }
    }

    /// The peer test's views of this window (see `peer`): the categories
    /// in stores against each other, and the SKUs in stores against the
    /// same SKU in the other stores. None with the test off.
    fn observe_peers(&mut self, group: &[&Forecast]) -> Option<(peer::PeerView, peer::PeerView)> {
        let (delta, h) = (self.cfg.peer_delta, self.cfg.peer_h);
        let at = group.first().map(|f| f.window_start_ms)?;
        if delta <= 0.0 {
            return None;
        }
        let cfg = &self.cfg;
        let cells_of = |level: Level, parent: &dyn Fn(&Forecast) -> Option<(f64, f64)>| {
            group
                .iter()
                .enumerate()
                .filter(|(_, f)| f.level == level && f.revision == 0)
                .map(|(idx, f)| peer::PeerCell {
                    idx,
                    key: &f.key,
                    lines: f.actual.lines as f64,
                    eligible: f.expected.is_some()
                        && f.level >= cfg.min_level
                        && f.history_windows >= cfg.min_history_windows,
                    parent: parent(f),
                })
                .collect::<Vec<_>>()
        };
        let cells = cells_of(Level::CategoryStore, &|_| None);
        let view = self.peers.observe(&cells, at, delta, h);
        // Each category's lines and expected lines, for its SKUs.
        let lines: FxHashMap<&str, (f64, f64)> = view
            .lines
            .iter()
            .map(|&(idx, x, e)| (&*group[idx].key, (x, e)))
            .collect();
        let parent = |f: &Forecast| f.parent.as_deref().and_then(|p| lines.get(p).copied());
        let skus = self.sku_peers.observe_within(
            &cells_of(Level::SkuStore, &parent),
            &view.stores,
            at,
            (delta, h),
        );
        Some((view, skus))
    }

    /// The peer test over this window's categories in stores (see
    /// `peer`): its trend breaks replace the forecast's on the series it
    /// covers; a spike, drop or level shift its way inside one of them, or
    /// the other way as one ends, is part of it, and so is a SKU's step or
    /// climb its way. `views`: the window's, from `observe_peers`.
    /// Returns the series whose trend break ended this window, and its
    /// direction.
    fn peer_test(
        &mut self,
        group: &[&Forecast],
        cands: &mut Vec<Candidate>,
        views: Option<(peer::PeerView, peer::PeerView)>,
    ) -> Vec<(usize, Direction)> {
        let Some((view, skus)) = views else {
            return Vec::new();
        };
        // The climbs and slides it called, by series key, and those that
        // ended within a few windows.
        let climbs: FxHashMap<Arc<str>, Direction> = view
            .moving
            .iter()
            .filter(|m| m.2 == Some(AlertKind::TrendBreak))
            .map(|m| (group[m.0].key.clone(), m.1))
            .collect();
        let ended: FxHashMap<Arc<str>, Direction> = view
            .ended
            .iter()
            .filter(|e| e.2 == AlertKind::TrendBreak)
            .map(|e| (group[e.0].key.clone(), e.1))
            .collect();
        // The test calls a covered category's trend breaks; steps stay
        // the forecast's change detector's to call (it calls them within
        // a window or two), but for those nothing else called (see
        // `peer_steps`).
        // A level shift (of a category, or of a SKU) stands there only
        // where the peers lean its way too: a move the same category or
        // SKU made in every store is its promotion or its time of day,
        // and the day before may have held its own news.
        cands.retain(|c| match view.lean(c.idx).or_else(|| skus.lean(c.idx)) {
            None => true,
            Some(lean) => match c.kind {
                AlertKind::TrendBreak => group[c.idx].level != Level::CategoryStore,
                AlertKind::LevelShift => lean == Some(c.direction),
                _ => true,
            },
        });
        // A spike, drop or step the climb's way, or the other way as it
        // ends, is part of it; so is a step or climb of a SKU of the
        // category.
        for c in cands.iter_mut() {
            let f = group[c.idx];
            let key = match (f.level, c.kind) {
                (
                    Level::CategoryStore,
                    AlertKind::Spike | AlertKind::Drop | AlertKind::LevelShift,
                ) => Some(&f.key),
                (Level::SkuStore, AlertKind::LevelShift | AlertKind::TrendBreak) => {
                    f.parent.as_ref()
                }
                _ => None,
            };
            let Some(key) = key else {
                continue;
            };
            if climbs.get(key) == Some(&c.direction)
                || ended.get(key) == Some(&c.direction.opposite())
            {
                c.silent = true;
            }
        }
        for &(idx, direction, moved) in &view.calls {
            let f = group[idx];
            let cover = self
                .series
                .get(&(f.level, f.key.clone()))
                .and_then(|st| st.excursion)
                .map_or(Cover::None, |x| x.cover);
            let call = Candidate {
                cover,
                peer: Some(moved),
                ..Candidate::plain(idx, AlertKind::TrendBreak, direction, moved.abs())
            };
            put_peer_call(cands, call);
        }
        // (A further step takes the place of its series' silent
        // candidate, see `peer_steps`.)
        for step in self.peer_steps(group, &view, &skus, cands) {
            put_peer_call(cands, step);
        }
        // Root-cause grouping reads candidates in the group's order.
        cands.sort_by_key(|c| c.idx);
        view.ended
            .iter()
            .filter(|e| e.2 == AlertKind::TrendBreak && e.3 == 0)
            .map(|e| (e.0, e.1))
            .collect()
    }

    /// Level shifts the peer test finds that nothing else called (a
    /// category halving at night, within the forecast's wide band while
    /// the forecast follows it): a step as far as [`peer::ALONE_MIN`]
    /// from the peers, that the series' own forecast confirms (its units
    /// over the windows since the step began off the forecast the same
    /// way, by at least [`peer::FORECAST_SHARE`] of that and
    /// `ALONE_MIN`), on a series with no level shift or trend break its
    /// way called since or still open (within `level-shift-memory-windows`,
    /// at most a period: it is known to stand there), no candidate of its
    /// own, not moving with
    /// another's alert, and no SKU of it moving its way unless the rest of
    /// it moved too, by at least [`REST_SHARE`] of the step (a SKU's spike
    /// or outage is the SKU's; a category's step shows in its best
    /// sellers as well). A further step (a second step on top of the move
    /// the test follows, see [`peer::Step::further`]: the forecast's band
    /// is wide after the first, and its change detector's residual scale
    /// too) is judged by the windows since it began: its own alert's move
    /// is no reason against it, nor its SKUs stepping further with it,
    /// and it takes the place of a candidate of its own held silent as
    /// part of that move.
    fn peer_steps(
        &self,
        group: &[&Forecast],
        view: &peer::PeerView,
        skus: &peer::PeerView,
        cands: &[Candidate],
    ) -> Vec<Candidate> {
        let mut steps = Vec::new();
        for step in &view.steps {
            let &peer::Step {
                idx,
                direction,
                level,
                since,
                ..
            } = step;
            let further = step.further.is_some();
            let f = group[idx];
            let w = f.window_end_ms - f.window_start_ms;
            let Some(st) = self.series.get(&(f.level, f.key.clone())) else {
                continue;
            };
            // (Since the windows the step was fitted on, before it was
            // found, or a move its way still open: the series is known to
            // stand there; a further step's, since it began: the step
            // before it was called before.)
            let fitted = if further {
                since as i64 + FURTHER_GRACE
            } else {
                step.age + peer::FIT_WINDOWS as i64
            };
            let memory = self.shift_memory_ms(f);
            let called = st.shifted.as_ref().is_some_and(|s| {
                let since_ms = f.window_start_ms - s.alert.window_start_ms;
                s.alert.direction == direction
                    && (since_ms <= fitted * w || (!further && since_ms <= memory))
            });
            // (Or with its own alert: a further step goes beyond that.)
            let with_another = st
                .excursion
                .is_some_and(|x| x.cover.by_another() || (x.cover == Cover::Own && !further));
            // Its own candidate explains it (a further step's, unless held
            // silent as part of the move it steps beyond: that gives way
            // to the step), and so do SKUs of it moving its way (in the
            // SKU table, but for a further step: they step further with
            // it; or their candidates) unless the rest of it moved too, at
            // least half as far: a category's step shows in its best
            // sellers as well.
            let own = cands
                .iter()
                .any(|c| c.idx == idx && !(further && c.silent && c.kind != AlertKind::DropToZero));
            let mut kids: Vec<usize> = skus
                .moving
                .iter()
                .filter(|_| !further)
                .map(|m| (m.0, m.1))
                .chain(cands.iter().map(|c| (c.idx, c.direction)))
                .filter(|&(k, d)| {
                    d == direction
                        && group[k].level == Level::SkuStore
                        && group[k].parent.as_ref() == Some(&f.key)
                })
                .map(|(k, _)| k)
                .collect();
            kids.sort_unstable();
            kids.dedup();
            // (Lines against what the peers made expected, as the step
            // was found: a forecast follows a step within a few windows.)
            let (kx, ke) = kids
                .iter()
                .filter_map(|&k| skus.lines_of(k))
                .fold((0.0, 0.0), |a, l| (a.0 + l.0, a.1 + l.1));
            let rest = view
                .lines_of(idx)
                .and_then(|l| peer::rest_ratio(l, (kx, ke)))
                .map_or(0.0, |r| r.ln() * direction.sign());
            let explained = own || (!kids.is_empty() && rest < REST_SHARE * level.abs());
            // A SKU of it out of stock (its windows stopped) that accounts
            // for at least half of the step down: the SKU's outage, which
            // its drop to zero told.
            let out = self.outages.missing(&f.key);
            let outage = direction == Direction::Down
                && out > 0.0
                && (out / e_p50(f).max(1.0)).ln_1p() >= OUTAGE_SHARE * level.abs();
            if called || with_another || explained || outage || level.abs() < peer::ALONE_MIN {
                continue;
            }
            // The forecast's view over the windows since the step began
            // (at most the deviations the series keeps).
            let (sy, sp) = st
                .recent
                .iter()
                .rev()
                .take(since.max(1))
                .fold((0.0, 0.0), |a, d| {
                    (a.0 + f64::from(d.dev + d.p50), a.1 + f64::from(d.p50))
                });
            let off = log_ratio(sy, sp) * direction.sign();
            if off < (peer::FORECAST_SHARE * level.abs()).max(peer::ALONE_MIN) {
                continue;
            }
            steps.push(Candidate {
                // (Told against the usual: a further step's level is from
                // where its move stood.)
                peer: Some(step.further.unwrap_or(0.0) + level),
                ..Candidate::plain(idx, AlertKind::LevelShift, direction, level.abs())
            });
        }
        steps
    }

    /// The trend break the peer test called on `f`'s series, `resolved`,
    /// when its move `d` ended (and it is still the series' last move).
    fn peer_move_ended(&mut self, f: &Forecast, d: Direction) -> Option<Alert> {
        let memory = self.shift_memory_ms(f);
        let st = self.series.get_mut(&(f.level, f.key.clone()))?;
        let last = st.shifted.as_ref()?;
        if last.alert.direction != d || f.window_start_ms - last.alert.window_start_ms > memory {
            return None;
        }
        let done = *st.shifted.take()?.alert;
        let units = f.actual.units as f64;
        Some(resolved(done, f, units, e_p50(f)))
    }

    /// The series below `f` (with a trend state) whose window moved `f`'s
    /// way `d` by at least [`MOVED_WITH_SHARE`] of its move (log ratios to
    /// the forecasts' medians): they moved with it, children of its alert
    /// or not, and their windows are no usual ones for the trend
    /// detector's day-before references (see [`TrendState::unusual_since`]).
    fn moved_below(
        &mut self,
        group: &[&Forecast],
        parent_of: &FxHashMap<SeriesKey, Arc<str>>,
        f: &Forecast,
        d: Direction,
    ) {
        let min = self.cfg.trend_min_level;
        let its = ln_ratio(f) * d.sign();
        if its <= 0.0 {
            return;
        }
        for g in group.iter().filter(|g| g.level >= min && g.level < f.level) {
            let moved = g.expected.is_some() && ln_ratio(g) * d.sign() >= MOVED_WITH_SHARE * its;
            // Below `f`: its ancestor at `f`'s level is `f`.
            let below = moved
                && ancestors(g, parent_of)
                    .find(|a| a.0 == f.level)
                    .is_some_and(|a| a.1 == f.key);
            if !below {
                continue;
            }
            if let Some(t) = self
                .series
                .get_mut(&(g.level, g.key.clone()))
                .and_then(|st| st.trend.as_deref_mut())
            {
                let width = g.window_end_ms - g.window_start_ms;
                let at = (g.window_start_ms, width, self.cfg.recurring_period_ms);
                t.unusual_since(g.window_start_ms, at);
                t.moved_with_another();
            }
        }
    }

    /// Whether candidate `c` on a SKU `f` is part of a move its category's
    /// level shift or trend break told, still open (within
    /// `level-shift-memory-windows`, at most a period): a spike, drop or
    /// level shift of the SKU's own that goes the category's way by no more
    /// than a burst of its own would (twice the category's move in log
    /// terms, and 0.4 more: a best seller whose promotion ended inside its
    /// category's shift up, selling its share of the new level), or the
    /// other way about as far as the category had moved (half to one and a
    /// half times: its share of the move ending, the category itself
    /// deferring to another SKU). Only the category: a store's or the
    /// total's shift of a few percent, open for a day, would hide its
    /// categories' own steps.
    fn within_categorys_move(&self, f: &Forecast, c: &Candidate) -> bool {
        let own = matches!(
            c.kind,
            AlertKind::Spike | AlertKind::Drop | AlertKind::LevelShift
        );
        if !own || f.revision > 0 || f.level != Level::SkuStore {
            return false;
        }
        let Some(last) = f
            .parent
            .clone()
            .and_then(|p| self.series.get(&(Level::CategoryStore, p)))
            .and_then(|st| st.shifted.as_ref())
        else {
            return false;
        };
        let its = ln_ratio(f) * c.direction.sign();
        let m = last.moved.abs();
        f.window_start_ms - last.alert.window_start_ms <= self.shift_memory_ms(f)
            && if last.alert.direction == c.direction {
                its <= burst_from(m)
            } else {
                back_by(m, -its, ABOUT_AS_FAR)
            }
    }

    /// How long a level shift or trend break is remembered for its end:
    /// `level-shift-memory-windows` of `f`'s width, at most a period (by
    /// then the forecast has a season of the new level, the day before
    /// holds it, and a move back is news).
    fn shift_memory_ms(&self, f: &Forecast) -> i64 {
        let period = self.cfg.recurring_period_ms;
        (self.cfg.level_shift_memory_windows * (f.window_end_ms - f.window_start_ms))
            .min(if period > 0 { period } else { i64::MAX })
    }

    /// A burst below: the SKUs among an alert's `children` that jumped by
    /// `level-shift-max-factor` carry at least half its move (a small SKU
    /// tripling inside a category that rose 1.8x is noise on the shift,
    /// not its cause). The series' excursion is then no level shift while
    /// young.
    fn mark_burst(&mut self, f: &Forecast, children: &[Child]) {
        let factor = self.cfg.level_shift_max_factor;
        // Each such SKU sold more than expected, so a positive sum means
        // there is one.
        let burst_units: f64 = children
            .iter()
            .filter(|ch| {
                ch.level == Level::SkuStore && log_ratio(ch.observed, ch.expected) >= factor.ln()
            })
            .map(|ch| ch.observed - ch.expected)
            .sum();
        let excess = f.actual.units as f64 - e_p50(f);
        if factor > 0.0 && burst_units > 0.0 && burst_units >= BURST_SHARE * excess.abs() {
            if let Some(x) = self
                .series
                .get_mut(&(f.level, f.key.clone()))
                .and_then(|st| st.excursion.as_mut())
            {
                x.burst = true;
            }
        }
    }

    /// Retract what a revised window no longer holds: each alert raised on
    /// it whose kind is no candidate of the revision (a level shift stays:
    /// a move back ends it, not a revision).
    fn retract_revised(&mut self, group: &[&Forecast], cands: &[Candidate], out: &mut Vec<Alert>) {
        for f in group.iter().filter(|f| f.revision > 0) {
            let k = (f.level, f.key.clone(), f.window_start_ms);
            let Some(prev) = self.raised.get_mut(&k) else {
                continue;
            };
            let still: FxHashSet<AlertKind> = cands
                .iter()
                .filter(|c| std::ptr::eq(group[c.idx], *f))
                .map(|c| c.kind)
                .collect();
            prev.retain(|a| {
                if still.contains(&a.kind) || a.kind == AlertKind::LevelShift {
                    return true;
                }
                let mut r = a.clone();
                r.status = Status::Retracted;
                r.observed = f.actual.units as f64;
                r.explanation = format!(
                    "retracted: {} {} units {} in {} after a late update ({})",
                    f.level,
                    f.key,
                    f.actual.units,
                    fmt_utc(f.window_start_ms),
                    a.kind.as_str()
                );
                out.push(r);
                false
            });
        }
    }

    /// Whether an alert of `kind` on `f`'s series goes out: not within the
    /// cooldown per series and kind, nor the series' incident cooldown
    /// unless it escalates (then remembered for both); on a revision, only
    /// if it was not raised already.
    fn admit(&mut self, f: &Forecast, kind: AlertKind) -> bool {
        let window = f.window_end_ms - f.window_start_ms;
        let k = (f.level, f.key.clone(), kind);
        if f.revision == 0 {
            if let Some(prev) = self.last.get(&k) {
                if f.window_start_ms - prev <= self.cfg.cooldown_windows * window {
                    return false;
                }
            }
            let series = (f.level, f.key.clone());
            let strength = self.series.get(&series).map_or(0.0, |st| st.strength);
            if let Some(&(prev, was)) = self.incident.get(&series) {
                let within =
                    f.window_start_ms - prev <= self.cfg.incident_cooldown_windows * window;
                let escalation = self.cfg.incident_escalation;
                let escalates = escalation > 0.0 && strength >= escalation * was.max(1.0);
                if within && !escalates {
                    return false;
                }
            }
            self.last.insert(k, f.window_start_ms);
            self.incident.insert(series, (f.window_start_ms, strength));
        } else if self
            .raised
            .get(&(f.level, f.key.clone(), f.window_start_ms))
            .is_some_and(|v| v.iter().any(|a| a.kind == kind))
        {
            return false; // still holds: already raised
        }
        true
    }

    /// A level shift or trend break just called on `f`'s series: the end
    /// of the series' last move if it undoes it (that level shift or trend
    /// break, `resolved`), else None (and it becomes the move remembered,
    /// `trend` its move when it was called against the day before; `peer`:
    /// the peer test called it, a new move).
    fn end_of_shift(
        &mut self,
        f: &Forecast,
        a: &Alert,
        (trend, peer): (Option<(f64, u32)>, bool),
    ) -> Option<Alert> {
        // At most a period: by then the forecast has a season of the new
        // level, the day before holds it (a series is away after its move
        // for as long, see `TrendState::away`), and a move back is news,
        // or a shift that ended unseen would take it for its end.
        let memory = self.shift_memory_ms(f);
        // Back to what is usual against the day before: within the trend
        // CUSUM's allowance.
        let usual_again = self.cfg.trend_allowance();
        let st = self.series.get_mut(&(f.level, f.key.clone()))?;
        let back = st.move_of(a.observed);
        // The trend state and its window's ratio to the same window a day
        // earlier, and whether that is back at a usual ratio (`base`).
        let ratio = st.trend.as_deref().and_then(|t| Some((t, t.last_r?)));
        let usual = |base: f64| ratio.is_some_and(|(_, r)| (r - base).abs() <= usual_again);
        let home = ratio.map(|(t, _)| t.home());
        // The peer test ends its own moves (see `peer_move_ended`): a call
        // of its is a new move.
        let undoes = !peer && st.shifted.as_ref().is_some_and(|last| {
            let (prev, first, called_base) = (&last.alert, last.moved, last.called_base);
            // Any move ends back at the usual ratio from before it (home).
            // A trend break went on after it was called: it also ends back
            // at the usual ratio when it was called, or, once it settled
            // (its new level the usual ratio since), by a move back about
            // as far as it had settled from there (one window's ratio is
            // noisy, and the day before may have been off a little). A
            // level shift also ends by a move back about as far against
            // the series' recent mean (which may lag the daily shape when
            // the shift began, so understate it: hence home).
            let back_enough = home.is_some_and(usual)
                || match prev.kind {
                    AlertKind::TrendBreak => {
                        usual(called_base)
                            || ratio.is_some_and(|(t, r)| {
                                let settled = t.base[0] - called_base;
                                settled.abs() >= usual_again && back_by(settled, r - t.base[0], ABOUT_AS_FAR)
                            })
                            // No day before to tell (its share of lines
                            // on promotion differs): a move back against
                            // the recent mean at least half as far as the
                            // call's move, and no further than the climb
                            // or slide can have gone on from there.
                            || (ratio.is_none() && back_by(first, back, TREND_BACK_MAX))
                    }
                    _ => back_by(first, back, ABOUT_AS_FAR),
                };
            prev.direction != a.direction
                && f.window_start_ms - prev.window_start_ms <= memory
                && back_enough
        });
        if !undoes {
            // A move called against the day before is measured there too:
            // the recent mean had followed the forecast part way by then.
            let first = trend.map_or(back, |(moved, _)| moved);
            let called_base = st.trend.as_deref().map_or(0.0, |t| t.called_base);
            st.shifted = Some(Shifted {
                alert: Box::new(a.clone()),
                moved: first,
                called_base,
            });
            return None;
        }
        let done = *st.shifted.take()?.alert;
        Some(resolved(done, f, a.observed, a.expected))
    }

    /// Record that a series' current excursion in `direction` is part of
    /// an alert on the window starting `at` (never downgrading its own
    /// alert to another's). A window kept out of the change detector (a
    /// promotion's) starts one, so that its end is a recovery, not a
    /// drop: a store spiking over its promoted categories, alerted itself,
    /// or a total whose promotions seemed to explain a store's spike, which
    /// its forecast then followed (seed 25's total sold 45,037 against
    /// 27,087 while web-uk tripled, and 24,642 against a forecast of 32,022
    /// once it was over: no drop).
    fn cover(
        &mut self,
        at: i64,
        (level, key): (Level, &Arc<str>),
        direction: Direction,
        cover: Cover,
    ) {
        let Some(st) = self.series.get_mut(&(level, key.clone())) else {
            return;
        };
        if let Some((_, peak)) = st.kept_out.filter(|k| k.0 == at) {
            if st.excursion.is_none_or(|x| x.direction != direction) {
                st.excursion = Some(Excursion {
                    direction,
                    windows: 1,
                    outside: true,
                    outage: false,
                    cover,
                    recovery: false,
                    burst: false,
                    peak,
                });
            }
        }
        if let Some(e) = st.excursion.as_mut() {
            if e.direction == direction && e.cover != Cover::Own {
                e.start_jump();
                // Still within an ancestor's spike when that ancestor's
                // level shift names it too.
                let within = e.cover == Cover::Within && cover == Cover::Other;
                if !within {
                    e.cover = cover;
                }
            }
        }
        // Out of its band with another's alert: tomorrow's forecast
        // carries this move as much as one of its own (see the echo test).
        let out = st
            .band_out
            .filter(|o| (o.start, o.direction) == (at, direction) && cover.by_another());
        if let Some(out) = out {
            if st.outside_at.back() != Some(&out) {
                st.outside_at.push_back(out);
            }
        }
    }

    fn alert(&self, f: &Forecast, c: &Candidate, mut children: Vec<Child>) -> Alert {
        let e = f.expected.expect("candidates have an expectation");
        let y = f.actual.units as f64;
        let price = f
            .actual
            .avg_price
            .or_else(|| (f.actual.units != 0).then(|| f.actual.revenue / f.actual.units as f64))
            .unwrap_or(0.0)
            .abs();
        let at_stake = (y - e.p50).abs() * price;
        let by_score = match (c.kind, c.score) {
            (AlertKind::DropToZero, _) => Severity::High,
            (AlertKind::LevelShift | AlertKind::TrendBreak | AlertKind::PatternChange, _) => {
                Severity::Medium
            }
            (_, s) if s > 5.0 => Severity::High,
            (_, s) if s > 2.0 => Severity::Medium,
            _ => Severity::Low,
        };
        let by_revenue = if at_stake >= self.cfg.high_revenue {
            Severity::High
        } else if at_stake >= self.cfg.medium_revenue {
            Severity::Medium
        } else {
            Severity::Low
        };
        children.sort_by(|a, b| a.level.cmp(&b.level).reverse().then(a.key.cmp(&b.key)));
        let mut explanation = format!(
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
        // A move measured against the same time a day earlier.
        let day_before = c.trend.map(|(moved, n)| {
            format!(
                ": against the same time a day earlier, {}% {} than usual over the last {} min",
                ((moved.exp() - 1.0) * 100.0).abs().round(),
                if moved >= 0.0 { "higher" } else { "lower" },
                i64::from(n) * (f.window_end_ms - f.window_start_ms) / 60_000
            )
        });
        // ...or against the category's peers.
        let measured = day_before.or_else(|| {
            c.peer.map(|moved| {
                format!(
                    ": {}% {} than the category in the other stores and the store's other categories make usual",
                    ((moved.exp() - 1.0) * 100.0).abs().round(),
                    if moved >= 0.0 { "higher" } else { "lower" },
                )
            })
        });
        if c.kind == AlertKind::LevelShift {
            explanation.push_str("; level shifted ");
            explanation.push_str(c.direction.as_str());
            explanation.push_str(measured.as_deref().unwrap_or(""));
        }
        if c.kind == AlertKind::PatternChange {
            explanation.push_str(&format!(
                "; its last {} windows look like no earlier stretch ({:.1}x the divergence allowed, mostly {})",
                self.cfg.novelty_windows,
                c.score,
                if c.direction == Direction::Up { "higher" } else { "lower" }
            ));
        }
        if let (AlertKind::TrendBreak, Some(text)) = (c.kind, &measured) {
            explanation.push_str("; trending ");
            explanation.push_str(c.direction.as_str());
            explanation.push_str(text);
        }
        if !children.is_empty() {
            let direct: Vec<&str> = children
                .iter()
                .filter(|ch| parent_level(ch.level) == Some(f.level))
                .map(|ch| &*ch.key)
                .collect();
            explanation.push_str(&format!(
                "; {} series below it affected ({} direct: {}{})",
                children.len(),
                direct.len(),
                direct
                    .iter()
                    .take(3)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                if direct.len() > 3 { ", ..." } else { "" }
            ));
        }
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        Alert {
            id: format!(
                "{}:{}:{}:{}",
                f.level,
                f.key,
                c.kind.as_str(),
                f.window_start_ms
            ),
            status: Status::Open,
            level: f.level,
            key: f.key.clone(),
            kind: c.kind,
            direction: c.direction,
            severity: by_score.max(by_revenue),
            window_start_ms: f.window_start_ms,
            window_end_ms: f.window_end_ms,
            observed: y,
            expected: e.p50,
            band: [e.p10, e.p90],
            score: r3(c.score),
            robust_z: r3(c.z),
            revenue_at_stake: (at_stake * 100.0).round() / 100.0,
            children,
            model: f.model.clone(),
            model_version: f.model_version,
            explanation,
        }
    }
}

/// Alert `done` (a level shift or trend break), resolved by `f`'s window,
/// which sold `observed` against `expected`.
fn resolved(mut done: Alert, f: &Forecast, observed: f64, expected: f64) -> Alert {
    done.status = Status::Resolved;
    done.observed = observed;
    done.explanation = format!(
        "resolved: {} {} units {} in {}, expected {}: the {} {} of {} UTC ended",
        f.level,
        f.key,
        observed,
        fmt_utc(f.window_start_ms),
        expected.round(),
        match done.kind {
            AlertKind::TrendBreak => "trend break",
            _ => "level shift",
        },
        done.direction.as_str(),
        fmt_utc(done.window_start_ms)
    );
    done
}

/// Whether a move `back` (log ratio) undoes a move `moved` the other way:
/// at least half as far back, at most `most` times as far.
fn back_by(moved: f64, back: f64, most: f64) -> bool {
    (0.5..=most).contains(&(-back / moved))
}

/// How far back a move may go and still be about as far as the one it
/// undoes (see [`back_by`]).
const ABOUT_AS_FAR: f64 = 1.5;

/// The least log ratio to its forecast a series below another's move `m`
/// (log ratio, up) must reach to be a burst of its own, not its share of
/// that move: twice as far, and 0.4 more (a SKU tripling inside its
/// category's 1.8x shift is the shift; selling 6x, its own).
pub(crate) fn burst_from(m: f64) -> f64 {
    (2.0 * m).max(m + 0.4)
}

/// How far back, as a multiple of a trend break's move when it was called,
/// a move the other way may go and still be its end when there is no day
/// before to measure it against (see `Alerting::end_of_shift`). A trend
/// break is called about two thirds of the way up its climb, on the mean
/// deviation of the windows summed, about half of where it stands then:
/// the whole move is about two to three times the call's.
const TREND_BACK_MAX: f64 = 3.0;

/// The least share of an ancestor's spike or drop (as log ratios to the
/// forecasts' medians) a series must move its way to have moved with it
/// (see `Alerting::moved_below`): a store tripling lifts each category
/// about as much, while one SKU's burst lifting its store leaves the other
/// categories where they were.
const MOVED_WITH_SHARE: f64 = 0.5;
/// A call of the peer test takes the place of its series' own candidate,
/// if any, but an outage's (a drop to zero is no climb, nor a step).
fn put_peer_call(cands: &mut Vec<Candidate>, call: Candidate) {
    match cands.iter_mut().find(|c| c.idx == call.idx) {
        Some(c) if c.kind == AlertKind::DropToZero => {}
        Some(c) => *c = call,
        None => cands.push(call),
    }
}

/// Windows before a further step's start (see `peer::Step`) within which
/// a level shift its way called is that step.
const FURTHER_GRACE: i64 = 2;

/// The share of a step the peer test told (log ratio) the rest of a
/// category, its SKUs moving its way left out, must move too for the step
/// to be the category's own (see `Alerting::peer_steps`).
const REST_SHARE: f64 = 0.5;

/// The share of a category's step down (log ratios) the units of its SKUs
/// in an outage that goes on must account for to make the step theirs
/// (see `Outages`).
const OUTAGE_SHARE: f64 = 0.5;

/// The ancestors of `f`'s series, nearest first: the parent its forecast
/// names, then up through `parent_of` (a window's [`parents`]).
fn ancestors<'a>(
    f: &Forecast,
    parent_of: &'a FxHashMap<SeriesKey, Arc<str>>,
) -> impl Iterator<Item = SeriesKey> + 'a {
    let first = f
        .parent
        .clone()
        .zip(parent_level(f.level))
        .map(|(p, l)| (l, p));
    std::iter::successors(first, move |node| {
        let up = parent_level(node.0)?;
        Some((up, parent_of.get(node)?.clone()))
    })
}

/// The parent of every series of a window above the SKU level, by the
/// parents its forecasts name (not the thousands of SKUs: no SKU is a parent).
fn parents(group: &[&Forecast]) -> FxHashMap<SeriesKey, Arc<str>> {
    group
        .iter()
        .filter(|g| g.level > Level::SkuStore)
        .filter_map(|g| Some(((g.level, g.key.clone()), g.parent.clone()?)))
        .collect()
}

/// The level one up from `l` (none above the total).
pub fn parent_level(l: Level) -> Option<Level> {
    match l {
        Level::SkuStore => Some(Level::CategoryStore),
        Level::CategoryStore => Some(Level::Store),
        Level::Store => Some(Level::Total),
        Level::Total => None,
    }
}

#[cfg(test)]
mod tests;
