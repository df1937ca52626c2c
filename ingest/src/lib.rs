//! # salescast-ingest
//!
//! The Kafka edge of salescast.
//!
//! - [`Ingest`] runs a consumer-group consumer on its own thread, decodes
//!   micro-batches of sale events straight into Arrow ([`decode`]), dead-letters
//!   what breaks the contract, drops duplicates ([`dedup`]) and hands
//!   [`IngestEvent`]s downstream over a bounded channel (a full channel pauses
//!   consumption: backpressure). Auto-commit is off: offsets are committed
//!   through the [`Committer`] only once the events they cover have passed the
//!   last durable step.
//! - [`KafkaSink`] publishes output records (forecasts, alerts, dead letters)
//!   and resolves when the broker has acknowledged them.
#![warn(missing_docs)]

pub mod consumer;
pub mod decode;
pub mod dedup;
pub mod sink;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use consumer::{Committer, Ingest, IngestBatch, IngestEvent};
pub use decode::{BatchDecoder, Decoded, RawRecords};
pub use dedup::Dedup;
pub use sink::{KafkaSink, OutRecord, SinkConfig, TopicRole};

/// Configuration of the consumer (`[ingest]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Kafka bootstrap servers (`host:port,...`). Empty in the demo, which
    /// starts an embedded broker and fills this in.
    pub brokers: String,
    /// Consumer group id. Instances with the same id share the partitions.
    pub group_id: String,
    /// Input topic of sale events.
    pub topic: String,
    /// Most messages in one micro-batch.
    pub batch_max_messages: usize,
    /// Longest a micro-batch waits to fill, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// Threads decoding JSON (partitions are spread over them).
    pub decode_threads: usize,
    /// Payloads larger than this are dead-lettered as `too_large`.
    pub max_payload_bytes: usize,
    /// How many recent `event_id`s are remembered for de-duplication (0 turns it off).
    pub dedup_capacity: usize,
    /// A partition read to its end that gets no new message for this long
    /// (wall clock, ms) stops holding the watermark back.
    pub idle_timeout_ms: u64,
    /// When every assigned partition is idle, close all open windows (the
    /// input is drained). Late events after that are refused as `late`.
    pub flush_when_idle: bool,
    /// Consumer group session timeout, ms. A group's first assignment waits
    /// about half of it, so tests set it low.
    pub session_timeout_ms: u64,
    /// librdkafka statistics interval (consumer lag metric), ms; 0 disables.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka consumer properties, applied last.
    pub client: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: String::new(),
            group_id: "salescast".into(),
            topic: "sales".into(),
            batch_max_messages: 4096,
            batch_max_wait_ms: 50,
            decode_threads: 2,
            max_payload_bytes: 64 * 1024,
            dedup_capacity: 1_000_000,
            idle_timeout_ms: 2_000,
            flush_when_idle: true,
            session_timeout_ms: 10_000,
            statistics_interval_ms: 5_000,
            client: BTreeMap::new(),
        }
    }
}

/// Errors of the ingest stage. [`Error::is_retryable`] tells whether
/// restarting the stage can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka client failed (connection, group, commit). Retryable: the
    /// broker may come back; restarting resumes from the committed offsets.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// An output record was not acknowledged by the broker. Retryable:
    /// nothing past it was committed, so a restart replays it.
    #[error("delivery to {topic} failed: {reason}")]
    Delivery {
        /// Topic of the record.
        topic: String,
        /// Broker or client error.
        reason: String,
    },
    /// Decoding machinery failed (not a bad record: those are dead-lettered).
    /// Not retryable: a bug.
    #[error("decoder: {0}")]
    Decode(String),
    /// Invalid configuration. Not retryable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The downstream channel closed: the pipeline is shutting down. Not an
    /// error worth retrying.
    #[error("downstream closed")]
    Closed,
}

impl Error {
    /// Whether retrying (restarting the stage) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Kafka(_) | Error::Delivery { .. })
    }
}
