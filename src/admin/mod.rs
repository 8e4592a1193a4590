//! The Kong 3.x Admin API (kong-compat §1) over any [`Store`].
//!
//! One axum fallback handler reads the path and dispatches by shape, the way Kong generates its
//! endpoints from the schemas: `/<collection>`, `/<collection>/{key}`, nested collections under a
//! parent (`/services/{s}/routes`), and the parent of a child (`/routes/{r}/service`). A `{key}`
//! is an id when it parses as a UUID, else the kind's endpoint key (name, username, key, target).
//!
//! Reads take one consistent view of the store ([`Store::tables`]); writes validate with the
//! schema engine (defaults, coercion of form input, Kong's messages), resolve references given
//! by name, and go to the store as one write each.

mod body;
mod breakers;
mod entities;
mod error;
mod grpc;
mod info;
mod paging;

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use error::AdminError;

use crate::model::schema::{EntityKind, PluginSchemas};
use crate::snapshot::SnapshotStore;
use crate::status::StatusState;
use crate::store::Store;

/// Largest body accepted by `POST /config`.
const CONFIG_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// Largest body accepted anywhere else: Kong's `nginx_admin_client_max_body_size` default (10m).
const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The configuration store.
    pub store: Arc<dyn Store>,
    /// The data plane's current snapshot (for health endpoints).
    pub snapshots: Arc<SnapshotStore>,
    /// Status counters (for `/status`).
    pub status: StatusState,
    /// Plugin schemas.
    pub plugins: Arc<dyn PluginSchemas>,
    /// Required token, if any.
    pub token: Option<Arc<str>>,
    /// The circuit-breaker plugin's per-service states (read-only views).
    pub breakers: Arc<crate::plugins::circuit_breaker::BreakerStates>,
    /// grpc-gateway discovery (states, on-demand refresh).
    pub grpc: Arc<crate::plugins::grpc_gateway::discovery::Discovery>,
}

/// The admin listener's router.
pub fn router(state: AdminState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Collection names in URLs and the kinds behind them.
fn collection(name: &str) -> Option<EntityKind> {
    Some(match name {
        "services" => EntityKind::Services,
        "routes" => EntityKind::Routes,
        "upstreams" => EntityKind::Upstreams,
        "consumers" => EntityKind::Consumers,
        "plugins" => EntityKind::Plugins,
        "key-auths" => EntityKind::KeyauthCredentials,
        "jwts" => EntityKind::JwtSecrets,
        "acls" => EntityKind::Acls,
        "ca_certificates" => EntityKind::CaCertificates,
        _ => return None,
    })
}

/// Nested collections: (parent kind, URL segment, child kind, child's foreign key field).
const NESTED: &[(EntityKind, &str, EntityKind, &str)] = &[
    (
        EntityKind::Services,
        "routes",
        EntityKind::Routes,
        "service",
    ),
    (
        EntityKind::Services,
        "plugins",
        EntityKind::Plugins,
        "service",
    ),
    (EntityKind::Routes, "plugins", EntityKind::Plugins, "route"),
    (
        EntityKind::Consumers,
        "plugins",
        EntityKind::Plugins,
        "consumer",
    ),
    (
        EntityKind::Consumers,
        "key-auth",
        EntityKind::KeyauthCredentials,
        "consumer",
    ),
    (
        EntityKind::Consumers,
        "jwt",
        EntityKind::JwtSecrets,
        "consumer",
    ),
    (EntityKind::Consumers, "acls", EntityKind::Acls, "consumer"),
    (
        EntityKind::Upstreams,
        "targets",
        EntityKind::Targets,
        "upstream",
    ),
];

/// A request after the body was read.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) raw: bytes::Bytes,
}

impl Req {
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) async fn body(&self, yaml_ok: bool) -> Result<body::Body, AdminError> {
        body::parse(&self.headers, self.raw.clone(), yaml_ok).await
    }
}

fn authorized(state: &AdminState, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let given = headers
        .get("kong-admin-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
        });
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())))
}

async fn handle(State(state): State<AdminState>, request: Request) -> Response {
    let mut response = respond(&state, request).await;
    // Kong's admin responses say `application/json; charset=utf-8`, errors included (401, 413).
    let headers = response.headers_mut();
    if headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

async fn respond(state: &AdminState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(state, &parts.headers) {
        return AdminError::Unauthorized.into_response();
    }
    let path = parts.uri.path().to_owned();
    let limit = if path.trim_end_matches('/') == "/config" {
        CONFIG_BODY_LIMIT
    } else {
        BODY_LIMIT
    };
    let Ok(raw) = axum::body::to_bytes(AxumBody::new(body), limit).await else {
        return AdminError::TooLarge.into_response();
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        raw,
    };
    match dispatch(state, &req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// 200 with a JSON body.
pub(crate) fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn allow(method: &Method, allowed: &[Method]) -> Result<(), AdminError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(AdminError::MethodNotAllowed)
    }
}

async fn dispatch(state: &AdminState, req: &Req) -> Result<Response, AdminError> {
    let segs: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &req.method;
    use Method as M;
    match segs.as_slice() {
        [] => {
            allow(m, &[M::GET])?;
            Ok(info::node_info(state))
        }
        ["status"] => {
            allow(m, &[M::GET])?;
            Ok(crate::status::status(State(state.status.clone()))
                .await
                .into_response())
        }
        ["metrics"] => {
            allow(m, &[M::GET])?;
            Ok(crate::status::metrics(State(state.status.clone())).await)
        }
        ["endpoints"] => {
            allow(m, &[M::GET])?;
            Ok(info::endpoints())
        }
        ["config"] => match *m {
            M::GET => Ok(info::get_config(state)),
            M::POST => info::post_config(state, req).await,
            _ => Err(AdminError::MethodNotAllowed),
        },
        ["tags"] => {
            allow(m, &[M::GET])?;
            paging::tags(state, req, None)
        }
        ["tags", tag] => {
            allow(m, &[M::GET])?;
            paging::tags(state, req, Some(tag))
        }
        ["circuit-breakers"] => {
            allow(m, &[M::GET])?;
            Ok(breakers::list(state))
        }
        ["grpc-gateway"] => {
            allow(m, &[M::GET])?;
            Ok(grpc::list(state))
        }
        ["grpc-gateway", "refresh"] => {
            allow(m, &[M::POST])?;
            Ok(grpc::refresh_all(state).await)
        }
        ["grpc-gateway", plugin] => {
            allow(m, &[M::GET])?;
            grpc::show(state, plugin)
        }
        ["grpc-gateway", plugin, "refresh"] => {
            allow(m, &[M::POST])?;
            grpc::refresh(state, plugin).await
        }
        ["plugins", "enabled"] => {
            allow(m, &[M::GET])?;
            Ok(ok(
                serde_json::json!({ "enabled_plugins": state.plugins.names() }),
            ))
        }
        ["plugins", "schema", name] | ["schemas", "plugins", name] if *name != "validate" => {
            allow(m, &[M::GET])?;
            info::plugin_schema(state, name)
        }
        ["schemas", "plugins", "validate"] => {
            allow(m, &[M::POST])?;
            info::validate_schema(state, req, EntityKind::Plugins).await
        }
        ["schemas", entity] => {
            allow(m, &[M::GET])?;
            info::entity_schema(entity)
        }
        ["schemas", entity, "validate"] => {
            allow(m, &[M::POST])?;
            let kind = info::schema_kind(entity).ok_or(AdminError::NotFound)?;
            info::validate_schema(state, req, kind).await
        }
        [coll] => {
            let kind = collection(coll).ok_or(AdminError::NotFound)?;
            let scope = entities::Scope::top(kind);
            match *m {
                M::GET => entities::list(state, req, &scope),
                M::POST => entities::create(state, req, &scope).await,
                _ => Err(AdminError::MethodNotAllowed),
            }
        }
        [coll, key] => {
            let kind = collection(coll).ok_or(AdminError::NotFound)?;
            let scope = entities::Scope::top(kind);
            entities::entity(state, req, &scope, key).await
        }
        ["services", s, "circuit-breaker"] => {
            allow(m, &[M::GET])?;
            breakers::service(state, s)
        }
        ["upstreams", u, "health"] => {
            allow(m, &[M::GET])?;
            entities::upstream_health(state, req, u)
        }
        ["upstreams", u, "targets", "all"] => {
            allow(m, &[M::GET])?;
            let scope = entities::Scope::nested(state, EntityKind::Upstreams, u, "targets")?;
            entities::list(state, req, &scope)
        }
        [
            "upstreams",
            u,
            "targets",
            t,
            verdict @ ("healthy" | "unhealthy"),
        ] => {
            allow(m, &[M::PUT, M::POST])?;
            entities::set_health(state, u, t, None, *verdict == "healthy").await
        }
        [
            "upstreams",
            u,
            "targets",
            t,
            address,
            verdict @ ("healthy" | "unhealthy"),
        ] => {
            allow(m, &[M::PUT, M::POST])?;
            entities::set_health(state, u, t, Some(address), *verdict == "healthy").await
        }
        [coll, key, sub] => {
            let parent = collection(coll).ok_or(AdminError::NotFound)?;
            if NESTED.iter().any(|(p, s, ..)| *p == parent && s == sub) {
                let scope = entities::Scope::nested(state, parent, key, sub)?;
                return match *m {
                    M::GET => entities::list(state, req, &scope),
                    M::POST => entities::create(state, req, &scope).await,
                    _ => Err(AdminError::MethodNotAllowed),
                };
            }
            entities::parent_of(state, req, parent, key, sub).await
        }
        [coll, key, sub, child] => {
            let parent = collection(coll).ok_or(AdminError::NotFound)?;
            if !NESTED.iter().any(|(p, s, ..)| *p == parent && s == sub) {
                return Err(AdminError::NotFound);
            }
            let scope = entities::Scope::nested(state, parent, key, sub)?;
            entities::entity(state, req, &scope, child).await
        }
        _ => Err(AdminError::NotFound),
    }
}

/// Parse a UUID the way Kong does for URL keys.
pub(crate) fn as_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok().filter(|_| s.len() == 36)
}
