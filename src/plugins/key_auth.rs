//! `key-auth` (kong-compat §4.2, priority 1250): authenticate a request by an API key sent in a
//! header, a query argument or the body (form, JSON or multipart), looked up among the
//! `keyauth_credentials` of the snapshot.
//!
//! Kong 3.9's algorithm: for each name of `key_names`, look in the headers, then the query, then
//! (with `key_in_body`) the body; the first value found for a name decides: a single string is
//! the key, a repeated header/argument (or a JSON array/object) is `Duplicate API key found`,
//! anything else (a bare `?apikey`, a JSON number) moves on to the next name. Every key-auth 401
//! carries `WWW-Authenticate: Key` (or `Key realm="<realm>"`) and Kong's error body with the
//! request id. Keys have no length limit (Kong DB-less' 511-byte cache-key limit does not exist
//! here).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ctx::BodyError;
use super::{BuildCtx, Credential, Ctx, Flow, Handler, PluginKind, auth, typed_config};
use crate::model::schema::{EntityKind, Field, Schema, Validated, validators};
use crate::model::{Consumer, KeyAuthCredential, Plugin};
use crate::proxy::body::ProxyBody;
use crate::proxy::respond;
use crate::store::Tables;

/// The largest request body key-auth reads to find a key (`key_in_body`). A body announced
/// larger than this is not searched (and streams upstream untouched); a chunked body that turns
/// out larger is answered 413, since it was partly consumed.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

const ERR_DUPLICATE_API_KEY: &str = "Duplicate API key found";
const ERR_NO_API_KEY: &str = "No API key found in request";
const ERR_INVALID_AUTH_CRED: &str = "Unauthorized";
const ERR_UNEXPECTED: &str = "An unexpected error occurred";

/// The plugin kind.
pub struct Kind;

/// `config` of key-auth.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyAuthConfig {
    /// Header / argument / body field names searched, in order.
    pub key_names: Vec<String>,
    /// Remove the key from the request before proxying.
    pub hide_credentials: bool,
    /// Consumer id or username used when authentication fails (logical OR).
    pub anonymous: Option<String>,
    /// Search the headers.
    pub key_in_header: bool,
    /// Search the query string.
    pub key_in_query: bool,
    /// Search form, JSON and multipart bodies.
    pub key_in_body: bool,
    /// Authenticate `OPTIONS` requests too.
    pub run_on_preflight: bool,
    /// `realm` of `WWW-Authenticate`.
    pub realm: Option<String>,
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "key-auth"
    }
    fn priority(&self) -> i64 {
        1250
    }
    fn allows_consumer(&self) -> bool {
        false
    }
    fn config_schema(&self) -> Field {
        let boolean = |d: bool| Field::boolean().required().default(json!(d));
        Field::record(Schema::new(
            "config",
            vec![
                (
                    "key_names",
                    Field::array(Field::string().validator(validators::header_name))
                        .required()
                        .default(json!(["apikey"])),
                ),
                ("hide_credentials", boolean(false)),
                ("anonymous", Field::string()),
                ("key_in_header", boolean(true)),
                ("key_in_query", boolean(true)),
                ("key_in_body", boolean(false)),
                ("run_on_preflight", boolean(true)),
                ("realm", Field::string()),
            ],
        ))
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: KeyAuthConfig = typed_config(plugin)?;
        let names = conf
            .key_names
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map(|h| (n.clone(), h))
                    .map_err(|_| format!("key-auth: bad key name {n:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let www = match &conf.realm {
            Some(r) => format!("Key realm=\"{r}\""),
            None => "Key".to_owned(),
        };
        let www_authenticate = HeaderValue::from_str(&www)
            .map_err(|_| format!("key-auth: realm {:?} is not a header value", conf.realm))?;
        Ok(Arc::new(KeyAuth {
            names,
            www_authenticate,
            conf,
        }))
    }
}

/// What [`lookup`] found for a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<'a> {
    /// A live credential and its consumer.
    Found {
        /// The credential.
        credential: &'a KeyAuthCredential,
        /// Its consumer.
        consumer: &'a Consumer,
    },
    /// No credential has this key, or its ttl ran out.
    Unknown,
    /// The credential exists but its consumer does not (cannot happen with the store's
    /// cascades; answered 500 like Kong's failed consumer load).
    NoConsumer,
}

/// The credential with `key` that is still live at `now` (Unix seconds), and its consumer: one
/// probe of the tables' credential index ([`Tables::credential`]).
pub fn lookup<'a>(tables: &'a Tables, key: &str, now: i64) -> Lookup<'a> {
    let Some(entry) = tables.credential(EntityKind::KeyauthCredentials, key) else {
        return Lookup::Unknown;
    };
    let Validated::KeyauthCredential(credential) = &**entry.credential() else {
        return Lookup::Unknown;
    };
    if expired(credential, now) {
        return Lookup::Unknown;
    }
    match entry.consumer().map(|e| &**e) {
        Some(Validated::Consumer(consumer)) => Lookup::Found {
            credential,
            consumer,
        },
        _ => Lookup::NoConsumer,
    }
}

/// Whether a credential created with a `ttl` (seconds; 0 means none) has run out at `now`.
pub fn expired(credential: &KeyAuthCredential, now: i64) -> bool {
    match credential.ttl {
        Some(ttl) if ttl > 0 => {
            let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
            now >= credential.created_at.saturating_add(ttl)
        }
        _ => false,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

struct KeyAuth {
    conf: KeyAuthConfig,
    /// `key_names` with their header form.
    names: Vec<(String, HeaderName)>,
    www_authenticate: HeaderValue,
}

/// One place's value for a key name, as Kong's Lua types see it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    /// Not there (`nil`).
    Absent,
    /// One string.
    Str(String),
    /// Repeated (a Lua table): a duplicate key.
    Many,
    /// There but not a string (a bare `?apikey` is `true`, a JSON number): not a key.
    Other,
}

/// Why authentication failed.
enum Failure {
    /// 401 with this message and `WWW-Authenticate`.
    Unauthorized(&'static str),
    /// A response to send as it is, even with `anonymous` (the body could not be read).
    Fatal(Response<ProxyBody>),
    /// 500 (credential without consumer).
    Unexpected,
}

#[async_trait]
impl Handler for KeyAuth {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let anonymous = self.conf.anonymous.as_deref();
        if auth::skip(ctx, self.conf.run_on_preflight, anonymous) {
            return Flow::Continue;
        }
        match self.authenticate(ctx).await {
            Ok(()) => Flow::Continue,
            Err(Failure::Fatal(resp)) => Flow::Respond(resp),
            Err(_) if anonymous.is_some() => {
                auth::fall_back_to_anonymous(ctx, anonymous.unwrap_or_default())
            }
            Err(Failure::Unauthorized(msg)) => {
                let mut resp = respond::error_with(
                    StatusCode::UNAUTHORIZED,
                    msg,
                    &ctx.request_id,
                    ctx.headers.get(http::header::ACCEPT),
                );
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, self.www_authenticate.clone());
                Flow::Respond(resp)
            }
            Err(Failure::Unexpected) => Flow::Respond(auth::internal_error(ctx, ERR_UNEXPECTED)),
        }
    }
}

impl KeyAuth {
    async fn authenticate(&self, ctx: &mut Ctx) -> Result<(), Failure> {
        let conf = &self.conf;
        let mut body: Option<ParsedBody> = None;
        let mut key = None;
        for (name, header) in &self.names {
            let mut v = Val::Absent;
            if conf.key_in_header {
                v = header_val(&ctx.headers, header);
            }
            if v == Val::Absent && conf.key_in_query {
                v = query_val(ctx.query.as_deref(), name);
            }
            if v == Val::Absent && conf.key_in_body {
                if body.is_none() {
                    body = Some(read_body(ctx).await?);
                }
                v = body.as_ref().map_or(Val::Absent, |b| b.get(name));
            }
            match v {
                Val::Str(k) => {
                    if conf.hide_credentials {
                        ctx.headers.remove(header);
                        if let Some(q) = &ctx.query {
                            ctx.query = remove_pairs(q, name);
                        }
                        if conf.key_in_body {
                            if body.is_none() {
                                body = Some(read_body(ctx).await?);
                            }
                            if let Some(rewritten) = body.as_mut().and_then(|b| b.remove(name)) {
                                ctx.set_body(rewritten);
                            }
                        }
                    }
                    key = Some(k);
                    break;
                }
                Val::Many => return Err(Failure::Unauthorized(ERR_DUPLICATE_API_KEY)),
                Val::Absent | Val::Other => {}
            }
        }
        let key = match key {
            Some(k) if !k.is_empty() => k,
            _ => return Err(Failure::Unauthorized(ERR_NO_API_KEY)),
        };
        let (consumer, credential) = match lookup(&ctx.snapshot.tables, &key, now_secs()) {
            Lookup::Found {
                credential,
                consumer,
            } => (consumer.clone(), credential.id),
            Lookup::Unknown => return Err(Failure::Unauthorized(ERR_INVALID_AUTH_CRED)),
            Lookup::NoConsumer => return Err(Failure::Unexpected),
        };
        auth::attach(
            ctx,
            consumer,
            Some(Credential {
                id: credential,
                identifier: credential.to_string(),
            }),
        );
        Ok(())
    }
}

fn header_val(headers: &HeaderMap, name: &HeaderName) -> Val {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Val::Absent,
        (Some(v), None) => Val::Str(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        (Some(_), Some(_)) => Val::Many,
    }
}

/// The `application/x-www-form-urlencoded` pairs of `raw` (a query string or a form body):
/// `(decoded name, raw segment, decoded value or None for a bare name)`.
fn pairs(raw: &str) -> impl Iterator<Item = (Cow<'_, str>, &str, Option<Cow<'_, str>>)> {
    raw.split('&').filter(|s| !s.is_empty()).map(|segment| {
        let (n, v) = match segment.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (segment, None),
        };
        (decode(n), segment, v.map(decode))
    })
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

fn form_val(raw: &str, name: &str) -> Val {
    let mut found = Val::Absent;
    for (n, _, v) in pairs(raw) {
        if n != name {
            continue;
        }
        if found != Val::Absent {
            return Val::Many;
        }
        found = match v {
            Some(v) => Val::Str(v.into_owned()),
            None => Val::Other,
        };
    }
    found
}

fn query_val(query: Option<&str>, name: &str) -> Val {
    query.map_or(Val::Absent, |q| form_val(q, name))
}

/// `raw` without the pairs named `name` (the other segments kept byte for byte); `None` when
/// nothing is left.
fn remove_pairs(raw: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = pairs(raw)
        .filter(|(n, _, _)| n != name)
        .map(|(_, seg, _)| seg)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The request body as `kong.request.get_body()` sees it.
enum ParsedBody {
    /// No body, an unsupported content type, or one that does not parse (Kong: `EMPTY`).
    Empty,
    /// `application/x-www-form-urlencoded`.
    Form(String),
    /// `application/json` (an object; other JSON values have no fields).
    Json(serde_json::Map<String, Value>),
    /// `multipart/form-data`.
    Multipart { boundary: String, parts: Vec<Part> },
}

/// One part of a multipart body, kept to re-encode the others when the key part is removed.
struct Part {
    name: Option<String>,
    headers: HeaderMap,
    data: Bytes,
}

impl ParsedBody {
    fn get(&self, name: &str) -> Val {
        match self {
            Self::Empty => Val::Absent,
            Self::Form(raw) => form_val(raw, name),
            Self::Json(obj) => match obj.get(name) {
                None => Val::Absent,
                Some(Value::String(s)) => Val::Str(s.clone()),
                Some(Value::Array(_) | Value::Object(_)) => Val::Many,
                Some(_) => Val::Other,
            },
            Self::Multipart { parts, .. } => {
                let mut found = parts.iter().filter(|p| p.name.as_deref() == Some(name));
                match (found.next(), found.next()) {
                    (None, _) => Val::Absent,
                    (Some(p), None) => Val::Str(String::from_utf8_lossy(&p.data).into_owned()),
                    (Some(_), Some(_)) => Val::Many,
                }
            }
        }
    }

    /// Remove field `name`; the new body when it was there.
    fn remove(&mut self, name: &str) -> Option<Bytes> {
        match self {
            Self::Empty => None,
            Self::Form(raw) => {
                if form_val(raw, name) == Val::Absent {
                    return None;
                }
                let rest = remove_pairs(raw, name).unwrap_or_default();
                *raw = rest.clone();
                Some(Bytes::from(rest))
            }
            Self::Json(obj) => {
                obj.remove(name)?;
                serde_json::to_vec(obj).ok().map(Bytes::from)
            }
            Self::Multipart { boundary, parts } => {
                let before = parts.len();
                parts.retain(|p| p.name.as_deref() != Some(name));
                if parts.len() == before {
                    return None;
                }
                Some(encode_multipart(boundary, parts))
            }
        }
    }
}

fn encode_multipart(boundary: &str, parts: &[Part]) -> Bytes {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in &p.headers {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Bytes::from(out)
}

/// Read and parse the body for the supported content types (others are not read at all).
async fn read_body(ctx: &mut Ctx) -> Result<ParsedBody, Failure> {
    let content_type = ctx
        .header(CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .to_owned();
    let ct = content_type.to_ascii_lowercase();
    let kind = if ct.contains("application/x-www-form-urlencoded") {
        0
    } else if ct.contains("application/json") {
        1
    } else if ct.contains("multipart/form-data") {
        2
    } else {
        return Ok(ParsedBody::Empty);
    };
    let announced = ctx
        .header(CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Ok(ParsedBody::Empty);
    }
    let bytes = match ctx.read_body(BODY_LIMIT).await {
        Ok(b) => b.clone(),
        Err(BodyError::TooLarge(_)) => {
            return Err(Failure::Fatal(respond::error_with(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
                &ctx.request_id,
                ctx.headers.get(http::header::ACCEPT),
            )));
        }
        Err(BodyError::Read(e)) => {
            tracing::info!(request_id = %ctx.request_id, error = %e, "key-auth: reading the request body");
            return Err(Failure::Fatal(respond::error_with(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &ctx.request_id,
                ctx.headers.get(http::header::ACCEPT),
            )));
        }
    };
    Ok(match kind {
        0 => match std::str::from_utf8(&bytes) {
            Ok(s) => ParsedBody::Form(s.to_owned()),
            Err(_) => ParsedBody::Empty,
        },
        1 => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(obj)) => ParsedBody::Json(obj),
            _ => ParsedBody::Empty,
        },
        _ => parse_multipart(&content_type, bytes).await,
    })
}

async fn parse_multipart(content_type: &str, bytes: Bytes) -> ParsedBody {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return ParsedBody::Empty;
    };
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary.clone());
    let mut parts = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().map(str::to_owned);
                let headers = field.headers().clone();
                match field.bytes().await {
                    Ok(data) => parts.push(Part {
                        name,
                        headers,
                        data,
                    }),
                    Err(_) => return ParsedBody::Empty,
                }
            }
            Ok(None) => break,
            Err(_) => return ParsedBody::Empty,
        }
    }
    ParsedBody::Multipart { boundary, parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_follow_lua_types() {
        assert_eq!(
            form_val("a=1&apikey=k%20y+z", "apikey"),
            Val::Str("k y z".into())
        );
        assert_eq!(form_val("apikey=&b", "apikey"), Val::Str(String::new()));
        assert_eq!(form_val("apikey", "apikey"), Val::Other);
        assert_eq!(form_val("apikey=a&apikey=b", "apikey"), Val::Many);
        assert_eq!(form_val("apikey&apikey=b", "apikey"), Val::Many);
        assert_eq!(form_val("ApiKey=a", "apikey"), Val::Absent);
        assert_eq!(form_val("api%6Bey=a", "apikey"), Val::Str("a".into()));
    }

    #[test]
    fn removing_pairs_keeps_the_rest_verbatim() {
        assert_eq!(
            remove_pairs("x=%2F&apikey=k&y=a+b&apikey=j", "apikey").as_deref(),
            Some("x=%2F&y=a+b")
        );
        assert_eq!(remove_pairs("apikey=k", "apikey"), None);
    }

    #[test]
    fn ttl_expiry() {
        let mut c = KeyAuthCredential {
            id: uuid::Uuid::new_v4(),
            consumer: uuid::Uuid::new_v4().into(),
            key: "k".into(),
            ttl: Some(10),
            tags: None,
            created_at: 1000,
        };
        assert!(!expired(&c, 1009));
        assert!(expired(&c, 1010));
        c.ttl = Some(0);
        assert!(!expired(&c, i64::MAX));
        c.ttl = None;
        assert!(!expired(&c, i64::MAX));
    }

    #[tokio::test]
    async fn multipart_round_trip_drops_only_the_key() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nsecret\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\n\
                    Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n";
        let mut parsed =
            parse_multipart("multipart/form-data; boundary=XyZ", Bytes::from(body)).await;
        assert_eq!(parsed.get("apikey"), Val::Str("secret".into()));
        assert_eq!(parsed.get("nope"), Val::Absent);
        let out = parsed.remove("apikey").unwrap();
        let again = parse_multipart("multipart/form-data; boundary=XyZ", out).await;
        assert_eq!(again.get("apikey"), Val::Absent);
        assert_eq!(again.get("a"), Val::Str("1".into()));
        assert_eq!(again.get("f"), Val::Str("file body".into()));
    }
}
