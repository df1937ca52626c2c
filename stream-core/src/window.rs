//! Window aggregates and the Arrow batch of closed windows that flows to
//! inference.

use std::sync::{Arc, OnceLock};

use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt32Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::series::Level;
use crate::Error;

/// Prices are carried as integer millionths so that window sums are exact and
/// independent of arrival order.
pub const MICROS: f64 = 1_000_000.0;

/// Convert a price or revenue to integer millionths (rounded to nearest).
pub fn to_micros(v: f64) -> i64 {
    (v * MICROS).round() as i64
}

/// Incremental aggregate of one series in one window. All fields are integer
/// sums, so folding is associative and commutative: any arrival order gives
/// the same result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WindowAgg {
    /// Units sold net of returns.
    pub units: i64,
    /// Units returned or cancelled (a positive count).
    pub returns: i64,
    /// Order lines (events).
    pub lines: i64,
    /// Net revenue in millionths (returns subtract).
    pub revenue_micros: i64,
    /// Units on positive lines (for the average price).
    pub gross_units: i64,
    /// Revenue of positive lines in millionths (for the average price).
    pub gross_revenue_micros: i64,
    /// Lines sold on promotion.
    pub promo_lines: i64,
}

impl WindowAgg {
    /// Fold one sale line in.
    #[inline]
    pub fn add(&mut self, qty: i64, price_micros: i64, promo: bool) {
        let rev = qty.saturating_mul(price_micros);
        self.units += qty;
        self.lines += 1;
        self.revenue_micros = self.revenue_micros.saturating_add(rev);
        if qty < 0 {
            self.returns -= qty;
        } else {
            self.gross_units += qty;
            self.gross_revenue_micros = self.gross_revenue_micros.saturating_add(rev);
        }
        self.promo_lines += promo as i64;
    }

    /// Merge another aggregate of the same series and window.
    pub fn merge(&mut self, o: &WindowAgg) {
        self.units += o.units;
        self.returns += o.returns;
        self.lines += o.lines;
        self.revenue_micros += o.revenue_micros;
        self.gross_units += o.gross_units;
        self.gross_revenue_micros += o.gross_revenue_micros;
        self.promo_lines += o.promo_lines;
    }

    /// Net revenue in currency units.
    pub fn revenue(&self) -> f64 {
        self.revenue_micros as f64 / MICROS
    }

    /// Average price of units sold (returns excluded); `None` with no sales.
    pub fn avg_price(&self) -> Option<f64> {
        (self.gross_units > 0)
            .then(|| self.gross_revenue_micros as f64 / MICROS / self.gross_units as f64)
    }

    /// Share of lines sold on promotion, in `[0, 1]`.
    pub fn promo_share(&self) -> f64 {
        if self.lines == 0 {
            0.0
        } else {
            self.promo_lines as f64 / self.lines as f64
        }
    }
}

/// One emitted window of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    /// Hierarchy level.
    pub level: Level,
    /// Series key within the level.
    pub key: Arc<str>,
    /// Inclusive window start, epoch ms.
    pub start_ms: i64,
    /// Exclusive window end, epoch ms.
    pub end_ms: i64,
    /// 0 for the first emission; each late update re-emits with the next number.
    pub revision: u32,
    /// Key of the series one level up (sku x store -> category x store ->
    /// store -> total); `None` for the total.
    pub parent: Option<Arc<str>>,
    /// The aggregate.
    pub agg: WindowAgg,
}

/// Column names of [`window_schema`].
pub mod wcol {
    /// Level name.
    pub const LEVEL: &str = "level";
    /// Series key.
    pub const KEY: &str = "key";
    /// Window start.
    pub const START: &str = "window_start";
    /// Window end.
    pub const END: &str = "window_end";
    /// Revision number.
    pub const REVISION: &str = "revision";
}

/// Schema of a [`WindowBatch`].
pub fn window_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("level_code", DataType::UInt8, false),
            Field::new(wcol::KEY, DataType::Utf8, false),
            Field::new(wcol::START, ts.clone(), false),
            Field::new(wcol::END, ts, false),
            Field::new(wcol::REVISION, DataType::UInt32, false),
            Field::new("units", DataType::Int64, false),
            Field::new("returns", DataType::Int64, false),
            Field::new("lines", DataType::Int64, false),
            Field::new("revenue_micros", DataType::Int64, false),
            Field::new("gross_units", DataType::Int64, false),
            Field::new("gross_revenue_micros", DataType::Int64, false),
            Field::new("promo_lines", DataType::Int64, false),
            Field::new("revenue", DataType::Float64, false),
            Field::new("avg_price", DataType::Float64, true),
            Field::new("promo_share", DataType::Float64, false),
            Field::new("parent", DataType::Utf8, true),
        ]))
    })
    .clone()
}

/// Closed (or revised) windows, as an Arrow record batch of [`window_schema`].
#[derive(Debug, Clone)]
pub struct WindowBatch {
    batch: RecordBatch,
}

macro_rules! column {
    ($self:ident, $i:expr, $t:ty) => {
        $self
            .batch
            .column($i)
            .as_any()
            .downcast_ref::<$t>()
            .expect("schema checked on construction")
    };
}

impl WindowBatch {
    /// Build a batch from records (in the given order).
    pub fn from_records(records: &[WindowRecord]) -> WindowBatch {
        let n = records.len();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(15);
        cols.push(Arc::new(UInt8Array::from_iter_values(
            records.iter().map(|r| r.level.code()),
        )));
        cols.push(Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| &*r.key),
        )));
        cols.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.start_ms))
                .with_timezone("UTC"),
        ));
        cols.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.end_ms))
                .with_timezone("UTC"),
        ));
        cols.push(Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.revision),
        )));
        let i64col = |f: fn(&WindowAgg) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| f(&r.agg)),
            ))
        };
        cols.push(i64col(|a| a.units));
        cols.push(i64col(|a| a.returns));
        cols.push(i64col(|a| a.lines));
        cols.push(i64col(|a| a.revenue_micros));
        cols.push(i64col(|a| a.gross_units));
        cols.push(i64col(|a| a.gross_revenue_micros));
        cols.push(i64col(|a| a.promo_lines));
        cols.push(Arc::new(Float64Array::from_iter_values(
            records.iter().map(|r| r.agg.revenue()),
        )));
        cols.push(Arc::new(Float64Array::from_iter(
            records.iter().map(|r| r.agg.avg_price()),
        )));
        cols.push(Arc::new(Float64Array::from_iter_values(
            records.iter().map(|r| r.agg.promo_share()),
        )));
        cols.push(Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.parent.as_deref()),
        )));
        let batch = RecordBatch::try_new(window_schema(), cols).expect("columns match schema");
        debug_assert_eq!(batch.num_rows(), n);
        WindowBatch { batch }
    }

    /// Wrap a record batch read back from elsewhere (IPC, tests), checking its schema.
    pub fn try_from_batch(batch: RecordBatch) -> Result<WindowBatch, Error> {
        if batch.schema().fields() != window_schema().fields() {
            return Err(Error::Schema(format!(
                "window batch schema mismatch: {:?}",
                batch.schema()
            )));
        }
        Ok(WindowBatch { batch })
    }

    /// The underlying Arrow batch.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch holds no windows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Read row `i` back as a [`WindowRecord`].
    pub fn record(&self, i: usize) -> WindowRecord {
        let level = Level::from_code(column!(self, 0, UInt8Array).value(i)).expect("valid level");
        let key: Arc<str> = column!(self, 1, StringArray).value(i).into();
        let g = |c: usize| column!(self, c, Int64Array).value(i);
        WindowRecord {
            level,
            key,
            start_ms: column!(self, 2, TimestampMillisecondArray).value(i),
            end_ms: column!(self, 3, TimestampMillisecondArray).value(i),
            revision: column!(self, 4, UInt32Array).value(i),
            parent: {
                let p = column!(self, 15, StringArray);
                p.is_valid(i).then(|| Arc::from(p.value(i)))
            },
            agg: WindowAgg {
                units: g(5),
                returns: g(6),
                lines: g(7),
                revenue_micros: g(8),
                gross_units: g(9),
                gross_revenue_micros: g(10),
                promo_lines: g(11),
            },
        }
    }

    /// Iterate over all rows as records.
    pub fn records(&self) -> impl Iterator<Item = WindowRecord> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }

    /// Per level (in [`Level::ALL`] order): first emissions and revisions.
    pub fn counts_by_level(&self) -> [(u64, u64); 4] {
        let levels = column!(self, 0, UInt8Array);
        let revs = column!(self, 4, UInt32Array);
        let mut out = [(0u64, 0u64); 4];
        for (l, r) in levels.values().iter().zip(revs.values().iter()) {
            let slot = &mut out[(*l as usize).min(3)];
            if *r == 0 {
                slot.0 += 1;
            } else {
                slot.1 += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agg_counts_returns_and_prices() {
        let mut a = WindowAgg::default();
        a.add(2, to_micros(1.5), true);
        a.add(-1, to_micros(1.5), false);
        a.add(1, to_micros(3.0), false);
        assert_eq!(a.units, 2);
        assert_eq!(a.returns, 1);
        assert_eq!(a.lines, 3);
        assert_eq!(a.revenue_micros, to_micros(3.0 - 1.5 + 3.0));
        assert_eq!(a.avg_price(), Some(2.0));
        assert!((a.promo_share() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(WindowAgg::default().avg_price(), None);
    }

    #[test]
    fn batch_round_trips_records() {
        let mut agg = WindowAgg::default();
        agg.add(3, to_micros(9.99), false);
        let recs = vec![
            WindowRecord {
                level: Level::Store,
                key: "web-uk".into(),
                start_ms: 60_000,
                end_ms: 120_000,
                revision: 1,
                parent: None,
                agg,
            },
            WindowRecord {
                level: Level::Total,
                key: "total".into(),
                start_ms: 60_000,
                end_ms: 120_000,
                revision: 0,
                parent: None,
                agg: WindowAgg::default(),
            },
        ];
        let b = WindowBatch::from_records(&recs);
        assert_eq!(b.len(), 2);
        assert_eq!(b.records().collect::<Vec<_>>(), recs);
        let counts = b.counts_by_level();
        assert_eq!(counts[Level::Store as usize], (0, 1));
        assert_eq!(counts[Level::Total as usize], (1, 0));
        assert!(b.batch().column(13).is_null(1), "no sales: null avg_price");
        assert!(WindowBatch::try_from_batch(b.batch().clone()).is_ok());
    }
}
