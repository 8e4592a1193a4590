//! What the plugin chain of the proxy benchmark's plugin scenario adds to one request, timed
//! request by request in-process: jwt (HS256) + jwt-claim-headers + rate-limiting (local, high
//! limit), on the same route as `BENCH_PLUGINS=1 bash bench/proxy-vs-nginx.sh`.
//!
//! Each sample is the work the proxy does for a request because the route has a chain, and only
//! that: the context (`Ctx::new`), the access phase, the request headers handed back for the
//! upstream (`Chain::upstream_headers`, as the proxy does), and the response phases
//! (`Chain::respond`: the rate-limit headers), then dropping it all. A load generator's p99 is mostly queueing (it moves with throughput); this p99 is
//! the chain's own. Prints p50, p90, p99, p99.9 and max over `CHAIN_SAMPLES` requests (default
//! 200,000) after a warm-up. Goal (issue 4): the chain adds < 50 µs at p99.

#![allow(clippy::expect_used)] // a benchmark: a broken setup should stop it loudly
#![allow(clippy::print_stdout)] // its report is its output

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use gwctl::balancer::BalancerRegistry;
use gwctl::plugins::{Ctx, LogInfo, Registry, RequestBody, Routed, Source};
use gwctl::proxy::ConnInfo;
use gwctl::proxy::body::ProxyBody;
use gwctl::router::UriCaptures;
use gwctl::snapshot::SnapshotStore;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};

/// The scenario's HS256 secret (as in bench/plugin-scenario.yml).
const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

/// The benchmark's service and route, as bench/proxy-vs-nginx.sh writes them, then the plugin
/// scenario that script appends.
fn config() -> String {
    let route = "_format_version: \"3.0\"\nservices:\n  - name: bench-upstream\n    \
                 url: http://127.0.0.1:18080\n    routes:\n      - name: bench-all\n        \
                 paths: [\"/\"]\n";
    format!("{route}{}", include_str!("../bench/plugin-scenario.yml"))
}

fn main() {
    let samples: usize = std::env::var("CHAIN_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Arc::new(Registry::builtin());
    let store =
        SnapshotStore::new(BalancerRegistry::new(), Arc::clone(&registry)).expect("snapshot store");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let config =
        gwctl::declarative::parse_with(&config(), &*registry, now_ms).expect("bench config");
    rt.block_on(store.publish(config, "bench".into()))
        .expect("publish");
    let snapshot = store.load();
    let route = Arc::new(snapshot.config.routes[0].clone());
    let service = Arc::clone(snapshot.services.values().next().expect("service"));
    let chain = Arc::clone(snapshot.plugins.chain(route.id).expect("the route's chain"));

    let exp = now_ms / 1000 + 86_400;
    let token = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"iss": "bench-issuer", "sub": "bench-user", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("HS256 key"),
    )
    .expect("token");
    let authorization = format!("Bearer {token}");
    let conn = ConnInfo {
        peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000)),
        local: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
        tls: false,
    };

    // One request through the chain; `None` if a plugin answered (a broken setup).
    let one = |start: Instant| -> Option<Response<ProxyBody>> {
        let (mut parts, ()) = Request::get("/")
            .header("host", "127.0.0.1:8000")
            .header("user-agent", "wrk")
            .header("authorization", authorization.as_str())
            .body(())
            .expect("request")
            .into_parts();
        let routed = Routed {
            snapshot: Arc::clone(&snapshot),
            route: Arc::clone(&route),
            service: Arc::clone(&service),
            conn,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            request_id: Arc::from("0123456789abcdef0123456789abcdef"),
            grpc: false,
            started: start,
            path: "/".to_owned(),
            captures: UriCaptures::default(),
        };
        let mut ctx = Box::new(Ctx::new(routed, &mut parts, RequestBody::Empty));
        if rt.block_on(chain.access(&mut ctx)).is_some() {
            return None;
        }
        parts.headers = chain.upstream_headers(&mut ctx);
        black_box(&parts);
        let upstream = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .header("content-length", "30")
            .body(ProxyBody::Full(Some(bytes::Bytes::from_static(
                b"ok from the benchmark upstream",
            ))))
            .expect("response");
        Some(chain.respond(ctx, upstream, Source::Upstream, LogInfo::pending()))
    };

    // The chain must do its work: the claim header upstream, the rate-limit headers back.
    let check = one(Instant::now()).expect("the chain rejected the benchmark's request");
    assert!(
        check.headers().contains_key("ratelimit-remaining"),
        "no rate-limit headers: {:?}",
        check.headers()
    );

    for _ in 0..samples / 10 {
        black_box(one(Instant::now()));
    }
    let mut ns: Vec<u64> = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let resp = one(start);
        drop(black_box(resp));
        ns.push(start.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
    println!(
        "plugin chain (jwt HS256 + jwt-claim-headers + rate-limiting local), {samples} requests: \
         mean {mean:.2} µs, p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs \
         (goal: p99 < 50 µs)",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}
