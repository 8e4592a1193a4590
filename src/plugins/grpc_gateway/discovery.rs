//! Discovery: a grpc-gateway instance with `reflection: true` learns its service's methods from
//! gRPC server reflection and keeps one ordinary route entity per HTTP binding on the plugin's
//! service, so the bindings show up in (and are managed through) the Admin API.
//!
//! - Which methods: those the `allow` list names (`pkg.Service/Method`, `*` globs), never the
//!   reflection or health services, only unary ones.
//! - Which HTTP binding: the method's `google.api.http` rule (and its additional bindings);
//!   without one, with `naming_convention: true`, the REST convention of the method's name
//!   (`GetUser` -> `GET /users/{id}`, ...); otherwise none.
//! - The routes: deterministic ids (UUID v5 of the plugin id and the binding), tags
//!   `grpc-discovered`, `grpc-plugin:<id>`, `grpc-method:<pkg.Service.Method>`, the body rules
//!   (`grpc-body:*`, `grpc-response-body:<field>`) and `grpc-sig:<hash of the route as
//!   written>`.
//! - Overrides: a discovered route whose content no longer matches its `grpc-sig` (someone
//!   edited it through the Admin API), or that carries `grpc-override`, belongs to the user:
//!   refresh never rewrites or removes it, and does not add a second route for its binding.
//!   Routes made by hand with a `grpc-method:` tag are never touched either.
//! - A refresh creates the missing routes, rewrites changed ones and deletes the routes of
//!   bindings that disappeared (methods gone from the server or from the allow list).
//!
//! The pure parts (allow list, convention, desired routes, plan) are separate from the runtime
//! ([`Discovery`]) that talks to the server and writes to the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use http::Method;
use prost_reflect::{DescriptorPool, Kind as FieldKind, MethodDescriptor};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::GrpcGatewayConfig;
use super::proto::{Binding, Descriptors, http_rule, method_name};
use super::reflection::{self, Endpoint, is_infrastructure};
use super::template::PathTemplate;
use crate::model::schema::{Ctx, EntityKind, PluginSchemas, now_ms};
use crate::model::{Plugin, Protocol, Route, Service};
use crate::snapshot::SnapshotStore;
use crate::store::{DISCOVERY_LEASE, Entity, Store, Tables, WriteOp};

/// Tag on every route discovery created.
pub const TAG_DISCOVERED: &str = "grpc-discovered";
/// Tag a user adds to keep a discovered route as it is.
pub const TAG_OVERRIDE: &str = "grpc-override";
/// `grpc-method:<pkg.Service.Method>`: the method a route calls (tags cannot hold `/`).
pub const TAG_METHOD: &str = "grpc-method:";
/// `grpc-body:<* or field>`: the body rule of a route.
pub const TAG_BODY: &str = "grpc-body:";
/// `grpc-response-body:<field>`.
pub const TAG_RESPONSE_BODY: &str = "grpc-response-body:";
/// `grpc-plugin:<id>`: the plugin instance that discovered the route.
pub const TAG_PLUGIN: &str = "grpc-plugin:";
/// `grpc-sig:<hex>`: the hash of the route as discovery wrote it.
pub const TAG_SIG: &str = "grpc-sig:";

/// How long one reflection round may take.
pub const REFLECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delay after a failed refresh (bounded by the refresh interval).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How often the background loop looks for due refreshes.
const TICK: Duration = Duration::from_millis(500);
/// How long a discovered route's plugin must be gone before the route is removed.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Allow list

/// The `allow` patterns: `pkg.Service/Method` with `*` matching any run of characters.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    patterns: Vec<String>,
}

fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl AllowList {
    /// From the config's list. Empty allows every method.
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns.to_vec(),
        }
    }

    /// Whether the list is empty (everything allowed).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `pkg.Service/Method` may be called.
    pub fn allows(&self, method: &str) -> bool {
        self.is_empty() || self.patterns.iter().any(|p| glob(p, method))
    }

    /// Whether some method of `service` may be allowed (to skip fetching the others' files).
    pub fn may_allow_service(&self, service: &str) -> bool {
        self.is_empty()
            || self.patterns.iter().any(|p| match p.split_once('/') {
                Some((s, _)) => glob(s, service),
                None => glob(p, service) || p.contains('*'),
            })
    }
}

/// Check of one `allow` entry (schema validator).
pub fn check_allow_entry(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let ok = s.split_once('/').is_some_and(|(svc, m)| {
        !svc.is_empty()
            && !m.is_empty()
            && !m.contains('/')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._*/".contains(c))
    });
    if ok || s == "*" {
        Ok(())
    } else {
        Err(format!(
            "invalid method pattern '{s}': expected 'package.Service/Method' ('*' matches any text)"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Naming convention

/// A binding derived from a method's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConventionBinding {
    /// HTTP methods.
    pub verbs: Vec<Method>,
    /// The path template.
    pub template: String,
    /// The body rule.
    pub body: Option<String>,
}

fn words(camel: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = camel.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = c.is_ascii_uppercase()
            && !cur.is_empty()
            && (chars[i - 1].is_ascii_lowercase()
                || chars[i - 1].is_ascii_digit()
                || chars.get(i + 1).is_some_and(char::is_ascii_lowercase));
        if boundary {
            out.push(std::mem::take(&mut cur));
        }
        if c == '_' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// English plural of a lower-case word (the common rules).
fn plural(w: &str) -> String {
    let consonant_y =
        w.len() > 1 && w.ends_with('y') && !w[..w.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{}ies", &w[..w.len() - 1])
    } else if w.ends_with(['s', 'x', 'z']) || w.ends_with("ch") || w.ends_with("sh") {
        format!("{w}es")
    } else {
        format!("{w}s")
    }
}

/// The seed's REST convention for a method name, if it fits one: `Get<X>` -> `GET /<xs>/{id}`,
/// `List<Xs>` -> `GET /<xs>`, `Create<X>` -> `POST /<xs>` (body `*`), `Update<X>` ->
/// `PUT|PATCH /<xs>/{id}` (body `*`), `Delete<X>` -> `DELETE /<xs>/{id}`. The `{id}` variable
/// binds the input's `id` field, else `<x>_id`; a method whose input has neither does not fit.
pub fn convention(method: &MethodDescriptor) -> Option<ConventionBinding> {
    let name = method.name();
    let (verb, rest) = ["Get", "List", "Create", "Update", "Delete"]
        .iter()
        .find_map(|p| name.strip_prefix(p).map(|r| (*p, r)))?;
    if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let mut ws = words(rest);
    let last = ws.pop()?;
    let singular_snake = {
        let mut all = ws.clone();
        all.push(last.clone());
        all.join("_")
    };
    let collection = {
        let mut all = ws.clone();
        all.push(if verb == "List" { last } else { plural(&last) });
        all.join("-")
    };
    let input = method.input();
    let id_field = || -> Option<String> {
        ["id".to_owned(), format!("{singular_snake}_id")]
            .into_iter()
            .find(|f| {
                input.get_field_by_name(f).is_some_and(|fd| {
                    !fd.is_list() && !fd.is_map() && !matches!(fd.kind(), FieldKind::Message(_))
                })
            })
    };
    let (verbs, template, body) = match verb {
        "Get" => (
            vec![Method::GET],
            format!("/{collection}/{{{}}}", id_field()?),
            None,
        ),
        "List" => (vec![Method::GET], format!("/{collection}"), None),
        "Create" => (
            vec![Method::POST],
            format!("/{collection}"),
            Some("*".to_owned()),
        ),
        "Update" => (
            vec![Method::PUT, Method::PATCH],
            format!("/{collection}/{{{}}}", id_field()?),
            Some("*".to_owned()),
        ),
        _ => (
            vec![Method::DELETE],
            format!("/{collection}/{{{}}}", id_field()?),
            None,
        ),
    };
    Some(ConventionBinding {
        verbs,
        template,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Desired routes and the plan

/// One route discovery wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRoute {
    /// Deterministic id.
    pub id: Uuid,
    /// Route name.
    pub name: String,
    /// HTTP methods.
    pub methods: Vec<String>,
    /// The regex path.
    pub path: String,
    /// `pkg.Service/Method`.
    pub method: String,
    /// Body rule.
    pub body: Option<String>,
    /// Response body field.
    pub response_body: Option<String>,
}

/// A binding as discovery exposes it: one or more HTTP methods on a template.
#[derive(Debug, Clone)]
pub struct ExposedBinding {
    /// HTTP methods.
    pub verbs: Vec<Method>,
    /// The template.
    pub template: PathTemplate,
    /// Body rule.
    pub body: Option<String>,
    /// Response body field.
    pub response_body: Option<String>,
    /// The method.
    pub method: MethodDescriptor,
    /// `annotation` or `convention`.
    pub source: &'static str,
}

/// What discovery exposes from a pool: the allowed unary methods' annotations, else (opt-in)
/// their conventional binding, for the services in `listed` (what the server lists; a file
/// may define more services than the server runs). Warnings say what was skipped.
pub fn exposed_bindings(
    pool: &DescriptorPool,
    listed: &[String],
    allow: &AllowList,
    naming_convention: bool,
) -> (Vec<ExposedBinding>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for service in pool.services() {
        if is_infrastructure(service.full_name())
            || !listed.iter().any(|l| l == service.full_name())
        {
            continue;
        }
        for method in service.methods() {
            let name = method_name(&method);
            if !allow.allows(&name) {
                continue;
            }
            if method.is_client_streaming() || method.is_server_streaming() {
                warnings.push(format!("{name}: streaming methods are not transcoded"));
                continue;
            }
            if let Some(rule) = http_rule(&method) {
                for b in super::proto::rule_bindings(&rule, &method, &mut warnings) {
                    out.push(ExposedBinding {
                        verbs: vec![b.http_method],
                        template: b.template,
                        body: b.body,
                        response_body: b.response_body,
                        method: b.method,
                        source: "annotation",
                    });
                }
                continue;
            }
            if !naming_convention {
                continue;
            }
            match convention(&method).map(|c| (PathTemplate::parse(&c.template), c)) {
                Some((Ok(template), c)) => out.push(ExposedBinding {
                    verbs: c.verbs,
                    template,
                    body: c.body,
                    response_body: None,
                    method: method.clone(),
                    source: "convention",
                }),
                Some((Err(e), _)) => warnings.push(format!("{name}: {e}")),
                None => warnings.push(format!(
                    "{name}: no google.api.http annotation and no naming convention fits"
                )),
            }
        }
    }
    (out, warnings)
}

/// A route name from free text: Kong's name characters only.
fn route_name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// The routes for `bindings` on the plugin's service.
pub fn desired_routes(
    plugin_id: Uuid,
    service_label: &str,
    prefix: &str,
    bindings: &[ExposedBinding],
) -> Vec<DesiredRoute> {
    let mut per_method: HashMap<String, usize> = HashMap::new();
    bindings
        .iter()
        .map(|b| {
            let method = method_name(&b.method);
            let n = per_method.entry(method.clone()).or_insert(0);
            *n += 1;
            let verbs: Vec<String> = b.verbs.iter().map(ToString::to_string).collect();
            let key = format!("{method} {} {}", verbs.join(","), b.template.as_str());
            let mut name = format!(
                "{}.{}",
                route_name_part(service_label),
                route_name_part(&method)
            );
            if *n > 1 {
                name.push_str(&format!("-{n}"));
            }
            DesiredRoute {
                id: Uuid::new_v5(&plugin_id, key.as_bytes()),
                name,
                methods: verbs,
                path: b.template.to_route_regex(prefix),
                method,
                body: b.body.clone(),
                response_body: b.response_body.clone(),
            }
        })
        .collect()
}

/// The route entity payload (Kong's JSON) of a desired route, without its signature tag.
pub fn route_payload(d: &DesiredRoute, plugin_id: Uuid, service_id: Uuid) -> Value {
    let mut tags = vec![
        TAG_DISCOVERED.to_owned(),
        format!("{TAG_PLUGIN}{plugin_id}"),
        format!("{TAG_METHOD}{}", d.method.replace('/', ".")),
    ];
    if let Some(b) = &d.body {
        tags.push(format!("{TAG_BODY}{b}"));
    }
    if let Some(b) = &d.response_body {
        tags.push(format!("{TAG_RESPONSE_BODY}{b}"));
    }
    json!({
        "id": d.id,
        "name": d.name,
        "protocols": ["http", "https"],
        "methods": d.methods,
        "paths": [d.path],
        "strip_path": false,
        "service": {"id": service_id},
        "tags": tags,
    })
}

/// The signature of a route's content: everything but its id, timestamps and `grpc-sig` tag.
pub fn signature(route: &Route) -> String {
    let mut v = serde_json::to_value(route).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        for k in ["id", "created_at", "updated_at"] {
            o.remove(k);
        }
        if let Some(Value::Array(tags)) = o.get_mut("tags") {
            tags.retain(|t| !t.as_str().is_some_and(|t| t.starts_with(TAG_SIG)));
            tags.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn tag_value<'a>(route: &'a Route, prefix: &str) -> Option<&'a str> {
    route
        .tags
        .iter()
        .flatten()
        .find_map(|t| t.strip_prefix(prefix))
}

/// Whether a discovered route is the user's now (edited since discovery wrote it, or marked).
pub fn is_override(route: &Route) -> bool {
    let tags = route.tags.as_deref().unwrap_or_default();
    tags.iter().any(|t| t == TAG_OVERRIDE)
        || tag_value(route, TAG_SIG).is_none_or(|sig| sig != signature(route))
}

/// What a refresh does to the routes.
#[derive(Debug, Default)]
pub struct Plan {
    /// New routes.
    pub create: Vec<Route>,
    /// Managed routes whose content changes.
    pub update: Vec<Route>,
    /// Managed routes no longer wanted.
    pub delete: Vec<Route>,
    /// Managed routes already as wanted.
    pub unchanged: Vec<Route>,
    /// Overrides (left alone).
    pub kept: Vec<Route>,
}

/// Compare the wanted routes (validated, signed) with the plugin's current ones.
pub fn plan(wanted: Vec<Route>, current: Vec<Route>) -> Plan {
    let mut p = Plan::default();
    let mut current: BTreeMap<Uuid, Route> = current.into_iter().map(|r| (r.id, r)).collect();
    for w in wanted {
        match current.remove(&w.id) {
            None => p.create.push(w),
            Some(c) if is_override(&c) => p.kept.push(c),
            Some(c) if signature(&c) == signature(&w) => p.unchanged.push(c),
            Some(c) => {
                let mut w = w;
                w.created_at = c.created_at;
                p.update.push(w);
            }
        }
    }
    for (_, c) in current {
        if is_override(&c) {
            p.kept.push(c);
        } else {
            p.delete.push(c);
        }
    }
    p
}

/// Validate a desired route and add its signature tag.
pub fn signed_route(
    d: &DesiredRoute,
    plugin_id: Uuid,
    service_id: Uuid,
    plugins: &dyn PluginSchemas,
) -> Result<Route, String> {
    let ctx = Ctx {
        now_ms: now_ms(),
        plugins,
        coerce: false,
    };
    let payload = route_payload(d, plugin_id, service_id);
    let mut route = crate::model::schema::validate_route(&payload, &ctx)
        .map_err(|e| format!("route {}: {e:?}", d.name))?;
    let sig = signature(&route);
    route
        .tags
        .get_or_insert_with(Vec::new)
        .push(format!("{TAG_SIG}{sig}"));
    Ok(route)
}

/// The routes of a plugin's discovery in `tables` (by their `grpc-plugin:` tag).
pub fn plugin_routes(tables: &Tables, plugin_id: Uuid) -> Vec<Route> {
    let tag = format!("{TAG_PLUGIN}{plugin_id}");
    tables
        .table(EntityKind::Routes)
        .rows()
        .values()
        .filter_map(|e| match &**e {
            Entity::Route(r) if r.tags.iter().flatten().any(|t| *t == tag) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

/// Discovered routes whose plugin no longer discovers (deleted, disabled, or reflection turned
/// off): no refresh will ever look at them again, so they are removed. Routes the user took
/// over ([`is_override`]) stay, as they do on refresh.
pub fn orphaned_routes(tables: &Tables, live: &HashSet<Uuid>) -> Vec<Route> {
    tables
        .table(EntityKind::Routes)
        .rows()
        .values()
        .filter_map(|e| match &**e {
            Entity::Route(r)
                if r.tags.iter().flatten().any(|t| t == TAG_DISCOVERED)
                    && tag_value(r, TAG_PLUGIN)
                        .and_then(|id| Uuid::parse_str(id).ok())
                        .is_some_and(|id| !live.contains(&id))
                    && !is_override(r) =>
            {
                Some((**r).clone())
            }
            _ => None,
        })
        .collect()
}

/// The gRPC binding a route carries in its tags (discovered routes and hand-made overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteBinding {
    /// `pkg.Service/Method`.
    pub method: String,
    /// Body rule.
    pub body: Option<String>,
    /// Response body field.
    pub response_body: Option<String>,
}

impl RouteBinding {
    /// From a route's tags; `None` without a `grpc-method:` tag.
    pub fn of(route: &Route) -> Option<Self> {
        let (service, method) = tag_value(route, TAG_METHOD)?.rsplit_once('.')?;
        let method = format!("{service}/{method}");
        Some(Self {
            method,
            body: tag_value(route, TAG_BODY).map(str::to_owned),
            response_body: tag_value(route, TAG_RESPONSE_BODY).map(str::to_owned),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime

/// What one refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshReport {
    /// The plugin.
    pub plugin: Uuid,
    /// Reflection protocol version used.
    pub reflection: String,
    /// Services the server listed.
    pub services: Vec<String>,
    /// Methods exposed (`pkg.Service/Method`), sorted, deduplicated.
    pub methods: Vec<String>,
    /// Names of routes created.
    pub created: Vec<String>,
    /// Names of routes rewritten.
    pub updated: Vec<String>,
    /// Names of routes deleted.
    pub deleted: Vec<String>,
    /// Names of routes left as they were.
    pub unchanged: Vec<String>,
    /// Names of overrides kept.
    pub kept: Vec<String>,
    /// What was skipped and why.
    pub warnings: Vec<String>,
    /// Whether this refresh wrote the routes: a background refresh on a node that does not
    /// lead the cluster only reads the descriptors (the leader keeps the routes).
    pub routes_written: bool,
}

/// Why a refresh failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// No such plugin, or not a reflection instance.
    #[error("{0}")]
    NotFound(String),
    /// The plugin's configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// Reflection failed.
    #[error(transparent)]
    Reflection(#[from] reflection::ReflectionError),
    /// Writing the routes failed.
    #[error("writing discovered routes: {0}")]
    Store(String),
    /// Discovery is not running on this node (no store attached).
    #[error("discovery is not running")]
    NotRunning,
}

/// One reflection instance's current state.
#[derive(Debug, Clone, Default)]
pub struct PluginState {
    /// Descriptors and the bindings matched against requests without a route binding.
    pub descriptors: Option<Descriptors>,
    /// The last successful refresh's report.
    pub last: Option<RefreshReport>,
    /// When it finished (Unix seconds).
    pub refreshed_at: Option<i64>,
    /// The last failure, cleared by a success.
    pub error: Option<String>,
    /// The plugin's `updated_at` the state was refreshed for.
    seen_updated_at: i64,
    /// Monotonic time of the last attempt.
    attempted: Option<Instant>,
    failed: bool,
}

struct Attached {
    store: Arc<dyn Store>,
    snapshots: Arc<SnapshotStore>,
    plugins: Arc<dyn PluginSchemas>,
}

/// The discovery states of every reflection instance on this node, and the refresher.
#[derive(Default)]
pub struct Discovery {
    states: RwLock<HashMap<Uuid, PluginState>>,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    attached: OnceLock<Attached>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    now_ms() / 1000
}

impl Discovery {
    /// A new, detached discovery (no refreshes until [`Discovery::attach`]).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Give discovery the store it writes routes to. Only the first call counts.
    pub fn attach(
        &self,
        store: Arc<dyn Store>,
        snapshots: Arc<SnapshotStore>,
        plugins: Arc<dyn PluginSchemas>,
    ) {
        let _ = self.attached.set(Attached {
            store,
            snapshots,
            plugins,
        });
    }

    /// The descriptors of plugin `id`, once a refresh succeeded.
    pub fn descriptors(&self, id: Uuid) -> Option<Descriptors> {
        self.states
            .read()
            .ok()?
            .get(&id)
            .and_then(|s| s.descriptors.clone())
    }

    /// The state of plugin `id`.
    pub fn state(&self, id: Uuid) -> Option<PluginState> {
        self.states.read().ok()?.get(&id).cloned()
    }

    fn lock_for(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        Arc::clone(locks.entry(id).or_default())
    }

    fn update(&self, id: Uuid, f: impl FnOnce(&mut PluginState)) {
        if let Ok(mut states) = self.states.write() {
            f(states.entry(id).or_default());
        }
    }

    /// The reflection instances configured now: (plugin, config).
    pub fn instances(tables: &Tables) -> Vec<(Plugin, GrpcGatewayConfig)> {
        tables
            .table(EntityKind::Plugins)
            .rows()
            .values()
            .filter_map(|e| match &**e {
                Entity::Plugin(p) if p.name == super::NAME && p.enabled => {
                    let conf: GrpcGatewayConfig = crate::plugins::typed_config(p).ok()?;
                    conf.reflection.then(|| ((**p).clone(), conf))
                }
                _ => None,
            })
            .collect()
    }

    /// Refresh plugin `id` now (waits for a refresh already running for it).
    pub async fn refresh(&self, id: Uuid) -> Result<RefreshReport, DiscoveryError> {
        self.refresh_writing(id, true).await
    }

    /// [`Discovery::refresh`]; with `write_routes` false only the descriptors are fetched.
    async fn refresh_writing(
        &self,
        id: Uuid,
        write_routes: bool,
    ) -> Result<RefreshReport, DiscoveryError> {
        let attached = self.attached.get().ok_or(DiscoveryError::NotRunning)?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let tables = attached.store.tables();
        let Some((plugin, conf)) = Self::instances(&tables)
            .into_iter()
            .find(|(p, _)| p.id == id)
        else {
            return Err(DiscoveryError::NotFound(format!(
                "no enabled grpc-gateway plugin with reflection has id {id}"
            )));
        };
        self.update(id, |s| {
            s.attempted = Some(Instant::now());
            s.seen_updated_at = plugin.updated_at;
        });
        let result = self
            .refresh_inner(attached, &tables, &plugin, &conf, write_routes)
            .await;
        match &result {
            Ok((report, descriptors)) => self.update(id, |s| {
                s.descriptors = Some(descriptors.clone());
                s.last = Some(report.clone());
                s.refreshed_at = Some(unix_now());
                s.error = None;
                s.failed = false;
            }),
            Err(e) => {
                tracing::warn!(plugin = %id, error = %e, "grpc-gateway discovery failed");
                self.update(id, |s| {
                    s.error = Some(e.to_string());
                    s.failed = true;
                });
            }
        }
        result.map(|(r, _)| r)
    }

    async fn refresh_inner(
        &self,
        attached: &Attached,
        tables: &Tables,
        plugin: &Plugin,
        conf: &GrpcGatewayConfig,
        write_routes: bool,
    ) -> Result<(RefreshReport, Descriptors), DiscoveryError> {
        let service_id = plugin.service.map(|f| f.id).ok_or_else(|| {
            DiscoveryError::Config("reflection needs a service-scoped plugin".into())
        })?;
        let service = match tables.get(EntityKind::Services, service_id).map(|e| &**e) {
            Some(Entity::Service(s)) => s.clone(),
            _ => {
                return Err(DiscoveryError::Config(format!(
                    "service {service_id} does not exist"
                )));
            }
        };
        let allow = AllowList::new(&conf.allow);
        let endpoints = endpoints(&service, tables, &attached.snapshots).await?;
        let mut last_err = None;
        let mut reflected = None;
        for ep in &endpoints {
            let fut = reflection::reflect(ep, |s| allow.may_allow_service(s));
            match tokio::time::timeout(REFLECTION_TIMEOUT, fut).await {
                Ok(Ok(r)) => {
                    reflected = Some(r);
                    break;
                }
                Ok(Err(e)) => last_err = Some(DiscoveryError::Reflection(e)),
                Err(_) => {
                    last_err = Some(DiscoveryError::Reflection(
                        reflection::ReflectionError::Timeout(REFLECTION_TIMEOUT),
                    ));
                }
            }
        }
        let Some(reflected) = reflected else {
            return Err(last_err.unwrap_or_else(|| {
                DiscoveryError::Config(format!("service {} has no address", service.host))
            }));
        };
        let (exposed, mut warnings) = exposed_bindings(
            &reflected.pool,
            &reflected.services,
            &allow,
            conf.naming_convention,
        );
        let label = service
            .name
            .clone()
            .unwrap_or_else(|| service.id.to_string());
        let desired = desired_routes(
            plugin.id,
            &label,
            conf.route_prefix.as_deref().unwrap_or(""),
            &exposed,
        );
        let mut wanted = Vec::new();
        for d in &desired {
            match signed_route(d, plugin.id, service.id, &*attached.plugins) {
                Ok(r) => wanted.push(r),
                Err(e) => warnings.push(e),
            }
        }
        let p = plan(wanted, plugin_routes(tables, plugin.id));
        let mut report = RefreshReport {
            plugin: plugin.id,
            reflection: reflected.version.to_owned(),
            services: reflected.services.clone(),
            warnings,
            routes_written: write_routes,
            ..RefreshReport::default()
        };
        let names =
            |rs: &[Route]| -> Vec<String> { rs.iter().filter_map(|r| r.name.clone()).collect() };
        report.unchanged = names(&p.unchanged);
        report.kept = names(&p.kept);
        // The plan was made from one read of the store; a route the user edited since then is
        // theirs: re-check each one right before writing it.
        let edited_since = |id: Uuid| {
            matches!(
                attached.store.tables().get(EntityKind::Routes, id).map(|e| &**e),
                Some(Entity::Route(cur)) if is_override(cur)
            )
        };
        let (create, update, delete) = if write_routes {
            (p.create, p.update, p.delete)
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        for r in create.into_iter().chain(update.iter().cloned()) {
            let name = r.name.clone().unwrap_or_default();
            if edited_since(r.id) {
                report.kept.push(name);
                continue;
            }
            let created = !update.iter().any(|u| u.id == r.id);
            match attached
                .store
                .write(WriteOp::Upsert(Entity::Route(Box::new(r))))
                .await
            {
                Ok(_) if created => report.created.push(name),
                Ok(_) => report.updated.push(name),
                Err(e) => report.warnings.push(format!("route {name}: {e}")),
            }
        }
        for r in delete {
            let name = r.name.clone().unwrap_or_default();
            if edited_since(r.id) {
                report.kept.push(name);
                continue;
            }
            attached
                .store
                .write(WriteOp::Delete(EntityKind::Routes, r.id))
                .await
                .map_err(|e| DiscoveryError::Store(e.to_string()))?;
            report.deleted.push(name);
        }
        let mut methods: Vec<String> = exposed.iter().map(|b| method_name(&b.method)).collect();
        methods.sort();
        methods.dedup();
        report.methods = methods;
        // Requests on routes without a `grpc-method:` tag (a catch-all route) match these.
        let bindings: Vec<Binding> = exposed
            .iter()
            .flat_map(|b| {
                b.verbs.iter().map(|v| Binding {
                    http_method: v.clone(),
                    template: b.template.clone(),
                    body: b.body.clone(),
                    response_body: b.response_body.clone(),
                    method: b.method.clone(),
                })
            })
            .collect();
        tracing::info!(
            plugin = %plugin.id,
            reflection = reflected.version,
            methods = report.methods.len(),
            created = report.created.len(),
            updated = report.updated.len(),
            deleted = report.deleted.len(),
            kept = report.kept.len(),
            "grpc-gateway discovery refreshed"
        );
        Ok((
            report,
            Descriptors {
                pool: reflected.pool,
                bindings: Arc::new(bindings),
            },
        ))
    }

    /// Refresh every instance that is due, forever: new or reconfigured instances at once,
    /// the others every `refresh_interval` seconds (0: only on demand), failed ones again after
    /// a few seconds. States of removed instances are dropped.
    pub async fn run(self: Arc<Self>) {
        let Some(attached) = self.attached.get() else {
            return;
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut orphaned_since: HashMap<Uuid, Instant> = HashMap::new();
        loop {
            tick.tick().await;
            // Every node fetches the descriptors it transcodes with; one node of a cluster
            // (the lease holder) keeps the routes: the others' background refreshes only read.
            let leader = attached.store.lead(DISCOVERY_LEASE).await;
            if !leader {
                orphaned_since.clear();
            }
            let tables = attached.store.tables();
            let instances = Self::instances(&tables);
            let live: HashSet<Uuid> = instances.iter().map(|(p, _)| p.id).collect();
            // An orphan must stay one for a moment: another node's route may arrive here
            // before its plugin does (the poll applies out-of-order commits late).
            let orphans = if leader {
                orphaned_routes(&tables, &live)
            } else {
                Vec::new()
            };
            orphaned_since.retain(|id, _| orphans.iter().any(|r| r.id == *id));
            for r in orphans {
                let since = *orphaned_since.entry(r.id).or_insert_with(Instant::now);
                if since.elapsed() < ORPHAN_GRACE {
                    continue;
                }
                orphaned_since.remove(&r.id);
                let name = r.name.clone().unwrap_or_else(|| r.id.to_string());
                match attached
                    .store
                    .write(WriteOp::Delete(EntityKind::Routes, r.id))
                    .await
                {
                    Ok(_) => tracing::info!(
                        route = %name,
                        "grpc-gateway discovery: removed a route of a plugin that no longer discovers"
                    ),
                    Err(e) => {
                        tracing::warn!(route = %name, error = %e, "grpc-gateway discovery: cannot remove an orphaned route")
                    }
                }
            }
            let configured = |id: &Uuid| live.contains(id);
            if let Ok(mut states) = self.states.write() {
                states.retain(|id, _| configured(id));
            }
            if let Ok(mut locks) = self.locks.lock() {
                locks.retain(|id, _| configured(id));
            }
            for (plugin, conf) in instances {
                let state = self.state(plugin.id).unwrap_or_default();
                let interval = Duration::from_secs(conf.refresh_interval);
                let due = match state.attempted {
                    None => true,
                    Some(_) if state.seen_updated_at != plugin.updated_at => true,
                    Some(at) if state.failed => {
                        let retry = if interval.is_zero() {
                            RETRY_AFTER_FAILURE
                        } else {
                            RETRY_AFTER_FAILURE.min(interval)
                        };
                        at.elapsed() >= retry
                    }
                    Some(at) => !interval.is_zero() && at.elapsed() >= interval,
                };
                if due {
                    let _ = self.refresh_writing(plugin.id, leader).await;
                }
            }
        }
    }

    /// The state of every instance as the Admin API shows it.
    pub fn views(&self, tables: &Tables) -> Vec<Value> {
        Self::instances(tables)
            .iter()
            .map(|(p, c)| self.view(p, c))
            .collect()
    }

    /// One instance's state as JSON.
    pub fn view(&self, plugin: &Plugin, conf: &GrpcGatewayConfig) -> Value {
        let s = self.state(plugin.id).unwrap_or_default();
        let mut v = Map::new();
        v.insert("plugin".into(), json!({"id": plugin.id}));
        v.insert(
            "service".into(),
            json!(plugin.service.map(|f| json!({"id": f.id}))),
        );
        v.insert("refresh_interval".into(), json!(conf.refresh_interval));
        v.insert("refreshed_at".into(), json!(s.refreshed_at));
        v.insert("error".into(), json!(s.error));
        v.insert("last_refresh".into(), json!(s.last));
        Value::Object(v)
    }
}

/// Where the service's gRPC server is: its upstream's targets, or its host resolved.
async fn endpoints(
    service: &Service,
    tables: &Tables,
    snapshots: &SnapshotStore,
) -> Result<Vec<Endpoint>, DiscoveryError> {
    let tls = if service.protocol == Protocol::Grpcs {
        let snap = snapshots.load();
        let from_snapshot = snap
            .services
            .get(&service.id)
            .and_then(|s| s.tls.as_ref())
            .map(|t| (*t.config).clone());
        let mut cfg = match from_snapshot {
            Some(c) => c,
            None => {
                let cas: Vec<_> = tables
                    .table(EntityKind::CaCertificates)
                    .rows()
                    .values()
                    .filter_map(|e| match &**e {
                        Entity::CaCertificate(c) => Some(c.clone()),
                        _ => None,
                    })
                    .collect();
                let t = crate::proxy::tls::UpstreamTls::for_service(service, &cas)
                    .map_err(DiscoveryError::Config)?;
                (*t.config).clone()
            }
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Some((Arc::new(cfg), service.host.clone()))
    } else if service.protocol == Protocol::Grpc {
        None
    } else {
        return Err(DiscoveryError::Config(format!(
            "reflection needs a grpc or grpcs service (service protocol is {})",
            service.protocol.as_str()
        )));
    };
    let upstream_targets: Option<Vec<String>> = tables
        .table(EntityKind::Upstreams)
        .rows()
        .values()
        .find_map(|e| match &**e {
            Entity::Upstream(u) if u.name == service.host => Some(u.id),
            _ => None,
        })
        .map(|uid| {
            tables
                .table(EntityKind::Targets)
                .rows()
                .values()
                .filter_map(|e| match &**e {
                    Entity::Target(t) if t.upstream.id == uid && t.weight > 0 => {
                        Some(t.target.clone())
                    }
                    _ => None,
                })
                .collect()
        });
    let hostports = match upstream_targets {
        Some(t) => t,
        None => vec![format!("{}:{}", service.host, service.port)],
    };
    let mut out = Vec::new();
    for hp in hostports {
        let Ok(addrs) = tokio::net::lookup_host(hp.as_str()).await else {
            continue;
        };
        for addr in addrs {
            out.push(Endpoint {
                addr,
                authority: hp.clone(),
                tls: tls.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(DiscoveryError::Config(format!(
            "cannot resolve the gRPC server of service {}",
            service.host
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::proto::tests::users_pool;
    use super::*;

    #[test]
    fn allow_list_globs() {
        let a = AllowList::new(&["demo.v1.UserService/Get*".into(), "other.*/Ping".into()]);
        assert!(a.allows("demo.v1.UserService/GetUser"));
        assert!(!a.allows("demo.v1.UserService/DeleteUser"));
        assert!(a.allows("other.x.S/Ping"));
        assert!(!a.allows("gateway.ServiceAuthPolicy/GetAuthPolicy"));
        assert!(a.may_allow_service("demo.v1.UserService"));
        assert!(a.may_allow_service("other.x.S"));
        assert!(!a.may_allow_service("gateway.ServiceAuthPolicy"));
        assert!(AllowList::new(&[]).allows("anything/At"));
        assert!(check_allow_entry(&json!("a.B/C")).is_ok());
        assert!(check_allow_entry(&json!("a.B/*")).is_ok());
        assert!(check_allow_entry(&json!("*")).is_ok());
        assert!(check_allow_entry(&json!("a.B")).is_err());
        assert!(check_allow_entry(&json!("a.B/C/D")).is_err());
        assert!(check_allow_entry(&json!("a B/C")).is_err());
    }

    #[test]
    fn naming_words_and_plurals() {
        assert_eq!(words("UserProfile"), ["user", "profile"]);
        assert_eq!(words("HTTPRoute"), ["http", "route"]);
        assert_eq!(plural("user"), "users");
        assert_eq!(plural("policy"), "policies");
        assert_eq!(plural("key"), "keys");
        assert_eq!(plural("box"), "boxes");
        assert_eq!(plural("match"), "matches");
    }

    const CONVENTION_PROTO: &str = r#"syntax = "proto3";
package conv;
service Users {
  rpc GetUser(Id) returns (User);
  rpc ListUsers(Empty) returns (Users2);
  rpc CreateUser(User) returns (User);
  rpc UpdateUser(User) returns (User);
  rpc DeleteUser(Id) returns (Empty);
  rpc GetUserProfile(ProfileKey) returns (User);
  rpc GetThing(Empty) returns (Empty);
  rpc Ping(Empty) returns (Empty);
  rpc Getaway(Empty) returns (Empty);
}
message Empty {}
message Id { int64 id = 1; }
message ProfileKey { string user_profile_id = 1; }
message User { int64 id = 1; string name = 2; }
message Users2 { repeated User users = 1; }
"#;

    fn conv_pool() -> DescriptorPool {
        let dir = std::env::temp_dir().join(format!("gwctl-conv-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("conv.proto"), CONVENTION_PROTO).unwrap();
        let pool = super::super::proto::compile_file(&dir.join("conv.proto")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        pool
    }

    fn all(pool: &DescriptorPool) -> Vec<String> {
        pool.services().map(|s| s.full_name().to_owned()).collect()
    }

    fn conv(pool: &DescriptorPool, m: &str) -> Option<ConventionBinding> {
        let s = pool.get_service_by_name("conv.Users").unwrap();
        let m = s.methods().find(|x| x.name() == m).unwrap();
        convention(&m)
    }

    #[test]
    fn the_seed_naming_convention() {
        let pool = conv_pool();
        let c = |m| conv(&pool, m);
        let b = |verbs: &[Method], t: &str, body: Option<&str>| {
            Some(ConventionBinding {
                verbs: verbs.to_vec(),
                template: t.to_owned(),
                body: body.map(str::to_owned),
            })
        };
        assert_eq!(c("GetUser"), b(&[Method::GET], "/users/{id}", None));
        assert_eq!(c("ListUsers"), b(&[Method::GET], "/users", None));
        assert_eq!(c("CreateUser"), b(&[Method::POST], "/users", Some("*")));
        assert_eq!(
            c("UpdateUser"),
            b(&[Method::PUT, Method::PATCH], "/users/{id}", Some("*"))
        );
        assert_eq!(c("DeleteUser"), b(&[Method::DELETE], "/users/{id}", None));
        assert_eq!(
            c("GetUserProfile"),
            b(&[Method::GET], "/user-profiles/{user_profile_id}", None)
        );
        // No id field to bind, no convention prefix, or a prefix that is not a word.
        assert_eq!(c("GetThing"), None);
        assert_eq!(c("Ping"), None);
        assert_eq!(c("Getaway"), None);
    }

    #[test]
    fn exposure_honours_allow_list_annotations_and_convention_opt_in() {
        let pool = conv_pool();
        let every = AllowList::new(&["conv.Users/*".into()]);
        let (none, _) = exposed_bindings(&pool, &all(&pool), &every, false);
        assert!(none.is_empty(), "no annotations, convention off");
        let (some, warnings) = exposed_bindings(&pool, &all(&pool), &every, true);
        let names: Vec<String> = some.iter().map(|b| b.method.name().to_owned()).collect();
        assert_eq!(
            names,
            [
                "GetUser",
                "ListUsers",
                "CreateUser",
                "UpdateUser",
                "DeleteUser",
                "GetUserProfile"
            ]
        );
        assert!(warnings.iter().any(|w| w.contains("Ping")));
        let only_get = AllowList::new(&["conv.Users/GetUser".into()]);
        let (one, _) = exposed_bindings(&pool, &all(&pool), &only_get, true);
        assert_eq!(one.len(), 1);
        // Annotations win over the convention.
        let users = users_pool();
        let (ann, _) = exposed_bindings(
            &users,
            &all(&users),
            &AllowList::new(&["demo.*/*".into()]),
            true,
        );
        // A service the server does not list is not exposed, whatever its file says.
        let (none, _) = exposed_bindings(&users, &[], &AllowList::new(&["demo.*/*".into()]), true);
        assert!(none.is_empty());
        assert!(
            ann.iter()
                .all(|b| b.source == "annotation" || b.method.name() != "GetUser")
        );
        assert!(
            ann.iter()
                .any(|b| b.template.as_str() == "/v1/{name=orgs/*/users/*}")
        );
        assert!(
            !ann.iter().any(|b| b.method.name() == "Watch"),
            "streaming skipped"
        );
    }

    struct NoPlugins;
    impl PluginSchemas for NoPlugins {
        fn config(&self, _: &str) -> Option<crate::model::schema::Field> {
            None
        }
        fn names(&self) -> Vec<String> {
            Vec::new()
        }
        fn priority(&self, _: &str) -> i64 {
            0
        }
        fn allows_consumer(&self, _: &str) -> bool {
            true
        }
        fn entity_checks(&self, _: &str) -> Vec<crate::model::schema::EntityCheck> {
            Vec::new()
        }
    }

    fn wanted(pool: &DescriptorPool, allow: &[&str], plugin: Uuid, svc: Uuid) -> Vec<Route> {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        let (b, _) = exposed_bindings(pool, &all(pool), &AllowList::new(&allow), true);
        desired_routes(plugin, "users-svc", "/api", &b)
            .iter()
            .map(|d| signed_route(d, plugin, svc, &NoPlugins).unwrap())
            .collect()
    }

    #[test]
    fn desired_routes_are_deterministic_and_tagged() {
        let pool = conv_pool();
        let (plugin, svc) = (Uuid::new_v4(), Uuid::new_v4());
        let a = wanted(&pool, &["conv.Users/*"], plugin, svc);
        let b = wanted(&pool, &["conv.Users/*"], plugin, svc);
        assert_eq!(
            a.iter().map(|r| r.id).collect::<Vec<_>>(),
            b.iter().map(|r| r.id).collect::<Vec<_>>()
        );
        let get = a
            .iter()
            .find(|r| r.name.as_deref() == Some("users-svc.conv.Users.GetUser"))
            .unwrap();
        assert_eq!(
            get.paths,
            Some(vec!["~/api/users/(?<id>[^/]+)$".to_owned()])
        );
        assert_eq!(get.methods, Some(vec!["GET".to_owned()]));
        assert!(!get.strip_path);
        assert_eq!(
            RouteBinding::of(get),
            Some(RouteBinding {
                method: "conv.Users/GetUser".into(),
                body: None,
                response_body: None
            })
        );
        assert!(!is_override(get));
        let upd = a
            .iter()
            .find(|r| r.name.as_deref() == Some("users-svc.conv.Users.UpdateUser"))
            .unwrap();
        assert_eq!(
            upd.methods,
            Some(vec!["PUT".to_owned(), "PATCH".to_owned()])
        );
        assert_eq!(RouteBinding::of(upd).unwrap().body.as_deref(), Some("*"));
    }

    #[test]
    fn plan_adds_removes_updates_and_keeps_overrides() {
        let pool = conv_pool();
        let (plugin, svc) = (Uuid::new_v4(), Uuid::new_v4());
        let first = wanted(
            &pool,
            &["conv.Users/GetUser", "conv.Users/ListUsers"],
            plugin,
            svc,
        );
        let p = plan(first.clone(), Vec::new());
        assert_eq!(p.create.len(), 2);
        // Same wish again: nothing to do.
        let p = plan(first.clone(), first.clone());
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 0, 0));
        assert_eq!(p.unchanged.len(), 2);
        // The user edits the GetUser route's path: it is an override from now on.
        let mut edited = first.clone();
        let get = edited
            .iter_mut()
            .find(|r| r.name.as_deref().is_some_and(|n| n.ends_with("GetUser")))
            .unwrap();
        get.paths = Some(vec!["~/people/(?<id>[^/]+)$".into()]);
        assert!(is_override(get));
        // Narrow the allow list to ListUsers + DeleteUser: GetUser's route is kept (override),
        // DeleteUser's is created, ListUsers' is unchanged.
        let second = wanted(
            &pool,
            &["conv.Users/ListUsers", "conv.Users/DeleteUser"],
            plugin,
            svc,
        );
        let p = plan(second, edited.clone());
        let names = |rs: &[Route]| {
            rs.iter()
                .map(|r| r.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&p.create), ["users-svc.conv.Users.DeleteUser"]);
        assert_eq!(names(&p.unchanged), ["users-svc.conv.Users.ListUsers"]);
        assert_eq!(names(&p.kept), ["users-svc.conv.Users.GetUser"]);
        assert!(p.delete.is_empty());
        // Without the edit, GetUser's route would go.
        let third = wanted(&pool, &["conv.Users/ListUsers"], plugin, svc);
        let p = plan(third.clone(), first.clone());
        assert_eq!(names(&p.delete), ["users-svc.conv.Users.GetUser"]);
        // The grpc-override tag keeps a route even unedited.
        let mut marked = first.clone();
        for r in &mut marked {
            r.tags
                .get_or_insert_with(Vec::new)
                .push(TAG_OVERRIDE.into());
        }
        let p = plan(third, marked);
        assert!(p.delete.is_empty());
        assert_eq!(p.kept.len(), 2);
        // A route whose wanted content changed (another prefix) is rewritten in place.
        let (b, _) = exposed_bindings(
            &pool,
            &all(&pool),
            &AllowList::new(&["conv.Users/GetUser".into()]),
            true,
        );
        let moved: Vec<Route> = desired_routes(plugin, "users-svc", "/v2", &b)
            .iter()
            .map(|d| signed_route(d, plugin, svc, &NoPlugins).unwrap())
            .collect();
        let p = plan(moved, first);
        assert_eq!(names(&p.update), ["users-svc.conv.Users.GetUser"]);
        assert_eq!(names(&p.delete), ["users-svc.conv.Users.ListUsers"]);
    }
}
