//! `salescast bench`: fills a fresh topic with generated events, then reads
//! it twice in the same run, with the same client settings: (a) a plain
//! rdkafka consumer that does no processing, and (b) the whole pipeline. It
//! prints both rates, their ratio, the pipeline's events per CPU-second of
//! this process, and the latency from a window's close to its forecast
//! arriving on a WebSocket client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use salescast_loadgen::{GenConfig, Generator, PublishConfig};
use salescast_metrics::Metrics;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::config::Config;
use crate::pipeline::{self, now_ms};

/// Options of `salescast bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Partitions of the bench topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Generated sale lines per simulated second (sets how many events fall
    /// in one window of one series).
    #[arg(long, default_value_t = 2_000.0)]
    pub events_per_second: f64,
    /// Pipeline runs, each between two plain-consumer runs; the median
    /// round is reported.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run the ingest stage alone (consume, decode into Arrow,
    /// validate, de-duplicate, then drop) after each pipeline run: the
    /// ceiling the rest of the pipeline cannot exceed.
    #[arg(long)]
    pub ingest_only: bool,
    /// Process id of the broker, when it runs on this machine: its CPU is
    /// then reported per phase (the pipeline's output makes it work too).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// The ratio (b)/(a) to budget for: the report says how many CPU-seconds
    /// the pipeline could use and still reach it on this machine.
    #[arg(long, default_value_t = 0.70)]
    pub target_ratio: f64,
}

/// CPU used during one timed phase, in cores (CPU-seconds per second).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// This process.
    pub process_cores: f64,
    /// The whole machine (every process, the broker and the neighbours
    /// included), from `/proc/stat`.
    pub machine_cores: f64,
    /// The broker (with `--broker-pid`).
    pub broker_cores: Option<f64>,
}

/// A CPU reading at the start of a phase.
struct CpuProbe {
    at: Instant,
    process: f64,
    machine: (u64, u64),
    broker: Option<(u32, f64)>,
}

impl CpuProbe {
    fn start(broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            process: cpu_seconds(),
            machine: machine_ticks(),
            broker: broker_pid.and_then(|p| Some((p, process_cpu_seconds(p)?))),
        }
    }

    fn finish(&self) -> CpuUse {
        let seconds = self.at.elapsed().as_secs_f64();
        let (busy, total) = machine_ticks();
        let machine_cores = if total > self.machine.1 {
            (busy - self.machine.0) as f64 / (total - self.machine.1) as f64 * cores()
        } else {
            f64::NAN
        };
        let round = |x: f64| (x * 100.0).round() / 100.0;
        CpuUse {
            seconds: round(seconds),
            process_cores: round((cpu_seconds() - self.process) / seconds),
            machine_cores: round(machine_cores),
            broker_cores: self
                .broker
                .and_then(|(pid, c0)| Some(round((process_cpu_seconds(pid)? - c0) / seconds))),
        }
    }
}

/// Cores this process may run on.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, usize::from) as f64
}

/// Busy and total jiffies of the whole machine (`/proc/stat`'s first line).
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    let total: u64 = f.iter().take(8).sum();
    (total - idle, total)
}

/// User + system CPU seconds of another process (`/proc/PID/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU seconds from a `/proc/.../stat` line:
/// `pid (comm) state ... utime(14) stime(15)`, in USER_HZ ticks.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let r = stat.rfind(')')?;
    let fields: Vec<&str> = stat[r + 2..].split(' ').collect();
    let ticks: f64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|x| x.parse::<f64>().ok())
        .sum();
    Some(ticks / 100.0)
}

/// The figures `salescast bench` reports.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Events in the topic.
    pub events: u64,
    /// Partitions.
    pub partitions: i32,
    /// Producer rate while filling the topic, events/s.
    pub fill_eps: f64,
    /// Plain consumer (no processing), events/s: mean of a run before and a
    /// run after the pipeline.
    pub plain_consumer_eps: f64,
    /// The plain consumer run before the pipeline, events/s.
    pub plain_consumer_eps_before: f64,
    /// The plain consumer run after the pipeline, events/s.
    pub plain_consumer_eps_after: f64,
    /// Whole pipeline, events/s.
    pub pipeline_eps: f64,
    /// `pipeline_eps / plain_consumer_eps` of the median round.
    pub ratio: f64,
    /// The ingest stage alone (with `--ingest-only`), events/s, in the
    /// median round: consume, decode, validate, de-duplicate, drop.
    pub ingest_only_eps: Option<f64>,
    /// `ingest_only_eps / plain_consumer_eps` in the median round.
    pub ingest_only_ratio: Option<f64>,
    /// Events per CPU-second of this process while the ingest stage ran alone.
    pub ingest_only_events_per_cpu_second: Option<f64>,
    /// The ratio of every round, in order.
    pub ratios: Vec<f64>,
    /// Events per CPU-second of this process while the pipeline ran.
    pub pipeline_events_per_cpu_second: f64,
    /// CPU seconds this process used while the pipeline ran.
    pub pipeline_cpu_seconds: f64,
    /// Windows closed (all levels).
    pub windows_closed: u64,
    /// Forecasts published.
    pub forecasts: u64,
    /// Window close to forecast on a WebSocket client, median, ms.
    pub latency_p50_ms: f64,
    /// Window close to forecast on a WebSocket client, 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Latency samples.
    pub latency_samples: usize,
    /// CPU seconds per thread name during the pipeline phase (where the time goes).
    pub thread_cpu_seconds: std::collections::BTreeMap<String, f64>,
    /// Seconds each stage spent on batches during the run.
    pub stage_busy_seconds: std::collections::BTreeMap<String, f64>,
    /// CPU in use while the plain consumer of the median round ran.
    pub plain_consumer_cpu: CpuUse,
    /// CPU in use while the pipeline of the median round ran.
    pub pipeline_cpu: CpuUse,
    /// The ratio the pipeline phase's CPU work allows at best: its own
    /// CPU-seconds plus the broker's (without `--broker-pid`: every other
    /// process on the machine) spread over all cores with none idle.
    pub ratio_if_cpu_bound: f64,
    /// `--target-ratio`.
    pub target_ratio: f64,
    /// CPU-seconds this process could use for the events and still reach
    /// `target_ratio`, with every core busy and the other processes using
    /// what they used in the pipeline phase.
    pub pipeline_cpu_seconds_allowed: f64,
    /// `events / pipeline_cpu_seconds_allowed`: the events per CPU-second
    /// the target needs on this machine.
    pub events_per_cpu_second_needed: f64,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU seconds per thread name of this process (Linux `/proc`), summed over
/// threads that share a name.
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... utime(14) stime(15)
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[l + 1..r].to_string();
        *out.entry(comm).or_insert(0.0) += stat_cpu_seconds(&stat).unwrap_or(0.0);
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn unique_suffix() -> String {
    format!("{}-{}", now_ms(), std::process::id())
}

/// Read the topic with a plain consumer (no processing) in a fresh group;
/// events per second from the first message to the `n`th.
async fn plain_consumer(
    cfg: &Config,
    suffix: &str,
    tag: &str,
    n: u64,
    broker_pid: Option<u32>,
) -> anyhow::Result<(f64, CpuUse)> {
    let mut plain_cfg = cfg.ingest.clone();
    plain_cfg.group_id = format!("bench-plain-{tag}-{suffix}");
    tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, CpuUse)> {
        let c: BaseConsumer = salescast_ingest::consumer::consumer_config(&plain_cfg).create()?;
        c.subscribe(&[&plain_cfg.topic])?;
        let mut count = 0u64;
        let mut bytes = 0usize;
        let mut first: Option<CpuProbe> = None;
        let deadline = Instant::now() + Duration::from_secs(900);
        while count < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "plain consumer timed out at {count}"
            );
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    first.get_or_insert_with(|| CpuProbe::start(broker_pid));
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    count += 1;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
        let secs = first
            .as_ref()
            .map_or(f64::NAN, |f| f.at.elapsed().as_secs_f64());
        let cpu = first.map(|f| f.finish()).unwrap_or_default();
        eprintln!(
            "bench: plain consumer read {count} messages ({bytes} bytes) in {secs:.2}s, {cpu:?}"
        );
        Ok((count as f64 / secs, cpu))
    })
    .await?
}

/// One run of the whole pipeline over the filled topic.
struct Phase {
    eps: f64,
    cpu: f64,
    cpu_use: CpuUse,
    thread_cpu_seconds: std::collections::BTreeMap<String, f64>,
    stage_busy_seconds: std::collections::BTreeMap<String, f64>,
    latencies: Vec<f64>,
    windows_closed: u64,
    forecasts: u64,
}

async fn pipeline_phase(
    cfg: &Config,
    n: u64,
    round: usize,
    suffix: &str,
    broker_pid: Option<u32>,
) -> anyhow::Result<Phase> {
    let mut cfg = cfg.clone();
    cfg.ingest.group_id = format!("bench-pipeline-{round}-{suffix}");
    let metrics = Metrics::new();
    let running = pipeline::start(cfg.clone(), metrics.clone()).await?;
    let samples = Arc::new(Mutex::new(Vec::<f64>::new()));
    let ws_task = {
        let url = format!("ws://{}/ws", running.gateway_addr);
        let samples = samples.clone();
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            for level in ["total", "store", "category_store"] {
                let sub = serde_json::json!({"op": "subscribe", "channel": "windows", "level": level, "key": "*"});
                ws.send(WsMessage::text(sub.to_string())).await?;
            }
            while let Some(m) = ws.next().await {
                let WsMessage::Text(t) = m? else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str())?;
                if v["type"] == "window" {
                    if let Some(c) = v["closed_at_ms"].as_i64() {
                        samples.lock().expect("lock").push((now_ms() - c) as f64);
                    }
                }
            }
            anyhow::Ok(())
        })
    };
    let processed = crate::pipeline::events_processed;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while metrics.events_received.get() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "pipeline received nothing");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let probe = CpuProbe::start(broker_pid);
    let threads0 = thread_cpu();
    while processed(&metrics) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "pipeline timed out at {}",
            processed(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = probe.at.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - probe.process;
    let cpu_use = probe.finish();
    let threads1 = thread_cpu();
    let pipeline_eps = n as f64 / secs;
    eprintln!("bench: pipeline processed {n} events in {secs:.2}s using {cpu:.2} CPU-s");
    // Let the last windows close (the input is drained) and reach the client.
    tokio::time::sleep(Duration::from_millis(cfg.ingest.idle_timeout_ms + 2_000)).await;
    running.shutdown().await.context("pipeline")?;
    ws_task.abort();
    let mut thread_cpu_seconds = std::collections::BTreeMap::new();
    for (name, c1) in threads1 {
        let d = c1 - threads0.get(&name).copied().unwrap_or(0.0);
        if d > 0.0 {
            thread_cpu_seconds.insert(name, (d * 100.0).round() / 100.0);
        }
    }
    let stage_busy_seconds: std::collections::BTreeMap<String, f64> =
        ["windows", "inference", "alerting", "sink"]
            .iter()
            .map(|s| {
                let h = metrics.stage_batch_seconds.with_label_values(&[s]);
                (s.to_string(), (h.get_sample_sum() * 100.0).round() / 100.0)
            })
            .collect();
    let mut lat = samples.lock().expect("lock").clone();
    lat.sort_by(f64::total_cmp);
    let windows_closed: u64 = salescast_stream_core::Level::ALL
        .iter()
        .map(|l| {
            metrics
                .windows_closed
                .with_label_values(&[l.as_str()])
                .get()
        })
        .sum();
    let forecasts = metrics
        .output_records
        .with_label_values(&["forecasts"])
        .get();
    Ok(Phase {
        eps: pipeline_eps,
        cpu,
        cpu_use,
        thread_cpu_seconds,
        stage_busy_seconds,
        latencies: lat,
        windows_closed,
        forecasts,
    })
}

/// One run of the ingest stage alone over the filled topic: the same
/// consumer, decode threads, validation and de-duplication as the pipeline,
/// with every batch dropped once decoded. Events per second and per
/// CPU-second; nothing after ingest can make the pipeline faster than this.
async fn ingest_phase(
    cfg: &Config,
    n: u64,
    round: usize,
    suffix: &str,
) -> anyhow::Result<(f64, f64)> {
    let mut icfg = cfg.ingest.clone();
    icfg.group_id = format!("bench-ingest-{round}-{suffix}");
    let metrics = Metrics::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(cfg.pipeline.channel_capacity.max(1));
    let ingest = salescast_ingest::Ingest::start(&icfg, tx, cancel.clone(), metrics)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut seen = 0u64;
    let mut start: Option<(Instant, f64)> = None;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "ingest-only timed out at {seen}");
        let Ok(Some(ev)) = tokio::time::timeout(left, rx.recv()).await else {
            anyhow::bail!("ingest-only stopped at {seen}");
        };
        if let salescast_ingest::IngestEvent::Batch(b) = ev {
            // The clock starts at the first batch, as the pipeline's does at
            // its first received event.
            start.get_or_insert_with(|| (Instant::now(), cpu_seconds()));
            seen += b.decoded.messages as u64;
        }
    }
    let (t0, cpu0) = start.expect("at least one batch");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    cancel.cancel();
    drop(rx);
    let _ = ingest.join().await;
    eprintln!("bench: ingest alone processed {seen} events in {secs:.2}s using {cpu:.2} CPU-s");
    Ok((seen as f64 / secs, seen as f64 / cpu))
}

/// Run the benchmark and print its report.
pub async fn run(mut cfg: Config, args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!cfg.ingest.brokers.is_empty(), "bench needs --brokers");
    let suffix = unique_suffix();
    let topic = format!("bench-sales-{suffix}");
    cfg.ingest.topic = topic.clone();
    cfg.output.forecasts_topic = format!("bench-forecasts-{suffix}");
    cfg.output.alerts_topic = format!("bench-alerts-{suffix}");
    cfg.output.dlq_topic = format!("bench-dlq-{suffix}");
    cfg.ingest.session_timeout_ms = cfg.ingest.session_timeout_ms.min(6_000);
    cfg.gateway.listen = "127.0.0.1:0".into();
    crate::topics::ensure_topics(
        &cfg.ingest.brokers,
        &[
            (topic.as_str(), args.partitions),
            (cfg.output.forecasts_topic.as_str(), args.partitions),
            (cfg.output.alerts_topic.as_str(), 1),
            (cfg.output.dlq_topic.as_str(), 1),
        ],
    )
    .await?;

    // Fill.
    eprintln!("bench: filling {topic} with {} events…", args.events);
    let pc = PublishConfig {
        limit: Some(args.events),
        ..PublishConfig::new(&cfg.ingest.brokers, &topic)
    };
    let gen_cfg = GenConfig {
        events_per_second: args.events_per_second,
        start_ms: 1_795_000_000_000,
        ..cfg.generator.clone()
    };
    let fill = tokio::task::spawn_blocking(move || {
        salescast_loadgen::publish(&pc, Generator::new(gen_cfg), || false, |_| {})
    })
    .await??;
    let fill_eps = fill.records as f64 / fill.seconds;
    eprintln!("bench: filled at {fill_eps:.0} events/s");

    let n = args.events;
    // (a) and (b), alternating: a plain consumer (same client settings,
    // fresh group), then the pipeline, `rounds` times, then a last plain
    // run; each pipeline run is compared with the plain runs either side of
    // it, and the median round is reported (the machine is noisy).
    let rounds = args.rounds.max(1);
    let bp = args.broker_pid;
    let mut plains = vec![plain_consumer(&cfg, &suffix, "0", n, bp).await?];
    let mut phases = Vec::with_capacity(rounds);
    let mut ingest_only = Vec::with_capacity(rounds);
    for r in 0..rounds {
        phases.push(pipeline_phase(&cfg, n, r, &suffix, bp).await?);
        if args.ingest_only {
            ingest_only.push(ingest_phase(&cfg, n, r, &suffix).await?);
        }
        plains.push(plain_consumer(&cfg, &suffix, &(r + 1).to_string(), n, bp).await?);
    }
    let ratios: Vec<f64> = phases
        .iter()
        .enumerate()
        .map(|(r, p)| p.eps / ((plains[r].0 + plains[r + 1].0) / 2.0))
        .collect();
    let mut order: Vec<usize> = (0..rounds).collect();
    order.sort_by(|a, b| ratios[*a].total_cmp(&ratios[*b]));
    let mid = order[rounds / 2];
    let Phase {
        eps: pipeline_eps,
        cpu,
        cpu_use,
        thread_cpu_seconds,
        stage_busy_seconds,
        latencies: lat,
        windows_closed,
        forecasts,
    } = phases.swap_remove(mid);
    let (plain_before, plain_cpu) = plains[mid];
    let plain_after = plains[mid + 1].0;
    let plain_eps = (plain_before + plain_after) / 2.0;
    let ingest_mid = ingest_only.get(mid).copied();
    // The CPU budget: the other processes' CPU-seconds in the pipeline phase
    // (the broker took the pipeline's output too), and what is left for the
    // pipeline if it is to finish in the target's time on every core.
    let cores = cores();
    let others = cpu_use
        .broker_cores
        .unwrap_or(cpu_use.machine_cores - cpu_use.process_cores)
        * cpu_use.seconds;
    let ratio_if_cpu_bound = n as f64 / ((cpu + others) / cores) / plain_eps;
    let allowed = cores * n as f64 / (args.target_ratio * plain_eps) - others;
    let report = BenchReport {
        events: n,
        partitions: args.partitions,
        fill_eps,
        plain_consumer_eps: plain_eps,
        plain_consumer_eps_before: plain_before,
        plain_consumer_eps_after: plain_after,
        pipeline_eps,
        ratio: pipeline_eps / plain_eps,
        ratios,
        ingest_only_eps: ingest_mid.map(|(eps, _)| eps),
        ingest_only_ratio: ingest_mid.map(|(eps, _)| eps / plain_eps),
        ingest_only_events_per_cpu_second: ingest_mid.map(|(_, per_cpu)| per_cpu),
        pipeline_events_per_cpu_second: n as f64 / cpu,
        pipeline_cpu_seconds: cpu,
        windows_closed,
        forecasts,
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        latency_samples: lat.len(),
        thread_cpu_seconds,
        stage_busy_seconds,
        plain_consumer_cpu: plain_cpu,
        pipeline_cpu: cpu_use,
        ratio_if_cpu_bound,
        target_ratio: args.target_ratio,
        pipeline_cpu_seconds_allowed: allowed,
        events_per_cpu_second_needed: if allowed > 0.0 {
            n as f64 / allowed
        } else {
            f64::INFINITY
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("events                          {}", report.events);
        println!("partitions                      {}", report.partitions);
        println!(
            "fill (producer)                 {:>12.0} events/s",
            report.fill_eps
        );
        println!(
            "(a) plain consumer              {:>12.0} events/s",
            report.plain_consumer_eps
        );
        println!(
            "(b) pipeline                    {:>12.0} events/s",
            report.pipeline_eps
        );
        println!(
            "ratio (b)/(a)                   {:>12.3}  (rounds: {:.3?})",
            report.ratio, report.ratios
        );
        println!(
            "pipeline events per CPU-second  {:>12.0}",
            report.pipeline_events_per_cpu_second
        );
        if let (Some(eps), Some(ratio), Some(per_cpu)) = (
            report.ingest_only_eps,
            report.ingest_only_ratio,
            report.ingest_only_events_per_cpu_second,
        ) {
            println!(
                "(c) ingest alone                {eps:>12.0} events/s, ratio {ratio:.3}, {per_cpu:.0} events per CPU-second"
            );
        }
        println!(
            "windows closed / forecasts      {} / {}",
            report.windows_closed, report.forecasts
        );
        println!(
            "close -> WebSocket latency      p50 {:.1} ms, p99 {:.1} ms ({} samples)",
            report.latency_p50_ms, report.latency_p99_ms, report.latency_samples
        );
        println!(
            "CPU-s by thread (pipeline phase) {:?}",
            report.thread_cpu_seconds
        );
        println!(
            "busy seconds by stage            {:?}",
            report.stage_busy_seconds
        );
        let show = |c: &CpuUse| {
            let broker = c
                .broker_cores
                .map_or(String::new(), |b| format!(", broker {b:.2}"));
            format!(
                "machine {:.2}, salescast {:.2}{broker} over {:.2} s",
                c.machine_cores, c.process_cores, c.seconds
            )
        };
        println!(
            "cores busy, plain consumer      {}",
            show(&report.plain_consumer_cpu)
        );
        println!(
            "cores busy, pipeline            {}",
            show(&report.pipeline_cpu)
        );
        println!(
            "ratio if CPU-bound              {:>12.3}  (this CPU work on every core, none idle)",
            report.ratio_if_cpu_bound
        );
        println!(
            "CPU budget for ratio {:.2}       {:.2} CPU-s for the events, {:.0} events per CPU-second",
            report.target_ratio,
            report.pipeline_cpu_seconds_allowed,
            report.events_per_cpu_second_needed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_seconds() {
        // A thread name with a space and a parenthesis: fields are counted
        // from the last ')'.
        let stat = "4242 (rdk:broker (1)) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0 100";
        assert_eq!(stat_cpu_seconds(stat), Some(3.25));
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_and_the_machine_have_cpu_readings() {
        let (busy, total) = machine_ticks();
        assert!(total > 0 && busy <= total, "{busy} / {total}");
        let me = process_cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(me >= 0.0);
        let probe = CpuProbe::start(Some(std::process::id()));
        // 50 ms of work, so the phase is not empty.
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let used = probe.finish();
        assert!(used.seconds >= 0.05, "{used:?}");
        assert!(used.process_cores >= 0.0 && used.broker_cores.is_some_and(|b| b >= 0.0));
    }
}
