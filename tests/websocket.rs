use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Echo, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let echo = Echo::start("ws").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/ws\"]\n",
        echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let stream = tokio::net::TcpStream::connect(gw.proxy_addr())
        .await
        .expect("connect");
    let url = format!("ws://{}/ws/chat", gw.proxy_addr());
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .expect("handshake within 5 s")
    .expect("handshake");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-kong-request-id"));

    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .expect("message")
            .expect("ok");
        assert_eq!(got, Message::text(text));
    }
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo within 5 s")
        .expect("message")
        .expect("ok");
    assert_eq!(got.into_data().as_ref(), blob.as_slice());
    ws.close(None).await.expect("close");
}
