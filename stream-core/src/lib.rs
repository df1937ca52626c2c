//! # salescast-stream-core
//!
//! The pure, deterministic heart of salescast, and the home of the types that
//! flow between stages:
//!
//! - [`event_schema`]: the Arrow schema of a validated sale-event batch (what
//!   `ingest` produces), with [`RejectReason`] and [`DeadLetter`] for refused input;
//! - [`WindowEngine`]: folds event batches into tumbling event-time windows at
//!   four [`Level`]s (SKU x store, category x store, store, total), tracks
//!   per-partition watermarks, fires windows and late revisions, and tells
//!   which offsets are safe to commit;
//! - [`WindowBatch`]: closed windows as an Arrow record batch, the input of
//!   `inference`.
//!
//! Time comes only from event timestamps and watermarks, never from the wall
//! clock, so every behaviour here is reproducible and property-tested.
#![warn(missing_docs)]

pub mod engine;
pub mod event;
pub mod series;
pub mod window;

pub use engine::{Config, Output, WindowEngine};
pub use event::{batch_from_rows, event_schema, DeadLetter, EventRow, RejectReason};
pub use series::{series_key, Level, TOTAL_KEY};
pub use window::{WindowAgg, WindowBatch, WindowRecord};

/// Errors of the window engine. None of them is worth retrying: they mean a
/// programming or configuration mistake, not a passing condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input batch does not have the event schema. Not retryable.
    #[error("schema error: {0}")]
    Schema(String),
    /// The configuration is invalid. Not retryable: fix the configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}
