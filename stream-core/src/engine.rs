//! The window engine: folds validated event batches into tumbling event-time
//! windows at every level, tracks per-partition watermarks, fires windows,
//! re-emits revisions for late events and reports which Kafka offsets are safe
//! to commit.
//!
//! Time model (the one Flink and Beam use):
//! - each partition's watermark is its maximum event time minus
//!   [`Config::out_of_orderness_ms`]; the engine's watermark is the minimum over
//!   active (not idle) partitions, and never goes backwards;
//! - a window `[s, s + w)` fires once the watermark reaches `s + w`;
//! - a fired window is kept for [`Config::allowed_lateness_ms`] more: a late event
//!   in that time updates it and the window is re-emitted with the next revision;
//! - an event whose window is older than that is refused as [`RejectReason::Late`];
//!   one more than [`Config::max_ahead_ms`] ahead of both the watermark and
//!   the furthest event time its partition has shown as
//!   [`RejectReason::TooFarAhead`];
//! - before the first watermark exists (every assigned partition must have
//!   been read, or be idle), lateness is judged against the partition's own
//!   watermark, and a partition's first event against the batch's median
//!   event time, so one bogus timestamp at start-up cannot drag the
//!   watermark anywhere.
//!
//! Nothing here reads the wall clock: the same input in the same batches gives
//! the same output.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::{idx, RejectReason};
use crate::series::{Level, TOTAL_KEY};
use crate::window::{to_micros, WindowAgg, WindowBatch, WindowRecord};
use crate::Error;

/// Configuration of the window engine (`[windows]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Width of the tumbling windows, in milliseconds (default 60000: one minute).
    pub window_ms: i64,
    /// How far out of order events may arrive before the watermark passes them,
    /// in milliseconds (default 5000).
    pub out_of_orderness_ms: i64,
    /// How long a fired window still accepts late events (each re-emits the
    /// window as a revision), in milliseconds (default 60000).
    pub allowed_lateness_ms: i64,
    /// Events further than this ahead of the watermark are refused, in
    /// milliseconds (default 3600000: one hour).
    pub max_ahead_ms: i64,
    /// A series with no event for this long (event time, ms) is forgotten,
    /// so state stays bounded as the catalogue churns (default 604800000:
    /// seven days; 0 keeps every series forever).
    pub series_ttl_ms: i64,
    /// A series that had events in at least this many of its last 8 windows
    /// gets an explicit zero window when a window closes without its events
    /// (a store that stops selling is seen, not silent); 0 turns it off.
    /// Zero windows exist only for windows in which some event arrived.
    pub zero_fill_min_active: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window_ms: 60_000,
            out_of_orderness_ms: 5_000,
            allowed_lateness_ms: 60_000,
            max_ahead_ms: 3_600_000,
            series_ttl_ms: 7 * 86_400_000,
            zero_fill_min_active: 6,
        }
    }
}

impl Config {
    /// Check the values make sense.
    pub fn validate(&self) -> Result<(), Error> {
        if self.window_ms <= 0 {
            return Err(Error::Config("windows.window-ms must be > 0".into()));
        }
        if self.series_ttl_ms < 0 {
            return Err(Error::Config("windows.series-ttl-ms must be >= 0".into()));
        }
        if self.out_of_orderness_ms < 0 || self.allowed_lateness_ms < 0 || self.max_ahead_ms <= 0 {
            return Err(Error::Config(
                "windows: out-of-orderness-ms and allowed-lateness-ms must be >= 0, max-ahead-ms > 0"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What one call into the engine produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Windows fired for the first time (revision 0) and revisions of fired
    /// windows, ordered by window start, level and key.
    pub windows: WindowBatch,
    /// Rows of the input batch that were refused, with the reason.
    pub rejects: Vec<(usize, RejectReason)>,
    /// Events folded into window state.
    pub accepted: usize,
    /// Events skipped because they are replays of windows already emitted
    /// before a restart (see [`WindowEngine::set_replay_floor`]).
    pub replayed: usize,
    /// Number of first emissions in `windows`.
    pub fired: usize,
    /// Number of revisions in `windows`.
    pub revisions: usize,
    /// The engine's watermark after the call (epoch ms), once there is one.
    pub watermark: Option<i64>,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Windows ending at or before this were emitted before a restart.
    replay_floor: Option<i64>,
    max_ts: Option<i64>,
    next_offset: Option<i64>,
    idle: bool,
}

#[derive(Debug, Default)]
struct Slot {
    fired: bool,
    /// Per series: the aggregate and the revision its next emission gets.
    aggs: FxHashMap<u32, (WindowAgg, u32)>,
    /// Series updated since the slot fired.
    dirty: Vec<u32>,
    /// Lowest offset per partition of events held in this (unfired) slot.
    min_offsets: Vec<(i32, i64)>,
}

#[derive(Debug)]
struct SeriesMeta {
    level: Level,
    key: Arc<str>,
    /// Key of the parent series (none for the total).
    parent: Option<Arc<str>>,
    /// Bit i set: the series had events in the i-th most recent fired window.
    activity: u8,
    /// Highest event time seen for the series.
    last_seen: i64,
    /// Evicted: the id is free for reuse.
    free: bool,
}

impl SeriesMeta {
    /// The emitted record of this series for one window.
    fn record(&self, start: i64, width: i64, revision: u32, agg: WindowAgg) -> WindowRecord {
        WindowRecord {
            level: self.level,
            key: self.key.clone(),
            start_ms: start,
            end_ms: start + width,
            revision,
            parent: self.parent.clone(),
            agg,
        }
    }
}

#[derive(Debug, Clone)]
struct SkuEntry {
    sku_store: u32,
    cat_store: u32,
    category: Box<str>,
}

/// Interns series keys to dense ids without allocating on the hot path.
#[derive(Debug, Default)]
struct Interner {
    meta: Vec<SeriesMeta>,
    free_ids: Vec<u32>,
    total: u32,
    stores: FxHashMap<Box<str>, u32>,
    sku_store: FxHashMap<Box<str>, FxHashMap<Box<str>, SkuEntry>>,
    cat_store: FxHashMap<Box<str>, FxHashMap<Box<str>, u32>>,
}

impl Interner {
    fn new() -> Self {
        let mut i = Interner::default();
        i.total = i.push(Level::Total, TOTAL_KEY.into(), None);
        i
    }

    fn push(&mut self, level: Level, key: String, parent: Option<u32>) -> u32 {
        let parent = parent.map(|p| self.meta[p as usize].key.clone());
        let meta = SeriesMeta {
            level,
            key: key.into(),
            parent,
            activity: 0,
            last_seen: i64::MIN,
            free: false,
        };
        match self.free_ids.pop() {
            Some(id) => {
                self.meta[id as usize] = meta;
                id
            }
            None => {
                self.meta.push(meta);
                (self.meta.len() - 1) as u32
            }
        }
    }

    fn live(&self) -> usize {
        self.meta.len() - self.free_ids.len()
    }

    /// Forget every series not seen since `before` (the total stays).
    fn evict(&mut self, before: i64) -> usize {
        let stale = |m: &SeriesMeta| !m.free && m.level != Level::Total && m.last_seen < before;
        if !self.meta.iter().any(stale) {
            return 0;
        }
        let meta = &self.meta;
        let gone = |id: u32| stale(&meta[id as usize]);
        self.stores.retain(|_, id| !gone(*id));
        for m in self.sku_store.values_mut() {
            m.retain(|_, e| !gone(e.sku_store) && !gone(e.cat_store));
        }
        self.sku_store.retain(|_, m| !m.is_empty());
        for m in self.cat_store.values_mut() {
            m.retain(|_, id| !gone(*id));
        }
        self.cat_store.retain(|_, m| !m.is_empty());
        let mut n = 0;
        for (id, m) in self.meta.iter_mut().enumerate() {
            if !m.free && m.level != Level::Total && m.last_seen < before {
                m.free = true;
                m.key = Arc::from("");
                m.parent = None;
                m.activity = 0;
                self.free_ids.push(id as u32);
                n += 1;
            }
        }
        n
    }

    fn cat_store_id(&mut self, category: &str, store: &str, store_id: u32) -> u32 {
        if let Some(id) = self.cat_store.get(store).and_then(|m| m.get(category)) {
            return *id;
        }
        let id = self.push(
            Level::CategoryStore,
            format!("{category}|{store}"),
            Some(store_id),
        );
        self.cat_store
            .entry(store.into())
            .or_default()
            .insert(category.into(), id);
        id
    }

    /// Series ids of the four levels for one event.
    #[inline]
    fn ids(&mut self, sku: &str, store: &str, category: &str) -> [u32; 4] {
        let store_id = match self.stores.get(store) {
            Some(id) => *id,
            None => {
                let id = self.push(Level::Store, store.to_string(), Some(self.total));
                self.stores.insert(store.into(), id);
                id
            }
        };
        if let Some(e) = self.sku_store.get(store).and_then(|m| m.get(sku)) {
            if &*e.category == category {
                return [e.sku_store, e.cat_store, store_id, self.total];
            }
        }
        // Slow path: a new SKU in this store, or its category changed.
        let cat_store = self.cat_store_id(category, store, store_id);
        let existing = self
            .sku_store
            .get(store)
            .and_then(|m| m.get(sku))
            .map(|e| e.sku_store);
        let sku_store = match existing {
            Some(id) => {
                // The SKU moved category: its parent follows.
                self.meta[id as usize].parent = Some(self.meta[cat_store as usize].key.clone());
                id
            }
            None => self.push(Level::SkuStore, format!("{sku}|{store}"), Some(cat_store)),
        };
        self.sku_store.entry(store.into()).or_default().insert(
            sku.into(),
            SkuEntry {
                sku_store,
                cat_store,
                category: category.into(),
            },
        );
        [sku_store, cat_store, store_id, self.total]
    }
}

/// Event-time window state for every series at every level.
#[derive(Debug)]
pub struct WindowEngine {
    cfg: Config,
    series: Interner,
    partitions: BTreeMap<i32, PartitionState>,
    watermark: Option<i64>,
    slots: BTreeMap<i64, Slot>,
    last_eviction: i64,
}

struct Cols<'a> {
    ts: &'a TimestampMillisecondArray,
    sku: &'a StringArray,
    store: &'a StringArray,
    category: &'a StringArray,
    qty: &'a Int64Array,
    price: &'a Float64Array,
    promo: &'a BooleanArray,
    partition: &'a Int32Array,
    offset: &'a Int64Array,
}

fn downcast<T: 'static>(b: &RecordBatch, i: usize) -> Result<&T, Error> {
    b.columns()
        .get(i)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::Schema(format!(
                "column {i} of the event batch has the wrong type (schema {:?})",
                b.schema()
            ))
        })
}

impl<'a> Cols<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self, Error> {
        Ok(Cols {
            ts: downcast(b, idx::TS)?,
            sku: downcast(b, idx::SKU)?,
            store: downcast(b, idx::STORE)?,
            category: downcast(b, idx::CATEGORY)?,
            qty: downcast(b, idx::QTY)?,
            price: downcast(b, idx::UNIT_PRICE)?,
            promo: downcast(b, idx::PROMO)?,
            partition: downcast(b, idx::PARTITION)?,
            offset: downcast(b, idx::OFFSET)?,
        })
    }
}

impl WindowEngine {
    /// A new engine with no state.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(WindowEngine {
            cfg,
            series: Interner::new(),
            partitions: BTreeMap::new(),
            watermark: None,
            slots: BTreeMap::new(),
            last_eviction: i64::MIN / 2,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current watermark (epoch ms), once any partition has seen data.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Highest event time seen on any partition.
    pub fn max_event_time(&self) -> Option<i64> {
        self.partitions.values().filter_map(|p| p.max_ts).max()
    }

    /// Number of distinct series known (all levels).
    pub fn series_count(&self) -> usize {
        self.series.live()
    }

    /// Windows still open (not fired yet).
    pub fn open_windows(&self) -> usize {
        self.slots.values().filter(|s| !s.fired).count()
    }

    /// Fold a batch of validated events (schema [`crate::event_schema`]).
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Output, Error> {
        let c = Cols::new(batch)?;
        let w = self.cfg.window_ms;
        // Before the first watermark, "too far ahead" is judged against the
        // batch's median event time, so one bogus timestamp at start-up cannot
        // drag the watermark into the future.
        let wm = self.watermark.or_else(|| {
            let mut ts: Vec<i64> = (0..batch.num_rows())
                .filter(|&r| c.ts.is_valid(r))
                .map(|r| c.ts.value(r))
                .collect();
            if ts.is_empty() {
                return None;
            }
            let mid = ts.len() / 2;
            Some(*ts.select_nth_unstable(mid).1)
        });
        let global_wm = self.watermark;
        let ooo = self.cfg.out_of_orderness_ms;
        let mut rejects = Vec::new();
        let mut accepted = 0usize;
        let mut replayed = 0usize;
        for row in 0..batch.num_rows() {
            if c.ts.is_null(row) || c.qty.is_null(row) || c.price.is_null(row) {
                return Err(Error::Schema(format!(
                    "null in a required column at row {row}"
                )));
            }
            let ts = c.ts.value(row);
            let start = ts.div_euclid(w) * w;
            let partition = c.partition.value(row);
            let offset = c.offset.value(row);
            let p = self.partitions.entry(partition).or_default();
            p.next_offset = Some(p.next_offset.map_or(offset + 1, |o| o.max(offset + 1)));
            if p.replay_floor.is_some_and(|f| start + w <= f) {
                replayed += 1;
                continue;
            }
            // Lateness is judged against the watermark; before there is one
            // (some assigned partition has not been read yet), against the
            // partition's own watermark, since a partition is nearly ordered.
            let late_ref = global_wm.or(p.max_ts.map(|m| m - ooo));
            if let Some(lwm) = late_ref {
                if start + w + self.cfg.allowed_lateness_ms <= lwm {
                    rejects.push((row, RejectReason::Late));
                    continue;
                }
            }
            // "Too far ahead" of the watermark, or of the furthest event time
            // this partition has shown (a backlog of a quiet partition can
            // span more than `max_ahead_ms` in one batch; each event is only a
            // little ahead of the one before it).
            let reference = match (wm, p.max_ts) {
                (Some(w), Some(m)) => Some(w.max(m)),
                (w, m) => w.or(m),
            };
            if let Some(r) = reference {
                if ts > r.saturating_add(self.cfg.max_ahead_ms) {
                    rejects.push((row, RejectReason::TooFarAhead));
                    continue;
                }
            }
            p.max_ts = Some(p.max_ts.map_or(ts, |m| m.max(ts)));
            p.idle = false;
            let ids = self
                .series
                .ids(c.sku.value(row), c.store.value(row), c.category.value(row));
            for id in ids {
                let m = &mut self.series.meta[id as usize];
                m.last_seen = m.last_seen.max(ts);
            }
            let qty = c.qty.value(row);
            let price = to_micros(c.price.value(row));
            let promo = c.promo.is_valid(row) && c.promo.value(row);
            let slot = self.slots.entry(start).or_default();
            for id in ids {
                let (agg, _) = slot.aggs.entry(id).or_default();
                agg.add(qty, price, promo);
                if slot.fired {
                    slot.dirty.push(id);
                }
            }
            if !slot.fired {
                match slot.min_offsets.iter_mut().find(|(p, _)| *p == partition) {
                    Some((_, o)) => *o = (*o).min(offset),
                    None => slot.min_offsets.push((partition, offset)),
                }
            }
            accepted += 1;
        }
        let mut out = self.advance(None);
        out.rejects = rejects;
        out.accepted = accepted;
        out.replayed = replayed;
        Ok(out)
    }

    /// Register partitions assigned to this instance: until each has sent data
    /// (or is marked idle) the watermark waits for it, so catching up on a
    /// backlog never outruns a partition that has not been read yet.
    pub fn assign(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.entry(*p).or_default();
        }
    }

    /// After a restart: the watermark recorded with the partition's committed
    /// offset. Replayed events of that partition whose window ended at or
    /// before it were already emitted (and acknowledged) before the restart;
    /// they are skipped and counted as `replayed`, so a window is never
    /// re-emitted from a partial replay.
    pub fn set_replay_floor(&mut self, partition: i32, watermark: i64) {
        self.partitions.entry(partition).or_default().replay_floor = Some(watermark);
    }

    /// Mark a partition idle (it stops holding the watermark back) or active.
    /// Call [`WindowEngine::tick`] afterwards to fire what that releases.
    pub fn set_idle(&mut self, partition: i32, idle: bool) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.idle = idle;
        }
    }

    /// Forget a partition (revoked in a rebalance): it no longer holds the
    /// watermark back, and none of its offsets are reported any more.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        for slot in self.slots.values_mut() {
            slot.min_offsets.retain(|(p, _)| *p != partition);
        }
    }

    /// Recompute the watermark (after idle changes) and fire what it releases.
    pub fn tick(&mut self) -> Output {
        self.advance(None)
    }

    /// Move the watermark forward to at least `ts` (e.g. when every partition
    /// has been idle: the input is drained), firing what that releases.
    pub fn advance_watermark(&mut self, ts: i64) -> Output {
        self.advance(Some(ts))
    }

    /// Offsets safe to commit, per partition: the next offset to read such
    /// that every event before it is in a fired window (or was refused).
    pub fn commit_positions(&self) -> Vec<(i32, i64)> {
        let mut pos: BTreeMap<i32, i64> = self
            .partitions
            .iter()
            .filter_map(|(p, s)| s.next_offset.map(|o| (*p, o)))
            .collect();
        for slot in self.slots.values().filter(|s| !s.fired) {
            for (p, o) in &slot.min_offsets {
                if let Some(cur) = pos.get_mut(p) {
                    *cur = (*cur).min(*o);
                }
            }
        }
        pos.into_iter().collect()
    }

    fn advance(&mut self, at_least: Option<i64>) -> Output {
        // The minimum over active partitions; an active partition with no data
        // yet holds the watermark where it is.
        let candidate = self
            .partitions
            .values()
            .filter(|p| !p.idle)
            .map(|p| p.max_ts)
            .try_fold(None::<i64>, |acc, m| {
                let m = m?;
                Some(Some(acc.map_or(m, |a| a.min(m))))
            })
            .flatten()
            .map(|m| m - self.cfg.out_of_orderness_ms);
        let next = [self.watermark, candidate, at_least]
            .into_iter()
            .flatten()
            .max();
        self.watermark = next;
        let mut records = Vec::new();
        let (mut fired, mut revisions) = (0, 0);
        if let Some(wm) = next {
            let w = self.cfg.window_ms;
            for (&start, slot) in self.slots.iter_mut() {
                if slot.fired {
                    // Revisions for late updates.
                    if slot.dirty.is_empty() {
                        continue;
                    }
                    slot.dirty.sort_unstable();
                    slot.dirty.dedup();
                    for id in slot.dirty.drain(..) {
                        let (agg, next_rev) =
                            slot.aggs.get_mut(&id).expect("dirty series has state");
                        let m = &self.series.meta[id as usize];
                        records.push(m.record(start, w, *next_rev, *agg));
                        // A series new to a fired window gets its first emission.
                        if *next_rev == 0 {
                            fired += 1;
                        } else {
                            revisions += 1;
                        }
                        *next_rev += 1;
                    }
                } else if start + w <= wm {
                    slot.fired = true;
                    slot.min_offsets.clear();
                    for (id, (agg, next_rev)) in slot.aggs.iter_mut() {
                        let m = &self.series.meta[*id as usize];
                        records.push(m.record(start, w, 0, *agg));
                        *next_rev = 1;
                        fired += 1;
                    }
                    // Zero windows for series that usually sell here.
                    let min_active = self.cfg.zero_fill_min_active;
                    for (id, m) in self.series.meta.iter_mut().enumerate() {
                        if m.free {
                            continue;
                        }
                        let id = id as u32;
                        let active = slot.aggs.contains_key(&id);
                        if !active && min_active > 0 && m.activity.count_ones() >= min_active {
                            records.push(m.record(start, w, 0, WindowAgg::default()));
                            slot.aggs.insert(id, (WindowAgg::default(), 1));
                            fired += 1;
                        }
                        m.activity = (m.activity << 1) | active as u8;
                    }
                } else {
                    break;
                }
            }
            // Forget series idle for longer than the TTL, checked about every
            // eighth of it (a TTL far beyond the lateness, so no held window
            // refers to them).
            let ttl = self.cfg.series_ttl_ms;
            if ttl > 0 && wm - self.last_eviction >= (ttl / 8).max(w) {
                self.last_eviction = wm;
                let horizon = ttl.max(2 * (w + self.cfg.allowed_lateness_ms));
                self.series.evict(wm.saturating_sub(horizon));
            }
            let keep_from = wm - self.cfg.allowed_lateness_ms - w;
            // Drop fired windows whose lateness has expired (start + w + lateness <= wm).
            while let Some((&start, slot)) = self.slots.first_key_value() {
                if start <= keep_from && slot.fired {
                    self.slots.pop_first();
                } else {
                    break;
                }
            }
        }
        records.sort_unstable_by(|a, b| {
            (a.start_ms, a.level, &a.key, a.revision)
                .cmp(&(b.start_ms, b.level, &b.key, b.revision))
        });
        Output {
            windows: WindowBatch::from_records(&records),
            rejects: Vec::new(),
            accepted: 0,
            replayed: 0,
            fired,
            revisions,
            watermark: next,
        }
    }
}
