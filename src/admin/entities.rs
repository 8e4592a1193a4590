//! CRUD for every entity kind, top-level and nested (kong-compat §1.2, §1.3), and the
//! upstream health endpoints.

use std::ops::Bound;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::AdminError;
use super::paging::{self, TagFilter};
use super::{AdminState, NESTED, Req, as_uuid, ok};
use crate::model::schema::{Ctx, EntityKind, FieldType, Schema, now_ms, validate};
use crate::store::entity::{endpoint_key, foreign_defs, unique_defs};
use crate::store::{Entity, HealthOverride, StoreError, Tables, WriteOp};

/// The parent of a nested collection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parent {
    /// The parent's id.
    pub(crate) id: Uuid,
    /// The child's foreign key field pointing at it.
    pub(crate) field: &'static str,
}

/// Which rows a request addresses: a kind, maybe restricted to one parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope {
    pub(crate) kind: EntityKind,
    pub(crate) parent: Option<Parent>,
}

impl Scope {
    pub(crate) fn top(kind: EntityKind) -> Self {
        Self { kind, parent: None }
    }

    /// `/<parent>/{key}/<sub>`: resolve the parent (404 when absent).
    pub(crate) fn nested(
        state: &AdminState,
        parent: EntityKind,
        key: &str,
        sub: &str,
    ) -> Result<Self, AdminError> {
        let (_, _, child, field) = NESTED
            .iter()
            .find(|(p, s, ..)| *p == parent && *s == sub)
            .ok_or(AdminError::NotFound)?;
        let tables = state.store.tables();
        let p = find(&tables, &Self::top(parent), key).ok_or(AdminError::NotFound)?;
        Ok(Self {
            kind: *child,
            parent: Some(Parent { id: p.id(), field }),
        })
    }
}

/// Normalize a target key the way targets are stored (`host:port`, port 8000 by default).
fn target_key(key: &str) -> String {
    if key.starts_with('[') {
        if key.contains("]:") {
            key.to_owned()
        } else {
            format!("{key}:8000")
        }
    } else if key.matches(':').count() == 1 {
        key.to_owned()
    } else if key.contains(':') {
        format!("[{key}]:8000")
    } else {
        format!("{key}:8000")
    }
}

/// Find an entity of the scope by id or endpoint key.
pub(crate) fn find(t: &Tables, scope: &Scope, key: &str) -> Option<Arc<Entity>> {
    let kind = scope.kind;
    let found = if let Some(id) = as_uuid(key) {
        t.get(kind, id).cloned()
    } else {
        match (kind, scope.parent) {
            (EntityKind::Targets, Some(p)) => t
                .by_unique(kind, 0, &format!("{}\u{1f}{}", target_key(key), p.id))
                .and_then(|id| t.get(kind, id).cloned()),
            (EntityKind::Acls, Some(p)) => t
                .by_unique(kind, 0, &format!("{}\u{1f}{key}", p.id))
                .and_then(|id| t.get(kind, id).cloned()),
            (EntityKind::Targets | EntityKind::Acls | EntityKind::CaCertificates, _) => None,
            _ => endpoint_key(kind)
                .and_then(|f| t.by_field(kind, f, key))
                .and_then(|id| t.get(kind, id).cloned()),
        }
    };
    found.filter(|e| {
        scope
            .parent
            .is_none_or(|p| e.foreign(p.field) == Some(p.id))
    })
}

/// `GET` a collection.
pub(crate) fn list(state: &AdminState, req: &Req, scope: &Scope) -> Result<Response, AdminError> {
    let size = paging::size(req)?;
    let after = paging::offset_id(req)?;
    let tags = TagFilter::parse(req)?;
    let t = state.store.tables();
    let kind = scope.kind;

    if kind == EntityKind::Consumers
        && scope.parent.is_none()
        && let Some(custom_id) = req.query("custom_id")
    {
        if custom_id.is_empty() {
            return Err(AdminError::BadRequest(
                "custom_id must be an unempty string".into(),
            ));
        }
        let data: Vec<Value> = t
            .by_field(kind, "custom_id", custom_id)
            .and_then(|id| t.get(kind, id))
            .filter(|e| tags.as_ref().is_none_or(|f| f.matches(e)))
            .map(|e| vec![e.to_json()])
            .unwrap_or_default();
        let total = data.len();
        return Ok(ok(paging::page_body(data, None, total)));
    }

    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let keep = |e: &Entity| tags.as_ref().is_none_or(|f| f.matches(e));
    let mut data = Vec::with_capacity(size.min(1024));
    let mut last = None;
    let mut more = false;
    let total;
    match scope.parent {
        Some(p) => {
            let empty = crate::store::tables::ChildSet::default();
            let ids = t.children(kind, p.field, p.id).unwrap_or(&empty);
            for id in ids.iter_after(after) {
                let Some(e) = t.get(kind, id) else { continue };
                if !keep(e) {
                    continue;
                }
                if data.len() == size {
                    more = true;
                    break;
                }
                data.push(e.to_json());
                last = Some(id);
            }
            total = if tags.is_some() {
                ids.iter_after(None)
                    .filter_map(|id| t.get(kind, id))
                    .filter(|e| keep(e))
                    .count()
            } else {
                ids.len()
            };
        }
        None => {
            let rows = t.table(kind).rows();
            for (id, e) in rows.range((lower, Bound::Unbounded)) {
                if !keep(e) {
                    continue;
                }
                if data.len() == size {
                    more = true;
                    break;
                }
                data.push(e.to_json());
                last = Some(*id);
            }
            total = if tags.is_some() {
                rows.values().filter(|e| keep(e)).count()
            } else {
                rows.len()
            };
        }
    }
    let next = match (more, last) {
        (true, Some(id)) => {
            let token = paging::encode_offset(&[json!(id)]);
            let url = paging::next_url(req, &token, scope.parent.is_none());
            Some((token, url))
        }
        _ => None,
    };
    Ok(ok(paging::page_body(data, next, total)))
}

/// Replace `{"name": "x"}`-style references with `{"id": ...}` (400 code 13 when unresolved).
fn resolve_refs(
    t: &Tables,
    kind: EntityKind,
    input: &mut Map<String, Value>,
) -> Result<(), AdminError> {
    for def in foreign_defs(kind) {
        let Some(Value::Object(obj)) = input.get(def.field) else {
            continue;
        };
        if obj.contains_key("id") || obj.len() != 1 {
            continue;
        }
        let Some((k, v)) = obj.iter().next() else {
            continue;
        };
        let Some(value) = v.as_str() else { continue };
        if !unique_defs(def.target)
            .iter()
            .any(|u| u.fields == [k.as_str()])
        {
            continue;
        }
        match t.by_field(def.target, k, value) {
            Some(id) => {
                input.insert(def.field.to_owned(), json!({ "id": id }));
            }
            None => {
                return Err(AdminError::Unresolved {
                    path: format!("{}.{k}", def.field),
                    key: format!("{{{k}=\"{value}\"}}"),
                    target: def.target.name(),
                });
            }
        }
    }
    Ok(())
}

/// Validate and write one entity.
async fn save(
    state: &AdminState,
    kind: EntityKind,
    mut input: Map<String, Value>,
    coerce: bool,
    insert: bool,
) -> Result<Entity, AdminError> {
    let t = state.store.tables();
    resolve_refs(&t, kind, &mut input)?;
    let ctx = Ctx {
        now_ms: now_ms(),
        plugins: &*state.plugins,
        coerce,
    };
    let e = validate(kind, &Value::Object(input), &ctx)?;
    let op = if insert {
        WriteOp::Insert(e.clone())
    } else {
        WriteOp::Upsert(e.clone())
    };
    state.store.write(op).await?;
    Ok(e)
}

fn created(e: &Entity) -> Response {
    (StatusCode::CREATED, axum::Json(e.to_json())).into_response()
}

/// `POST` to a collection.
pub(crate) async fn create(
    state: &AdminState,
    req: &Req,
    scope: &Scope,
) -> Result<Response, AdminError> {
    let body = req.body(false).await?;
    let mut input = body.object()?;
    if let Some(p) = scope.parent {
        input.insert(p.field.to_owned(), json!({ "id": p.id }));
    }
    let e = save(state, scope.kind, input, body.coerce(), true).await?;
    Ok(created(&e))
}

/// Merge a PATCH into the stored JSON: records merge field by field, everything else (arrays,
/// maps, scalars) is replaced.
fn merge(schema: Option<&Schema>, base: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        let field = schema.and_then(|s| s.field(&k));
        let record = match field.map(|f| &f.ty) {
            Some(FieldType::Record(s)) => Some(Some(&**s)),
            // Untyped records merge deeply; a plugin's `config` arrives here already merged with
            // the plugin's own schema (`prepare_config_patch`) and replaces the stored one.
            None if schema.is_none() => Some(None),
            _ => None,
        };
        match (record, base.get_mut(&k), v) {
            (Some(sub), Some(Value::Object(b)), Value::Object(p)) => merge(sub, b, p),
            (_, _, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `GET`, `PUT`, `PATCH`, `DELETE` on one entity.
pub(crate) async fn entity(
    state: &AdminState,
    req: &Req,
    scope: &Scope,
    key: &str,
) -> Result<Response, AdminError> {
    let kind = scope.kind;
    let t = state.store.tables();
    let existing = find(&t, scope, key);
    match req.method {
        Method::GET => existing
            .map(|e| ok(e.to_json()))
            .ok_or(AdminError::NotFound),
        Method::DELETE => {
            match existing {
                Some(e) => {
                    state.store.write(WriteOp::Delete(kind, e.id())).await?;
                }
                // Kong's nested endpoints select the child under its parent first: a child that
                // is missing (or another parent's) is 404 there. Top-level DELETE stays
                // idempotent (204).
                None if scope.parent.is_some() => return Err(AdminError::NotFound),
                None => {}
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::PATCH => {
            let e = existing.ok_or(AdminError::NotFound)?;
            patch(state, req, scope, &e).await
        }
        // Targets: PUT behaves like PATCH (kong-compat §1.2).
        Method::PUT if kind == EntityKind::Targets => {
            let e = existing.ok_or(AdminError::NotFound)?;
            patch(state, req, scope, &e).await
        }
        Method::PUT => put(state, req, scope, key, existing).await,
        _ => Err(AdminError::MethodNotAllowed),
    }
}

/// `PUT`: create or replace, by id or by endpoint key (the URL's key wins over the body's).
///
/// Kong upserts atomically on the key (`ON CONFLICT`), so concurrent PUTs of one new name all
/// succeed. Here the entity is built from a read of the store, so a PUT that loses the race meets
/// the winner's row as a unique violation on that key; it is retried as a replace of that row
/// (re-reading, with a short bounded wait for a Postgres mirror to see the other node's commit).
async fn put(
    state: &AdminState,
    req: &Req,
    scope: &Scope,
    key: &str,
    mut existing: Option<Arc<Entity>>,
) -> Result<Response, AdminError> {
    const RETRIES: u32 = 5;
    let kind = scope.kind;
    let body = req.body(false).await?;
    let url_id = as_uuid(key);
    let key_field = endpoint_key(kind).filter(|_| url_id.is_none());
    let mut attempt = 0;
    loop {
        let mut input = body.object()?;
        match (&existing, url_id) {
            (Some(e), _) => {
                let stored = e.to_json();
                input.insert("id".into(), json!(e.id()));
                if let Some(c) = stored.get("created_at") {
                    input.insert("created_at".into(), c.clone());
                }
            }
            (None, Some(id)) => {
                input.insert("id".into(), json!(id));
            }
            (None, None) => {
                input.remove("id");
            }
        }
        if let Some(field) = key_field {
            input.insert(field.to_owned(), Value::from(key));
        }
        input.remove("updated_at");
        if let Some(p) = scope.parent {
            input.insert(p.field.to_owned(), json!({ "id": p.id }));
        }
        let err = match save(state, kind, input, body.coerce(), false).await {
            Ok(e) => return Ok(ok(e.to_json())),
            Err(e) => e,
        };
        let lost_race = existing.is_none()
            && attempt < RETRIES
            && matches!(&err, AdminError::Store(StoreError::Unique { fields, .. })
                if key_field.is_some_and(|f| fields.get(f).is_some()));
        if !lost_race {
            return Err(err);
        }
        attempt += 1;
        let tables = state.store.tables();
        existing = find(&tables, scope, key);
        // The name is taken under another parent: a real conflict.
        if existing.is_none()
            && scope.parent.is_some()
            && find(&tables, &Scope::top(kind), key).is_some()
        {
            return Err(err);
        }
        if existing.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
            existing = find(&state.store.tables(), scope, key);
        }
    }
}

async fn patch(
    state: &AdminState,
    req: &Req,
    scope: &Scope,
    existing: &Entity,
) -> Result<Response, AdminError> {
    let body = req.body(false).await?;
    let mut input = body.object()?;
    input.remove("id");
    input.remove("created_at");
    let Value::Object(mut base) = existing.to_json() else {
        return Err(AdminError::NotFound);
    };
    if scope.kind == EntityKind::Plugins {
        prepare_config_patch(state, &mut base, &mut input);
    }
    merge(Some(scope.kind.schema()), &mut base, input);
    base.remove("updated_at");
    if let Some(p) = scope.parent {
        base.insert(p.field.to_owned(), json!({ "id": p.id }));
    }
    let e = save(state, scope.kind, base, body.coerce(), false).await?;
    Ok(ok(e.to_json()))
}

/// A PATCH of a plugin's `config`: merged into the stored config with the plugin's schema, its
/// shorthands (Kong's deprecated flat fields) expanded first and their stored echoes dropped
/// (see `Schema::prepare_patch`).
fn prepare_config_patch(
    state: &AdminState,
    base: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) {
    let name = patch
        .get("name")
        .or_else(|| base.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(field) = name.and_then(|n| state.plugins.config(&n)) else {
        return;
    };
    let FieldType::Record(schema) = &field.ty else {
        return;
    };
    if let (Some(Value::Object(stored)), Some(Value::Object(p))) =
        (base.get_mut("config"), patch.get_mut("config"))
    {
        schema.prepare_patch(stored, p);
        // Kong merges a patched config into the stored one (records field by field, maps and
        // arrays replaced); the plugin schema's `config` is untyped, so merge it here with the
        // plugin's own schema and let the entity merge take the result as a whole.
        let mut merged = stored.clone();
        merge(Some(schema), &mut merged, std::mem::take(p));
        *p = merged;
    }
}

/// `/<child>/{key}/<fk>`: the entity a child references (`/routes/{r}/service`).
pub(crate) async fn parent_of(
    state: &AdminState,
    req: &Req,
    kind: EntityKind,
    key: &str,
    field: &str,
) -> Result<Response, AdminError> {
    let def = foreign_defs(kind)
        .iter()
        .find(|d| d.field == field)
        .ok_or(AdminError::NotFound)?;
    let t = state.store.tables();
    let child = find(&t, &Scope::top(kind), key).ok_or(AdminError::NotFound)?;
    let parent = child.foreign(field).ok_or(AdminError::NotFound)?;
    // Kong checks the child and its reference first: DELETE is 405 only when both exist.
    if req.method == Method::DELETE {
        return Err(AdminError::MethodNotAllowed);
    }
    entity(state, req, &Scope::top(def.target), &parent.to_string()).await
}

/// `GET /upstreams/{u}/health`.
pub(crate) fn upstream_health(
    state: &AdminState,
    req: &Req,
    key: &str,
) -> Result<Response, AdminError> {
    let t = state.store.tables();
    let upstream = find(&t, &Scope::top(EntityKind::Upstreams), key).ok_or(AdminError::NotFound)?;
    let Entity::Upstream(u) = &*upstream else {
        return Err(AdminError::NotFound);
    };
    let snapshot = state.snapshots.load();
    let health = snapshot.balancers.get(&u.name).map(|b| b.health());
    let node_id = state.status.node_id;
    if req
        .query("balancer_health")
        .is_some_and(|v| v == "1" || v == "true")
    {
        let healthy = health.as_ref().is_none_or(|h| h.balancer_healthy);
        let word = if healthy { "HEALTHY" } else { "UNHEALTHY" };
        return Ok(ok(json!({
            "data": {"id": u.id, "health": word, "balancer_health": word},
            "next": null,
            "node_id": node_id,
        })));
    }
    let mut data = Vec::new();
    if let Some(ids) = t.children(EntityKind::Targets, "upstream", u.id) {
        for id in ids.iter_after(None) {
            let Some(Entity::Target(target)) = t.get(EntityKind::Targets, id).map(|e| &**e) else {
                continue;
            };
            let mut row = serde_json::to_value(target).unwrap_or(Value::Null);
            let th = health
                .as_ref()
                .and_then(|h| h.targets.iter().find(|x| x.target == target.target));
            let word = th.map_or("HEALTHCHECKS_OFF", |x| x.health.as_kong_str());
            let addresses: Vec<Value> = th
                .map(|x| {
                    x.addresses
                        .iter()
                        .map(|a| {
                            json!({"ip": a.ip, "port": a.port, "health": a.health.as_kong_str(),
                                   "weight": a.weight})
                        })
                        .collect()
                })
                .unwrap_or_default();
            row["health"] = Value::from(word);
            row["data"] = json!({ "addresses": addresses });
            data.push(row);
        }
    }
    let total = data.len();
    let mut body = paging::page_body(data, None, total);
    body["node_id"] = json!(node_id);
    Ok(ok(body))
}

/// `PUT /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy`: 204, broadcast to every node.
pub(crate) async fn set_health(
    state: &AdminState,
    upstream: &str,
    target: &str,
    address: Option<&str>,
    healthy: bool,
) -> Result<Response, AdminError> {
    let t = state.store.tables();
    let u = find(&t, &Scope::top(EntityKind::Upstreams), upstream).ok_or(AdminError::NotFound)?;
    let scope = Scope {
        kind: EntityKind::Targets,
        parent: Some(Parent {
            id: u.id(),
            field: "upstream",
        }),
    };
    let target = find(&t, &scope, target).ok_or(AdminError::NotFound)?;
    state
        .store
        .set_health(HealthOverride {
            upstream: u.id(),
            target: target.id(),
            address: address.map(str::to_owned),
            healthy,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_get_the_default_port() {
        assert_eq!(target_key("10.0.0.1"), "10.0.0.1:8000");
        assert_eq!(target_key("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(target_key("::1"), "[::1]:8000");
        assert_eq!(target_key("[::1]"), "[::1]:8000");
        assert_eq!(target_key("[::1]:81"), "[::1]:81");
    }

    #[test]
    fn patch_merges_records_and_replaces_the_rest() {
        let mut base = json!({
            "name": "u",
            "healthchecks": {"threshold": 0, "active": {"healthy": {"interval": 0, "successes": 0}}},
            "tags": ["a"],
        })
        .as_object()
        .cloned()
        .unwrap();
        let patch =
            json!({"healthchecks": {"active": {"healthy": {"interval": 5}}}, "tags": ["b"]})
                .as_object()
                .cloned()
                .unwrap();
        merge(Some(EntityKind::Upstreams.schema()), &mut base, patch);
        assert_eq!(base["healthchecks"]["active"]["healthy"]["interval"], 5);
        assert_eq!(base["healthchecks"]["active"]["healthy"]["successes"], 0);
        assert_eq!(base["tags"], json!(["b"]));
    }
}
