//! De-duplication of events by `event_id` over a bounded horizon.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use rustc_hash::FxHashSet;

/// Remembers the last `capacity` event ids (as 64-bit SipHash digests; the
/// chance that two distinct ids collide within a million is about 1 in 10^7)
/// and reports whether an id is new. Memory is bounded: the oldest id is
/// forgotten when a new one arrives at capacity.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    seen: FxHashSet<u64>,
    order: VecDeque<u64>,
    hasher: std::hash::BuildHasherDefault<std::hash::DefaultHasher>,
}

impl Dedup {
    /// A horizon of `capacity` ids; 0 disables de-duplication.
    pub fn new(capacity: usize) -> Self {
        Dedup {
            capacity,
            seen: FxHashSet::default(),
            order: VecDeque::new(),
            hasher: Default::default(),
        }
    }

    /// Record `id`; `true` if it was not seen within the horizon.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let mut h = self.hasher.build_hasher();
        h.write(id.as_bytes());
        let d = h.finish();
        if !self.seen.insert(d) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(d);
        true
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_horizon_and_forgets_beyond() {
        let mut d = Dedup::new(2);
        assert!(d.insert("a"));
        assert!(!d.insert("a"));
        assert!(d.insert("b"));
        assert!(d.insert("c")); // evicts a
        assert_eq!(d.len(), 2);
        assert!(d.insert("a"));
        assert!(!d.insert("c"));
        let mut off = Dedup::new(0);
        assert!(off.insert("a") && off.insert("a"));
    }
}
