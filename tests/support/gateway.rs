//! The gateway under test: in-process ([`Gateway`], `serve::run_until`) or the real binary
//! ([`BinGateway`], for signals and memory measurements).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gwctl::serve::{Bound, ServeOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::TempDir;

/// A gateway running in this process on free ports (proxy, status; admin off).
pub struct Gateway {
    pub bound: Bound,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

/// Default options: everything on 127.0.0.1:0, admin off.
pub fn options(config: std::path::PathBuf) -> ServeOptions {
    ServeOptions {
        config: Some(config),
        database_url: None,
        proxy_listen: vec!["127.0.0.1:0".into()],
        proxy_tls_listen: vec![],
        tls_cert: None,
        tls_key: None,
        admin_listen: "off".into(),
        status_listen: "127.0.0.1:0".into(),
        admin_token: None,
        // One proxy worker thread per in-process gateway: many run in parallel.
        workers: 1,
        drain_timeout: Duration::from_secs(5),
        trusted_ips: vec![],
        access_log: Default::default(),
    }
}

impl Gateway {
    /// Start with the declarative `yaml`.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, |_| {}).await
    }

    /// Start with `yaml`, letting `tweak` adjust the options.
    pub async fn start_with(yaml: &str, tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        match Self::try_start_with(yaml, tweak).await {
            Ok(g) => g,
            Err(e) => panic!("gateway did not start: {e:#}\n--- config ---\n{yaml}"),
        }
    }

    pub async fn try_start_with(
        yaml: &str,
        tweak: impl FnOnce(&mut ServeOptions),
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new();
        let path = dir.write("kong.yml", yaml);
        let mut opts = options(path);
        tweak(&mut opts);
        let (tx, rx) = watch::channel(false);
        let (bound_tx, bound_rx) = oneshot::channel();
        let mut task = tokio::spawn(gwctl::serve::run_until(opts, rx, move |b| {
            let _ = bound_tx.send(b.clone());
        }));
        let bound = tokio::select! {
            b = bound_rx => b.ok(),
            r = &mut task => {
                return Err(match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => anyhow::anyhow!("gateway stopped before binding"),
                    Err(e) => anyhow::anyhow!("gateway task failed: {e}"),
                });
            }
        };
        let Some(bound) = bound else {
            // The task ended before binding; its result says why.
            return Err(match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow::anyhow!("gateway stopped before binding"),
                Err(e) => anyhow::anyhow!("gateway task failed: {e}"),
            });
        };
        Ok(Self {
            bound,
            shutdown: tx,
            task: Some(task),
            _dir: dir,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.bound.proxy[0]
    }

    /// `http://127.0.0.1:PORT` of the first proxy listener.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.bound.proxy[0])
    }

    pub fn status_url(&self) -> String {
        format!("http://{}", self.bound.status.expect("status listener"))
    }

    /// Signal shutdown and wait (bounded) for the gateway to return.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("gateway stops within 10 s");
            r.expect("gateway task").expect("gateway result");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The real `gwctl serve` binary on free ports.
pub struct BinGateway {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub proxy: SocketAddr,
    pub status: Option<SocketAddr>,
    /// Every stdout line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

impl BinGateway {
    pub async fn start(yaml: &str, extra: &[&str]) -> Self {
        let dir = TempDir::new();
        let path = dir.write("kong.yml", yaml);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
            .args(["--log-format", "text", "serve", "--config"])
            .arg(&path)
            .args([
                "--proxy-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "off",
                "--status-listen",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .args(extra)
            .env_remove("GWCTL_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gwctl");
        let pid = child.id().expect("pid");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                lines.lock().expect("lines").push(line.clone());
                if line.contains("listening") && line.contains("proxy=") {
                    return Some(line);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(line) = listening else {
            panic!(
                "gwctl serve printed no listening line; output: {:?}",
                lines.lock().expect("lines")
            );
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                sink.lock().expect("lines").push(line);
            }
        });
        let proxy = field(&line, "proxy")
            .and_then(|p| p.split(',').next().and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no proxy= in {line:?}"));
        let status = field(&line, "status").and_then(|s| s.parse().ok());
        Self {
            child,
            pid,
            proxy,
            status,
            lines,
            _dir: dir,
        }
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// Resident set size in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        self.proc_kib("status", "VmRSS:")
    }

    /// A `<field> <n> kB` line of `/proc/<pid>/<file>` (`status`, `smaps_rollup`), in KiB.
    pub fn proc_kib(&self, file: &str, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/{file}: {e}", self.pid));
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/{file}", self.pid))
    }

    /// Send SIGTERM.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Send a signal (`-TERM`, `-INT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} {} failed", self.pid);
    }

    /// Wait (bounded) for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("gwctl exits in time")
            .expect("wait");
        status.code()
    }
}
