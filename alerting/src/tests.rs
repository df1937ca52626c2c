//! Unit tests of the detectors, grouping, revisions and cooldowns.

use super::*;
use crate::trend::Checked;
use salescast_inference::{Actual, HorizonPoint};

fn fc(start: i64, units: i64, p10: f64, p50: f64, p90: f64) -> Forecast {
    Forecast {
        id: String::new(),
        level: Level::Store,
        key: "web-uk".into(),
        window_start_ms: start,
        window_end_ms: start + 60_000,
        revision: 0,
        actual: Actual {
            units,
            returns: 0,
            lines: units,
            revenue: 0.0,
            avg_price: None,
            promo_share: 0.0,
        },
        history_windows: 100,
        expected: Some(HorizonPoint {
            start_ms: start,
            end_ms: start + 60_000,
            p10,
            p50,
            p90,
        }),
        model: "ewma".into(),
        model_version: 0,
        parent: None,
        horizon: vec![],
    }
}

#[test]
fn spike_drop_zero_and_quiet() {
    let mut a = Alerting::new(Config::default()).unwrap();
    assert!(a.process(&[fc(0, 42, 31.0, 42.0, 55.0)]).is_empty());
    let s = a.process(&[fc(60_000, 200, 31.0, 42.0, 55.0)]);
    assert_eq!(s[0].kind, AlertKind::Spike);
    assert_eq!(s[0].id, "store:web-uk:spike:60000");
    let z = a.process(&[fc(120_000, 0, 31.0, 42.0, 55.0)]);
    assert_eq!(z[0].kind, AlertKind::DropToZero);
    assert_eq!(z[0].severity, Severity::High);
    assert_eq!(
        z[0].explanation,
        "store web-uk units 0 in 1970-01-01 00:02-00:03 UTC, expected 42 (31-55)"
    );
    let d = a.process(&[fc(180_000, 5, 31.0, 42.0, 55.0)]);
    assert_eq!(d[0].kind, AlertKind::Drop);
}

#[test]
fn a_zero_is_no_drop_to_zero_where_zeros_are_usual() {
    // A series that sells in bursts (zero in most windows) whose forecast
    // still expects the last burst to go on: a zero is business as usual.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut kinds = Vec::new();
    for i in 0..300i64 {
        let burst = i % 10 == 0;
        let y = if burst { 40 } else { 0 };
        let (p10, p50, p90) = if i % 10 == 1 {
            (20.0, 40.0, 60.0) // right after a burst
        } else {
            (0.0, 4.0, 20.0)
        };
        let alerts = a.process(&[fc(i * 60_000, y, p10, p50, p90)]);
        // (Once its history shows how often it sells nothing.)
        if i >= 50 {
            kinds.extend(alerts.iter().map(|x| x.kind));
        }
    }
    assert!(!kinds.contains(&AlertKind::DropToZero), "{kinds:?}");
    // A series that always sells does get one.
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..300i64 {
        assert!(a
            .process(&[fc(i * 60_000, 40 + i % 3, 31.0, 41.0, 52.0)])
            .is_empty());
    }
    let z = a.process(&[fc(300 * 60_000, 0, 31.0, 41.0, 52.0)]);
    assert_eq!(z[0].kind, AlertKind::DropToZero);
}

#[test]
fn a_run_of_zeros_is_one_drop_to_zero_once_the_run_is_sure() {
    // A series that sells about 8 a window: one zero window is a 1-in-
    // 3,000 event, not an outage (each alone expects less than the
    // 20 `min-expected-for-zero` asks); three in a row are one.
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..200i64 {
        assert!(a
            .process(&[fc(i * 60_000, 7 + i % 3, 5.0, 8.0, 11.0)])
            .is_empty());
    }
    let mut at = Vec::new();
    for i in 200..210i64 {
        for x in a.process(&[fc(i * 60_000, 0, 5.0, 8.0, 11.0)]) {
            at.push((i - 200, x.kind));
        }
    }
    assert_eq!(
        at,
        vec![(2, AlertKind::DropToZero)],
        "one alert, on the third window"
    );
}

#[test]
fn bursts_within_the_usual_range_raise_nothing() {
    // A series selling about 41 a window that bursts to 90 every 20
    // windows (5% of them), then once to 200, then dips to 5.
    let run = |windows: u32| {
        let cfg = Config {
            usual_range_windows: windows,
            ..Config::default()
        };
        let units = |i: i64| match i {
            150 => 200,
            170 => 5,
            _ if i % 20 == 0 && i > 0 => 90,
            _ => 40 + i % 3,
        };
        at_41(cfg, 200, units)
    };
    // Off (the default): every burst is a spike.
    let off = run(0);
    assert_eq!(off.len(), 11, "{off:?}");
    // On: the first burst is beyond everything before it; from the second
    // on, more than 2% of the windows kept burst as high, and only what
    // leaves that range, up or down, is news.
    assert_eq!(
        run(1000),
        vec![
            (20, AlertKind::Spike),
            (150, AlertKind::Spike),
            (170, AlertKind::Drop)
        ]
    );
    // Bursts older than the range's span are forgotten: with 15 windows
    // kept, none of them holds the burst before, and each is news again,
    // but for the one at 160: the 200 ten windows before is in its span.
    let short = run(15);
    assert_eq!(short.len(), 10, "{short:?}");
    assert!(!short.contains(&(160, AlertKind::Spike)), "{short:?}");
    assert!(off.contains(&(160, AlertKind::Spike)), "{off:?}");
    assert!(Alerting::new(Config {
        usual_range_share: 1.0,
        ..Config::default()
    })
    .is_err());
}

#[test]
fn a_level_shift_a_week_after_the_same_one_is_the_weekly_shape() {
    // Periods of an hour (60 one-minute windows), so a week is 420
    // windows. The series doubles for 30 windows at window 100, and again
    // a week later at 520 (or, the second time, two hours later than that).
    let run = |second: i64| {
        let cfg = Config {
            recurring_period_ms: 3_600_000,
            ..Config::default()
        };
        let units = |i: i64| {
            let up = (100..130).contains(&i) || (second..second + 30).contains(&i);
            if up {
                82 + i % 3
            } else {
                40 + i % 3
            }
        };
        banded(&mut Alerting::new(cfg).unwrap(), 0..700, units, AT_41)
            .into_iter()
            .filter(|x| x.status == Status::Open && x.kind == AlertKind::LevelShift)
            .map(|x| x.window_start_ms / 60_000)
            .collect::<Vec<_>>()
    };
    let first = run(700);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!((100..110).contains(&first[0]), "{first:?}");
    // A week on: silent.
    assert_eq!(run(520), first);
    // Two hours off the week: news.
    let later = run(640);
    assert_eq!(later.len(), 2, "{later:?}");
    // A week after the middle of the first (its windows go on as the
    // call's, they are no calls): news.
    let mid = run(535);
    assert_eq!(mid.len(), 2, "{mid:?}");
}

#[test]
fn cooldown_suppresses_repeats() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut n = 0;
    for i in 0..10 {
        n += a.process(&[fc(i * 60_000, 200, 31.0, 42.0, 55.0)]).len();
    }
    assert_eq!(n, 2, "alerts at windows 0 and 6 only");
}

#[test]
fn a_far_stronger_alert_breaks_through_the_incident_cooldown() {
    let run = |escalation: f64| {
        let cfg = Config {
            incident_cooldown_windows: 50,
            incident_escalation: escalation,
            ..Config::default()
        };
        // A spike at 10, one about as strong at 20, one far stronger at 30.
        let units = |i: i64| match i {
            10 | 20 => 90,
            30 => 400,
            _ => 40 + i % 3,
        };
        at_41(cfg, 60, units)
    };
    assert_eq!(
        run(4.0),
        vec![(10, AlertKind::Spike), (30, AlertKind::Spike)]
    );
    assert_eq!(run(0.0), vec![(10, AlertKind::Spike)], "off");
    assert!(Alerting::new(Config {
        incident_escalation: 0.5,
        ..Config::default()
    })
    .is_err());
}

/// A forecast of any series with a given band and parent.
fn node(
    level: Level,
    key: &str,
    parent: Option<&str>,
    start: i64,
    units: i64,
    p50: f64,
) -> Forecast {
    let mut f = fc(start, units, p50 * 0.9 - 1.0, p50, p50 * 1.1 + 1.0);
    f.level = level;
    f.key = key.into();
    f.parent = parent.map(Arc::from);
    f.actual.avg_price = Some(10.0);
    f
}

/// Feed a series (level, key, its parent's key, forecast median) and one
/// child of it (level, key, median) 140 one-minute windows, selling
/// `units(i)` (the parent's, the child's) in window `i`; the alerts raised.
fn parent_and_child(
    (level, key, up, p50): (Level, &str, &str, f64),
    (child_level, child, child_p50): (Level, &str, f64),
    units: impl Fn(i64) -> (i64, i64),
) -> Vec<Alert> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..140i64 {
        let t = i * 60_000;
        let (y, child_y) = units(i);
        got.extend(a.process(&[
            node(level, key, Some(up), t, y, p50),
            node(child_level, child, Some(key), t, child_y, child_p50),
        ]));
    }
    got
}

/// Each alert's kind and window start, in minutes.
fn kinds_by_minute(got: &[Alert]) -> Vec<(AlertKind, i64)> {
    got.iter()
        .map(|a| (a.kind, a.window_start_ms / 60_000))
        .collect()
}

/// The next draw of a fixed-seed linear congruential generator with state
/// `s` (its high 31 bits): noise that is the same on every run.
pub(crate) fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *s >> 33
}

/// Deterministic noise in [-4, 4].
fn wobble(i: i64) -> i64 {
    ((i * 7919) % 9) - 4
}

/// Alerting with a 60-window "day" (of one-minute windows) as its
/// recurring period.
fn sixty_window_day() -> Alerting {
    Alerting::new(Config {
        recurring_period_ms: 3_600_000,
        ..Config::default()
    })
    .unwrap()
}

/// Feed `a` one store's windows `range` (a minute each) selling
/// `units(i)` against the same band (p10, p50, p90) every window; the
/// alerts raised.
fn banded(
    a: &mut Alerting,
    range: std::ops::Range<i64>,
    units: impl Fn(i64) -> i64,
    (p10, p50, p90): (f64, f64, f64),
) -> Vec<Alert> {
    range
        .flat_map(|i| a.process(&[fc(i * 60_000, units(i), p10, p50, p90)]))
        .collect()
}

/// A forecast of 41 (31-52) in every window.
const AT_41: (f64, f64, f64) = (31.0, 41.0, 52.0);

/// The alerts of a series selling `units(i)` in windows `0..n` against
/// [`AT_41`]: each one's window (minute) and kind.
fn at_41(cfg: Config, n: i64, units: impl Fn(i64) -> i64) -> Vec<(i64, AlertKind)> {
    banded(&mut Alerting::new(cfg).unwrap(), 0..n, units, AT_41)
        .iter()
        .map(|x| (x.window_start_ms / 60_000, x.kind))
        .collect()
}

#[test]
fn a_clean_noisy_series_raises_nothing() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let n: usize = (0..500)
        .map(|i| {
            a.process(&[fc(i * 60_000, 100 + wobble(i), 90.0, 100.0, 110.0)])
                .len()
        })
        .sum();
    assert_eq!(n, 0);
}

/// One window of a catalog: `n` sparse SKUs (about one unit each) and a
/// big, noisy one (100 +- 40 + `burst` units against 100) in one category,
/// with the category's own forecast if `with_category`.
fn catalog(i: i64, n: i64, burst: i64, with_category: bool) -> Vec<Forecast> {
    let t = i * 60_000;
    let mut out = Vec::new();
    // Noisy enough (about +-40) that its category, with the same
    // absolute noise on a larger base, scores the burst as high.
    let big = 100 + 10 * wobble(i) + burst;
    let band = |f: Forecast, half: f64| {
        let p50 = f.expected.map_or(0.0, |e| e.p50);
        let e = f.expected.map(|e| HorizonPoint {
            p10: p50 - half,
            p90: p50 + half,
            ..e
        });
        Forecast { expected: e, ..f }
    };
    let mut sum = big;
    out.push(band(
        node(Level::SkuStore, "big|s", Some("c|s"), t, big, 100.0),
        40.0,
    ));
    for j in 0..n {
        let y = [0, 1, 2, 0, 1, 3, 0, 1][((i + j) % 8) as usize];
        sum += y;
        let mut f = fc(t, y, 0.0, 1.0, 3.0);
        f.level = Level::SkuStore;
        f.key = format!("sku-{j}|s").into();
        f.parent = Some("c|s".into());
        out.push(f);
    }
    if with_category {
        let p50 = 100.0 + n as f64;
        out.push(band(
            node(Level::CategoryStore, "c|s", Some("s"), t, sum, p50),
            45.0,
        ));
    }
    out
}

/// Alerts on the big SKU and on the category when window 70 carries
/// `burst` extra units of the big SKU.
fn catalog_alerts(cfg: &Config, n: i64, burst: i64, with_category: bool) -> (usize, usize) {
    let mut a = Alerting::new(cfg.clone()).unwrap();
    let (mut on_big, mut on_cat) = (0, 0);
    for i in 0..72 {
        let b = if i == 70 { burst } else { 0 };
        for x in a.process(&catalog(i, n, b, with_category)) {
            match &*x.key {
                "big|s" => on_big += 1,
                "c|s" => on_cat += 1,
                _ => {}
            }
        }
    }
    (on_big, on_cat)
}

/// The smallest burst (in steps of 5) that alerts on the big SKU.
fn smallest_alerting_burst(cfg: &Config, n: i64, with_category: bool) -> i64 {
    (0..=1000)
        .step_by(5)
        .find(|&b| catalog_alerts(cfg, n, b, with_category).0 > 0)
        .expect("a burst of 1000 over 100 alerts")
}

#[test]
fn many_series_in_a_level_need_a_higher_score() {
    // The same SKU and burst: alone in its level, or among 300 SKUs
    // (300 tests a window: a score that is a 1-in-a-billion event for
    // one series is a 1-in-3-million event for the level).
    let on = Config::default();
    let off = Config {
        family_wise_correction: false,
        ..Config::default()
    };
    let alone = smallest_alerting_burst(&on, 0, false);
    let among = smallest_alerting_burst(&on, 300, false);
    assert!(among > alone, "{among} vs {alone}");
    assert_eq!(smallest_alerting_burst(&off, 300, false), alone);
    // A burst far out alerts whatever the catalog's size.
    assert_eq!(catalog_alerts(&on, 300, 1000, false), (1, 0));
}

#[test]
fn a_significant_parent_lets_its_one_broken_child_alert() {
    // With its category's forecast in the window, the category's own
    // test (one series at its level) finds a burst the SKU's level
    // could not call alone; the SKU, which explains it, is alerted.
    let cfg = Config::default();
    let without = smallest_alerting_burst(&cfg, 300, false);
    let with = smallest_alerting_burst(&cfg, 300, true);
    assert!(with < without, "{with} vs {without}");
    let (on_big, on_cat) = catalog_alerts(&cfg, 300, with, true);
    assert_eq!((on_big, on_cat), (1, 0), "the SKU, not the category");
}

#[test]
fn a_sparse_series_wobble_is_not_a_spike_but_a_real_burst_is() {
    // A series selling about one unit a window, forecast at its median 0.
    let mut a = Alerting::new(Config::default()).unwrap();
    let y = |i: i64| match i {
        100 => 7, // one lucky window: 1 in a few thousand, not 6 sigma
        150 => 40,
        _ => [0, 1, 2, 0, 1, 3, 0, 1][i as usize % 8],
    };
    let got = banded(&mut a, 0..200, y, (0.0, 0.0, 3.0));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].window_start_ms, 150 * 60_000);
    assert_eq!(got[0].kind, AlertKind::Spike);
}

#[test]
fn the_series_below_a_shift_already_called_stay_quiet() {
    // A store shifts down (its forecast keeps the old level); its
    // category follows a few windows later, but the store's shift
    // already explains it.
    let got = parent_and_child(
        (Level::Store, "s", "total", 1000.0),
        (Level::CategoryStore, "c|s", 300.0),
        |i| {
            let store = if i >= 80 { 600 } else { 1000 } + wobble(i);
            let cat = if i >= 84 { 150 } else { 300 } + wobble(i + 3);
            (store, cat)
        },
    );
    let on_cat: Vec<&Alert> = got.iter().filter(|a| &*a.key == "c|s").collect();
    assert!(on_cat.is_empty(), "{on_cat:#?}");
    assert!(got
        .iter()
        .any(|a| &*a.key == "s" && a.kind == AlertKind::LevelShift));
}

#[test]
fn strength_is_below_one_on_a_clean_series_and_above_on_a_spike() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut quiet_max: f64 = 0.0;
    for i in 0..100 {
        a.process(&[fc(i * 60_000, 100 + wobble(i), 90.0, 100.0, 110.0)]);
        if i >= 20 {
            quiet_max = quiet_max.max(a.strength(Level::Store, "web-uk").unwrap());
        }
    }
    assert!(quiet_max < 1.0, "{quiet_max}");
    a.process(&[fc(100 * 60_000, 200, 90.0, 100.0, 110.0)]);
    assert!(a.strength(Level::Store, "web-uk").unwrap() > 1.0);
    assert_eq!(a.strength(Level::Store, "nope"), None);
}

#[test]
fn a_bursty_series_needs_a_bigger_jump_to_alert() {
    // The same +70 window alerts on a calm series but not on one whose
    // +40 bursts every eighth window show its tails are heavier than
    // the model's.
    let run = |bursty: bool| {
        let mut a = Alerting::new(Config::default()).unwrap();
        for i in 0..400 {
            let burst = if bursty && i >= 40 && i % 8 == 0 {
                40
            } else {
                0
            };
            let got = a.process(&[fc(i * 60_000, 100 + wobble(i) + burst, 90.0, 100.0, 110.0)]);
            assert!(got.is_empty(), "window {i}: {got:#?}");
        }
        a.process(&[fc(400 * 60_000, 170, 90.0, 100.0, 110.0)])
            .len()
    };
    assert_eq!(run(false), 1);
    assert_eq!(run(true), 0);
}

#[test]
fn a_lone_spike_is_a_spike_not_a_level_shift() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let y = |i| if i == 60 { 180 } else { 100 + wobble(i) };
    let got = banded(&mut a, 0..100, y, (90.0, 100.0, 110.0));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].kind, AlertKind::Spike);
    assert_eq!(got[0].window_start_ms, 60 * 60_000);
    assert!(got[0].robust_z > 5.0);
}

#[test]
fn a_level_shift_is_called_once() {
    let mut a = Alerting::new(Config::default()).unwrap();
    // The forecast keeps expecting 100 (a model slow to adapt): without
    // the change detector this would alert every cooldown period.
    let y = |i| if i >= 80 { 180 } else { 100 } + wobble(i);
    let got = banded(&mut a, 0..200, y, (90.0, 100.0, 110.0));
    let shifts: Vec<&Alert> = got
        .iter()
        .filter(|a| a.kind == AlertKind::LevelShift)
        .collect();
    assert_eq!(shifts.len(), 1, "{got:#?}");
    assert_eq!(shifts[0].direction, Direction::Up);
    // A jump by less than level-shift-max-factor, confirmed by its
    // second window at the same level, is a shift then.
    assert_eq!(
        shifts[0].window_start_ms,
        81 * 60_000,
        "called on the jump's second window"
    );
    // At most the first window is called a spike before the shift is clear.
    assert!(got.len() <= 2, "{got:#?}");
    // A shift down later is a new incident.
    let mut later = Vec::new();
    for i in 200..300 {
        later.extend(a.process(&[fc(i * 60_000, 60 + wobble(i), 90.0, 100.0, 110.0)]));
    }
    assert!(later
        .iter()
        .any(|a| a.kind == AlertKind::LevelShift && a.direction == Direction::Down));
}

/// Run a series with a 60-window "day" (300 +- 90 units a window
/// times `f(i)`, plus noise) whose forecaster follows it closely (the
/// median is the previous window's units, the band +-10%).
fn following(n: i64, f: impl Fn(i64) -> f64) -> Vec<Alert> {
    following_up_to(n, f, 1.1)
}

/// [`following`] with the band's top at `top` times the median.
fn following_up_to(n: i64, f: impl Fn(i64) -> f64, top: f64) -> Vec<Alert> {
    let mut a = sixty_window_day();
    let mut prev = 300.0;
    let mut got = Vec::new();
    for i in 0..n {
        let shape = 300.0 + 90.0 * (i as f64 * std::f64::consts::TAU / 60.0).sin();
        let units = (shape * f(i)).round() as i64 + wobble(i);
        got.extend(a.process(&[fc(i * 60_000, units, 0.9 * prev, prev, top * prev)]));
        prev = units as f64;
    }
    got
}

/// A store selling its forecast give or take a little, then swinging
/// 15% either side of it every other window (never out of the band).
fn swinging(novelty_windows: u32) -> Vec<Alert> {
    let mut a = Alerting::new(Config {
        novelty_windows,
        ..Config::default()
    })
    .unwrap();
    let mut got = Vec::new();
    for i in 0..1500 {
        let swing = if i >= 1000 { 30 * (2 * (i % 2) - 1) } else { 0 };
        let units = 200 + wobble(i) + swing;
        got.extend(a.process(&[fc(i * 60_000, units, 150.0, 200.0, 250.0)]));
    }
    got
}

#[test]
fn a_new_pattern_within_the_band_is_one_pattern_change_when_novelty_is_on() {
    assert!(swinging(0).is_empty());
    let got = swinging(52);
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    let (kind, at) = kinds[0];
    assert_eq!(kind, AlertKind::PatternChange);
    assert!((1000..1052).contains(&at), "{at}");
    assert!(got[0].explanation.contains("look like no earlier stretch"));
}

#[test]
fn a_steady_climb_is_one_trend_break_and_no_spike() {
    // From window 300 the series climbs to twice its usual over 30
    // windows, then stays there: the forecast follows each window, but
    // against the same time a "day" earlier it keeps climbing.
    let ramp = |i: i64| 1.0 + (i.clamp(300, 330) - 300) as f64 / 30.0;
    let got = following(500, ramp);
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds.len(), 1, "{got:#?}");
    let (kind, at) = kinds[0];
    assert_eq!(kind, AlertKind::TrendBreak);
    assert_eq!(got[0].direction, Direction::Up);
    assert!((310..335).contains(&at), "called during the climb: {at}");
    assert!(
        got[0]
            .explanation
            .contains("% higher than usual over the last "),
        "{}",
        got[0].explanation
    );
    // A slide the same way down.
    let got = following(500, |i| 1.0 / ramp(i));
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds.len(), 1, "{got:#?}");
    assert_eq!(kinds[0].0, AlertKind::TrendBreak);
    assert_eq!(got[0].direction, Direction::Down);
}

#[test]
fn a_climb_every_week_at_the_same_time_is_called_once() {
    // Every seventh 60-window "day" the series climbs to twice its usual
    // from window 10 of the day to 40 and stays there to the day's end
    // (a weekday busier than the day before, and busier as it goes on).
    // The first week's climb is a trend break; the same climb a week
    // later is the weekly shape.
    let weekly = |i: i64| {
        if (i / 60) % 7 == 5 {
            1.0 + ((i % 60).clamp(10, 40) - 10) as f64 / 30.0
        } else {
            1.0
        }
    };
    let got = following(800, weekly);
    let trend_in = |day: i64| {
        got.iter().any(|a| {
            a.kind == AlertKind::TrendBreak
                && a.direction == Direction::Up
                && a.window_start_ms / 3_600_000 == day
        })
    };
    assert!(trend_in(5), "{got:#?}");
    assert!(!trend_in(12), "{got:#?}");
}

/// A candidate of series 0 of its window, nothing special about it.
fn cand(kind: AlertKind, direction: Direction) -> Candidate {
    Candidate::plain(0, kind, direction, 1.0)
}

/// `f` as the category toys|web's.
fn category(f: Forecast) -> Forecast {
    Forecast {
        level: Level::CategoryStore,
        key: "toys|web".into(),
        ..f
    }
}

/// `done` is `opened` resolved, and says which move ended.
fn assert_resolves(done: &Alert, opened: &Alert, says: &str) {
    assert_eq!(
        (done.id.as_str(), done.status),
        (opened.id.as_str(), Status::Resolved)
    );
    assert!(done.explanation.contains(says), "{}", done.explanation);
}

/// Whether `now`, an alert on `f`'s series, ends the move `prev` (and
/// that move against the recent mean) the series remembers, given its
/// recent mean `mean_y` and trend state `t`.
fn end_with(
    a: &mut Alerting,
    f: &Forecast,
    now: &Alert,
    mean_y: f64,
    prev: (&Alert, f64),
    t: TrendState,
) -> Option<Alert> {
    let st = SeriesState {
        mean_y,
        shifted: Some(Shifted {
            alert: Box::new(prev.0.clone()),
            moved: prev.1,
            called_base: t.called_base,
        }),
        trend: Some(Box::new(t)),
        ..SeriesState::default()
    };
    a.series.insert((f.level, f.key.clone()), st);
    a.end_of_shift(f, now, (None, false))
}

#[test]
fn a_shift_back_to_the_day_befores_units_resolves_a_trend_break() {
    // A store whose trend break up was called at minute 300; at minute
    // 420 a level shift down is called on it.
    let mut a = Alerting::new(Config::default()).unwrap();
    let up = fc(300 * 60_000, 450, 270.0, 300.0, 330.0);
    let trend = a.alert(&up, &cand(AlertKind::TrendBreak, Direction::Up), vec![]);
    let back = fc(420 * 60_000, 300, 540.0, 600.0, 660.0);
    let shift = a.alert(&back, &cand(AlertKind::LevelShift, Direction::Down), vec![]);
    // `dev`: the shift's window against the same window a day earlier,
    // less the usual ratio before the trend break.
    let mut end = |dev: f64| {
        let t = TrendState {
            last_r: Some(dev),
            ..TrendState::default()
        };
        end_with(&mut a, &back, &shift, 600.0, (&trend, 0.0), t)
    };
    // Back to the units of the day before: that trend break resolved.
    assert_resolves(
        &end(0.05).expect("resolved"),
        &trend,
        "the trend break up of",
    );
    // Still 50% off the day before: a level shift of its own.
    assert!(end(-0.4).is_none());
}

#[test]
fn a_trend_breaks_end_without_a_day_before_is_a_move_back_as_far_as_it_went() {
    // A category's climb to 2x was called at minute 300 on a move of
    // 0.32 against the day before, and went on climbing. At minute 800
    // it steps back to 300 units, against a recent mean of about 560,
    // in windows the day before cannot judge (their share of lines on
    // promotion differs): no ratio to the day before.
    let mut a = Alerting::new(Config::default()).unwrap();
    let up = category(fc(300 * 60_000, 680, 500.0, 570.0, 650.0));
    let trend = a.alert(&up, &cand(AlertKind::TrendBreak, Direction::Up), vec![]);
    let mut end = |units: i64| {
        let back = category(fc(800 * 60_000, units, 420.0, 490.0, 580.0));
        let shift = a.alert(&back, &cand(AlertKind::LevelShift, Direction::Down), vec![]);
        end_with(
            &mut a,
            &back,
            &shift,
            560.0,
            (&trend, 0.32),
            TrendState::default(),
        )
    };
    // Back by 0.62, about twice the call's move: the climb ended.
    assert_resolves(
        &end(300).expect("the climb ended"),
        &trend,
        "the trend break up of",
    );
    // Back by 0.1, a third of it: a move of its own.
    assert!(end(505).is_none());
    // Back by 1.25, nearly four times it: a fall of its own.
    assert!(end(160).is_none());
}

#[test]
fn a_move_back_about_as_far_as_a_settled_trend_break_ends_it() {
    // A category slid to 40% of its usual (called when the usual ratio
    // to the day before was -0.1), settled, and its new level became
    // the usual ratio (-1.14). Ten hours later it jumps back: 0.21
    // against the day before, a little off home (the day before ran
    // low there), but the move back is about as far as it had settled.
    let mut a = Alerting::new(Config::default()).unwrap();
    let down = category(fc(300 * 60_000, 120, 270.0, 300.0, 330.0));
    let trend = a.alert(&down, &cand(AlertKind::TrendBreak, Direction::Down), vec![]);
    let up = category(fc(900 * 60_000, 197, 78.0, 88.0, 102.0));
    let shift = a.alert(&up, &cand(AlertKind::LevelShift, Direction::Up), vec![]);
    let mut end = |dev: f64, settled: f64| {
        let t = TrendState {
            last_r: Some(dev),
            base: [settled, 0.0],
            called_base: -0.1,
            ..TrendState::default()
        };
        end_with(&mut a, &up, &shift, 90.0, (&trend, -0.3), t)
    };
    assert_resolves(
        &end(0.21, -1.14).expect("the slide ended"),
        &trend,
        "the trend break down of",
    );
    // A third of the way back: a move of its own.
    assert!(end(-0.8, -1.14).is_none());
    // Not settled (its usual ratio still the one it was called at), the
    // window 0.31 off home: a move of its own too.
    assert!(end(0.21, -0.1).is_none());
}

#[test]
fn a_climb_called_as_a_settled_slides_end_resolves_it() {
    // As above, but the move back is itself called a trend break (a
    // climb), which sets the trend detector's called-at ratio anew to
    // the slide's settled level before the end is judged: the slide's
    // own called-at ratio (-0.1) is the one its end is measured from.
    let mut a = Alerting::new(Config::default()).unwrap();
    let down = category(fc(300 * 60_000, 120, 270.0, 300.0, 330.0));
    let slide = a.alert(&down, &cand(AlertKind::TrendBreak, Direction::Down), vec![]);
    let called = TrendState {
        last_r: Some(-0.5),
        base: [-0.1, 0.0],
        called_base: -0.1,
        ..TrendState::default()
    };
    a.series.insert(
        (down.level, down.key.clone()),
        SeriesState {
            mean_y: 300.0,
            trend: Some(Box::new(called)),
            ..SeriesState::default()
        },
    );
    assert!(a
        .end_of_shift(&down, &slide, (Some((-0.3, 12)), false))
        .is_none());
    let up = category(fc(900 * 60_000, 197, 78.0, 88.0, 102.0));
    let climb = a.alert(&up, &cand(AlertKind::TrendBreak, Direction::Up), vec![]);
    let st = a.series.get_mut(&(up.level, up.key.clone())).unwrap();
    st.mean_y = 90.0;
    st.trend = Some(Box::new(TrendState {
        last_r: Some(0.21),
        base: [-1.14, 0.0],
        called_base: -1.14,
        ..TrendState::default()
    }));
    assert_resolves(
        &a.end_of_shift(&up, &climb, (Some((1.2, 12)), false))
            .expect("the slide ended"),
        &slide,
        "the trend break down of",
    );
}

#[test]
fn a_move_back_to_the_usual_ratio_to_the_day_before_ends_the_last_move() {
    // A category's level shift down was called in the morning rush,
    // its recent mean still lagging the rush (a move of -0.24 against
    // it, for a halving); ten hours later a level shift up brings it
    // back (+0.66 against the mean of the halved level: 2.75 times the
    // first move, no undoing by that measure).
    let mut a = Alerting::new(Config::default()).unwrap();
    let down = fc(550 * 60_000, 217, 300.0, 331.0, 376.0);
    let shift = a.alert(&down, &cand(AlertKind::LevelShift, Direction::Down), vec![]);
    let trend = a.alert(&down, &cand(AlertKind::TrendBreak, Direction::Down), vec![]);
    let up = fc(1160 * 60_000, 548, 221.0, 265.0, 305.0);
    let back = a.alert(&up, &cand(AlertKind::LevelShift, Direction::Up), vec![]);
    // `dev`: the window against the same window a day earlier, `home`
    // the usual ratio from before the move.
    let mut f = up.clone();
    f.level = Level::CategoryStore;
    f.key = "toys|web".into();
    let mut end = |prev: &Alert, dev: Option<f64>, home: f64| {
        let t = TrendState {
            last_r: dev,
            // The usual ratio drifted with a slow trend.
            base: [-0.5, 0.0],
            called_base: -0.5,
            away: Some((prev.direction, home, prev.window_start_ms)),
            ..TrendState::default()
        };
        end_with(&mut a, &f, &back, 282.0, (prev, -0.24), t)
    };
    let done = end(&shift, Some(0.12), 0.05).expect("back to the usual ratio");
    assert_eq!(done.status, Status::Resolved);
    assert_eq!(done.id, shift.id);
    // Still 50% above the day before's usual: a move of its own.
    assert!(end(&shift, Some(0.45), 0.05).is_none());
    // Without a comparison (promotions unlike the day before's) the
    // mean's measure alone decides: no undoing.
    assert!(end(&shift, None, 0.05).is_none());
    // A trend break whose usual ratio drifted with it (-0.5 when it
    // was called) ends back at home too, not only at that ratio.
    let done = end(&trend, Some(0.02), 0.0).expect("back home");
    assert_eq!(done.id, trend.id);
}

#[test]
fn trend_and_spike_settings_out_of_range_are_rejected() {
    for cfg in [
        Config {
            trend_z: 0.0,
            ..Config::default()
        },
        Config {
            trend_min_change: -0.1,
            ..Config::default()
        },
        Config {
            trend_min_change: f64::NAN,
            ..Config::default()
        },
        Config {
            spike_min_change: -0.5,
            ..Config::default()
        },
    ] {
        assert!(matches!(Alerting::new(cfg), Err(Error::Config(_))));
    }
    assert!(Alerting::new(Config::default()).is_ok());
}

#[test]
fn a_climb_has_a_slope_and_a_step_none() {
    let side = |d: &dyn Fn(u32) -> f64| {
        let mut s = TrendSide::default();
        for i in 0..20 {
            s.add(10.0, 0.5, (d(i), 0.1), (false, false), 0);
        }
        s.slope_t()
    };
    // 0.02 a window over 20 windows, each deviation's standard
    // deviation 0.1: 0.02 / (0.1 / sqrt(20 * 399 / 12)) = 5.16.
    let climb = side(&|i| 0.02 * f64::from(i));
    assert!((climb - 5.16).abs() < 0.01, "{climb}");
    assert!((side(&|i| -0.02 * f64::from(i)) + 5.16).abs() < 0.01);
    // A step (the whole run at one new level) and a day before that
    // was low all along are flat.
    assert_eq!(side(&|_| 0.5), 0.0);
    // A run that ends (the sum back to zero) starts over.
    let mut s = TrendSide::default();
    s.add(3.0, 0.5, (0.3, 0.1), (false, false), 0);
    s.add(-5.0, 0.5, (-0.5, 0.1), (false, false), 0);
    assert_eq!((s.n, s.s), (0, 0.0));
}

#[test]
fn only_a_series_with_a_daily_shape_is_compared_with_the_day_before() {
    // 48 windows a day, five days; units from a fixed pseudo-random
    // sequence of +-20% around the level. With a threefold swing over
    // the day, the ratio to the day before strays less from the usual
    // than the units do from their level; without one, more.
    let run = |swing: f64| {
        let mut t = TrendState::default();
        let mut u = 0.5f64;
        let mut y = vec![0.0; 5 * 48];
        let mut shaped = false;
        for i in 0..y.len() {
            u = (u * 997.0 + 0.123).fract();
            let day = 1.0 + swing * (std::f64::consts::TAU * (i % 48) as f64 / 48.0).sin();
            y[i] = (200.0 * day * (0.8 + 0.4 * u)).round();
            if i >= 48 {
                t.seen += 1;
                let r = log_ratio(y[i], y[i - 48]);
                shaped = t.shaped(y[i], r, 1.0 / 48.0);
            }
        }
        shaped
    };
    assert!(run(0.5));
    assert!(!run(0.0));
}

/// One window `n` of a 4-window period with units `y` through a trend
/// state's day slots (at once, with no queue), as the detector feeds them
/// (its ratio within 0.2 of the usual 0 agrees): its ratios to one and two
/// periods before.
fn slot_window(t: &mut TrendState, n: i64, y: f64, usual: bool) -> [Option<f64>; 2] {
    let r = t.compare((n, 1, 4), (y, 0.0));
    t.remember((n, 1, 4), (y, 0.0), (usual, Checked::of(r[0], 0.0, 0.2)), 0);
    r
}

#[test]
fn an_unusual_windows_reference_is_carried_once() {
    // A 4-window period: day 0 is the first, compared with nothing; day 1
    // sets what is usual, checked against it; day 2's second window is an
    // anomaly, so day 3 is set against day 1 there (and has no two-day
    // comparison); day 3's is unusual too, and day 4 has no comparison
    // there: carried on, an anomaly in the reference that went unseen
    // would be judged again every day.
    let mut t = TrendState::default();
    let mut on = |n: i64, y: f64, usual: bool| slot_window(&mut t, n, y, usual);
    for n in 0..8 {
        on(n, 100.0, true);
    }
    assert_eq!(on(8, 100.0, true)[0], Some(0.0));
    assert!(on(9, 300.0, false)[0].is_some_and(|r| r > 1.0));
    on(10, 100.0, true);
    on(11, 100.0, true);
    assert_eq!(on(12, 100.0, true), [Some(0.0), Some(0.0)]);
    assert_eq!(on(13, 300.0, false), [Some((301.0f64 / 101.0).ln()), None]);
    on(14, 100.0, true);
    on(15, 100.0, true);
    assert_eq!(on(16, 100.0, true), [Some(0.0), Some(0.0)]);
    assert_eq!(on(17, 100.0, true), [None, None]);
    on(18, 100.0, true);
    on(19, 100.0, true);
    assert_eq!(on(21, 100.0, true), [Some(0.0), None]);
}

#[test]
fn a_first_periods_units_are_carried_over_no_move() {
    // The first period's second window is an anomaly no one could tell
    // (there is nothing to compare it with); the next period's return to
    // the usual units reads as a move, no usual window. The first period's
    // units there were never checked: the third period has no comparison
    // there, instead of being judged against the anomaly again. An unusual
    // window that agreed with the first period's units (marked with a move
    // that began after it) carries them, as checked units are carried.
    let mut t = TrendState::default();
    let mut on = |n: i64, y: f64, usual: bool| slot_window(&mut t, n, y, usual);
    for (n, y) in [(0, 100.0), (1, 300.0), (2, 100.0), (3, 100.0)] {
        assert_eq!(on(n, y, true), [None, None]);
    }
    assert_eq!(on(4, 100.0, true)[0], Some(0.0));
    assert!(on(5, 100.0, false)[0].is_some_and(|r| r < -1.0));
    on(6, 100.0, false);
    on(7, 100.0, true);
    assert_eq!(on(8, 100.0, true)[0], Some(0.0));
    assert_eq!(on(9, 100.0, true), [None, None]);
    assert_eq!(on(10, 100.0, true)[0], Some(0.0));
    on(11, 100.0, true);
    // The day after, compared again with the windows between.
    assert_eq!(on(13, 100.0, true)[0], Some(0.0));
}

#[test]
fn trend_spans_hold_the_gaps_of_windows_without_a_comparison() {
    // Nine windows 80% up on the day before, nine without a comparison
    // (a promotion then or now), nine level with it: the spans are
    // spans of time, and one that is mostly gaps says nothing (skipped,
    // the gaps would set the last nine against the first: a slide).
    let mut t = TrendState::default();
    let mut scratch = Vec::new();
    for r in [0.6; 9].into_iter().chain([f64::NAN; 9]).chain([0.0; 9]) {
        t.ratios[0].push_back(r);
    }
    assert_eq!(t.spans(0, 9, &mut scratch), None);
    // Gaps here and there in each span: the medians of what is left.
    t.ratios[0].clear();
    for i in 0..27 {
        let r = if i % 4 == 0 { f64::NAN } else { (i / 9) as f64 };
        t.ratios[0].push_back(r);
    }
    assert_eq!(t.spans(0, 9, &mut scratch), Some(([0.0, 1.0, 2.0], 6)));
}

/// Run `n` windows of a 60-window "day" selling `units(i)` against a
/// seasonal forecaster: each window's median is the mean of the same
/// window over the last `days` days (100 before there are that many),
/// the band +-10%. The alerts raised.
fn seasonal(n: i64, days: i64, units: &dyn Fn(i64) -> i64) -> Vec<Alert> {
    let mut a = sixty_window_day();
    let mut got = Vec::new();
    for i in 0..n {
        let p50 = if i >= 60 * days {
            (1..=days).map(|k| units(i - 60 * k)).sum::<i64>() as f64 / days as f64
        } else {
            100.0
        };
        got.extend(a.process(&[fc(i * 60_000, units(i), 0.9 * p50, p50, 1.1 * p50)]));
    }
    got
}

#[test]
fn yesterdays_spike_echoing_in_the_forecast_raises_no_drop_today() {
    // A seasonal-naive forecaster with a 60-window "day": each window's
    // median is the same window a day earlier. A spike at window 300 is
    // alerted; a day later the forecast copies it, and the window,
    // selling as usual, reads as a drop against it.
    let seasonal_naive = |units: &dyn Fn(i64) -> i64| seasonal(400, 1, units);
    let got = seasonal_naive(&|i| if i == 300 { 400 } else { 100 + wobble(i) });
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds, vec![(AlertKind::Spike, 300)], "{got:#?}");

    // Selling nothing in that window is an outage all the same.
    let got = seasonal_naive(&|i| match i {
        300 => 400,
        360 => 0,
        _ => 100 + wobble(i),
    });
    let kinds = kinds_by_minute(&got);
    assert!(kinds.contains(&(AlertKind::DropToZero, 360)), "{got:#?}");
}

#[test]
fn a_spike_two_days_ago_still_echoing_raises_nothing_while_the_series_stands_still() {
    // A forecaster that averages the same window one and two 60-window
    // "days" earlier (as a seasonal smoother carries an anomaly for more
    // than a day). The spike at window 300 is alerted; at 360 and 420
    // the forecast still carries half of it, and the window, selling as
    // usual, reads as a drop: an echo both days. A real drop at 420 (to
    // 30, far from where the series stood) is alerted.
    let two_day = |units: &dyn Fn(i64) -> i64| seasonal(480, 2, units);
    let got = two_day(&|i| if i == 300 { 400 } else { 100 + wobble(i) });
    assert_eq!(
        kinds_by_minute(&got),
        vec![(AlertKind::Spike, 300)],
        "{got:#?}"
    );
    let got = two_day(&|i| match i {
        300 => 400,
        420 => 30,
        _ => 100 + wobble(i),
    });
    let kinds = kinds_by_minute(&got);
    assert!(kinds.contains(&(AlertKind::Drop, 420)), "{got:#?}");
}

#[test]
fn a_level_shift_must_move_a_tenth_of_the_level_forecast_not_of_the_lagging_mean() {
    // A store at 1,000 climbs to 1,300 in a few windows (a morning), its
    // forecast with it; then it sells `low` a window for a while. 1,190
    // is 8.5% under the forecast, but 10.5% of the store's recent mean,
    // which still lags the climb: no level shift (seed 5's web-uk at
    // 09:15, 9% under its forecast). 1,100, 15% under, is one.
    let band = |p50: f64| (0.97 * p50, p50, 1.03 * p50);
    let called = |low: i64| {
        let mut a = Alerting::new(Config::default()).unwrap();
        let mut got = banded(&mut a, 0..200, |i| 1_000 + wobble(i), band(1_000.0));
        got.extend(banded(
            &mut a,
            200..203,
            |i| 1_300 + wobble(i),
            band(1_300.0),
        ));
        got.extend(banded(&mut a, 203..230, |i| low + wobble(i), band(1_300.0)));
        kinds_by_minute(&got)
            .into_iter()
            .any(|(k, _)| k == AlertKind::LevelShift)
    };
    assert!(!called(1_190));
    assert!(called(1_100));
}

#[test]
fn a_drop_a_day_after_a_spike_the_forecast_never_carried_is_news() {
    // The forecast stays at the usual 100: it carried nothing of the
    // spike at window 300. A day later the series falls to 40 from where
    // it stood, against a forecast still where it stood too: no echo of
    // the spike (the forecast did not move, the series did), a drop (seed
    // 27's cat-19|web-de halving a day after its store's spike).
    let units = |i| match i {
        300 => 400,
        360 => 40,
        _ => 100 + wobble(i),
    };
    let got = banded(&mut sixty_window_day(), 0..400, units, (90.0, 100.0, 110.0));
    let kinds = kinds_by_minute(&got);
    assert!(kinds.contains(&(AlertKind::Spike, 300)), "{got:#?}");
    assert!(kinds.contains(&(AlertKind::Drop, 360)), "{got:#?}");
}

#[test]
fn a_step_the_forecast_lags_every_day_echoes_nothing() {
    // A 60-window "day" selling 100, and 300 from window 20 to 39. The
    // forecast knows the high phase but lags its first window every day
    // (150 against 300): out of the band upwards daily, the series'
    // shape. On day 5 the step does not come (60 in window 320, 150
    // after): that first window is a drop, not an echo of yesterday's
    // window out of the band, which was no anomaly.
    let mut a = sixty_window_day();
    let units = |i: i64| {
        let high = if i / 60 == 5 { 150 } else { 300 };
        match i % 60 {
            20 if i / 60 == 5 => 60,
            20..40 => high + wobble(i),
            _ => 100 + wobble(i),
        }
    };
    let p50 = |i: i64| match i % 60 {
        20 => 150.0,
        21..40 => 300.0,
        _ => 100.0,
    };
    let got: Vec<Alert> = (0..360)
        .flat_map(|i| {
            let m = p50(i);
            a.process(&[fc(i * 60_000, units(i), 0.9 * m, m, 1.1 * m)])
        })
        .collect();
    let day5: Vec<(AlertKind, i64)> = kinds_by_minute(&got)
        .into_iter()
        .filter(|&(_, m)| m >= 300)
        .collect();
    assert_eq!(day5.first(), Some(&(AlertKind::Drop, 320)), "{got:#?}");
}

#[test]
fn a_spike_right_after_a_drop_is_no_recovery() {
    // A drop to 40% is alerted; the very next window sells five times
    // the usual. Coming back from the drop would be a recovery (silent);
    // going that much further is a spike of its own.
    let mut a = Alerting::new(Config::default()).unwrap();
    let units = |i| match i {
        40 => 40,
        41 => 500,
        _ => 100 + wobble(i),
    };
    let got = banded(&mut a, 0..42, units, (90.0, 100.0, 110.0));
    let kinds = kinds_by_minute(&got);
    assert_eq!(
        kinds,
        vec![(AlertKind::Drop, 40), (AlertKind::Spike, 41)],
        "{got:#?}"
    );
}

#[test]
fn a_series_that_moved_with_its_stores_spike_is_no_reference_the_next_day() {
    // A store and one of its categories with a daily shape (a 60-window
    // "day"), both forecast well. At windows 61-63 the store spikes 3x;
    // the category doubles with it, inside its wide band (no candidate, no
    // child of the store's alert: a small, noisy category's band is wide).
    // The next day the category sells as usual while its forecast still
    // carries a little of its jump in the first window (its band above its
    // units): against the day before it
    // is half for three windows, but those windows moved with the store's
    // spike, and are no reference (before this, a level shift down at
    // window 123).
    let mut a = sixty_window_day();
    let mut got = Vec::new();
    for i in 0..180i64 {
        let t = i * 60_000;
        let shape = 300.0 + 90.0 * (i as f64 * std::f64::consts::TAU / 60.0).sin();
        let spike = (61..64).contains(&i);
        let store_y = (4.0 * shape * if spike { 3.0 } else { 1.0 }) as i64 + wobble(i);
        let cat_y = (shape * if spike { 2.0 } else { 1.0 }) as i64 + wobble(i);
        // A series' window with its band at (p10, p50, p90) times `shape`.
        let window = |level, key, parent, units, (lo, mid, hi): (f64, f64, f64)| Forecast {
            expected: fc(t, units, lo * shape, mid * shape, hi * shape).expected,
            ..node(level, key, Some(parent), t, units, mid * shape)
        };
        let store = window(Level::Store, "web-uk", "total", store_y, (3.6, 4.0, 4.4));
        let band = if i == 121 {
            (1.2, 1.5, 1.8)
        } else {
            (0.4, 1.0, 2.5)
        };
        let cat = window(Level::CategoryStore, "cat-01|web-uk", "web-uk", cat_y, band);
        got.extend(a.process(&[store, cat]));
    }
    let seen: Vec<(Level, AlertKind, i64)> = got
        .iter()
        .map(|x| (x.level, x.kind, x.window_start_ms / 60_000))
        .collect();
    assert_eq!(seen, vec![(Level::Store, AlertKind::Spike, 61)], "{got:#?}");
}

#[test]
fn a_moves_windows_are_no_reference_until_it_is_undone() {
    // A 100-window period; the usual ratio to the day before is 0.1
    // when a level shift up is called at window 1000.
    let mut t = TrendState {
        base: [0.1, 0.0],
        ..TrendState::default()
    };
    let back = 0.5 * 1.4f64.ln();
    t.moved(Direction::Up, (1000, 1, 100));
    // Still up against the day before: away; a window with no
    // comparison is where the last one was.
    assert!(t.away_at(1001, 100, Some(0.6), back));
    assert!(t.away_at(1002, 100, None, back));
    // Back near the usual ratio: a usual window again, and so is the
    // next without a comparison.
    assert!(!t.away_at(1003, 100, Some(0.15), back));
    assert!(!t.away_at(1004, 100, None, back));
    // The shift back down is called when what is usual has been relearnt
    // from the move's windows: home stays the ratio from before the
    // first, so the series at home is not away.
    t.base[0] = 0.6;
    t.moved(Direction::Down, (1040, 1, 100));
    assert!(!t.away_at(1041, 100, Some(0.1), back));
    assert!(t.away_at(1042, 100, Some(-0.5), back));
    // A period after the last move, every window is usual again, and
    // the next move starts from what is usual then.
    assert!(!t.away_at(1140, 100, None, back));
    t.moved(Direction::Up, (1200, 1, 100));
    assert!(t.away_at(1201, 100, Some(0.9), back));
    assert!(!t.away_at(1202, 100, Some(0.7), back));
}

#[test]
fn a_move_summed_longer_than_the_queue_holds_is_no_reference_the_next_day() {
    // Ten 1-ms windows a period; the queue holds the newest two. The
    // first period sells 100 a window, the second 110 (its usual level)
    // until it climbs to 200 at window 13; the CUSUM's run began there
    // and the move is called at window 19, when windows 13-17 have
    // already left the queue as that period's usual units.
    let (width, period) = (1, 10);
    let mut t = TrendState::default();
    let feed = |t: &mut TrendState, n: i64, y: f64| {
        t.compare((n, width, period), (y, 0.0));
        t.remember((n, width, period), (y, 0.0), (true, Checked::Agrees), 2);
    };
    for n in 0..20 {
        let y = match n {
            0..10 => 100.0,
            10..13 => 110.0,
            _ => 200.0,
        };
        feed(&mut t, n, y);
    }
    t.sides[0] = TrendSide {
        s: 5.0,
        n: 7,
        first: 13,
        ..TrendSide::default()
    };
    t.moved(Direction::Up, (19, width, period));
    // The next period at 110: the climb's windows are no reference (it
    // would read as a slide against them); they go back to the period
    // before (100), and the windows before the run keep their own.
    let r1 = |t: &mut TrendState, n: i64| t.compare((n, width, period), (110.0, 0.0))[0];
    for n in 20..23 {
        assert_eq!(r1(&mut t, n), Some(0.0), "window {n}");
    }
    for n in 23..28 {
        let r = r1(&mut t, n).expect("a comparison");
        assert!(
            (r - (111.0f64 / 101.0).ln()).abs() < 1e-9,
            "window {n}: {r}"
        );
    }
}

#[test]
fn a_step_the_forecast_follows_at_once_is_a_level_shift_against_the_day_before() {
    // A forecast that follows each window (its median the previous
    // window's units) with a band wide above it: the step to 1.6x at
    // window 300 lands outside the band but is no spike, and the
    // forecast has followed it by the next window. Against the same
    // time a "day" (60 windows) earlier it holds.
    let got = following_up_to(420, |i| if i >= 300 { 1.6 } else { 1.0 }, 1.5);
    assert_eq!(
        kinds_by_minute(&got),
        vec![(AlertKind::LevelShift, 302)],
        "{got:#?}"
    );
    assert_eq!(got[0].direction, Direction::Up);
    assert!(
        got[0]
            .explanation
            .contains("level shifted up: against the same time a day earlier, 58% higher than usual over the last 3 min"),
        "{}",
        got[0].explanation
    );
}

#[test]
fn a_step_the_step_test_misses_is_a_level_shift_once_two_days_confirm_it() {
    // The step to 1.6x at window 300 goes part way up first (1.15x,
    // within the allowance), so no window jumps from the usual ratio
    // to beyond it; the forecast follows within its band. Against the
    // same time one and two "days" earlier it holds, flat: a level
    // shift, not a trend break, and not silence.
    let step = |i: i64| match i {
        300 => 1.15,
        301.. => 1.6,
        _ => 1.0,
    };
    let got = following_up_to(420, step, 1.5);
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds.len(), 1, "{got:#?}");
    let (kind, at) = kinds[0];
    assert_eq!(kind, AlertKind::LevelShift, "{got:#?}");
    assert!((301..330).contains(&at), "{at}");
    assert_eq!(got[0].direction, Direction::Up);
    assert!(
        got[0]
            .explanation
            .contains("level shifted up: against the same time a day earlier"),
        "{}",
        got[0].explanation
    );
}

#[test]
fn a_step_is_no_trend_break_and_the_daily_shape_neither() {
    let got = following(500, |i| if i >= 300 { 1.8 } else { 1.0 });
    assert!(
        got.iter().all(|a| a.kind != AlertKind::TrendBreak),
        "{got:#?}"
    );
    assert!(following(800, |_| 1.0).is_empty());
}

/// One window of a store `web` with three categories of two SKUs each
/// (the second SKU sells `second` units a window), and a total that
/// other stores dominate; `broken`: the store sells nothing.
fn store_window(i: i64, broken: bool, second: i64) -> Vec<Forecast> {
    store_window_at(i, if broken { 0.0 } else { 1.0 }, second)
}

/// [`store_window`] with every SKU of the store selling `f` times its usual.
fn store_window_at(i: i64, f: f64, second: i64) -> Vec<Forecast> {
    let mut v = Vec::new();
    let cats = ["toys|web", "food|web", "home|web"];
    let (mut store, mut store_p50) = (0, 0.0);
    for (c, cat) in cats.iter().enumerate() {
        let mut cat_units = 0;
        for (s, base) in [40, second].iter().enumerate() {
            let noise = if *base >= 10 { wobble(i + c as i64) } else { 0 };
            let u = ((base + noise) as f64 * f) as i64;
            cat_units += u;
            let key = format!("sku{c}{s}|web");
            v.push(node(
                Level::SkuStore,
                &key,
                Some(cat),
                i * 60_000,
                u,
                *base as f64,
            ));
        }
        let cat_p50 = (40 + second) as f64;
        store += cat_units;
        store_p50 += cat_p50;
        v.push(node(
            Level::CategoryStore,
            cat,
            Some("web"),
            i * 60_000,
            cat_units,
            cat_p50,
        ));
    }
    v.push(node(
        Level::Store,
        "web",
        Some("total"),
        i * 60_000,
        store,
        store_p50,
    ));
    let total = 10_000 + store - store_p50 as i64;
    v.push(node(
        Level::Total,
        "total",
        None,
        i * 60_000,
        total,
        10_000.0,
    ));
    v
}

/// A detector that has seen forty quiet windows of [`store_window`].
fn quiet_store(second: i64) -> Alerting {
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&store_window(i, false, second)).is_empty());
    }
    a
}

/// Forty quiet windows of [`store_window`], then the alerts of the
/// window where the store sells nothing.
fn store_outage_alerts(second: i64) -> Vec<Alert> {
    quiet_store(second).process(&store_window(40, true, second))
}

#[test]
fn a_store_wide_drop_is_one_alert_with_its_children() {
    let got = store_outage_alerts(50);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].level, Level::Store);
    assert_eq!(&*got[0].key, "web");
    assert_eq!(got[0].children.len(), 9, "3 categories and 6 SKUs");
    assert!(
        got[0].explanation.contains("3 direct"),
        "{}",
        got[0].explanation
    );
    assert!(got[0].revenue_at_stake > 0.0);
}

#[test]
fn a_store_wide_drop_seen_in_one_big_sku_per_category_is_one_alert() {
    // Each category's move shows in one SKU (its sibling sells too little
    // to break): the categories defer to those SKUs, but the store broke
    // as a whole and its alert takes the whole subtree.
    let got = store_outage_alerts(2);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "web");
    assert_eq!(got[0].children.len(), 6, "3 categories and their big SKUs");
}

#[test]
fn a_sku_spiking_with_its_store_through_a_quiet_category_is_the_stores_child() {
    let mut a = quiet_store(50);
    // The store sells three times its usual; one SKU's share of that
    // is big enough to alert on its own, while its category's total
    // stays inside its band (it is no candidate).
    let mut w = store_window(40, false, 50);
    for f in w.iter_mut() {
        let units = match (f.level, &*f.key) {
            (Level::Store, _) => 810,
            (Level::Total, _) => 10_540,
            (Level::SkuStore, "sku00|web") => 200,
            _ => continue,
        };
        f.actual.units = units;
    }
    let got = a.process(&w);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "web");
    assert!(
        got[0].children.iter().any(|c| &*c.key == "sku00|web"),
        "{got:#?}"
    );
}

#[test]
fn a_store_spike_is_the_stores_though_a_sku_elsewhere_ticks_up() {
    // Store `web` sells ten times its usual. In another store, `shop`,
    // one SKU breaks up at the same time: a sliver of the total's move,
    // which must not make the total the root cause.
    let window = |i: i64, f: f64, shop_sku: i64| {
        let t = i * 60_000;
        let mut v = store_window_at(i, f, 50);
        for x in v.iter_mut().filter(|x| x.level == Level::Total) {
            x.actual.units += shop_sku - 40;
        }
        v.push(node(
            Level::SkuStore,
            "kite|shop",
            Some("toys|shop"),
            t,
            shop_sku,
            40.0,
        ));
        let cat = 400 + wobble(i);
        v.push(node(
            Level::CategoryStore,
            "toys|shop",
            Some("shop"),
            t,
            cat + shop_sku - 40,
            400.0,
        ));
        v.push(node(
            Level::Store,
            "shop",
            Some("total"),
            t,
            cat + shop_sku + 600,
            1_000.0,
        ));
        v
    };
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&window(i, 1.0, 40 + wobble(i))).is_empty());
    }
    let got = a.process(&window(40, 10.0, 150));
    assert!(got.iter().all(|x| x.level != Level::Total), "{got:#?}");
    let store: Vec<&Alert> = got.iter().filter(|x| &*x.key == "web").collect();
    assert_eq!(store.len(), 1, "{got:#?}");
    assert_eq!(store[0].kind, AlertKind::Spike);
    assert_eq!(store[0].children.len(), 9, "{got:#?}");
}

#[test]
fn a_sku_that_spiked_within_its_stores_spike_calls_no_level_shift_as_it_ends() {
    // The store sells three times its usual for three windows; one SKU
    // stays half again above its usual for a while after. Its change
    // detector filled up inside the store's spike: no level shift of
    // its own.
    let got = store_run(
        |i| if i < 43 { 3.0 } else { 1.0 },
        |i, f| {
            if (43..50).contains(&i) && moves_with("sku00|web", f) {
                f.actual.units += 20;
            }
        },
    );
    assert_one_store_spike(&got, 40);
}

/// Forty quiet windows of [`store_window`], then twenty of
/// [`store_window_at`] at `f(i)` times the usual, every series of
/// window `i` edited by `edit`: the alerts of those twenty.
fn store_run(f: impl Fn(i64) -> f64, mut edit: impl FnMut(i64, &mut Forecast)) -> Vec<Alert> {
    let mut a = quiet_store(50);
    let mut got = Vec::new();
    for i in 40..60 {
        let mut w = store_window_at(i, f(i), 50);
        for node in w.iter_mut() {
            edit(i, node);
        }
        got.extend(a.process(&w));
    }
    got
}

/// `f` is the SKU `sku`, its category `toys|web`, the store or the
/// total (what moves when that SKU sells more).
fn moves_with(sku: &str, f: &Forecast) -> bool {
    match f.level {
        Level::SkuStore => &*f.key == sku,
        Level::CategoryStore => &*f.key == "toys|web",
        _ => f.level == Level::Store || f.level == Level::Total,
    }
}

/// The only alert is the store's spike, at minute `at`.
fn assert_one_store_spike(got: &[Alert], at: i64) {
    assert_eq!(
        kinds_by_minute(got),
        vec![(AlertKind::Spike, at)],
        "{got:#?}"
    );
    assert_eq!(&*got[0].key, "web");
}

#[test]
fn a_store_spiking_after_drifting_with_a_skus_move_raises_its_spike() {
    // One SKU sells 2.25 times its usual from minute 40 on (its own alert, which
    // covers the store's small rise with it); at minute 46 the whole
    // store sells three times its usual for three windows: a spike of
    // the store's own, not a window of the SKU's move.
    let got = store_run(
        |i| if (46..49).contains(&i) { 3.0 } else { 1.0 },
        |i, f| {
            if i >= 40 && moves_with("sku00|web", f) {
                f.actual.units += 50;
            }
        },
    );
    let store: Vec<_> = got
        .iter()
        .filter(|a| a.level == Level::Store)
        .map(|a| (a.kind, a.window_start_ms / 60_000))
        .collect();
    assert!(
        got.iter()
            .any(|a| &*a.key == "sku00|web" && a.window_start_ms < 46 * 60_000),
        "{got:#?}"
    );
    assert_eq!(store, vec![(AlertKind::Spike, 46)], "{got:#?}");
}

#[test]
fn a_category_lagging_its_stores_spike_keeps_no_level_shift_from_it() {
    // The store sells three times its usual for three windows; one
    // category stays above its band a window longer (its forecast
    // lagging) and is its store's child all along. Its change detector
    // filled up inside the store's spike: a later window just outside
    // its band is no level shift.
    let got = store_run(
        |i| if i < 43 { 3.0 } else { 1.0 },
        |i, f| {
            let extra = match i {
                43 => 30,
                47 => 35,
                _ => 0,
            };
            if moves_with("sku01|web", f) {
                f.actual.units += extra;
            }
        },
    );
    assert_one_store_spike(&got, 40);
}

#[test]
fn the_end_of_a_store_spike_on_promotion_is_its_recovery() {
    // A third of the store's lines are on promotion when it sells half
    // again its usual for three windows (its SKUs, on no promotion,
    // with it): once its categories have moved for two windows the
    // promotion no longer explains it, and the store's spike is raised
    // (on its second window). Its forecast follows the spike up; the
    // windows back at the usual level are the spike's end, no drop.
    let mut prev = 0.0;
    let got = store_run(
        |i| if (45..48).contains(&i) { 1.5 } else { 1.0 },
        |i, f| {
            if f.level != Level::Store {
                return;
            }
            f.actual.promo_share = 0.35;
            if let Some(e) = f.expected.as_mut().filter(|_| (48..52).contains(&i)) {
                (e.p10, e.p50, e.p90) = (0.9 * prev - 1.0, prev, 1.1 * prev + 1.0);
            }
            prev = f.actual.units as f64;
        },
    );
    assert_one_store_spike(&got, 46);
}

#[test]
fn the_end_of_a_store_spike_the_totals_promotions_seemed_to_explain_is_its_recovery() {
    // Seed 25's total had 36% of its lines on promotion when web-uk
    // tripled for three windows (here: doubled for one): the promotions seemed to explain the total's rise, so its
    // windows were kept out of its excursions, and once the spike was over
    // its forecast, which had followed it, read the usual level as a drop
    // and then a level shift. The store's spike accounts for the total's
    // move, and the windows back at the usual level are its end.
    // The total is the store's units and more (a third as much again,
    // steady), against the same band as the store's: the store is most of
    // it.
    let (mut prev, mut store) = (0.0, 0);
    let got = store_run(
        |i| if i == 45 { 2.0 } else { 1.0 },
        |i, f| {
            if f.level == Level::Store {
                store = f.actual.units;
            }
            if f.level != Level::Total {
                return;
            }
            f.actual.units = store + 90;
            if i >= 45 {
                f.actual.promo_share = 0.35;
            }
            let p50 = if (46..50).contains(&i) { prev } else { 360.0 };
            if let Some(e) = f.expected.as_mut() {
                (e.p10, e.p50, e.p90) = (0.9 * p50 - 1.0, p50, 1.1 * p50 + 1.0);
            }
            prev = f.actual.units as f64;
        },
    );
    assert_one_store_spike(&got, 45);
}

#[test]
fn a_move_back_after_a_spike_the_forecast_caught_up_with_is_its_recovery() {
    // Seed 5's total rose with app-de's tripling at 21:05; its forecast
    // caught up while the spike went on, so two windows inside the band
    // ended the total's excursion, and when the spike ended at 21:20 the
    // total's forecast, still high, read the usual level as a drop and a
    // level shift. A move back within a spike's length of the end of an
    // alerted move is its recovery. Here a store doubles for three
    // windows from minute 40, its forecast following from the second.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..60i64 {
        let units = if (40..43).contains(&i) { 200 } else { 100 } + wobble(i);
        let p50 = if (41..46).contains(&i) { 200.0 } else { 100.0 };
        got.extend(a.process(&[fc(i * 60_000, units, p50 - 10.0, p50, p50 + 10.0)]));
    }
    assert_eq!(kinds_by_minute(&got), [(AlertKind::Spike, 40)], "{got:#?}");
}

#[test]
fn one_sku_breaking_alone_alerts_on_that_sku() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let window =
        |i: i64, broken: bool| toys_window(i, if broken { 0 } else { 40 + wobble(i) }, 0.0);
    for i in 0..40 {
        assert!(a.process(&window(i, false)).is_empty());
    }
    let got = a.process(&window(40, true));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "lego|web");
    assert_eq!(got[0].kind, AlertKind::DropToZero);
    assert!(got[0].children.is_empty());
}

/// One window of category `toys|web` with SKUs `lego` (`lego` units,
/// `promo` of its lines on promotion) and `duplo` (400 units).
fn toys_window(i: i64, lego: i64, promo: f64) -> Vec<Forecast> {
    let t = i * 60_000;
    let mut sku = node(Level::SkuStore, "lego|web", Some("toys|web"), t, lego, 40.0);
    sku.actual.promo_share = promo;
    let duplo = 400 + wobble(i);
    let other = node(
        Level::SkuStore,
        "duplo|web",
        Some("toys|web"),
        t,
        duplo,
        400.0,
    );
    let mut cat = node(
        Level::CategoryStore,
        "toys|web",
        Some("web"),
        t,
        lego + duplo,
        440.0,
    );
    // The category's share on promotion: lego's lines among both SKUs'.
    cat.actual.promo_share = promo / 3.0;
    vec![sku, other, cat]
}

/// One window of category `toys|web`: its best seller `lego|web`
/// (usually 300 units), other SKUs with forecasts (key, units, median),
/// `rest` units of SKUs too small to be forecast, and the category's
/// median `cat_p50`.
fn lego_and_rest(
    t: i64,
    lego: i64,
    skus: &[(&str, i64, f64)],
    rest: i64,
    cat_p50: f64,
) -> Vec<Forecast> {
    let mut v = vec![node(
        Level::SkuStore,
        "lego|web",
        Some("toys|web"),
        t,
        lego,
        300.0,
    )];
    let mut units = lego + rest;
    for &(key, u, p50) in skus {
        v.push(node(Level::SkuStore, key, Some("toys|web"), t, u, p50));
        units += u;
    }
    v.push(node(
        Level::CategoryStore,
        "toys|web",
        Some("web"),
        t,
        units,
        cat_p50,
    ));
    v
}

#[test]
fn a_category_shift_seen_only_in_its_best_seller_is_the_categorys() {
    // Toys: lego sells 300 a window, duplo 10, and SKUs too small to be
    // forecast here 190 more. When the category halves, lego is the one
    // SKU that breaks and accounts for 60% of the move; but the rest
    // fell by half too, so the category is the root cause, not lego.
    let window = |i: i64, f: f64| {
        let lego = ((300 + wobble(i)) as f64 * f) as i64;
        let duplo = (10.0 * f) as i64;
        let rest = ((190 + wobble(i + 3)) as f64 * f) as i64;
        lego_and_rest(i * 60_000, lego, &[("duplo|web", duplo, 10.0)], rest, 500.0)
    };
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&window(i, 1.0)).is_empty());
    }
    let got = a.process(&window(40, 0.5));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "toys|web", "{got:#?}");
    assert!(got[0].children.iter().any(|c| &*c.key == "lego|web"));
}

#[test]
fn a_small_noisy_rest_that_rose_nearer_its_best_sellers_ratio_makes_the_category_the_cause() {
    // Toys: lego sells 300 a window and the rest of the category 45.
    // In window 40 lego doubles (627) and the rest rises to 67: less
    // than half lego's relative move, but nearer (in a count's standard
    // deviations) to having doubled with it than to not having moved.
    let window = |i: i64| {
        let (lego, rest) = if i == 40 {
            (627, 67)
        } else {
            (300 + wobble(i), 45)
        };
        lego_and_rest(i * 60_000, lego, &[], rest, 345.0)
    };
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&window(i)).is_empty());
    }
    let got = a.process(&window(40));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "toys|web", "{got:#?}");
    assert!(got[0].children.iter().any(|c| &*c.key == "lego|web"));
}

#[test]
fn a_category_shift_first_seen_in_its_best_seller_is_still_called_on_the_category() {
    // Toys: lego sells 300 a window, the rest of the category 20. Both
    // halve from window 40 on, but in that first window the rest only
    // dips (18): lego is the root cause then. In the windows after, the
    // rest's halving is a few units each (not sure in any one window),
    // and the category's level shift must not defer to lego's shift
    // (already called, going on silently) and go unsaid.
    let window = |i: i64| {
        let (f, rest_f) = match i {
            ..40 => (1.0, 1.0),
            40 => (0.5, 0.9),
            _ => (0.5, 0.5),
        };
        let lego = ((300 + wobble(i)) as f64 * f) as i64;
        lego_and_rest(i * 60_000, lego, &[], (20.0 * rest_f) as i64, 320.0)
    };
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&window(i)).is_empty());
    }
    let got: Vec<Alert> = (40..60).flat_map(|i| a.process(&window(i))).collect();
    assert_eq!(&*got[0].key, "lego|web", "{got:#?}");
    let category: Vec<&Alert> = got
        .iter()
        .filter(|x| &*x.key == "toys|web" && x.kind == AlertKind::LevelShift)
        .collect();
    assert_eq!(category.len(), 1, "{got:#?}");
    assert_eq!(category[0].direction, Direction::Down);
    assert!(category[0].children.iter().any(|c| &*c.key == "lego|web"));
}

#[test]
fn a_category_shift_is_called_on_its_second_window_though_a_small_sku_triples() {
    // Toys rises 1.8x from window 40 on, every SKU with it, and duplo
    // (30 a window) happens to triple. That SKU's 60 extra units are no
    // burst carrying the category's 420: the two windows in a row at
    // the new level confirm the shift on the second.
    let window = |i: i64| {
        let f = if i >= 40 { 1.8 } else { 1.0 };
        let lego = ((300 + wobble(i)) as f64 * f) as i64;
        let duplo = if i >= 40 { 90 } else { 30 + wobble(i + 5) };
        let rest = ((190 + wobble(i + 3)) as f64 * f) as i64;
        lego_and_rest(i * 60_000, lego, &[("duplo|web", duplo, 30.0)], rest, 520.0)
    };
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&window(i)).is_empty());
    }
    let got: Vec<Alert> = (40..50).flat_map(|i| a.process(&window(i))).collect();
    let toys: Vec<Alert> = got
        .iter()
        .filter(|x| &*x.key == "toys|web")
        .cloned()
        .collect();
    assert_eq!(
        kinds_by_minute(&toys),
        [(AlertKind::Spike, 40), (AlertKind::LevelShift, 41)],
        "{got:#?}"
    );
}

#[test]
fn a_drop_the_forecast_half_follows_is_still_one_new_level() {
    // A store selling 400 halves at minute 40 (a first window lower
    // still, 140); the forecast follows partway at once (300). Against
    // that moving forecast the two windows look like different levels
    // (0.35x, then 0.67x); against the expectation before the drop
    // they are about one new level (0.35x and 0.5x): a level shift on
    // the second window.
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        let y = 400 + wobble(i);
        assert!(a
            .process(&[fc(i * 60_000, y, 360.0, 400.0, 440.0)])
            .is_empty());
    }
    let mut got = a.process(&[fc(40 * 60_000, 140, 360.0, 400.0, 440.0)]);
    got.extend(a.process(&[fc(41 * 60_000, 200, 270.0, 300.0, 330.0)]));
    assert_eq!(
        kinds_by_minute(&got),
        [(AlertKind::Drop, 40), (AlertKind::LevelShift, 41)],
        "{got:#?}"
    );
}

#[test]
fn a_promotion_spike_and_the_category_it_lifts_raise_nothing() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let window = |i: i64, promo: bool| {
        if promo {
            toys_window(i, 400, 0.9)
        } else {
            toys_window(i, 40 + wobble(i), 0.0)
        }
    };
    for i in 0..40 {
        assert!(a.process(&window(i, false)).is_empty());
    }
    for i in 40..46 {
        let got = a.process(&window(i, true));
        assert!(got.is_empty(), "window {i}: {got:#?}");
    }
    // The same jump without a promotion is a spike on the SKU.
    let got = a.process(
        &window(60, false)
            .into_iter()
            .map(|mut f| {
                if &*f.key == "lego|web" {
                    f.actual.units = 400;
                }
                f
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "lego|web");
}

#[test]
fn a_category_that_rises_beyond_its_best_sellers_promotion_is_the_root_cause() {
    // Toys: lego (300 a window) has been on promotion since window 30,
    // selling four times as much, which most of the category's lines
    // are. At window 40 the whole category rises 1.8x: lego on top of
    // its promotion, and duplo and brio (150 each), on no promotion, with
    // it. Lego's promotion cannot explain duplo and brio: one alert, on
    // the category, with them as children (deferring to lego, quiet for
    // its promotion, left them to alert one by one).
    let mut a = Alerting::new(Config::default()).unwrap();
    let window = |i: i64| {
        let promo = i >= 30;
        let f = if i >= 40 { 1.8 } else { 1.0 };
        let scale = |u: i64| (u as f64 * f) as i64;
        let lego = scale(if promo { 1200 } else { 300 } + wobble(i));
        let duplo = scale(150 + wobble(i + 1));
        let brio = scale(150 + wobble(i + 2));
        let mut v = lego_and_rest(
            i * 60_000,
            lego,
            &[("duplo|web", duplo, 150.0), ("brio|web", brio, 150.0)],
            scale(180),
            780.0,
        );
        if promo {
            v[0].actual.promo_share = 1.0;
            v[3].actual.promo_share = 0.67;
        }
        v
    };
    for i in 0..40 {
        let got = a.process(&window(i));
        assert!(got.is_empty(), "window {i}: {got:#?}");
    }
    let got = a.process(&window(40));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(&*got[0].key, "toys|web");
    let children: Vec<&str> = got[0].children.iter().map(|c| &*c.key).collect();
    assert!(
        children.contains(&"duplo|web") && children.contains(&"brio|web"),
        "{children:?}"
    );
}

#[test]
fn status_names_are_the_wire_names() {
    for s in [Status::Open, Status::Retracted, Status::Resolved] {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
}

#[test]
fn a_move_the_forecasts_band_still_covers_is_no_level_shift() {
    // The series moves from 100 to 130 while its forecast, unsure, widens
    // its band to cover it: its residuals alone would call a shift.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..200 {
        let f = if i < 80 {
            fc(i * 60_000, 100 + wobble(i), 90.0, 100.0, 110.0)
        } else {
            fc(i * 60_000, 130 + wobble(i), 60.0, 100.0, 140.0)
        };
        got.extend(a.process(&[f]));
    }
    assert!(got.is_empty(), "{got:#?}");
    // The same move out of a band that did not widen is a shift.
    let mut a = Alerting::new(Config::default()).unwrap();
    let shifts = (0..200)
        .flat_map(|i| {
            let y = if i < 80 { 100 } else { 130 } + wobble(i);
            a.process(&[fc(i * 60_000, y, 90.0, 100.0, 110.0)])
        })
        .filter(|x| x.kind == AlertKind::LevelShift)
        .count();
    assert_eq!(shifts, 1);
}

#[test]
fn a_spike_every_day_at_the_same_time_is_the_series_shape() {
    // A rush at 10:00 every day that the forecast never learns: news on
    // the first two days, the series' shape from the third; a spike at
    // another time on the fourth day still alerts.
    let mut a = Alerting::new(Config::default()).unwrap();
    let day = 1440i64;
    let mut at = Vec::new();
    for i in 0..4 * day {
        let y = if i % day == 600 || i == 3 * day + 900 {
            200
        } else {
            100 + wobble(i)
        };
        for x in a.process(&[fc(i * 60_000, y, 90.0, 100.0, 110.0)]) {
            assert_eq!(x.kind, AlertKind::Spike, "{x:#?}");
            at.push(x.window_start_ms / 60_000);
        }
    }
    assert_eq!(at, vec![600, day + 600, 3 * day + 900]);

    // A rush whose minute wanders by up to a quarter of an hour from the
    // day before's and the day before that's is the shape all the same.
    let mut a = Alerting::new(Config::default()).unwrap();
    let rush = [600, day + 608, 2 * day + 595, 3 * day + 604];
    let mut at = Vec::new();
    for i in 0..4 * day {
        let y = if rush.contains(&i) || i == 3 * day + 900 {
            200
        } else {
            100 + wobble(i)
        };
        for x in a.process(&[fc(i * 60_000, y, 90.0, 100.0, 110.0)]) {
            at.push(x.window_start_ms / 60_000);
        }
    }
    assert_eq!(at, vec![600, day + 608, 3 * day + 900]);
}

#[test]
fn a_shift_that_goes_back_is_resolved_not_raised_again() {
    // A forecast that follows the level (an EWMA of the actuals).
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    let mut p50 = 100.0f64;
    for i in 0..400 {
        let base = if (80..200).contains(&i) { 180 } else { 100 };
        let y = base + wobble(i);
        let (lo, hi) = (p50 - 10.0 - 0.05 * p50, p50 + 10.0 + 0.05 * p50);
        got.extend(a.process(&[fc(i * 60_000, y, lo, p50, hi)]));
        p50 += 0.1 * (y as f64 - p50);
    }
    let shift: Vec<&Alert> = got
        .iter()
        .filter(|x| x.kind == AlertKind::LevelShift && x.status == Status::Open)
        .collect();
    assert_eq!(shift.len(), 1, "{got:#?}");
    assert_eq!(shift[0].direction, Direction::Up);
    let done: Vec<&Alert> = got
        .iter()
        .filter(|x| x.status == Status::Resolved)
        .collect();
    assert_eq!(done.len(), 1, "{got:#?}");
    assert_eq!(done[0].id, shift[0].id);
    assert!(
        done[0].explanation.contains("ended"),
        "{}",
        done[0].explanation
    );
}

#[test]
fn promotions_beyond_the_usual_explain_a_rise_when_the_rest_did_not_rise() {
    // A store that sells 100 a window, 0 or 30% of its lines usually on
    // promotion, jumps to 180 with 45% on promotion: 99 units outside
    // promotion lines.
    let run = |usual: f64, share: f64| {
        let mut a = Alerting::new(Config::default()).unwrap();
        for i in 0..60 {
            let mut f = fc(i * 60_000, 100 + wobble(i), 90.0, 100.0, 110.0);
            f.actual.promo_share = usual;
            assert!(a.process(&[f]).is_empty());
        }
        let mut f = fc(60 * 60_000, 180, 90.0, 100.0, 110.0);
        f.actual.promo_share = share;
        a.process(&[f])
    };
    assert!(run(0.0, 0.45).is_empty(), "the promoted lines are the rise");
    assert_eq!(run(0.0, 0.0).len(), 1, "no promotion: a spike");
    // 99 outside promotion lines against the usual 70: a spike.
    assert_eq!(run(0.3, 0.45).len(), 1, "more than the promotions explain");
    // A series of 1000 with a wide band (900-1100, its top and margin
    // 1200) sells 1250 with 4.5% of its lines on promotion, usually
    // none: 1194 outside promotion lines, within the top and margin,
    // but a share up 4.5 points cannot lift units by a quarter (at
    // most 5 points at `spike-min-change`): a spike.
    let wide = |share: f64| {
        let mut a = Alerting::new(Config::default()).unwrap();
        for i in 0..60 {
            let f = fc(i * 60_000, 1000 + wobble(i), 900.0, 1000.0, 1100.0);
            assert!(a.process(&[f]).is_empty());
        }
        let mut f = fc(60 * 60_000, 1250, 900.0, 1000.0, 1100.0);
        f.actual.promo_share = share;
        a.process(&[f])
    };
    assert_eq!(wide(0.0).len(), 1, "no promotion: a spike");
    assert_eq!(
        wide(0.045).len(),
        1,
        "a drift in the share explains no spike"
    );
}

#[test]
fn a_store_wide_spike_is_the_stores_even_on_promotion() {
    // Every SKU of the store triples, none on promotion, while the store
    // as a whole happens to report most lines on promotion: the store's
    // spike is not the promotion's, and it is one alert with children.
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        assert!(a.process(&store_window_at(i, 1.0, 40)).is_empty());
    }
    let mut w = store_window_at(40, 3.0, 40);
    for f in w.iter_mut().filter(|f| f.level == Level::Store) {
        f.actual.promo_share = 0.6;
    }
    let got = a.process(&w);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].level, Level::Store);
    assert!(!got[0].children.is_empty());
}

#[test]
fn a_three_window_store_spike_is_one_spike_alert() {
    // Before spike-max-windows, the second window of the spike crossed
    // the CUSUM and called a level shift as well.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..80 {
        let f = if (40..43).contains(&i) { 3.0 } else { 1.0 };
        got.extend(a.process(&store_window_at(i, f, 50)));
    }
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].kind, AlertKind::Spike);
    assert_eq!(got[0].window_start_ms, 40 * 60_000);
}

#[test]
fn a_jump_that_lasts_is_a_spike_then_one_level_shift() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..80 {
        let f = if i >= 40 { 3.0 } else { 1.0 };
        got.extend(a.process(&store_window_at(i, f, 50)));
    }
    let kinds = kinds_by_minute(&got);
    assert_eq!(
        kinds,
        vec![(AlertKind::Spike, 40), (AlertKind::LevelShift, 43)],
        "{got:#?}"
    );
}

#[test]
fn a_shift_too_small_for_two_windows_is_confirmed_by_three() {
    // 100 -> 65: about -3.5 a window, short of the z-threshold over two
    // windows but past it over three.
    let mut a = Alerting::new(Config::default()).unwrap();
    let y = |i| if i >= 80 { 65 } else { 100 } + wobble(i);
    let got = banded(&mut a, 0..100, y, (90.0, 100.0, 110.0));
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds, vec![(AlertKind::LevelShift, 82)], "{got:#?}");
}

/// Feed `a` the store's one-minute window `i`: `y` units, `share` of its
/// lines on promotion, forecast at `p50` in a band of 10 either side.
fn promo_window(a: &mut Alerting, i: i64, (y, p50, share): (i64, f64, f64)) -> Vec<Alert> {
    let mut f = fc(i * 60_000, y, p50 - 10.0, p50, p50 + 10.0);
    f.actual.promo_share = share;
    a.process(&[f])
}

/// A store whose forecast followed a promotion up from 100 to 150 (a
/// third of its lines on promotion) and still expects 150 when it ends.
fn promo_end_run(share_during: f64) -> Vec<Alert> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..80 {
        let window = match i {
            0..40 => (100 + wobble(i), 100.0, 0.0),
            40..60 => (150 + wobble(i), 150.0, share_during),
            // Ended: the forecast still expects the promotion's level.
            _ => (100 + wobble(i), if i < 66 { 150.0 } else { 100.0 }, 0.0),
        };
        got.extend(promo_window(&mut a, i, window));
    }
    got
}

/// A run with a third of the lines on promotion raises nothing, and the
/// same run with none raises a move down (`down`).
fn only_the_promotion_explains<T: std::fmt::Debug>(
    run: impl Fn(f64) -> Vec<T>,
    down: impl Fn(&T) -> bool,
) {
    let got = run(0.35);
    assert!(got.is_empty(), "{got:#?}");
    let got = run(0.0);
    assert!(got.iter().any(down), "{got:#?}");
}

#[test]
fn the_end_of_a_promotion_explains_the_drop_it_leaves() {
    // The same fall with no promotion ending is news.
    only_the_promotion_explains(promo_end_run, |a| a.direction == Direction::Down);
}

/// A store over three hour-long periods of one-minute windows whose
/// forecast carries the day before (here the hour before): on period 1
/// it sold 150 from window 20 to 39 (`share_then` of its lines on
/// promotion), on period 2 it sells its usual 100 there, forecast at 150.
/// The alerts of period 2 (window in the period, kind, direction).
fn promotion_the_period_before_run(share_then: f64) -> Vec<(i64, AlertKind, Direction)> {
    let mut a = Alerting::new(Config {
        recurring_period_ms: 3_600_000,
        ..Config::default()
    })
    .unwrap();
    let mut got = Vec::new();
    for i in 0..180 {
        let (period, w) = (i / 60, i % 60);
        let busy = (20..40).contains(&w);
        let window = match period {
            1 if busy => (150 + wobble(i), 150.0, share_then),
            // Over: the forecast still expects the day before's units.
            2 if busy => (100 + wobble(i), 150.0, 0.0),
            _ => (100 + wobble(i), 100.0, 0.0),
        };
        got.extend(
            promo_window(&mut a, i, window)
                .into_iter()
                .filter(|x| x.status == Status::Open && x.window_start_ms >= 120 * 60_000)
                .map(|x| (x.window_start_ms / 60_000 - 120, x.kind, x.direction)),
        );
    }
    got
}

#[test]
fn a_promotion_the_period_before_explains_the_fall_from_its_forecast() {
    // A third of the lines were on promotion the period before and none
    // are now: the forecast carried the promotion, not the series' level.
    // The same fall from a forecast that carried a rise with no promotion
    // behind it is news.
    only_the_promotion_explains(promotion_the_period_before_run, |&(w, _, d)| {
        w >= 20 && d == Direction::Down
    });
}

#[test]
fn a_level_shift_does_not_hide_a_burst_below_it() {
    // A store drifting up 60% (a level shift by its second window) while
    // one SKU in it bursts 8x in that second window: the SKU's spike is
    // its own alert, not one of the shift's children.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..60 {
        let f = if i >= 40 { 1.6 } else { 1.0 };
        let mut w = store_window_at(i, f, 50);
        if i == 41 {
            for x in w.iter_mut().filter(|x| x.level == Level::SkuStore).take(1) {
                x.actual.units *= 5;
            }
        }
        got.extend(a.process(&w));
    }
    let kinds: Vec<(Level, AlertKind, i64)> = got
        .iter()
        .map(|a| (a.level, a.kind, a.window_start_ms / 60_000))
        .collect();
    assert!(
        kinds.contains(&(Level::Store, AlertKind::LevelShift, 41)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(Level::SkuStore, AlertKind::Spike, 41)),
        "{kinds:?}"
    );
}

#[test]
fn the_end_of_a_spike_the_forecast_followed_is_no_drop() {
    let mut a = Alerting::new(Config::default()).unwrap();
    let band = (90.0, 100.0, 110.0);
    let mut got = banded(&mut a, 0..40, |i| 100 + wobble(i), band);
    got.extend(banded(&mut a, 40..43, |i| 300 + wobble(i), band));
    // The forecast has followed the spike up; sales are back to usual.
    got.extend(a.process(&[fc(43 * 60_000, 100, 280.0, 300.0, 320.0)]));
    got.extend(a.process(&[fc(44 * 60_000, 101, 180.0, 200.0, 220.0)]));
    got.extend(banded(&mut a, 45..60, |i| 100 + wobble(i), band));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].kind, AlertKind::Spike);
}

#[test]
fn a_revision_that_undoes_an_alert_retracts_it() {
    let mut a = Alerting::new(Config::default()).unwrap();
    for i in 0..40 {
        a.process(&[fc(i * 60_000, 100 + wobble(i), 90.0, 100.0, 110.0)]);
    }
    let raised = a.process(&[fc(40 * 60_000, 0, 90.0, 100.0, 110.0)]);
    assert_eq!(raised[0].kind, AlertKind::DropToZero);
    // Late events arrive: the window really sold 98.
    let mut rev = fc(40 * 60_000, 98, 90.0, 100.0, 110.0);
    rev.revision = 1;
    let got = a.process(&[rev.clone()]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, Status::Retracted);
    assert_eq!(got[0].id, raised[0].id);
    // Retracted once only.
    rev.revision = 2;
    assert!(a.process(&[rev]).is_empty());
    // A revision that confirms an alert changes nothing.
    a.process(&[fc(50 * 60_000, 300, 90.0, 100.0, 110.0)]);
    let mut same = fc(50 * 60_000, 310, 90.0, 100.0, 110.0);
    same.revision = 1;
    assert!(a.process(&[same]).is_empty());
}

#[test]
fn utc_formatting() {
    assert_eq!(fmt_utc(1_795_894_920_123), "2026-11-28 19:42");
    assert_eq!(fmt_utc(951_782_400_000), "2000-02-29 00:00");
}

#[test]
fn a_parent_that_moved_with_its_childs_spike_raises_nothing_when_its_forecast_echoes_it() {
    // A store and a noisy total above it (the rest of the total wobbles by
    // up to 1,000 a window), over a 60-window "day". The store triples for
    // three windows from 300: its spike. The total moves with it, by too
    // little for its own noisy score to alert. A day later the total's
    // forecast (seasonal naive: the same window a day earlier) carries the
    // move, and the total, selling as usual, is well under its band for
    // three windows: that is its forecast remembering the store's spike,
    // not a drop or a level shift. (The store's own forecast knew better.)
    let store = |i: i64| {
        if (300..303).contains(&i) {
            6_000
        } else {
            2_000 + wobble(i)
        }
    };
    let total = |i: i64| 8_000 + 120 * ((i * i * 7919 % 17) - 8) + store(i);
    let mut a = sixty_window_day();
    let mut got = Vec::new();
    for i in 0..420 {
        let yesterday = total(i - 60);
        let s = node(
            Level::Store,
            "web",
            Some("total"),
            i * 60_000,
            store(i),
            2_000.0,
        );
        let t = node(
            Level::Total,
            "total",
            None,
            i * 60_000,
            total(i),
            yesterday as f64,
        );
        got.extend(a.process(&[s, t]));
    }
    let on: Vec<_> = got
        .iter()
        .map(|a| (a.level, a.kind, a.window_start_ms / 60_000))
        .collect();
    assert_eq!(on, vec![(Level::Store, AlertKind::Spike, 300)], "{on:?}");
}

#[test]
fn a_step_the_trend_sum_began_before_is_a_level_shift_not_a_trend_break() {
    // A small series (30 units a window, its forecast following within a
    // wide band) steps to 1.8x at window 300. The two windows before it
    // ran 1.25x and 1.1x: the trend CUSUM's run began there, so its
    // deviations rise (a slope of 4 standard errors) though after them
    // they are flat. That is a step, called against the same time one and
    // two "days" earlier: a level shift.
    let mut a = sixty_window_day();
    let mut prev = 30.0;
    let mut got = Vec::new();
    for i in 0..420 {
        let shape = 30.0 + 9.0 * (i as f64 * std::f64::consts::TAU / 60.0).sin();
        let f = match i {
            298 => 1.25,
            299 => 1.1,
            300.. => 1.8,
            _ => 1.0,
        };
        let units = (shape * f).round() as i64 + wobble(i) / 2;
        got.extend(a.process(&[fc(i * 60_000, units, 0.9 * prev, prev, 2.0 * prev)]));
        prev = units as f64;
    }
    let kinds = kinds_by_minute(&got);
    assert_eq!(kinds.len(), 1, "{got:#?}");
    let (kind, at) = kinds[0];
    assert_eq!(kind, AlertKind::LevelShift, "{got:#?}");
    assert!((300..310).contains(&at), "{at}");
}

#[test]
fn the_windows_after_a_step_are_flat_and_a_climbs_keep_rising() {
    let steps = |ratios: &[f64], dir: Direction| {
        let mut t = TrendState::default();
        for &r in ratios {
            t.push_ratios(Some(r), None, 27);
        }
        t.steps_within(dir, ratios.len(), 9, 0.168)
    };
    // Two windows near the usual ratio (0), then 0.6 and holding.
    assert!(steps(
        &[0.05, 0.1, 0.6, 0.62, 0.58, 0.61, 0.6],
        Direction::Up
    ));
    assert!(steps(
        &[-0.05, -0.1, -0.6, -0.62, -0.58, -0.61],
        Direction::Down
    ));
    // ...not the other way.
    assert!(!steps(
        &[0.05, 0.1, 0.6, 0.62, 0.58, 0.61, 0.6],
        Direction::Down
    ));
    // A climb, from the usual ratio or from the allowance.
    let climb: Vec<f64> = (0..12).map(|i| 0.05 * f64::from(i)).collect();
    assert!(!steps(&climb, Direction::Up));
    let climb: Vec<f64> = (0..12).map(|i| 0.17 + 0.03 * f64::from(i)).collect();
    assert!(!steps(&climb, Direction::Up));
    // A jump too small for a step (less than twice the allowance).
    assert!(!steps(&[0.0, 0.05, 0.3, 0.32, 0.3, 0.31], Direction::Up));
    // Too few windows to tell.
    assert!(!steps(&[0.0, 0.6, 0.6], Direction::Up));
}

#[test]
fn a_level_shift_called_against_the_day_before_ends_by_a_move_back_as_far() {
    // A category's night step to 1.8x was called against the same time a
    // day earlier (its move there ln 1.8), when its recent mean had
    // followed the forecast most of the way up (observed 54 against a
    // mean of 50: ln 1.08 by the mean alone). Ten hours later the units
    // fall back to 30 against a mean of 54 (ln 0.56): about as far back
    // as the step went, so the shift resolves.
    let mut a = Alerting::new(Config::default()).unwrap();
    let up = category(fc(300 * 60_000, 54, 40.0, 50.0, 60.0));
    let shift = a.alert(&up, &cand(AlertKind::LevelShift, Direction::Up), vec![]);
    let st = SeriesState {
        mean_y: 50.0,
        ..SeriesState::default()
    };
    a.series.insert((up.level, up.key.clone()), st);
    assert!(a
        .end_of_shift(&up, &shift, (Some((1.8f64.ln(), 6)), false))
        .is_none());
    let moved = a.series[&(up.level, up.key.clone())]
        .shifted
        .as_ref()
        .unwrap()
        .moved;
    assert!((moved - 1.8f64.ln()).abs() < 1e-9, "{moved}");
    let down = category(fc(900 * 60_000, 30, 45.0, 54.0, 63.0));
    let back = a.alert(&down, &cand(AlertKind::LevelShift, Direction::Down), vec![]);
    a.series
        .get_mut(&(up.level, up.key.clone()))
        .unwrap()
        .mean_y = 54.0;
    assert_resolves(
        &a.end_of_shift(&down, &back, (None, false))
            .expect("the step ended"),
        &shift,
        "the level shift up of",
    );
}

#[test]
fn a_parent_does_not_defer_to_a_child_whose_move_is_part_of_its_own_alert() {
    // A category steps to 1.8x at window 300 and stays there; its best
    // seller is 98% of it. In the first window the rest of the category
    // clearly moved too, so the category is the cause: its spike names the
    // best seller. From the next window the rest moves too little to tell
    // (a few units), so the category's level shift would be put down to
    // its best seller, whose window raises nothing (its move is part of
    // the category's spike). The category says it.
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..340 {
        let step = if i >= 300 { 1.8 } else { 1.0 };
        let big = (400.0 * step) as i64 + wobble(i);
        let rest = match i {
            300 => 20,
            301.. => 6,
            _ => 5,
        };
        let sku = |key: &str, units: i64, p50: f64| {
            node(
                Level::SkuStore,
                key,
                Some("toys|web"),
                i * 60_000,
                units,
                p50,
            )
        };
        got.extend(a.process(&[
            sku("lego|web", big, 400.0),
            sku("yoyo|web", rest, 5.0),
            node(
                Level::CategoryStore,
                "toys|web",
                Some("web"),
                i * 60_000,
                big + rest,
                405.0,
            ),
        ]));
    }
    let on: Vec<_> = got
        .iter()
        .map(|a| (&*a.key, a.kind, a.window_start_ms / 60_000))
        .collect();
    assert_eq!(
        on,
        vec![
            ("toys|web", AlertKind::Spike, 300),
            ("toys|web", AlertKind::LevelShift, 301)
        ],
        "{got:#?}"
    );
}

#[test]
fn yesterdays_outage_echoing_in_the_forecast_raises_nothing_today_unless_it_jumps() {
    // Two stores under a total, over a 60-window "day". Store web sells
    // nothing for five windows from 300: its outage. A day later its
    // forecast still carries the outage (40% low for those five windows,
    // as a forecaster that clipped the zeros to its band's bottom would
    // be), and so does the total's. Selling as usual then reads as a
    // spike against that forecast: it is the forecast's echo, not news.
    // Tripling there is news all the same, and so is the other store
    // tripling then (the total's echo does not hide it).
    let run = |web_today: &dyn Fn(i64) -> i64, app_today: &dyn Fn(i64) -> i64| {
        let web = |i: i64| match i {
            300..305 => 0,
            360..420 => web_today(i),
            _ => 2_000 + 20 * wobble(i),
        };
        let app = |i: i64| match i {
            360..420 => app_today(i),
            _ => 2_000 + 20 * wobble(i),
        };
        let dip = |i: i64| (360..365).contains(&i);
        let mut a = sixty_window_day();
        let mut got = Vec::new();
        for i in 0..420 {
            let at = i * 60_000;
            let p50 = if dip(i) { 1_200.0 } else { 2_000.0 };
            let w = node(Level::Store, "web", Some("total"), at, web(i), p50);
            let p = node(Level::Store, "app", Some("total"), at, app(i), 2_000.0);
            let units = 6_000 + web(i) + app(i);
            let t = node(Level::Total, "total", None, at, units, 8_000.0 + p50);
            got.extend(a.process(&[w, p, t]));
        }
        got.iter()
            .map(|a| (a.key.to_string(), a.kind, a.window_start_ms / 60_000))
            .collect::<Vec<_>>()
    };
    let usual = |i: i64| 2_000 + 20 * wobble(i);
    let tripled = |i: i64| if i < 363 { 6_000 } else { usual(i) };
    let outage = ("web".to_string(), AlertKind::DropToZero, 300);
    assert_eq!(run(&usual, &usual), vec![outage.clone()]);
    let spike = |key: &str| (key.to_string(), AlertKind::Spike, 360);
    assert_eq!(run(&tripled, &usual), vec![outage.clone(), spike("web")]);
    assert_eq!(run(&usual, &tripled), vec![outage, spike("app")]);
}

#[test]
fn a_line_straggling_in_during_an_outage_is_the_same_outage() {
    // A store that sells about 10,000 a window stops at window 100; in
    // its fourth window 2 units straggle in (by then its band has widened
    // to take in the zeros: seed 17's web-uk). That window goes on as the
    // outage (a silent drop to zero), as every zero window after the
    // first does, so it takes in the categories that sold a unit each
    // then. Before, it was something else (a level shift here; at seed 17
    // no candidate at all) and the categories alerted drops of their own.
    let mut a = Alerting::new(Config::default()).unwrap();
    let units = |i| {
        if i >= 100 {
            0
        } else {
            10_000 + 300 * wobble(i)
        }
    };
    let got = banded(&mut a, 0..103, units, (9_000.0, 10_000.0, 11_000.0));
    assert_eq!(kinds_by_minute(&got), vec![(AlertKind::DropToZero, 100)]);
    let trickle = fc(103 * 60_000, 2, 4_858.0, 10_621.0, 16_323.0);
    let c = a
        .candidate(0, &trickle, (6.0, None))
        .expect("the outage goes on");
    assert_eq!((c.kind, c.silent), (AlertKind::DropToZero, true));
    // Selling a few percent of the usual is no longer the outage.
    let back = fc(104 * 60_000, 500, 4_858.0, 10_621.0, 16_323.0);
    assert!(a
        .candidate(0, &back, (6.0, None))
        .is_none_or(|c| c.kind != AlertKind::DropToZero));
}

#[test]
fn a_move_back_more_than_a_period_after_a_shift_is_news_of_its_own() {
    // A level shift down (a move of -0.6 against the recent mean) is
    // remembered; a move up about as far ends it within a period (of a
    // 60-window "day" here), but not 90 or 150 windows later: by then the
    // forecast has a season of the new level, the day before holds it,
    // and the move is news. Seed 17's cat-18|web-uk doubled over a morning
    // 2.6 days after a level shift down, and was told only that the shift
    // had ended; seed 4's cat-14|web-de halved at noon 47 hours after a
    // warm-up shift up whose end at night went unseen, and its halving
    // was sent as that shift's end.
    let mut a = sixty_window_day();
    let down = fc(100 * 60_000, 55, 90.0, 100.0, 110.0);
    let shift = a.alert(&down, &cand(AlertKind::LevelShift, Direction::Down), vec![]);
    let mut end = |at: i64| {
        let up = category(fc(at * 60_000, 100, 45.0, 55.0, 65.0));
        let back = a.alert(&up, &cand(AlertKind::LevelShift, Direction::Up), vec![]);
        end_with(
            &mut a,
            &up,
            &back,
            55.0,
            (&shift, -0.6),
            TrendState::default(),
        )
    };
    assert!(end(150).is_some_and(|d| d.status == Status::Resolved));
    assert!(end(190).is_none());
    assert!(end(250).is_none());
}

#[test]
fn a_childs_level_shift_within_its_parents_alerted_shift_is_no_root_cause() {
    // Seed 13's cat-18|web-de shifted up 1.8x and was alerted; 25 minutes
    // on, its forecast had followed the rest of the category but not yet
    // its best seller, whose own change detector then called a shift up.
    let cat = node(Level::CategoryStore, "c|s", Some("s"), 0, 167, 119.5);
    let sku = node(Level::SkuStore, "k|s", Some("c|s"), 0, 69, 31.8);
    let group = [&cat, &sku];
    let decide = |parent: Candidate| {
        let cands = [
            parent,
            Candidate {
                idx: 1,
                ..cand(AlertKind::LevelShift, Direction::Up)
            },
        ];
        let groups = root_cause::Groups::new(&group, &cands, &mut None);
        let cfg = Config::default();
        root_cause::root_causes(&cfg, &group, &cands, &groups, &[0, 1], &Default::default()).1[0]
    };
    // A new move of the category that the SKU carries: the SKU is the
    // root cause, the category defers to it...
    assert!(decide(cand(AlertKind::LevelShift, Direction::Up)));
    // ...but going on with the move its own alert told, the category
    // keeps the SKU's shift as its share of that move.
    assert!(!decide(Candidate {
        silent: true,
        cover: Cover::Own,
        ..cand(AlertKind::LevelShift, Direction::Up)
    }));
}

#[test]
fn the_rest_of_a_category_moving_with_its_best_seller_over_a_shifts_windows_makes_it_the_root() {
    // Seed 24's cat-03|store-london halved at 09:05, its best seller (four
    // fifths of it) with it. In the window its level shift was called the
    // other 26 units sold 17: 1.7 standard deviations of a count, short of
    // the 2 a level shift's rest must move in one window, so the category
    // deferred to its SKU alone. Over the shift's two windows the rest is
    // 2.5 down.
    let (w, now) = (300_000, 300_000);
    let cat = node(Level::CategoryStore, "c|s", Some("s"), now, 68, 141.0);
    let sku = node(Level::SkuStore, "k|s", Some("c|s"), now, 51, 115.0);
    let group = [&cat, &sku];
    let cands = [
        cand(AlertKind::LevelShift, Direction::Down),
        Candidate {
            idx: 1,
            ..cand(AlertKind::LevelShift, Direction::Down)
        },
    ];
    // The category's and the SKU's window before this one (units, median).
    let deferred = |before: Option<((f64, f64), (f64, f64))>| {
        let mut series: FxHashMap<SeriesKey, SeriesState> = FxHashMap::default();
        for (f, prev) in [(&cat, before.map(|b| b.0)), (&sku, before.map(|b| b.1))] {
            let st = series.entry((f.level, f.key.clone())).or_default();
            if let Some((y, p50)) = prev {
                st.remember_deviation(now - w, y, p50);
            }
            st.remember_deviation(now, f.actual.units as f64, e_p50(f));
        }
        let groups = root_cause::Groups::new(&group, &cands, &mut None);
        let cfg = Config::default();
        root_cause::root_causes(&cfg, &group, &cands, &groups, &[0, 1], &series).1[0]
    };
    // This window alone: the SKU is the root cause.
    assert!(deferred(None));
    // The window before, the category and the rest of it down too: the
    // category moved as a whole.
    assert!(!deferred(Some(((70.0, 140.0), (53.0, 114.0)))));
    // The window before, the category down but the rest of it where it
    // was expected: still the SKU's move.
    assert!(deferred(Some(((87.0, 140.0), (61.0, 114.0)))));
    // The window before, the category where it was expected: no window of
    // its move.
    assert!(deferred(Some(((138.0, 140.0), (112.0, 114.0)))));
}

/// A category and one of its SKUs over 140 one-minute windows: in window
/// `i`, `w(i)` gives each one's units and forecast median (category
/// first); the alerts raised (asserting the category raised a level
/// shift) and those on the SKU.
fn category_and_sku(w: impl Fn(i64) -> ((i64, f64), (i64, f64))) -> Vec<Alert> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..140i64 {
        let t = i * 60_000;
        let ((cat_y, cat_p50), (sku_y, sku_p50)) = w(i);
        got.extend(a.process(&[
            node(Level::CategoryStore, "c|s", Some("s"), t, cat_y, cat_p50),
            node(Level::SkuStore, "k|s", Some("c|s"), t, sku_y, sku_p50),
        ]));
    }
    assert!(
        got.iter()
            .any(|x| &*x.key == "c|s" && x.kind == AlertKind::LevelShift),
        "{got:#?}"
    );
    got.retain(|x| &*x.key == "k|s");
    got
}

#[test]
fn a_skus_move_inside_its_categorys_alerted_shift_is_part_of_it() {
    // Seed 5's cat-05|web-uk shifted up 1.8x at 09:05 and was alerted;
    // its SKU sku-00021, on promotion then, came off it at 13:00 selling
    // 1.8x its old base demand: a spike and a level shift of its own
    // before, part of its category's move now. Here the category (median
    // 1,000) shifts up at window 60, its forecast following from window
    // 80, and the SKU (median 100) sells `sku(i)` from window 100.
    let run = |sku: &dyn Fn(i64) -> i64| {
        category_and_sku(|i| {
            let sku_y = if i >= 100 {
                sku(i)
            } else {
                100 + wobble(i) / 2
            };
            let cat_y = if i >= 60 { 1800 } else { 1000 } + wobble(i + 3) + sku_y - 100;
            let cat_p50 = if i >= 80 { 1800.0 } else { 1000.0 };
            ((cat_y, cat_p50), (sku_y, 100.0))
        })
    };
    let got = run(&|i| 180 + wobble(i) / 2);
    assert!(got.is_empty(), "{got:#?}");
    // A burst of its own inside that move is news (a SKU selling 6x).
    let got = run(&|i| if i == 100 { 600 } else { 100 + wobble(i) / 2 });
    assert_eq!(kinds_by_minute(&got), [(AlertKind::Spike, 100)], "{got:#?}");
}

#[test]
fn a_sku_back_from_its_categorys_alerted_shift_is_that_shift_ending() {
    // Seed 19's cat-02|web-uk halved at 03:05 and was alerted. At 13:05
    // it came back, but deferred to its promoted best seller, and two
    // other SKUs back at their old level raised level shifts up alone.
    // Here the category (median 1,000) and the SKU (median 100) halve at
    // window 60, their forecasts following from window 80, and at window
    // 100 the SKU is back at `back` (the rest of the category stays).
    let run = |back: i64| {
        category_and_sku(|i| {
            let sku_y = match i {
                100.. => back,
                60.. => 50,
                _ => 100,
            } + wobble(i) / 3;
            let cat_y = if i >= 60 { 450 } else { 900 } + wobble(i + 3) + sku_y;
            let (cat_p50, sku_p50) = if i >= 80 {
                (500.0, 50.0)
            } else {
                (1000.0, 100.0)
            };
            ((cat_y, cat_p50), (sku_y, sku_p50))
        })
    };
    let got = run(100);
    assert!(got.is_empty(), "{got:#?}");
    // Four times where it stood is no move back from the halving.
    let got = run(200);
    assert!(!got.is_empty(), "{got:#?}");
}

#[test]
fn a_parent_just_short_of_its_score_leads_a_child_that_broke_with_it() {
    // A category whose windows swing 15% around its forecast (so a 1.8x
    // window scores under 4, short of the z-threshold of 6) and its best
    // seller, steady until both rise 1.8x in window 100 (seed 20's
    // cat-01|web-uk, 5.7 against 6). Then at window 130 only the rest of
    // the category rises (the SKU stays): a lean candidate with no child
    // breaking with it raises nothing.
    let got = parent_and_child(
        (Level::CategoryStore, "c|s", "s", 1000.0),
        (Level::SkuStore, "k|s", 300.0),
        |i| {
            let swing = if i % 2 == 0 { 150 } else { -150 };
            match i {
                100 => (1800, 540),
                130 => (1800, 300 + wobble(i)),
                _ => (1000 + swing, 300 + wobble(i)),
            }
        },
    );
    let at = |m: i64| -> Vec<(&str, AlertKind, usize)> {
        got.iter()
            .filter(|a| a.window_start_ms == m * 60_000)
            .map(|a| (&*a.key, a.kind, a.children.len()))
            .collect()
    };
    // One alert, on the category, with its best seller among its children
    // (before: the SKU's spike alone).
    assert_eq!(at(100), vec![("c|s", AlertKind::Spike, 1)], "{got:#?}");
    assert!(at(130).is_empty(), "{got:#?}");
}

/// A total selling 20,000 a window give or take `noise` / 2 against a
/// band of +-2%, with (`swelling`) or without swells of its forecast error
/// every 200 windows (up to `amp` above it and back over an hour, a day
/// busier than the forecast knows), then one such swell from window 2290
/// either way: the level shifts raised from window 2290 on.
fn swell_after(swelling: bool, amp: f64, noise: f64) -> Vec<Alert> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut s = 7u64;
    let mut got = Vec::new();
    let swell = |k: i64| {
        if (0..60).contains(&k) {
            amp * (std::f64::consts::PI * k as f64 / 60.0).sin()
        } else {
            0.0
        }
    };
    for i in 0..2400i64 {
        let u = (lcg(&mut s) % 1001) as f64 / 1000.0 - 0.5;
        let usual = if swelling && i < 2200 {
            swell(i % 200)
        } else {
            0.0
        };
        let units = (20000.0 + noise * u + usual + swell(i - 2290)).round() as i64;
        got.extend(a.process(&[fc(i * 60_000, units, 19600.0, 20000.0, 20400.0)]));
    }
    got.retain(|a| a.kind == AlertKind::LevelShift && a.window_start_ms >= 2290 * 60_000);
    got
}

#[test]
fn a_swell_is_a_level_shift_only_where_the_errors_do_not_swell_like_it() {
    // An hour-long swell of up to 16% on noise of +-3%: news on a total
    // whose errors are otherwise independent...
    assert_eq!(swell_after(false, 3200.0, 1200.0).len(), 1);
    // ...but not on one whose forecast errors swell like it every few
    // hours: its scores are correlated, a run of them says less than as
    // many independent ones, and the change detector needs a longer one
    // (without that, this one was a level shift too).
    let got = swell_after(true, 3200.0, 1200.0);
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn a_move_summed_past_the_threshold_but_never_called_is_no_reference_the_next_day() {
    // A 60-window period of one-minute windows with a daily shape. On day
    // 4 the series stands at 1.6x from window 15 and climbs on to 2.4x by
    // window 45 (back at 1x from 46), but the detector cannot call it: the
    // same windows two days before were on promotion (no confirmation of a
    // step), and a day before from window 25 (no comparison while it
    // climbs). Its trend sum passes the threshold all the same. Day 5 is
    // as usual: read against day 4's climb it would be a slide (seed 15's
    // cat-18|app-uk, called a trend break down the morning after an
    // unseen move at night).
    let calls = shaped_calls(
        6,
        |i, shape| {
            let (day, w) = (i / 60, i % 60);
            let f = match (day, w) {
                (4, 15..25) => 1.6,
                (4, 25..46) => 1.6 + 0.8 * (w - 25) as f64 / 20.0,
                _ => 1.0,
            };
            let share = match (day, w) {
                (2, 15..46) | (3, 25..46) => 0.8,
                _ => 0.0,
            };
            Shaped::followed((shape * f).round() + wobble(i) as f64, share)
        },
        |_, _| {},
    );
    // Neither the move (the premise) nor the return from it is called.
    assert!(calls.iter().all(|&(i, _, _)| i < 240), "{calls:?}");
}

#[test]
fn a_categorys_promoted_skus_are_those_on_promotion_now_or_a_period_earlier() {
    // One-minute windows, a period of four.
    let (period, min) = (4 * 60_000, 60_000);
    let sku = |key: &str, start: i64, units: i64, share: f64| {
        let mut f = node(Level::SkuStore, key, Some("cat"), start, units, 1.0);
        f.actual.promo_share = share;
        f
    };
    let mut p = promoted::Promoted::default();
    // A period earlier: a promoted, b and c not.
    let day0 = [
        sku("a", 0, 30, 1.0),
        sku("b", 0, 7, 0.0),
        sku("c", 0, 5, 0.0),
    ];
    p.record(&day0.iter().collect::<Vec<_>>(), period);
    assert_eq!(p.sums("cat", (0, min, period)), Some((30.0, 0.0)));
    // Now: a's promotion is over, b is promoted, c as before, and d, never
    // seen before, is promoted.
    let day1 = [
        sku("a", period, 10, 0.0),
        sku("b", period, 20, 0.5),
        sku("c", period, 6, 0.0),
        sku("d", period, 4, 1.0),
    ];
    p.record(&day1.iter().collect::<Vec<_>>(), period);
    // a, b and d: 10 + 20 + 4 now, 30 + 7 + 0 then.
    assert_eq!(p.sums("cat", (period, min, period)), Some((34.0, 37.0)));
    // A window no promotion touched either day has none; nor has a
    // category never seen.
    let quiet = [sku("c", period + min, 6, 0.0)];
    p.record(&quiet.iter().collect::<Vec<_>>(), period);
    assert_eq!(p.sums("cat", (period + min, min, period)), None);
    assert_eq!(p.sums("other", (period, min, period)), None);
    // Pruned to the series seen since window 5: only c is left.
    p.prune(5);
    let after = [sku("c", period + 2 * min, 6, 1.0)];
    p.record(&after.iter().collect::<Vec<_>>(), period);
    assert_eq!(
        p.sums("cat", (period + 2 * min, min, period)),
        Some((6.0, 0.0))
    );
    assert_eq!(p.sums("cat", (period, min, period)), None);
}

/// Feed a category a 60-window period of one-minute windows for six
/// days: on day 4 one SKU, usually a fifth of its units, is on promotion
/// (2.5x) from window 10 to 49, and the other SKUs climb from 1x at window
/// 20 to 2x at window 45. `sums`: whether the trend detector is told the
/// promoted SKU's units (see `promoted::Promoted`). The calls made on day
/// 4 (window in the day, kind, direction).
fn climb_under_a_promotion(sums: bool) -> Vec<(i64, AlertKind, Direction)> {
    let promoted_on = |day: i64, w: i64| day == 4 && (10..50).contains(&w);
    let calls = shaped_calls(
        6,
        |i, shape| {
            let (day, w) = (i / 60, i % 60);
            let climb = match (day, w) {
                (4, 20..50) => 1.0 + (w - 20).min(25) as f64 / 25.0,
                _ => 1.0,
            };
            let sku = |day: i64| 0.2 * shape * if promoted_on(day, w) { 2.5 } else { 1.0 };
            let rest = 0.8 * shape * climb + wobble(i) as f64;
            let share = if promoted_on(day, w) { 0.4 } else { 0.0 };
            Shaped {
                promoted: (sums && (promoted_on(day, w) || promoted_on(day - 1, w)))
                    .then(|| (sku(day).round(), sku(day - 1).round())),
                ..Shaped::followed((sku(day) + rest).round(), share)
            }
        },
        |_, _| {},
    );
    on_day(calls, 4)
}

#[test]
fn a_climb_under_a_promotion_is_compared_by_the_skus_not_on_promotion() {
    // Without the promoted SKU's units the windows on promotion have no
    // comparison with the day before, and the climb inside them is unseen.
    let got = climb_under_a_promotion(false);
    assert!(got.is_empty(), "{got:?}");
    // With them, the other SKUs are compared like for like: a trend break
    // up, called while it climbs.
    let got = climb_under_a_promotion(true);
    assert!(
        matches!(
            got.first(),
            Some(&(20..=49, AlertKind::TrendBreak, Direction::Up))
        ),
        "{got:?}"
    );
}

/// One window of a test series with a daily shape (see [`shaped_calls`]):
/// its units and share of lines on promotion, its forecast's band and
/// median, and the units of the SKUs below it on promotion then or a
/// period earlier.
struct Shaped {
    y: f64,
    share: f64,
    band: (f64, f64),
    p50: f64,
    promoted: Option<(f64, f64)>,
}

impl Shaped {
    /// A window whose forecast follows the series: never a surprise.
    fn followed(y: f64, share: f64) -> Shaped {
        Shaped {
            y,
            share,
            band: (0.0, 1e9),
            p50: y,
            promoted: None,
        }
    }
}

/// Feed a trend state `days` 60-window periods of one-minute windows,
/// window `i` as `window(i, shape)` makes it (`shape`: the series' usual
/// units there, with a daily shape), and `after(t, i)` after each. The
/// calls made (window number, kind, direction).
fn shaped_calls(
    days: i64,
    window: impl Fn(i64, f64) -> Shaped,
    mut after: impl FnMut(&mut TrendState, i64),
) -> Vec<(i64, AlertKind, Direction)> {
    let cfg = Config::default();
    let (width, period) = (60_000, 3_600_000);
    let mut t = TrendState::default();
    let mut calls = Vec::new();
    let mut scratch = Vec::new();
    for i in 0..60 * days {
        let shape = 300.0 + 250.0 * (i as f64 * std::f64::consts::TAU / 60.0).sin();
        let x = window(i, shape);
        let w = TrendWindow {
            at: (i * width, width, period),
            y: x.y,
            share: x.share,
            band: x.band,
            p50: x.p50,
            own: false,
            jump: false,
            scored: true,
            promoted: &|| x.promoted,
        };
        let (mut verdict, mut silent) = (None, false);
        t.observe(&cfg, &w, &mut verdict, &mut silent, &mut scratch);
        if let Some((kind, d, _)) = verdict.filter(|_| !silent) {
            calls.push((i, kind, d));
        }
        after(&mut t, i);
    }
    calls
}

/// The calls of [`shaped_calls`] on day `day`, by window in the day.
fn on_day(calls: Vec<(i64, AlertKind, Direction)>, day: i64) -> Vec<(i64, AlertKind, Direction)> {
    calls
        .into_iter()
        .filter(|c| c.0 / 60 == day)
        .map(|(i, k, d)| (i % 60, k, d))
        .collect()
}

/// Four periods of a series with a daily shape, times `factor(w)` in
/// window `w` of day 3, against a forecast whose median is the shape and
/// whose band is `band` times it; `after(t, w)` runs after each window of
/// day 3. The calls made on day 3 (window in the day, kind, direction).
fn day_three_calls(
    factor: impl Fn(i64) -> f64,
    band: (f64, f64),
    mut after: impl FnMut(&mut TrendState, i64),
) -> Vec<(i64, AlertKind, Direction)> {
    let calls = shaped_calls(
        4,
        |i, shape| {
            let f = if i / 60 == 3 { factor(i % 60) } else { 1.0 };
            Shaped {
                y: (shape * f).round() + wobble(i) as f64,
                share: 0.0,
                band: (band.0 * shape, band.1 * shape),
                p50: shape,
                promoted: None,
            }
        },
        |t, i| {
            if i / 60 == 3 {
                after(t, i % 60);
            }
        },
    );
    on_day(calls, 3)
}

/// A series with a daily shape triples for three windows on day 3 (its
/// store spiking), with no verdict of its own. `with_ancestor`: each of
/// those windows is told it moved with an ancestor's spike (as
/// `Alerting::moved_below` does). The calls made on day 3.
fn three_windows_up_with(with_ancestor: bool) -> Vec<(i64, AlertKind, Direction)> {
    let spiking = |w: i64| (20..23).contains(&w);
    let factor = |w| if spiking(w) { 3.0 } else { 1.0 };
    day_three_calls(factor, (0.8, 1.2), |t, w| {
        if spiking(w) && with_ancestor {
            t.moved_with_another();
        }
    })
}

#[test]
fn three_windows_that_moved_with_an_ancestors_spike_are_no_step() {
    // On its own, three windows at 3x the day before are a step...
    let got = three_windows_up_with(false);
    assert!(
        got.contains(&(22, AlertKind::LevelShift, Direction::Up)),
        "{got:?}"
    );
    // ...but moving with its store's spike they are the store's move (seed
    // 24's cat-04|web-uk and cat-19|web-uk with web-uk's 3x spike).
    let got = three_windows_up_with(true);
    assert!(
        got.iter().all(|c| c.1 != AlertKind::LevelShift || c.0 < 20),
        "{got:?}"
    );
}

#[test]
fn a_step_inside_a_band_far_wider_than_the_counts_noise_is_still_a_surprise() {
    // A series with a daily shape whose forecast follows it with a band
    // from a fifth to twice its median (a night's band set by the
    // evening's residuals), halving from window 20 of day 3 on. Inside
    // the band, but 18 against 62 is far outside counts' noise: the step
    // test calls it within a few windows.
    let halved = |w| if w >= 20 { 0.5 } else { 1.0 };
    let calls = day_three_calls(halved, (0.2, 2.0), |_, _| {});
    assert_eq!(
        calls.first(),
        Some(&(22, AlertKind::LevelShift, Direction::Down)),
        "{calls:?}"
    );
}

#[test]
fn an_echo_above_hides_no_child_that_moved_twice_as_far() {
    // A store of 2,000 units a window with one category of 200, both
    // forecast by the mean of the same window one and two 60-window days
    // earlier. At window 300 the store dips to 1,200 (its other
    // categories: a drop, alerted). A day later its forecast still
    // carries half the dip (1,600), so the store selling as usual reads as
    // a spike: the echo of yesterday's drop, silent. Then the category
    // doubles from window 360: the store's 2,200 is an echo still, but
    // the category moved twice as far in log terms, and that is news of
    // its own (seed 12's cat-12|app-uk x1.8 step, hidden under app-uk).
    let mut a = sixty_window_day();
    let units = |i: i64| {
        let cat = if (360..380).contains(&i) { 400 } else { 200 } + wobble(i);
        let others = if i == 300 { 1000 } else { 1800 + wobble(i + 7) };
        (others + cat, cat)
    };
    let p50 = |i: i64, of: &dyn Fn(i64) -> i64| {
        if i >= 120 {
            (of(i - 60) + of(i - 120)) as f64 / 2.0
        } else {
            of(i) as f64
        }
    };
    let mut got = Vec::new();
    for i in 0..400i64 {
        let (store, cat) = units(i);
        let t = i * 60_000;
        got.extend(a.process(&[
            node(
                Level::Store,
                "web-uk",
                Some("total"),
                t,
                store,
                p50(i, &|j| units(j).0),
            ),
            node(
                Level::CategoryStore,
                "cat|web-uk",
                Some("web-uk"),
                t,
                cat,
                p50(i, &|j| units(j).1),
            ),
        ]));
    }
    let opened = |key: &str, from: i64| {
        got.iter()
            .filter(|a| a.status == Status::Open && &*a.key == key && a.window_start_ms >= from)
            .map(|a| (a.kind, a.window_start_ms / 60_000))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        opened("web-uk", 300 * 60_000),
        vec![(AlertKind::Drop, 300)],
        "{got:#?}"
    );
    let cat = opened("cat|web-uk", 360 * 60_000);
    assert!(
        cat.first().is_some_and(|&(_, w)| w == 360),
        "{cat:?} {got:#?}"
    );
}

/// The four categories in four stores of [`category_down_by_half`] and
/// [`a_skus_burst`] in window `i`: (category, store, key, lines), about
/// 60 lines each.
fn four_by_four(i: i64) -> impl Iterator<Item = (i64, i64, String, i64)> {
    (0..4)
        .flat_map(|c| (0..4).map(move |s| (c, s)))
        .map(move |(c, s)| (c, s, format!("c{c}|s{s}"), 60 + wobble(i + 5 * c + 11 * s)))
}

/// 420 windows of the four-by-four table with a best seller `k0` of
/// `c0` in every store (about 30 lines), each series forecast by
/// [`Lagging`]: `series(i, category key, its lines, its best seller's)`
/// gives a category's lines in window `i`, its best seller's (none: no
/// window) and the category's band (the SKU's is 0.75-1.25 times its
/// forecast). The alerts raised, with their window.
fn four_by_four_run(
    series: impl Fn(i64, &str, i64, i64) -> (i64, Option<i64>, (f64, f64)),
) -> Vec<(Alert, i64)> {
    lagging_run(420, |i, t, lagging| {
        let mut fs = Vec::new();
        for (c, s, cat, y) in four_by_four(i) {
            let (y, sku_y, band) = series(i, &cat, y, 30 + wobble(i + 3 * c + 7 * s) / 2);
            let sku = (Level::SkuStore, format!("k0|s{s}"), cat.clone());
            fs.push(lagging.forecast((Level::CategoryStore, cat, format!("s{s}")), (t, y), band));
            if let Some(sku_y) = sku_y.filter(|_| c == 0) {
                fs.push(lagging.forecast(sku, (t, sku_y), (0.75, 1.25)));
            }
        }
        fs
    })
}

/// `windows` one-minute windows through one stage, window `i` (starting
/// `t`) forecast by `window(i, t, lagging)`, one [`Lagging`] for them all:
/// the alerts raised, with their window.
fn lagging_run(
    windows: i64,
    mut window: impl FnMut(i64, i64, &mut Lagging) -> Vec<Forecast>,
) -> Vec<(Alert, i64)> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut lagging = Lagging::default();
    let mut got = Vec::new();
    for i in 0..windows {
        let fs = window(i, i * 60_000, &mut lagging);
        got.extend(a.process(&fs).into_iter().map(|x| (x, i)));
    }
    got
}

/// Forecasts each series by the mean of its windows three to five before
/// (a forecast that follows a step a few windows late).
#[derive(Default)]
struct Lagging(FxHashMap<String, std::collections::VecDeque<i64>>);

impl Lagging {
    /// The series' (level, key, parent) window starting `t` selling `y`,
    /// its band `(lo, hi)` times the forecast.
    fn forecast(
        &mut self,
        (level, key, parent): (Level, String, String),
        (t, y): (i64, i64),
        (lo, hi): (f64, f64),
    ) -> Forecast {
        let h = self.0.entry(key.clone()).or_insert_with(|| [y; 5].into());
        let m = h.iter().take(3).sum::<i64>() as f64 / 3.0;
        h.pop_front();
        h.push_back(y);
        let mut f = node(level, &key, Some(&parent), t, y, m);
        f.expected = Some(HorizonPoint {
            start_ms: t,
            end_ms: t + 60_000,
            p10: lo * m,
            p50: m,
            p90: hi * m,
        });
        f
    }
}

/// Four categories in four stores selling about 60 lines a window, a
/// best seller of `c0` selling 30 of them in every store, each series
/// forecast by the mean of its windows three to five before (a forecast
/// that follows a step a few windows late; the category's band wide, as
/// at night). From window 300, `c0|s0` sells 30: `outage` is whether its
/// best seller sold none (three zero windows, then none at all, as
/// `stream-core` stops filling a series that stopped), or kept selling
/// while the rest of the category halved. The alerts of `c0|s0` and of
/// the best seller there, by kind and window.
fn category_down_by_half(outage: bool) -> Vec<(AlertKind, &'static str, i64)> {
    let got = four_by_four_run(|i, cat, y, sku_y| {
        let (y, sku_y) = match (cat, i >= 300) {
            ("c0|s0", true) if outage => (y - sku_y, (i < 303).then_some(0)),
            ("c0|s0", true) => (y / 2, Some(sku_y)),
            _ => (y, Some(sku_y)),
        };
        (y, sku_y, (0.4, 1.6))
    });
    got.into_iter()
        .filter_map(|(x, i)| {
            let who = match (x.level, &*x.key) {
                (Level::CategoryStore, "c0|s0") => "category",
                (Level::SkuStore, "k0|s0") => "sku",
                _ => return None,
            };
            Some((x.kind, who, i))
        })
        .collect()
}

#[test]
fn a_categorys_step_down_while_its_best_seller_is_out_is_the_outages() {
    // The best seller's outage is one drop to zero, and its category's
    // step down, still there once the SKU's windows stopped, is no level
    // shift of its own.
    let out = category_down_by_half(true);
    assert!(
        out.contains(&(AlertKind::DropToZero, "sku", 300)),
        "{out:?}"
    );
    assert!(
        !out.iter()
            .any(|x| x.1 == "category" && x.0 == AlertKind::LevelShift),
        "{out:?}"
    );
    // The same step with the best seller selling on is the category's.
    let own = category_down_by_half(false);
    assert!(
        own.iter()
            .any(|x| x.1 == "category" && x.0 == AlertKind::LevelShift),
        "{own:?}"
    );
}

/// Four categories in four stores selling about 60 lines a window, and a
/// SKU `k0` of `c0` in each of `stores` of them selling about 20 lines a
/// window, one, two or three units a line (its units' residuals heavy
/// against a forecast of 40, 15-65). In window 300 it sells five times
/// its lines in store `s0`. The kinds of `k0|s0`'s alerts.
fn a_skus_burst(stores: i64) -> Vec<AlertKind> {
    let mut a = Alerting::new(Config::default()).unwrap();
    let mut got = Vec::new();
    for i in 0..320i64 {
        let t = i * 60_000;
        let mut fs = Vec::new();
        for (c, s, cat, y) in four_by_four(i) {
            fs.push(node(
                Level::CategoryStore,
                &cat,
                Some(&format!("s{s}")),
                t,
                y,
                60.0,
            ));
            if c == 0 && s < stores {
                let lines = (20 + wobble(i + 7 * s) / 2) * if (i, s) == (300, 0) { 5 } else { 1 };
                let mut f = node(Level::SkuStore, &format!("k0|s{s}"), Some(&cat), t, 0, 40.0);
                f.actual.lines = lines;
                f.actual.units = lines * (1 + (i * 13 + s) % 3);
                f.expected = Some(HorizonPoint {
                    start_ms: t,
                    end_ms: t + 60_000,
                    p10: 15.0,
                    p50: 40.0,
                    p90: 65.0,
                });
                fs.push(f);
            }
        }
        got.extend(
            a.process(&fs)
                .into_iter()
                .filter(|x| &*x.key == "k0|s0")
                .map(|x| x.kind),
        );
    }
    got
}

#[test]
fn a_skus_burst_its_own_residuals_play_down_is_a_spike_against_its_peers() {
    // Alone, its burst (five times its lines, 300 units against 40)
    // scores under the threshold by its own heavy residuals.
    assert_eq!(a_skus_burst(1), vec![]);
    // Against the same SKU in three other stores it is far out.
    assert_eq!(a_skus_burst(4), vec![AlertKind::Spike]);
}

/// `c0|s0` of the four-by-four table, and its best seller (half its
/// lines) with it, selling `shape(i).0` times their usual lines in window
/// `i`, its band `shape(i).1` times the forecast (which follows a step a
/// few windows late): its alerts, by kind and window, with their
/// explanation.
fn category_shaped(shape: impl Fn(i64) -> (f64, (f64, f64))) -> Vec<(AlertKind, i64, String)> {
    let got = four_by_four_run(|i, cat, y, sku_y| {
        let (x, band) = if cat == "c0|s0" {
            shape(i)
        } else {
            (1.0, (0.4, 1.6))
        };
        let scaled = |y: i64| (y as f64 * x).round() as i64;
        (scaled(y), Some(scaled(sku_y)), band)
    });
    got.into_iter()
        .filter(|(x, _)| &*x.key == "c0|s0")
        .map(|(x, i)| (x.kind, i, x.explanation))
        .collect()
}

#[test]
fn a_categorys_step_on_top_of_its_own_step_is_a_level_shift_too() {
    // Twice its lines from window 300, 3.6 times from 360, with a band
    // from 340 on as wide as in a promotion: the second step is inside
    // it, and the first one's move goes on in the peer test: it steps
    // further.
    let got = category_shaped(|i| match i {
        360.. => (3.6, (0.4, 2.2)),
        340.. => (2.0, (0.4, 2.2)),
        300.. => (2.0, (0.4, 1.6)),
        _ => (1.0, (0.4, 1.6)),
    });
    let shift = |from: i64| {
        got.iter()
            .find(|&&(k, i, _)| k == AlertKind::LevelShift && (from..from + 4).contains(&i))
    };
    assert!(shift(300).is_some(), "{got:?}");
    // Told against the usual (3.6 times), not against where the first
    // step stood (1.8 times that).
    let second = shift(360).map(|s| s.2.as_str());
    let pct = second
        .and_then(|e| e.split_once("% higher than the category"))
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(pct.is_some_and(|p| p >= 150.0), "{second:?}");
}

#[test]
fn a_categorys_step_at_the_top_of_its_own_climb_is_a_level_shift() {
    // A climb to twice its lines over 36 windows from window 300, and a
    // step on to 3.6 times at 336 (its best seller with it, and the rest
    // of it too), with the band narrow by then: a trend break, then a
    // level shift in place of the spike held silent as part of the
    // climb.
    let got = category_shaped(|i| match i {
        336.. => (3.6, (0.75, 1.25)),
        300.. => (1.0 + (i - 299) as f64 / 36.0, (0.4, 1.6)),
        _ => (1.0, (0.4, 1.6)),
    });
    assert!(
        got.iter()
            .any(|&(k, i, _)| k == AlertKind::TrendBreak && (300..336).contains(&i)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|&(k, i, _)| k == AlertKind::LevelShift && (336..340).contains(&i)),
        "{got:?}"
    );
}

#[test]
fn a_categorys_step_down_with_its_best_seller_is_the_categorys() {
    // Half its lines from window 300, its best seller halving with it
    // (the SKU's move seen against the same SKU in the other stores), the
    // category inside its wide band: the category's level shift, called
    // by the peer test once its evidence is in (about 30 lines a window
    // against 60).
    let got = category_shaped(|i| (if i >= 300 { 0.5 } else { 1.0 }, (0.4, 1.6)));
    assert!(
        got.iter()
            .any(|&(k, i, _)| k == AlertKind::LevelShift && (300..306).contains(&i)),
        "{got:?}"
    );
}

/// The four-by-four table with its stores (each the sum of its
/// categories), every series forecast by [`Lagging`]: `c0|s0` climbs to
/// twice its lines over 36 windows from window 300, and from window
/// `store_from` (if any) store `s0` sells 1.5 times its usual (all its
/// categories, `c0|s0` on top of its climb). The alerts of `c0|s0`, by
/// kind and window.
fn category_climbing_in_a_moving_store(store_from: Option<i64>) -> Vec<(AlertKind, i64)> {
    let got = lagging_run(400, |i, t, lagging| {
        let mut fs = Vec::new();
        let mut stores = [0i64; 4];
        for (_, s, cat, y) in four_by_four(i) {
            let mut x = 1.0;
            if s == 0 && store_from.is_some_and(|from| i >= from) {
                x *= 1.5;
            }
            if cat == "c0|s0" && i >= 300 {
                x *= 1.0 + ((i - 299) as f64 / 36.0).min(1.0);
            }
            let y = (y as f64 * x).round() as i64;
            stores[s as usize] += y;
            let cat = (Level::CategoryStore, cat, format!("s{s}"));
            fs.push(lagging.forecast(cat, (t, y), (0.4, 1.6)));
        }
        for (s, &y) in stores.iter().enumerate() {
            let store = (Level::Store, format!("s{s}"), "total".to_string());
            fs.push(lagging.forecast(store, (t, y), (0.9, 1.1)));
        }
        fs
    });
    got.into_iter()
        .filter(|(x, _)| &*x.key == "c0|s0")
        .map(|(x, i)| (x.kind, i))
        .collect()
}

#[test]
fn a_categorys_climb_against_its_peers_is_its_own_while_its_store_moves() {
    let climbs = |got: &[(AlertKind, i64)]| {
        got.iter()
            .any(|&(k, i)| k == AlertKind::TrendBreak && (300..336).contains(&i))
    };
    // In a store selling as usual: a trend break.
    let alone = category_climbing_in_a_moving_store(None);
    assert!(climbs(&alone), "{alone:?}");
    // In a store that steps up about when the climb is called (its spike,
    // its level shift, the windows that continue it), the store's move
    // does not account for the category's climb against the store's other
    // categories: a trend break all the same.
    for from in 300..=320 {
        let with_store = category_climbing_in_a_moving_store(Some(from));
        assert!(climbs(&with_store), "store from {from}: {with_store:?}");
    }
}
