//! Upstream connections: connect (TCP, optional TLS) with timeouts, and a keep-alive pool of
//! HTTP/1.1 connections keyed by address and TLS identity.
//!
//! A connection goes back to the pool only when its response body has been read to the end (see
//! [`super::body::UpstreamBody`]); one whose body was abandoned is closed. Idle connections are
//! dropped after [`IDLE_TIMEOUT`], and the pool keeps at most [`MAX_IDLE_PER_KEY`] per key.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

use super::body::UpstreamReqBody;
use super::tls::UpstreamTls;

/// How long an idle upstream connection is kept (Kong's `upstream_keepalive_idle_timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per key (Kong's `upstream_keepalive_pool_size` is 512 per worker).
pub const MAX_IDLE_PER_KEY: usize = 512;

/// A sender on an upstream HTTP/1.1 connection.
pub type Sender = http1::SendRequest<UpstreamReqBody>;

/// Identifies interchangeable connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Peer address.
    pub addr: SocketAddr,
    /// TLS identity: SNI and the address of the client config (configs change on reload).
    pub tls: Option<(Arc<str>, usize)>,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect (or TLS handshake) took longer than `connect_timeout`.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// TCP connect failed.
    #[error("connect to {addr} failed: {source}")]
    Io {
        /// Peer.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// TLS handshake failed (bad certificate, protocol mismatch...).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// Peer.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// HTTP handshake failed.
    #[error("HTTP handshake with {addr} failed: {source}")]
    Http {
        /// Peer.
        addr: SocketAddr,
        /// Cause.
        source: hyper::Error,
    },
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The keep-alive pool.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Take a live idle connection for `key`, if any, waiting for hyper to finish the previous
    /// exchange's bookkeeping (it usually already has).
    pub async fn checkout(&self, key: &PoolKey) -> Option<Sender> {
        loop {
            let mut sender = {
                let mut idle = self.idle.lock().ok()?;
                let list = idle.get_mut(key)?;
                loop {
                    let conn = list.pop()?;
                    if conn.since.elapsed() < IDLE_TIMEOUT && !conn.sender.is_closed() {
                        break conn.sender;
                    }
                }
            };
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Return a connection whose exchange completed (its response body was read to the end).
    pub fn checkin(&self, key: PoolKey, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        self.insert(key, sender);
    }

    fn insert(&self, key: PoolKey, sender: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < MAX_IDLE_PER_KEY {
                list.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        }
    }

    /// Drop idle connections past their timeout (run periodically).
    pub fn sweep(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|_, list| {
                list.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && !c.sender.is_closed());
                !list.is_empty()
            });
        }
    }

    /// Number of idle connections (tests, metrics).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Open a new connection and run its HTTP/1.1 driver on the runtime.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<(&UpstreamTls, &str)>,
    connect_timeout: Duration,
    write_timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(connect_timeout, open(addr, tls))
        .await
        .map_err(|_| ConnectError::Timeout(addr))??;
    let io = TokioIo::new(WriteTimeout::new(stream, write_timeout));
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Http { addr, source })?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// TCP connect, then the TLS handshake when `tls` is given (ALPN from the client config).
pub(super) async fn open(
    addr: SocketAddr,
    tls: Option<(&UpstreamTls, &str)>,
) -> Result<Stream, ConnectError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Io { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let Some((tls, sni)) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = ServerName::try_from(sni.to_owned())
        .or_else(|_| ServerName::try_from(addr.ip().to_string()))
        .map_err(|e| ConnectError::Tls {
            addr,
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|source| ConnectError::Tls { addr, source })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// A plain or TLS upstream stream.
pub enum Stream {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Fails a write that makes no progress for `timeout` (nginx's `proxy_send_timeout`: the time
/// between two successive writes). Costs nothing while writes complete immediately.
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        self.timer = None;
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "upstream write timed out",
        ))
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_timer(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_timer(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_timer(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
