//! Tail probabilities of sales counts, as normal-equivalent scores.
//!
//! Units sold in a window are counts, overdispersed relative to a Poisson
//! (several units per order line, forecast error on top). A window's actual
//! `y` is scored against a quasi-Poisson around the expected mean `mu` with
//! dispersion `phi` (`Y / phi ~ Poisson(mu / phi)`), continuity-corrected,
//! and the tail probability is turned into the normal score with the same
//! tail: `z = 6` means "as unlikely as 6 sigma of a normal" whether the
//! series sells 2 units a window or 20,000. A Gaussian z on small counts
//! calls 7 units against an expected 1 a 6-sigma event; it is a 1-in-3,000
//! one, which across ten thousand series is a false alert every window.
//!
//! Everything is computed in log space, so a drop to zero from an expected
//! 5,000 (a probability far below `f64`'s range) still gets a finite score.

/// `ln Γ(x)` for `x > 0` (Stirling series after shifting `x` above 7).
pub fn ln_gamma(x: f64) -> f64 {
    let mut shift = 0.0;
    let mut z = x;
    while z < 7.0 {
        shift -= z.ln();
        z += 1.0;
    }
    let z2 = z * z;
    let series = 1.0 / (12.0 * z) - 1.0 / (360.0 * z * z2) + 1.0 / (1260.0 * z2 * z2 * z)
        - 1.0 / (1680.0 * z2 * z2 * z2 * z);
    shift + (z - 0.5) * z.ln() - z + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
}

/// `ln(1 - e^l)` for `l <= 0`, accurate at both ends.
fn ln_1m_exp(l: f64) -> f64 {
    if l > -std::f64::consts::LN_2 {
        (-l.exp_m1()).ln()
    } else {
        (-l.exp()).ln_1p()
    }
}

/// Logs of the regularized incomplete gamma functions `(ln P(a, x), ln Q(a, x))`
/// for `a > 0`, `x >= 0`: `P` is the lower, `Q = 1 - P` the upper.
pub fn ln_gamma_pq(a: f64, x: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (f64::NEG_INFINITY, 0.0);
    }
    let front = a * x.ln() - x;
    if x < a + 1.0 {
        // Series: P = x^a e^-x / Γ(a+1) · Σ x^n / ((a+1)…(a+n)).
        let (mut term, mut sum, mut ap) = (1.0, 1.0, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term < sum * 1e-16 {
                break;
            }
        }
        let lp = front - ln_gamma(a + 1.0) + sum.ln();
        (lp.min(0.0), ln_1m_exp(lp.min(0.0)))
    } else {
        // Continued fraction for Q (modified Lentz).
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        let lq = (front - ln_gamma(a) + h.ln()).min(0.0);
        (ln_1m_exp(lq), lq)
    }
}

/// The normal score `z >= 0` whose upper tail is `e^lp` (`lp <= ln 0.5`),
/// from the log of the probability, so it never underflows (Abramowitz and
/// Stegun 26.2.23; error below 5e-4, plenty for thresholds).
pub fn normal_isf_ln(lp: f64) -> f64 {
    let lp = lp.min(-std::f64::consts::LN_2);
    let t = (-2.0 * lp).sqrt();
    let z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    z.max(0.0)
}

/// The log of the normal upper tail at `z >= 0`: the inverse of
/// [`normal_isf_ln`] (found by bisection on it, so the two agree exactly).
pub fn normal_sf_ln(z: f64) -> f64 {
    let (mut lo, mut hi) = (-1e6f64, -std::f64::consts::LN_2);
    if z <= 0.0 {
        return hi;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        // normal_isf_ln falls as the tail's log rises.
        if normal_isf_ln(mid) > z {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Normal-equivalent score of `y` units against mean `mu` and dispersion
/// `phi` (>= 1): positive when `y` is high, negative when low, 0 at the
/// middle. Mid-p: half of `P(Y = y)` counts on each side.
pub fn count_z(y: f64, mu: f64, phi: f64) -> f64 {
    let phi = phi.max(1.0);
    let lambda = (mu / phi).max(1e-9);
    // P(Y > y) + P(Y = y)/2 ≈ P(X >= (y + 1/2) / phi) for X ~ Poisson(lambda),
    // and P(X >= k) = P(k, lambda), the lower regularized gamma with shape k.
    let k = (y + 0.5) / phi;
    let (ln_upper, ln_lower) = if k <= 0.0 {
        (0.0, f64::NEG_INFINITY)
    } else {
        ln_gamma_pq(k, lambda)
    };
    if ln_upper < ln_lower {
        normal_isf_ln(ln_upper)
    } else {
        -normal_isf_ln(ln_lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..30u32 {
            assert!((ln_gamma(n as f64) - f.ln()).abs() < 1e-9, "Γ({n})");
            f *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-9);
    }

    #[test]
    fn gamma_tails_match_poisson_sums() {
        // P(X >= k) for X ~ Poisson(lambda) is P(k, lambda).
        for lambda in [0.3f64, 2.0, 9.5, 40.0] {
            for k in 1..60u32 {
                let (mut pmf, mut below) = ((-lambda).exp(), 0.0);
                for i in 0..k {
                    below += pmf;
                    pmf *= lambda / (i + 1) as f64;
                }
                let (lp, lq) = ln_gamma_pq(k as f64, lambda);
                let at_least = 1.0 - below;
                if at_least > 1e-12 {
                    assert!(
                        (lp.exp() - at_least).abs() < 1e-9 * at_least.max(1e-3),
                        "{lambda} {k}"
                    );
                }
                assert!((lq.exp() - below).abs() < 1e-9, "{lambda} {k}");
            }
        }
    }

    #[test]
    fn normal_scores_match_known_quantiles() {
        for (p, z) in [
            (0.5f64, 0.0),
            (0.158_655, 1.0),
            (0.001_35, 3.0),
            (9.866e-10, 6.0),
        ] {
            assert!((normal_isf_ln(p.ln()) - z).abs() < 2e-3, "{p}");
        }
        for z in [0.5f64, 3.0, 6.0, 7.25, 40.0] {
            assert!((normal_isf_ln(normal_sf_ln(z)) - z).abs() < 1e-6, "{z}");
        }
        assert!((normal_sf_ln(6.0) - 9.866e-10f64.ln()).abs() < 0.02);
        // Far below f64's range still gives a finite, larger score.
        assert!(normal_isf_ln(-5000.0) > 90.0);
    }

    #[test]
    fn small_counts_are_not_six_sigma() {
        // 7 units against a mean of 1: unusual, not alarming.
        let z = count_z(7.0, 1.0, 1.0);
        assert!(z > 2.5 && z < 5.0, "{z}");
        // The same relative jump on a large series is overwhelming.
        assert!(count_z(700.0, 100.0, 1.0) > 30.0);
        // A drop to zero from 50 is far out; from 1 it is nothing.
        assert!(count_z(0.0, 50.0, 1.5) < -6.0);
        assert!(count_z(0.0, 1.0, 1.0) > -1.5);
        // The middle scores near zero; overdispersion shrinks scores.
        assert!(count_z(100.0, 100.0, 1.0).abs() < 0.2);
        assert!(count_z(140.0, 100.0, 4.0) < count_z(140.0, 100.0, 1.0));
        // Monotone in y.
        let mut last = f64::NEG_INFINITY;
        for y in 0..200 {
            let z = count_z(y as f64, 60.0, 2.0);
            assert!(z >= last - 1e-9, "{y}");
            last = z;
        }
        // A drop from 5,000 to zero has a finite score.
        assert!(count_z(0.0, 5_000.0, 1.0).is_finite());
    }
}
