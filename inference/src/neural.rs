//! The Candle model: one global quantile network shared by every series,
//! scored in one tensor pass per micro-batch and trained online.
//!
//! Each series becomes one feature row (see [`FeatureLayout`]): its last
//! `lags` windows, per horizon step its seasonal lags, hour-of-day and
//! day-of-week profiles and holiday flag, its EWMA levels, rolling standard
//! deviation, promo share, relative price, the calendar of the next window,
//! its hierarchy level, plus a hashed key embedding. Values are divided by
//! the series' rolling mean, so one network serves small and large series.
//!
//! The network is a residual MLP with a linear skip path. It predicts, per
//! step, a correction to the seasonal-naive value (p50) and two softplus
//! half-widths (p10 below, p90 above), so quantiles never cross. It trains
//! on the pinball loss with AdamW (written here, so its moments can be
//! checkpointed), global-norm gradient clipping, and a guard that rolls back
//! an update whose loss is not finite or jumps.

use std::path::{Path as FsPath, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Embedding, Linear, Module};
use serde::{Deserialize, Serialize};

use crate::features::{hour_of, month_of, weekday_of, Calendar};
use crate::{Error, Model, SeriesHistory};
use salescast_stream_core::Level;

/// Quantile levels the network predicts.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];
/// Width of the hashed key embedding.
pub const EMBED_DIM: usize = 8;
/// Checkpoint format version (bumped on an incompatible change).
const FORMAT: f64 = 1.0;

/// Configuration of the neural model (`[inference.neural]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NeuralConfig {
    /// Hidden width of the MLP.
    pub hidden: usize,
    /// Recent windows fed as lags.
    pub lags: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Training examples per mini-batch.
    pub batch_size: usize,
    /// One training step per this many new training pairs.
    pub examples_per_step: usize,
    /// At most this many training steps per processed micro-batch (bounds
    /// the training work when a burst of windows closes).
    pub max_steps_per_batch: usize,
    /// Training pairs kept in the replay buffer.
    pub replay_capacity: usize,
    /// Feature rows kept across all series while they wait for their
    /// horizon's actuals (bounds that memory; beyond it, windows yield no
    /// training pair).
    pub pending_budget: usize,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    /// An update is rolled back if the batch loss after it exceeds this
    /// factor times the running training loss.
    pub loss_jump: f64,
    /// Buckets of the hashed key embedding.
    pub key_buckets: usize,
    /// Seed of the initial weights and the replay sampling.
    pub seed: u64,
    /// Checkpoint file (safetensors): loaded on start when it exists, saved
    /// every `checkpoint-every-steps` accepted updates and on shutdown.
    pub checkpoint: Option<PathBuf>,
    /// Accepted training steps between checkpoints.
    pub checkpoint_every_steps: u64,
    /// Holiday calendar file: one `YYYY-MM-DD` per line.
    pub holidays_file: Option<PathBuf>,
    /// Whether the model keeps learning from closed windows.
    pub online_training: bool,
}

impl Default for NeuralConfig {
    fn default() -> Self {
        NeuralConfig {
            hidden: 64,
            lags: 24,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            batch_size: 128,
            examples_per_step: 8,
            max_steps_per_batch: 16,
            replay_capacity: 16_384,
            pending_budget: 65_536,
            clip_norm: 1.0,
            loss_jump: 8.0,
            key_buckets: 256,
            seed: 42,
            checkpoint: None,
            checkpoint_every_steps: 1000,
            holidays_file: None,
            online_training: true,
        }
    }
}

/// Column layout of a feature row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureLayout {
    /// Lags.
    pub lags: usize,
    /// Horizon steps.
    pub horizon: usize,
}

/// Per-step blocks of the row: seasonal lag, two seasons back, hour
/// profile, weekday profile, holiday flag, the hour profile times the
/// weekday's factor (multiplicative daily x weekly seasonality), and that
/// profile scaled by the recent deviation from it.
const STEP_BLOCKS: usize = 7;
/// Scalars after the step blocks: 3 EWMA, std, log scale, history length,
/// promo share, price, 6 calendar, 4 level one-hot.
const EXTRAS: usize = 18;

impl FeatureLayout {
    /// Row width.
    pub fn width(&self) -> usize {
        self.lags + STEP_BLOCKS * self.horizon + EXTRAS
    }

    /// Column of the first seasonal lag (the base of the p50 path).
    fn base_col(&self) -> usize {
        self.lags
    }
}

/// What the feature builder needs besides the series.
#[derive(Debug, Clone)]
pub struct FeatureContext {
    /// Row layout.
    pub layout: FeatureLayout,
    /// Season length in windows.
    pub season: usize,
    /// Window width, ms.
    pub window_ms: i64,
    /// Holidays.
    pub calendar: Calendar,
}

fn value_back(h: &SeriesHistory, back: usize) -> Option<f64> {
    let n = h.values.len();
    (back < n).then(|| h.values[n - 1 - back])
}

/// Append one series' feature row to `out`; returns its scale.
pub fn feature_row(h: &SeriesHistory, ctx: &FeatureContext, out: &mut Vec<f32>) -> f64 {
    let f = &h.feat;
    let scale = f.scale();
    let inv = 1.0 / scale;
    let fallback = f.ewma[1];
    let FeatureLayout { lags, horizon } = ctx.layout;
    let season = ctx.season.max(1);
    for i in 0..lags {
        out.push((value_back(h, i).unwrap_or(fallback) * inv) as f32);
    }
    let n = h.values.len();
    let seasonal = |s: usize, seasons: usize| -> Option<f64> {
        let back = seasons * season - 1 - s % season;
        (back < n).then(|| h.values[n - 1 - back])
    };
    let target = |s: usize| h.last_start + (s as i64 + 1) * ctx.window_ms;
    let last = value_back(h, 0).unwrap_or(fallback);
    for s in 0..horizon {
        out.push((seasonal(s, 1).unwrap_or(last) * inv) as f32);
    }
    for s in 0..horizon {
        let one = seasonal(s, 1).unwrap_or(last);
        out.push((seasonal(s, 2).unwrap_or(one) * inv) as f32);
    }
    for s in 0..horizon {
        out.push((f.hour_at(target(s), fallback) * inv) as f32);
    }
    for s in 0..horizon {
        out.push((f.dow_at(target(s), fallback) * inv) as f32);
    }
    for s in 0..horizon {
        out.push(ctx.calendar.is_holiday(target(s)) as u8 as f32);
    }
    let profile = f.profile(fallback);
    for s in 0..horizon {
        out.push((profile.at(target(s)) * inv) as f32);
    }
    // The same profile, scaled by how far the last windows ran above or
    // below their own profile (a promotion or shift that persists), the
    // deviation fading with the step.
    let (mut got, mut usual) = (0.0, 0.0);
    for back in 0..3usize.min(n) {
        got += h.values[n - 1 - back];
        usual += profile.at(h.last_start - back as i64 * ctx.window_ms);
    }
    let ratio = if usual > 0.0 {
        ((got + 1.0) / (usual + 1.0)).clamp(0.2, 5.0)
    } else {
        1.0
    };
    for s in 0..horizon {
        let fade = 0.8f64.powi(s as i32);
        out.push((profile.at(target(s)) * (1.0 + (ratio - 1.0) * fade) * inv) as f32);
    }
    for e in f.ewma {
        out.push((e * inv) as f32);
    }
    out.push((f.std() * inv) as f32);
    out.push((scale.ln() / 10.0) as f32);
    out.push((h.observed as f64 / season as f64).min(2.0) as f32 / 2.0);
    out.push(f.promo_share as f32);
    out.push((f.price_rel - 1.0) as f32);
    let t = target(0);
    let tau = std::f64::consts::TAU;
    for (v, period) in [
        (hour_of(t) as f64, 24.0),
        (weekday_of(t) as f64, 7.0),
        (month_of(t) as f64 - 1.0, 12.0),
    ] {
        out.push((tau * v / period).sin() as f32);
        out.push((tau * v / period).cos() as f32);
    }
    for l in Level::ALL {
        out.push((h.level_kind == l) as u8 as f32);
    }
    scale
}

/// FNV-1a of a series' level and key, for the hashed key embedding.
pub fn key_hash(level: Level, key: &str) -> u64 {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(level.code()).chain(key.bytes()) {
        x ^= b as u64;
        x = x.wrapping_mul(0x0100_0000_01b3);
    }
    x
}

/// A feature row waiting for the actuals of its horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The feature row.
    pub row: Box<[f32]>,
    /// Embedding bucket.
    pub bucket: u32,
    /// Scale the row was divided by.
    pub scale: f32,
    /// Windows the series had observed when the row was made.
    pub origin: u64,
}

/// A complete training pair: what was known at the origin, what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The feature row.
    pub row: Box<[f32]>,
    /// Embedding bucket.
    pub bucket: u32,
    /// The next `horizon` windows' units divided by the row's scale.
    pub target: Box<[f32]>,
}

/// Training and version counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TrainStats {
    /// Model version: accepted updates, including those of a loaded checkpoint.
    pub version: u64,
    /// Training steps attempted in this process.
    pub steps: u64,
    /// Updates rolled back by the guard.
    pub rejected: u64,
    /// Running (EWMA) training pinball loss, scaled units.
    pub loss: f64,
    /// Training pairs in the replay buffer.
    pub replay: usize,
    /// Series-windows scored.
    pub scored: u64,
}

/// Bounded ring of training pairs.
#[derive(Debug)]
struct Replay {
    cap: usize,
    items: Vec<Example>,
    next: usize,
}

impl Replay {
    fn push(&mut self, e: Example) {
        if self.items.len() < self.cap {
            self.items.push(e);
        } else {
            self.items[self.next] = e;
        }
        self.next = (self.next + 1) % self.cap.max(1);
    }
}

/// Deterministic xorshift64* generator (weights init and sampling).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The network's parameters, in a fixed order.
struct Params {
    names: Vec<&'static str>,
    vars: Vec<Var>,
}

const PARAM_NAMES: [&str; 9] = [
    "embed", "w1", "b1", "w2", "b2", "w_out", "b_out", "w_skip", "b_skip",
];

impl Params {
    fn init(
        input: usize,
        hidden: usize,
        out: usize,
        buckets: usize,
        rng: &mut Rng,
    ) -> Result<Params, Error> {
        let dev = Device::Cpu;
        let mut uni = |shape: (usize, usize), bound: f32| -> Result<Tensor, Error> {
            let v: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
                .collect();
            Ok(Tensor::from_vec(v, shape, &dev)?)
        };
        let x = input + EMBED_DIM;
        let h3 = out / 3;
        // The widths' bias starts where softplus gives half a scaled unit.
        let mut b_out = vec![0f32; out];
        for b in b_out.iter_mut().skip(h3) {
            *b = (0.5f32.exp() - 1.0).ln();
        }
        let tensors = vec![
            uni((buckets, EMBED_DIM), 0.1)?,
            uni((hidden, x), (1.0 / x as f32).sqrt())?,
            Tensor::zeros(hidden, DType::F32, &dev)?,
            uni((hidden, hidden), (1.0 / hidden as f32).sqrt())?,
            Tensor::zeros(hidden, DType::F32, &dev)?,
            Tensor::zeros((out, hidden), DType::F32, &dev)?,
            Tensor::from_vec(b_out, out, &dev)?,
            Tensor::zeros((out, x), DType::F32, &dev)?,
            Tensor::zeros(out, DType::F32, &dev)?,
        ];
        let vars = tensors
            .iter()
            .map(Var::from_tensor)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Params {
            names: PARAM_NAMES.to_vec(),
            vars,
        })
    }

    fn t(&self, i: usize) -> Tensor {
        self.vars[i].as_tensor().clone()
    }
}

fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    // relu(x) + ln(1 + exp(-|x|)), stable for large |x|.
    x.relu()?
        .add(&x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)
}

/// The global quantile network with its optimizer state.
pub struct Neural {
    cfg: NeuralConfig,
    ctx: FeatureContext,
    params: Params,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// AdamW step counter (bias correction).
    t: u64,
    stats: TrainStats,
    replay: Replay,
    fresh: usize,
    last_saved: u64,
    rng: Rng,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for Neural {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neural")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish()
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(e.to_string())
    }
}

impl Neural {
    /// A freshly initialised network for the given context; loads the
    /// configured checkpoint if the file exists.
    pub fn new(cfg: NeuralConfig, ctx: FeatureContext) -> Result<Neural, Error> {
        if cfg.hidden == 0 || cfg.batch_size == 0 || cfg.key_buckets == 0 {
            return Err(Error::Config(
                "inference.neural: hidden, batch-size and key-buckets must be > 0".into(),
            ));
        }
        if cfg.replay_capacity < cfg.batch_size || cfg.examples_per_step == 0 {
            return Err(Error::Config(
                "inference.neural: replay-capacity must be >= batch-size and examples-per-step > 0"
                    .into(),
            ));
        }
        let mut rng = Rng(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let out = 3 * ctx.layout.horizon;
        let params = Params::init(
            ctx.layout.width(),
            cfg.hidden,
            out,
            cfg.key_buckets,
            &mut rng,
        )?;
        let zeros = |v: &Var| Tensor::zeros(v.shape(), DType::F32, &Device::Cpu);
        let m = params
            .vars
            .iter()
            .map(zeros)
            .collect::<Result<Vec<_>, _>>()?;
        let v = params
            .vars
            .iter()
            .map(zeros)
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = Neural {
            replay: Replay {
                cap: cfg.replay_capacity,
                items: Vec::new(),
                next: 0,
            },
            cfg,
            ctx,
            params,
            m,
            v,
            t: 0,
            stats: TrainStats::default(),
            fresh: 0,
            last_saved: 0,
            rng,
            scratch: Vec::new(),
        };
        if let Some(path) = n.cfg.checkpoint.clone() {
            if path.exists() {
                n.load(&path)?;
            }
        }
        Ok(n)
    }

    /// Training and version counters.
    pub fn stats(&self) -> TrainStats {
        TrainStats {
            replay: self.replay.items.len(),
            ..self.stats
        }
    }

    /// The feature context (layout, season, calendar).
    pub fn context(&self) -> &FeatureContext {
        &self.ctx
    }

    fn bucket(&self, h: &SeriesHistory) -> u32 {
        (h.key_hash % self.cfg.key_buckets as u64) as u32
    }

    /// Forward pass: rows `(n, width)`, buckets `(n,)` -> (p10, p50, p90),
    /// each `(n, horizon)`, in scaled units.
    fn forward(&self, x: &Tensor, buckets: &Tensor) -> candle_core::Result<[Tensor; 3]> {
        let p = &self.params;
        let emb = Embedding::new(p.t(0), EMBED_DIM).forward(buckets)?;
        let xe = Tensor::cat(&[x, &emb], 1)?;
        let h1 = Linear::new(p.t(1), Some(p.t(2))).forward(&xe)?.relu()?;
        let h2 = (&h1 + Linear::new(p.t(3), Some(p.t(4))).forward(&h1)?.relu()?)?;
        let out = (Linear::new(p.t(5), Some(p.t(6))).forward(&h2)?
            + Linear::new(p.t(7), Some(p.t(8))).forward(&xe)?)?;
        let hz = self.ctx.layout.horizon;
        let base = x.narrow(1, self.ctx.layout.base_col(), hz)?;
        let p50 = (base + out.narrow(1, 0, hz)?)?;
        let p10 = (&p50 - softplus(&out.narrow(1, hz, hz)?)?)?;
        let p90 = (&p50 + softplus(&out.narrow(1, 2 * hz, hz)?)?)?;
        Ok([p10, p50, p90])
    }

    /// Mean pinball loss of predictions against targets `(n, horizon)`.
    pub fn pinball_loss(pred: &[Tensor; 3], y: &Tensor) -> candle_core::Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (q, f) in QUANTILES.iter().zip(pred) {
            let d = (y - f)?;
            let l = (d.relu()?.affine(*q, 0.0)? + d.neg()?.relu()?.affine(1.0 - q, 0.0)?)?;
            let l = l.mean_all()?;
            total = Some(match total {
                Some(t) => (t + l)?,
                None => l,
            });
        }
        total.expect("three quantiles").affine(1.0 / 3.0, 0.0)
    }

    /// Predict for raw rows (scaled units), one `[p10, p50, p90]` vector per
    /// step per row.
    pub fn predict_rows(&self, rows: &[f32], buckets: &[u32]) -> Result<Vec<Vec<[f32; 3]>>, Error> {
        let n = buckets.len();
        let hz = self.ctx.layout.horizon;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::from_slice(rows, (n, self.ctx.layout.width()), &Device::Cpu)?;
        let b = Tensor::from_slice(buckets, n, &Device::Cpu)?;
        let [p10, p50, p90] = self.forward(&x, &b)?;
        let (p10, p50, p90) = (
            p10.flatten_all()?.to_vec1::<f32>()?,
            p50.flatten_all()?.to_vec1::<f32>()?,
            p90.flatten_all()?.to_vec1::<f32>()?,
        );
        Ok((0..n)
            .map(|i| {
                (0..hz)
                    .map(|s| {
                        let k = i * hz + s;
                        [p10[k], p50[k], p90[k]]
                    })
                    .collect()
            })
            .collect())
    }

    fn batch_tensors(&self, batch: &[&Example]) -> Result<(Tensor, Tensor, Tensor), Error> {
        let w = self.ctx.layout.width();
        let hz = self.ctx.layout.horizon;
        let mut x = Vec::with_capacity(batch.len() * w);
        let mut y = Vec::with_capacity(batch.len() * hz);
        let mut b = Vec::with_capacity(batch.len());
        for e in batch {
            x.extend_from_slice(&e.row);
            y.extend_from_slice(&e.target);
            b.push(e.bucket);
        }
        let dev = Device::Cpu;
        Ok((
            Tensor::from_vec(x, (batch.len(), w), &dev)?,
            Tensor::from_vec(b, batch.len(), &dev)?,
            Tensor::from_vec(y, (batch.len(), hz), &dev)?,
        ))
    }

    /// The loss of the current parameters on a batch.
    pub fn loss_on(&self, batch: &[&Example]) -> Result<f64, Error> {
        let (x, b, y) = self.batch_tensors(batch)?;
        let pred = self.forward(&x, &b)?;
        Ok(Self::pinball_loss(&pred, &y)?.to_scalar::<f32>()? as f64)
    }

    /// One guarded AdamW step on a batch. Returns whether it was accepted.
    pub fn train_step(&mut self, batch: &[&Example]) -> Result<bool, Error> {
        let (x, b, y) = self.batch_tensors(batch)?;
        self.step_on(&x, &b, &y)
    }

    /// [`Neural::train_step`] on a batch already in tensors.
    fn step_on(&mut self, x: &Tensor, b: &Tensor, y: &Tensor) -> Result<bool, Error> {
        self.stats.steps += 1;
        let pred = self.forward(x, b)?;
        let loss = Self::pinball_loss(&pred, y)?;
        let before = loss.to_scalar::<f32>()? as f64;
        if !before.is_finite() {
            self.stats.rejected += 1;
            return Ok(false);
        }
        let grads = loss.backward()?;
        let mut gs = Vec::with_capacity(self.params.vars.len());
        let mut norm2 = 0f64;
        for var in &self.params.vars {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => g.clone(),
                None => Tensor::zeros(var.shape(), DType::F32, &Device::Cpu)?,
            };
            norm2 += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            gs.push(g);
        }
        let norm = norm2.sqrt();
        if !norm.is_finite() {
            self.stats.rejected += 1;
            return Ok(false);
        }
        let clip = if norm > self.cfg.clip_norm {
            self.cfg.clip_norm / norm
        } else {
            1.0
        };
        // Snapshot for the guard.
        let saved: Vec<Tensor> = self
            .params
            .vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<Result<_, _>>()?;
        let (saved_m, saved_v, saved_t) = (self.m.clone(), self.v.clone(), self.t);
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t as i32), 1.0 - b2.powi(self.t as i32));
        let lr = self.cfg.learning_rate;
        for (i, g) in gs.iter().enumerate() {
            let g = g.affine(clip, 0.0)?;
            let m = (self.m[i].affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
            let v = (self.v[i].affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let step =
                (m.affine(1.0 / c1, 0.0)? / v.affine(1.0 / c2, 0.0)?.sqrt()?.affine(1.0, eps)?)?;
            let var = &self.params.vars[i];
            let new = (var
                .as_tensor()
                .affine(1.0 - lr * self.cfg.weight_decay, 0.0)?
                - step.affine(lr, 0.0)?)?;
            var.set(&new)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        let pred = self.forward(x, b)?;
        let after = Self::pinball_loss(&pred, y)?.to_scalar::<f32>()? as f64;
        let reference = if self.stats.loss > 0.0 {
            self.stats.loss.max(before)
        } else {
            before
        };
        if !after.is_finite() || after > self.cfg.loss_jump * reference.max(1e-6) {
            for (var, old) in self.params.vars.iter().zip(&saved) {
                var.set(old)?;
            }
            self.m = saved_m;
            self.v = saved_v;
            self.t = saved_t;
            self.stats.rejected += 1;
            return Ok(false);
        }
        self.stats.version += 1;
        self.stats.loss = if self.stats.loss > 0.0 {
            0.98 * self.stats.loss + 0.02 * before
        } else {
            before
        };
        Ok(true)
    }

    fn sample_batch(&mut self) -> Vec<usize> {
        let n = self.replay.items.len();
        let k = self.cfg.batch_size.min(n);
        // Half the batch from the newest pairs, half from the whole buffer.
        let newest = (k / 2).min(self.fresh_window());
        let mut idx = Vec::with_capacity(k);
        for j in 0..newest {
            idx.push((self.replay.next + n - 1 - j) % n);
        }
        while idx.len() < k {
            idx.push(self.rng.below(n));
        }
        idx
    }

    fn fresh_window(&self) -> usize {
        (self.cfg.examples_per_step * self.cfg.max_steps_per_batch).min(self.replay.items.len())
    }

    /// Save weights, AdamW moments, the step counter and the model version
    /// as safetensors (written to a temporary file, then renamed).
    pub fn save(&mut self, path: &FsPath) -> Result<(), Error> {
        let mut map = std::collections::HashMap::new();
        for (i, name) in self.params.names.iter().enumerate() {
            map.insert(format!("param.{name}"), self.params.t(i));
            map.insert(format!("adam.m.{name}"), self.m[i].clone());
            map.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        let meta = [
            FORMAT,
            self.stats.version as f64,
            self.t as f64,
            self.stats.loss,
            self.ctx.layout.width() as f64,
            self.cfg.hidden as f64,
            self.ctx.layout.horizon as f64,
            self.cfg.key_buckets as f64,
        ];
        map.insert("meta".into(), Tensor::new(&meta[..], &Device::Cpu)?);
        let tmp = path.with_extension("safetensors.tmp");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Checkpoint(format!("{}: {e}", dir.display())))?;
        }
        candle_core::safetensors::save(&map, &tmp)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        self.last_saved = self.stats.version;
        Ok(())
    }

    /// Load a checkpoint written by [`Neural::save`] with the same shapes.
    pub fn load(&mut self, path: &FsPath) -> Result<(), Error> {
        let bad = |what: String| Error::Checkpoint(format!("{}: {what}", path.display()));
        let map =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        let meta = map
            .get("meta")
            .ok_or_else(|| bad("no meta tensor".into()))?
            .to_vec1::<f64>()?;
        let want = [
            FORMAT,
            self.ctx.layout.width() as f64,
            self.cfg.hidden as f64,
            self.ctx.layout.horizon as f64,
            self.cfg.key_buckets as f64,
        ];
        let have = [meta[0], meta[4], meta[5], meta[6], meta[7]];
        if meta.len() < 8 || have != want {
            return Err(bad(format!(
                "shape (format, width, hidden, horizon, buckets) {have:?} does not match the configured {want:?}"
            )));
        }
        let get = |k: String| -> Result<Tensor, Error> {
            map.get(&k)
                .cloned()
                .ok_or_else(|| bad(format!("missing tensor {k}")))
        };
        for (i, name) in self.params.names.clone().iter().enumerate() {
            let p = get(format!("param.{name}"))?;
            if p.shape() != self.params.vars[i].shape() {
                return Err(bad(format!("tensor {name} has shape {:?}", p.shape())));
            }
            self.params.vars[i].set(&p)?;
            self.m[i] = get(format!("adam.m.{name}"))?;
            self.v[i] = get(format!("adam.v.{name}"))?;
        }
        self.stats.version = meta[1] as u64;
        self.t = meta[2] as u64;
        self.stats.loss = meta[3];
        self.last_saved = self.stats.version;
        Ok(())
    }

    /// Save to the configured checkpoint, if any.
    pub fn checkpoint(&mut self) -> Result<(), Error> {
        match self.cfg.checkpoint.clone() {
            Some(p) if self.stats.version != self.last_saved => self.save(&p),
            _ => Ok(()),
        }
    }
}

/// Interval scale for an adaptive-conformal miscoverage `alpha`: the ratio of
/// normal quantiles `z(1 - alpha/2) / z(0.9)` (1 at the nominal 0.2).
pub fn width_multiplier(alpha: f64) -> f64 {
    normal_quantile(1.0 - alpha.clamp(1e-4, 0.99) / 2.0) / normal_quantile(0.9)
}

/// Inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const DD: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((DD[0] * q + DD[1]) * q + DD[2]) * q + DD[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl Model for Neural {
    fn name(&self) -> &'static str {
        "neural"
    }

    fn version(&self) -> u64 {
        self.stats.version
    }

    fn wants_examples(&self) -> bool {
        self.cfg.online_training
    }

    fn forecast(&mut self, histories: &[&SeriesHistory], horizon: usize) -> Vec<crate::Path> {
        debug_assert_eq!(horizon, self.ctx.layout.horizon);
        let w = self.ctx.layout.width();
        let mut rows = std::mem::take(&mut self.scratch);
        rows.clear();
        let mut buckets = Vec::with_capacity(histories.len());
        let mut scales = Vec::with_capacity(histories.len());
        for h in histories {
            scales.push(feature_row(h, &self.ctx, &mut rows));
            buckets.push(self.bucket(h));
        }
        self.stats.scored += histories.len() as u64;
        let preds = match self.predict_rows(&rows, &buckets) {
            Ok(p) => p,
            Err(e) => {
                // Not expected with well-formed rows; fall back to a flat
                // EWMA path rather than stall the stream.
                tracing::warn!(error = %e, "neural model: scoring failed; flat EWMA paths for this batch");
                histories
                    .iter()
                    .map(|h| {
                        let l = (h.feat.ewma[1] / h.feat.scale()) as f32;
                        vec![[l, l, l]; horizon]
                    })
                    .collect()
            }
        };
        let out = histories
            .iter()
            .zip(preds)
            .enumerate()
            .map(|(i, (h, steps))| {
                let scale = scales[i];
                let m = width_multiplier(h.alpha);
                let quantiles = steps
                    .into_iter()
                    .map(|[lo, mid, hi]| {
                        let p50 = mid as f64 * scale;
                        let p10 = (p50 - (mid - lo).max(0.0) as f64 * scale * m).max(0.0);
                        let p50 = p50.max(p10);
                        let p90 = (p50 + (hi - mid).max(0.0) as f64 * scale * m).max(p50);
                        [p10, p50, p90]
                    })
                    .collect();
                let example = (self.cfg.online_training && h.observed >= 2).then(|| Pending {
                    row: rows[i * w..(i + 1) * w].into(),
                    bucket: buckets[i],
                    scale: scale as f32,
                    origin: h.observed,
                });
                crate::Path {
                    model: "neural",
                    quantiles,
                    members: Vec::new(),
                    members_far: Vec::new(),
                    example,
                }
            })
            .collect();
        self.scratch = rows;
        out
    }

    fn learn(&mut self, examples: Vec<Example>) {
        if !self.cfg.online_training {
            return;
        }
        self.fresh += examples.len();
        for e in examples {
            self.replay.push(e);
        }
        if self.replay.items.len() < self.cfg.batch_size {
            return;
        }
        let steps = (self.fresh / self.cfg.examples_per_step).min(self.cfg.max_steps_per_batch);
        // Pairs beyond what the step budget covers are not carried over, so
        // a burst never builds a training backlog.
        self.fresh =
            (self.fresh - steps * self.cfg.examples_per_step).min(self.cfg.examples_per_step - 1);
        for _ in 0..steps {
            let idx = self.sample_batch();
            let batch: Vec<&Example> = idx.iter().map(|&i| &self.replay.items[i]).collect();
            let r = self
                .batch_tensors(&batch)
                .and_then(|(x, b, y)| self.step_on(&x, &b, &y));
            if let Err(e) = r {
                tracing::warn!(error = %e, "neural model: training step failed");
                self.stats.rejected += 1;
            }
        }
        if self.cfg.checkpoint_every_steps > 0
            && self.stats.version >= self.last_saved + self.cfg.checkpoint_every_steps
        {
            if let Err(e) = self.checkpoint() {
                tracing::warn!(error = %e, "neural model: checkpoint failed");
            }
        }
    }

    fn checkpoint(&mut self) -> Result<(), Error> {
        Neural::checkpoint(self)
    }

    fn train_stats(&self) -> Option<TrainStats> {
        Some(self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::pinball;
    use crate::{Config, Inference};
    use salescast_stream_core::{WindowBatch, WindowRecord};

    fn ctx(horizon: usize, season: usize) -> FeatureContext {
        FeatureContext {
            layout: FeatureLayout { lags: 8, horizon },
            season,
            window_ms: 3_600_000,
            calendar: Calendar::default(),
        }
    }

    fn rec(key: &str, i: i64, units: i64) -> WindowRecord {
        crate::tests::store_window(key, i * 3_600_000, 3_600_000, units)
    }

    /// Seasonal series with noise: several series of different sizes.
    fn noisy_seasonal(i: i64, k: usize, rng: &mut Rng) -> i64 {
        let pattern = [2.0, 1.0, 1.0, 3.0, 6.0, 8.0, 7.0, 4.0];
        let base = 10.0 * (k + 1) as f64 * pattern[i as usize % 8];
        let noise = (rng.uniform() as f64 - 0.5) * 0.6 * base;
        (base + noise).round().max(0.0) as i64
    }

    #[test]
    fn online_training_beats_seasonal_naive_on_a_noisy_seasonal_series() {
        let mk = |model: &str| {
            let cfg = Config {
                model: model.into(),
                horizon: 4,
                season_windows: 8,
                neural: NeuralConfig {
                    lags: 8,
                    batch_size: 64,
                    ..NeuralConfig::default()
                },
                ..Config::default()
            };
            Inference::new(cfg, 3_600_000).unwrap()
        };
        let (mut nn, mut sn) = (mk("neural"), mk("seasonal_naive"));
        let mut rng = Rng(99);
        let (mut e_nn, mut e_sn) = (0.0, 0.0);
        for i in 0..1500i64 {
            let recs: Vec<WindowRecord> = (0..6)
                .map(|k| rec(&format!("s{k}"), i, noisy_seasonal(i, k, &mut rng)))
                .collect();
            let b = WindowBatch::from_records(&recs);
            let (a, b2) = (nn.process(&b), sn.process(&b));
            if i >= 1000 {
                for (fa, fb) in a.iter().zip(&b2) {
                    let y = fa.actual.units as f64;
                    e_nn += (y - fa.expected.unwrap().p50).abs();
                    e_sn += (y - fb.expected.unwrap().p50).abs();
                }
            }
        }
        let st = nn.train_stats().unwrap();
        assert!(st.version > 100, "{st:?}");
        assert!(
            e_nn < 0.85 * e_sn,
            "neural MAE {e_nn} vs seasonal naive {e_sn}"
        );
    }

    #[test]
    fn pinball_loss_and_gradient_on_known_values() {
        // y = 10; predictions p10 = 8, p50 = 11, p90 = 15 (one row, one step).
        let dev = Device::Cpu;
        let y = Tensor::new(&[[10f32]], &dev).unwrap();
        let f: Vec<Var> = [8f32, 11.0, 15.0]
            .iter()
            .map(|v| Var::new(&[[*v]], &dev).unwrap())
            .collect();
        let pred = [
            f[0].as_tensor().clone(),
            f[1].as_tensor().clone(),
            f[2].as_tensor().clone(),
        ];
        let loss = Neural::pinball_loss(&pred, &y).unwrap();
        let want =
            (pinball(0.1, 10.0, 8.0) + pinball(0.5, 10.0, 11.0) + pinball(0.9, 10.0, 15.0)) / 3.0;
        assert!((want - (0.2 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        let g = loss.backward().unwrap();
        let grad = |i: usize| {
            g.get(f[i].as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
        };
        // d/df of pinball: -q when y > f, 1 - q when y < f; divided by 3.
        assert!((grad(0) - (-0.1 / 3.0)).abs() < 1e-6);
        assert!((grad(1) - (0.5 / 3.0)).abs() < 1e-6);
        assert!((grad(2) - (0.1 / 3.0)).abs() < 1e-6);
    }

    #[test]
    fn quantiles_never_cross_even_for_wild_inputs() {
        let cfg = NeuralConfig::default();
        let c = ctx(6, 8);
        let mut n = Neural::new(cfg, c.clone()).unwrap();
        let mut rng = Rng(5);
        // Push the parameters somewhere arbitrary with large steps.
        let w = c.layout.width();
        let examples: Vec<Example> = (0..256)
            .map(|_| Example {
                row: (0..w).map(|_| rng.uniform() * 20.0 - 10.0).collect(),
                bucket: rng.below(256) as u32,
                target: (0..6).map(|_| rng.uniform() * 50.0).collect(),
            })
            .collect();
        n.cfg.learning_rate = 0.5;
        n.cfg.loss_jump = f64::INFINITY;
        for _ in 0..20 {
            let batch: Vec<&Example> = examples.iter().collect();
            n.train_step(&batch).unwrap();
        }
        let rows: Vec<f32> = (0..200 * w)
            .map(|_| rng.uniform() * 200.0 - 100.0)
            .collect();
        let buckets: Vec<u32> = (0..200).map(|i| i as u32).collect();
        for steps in n.predict_rows(&rows, &buckets).unwrap() {
            for [lo, mid, hi] in steps {
                assert!(lo <= mid && mid <= hi, "{lo} {mid} {hi}");
            }
        }
    }

    #[test]
    fn checkpoint_round_trip_restores_predictions_and_the_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let c = ctx(4, 8);
        let w = c.layout.width();
        let mut rng = Rng(11);
        let examples: Vec<Example> = (0..64)
            .map(|_| Example {
                row: (0..w).map(|_| rng.uniform()).collect(),
                bucket: rng.below(256) as u32,
                target: (0..4).map(|_| rng.uniform() * 2.0).collect(),
            })
            .collect();
        let batch: Vec<&Example> = examples.iter().collect();
        let mut a = Neural::new(NeuralConfig::default(), c.clone()).unwrap();
        for _ in 0..5 {
            assert!(a.train_step(&batch).unwrap());
        }
        a.save(&path).unwrap();
        let mut b = Neural::new(
            NeuralConfig {
                seed: 777, // different initial weights, replaced by the checkpoint
                checkpoint: Some(path.clone()),
                ..NeuralConfig::default()
            },
            c,
        )
        .unwrap();
        assert_eq!(b.stats().version, 5);
        let rows: Vec<f32> = examples
            .iter()
            .flat_map(|e| e.row.iter().copied())
            .collect();
        let buckets: Vec<u32> = examples.iter().map(|e| e.bucket).collect();
        assert_eq!(
            a.predict_rows(&rows, &buckets).unwrap(),
            b.predict_rows(&rows, &buckets).unwrap()
        );
        // The next step uses the restored AdamW moments: identical results.
        a.train_step(&batch).unwrap();
        b.train_step(&batch).unwrap();
        assert_eq!(
            a.predict_rows(&rows, &buckets).unwrap(),
            b.predict_rows(&rows, &buckets).unwrap()
        );
        // A checkpoint of another shape is refused with a clear error.
        let other = Neural::new(
            NeuralConfig {
                hidden: 32,
                checkpoint: Some(path),
                ..NeuralConfig::default()
            },
            ctx(4, 8),
        );
        assert!(matches!(other, Err(Error::Checkpoint(_))));
    }

    #[test]
    fn guard_rolls_back_an_update_that_makes_the_loss_jump() {
        let c = ctx(4, 8);
        let w = c.layout.width();
        let mut n = Neural::new(NeuralConfig::default(), c).unwrap();
        let mut rng = Rng(3);
        let ex: Vec<Example> = (0..64)
            .map(|_| Example {
                row: (0..w).map(|_| rng.uniform()).collect(),
                bucket: 1,
                target: (0..4).map(|_| rng.uniform()).collect(),
            })
            .collect();
        let batch: Vec<&Example> = ex.iter().collect();
        assert!(n.train_step(&batch).unwrap());
        let before = n.loss_on(&batch).unwrap();
        // A huge learning rate overshoots: the guard must restore the weights.
        n.cfg.learning_rate = 1e6;
        n.cfg.clip_norm = 1e9;
        assert!(!n.train_step(&batch).unwrap());
        assert_eq!(n.stats().rejected, 1);
        assert_eq!(n.stats().version, 1);
        assert_eq!(n.loss_on(&batch).unwrap(), before);
        // A NaN target is refused before any update.
        let mut bad = ex[0].clone();
        bad.target[0] = f32::NAN;
        assert!(!n.train_step(&[&bad]).unwrap());
        assert_eq!(n.loss_on(&batch).unwrap(), before);
    }

    #[test]
    fn width_multiplier_is_one_at_the_nominal_level() {
        assert!((width_multiplier(0.2) - 1.0).abs() < 1e-9);
        assert!(width_multiplier(0.05) > 1.5);
        assert!(width_multiplier(0.5) < 1.0);
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
    }
}
