//! Descriptors and HTTP bindings: compiling a `.proto` file in pure Rust (protox, no `protoc`),
//! with `google/api/annotations.proto` and `google/api/http.proto` built in (Kong bundles them
//! too), and reading each unary method's `google.api.http` rule (plus `additional_bindings`)
//! into [`Binding`]s.
//!
//! The rule is read from the method options' encoded bytes with a hand-written message, so it
//! is found whether or not the descriptor pool knows the `google.api.http` extension (servers'
//! reflection does not always send `google/api/*.proto`).

use std::path::Path;
use std::sync::Arc;

use http::Method;
use prost::Message;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use super::template::PathTemplate;

/// `google/api/http.proto` (the messages and field numbers of googleapis' file).
const HTTP_PROTO: &str = r#"syntax = "proto3";
package google.api;
option go_package = "google.golang.org/genproto/googleapis/api/annotations;annotations";
message Http {
  repeated HttpRule rules = 1;
  bool fully_decode_reserved_expansion = 2;
}
message HttpRule {
  string selector = 1;
  oneof pattern {
    string get = 2;
    string put = 3;
    string post = 4;
    string delete = 5;
    string patch = 6;
    CustomHttpPattern custom = 8;
  }
  string body = 7;
  string response_body = 12;
  repeated HttpRule additional_bindings = 11;
}
message CustomHttpPattern {
  string kind = 1;
  string path = 2;
}
"#;

/// `google/api/annotations.proto`.
const ANNOTATIONS_PROTO: &str = r#"syntax = "proto3";
package google.api;
import "google/api/http.proto";
import "google/protobuf/descriptor.proto";
option go_package = "google.golang.org/genproto/googleapis/api/annotations;annotations";
extend google.protobuf.MethodOptions {
  HttpRule http = 72295728;
}
"#;

/// The `google/api` files every compilation can import.
struct GoogleApiResolver;

impl FileResolver for GoogleApiResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match name {
            "google/api/http.proto" => File::from_source(name, HTTP_PROTO),
            "google/api/annotations.proto" => File::from_source(name, ANNOTATIONS_PROTO),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// The well-known and `google/api` files as a resolver (for descriptors a server's reflection
/// leaves out).
pub(crate) fn builtin_file(name: &str) -> Option<prost_reflect::prost_types::FileDescriptorProto> {
    let google = GoogleFileResolver::new();
    google
        .open_file(name)
        .or_else(|_| GoogleApiResolver.open_file(name))
        .ok()
        .map(|f| f.file_descriptor_proto().clone())
}

/// Compile the `.proto` file at `path` (imports resolved from its directory, the well-known
/// types and `google/api`).
pub fn compile_file(path: &Path) -> Result<DescriptorPool, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file", path.display()))?;
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(dir.to_owned()));
    resolver.add(GoogleApiResolver);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(name)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(compiler.descriptor_pool())
}

/// `google.api.HttpRule`.
#[derive(Clone, PartialEq, Message)]
pub struct HttpRule {
    /// Unused here (service config selectors).
    #[prost(string, tag = "1")]
    pub selector: String,
    /// The method and path.
    #[prost(oneof = "Pattern", tags = "2, 3, 4, 5, 6, 8")]
    pub pattern: Option<Pattern>,
    /// `*`, a field path, or empty (no body).
    #[prost(string, tag = "7")]
    pub body: String,
    /// A field of the response to send as the body (empty: the whole message).
    #[prost(string, tag = "12")]
    pub response_body: String,
    /// More bindings of the same method.
    #[prost(message, repeated, tag = "11")]
    pub additional_bindings: Vec<HttpRule>,
}

/// `HttpRule.pattern`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Pattern {
    /// GET.
    #[prost(string, tag = "2")]
    Get(String),
    /// PUT.
    #[prost(string, tag = "3")]
    Put(String),
    /// POST.
    #[prost(string, tag = "4")]
    Post(String),
    /// DELETE.
    #[prost(string, tag = "5")]
    Delete(String),
    /// PATCH.
    #[prost(string, tag = "6")]
    Patch(String),
    /// Any other method.
    #[prost(message, tag = "8")]
    Custom(CustomHttpPattern),
}

/// `google.api.CustomHttpPattern`.
#[derive(Clone, PartialEq, Message)]
pub struct CustomHttpPattern {
    /// The HTTP method.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The path template.
    #[prost(string, tag = "2")]
    pub path: String,
}

/// `google.protobuf.MethodOptions`, only the `google.api.http` extension.
#[derive(Clone, PartialEq, Message)]
struct HttpOption {
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

/// One HTTP binding of a unary gRPC method.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The HTTP method.
    pub http_method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The body rule: `None` (no body; query parameters map to fields), `*`, or a field path.
    pub body: Option<String>,
    /// A response field sent as the body instead of the whole message.
    pub response_body: Option<String>,
    /// The method called.
    pub method: MethodDescriptor,
}

impl Binding {
    /// `pkg.Service/Method`.
    pub fn method_name(&self) -> String {
        method_name(&self.method)
    }
}

/// `pkg.Service/Method` of a method.
pub fn method_name(m: &MethodDescriptor) -> String {
    format!("{}/{}", m.parent_service().full_name(), m.name())
}

/// The `google.api.http` rule of a method, if it has one.
pub fn http_rule(m: &MethodDescriptor) -> Option<HttpRule> {
    let bytes = m.options().encode_to_vec();
    HttpOption::decode(bytes.as_slice()).ok()?.http
}

fn empty_none(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The bindings of one rule (and its additional bindings, one level deep as the spec says).
pub fn rule_bindings(
    rule: &HttpRule,
    method: &MethodDescriptor,
    warnings: &mut Vec<String>,
) -> Vec<Binding> {
    let mut out = Vec::new();
    let mut one = |r: &HttpRule| {
        let (verb, path) = match &r.pattern {
            Some(Pattern::Get(p)) => (Method::GET, p.as_str()),
            Some(Pattern::Put(p)) => (Method::PUT, p.as_str()),
            Some(Pattern::Post(p)) => (Method::POST, p.as_str()),
            Some(Pattern::Delete(p)) => (Method::DELETE, p.as_str()),
            Some(Pattern::Patch(p)) => (Method::PATCH, p.as_str()),
            Some(Pattern::Custom(c)) => match Method::from_bytes(c.kind.as_bytes()) {
                Ok(m) => (m, c.path.as_str()),
                Err(_) => {
                    warnings.push(format!(
                        "{}: invalid custom HTTP method '{}'",
                        method_name(method),
                        c.kind
                    ));
                    return;
                }
            },
            None => return,
        };
        match PathTemplate::parse(path) {
            Ok(template) => out.push(Binding {
                http_method: verb,
                template,
                body: empty_none(&r.body),
                response_body: empty_none(&r.response_body),
                method: method.clone(),
            }),
            Err(e) => warnings.push(format!("{}: {e}", method_name(method))),
        }
    };
    one(rule);
    for extra in &rule.additional_bindings {
        one(extra);
    }
    out
}

/// Every annotated unary method's bindings, in file order, and what was skipped and why.
pub fn annotated_bindings(pool: &DescriptorPool) -> (Vec<Binding>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let Some(rule) = http_rule(&method) else {
                continue;
            };
            if method.is_client_streaming() || method.is_server_streaming() {
                warnings.push(format!(
                    "{}: streaming methods are not transcoded",
                    method_name(&method)
                ));
                continue;
            }
            out.extend(rule_bindings(&rule, &method, &mut warnings));
        }
    }
    (out, warnings)
}

/// Compiled descriptors and the bindings derived from them: what a request is matched against.
#[derive(Debug, Clone)]
pub struct Descriptors {
    /// The pool.
    pub pool: DescriptorPool,
    /// Bindings, in precedence order.
    pub bindings: Arc<Vec<Binding>>,
}

impl Descriptors {
    /// The first binding matching a request, with the path variables it captured.
    pub fn find(&self, method: &Method, path: &str) -> Option<(&Binding, Vec<(String, String)>)> {
        self.bindings
            .iter()
            .filter(|b| b.http_method == *method)
            .find_map(|b| b.template.matches(path).map(|vars| (b, vars)))
    }

    /// The unary method `pkg.Service/Method`.
    pub fn method(&self, name: &str) -> Option<MethodDescriptor> {
        let (service, method) = name.split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A proto file with every binding kind, used by the unit tests of this plugin.
    pub(crate) const USERS_PROTO: &str = r#"syntax = "proto3";
package demo.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";

service UserService {
  rpc GetUser(GetUserRequest) returns (User) {
    option (google.api.http) = {
      get: "/v1/users/{id}"
      additional_bindings { get: "/v1/{name=orgs/*/users/*}" }
    };
  }
  rpc CreateUser(CreateUserRequest) returns (User) {
    option (google.api.http) = { post: "/v1/users" body: "user" };
  }
  rpc UpdateUser(User) returns (User) {
    option (google.api.http) = { patch: "/v1/users/{id}" body: "*" };
  }
  rpc ListUsers(ListUsersRequest) returns (ListUsersResponse) {
    option (google.api.http) = { get: "/v1/users" response_body: "users" };
  }
  rpc Watch(GetUserRequest) returns (stream User) {
    option (google.api.http) = { get: "/v1/watch/{id}" };
  }
  rpc Ping(GetUserRequest) returns (User);
}

enum Role { ROLE_UNSPECIFIED = 0; ADMIN = 1; }

message Address { string city = 1; }

message User {
  int64 id = 1;
  string name = 2;
  Role role = 3;
  Address address = 4;
  repeated string tags = 5;
  bool active = 6;
  int32 age = 7;
  google.protobuf.Timestamp created = 8;
  string display_name = 9;
}
message GetUserRequest { int64 id = 1; string name = 2; bool verbose = 3; Address address = 4; }
message CreateUserRequest { User user = 1; string request_id = 2; }
message ListUsersRequest { int32 page_size = 1; repeated string tags = 2; Role role = 3; }
message ListUsersResponse { repeated User users = 1; string next = 2; }
"#;

    pub(crate) fn users_pool() -> DescriptorPool {
        let dir = std::env::temp_dir().join(format!("gwctl-proto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.proto");
        std::fs::write(&file, USERS_PROTO).unwrap();
        let pool = compile_file(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        pool
    }

    #[test]
    fn bindings_from_annotations_including_additional_bindings() {
        let pool = users_pool();
        let (bindings, warnings) = annotated_bindings(&pool);
        let seen: Vec<(String, String, String)> = bindings
            .iter()
            .map(|b| {
                (
                    b.http_method.to_string(),
                    b.template.as_str().to_owned(),
                    b.method_name(),
                )
            })
            .collect();
        let want = [
            ("GET", "/v1/users/{id}", "demo.v1.UserService/GetUser"),
            (
                "GET",
                "/v1/{name=orgs/*/users/*}",
                "demo.v1.UserService/GetUser",
            ),
            ("POST", "/v1/users", "demo.v1.UserService/CreateUser"),
            ("PATCH", "/v1/users/{id}", "demo.v1.UserService/UpdateUser"),
            ("GET", "/v1/users", "demo.v1.UserService/ListUsers"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
            .collect();
        assert_eq!(seen, want);
        assert_eq!(bindings[2].body.as_deref(), Some("user"));
        assert_eq!(bindings[3].body.as_deref(), Some("*"));
        assert_eq!(bindings[4].response_body.as_deref(), Some("users"));
        assert!(warnings.iter().any(|w| w.contains("Watch")), "{warnings:?}");
    }

    #[test]
    fn find_matches_method_and_path() {
        let pool = users_pool();
        let d = Descriptors {
            bindings: Arc::new(annotated_bindings(&pool).0),
            pool,
        };
        let (b, vars) = d.find(&Method::GET, "/v1/users/9").unwrap();
        assert_eq!(b.method_name(), "demo.v1.UserService/GetUser");
        assert_eq!(vars, [("id".to_owned(), "9".to_owned())]);
        let (b, _) = d.find(&Method::GET, "/v1/users").unwrap();
        assert_eq!(b.method_name(), "demo.v1.UserService/ListUsers");
        assert!(d.find(&Method::DELETE, "/v1/users/9").is_none());
        assert!(d.method("demo.v1.UserService/Ping").is_some());
        assert!(d.method("demo.v1.UserService/Nope").is_none());
    }

    #[test]
    fn compile_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("gwctl-proto-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.proto");
        std::fs::write(&file, "syntax = \"proto3\"; message {").unwrap();
        let err = compile_file(&file).unwrap_err();
        assert!(err.contains("bad.proto"), "{err}");
        let err = compile_file(&dir.join("missing.proto")).unwrap_err();
        assert!(err.contains("missing.proto"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
