//! `gwctl up`: the sample system on one machine (see [`gwctl::ops::up`]). Prints the URLs and a
//! curl line once everything is registered; Ctrl-C (or SIGTERM) stops everything it started.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use gwctl::ops::progress;
use gwctl::ops::up::{self, UpOptions};

use crate::cli::UpArgs;

/// Run `gwctl up`.
pub(crate) fn run(args: UpArgs, log_json: bool) -> anyhow::Result<ExitCode> {
    let (user, password) = args
        .user
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .context("--user must be NAME:PASSWORD")?;
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    // The default demo password is public (CONTRACT: said in the start-up output); a password
    // the user chose is never printed.
    let shown = if args.user == "demo:demo" {
        "demo"
    } else {
        "..."
    };
    let gwctl = std::env::current_exe().context("locating the gwctl executable")?;
    let services_dir = gwctl
        .parent()
        .context("the gwctl executable has no directory")?
        .to_path_buf();
    let options = UpOptions {
        replicas: args.replicas,
        proxy_listen: args.proxy_listen,
        user: user.to_owned(),
        password: password.to_owned(),
        gwctl,
        services_dir,
        otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "http://127.0.0.1:4318".to_owned()),
        log_json,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        let reporter = progress::for_stderr();
        let user = options.user.clone();
        up::run(options, rx, reporter.as_ref(), |running| {
            let proxy = running
                .bound
                .proxy
                .first()
                .map_or_else(|| "?".to_owned(), ToString::to_string);
            let admin = running
                .bound
                .admin
                .map_or_else(|| "off".to_owned(), |a| a.to_string());
            let mut lines = vec![
                format!("gateway  http://{proxy}  (admin http://{admin})"),
                format!("auth     http://{proxy}/api/auth     (POST /login, GET /health)"),
                format!("monitor  http://{proxy}/api/monitor  (GET /alerts with the token, GET /health)"),
            ];
            for (upstream, addr) in &running.replicas {
                lines.push(format!("  {upstream} target {addr}"));
            }
            lines.push(format!("demo account: {user} / {shown}"));
            lines.push("try:".to_owned());
            lines.push(format!(
                "  TOKEN=$(curl -s -X POST http://{proxy}/api/auth/login -H 'content-type: application/json' -d '{{\"username\":\"{user}\",\"password\":\"{shown}\"}}' | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
            ));
            lines.push(format!("  curl -s http://{proxy}/api/monitor/alerts -H \"Authorization: Bearer $TOKEN\""));
            lines.push("Ctrl-C stops everything.".to_owned());
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}
