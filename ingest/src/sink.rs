//! Publishing output records (forecasts, alerts, dead letters) to Kafka, with
//! a handle that resolves once the broker acknowledged all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use salescast_metrics::Metrics;
use serde::{Deserialize, Serialize};

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

/// A Kafka producer for the output topics.
pub struct KafkaSink {
    producer: FutureProducer,
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
pub struct Delivery {
    pending: Vec<(TopicRole, DeliveryFuture)>,
    metrics: Metrics,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Delivery {
    /// Resolve once the broker acknowledged every record; the first failure
    /// is returned (librdkafka has already retried it for `message.timeout.ms`).
    pub async fn wait(self) -> Result<(), Error> {
        let mut first_err = None;
        for (role, f) in self.pending {
            let res = match f.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("producer dropped".to_string()),
            };
            if let Err(reason) = res {
                self.metrics
                    .output_errors
                    .with_label_values(&[role.label()])
                    .inc();
                first_err.get_or_insert(Error::Delivery {
                    topic: role.label().to_string(),
                    reason,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Number of records awaited.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is awaited.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
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
        Ok(KafkaSink {
            producer: c.create()?,
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
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let topic = self.topic(r.role);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(r.payload.as_slice())
                .headers(headers);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        pending.push((r.role, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(Error::Kafka(e)),
                }
            }
            self.metrics
                .output_records
                .with_label_values(&[r.role.label()])
                .inc();
        }
        Ok(Delivery {
            pending,
            metrics: self.metrics.clone(),
        })
    }

    /// Wait for everything in flight (used at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.producer.flush(timeout).map_err(Error::Kafka)
    }
}
