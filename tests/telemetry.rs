//! Process telemetry (issue 5 §3) and the services' telemetry setup (issue 5 §4):
//! - gwctl's own log lines inside a request carry its `request_id` (real binary, text and JSON);
//! - the JSON access log: one line per request with the right fields, flushed on SIGTERM, on
//!   stdout too; a destination that blocks (a FIFO nobody reads) never blocks requests and its
//!   lost lines are counted;
//! - `svc-telemetry`: a tiny axum service exporting to the in-process OTLP receiver continues
//!   the caller's `traceparent`, its logs arrive with the span's ids and the request id / user,
//!   console and export levels are separate, and without an endpoint nothing is exported while
//!   the context still propagates.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gwctl::telemetry::access_log::{AccessLogConfig, AccessLogTarget};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::otlp::{OtlpReceiver, attr, attr_str, hex};
use crate::support::{BinGateway, Echo, Gateway, TempDir, client, refused_addr};

/// Two services: an echo behind `/echo` and a refused upstream behind `/dead`.
fn config(echo: &Echo, dead: std::net::SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: echo-svc
    url: {}
    routes:
      - name: echo-route
        paths: ["/echo"]
  - name: dead-svc
    url: http://{dead}
    retries: 0
    routes:
      - name: dead-route
        paths: ["/dead"]
"#,
        echo.url()
    )
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-kong-request-id")
        .expect("X-Kong-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The real binary with `--log-format json`; every stdout line is kept.
struct JsonGateway {
    proxy: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
    _dir: TempDir,
}

impl JsonGateway {
    async fn start(yaml: &str) -> Self {
        let dir = TempDir::new();
        let path = dir.write("kong.yml", yaml);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&path)
            .args([
                "--proxy-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "off",
                "--status-listen",
                "127.0.0.1:0",
                "--workers",
                "1",
            ])
            .env_remove("GWCTL_LOG")
            .env_remove("RUST_LOG")
            .env_remove("GWCTL_ACCESS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gwctl");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(v);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let listening = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("no listening line: {:?}", lines.lock().unwrap()))
            .expect("listening line");
        // CONTRACT: json format has fields proxy, admin, status; lines outside a request have no
        // request id.
        assert_eq!(listening["admin"], "off", "{listening}");
        assert!(listening.get("status").is_some(), "{listening}");
        assert!(listening.get("request_id").is_none(), "{listening}");
        let proxy = listening["proxy"].as_str().unwrap().parse().unwrap();
        Self {
            proxy,
            lines,
            _child: child,
            _dir: dir,
        }
    }

    fn json_lines(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_inside_a_request_carry_its_request_id() {
    let echo = Echo::start("e").await;
    let dead = refused_addr();
    let gw = JsonGateway::start(&config(&echo, dead)).await;
    let resp = client()
        .get(format!("http://{}/dead/x", gw.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let id = request_id(&resp);
    assert_eventually!(
        Duration::from_secs(10),
        gw.json_lines()
            .iter()
            .any(|l| l["level"] == "WARN" && l["request_id"] == id.as_str()),
        "a WARN line with request_id {id}; lines: {:?}",
        gw.lines.lock().unwrap()
    );
    // Only lines logged inside that request carry it; none carries a trace id (no tracing
    // plugin set one).
    for l in gw.json_lines() {
        if l.get("request_id").is_some() {
            assert_eq!(l["request_id"], id.as_str(), "{l}");
            assert_eq!(l["level"], "WARN", "{l}");
        }
        assert!(l.get("trace_id").is_none(), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_lines_inside_a_request_carry_request_id_fields() {
    let echo = Echo::start("e").await;
    let dead = refused_addr();
    let gw = BinGateway::start(&config(&echo, dead), &[]).await;
    let resp = client()
        .get(format!("{}/dead", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let id = request_id(&resp);
    let field = format!("request_id={id}");
    assert_eventually!(
        Duration::from_secs(10),
        gw.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("WARN") && l.split_whitespace().any(|w| w == field)),
        "a WARN line with {field}; lines: {:?}",
        gw.lines.lock().unwrap()
    );
    let lines = gw.lines.lock().unwrap().clone();
    let listening = lines.iter().find(|l| l.contains("listening")).unwrap();
    assert!(!listening.contains("request_id"), "{listening}");
}

/// The access log lines in `path`, by request id.
fn access_lines(path: &std::path::Path) -> (Vec<Value>, HashMap<String, Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let by_id = lines
        .iter()
        .map(|l| (l["request_id"].as_str().unwrap().to_owned(), l.clone()))
        .collect();
    (lines, by_id)
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_with_its_fields() {
    let echo = Echo::start("e").await;
    let dead = refused_addr();
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let target = path.clone();
    let gw = Gateway::start_with(&config(&echo, dead), move |o| {
        o.access_log = AccessLogConfig {
            target: AccessLogTarget::File(target),
            ..Default::default()
        };
    })
    .await;
    let c = client();
    let url = gw.proxy_url();

    let got = c
        .get(format!("{url}/echo/a%20b?apikey=secret-key-123"))
        .header("user-agent", "telemetry-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let get_id = request_id(&got);
    let get_len = got.bytes().await.unwrap().len() as u64;

    let posted = c
        .post(format!("{url}/echo/upload"))
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let post_id = request_id(&posted);
    let post_len = posted.bytes().await.unwrap().len() as u64;

    let missing = c.get(format!("{url}/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let missing_id = request_id(&missing);
    let missing_len = missing.bytes().await.unwrap().len() as u64;

    let failed = c.get(format!("{url}/dead")).send().await.unwrap();
    assert_eq!(failed.status(), 502);
    let failed_id = request_id(&failed);
    failed.bytes().await.unwrap();

    // Lines are written as soon as the queue is empty...
    assert_eventually!(
        Duration::from_secs(10),
        access_lines(&path).0.len() == 4,
        "4 access log lines, got {:?}",
        std::fs::read_to_string(&path)
    );
    // ... and shutting down adds none (exactly one line per request).
    gw.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("secret-key-123"),
        "the query string is not logged: {text}"
    );
    let (lines, by_id) = access_lines(&path);
    assert_eq!(lines.len(), 4, "{text}");

    let g = &by_id[&get_id];
    assert_eq!(g["method"], "GET", "{g}");
    assert_eq!(g["path"], "/echo/a%20b", "raw path as received: {g}");
    assert_eq!(g["protocol"], "HTTP/1.1");
    assert_eq!(g["status"], 200);
    assert_eq!(g["request_bytes"], 0);
    assert_eq!(g["response_bytes"], get_len);
    assert_eq!(g["client_ip"], "127.0.0.1");
    assert_eq!(g["route_name"], "echo-route");
    assert_eq!(g["service_name"], "echo-svc");
    assert_eq!(g["route_id"].as_str().unwrap().len(), 36, "{g}");
    assert_eq!(g["service_id"].as_str().unwrap().len(), 36, "{g}");
    assert_eq!(g["upstream_addr"], echo.authority());
    assert_eq!(g["user_agent"], "telemetry-test/1");
    assert_eq!(g["completed"], true);
    assert!(g.get("trace_id").is_none(), "no tracing plugin: {g}");
    let (total, upstream, proxy) = (
        ms(&g["latency_ms"]),
        ms(&g["upstream_latency_ms"]),
        ms(&g["proxy_latency_ms"]),
    );
    assert!(
        total >= upstream && total >= proxy && upstream >= 0.0 && proxy >= 0.0,
        "{g}"
    );
    let time = g["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );

    let p = &by_id[&post_id];
    assert_eq!(p["method"], "POST");
    assert_eq!(p["path"], "/echo/upload");
    assert_eq!(p["request_bytes"], 11);
    assert_eq!(p["response_bytes"], post_len);
    assert!(p["user_agent"].is_null(), "{p}");

    let m = &by_id[&missing_id];
    assert_eq!(m["status"], 404);
    assert_eq!(m["response_bytes"], missing_len);
    for k in [
        "route_id",
        "route_name",
        "service_id",
        "upstream_addr",
        "upstream_latency_ms",
    ] {
        assert!(m[k].is_null(), "{k} of an unrouted request: {m}");
    }

    let f = &by_id[&failed_id];
    assert_eq!(f["status"], 502);
    assert_eq!(f["route_name"], "dead-route");
    assert_eq!(f["service_name"], "dead-svc");
    assert_eq!(
        f["upstream_addr"],
        dead.to_string(),
        "the peer that refused: {f}"
    );
    assert!(
        f["upstream_latency_ms"].is_null(),
        "no upstream answered: {f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_flushed_on_sigterm() {
    let echo = Echo::start("e").await;
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let mut gw = BinGateway::start(
        &config(&echo, refused_addr()),
        &["--access-log", path.to_str().unwrap()],
    )
    .await;
    let c = client();
    let mut ids = Vec::new();
    for i in 0..25 {
        let r = c
            .get(format!("{}/echo/{i}", gw.proxy_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(request_id(&r));
        r.bytes().await.unwrap();
    }
    gw.sigterm();
    assert_eq!(gw.wait_exit(Duration::from_secs(20)).await, Some(0));
    let (lines, by_id) = access_lines(&path);
    assert_eq!(lines.len(), 25);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(by_id[id]["path"], format!("/echo/{i}"));
    }
    let out = gw.lines.lock().unwrap().clone();
    let closed = out
        .iter()
        .find(|l| l.contains("access log closed"))
        .unwrap_or_else(|| panic!("no 'access log closed' line: {out:?}"));
    let words: Vec<&str> = closed.split_whitespace().collect();
    assert!(
        words.contains(&"written=25") && words.contains(&"dropped=0"),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_to_stdout_is_one_json_line_per_request() {
    let echo = Echo::start("e").await;
    let gw = BinGateway::start(&config(&echo, refused_addr()), &["--access-log", "stdout"]).await;
    let r = client()
        .get(format!("{}/echo/x", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    let id = request_id(&r);
    r.bytes().await.unwrap();
    let find = || {
        gw.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["request_id"] == id.as_str())
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        Duration::from_secs(10),
        !find().is_empty(),
        "an access line for {id} on stdout: {:?}",
        gw.lines.lock().unwrap()
    );
    let found = find();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["path"], "/echo/x");
    assert_eq!(found[0]["status"], 200);
}

#[tokio::test]
async fn an_access_log_that_cannot_be_opened_fails_start_up() {
    let dir = TempDir::new();
    let cfg = dir.write("kong.yml", "_format_version: \"3.0\"\n");
    let bad = dir.0.join("missing-dir").join("access.log");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .args(["--proxy-listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args([
            "--status-listen",
            "off",
            "--access-log",
            bad.to_str().unwrap(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("gwctl exits within 20 s")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: opening the access log {}", bad.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_access_log_never_blocks_requests_and_counts_its_drops() {
    const QUEUE: usize = 16;
    const REQUESTS: usize = 1500;
    let echo = Echo::start("e").await;
    let dir = TempDir::new();
    let fifo = dir.0.join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // A reader that never reads: the gateway's open succeeds, its writes fill the pipe and block.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let target = fifo.clone();
    let gw = Gateway::start_with(&config(&echo, refused_addr()), move |o| {
        o.access_log = AccessLogConfig {
            target: AccessLogTarget::File(target),
            queue: QUEUE,
        };
    })
    .await;
    let before = gwctl::telemetry::DROPS.access_log.load(Ordering::Relaxed);
    let url = format!("{}/echo/fifo", gw.proxy_url());
    let c = client();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move {
            let mut slowest = Duration::ZERO;
            for _ in (worker..REQUESTS).step_by(16) {
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(5), async {
                    let r = c.get(&url).send().await.unwrap();
                    let status = r.status();
                    r.bytes().await.unwrap();
                    status
                })
                .await
                .expect("a request completes while the access log is blocked");
                assert_eq!(r, 200);
                slowest = slowest.max(t.elapsed());
            }
            slowest
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(s) = tasks.join_next().await {
        slowest = slowest.max(s.unwrap());
    }
    let elapsed = started.elapsed();
    let dropped = gwctl::telemetry::DROPS.access_log.load(Ordering::Relaxed) - before;
    // Lines not dropped are queued (QUEUE), in the writer's buffer (< 64 KiB + a line) or in the
    // pipe (64 KiB); each line is longer than 200 bytes.
    let kept_at_most = QUEUE + 2 * (64 * 1024 / 200 + 1);
    assert!(
        dropped as usize >= REQUESTS - kept_at_most && dropped as usize <= REQUESTS,
        "{dropped} of {REQUESTS} lines dropped (at most {kept_at_most} can be kept)"
    );
    eprintln!("{REQUESTS} requests in {elapsed:?}, slowest {slowest:?}, {dropped} lines dropped");
    // The status listener's /metrics reports the (process-wide) counter.
    let metrics = c
        .get(format!("{}/metrics", gw.status_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reported: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gwctl_telemetry_dropped_total{signal=\"access_log\"} "))
        .unwrap_or_else(|| panic!("no access_log drop counter in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        reported >= before + dropped,
        "{reported} < {before} + {dropped}"
    );
    // Shutdown gives up on the blocked writer within its bound instead of hanging.
    gw.stop().await;
}

// --- svc-telemetry ------------------------------------------------------------------------

/// Console output captured in memory.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Console {
    type Writer = Console;
    fn make_writer(&'a self) -> Console {
        self.clone()
    }
}

impl Console {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A tiny axum service using svc-telemetry, on its own thread (its subscriber is that thread's
/// default, as `init` would make it the process's).
struct Service {
    addr: std::net::SocketAddr,
    guard: Arc<svc_telemetry::TelemetryGuard>,
    console: Console,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// `GET /items/{id}` logs at info, debug and warn, calls `echo` with the trace context
    /// injected, and answers with what the echo received and the request id it saw.
    fn start(config: svc_telemetry::TelemetryConfig, echo: &Echo) -> Self {
        use axum::extract::{Extension, Path, State};
        let console = Console::default();
        let config = config.with_console_writer(console.clone());
        let (dispatch, guard) = svc_telemetry::build(config).expect("telemetry");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let echo_url = echo.url();
        let thread = std::thread::spawn(move || {
            let _default = tracing::dispatcher::set_default(&dispatch);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                async fn item(
                    Path(id): Path<String>,
                    Extension(rid): Extension<svc_telemetry::RequestId>,
                    State(echo): State<String>,
                ) -> axum::Json<Value> {
                    tracing::info!(item = %id, "fetching item");
                    tracing::debug!("item cache miss");
                    tracing::warn!("item is stale");
                    let echoed: Value = svc_telemetry::inject(client().get(format!("{echo}/x")))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    axum::Json(serde_json::json!({
                        "upstream_traceparent": echoed["headers"]["traceparent"][0],
                        "request_id": rid.0,
                    }))
                }
                let app = axum::Router::new()
                    .route("/items/{id}", axum::routing::get(item))
                    .with_state(echo_url)
                    .layer(svc_telemetry::TraceLayer::new());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("service listening");
        Self {
            addr,
            guard: Arc::new(guard),
            console,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Export everything now (blocking: off the runtime's thread).
    async fn flush(&self) {
        let guard = Arc::clone(&self.guard);
        tokio::task::spawn_blocking(move || guard.flush())
            .await
            .unwrap()
            .expect("flush");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// `GET /items/42` with a sampled `traceparent`, a request id and a user.
async fn call(service: &Service) -> Value {
    let resp = client()
        .get(format!("http://{}/items/42", service.addr))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .header("x-kong-request-id", "c2411a0b7d3c4e27a1f0b2c3d4e5f607")
        .header("auth-user-identifier", "susmit")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn body_text(r: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_span_continues_the_callers_trace_and_its_logs_carry_the_ids() {
    let otlp = OtlpReceiver::start().await;
    let echo = Echo::start("up").await;
    let mut config =
        svc_telemetry::TelemetryConfig::new("svc-test", "1.2.3").with_endpoint(&otlp.url());
    config.instance_id = Some("instance-7".into());
    config.console_level = "info".into();
    config.export_level = "debug".into();
    let service = Service::start(config, &echo);
    assert!(service.guard.exports_traces() && service.guard.exports_logs());
    let answer = call(&service).await;
    service.flush().await;

    let spans = otlp.spans();
    let (resource, span) = spans
        .iter()
        .find(|(_, s)| s.name == "GET /items/{id}")
        .unwrap_or_else(|| panic!("no server span: {spans:#?}"));
    assert_eq!(hex(&span.trace_id), TRACE_ID, "same trace as the caller");
    assert_eq!(
        hex(&span.parent_span_id),
        PARENT_SPAN,
        "child of the caller's span"
    );
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(attr_str(resource, "service.name"), Some("svc-test"));
    assert_eq!(attr_str(resource, "service.version"), Some("1.2.3"));
    assert_eq!(
        attr_str(resource, "service.instance.id"),
        Some("instance-7")
    );
    assert_eq!(
        attr_str(&span.attributes, "http.request.method"),
        Some("GET")
    );
    assert_eq!(
        attr_str(&span.attributes, "http.route"),
        Some("/items/{id}")
    );
    assert_eq!(attr_str(&span.attributes, "url.path"), Some("/items/42"));
    assert!(
        matches!(
            attr(&span.attributes, "http.response.status_code"),
            Some(any_value::Value::IntValue(200))
        ),
        "{:?}",
        span.attributes
    );
    assert_eq!(
        attr_str(&span.attributes, "request_id"),
        Some("c2411a0b7d3c4e27a1f0b2c3d4e5f607")
    );
    assert_eq!(attr_str(&span.attributes, "user"), Some("susmit"));
    let span_id = hex(&span.span_id);

    // The outgoing request carried the same trace, the service's span as parent.
    assert_eq!(
        answer["upstream_traceparent"],
        format!("00-{TRACE_ID}-{span_id}-01")
    );
    assert_eq!(answer["request_id"], "c2411a0b7d3c4e27a1f0b2c3d4e5f607");

    let records = otlp.log_records();
    let by_body = |b: &str| {
        records
            .iter()
            .find(|(_, r)| body_text(r) == b)
            .unwrap_or_else(|| panic!("no log record {b:?}: {records:#?}"))
    };
    let (res, info) = by_body("fetching item");
    assert_eq!(attr_str(res, "service.name"), Some("svc-test"));
    assert_eq!(hex(&info.trace_id), TRACE_ID);
    assert_eq!(hex(&info.span_id), span_id);
    assert_eq!(info.severity_text, "INFO");
    assert_eq!(
        attr_str(&info.attributes, "request_id"),
        Some("c2411a0b7d3c4e27a1f0b2c3d4e5f607")
    );
    assert_eq!(attr_str(&info.attributes, "user"), Some("susmit"));
    assert_eq!(attr_str(&info.attributes, "item"), Some("42"));
    // Export level debug, console level info: the debug line is exported, not printed.
    let (_, debug) = by_body("item cache miss");
    assert_eq!(hex(&debug.span_id), span_id);
    // Only the handler's lines were exported: nothing from the HTTP stacks (the exporter's own
    // included) at export level debug.
    let bodies: Vec<String> = records.iter().map(|(_, r)| body_text(r)).collect();
    assert!(
        bodies
            .iter()
            .all(|b| ["fetching item", "item cache miss", "item is stale"].contains(&b.as_str())),
        "{bodies:?}"
    );

    let console = service.console.lines();
    let line = console
        .iter()
        .find(|l| l.contains("fetching item"))
        .unwrap_or_else(|| panic!("no console line: {console:?}"));
    for part in [
        " INFO svc-test ",
        &format!("trace_id={TRACE_ID}"),
        &format!("span_id={span_id}"),
        "request_id=c2411a0b7d3c4e27a1f0b2c3d4e5f607",
        "user=susmit",
        "item=42",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(
        !console.iter().any(|l| l.contains("item cache miss")),
        "debug is not printed at console level info: {console:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_export_levels_are_separate() {
    let otlp = OtlpReceiver::start().await;
    let echo = Echo::start("up").await;
    let mut config =
        svc_telemetry::TelemetryConfig::new("svc-levels", "1").with_endpoint(&otlp.url());
    config.console_level = "debug".into();
    config.export_level = "warn".into();
    let service = Service::start(config, &echo);
    call(&service).await;
    service.flush().await;

    let exported: Vec<String> = otlp
        .log_records()
        .iter()
        .map(|(_, r)| body_text(r))
        .collect();
    assert!(
        exported.contains(&"item is stale".to_owned()),
        "{exported:?}"
    );
    assert!(
        !exported
            .iter()
            .any(|b| b == "fetching item" || b == "item cache miss"),
        "export level warn: {exported:?}"
    );
    let console = service.console.lines();
    for message in ["fetching item", "item cache miss", "item is stale"] {
        let line = console
            .iter()
            .find(|l| l.contains(message))
            .unwrap_or_else(|| panic!("{message:?} printed at console level debug: {console:?}"));
        assert!(
            line.contains("request_id=c2411a0b7d3c4e27a1f0b2c3d4e5f607"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_but_the_trace_continues() {
    let echo = Echo::start("up").await;
    let service = Service::start(svc_telemetry::TelemetryConfig::new("svc-quiet", "1"), &echo);
    assert!(!service.guard.exports_traces() && !service.guard.exports_logs());
    let answer = call(&service).await;
    let traceparent = answer["upstream_traceparent"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE_ID, "{traceparent}");
    assert_ne!(
        parts[2], PARENT_SPAN,
        "a new span of the service: {traceparent}"
    );
    let console = service.console.lines();
    let line = console
        .iter()
        .find(|l| l.contains("fetching item"))
        .unwrap_or_else(|| panic!("no console line: {console:?}"));
    assert!(
        line.contains(&format!("trace_id={TRACE_ID} span_id={}", parts[2])),
        "{line}"
    );
    service.flush().await;
}
