//! # salescast-loadgen
//!
//! A seeded generator of realistic e-commerce sale events, and the tools that
//! publish them to Kafka (`salescast produce`, `salescast replay`).
//!
//! The generator models about a thousand SKUs in twenty categories sold
//! through several stores and channels: Zipf-like popularity, daily and weekly
//! seasonality, promotions that lift demand at a discount, occasional price
//! changes, intermittent demand in the long tail, about 2% returns, slightly
//! out-of-order event times, and injected anomalies (spikes, drops to zero,
//! level shifts, trend breaks) that are reported as [`AnomalyLabel`]s. It can also mix in
//! malformed records and redelivered duplicates, each tagged with what the
//! pipeline should do with it ([`Expect`]), which is how the integration tests
//! check that nothing is lost. The same seed gives the same events, within one
//! [`STREAM_VERSION`].
#![warn(missing_docs)]

mod publish;
mod rng;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use publish::{publish, replay_file, PublishConfig, PublishStats};
pub use rng::Rng;

/// Version of the generated stream: it moves whenever the same seed and
/// configuration start giving different events, so whatever is cached from a
/// stream (`salescast eval-alerts --cache-dir`) can tell. 2: lines under a
/// multiplier (a promotion, an anomaly) are drawn by thinning, no longer
/// repeated with one timestamp.
pub const STREAM_VERSION: u32 = 2;

/// Configuration of the generator (`[generator]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct GenConfig {
    /// Seed: the same seed gives the same stream.
    pub seed: u64,
    /// Number of SKUs.
    pub skus: usize,
    /// Number of categories.
    pub categories: usize,
    /// Stores and channels, most popular first.
    pub stores: Vec<String>,
    /// Simulated start time, epoch ms (0 means "now").
    pub start_ms: i64,
    /// Mean sale lines per simulated second at an average hour.
    pub events_per_second: f64,
    /// Zipf exponent of SKU popularity.
    pub zipf_exponent: f64,
    /// Chance per SKU per simulated hour that a promotion starts.
    pub promo_rate: f64,
    /// Demand multiplier during a promotion.
    pub promo_lift: f64,
    /// Price discount during a promotion (fraction).
    pub promo_discount: f64,
    /// Chance per SKU per simulated day of a price change.
    pub price_change_rate: f64,
    /// Share of lines that are returns.
    pub return_rate: f64,
    /// Share of lines whose event time is up to 3 s behind (out of order).
    pub disorder_rate: f64,
    /// Simulated time between injected anomalies, ms (0 disables).
    pub anomaly_every_ms: i64,
    /// Window width used to size anomalies, ms.
    pub window_ms: i64,
    /// Share of records replaced by malformed ones (for testing the dead-letter path).
    pub malformed_rate: f64,
    /// Share of records sent twice (redelivery), to be de-duplicated.
    pub duplicate_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            skus: 1000,
            categories: 20,
            stores: [
                "web-uk",
                "web-de",
                "app-uk",
                "app-de",
                "web-fr",
                "store-london",
            ]
            .map(String::from)
            .to_vec(),
            start_ms: 0,
            events_per_second: 50.0,
            zipf_exponent: 1.05,
            promo_rate: 0.01,
            promo_lift: 2.5,
            promo_discount: 0.2,
            price_change_rate: 0.05,
            return_rate: 0.02,
            disorder_rate: 0.05,
            anomaly_every_ms: 3 * 3_600_000,
            window_ms: 60_000,
            malformed_rate: 0.0,
            duplicate_rate: 0.0,
        }
    }
}

/// What the pipeline should do with a generated record.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// A valid event: accepted once.
    Valid(ValidEvent),
    /// A redelivery of an earlier valid event: dropped as a duplicate.
    Duplicate,
    /// A malformed record: dead-lettered with this reason code.
    Malformed(&'static str),
}

/// The fields of a valid event, for checking totals.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// Event time, epoch ms.
    pub ts_ms: i64,
    /// SKU.
    pub sku: String,
    /// Store.
    pub store: String,
    /// Category.
    pub category: String,
    /// Units.
    pub qty: i64,
    /// Unit price.
    pub unit_price: f64,
    /// Promotion flag.
    pub promo: bool,
}

/// One generated Kafka record.
#[derive(Debug, Clone)]
pub struct GenRecord {
    /// Simulated time at which it is published, epoch ms.
    pub sim_ms: i64,
    /// Message key (`<sku>|<store>`).
    pub key: String,
    /// JSON payload.
    pub payload: Vec<u8>,
    /// What should happen to it.
    pub expect: Expect,
}

/// An injected anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLabel {
    /// `spike`, `drop_to_zero`, `level_shift` or `trend_break`.
    pub kind: String,
    /// Level of the affected series.
    pub level: String,
    /// Key of the affected series.
    pub key: String,
    /// Start, epoch ms (inclusive).
    pub start_ms: i64,
    /// End, epoch ms (exclusive).
    pub end_ms: i64,
    /// Demand multiplier applied.
    pub factor: f64,
}

impl AnomalyLabel {
    /// The multiplier the anomaly puts on its series' demand at `ms` (in
    /// its span), with windows of `window_ms`: its factor at once, but a
    /// `trend_break` moves from 1 to it linearly over
    /// [`TREND_RAMP_WINDOWS`] windows, then holds.
    pub fn multiplier_at(&self, ms: i64, window_ms: i64) -> f64 {
        if self.kind == "trend_break" {
            let ramp_ms = TREND_RAMP_WINDOWS * window_ms;
            let p = ((ms - self.start_ms) as f64 / ramp_ms as f64).min(1.0);
            1.0 + (self.factor - 1.0) * p
        } else {
            self.factor
        }
    }
}

#[derive(Debug, Clone)]
struct Sku {
    name: String,
    category: String,
    price: f64,
    promo_until: i64,
}

#[derive(Debug, Clone)]
struct Active {
    label: AnomalyLabel,
    store: Option<usize>,
    sku: Option<usize>,
    category: Option<String>,
}

/// Windows over which a `trend_break` reaches its factor: sales that start
/// climbing (or sliding) steadily, then settle at the new level.
pub const TREND_RAMP_WINDOWS: i64 = 36;

/// The seeded event generator: an endless iterator of [`GenRecord`]s in
/// simulated-time order.
#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    skus: Vec<Sku>,
    sku_cdf: Vec<f64>,
    store_cdf: Vec<f64>,
    now_ms: i64,
    pending: std::collections::VecDeque<GenRecord>,
    counter: u64,
    last_hour: i64,
    last_day: i64,
    next_anomaly: i64,
    /// The latest end of any SKU's promotion (promotions start only in
    /// the hourly housekeeping): a promotion is on while it is ahead.
    promo_until_max: i64,
    anomalies: Vec<Active>,
    labels: Vec<AnomalyLabel>,
    recent_valid: Vec<(String, Vec<u8>)>,
    malformed_kind: usize,
}

fn cdf(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut v: Vec<f64> = weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    for x in v.iter_mut() {
        *x /= acc;
    }
    v
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

/// Diurnal demand shape: quiet nights, a midday plateau and an evening peak.
pub fn daily_factor(hour: f64) -> f64 {
    let g = |mu: f64, sd: f64| (-(hour - mu).powi(2) / (2.0 * sd * sd)).exp();
    0.15 + 0.85 * g(13.0, 3.5) + 0.5 * g(20.5, 1.5)
}

/// Weekly demand shape, Monday first.
pub const WEEKLY: [f64; 7] = [0.9, 0.9, 0.95, 1.0, 1.1, 1.3, 1.2];

/// Demand at simulated time `ms` (epoch ms, UTC) relative to a plain
/// hour: [`daily_factor`] times the day's [`WEEKLY`] factor. Every SKU and
/// store's rate follows it (before promotions and anomalies).
pub fn demand_shape(ms: i64) -> f64 {
    let (hour, dow) = hour_and_weekday(ms);
    daily_factor(hour) * WEEKLY[dow]
}

/// The hour of the day (fractional) and the weekday (Monday 0) of `ms`.
fn hour_and_weekday(ms: i64) -> (f64, usize) {
    let hour = (ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
    // 1970-01-01 was a Thursday (index 3 with Monday = 0).
    let dow = (ms.div_euclid(86_400_000) + 3).rem_euclid(7) as usize;
    (hour, dow)
}

impl Generator {
    /// A generator with this configuration.
    pub fn new(mut cfg: GenConfig) -> Generator {
        if cfg.start_ms == 0 {
            cfg.start_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
        }
        let mut rng = Rng::new(cfg.seed);
        let cats = cfg.categories.max(1);
        let skus: Vec<Sku> = (0..cfg.skus.max(1))
            .map(|i| {
                let base = (3.0 + 0.8 * rng.normal()).exp();
                Sku {
                    name: format!("sku-{i:05}"),
                    category: format!("cat-{:02}", rng.below(cats as u64)),
                    price: (base.max(0.5) * 100.0).round() / 100.0,
                    promo_until: 0,
                }
            })
            .collect();
        let sku_cdf = cdf((0..skus.len()).map(|i| 1.0 / ((i + 1) as f64).powf(cfg.zipf_exponent)));
        let store_cdf = cdf((0..cfg.stores.len()).map(|i| 1.0 / (i as f64 + 1.5)));
        let start = cfg.start_ms;
        Generator {
            next_anomaly: start + cfg.anomaly_every_ms,
            cfg,
            rng,
            skus,
            sku_cdf,
            store_cdf,
            now_ms: start,
            pending: Default::default(),
            counter: 0,
            last_hour: i64::MIN,
            last_day: i64::MIN,
            promo_until_max: 0,
            anomalies: Vec::new(),
            labels: Vec::new(),
            recent_valid: Vec::new(),
            malformed_kind: 0,
        }
    }

    /// Anomalies injected so far.
    pub fn labels(&self) -> &[AnomalyLabel] {
        &self.labels
    }

    /// Expected demand rate (lines per second) at simulated time `ms`.
    pub fn rate_at(&self, ms: i64) -> f64 {
        let (hour, dow) = hour_and_weekday(ms);
        self.cfg.events_per_second * daily_factor(hour) * WEEKLY[dow] / 0.55
    }

    fn housekeeping(&mut self) {
        let hour = self.now_ms.div_euclid(3_600_000);
        if hour != self.last_hour {
            self.last_hour = hour;
            for s in self.skus.iter_mut() {
                if s.promo_until <= self.now_ms && self.rng.f64() < self.cfg.promo_rate {
                    s.promo_until = self.now_ms + (1 + self.rng.below(6) as i64) * 3_600_000;
                    self.promo_until_max = self.promo_until_max.max(s.promo_until);
                }
            }
        }
        let day = self.now_ms.div_euclid(86_400_000);
        if day != self.last_day {
            self.last_day = day;
            for s in self.skus.iter_mut() {
                if self.rng.f64() < self.cfg.price_change_rate {
                    let f = if self.rng.f64() < 0.5 { 0.9 } else { 1.1 };
                    s.price = ((s.price * f).max(0.5) * 100.0).round() / 100.0;
                }
            }
        }
        self.anomalies.retain(|a| a.label.end_ms > self.now_ms);
        if self.cfg.anomaly_every_ms > 0 && self.now_ms >= self.next_anomaly {
            self.next_anomaly += self.cfg.anomaly_every_ms;
            self.inject_anomaly();
        }
    }

    fn inject_anomaly(&mut self) {
        let w = self.cfg.window_ms;
        let start = (self.now_ms.div_euclid(w) + 1) * w;
        let store = pick(&self.store_cdf, self.rng.f64());
        let store_name = self.cfg.stores[store].clone();
        // Only popular SKUs carry visible SKU-level anomalies.
        let sku = self.rng.below(10.min(self.skus.len() as u64)) as usize;
        let (kind, level, key, len, factor, a_store, a_sku, a_cat) = match self.rng.below(6) {
            0 => {
                let s = &self.skus[sku];
                (
                    "spike",
                    "sku_store",
                    format!("{}|{store_name}", s.name),
                    3,
                    6.0,
                    Some(store),
                    Some(sku),
                    None,
                )
            }
            1 => (
                "spike",
                "store",
                store_name.clone(),
                3,
                3.0,
                Some(store),
                None,
                None,
            ),
            2 => (
                "drop_to_zero",
                "store",
                store_name.clone(),
                5,
                0.0,
                Some(store),
                None,
                None,
            ),
            3 => {
                let s = &self.skus[sku];
                (
                    "drop_to_zero",
                    "sku_store",
                    format!("{}|{store_name}", s.name),
                    10,
                    0.0,
                    Some(store),
                    Some(sku),
                    None,
                )
            }
            k => {
                // A step (level shift) or a climb or slide (trend break) of
                // a category in one store.
                let cat = self.skus[sku].category.clone();
                let (kind, down, up) = if k == 4 {
                    ("level_shift", 0.5, 1.8)
                } else {
                    ("trend_break", 0.4, 2.0)
                };
                let f = if self.rng.f64() < 0.5 { down } else { up };
                (
                    kind,
                    "category_store",
                    format!("{cat}|{store_name}"),
                    120,
                    f,
                    Some(store),
                    None,
                    Some(cat),
                )
            }
        };
        let label = AnomalyLabel {
            kind: kind.into(),
            level: level.into(),
            key,
            start_ms: start,
            end_ms: start + len * w,
            factor,
        };
        self.labels.push(label.clone());
        self.anomalies.push(Active {
            label,
            store: a_store,
            sku: a_sku,
            category: a_cat,
        });
    }

    /// An upper bound on [`Self::multiplier`] for any SKU and store between
    /// `from` and `to` (ms, exclusive): the promotion lift if a promotion is
    /// on, times every overlapping anomaly's factor above 1.
    fn multiplier_bound(&self, from: i64, to: i64) -> f64 {
        let promo = if self.promo_until_max > from {
            self.cfg.promo_lift.max(1.0)
        } else {
            1.0
        };
        self.anomalies
            .iter()
            .filter(|a| a.label.start_ms < to && a.label.end_ms > from)
            .fold(promo, |m, a| m * a.label.factor.max(1.0))
    }

    fn multiplier(&self, sku: usize, store: usize, ts: i64) -> f64 {
        let mut m = if self.skus[sku].promo_until > ts {
            self.cfg.promo_lift
        } else {
            1.0
        };
        for a in &self.anomalies {
            if ts < a.label.start_ms || ts >= a.label.end_ms {
                continue;
            }
            let hit = a.store.is_none_or(|s| s == store)
                && a.sku.is_none_or(|k| k == sku)
                && a.category
                    .as_ref()
                    .is_none_or(|c| *c == self.skus[sku].category);
            if hit {
                m *= a.label.multiplier_at(ts, self.cfg.window_ms);
            }
        }
        m
    }

    fn event_json(&mut self, sku: usize, store: usize, ts: i64) -> (String, Vec<u8>, ValidEvent) {
        self.counter += 1;
        let s = &self.skus[sku];
        let promo = s.promo_until > ts;
        let price = if promo {
            (s.price * (1.0 - self.cfg.promo_discount) * 100.0).round() / 100.0
        } else {
            s.price
        };
        let u = self.rng.f64();
        let qty: i64 = if self.rng.f64() < self.cfg.return_rate {
            -1
        } else if u < 0.8 {
            1
        } else if u < 0.95 {
            2
        } else {
            3
        };
        let store_name = &self.cfg.stores[store];
        let key = format!("{}|{}", s.name, store_name);
        let customer = if self.rng.f64() < 0.7 {
            format!(",\"customer_id\":\"c{}\"", self.rng.below(100_000))
        } else {
            String::new()
        };
        let payload = format!(
            "{{\"event_id\":\"{}-{}\",\"ts\":{},\"sku\":\"{}\",\"store\":\"{}\",\"category\":\"{}\",\"qty\":{},\"unit_price\":{},\"promo\":{}{}}}",
            self.cfg.seed, self.counter, ts, s.name, store_name, s.category, qty, price, promo, customer
        );
        let v = ValidEvent {
            ts_ms: ts,
            sku: s.name.clone(),
            store: store_name.clone(),
            category: s.category.clone(),
            qty,
            unit_price: price,
            promo,
        };
        (key, payload.into_bytes(), v)
    }

    fn malformed(&mut self, key: String, valid: &[u8], ts: i64) -> GenRecord {
        let text = String::from_utf8_lossy(valid).into_owned();
        // Late and far-future records only once a watermark surely exists.
        let kinds = if self.counter > 20_000 { 8 } else { 6 };
        let k = self.malformed_kind % kinds;
        self.malformed_kind += 1;
        let (payload, reason) = match k {
            0 => (text[..text.len() / 2].to_string(), "bad_json"),
            1 => (text.replacen("\"sku\":", "\"skew\":", 1), "missing_field"),
            2 => (
                text.replacen("\"qty\":", "\"qty\":\"lots\",\"was\":", 1),
                "bad_type",
            ),
            3 => (replace_field(&text, "qty", "0"), "zero_qty"),
            4 => (replace_field(&text, "unit_price", "-4.5"), "negative_price"),
            5 => (
                text.replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(70_000)), 1),
                "too_large",
            ),
            6 => (
                replace_field(&text, "ts", &(ts + 2 * 86_400_000).to_string()),
                "too_far_ahead",
            ),
            _ => (
                replace_field(&text, "ts", &(ts - 2 * 86_400_000).to_string()),
                "late",
            ),
        };
        GenRecord {
            sim_ms: self.now_ms,
            key,
            payload: payload.into_bytes(),
            expect: Expect::Malformed(reason),
        }
    }

    fn fill_second(&mut self) {
        self.housekeeping();
        // Thinning: candidates come at the base rate times the largest
        // multiplier in force this second, and each is kept with probability
        // its own multiplier over that bound, so every SKU and store's lines
        // are a Poisson process at its base rate times its multiplier (a
        // promotion brings more buyers, not the same line several times).
        let bound = self.multiplier_bound(self.now_ms, self.now_ms + 1000);
        let n = self.rng.poisson(self.rate_at(self.now_ms) * bound);
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let ts = self.now_ms + self.rng.below(1000) as i64;
            let sku = pick(&self.sku_cdf, self.rng.f64());
            let store = pick(&self.store_cdf, self.rng.f64());
            if self.rng.f64() * bound >= self.multiplier(sku, store, ts) {
                continue;
            }
            let mut ets = ts;
            if self.rng.f64() < self.cfg.disorder_rate {
                ets -= self.rng.below(3_000) as i64;
            }
            let (key, payload, v) = self.event_json(sku, store, ets);
            let rec = if self.rng.f64() < self.cfg.malformed_rate {
                self.malformed(key, &payload, ets)
            } else {
                if self.cfg.duplicate_rate > 0.0 {
                    self.recent_valid.push((key.clone(), payload.clone()));
                    if self.recent_valid.len() > 64 {
                        self.recent_valid.remove(0);
                    }
                }
                GenRecord {
                    sim_ms: ts,
                    key,
                    payload,
                    expect: Expect::Valid(v),
                }
            };
            out.push(rec);
            if self.cfg.duplicate_rate > 0.0 && self.rng.f64() < self.cfg.duplicate_rate {
                if let Some((k, p)) = self.recent_valid.first().cloned() {
                    self.recent_valid.remove(0);
                    out.push(GenRecord {
                        sim_ms: ts,
                        key: k,
                        payload: p,
                        expect: Expect::Duplicate,
                    });
                }
            }
        }
        out.sort_by_key(|r| r.sim_ms);
        self.pending.extend(out);
        self.now_ms += 1000;
    }
}

fn replace_field(json: &str, field: &str, value: &str) -> String {
    let pat = format!("\"{field}\":");
    let Some(i) = json.find(&pat) else {
        return json.to_string();
    };
    let start = i + pat.len();
    let end = json[start..]
        .find([',', '}'])
        .map_or(json.len(), |e| start + e);
    format!("{}{}{}", &json[..start], value, &json[end..])
}

impl Iterator for Generator {
    type Item = GenRecord;

    fn next(&mut self) -> Option<GenRecord> {
        while self.pending.is_empty() {
            self.fill_second();
        }
        self.pending.pop_front()
    }
}

/// Summary of what a generated stream should produce, for tests.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// Valid events.
    pub valid: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Malformed records by reason code.
    pub malformed: HashMap<&'static str, u64>,
}

impl Expected {
    /// Account for one record.
    pub fn add(&mut self, e: &Expect) {
        match e {
            Expect::Valid(_) => self.valid += 1,
            Expect::Duplicate => self.duplicates += 1,
            Expect::Malformed(r) => *self.malformed.entry(r).or_default() += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let cfg = GenConfig {
            start_ms: 1_700_000_000_000,
            ..GenConfig::default()
        };
        let a: Vec<Vec<u8>> = Generator::new(cfg.clone())
            .take(500)
            .map(|r| r.payload)
            .collect();
        let b: Vec<Vec<u8>> = Generator::new(cfg).take(500).map(|r| r.payload).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn stream_is_realistic() {
        let cfg = GenConfig {
            start_ms: 1_700_000_000_000,
            anomaly_every_ms: 600_000,
            ..GenConfig::default()
        };
        let mut g = Generator::new(cfg);
        let recs: Vec<GenRecord> = g.by_ref().take(50_000).collect();
        let valid: Vec<&ValidEvent> = recs
            .iter()
            .filter_map(|r| match &r.expect {
                Expect::Valid(v) => Some(v),
                _ => None,
            })
            .collect();
        let returns = valid.iter().filter(|v| v.qty < 0).count() as f64 / valid.len() as f64;
        assert!((0.01..0.03).contains(&returns), "returns {returns}");
        let mut per_sku: HashMap<&str, usize> = HashMap::new();
        for v in &valid {
            *per_sku.entry(&v.sku).or_default() += 1;
        }
        let top = per_sku.get("sku-00000").copied().unwrap_or(0);
        let tail = per_sku.get("sku-00900").copied().unwrap_or(0);
        assert!(top > 20 * tail.max(1), "Zipf head {top} vs tail {tail}");
        assert!(!g.labels().is_empty());
        // Every payload is valid JSON with the contract's fields.
        for r in recs.iter().take(100) {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert!(v["event_id"].is_string() && v["qty"].is_i64() && v["ts"].is_i64());
        }
    }

    /// The valid lines of the first `ms` simulated.
    fn valid_lines(cfg: GenConfig, ms: i64) -> Vec<ValidEvent> {
        let start = cfg.start_ms;
        Generator::new(cfg)
            .take_while(|r| r.sim_ms < start + ms)
            .filter_map(|r| match r.expect {
                Expect::Valid(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_promotion_brings_more_buyers_not_repeated_lines() {
        let cfg = |promo_rate| GenConfig {
            start_ms: 1_700_000_000_000,
            anomaly_every_ms: 0,
            promo_rate,
            promo_lift: 4.0,
            ..GenConfig::default()
        };
        let plain = valid_lines(cfg(0.0), 600_000);
        let promoted = valid_lines(cfg(1.0), 600_000);
        assert!(promoted.iter().all(|v| v.promo));
        let lift = promoted.len() as f64 / plain.len() as f64;
        assert!((3.6..4.4).contains(&lift), "lift {lift}");
        // A line sharing its SKU, store and millisecond with another is
        // rare at these rates: the lift is a Poisson process four times as
        // fast, not each line four times.
        let mut seen: HashMap<(&str, &str, i64), usize> = HashMap::new();
        for v in &promoted {
            *seen.entry((&v.sku, &v.store, v.ts_ms)).or_default() += 1;
        }
        let clumped: usize = seen.values().filter(|&&n| n > 1).sum();
        let share = clumped as f64 / promoted.len() as f64;
        assert!(
            share < 0.05,
            "{share} of promoted lines share their millisecond"
        );
    }

    #[test]
    fn malformed_records_carry_their_reason() {
        let cfg = GenConfig {
            start_ms: 1_700_000_000_000,
            malformed_rate: 0.5,
            ..GenConfig::default()
        };
        let recs: Vec<GenRecord> = Generator::new(cfg).take(60_000).collect();
        let mut e = Expected::default();
        for r in &recs {
            e.add(&r.expect);
        }
        assert_eq!(e.malformed.len(), 8, "{:?}", e.malformed);
        assert!(e.valid > 500);
    }

    #[test]
    fn daily_shape() {
        assert!(daily_factor(13.0) > 3.0 * daily_factor(3.0));
    }
}
