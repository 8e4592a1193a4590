//! The status API (`/status`, `/status/ready`, `/metrics`) served on the status listener, and the
//! minimal node-info endpoints of the admin listener.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::proxy::Stats;
use crate::snapshot::SnapshotStore;

/// What the status and admin handlers read.
#[derive(Clone)]
pub struct StatusState {
    /// Current configuration.
    pub store: Arc<SnapshotStore>,
    /// Proxy counters.
    pub stats: Arc<Stats>,
    /// Whether the proxy listeners are up (for readiness).
    pub proxy_up: Arc<std::sync::atomic::AtomicBool>,
    /// This node's id.
    pub node_id: uuid::Uuid,
    /// The configuration store (for `database.reachable`).
    pub config: Arc<dyn crate::store::Store>,
    /// The circuit-breaker states (for `/metrics`).
    pub breakers: Arc<crate::plugins::circuit_breaker::BreakerStates>,
    /// The prometheus plugin's counters (for `/metrics`).
    pub prometheus: Arc<crate::plugins::prometheus::Exporter>,
}

/// The status listener's router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /status` in Kong's shape. DB-less: `configuration_hash` instead of `database`.
pub async fn status(State(s): State<StatusState>) -> Json<serde_json::Value> {
    let st = &s.stats;
    let active = st.connections_active.load(Ordering::Relaxed).max(0);
    let writing = st
        .requests_in_flight
        .load(Ordering::Relaxed)
        .clamp(0, active);
    let mut body = json!({
        "server": {
            "total_requests": st.total_requests.load(Ordering::Relaxed),
            "connections_active": active,
            "connections_accepted": st.connections_accepted.load(Ordering::Relaxed),
            "connections_handled": st.connections_handled.load(Ordering::Relaxed),
            "connections_reading": 0,
            "connections_writing": writing,
            "connections_waiting": active - writing,
        },
        "memory": {
            "workers_lua_vms": [],
            "lua_shared_dicts": {},
        },
    });
    if let Some(db) = s.config.database() {
        body["database"] = json!({ "reachable": db.reachable });
    } else {
        body["configuration_hash"] = json!(s.store.load().hash);
    }
    Json(body)
}

/// `GET /status/ready`: 200 once a configuration is loaded and the proxy listens.
pub async fn ready(State(s): State<StatusState>) -> Response {
    if !s.proxy_up.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "proxy listener is not up"})),
        )
            .into_response();
    }
    if !s.store.load().loaded {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "no configuration available"})),
        )
            .into_response();
    }
    (StatusCode::OK, Json(json!({"message": "ready"}))).into_response()
}

/// `GET /metrics`: the Prometheus text exposition ([`crate::telemetry::metrics`]).
pub async fn metrics(State(s): State<StatusState>) -> Response {
    let body = crate::telemetry::metrics::render(&s);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

/// Kong's 404 body.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response()
}
