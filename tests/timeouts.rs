//! Upstream connect and write timeouts (the read timeout is in `errors`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::raw;
use crate::support::{Gateway, client};

/// A listener whose accept queue is full: further SYNs are dropped by the kernel, so a connect
/// to it hangs (the loopback way to get a connect timeout without an unroutable address).
fn black_hole() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (backlog 0 holds one connection); never accept.
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    (addr, sock, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_504_and_bounded() {
    let (addr, _sock, _fillers) = black_hole();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: http://{addr}\n    connect_timeout: 200\n    retries: 1\n    routes:\n      - paths: [\"/\"]\n"
    );
    let gw = Gateway::start(&yaml).await;
    let started = Instant::now();
    let resp = client().get(gw.proxy_url()).send().await.expect("request");
    let elapsed = started.elapsed();
    assert_eq!(resp.status().as_u16(), 504);
    // Two attempts (retries: 1) of 200 ms each, far below the kernel's SYN retry.
    assert!(elapsed >= Duration::from_millis(350), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_is_504_when_the_upstream_stops_reading() {
    // An upstream that accepts and never reads: the gateway's writes stall once the socket
    // buffers are full.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: http://{addr}\n    write_timeout: 300\n    read_timeout: 60000\n    retries: 0\n    routes:\n      - paths: [\"/\"]\n"
    );
    let gw = Gateway::start(&yaml).await;
    let total: u64 = 256 * 1024 * 1024;
    let mut conn = TcpStream::connect(gw.proxy_addr()).await.unwrap();
    conn.write_all(
        format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while sent < total {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tmp = [0u8; 4096];
        loop {
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response within 10 s");
    let resp = raw::parse(&buf);
    assert_eq!(resp.status, 504, "{resp:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    writer.abort();
    holder.abort();
    gw.stop().await;
}
