//! Kong's declarative configuration format (kong-compat §5): YAML or JSON text -> a flat,
//! validated [`Config`].
//!
//! - `_format_version` is required (`"1.1"`, `"2.1"` or `"3.0"`); `_transform`, `_comment`,
//!   `_ignore` are accepted at the top level and (`_comment`/`_ignore`) inside entities; decK's
//!   `_info`, `_konnect`, `_workspace` are accepted and ignored; other unknown top-level keys are
//!   errors. Kong collections gwctl does not implement (certificates, vaults, ...) are accepted
//!   only when empty.
//! - Nesting: `services[].routes[]`, `services[].plugins[]`, `routes[].plugins[]`,
//!   `consumers[].{plugins,keyauth_credentials,jwt_secrets,acls}[]`, `upstreams[].targets[]`.
//!   Top-level children reference parents by id or endpoint key (`service: orders`,
//!   `upstream: orders.internal`, `consumer: alice` (username or custom_id), plugin
//!   `route:`/`service:`/`consumer:`), as a string or `{id: ...}` / `{name: ...}`.
//! - Missing ids are UUIDv5 in a per-collection namespace (v5 of the collection name in root
//!   namespace `fd02801f-0957-4a15-a55a-c8d9606f30b5`), named by the endpoint key: service/route/
//!   upstream name, consumer username (or `custom_id:<id>`), `<upstream-id>:<host:port>` for
//!   targets, `<name>:<route-id>:<service-id>:<consumer-id>` for plugins, the key for credentials,
//!   `<consumer-id>:<group>` for ACLs; entities without a natural key use their position in the
//!   file (`services[3]`). The same file therefore always yields the same ids.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::model::Config;
use crate::model::schema::{
    Ctx, EntityKind, ErrNode, FieldErrors, NoPlugins, PathSeg, PluginSchemas, Validated, now_ms,
    validate, validators,
};

/// Root namespace of declarative ids.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0xfd02801f_0957_4a15_a55a_c8d9606f30b5);

/// Accepted `_format_version` values.
pub const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];

/// Kong collections that gwctl does not implement; accepted when empty.
pub const UNSUPPORTED: &[&str] = &[
    "certificates",
    "snis",
    "vaults",
    "keys",
    "key_sets",
    "basicauth_credentials",
    "hmacauth_credentials",
    "oauth2_credentials",
    "consumer_groups",
    "consumer_group_consumers",
    "consumer_group_plugins",
    "plugins_partials",
    "partials",
    "filter_chains",
];

/// Why a declarative configuration was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclarativeError {
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
enum ErrorKind {
    /// The text is not YAML/JSON.
    Parse(String),
    /// Empty or `null` document.
    Empty,
    /// Schema errors, mirroring the input.
    Invalid(FieldErrors),
}

impl DeclarativeError {
    /// The error tree (empty for parse errors).
    pub fn fields(&self) -> Option<&FieldErrors> {
        match &self.kind {
            ErrorKind::Invalid(f) => Some(f),
            _ => None,
        }
    }

    /// Whether the text could not be parsed at all (Kong answers those without `code`).
    pub fn is_parse_error(&self) -> bool {
        !matches!(self.kind, ErrorKind::Invalid(_))
    }

    /// Kong's `/config` error body: `{"code":14,"name":"invalid declarative configuration",
    /// "message":"declarative config is invalid: {...}","fields":{...}}`; for unparsable text
    /// `{"message":"failed parsing declarative configuration: ..."}`, for an empty document
    /// `{"message":"expected a declarative configuration"}`.
    pub fn to_kong_json(&self) -> Value {
        match &self.kind {
            ErrorKind::Parse(m) => {
                json!({ "message": format!("failed parsing declarative configuration: {m}") })
            }
            ErrorKind::Empty => json!({ "message": "expected a declarative configuration" }),
            ErrorKind::Invalid(f) => {
                let mut pretty = String::new();
                f.lua_pretty(&mut pretty);
                json!({
                    "code": 14,
                    "name": "invalid declarative configuration",
                    "message": format!("declarative config is invalid: {pretty}"),
                    "fields": f.to_json(),
                })
            }
        }
    }

    /// Human-readable flattened errors, one per line, e.g.
    /// `services[0].routes[1].paths[0]: should start with: / (fixed path) or ~/ (regex path)`.
    pub fn lines(&self) -> Vec<String> {
        match &self.kind {
            ErrorKind::Parse(m) => vec![format!("failed parsing declarative configuration: {m}")],
            ErrorKind::Empty => vec!["expected a declarative configuration".to_owned()],
            ErrorKind::Invalid(f) => {
                let mut out = Vec::new();
                f.flatten_brackets("", &mut out);
                out
            }
        }
    }
}

impl fmt::Display for DeclarativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for DeclarativeError {}

/// md5 hex of the text (Kong's `configuration_hash`).
pub fn config_hash(text: &str) -> String {
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a Kong declarative file (YAML or JSON text) into a flat [`Config`], with no plugins
/// enabled and the current time.
pub fn parse(text: &str) -> Result<Config, DeclarativeError> {
    parse_with(text, &NoPlugins, now_ms())
}

/// [`parse`] with a plugin registry and a clock (Unix milliseconds).
pub fn parse_with(
    text: &str,
    plugins: &dyn PluginSchemas,
    now_ms: i64,
) -> Result<Config, DeclarativeError> {
    let value = parse_text(text)?;
    from_value(&value, plugins, now_ms)
}

/// Parse YAML or JSON text into a JSON value (no validation).
pub fn parse_text(text: &str) -> Result<Value, DeclarativeError> {
    if text.trim().is_empty() {
        return Err(DeclarativeError {
            kind: ErrorKind::Empty,
        });
    }
    let yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let msg = match e.location() {
                Some(loc) if !e.to_string().contains("line") => {
                    format!("{e} at line {} column {}", loc.line(), loc.column())
                }
                _ => e.to_string(),
            };
            return Err(DeclarativeError {
                kind: ErrorKind::Parse(msg),
            });
        }
    };
    Ok(yaml_to_json(yaml))
}

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => match yaml_to_json(other) {
                        Value::String(s) => s,
                        j => j.to_string(),
                    },
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// One entity found in the file.
struct Raw {
    kind: EntityKind,
    path: Vec<PathSeg>,
    obj: Map<String, Value>,
    /// Index (into the raw list) of the entity it is nested under.
    parent: Option<usize>,
    id: Option<Uuid>,
    /// Whether the file gave the id (generated ids are not reported as primary-key duplicates:
    /// the natural key they derive from is).
    explicit_id: bool,
}

fn children(kind: EntityKind) -> &'static [(&'static str, EntityKind)] {
    use EntityKind as K;
    match kind {
        K::Services => &[("routes", K::Routes), ("plugins", K::Plugins)],
        K::Routes => &[("plugins", K::Plugins)],
        K::Consumers => &[
            ("plugins", K::Plugins),
            ("keyauth_credentials", K::KeyauthCredentials),
            ("jwt_secrets", K::JwtSecrets),
            ("acls", K::Acls),
        ],
        K::Upstreams => &[("targets", K::Targets)],
        _ => &[],
    }
}

/// The foreign-key fields of a kind: (field, referenced kind).
fn foreign_fields(kind: EntityKind) -> &'static [(&'static str, EntityKind)] {
    use EntityKind as K;
    match kind {
        K::Routes => &[("service", K::Services)],
        K::Targets => &[("upstream", K::Upstreams)],
        K::Plugins => &[
            ("route", K::Routes),
            ("service", K::Services),
            ("consumer", K::Consumers),
        ],
        K::KeyauthCredentials | K::JwtSecrets | K::Acls => &[("consumer", K::Consumers)],
        _ => &[],
    }
}

fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) if s.is_empty() => s.push_str(k),
            PathSeg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn with(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

fn collect(
    kind: EntityKind,
    value: &Value,
    path: Vec<PathSeg>,
    parent: Option<usize>,
    out: &mut Vec<Raw>,
    errs: &mut FieldErrors,
) {
    let Value::Object(obj) = value else {
        errs.insert_at(&path, ErrNode::msg("expected a record"));
        return;
    };
    let mut obj = obj.clone();
    obj.remove("_comment");
    obj.remove("_ignore");
    let mut nested = Vec::new();
    for (name, child_kind) in children(kind) {
        if let Some(v) = obj.remove(*name) {
            nested.push((*name, *child_kind, v));
        }
    }
    let me = out.len();
    out.push(Raw {
        kind,
        path: path.clone(),
        obj,
        parent,
        id: None,
        explicit_id: false,
    });
    for (name, child_kind, v) in nested {
        let cpath = with(&path, PathSeg::Key(name.to_owned()));
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    collect(
                        child_kind,
                        item,
                        with(&cpath, PathSeg::Index(i)),
                        Some(me),
                        out,
                        errs,
                    );
                }
            }
            _ => errs.insert_at(&cpath, ErrNode::msg("expected an array")),
        }
    }
}

fn namespace(kind: EntityKind) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, kind.name().as_bytes())
}

fn str_field<'a>(obj: &'a Map<String, Value>, f: &str) -> Option<&'a str> {
    obj.get(f).and_then(Value::as_str)
}

fn fk_id(obj: &Map<String, Value>, f: &str) -> String {
    obj.get(f)
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The deterministic id name of an entity (its endpoint key or a stable composite).
fn id_name(raw: &Raw) -> String {
    use EntityKind as K;
    let o = &raw.obj;
    let fallback = || path_string(&raw.path);
    match raw.kind {
        K::Services | K::Routes | K::Upstreams => {
            str_field(o, "name").map_or_else(fallback, str::to_owned)
        }
        K::Consumers => str_field(o, "username")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                str_field(o, "custom_id").map_or_else(fallback, |c| format!("custom_id:{c}"))
            }),
        K::Targets => {
            let t = str_field(o, "target")
                .map(|t| validators::normalize_target(t).unwrap_or_else(|| t.to_owned()));
            t.map_or_else(fallback, |t| format!("{}:{t}", fk_id(o, "upstream")))
        }
        K::Plugins => match str_field(o, "name") {
            Some(n) => {
                let base = format!(
                    "{n}:{}:{}:{}",
                    fk_id(o, "route"),
                    fk_id(o, "service"),
                    fk_id(o, "consumer")
                );
                match str_field(o, "instance_name") {
                    Some(i) => format!("{base}:{i}"),
                    None => base,
                }
            }
            None => fallback(),
        },
        K::KeyauthCredentials | K::JwtSecrets => {
            str_field(o, "key").map_or_else(fallback, str::to_owned)
        }
        K::Acls => {
            str_field(o, "group").map_or_else(fallback, |g| format!("{}:{g}", fk_id(o, "consumer")))
        }
        K::CaCertificates => str_field(o, "cert").map_or_else(fallback, |c| c.trim().to_owned()),
    }
}

/// Ids and endpoint keys of the entities seen so far, for reference resolution.
#[derive(Default)]
struct Index {
    ids: HashMap<EntityKind, Vec<Uuid>>,
    keys: HashMap<(EntityKind, String), Uuid>,
}

impl Index {
    fn add(&mut self, raw: &Raw, id: Uuid) {
        self.ids.entry(raw.kind).or_default().push(id);
        let key_fields: &[&str] = match raw.kind {
            EntityKind::Services | EntityKind::Routes | EntityKind::Upstreams => &["name"],
            EntityKind::Consumers => &["username", "custom_id"],
            _ => &[],
        };
        for f in key_fields {
            if let Some(k) = str_field(&raw.obj, f) {
                self.keys.entry((raw.kind, k.to_owned())).or_insert(id);
            }
        }
    }

    fn resolve(&self, kind: EntityKind, reference: &str) -> Option<Uuid> {
        if let Ok(id) = Uuid::parse_str(reference)
            && self.ids.get(&kind).is_some_and(|ids| ids.contains(&id))
        {
            return Some(id);
        }
        self.keys.get(&(kind, reference.to_owned())).copied()
    }
}

/// Assign the id of `raw` (given or deterministic) and record it in the index.
fn assign_id(raws: &mut [Raw], i: usize, index: &mut Index) {
    let id = match raws[i].obj.get("id") {
        Some(Value::String(s)) => Uuid::parse_str(s).ok(),
        _ => None,
    };
    let id = id.unwrap_or_else(|| {
        let name = id_name(&raws[i]);
        Uuid::new_v5(&namespace(raws[i].kind), name.as_bytes())
    });
    raws[i].explicit_id = raws[i].obj.contains_key("id");
    if !raws[i].explicit_id {
        raws[i]
            .obj
            .insert("id".to_owned(), Value::String(id.to_string()));
    }
    raws[i].id = Some(id);
    index.add(&raws[i], id);
}

/// Point nested children at their parent and resolve references by name or id.
fn resolve_refs(raws: &mut [Raw], i: usize, index: &Index, errs: &mut FieldErrors) {
    let kind = raws[i].kind;
    let parent = raws[i]
        .parent
        .and_then(|p| raws[p].id.map(|id| (raws[p].kind, id)));
    for (field, target) in foreign_fields(kind) {
        if let Some((pkind, pid)) = parent
            && pkind == *target
        {
            raws[i]
                .obj
                .insert((*field).to_owned(), json!({ "id": pid.to_string() }));
            continue;
        }
        let reference = match raws[i].obj.get(*field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => {
                match ["id", "name", "username", "custom_id"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))
                {
                    Some(s) if o.len() == 1 => s.to_owned(),
                    _ => continue, // left to the schema (unknown field / expected a record)
                }
            }
            Some(_) => continue,
        };
        match index.resolve(*target, &reference) {
            Some(id) => {
                raws[i]
                    .obj
                    .insert((*field).to_owned(), json!({ "id": id.to_string() }));
            }
            None => {
                let path = with(&raws[i].path, PathSeg::Key((*field).to_owned()));
                errs.insert_at(
                    &path,
                    ErrNode::msg(format!(
                        "invalid reference '{field}: {reference}' (no such entry in '{}')",
                        target.name()
                    )),
                );
                // Keep a well-formed placeholder so the schema does not report the field again.
                raws[i].obj.insert(
                    (*field).to_owned(),
                    json!({ "id": Uuid::nil().to_string() }),
                );
            }
        }
    }
}

/// Validate an already-parsed declarative document (e.g. a JSON `POST /config` body).
pub fn from_value(
    doc: &Value,
    plugins: &dyn PluginSchemas,
    now_ms: i64,
) -> Result<Config, DeclarativeError> {
    let top = match doc {
        Value::Null => {
            return Err(DeclarativeError {
                kind: ErrorKind::Empty,
            });
        }
        Value::Object(m) => m,
        _ => {
            return Err(DeclarativeError {
                kind: ErrorKind::Parse("expected an object at the top level".to_owned()),
            });
        }
    };
    let mut errs = FieldErrors::default();
    let mut raws: Vec<Raw> = Vec::new();

    match top.get("_format_version") {
        None | Some(Value::Null) => errs.add_field("_format_version", "required field missing"),
        Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {}
        Some(Value::String(_)) => {
            errs.add_field(
                "_format_version",
                format!("expected one of: {}", FORMAT_VERSIONS.join(", ")),
            );
        }
        Some(_) => errs.add_field("_format_version", "expected a string"),
    }
    for (key, value) in top {
        match key.as_str() {
            "_format_version" | "_comment" | "_ignore" | "_info" | "_konnect" | "_workspace" => {}
            "_transform" => {
                if !value.is_boolean() && !value.is_null() {
                    errs.add_field(key, "expected a boolean");
                }
            }
            k => {
                if let Some(kind) = EntityKind::from_name(k) {
                    match value {
                        Value::Null => {}
                        Value::Array(items) => {
                            for (i, item) in items.iter().enumerate() {
                                let path = vec![PathSeg::Key(k.to_owned()), PathSeg::Index(i)];
                                collect(kind, item, path, None, &mut raws, &mut errs);
                            }
                        }
                        _ => errs.add_field(k, "expected an array"),
                    }
                } else if UNSUPPORTED.contains(&k) {
                    let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                    if !empty {
                        errs.add_field(k, "entity type not supported by gwctl");
                    }
                } else {
                    errs.add_field(k, "unknown field");
                }
            }
        }
    }

    // Ids: independent entities first, then routes (need services), then the rest.
    let mut index = Index::default();
    use EntityKind as K;
    let stages: [&[EntityKind]; 3] = [
        &[K::Services, K::Upstreams, K::Consumers, K::CaCertificates],
        &[K::Routes],
        &[
            K::Targets,
            K::Plugins,
            K::KeyauthCredentials,
            K::JwtSecrets,
            K::Acls,
        ],
    ];
    for stage in stages {
        for i in 0..raws.len() {
            if stage.contains(&raws[i].kind) {
                resolve_refs(&mut raws, i, &index, &mut errs);
                assign_id(&mut raws, i, &mut index);
            }
        }
    }

    // Validate every entity.
    let ctx = Ctx::new(now_ms, plugins);
    let mut validated: Vec<(usize, Validated)> = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        match validate(raw.kind, &Value::Object(raw.obj.clone()), &ctx) {
            Ok(v) => validated.push((i, v)),
            Err(fe) => errs.insert_at(&raw.path, ErrNode::Record(fe)),
        }
    }

    // Uniqueness.
    let mut seen: BTreeMap<(EntityKind, String, String), ()> = BTreeMap::new();
    for (i, v) in &validated {
        let kind = raws[*i].kind;
        for (what, value) in unique_keys(v) {
            if what == "primary key" && !raws[*i].explicit_id {
                continue;
            }
            if seen
                .insert((kind, what.clone(), value.clone()), ())
                .is_some()
            {
                errs.insert_at(
                    &raws[*i].path,
                    ErrNode::msg(format!(
                        "uniqueness violation: '{}' entity with {what} set to '{value}' already declared",
                        kind.name()
                    )),
                );
                break;
            }
        }
    }

    if !errs.is_empty() {
        return Err(DeclarativeError {
            kind: ErrorKind::Invalid(errs),
        });
    }
    let mut config = Config::default();
    for (_, v) in validated {
        match v {
            Validated::Service(e) => config.services.push(*e),
            Validated::Route(e) => config.routes.push(*e),
            Validated::Upstream(e) => config.upstreams.push(*e),
            Validated::Target(e) => config.targets.push(e),
            Validated::Consumer(e) => config.consumers.push(e),
            Validated::Plugin(e) => config.plugins.push(*e),
            Validated::KeyauthCredential(e) => config.keyauth_credentials.push(e),
            Validated::JwtSecret(e) => config.jwt_secrets.push(e),
            Validated::Acl(e) => config.acls.push(e),
            Validated::CaCertificate(e) => config.ca_certificates.push(e),
        }
    }
    Ok(config)
}

fn fk(f: Option<&crate::model::ForeignKey>) -> String {
    f.map(|k| k.id.to_string()).unwrap_or_default()
}

/// The unique keys of an entity: `(description, value)`.
fn unique_keys(v: &Validated) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut push = |what: &str, val: String| keys.push((what.to_owned(), val));
    match v {
        Validated::Service(e) => {
            push("primary key", e.id.to_string());
            if let Some(n) = &e.name {
                push("name", n.clone());
            }
        }
        Validated::Route(e) => {
            push("primary key", e.id.to_string());
            if let Some(n) = &e.name {
                push("name", n.clone());
            }
        }
        Validated::Upstream(e) => {
            push("primary key", e.id.to_string());
            push("name", e.name.clone());
        }
        Validated::Target(e) => {
            push("primary key", e.id.to_string());
            push(
                "upstream, target",
                format!("{}, {}", e.upstream.id, e.target),
            );
        }
        Validated::Consumer(e) => {
            push("primary key", e.id.to_string());
            if let Some(n) = &e.username {
                push("username", n.clone());
            }
            if let Some(n) = &e.custom_id {
                push("custom_id", n.clone());
            }
        }
        Validated::Plugin(e) => {
            push("primary key", e.id.to_string());
            push(
                "name, route, service, consumer",
                format!(
                    "{}, {}, {}, {}",
                    e.name,
                    fk(e.route.as_ref()),
                    fk(e.service.as_ref()),
                    fk(e.consumer.as_ref())
                ),
            );
            if let Some(n) = &e.instance_name {
                push("instance_name", n.clone());
            }
        }
        Validated::KeyauthCredential(e) => {
            push("primary key", e.id.to_string());
            push("key", e.key.clone());
        }
        Validated::JwtSecret(e) => {
            push("primary key", e.id.to_string());
            push("key", e.key.clone());
        }
        Validated::Acl(e) => {
            push("primary key", e.id.to_string());
            push("consumer, group", format!("{}, {}", e.consumer.id, e.group));
        }
        Validated::CaCertificate(e) => {
            push("primary key", e.id.to_string());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn ok(text: &str) -> Config {
        parse_with(text, &NoPlugins, NOW).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> DeclarativeError {
        match parse_with(text, &NoPlugins, NOW) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    const EXAMPLE_NO_PLUGINS: &str = r#"
_format_version: "3.0"
_transform: true
services:
  - name: orders
    url: http://orders.internal:8080/api
    routes:
      - name: orders-r
        paths: ["/orders"]
upstreams:
  - name: orders.internal
    healthchecks: { active: { healthy: { interval: 5, successes: 1 }, unhealthy: { interval: 5, http_failures: 2 } } }
    targets:
      - target: 10.0.0.11:8080
        weight: 100
consumers:
  - username: alice
    custom_id: "42"
    keyauth_credentials:
      - key: alice-key
    jwt_secrets:
      - key: alice-iss
        algorithm: HS256
        secret: s3cr3t
"#;

    #[test]
    fn kong_example_without_plugins() {
        let c = ok(EXAMPLE_NO_PLUGINS);
        assert_eq!(c.services.len(), 1);
        let s = &c.services[0];
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_deref()),
            ("orders.internal", 8080, Some("/api"))
        );
        assert_eq!(c.routes[0].service.map(|f| f.id), Some(s.id));
        let u = &c.upstreams[0];
        assert!((u.healthchecks.active.healthy.interval - 5.0).abs() < f64::EPSILON);
        assert_eq!(u.healthchecks.active.unhealthy.http_failures, 2);
        assert_eq!(u.healthchecks.active.unhealthy.tcp_failures, 0);
        assert_eq!(c.targets[0].upstream.id, u.id);
        assert_eq!(c.targets[0].target, "10.0.0.11:8080");
        let alice = &c.consumers[0];
        assert_eq!(c.keyauth_credentials[0].consumer.id, alice.id);
        assert_eq!(c.keyauth_credentials[0].key, "alice-key");
        assert_eq!(c.jwt_secrets[0].consumer.id, alice.id);
        assert_eq!(c.jwt_secrets[0].secret.as_deref(), Some("s3cr3t"));
        assert_eq!(s.created_at, 1_700_000_000);
        // Deterministic ids.
        let services_ns = Uuid::new_v5(&ID_NAMESPACE, b"services");
        assert_eq!(s.id, Uuid::new_v5(&services_ns, b"orders"));
        assert_eq!(s.id.get_version_num(), 5);
        let again = ok(EXAMPLE_NO_PLUGINS);
        assert_eq!(c, again);
    }

    const EXAMPLE_WITH_PLUGINS: &str = r#"
_format_version: "3.0"
services:
  - name: orders
    url: http://orders.internal:8080/api
    routes:
      - name: orders-r
        paths: ["/orders"]
        plugins:
          - name: rate-limiting
            config: { minute: 100, policy: local }
    plugins:
      - name: key-auth
consumers:
  - username: alice
    plugins:
      - name: rate-limiting
        config: { second: 5 }
plugins:
  - name: prometheus
  - name: cors
    route: orders-r
"#;

    #[test]
    fn kong_example_plugins_not_enabled() {
        let e = err(EXAMPLE_WITH_PLUGINS);
        let ne = |n: &str| {
            format!("plugin '{n}' not enabled; add it to the 'plugins' configuration property")
        };
        assert_eq!(
            e.lines(),
            vec![
                format!("consumers[0].plugins[0].name: {}", ne("rate-limiting")),
                format!("plugins[0].name: {}", ne("prometheus")),
                format!("plugins[1].name: {}", ne("cors")),
                format!("services[0].plugins[0].name: {}", ne("key-auth")),
                format!(
                    "services[0].routes[0].plugins[0].name: {}",
                    ne("rate-limiting")
                ),
            ]
        );
        let body = e.to_kong_json();
        assert_eq!(body["code"], 14);
        assert_eq!(body["name"], "invalid declarative configuration");
        assert_eq!(body["fields"]["plugins"][1]["name"], ne("cors"));
        assert_eq!(
            body["fields"]["services"][0]["routes"][0]["plugins"][0]["name"],
            ne("rate-limiting")
        );
        let msg = body["message"].as_str().unwrap();
        assert!(msg.starts_with("declarative config is invalid: {consumers={{plugins={{name=\"plugin 'rate-limiting'"), "{msg}");
    }

    #[test]
    fn every_nesting_form_and_references() {
        let text = r#"
_format_version: "3.0"
_comment: top
_info: { select_tags: [a] }
_konnect: { control_plane_name: cp }
_workspace: default
services:
  - name: orders
    host: orders.internal
    _comment: inline
    routes:
      - name: orders-r
        paths: ["/orders"]
        plugins: []
  - id: 0b8a5b8e-1111-4a4a-8b8b-000000000001
    name: billing
    host: billing.internal
routes:
  - name: by-name
    service: orders
    paths: ["/by-name"]
  - name: by-id
    service: 0b8a5b8e-1111-4a4a-8b8b-000000000001
    hosts: ["b.example.com"]
  - name: by-record
    service: { name: billing }
    methods: [GET]
upstreams:
  - name: orders.internal
    targets:
      - target: 10.0.0.1
targets:
  - target: 10.0.0.2:9000
    upstream: orders.internal
consumers:
  - username: alice
    acls:
      - group: admins
  - custom_id: "7"
keyauth_credentials:
  - key: k2
    consumer: alice
jwt_secrets:
  - key: j2
    secret: fixed
    consumer: "7"
acls:
  - group: ops
    consumer: alice
"#;
        let c = ok(text);
        let svc = |n: &str| {
            c.services
                .iter()
                .find(|s| s.name.as_deref() == Some(n))
                .unwrap()
                .id
        };
        let route = |n: &str| {
            c.routes
                .iter()
                .find(|r| r.name.as_deref() == Some(n))
                .unwrap()
        };
        assert_eq!(route("orders-r").service.unwrap().id, svc("orders"));
        assert_eq!(route("by-name").service.unwrap().id, svc("orders"));
        assert_eq!(route("by-id").service.unwrap().id, svc("billing"));
        assert_eq!(route("by-record").service.unwrap().id, svc("billing"));
        assert_eq!(
            svc("billing").to_string(),
            "0b8a5b8e-1111-4a4a-8b8b-000000000001"
        );
        let up = c.upstreams[0].id;
        let mut targets: Vec<(&str, Uuid)> = c
            .targets
            .iter()
            .map(|t| (t.target.as_str(), t.upstream.id))
            .collect();
        targets.sort();
        assert_eq!(targets, vec![("10.0.0.1:8000", up), ("10.0.0.2:9000", up)]);
        let alice = c
            .consumers
            .iter()
            .find(|x| x.username.as_deref() == Some("alice"))
            .unwrap()
            .id;
        let seven = c
            .consumers
            .iter()
            .find(|x| x.custom_id.as_deref() == Some("7"))
            .unwrap()
            .id;
        assert_eq!(c.keyauth_credentials[0].consumer.id, alice);
        assert_eq!(c.jwt_secrets[0].consumer.id, seven);
        assert_eq!(c.acls.len(), 2);
        assert!(c.acls.iter().all(|a| a.consumer.id == alice));
        // Stable across parses, and unique.
        let again = ok(text);
        assert_eq!(c, again);
        let mut ids: Vec<Uuid> = c
            .routes
            .iter()
            .map(|r| r.id)
            .chain(c.targets.iter().map(|t| t.id))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), c.routes.len() + c.targets.len());
    }

    #[test]
    fn json_text_is_accepted() {
        let c = ok(
            r#"{"_format_version":"3.0","services":[{"name":"s","host":"s.internal","routes":[{"paths":["/s"]}]}]}"#,
        );
        assert_eq!(c.routes[0].service.unwrap().id, c.services[0].id);
        // Keyless route: id from its position, still stable.
        let c2 = ok(
            r#"{"_format_version":"3.0","services":[{"name":"s","host":"s.internal","routes":[{"paths":["/s"]}]}]}"#,
        );
        assert_eq!(c.routes[0].id, c2.routes[0].id);
    }

    #[test]
    fn format_and_top_level_errors() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (
                "services: []",
                vec!["_format_version: required field missing"],
            ),
            (
                "_format_version: \"4.0\"",
                vec!["_format_version: expected one of: 1.1, 2.1, 3.0"],
            ),
            (
                "_format_version: 3.0",
                vec!["_format_version: expected a string"],
            ),
            (
                "_format_version: \"3.0\"\nfoo: 1",
                vec!["foo: unknown field"],
            ),
            (
                "_format_version: \"3.0\"\nservices: {}",
                vec!["services: expected an array"],
            ),
            (
                "_format_version: \"3.0\"\ncertificates: [{cert: x}]",
                vec!["certificates: entity type not supported by gwctl"],
            ),
            (
                "_format_version: \"3.0\"\nservices: [5]",
                vec!["services[0]: expected a record"],
            ),
        ];
        for (text, lines) in cases {
            assert_eq!(err(text).lines(), lines, "{text}");
        }
        ok("_format_version: \"1.1\"\ncertificates: []\nvaults: null");
        ok("_format_version: \"2.1\"");
    }

    #[test]
    fn empty_and_unparsable_documents() {
        for text in ["", "  \n", "null", "~"] {
            let e = err(text);
            assert_eq!(
                e.lines(),
                vec!["expected a declarative configuration"],
                "{text:?}"
            );
            assert_eq!(
                e.to_kong_json(),
                json!({"message": "expected a declarative configuration"})
            );
        }
        let e = err("_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n");
        let line = &e.lines()[0];
        assert!(
            line.starts_with("failed parsing declarative configuration: "),
            "{line}"
        );
        assert!(line.contains("line"), "{line}");
        assert!(e.is_parse_error());
        assert!(
            e.to_kong_json()["message"]
                .as_str()
                .unwrap()
                .starts_with("failed parsing declarative configuration")
        );
    }

    #[test]
    fn nested_validation_errors_have_paths() {
        let text = r#"
_format_version: "3.0"
services:
  - name: orders
    host: orders.internal
    port: 99999
    routes:
      - name: a
        paths: ["/ok"]
      - name: b
        paths: ["/ok", "nope"]
consumers:
  - {}
"#;
        let e = err(text);
        assert_eq!(
            e.lines(),
            vec![
                "consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'",
                "services[0].port: value should be between 0 and 65535",
                "services[0].routes[1].paths[1]: should start with: / (fixed path) or ~/ (regex path)",
            ]
        );
        let fields = e.to_kong_json()["fields"].clone();
        assert_eq!(
            fields,
            json!({
                "consumers": [{"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}],
                "services": [{"port": "value should be between 0 and 65535",
                              "routes": [null, {"paths": [null, "should start with: / (fixed path) or ~/ (regex path)"]}]}]
            })
        );
        assert_eq!(e.to_string(), e.lines().join("\n"));
    }

    #[test]
    fn unresolved_references_and_duplicates() {
        let text = r#"
_format_version: "3.0"
services:
  - name: orders
    host: a.internal
  - name: orders
    host: b.internal
routes:
  - name: r
    service: nope
    paths: ["/"]
targets:
  - target: 10.0.0.1
    upstream: missing
keyauth_credentials:
  - key: k
    consumer: ghost
"#;
        let e = err(text);
        assert_eq!(
            e.lines(),
            vec![
                "keyauth_credentials[0].consumer: invalid reference 'consumer: ghost' (no such entry in 'consumers')".to_owned(),
                "routes[0].service: invalid reference 'service: nope' (no such entry in 'services')".to_owned(),
                "services[1]: uniqueness violation: 'services' entity with name set to 'orders' already declared".to_owned(),
                "targets[0].upstream: invalid reference 'upstream: missing' (no such entry in 'upstreams')".to_owned(),
            ]
        );
    }

    #[test]
    fn duplicate_keys_and_targets() {
        let text = r#"
_format_version: "3.0"
upstreams:
  - name: u
    targets:
      - target: 10.0.0.1
      - target: 10.0.0.1:8000
consumers:
  - username: a
    keyauth_credentials: [{key: same}]
  - username: b
    keyauth_credentials: [{key: same}]
  - username: a
"#;
        let lines = err(text).lines();
        assert!(lines.iter().any(|l| l.starts_with("consumers[1].keyauth_credentials[0]: uniqueness violation: 'keyauth_credentials' entity with key set to 'same'")), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("upstreams[0].targets[1]: uniqueness violation: 'targets'")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains(
                "consumers[2]: uniqueness violation: 'consumers' entity with username set to 'a'"
            )),
            "{lines:?}"
        );
    }

    #[test]
    fn hash_is_md5_hex() {
        assert_eq!(config_hash(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(config_hash("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
