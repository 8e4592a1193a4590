//! rate-limiting (kong-compat §4.3): calendar windows, every `limit_by` with its fallback, Kong's
//! headers and rejection, config validation through the Admin API, counters that survive a
//! reload, and the redis policy against real Redis servers (two gateways sharing one under a
//! concurrent burst, an outage with and without fault tolerance).

use std::time::Duration;

use gwctl::plugins::rate_limiting::window::Period;
use reqwest::Response;
use serde_json::{Value, json};

use crate::support::admin::{Backend, start_admin_with};
use crate::support::redis::{self as rds, PrivateRedis};
use crate::support::{Echo, Gateway, client, is_request_id};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Wait until at least `margin_ms` remain in the current `period` window, so that a test's
/// requests all land in one window.
async fn settle_in_window(period: Period, margin_ms: i64) {
    let now = now_ms();
    let (_, end) = period.window(now);
    if end - now < margin_ms {
        tokio::time::sleep(Duration::from_millis((end - now + 20) as u64)).await;
    }
}

fn h<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

fn num(r: &Response, name: &str) -> i64 {
    h(r, name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers()))
        .parse()
        .unwrap()
}

/// Gateway with the peer trusted, so that tests choose client addresses with X-Real-IP.
async fn gateway(yaml: &str) -> Gateway {
    Gateway::start_with(yaml, |o| o.trusted_ips = vec!["127.0.0.1/32".into()]).await
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = client().get(format!("{}{path}", gw.proxy_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_headers_rejection_and_retry_after() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: r
        paths: ["/rl"]
        plugins:
          - name: rate-limiting
            config: {{minute: 3, limit_by: ip}}
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 5000).await;
    for expected_remaining in [2, 1, 0] {
        let r = get(&gw, "/rl", &[("x-real-ip", "10.0.0.1")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(h(&r, "x-ratelimit-limit-minute"), Some("3"));
        assert_eq!(num(&r, "x-ratelimit-remaining-minute"), expected_remaining);
        assert_eq!(h(&r, "ratelimit-limit"), Some("3"));
        assert_eq!(num(&r, "ratelimit-remaining"), expected_remaining);
        let reset = num(&r, "ratelimit-reset");
        let expected = Period::Minute.reset_secs(now_ms());
        assert!(
            (expected - 1..=expected + 1).contains(&reset),
            "{reset} vs {expected}"
        );
        assert!(h(&r, "retry-after").is_none());
        assert!(h(&r, "x-ratelimit-limit-second").is_none());
    }
    let r = get(&gw, "/rl", &[("x-real-ip", "10.0.0.1")]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 0);
    assert_eq!(num(&r, "ratelimit-remaining"), 0);
    assert_eq!(h(&r, "retry-after"), h(&r, "ratelimit-reset"));
    assert!(num(&r, "retry-after") >= 1);
    assert_eq!(
        h(&r, "content-type"),
        Some("application/json; charset=utf-8")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "API rate limit exceeded");
    assert!(
        is_request_id(body["request_id"].as_str().unwrap()),
        "{body}"
    );
    assert_eq!(
        echo.hits(),
        3,
        "the rejected request never reached the upstream"
    );

    // Another client address has its own counter.
    let r = get(&gw, "/rl", &[("x-real-ip", "10.0.0.2")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_window_resets_at_the_boundary() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: r
        paths: ["/s"]
        plugins:
          - name: rate-limiting
            config: {{second: 2, minute: 100, limit_by: ip}}
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 4000).await;
    // Start right after a second boundary so that the three requests share one second.
    settle_in_window(Period::Second, 900).await;
    let (start, _) = Period::Second.window(now_ms());
    let a = get(&gw, "/s", &[]).await;
    let b = get(&gw, "/s", &[]).await;
    let c = get(&gw, "/s", &[]).await;
    assert_eq!(
        Period::Second.window(now_ms()).0,
        start,
        "test requests took more than the second"
    );
    assert_eq!(
        (
            a.status().as_u16(),
            b.status().as_u16(),
            c.status().as_u16()
        ),
        (200, 200, 429)
    );
    assert_eq!(num(&a, "x-ratelimit-remaining-second"), 1);
    assert_eq!(num(&b, "x-ratelimit-remaining-second"), 0);
    assert_eq!(num(&b, "x-ratelimit-remaining-minute"), 98);
    // The second is the most constraining period, its window ends within a second.
    assert_eq!(h(&b, "ratelimit-limit"), Some("2"));
    assert_eq!(num(&b, "ratelimit-reset"), 1);
    assert_eq!(num(&c, "retry-after"), 1);
    assert_eq!(num(&c, "x-ratelimit-remaining-second"), 0);
    // On a rejection the other periods do not count the request (Kong).
    assert_eq!(num(&c, "x-ratelimit-remaining-minute"), 98);
    // The next second admits again.
    tokio::time::sleep(Duration::from_millis(
        (start + 1000 - now_ms() + 20).max(0) as u64
    ))
    .await;
    let d = get(&gw, "/s", &[]).await;
    assert_eq!(d.status(), 200);
    assert_eq!(num(&d, "x-ratelimit-remaining-second"), 1);
    assert_eq!(num(&d, "x-ratelimit-remaining-minute"), 97);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hour_day_month_year_headers_and_most_constraining_period() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: all
        paths: ["/all"]
        plugins:
          - name: rate-limiting
            config: {{minute: 4.5, hour: 5, day: 6, month: 7, year: 8, limit_by: ip}}
      - name: tie
        paths: ["/tie"]
        plugins:
          - name: rate-limiting
            config: {{minute: 5, hour: 5, limit_by: ip}}
      - name: year
        paths: ["/year"]
        plugins:
          - name: rate-limiting
            config: {{year: 3, limit_by: ip}}
      - name: month
        paths: ["/month"]
        plugins:
          - name: rate-limiting
            config: {{month: 3, limit_by: ip}}
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 5000).await;
    let r = get(&gw, "/all", &[]).await;
    assert_eq!(r.status(), 200);
    for (p, limit, remaining) in [
        ("minute", "4.5", "3.5"),
        ("hour", "5", "4"),
        ("day", "6", "5"),
        ("month", "7", "6"),
        ("year", "8", "7"),
    ] {
        assert_eq!(h(&r, &format!("x-ratelimit-limit-{p}")), Some(limit), "{p}");
        assert_eq!(
            h(&r, &format!("x-ratelimit-remaining-{p}")),
            Some(remaining),
            "{p}"
        );
    }
    // The minute has the fewest left.
    assert_eq!(h(&r, "ratelimit-limit"), Some("4.5"));
    assert_eq!(h(&r, "ratelimit-remaining"), Some("3.5"));
    let reset = num(&r, "ratelimit-reset");
    let expected = Period::Minute.reset_secs(now_ms());
    assert!(
        (expected - 1..=expected + 1).contains(&reset),
        "{reset} vs {expected}"
    );
    // A fractional limit admits while the count is below it: 5 requests for 4.5 per minute.
    for _ in 0..4 {
        assert_eq!(get(&gw, "/all", &[]).await.status(), 200);
    }
    let r = get(&gw, "/all", &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "x-ratelimit-remaining-minute"), Some("0"));
    // The hour is used up too (5 of 5), without counting this request; day, month, year not.
    assert_eq!(h(&r, "x-ratelimit-remaining-hour"), Some("0"));
    assert_eq!(h(&r, "x-ratelimit-remaining-day"), Some("1"));
    assert_eq!(h(&r, "x-ratelimit-remaining-year"), Some("3"));
    // Minute and hour tie at 0: the longer window (the hour) is reported, also in Retry-After.
    assert_eq!(h(&r, "ratelimit-limit"), Some("5"));
    assert_eq!(num(&r, "retry-after"), num(&r, "ratelimit-reset"));
    let expected = Period::Hour.reset_secs(now_ms());
    let reset = num(&r, "retry-after");
    assert!(
        (expected - 1..=expected + 1).contains(&reset),
        "{reset} vs {expected}"
    );

    // Equal remaining: the longer window wins.
    let r = get(&gw, "/tie", &[]).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 4);
    assert_eq!(num(&r, "x-ratelimit-remaining-hour"), 4);
    let expected = Period::Hour.reset_secs(now_ms());
    let reset = num(&r, "ratelimit-reset");
    assert!(
        (expected - 1..=expected + 1).contains(&reset),
        "{reset} vs {expected}"
    );

    for (path, period, name) in [
        ("/year", Period::Year, "year"),
        ("/month", Period::Month, "month"),
    ] {
        let r = get(&gw, path, &[]).await;
        assert_eq!(h(&r, &format!("x-ratelimit-limit-{name}")), Some("3"));
        assert_eq!(h(&r, &format!("x-ratelimit-remaining-{name}")), Some("2"));
        let expected = period.reset_secs(now_ms());
        let reset = num(&r, "ratelimit-reset");
        assert!(
            (expected - 2..=expected + 2).contains(&reset),
            "{name}: {reset} vs {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_by_and_its_fallback() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: header
        paths: ["/header"]
        plugins:
          - name: rate-limiting
            config: {{minute: 2, limit_by: header, header_name: X-App}}
      - name: path
        paths: ["/path"]
        plugins:
          - name: rate-limiting
            config: {{minute: 2, limit_by: path, path: /path/counted}}
      - name: consumer
        paths: ["/consumer"]
        plugins:
          - name: rate-limiting
            config: {{minute: 2}}
      - name: credential
        paths: ["/credential"]
        plugins:
          - name: rate-limiting
            config: {{minute: 2, limit_by: credential}}
  - name: shared
    url: {url}
    plugins:
      - name: rate-limiting
        config: {{minute: 3, limit_by: service}}
    routes:
      - name: one
        paths: ["/one"]
      - name: two
        paths: ["/two"]
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 8000).await;
    let st = |r: Response| r.status().as_u16();

    // header: per header value; without the header, per client IP.
    for _ in 0..2 {
        assert_eq!(st(get(&gw, "/header", &[("x-app", "a")]).await), 200);
    }
    assert_eq!(st(get(&gw, "/header", &[("x-app", "a")]).await), 429);
    assert_eq!(
        st(get(&gw, "/header", &[("x-app", "b"), ("x-real-ip", "10.1.0.1")]).await),
        200,
        "another header value, same IP"
    );
    for _ in 0..2 {
        assert_eq!(
            st(get(&gw, "/header", &[("x-real-ip", "10.1.0.1")]).await),
            200
        );
    }
    assert_eq!(
        st(get(&gw, "/header", &[("x-real-ip", "10.1.0.1")]).await),
        429,
        "no header: counted per IP"
    );
    assert_eq!(
        st(get(&gw, "/header", &[("x-real-ip", "10.1.0.2")]).await),
        200
    );

    // path: the configured path is one counter for every client; other paths count per IP.
    for ip in ["10.2.0.1", "10.2.0.2"] {
        assert_eq!(
            st(get(&gw, "/path/counted", &[("x-real-ip", ip)]).await),
            200
        );
    }
    assert_eq!(
        st(get(&gw, "/path/counted", &[("x-real-ip", "10.2.0.3")]).await),
        429
    );
    for _ in 0..2 {
        assert_eq!(
            st(get(&gw, "/path/other", &[("x-real-ip", "10.2.0.1")]).await),
            200
        );
    }
    assert_eq!(
        st(get(&gw, "/path/other", &[("x-real-ip", "10.2.0.1")]).await),
        429
    );
    assert_eq!(
        st(get(&gw, "/path/other", &[("x-real-ip", "10.2.0.2")]).await),
        200
    );

    // consumer and credential without authentication: per client IP.
    for path in ["/consumer", "/credential"] {
        for _ in 0..2 {
            assert_eq!(st(get(&gw, path, &[("x-real-ip", "10.3.0.1")]).await), 200);
        }
        assert_eq!(
            st(get(&gw, path, &[("x-real-ip", "10.3.0.1")]).await),
            429,
            "{path}"
        );
        assert_eq!(
            st(get(&gw, path, &[("x-real-ip", "10.3.0.2")]).await),
            200,
            "{path}"
        );
    }

    // service: one counter for the service, whichever route and client.
    assert_eq!(
        st(get(&gw, "/one", &[("x-real-ip", "10.4.0.1")]).await),
        200
    );
    assert_eq!(
        st(get(&gw, "/two", &[("x-real-ip", "10.4.0.2")]).await),
        200
    );
    assert_eq!(
        st(get(&gw, "/one", &[("x-real-ip", "10.4.0.3")]).await),
        200
    );
    let r = get(&gw, "/two", &[("x-real-ip", "10.4.0.4")]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_headers_custom_error_and_formats() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: hidden
        paths: ["/hidden"]
        plugins:
          - name: rate-limiting
            config: {{minute: 1, limit_by: ip, hide_client_headers: true}}
      - name: custom
        paths: ["/custom"]
        plugins:
          - name: rate-limiting
            config: {{minute: 1, limit_by: ip, error_code: 503, error_message: "Slow down"}}
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 5000).await;
    let r = get(&gw, "/hidden", &[]).await;
    assert_eq!(r.status(), 200);
    let r2 = get(&gw, "/hidden", &[]).await;
    assert_eq!(r2.status(), 429);
    for resp in [&r, &r2] {
        for name in [
            "x-ratelimit-limit-minute",
            "x-ratelimit-remaining-minute",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
        ] {
            assert!(
                h(resp, name).is_none(),
                "{name} shown: {:?}",
                resp.headers()
            );
        }
    }
    assert_eq!(get(&gw, "/custom", &[]).await.status(), 200);
    let r = get(&gw, "/custom", &[]).await;
    assert_eq!(r.status(), 503);
    assert!(num(&r, "retry-after") >= 1);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Slow down");
    let r = get(&gw, "/custom", &[("accept", "text/plain")]).await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("Slow down\nrequest_id: "), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_validation_through_the_admin_api() {
    let (_gw, api) = start_admin_with(Backend::Memory, |_| {}).await.unwrap();
    let post = |config: Value| {
        let api = &api;
        async move {
            api.post(
                "/plugins",
                &json!({"name": "rate-limiting", "config": config}),
            )
            .await
        }
    };
    let r = post(json!({"minute": 20, "hour": 10})).await;
    r.expect_json(
        400,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (config: The limit for hour(10.0) cannot be lower than the limit for minute(20.0))",
            "fields": {"config": "The limit for hour(10.0) cannot be lower than the limit for minute(20.0)"}
        }),
    );
    let r = post(json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r["fields"]["config"],
        "at least one of these fields must be non-empty: 'config.second', 'config.minute', \
         'config.hour', 'config.day', 'config.month', 'config.year'"
    );
    let r = post(json!({"minute": 1, "limit_by": "header"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r["fields"]["config"]["header_name"],
        "required field missing"
    );
    let r = post(json!({"minute": 1, "limit_by": "path"})).await;
    assert_eq!(r["fields"]["config"]["path"], "required field missing");
    let r = post(json!({"minute": 1, "limit_by": "nobody"})).await;
    assert_eq!(
        r["fields"]["config"]["limit_by"],
        "expected one of: consumer, credential, ip, service, header, path"
    );
    let r = post(json!({"minute": 0})).await;
    assert_eq!(
        r["fields"]["config"]["minute"],
        "value must be greater than 0"
    );
    let r = post(json!({"minute": 1, "policy": "cluster"})).await;
    assert_eq!(r.status, 400);
    let msg = r["fields"]["config"]["policy"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("does not support the 'cluster' policy"),
        "{msg}"
    );
    assert!(msg.contains("use 'redis'"), "{msg}");
    let r = post(json!({"minute": 1, "policy": "redis"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r["fields"]["config"]["redis"]["host"],
        "required field missing"
    );
    let r = post(json!({"minute": 1, "sync_rate": 5})).await;
    assert_eq!(
        r["fields"]["config"],
        "sync_rate can only be used with the redis policy"
    );
    let r =
        post(json!({"minute": 1, "policy": "redis", "redis_host": "h", "sync_rate": 0.01})).await;
    assert_eq!(
        r["fields"]["config"],
        "sync_rate must be greater than 0.02, or -1 to disable"
    );
    let r = post(json!({"minute": 1, "redis_port": "x", "bogus": 1})).await;
    assert_eq!(r["fields"]["config"]["redis_port"], "expected an integer");
    assert_eq!(r["fields"]["config"]["bogus"], "unknown field");

    // The flat names of Kong 3.0-3.5 are accepted, mapped onto config.redis, and shown back
    // (Kong 3.9's translate_backwards).
    let flat = json!({
        "minute": 100, "policy": "redis",
        "redis_host": "custom-host.example.test", "redis_port": 55000,
        "redis_username": "test1", "redis_password": "testX", "redis_database": 1,
        "redis_timeout": 1100, "redis_ssl": true, "redis_ssl_verify": true,
        "redis_server_name": "example.test",
    });
    let created = post(flat.clone()).await.expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    let same = |c: &Value, host: &str| {
        assert_eq!(c["redis"]["host"], host);
        assert_eq!(c["redis_host"], host);
        for (flat_name, nested) in [
            ("redis_port", "port"),
            ("redis_username", "username"),
            ("redis_password", "password"),
            ("redis_database", "database"),
            ("redis_timeout", "timeout"),
            ("redis_ssl", "ssl"),
            ("redis_ssl_verify", "ssl_verify"),
            ("redis_server_name", "server_name"),
        ] {
            assert_eq!(c["redis"][nested], flat[flat_name], "redis.{nested}");
            assert_eq!(c[flat_name], flat[flat_name], "{flat_name}");
        }
    };
    same(&created["config"], "custom-host.example.test");
    assert_eq!(created["config"]["sync_rate"], -1);
    let patched = api
        .patch(
            &format!("/plugins/{id}"),
            &json!({"config": {"redis_host": "testhost"}}),
        )
        .await
        .expect(200);
    same(&patched["config"], "testhost");
    let patched = api
        .patch(
            &format!("/plugins/{id}"),
            &json!({"config": {"redis": {"host": "nested.test"}}}),
        )
        .await
        .expect(200);
    same(&patched["config"], "nested.test");
    let got = api.get(&format!("/plugins/{id}")).await.expect(200);
    same(&got["config"], "nested.test");
    // A round trip of what GET shows is accepted unchanged.
    let mut body = got.clone();
    for k in ["id", "created_at", "updated_at"] {
        body.as_object_mut().unwrap().remove(k);
    }
    let put = api.put(&format!("/plugins/{id}"), &body).await.expect(200);
    assert_eq!(put["config"], got["config"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_counters_survive_a_reload() {
    let echo = Echo::start("e").await;
    let (gw, api) = start_admin_with(Backend::Memory, |_| {}).await.unwrap();
    api.post("/services", &json!({"name": "s", "url": echo.url()}))
        .await
        .expect(201);
    api.post(
        "/services/s/routes",
        &json!({"name": "r", "paths": ["/rl"]}),
    )
    .await
    .expect(201);
    api.post(
        "/routes/r/plugins",
        &json!({"name": "rate-limiting", "config": {"minute": 3, "limit_by": "ip"}}),
    )
    .await
    .expect(201);
    settle_in_window(Period::Minute, 10_000).await;
    let url = format!("{}/rl", gw.proxy_url());
    // The plugin, not only the route, must be live: a snapshot with the route alone answers 200
    // without counting (the proxy's configuration follows the admin writes asynchronously).
    assert_eventually!(
        Duration::from_secs(10),
        {
            let r = client().get(&url).send().await.unwrap();
            r.status() == 200 && h(&r, "x-ratelimit-limit-minute") == Some("3")
        },
        "route and plugin reach the proxy"
    );
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 1);
    // An unrelated change republishes the configuration (new snapshot, new handlers).
    api.post("/consumers", &json!({"username": "someone"}))
        .await
        .expect(201);
    api.post("/services", &json!({"name": "other", "url": echo.url()}))
        .await
        .expect(201);
    api.post(
        "/services/other/routes",
        &json!({"name": "o", "paths": ["/other"]}),
    )
    .await
    .expect(201);
    let other = format!("{}/other", gw.proxy_url());
    assert_eventually!(
        Duration::from_secs(10),
        client().get(&other).send().await.unwrap().status() == 200,
        "the new route is live, so the reload happened"
    );
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        num(&r, "x-ratelimit-remaining-minute"),
        0,
        "the count went on"
    );
    assert_eq!(client().get(&url).send().await.unwrap().status(), 429);
    // Changing the plugin's own limit keeps the count too (as in Kong).
    let plugins = api.get("/routes/r/plugins").await.expect(200);
    let pid = plugins["data"][0]["id"].as_str().unwrap().to_owned();
    api.patch(
        &format!("/plugins/{pid}"),
        &json!({"config": {"minute": 5}}),
    )
    .await
    .expect(200);
    assert_eventually!(
        Duration::from_secs(10),
        {
            let r = client().get(&url).send().await.unwrap();
            h(&r, "x-ratelimit-limit-minute") == Some("5")
        },
        "the new limit is live"
    );
    // 3 counted under the old limit, 1 by the request that saw the new one: one more passes.
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 0);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 429);
    // A PATCH of one config field keeps the others (Kong merges the config).
    let got = api.get(&format!("/plugins/{pid}")).await.expect(200);
    assert_eq!(got["config"]["limit_by"], "ip");
}

/// Redis config lines for a plugin (`policy: redis` on `url`).
fn redis_conf(url: &str, extra: &str) -> String {
    let (host, port) = rds::host_port(url);
    format!(
        "{{minute: 20, limit_by: ip, policy: redis, redis: {{host: \"{host}\", port: {port}, timeout: 500}}{extra}}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_gateways_share_exact_limit_under_a_burst() {
    let Some(url) = rds::url() else {
        return rds::skip_note(
            "plugins::rate_limiting::redis_two_gateways_share_exact_limit_under_a_burst",
        );
    };
    let echo = Echo::start("e").await;
    // Both nodes carry the same entity ids (as nodes sharing one configuration do), so they
    // share the counter keys.
    let (sid, rid) = (uuid(), uuid());
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    id: {sid}
    url: {url_e}
    routes:
      - name: r
        id: {rid}
        paths: ["/burst"]
        plugins:
          - name: rate-limiting
            config: {conf}
"#,
        url_e = echo.url(),
        conf = redis_conf(&url, "")
    );
    let a = gateway(&yaml).await;
    let b = gateway(&yaml).await;
    settle_in_window(Period::Minute, 15_000).await;
    let c = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let base = if i % 2 == 0 {
            a.proxy_url()
        } else {
            b.proxy_url()
        };
        let c = c.clone();
        tasks.spawn(async move {
            let r = c
                .get(format!("{base}/burst"))
                .header("x-real-ip", "10.9.9.9")
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    let mut passed = 0;
    let mut rejected = 0;
    while let Some(s) = tasks.join_next().await {
        match s.unwrap() {
            200 => passed += 1,
            429 => rejected += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((passed, rejected), (20, 180));
    assert_eq!(echo.hits(), 20);

    // Kong's key, with the zero UUID for the unscoped service, and an expiry.
    let mut conn = rds::connect(&url).await;
    let (start, end) = Period::Minute.window(now_ms());
    let key =
        format!("ratelimit:{rid}:00000000-0000-0000-0000-000000000000:10.9.9.9:{start}:minute");
    let count: i64 = ::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 20);
    let before = now_ms();
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The expiry is the window's end plus 5 s of slack (give or take the time the script
    // waited after the gateway read its clock).
    assert!(
        ttl > end - before && ttl <= end - before + 6_000,
        "ttl {ttl} end {end} before {before}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fault_tolerance_and_recovery() {
    if rds::url().is_none() {
        return rds::skip_note("plugins::rate_limiting::redis_outage_fault_tolerance_and_recovery");
    }
    let mut redis = PrivateRedis::start();
    let echo = Echo::start("e").await;
    let (host, port) = ("127.0.0.1", redis.port());
    // The flat (Kong 3.0-3.5) names work as well as the nested ones.
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: {url}
    routes:
      - name: tolerant
        paths: ["/tolerant"]
        plugins:
          - name: rate-limiting
            config: {{minute: 3, limit_by: ip, policy: redis, redis_host: "{host}", redis_port: {port}, redis_timeout: 500, redis_database: 2}}
      - name: strict
        paths: ["/strict"]
        plugins:
          - name: rate-limiting
            config: {{minute: 3, limit_by: ip, policy: redis, fault_tolerant: false, redis: {{host: "{host}", port: {port}, timeout: 500}}}}
"#,
        url = echo.url()
    );
    let gw = gateway(&yaml).await;
    settle_in_window(Period::Minute, 20_000).await;
    let r = get(&gw, "/tolerant", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 2);
    let r = get(&gw, "/strict", &[]).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-minute"), 2);
    // The flat redis_database reached the connection: the counter is in database 2.
    let mut conn = rds::connect(&format!("{}/2", redis.url())).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("ratelimit:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    drop(conn);

    redis.stop();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let r = get(&gw, "/tolerant", &[]).await;
        assert_eq!(r.status(), 200, "fault tolerant: the request passes");
        assert!(h(&r, "x-ratelimit-limit-minute").is_none());
        assert!(h(&r, "ratelimit-remaining").is_none());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        let r = get(&gw, "/strict", &[]).await;
        assert_eq!(r.status(), 500);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["message"], "An unexpected error occurred");
    }
    assert!(echo.hits() >= 7);

    redis.start_again();
    // The server came back empty: counting starts again, and limits apply again.
    assert_eventually!(
        Duration::from_secs(15),
        get(&gw, "/strict", &[]).await.status() == 200,
        "the strict route recovers"
    );
    assert_eventually!(
        Duration::from_secs(15),
        h(
            &get(&gw, "/tolerant", &[]).await,
            "x-ratelimit-limit-minute"
        ) == Some("3"),
        "the tolerant route counts again"
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&gw, "/tolerant", &[]).await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}
