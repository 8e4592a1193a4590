//! gwctl's sample monitor service. `GET /alerts` answers the alerts of the user the gateway
//! authenticated (the `auth-user-identifier` header set by `jwt-claim-headers` from the token's
//! `sub`), inside a span `alerts` with a nested span `fetch_alerts` that records the event
//! `Fetched Alerts` (`num_alerts`). The simulated fetch waits asynchronously, never blocking the
//! runtime. `GET /health`: 204. Every response carries `X-App-Instance-ID`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use svc_telemetry::OpenTelemetrySpanExt;
use tracing::Instrument;

/// The header the gateway sets to the authenticated user.
pub const USER_HEADER: &str = "auth-user-identifier";

/// The service's settings.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// This process's id for `X-App-Instance-ID`.
    pub instance_id: String,
    /// How long the simulated alert store takes to answer.
    pub fetch_delay: Duration,
}

/// One alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// Alert id.
    pub id: u32,
    /// Alert name.
    pub name: String,
}

/// The service's routes.
pub fn app(config: MonitorConfig) -> Router {
    let instance = HeaderValue::from_str(&config.instance_id)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    Router::new()
        .route("/alerts", get(alerts))
        .route("/health", get(health))
        .with_state(Arc::new(config))
        .layer(svc_telemetry::TraceLayer::new())
        .layer(axum::middleware::map_response(move |mut resp: Response| {
            let v = instance.clone();
            async move {
                resp.headers_mut().insert("x-app-instance-id", v);
                resp
            }
        }))
}

async fn alerts(State(config): State<Arc<MonitorConfig>>, headers: HeaderMap) -> Response {
    let Some(user) = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
    else {
        tracing::warn!("request without {USER_HEADER}: not coming through the gateway?");
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "detail": format!("missing {USER_HEADER} header") })),
        )
            .into_response();
    };
    let span = tracing::info_span!("alerts", user = %user);
    async move {
        tracing::info!("Fetching alerts");
        let alerts = fetch_alerts(&user, config.fetch_delay)
            .instrument(tracing::info_span!("fetch_alerts"))
            .await;
        tracing::info!(num_alerts = alerts.len(), "returning alerts");
        Json(serde_json::json!({ "user": user, "alerts": alerts })).into_response()
    }
    .instrument(span)
    .await
}

/// The simulated alert store.
async fn fetch_alerts(user: &str, delay: Duration) -> Vec<Alert> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let alerts: Vec<Alert> = (1..=2)
        .map(|id| Alert {
            id,
            name: format!("Alert {id} for {user}"),
        })
        .collect();
    // A span event on `fetch_alerts` (what the original service recorded), and a log line.
    let n = i64::try_from(alerts.len()).unwrap_or(i64::MAX);
    tracing::Span::current().add_event(
        "Fetched Alerts",
        vec![svc_telemetry::SpanAttribute::new("num_alerts", n)],
    );
    tracing::info!(num_alerts = alerts.len(), "Fetched Alerts");
    alerts
}

async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Serve on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MonitorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(config))
        .with_graceful_shutdown(shutdown)
        .await
}
