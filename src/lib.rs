//! # salescast
//!
//! The binary's library: configuration layering ([`config`]), the wiring of
//! the stages into a running pipeline ([`pipeline`]), Kafka topic setup
//! ([`topics`]), the one-command demo ([`demo`]) and the benchmark
//! ([`mod@bench`]). The stages themselves live in their own crates:
//! `salescast-ingest` -> `salescast-stream-core` -> `salescast-inference` ->
//! `salescast-alerting` -> `salescast-ws-gateway`.
#![warn(missing_docs)]

pub mod bench;
pub mod config;
pub mod demo;
pub mod eval;
pub mod eval_alerts;
pub mod eval_nab;
pub mod history;
pub mod pipeline;
pub mod topics;
pub mod webhook;

pub use config::Config;
