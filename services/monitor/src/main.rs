//! `monitor-service`: serve the alerts API. Environment: `MONITOR_LISTEN` (default
//! `0.0.0.0:8080`), `ALERTS_DELAY_MS` (simulated store latency, default 20).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use monitor_service::MonitorConfig;

fn main() -> ExitCode {
    // Telemetry first (console lines, OTLP traces and logs from the OTEL_* environment); the
    // guard flushes the exporters when main returns, after the runtime stopped.
    let guard = match svc_telemetry::TelemetryConfig::from_env(
        "monitor-service",
        env!("CARGO_PKG_VERSION"),
    )
    .and_then(svc_telemetry::init)
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    };
    drop(guard);
    code
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn run() -> anyhow::Result<()> {
    if let Some(a) = std::env::args().nth(1) {
        anyhow::ensure!(
            a == "--help" || a == "-h",
            "unknown argument '{a}' (try --help)"
        );
        eprintln!("usage: monitor-service   (see MONITOR_LISTEN and ALERTS_DELAY_MS)");
        return Ok(());
    }
    let addr: std::net::SocketAddr = env("MONITOR_LISTEN")
        .as_deref()
        .unwrap_or("0.0.0.0:8080")
        .parse()
        .context("MONITOR_LISTEN")?;
    let delay: u64 = env("ALERTS_DELAY_MS")
        .map(|v| {
            v.parse()
                .with_context(|| format!("ALERTS_DELAY_MS '{v}' is not a number"))
        })
        .transpose()?
        .unwrap_or(20);
    let config = MonitorConfig {
        instance_id: uuid::Uuid::new_v4().simple().to_string(),
        fetch_delay: Duration::from_millis(delay),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, instance = %config.instance_id, "monitor-service listening");
        monitor_service::serve(listener, config, svc_telemetry::shutdown_signal())
            .await
            .context("serving")
    })
}
