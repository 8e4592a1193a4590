//! `rate-limiting` (kong-compat §4.3, priority 910): fixed calendar windows per second, minute,
//! hour, day, month and year, counted per consumer, credential, IP, service, header or path, in
//! this node's memory (`local`) or in Redis (`redis`).
//!
//! Beyond Kong: both policies check and increment atomically (Kong reads, proxies, then
//! increments in a timer, so concurrent bursts overshoot); with `redis` one Lua script does it
//! for every period at once, so any number of nodes sharing a Redis let through exactly the
//! limit. `sync_rate` is accepted as Kong validates it, but gwctl is always synchronous: a
//! positive value does not batch counter updates (every request runs the atomic script), which
//! keeps the limit exact at the price of one Redis round trip per request.
//!
//! `policy: cluster` (counters in Kong's database) is refused by the schema: use `redis` to
//! share counters between nodes, or `local`.

mod local;
mod redis;
pub mod window;

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use self::local::LocalCounters;
pub use self::redis::RedisConfig;
use self::redis::{RedisConn, RedisPool};
use self::window::Period;
use super::{BuildCtx, Ctx, Flow, Handler, PluginKind, typed_config};
use crate::model::Plugin;
use crate::model::schema::{EntityCheck, ErrNode, Field, FieldErrors, Matcher, Schema, now_ms};
use crate::proxy::respond;

/// The plugin kind; owns the state that outlives configuration reloads (local counters and
/// Redis connections).
#[derive(Default)]
pub struct Kind {
    local: Arc<LocalCounters>,
    redis: Arc<RedisPool>,
}

/// `config` of rate-limiting (after the schema mapped the flat `redis_*` names).
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitingConfig {
    /// Requests per second.
    pub second: Option<f64>,
    /// Requests per minute.
    pub minute: Option<f64>,
    /// Requests per hour.
    pub hour: Option<f64>,
    /// Requests per day.
    pub day: Option<f64>,
    /// Requests per month.
    pub month: Option<f64>,
    /// Requests per year.
    pub year: Option<f64>,
    /// What the counters are kept per.
    pub limit_by: String,
    /// Header counted per with `limit_by: header`.
    pub header_name: Option<String>,
    /// Path counted with `limit_by: path`.
    pub path: Option<String>,
    /// `local` or `redis`.
    pub policy: String,
    /// Proxy anyway when Redis fails.
    pub fault_tolerant: bool,
    /// Redis connection.
    pub redis: RedisConfig,
    /// No rate-limit headers to the client.
    pub hide_client_headers: bool,
    /// Status of a rejection.
    pub error_code: f64,
    /// Message of a rejection.
    pub error_message: String,
    /// Accepted; gwctl is always synchronous (see the module docs).
    pub sync_rate: f64,
}

/// One configured limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The window.
    pub period: Period,
    /// Requests allowed in it.
    pub limit: f64,
}

/// What counting one request found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hit {
    /// Per configured period (shortest first), the count before this request.
    pub used: smallvec::SmallVec<[(Period, u64); 6]>,
    /// The first period that was used up (then nothing was counted).
    pub stop: Option<Period>,
}

const PERIOD_FIELDS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

/// The flat names of Kong 3.0-3.5 and where they live now.
const SHORTHANDS: [(&str, &[&str]); 9] = [
    ("redis_host", &["redis", "host"]),
    ("redis_port", &["redis", "port"]),
    ("redis_password", &["redis", "password"]),
    ("redis_username", &["redis", "username"]),
    ("redis_ssl", &["redis", "ssl"]),
    ("redis_ssl_verify", &["redis", "ssl_verify"]),
    ("redis_server_name", &["redis", "server_name"]),
    ("redis_timeout", &["redis", "timeout"]),
    ("redis_database", &["redis", "database"]),
];

fn gt_zero(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(f) if f > 0.0 => Ok(()),
        _ => Err("value must be greater than 0".into()),
    }
}

fn http_status(v: &Value) -> Result<(), String> {
    gt_zero(v)?;
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && (100.0..=599.0).contains(&f) => Ok(()),
        _ => Err("value should be an HTTP status code between 100 and 599".into()),
    }
}

fn header_name(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if !s.is_empty() && HeaderName::from_bytes(s.as_bytes()).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

fn no_cluster(v: &Value) -> Result<(), String> {
    if v.as_str() == Some("cluster") {
        Err(
            "gwctl does not support the 'cluster' policy (counters in Kong's database); \
             use 'redis' to share counters between nodes, or 'local'"
                .into(),
        )
    } else {
        Ok(())
    }
}

fn hostname(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let ok = !s.is_empty()
        && s.len() <= 253
        && (s.parse::<std::net::IpAddr>().is_ok()
            || s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid hostname: {s}"))
    }
}

/// Kong's `validate_periods_order` and sync_rate rules, plus its `at_least_one_of` on the
/// periods (reported on `config`).
fn check_config(v: &Value) -> Result<(), String> {
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    if PERIOD_FIELDS.iter().all(|p| num(p).is_none()) {
        return Err(format!(
            "at least one of these fields must be non-empty: {}",
            PERIOD_FIELDS
                .iter()
                .map(|p| format!("'config.{p}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (i, lower) in PERIOD_FIELDS.iter().enumerate() {
        let Some(v1) = num(lower) else { continue };
        for upper in &PERIOD_FIELDS[i + 1..] {
            if let Some(v2) = num(upper)
                && v2 < v1
            {
                return Err(format!(
                    "The limit for {upper}({v2:.1}) cannot be lower than the limit for {lower}({v1:.1})"
                ));
            }
        }
    }
    let policy = v.get("policy").and_then(Value::as_str).unwrap_or("local");
    let sync_rate = num("sync_rate").unwrap_or(-1.0);
    if policy != "redis" && sync_rate != -1.0 {
        return Err("sync_rate can only be used with the redis policy".into());
    }
    if policy == "redis" && sync_rate != -1.0 && sync_rate < 0.02 {
        return Err("sync_rate must be greater than 0.02, or -1 to disable".into());
    }
    Ok(())
}

/// Kong's conditional `policy = redis` => `redis.host` required (after the flat names were
/// mapped). The port and timeout have defaults, so only a given `null` can miss them.
fn require_redis_host(input: &mut Map<String, Value>, errs: &mut FieldErrors) {
    if input.get("policy").and_then(Value::as_str) != Some("redis") {
        return;
    }
    let redis = input.get("redis").and_then(Value::as_object);
    let mut missing = FieldErrors::default();
    for f in ["host", "port", "timeout"] {
        let given = redis.and_then(|r| r.get(f));
        let absent = given.is_none_or(Value::is_null);
        if absent && (f == "host" || given.is_some()) {
            missing.add_field(f, "required field missing");
        }
    }
    if !missing.is_empty() {
        errs.insert("redis", ErrNode::Record(missing));
        errs.add_entity("failed conditional validation given value of field 'policy'");
    }
}

fn redis_schema() -> Schema {
    Schema::new(
        "redis",
        vec![
            ("host", Field::string().validator(hostname)),
            (
                "port",
                Field::integer().default(json!(6379)).between(0, 65535),
            ),
            (
                "timeout",
                Field::integer()
                    .default(json!(2000))
                    .between(0, 2_147_483_646),
            ),
            ("username", Field::string()),
            ("password", Field::string()),
            ("database", Field::integer().default(json!(0))),
            ("ssl", Field::boolean().default(json!(false))),
            ("ssl_verify", Field::boolean().default(json!(false))),
            ("server_name", Field::string().validator(hostname)),
        ],
    )
}

impl PluginKind for Kind {
    fn name(&self) -> &'static str {
        "rate-limiting"
    }
    fn priority(&self) -> i64 {
        910
    }
    fn config_schema(&self) -> Field {
        let mut fields: Vec<(&'static str, Field)> = PERIOD_FIELDS
            .iter()
            .map(|p| (*p, Field::number().validator(gt_zero)))
            .collect();
        fields.extend([
            (
                "limit_by",
                Field::string().default(json!("consumer")).one_of_str(&[
                    "consumer",
                    "credential",
                    "ip",
                    "service",
                    "header",
                    "path",
                ]),
            ),
            ("header_name", Field::string().validator(header_name)),
            ("path", Field::string().starts_with("/")),
            (
                "policy",
                Field::string()
                    .default(json!("local"))
                    .one_of_str(&["local", "cluster", "redis"])
                    .validator(no_cluster),
            ),
            (
                "fault_tolerant",
                Field::boolean().required().default(json!(true)),
            ),
            ("redis", Field::record(redis_schema()).required()),
            (
                "hide_client_headers",
                Field::boolean().required().default(json!(false)),
            ),
            (
                "error_code",
                Field::number().default(json!(429)).validator(http_status),
            ),
            (
                "error_message",
                Field::string().default(json!("API rate limit exceeded")),
            ),
            ("sync_rate", Field::number().required().default(json!(-1))),
            // Kong 3.0-3.5's flat names, mapped onto `redis` and shown back.
            ("redis_host", Field::string()),
            ("redis_port", Field::integer()),
            ("redis_password", Field::string()),
            ("redis_username", Field::string()),
            ("redis_ssl", Field::boolean()),
            ("redis_ssl_verify", Field::boolean()),
            ("redis_server_name", Field::string()),
            ("redis_timeout", Field::integer()),
            ("redis_database", Field::integer()),
        ]);
        let mut schema = Schema::new("config", fields)
            .check(EntityCheck::Conditional {
                if_field: "limit_by",
                if_match: Matcher::Eq(json!("header")),
                then_field: "header_name",
                then_match: Matcher::Required,
            })
            .check(EntityCheck::Conditional {
                if_field: "limit_by",
                if_match: Matcher::Eq(json!("path")),
                then_field: "path",
                then_match: Matcher::Required,
            });
        schema.pre = Some(require_redis_host);
        for (name, path) in SHORTHANDS {
            schema = schema.shorthand(name, path);
        }
        Field::record(schema).required().validator(check_config)
    }
    fn build(&self, plugin: &Plugin, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
        let conf: RateLimitingConfig = typed_config(plugin)?;
        let values = [
            conf.second,
            conf.minute,
            conf.hour,
            conf.day,
            conf.month,
            conf.year,
        ];
        let limits: Vec<Limit> = Period::ALL
            .iter()
            .zip(values)
            .filter_map(|(&period, v)| v.map(|limit| Limit { period, limit }))
            .collect();
        let limit_by = match conf.limit_by.as_str() {
            "credential" => LimitBy::Credential,
            "ip" => LimitBy::Ip,
            "service" => LimitBy::Service,
            "header" => LimitBy::Header(
                HeaderName::from_bytes(conf.header_name.as_deref().unwrap_or_default().as_bytes())
                    .map_err(|_| {
                        format!("rate-limiting: bad header_name {:?}", conf.header_name)
                    })?,
            ),
            "path" => LimitBy::Path(conf.path.clone().unwrap_or_default()),
            _ => LimitBy::Consumer,
        };
        let store = match conf.policy.as_str() {
            "redis" => Store::Redis(self.redis.get(&conf.redis).map_err(|e| e.to_string())?),
            _ => Store::Local(Arc::clone(&self.local)),
        };
        let status = StatusCode::from_u16(conf.error_code as u16)
            .map_err(|_| format!("rate-limiting: bad error_code {}", conf.error_code))?;
        let zero = Uuid::nil();
        let scope = format!(
            "ratelimit:{}:{}",
            plugin.route.as_ref().map_or(zero, |r| r.id),
            plugin.service.as_ref().map_or(zero, |s| s.id)
        );
        Ok(Arc::new(RateLimiting {
            limits,
            limit_by,
            scope,
            store,
            fault_tolerant: conf.fault_tolerant,
            hide_client_headers: conf.hide_client_headers,
            status,
            message: conf.error_message,
        }))
    }
}

enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(HeaderName),
    Path(String),
}

enum Store {
    Local(Arc<LocalCounters>),
    Redis(Arc<RedisConn>),
}

struct RateLimiting {
    limits: Vec<Limit>,
    limit_by: LimitBy,
    /// `ratelimit:<route_id>:<service_id>` of the plugin's scope (zero UUIDs when unscoped).
    scope: String,
    store: Store,
    fault_tolerant: bool,
    hide_client_headers: bool,
    status: StatusCode,
    message: String,
}

/// The headers access computed, moved into the response by header_filter.
#[derive(Clone)]
struct RateLimitHeaders(Vec<(HeaderName, HeaderValue)>);

/// `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`, in `Period::ALL` order.
static PERIOD_HEADERS: [(HeaderName, HeaderName); 6] = [
    (
        HeaderName::from_static("x-ratelimit-limit-second"),
        HeaderName::from_static("x-ratelimit-remaining-second"),
    ),
    (
        HeaderName::from_static("x-ratelimit-limit-minute"),
        HeaderName::from_static("x-ratelimit-remaining-minute"),
    ),
    (
        HeaderName::from_static("x-ratelimit-limit-hour"),
        HeaderName::from_static("x-ratelimit-remaining-hour"),
    ),
    (
        HeaderName::from_static("x-ratelimit-limit-day"),
        HeaderName::from_static("x-ratelimit-remaining-day"),
    ),
    (
        HeaderName::from_static("x-ratelimit-limit-month"),
        HeaderName::from_static("x-ratelimit-remaining-month"),
    ),
    (
        HeaderName::from_static("x-ratelimit-limit-year"),
        HeaderName::from_static("x-ratelimit-remaining-year"),
    ),
];
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn period_headers(p: Period) -> &'static (HeaderName, HeaderName) {
    &PERIOD_HEADERS[p.index()]
}

/// A number as Lua prints it (`10`, `10.5`).
fn lua_number(v: f64) -> HeaderValue {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return HeaderValue::from(v as i64);
    }
    HeaderValue::from_str(&format!("{v}")).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

impl RateLimiting {
    /// Kong's identifier with its fallback to the client IP, appended to `key`.
    fn push_identifier(&self, ctx: &Ctx, key: &mut String) {
        use std::fmt::Write as _;
        let uuid = |key: &mut String, id: &Uuid| {
            key.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        };
        match &self.limit_by {
            // Kong: the consumer's id, else the credential's (always a consumer's here).
            LimitBy::Consumer => {
                if let Some(a) = &ctx.auth {
                    return uuid(key, &a.consumer.id);
                }
            }
            LimitBy::Credential => {
                if let Some(c) = ctx.auth.as_ref().and_then(|a| a.credential.as_ref()) {
                    return uuid(key, &c.id);
                }
            }
            LimitBy::Ip => {}
            LimitBy::Service => return uuid(key, &ctx.service.service.id),
            LimitBy::Header(h) => {
                if let Some(v) = ctx
                    .headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                {
                    return key.push_str(v);
                }
            }
            LimitBy::Path(p) => {
                if ctx.path == *p {
                    return key.push_str(p);
                }
            }
        }
        let _ = write!(key, "{}", ctx.client_ip);
    }

    /// Kong's headers: per period limit and remaining (this request counted, floored at 0),
    /// and `RateLimit-*` for the most constraining period (lowest remaining; ties go to the
    /// longer window). Returns the headers and `RateLimit-Reset`.
    fn headers(&self, hit: &Hit, now: i64) -> (Vec<(HeaderName, HeaderValue)>, i64) {
        let mut h = Vec::with_capacity(2 * self.limits.len() + 4);
        let mut best: Option<(f64, usize)> = None;
        for (i, (l, &(period, used))) in self.limits.iter().zip(&hit.used).enumerate() {
            let mut remaining = l.limit - used as f64;
            if hit.stop.is_none() || hit.stop == Some(period) {
                remaining -= 1.0;
            }
            let remaining = remaining.max(0.0);
            let better = match best {
                None => true,
                Some((r, b)) => {
                    let p = self.limits[b].period;
                    remaining < r || (remaining == r && period.nominal_secs() > p.nominal_secs())
                }
            };
            if better {
                best = Some((remaining, i));
            }
            let (lim, rem) = period_headers(period);
            h.push((lim.clone(), lua_number(l.limit)));
            h.push((rem.clone(), lua_number(remaining)));
        }
        let mut reset = 1;
        if let Some((remaining, i)) = best {
            reset = self.limits[i].period.reset_secs(now);
            h.push((RATELIMIT_LIMIT.clone(), lua_number(self.limits[i].limit)));
            h.push((RATELIMIT_REMAINING.clone(), lua_number(remaining)));
            h.push((RATELIMIT_RESET.clone(), reset.into()));
        }
        (h, reset)
    }
}

#[async_trait]
impl Handler for RateLimiting {
    /// The request headers are read in `access` only.
    fn reads_request_headers_late(&self) -> bool {
        false
    }

    async fn access(&self, ctx: &mut Ctx) -> Flow {
        let now = now_ms();
        let mut key = String::with_capacity(self.scope.len() + 48);
        key.push_str(&self.scope);
        key.push(':');
        self.push_identifier(ctx, &mut key);
        let hit = match &self.store {
            Store::Local(c) => c.hit(&key, &self.limits, now),
            Store::Redis(r) => match r.hit(&key, &self.limits, now).await {
                Ok(hit) => hit,
                Err(e) => {
                    r.warn(&e, now, self.fault_tolerant);
                    if self.fault_tolerant {
                        return Flow::Continue;
                    }
                    return Flow::Respond(respond::error_with(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "An unexpected error occurred",
                        &ctx.request_id,
                        ctx.headers.get(http::header::ACCEPT),
                    ));
                }
            },
        };
        let headers = if self.hide_client_headers {
            None
        } else {
            Some(self.headers(&hit, now))
        };
        if hit.stop.is_some() {
            let resp = respond::error_with(
                self.status,
                &self.message,
                &ctx.request_id,
                ctx.headers.get(http::header::ACCEPT),
            );
            if let Some((mut h, reset)) = headers {
                h.push((http::header::RETRY_AFTER, reset.into()));
                ctx.data.insert(RateLimitHeaders(h));
            }
            // The header filter adds them to this response (Kong passes them to response.error).
            return Flow::Respond(resp);
        }
        if let Some((h, _)) = headers {
            ctx.data.insert(RateLimitHeaders(h));
        }
        Flow::Continue
    }

    fn header_filter(&self, ctx: &mut Ctx, resp: &mut Parts) {
        if let Some(RateLimitHeaders(h)) = ctx.data.remove::<RateLimitHeaders>() {
            resp.headers.reserve(h.len());
            for (name, value) in h {
                resp.headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Ctx as SchemaCtx, NoPlugins};

    fn validate(config: Value) -> Result<Value, FieldErrors> {
        let Field { ty, .. } = Kind::default().config_schema();
        let crate::model::schema::FieldType::Record(schema) = ty else {
            unreachable!()
        };
        let v = schema.validate(&config, &SchemaCtx::new(0, &NoPlugins))?;
        check_config(&v).map_err(|m| {
            let mut e = FieldErrors::default();
            e.add_entity(m);
            e
        })?;
        Ok(v)
    }

    #[test]
    fn defaults_and_flat_names_echoed() {
        let v = validate(json!({"minute": 5})).unwrap();
        assert_eq!(v["limit_by"], "consumer");
        assert_eq!(v["policy"], "local");
        assert_eq!(v["redis"]["port"], 6379);
        assert_eq!(v["redis_port"], 6379);
        assert_eq!(v["redis_timeout"], 2000);
        assert_eq!(v["redis_host"], Value::Null);
        assert_eq!(v["sync_rate"], -1);
        let v = validate(
            json!({"minute": 5, "policy": "redis", "redis_host": "h", "redis_port": 7000,
            "redis": {"port": 7001}}),
        )
        .unwrap();
        assert_eq!(v["redis"]["host"], "h");
        assert_eq!(v["redis"]["port"], 7001, "the nested field wins");
        assert_eq!(v["redis_port"], 7001);
    }

    #[test]
    fn kong_messages() {
        let e = validate(json!({"minute": 20, "hour": 10})).unwrap_err();
        assert_eq!(
            e.entity,
            vec!["The limit for hour(10.0) cannot be lower than the limit for minute(20.0)"]
        );
        let e = validate(json!({"minute": 1, "policy": "redis"})).unwrap_err();
        assert!(
            e.message().contains("redis.host: required field missing"),
            "{}",
            e.message()
        );
        let e = validate(json!({"minute": 1, "policy": "cluster"})).unwrap_err();
        assert!(
            e.message()
                .contains("does not support the 'cluster' policy")
        );
        let e = validate(json!({"minute": 1, "sync_rate": 1})).unwrap_err();
        assert_eq!(
            e.entity,
            vec!["sync_rate can only be used with the redis policy"]
        );
    }

    #[test]
    fn lua_numbers() {
        assert_eq!(lua_number(10.0), "10");
        assert_eq!(lua_number(10.5), "10.5");
        assert_eq!(lua_number(0.0), "0");
    }
}
