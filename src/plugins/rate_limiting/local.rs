//! The `local` policy's counters: one node's memory, shared by every proxy worker thread, kept
//! in the plugin kind so that they survive configuration reloads.
//!
//! Unlike Kong (which reads the counters, proxies, and increments later in a timer, so that a
//! burst overshoots), checking every configured period and incrementing them happens atomically
//! under one shard lock. Memory is bounded: entries whose windows all ended are swept (at most
//! once a second per shard), and a full shard evicts the entries that expire soonest.

use std::hash::{BuildHasher, RandomState};

/// SipHash (std's randomly keyed hasher): keys hold client-chosen text (header values, paths).
type HashMap<K, V> = hashbrown::HashMap<K, V, RandomState>;
use std::sync::Mutex;

use super::{Hit, Limit};

const SHARDS: usize = 32;
/// Entries per shard before eviction (about a million counters per node in all).
const SHARD_CAP: usize = 32 * 1024;
const SWEEP_EVERY_MS: i64 = 1000;

/// Counters of every `local` rate-limiting instance on this node.
pub(super) struct LocalCounters {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    cap: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    next_sweep_ms: i64,
}

/// The counters of one key prefix (`ratelimit:<route>:<service>:<identifier>`): per period the
/// window start it counts and the count.
#[derive(Clone, Copy, Default)]
struct Entry {
    slots: [(i64, u64); 6],
    /// When the longest window counted here ends.
    expires_ms: i64,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self::with_capacity(SHARD_CAP)
    }
}

impl LocalCounters {
    /// Counters holding at most `per_shard` keys in each of the shards.
    pub(super) fn with_capacity(per_shard: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            cap: per_shard.max(1),
        }
    }

    /// Count one request under `key` for every limit, unless one of them is used up already.
    pub(super) fn hit(&self, key: &str, limits: &[Limit], now_ms: i64) -> Hit {
        let idx = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let Some(shard) = self.shards.get(idx) else {
            return Hit::default();
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms >= shard.next_sweep_ms {
            shard.map.retain(|_, e| e.expires_ms > now_ms);
            shard.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
        }
        if !shard.map.contains_key(key) && shard.map.len() >= self.cap {
            evict_soonest(&mut shard.map, self.cap);
        }
        // The key is copied only the first time it is seen.
        let entry = shard.map.entry_ref(key).or_default();
        let mut hit = Hit::default();
        for l in limits {
            let (start, _) = l.period.window(now_ms);
            let (slot_start, count) = entry.slots[l.period.index()];
            let used = if slot_start == start { count } else { 0 };
            if hit.stop.is_none() && l.limit - used as f64 <= 0.0 {
                hit.stop = Some(l.period);
            }
            hit.used.push((l.period, used));
        }
        if hit.stop.is_none() {
            for (period, used) in &hit.used {
                let (start, end) = period.window(now_ms);
                entry.slots[period.index()] = (start, used + 1);
                entry.expires_ms = entry.expires_ms.max(end);
            }
        }
        hit
    }

    /// Number of keys held (all shards).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

/// Drop the eighth of the entries that expire soonest (at least one).
fn evict_soonest(map: &mut HashMap<String, Entry>, cap: usize) {
    let mut expiries: Vec<i64> = map.values().map(|e| e.expires_ms).collect();
    let n = (cap / 8).clamp(1, expiries.len().max(1));
    if expiries.is_empty() {
        return;
    }
    let (_, cutoff, _) = expiries.select_nth_unstable(n - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    map.retain(|_, e| {
        if dropped < n && e.expires_ms <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::rate_limiting::window::Period;

    fn limits(v: &[(Period, f64)]) -> Vec<Limit> {
        v.iter()
            .map(|&(period, limit)| Limit { period, limit })
            .collect()
    }

    #[test]
    fn counts_until_the_limit_then_stops_without_counting() {
        let c = LocalCounters::default();
        let l = limits(&[(Period::Second, 2.0), (Period::Minute, 3.0)]);
        let t = 1_700_000_000_000;
        let h = c.hit("k", &l, t);
        assert_eq!(h.stop, None);
        assert_eq!(
            h.used.as_slice(),
            [(Period::Second, 0), (Period::Minute, 0)]
        );
        assert_eq!(c.hit("k", &l, t + 1).used[0], (Period::Second, 1));
        let h = c.hit("k", &l, t + 2);
        assert_eq!(h.stop, Some(Period::Second));
        assert_eq!(
            h.used.as_slice(),
            [(Period::Second, 2), (Period::Minute, 2)]
        );
        // Next second: the minute allows one more, then the minute stops.
        assert_eq!(c.hit("k", &l, t + 1000).stop, None);
        let h = c.hit("k", &l, t + 1001);
        assert_eq!(h.stop, Some(Period::Minute));
        assert_eq!(
            h.used.as_slice(),
            [(Period::Second, 1), (Period::Minute, 3)]
        );
        // Other keys are independent.
        assert_eq!(c.hit("other", &l, t + 1001).stop, None);
    }

    #[test]
    fn fractional_limits_allow_while_used_is_below() {
        let c = LocalCounters::default();
        let l = limits(&[(Period::Minute, 1.5)]);
        let t = 1_700_000_000_000;
        assert_eq!(c.hit("k", &l, t).stop, None);
        assert_eq!(c.hit("k", &l, t).stop, None);
        assert_eq!(c.hit("k", &l, t).stop, Some(Period::Minute));
    }

    #[test]
    fn expired_windows_are_swept_and_memory_is_bounded() {
        let c = LocalCounters::with_capacity(16);
        let l = limits(&[(Period::Second, 5.0)]);
        let t = 1_700_000_000_000;
        for i in 0..2000 {
            c.hit(&format!("k{i}"), &l, t);
        }
        assert!(c.len() <= 16 * SHARDS, "{} keys", c.len());
        // Two seconds later every window ended: the next hit on each shard sweeps it.
        for i in 0..2000 {
            c.hit(&format!("n{i}"), &l, t + 2000);
        }
        for i in 0..SHARDS * 8 {
            c.hit(&format!("z{i}"), &l, t + 3500);
        }
        assert!(c.len() <= SHARDS * 16);
        let c = LocalCounters::default();
        // Shards are chosen by a randomly seeded hash: pick "b" on another shard than "a" by
        // construction, so a hit on b's shard provably leaves a's shard alone.
        let shard = |k: &str| c.hasher.hash_one(k) % SHARDS as u64;
        let b = (0..)
            .map(|n| format!("b{n}"))
            .find(|k| shard(k) != shard("a"))
            .unwrap();
        c.hit("a", &l, t);
        c.hit(&b, &l, t + 1500);
        assert_eq!(c.len(), 2, "a hit sweeps only its own shard");
        // Hit keys until every shard saw a hit after the windows of "a" and "b" ended: then
        // both were swept and only the new keys remain.
        let mut hit = std::collections::HashSet::new();
        let mut n = 0;
        while hit.len() < SHARDS {
            let k = format!("s{n}");
            hit.insert(shard(&k));
            c.hit(&k, &l, t + 10_000);
            n += 1;
        }
        assert_eq!(c.len(), n, "old windows swept, every new key kept");
    }

    #[test]
    fn concurrent_hits_never_exceed_the_limit() {
        let c = std::sync::Arc::new(LocalCounters::default());
        let l = std::sync::Arc::new(limits(&[(Period::Hour, 100.0)]));
        let t = 1_700_000_000_000;
        let passed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, l, p) = (c.clone(), l.clone(), passed.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if c.hit("k", &l, t).stop.is_none() {
                            p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(passed.load(std::sync::atomic::Ordering::Relaxed), 100);
    }
}
