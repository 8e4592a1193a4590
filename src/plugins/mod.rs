//! Plugins: the phase traits, the registry of built-in plugins, and the per-request context.
//!
//! A plugin is two things:
//!
//! - a [`PluginKind`]: long-lived (one per node, created with the [`Registry`]): its name, Kong's
//!   priority, its `config` schema (validated by the schema engine with Kong's error shapes), and
//!   any state that must survive a configuration reload (rate-limit counters, breaker states).
//!   [`PluginKind::build`] turns one validated plugin entity into a [`Handler`].
//! - a [`Handler`]: one configured instance, built when a snapshot is compiled, immutable, shared
//!   by every request. Its phases are `access` (may short-circuit with a response),
//!   `header_filter`, `body_filter` (only where a plugin rewrites the body) and `log` (after the
//!   response body ended or was dropped; never blocks the request).
//!
//! Which instance of a plugin runs for a request (Kong's scoping precedence, consumer-scoped
//! instances after authentication) and in which order (priority, then Kong's dynamic `ordering`)
//! is decided in [`chain`], compiled with the snapshot.

pub mod auth;
pub mod body;
pub mod chain;
mod ctx;

pub mod acl;
pub mod circuit_breaker;
pub mod correlation_id;
pub mod cors;
pub mod grpc_gateway;
pub mod ip_restriction;
pub mod jwt;
pub mod jwt_claim_headers;
pub mod key_auth;
pub mod opentelemetry;
pub mod prometheus;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_transformer;
pub mod response_compression;
pub mod response_transformer;
pub mod transform_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use http::response::Parts;

use crate::model::Plugin;
use crate::model::schema::{EntityCheck, Field, PluginSchemas};
use crate::proxy::body::ProxyBody;
use crate::store::Tables;

pub use self::body::BodyFilter;
pub use self::chain::{Chain, CompiledPlugins};
pub use self::ctx::{
    Authenticated, BodyError, Credential, Ctx, LogInfo, RequestBody, Routed, Source,
};

/// What an `access` handler decided.
pub enum Flow {
    /// Go on with the next plugin, then proxy.
    Continue,
    /// Stop here and answer with this response (header filters still run, like
    /// `kong.response.exit`).
    Respond(Response<ProxyBody>),
}

/// What [`PluginKind::build`] sees besides the plugin entity.
pub struct BuildCtx<'a> {
    /// The configuration being compiled (consumers, credentials, ...).
    pub tables: &'a Tables,
}

/// One kind of plugin (`jwt`, `key-auth`, ...): schema, priority, long-lived state, and the
/// factory of its configured instances.
pub trait PluginKind: Send + Sync + 'static {
    /// Kong's name (kebab-case).
    fn name(&self) -> &'static str;
    /// Kong's priority: higher runs first in every phase.
    fn priority(&self) -> i64;
    /// The `config` field: normally `Field::record(...).required()` with Kong's fields, defaults
    /// and checks.
    fn config_schema(&self) -> Field;
    /// Whether instances may be scoped to a consumer (Kong: not for auth plugins, cors, ...).
    fn allows_consumer(&self) -> bool {
        true
    }
    /// Checks over the whole plugin entity (Kong's plugin-schema `entity_checks`), naming config
    /// fields as `config.<field>`; their messages go to the entity's `@entity`.
    fn entity_checks(&self) -> Vec<EntityCheck> {
        Vec::new()
    }
    /// Build a handler from a validated plugin entity (its `config` has the defaults filled).
    fn build(&self, plugin: &Plugin, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String>;
}

/// One configured plugin instance's behaviour in the request phases. Every method has a no-op
/// default; a plugin implements the phases it needs.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Access phase: read or change the request (`ctx`), authenticate, or short-circuit.
    async fn access(&self, _ctx: &mut Ctx) -> Flow {
        Flow::Continue
    }

    /// Whether [`Handler::response`] does anything (only then is the upstream's response
    /// handed to it).
    fn wants_response(&self) -> bool {
        false
    }

    /// Response phase (Kong's `response`): the upstream's whole response, before any header
    /// filter; returns the response to send on. Only for upstream responses, only when
    /// [`Handler::wants_response`]. A plugin reading the body bounds what it reads.
    async fn response(&self, _ctx: &mut Ctx, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        resp
    }

    /// Header filter: change the response head (also for responses the gateway made itself).
    fn header_filter(&self, _ctx: &mut Ctx, _resp: &mut Parts) {}

    /// Body filter: return a transformer for the response body (after every header filter ran;
    /// it may still adjust `resp`, e.g. drop `Content-Length`). `None` leaves the body alone.
    fn body_filter(&self, _ctx: &mut Ctx, _resp: &mut Parts) -> Option<Box<dyn BodyFilter>> {
        None
    }

    /// Whether [`Handler::log`] does anything (the body is only wrapped when some plugin logs).
    fn wants_log(&self) -> bool {
        false
    }

    /// Whether requests through this instance record a [`crate::telemetry::timeline::Timeline`]
    /// in [`Ctx::timeline`] (tracing plugins). Any instance on a route's chain asking for it
    /// turns it on for that route.
    fn wants_timeline(&self) -> bool {
        false
    }

    /// Log phase: runs once the response body ended, failed or was dropped by the client.
    fn log(&self, _ctx: &Ctx, _info: &LogInfo) {}

    /// Whether anything after the access phase (response phase, header and body filters, log)
    /// reads the request headers in [`Ctx::headers`]. When no instance on a route's chain does,
    /// the proxy moves them upstream instead of copying them, and they are empty afterwards.
    /// Only a plugin that reads them in `access` alone may say `false`.
    fn reads_request_headers_late(&self) -> bool {
        true
    }
}

/// The plugins this node can run.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn PluginKind>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// An empty registry (every plugin name is "not enabled").
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every plugin built into gwctl.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.add(Arc::new(acl::Kind));
        r.add(Arc::new(correlation_id::Kind));
        r.add(Arc::new(cors::Kind));
        r.add(Arc::new(grpc_gateway::Kind::default()));
        r.add(Arc::new(ip_restriction::Kind));
        r.add(Arc::new(request_size_limiting::Kind));
        r.add(Arc::new(request_transformer::Kind));
        r.add(Arc::new(response_transformer::Kind));
        r.add(Arc::new(response_compression::Kind));
        r.add(Arc::new(circuit_breaker::Kind::default()));
        r.add(Arc::new(rate_limiting::Kind::default()));
        r.add(Arc::new(key_auth::Kind));
        r.add(Arc::new(prometheus::Kind::default()));
        r.add(Arc::new(jwt::Kind));
        r.add(Arc::new(jwt_claim_headers::Kind));
        r.add(Arc::new(opentelemetry::Kind::default()));
        r
    }

    /// Add (or replace) a plugin kind.
    pub fn add(&mut self, kind: Arc<dyn PluginKind>) {
        self.kinds.insert(kind.name(), kind);
    }

    /// The plugin kind called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn PluginKind>> {
        self.kinds.get(name)
    }
}

impl PluginSchemas for Registry {
    fn config(&self, name: &str) -> Option<Field> {
        self.kinds.get(name).map(|k| k.config_schema())
    }
    fn names(&self) -> Vec<String> {
        self.kinds.keys().map(|k| (*k).to_owned()).collect()
    }
    fn priority(&self, name: &str) -> i64 {
        self.kinds.get(name).map_or(0, |k| k.priority())
    }
    fn allows_consumer(&self, name: &str) -> bool {
        self.kinds.get(name).is_none_or(|k| k.allows_consumer())
    }
    fn entity_checks(&self, name: &str) -> Vec<EntityCheck> {
        self.kinds
            .get(name)
            .map_or_else(Vec::new, |k| k.entity_checks())
    }
}

/// Deserialize a validated plugin's `config` into the plugin's typed config.
pub fn typed_config<T: serde::de::DeserializeOwned>(plugin: &Plugin) -> Result<T, String> {
    serde_json::from_value(plugin.config.clone())
        .map_err(|e| format!("plugin {} ({}): config: {e}", plugin.name, plugin.id))
}
