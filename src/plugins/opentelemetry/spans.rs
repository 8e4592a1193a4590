//! What the request path hands to the exporter, and how the exporter turns it into OTLP
//! protobuf: a request's timeline into Kong's spans (`kong`, `kong.router`,
//! `kong.access.plugin.<name>`, `kong.balancer`), its captured log events into log records.
//!
//! The protobuf is written directly (see [`pb`]) rather than through `opentelemetry-proto`'s
//! message structs: building those costs dozens of allocations per span (every attribute key
//! and value is a `String`), which made the exporter thread cost as much as a fifth of the
//! proxy's CPU at full load. The bytes are the same messages (the tests decode them with
//! `opentelemetry-proto`).
//!
//! Attribute names are Kong's (`http.method`, `http.url`, `net.peer.ip`, ...), each with its
//! current HTTP semantic-convention twin (`http.request.method`, `url.full`,
//! `network.peer.address`, ...). Integers are sent as integers (Kong sends every number but
//! `http.status_code` as a double). A server span whose response is a 5xx gets an error status
//! (semantic conventions; Kong leaves the root span's status unset).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::export::{Encoded, Record};
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

/// One request's trace, as the request path hands it over (encoded into spans on the
/// exporter's thread).
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
    /// The `Host` header as received (the port is dropped when encoding).
    pub host: Option<HeaderValue>,
    /// Fallback host: the local address the request came in on.
    pub local_ip: IpAddr,
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

/// Minimal protobuf writing: tags, varints, fixed-width and length-delimited fields, and the
/// OTLP `KeyValue` attribute shapes used here.
pub mod pb {
    const VARINT: u64 = 0;
    const I64: u64 = 1;
    const LEN: u64 = 2;
    const I32: u64 = 5;

    /// Append `v` as a varint.
    pub fn varint(b: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
    }

    /// Bytes of `v` as a varint.
    pub fn varint_len(v: u64) -> usize {
        ((64 - (v | 1).leading_zeros()) as usize).div_ceil(7)
    }

    fn tag(b: &mut Vec<u8>, field: u32, wire: u64) {
        varint(b, (u64::from(field) << 3) | wire);
    }

    fn tag_len(field: u32) -> usize {
        varint_len(u64::from(field) << 3)
    }

    /// Bytes of a length-delimited field of `len` bytes.
    pub fn field_len(field: u32, len: usize) -> usize {
        tag_len(field) + varint_len(len as u64) + len
    }

    /// The tag and length of a length-delimited field whose `len` bytes follow.
    pub fn len_prefix(b: &mut Vec<u8>, field: u32, len: usize) {
        tag(b, field, LEN);
        varint(b, len as u64);
    }

    /// A `bytes` / `string` / message field.
    pub fn bytes(b: &mut Vec<u8>, field: u32, data: &[u8]) {
        len_prefix(b, field, data.len());
        b.extend_from_slice(data);
    }

    /// A string field given in parts.
    pub fn str_parts(b: &mut Vec<u8>, field: u32, parts: &[&str]) {
        len_prefix(b, field, parts.iter().map(|p| p.len()).sum());
        for p in parts {
            b.extend_from_slice(p.as_bytes());
        }
    }

    /// A varint (`uint64`, `int64`, enum) field.
    pub fn uint(b: &mut Vec<u8>, field: u32, v: u64) {
        tag(b, field, VARINT);
        varint(b, v);
    }

    /// A `fixed64` field.
    pub fn fixed64(b: &mut Vec<u8>, field: u32, v: u64) {
        tag(b, field, I64);
        b.extend_from_slice(&v.to_le_bytes());
    }

    /// A `fixed32` field.
    pub fn fixed32(b: &mut Vec<u8>, field: u32, v: u32) {
        tag(b, field, I32);
        b.extend_from_slice(&v.to_le_bytes());
    }

    /// A `KeyValue` field whose value is the string made of `parts`.
    pub fn kv_str(b: &mut Vec<u8>, field: u32, key: &str, parts: &[&str]) {
        let vlen: usize = parts.iter().map(|p| p.len()).sum();
        let any = field_len(1, vlen);
        len_prefix(b, field, field_len(1, key.len()) + field_len(2, any));
        bytes(b, 1, key.as_bytes());
        len_prefix(b, 2, any);
        str_parts(b, 1, parts);
    }

    /// A `KeyValue` field whose value is an `int_value`.
    pub fn kv_int(b: &mut Vec<u8>, field: u32, key: &str, v: i64) {
        let any = tag_len(3) + varint_len(v as u64);
        len_prefix(b, field, field_len(1, key.len()) + field_len(2, any));
        bytes(b, 1, key.as_bytes());
        len_prefix(b, 2, any);
        uint(b, 3, v as u64);
    }
}

// Field numbers (opentelemetry/proto/trace/v1/trace.proto, logs/v1/logs.proto).
const SCOPE_SPANS_SPANS: u32 = 2;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const SCOPE_LOGS_RECORDS: u32 = 2;
const LOG_TIME: u32 = 1;
const LOG_SEVERITY_NUMBER: u32 = 2;
const LOG_SEVERITY_TEXT: u32 = 3;
const LOG_BODY: u32 = 5;
const LOG_ATTRIBUTES: u32 = 6;
const LOG_FLAGS: u32 = 8;
const LOG_TRACE_ID: u32 = 9;
const LOG_SPAN_ID: u32 = 10;
const LOG_OBSERVED_TIME: u32 = 11;

const SERVER: u64 = 2;
const CLIENT: u64 = 3;
const INTERNAL: u64 = 1;
/// W3C sampled flag plus `HAS_IS_REMOTE` (the parent's remoteness is known).
const FLAGS_LOCAL_PARENT: u32 = 0x01 | 0x100;
/// ... and the parent is remote.
const FLAGS_REMOTE_PARENT: u32 = 0x01 | 0x100 | 0x200;
const STATUS_ERROR: u64 = 2;

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

/// `host:port` -> `host` (bracketed IPv6 without brackets).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The common head of a span: ids, name, kind, times.
struct SpanHead<'a> {
    trace_id: &'a [u8; 16],
    span_id: &'a [u8; 8],
    parent: Option<&'a [u8; 8]>,
    name: &'a [&'a str],
    kind: u64,
    start: u64,
    end: u64,
}

fn span_head(s: &mut Vec<u8>, h: &SpanHead<'_>) {
    pb::bytes(s, SPAN_TRACE_ID, h.trace_id);
    pb::bytes(s, SPAN_SPAN_ID, h.span_id);
    if let Some(p) = h.parent {
        pb::bytes(s, SPAN_PARENT_SPAN_ID, p);
    }
    pb::str_parts(s, SPAN_NAME, h.name);
    pb::uint(s, SPAN_KIND, h.kind);
    pb::fixed64(s, SPAN_START, h.start);
    pb::fixed64(s, SPAN_END, h.end.max(h.start));
}

fn span_status_error(s: &mut Vec<u8>, message: &str) {
    let len = if message.is_empty() {
        0
    } else {
        pb::field_len(STATUS_MESSAGE, message.len())
    } + 1
        + pb::varint_len(STATUS_ERROR);
    pb::len_prefix(s, SPAN_STATUS, len);
    if !message.is_empty() {
        pb::bytes(s, STATUS_MESSAGE, message.as_bytes());
    }
    pb::uint(s, STATUS_CODE, STATUS_ERROR);
}

/// Move the span in `out.scratch` into `out.buf` as one `ScopeSpans.spans` entry.
fn finish_entry(out: &mut Encoded, field: u32) {
    pb::bytes(&mut out.buf, field, &out.scratch);
    out.scratch.clear();
    out.end_entry();
}

/// `ip` as text into `text` (IPv4 without the formatting machinery: three per request).
fn ip_text(text: &mut String, ip: IpAddr) {
    text.clear();
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + (octet / 10) % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(text, "{ip}");
        }
    }
}

/// `key = ip` as a string attribute, formatted in `text` (left there for a twin attribute).
fn kv_ip(s: &mut Vec<u8>, text: &mut String, key: &str, ip: IpAddr) {
    ip_text(text, ip);
    pb::kv_str(s, SPAN_ATTRIBUTES, key, &[text]);
}

impl Record for Box<TraceRecord> {
    fn weight(&self) -> usize {
        2 + self.timeline.plugins.len() + self.timeline.attempts.len()
    }

    fn encode_into(self, out: &mut Encoded) {
        let tl = &self.timeline;
        let ids = &self.ids;
        let start = tl.unix_nanos(tl.started);
        let end = start.saturating_add(u64::try_from(self.duration.as_nanos()).unwrap_or(0));
        let host_text = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(strip_port);
        let mut local = String::new();
        if host_text.is_none() {
            ip_text(&mut local, self.local_ip);
        }
        let host = host_text.unwrap_or(&local);
        let path = self.target.split('?').next().unwrap_or("");
        let route = self
            .route
            .paths
            .as_ref()
            .and_then(|p| p.first())
            .map_or("", String::as_str);
        let method = self.method.as_str();
        let status = i64::from(self.status);
        let url: [&str; 4] = [self.scheme, "://", host, &self.target];

        // The root span.
        let s = &mut out.scratch;
        span_head(
            s,
            &SpanHead {
                trace_id: &ids.trace_id,
                span_id: &ids.span_id,
                parent: ids.parent_id.as_ref(),
                name: &["kong"],
                kind: SERVER,
                start,
                end,
            },
        );
        let a = SPAN_ATTRIBUTES;
        pb::kv_str(s, a, "http.method", &[method]);
        pb::kv_str(s, a, "http.request.method", &[method]);
        pb::kv_str(s, a, "http.url", &url);
        pb::kv_str(s, a, "url.full", &url);
        pb::kv_str(s, a, "url.path", &[path]);
        pb::kv_str(s, a, "http.host", &[host]);
        pb::kv_str(s, a, "server.address", &[host]);
        pb::kv_str(s, a, "http.scheme", &[self.scheme]);
        pb::kv_str(s, a, "url.scheme", &[self.scheme]);
        pb::kv_str(s, a, "http.flavor", &[self.flavor]);
        pb::kv_str(s, a, "network.protocol.version", &[self.flavor]);
        kv_ip(s, &mut out.text, "http.client_ip", self.client_ip);
        pb::kv_str(s, a, "client.address", &[&out.text]);
        kv_ip(s, &mut out.text, "net.peer.ip", self.peer_ip);
        pb::kv_str(s, a, "network.peer.address", &[&out.text]);
        pb::kv_str(s, a, "kong.request.id", &[&self.request_id]);
        pb::kv_int(s, a, "http.status_code", status);
        pb::kv_int(s, a, "http.response.status_code", status);
        pb::kv_str(s, a, "http.route", &[route]);
        if self.status >= 500 {
            span_status_error(s, "");
        }
        let flags = if ids.parent_id.is_some() {
            FLAGS_REMOTE_PARENT
        } else {
            FLAGS_LOCAL_PARENT
        };
        pb::fixed32(s, SPAN_FLAGS, flags);
        finish_entry(out, SCOPE_SPANS_SPANS);

        let child = |out: &mut Encoded, id: &[u8; 8], name: &[&str], kind, start, end| {
            span_head(
                &mut out.scratch,
                &SpanHead {
                    trace_id: &ids.trace_id,
                    span_id: id,
                    parent: Some(&ids.span_id),
                    name,
                    kind,
                    start,
                    end,
                },
            );
        };

        child(
            out,
            &new_span_id(),
            &["kong.router"],
            INTERNAL,
            start,
            tl.unix_nanos(tl.routed),
        );
        pb::fixed32(&mut out.scratch, SPAN_FLAGS, FLAGS_LOCAL_PARENT);
        finish_entry(out, SCOPE_SPANS_SPANS);

        for p in &tl.plugins {
            child(
                out,
                &new_span_id(),
                &["kong.", p.phase, ".plugin.", p.name],
                INTERNAL,
                tl.unix_nanos(p.start),
                tl.unix_nanos(p.end),
            );
            pb::fixed32(&mut out.scratch, SPAN_FLAGS, FLAGS_LOCAL_PARENT);
            finish_entry(out, SCOPE_SPANS_SPANS);
        }

        let last = tl.attempts.len().saturating_sub(1);
        for (n, at) in tl.attempts.iter().enumerate() {
            // The attempt that reached the upstream carries the id sent upstream (Kong's
            // pre-created balancer span goes to the last try) and lasts until the response
            // ended.
            let linked = n == last && at.error.is_none();
            let (id, span_end) = if linked {
                (ids.balancer_id, end)
            } else {
                (new_span_id(), tl.unix_nanos(at.end))
            };
            child(
                out,
                &id,
                &["kong.balancer"],
                CLIENT,
                tl.unix_nanos(at.start),
                span_end,
            );
            let port = i64::from(at.addr.port());
            let s = &mut out.scratch;
            pb::kv_int(s, a, "try_count", i64::try_from(n + 1).unwrap_or(i64::MAX));
            kv_ip(s, &mut out.text, "net.peer.ip", at.addr.ip());
            pb::kv_str(s, a, "network.peer.address", &[&out.text]);
            pb::kv_int(s, a, "net.peer.port", port);
            pb::kv_int(s, a, "network.peer.port", port);
            pb::kv_str(s, a, "net.peer.name", &[&at.host]);
            pb::kv_str(s, a, "server.address", &[&at.host]);
            pb::kv_int(s, a, "server.port", port);
            pb::kv_str(s, a, "http.method", &[method]);
            pb::kv_str(s, a, "http.request.method", &[method]);
            if let Some(code) = at.status {
                pb::kv_int(s, a, "http.status_code", i64::from(code));
                pb::kv_int(s, a, "http.response.status_code", i64::from(code));
            }
            if let Some(err) = &at.error {
                span_status_error(s, err);
            }
            pb::fixed32(s, SPAN_FLAGS, FLAGS_LOCAL_PARENT);
            finish_entry(out, SCOPE_SPANS_SPANS);
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

fn severity(level: tracing::Level) -> (u64, &'static str) {
    match level {
        tracing::Level::TRACE => (1, "TRACE"),
        tracing::Level::DEBUG => (5, "DEBUG"),
        tracing::Level::INFO => (9, "INFO"),
        tracing::Level::WARN => (13, "WARN"),
        tracing::Level::ERROR => (17, "ERROR"),
    }
}

impl Record for LogBatch {
    fn weight(&self) -> usize {
        self.events.len()
    }

    fn encode_into(self, out: &mut Encoded) {
        for e in &self.events {
            let (number, text) = severity(e.level);
            let (trace_id, span_id, sampled) = match e.trace {
                Some(t) => (t.trace_id, t.span_id, t.sampled),
                None => (self.ids.trace_id, self.ids.span_id, self.ids.sampled),
            };
            let time = nanos(e.time);
            let s = &mut out.scratch;
            pb::fixed64(s, LOG_TIME, time);
            pb::uint(s, LOG_SEVERITY_NUMBER, number);
            pb::bytes(s, LOG_SEVERITY_TEXT, text.as_bytes());
            pb::len_prefix(s, LOG_BODY, pb::field_len(1, e.message.len()));
            pb::bytes(s, 1, e.message.as_bytes());
            pb::kv_str(s, LOG_ATTRIBUTES, "request.id", &[&self.request_id]);
            pb::kv_str(s, LOG_ATTRIBUTES, "code.namespace", &[e.target]);
            for (k, v) in &e.fields {
                pb::kv_str(s, LOG_ATTRIBUTES, k, &[v]);
            }
            pb::fixed32(s, LOG_FLAGS, u32::from(sampled));
            pb::bytes(s, LOG_TRACE_ID, &trace_id);
            pb::bytes(s, LOG_SPAN_ID, &span_id);
            pb::fixed64(s, LOG_OBSERVED_TIME, time);
            finish_entry(out, SCOPE_LOGS_RECORDS);
        }
    }
}

/// The encoded `Resource` message: Kong's defaults (`service.name=kong`, `service.version`,
/// `service.instance.id`), overridden and extended by the plugin's `resource_attributes`.
pub fn resource(node_id: &str, extra: &[(String, String)]) -> Vec<u8> {
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
    let mut b = Vec::new();
    for (k, v) in &attrs {
        // Resource.attributes = 1.
        pb::kv_str(&mut b, 1, k, &[v]);
    }
    b
}

/// The encoded `InstrumentationScope` (Kong's name and version).
fn scope() -> Vec<u8> {
    let mut b = Vec::new();
    pb::bytes(&mut b, 1, b"kong-internal");
    pb::bytes(&mut b, 2, b"0.1.0");
    b
}

/// An export request body: `{resource_x: [{resource, scope_x: [{scope, entries}]}]}` — the
/// same shape for traces (`ExportTraceServiceRequest`) and logs (`ExportLogsServiceRequest`).
pub fn body(resource: &[u8], entries: &[u8]) -> Vec<u8> {
    let scope = scope();
    let scoped = pb::field_len(1, scope.len()) + entries.len();
    let per_resource = pb::field_len(1, resource.len()) + pb::field_len(2, scoped);
    let mut b = Vec::with_capacity(pb::field_len(1, per_resource));
    pb::len_prefix(&mut b, 1, per_resource);
    pb::bytes(&mut b, 1, resource);
    pb::len_prefix(&mut b, 2, scoped);
    pb::bytes(&mut b, 1, &scope);
    b.extend_from_slice(entries);
    b
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;
    use crate::telemetry::scope::TraceIds;
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

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn string(attrs: &[KeyValue], key: &str) -> Option<String> {
        match attr(attrs, key) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
        match attr(attrs, key) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    const RESOURCE: &str = "node-1";

    fn decode_spans(out: &Encoded) -> (Vec<KeyValue>, Vec<Span>) {
        let res = resource(RESOURCE, &[]);
        let req = ExportTraceServiceRequest::decode(&*body(&res, &out.buf)).unwrap();
        let rs = &req.resource_spans[0];
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("kong-internal", "0.1.0")
        );
        (
            rs.resource.as_ref().unwrap().attributes.clone(),
            ss.spans.clone(),
        )
    }

    fn record(status: u16, attempts: Vec<AttemptSpan>, t0: Instant) -> Box<TraceRecord> {
        let ms = Duration::from_millis;
        let mut tl = Timeline::new(t0, t0 + ms(1));
        tl.plugins.push(PluginSpan {
            name: "key-auth",
            phase: "access",
            start: t0 + ms(1),
            end: t0 + ms(2),
        });
        tl.attempts = attempts;
        Box::new(TraceRecord {
            ids: Ids {
                trace_id: [7; 16],
                span_id: [1; 8],
                parent_id: Some([9; 8]),
                balancer_id: [5; 8],
                sampled: true,
            },
            timeline: Box::new(tl),
            method: http::Method::GET,
            scheme: "http",
            host: Some(HeaderValue::from_static("example.com:8000")),
            local_ip: "127.0.0.1".parse().unwrap(),
            target: "/api/x?q=1".into(),
            flavor: "1.1",
            client_ip: "10.0.0.1".parse().unwrap(),
            peer_ip: "127.0.0.1".parse().unwrap(),
            request_id: Arc::from("r1"),
            route: route(),
            status,
            duration: ms(10),
        })
    }

    #[test]
    fn spans_have_kong_names_parents_attributes_and_the_linked_balancer_id() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let attempts = [(0u16, Some("refused".to_owned())), (1, None)]
            .into_iter()
            .map(|(n, err)| AttemptSpan {
                addr: format!("127.0.0.1:{}", 8000 + n).parse().unwrap(),
                host: "svc".into(),
                start: t0 + ms(3 + u64::from(n)),
                end: t0 + ms(4 + u64::from(n)),
                status: err.is_none().then_some(200),
                error: err,
            })
            .collect();
        let rec = record(200, attempts, t0);
        assert_eq!(rec.weight(), 5);
        let mut out = Encoded::default();
        rec.encode_into(&mut out);
        assert_eq!(out.len(), 5, "one entry per span");
        let (res, spans) = decode_spans(&out);
        assert_eq!(string(&res, "service.name").as_deref(), Some("kong"));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
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
        let root = &spans[0];
        assert_eq!(root.parent_span_id, vec![9; 8]);
        assert_eq!(root.span_id, vec![1; 8]);
        assert_eq!(root.kind, 2);
        assert_eq!(root.flags, 0x301);
        assert!(root.status.is_none());
        assert!(
            spans[1..]
                .iter()
                .all(|s| s.parent_span_id == vec![1; 8] && s.flags == 0x101)
        );
        assert!(spans.iter().all(|s| s.trace_id == vec![7; 16]));
        assert_eq!(
            root.end_time_unix_nano - root.start_time_unix_nano,
            10_000_000
        );
        let a = &root.attributes;
        assert_eq!(
            string(a, "http.url").as_deref(),
            Some("http://example.com/api/x?q=1")
        );
        assert_eq!(string(a, "url.path").as_deref(), Some("/api/x"));
        assert_eq!(string(a, "http.host").as_deref(), Some("example.com"));
        assert_eq!(string(a, "http.route").as_deref(), Some("/api"));
        assert_eq!(string(a, "http.client_ip").as_deref(), Some("10.0.0.1"));
        assert_eq!(string(a, "client.address").as_deref(), Some("10.0.0.1"));
        assert_eq!(string(a, "net.peer.ip").as_deref(), Some("127.0.0.1"));
        assert_eq!(string(a, "kong.request.id").as_deref(), Some("r1"));
        assert_eq!(int(a, "http.status_code"), Some(200));
        // The failed first try: its own id, an error status with the reason.
        let (first, second) = (&spans[3], &spans[4]);
        assert_ne!(first.span_id, vec![5; 8]);
        let st = first.status.as_ref().unwrap();
        assert_eq!((st.code, st.message.as_str()), (2, "refused"));
        assert_eq!(int(&first.attributes, "try_count"), Some(1));
        assert_eq!(int(&first.attributes, "net.peer.port"), Some(8000));
        assert_eq!(int(&first.attributes, "http.status_code"), None);
        // The second reached the upstream: the id sent upstream, until the response ended.
        assert_eq!(second.span_id, vec![5; 8]);
        assert_eq!(second.kind, 3);
        assert_eq!(second.end_time_unix_nano, root.end_time_unix_nano);
        assert_eq!(int(&second.attributes, "try_count"), Some(2));
        assert_eq!(int(&second.attributes, "http.status_code"), Some(200));
        assert_eq!(
            string(&second.attributes, "net.peer.name").as_deref(),
            Some("svc")
        );
        assert_eq!(
            string(&second.attributes, "net.peer.ip").as_deref(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn a_5xx_root_is_an_error_and_batches_split_per_span() {
        let rec = record(502, Vec::new(), Instant::now());
        let mut out = Encoded::default();
        rec.clone().encode_into(&mut out);
        rec.encode_into(&mut out);
        assert_eq!(out.len(), 6);
        let (_, spans) = decode_spans(&out);
        assert_eq!(spans[0].status.as_ref().map(|s| s.code), Some(2));
        // Every entry decodes on its own too (a batch may end anywhere).
        let mut start = 0;
        for &end in &out.ends {
            let res = resource(RESOURCE, &[]);
            let one =
                ExportTraceServiceRequest::decode(&*body(&res, &out.buf[start..end])).unwrap();
            assert_eq!(one.resource_spans[0].scope_spans[0].spans.len(), 1);
            start = end;
        }
    }

    #[test]
    fn log_records_carry_ids_severity_body_and_fields() {
        let ids = Ids {
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_id: None,
            balancer_id: [5; 8],
            sampled: false,
        };
        let ev = |level, trace| CapturedEvent {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            level,
            target: "gwctl::proxy",
            message: "upstream unreachable".into(),
            fields: vec![("tries", "1".into())],
            trace,
        };
        let batch = LogBatch {
            events: vec![
                ev(
                    tracing::Level::WARN,
                    Some(TraceIds {
                        trace_id: [8; 16],
                        span_id: [6; 8],
                        sampled: true,
                    }),
                ),
                ev(tracing::Level::ERROR, None),
            ],
            request_id: Arc::from("rid"),
            ids,
        };
        let mut out = Encoded::default();
        batch.encode_into(&mut out);
        let res = resource(RESOURCE, &[]);
        let req = ExportLogsServiceRequest::decode(&*body(&res, &out.buf)).unwrap();
        let logs = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(logs.len(), 2);
        let w = &logs[0];
        assert_eq!((w.severity_number, w.severity_text.as_str()), (13, "WARN"));
        assert_eq!(w.time_unix_nano, 1_000_000_000);
        assert_eq!(w.observed_time_unix_nano, 1_000_000_000);
        assert_eq!(
            (w.trace_id.clone(), w.span_id.clone(), w.flags),
            (vec![8; 16], vec![6; 8], 1)
        );
        assert_eq!(
            w.body.as_ref().and_then(|b| b.value.clone()),
            Some(any_value::Value::StringValue("upstream unreachable".into()))
        );
        assert_eq!(string(&w.attributes, "request.id").as_deref(), Some("rid"));
        assert_eq!(
            string(&w.attributes, "code.namespace").as_deref(),
            Some("gwctl::proxy")
        );
        assert_eq!(string(&w.attributes, "tries").as_deref(), Some("1"));
        let e = &logs[1];
        assert_eq!(
            (e.severity_number, e.trace_id.clone(), e.flags),
            (17, vec![3; 16], 0)
        );
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
        let req = ExportTraceServiceRequest::decode(&*body(&r, &[])).unwrap();
        let attrs = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
        assert_eq!(string(attrs, "service.name").as_deref(), Some("edge"));
        assert_eq!(
            string(attrs, "service.instance.id").as_deref(),
            Some("node-1")
        );
        assert_eq!(
            string(attrs, "service.version").as_deref(),
            Some(crate::KONG_VERSION)
        );
        assert_eq!(string(attrs, "x").as_deref(), Some("y"));
    }

    #[test]
    fn addresses_format_like_display() {
        let mut t = String::new();
        for ip in [
            "0.0.0.0",
            "10.1.20.255",
            "127.0.0.1",
            "192.168.100.9",
            "::1",
            "fe80::1:2",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            ip_text(&mut t, ip);
            assert_eq!(t, ip.to_string());
        }
    }

    #[test]
    fn varints_and_negative_ints() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            pb::varint(&mut b, v);
            assert_eq!(b.len(), pb::varint_len(v), "{v}");
        }
        let mut b = Vec::new();
        pb::kv_int(&mut b, 1, "n", -5);
        let kv = KeyValue::decode(&b[2..]).unwrap();
        assert_eq!(
            kv.value.unwrap().value,
            Some(any_value::Value::IntValue(-5))
        );
    }
}
