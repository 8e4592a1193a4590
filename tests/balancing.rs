use std::collections::HashMap;

use crate::support::{Echo, Gateway, client, refused_addr};

fn upstream_config(targets: &[(String, u32)], upstream_extra: &str, service_extra: &str) -> String {
    let mut y = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: pool.up\n{upstream_extra}    targets:\n"
    );
    for (t, w) in targets {
        y.push_str(&format!("      - target: {t}\n        weight: {w}\n"));
    }
    y.push_str(&format!(
        "services:\n  - name: s\n    host: pool.up\n    port: 80\n{service_extra}    routes:\n      - paths: [\"/\"]\n"
    ));
    y
}

/// Send `n` GETs from `workers` concurrent loops; count answers by instance (or status).
async fn tally(
    gw: &Gateway,
    n: usize,
    workers: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let url = gw.proxy_url();
        let c = client();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let count = n / workers + usize::from(w < n % workers);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..count {
                let mut req = c.get(&url);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let resp = req.send().await.expect("request");
                let who = match resp.headers().get("x-instance") {
                    Some(v) => v.to_str().expect("ascii").to_owned(),
                    None => resp.status().as_u16().to_string(),
                };
                let _ = resp.bytes().await;
                seen.push(who);
            }
            seen
        }));
    }
    let mut out = HashMap::new();
    for t in tasks {
        for who in t.await.expect("worker") {
            *out.entry(who).or_insert(0) += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_proportions_and_weight_zero() {
    let a = Echo::start("A").await;
    let b = Echo::start("B").await;
    let z = Echo::start("Z").await;
    let yaml = upstream_config(
        &[
            (a.authority(), 100),
            (b.authority(), 300),
            (z.authority(), 0),
        ],
        "",
        "",
    );
    let gw = Gateway::start(&yaml).await;
    let counts = tally(&gw, 400, 4, &[]).await;
    let (na, nb) = (
        counts.get("A").copied().unwrap_or(0),
        counts.get("B").copied().unwrap_or(0),
    );
    assert_eq!(na + nb, 400, "{counts:?}");
    // The wheel gives exactly 1:3 over whole turns; allow a couple of requests of slack.
    assert!(na.abs_diff(100) <= 2 && nb.abs_diff(300) <= 2, "{counts:?}");
    assert_eq!(z.hits(), 0, "weight 0 target got traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_by_header_is_sticky() {
    let echoes = [
        Echo::start("A").await,
        Echo::start("B").await,
        Echo::start("C").await,
    ];
    let targets: Vec<(String, u32)> = echoes.iter().map(|e| (e.authority(), 100)).collect();
    let yaml = upstream_config(
        &targets,
        "    hash_on: header\n    hash_on_header: x-user\n    algorithm: consistent-hashing\n",
        "",
    );
    let gw = Gateway::start(&yaml).await;
    let mut owners = HashMap::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let counts = tally(&gw, 10, 2, &[("x-user", &user)]).await;
        assert_eq!(counts.len(), 1, "{user} spread over {counts:?}");
        owners.insert(user, counts.into_keys().next().expect("owner"));
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(
        distinct.len() >= 2,
        "12 keys all hashed to one target: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_skip_a_dead_target() {
    let live = Echo::start("L").await;
    let dead = refused_addr();
    let yaml = upstream_config(
        &[(dead.to_string(), 100), (live.authority(), 100)],
        "",
        "    retries: 3\n",
    );
    let gw = Gateway::start(&yaml).await;
    let counts = tally(&gw, 20, 2, &[]).await;
    assert_eq!(counts.get("L"), Some(&20), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_dead_target_fails_with_502() {
    let live = Echo::start("L").await;
    let dead = refused_addr();
    let yaml = upstream_config(
        &[(dead.to_string(), 100), (live.authority(), 100)],
        "",
        "    retries: 0\n",
    );
    let gw = Gateway::start(&yaml).await;
    let counts = tally(&gw, 20, 1, &[]).await;
    let failed = counts.get("502").copied().unwrap_or(0);
    assert!(failed > 0, "{counts:?}");
    assert_eq!(
        failed + counts.get("L").copied().unwrap_or(0),
        20,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_by_cookie_sets_and_honours_the_cookie() {
    let echoes = [
        Echo::start("A").await,
        Echo::start("B").await,
        Echo::start("C").await,
    ];
    let targets: Vec<(String, u32)> = echoes.iter().map(|e| (e.authority(), 100)).collect();
    let yaml = upstream_config(
        &targets,
        "    hash_on: cookie\n    hash_on_cookie: sticky\n    hash_on_cookie_path: /app\n    algorithm: consistent-hashing\n",
        "",
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();
    let resp = c.get(gw.proxy_url()).send().await.expect("request");
    let set = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let first = resp.headers()["x-instance"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let (pair, attrs) = set.split_once(';').expect("cookie attributes");
    assert!(pair.starts_with("sticky="), "{set}");
    assert!(attrs.contains("Path=/app"), "{set}");
    for _ in 0..10 {
        let resp = c
            .get(gw.proxy_url())
            .header("cookie", pair)
            .send()
            .await
            .expect("request");
        assert!(
            !resp.headers().contains_key("set-cookie"),
            "cookie set again"
        );
        assert_eq!(resp.headers()["x-instance"], first.as_str());
    }
}
