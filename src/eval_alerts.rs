//! `salescast eval-alerts`: replays generated sales with injected, labeled
//! anomalies (SKU spikes, store-wide spikes and drops to zero, SKU drops to
//! zero, category level shifts and trend breaks) through the pipeline's
//! window engine, forecasting and alerting, and scores the alerts against
//! the labels.
//!
//! An alert *matches* a label when it is on the labeled series, or lists it
//! among its children (root-cause grouping), or is on an ancestor whose
//! children include it, and its window starts inside the label's span (plus
//! two windows of grace). Alerts that match an anomaly injected during the
//! warm-up are left out, like that anomaly. Per kind: recall = labels of
//! the kind caught by an alert of that kind (for a level shift or trend
//! break, of its direction too: the end of a shift up, called as a move
//! down, is not the shift); precision = alerts of the kind that match some
//! label (same-kind precision: that name it); delay = windows from the
//! label's start to the first matching alert of its kind; "any kind" counts the labels matched
//! by an alert of any kind, and its delay (found, if not always named
//! right). Hierarchy-wide incidents (store-level
//! labels) also report how many alerts they raised: one is the goal.
//! Level shifts and trend breaks also report an oracle's median delay
//! (`oracle_delay`): how soon the stream itself could tell them at best.
//!
//! `SALESCAST_EVAL_DEBUG=1` prints, per label, the alerts near it, and the
//! labels of the warm-up. `SALESCAST_EVAL_KEY=KEY` prints every alert (any
//! status, warm-up included) of the series `KEY` (`cat-00|web-uk`; `*`:
//! of every series).
//! `SALESCAST_EVAL_TRACE=KEY` prints each window of `KEY` as the detector
//! reads it (units, share on promotion, forecast and band), from the
//! forecast cache too.

use std::collections::BTreeMap;

use salescast_alerting::{Alert, AlertKind, Alerting, Direction, Status};
use salescast_inference::Inference;
use salescast_loadgen::{AnomalyLabel, Expect, GenConfig, Generator};
use salescast_stream_core::{batch_from_rows, Level, WindowEngine};
use serde::Serialize;

/// Options of `salescast eval-alerts`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalAlertsArgs {
    /// Seeds (scenarios) to replay.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// The first seed: seeds `first-seed ..= first-seed + seeds - 1` are
    /// replayed. The detector's settings were tuned on seeds 1-3; seeds
    /// from 4 on are scenarios it was never tuned on (`--first-seed 4`).
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Simulated days per seed, warm-up included.
    #[arg(long, default_value_t = 4)]
    pub days: i64,
    /// Days of warm-up (not scored): the models need a season of history
    /// before they forecast seasonally, and a second before the first
    /// day's rough forecasts stop echoing.
    #[arg(long, default_value_t = 2)]
    pub warmup_days: i64,
    /// Window width, ms.
    #[arg(long, default_value_t = 300_000)]
    pub window_ms: i64,
    /// Simulated time between injected anomalies, ms.
    #[arg(long, default_value_t = 3 * 3_600_000)]
    pub anomaly_every_ms: i64,
    /// Sale lines per simulated second.
    #[arg(long, default_value_t = 50.0)]
    pub events_per_second: f64,
    /// Forecasting model behind the detector (`inference.model` values;
    /// default: the configured one, `ensemble` out of the box).
    #[arg(long)]
    pub model: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep each seed's forecasts (without their horizons) in this folder
    /// and reuse them on the next run with the same generator, window and
    /// inference settings: only the detector runs again, in seconds instead
    /// of minutes. For working on the detector; the figures are the same.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Scores of one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindScore {
    /// Labels of this kind.
    pub labels: usize,
    /// Labels caught by an alert of this kind.
    pub caught: usize,
    /// Alerts of this kind.
    pub alerts: usize,
    /// Alerts of this kind matching some label.
    pub matched_alerts: usize,
    /// Alerts of this kind matching a label of the same kind (a `drop`: a
    /// drop to zero or a downward level shift).
    pub same_kind_alerts: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Precision counting only alerts that match a label of their kind: a
    /// level shift called on a spike is a wrong alert here, a right one in
    /// `precision`.
    pub same_kind_precision: f64,
    /// F1 from `same_kind_precision` and `recall`.
    pub same_kind_f1: f64,
    /// Median windows from a label's start to its first matching alert.
    pub median_delay_windows: Option<f64>,
    /// Labels of this kind matched by an alert of any kind: found, if not
    /// always named right (a step first called a trend break).
    pub caught_any_kind: usize,
    /// Median windows from a label's start to its first matching alert of
    /// any kind.
    pub median_delay_any_kind_windows: Option<f64>,
    /// Labels of this kind whose span the replay ends before (a trend
    /// break that starts less than its climb before the end can be caught
    /// only in the windows left), scored like the others.
    pub cut_short: usize,
    /// Of those, caught by an alert of this kind.
    pub cut_short_caught: usize,
    /// The median delay of an oracle's test, one told where each labeled
    /// category move starts, its factor and shape, and the series' rate,
    /// at a false alarm in a hundred moves: how soon the stream itself
    /// could tell such a move at best. Only for level shifts and trend
    /// breaks; `None` when the oracle's median label is not told within
    /// its span.
    pub oracle_median_delay_windows: Option<f64>,
    /// The same oracle asking the evidence the peer test asks of a move
    /// (`alerting.peer-h`, in nats): what knowing where a move starts and
    /// how it goes is worth at the false-alarm rate the detector runs at.
    pub oracle_median_delay_at_peer_h_windows: Option<f64>,
}

fn level_name(a: &Alert) -> &'static str {
    a.level.as_str()
}

/// Whether the alert explains the labeled series.
fn covers(a: &Alert, l: &AnomalyLabel) -> bool {
    if level_name(a) == l.level && *a.key == *l.key {
        return true;
    }
    a.children
        .iter()
        .any(|c| c.level.as_str() == l.level && *c.key == *l.key)
        // An alert on an ancestor of the label (a store above its SKU).
        || (a.level.as_str() == "store" && l.key.ends_with(&format!("|{}", a.key)))
        || (a.level.as_str() == "total" && l.level != "total" && a.children.iter().any(|c| {
            c.level.as_str() == "store" && (l.key == *c.key || l.key.ends_with(&format!("|{}", c.key)))
        }))
}

/// Whether alert `a` names the anomaly the label describes: its kind (a
/// drop names a move down of any kind but a spike), and for a level shift
/// or trend break its direction too (the end of a shift up is a move down,
/// not the shift).
fn names(a: &Alert, l: &AnomalyLabel) -> bool {
    match a.kind {
        AlertKind::Drop => {
            l.kind == "drop_to_zero"
                || (matches!(&*l.kind, "level_shift" | "trend_break") && l.factor < 1.0)
        }
        AlertKind::LevelShift | AlertKind::TrendBreak => {
            kind_of(&l.kind) == Some(a.kind) && (a.direction == Direction::Up) == (l.factor > 1.0)
        }
        k => kind_of(&l.kind) == Some(k),
    }
}

/// Whether alert `a` catches the label: of its kind, naming it (see
/// [`names`]).
fn catches(a: &Alert, l: &AnomalyLabel) -> bool {
    kind_of(&l.kind) == Some(a.kind) && names(a, l)
}

fn kind_of(label: &str) -> Option<AlertKind> {
    match label {
        "spike" => Some(AlertKind::Spike),
        "drop_to_zero" => Some(AlertKind::DropToZero),
        "level_shift" => Some(AlertKind::LevelShift),
        "trend_break" => Some(AlertKind::TrendBreak),
        _ => None,
    }
}

struct SeedRun {
    alerts: Vec<Alert>,
    labels: Vec<AnomalyLabel>,
    scored_from: i64,
    /// Each category in a store's order lines by window start (for the
    /// oracle's bound).
    lines: Lines,
}

/// Order lines of each series by window start.
type Lines = std::collections::HashMap<std::sync::Arc<str>, BTreeMap<i64, i64>>;

/// False alarms the oracle's test allows per labeled move (see
/// [`oracle_delay`]).
const ORACLE_FALSE_ALARMS: f64 = 0.01;

/// Windows before a labeled move whose lines give its series' rate.
const ORACLE_RATE_WINDOWS: i64 = 12;

/// Windows from a labeled move's start to the first window by whose end
/// an oracle could tell it: a one-sided likelihood-ratio test of the move
/// against none that is *told* where the move starts, its factor and shape
/// ([`AnomalyLabel::multiplier_at`], mid-window), and the series' rate (the lines of the
/// `ORACLE_RATE_WINDOWS` windows before it, carried along the generator's
/// daily and weekly shape), so it is tested once per label instead of at
/// every window of every series. It tells the move once the expected log
/// likelihood ratio of the Poisson counts,
/// `sum lambda_i (m_i ln m_i - m_i + 1)`, reaches `needed` nats (Wald's
/// approximation of the test's typical delay; `ln(1 / ORACLE_FALSE_ALARMS)`
/// for a false alarm in a hundred moves). No detector that must find the
/// start itself, at a false-alarm rate an operator accepts, can be quicker
/// in the typical case. `None`: no rate (fewer than half the windows before the move), or
/// not told within its span.
fn oracle_delay(l: &AnomalyLabel, lines: &BTreeMap<i64, i64>, w: i64, needed: f64) -> Option<f64> {
    let mid = |t: i64| salescast_loadgen::demand_shape(t + w / 2);
    let before: Vec<(i64, i64)> = lines
        .range(l.start_ms - ORACLE_RATE_WINDOWS * w..l.start_ms)
        .map(|(&t, &n)| (t, n))
        .collect();
    if (before.len() as i64) * 2 < ORACLE_RATE_WINDOWS {
        return None;
    }
    // Lines per unit of the demand shape.
    let rate = before.iter().map(|&(_, n)| n as f64).sum::<f64>()
        / before.iter().map(|&(t, _)| mid(t)).sum::<f64>();
    if rate <= 0.0 {
        return None;
    }
    let mut llr = 0.0;
    for i in 0..(l.end_ms - l.start_ms) / w {
        let t = l.start_ms + i * w;
        let lambda = rate * mid(t);
        let m = l.multiplier_at(t + w / 2, w);
        let per_unit = if m > 0.0 { m * m.ln() - m + 1.0 } else { 1.0 };
        llr += lambda * per_unit;
        if llr >= needed {
            return Some(i as f64);
        }
    }
    None
}

/// Where a seed's replay ends (ms).
fn replay_end(args: &EvalAlertsArgs) -> i64 {
    START_MS + args.days * 86_400_000
}

/// The forecasting model behind the detector.
fn model_of<'a>(cfg: &'a crate::Config, args: &'a EvalAlertsArgs) -> &'a str {
    args.model.as_deref().unwrap_or(&cfg.inference.model)
}

/// One batch of forecasts, as the pipeline would hand it to the detector.
type Step = Vec<salescast_inference::Forecast>;

/// Generate one seed's events and forecast them, handing each batch's
/// forecasts to `on_step` as they are made; returns the seed's labels.
fn forecast_seed(
    cfg: &crate::Config,
    args: &EvalAlertsArgs,
    seed: u64,
    mut on_step: impl FnMut(Step) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<AnomalyLabel>> {
    let model = model_of(cfg, args);
    let end = replay_end(args);
    let mut gen = Generator::new(gen_config(cfg, args, seed));
    let mut engine = WindowEngine::new(salescast_stream_core::Config {
        window_ms: args.window_ms,
        allowed_lateness_ms: 0,
        ..cfg.windows.clone()
    })?;
    let mut inference = Inference::new(
        salescast_inference::Config {
            model: model.to_string(),
            season_windows: 0,
            ..cfg.inference.clone()
        },
        args.window_ms,
    )?;
    let mut rows = Vec::with_capacity(50_000);
    let mut offset = 0i64;
    let mut step = |rows: &mut Vec<salescast_stream_core::EventRow>,
                    engine: &mut WindowEngine|
     -> anyhow::Result<()> {
        let out = engine.process(&batch_from_rows(rows))?;
        rows.clear();
        let mut f = inference.process(&out.windows);
        // The detector reads the expectation, not the horizon.
        for x in &mut f {
            x.horizon = Vec::new();
        }
        on_step(f)
    };
    for r in gen.by_ref() {
        if r.sim_ms >= end {
            break;
        }
        if let Expect::Valid(v) = r.expect {
            rows.push(crate::eval::event_row(v, offset));
            offset += 1;
        }
        if rows.len() == 50_000 {
            step(&mut rows, &mut engine)?;
        }
    }
    step(&mut rows, &mut engine)?;
    Ok(gen
        .labels()
        .iter()
        .filter(|l| l.start_ms < end)
        .cloned()
        .collect())
}

/// Monday 2026-11-02 00:00 UTC.
const START_MS: i64 = 1_793_577_600_000;

fn gen_config(cfg: &crate::Config, args: &EvalAlertsArgs, seed: u64) -> GenConfig {
    GenConfig {
        seed,
        start_ms: START_MS,
        events_per_second: args.events_per_second,
        window_ms: args.window_ms,
        anomaly_every_ms: args.anomaly_every_ms,
        malformed_rate: 0.0,
        duplicate_rate: 0.0,
        ..cfg.generator.clone()
    }
}

/// Version of the cache file layout (part of the file name's digest).
const CACHE_FORMAT: u32 = 5;

/// Where a seed's forecasts are cached: the file name carries a digest of
/// everything that shapes them (generator settings and stream version,
/// windows, inference settings, the run's options), so a changed setting or
/// generator never reads stale forecasts. A change to the inference code
/// itself needs a new cache directory.
fn cache_path(
    cfg: &crate::Config,
    args: &EvalAlertsArgs,
    seed: u64,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    use std::hash::{Hash, Hasher};
    let Some(dir) = &args.cache_dir else {
        return Ok(None);
    };
    let model = model_of(cfg, args);
    let shape = serde_json::to_string(&(
        &cfg.windows,
        &cfg.inference,
        serde_json::to_value(gen_config(cfg, args, seed))?,
        model,
        (args.days, args.window_ms),
        env!("CARGO_PKG_VERSION"),
        CACHE_FORMAT,
        salescast_loadgen::STREAM_VERSION,
    ))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    shape.hash(&mut h);
    Ok(Some(
        dir.join(format!("seed-{seed}-{:016x}.jsonl", h.finish())),
    ))
}

/// Writes a seed's forecasts as they are made: one JSON line per forecast,
/// an empty line after each batch, the labels (a JSON array) last (about
/// 1.8 GB a seed at the defaults). The file appears under its name only
/// once complete; a run that fails part way (a full disk) removes what it
/// wrote.
struct CacheWriter {
    w: std::io::BufWriter<std::fs::File>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    done: bool,
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl CacheWriter {
    fn create(path: &std::path::Path) -> anyhow::Result<Self> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = path.with_extension("tmp");
        let w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        Ok(CacheWriter {
            w,
            tmp,
            path: path.to_path_buf(),
            done: false,
        })
    }

    fn step(&mut self, step: &[salescast_inference::Forecast]) -> anyhow::Result<()> {
        use std::io::Write;
        for f in step {
            serde_json::to_writer(&mut self.w, f)?;
            self.w.write_all(b"\n")?;
        }
        self.w.write_all(b"\n")?;
        Ok(())
    }

    fn finish(mut self, labels: &[AnomalyLabel]) -> anyhow::Result<()> {
        use std::io::Write;
        serde_json::to_writer(&mut self.w, labels)?;
        self.w.write_all(b"\n")?;
        self.w.flush()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }
}

/// Replay a cache file written by [`CacheWriter`], batch by batch; returns
/// the labels.
fn read_cache(
    path: &std::path::Path,
    mut on_step: impl FnMut(Step),
) -> anyhow::Result<Vec<AnomalyLabel>> {
    use std::io::BufRead;
    let mut cur = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(path)?).lines() {
        let line = line?;
        if line.is_empty() {
            on_step(std::mem::take(&mut cur));
        } else if line.starts_with('[') {
            return Ok(serde_json::from_str(&line)?);
        } else {
            cur.push(serde_json::from_str(&line)?);
        }
    }
    anyhow::bail!("{}: incomplete cache file (no labels)", path.display())
}

fn run_seed(cfg: &crate::Config, args: &EvalAlertsArgs, seed: u64) -> anyhow::Result<SeedRun> {
    let mut alerting = Alerting::new(cfg.alerting.clone())?;
    let mut alerts = Vec::new();
    // SALESCAST_EVAL_TRACE=<key> prints that series' windows and forecasts
    // (from the cache too).
    let trace = std::env::var("SALESCAST_EVAL_TRACE").ok();
    let mut lines = Lines::new();
    let mut detect = |step: &[salescast_inference::Forecast]| {
        for x in step.iter().filter(|x| x.level == Level::CategoryStore) {
            lines
                .entry(x.key.clone())
                .or_default()
                .insert(x.window_start_ms, x.actual.lines);
        }
        if let Some(k) = trace.as_deref() {
            for x in step.iter().filter(|x| &*x.key == k) {
                let e = x.expected.map_or([f64::NAN; 3], |e| [e.p10, e.p50, e.p90]);
                eprintln!(
                    "trace seed {seed} {} {} (in {}) units {} lines {} promo {:.2} expected {:.1} ({:.1}-{:.1}) {}",
                    salescast_alerting::fmt_utc(x.window_start_ms),
                    x.key,
                    x.parent.as_deref().unwrap_or("-"),
                    x.actual.units,
                    x.actual.lines,
                    x.actual.promo_share,
                    e[1],
                    e[0],
                    e[2],
                    x.model
                );
            }
        }
        alerts.extend(alerting.process(step));
    };
    let labels = match cache_path(cfg, args, seed)? {
        Some(p) if p.exists() => read_cache(&p, |step| detect(&step))?,
        Some(p) => {
            let mut w = CacheWriter::create(&p)?;
            let labels = forecast_seed(cfg, args, seed, |step| {
                w.step(&step)?;
                detect(&step);
                Ok(())
            })?;
            w.finish(&labels)?;
            labels
        }
        None => forecast_seed(cfg, args, seed, |step| {
            detect(&step);
            Ok(())
        })?,
    };
    Ok(SeedRun {
        alerts,
        labels,
        scored_from: START_MS + args.warmup_days * 86_400_000,
        lines,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Run the evaluation and print the report.
pub fn run(cfg: &crate::Config, args: &EvalAlertsArgs) -> anyhow::Result<()> {
    let model = model_of(cfg, args);
    anyhow::ensure!(
        args.warmup_days >= 0 && args.days > args.warmup_days,
        "--days must exceed --warmup-days"
    );
    let t0 = std::time::Instant::now();
    let w = args.window_ms;
    // Where every seed's replay ends (a label past it is cut short).
    let ends_at = replay_end(args);
    // Per kind: scores, delays, delays of any kind, the oracle's delays
    // at a false alarm in a hundred moves and at the peer test's evidence.
    type Tally = (KindScore, Vec<f64>, Vec<f64>, Vec<(f64, f64)>);
    let mut per_kind: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let one_in_a_hundred = (1.0 / ORACLE_FALSE_ALARMS).ln();
    let peer_h = cfg.alerting.peer_h;
    let mut incident_alerts: Vec<usize> = Vec::new();
    let mut total_alerts = 0;
    let mut unmatched = 0;
    // Seeds are independent: replay them side by side, one thread each.
    let runs: Vec<anyhow::Result<SeedRun>> = std::thread::scope(|s| {
        let first = args.first_seed;
        let handles: Vec<_> = (first..first + args.seeds)
            .map(|seed| s.spawn(move || run_seed(cfg, args, seed)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a seed's replay panicked")))
            })
            .collect()
    });
    let mut warmup_tail_alerts = 0;
    let debug_key = std::env::var("SALESCAST_EVAL_KEY").ok();
    for (seed, run) in (args.first_seed..).zip(runs) {
        let run = run?;
        let matches = |a: &Alert, l: &AnomalyLabel| {
            covers(a, l) && a.window_start_ms >= l.start_ms && a.window_start_ms < l.end_ms + 2 * w
        };
        // An anomaly injected during the warm-up is not scored, and neither
        // are the alerts it causes once scoring starts (the end of a
        // 10-hour level shift that began the evening before).
        let (labels, warmup_labels): (Vec<&AnomalyLabel>, Vec<&AnomalyLabel>) = run
            .labels
            .iter()
            .partition(|l| l.start_ms >= run.scored_from);
        // Each label's oracle delays (a level shift's or trend break's
        // whose series' lines were seen), at each evidence asked.
        let oracles: Vec<Option<[Option<f64>; 2]>> = labels
            .iter()
            .map(|l| {
                let lines = run.lines.get(l.key.as_str())?;
                matches!(
                    kind_of(&l.kind),
                    Some(AlertKind::LevelShift | AlertKind::TrendBreak)
                )
                .then(|| [one_in_a_hundred, peer_h].map(|n| oracle_delay(l, lines, w, n)))
            })
            .collect();
        if let Some(k) = &debug_key {
            for a in run
                .alerts
                .iter()
                .filter(|a| &*a.key == k.as_str() || k == "*")
            {
                eprintln!(
                    "seed {} {k}: {} {:?} {} {}",
                    seed,
                    salescast_alerting::fmt_utc(a.window_start_ms),
                    a.status,
                    a.kind.as_str(),
                    a.explanation
                );
            }
        }
        // The scored alerts, and those matching no scored label.
        let mut alerts: Vec<&Alert> = Vec::new();
        let mut no_label: Vec<&Alert> = Vec::new();
        for a in run
            .alerts
            .iter()
            .filter(|a| a.status == Status::Open && a.window_start_ms >= run.scored_from)
        {
            if labels.iter().any(|l| matches(a, l)) {
                alerts.push(a);
            } else if warmup_labels.iter().any(|l| matches(a, l)) {
                warmup_tail_alerts += 1;
            } else {
                alerts.push(a);
                no_label.push(a);
            }
        }
        total_alerts += alerts.len();
        unmatched += no_label.len();
        for k in AlertKind::ALL {
            let e = per_kind.entry(k.as_str()).or_default();
            let of_kind = |v: &[&Alert]| v.iter().filter(|a| a.kind == k).count();
            let n = of_kind(&alerts);
            e.0.alerts += n;
            e.0.matched_alerts += n - of_kind(&no_label);
            e.0.same_kind_alerts += alerts
                .iter()
                .filter(|a| a.kind == k && labels.iter().any(|l| matches(a, l) && names(a, l)))
                .count();
        }
        if std::env::var_os("SALESCAST_EVAL_DEBUG").is_some() {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for a in &no_label {
                *by.entry(format!("{}/{}", a.level, a.kind.as_str()))
                    .or_default() += 1;
                if std::env::var("SALESCAST_EVAL_DEBUG").as_deref() == Ok("all")
                    || by.values().sum::<usize>() % 40 == 1
                {
                    eprintln!(
                        "unmatched seed {seed} {}:{} {} z={:.1} score={:.2} children={} {} [{}]",
                        a.level,
                        a.key,
                        a.kind.as_str(),
                        a.robust_z,
                        a.score,
                        a.children.len(),
                        a.explanation,
                        a.children
                            .iter()
                            .map(|c| format!("{}:{}", c.level.as_str(), c.key))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
            }
            eprintln!("unmatched by level/kind: {by:?}");
            for l in &warmup_labels {
                eprintln!(
                    "warm-up seed {seed} {} x{} {} {} {}",
                    l.kind,
                    l.factor,
                    l.level,
                    l.key,
                    salescast_alerting::fmt_utc(l.start_ms)
                );
            }
            for (l, oracle) in labels.iter().zip(&oracles) {
                let caught = alerts.iter().any(|a| matches(a, l) && catches(a, l));
                // The label's own series' alerts first.
                let mut near: Vec<&Alert> = alerts
                    .iter()
                    .copied()
                    .filter(|a| {
                        a.window_start_ms >= l.start_ms && a.window_start_ms < l.end_ms + 2 * w
                    })
                    .filter(|a| a.level.as_str() != "sku_store" || *a.key == *l.key)
                    .collect();
                near.sort_by_key(|a| *a.key != *l.key);
                let near: Vec<String> = near
                    .iter()
                    .map(|a| {
                        format!(
                            "{}:{}:{}@{}",
                            a.level,
                            a.key,
                            a.kind.as_str(),
                            (a.window_start_ms - l.start_ms) / w
                        )
                    })
                    .take(6)
                    .collect();
                let oracle = oracle.map_or(String::new(), |o| {
                    let [a, b] = o.map(|d| d.map_or("-".into(), |d| d.to_string()));
                    format!(" (oracle {a} / {b})")
                });
                eprintln!(
                    "seed {seed} {} x{} {} {} {}{}{oracle} -> {:?}",
                    l.kind,
                    l.factor,
                    l.level,
                    l.key,
                    salescast_alerting::fmt_utc(l.start_ms),
                    if caught { "" } else { " MISSED" },
                    near
                );
            }
        }
        for (l, oracle) in labels.iter().zip(&oracles) {
            let Some(k) = kind_of(&l.kind) else { continue };
            let e = per_kind.entry(k.as_str()).or_default();
            e.0.labels += 1;
            let cut_short = l.end_ms > ends_at;
            e.0.cut_short += usize::from(cut_short);
            // The first matching alert of the label's kind and of any kind,
            // and the alerts during its span, in one pass.
            let (mut first, mut first_any, mut during) = (None::<i64>, None::<i64>, 0);
            for a in alerts.iter().filter(|a| matches(a, l)) {
                let t = a.window_start_ms;
                first_any = Some(first_any.map_or(t, |f| f.min(t)));
                if catches(a, l) {
                    first = Some(first.map_or(t, |f| f.min(t)));
                }
                during += usize::from(t < l.end_ms);
            }
            if let Some(t) = first {
                e.0.caught += 1;
                e.0.cut_short_caught += usize::from(cut_short);
                e.1.push(((t - l.start_ms) / w) as f64);
            }
            if let Some(t) = first_any {
                e.0.caught_any_kind += 1;
                e.2.push(((t - l.start_ms) / w) as f64);
            }
            if l.level == "store" {
                // Alerts raised for a hierarchy-wide incident during its span.
                incident_alerts.push(during);
            }
            if matches!(k, AlertKind::LevelShift | AlertKind::TrendBreak) {
                // Not told within its span: after every delay told.
                let [a, b] = oracle
                    .unwrap_or_default()
                    .map(|d| d.unwrap_or(f64::INFINITY));
                e.3.push((a, b));
            }
        }
    }
    let mut kinds = BTreeMap::new();
    for (k, (mut s, delays, any_delays, oracle)) in per_kind {
        let ratio = |n: usize, d: usize| if d > 0 { n as f64 / d as f64 } else { 0.0 };
        s.precision = ratio(s.matched_alerts, s.alerts);
        s.recall = ratio(s.caught, s.labels);
        let f1 = |p: f64, r: f64| {
            if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            }
        };
        s.f1 = f1(s.precision, s.recall);
        s.same_kind_precision = ratio(s.same_kind_alerts, s.alerts);
        s.same_kind_f1 = f1(s.same_kind_precision, s.recall);
        s.median_delay_windows = median(delays);
        s.median_delay_any_kind_windows = median(any_delays);
        let told = |v: Vec<f64>| median(v).filter(|d| d.is_finite());
        s.oracle_median_delay_windows = told(oracle.iter().map(|o| o.0).collect());
        s.oracle_median_delay_at_peer_h_windows = told(oracle.iter().map(|o| o.1).collect());
        kinds.insert(k, s);
    }
    let per_incident = if incident_alerts.is_empty() {
        None
    } else {
        Some(incident_alerts.iter().sum::<usize>() as f64 / incident_alerts.len() as f64)
    };
    let last_seed = args.first_seed + args.seeds.max(1) - 1;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "kinds": kinds,
                "alerts": total_alerts,
                "alerts_matching_no_label": unmatched,
                "alerts_from_warmup_anomalies": warmup_tail_alerts,
                "alerts_per_hierarchy_wide_incident": per_incident,
                "hierarchy_wide_incidents": incident_alerts.len(),
                "seeds": [args.first_seed, last_seed],
                "model": model,
            })
        );
        return Ok(());
    }
    println!(
        "eval-alerts: seeds {}-{} x {} days ({} scored), {}-minute windows, model {:?}, {:.1}s",
        args.first_seed,
        last_seed,
        args.days,
        args.days - args.warmup_days,
        w / 60_000,
        model,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>10} {:>7} {:>7} {:>14} {:>10} {:>8} {:>10} {:>8}",
        "kind",
        "labels",
        "caught",
        "alerts",
        "precision",
        "recall",
        "F1",
        "median delay",
        "same-kind:",
        "prec/F1",
        "any kind:",
        "delay"
    );
    for (k, s) in &kinds {
        println!(
            "{:<14} {:>7} {:>7} {:>7} {:>10.3} {:>7.3} {:>7.3} {:>14} {:>10.3} {:>8.3} {:>10} {:>8}",
            k,
            s.labels,
            s.caught,
            s.alerts,
            s.precision,
            s.recall,
            s.f1,
            s.median_delay_windows
                .map_or("-".into(), |d| format!("{d:.1} windows")),
            s.same_kind_precision,
            s.same_kind_f1,
            s.caught_any_kind,
            s.median_delay_any_kind_windows
                .map_or("-".into(), |d| format!("{d:.1}"))
        );
    }
    println!(
        "alerts {total_alerts}, matching no label {unmatched} ({warmup_tail_alerts} more from anomalies of the warm-up left out); hierarchy-wide incidents {}, alerts per incident {}",
        incident_alerts.len(),
        per_incident.map_or("-".into(), |x| format!("{x:.2}"))
    );
    let oracle: Vec<String> = kinds
        .iter()
        .filter(|(k, _)| matches!(**k, "level_shift" | "trend_break"))
        .map(|(k, s)| {
            let d = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:.1}"));
            format!(
                "{k} {} / {}",
                d(s.oracle_median_delay_windows),
                d(s.oracle_median_delay_at_peer_h_windows)
            )
        })
        .collect();
    if !oracle.is_empty() {
        println!(
            "oracle's median delay, windows (a test told each move's start, factor and rate; at {}% false alarms per move / at peer-h {peer_h} nats): {}",
            ORACLE_FALSE_ALARMS * 100.0,
            oracle.join(", ")
        );
    }
    let cut: Vec<String> = kinds
        .iter()
        .filter(|(_, s)| s.cut_short > 0)
        .map(|(k, s)| format!("{k} {}/{}", s.cut_short_caught, s.cut_short))
        .collect();
    if !cut.is_empty() {
        println!(
            "labels the replay ends within (caught / labels, included above): {}",
            cut.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use salescast_alerting::{Severity, Status};
    use salescast_stream_core::Level;

    fn alert(kind: AlertKind, direction: Direction) -> Alert {
        Alert {
            id: String::new(),
            status: Status::Open,
            level: Level::CategoryStore,
            key: "cat-00|web-uk".into(),
            kind,
            direction,
            severity: Severity::Low,
            window_start_ms: 0,
            window_end_ms: 300_000,
            observed: 0.0,
            expected: 0.0,
            band: [0.0, 0.0],
            score: 0.0,
            robust_z: 0.0,
            revenue_at_stake: 0.0,
            children: Vec::new(),
            model: String::new(),
            model_version: 0,
            explanation: String::new(),
        }
    }

    fn label(kind: &str, factor: f64) -> AnomalyLabel {
        AnomalyLabel {
            kind: kind.into(),
            level: "category_store".into(),
            key: "cat-00|web-uk".into(),
            start_ms: 0,
            end_ms: 36_000_000,
            factor,
        }
    }

    /// A category's lines at `per_window` a window around `start`, along
    /// the generator's demand shape, for the windows before it.
    fn lines_before(start: i64, per_window: f64) -> BTreeMap<i64, i64> {
        let w = 300_000;
        let at = |t: i64| salescast_loadgen::demand_shape(t + w / 2);
        (1..=ORACLE_RATE_WINDOWS)
            .map(|i| {
                let t = start - i * w;
                (t, (per_window * at(t) / at(start)).round() as i64)
            })
            .collect()
    }

    #[test]
    fn the_oracle_tells_a_step_at_once_and_a_climb_only_once_it_has_climbed() {
        let w = 300_000;
        // Noon on the Wednesday after START_MS.
        let start = START_MS + 2 * 86_400_000 + 12 * 3_600_000;
        let at = |kind: &str, factor: f64| AnomalyLabel {
            start_ms: start,
            end_ms: start + 120 * w,
            ..label(kind, factor)
        };
        let fifty = lines_before(start, 50.0);
        let needed = (1.0 / ORACLE_FALSE_ALARMS).ln();
        assert_eq!(
            oracle_delay(&at("level_shift", 1.8), &fifty, w, needed),
            Some(0.0)
        );
        assert_eq!(
            oracle_delay(&at("level_shift", 0.5), &fifty, w, needed),
            Some(0.0)
        );
        // A climb to twice the rate over 36 windows: about 3% a window.
        // Its expected log likelihood ratio after k windows is about
        // 50 k^3 / 7776, which reaches ln 100 at k = 9.
        let climb = oracle_delay(&at("trend_break", 2.0), &fifty, w, needed).unwrap();
        assert!((6.0..=11.0).contains(&climb), "{climb}");
        // A slide to 0.4 moves 1.7% a window: slower still.
        let slide = oracle_delay(&at("trend_break", 0.4), &fifty, w, needed).unwrap();
        assert!(slide > climb, "{slide} {climb}");
        // With a hundred times the lines it is told within two windows.
        let many = lines_before(start, 5000.0);
        let quick = oracle_delay(&at("trend_break", 2.0), &many, w, needed).unwrap();
        assert!(quick <= 2.0, "{quick}");
        // Asking more evidence (fewer false alarms) takes longer.
        let sure = oracle_delay(&at("trend_break", 2.0), &fifty, w, 12.0).unwrap();
        assert!(sure > climb, "{sure} {climb}");
        // No windows before the move: no rate, no bound.
        assert_eq!(
            oracle_delay(&at("trend_break", 2.0), &BTreeMap::new(), w, needed),
            None
        );
    }

    #[test]
    fn a_shift_is_named_by_an_alert_of_its_kind_and_direction() {
        let up = label("level_shift", 1.8);
        assert!(names(&alert(AlertKind::LevelShift, Direction::Up), &up));
        // Its end, a move back down, is not the shift.
        assert!(!names(&alert(AlertKind::LevelShift, Direction::Down), &up));
        assert!(!names(&alert(AlertKind::TrendBreak, Direction::Up), &up));
        let slide = label("trend_break", 0.4);
        assert!(names(
            &alert(AlertKind::TrendBreak, Direction::Down),
            &slide
        ));
        assert!(!names(&alert(AlertKind::TrendBreak, Direction::Up), &slide));
        // A drop names a move down of any of those kinds.
        assert!(names(&alert(AlertKind::Drop, Direction::Down), &slide));
        assert!(names(
            &alert(AlertKind::Spike, Direction::Up),
            &label("spike", 3.0)
        ));
    }
}
