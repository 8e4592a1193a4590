//! HTTP/2 upstream connections, used for services whose protocol is `grpc` (h2c, prior
//! knowledge) or `grpcs` (TLS, ALPN `h2`).
//!
//! HTTP/2 multiplexes, so unlike the HTTP/1.1 [`Pool`](super::pool::Pool) a connection is not
//! checked out for one exchange: it is shared. [`H2Pool`] keeps up to [`MAX_CONNS_PER_KEY`] live
//! connections per [`PoolKey`] (peer address and TLS identity) and counts the streams each one
//! carries; a request takes the least busy, and a new connection is opened only when every
//! pooled one already carries [`STREAMS_PER_CONN`] streams (or none is alive). A connection that
//! got GOAWAY or closed stops being handed out, and requests that it returned unsent are sent
//! again on a fresh one (see `Proxy::attempt_h2`). Idle connections are dropped after
//! [`IDLE_TIMEOUT`].
//!
//! Each stream holds a [`StreamGuard`] until its response body ends or is dropped; request and
//! response bodies flow concurrently (hyper drives the request body on its own task), so
//! bidirectional streaming works and nothing is buffered beyond HTTP/2 flow-control windows
//! (1 MiB per stream; the connection window covers every stream of a full connection, so one
//! slow client cannot stall the other streams sharing its connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::UpstreamReqBody;
use super::pool::{ConnectError, PoolKey, WriteTimeout, open};
use super::tls::UpstreamTls;

/// Live connections kept per peer and TLS identity.
pub const MAX_CONNS_PER_KEY: usize = 4;
/// Streams a pooled connection carries before another connection is opened beside it.
pub const STREAMS_PER_CONN: usize = 64;
/// How long a connection without streams is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Flow-control window of one stream: what an upstream may send ahead of a slow client.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Connection window: room for every stream of a full connection, so streams whose clients
/// read slowly cannot use up the connection's window and stall the others on it.
const CONN_WINDOW: u32 = STREAM_WINDOW * STREAMS_PER_CONN as u32;
/// Interval of HTTP/2 PINGs that detect a dead peer, and how long a PING may go unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A sender on an upstream HTTP/2 connection (cheap to clone; clones share the connection).
pub type H2Sender = http2::SendRequest<UpstreamReqBody>;

struct Conn {
    id: u64,
    sender: H2Sender,
    streams: AtomicUsize,
    /// Milliseconds since the pool's epoch when the last stream ended (or the conn was made).
    idle_since: AtomicU64,
}

impl Conn {
    fn live(&self) -> bool {
        !self.sender.is_closed() && self.sender.is_ready()
    }
}

/// Counts a stream on its connection until dropped.
pub struct StreamGuard {
    conn: Arc<Conn>,
    pool: Arc<H2Pool>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.pool.now_ms(), Ordering::Relaxed);
        self.conn.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection to send one request on.
pub struct Checkout {
    /// The sender (a clone of the pooled connection's).
    pub sender: H2Sender,
    /// Hold until the response body is done.
    pub guard: StreamGuard,
    /// Identifies the connection for [`H2Pool::evict`].
    pub conn_id: u64,
}

/// The HTTP/2 connection pool (see the module docs).
pub struct H2Pool {
    conns: Mutex<HashMap<PoolKey, Vec<Arc<Conn>>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

impl H2Pool {
    /// An empty pool.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The least busy live connection for `key`, unless all are at [`STREAMS_PER_CONN`] and
    /// there is room for another (then `None`: the caller connects and calls [`Self::add`]).
    pub fn checkout(self: &Arc<Self>, key: &PoolKey) -> Option<Checkout> {
        let mut map = self.conns.lock().ok()?;
        let list = map.get_mut(key)?;
        list.retain(|c| c.live());
        let best = list
            .iter()
            .min_by_key(|c| c.streams.load(Ordering::Acquire))?;
        if best.streams.load(Ordering::Acquire) >= STREAMS_PER_CONN
            && list.len() < MAX_CONNS_PER_KEY
        {
            return None;
        }
        let best = Arc::clone(best);
        Some(self.guard(best))
    }

    fn guard(self: &Arc<Self>, conn: Arc<Conn>) -> Checkout {
        conn.streams.fetch_add(1, Ordering::AcqRel);
        Checkout {
            sender: conn.sender.clone(),
            conn_id: conn.id,
            guard: StreamGuard {
                conn,
                pool: Arc::clone(self),
            },
        }
    }

    /// Register a new connection for `key` and take a stream on it. When the key already has
    /// [`MAX_CONNS_PER_KEY`] connections (several requests connected at once) the new one is not
    /// pooled: it serves this request and closes when the request is done.
    pub fn add(self: &Arc<Self>, key: &PoolKey, sender: H2Sender) -> Checkout {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            sender,
            streams: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
        });
        if let Ok(mut map) = self.conns.lock() {
            let list = map.entry(key.clone()).or_default();
            list.retain(|c| c.live());
            if list.len() < MAX_CONNS_PER_KEY {
                list.push(Arc::clone(&conn));
            }
        }
        self.guard(conn)
    }

    /// Stop handing out connection `conn_id` of `key` (it failed, or the peer is going away).
    /// Streams already on it finish normally.
    pub fn evict(&self, key: &PoolKey, conn_id: u64) {
        if let Ok(mut map) = self.conns.lock()
            && let Some(list) = map.get_mut(key)
        {
            list.retain(|c| c.id != conn_id);
            if list.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Drop closed connections and those idle past [`IDLE_TIMEOUT`] (run periodically).
    pub fn sweep(&self) {
        let now = self.now_ms();
        let idle_ms = u64::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        if let Ok(mut map) = self.conns.lock() {
            map.retain(|_, list| {
                list.retain(|c| {
                    let idle = c.streams.load(Ordering::Acquire) == 0
                        && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= idle_ms;
                    c.live() && !idle
                });
                !list.is_empty()
            });
        }
    }

    /// Pooled connections (tests, metrics).
    pub fn connection_count(&self) -> usize {
        self.conns
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Open a new HTTP/2 connection (TCP, TLS with ALPN `h2` when `tls` is given, the HTTP/2
/// preface) within `connect_timeout` and run its driver on the runtime. A write that makes no
/// progress for `write_timeout` fails the connection.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<(&UpstreamTls, &str)>,
    connect_timeout: Duration,
    write_timeout: Duration,
) -> Result<H2Sender, ConnectError> {
    let stream = tokio::time::timeout(connect_timeout, open(addr, tls))
        .await
        .map_err(|_| ConnectError::Timeout(addr))??;
    let io = TokioIo::new(WriteTimeout::new(stream, write_timeout));
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Http { addr, source })?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%addr, error = %err, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A client connection to an in-memory HTTP/2 server; aborting the task closes it.
    async fn pair() -> (H2Sender, tokio::task::JoinHandle<()>) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(http::Response::new(
                    http_body_util::Empty::<bytes::Bytes>::new(),
                ))
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server_io), svc)
                .await;
        });
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(client_io))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        (sender, server)
    }

    fn key() -> PoolKey {
        PoolKey {
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: None,
        }
    }

    #[tokio::test]
    async fn shares_a_connection_until_it_is_busy_then_spreads() {
        let pool = H2Pool::new();
        let k = key();
        assert!(pool.checkout(&k).is_none(), "empty pool");
        let (a, _sa) = pair().await;
        let first = pool.add(&k, a);
        let mut held = vec![first];
        // Below STREAMS_PER_CONN every request shares connection A.
        for _ in 1..STREAMS_PER_CONN {
            let c = pool.checkout(&k).expect("shared");
            assert_eq!(c.conn_id, held[0].conn_id);
            held.push(c);
        }
        // A is full: the caller is told to connect, and the new connection takes the next ones.
        assert!(pool.checkout(&k).is_none());
        let (b, _sb) = pair().await;
        let on_b = pool.add(&k, b);
        assert_ne!(on_b.conn_id, held[0].conn_id);
        let next = pool.checkout(&k).expect("B has room");
        assert_eq!(next.conn_id, on_b.conn_id);
        assert_eq!(pool.connection_count(), 2);
        // Streams ending free their slots: A is the least busy again.
        held.truncate(1);
        let c = pool.checkout(&k).expect("A again");
        assert_eq!(c.conn_id, held[0].conn_id);
    }

    #[tokio::test]
    async fn bounded_per_key_and_evicted_or_closed_connections_are_skipped() {
        let pool = H2Pool::new();
        let k = key();
        let mut servers = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..MAX_CONNS_PER_KEY + 1 {
            let (s, task) = pair().await;
            servers.push(task);
            ids.push(pool.add(&k, s).conn_id);
        }
        // The extra connection served its request but is not pooled.
        assert_eq!(pool.connection_count(), MAX_CONNS_PER_KEY);
        pool.evict(&k, ids[0]);
        assert_eq!(pool.connection_count(), MAX_CONNS_PER_KEY - 1);
        // The peer of the second connection goes away: it is no longer handed out.
        servers[1].abort();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = pool.checkout(&k).expect("others live");
            if pool.connection_count() == MAX_CONNS_PER_KEY - 2 {
                assert_ne!(c.conn_id, ids[1]);
                break;
            }
            assert!(Instant::now() < deadline, "closed connection still pooled");
            drop(c);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.sweep();
        assert_eq!(pool.connection_count(), MAX_CONNS_PER_KEY - 2);
    }
}
