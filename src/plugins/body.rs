//! Response-body hooks: body filters (compression, JSON rewriting) applied to the streamed body,
//! and the log phase, run once the body ended or was dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::chain::Instance;
use super::ctx::{Ctx, LogInfo};
use crate::proxy::body::{BoxError, ProxyBody};

/// Transforms a response body chunk by chunk. A filter may hold data back (return an empty
/// chunk) and release it at [`BodyFilter::end`].
pub trait BodyFilter: Send {
    /// Transform one chunk.
    fn data(&mut self, chunk: Bytes) -> Result<Bytes, BoxError>;
    /// The body ended: whatever the filter still holds.
    fn end(&mut self) -> Result<Bytes, BoxError>;
}

/// What the log phase needs once the body is done.
pub(crate) struct LogState {
    pub(crate) ctx: Box<Ctx>,
    pub(crate) plugins: Vec<Arc<Instance>>,
    pub(crate) info: LogInfo,
}

impl LogState {
    fn fire(mut self, bytes: u64, completed: bool) {
        self.info.response_bytes = bytes;
        self.info.completed = completed;
        self.info.total_latency = self.ctx.started.elapsed();
        for p in &self.plugins {
            p.handler.log(&self.ctx, &self.info);
        }
    }
}

/// A response body passing through the plugins' body filters, then the log phase.
pub struct PluginBody {
    inner: ProxyBody,
    filters: Vec<Box<dyn BodyFilter>>,
    ended: bool,
    trailers: Option<HeaderMap>,
    log: Option<LogState>,
    bytes: u64,
}

impl PluginBody {
    pub(crate) fn new(
        inner: ProxyBody,
        filters: Vec<Box<dyn BodyFilter>>,
        log: Option<LogState>,
    ) -> Self {
        let mut body = Self {
            inner,
            filters,
            ended: false,
            trailers: None,
            log,
            bytes: 0,
        };
        if body.filters.is_empty() && body.inner.is_end_stream() {
            body.ended = true;
            body.finish(true);
        }
        body
    }

    fn finish(&mut self, completed: bool) {
        if let Some(log) = self.log.take() {
            log.fire(self.bytes, completed);
        }
    }

    fn through(&mut self, mut chunk: Bytes) -> Result<Bytes, BoxError> {
        for f in &mut self.filters {
            if chunk.is_empty() {
                break;
            }
            chunk = f.data(chunk)?;
        }
        Ok(chunk)
    }

    /// Flush every filter, in order: each one's remainder passes through the filters after it.
    fn flush(&mut self) -> Result<Bytes, BoxError> {
        self.ended = true;
        let mut carry = Bytes::new();
        for f in &mut self.filters {
            let mut out = BytesMut::new();
            if !carry.is_empty() {
                out.extend_from_slice(&f.data(carry)?);
            }
            out.extend_from_slice(&f.end()?);
            carry = out.freeze();
        }
        Ok(carry)
    }

    fn data_frame(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.bytes += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl Body for PluginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                if let Some(t) = this.trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                this.finish(true);
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match this.through(data) {
                        Ok(out) if out.is_empty() => {}
                        Ok(out) => return this.data_frame(out),
                        Err(e) => {
                            this.finish(false);
                            return Poll::Ready(Some(Err(e)));
                        }
                    },
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                        match this.flush() {
                            Ok(out) if !out.is_empty() => return this.data_frame(out),
                            Ok(_) => {}
                            Err(e) => {
                                this.finish(false);
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                    }
                },
                Poll::Ready(None) => match this.flush() {
                    Ok(out) if !out.is_empty() => return this.data_frame(out),
                    Ok(_) => {}
                    Err(e) => {
                        this.finish(false);
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none() && self.log.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.filters.is_empty() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for PluginBody {
    fn drop(&mut self) {
        let completed = self.ended;
        self.finish(completed);
    }
}
