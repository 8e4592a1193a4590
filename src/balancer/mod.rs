//! Load balancing and health checks for upstreams (kong-compat §3).
//!
//! A [`BalancerRegistry`] lives for the whole process. Each [`reconcile`](BalancerRegistry::reconcile)
//! hands out fresh [`Balancer`] handles (one per upstream, keyed by name) that share long-lived
//! per-upstream state: per-address health and counters, round-robin cursors, in-flight counts,
//! the active checker task and resolved DNS addresses. State survives config reloads for
//! unchanged upstream ids and target strings, so a reload never resets traffic or health.
//!
//! The hot path ([`Balancer::pick`]) loads the current peer set through an `ArcSwap` and takes
//! at most one short mutex (smooth weighted round-robin); it allocates only for a generated
//! hashing cookie.
//!
//! Private modules: `health` (counter state machine), `select` (algorithms), `ring` (consistent
//! hashing), `checker` (active probes), `dns` (target parsing and resolution).

mod checker;
mod dns;
mod health;
mod ring;
mod select;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use uuid::Uuid;

use self::health::{AddrState, Event, Thresholds, active_on, hc_on, lock};
use self::select::{Entry, PeerSet};
use crate::model::{ActiveHealthcheck, Algorithm, HashOn, Target, Upstream};

/// How often hostname targets are re-resolved in the background.
const DNS_REFRESH: Duration = Duration::from_secs(30);

/// Supplies consistent-hashing inputs lazily (the proxy implements it over the request).
pub trait HashSource {
    /// The value to hash for `on` (`name` is the header/cookie/query-arg/capture name where the
    /// kind needs one), or `None` when the request has none.
    fn value(&self, on: HashOn, name: Option<&str>) -> Option<Cow<'_, str>>;
}

/// A source with no values (round-robin-like behaviour for hashing upstreams).
impl HashSource for () {
    fn value(&self, _on: HashOn, _name: Option<&str>) -> Option<Cow<'_, str>> {
        None
    }
}

/// The result of [`Balancer::pick`].
#[derive(Debug, Clone)]
pub struct Pick {
    /// The chosen address.
    pub peer: Peer,
    /// When `hash_on=cookie` and the request had no cookie: `(name, value, path)` the proxy must
    /// send back with `Set-Cookie` on the response.
    pub set_cookie: Option<(String, String, String)>,
}

/// A chosen address. Cloneable; the in-flight count used by least-connections is released when
/// the last clone drops.
#[derive(Clone)]
pub struct Peer {
    /// Socket address to connect to.
    pub addr: SocketAddr,
    /// Target hostname as written in the target (IPv6 literals keep their brackets), for the
    /// upstream Host header.
    pub host: Arc<str>,
    /// Target port.
    pub port: u16,
    /// The target string (`host:port`).
    pub target: Arc<str>,
    inflight: Arc<InFlight>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("target", &self.target)
            .finish()
    }
}

impl Peer {
    fn new(state: Arc<AddrState>) -> Self {
        state.inflight.fetch_add(1, Ordering::Relaxed);
        Self {
            addr: state.addr,
            host: state.host.clone(),
            port: state.port,
            target: state.target.clone(),
            inflight: Arc::new(InFlight {
                state,
                started: Instant::now(),
            }),
        }
    }
}

struct InFlight {
    state: Arc<AddrState>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Outcome of one proxied attempt, for passive health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// Connection refused/reset or another transport error.
    TcpFailure,
    /// The upstream timed out.
    Timeout,
}

/// Health of an upstream, for `GET /upstreams/{u}/health` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// Whether the balancer can hand out peers (healthy weight above `threshold`).
    pub balancer_healthy: bool,
    /// Every target, sorted by target string.
    pub targets: Vec<TargetHealth>,
}

/// Health of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The target string.
    pub target: String,
    /// The target's weight.
    pub weight: u32,
    /// Aggregate: healthy if any address is; `DNS_ERROR` when nothing resolved.
    pub health: HealthState,
    /// Resolved addresses.
    pub addresses: Vec<AddressHealth>,
}

/// Health of one resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressHealth {
    /// IP address (IPv6 without brackets).
    pub ip: String,
    /// Port.
    pub port: u16,
    /// State.
    pub health: HealthState,
    /// Weight (the target's).
    pub weight: u32,
}

/// Kong's health states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Eligible for traffic.
    Healthy,
    /// Ejected by health checks or a manual override.
    Unhealthy,
    /// Health checking is off for the upstream; always eligible.
    HealthchecksOff,
    /// The target's hostname did not resolve; gets no traffic.
    DnsError,
}

impl HealthState {
    /// `HEALTHY`, `UNHEALTHY`, `HEALTHCHECKS_OFF` or `DNS_ERROR`.
    pub fn as_kong_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::HealthchecksOff => "HEALTHCHECKS_OFF",
            Self::DnsError => "DNS_ERROR",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kong_str())
    }
}

/// One target of an upstream and its resolved addresses.
#[derive(Debug)]
struct TargetEntry {
    target: Arc<str>,
    host: Arc<str>,
    port: u16,
    weight: u32,
    is_ip: bool,
    addrs: Vec<Arc<AddrState>>,
}

impl TargetEntry {
    /// Replace the address list, reusing the state of addresses that stay. Returns whether the
    /// list changed.
    fn set_addrs(&mut self, addrs: &[SocketAddr]) -> bool {
        if self.addrs.len() == addrs.len()
            && self.addrs.iter().zip(addrs).all(|(a, b)| a.addr == *b)
        {
            return false;
        }
        let old = std::mem::take(&mut self.addrs);
        self.addrs = addrs
            .iter()
            .map(|addr| {
                old.iter()
                    .find(|a| a.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(AddrState::new(
                            *addr,
                            self.host.clone(),
                            self.port,
                            self.target.clone(),
                        ))
                    })
            })
            .collect();
        true
    }
}

/// Long-lived per-upstream state shared by every [`Balancer`] handle of that upstream id.
#[derive(Debug)]
struct Core {
    cfg: ArcSwap<Upstream>,
    targets: Mutex<BTreeMap<Arc<str>, TargetEntry>>,
    set: ArcSwap<PeerSet>,
}

impl Core {
    fn new(up: &Upstream) -> Self {
        let cfg = Arc::new(up.clone());
        Self {
            set: ArcSwap::from_pointee(PeerSet::empty(cfg.clone())),
            cfg: ArcSwap::new(cfg),
            targets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Rebuild the peer set from the current config and targets.
    fn rebuild(&self) {
        let cfg = self.cfg.load_full();
        let entries: Vec<Entry> = {
            let tt = lock(&self.targets);
            tt.values()
                .flat_map(|te| {
                    te.addrs.iter().map(|a| Entry {
                        state: a.clone(),
                        weight: te.weight,
                    })
                })
                .collect()
        };
        let old = self.set.load_full();
        self.set.store(Arc::new(PeerSet::new(cfg, entries, &old)));
    }

    fn name(&self) -> String {
        self.cfg.load().name.clone()
    }
}

/// A per-upstream balancer handle (cheap; shares state with every other handle of the upstream).
#[derive(Debug)]
pub struct Balancer {
    upstream: Arc<Upstream>,
    core: Arc<Core>,
}

impl Balancer {
    /// The upstream this balancer was built for.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Choose a peer. `None` when nothing is available (no targets, all unhealthy, all weight 0,
    /// or healthy weight at/below `healthchecks.threshold`): the proxy answers 503 "failure to
    /// get a peer from the ring-balancer". `exclude` lists addresses this request already tried:
    /// another peer is preferred, but an excluded one is returned when nothing else is left.
    pub fn pick(&self, hash: &dyn HashSource, exclude: &[SocketAddr]) -> Option<Pick> {
        let set = self.core.set.load();
        if !set.usable() {
            return None;
        }
        let mut set_cookie = None;
        let idx = match set.cfg.algorithm {
            Algorithm::RoundRobin => set.pick_rr(exclude),
            Algorithm::LeastConnections => set.pick_least(exclude, false),
            Algorithm::Latency => set.pick_least(exclude, true),
            Algorithm::ConsistentHashing => {
                let (key, cookie) = hash_key(&set.cfg, hash);
                set_cookie = cookie;
                match key {
                    Some(k) => set.pick_ring(&k, exclude),
                    None => set.pick_rr(exclude),
                }
            }
        }?;
        let state = set.entries.get(idx)?.state.clone();
        Some(Pick {
            peer: Peer::new(state),
            set_cookie,
        })
    }

    /// Passive health feedback from proxied traffic (also feeds latency bookkeeping).
    pub fn report(&self, peer: &Peer, outcome: Outcome) {
        let state = &peer.inflight.state;
        if let Outcome::Status(_) = outcome {
            let micros =
                u64::try_from(peer.inflight.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            state.observe_latency(micros);
        }
        let cfg = self.core.cfg.load();
        let hc = &cfg.healthchecks;
        if !hc_on(hc) {
            return;
        }
        let ev = match outcome {
            Outcome::TcpFailure => Event::TcpFailure,
            Outcome::Timeout => Event::Timeout,
            Outcome::Status(_) if hc.passive.kind == "tcp" => Event::Success,
            Outcome::Status(s) => {
                if hc.passive.unhealthy.http_statuses.contains(&s) {
                    Event::HttpFailure
                } else if hc.passive.healthy.http_statuses.contains(&s) {
                    Event::Success
                } else {
                    return;
                }
            }
        };
        state.record(ev, &Thresholds::passive(hc), &cfg.name);
    }

    /// Manual override, as `PUT /upstreams/{u}/targets/{t}/healthy|unhealthy`, applied to every
    /// address of the target. Returns false if no such target.
    pub fn set_target_health(&self, target: &str, healthy: bool) -> bool {
        let name = self.core.name();
        let tt = lock(&self.core.targets);
        let Some(te) = tt.get(target) else {
            return false;
        };
        let why = if healthy {
            "manual override (healthy)"
        } else {
            "manual override (unhealthy)"
        };
        for a in &te.addrs {
            a.set(healthy, &name, why);
        }
        true
    }

    /// Manual override of one target, or of one of its resolved addresses (`ip:port`). Returns
    /// false when there is no such target or address.
    pub fn set_health(&self, target: &str, address: Option<&str>, healthy: bool) -> bool {
        let Some(address) = address else {
            return self.set_target_health(target, healthy);
        };
        let name = self.core.name();
        let tt = lock(&self.core.targets);
        let Some(te) = tt.get(target) else {
            return false;
        };
        let why = if healthy {
            "manual override (healthy)"
        } else {
            "manual override (unhealthy)"
        };
        let mut found = false;
        for a in te.addrs.iter().filter(|a| a.addr.to_string() == address) {
            a.set(healthy, &name, why);
            found = true;
        }
        found
    }

    /// Health of every target and address.
    pub fn health(&self) -> UpstreamHealth {
        let on = hc_on(&self.core.cfg.load().healthchecks);
        let addr_state = |a: &AddrState| match (on, a.is_healthy()) {
            (_, false) => HealthState::Unhealthy,
            (true, true) => HealthState::Healthy,
            (false, true) => HealthState::HealthchecksOff,
        };
        let targets = {
            let tt = lock(&self.core.targets);
            tt.values()
                .map(|te| {
                    let addresses: Vec<AddressHealth> = te
                        .addrs
                        .iter()
                        .map(|a| AddressHealth {
                            ip: a.addr.ip().to_string(),
                            port: a.addr.port(),
                            health: addr_state(a),
                            weight: te.weight,
                        })
                        .collect();
                    let health = if addresses.is_empty() {
                        HealthState::DnsError
                    } else if let Some(a) = addresses
                        .iter()
                        .find(|a| a.health != HealthState::Unhealthy)
                    {
                        a.health
                    } else {
                        HealthState::Unhealthy
                    };
                    TargetHealth {
                        target: te.target.to_string(),
                        weight: te.weight,
                        health,
                        addresses,
                    }
                })
                .collect()
        };
        UpstreamHealth {
            balancer_healthy: self.core.set.load().usable(),
            targets,
        }
    }
}

/// A cookie to set: (name, value, path).
type SetCookie = (String, String, String);

/// The consistent-hashing key for a request, and the cookie to set when one was generated.
fn hash_key<'a>(
    cfg: &Upstream,
    src: &'a dyn HashSource,
) -> (Option<Cow<'a, str>>, Option<SetCookie>) {
    let primary = match cfg.hash_on {
        HashOn::Header => cfg.hash_on_header.as_deref(),
        HashOn::Cookie => cfg.hash_on_cookie.as_deref(),
        HashOn::QueryArg => cfg.hash_on_query_arg.as_deref(),
        HashOn::UriCapture => cfg.hash_on_uri_capture.as_deref(),
        _ => None,
    };
    if cfg.hash_on != HashOn::None
        && let Some(v) = src.value(cfg.hash_on, primary)
    {
        return (Some(v), None);
    }
    if cfg.hash_on == HashOn::Cookie {
        let value = Uuid::new_v4().to_string();
        let name = cfg
            .hash_on_cookie
            .clone()
            .unwrap_or_else(|| "KONG_HASH".to_string());
        let cookie = (name, value.clone(), cfg.hash_on_cookie_path.clone());
        return (Some(Cow::Owned(value)), Some(cookie));
    }
    if cfg.hash_fallback != HashOn::None {
        let fallback = match cfg.hash_fallback {
            HashOn::Header => cfg.hash_fallback_header.as_deref(),
            HashOn::QueryArg => cfg.hash_fallback_query_arg.as_deref(),
            HashOn::UriCapture => cfg.hash_fallback_uri_capture.as_deref(),
            _ => None,
        };
        if let Some(v) = src.value(cfg.hash_fallback, fallback) {
            return (Some(v), None);
        }
    }
    (None, None)
}

/// Per-upstream registry entry.
#[derive(Debug)]
struct UpEntry {
    core: Arc<Core>,
    checker: Option<(ActiveHealthcheck, AbortHandle)>,
}

#[derive(Debug, Default)]
struct RegState {
    ups: HashMap<Uuid, UpEntry>,
    dns_task: Option<AbortHandle>,
    shut: bool,
}

/// Long-lived registry, outlives config snapshots: health state, counters, RR cursors, in-flight
/// counts and active-checker tasks are kept across reconciles for unchanged upstream ids /
/// target addresses, so a config reload never resets traffic or health state.
#[derive(Debug)]
pub struct BalancerRegistry {
    me: Weak<BalancerRegistry>,
    reconcile_lock: tokio::sync::Mutex<()>,
    state: Mutex<RegState>,
}

impl BalancerRegistry {
    /// A registry with no upstreams.
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            reconcile_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new(RegState::default()),
        })
    }

    /// Apply a new configuration. Creates/updates balancers, resolves hostname targets (bounded
    /// by a short timeout, re-resolved in the background every 30 s; an unresolvable target
    /// reports `DNS_ERROR` and gets no traffic), starts/stops/restarts active health-check tasks
    /// (only when their settings changed) and drops the state of removed targets. Returns
    /// balancers by upstream name.
    pub async fn reconcile(
        &self,
        upstreams: &[Upstream],
        targets: &[Target],
    ) -> HashMap<String, Arc<Balancer>> {
        let _serial = self.reconcile_lock.lock().await;

        // Targets per upstream, de-duplicated by target string (latest wins).
        let mut by_up: HashMap<Uuid, BTreeMap<&str, &Target>> = HashMap::new();
        for t in targets {
            let slot = by_up.entry(t.upstream.id).or_default();
            match slot.get(t.target.as_str()) {
                Some(prev) if prev.created_at > t.created_at => {}
                _ => {
                    slot.insert(t.target.as_str(), t);
                }
            }
        }

        // Hostnames that need resolving now (new targets, or ones that never resolved).
        let mut to_resolve: Vec<(String, u16)> = Vec::new();
        {
            let st = lock(&self.state);
            let mut seen = HashSet::new();
            for up in upstreams {
                let old = st.ups.get(&up.id).map(|e| lock(&e.core.targets));
                for tstr in by_up.get(&up.id).into_iter().flat_map(|m| m.keys()) {
                    let Some(ta) = dns::parse_target(tstr) else {
                        continue;
                    };
                    if ta.ip.is_some() {
                        continue;
                    }
                    let known = old
                        .as_ref()
                        .and_then(|tt| tt.get(*tstr))
                        .is_some_and(|te| !te.addrs.is_empty());
                    if !known && seen.insert((ta.host.clone(), ta.port)) {
                        to_resolve.push((ta.host, ta.port));
                    }
                }
            }
        }
        let answers =
            futures_util::future::join_all(to_resolve.iter().map(|(h, p)| dns::resolve(h, *p)))
                .await;
        let resolved: HashMap<(String, u16), Result<Vec<SocketAddr>, String>> =
            to_resolve.into_iter().zip(answers).collect();

        let mut st = lock(&self.state);
        let shut = st.shut;
        let mut out = HashMap::new();
        let mut keep = HashSet::new();
        for up in upstreams {
            keep.insert(up.id);
            let entry = st.ups.entry(up.id).or_insert_with(|| UpEntry {
                core: Arc::new(Core::new(up)),
                checker: None,
            });
            let core = entry.core.clone();
            let was_on = hc_on(&core.cfg.load().healthchecks);
            let now_on = hc_on(&up.healthchecks);
            core.cfg.store(Arc::new(up.clone()));
            {
                let mut tt = lock(&core.targets);
                let mut old = std::mem::take(&mut *tt);
                for (tstr, t) in by_up.get(&up.id).into_iter().flatten() {
                    let Some(ta) = dns::parse_target(tstr) else {
                        warn!(upstream = %up.name, target = %tstr, "invalid target, ignored");
                        continue;
                    };
                    let mut te = old.remove(*tstr).unwrap_or_else(|| TargetEntry {
                        target: Arc::from(*tstr),
                        host: Arc::from(ta.host.as_str()),
                        port: ta.port,
                        weight: t.weight,
                        is_ip: ta.ip.is_some(),
                        addrs: Vec::new(),
                    });
                    te.weight = t.weight;
                    if let Some(ip) = ta.ip {
                        te.set_addrs(&[SocketAddr::new(ip, ta.port)]);
                    } else if let Some(res) = resolved.get(&(ta.host.clone(), ta.port)) {
                        match res {
                            Ok(addrs) => {
                                te.set_addrs(addrs);
                            }
                            Err(e) => {
                                warn!(upstream = %up.name, target = %tstr, error = %e, "target did not resolve");
                            }
                        }
                    }
                    if was_on && !now_on {
                        for a in &te.addrs {
                            a.set(true, &up.name, "health checks turned off");
                        }
                    }
                    tt.insert(te.target.clone(), te);
                }
            }
            core.rebuild();

            let want = now_on && active_on(&up.healthchecks.active) && !shut;
            let same = entry
                .checker
                .as_ref()
                .is_some_and(|(cfg, _)| *cfg == up.healthchecks.active);
            if (!want || !same)
                && let Some((_, h)) = entry.checker.take()
            {
                h.abort();
            }
            if want && entry.checker.is_none() {
                let h = checker::spawn(Arc::downgrade(&core), up.healthchecks.active.clone());
                entry.checker = Some((up.healthchecks.active.clone(), h));
            }
            out.insert(
                up.name.clone(),
                Arc::new(Balancer {
                    upstream: Arc::new(up.clone()),
                    core,
                }),
            );
        }
        st.ups.retain(|id, e| {
            let k = keep.contains(id);
            if !k && let Some((_, h)) = e.checker.take() {
                h.abort();
            }
            k
        });
        if !shut && st.dns_task.is_none() {
            let me = self.me.clone();
            st.dns_task = Some(tokio::spawn(dns_loop(me, DNS_REFRESH)).abort_handle());
        }
        out
    }

    /// Stop all background tasks (active checkers, DNS refresh). Balancers keep working with
    /// their last known state.
    pub fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.shut = true;
        if let Some(h) = st.dns_task.take() {
            h.abort();
        }
        for e in st.ups.values_mut() {
            if let Some((_, h)) = e.checker.take() {
                h.abort();
            }
        }
    }

    /// Re-resolve every hostname target; rebuild the peer sets whose addresses changed. A failed
    /// re-resolution keeps the last good addresses.
    async fn refresh_dns(&self) {
        // (core, target string, host, port)
        type Job = (Arc<Core>, Arc<str>, Arc<str>, u16);
        let jobs: Vec<Job> = {
            let st = lock(&self.state);
            st.ups
                .values()
                .flat_map(|e| {
                    let tt = lock(&e.core.targets);
                    tt.values()
                        .filter(|te| !te.is_ip)
                        .map(|te| (e.core.clone(), te.target.clone(), te.host.clone(), te.port))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        if jobs.is_empty() {
            return;
        }
        let answers =
            futures_util::future::join_all(jobs.iter().map(|(_, _, h, p)| dns::resolve(h, *p)))
                .await;
        let _serial = self.reconcile_lock.lock().await;
        let mut changed: Vec<Arc<Core>> = Vec::new();
        for ((core, target, _, _), res) in jobs.into_iter().zip(answers) {
            let mut tt = lock(&core.targets);
            let Some(te) = tt.get_mut(&*target) else {
                continue;
            };
            match res {
                Ok(addrs) => {
                    if te.set_addrs(&addrs) && !changed.iter().any(|c| Arc::ptr_eq(c, &core)) {
                        debug!(target = %target, "target addresses changed");
                        drop(tt);
                        changed.push(core);
                    }
                }
                Err(e) => {
                    debug!(target = %target, error = %e, "re-resolution failed; keeping last addresses")
                }
            }
        }
        for core in changed {
            core.rebuild();
        }
    }
}

impl Drop for BalancerRegistry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn dns_loop(me: Weak<BalancerRegistry>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(reg) = me.upgrade() else { return };
        reg.refresh_dns().await;
    }
}
