//! circuit-breaker (gwctl's own): failures open the breaker, open answers 503 without touching
//! the upstream, half-open admits only the probes, successes close it, a failed probe reopens it;
//! each step seen in the Admin API; the state survives a reload; schema errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::admin::{AdminApi, Backend};
use crate::support::{Echo, Gateway, client, is_request_id, refused_addr};

fn config(echo: &Echo) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: flaky
    url: {echo}
    routes:
      - name: flaky
        paths: ["/flaky"]
    plugins:
      - name: circuit-breaker
        config: {{failure_threshold: 3, success_threshold: 2, cool_down: 3, half_open_probes: 1}}
  - name: down
    url: http://{down}
    retries: 0
    routes:
      - name: down
        paths: ["/down"]
    plugins:
      - name: circuit-breaker
        config: {{failure_threshold: 2, cool_down: 30}}
  - name: teapot
    url: {echo}
    routes:
      - name: teapot
        paths: ["/teapot"]
    plugins:
      - name: circuit-breaker
        config: {{failure_threshold: 1, failure_statuses: [418]}}
"#,
        echo = echo.url(),
        down = refused_addr(),
    )
}

async fn start(yaml: &str) -> (Gateway, AdminApi) {
    let gw = Gateway::start_with(yaml, |o| o.admin_listen = "127.0.0.1:0".into()).await;
    let addr = gw.bound.admin.expect("admin bound");
    let api = AdminApi {
        base: format!("http://{addr}"),
        client: client(),
        addr,
        proxy: gw.proxy_url(),
        backend: Backend::Memory,
    };
    (gw, api)
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

async fn call(api: &AdminApi, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().get(format!("{}{path}", api.proxy));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.text().await.unwrap();
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn breaker(api: &AdminApi, service: &str) -> Value {
    api.get(&format!("/services/{service}/circuit-breaker"))
        .await
        .expect(200)
}

/// Wait until the breaker of `service` satisfies `pred` (the log phase records outcomes once
/// the response ended, just after the client read it).
async fn wait_breaker(api: &AdminApi, service: &str, what: &str, pred: impl Fn(&Value) -> bool) {
    let mut last: Value;
    assert_eventually!(
        Duration::from_secs(10),
        {
            last = breaker(api, service).await;
            pred(&last)
        },
        "{service}: {what}; last {last}"
    );
}

fn assert_open_answer(a: &Answer, max_retry: u64) {
    assert_eq!(a.status, 503, "{}", a.body);
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        body["message"],
        "Service unavailable (circuit breaker open)"
    );
    assert!(
        is_request_id(body["request_id"].as_str().unwrap()),
        "{body}"
    );
    let retry: u64 = a
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=max_retry).contains(&retry), "Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_rejects_probes_and_closes() {
    let echo = Echo::start("e").await;
    let (gw, api) = start(&config(&echo)).await;

    // Untouched: closed, nothing counted; unknown service: 404.
    let b = breaker(&api, "flaky").await;
    assert_eq!(b["state"], "closed");
    assert_eq!(b["service"]["name"], "flaky");
    api.get("/services/nope/circuit-breaker").await.expect(404);

    // Closed: successes pass; upstream 500s count, a success in between resets the count.
    for _ in 0..3 {
        assert_eq!(call(&api, "/flaky", &[]).await.status, 200);
    }
    echo.set_fail(true);
    for n in 1..=2 {
        assert_eq!(call(&api, "/flaky", &[]).await.status, 500);
        wait_breaker(&api, "flaky", "counting", |b| b["failures"] == n).await;
    }
    echo.set_fail(false);
    assert_eq!(call(&api, "/flaky", &[]).await.status, 200);
    wait_breaker(&api, "flaky", "reset by a success", |b| b["failures"] == 0).await;
    assert_eq!(breaker(&api, "flaky").await["state"], "closed");

    // Three consecutive failures open it.
    echo.set_fail(true);
    for _ in 0..3 {
        assert_eq!(call(&api, "/flaky", &[]).await.status, 500);
    }
    wait_breaker(&api, "flaky", "open", |b| b["state"] == "open").await;
    let b = breaker(&api, "flaky").await;
    assert_eq!(b["times_opened"], 1);
    assert!(b["opened_at"].as_u64().unwrap() > 1_600_000_000, "{b}");
    assert!(b["cool_down_remaining"].as_f64().unwrap() <= 3.0, "{b}");

    // Open: 503 at once with Retry-After, the upstream is not contacted.
    let hits = echo.hits();
    for _ in 0..5 {
        assert_open_answer(&call(&api, "/flaky", &[]).await, 3);
    }
    assert_eq!(echo.hits(), hits, "open breaker sends nothing upstream");
    // The error body follows Accept like Kong's errors.
    let a = call(&api, "/flaky", &[("accept", "text/plain")]).await;
    assert_eq!(a.status, 503);
    assert!(
        a.body
            .starts_with("Service unavailable (circuit breaker open)\nrequest_id: "),
        "{}",
        a.body
    );
    // gwctl's own endpoints are listed with Kong's.
    let endpoints = api.get("/endpoints").await.expect(200);
    for e in ["/circuit-breakers", "/services/{services}/circuit-breaker"] {
        assert!(
            endpoints["data"].as_array().unwrap().iter().any(|v| v == e),
            "{e} in {endpoints}"
        );
    }
    let list = api.get("/circuit-breakers").await.expect(200);
    let rows = list["data"].as_array().unwrap();
    let flaky = rows
        .iter()
        .find(|r| r["service"]["name"] == "flaky")
        .expect("listed");
    assert_eq!(flaky["state"], "open");
    assert!(
        !rows.iter().any(|r| r["service"]["name"] == "down"),
        "no traffic, no row"
    );

    // Half-open after the cool-down; the upstream recovered.
    echo.set_fail(false);
    wait_breaker(&api, "flaky", "half-open", |b| b["state"] == "half_open").await;
    // One probe at a time: a slow probe holds the slot, the next request is refused.
    let probe_api = api.clone();
    let probe =
        tokio::spawn(
            async move { call(&probe_api, "/flaky", &[("x-echo-delay-ms", "1500")]).await },
        );
    assert_eventually!(
        Duration::from_secs(10),
        echo.hits() == hits + 1,
        "probe sent"
    );
    let b = breaker(&api, "flaky").await;
    assert_eq!(b["probes_in_flight"], 1, "{b}");
    let a = call(&api, "/flaky", &[]).await;
    assert_open_answer(&a, 1);
    assert_eq!(echo.hits(), hits + 1, "only the probe reached the upstream");
    assert_eq!(probe.await.unwrap().status, 200);
    wait_breaker(&api, "flaky", "one success", |b| b["successes"] == 1).await;
    assert_eq!(breaker(&api, "flaky").await["state"], "half_open");
    // The second success closes it.
    assert_eq!(call(&api, "/flaky", &[]).await.status, 200);
    wait_breaker(&api, "flaky", "closed", |b| b["state"] == "closed").await;
    assert_eq!(breaker(&api, "flaky").await["failures"], 0);
    assert_eq!(call(&api, "/flaky", &[]).await.status, 200);

    // A failed probe opens it again.
    echo.set_fail(true);
    for _ in 0..3 {
        assert_eq!(call(&api, "/flaky", &[]).await.status, 500);
    }
    wait_breaker(&api, "flaky", "open again", |b| b["state"] == "open").await;
    wait_breaker(&api, "flaky", "half-open again", |b| {
        b["state"] == "half_open"
    })
    .await;
    let before = echo.hits();
    assert_eq!(
        call(&api, "/flaky", &[]).await.status,
        500,
        "the probe fails"
    );
    assert_eq!(echo.hits(), before + 1);
    wait_breaker(&api, "flaky", "reopened", |b| {
        b["state"] == "open" && b["times_opened"] == 3
    })
    .await;
    assert_open_answer(&call(&api, "/flaky", &[]).await, 3);
    assert_eq!(echo.hits(), before + 1);

    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_and_configured_statuses_count() {
    let echo = Echo::start("e").await;
    let (gw, api) = start(&config(&echo)).await;

    // A refused upstream: 502 from the gateway, two of them open the breaker.
    for _ in 0..2 {
        assert_eq!(call(&api, "/down", &[]).await.status, 502);
    }
    wait_breaker(&api, "down", "open", |b| b["state"] == "open").await;
    assert_open_answer(&call(&api, "/down", &[]).await, 30);

    // failure_statuses: [418] - a 500 is a success there, a 418 a failure.
    assert_eq!(
        call(&api, "/teapot", &[("x-echo-status", "500")])
            .await
            .status,
        500
    );
    wait_breaker(&api, "teapot", "seen", |b| {
        b["changed_at"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(breaker(&api, "teapot").await["state"], "closed");
    assert_eq!(
        call(&api, "/teapot", &[("x-echo-status", "418")])
            .await
            .status,
        418
    );
    wait_breaker(&api, "teapot", "open", |b| b["state"] == "open").await;

    // Other services are not affected.
    assert_eq!(breaker(&api, "flaky").await["state"], "closed");
    assert_eq!(call(&api, "/flaky", &[]).await.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_reload() {
    let echo = Echo::start("e").await;
    let (gw, api) = start(&config(&echo)).await;
    for _ in 0..2 {
        assert_eq!(call(&api, "/down", &[]).await.status, 502);
    }
    wait_breaker(&api, "down", "open", |b| b["state"] == "open").await;
    let before = breaker(&api, "down").await;

    // An unrelated write: a new service and route. Once it routes, the new snapshot serves.
    let svc = api
        .post("/services", &json!({"name": "other", "url": echo.url()}))
        .await
        .expect(201);
    api.post(
        "/routes",
        &json!({"name": "other", "paths": ["/other"], "service": {"id": svc["id"]}}),
    )
    .await
    .expect(201);
    crate::support::admin::wait_proxy(&api, "/other", 200).await;
    // And a change to the breaker's own plugin config (same plugin id): still open.
    let plugins = api.get("/services/down/plugins").await.expect(200);
    let id = plugins["data"][0]["id"].as_str().unwrap().to_owned();
    api.patch(
        &format!("/plugins/{id}"),
        &json!({"config": {"failure_threshold": 4}}),
    )
    .await
    .expect(200);
    crate::support::admin::wait_proxy(&api, "/other", 200).await;

    assert_open_answer(&call(&api, "/down", &[]).await, 30);
    let after = breaker(&api, "down").await;
    assert_eq!(after["state"], "open");
    assert_eq!(after["opened_at"], before["opened_at"]);
    assert_eq!(after["times_opened"], 1);

    // Deleting the service drops its breaker.
    api.delete(&format!("/plugins/{id}")).await.expect(204);
    api.delete("/routes/down").await.expect(204);
    api.delete("/services/down").await.expect(204);
    let mut rows: Value;
    assert_eventually!(
        Duration::from_secs(10),
        {
            rows = api.get("/circuit-breakers").await.expect(200);
            !rows["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["service"]["name"] == "down")
        },
        "breaker of a deleted service still listed: {rows}"
    );

    // With no circuit-breaker plugin left, no state is shown (nothing drives it).
    assert_eq!(call(&api, "/flaky", &[]).await.status, 200);
    wait_breaker(&api, "flaky", "seen", |b| {
        b["changed_at"].as_u64() > Some(0)
    })
    .await;
    for p in api.list_all("/plugins").await {
        assert_eq!(p["name"], "circuit-breaker");
        api.delete(&format!("/plugins/{}", p["id"].as_str().unwrap()))
            .await
            .expect(204);
    }
    let rows = api.get("/circuit-breakers").await.expect(200);
    assert_eq!(rows["data"], json!([]), "{rows}");
    assert_eq!(breaker(&api, "flaky").await["changed_at"], 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors_through_the_admin_api() {
    let echo = Echo::start("e").await;
    let (gw, api) = start(&config(&echo)).await;
    let r = api
        .post(
            "/plugins",
            &json!({"name": "circuit-breaker", "config": {
                "failure_threshold": 0, "cool_down": -1, "half_open_probes": "x",
                "failure_statuses": [700], "bogus": true}}),
        )
        .await;
    let body = r.expect(400);
    assert_eq!(body["name"], "schema violation", "{body}");
    let c = &body["fields"]["config"];
    assert_eq!(
        c["failure_threshold"], "value should be between 1 and 1000000",
        "{body}"
    );
    assert_eq!(
        c["cool_down"], "value should be greater than 0 and at most 86400",
        "{body}"
    );
    assert_eq!(c["half_open_probes"], "expected an integer", "{body}");
    assert_eq!(
        c["failure_statuses"][0], "value should be between 100 and 599",
        "{body}"
    );
    assert_eq!(c["bogus"], "unknown field", "{body}");

    // Defaults.
    let body = api
        .post("/plugins", &json!({"name": "circuit-breaker"}))
        .await
        .expect(201);
    assert_eq!(
        body["config"],
        json!({"failure_threshold": 5, "success_threshold": 2, "cool_down": 60,
               "half_open_probes": 1, "failure_statuses": [500, 502, 503, 504]})
    );
    // Not for consumers: the breaker is per service.
    let consumer = api
        .post("/consumers", &json!({"username": "c"}))
        .await
        .expect(201);
    let r = api
        .post(
            "/plugins",
            &json!({"name": "circuit-breaker", "consumer": {"id": consumer["id"]}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    gw.stop().await;
}
