//! Consistent-hashing ring: `slots` entries, each owned by one address chosen by weighted
//! rendezvous hashing, so adding or removing one address only moves the slots it wins or owned
//! (about `weight / total weight` of the keys) and ownership is proportional to weight.

/// 64-bit FNV-1a followed by a strong finalizer; stable across builds and nodes.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64 finalizer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ring: slot -> index into the peer set's entries.
#[derive(Debug)]
pub(crate) struct Ring {
    owners: Box<[u32]>,
    /// (ring id, weight) per entry index, to know when the ring can be reused.
    key: Vec<(u64, u32)>,
    slots: u32,
}

impl Ring {
    /// Build a ring of `slots` entries for members given as (ring id, weight) by entry index.
    /// Members with weight 0 own nothing; with no weighted member the ring is empty.
    pub(crate) fn build(members: Vec<(u64, u32)>, slots: u32) -> Self {
        let weighted: Vec<(usize, u64, f64)> = members
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| *w > 0)
            .map(|(i, (id, w))| (i, *id, f64::from(*w)))
            .collect();
        let equal = weighted.windows(2).all(|p| p[0].2 == p[1].2);
        let owners: Box<[u32]> = if weighted.is_empty() {
            Box::new([])
        } else {
            (0..slots.max(1))
                .map(|slot| {
                    let s = mix(u64::from(slot).wrapping_add(0x9e37_79b9_7f4a_7c15));
                    let best = if equal {
                        // equal weights: the largest hash wins (same order as the weighted score)
                        weighted
                            .iter()
                            .max_by_key(|(_, id, _)| mix(id ^ s))
                            .map_or(0, |(i, _, _)| *i)
                    } else {
                        let mut best = (0usize, f64::NEG_INFINITY);
                        for &(i, id, w) in &weighted {
                            let h = mix(id ^ s);
                            // uniform in (0, 1)
                            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                            let score = w / -u.ln();
                            if score > best.1 {
                                best = (i, score);
                            }
                        }
                        best.0
                    };
                    u32::try_from(best).unwrap_or(u32::MAX)
                })
                .collect()
        };
        Self {
            owners,
            key: members,
            slots,
        }
    }

    /// Whether this ring was built from exactly these members and slot count.
    pub(crate) fn same(&self, members: &[(u64, u32)], slots: u32) -> bool {
        self.slots == slots && self.key == members
    }

    /// Number of slots (0 when no member has weight).
    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }

    /// The slot a key hashes to.
    pub(crate) fn slot_of(&self, key: &str) -> usize {
        let n = self.owners.len().max(1) as u64;
        (hash_str(key) % n) as usize
    }

    /// Owner (entry index) of a slot, wrapping around.
    pub(crate) fn owner(&self, slot: usize) -> usize {
        match self.owners.get(slot % self.owners.len().max(1)) {
            Some(o) => *o as usize,
            None => usize::MAX,
        }
    }
}
