//! # salescast-metrics
//!
//! Every Prometheus metric salescast exports, defined in one place
//! (documented in `docs/metrics.md`). Conventions: `salescast_` prefix, base
//! units (seconds, bytes), `_total` for counters, and only bounded label sets
//! (reject reasons, levels, stages, topics, model names, alert kinds). Stages
//! update them once per batch, not per event.
#![warn(missing_docs)]

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

/// All salescast metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Kafka messages consumed from the input topic.
    pub events_received: IntCounter,
    /// Events accepted into window state.
    pub events_accepted: IntCounter,
    /// Valid events dropped because their `event_id` was already seen.
    pub events_duplicate: IntCounter,
    /// Events re-read after a restart whose windows were already emitted.
    pub events_replayed: IntCounter,
    /// Records sent to the dead-letter topic, by reason.
    pub events_dead_lettered: IntCounterVec,
    /// Payload bytes consumed.
    pub ingest_bytes: IntCounter,
    /// Windows fired for the first time, by level.
    pub windows_closed: IntCounterVec,
    /// Late revisions of fired windows, by level.
    pub window_revisions: IntCounterVec,
    /// Forecasts produced, by model.
    pub forecasts: IntCounterVec,
    /// Alert messages, by kind and status (`open`, `retracted`, `resolved`).
    pub alerts: IntCounterVec,
    /// Records written to output topics, by topic role (forecasts, alerts, dlq).
    pub output_records: IntCounterVec,
    /// Output records whose delivery failed, by topic role.
    pub output_errors: IntCounterVec,
    /// Offset commits issued.
    pub offset_commits: IntCounter,
    /// Consumer lag summed over assigned partitions, in messages (from librdkafka statistics).
    pub consumer_lag: IntGauge,
    /// The window engine's watermark, epoch seconds.
    pub watermark_seconds: IntGauge,
    /// Windows still open (not fired yet).
    pub open_windows: IntGauge,
    /// Distinct series known at all levels.
    pub series: IntGauge,
    /// From a batch's newest Kafka message timestamp to its outputs being published, seconds.
    pub end_to_end_latency: Histogram,
    /// From a window closing to its forecast being published, seconds.
    pub close_to_publish: Histogram,
    /// Time a stage spends on one batch, by stage.
    pub stage_batch_seconds: HistogramVec,
    /// Connected WebSocket clients.
    pub ws_clients: IntGauge,
    /// Messages sent to WebSocket clients.
    pub ws_messages_sent: IntCounter,
    /// Messages a lagging WebSocket client skipped (conflated away).
    pub ws_messages_skipped: IntCounter,
    /// WebSocket clients disconnected for lagging too far.
    pub ws_disconnects_lagging: IntCounter,
    /// Rolling share of actuals inside their one-step p10-p90 band, by level.
    pub forecast_coverage: GaugeVec,
    /// Rolling mean width (p90 - p10, units) of one-step bands, by level.
    pub forecast_interval_width: GaugeVec,
    /// Version of the learning model's parameters (accepted updates).
    pub model_version: IntGauge,
    /// Online training steps attempted.
    pub model_training_steps: IntCounter,
    /// Online updates rolled back by the guard (NaN or loss jump).
    pub model_updates_rejected: IntCounter,
    /// Running training pinball loss of the learning model (scaled units).
    pub model_training_loss: Gauge,
    /// Alerts delivered to webhooks.
    pub webhook_deliveries: IntCounter,
    /// Webhook delivery attempts that failed and were retried.
    pub webhook_retries: IntCounter,
    /// Webhook deliveries dead-lettered, by reason.
    pub webhook_dead_letters: IntCounterVec,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric definition");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric registered once");
                m
            }};
        }
        let counter = |n: &str, h: &str| IntCounter::new(n, h);
        let counter_vec = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l);
        let hist = |n: &str, h: &str| {
            Histogram::with_opts(HistogramOpts::new(n, h).buckets(latency_buckets()))
        };
        Metrics {
            events_received: reg!(counter(
                "salescast_events_received_total",
                "Kafka messages consumed from the input topic"
            )),
            events_accepted: reg!(counter(
                "salescast_events_accepted_total",
                "Events accepted into window state"
            )),
            events_duplicate: reg!(counter(
                "salescast_events_duplicate_total",
                "Valid events dropped as duplicates of an event_id already seen"
            )),
            events_replayed: reg!(counter(
                "salescast_events_replayed_total",
                "Events re-read after a restart whose windows were already emitted"
            )),
            events_dead_lettered: reg!(counter_vec(
                "salescast_events_dead_lettered_total",
                "Records sent to the dead-letter topic",
                &["reason"]
            )),
            ingest_bytes: reg!(counter(
                "salescast_ingest_bytes_total",
                "Payload bytes consumed"
            )),
            windows_closed: reg!(counter_vec(
                "salescast_windows_closed_total",
                "Windows fired for the first time",
                &["level"]
            )),
            window_revisions: reg!(counter_vec(
                "salescast_window_revisions_total",
                "Late revisions of fired windows",
                &["level"]
            )),
            forecasts: reg!(counter_vec(
                "salescast_forecasts_total",
                "Forecasts produced",
                &["model"]
            )),
            alerts: reg!(counter_vec(
                "salescast_alerts_total",
                "Alert messages, by kind and status (open: raised; retracted, resolved: follow-ups)",
                &["kind", "status"]
            )),
            output_records: reg!(counter_vec(
                "salescast_output_records_total",
                "Records written to output topics",
                &["topic"]
            )),
            output_errors: reg!(counter_vec(
                "salescast_output_errors_total",
                "Output records whose delivery failed",
                &["topic"]
            )),
            offset_commits: reg!(counter(
                "salescast_offset_commits_total",
                "Offset commits issued"
            )),
            consumer_lag: reg!(IntGauge::new(
                "salescast_consumer_lag_messages",
                "Consumer lag summed over assigned partitions"
            )),
            watermark_seconds: reg!(IntGauge::new(
                "salescast_watermark_seconds",
                "Window engine watermark, epoch seconds"
            )),
            open_windows: reg!(IntGauge::new(
                "salescast_open_windows",
                "Windows still open (not fired yet)"
            )),
            series: reg!(IntGauge::new(
                "salescast_series",
                "Distinct series known at all levels"
            )),
            end_to_end_latency: reg!(hist(
                "salescast_end_to_end_latency_seconds",
                "From a batch's newest Kafka message timestamp to its outputs being published"
            )),
            close_to_publish: reg!(hist(
                "salescast_window_close_to_publish_seconds",
                "From a window closing to its forecast being published"
            )),
            stage_batch_seconds: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "salescast_stage_batch_seconds",
                    "Time a stage spends on one batch"
                )
                .buckets(latency_buckets()),
                &["stage"]
            )),
            ws_clients: reg!(IntGauge::new(
                "salescast_ws_clients",
                "Connected WebSocket clients"
            )),
            ws_messages_sent: reg!(counter(
                "salescast_ws_messages_sent_total",
                "Messages sent to WebSocket clients"
            )),
            ws_messages_skipped: reg!(counter(
                "salescast_ws_messages_skipped_total",
                "Messages a lagging WebSocket client skipped"
            )),
            ws_disconnects_lagging: reg!(counter(
                "salescast_ws_disconnects_lagging_total",
                "WebSocket clients disconnected for lagging too far"
            )),
            forecast_coverage: reg!(GaugeVec::new(
                Opts::new(
                    "salescast_forecast_coverage_ratio",
                    "Rolling share of actuals inside their one-step p10-p90 band (target 0.8)"
                ),
                &["level"]
            )),
            forecast_interval_width: reg!(GaugeVec::new(
                Opts::new(
                    "salescast_forecast_interval_width_units",
                    "Rolling mean width of one-step p10-p90 bands, in units"
                ),
                &["level"]
            )),
            model_version: reg!(IntGauge::new(
                "salescast_model_version",
                "Version of the learning model's parameters (accepted online updates)"
            )),
            model_training_steps: reg!(counter(
                "salescast_model_training_steps_total",
                "Online training steps attempted"
            )),
            model_updates_rejected: reg!(counter(
                "salescast_model_updates_rejected_total",
                "Online updates rolled back by the guard (NaN or loss jump)"
            )),
            webhook_deliveries: reg!(counter(
                "salescast_webhook_deliveries_total",
                "Alerts delivered to webhooks"
            )),
            webhook_retries: reg!(counter(
                "salescast_webhook_retries_total",
                "Webhook delivery attempts that failed and were retried"
            )),
            webhook_dead_letters: reg!(counter_vec(
                "salescast_webhook_dead_letters_total",
                "Webhook deliveries dead-lettered (queue_full, rejected, retries_exhausted, shutdown)",
                &["reason"]
            )),
            model_training_loss: reg!(Gauge::new(
                "salescast_model_training_loss",
                "Running training pinball loss of the learning model, scaled units"
            )),
            registry,
        }
    }

    /// The registry holding every metric.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Render all metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_conventions() {
        let m = Metrics::new();
        m.events_dead_lettered.with_label_values(&["late"]).inc();
        m.windows_closed.with_label_values(&["store"]).inc();
        m.forecasts.with_label_values(&["seasonal_naive"]).inc();
        m.alerts.with_label_values(&["spike", "open"]).inc();
        m.output_records.with_label_values(&["forecasts"]).inc();
        m.output_errors.with_label_values(&["forecasts"]).inc();
        m.window_revisions.with_label_values(&["store"]).inc();
        m.stage_batch_seconds
            .with_label_values(&["windows"])
            .observe(0.1);
        let text = m.render();
        for fam in m.registry().gather() {
            let name = fam.name();
            assert!(name.starts_with("salescast_"), "{name}");
            let is_counter = fam.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(is_counter, name.ends_with("_total"), "{name}");
        }
        assert!(text.contains("salescast_events_dead_lettered_total{reason=\"late\"} 1"));
    }
}
