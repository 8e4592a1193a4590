//! Pagination (`size`, `offset`, `next`, plus gwctl's `total`), tag filters, and `/tags`
//! (kong-compat §1.4, §1.5).
//!
//! Pages are in id order; the offset token is URL-safe base64 of a JSON array holding the last
//! row's key, like Kong's Postgres strategy. Tools treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::AdminError;
use super::{AdminState, Req, ok};
use crate::model::schema::EntityKind;
use crate::store::Entity;

/// Default page size.
pub(crate) const DEFAULT_SIZE: usize = 100;
/// Largest page size.
pub(crate) const MAX_SIZE: usize = 1000;

/// `size` from the query.
pub(crate) fn size(req: &Req) -> Result<usize, AdminError> {
    let Some(raw) = req.query("size") else {
        return Ok(DEFAULT_SIZE);
    };
    let n: f64 = raw
        .parse()
        .map_err(|_| AdminError::InvalidSize("size must be a number"))?;
    if n.fract() != 0.0 || !(1.0..=MAX_SIZE as f64).contains(&n) {
        return Err(AdminError::InvalidSize(
            "size must be an integer between 1 and 1000",
        ));
    }
    Ok(n as usize)
}

/// Encode an offset token from the last row's key parts.
pub(crate) fn encode_offset(parts: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(Value::from(parts.to_vec()).to_string())
}

/// Decode an offset token into its key parts.
pub(crate) fn decode_offset(token: &str) -> Result<Vec<Value>, AdminError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| AdminError::InvalidOffset(token.to_owned(), "bad base64 encoding"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(a)) => Ok(a),
        _ => Err(bad_json(token)),
    }
}

/// Code 7 for a token that decodes but does not hold a row key.
fn bad_json(token: &str) -> AdminError {
    AdminError::InvalidOffset(token.to_owned(), "bad json encoding")
}

/// The id after which a page starts.
pub(crate) fn offset_id(req: &Req) -> Result<Option<Uuid>, AdminError> {
    let Some(token) = req.query("offset") else {
        return Ok(None);
    };
    let parts = decode_offset(token)?;
    match parts.first().and_then(Value::as_str).map(Uuid::parse_str) {
        Some(Ok(id)) => Ok(Some(id)),
        _ => Err(bad_json(token)),
    }
}

/// A `tags` filter: all of them (`a,b`) or any of them (`a/b`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TagFilter {
    tags: Vec<String>,
    any: bool,
}

impl TagFilter {
    /// Parse `?tags=`.
    pub(crate) fn parse(req: &Req) -> Result<Option<Self>, AdminError> {
        let Some(raw) = req.query("tags") else {
            return Ok(None);
        };
        let has_and = raw.contains(',');
        let has_or = raw.contains('/');
        if has_and && has_or {
            return Err(AdminError::InvalidOptions {
                message: "invalid option (tags: invalid filter syntax)".into(),
                options: json!({"tags": "invalid filter syntax"}),
            });
        }
        let tags: Vec<String> = raw
            .split([',', '/'])
            .map(str::to_owned)
            .filter(|t| !t.is_empty())
            .collect();
        if tags.len() > 5 {
            return Err(AdminError::InvalidOptions {
                message: "invalid option (tags: cannot query more than 5 tags)".into(),
                options: json!({"tags": "cannot query more than 5 tags"}),
            });
        }
        if tags.is_empty() {
            return Err(AdminError::InvalidOptions {
                message: "invalid option (tags: invalid filter syntax)".into(),
                options: json!({"tags": "invalid filter syntax"}),
            });
        }
        Ok(Some(Self { tags, any: has_or }))
    }

    /// Whether an entity passes.
    pub(crate) fn matches(&self, e: &Entity) -> bool {
        let Some(have) = e.tags() else { return false };
        if self.any {
            self.tags.iter().any(|t| have.contains(t))
        } else {
            self.tags.iter().all(|t| have.contains(t))
        }
    }
}

/// A page of rows as Kong's list body (plus `total`).
pub(crate) fn page_body(data: Vec<Value>, next: Option<(String, String)>, total: usize) -> Value {
    let mut body = json!({ "data": data, "next": Value::Null, "total": total });
    if let Some((token, next_url)) = next {
        body["offset"] = Value::from(token);
        body["next"] = Value::from(next_url);
    }
    body
}

/// `next` for a page: the collection path with `offset`, plus `size` and `tags` when given.
pub(crate) fn next_url(req: &Req, token: &str, carry: bool) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("offset", token);
    if carry {
        for key in ["size", "tags"] {
            if let Some(v) = req.query(key) {
                q.append_pair(key, v);
            }
        }
    }
    format!("{}?{}", req.path.trim_end_matches('/'), q.finish())
}

/// `GET /tags` and `GET /tags/{tag}`: `{entity_name, entity_id, tag}` rows.
pub(crate) fn tags(
    state: &AdminState,
    req: &Req,
    only: Option<&str>,
) -> Result<axum::response::Response, AdminError> {
    let size = size(req)?;
    let after: Option<(usize, Uuid, String)> = match req.query("offset") {
        None => None,
        Some(token) => {
            let parts = decode_offset(token)?;
            let bad = || bad_json(token);
            let k = parts.first().and_then(Value::as_u64).ok_or_else(bad)? as usize;
            let id = parts
                .get(1)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(bad)?;
            let tag = parts.get(2).and_then(Value::as_str).ok_or_else(bad)?;
            Some((k, id, tag.to_owned()))
        }
    };
    let tables = state.store.tables();
    let mut rows = Vec::new();
    let mut total = 0usize;
    let mut last: Option<(usize, Uuid, String)> = None;
    let mut more = false;
    for (ki, kind) in EntityKind::ALL.into_iter().enumerate() {
        for (id, e) in tables.table(kind).rows() {
            let Some(tags) = e.tags() else { continue };
            for tag in tags {
                if only.is_some_and(|o| o != tag) {
                    continue;
                }
                total += 1;
                let key = (ki, *id, tag.clone());
                if after.as_ref().is_some_and(|a| key <= *a) {
                    continue;
                }
                if rows.len() == size {
                    more = true;
                    continue;
                }
                rows.push(json!({"entity_name": kind.name(), "entity_id": id, "tag": tag}));
                last = Some(key);
            }
        }
    }
    let next = match (more, last) {
        (true, Some((k, id, tag))) => {
            let token = encode_offset(&[json!(k), json!(id), json!(tag)]);
            let url = next_url(req, &token, true);
            Some((token, url))
        }
        _ => None,
    };
    Ok(ok(page_body(rows, next, total)))
}
