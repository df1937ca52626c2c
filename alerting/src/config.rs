//! The stage's configuration (`[alerting]` in the config file).

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
    /// A `drop_to_zero` needs the expected median to be at least this, in
    /// one window or summed over a run of zero windows.
    pub min_expected_for_zero: f64,
    /// Windows after an alert during which the same series and kind stay quiet.
    pub cooldown_windows: i64,
    /// Lowest level alerted on (`sku_store` alerts on everything).
    pub min_level: Level,
    /// Windows of history a series needs before it can alert (young series
    /// have unreliable bands).
    pub min_history_windows: u64,
    /// Robust z-score (median/MAD of the series' recent residuals) a spike
    /// or drop must also reach, for one series alone (see
    /// `family-wise-correction`).
    pub z_threshold: f64,
    /// The z-threshold holds for one series. A level that scores N series
    /// in one window (a catalog's thousands of SKUs) tests N times, so with
    /// this on its spikes and drops must reach the score whose tail is 1/N
    /// of the z-threshold's (Bonferroni): z 6 for one series, about 7.2 for
    /// 3,000 SKUs in a window. Every level then raises false spikes about as
    /// rarely as a single series does, however large the catalog.
    pub family_wise_correction: bool,
    /// Recent residuals kept per series for the robust z-score.
    pub residual_window: usize,
    /// CUSUM slack, in score units.
    pub cusum_k: f64,
    /// CUSUM decision threshold, in score units.
    pub cusum_h: f64,
    /// Smallest change a level shift must show, as a fraction of the
    /// series' level: its recent mean, or its bias-corrected forecast
    /// when that is higher (0.1: a tenth).
    pub level_shift_min_change: f64,
    /// Smallest change a spike or drop must show against the
    /// bias-corrected forecast, as a fraction (0.2: units at least 1.2x
    /// the forecast for a spike, at most 1/1.2 of it for a drop). A series
    /// with a tight band (a smooth total) is otherwise out of it on a few
    /// percent; an operator acts on a change that matters.
    pub spike_min_change: f64,
    /// Revenue at stake (|observed - expected| x average price) above which
    /// an alert is at least `medium`.
    pub medium_revenue: f64,
    /// Revenue at stake above which an alert is `high`.
    pub high_revenue: f64,
    /// How long (windows) alerts are remembered for retraction on revision.
    pub revision_memory_windows: i64,
    /// How long (windows) a series' last level shift is remembered: a shift
    /// the other way within it that undoes it (between half and one and a
    /// half times the first move, each the log ratio of its window's units
    /// to the series' recent mean) ends it with a `resolved` message under
    /// the first shift's id, instead of a new alert. At most one
    /// `recurring-period-ms` (when set): by then the forecast has a season
    /// of the new level, and a move back is news of its own.
    pub level_shift_memory_windows: i64,
    /// A series whose deviation from its forecast is at least this share
    /// explained by one child's (same direction) is that child's
    /// consequence: the child is alerted as the root cause.
    pub root_cause_share: f64,
    /// A spike in a window where at least this share of lines was on
    /// promotion is the promotion working, not an anomaly, and so is one
    /// with more lines on promotion than the series usually has (by enough
    /// to explain a material rise: 5 points at the default
    /// `spike-min-change`, a promotion lifting demand at most 5x) whose units
    /// outside promotion lines (units x (1 - promo share)) are no more than
    /// usual (the band's top plus its margin, times the usual share not on
    /// promotion): it raises nothing, and a parent that moved only because
    /// of it raises nothing either (1.0 or more: no spike is explained
    /// away).
    pub promo_share_explains_spike: f64,
    /// A spike (or drop) within one window (or a 96th of the period, a
    /// quarter of an hour of a day, when that is more) of the same time
    /// one and two periods earlier (default a day, in ms) as others the
    /// same way on the
    /// same series is the series' shape recurring (a daily rush the forecast
    /// underestimates), not news: it raises nothing, though it still takes
    /// part in root-cause grouping. 0 turns it off.
    pub recurring_period_ms: i64,
    /// Windows after any alert on a series during which it raises no other
    /// alert of any kind (0: only the per-kind cooldown applies), unless
    /// the new one escalates (`incident-escalation`).
    pub incident_cooldown_windows: i64,
    /// An alert at least this many times as strong (see
    /// [`Alerting::strength`](crate::Alerting::strength)) as the one that opened a series' incident
    /// (taken as at least 1, a detector's threshold) breaks through
    /// `incident-cooldown-windows`, and the incident goes on from it: a
    /// far bigger anomaly is news, even within another's cooldown. 0 turns
    /// it off. Values between 0 and 1 are rejected.
    pub incident_escalation: f64,
    /// The longest a spike (or drop) lasts, in windows. A move that broke
    /// out of the band must outlast this before it is called a level
    /// shift, and one that ends within it was a spike: its windows are
    /// taken back out of the change detector (so are those of a move
    /// another series' alert explained, however long). A 3-window spike is then one
    /// `spike` alert, not a spike and a level shift; a shift that starts
    /// with a jump is called on its `spike-max-windows + 1`-th window (its
    /// first window already raised the spike or drop). A gradual shift,
    /// never a spike or drop, is called as soon as the CUSUM is sure (on a
    /// window outside the p10-p90 band scoring at least z-threshold / 2 its
    /// way, as every shift).
    /// 0 turns the rule off.
    pub spike_max_windows: u32,
    /// A move confirmed by two (up to `spike-max-windows`) windows in a
    /// row is a level shift at once, before `spike-max-windows` runs out,
    /// when it is no spike by size: the windows outside the band the same
    /// way with a score of at least half the z-threshold each and together
    /// (their sum over the square root of their number) the z-threshold of
    /// their level (see `family-wise-correction`), at about the same new
    /// level (log ratios of units to the first window's expectation within
    /// `ln 1.5` of each other),
    /// and up by less than this factor (a move this big or more is a spike
    /// while it is young; a move down that is not to zero is a shift). 0
    /// turns the rule off.
    pub level_shift_max_factor: f64,
    /// Trend breaks: each window's units are set against the same window
    /// one `recurring-period-ms` earlier and, when known, two (a day: the
    /// daily shape cancels out, and so does a steady weekday difference,
    /// learnt as the usual ratio). A CUSUM sums how far the log ratio
    /// strays from the usual, by the lesser of the two comparisons (an
    /// anomaly the day before that passed unseen is no trend today), in
    /// standard deviations of a window's ratio (Poisson counts times the
    /// series' own overdispersion), less an allowance (see
    /// `trend-min-change`), at most 2 beyond it a window. A trend break is
    /// a sum of `trend-z` whose deviations climb (their slope at least 2
    /// standard errors: a step, that is a level shift's, or nothing, is
    /// flat). This is the width, in windows, of the spans that tell when a
    /// trend called has settled (its newest span no longer beyond its
    /// oldest; its level then becomes the usual) and of the first usual
    /// ratio learnt after a jump. 0 turns trend breaks off (and level
    /// shifts against the day before with them).
    pub trend_windows: u32,
    /// The trend CUSUM's decision threshold, in standard deviations of a
    /// window's ratio.
    pub trend_z: f64,
    /// Smallest drift a trend break is summed from, as a fraction of the
    /// usual ratio to a period earlier (0.4: two fifths): a window adds to
    /// the trend CUSUM only by how far it is beyond half of this (and at
    /// least half a standard deviation), however sure its count (a best
    /// seller on promotion moves its category a few percent for hours;
    /// that is no trend). A level shift against the day before (a step the
    /// forecast followed at once) must jump by this, in log terms, from a
    /// window at the usual ratio, and move by it on average.
    pub trend_min_change: f64,
    /// Lowest level with trend breaks (each series keeps a period of its
    /// units: the thousands of SKUs would cost the most memory, and one
    /// SKU's units are too few to see a gradual trend in).
    pub trend_min_level: Level,
    /// Pattern novelty (see [`novelty`](crate::novelty)): the distribution of a series'
    /// residuals (units less the bias-corrected forecast) over its last
    /// this many windows is compared with every stretch it has shown
    /// before; one unlike them all (and no spike, drop, shift or trend
    /// break) raises a `pattern_change`. 0 (the default) turns it off: on
    /// the labeled sales scenarios it raised mostly false alerts, while it
    /// is what catches the regime changes of machine metrics (NAB).
    pub novelty_windows: u32,
    /// Equal bins between the smallest and largest residual seen.
    pub novelty_bins: u32,
    /// Chi-square significance of the divergence from the nearest
    /// remembered stretch.
    pub novelty_significance: f64,
    /// Stretches remembered per series (the least recently matched go first).
    pub novelty_memory: u32,
    /// Lowest level with pattern novelty (each series keeps its stretches).
    pub novelty_min_level: Level,
    /// A spike or drop must also leave the series' usual range: its units
    /// above all but `usual-range-share` of the series' last this many
    /// windows' (below, for a drop). One that does not raises nothing, and
    /// neither do its windows nor its way back (the series' usual bursts).
    /// Machine metrics (NAB) burst and dip every so often by as much as
    /// their labeled anomalies, which set new highs or lows; sales rise
    /// and fall with the time of day, so a SKU's real spike at night is no
    /// high of its day, and sales leave this off (on seeds 1-6, with a
    /// week of 5-minute windows, spike recall fell from 0.94 to 0.71). 0
    /// (the default) turns it off; on, each series keeps this many
    /// windows' units.
    pub usual_range_windows: u32,
    /// The share of the last `usual-range-windows` windows a spike's units
    /// may be at or below (a drop's at or above) and still leave the usual
    /// range (0.02: beyond 98% of them).
    pub usual_range_share: f64,
    /// The peer test (a category in a store against the same category in
    /// the other stores and the store's other categories, by a median
    /// polish of each window's table of order lines) looks for moves of
    /// this size, in log terms (0.2: lines about 1.22x, or 0.82x, what
    /// the peers make expected); its trend breaks (climbs and slides)
    /// replace the forecast trend detector's on the categories it covers
    /// (at least three categories in at least three stores), a level
    /// shift of a category, or of a SKU against the same SKU in the other
    /// stores, stands only where the test leans its way, and a SKU's lines
    /// against the same SKU in the other stores score its spikes and drops
    /// too. 0 turns it off.
    pub peer_delta: f64,
    /// The peer test's CUSUM threshold (log-likelihood ratio): a move is
    /// found once the evidence for it passes this, and a second step its
    /// way while it goes on (on top of a step, or at a climb's top).
    pub peer_h: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            band_margin: 0.5,
            min_units_outside: 3.0,
            min_expected_for_zero: 20.0,
            cooldown_windows: 5,
            min_level: Level::SkuStore,
            min_history_windows: 30,
            z_threshold: 6.0,
            family_wise_correction: true,
            residual_window: 60,
            cusum_k: 1.5,
            cusum_h: 12.0,
            level_shift_min_change: 0.1,
            spike_min_change: 0.2,
            medium_revenue: 500.0,
            high_revenue: 5000.0,
            revision_memory_windows: 120,
            level_shift_memory_windows: 1440,
            promo_share_explains_spike: 0.5,
            root_cause_share: 0.5,
            incident_cooldown_windows: 0,
            incident_escalation: 4.0,
            recurring_period_ms: 86_400_000,
            spike_max_windows: 3,
            level_shift_max_factor: 2.5,
            trend_windows: 9,
            trend_z: 12.0,
            trend_min_change: 0.4,
            trend_min_level: Level::CategoryStore,
            novelty_windows: 0,
            novelty_bins: 5,
            novelty_significance: 0.05,
            novelty_memory: 32,
            novelty_min_level: Level::Store,
            usual_range_windows: 0,
            usual_range_share: 0.02,
            peer_delta: 0.2,
            peer_h: 12.0,
        }
    }
}

impl Config {
    /// The trend CUSUM's allowance, in log terms: half of
    /// `trend-min-change`. A ratio to the day before within it of the usual
    /// one is back to usual.
    pub(crate) fn trend_allowance(&self) -> f64 {
        0.5 * self.trend_min_change.ln_1p()
    }
}
