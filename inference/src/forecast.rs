//! The forecast record: a closed window's actuals with the forecast made from
//! it. Serialized as JSON on the `forecasts` topic and the WebSocket gateway
//! (contract in `docs/forecasts.md`).

use std::sync::Arc;

use salescast_stream_core::{Level, WindowRecord};
use serde::{Deserialize, Serialize};

/// Round to 4 decimals: plenty for units and prices, and compact JSON.
fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// One future window's quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HorizonPoint {
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub end_ms: i64,
    /// 10th percentile of units.
    pub p10: f64,
    /// Median of units.
    pub p50: f64,
    /// 90th percentile of units.
    pub p90: f64,
}

/// What happened in the closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actual {
    /// Units sold net of returns.
    pub units: i64,
    /// Units returned.
    pub returns: i64,
    /// Order lines.
    pub lines: i64,
    /// Net revenue.
    pub revenue: f64,
    /// Average price of units sold; null with no sales.
    pub avg_price: Option<f64>,
    /// Share of lines on promotion.
    pub promo_share: f64,
}

/// A closed window with its forecast for the next windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Idempotent id: `<level>:<key>:<window_start_ms>:<revision>`.
    pub id: String,
    /// Hierarchy level.
    pub level: Level,
    /// Series key.
    pub key: Arc<str>,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub window_end_ms: i64,
    /// Revision of the window (0 first, then one per late update).
    pub revision: u32,
    /// Key of the series one level up (absent for the total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<str>>,
    /// The window's actuals.
    pub actual: Actual,
    /// What the previous forecast of this series said about this window, if
    /// it covered it (the one-step-ahead forecast when windows are contiguous).
    pub expected: Option<HorizonPoint>,
    /// Windows of history the series had when this forecast was made.
    pub history_windows: u64,
    /// Model that made `horizon`.
    pub model: String,
    /// Version of that model's parameters.
    pub model_version: u64,
    /// Forecasts for the next windows, nearest first.
    pub horizon: Vec<HorizonPoint>,
}

impl Forecast {
    /// Assemble a forecast for a closed window.
    pub fn new(
        w: &WindowRecord,
        expected: Option<HorizonPoint>,
        history_windows: u64,
        model: &str,
        model_version: u64,
        horizon: Vec<HorizonPoint>,
    ) -> Forecast {
        let round = |p: HorizonPoint| HorizonPoint {
            p10: r4(p.p10),
            p50: r4(p.p50),
            p90: r4(p.p90),
            ..p
        };
        Forecast {
            id: format!("{}:{}:{}:{}", w.level, w.key, w.start_ms, w.revision),
            level: w.level,
            key: w.key.clone(),
            window_start_ms: w.start_ms,
            window_end_ms: w.end_ms,
            revision: w.revision,
            parent: w.parent.clone(),
            actual: Actual {
                units: w.agg.units,
                returns: w.agg.returns,
                lines: w.agg.lines,
                revenue: r4(w.agg.revenue()),
                avg_price: w.agg.avg_price().map(r4),
                promo_share: r4(w.agg.promo_share()),
            },
            expected: expected.map(round),
            history_windows,
            model: model.to_string(),
            model_version,
            horizon: horizon.into_iter().map(round).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salescast_stream_core::WindowAgg;

    #[test]
    fn json_round_trip_and_id() {
        let w = WindowRecord {
            level: Level::CategoryStore,
            key: "toys|web-uk".into(),
            start_ms: 0,
            end_ms: 60_000,
            revision: 2,
            parent: None,
            agg: WindowAgg::default(),
        };
        let f = Forecast::new(&w, None, 0, "ewma", 0, vec![]);
        assert_eq!(f.id, "category_store:toys|web-uk:0:2");
        let j = serde_json::to_string(&f).unwrap();
        assert!(j.contains("\"level\":\"category_store\""));
        let back: Forecast = serde_json::from_str(&j).unwrap();
        assert_eq!(back, f);
    }
}
