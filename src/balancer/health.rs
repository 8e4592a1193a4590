//! Per-address health state: the consecutive-counter state machine shared by active probes,
//! passive reports and manual overrides, plus in-flight and latency bookkeeping.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::info;

use crate::model::{ActiveHealthcheck, Healthchecks};

/// Lock a mutex, ignoring poisoning (the protected data stays consistent on every path).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether health checking is "on" for an upstream (kong-compat §3.3).
pub(crate) fn hc_on(hc: &Healthchecks) -> bool {
    hc.active.healthy.interval > 0.0
        || hc.active.unhealthy.interval > 0.0
        || hc.passive.unhealthy.tcp_failures > 0
        || hc.passive.unhealthy.timeouts > 0
        || hc.passive.unhealthy.http_failures > 0
}

/// Whether the active checker has anything to do.
pub(crate) fn active_on(a: &ActiveHealthcheck) -> bool {
    a.healthy.interval > 0.0 || a.unhealthy.interval > 0.0
}

/// One classified observation about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A status in the healthy list (or a successful TCP connect).
    Success,
    /// A status in the unhealthy list.
    HttpFailure,
    /// Connection refused/reset, TLS or protocol error.
    TcpFailure,
    /// No answer within the timeout.
    Timeout,
}

/// Counter limits; 0 disables the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub(crate) successes: u32,
    pub(crate) http_failures: u32,
    pub(crate) tcp_failures: u32,
    pub(crate) timeouts: u32,
}

impl Thresholds {
    /// Limits for passive (traffic) reports.
    pub(crate) fn passive(hc: &Healthchecks) -> Self {
        let p = &hc.passive;
        Self {
            successes: p.healthy.successes,
            http_failures: p.unhealthy.http_failures,
            tcp_failures: p.unhealthy.tcp_failures,
            timeouts: p.unhealthy.timeouts,
        }
    }

    /// Limits for active probes. When unhealthy targets are probed, at least one success is
    /// required to bring them back (a `successes` of 0 would otherwise leave them stuck forever,
    /// Kong's recurring "stuck UNHEALTHY" complaint).
    pub(crate) fn active(a: &ActiveHealthcheck) -> Self {
        let successes = if a.unhealthy.interval > 0.0 {
            a.healthy.successes.max(1)
        } else {
            a.healthy.successes
        };
        Self {
            successes,
            http_failures: a.unhealthy.http_failures,
            tcp_failures: a.unhealthy.tcp_failures,
            timeouts: a.unhealthy.timeouts,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

/// Long-lived state of one resolved address of one target.
#[derive(Debug)]
pub(crate) struct AddrState {
    pub(crate) addr: SocketAddr,
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
    pub(crate) target: Arc<str>,
    /// Stable identity on the consistent-hashing ring.
    pub(crate) ring_id: u64,
    healthy: AtomicBool,
    counters: Mutex<Counters>,
    pub(crate) inflight: AtomicU32,
    /// EWMA of response time in microseconds (0: never measured).
    pub(crate) ewma_us: AtomicU64,
}

impl AddrState {
    pub(crate) fn new(addr: SocketAddr, host: Arc<str>, port: u16, target: Arc<str>) -> Self {
        let ring_id = super::ring::hash_str(&format!("{target} {addr}"));
        Self {
            addr,
            host,
            port,
            target,
            ring_id,
            healthy: AtomicBool::new(true),
            counters: Mutex::new(Counters::default()),
            inflight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
        }
    }

    /// Current health flag (true also when health checks are off and no override is set).
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Feed one observation; flips the state when a counter reaches its limit.
    pub(crate) fn record(&self, ev: Event, th: &Thresholds, upstream: &str) {
        let mut c = lock(&self.counters);
        let healthy = self.is_healthy();
        if ev == Event::Success {
            c.http_failures = 0;
            c.tcp_failures = 0;
            c.timeouts = 0;
            if healthy {
                c.successes = 0;
                return;
            }
            c.successes = c.successes.saturating_add(1);
            if th.successes > 0 && c.successes >= th.successes {
                self.flip(&mut c, true, upstream, "health check successes");
            }
            return;
        }
        c.successes = 0;
        if !healthy {
            return;
        }
        let (count, limit) = match ev {
            Event::HttpFailure => (&mut c.http_failures, th.http_failures),
            Event::TcpFailure => (&mut c.tcp_failures, th.tcp_failures),
            Event::Timeout => (&mut c.timeouts, th.timeouts),
            Event::Success => return,
        };
        *count = count.saturating_add(1);
        if limit > 0 && *count >= limit {
            let why = match ev {
                Event::HttpFailure => "http failures",
                Event::TcpFailure => "tcp failures",
                _ => "timeouts",
            };
            self.flip(&mut c, false, upstream, why);
        }
    }

    /// Manual override (or a reset): set the state and clear the counters.
    pub(crate) fn set(&self, healthy: bool, upstream: &str, why: &str) {
        let mut c = lock(&self.counters);
        if self.is_healthy() == healthy {
            *c = Counters::default();
            return;
        }
        self.flip(&mut c, healthy, upstream, why);
    }

    fn flip(&self, c: &mut Counters, healthy: bool, upstream: &str, why: &str) {
        *c = Counters::default();
        self.healthy.store(healthy, Ordering::Release);
        if healthy {
            info!(upstream = %upstream, target = %self.target, address = %self.addr, reason = why, "target became healthy");
        } else {
            info!(upstream = %upstream, target = %self.target, address = %self.addr, reason = why, "target became unhealthy");
        }
    }

    /// Fold one response time into the latency EWMA.
    pub(crate) fn observe_latency(&self, micros: u64) {
        let micros = micros.max(1);
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            micros
        } else {
            (old.saturating_mul(4).saturating_add(micros)) / 5
        };
        self.ewma_us.store(new, Ordering::Relaxed);
    }
}
