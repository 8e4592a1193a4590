//! `gwctl serve`: turn flags into [`gwctl::serve::ServeOptions`] and run the gateway.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = gwctl::serve::ServeOptions {
        config: args.config,
        database_url: args.database_url,
        proxy_listen: args.proxy_listen,
        proxy_tls_listen: args.proxy_tls_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        admin_listen: args.admin_listen,
        status_listen: args.status_listen,
        admin_token: args.admin_token,
        workers: args.workers.unwrap_or(0),
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        trusted_ips: args.trusted_ips,
        access_log: gwctl::telemetry::access_log::AccessLogConfig {
            target: args.access_log,
            ..Default::default()
        },
    };
    // The control plane (status and admin APIs, health checks, config reloads) runs on this
    // thread; `serve` starts one proxy thread per worker with its own event loop.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(gwctl::serve::run(options))?;
    Ok(ExitCode::SUCCESS)
}
