use std::time::{Duration, Instant};

use crate::support::{Echo, Gateway, client, closer, is_request_id, raw, refused_addr};

/// Check a Kong JSON error body and its request id (equal to the X-Kong-Request-Id header).
async fn assert_kong_json(resp: reqwest::Response, status: u16, message: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let id = resp.headers()["x-kong-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(resp.headers()["server"], "kong/3.9.0");
    let v: serde_json::Value = resp.json().await.expect("json body");
    assert_eq!(v["message"], message, "{v}");
    let body_id = v["request_id"].as_str().expect("request_id");
    assert!(is_request_id(body_id), "{body_id}");
    assert_eq!(body_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_json_and_text() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/only\"]\n",
        echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();
    let resp = c
        .get(format!("{}/nope", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_kong_json(resp, 404, "no Route matched with those values").await;

    let resp = c
        .get(format!("{}/nope", gw.proxy_url()))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let id = resp.headers()["x-kong-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        resp.text().await.expect("body"),
        format!("no Route matched with those values\nrequest_id: {id}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_the_connection_is_502() {
    let (addr, _task) = closer().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: http://{addr}\n    routes:\n      - paths: [\"/\"]\n"
    );
    let gw = Gateway::start(&yaml).await;
    let resp = client().get(gw.proxy_url()).send().await.expect("request");
    assert_kong_json(
        resp,
        502,
        "An invalid response was received from the upstream server",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_after_retries_is_502() {
    let dead = refused_addr();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: http://{dead}\n    retries: 2\n    routes:\n      - paths: [\"/\"]\n"
    );
    let gw = Gateway::start(&yaml).await;
    let resp = client().get(gw.proxy_url()).send().await.expect("request");
    assert_kong_json(
        resp,
        502,
        "An invalid response was received from the upstream server",
    )
    .await;
}

/// kong-compat §4.13: nginx-level errors (502/504) default to text/plain without Accept or
/// Content-Type (`error_default_type`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_level_error_defaults_to_text_plain() {
    let dead = refused_addr();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: http://{dead}\n    retries: 0\n    routes:\n      - paths: [\"/\"]\n"
    );
    let gw = Gateway::start(&yaml).await;
    let resp = raw::exchange(
        gw.proxy_addr(),
        b"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        resp.headers
    );
    assert!(
        resp.text()
            .starts_with("An invalid response was received from the upstream server\nrequest_id: ")
    );
    // With a JSON Content-Type and no Accept, JSON.
    let resp = raw::exchange(
        gw.proxy_addr(),
        b"POST / HTTP/1.1\r\nHost: x.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_targets_is_503_no_peer() {
    let yaml = "_format_version: \"3.0\"\nupstreams:\n  - name: empty.up\nservices:\n  - host: empty.up\n    routes:\n      - paths: [\"/\"]\n";
    let gw = Gateway::start(yaml).await;
    let resp = client().get(gw.proxy_url()).send().await.expect("request");
    assert_kong_json(resp, 503, "failure to get a peer from the ring-balancer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_after_read_timeout() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    read_timeout: 200\n    routes:\n      - paths: [\"/\"]\n",
        echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let started = Instant::now();
    let resp = client()
        .get(gw.proxy_url())
        .header("x-echo-delay-ms", "1500")
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert_kong_json(resp, 504, "The upstream server is timing out").await;
    assert!(elapsed < Duration::from_millis(1400), "took {elapsed:?}");
    // A read timeout is not retried: the upstream saw exactly one request.
    assert_eq!(echo.hits(), 1);
}

fn https_config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - url: {}
    routes:
      - paths: ["/secure"]
        protocols: ["https"]
      - paths: ["/moved"]
        protocols: ["https"]
        https_redirect_status_code: 301
      - paths: ["/temp"]
        protocols: ["https"]
        https_redirect_status_code: 307
"#,
        echo.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_route_over_http_is_426() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&https_config(&echo)).await;
    let resp = raw::exchange(
        gw.proxy_addr(),
        b"GET /secure/x HTTP/1.1\r\nHost: svc.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 426);
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(v["message"], "Please use HTTPS protocol");
    assert_eq!(resp.header("upgrade"), Some("TLS/1.2, HTTP/1.1"));
    assert!(
        resp.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("upgrade")),
        "{:?}",
        resp.headers
    );
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_route_redirects_when_configured() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&https_config(&echo)).await;
    let c = client();
    let resp = c
        .get(format!("{}/moved/x?q=1", gw.proxy_url()))
        .header("host", "svc.test:8000")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "https://svc.test/moved/x?q=1");
    let resp = c
        .get(format!("{}/temp", gw.proxy_url()))
        .header("host", "svc.test")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "https://svc.test/temp");
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_without_service_is_503() {
    let yaml = "_format_version: \"3.0\"\nroutes:\n  - name: orphan\n    paths: [\"/orphan\"]\n";
    let gw = Gateway::start(yaml).await;
    let resp = client()
        .get(format!("{}/orphan", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_kong_json(resp, 503, "no Service found with those values").await;
}
