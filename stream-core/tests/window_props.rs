//! Property tests: the incremental window state equals a naive recomputation
//! over the accepted events, whatever the arrival order and batching.

use std::collections::BTreeMap;

use proptest::prelude::*;
use salescast_stream_core::window::to_micros;
use salescast_stream_core::{
    batch_from_rows, series_key, Config, EventRow, Level, RejectReason, WindowAgg, WindowEngine,
};

const W: i64 = 60_000;

type Key = (Level, String, i64);
type Emitted = BTreeMap<Key, (u32, WindowAgg)>;

/// One sale of one unit of sku `a` in store `s`.
fn row(partition: i32, ts: i64, offset: i64) -> EventRow {
    EventRow {
        event_id: format!("{partition}-{offset}-{ts}"),
        ts_ms: ts,
        sku: "a".into(),
        store: "s".into(),
        category: "c".into(),
        qty: 1,
        unit_price: 1.0,
        promo: false,
        customer_id: None,
        partition,
        offset,
    }
}

fn naive(events: &[EventRow]) -> BTreeMap<Key, WindowAgg> {
    let mut m: BTreeMap<Key, WindowAgg> = BTreeMap::new();
    for e in events {
        let start = e.ts_ms.div_euclid(W) * W;
        for l in Level::ALL {
            let k = series_key(l, &e.sku, &e.store, &e.category);
            m.entry((l, k, start))
                .or_default()
                .add(e.qty, to_micros(e.unit_price), e.promo);
        }
    }
    m
}

fn arb_event() -> impl Strategy<Value = (i64, u8, u8, i64, u32, bool)> {
    (
        0i64..(8 * W),
        0u8..6,
        0u8..3,
        prop_oneof![-3i64..=-1, 1i64..=5],
        0u32..10_000,
        any::<bool>(),
    )
}

fn build(raw: Vec<(i64, u8, u8, i64, u32, bool)>) -> Vec<EventRow> {
    raw.into_iter()
        .enumerate()
        .map(|(i, (ts, sku, store, qty, cents, promo))| EventRow {
            event_id: format!("e{i}"),
            ts_ms: ts,
            sku: format!("sku{sku}"),
            store: format!("st{store}"),
            category: format!("cat{}", sku % 2),
            qty,
            unit_price: cents as f64 / 100.0,
            promo,
            customer_id: None,
            partition: (i % 3) as i32,
            offset: 0,
        })
        .collect()
}

/// Feed `events` in order, in batches of the given sizes; assign offsets per
/// partition in arrival order. Returns the last revision of every emitted
/// window and the rows refused, plus a check that revisions respect lateness.
fn run(
    cfg: Config,
    mut events: Vec<EventRow>,
    sizes: &[usize],
) -> (Emitted, Vec<EventRow>, Vec<EventRow>) {
    let mut next = [0i64; 3];
    for e in events.iter_mut() {
        e.offset = next[e.partition as usize];
        next[e.partition as usize] += 1;
    }
    let mut eng = WindowEngine::new(cfg.clone()).unwrap();
    let mut emitted: BTreeMap<Key, (u32, WindowAgg)> = BTreeMap::new();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    let mut i = 0;
    let mut k = 0;
    let mut wm_before: Option<i64> = None;
    let mut record = |out: salescast_stream_core::Output, wm_before: Option<i64>| {
        for r in out.windows.records() {
            if r.revision > 0 {
                let wmb = wm_before.expect("a revision needs a fired window");
                assert!(
                    r.end_ms + cfg.allowed_lateness_ms > wmb,
                    "revision beyond lateness"
                );
            }
            let key = (r.level, r.key.to_string(), r.start_ms);
            if let Some((rev, _)) = emitted.get(&key) {
                assert_eq!(*rev + 1, r.revision, "revisions are consecutive");
            } else {
                assert_eq!(r.revision, 0, "first emission is revision 0");
            }
            emitted.insert(key, (r.revision, r.agg));
        }
        out.watermark
    };
    while i < events.len() {
        let n = sizes[k % sizes.len()].max(1).min(events.len() - i);
        k += 1;
        let chunk = &events[i..i + n];
        let out = eng.process(&batch_from_rows(chunk)).unwrap();
        let rej: Vec<usize> = out.rejects.iter().map(|(r, _)| *r).collect();
        for (row, reason) in &out.rejects {
            assert!(matches!(
                reason,
                RejectReason::Late | RejectReason::TooFarAhead
            ));
            refused.push(chunk[*row].clone());
        }
        for (j, e) in chunk.iter().enumerate() {
            if !rej.contains(&j) {
                accepted.push(e.clone());
            }
        }
        assert_eq!(out.accepted + out.rejects.len() + out.replayed, n);
        wm_before = record(out, wm_before);
        i += n;
    }
    // Drain: everything fires.
    let out = eng.advance_watermark(i64::MAX / 4);
    record(out, wm_before);
    // Nothing held back once all fired.
    for (p, o) in eng.commit_positions() {
        assert_eq!(o, next[p as usize]);
    }
    // Zero windows (a dense series' silent window, lines 0) hold no event:
    // the naive recomputation has no entry for them.
    emitted.retain(|_, (_, a)| a.lines != 0);
    (emitted, accepted, refused)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With lateness long enough for everything, shuffled arrival and any
    /// batching give exactly the naive windows, and sums are conserved.
    #[test]
    fn shuffled_arrival_equals_naive(
        raw in prop::collection::vec(arb_event(), 1..300),
        seed in any::<u64>(),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let events = build(raw);
        let mut shuffled = events.clone();
        // Deterministic Fisher-Yates from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let cfg = Config { allowed_lateness_ms: 100 * W, ..Config::default() };
        let (emitted, accepted, refused) = run(cfg, shuffled, &sizes);
        prop_assert!(refused.is_empty());
        prop_assert_eq!(accepted.len(), events.len());
        let want = naive(&events);
        let got: BTreeMap<Key, WindowAgg> = emitted.into_iter().map(|(k, (_, a))| (k, a)).collect();
        prop_assert_eq!(&got, &want);
        // Conservation per level: every event in exactly one window per level.
        for l in Level::ALL {
            let lines: i64 = got.iter().filter(|(k, _)| k.0 == l).map(|(_, a)| a.lines).sum();
            let units: i64 = got.iter().filter(|(k, _)| k.0 == l).map(|(_, a)| a.units).sum();
            prop_assert_eq!(lines, events.len() as i64);
            prop_assert_eq!(units, events.iter().map(|e| e.qty).sum::<i64>());
        }
    }

    /// With short lateness some events are refused as late; the final windows
    /// still equal the naive windows over exactly the accepted events, and
    /// revisions only happen within the allowed lateness.
    #[test]
    fn late_events_refused_and_rest_conserved(
        raw in prop::collection::vec(arb_event(), 1..300),
        sizes in prop::collection::vec(1usize..32, 1..8),
        lateness in 0i64..(2 * W),
    ) {
        let events = build(raw);
        let cfg = Config { allowed_lateness_ms: lateness, out_of_orderness_ms: 1_000, ..Config::default() };
        let (emitted, accepted, refused) = run(cfg, events.clone(), &sizes);
        prop_assert_eq!(accepted.len() + refused.len(), events.len());
        let want = naive(&accepted);
        let got: BTreeMap<Key, WindowAgg> = emitted.into_iter().map(|(k, (_, a))| (k, a)).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn window_fires_on_watermark_and_revises_late_event() {
    let cfg = Config {
        out_of_orderness_ms: 0,
        allowed_lateness_ms: W,
        ..Config::default()
    };
    let mut eng = WindowEngine::new(cfg).unwrap();
    let ev = |_id: &str, ts: i64, off: i64| EventRow {
        unit_price: 2.5,
        ..row(0, ts, off)
    };
    let out = eng.process(&batch_from_rows(&[ev("1", 1_000, 0)])).unwrap();
    assert_eq!(out.windows.len(), 0);
    assert_eq!(
        eng.commit_positions(),
        vec![(0, 0)],
        "held by the open window"
    );
    let out = eng.process(&batch_from_rows(&[ev("2", W + 1, 1)])).unwrap();
    assert_eq!(out.fired, 4, "one window per level");
    assert_eq!(eng.commit_positions(), vec![(0, 1)]);
    // Late but within lateness: revision 1 of the first window.
    let out = eng.process(&batch_from_rows(&[ev("3", 2_000, 2)])).unwrap();
    assert_eq!(out.revisions, 4);
    let r = out.windows.record(0);
    assert_eq!((r.start_ms, r.revision, r.agg.units), (0, 1, 2));
    // Watermark moves two windows on: the first window's lateness expires.
    let out = eng.process(&batch_from_rows(&[ev("4", 3 * W, 3)])).unwrap();
    assert_eq!(out.fired, 4);
    let out = eng.process(&batch_from_rows(&[ev("5", 10, 4)])).unwrap();
    assert_eq!(out.rejects, vec![(0, RejectReason::Late)]);
    // Far ahead of the watermark.
    let out = eng
        .process(&batch_from_rows(&[ev("6", 3 * W + 2 * 3_600_000, 5)]))
        .unwrap();
    assert_eq!(out.rejects, vec![(0, RejectReason::TooFarAhead)]);
}

#[test]
fn idle_partition_does_not_hold_the_watermark() {
    let cfg = Config {
        out_of_orderness_ms: 0,
        ..Config::default()
    };
    let mut eng = WindowEngine::new(cfg).unwrap();
    let ev = |p: i32, ts: i64| row(p, ts, 0);
    eng.process(&batch_from_rows(&[ev(0, 10), ev(1, 10)]))
        .unwrap();
    let out = eng.process(&batch_from_rows(&[ev(0, 5 * W)])).unwrap();
    assert_eq!(out.fired, 0, "partition 1 holds the watermark at 10");
    eng.set_idle(1, true);
    let out = eng.tick();
    assert_eq!(out.fired, 4);
    assert_eq!(out.watermark, Some(5 * W));
}

#[test]
fn bogus_future_timestamp_at_start_does_not_poison_the_watermark() {
    let mut eng = WindowEngine::new(Config::default()).unwrap();
    let ev = |ts: i64, off: i64| row(0, ts, off);
    let day = 86_400_000;
    let out = eng
        .process(&batch_from_rows(&[
            ev(1_000, 0),
            ev(10 * day, 1),
            ev(2_000, 2),
        ]))
        .unwrap();
    assert_eq!(out.rejects, vec![(1, RejectReason::TooFarAhead)]);
    assert_eq!(out.accepted, 2);
    assert!(eng.watermark().unwrap() < day);
}

#[test]
fn assigned_partition_without_data_holds_the_watermark() {
    let cfg = Config {
        out_of_orderness_ms: 0,
        ..Config::default()
    };
    let mut eng = WindowEngine::new(cfg).unwrap();
    eng.assign(&[0, 1]);
    let ev = |p: i32, ts: i64| row(p, ts, 0);
    let out = eng
        .process(&batch_from_rows(&[ev(0, 10), ev(0, 5 * W)]))
        .unwrap();
    assert_eq!(out.fired, 0);
    assert_eq!(out.watermark, None, "partition 1 has not been read yet");
    // Partition 1 catches up from far behind: nothing of it is late.
    let out = eng.process(&batch_from_rows(&[ev(1, 20)])).unwrap();
    assert!(out.rejects.is_empty());
    assert_eq!(out.watermark, Some(20));
    eng.set_idle(1, true);
    assert_eq!(eng.tick().watermark, Some(5 * W));
}

#[test]
fn replay_floor_skips_windows_emitted_before_a_restart() {
    let mut eng = WindowEngine::new(Config::default()).unwrap();
    eng.set_replay_floor(0, 2 * W);
    let ev = |ts: i64, off: i64| row(0, ts, off);
    let out = eng
        .process(&batch_from_rows(&[
            ev(W + 5, 0),
            ev(2 * W + 1, 1),
            ev(W + 9, 2),
        ]))
        .unwrap();
    assert_eq!((out.replayed, out.accepted), (2, 1));
    assert!(out.rejects.is_empty());
    let out = eng.advance_watermark(10 * W);
    assert_eq!(
        out.windows.record(0).start_ms,
        2 * W,
        "only the window after the floor"
    );
    assert_eq!(eng.commit_positions(), vec![(0, 3)]);
}

#[test]
fn a_sparse_backlog_spanning_hours_in_one_batch_is_not_too_far_ahead() {
    let mut eng = WindowEngine::new(Config::default()).unwrap();
    // One event a minute for five hours, all in one batch.
    let rows: Vec<EventRow> = (0..300).map(|i| row(0, i * W, i)).collect();
    let out = eng.process(&batch_from_rows(&rows)).unwrap();
    assert!(
        out.rejects.is_empty(),
        "{:?}",
        &out.rejects[..out.rejects.len().min(3)]
    );
    assert_eq!(out.accepted, 300);
    // A bogus jump of two days is still refused.
    let mut bogus = rows[0].clone();
    bogus.ts_ms = 300 * W + 2 * 86_400_000;
    bogus.offset = 300;
    let out = eng.process(&batch_from_rows(&[bogus])).unwrap();
    assert_eq!(out.rejects, vec![(0, RejectReason::TooFarAhead)]);
}

#[test]
fn idle_series_are_forgotten_after_the_ttl_and_come_back_fresh() {
    let cfg = Config {
        out_of_orderness_ms: 0,
        series_ttl_ms: 10 * W,
        ..Config::default()
    };
    let mut eng = WindowEngine::new(cfg).unwrap();
    let mut other = row(0, 0, 0);
    other.sku = "b".into();
    other.store = "t".into();
    eng.process(&batch_from_rows(&[row(0, 0, 1), other]))
        .unwrap();
    // total, 2 stores, 2 category x store, 2 sku x store
    assert_eq!(eng.series_count(), 7);
    // Only sku a in store s keeps selling for a long time.
    for i in 1..40 {
        eng.process(&batch_from_rows(&[row(0, i * W, i + 1)]))
            .unwrap();
    }
    assert_eq!(
        eng.series_count(),
        4,
        "store t and its series were forgotten"
    );
    // Store t comes back: a fresh series, counted correctly.
    let mut back = row(0, 40 * W, 100);
    back.sku = "b".into();
    back.store = "t".into();
    back.qty = 3;
    eng.process(&batch_from_rows(&[back])).unwrap();
    assert_eq!(eng.series_count(), 7);
    let out = eng.advance_watermark(100 * W);
    let t: Vec<_> = out
        .windows
        .records()
        .filter(|r| r.level == Level::Store && &*r.key == "t")
        .collect();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].start_ms, t[0].agg.units), (40 * W, 3));
}

#[test]
fn a_dense_series_that_goes_silent_gets_zero_windows() {
    let run = |min_active: u32| {
        let mut eng = WindowEngine::new(Config {
            out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            zero_fill_min_active: min_active,
            ..Config::default()
        })
        .unwrap();
        let mut zeros = Vec::new();
        let mut offset = 0;
        for w in 0..20i64 {
            let mut rows = Vec::new();
            // Store st0 sells every window; st1 sells until window 9, then stops.
            for (p, store) in [(0, "st0"), (0, "st1")] {
                if store == "st1" && w >= 10 {
                    continue;
                }
                let mut r = row(p, w * W + 1, offset);
                r.store = store.into();
                rows.push(r);
                offset += 1;
            }
            let out = eng.process(&batch_from_rows(&rows)).unwrap();
            zeros.extend(
                out.windows
                    .records()
                    .filter(|r| r.agg.lines == 0)
                    .map(|r| (r.level, r.key.to_string(), r.start_ms / W)),
            );
        }
        zeros
    };
    let zeros = run(6);
    let st1: Vec<i64> = zeros
        .iter()
        .filter(|z| z.0 == Level::Store && z.1 == "st1")
        .map(|z| z.2)
        .collect();
    // Windows 10.. close empty for st1 while it was dense (6 of the last 8
    // windows active): 10, 11 and 12; then it counts as gone quiet.
    assert_eq!(st1, vec![10, 11, 12]);
    assert!(zeros.iter().all(|z| z.1 != "st0"), "{zeros:?}");
    assert!(run(0).is_empty(), "zero fill off");
}
