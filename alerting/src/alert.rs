//! What the stage raises: alerts, their kinds, directions, severities and
//! statuses (the JSON contract of `docs/alerts.md`).

use std::sync::Arc;

use salescast_inference::features::civil_from_days;
use salescast_stream_core::Level;
use serde::{Deserialize, Serialize};

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
    /// A sustained shift of the level (up or down, see `direction`).
    LevelShift,
    /// The series started moving steadily away from its forecasts (a
    /// climb or a slide rather than a step; see `direction`).
    TrendBreak,
    /// The distribution of the series' recent windows is unlike every
    /// stretch it showed before (see `novelty-windows`), with no window
    /// far enough from its forecast for another kind.
    PatternChange,
}

impl AlertKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Spike => "spike",
            AlertKind::Drop => "drop",
            AlertKind::DropToZero => "drop_to_zero",
            AlertKind::LevelShift => "level_shift",
            AlertKind::TrendBreak => "trend_break",
            AlertKind::PatternChange => "pattern_change",
        }
    }

    /// Every kind.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::Spike,
        AlertKind::Drop,
        AlertKind::DropToZero,
        AlertKind::LevelShift,
        AlertKind::TrendBreak,
        AlertKind::PatternChange,
    ];
}

/// Which way the series moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above what was expected.
    Up,
    /// Below what was expected.
    Down,
}

impl Direction {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// The other way.
    pub(crate) fn opposite(self) -> Direction {
        match self {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        }
    }

    /// +1 up, -1 down: a move `x` goes this way beyond `t` when
    /// `x * sign > t`.
    pub(crate) fn sign(self) -> f64 {
        match self {
            Direction::Up => 1.0,
            Direction::Down => -1.0,
        }
    }
}

/// Severity, from how far outside the band the actual fell and how much
/// revenue is at stake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Up to two band widths outside, little revenue at stake.
    Low,
    /// Two to five band widths outside, or `medium-revenue` at stake.
    Medium,
    /// More than five band widths outside, `high-revenue` at stake, or a
    /// drop to zero.
    High,
}

/// Whether an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Raised.
    Open,
    /// A revision of the window showed it no longer holds.
    Retracted,
    /// A level shift that ended: the level moved back (the same id as the
    /// shift, sent once, when the move back is called).
    Resolved,
}

impl Status {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Retracted => "retracted",
            Status::Resolved => "resolved",
        }
    }
}

/// A child series that broke with the alerted one (root cause grouping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    /// Its level.
    pub level: Level,
    /// Its key.
    pub key: Arc<str>,
    /// Its kind of anomaly.
    pub kind: AlertKind,
    /// Units observed.
    pub observed: f64,
    /// Units expected (p50).
    pub expected: f64,
}

/// An anomaly on one series in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: `<level>:<key>:<kind>:<window_start_ms>`.
    pub id: String,
    /// `open`; `retracted` when a revision undid it; `resolved` when a
    /// level shift ended.
    pub status: Status,
    /// Hierarchy level.
    pub level: Level,
    /// Series key.
    pub key: Arc<str>,
    /// Kind of anomaly.
    pub kind: AlertKind,
    /// Up or down.
    pub direction: Direction,
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
    /// Distance outside the band in band widths (for a level shift: the
    /// CUSUM statistic in robust z units).
    pub score: f64,
    /// Robust z-score of the residual against the series' recent residuals.
    pub robust_z: f64,
    /// |observed - expected| x average price.
    pub revenue_at_stake: f64,
    /// Descendant series that broke the same way in the same window,
    /// explained by this alert.
    pub children: Vec<Child>,
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
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60
    )
}
