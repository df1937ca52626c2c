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
    /// Forecasts for the next windows, nearest first. On the wire it is
    /// columnar (`{"start_ms","step_ms","p10","p50","p90"}`, see
    /// docs/forecasts.md): the windows are contiguous and of one width, so
    /// one start and a step replace twelve pairs of bounds.
    #[serde(with = "columnar")]
    pub horizon: Vec<HorizonPoint>,
}

/// The horizon's wire form: `{"start_ms","step_ms","p10":[..],"p50":[..],"p90":[..]}`,
/// a third of the bytes of one object per window (the bulk of a forecast
/// message, and of what the broker and every chart must carry). An empty
/// horizon has `start_ms` and `step_ms` 0 and empty arrays.
pub mod columnar {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HorizonPoint;

    #[derive(Serialize)]
    struct Out<'a> {
        start_ms: i64,
        step_ms: i64,
        p10: Col<'a>,
        p50: Col<'a>,
        p90: Col<'a>,
    }

    /// One quantile of every point, written as an array without a copy.
    struct Col<'a>(&'a [HorizonPoint], fn(&HorizonPoint) -> f64);

    impl Serialize for Col<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(self.1))
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {
        start_ms: i64,
        step_ms: i64,
        p10: Vec<f64>,
        p50: Vec<f64>,
        p90: Vec<f64>,
    }

    /// Serialize contiguous, equal-width points; anything else is an error.
    pub fn serialize<S: Serializer>(h: &[HorizonPoint], s: S) -> Result<S::Ok, S::Error> {
        let start_ms = h.first().map_or(0, |p| p.start_ms);
        let step_ms = h.first().map_or(0, |p| p.end_ms - p.start_ms);
        let contiguous = h.iter().enumerate().all(|(i, p)| {
            p.start_ms == start_ms + i as i64 * step_ms && p.end_ms == p.start_ms + step_ms
        });
        if !contiguous {
            return Err(S::Error::custom(
                "horizon windows must be contiguous and of one width",
            ));
        }
        Out {
            start_ms,
            step_ms,
            p10: Col(h, |p| p.p10),
            p50: Col(h, |p| p.p50),
            p90: Col(h, |p| p.p90),
        }
        .serialize(s)
    }

    /// Rebuild the points; the three arrays must have one length.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HorizonPoint>, D::Error> {
        let h = In::deserialize(d)?;
        if h.p50.len() != h.p10.len() || h.p90.len() != h.p10.len() {
            return Err(D::Error::custom(
                "horizon p10, p50 and p90 differ in length",
            ));
        }
        Ok((0..h.p10.len())
            .map(|i| {
                let start_ms = h.start_ms + i as i64 * h.step_ms;
                HorizonPoint {
                    start_ms,
                    end_ms: start_ms + h.step_ms,
                    p10: h.p10[i],
                    p50: h.p50[i],
                    p90: h.p90[i],
                }
            })
            .collect())
    }
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

    #[test]
    fn horizon_is_columnar_on_the_wire() {
        let w = WindowRecord {
            level: Level::Store,
            key: "web-uk".into(),
            start_ms: 0,
            end_ms: 60_000,
            revision: 0,
            parent: None,
            agg: WindowAgg::default(),
        };
        let pt = |i: i64, m: f64| HorizonPoint {
            start_ms: 60_000 * (i + 1),
            end_ms: 60_000 * (i + 2),
            p10: m - 1.0,
            p50: m,
            p90: m + 1.5,
        };
        let f = Forecast::new(&w, None, 5, "ewma", 0, vec![pt(0, 2.0), pt(1, 3.0)]);
        let j = serde_json::to_string(&f).unwrap();
        assert!(
            j.contains(r#""horizon":{"start_ms":60000,"step_ms":60000,"p10":[1.0,2.0],"p50":[2.0,3.0],"p90":[3.5,4.5]}"#),
            "{j}"
        );
        let back: Forecast = serde_json::from_str(&j).unwrap();
        assert_eq!(back, f);
        // A gap cannot be written columnar: an error, not a wrong message.
        let mut gap = f.clone();
        gap.horizon[1].start_ms += 60_000;
        gap.horizon[1].end_ms += 60_000;
        assert!(serde_json::to_string(&gap).is_err());
        let ragged = j.replace("\"p90\":[3.5,4.5]", "\"p90\":[3.5]");
        assert!(serde_json::from_str::<Forecast>(&ragged).is_err());
    }
}
