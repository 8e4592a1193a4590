//! An in-process OTLP/HTTP receiver (protobuf), for fine-grained assertions on what the gateway
//! and the services export: `POST /v1/traces` and `POST /v1/logs` (any path prefix), decoded with
//! `opentelemetry-proto`, answered like a collector (200 + an encoded empty response). It can be
//! told to fail (status) or to stall, to test that a bad collector does not hurt requests.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One export request received.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The request path.
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The decoded body.
    pub body: T,
}

#[derive(Default)]
struct Inner {
    traces: Mutex<Vec<Received<ExportTraceServiceRequest>>>,
    logs: Mutex<Vec<Received<ExportLogsServiceRequest>>>,
    /// Answer every export with this status (0: 200).
    fail: AtomicU16,
    /// Wait this many ms before answering.
    stall_ms: AtomicU64,
    requests: AtomicU64,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    pub addr: std::net::SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind otlp receiver");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// `http://ADDR` (append `/v1/traces` or `/v1/logs`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.url())
    }

    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.url())
    }

    /// Answer exports with `status` (0 restores 200).
    pub fn set_fail(&self, status: u16) {
        self.inner.fail.store(status, Ordering::SeqCst);
    }

    /// Delay every answer.
    pub fn set_stall(&self, d: Duration) {
        self.inner
            .stall_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Export requests received (traces and logs, also the failed ones).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    pub fn trace_requests(&self) -> Vec<Received<ExportTraceServiceRequest>> {
        self.inner.traces.lock().unwrap().clone()
    }

    pub fn log_requests(&self) -> Vec<Received<ExportLogsServiceRequest>> {
        self.inner.logs.lock().unwrap().clone()
    }

    /// Every span received, with its resource's attributes.
    pub fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut out = Vec::new();
        for r in self.trace_requests() {
            for rs in r.body.resource_spans {
                let res = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push((res.clone(), s));
                    }
                }
            }
        }
        out
    }

    /// Every log record received, with its resource's attributes.
    pub fn log_records(&self) -> Vec<(Vec<KeyValue>, LogRecord)> {
        let mut out = Vec::new();
        for r in self.log_requests() {
            for rl in r.body.resource_logs {
                let res = rl.resource.map(|r| r.attributes).unwrap_or_default();
                for sl in rl.scope_logs {
                    for l in sl.log_records {
                        out.push((res.clone(), l));
                    }
                }
            }
        }
        out
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let stall = inner.stall_ms.load(Ordering::SeqCst);
    if stall > 0 {
        tokio::time::sleep(Duration::from_millis(stall)).await;
    }
    let fail = inner.fail.load(Ordering::SeqCst);
    if fail != 0 {
        return StatusCode::from_u16(fail)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let path = uri.path().to_owned();
    // Collectors compress (rotel's default is gzip), as OpenObserve accepts.
    let body = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => body,
        Some(b"gzip") => {
            let mut out = Vec::new();
            if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                .is_err()
            {
                return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
            }
            Bytes::from(out)
        }
        Some(_) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unknown encoding").into_response(),
    };
    let proto = [(header::CONTENT_TYPE, "application/x-protobuf")];
    if path.ends_with("/v1/traces") {
        let Ok(req) = ExportTraceServiceRequest::decode(body) else {
            return (StatusCode::BAD_REQUEST, "bad protobuf").into_response();
        };
        inner.traces.lock().unwrap().push(Received {
            path,
            headers,
            body: req,
        });
        (proto, ExportTraceServiceResponse::default().encode_to_vec()).into_response()
    } else if path.ends_with("/v1/logs") {
        let Ok(req) = ExportLogsServiceRequest::decode(body) else {
            return (StatusCode::BAD_REQUEST, "bad protobuf").into_response();
        };
        inner.logs.lock().unwrap().push(Received {
            path,
            headers,
            body: req,
        });
        (proto, ExportLogsServiceResponse::default().encode_to_vec()).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// The string value of attribute `key`.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// The string value of attribute `key`, if it is a string.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Lower-case hex of an id.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
