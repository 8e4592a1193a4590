//! The immutable-ish peer set a balancer picks from (swapped atomically on reconcile and DNS
//! changes) and the selection algorithms: smooth weighted round-robin, ring lookup,
//! least-connections and latency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::health::{AddrState, lock};
use super::ring::Ring;
use crate::model::{Algorithm, Upstream};

/// One address with its target's weight.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) state: Arc<AddrState>,
    pub(crate) weight: u32,
}

impl Entry {
    fn eligible(&self) -> bool {
        self.weight > 0 && self.state.is_healthy()
    }
}

/// Everything `pick` needs, built from the upstream config and the resolved targets.
#[derive(Debug)]
pub(crate) struct PeerSet {
    pub(crate) cfg: Arc<Upstream>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) ring: Option<Arc<Ring>>,
    /// Smooth WRR current weights, aligned with `entries`.
    rr: Mutex<Vec<i64>>,
    /// Tie-break rotation for least-connections / latency.
    cursor: AtomicUsize,
}

impl PeerSet {
    /// An empty set.
    pub(crate) fn empty(cfg: Arc<Upstream>) -> Self {
        Self {
            cfg,
            entries: Vec::new(),
            ring: None,
            rr: Mutex::new(Vec::new()),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Build a set, carrying WRR cursors over from `old` and reusing its ring when unchanged.
    pub(crate) fn new(cfg: Arc<Upstream>, entries: Vec<Entry>, old: &PeerSet) -> Self {
        let carried: HashMap<usize, i64> = {
            let cw = lock(&old.rr);
            old.entries
                .iter()
                .zip(cw.iter())
                .map(|(e, w)| (Arc::as_ptr(&e.state) as usize, *w))
                .collect()
        };
        let rr = entries
            .iter()
            .map(|e| {
                carried
                    .get(&(Arc::as_ptr(&e.state) as usize))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        let ring = if cfg.algorithm == Algorithm::ConsistentHashing {
            let members: Vec<(u64, u32)> = entries
                .iter()
                .map(|e| (e.state.ring_id, e.weight))
                .collect();
            match &old.ring {
                Some(r) if r.same(&members, cfg.slots) => Some(r.clone()),
                _ => Some(Arc::new(Ring::build(members, cfg.slots))),
            }
        } else {
            None
        };
        Self {
            cfg,
            entries,
            ring,
            rr: Mutex::new(rr),
            cursor: AtomicUsize::new(old.cursor.load(Ordering::Relaxed)),
        }
    }

    /// Whether the balancer may hand out peers: some healthy weight, and the healthy share of
    /// the total weight strictly above `threshold` percent.
    pub(crate) fn usable(&self) -> bool {
        let (mut total, mut healthy) = (0u64, 0u64);
        for e in &self.entries {
            total += u64::from(e.weight);
            if e.state.is_healthy() {
                healthy += u64::from(e.weight);
            }
        }
        if healthy == 0 {
            return false;
        }
        let threshold = self.cfg.healthchecks.threshold;
        threshold <= 0.0 || (healthy as f64 / total as f64) * 100.0 > threshold
    }

    /// Smooth weighted round-robin (nginx): every eligible entry gains its weight, the largest
    /// wins and loses the total. Excluded addresses are skipped unless nothing else is left.
    pub(crate) fn pick_rr(&self, exclude: &[SocketAddr]) -> Option<usize> {
        let mut cw = lock(&self.rr);
        for pass in 0..2 {
            if pass == 1 && exclude.is_empty() {
                break;
            }
            let mut total: i64 = 0;
            let mut best: Option<usize> = None;
            for (i, e) in self.entries.iter().enumerate() {
                if !e.eligible() || (pass == 0 && exclude.contains(&e.state.addr)) {
                    continue;
                }
                let Some(w) = cw.get_mut(i) else { continue };
                *w += i64::from(e.weight);
                total += i64::from(e.weight);
                let better = match best {
                    None => true,
                    Some(b) => cw.get(b).is_some_and(|bw| *bw < cw[i]),
                };
                if better {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                if let Some(w) = cw.get_mut(b) {
                    *w -= total;
                }
                return Some(b);
            }
        }
        None
    }

    /// Ring lookup: the owner of the key's slot, or the next eligible owner clockwise.
    pub(crate) fn pick_ring(&self, key: &str, exclude: &[SocketAddr]) -> Option<usize> {
        let ring = self.ring.as_ref()?;
        let n = ring.len();
        if n == 0 {
            return None;
        }
        let start = ring.slot_of(key);
        for pass in 0..2 {
            if pass == 1 && exclude.is_empty() {
                break;
            }
            let mut last = usize::MAX;
            for k in 0..n {
                let idx = ring.owner(start + k);
                if idx == last {
                    continue;
                }
                last = idx;
                let Some(e) = self.entries.get(idx) else {
                    continue;
                };
                if e.eligible() && (pass == 1 || !exclude.contains(&e.state.addr)) {
                    return Some(idx);
                }
            }
        }
        None
    }

    /// Fewest in-flight requests relative to weight (`latency`: also times the latency EWMA).
    /// Ties rotate so idle peers share the load.
    pub(crate) fn pick_least(&self, exclude: &[SocketAddr], latency: bool) -> Option<usize> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for pass in 0..2 {
            if pass == 1 && exclude.is_empty() {
                break;
            }
            let mut best: Option<(usize, f64)> = None;
            for k in 0..n {
                let i = (start + k) % n;
                let Some(e) = self.entries.get(i) else {
                    continue;
                };
                if !e.eligible() || (pass == 0 && exclude.contains(&e.state.addr)) {
                    continue;
                }
                let load = f64::from(e.state.inflight.load(Ordering::Relaxed)) + 1.0;
                let mut score = load / f64::from(e.weight);
                if latency {
                    score *= e.state.ewma_us.load(Ordering::Relaxed) as f64 + 1.0;
                }
                if best.is_none_or(|(_, s)| score < s) {
                    best = Some((i, score));
                }
            }
            if let Some((i, _)) = best {
                return Some(i);
            }
        }
        None
    }
}
