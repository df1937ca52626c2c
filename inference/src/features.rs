//! Incremental per-series features, O(1) per window, and the calendar.
//!
//! Every series keeps a [`SeriesFeatures`]: a Welford mean and variance over
//! its history ring (values enter and leave in O(1)), three EWMA levels,
//! hour-of-day and day-of-week profiles (EWMA of units per window in each
//! slot), the last window's promo share, and its price relative to an
//! EWMA reference price. [`Calendar`] turns a window start into hour,
//! weekday, month and a holiday flag from a configurable list of dates.

use std::path::Path;

use rustc_hash::FxHashSet;

use crate::Error;

/// Smoothing factors of the three EWMA levels (fast to slow).
pub const EWMA_ALPHAS: [f64; 3] = [0.5, 0.1, 0.02];
/// Smoothing factor of the hour-of-day and day-of-week profiles.
pub const PROFILE_ALPHA: f32 = 0.2;
/// Smoothing factor of the reference price.
pub const PRICE_ALPHA: f64 = 0.05;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// An EWMA of units per window for each of `N` calendar slots (hours of
/// the day, weekdays), with which slots have been seen.
#[derive(Debug, Clone, Copy)]
pub struct SlotProfile<const N: usize> {
    values: [f32; N],
    seen: u32,
}

impl<const N: usize> Default for SlotProfile<N> {
    fn default() -> Self {
        SlotProfile {
            values: [0.0; N],
            seen: 0,
        }
    }
}

impl<const N: usize> SlotProfile<N> {
    /// Fold `y` into slot `i` (its first value is taken as is).
    pub fn update(&mut self, i: usize, y: f32) {
        if self.seen & (1 << i) == 0 {
            self.values[i] = y;
            self.seen |= 1 << i;
        } else {
            self.values[i] += PROFILE_ALPHA * (y - self.values[i]);
        }
    }

    /// Slot `i`, if seen.
    pub fn get(&self, i: usize) -> Option<f64> {
        (self.seen & (1 << i) != 0).then(|| self.values[i] as f64)
    }

    /// Mean over the seen slots, if any.
    pub fn mean(&self) -> Option<f64> {
        let seen = self.seen.count_ones();
        (seen > 0).then(|| (0..N).filter_map(|i| self.get(i)).sum::<f64>() / seen as f64)
    }
}

/// Incremental features of one series.
#[derive(Debug, Clone, Default)]
pub struct SeriesFeatures {
    n: u32,
    mean: f64,
    m2: f64,
    /// EWMA levels at [`EWMA_ALPHAS`], in units.
    pub ewma: [f64; 3],
    /// Units per window by hour of day (UTC).
    pub hours: SlotProfile<24>,
    /// Units per window by weekday (Monday first).
    pub weekdays: SlotProfile<7>,
    /// Reference price: EWMA of the average price of windows with sales.
    pub ref_price: f64,
    /// Last window's average price over the reference price (1 without
    /// sales or price).
    pub price_rel: f64,
    /// Last window's share of promo lines.
    pub promo_share: f64,
}

impl SeriesFeatures {
    /// Welford: a value entered the history ring.
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Welford in reverse: a value left the history ring.
    pub fn remove(&mut self, x: f64) {
        if self.n <= 1 {
            self.n = 0;
            self.mean = 0.0;
            self.m2 = 0.0;
            return;
        }
        let n = self.n as f64;
        let old = (n * self.mean - x) / (n - 1.0);
        self.m2 = (self.m2 - (x - self.mean) * (x - old)).max(0.0);
        self.mean = old;
        self.n -= 1;
    }

    /// Rolling mean over the history ring.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Rolling standard deviation over the history ring.
    pub fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }

    /// The scale the neural model divides this series by: its rolling mean,
    /// at least 1 unit.
    pub fn scale(&self) -> f64 {
        self.mean.max(1.0)
    }

    /// Fold a window's units into the levels and profiles (not the Welford
    /// moments, which follow the history ring).
    pub fn observe(&mut self, start_ms: i64, y: f64, first: bool) {
        for (e, a) in self.ewma.iter_mut().zip(EWMA_ALPHAS) {
            *e = if first { y } else { a * y + (1.0 - a) * *e };
        }
        self.hours.update(hour_of(start_ms), y as f32);
        self.weekdays.update(weekday_of(start_ms), y as f32);
    }

    /// Fold a window's price and promo share in.
    pub fn observe_price(&mut self, avg_price: Option<f64>, promo_share: f64) {
        self.promo_share = promo_share;
        match avg_price.filter(|p| *p > 0.0 && p.is_finite()) {
            Some(p) => {
                if self.ref_price <= 0.0 {
                    self.ref_price = p;
                }
                self.price_rel = (p / self.ref_price).clamp(0.0, 4.0);
                self.ref_price += PRICE_ALPHA * (p - self.ref_price);
            }
            None => self.price_rel = 1.0,
        }
    }

    /// The hour-of-day profile at the hour of `start_ms`, or `fallback`
    /// when that slot has not been seen.
    pub fn hour_at(&self, start_ms: i64, fallback: f64) -> f64 {
        self.hours.get(hour_of(start_ms)).unwrap_or(fallback)
    }

    /// The day-of-week profile at the weekday of `start_ms`, or `fallback`.
    pub fn dow_at(&self, start_ms: i64, fallback: f64) -> f64 {
        self.weekdays.get(weekday_of(start_ms)).unwrap_or(fallback)
    }

    /// The multiplicative hour x weekday profile, with the weekday mean
    /// computed once for all its lookups (see [`Profile::at`]).
    pub fn profile(&self, fallback: f64) -> Profile<'_> {
        Profile {
            f: self,
            fallback,
            dow_mean: self.weekdays.mean().unwrap_or(fallback),
        }
    }
}

/// A series' hour x weekday profile, ready for lookups.
#[derive(Debug, Clone, Copy)]
pub struct Profile<'a> {
    f: &'a SeriesFeatures,
    fallback: f64,
    dow_mean: f64,
}

impl Profile<'_> {
    /// Expected units per window at `t`: the hour-of-day profile times the
    /// weekday's factor (its profile over the weekdays' mean), the fallback
    /// for unseen slots.
    pub fn at(&self, t: i64) -> f64 {
        let factor = if self.dow_mean > 0.0 {
            (self.f.dow_at(t, self.dow_mean) / self.dow_mean).min(10.0)
        } else {
            1.0
        };
        self.f.hour_at(t, self.fallback) * factor
    }
}

/// Hour of day (UTC) of an epoch-ms instant.
pub fn hour_of(ms: i64) -> usize {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as usize
}

/// Weekday (Monday = 0, UTC) of an epoch-ms instant.
pub fn weekday_of(ms: i64) -> usize {
    // 1970-01-01 was a Thursday.
    ((ms.div_euclid(DAY_MS) + 3).rem_euclid(7)) as usize
}

/// Month (1-12, UTC) of an epoch-ms instant.
pub fn month_of(ms: i64) -> usize {
    civil_from_days(ms.div_euclid(DAY_MS)).1 as usize
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Day number since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (m as i64, d as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Holidays: a set of UTC dates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendar {
    days: FxHashSet<i64>,
}

impl Calendar {
    /// Parse a calendar file: one `YYYY-MM-DD` date per line; blank lines
    /// and `#` comments are ignored, and anything after the date on a line
    /// (a holiday's name) too.
    pub fn parse(text: &str) -> Result<Calendar, Error> {
        let mut days = FxHashSet::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let date = line.split_whitespace().next().unwrap_or("");
            let parts: Vec<&str> = date.split('-').collect();
            let bad = || {
                Error::Config(format!(
                    "holiday calendar line {}: {date:?} is not YYYY-MM-DD",
                    i + 1
                ))
            };
            if parts.len() != 3 {
                return Err(bad());
            }
            let y: i64 = parts[0].parse().map_err(|_| bad())?;
            let m: u32 = parts[1].parse().map_err(|_| bad())?;
            let d: u32 = parts[2].parse().map_err(|_| bad())?;
            if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
                return Err(bad());
            }
            days.insert(days_from_civil(y, m, d));
        }
        Ok(Calendar { days })
    }

    /// Load a calendar file (see [`Calendar::parse`]).
    pub fn load(path: &Path) -> Result<Calendar, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("holiday calendar {}: {e}", path.display())))?;
        Calendar::parse(&text)
    }

    /// Whether the UTC day of `ms` is a holiday.
    pub fn is_holiday(&self, ms: i64) -> bool {
        self.days.contains(&ms.div_euclid(DAY_MS))
    }

    /// Number of holidays.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Whether the calendar has no holidays.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_add_remove_matches_naive() {
        let xs = [3.0, 7.0, 1.0, 0.0, 12.0, 5.0, 5.0, 9.0];
        let mut f = SeriesFeatures::default();
        for (i, x) in xs.iter().enumerate() {
            f.add(*x);
            if i >= 4 {
                f.remove(xs[i - 4]);
            }
        }
        let last = &xs[4..];
        let mean = last.iter().sum::<f64>() / 4.0;
        let var = last.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((f.mean() - mean).abs() < 1e-9);
        assert!((f.std() - var.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn calendar_fields() {
        // 2026-11-28 19:42 UTC is a Saturday in November.
        let ms = days_from_civil(2026, 11, 28) * DAY_MS + 19 * HOUR_MS + 42 * 60_000;
        assert_eq!(hour_of(ms), 19);
        assert_eq!(weekday_of(ms), 5);
        assert_eq!(month_of(ms), 11);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let cal = Calendar::parse("# US\n2026-11-26 Thanksgiving\n\n2026-12-25\n").unwrap();
        assert_eq!(cal.len(), 2);
        assert!(cal.is_holiday(days_from_civil(2026, 11, 26) * DAY_MS + 5));
        assert!(!cal.is_holiday(ms));
        assert!(Calendar::parse("26/11/2026").is_err());
    }

    #[test]
    fn profiles_track_their_slot() {
        let mut f = SeriesFeatures::default();
        for day in 0..10 {
            for h in 0..24 {
                let ms = day * DAY_MS + h * HOUR_MS;
                f.observe(ms, h as f64, day == 0 && h == 0);
            }
        }
        assert!((f.hour_at(5 * HOUR_MS, -1.0) - 5.0).abs() < 1e-6);
        assert_eq!(SeriesFeatures::default().hour_at(0, -1.0), -1.0);
        f.observe_price(Some(10.0), 0.5);
        f.observe_price(Some(5.0), 0.0);
        assert!((f.price_rel - 0.5).abs() < 1e-9);
    }
}
