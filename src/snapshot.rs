//! The immutable compiled configuration the data plane reads, and its publisher.
//!
//! A [`Snapshot`] is compiled from a whole [`Config`] off the hot path; if compiling fails the old
//! snapshot keeps serving. Requests take `load_full()` once and keep that `Arc` for their whole
//! life, so a request sees one consistent configuration. State that must outlive a swap (balancer
//! health, cursors, connection pools) lives in long-lived registries keyed by entity ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::balancer::{Balancer, BalancerRegistry};
use crate::model::{Config, Protocol, Route, Service};
use crate::plugins::chain::PluginCompileError;
use crate::plugins::{CompiledPlugins, Registry};
use crate::proxy::tls::UpstreamTls;
use crate::router::{Router, RouterError};
use crate::store::Tables;

/// A service ready for proxying: the entity plus what was resolved for it at compile time.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// The service entity.
    pub service: Service,
    /// The upstream's balancer when `service.host` names an upstream; `None` means direct.
    pub balancer: Option<Arc<Balancer>>,
    /// TLS settings towards the upstream for https services.
    pub tls: Option<Arc<UpstreamTls>>,
    /// The `Host` header of a direct service (no balancer): its host, with the port unless it
    /// is the protocol's default. Text, not a `HeaderValue`: a shared value's reference count
    /// would be one more cache line every worker thread writes per request.
    pub direct_host: String,
}

/// Immutable compiled configuration.
pub struct Snapshot {
    /// Increases with every publish.
    pub revision: u64,
    /// The proxy-relevant part of the configuration it was compiled from.
    pub config: Arc<Config>,
    /// Everything, indexed (consumers and credentials are looked up here, not copied).
    pub tables: Tables,
    /// Kong's `configuration_hash`: 32 hex chars, zeros when nothing was loaded.
    pub hash: String,
    /// Route matcher.
    pub router: Arc<Router>,
    /// Services by id.
    pub services: Arc<HashMap<Uuid, Arc<ServiceRuntime>>>,
    /// Balancers by upstream name.
    pub balancers: Arc<HashMap<String, Arc<Balancer>>>,
    /// Each route's plugin chain.
    pub plugins: Arc<CompiledPlugins>,
    /// Whether a configuration was ever loaded (for `/status/ready`).
    pub loaded: bool,
}

/// Why a configuration could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A route could not be compiled into the router.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A plugin could not be built.
    #[error(transparent)]
    Plugin(#[from] PluginCompileError),
    /// Upstream TLS settings are unusable.
    #[error("service {service}: {reason}")]
    Tls {
        /// Service id.
        service: Uuid,
        /// What was wrong.
        reason: String,
    },
}

/// Holds the current snapshot; publishes new ones atomically.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    publish_lock: tokio::sync::Mutex<()>,
    revision: AtomicU64,
    /// Publishes that failed to compile.
    failures: AtomicU64,
    balancers: Arc<BalancerRegistry>,
    registry: Arc<Registry>,
}

impl SnapshotStore {
    /// A store serving an empty, not-yet-loaded configuration.
    pub fn new(
        balancers: Arc<BalancerRegistry>,
        registry: Arc<Registry>,
    ) -> Result<Self, CompileError> {
        let empty = Snapshot {
            revision: 0,
            config: Arc::new(Config::default()),
            tables: Tables::default(),
            hash: "0".repeat(32),
            router: Arc::new(Router::new(&[])?),
            services: Arc::new(HashMap::new()),
            balancers: Arc::new(HashMap::new()),
            plugins: Arc::new(CompiledPlugins::default()),
            loaded: false,
        };
        Ok(Self {
            current: ArcSwap::from_pointee(empty),
            publish_lock: tokio::sync::Mutex::new(()),
            revision: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            balancers,
            registry,
        })
    }

    /// The current snapshot (one atomic load; keep the `Arc` for the request).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Compile `config` and swap it in. On error the current snapshot stays.
    pub async fn publish(&self, config: Config, hash: String) -> Result<u64, CompileError> {
        self.publish_tables(Tables::from_config(config), hash).await
    }

    /// How many publishes failed to compile since the start (the `/metrics` reload failures).
    pub fn publish_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Compile the store's `tables` and swap them in. On error the current snapshot stays (and
    /// the failure is counted).
    pub async fn publish_tables(&self, tables: Tables, hash: String) -> Result<u64, CompileError> {
        let published = self.compile_and_swap(tables, hash).await;
        if published.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        published
    }

    async fn compile_and_swap(&self, tables: Tables, hash: String) -> Result<u64, CompileError> {
        let _guard = self.publish_lock.lock().await;
        let started = std::time::Instant::now();
        // Only consumers, credentials or ACLs changed (the common stream of admin writes):
        // the router, services, balancers and plugin chains do not depend on them (plugins
        // look consumers up in the tables at request time), so they are shared with the
        // current snapshot and only the tables are swapped.
        let current = self.current.load_full();
        if current.loaded && tables.same_core(&current.tables) {
            let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
            self.current.store(Arc::new(Snapshot {
                revision,
                config: Arc::clone(&current.config),
                tables,
                hash,
                router: Arc::clone(&current.router),
                services: Arc::clone(&current.services),
                balancers: Arc::clone(&current.balancers),
                plugins: Arc::clone(&current.plugins),
                loaded: true,
            }));
            tracing::debug!(
                revision,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "configuration published (consumers and credentials only)"
            );
            return Ok(revision);
        }
        let config = Arc::new(tables.core_config());
        let balancers = self
            .balancers
            .reconcile(&config.upstreams, &config.targets)
            .await;
        let mut services = HashMap::with_capacity(config.services.len());
        for service in &config.services {
            let tls = if matches!(service.protocol, Protocol::Https | Protocol::Grpcs) {
                let tls = UpstreamTls::for_service(service, &config.ca_certificates).map_err(
                    |reason| CompileError::Tls {
                        service: service.id,
                        reason,
                    },
                )?;
                Some(Arc::new(tls))
            } else {
                None
            };
            services.insert(
                service.id,
                Arc::new(ServiceRuntime {
                    service: service.clone(),
                    balancer: balancers.get(&service.host).cloned(),
                    tls,
                    direct_host: crate::proxy::host_with_port(
                        &service.host,
                        service.port,
                        service.protocol,
                    ),
                }),
            );
        }
        // Routes of disabled services are not routed.
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .filter(|r| {
                r.service
                    .and_then(|fk| services.get(&fk.id))
                    .is_none_or(|s| s.service.enabled)
            })
            .cloned()
            .map(Arc::new)
            .collect();
        let router = Router::new(&routes)?;
        let plugins = CompiledPlugins::compile(&self.registry, &config.plugins, &routes, &tables)?;
        let plugins_built = plugins.instances();
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.store(Arc::new(Snapshot {
            revision,
            config,
            tables,
            hash,
            router: Arc::new(router),
            services: Arc::new(services),
            balancers: Arc::new(balancers),
            plugins: Arc::new(plugins),
            loaded: true,
        }));
        tracing::info!(
            revision,
            routes = routes.len(),
            plugins = plugins_built,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "configuration published"
        );
        Ok(revision)
    }

    /// Stop background work (health checkers).
    pub fn shutdown(&self) {
        self.balancers.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::EntityKind;
    use crate::store::Entity;
    use serde_json::json;

    const CONFIG: &str = r#"
_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: [/r]
consumers:
  - username: alice
"#;

    /// A copy of the first entity of `kind` with `changes` applied, put into `tables`.
    fn put_like(tables: &mut Tables, kind: EntityKind, changes: serde_json::Value) {
        let first = tables.table(kind).rows().values().next().unwrap().to_json();
        let mut v = first;
        for (k, x) in changes.as_object().unwrap() {
            v[k] = x.clone();
        }
        tables.put(Arc::new(Entity::from_json(kind, v).unwrap()));
    }

    #[tokio::test]
    async fn consumer_changes_share_the_compiled_parts_and_route_changes_recompile() {
        let store =
            SnapshotStore::new(BalancerRegistry::new(), Arc::new(Registry::builtin())).unwrap();
        let config = crate::declarative::parse(CONFIG).unwrap();
        store.publish(config, "h1".into()).await.unwrap();
        let first = store.load();

        // A consumer and a credential: the router and plugin chains are the same objects.
        let mut tables = first.tables.clone();
        put_like(
            &mut tables,
            EntityKind::Consumers,
            json!({"id": "00000000-0000-4000-8000-000000000002", "username": "bob"}),
        );
        store.publish_tables(tables, "h2".into()).await.unwrap();
        let second = store.load();
        assert!(second.revision > first.revision);
        assert!(Arc::ptr_eq(&first.router, &second.router));
        assert!(Arc::ptr_eq(&first.plugins, &second.plugins));
        assert!(Arc::ptr_eq(&first.services, &second.services));
        assert_eq!(second.hash, "h2");
        assert_eq!(second.tables.table(EntityKind::Consumers).rows().len(), 2);

        // A route: compiled again, and the new route is routed.
        let mut tables = second.tables.clone();
        put_like(
            &mut tables,
            EntityKind::Routes,
            json!({"id": "00000000-0000-4000-8000-000000000003", "name": "r2",
                   "paths": ["/r2"]}),
        );
        store.publish_tables(tables, "h3".into()).await.unwrap();
        let third = store.load();
        assert!(!Arc::ptr_eq(&second.router, &third.router));
        assert_eq!(third.config.routes.len(), 2);
    }
}
