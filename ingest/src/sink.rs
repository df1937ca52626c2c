//! Publishing output records (forecasts, alerts, dead letters) to Kafka, with
//! a handle that resolves once the broker acknowledged all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use salescast_metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::Error;

/// Configuration of the output topics (`[output]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Topic for window aggregates with their forecasts.
    pub forecasts_topic: String,
    /// Topic for alerts.
    pub alerts_topic: String,
    /// Dead-letter topic for refused input.
    pub dlq_topic: String,
    /// Extra librdkafka producer properties, applied last.
    pub client: BTreeMap<String, String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            forecasts_topic: "forecasts".into(),
            alerts_topic: "alerts".into(),
            dlq_topic: "sales.dlq".into(),
            client: BTreeMap::new(),
        }
    }
}

/// Which output topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicRole {
    /// Window aggregates and forecasts.
    Forecasts,
    /// Alerts.
    Alerts,
    /// Dead letters.
    DeadLetters,
}

impl TopicRole {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            TopicRole::Forecasts => "forecasts",
            TopicRole::Alerts => "alerts",
            TopicRole::DeadLetters => "dlq",
        }
    }
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    /// Destination.
    pub role: TopicRole,
    /// Message key (series key, alert id, or the original key).
    pub key: Option<Vec<u8>>,
    /// Message payload.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Acknowledgements outstanding for one enqueued group of records. The
/// producer's delivery callback counts down; the last one wakes the waiter.
/// One wake-up per group, not per record.
#[derive(Debug, Default)]
struct Ticket {
    remaining: AtomicUsize,
    failure: Mutex<Option<(TopicRole, String)>>,
    done: Notify,
}

/// Per-record delivery opaque: the group's ticket and the record's topic.
type Opaque = Box<(Arc<Ticket>, TopicRole)>;

struct SinkContext {
    metrics: Metrics,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Opaque;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Opaque) {
        let (ticket, role) = *opaque;
        if let Err((e, _)) = result {
            self.metrics
                .output_errors
                .with_label_values(&[role.label()])
                .inc();
            ticket
                .failure
                .lock()
                .expect("failure lock")
                .get_or_insert((role, e.to_string()));
        }
        if ticket.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            ticket.done.notify_one();
        }
    }
}

/// A Kafka producer for the output topics.
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext>,
    cfg: SinkConfig,
    metrics: Metrics,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("cfg", &self.cfg).finish()
    }
}

/// Pending acknowledgements of one enqueued group of records.
#[must_use = "await the delivery before committing the offsets it covers"]
#[derive(Debug)]
pub struct Delivery {
    ticket: Arc<Ticket>,
    len: usize,
}

impl Delivery {
    /// Resolve once the broker acknowledged every record; the first failure
    /// is returned (librdkafka has already retried it for `message.timeout.ms`).
    pub async fn wait(self) -> Result<(), Error> {
        loop {
            let notified = self.ticket.done.notified();
            if self.ticket.remaining.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        match self.ticket.failure.lock().expect("failure lock").take() {
            Some((role, reason)) => Err(Error::Delivery {
                topic: role.label().to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Number of records awaited.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is awaited.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl KafkaSink {
    /// Create the producer.
    pub fn new(brokers: &str, cfg: &SinkConfig, metrics: Metrics) -> Result<Self, Error> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "60000")
            .set("acks", "all");
        for (k, v) in &cfg.client {
            c.set(k, v);
        }
        let ctx = SinkContext {
            metrics: metrics.clone(),
        };
        Ok(KafkaSink {
            producer: c.create_with_context(ctx)?,
            cfg: cfg.clone(),
            metrics,
        })
    }

    fn topic(&self, role: TopicRole) -> &str {
        match role {
            TopicRole::Forecasts => &self.cfg.forecasts_topic,
            TopicRole::Alerts => &self.cfg.alerts_topic,
            TopicRole::DeadLetters => &self.cfg.dlq_topic,
        }
    }

    /// Enqueue records in order; waits only while the producer queue is full.
    pub async fn enqueue(&self, records: Vec<OutRecord>) -> Result<Delivery, Error> {
        let ticket = Arc::new(Ticket::default());
        // One count for the enqueueing itself, released at the end, so the
        // ticket cannot complete while records are still being added.
        ticket.remaining.store(1, Ordering::Release);
        let len = records.len();
        for r in records {
            let topic = self.topic(r.role);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            ticket.remaining.fetch_add(1, Ordering::AcqRel);
            let mut rec: BaseRecord<'_, [u8], [u8], Opaque> =
                BaseRecord::with_opaque_to(topic, Box::new((ticket.clone(), r.role)))
                    .payload(r.payload.as_slice())
                    .headers(headers);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        ticket.remaining.fetch_sub(1, Ordering::AcqRel);
                        return Err(Error::Kafka(e));
                    }
                }
            }
            self.metrics
                .output_records
                .with_label_values(&[r.role.label()])
                .inc();
        }
        if ticket.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            ticket.done.notify_one();
        }
        Ok(Delivery { ticket, len })
    }

    /// Wait for everything in flight (used at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.producer.flush(timeout).map_err(Error::Kafka)
    }
}
