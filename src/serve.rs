//! `gwctl serve`: bind listeners, load configuration, run until SIGTERM/SIGINT, drain.

use std::path::PathBuf;
use std::time::Duration;

/// Options for [`run`], built by the CLI from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Declarative file loaded at start.
    pub config: Option<PathBuf>,
    /// Postgres URL (not supported yet).
    pub database_url: Option<String>,
    /// Proxy listen addresses.
    pub proxy_listen: Vec<String>,
    /// TLS proxy listen addresses.
    pub proxy_tls_listen: Vec<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Admin listen address or `off`.
    pub admin_listen: String,
    /// Status listen address or `off`.
    pub status_listen: String,
    /// Admin token.
    pub admin_token: Option<String>,
    /// Graceful shutdown bound.
    pub drain_timeout: Duration,
    /// Peers whose forwarding headers are trusted.
    pub trusted_ips: Vec<String>,
}

/// Run the gateway until a shutdown signal.
pub async fn run(_options: ServeOptions) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
