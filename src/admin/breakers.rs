//! Read-only view of the `circuit-breaker` plugin's per-service states (gwctl's own endpoints):
//! `GET /circuit-breakers` and `GET /services/{id or name}/circuit-breaker`.

use axum::response::Response;
use serde_json::{Value, json};

use super::entities::{Scope, find};
use super::{AdminError, AdminState, ok};
use crate::model::schema::EntityKind;
use crate::plugins::circuit_breaker::{BreakerView, State};
use crate::store::{Entity, Tables};

/// One breaker as JSON, with the service's current name from the store.
fn row(view: &BreakerView, tables: &Tables) -> Value {
    let name = match tables
        .get(EntityKind::Services, view.service_id)
        .map(|e| &**e)
    {
        Some(Entity::Service(s)) => s.name.clone(),
        _ => view.service_name.clone(),
    };
    json!({
        "service": {"id": view.service_id, "name": name},
        "state": view.state,
        "failures": view.failures,
        "successes": view.successes,
        "probes_in_flight": view.probes_in_flight,
        "opened_at": view.opened_at,
        "cool_down_remaining": view.cool_down_remaining,
        "last_failure_at": view.last_failure_at,
        "changed_at": view.changed_at,
        "times_opened": view.times_opened,
    })
}

/// Whether any circuit-breaker plugin is configured: without one, states left from earlier
/// configurations are not shown (nothing drives them).
fn configured(tables: &Tables) -> bool {
    tables.plugin_names().iter().any(|n| n == "circuit-breaker")
}

/// `GET /circuit-breakers`: every service whose breaker has seen traffic.
pub(crate) fn list(state: &AdminState) -> Response {
    let tables = state.store.tables();
    let data: Vec<Value> = if configured(&tables) {
        state
            .breakers
            .list()
            .iter()
            .map(|v| row(v, &tables))
            .collect()
    } else {
        Vec::new()
    };
    ok(json!({ "data": data, "next": null }))
}

/// `GET /services/{service}/circuit-breaker`: 404 for an unknown service; a service whose
/// breaker has not seen a request yet is closed with nothing counted.
pub(crate) fn service(state: &AdminState, key: &str) -> Result<Response, AdminError> {
    let tables = state.store.tables();
    let svc = find(&tables, &Scope::top(EntityKind::Services), key).ok_or(AdminError::NotFound)?;
    let Entity::Service(s) = &*svc else {
        return Err(AdminError::NotFound);
    };
    let seen = configured(&tables)
        .then(|| state.breakers.get(s.id))
        .flatten();
    let view = seen.unwrap_or_else(|| BreakerView {
        service_id: s.id,
        service_name: s.name.clone(),
        state: State::Closed,
        failures: 0,
        successes: 0,
        probes_in_flight: 0,
        opened_at: None,
        cool_down_remaining: None,
        last_failure_at: None,
        changed_at: 0,
        times_opened: 0,
    });
    Ok(ok(row(&view, &tables)))
}
