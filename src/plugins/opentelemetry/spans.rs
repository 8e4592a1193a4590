//! What the request path hands to the exporter, and how the exporter turns it into OTLP
//! messages: a request's timeline into Kong's spans (`kong`, `kong.router`,
//! `kong.access.plugin.<name>`, `kong.balancer`), its captured log events into log records.
//!
//! Attribute names are Kong's (`http.method`, `http.url`, `net.peer.ip`, ...), each with its
//! current HTTP semantic-convention twin (`http.request.method`, `url.full`,
//! `network.peer.address`, ...). Integers are sent as integers (Kong sends every number but
//! `http.status_code` as a double). A server span whose response is a 5xx gets an error status
//! (semantic conventions; Kong leaves the root span's status unset).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use super::export::Record;
use crate::model::Route;
use crate::telemetry::scope::CapturedEvent;
use crate::telemetry::timeline::Timeline;

/// The ids of one request's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The gateway's root (`kong`) span.
    pub span_id: [u8; 8],
    /// The caller's span (the root span's parent), when a context came in.
    pub parent_id: Option<[u8; 8]>,
    /// The `kong.balancer` span of the attempt that reached the upstream (its id was sent
    /// upstream as the parent).
    pub balancer_id: [u8; 8],
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// One request's trace, as the request path hands it over (built into spans on the exporter's
/// thread).
#[derive(Debug, Clone)]
pub struct TraceRecord {
    /// The ids.
    pub ids: Ids,
    /// Router, plugins, upstream attempts.
    pub timeline: Box<Timeline>,
    /// The request method.
    pub method: http::Method,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The requested host (without port).
    pub host: String,
    /// Path and query as requested.
    pub target: String,
    /// `1.0`, `1.1`, `2.0`.
    pub flavor: &'static str,
    /// The client's address (forwarded, from a trusted proxy).
    pub client_ip: IpAddr,
    /// The connection's peer.
    pub peer_ip: IpAddr,
    /// Kong's request id.
    pub request_id: Arc<str>,
    /// The matched route (`http.route` is its first path).
    pub route: Arc<Route>,
    /// The status sent to the client.
    pub status: u16,
    /// Time from receiving the request to the end of the response.
    pub duration: Duration,
}

const SERVER: i32 = span::SpanKind::Server as i32;
const CLIENT: i32 = span::SpanKind::Client as i32;
const INTERNAL: i32 = span::SpanKind::Internal as i32;
/// W3C sampled flag plus `HAS_IS_REMOTE` (the parent's remoteness is known).
const FLAGS_LOCAL_PARENT: u32 = 0x01 | 0x100;
/// ... and the parent is remote.
const FLAGS_REMOTE_PARENT: u32 = 0x01 | 0x100 | 0x200;
const STATUS_ERROR: i32 = 2;

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn i(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Random non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// Random non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl TraceRecord {
    fn child(&self, name: String, kind: i32, start: u64, end: u64) -> Span {
        Span {
            trace_id: self.ids.trace_id.to_vec(),
            span_id: new_span_id().to_vec(),
            parent_span_id: self.ids.span_id.to_vec(),
            flags: FLAGS_LOCAL_PARENT,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end.max(start),
            ..Span::default()
        }
    }
}

impl Record for Box<TraceRecord> {
    type Out = Span;

    fn weight(&self) -> usize {
        2 + self.timeline.plugins.len() + self.timeline.attempts.len()
    }

    fn encode_into(self, out: &mut Vec<Span>) {
        let tl = &self.timeline;
        let start = tl.unix_nanos(tl.started);
        let end = start.saturating_add(u64::try_from(self.duration.as_nanos()).unwrap_or(0));
        let url = format!("{}://{}{}", self.scheme, self.host, self.target);
        let path = self.target.split('?').next().unwrap_or("").to_owned();
        let route = self
            .route
            .paths
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default();
        let method = self.method.as_str();
        let status = i64::from(self.status);
        let attributes = vec![
            s("http.method", method),
            s("http.request.method", method),
            s("http.url", url.clone()),
            s("url.full", url),
            s("url.path", path),
            s("http.host", self.host.clone()),
            s("server.address", self.host.clone()),
            s("http.scheme", self.scheme),
            s("url.scheme", self.scheme),
            s("http.flavor", self.flavor),
            s("network.protocol.version", self.flavor),
            s("http.client_ip", self.client_ip.to_string()),
            s("client.address", self.client_ip.to_string()),
            s("net.peer.ip", self.peer_ip.to_string()),
            s("network.peer.address", self.peer_ip.to_string()),
            s("kong.request.id", &*self.request_id),
            i("http.status_code", status),
            i("http.response.status_code", status),
            s("http.route", route),
        ];
        out.push(Span {
            trace_id: self.ids.trace_id.to_vec(),
            span_id: self.ids.span_id.to_vec(),
            parent_span_id: self.ids.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: if self.ids.parent_id.is_some() {
                FLAGS_REMOTE_PARENT
            } else {
                FLAGS_LOCAL_PARENT
            },
            name: "kong".to_owned(),
            kind: SERVER,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: (self.status >= 500).then(|| Status {
                code: STATUS_ERROR,
                message: String::new(),
            }),
            ..Span::default()
        });
        out.push(self.child(
            "kong.router".to_owned(),
            INTERNAL,
            start,
            tl.unix_nanos(tl.routed),
        ));
        for p in &tl.plugins {
            out.push(self.child(
                format!("kong.{}.plugin.{}", p.phase, p.name),
                INTERNAL,
                tl.unix_nanos(p.start),
                tl.unix_nanos(p.end),
            ));
        }
        let last = tl.attempts.len().saturating_sub(1);
        for (n, a) in tl.attempts.iter().enumerate() {
            let ok = a.error.is_none();
            // The attempt that reached the upstream carries the id sent upstream (Kong's
            // pre-created balancer span goes to the last try) and lasts until the response
            // ended.
            let linked = n == last && ok;
            let span_end = if linked { end } else { tl.unix_nanos(a.end) };
            let mut sp = self.child(
                "kong.balancer".to_owned(),
                CLIENT,
                tl.unix_nanos(a.start),
                span_end,
            );
            if linked {
                sp.span_id = self.ids.balancer_id.to_vec();
            }
            let port = i64::from(a.addr.port());
            let ip = a.addr.ip().to_string();
            sp.attributes = vec![
                i("try_count", i64::try_from(n + 1).unwrap_or(i64::MAX)),
                s("net.peer.ip", ip.clone()),
                s("network.peer.address", ip),
                i("net.peer.port", port),
                i("network.peer.port", port),
                s("net.peer.name", a.host.clone()),
                s("server.address", a.host.clone()),
                i("server.port", port),
                s("http.method", method),
                s("http.request.method", method),
            ];
            if let Some(code) = a.status {
                sp.attributes.push(i("http.status_code", i64::from(code)));
                sp.attributes
                    .push(i("http.response.status_code", i64::from(code)));
            }
            if let Some(err) = &a.error {
                sp.status = Some(Status {
                    code: STATUS_ERROR,
                    message: err.clone(),
                });
            }
            out.push(sp);
        }
    }
}

/// The log events one request emitted.
#[derive(Debug, Clone)]
pub struct LogBatch {
    /// The events, in order.
    pub events: Vec<CapturedEvent>,
    /// Kong's request id.
    pub request_id: Arc<str>,
    /// The request's trace (for events logged before the plugin set the scope's ids).
    pub ids: Ids,
}

fn severity(level: tracing::Level) -> (i32, &'static str) {
    match level {
        tracing::Level::TRACE => (1, "TRACE"),
        tracing::Level::DEBUG => (5, "DEBUG"),
        tracing::Level::INFO => (9, "INFO"),
        tracing::Level::WARN => (13, "WARN"),
        tracing::Level::ERROR => (17, "ERROR"),
    }
}

impl Record for LogBatch {
    type Out = LogRecord;

    fn weight(&self) -> usize {
        self.events.len()
    }

    fn encode_into(self, out: &mut Vec<LogRecord>) {
        for e in self.events {
            let (number, text) = severity(e.level);
            let (trace_id, span_id, sampled) = match e.trace {
                Some(t) => (t.trace_id, t.span_id, t.sampled),
                None => (self.ids.trace_id, self.ids.span_id, self.ids.sampled),
            };
            let mut attributes = Vec::with_capacity(e.fields.len() + 2);
            attributes.push(s("request.id", &*self.request_id));
            attributes.push(s("code.namespace", e.target));
            for (k, v) in e.fields {
                attributes.push(s(k, v));
            }
            let time = nanos(e.time);
            out.push(LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time,
                severity_number: number,
                severity_text: text.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(e.message)),
                }),
                attributes,
                flags: u32::from(sampled),
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                ..LogRecord::default()
            });
        }
    }
}

/// The resource attributes: Kong's defaults (`service.name=kong`, `service.version`,
/// `service.instance.id`), overridden and extended by the plugin's `resource_attributes`.
pub fn resource(node_id: &str, extra: &[(String, String)]) -> Vec<KeyValue> {
    let mut attrs: Vec<(String, String)> = vec![
        ("service.name".into(), "kong".into()),
        ("service.version".into(), crate::KONG_VERSION.into()),
        ("service.instance.id".into(), node_id.into()),
    ];
    for (k, v) in extra {
        match attrs.iter_mut().find(|(ak, _)| ak == k) {
            Some(slot) => slot.1.clone_from(v),
            None => attrs.push((k.clone(), v.clone())),
        }
    }
    attrs.into_iter().map(|(k, v)| s(&k, v)).collect()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "kong-internal".to_owned(),
        version: "0.1.0".to_owned(),
        ..InstrumentationScope::default()
    }
}

/// The body of a traces export.
pub fn traces_body(resource: &[KeyValue], spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

/// The body of a logs export.
pub fn logs_body(resource: &[KeyValue], log_records: Vec<LogRecord>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::telemetry::timeline::{AttemptSpan, PluginSpan};

    fn route() -> Arc<Route> {
        let ctx = crate::model::schema::Ctx::new(0, &crate::model::schema::NoPlugins);
        Arc::new(
            crate::model::schema::validate_route(
                &serde_json::json!({"paths": ["/api"], "service": {"id": "00000000-0000-0000-0000-000000000001"}}),
                &ctx,
            )
            .unwrap(),
        )
    }

    #[test]
    fn spans_have_kong_names_parents_and_the_linked_balancer_id() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut tl = Timeline::new(t0, t0 + ms(1));
        tl.plugins.push(PluginSpan {
            name: "key-auth",
            phase: "access",
            start: t0 + ms(1),
            end: t0 + ms(2),
        });
        for (n, err) in [(0, Some("refused".to_owned())), (1, None)] {
            tl.attempts.push(AttemptSpan {
                addr: format!("127.0.0.1:{}", 8000 + n).parse().unwrap(),
                host: "svc".into(),
                start: t0 + ms(3 + n),
                end: t0 + ms(4 + n),
                status: err.is_none().then_some(200),
                error: err,
            });
        }
        let ids = Ids {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_id: Some([9; 8]),
            balancer_id: [5; 8],
            sampled: true,
        };
        let rec = Box::new(TraceRecord {
            ids,
            timeline: Box::new(tl),
            method: http::Method::GET,
            scheme: "http",
            host: "example.com".into(),
            target: "/api/x?q=1".into(),
            flavor: "1.1",
            client_ip: "10.0.0.1".parse().unwrap(),
            peer_ip: "127.0.0.1".parse().unwrap(),
            request_id: Arc::from("r1"),
            route: route(),
            status: 200,
            duration: ms(10),
        });
        assert_eq!(rec.weight(), 5);
        let mut out = Vec::new();
        rec.encode_into(&mut out);
        let names: Vec<&str> = out.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kong",
                "kong.router",
                "kong.access.plugin.key-auth",
                "kong.balancer",
                "kong.balancer"
            ]
        );
        assert_eq!(out[0].parent_span_id, vec![9; 8]);
        assert_eq!(out[0].kind, SERVER);
        assert!(out[1..].iter().all(|s| s.parent_span_id == vec![1; 8]));
        assert!(out.iter().all(|s| s.trace_id == vec![7; 16]));
        // The failed first try has its own id and an error status; the second is linked.
        assert_ne!(out[3].span_id, vec![5; 8]);
        assert_eq!(out[3].status.as_ref().unwrap().code, STATUS_ERROR);
        assert_eq!(out[4].span_id, vec![5; 8]);
        assert_eq!(out[4].end_time_unix_nano, out[0].end_time_unix_nano);
        let url = out[0]
            .attributes
            .iter()
            .find(|kv| kv.key == "http.url")
            .unwrap();
        assert_eq!(
            url.value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue(
                "http://example.com/api/x?q=1".into()
            ))
        );
        let route = out[0]
            .attributes
            .iter()
            .find(|kv| kv.key == "http.route")
            .unwrap();
        assert_eq!(
            route.value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("/api".into()))
        );
        assert!(out[0].end_time_unix_nano - out[0].start_time_unix_nano == 10_000_000);
    }

    #[test]
    fn resource_defaults_are_overridable() {
        let r = resource(
            "node-1",
            &[
                ("service.name".into(), "edge".into()),
                ("x".into(), "y".into()),
            ],
        );
        let get = |k: &str| {
            r.iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| match &kv.value.as_ref()?.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
        };
        assert_eq!(get("service.name").as_deref(), Some("edge"));
        assert_eq!(get("service.instance.id").as_deref(), Some("node-1"));
        assert_eq!(get("service.version").as_deref(), Some(crate::KONG_VERSION));
        assert_eq!(get("x").as_deref(), Some("y"));
    }
}
