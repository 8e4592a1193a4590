//! The request a log event belongs to. The proxy runs each request inside a [`RequestScope`]
//! (a tokio task-local), so that anything logged while handling it — by the proxy or a plugin —
//! can carry the request id and, once a tracing plugin set them, the trace and span ids; and so
//! that a plugin can capture the request's log events (the opentelemetry plugin's
//! `logs_endpoint`). Outside a request (start-up, the control plane) there is no scope.
//!
//! Cost when nothing captures: one task-local swap per poll of the request future and a 32-byte
//! copy of the request id; no allocation.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// Trace context of the request's gateway span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    /// W3C trace id.
    pub trace_id: [u8; 16],
    /// The current span id (the gateway's request span).
    pub span_id: [u8; 8],
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// One log event captured during a request.
#[derive(Debug, Clone)]
pub struct CapturedEvent {
    /// When it was logged.
    pub time: SystemTime,
    /// Its level.
    pub level: tracing::Level,
    /// Its target (module path).
    pub target: &'static str,
    /// The `message` field.
    pub message: String,
    /// Every other field, formatted.
    pub fields: Vec<(&'static str, String)>,
    /// Trace ids current when it was logged.
    pub trace: Option<TraceIds>,
}

/// Where captured events go: shared by the scope and the plugin that asked for them (which
/// reads them in the log phase, possibly outside the scope).
pub type CaptureBuf = Arc<Mutex<Vec<CapturedEvent>>>;

/// At most this many events are captured per request (a request that logs in a loop cannot
/// grow memory without bound); later ones are dropped.
pub const MAX_CAPTURED: usize = 256;

/// Per-request logging context (see the module docs).
#[derive(Debug)]
pub struct RequestScope {
    request_id: [u8; 32],
    request_id_len: u8,
    trace: Cell<Option<TraceIds>>,
    capture: RefCell<Option<CaptureBuf>>,
}

impl RequestScope {
    /// A scope for the request `request_id` (Kong's 32 hex digits; longer ids are cut).
    pub fn new(request_id: &str) -> Self {
        let mut buf = [0u8; 32];
        let mut len = request_id.len().min(32);
        while !request_id.is_char_boundary(len) {
            len -= 1;
        }
        buf[..len].copy_from_slice(&request_id.as_bytes()[..len]);
        Self {
            request_id: buf,
            request_id_len: len as u8,
            trace: Cell::new(None),
            capture: RefCell::new(None),
        }
    }

    /// Run `fut` inside this scope.
    pub fn run<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(self, fut)
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        std::str::from_utf8(&self.request_id[..usize::from(self.request_id_len)]).unwrap_or("")
    }

    /// The trace ids, once a tracing plugin set them.
    pub fn trace(&self) -> Option<TraceIds> {
        self.trace.get()
    }

    /// Set the trace ids (the tracing plugin, in its access phase).
    pub fn set_trace(&self, ids: TraceIds) {
        self.trace.set(Some(ids));
    }

    /// Start capturing this request's log events into a buffer the caller keeps.
    pub fn capture(&self) -> CaptureBuf {
        let buf: CaptureBuf = Arc::new(Mutex::new(Vec::new()));
        *self.capture.borrow_mut() = Some(Arc::clone(&buf));
        buf
    }

    /// Whether some plugin captures events.
    pub fn capturing(&self) -> bool {
        self.capture.borrow().is_some()
    }

    /// Add a captured event (dropped past [`MAX_CAPTURED`]).
    pub fn push(&self, event: CapturedEvent) {
        if let Some(buf) = self.capture.borrow().as_ref()
            && let Ok(mut v) = buf.lock()
            && v.len() < MAX_CAPTURED
        {
            v.push(event);
        }
    }
}

/// Call `f` with the current request's scope; `None` outside a request.
pub fn with_current<R>(f: impl FnOnce(&RequestScope) -> R) -> Option<R> {
    SCOPE.try_with(f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scope_is_seen_inside_and_not_outside() {
        assert!(with_current(|_| ()).is_none());
        let id = "0123456789abcdef0123456789abcdef";
        let seen = RequestScope::new(id)
            .run(async {
                with_current(|s| {
                    s.set_trace(TraceIds {
                        trace_id: [1; 16],
                        span_id: [2; 8],
                        sampled: true,
                    });
                    (s.request_id().to_owned(), s.trace().map(|t| t.span_id))
                })
            })
            .await;
        assert_eq!(seen, Some((id.to_owned(), Some([2; 8]))));
        assert!(with_current(|_| ()).is_none());
    }

    #[tokio::test]
    async fn captures_are_bounded_and_only_when_asked() {
        let buf = RequestScope::new("r")
            .run(async {
                let ev = || CapturedEvent {
                    time: SystemTime::now(),
                    level: tracing::Level::INFO,
                    target: "t",
                    message: "m".into(),
                    fields: Vec::new(),
                    trace: None,
                };
                with_current(|s| s.push(ev()));
                let buf = with_current(|s| s.capture()).unwrap();
                for _ in 0..MAX_CAPTURED + 10 {
                    with_current(|s| s.push(ev()));
                }
                buf
            })
            .await;
        assert_eq!(buf.lock().unwrap().len(), MAX_CAPTURED);
    }
}

/// A `tracing` layer that copies events logged inside a capturing [`RequestScope`] into its
/// buffer (with the scope's trace ids). Outside a request, or when nothing captures, it only
/// checks the task-local.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let _ = with_current(|scope| {
            if !scope.capturing() {
                return;
            }
            let mut visitor = FieldText::default();
            event.record(&mut visitor);
            let meta = event.metadata();
            scope.push(CapturedEvent {
                time: SystemTime::now(),
                level: *meta.level(),
                target: meta.target(),
                message: visitor.message,
                fields: visitor.fields,
                trace: scope.trace(),
            });
        });
    }
}

/// Collects an event's fields as text.
#[derive(Default)]
struct FieldText {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for FieldText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.fields.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}
