//! De-duplication of events by `event_id` over a bounded horizon.

/// Remembers recent event ids (as 64-bit digests) and reports whether an id
/// is new. Memory is bounded: ids live in two generations of `capacity / 2`
/// each; when the current generation is full, the older one is dropped. So
/// at least the last `capacity / 2` ids, and at most the last `capacity`, are
/// remembered. Two distinct ids share a digest with a chance of about
/// `capacity / 2^64` per event (one in ten million million at a million).
///
/// A horizon of a million ids is megabytes of table, far bigger than a CPU
/// cache, so every lookup is a cache miss. [`Dedup::insert_digests`] takes a
/// whole micro-batch and prefetches the slots a few rows ahead, so those
/// misses overlap instead of stalling one after another.
#[derive(Debug)]
pub struct Dedup {
    half: usize,
    current: DigestSet,
    previous: DigestSet,
}

/// An open-addressing set of non-zero digests: linear probing in a
/// power-of-two table kept at most half full, 0 marking an empty slot.
#[derive(Debug)]
struct DigestSet {
    slots: Vec<u64>,
    mask: usize,
    len: usize,
}

impl DigestSet {
    fn with_capacity(n: usize) -> Self {
        let size = (n.max(1) * 2).next_power_of_two();
        DigestSet {
            slots: vec![0; size],
            mask: size - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, d: u64) -> usize {
        // Digests are finalized (well mixed): their low bits are as good as any.
        d as usize & self.mask
    }

    /// The slot holding `d` (`Ok`), or the empty slot where it would go
    /// (`Err`). The table is never full, so the probe ends.
    #[inline]
    fn find(&self, d: u64) -> Result<usize, usize> {
        let mut i = self.home(d);
        loop {
            match self.slots[i] {
                0 => return Err(i),
                s if s == d => return Ok(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    #[inline]
    fn contains(&self, d: u64) -> bool {
        self.find(d).is_ok()
    }

    /// Add `d`; `false` if it was there already.
    #[inline]
    fn insert(&mut self, d: u64) -> bool {
        match self.find(d) {
            Ok(_) => false,
            Err(i) => {
                self.slots[i] = d;
                self.len += 1;
                true
            }
        }
    }

    fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(0);
            self.len = 0;
        }
    }

    #[inline]
    fn prefetch(&self, d: u64) {
        let slot: *const u64 = &self.slots[self.home(d)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint to the cache; it never faults and
        // reads nothing into the program. `slot` points into `self.slots`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }
}

/// How many rows ahead [`Dedup::insert_digests`] prefetches.
const PREFETCH_AHEAD: usize = 12;

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
            current: DigestSet::with_capacity(half),
            previous: DigestSet::with_capacity(half),
        }
    }

    /// Record `id`; `true` if it was not seen within the horizon.
    #[inline]
    pub fn insert(&mut self, id: &str) -> bool {
        self.insert_digest(digest(id.as_bytes()))
    }

    /// Record a batch of ids by their [`digest`]s, in order, pushing onto
    /// `fresh` whether each was new (a digest repeated within the batch is a
    /// duplicate from its second occurrence on). Same result as calling
    /// [`Dedup::insert`] for each, with the table slots fetched ahead.
    pub fn insert_digests(&mut self, digests: &[u64], fresh: &mut Vec<bool>) {
        fresh.reserve(digests.len());
        if self.half == 0 {
            fresh.extend(std::iter::repeat_n(true, digests.len()));
            return;
        }
        for (i, d) in digests.iter().enumerate() {
            if let Some(ahead) = digests.get(i + PREFETCH_AHEAD) {
                let a = nonzero(*ahead);
                self.previous.prefetch(a);
                self.current.prefetch(a);
            }
            fresh.push(self.insert_digest(*d));
        }
    }

    #[inline]
    fn insert_digest(&mut self, d: u64) -> bool {
        if self.half == 0 {
            return true;
        }
        let d = nonzero(d);
        if self.previous.contains(d) || !self.current.insert(d) {
            return false;
        }
        if self.current.len >= self.half {
            // Rotate generations, reusing the old allocation.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        true
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.current.len + self.previous.len
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 0 marks an empty slot, so digest 0 is stored as 1.
#[inline]
fn nonzero(d: u64) -> u64 {
    d.max(1)
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
    fn batch_inserts_agree_with_one_at_a_time() {
        // Ids with repeats near and far, over several generation rotations.
        let ids: Vec<String> = (0..5_000u64)
            .map(|i| format!("e{}", (i * 7919) % 1_500 + (i / 2_000) * 700))
            .collect();
        for capacity in [0, 1, 2, 64, 1_000, 10_000] {
            let mut one = Dedup::new(capacity);
            let want: Vec<bool> = ids.iter().map(|id| one.insert(id)).collect();
            let mut batched = Dedup::new(capacity);
            let mut got = Vec::new();
            for chunk in ids.chunks(333) {
                let digests: Vec<u64> = chunk.iter().map(|id| digest(id.as_bytes())).collect();
                batched.insert_digests(&digests, &mut got);
            }
            assert_eq!(got, want, "capacity {capacity}");
            assert_eq!(batched.len(), one.len());
            assert!(one.len() <= capacity);
        }
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
