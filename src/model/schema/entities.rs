//! Kong 3.x entity schemas (kong-compat §1.8) and the typed validation front-ends.

use std::sync::LazyLock;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::validators as v;
use super::{CheckFailure, Ctx, EntityCheck, Field, FieldErrors, Matcher, Schema};
use crate::model::{
    Acl, CaCertificate, Consumer, JwtSecret, KeyAuthCredential, Plugin, Route, Service, Target,
    Upstream,
};

/// The entity collections gwctl knows, by Kong's endpoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// `services`
    Services,
    /// `routes`
    Routes,
    /// `upstreams`
    Upstreams,
    /// `targets`
    Targets,
    /// `consumers`
    Consumers,
    /// `plugins`
    Plugins,
    /// `keyauth_credentials`
    KeyauthCredentials,
    /// `jwt_secrets`
    JwtSecrets,
    /// `acls`
    Acls,
    /// `ca_certificates`
    CaCertificates,
}

impl EntityKind {
    /// Every kind, parents before children.
    pub const ALL: [Self; 10] = [
        Self::Services,
        Self::Routes,
        Self::Upstreams,
        Self::Targets,
        Self::Consumers,
        Self::Plugins,
        Self::KeyauthCredentials,
        Self::JwtSecrets,
        Self::Acls,
        Self::CaCertificates,
    ];

    /// Kong's collection name (`services`, `keyauth_credentials`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::Routes => "routes",
            Self::Upstreams => "upstreams",
            Self::Targets => "targets",
            Self::Consumers => "consumers",
            Self::Plugins => "plugins",
            Self::KeyauthCredentials => "keyauth_credentials",
            Self::JwtSecrets => "jwt_secrets",
            Self::Acls => "acls",
            Self::CaCertificates => "ca_certificates",
        }
    }

    /// The kind for a collection name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The entity's schema (plugins: with `config` as an untyped record; see [`validate_plugin`]).
    pub fn schema(self) -> &'static Schema {
        match self {
            Self::Services => &SERVICE,
            Self::Routes => &ROUTE,
            Self::Upstreams => &UPSTREAM,
            Self::Targets => &TARGET,
            Self::Consumers => &CONSUMER,
            Self::Plugins => &PLUGIN,
            Self::KeyauthCredentials => &KEYAUTH,
            Self::JwtSecrets => &JWT,
            Self::Acls => &ACL,
            Self::CaCertificates => &CA_CERT,
        }
    }
}

/// The plugin registry hook: config schemas by plugin name.
pub trait PluginSchemas: Send + Sync {
    /// The `config` field (normally a required [`Field::record`]) of plugin `name`, or `None`
    /// when the plugin is not enabled.
    fn config(&self, name: &str) -> Option<Field>;
    /// Names of the plugins this node can run, sorted.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Kong's priority of plugin `name` (for `GET /`'s `available_on_server`).
    fn priority(&self, _name: &str) -> i64 {
        0
    }
    /// Whether the plugin may be scoped to a consumer (jwt, key-auth, cors... may not).
    fn allows_consumer(&self, _name: &str) -> bool {
        true
    }
    /// Checks of plugin `name` over the whole plugin record (Kong's plugin-schema
    /// `entity_checks`, e.g. acl's `only_one_of: config.allow, config.deny`): their messages go to
    /// the plugin's `@entity`, as Kong reports them. Skipped when `config` itself failed.
    fn entity_checks(&self, _name: &str) -> Vec<EntityCheck> {
        Vec::new()
    }
}

/// A registry with no plugins: every plugin name is "not enabled".
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPlugins;

impl PluginSchemas for NoPlugins {
    fn config(&self, _name: &str) -> Option<Field> {
        None
    }
}

/// Any validated entity (short-lived: unpacked into a `Config` or a store right away).
#[derive(Debug, Clone, PartialEq)]
pub enum Validated {
    /// A service.
    Service(Box<Service>),
    /// A route.
    Route(Box<Route>),
    /// An upstream.
    Upstream(Box<Upstream>),
    /// A target.
    Target(Target),
    /// A consumer.
    Consumer(Consumer),
    /// A plugin.
    Plugin(Box<Plugin>),
    /// A key-auth credential.
    KeyauthCredential(KeyAuthCredential),
    /// A jwt credential.
    JwtSecret(JwtSecret),
    /// An ACL.
    Acl(Acl),
    /// A CA certificate.
    CaCertificate(CaCertificate),
}

/// Validate one entity of `kind` (foreign keys as `{"id": ...}` or absent), filling defaults,
/// `id` (v4) and timestamps.
pub fn validate(kind: EntityKind, input: &Value, ctx: &Ctx<'_>) -> Result<Validated, FieldErrors> {
    Ok(match kind {
        EntityKind::Services => Validated::Service(Box::new(validate_service(input, ctx)?)),
        EntityKind::Routes => Validated::Route(Box::new(validate_route(input, ctx)?)),
        EntityKind::Upstreams => Validated::Upstream(Box::new(validate_upstream(input, ctx)?)),
        EntityKind::Targets => Validated::Target(validate_target(input, ctx)?),
        EntityKind::Consumers => Validated::Consumer(validate_consumer(input, ctx)?),
        EntityKind::Plugins => Validated::Plugin(Box::new(validate_plugin(input, ctx)?)),
        EntityKind::KeyauthCredentials => {
            Validated::KeyauthCredential(validate_keyauth_credential(input, ctx)?)
        }
        EntityKind::JwtSecrets => Validated::JwtSecret(validate_jwt_secret(input, ctx)?),
        EntityKind::Acls => Validated::Acl(validate_acl(input, ctx)?),
        EntityKind::CaCertificates => {
            Validated::CaCertificate(validate_ca_certificate(input, ctx)?)
        }
    })
}

fn typed<T: DeserializeOwned>(
    schema: &Schema,
    input: &Value,
    ctx: &Ctx<'_>,
) -> Result<T, FieldErrors> {
    let value = schema.validate(input, ctx)?;
    serde_json::from_value(value).map_err(|e| {
        let mut errs = FieldErrors::default();
        errs.add_entity(format!("internal: {e}"));
        errs
    })
}

/// Validate a service (the `url` shorthand is accepted).
pub fn validate_service(input: &Value, ctx: &Ctx<'_>) -> Result<Service, FieldErrors> {
    typed(&SERVICE, input, ctx)
}
/// Validate a route.
pub fn validate_route(input: &Value, ctx: &Ctx<'_>) -> Result<Route, FieldErrors> {
    typed(&ROUTE, input, ctx)
}
/// Validate an upstream (hash_on/algorithm coupling applied).
pub fn validate_upstream(input: &Value, ctx: &Ctx<'_>) -> Result<Upstream, FieldErrors> {
    typed(&UPSTREAM, input, ctx)
}
/// Validate a target (`target` normalized to `host:port`).
pub fn validate_target(input: &Value, ctx: &Ctx<'_>) -> Result<Target, FieldErrors> {
    typed(&TARGET, input, ctx)
}
/// Validate a consumer.
pub fn validate_consumer(input: &Value, ctx: &Ctx<'_>) -> Result<Consumer, FieldErrors> {
    typed(&CONSUMER, input, ctx)
}
/// Validate a key-auth credential (key generated when absent).
pub fn validate_keyauth_credential(
    input: &Value,
    ctx: &Ctx<'_>,
) -> Result<KeyAuthCredential, FieldErrors> {
    typed(&KEYAUTH, input, ctx)
}
/// Validate a jwt credential (key and secret generated when absent).
pub fn validate_jwt_secret(input: &Value, ctx: &Ctx<'_>) -> Result<JwtSecret, FieldErrors> {
    typed(&JWT, input, ctx)
}
/// Validate an ACL.
pub fn validate_acl(input: &Value, ctx: &Ctx<'_>) -> Result<Acl, FieldErrors> {
    typed(&ACL, input, ctx)
}
/// Validate a CA certificate.
pub fn validate_ca_certificate(input: &Value, ctx: &Ctx<'_>) -> Result<CaCertificate, FieldErrors> {
    typed(&CA_CERT, input, ctx)
}

/// Validate a plugin: the name is looked up in `ctx.plugins`; unknown names are reported under
/// `name` and their `config` is left as given.
pub fn validate_plugin(input: &Value, ctx: &Ctx<'_>) -> Result<Plugin, FieldErrors> {
    let name = input.get("name").and_then(Value::as_str).map(str::to_owned);
    let mut extra = FieldErrors::default();
    let mut schema = (*PLUGIN).clone();
    if let Some(name) = &name {
        match ctx.plugins.config(name) {
            Some(config) => {
                if let Some(slot) = schema.fields.iter_mut().find(|(n, _)| *n == "config") {
                    slot.1 = config;
                }
                schema.checks.extend(ctx.plugins.entity_checks(name));
                if !ctx.plugins.allows_consumer(name)
                    && input.get("consumer").is_some_and(|c| !c.is_null())
                {
                    extra.add_field("consumer", "value must be null");
                }
            }
            None => extra.add_field(
                "name",
                format!(
                    "plugin '{name}' not enabled; add it to the 'plugins' configuration property"
                ),
            ),
        }
    }
    match schema.validate(input, ctx) {
        Ok(value) if extra.is_empty() => serde_json::from_value(value).map_err(|e| {
            let mut errs = FieldErrors::default();
            errs.add_entity(format!("internal: {e}"));
            errs
        }),
        Ok(_) => Err(extra),
        Err(mut errs) => {
            for (k, node) in extra.fields {
                errs.fields.insert(k, node);
            }
            Err(errs)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared field definitions.

const PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
];
const TIMEOUT_MAX: i64 = 2_147_483_646;

fn id() -> Field {
    Field::string().uuid().required().auto(super::Auto::UuidV4)
}
fn ts() -> Field {
    Field::integer().required().auto(super::Auto::Timestamp)
}
fn ts_ms() -> Field {
    Field::number().required().auto(super::Auto::TimestampMs)
}
fn tag(val: &Value) -> Result<(), String> {
    let Some(s) = val.as_str() else { return Ok(()) };
    if s.chars()
        .all(|c| !c.is_ascii() || (c.is_ascii_graphic() && c != ',' && c != '/') || c == ' ')
    {
        Ok(())
    } else {
        Err(format!(
            "invalid tag '{s}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        ))
    }
}
fn tags() -> Field {
    Field::set(Field::string().len_min(1).validator(tag))
}
fn name_field() -> Field {
    Field::string().validator(v::name)
}
fn strs(items: &[&str]) -> Value {
    Value::from(items.iter().map(|s| Value::from(*s)).collect::<Vec<_>>())
}
fn nums(items: &[i64]) -> Value {
    Value::from(items.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Services.

static SERVICE: LazyLock<Schema> = LazyLock::new(|| {
    let not_tls = |field: &'static str| EntityCheck::Conditional {
        if_field: "protocol",
        if_match: Matcher::NotOneOf(vec![json!("https"), json!("tls")]),
        then_field: field,
        then_match: Matcher::Eq(Value::Null),
    };
    let mut s = Schema::new(
        "services",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("updated_at", ts()),
            ("name", name_field()),
            (
                "retries",
                Field::integer()
                    .required()
                    .default(json!(5))
                    .between(0, 32767),
            ),
            (
                "protocol",
                Field::string()
                    .required()
                    .default(json!("http"))
                    .one_of_str(PROTOCOLS),
            ),
            ("host", Field::string().required().validator(v::host)),
            (
                "port",
                Field::integer()
                    .required()
                    .default(json!(80))
                    .between(0, 65535),
            ),
            (
                "path",
                Field::string().starts_with("/").validator(v::plain_path),
            ),
            (
                "connect_timeout",
                Field::integer()
                    .required()
                    .default(json!(60000))
                    .between(1, TIMEOUT_MAX),
            ),
            (
                "write_timeout",
                Field::integer()
                    .required()
                    .default(json!(60000))
                    .between(1, TIMEOUT_MAX),
            ),
            (
                "read_timeout",
                Field::integer()
                    .required()
                    .default(json!(60000))
                    .between(1, TIMEOUT_MAX),
            ),
            ("tags", tags()),
            ("client_certificate", Field::foreign("certificates")),
            ("tls_verify", Field::boolean()),
            ("tls_verify_depth", Field::integer().between(0, 64)),
            ("ca_certificates", Field::array(Field::string().uuid())),
            ("enabled", Field::boolean().required().default(json!(true))),
        ],
    )
    .check(EntityCheck::Conditional {
        if_field: "protocol",
        if_match: Matcher::OneOf(
            ["tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs"]
                .iter()
                .map(|p| json!(p))
                .collect(),
        ),
        then_field: "path",
        then_match: Matcher::Eq(Value::Null),
    })
    .check(not_tls("client_certificate"))
    .check(not_tls("tls_verify"))
    .check(not_tls("tls_verify_depth"))
    .check(not_tls("ca_certificates"));
    s.pre = Some(service_url);
    s
});

/// The write-only `url` shorthand: parsed into protocol/host/port/path.
fn service_url(m: &mut Map<String, Value>, errs: &mut FieldErrors) {
    let Some(url) = m.remove("url") else { return };
    let url = match url {
        Value::Null => return,
        Value::String(s) => s,
        _ => {
            errs.add_field("url", "expected a string");
            return;
        }
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url.as_str()),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let after = &rest[auth_end..];
    let path = after.split(['?', '#']).next().unwrap_or_default();
    // Drop userinfo.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, p)) => (h.to_owned(), p.strip_prefix(':').map(str::to_owned)),
            None => (authority.to_owned(), None),
        }
    } else if authority.matches(':').count() == 1 {
        let (h, p) = authority.split_once(':').unwrap_or((authority, ""));
        (h.to_owned(), Some(p.to_owned()))
    } else {
        (authority.to_owned(), None)
    };
    let port: Option<Value> = match port.as_deref() {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) => Some(json!(n)),
            Err(_) => {
                errs.add_field("url", format!("invalid url: {url}"));
                return;
            }
        },
    };
    let scheme = scheme.unwrap_or_else(|| {
        if port == Some(json!(443)) {
            "https".to_owned()
        } else {
            "http".to_owned()
        }
    });
    let port = port.unwrap_or_else(|| {
        json!(if matches!(scheme.as_str(), "https" | "grpcs" | "tls") {
            443
        } else {
            80
        })
    });
    m.insert("protocol".to_owned(), Value::String(scheme));
    if !host.is_empty() {
        m.insert("host".to_owned(), Value::String(host));
    }
    m.insert("port".to_owned(), port);
    m.insert(
        "path".to_owned(),
        if path.is_empty() {
            Value::Null
        } else {
            Value::String(path.to_owned())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Routes.

fn route_header_key(val: &Value) -> Result<(), String> {
    let Some(s) = val.as_str() else { return Ok(()) };
    if s.eq_ignore_ascii_case("host") {
        return Err(
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
                .to_owned(),
        );
    }
    v::header_name(val)
}

static ROUTE: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "routes",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("updated_at", ts()),
            ("name", name_field()),
            (
                "protocols",
                Field::set(Field::string().one_of_str(PROTOCOLS))
                    .required()
                    .len_min(1)
                    .default(strs(&["http", "https"])),
            ),
            (
                "methods",
                Field::set(Field::string().validator(v::http_method)),
            ),
            (
                "hosts",
                Field::array(Field::string().validator(v::wildcard_host)),
            ),
            (
                "paths",
                Field::array(Field::string().validator(v::router_path)),
            ),
            (
                "headers",
                Field::map(
                    Field::string().validator(route_header_key),
                    Field::array(Field::string()),
                ),
            ),
            (
                "https_redirect_status_code",
                Field::integer()
                    .required()
                    .default(json!(426))
                    .one_of([426, 301, 302, 307, 308].iter().map(|n| json!(n)).collect()),
            ),
            (
                "regex_priority",
                Field::integer().required().default(json!(0)),
            ),
            (
                "strip_path",
                Field::boolean().required().default(json!(true)),
            ),
            (
                "path_handling",
                Field::string()
                    .required()
                    .default(json!("v0"))
                    .one_of_str(&["v0", "v1"]),
            ),
            (
                "preserve_host",
                Field::boolean().required().default(json!(false)),
            ),
            (
                "request_buffering",
                Field::boolean().required().default(json!(true)),
            ),
            (
                "response_buffering",
                Field::boolean().required().default(json!(true)),
            ),
            (
                "snis",
                Field::set(Field::string().validator(v::wildcard_host)),
            ),
            ("sources", Field::set(Field::any())),
            ("destinations", Field::set(Field::any())),
            ("tags", tags()),
            ("service", Field::foreign("services")),
        ],
    )
    .check(EntityCheck::Custom {
        fields: vec![
            "protocols",
            "methods",
            "hosts",
            "headers",
            "paths",
            "snis",
            "sources",
            "destinations",
        ],
        check: route_must_set_one_of,
    })
    .check(EntityCheck::Custom {
        fields: vec!["protocols", "snis"],
        check: route_snis,
    })
    .check(EntityCheck::Conditional {
        if_field: "protocols",
        if_match: Matcher::ElementsOneOf(vec!["grpc", "grpcs"]),
        then_field: "strip_path",
        then_match: Matcher::Eq(json!(false)),
    })
    .check(EntityCheck::Conditional {
        if_field: "protocols",
        if_match: Matcher::ElementsOneOf(vec!["http", "https"]),
        then_field: "sources",
        then_match: Matcher::Eq(Value::Null),
    })
    .check(EntityCheck::Conditional {
        if_field: "protocols",
        if_match: Matcher::ElementsOneOf(vec!["http", "https"]),
        then_field: "destinations",
        then_match: Matcher::Eq(Value::Null),
    })
});

fn protocols_of(rec: &Map<String, Value>) -> Vec<String> {
    rec.get("protocols")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn route_must_set_one_of(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let protos = protocols_of(rec);
    let has = |p: &str| protos.iter().any(|x| x == p);
    let set = |f: &str| rec.get(f).is_some_and(super::is_nonempty);
    let (fields, label): (Vec<&str>, String) = if has("http") || has("https") {
        let mut f = vec!["methods", "hosts", "headers", "paths"];
        if has("https") {
            f.push("snis");
        }
        (
            f,
            if has("https") {
                "https".into()
            } else {
                "http".into()
            },
        )
    } else if has("grpc") || has("grpcs") {
        let mut f = vec!["hosts", "headers", "paths"];
        if has("grpcs") {
            f.push("snis");
        }
        (
            f,
            if has("grpcs") {
                "grpcs".into()
            } else {
                "grpc".into()
            },
        )
    } else if has("tls_passthrough") {
        (vec!["snis"], "tls_passthrough".into())
    } else {
        (
            vec!["sources", "destinations", "snis"],
            "tcp', 'tls' or 'udp".into(),
        )
    };
    if fields.iter().any(|f| set(f)) {
        return Ok(());
    }
    let quoted: Vec<String> = fields.iter().map(|f| format!("'{f}'")).collect();
    Err(CheckFailure::entity(format!(
        "must set one of {} when 'protocols' is '{label}'",
        quoted.join(", ")
    )))
}

fn route_snis(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let protos = protocols_of(rec);
    let tls = protos
        .iter()
        .any(|p| matches!(p.as_str(), "grpcs" | "https" | "tls" | "tls_passthrough"));
    if !tls && rec.get("snis").is_some_and(super::is_nonempty) {
        return Err(CheckFailure::field(
            "snis",
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Upstreams.

const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];

fn healthchecks_schema() -> Schema {
    let statuses = |d: &[i64]| {
        Field::array(Field::integer().between(100, 999))
            .required()
            .default(nums(d))
    };
    let counter = || {
        Field::integer()
            .required()
            .default(json!(0))
            .between(0, 255)
    };
    let interval = || {
        Field::number()
            .required()
            .default(json!(0))
            .between(0, 65535)
    };
    let check_type = || {
        Field::string()
            .required()
            .default(json!("http"))
            .one_of_str(&["tcp", "http", "https", "grpc", "grpcs"])
    };
    let active = Schema::new(
        "active",
        vec![
            ("type", check_type()),
            (
                "timeout",
                Field::number()
                    .required()
                    .default(json!(1))
                    .between(0, 65535),
            ),
            (
                "concurrency",
                Field::integer()
                    .required()
                    .default(json!(10))
                    .between(1, 2_147_483_648),
            ),
            (
                "http_path",
                Field::string()
                    .required()
                    .default(json!("/"))
                    .starts_with("/")
                    .validator(v::plain_path),
            ),
            ("https_sni", Field::string().validator(v::host)),
            (
                "https_verify_certificate",
                Field::boolean().required().default(json!(true)),
            ),
            (
                "headers",
                Field::map(
                    Field::string().validator(v::header_name),
                    Field::array(Field::string()),
                ),
            ),
            (
                "healthy",
                Field::record(Schema::new(
                    "healthy",
                    vec![
                        ("interval", interval()),
                        ("http_statuses", statuses(&[200, 302])),
                        ("successes", counter()),
                    ],
                ))
                .required(),
            ),
            (
                "unhealthy",
                Field::record(Schema::new(
                    "unhealthy",
                    vec![
                        ("interval", interval()),
                        (
                            "http_statuses",
                            statuses(&[429, 404, 500, 501, 502, 503, 504, 505]),
                        ),
                        ("tcp_failures", counter()),
                        ("timeouts", counter()),
                        ("http_failures", counter()),
                    ],
                ))
                .required(),
            ),
        ],
    );
    let passive = Schema::new(
        "passive",
        vec![
            ("type", check_type()),
            (
                "healthy",
                Field::record(Schema::new(
                    "healthy",
                    vec![
                        (
                            "http_statuses",
                            statuses(&[
                                200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302,
                                303, 304, 305, 306, 307, 308,
                            ]),
                        ),
                        ("successes", counter()),
                    ],
                ))
                .required(),
            ),
            (
                "unhealthy",
                Field::record(Schema::new(
                    "unhealthy",
                    vec![
                        ("http_statuses", statuses(&[429, 500, 503])),
                        ("tcp_failures", counter()),
                        ("timeouts", counter()),
                        ("http_failures", counter()),
                    ],
                ))
                .required(),
            ),
        ],
    );
    Schema::new(
        "healthchecks",
        vec![
            ("active", Field::record(active).required()),
            ("passive", Field::record(passive).required()),
            (
                "threshold",
                Field::number().required().default(json!(0)).between(0, 100),
            ),
        ],
    )
}

static UPSTREAM: LazyLock<Schema> = LazyLock::new(|| {
    let cond =
        |if_field: &'static str, val: &str, then_field: &'static str| EntityCheck::Conditional {
            if_field,
            if_match: Matcher::OneOf(vec![json!(val)]),
            then_field,
            then_match: Matcher::Required,
        };
    let mut s = Schema::new(
        "upstreams",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("updated_at", ts()),
            (
                "name",
                Field::string().required().validator(v::upstream_name),
            ),
            (
                "algorithm",
                Field::string()
                    .required()
                    .default(json!("round-robin"))
                    .one_of_str(&[
                        "consistent-hashing",
                        "least-connections",
                        "round-robin",
                        "latency",
                    ]),
            ),
            (
                "hash_on",
                Field::string()
                    .required()
                    .default(json!("none"))
                    .one_of_str(HASH_ON),
            ),
            (
                "hash_fallback",
                Field::string()
                    .required()
                    .default(json!("none"))
                    .one_of_str(HASH_ON),
            ),
            ("hash_on_header", Field::string().validator(v::header_name)),
            (
                "hash_fallback_header",
                Field::string().validator(v::header_name),
            ),
            ("hash_on_cookie", Field::string()),
            (
                "hash_on_cookie_path",
                Field::string()
                    .required()
                    .default(json!("/"))
                    .starts_with("/")
                    .validator(v::plain_path),
            ),
            ("hash_on_query_arg", Field::string().len_min(1)),
            ("hash_fallback_query_arg", Field::string().len_min(1)),
            ("hash_on_uri_capture", Field::string().len_min(1)),
            ("hash_fallback_uri_capture", Field::string().len_min(1)),
            (
                "slots",
                Field::integer()
                    .required()
                    .default(json!(10000))
                    .between(10, 65536),
            ),
            (
                "healthchecks",
                Field::record(healthchecks_schema()).required(),
            ),
            ("tags", tags()),
            (
                "host_header",
                Field::string().validator(v::host_with_optional_port),
            ),
            ("client_certificate", Field::foreign("certificates")),
            (
                "use_srv_name",
                Field::boolean().required().default(json!(false)),
            ),
        ],
    )
    .check(cond("hash_on", "header", "hash_on_header"))
    .check(cond("hash_fallback", "header", "hash_fallback_header"))
    .check(cond("hash_on", "cookie", "hash_on_cookie"))
    .check(cond("hash_fallback", "cookie", "hash_on_cookie"))
    .check(cond("hash_on", "query_arg", "hash_on_query_arg"))
    .check(cond(
        "hash_fallback",
        "query_arg",
        "hash_fallback_query_arg",
    ))
    .check(cond("hash_on", "uri_capture", "hash_on_uri_capture"))
    .check(cond(
        "hash_fallback",
        "uri_capture",
        "hash_fallback_uri_capture",
    ))
    .check(EntityCheck::Conditional {
        if_field: "hash_on",
        if_match: Matcher::OneOf(vec![json!("none"), json!("cookie")]),
        then_field: "hash_fallback",
        then_match: Matcher::OneOf(vec![json!("none")]),
    })
    .check(EntityCheck::Custom {
        fields: vec!["hash_on", "hash_fallback"],
        check: hash_distinct,
    });
    s.pre = Some(upstream_coupling);
    s
});

fn hash_distinct(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let on = rec.get("hash_on").and_then(Value::as_str).unwrap_or("none");
    let fb = rec
        .get("hash_fallback")
        .and_then(Value::as_str)
        .unwrap_or("none");
    if on != "none" && on == fb && !matches!(on, "header" | "query_arg" | "uri_capture") {
        return Err(CheckFailure::entity(
            "values of these fields must be distinct: 'hash_on', 'hash_fallback'",
        ));
    }
    Ok(())
}

/// Kong's write-time coupling of `algorithm` and `hash_on`.
fn upstream_coupling(m: &mut Map<String, Value>, _errs: &mut FieldErrors) {
    let algo = m
        .get("algorithm")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let hash_on = m.get("hash_on").and_then(Value::as_str).map(str::to_owned);
    match (algo.as_deref(), hash_on.as_deref()) {
        (Some("least-connections" | "latency"), _) => {
            m.insert("hash_on".to_owned(), json!("none"));
            m.insert("hash_fallback".to_owned(), json!("none"));
        }
        (_, Some(h)) if h != "none" && HASH_ON.contains(&h) => {
            m.insert("algorithm".to_owned(), json!("consistent-hashing"));
        }
        (Some("consistent-hashing"), Some("none")) => {
            m.insert("algorithm".to_owned(), json!("round-robin"));
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Targets.

static TARGET: LazyLock<Schema> = LazyLock::new(|| {
    let mut s = Schema::new(
        "targets",
        vec![
            ("id", id()),
            ("created_at", ts_ms()),
            ("updated_at", ts_ms()),
            ("upstream", Field::foreign("upstreams").required()),
            ("target", Field::string().required().validator(v::target)),
            (
                "weight",
                Field::integer()
                    .required()
                    .default(json!(100))
                    .between(0, 65535),
            ),
            ("tags", tags()),
        ],
    );
    s.post = Some(|m| {
        if let Some(t) = m
            .get("target")
            .and_then(Value::as_str)
            .and_then(v::normalize_target)
        {
            m.insert("target".to_owned(), Value::String(t));
        }
    });
    s
});

// ---------------------------------------------------------------------------------------------
// Consumers, plugins, credentials.

static CONSUMER: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "consumers",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("updated_at", ts()),
            ("username", Field::string()),
            ("custom_id", Field::string()),
            ("tags", tags()),
        ],
    )
    .check(EntityCheck::AtLeastOneOf(vec!["custom_id", "username"]))
});

/// Kong's dynamic plugin ordering: `{"before": {"access": [names]}, "after": {...}}`.
fn ordering_field() -> Field {
    let phases = || {
        Field::map(
            Field::string().one_of_str(&["access"]),
            Field::array(Field::string()),
        )
    };
    Field::record(Schema::new(
        "ordering",
        vec![("before", phases()), ("after", phases())],
    ))
}

static PLUGIN: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "plugins",
        vec![
            ("id", id()),
            ("name", Field::string().required()),
            ("instance_name", name_field()),
            ("created_at", ts()),
            ("updated_at", ts()),
            ("route", Field::foreign("routes")),
            ("service", Field::foreign("services")),
            ("consumer", Field::foreign("consumers")),
            ("config", Field::any().required().default(json!({}))),
            (
                "protocols",
                Field::set(Field::string().one_of_str(PROTOCOLS))
                    .required()
                    .default(strs(&["grpc", "grpcs", "http", "https"])),
            ),
            ("enabled", Field::boolean().required().default(json!(true))),
            ("ordering", ordering_field()),
            ("tags", tags()),
        ],
    )
});

static KEYAUTH: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "keyauth_credentials",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("consumer", Field::foreign("consumers").required()),
            ("key", Field::string().required().auto(super::Auto::Alnum32)),
            ("ttl", Field::integer().between(0, 100_000_000)),
            ("tags", tags()),
        ],
    )
});

const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];

static JWT: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "jwt_secrets",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("consumer", Field::foreign("consumers").required()),
            ("key", Field::string().required().auto(super::Auto::Hex32)),
            ("secret", Field::string().auto(super::Auto::Hex32)),
            (
                "rsa_public_key",
                Field::string().validator(v::pem_public_key),
            ),
            (
                "algorithm",
                Field::string()
                    .required()
                    .default(json!("HS256"))
                    .one_of_str(JWT_ALGORITHMS),
            ),
            ("tags", tags()),
        ],
    )
    .check(EntityCheck::Conditional {
        if_field: "algorithm",
        if_match: Matcher::NotOneOf(vec![json!("HS256"), json!("HS384"), json!("HS512")]),
        then_field: "rsa_public_key",
        then_match: Matcher::Required,
    })
});

static ACL: LazyLock<Schema> = LazyLock::new(|| {
    Schema::new(
        "acls",
        vec![
            ("id", id()),
            ("created_at", ts()),
            ("consumer", Field::foreign("consumers").required()),
            ("group", Field::string().required()),
            ("tags", tags()),
        ],
    )
});

static CA_CERT: LazyLock<Schema> = LazyLock::new(|| {
    let mut s = Schema::new(
        "ca_certificates",
        vec![
            ("id", id()),
            ("created_at", ts()),
            (
                "cert",
                Field::string().required().validator(v::pem_certificate),
            ),
            ("cert_digest", Field::string()),
            ("tags", tags()),
        ],
    )
    .check(EntityCheck::Custom {
        fields: vec!["cert"],
        check: ca_certificate_check,
    });
    // Kong's on-write transformation: `cert_digest` always follows `cert`.
    s.post = Some(|m| {
        if let Some(info) = m
            .get("cert")
            .and_then(Value::as_str)
            .and_then(v::parse_certificate)
        {
            m.insert(
                "cert_digest".to_owned(),
                Value::String(v::cert_digest(&info.der)),
            );
        }
    });
    s
});

/// Kong's entity check of `ca_certificates`: one certificate, not expired, marked as a CA.
fn ca_certificate_check(rec: &Map<String, Value>) -> Result<(), CheckFailure> {
    let Some(pem) = rec.get("cert").and_then(Value::as_str) else {
        return Ok(());
    };
    if pem.matches("-----BEGIN CERTIFICATE-----").count() > 1 {
        return Err(CheckFailure::entity(
            "please submit only one certificate at a time",
        ));
    }
    // An unparsable certificate was already reported by the field validator.
    let Some(info) = v::parse_certificate(pem) else {
        return Ok(());
    };
    if info.not_after < super::now_ms() / 1000 {
        return Err(CheckFailure::entity(
            "certificate expired, \"Not After\" time is in the past",
        ));
    }
    if !info.ca {
        return Err(CheckFailure::entity(
            "certificate does not appear to be a CA because it is missing the \"CA\" basic \
             constraint",
        ));
    }
    Ok(())
}
