//! A gRPC server reflection client (`grpc.reflection.v1.ServerReflection`, falling back to
//! `grpc.reflection.v1alpha`): lists the services, fetches the files that define them (and any
//! dependency the server did not send along), and builds a descriptor pool.
//!
//! The messages are hand-written prost structs (v1 and v1alpha share them field for field).
//! Each exchange is one HTTP/2 stream carrying every request of a round, half-closed, whose
//! responses arrive in order: the bidirectional method used as a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost_reflect::DescriptorPool;
use prost_reflect::prost_types::FileDescriptorProto;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::transcode::{decode_grpc_message, frame, unframe};

/// `grpc.reflection.v1.ServerReflectionRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ReflectionRequest {
    /// Unused by servers in practice.
    #[prost(string, tag = "1")]
    pub host: String,
    /// What is asked.
    #[prost(oneof = "Ask", tags = "3, 4, 7")]
    pub ask: Option<Ask>,
}

/// `ServerReflectionRequest.message_request` (the variants used here).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Ask {
    /// A file by its name.
    #[prost(string, tag = "3")]
    FileByFilename(String),
    /// The file defining a fully-qualified symbol.
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    /// The service names.
    #[prost(string, tag = "7")]
    ListServices(String),
}

/// `grpc.reflection.v1.ServerReflectionResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ReflectionResponse {
    /// Echo of the host.
    #[prost(string, tag = "1")]
    pub valid_host: String,
    /// The answer.
    #[prost(oneof = "Answer", tags = "4, 6, 7")]
    pub answer: Option<Answer>,
}

/// `ServerReflectionResponse.message_response` (the variants used here).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Answer {
    /// Serialized `FileDescriptorProto`s.
    #[prost(message, tag = "4")]
    Files(FileDescriptorResponse),
    /// Service names.
    #[prost(message, tag = "6")]
    Services(ListServiceResponse),
    /// An error for this request.
    #[prost(message, tag = "7")]
    Error(ErrorResponse),
}

/// `FileDescriptorResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct FileDescriptorResponse {
    /// Encoded files.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub file_descriptor_proto: Vec<Vec<u8>>,
}

/// `ListServiceResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ListServiceResponse {
    /// Services.
    #[prost(message, repeated, tag = "1")]
    pub service: Vec<ServiceResponse>,
}

/// `ServiceResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ServiceResponse {
    /// Fully-qualified service name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `ErrorResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ErrorResponse {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    /// Message.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// The largest reflection answer read (one batch of descriptors).
pub const ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// The reflection protocol versions, newest first.
pub const VERSIONS: [&str; 2] = ["v1", "v1alpha"];

/// Services that are never exposed: the reflection service itself and the health service.
pub fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.reflection.") || service == "grpc.health.v1.Health"
}

/// Why reflection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReflectionError {
    /// No connection.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// Peer.
        addr: String,
        /// Cause.
        reason: String,
    },
    /// The HTTP/2 exchange failed.
    #[error("reflection call failed: {0}")]
    Transport(String),
    /// The server answered with a gRPC error status.
    #[error("reflection answered grpc-status {code}: {message}")]
    Status {
        /// gRPC code.
        code: i32,
        /// grpc-message.
        message: String,
    },
    /// The server does not implement either protocol version.
    #[error("the server implements neither grpc.reflection.v1 nor v1alpha")]
    Unimplemented,
    /// An answer was not what was asked for, or did not decode.
    #[error("bad reflection answer: {0}")]
    Protocol(String),
    /// The files do not form a consistent descriptor pool.
    #[error("descriptors: {0}")]
    Descriptors(String),
    /// The whole discovery took longer than its deadline.
    #[error("reflection timed out after {0:?}")]
    Timeout(Duration),
}

/// How to reach the server.
#[derive(Clone)]
pub struct Endpoint {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// `:authority` (the service's host and port).
    pub authority: String,
    /// TLS client config (`grpcs`), with SNI.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

/// What reflection found.
#[derive(Debug, Clone)]
pub struct Reflected {
    /// The protocol version that answered (`v1` or `v1alpha`).
    pub version: &'static str,
    /// Every service the server lists (infrastructure ones included).
    pub services: Vec<String>,
    /// Descriptors of the listed non-infrastructure services.
    pub pool: DescriptorPool,
}

type Sender = http2::SendRequest<Full<Bytes>>;

async fn connect(ep: &Endpoint) -> Result<Sender, ReflectionError> {
    let fail = |reason: String| ReflectionError::Connect {
        addr: ep.addr.to_string(),
        reason,
    };
    let tcp = TcpStream::connect(ep.addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let exec = TokioExecutor::new();
    let (sender, conn) = match &ep.tls {
        None => http2::handshake(exec, TokioIo::new(tcp))
            .await
            .map(|(s, c)| (s, tokio::spawn(c)))
            .map_err(|e| fail(e.to_string()))?,
        Some((config, sni)) => {
            let name = ServerName::try_from(sni.clone())
                .or_else(|_| ServerName::try_from(ep.addr.ip().to_string()))
                .map_err(|e| fail(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| fail(e.to_string()))?;
            http2::handshake(exec, TokioIo::new(tls))
                .await
                .map(|(s, c)| (s, tokio::spawn(c)))
                .map_err(|e| fail(e.to_string()))?
        }
    };
    drop(conn);
    Ok(sender)
}

/// One batch on one stream.
async fn exchange(
    sender: &mut Sender,
    ep: &Endpoint,
    version: &str,
    asks: Vec<Ask>,
) -> Result<Vec<ReflectionResponse>, ReflectionError> {
    let mut body = Vec::new();
    let n = asks.len();
    for ask in asks {
        let req = ReflectionRequest {
            host: String::new(),
            ask: Some(ask),
        };
        body.extend_from_slice(&frame(&req.encode_to_vec()));
    }
    let scheme = if ep.tls.is_some() { "https" } else { "http" };
    let uri = format!(
        "{scheme}://{}/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        ep.authority
    );
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ReflectionError::Transport(e.to_string()))?;
    sender
        .ready()
        .await
        .map_err(|e| ReflectionError::Transport(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ReflectionError::Transport(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    if parts.status == http::StatusCode::NOT_FOUND {
        return Err(ReflectionError::Unimplemented);
    }
    let collected = http_body_util::Limited::new(body, ANSWER_LIMIT)
        .collect()
        .await
        .map_err(|e| ReflectionError::Transport(e.to_string()))?;
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    let status = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    match status {
        Some(0) => {}
        Some(12) => return Err(ReflectionError::Unimplemented),
        Some(code) => {
            let message = parts
                .headers
                .get("grpc-message")
                .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-message")))
                .map(|v| decode_grpc_message(v.as_bytes()))
                .unwrap_or_default();
            return Err(ReflectionError::Status { code, message });
        }
        None => {
            return Err(ReflectionError::Protocol(format!(
                "no grpc-status (HTTP {})",
                parts.status
            )));
        }
    }
    let msgs = unframe(&bytes).map_err(|e| ReflectionError::Protocol(e.to_string()))?;
    if msgs.len() != n {
        return Err(ReflectionError::Protocol(format!(
            "{n} requests, {} answers",
            msgs.len()
        )));
    }
    msgs.into_iter()
        .map(|m| {
            ReflectionResponse::decode(m).map_err(|e| ReflectionError::Protocol(e.to_string()))
        })
        .collect()
}

/// A file as received: its name and dependencies, and the encoded descriptor (decoded by the
/// pool itself, which keeps the options' extensions, e.g. `google.api.http`; prost-types'
/// structs would drop them).
#[derive(Debug, Clone)]
struct RawFile {
    dependencies: Vec<String>,
    raw: Vec<u8>,
}

impl RawFile {
    fn decode(raw: Vec<u8>) -> Result<(String, Self), ReflectionError> {
        let fd = FileDescriptorProto::decode(raw.as_slice())
            .map_err(|e| ReflectionError::Protocol(e.to_string()))?;
        Ok((
            fd.name().to_owned(),
            Self {
                dependencies: fd.dependency,
                raw,
            },
        ))
    }
}

/// Files from answers, by name (first wins).
fn collect_files(
    answers: Vec<ReflectionResponse>,
    files: &mut BTreeMap<String, RawFile>,
) -> Result<(), ReflectionError> {
    for a in answers {
        match a.answer {
            Some(Answer::Files(f)) => {
                for raw in f.file_descriptor_proto {
                    let (name, file) = RawFile::decode(raw)?;
                    files.entry(name).or_insert(file);
                }
            }
            // A file the server does not know (a dependency it left out): filled from the
            // built-in well-known types below, or reported as missing by the pool.
            Some(Answer::Error(_)) => {}
            _ => {
                return Err(ReflectionError::Protocol(
                    "expected a file descriptor answer".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Discover the server's services and their descriptors. `wanted` filters which listed
/// services have their files fetched.
pub async fn reflect(
    ep: &Endpoint,
    wanted: impl Fn(&str) -> bool,
) -> Result<Reflected, ReflectionError> {
    let mut sender = connect(ep).await?;
    let mut last = ReflectionError::Unimplemented;
    for version in VERSIONS {
        let answers = match exchange(
            &mut sender,
            ep,
            version,
            vec![Ask::ListServices(String::new())],
        )
        .await
        {
            Ok(a) => a,
            Err(ReflectionError::Unimplemented) => continue,
            Err(e) => {
                last = e;
                break;
            }
        };
        let services = match answers.into_iter().next().and_then(|a| a.answer) {
            Some(Answer::Services(s)) => s.service.into_iter().map(|s| s.name).collect(),
            Some(Answer::Error(e)) => {
                return Err(ReflectionError::Status {
                    code: e.error_code,
                    message: e.error_message,
                });
            }
            _ => {
                return Err(ReflectionError::Protocol(
                    "expected the service list".into(),
                ));
            }
        };
        let services: Vec<String> = services;
        let fetch: Vec<Ask> = services
            .iter()
            .filter(|s| !is_infrastructure(s) && wanted(s))
            .map(|s| Ask::FileContainingSymbol(s.clone()))
            .collect();
        let mut files = BTreeMap::new();
        if !fetch.is_empty() {
            collect_files(exchange(&mut sender, ep, version, fetch).await?, &mut files)?;
        }
        // Dependencies the server did not send: ask by name, a bounded number of rounds.
        for _ in 0..8 {
            let missing: BTreeSet<String> = files
                .values()
                .flat_map(|f| f.dependencies.iter().cloned())
                .filter(|d| !files.contains_key(d))
                .collect();
            if missing.is_empty() {
                break;
            }
            let asks = missing.iter().cloned().map(Ask::FileByFilename).collect();
            collect_files(exchange(&mut sender, ep, version, asks).await?, &mut files)?;
            for name in &missing {
                if !files.contains_key(name)
                    && let Some(f) = super::proto::builtin_file(name)
                {
                    files.insert(
                        name.clone(),
                        RawFile {
                            dependencies: f.dependency.clone(),
                            raw: f.encode_to_vec(),
                        },
                    );
                }
            }
        }
        let pool = build_pool(files)?;
        return Ok(Reflected {
            version,
            services,
            pool,
        });
    }
    Err(last)
}

/// A pool from files in any order (each added after its dependencies).
fn build_pool(mut files: BTreeMap<String, RawFile>) -> Result<DescriptorPool, ReflectionError> {
    let mut pool = DescriptorPool::new();
    while !files.is_empty() {
        let ready: Vec<String> = files
            .iter()
            .filter(|(_, f)| {
                f.dependencies
                    .iter()
                    .all(|d| pool.get_file_by_name(d).is_some())
            })
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<&String> = files.keys().collect();
            return Err(ReflectionError::Descriptors(format!(
                "unresolved dependencies of {names:?}"
            )));
        }
        for name in ready {
            if let Some(f) = files.remove(&name) {
                pool.decode_file_descriptor_proto(f.raw.as_slice())
                    .map_err(|e| ReflectionError::Descriptors(e.to_string()))?;
            }
        }
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_the_reflection_field_numbers() {
        let req = ReflectionRequest {
            host: String::new(),
            ask: Some(Ask::ListServices(String::new())),
        };
        // field 7, length-delimited, empty.
        assert_eq!(req.encode_to_vec(), vec![0x3a, 0x00]);
        let req = ReflectionRequest {
            host: String::new(),
            ask: Some(Ask::FileContainingSymbol("a.B".into())),
        };
        assert_eq!(req.encode_to_vec(), vec![0x22, 3, b'a', b'.', b'B']);
        // list_services_response { service { name: "x.Y" } }
        let raw = [0x32, 0x07, 0x0a, 0x05, 0x0a, 0x03, b'x', b'.', b'Y'];
        let resp = ReflectionResponse::decode(&raw[..]).unwrap();
        assert_eq!(
            resp.answer,
            Some(Answer::Services(ListServiceResponse {
                service: vec![ServiceResponse { name: "x.Y".into() }]
            }))
        );
    }

    #[test]
    fn infrastructure_services_are_recognised() {
        assert!(is_infrastructure("grpc.reflection.v1.ServerReflection"));
        assert!(is_infrastructure(
            "grpc.reflection.v1alpha.ServerReflection"
        ));
        assert!(is_infrastructure("grpc.health.v1.Health"));
        assert!(!is_infrastructure("demo.v1.UserService"));
    }

    #[test]
    fn pools_build_from_files_in_any_order() {
        let pool = super::super::proto::tests::users_pool();
        let mut files = BTreeMap::new();
        for f in pool.files() {
            let (name, raw) = RawFile::decode(f.encode_to_vec()).unwrap();
            files.insert(name, raw);
        }
        assert!(files.len() >= 4);
        let rebuilt = build_pool(files.clone()).unwrap();
        assert!(rebuilt.get_service_by_name("demo.v1.UserService").is_some());
        files.remove("google/api/http.proto");
        let err = build_pool(files).unwrap_err();
        assert!(err.to_string().contains("unresolved"), "{err}");
    }
}
