//! Fixed-seed golden run: generated events through the window engine and
//! both forecasting models (baseline and ensemble) must give byte-identical
//! forecasts run after run. When a change to the models is intended, run
//! `SALESCAST_UPDATE_GOLDEN=1 cargo test -p salescast-tests --test golden`
//! and commit the new `tests/golden/forecasts.txt` with the change.

use std::fmt::Write;

use salescast_inference::{Config as InfConfig, Inference};
use salescast_loadgen::{Expect, GenConfig, Generator};
use salescast_stream_core::{batch_from_rows, Config, WindowEngine};

/// FNV-1a over the forecasts' JSON, and a few readable aggregates.
fn run(model: &str) -> String {
    let gen = Generator::new(GenConfig {
        seed: 2026,
        start_ms: 1_795_000_000_000,
        events_per_second: 20.0,
        skus: 200,
        ..GenConfig::default()
    });
    let mut engine = WindowEngine::new(Config::default()).expect("engine");
    let mut inf = Inference::new(
        InfConfig {
            model: model.into(),
            season_windows: 30,
            ..InfConfig::default()
        },
        60_000,
    )
    .expect("inference");
    let mut rows = Vec::new();
    let (mut hash, mut n, mut p50_sum) = (0xcbf2_9ce4_8422_2325u64, 0u64, 0f64);
    let mut fold = |windows: &salescast_stream_core::WindowBatch| {
        for f in inf.process(windows) {
            let json = serde_json::to_string(&f).expect("json");
            for b in json.bytes() {
                hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            n += 1;
            p50_sum += f.horizon[0].p50;
        }
    };
    for (i, r) in gen.take(120_000).enumerate() {
        if let Expect::Valid(v) = r.expect {
            rows.push(salescast::eval::event_row(v, i as i64));
        }
        if rows.len() == 5_000 {
            let out = engine.process(&batch_from_rows(&rows)).expect("process");
            rows.clear();
            fold(&out.windows);
        }
    }
    let out = engine.process(&batch_from_rows(&rows)).expect("process");
    fold(&out.windows);
    let out = engine.advance_watermark(i64::MAX / 4);
    fold(&out.windows);
    let mut s = String::new();
    writeln!(
        s,
        "{model} forecasts={n} sum_p50_1={p50_sum:.4} fnv1a={hash:016x}"
    )
    .expect("write");
    s
}

#[test]
fn fixed_seed_forecasts_are_reproducible() {
    let got = format!("{}{}", run("baseline"), run("ensemble"));
    assert_eq!(
        got,
        format!("{}{}", run("baseline"), run("ensemble")),
        "same run twice"
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/forecasts.txt");
    if std::env::var("SALESCAST_UPDATE_GOLDEN").is_ok() {
        std::fs::write(path, &got).expect("write golden");
        return;
    }
    let want =
        std::fs::read_to_string(path).expect("golden file (SALESCAST_UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        got, want,
        "forecasts changed; if intended, update the golden file"
    );
}
