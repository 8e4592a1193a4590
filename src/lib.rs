//! gwctl: a Kong-compatible API gateway and the tooling that sets up its stack.
//!
//! A tour of the modules, in the order a request meets them:
//!
//! - [`serve`] binds the listeners and wires everything together for `gwctl serve`.
//! - [`proxy`] is the data plane: normalize -> route -> plugins -> balance -> forward -> respond.
//! - [`router`] matches requests to routes with Kong 3.x `traditional_compatible` semantics.
//! - [`balancer`] picks targets (round-robin, consistent hashing, least-connections) and tracks
//!   their active and passive health.
//! - [`snapshot`] is the immutable compiled configuration the data plane reads, swapped atomically.
//! - [`model`] holds the Kong-shaped entities and their schema validation; [`declarative`] loads
//!   Kong's declarative file format into them.
//! - [`plugins`] holds the plugin framework (phases, scoping, ordering) and the plugins.
//! - [`status`] serves `/status` and `/status/ready`.
//! - [`telemetry`] sets up logging.
//! - [`ops`] is the library side of the operational subcommands (`gwctl migrate`, ...).

pub mod admin;
pub mod balancer;
pub mod declarative;
pub mod model;
pub mod ops;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod serve;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod telemetry;

/// The Kong version whose behaviour gwctl matches; reported by `GET /` and in `Server`/`Via`.
pub const KONG_VERSION: &str = "3.9.0";

/// gwctl's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
