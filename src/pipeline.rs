//! Wiring: ingest -> windows -> inference -> alerting -> sink -> commit, plus
//! the gateway, as named tasks under one cancellation token, joined by bounded
//! channels. The stages hold the logic; this file only moves data between them.
//!
//! Offsets are committed only after everything derived from the events they
//! cover (forecasts of their closed windows, alerts, dead letters) has been
//! acknowledged by the broker: at-least-once input, idempotent output ids.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use salescast_alerting::{Alert, Alerting};

use crate::webhook::Webhooks;
use salescast_inference::{Forecast, Inference, TrainStats};
use salescast_ingest::{Committer, Ingest, IngestEvent, KafkaSink, OutRecord, TopicRole};
use salescast_metrics::Metrics;
use salescast_stream_core::{DeadLetter, Level, RejectReason, WindowBatch, WindowEngine};
use salescast_ws_gateway::{Gateway, Publisher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;

/// Records sent to the dead-letter topic, over all reasons.
pub fn dead_lettered(m: &Metrics) -> u64 {
    RejectReason::ALL
        .iter()
        .map(|r| m.events_dead_lettered.with_label_values(&[r.code()]).get())
        .sum()
}

/// Events the window engine has taken in: accepted, replayed, dropped as
/// duplicates or dead-lettered for any reason. Once the engine has caught
/// up, every message received.
pub fn events_processed(m: &Metrics) -> u64 {
    m.events_accepted.get() + m.events_replayed.get() + m.events_duplicate.get() + dead_lettered(m)
}

/// Wall clock in epoch ms (used only outside stream-core, for latency).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Offsets safe to commit once an envelope's outputs are acknowledged, with
/// the engine watermark recorded alongside (for resuming after a restart).
#[derive(Debug, Clone)]
struct CommitPoint {
    positions: Vec<(i32, i64)>,
    watermark: Option<i64>,
}

/// What flows from the window stage to the sink.
struct Envelope {
    windows: WindowBatch,
    forecasts: Vec<Forecast>,
    alerts: Vec<Alert>,
    dead_letters: Vec<DeadLetter>,
    commit: CommitPoint,
    closed_at_ms: i64,
    newest_message_ms: Option<i64>,
}

/// A running pipeline.
pub struct Running {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// Shared metrics.
    pub metrics: Metrics,
    cancel: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("gateway_addr", &self.gateway_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The root cancellation token: cancel it to stop every task.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Wait until every task has ended. The first task to fail cancels the
    /// rest; its error is returned.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, res) = match joined {
                Ok(x) => x,
                Err(e) => (
                    "<panicked task>",
                    Err(anyhow::anyhow!("task panicked: {e}")),
                ),
            };
            match res {
                Ok(()) => info!(task = name, "task finished"),
                Err(e) => {
                    error!(task = name, error = %format!("{e:#}"), "task failed; stopping the pipeline");
                    self.cancel.cancel();
                    first_err.get_or_insert(e.context(format!("task {name} failed")));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Cancel and wait.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.wait().await
    }
}

fn dead_letter_record(d: &DeadLetter, source_topic: &str) -> OutRecord {
    OutRecord {
        role: TopicRole::DeadLetters,
        key: d.key.clone(),
        payload: d.payload.clone(),
        headers: vec![
            ("reason", d.reason.code().as_bytes().to_vec()),
            ("detail", d.detail.as_bytes().to_vec()),
            ("source-topic", source_topic.as_bytes().to_vec()),
            ("source-partition", d.partition.to_string().into_bytes()),
            ("source-offset", d.offset.to_string().into_bytes()),
        ],
    }
}

/// Start every stage. Returns once the gateway is bound and the consumer has
/// subscribed.
pub async fn start(cfg: Config, metrics: Metrics) -> anyhow::Result<Running> {
    let cancel = CancellationToken::new();
    let cap = cfg.pipeline.channel_capacity.max(1);
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

    let gateway = Gateway::bind(&cfg.gateway, metrics.clone()).await?;
    let gateway_addr = gateway.local_addr();
    let publisher = gateway.publisher();
    {
        let c = cancel.child_token();
        tasks.spawn(async move { ("gateway", gateway.run(c).await.map_err(Into::into)) });
    }

    let sink = KafkaSink::new(&cfg.ingest.brokers, &cfg.output, metrics.clone())?;
    let (ingest_tx, ingest_rx) = mpsc::channel(cap);
    let ingest = Ingest::start(
        &cfg.ingest,
        ingest_tx,
        cancel.child_token(),
        metrics.clone(),
    )?;
    let committer = ingest.committer();
    tasks.spawn(async move {
        let r = match ingest.join().await {
            Ok(()) | Err(salescast_ingest::Error::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        };
        ("ingest", r)
    });

    let engine = WindowEngine::new(cfg.windows.clone())?;
    let inference = Inference::new(cfg.inference.clone(), cfg.windows.window_ms)?;
    let alerting = Alerting::new(cfg.alerting.clone())?;
    let webhooks = Webhooks::start(&cfg.webhooks, metrics.clone(), cancel.child_token())?;

    let (win_tx, win_rx) = mpsc::channel(cap);
    let (inf_tx, inf_rx) = mpsc::channel(cap);
    let (al_tx, al_rx) = mpsc::channel(cap);
    // Deliveries are awaited in order; many envelopes may be in flight.
    let (commit_tx, commit_rx) = mpsc::channel(cap * 32);

    let m = metrics.clone();
    tasks.spawn(async move { ("windows", windows_stage(engine, ingest_rx, win_tx, m).await) });
    let m = metrics.clone();
    tasks.spawn(async move {
        (
            "inference",
            inference_stage(inference, win_rx, inf_tx, m).await,
        )
    });
    let m = metrics.clone();
    tasks.spawn(async move { ("alerting", alerting_stage(alerting, inf_rx, al_tx, m).await) });
    let topic = cfg.ingest.topic.clone();
    let m = metrics.clone();
    tasks.spawn(async move {
        (
            "sink",
            sink_stage(sink, publisher, webhooks, topic, al_rx, commit_tx, m).await,
        )
    });
    let interval = Duration::from_millis(cfg.pipeline.commit_interval_ms);
    let m = metrics.clone();
    tasks.spawn(async move {
        (
            "commit",
            commit_stage(committer, commit_rx, interval, m).await,
        )
    });

    Ok(Running {
        gateway_addr,
        metrics,
        cancel,
        tasks,
    })
}

async fn windows_stage(
    mut engine: WindowEngine,
    mut rx: mpsc::Receiver<IngestEvent>,
    tx: mpsc::Sender<Envelope>,
    m: Metrics,
) -> anyhow::Result<()> {
    let timer = m.stage_batch_seconds.with_label_values(&["windows"]);
    while let Some(ev) = rx.recv().await {
        let t = Instant::now();
        let (out, dead, newest) = match ev {
            IngestEvent::Batch(b) => {
                let d = b.decoded;
                let out = engine.process(&d.events).context("window engine")?;
                let wm = out.watermark.unwrap_or_default();
                let refused: Vec<DeadLetter> = out
                    .rejects
                    .iter()
                    .map(|(row, reason)| {
                        d.refuse(
                            *row,
                            *reason,
                            format!("{reason}: the watermark is now {wm} ms"),
                        )
                    })
                    .collect();
                let mut dead = d.dead_letters;
                dead.extend(refused);
                m.events_accepted.inc_by(out.accepted as u64);
                m.events_replayed.inc_by(out.replayed as u64);
                (out, dead, b.newest_message_ms)
            }
            IngestEvent::Idle(ps) => {
                for p in ps {
                    engine.set_idle(p, true);
                }
                (engine.tick(), Vec::new(), None)
            }
            IngestEvent::Active(ps) => {
                for p in ps {
                    engine.set_idle(p, false);
                }
                continue;
            }
            IngestEvent::Drained => match engine.max_event_time() {
                Some(max) => {
                    let w = engine.config().window_ms;
                    (engine.advance_watermark(max + w), Vec::new(), None)
                }
                None => continue,
            },
            IngestEvent::Assigned(ps) => {
                let ids: Vec<i32> = ps.iter().map(|(p, _)| *p).collect();
                engine.assign(&ids);
                for (p, wm) in ps {
                    if let Some(wm) = wm {
                        info!(partition = p, watermark = wm, "resuming after a restart");
                        engine.set_replay_floor(p, wm);
                    }
                }
                continue;
            }
            IngestEvent::Revoked(ps) => {
                for p in ps {
                    engine.revoke(p);
                }
                (engine.tick(), Vec::new(), None)
            }
        };
        for d in &dead {
            m.events_dead_lettered
                .with_label_values(&[d.reason.code()])
                .inc();
        }
        if !dead.is_empty() {
            warn!(count = dead.len(), first_reason = %dead[0].reason, first_detail = %dead[0].detail, "records dead-lettered");
        }
        for (level, (first, revised)) in Level::ALL.iter().zip(out.windows.counts_by_level()) {
            m.windows_closed
                .with_label_values(&[level.as_str()])
                .inc_by(first);
            m.window_revisions
                .with_label_values(&[level.as_str()])
                .inc_by(revised);
        }
        if let Some(wm) = out.watermark {
            m.watermark_seconds.set(wm.div_euclid(1000));
        }
        m.open_windows.set(engine.open_windows() as i64);
        m.series.set(engine.series_count() as i64);
        timer.observe(t.elapsed().as_secs_f64());
        let env = Envelope {
            windows: out.windows,
            forecasts: Vec::new(),
            alerts: Vec::new(),
            dead_letters: dead,
            commit: CommitPoint {
                positions: engine.commit_positions(),
                watermark: engine.watermark(),
            },
            closed_at_ms: now_ms(),
            newest_message_ms: newest,
        };
        if tx.send(env).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Forecasting is CPU work (and, with a tensor model, long per batch): it runs
/// on a thread of its own, off the async runtime, fed whole batches.
async fn inference_stage(
    inference: Inference,
    rx: mpsc::Receiver<Envelope>,
    tx: mpsc::Sender<Envelope>,
    m: Metrics,
) -> anyhow::Result<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || {
            let _ = done_tx.send(inference_loop(inference, rx, tx, m));
        })?;
    done_rx
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("inference thread panicked")))
}

fn inference_loop(
    mut inference: Inference,
    mut rx: mpsc::Receiver<Envelope>,
    tx: mpsc::Sender<Envelope>,
    m: Metrics,
) -> anyhow::Result<()> {
    let timer = m.stage_batch_seconds.with_label_values(&["inference"]);
    let mut calibration = Calibration::default();
    let mut trained = TrainStats::default();
    while let Some(mut env) = rx.blocking_recv() {
        if !env.windows.is_empty() {
            let t = Instant::now();
            env.forecasts = inference.process(&env.windows);
            for f in &env.forecasts {
                m.forecasts.with_label_values(&[&f.model]).inc();
            }
            calibration.update(&env.forecasts, &m);
            if let Some(st) = inference.train_stats() {
                m.model_version.set(st.version as i64);
                m.model_training_steps
                    .inc_by(st.steps.saturating_sub(trained.steps));
                m.model_updates_rejected
                    .inc_by(st.rejected.saturating_sub(trained.rejected));
                m.model_training_loss.set(st.loss);
                trained = st;
            }
            timer.observe(t.elapsed().as_secs_f64());
        }
        if tx.blocking_send(env).is_err() {
            break;
        }
    }
    // Keep what the model learned for the next start.
    if let Err(e) = inference.checkpoint() {
        tracing::error!(error = %e, "could not save the model checkpoint");
    }
    Ok(())
}

/// Rolling (exponentially weighted, per level) one-step coverage and band
/// width, exported as gauges once per batch.
#[derive(Debug, Default)]
struct Calibration {
    /// Per level: (coverage, width, initialised).
    levels: [(f64, f64, bool); 4],
}

impl Calibration {
    /// Weight of the newest batch in the rolling figures.
    const RATE: f64 = 0.05;

    fn update(&mut self, forecasts: &[Forecast], m: &Metrics) {
        let mut batch = [(0u64, 0u64, 0f64); 4];
        for f in forecasts {
            if let Some(e) = &f.expected {
                let y = f.actual.units as f64;
                let b = &mut batch[f.level.code() as usize];
                b.0 += 1;
                b.1 += (y >= e.p10 && y <= e.p90) as u64;
                b.2 += e.p90 - e.p10;
            }
        }
        for (i, (n, hit, width)) in batch.into_iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (cov, w) = (hit as f64 / n as f64, width / n as f64);
            let l = &mut self.levels[i];
            if l.2 {
                l.0 += Self::RATE * (cov - l.0);
                l.1 += Self::RATE * (w - l.1);
            } else {
                *l = (cov, w, true);
            }
            let level = salescast_stream_core::Level::from_code(i as u8)
                .expect("four levels")
                .as_str();
            m.forecast_coverage.with_label_values(&[level]).set(l.0);
            m.forecast_interval_width
                .with_label_values(&[level])
                .set(l.1);
        }
    }
}

async fn alerting_stage(
    mut alerting: Alerting,
    mut rx: mpsc::Receiver<Envelope>,
    tx: mpsc::Sender<Envelope>,
    m: Metrics,
) -> anyhow::Result<()> {
    let timer = m.stage_batch_seconds.with_label_values(&["alerting"]);
    while let Some(mut env) = rx.recv().await {
        if !env.forecasts.is_empty() {
            let t = Instant::now();
            env.alerts = alerting.process(&env.forecasts);
            for a in &env.alerts {
                m.alerts
                    .with_label_values(&[a.kind.as_str(), a.status.as_str()])
                    .inc();
            }
            timer.observe(t.elapsed().as_secs_f64());
        }
        if tx.send(env).await.is_err() {
            break;
        }
    }
    Ok(())
}

struct Pending {
    delivery: salescast_ingest::sink::Delivery,
    commit: CommitPoint,
    closed_at_ms: i64,
    has_windows: bool,
    newest_message_ms: Option<i64>,
}

async fn sink_stage(
    sink: KafkaSink,
    publisher: Publisher,
    webhooks: Webhooks,
    source_topic: String,
    mut rx: mpsc::Receiver<Envelope>,
    tx: mpsc::Sender<Pending>,
    m: Metrics,
) -> anyhow::Result<()> {
    let timer = m.stage_batch_seconds.with_label_values(&["sink"]);
    while let Some(env) = rx.recv().await {
        let t = Instant::now();
        let mut records =
            Vec::with_capacity(env.forecasts.len() + env.alerts.len() + env.dead_letters.len());
        for d in &env.dead_letters {
            records.push(dead_letter_record(d, &source_topic));
        }
        for f in &env.forecasts {
            let json = serde_json::to_string(f)?;
            publisher.window(f, &json, env.closed_at_ms);
            records.push(OutRecord {
                role: TopicRole::Forecasts,
                key: Some(format!("{}:{}", f.level, f.key).into_bytes()),
                payload: json.into_bytes(),
                headers: Vec::new(),
            });
        }
        for a in &env.alerts {
            let json = serde_json::to_string(a)?;
            publisher.alert(a, &json);
            webhooks.offer(a, &json);
            records.push(OutRecord {
                role: TopicRole::Alerts,
                key: Some(format!("{}:{}", a.level, a.key).into_bytes()),
                payload: json.into_bytes(),
                headers: Vec::new(),
            });
        }
        let delivery = sink.enqueue(records).await?;
        timer.observe(t.elapsed().as_secs_f64());
        let p = Pending {
            delivery,
            commit: env.commit,
            closed_at_ms: env.closed_at_ms,
            has_windows: !env.windows.is_empty(),
            newest_message_ms: env.newest_message_ms,
        };
        if tx.send(p).await.is_err() {
            break;
        }
    }
    sink.flush(Duration::from_secs(30))?;
    Ok(())
}

async fn commit_stage(
    committer: Committer,
    mut rx: mpsc::Receiver<Pending>,
    interval: Duration,
    m: Metrics,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    let mut latest: Option<CommitPoint> = None;
    while let Some(p) = rx.recv().await {
        p.delivery.wait().await?;
        let now = now_ms();
        if p.has_windows {
            m.close_to_publish
                .observe((now - p.closed_at_ms).max(0) as f64 / 1000.0);
        }
        if let Some(ts) = p.newest_message_ms {
            m.end_to_end_latency
                .observe((now - ts).max(0) as f64 / 1000.0);
        }
        latest = Some(p.commit);
        if last_commit.elapsed() >= interval {
            if let Some(c) = latest.take() {
                committer.commit(&c.positions, c.watermark)?;
            }
            last_commit = Instant::now();
        }
    }
    if let Some(c) = latest {
        // The last commit must reach the broker before the consumer closes.
        let committer = committer.clone();
        tokio::task::spawn_blocking(move || committer.commit_sync(&c.positions, c.watermark))
            .await??;
    }
    Ok(())
}
