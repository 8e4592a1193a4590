//! Plugins through real sockets: the framework (scoping, ordering, short-circuits through the
//! header filters) and each plugin's happy and error paths (kong-compat §4).
mod acl;
mod circuit_breaker;
mod correlation_id;
mod cors;
mod framework;
mod ip_restriction;
mod jwt;
mod key_auth;
mod opentelemetry;
mod prometheus;
mod rate_limiting;
mod request_size_limiting;
mod request_transformer;
mod response_compression;
mod response_transformer;
