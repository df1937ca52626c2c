//! The `salescast` command: run the pipeline, the demo, the producers' tools
//! and the benchmark.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use salescast::config::{self, Config};
use salescast::{bench, demo, pipeline};
use salescast_metrics::Metrics;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "salescast",
    version,
    about = "Streaming, real-time sales forecasting and anomaly alerts over Kafka"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, global = true, env = "SALESCAST_CONFIG")]
    config: Option<PathBuf>,
    /// Override any setting: `--set section.key=value` (repeatable).
    #[arg(long = "set", global = true, value_parser = parse_kv)]
    set: Vec<(String, String)>,
    /// Kafka bootstrap servers (same as `--set ingest.brokers=...`).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// Gateway listen address (same as `--set gateway.listen=...`).
    #[arg(long, global = true)]
    listen: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the pipeline against a Kafka cluster.
    Run,
    /// Everything in one process: an embedded broker (unless --brokers),
    /// the generator, the pipeline and the live chart.
    Demo(demo::DemoArgs),
    /// Publish generated sale events.
    Produce(ProduceArgs),
    /// Publish events from a JSON-lines file.
    Replay(ReplayArgs),
    /// Measure throughput and latency against a broker (--brokers).
    Bench(bench::BenchArgs),
    /// Score the forecasting models on generated and Walmart sales.
    Eval(salescast::eval::EvalArgs),
    /// Score the alerting on generated scenarios with labeled anomalies.
    EvalAlerts(salescast::eval_alerts::EvalAlertsArgs),
    /// Run the alerting detector over the Numenta Anomaly Benchmark and
    /// print its NAB scores.
    EvalNab(salescast::eval_nab::NabArgs),
    /// Fold sale events into windows and write them to an Arrow IPC file
    /// (window history for `train`).
    ExportWindows(salescast::history::ExportArgs),
    /// Pre-train the neural model offline from exported window history.
    Train(salescast::history::TrainArgs),
    /// Print the effective configuration as TOML.
    PrintConfig,
}

#[derive(clap::Args, Debug)]
struct ProduceArgs {
    /// Stop after this many events (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Simulated time runs this many times faster than the wall clock
    /// (default: as fast as possible).
    #[arg(long)]
    speed: Option<f64>,
    /// At most this many events per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Write the injected anomalies as JSON lines here.
    #[arg(long)]
    labels: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// JSON-lines file of sale events.
    file: PathBuf,
    /// At most this many events per second.
    #[arg(long)]
    rate: Option<f64>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let text = match &cli.config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let mut over = cli.set.clone();
    if let Some(b) = &cli.brokers {
        over.push(("ingest.brokers".into(), format!("{b:?}")));
    }
    if let Some(l) = &cli.listen {
        over.push(("gateway.listen".into(), format!("{l:?}")));
    }
    config::load(text.as_deref(), std::env::vars(), &over)
}

/// Where `produce` and `replay` publish: the configured brokers and input topic.
fn publish_config(
    cfg: &Config,
    limit: Option<u64>,
    speed: Option<f64>,
    rate: Option<f64>,
) -> anyhow::Result<salescast_loadgen::PublishConfig> {
    anyhow::ensure!(
        !cfg.ingest.brokers.is_empty(),
        "set --brokers or ingest.brokers"
    );
    Ok(salescast_loadgen::PublishConfig {
        limit,
        speed,
        rate,
        ..salescast_loadgen::PublishConfig::new(&cfg.ingest.brokers, &cfg.ingest.topic)
    })
}

fn stop_on_ctrl_c() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping…");
            t.cancel();
        }
    });
    token
}

fn main() -> anyhow::Result<()> {
    // Candle's CPU matmuls use RAYON_NUM_THREADS threads (all cores when
    // unset); the model is sized for one core, and the other cores belong to
    // ingest. Set before any other thread exists.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(cli_main())
}

async fn cli_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = load_config(&cli)?;
    match &cli.cmd {
        Cmd::PrintConfig => print!("{}", toml::to_string(&cfg)?),
        Cmd::Run => {
            anyhow::ensure!(
                !cfg.ingest.brokers.is_empty(),
                "set --brokers or ingest.brokers"
            );
            salescast::topics::ensure_topics(
                &cfg.ingest.brokers,
                &[
                    (cfg.output.forecasts_topic.as_str(), 4),
                    (cfg.output.alerts_topic.as_str(), 1),
                    (cfg.output.dlq_topic.as_str(), 1),
                ],
            )
            .await?;
            let running = pipeline::start(cfg, Metrics::new()).await?;
            eprintln!(
                "salescast running; live chart at http://{}/",
                running.gateway_addr
            );
            let stop = stop_on_ctrl_c();
            let token = running.cancel_token();
            tokio::spawn(async move {
                stop.cancelled().await;
                token.cancel();
            });
            running.wait().await?;
        }
        Cmd::Demo(args) => demo::run(cfg, args, stop_on_ctrl_c()).await?,
        Cmd::Produce(a) => {
            let pc = publish_config(&cfg, a.count, a.speed, a.rate)?;
            let stop = stop_on_ctrl_c();
            let labels = a.labels.clone();
            let gen_cfg = cfg.generator.clone();
            let stats = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut generator = salescast_loadgen::Generator::new(gen_cfg);
                let stats = salescast_loadgen::publish(
                    &pc,
                    generator.by_ref(),
                    || stop.is_cancelled(),
                    |_| {},
                )?;
                if let Some(path) = labels {
                    let mut out = String::new();
                    for l in generator.labels() {
                        out.push_str(&serde_json::to_string(l)?);
                        out.push('\n');
                    }
                    std::fs::write(&path, out)?;
                }
                Ok(stats)
            })
            .await??;
            eprintln!(
                "published {} events ({} bytes) in {:.1}s",
                stats.records, stats.bytes, stats.seconds
            );
        }
        Cmd::Replay(a) => {
            let pc = publish_config(&cfg, None, None, a.rate)?;
            let stop = stop_on_ctrl_c();
            let file = a.file.clone();
            let stats = tokio::task::spawn_blocking(move || {
                salescast_loadgen::replay_file(&pc, &file, || stop.is_cancelled())
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await??;
            eprintln!("replayed {} events in {:.1}s", stats.records, stats.seconds);
        }
        Cmd::Bench(args) => bench::run(cfg, args).await?,
        Cmd::Eval(args) => {
            let cfg = cfg.clone();
            let args = args.clone();
            tokio::task::spawn_blocking(move || salescast::eval::run(&cfg, &args)).await??
        }
        Cmd::EvalAlerts(args) => {
            let cfg = cfg.clone();
            let args = args.clone();
            tokio::task::spawn_blocking(move || salescast::eval_alerts::run(&cfg, &args)).await??
        }
        Cmd::EvalNab(args) => {
            let cfg = cfg.clone();
            let args = args.clone();
            tokio::task::spawn_blocking(move || salescast::eval_nab::run(&cfg, &args)).await??
        }
        Cmd::ExportWindows(args) => salescast::history::export(&cfg, args)?,
        Cmd::Train(args) => salescast::history::train(&cfg, args)?,
    }
    Ok(())
}
