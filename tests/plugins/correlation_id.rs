//! correlation-id (kong-compat §4.7): generated when absent, kept when sent, echoed on demand.

use crate::support::{Echo, Echoed, Gateway, client};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: plain
        paths: ["/plain"]
        plugins:
          - name: correlation-id
      - name: echoed
        paths: ["/echoed"]
        plugins:
          - name: correlation-id
            config: {{header_name: X-Corr, generator: uuid, echo_downstream: true}}
      - name: none
        paths: ["/none"]
"#,
        url = echo.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_kept_and_echoed() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();

    // Default: header Kong-Request-ID, generator uuid#counter, not echoed.
    let resp = c
        .get(format!("{}/plain", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("kong-request-id").is_none());
    let e: Echoed = resp.json().await.unwrap();
    let first = e.header("kong-request-id").to_owned();
    let (worker, n) = first.split_once('#').expect("uuid#counter");
    assert!(uuid::Uuid::parse_str(worker).is_ok(), "{first}");
    let n: u64 = n.parse().unwrap();
    let e: Echoed = c
        .get(format!("{}/plain", gw.proxy_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = e.header("kong-request-id").to_owned();
    assert_eq!(second, format!("{worker}#{}", n + 1), "the counter counts");

    // A client-sent id is kept as it is.
    let e: Echoed = c
        .get(format!("{}/plain", gw.proxy_url()))
        .header("kong-request-id", "mine-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e.header("kong-request-id"), "mine-1");

    // uuid generator, echoed downstream.
    let resp = c
        .get(format!("{}/echoed", gw.proxy_url()))
        .send()
        .await
        .unwrap();
    let echoed = resp.headers()["x-corr"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    let e: Echoed = resp.json().await.unwrap();
    assert_eq!(e.header("x-corr"), echoed);

    // Routes without the plugin are untouched.
    let e: Echoed = c
        .get(format!("{}/none", gw.proxy_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!e.has("kong-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_a_schema_violation() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {}
    plugins:
      - name: correlation-id
        config: {{generator: nope, extra: 1}}
"#,
        echo.url()
    );
    let err = Gateway::try_start_with(&yaml, |_| {})
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("expected one of: uuid, uuid#counter, tracker"),
        "{msg}"
    );
    assert!(msg.contains("unknown field"), "{msg}");
}
