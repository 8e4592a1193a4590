//! gRPC proxying (issue 8 part 1): grpc/grpcs services over HTTP/2 (h2c and TLS), every
//! streaming kind, statuses/details/trailing metadata passed through, Kong's route checks and
//! gateway-made errors in gRPC form, reconnecting after the upstream went away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::support::grpc::{
    self, EchoRequest, FAIL_REASON_KEY, FailRequest, GrpcUpstream, SENT_KEY, SERVICE_NAME,
    StreamRequest,
};
use crate::support::{Gateway, TempDir, refused_addr, tls};

const PREFIX: &str = "/gwctl.fixture.v1.Fixture/";
const STEP: Duration = Duration::from_secs(5);

/// One grpc service (`url`) with one grpc route for the fixture's methods.
fn config(url: &str, service_extra: &str, top: &str) -> String {
    format!(
        "_format_version: \"3.0\"\n{top}services:\n  - name: fixture\n    url: {url}\n{service_extra}    routes:\n      - name: fixture\n        protocols: [grpc, grpcs]\n        paths: [\"{PREFIX}\"]\n        strip_path: false\n"
    )
}

fn echo(message: &str, seq: i32) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        seq,
    }
}

/// Unary, server, client and bidi streaming through `gw` to `up`; `plugins` says whether the
/// correlation-id plugin (a chain with body and log phases) is on.
async fn every_kind(gw: &Gateway, up: &GrpcUpstream, plugins: bool) {
    let mut c = grpc::client(gw.proxy_addr()).await;

    // Unary: what the upstream saw, and the gateway's response headers.
    let resp = c.unary(echo("hello", 7)).await.expect("unary");
    let meta = resp.metadata().clone();
    let r = resp.into_inner();
    assert_eq!((r.message.as_str(), r.seq), ("hello", 7));
    assert_eq!(r.path, format!("{PREFIX}Unary"));
    assert_eq!(r.authority, up.addr.to_string(), "the target's host:port");
    assert_eq!(r.metadata["x-forwarded-for"], "127.0.0.1");
    assert_eq!(r.metadata["x-real-ip"], "127.0.0.1");
    assert_eq!(r.metadata["x-forwarded-proto"], "http");
    assert_eq!(r.metadata["via"], "2 kong/3.9.0");
    assert_eq!(
        r.metadata["te"], "trailers",
        "the client asked for trailers"
    );
    assert_eq!(r.metadata["x-kong-request-id"].len(), 32);
    assert!(
        !r.metadata.contains_key("host"),
        "HTTP/2 carries the host as :authority"
    );
    assert!(meta.get("x-kong-upstream-latency").is_some(), "{meta:?}");
    assert!(meta.get("x-kong-request-id").is_some());
    if plugins {
        let id = &r.metadata["kong-request-id"];
        assert!(
            id.len() > 36 && id.as_bytes()[36] == b'#',
            "uuid#counter: {id}"
        );
        assert_eq!(
            meta.get("kong-request-id").and_then(|v| v.to_str().ok()),
            Some(r.metadata["kong-request-id"].as_str()),
            "echo_downstream"
        );
    }

    // Server streaming.
    let mut stream = c
        .server_stream(StreamRequest {
            message: "s".into(),
            count: 5,
            interval_ms: 0,
            fail_with: 0,
        })
        .await
        .expect("server stream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.message().await.expect("server stream item") {
        got.push(item.message);
    }
    assert_eq!(got, ["s-0", "s-1", "s-2", "s-3", "s-4"]);

    // Client streaming.
    let outbound = tokio_stream::iter((0..4).map(|i| echo(&format!("c{i}"), i)));
    let r = c
        .client_stream(outbound)
        .await
        .expect("client stream")
        .into_inner();
    assert_eq!((r.message.as_str(), r.seq), ("c0,c1,c2,c3", 4));

    // Bidi, all sent at once.
    let outbound = tokio_stream::iter((0..3).map(|i| echo(&format!("b{i}"), i)));
    let replies: Vec<_> = c
        .bidi(outbound)
        .await
        .expect("bidi")
        .into_inner()
        .map(|r| r.expect("bidi item").message)
        .collect()
        .await;
    assert_eq!(replies, ["echo:b0", "echo:b1", "echo:b2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_every_streaming_kind_over_h2c() {
    let up = GrpcUpstream::start().await;
    let gw = Gateway::start(&config(&up.url(), "", "")).await;
    every_kind(&gw, &up, false).await;
    gw.stop().await;

    // The same through a plugin chain (header, body and log phases on the stream).
    let top = "plugins:\n  - name: correlation-id\n    config:\n      echo_downstream: true\n";
    let gw = Gateway::start(&config(&up.url(), "", top)).await;
    every_kind(&gw, &up, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bidi_streams_interleave() {
    let up = GrpcUpstream::start().await;
    let gw = Gateway::start(&config(&up.url(), "", "")).await;
    let mut c = grpc::client(gw.proxy_addr()).await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(echo("m0", 0)).await.expect("send");
    let mut inbound = c
        .bidi(ReceiverStream::new(rx))
        .await
        .expect("bidi")
        .into_inner();
    // Send one, receive its answer, repeat: the request stream stays open throughout, so a
    // gateway that waited for the end of the request body would stall here.
    for i in 0..10 {
        let reply = tokio::time::timeout(STEP, inbound.message())
            .await
            .unwrap_or_else(|_| panic!("no reply to message {i} while the request is open"))
            .expect("bidi item")
            .expect("stream open");
        assert_eq!((reply.message, reply.seq), (format!("echo:m{i}"), i));
        if i < 9 {
            tx.send(echo(&format!("m{}", i + 1), i + 1))
                .await
                .expect("send");
        }
    }
    drop(tx);
    let end = tokio::time::timeout(STEP, inbound.message())
        .await
        .expect("stream ends");
    assert!(
        matches!(end, Ok(None)),
        "clean end with grpc-status 0: {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_details_and_trailing_metadata_pass_through() {
    let up = GrpcUpstream::start().await;
    let gw = Gateway::start(&config(&up.url(), "", "")).await;
    let mut c = grpc::client(gw.proxy_addr()).await;

    for (code, message) in [
        (Code::NotFound, "no such thing"),
        (Code::PermissionDenied, "nope"),
        (Code::ResourceExhausted, "slow down"),
        (Code::Internal, "100% kaputt: ü"),
    ] {
        let err = c
            .fail(FailRequest {
                code: code as i32,
                message: message.into(),
            })
            .await
            .expect_err("Fail fails");
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(err.message(), message);
        assert_eq!(
            err.metadata()
                .get(FAIL_REASON_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("requested")
        );
        let details = err.get_error_details();
        let bad = details
            .bad_request()
            .expect("google.rpc.BadRequest details");
        assert_eq!(bad.field_violations[0].field, "code");
    }

    // A stream that fails after three messages: the status comes in real trailers.
    let mut stream = c
        .server_stream(StreamRequest {
            message: "t".into(),
            count: 3,
            interval_ms: 0,
            fail_with: Code::Aborted as i32,
        })
        .await
        .expect("stream starts")
        .into_inner();
    for i in 0..3 {
        let item = stream.message().await.expect("item").expect("open");
        assert_eq!(item.seq, i);
    }
    let err = stream.message().await.expect_err("ends with the status");
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.message(), "stream failed as requested");
    assert_eq!(
        err.metadata().get(SENT_KEY).and_then(|v| v.to_str().ok()),
        Some("3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_upstream_and_grpcs_route_over_tls() {
    // Kong allows tls_verify/ca_certificates on https services only: a grpcs upstream is
    // reached over TLS (ALPN h2) without verification.
    let (up, _ca) = GrpcUpstream::start_tls(&["localhost", "127.0.0.1"]).await;
    let url = format!("grpcs://{}", up.addr);
    // The gateway's own TLS listener (ALPN h2) for the grpcs route.
    let (gw_ca, gw_cert, gw_key) = tls::ca_signed(&["gw.test"]);
    let dir = TempDir::new();
    let cert_path = dir.write("cert.pem", &gw_cert);
    let key_path = dir.write("key.pem", &gw_key);
    let yaml = config(&url, "", "").replace("protocols: [grpc, grpcs]", "protocols: [grpcs]");
    let gw = Gateway::start_with(&yaml, |o| {
        o.proxy_tls_listen = vec!["127.0.0.1:0".into()];
        o.tls_cert = Some(cert_path);
        o.tls_key = Some(key_path);
    })
    .await;

    let mut c = grpc::tls_client(gw.bound.proxy_tls[0], "gw.test", &gw_ca).await;
    let r = c
        .unary(echo("secure", 1))
        .await
        .expect("unary over TLS")
        .into_inner();
    assert_eq!(r.message, "secure");
    assert_eq!(r.metadata["x-forwarded-proto"], "https");
    let mut stream = c
        .server_stream(StreamRequest {
            message: "x".into(),
            count: 3,
            interval_ms: 0,
            fail_with: 0,
        })
        .await
        .expect("server stream")
        .into_inner();
    let mut n = 0;
    while stream.message().await.expect("item").is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    let outbound = tokio_stream::iter((0..3).map(|i| echo("b", i)));
    let replies: Vec<_> = c
        .bidi(outbound)
        .await
        .expect("bidi over TLS")
        .into_inner()
        .collect()
        .await;
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");

    // Cleartext gRPC on the grpcs-only route: Kong's grpc-status 1.
    let mut plain = grpc::client(gw.proxy_addr()).await;
    let err = plain.unary(echo("x", 0)).await.expect_err("grpcs only");
    assert_eq!(err.code(), Code::Cancelled);
    assert_eq!(err.message(), "gRPC request matched gRPCs route");
    gw.stop().await;

    // A grpcs service pointing at a cleartext server: the handshake fails, 502 in gRPC form.
    let plain_up = GrpcUpstream::start().await;
    let url = format!("grpcs://{}", plain_up.addr);
    let gw = Gateway::start(&config(&url, "    retries: 0\n", "")).await;
    let mut c = grpc::client(gw.proxy_addr()).await;
    let err = c.unary(echo("x", 0)).await.expect_err("no TLS upstream");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(
        err.message(),
        "An invalid response was received from the upstream server"
    );
}

/// A TCP listener that accepts and never answers (an upstream that hangs).
async fn silent() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (addr, task)
}

fn with_case<T>(msg: T, case: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-case", MetadataValue::try_from(case).expect("ascii"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gateway_errors_answer_as_grpc_statuses() {
    let up = GrpcUpstream::start().await;
    let refused = refused_addr();
    let (hang, _hang_task) = silent().await;
    let route = |name: &str, case: &str| {
        format!(
            "      - name: {name}\n        protocols: [grpc]\n        paths: [\"{PREFIX}\"]\n        headers: {{x-case: [{case}]}}\n        strip_path: false\n"
        )
    };
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: empty.upstream
services:
  - name: ok
    url: {ok}
    routes:
{r_ok}{r_auth}{r_limit}
  - name: refused
    url: grpc://{refused}
    retries: 0
    routes:
{r_refused}
  - name: hang
    url: grpc://{hang}
    read_timeout: 300
    retries: 0
    routes:
{r_hang}
  - name: nopeer
    url: grpc://empty.upstream
    routes:
{r_nopeer}
plugins:
  - name: key-auth
    route: auth
  - name: rate-limiting
    route: limit
    config:
      minute: 1
      policy: local
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
"#,
        ok = up.url(),
        r_ok = route("plain", "ok"),
        r_auth = route("auth", "auth"),
        r_limit = route("limit", "limit"),
        r_refused = route("refused", "refused"),
        r_hang = route("hang", "hang"),
        r_nopeer = route("nopeer", "nopeer"),
    );
    let gw = Gateway::start(&yaml).await;
    let mut c = grpc::client(gw.proxy_addr()).await;

    let ok = c
        .unary(with_case(echo("fine", 1), "ok"))
        .await
        .expect("routed");
    assert_eq!(ok.into_inner().message, "fine");

    let cases = [
        ("nothing-matches", Code::NotFound, "NotFound"),
        (
            "refused",
            Code::Internal,
            "An invalid response was received from the upstream server",
        ),
        (
            "hang",
            Code::DeadlineExceeded,
            "The upstream server is timing out",
        ),
        ("nopeer", Code::Unavailable, "Unavailable"),
        ("auth", Code::Unauthenticated, "Unauthenticated"),
    ];
    for (case, code, message) in cases {
        let err = c
            .unary(with_case(echo("x", 0), case))
            .await
            .expect_err(case);
        assert_eq!((err.code(), err.message()), (code, message), "case {case}");
        assert!(err.metadata().get("x-kong-request-id").is_some(), "{case}");
    }
    // The same errors on streaming calls.
    let err = c
        .bidi(with_case(tokio_stream::iter(vec![echo("x", 0)]), "refused"))
        .await
        .expect_err("bidi to a refused upstream");
    assert_eq!(err.code(), Code::Internal);

    // key-auth lets a good key through; rate-limiting's second call is over the limit.
    let mut req = with_case(echo("k", 1), "auth");
    req.metadata_mut()
        .insert("apikey", MetadataValue::from_static("alice-key"));
    let r = c.unary(req).await.expect("authenticated").into_inner();
    assert_eq!(r.metadata["x-consumer-username"], "alice");
    c.unary(with_case(echo("1", 1), "limit"))
        .await
        .expect("first call within the limit");
    let err = c
        .unary(with_case(echo("2", 2), "limit"))
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted);

    // On the wire: a Trailers-Only response, 200 with grpc-status in the headers.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2
        .post(format!("{}{PREFIX}Unary", gw.proxy_url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-case", "nothing-matches")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "5");
    assert_eq!(resp.headers()["grpc-message"], "NotFound");
    assert!(
        resp.headers()["server"]
            .to_str()
            .unwrap()
            .starts_with("kong/")
    );
    assert!(resp.bytes().await.expect("body").is_empty());

    // Not gRPC on a gRPC route (Kong: 415), gRPC over HTTP/1.1 (Kong: 426); JSON for these.
    let h1 = crate::support::client();
    let resp = h1
        .post(format!("{}{PREFIX}Unary", gw.proxy_url()))
        .header("content-type", "application/json")
        .header("x-case", "ok")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 415);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["message"], "Non-gRPC request matched gRPC route");
    let resp = h1
        .post(format!("{}{PREFIX}Unary", gw.proxy_url()))
        .header("content-type", "application/grpc")
        .header("x-case", "ok")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["upgrade"], "HTTP/2");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["message"], "Please use HTTP2 protocol");
    // A non-gRPC HTTP/2 client still gets Kong's JSON errors.
    let resp = h2
        .get(format!("{}/nothing/here", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["message"], "no Route matched with those values");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_upstream_restart_and_concurrent_calls() {
    let up = GrpcUpstream::start().await;
    let addr = up.addr;
    let gw = Gateway::start(&config(&up.url(), "", "")).await;
    let c = grpc::client(gw.proxy_addr()).await;

    // Many concurrent calls share the pooled HTTP/2 connections.
    let mut calls = Vec::new();
    for i in 0..100 {
        let mut c = c.clone();
        calls.push(tokio::spawn(async move {
            c.unary(echo("p", i)).await.map(|r| r.into_inner().seq)
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.expect("task").expect("call"), i as i32);
    }

    // The upstream goes away (GOAWAY) and comes back on the same address: the pooled
    // connection is dropped and the next call connects anew.
    up.stop().await;
    let up = GrpcUpstream::start_on(grpc::Builder::new(), addr).await;
    let mut c = c.clone();
    let r = c.unary(echo("again", 1)).await.expect("after restart");
    assert_eq!(r.into_inner().message, "again");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_v1_and_v1alpha_through_the_gateway() {
    use tonic_reflection::pb::{v1, v1alpha};
    let up = GrpcUpstream::start().await;
    let yaml = config(&up.url(), "", "").replace(
        &format!("paths: [\"{PREFIX}\"]"),
        &format!("paths: [\"{PREFIX}\", \"/grpc.reflection.\"]"),
    );
    let gw = Gateway::start(&yaml).await;
    let channel = grpc::channel(gw.proxy_addr()).await;

    let mut v1c = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut inbound = v1c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1 reflection")
        .into_inner();
    let resp = inbound
        .message()
        .await
        .expect("v1 reply")
        .expect("one reply");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1 reply: {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE_NAME), "{names:?}");

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                SERVICE_NAME.into(),
            ),
        ),
    };
    let mut inbound = alpha
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let resp = inbound
        .message()
        .await
        .expect("v1alpha reply")
        .expect("one reply");
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(fd)) =
        resp.message_response
    else {
        panic!("unexpected v1alpha reply: {resp:?}");
    };
    assert!(!fd.file_descriptor_proto.is_empty());
}

/// `/upstreams/{u}/health`'s `health` of each target.
async fn target_health(
    api: &crate::support::admin::AdminApi,
    upstream: &str,
) -> Vec<(String, String)> {
    let body = api
        .get(&format!("/upstreams/{upstream}/health"))
        .await
        .expect(200);
    let mut rows: Vec<(String, String)> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap_or_default().to_owned(),
                r["health"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Active checks of type `grpc` (h2c) and `grpcs` (TLS) call the gRPC health checking protocol:
/// a SERVING server is healthy, NOT_SERVING or a server without the health service (an
/// UNIMPLEMENTED answer) is not, and a server that turns SERVING again comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_active_health_checks_use_the_grpc_health_protocol() {
    use crate::support::admin::{Backend, start_admin};
    use serde_json::json;
    use tonic_health::ServingStatus;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let mut b = grpc::Builder::new();
    b.routes().add_service(health);
    let with_health = GrpcUpstream::start_with(b).await;
    let without = GrpcUpstream::start().await;
    let (reporter_tls, health_tls) = tonic_health::server::health_reporter();
    reporter_tls
        .set_service_status("", ServingStatus::Serving)
        .await;
    let (_ca, cert, key) = tls::ca_signed(&["localhost"]);
    let mut b = grpc::Builder::new().tls(&cert, &key);
    b.routes().add_service(health_tls);
    let tls_up = GrpcUpstream::start_with(b).await;

    let (gw, api) = start_admin(Backend::Memory).await.expect("memory backend");
    let checks = |kind: &str| {
        json!({"active": {"type": kind, "timeout": 1, "https_verify_certificate": false,
                          "healthy": {"interval": 0.2, "successes": 1},
                          "unhealthy": {"interval": 0.2, "http_failures": 1, "tcp_failures": 1,
                                        "timeouts": 1}}})
    };
    api.post(
        "/upstreams",
        &json!({"name": "g.up", "healthchecks": checks("grpc")}),
    )
    .await
    .expect(201);
    let (a, n) = (
        format!("127.0.0.1:{}", with_health.addr.port()),
        format!("127.0.0.1:{}", without.addr.port()),
    );
    for t in [&a, &n] {
        api.post("/upstreams/g.up/targets", &json!({"target": t}))
            .await
            .expect(201);
    }
    api.post(
        "/upstreams",
        &json!({"name": "gs.up", "healthchecks": checks("grpcs")}),
    )
    .await
    .expect(201);
    let s = format!("localhost:{}", tls_up.addr.port());
    api.post("/upstreams/gs.up/targets", &json!({"target": s}))
        .await
        .expect(201);

    let want = |pairs: &[(&String, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(t, h)| ((*t).clone(), (*h).to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eventually!(
        STEP,
        target_health(&api, "g.up").await == want(&[(&a, "HEALTHY"), (&n, "UNHEALTHY")]),
        "the server without the health service is unhealthy"
    );
    assert_eventually!(
        STEP,
        target_health(&api, "gs.up").await == want(&[(&s, "HEALTHY")]),
        "grpcs: SERVING over TLS is healthy"
    );

    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter_tls
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert_eventually!(
        STEP,
        target_health(&api, "g.up").await == want(&[(&a, "UNHEALTHY"), (&n, "UNHEALTHY")]),
        "NOT_SERVING is unhealthy"
    );
    assert_eventually!(
        STEP,
        target_health(&api, "gs.up").await == want(&[(&s, "UNHEALTHY")]),
        "grpcs: NOT_SERVING is unhealthy"
    );

    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    assert_eventually!(
        STEP,
        target_health(&api, "g.up").await == want(&[(&a, "HEALTHY"), (&n, "UNHEALTHY")]),
        "SERVING again is healthy again"
    );
    gw.stop().await;
}
