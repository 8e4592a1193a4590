use crate::support::{Echo, Echoed, Gateway, client, is_request_id, raw};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: stripped
        paths: ["/h"]
      - name: kept
        paths: ["/keep"]
        strip_path: false
      - name: preserved
        paths: ["/ph"]
        preserve_host: true
"#,
        url = echo.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_sent_upstream() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let resp = client()
        .get(format!("{}/h/sub?q=1", gw.proxy_url()))
        .header("host", "svc.test:1234")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-port", "1")
        .header("x-forwarded-path", "/evil")
        .header("x-forwarded-prefix", "/evil")
        .header("x-real-ip", "9.9.9.9")
        .header("via", "1.0 fred")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let resp_id = resp
        .headers()
        .get("x-kong-request-id")
        .expect("response X-Kong-Request-Id")
        .to_str()
        .expect("ascii")
        .to_owned();
    let e: Echoed = resp.json().await.expect("echo json");
    assert_eq!(e.path, "/sub?q=1");
    assert_eq!(e.header("x-forwarded-for"), "1.2.3.4, 127.0.0.1");
    // The peer is not trusted: client-sent X-Forwarded-* are replaced.
    assert_eq!(e.header("x-forwarded-proto"), "http");
    assert_eq!(e.header("x-forwarded-host"), "svc.test");
    assert_eq!(
        e.header("x-forwarded-port"),
        gw.proxy_addr().port().to_string()
    );
    assert_eq!(e.header("x-forwarded-path"), "/h/sub");
    assert_eq!(e.header("x-forwarded-prefix"), "/h");
    assert_eq!(e.header("x-real-ip"), "127.0.0.1");
    assert_eq!(e.header("via"), "1.0 fred, 1.1 kong/3.9.0");
    assert!(is_request_id(e.header("x-kong-request-id")));
    assert_eq!(e.header("x-kong-request-id"), resp_id);
    // Host: the target, with its non-default port.
    assert_eq!(e.header("host"), echo.authority());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prefix_header_when_nothing_was_stripped() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let (st, e) = crate::support::get_echo(
        &client(),
        &format!("{}/keep/x", gw.proxy_url()),
        Some("svc.test"),
    )
    .await;
    assert_eq!(st, 200);
    let e = e.expect("echo");
    assert_eq!(e.path, "/keep/x");
    assert!(!e.has("x-forwarded-prefix"), "{e:#?}");
    assert_eq!(e.header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(e.header("via"), "1.1 kong/3.9.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_sends_the_client_host() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let (st, e) = crate::support::get_echo(
        &client(),
        &format!("{}/ph", gw.proxy_url()),
        Some("client.test:8080"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(e.expect("echo").header("host"), "client.test:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_keeps_forwarded_headers() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start_with(&config(&echo), |o| {
        o.trusted_ips = vec!["127.0.0.0/8".into()];
    })
    .await;
    let resp = client()
        .get(format!("{}/h/x", gw.proxy_url()))
        .header("host", "svc.test")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "front.test")
        .header("x-forwarded-port", "443")
        .header("x-forwarded-path", "/front/x")
        .header("x-forwarded-prefix", "/front")
        .header("x-real-ip", "10.1.2.3")
        .send()
        .await
        .expect("request");
    let e: Echoed = resp.json().await.expect("echo json");
    assert_eq!(e.header("x-forwarded-proto"), "https");
    assert_eq!(e.header("x-forwarded-host"), "front.test");
    assert_eq!(e.header("x-forwarded-port"), "443");
    assert_eq!(e.header("x-forwarded-path"), "/front/x");
    assert_eq!(e.header("x-forwarded-prefix"), "/front");
    assert_eq!(e.header("x-real-ip"), "10.1.2.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let req = "GET /h HTTP/1.1\r\nHost: svc.test\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Keep: 1\r\n\r\n";
    let resp = raw::exchange(gw.proxy_addr(), req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let e: Echoed = serde_json::from_slice(&resp.body).expect("echo json");
    for h in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(!e.has(h), "{h} was forwarded: {e:#?}");
    }
    assert!(
        e.headers.get("connection").is_none_or(|v| v
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-secret"))),
        "{e:#?}"
    );
    assert_eq!(e.header("x-keep"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_on_proxied_responses() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();
    let resp = c
        .get(format!("{}/h", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    let h = resp.headers();
    for name in ["x-kong-upstream-latency", "x-kong-proxy-latency"] {
        let v = h.get(name).unwrap_or_else(|| panic!("{name} missing"));
        v.to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("milliseconds");
    }
    assert_eq!(h["via"], "1.1 kong/3.9.0");
    assert_eq!(h["server"], "kong/3.9.0");
    assert!(is_request_id(
        h["x-kong-request-id"].to_str().expect("ascii")
    ));
    assert!(!h.contains_key("x-kong-response-latency"));

    // The upstream's own Server is kept; its Via gets ours appended.
    let resp = c
        .get(format!("{}/h", gw.proxy_url()))
        .header("x-echo-server", "echo/1")
        .header("x-echo-via", "1.0 up")
        .send()
        .await
        .expect("request");
    let h = resp.headers();
    assert_eq!(h["server"], "echo/1");
    assert_eq!(h.get_all("server").iter().count(), 1);
    assert_eq!(h["via"], "1.0 up, 1.1 kong/3.9.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_on_gateway_made_responses() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let resp = client()
        .get(format!("{}/nothing-here", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    let h = resp.headers();
    assert_eq!(h["server"], "kong/3.9.0");
    h["x-kong-response-latency"]
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("milliseconds");
    assert!(is_request_id(
        h["x-kong-request-id"].to_str().expect("ascii")
    ));
    assert!(!h.contains_key("x-kong-upstream-latency"));
}

/// kong-compat §2.6: the Upstream's `host_header` replaces the target name in Host; a target
/// given by name keeps its name (and non-default port) in Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_host_header_and_target_names() {
    let echo = Echo::start("e").await;
    let port = echo.addr.port();
    let yaml = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: with-header.up
    host_header: api.internal
    targets:
      - target: 127.0.0.1:{port}
  - name: by-name.up
    targets:
      - target: localhost:{port}
services:
  - host: with-header.up
    routes:
      - paths: ["/hh"]
  - host: by-name.up
    routes:
      - paths: ["/bn"]
"#
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();
    let (st, e) = crate::support::get_echo(&c, &format!("{}/hh", gw.proxy_url()), None).await;
    assert_eq!(st, 200);
    assert_eq!(e.expect("echo").header("host"), "api.internal");
    let (st, e) = crate::support::get_echo(&c, &format!("{}/bn", gw.proxy_url()), None).await;
    assert_eq!(st, 200);
    assert_eq!(e.expect("echo").header("host"), format!("localhost:{port}"));
}
