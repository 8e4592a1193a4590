//! Node information (`GET /`), `/config`, `/schemas`, `/endpoints`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::body::Encoding;
use super::error::AdminError;
use super::{AdminState, Req, ok};
use crate::model::schema::{Ctx, EntityKind, Field, FieldType, Schema, now_ms, validate};
use crate::store::Tables;

/// `GET /`: node information in Kong's shape. Plugin names come from an index, so this stays
/// fast with any number of plugin instances (Kong scans every plugin row).
pub(crate) fn node_info(state: &AdminState) -> Response {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let available: Map<String, Value> = state
        .plugins
        .names()
        .into_iter()
        .map(|n| {
            let p = state.plugins.priority(&n);
            (n, json!({"version": crate::KONG_VERSION, "priority": p}))
        })
        .collect();
    let tables = state.store.tables();
    let database = if state.store.database().is_some() {
        "postgres"
    } else {
        "off"
    };
    ok(json!({
        "tagline": "Welcome to gwctl",
        "version": crate::KONG_VERSION,
        "edition": "community",
        "hostname": hostname,
        "node_id": state.status.node_id,
        "gwctl_version": crate::VERSION,
        "lua_version": Value::Null,
        "timers": {"running": 0, "pending": 0},
        "plugins": {
            "available_on_server": available,
            "enabled_in_cluster": tables.plugin_names(),
        },
        "pids": {"master": std::process::id(), "workers": [std::process::id()]},
        "configuration": {
            "database": database,
            "router_flavor": "traditional_compatible",
            "role": "traditional",
            "admin_listen": [],
            "plugins": ["bundled"],
        },
    }))
}

/// `GET /endpoints`.
pub(crate) fn endpoints() -> Response {
    let mut list = vec![
        "/".to_owned(),
        "/status".to_owned(),
        "/config".to_owned(),
        "/endpoints".to_owned(),
        "/tags".to_owned(),
        "/tags/{tags}".to_owned(),
        "/plugins/enabled".to_owned(),
        "/circuit-breakers".to_owned(),
        "/services/{services}/circuit-breaker".to_owned(),
        "/grpc-gateway".to_owned(),
        "/grpc-gateway/refresh".to_owned(),
        "/grpc-gateway/{plugins}".to_owned(),
        "/grpc-gateway/{plugins}/refresh".to_owned(),
        "/schemas/{db_entity_name}".to_owned(),
        "/schemas/{db_entity_name}/validate".to_owned(),
        "/schemas/plugins/{name}".to_owned(),
        "/schemas/plugins/validate".to_owned(),
        "/upstreams/{upstreams}/health".to_owned(),
        "/upstreams/{upstreams}/targets/all".to_owned(),
        "/upstreams/{upstreams}/targets/{targets}/healthy".to_owned(),
        "/upstreams/{upstreams}/targets/{targets}/unhealthy".to_owned(),
        "/upstreams/{upstreams}/targets/{targets}/{address}/healthy".to_owned(),
        "/upstreams/{upstreams}/targets/{targets}/{address}/unhealthy".to_owned(),
    ];
    for c in [
        "services",
        "routes",
        "upstreams",
        "consumers",
        "plugins",
        "key-auths",
        "jwts",
        "acls",
        "ca_certificates",
    ] {
        list.push(format!("/{c}"));
        list.push(format!("/{c}/{{{c}}}"));
    }
    for (p, s, ..) in super::NESTED {
        let p = p.name();
        list.push(format!("/{p}/{{{p}}}/{s}"));
        list.push(format!("/{p}/{{{p}}}/{s}/{{{s}}}"));
    }
    list.sort();
    ok(json!({ "data": list }))
}

/// The whole configuration as a declarative document (flat, references by id).
fn export(tables: &Tables) -> Value {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    for kind in EntityKind::ALL {
        let rows = tables.table(kind).rows();
        if rows.is_empty() {
            continue;
        }
        doc.insert(
            kind.name().into(),
            Value::from(rows.values().map(|e| e.to_json()).collect::<Vec<_>>()),
        );
    }
    Value::Object(doc)
}

/// `GET /config`: `{"config": "<YAML>"}`.
pub(crate) fn get_config(state: &AdminState) -> Response {
    let yaml = serde_yaml::to_string(&export(&state.store.tables())).unwrap_or_default();
    ok(json!({ "config": yaml }))
}

/// `POST /config` (DB-less): replace everything.
pub(crate) async fn post_config(state: &AdminState, req: &Req) -> Result<Response, AdminError> {
    if state.store.database().is_some() {
        return Err(AdminError::BadRequest(
            "this endpoint is only available when Kong is configured to not use a database".into(),
        ));
    }
    let body = req.body(true).await?;
    let text: Option<String> = match body.encoding {
        Encoding::Empty => {
            return Err(AdminError::BadRequest(
                "expected a declarative configuration".into(),
            ));
        }
        Encoding::Yaml => Some(String::from_utf8_lossy(&body.raw).into_owned()),
        Encoding::Form => match body.value.get("config") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => {
                return Err(AdminError::BadRequest(
                    "expected a declarative configuration".into(),
                ));
            }
        },
        Encoding::Json => match body.value.get("config") {
            Some(Value::String(s)) if body.value.get("_format_version").is_none() => {
                Some(s.clone())
            }
            _ => None,
        },
    };
    let hash = crate::declarative::config_hash(
        text.as_deref()
            .unwrap_or(&String::from_utf8_lossy(&body.raw)),
    );
    if req
        .query("check_hash")
        .is_some_and(|v| v == "1" || v == "true")
        && hash == state.store.config_hash()
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let parsed = match &text {
        Some(t) => crate::declarative::parse_with(t, &*state.plugins, now_ms()),
        None => crate::declarative::from_value(&body.value, &*state.plugins, now_ms()),
    };
    let config = parsed.map_err(|e| AdminError::Declarative(e.to_kong_json()))?;
    let tables = Tables::from_config(config);
    let mut flat = Map::new();
    for kind in EntityKind::ALL {
        let rows = tables.table(kind).rows();
        let m: Map<String, Value> = rows
            .iter()
            .map(|(id, e)| (id.to_string(), e.to_json()))
            .collect();
        flat.insert(kind.name().into(), Value::Object(m));
    }
    state.store.replace_all(tables, hash).await?;
    Ok((StatusCode::CREATED, axum::Json(Value::Object(flat))).into_response())
}

/// Kong's JSON for a field definition.
fn field_json(f: &Field) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(f.ty.name()));
    if f.required {
        m.insert("required".into(), json!(true));
    }
    if let Some(d) = &f.default {
        m.insert("default".into(), d.clone());
    }
    if f.auto.is_some() {
        m.insert("auto".into(), json!(true));
    }
    if let Some(o) = &f.one_of {
        m.insert("one_of".into(), Value::from(o.clone()));
    }
    if let Some((lo, hi)) = f.between {
        m.insert("between".into(), json!([lo, hi]));
    }
    if let Some(n) = f.len_min {
        m.insert("len_min".into(), json!(n));
    }
    if let Some(p) = f.starts_with {
        m.insert("starts_with".into(), json!(p));
    }
    if f.uuid {
        m.insert("uuid".into(), json!(true));
    }
    match &f.ty {
        FieldType::Array(e) | FieldType::Set(e) => {
            m.insert("elements".into(), field_json(e));
        }
        FieldType::Map(k, v) => {
            m.insert("keys".into(), field_json(k));
            m.insert("values".into(), field_json(v));
        }
        FieldType::Record(s) => {
            m.insert("fields".into(), fields_json(s));
        }
        FieldType::Foreign(e) => {
            m.insert("reference".into(), json!(e));
        }
        _ => {}
    }
    Value::Object(m)
}

fn fields_json(s: &Schema) -> Value {
    Value::from(
        s.fields
            .iter()
            .map(|(name, f)| json!({ *name: field_json(f) }))
            .collect::<Vec<_>>(),
    )
}

/// The kind behind a `/schemas/{name}` name (DAO names and URL names both work).
pub(crate) fn schema_kind(name: &str) -> Option<EntityKind> {
    EntityKind::from_name(name).or_else(|| super::collection(name))
}

/// `GET /schemas/{entity}`.
pub(crate) fn entity_schema(name: &str) -> Result<Response, AdminError> {
    let kind = schema_kind(name).ok_or_else(|| {
        AdminError::Status(StatusCode::NOT_FOUND, format!("No entity named '{name}'"))
    })?;
    Ok(ok(json!({ "fields": fields_json(kind.schema()) })))
}

/// `GET /schemas/plugins/{name}`.
pub(crate) fn plugin_schema(state: &AdminState, name: &str) -> Result<Response, AdminError> {
    let config = state.plugins.config(name).ok_or_else(|| {
        AdminError::Status(StatusCode::NOT_FOUND, format!("No plugin named '{name}'"))
    })?;
    let mut fields = vec![json!({ "config": field_json(&config) })];
    if let Value::Array(rest) = fields_json(EntityKind::Plugins.schema()) {
        fields.extend(rest.into_iter().filter(|f| f.get("config").is_none()));
    }
    Ok(ok(json!({ "fields": fields })))
}

/// `POST /schemas/{entity}/validate` and `POST /schemas/plugins/validate`.
pub(crate) async fn validate_schema(
    state: &AdminState,
    req: &Req,
    kind: EntityKind,
) -> Result<Response, AdminError> {
    let body = req.body(false).await?;
    let input = body.object()?;
    let ctx = Ctx {
        now_ms: now_ms(),
        plugins: &*state.plugins,
        coerce: body.coerce(),
    };
    validate(kind, &Value::Object(input), &ctx)?;
    Ok(ok(json!({ "message": "schema validation successful" })))
}
