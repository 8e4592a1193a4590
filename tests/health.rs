use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Echo, Gateway, client};

const ACTIVE: &str = r#"    healthchecks:
      active:
        type: http
        http_path: /health
        timeout: 1
        healthy:
          interval: 0.2
          successes: 1
        unhealthy:
          interval: 0.2
          http_failures: 1
          tcp_failures: 1
          timeouts: 1
"#;

const PASSIVE: &str = r#"    healthchecks:
      passive:
        unhealthy:
          http_failures: 2
          http_statuses: [500]
"#;

fn config(a: &Echo, b: &Echo, checks: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: hc.up\n{checks}    targets:\n      - target: {}\n      - target: {}\nservices:\n  - host: hc.up\n    retries: 0\n    routes:\n      - paths: [\"/\"]\n",
        a.authority(),
        b.authority()
    )
}

/// `n` sequential requests; answers by instance (or status code).
async fn batch(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut out = HashMap::new();
    for _ in 0..n {
        let resp = c.get(gw.proxy_url()).send().await.expect("request");
        let who = match resp.headers().get("x-instance") {
            Some(v) => v.to_str().expect("ascii").to_owned(),
            None => resp.status().as_u16().to_string(),
        };
        let _ = resp.bytes().await;
        *out.entry(who).or_insert(0) += 1;
    }
    out
}

fn only(counts: &HashMap<String, usize>, who: &str) -> bool {
    counts.len() == 1 && counts.contains_key(who)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_eject_and_restore_targets() {
    let a = Echo::start("A").await;
    let mut b = Echo::start("B").await;
    let gw = Gateway::start(&config(&a, &b, ACTIVE)).await;
    let t = Duration::from_secs(5);
    assert_eventually!(
        t,
        {
            let c = batch(&gw, 6).await;
            c.contains_key("A") && c.contains_key("B")
        },
        "both targets serve at first"
    );

    // B's health endpoint fails: it is taken out.
    b.set_health(500);
    assert_eventually!(
        t,
        only(&batch(&gw, 6).await, "A"),
        "B ejected after /health answered 500"
    );
    // B recovers.
    b.set_health(200);
    assert_eventually!(
        t,
        batch(&gw, 6).await.contains_key("B"),
        "B restored after recovery"
    );

    // B dies (connection refused): ejected by tcp failures; back once restarted on its port.
    b.stop();
    assert_eventually!(t, only(&batch(&gw, 6).await, "A"), "dead B ejected");
    b.restart().await;
    assert_eventually!(
        t,
        batch(&gw, 6).await.contains_key("B"),
        "restarted B restored"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_down_is_503() {
    let a = Echo::start("A").await;
    let b = Echo::start("B").await;
    let gw = Gateway::start(&config(&a, &b, ACTIVE)).await;
    a.set_health(500);
    b.set_health(500);
    assert_eventually!(
        Duration::from_secs(5),
        only(&batch(&gw, 4).await, "503"),
        "503 once every target is unhealthy"
    );
    let resp = client().get(gw.proxy_url()).send().await.expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["message"], "failure to get a peer from the ring-balancer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_eject_a_failing_target() {
    let a = Echo::start("A").await;
    let b = Echo::start("B").await;
    b.set_fail(true);
    let gw = Gateway::start(&config(&a, &b, PASSIVE)).await;
    // Round-robin alternates; after two 500s B is ejected and never comes back (passive only).
    let first = batch(&gw, 10).await;
    // B answers 500 (still tagged "B"): at most two of those before it is ejected.
    assert!(first.get("B").copied().unwrap_or(0) <= 2, "{first:?}");
    let later = batch(&gw, 10).await;
    assert!(only(&later, "A"), "{later:?}");
    assert_eq!(b.hits(), 2);
    b.set_fail(false);
    let after = batch(&gw, 6).await;
    assert!(
        only(&after, "A"),
        "passive-only ejection must not heal by itself: {after:?}"
    );
}
