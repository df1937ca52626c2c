//! Numenta Anomaly Benchmark scoring (NAB v1.1), written from the paper and
//! the benchmark's documented rules:
//!
//! - the first 15% of each file (at most 750 rows) is a probationary period
//!   and not scored;
//! - in an anomaly window only the earliest detection counts, worth the
//!   scaled sigmoid of its relative position (`2 * sigmoid(-5x) - 1`, `x`
//!   from -1 at the left edge to 0 at the right edge), divided by its value at
//!   the left edge and multiplied by the profile's true-positive weight;
//! - a detection outside every window costs the false-positive weight times
//!   the sigmoid of its distance past the previous window (-1 before the
//!   first window or far after one);
//! - a window without a detection costs the false-negative weight;
//! - the corpus score is normalized between the null detector (no
//!   detection: minus the FN weight per window) and the perfect one (plus the
//!   TP weight per window): `100 * (raw - null) / (perfect - null)`.

use serde::Serialize;

/// An application profile: NAB's cost matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// Name as in NAB's `profiles.json`.
    pub name: &'static str,
    /// Weight of a true positive.
    pub tp: f64,
    /// Weight of a false positive.
    pub fp: f64,
    /// Weight of a false negative.
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// NAB's scaled sigmoid.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Rows not scored at the start of a file of `n` rows.
pub fn probation(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// One file's raw score and counts under one profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FileScore {
    /// Raw score.
    pub raw: f64,
    /// Windows caught.
    pub tp: usize,
    /// Detections outside every window.
    pub fp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Windows in the file.
    pub windows: usize,
}

/// Score one file: row timestamps (any monotone unit, as they appear),
/// which rows are detections, and the anomaly windows `[start, end]`
/// (inclusive, in the same unit, in time order).
pub fn score_file(ts: &[i64], detected: &[bool], windows: &[(i64, i64)], p: &Profile) -> FileScore {
    let n = ts.len().min(detected.len());
    let first_at = |t: i64| {
        ts.iter()
            .position(|&x| x == t)
            .or_else(|| ts.iter().position(|&x| x >= t))
    };
    let last_at = |t: i64| {
        ts.iter()
            .position(|&x| x == t)
            .or_else(|| ts.iter().rposition(|&x| x <= t))
    };
    // (left index, right index, width) of every window.
    let bounds: Vec<(usize, usize, f64)> = windows
        .iter()
        .map(|&(s, e)| {
            let l = first_at(s).unwrap_or(0);
            let r = last_at(e).unwrap_or(n.saturating_sub(1)).max(l);
            (l, r, (r - l + 1) as f64)
        })
        .collect();
    let max_tp = scaled_sigmoid(-1.0);
    let skip = probation(n);
    let mut out = FileScore {
        windows: windows.len(),
        ..FileScore::default()
    };
    let mut hit = vec![false; windows.len()];
    let mut wi = 0;
    let mut prev: Option<(usize, f64)> = None;
    for i in 0..n {
        let t = ts[i];
        let mut inside = None;
        if wi < windows.len() {
            let (s, e) = windows[wi];
            if t >= s && t <= e {
                inside = Some(wi);
            } else if t > e {
                prev = Some((bounds[wi].1, bounds[wi].2));
                wi += 1;
            }
        }
        if i < skip || !detected[i] {
            continue;
        }
        match inside {
            Some(w) => {
                if !hit[w] {
                    hit[w] = true;
                    let (_, r, width) = bounds[w];
                    let pos = -((r as f64 - i as f64 + 1.0) / width);
                    out.raw += scaled_sigmoid(pos) * p.tp / max_tp;
                    out.tp += 1;
                }
            }
            None => {
                let u = match prev {
                    Some((r, width)) => scaled_sigmoid((r as f64 - i as f64).abs() / (width - 1.0)),
                    None => -1.0,
                };
                out.raw += u * p.fp;
                out.fp += 1;
            }
        }
    }
    for h in hit {
        if !h {
            out.raw -= p.fn_;
            out.fn_ += 1;
        }
    }
    out
}

/// Normalized corpus score from the files' raw scores.
pub fn normalized(files: &[FileScore], p: &Profile) -> f64 {
    let raw: f64 = files.iter().map(|f| f.raw).sum();
    let windows: usize = files.iter().map(|f| f.windows).sum();
    let null = -p.fn_ * windows as f64;
    let perfect = p.tp * windows as f64;
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

/// Parse NAB's `YYYY-MM-DD HH:MM:SS[.ffffff]` as epoch seconds (UTC).
pub fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let days = salescast_inference::features::days_from_civil(y, m as u32, dd as u32);
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_edges() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-12);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        assert_eq!(probation(4032), 604);
        assert_eq!(probation(22695), 750);
        assert_eq!(parse_ts("1970-01-02 00:00:01.000000"), Some(86_401));
    }

    /// A hand-computed file: 100 rows (probation 15), one window over rows
    /// 40..=49 (width 10).
    #[test]
    fn hand_computed_file() {
        let ts: Vec<i64> = (0..100).collect();
        let w = [(40, 49)];
        let p = &PROFILES[0];
        let mut det = vec![false; 100];
        // Nothing detected: one missed window.
        let s = score_file(&ts, &det, &w, p);
        assert_eq!((s.raw, s.fn_), (-1.0, 1));
        // A detection at the window's left edge earns exactly tpWeight; a
        // second one in the window adds nothing.
        det[40] = true;
        det[45] = true;
        let s = score_file(&ts, &det, &w, p);
        assert!((s.raw - 1.0).abs() < 1e-12, "{s:?}");
        assert_eq!((s.tp, s.fp, s.fn_), (1, 0, 0));
        // A detection at row 44: position -(49 - 44 + 1) / 10 = -0.6.
        let mut det = vec![false; 100];
        det[44] = true;
        let s = score_file(&ts, &det, &w, p);
        let want = scaled_sigmoid(-0.6) / scaled_sigmoid(-1.0);
        assert!((s.raw - want).abs() < 1e-12);
        // False positives: before any window (-1 x 0.11), just after the
        // window (row 51: |49 - 51| / 9 past it), in probation (ignored).
        let mut det = vec![false; 100];
        det[10] = true;
        det[20] = true;
        det[51] = true;
        let s = score_file(&ts, &det, &w, p);
        let want = -0.11 + 0.11 * scaled_sigmoid(2.0 / 9.0) - 1.0;
        assert!((s.raw - want).abs() < 1e-12, "{s:?}");
        assert_eq!((s.fp, s.fn_), (2, 1));
        // Normalization: null = -1, perfect = +1 here.
        let n = normalized(&[s], p);
        assert!((n - 100.0 * (want + 1.0) / 2.0).abs() < 1e-9);
    }

    /// Reproduce NAB's published windowedGaussian scores from its published
    /// per-row outputs (in `../shared/datasets/nab`, beside the repository;
    /// set SALESCAST_NAB_DIR to use another copy).
    #[test]
    fn reproduces_published_windowed_gaussian_scores() {
        let dir = std::env::var("SALESCAST_NAB_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/nab")
            });
        if !dir.join("results/windowedGaussian").exists() {
            eprintln!(
                "NAB data not found at {}: set SALESCAST_NAB_DIR",
                dir.display()
            );
            assert!(std::env::var("CI").is_err(), "NAB data missing on CI");
            return;
        }
        let windows: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("labels/combined_windows.json")).unwrap(),
        )
        .unwrap();
        let published: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("results/final_results.json")).unwrap(),
        )
        .unwrap();
        let mut per_profile: Vec<Vec<FileScore>> = vec![Vec::new(); 3];
        let mut checked = 0;
        for (file, wins) in windows.as_object().unwrap() {
            let (folder, name) = file.split_once('/').unwrap();
            let path = dir.join(format!(
                "results/windowedGaussian/{folder}/windowedGaussian_{name}"
            ));
            let text = std::fs::read_to_string(&path).unwrap();
            let (mut ts, mut det) = (Vec::new(), Vec::new());
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                ts.push(parse_ts(f[0]).unwrap());
                // The published threshold of windowedGaussian is 1.0 for all
                // three profiles (config/thresholds.json).
                det.push(f[2].parse::<f64>().unwrap() >= 1.0);
            }
            let w: Vec<(i64, i64)> = wins
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        parse_ts(p[0].as_str().unwrap()).unwrap(),
                        parse_ts(p[1].as_str().unwrap()).unwrap(),
                    )
                })
                .collect();
            for (k, p) in PROFILES.iter().enumerate() {
                per_profile[k].push(score_file(&ts, &det, &w, p));
            }
            checked += 1;
        }
        assert_eq!(checked, 58);
        let key = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];
        for (k, p) in PROFILES.iter().enumerate() {
            let got = normalized(&per_profile[k], p);
            let want = published["windowedGaussian"][key[k]].as_f64().unwrap();
            assert!(
                (got - want).abs() < 0.01,
                "{}: {got} vs published {want}",
                p.name
            );
        }
    }
}
