use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::echo::GenBody;
use crate::support::{BinGateway, Echo, Echoed, Gateway, raw};

const BIG: u64 = 256 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn config(echo: &Echo) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/\"]\n",
        echo.url()
    )
}

async fn json_of(resp: http::Response<hyper::body::Incoming>) -> Echoed {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("echo json")
}

/// 256 MiB up (chunked) and 256 MiB down (content-length) through the real binary, whose RSS
/// must stay within 64 MiB of its idle size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_bounded_memory() {
    let echo = Echo::start("e").await;
    let gw = BinGateway::start(&config(&echo), &[]).await;
    // Warm up (connection pools, allocator) before taking the baseline.
    let warm = raw::hyper_send(
        gw.proxy,
        Request::get("/warm")
            .header("host", "x")
            .body(Empty::<bytes::Bytes>::new())
            .expect("req"),
    )
    .await;
    let _ = json_of(warm).await;
    let baseline = gw.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), gw.pid);
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let up = raw::hyper_send(
        gw.proxy,
        Request::post("/upload")
            .header("host", "x")
            .body(GenBody::new(BIG, false))
            .expect("req"),
    )
    .await;
    assert_eq!(up.status(), 200);
    assert_eq!(json_of(up).await.body_len, BIG);

    let down = raw::hyper_send(
        gw.proxy,
        Request::get("/download")
            .header("host", "x")
            .header("x-echo-bytes", BIG.to_string())
            .header("x-echo-length", "1")
            .body(Empty::<bytes::Bytes>::new())
            .expect("req"),
    )
    .await;
    assert_eq!(down.status(), 200);
    assert_eq!(down.headers()["content-length"], BIG.to_string().as_str());
    assert_eq!(raw::count_body(down.into_body()).await, BIG);

    done.store(true, Ordering::SeqCst);
    sampler.await.expect("sampler");
    let grew = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!("gateway RSS: baseline {baseline} KiB, peak +{grew} KiB");
    assert!(
        grew < 64 * 1024,
        "gateway RSS grew by {grew} KiB (baseline {baseline} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_with_content_length_and_chunked() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    for exact in [true, false] {
        let resp = raw::hyper_send(
            gw.proxy_addr(),
            Request::put("/up")
                .header("host", "x")
                .body(GenBody::new(MIB, exact))
                .expect("req"),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let e = json_of(resp).await;
        assert_eq!(e.body_len, MIB);
        if exact {
            assert_eq!(e.header("content-length"), MIB.to_string());
            assert!(!e.has("transfer-encoding"));
        } else {
            assert_eq!(e.header("transfer-encoding"), "chunked");
            assert!(!e.has("content-length"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_with_content_length_and_chunked() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    for with_length in [true, false] {
        let mut req = Request::get("/down")
            .header("host", "x")
            .header("x-echo-bytes", (3 * MIB + 7).to_string());
        if with_length {
            req = req.header("x-echo-length", "1");
        }
        let resp = raw::hyper_send(
            gw.proxy_addr(),
            req.body(Empty::<bytes::Bytes>::new()).expect("req"),
        )
        .await;
        assert_eq!(resp.status(), 200);
        if with_length {
            assert_eq!(
                resp.headers()["content-length"],
                (3 * MIB + 7).to_string().as_str()
            );
        } else {
            assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        }
        assert_eq!(raw::count_body(resp.into_body()).await, 3 * MIB + 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_upload() {
    let echo = Echo::start("e").await;
    let gw = Gateway::start(&config(&echo)).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy_addr())
        .await
        .expect("connect");
    s.write_all(
        b"POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write head");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("100 Continue within 5 s")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 100 Continue\r\n"), "{head:?}");
    s.write_all(b"hello world").await.expect("write body");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("response within 5 s")
        .expect("read");
    let resp = raw::parse(&rest);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let e: Echoed = serde_json::from_slice(&resp.body).expect("echo json");
    assert_eq!(e.body_len, 11);
    assert!(
        !e.has("expect"),
        "Expect must not reach the upstream: {e:#?}"
    );
}
