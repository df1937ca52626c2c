//! The SKUs a promotion touched, for their category's comparison with the
//! day before. A promoted best seller lifts its category for hours, so the
//! trend detector does not compare a category's window with the same
//! window a period earlier when their shares of lines on promotion differ
//! (`TREND_PROMO_DIFF`): the category would read as a climb when the
//! promotion starts and a slide when it ends. That left categories
//! without a comparison for whole afternoons, and the moves in them unseen.
//! Instead, such a window is compared by the SKUs no promotion touched in
//! either window: both sides less the units of every SKU on promotion in
//! one of them (see [`Promoted::sums`]). This keeps each SKU x store
//! series' units for the last period.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use salescast_inference::Forecast;
use salescast_stream_core::Level;

use crate::trend::window_in_period;

/// The bit of a [`PastUnits`] slot's tag that says its window had lines
/// on promotion; the others hold the window number.
const PROMOTED_BIT: u32 = 1 << 31;

/// A window number as a slot's tag holds it (its low 31 bits: a slot is
/// only ever compared with windows a period apart).
fn tag_of(n: i64) -> u32 {
    (n as u32) & !PROMOTED_BIT
}

/// One SKU x store series' units over the last period, by window number,
/// in eight bytes a window (the SKU x store series are most of a
/// hierarchy's).
#[derive(Debug, Clone, Default)]
struct PastUnits {
    /// Slot `n mod (windows in a period + 1)`: a tag (the window number it
    /// holds, and [`PROMOTED_BIT`] when any of its lines were on
    /// promotion) and its units (NaN: none yet). One slot more than a
    /// period holds, so that the window a period back is still there when
    /// the newest is written.
    slots: Box<[(u32, f32)]>,
    /// The newest window number written.
    newest: i64,
}

impl PastUnits {
    fn slot(&self, n: i64) -> (f64, bool) {
        let len = self.slots.len() as i64;
        if len == 0 {
            return (0.0, false);
        }
        match self.slots[n.rem_euclid(len) as usize] {
            (tag, units) if !units.is_nan() && tag & !PROMOTED_BIT == tag_of(n) => {
                (f64::from(units), tag & PROMOTED_BIT != 0)
            }
            // No line sold in that window: nothing, and nothing promoted.
            _ => (0.0, false),
        }
    }
}

/// The SKUs below each category and their units over the last period.
#[derive(Debug, Default)]
pub(crate) struct Promoted {
    past: FxHashMap<Arc<str>, PastUnits>,
    /// The SKU x store series seen below each category x store series.
    children: FxHashMap<Arc<str>, Vec<Arc<str>>>,
}

impl Promoted {
    /// Remember the units of a window's SKU x store series (first
    /// emissions only: a revision changes a window already compared).
    pub(crate) fn record(&mut self, group: &[&Forecast], period: i64) {
        for f in group
            .iter()
            .filter(|f| f.level == Level::SkuStore && f.revision == 0)
        {
            let Some(parent) = &f.parent else {
                continue;
            };
            let width = f.window_end_ms - f.window_start_ms;
            let (n, slots) = window_in_period((f.window_start_ms, width, period));
            let past = match self.past.get_mut(&f.key) {
                Some(p) => p,
                None => {
                    self.children
                        .entry(parent.clone())
                        .or_default()
                        .push(f.key.clone());
                    self.past.entry(f.key.clone()).or_default()
                }
            };
            let len = slots as usize + 1;
            if past.slots.len() != len {
                past.slots = vec![(0, f32::NAN); len].into_boxed_slice();
            }
            let promoted = if f.actual.promo_share > 0.0 {
                PROMOTED_BIT
            } else {
                0
            };
            past.slots[n.rem_euclid(len as i64) as usize] =
                (tag_of(n) | promoted, f.actual.units as f32);
            past.newest = past.newest.max(n);
        }
    }

    /// For the category x store series `key` at the window `at` (start,
    /// width, period): the units now and a period earlier of its SKUs with
    /// lines on promotion in either window (None when there were none).
    /// Taken off the category's units on both sides, what is left is the
    /// SKUs no promotion touched, compared like for like.
    pub(crate) fn sums(&self, key: &str, at: (i64, i64, i64)) -> Option<(f64, f64)> {
        let (n, slots) = window_in_period(at);
        let mut sums = None;
        for child in self.children.get(key)? {
            let Some(past) = self.past.get(child) else {
                continue;
            };
            let (now, promoted_now) = past.slot(n);
            let (then, promoted_then) = past.slot(n - slots);
            if promoted_now || promoted_then {
                let s = sums.get_or_insert((0.0, 0.0));
                s.0 += now;
                s.1 += then;
            }
        }
        sums
    }

    /// Forget the series with no window newer than `stale` (a window
    /// number) and the category lists' keys to them.
    pub(crate) fn prune(&mut self, stale: i64) {
        self.past.retain(|_, p| p.newest >= stale);
        let past = &self.past;
        self.children.retain(|_, kids| {
            kids.retain(|k| past.contains_key(k));
            !kids.is_empty()
        });
    }
}
