//! gRPC upstreams and clients for the tests.
//!
//! The server is the `grpc-fixture` crate (tests/fixtures/grpc): a real tonic server with the
//! `gwctl.fixture.v1.Fixture` service (`proto/fixture.proto`: `Unary`, `ServerStream`,
//! `ClientStream`, `Bidi`, `Fail`) and server reflection v1 and v1alpha. Every reply says what
//! the server saw (`metadata`, `authority`, `path`).
//!
//! ```ignore
//! let up = GrpcUpstream::start().await;                 // h2c on 127.0.0.1:<free port>
//! let (up, ca) = GrpcUpstream::start_tls(&["localhost"]).await; // TLS (ALPN h2), CA PEM
//! // More services and descriptors (e.g. a transcoding test's own proto):
//! let mut b = grpc::Builder::new().descriptor_set(MY_FDS);
//! b.routes().add_service(MyServer::new(MyImpl));
//! let up = GrpcUpstream::start_with(b).await;
//! let mut c = grpc::client(gw.proxy_addr()).await;      // tonic client over h2c
//! ```

use std::net::SocketAddr;
use std::time::Duration;

// The whole fixture API, for tests that build on it (transcoding, discovery).
#[allow(unused_imports)]
pub use grpc_fixture::{
    Builder, EchoReply, EchoRequest, FAIL_REASON_KEY, FILE_DESCRIPTOR_SET, FailRequest,
    FixtureClient, Running, SENT_KEY, SERVICE_NAME, StreamRequest, pb,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A fixture server on a free loopback port; stopped on drop.
pub struct GrpcUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    running: Running,
}

impl GrpcUpstream {
    /// The fixture with reflection over h2c.
    pub async fn start() -> Self {
        Self::start_with(Builder::new()).await
    }

    /// The fixture over TLS (ALPN h2) with a certificate for `names` issued by a fresh CA;
    /// returns the CA's PEM (for `ca_certificates` and clients).
    pub async fn start_tls(names: &[&str]) -> (Self, String) {
        let (ca, cert, key) = super::tls::ca_signed(names);
        (Self::start_with(Builder::new().tls(&cert, &key)).await, ca)
    }

    /// A configured builder, e.g. with more services or descriptor sets.
    pub async fn start_with(builder: Builder) -> Self {
        Self::start_on(builder, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Start on a given address (e.g. the one a stopped server had).
    pub async fn start_on(builder: Builder, addr: SocketAddr) -> Self {
        let running = builder.spawn(addr).await.expect("start gRPC fixture");
        Self {
            addr: running.addr,
            running,
        }
    }

    /// `grpc://127.0.0.1:PORT` (a service URL).
    pub fn url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// Graceful stop: GOAWAY to open connections, in-flight calls finish.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A tonic client over h2c (prior knowledge) to `addr`: the gateway's proxy listener, or an
/// upstream directly.
pub async fn client(addr: SocketAddr) -> FixtureClient<Channel> {
    FixtureClient::new(channel(addr).await)
}

/// An h2c channel to `addr` (for other generated clients, e.g. reflection).
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect gRPC channel")
}

/// A tonic client over TLS to `addr`, trusting `ca_pem`, with SNI and `:authority` `domain`.
pub async fn tls_client(addr: SocketAddr, domain: &str, ca_pem: &str) -> FixtureClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(domain);
    let channel = Endpoint::from_shared(format!("https://{domain}:{}", addr.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect_with_connector(DirectConnector(addr))
        .await
        .expect("connect gRPC TLS channel");
    FixtureClient::new(channel)
}

/// Connects to a fixed address whatever the URI's host says (the domain is only for TLS).
#[derive(Clone)]
struct DirectConnector(SocketAddr);

impl tower::Service<http::Uri> for DirectConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(hyper_util::rt::TokioIo::new(s))
        })
    }
}
