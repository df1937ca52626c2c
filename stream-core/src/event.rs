//! The decoded sale-event batch: the Arrow schema every stage agrees on.
//!
//! `ingest` decodes Kafka messages into record batches of this schema; the
//! [`WindowEngine`](crate::WindowEngine) folds them into windows. The contract
//! on the wire (JSON) is documented in `docs/events.md`; this is its columnar
//! form after validation.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names of the event schema, in order.
pub mod col {
    /// Unique id of the sale line (string).
    pub const EVENT_ID: &str = "event_id";
    /// Event time, epoch milliseconds UTC.
    pub const TS: &str = "ts";
    /// Stock keeping unit.
    pub const SKU: &str = "sku";
    /// Store or sales channel.
    pub const STORE: &str = "store";
    /// Product category.
    pub const CATEGORY: &str = "category";
    /// Units; negative for a return or cancellation, never zero.
    pub const QTY: &str = "qty";
    /// Price of one unit, `>= 0`.
    pub const UNIT_PRICE: &str = "unit_price";
    /// Whether the line was sold on promotion.
    pub const PROMO: &str = "promo";
    /// Optional customer id.
    pub const CUSTOMER_ID: &str = "customer_id";
    /// Kafka partition the event came from.
    pub const PARTITION: &str = "partition";
    /// Kafka offset of the event's message.
    pub const OFFSET: &str = "offset";
}

/// Index of each column in [`event_schema`].
pub mod idx {
    /// `event_id`
    pub const EVENT_ID: usize = 0;
    /// `ts`
    pub const TS: usize = 1;
    /// `sku`
    pub const SKU: usize = 2;
    /// `store`
    pub const STORE: usize = 3;
    /// `category`
    pub const CATEGORY: usize = 4;
    /// `qty`
    pub const QTY: usize = 5;
    /// `unit_price`
    pub const UNIT_PRICE: usize = 6;
    /// `promo`
    pub const PROMO: usize = 7;
    /// `customer_id`
    pub const CUSTOMER_ID: usize = 8;
    /// `partition`
    pub const PARTITION: usize = 9;
    /// `offset`
    pub const OFFSET: usize = 10;
}

/// The schema of a validated event batch.
///
/// Every column but `customer_id` is non-null: validation happens before a
/// row enters a batch of this schema.
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(col::EVENT_ID, DataType::Utf8, false),
                Field::new(
                    col::TS,
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new(col::SKU, DataType::Utf8, false),
                Field::new(col::STORE, DataType::Utf8, false),
                Field::new(col::CATEGORY, DataType::Utf8, false),
                Field::new(col::QTY, DataType::Int64, false),
                Field::new(col::UNIT_PRICE, DataType::Float64, false),
                Field::new(col::PROMO, DataType::Boolean, false),
                Field::new(col::CUSTOMER_ID, DataType::Utf8, true),
                Field::new(col::PARTITION, DataType::Int32, false),
                Field::new(col::OFFSET, DataType::Int64, false),
            ]))
        })
        .clone()
}

/// Why an input record was refused. The `code` is the machine-readable value of
/// the dead-letter `reason` header (see `docs/events.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not a JSON object, or not valid JSON at all.
    BadJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type or an unparsable value.
    BadType,
    /// `qty` is zero.
    ZeroQty,
    /// `unit_price` is negative or not finite.
    NegativePrice,
    /// The payload exceeds the size limit (64 KiB by default).
    TooLarge,
    /// The event time is further ahead of the watermark than allowed.
    TooFarAhead,
    /// The event's window was already closed beyond the allowed lateness.
    Late,
}

impl RejectReason {
    /// All reasons, in declaration order (bounded label set for metrics).
    pub const ALL: [RejectReason; 8] = [
        RejectReason::BadJson,
        RejectReason::MissingField,
        RejectReason::BadType,
        RejectReason::ZeroQty,
        RejectReason::NegativePrice,
        RejectReason::TooLarge,
        RejectReason::TooFarAhead,
        RejectReason::Late,
    ];

    /// Machine-readable code used in the `reason` header and in metric labels.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::BadJson => "bad_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadType => "bad_type",
            RejectReason::ZeroQty => "zero_qty",
            RejectReason::NegativePrice => "negative_price",
            RejectReason::TooLarge => "too_large",
            RejectReason::TooFarAhead => "too_far_ahead",
            RejectReason::Late => "late",
        }
    }

    /// Parse a code produced by [`RejectReason::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A record that goes to the dead-letter topic: the original bytes, where they
/// came from and why they were refused.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Original message key, if any.
    pub key: Option<Vec<u8>>,
    /// Original message payload, byte for byte.
    pub payload: Vec<u8>,
    /// Why it was refused.
    pub reason: RejectReason,
    /// Human-readable detail (which field, what value).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in RejectReason::ALL {
            assert!(seen.insert(r.code()));
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
        }
        assert_eq!(RejectReason::from_code("nope"), None);
    }

    #[test]
    fn schema_indices_match_names() {
        let s = event_schema();
        assert_eq!(s.field(idx::EVENT_ID).name(), col::EVENT_ID);
        assert_eq!(s.field(idx::TS).name(), col::TS);
        assert_eq!(s.field(idx::QTY).name(), col::QTY);
        assert_eq!(s.field(idx::OFFSET).name(), col::OFFSET);
        assert_eq!(s.fields().len(), 11);
    }
}

/// One event in row form: for tests, replays and tools. The hot path never
/// builds these; it decodes straight into Arrow.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// `event_id`
    pub event_id: String,
    /// Event time, epoch ms.
    pub ts_ms: i64,
    /// `sku`
    pub sku: String,
    /// `store`
    pub store: String,
    /// `category`
    pub category: String,
    /// `qty`
    pub qty: i64,
    /// `unit_price`
    pub unit_price: f64,
    /// `promo`
    pub promo: bool,
    /// `customer_id`
    pub customer_id: Option<String>,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Build a batch of [`event_schema`] from rows.
pub fn batch_from_rows(rows: &[EventRow]) -> arrow_array::RecordBatch {
    use arrow_array::{
        ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMillisecondArray,
    };
    let s = |f: fn(&EventRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        s(|r| &r.event_id),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts_ms))
                .with_timezone("UTC"),
        ),
        s(|r| &r.sku),
        s(|r| &r.store),
        s(|r| &r.category),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.qty))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.unit_price),
        )),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.promo)))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.customer_id.as_deref()),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
    ];
    arrow_array::RecordBatch::try_new(event_schema(), cols).expect("rows match the schema")
}
