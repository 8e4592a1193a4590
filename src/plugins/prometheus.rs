//! `prometheus` (kong-compat §4.10, priority 13): per service/route request counts, latency
//! histograms and bandwidth in Kong's metric families, exported together with the node metrics
//! on `GET /metrics` of the status and admin listeners ([`crate::telemetry::metrics`]).
//!
//! What a request adds, in its log phase, on the route's series (labels `service` = service
//! name, else its host; `route` = route name, else its id; `workspace` = `default`; never a raw
//! path, so the label values are bounded by the configuration):
//!
//! - `status_code_metrics`: `kong_http_requests_total{service,route,code,source,workspace,
//!   consumer}` +1, `source` = `service` when the upstream answered, `kong` when the gateway did
//!   (a plugin's short-circuit, or 502/503/504 for an upstream failure).
//! - `latency_metrics`: `kong_request_latency_ms` observes the total time (request received to
//!   response body done), `kong_upstream_latency_ms` the wait for the upstream (connect to
//!   response head; only when the upstream was reached) and `kong_kong_latency_ms` the rest, the
//!   time spent in the gateway (total minus upstream; the total for gateway-made responses), so
//!   for proxied requests kong + upstream = request. Kong's buckets (ms); sums have microsecond
//!   precision.
//! - `bandwidth_metrics`: `kong_bandwidth_bytes{...,direction,...}`: `egress` = response body
//!   bytes sent to the client (after body filters; headers are not counted), `ingress` = the
//!   request body size its `Content-Length` declares, as the plugins left it (a chunked body
//!   without one counts 0; the request line and headers are not counted; Kong counts both
//!   directions with headers, which the gateway does not see as bytes on the wire).
//! - `per_consumer`: `consumer` = the authenticated consumer's username on the status and
//!   bandwidth families (else empty).
//! - `upstream_health_metrics`: read at scrape time, see [`upstream_health_enabled`].
//! - `ai_metrics`, `wasm_metrics`: accepted; gwctl has no AI or Wasm filters, so they add
//!   nothing.
//!
//! Requests count only where an instance of the plugin applies (global or scoped; the chain
//! decides). Requests without a matched route are never counted. A family with nothing recorded
//! is absent from the output, as in Kong.
//!
//! The counters live in the [`Exporter`] the plugin kind owns: they survive configuration
//! reloads (a series is keyed by its label values) and are shared by every proxy worker. The
//! request path is allocation-free and lock-free: each instance resolves, when it is built, the
//! label set of every route it can apply to; a series is a handful of relaxed atomic counters,
//! sharded per thread (cache-line aligned) so proxy workers never write the same line; the
//! series of a route is created on its first request and found again after a reload; consumer
//! series hang off their route's series in a copy-on-write map read without locking.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{BuildCtx, Ctx, Handler, LogInfo, PluginKind, Source, typed_config};
use crate::model::Plugin;
use crate::model::schema::{EntityKind, Field, Schema};
use crate::store::{Entity, Tables};
use crate::telemetry::metrics::{Exposition, MetricType};

/// Buckets (ms) of `kong_kong_latency_ms`.
pub const KONG_LATENCY_BUCKETS: [u64; 17] = [
    1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000,
];
/// Buckets (ms) of `kong_upstream_latency_ms` and `kong_request_latency_ms`.
pub const UPSTREAM_LATENCY_BUCKETS: [u64; 13] = [
    25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000,
];
/// The `workspace` label (gwctl has one workspace, Kong's `default`).
pub const WORKSPACE: &str = "default";

const KONG_BOUNDS_US: [u64; 17] = micros(KONG_LATENCY_BUCKETS);
const UPSTREAM_BOUNDS_US: [u64; 13] = micros(UPSTREAM_LATENCY_BUCKETS);

const fn micros<const N: usize>(ms: [u64; N]) -> [u64; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = ms[i] * 1000;
        i += 1;
    }
    out
}

const HELP_REQUESTS: &str = "HTTP status codes per consumer/service/route in Kong";
const HELP_KONG_LATENCY: &str =
    "Latency added by Kong and enabled plugins for each service/route in Kong";
const HELP_UPSTREAM_LATENCY: &str =
    "Latency added by upstream response for each service/route in Kong";
const HELP_REQUEST_LATENCY: &str =
    "Total latency incurred during requests for each service/route in Kong";
const HELP_BANDWIDTH: &str = "Total bandwidth (ingress/egress) throughput in bytes";

/// The plugin kind; owns the counters of every instance.
#[derive(Default)]
pub struct Kind {
    exporter: Arc<Exporter>,
}

impl Kind {
    /// A kind recording into `exporter` (shared with the `/metrics` endpoints).
    pub fn new(exporter: Arc<Exporter>) -> Self {
        Self { exporter }
    }

    /// The counters this kind records into.
    pub fn exporter(&self) -> &Arc<Exporter> {
        &self.exporter
    }
}

/// `config` of prometheus (every flag defaults to false, as in Kong 3.x).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusConfig {
    /// Fill the `consumer` label with the consumer's username.
    #[serde(default)]
    pub per_consumer: Option<bool>,
    /// Record `kong_http_requests_total`.
    #[serde(default)]
    pub status_code_metrics: Option<bool>,
    /// Accepted; no AI metrics exist in gwctl.
    #[serde(default)]
    pub ai_metrics: Option<bool>,
    /// Record the three latency histograms.
    #[serde(default)]
    pub latency_metrics: Option<bool>,
    /// Record `kong_bandwidth_bytes`.
    #[serde(default)]
    pub bandwidth_metrics: Option<bool>,
    /// Export `kong_upstream_target_health` (read at scrape time).
    #[serde(default)]
    pub upstream_health_metrics: Option<bool>,
    /// Accepted; no Wasm filters exist in gwctl.
    #[serde(default)]
    pub wasm_metrics: Option<bool>,
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "prometheus"
    }
    fn priority(&self) -> i64 {
        13
    }
    fn config_schema(&self) -> Field {
        let flag = || Field::boolean().default(json!(false));
        Field::record(Schema::new(
            "config",
            vec![
                ("per_consumer", flag()),
                ("status_code_metrics", flag()),
                ("ai_metrics", flag()),
                ("latency_metrics", flag()),
                ("bandwidth_metrics", flag()),
                ("upstream_health_metrics", flag()),
                ("wasm_metrics", flag()),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: PrometheusConfig = typed_config(plugin)?;
        let flags = Flags {
            per_consumer: conf.per_consumer.unwrap_or(false),
            status: conf.status_code_metrics.unwrap_or(false),
            latency: conf.latency_metrics.unwrap_or(false),
            bandwidth: conf.bandwidth_metrics.unwrap_or(false),
        };
        let mut routes = HashMap::new();
        if flags.records() {
            for route in applicable_routes(plugin, ctx.tables) {
                let Some(labels) = route_labels(ctx.tables, route) else {
                    continue;
                };
                let series = match self.exporter.find(&labels) {
                    Some(s) => OnceLock::from(s),
                    None => OnceLock::new(),
                };
                routes.insert(route, Slot { labels, series });
            }
        }
        Ok(Arc::new(Prometheus {
            exporter: Arc::clone(&self.exporter),
            flags,
            routes,
        }))
    }
}

/// Whether some enabled prometheus instance of `plugins` has `upstream_health_metrics` on
/// (Kong exports `kong_upstream_target_health` when any instance asks for it).
pub fn upstream_health_enabled(plugins: &[Plugin]) -> bool {
    plugins.iter().any(|p| {
        p.enabled
            && p.name == "prometheus"
            && p.config.get("upstream_health_metrics") == Some(&serde_json::Value::Bool(true))
    })
}

/// The routes an instance can apply to: its route, its service's routes, or every route.
fn applicable_routes(plugin: &Plugin, tables: &Tables) -> Vec<Uuid> {
    if let Some(r) = plugin.route {
        return vec![r.id];
    }
    if let Some(s) = plugin.service {
        return tables
            .children(EntityKind::Routes, "service", s.id)
            .map(|c| c.iter_after(None).collect())
            .unwrap_or_default();
    }
    tables
        .table(EntityKind::Routes)
        .rows()
        .keys()
        .copied()
        .collect()
}

/// The label values of `route` (none for a route without a service: Kong records nothing).
fn route_labels(tables: &Tables, route: Uuid) -> Option<RouteLabels> {
    let Entity::Route(r) = &**tables.get(EntityKind::Routes, route)? else {
        return None;
    };
    let Entity::Service(s) = &**tables.get(EntityKind::Services, r.service?.id)? else {
        return None;
    };
    Some(RouteLabels::new(s.name.as_deref().unwrap_or(&s.host), r))
}

/// The `service` and `route` label values of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteLabels {
    service: Arc<str>,
    route: Arc<str>,
}

impl RouteLabels {
    fn new(service: &str, route: &crate::model::Route) -> Self {
        let route: Arc<str> = match &route.name {
            Some(n) => Arc::from(n.as_str()),
            None => Arc::from(route.id.to_string()),
        };
        Self {
            service: Arc::from(service),
            route,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Flags {
    per_consumer: bool,
    status: bool,
    latency: bool,
    bandwidth: bool,
}

impl Flags {
    fn records(self) -> bool {
        self.status || self.latency || self.bandwidth
    }
}

/// One route's place in an instance: its labels and, once resolved, its series.
struct Slot {
    labels: RouteLabels,
    series: OnceLock<Arc<RouteSeries>>,
}

struct Prometheus {
    exporter: Arc<Exporter>,
    flags: Flags,
    routes: HashMap<Uuid, Slot>,
}

impl Handler for Prometheus {
    fn wants_log(&self) -> bool {
        self.flags.records()
    }

    fn log(&self, ctx: &Ctx, info: &LogInfo) {
        if !self.flags.records() {
            return;
        }
        match self.routes.get(&ctx.route.id) {
            Some(slot) => {
                let series = slot
                    .series
                    .get_or_init(|| self.exporter.series(&slot.labels));
                self.record(series, ctx, info);
            }
            None => {
                // Not seen when the instance was built (cannot happen with one snapshot; kept
                // correct anyway, on the slow path).
                let svc = &ctx.service.service;
                let labels = RouteLabels::new(svc.name.as_deref().unwrap_or(&svc.host), &ctx.route);
                let series = self.exporter.series(&labels);
                self.record(&series, ctx, info);
            }
        }
    }
}

impl Prometheus {
    fn record(&self, series: &RouteSeries, ctx: &Ctx, info: &LogInfo) {
        let shard = shard_index();
        let f = self.flags;
        if f.latency {
            let s = &series.shards[shard % series.shards.len()];
            let total = micros_of(info.total_latency);
            s.request.observe(&UPSTREAM_BOUNDS_US, total);
            match info.upstream_latency {
                Some(up) => {
                    let up = micros_of(up);
                    s.upstream.observe(&UPSTREAM_BOUNDS_US, up);
                    s.kong.observe(&KONG_BOUNDS_US, total.saturating_sub(up));
                }
                None => s.kong.observe(&KONG_BOUNDS_US, total),
            }
        }
        if !(f.status || f.bandwidth) {
            return;
        }
        let counts = |c: &Counts| {
            if f.status {
                c.codes.add(code_key(info.status, info.source));
            }
            if f.bandwidth {
                let ingress = request_body_len(ctx);
                if ingress > 0 {
                    c.ingress.fetch_add(ingress, Ordering::Relaxed);
                }
                if info.response_bytes > 0 {
                    c.egress.fetch_add(info.response_bytes, Ordering::Relaxed);
                }
            }
        };
        let username = if f.per_consumer {
            ctx.consumer()
                .and_then(|c| c.username.as_deref())
                .filter(|u| !u.is_empty())
        } else {
            None
        };
        match username {
            Some(u) => series.with_consumer(u, |c| counts(&c.shards[shard % c.shards.len()])),
            None => counts(&series.shards[shard % series.shards.len()].counts),
        }
    }
}

/// The request body size its `Content-Length` declares (as the plugins left it).
fn request_body_len(ctx: &Ctx) -> u64 {
    ctx.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn micros_of(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `code * 2 + source`: never 0 (codes are at least 100).
fn code_key(status: u16, source: Source) -> u32 {
    let kong = u32::from(!matches!(source, Source::Upstream));
    u32::from(status) * 2 + kong
}

/// This thread's shard number (threads are numbered on first use).
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every series the plugin recorded on this node, by label values.
pub struct Exporter {
    shards: usize,
    series: Mutex<HashMap<RouteLabels, Arc<RouteSeries>>>,
}

impl Default for Exporter {
    fn default() -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16);
        Self {
            shards,
            series: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("series", &lock(&self.series).len())
            .finish()
    }
}

impl Exporter {
    /// No series yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn find(&self, labels: &RouteLabels) -> Option<Arc<RouteSeries>> {
        lock(&self.series).get(labels).cloned()
    }

    fn series(&self, labels: &RouteLabels) -> Arc<RouteSeries> {
        let mut all = lock(&self.series);
        Arc::clone(
            all.entry(labels.clone())
                .or_insert_with(|| Arc::new(RouteSeries::new(labels.clone(), self.shards))),
        )
    }

    /// Add the plugin's families (those with something recorded) to `out`.
    pub fn render(&self, out: &mut Exposition) {
        let all: Vec<Arc<RouteSeries>> = lock(&self.series).values().cloned().collect();
        for s in all {
            s.render(out);
        }
    }
}

/// A latency histogram: one counter per bucket (not cumulative) plus `+Inf`, and the sum.
struct Hist<const N: usize> {
    buckets: [AtomicU64; N],
    inf: AtomicU64,
    sum_us: AtomicU64,
}

impl<const N: usize> Hist<N> {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            inf: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds_us: &[u64; N], us: u64) {
        match bounds_us.iter().position(|&b| us <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.inf.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Add this shard's counts to `acc` (`N + 1` slots, the last one `+Inf`).
    fn add_into(&self, acc: &mut HistData) {
        for (a, b) in acc.counts.iter_mut().zip(&self.buckets) {
            *a += b.load(Ordering::Relaxed);
        }
        if let Some(last) = acc.counts.last_mut() {
            *last += self.inf.load(Ordering::Relaxed);
        }
        acc.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// A histogram's counts merged over the shards.
struct HistData {
    counts: Vec<u64>,
    sum_us: u64,
}

impl HistData {
    fn new(buckets: usize) -> Self {
        Self {
            counts: vec![0; buckets + 1],
            sum_us: 0,
        }
    }
}

const CODE_SLOTS: usize = 16;

/// Counts by status code and source: a small lock-free open-addressing table (a route sees few
/// distinct codes), with a locked overflow map so no count is ever lost.
struct CodeTable {
    keys: [AtomicU32; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    overflow: Mutex<BTreeMap<u32, u64>>,
}

impl CodeTable {
    fn new() -> Self {
        Self {
            keys: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, key: u32) {
        let start = (key as usize).wrapping_mul(7) % CODE_SLOTS;
        for i in 0..CODE_SLOTS {
            let slot = (start + i) % CODE_SLOTS;
            let mut k = self.keys[slot].load(Ordering::Acquire);
            if k == 0 {
                k = match self.keys[slot].compare_exchange(
                    0,
                    key,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => key,
                    Err(actual) => actual,
                };
            }
            if k == key {
                self.counts[slot].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        *lock(&self.overflow).entry(key).or_insert(0) += 1;
    }

    fn add_into(&self, acc: &mut BTreeMap<u32, u64>) {
        for (k, c) in self.keys.iter().zip(&self.counts) {
            let k = k.load(Ordering::Acquire);
            if k != 0 {
                *acc.entry(k).or_insert(0) += c.load(Ordering::Relaxed);
            }
        }
        for (k, c) in lock(&self.overflow).iter() {
            *acc.entry(*k).or_insert(0) += c;
        }
    }
}

/// Status and bandwidth counters of one series (one shard of it).
#[repr(align(128))]
struct Counts {
    codes: CodeTable,
    ingress: AtomicU64,
    egress: AtomicU64,
}

impl Counts {
    fn new() -> Self {
        Self {
            codes: CodeTable::new(),
            ingress: AtomicU64::new(0),
            egress: AtomicU64::new(0),
        }
    }
}

/// What one thread records for a route (cache-line aligned: no false sharing between threads).
#[repr(align(128))]
struct RouteShard {
    kong: Hist<17>,
    upstream: Hist<13>,
    request: Hist<13>,
    /// The counts with an empty `consumer` label.
    counts: Counts,
}

/// The counts of one consumer on one route.
struct ConsumerSeries {
    username: Arc<str>,
    shards: Box<[Counts]>,
}

/// Everything recorded for one (service, route) label pair.
struct RouteSeries {
    labels: RouteLabels,
    shards: Box<[RouteShard]>,
    consumers: ArcSwap<imbl::HashMap<Arc<str>, Arc<ConsumerSeries>>>,
    add_consumer: Mutex<()>,
}

impl RouteSeries {
    fn new(labels: RouteLabels, shards: usize) -> Self {
        Self {
            labels,
            shards: (0..shards.max(1))
                .map(|_| RouteShard {
                    kong: Hist::new(),
                    upstream: Hist::new(),
                    request: Hist::new(),
                    counts: Counts::new(),
                })
                .collect(),
            consumers: ArcSwap::from_pointee(imbl::HashMap::new()),
            add_consumer: Mutex::new(()),
        }
    }

    /// Run `f` on the series of consumer `username`, created on first use.
    fn with_consumer(&self, username: &str, f: impl FnOnce(&ConsumerSeries)) {
        {
            let map = self.consumers.load();
            if let Some(c) = map.get(username) {
                f(c);
                return;
            }
        }
        let created = {
            let _guard = lock(&self.add_consumer);
            let current = self.consumers.load_full();
            match current.get(username) {
                Some(c) => Arc::clone(c),
                None => {
                    let c = Arc::new(ConsumerSeries {
                        username: Arc::from(username),
                        shards: (0..self.shards.len()).map(|_| Counts::new()).collect(),
                    });
                    let mut next = (*current).clone();
                    next.insert(Arc::clone(&c.username), Arc::clone(&c));
                    self.consumers.store(Arc::new(next));
                    c
                }
            }
        };
        f(&created);
    }

    fn render(&self, out: &mut Exposition) {
        let (service, route) = (&*self.labels.service, &*self.labels.route);
        let mut kong = HistData::new(KONG_LATENCY_BUCKETS.len());
        let mut upstream = HistData::new(UPSTREAM_LATENCY_BUCKETS.len());
        let mut request = HistData::new(UPSTREAM_LATENCY_BUCKETS.len());
        for s in &self.shards {
            s.kong.add_into(&mut kong);
            s.upstream.add_into(&mut upstream);
            s.request.add_into(&mut request);
        }
        let labels = [
            ("service", service),
            ("route", route),
            ("workspace", WORKSPACE),
        ];
        for (name, help, bounds, data) in [
            (
                "kong_kong_latency_ms",
                HELP_KONG_LATENCY,
                &KONG_LATENCY_BUCKETS[..],
                &kong,
            ),
            (
                "kong_upstream_latency_ms",
                HELP_UPSTREAM_LATENCY,
                &UPSTREAM_LATENCY_BUCKETS[..],
                &upstream,
            ),
            (
                "kong_request_latency_ms",
                HELP_REQUEST_LATENCY,
                &UPSTREAM_LATENCY_BUCKETS[..],
                &request,
            ),
        ] {
            if data.counts.iter().any(|&c| c > 0) {
                out.histogram(name, help, &labels, bounds, &data.counts, data.sum_us);
            }
        }
        render_counts(
            out,
            service,
            route,
            "",
            self.shards.iter().map(|s| &s.counts),
        );
        let consumers = self.consumers.load_full();
        for c in consumers.values() {
            render_counts(out, service, route, &c.username, c.shards.iter());
        }
    }
}

/// The status and bandwidth samples of one (service, route, consumer).
fn render_counts<'a>(
    out: &mut Exposition,
    service: &str,
    route: &str,
    consumer: &str,
    shards: impl Iterator<Item = &'a Counts>,
) {
    let mut codes = BTreeMap::new();
    let (mut ingress, mut egress) = (0u64, 0u64);
    for s in shards {
        s.codes.add_into(&mut codes);
        ingress += s.ingress.load(Ordering::Relaxed);
        egress += s.egress.load(Ordering::Relaxed);
    }
    for (key, count) in codes {
        if count == 0 {
            continue;
        }
        let code = (key / 2).to_string();
        let source = if key % 2 == 0 { "service" } else { "kong" };
        out.sample(
            "kong_http_requests_total",
            HELP_REQUESTS,
            MetricType::Counter,
            &[
                ("service", service),
                ("route", route),
                ("code", &code),
                ("source", source),
                ("workspace", WORKSPACE),
                ("consumer", consumer),
            ],
            count,
        );
    }
    for (direction, bytes) in [("ingress", ingress), ("egress", egress)] {
        if bytes > 0 {
            out.sample(
                "kong_bandwidth_bytes",
                HELP_BANDWIDTH,
                MetricType::Counter,
                &[
                    ("service", service),
                    ("route", route),
                    ("direction", direction),
                    ("workspace", WORKSPACE),
                    ("consumer", consumer),
                ],
                bytes,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let h: Hist<17> = Hist::new();
        h.observe(&KONG_BOUNDS_US, 0);
        h.observe(&KONG_BOUNDS_US, 1000); // 1 ms: le=1
        h.observe(&KONG_BOUNDS_US, 1001); // just above: le=2
        h.observe(&KONG_BOUNDS_US, 6_000_000); // le=6000
        h.observe(&KONG_BOUNDS_US, 6_000_001); // +Inf
        let mut d = HistData::new(17);
        h.add_into(&mut d);
        assert_eq!(d.counts[0], 2);
        assert_eq!(d.counts[1], 1);
        assert_eq!(d.counts[16], 1);
        assert_eq!(d.counts[17], 1);
        assert_eq!(d.counts.iter().sum::<u64>(), 5);
        assert_eq!(d.sum_us, 1000 + 1001 + 6_000_000 + 6_000_001);
    }

    #[test]
    fn code_table_counts_every_code_even_past_its_slots() {
        let t = CodeTable::new();
        let mut want = BTreeMap::new();
        // More distinct keys than slots, each a different number of times.
        for code in 100u16..140 {
            for source in [Source::Upstream, Source::Gateway] {
                let n = u64::from(code % 5) + 1;
                for _ in 0..n {
                    t.add(code_key(code, source));
                }
                want.insert(code_key(code, source), n);
            }
        }
        let mut got = BTreeMap::new();
        t.add_into(&mut got);
        assert_eq!(got, want);
    }

    #[test]
    fn code_keys_encode_status_and_source() {
        assert_eq!(code_key(200, Source::Upstream), 400);
        assert_eq!(code_key(401, Source::Gateway), 803);
        assert_eq!(code_key(502, Source::Pending), 1005);
    }

    #[test]
    fn consumer_series_are_created_once_and_kept() {
        let s = RouteSeries::new(
            RouteLabels {
                service: Arc::from("s"),
                route: Arc::from("r"),
            },
            2,
        );
        for _ in 0..3 {
            s.with_consumer("alice", |c| {
                c.shards[0].ingress.fetch_add(1, Ordering::Relaxed);
            });
        }
        s.with_consumer("bob", |c| {
            c.shards[1].egress.fetch_add(5, Ordering::Relaxed);
        });
        let map = s.consumers.load();
        assert_eq!(map.len(), 2);
        let alice = map.get("alice").unwrap();
        assert_eq!(alice.shards[0].ingress.load(Ordering::Relaxed), 3);
        assert_eq!(
            map.get("bob").unwrap().shards[1]
                .egress
                .load(Ordering::Relaxed),
            5
        );
    }
}
