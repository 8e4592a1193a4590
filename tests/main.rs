//! Integration tests of `gwctl serve`'s data plane, through real sockets (one test binary).
// Test code may unwrap, expect and panic (clippy.toml allows it inside #[test]; this covers the harness).
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[macro_use]
mod support;

// kong-compat §2.5: upstream path joining, every row of the table, plus §2.1 normalization.
mod proxy_paths;
// kong-compat §2.1/§2.2: route matching and priority (worked examples, hosts, methods, headers).
mod routing;
// kong-compat §2.6: headers sent upstream and added to responses; hop-by-hop removal.
mod headers;
// kong-compat §2.3/§3.4/§3.5/§4.13: gateway-made error responses (404/426/301/502/503/504).
mod errors;
// kong-compat §3.1/§3.2/§3.5: weighted round-robin, weight 0, consistent hashing, retries.
mod balancing;
// kong-compat §3.3/§3.4: active and passive health checks, all targets down.
mod health;
// HTTP/2 cleartext, TLS listener with ALPN, HTTPS upstreams with and without verification.
mod protocols;
// issue 8: grpc/grpcs services over HTTP/2, every streaming kind, gRPC-form gateway errors.
mod grpc;
// Large uploads/downloads with bounded memory, Expect: 100-continue, chunked vs content-length.
mod streaming;
// WebSocket upgrade tunnelled through the proxy.
mod websocket;
// Graceful drain on SIGTERM with the real binary; status API readiness.
mod lifecycle;
// Client garbage: 400/431, never 5xx, the gateway keeps serving.
mod malformed;
// Upstream connect and write timeouts.
mod timeouts;
// The CLI contract: --version, health, serve with a bad config, exit codes.
mod cli;
// `gwctl up`: the sample system from the real binaries.
mod up;
// `gwctl migrate up|status` against a real Postgres: idempotence, concurrency, newer schema.
mod migrate;
// Postgres mode: two nodes on one database, lost notifications, a database outage under load.
mod cluster;
// kong-compat §1/§9: the Admin API (CRUD, errors, paging, filters, /config) on both stores.
mod admin_api;
// kong-compat §1: a real Kong Admin API client (aio-kong) does CRUD on every entity kind.
mod kong_client;
// kong-compat §4: the plugin framework and every plugin, through real sockets.
mod plugins;
// `gwctl clean` against podman's Docker API: labelled volumes, in-use volumes, bind directories.
mod clean;
// `gwctl setup obs` against an OpenObserve stand-in; the compose collector config.
mod setup_obs;
// `gwctl register` inside test-made network namespaces (address choice, registration over a veth,
// exec mode with signals) and against an in-process gateway.
mod register;
// `gwctl setup kong`: convergence on both stores, the CLI, and the Kong dialect (recorded Kong 3.9).
mod setup_kong;
// issue 5 §3/§4: gwctl's request-scoped log lines, the JSON access log, svc-telemetry.
mod telemetry;
// issue 7 §5: the sample stack as processes on Postgres, rotel as the collector, newman runs the
// Postman collection, one trace spans gateway and service.
mod smoke;
// issue 7 §2: compose/*.yml through the Docker Compose CLI's `config` (base and real-Kong override).
mod compose;
// issue 8 §2-§4: grpc-gateway transcoding and reflection discovery against a tonic server.
mod grpc_gateway;
