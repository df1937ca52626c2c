//! `salescast demo`: the whole system in one process. Without `--brokers` it
//! starts librdkafka's mock cluster in-process as the Kafka-protocol broker, so
//! nothing needs installing; outside producers can join through the printed
//! bootstrap address.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use salescast_loadgen::{Generator, PublishConfig};
use salescast_metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline;

/// Options of `salescast demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Simulated time runs this many times faster than the wall clock.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// At most this many generated events per second.
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Stop by itself after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
}

/// Run the demo until `stop` fires (or `--duration` passes).
pub async fn run(mut cfg: Config, args: &DemoArgs, stop: CancellationToken) -> anyhow::Result<()> {
    // The mock cluster lives on this task for the whole demo.
    let mock;
    let embedded = cfg.ingest.brokers.is_empty();
    let topics = [
        (cfg.ingest.topic.clone(), args.partitions),
        (cfg.output.forecasts_topic.clone(), args.partitions),
        (cfg.output.alerts_topic.clone(), 1),
        (cfg.output.dlq_topic.clone(), 1),
    ];
    if embedded {
        mock = Some(MockCluster::new(1)?);
        let m = mock.as_ref().expect("just set");
        for (t, p) in &topics {
            m.create_topic(t, *p, 1)?;
        }
        cfg.ingest.brokers = m.bootstrap_servers();
    } else {
        mock = None;
        let refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        crate::topics::ensure_topics(&cfg.ingest.brokers, &refs).await?;
    }
    if cfg.ingest.group_id == "salescast" {
        cfg.ingest.group_id = "salescast-demo".into();
    }
    // The demo runs on live (sped-up) time: never flush windows on a pause.
    cfg.ingest.flush_when_idle = false;
    cfg.ingest.session_timeout_ms = cfg.ingest.session_timeout_ms.min(6_000);

    let running = pipeline::start(cfg.clone(), Metrics::new()).await?;
    let addr = running.gateway_addr;
    println!("salescast demo is running");
    println!("  live chart:       http://{addr}/");
    println!("  a store:          http://{addr}/?level=store&key=web-uk");
    println!("  metrics:          http://{addr}/metrics");
    println!(
        "  kafka bootstrap:  {}{}",
        cfg.ingest.brokers,
        if embedded {
            "  (embedded broker: produce to topic 'sales' to join in)"
        } else {
            ""
        }
    );
    println!(
        "  simulated time runs {}x faster than the wall clock; Ctrl-C stops",
        args.speed
    );

    let pc = PublishConfig {
        speed: Some(args.speed),
        rate: Some(args.rate),
        ..PublishConfig::new(&cfg.ingest.brokers, &cfg.ingest.topic)
    };
    let mut gen_cfg = cfg.generator.clone();
    if gen_cfg.start_ms == 0 {
        // Start on a window boundary so the first window is a whole one.
        let w = cfg.windows.window_ms;
        gen_cfg.start_ms = crate::pipeline::now_ms().div_euclid(w) * w;
    }
    let producer_stop = stop.clone();
    let pipeline_token = running.cancel_token();
    let producer = tokio::task::spawn_blocking(move || {
        let r = salescast_loadgen::publish(
            &pc,
            Generator::new(gen_cfg),
            || producer_stop.is_cancelled() || pipeline_token.is_cancelled(),
            |_| {},
        );
        if let Err(e) = &r {
            tracing::error!(error = %e, "demo producer failed");
        }
        r
    });
    let token = running.cancel_token();
    let duration = args.duration;
    let stop2 = stop.clone();
    tokio::spawn(async move {
        match duration {
            Some(s) => {
                tokio::select! {
                    _ = stop2.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(s)) => stop2.cancel(),
                }
            }
            None => stop2.cancelled().await,
        }
        token.cancel();
    });
    let result = running.wait().await;
    stop.cancel();
    producer.await??;
    drop(mock);
    result
}
