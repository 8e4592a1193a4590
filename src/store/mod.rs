//! The configuration store: the [`Store`] trait and its two implementations, [`MemoryStore`]
//! (DB-less) and [`PgStore`] (Postgres shared by many nodes).
//!
//! Reads never wait on a database: every store keeps the whole configuration as [`Tables`]
//! (persistent maps, O(1) to clone), and readers take a consistent view with
//! [`Store::tables`]. Writes go through [`Store::write`], one entity (plus what cascades from it)
//! per call, and return once durable: for Postgres, after the transaction committed. Each
//! successful write bumps the store's revision; [`Store::subscribe`] lets the snapshot publisher
//! recompile off the hot path.

pub mod credentials;
pub mod entity;
pub mod memory;
pub mod postgres;
pub mod tables;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

pub use entity::Entity;
pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use tables::Tables;

use crate::model::schema::EntityKind;

/// One write.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create; fails with [`StoreError::PrimaryKey`] when the id exists.
    Insert(Entity),
    /// Create or replace the row with the same id.
    Upsert(Entity),
    /// Delete a row and its cascade; deleting an absent row succeeds.
    Delete(EntityKind, Uuid),
}

/// A manual health override of a target (`PUT .../healthy|unhealthy`), broadcast to every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthOverride {
    /// The upstream's id.
    pub upstream: Uuid,
    /// The target's id.
    pub target: Uuid,
    /// One resolved address (`ip:port`) or the whole target.
    pub address: Option<String>,
    /// Healthy or unhealthy.
    pub healthy: bool,
}

/// Why a write failed. Each maps to one of Kong's admin error bodies.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The id exists already (code 3).
    #[error("primary key violation on key '{{id=\"{id}\"}}'")]
    PrimaryKey {
        /// The kind.
        kind: EntityKind,
        /// The clashing id.
        id: Uuid,
    },
    /// A unique key is taken (code 5, HTTP 409).
    #[error("UNIQUE violation detected on '{message_key}'")]
    Unique {
        /// The kind.
        kind: EntityKind,
        /// `{name="svc"}`.
        message_key: String,
        /// The offending fields.
        fields: Value,
    },
    /// A foreign key references nothing (code 4).
    #[error(
        "the foreign key '{{id=\"{id}\"}}' does not reference an existing '{}' entity.",
        target.name()
    )]
    ForeignKey {
        /// The field (`service`).
        field: &'static str,
        /// The referenced kind.
        target: EntityKind,
        /// The missing id.
        id: Uuid,
    },
    /// The row is still referenced by a restricting child (code 4).
    #[error(
        "an existing '{}' entity references this '{}' entity",
        referenced_by.name(),
        kind.name()
    )]
    ReferencedBy {
        /// The kind being deleted.
        kind: EntityKind,
        /// The kind that references it.
        referenced_by: EntityKind,
    },
    /// The operation is not possible with this store (e.g. `POST /config` on Postgres).
    #[error("{0}")]
    Unsupported(String),
    /// The database cannot be reached; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else; nothing was written.
    #[error("database error: {0}")]
    Internal(String),
}

/// The database's state as `/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseStatus {
    /// Whether the last contact with the database succeeded.
    pub reachable: bool,
}

/// A configuration store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A consistent view of the whole configuration (O(1)).
    fn tables(&self) -> Tables;

    /// Apply one write; returns the entities removed by a delete (the row and its cascade).
    async fn write(&self, op: WriteOp) -> Result<Vec<(EntityKind, Uuid)>, StoreError>;

    /// Replace the whole configuration (DB-less `POST /config`); `hash` becomes the
    /// configuration hash.
    async fn replace_all(&self, tables: Tables, hash: String) -> Result<(), StoreError>;

    /// The revision, bumped by every change (local or from another node).
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Kong's `configuration_hash` of what is loaded.
    fn config_hash(&self) -> String;

    /// `None` for the memory store; the database's reachability otherwise.
    fn database(&self) -> Option<DatabaseStatus>;

    /// Broadcast a manual health override to every node (this one included).
    async fn set_health(&self, health: HealthOverride) -> Result<(), StoreError>;

    /// Health overrides as they arrive (from this node or others).
    fn health_events(&self) -> broadcast::Receiver<HealthOverride>;

    /// Whether this node holds the cluster-wide lease `key` (at most one holder per database),
    /// taking it when it is free. Background work that one node should do for the whole
    /// cluster (gRPC discovery) asks before each round. A store without a cluster (memory) is
    /// a cluster of one: always true.
    async fn lead(&self, key: i64) -> bool {
        let _ = key;
        true
    }

    /// Give up every lease this node holds (shutdown), so another node takes over at once.
    async fn release_leases(&self) {}
}

/// The [`Store::lead`] lease of gRPC discovery's background refreshes.
pub const DISCOVERY_LEASE: i64 = 0x6777_6374_6c01; // "gwctl" + 1
