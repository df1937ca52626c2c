//! Root cause across the hierarchy: the candidates of one window are
//! grouped top-down (total, store, category x store, SKU x store). A
//! candidate absorbs its descendants that broke the same way, and a parent
//! whose move one child alone explains defers to that child.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use salescast_inference::Forecast;

use crate::excursion::Cover;
use crate::series::{e_p50, ln_ratio, SeriesState};
use crate::{
    burst_from, parent_level, parents, AlertKind, Candidate, Child, Config, Direction, EchoOnly,
    SeriesKey,
};

/// Candidates (by index) under each series that is a candidate, see
/// [`by_nearest_candidate`].
pub(crate) type ByParent = FxHashMap<SeriesKey, Vec<usize>>;

/// A window's candidates grouped under their nearest candidate ancestors,
/// twice: without lean candidates (see `Candidate::lean`), the grouping
/// every other candidate is judged by, and with them (empty when there are
/// none), the one a lean candidate is judged by.
pub(crate) struct Groups {
    pub(crate) plain: ByParent,
    pub(crate) lean: ByParent,
}

impl Groups {
    /// Both groupings of the window's candidates (see
    /// [`by_nearest_candidate`] for `parent_of`).
    pub(crate) fn new(
        group: &[&Forecast],
        cands: &[Candidate],
        parent_of: &mut Option<FxHashMap<SeriesKey, Arc<str>>>,
    ) -> Self {
        let plain = by_nearest_candidate(group, cands, parent_of, false);
        let lean = if cands.iter().any(|c| c.lean) {
            by_nearest_candidate(group, cands, parent_of, true)
        } else {
            ByParent::default()
        };
        Groups { plain, lean }
    }

    /// The grouping candidate `c`'s children are taken from.
    pub(crate) fn of(&self, c: &Candidate) -> &ByParent {
        if c.lean {
            &self.lean
        } else {
            &self.plain
        }
    }
}

/// How far (in Poisson standard deviations) the rest of a parent must move
/// with its one broken child (and by at least half the child's relative
/// move) for the parent, not the child, to be the root cause.
const REST_MOVED_Z: f64 = 3.0;
/// [`REST_MOVED_Z`] for a parent's level shift.
const REST_MOVED_Z_SHIFT: f64 = 2.0;
/// How far (in Poisson standard deviations) off its median the way of its
/// move a parent's window before the current one must be to count as one
/// of the move's (see [`rest_over_move`]): windows merely on that side of
/// it would bring the rest's noise that way along.
const RUN_OFF_Z: f64 = 2.0;
/// A broken child whose deviation is below this share of its parent's does
/// not count as one of several broken children in root-cause grouping.
const MINOR_CHILD_SHARE: f64 = 0.1;

/// Candidates (by index) under their nearest ancestor that is a candidate
/// too: a SKU that spiked with its store, in a category that moved too
/// little to be a candidate itself, is still the store's. `parent_of` is
/// the window's parent map, built when first needed. Lean candidates (see
/// `Candidate::lean`) take part only `with_lean`: the grouping the others
/// are judged by is the one without them.
fn by_nearest_candidate(
    group: &[&Forecast],
    cands: &[Candidate],
    parent_of: &mut Option<FxHashMap<SeriesKey, Arc<str>>>,
    with_lean: bool,
) -> ByParent {
    let is_cand: FxHashSet<SeriesKey> = cands
        .iter()
        .filter(|c| with_lean || !c.lean)
        .map(|c| (group[c.idx].level, group[c.idx].key.clone()))
        .collect();
    let mut by_parent = ByParent::default();
    for (ci, c) in cands.iter().enumerate() {
        if c.lean && !with_lean {
            continue;
        }
        let f = group[c.idx];
        let mut node = f.parent.clone().zip(parent_level(f.level));
        while let Some((p, pl)) = node {
            let key = (pl, p);
            if is_cand.contains(&key) {
                by_parent.entry(key).or_default().push(ci);
                break;
            }
            // Up through a series that is no candidate, by the parents
            // the window's forecasts name (looked up only when needed,
            // and only for the levels that are someone's parent: not
            // the thousands of SKUs).
            let map = parent_of.get_or_insert_with(|| parents(group));
            node = map.get(&key).cloned().zip(parent_level(key.0));
        }
    }
    by_parent
}

/// A move a promotion would explain is no promotion's when series
/// below it that no promotion explains broke the same way with it (a
/// store-wide spike while the store happens to sell mostly on
/// promotion): it is the root cause of theirs.
pub(crate) fn unexplain_promotions(
    group: &[&Forecast],
    cands: &mut [Candidate],
    by_parent: &ByParent,
) {
    for ci in 0..cands.len() {
        if !cands[ci].promo {
            continue;
        }
        let f = group[cands[ci].idx];
        let unexplained = by_parent.get(&(f.level, f.key.clone())).is_some_and(|ks| {
            ks.iter()
                .any(|&k| !cands[k].quiet() && cands[k].direction == cands[ci].direction)
        });
        if unexplained {
            cands[ci].promo = false;
        }
    }
}

/// Which candidates defer to a child as its consequence (`deferred`), and
/// for each such child, the chain of ancestors its move explains. `top`:
/// the candidates, highest level first.
pub(crate) fn root_causes(
    cfg: &Config,
    group: &[&Forecast],
    cands: &[Candidate],
    groups: &Groups,
    top: &[usize],
    series: &FxHashMap<SeriesKey, SeriesState>,
) -> (FxHashMap<usize, Vec<usize>>, Vec<bool>) {
    // A candidate whose deviation one child accounts for (root-cause-share)
    // is that child's consequence: the child is the root cause (a total
    // that dropped because one store did, a category because one SKU).
    let deviation = |ci: usize| {
        let f = group[cands[ci].idx];
        (f.actual.units as f64 - e_p50(f)).abs()
    };
    let mut explains: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    // Deferred to a child: not alerted on its own, but still part of an
    // ancestor's subtree when the ancestor is the root (a store-wide
    // outage where each category's move shows in one big SKU).
    let mut deferred = vec![false; cands.len()];
    for &ci in top {
        let f = group[cands[ci].idx];
        let by_parent = groups.of(&cands[ci]);
        let siblings = by_parent
            .get(&(f.level, f.key.clone()))
            .map_or(&[][..], Vec::as_slice);
        // Only a child that broke alone among its siblings is a root
        // cause; several broken children make the parent the root.
        let broken: Vec<usize> = siblings
            .iter()
            .copied()
            // A trend going on (alerted before) is no break of this window.
            .filter(|&k| {
                cands[k].direction == cands[ci].direction
                    && !(cands[k].kind == AlertKind::TrendBreak && cands[k].quiet())
            })
            // Nor is a child whose move is a sliver of the parent's: with
            // thousands of SKUs some break every window somewhere, and
            // they must not make a store's spike the total's (the rest
            // of the parent moving with the child is `rest_moved`).
            .filter(|&k| deviation(k) >= MINOR_CHILD_SHARE * deviation(ci))
            .collect();
        let best = (broken.len() == 1).then(|| broken[0]);
        let share = cfg.root_cause_share;
        // The rest of the parent (all but that child) moving the same
        // way, beyond what a count's noise explains, means the parent
        // moved as a whole: the child was only the one big enough to
        // break (a category-wide shift seen in its best seller).
        let rest_moved = |k: usize| {
            let (p, c) = (group[cands[ci].idx], group[cands[k].idx]);
            let rest_p50 = (e_p50(p) - e_p50(c)).max(1.0);
            let rest_dev = (p.actual.units - c.actual.units) as f64 - (e_p50(p) - e_p50(c));
            let child_rel = (c.actual.units as f64 - e_p50(c)) / e_p50(c).max(1.0);
            let d = cands[ci].direction;
            // A level shift has lasted a few windows already: the rest
            // moving less surely in this one is enough.
            let bar = if cands[ci].kind == AlertKind::LevelShift {
                REST_MOVED_Z_SHIFT
            } else {
                REST_MOVED_Z
            };
            // In this window, or summed over the parent's move so far (a
            // best seller four fifths of its category halving with it:
            // the other 26 units a window sold 17, 1.7 standard
            // deviations of a count in each window, 2.5 over two).
            let run = rest_over_move(series, p, c, d);
            moved_with(rest_p50, rest_dev, child_rel, d, bar)
                || run.is_some_and(|(rest, child)| {
                    let child_rel = child.0 / child.1.max(1.0);
                    moved_with(rest.1.max(1.0), rest.0, child_rel, d, bar)
                })
        };
        // A child that raises nothing because its move was part of
        // another's alert (its parent's spike, say) cannot speak for a
        // parent that would: the parent is the one to tell.
        // (Unless its own move is in turn one of its children's, alerted
        // on that child: the root cause spoke already.)
        let mute = |k: usize| {
            let (c, d) = (&cands[k], cands[ci].direction);
            let own_below = by_parent
                .get(&(group[c.idx].level, group[c.idx].key.clone()))
                .into_iter()
                .flatten()
                .any(|&j| cands[j].direction == d && cands[j].cover == Cover::Own);
            c.silent && c.cover.by_another() && !own_below && !cands[ci].quiet()
        };
        // Nor can a child whose move a promotion explains speak for a
        // parent that siblings no promotion explains broke with (what made
        // the parent's move no promotion's, see `unexplain_promotions`):
        // the parent moved beyond the promotion.
        let promoted = |k: usize| {
            cands[k].promo
                && siblings
                    .iter()
                    .filter(|&&j| {
                        j != k && !cands[j].quiet() && cands[j].direction == cands[ci].direction
                    })
                    .map(|&j| deviation(j))
                    .sum::<f64>()
                    >= MINOR_CHILD_SHARE * deviation(ci)
        };
        // Nor does a parent going on with a move its own alert told defer
        // to a child's level shift the same way: the child's shift is its
        // share of that move, called later by its own change detector.
        let within_own = |k: usize| {
            cands[ci].silent
                && cands[ci].cover == Cover::Own
                && cands[k].kind == AlertKind::LevelShift
        };
        // Nor does a climb or slide the peer test called (the category
        // against the same category elsewhere and its store's other
        // categories, see `peer`): a burst of one SKU is over in a few
        // windows, and the SKUs that climb with it are its share.
        let peers_own = cands[ci].peer.is_some();
        if let Some(k) = best.filter(|&k| {
            !peers_own
                && deviation(k) >= share * deviation(ci)
                && !rest_moved(k)
                && !mute(k)
                && !promoted(k)
                && !within_own(k)
        }) {
            deferred[ci] = true;
            let mut chain = explains.remove(&ci).unwrap_or_default();
            chain.push(ci);
            explains.entry(k).or_default().extend(chain);
        }
    }
    (explains, deferred)
}

/// Whether the rest of a parent (all but its one broken child) moved the
/// way `d` with the child: its deviation `rest_dev` from its expected
/// median `rest_p50` is `bar` standard deviations of a count, and the
/// move is at least half the child's relative move `child_rel`, or nearer
/// to it than to none.
fn moved_with(rest_p50: f64, rest_dev: f64, child_rel: f64, d: Direction, bar: f64) -> bool {
    let rest_z = rest_dev / rest_p50.sqrt();
    // At least half as far, relative to its level, as the child (a lone
    // SKU's outage is -100% against a few percent of noise in the rest)...
    let rel = rest_dev / rest_p50;
    // ...or at least nearer (in standard deviations of a count) to having
    // moved by the child's ratio than to not having moved (a small rest is
    // noisy: 45 units that rose to 67 with a best seller that doubled).
    let whole = (rest_p50 * (1.0 + child_rel)).max(1.0);
    let whole_z = (rest_p50 + rest_dev - whole) / whole.sqrt();
    let with_child = whole_z.abs() < rest_z.abs();
    match d {
        Direction::Up => rest_z >= bar && (rel >= 0.5 * child_rel || with_child),
        Direction::Down => rest_z <= -bar && (rel <= 0.5 * child_rel || with_child),
    }
}

/// The rest of parent `p` (all but child `c`) and the child over the
/// parent's move `d` up to their window: each one's deviation from the
/// forecasts' medians and those medians, summed over this window and the
/// ones right before it (at most [`RECENT_KEPT`](crate::series::RECENT_KEPT)
/// in all) in which the parent was off its median that way by
/// [`RUN_OFF_Z`] standard deviations of a count, and the child has a
/// window too. None unless both remember this window.
fn rest_over_move(
    series: &FxHashMap<SeriesKey, SeriesState>,
    p: &Forecast,
    c: &Forecast,
    d: Direction,
) -> Option<((f64, f64), (f64, f64))> {
    let recent = |f: &Forecast| {
        series
            .get(&(f.level, f.key.clone()))
            .map(|st| &st.recent)
            .filter(|r| r.back().is_some_and(|w| w.start == f.window_start_ms))
    };
    let (pr, cr) = (recent(p)?, recent(c)?);
    let (mut rest, mut child) = ((0.0, 0.0), (0.0, 0.0));
    for (i, w) in pr.iter().rev().enumerate() {
        let off = f64::from(w.dev) * d.sign() >= RUN_OFF_Z * f64::from(w.p50).max(1.0).sqrt();
        if i > 0 && !off {
            break;
        }
        let Some(cw) = cr.iter().rev().find(|cw| cw.start == w.start) else {
            break;
        };
        rest.0 += f64::from(w.dev - cw.dev);
        rest.1 += f64::from(w.p50 - cw.p50).max(1.0);
        child.0 += f64::from(cw.dev);
        child.1 += f64::from(cw.p50);
    }
    Some((rest, child))
}

/// The descendants of candidate `ci` that broke the same way (and are not
/// yet part of another's alert): its children, marked `absorbed`. A move
/// the peer test called is never one: it is the series' own against its
/// peers, its store's move taken out.
pub(crate) fn children(
    group: &[&Forecast],
    cands: &[Candidate],
    by_parent: &ByParent,
    ci: usize,
    absorbed: &mut [bool],
) -> Vec<Child> {
    let c = &cands[ci];
    let f = group[c.idx];
    // Descendants that broke the same way are explained by this one.
    let mut children = Vec::new();
    // Each node with its move when it is the level shift or a
    // series shifting with it (see `burst` below).
    let shift_move = (c.kind == AlertKind::LevelShift).then(|| ln_ratio(f));
    let mut stack = vec![((f.level, f.key.clone()), shift_move)];
    while let Some((node, node_move)) = stack.pop() {
        for &k in by_parent.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
            let d = &cands[k];
            // A silent parent does not hide a child's own outage.
            let own =
                c.quiet() && c.kind != AlertKind::DropToZero && d.kind == AlertKind::DropToZero;
            // Nor does a level shift (new or going on) hide a new
            // spike right below it, or below a series shifting with
            // it, that moved at least twice as far in log terms (and
            // by 0.4 more): that is news of its own (a SKU's burst
            // while its category drifts up), with what is below it.
            let df = group[d.idx];
            let burst = node_move.is_some_and(|m| {
                let up = m.max(0.0);
                d.kind == AlertKind::Spike && !d.quiet() && ln_ratio(df) >= burst_from(up)
            });
            // Nor does a faint echo hide a child's own news, nor an echo
            // a child's that moved at least twice as far (what moved
            // with the echo, as under yesterday's outage, moved about as
            // far as it).
            let further = || {
                let s = c.direction.sign();
                ln_ratio(df) * s >= 2.0 * (ln_ratio(f) * s).max(0.0)
            };
            let news = !d.quiet()
                && match c.echo_only {
                    EchoOnly::No => false,
                    EchoOnly::Faint => true,
                    EchoOnly::News => further(),
                };
            // Nor does any ancestor hide a move the peer test called: the
            // category's move against its store's other categories, with
            // the store's own move taken out.
            let against_peers = d.peer.is_some() && !d.quiet();
            if absorbed[k] || d.direction != c.direction || own || burst || news || against_peers {
                continue;
            }
            absorbed[k] = true;
            children.push(Child {
                level: df.level,
                key: df.key.clone(),
                kind: d.kind,
                observed: df.actual.units as f64,
                expected: e_p50(df),
            });
            let shifting = shift_move.is_some() && d.kind == AlertKind::LevelShift;
            stack.push(((df.level, df.key.clone()), shifting.then(|| ln_ratio(df))));
        }
    }
    children
}
