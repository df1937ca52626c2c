//! Publishing generated or recorded events to Kafka, paced in simulated time
//! and rate-limited.

use std::io::BufRead;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tracing::info;

use crate::GenRecord;

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// Stop after this many records (`None`: until cancelled).
    pub limit: Option<u64>,
    /// Simulated milliseconds per wall millisecond (`None`: as fast as possible).
    pub speed: Option<f64>,
    /// At most this many records per wall second (`None`: unlimited).
    pub rate: Option<f64>,
    /// Extra librdkafka producer properties.
    pub client: Vec<(String, String)>,
}

impl PublishConfig {
    /// Publish to `topic` on `brokers` as fast as possible, with no limit.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        PublishConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            limit: None,
            speed: None,
            rate: None,
            client: Vec::new(),
        }
    }
}

/// What was published.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishStats {
    /// Records acknowledged by the broker.
    pub records: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

fn producer(cfg: &PublishConfig) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.max.bytes", "1000000");
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c.create()
}

/// Publish records from an iterator until it ends, the limit is reached or
/// `stop` returns true. `on_record` sees every record as it is sent.
pub fn publish(
    cfg: &PublishConfig,
    records: impl IntoIterator<Item = GenRecord>,
    stop: impl Fn() -> bool,
    mut on_record: impl FnMut(&GenRecord),
) -> Result<PublishStats, KafkaError> {
    let p = producer(cfg)?;
    let started = Instant::now();
    let mut sim_start: Option<i64> = None;
    let mut stats = PublishStats::default();
    for rec in records {
        if cfg.limit.is_some_and(|l| stats.records >= l) || (stats.records % 1024 == 0 && stop()) {
            break;
        }
        // Pace: simulated time advances `speed` times faster than the wall clock,
        // and at most `rate` records per second.
        let mut due = Duration::ZERO;
        if let Some(speed) = cfg.speed {
            let s0 = *sim_start.get_or_insert(rec.sim_ms);
            let sim = (rec.sim_ms - s0).max(0) as f64;
            due = due.max(Duration::from_secs_f64(sim / speed / 1000.0));
        }
        if let Some(rate) = cfg.rate {
            due = due.max(Duration::from_secs_f64(stats.records as f64 / rate));
        }
        let el = started.elapsed();
        if due > el {
            let wait = due - el;
            // Sleep in short steps so a stop request is seen promptly.
            let end = Instant::now() + wait;
            while Instant::now() < end {
                if stop() {
                    return finish(p, stats, started);
                }
                std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        on_record(&rec);
        let mut r = BaseRecord::<str, [u8]>::to(&cfg.topic).payload(&rec.payload);
        if !rec.key.is_empty() {
            r = r.key(&rec.key);
        }
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
        stats.records += 1;
        stats.bytes += rec.payload.len() as u64;
    }
    finish(p, stats, started)
}

fn finish(
    p: ThreadedProducer<DefaultProducerContext>,
    mut stats: PublishStats,
    started: Instant,
) -> Result<PublishStats, KafkaError> {
    p.flush(Duration::from_secs(60))?;
    stats.seconds = started.elapsed().as_secs_f64();
    info!(
        records = stats.records,
        seconds = stats.seconds,
        "published"
    );
    Ok(stats)
}

/// Publish a JSON-lines file: one event per line, keyed `<sku>|<store>` when
/// those fields are present (otherwise unkeyed). Blank lines are skipped;
/// lines that are not valid events are published as they are, so the
/// pipeline's dead-letter path sees them.
pub fn replay_file(
    cfg: &PublishConfig,
    path: &std::path::Path,
    stop: impl Fn() -> bool,
) -> Result<PublishStats, Box<dyn std::error::Error + Send + Sync>> {
    let f = std::fs::File::open(path)?;
    let reader = std::io::BufReader::new(f);
    let mut lines = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        lines.push(line);
    }
    let records = lines.into_iter().enumerate().map(|(i, line)| {
        let v: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let key = v
            .as_ref()
            .and_then(|v| Some(format!("{}|{}", v["sku"].as_str()?, v["store"].as_str()?)))
            .unwrap_or_default();
        let sim_ms = v
            .as_ref()
            .and_then(|v| v["ts"].as_i64())
            .unwrap_or(i as i64);
        GenRecord {
            sim_ms,
            key,
            payload: line.into_bytes(),
            expect: crate::Expect::Duplicate,
        }
    });
    Ok(publish(cfg, records, stop, |_| {})?)
}
