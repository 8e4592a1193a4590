//! TEMPORARY stand-in (plain round-robin, no health) until the real balancer lands; same API.
#![allow(missing_docs, unreachable_pub, clippy::all)]
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::{HashOn, Target, Upstream};

pub struct BalancerRegistry;
impl BalancerRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self)
    }
    pub async fn reconcile(
        &self,
        upstreams: &[Upstream],
        targets: &[Target],
    ) -> HashMap<String, Arc<Balancer>> {
        let mut out = HashMap::new();
        for u in upstreams {
            let mut peers = Vec::new();
            for t in targets
                .iter()
                .filter(|t| t.upstream.id == u.id && t.weight > 0)
            {
                if let Ok(mut addrs) = tokio::net::lookup_host(t.target.as_str()).await {
                    if let Some(addr) = addrs.next() {
                        let (h, p) = t.target.rsplit_once(':').unwrap_or((&t.target, "8000"));
                        peers.push(Peer {
                            addr,
                            host: h.into(),
                            port: p.parse().unwrap_or(8000),
                            target: t.target.as_str().into(),
                        });
                    }
                }
            }
            out.insert(
                u.name.clone(),
                Arc::new(Balancer {
                    upstream: u.clone(),
                    peers,
                    next: AtomicUsize::new(0),
                }),
            );
        }
        out
    }
    pub fn shutdown(&self) {}
}
pub struct Balancer {
    upstream: Upstream,
    peers: Vec<Peer>,
    next: AtomicUsize,
}
pub trait HashSource {
    fn value(&self, on: HashOn, name: Option<&str>) -> Option<Cow<'_, str>>;
}
pub struct Pick {
    pub peer: Peer,
    pub set_cookie: Option<(String, String, String)>,
}
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub host: Arc<str>,
    pub port: u16,
    pub target: Arc<str>,
}
pub enum Outcome {
    Status(u16),
    TcpFailure,
    Timeout,
}
impl Balancer {
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
    pub fn pick(&self, _hash: &dyn HashSource, exclude: &[SocketAddr]) -> Option<Pick> {
        if self.peers.is_empty() {
            return None;
        }
        for _ in 0..self.peers.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len();
            if !exclude.contains(&self.peers[i].addr) {
                return Some(Pick {
                    peer: self.peers[i].clone(),
                    set_cookie: None,
                });
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len();
        Some(Pick {
            peer: self.peers[i].clone(),
            set_cookie: None,
        })
    }
    pub fn report(&self, _peer: &Peer, _outcome: Outcome) {}
    pub fn set_target_health(&self, _target: &str, _healthy: bool) -> bool {
        false
    }
}
