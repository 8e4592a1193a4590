//! Telemetry for gwctl's sample services (the Rust counterpart of the original stack's
//! `obs_utils.py`): one call, [`init`], sets up
//!
//! - a resource with `service.name`, `service.version` and `service.instance.id`;
//! - OTLP/HTTP (protobuf) exporters for traces and logs, from the standard
//!   `OTEL_EXPORTER_OTLP_*` variables or an explicit endpoint ([`TelemetryConfig`]); with no
//!   endpoint, no exporter and no exporter thread exist (spans still get ids, so incoming trace
//!   context is continued and propagated);
//! - console lines on stdout carrying `trace_id`, `span_id`, `request_id` and `user` when logged
//!   inside a request, at their own level (`LOG_LEVEL`), separate from the exported logs' level
//!   (`OTEL_LOG_LEVEL`);
//! - the W3C trace-context propagator.
//!
//! [`TraceLayer`] (tower/axum) gives every incoming request a SERVER span that continues the
//! caller's `traceparent` and carries the request id (`X-Kong-Request-Id`) and the user
//! (`auth-user-identifier`); [`inject`] puts the current context on outgoing reqwest requests.
//! The [`TelemetryGuard`] flushes and shuts the exporters down when dropped (at the end of
//! `main`, outside the async runtime: flushing blocks).
//!
//! ```no_run
//! # fn main() -> Result<(), svc_telemetry::TelemetryError> {
//! let config = svc_telemetry::TelemetryConfig::from_env("auth-service", env!("CARGO_PKG_VERSION"))?;
//! let _guard = svc_telemetry::init(config)?;
//! let app: axum::Router = axum::Router::new().layer(svc_telemetry::TraceLayer::new());
//! # let _ = app; Ok(()) }
//! ```

mod console;
mod filter;
mod http;

use std::fmt;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::{OpenTelemetryTracingBridge, TracingSpanAttributes};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

pub use crate::http::{RequestId, TraceFuture, TraceLayer, TraceService, inject, inject_headers};
/// For span events and attributes on `tracing` spans (`Span::current().add_event(..)`).
pub use opentelemetry::KeyValue as SpanAttribute;
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span field holding the request id (also a log record attribute).
pub const REQUEST_ID_FIELD: &str = "request_id";
/// The span field holding the authenticated user (also a log record attribute).
pub const USER_FIELD: &str = "user";

/// Spans at this level or above are traced (and give console lines and log records their
/// request ids); more verbose spans are ignored.
const SPAN_LEVEL: LevelFilter = LevelFilter::INFO;

/// Dependencies whose events never reach the exported logs: the exporter's own HTTP stack would
/// otherwise export its own logs in a loop.
const NOT_EXPORTED: &[&str] = &["hyper", "h2", "reqwest", "tonic", "tower", "opentelemetry"];
/// Dependencies logged at `warn` at most when the level is a bare level.
const QUIET: &[&str] = &[
    "hyper",
    "h2",
    "reqwest",
    "tonic",
    "tower",
    "axum",
    "opentelemetry",
];

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A level or filter did not parse.
    #[error("invalid {what} '{filter}': {reason}")]
    BadFilter {
        /// Which setting (`console log level`, `export log level`).
        what: &'static str,
        /// The value given.
        filter: String,
        /// Why it was refused.
        reason: String,
    },
    /// An `OTEL_EXPORTER_OTLP_*PROTOCOL` other than `http/protobuf`.
    #[error("unsupported OTLP protocol '{0}' (only http/protobuf is built in)")]
    Protocol(String),
    /// An exporter could not be built (a bad endpoint).
    #[error("building the OTLP {signal} exporter: {reason}")]
    Exporter {
        /// `traces` or `logs`.
        signal: &'static str,
        /// Why.
        reason: String,
    },
    /// A global subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// Flushing or shutting down an exporter failed.
    #[error("flushing telemetry: {0}")]
    Flush(String),
}

/// What [`init`] sets up.
pub struct TelemetryConfig {
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `service.instance.id` (a random UUID unless given here or in `OTEL_RESOURCE_ATTRIBUTES`).
    pub instance_id: Option<String>,
    /// Where spans are sent (the full URL, `.../v1/traces`); `None`: no trace exporter.
    pub traces_endpoint: Option<String>,
    /// Where log records are sent (the full URL, `.../v1/logs`); `None`: no log exporter.
    pub logs_endpoint: Option<String>,
    /// Console level or filter (`RUST_LOG` syntax; a bare level keeps dependencies at `warn`).
    pub console_level: String,
    /// Exported logs' level or filter (same syntax).
    pub export_level: String,
    console_writer: Option<BoxMakeWriter>,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("instance_id", &self.instance_id)
            .field("traces_endpoint", &self.traces_endpoint)
            .field("logs_endpoint", &self.logs_endpoint)
            .field("console_level", &self.console_level)
            .field("export_level", &self.export_level)
            .finish_non_exhaustive()
    }
}

impl TelemetryConfig {
    /// Console at `info`, nothing exported; reads no environment variable.
    pub fn new(service_name: impl Into<String>, service_version: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            service_version: service_version.into(),
            instance_id: None,
            traces_endpoint: None,
            logs_endpoint: None,
            console_level: "info".into(),
            export_level: "info".into(),
            console_writer: None,
        }
    }

    /// From the environment:
    /// - endpoints per the OTLP exporter spec: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
    ///   `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` verbatim, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    ///   `/v1/traces` / `/v1/logs`; `OTEL_TRACES_EXPORTER=none` / `OTEL_LOGS_EXPORTER=none` or
    ///   `OTEL_SDK_DISABLED=true` turn a signal off; headers and timeouts
    ///   (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`) are read by the exporter itself;
    /// - `OTEL_SERVICE_NAME` replaces `service_name`;
    /// - `CONSOLE_LOG_LEVEL` or `LOG_LEVEL` for the console, `OTEL_LOG_LEVEL` for exported logs
    ///   (default `info` each).
    pub fn from_env(
        service_name: impl Into<String>,
        service_version: impl Into<String>,
    ) -> Result<Self, TelemetryError> {
        Self::from_vars(service_name, service_version, |k| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty())
        })
    }

    fn from_vars(
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        for key in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        ] {
            if let Some(p) = var(key)
                && !p.trim().eq_ignore_ascii_case("http/protobuf")
            {
                return Err(TelemetryError::Protocol(p));
            }
        }
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true");
        let endpoint = |signal: &str, upper: &str| {
            if disabled
                || var(&format!("OTEL_{upper}_EXPORTER")).is_some_and(|v| v.trim() == "none")
            {
                return None;
            }
            var(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")).or_else(|| {
                var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| signal_url(&base, signal))
            })
        };
        let mut config = Self::new(service_name, service_version);
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            config.service_name = name;
        }
        config.traces_endpoint = endpoint("traces", "TRACES");
        config.logs_endpoint = endpoint("logs", "LOGS");
        if let Some(level) = var("CONSOLE_LOG_LEVEL").or_else(|| var("LOG_LEVEL")) {
            config.console_level = level;
        }
        if let Some(level) = var("OTEL_LOG_LEVEL") {
            config.export_level = level;
        }
        Ok(config)
    }

    /// Export traces and logs to the OTLP/HTTP base URL `base` (`/v1/traces` and `/v1/logs`
    /// are appended).
    pub fn with_endpoint(mut self, base: &str) -> Self {
        self.traces_endpoint = Some(signal_url(base, "traces"));
        self.logs_endpoint = Some(signal_url(base, "logs"));
        self
    }

    /// Write console lines to `writer` instead of stdout.
    pub fn with_console_writer<W>(mut self, writer: W) -> Self
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        self.console_writer = Some(BoxMakeWriter::new(writer));
        self
    }
}

/// `base` + `/v1/<signal>` (without a doubled slash).
fn signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

/// Flushes and shuts down the exporters when dropped (or on [`TelemetryGuard::shutdown`]).
/// Both block until the exporters finished: call them outside the async runtime, or from
/// `spawn_blocking`.
pub struct TelemetryGuard {
    tracer_provider: SdkTracerProvider,
    logger_provider: Option<SdkLoggerProvider>,
    exports_traces: bool,
    instance_id: String,
    shut_down: bool,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exports_traces", &self.exports_traces)
            .field("exports_logs", &self.logger_provider.is_some())
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.exports_traces
    }

    /// Whether log records are exported.
    pub fn exports_logs(&self) -> bool {
        self.logger_provider.is_some()
    }

    /// The `service.instance.id` in use.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Export everything finished so far, now.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        let traces = if self.exports_traces {
            self.tracer_provider.force_flush()
        } else {
            Ok(())
        };
        let logs = match &self.logger_provider {
            Some(p) => p.force_flush(),
            None => Ok(()),
        };
        traces
            .and(logs)
            .map_err(|e| TelemetryError::Flush(e.to_string()))
    }

    /// Flush, then shut the exporters down.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TelemetryError> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let flushed = self.flush();
        let traces = self.tracer_provider.shutdown();
        let logs = match &self.logger_provider {
            Some(p) => p.shutdown(),
            None => Ok(()),
        };
        flushed?;
        traces
            .and(logs)
            .map_err(|e| TelemetryError::Flush(e.to_string()))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Set up telemetry and install it as the global subscriber (and the global tracer provider).
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (dispatch, guard) = build(config)?;
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_tracer_provider(guard.tracer_provider.clone());
    Ok(guard)
}

/// Set up telemetry without installing anything global but the W3C propagator: the caller
/// installs the returned dispatcher (`tracing::dispatcher::set_default` for one thread, as tests
/// do, or `set_global_default`).
pub fn build(config: TelemetryConfig) -> Result<(Dispatch, TelemetryGuard), TelemetryError> {
    let console_filter = events_filter("console log level", &config.console_level, false)?;
    let export_filter = events_filter("export log level", &config.export_level, true)?;

    let mut resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new(
            "service.version",
            config.service_version.clone(),
        ));
    let from_env = Resource::builder()
        .build()
        .get(&opentelemetry::Key::new("service.instance.id"))
        .map(|v| v.to_string());
    let instance_id = match (&config.instance_id, from_env) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id,
        (None, None) => uuid::Uuid::new_v4().to_string(),
    };
    resource = resource.with_attribute(KeyValue::new("service.instance.id", instance_id.clone()));
    let resource = resource.build();

    let mut tracer_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    if let Some(url) = &config.traces_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                signal: "traces",
                reason: e.to_string(),
            })?;
        tracer_builder = tracer_builder.with_batch_exporter(exporter);
    }
    let tracer_provider = tracer_builder.build();
    let logger_provider = match &config.logs_endpoint {
        Some(url) => {
            let exporter = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .build()
                .map_err(|e| TelemetryError::Exporter {
                    signal: "logs",
                    reason: e.to_string(),
                })?;
            Some(
                SdkLoggerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let tracer = tracer_provider.tracer(config.service_name.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter::SpansAndEvents::new(SPAN_LEVEL, LevelFilter::OFF));
    let writer = config
        .console_writer
        .unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer)
        .event_format(console::ConsoleFormat::new(&config.service_name))
        .with_filter(filter::SpansAndEvents::new(SPAN_LEVEL, console_filter));
    let bridge = logger_provider.as_ref().map(|p| {
        OpenTelemetryTracingBridge::builder(p)
            .with_tracing_span_attributes(TracingSpanAttributes::allowlist([
                REQUEST_ID_FIELD,
                USER_FIELD,
            ]))
            .build()
            .with_filter(filter::SpansAndEvents::new(SPAN_LEVEL, export_filter))
    });
    let subscriber = tracing_subscriber::registry()
        .with(console::RequestFieldsLayer)
        .with(otel)
        .with(fmt)
        .with(bridge);
    let guard = TelemetryGuard {
        exports_traces: config.traces_endpoint.is_some(),
        tracer_provider,
        logger_provider,
        instance_id,
        shut_down: false,
    };
    Ok((Dispatch::new(subscriber), guard))
}

/// An event filter from a level or `RUST_LOG`-style directives. A bare level keeps noisy
/// dependencies at `warn` at most; for exported logs the exporter's own stack is always off.
fn events_filter(
    what: &'static str,
    filter: &str,
    exported: bool,
) -> Result<EnvFilter, TelemetryError> {
    let bad = |reason: String| TelemetryError::BadFilter {
        what,
        filter: filter.to_owned(),
        reason,
    };
    let trimmed = filter.trim();
    let mut directives = if trimmed.contains('=') || trimmed.contains(',') {
        trimmed.to_owned()
    } else {
        let level: LevelFilter = trimmed.parse().map_err(|e| bad(format!("{e}")))?;
        let quiet = level.min(LevelFilter::WARN);
        let mut d = level.to_string().to_lowercase();
        for dep in QUIET {
            d.push_str(&format!(",{dep}={}", quiet.to_string().to_lowercase()));
        }
        d
    };
    if exported {
        for dep in NOT_EXPORTED {
            directives.push_str(&format!(",{dep}=off"));
        }
    }
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| bad(e.to_string()))
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT): the sample services' graceful-shutdown trigger.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn endpoints_follow_the_otlp_spec() {
        let c = TelemetryConfig::from_vars("s", "1", vars(&[])).unwrap();
        assert_eq!((c.traces_endpoint, c.logs_endpoint), (None, None));
        assert_eq!(c.service_name, "s");
        let c = TelemetryConfig::from_vars("s", "1", vars(&[("OTEL_SERVICE_NAME", "monitor")]));
        assert_eq!(c.unwrap().service_name, "monitor");

        let c = TelemetryConfig::from_vars(
            "s",
            "1",
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
        )
        .unwrap();
        assert_eq!(
            c.traces_endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(c.logs_endpoint.as_deref(), Some("http://c:4318/v1/logs"));

        let c = TelemetryConfig::from_vars(
            "s",
            "1",
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://o:5080/api/default/v1/traces",
                ),
                ("OTEL_LOGS_EXPORTER", "none"),
                ("LOG_LEVEL", "debug"),
                ("OTEL_LOG_LEVEL", "warn"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.traces_endpoint.as_deref(),
            Some("http://o:5080/api/default/v1/traces")
        );
        assert_eq!(c.logs_endpoint, None);
        assert_eq!(
            (c.console_level.as_str(), c.export_level.as_str()),
            ("debug", "warn")
        );

        let c = TelemetryConfig::from_vars(
            "s",
            "1",
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
        )
        .unwrap();
        assert_eq!((c.traces_endpoint, c.logs_endpoint), (None, None));

        let e =
            TelemetryConfig::from_vars("s", "1", vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
                .unwrap_err();
        assert!(matches!(e, TelemetryError::Protocol(p) if p == "grpc"));
    }

    #[test]
    fn filters_parse_and_bad_ones_are_refused() {
        assert!(events_filter("x", "debug", true).is_ok());
        assert!(events_filter("x", "info,my_service=trace", false).is_ok());
        let e = events_filter("console log level", "loud", false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid console log level 'loud'"),
            "{e}"
        );
    }
}
