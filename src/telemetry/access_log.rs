//! The JSON access log (`gwctl serve --access-log PATH|stdout|off`): one JSON object per line
//! for each proxied request, written once its response finished (the body ended or the client
//! went away).
//!
//! The request path only gathers a compact [`Record`] (a few copies and reference counts, no
//! formatting) and hands it to a bounded queue with `try_send`; one background thread encodes
//! and writes. The request never waits for I/O: when the queue is full (a slow disk, a pipe
//! nobody reads) the line is dropped and counted in [`super::DROPS`]`.access_log`. On shutdown
//! [`AccessLog::close`] writes what is queued and flushes, within a bound.
//!
//! What the proxy learns while handling the request (route, service, client address, upstream
//! peer, latencies) is noted in a task-local [`Note`] that exists only when the access log is on;
//! [`note`] is a no-op otherwise.
//!
//! Fields: `time` (RFC 3339, when the request was received), `request_id`, `client_ip`,
//! `method`, `path` (the raw path as received, without the query string: it may carry
//! credentials such as key-auth's `apikey`), `protocol`, `status`, `request_bytes` (the
//! request's `Content-Length`, `null` when it had none and a body), `response_bytes` (body bytes
//! sent), `latency_ms`, `upstream_latency_ms`, `proxy_latency_ms` (`null` when no upstream
//! answered), `route_id`, `route_name`, `service_id`, `service_name`, `upstream_addr`,
//! `user_agent`, `completed` (false when the client went away before the end) and `trace_id`
//! (only when a tracing plugin set one).

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::{Body, Frame, SizeHint};

use super::DROPS;
use super::format::hex;
use super::scope;
use crate::model::Route;
use crate::proxy::body::{BoxError, ProxyBody};
use crate::snapshot::ServiceRuntime;

/// Lines queued between the proxy and the writer thread by default (about 0.1 s of traffic at
/// 30k req/s); past it lines are dropped.
pub const DEFAULT_QUEUE: usize = 4096;
/// How long [`AccessLog::open`] waits for the file to open (a FIFO blocks until a reader comes).
const OPEN_WAIT: Duration = Duration::from_secs(1);
/// Write to the destination once this much is buffered, or when the queue is empty.
const WRITE_CHUNK: usize = 64 * 1024;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessLogTarget {
    /// No access log (the default).
    #[default]
    Off,
    /// Standard output, between the process's log lines.
    Stdout,
    /// A file, appended to (created when missing).
    File(PathBuf),
}

/// A `--access-log` value that is not `off`, `stdout` or a path.
#[derive(Debug, thiserror::Error)]
#[error("access log: empty value (expected a file path, `stdout` or `off`)")]
pub struct BadTarget;

impl FromStr for AccessLogTarget {
    type Err = BadTarget;

    fn from_str(s: &str) -> Result<Self, BadTarget> {
        match s.trim() {
            "" => Err(BadTarget),
            "off" => Ok(Self::Off),
            "stdout" | "-" => Ok(Self::Stdout),
            _ => Ok(Self::File(PathBuf::from(s))),
        }
    }
}

/// Access log settings of `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The destination.
    pub target: AccessLogTarget,
    /// Queue capacity in lines.
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            target: AccessLogTarget::Off,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// Why the access log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The file could not be opened for appending.
    #[error("opening the access log {path}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("starting the access log writer: {0}")]
    Thread(std::io::Error),
}

enum Msg {
    Line(Box<Record>),
    /// Write what is queued, flush and stop.
    Stop,
}

/// The access log: the queue's sending side, shared by the proxy workers.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    done: Mutex<Option<Receiver<()>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("written", &self.written.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the access log reports when closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Lines written since the log was opened.
    pub written: u64,
    /// Whether everything queued was written and flushed within the bound.
    pub flushed: bool,
}

impl AccessLog {
    /// Open `config`'s destination and start the writer thread; `None` when it is off. A file is
    /// opened on the writer thread: an error within the first second (a missing directory, no
    /// permission) is returned; a file that takes longer (a FIFO waiting for a reader) is logged
    /// and the gateway starts anyway, queueing (then dropping) lines meanwhile.
    pub fn open(config: &AccessLogConfig) -> Result<Option<Arc<Self>>, AccessLogError> {
        let path = match &config.target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => None,
            AccessLogTarget::File(p) => Some(p.clone()),
        };
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let (opened_tx, opened_rx) = mpsc::channel::<Result<(), std::io::Error>>();
        let (done_tx, done_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            rx,
            stop: Arc::clone(&stop),
            written: Arc::clone(&written),
            buf: Vec::with_capacity(WRITE_CHUNK * 2),
            buffered: 0,
            failed: false,
        };
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("gwctl-access-log".into())
            .spawn(move || {
                let out: Box<dyn Write> = match thread_path {
                    None => Box::new(std::io::stdout()),
                    Some(p) => match OpenOptions::new().append(true).create(true).open(&p) {
                        Ok(f) => Box::new(f),
                        Err(e) => {
                            // Past the wait nobody reports it to the caller: log it here.
                            if let Err(mpsc::SendError(Err(e))) = opened_tx.send(Err(e)) {
                                tracing::error!(path = %p.display(), error = %e, "cannot open the access log; its lines are dropped");
                            }
                            return;
                        }
                    },
                };
                let _ = opened_tx.send(Ok(()));
                writer.run(out);
                let _ = done_tx.send(());
            })
            .map_err(AccessLogError::Thread)?;
        match opened_rx.recv_timeout(OPEN_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(AccessLogError::Open {
                    path: path.unwrap_or_default(),
                    source,
                });
            }
            Err(_) => tracing::warn!(
                path = %path.as_deref().unwrap_or_else(|| std::path::Path::new("stdout")).display(),
                "the access log is not open yet (a FIFO without a reader?); lines are queued, then dropped, until it opens"
            ),
        }
        Ok(Some(Arc::new(Self {
            tx,
            stop,
            written,
            done: Mutex::new(Some(done_rx)),
        })))
    }

    /// Queue one line; never blocks (a full queue drops it, counted).
    fn push(&self, record: Box<Record>) {
        match self.tx.try_send(Msg::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPS.access_log.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Write what is queued, flush and stop the writer, waiting at most `within` (a writer
    /// blocked on its destination is abandoned). Blocks the calling thread. Lines pushed later
    /// are dropped. Closing twice reports the first outcome's counts.
    pub fn close(&self, within: Duration) -> Closed {
        self.stop.store(true, Ordering::Release);
        // Wakes a writer waiting on an empty queue; a full queue keeps it busy anyway, and it
        // checks the flag after every line.
        let _ = self.tx.try_send(Msg::Stop);
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        let flushed = match done {
            Some(rx) => match rx.recv_timeout(within) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => false,
                // The writer thread ended without reporting (its destination never opened).
                Err(RecvTimeoutError::Disconnected) => false,
            },
            None => false,
        };
        Closed {
            written: self.written.load(Ordering::Relaxed),
            flushed,
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Wrap a response so that its line is queued once the body finished. `head` and `note`
    /// were taken from the request and while proxying it.
    pub(crate) fn wrap(
        self: &Arc<Self>,
        resp: Response<ProxyBody>,
        head: RequestHead,
        note: Note,
        request_id: String,
        start: Instant,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        let record = Box::new(Record {
            time: head.time,
            request_id,
            client_ip: note.client_ip.unwrap_or(head.peer),
            method: head.method,
            uri: head.uri,
            version: head.version,
            user_agent: head.user_agent,
            request_bytes: head.request_bytes,
            status: crate::proxy::respond::logged_status(&parts).as_u16(),
            response_bytes: 0,
            completed: false,
            total: Duration::ZERO,
            upstream: note.upstream_latency,
            proxy: note.proxy_latency,
            route: note.route,
            service: note.service,
            upstream_addr: note.upstream_addr,
            trace_id: note.trace_id,
        });
        let body = AccessBody {
            inner: body,
            pending: Some((record, Arc::clone(self))),
            bytes: 0,
            start,
        };
        Response::from_parts(parts, ProxyBody::Access(Box::new(body)))
    }
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<Msg>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    buffered: u64,
    /// A write failed (logged once until one succeeds again).
    failed: bool,
}

impl Writer {
    fn run(mut self, mut out: Box<dyn Write>) {
        loop {
            let Ok(msg) = self.rx.recv() else {
                break;
            };
            let mut stopping = matches!(msg, Msg::Stop);
            if let Msg::Line(r) = msg {
                self.encode(&r);
            }
            // Take whatever else is queued before writing (one write per burst).
            loop {
                if !stopping && self.stop.load(Ordering::Acquire) {
                    stopping = true;
                }
                if self.buf.len() >= WRITE_CHUNK {
                    self.write(&mut out);
                }
                match self.rx.try_recv() {
                    Ok(Msg::Line(r)) => self.encode(&r),
                    Ok(Msg::Stop) => stopping = true,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.write(&mut out);
            if stopping || self.stop.load(Ordering::Acquire) {
                break;
            }
        }
        self.write(&mut out);
    }

    fn encode(&mut self, r: &Record) {
        if serde_json::to_writer(&mut self.buf, &r.line()).is_ok() {
            self.buf.push(b'\n');
            self.buffered += 1;
        } else {
            DROPS.access_log.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(&mut self, out: &mut Box<dyn Write>) {
        if self.buf.is_empty() {
            return;
        }
        match out.write_all(&self.buf).and_then(|()| out.flush()) {
            Ok(()) => {
                self.written.fetch_add(self.buffered, Ordering::Relaxed);
                self.failed = false;
            }
            Err(e) => {
                DROPS.access_log.fetch_add(self.buffered, Ordering::Relaxed);
                if !self.failed {
                    tracing::warn!(error = %e, "writing the access log failed; lines are dropped");
                    self.failed = true;
                }
            }
        }
        self.buf.clear();
        self.buffered = 0;
    }
}

/// What is taken from the request before it is proxied (only when the access log is on).
pub(crate) struct RequestHead {
    time: SystemTime,
    peer: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
    user_agent: Option<HeaderValue>,
    request_bytes: Option<u64>,
}

impl RequestHead {
    /// The parts of `req` the line needs (reference-counted copies).
    pub(crate) fn new<B: Body>(req: &Request<B>, peer: IpAddr) -> Self {
        let headers = req.headers();
        let request_bytes = match headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
        {
            Some(n) => Some(n),
            None if req.body().is_end_stream() => Some(0),
            None => None,
        };
        Self {
            time: SystemTime::now(),
            peer,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            request_bytes,
        }
    }
}

/// What the proxy noted about a request while handling it.
#[derive(Default)]
pub(crate) struct Note {
    route: Option<Arc<Route>>,
    service: Option<Arc<ServiceRuntime>>,
    client_ip: Option<IpAddr>,
    upstream_addr: Option<SocketAddr>,
    upstream_latency: Option<Duration>,
    proxy_latency: Option<Duration>,
    trace_id: Option<[u8; 16]>,
}

impl Note {
    /// The matched route.
    pub(crate) fn route(&mut self, route: &Arc<Route>) {
        self.route = Some(Arc::clone(route));
    }

    /// The route's service and the client's address (the peer or a trusted `X-Real-IP`).
    pub(crate) fn service(&mut self, service: &Arc<ServiceRuntime>, client_ip: IpAddr) {
        self.service = Some(Arc::clone(service));
        self.client_ip = Some(client_ip);
    }

    /// The peer of the (last) upstream attempt.
    pub(crate) fn upstream_addr(&mut self, addr: SocketAddr) {
        self.upstream_addr = Some(addr);
    }

    /// How long the upstream took to answer, and the gateway before sending.
    pub(crate) fn latencies(&mut self, upstream: Duration, proxy: Duration) {
        self.upstream_latency = Some(upstream);
        self.proxy_latency = Some(proxy);
    }
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// Run `fut` (the request, inside its [`scope::RequestScope`]) with a [`Note`] to fill; return
/// its output and the note, with the trace id a tracing plugin set.
pub(crate) async fn noted<F: Future>(fut: F) -> (F::Output, Note) {
    NOTE.scope(RefCell::new(Note::default()), async move {
        let out = fut.await;
        let mut note = NOTE
            .try_with(|n| std::mem::take(&mut *n.borrow_mut()))
            .unwrap_or_default();
        note.trace_id = scope::with_current(|s| s.trace().map(|t| t.trace_id)).flatten();
        (out, note)
    })
    .await
}

/// Note something about the current request; nothing happens when the access log is off.
#[inline]
pub(crate) fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            f(&mut n);
        }
    });
}

/// One request, as queued (encoded on the writer thread).
pub(crate) struct Record {
    time: SystemTime,
    request_id: String,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
    user_agent: Option<HeaderValue>,
    request_bytes: Option<u64>,
    status: u16,
    response_bytes: u64,
    completed: bool,
    total: Duration,
    upstream: Option<Duration>,
    proxy: Option<Duration>,
    route: Option<Arc<Route>>,
    service: Option<Arc<ServiceRuntime>>,
    upstream_addr: Option<SocketAddr>,
    trace_id: Option<[u8; 16]>,
}

/// The JSON line of a [`Record`].
#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client_ip: String,
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    status: u16,
    request_bytes: Option<u64>,
    response_bytes: u64,
    latency_ms: f64,
    upstream_latency_ms: Option<f64>,
    proxy_latency_ms: Option<f64>,
    route_id: Option<String>,
    route_name: Option<&'a str>,
    service_id: Option<String>,
    service_name: Option<&'a str>,
    upstream_addr: Option<String>,
    user_agent: Option<&'a str>,
    completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

impl Record {
    fn line(&self) -> Line<'_> {
        let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
        Line {
            time: rfc3339_millis(self.time),
            request_id: &self.request_id,
            client_ip: self.client_ip.to_string(),
            method: self.method.as_str(),
            path: self.uri.path(),
            protocol: match self.version {
                Version::HTTP_09 => "HTTP/0.9",
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_3 => "HTTP/3",
                _ => "HTTP/1.1",
            },
            status: self.status,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            latency_ms: ms(self.total),
            upstream_latency_ms: self.upstream.map(ms),
            proxy_latency_ms: self.proxy.map(ms),
            route_id: self.route.as_ref().map(|r| r.id.to_string()),
            route_name: self.route.as_ref().and_then(|r| r.name.as_deref()),
            service_id: self.service.as_ref().map(|s| s.service.id.to_string()),
            service_name: self
                .service
                .as_ref()
                .and_then(|s| s.service.name.as_deref()),
            upstream_addr: self.upstream_addr.map(|a| a.to_string()),
            user_agent: self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            completed: self.completed,
            trace_id: self.trace_id.map(|t| hex(&t)),
        }
    }
}

/// A response body that queues the request's line once it ended or was dropped.
pub struct AccessBody {
    inner: ProxyBody,
    pending: Option<(Box<Record>, Arc<AccessLog>)>,
    bytes: u64,
    start: Instant,
}

impl AccessBody {
    fn finish(&mut self, completed: bool) {
        if let Some((mut record, log)) = self.pending.take() {
            record.response_bytes = self.bytes;
            record.completed = completed;
            record.total = self.start.elapsed();
            log.push(record);
        }
    }
}

impl Body for AccessBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AccessBody {
    fn drop(&mut self) {
        // The server drops a body it has sent completely without polling it again.
        let completed = self.inner.is_end_stream();
        self.finish(completed);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339_millis(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| {
            rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "off".parse::<AccessLogTarget>().unwrap(),
            AccessLogTarget::Off
        );
        assert_eq!(
            "stdout".parse::<AccessLogTarget>().unwrap(),
            AccessLogTarget::Stdout
        );
        assert_eq!(
            "/var/log/gw.log".parse::<AccessLogTarget>().unwrap(),
            AccessLogTarget::File("/var/log/gw.log".into())
        );
        assert!("".parse::<AccessLogTarget>().is_err());
    }

    #[tokio::test]
    async fn notes_exist_only_inside_noted() {
        note(|_| unreachable!("no note outside a request with the access log on"));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ((), n) = noted(async move { note(|n| n.client_ip = Some(ip)) }).await;
        assert_eq!(n.client_ip, Some(ip));
    }
}
