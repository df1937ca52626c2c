//! Decoding Kafka payloads straight into Arrow, with per-record validation.
//!
//! Messages are tokenized by arrow-json's tape decoder. A custom
//! [`ArrayDecoder`] (plugged in through arrow-json's `DecoderFactory`) reads
//! each row off the tape into typed Arrow builders and records a verdict per
//! row instead of failing the whole batch, so one bad record never costs the
//! batch: it becomes a [`DeadLetter`] with a precise reason.

use std::sync::{Arc, Mutex};

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StructArray,
};
use arrow_json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use salescast_stream_core::event::{col, event_schema};
use salescast_stream_core::{DeadLetter, RejectReason};

use crate::dedup::Dedup;
use crate::Error;

type Verdict = Option<(RejectReason, String)>;

/// The JSON-side fields, in event-schema order, all nullable: validation
/// decides, not the decoder.
fn json_fields() -> Fields {
    event_schema()
        .fields()
        .iter()
        .take(9)
        .map(|f| Arc::new(Field::new(f.name(), f.data_type().clone(), true)))
        .collect::<Vec<FieldRef>>()
        .into()
}

#[derive(Debug)]
struct Factory {
    verdicts: Arc<Mutex<Vec<Verdict>>>,
}

impl DecoderFactory for Factory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        // Only the root struct is ours; its children never get asked for.
        if matches!(field.data_type(), DataType::Struct(_)) {
            return Ok(Some(Box::new(EventDecoder {
                verdicts: self.verdicts.clone(),
                fields: json_fields(),
            })));
        }
        Ok(None)
    }
}

struct EventDecoder {
    verdicts: Arc<Mutex<Vec<Verdict>>>,
    fields: Fields,
}

#[derive(Default)]
enum Val<'t> {
    #[default]
    Absent,
    Str(&'t str),
    Int(i64),
    /// A number that is not an integer (or does not fit one).
    Float(f64),
    Bool(bool),
    Other(&'static str),
}

fn number(text: &str) -> Val<'_> {
    match text.parse::<i64>() {
        Ok(i) => Val::Int(i),
        Err(_) => match text.parse::<f64>() {
            Ok(f) => Val::Float(f),
            Err(_) => Val::Other("number"),
        },
    }
}

fn value<'t>(tape: &Tape<'t>, idx: u32) -> Val<'t> {
    match tape.get(idx) {
        TapeElement::String(s) => Val::Str(tape.get_string(s)),
        TapeElement::Number(s) => number(tape.get_string(s)),
        TapeElement::I32(v) => Val::Int(v as i64),
        TapeElement::I64(hi) => match tape.get(idx + 1) {
            TapeElement::I32(lo) => Val::Int(((hi as i64) << 32) | (lo as u32 as i64)),
            _ => Val::Other("number"),
        },
        TapeElement::F32(v) => Val::Float(f32::from_bits(v) as f64),
        TapeElement::F64(hi) => match tape.get(idx + 1) {
            TapeElement::F32(lo) => Val::Float(f64::from_bits(((hi as u64) << 32) | lo as u64)),
            _ => Val::Other("number"),
        },
        TapeElement::True => Val::Bool(true),
        TapeElement::False => Val::Bool(false),
        TapeElement::Null => Val::Absent,
        TapeElement::StartObject(_) => Val::Other("object"),
        TapeElement::StartList(_) => Val::Other("array"),
        _ => Val::Other("token"),
    }
}

fn kind(v: &Val<'_>) -> &'static str {
    match v {
        Val::Absent => "null",
        Val::Str(_) => "string",
        Val::Int(_) => "integer",
        Val::Float(_) => "number",
        Val::Bool(_) => "boolean",
        Val::Other(k) => k,
    }
}

fn bad_type(field: &str, want: &str, v: &Val<'_>) -> (RejectReason, String) {
    (
        RejectReason::BadType,
        format!("{field}: expected {want}, got {}", kind(v)),
    )
}

fn missing(field: &str) -> (RejectReason, String) {
    (RejectReason::MissingField, format!("{field} is missing"))
}

fn req_str<'t>(field: &str, v: &Val<'t>) -> Result<&'t str, (RejectReason, String)> {
    match v {
        Val::Absent => Err(missing(field)),
        Val::Str("") => Err((RejectReason::MissingField, format!("{field} is empty"))),
        Val::Str(s) => Ok(s),
        other => Err(bad_type(field, "string", other)),
    }
}

/// RFC 3339 with an explicit offset (`Z` or `+hh:mm`), or epoch milliseconds.
fn parse_ts(v: &Val<'_>) -> Result<i64, (RejectReason, String)> {
    match v {
        Val::Absent => Err(missing(col::TS)),
        Val::Int(ms) => Ok(*ms),
        Val::Str(s) => {
            let b = s.as_bytes();
            let has_offset = b.last().is_some_and(|c| *c == b'Z' || *c == b'z')
                || (b.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':');
            if !has_offset || b.len() < 20 || b.get(10).is_none_or(|c| *c != b'T' && *c != b't') {
                return Err((
                    RejectReason::BadType,
                    format!("ts: {s:?} is not RFC 3339 with an offset"),
                ));
            }
            arrow_cast::parse::string_to_timestamp_nanos(s)
                .map(|ns| ns.div_euclid(1_000_000))
                .map_err(|e| (RejectReason::BadType, format!("ts: {s:?}: {e}")))
        }
        other => Err(bad_type(
            col::TS,
            "RFC 3339 string or epoch milliseconds",
            other,
        )),
    }
}

struct Row<'t> {
    event_id: &'t str,
    ts: i64,
    sku: &'t str,
    store: &'t str,
    category: &'t str,
    qty: i64,
    price: f64,
    promo: bool,
    customer_id: Option<&'t str>,
}

fn validate<'t>(vals: &[Val<'t>; 9]) -> Result<Row<'t>, (RejectReason, String)> {
    let event_id = req_str(col::EVENT_ID, &vals[0])?;
    let ts = parse_ts(&vals[1])?;
    let sku = req_str(col::SKU, &vals[2])?;
    let store = req_str(col::STORE, &vals[3])?;
    let category = req_str(col::CATEGORY, &vals[4])?;
    for (f, s) in [
        (col::SKU, sku),
        (col::STORE, store),
        (col::CATEGORY, category),
    ] {
        if s.contains('|') {
            return Err((RejectReason::BadType, format!("{f}: must not contain '|'")));
        }
    }
    let qty = match &vals[5] {
        Val::Absent => return Err(missing(col::QTY)),
        Val::Int(q) => *q,
        other => return Err(bad_type(col::QTY, "integer", other)),
    };
    let price = match &vals[6] {
        Val::Absent => return Err(missing(col::UNIT_PRICE)),
        Val::Int(i) => *i as f64,
        Val::Float(f) => *f,
        other => return Err(bad_type(col::UNIT_PRICE, "number", other)),
    };
    let promo = match &vals[7] {
        Val::Absent => false,
        Val::Bool(b) => *b,
        other => return Err(bad_type(col::PROMO, "boolean", other)),
    };
    let customer_id = match &vals[8] {
        Val::Absent => None,
        Val::Str(s) => Some(*s),
        other => return Err(bad_type(col::CUSTOMER_ID, "string", other)),
    };
    if qty == 0 {
        return Err((RejectReason::ZeroQty, "qty is 0".into()));
    }
    if !price.is_finite() || price < 0.0 {
        return Err((
            RejectReason::NegativePrice,
            format!("unit_price {price} is negative or not finite"),
        ));
    }
    Ok(Row {
        event_id,
        ts,
        sku,
        store,
        category,
        qty,
        price,
        promo,
        customer_id,
    })
}

fn field_slot(name: &str) -> Option<usize> {
    Some(match name {
        col::EVENT_ID => 0,
        col::TS => 1,
        col::SKU => 2,
        col::STORE => 3,
        col::CATEGORY => 4,
        col::QTY => 5,
        col::UNIT_PRICE => 6,
        col::PROMO => 7,
        col::CUSTOMER_ID => 8,
        _ => return None,
    })
}

impl ArrayDecoder for EventDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let n = pos.len();
        let mut event_id = StringBuilder::with_capacity(n, n * 16);
        let mut ts = TimestampMillisecondBuilder::with_capacity(n);
        let mut sku = StringBuilder::with_capacity(n, n * 8);
        let mut store = StringBuilder::with_capacity(n, n * 8);
        let mut category = StringBuilder::with_capacity(n, n * 8);
        let mut qty = Int64Builder::with_capacity(n);
        let mut price = Float64Builder::with_capacity(n);
        let mut promo = BooleanBuilder::with_capacity(n);
        let mut customer = StringBuilder::with_capacity(n, n * 8);
        let mut verdicts = Vec::with_capacity(n);
        for &p in pos {
            let verdict = match tape.get(p) {
                TapeElement::StartObject(end) => {
                    let mut vals: [Val<'_>; 9] = Default::default();
                    let mut cur = p + 1;
                    while cur < end {
                        let key = match tape.get(cur) {
                            TapeElement::String(s) => tape.get_string(s),
                            _ => return Err(tape.error(cur, "field name")),
                        };
                        let vi = cur + 1;
                        if let Some(slot) = field_slot(key) {
                            vals[slot] = value(tape, vi);
                        }
                        cur = tape.next(vi, "field value")?;
                    }
                    match validate(&vals) {
                        Ok(r) => {
                            event_id.append_value(r.event_id);
                            ts.append_value(r.ts);
                            sku.append_value(r.sku);
                            store.append_value(r.store);
                            category.append_value(r.category);
                            qty.append_value(r.qty);
                            price.append_value(r.price);
                            promo.append_value(r.promo);
                            customer.append_option(r.customer_id);
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
                other => Some((
                    RejectReason::BadJson,
                    format!("top-level value is not an object ({other:?})"),
                )),
            };
            if verdict.is_some() {
                event_id.append_null();
                ts.append_null();
                sku.append_null();
                store.append_null();
                category.append_null();
                qty.append_null();
                price.append_null();
                promo.append_null();
                customer.append_null();
            }
            verdicts.push(verdict);
        }
        *self.verdicts.lock().expect("verdict lock") = verdicts;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(event_id.finish()),
            Arc::new(ts.finish().with_timezone("UTC")),
            Arc::new(sku.finish()),
            Arc::new(store.finish()),
            Arc::new(category.finish()),
            Arc::new(qty.finish()),
            Arc::new(price.finish()),
            Arc::new(promo.finish()),
            Arc::new(customer.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            self.fields.clone(),
            cols,
            None,
        )?))
    }
}

/// The result of decoding one micro-batch.
#[derive(Debug)]
pub struct Decoded {
    /// Accepted, de-duplicated events, schema [`event_schema`].
    pub events: RecordBatch,
    /// Original key and payload of each row of `events` (same order), kept so
    /// that a later stage's refusal (late, too far ahead) can dead-letter the
    /// original bytes.
    pub raw: RawRecords,
    /// Records refused while decoding.
    pub dead_letters: Vec<DeadLetter>,
    /// Valid records dropped as duplicates of an `event_id` already seen.
    pub duplicates: usize,
    /// Messages in the micro-batch (accepted + refused + duplicates).
    pub messages: usize,
    /// Bytes of payload in the micro-batch.
    pub bytes: usize,
}

impl Decoded {
    /// The dead letter for row `row` of `events`, refused by a later stage.
    pub fn refuse(&self, row: usize, reason: RejectReason, detail: String) -> DeadLetter {
        let col = |i: usize| self.events.column(i).as_any();
        let partition = col(salescast_stream_core::event::idx::PARTITION)
            .downcast_ref::<Int32Array>()
            .map_or(-1, |a| a.value(row));
        let offset = col(salescast_stream_core::event::idx::OFFSET)
            .downcast_ref::<Int64Array>()
            .map_or(-1, |a| a.value(row));
        self.raw.dead_letter(row, partition, offset, reason, detail)
    }
}

/// Original bytes of a batch's rows.
#[derive(Debug, Clone)]
pub struct RawRecords {
    /// Message keys (null where the message had none).
    pub keys: BinaryArray,
    /// Message payloads.
    pub payloads: BinaryArray,
}

impl RawRecords {
    /// Rebuild the dead letter of row `row`.
    pub fn dead_letter(
        &self,
        row: usize,
        partition: i32,
        offset: i64,
        reason: RejectReason,
        detail: String,
    ) -> DeadLetter {
        DeadLetter {
            partition,
            offset,
            key: self
                .keys
                .is_valid(row)
                .then(|| self.keys.value(row).to_vec()),
            payload: self.payloads.value(row).to_vec(),
            reason,
            detail,
        }
    }
}

/// Decodes micro-batches of Kafka messages into validated event batches.
pub struct BatchDecoder {
    json_schema: SchemaRef,
    verdicts: Arc<Mutex<Vec<Verdict>>>,
    decoder: arrow_json::reader::Decoder,
    max_payload_bytes: usize,
    capacity: usize,
    // Per micro-batch state. Rows are messages fed to the JSON decoder.
    keys: BinaryBuilder,
    payloads: BinaryBuilder,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    dead: Vec<DeadLetter>,
    messages: usize,
    bytes: usize,
}

impl std::fmt::Debug for BatchDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDecoder")
            .field("rows", &self.partitions.len())
            .finish()
    }
}

impl BatchDecoder {
    /// A decoder for micro-batches of up to `capacity` messages.
    pub fn new(capacity: usize, max_payload_bytes: usize) -> Result<Self, Error> {
        let json_schema = Arc::new(Schema::new(json_fields()));
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let decoder = Self::build(&json_schema, &verdicts, capacity)?;
        Ok(BatchDecoder {
            json_schema,
            verdicts,
            decoder,
            max_payload_bytes,
            capacity,
            keys: BinaryBuilder::new(),
            payloads: BinaryBuilder::new(),
            partitions: Vec::with_capacity(capacity),
            offsets: Vec::with_capacity(capacity),
            dead: Vec::new(),
            messages: 0,
            bytes: 0,
        })
    }

    fn build(
        schema: &SchemaRef,
        verdicts: &Arc<Mutex<Vec<Verdict>>>,
        capacity: usize,
    ) -> Result<arrow_json::reader::Decoder, Error> {
        arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(capacity + 1)
            .with_decoder_factory(Arc::new(Factory {
                verdicts: verdicts.clone(),
            }))
            .build_decoder()
            .map_err(|e| Error::Decode(e.to_string()))
    }

    /// Messages pushed since the last [`BatchDecoder::finish`].
    pub fn len(&self) -> usize {
        self.messages
    }

    /// Whether nothing was pushed since the last finish.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Add one message.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.messages += 1;
        let payload = payload.unwrap_or_default();
        self.bytes += payload.len();
        match self.feed(payload)? {
            None => {
                self.keys.append_option(key);
                self.payloads.append_value(payload);
                self.partitions.push(partition);
                self.offsets.push(offset);
            }
            Some((reason, detail)) => self.dead.push(DeadLetter {
                partition,
                offset,
                key: key.map(<[u8]>::to_vec),
                payload: payload.to_vec(),
                reason,
                detail,
            }),
        }
        Ok(())
    }

    /// Feed one payload to the JSON decoder; `Some` says why it was refused
    /// before reaching a row (the per-field verdicts come at `finish`).
    fn feed(&mut self, payload: &[u8]) -> Result<Verdict, Error> {
        if payload.len() > self.max_payload_bytes {
            let d = format!(
                "payload of {} bytes exceeds {}",
                payload.len(),
                self.max_payload_bytes
            );
            return Ok(Some((RejectReason::TooLarge, d)));
        }
        if let Err(e) = std::str::from_utf8(payload) {
            return Ok(Some((RejectReason::BadJson, format!("not UTF-8: {e}"))));
        }
        let before = self.decoder.len();
        let res = self.decoder.decode(payload);
        let detail = match res {
            Ok(n) if n == payload.len() && !self.decoder.has_partial_record() => {
                if self.decoder.len() == before + 1 {
                    return Ok(None);
                }
                "expected exactly one JSON value".to_string()
            }
            Ok(_) if self.decoder.has_partial_record() => "truncated JSON".to_string(),
            Ok(_) => "expected exactly one JSON value".to_string(),
            Err(e) => format!("invalid JSON: {e}"),
        };
        // The tape decoder cannot drop a partial row: start a fresh one and
        // feed it the rows of this micro-batch again.
        self.decoder = Self::build(&self.json_schema, &self.verdicts, self.capacity)?;
        let payloads = self.payloads.finish_cloned();
        for i in 0..payloads.len() {
            self.decoder
                .decode(payloads.value(i))
                .map_err(|e| Error::Decode(format!("re-feeding a valid row failed: {e}")))?;
        }
        Ok(Some((RejectReason::BadJson, detail)))
    }

    /// Finish the micro-batch: validate, de-duplicate and return it.
    pub fn finish(&mut self, dedup: &mut Dedup) -> Result<Decoded, Error> {
        let flushed = self
            .decoder
            .flush()
            .map_err(|e| Error::Decode(e.to_string()))?;
        let keys = self.keys.finish();
        let payloads = self.payloads.finish();
        let partitions = std::mem::take(&mut self.partitions);
        let offsets = std::mem::take(&mut self.offsets);
        let mut dead = std::mem::take(&mut self.dead);
        let messages = std::mem::replace(&mut self.messages, 0);
        let bytes = std::mem::replace(&mut self.bytes, 0);
        let mut duplicates = 0;
        let verdicts = std::mem::take(&mut *self.verdicts.lock().expect("verdict lock"));
        let Some(batch) = flushed else {
            return Ok(Decoded {
                events: RecordBatch::new_empty(event_schema()),
                raw: RawRecords { keys, payloads },
                dead_letters: dead,
                duplicates,
                messages,
                bytes,
            });
        };
        debug_assert_eq!(verdicts.len(), batch.num_rows());
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .expect("event_id is utf8");
        // Refused rows become dead letters; valid rows' ids are
        // de-duplicated as one batch (the table lookups are cache misses;
        // the batch overlaps them).
        let mut valid = Vec::with_capacity(batch.num_rows());
        for (row, verdict) in verdicts.into_iter().enumerate() {
            match verdict {
                Some((reason, detail)) => dead.push(DeadLetter {
                    partition: partitions[row],
                    offset: offsets[row],
                    key: keys.is_valid(row).then(|| keys.value(row).to_vec()),
                    payload: payloads.value(row).to_vec(),
                    reason,
                    detail,
                }),
                None => valid.push(row),
            }
        }
        let digests: Vec<u64> = valid
            .iter()
            .map(|&row| crate::dedup::digest(ids.value(row).as_bytes()))
            .collect();
        let mut fresh = Vec::with_capacity(digests.len());
        dedup.insert_digests(&digests, &mut fresh);
        let mut keep = vec![false; batch.num_rows()];
        for (&row, &new) in valid.iter().zip(&fresh) {
            duplicates += !new as usize;
            keep[row] = new;
        }
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols.push(Arc::new(Int32Array::from(partitions)));
        cols.push(Arc::new(Int64Array::from(offsets)));
        let (events, raw) = if keep.iter().all(|k| *k) {
            // The common case: every row is good, nothing to copy.
            let events = RecordBatch::try_new(event_schema(), cols)
                .map_err(|e| Error::Decode(e.to_string()))?;
            (events, RawRecords { keys, payloads })
        } else {
            let mask = BooleanArray::from(keep);
            let all = RecordBatch::try_new(
                Arc::new(Schema::new(
                    self.json_schema
                        .fields()
                        .iter()
                        .cloned()
                        .chain(event_schema().fields()[9..].iter().cloned())
                        .collect::<Vec<_>>(),
                )),
                cols,
            )
            .map_err(|e| Error::Decode(e.to_string()))?;
            let filtered = arrow_select::filter::filter_record_batch(&all, &mask)
                .map_err(|e| Error::Decode(e.to_string()))?;
            let events = RecordBatch::try_new(event_schema(), filtered.columns().to_vec())
                .map_err(|e| Error::Decode(e.to_string()))?;
            let raw = RawRecords {
                keys: downcast_binary(arrow_select::filter::filter(&keys, &mask))?,
                payloads: downcast_binary(arrow_select::filter::filter(&payloads, &mask))?,
            };
            (events, raw)
        };
        dead.sort_by_key(|d| (d.partition, d.offset));
        Ok(Decoded {
            events,
            raw,
            dead_letters: dead,
            duplicates,
            messages,
            bytes,
        })
    }
}

fn downcast_binary(a: Result<ArrayRef, ArrowError>) -> Result<BinaryArray, Error> {
    let a = a.map_err(|e| Error::Decode(e.to_string()))?;
    a.as_any()
        .downcast_ref::<BinaryArray>()
        .cloned()
        .ok_or_else(|| Error::Decode("raw column is not binary".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{StringArray, TimestampMillisecondArray};

    fn decode(msgs: &[&str]) -> Decoded {
        let mut d = BatchDecoder::new(64, 65_536).unwrap();
        for (i, m) in msgs.iter().enumerate() {
            d.push(0, i as i64, Some(b"k"), Some(m.as_bytes())).unwrap();
        }
        d.finish(&mut Dedup::new(1000)).unwrap()
    }

    const GOOD: &str = r#"{"event_id":"e1","ts":"2026-11-28T19:42:00.123Z","sku":"s1","store":"web-uk","category":"toys","qty":2,"unit_price":9.99,"promo":true,"extra":{"x":[1,2]}}"#;

    #[test]
    fn decodes_a_valid_event() {
        let d = decode(&[GOOD]);
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        assert_eq!(d.events.num_rows(), 1);
        let ts = d
            .events
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_795_894_920_123);
        let sku = d
            .events
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(sku.value(0), "s1");
        assert_eq!(d.raw.payloads.value(0), GOOD.as_bytes());
    }

    #[test]
    fn epoch_millis_and_offsets_are_accepted() {
        let a = r#"{"event_id":"a","ts":1795894920123,"sku":"s","store":"x","category":"c","qty":-1,"unit_price":0}"#;
        let b = r#"{"event_id":"b","ts":"2026-11-28T20:42:00.123+01:00","sku":"s","store":"x","category":"c","qty":1,"unit_price":3,"customer_id":"u1"}"#;
        let d = decode(&[a, b]);
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        let ts = d
            .events
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), ts.value(1));
    }

    #[test]
    fn every_kind_of_bad_record_gets_its_reason_and_good_ones_survive() {
        let cases: Vec<(String, RejectReason)> = vec![
            (
                r#"{"event_id":"x","ts":1,"sku""#.into(),
                RejectReason::BadJson,
            ),
            ("not json".into(), RejectReason::BadJson),
            ("[1,2]".into(), RejectReason::BadJson),
            ("42".into(), RejectReason::BadJson),
            (
                GOOD.replace(r#""sku":"s1","#, ""),
                RejectReason::MissingField,
            ),
            (
                GOOD.replace(r#""qty":2"#, r#""qty":"two""#),
                RejectReason::BadType,
            ),
            (
                GOOD.replace(r#""qty":2"#, r#""qty":2.5"#),
                RejectReason::BadType,
            ),
            (
                GOOD.replace(r#""promo":true"#, r#""promo":"yes""#),
                RejectReason::BadType,
            ),
            (
                GOOD.replace("2026-11-28T19:42:00.123Z", "2026-11-28T19:42:00"),
                RejectReason::BadType,
            ),
            (
                GOOD.replace(r#""qty":2"#, r#""qty":0"#),
                RejectReason::ZeroQty,
            ),
            (GOOD.replace("9.99", "-1"), RejectReason::NegativePrice),
            (
                GOOD.replace(r#""event_id":"e1""#, r#""event_id":null"#),
                RejectReason::MissingField,
            ),
        ];
        let mut msgs: Vec<String> = Vec::new();
        for (i, (m, _)) in cases.iter().enumerate() {
            msgs.push(m.clone());
            msgs.push(GOOD.replace("\"e1\"", &format!("\"ok{i}\"")));
        }
        let refs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let d = decode(&refs);
        assert_eq!(d.events.num_rows(), cases.len());
        assert_eq!(d.dead_letters.len(), cases.len());
        for (i, (m, reason)) in cases.iter().enumerate() {
            let dl = &d.dead_letters[i];
            assert_eq!(dl.offset, 2 * i as i64);
            assert_eq!(dl.reason, *reason, "case {i}: {m} -> {}", dl.detail);
            assert_eq!(dl.payload, m.as_bytes());
        }
    }

    #[test]
    fn too_large_and_duplicates() {
        let big = GOOD.replace("\"toys\"", &format!("\"{}\"", "x".repeat(70_000)));
        let d = decode(&[&big, GOOD, GOOD]);
        assert_eq!(d.dead_letters.len(), 1);
        assert_eq!(d.dead_letters[0].reason, RejectReason::TooLarge);
        assert_eq!(d.events.num_rows(), 1);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.messages, 3);
    }

    #[test]
    fn two_objects_in_one_message_is_bad_json() {
        let two = format!("{GOOD}{GOOD}");
        let d = decode(&[&two]);
        assert_eq!(d.dead_letters.len(), 1);
        assert_eq!(d.dead_letters[0].reason, RejectReason::BadJson);
        assert_eq!(d.events.num_rows(), 0);
    }
}
