//! Command-line definitions (clap derive). Flags, env vars and defaults follow CONTRACT.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// gwctl: a Kong-compatible API gateway and the tooling that sets up its stack.
#[derive(Debug, Parser)]
#[command(name = "gwctl", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format: text (default on a terminal) or json (default otherwise).
    #[arg(long, global = true, env = "GWCTL_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,

    /// Log filter in RUST_LOG syntax.
    #[arg(long, global = true, env = "GWCTL_LOG", default_value = "info")]
    pub(crate) log_level: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway: proxy, Kong-compatible Admin API and status API.
    Serve(ServeArgs),
    /// Exit 0 when the gateway's /status/ready answers 200 (for container health checks).
    Health(HealthArgs),
    /// Apply or inspect the Postgres schema migrations.
    Migrate(MigrateArgs),
    /// Configure Kong (or gwctl) and the observability backend.
    Setup(SetupArgs),
    /// Register this host as a target of an upstream.
    Register(RegisterArgs),
    /// Remove a compose project's volumes and empty its data directories.
    Clean(CleanArgs),
    /// Run the whole sample system locally without Docker.
    Up(UpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Declarative file (Kong `_format_version: "3.0"`, YAML or JSON) loaded at start.
    #[arg(long, env = "GWCTL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Postgres URL; without it the store is in memory (DB-less mode).
    #[arg(long, env = "GWCTL_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Proxy listen address (repeatable).
    #[arg(
        long,
        env = "GWCTL_PROXY_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:8000"
    )]
    pub(crate) proxy_listen: Vec<String>,
    /// HTTPS proxy listen address (repeatable); needs --tls-cert and --tls-key.
    #[arg(long, env = "GWCTL_PROXY_TLS_LISTEN", value_delimiter = ',')]
    pub(crate) proxy_tls_listen: Vec<String>,
    /// PEM certificate chain for the TLS listener.
    #[arg(long, env = "GWCTL_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long, env = "GWCTL_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Admin API listen address, or `off`.
    #[arg(long, env = "GWCTL_ADMIN_LISTEN", default_value = "127.0.0.1:8001")]
    pub(crate) admin_listen: String,
    /// Status API listen address, or `off`.
    #[arg(long, env = "GWCTL_STATUS_LISTEN", default_value = "127.0.0.1:8007")]
    pub(crate) status_listen: String,
    /// Token required on every admin request (`Kong-Admin-Token` or `Authorization: Bearer`).
    #[arg(long, env = "GWCTL_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Tokio worker threads (default: CPU count).
    #[arg(long, env = "GWCTL_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// Graceful shutdown bound in seconds.
    #[arg(long, env = "GWCTL_DRAIN_TIMEOUT", default_value_t = 30)]
    pub(crate) drain_timeout: u64,
    /// Peers whose X-Forwarded-* headers are trusted (IPs or CIDRs, comma-separated).
    #[arg(long, env = "GWCTL_TRUSTED_IPS", value_delimiter = ',')]
    pub(crate) trusted_ips: Vec<String>,
    /// JSON access log, one line per request: a file path (appended to), `stdout`, or `off`.
    #[arg(
        long,
        env = "GWCTL_ACCESS_LOG",
        default_value = "off",
        value_name = "PATH|stdout|off"
    )]
    pub(crate) access_log: gwctl::telemetry::access_log::AccessLogTarget,
}

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Base URL of the status listener.
    #[arg(
        long,
        env = "GWCTL_STATUS_URL",
        default_value = "http://127.0.0.1:8007"
    )]
    pub(crate) status_url: String,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// `up` (default) or `status`.
    #[arg(value_enum, default_value = "up")]
    pub(crate) action: MigrateAction,
    /// Postgres URL.
    #[arg(long, env = "GWCTL_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Seconds to wait for the database.
    #[arg(long, default_value_t = 60)]
    pub(crate) wait: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MigrateAction {
    /// Apply pending migrations.
    Up,
    /// Show applied and pending migrations (exit 3 when some are pending).
    Status,
}

#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    #[command(subcommand)]
    pub(crate) target: SetupTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SetupTarget {
    /// Converge a Kong (or gwctl) Admin API to a declarative file.
    Kong(SetupKongArgs),
    /// Configure OpenObserve and write the collector's credentials.
    Obs(SetupObsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SetupKongArgs {
    /// Declarative file.
    #[arg(long, short = 'f')]
    pub(crate) file: PathBuf,
    /// Admin API URL.
    #[arg(long, env = "GWCTL_ADMIN_URL", default_value = "http://127.0.0.1:8001")]
    pub(crate) admin_url: String,
    /// Admin token.
    #[arg(long, env = "GWCTL_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Delete entities the file does not name.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Seconds to wait for the Admin API.
    #[arg(long, default_value_t = 120)]
    pub(crate) wait: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SetupObsArgs {
    /// OpenObserve base URL.
    #[arg(long, env = "OPENOBSERVE_URL")]
    pub(crate) url: String,
    /// Root user email.
    #[arg(long, env = "OPENOBSERVE_USER")]
    pub(crate) user: String,
    /// Root user password.
    #[arg(long, env = "OPENOBSERVE_PASSWORD", hide_env_values = true)]
    pub(crate) password: String,
    /// Env file to write (mode 0600).
    #[arg(long)]
    pub(crate) env_file: PathBuf,
    /// Organization.
    #[arg(long, env = "OPENOBSERVE_ORG", default_value = "default")]
    pub(crate) org: String,
    /// Seconds to wait for OpenObserve.
    #[arg(long, default_value_t = 120)]
    pub(crate) wait: u64,
    /// Collector config whose OpenObserve exporters get the Authorization header (only that
    /// value changes; comments and layout stay).
    #[arg(long)]
    pub(crate) collector_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Upstream name.
    #[arg(long)]
    pub(crate) upstream: String,
    /// Port of the service on this host.
    #[arg(long)]
    pub(crate) port: u16,
    /// Pick the address whose text starts with this prefix.
    #[arg(long, conflicts_with = "cidr", required_unless_present = "cidr")]
    pub(crate) prefix: Option<String>,
    /// Pick the address inside this CIDR.
    #[arg(long)]
    pub(crate) cidr: Option<String>,
    /// Admin API URL.
    #[arg(long, env = "GWCTL_ADMIN_URL", default_value = "http://127.0.0.1:8001")]
    pub(crate) admin_url: String,
    /// Admin token.
    #[arg(long, env = "GWCTL_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Target weight.
    #[arg(long, default_value_t = 100)]
    pub(crate) weight: u32,
    /// Seconds to keep retrying.
    #[arg(long, default_value_t = 120)]
    pub(crate) wait: u64,
    /// Health path the child must answer 2xx on before registering.
    #[arg(long)]
    pub(crate) health_path: Option<String>,
    /// Print the chosen address and exit.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Command to run as a child (after `--`).
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// Compose project name (default: the current directory's name, normalized as docker
    /// compose does). Only volumes labelled com.docker.compose.project=NAME are removed.
    #[arg(long, env = "COMPOSE_PROJECT_NAME")]
    pub(crate) project: Option<String>,
    /// Bind-mounted data directory to empty (repeatable).
    #[arg(long)]
    pub(crate) path: Vec<PathBuf>,
    /// List what would be removed and remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Replicas of each sample service.
    #[arg(long, default_value_t = 2)]
    pub(crate) replicas: u32,
    /// Proxy listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) proxy_listen: String,
    /// Demo account as NAME:PASSWORD.
    #[arg(long, default_value = "demo:demo")]
    pub(crate) user: String,
}
