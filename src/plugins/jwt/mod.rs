//! `jwt` (kong-compat §4.1, priority 1450): verifies a signed JWT from the query string, a cookie
//! or a header against the `jwt_secrets` credential its key claim names, and attaches that
//! credential's consumer.
//!
//! Kong 3.9's behaviour, check by check and message by message: token search (query params, then
//! cookies, then `[Bb]earer <token>` headers; more than one distinct token is refused), decoding
//! (`Bad token; invalid JSON|alg|claims|signature`), the key claim (from the claims, then from the
//! JOSE header), the credential, `alg` against the credential's algorithm, the signature, then
//! `claims_to_verify` (a map of claim errors) and `maximum_expiration`. Every 401 is
//! `kong.response.exit`-shaped (`{"message": ...}`, no request id) with 3.8+'s
//! `WWW-Authenticate: Bearer[ realm="<realm>"][ error="invalid_token"]`.
//!
//! Algorithms: HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA (Ed25519).
//! Keys are decoded once per credential and snapshot (a cache in the handler, which lives as
//! long as its snapshot), so a request only parses the token and checks the signature.
//!
//! **Beyond Kong: key rotation by `kid`.** When the token's JOSE header carries a string `kid`,
//! the credential `"<key claim value>#<kid>"` is looked up first, then `"<key claim value>"`. An
//! issuer can so hold several credentials at once (`auth#2026-11`, `auth#2026-12`, ...) and each
//! token picks the one it was signed with; tokens without `kid`, or with a `kid` that has no
//! credential of its own, use the plain `<key claim value>` credential as in Kong.
//!
//! On success the verified claims ([`JwtClaims`]) and the raw token ([`JwtToken`], Kong's
//! `authenticated_jwt_token`) are kept in `ctx.data` for later plugins (`jwt-claim-headers`).

pub mod keys;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use self::keys::{KeyError, VerifyKey};
use self::token::Registered;
use super::{BuildCtx, Credential, Ctx, Flow, Handler, PluginKind, auth, typed_config};
use crate::model::schema::{CheckFailure, EntityCheck, EntityKind, Field, Schema, Validated};
use crate::model::{JwtSecret, Plugin};
use crate::proxy::body::ProxyBody;
use crate::proxy::respond;
use crate::store::{Entity, Tables};

/// The plugin kind.
pub struct Kind;

/// `config` of jwt.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtConfig {
    /// Query parameters searched for a token.
    pub uri_param_names: Vec<String>,
    /// Cookies searched for a token.
    pub cookie_names: Vec<String>,
    /// Headers searched for `Bearer <token>`.
    pub header_names: Vec<String>,
    /// The claim (then JOSE header field) naming the credential key.
    pub key_claim_name: String,
    /// HS* secrets are base64-encoded.
    pub secret_is_base64: bool,
    /// `exp` and/or `nbf`.
    pub claims_to_verify: Option<Vec<String>>,
    /// Seconds; 0 is off.
    pub maximum_expiration: f64,
    /// Consumer id or username used when authentication fails.
    pub anonymous: Option<String>,
    /// Whether `OPTIONS` requests are authenticated too.
    pub run_on_preflight: bool,
    /// `realm` of the `WWW-Authenticate` challenge.
    pub realm: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            uri_param_names: vec!["jwt".to_owned()],
            cookie_names: Vec::new(),
            header_names: vec!["authorization".to_owned()],
            key_claim_name: "iss".to_owned(),
            secret_is_base64: false,
            claims_to_verify: None,
            maximum_expiration: 0.0,
            anonymous: None,
            run_on_preflight: true,
            realm: None,
        }
    }
}

fn config_check(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let max = rec
        .get("maximum_expiration")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    // Kong's conditional passes a null `then_field` unless it is `required`: only a list
    // without `exp` is refused (an absent list leaves `exp` unchecked, and the maximum then
    // refuses every token without `exp` at request time).
    let lacks_exp = rec
        .get("claims_to_verify")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.iter().any(|c| c == "exp"));
    if max > 0.0 && lacks_exp {
        return Err(CheckFailure {
            entity: vec![
                "failed conditional validation given value of field 'config.maximum_expiration'"
                    .to_owned(),
            ],
            fields: vec![(
                "claims_to_verify".to_owned(),
                "expected to contain: exp".to_owned(),
            )],
        });
    }
    Ok(())
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "jwt"
    }
    fn priority(&self) -> i64 {
        1450
    }
    fn allows_consumer(&self) -> bool {
        false
    }
    fn config_schema(&self) -> Field {
        let strings = |default: Value| Field::set(Field::string()).default(default);
        Field::record(
            Schema::new(
                "config",
                vec![
                    ("uri_param_names", strings(json!(["jwt"]))),
                    ("cookie_names", strings(json!([]))),
                    ("key_claim_name", Field::string().default(json!("iss"))),
                    (
                        "secret_is_base64",
                        Field::boolean().required().default(json!(false)),
                    ),
                    (
                        "claims_to_verify",
                        Field::set(Field::string().one_of_str(&["exp", "nbf"])),
                    ),
                    ("anonymous", Field::string()),
                    (
                        "run_on_preflight",
                        Field::boolean().required().default(json!(true)),
                    ),
                    (
                        "maximum_expiration",
                        Field::number().default(json!(0)).between(0, 31_536_000),
                    ),
                    ("header_names", strings(json!(["authorization"]))),
                    ("realm", Field::string()),
                ],
            )
            .check(EntityCheck::Custom {
                fields: vec!["maximum_expiration", "claims_to_verify"],
                check: config_check,
            }),
        )
        .required()
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: JwtConfig = typed_config(plugin)?;
        Ok(Arc::new(Jwt::new(conf)))
    }
}

/// The verified claims of the request's token (in `ctx.data` after a successful `jwt`).
#[derive(Debug, Clone)]
pub struct JwtClaims(pub Arc<Map<String, Value>>);

/// The raw token that authenticated the request (Kong's `authenticated_jwt_token`).
#[derive(Debug, Clone)]
pub struct JwtToken(pub Arc<str>);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 401 `{"message": ...}` with the given challenge.
    Message(String, Challenge),
    /// 401 with a map of claim errors (`{"exp": "token expired"}`).
    Claims(Map<String, Value>),
}

/// Which `WWW-Authenticate` a refusal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer[ realm=...]` (no token at all).
    Base,
    /// `Bearer[ realm=...] error="invalid_token"`.
    InvalidToken,
    /// None (the credential's consumer is gone).
    None,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The credential.
    pub credential: Arc<Entity>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The credential's consumer.
    pub consumer: Arc<Entity>,
}

impl Verified {
    /// The credential as a [`JwtSecret`].
    pub fn secret(&self) -> Option<&JwtSecret> {
        match &*self.credential {
            Validated::JwtSecret(s) => Some(s),
            _ => None,
        }
    }
}

/// A configured jwt instance.
pub struct Jwt {
    conf: JwtConfig,
    headers: Vec<HeaderName>,
    claims_to_verify: Vec<Registered>,
    www_base: HeaderValue,
    www_invalid: HeaderValue,
    /// Decoded keys by credential id, with the credential they were decoded from (a changed
    /// credential is a new `Arc`, so it is decoded again).
    keys: RwLock<HashMap<Uuid, CachedKey>>,
}

type CachedKey = (Arc<Entity>, Arc<Result<VerifyKey, KeyError>>);

/// The bound of the key cache (beyond it, keys are decoded per request).
const KEY_CACHE_MAX: usize = 100_000;

/// The token in an authorization header value: what Kong's unanchored
/// `\s*[Bb]earer\s+(.+)` captures, without a regex on the request path (it was ~5 % of the
/// CPU of a jwt-protected request). Header values hold no line breaks, so `.+` is the rest of the
/// value; when only whitespace follows, `\s+` gives characters back to `.+`.
fn bearer_token(v: &[u8]) -> Option<&[u8]> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = 0;
    while i + 6 <= v.len() {
        if matches!(v[i], b'B' | b'b') && &v[i + 1..i + 6] == b"earer" {
            let rest = &v[i + 6..];
            let ws = rest.iter().take_while(|b| is_space(**b)).count();
            // `\s+` takes `j` characters (as many as it can, then fewer), `.+` the rest of the line.
            for j in (1..=ws).rev() {
                let tail = &rest[j..];
                let end = tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len());
                if end > 0 {
                    return Some(&tail[..end]);
                }
            }
        }
        i += 1;
    }
    None
}

/// One token candidate found in the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Found {
    Text(String),
    /// A query parameter without `=` (Lua sees `true`, not a string).
    Flag,
}

impl Jwt {
    /// A handler for `conf`.
    pub fn new(conf: JwtConfig) -> Self {
        let base = match &conf.realm {
            Some(r) => format!("Bearer realm=\"{r}\""),
            None => "Bearer".to_owned(),
        };
        let invalid = format!("{base} error=\"invalid_token\"");
        let header = |s: String| {
            HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
        };
        Self {
            headers: conf
                .header_names
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            claims_to_verify: conf
                .claims_to_verify
                .iter()
                .flatten()
                .filter_map(|c| match c.as_str() {
                    "exp" => Some(Registered::Exp),
                    "nbf" => Some(Registered::Nbf),
                    _ => None,
                })
                .collect(),
            www_base: header(base),
            www_invalid: header(invalid),
            keys: RwLock::new(HashMap::new()),
            conf,
        }
    }

    /// Every distinct token of the request, in Kong's search order.
    fn find_tokens(&self, ctx: &Ctx) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        let mut add = |f: Found| {
            if f != Found::Text(String::new()) && !found.contains(&f) {
                found.push(f);
            }
        };
        if let Some(q) = ctx.query.as_deref()
            && !self.conf.uri_param_names.is_empty()
        {
            for pair in q.split('&') {
                let (k, v) = match pair.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (pair, None),
                };
                let k = url_decode(k);
                if !self.conf.uri_param_names.contains(&k) {
                    continue;
                }
                add(match v {
                    Some(v) => Found::Text(url_decode(v)),
                    None => Found::Flag,
                });
            }
        }
        for name in &self.conf.cookie_names {
            if let Some(v) = cookie(ctx, name) {
                add(Found::Text(v));
            }
        }
        for name in &self.headers {
            let Some(v) = ctx.headers.get(name) else {
                continue;
            };
            if let Some(token) = bearer_token(v.as_bytes()) {
                let text = match std::str::from_utf8(token) {
                    Ok(t) => t.to_owned(),
                    Err(_) => String::from_utf8_lossy(token).into_owned(),
                };
                add(Found::Text(text));
            }
        }
        found
    }

    fn key_for(
        &self,
        entity: &Arc<Entity>,
        secret: &JwtSecret,
    ) -> Arc<Result<VerifyKey, KeyError>> {
        if let Ok(keys) = self.keys.read()
            && let Some((src, key)) = keys.get(&secret.id)
            && Arc::ptr_eq(src, entity)
        {
            return key.clone();
        }
        let key = Arc::new(VerifyKey::new(
            &secret.algorithm,
            secret.secret.as_deref(),
            secret.rsa_public_key.as_deref(),
            self.conf.secret_is_base64,
        ));
        if let Ok(mut keys) = self.keys.write()
            && (keys.len() < KEY_CACHE_MAX || keys.contains_key(&secret.id))
        {
            keys.insert(secret.id, (entity.clone(), key.clone()));
        }
        key
    }

    /// Verify one token against the credentials in `tables` at time `now` (Unix seconds):
    /// every check of Kong's `do_authentication` after the token search, in Kong's order.
    pub fn verify(&self, tables: &Tables, token: &str, now: i64) -> Result<Verified, Failure> {
        use Challenge::InvalidToken as Inv;
        let fail = |m: String| Failure::Message(m, Inv);
        let name = &self.conf.key_claim_name;
        let jwt = token::decode(token).map_err(|e| fail(format!("Bad token; {e}")))?;
        let from_header;
        let key_value = match jwt.claims.get(name) {
            None | Some(Value::Bool(false)) => {
                from_header = jwt.header.field(name);
                from_header.as_ref()
            }
            v => v,
        };
        let key_value = match key_value {
            None | Some(Value::Bool(false)) => {
                return Err(fail(format!("No mandatory '{name}' in claims")));
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(fail(format!("Invalid '{name}' in claims")));
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => None,
        };
        let lookup = |key: &str| tables.credential(EntityKind::JwtSecrets, key);
        let kid = jwt.header.kid.as_deref();
        let entry = key_value.as_deref().and_then(|k| {
            kid.filter(|kid| !kid.is_empty())
                .and_then(|kid| lookup(&format!("{k}#{kid}")))
                .or_else(|| lookup(k))
        });
        let (Some(entry), Some(key_value)) = (entry, key_value) else {
            return Err(fail(format!("No credentials found for given '{name}'")));
        };
        let entity = entry.credential();
        let Validated::JwtSecret(secret) = &**entity else {
            return Err(fail(format!("No credentials found for given '{name}'")));
        };
        if jwt.alg != secret.algorithm {
            return Err(fail("Invalid algorithm".to_owned()));
        }
        let key = self.key_for(entity, secret);
        match &*key {
            Err(KeyError::Missing) => return Err(fail("Invalid key/secret".to_owned())),
            Err(KeyError::Unusable) => return Err(fail("Invalid signature".to_owned())),
            Ok(key) => {
                if !key.verify(jwt.signing_input.as_bytes(), &jwt.signature) {
                    return Err(fail("Invalid signature".to_owned()));
                }
            }
        }
        let errors = token::verify_registered(&jwt.claims, &self.claims_to_verify, now);
        if !errors.is_empty() {
            return Err(Failure::Claims(errors));
        }
        if !token::within_maximum_expiration(&jwt.claims, self.conf.maximum_expiration, now) {
            let mut m = Map::new();
            m.insert("exp".into(), "exceeds maximum allowed expiration".into());
            return Err(Failure::Claims(m));
        }
        let Some(consumer) = entry
            .consumer()
            .filter(|c| matches!(&***c, Validated::Consumer(_)))
        else {
            return Err(Failure::Message(
                format!("Could not find consumer for '{name}={key_value}'"),
                Challenge::None,
            ));
        };
        Ok(Verified {
            credential: entity.clone(),
            claims: jwt.claims,
            consumer: consumer.clone(),
        })
    }

    fn authenticate(&self, ctx: &mut Ctx) -> Result<(), Failure> {
        let mut tokens = self.find_tokens(ctx);
        let token = match tokens.len() {
            0 => {
                return Err(Failure::Message("Unauthorized".to_owned(), Challenge::Base));
            }
            1 => tokens.pop(),
            _ => None,
        };
        let token = match token {
            Some(Found::Text(t)) => t,
            Some(Found::Flag) => {
                return Err(Failure::Message(
                    "Unrecognizable token".to_owned(),
                    Challenge::InvalidToken,
                ));
            }
            None => {
                return Err(Failure::Message(
                    "Multiple tokens provided".to_owned(),
                    Challenge::InvalidToken,
                ));
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let snapshot = ctx.snapshot.clone();
        let verified = self.verify(&snapshot.tables, &token, now)?;
        let Some(secret) = verified.secret() else {
            return Err(Failure::Message(
                "Unauthorized".to_owned(),
                Challenge::InvalidToken,
            ));
        };
        let Validated::Consumer(consumer) = &*verified.consumer else {
            return Err(Failure::Message(
                format!("Could not find consumer for '{}'", self.conf.key_claim_name),
                Challenge::None,
            ));
        };
        let consumer = consumer.clone();
        let credential = Credential {
            id: secret.id,
            identifier: secret.key.clone(),
        };
        auth::attach(ctx, consumer, Some(credential));
        ctx.data.insert(JwtClaims(Arc::new(verified.claims)));
        ctx.data.insert(JwtToken(Arc::from(token)));
        Ok(())
    }

    fn refuse(&self, failure: Failure) -> Response<ProxyBody> {
        match failure {
            Failure::Message(m, challenge) => {
                let mut resp = respond::message(StatusCode::UNAUTHORIZED, &m);
                let www = match challenge {
                    Challenge::Base => Some(&self.www_base),
                    Challenge::InvalidToken => Some(&self.www_invalid),
                    Challenge::None => None,
                };
                if let Some(v) = www {
                    resp.headers_mut()
                        .insert(http::header::WWW_AUTHENTICATE, v.clone());
                }
                resp
            }
            Failure::Claims(errors) => {
                let body = Value::Object(errors).to_string();
                let mut resp = Response::new(ProxyBody::full(body.clone()));
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                let h = resp.headers_mut();
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                h.insert(http::header::CONTENT_LENGTH, body.len().into());
                h.insert(http::header::WWW_AUTHENTICATE, self.www_invalid.clone());
                resp
            }
        }
    }
}

#[async_trait]
impl Handler for Jwt {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let anonymous = self.conf.anonymous.as_deref();
        if auth::skip(ctx, self.conf.run_on_preflight, anonymous) {
            return Flow::Continue;
        }
        match (self.authenticate(ctx), anonymous) {
            (Ok(()), _) => Flow::Continue,
            (Err(_), Some(anonymous)) => auth::fall_back_to_anonymous(ctx, anonymous),
            (Err(f), None) => Flow::Respond(self.refuse(f)),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one query component (`+` is a space).
fn url_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// nginx's `$cookie_<name>`: the first non-empty cookie called `name` over every `Cookie`
/// header.
fn cookie(ctx: &Ctx, name: &str) -> Option<String> {
    ctx.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    /// The hand-written matcher agrees with Kong's regex on every shape of header value.
    #[test]
    fn bearer_token_matches_kongs_regex() {
        let re = regex::bytes::Regex::new(r"(?-u)\s*[Bb]earer\s+(.+)").unwrap();
        let cases: &[&[u8]] = &[
            b"Bearer abc.def.ghi",
            b"bearer x",
            b"  Bearer\tx y",
            b"Bearer",
            b"Bearer ",
            b"Bearer  ",
            b"Bearer \t",
            b"BearerX y",
            b"Basic abc",
            b"xBearer tok",
            b"Bearerbearer t",
            b"Bearer bearer z",
            b"BEARER x",
            b"token Bearer  t ",
            b"",
            b"bearer\r x",
            b"Bearer\n",
            b"Bearer \nq",
            b"Bearer  \n",
        ];
        for c in cases {
            let want = re.captures(c).and_then(|m| m.get(1)).map(|m| m.as_bytes());
            assert_eq!(bearer_token(c), want, "{:?}", String::from_utf8_lossy(c));
        }
    }

    use super::*;
    use crate::model::{Config, Consumer};

    fn secret(key: &str, consumer: Uuid) -> JwtSecret {
        JwtSecret {
            id: Uuid::new_v4(),
            consumer: consumer.into(),
            key: key.into(),
            secret: Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into()),
            rsa_public_key: None,
            algorithm: "HS256".into(),
            tags: None,
            created_at: 0,
        }
    }

    fn sign(claims: Value) -> String {
        let key =
            jsonwebtoken::EncodingKey::from_secret(b"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t").unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    #[test]
    fn consumer_gone_and_numeric_key_claim() {
        let present = Consumer {
            id: Uuid::new_v4(),
            username: Some("u".into()),
            custom_id: None,
            tags: None,
            created_at: 0,
            updated_at: 0,
        };
        let tables = Tables::from_config(Config {
            jwt_secrets: vec![secret("orphan", Uuid::new_v4()), secret("42", present.id)],
            consumers: vec![present],
            ..Config::default()
        });
        let jwt = Jwt::new(JwtConfig::default());
        assert_eq!(
            jwt.verify(&tables, &sign(json!({"iss": "orphan"})), 0)
                .unwrap_err(),
            Failure::Message(
                "Could not find consumer for 'iss=orphan'".into(),
                Challenge::None
            )
        );
        // A number names the credential by its text (Lua's tostring).
        let ok = jwt.verify(&tables, &sign(json!({"iss": 42})), 0).unwrap();
        assert_eq!(ok.secret().map(|s| s.key.as_str()), Some("42"));
        // Other JSON types name no credential.
        assert_eq!(
            jwt.verify(&tables, &sign(json!({"iss": ["42"]})), 0)
                .unwrap_err(),
            Failure::Message(
                "No credentials found for given 'iss'".into(),
                Challenge::InvalidToken
            )
        );
    }
}
