//! The opentelemetry plugin's exporter: bounded in-memory queues, batching, and OTLP/HTTP
//! (protobuf) POSTs with retries, all off the request path.
//!
//! The request path only pushes a compact record into an unbounded channel after reserving its
//! weight (spans or log records) against the queue's `max_entries`: no lock, no await, no
//! encoding; when the queue is full the record is dropped and counted in
//! [`crate::telemetry::DROPS`]. The sending side runs on one background thread shared by every
//! exporter of the process (a single-threaded tokio runtime, `gwctl-otlp`), so a slow or dead
//! collector never takes time from the proxy workers.
//!
//! Batching follows Kong's queue: once a record arrives, the exporter waits up to
//! `max_coalescing_delay` seconds (or until `max_batch_size` entries are waiting), turns the
//! records into protobuf messages and POSTs them in batches of at most `max_batch_size` entries.
//! A failed batch is retried with exponential backoff (`initial_retry_delay` doubling up to
//! `max_retry_delay`) for `max_retry_time` seconds, then dropped (and counted). Entries count
//! against `max_entries` until their batch is sent or given up.
//!
//! Differences from Kong: when the queue is full the newest entries are dropped (Kong drops the
//! oldest spans); HTTP 4xx answers other than 408 and 429 are not retried (OTLP's rules; Kong
//! retries any non-200); `max_bytes` is accepted but not enforced (Kong only applies it to
//! string entries); `concurrency_limit: -1` sends batches without waiting for the previous one
//! (Kong then sends every entry on its own).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// Queue settings (Kong's `queue` record, after the legacy names were applied).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueParams {
    /// Entries per batch.
    pub max_batch_size: usize,
    /// How long a batch may wait for more entries.
    pub max_coalescing_delay: Duration,
    /// Entries that may wait in the queue.
    pub max_entries: usize,
    /// How long a failing batch is retried.
    pub max_retry_time: Duration,
    /// First retry delay (doubled on each retry).
    pub initial_retry_delay: Duration,
    /// Retry delay cap.
    pub max_retry_delay: Duration,
    /// Send batches concurrently (`concurrency_limit: -1`).
    pub concurrent: bool,
}

/// Where and how one queue sends.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The OTLP/HTTP endpoint (`.../v1/traces` or `.../v1/logs`).
    pub endpoint: String,
    /// Headers sent with every export (plus `Content-Type: application/x-protobuf`).
    pub headers: HeaderMap,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to send the request.
    pub send_timeout: Duration,
    /// Time between reads of the response.
    pub read_timeout: Duration,
}

/// What a queue carries: a record from one request that becomes `weight()` protobuf entries
/// (spans, log records), encoded on the exporter's thread.
pub trait Record: Send + 'static {
    /// How many entries the record becomes (the unit of `max_entries` and `max_batch_size`).
    fn weight(&self) -> usize;
    /// Append the record's entries to `out`, each as one encoded repeated field of the
    /// enclosing message (`ScopeSpans.spans`, `ScopeLogs.log_records`).
    fn encode_into(self, out: &mut Encoded);
}

/// Entries encoded and waiting to be sent: one buffer, and where each entry ends.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The entries, back to back (the first `taken` of them already sent).
    pub buf: Vec<u8>,
    /// The end offset of each entry in `buf`.
    pub ends: Vec<usize>,
    /// Scratch space for an entry being encoded (nested messages need their length first).
    pub scratch: Vec<u8>,
    /// Scratch space for formatted values (addresses, numbers).
    pub text: String,
    /// Entries at the front of `buf` already handed out by [`Encoded::take`].
    taken: usize,
}

impl Encoded {
    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.ends.len() - self.taken
    }

    /// Whether no entry waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mark the end of an entry just written to `buf`.
    pub fn end_entry(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// Hand the next `n` entries' bytes to `f` and forget them.
    fn take<T>(&mut self, n: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        let n = n.min(self.len());
        let from = match self.taken {
            0 => 0,
            t => self.ends[t - 1],
        };
        let to = match n {
            0 => from,
            n => self.ends[self.taken + n - 1],
        };
        let out = f(&self.buf[from..to]);
        self.taken += n;
        if self.taken == self.ends.len() {
            self.buf.clear();
            self.ends.clear();
            self.taken = 0;
        }
        out
    }

    /// Drop the bytes of the entries already taken.
    fn compact(&mut self) {
        if self.taken == 0 {
            return;
        }
        let cut = self.ends[self.taken - 1];
        self.buf.drain(..cut);
        self.ends.drain(..self.taken);
        for e in &mut self.ends {
            *e -= cut;
        }
        self.taken = 0;
    }
}

/// Wraps a batch of encoded entries into an export request body.
pub type BodyFn = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Which drop counter a queue uses.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    /// Spans.
    Spans,
    /// Log records.
    Logs,
}

impl Signal {
    fn drops(self) -> &'static AtomicU64 {
        match self {
            Self::Spans => &crate::telemetry::DROPS.spans,
            Self::Logs => &crate::telemetry::DROPS.logs,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Logs => "logs",
        }
    }
}

/// Counters shared by the producers and the exporter task.
struct Shared {
    /// Entries queued and not yet sent or given up.
    queued: AtomicUsize,
    /// Entries queued and not yet taken into a batch (in the channel or encoded).
    unbatched: AtomicUsize,
    /// Woken when `unbatched` reaches a batch.
    batch_ready: Notify,
    max_entries: usize,
    max_batch: usize,
    signal: Signal,
}

/// A bounded queue feeding one background exporter task. Dropping it lets the task send what
/// is left and stop.
pub struct Queue<R: Record> {
    tx: mpsc::UnboundedSender<R>,
    flush_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

impl<R: Record> std::fmt::Debug for Queue<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("signal", &self.shared.signal)
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<R: Record> Queue<R> {
    /// Start a queue and its exporter task on the background runtime.
    pub fn start(
        sink: SinkConfig,
        params: QueueParams,
        signal: Signal,
        body: BodyFn,
    ) -> Result<Self, String> {
        let handle = runtime()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(sink.connect_timeout)
            .read_timeout(sink.read_timeout)
            .timeout(sink.connect_timeout + sink.send_timeout + sink.read_timeout)
            .build()
            .map_err(|e| format!("opentelemetry: building the HTTP client: {e}"))?;
        let mut headers = sink.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            unbatched: AtomicUsize::new(0),
            batch_ready: Notify::new(),
            max_entries: params.max_entries.max(1),
            max_batch: params.max_batch_size.max(1),
            signal,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let task = Task {
            rx,
            flush_rx,
            shared: Arc::clone(&shared),
            sender: Arc::new(Sender {
                client,
                endpoint: sink.endpoint,
                headers,
                params,
                shared: Arc::clone(&shared),
            }),
            body,
            out: Encoded::default(),
            closed: false,
        };
        handle.spawn(task.run());
        Ok(Self {
            tx,
            flush_tx,
            shared,
        })
    }

    /// Queue a record without waiting; `false` when it was dropped (queue full or stopped).
    pub fn push(&self, record: R) -> bool {
        let w = record.weight();
        if w == 0 {
            return true;
        }
        let s = &*self.shared;
        let before = s.queued.fetch_add(w, Ordering::AcqRel);
        if before + w > s.max_entries {
            s.queued.fetch_sub(w, Ordering::AcqRel);
            s.signal.drops().fetch_add(w as u64, Ordering::Relaxed);
            return false;
        }
        // Counted before the send, so the exporter never sees a record it was not told about.
        let unbatched = s.unbatched.fetch_add(w, Ordering::AcqRel);
        if self.tx.send(record).is_err() {
            s.queued.fetch_sub(w, Ordering::AcqRel);
            s.unbatched.fetch_sub(w, Ordering::AcqRel);
            s.signal.drops().fetch_add(w as u64, Ordering::Relaxed);
            return false;
        }
        if unbatched < s.max_batch && unbatched + w >= s.max_batch {
            s.batch_ready.notify_one();
        }
        true
    }

    /// Ask the exporter to send everything queued now (one attempt per batch, no retry
    /// delays); resolves when it did, or when the exporter is gone.
    pub fn flush(&self) -> oneshot::Receiver<()> {
        let (ack, done) = oneshot::channel();
        let _ = self.flush_tx.send(ack);
        done
    }

    /// Entries queued and not yet sent or given up.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

/// The background runtime every exporter task runs on (started on first use).
fn runtime() -> Result<tokio::runtime::Handle, String> {
    static RT: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("gwctl-otlp".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("opentelemetry: exporter runtime: {e}")));
                    }
                }
            })
            .map_err(|e| format!("opentelemetry: exporter thread: {e}"))?;
        rx.recv()
            .map_err(|_| "opentelemetry: exporter thread did not start".to_owned())?
    })
    .clone()
}

/// Sends batches (shared with concurrently sent batches).
struct Sender {
    client: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
    params: QueueParams,
    shared: Arc<Shared>,
}

/// Why one POST failed.
struct SendError {
    retryable: bool,
    message: String,
}

impl Sender {
    async fn post(&self, body: bytes::Bytes) -> Result<(), SendError> {
        let resp = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError {
                retryable: true,
                message: format!("failed to send request: {e}"),
            })?;
        let status = resp.status();
        if status.is_success() {
            // Read the (small) answer so the connection can be reused.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(SendError {
            retryable: status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT,
            message: format!("response error: {}, body: {text}", status.as_u16()),
        })
    }

    /// Send one batch of `count` entries, retrying per the queue settings (once only when
    /// `flushing`, or once a flush is requested while waiting to retry).
    async fn send(
        &self,
        body: bytes::Bytes,
        count: usize,
        mut flushing: bool,
        flush_rx: Option<&mut mpsc::UnboundedReceiver<oneshot::Sender<()>>>,
    ) -> Vec<oneshot::Sender<()>> {
        let mut acks = Vec::new();
        let mut flush_rx = flush_rx;
        let started = Instant::now();
        let mut retry: u32 = 0;
        let outcome = loop {
            let err = match self.post(body.clone()).await {
                Ok(()) => break Ok(()),
                Err(e) => e,
            };
            if !err.retryable || flushing || started.elapsed() > self.params.max_retry_time {
                break Err(err.message);
            }
            let delay = self
                .params
                .initial_retry_delay
                .saturating_mul(2u32.saturating_pow(retry))
                .min(self.params.max_retry_delay);
            tracing::debug!(
                endpoint = %self.endpoint, error = %err.message, retry, ?delay,
                "opentelemetry: export failed, retrying"
            );
            retry += 1;
            match flush_rx.as_deref_mut() {
                Some(rx) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        ack = rx.recv() => {
                            if let Some(ack) = ack {
                                acks.push(ack);
                            }
                            flushing = true;
                        }
                    }
                }
                None => tokio::time::sleep(delay).await,
            }
        };
        self.shared.queued.fetch_sub(count, Ordering::AcqRel);
        if let Err(message) = outcome {
            self.shared
                .signal
                .drops()
                .fetch_add(count as u64, Ordering::Relaxed);
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %message,
                lost = count,
                signal = self.shared.signal.name(),
                "opentelemetry: could not export a batch; entries lost"
            );
        }
        acks
    }
}

/// The exporter task of one queue.
struct Task<R: Record> {
    rx: mpsc::UnboundedReceiver<R>,
    flush_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    shared: Arc<Shared>,
    sender: Arc<Sender>,
    body: BodyFn,
    /// Entries taken off the channel, not yet sent.
    out: Encoded,
    closed: bool,
}

impl<R: Record> Task<R> {
    /// Move everything waiting in the channel into `out`.
    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(r) => r.encode_into(&mut self.out),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    async fn run(mut self) {
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            // Idle: wait for a record (or a flush request, or the queue's end).
            if self.out.is_empty() && !self.closed {
                tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => r.encode_into(&mut self.out),
                        None => self.closed = true,
                    },
                    ack = self.flush_rx.recv() => match ack {
                        Some(ack) => acks.push(ack),
                        // Unreachable while the queue holds the sender; stop polling it.
                        None => self.closed = true,
                    },
                }
            }
            // Coalesce: until the batch is full, the delay passed, a flush, or the end.
            let deadline = Instant::now() + self.sender.params.max_coalescing_delay;
            let mut flushing = !acks.is_empty();
            loop {
                self.drain();
                if flushing || self.closed || self.out.len() >= self.shared.max_batch {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    () = self.shared.batch_ready.notified() => {}
                    ack = self.flush_rx.recv() => {
                        if let Some(ack) = ack {
                            acks.push(ack);
                        }
                        flushing = true;
                    }
                }
            }
            let due = flushing || self.closed || Instant::now() >= deadline;
            // Send full batches, and the rest when it is due.
            while self.out.len() >= self.shared.max_batch || (due && !self.out.is_empty()) {
                let n = self.out.len().min(self.shared.max_batch);
                let body = bytes::Bytes::from(self.out.take(n, |entries| (self.body)(entries)));
                self.shared.unbatched.fetch_sub(n, Ordering::AcqRel);
                if self.sender.params.concurrent && !flushing {
                    let sender = Arc::clone(&self.sender);
                    tokio::spawn(async move {
                        sender.send(body, n, false, None).await;
                    });
                } else {
                    let more = self
                        .sender
                        .send(body, n, flushing, Some(&mut self.flush_rx))
                        .await;
                    if !more.is_empty() {
                        flushing = true;
                        acks.extend(more);
                    }
                }
                if flushing {
                    self.drain();
                }
            }
            self.out.compact();
            if flushing && self.out.is_empty() {
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
            if self.closed && self.out.is_empty() {
                break;
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Flush every queue in `queues` and wait for them until `deadline`; `true` when all finished.
pub async fn flush_all(receivers: Vec<oneshot::Receiver<()>>, deadline: Instant) -> bool {
    let all = async {
        for r in receivers {
            let _ = r.await;
        }
    };
    tokio::time::timeout_at(deadline, all).await.is_ok()
}

/// Exporters by key, held weakly: an exporter lives as long as some handler uses it.
pub struct Registry<T> {
    entries: Mutex<Vec<(String, std::sync::Weak<T>)>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl<T> Registry<T> {
    /// The live exporter for `key`, or a new one from `make`.
    pub fn get_or_try_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| "opentelemetry: exporter registry poisoned".to_owned())?;
        entries.retain(|(_, w)| w.strong_count() > 0);
        if let Some(live) = entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(live);
        }
        let new = Arc::new(make()?);
        entries.push((key.to_owned(), Arc::downgrade(&new)));
        Ok(new)
    }

    /// Every live exporter.
    pub fn live(&self) -> Vec<Arc<T>> {
        self.entries
            .lock()
            .map(|e| e.iter().filter_map(|(_, w)| w.upgrade()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// `n` entries of one byte each.
    struct N(usize);
    impl Record for N {
        fn weight(&self) -> usize {
            self.0
        }
        fn encode_into(self, out: &mut Encoded) {
            for _ in 0..self.0 {
                out.buf.push(1);
                out.end_entry();
            }
        }
    }

    fn params(batch: usize, delay_ms: u64, entries: usize) -> QueueParams {
        QueueParams {
            max_batch_size: batch,
            max_coalescing_delay: Duration::from_millis(delay_ms),
            max_entries: entries,
            max_retry_time: Duration::from_secs(0),
            initial_retry_delay: Duration::from_millis(1),
            max_retry_delay: Duration::from_millis(1),
            concurrent: false,
        }
    }

    /// A tiny HTTP server counting the entries (body length) of each POST.
    async fn server() -> (String, Arc<Mutex<VecDeque<usize>>>) {
        let seen = Arc::new(Mutex::new(VecDeque::new()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (stream, _) = l.accept().await.unwrap();
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let s = Arc::clone(&s);
                            async move {
                                use http_body_util::BodyExt;
                                let b = req.into_body().collect().await.unwrap().to_bytes();
                                s.lock().unwrap().push_back(b.len());
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::new()),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/v1/x"), seen)
    }

    fn sink(endpoint: &str) -> SinkConfig {
        SinkConfig {
            endpoint: endpoint.to_owned(),
            headers: HeaderMap::new(),
            connect_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
        }
    }

    fn body() -> BodyFn {
        Arc::new(|v: &[u8]| v.to_vec())
    }

    #[test]
    fn encoded_entries_are_taken_in_order_across_compactions() {
        let mut e = Encoded::default();
        let push = |e: &mut Encoded, b: &[u8]| {
            e.buf.extend_from_slice(b);
            e.end_entry();
        };
        push(&mut e, b"a");
        push(&mut e, b"bb");
        push(&mut e, b"ccc");
        assert_eq!(e.take(1, <[u8]>::to_vec), b"a");
        assert_eq!(e.len(), 2);
        e.compact();
        push(&mut e, b"d");
        assert_eq!(e.take(2, <[u8]>::to_vec), b"bbccc");
        assert_eq!(e.take(5, <[u8]>::to_vec), b"d");
        assert!(e.is_empty() && e.buf.is_empty());
        assert_eq!(e.take(1, <[u8]>::to_vec), b"");
    }

    #[tokio::test]
    async fn batches_split_at_max_batch_and_flush_sends_the_rest() {
        let (url, seen) = server().await;
        let q: Queue<N> =
            Queue::start(sink(&url), params(4, 60_000, 100), Signal::Spans, body()).unwrap();
        assert!(q.push(N(3)));
        // Let the exporter take the first record before the second arrives: the batch counts
        // what it already holds.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(q.push(N(3)));
        // 6 >= 4: one batch of 4 goes out without waiting for the (long) delay.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no batch sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.lock().unwrap().pop_front(), Some(4));
        assert_eq!(q.queued(), 2);
        tokio::time::timeout(Duration::from_secs(5), q.flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.lock().unwrap().pop_front(), Some(2));
        assert_eq!(q.queued(), 0);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        // Nothing listens: every send fails at once, and nothing is retried.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let q: Queue<N> = Queue::start(
            sink(&format!("http://{addr}/v1/x")),
            params(100, 60_000, 5),
            Signal::Logs,
            body(),
        )
        .unwrap();
        let before = crate::telemetry::DROPS.logs.load(Ordering::Relaxed);
        assert!(q.push(N(3)));
        assert!(!q.push(N(3)), "over max_entries");
        assert!(q.push(N(2)));
        let after = crate::telemetry::DROPS.logs.load(Ordering::Relaxed);
        assert!(after - before >= 3, "dropped entries counted");
        // The flush tries once, fails, and gives the 5 entries up.
        tokio::time::timeout(Duration::from_secs(5), q.flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.queued(), 0);
        assert!(crate::telemetry::DROPS.logs.load(Ordering::Relaxed) - before >= 8);
    }
}
