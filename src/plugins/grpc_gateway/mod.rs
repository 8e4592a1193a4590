//! `grpc-gateway` (Kong's name and priority 998): HTTP/JSON in front of a unary gRPC method.
//!
//! Access phase: find the call (the route's `grpc-method:` tag, else the `google.api.http`
//! bindings of the descriptors), build the request message from the JSON body, the query and
//! the path variables, and rewrite the request to `POST /pkg.Service/Method` with
//! `content-type: application/grpc`, `te: trailers` and the framed message. Response phase (the
//! whole gRPC response, bounded): the `grpc-status` (headers for trailers-only answers, else
//! trailers) becomes the HTTP status (see [`transcode::http_status`]); the message becomes JSON,
//! an error status `{"code": N, "message": "..."}`.
//!
//! Descriptors come from `config.proto` (compiled in pure Rust, cached by path and mtime) or,
//! with `config.reflection: true`, from the service's gRPC server reflection ([`discovery`]),
//! which also keeps one route per binding on the plugin's service.
//!
//! Like Kong: `OPTIONS` is answered 200 with permissive CORS headers, every response gets
//! `Access-Control-Allow-Origin: *`, an unmatched path is a 400 `failed to transcode .proto
//! file ...`. Unlike Kong: UNIMPLEMENTED maps to 501 (grpc-gateway's mapping; Kong says 500),
//! gRPC errors carry a JSON body (Kong passes the empty body on), a status in the trailers after
//! a message is honoured (the response is read whole before its head is sent).

pub mod discovery;
pub mod proto;
pub mod reflection;
pub mod template;
pub mod transcode;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use prost_reflect::MethodDescriptor;
use serde::Deserialize;
use serde_json::{Map, Value};

use self::discovery::{AllowList, Discovery, RouteBinding};
use self::proto::{Descriptors, annotated_bindings, method_name};
use super::{BodyError, BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{CheckFailure, EntityCheck, Field, Schema};
use crate::proxy::body::ProxyBody;
use crate::proxy::respond::{self, GatewayError};

/// The plugin's name.
pub const NAME: &str = "grpc-gateway";
/// The largest request body transcoded (gRPC's default message limit is 4 MiB).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The largest gRPC response read.
pub const RESPONSE_LIMIT: usize = 8 * 1024 * 1024;
/// Default `config.refresh_interval` (seconds).
pub const DEFAULT_REFRESH_INTERVAL: u64 = 300;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `config` of grpc-gateway: Kong's `proto`, plus gwctl's discovery fields.
#[derive(Debug, Clone, Deserialize)]
pub struct GrpcGatewayConfig {
    /// Path of the `.proto` file (Kong's field).
    pub proto: Option<String>,
    /// Take descriptors from the service's gRPC server reflection instead.
    #[serde(default)]
    pub reflection: bool,
    /// Seconds between reflection refreshes; 0: only on demand.
    #[serde(default = "default_interval")]
    pub refresh_interval: u64,
    /// Methods that may be called (`pkg.Service/Method`, `*` globs); empty: all (proto only).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Derive bindings from method names (`GetUser` -> `GET /users/{id}`) when a method has
    /// no `google.api.http` annotation.
    #[serde(default)]
    pub naming_convention: bool,
    /// Path prefix of discovered routes.
    #[serde(default)]
    pub route_prefix: Option<String>,
}

fn default_interval() -> u64 {
    DEFAULT_REFRESH_INTERVAL
}

/// Reflection needs an allow list and a service; `proto` and `reflection` exclude each other.
fn check_entity(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let config = rec.get("config");
    let reflection = config
        .and_then(|c| c.get("reflection"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !reflection {
        return Ok(());
    }
    let mut f = CheckFailure::default();
    if config
        .and_then(|c| c.get("proto"))
        .is_some_and(|p| !p.is_null())
    {
        f.entity.push(
            "only one of these fields must be non-empty: 'config.proto', 'config.reflection'"
                .into(),
        );
    }
    let allow_empty = config
        .and_then(|c| c.get("allow"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if allow_empty {
        f.fields.push((
            "config.allow".into(),
            "required field missing: reflection exposes only the methods listed here".into(),
        ));
    }
    if rec.get("service").is_none_or(Value::is_null) {
        f.fields.push((
            "service".into(),
            "required field missing: reflection discovers the plugin's service".into(),
        ));
    }
    if !f.fields.is_empty() && f.entity.is_empty() {
        f.entity
            .push("failed conditional validation given value of field 'config.reflection'".into());
    }
    if f.entity.is_empty() { Ok(()) } else { Err(f) }
}

fn check_prefix(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s.starts_with('/') && !s.contains("//") && s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("should start with: / (and be a plain path)".into())
    }
}

type Compiled = Arc<Result<Descriptors, String>>;

/// The plugin kind: the discovery shared with the Admin API, and compiled proto files.
pub struct Kind {
    discovery: Arc<Discovery>,
    protos: Mutex<HashMap<PathBuf, (Option<SystemTime>, Compiled)>>,
}

impl Default for Kind {
    fn default() -> Self {
        Self::new(Discovery::new())
    }
}

impl Kind {
    /// A kind over `discovery` (shared with the Admin API and the refresher).
    pub fn new(discovery: Arc<Discovery>) -> Self {
        Self {
            discovery,
            protos: Mutex::new(HashMap::new()),
        }
    }

    /// Compile `path`, or reuse the compilation of an unchanged file.
    fn compiled(&self, path: &str) -> Compiled {
        let path = PathBuf::from(path);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if let Ok(cache) = self.protos.lock()
            && let Some((t, c)) = cache.get(&path)
            && *t == mtime
            && mtime.is_some()
        {
            return Arc::clone(c);
        }
        let compiled = Arc::new(proto::compile_file(&path).map(|pool| {
            let (bindings, warnings) = annotated_bindings(&pool);
            for w in warnings {
                tracing::warn!(proto = %path.display(), "grpc-gateway: {w}");
            }
            Descriptors {
                pool,
                bindings: Arc::new(bindings),
            }
        }));
        if let Err(e) = &*compiled {
            tracing::error!(error = %e, "grpc-gateway: cannot load the proto file");
        }
        if let Ok(mut cache) = self.protos.lock() {
            cache.insert(path, (mtime, Arc::clone(&compiled)));
        }
        compiled
    }
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> i64 {
        998
    }
    fn config_schema(&self) -> Field {
        Field::record(Schema::new(
            "config",
            vec![
                ("proto", Field::string()),
                (
                    "reflection",
                    Field::boolean().required().default(Value::Bool(false)),
                ),
                (
                    "refresh_interval",
                    Field::integer()
                        .required()
                        .default(Value::from(DEFAULT_REFRESH_INTERVAL))
                        .between(0, 86_400),
                ),
                (
                    "allow",
                    Field::array(Field::string().validator(discovery::check_allow_entry))
                        .required()
                        .default(Value::Array(Vec::new())),
                ),
                (
                    "naming_convention",
                    Field::boolean().required().default(Value::Bool(false)),
                ),
                ("route_prefix", Field::string().validator(check_prefix)),
            ],
        ))
        .required()
    }
    fn entity_checks(&self) -> Vec<EntityCheck> {
        vec![EntityCheck::Custom {
            fields: vec!["config", "service"],
            check: check_entity,
        }]
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: GrpcGatewayConfig = typed_config(plugin)?;
        let source = match (&conf.proto, conf.reflection) {
            (_, true) => Source::Reflection,
            (Some(p), false) => Source::Proto(self.compiled(p)),
            (None, false) => Source::Missing,
        };
        Ok(Arc::new(GrpcGateway {
            id: plugin.id,
            allow: AllowList::new(&conf.allow),
            source,
            discovery: Arc::clone(&self.discovery),
        }))
    }
}

enum Source {
    Proto(Compiled),
    Reflection,
    Missing,
}

/// One configured instance.
struct GrpcGateway {
    id: uuid::Uuid,
    allow: AllowList,
    source: Source,
    discovery: Arc<Discovery>,
}

/// The call the access phase set up, for the response phase.
#[derive(Clone)]
struct Call {
    method: MethodDescriptor,
    response_body: Option<String>,
}

/// The preflight answer and `Access-Control-*` headers Kong's plugin sends.
fn cors_preflight() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full("OK"));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,POST,PATCH,DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(2));
    resp
}

fn exit(ctx: &Ctx, status: StatusCode, message: &str) -> Flow {
    Flow::Respond(respond::error_with(
        status,
        message,
        &ctx.request_id,
        ctx.headers.get(header::ACCEPT),
    ))
}

fn json_response(status: StatusCode, mut headers: HeaderMap, body: Vec<u8>) -> Response<ProxyBody> {
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

impl GrpcGateway {
    fn descriptors(&self) -> Result<Descriptors, (StatusCode, String)> {
        match &self.source {
            Source::Proto(c) => match &**c {
                Ok(d) => Ok(d.clone()),
                Err(e) => Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("failed to load the .proto file: {e}"),
                )),
            },
            Source::Reflection => self.discovery.descriptors(self.id).ok_or_else(|| {
                let why = self
                    .discovery
                    .state(self.id)
                    .and_then(|s| s.error)
                    .map_or_else(String::new, |e| format!(": {e}"));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("gRPC descriptors are not discovered yet{why}"),
                )
            }),
            Source::Missing => Err((
                StatusCode::BAD_REQUEST,
                "transcoding requests require a .proto file defining the service".into(),
            )),
        }
    }
}

#[async_trait]
impl Handler for GrpcGateway {
    async fn access(&self, ctx: &mut Ctx) -> Flow {
        if ctx.method == Method::OPTIONS {
            return Flow::Respond(cors_preflight());
        }
        let d = match self.descriptors() {
            Ok(d) => d,
            Err((status, msg)) => return exit(ctx, status, &msg),
        };
        // The route's own binding (discovered routes, hand-made overrides), else the
        // descriptors' bindings matched against the client's path.
        let (method, body_rule, response_body, vars) = match RouteBinding::of(&ctx.route) {
            Some(rb) => {
                let Some(m) = d.method(&rb.method) else {
                    return exit(
                        ctx,
                        StatusCode::NOT_IMPLEMENTED,
                        &format!("unknown gRPC method {}", rb.method),
                    );
                };
                let vars: Vec<(String, String)> = ctx
                    .captures
                    .named
                    .iter()
                    .map(|(k, v)| {
                        let v = percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned();
                        (template::capture_field(k), v)
                    })
                    .collect();
                (m, rb.body, rb.response_body, vars)
            }
            None => match d.find(&ctx.method, &ctx.path) {
                Some((b, vars)) => (
                    b.method.clone(),
                    b.body.clone(),
                    b.response_body.clone(),
                    vars,
                ),
                None => {
                    let known = d.bindings.iter().any(|b| b.http_method == ctx.method);
                    let why = if known {
                        format!("Unknown path \"{}\"", ctx.path)
                    } else {
                        format!("Unknown method \"{}\"", ctx.method.as_str().to_lowercase())
                    };
                    return exit(
                        ctx,
                        StatusCode::BAD_REQUEST,
                        &format!("failed to transcode .proto file {why}"),
                    );
                }
            },
        };
        let full = method_name(&method);
        if !self.allow.allows(&full) {
            return exit(
                ctx,
                StatusCode::NOT_FOUND,
                &format!("gRPC method {full} is not exposed"),
            );
        }
        if method.is_client_streaming() || method.is_server_streaming() {
            return exit(
                ctx,
                StatusCode::BAD_REQUEST,
                &format!("gRPC method {full} is streaming; only unary methods are transcoded"),
            );
        }
        let body = if body_rule.is_some() {
            match ctx.read_body(BODY_LIMIT).await {
                Ok(b) => b.clone(),
                Err(BodyError::TooLarge(_)) => {
                    return exit(
                        ctx,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request size limit exceeded",
                    );
                }
                Err(BodyError::Read(_)) => {
                    return exit(ctx, StatusCode::BAD_REQUEST, "Bad request");
                }
            }
        } else {
            Bytes::new()
        };
        let msg = match transcode::request_message(
            &method,
            body_rule.as_deref(),
            &body,
            ctx.query.as_deref(),
            &vars,
        ) {
            Ok(m) => m,
            Err(e) => return exit(ctx, StatusCode::BAD_REQUEST, &e.to_string()),
        };
        ctx.method = Method::POST;
        ctx.query = None;
        ctx.upstream_path = Some(format!("/{full}"));
        let h = &mut ctx.headers;
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.remove(header::CONTENT_ENCODING);
        h.remove(header::ACCEPT_ENCODING);
        ctx.set_body(transcode::request_frame(&msg));
        ctx.data.insert(Call {
            method,
            response_body,
        });
        Flow::Continue
    }

    fn wants_response(&self) -> bool {
        true
    }

    async fn response(&self, ctx: &mut Ctx, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(call) = ctx.data.get::<Call>().cloned() else {
            return resp;
        };
        let (mut parts, body) = resp.into_parts();
        let bad_gateway = |ctx: &Ctx| {
            respond::error(
                GatewayError::BAD_GATEWAY,
                &ctx.request_id,
                ctx.headers.get(header::ACCEPT),
            )
        };
        let (data, trailers) = match collect(body, RESPONSE_LIMIT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "grpc-gateway: reading the gRPC response failed");
                return bad_gateway(ctx);
            }
        };
        let lookup = |name: &HeaderName| {
            parts
                .headers
                .get(name)
                .or_else(|| trailers.as_ref().and_then(|t| t.get(name)))
                .cloned()
        };
        let Some(code) = lookup(&GRPC_STATUS)
            .and_then(|v| v.to_str().ok().and_then(|s| s.trim().parse::<i32>().ok()))
        else {
            tracing::warn!(status = %parts.status, "grpc-gateway: the upstream answered without grpc-status");
            return bad_gateway(ctx);
        };
        let message = lookup(&GRPC_MESSAGE)
            .map(|v| transcode::decode_grpc_message(v.as_bytes()))
            .unwrap_or_default();
        let details = lookup(&GRPC_STATUS_DETAILS)
            .and_then(|v| transcode::status_details(v.as_bytes(), call.method.parent_pool()));
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::TRAILER,
            header::TE,
        ] {
            parts.headers.remove(name);
        }
        let grpc_headers: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("grpc-"))
            .cloned()
            .collect();
        for k in grpc_headers {
            parts.headers.remove(k);
        }
        if code != 0 {
            return json_response(
                transcode::http_status(code),
                parts.headers,
                transcode::status_body(code, &message, details),
            );
        }
        match transcode::response_json(&call.method, call.response_body.as_deref(), &data) {
            Ok(json) => json_response(StatusCode::OK, parts.headers, json),
            Err(e) => {
                tracing::warn!(error = %e, "grpc-gateway: bad gRPC response");
                bad_gateway(ctx)
            }
        }
    }

    fn header_filter(&self, ctx: &mut Ctx, resp: &mut Parts) {
        if ctx.data.get::<Call>().is_some() || ctx.method == Method::OPTIONS {
            resp.headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}

/// Read a whole body (at most `limit` bytes) and its trailers.
async fn collect(mut body: ProxyBody, limit: usize) -> Result<(Bytes, Option<HeaderMap>), String> {
    let mut buf = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        match frame.into_data() {
            Ok(d) => {
                if buf.len() + d.len() > limit {
                    return Err(format!("response larger than {limit} bytes"));
                }
                buf.extend_from_slice(&d);
            }
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((buf.freeze(), trailers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn entity_checks_for_reflection() {
        assert!(
            check_entity(&rec(
                json!({"config": {"proto": "/x.proto", "reflection": false}})
            ))
            .is_ok()
        );
        assert!(check_entity(&rec(json!({"config": {"reflection": false}}))).is_ok());
        let ok =
            json!({"service": {"id": "x"}, "config": {"reflection": true, "allow": ["a.B/*"]}});
        assert!(check_entity(&rec(ok)).is_ok());
        let f = check_entity(&rec(
            json!({"service": null, "config": {"reflection": true, "allow": []}}),
        ))
        .unwrap_err();
        let fields: Vec<&str> = f.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(fields, ["config.allow", "service"]);
        assert_eq!(
            f.entity,
            ["failed conditional validation given value of field 'config.reflection'"]
        );
        let f = check_entity(&rec(json!({"service": {"id": "x"}, "config": {"reflection": true, "proto": "/a", "allow": ["a.B/C"]}})))
            .unwrap_err();
        assert!(f.entity[0].contains("only one of"));
    }

    #[test]
    fn route_prefixes_are_plain_paths() {
        assert!(check_prefix(&json!("/api")).is_ok());
        assert!(check_prefix(&json!("api")).is_err());
        assert!(check_prefix(&json!("/a//b")).is_err());
        assert!(check_prefix(&json!("/a b")).is_err());
    }
}
