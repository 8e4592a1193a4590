use crate::support::{Echo, Gateway, client, raw};

fn config(echo: &Echo) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/\"]\n",
        echo.url()
    )
}

/// The gateway still proxies a good request.
async fn still_serving(gw: &Gateway) {
    let resp = client()
        .get(format!("{}/ok", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_header_bytes_are_400() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Val: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n",
    ] {
        let resp = raw::exchange(gw.proxy_addr(), req).await;
        assert_eq!(
            resp.status,
            400,
            "{:?} -> {resp:?}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(echo.hits(), 0);
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_header_is_431() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw::exchange(gw.proxy_addr(), &req).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    assert_eq!(echo.hits(), 0);
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_size_is_400_or_closed() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let req = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let resp = raw::exchange(gw.proxy_addr(), req).await;
    assert!(
        resp.status == 400 || resp.status == 0,
        "bad chunk size answered {} {}",
        resp.status,
        resp.text()
    );
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_request_lines_are_400() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    for req in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let resp = raw::exchange(gw.proxy_addr(), req).await;
        assert!(
            resp.status == 400 || resp.status == 505 || resp.status == 0,
            "{:?} -> {resp:?}",
            String::from_utf8_lossy(req)
        );
        assert!(
            resp.status < 500 || resp.status == 505,
            "5xx for client garbage: {resp:?}"
        );
    }
    assert_eq!(echo.hits(), 0);
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_targets_never_5xx() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    for target in [
        "/../../etc/passwd",
        "/%2e%2e/x",
        "/a/%zz",
        "/%00",
        "/%ff%fe",
        "http://other.test/abs",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw::exchange(gw.proxy_addr(), req.as_bytes()).await;
        assert!(
            resp.status != 0 && resp.status < 500,
            "{target} -> {} {}",
            resp.status,
            resp.text()
        );
    }
    still_serving(&gw).await;
}
