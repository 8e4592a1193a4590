//! The status API (`/status`, `/status/ready`) served on the status listener, and the minimal
//! node-info endpoints of the admin listener.

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
    /// Whether a database backs the configuration (Postgres mode).
    pub database: bool,
}

/// The status listener's router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
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
    if s.database {
        body["database"] = json!({ "reachable": true });
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

/// Kong's 404 body.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response()
}

/// The admin listener until the full Admin API exists: `GET /` and `/status`.
pub fn admin_router(state: StatusState) -> Router {
    Router::new()
        .route("/", get(node_info))
        .route("/status", get(status))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /`: node information in Kong's shape.
pub async fn node_info(State(s): State<StatusState>) -> Json<serde_json::Value> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    Json(json!({
        "tagline": "Welcome to gwctl",
        "version": crate::KONG_VERSION,
        "edition": "community",
        "hostname": hostname,
        "node_id": s.node_id,
        "gwctl_version": crate::VERSION,
        "timers": {"running": 0, "pending": 0},
        "plugins": {"available_on_server": {}, "enabled_in_cluster": []},
        "pids": {"master": std::process::id(), "workers": [std::process::id()]},
        "configuration": {
            "database": if s.database { "postgres" } else { "off" },
            "router_flavor": "traditional_compatible",
        },
    }))
}
