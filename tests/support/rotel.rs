//! The real `rotel-agent` OTLP collector (tests/run.sh's `rotel` component), on free loopback
//! ports, killed on drop, its stdout and stderr lines collected.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{TempDir, refused_addr};

/// A running collector.
pub struct Rotel {
    pub child: tokio::process::Child,
    /// Its OTLP/HTTP receiver (`http://{http}/v1/traces`, `/v1/logs`).
    pub http: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Rotel {
    /// Exporter arguments: drop the data, but dump every span and log record in detail on
    /// stdout (see [`Rotel::output`]).
    pub const DEBUG_DUMP: [&'static str; 8] = [
        "--exporter",
        "blackhole",
        "--debug-log",
        "traces",
        "--debug-log",
        "logs",
        "--debug-log-verbosity",
        "detailed",
    ];

    /// Exporter arguments that forward traces and logs over OTLP/HTTP to `endpoint`
    /// (`http://host:port`, as a collector forwards to its backend), in batches of at most
    /// 200 ms.
    pub fn forward_to(endpoint: &str) -> Vec<String> {
        [
            "--exporter",
            "otlp",
            "--otlp-exporter-protocol",
            "http",
            "--otlp-exporter-endpoint",
            endpoint,
            "--batch-timeout",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Start `agent` with its receivers on free ports and `exporter` arguments; returns once
    /// the OTLP/HTTP receiver accepts connections.
    pub async fn start<S: AsRef<std::ffi::OsStr>>(agent: &str, exporter: &[S]) -> Self {
        let dir = TempDir::new();
        let (http, grpc) = (refused_addr(), refused_addr());
        let mut child = tokio::process::Command::new(agent)
            .arg("start")
            .arg("--otlp-http-endpoint")
            .arg(http.to_string())
            .arg("--otlp-grpc-endpoint")
            .arg(grpc.to_string())
            .args(exporter)
            .arg("--pid-file")
            .arg(dir.0.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.0.join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {agent}: {e}"));
        let lines = super::collect_output(&mut child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(http).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "rotel-agent exited with {status}: {:?}",
                    lines.lock().expect("lines")
                );
            }
            assert!(
                Instant::now() < deadline,
                "rotel-agent does not listen on {http}: {:?}",
                lines.lock().expect("lines")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            http,
            lines,
            _dir: dir,
        }
    }

    /// `http://{http}`: what an OTLP SDK takes as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }
}
