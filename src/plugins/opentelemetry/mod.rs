//! `opentelemetry` (kong-compat §4.11, priority 14): W3C / B3 / Jaeger / OT / Datadog / AWS /
//! GCP / Instana context propagation, Kong's request spans exported as OTLP/HTTP protobuf to
//! `traces_endpoint`, and the request's log events to `logs_endpoint`.
//!
//! Per request:
//! - **access**: extract the incoming context with the `propagation.extract` formats (the
//!   first that finds one wins), decide sampling, clear `propagation.clear`, and inject the
//!   context upstream in the `propagation.inject` formats (`preserve`: the format that came in,
//!   else `default_format`). The upstream's parent is the `kong.balancer` span of the attempt
//!   that reaches it: its id is generated here, as Kong pre-creates its balancer span. The
//!   request's logging scope gets the trace ids (log lines carry them) and, with a
//!   `logs_endpoint`, starts capturing the request's log events.
//! - **header_filter**: `http_response_header_for_traceid`; the timeline is taken for export.
//! - **log**: the spans (as one compact record) and the captured events are queued for the
//!   background exporter (see [`export`]); the request never waits for the collector.
//!
//! Spans (Kong 3.3+ names, see [`spans`]): `kong` (SERVER, the root, a child of the incoming
//! span), `kong.router`, `kong.access.plugin.<name>` for each plugin's access phase and
//! `kong.balancer` (CLIENT) for each upstream attempt.
//!
//! Sampling: a caller's "not sampled" is followed; otherwise `sampling_rate` applies (Kong's
//! trace-id-based probability sampler, so every node decides the same for one trace). A null
//! `sampling_rate` means 1.0 here: Kong falls back to kong.conf's `tracing_sampling_rate`
//! (default 0.01), which gwctl does not have. Unsampled requests export no spans but still
//! propagate their context upstream, with the sampled flag off.
//!
//! Legacy settings: `endpoint` is `traces_endpoint`; `batch_span_count` and `batch_flush_delay`
//! replace `queue.max_batch_size` and `queue.max_coalescing_delay` when set to other than their
//! old defaults (200, 3), as Kong's queue does; `header_type` is turned into a propagation
//! configuration when `propagation` sets none of `extract`, `inject`, `clear` (Kong's
//! `get_plugin_params`: `preserve`, the default, extracts b3, w3c, jaeger, ot, datadog, aws,
//! gcp and injects the format found; `ignore` extracts nothing and injects `default_format`).

pub mod export;
pub mod propagation;
pub mod spans;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use self::export::{BodyFn, Queue, QueueParams, Signal, SinkConfig};
use self::propagation::{Extracted, Format, Outgoing};
use self::spans::{Ids, LogBatch, TraceRecord};
use super::{BuildCtx, Ctx, Flow, Handler, LogInfo, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{EntityCheck, Field, Schema, validators};
use crate::telemetry::scope::{self, CaptureBuf, TraceIds};
use crate::telemetry::timeline::Timeline;

/// The plugin kind: owns the exporters, which outlive configuration reloads (an instance whose
/// config did not change keeps its exporter and whatever is queued in it).
pub struct Kind {
    node_id: String,
    exporters: export::Registry<Exporter>,
}

impl Default for Kind {
    fn default() -> Self {
        Self::new(Uuid::new_v4())
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Kind {
    /// A kind reporting `node_id` as `service.instance.id`.
    pub fn new(node_id: Uuid) -> Self {
        Self {
            node_id: node_id.to_string(),
            exporters: export::Registry::default(),
        }
    }

    /// Send everything queued in every exporter now (shutdown), waiting until `deadline` at
    /// most. `true` when every exporter finished in time.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        let mut waits = Vec::new();
        for e in self.exporters.live() {
            if let Some(q) = &e.traces {
                waits.push(q.flush());
            }
            if let Some(q) = &e.logs {
                waits.push(q.flush());
            }
        }
        export::flush_all(waits, deadline).await
    }
}

/// `config.queue`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    /// Entries per batch.
    pub max_batch_size: u64,
    /// Seconds a batch waits for more entries.
    pub max_coalescing_delay: f64,
    /// Entries that may wait.
    pub max_entries: u64,
    /// Accepted, not enforced (see [`export`]).
    pub max_bytes: Option<u64>,
    /// Seconds a failing batch is retried.
    pub max_retry_time: f64,
    /// First retry delay, seconds.
    pub initial_retry_delay: f64,
    /// Retry delay cap, seconds.
    pub max_retry_delay: f64,
    /// 1: one batch at a time; -1: no limit.
    pub concurrency_limit: i64,
}

/// `config.propagation`.
#[derive(Debug, Clone, Deserialize)]
pub struct PropagationConfig {
    /// Formats to extract, in order.
    pub extract: Option<Vec<String>>,
    /// Headers to remove after extraction.
    pub clear: Option<Vec<String>>,
    /// Formats to inject (`preserve`: the incoming one).
    pub inject: Option<Vec<String>>,
    /// `preserve`'s format when nothing was extracted.
    pub default_format: String,
}

/// `config` of opentelemetry.
#[derive(Debug, Clone, Deserialize)]
pub struct OtelConfig {
    /// OTLP/HTTP traces endpoint.
    pub traces_endpoint: Option<String>,
    /// OTLP/HTTP logs endpoint.
    pub logs_endpoint: Option<String>,
    /// Headers sent with every export.
    pub headers: Option<BTreeMap<String, String>>,
    /// Resource attributes (override the defaults).
    pub resource_attributes: Option<BTreeMap<String, String>>,
    /// Batching.
    pub queue: QueueConfig,
    /// Legacy `queue.max_batch_size`.
    pub batch_span_count: Option<i64>,
    /// Legacy `queue.max_coalescing_delay`.
    pub batch_flush_delay: Option<i64>,
    /// Connect timeout, ms.
    pub connect_timeout: u64,
    /// Send timeout, ms.
    pub send_timeout: u64,
    /// Read timeout, ms.
    pub read_timeout: u64,
    /// Response header carrying the trace id.
    pub http_response_header_for_traceid: Option<String>,
    /// Legacy propagation setting.
    pub header_type: Option<String>,
    /// 0..1; null: 1.0.
    pub sampling_rate: Option<f64>,
    /// Propagation.
    pub propagation: PropagationConfig,
}

const EXTRACTORS: [&str; 8] = [
    "w3c", "b3", "jaeger", "ot", "datadog", "aws", "gcp", "instana",
];
const HEADER_TYPES: [&str; 11] = [
    "preserve",
    "ignore",
    "b3",
    "b3-single",
    "w3c",
    "jaeger",
    "ot",
    "aws",
    "gcp",
    "datadog",
    "instana",
];

/// Kong's `typedefs.url`: a URL with a scheme and a host.
fn url(v: &Value) -> Result<(), String> {
    let Some(s) = v.as_str() else { return Ok(()) };
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("missing scheme in url".into());
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("missing scheme in url".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("missing host in url".into());
    }
    Ok(())
}

fn retry_delay(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(f) if (0.001..=1_000_000.0).contains(&f) => Ok(()),
        Some(_) => Err("value should be between 0.001 and 1000000".into()),
        None => Ok(()),
    }
}

/// Kong's `resource_attributes` check: values are non-empty strings.
fn attribute_values(v: &Value) -> Result<(), String> {
    match v.as_object() {
        Some(m) if m.values().any(|v| v.as_str() == Some("")) => {
            Err("required field missing".into())
        }
        _ => Ok(()),
    }
}

fn timeout(default: i64) -> Field {
    Field::integer()
        .default(json!(default))
        .between(0, 2_147_483_646)
}

fn queue_schema() -> Schema {
    Schema::new(
        "queue",
        vec![
            (
                "max_batch_size",
                Field::integer().default(json!(200)).between(1, 1_000_000),
            ),
            (
                "max_coalescing_delay",
                Field::number().default(json!(1)).between(0, 3600),
            ),
            (
                "max_entries",
                Field::integer().default(json!(10000)).between(1, 1_000_000),
            ),
            ("max_bytes", Field::integer()),
            ("max_retry_time", Field::number().default(json!(60))),
            (
                "initial_retry_delay",
                Field::number().default(json!(0.01)).validator(retry_delay),
            ),
            (
                "max_retry_delay",
                Field::number().default(json!(60)).validator(retry_delay),
            ),
            (
                "concurrency_limit",
                Field::integer()
                    .default(json!(1))
                    .one_of(vec![json!(-1), json!(1)]),
            ),
        ],
    )
}

fn propagation_schema() -> Schema {
    let mut injectors: Vec<&str> = vec!["preserve"];
    injectors.extend(propagation::FORMATS);
    Schema::new(
        "propagation",
        vec![
            (
                "extract",
                Field::array(Field::string().one_of_str(&EXTRACTORS)),
            ),
            (
                "clear",
                Field::array(Field::string().validator(validators::header_name)),
            ),
            (
                "inject",
                Field::array(Field::string().one_of_str(&injectors)),
            ),
            (
                "default_format",
                Field::string()
                    .required()
                    .default(json!("w3c"))
                    .one_of_str(&propagation::FORMATS),
            ),
        ],
    )
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "opentelemetry"
    }
    fn priority(&self) -> i64 {
        14
    }
    fn config_schema(&self) -> Field {
        let schema = Schema::new(
            "config",
            vec![
                ("traces_endpoint", Field::string().validator(url)),
                ("logs_endpoint", Field::string().validator(url)),
                (
                    "headers",
                    Field::map(
                        Field::string().validator(validators::header_name),
                        Field::string(),
                    ),
                ),
                (
                    "resource_attributes",
                    Field::map(Field::string(), Field::string()).validator(attribute_values),
                ),
                ("queue", Field::record(queue_schema()).required()),
                ("batch_span_count", Field::integer()),
                ("batch_flush_delay", Field::integer()),
                ("connect_timeout", timeout(1000)),
                ("send_timeout", timeout(5000)),
                ("read_timeout", timeout(5000)),
                ("http_response_header_for_traceid", Field::string()),
                (
                    "header_type",
                    Field::string()
                        .default(json!("preserve"))
                        .one_of_str(&HEADER_TYPES),
                ),
                ("sampling_rate", Field::number().between(0, 1)),
                (
                    "propagation",
                    Field::record(propagation_schema()).required(),
                ),
                // Kong < 3.8's name of traces_endpoint.
                ("endpoint", Field::string().validator(url)),
            ],
        )
        .shorthand("endpoint", &["traces_endpoint"])
        .check(EntityCheck::AtLeastOneOf(vec![
            "traces_endpoint",
            "logs_endpoint",
        ]));
        Field::record(schema).required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: OtelConfig = typed_config(plugin)?;
        let settings = Settings::from_config(&conf)?;
        let key = plugin.config.to_string();
        let exporter = self
            .exporters
            .get_or_try_insert(&key, || Exporter::start(&conf, &self.node_id))?;
        Ok(Arc::new(Otel { exporter, settings }))
    }
}

/// The two queues of one configuration.
pub struct Exporter {
    traces: Option<Queue<Box<TraceRecord>>>,
    logs: Option<Queue<LogBatch>>,
}

fn secs(f: f64) -> Duration {
    Duration::try_from_secs_f64(f.max(0.0)).unwrap_or(Duration::MAX)
}

/// The queue settings of `conf`, with Kong's legacy names applied: they win when set to other
/// than their old defaults (`batch_span_count` 200, `batch_flush_delay` 3).
fn queue_params(conf: &OtelConfig) -> QueueParams {
    let q = &conf.queue;
    let mut params = QueueParams {
        max_batch_size: usize::try_from(q.max_batch_size).unwrap_or(usize::MAX),
        max_coalescing_delay: secs(q.max_coalescing_delay),
        max_entries: usize::try_from(q.max_entries).unwrap_or(usize::MAX),
        max_retry_time: secs(q.max_retry_time),
        initial_retry_delay: secs(q.initial_retry_delay),
        max_retry_delay: secs(q.max_retry_delay),
        concurrent: q.concurrency_limit == -1,
    };
    if let Some(n) = conf.batch_span_count.filter(|n| *n != 200 && *n > 0) {
        params.max_batch_size = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = conf.batch_flush_delay.filter(|n| *n != 3 && *n >= 0) {
        params.max_coalescing_delay = secs(n as f64);
    }
    params
}

impl Exporter {
    fn start(conf: &OtelConfig, node_id: &str) -> Result<Self, String> {
        let params = queue_params(conf);
        let mut headers = http::HeaderMap::new();
        for (k, v) in conf.headers.iter().flatten() {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("opentelemetry: bad header name {k:?}"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("opentelemetry: bad value for header {k:?}"))?;
            headers.append(name, value);
        }
        let extra: Vec<(String, String)> = conf
            .resource_attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let resource: Arc<[u8]> = Arc::from(spans::resource(node_id, &extra));
        let sink = |endpoint: &str| SinkConfig {
            endpoint: endpoint.to_owned(),
            headers: headers.clone(),
            connect_timeout: Duration::from_millis(conf.connect_timeout),
            send_timeout: Duration::from_millis(conf.send_timeout),
            read_timeout: Duration::from_millis(conf.read_timeout),
        };
        let traces = match &conf.traces_endpoint {
            Some(ep) => {
                let r = Arc::clone(&resource);
                let body: BodyFn = Arc::new(move |entries| spans::body(&r, entries));
                Some(Queue::start(sink(ep), params.clone(), Signal::Spans, body)?)
            }
            None => None,
        };
        let logs = match &conf.logs_endpoint {
            Some(ep) => {
                let r = Arc::clone(&resource);
                let body: BodyFn = Arc::new(move |entries| spans::body(&r, entries));
                Some(Queue::start(sink(ep), params, Signal::Logs, body)?)
            }
            None => None,
        };
        Ok(Self { traces, logs })
    }
}

/// Where a format to inject comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inject {
    /// The extracted format, else the default.
    Preserve,
    /// This one.
    Format(Format),
}

/// What a handler does, resolved from the config.
#[derive(Debug, Clone)]
struct Settings {
    extract: Vec<Format>,
    clear: Vec<HeaderName>,
    inject: Vec<Inject>,
    default_format: Format,
    sampling_rate: f64,
    trace_header: Option<HeaderName>,
}

impl Settings {
    fn from_config(conf: &OtelConfig) -> Result<Self, String> {
        let p = &conf.propagation;
        let format = |name: &str| {
            Format::parse(name).ok_or_else(|| format!("opentelemetry: unknown format {name:?}"))
        };
        let default_format = format(&p.default_format)?;
        let mut extract = Vec::new();
        let mut inject = Vec::new();
        let explicit = p.extract.is_some() || p.inject.is_some() || p.clear.is_some();
        if explicit {
            for name in p.extract.iter().flatten() {
                extract.push(format(name)?);
            }
            for name in p.inject.iter().flatten() {
                inject.push(if name == "preserve" {
                    Inject::Preserve
                } else {
                    Inject::Format(format(name)?)
                });
            }
        } else {
            match conf.header_type.as_deref() {
                None => {}
                Some("ignore") => inject.push(Inject::Format(default_format)),
                Some(other) => {
                    extract.extend(propagation::LEGACY_EXTRACT);
                    inject.push(Inject::Preserve);
                    if other != "preserve" {
                        inject.push(Inject::Format(format(other)?));
                    }
                }
            }
        }
        let clear = p
            .clear
            .iter()
            .flatten()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("opentelemetry: bad header name {h:?} in clear"))
            })
            .collect::<Result<_, _>>()?;
        let trace_header = conf
            .http_response_header_for_traceid
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    format!("opentelemetry: bad http_response_header_for_traceid {h:?}")
                })
            })
            .transpose()?;
        Ok(Self {
            extract,
            clear,
            inject,
            default_format,
            sampling_rate: conf.sampling_rate.unwrap_or(1.0),
            trace_header,
        })
    }
}

/// One configured instance.
struct Otel {
    exporter: Arc<Exporter>,
    settings: Settings,
}

/// Kong's probability sampler: the trace id's first 8 bytes (as the little-endian integer
/// Kong's FFI cast reads on x86) below `rate * 2^64`.
fn sample(trace_id: &[u8; 16], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&trace_id[..8]);
    let v = u64::from_le_bytes(first);
    (v as f64) < rate * 18_446_744_073_709_551_616.0
}

/// The request's trace state, kept in [`Ctx::data`].
struct RequestTrace {
    ids: Ids,
    capture: Option<CaptureBuf>,
    /// The spans' record, built in the header filter, queued in the log phase.
    record: Mutex<Option<Box<TraceRecord>>>,
}

impl Clone for RequestTrace {
    fn clone(&self) -> Self {
        Self {
            ids: self.ids,
            capture: self.capture.clone(),
            record: Mutex::new(self.record.lock().ok().and_then(|r| r.clone())),
        }
    }
}

impl Otel {
    /// New ids for a request whose context was not (or could not be) extracted.
    fn ids(&self, ex: &Extracted) -> Ids {
        let trace_id = ex.trace_id.unwrap_or_else(spans::new_trace_id);
        let sampled = ex.sampled != Some(false) && sample(&trace_id, self.settings.sampling_rate);
        Ids {
            trace_id,
            span_id: spans::new_span_id(),
            parent_id: ex.span_id.or(ex.parent_id),
            balancer_id: spans::new_span_id(),
            sampled,
        }
    }

    fn record(&self, ctx: &mut Ctx, ids: Ids) -> Box<TraceRecord> {
        let timeline = ctx
            .timeline
            .take()
            .unwrap_or_else(|| Box::new(Timeline::new(ctx.started, ctx.started)));
        let mut target = ctx.path.clone();
        if let Some(q) = &ctx.query {
            target.push('?');
            target.push_str(q);
        }
        Box::new(TraceRecord {
            ids,
            timeline,
            method: ctx.method.clone(),
            scheme: if ctx.conn.tls { "https" } else { "http" },
            host: ctx.headers.get(http::header::HOST).cloned(),
            local_ip: ctx.conn.local.ip(),
            target,
            flavor: match ctx.version {
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2.0",
                http::Version::HTTP_3 => "3.0",
                _ => "1.1",
            },
            client_ip: ctx.client_ip,
            peer_ip: ctx.conn.peer.ip(),
            request_id: Arc::clone(&ctx.request_id),
            route: Arc::clone(&ctx.route),
            status: 0,
            duration: Duration::ZERO,
        })
    }
}

#[async_trait]
impl Handler for Otel {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let s = &self.settings;
        let (format, ex) = propagation::extract(&s.extract, &ctx.headers)
            .map_or((None, Extracted::default()), |(f, e)| (Some(f), e));
        let ids = self.ids(&ex);
        for h in &s.clear {
            ctx.headers.remove(h);
        }
        let out = Outgoing {
            trace_id: ids.trace_id,
            trace_id_len: if ex.trace_id.is_some() {
                ex.trace_id_len
            } else {
                0
            },
            span_id: ids.balancer_id,
            parent_id: Some(ids.span_id),
            sampled: ids.sampled,
            debug: ex.debug,
        };
        for inj in &s.inject {
            let f = match inj {
                Inject::Format(f) => *f,
                Inject::Preserve => match format {
                    Some(Format::B3) if ex.single_header => Format::B3Single,
                    Some(f) => f,
                    None => s.default_format,
                },
            };
            propagation::inject(f, &out, &mut ctx.headers);
        }
        let capture = scope::with_current(|sc| {
            sc.set_trace(TraceIds {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                sampled: ids.sampled,
            });
            self.exporter.logs.is_some().then(|| sc.capture())
        })
        .flatten();
        ctx.data.insert(RequestTrace {
            ids,
            capture,
            record: Mutex::new(None),
        });
        Flow::Continue
    }

    fn header_filter(&self, ctx: &mut Ctx, resp: &mut Parts) {
        // A plugin that answered before this one's access phase: a trace of its own.
        let ids = match ctx.data.get::<RequestTrace>() {
            Some(t) => t.ids,
            None => {
                let ids = self.ids(&Extracted::default());
                ctx.data.insert(RequestTrace {
                    ids,
                    capture: None,
                    record: Mutex::new(None),
                });
                ids
            }
        };
        if let Some(h) = &self.settings.trace_header
            && let Ok(v) = HeaderValue::try_from(propagation::hex(&ids.trace_id))
        {
            resp.headers.append(h.clone(), v);
        }
        if self.exporter.traces.is_some() && ids.sampled {
            let record = self.record(ctx, ids);
            if let Some(t) = ctx.data.get::<RequestTrace>()
                && let Ok(mut slot) = t.record.lock()
            {
                *slot = Some(record);
            }
        }
    }

    fn wants_log(&self) -> bool {
        true
    }

    fn wants_timeline(&self) -> bool {
        self.exporter.traces.is_some() && self.settings.sampling_rate > 0.0
    }

    fn log(&self, ctx: &Ctx, info: &LogInfo) {
        let Some(t) = ctx.data.get::<RequestTrace>() else {
            return;
        };
        if let Some(q) = &self.exporter.traces
            && let Some(mut record) = t.record.lock().ok().and_then(|mut r| r.take())
        {
            record.status = info.status;
            record.duration = info.total_latency;
            q.push(record);
        }
        if let (Some(q), Some(buf)) = (&self.exporter.logs, &t.capture) {
            let events = buf
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default();
            if !events.is_empty() {
                q.push(LogBatch {
                    events,
                    request_id: Arc::clone(&ctx.request_id),
                    ids: t.ids,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Ctx as SchemaCtx, validate_plugin};
    use crate::plugins::Registry;

    fn registry() -> Registry {
        let mut r = Registry::empty();
        r.add(Arc::new(Kind::default()));
        r
    }

    fn validate(config: Value) -> Result<Value, String> {
        let r = registry();
        validate_plugin(
            &json!({"name": "opentelemetry", "config": config}),
            &SchemaCtx::new(0, &r),
        )
        .map(|p| p.config)
        .map_err(|e| e.to_json().to_string())
    }

    #[test]
    fn defaults_aliases_and_errors() {
        let c = validate(json!({"traces_endpoint": "http://c:4318/v1/traces"})).unwrap();
        assert_eq!(c["queue"]["max_batch_size"], 200);
        assert_eq!(c["queue"]["max_coalescing_delay"], 1);
        assert_eq!(c["queue"]["max_entries"], 10000);
        assert_eq!(c["queue"]["initial_retry_delay"], 0.01);
        assert_eq!(c["queue"]["concurrency_limit"], 1);
        assert_eq!(c["connect_timeout"], 1000);
        assert_eq!(c["send_timeout"], 5000);
        assert_eq!(c["read_timeout"], 5000);
        assert_eq!(c["header_type"], "preserve");
        assert_eq!(c["propagation"]["default_format"], "w3c");
        assert_eq!(c["propagation"]["extract"], Value::Null);
        assert_eq!(c["sampling_rate"], Value::Null);

        // `endpoint` is the old name of traces_endpoint.
        let c = validate(json!({"endpoint": "http://old:4318/v1/traces"})).unwrap();
        assert_eq!(c["traces_endpoint"], "http://old:4318/v1/traces");

        let e = validate(json!({})).unwrap_err();
        assert!(
            e.contains(
                "at least one of these fields must be non-empty: 'logs_endpoint', 'traces_endpoint'"
            ),
            "{e}"
        );
        let e = validate(json!({"traces_endpoint": "nohost"})).unwrap_err();
        assert!(e.contains("missing scheme in url"), "{e}");
        let e = validate(json!({"logs_endpoint": "http://"})).unwrap_err();
        assert!(e.contains("missing host in url"), "{e}");
        let e = validate(json!({"traces_endpoint": "http://c", "sampling_rate": 1.5})).unwrap_err();
        assert!(e.contains("value should be between 0 and 1"), "{e}");
        let e =
            validate(json!({"traces_endpoint": "http://c", "header_type": "zipkin"})).unwrap_err();
        assert!(e.contains("expected one of"), "{e}");
        let e = validate(json!({"traces_endpoint": "http://c",
            "propagation": {"extract": ["b3-single"]}}))
        .unwrap_err();
        assert!(e.contains("expected one of"), "{e}");
        let e = validate(json!({"traces_endpoint": "http://c",
            "resource_attributes": {"service.name": ""}}))
        .unwrap_err();
        assert!(e.contains("required field missing"), "{e}");
        let e = validate(json!({"traces_endpoint": "http://c", "headers": {"bad header": "x"}}))
            .unwrap_err();
        assert!(e.contains("bad header name"), "{e}");
        let e = validate(json!({"traces_endpoint": "http://c",
            "queue": {"initial_retry_delay": 0}}))
        .unwrap_err();
        assert!(
            e.contains("value should be between 0.001 and 1000000"),
            "{e}"
        );
        let e = validate(json!({"traces_endpoint": "http://c", "queue": {"concurrency_limit": 2}}))
            .unwrap_err();
        assert!(e.contains("expected one of"), "{e}");
    }

    fn settings(config: Value) -> Settings {
        let c = validate(config).unwrap();
        let conf: OtelConfig = serde_json::from_value(c).unwrap();
        Settings::from_config(&conf).unwrap()
    }

    #[test]
    fn header_type_maps_to_propagation_like_kong() {
        let s = settings(json!({"traces_endpoint": "http://c"}));
        assert_eq!(s.extract, propagation::LEGACY_EXTRACT.to_vec());
        assert_eq!(s.inject, vec![Inject::Preserve]);
        assert_eq!(s.default_format, Format::W3c);
        let s = settings(json!({"traces_endpoint": "http://c", "header_type": "ignore"}));
        assert!(s.extract.is_empty());
        assert_eq!(s.inject, vec![Inject::Format(Format::W3c)]);
        let s = settings(json!({"traces_endpoint": "http://c", "header_type": "jaeger"}));
        assert_eq!(
            s.inject,
            vec![Inject::Preserve, Inject::Format(Format::Jaeger)]
        );
        // Any explicit propagation setting wins over header_type.
        let s = settings(
            json!({"traces_endpoint": "http://c", "header_type": "jaeger",
            "propagation": {"extract": ["gcp"], "default_format": "b3"}}),
        );
        assert_eq!(s.extract, vec![Format::Gcp]);
        assert!(s.inject.is_empty());
        assert_eq!(s.default_format, Format::B3);
        assert_eq!(s.sampling_rate, 1.0);
    }

    fn config(v: Value) -> OtelConfig {
        serde_json::from_value(validate(v).unwrap()).unwrap()
    }

    #[test]
    fn queue_settings_and_legacy_batch_names() {
        let p = queue_params(&config(json!({"traces_endpoint": "http://c"})));
        assert_eq!(
            p,
            QueueParams {
                max_batch_size: 200,
                max_coalescing_delay: Duration::from_secs(1),
                max_entries: 10000,
                max_retry_time: Duration::from_secs(60),
                initial_retry_delay: Duration::from_millis(10),
                max_retry_delay: Duration::from_secs(60),
                concurrent: false,
            }
        );
        let p = queue_params(&config(json!({"traces_endpoint": "http://c",
            "batch_span_count": 50, "batch_flush_delay": 7,
            "queue": {"max_batch_size": 10, "concurrency_limit": -1, "max_retry_time": -1}})));
        assert_eq!(p.max_batch_size, 50, "batch_span_count wins");
        assert_eq!(p.max_coalescing_delay, Duration::from_secs(7));
        assert!(p.concurrent);
        assert_eq!(p.max_retry_time, Duration::ZERO, "-1: no retries");
        // The old defaults are ignored (they were always set by Kong < 3.3).
        let p = queue_params(&config(json!({"traces_endpoint": "http://c",
            "batch_span_count": 200, "batch_flush_delay": 3, "queue": {"max_batch_size": 10}})));
        assert_eq!(
            (p.max_batch_size, p.max_coalescing_delay),
            (10, Duration::from_secs(1))
        );
    }

    #[test]
    fn sampler_is_deterministic_per_trace_and_follows_the_rate() {
        assert!(sample(&[0xff; 16], 1.0));
        assert!(!sample(&[0; 16], 0.0));
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| sample(&spans::new_trace_id(), 0.25))
            .count();
        let share = hits as f64 / n as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
        let id = spans::new_trace_id();
        assert_eq!(sample(&id, 0.5), sample(&id, 0.5));
    }

    #[test]
    fn url_validator() {
        assert!(url(&json!("https://user@h:1/p?q")).is_ok());
        assert!(url(&json!("http://[::1]:4318/v1/traces")).is_ok());
        assert_eq!(url(&json!("h:4318")).unwrap_err(), "missing scheme in url");
        assert_eq!(
            url(&json!("http://:80/")).unwrap_err(),
            "missing host in url"
        );
    }
}
