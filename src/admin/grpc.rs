//! grpc-gateway discovery (gwctl's own endpoints): `GET /grpc-gateway` (every reflection
//! instance's state), `GET /grpc-gateway/{plugin id}`, `POST /grpc-gateway/{plugin id}/refresh`
//! (refresh now, answer with the report) and `POST /grpc-gateway/refresh` (all of them).
//! The discovered routes themselves are ordinary routes (`GET /routes?tags=grpc-discovered`).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{AdminError, AdminState, as_uuid, ok};
use crate::plugins::grpc_gateway::discovery::{Discovery, DiscoveryError};

/// `GET /grpc-gateway`.
pub(crate) fn list(state: &AdminState) -> Response {
    let tables = state.store.tables();
    ok(json!({ "data": state.grpc.views(&tables), "next": null }))
}

fn instance(
    state: &AdminState,
    key: &str,
) -> Result<
    (
        crate::model::Plugin,
        crate::plugins::grpc_gateway::GrpcGatewayConfig,
    ),
    AdminError,
> {
    let id = as_uuid(key).ok_or(AdminError::NotFound)?;
    Discovery::instances(&state.store.tables())
        .into_iter()
        .find(|(p, _)| p.id == id)
        .ok_or(AdminError::NotFound)
}

/// `GET /grpc-gateway/{plugin}`.
pub(crate) fn show(state: &AdminState, key: &str) -> Result<Response, AdminError> {
    let (p, c) = instance(state, key)?;
    Ok(ok(state.grpc.view(&p, &c)))
}

fn failure(e: &DiscoveryError) -> AdminError {
    let status = match e {
        DiscoveryError::NotFound(_) => StatusCode::NOT_FOUND,
        DiscoveryError::Config(_) => StatusCode::BAD_REQUEST,
        DiscoveryError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
        DiscoveryError::Reflection(_) | DiscoveryError::Store(_) => StatusCode::BAD_GATEWAY,
    };
    AdminError::Status(status, e.to_string())
}

/// `POST /grpc-gateway/{plugin}/refresh`.
pub(crate) async fn refresh(state: &AdminState, key: &str) -> Result<Response, AdminError> {
    let (p, _) = instance(state, key)?;
    let report = state.grpc.refresh(p.id).await.map_err(|e| failure(&e))?;
    Ok(ok(serde_json::to_value(report).unwrap_or(Value::Null)))
}

/// `POST /grpc-gateway/refresh`: every instance; failures are listed, not fatal.
pub(crate) async fn refresh_all(state: &AdminState) -> Response {
    let mut data = Vec::new();
    for (p, _) in Discovery::instances(&state.store.tables()) {
        match state.grpc.refresh(p.id).await {
            Ok(r) => data.push(serde_json::to_value(r).unwrap_or(Value::Null)),
            Err(e) => data.push(json!({ "plugin": p.id, "error": e.to_string() })),
        }
    }
    ok(json!({ "data": data }))
}
