//! What happened when during one request, for tracing plugins (opentelemetry): the router, each
//! plugin's access phase and each upstream attempt. Recorded only on routes whose chain has a
//! plugin that asked for it ([`crate::plugins::Handler::wants_timeline`]); otherwise the proxy
//! never allocates one.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// The timeline of one request.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Wall-clock time the request was received (spans are exported in wall-clock time).
    pub started_at: SystemTime,
    /// Monotonic time the request was received (every other instant is relative to it).
    pub started: Instant,
    /// When the router had matched the route (the router ran from `started`).
    pub routed: Instant,
    /// Each plugin's access phase, in the order they ran.
    pub plugins: Vec<PluginSpan>,
    /// Each upstream attempt, in order (retries after the first).
    pub attempts: Vec<AttemptSpan>,
}

/// One plugin phase.
#[derive(Debug, Clone)]
pub struct PluginSpan {
    /// Plugin name (Kong's, e.g. `key-auth`).
    pub name: &'static str,
    /// The phase (`access`).
    pub phase: &'static str,
    /// Start.
    pub start: Instant,
    /// End.
    pub end: Instant,
}

/// One attempt to reach an upstream peer (Kong's `kong.balancer` span).
#[derive(Debug, Clone)]
pub struct AttemptSpan {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The peer's name (target host or service host).
    pub host: String,
    /// Start (peer picked, before connecting).
    pub start: Instant,
    /// End (response head received, or the attempt failed).
    pub end: Instant,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

impl Timeline {
    /// A timeline for a request received at `started` whose route was matched at `routed`.
    pub fn new(started: Instant, routed: Instant) -> Self {
        // Wall clock now, minus how long ago the request arrived.
        let started_at = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        Self {
            started_at,
            started,
            routed,
            plugins: Vec::new(),
            attempts: Vec::new(),
        }
    }

    /// The wall-clock time of `at`.
    pub fn wall(&self, at: Instant) -> SystemTime {
        self.started_at + at.saturating_duration_since(self.started)
    }

    /// Nanoseconds since the Unix epoch of `at` (OTLP's timestamps).
    pub fn unix_nanos(&self, at: Instant) -> u64 {
        self.wall(at)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }
}
