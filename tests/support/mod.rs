//! Test harness: the gateway in-process or as the real binary, scriptable upstreams, raw clients.
//! Real sockets on 127.0.0.1:0 only; every wait is bounded by a deadline.
#![allow(dead_code)]

pub mod admin;
pub mod echo;
pub mod gateway;
pub mod grpc;
pub mod grpc_gw_server;
pub mod netns;
pub mod openobserve;
pub mod otlp;
pub mod pg;
pub mod pg_backend;
pub mod raw;
pub mod redis;
pub mod rotel;
pub mod tls;
pub mod tty;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use echo::{Echo, closer, refused_addr};
pub use gateway::{BinGateway, Gateway};

/// Poll `cond` (an async expression yielding bool) every 50 ms until it is true or `timeout`
/// runs out; panics with the message and the last state otherwise.
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = tokio::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("condition not reached within {:?}: {}", $timeout, format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Kills a whole process group when dropped: a test that fails half-way must not leave the
/// grandchildren behind (a SIGKILLed `gwctl register` cannot stop its service). Spawn the
/// child with `.process_group(0)` and keep this guard next to it.
pub struct GroupKill(pub i32);

impl GroupKill {
    pub fn of(child: &tokio::process::Child) -> Self {
        Self(child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0))
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Collect a child's stdout and stderr lines (both piped) as they come, in one list.
pub fn collect_output(
    child: &mut tokio::process::Child,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let outs: [Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>; 2] = [
        child.stdout.take().map(|o| Box::new(o) as _),
        child.stderr.take().map(|e| Box::new(e) as _),
    ];
    for out in outs.into_iter().flatten() {
        let sink = std::sync::Arc::clone(&lines);
        tokio::spawn(async move {
            let mut r = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = r.next_line().await {
                sink.lock().expect("lines").push(l);
            }
        });
    }
    lines
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gwctl-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A reqwest client: no system proxy, no redirects, bounded timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The JSON an [`Echo`] upstream answers with.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echoed {
    pub instance: String,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Header name (lower case) -> values.
    pub headers: std::collections::BTreeMap<String, Vec<String>>,
    pub body_len: u64,
    pub version: String,
    /// The request body as text, when the request asked for it with `x-echo-body`.
    #[serde(default)]
    pub body: Option<String>,
}

impl Echoed {
    /// The single value of header `name` (panics when absent or repeated).
    pub fn header(&self, name: &str) -> &str {
        match self.headers.get(name).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("header {name}: expected one value, got {other:?} in {self:#?}"),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }
}

/// GET `url` with an optional Host header; returns status and the echoed request.
pub async fn get_echo(c: &reqwest::Client, url: &str, host: Option<&str>) -> (u16, Option<Echoed>) {
    let mut req = c.get(url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).ok())
}

/// Whether `s` is 32 lower-case hex characters (Kong's request id).
pub fn is_request_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of `var`, which `tests/run.sh` exports when its component `name` is enabled (an
/// interpreter or tool path, a service URL). A test that needs a component must not pass silently
/// without it: when `var` is unset this panics, telling to run `tests/run.sh`; only with
/// `GWCTL_TEST_ALLOW_MISSING` set (non-empty) does it return `None`, and the caller skips.
pub fn component(var: &str, name: &str) -> Option<String> {
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(v.to_string_lossy().into_owned());
    }
    if std::env::var_os("GWCTL_TEST_ALLOW_MISSING").is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "SKIPPED: {var} is unset (component `{name}`) and GWCTL_TEST_ALLOW_MISSING is set"
        );
        return None;
    }
    panic!(
        "{var} is unset: this test needs the `{name}` component of tests/run.sh. Run the tests \
         with `bash tests/run.sh` (or `GWCTL_TEST_SERVICES={name} bash tests/run.sh [FILTER]`), \
         or set GWCTL_TEST_ALLOW_MISSING=1 to skip it"
    );
}
