//! request-size-limiting (kong-compat §4.8): Content-Length checked without reading the body (417
//! for `Expect: 100-continue`), chunked bodies read within the limit, `require_content_length`,
//! each size unit, schema errors.

use std::convert::Infallible;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin};
use crate::support::raw::{exchange, hyper_send};
use crate::support::{Echo, Echoed, Gateway, client, is_request_id};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: default
        paths: ["/default"]
        plugins:
          - name: request-size-limiting
      - name: bytes
        paths: ["/bytes"]
        plugins:
          - name: request-size-limiting
            config: {{allowed_payload_size: 10, size_unit: bytes}}
      - name: kb
        paths: ["/kb"]
        plugins:
          - name: request-size-limiting
            config: {{allowed_payload_size: 1, size_unit: kilobytes}}
      - name: mb
        paths: ["/mb"]
        plugins:
          - name: request-size-limiting
            config: {{allowed_payload_size: 1}}
      - name: required
        paths: ["/required"]
        plugins:
          - name: request-size-limiting
            config: {{allowed_payload_size: 10, size_unit: bytes, require_content_length: true}}
"#,
        url = echo.url()
    )
}

/// POST `len` bytes with a Content-Length; status and body.
async fn post(gw: &Gateway, path: &str, len: usize) -> (u16, String) {
    let resp = client()
        .post(format!("{}{path}", gw.proxy_url()))
        .body(vec![b'x'; len])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// POST `chunks` with chunked framing (no Content-Length) from a streaming body.
async fn post_chunked(gw: &Gateway, path: &str, chunks: &[usize]) -> (u16, String) {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
        .iter()
        .map(|n| Ok(Frame::data(Bytes::from(vec![b'y'; *n]))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post(path)
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let resp = hyper_send(gw.proxy_addr(), req).await;
    assert!(
        resp.headers().get("content-length").is_some()
            || resp.headers().get("transfer-encoding").is_some()
    );
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn body_len(body: &str) -> u64 {
    let e: Echoed = serde_json::from_str(body).unwrap_or_else(|_| panic!("echo: {body}"));
    e.body_len
}

fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("json: {body}"));
    assert!(
        is_request_id(v["request_id"].as_str().unwrap_or("")),
        "{body}"
    );
    v["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_in_each_unit() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;

    // bytes: 10 allowed, 11 refused.
    let (status, body) = post(&gw, "/bytes", 10).await;
    assert_eq!(status, 200);
    assert_eq!(body_len(&body), 10);
    let (status, body) = post(&gw, "/bytes", 11).await;
    assert_eq!(status, 413);
    assert_eq!(message(&body), "Request size limit exceeded");

    // kilobytes are 1024 bytes.
    let (status, body) = post(&gw, "/kb", 1024).await;
    assert_eq!(status, 200);
    assert_eq!(body_len(&body), 1024);
    assert_eq!(post(&gw, "/kb", 1025).await.0, 413);

    // megabytes (the default unit) are 2^20 bytes: exactly 1 MiB passes.
    let (status, body) = post(&gw, "/mb", 1 << 20).await;
    assert_eq!(status, 200);
    assert_eq!(body_len(&body), 1 << 20);
    // One byte more is refused from the header alone: the body is never sent.
    let r = exchange(
        gw.proxy_addr(),
        b"POST /mb HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(message(&r.text()), "Request size limit exceeded");

    // The default: 128 MiB.
    let r = exchange(
        gw.proxy_addr(),
        b"POST /default HTTP/1.1\r\nHost: x\r\nContent-Length: 134217729\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 413);
    let (status, body) = post(&gw, "/default", 4096).await;
    assert_eq!(status, 200);
    assert_eq!(body_len(&body), 4096);

    // Requests without a body pass.
    let resp = client()
        .get(format!("{}/bytes", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Error bodies follow Accept.
    let resp = client()
        .post(format!("{}/bytes", gw.proxy_url()))
        .header("accept", "text/plain")
        .body("0123456789ab")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("Request size limit exceeded\nrequest_id: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_gets_417_before_the_body() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    // The client waits for 100 Continue; the gateway refuses from the Content-Length.
    let r = exchange(
        gw.proxy_addr(),
        b"POST /kb HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2048\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 417, "no 100 Continue first: {r:?}");
    assert_eq!(message(&r.text()), "Request size limit exceeded");
    // Case and whitespace do not matter.
    let r = exchange(
        gw.proxy_addr(),
        b"POST /kb HTTP/1.1\r\nHost: x\r\nExpect:  100-Continue \r\nContent-Length: 2048\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 417);
    // Within the limit: 100 Continue, then the upstream's answer.
    let raw = crate::support::raw::exchange_bytes(
        gw.proxy_addr(),
        b"POST /kb HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(echo.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_read_within_the_limit() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;

    // Under the limit: read, then sent upstream whole.
    let (status, body) = post_chunked(&gw, "/bytes", &[3, 3, 4]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body_len(&body), 10);
    // Over it: 413 once the bytes read pass the limit.
    let (status, body) = post_chunked(&gw, "/bytes", &[4, 4, 4]).await;
    assert_eq!(status, 413);
    assert_eq!(message(&body), "Request size limit exceeded");
    let (status, _) = post_chunked(&gw, "/kb", &[512, 512]).await;
    assert_eq!(status, 200);
    let (status, _) = post_chunked(&gw, "/kb", &[512, 512, 1]).await;
    assert_eq!(status, 413);
    // Chunked framing satisfies require_content_length.
    let (status, body) = post_chunked(&gw, "/required", &[2, 2]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body_len(&body), 4);
    let (status, _) = post_chunked(&gw, "/required", &[6, 6]).await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_content_length() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    // No Content-Length and not chunked: 411, even without a body.
    let resp = client()
        .get(format!("{}/required", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 411);
    assert_eq!(
        message(&resp.text().await.unwrap()),
        "A valid Content-Length header is required"
    );
    // With a Content-Length, the size check applies.
    let (status, body) = post(&gw, "/required", 7).await;
    assert_eq!(status, 200);
    assert_eq!(body_len(&body), 7);
    // An explicit `Content-Length: 0` is a valid one.
    let r = exchange(
        gw.proxy_addr(),
        b"POST /required HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(body_len(&r.text()), 0);
    assert_eq!(post(&gw, "/required", 11).await.0, 413);
    // Without the option a bodiless GET passes.
    let resp = client()
        .get(format!("{}/bytes", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors_through_the_admin_api() {
    let Some((_gw, api)) = start_admin(Backend::Memory).await else {
        return;
    };
    let p = api
        .post("/plugins", &json!({"name": "request-size-limiting"}))
        .await
        .expect(201);
    assert_eq!(
        p["config"],
        json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
    );
    api.post(
        "/plugins",
        &json!({"name": "request-size-limiting", "config": {"size_unit": "gigabytes"}}),
    )
    .await
    .expect_json(
        400,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (config.size_unit: expected one of: megabytes, kilobytes, bytes)",
            "fields": {"config": {"size_unit": "expected one of: megabytes, kilobytes, bytes"}},
        }),
    );
    let r = api
        .post(
            "/plugins",
            &json!({"name": "request-size-limiting", "config": {"allowed_payload_size": 1.5, "require_content_length": "no"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["fields"]["config"]["allowed_payload_size"],
        "expected an integer"
    );
    assert_eq!(
        r.body["fields"]["config"]["require_content_length"],
        "expected a boolean"
    );
}
