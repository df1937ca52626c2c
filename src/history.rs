//! Window history for warm starts: `salescast export-windows` folds sale
//! events (a JSON-lines file in the event contract, or the seeded
//! generator) through the window engine and writes every closed window to an
//! Arrow IPC file; `salescast train` replays such a file through the same
//! online path as the pipeline (the neural model learning from each closed
//! window), for several epochs, and saves the model as a safetensors
//! checkpoint that `inference.neural.checkpoint` loads on start.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use salescast_inference::{Config as InfConfig, Inference, NeuralConfig};
use salescast_ingest::{BatchDecoder, Dedup};
use salescast_loadgen::{Expect, GenConfig, Generator};
use salescast_stream_core::{batch_from_rows, WindowBatch, WindowEngine};

/// Options of `salescast export-windows`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Output file (Arrow IPC).
    #[arg(long)]
    pub out: PathBuf,
    /// Sale events, one JSON object per line (the `sales` topic contract).
    #[arg(long, conflicts_with = "generate_days")]
    pub input: Option<PathBuf>,
    /// Instead of a file: this many simulated days from the seeded generator.
    #[arg(long)]
    pub generate_days: Option<i64>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Generator sale lines per simulated second.
    #[arg(long, default_value_t = 5.0)]
    pub events_per_second: f64,
}

/// Options of `salescast train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Window history (Arrow IPC) from `salescast export-windows`.
    #[arg(long)]
    pub windows: PathBuf,
    /// Checkpoint to write (safetensors); training continues from it when it
    /// exists, unless --fresh.
    #[arg(long)]
    pub out: PathBuf,
    /// Passes over the history.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Start from fresh weights even if --out exists.
    #[arg(long)]
    pub fresh: bool,
}

struct Writer {
    inner: FileWriter<std::fs::File>,
    windows: usize,
}

impl Writer {
    fn write(&mut self, w: &WindowBatch) -> anyhow::Result<()> {
        if !w.is_empty() {
            self.windows += w.len();
            self.inner.write(w.batch())?;
        }
        Ok(())
    }
}

/// Run `export-windows`.
pub fn export(cfg: &crate::Config, args: &ExportArgs) -> anyhow::Result<()> {
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let schema = salescast_stream_core::window::window_schema();
    let mut out = Writer {
        inner: FileWriter::try_new(file, &schema)?,
        windows: 0,
    };
    let mut engine = WindowEngine::new(cfg.windows.clone())?;
    let mut refused = 0usize;
    let mut events = 0usize;
    let mut max_ts = i64::MIN;
    if let Some(days) = args.generate_days {
        // Monday 2026-11-02 00:00 UTC.
        let start = 1_793_577_600_000;
        let end = start + days * 86_400_000;
        let gen = Generator::new(GenConfig {
            seed: args.seed,
            start_ms: start,
            events_per_second: args.events_per_second,
            window_ms: cfg.windows.window_ms,
            anomaly_every_ms: 0,
            ..GenConfig::default()
        });
        let mut rows = Vec::with_capacity(20_000);
        for (i, r) in gen.enumerate() {
            if r.sim_ms >= end {
                break;
            }
            if let Expect::Valid(v) = r.expect {
                max_ts = max_ts.max(v.ts_ms);
                rows.push(crate::eval::event_row(v, i as i64));
            }
            if rows.len() == 20_000 {
                let o = engine.process(&batch_from_rows(&rows))?;
                events += rows.len();
                refused += o.rejects.len();
                rows.clear();
                out.write(&o.windows)?;
            }
        }
        let o = engine.process(&batch_from_rows(&rows))?;
        events += rows.len();
        refused += o.rejects.len();
        out.write(&o.windows)?;
    } else {
        let path = args
            .input
            .as_ref()
            .context("give --input FILE.jsonl or --generate-days N")?;
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut dec = BatchDecoder::new(8192, cfg.ingest.max_payload_bytes)?;
        let mut dedup = Dedup::new(cfg.ingest.dedup_capacity);
        let mut fold = |dec: &mut BatchDecoder, out: &mut Writer| -> anyhow::Result<()> {
            let d = dec.finish(&mut dedup)?;
            refused += d.dead_letters.len();
            events += d.events.num_rows();
            let o = engine.process(&d.events)?;
            refused += o.rejects.len();
            out.write(&o.windows)
        };
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            dec.push(0, i as i64, None, Some(line.as_bytes()))?;
            if dec.len() >= 8192 {
                fold(&mut dec, &mut out)?;
            }
        }
        fold(&mut dec, &mut out)?;
        max_ts = max_ts.max(engine.max_event_time().unwrap_or(i64::MIN));
    }
    // The end of the history closes every open window.
    if max_ts > i64::MIN {
        let o = engine.advance_watermark(max_ts + cfg.windows.window_ms + 1);
        out.write(&o.windows)?;
    }
    out.inner.finish()?;
    eprintln!(
        "exported {} windows from {events} events ({refused} refused) to {}",
        out.windows,
        args.out.display()
    );
    Ok(())
}

/// Run `train`.
pub fn train(cfg: &crate::Config, args: &TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.epochs > 0, "--epochs must be > 0");
    if args.fresh && args.out.exists() {
        std::fs::remove_file(&args.out)
            .with_context(|| format!("removing {}", args.out.display()))?;
    }
    let inf_cfg = InfConfig {
        model: "neural".into(),
        neural: NeuralConfig {
            checkpoint: Some(args.out.clone()),
            checkpoint_every_steps: 0,
            online_training: true,
            ..cfg.inference.neural.clone()
        },
        ..cfg.inference.clone()
    };
    let t = std::time::Instant::now();
    for epoch in 1..=args.epochs {
        let f = std::fs::File::open(&args.windows)
            .with_context(|| format!("opening {}", args.windows.display()))?;
        let reader = FileReader::try_new(f, None)?;
        // Each epoch replays the history from the start, through fresh
        // series state, continuing from the last epoch's weights.
        let mut inf = Inference::new(inf_cfg.clone(), cfg.windows.window_ms)?;
        let mut windows = 0;
        for batch in reader {
            let w = WindowBatch::try_from_batch(batch?)?;
            windows += w.len();
            inf.process(&w);
        }
        inf.checkpoint()?;
        let st = inf
            .train_stats()
            .context("the neural model reports its training")?;
        eprintln!(
            "epoch {epoch}: {windows} windows, model version {}, {} steps ({} rejected), loss {:.4} ({:.1}s)",
            st.version,
            st.steps,
            st.rejected,
            st.loss,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("saved {}", args.out.display());
    Ok(())
}
