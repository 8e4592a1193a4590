//! Active health checker: one task per upstream probing healthy targets every
//! `healthy.interval` and unhealthy ones every `unhealthy.interval` seconds, `concurrency` at a
//! time, each probe bounded by `timeout`. http/https send `GET http_path`; tcp only connects;
//! grpc (h2c) and grpcs (TLS, ALPN h2) call the gRPC health checking protocol's
//! `grpc.health.v1.Health/Check` for the whole server (service `""`): `SERVING` is a success,
//! any other answer (`NOT_SERVING`, a non-OK `grpc-status` such as UNIMPLEMENTED from a server
//! without the health service) counts as an HTTP failure.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::Core;
use super::health::{AddrState, Event, Thresholds};
use crate::model::ActiveHealthcheck;
use crate::plugins::grpc_gateway::transcode::{frame, unframe};

/// Start the checker task for an upstream.
pub(crate) fn spawn(core: Weak<Core>, cfg: ActiveHealthcheck) -> AbortHandle {
    tokio::spawn(run(core, cfg)).abort_handle()
}

fn interval(secs: f64) -> Option<Interval> {
    if secs.is_finite() && secs > 0.0 {
        let period = Duration::from_secs_f64(secs.max(0.001));
        let mut i = tokio::time::interval_at(Instant::now() + period, period);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(i)
    } else {
        None
    }
}

async fn tick(i: &mut Option<Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn run(core: Weak<Core>, cfg: ActiveHealthcheck) {
    let prober = Arc::new(Prober::new(&cfg));
    let th = Thresholds::active(&cfg);
    let concurrency = cfg.concurrency.max(1) as usize;
    let mut healthy_tick = interval(cfg.healthy.interval);
    let mut unhealthy_tick = interval(cfg.unhealthy.interval);
    loop {
        let want_healthy = tokio::select! {
            _ = tick(&mut healthy_tick) => true,
            _ = tick(&mut unhealthy_tick) => false,
        };
        let Some(core) = core.upgrade() else { return };
        let name = core.cfg.load().name.clone();
        let addrs: Vec<Arc<AddrState>> = core
            .set
            .load()
            .entries
            .iter()
            .filter(|e| e.state.is_healthy() == want_healthy)
            .map(|e| e.state.clone())
            .collect();
        drop(core);
        futures_util::stream::iter(addrs)
            .map(|a| {
                let prober = prober.clone();
                async move {
                    let ev = prober.probe(&a).await;
                    (a, ev)
                }
            })
            .buffer_unordered(concurrency)
            .for_each(|(a, ev)| {
                if let Some(ev) = ev {
                    a.record(ev, &th, &name);
                }
                std::future::ready(())
            })
            .await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
    Https,
    Grpc,
    Grpcs,
}

struct Prober {
    kind: Kind,
    timeout: Duration,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    sni: Option<String>,
    tls: Option<TlsConnector>,
    healthy: Vec<u16>,
    unhealthy: Vec<u16>,
}

impl Prober {
    fn new(cfg: &ActiveHealthcheck) -> Self {
        let kind = match cfg.kind.as_str() {
            "tcp" => Kind::Tcp,
            "grpc" => Kind::Grpc,
            "https" => Kind::Https,
            "grpcs" => Kind::Grpcs,
            _ => Kind::Http,
        };
        let tls = if matches!(kind, Kind::Https | Kind::Grpcs) {
            match tls_config(cfg.https_verify_certificate, kind == Kind::Grpcs) {
                Ok(c) => Some(TlsConnector::from(Arc::new(c))),
                Err(e) => {
                    warn!(error = %e, "cannot build TLS config for health checks");
                    None
                }
            }
        } else {
            None
        };
        let mut headers = Vec::new();
        for (k, vs) in cfg.headers.iter().flatten() {
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                continue;
            };
            for v in vs {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.push((name.clone(), v));
                }
            }
        }
        let timeout = if cfg.timeout.is_finite() && cfg.timeout > 0.0 {
            Duration::from_secs_f64(cfg.timeout)
        } else {
            Duration::from_secs(1)
        };
        Self {
            kind,
            timeout,
            path: if cfg.http_path.is_empty() {
                "/".to_string()
            } else {
                cfg.http_path.clone()
            },
            headers,
            sni: cfg.https_sni.clone(),
            tls,
            healthy: cfg.healthy.http_statuses.clone(),
            unhealthy: cfg.unhealthy.http_statuses.clone(),
        }
    }

    /// Probe one address; `None` when the answer counts neither way.
    async fn probe(&self, a: &AddrState) -> Option<Event> {
        match tokio::time::timeout(self.timeout, self.probe_inner(a)).await {
            Err(_) => Some(Event::Timeout),
            Ok(r) => r,
        }
    }

    async fn probe_inner(&self, a: &AddrState) -> Option<Event> {
        let Ok(tcp) = TcpStream::connect(a.addr).await else {
            return Some(Event::TcpFailure);
        };
        match self.kind {
            Kind::Tcp => Some(Event::Success),
            Kind::Http => self.http(tcp, a).await,
            Kind::Grpc => grpc_health(tcp, a).await,
            Kind::Https | Kind::Grpcs => {
                let Some(tls) = &self.tls else {
                    return Some(Event::TcpFailure);
                };
                let name = self.sni.clone().unwrap_or_else(|| {
                    a.host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string()
                });
                let Ok(server_name) = ServerName::try_from(name) else {
                    return Some(Event::TcpFailure);
                };
                let Ok(stream) = tls.connect(server_name, tcp).await else {
                    return Some(Event::TcpFailure);
                };
                if self.kind == Kind::Grpcs {
                    grpc_health(stream, a).await
                } else {
                    self.http(stream, a).await
                }
            }
        }
    }

    async fn http<S>(&self, io: S, a: &AddrState) -> Option<Event>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await
        else {
            return Some(Event::TcpFailure);
        };
        let conn = tokio::spawn(conn);
        let _abort = AbortOnDrop(conn.abort_handle());
        let mut req = Request::get(self.path.as_str())
            .header(http::header::HOST, format!("{}:{}", a.host, a.port))
            .header(http::header::USER_AGENT, "gwctl-healthcheck")
            .header(http::header::CONNECTION, "close");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Empty::<Bytes>::new()) else {
            return Some(Event::TcpFailure);
        };
        let Ok(resp) = sender.send_request(req).await else {
            return Some(Event::TcpFailure);
        };
        let status = resp.status().as_u16();
        if self.healthy.contains(&status) {
            Some(Event::Success)
        } else if self.unhealthy.contains(&status) {
            Some(Event::HttpFailure)
        } else {
            None
        }
    }
}

/// One `grpc.health.v1.Health/Check` call (empty `HealthCheckRequest`: the whole server) over
/// HTTP/2 on `io`.
async fn grpc_health<S>(io: S, a: &AddrState) -> Option<Event>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok((mut sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await
    else {
        return Some(Event::TcpFailure);
    };
    let conn = tokio::spawn(conn);
    let _abort = AbortOnDrop(conn.abort_handle());
    let uri = format!("http://{}:{}/grpc.health.v1.Health/Check", a.host, a.port);
    let Ok(req) = Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "gwctl-healthcheck")
        // An empty HealthCheckRequest, framed.
        .body(Full::new(frame(&[])))
    else {
        return Some(Event::TcpFailure);
    };
    let Ok(resp) = sender.send_request(req).await else {
        return Some(Event::TcpFailure);
    };
    let (head, body) = resp.into_parts();
    if head.status != http::StatusCode::OK {
        return Some(Event::HttpFailure);
    }
    let Ok(collected) = body.collect().await else {
        return Some(Event::TcpFailure);
    };
    let trailers = collected.trailers().cloned();
    // Trailers-Only answers carry grpc-status in the headers.
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| head.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    if status != Some(0) {
        return Some(Event::HttpFailure);
    }
    match health_status(&collected.to_bytes()) {
        Some(SERVING) => Some(Event::Success),
        _ => Some(Event::HttpFailure),
    }
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// The `status` of the one uncompressed `HealthCheckResponse` message in a gRPC response
/// body; `None` when the body is not exactly one such message.
fn health_status(body: &[u8]) -> Option<i32> {
    let [msg] = unframe(body).ok()?[..] else {
        return None;
    };
    <HealthCheckResponse as prost::Message>::decode(msg)
        .ok()
        .map(|r| r.status)
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config(verify: bool, h2: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::proxy::tls::provider())
        .with_safe_default_protocol_versions()?;
    let config = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(crate::proxy::tls::no_verify())
            .with_no_client_auth()
    };
    let mut config = config;
    if h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_status_reads_the_one_health_check_response() {
        // SERVING, NOT_SERVING; an empty message is UNKNOWN (proto3 default).
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 0x01]), Some(SERVING));
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 0x02]), Some(2));
        assert_eq!(health_status(&[0, 0, 0, 0, 0]), Some(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(
            health_status(&[0, 0, 0, 0, 5, 0x12, 0x01, b'x', 0x08, 0x01]),
            Some(SERVING)
        );
        // Compressed, truncated, trailing bytes, no frame at all: not a response.
        assert_eq!(health_status(&[1, 0, 0, 0, 2, 0x08, 0x01]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 3, 0x08, 0x01]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 0x01, 0]), None);
        assert_eq!(health_status(&[]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 1, 0x08]), None);
    }
}
