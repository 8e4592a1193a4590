//! The per-request context plugins read and change: the request on its way upstream, the
//! authenticated consumer, and per-request plugin data.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use uuid::Uuid;

use crate::model::{Consumer, Route};
use crate::proxy::ConnInfo;
use crate::proxy::respond::GatewayError;
use crate::router::UriCaptures;
use crate::snapshot::{ServiceRuntime, Snapshot};
use crate::telemetry::timeline::Timeline;

/// The request body as plugins see it: still streaming, or read into memory by a plugin that
/// needed it (key-auth `key_in_body`, request-transformer, request-size-limiting).
#[derive(Debug, Default)]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// The client's body, not read yet.
    Stream(Incoming),
    /// The whole body (possibly rewritten).
    Full(Bytes),
}

/// Why [`Ctx::read_body`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit asked for.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The client's body could not be read (bad chunking, connection closed).
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// The credential an auth plugin accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Credential id.
    pub id: Uuid,
    /// What `X-Credential-Identifier` says (key-auth: the id; jwt: the key).
    pub identifier: String,
}

/// Who the request is from, once an auth plugin ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// The consumer (for anonymous access: the anonymous consumer).
    pub consumer: Consumer,
    /// The credential used; `None` for the anonymous consumer.
    pub credential: Option<Credential>,
    /// Whether this is the anonymous consumer of an auth plugin's `anonymous` setting.
    pub anonymous: bool,
}

/// Who made the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Not decided yet (access phase).
    Pending,
    /// The upstream answered.
    Upstream,
    /// The gateway answered (a plugin's short-circuit or a gateway error).
    Gateway,
}

/// Everything a plugin may read or change about a request.
pub struct Ctx {
    /// The configuration serving this request.
    pub snapshot: Arc<Snapshot>,
    /// The matched route.
    pub route: Arc<Route>,
    /// The route's service.
    pub service: Arc<ServiceRuntime>,
    /// The client connection.
    pub conn: ConnInfo,
    /// The client's address (the peer, or `X-Real-IP` from a trusted peer).
    pub client_ip: IpAddr,
    /// Kong's request id (32 hex digits).
    pub request_id: Arc<str>,
    /// Whether the client's request is gRPC (HTTP/2, `application/grpc...`): gateway-made
    /// responses are then sent in gRPC form (`proxy::respond::grpc_form`).
    pub grpc: bool,
    /// When the gateway received the request.
    pub started: Instant,
    /// The method sent upstream (the client's unless a plugin changes it).
    pub method: Method,
    /// The client's HTTP version.
    pub version: http::Version,
    /// The normalized request path as the client sent it.
    pub path: String,
    /// The query string sent upstream, without `?` (the client's unless a plugin changes it).
    pub query: Option<String>,
    /// The request headers: the client's, then sent upstream (plus the forwarding headers the
    /// proxy adds after the access phase).
    pub headers: HeaderMap,
    /// Regex captures of the matched route path.
    pub captures: UriCaptures,
    /// The request body.
    pub body: RequestBody,
    /// Replaces the upstream path computed from the route and service (request-transformer's
    /// `replace.uri`).
    pub upstream_path: Option<String>,
    /// Replaces the `Host` header (and TLS SNI) sent upstream, whatever `preserve_host` says
    /// (Kong's `ngx.var.upstream_host`, set by `kong.service.request.set_header("Host", ..)`).
    pub upstream_host: Option<http::HeaderValue>,
    /// Bytes of a streamed body already read by a [`Ctx::read_body`] that gave up (the body is
    /// larger than its limit): they go upstream before the rest of `body`.
    pub(crate) body_head: Option<Bytes>,
    /// Set by the auth plugin that accepted the request.
    pub auth: Option<Authenticated>,
    /// Who made the response (set before the header filters run).
    pub source: Source,
    /// Per-request data of individual plugins (keyed by type, like `http::Extensions`).
    pub data: http::Extensions,
    /// What happened when (router, plugins, upstream attempts): only on routes whose chain has
    /// a plugin that wants it (see [`crate::plugins::Handler::wants_timeline`]).
    pub timeline: Option<Box<Timeline>>,
}

/// Where a request's [`Ctx`] comes from: the routed request and its connection.
pub struct Routed {
    /// The configuration serving the request.
    pub snapshot: Arc<Snapshot>,
    /// The matched route.
    pub route: Arc<Route>,
    /// The route's service.
    pub service: Arc<ServiceRuntime>,
    /// The client connection.
    pub conn: ConnInfo,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Kong's request id.
    pub request_id: Arc<str>,
    /// Whether the request is gRPC.
    pub grpc: bool,
    /// When the gateway received the request.
    pub started: Instant,
    /// The normalized request path.
    pub path: String,
    /// Regex captures of the matched route path.
    pub captures: UriCaptures,
}

impl Ctx {
    /// The context of a routed request before its access phase. The headers are taken out of
    /// `parts` (the chain's changes are copied back before the request goes upstream); no
    /// consumer, plugin data or timeline yet.
    pub fn new(r: Routed, parts: &mut http::request::Parts, body: RequestBody) -> Self {
        Self {
            snapshot: r.snapshot,
            route: r.route,
            service: r.service,
            conn: r.conn,
            client_ip: r.client_ip,
            request_id: r.request_id,
            grpc: r.grpc,
            started: r.started,
            method: parts.method.clone(),
            version: parts.version,
            path: r.path,
            query: parts.uri.query().map(str::to_owned),
            headers: std::mem::take(&mut parts.headers),
            captures: r.captures,
            body,
            upstream_path: None,
            upstream_host: None,
            body_head: None,
            auth: None,
            source: Source::Pending,
            data: http::Extensions::new(),
            timeline: None,
        }
    }

    /// The authenticated consumer, if any.
    pub fn consumer(&self) -> Option<&Consumer> {
        self.auth.as_ref().map(|a| &a.consumer)
    }

    /// Read the whole body into memory (at most `limit` bytes) and keep it for the upstream.
    /// Reading twice returns the same bytes. A body larger than `limit` is not lost: what was
    /// read is kept and still goes upstream, followed by the rest of the stream.
    pub async fn read_body(&mut self, limit: usize) -> Result<&Bytes, BodyError> {
        if let RequestBody::Stream(_) = &self.body {
            let RequestBody::Stream(mut incoming) = std::mem::take(&mut self.body) else {
                return Err(BodyError::TooLarge(limit));
            };
            let mut buf = bytes::BytesMut::new();
            if let Some(head) = self.body_head.take() {
                buf.extend_from_slice(&head);
            }
            if buf.len() > limit {
                self.body_head = Some(buf.freeze());
                self.body = RequestBody::Stream(incoming);
                return Err(BodyError::TooLarge(limit));
            }
            while let Some(frame) = incoming.frame().await {
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        self.body_head = Some(buf.freeze());
                        self.body = RequestBody::Stream(incoming);
                        return Err(BodyError::TooLarge(limit));
                    }
                }
            }
            self.body = RequestBody::Full(buf.freeze());
        }
        if let RequestBody::Empty = self.body {
            self.body = RequestBody::Full(Bytes::new());
        }
        match &self.body {
            RequestBody::Full(b) => Ok(b),
            _ => Err(BodyError::TooLarge(limit)),
        }
    }

    /// Replace the body sent upstream (Content-Length is set to match; chunked framing dropped).
    pub fn set_body(&mut self, body: Bytes) {
        self.body_head = None;
        self.headers.remove(http::header::TRANSFER_ENCODING);
        self.headers
            .insert(http::header::CONTENT_LENGTH, body.len().into());
        self.body = RequestBody::Full(body);
    }

    /// The value of the first request header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the log phase learns about a finished request.
#[derive(Debug, Clone)]
pub struct LogInfo {
    /// The status sent to the client.
    pub status: u16,
    /// Who made the response.
    pub source: Source,
    /// The gateway error that ended the request, when the upstream failed (502, 503, 504).
    pub upstream_error: Option<GatewayError>,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// Whether the body was sent completely (false: the client went away or the upstream broke).
    pub completed: bool,
    /// Time waiting for the upstream (connect to response head), when it was reached.
    pub upstream_latency: Option<Duration>,
    /// Time from receiving the request to sending it upstream (Kong's proxy latency: routing
    /// and the access phase), when it was sent.
    pub proxy_latency: Option<Duration>,
    /// Time from receiving the request to the end of the response.
    pub total_latency: Duration,
}

impl LogInfo {
    /// Nothing known yet: what a request starts with before its access phase.
    pub fn pending() -> Self {
        Self {
            status: 0,
            source: Source::Pending,
            upstream_error: None,
            response_bytes: 0,
            completed: false,
            upstream_latency: None,
            proxy_latency: None,
            total_latency: Duration::ZERO,
        }
    }
}
