//! Plugin chains, compiled with the snapshot: which instance of each plugin applies to a request
//! (Kong's scoping precedence) and in which order the instances run.
//!
//! For every plugin name at most one instance runs per request, the most specific one among
//! (kong-compat §4.0): route+service+consumer, route+consumer, service+consumer, route+service,
//! consumer, route, service, global. Everything that does not depend on the consumer is resolved
//! at compile time into one [`Chain`] per route; the consumer-scoped candidates are looked up
//! (a hash probe each) when the plugin's turn comes, so an authentication plugin that ran
//! earlier in the chain decides which consumer-scoped instances apply after it.
//!
//! Order: Kong's priority descending, then name. In the access phase Kong's dynamic `ordering`
//! (`before`/`after` lists of plugin names) of the route-level instances is honoured on top of
//! that; the other phases always run in priority order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use http::response::Parts;
use http::{HeaderMap, Response, header};
use smallvec::SmallVec;
use uuid::Uuid;

use super::body::{LogState, PluginBody};
use super::ctx::{Ctx, LogInfo, Source};
use super::{BuildCtx, Flow, Handler, Registry};
use crate::model::{Plugin, Route};
use crate::proxy::body::ProxyBody;
use crate::store::Tables;
use crate::telemetry::timeline::PluginSpan;

/// One built plugin instance.
pub struct Instance {
    /// The plugin entity's id.
    pub id: Uuid,
    /// Plugin name.
    pub name: String,
    /// The plugin kind's name (the same text, static: for timelines).
    pub kind: &'static str,
    /// Kong's priority of the plugin.
    pub priority: i64,
    /// The behaviour.
    pub handler: Arc<dyn Handler>,
    /// Plugin names this instance must run before in the access phase.
    before: Vec<String>,
    /// Plugin names this instance must run after in the access phase.
    after: Vec<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// Scope ranks, best first (kong-compat §4.0's numbering).
const RANK_ROUTE_SERVICE: u8 = 4;
const RANK_ROUTE: u8 = 6;
const RANK_SERVICE: u8 = 7;
const RANK_GLOBAL: u8 = 8;

/// Every instance of one plugin name, by scope.
#[derive(Default)]
struct NameIndex {
    global: Option<Arc<Instance>>,
    service: HashMap<Uuid, Arc<Instance>>,
    route: HashMap<Uuid, Arc<Instance>>,
    route_service: HashMap<(Uuid, Uuid), Arc<Instance>>,
    consumer: HashMap<Uuid, Arc<Instance>>,
    route_consumer: HashMap<(Uuid, Uuid), Arc<Instance>>,
    service_consumer: HashMap<(Uuid, Uuid), Arc<Instance>>,
    all: HashMap<(Uuid, Uuid, Uuid), Arc<Instance>>,
}

impl NameIndex {
    /// Whether some instance of this plugin satisfies `f`.
    fn any(&self, f: impl Fn(&Instance) -> bool) -> bool {
        self.global.iter().any(|i| f(i))
            || self.service.values().any(|i| f(i))
            || self.route.values().any(|i| f(i))
            || self.route_service.values().any(|i| f(i))
            || self.consumer.values().any(|i| f(i))
            || self.route_consumer.values().any(|i| f(i))
            || self.service_consumer.values().any(|i| f(i))
            || self.all.values().any(|i| f(i))
    }

    fn any_consumer_scoped(&self) -> bool {
        !(self.consumer.is_empty()
            && self.route_consumer.is_empty()
            && self.service_consumer.is_empty()
            && self.all.is_empty())
    }

    /// The best instance that does not depend on the consumer.
    fn base(&self, route: Uuid, service: Option<Uuid>) -> Option<(u8, Arc<Instance>)> {
        if let Some(s) = service
            && let Some(i) = self.route_service.get(&(route, s))
        {
            return Some((RANK_ROUTE_SERVICE, Arc::clone(i)));
        }
        if let Some(i) = self.route.get(&route) {
            return Some((RANK_ROUTE, Arc::clone(i)));
        }
        if let Some(s) = service
            && let Some(i) = self.service.get(&s)
        {
            return Some((RANK_SERVICE, Arc::clone(i)));
        }
        self.global.as_ref().map(|i| (RANK_GLOBAL, Arc::clone(i)))
    }

    /// Whether some consumer-scoped instance could apply on this route.
    fn consumer_possible(&self, route: Uuid, service: Option<Uuid>) -> bool {
        !self.consumer.is_empty()
            || self.route_consumer.keys().any(|(r, _)| *r == route)
            || service.is_some_and(|s| {
                self.service_consumer.keys().any(|(sv, _)| *sv == s)
                    || self.all.keys().any(|(r, sv, _)| *r == route && *sv == s)
            })
    }
}

/// One plugin's place in a route's chain.
struct Slot {
    index: Arc<NameIndex>,
    base: Option<(u8, Arc<Instance>)>,
    consumer_possible: bool,
}

/// The plugins of one route, in order.
pub struct Chain {
    route: Uuid,
    service: Option<Uuid>,
    /// Access-phase order (priority, then dynamic ordering).
    access: Vec<Slot>,
    /// Indices into `access` in priority order (the other phases).
    by_priority: Vec<usize>,
    /// Some instance on the chain wants a request timeline.
    traced: bool,
    /// Some instance on the chain has a response phase.
    responding: bool,
    /// Some instance on the chain reads the request headers after the access phase.
    late_headers: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("route", &self.route)
            .field("access", &self.access_order())
            .finish()
    }
}

impl Chain {
    /// The instance of `slot` that applies to `consumer`. Borrowed: the chain outlives the
    /// request's phases, and a clone would write a reference count shared by every worker.
    fn resolve<'c>(&self, slot: &'c Slot, consumer: Option<Uuid>) -> Option<&'c Arc<Instance>> {
        if let Some(c) = consumer
            && slot.consumer_possible
        {
            let idx = &slot.index;
            let r = self.route;
            if let Some(s) = self.service
                && let Some(i) = idx.all.get(&(r, s, c))
            {
                return Some(i);
            }
            if let Some(i) = idx.route_consumer.get(&(r, c)) {
                return Some(i);
            }
            if let Some(s) = self.service
                && let Some(i) = idx.service_consumer.get(&(s, c))
            {
                return Some(i);
            }
            if let Some((rank, i)) = &slot.base
                && *rank <= RANK_ROUTE_SERVICE
            {
                return Some(i);
            }
            if let Some(i) = idx.consumer.get(&c) {
                return Some(i);
            }
        }
        slot.base.as_ref().map(|(_, i)| i)
    }

    /// Plugin names in access-phase order (for tests and debugging).
    pub fn access_order(&self) -> Vec<String> {
        self.access
            .iter()
            .filter_map(|s| {
                s.base
                    .as_ref()
                    .map(|(_, i)| i.name.clone())
                    .or_else(|| first_name(&s.index))
            })
            .collect()
    }

    /// Whether some plugin on this route reads the whole upstream response (response phase).
    pub fn has_response_phase(&self) -> bool {
        self.responding
    }

    /// The request headers to send upstream once the access phase passed. Copied when some
    /// plugin reads them later ([`Handler::reads_request_headers_late`]); otherwise moved out
    /// of `ctx`, which keeps only `Accept` and `Content-Type` (the gateway's error answer reads
    /// them).
    pub fn upstream_headers(&self, ctx: &mut Ctx) -> HeaderMap {
        if self.late_headers {
            return ctx.headers.clone();
        }
        let headers = std::mem::take(&mut ctx.headers);
        for name in [header::ACCEPT, header::CONTENT_TYPE] {
            if let Some(v) = headers.get(&name) {
                ctx.headers.insert(name, v.clone());
            }
        }
        headers
    }

    /// Whether requests on this route record a timeline (some plugin wants one).
    pub fn traced(&self) -> bool {
        self.traced
    }

    /// Run the access phase. `Some(response)` when a plugin short-circuited. With a timeline,
    /// each plugin's access phase is recorded in it.
    pub async fn access(&self, ctx: &mut Ctx) -> Option<Response<ProxyBody>> {
        for slot in &self.access {
            let consumer = ctx.auth.as_ref().map(|a| a.consumer.id);
            let Some(inst) = self.resolve(slot, consumer) else {
                continue;
            };
            let start = ctx.timeline.is_some().then(Instant::now);
            let flow = inst.handler.access(ctx).await;
            if let (Some(start), Some(tl)) = (start, ctx.timeline.as_mut()) {
                tl.plugins.push(PluginSpan {
                    name: inst.kind,
                    phase: "access",
                    start,
                    end: Instant::now(),
                });
            }
            if let Flow::Respond(resp) = flow {
                return Some(resp);
            }
        }
        None
    }

    /// The instances that apply now (consumer known), in priority order: what the response
    /// phases run.
    fn resolved(&self, consumer: Option<Uuid>) -> SmallVec<[&Arc<Instance>; 8]> {
        self.by_priority
            .iter()
            .filter_map(|&i| self.resolve(&self.access[i], consumer))
            .collect()
    }

    /// Run the response phase of the plugins that want it (priority order) on an upstream
    /// response.
    pub async fn response(
        &self,
        ctx: &mut Ctx,
        mut resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        for inst in self.resolved(ctx.auth.as_ref().map(|a| a.consumer.id)) {
            if inst.handler.wants_response() {
                resp = inst.handler.response(ctx, resp).await;
            }
        }
        resp
    }

    /// Run the header and body filters on a response, and arrange for the log phase once its
    /// body is done.
    pub fn respond(
        &self,
        mut ctx: Box<Ctx>,
        resp: Response<ProxyBody>,
        source: Source,
        mut info: LogInfo,
    ) -> Response<ProxyBody> {
        ctx.source = source;
        let plugins = self.resolved(ctx.auth.as_ref().map(|a| a.consumer.id));
        // Gateway-made responses to gRPC clients go out in gRPC form; plugins see that form.
        let resp = if ctx.grpc && source == Source::Gateway {
            crate::proxy::respond::grpc_form(resp)
        } else {
            resp
        };
        let (mut parts, body): (Parts, ProxyBody) = resp.into_parts();
        for p in &plugins {
            p.handler.header_filter(&mut ctx, &mut parts);
        }
        let mut filters = Vec::new();
        for p in &plugins {
            if let Some(f) = p.handler.body_filter(&mut ctx, &mut parts) {
                filters.push(f);
            }
        }
        let logging: Vec<Arc<Instance>> = plugins
            .into_iter()
            .filter(|p| p.handler.wants_log())
            .cloned()
            .collect();
        if filters.is_empty() && logging.is_empty() {
            return Response::from_parts(parts, body);
        }
        info.status = crate::proxy::respond::logged_status(&parts).as_u16();
        info.source = source;
        let log = (!logging.is_empty()).then(|| LogState {
            ctx,
            plugins: logging,
            info,
        });
        let body = ProxyBody::Plugins(Box::new(PluginBody::new(body, filters, log)));
        Response::from_parts(parts, body)
    }
}

/// Whether some instance a chain may run (a slot's base, or any consumer-scoped instance when
/// the slot can have one) has a handler for which `yes` holds.
fn any_instance(access: &[Slot], yes: impl Fn(&dyn Handler) -> bool) -> bool {
    access.iter().any(|s| {
        s.base.as_ref().is_some_and(|(_, i)| yes(&*i.handler))
            || (s.consumer_possible && s.index.any(|i| yes(&*i.handler)))
    })
}

fn first_name(idx: &NameIndex) -> Option<String> {
    idx.consumer
        .values()
        .chain(idx.route_consumer.values())
        .chain(idx.service_consumer.values())
        .chain(idx.all.values())
        .next()
        .map(|i| i.name.clone())
}

/// Why plugins could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PluginCompileError {
    /// A plugin entity names a plugin this node does not have.
    #[error("plugin {id}: plugin '{name}' is not enabled on this node")]
    Unknown {
        /// Plugin id.
        id: Uuid,
        /// Plugin name.
        name: String,
    },
    /// A plugin's handler could not be built from its config.
    #[error("{0}")]
    Build(String),
}

/// Every route's plugin chain.
#[derive(Default)]
pub struct CompiledPlugins {
    chains: HashMap<Uuid, Arc<Chain>>,
    instances: usize,
}

impl std::fmt::Debug for CompiledPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugins")
            .field("routes", &self.chains.len())
            .field("instances", &self.instances)
            .finish()
    }
}

impl CompiledPlugins {
    /// The chain of `route`, `None` when no plugin applies to it.
    pub fn chain(&self, route: Uuid) -> Option<&Arc<Chain>> {
        self.chains.get(&route)
    }

    /// Number of enabled plugin instances built.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Build every enabled plugin and each route's chain.
    pub fn compile(
        registry: &Registry,
        plugins: &[Plugin],
        routes: &[Arc<Route>],
        tables: &Tables,
    ) -> Result<Self, PluginCompileError> {
        let ctx = BuildCtx { tables };
        let mut names: BTreeMap<String, NameIndex> = BTreeMap::new();
        let mut instances = 0;
        for p in plugins.iter().filter(|p| p.enabled) {
            let kind = registry
                .get(&p.name)
                .ok_or_else(|| PluginCompileError::Unknown {
                    id: p.id,
                    name: p.name.clone(),
                })?;
            let handler = kind.build(p, &ctx).map_err(PluginCompileError::Build)?;
            let (before, after) = ordering(p);
            let inst = Arc::new(Instance {
                id: p.id,
                name: p.name.clone(),
                kind: kind.name(),
                priority: kind.priority(),
                handler,
                before,
                after,
            });
            instances += 1;
            let idx = names.entry(p.name.clone()).or_default();
            let (r, s, c) = (
                p.route.map(|f| f.id),
                p.service.map(|f| f.id),
                p.consumer.map(|f| f.id),
            );
            match (r, s, c) {
                (None, None, None) => idx.global = Some(inst),
                (None, Some(s), None) => drop(idx.service.insert(s, inst)),
                (Some(r), None, None) => drop(idx.route.insert(r, inst)),
                (Some(r), Some(s), None) => drop(idx.route_service.insert((r, s), inst)),
                (None, None, Some(c)) => drop(idx.consumer.insert(c, inst)),
                (Some(r), None, Some(c)) => drop(idx.route_consumer.insert((r, c), inst)),
                (None, Some(s), Some(c)) => drop(idx.service_consumer.insert((s, c), inst)),
                (Some(r), Some(s), Some(c)) => drop(idx.all.insert((r, s, c), inst)),
            }
        }
        let names: Vec<(i64, Arc<NameIndex>)> = names
            .into_iter()
            .map(|(name, idx)| (registry.get(&name).map_or(0, |k| k.priority()), idx))
            .map(|(prio, idx)| (prio, Arc::new(idx)))
            .collect();
        let mut chains = HashMap::new();
        if !names.is_empty() {
            for route in routes {
                let service = route.service.map(|f| f.id);
                let mut slots: Vec<(i64, String, Slot)> = Vec::new();
                for (prio, idx) in &names {
                    let base = idx.base(route.id, service);
                    let consumer_possible =
                        idx.any_consumer_scoped() && idx.consumer_possible(route.id, service);
                    if base.is_none() && !consumer_possible {
                        continue;
                    }
                    let slot = Slot {
                        index: Arc::clone(idx),
                        base,
                        consumer_possible,
                    };
                    let name = slot
                        .base
                        .as_ref()
                        .map(|(_, i)| i.name.clone())
                        .or_else(|| first_name(idx))
                        .unwrap_or_default();
                    slots.push((*prio, name, slot));
                }
                if slots.is_empty() {
                    continue;
                }
                // Priority descending, then name.
                slots.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                let order = access_order(&slots);
                let mut by_priority = order.clone();
                for (pos, &orig) in order.iter().enumerate() {
                    by_priority[orig] = pos;
                }
                let mut taken: Vec<Option<Slot>> =
                    slots.into_iter().map(|(_, _, s)| Some(s)).collect();
                let access: Vec<Slot> = order.iter().filter_map(|&i| taken[i].take()).collect();
                let responding = any_instance(&access, |h| h.wants_response());
                let traced = any_instance(&access, |h| h.wants_timeline());
                let late_headers = any_instance(&access, |h| h.reads_request_headers_late());
                chains.insert(
                    route.id,
                    Arc::new(Chain {
                        route: route.id,
                        service,
                        access,
                        by_priority,
                        traced,
                        responding,
                        late_headers,
                    }),
                );
            }
        }
        Ok(Self { chains, instances })
    }
}

/// The `ordering.before.access` and `ordering.after.access` lists of a plugin.
fn ordering(p: &Plugin) -> (Vec<String>, Vec<String>) {
    let list = |which: &str| -> Vec<String> {
        p.ordering
            .as_ref()
            .and_then(|o| o.get(which))
            .and_then(|w| w.get("access"))
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    (list("before"), list("after"))
}

/// The access order of `slots` (already in priority order) as indices: a topological order of
/// the `before`/`after` constraints that, among the plugins free to run, always picks the one
/// earliest in priority order. A cycle falls back to priority order (and is logged).
fn access_order(slots: &[(i64, String, Slot)]) -> Vec<usize> {
    let n = slots.len();
    let identity: Vec<usize> = (0..n).collect();
    let pos: HashMap<&str, usize> = slots
        .iter()
        .enumerate()
        .map(|(i, (_, name, _))| (name.as_str(), i))
        .collect();
    // edges[a] contains b: a runs before b.
    let mut edges: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    let mut any = false;
    for (i, (_, _, slot)) in slots.iter().enumerate() {
        let Some((_, inst)) = &slot.base else {
            continue;
        };
        for b in &inst.before {
            if let Some(&j) = pos.get(b.as_str())
                && j != i
            {
                any |= edges[i].insert(j);
            }
        }
        for a in &inst.after {
            if let Some(&j) = pos.get(a.as_str())
                && j != i
            {
                any |= edges[j].insert(i);
            }
        }
    }
    if !any {
        return identity;
    }
    let mut indegree = vec![0usize; n];
    for e in &edges {
        for &b in e {
            indegree[b] += 1;
        }
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && indegree[i] == 0) else {
            tracing::warn!("plugin ordering has a cycle; using priority order");
            return identity;
        };
        done[next] = true;
        order.push(next);
        for &b in &edges[next] {
            indegree[b] -= 1;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{
        Ctx as SchemaCtx, Field, NoPlugins, validate_plugin, validate_route,
    };
    use crate::plugins::PluginKind;
    use serde_json::{Value, json};

    struct Fake(&'static str, i64);
    struct Nop;
    impl Handler for Nop {}
    impl PluginKind for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn priority(&self) -> i64 {
            self.1
        }
        fn config_schema(&self) -> Field {
            Field::any()
        }
        fn build(&self, _: &Plugin, _: &BuildCtx<'_>) -> Result<Arc<dyn Handler>, String> {
            Ok(Arc::new(Nop))
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::empty();
        for (n, p) in [
            ("auth", 1250),
            ("limit", 910),
            ("early", 2000),
            ("late", 10),
        ] {
            r.add(Arc::new(Fake(n, p)));
        }
        r
    }

    const R1: &str = "00000000-0000-0000-0000-0000000000a1";
    const R2: &str = "00000000-0000-0000-0000-0000000000a2";
    const S1: &str = "00000000-0000-0000-0000-0000000000b1";
    const C1: &str = "00000000-0000-0000-0000-0000000000c1";
    const C2: &str = "00000000-0000-0000-0000-0000000000c2";

    fn uuid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    fn plugin(r: &Registry, v: Value) -> Plugin {
        validate_plugin(&v, &SchemaCtx::new(1_700_000_000_000, r)).unwrap()
    }

    fn routes() -> Vec<Arc<Route>> {
        let ctx = SchemaCtx::new(1_700_000_000_000, &NoPlugins);
        vec![
            Arc::new(
                validate_route(
                    &json!({"id": R1, "paths": ["/a"], "service": {"id": S1}}),
                    &ctx,
                )
                .unwrap(),
            ),
            Arc::new(validate_route(&json!({"id": R2, "paths": ["/b"]}), &ctx).unwrap()),
        ]
    }

    /// The instance id (as its `tags[0]`) of plugin `name` that applies for `consumer`.
    fn winner(
        c: &CompiledPlugins,
        route: &str,
        consumer: Option<&str>,
        plugins: &[Plugin],
    ) -> Vec<String> {
        let chain = c.chain(uuid(route)).unwrap();
        chain
            .resolved(consumer.map(uuid))
            .iter()
            .map(|i| {
                let p = plugins.iter().find(|p| p.id == i.id).unwrap();
                format!("{}={}", p.name, p.tags.as_ref().unwrap()[0])
            })
            .collect()
    }

    #[test]
    fn scoping_precedence_follows_kong() {
        let r = registry();
        let scopes: [(&str, Value); 8] = [
            ("g", json!({})),
            ("s", json!({"service": {"id": S1}})),
            ("r", json!({"route": {"id": R1}})),
            ("c", json!({"consumer": {"id": C1}})),
            ("rs", json!({"route": {"id": R1}, "service": {"id": S1}})),
            ("sc", json!({"service": {"id": S1}, "consumer": {"id": C1}})),
            ("rc", json!({"route": {"id": R1}, "consumer": {"id": C1}})),
            (
                "rsc",
                json!({"route": {"id": R1}, "service": {"id": S1}, "consumer": {"id": C1}}),
            ),
        ];
        // Kong's order, best first: rsc, rc, sc, rs, c, r, s, g. Remove the best one at a time
        // and check the next one wins.
        let order = ["rsc", "rc", "sc", "rs", "c", "r", "s", "g"];
        for k in 0..order.len() {
            let present = &order[k..];
            let plugins: Vec<Plugin> = scopes
                .iter()
                .filter(|(tag, _)| present.contains(tag))
                .map(|(tag, scope)| {
                    let mut v = scope.clone();
                    v["name"] = json!("limit");
                    v["tags"] = json!([tag]);
                    plugin(&r, v)
                })
                .collect();
            let c = CompiledPlugins::compile(&r, &plugins, &routes(), &Tables::default()).unwrap();
            assert_eq!(
                winner(&c, R1, Some(C1), &plugins),
                vec![format!("limit={}", order[k])],
                "with {present:?}"
            );
            // Another consumer never gets C1's instances.
            let no_consumer: Vec<&str> = present
                .iter()
                .copied()
                .filter(|t| !t.contains('c'))
                .collect();
            let expect: Vec<String> = no_consumer
                .first()
                .map(|t| format!("limit={t}"))
                .into_iter()
                .collect();
            assert_eq!(
                winner(&c, R1, Some(C2), &plugins),
                expect,
                "other consumer, {present:?}"
            );
            assert_eq!(
                winner(&c, R1, None, &plugins),
                expect,
                "no consumer, {present:?}"
            );
        }
    }

    #[test]
    fn route_without_matching_scope_has_no_chain_and_disabled_are_skipped() {
        let r = registry();
        let plugins = vec![
            plugin(
                &r,
                json!({"name": "limit", "route": {"id": R1}, "tags": ["r"]}),
            ),
            plugin(&r, json!({"name": "auth", "enabled": false, "tags": ["g"]})),
        ];
        let c = CompiledPlugins::compile(&r, &plugins, &routes(), &Tables::default()).unwrap();
        assert!(c.chain(uuid(R2)).is_none());
        assert_eq!(winner(&c, R1, None, &plugins), vec!["limit=r"]);
        assert_eq!(c.instances(), 1);
    }

    #[test]
    fn priority_order_then_dynamic_ordering_in_access() {
        let r = registry();
        let mut plugins = vec![
            plugin(&r, json!({"name": "limit", "tags": ["g"]})),
            plugin(&r, json!({"name": "auth", "tags": ["g"]})),
            plugin(&r, json!({"name": "late", "tags": ["g"]})),
            plugin(&r, json!({"name": "early", "tags": ["g"]})),
        ];
        let c = CompiledPlugins::compile(&r, &plugins, &routes(), &Tables::default()).unwrap();
        let chain = c.chain(uuid(R2)).unwrap();
        assert_eq!(chain.access_order(), ["early", "auth", "limit", "late"]);

        // limit before auth (the API-key-extraction case); late after early only (already so).
        plugins[0] = plugin(
            &r,
            json!({"name": "limit", "tags": ["g"], "ordering": {"before": {"access": ["auth"]}}}),
        );
        plugins[2] = plugin(
            &r,
            json!({"name": "late", "tags": ["g"], "ordering": {"after": {"access": ["early"]}}}),
        );
        let c = CompiledPlugins::compile(&r, &plugins, &routes(), &Tables::default()).unwrap();
        let chain = c.chain(uuid(R2)).unwrap();
        assert_eq!(chain.access_order(), ["early", "limit", "auth", "late"]);
        // The response phases keep priority order.
        let names: Vec<String> = chain
            .resolved(None)
            .iter()
            .map(|i| i.name.clone())
            .collect();
        assert_eq!(names, ["early", "auth", "limit", "late"]);

        // `early` after `late`: early moves to the end of the access phase.
        plugins[3] = plugin(
            &r,
            json!({"name": "early", "tags": ["g"], "ordering": {"after": {"access": ["late"]}}}),
        );
        let c = CompiledPlugins::compile(&r, &plugins, &routes(), &Tables::default()).unwrap();
        let chain = c.chain(uuid(R2)).unwrap();
        // late must follow early and early must follow late: a cycle -> priority order.
        assert_eq!(chain.access_order(), ["early", "auth", "limit", "late"]);
    }

    #[test]
    fn ordering_schema_rejects_unknown_phases() {
        let r = registry();
        let e = validate_plugin(
            &json!({"name": "limit", "ordering": {"before": {"rewrite": ["auth"]}}}),
            &SchemaCtx::new(1_700_000_000_000, &r),
        )
        .unwrap_err();
        assert!(
            format!("{e:?}").contains("expected one of: access"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_plugin_fails_compile() {
        let r = registry();
        let p = plugin(&r, json!({"name": "limit"}));
        let e = CompiledPlugins::compile(&Registry::empty(), &[p], &routes(), &Tables::default())
            .unwrap_err();
        assert!(e.to_string().contains("not enabled"));
    }
}
