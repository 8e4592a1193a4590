//! Process logging: a `tracing` subscriber writing text or JSON lines to stdout.

use tracing_subscriber::EnvFilter;

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
/// applies to gwctl and a quieter `warn` to dependencies.
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false);
    // A second initialisation (tests) is harmless; ignore the refusal.
    if json {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        let _ = builder.try_init();
    }
    Ok(())
}
