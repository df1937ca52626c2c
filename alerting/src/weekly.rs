//! Moves called at about the same time a week earlier: the series' weekly
//! shape (a Monday against its Sunday, a city's weekend), not news.

use std::collections::VecDeque;

use crate::Direction;

/// A week, in ms.
const WEEK_MS: i64 = 7 * 86_400_000;

/// Starts and directions of a series' calls of one kind over the last
/// week, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct WeeklyCalls(VecDeque<(i64, Direction)>);

impl WeeklyCalls {
    /// Remember a call at `at` (start, width, period) its way `d`, and
    /// whether one was called the same way within `near` windows of the
    /// same time a week (seven periods) earlier. With a period of a week
    /// or more the series is compared with the week before already, and
    /// with none (0) there is no week; either way nothing is remembered.
    pub(crate) fn again(&mut self, at: (i64, i64, i64), d: Direction, near: usize) -> bool {
        let (now, width, period) = at;
        if period <= 0 || period >= WEEK_MS {
            return false;
        }
        let week = 7 * period;
        let near = width * near as i64;
        while self.0.front().is_some_and(|&(t, _)| t < now - week - near) {
            self.0.pop_front();
        }
        let again = self
            .0
            .iter()
            .any(|&(t, cd)| cd == d && (t - (now - week)).abs() <= near);
        self.0.push_back((now, d));
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_a_week_on_is_the_weekly_shape() {
        let (w, day) = (300_000, 86_400_000);
        let mut c = WeeklyCalls::default();
        assert!(!c.again((0, w, day), Direction::Up, 9));
        // The other way, or the same way six days on: news.
        assert!(!c.again((6 * day, w, day), Direction::Down, 9));
        assert!(!c.again((6 * day + w, w, day), Direction::Up, 9));
        // A week on, 9 windows late: the weekly shape.
        assert!(c.again((7 * day + 9 * w, w, day), Direction::Up, 9));
        // Ten windows late: too far from it.
        let mut c = WeeklyCalls::default();
        c.again((0, w, day), Direction::Up, 9);
        assert!(!c.again((7 * day + 10 * w, w, day), Direction::Up, 9));
        // Compared with the week before already: a period on is news, and
        // nothing is kept.
        let (w, week) = (1_800_000, WEEK_MS);
        let mut c = WeeklyCalls::default();
        assert!(!c.again((0, w, week), Direction::Up, 9));
        assert!(!c.again((week, w, week), Direction::Up, 9));
        assert!(c.0.is_empty());
    }
}
