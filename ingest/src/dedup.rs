//! De-duplication of events by `event_id` over a bounded horizon.

use rustc_hash::FxHashSet;

/// Remembers recent event ids (as 64-bit digests) and reports whether an id
/// is new. Memory is bounded: ids live in two generations of `capacity / 2`
/// each; when the current generation is full, the older one is dropped. So
/// at least the last `capacity / 2` ids, and at most the last `capacity`, are
/// remembered. Two distinct ids share a digest with a chance of about
/// `capacity / 2^64` per event (one in ten million million at a million).
#[derive(Debug)]
pub struct Dedup {
    half: usize,
    current: FxHashSet<u64>,
    previous: FxHashSet<u64>,
}

/// A fast 64-bit digest of a byte string (length-seeded multiply-rotate over
/// 8-byte words with a murmur3 finalizer), good for non-adversarial ids.
pub fn digest(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    fn fmix(mut x: u64) -> u64 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    }
    let mut h = K ^ (bytes.len() as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ fmix(x)).rotate_left(27).wrapping_mul(K);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rem.len()].copy_from_slice(rem);
        h = (h ^ fmix(u64::from_le_bytes(buf)))
            .rotate_left(27)
            .wrapping_mul(K);
    }
    fmix(h)
}

impl Dedup {
    /// A horizon of `capacity` ids; 0 disables de-duplication.
    pub fn new(capacity: usize) -> Self {
        let half = capacity.div_ceil(2);
        Dedup {
            half,
            current: FxHashSet::with_capacity_and_hasher(half, Default::default()),
            previous: FxHashSet::default(),
        }
    }

    /// Record `id`; `true` if it was not seen within the horizon.
    #[inline]
    pub fn insert(&mut self, id: &str) -> bool {
        if self.half == 0 {
            return true;
        }
        let d = digest(id.as_bytes());
        if self.previous.contains(&d) || !self.current.insert(d) {
            return false;
        }
        if self.current.len() >= self.half {
            // Rotate generations, reusing the old allocation.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        true
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_horizon_and_forgets_beyond() {
        let mut d = Dedup::new(4); // generations of 2
        assert!(d.insert("a"));
        assert!(!d.insert("a"));
        assert!(d.insert("b")); // rotate: previous {a, b}
        assert!(!d.insert("a"));
        assert!(d.insert("c"));
        assert!(d.insert("d")); // rotate: previous {c, d}, a and b forgotten
        assert!(!d.insert("c"));
        assert!(d.insert("a"));
        assert!(d.len() <= 4);
        let mut off = Dedup::new(0);
        assert!(off.insert("a") && off.insert("a"));
    }

    #[test]
    fn digests_of_similar_ids_do_not_collide() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000u64 {
            for id in [
                format!("{i}"),
                format!("42-{i}"),
                format!("order-{i:012}-line-1"),
            ] {
                assert!(seen.insert(digest(id.as_bytes())), "collision at {id}");
            }
        }
        assert_ne!(digest(b"12345678"), digest(b"1234567812345678"));
        assert_ne!(digest(b""), digest(b"\0"));
    }
}
