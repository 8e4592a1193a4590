use crate::support::{Echo, Echoed, Gateway, TempDir, client, tls};

fn config(url: &str, extra: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {url}\n{extra}    routes:\n      - paths: [\"/\"]\n      - paths: [\"/secure\"]\n        protocols: [\"https\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_prior_knowledge() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo.url(), "")).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    for i in 0..3 {
        let resp = c
            .post(format!("{}/h2/{i}?x=1", gw.proxy_url()))
            .body("hello")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let e: Echoed = resp.json().await.expect("echo");
        assert_eq!(e.path, format!("/h2/{i}?x=1"));
        assert_eq!(e.version, "HTTP/1.1");
        assert_eq!(e.body_len, 5);
        assert_eq!(e.header("host"), echo.authority());
    }
}

async fn tls_gateway(echo: &Echo) -> (Gateway, TempDir, String) {
    let (cert, key) = tls::self_signed(&["gw.test"]);
    let dir = TempDir::new();
    let cert_path = dir.write("cert.pem", &cert);
    let key_path = dir.write("key.pem", &key);
    let gw = Gateway::start_with(&config(&echo.url(), ""), |o| {
        o.proxy_tls_listen = vec!["127.0.0.1:0".into()];
        o.tls_cert = Some(cert_path);
        o.tls_key = Some(key_path);
    })
    .await;
    (gw, dir, cert)
}

fn tls_client(gw: &Gateway, cert: &str, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("cert"))
        .resolve("gw.test", gw.bound.proxy_tls[0]);
    if http1 {
        b = b.http1_only();
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_alpn_h1_and_h2() {
    let echo = Echo::start("e").await;
    let (gw, _dir, cert) = tls_gateway(&echo).await;
    let port = gw.bound.proxy_tls[0].port();
    for (http1, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let c = tls_client(&gw, &cert, http1);
        let resp = c
            .get(format!("https://gw.test:{port}/secure/x"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200, "https-only route over TLS");
        let e: Echoed = resp.json().await.expect("echo");
        assert_eq!(e.header("x-forwarded-proto"), "https");
        assert_eq!(e.header("x-forwarded-port"), port.to_string());
        assert_eq!(e.path, "/x");
    }
    // The plain listener still refuses the https-only route.
    let resp = client()
        .get(format!("{}/secure/x", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 426);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_without_and_with_verification() {
    let (cert, key) = tls::self_signed(&["localhost", "127.0.0.1"]);
    let up = Echo::start_tls("tls-up", tls::acceptor(&cert, &key)).await;
    let url = format!("https://127.0.0.1:{}", up.addr.port());

    let gw = Gateway::start(&config(&url, "")).await;
    let resp = client()
        .get(format!("{}/over-tls", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let e: Echoed = resp.json().await.expect("echo");
    assert_eq!(e.instance, "tls-up");
    assert_eq!(e.path, "/over-tls");
    gw.stop().await;

    let gw = Gateway::start(&config(&url, "    tls_verify: true\n    retries: 1\n")).await;
    let hits = up.hits();
    let resp = client()
        .get(format!("{}/over-tls", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        v["message"],
        "An invalid response was received from the upstream server"
    );
    assert_eq!(
        up.hits(),
        hits,
        "no request may reach an untrusted upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_verified_against_a_ca_certificates_bundle() {
    // Kong accepts only CA certificates (basic constraint CA:TRUE) as ca_certificates.
    let (ca, cert, key) = tls::ca_signed(&["localhost", "127.0.0.1"]);
    let up = Echo::start_tls("tls-ca", tls::acceptor(&cert, &key)).await;
    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!(
        "_format_version: \"3.0\"\nca_certificates:\n  - id: 8c4f4c0e-7f5a-4d38-9b7e-0a4c2f1d9e11\n    cert: |\n{indented}services:\n  - url: https://127.0.0.1:{}\n    tls_verify: true\n    ca_certificates: [8c4f4c0e-7f5a-4d38-9b7e-0a4c2f1d9e11]\n    routes:\n      - paths: [\"/\"]\n",
        up.addr.port()
    );
    let gw = Gateway::start(&yaml).await;
    let resp = client()
        .get(format!("{}/verified", gw.proxy_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let e: Echoed = resp.json().await.expect("echo");
    assert_eq!(e.instance, "tls-ca");
    gw.stop().await;
}
