//! The data plane: normalize -> route -> (plugins) -> balance -> forward with retries -> respond.
//!
//! One [`Proxy`] serves every proxy listener. Per request it takes the current
//! [`Snapshot`](crate::snapshot::Snapshot) once, matches a route, builds the upstream request with
//! Kong's headers, picks a peer (balancer or DNS), sends over a pooled keep-alive connection, and
//! streams the response back. Retries go to the next peer on connection errors and connect
//! timeouts, i.e. only while no byte of the request was sent. Errors end in Kong's exact bodies
//! built by [`respond`].

pub mod body;
pub mod h2;
pub mod pool;
pub mod respond;
pub mod tls;

mod dns;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use ipnet::IpNet;
use tokio::sync::oneshot;

use crate::balancer::{HashSource, Outcome, Peer};
use crate::model::{HashOn, Protocol, Route};
use crate::plugins::{Ctx, LogInfo, RequestBody, Routed, Source};
use crate::router::{RequestInfo, UriCaptures, normalize_path, upstream_path};
use crate::snapshot::{ServiceRuntime, SnapshotStore};
use crate::telemetry::access_log::{self, AccessLog};
use crate::telemetry::scope::RequestScope;
use crate::telemetry::timeline::{AttemptSpan, Timeline};

use self::body::{Checkin, ProxyBody, UpstreamBody, UpstreamReqBody};
use self::h2::H2Pool;
use self::pool::{ConnectError, Pool, PoolKey, Sender};
use self::respond::{GatewayError, SERVER_HEADER};

/// `Via` value appended to requests and responses (Kong 3.8+ format).
static VIA_11: HeaderValue = HeaderValue::from_static("1.1 kong/3.9.0");
static VIA_2: HeaderValue = HeaderValue::from_static("2 kong/3.9.0");
static X_KONG_REQUEST_ID: HeaderName = HeaderName::from_static("x-kong-request-id");
static X_KONG_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-kong-upstream-latency");
static X_KONG_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-kong-proxy-latency");
static X_KONG_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-kong-response-latency");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Counters behind `/status` (`server` section).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests received on proxy listeners.
    pub total_requests: AtomicU64,
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections handled (accepted and served; TLS handshake passed).
    pub connections_handled: AtomicU64,
    /// Open client connections.
    pub connections_active: AtomicI64,
    /// Requests being processed (Kong's `connections_writing`).
    pub requests_in_flight: AtomicI64,
}

/// What the proxy knows about a client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the connection arrived on.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The proxy: shared by every proxy connection.
pub struct Proxy {
    store: Arc<SnapshotStore>,
    pool: Arc<Pool>,
    h2: Arc<H2Pool>,
    dns: dns::Resolver,
    stats: Arc<Stats>,
    trusted: Vec<IpNet>,
    access_log: Option<Arc<AccessLog>>,
}

/// What the upstream part of the pipeline needs to know about a routed request.
struct Upstreaming<'a> {
    // Borrowed from the request's snapshot: no reference count every worker thread writes.
    route: &'a Arc<Route>,
    service: &'a Arc<ServiceRuntime>,
    /// The normalized client path.
    path: Cow<'a, str>,
    matched_len: usize,
    captures: UriCaptures,
    host_value: Option<HeaderValue>,
    conn: ConnInfo,
    trusted: bool,
    client_ip: IpAddr,
    request_id: Option<&'a HeaderValue>,
    start: Instant,
    /// A plugin's replacement for the upstream path.
    upstream_path: Option<String>,
    /// A plugin's replacement for the upstream Host header (and SNI).
    upstream_host: Option<HeaderValue>,
    /// Body bytes a plugin already read from the client's stream (sent before the rest).
    body_head: Option<bytes::Bytes>,
}

/// How long the gateway and the upstream took for a request that reached the upstream.
struct Latency {
    /// Connect to response head.
    upstream: Duration,
    /// Receipt to sending upstream.
    proxy: Duration,
}

/// A failed upstream attempt.
struct AttemptError {
    error: GatewayError,
    /// The request came back unsent: another attempt may reuse it.
    unsent: Option<Request<UpstreamReqBody>>,
    /// Passive health outcome to report for the peer.
    outcome: Outcome,
    detail: String,
}

impl Proxy {
    /// A proxy over `store`. `trusted` peers may set X-Forwarded-* and X-Real-IP.
    pub fn new(store: Arc<SnapshotStore>, stats: Arc<Stats>, trusted: Vec<IpNet>) -> Arc<Self> {
        Self::with_access_log(store, stats, trusted, None)
    }

    /// A proxy that also writes each request to `access_log`.
    pub fn with_access_log(
        store: Arc<SnapshotStore>,
        stats: Arc<Stats>,
        trusted: Vec<IpNet>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            pool: Pool::new(),
            h2: H2Pool::new(),
            dns: dns::Resolver::default(),
            stats,
            trusted,
            access_log,
        })
    }

    /// The upstream connection pool (for periodic sweeping and tests).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The HTTP/2 upstream connection pool of grpc/grpcs services (sweeping, tests).
    pub fn h2_pool(&self) -> &Arc<H2Pool> {
        &self.h2
    }

    /// Handle one client request. Never fails: errors become Kong's error responses.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<ProxyBody> {
        let start = Instant::now();
        self.stats.total_requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .requests_in_flight
            .fetch_add(1, Ordering::Relaxed);
        let request_id = new_request_id();
        let request_id_value = HeaderValue::from_str(&request_id).ok();
        let accept = req.headers().get(header::ACCEPT).cloned();
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let grpc = respond::is_grpc_request(req.version(), req.headers());
        let scope = RequestScope::new(&request_id);
        // The access log (when on) takes the request's head now and a note of what proxying it
        // learnt; its line is queued when the response body ends.
        let head =
            (self.access_log.as_ref()).map(|_| access_log::RequestHead::new(&req, conn.peer.ip()));
        // Boxed for the same reason as the service future in serve.rs: the scope and the
        // access-log wrapper move it. The box is allocated first and the future written into
        // it: `Box::pin(future)` builds the whole 6 KB future on the stack and copies it.
        let slot = Box::new_uninit();
        let proxied = Box::into_pin(Box::write(
            slot,
            self.proxy(
                req,
                conn,
                request_id_value.as_ref(),
                &request_id,
                start,
                grpc,
            ),
        ));
        let (result, note) = if head.is_some() {
            let (r, n) = scope.run(access_log::noted(proxied)).await;
            (r, Some(n))
        } else {
            (scope.run(proxied).await, None)
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                let mut resp = if err.is_nginx_level() {
                    respond::nginx_error(err, &request_id, accept.or(content_type).as_ref())
                } else {
                    respond::error(err, &request_id, accept.as_ref())
                };
                resp.headers_mut()
                    .insert(X_KONG_RESPONSE_LATENCY.clone(), millis(start.elapsed()));
                resp
            }
        };
        if grpc {
            // Gateway-made responses that did not pass a plugin chain (which converts its own).
            resp = respond::grpc_form(resp);
        }
        if let Some(v) = &request_id_value {
            resp.headers_mut()
                .insert(X_KONG_REQUEST_ID.clone(), v.clone());
        }
        self.stats
            .requests_in_flight
            .fetch_sub(1, Ordering::Relaxed);
        if let (Some(log), Some(head), Some(note)) = (&self.access_log, head, note) {
            resp = log.wrap(resp, head, note, request_id, start);
        }
        resp
    }

    async fn proxy(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        request_id: Option<&HeaderValue>,
        request_id_text: &str,
        start: Instant,
        grpc: bool,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let snapshot = self.store.load();
        let (mut parts, body) = req.into_parts();

        // Cheap clones (reference-counted) so borrows do not pin `parts`.
        let client_uri = parts.uri.clone();
        let path = normalize_path(client_uri.path()).map_err(|_| GatewayError::BAD_REQUEST)?;
        let host_value = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let host = host_value.as_ref().and_then(|h| h.to_str().ok());
        let found = {
            let info = RequestInfo {
                method: parts.method.as_str(),
                host: host.unwrap_or(""),
                port: conn.local.port(),
                path: &path,
                headers: &parts.headers,
            };
            let m = snapshot.router.find(&info).ok_or(GatewayError::NO_ROUTE)?;
            (m.route, m.matched_len, m.captures)
        };
        let routed = Instant::now();
        let (route, matched_len, captures) = found;
        access_log::note(|n| n.route(route));

        if !conn.tls
            && !route.protocols.contains(&Protocol::Http)
            && route.protocols.contains(&Protocol::Https)
        {
            return Ok(https_required(route, host, &parts.uri));
        }
        if let Some(resp) = grpc_route_mismatch(route, &parts, conn.tls, request_id_text) {
            return Ok(resp);
        }

        let service = route
            .service
            .and_then(|fk| snapshot.services.get(&fk.id))
            .ok_or(GatewayError::NO_SERVICE)?;

        // Client address: the peer, or X-Real-IP from a trusted peer.
        let trusted = self.is_trusted(conn.peer.ip());
        let client_ip = if trusted {
            parts
                .headers
                .get(&X_REAL_IP)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .unwrap_or(conn.peer.ip())
        } else {
            conn.peer.ip()
        };
        access_log::note(|n| n.service(service, client_ip));
        let body = if http_body::Body::is_end_stream(&body) {
            RequestBody::Empty
        } else {
            RequestBody::Stream(body)
        };
        let mut req = Upstreaming {
            route,
            service,
            path,
            matched_len,
            captures,
            host_value,
            conn,
            trusted,
            client_ip,
            request_id,
            start,
            upstream_path: None,
            upstream_host: None,
            body_head: None,
        };
        let Some(chain) = snapshot.plugins.chain(req.route.id) else {
            return self
                .upstream(parts, body, &req, None)
                .await
                .map(|(resp, _)| resp);
        };

        // The plugin chain: access, then the upstream, then the response phases.
        let routed_req = Routed {
            snapshot: Arc::clone(&snapshot),
            route: Arc::clone(req.route),
            service: Arc::clone(req.service),
            conn,
            client_ip,
            request_id: Arc::from(request_id_text),
            grpc,
            started: start,
            path: req.path.to_string(),
            captures: req.captures.clone(),
        };
        let mut ctx = Box::new(Ctx::new(routed_req, &mut parts, body));
        ctx.timeline = chain
            .traced()
            .then(|| Box::new(Timeline::new(start, routed)));
        let mut info = LogInfo::pending();
        if let Some(resp) = chain.access(&mut ctx).await {
            return Ok(chain.respond(ctx, resp, Source::Gateway, info));
        }
        parts.headers = chain.upstream_headers(&mut ctx);
        parts.method = ctx.method.clone();
        if ctx.query.as_deref() != parts.uri.query() || ctx.upstream_path.is_some() {
            let pq = match &ctx.query {
                Some(q) => format!("{}?{q}", parts.uri.path()),
                None => parts.uri.path().to_owned(),
            };
            parts.uri = pq.parse().map_err(|_| GatewayError::BAD_REQUEST)?;
        }
        req.upstream_path = ctx.upstream_path.clone();
        req.upstream_host = ctx.upstream_host.clone();
        req.body_head = ctx.body_head.take();
        let body = std::mem::take(&mut ctx.body);
        let mut timeline = ctx.timeline.take();
        let sent = self
            .upstream(parts, body, &req, timeline.as_deref_mut())
            .await;
        ctx.timeline = timeline;
        match sent {
            Ok((resp, latency)) => {
                info.upstream_latency = Some(latency.upstream);
                info.proxy_latency = Some(latency.proxy);
                let resp = if chain.has_response_phase() {
                    chain.response(&mut ctx, resp).await
                } else {
                    resp
                };
                Ok(chain.respond(ctx, resp, Source::Upstream, info))
            }
            Err(err) => {
                let accept = ctx.headers.get(header::ACCEPT);
                let resp = if err.is_nginx_level() {
                    let fallback = accept.or(ctx.headers.get(header::CONTENT_TYPE));
                    respond::nginx_error(err, request_id_text, fallback)
                } else {
                    respond::error(err, request_id_text, accept)
                };
                info.upstream_error = Some(err);
                Ok(chain.respond(ctx, resp, Source::Gateway, info))
            }
        }
    }

    /// Send the (access-phase-processed) request upstream and prepare the response head.
    async fn upstream(
        &self,
        mut parts: Parts,
        body: RequestBody,
        r: &Upstreaming<'_>,
        timeline: Option<&mut Timeline>,
    ) -> Result<(Response<ProxyBody>, Latency), GatewayError> {
        let (route, service) = (&r.route, &r.service);
        // grpc/grpcs services are proxied over HTTP/2 (Kong's `grpc_pass`), where there is no
        // HTTP/1.1 upgrade.
        let h2 = service.service.protocol.is_grpc();
        let upgrade = !h2 && is_upgrade(&parts);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };

        // The upstream request: path, headers.
        let mut target_path = match &r.upstream_path {
            Some(p) => p.clone(),
            None => upstream_path(
                service.service.path.as_deref(),
                &r.path,
                r.matched_len,
                route.strip_path,
            ),
        };
        if let Some(q) = parts.uri.query() {
            target_path.push('?');
            target_path.push_str(q);
        }
        let uri: Uri = target_path.parse().map_err(|_| GatewayError::BAD_REQUEST)?;

        let original_host = r.host_value.clone();
        let stripped =
            (route.strip_path && r.matched_len > 0).then(|| r.path[..r.matched_len].to_owned());
        // Header/cookie hashing reads the client's headers (`parts`) after these moved on.
        let mut headers = if hashes_on_headers(service) {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        // `TE: trailers` survives only towards HTTP/2 upstreams and only when the client (or a
        // plugin) asked for trailers, as nginx's grpc module does.
        let te_trailers = h2 && wants_trailers(&headers);
        strip_hop_by_hop(&mut headers, upgrade);
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        self.forwarding_headers(
            &mut headers,
            &r.conn,
            r.trusted,
            r.client_ip,
            original_host.as_ref(),
            parts.uri.path(),
            stripped.as_deref(),
            parts.version,
        );
        if let Some(v) = r.request_id {
            headers.insert(X_KONG_REQUEST_ID.clone(), v.clone());
        }
        // The gateway answers `Expect: 100-continue` itself (hyper sends 100 when the body is
        // first read), so the upstream must not wait for one.
        headers.remove(header::EXPECT);

        let (body, body_done) = match body {
            RequestBody::Empty => (UpstreamReqBody::Empty, None),
            RequestBody::Full(b) if b.is_empty() => (UpstreamReqBody::Empty, None),
            RequestBody::Full(b) => (UpstreamReqBody::Full(Some(b)), None),
            RequestBody::Stream(inner) => {
                let (tx, rx) = oneshot::channel();
                (
                    UpstreamReqBody::Stream {
                        head: r.body_head.clone(),
                        inner,
                        done: Some(tx),
                    },
                    Some(rx),
                )
            }
        };

        let mut upstream_req = Request::new(body);
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        *upstream_req.headers_mut() = headers;

        let hash = RequestHash {
            parts: &parts,
            client_ip: r.client_ip,
            path: &r.path,
            captures: &r.captures,
        };
        let (resp, upstream_started, set_cookie) = self
            .forward(
                service,
                route,
                upstream_req,
                body_done,
                &hash,
                original_host,
                r.upstream_host.clone(),
                upgrade,
                timeline,
            )
            .await?;
        let upstream_latency = upstream_started.elapsed();
        let proxy_latency = upstream_started.saturating_duration_since(r.start);
        access_log::note(|n| n.latencies(upstream_latency, proxy_latency));

        let (mut resp_parts, resp_body) = resp.into_parts();
        let body = ProxyBody::Upstream(Box::new(resp_body));

        if resp_parts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some(client), Some(up)) = (
                client_upgrade,
                resp_parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
            ) {
                tokio::spawn(tunnel(client, up));
            }
        } else {
            strip_hop_by_hop(&mut resp_parts.headers, false);
        }
        let h = &mut resp_parts.headers;
        h.insert(X_KONG_UPSTREAM_LATENCY.clone(), millis(upstream_latency));
        h.insert(X_KONG_PROXY_LATENCY.clone(), millis(proxy_latency));
        append_via(h, &VIA_11);
        if !h.contains_key(header::SERVER) {
            h.insert(header::SERVER, SERVER_HEADER.clone());
        }
        if let Some((name, value, path)) = set_cookie
            && let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Path={path}"))
        {
            h.append(header::SET_COOKIE, v);
        }
        resp_parts.version = Version::HTTP_11;
        let latency = Latency {
            upstream: upstream_latency,
            proxy: proxy_latency,
        };
        Ok((Response::from_parts(resp_parts, body), latency))
    }

    #[allow(clippy::too_many_arguments)]
    fn forwarding_headers(
        &self,
        headers: &mut HeaderMap,
        conn: &ConnInfo,
        trusted: bool,
        client_ip: IpAddr,
        host: Option<&HeaderValue>,
        raw_path: &str,
        stripped: Option<&str>,
        version: Version,
    ) {
        // X-Forwarded-For: the client's list plus the peer.
        let peer = ip_value(conn.peer.ip());
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => {
                HeaderValue::from_str(&format!("{prev}, {}", peer.to_str().unwrap_or_default()))
                    .ok()
            }
            _ => Some(peer),
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        let keep = |headers: &HeaderMap, name: &HeaderName| trusted && headers.contains_key(name);
        if !keep(headers, &X_FORWARDED_PROTO) {
            let proto = if conn.tls { &HTTPS } else { &HTTP };
            headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
        }
        if !keep(headers, &X_FORWARDED_HOST) {
            let text = host.and_then(|h| h.to_str().ok());
            match (host, text) {
                // Without a port the client's value is reused (a reference count, not a copy).
                (Some(v), Some(t)) if strip_port(t).len() == t.len() => {
                    headers.insert(X_FORWARDED_HOST.clone(), v.clone());
                }
                _ => set(
                    headers,
                    &X_FORWARDED_HOST,
                    text.map(strip_port).unwrap_or(""),
                ),
            }
        }
        if !keep(headers, &X_FORWARDED_PORT) {
            headers.insert(
                X_FORWARDED_PORT.clone(),
                HeaderValue::from(conn.local.port()),
            );
        }
        if !keep(headers, &X_FORWARDED_PATH) {
            set(headers, &X_FORWARDED_PATH, raw_path);
        }
        if !keep(headers, &X_FORWARDED_PREFIX) {
            match stripped {
                Some(prefix) => set(headers, &X_FORWARDED_PREFIX, prefix),
                None => {
                    headers.remove(&X_FORWARDED_PREFIX);
                }
            }
        }
        headers.insert(X_REAL_IP.clone(), ip_value(client_ip));
        let via = if version == Version::HTTP_2 {
            &VIA_2
        } else {
            &VIA_11
        };
        append_via(headers, via);
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.trusted.is_empty() && self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Pick peers and send, retrying on failures that happened before the request was sent.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        service: &ServiceRuntime,
        route: &Route,
        mut req: Request<UpstreamReqBody>,
        mut body_done: Option<oneshot::Receiver<()>>,
        hash: &RequestHash<'_>,
        original_host: Option<HeaderValue>,
        host_override: Option<HeaderValue>,
        upgrade: bool,
        mut timeline: Option<&mut Timeline>,
    ) -> Result<
        (
            Response<UpstreamBody>,
            Instant,
            Option<(String, String, String)>,
        ),
        GatewayError,
    > {
        let svc = &service.service;
        let attempts = svc.retries.saturating_add(1);
        let connect_timeout = Duration::from_millis(svc.connect_timeout);
        let write_timeout = Duration::from_millis(svc.write_timeout);
        let read_timeout = Duration::from_millis(svc.read_timeout);
        let mut tried: smallvec::SmallVec<[SocketAddr; 4]> = smallvec::SmallVec::new();
        let mut last = GatewayError::BAD_GATEWAY;
        for attempt in 0..attempts {
            let (peer, set_cookie) = match &service.balancer {
                Some(balancer) => {
                    let pick = balancer.pick(hash, &tried).ok_or(GatewayError::NO_PEER)?;
                    (Some(pick.peer), pick.set_cookie)
                }
                None => (None, None),
            };
            let (addr, peer_host, peer_port): (SocketAddr, Cow<'_, str>, u16) = match &peer {
                Some(p) => (p.addr, Cow::Owned(p.host.to_string()), p.port),
                None => {
                    let addr = self
                        .dns
                        .resolve(&svc.host, svc.port, &tried)
                        .await
                        .map_err(|_| GatewayError::NAME_RESOLUTION)?;
                    (addr, Cow::Borrowed(svc.host.as_str()), svc.port)
                }
            };
            tried.push(addr);
            // Host header: the client's (preserve_host), the upstream's host_header, or the
            // target's name with a non-default port.
            let host_value = if host_override.is_some() {
                host_override.clone()
            } else if route.preserve_host {
                original_host.clone()
            } else if peer.is_none() {
                HeaderValue::from_str(&service.direct_host).ok()
            } else {
                let upstream_host = service
                    .balancer
                    .as_ref()
                    .and_then(|b| b.upstream().host_header.clone());
                let h = upstream_host
                    .unwrap_or_else(|| host_with_port(&peer_host, peer_port, svc.protocol));
                HeaderValue::from_str(&h).ok()
            };
            match host_value {
                Some(v) => req.headers_mut().insert(header::HOST, v),
                None => req.headers_mut().remove(header::HOST),
            };

            let started = Instant::now();
            let sni = if let Some(h) = host_override.as_ref().and_then(|h| h.to_str().ok()) {
                strip_port(h)
            } else if route.preserve_host {
                original_host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .map(strip_port)
                    .unwrap_or(&peer_host)
            } else {
                strip_port(&peer_host)
            };
            let result = self
                .attempt(
                    service,
                    addr,
                    sni,
                    req,
                    &mut body_done,
                    upgrade,
                    connect_timeout,
                    write_timeout,
                    read_timeout,
                )
                .await;
            access_log::note(|n| n.upstream_addr(addr));
            if let Some(tl) = timeline.as_deref_mut() {
                tl.attempts.push(AttemptSpan {
                    addr,
                    host: peer_host.to_string(),
                    start: started,
                    end: Instant::now(),
                    status: result.as_ref().ok().map(|r| r.status().as_u16()),
                    error: result.as_ref().err().map(|e| e.detail.clone()),
                });
            }
            match result {
                Ok(mut resp) => {
                    if let (Some(b), Some(p)) = (&service.balancer, &peer) {
                        b.report(p, Outcome::Status(resp.status().as_u16()));
                    }
                    resp.body_mut().hold_peer(peer);
                    return Ok((resp, started, set_cookie));
                }
                Err(e) => {
                    tracing::debug!(
                        %addr, attempt, error = %e.detail, "upstream attempt failed"
                    );
                    if let (Some(b), Some(p)) = (&service.balancer, &peer) {
                        report_failure(b, p, &e.outcome);
                    }
                    last = e.error;
                    match e.unsent {
                        Some(r) => req = r,
                        None => {
                            tracing::warn!(%addr, error = %e.detail, "upstream request failed");
                            return Err(e.error);
                        }
                    }
                }
            }
        }
        tracing::warn!(service = %svc.id, tries = tried.len(), "upstream unreachable after retries");
        Err(last)
    }

    /// One attempt against one address. A stale pooled connection is replaced by a fresh one
    /// without spending an attempt.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        service: &ServiceRuntime,
        addr: SocketAddr,
        sni: &str,
        mut req: Request<UpstreamReqBody>,
        body_done: &mut Option<oneshot::Receiver<()>>,
        upgrade: bool,
        connect_timeout: Duration,
        write_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let tls = service.tls.as_deref();
        let key = PoolKey {
            addr,
            tls: tls.map(|t| (Arc::from(sni), Arc::as_ptr(&t.config) as usize)),
        };
        if service.service.protocol.is_grpc() {
            let timeouts = (connect_timeout, write_timeout, read_timeout);
            // Boxed, as is `connect` below: neither is on the path of a request sent on a
            // pooled HTTP/1 connection, and inline they would make every request's future (and
            // each move of it) a third larger.
            return Box::pin(self.attempt_h2(service, key, sni, req, body_done, timeouts)).await;
        }
        let mut pooled = if upgrade {
            None
        } else {
            self.pool.checkout(&key).await
        };
        loop {
            let from_pool = pooled.is_some();
            let mut sender: Sender = match pooled.take() {
                Some(s) => s,
                None => {
                    let connect =
                        pool::connect(addr, tls.map(|t| (t, sni)), connect_timeout, write_timeout);
                    match Box::pin(connect).await {
                        Ok(s) => s,
                        Err(e) => return Err(connect_failure(e, req)),
                    }
                }
            };
            // A keep-alive connection may have been closed by the upstream just as we reused
            // it; a bodiless request is then replayed on a fresh connection.
            let replay = from_pool.then(|| clone_in_memory(&req)).flatten();
            let sent =
                head_with_timeout(sender.try_send_request(req), body_done, read_timeout).await;
            let resp = match sent {
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => {
                    let unsent = e.take_message();
                    let err = e.into_error();
                    let detail = err.to_string();
                    if client_body_failed(&err) {
                        return Err(bad_request(detail));
                    }
                    match (unsent, replay) {
                        (Some(back), _) if from_pool => {
                            req = back;
                            continue;
                        }
                        (None, Some(again)) => {
                            req = again;
                            continue;
                        }
                        (unsent, _) => return Err(send_failed(&err, unsent, detail)),
                    }
                }
                Err(_) => return Err(no_response(addr, read_timeout)),
            };
            let checkin = (!upgrade).then(|| Checkin {
                pool: Arc::clone(&self.pool),
                key: key.clone(),
                sender,
            });
            let (parts, body) = resp.into_parts();
            return Ok(Response::from_parts(
                parts,
                UpstreamBody::new(body, read_timeout, checkin),
            ));
        }
    }

    /// One attempt over HTTP/2 (grpc/grpcs services). The request goes out on a shared pooled
    /// connection as an absolute URI (`:scheme`, `:authority` from the Host chosen for this
    /// attempt, `:path`). A request that a closing connection (GOAWAY, reset) hands back unsent
    /// is sent again on a fresh connection without spending an attempt.
    async fn attempt_h2(
        &self,
        service: &ServiceRuntime,
        key: PoolKey,
        sni: &str,
        mut req: Request<UpstreamReqBody>,
        body_done: &mut Option<oneshot::Receiver<()>>,
        (connect_timeout, write_timeout, read_timeout): (Duration, Duration, Duration),
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let tls = service.tls.as_deref();
        let addr = key.addr;
        if let Err(e) = h2_uri(&mut req, tls.is_some(), addr) {
            return Err(AttemptError {
                error: GatewayError::BAD_REQUEST,
                unsent: None,
                outcome: Outcome::Status(400),
                detail: e,
            });
        }
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only {
                None
            } else {
                self.h2.checkout(&key)
            };
            let from_pool = pooled.is_some();
            let checkout = match pooled {
                Some(c) => c,
                None => {
                    match h2::connect(addr, tls.map(|t| (t, sni)), connect_timeout, write_timeout)
                        .await
                    {
                        Ok(sender) => self.h2.add(&key, sender),
                        Err(e) => return Err(connect_failure(e, req)),
                    }
                }
            };
            let h2::Checkout {
                mut sender,
                guard,
                conn_id,
            } = checkout;
            let replay = from_pool.then(|| clone_in_memory(&req)).flatten();
            let sent =
                head_with_timeout(sender.try_send_request(req), body_done, read_timeout).await;
            let resp = match sent {
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => {
                    let unsent = e.take_message();
                    let err = e.into_error();
                    let detail = err.to_string();
                    if client_body_failed(&err) {
                        return Err(bad_request(detail));
                    }
                    // The connection failed or is going away: hand it out no more.
                    self.h2.evict(&key, conn_id);
                    match (unsent, replay) {
                        (Some(back), _) if from_pool => {
                            tracing::debug!(%addr, error = %detail, "pooled HTTP/2 connection unusable, retrying on a new one");
                            req = back;
                            fresh_only = true;
                            continue;
                        }
                        (None, Some(again)) => {
                            req = again;
                            fresh_only = true;
                            continue;
                        }
                        (unsent, _) => return Err(send_failed(&err, unsent, detail)),
                    }
                }
                Err(_) => return Err(no_response(addr, read_timeout)),
            };
            let (parts, body) = resp.into_parts();
            return Ok(Response::from_parts(
                parts,
                UpstreamBody::h2(body, read_timeout, guard),
            ));
        }
    }
}

/// Wait for the response head; the read timeout starts once the request body was sent.
async fn head_with_timeout<F: std::future::Future>(
    fut: F,
    body_done: &mut Option<oneshot::Receiver<()>>,
    read_timeout: Duration,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::pin!(fut);
    if let Some(rx) = body_done.as_mut() {
        tokio::select! {
            biased;
            out = &mut fut => return Ok(out),
            _ = rx => {}
        }
        *body_done = None;
    }
    tokio::time::timeout(read_timeout, fut).await
}

/// Whether an I/O timeout (our write timeout) is somewhere in the error's causes.
fn caused_by_timeout(err: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether a send failed because the client's own body failed (e.g. a bad chunk size): a
/// client error, not the upstream's fault, and never retried.
fn client_body_failed(err: &hyper::Error) -> bool {
    err.is_user()
        && std::error::Error::source(err)
            .is_some_and(|s| s.downcast_ref::<hyper::Error>().is_some())
}

/// The attempt's answer to a client body that failed (400).
fn bad_request(detail: String) -> AttemptError {
    AttemptError {
        error: GatewayError::BAD_REQUEST,
        unsent: None,
        outcome: Outcome::Status(400),
        detail,
    }
}

/// The request could not be sent (or its response head read): a stalled write (nginx's
/// `proxy_send_timeout`) is a timeout (504), anything else a bad gateway (502).
fn send_failed(
    err: &hyper::Error,
    unsent: Option<Request<UpstreamReqBody>>,
    detail: String,
) -> AttemptError {
    let (error, outcome) = if caused_by_timeout(err) {
        (GatewayError::TIMEOUT, Outcome::Timeout)
    } else {
        (GatewayError::BAD_GATEWAY, Outcome::TcpFailure)
    };
    AttemptError {
        error,
        unsent,
        outcome,
        detail,
    }
}

/// No response head within the service's read timeout (504).
fn no_response(addr: SocketAddr, read_timeout: Duration) -> AttemptError {
    AttemptError {
        error: GatewayError::TIMEOUT,
        unsent: None,
        outcome: Outcome::Timeout,
        detail: format!("no response from {addr} within {read_timeout:?}"),
    }
}

/// A copy of a request whose body is empty or in memory (`None` for a streamed body, which
/// cannot be sent twice).
fn clone_in_memory(req: &Request<UpstreamReqBody>) -> Option<Request<UpstreamReqBody>> {
    let body = match req.body() {
        UpstreamReqBody::Empty => UpstreamReqBody::Empty,
        UpstreamReqBody::Full(b) => UpstreamReqBody::Full(b.clone()),
        UpstreamReqBody::Stream { .. } => return None,
    };
    let mut r = Request::new(body);
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    Some(r)
}

fn connect_failure(e: ConnectError, req: Request<UpstreamReqBody>) -> AttemptError {
    let (error, outcome) = match e {
        ConnectError::Timeout(_) => (GatewayError::TIMEOUT, Outcome::Timeout),
        _ => (GatewayError::BAD_GATEWAY, Outcome::TcpFailure),
    };
    AttemptError {
        error,
        unsent: Some(req),
        outcome,
        detail: e.to_string(),
    }
}

fn report_failure(balancer: &crate::balancer::Balancer, peer: &Peer, outcome: &Outcome) {
    let outcome = match outcome {
        Outcome::Status(s) => Outcome::Status(*s),
        Outcome::TcpFailure => Outcome::TcpFailure,
        Outcome::Timeout => Outcome::Timeout,
    };
    balancer.report(peer, outcome);
}

/// Make the request's URI absolute for HTTP/2 (`:scheme`, `:authority`, `:path`): the
/// authority is the Host header chosen for this attempt (removed: HTTP/2 carries it as
/// `:authority`), else the peer address.
fn h2_uri(req: &mut Request<UpstreamReqBody>, tls: bool, addr: SocketAddr) -> Result<(), String> {
    let authority = match req.headers_mut().remove(header::HOST) {
        Some(h) => http::uri::Authority::try_from(h.as_bytes())
            .map_err(|e| format!("Host {h:?} is not a valid :authority: {e}"))?,
        None => {
            http::uri::Authority::try_from(addr.to_string().as_str()).map_err(|e| e.to_string())?
        }
    };
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.scheme = Some(if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(uri).map_err(|e| e.to_string())?;
    Ok(())
}

/// Whether a `TE` header lists `trailers`.
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Kong's checks on a route whose protocols are grpc/grpcs (runloop access phase): a non-gRPC
/// request gets `415 Non-gRPC request matched gRPC route`, a gRPC request over HTTP/1.x
/// `426 Please use HTTP2 protocol`, and a cleartext gRPC request on a grpcs-only route
/// `grpc-status: 1` (`gRPC request matched gRPCs route`).
fn grpc_route_mismatch(
    route: &Route,
    parts: &Parts,
    tls: bool,
    request_id: &str,
) -> Option<Response<ProxyBody>> {
    let grpc = route.protocols.contains(&Protocol::Grpc);
    if !grpc && !route.protocols.contains(&Protocol::Grpcs) {
        return None;
    }
    let accept = parts.headers.get(header::ACCEPT);
    let grpc_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc_type {
        return Some(respond::error_with(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Non-gRPC request matched gRPC route",
            request_id,
            accept,
        ));
    }
    if parts.version != Version::HTTP_2 {
        let mut resp = respond::error_with(
            StatusCode::UPGRADE_REQUIRED,
            "Please use HTTP2 protocol",
            request_id,
            accept,
        );
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("HTTP/2"));
        return Some(resp);
    }
    if !grpc && !tls {
        return Some(respond::grpc_status(1, "gRPC request matched gRPCs route"));
    }
    None
}

/// 426 (or a redirect) for plain-HTTP requests on an https-only route.
fn https_required(route: &Route, host: Option<&str>, uri: &Uri) -> Response<ProxyBody> {
    let code = route.https_redirect_status_code;
    if code == 426 {
        let mut resp = respond::message(StatusCode::UPGRADE_REQUIRED, "Please use HTTPS protocol");
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        return resp;
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{}{}", host.map(strip_port).unwrap_or(""), path);
    let mut resp = respond::message(status, "Moved Permanently");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `host:port` -> `host`, aware of bracketed IPv6.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn host_with_port(host: &str, port: u16, protocol: Protocol) -> String {
    let default = match protocol {
        Protocol::Https | Protocol::Grpcs => 443,
        _ => 80,
    };
    let bracketed = host.contains(':') && !host.starts_with('[');
    match (port == default, bracketed) {
        (true, false) => host.to_owned(),
        (true, true) => format!("[{host}]"),
        (false, false) => format!("{host}:{port}"),
        (false, true) => format!("[{host}]:{port}"),
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket).
fn is_upgrade(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Remove hop-by-hop headers (RFC 9110 §7.6.1) and those the Connection header names. For an
/// upgrade, `Upgrade` and `Connection: upgrade` are kept.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Only what is present is removed (a removal costs a hash lookup): one pass over the names,
    // then the names `Connection` lists that the map holds. Upstream responses usually carry
    // `Connection: keep-alive` and nothing else of these; requests usually none.
    let mut remove: smallvec::SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n) && !(upgrade && *n == header::UPGRADE))
        .cloned()
        .collect();
    if !remove.is_empty() {
        for token in headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            if upgrade && token.eq_ignore_ascii_case("upgrade") {
                continue;
            }
            if headers.contains_key(token)
                && let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            {
                remove.push(name);
            }
        }
        for name in remove {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The headers [`strip_hop_by_hop`] removes whatever `Connection` says.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let joined = format!("{prev}, {}", via.to_str().unwrap_or_default());
            set(headers, &header::VIA, &joined);
        }
        _ => {
            headers.insert(header::VIA, via.clone());
        }
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

fn millis(d: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Kong's request id: 32 hex characters.
fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u128>();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> ((31 - i) * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(&buf).unwrap_or_default().to_owned()
}

/// An IP address as a header value, without the formatting machinery for the common IPv4 case.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static(""))
}

/// Bridge an upgraded client connection and an upgraded upstream connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Whether the service's balancer hashes on a header or a cookie (primary or fallback).
fn hashes_on_headers(service: &ServiceRuntime) -> bool {
    service.balancer.as_ref().is_some_and(|b| {
        let u = b.upstream();
        [u.hash_on, u.hash_fallback]
            .iter()
            .any(|h| matches!(h, HashOn::Header | HashOn::Cookie))
    })
}

/// Consistent-hashing inputs taken lazily from the request.
struct RequestHash<'a> {
    parts: &'a Parts,
    client_ip: IpAddr,
    path: &'a str,
    captures: &'a UriCaptures,
}

impl HashSource for RequestHash<'_> {
    fn value(&self, on: HashOn, name: Option<&str>) -> Option<Cow<'_, str>> {
        match on {
            HashOn::None | HashOn::Consumer => None,
            HashOn::Ip => Some(Cow::Owned(self.client_ip.to_string())),
            HashOn::Path => Some(Cow::Borrowed(self.path)),
            HashOn::Header => {
                let name = name?;
                let values: Vec<&str> = self
                    .parts
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                match values.len() {
                    0 => None,
                    1 => Some(Cow::Borrowed(values[0])),
                    _ => Some(Cow::Owned(values.join(","))),
                }
            }
            HashOn::Cookie => {
                let name = name?;
                self.parts
                    .headers
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| Cow::Borrowed(v))
            }
            HashOn::QueryArg => {
                let name = name?;
                self.parts
                    .uri
                    .query()?
                    .split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| Cow::Borrowed(v))
            }
            HashOn::UriCapture => {
                let name = name?;
                self.captures
                    .named
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Cow::Borrowed(v.as_str()))
                    .or_else(|| {
                        let i: usize = name.parse().ok()?;
                        self.captures
                            .positional
                            .get(i)?
                            .as_deref()
                            .map(Cow::Borrowed)
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.com:8000"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn host_header_omits_default_ports() {
        assert_eq!(host_with_port("a", 80, Protocol::Http), "a");
        assert_eq!(host_with_port("a", 8080, Protocol::Http), "a:8080");
        assert_eq!(host_with_port("a", 443, Protocol::Https), "a");
        assert_eq!(host_with_port("::1", 81, Protocol::Http), "[::1]:81");
    }

    #[test]
    fn hop_by_hop_removed_and_connection_listed_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn an_empty_query_string_is_seen() {
        // Kong re-appends an empty `?`; `Uri::query` reports it as `Some("")`.
        let uri: Uri = "/a?".parse().unwrap();
        assert_eq!(uri.query(), Some(""));
        let uri: Uri = "/a".parse().unwrap();
        assert_eq!(uri.query(), None);
    }

    #[test]
    fn request_ids_are_32_hex() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn ip_values_match_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "10.200.3.45",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(addr), addr.to_string().as_str(), "{ip}");
        }
    }

    #[test]
    fn hop_by_hop_fast_path_keeps_everything_else() {
        let mut h = HeaderMap::new();
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.len(), 3);
        // An upgrade keeps `Upgrade` and rewrites `Connection`.
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert!(!h.contains_key(header::TE));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }
}
