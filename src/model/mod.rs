//! Validated domain entities in Kong 3.x's shape.
//!
//! These structs serialize to exactly the JSON the Kong Admin API returns (every field present,
//! unset ones as `null`), so the admin API, the declarative loader and the Postgres store share one
//! representation. Validation (Kong's schema rules and error messages) lives in [`schema`]; a value
//! of these types has passed it.

pub mod schema;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kong's `number` fields as Lua's cjson prints them: integral values without a fraction (`5`,
/// not `5.0`), so a client comparing JSON values sees back what it sent.
fn kong_number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// A reference to another entity, rendered as `{"id": "<uuid>"}` like Kong's foreign keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referenced entity's primary key.
    pub id: Uuid,
}

impl From<Uuid> for ForeignKey {
    fn from(id: Uuid) -> Self {
        Self { id }
    }
}

/// Protocols a service or route may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Plain HTTP/1.1 or h2c.
    Http,
    /// HTTP over TLS.
    Https,
    /// gRPC over h2c.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// Raw TCP (stream routes; not proxied by gwctl yet).
    Tcp,
    /// TLS-terminated TCP.
    Tls,
    /// TLS passed through by SNI.
    TlsPassthrough,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Kong's spelling of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Grpc => "grpc",
            Self::Grpcs => "grpcs",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::TlsPassthrough => "tls_passthrough",
            Self::Udp => "udp",
        }
    }

    /// Whether the protocol is carried over TLS towards the peer.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Grpcs | Self::Tls)
    }

    /// Whether the protocol is gRPC (`grpc` or `grpcs`): such services are proxied over HTTP/2.
    pub fn is_grpc(self) -> bool {
        matches!(self, Self::Grpc | Self::Grpcs)
    }

    /// The default port Kong infers for the protocol.
    pub fn default_port(self) -> u16 {
        if self.is_tls() { 443 } else { 80 }
    }
}

/// A Kong service: where matched traffic goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Primary key.
    pub id: Uuid,
    /// Unique name (Kong's name charset).
    pub name: Option<String>,
    /// Protocol towards the upstream.
    pub protocol: Protocol,
    /// Hostname, IP or the name of an [`Upstream`].
    pub host: String,
    /// Port towards the upstream.
    pub port: u16,
    /// Path prefix prepended upstream.
    pub path: Option<String>,
    /// Extra attempts after the first on connection errors and timeouts.
    pub retries: u32,
    /// Connect timeout in milliseconds.
    pub connect_timeout: u64,
    /// Write timeout in milliseconds.
    pub write_timeout: u64,
    /// Read timeout in milliseconds.
    pub read_timeout: u64,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Client certificate for mTLS upstream.
    pub client_certificate: Option<ForeignKey>,
    /// Verify the upstream's TLS certificate (null: the node default, which is off like Kong's).
    pub tls_verify: Option<bool>,
    /// Maximum verification depth.
    pub tls_verify_depth: Option<u8>,
    /// CA certificates (ids of `ca_certificates`) trusted for upstream TLS.
    pub ca_certificates: Option<Vec<Uuid>>,
    /// A disabled service's routes are not routed.
    pub enabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// A Kong route: which requests go to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Primary key.
    pub id: Uuid,
    /// Unique name.
    pub name: Option<String>,
    /// Accepted client protocols.
    pub protocols: Vec<Protocol>,
    /// Accepted methods (exact tokens).
    pub methods: Option<Vec<String>>,
    /// Host patterns: exact, `*.suffix`, `prefix.*`, with optional `:port`.
    pub hosts: Option<Vec<String>>,
    /// Paths: plain prefixes, or `~`-prefixed regexes.
    pub paths: Option<Vec<String>>,
    /// Header name -> accepted values (values starting with `~*` are regexes).
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// SNIs (TLS routes).
    pub snis: Option<Vec<String>>,
    /// Stream sources (unused by HTTP routes).
    pub sources: Option<serde_json::Value>,
    /// Stream destinations (unused by HTTP routes).
    pub destinations: Option<serde_json::Value>,
    /// Status for plain-HTTP requests on an https-only route: 426, or a redirect code.
    pub https_redirect_status_code: u16,
    /// Priority among regex routes.
    pub regex_priority: i64,
    /// Remove the matched path prefix before proxying.
    pub strip_path: bool,
    /// `v0` or `v1` (traditional_compatible always joins as v0).
    pub path_handling: String,
    /// Send the client's Host header upstream.
    pub preserve_host: bool,
    /// Buffer request bodies (gwctl streams regardless).
    pub request_buffering: bool,
    /// Buffer response bodies (gwctl streams regardless).
    pub response_buffering: bool,
    /// The service this route sends to.
    pub service: Option<ForeignKey>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// An upstream: a named set of targets behind a load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// Primary key.
    pub id: Uuid,
    /// Unique hostname-like name; services whose `host` equals it use this balancer.
    pub name: String,
    /// `round-robin`, `consistent-hashing`, `least-connections` or `latency`.
    pub algorithm: Algorithm,
    /// What to hash on for consistent hashing.
    pub hash_on: HashOn,
    /// Fallback when `hash_on` yields no value.
    pub hash_fallback: HashOn,
    /// Header for `hash_on: header`.
    pub hash_on_header: Option<String>,
    /// Header for `hash_fallback: header`.
    pub hash_fallback_header: Option<String>,
    /// Cookie for `hash_on: cookie`.
    pub hash_on_cookie: Option<String>,
    /// Path of the cookie gwctl sets when absent.
    pub hash_on_cookie_path: String,
    /// Query argument for `hash_on: query_arg`.
    pub hash_on_query_arg: Option<String>,
    /// Query argument for `hash_fallback: query_arg`.
    pub hash_fallback_query_arg: Option<String>,
    /// URI capture for `hash_on: uri_capture`.
    pub hash_on_uri_capture: Option<String>,
    /// URI capture for `hash_fallback: uri_capture`.
    pub hash_fallback_uri_capture: Option<String>,
    /// Ring size for consistent hashing.
    pub slots: u32,
    /// Active and passive health checks.
    pub healthchecks: Healthchecks,
    /// Host header sent upstream instead of the target's.
    pub host_header: Option<String>,
    /// Client certificate for mTLS.
    pub client_certificate: Option<ForeignKey>,
    /// Use SRV names (accepted for compatibility).
    pub use_srv_name: bool,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Smooth weighted round-robin.
    RoundRobin,
    /// A ring keyed by `hash_on`.
    ConsistentHashing,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Lowest EWMA latency.
    Latency,
}

/// Source of the consistent-hashing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// No hashing.
    None,
    /// The authenticated consumer's id.
    Consumer,
    /// The client IP.
    Ip,
    /// A request header.
    Header,
    /// A cookie (set by the gateway when absent).
    Cookie,
    /// The request path.
    Path,
    /// A query argument.
    QueryArg,
    /// A regex capture of the route path.
    UriCapture,
}

/// Kong's `healthchecks` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthchecks {
    /// Percentage of healthy weight at or below which the balancer is unhealthy.
    #[serde(serialize_with = "kong_number")]
    pub threshold: f64,
    /// Active probing.
    pub active: ActiveHealthcheck,
    /// Health fed by proxied traffic.
    pub passive: PassiveHealthcheck,
}

/// Active probe settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveHealthcheck {
    /// `tcp`, `http`, `https`, `grpc`, `grpcs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Probe timeout in seconds.
    #[serde(serialize_with = "kong_number")]
    pub timeout: f64,
    /// Probes in parallel.
    pub concurrency: u32,
    /// Path probed.
    pub http_path: String,
    /// SNI for https probes.
    pub https_sni: Option<String>,
    /// Verify the certificate on https probes.
    pub https_verify_certificate: bool,
    /// Extra probe headers.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Healthy-side counters.
    pub healthy: ActiveHealthy,
    /// Unhealthy-side counters.
    pub unhealthy: ActiveUnhealthy,
}

/// Active checks of healthy targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveHealthy {
    /// Seconds between probes of healthy targets (0: none).
    #[serde(serialize_with = "kong_number")]
    pub interval: f64,
    /// Statuses that count as success.
    pub http_statuses: Vec<u16>,
    /// Successes that make a target healthy.
    pub successes: u32,
}

/// Active checks of unhealthy targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of unhealthy targets (0: none).
    #[serde(serialize_with = "kong_number")]
    pub interval: f64,
    /// Statuses that count as HTTP failures.
    pub http_statuses: Vec<u16>,
    /// TCP failures that make a target unhealthy.
    pub tcp_failures: u32,
    /// Timeouts that make a target unhealthy.
    pub timeouts: u32,
    /// HTTP failures that make a target unhealthy.
    pub http_failures: u32,
}

/// Passive checks fed by real traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveHealthcheck {
    /// `tcp`, `http`, `https`, `grpc`, `grpcs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Healthy-side counters.
    pub healthy: PassiveHealthy,
    /// Unhealthy-side counters.
    pub unhealthy: PassiveUnhealthy,
}

/// Passive healthy counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveHealthy {
    /// Statuses that count as success.
    pub http_statuses: Vec<u16>,
    /// Successes that make a target healthy.
    pub successes: u32,
}

/// Passive unhealthy counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveUnhealthy {
    /// Statuses that count as HTTP failures.
    pub http_statuses: Vec<u16>,
    /// TCP failures that make a target unhealthy.
    pub tcp_failures: u32,
    /// Timeouts that make a target unhealthy.
    pub timeouts: u32,
    /// HTTP failures that make a target unhealthy.
    pub http_failures: u32,
}

/// A target of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Primary key.
    pub id: Uuid,
    /// The owning upstream.
    pub upstream: ForeignKey,
    /// `host:port` (port defaults to 8000; IPv6 in brackets).
    pub target: String,
    /// Relative weight; 0 receives no traffic.
    pub weight: u32,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds with milliseconds.
    #[serde(serialize_with = "kong_number")]
    pub created_at: f64,
    /// Last update, Unix seconds with milliseconds.
    #[serde(serialize_with = "kong_number")]
    pub updated_at: f64,
}

/// A consumer of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// Primary key.
    pub id: Uuid,
    /// Unique username.
    pub username: Option<String>,
    /// Unique custom id.
    pub custom_id: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// A plugin instance and its scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    /// Primary key.
    pub id: Uuid,
    /// Plugin name (Kong's kebab-case).
    pub name: String,
    /// Optional unique instance name.
    pub instance_name: Option<String>,
    /// Route scope.
    pub route: Option<ForeignKey>,
    /// Service scope.
    pub service: Option<ForeignKey>,
    /// Consumer scope.
    pub consumer: Option<ForeignKey>,
    /// The plugin's configuration, defaults filled.
    pub config: serde_json::Value,
    /// Protocols the plugin runs for.
    pub protocols: Vec<Protocol>,
    /// Disabled instances are skipped.
    pub enabled: bool,
    /// Dynamic ordering (`{"before": {"access": [...]}, "after": ...}`).
    pub ordering: Option<serde_json::Value>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// A key-auth credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyAuthCredential {
    /// Primary key.
    pub id: Uuid,
    /// The owning consumer.
    pub consumer: ForeignKey,
    /// The API key (any length).
    pub key: String,
    /// Seconds to live from creation (expired keys stop authenticating).
    pub ttl: Option<u64>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A JWT credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtSecret {
    /// Primary key.
    pub id: Uuid,
    /// The owning consumer.
    pub consumer: ForeignKey,
    /// The value matched against the key claim (`iss` by default).
    pub key: String,
    /// HMAC secret.
    pub secret: Option<String>,
    /// PEM public key for asymmetric algorithms.
    pub rsa_public_key: Option<String>,
    /// Signing algorithm.
    pub algorithm: String,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// An ACL group membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acl {
    /// Primary key.
    pub id: Uuid,
    /// The owning consumer.
    pub consumer: ForeignKey,
    /// Group name.
    pub group: String,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A trusted CA certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaCertificate {
    /// Primary key.
    pub id: Uuid,
    /// PEM certificate.
    pub cert: String,
    /// SHA-256 digest of the certificate.
    pub cert_digest: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// The whole configuration, flat (nested declarative entities are hoisted with their foreign keys
/// set). This is what a snapshot is compiled from and what `POST /config` replaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Services.
    pub services: Vec<Service>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Upstreams.
    pub upstreams: Vec<Upstream>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Plugins.
    pub plugins: Vec<Plugin>,
    /// key-auth credentials.
    pub keyauth_credentials: Vec<KeyAuthCredential>,
    /// JWT credentials.
    pub jwt_secrets: Vec<JwtSecret>,
    /// ACL memberships.
    pub acls: Vec<Acl>,
    /// CA certificates.
    pub ca_certificates: Vec<CaCertificate>,
}
