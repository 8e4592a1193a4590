use std::time::{Duration, Instant};

use crate::support::{BinGateway, Echo, Gateway, client};

fn config(echo: &Echo) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/\"]\n",
        echo.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let echo = Echo::start("e").await;
    let mut gw = BinGateway::start(&config(&echo), &[]).await;
    let url = format!("{}/slow", gw.proxy_url());
    let slow = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .header("x-echo-delay-ms", "1500")
            .send()
            .await
            .expect("in-flight request");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        (status, body)
    });
    assert_eventually!(
        Duration::from_secs(5),
        echo.hits() == 1,
        "slow request reached the upstream"
    );
    let signalled = Instant::now();
    gw.sigterm();
    // New connections are refused promptly.
    let proxy = gw.proxy;
    assert_eventually!(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "listener still accepts after SIGTERM"
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(1400),
        "refusal came only after the drain"
    );
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("in-flight request finishes")
        .expect("task");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"path\":\"/slow\""), "{body}");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0));
    let lines = gw.lines.lock().expect("lines").join("\n");
    assert!(lines.contains("SIGTERM"), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_reports_ready_and_counts() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let c = client();
    let resp = c
        .get(format!("{}/status/ready", gw.status_url()))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 200);
    let _ = c.get(gw.proxy_url()).send().await.expect("proxied");
    let v: serde_json::Value = c
        .get(format!("{}/status", gw.status_url()))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert!(
        v["server"]["total_requests"]
            .as_u64()
            .expect("total_requests")
            >= 1,
        "{v}"
    );
    let hash = v["configuration_hash"]
        .as_str()
        .expect("configuration_hash");
    assert_eq!(hash.len(), 32);
    assert_ne!(hash, "0".repeat(32));
    gw.stop().await;
}

/// SIGINT works like SIGTERM, and `--drain-timeout` bounds the wait for a request that takes
/// longer: the process still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_drain_timeout_bounds_the_wait() {
    let echo = Echo::start("e").await;
    let mut gw = BinGateway::start(&config(&echo), &["--drain-timeout", "1"]).await;
    let url = format!("{}/stuck", gw.proxy_url());
    let stuck = tokio::spawn(async move {
        client()
            .get(url)
            .header("x-echo-delay-ms", "4000")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert_eventually!(
        Duration::from_secs(5),
        echo.hits() == 1,
        "request reached the upstream"
    );
    let signalled = Instant::now();
    gw.signal("-INT");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3500),
        "exit after {took:?}, expected about the 1 s drain timeout"
    );
    // The cut request did not get a 200.
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("client returns")
        .expect("task");
    assert!(!matches!(outcome, Ok(200)), "{outcome:?}");
}

/// The idle footprint: after serving requests on both workers, the gateway's heap is a few MB
/// and holds no transparent huge pages. An allocator that asks for them (mimalloc 0.1.49 madvises
/// its arenas `MADV_HUGEPAGE` unless built with `no_thp`) turns a few MB of heap into 2 MB pages:
/// that once took idle RSS from 16 to 25 MB (issue 2's goal is < 20 MB), unnoticed by any test.
/// RSS as a whole depends on the build (a debug binary maps ~30 MB of code), the heap does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_heap_is_small_and_has_no_transparent_huge_pages() {
    let echo = Echo::start("e").await;
    let gw = BinGateway::start(&config(&echo), &[]).await;
    let http = client();
    for i in 0..200 {
        let resp = http
            .get(format!("{}/warm/{i}", gw.proxy_url()))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }
    drop(http);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let huge = gw.proc_kib("smaps_rollup", "AnonHugePages:");
    let heap = gw.proc_kib("status", "RssAnon:");
    eprintln!("idle gateway: RssAnon {heap} KiB, AnonHugePages {huge} KiB");
    assert_eq!(
        huge, 0,
        "the gateway's memory went into transparent huge pages"
    );
    assert!(heap < 12 * 1024, "idle anonymous RSS is {heap} KiB");
}
