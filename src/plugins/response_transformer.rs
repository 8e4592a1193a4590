//! `response-transformer` (kong-compat §4.5, priority 800): edits response headers (header
//! filter) and, for `application/json` responses, members of the JSON body (a buffering body
//! filter), each with remove -> rename -> replace -> add -> append.
//!
//! Bounds and differences from Kong:
//! - The body is buffered up to [`BODY_LIMIT`] bytes (Kong buffers every response whole). A larger
//!   body passes through unmodified: what was held is released and the rest streams as it comes,
//!   so memory stays bounded.
//! - A compressed upstream body (`Content-Encoding` other than `identity`) is left alone, with its
//!   `Content-Length` (Kong tries to parse it as JSON, fails, and passes it on).
//! - Header edits apply in sequence to the live headers (Kong checks `replace`/`add` against the
//!   headers as they were before its own `remove`/`rename`).
//! - A body that is not a JSON object (invalid JSON, an array, a scalar) passes unmodified.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::transform_common::{
    append_value, header_renames, lua_truthy, names, pairs, parse_entries, split_pair,
};
use super::{BodyFilter, BuildCtx, Ctx, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{Field, Schema};
use crate::proxy::body::BoxError;

/// The largest response body the plugin buffers to rewrite (8 MiB).
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The plugin kind.
pub struct Kind;

/// `config.remove`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoveConfig {
    /// JSON member names.
    pub json: Vec<String>,
    /// Header names.
    pub headers: Vec<String>,
}

/// `config.rename`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RenameConfig {
    /// `old:new` JSON member names.
    pub json: Vec<String>,
    /// `old:new` header names.
    pub headers: Vec<String>,
}

/// `config.replace` / `add` / `append`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PairsConfig {
    /// `name:value` JSON members.
    pub json: Vec<String>,
    /// The type of each `json` value, by position (`string` when missing).
    pub json_types: Vec<String>,
    /// `name:value` headers.
    pub headers: Vec<String>,
}

/// `config` of response-transformer.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseTransformerConfig {
    /// Removals.
    pub remove: RemoveConfig,
    /// Renames.
    pub rename: RenameConfig,
    /// Replacements (only where present).
    pub replace: PairsConfig,
    /// Additions (only where absent).
    pub add: PairsConfig,
    /// Appended values.
    pub append: PairsConfig,
}

fn pairs_record(name: &'static str) -> Field {
    Field::record(Schema::new(
        name,
        vec![
            ("json", pairs(None)),
            (
                "json_types",
                Field::array(Field::string().one_of_str(&["boolean", "number", "string"]))
                    .default(json!([])),
            ),
            ("headers", pairs(None)),
        ],
    ))
    .required()
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "response-transformer"
    }
    fn priority(&self) -> i64 {
        800
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "remove",
                    Field::record(Schema::new(
                        "remove",
                        vec![("json", names()), ("headers", names())],
                    ))
                    .required(),
                ),
                (
                    "rename",
                    Field::record(Schema::new(
                        "rename",
                        vec![("json", pairs(None)), ("headers", header_renames())],
                    ))
                    .required(),
                ),
                ("replace", pairs_record("replace")),
                ("add", pairs_record("add")),
                ("append", pairs_record("append")),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: ResponseTransformerConfig = typed_config(plugin)?;
        Ok(Arc::new(ResponseTransformer::new(&conf)))
    }
}

/// A JSON value as configured, typed by `json_types`.
fn typed(value: &str, ty: Option<&str>) -> Option<Value> {
    match ty {
        // Lua's tonumber: surrounding spaces are fine, anything else not a number is nil.
        Some("number") => {
            let t = value.trim();
            if let Ok(i) = t.parse::<i64>() {
                Some(Value::from(i))
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }
        }
        Some("boolean") => Some(Value::Bool(value == "true")),
        _ => Some(Value::String(value.to_owned())),
    }
}

/// The `name:value` entries of a JSON array with their typed values (`None`: skipped).
fn typed_entries(list: &[String], types: &[String]) -> Vec<(String, Option<Value>)> {
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let (name, value) = split_pair(e);
            let v = value.and_then(|v| typed(v, types.get(i).map(String::as_str)));
            (name.to_owned(), v)
        })
        .collect()
}

fn header_entries(list: &[String]) -> Vec<(HeaderName, Option<HeaderValue>)> {
    parse_entries(list)
        .into_iter()
        .filter_map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_bytes()).ok()?;
            Some((name, v.and_then(|v| HeaderValue::from_str(&v).ok())))
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct JsonRules {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<(String, Option<Value>)>,
    add: Vec<(String, Option<Value>)>,
    append: Vec<(String, Option<Value>)>,
}

impl JsonRules {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Apply the edits to a JSON document; `None` leaves the body as it is.
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        edit(&mut obj, self);
        serde_json::to_vec(&Value::Object(obj)).ok()
    }
}

fn edit(obj: &mut Map<String, Value>, r: &JsonRules) {
    for name in &r.remove {
        obj.remove(name);
    }
    for (old, new) in &r.rename {
        if old != new
            && let Some(v) = obj.remove(old)
        {
            obj.insert(new.clone(), v);
        }
    }
    for (name, v) in &r.replace {
        if let Some(v) = v
            && lua_truthy(obj.get(name))
        {
            obj.insert(name.clone(), v.clone());
        }
    }
    for (name, v) in &r.add {
        if let Some(v) = v
            && !lua_truthy(obj.get(name))
        {
            obj.insert(name.clone(), v.clone());
        }
    }
    for (name, v) in &r.append {
        if let Some(v) = v {
            let cur = obj.remove(name);
            obj.insert(name.clone(), append_value(cur, v.clone()));
        }
    }
}

struct ResponseTransformer {
    remove_headers: Vec<String>,
    rename_headers: Vec<(HeaderName, HeaderName)>,
    replace_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    add_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    append_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    json: Arc<JsonRules>,
}

impl ResponseTransformer {
    fn new(c: &ResponseTransformerConfig) -> Self {
        let rename_headers = parse_entries(&c.rename.headers)
            .into_iter()
            .filter_map(|(o, n)| {
                Some((
                    HeaderName::from_bytes(o.as_bytes()).ok()?,
                    HeaderName::from_bytes(n?.as_bytes()).ok()?,
                ))
            })
            .collect();
        let json = JsonRules {
            remove: c.remove.json.clone(),
            rename: parse_entries(&c.rename.json)
                .into_iter()
                .filter_map(|(o, n)| Some((o, n?)))
                .collect(),
            replace: typed_entries(&c.replace.json, &c.replace.json_types),
            add: typed_entries(&c.add.json, &c.add.json_types),
            append: typed_entries(&c.append.json, &c.append.json_types),
        };
        Self {
            remove_headers: c.remove.headers.clone(),
            rename_headers,
            replace_headers: header_entries(&c.replace.headers),
            add_headers: header_entries(&c.add.headers),
            append_headers: header_entries(&c.append.headers),
            json: Arc::new(json),
        }
    }

    fn edit_headers(&self, h: &mut HeaderMap) {
        for name in &self.remove_headers {
            h.remove(name.as_str());
        }
        for (old, new) in &self.rename_headers {
            let vals: Vec<HeaderValue> = h.get_all(old).iter().cloned().collect();
            if vals.is_empty() || old == new {
                continue;
            }
            h.remove(old);
            h.remove(new);
            for v in vals {
                h.append(new.clone(), v);
            }
        }
        for (name, v) in &self.replace_headers {
            if let Some(v) = v
                && h.contains_key(name)
            {
                h.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.add_headers {
            if let Some(v) = v
                && !h.contains_key(name)
            {
                h.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.append_headers {
            if let Some(v) = v {
                h.append(name.clone(), v.clone());
            }
        }
    }
}

/// Kong's `is_json_body`: one of the (comma-separated) media types is `application/json`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_TYPE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|mt| {
            let essence = mt.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
        })
}

fn is_compressed(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| {
        !v.to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("identity"))
    })
}

/// Buffers a JSON body (up to the bound) and rewrites it at the end.
struct JsonFilter {
    rules: Arc<JsonRules>,
    buf: BytesMut,
    limit: usize,
    /// The body outgrew the bound: everything passes through.
    passing: bool,
}

impl BodyFilter for JsonFilter {
    fn data(&mut self, chunk: Bytes) -> Result<Bytes, BoxError> {
        if self.passing {
            return Ok(chunk);
        }
        if self.buf.len() + chunk.len() > self.limit {
            self.passing = true;
            tracing::warn!(
                limit = self.limit,
                "response-transformer: body too large to transform, passed on unmodified"
            );
            let mut held = std::mem::take(&mut self.buf);
            held.extend_from_slice(&chunk);
            return Ok(held.freeze());
        }
        self.buf.extend_from_slice(&chunk);
        Ok(Bytes::new())
    }

    fn end(&mut self) -> Result<Bytes, BoxError> {
        if self.passing {
            return Ok(Bytes::new());
        }
        let body = std::mem::take(&mut self.buf).freeze();
        Ok(match self.rules.apply(&body) {
            Some(out) => Bytes::from(out),
            None => body,
        })
    }
}

#[async_trait]
impl Handler for ResponseTransformer {
    fn header_filter(&self, _ctx: &mut Ctx, resp: &mut Parts) {
        self.edit_headers(&mut resp.headers);
    }

    fn body_filter(&self, ctx: &mut Ctx, resp: &mut Parts) -> Option<Box<dyn BodyFilter>> {
        if self.json.is_empty()
            || ctx.method == Method::HEAD
            || matches!(
                resp.status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::SWITCHING_PROTOCOLS
            )
            || !is_json(&resp.headers)
            || is_compressed(&resp.headers)
        {
            return None;
        }
        // The body is going to change.
        resp.headers.remove(CONTENT_LENGTH);
        Some(Box::new(JsonFilter {
            rules: Arc::clone(&self.json),
            buf: BytesMut::new(),
            limit: BODY_LIMIT,
            passing: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(c: serde_json::Value) -> JsonRules {
        let mut base = json!({
            "remove": {"json": [], "headers": []},
            "rename": {"json": [], "headers": []},
            "replace": {"json": [], "json_types": [], "headers": []},
            "add": {"json": [], "json_types": [], "headers": []},
            "append": {"json": [], "json_types": [], "headers": []},
        });
        for (k, v) in c.as_object().unwrap() {
            for (k2, v2) in v.as_object().unwrap() {
                base[k][k2] = v2.clone();
            }
        }
        let conf: ResponseTransformerConfig = serde_json::from_value(base).unwrap();
        (*ResponseTransformer::new(&conf).json).clone()
    }

    #[test]
    fn json_edits_in_order_and_typed() {
        let r = rules(json!({
            "remove": {"json": ["gone"]},
            "rename": {"json": ["old:new"]},
            "replace": {"json": ["n:42", "f:x"], "json_types": ["number"]},
            "add": {"json": ["flag:true", "f:y", "bad:zz", "off:1"], "json_types": ["boolean", "string", "number"]},
            "append": {"json": ["list:a", "s:b", "fresh:c:d"]},
        }));
        let out = r
            .apply(br#"{"gone":1,"old":"v","n":"1","f":false,"off":false,"list":[1],"s":"a"}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"new":"v","n":42,"f":"y","flag":true,"off":"1","list":[1,"a"],"s":["a","b"],"fresh":["c:d"]})
        );
        assert!(r.apply(b"[1,2]").is_none());
        assert!(r.apply(b"not json").is_none());
    }

    #[test]
    fn json_media_types() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain, application/json"),
        );
        assert!(is_json(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(!is_json(&h));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(is_compressed(&h));
    }
}
