//! A real tonic gRPC server for the grpc-gateway tests: dynamic messages (prost-reflect) from a
//! `.proto` compiled at run time, tonic's server and codec machinery, tonic-reflection v1
//! and/or v1alpha listing exactly the services started. It can be restarted on the same port
//! with another set of services (discovery refresh tests).
//!
//! Behaviour (so tests can see every mapped field):
//! - `UserService.GetUser{id,view,verbose}` -> `User{id, name: "user-<id>", display_name:
//!   "view=<view> verbose=<verbose>"}`; id 404 -> NOT_FOUND "no user 404".
//! - `CreateUser{user, request_id}` -> the user with id 1000 and `display_name = request_id`.
//! - `UpdateUser(User)` -> the same user.
//! - `ListUsers{page_size, tags}` -> `page_size` users with those tags, `next: "p2"`.
//! - `Fail{code, message}` -> that gRPC status (OK: an empty user); a message starting with
//!   `detail` also sends `grpc-status-details-bin`: a `google.rpc.Status` whose details are a
//!   `gwtest.v1.FailDetail{reason: message, retry_after_s: 7}` and an `Any` of a type no proto
//!   here describes (`type.googleapis.com/other.v1.Unknown`, bytes 1 2 3).
//! - `Widgets.*` (no annotations: the naming convention), `Internal.GetSecret`, `Extra.GetThing`.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gwctl::plugins::grpc_gateway::transcode::{RpcAny, RpcStatus};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as PValue};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

pub const PROTO: &str = r#"syntax = "proto3";
package gwtest.v1;
import "google/api/annotations.proto";

service UserService {
  rpc GetUser(GetUserRequest) returns (User) {
    option (google.api.http) = {
      get: "/v1/users/{id}"
      additional_bindings { get: "/v1/{name=orgs/*/members/*}" }
    };
  }
  rpc CreateUser(CreateUserRequest) returns (User) {
    option (google.api.http) = { post: "/v1/users" body: "user" };
  }
  rpc UpdateUser(User) returns (User) {
    option (google.api.http) = {
      patch: "/v1/users/{id}" body: "*"
      additional_bindings { put: "/v1/users/{id}" body: "*" }
    };
  }
  rpc ListUsers(ListUsersRequest) returns (ListUsersResponse) {
    option (google.api.http) = { get: "/v1/users" };
  }
  rpc Fail(FailRequest) returns (User) {
    option (google.api.http) = { get: "/v1/fail/{code}" };
  }
}

service Widgets {
  rpc GetWidget(WidgetId) returns (Widget);
  rpc ListWidgets(Empty) returns (WidgetList);
  rpc CreateWidget(Widget) returns (Widget);
  rpc UpdateWidget(Widget) returns (Widget);
  rpc DeleteWidget(WidgetId) returns (Empty);
  rpc Ping(Empty) returns (Empty);
}

service Internal {
  rpc GetSecret(WidgetId) returns (Widget) {
    option (google.api.http) = { get: "/v1/secrets/{id}" };
  }
}

service Extra {
  rpc GetThing(WidgetId) returns (Widget) {
    option (google.api.http) = { get: "/v1/things/{id}" };
  }
}

enum Role { ROLE_UNSPECIFIED = 0; ADMIN = 1; MEMBER = 2; }
message Address { string city = 1; string zip = 2; }
message User {
  int64 id = 1;
  string name = 2;
  Role role = 3;
  Address address = 4;
  repeated string tags = 5;
  bool active = 6;
  string display_name = 7;
}
message GetUserRequest { int64 id = 1; string view = 2; bool verbose = 3; string name = 4; }
message CreateUserRequest { User user = 1; string request_id = 2; }
message ListUsersRequest { int32 page_size = 1; repeated string tags = 2; }
message ListUsersResponse { repeated User users = 1; string next = 2; }
message FailRequest { int32 code = 1; string message = 2; }
message FailDetail { string reason = 1; int32 retry_after_s = 2; }
message Empty {}
message WidgetId { int64 id = 1; }
message Widget { int64 id = 1; string name = 2; }
message WidgetList { repeated Widget widgets = 1; }
"#;

/// Which services a server runs, and which reflection versions.
#[derive(Debug, Clone)]
pub struct ServiceSet {
    pub users: bool,
    pub widgets: bool,
    pub internal: bool,
    pub extra: bool,
    pub reflection_v1: bool,
    pub reflection_v1alpha: bool,
}

impl Default for ServiceSet {
    fn default() -> Self {
        Self {
            users: true,
            widgets: true,
            internal: true,
            extra: false,
            reflection_v1: true,
            reflection_v1alpha: true,
        }
    }
}

/// The compiled test descriptors (and the `.proto` file, for `config.proto`).
pub struct Protos {
    pub dir: super::TempDir,
    pub path: std::path::PathBuf,
    pub pool: DescriptorPool,
}

pub fn protos() -> Protos {
    let dir = super::TempDir::new();
    let path = dir.write("gwtest.proto", PROTO);
    let pool = gwctl::plugins::grpc_gateway::proto::compile_file(&path).expect("test proto");
    Protos { dir, path, pool }
}

// ---------------------------------------------------------------------------------------------
// A codec for dynamic messages.

#[derive(Clone)]
struct DynCodec {
    input: MessageDescriptor,
}

struct DynEncoder;
struct DynDecoder(MessageDescriptor);

impl Codec for DynCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynEncoder;
    type Decoder = DynDecoder;
    fn encoder(&mut self) -> DynEncoder {
        DynEncoder
    }
    fn decoder(&mut self) -> DynDecoder {
        DynDecoder(self.input.clone())
    }
}

impl Encoder for DynEncoder {
    type Item = DynamicMessage;
    type Error = Status;
    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for DynDecoder {
    type Item = DynamicMessage;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviour

fn get(msg: &DynamicMessage, field: &str) -> Value {
    let opts = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut ser = serde_json::Serializer::new(Vec::new());
    msg.serialize_with_options(&mut ser, &opts).unwrap();
    let v: Value = serde_json::from_slice(&ser.into_inner()).unwrap();
    v.get(field).cloned().unwrap_or(Value::Null)
}

fn int(msg: &DynamicMessage, field: &str) -> i64 {
    match msg.get_field_by_name(field).as_deref() {
        Some(PValue::I64(n)) => *n,
        Some(PValue::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn build(pool: &DescriptorPool, ty: &str, v: Value) -> DynamicMessage {
    let desc = pool.get_message_by_name(ty).expect("type");
    DynamicMessage::deserialize(desc, v).expect("response message")
}

fn behave(
    pool: &DescriptorPool,
    path: &str,
    req: &DynamicMessage,
) -> Result<DynamicMessage, Status> {
    let t = |name: &str| format!("gwtest.v1.{name}");
    Ok(match path {
        "/gwtest.v1.UserService/GetUser" => {
            let id = int(req, "id");
            if id == 404 {
                return Err(Status::not_found("no user 404"));
            }
            let name = match get(req, "name") {
                Value::String(s) if !s.is_empty() => s,
                _ => format!("user-{id}"),
            };
            build(
                pool,
                &t("User"),
                json!({
                    "id": id.to_string(),
                    "name": name,
                    "display_name": format!("view={} verbose={}", get(req, "view").as_str().unwrap_or(""), get(req, "verbose")),
                }),
            )
        }
        "/gwtest.v1.UserService/CreateUser" => {
            let mut user = get(req, "user");
            if !user.is_object() {
                user = json!({});
            }
            user["id"] = json!("1000");
            user["display_name"] = get(req, "request_id");
            build(pool, &t("User"), user)
        }
        "/gwtest.v1.UserService/UpdateUser" => req.clone(),
        "/gwtest.v1.UserService/ListUsers" => {
            let n = int(req, "page_size");
            let tags = get(req, "tags");
            let users: Vec<Value> = (1..=n)
                .map(|i| json!({"id": i.to_string(), "tags": tags}))
                .collect();
            build(
                pool,
                &t("ListUsersResponse"),
                json!({"users": users, "next": "p2"}),
            )
        }
        "/gwtest.v1.UserService/Fail" => {
            let code = Code::from_i32(i32::try_from(int(req, "code")).unwrap_or(2));
            if code == Code::Ok {
                return Ok(build(pool, &t("User"), json!({})));
            }
            let message = get(req, "message").as_str().unwrap_or("").to_owned();
            if message.starts_with("detail") {
                let detail = build(
                    pool,
                    &t("FailDetail"),
                    json!({"reason": message, "retry_after_s": 7}),
                );
                let status = RpcStatus {
                    code: code as i32,
                    message: message.clone(),
                    details: vec![
                        RpcAny {
                            type_url: "type.googleapis.com/gwtest.v1.FailDetail".into(),
                            value: detail.encode_to_vec(),
                        },
                        RpcAny {
                            type_url: "type.googleapis.com/other.v1.Unknown".into(),
                            value: vec![1, 2, 3],
                        },
                    ],
                };
                return Err(Status::with_details(
                    code,
                    message,
                    status.encode_to_vec().into(),
                ));
            }
            return Err(Status::new(code, message));
        }
        "/gwtest.v1.Widgets/GetWidget" => {
            let id = int(req, "id");
            build(
                pool,
                &t("Widget"),
                json!({"id": id.to_string(), "name": format!("widget-{id}")}),
            )
        }
        "/gwtest.v1.Widgets/ListWidgets" => build(
            pool,
            &t("WidgetList"),
            json!({"widgets": [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]}),
        ),
        "/gwtest.v1.Widgets/CreateWidget" => {
            let mut w = build(pool, &t("Widget"), json!({}));
            w.transcode_from(req).ok();
            w.set_field_by_name("id", PValue::I64(7));
            w
        }
        "/gwtest.v1.Widgets/UpdateWidget" => req.clone(),
        "/gwtest.v1.Widgets/DeleteWidget" | "/gwtest.v1.Widgets/Ping" => {
            build(pool, &t("Empty"), json!({}))
        }
        "/gwtest.v1.Internal/GetSecret" => build(pool, &t("Widget"), json!({"name": "secret"})),
        "/gwtest.v1.Extra/GetThing" => {
            let id = int(req, "id");
            build(
                pool,
                &t("Widget"),
                json!({"id": id.to_string(), "name": format!("thing-{id}")}),
            )
        }
        _ => return Err(Status::unimplemented(path.to_owned())),
    })
}

// ---------------------------------------------------------------------------------------------
// Services

pub trait Named: Clone + Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! named {
    ($t:ident, $n:literal) => {
        #[derive(Clone)]
        pub struct $t;
        impl Named for $t {
            const NAME: &'static str = $n;
        }
    };
}
named!(UsersName, "gwtest.v1.UserService");
named!(WidgetsName, "gwtest.v1.Widgets");
named!(InternalName, "gwtest.v1.Internal");
named!(ExtraName, "gwtest.v1.Extra");

/// One gRPC service answering its methods with [`behave`].
pub struct DynService<N> {
    pool: Arc<DescriptorPool>,
    _n: PhantomData<N>,
}

impl<N> Clone for DynService<N> {
    fn clone(&self) -> Self {
        Self {
            pool: Arc::clone(&self.pool),
            _n: PhantomData,
        }
    }
}

impl<N: Named> NamedService for DynService<N> {
    const NAME: &'static str = N::NAME;
}

#[derive(Clone)]
struct Unary {
    pool: Arc<DescriptorPool>,
    path: String,
}

impl Service<tonic::Request<DynamicMessage>> for Unary {
    type Response = tonic::Response<DynamicMessage>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Status>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::Request<DynamicMessage>) -> Self::Future {
        std::future::ready(behave(&self.pool, &self.path, req.get_ref()).map(tonic::Response::new))
    }
}

impl<N: Named> Service<http::Request<tonic::body::Body>> for DynService<N> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let pool = Arc::clone(&self.pool);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let method = path.rsplit('/').next().unwrap_or_default().to_owned();
            let m = pool
                .get_service_by_name(N::NAME)
                .and_then(|s| s.methods().find(|m| m.name() == method));
            let Some(m) = m else {
                return Ok(Status::unimplemented(path).into_http());
            };
            let mut grpc = tonic::server::Grpc::new(DynCodec { input: m.input() });
            Ok(grpc.unary(Unary { pool, path }, req).await)
        })
    }
}

fn svc<N: Named>(pool: &Arc<DescriptorPool>, on: bool) -> Option<DynService<N>> {
    on.then(|| DynService {
        pool: Arc::clone(pool),
        _n: PhantomData,
    })
}

/// A running server.
pub struct GrpcServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl GrpcServer {
    /// Start `set` on a free port.
    pub async fn start(set: &ServiceSet) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), set).await
    }

    /// Start `set` on `addr` (a port a stopped server used: restart).
    pub async fn start_on(addr: SocketAddr, set: &ServiceSet) -> Self {
        let protos = protos();
        let pool = Arc::new(protos.pool);
        let fds = pool.encode_to_vec();
        let names: Vec<&str> = [
            (set.users, UsersName::NAME),
            (set.widgets, WidgetsName::NAME),
            (set.internal, InternalName::NAME),
            (set.extra, ExtraName::NAME),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        let reflection = || {
            let mut b = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(&fds);
            for n in &names {
                b = b.with_service_name(*n);
            }
            b
        };
        let v1 = set
            .reflection_v1
            .then(|| reflection().build_v1().expect("reflection v1"));
        let v1alpha = set
            .reflection_v1alpha
            .then(|| reflection().build_v1alpha().expect("reflection v1alpha"));
        // A restarted server takes the port its predecessor left (bounded retries).
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .add_optional_service(v1)
            .add_optional_service(v1alpha)
            .add_optional_service(svc::<UsersName>(&pool, set.users))
            .add_optional_service(svc::<WidgetsName>(&pool, set.widgets))
            .add_optional_service(svc::<InternalName>(&pool, set.internal))
            .add_optional_service(svc::<ExtraName>(&pool, set.extra));
        let (tx, rx) = oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop (bounded wait).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An HTTP/1.1 stand-in: the same behaviour, gRPC framing and `grpc-status` in the response
// headers, over HTTP/1.1 (what the proxy speaks to `http` services). It runs the transcoding
// tests through the proxy without an HTTP/2 upstream; the tonic server runs them over h2.

/// A running HTTP/1.1 gRPC stand-in.
pub struct Http1GrpcServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

fn grpc_answer(
    code: i32,
    message: &str,
    body: Vec<u8>,
    details: &[u8],
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    let h = resp.headers_mut();
    h.insert("content-type", "application/grpc".parse().unwrap());
    h.insert("grpc-status", code.to_string().parse().unwrap());
    let encoded =
        percent_encoding::utf8_percent_encode(message, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    h.insert("grpc-message", encoded.parse().unwrap());
    if !details.is_empty() {
        use base64::Engine as _;
        // Unpadded, as gRPC implementations send it.
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
        h.insert("grpc-status-details-bin", b64.parse().unwrap());
    }
    h.insert("x-served-by", "http1-stand-in".parse().unwrap());
    resp
}

impl Http1GrpcServer {
    pub async fn start() -> Self {
        use http_body_util::BodyExt;
        let pool = Arc::new(protos().pool);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let pool = Arc::clone(&pool);
                            async move {
                                let path = req.uri().path().to_owned();
                                let ct = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let (svc_name, method) = path
                                    .trim_start_matches('/')
                                    .split_once('/')
                                    .unwrap_or_default();
                                let m = pool
                                    .get_service_by_name(svc_name)
                                    .and_then(|s| s.methods().find(|m| m.name() == method));
                                let answer = match m {
                                    _ if ct != "application/grpc" => grpc_answer(
                                        3,
                                        &format!("content-type {ct}"),
                                        Vec::new(),
                                        &[],
                                    ),
                                    None => grpc_answer(12, &path, Vec::new(), &[]),
                                    Some(m) => {
                                        let frames =
                                            gwctl::plugins::grpc_gateway::transcode::unframe(&body)
                                                .unwrap();
                                        let msg =
                                            DynamicMessage::decode(m.input(), frames[0]).unwrap();
                                        match behave(&pool, &path, &msg) {
                                            Ok(out) => grpc_answer(
                                                0,
                                                "",
                                                gwctl::plugins::grpc_gateway::transcode::frame(
                                                    &out.encode_to_vec(),
                                                )
                                                .to_vec(),
                                                &[],
                                            ),
                                            Err(st) => grpc_answer(
                                                st.code() as i32,
                                                st.message(),
                                                Vec::new(),
                                                st.details(),
                                            ),
                                        }
                                    }
                                };
                                Ok::<_, Infallible>(answer)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Http1GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
