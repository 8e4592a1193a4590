//! HTTP: the server span of each incoming request ([`TraceLayer`]) and trace-context injection
//! into outgoing requests ([`inject`], [`inject_headers`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{HeaderMap, Request, Response, Version};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The gateway's request id header (Kong's).
const REQUEST_ID_HEADER: &str = "x-kong-request-id";
/// The header the gateway's auth plugins set to the authenticated user.
const USER_HEADER: &str = "auth-user-identifier";

/// The request id of the current request, in the request's extensions (what
/// `X-Kong-Request-Id` said, else a generated one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A tower layer giving every request a SERVER span (see [`TraceService`]). Add it with
/// `Router::layer` so that the span is named after the matched route.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    _private: (),
}

impl TraceLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService { inner }
    }
}

/// Runs each request inside a SERVER span named `METHOD /route` (axum's matched path; the
/// method alone without one), child of the caller's W3C `traceparent` when it sent one, with
/// HTTP semantic-convention attributes (`http.request.method`, `http.route`, `url.path`,
/// `network.protocol.version`, `user_agent.original`, `http.response.status_code` at the end;
/// status `ERROR` on a 5xx) and the fields `request_id` and `user`, which every console line
/// and exported log record inside the handler carries. The request id is also put in the
/// request's extensions as [`RequestId`].
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, B, RB> tower_service::Service<Request<B>> for TraceService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> TraceFuture<S::Future> {
        let (span, request_id) = request_span(&req);
        req.extensions_mut().insert(RequestId(request_id));
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        TraceFuture { inner, span }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TraceService`]: polls the handler inside the request's span and
    /// records the status at the end.
    pub struct TraceFuture<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F, RB, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let out = std::task::ready!(this.inner.poll(cx));
        match &out {
            Ok(resp) => {
                let status = resp.status().as_u16();
                this.span
                    .record("http.response.status_code", i64::from(status));
                if status >= 500 {
                    this.span.record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                this.span.record("otel.status_code", "ERROR");
            }
        }
        Poll::Ready(out)
    }
}

/// The request's span and request id.
fn request_span<B>(req: &Request<B>) -> (Span, String) {
    let headers = req.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let request_id = header(REQUEST_ID_HEADER)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let user = header(USER_HEADER);
    let method = req.method().as_str();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let name = match route {
        Some(r) => format!("{method} {r}"),
        None => method.to_owned(),
    };
    let version = match req.version() {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let span = tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.path = req.uri().path(),
        network.protocol.version = version,
        user_agent.original = header("user-agent"),
        http.response.status_code = Empty,
        request_id = %request_id,
        user = user,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        // Before the span is first entered: afterwards its parent is fixed.
        let _ = span.set_parent(parent);
    }
    (span, request_id)
}

/// Add the current span's trace context (W3C `traceparent`, `tracestate`) to `headers`.
pub fn inject_headers(headers: &mut HeaderMap) {
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// An outgoing reqwest request carrying the current span's trace context.
pub fn inject(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    inject_headers(&mut headers);
    request.headers(headers)
}
