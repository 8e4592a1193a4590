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
    pub router: Router,
    /// Services by id.
    pub services: HashMap<Uuid, Arc<ServiceRuntime>>,
    /// Balancers by upstream name.
    pub balancers: HashMap<String, Arc<Balancer>>,
    /// Each route's plugin chain.
    pub plugins: CompiledPlugins,
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
            router: Router::new(&[])?,
            services: HashMap::new(),
            balancers: HashMap::new(),
            plugins: CompiledPlugins::default(),
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
            router,
            services,
            balancers,
            plugins,
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
