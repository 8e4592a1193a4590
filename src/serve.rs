//! `gwctl serve`: load the configuration, bind the listeners, serve until SIGTERM/SIGINT, drain.
//!
//! Start-up order: compile the configuration (a bad file refuses to start), bind every listener
//! (port 0 picks a free port), log one `listening proxy=.. admin=.. status=..` line, serve. On a
//! signal the listeners close at once (new connections are refused), in-flight requests finish
//! within the drain timeout, and the process exits 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::AdminState;
use crate::balancer::BalancerRegistry;
use crate::model::schema::{EntityKind, PluginSchemas, now_ms};
use crate::ops::migrate::redact_url;
use crate::proxy::{ConnInfo, Proxy, Stats};
use crate::snapshot::SnapshotStore;
use crate::status::StatusState;
use crate::store::{Entity, HealthOverride, MemoryStore, PgStore, Store, Tables};
use crate::telemetry::access_log::{AccessLog, AccessLogConfig};

/// The declarative configuration used when `--config` is not given (DB-less).
pub const DEFAULT_CONFIG: &str = include_str!("default-config.yml");

/// Largest request head (request line + headers) accepted; larger ones get 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Time a client has to send a complete request head (and idle keep-alive bound).
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the publisher waits for a burst of changes to settle before compiling.
const PUBLISH_COALESCE: Duration = Duration::from_millis(5);
/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the telemetry exporters to send what they hold.
const TELEMETRY_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the access log to write what is queued.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(2);

/// Options for [`run`], built by the CLI from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Declarative file loaded at start (the embedded default when `None`).
    pub config: Option<PathBuf>,
    /// Postgres URL (Postgres mode is not built yet).
    pub database_url: Option<String>,
    /// Proxy listen addresses.
    pub proxy_listen: Vec<String>,
    /// TLS proxy listen addresses.
    pub proxy_tls_listen: Vec<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Admin listen address or `off`.
    pub admin_listen: String,
    /// Status listen address or `off`.
    pub status_listen: String,
    /// Admin token.
    pub admin_token: Option<String>,
    /// Proxy worker threads (each runs its own event loop); 0 means the CPU count.
    pub workers: usize,
    /// Graceful shutdown bound.
    pub drain_timeout: Duration,
    /// Peers whose forwarding headers are trusted (IPs or CIDRs).
    pub trusted_ips: Vec<String>,
    /// The JSON access log (off by default).
    pub access_log: AccessLogConfig,
}

/// Bound addresses, reported once every listener is up.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// Proxy listeners.
    pub proxy: Vec<SocketAddr>,
    /// TLS proxy listeners.
    pub proxy_tls: Vec<SocketAddr>,
    /// Admin listener.
    pub admin: Option<SocketAddr>,
    /// Status listener.
    pub status: Option<SocketAddr>,
}

/// Run the gateway until SIGTERM or SIGINT.
pub async fn run(options: ServeOptions) -> anyhow::Result<()> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    run_until(options, rx, |_| {}).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run the gateway until `shutdown` turns true. `on_bound` sees the bound addresses (tests use it
/// to run the gateway in-process).
pub async fn run_until(
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    run_inner(options, shutdown, on_bound, true).await
}

/// Like [`run_until`], without the `listening` line: for embedders that announce the gateway
/// themselves once more is ready (`gwctl up`, see [`log_listening`]).
pub async fn run_embedded(
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    run_inner(options, shutdown, on_bound, false).await
}

/// Log CONTRACT.md's `listening proxy=ADDR admin=ADDR status=ADDR` line for `bound`.
pub fn log_listening(bound: &Bound) {
    let join = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    if !bound.proxy_tls.is_empty() {
        tracing::info!(proxy_tls = %join(&bound.proxy_tls), "listening");
    }
    tracing::info!(
        proxy = %join(&bound.proxy),
        admin = %show(bound.admin),
        status = %show(bound.status),
        "listening"
    );
}

async fn run_inner(
    options: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(&Bound),
    announce: bool,
) -> anyhow::Result<()> {
    let trusted = parse_trusted(&options.trusted_ips)?;
    let node_id = uuid::Uuid::new_v4();
    // The circuit-breaker states are shared by the plugin (which drives them) and the Admin API
    // (which shows them): replace the built-in kind with one over a handle kept here.
    let breakers = crate::plugins::circuit_breaker::BreakerStates::new();
    let mut registry = crate::plugins::Registry::builtin();
    registry.add(Arc::new(crate::plugins::circuit_breaker::Kind::new(
        Arc::clone(&breakers),
    )));
    // Likewise the prometheus plugin's counters, which `/metrics` renders.
    let prometheus = crate::plugins::prometheus::Exporter::new();
    registry.add(Arc::new(crate::plugins::prometheus::Kind::new(Arc::clone(
        &prometheus,
    ))));
    // The opentelemetry exporters report this node's id, and are flushed on shutdown.
    let otel = Arc::new(crate::plugins::opentelemetry::Kind::new(node_id));
    registry.add(Arc::clone(&otel) as Arc<dyn crate::plugins::PluginKind>);
    // grpc-gateway's discovery: descriptors the plugin serves with, routes it writes, states
    // the Admin API shows and refreshes on demand.
    let grpc = crate::plugins::grpc_gateway::discovery::Discovery::new();
    registry.add(Arc::new(crate::plugins::grpc_gateway::Kind::new(
        Arc::clone(&grpc),
    )));
    let registry = Arc::new(registry);
    let plugins: Arc<dyn PluginSchemas> = Arc::clone(&registry) as Arc<dyn PluginSchemas>;
    let config: Arc<dyn Store> = match &options.database_url {
        Some(url) => {
            if options.config.is_some() {
                bail!(
                    "--config is for DB-less mode; with --database-url the configuration lives in \
                     Postgres (load a file with `gwctl setup kong --file`)"
                );
            }
            let pending = crate::ops::migrate::pending(url)
                .await
                .with_context(|| format!("checking the schema of {}", redact_url(url)))?;
            if !pending.is_empty() {
                let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
                bail!(
                    "the database needs migrations ({}); run `gwctl migrate up` first",
                    names.join(", ")
                );
            }
            PgStore::connect(url, node_id)
                .await
                .with_context(|| format!("opening the Postgres store at {}", redact_url(url)))?
        }
        None => {
            let (text, source) = match &options.config {
                Some(path) => (
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading configuration {}", path.display()))?,
                    path.display().to_string(),
                ),
                None => (DEFAULT_CONFIG.to_owned(), "embedded default".to_owned()),
            };
            let parsed =
                crate::declarative::parse_with(&text, &*plugins, now_ms()).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid declarative configuration in {source}:\n  {}",
                        e.lines().join("\n  ")
                    )
                })?;
            Arc::new(MemoryStore::new(
                Tables::from_config(parsed),
                crate::declarative::config_hash(&text),
            ))
        }
    };

    let balancers = BalancerRegistry::new();
    let store =
        Arc::new(SnapshotStore::new(balancers, registry).context("initialising the router")?);
    let mut revisions = config.subscribe();
    revisions.borrow_and_update();
    store
        .publish_tables(config.tables(), config.config_hash())
        .await
        .context("compiling the configuration")?;
    let publisher = tokio::spawn(publish_changes(
        Arc::clone(&config),
        Arc::clone(&store),
        revisions,
    ));
    let health_follower = tokio::spawn(follow_health(Arc::clone(&config), Arc::clone(&store)));
    grpc.attach(
        Arc::clone(&config),
        Arc::clone(&store),
        Arc::clone(&plugins),
    );
    let discovery = tokio::spawn(Arc::clone(&grpc).run());

    let access_log = AccessLog::open(&options.access_log)?;
    let stats = Arc::new(Stats::default());
    let proxy_up = Arc::new(AtomicBool::new(false));
    let status_state = StatusState {
        store: Arc::clone(&store),
        stats: Arc::clone(&stats),
        proxy_up: Arc::clone(&proxy_up),
        node_id,
        config: Arc::clone(&config),
        breakers: Arc::clone(&breakers),
        prometheus,
    };
    let workers = if options.workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        options.workers
    };

    // Bind everything before serving anything. Each proxy address gets one SO_REUSEPORT socket
    // per worker thread, so the kernel spreads connections over the workers.
    let mut bound = Bound::default();
    let mut per_worker: Vec<Vec<(std::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for addr in &options.proxy_listen {
        let group = bind_reuseport(addr, workers)?;
        bound.proxy.push(group[0].local_addr()?);
        for (slot, l) in per_worker.iter_mut().zip(group) {
            slot.push((l, None));
        }
    }
    if !options.proxy_tls_listen.is_empty() {
        let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) else {
            bail!("--proxy-tls-listen needs --tls-cert and --tls-key");
        };
        let config = crate::proxy::tls::server_config(cert, key).map_err(anyhow::Error::msg)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        for addr in &options.proxy_tls_listen {
            let group = bind_reuseport(addr, workers)?;
            bound.proxy_tls.push(group[0].local_addr()?);
            for (slot, l) in per_worker.iter_mut().zip(group) {
                slot.push((l, Some(acceptor.clone())));
            }
        }
    }
    let admin_listener = match options.admin_listen.as_str() {
        "off" => None,
        addr => Some(bind(addr).await?),
    };
    bound.admin = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let status_listener = match options.status_listen.as_str() {
        "off" => None,
        addr => Some(bind(addr).await?),
    };
    bound.status = status_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    // Proxy workers: one thread and one single-threaded event loop each, with its own upstream
    // connection pool; the snapshot and the counters are shared.
    let mut finished = Vec::new();
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let proxy = Proxy::with_access_log(
            Arc::clone(&store),
            Arc::clone(&stats),
            trusted.clone(),
            access_log.clone(),
        );
        let stats = Arc::clone(&stats);
        let shutdown = shutdown.clone();
        let drain = options.drain_timeout;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("gwctl-proxy-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker(listeners, proxy, stats, shutdown, drain)),
                    Err(e) => tracing::error!(error = %e, "cannot start a proxy worker"),
                }
                let _ = done_tx.send(());
            })
            .context("starting a proxy worker thread")?;
        finished.push(done_rx);
    }

    let mut tasks = JoinSet::new();
    if let Some(l) = admin_listener {
        let app = crate::admin::router(AdminState {
            store: Arc::clone(&config),
            snapshots: Arc::clone(&store),
            status: status_state.clone(),
            plugins: Arc::clone(&plugins),
            token: options.admin_token.as_deref().map(Arc::from),
            breakers: Arc::clone(&breakers),
            grpc: Arc::clone(&grpc),
        });
        tasks.spawn(serve_axum(l, app, shutdown.clone()));
    }
    if let Some(l) = status_listener {
        let app = crate::status::router(status_state.clone());
        tasks.spawn(serve_axum(l, app, shutdown.clone()));
    }
    proxy_up.store(true, Ordering::Release);

    if announce {
        log_listening(&bound);
    }
    on_bound(&bound);

    stopped(&mut shutdown).await;
    proxy_up.store(false, Ordering::Release);
    // Workers stop accepting at once (new connections are refused) and drain their in-flight
    // requests within the drain timeout.
    for done in finished {
        let _ = done.await;
    }
    // Every request has been logged: send what the telemetry exporters still hold.
    let flush_deadline = tokio::time::Instant::now() + TELEMETRY_FLUSH_TIMEOUT;
    if !otel.flush(flush_deadline).await {
        tracing::warn!(timeout = ?TELEMETRY_FLUSH_TIMEOUT, "telemetry flush timed out; queued spans or logs lost");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    publisher.abort();
    health_follower.abort();
    discovery.abort();
    store.shutdown();
    // Another node takes over the cluster-wide background work at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), config.release_leases()).await;
    if let Some(log) = access_log {
        close_access_log(log).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Write what the access log still queues (bounded: a blocked destination is abandoned) and
/// report its counts.
async fn close_access_log(log: Arc<AccessLog>) {
    let closed = tokio::task::spawn_blocking(move || log.close(ACCESS_LOG_FLUSH)).await;
    let dropped = crate::telemetry::DROPS.access_log.load(Ordering::Relaxed);
    match closed {
        Ok(c) if c.flushed => {
            tracing::info!(written = c.written, dropped, "access log closed");
        }
        Ok(c) => tracing::warn!(
            written = c.written,
            dropped,
            timeout = ?ACCESS_LOG_FLUSH,
            "access log not flushed in time (its destination blocks); queued lines are lost"
        ),
        Err(e) => tracing::warn!(error = %e, "closing the access log failed"),
    }
}

/// One proxy worker's event loop: accept on its listeners until shutdown, then drain.
async fn worker(
    listeners: Vec<(std::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    proxy: Arc<Proxy>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut accepts = JoinSet::new();
    for (std_listener, tls) in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot use a listener");
                continue;
            }
        };
        accepts.spawn(accept_loop(
            listener,
            tls,
            Arc::clone(&proxy),
            Arc::clone(&stats),
            Arc::clone(&graceful),
            shutdown.clone(),
        ));
    }
    let sweeper = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                proxy.pool().sweep();
                proxy.h2_pool().sweep();
            }
        })
    };
    stopped(&mut shutdown).await;
    // Accept loops end on the same signal and drop their listeners and their handles on the
    // graceful-shutdown tracker; then wait for in-flight requests.
    while accepts.join_next().await.is_some() {}
    sweeper.abort();
    let drained = match Arc::try_unwrap(graceful) {
        Ok(g) => tokio::time::timeout(drain_timeout, g.shutdown())
            .await
            .is_ok(),
        Err(_) => false,
    };
    if !drained {
        tracing::warn!(timeout = ?drain_timeout, "drain timeout reached; closing remaining connections");
    }
}

/// Bind `count` listening sockets on the same address with SO_REUSEPORT (port 0: the first
/// socket picks the port, the others join it).
fn bind_reuseport(addr: &str, count: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let mut sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid listen address '{addr}' (expected IP:PORT)"))?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(sock),
            Type::STREAM,
            Some(SockProtocol::TCP),
        )
        .context("creating a socket")?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        socket
            .bind(&sock.into())
            .with_context(|| format!("binding {sock}"))?;
        socket
            .listen(4096)
            .with_context(|| format!("listening on {sock}"))?;
        let listener: std::net::TcpListener = socket.into();
        if sock.port() == 0 {
            sock = listener.local_addr()?;
        }
        out.push(listener);
    }
    Ok(out)
}

/// Recompile the snapshot whenever the store changes, off the request path. Bursts of writes
/// are coalesced: one compile covers every change that arrived while the previous one ran.
async fn publish_changes(
    config: Arc<dyn Store>,
    snapshots: Arc<SnapshotStore>,
    mut revisions: watch::Receiver<u64>,
) {
    while revisions.changed().await.is_ok() {
        // Let a burst settle a little so 1,000 writes do not mean 1,000 compiles.
        tokio::time::sleep(PUBLISH_COALESCE).await;
        revisions.borrow_and_update();
        if let Err(e) = snapshots
            .publish_tables(config.tables(), config.config_hash())
            .await
        {
            tracing::error!(error = %e, "the new configuration does not compile; still serving the previous one");
        }
    }
}

/// How long an override waits for its target to reach this node's balancer (a target created
/// just before the override, or one whose name is still resolving) before it is dropped.
const HEALTH_PENDING_FOR: Duration = Duration::from_secs(30);

/// Apply manual health overrides (from this node's admin API or, in Postgres mode, any node's)
/// to the balancers. An override for a target the data plane does not have yet is retried until
/// it lands or [`HEALTH_PENDING_FOR`] passes, so `POST target` then `PUT .../unhealthy` sticks.
async fn follow_health(config: Arc<dyn Store>, snapshots: Arc<SnapshotStore>) {
    let mut events = config.health_events();
    let mut pending: Vec<(HealthOverride, tokio::time::Instant)> = Vec::new();
    let mut retry = tokio::time::interval(Duration::from_millis(20));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(h) => {
                    // A newer verdict for the same target/address replaces a pending one.
                    pending.retain(|(p, _)| (p.target, &p.address) != (h.target, &h.address));
                    if apply_health(&*config, &snapshots, &h) == HealthApplied::NotYet {
                        pending.push((h, tokio::time::Instant::now() + HEALTH_PENDING_FOR));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = retry.tick(), if !pending.is_empty() => {
                let now = tokio::time::Instant::now();
                pending.retain(|(h, deadline)| {
                    *deadline > now && apply_health(&*config, &snapshots, h) == HealthApplied::NotYet
                });
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum HealthApplied {
    /// Applied, or moot (the target or upstream is gone from the configuration).
    Done,
    /// The configuration has the target but this node's balancer does not have it yet.
    NotYet,
}

fn apply_health(
    config: &dyn Store,
    snapshots: &SnapshotStore,
    h: &HealthOverride,
) -> HealthApplied {
    let tables = config.tables();
    let (Some(u), Some(t)) = (
        tables.get(EntityKind::Upstreams, h.upstream),
        tables.get(EntityKind::Targets, h.target),
    ) else {
        return HealthApplied::Done;
    };
    let (Entity::Upstream(u), Entity::Target(t)) = (&**u, &**t) else {
        return HealthApplied::Done;
    };
    match snapshots.load().balancers.get(&u.name) {
        Some(b) if b.set_health(&t.target, h.address.as_deref(), h.healthy) => HealthApplied::Done,
        _ => HealthApplied::NotYet,
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid listen address '{addr}' (expected IP:PORT)"))?;
    TcpListener::bind(sock)
        .await
        .with_context(|| format!("binding {sock}"))
}

fn parse_trusted(list: &[String]) -> anyhow::Result<Vec<IpNet>> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .with_context(|| format!("invalid trusted IP or CIDR '{s}'"))
        })
        .collect()
}

async fn serve_axum(listener: TcpListener, app: axum::Router, mut shutdown: watch::Receiver<bool>) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stopped(&mut shutdown).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "listener failed");
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(CLIENT_HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    stats: Arc<Stats>,
    graceful: Arc<GracefulShutdown>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let conn = ConnInfo {
            peer,
            local,
            tls: tls.is_some(),
        };
        let proxy = Arc::clone(&proxy);
        let stats = Arc::clone(&stats);
        let builder = Arc::clone(&builder);
        match &tls {
            None => {
                let watched = serve_connection(
                    &builder,
                    TokioIo::new(stream),
                    proxy,
                    conn,
                    graceful.watcher(),
                );
                tokio::spawn(counted(stats, watched));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls_stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let watched =
                        serve_connection(&builder, TokioIo::new(tls_stream), proxy, conn, watcher);
                    counted(stats, watched).await;
                });
            }
        }
    }
}

fn serve_connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    io: TokioIo<IO>,
    proxy: Arc<Proxy>,
    conn: ConnInfo,
    watcher: Watcher,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let proxy = Arc::clone(&proxy);
        // Boxed: the request future is large (every phase's state inline), and hyper moves the
        // service future around (HTTP/2 spawns a task per stream); a box makes each move a
        // pointer copy instead of a memcpy of kilobytes (perf showed memmove at 10-17%).
        async move { Ok::<_, Infallible>(Box::pin(proxy.handle(req, conn)).await) }
    });
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let watched = watcher.watch(connection);
    async move {
        if let Err(e) = watched.await {
            tracing::debug!(peer = %conn.peer, error = %e, "client connection ended with an error");
        }
    }
}

async fn counted(stats: Arc<Stats>, fut: impl std::future::Future<Output = ()>) {
    stats.connections_handled.fetch_add(1, Ordering::Relaxed);
    stats.connections_active.fetch_add(1, Ordering::Relaxed);
    fut.await;
    stats.connections_active.fetch_sub(1, Ordering::Relaxed);
}
