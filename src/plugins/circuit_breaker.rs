//! `circuit-breaker` (gwctl's own; no Kong equivalent): one breaker per service, closed -> open
//! -> half-open -> closed, so a failing upstream gets a rest instead of every request.
//!
//! - **Closed**: requests pass. `failure_threshold` *consecutive* failures open the breaker (a
//!   success resets the count), so a service failing one request in a thousand never opens it.
//! - **Open**: requests are answered at once with Kong's error body, 503 `Service unavailable
//!   (circuit breaker open)`, and `Retry-After` (the rest of the cool-down, whole seconds
//!   rounded up), without contacting the upstream.
//! - **Half-open**, once `cool_down` seconds passed: at most `half_open_probes` requests are in
//!   flight at once (the others get the 503 with `Retry-After: 1`); `success_threshold`
//!   successful probes close the breaker, any failed probe opens it again for a new cool-down.
//!
//! A *failure* is an upstream outcome: a gateway error of the upstream (502 bad gateway, 503
//! unavailable / no healthy target / name resolution, 504 timeout, i.e. `LogInfo.upstream_error`)
//! or an upstream response whose status is in `failure_statuses` (default 500, 502, 503, 504).
//! Any other upstream response is a success. Responses the upstream never saw (another plugin's
//! 401 or 429, a client's bad body) count as neither. Outcomes are recorded in the log phase,
//! i.e. when the response ended. An outcome that arrives after the breaker changed state (a slow
//! request admitted while closed that fails after the breaker opened) is ignored.
//!
//! The states live in [`BreakerStates`], owned by the plugin kind: they survive configuration
//! reloads, are shared by every proxy worker thread, and are keyed by service id, so a global,
//! service- or route-scoped instance all drive the breaker of the request's service (each with
//! its own thresholds). States of deleted services are dropped when the configuration is
//! compiled. [`BreakerStates::list`] is the read-only view behind the Admin API's
//! `GET /circuit-breakers` and `GET /services/{service}/circuit-breaker`.
//!
//! Priority 760: after authentication, ACLs, rate limiting and the transformers, so only requests
//! that would really go upstream are turned away or use a half-open probe slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use http::StatusCode;
use http::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{BuildCtx, Ctx, Flow, Handler, LogInfo, PluginKind, Source, typed_config};
use crate::model::Plugin;
use crate::model::schema::{EntityKind, Field, Schema};
use crate::proxy::respond;

/// The message of the 503 sent while the breaker is open.
pub const OPEN_MESSAGE: &str = "Service unavailable (circuit breaker open)";

/// The plugin kind; holds the breaker states of every service.
#[derive(Default)]
pub struct Kind {
    states: Arc<BreakerStates>,
}

impl Kind {
    /// A kind over `states` (shared with the Admin API).
    pub fn new(states: Arc<BreakerStates>) -> Self {
        Self { states }
    }

    /// The breaker states this kind drives.
    pub fn states(&self) -> &Arc<BreakerStates> {
        &self.states
    }
}

/// `config` of circuit-breaker.
#[derive(Debug, Clone, Deserialize)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// Successful half-open probes that close the breaker.
    pub success_threshold: u32,
    /// Seconds the breaker stays open before probing.
    pub cool_down: f64,
    /// Probe requests in flight at once while half-open.
    pub half_open_probes: u32,
    /// Upstream statuses that count as failures (besides the gateway's 502/503/504).
    pub failure_statuses: Vec<u16>,
}

fn cool_down_range(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(f) if f > 0.0 && f <= 86_400.0 => Ok(()),
        Some(_) => Err("value should be greater than 0 and at most 86400".to_owned()),
        None => Ok(()),
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "circuit-breaker"
    }
    fn priority(&self) -> i64 {
        760
    }
    fn allows_consumer(&self) -> bool {
        false
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "failure_threshold",
                    Field::integer()
                        .required()
                        .between(1, 1_000_000)
                        .default(json!(5)),
                ),
                (
                    "success_threshold",
                    Field::integer()
                        .required()
                        .between(1, 1_000_000)
                        .default(json!(2)),
                ),
                (
                    "cool_down",
                    Field::number()
                        .required()
                        .default(json!(60))
                        .validator(cool_down_range),
                ),
                (
                    "half_open_probes",
                    Field::integer()
                        .required()
                        .between(1, 10_000)
                        .default(json!(1)),
                ),
                (
                    "failure_statuses",
                    Field::array(Field::integer().between(100, 599))
                        .required()
                        .default(json!([500, 502, 503, 504])),
                ),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: CircuitBreakerConfig = typed_config(plugin)?;
        self.states.sync_services(|id| {
            ctx.tables
                .get(EntityKind::Services, id)
                .map(|e| match &**e {
                    crate::store::Entity::Service(s) => s.name.clone(),
                    _ => None,
                })
        });
        Ok(Arc::new(CircuitBreaker {
            states: Arc::clone(&self.states),
            settings: Settings {
                failure_threshold: conf.failure_threshold.max(1),
                success_threshold: conf.success_threshold.max(1),
                cool_down: Duration::try_from_secs_f64(conf.cool_down)
                    .unwrap_or(Duration::from_secs(60)),
                half_open_probes: conf.half_open_probes.max(1),
                failure_statuses: conf.failure_statuses,
            },
        }))
    }
}

#[derive(Debug, Clone)]
struct Settings {
    failure_threshold: u32,
    success_threshold: u32,
    cool_down: Duration,
    half_open_probes: u32,
    failure_statuses: Vec<u16>,
}

/// A breaker's state, as the Admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Requests pass.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// A bounded number of probe requests pass.
    HalfOpen,
}

/// What happened to one admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// The upstream did not decide this response.
    None,
}

struct Inner {
    state: State,
    /// Bumped at every transition: outcomes of requests admitted earlier are stale.
    generation: u64,
    /// Consecutive failures while closed.
    failures: u32,
    /// Successful probes while half-open.
    successes: u32,
    /// Probes in flight while half-open.
    probes: u32,
    /// When an open breaker may probe.
    open_until: Option<Instant>,
    opened_at: Option<SystemTime>,
    last_failure_at: Option<SystemTime>,
    changed_at: SystemTime,
    times_opened: u64,
    service_name: Option<String>,
}

/// The breaker of one service.
struct Breaker {
    inner: Mutex<Inner>,
}

/// What the access phase decided.
enum Admission {
    Pass(u64),
    Probe(u64),
    Reject(u64),
}

impl Breaker {
    fn new(name: Option<String>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                failures: 0,
                successes: 0,
                probes: 0,
                open_until: None,
                opened_at: None,
                last_failure_at: None,
                changed_at: SystemTime::now(),
                times_opened: 0,
                service_name: name,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self, s: &Settings, now: Instant) -> Admission {
        let mut b = self.lock();
        if b.state == State::Open {
            match b.open_until {
                Some(until) if now < until => {
                    let rest = until.duration_since(now);
                    return Admission::Reject(rest.as_secs_f64().ceil().max(1.0) as u64);
                }
                _ => b.transition(State::HalfOpen),
            }
        }
        match b.state {
            State::Closed => Admission::Pass(b.generation),
            State::HalfOpen if b.probes < s.half_open_probes => {
                b.probes += 1;
                Admission::Probe(b.generation)
            }
            _ => Admission::Reject(1),
        }
    }

    fn record(&self, s: &Settings, generation: u64, probe: bool, outcome: Outcome) {
        let mut b = self.lock();
        if b.generation != generation {
            return;
        }
        if probe && b.state == State::HalfOpen {
            b.probes = b.probes.saturating_sub(1);
        }
        match (b.state, outcome) {
            (_, Outcome::None) | (State::Open, _) => {}
            (State::Closed, Outcome::Success) => b.failures = 0,
            (State::Closed, Outcome::Failure) => {
                b.failures += 1;
                b.last_failure_at = Some(SystemTime::now());
                if b.failures >= s.failure_threshold {
                    b.open(s.cool_down);
                }
            }
            (State::HalfOpen, Outcome::Success) => {
                b.successes += 1;
                if b.successes >= s.success_threshold {
                    b.transition(State::Closed);
                }
            }
            (State::HalfOpen, Outcome::Failure) => {
                b.last_failure_at = Some(SystemTime::now());
                b.open(s.cool_down);
            }
        }
    }

    /// A probe ended without an outcome (dropped request): free its slot.
    fn release(&self, generation: u64) {
        let mut b = self.lock();
        if b.generation == generation && b.state == State::HalfOpen {
            b.probes = b.probes.saturating_sub(1);
        }
    }

    fn view(&self, service_id: Uuid) -> BreakerView {
        let b = self.lock();
        let now = Instant::now();
        let remaining = b
            .open_until
            .filter(|_| b.state == State::Open)
            .map(|u| u.saturating_duration_since(now));
        // An open breaker whose cool-down is over admits the next request as a probe: show it
        // as half-open already.
        let state = match (b.state, remaining) {
            (State::Open, Some(r)) if r.is_zero() => State::HalfOpen,
            (s, _) => s,
        };
        BreakerView {
            service_id,
            service_name: b.service_name.clone(),
            state,
            failures: b.failures,
            successes: if state == b.state { b.successes } else { 0 },
            probes_in_flight: if state == b.state { b.probes } else { 0 },
            opened_at: b.opened_at.map(unix_secs),
            cool_down_remaining: remaining
                .filter(|_| state == State::Open)
                .map(|r| (r.as_secs_f64() * 1000.0).round() / 1000.0),
            last_failure_at: b.last_failure_at.map(unix_secs),
            changed_at: unix_secs(b.changed_at),
            times_opened: b.times_opened,
        }
    }
}

impl Inner {
    fn transition(&mut self, to: State) {
        self.state = to;
        self.generation += 1;
        self.failures = 0;
        self.successes = 0;
        self.probes = 0;
        self.changed_at = SystemTime::now();
        if to != State::Open {
            self.open_until = None;
        }
        tracing::info!(service = ?self.service_name, state = ?to, "circuit breaker changed state");
    }

    fn open(&mut self, cool_down: Duration) {
        self.transition(State::Open);
        self.open_until = Some(Instant::now() + cool_down);
        self.opened_at = Some(SystemTime::now());
        self.times_opened += 1;
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One service's breaker, read-only (Admin API, metrics).
#[derive(Debug, Clone, Serialize)]
pub struct BreakerView {
    /// The service's id.
    pub service_id: Uuid,
    /// The service's name, if it has one.
    pub service_name: Option<String>,
    /// Current state (an open breaker past its cool-down shows as half-open).
    pub state: State,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// Successful probes while half-open.
    pub successes: u32,
    /// Probes in flight while half-open.
    pub probes_in_flight: u32,
    /// When the breaker last opened (Unix seconds).
    pub opened_at: Option<u64>,
    /// Seconds left of the cool-down while open.
    pub cool_down_remaining: Option<f64>,
    /// When the last failure was counted (Unix seconds).
    pub last_failure_at: Option<u64>,
    /// When the state last changed (Unix seconds; creation for a breaker that never changed).
    pub changed_at: u64,
    /// How many times the breaker opened.
    pub times_opened: u64,
}

/// The breakers of every service of a node.
#[derive(Default)]
pub struct BreakerStates {
    services: RwLock<HashMap<Uuid, Arc<Breaker>>>,
}

impl std::fmt::Debug for BreakerStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerStates")
            .field("services", &self.read().len())
            .finish()
    }
}

impl BreakerStates {
    /// No breakers yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Arc<Breaker>>> {
        self.services.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Arc<Breaker>>> {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn breaker(&self, id: Uuid, name: Option<&str>) -> Arc<Breaker> {
        if let Some(b) = self.read().get(&id) {
            return Arc::clone(b);
        }
        Arc::clone(
            self.write()
                .entry(id)
                .or_insert_with(|| Arc::new(Breaker::new(name.map(str::to_owned)))),
        )
    }

    /// Keep the breakers of services that still exist (`name_of` answers `Some(name)` for
    /// them) and refresh their names.
    fn sync_services(&self, name_of: impl Fn(Uuid) -> Option<Option<String>>) {
        self.write().retain(|id, b| match name_of(*id) {
            Some(name) => {
                b.lock().service_name = name;
                true
            }
            None => false,
        });
    }

    /// Every breaker, ordered by service id.
    pub fn list(&self) -> Vec<BreakerView> {
        let breakers: Vec<(Uuid, Arc<Breaker>)> = self
            .read()
            .iter()
            .map(|(id, b)| (*id, Arc::clone(b)))
            .collect();
        let mut views: Vec<BreakerView> = breakers.iter().map(|(id, b)| b.view(*id)).collect();
        views.sort_by_key(|v| v.service_id);
        views
    }

    /// The breaker of `service`, if it has seen a request.
    pub fn get(&self, service: Uuid) -> Option<BreakerView> {
        let b = self.read().get(&service).cloned();
        b.map(|b| b.view(service))
    }
}

struct CircuitBreaker {
    states: Arc<BreakerStates>,
    settings: Settings,
}

/// The admission of one request, kept until its outcome is recorded. Dropped without an
/// outcome (the request was cancelled), a probe frees its slot.
struct Ticket {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    settled: AtomicBool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe && !self.settled.load(Ordering::Acquire) {
            self.breaker.release(self.generation);
        }
    }
}

#[derive(Clone)]
struct Admitted(Arc<Ticket>);

impl CircuitBreaker {
    fn outcome(&self, info: &LogInfo) -> Outcome {
        if let Some(err) = &info.upstream_error {
            return match err.status.as_u16() {
                502..=504 => Outcome::Failure,
                _ => Outcome::None,
            };
        }
        if info.source != Source::Upstream {
            return Outcome::None;
        }
        if self.settings.failure_statuses.contains(&info.status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

#[async_trait]
impl Handler for CircuitBreaker {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let service = &ctx.service.service;
        let breaker = self.states.breaker(service.id, service.name.as_deref());
        let (generation, probe) = match breaker.admit(&self.settings, Instant::now()) {
            Admission::Pass(g) => (g, false),
            Admission::Probe(g) => (g, true),
            Admission::Reject(retry_after) => {
                let mut resp = respond::error_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    OPEN_MESSAGE,
                    &ctx.request_id,
                    ctx.headers.get(header::ACCEPT),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return Flow::Respond(resp);
            }
        };
        ctx.data.insert(Admitted(Arc::new(Ticket {
            breaker,
            generation,
            probe,
            settled: AtomicBool::new(false),
        })));
        Flow::Continue
    }

    fn wants_log(&self) -> bool {
        true
    }

    fn log(&self, ctx: &Ctx, info: &LogInfo) {
        let Some(Admitted(ticket)) = ctx.data.get::<Admitted>() else {
            return;
        };
        if ticket.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        ticket.breaker.record(
            &self.settings,
            ticket.generation,
            ticket.probe,
            self.outcome(info),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            failure_threshold: 3,
            success_threshold: 2,
            cool_down: Duration::from_millis(50),
            half_open_probes: 2,
            failure_statuses: vec![500],
        }
    }

    fn pass(a: Admission) -> u64 {
        match a {
            Admission::Pass(g) => g,
            _ => panic!("expected pass"),
        }
    }

    #[test]
    fn consecutive_failures_open_and_probes_close() {
        let s = settings();
        let b = Breaker::new(None);
        let now = Instant::now();
        let g = pass(b.admit(&s, now));
        b.record(&s, g, false, Outcome::Failure);
        b.record(&s, g, false, Outcome::Failure);
        b.record(&s, g, false, Outcome::Success);
        assert_eq!(b.lock().failures, 0, "a success resets the count");
        for _ in 0..3 {
            b.record(&s, g, false, Outcome::Failure);
        }
        assert_eq!(b.lock().state, State::Open);
        assert!(matches!(b.admit(&s, Instant::now()), Admission::Reject(1)));
        // A stale outcome of the closed generation changes nothing.
        b.record(&s, g, false, Outcome::Failure);
        assert_eq!(b.lock().times_opened, 1);

        let later = Instant::now() + Duration::from_millis(60);
        let Admission::Probe(p) = b.admit(&s, later) else {
            panic!("probe")
        };
        assert!(matches!(b.admit(&s, later), Admission::Probe(_)));
        assert!(
            matches!(b.admit(&s, later), Admission::Reject(1)),
            "two probes at most"
        );
        b.record(&s, p, true, Outcome::Success);
        assert!(
            matches!(b.admit(&s, later), Admission::Probe(_)),
            "slot freed"
        );
        b.release(p);
        b.record(&s, p, true, Outcome::Success);
        assert_eq!(b.lock().state, State::Closed);
    }

    #[test]
    fn what_counts_as_a_failure() {
        use crate::proxy::respond::GatewayError;
        let cb = CircuitBreaker {
            states: BreakerStates::new(),
            settings: settings(),
        };
        let info = |status: u16, source: Source, err: Option<GatewayError>| LogInfo {
            status,
            source,
            upstream_error: err,
            response_bytes: 0,
            completed: true,
            upstream_latency: None,
            proxy_latency: None,
            total_latency: Duration::ZERO,
        };
        let gw = Source::Gateway;
        let up = Source::Upstream;
        for e in [
            GatewayError::BAD_GATEWAY,
            GatewayError::TIMEOUT,
            GatewayError::UNAVAILABLE,
            GatewayError::NO_PEER,
            GatewayError::NAME_RESOLUTION,
        ] {
            let status = e.status.as_u16();
            assert_eq!(cb.outcome(&info(status, gw, Some(e))), Outcome::Failure);
        }
        // The client's bad body is nobody's upstream failure.
        let bad = Some(GatewayError::BAD_REQUEST);
        assert_eq!(cb.outcome(&info(400, gw, bad)), Outcome::None);
        // Other plugins' answers (401, 429, a 503 of their own) never reached the upstream.
        for status in [401, 429, 503] {
            assert_eq!(cb.outcome(&info(status, gw, None)), Outcome::None);
        }
        // Upstream answers: failure_statuses (here [500]) fail, everything else succeeds.
        assert_eq!(cb.outcome(&info(500, up, None)), Outcome::Failure);
        for status in [200, 404, 502, 503] {
            assert_eq!(cb.outcome(&info(status, up, None)), Outcome::Success);
        }
    }

    #[test]
    fn a_failed_probe_reopens() {
        let s = settings();
        let b = Breaker::new(None);
        let g = pass(b.admit(&s, Instant::now()));
        for _ in 0..3 {
            b.record(&s, g, false, Outcome::Failure);
        }
        let later = Instant::now() + Duration::from_millis(60);
        let Admission::Probe(p) = b.admit(&s, later) else {
            panic!("probe")
        };
        b.record(&s, p, true, Outcome::Failure);
        let inner = b.lock();
        assert_eq!(inner.state, State::Open);
        assert_eq!(inner.times_opened, 2);
    }

    #[test]
    fn a_dropped_probe_frees_its_slot() {
        let mut s = settings();
        s.half_open_probes = 1;
        let b = Arc::new(Breaker::new(None));
        let g = pass(b.admit(&s, Instant::now()));
        for _ in 0..3 {
            b.record(&s, g, false, Outcome::Failure);
        }
        let later = Instant::now() + Duration::from_millis(60);
        let Admission::Probe(p) = b.admit(&s, later) else {
            panic!("probe")
        };
        let ticket = Ticket {
            breaker: Arc::clone(&b),
            generation: p,
            probe: true,
            settled: AtomicBool::new(false),
        };
        assert!(matches!(b.admit(&s, later), Admission::Reject(_)));
        drop(ticket);
        assert!(matches!(b.admit(&s, later), Admission::Probe(_)));
    }
}
