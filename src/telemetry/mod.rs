//! Telemetry: process logging (a `tracing` subscriber writing text or JSON lines to stdout, with
//! the request's ids on lines logged inside a request), the JSON access log, the per-request
//! logging scope, and the request timeline tracing plugins export.

pub mod access_log;
mod format;
pub mod metrics;
pub mod scope;
pub mod timeline;

use std::sync::atomic::AtomicU64;

/// Telemetry the process had to drop (a bounded queue was full, or an export failed for good),
/// by signal: exporters never block or slow the proxy, they count what they lose here, and the
/// Prometheus endpoint reports it (`gwctl_telemetry_dropped_total{signal=...}`).
#[derive(Debug, Default)]
pub struct Drops {
    /// Spans (the opentelemetry plugin's traces).
    pub spans: AtomicU64,
    /// Log records (the opentelemetry plugin's logs).
    pub logs: AtomicU64,
    /// Access log lines.
    pub access_log: AtomicU64,
}

/// The process-wide drop counters.
pub static DROPS: Drops = Drops {
    spans: AtomicU64::new(0),
    logs: AtomicU64::new(0),
    access_log: AtomicU64::new(0),
};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The `--log-level` / `GWCTL_LOG` filter did not parse.
    #[error("invalid log filter '{filter}': {reason}")]
    BadFilter {
        /// The filter given.
        filter: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Install the global subscriber. `filter` uses `RUST_LOG` syntax; a bare level such as `info`
/// applies to gwctl and a quieter `warn` to dependencies. Lines logged inside a request carry
/// its `request_id` (and `trace_id`, `span_id` once a tracing plugin set them): `key=value`
/// fields in text, flat top-level fields in JSON.
pub fn init_logging(filter: &str, json: bool) -> Result<(), TelemetryError> {
    let directives = if filter.contains('=') || filter.contains(',') {
        filter.to_owned()
    } else {
        format!("warn,gwctl={filter}")
    };
    let env_filter = EnvFilter::try_new(&directives).map_err(|e| TelemetryError::BadFilter {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(ansi)
        .with_target(false);
    let registry = tracing_subscriber::registry()
        .with(env_filter)
        .with(scope::CaptureLayer);
    // A second initialisation (tests) is harmless; ignore the refusal.
    if json {
        let inner = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_target(false);
        let layer = fmt
            .json()
            .flatten_event(true)
            .event_format(format::Scoped::json(inner));
        let _ = registry.with(layer).try_init();
    } else {
        let inner = tracing_subscriber::fmt::format()
            .with_target(false)
            .with_ansi(ansi);
        let _ = registry
            .with(fmt.event_format(format::Scoped::text(inner)))
            .try_init();
    }
    Ok(())
}
