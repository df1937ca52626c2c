//! `salescast eval`: replays generated sales (hourly windows) and the real
//! weekly Walmart store sales through the same online path as the pipeline
//! (window engine, then `Inference::process` batch by batch) and scores every
//! model's forecasts against the actuals as they arrive: no forecast sees
//! its own actual.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use salescast_inference::features::days_from_civil;
use salescast_inference::score::{Scorer, Scores};
use salescast_inference::{Config as InfConfig, Inference};
use salescast_loadgen::{Expect, GenConfig, Generator};
use salescast_stream_core::{
    batch_from_rows, Config as WinConfig, EventRow, Level, WindowAgg, WindowBatch, WindowEngine,
    WindowRecord,
};

/// Options of `salescast eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Simulated days of generated data per seed.
    #[arg(long, default_value_t = 14)]
    pub days: i64,
    /// Seeds of generated data.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Sale lines per simulated second in the generated data.
    #[arg(long, default_value_t = 5.0)]
    pub events_per_second: f64,
    /// The Walmart weekly sales file.
    #[arg(long, default_value = "../shared/datasets/walmart/Walmart.csv")]
    pub walmart: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

const MODELS: [&str; 6] = [
    "seasonal_naive",
    "ewma",
    "baseline",
    "holt_winters",
    "neural",
    "ensemble",
];

/// Runs several models side by side over one stream of window batches.
struct Bench {
    runs: Vec<(&'static str, Inference, Scorer)>,
    /// Seconds spent in each model's `process`.
    busy: Vec<f64>,
}

impl Bench {
    fn new(cfg: &InfConfig, window_ms: i64) -> anyhow::Result<Bench> {
        let mut runs = Vec::new();
        for name in MODELS {
            let cfg = InfConfig {
                model: name.to_string(),
                ..cfg.clone()
            };
            let inf = Inference::new(cfg, window_ms)?;
            let season = inf.season();
            runs.push((name, inf, Scorer::new(season)));
        }
        let busy = vec![0.0; runs.len()];
        Ok(Bench { runs, busy })
    }

    fn feed(&mut self, windows: &WindowBatch) {
        if windows.is_empty() {
            return;
        }
        for ((_, inf, scorer), busy) in self.runs.iter_mut().zip(self.busy.iter_mut()) {
            let t = std::time::Instant::now();
            let f = inf.process(windows);
            *busy += t.elapsed().as_secs_f64();
            scorer.observe(&f);
        }
    }

    fn train_stats(&self) -> Vec<(&'static str, salescast_inference::TrainStats, f64)> {
        self.runs
            .iter()
            .zip(&self.busy)
            .filter_map(|((n, inf, _), busy)| Some((*n, inf.train_stats()?, *busy)))
            .collect()
    }

    fn scores(&self) -> BTreeMap<String, Scores> {
        self.runs
            .iter()
            .map(|(n, _, s)| (n.to_string(), s.scores()))
            .collect()
    }
}

/// Generated data: hourly windows of the store, category x store and total
/// levels (SKU x store is too sparse at one seed's volume to score hourly).
fn generated(args: &EvalArgs, seed: u64, bench: &mut Bench) -> anyhow::Result<()> {
    let hour = 3_600_000;
    // Monday 2026-11-02 00:00 UTC.
    let start = 1_793_577_600_000;
    let gen = Generator::new(GenConfig {
        seed,
        start_ms: start,
        events_per_second: args.events_per_second,
        window_ms: hour,
        anomaly_every_ms: 0,
        ..GenConfig::default()
    });
    let mut engine = WindowEngine::new(WinConfig {
        window_ms: hour,
        allowed_lateness_ms: 0,
        ..WinConfig::default()
    })?;
    let end = start + args.days * 86_400_000;
    let mut rows = Vec::with_capacity(50_000);
    let mut offset = 0i64;
    let flush = |rows: &mut Vec<EventRow>,
                 engine: &mut WindowEngine,
                 bench: &mut Bench|
     -> anyhow::Result<()> {
        let out = engine.process(&batch_from_rows(rows))?;
        anyhow::ensure!(
            out.rejects.is_empty(),
            "generated events refused: {:?}",
            &out.rejects[..1]
        );
        rows.clear();
        bench.feed(&dense_levels(&out.windows));
        Ok(())
    };
    for r in gen {
        if r.sim_ms >= end {
            break;
        }
        if let Expect::Valid(v) = r.expect {
            rows.push(event_row(v, offset));
            offset += 1;
        }
        if rows.len() == 50_000 {
            flush(&mut rows, &mut engine, bench)?;
        }
    }
    flush(&mut rows, &mut engine, bench)?;
    let out = engine.advance_watermark(end + hour);
    bench.feed(&dense_levels(&out.windows));
    Ok(())
}

/// A generated valid event as a row of the event schema (partition 0).
pub fn event_row(v: salescast_loadgen::ValidEvent, offset: i64) -> EventRow {
    EventRow {
        event_id: offset.to_string(),
        ts_ms: v.ts_ms,
        sku: v.sku,
        store: v.store,
        category: v.category,
        qty: v.qty,
        unit_price: v.unit_price,
        promo: v.promo,
        customer_id: None,
        partition: 0,
        offset,
    }
}

fn dense_levels(w: &WindowBatch) -> WindowBatch {
    let recs: Vec<WindowRecord> = w.records().filter(|r| r.level != Level::SkuStore).collect();
    WindowBatch::from_records(&recs)
}

/// The Walmart file: one `store` series per store, one window per week, the
/// week's sales in dollars as the value.
fn walmart(path: &PathBuf, bench: &mut Bench) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (see ../shared/datasets/walmart/README.md)",
            path.display()
        )
    })?;
    let week = 7 * 86_400_000;
    let mut by_week: BTreeMap<i64, Vec<WindowRecord>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        anyhow::ensure!(
            f.len() >= 3,
            "line {}: expected Store,Date,Weekly_Sales,...",
            i + 1
        );
        let d: Vec<i64> = f[1]
            .split('-')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("line {}: date {:?}", i + 1, f[1]))?;
        anyhow::ensure!(
            d.len() == 3,
            "line {}: date {:?} is not DD-MM-YYYY",
            i + 1,
            f[1]
        );
        let start = days_from_civil(d[2], d[1] as u32, d[0] as u32) * 86_400_000;
        let sales: f64 = f[2]
            .parse()
            .with_context(|| format!("line {}: sales", i + 1))?;
        let units = sales.round() as i64;
        by_week.entry(start).or_default().push(WindowRecord {
            level: Level::Store,
            key: format!("store-{:02}", f[0]).into(),
            start_ms: start,
            end_ms: start + week,
            revision: 0,
            parent: None,
            agg: WindowAgg {
                units,
                lines: 1,
                gross_units: units,
                ..WindowAgg::default()
            },
        });
    }
    let weeks = by_week.len();
    for (_, mut recs) in by_week {
        recs.sort_by(|a, b| a.key.cmp(&b.key));
        bench.feed(&WindowBatch::from_records(&recs));
    }
    Ok(weeks)
}

/// Run the evaluation and print the report.
pub fn run(cfg: &crate::Config, args: &EvalArgs) -> anyhow::Result<()> {
    let mut report: BTreeMap<String, BTreeMap<String, Scores>> = BTreeMap::new();
    let t = std::time::Instant::now();
    // Generated: one run per seed, then the mean over seeds.
    for seed in 1..=args.seeds {
        let mut b = Bench::new(&cfg.inference, 3_600_000)?;
        generated(args, seed, &mut b)?;
        if !args.json {
            for (n, st, busy) in b.train_stats() {
                eprintln!(
                    "seed {seed} {n}: {} series-windows scored and {} training steps ({} rejected) in {busy:.2} s on one core: {:.0} series-windows/s, {:.0} steps/s; model version {}",
                    st.scored,
                    st.steps,
                    st.rejected,
                    st.scored as f64 / busy.max(1e-9),
                    st.steps as f64 / busy.max(1e-9),
                    st.version
                );
            }
        }
        for (name, s) in b.scores() {
            report
                .entry(format!("generated_seed_{seed}"))
                .or_default()
                .insert(name, s);
        }
    }
    let mut mean: BTreeMap<String, Scores> = BTreeMap::new();
    for name in MODELS {
        let per: Vec<Scores> = (1..=args.seeds)
            .filter_map(|s| {
                report
                    .get(&format!("generated_seed_{s}"))?
                    .get(name)
                    .copied()
            })
            .collect();
        let avg = |f: fn(&Scores) -> f64| per.iter().map(f).sum::<f64>() / per.len().max(1) as f64;
        mean.insert(
            name.to_string(),
            Scores {
                points: per.iter().map(|s| s.points).sum(),
                mase: avg(|s| s.mase),
                mase_1: avg(|s| s.mase_1),
                smape: avg(|s| s.smape),
                smape_1: avg(|s| s.smape_1),
                pinball: avg(|s| s.pinball),
                coverage: avg(|s| s.coverage),
                coverage_1: avg(|s| s.coverage_1),
                coverage_1_quiet: avg(|s| s.coverage_1_quiet),
                coverage_1_busy: avg(|s| s.coverage_1_busy),
            },
        );
    }
    report.insert("generated".into(), mean);
    let weekly = InfConfig {
        season_windows: 52,
        ..cfg.inference.clone()
    };
    let mut wb = Bench::new(&weekly, 7 * 86_400_000)?;
    let weeks = walmart(&args.walmart, &mut wb)?;
    report.insert("walmart".into(), wb.scores());
    let secs = t.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    for (dataset, models) in &report {
        if dataset.starts_with("generated_seed_") {
            continue;
        }
        println!(
            "\n{dataset}{}",
            if dataset == "walmart" {
                format!(" ({weeks} weeks x 45 stores, weekly, season 52)")
            } else {
                format!(" ({} seeds x {} days, hourly, season 24; store, category x store and total levels)", args.seeds, args.days)
            }
        );
        println!(
            "{:<16} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>10} {:>14}",
            "model",
            "MASE(1)",
            "MASE",
            "sMAPE(1)",
            "sMAPE",
            "pinball",
            "cover(1)",
            "cover",
            "quiet / busy"
        );
        // A share, or "-" where no window qualified (Walmart's weeks are
        // never under half their store's mean).
        let share = |x: f64| {
            if x.is_nan() {
                "-".to_string()
            } else {
                format!("{x:.3}")
            }
        };
        for (m, s) in models {
            println!(
                "{:<16} {:>9.3} {:>8.3} {:>9.2} {:>8.2} {:>9.3} {:>9.3} {:>10.3} {:>6} / {}",
                m,
                s.mase_1,
                s.mase,
                s.smape_1,
                s.smape,
                s.pinball,
                s.coverage_1,
                s.coverage,
                share(s.coverage_1_quiet),
                share(s.coverage_1_busy)
            );
        }
    }
    println!(
        "\nquiet / busy: one-step coverage over windows whose median forecast is under half / above its series' mean"
    );
    println!("\n({secs:.1}s)");
    Ok(())
}
