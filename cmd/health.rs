//! `gwctl health`: exit 0 when `/status/ready` answers 200 (Kong's `kong health`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::HealthArgs;

pub(crate) fn run(args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/status/ready", args.status_url.trim_end_matches('/'));
    let rt = crate::small_runtime()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building HTTP client")?;
        let resp = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("gateway not reachable at {url}"))?;
        let status = resp.status();
        if status.is_success() {
            tracing::debug!(%url, "gateway ready");
            return Ok(ExitCode::SUCCESS);
        }
        let body = resp.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        bail!("gateway not ready ({status}): {reason}")
    })
}
