//! Body types of the data plane. Bodies stream in both directions; nothing here buffers.
//!
//! - [`UpstreamReqBody`]: the client's body on its way upstream; signals when it has been sent
//!   completely, which is when the upstream read timeout starts (nginx's `proxy_read_timeout`).
//! - [`UpstreamBody`]: the upstream's response body on its way to the client; enforces the read
//!   timeout between chunks and returns the connection to the pool once read to the end.
//! - [`ProxyBody`]: what the client receives: a gateway-made body or an upstream one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::pool::{Pool, PoolKey, Sender};

/// Errors a [`ProxyBody`] may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body sent upstream.
pub enum UpstreamReqBody {
    /// No body.
    Empty,
    /// A body read into memory by a plugin (possibly rewritten); `None` once sent.
    Full(Option<Bytes>),
    /// The client's streamed body; `done` fires when its last frame was handed to the upstream.
    Stream {
        /// Bytes of the client's body a plugin already read (sent first).
        head: Option<Bytes>,
        /// Client body.
        inner: Incoming,
        /// Fired at the end of the body (or when the body is dropped).
        done: Option<oneshot::Sender<()>>,
    },
}

impl Body for UpstreamReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream { head, inner, done } => {
                if let Some(b) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                let finished = match &polled {
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    Poll::Pending => false,
                };
                if finished && let Some(tx) = done.take() {
                    let _ = tx.send(());
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Stream { head, inner, .. } => head.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { head, inner, .. } => {
                let inner = inner.size_hint();
                let n = head.as_ref().map_or(0, |b| b.len() as u64);
                let mut hint = SizeHint::new();
                if let Some(u) = inner.upper() {
                    hint.set_upper(u.saturating_add(n));
                }
                hint.set_lower(inner.lower().saturating_add(n));
                hint
            }
        }
    }
}

/// Where a connection returns once its response was read to the end.
pub struct Checkin {
    /// The pool.
    pub pool: Arc<Pool>,
    /// The connection's key.
    pub key: PoolKey,
    /// The connection.
    pub sender: Sender,
}

/// A response body streamed from the upstream.
pub struct UpstreamBody {
    inner: Incoming,
    read_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    checkin: Option<Checkin>,
    /// The balancer's peer, held until the body ends (least-connections counts it in flight).
    peer: Option<crate::balancer::Peer>,
    /// The HTTP/2 stream's slot on its pooled connection, released when the body ends.
    stream: Option<super::h2::StreamGuard>,
}

impl UpstreamBody {
    /// Keep `peer` counted as in flight until this body is finished or dropped.
    pub fn hold_peer(&mut self, peer: Option<crate::balancer::Peer>) {
        self.peer = peer;
    }

    /// Wrap an upstream body. `checkin` is `None` for connections that must not be reused.
    pub fn new(inner: Incoming, read_timeout: Duration, checkin: Option<Checkin>) -> Self {
        let mut body = Self {
            inner,
            read_timeout,
            timer: None,
            checkin,
            peer: None,
            stream: None,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    /// Wrap a body from a multiplexed HTTP/2 connection; `stream` is released at its end.
    pub fn h2(inner: Incoming, read_timeout: Duration, stream: super::h2::StreamGuard) -> Self {
        let mut body = Self::new(inner, read_timeout, None);
        if !body.inner.is_end_stream() {
            body.stream = Some(stream);
        }
        body
    }

    fn finish(&mut self) {
        if let Some(c) = self.checkin.take() {
            c.pool.checkin(c.key, c.sender);
        }
        self.peer = None;
        self.stream = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection is broken: never reuse it.
                this.checkin = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.timer = None;
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.checkin = None;
                    this.timer = None;
                    return Poll::Ready(Some(Err("upstream read timed out".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

/// The body of a response to the client.
pub enum ProxyBody {
    /// A body made by the gateway (error bodies, status API); `None` once sent.
    Full(Option<Bytes>),
    /// A streamed upstream body.
    Upstream(Box<UpstreamBody>),
    /// A body passing through plugins' body filters and log phase.
    Plugins(Box<crate::plugins::body::PluginBody>),
    /// A body whose end queues the access log line (only when the access log is on).
    Access(Box<crate::telemetry::access_log::AccessBody>),
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(bytes))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream(body) => Pin::new(body.as_mut()).poll_frame(cx),
            Self::Plugins(body) => Pin::new(body.as_mut()).poll_frame(cx),
            Self::Access(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Upstream(body) => body.is_end_stream(),
            Self::Plugins(body) => body.is_end_stream(),
            Self::Access(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Upstream(body) => body.size_hint(),
            Self::Plugins(body) => body.size_hint(),
            Self::Access(body) => body.size_hint(),
        }
    }
}
