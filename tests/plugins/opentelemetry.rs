//! opentelemetry (kong-compat §4.11): one trace from the client through the gateway into the
//! upstream. A real gateway, a real echo upstream, the in-process OTLP/HTTP receiver of
//! `tests/support/otlp.rs` for exact assertions, and the real `rotel` collector once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use crate::support::otlp::{OtlpReceiver, attr, attr_str, hex};
use crate::support::rotel::Rotel;
use crate::support::{BinGateway, Echo, Echoed, Gateway, client, component, refused_addr};

const WAIT: Duration = Duration::from_secs(15);

fn rand_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>() | 1))
        .collect()
}

/// The receiver's spans of trace `trace` (32 hex digits).
fn trace_spans(recv: &OtlpReceiver, trace: &str) -> Vec<Span> {
    recv.spans()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| hex(&s.trace_id) == trace)
        .collect()
}

/// Wait until trace `trace` has at least `n` spans; return them.
async fn wait_spans(recv: &OtlpReceiver, trace: &str, n: usize) -> Vec<Span> {
    assert_eventually!(
        WAIT,
        trace_spans(recv, trace).len() >= n,
        "trace {trace}: {} spans of {n}; all: {:?}",
        trace_spans(recv, trace).len(),
        recv.spans()
            .iter()
            .map(|(_, s)| (s.name.clone(), hex(&s.trace_id)))
            .collect::<Vec<_>>()
    );
    trace_spans(recv, trace)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    match named(spans, name).as_slice() {
        [s] => s,
        other => panic!(
            "expected one {name} span, got {}: {:?}",
            other.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        ),
    }
}

fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn plugin(config: serde_json::Value) -> String {
    json!({"name": "opentelemetry", "config": config}).to_string()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

async fn echoed(url: &str, headers: &[(&str, &str)]) -> Echoed {
    let resp = get(url, headers).await;
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("echo json")
}

/// `00-TRACE-PARENT-FLAGS` -> (trace, parent, flags).
fn traceparent(v: &str) -> (String, String, String) {
    let p: Vec<&str> = v.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {v}");
    assert_eq!(p[0], "00", "traceparent {v}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_context_runs_from_the_client_through_the_gateway_into_the_upstream() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    let conf = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "headers": {"authorization": "Bearer t0ken", "x-tenant": "t1"},
        "resource_attributes": {"service.name": "edge-gw", "deployment.environment": "test"},
        "http_response_header_for_traceid": "x-trace-id",
        "queue": {"max_coalescing_delay": 0.05},
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: api
        paths: ["/api"]
        plugins:
          - name: correlation-id
          - {conf}
      - name: locked
        paths: ["/locked"]
        plugins:
          - name: key-auth
          - {conf}
"#,
        url = echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let (trace, parent) = (rand_hex(16), rand_hex(8));
    let incoming = format!("00-{trace}-{parent}-01");

    let resp = get(
        &format!("{}/api/x?y=1", gw.proxy_url()),
        &[("traceparent", &incoming)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-trace-id"], trace.as_str());
    let request_id = resp.headers()["x-kong-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let e: Echoed = resp.json().await.unwrap();
    let (up_trace, up_parent, up_flags) = traceparent(e.header("traceparent"));
    assert_eq!(up_trace, trace, "the upstream continues the client's trace");
    assert_ne!(up_parent, parent, "the upstream's parent is a gateway span");
    assert_eq!(up_flags, "01");

    let spans = wait_spans(&recv, &trace, 5).await;
    let root = one(&spans, "kong");
    assert_eq!(
        hex(&root.parent_span_id),
        parent,
        "kong span is the client's child"
    );
    assert_eq!(root.kind, 2, "SERVER");
    let a = &root.attributes;
    assert_eq!(attr_str(a, "http.method"), Some("GET"));
    assert_eq!(attr_str(a, "http.request.method"), Some("GET"));
    assert_eq!(attr_str(a, "http.route"), Some("/api"));
    assert_eq!(attr_str(a, "http.scheme"), Some("http"));
    assert_eq!(attr_str(a, "http.flavor"), Some("1.1"));
    assert_eq!(attr_str(a, "net.peer.ip"), Some("127.0.0.1"));
    assert_eq!(attr_str(a, "http.client_ip"), Some("127.0.0.1"));
    assert_eq!(attr_str(a, "kong.request.id"), Some(request_id.as_str()));
    assert_eq!(int(a, "http.status_code"), Some(200));
    assert_eq!(int(a, "http.response.status_code"), Some(200));
    let url = attr_str(a, "http.url").unwrap();
    assert!(
        url.starts_with("http://127.0.0.1") && url.ends_with("/api/x?y=1"),
        "{url}"
    );
    let root_id = hex(&root.span_id);
    let children: Vec<&Span> = spans.iter().filter(|s| s.name != "kong").collect();
    assert!(
        children.iter().all(|s| hex(&s.parent_span_id) == root_id),
        "every child span's parent is the kong span"
    );
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for n in [
        "kong.router",
        "kong.access.plugin.correlation-id",
        "kong.access.plugin.opentelemetry",
        "kong.balancer",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let balancer = one(&spans, "kong.balancer");
    assert_eq!(balancer.kind, 3, "CLIENT");
    assert_eq!(
        hex(&balancer.span_id),
        up_parent,
        "the upstream's parent is the balancer span"
    );
    assert_eq!(int(&balancer.attributes, "try_count"), Some(1));
    assert_eq!(
        int(&balancer.attributes, "net.peer.port"),
        Some(i64::from(echo.addr.port()))
    );
    assert_eq!(
        attr_str(&balancer.attributes, "net.peer.ip"),
        Some("127.0.0.1")
    );
    assert_eq!(int(&balancer.attributes, "http.status_code"), Some(200));
    // Timing: the children lie inside the root span, in pipeline order.
    let router = one(&spans, "kong.router");
    assert!(root.start_time_unix_nano <= router.start_time_unix_nano);
    assert!(router.end_time_unix_nano <= balancer.start_time_unix_nano);
    assert!(balancer.end_time_unix_nano <= root.end_time_unix_nano);
    assert!(root.end_time_unix_nano > root.start_time_unix_nano);

    // The export: headers from the config, protobuf, the resource overridden.
    let reqs = recv.trace_requests();
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/traces");
    assert_eq!(r.headers["authorization"], "Bearer t0ken");
    assert_eq!(r.headers["x-tenant"], "t1");
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let (resource, _) = recv
        .spans()
        .into_iter()
        .find(|(_, s)| hex(&s.trace_id) == trace)
        .unwrap();
    assert_eq!(attr_str(&resource, "service.name"), Some("edge-gw"));
    assert_eq!(attr_str(&resource, "deployment.environment"), Some("test"));
    assert_eq!(attr_str(&resource, "service.version"), Some("3.9.0"));
    let node = attr_str(&resource, "service.instance.id").unwrap();
    assert!(uuid::Uuid::parse_str(node).is_ok(), "{node}");

    // No incoming context: a new trace, announced in the response header.
    let resp = get(&format!("{}/api", gw.proxy_url()), &[]).await;
    let new_trace = resp.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let e: Echoed = resp.json().await.unwrap();
    let (t, _, flags) = traceparent(e.header("traceparent"));
    assert_eq!((t.as_str(), flags.as_str()), (new_trace.as_str(), "01"));
    let spans = wait_spans(&recv, &new_trace, 5).await;
    assert!(one(&spans, "kong").parent_span_id.is_empty(), "a root span");

    // A plugin that answers before opentelemetry's access phase (key-auth, 401): the request
    // is still traced, with its own trace.
    let resp = get(
        &format!("{}/locked", gw.proxy_url()),
        &[("traceparent", &incoming)],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let locked_trace = resp.headers()["x-trace-id"].to_str().unwrap().to_owned();
    assert_ne!(locked_trace, trace, "the context was never extracted");
    let spans = wait_spans(&recv, &locked_trace, 3).await;
    assert_eq!(
        int(&one(&spans, "kong").attributes, "http.status_code"),
        Some(401)
    );
    one(&spans, "kong.access.plugin.key-auth");
    assert!(named(&spans, "kong.balancer").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_try_gets_a_balancer_span_and_the_reaching_one_is_the_parent() {
    let recv = OtlpReceiver::start().await;
    let live = Echo::start("L").await;
    let dead = refused_addr();
    let conf = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "queue": {"max_coalescing_delay": 0.05},
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    targets:
      - target: {dead}
      - target: {live}
services:
  - name: s
    host: pool
    retries: 1
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - {conf}
"#,
        live = live.authority()
    );
    let gw = Gateway::start(&yaml).await;
    // Round-robin over a dead and a live target: within two requests one tries the dead
    // target first, then the live one (a retry advances the round-robin too, so later ones may
    // all start with the dead target).
    let mut seen_retry = false;
    for _ in 0..4 {
        let trace = rand_hex(16);
        let tp = format!("00-{trace}-{}-01", rand_hex(8));
        let e = echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;
        let (_, up_parent, _) = traceparent(e.header("traceparent"));
        let spans = wait_spans(&recv, &trace, 3).await;
        let root_id = hex(&one(&spans, "kong").span_id);
        let mut tries = named(&spans, "kong.balancer");
        tries.sort_by_key(|s| int(&s.attributes, "try_count"));
        assert!(tries.iter().all(|s| hex(&s.parent_span_id) == root_id));
        let last = tries.last().expect("a balancer span");
        assert_eq!(
            hex(&last.span_id),
            up_parent,
            "the try that reached the upstream is its parent"
        );
        assert_eq!(
            int(&last.attributes, "net.peer.port"),
            Some(i64::from(live.addr.port()))
        );
        assert_eq!(int(&last.attributes, "http.status_code"), Some(200));
        assert!(last.status.as_ref().is_none_or(|s| s.code != 2));
        match tries.as_slice() {
            [_] => {}
            [first, second] => {
                seen_retry = true;
                assert_eq!(int(&first.attributes, "try_count"), Some(1));
                assert_eq!(int(&second.attributes, "try_count"), Some(2));
                assert_eq!(
                    int(&first.attributes, "net.peer.port"),
                    Some(i64::from(dead.port()))
                );
                let status = first.status.as_ref().expect("failed try has a status");
                assert_eq!(status.code, 2, "error status on the refused try");
                assert!(!status.message.is_empty());
                assert!(first.end_time_unix_nano <= second.start_time_unix_nano);
            }
            other => panic!("{} balancer spans", other.len()),
        }
    }
    assert!(seen_retry, "no request was retried");
}

/// One propagation case: a route whose plugin extracts and injects `format`.
struct Case {
    route: &'static str,
    propagation: serde_json::Value,
    /// Incoming headers for (trace hex, span hex).
    incoming: fn(&str, &str) -> Vec<(String, String)>,
    /// The trace id as exported (32 hex) for the incoming trace hex.
    exported_trace: fn(&str) -> String,
    /// Check the upstream's headers: (echoed, trace hex, balancer span hex, kong span hex).
    check: fn(&Echoed, &str, &str, &str),
    /// Bytes of the incoming trace id.
    trace_bytes: usize,
}

fn dec(hex16: &str) -> String {
    u64::from_str_radix(hex16, 16).unwrap().to_string()
}

fn same(t: &str) -> String {
    t.to_owned()
}

fn padded(t: &str) -> String {
    format!("{t:0>32}")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            route: "b3",
            propagation: json!({"extract": ["b3"], "inject": ["b3"]}),
            incoming: |t, s| {
                vec![
                    ("x-b3-traceid".into(), t.into()),
                    ("x-b3-spanid".into(), s.into()),
                    ("x-b3-sampled".into(), "1".into()),
                ]
            },
            exported_trace: same,
            check: |e, t, b, k| {
                assert_eq!(e.header("x-b3-traceid"), t);
                assert_eq!(e.header("x-b3-spanid"), b);
                assert_eq!(e.header("x-b3-parentspanid"), k);
                assert_eq!(e.header("x-b3-sampled"), "1");
            },
            trace_bytes: 16,
        },
        Case {
            route: "b3-64",
            propagation: json!({"extract": ["b3"], "inject": ["b3"]}),
            incoming: |t, s| {
                vec![
                    ("x-b3-traceid".into(), t.into()),
                    ("x-b3-spanid".into(), s.into()),
                ]
            },
            exported_trace: padded,
            check: |e, t, b, _| {
                assert_eq!(e.header("x-b3-traceid"), t, "64-bit id kept 64-bit");
                assert_eq!(e.header("x-b3-spanid"), b);
                assert_eq!(e.header("x-b3-sampled"), "1");
            },
            trace_bytes: 8,
        },
        Case {
            route: "b3-single",
            propagation: json!({"extract": ["b3"], "inject": ["b3-single"]}),
            incoming: |t, s| vec![("b3".into(), format!("{t}-{s}-1"))],
            exported_trace: same,
            check: |e, t, b, k| assert_eq!(e.header("b3"), format!("{t}-{b}-1-{k}")),
            trace_bytes: 16,
        },
        Case {
            route: "jaeger",
            propagation: json!({"extract": ["jaeger"], "inject": ["jaeger"]}),
            incoming: |t, s| vec![("uber-trace-id".into(), format!("{t}:{s}:0:1"))],
            exported_trace: same,
            check: |e, t, b, k| assert_eq!(e.header("uber-trace-id"), format!("{t}:{b}:{k}:01")),
            trace_bytes: 16,
        },
        Case {
            route: "ot",
            propagation: json!({"extract": ["ot"], "inject": ["ot"]}),
            incoming: |t, s| {
                vec![
                    ("ot-tracer-traceid".into(), t.into()),
                    ("ot-tracer-spanid".into(), s.into()),
                    ("ot-tracer-sampled".into(), "true".into()),
                ]
            },
            exported_trace: padded,
            check: |e, t, b, _| {
                assert_eq!(e.header("ot-tracer-traceid"), t);
                assert_eq!(e.header("ot-tracer-spanid"), b);
                assert_eq!(e.header("ot-tracer-sampled"), "1");
            },
            trace_bytes: 8,
        },
        Case {
            route: "aws",
            propagation: json!({"extract": ["aws"], "inject": ["aws"]}),
            incoming: |t, s| {
                vec![(
                    "x-amzn-trace-id".into(),
                    format!("Root=1-{}-{};Parent={s};Sampled=1", &t[..8], &t[8..]),
                )]
            },
            exported_trace: same,
            check: |e, t, b, _| {
                assert_eq!(
                    e.header("x-amzn-trace-id"),
                    format!("Root=1-{}-{};Parent={b};Sampled=1", &t[..8], &t[8..])
                );
            },
            trace_bytes: 16,
        },
        Case {
            route: "gcp",
            propagation: json!({"extract": ["gcp"], "inject": ["gcp"]}),
            incoming: |t, s| {
                vec![(
                    "x-cloud-trace-context".into(),
                    format!("{t}/{};o=1", dec(s)),
                )]
            },
            exported_trace: same,
            check: |e, t, b, _| {
                assert_eq!(
                    e.header("x-cloud-trace-context"),
                    format!("{t}/{};o=1", dec(b))
                );
            },
            trace_bytes: 16,
        },
        Case {
            route: "datadog",
            propagation: json!({"extract": ["datadog"], "inject": ["datadog"]}),
            incoming: |t, s| {
                vec![
                    ("x-datadog-trace-id".into(), dec(t)),
                    ("x-datadog-parent-id".into(), dec(s)),
                    ("x-datadog-sampling-priority".into(), "1".into()),
                ]
            },
            exported_trace: padded,
            check: |e, t, b, _| {
                assert_eq!(e.header("x-datadog-trace-id"), dec(t));
                assert_eq!(e.header("x-datadog-parent-id"), dec(b));
                assert_eq!(e.header("x-datadog-sampling-priority"), "1");
            },
            trace_bytes: 8,
        },
        Case {
            route: "instana",
            propagation: json!({"extract": ["instana"], "inject": ["instana"]}),
            incoming: |t, s| {
                vec![
                    ("x-instana-t".into(), t.into()),
                    ("x-instana-s".into(), s.into()),
                    ("x-instana-l".into(), "1".into()),
                ]
            },
            exported_trace: same,
            check: |e, t, b, _| {
                assert_eq!(e.header("x-instana-t"), t);
                assert_eq!(e.header("x-instana-s"), b);
                assert_eq!(e.header("x-instana-l"), "1");
            },
            trace_bytes: 16,
        },
        // No propagation settings: Kong's default `header_type: preserve` answers in the
        // format that came in (here b3), and adds no other.
        Case {
            route: "preserve",
            propagation: json!({}),
            incoming: |t, s| {
                vec![
                    ("x-b3-traceid".into(), t.into()),
                    ("x-b3-spanid".into(), s.into()),
                    ("x-b3-sampled".into(), "1".into()),
                ]
            },
            exported_trace: same,
            check: |e, t, b, _| {
                assert_eq!(e.header("x-b3-traceid"), t);
                assert_eq!(e.header("x-b3-spanid"), b);
                assert!(!e.has("traceparent"), "only the incoming format");
            },
            trace_bytes: 16,
        },
        // Extract W3C, send B3 only: `clear` removes the incoming traceparent.
        Case {
            route: "clear",
            propagation: json!({"extract": ["w3c"], "inject": ["b3"], "clear": ["traceparent"]}),
            incoming: |t, s| vec![("traceparent".into(), format!("00-{t}-{s}-01"))],
            exported_trace: same,
            check: |e, t, b, _| {
                assert_eq!(e.header("x-b3-traceid"), t);
                assert_eq!(e.header("x-b3-spanid"), b);
                assert!(!e.has("traceparent"), "cleared");
            },
            trace_bytes: 16,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_extracted_and_injected_in_kongs_header_formats() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    let cases = cases();
    let mut routes = String::new();
    for c in &cases {
        let conf = plugin(json!({
            "traces_endpoint": recv.traces_url(),
            "queue": {"max_coalescing_delay": 0.05},
            "propagation": c.propagation,
        }));
        routes.push_str(&format!(
            "      - name: {r}\n        paths: [\"/{r}\"]\n        plugins:\n          - {conf}\n",
            r = c.route
        ));
    }
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: {}\n    routes:\n{routes}",
        echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    for c in &cases {
        let (trace, span) = (rand_hex(c.trace_bytes), rand_hex(8));
        let headers = (c.incoming)(&trace, &span);
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let e = echoed(&format!("{}/{}", gw.proxy_url(), c.route), &refs).await;
        let exported = (c.exported_trace)(&trace);
        let spans = wait_spans(&recv, &exported, 3).await;
        let root = one(&spans, "kong");
        assert_eq!(
            hex(&root.parent_span_id),
            span,
            "{}: the kong span is the caller's child",
            c.route
        );
        let balancer = one(&spans, "kong.balancer");
        (c.check)(&e, &trace, &hex(&balancer.span_id), &hex(&root.span_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_nothing_and_still_propagate() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    let zero = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "sampling_rate": 0,
        "queue": {"max_coalescing_delay": 0.05},
    }));
    let one_ = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "sampling_rate": 1,
        "queue": {"max_coalescing_delay": 0.05},
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: zero
        paths: ["/zero"]
        plugins:
          - {zero}
      - name: one
        paths: ["/one"]
        plugins:
          - {one_}
"#,
        url = echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let mut unexported = Vec::new();

    // sampling_rate 0, no context: a new trace, sent upstream as not sampled.
    let e = echoed(&format!("{}/zero", gw.proxy_url()), &[]).await;
    let (t, _, flags) = traceparent(e.header("traceparent"));
    assert_eq!(flags, "00");
    unexported.push(t);
    // sampling_rate 0 wins over a sampled caller.
    let t = rand_hex(16);
    let tp = format!("00-{t}-{}-01", rand_hex(8));
    let e = echoed(&format!("{}/zero", gw.proxy_url()), &[("traceparent", &tp)]).await;
    let (up, _, flags) = traceparent(e.header("traceparent"));
    assert_eq!((up.as_str(), flags.as_str()), (t.as_str(), "00"));
    unexported.push(t);
    // A caller's "not sampled" is followed at sampling_rate 1.
    let t = rand_hex(16);
    let tp = format!("00-{t}-{}-00", rand_hex(8));
    let e = echoed(&format!("{}/one", gw.proxy_url()), &[("traceparent", &tp)]).await;
    let (up, _, flags) = traceparent(e.header("traceparent"));
    assert_eq!((up.as_str(), flags.as_str()), (t.as_str(), "00"));
    unexported.push(t);
    // The control: sampled and exported.
    let sampled = rand_hex(16);
    let tp = format!("00-{sampled}-{}-01", rand_hex(8));
    let e = echoed(&format!("{}/one", gw.proxy_url()), &[("traceparent", &tp)]).await;
    assert_eq!(traceparent(e.header("traceparent")).2, "01");

    // Stopping the gateway flushes every exporter: whatever was queued has arrived then.
    gw.stop().await;
    assert!(
        !trace_spans(&recv, &sampled).is_empty(),
        "the sampled trace was exported"
    );
    for t in &unexported {
        assert!(
            trace_spans(&recv, t).is_empty(),
            "unsampled trace {t} exported"
        );
    }
    assert_eq!(
        recv.spans()
            .iter()
            .filter(|(_, s)| s.name == "kong")
            .count(),
        1,
        "only the sampled request has a kong span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_emitted_during_a_request_carry_its_trace_and_span_ids() {
    let recv = OtlpReceiver::start().await;
    let dead = refused_addr();
    let conf = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "logs_endpoint": recv.logs_url(),
        "queue": {"max_coalescing_delay": 0.05},
    }));
    // The real binary: its logging is set up as in production (the capture layer).
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{dead}
    retries: 0
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - {conf}
"#
    );
    let gw = BinGateway::start(&yaml, &[]).await;
    let (trace, parent) = (rand_hex(16), rand_hex(8));
    let tp = format!("00-{trace}-{parent}-01");
    let resp = get(&gw.proxy_url(), &[("traceparent", &tp)]).await;
    assert_eq!(resp.status(), 502);
    let request_id = resp.headers()["x-kong-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let spans = wait_spans(&recv, &trace, 3).await;
    let root = one(&spans, "kong");
    assert_eq!(int(&root.attributes, "http.status_code"), Some(502));
    assert_eq!(
        root.status.as_ref().map(|s| s.code),
        Some(2),
        "a 5xx is an error"
    );
    let failed = one(&spans, "kong.balancer");
    assert_eq!(failed.status.as_ref().map(|s| s.code), Some(2));

    let ours = || {
        recv.log_records()
            .into_iter()
            .filter(|(_, l)| hex(&l.trace_id) == trace)
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        WAIT,
        !ours().is_empty(),
        "log records: {:?}",
        recv.log_records()
    );
    let records = ours();
    let warn = records
        .iter()
        .map(|(_, l)| l)
        .find(|l| l.severity_number == 13)
        .unwrap_or_else(|| panic!("no WARN record in {records:?}"));
    assert_eq!(warn.severity_text, "WARN");
    let body = match warn.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("body {other:?}"),
    };
    assert!(body.contains("upstream"), "{body}");
    for (resource, l) in &records {
        assert_eq!(
            hex(&l.span_id),
            hex(&root.span_id),
            "the request's kong span"
        );
        assert_eq!(l.flags & 1, 1, "sampled");
        assert_eq!(
            attr_str(&l.attributes, "request.id"),
            Some(request_id.as_str())
        );
        assert_eq!(attr_str(resource, "service.name"), Some("kong"));
    }
    drop(gw);
}

/// p99 (of `n` sequential requests) of GET `url`.
async fn p99(url: &str, n: usize) -> Duration {
    let c = client();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = c.get(url).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[(n * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_stalled_collector_does_not_slow_requests_and_drops_are_counted() {
    let echo = Echo::start("e").await;
    let stalled = OtlpReceiver::start().await;
    stalled.set_stall(Duration::from_secs(30));
    let dead = refused_addr();
    let small_queue = json!({"max_coalescing_delay": 0.01, "max_batch_size": 4, "max_entries": 20});
    let to_dead = plugin(json!({
        "traces_endpoint": format!("http://{dead}/v1/traces"),
        "logs_endpoint": format!("http://{dead}/v1/logs"),
        "queue": small_queue,
    }));
    let to_stalled = plugin(json!({
        "traces_endpoint": stalled.traces_url(),
        "read_timeout": 20000,
        "send_timeout": 20000,
        "queue": small_queue,
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: dead
        paths: ["/dead"]
        plugins:
          - {to_dead}
      - name: stalled
        paths: ["/stalled"]
        plugins:
          - {to_stalled}
      - name: plain
        paths: ["/plain"]
"#,
        url = echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    // A generous bound for a debug build on a busy machine, far below the collector's stall
    // (30 s) and its timeouts (20 s), and the retries (60 s).
    let bound = Duration::from_millis(500);
    let drops = || gwctl::telemetry::DROPS.spans.load(Ordering::Relaxed);
    let baseline = p99(&format!("{}/plain", gw.proxy_url()), 50).await;

    let before = drops();
    let dead_p99 = p99(&format!("{}/dead", gw.proxy_url()), 50).await;
    assert!(
        dead_p99 < bound,
        "dead collector: p99 {dead_p99:?} (no plugin: {baseline:?})"
    );
    // 50 requests of 3 spans, at most 20 queued while the first batches are retried.
    let dropped = drops() - before;
    assert!(dropped >= 100, "dropped {dropped} spans");

    let before = drops();
    let stalled_p99 = p99(&format!("{}/stalled", gw.proxy_url()), 50).await;
    assert!(
        stalled_p99 < bound,
        "stalled collector: p99 {stalled_p99:?} (no plugin: {baseline:?})"
    );
    assert_eventually!(
        WAIT,
        stalled.requests() >= 1,
        "the exporter never reached the stalled collector"
    );
    let dropped = drops() - before;
    assert!(dropped >= 100, "dropped {dropped} spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_is_retried_with_backoff_and_a_refusal_is_not() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    let conf = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "queue": {
            "max_coalescing_delay": 0.01,
            "initial_retry_delay": 0.05,
            "max_retry_delay": 0.1,
            "max_retry_time": 30,
        },
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - {conf}
"#,
        url = echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let drops = || gwctl::telemetry::DROPS.spans.load(Ordering::Relaxed);

    // 503: retried (backoff 0.05 s doubling to 0.1 s) until the collector recovers.
    recv.set_fail(503);
    let trace = rand_hex(16);
    let tp = format!("00-{trace}-{}-01", rand_hex(8));
    echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;
    assert_eventually!(WAIT, recv.requests() >= 3, "retries: {}", recv.requests());
    assert!(trace_spans(&recv, &trace).is_empty());
    recv.set_fail(0);
    let spans = wait_spans(&recv, &trace, 4).await;
    assert_eq!(
        named(&spans, "kong").len(),
        1,
        "delivered once, after the retries"
    );

    // 400: the collector refuses the data; the batch is dropped (and counted) at once.
    recv.set_fail(400);
    let before_requests = recv.requests();
    let before_drops = drops();
    let refused = rand_hex(16);
    let tp = format!("00-{refused}-{}-01", rand_hex(8));
    echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;
    assert_eventually!(
        WAIT,
        drops() >= before_drops + 4,
        "dropped {}",
        drops() - before_drops
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(recv.requests(), before_requests + 1, "a 400 is not retried");
    recv.set_fail(0);
    gw.stop().await;
    assert!(trace_spans(&recv, &refused).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_when_sigterm_arrives_are_delivered() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    // Nothing would be sent for an hour, or before 1000 spans.
    let conf = plugin(json!({
        "traces_endpoint": recv.traces_url(),
        "queue": {"max_coalescing_delay": 3600, "max_batch_size": 1000},
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - {conf}
"#,
        url = echo.url()
    );
    let mut gw = BinGateway::start(&yaml, &[]).await;
    let mut traces = Vec::new();
    for _ in 0..3 {
        let t = rand_hex(16);
        let tp = format!("00-{t}-{}-01", rand_hex(8));
        echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;
        traces.push(t);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recv.requests(), 0, "spans are still queued");
    gw.sigterm();
    assert_eq!(gw.wait_exit(Duration::from_secs(20)).await, Some(0));
    for t in &traces {
        let spans = trace_spans(&recv, t);
        assert_eq!(
            named(&spans, "kong").len(),
            1,
            "trace {t} delivered at shutdown"
        );
        assert_eq!(named(&spans, "kong.balancer").len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_exporter_of_an_unchanged_config_and_its_queue() {
    let recv = OtlpReceiver::start().await;
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: r
        paths: ["/"]
plugins:
  - name: opentelemetry
    config:
      traces_endpoint: {ep}
      queue: {{max_coalescing_delay: 3600, max_batch_size: 1000}}
"#,
        url = echo.url(),
        ep = recv.traces_url()
    );
    let gw = Gateway::start_with(&yaml, |o| o.admin_listen = "127.0.0.1:0".into()).await;
    let admin = format!("http://{}", gw.bound.admin.unwrap());
    let c = client();
    let first = rand_hex(16);
    let tp = format!("00-{first}-{}-01", rand_hex(8));
    echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;

    // An unrelated change: a new route; wait until it is served.
    let resp = c
        .post(format!("{admin}/services/s/routes"))
        .json(&json!({"name": "extra", "paths": ["/extra"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eventually!(
        WAIT,
        get(&format!("{}/extra", gw.proxy_url()), &[])
            .await
            .status()
            == 200,
        "the new route is served"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recv.requests(),
        0,
        "the exporter was kept: its span is still queued (a replaced one sends on close)"
    );

    // A change of the plugin's own config replaces its exporter; the old one sends what it
    // holds instead of losing it.
    let plugins: serde_json::Value = c
        .get(format!("{admin}/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = plugins["data"][0]["id"].as_str().unwrap().to_owned();
    let resp = c
        .patch(format!("{admin}/plugins/{id}"))
        .json(&json!({"config": {
            "headers": {"x-changed": "1"},
            "queue": {"max_coalescing_delay": 0.05},
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let spans = wait_spans(&recv, &first, 3).await;
    assert_eq!(named(&spans, "kong").len(), 1, "sent once");
    let sent_first = recv
        .trace_requests()
        .into_iter()
        .find(|r| {
            r.body.resource_spans.iter().any(|rs| {
                rs.scope_spans
                    .iter()
                    .any(|ss| ss.spans.iter().any(|s| hex(&s.trace_id) == first))
            })
        })
        .unwrap();
    assert!(
        sent_first.headers.get("x-changed").is_none(),
        "by the old exporter"
    );

    // The new exporter takes over, with the new header.
    let new_one = || async {
        let t = rand_hex(16);
        let tp = format!("00-{t}-{}-01", rand_hex(8));
        echoed(&gw.proxy_url(), &[("traceparent", &tp)]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        recv.trace_requests().iter().any(|r| {
            r.headers.get("x-changed").is_some_and(|v| v == "1")
                && r.body.resource_spans.iter().any(|rs| {
                    rs.scope_spans
                        .iter()
                        .any(|ss| ss.spans.iter().any(|s| hex(&s.trace_id) == t))
                })
        })
    };
    assert_eventually!(WAIT, new_one().await, "no span sent with the new config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_rotel_collector_receives_the_gateway_spans_and_logs() {
    let Some(agent) = component("GWCTL_TEST_ROTEL", "rotel") else {
        return;
    };
    let mut rotel = Rotel::start(&agent, &Rotel::DEBUG_DUMP).await;
    let dead = refused_addr();
    let echo = Echo::start("e").await;
    let conf = plugin(json!({
        "traces_endpoint": format!("http://{}/v1/traces", rotel.http),
        "logs_endpoint": format!("http://{}/v1/logs", rotel.http),
        "queue": {"max_coalescing_delay": 0.05},
    }));
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: ok
        paths: ["/ok"]
        plugins:
          - {conf}
  - name: down
    url: http://{dead}
    retries: 0
    routes:
      - name: down
        paths: ["/down"]
        plugins:
          - {conf}
"#,
        url = echo.url()
    );
    let gw = BinGateway::start(&yaml, &[]).await;
    let trace = rand_hex(16);
    let tp = format!("00-{trace}-{}-01", rand_hex(8));
    echoed(&format!("{}/ok", gw.proxy_url()), &[("traceparent", &tp)]).await;
    let failing = rand_hex(16);
    let tp = format!("00-{failing}-{}-01", rand_hex(8));
    assert_eq!(
        get(&format!("{}/down", gw.proxy_url()), &[("traceparent", &tp)])
            .await
            .status(),
        502
    );
    // rotel's detailed dump: each span's record (trace id, parent, id, name), each log
    // record's body followed by its trace id.
    let root_named = |out: &str, t: &str| {
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        lines.iter().enumerate().any(|(i, l)| {
            l.starts_with("Trace ID") && l.ends_with(t) && {
                let next = &lines[i + 1..(i + 5).min(lines.len())];
                next.iter()
                    .any(|n| n.starts_with("Name") && n.ends_with(": kong"))
            }
        })
    };
    let failure_logged = |out: &str, t: &str| {
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        lines.iter().enumerate().any(|(i, l)| {
            l.starts_with("Body: Str(upstream unreachable")
                && lines[i..]
                    .iter()
                    .take(12)
                    .any(|l| l.starts_with("Trace ID") && l.ends_with(t))
        })
    };
    assert_eventually!(
        WAIT,
        {
            let out = rotel.output();
            root_named(&out, &trace)
                && root_named(&out, &failing)
                && failure_logged(&out, &failing)
                && out.contains("kong.router")
                && out.contains("kong.balancer")
        },
        "rotel output: {}",
        rotel.output()
    );
    let _ = rotel.child.start_kill();
    drop(gw);
}
