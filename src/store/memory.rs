//! The in-memory store (DB-less mode): [`Tables`] behind a lock, a revision, a hash.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::{DatabaseStatus, HealthOverride, Store, StoreError, Tables, WriteOp};
use crate::model::schema::EntityKind;

/// DB-less store: the configuration lives in this process only.
pub struct MemoryStore {
    state: RwLock<State>,
    revision: watch::Sender<u64>,
    health: broadcast::Sender<HealthOverride>,
}

struct State {
    tables: Tables,
    hash: String,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("revision", &*self.revision.borrow())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store holding `tables`, whose text hashed to `hash`.
    pub fn new(tables: Tables, hash: String) -> Self {
        Self {
            state: RwLock::new(State { tables, hash }),
            revision: watch::Sender::new(0),
            health: broadcast::Sender::new(64),
        }
    }

    fn bump(&self, state: &mut State, rehash: bool) {
        let mut next = 0;
        self.revision.send_modify(|r| {
            *r += 1;
            next = *r;
        });
        if rehash {
            // Admin writes change what is loaded: the hash must change so that a `/config`
            // with `check_hash` of the original text is applied again, not skipped.
            state.hash = crate::declarative::config_hash(&format!("{}#rev{next}", state.hash));
        }
    }

    /// Apply a write to `tables` with every check (shared with the Postgres mirror's dry run).
    pub fn apply(tables: &mut Tables, op: WriteOp) -> Result<Vec<(EntityKind, Uuid)>, StoreError> {
        match op {
            WriteOp::Insert(e) => {
                if tables.get(e.kind(), e.id()).is_some() {
                    return Err(StoreError::PrimaryKey {
                        kind: e.kind(),
                        id: e.id(),
                    });
                }
                tables.check(&e)?;
                tables.put(Arc::new(e));
                Ok(Vec::new())
            }
            WriteOp::Upsert(e) => {
                tables.check(&e)?;
                tables.put(Arc::new(e));
                Ok(Vec::new())
            }
            WriteOp::Delete(kind, id) => tables.delete(kind, id, true),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn tables(&self) -> Tables {
        match self.state.read() {
            Ok(s) => s.tables.clone(),
            Err(poisoned) => poisoned.into_inner().tables.clone(),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<Vec<(EntityKind, Uuid)>, StoreError> {
        let mut state = self
            .state
            .write()
            .map_err(|_| StoreError::Internal("store lock poisoned".into()))?;
        // Work on a clone (O(1)) so a failed write leaves nothing behind.
        let mut next = state.tables.clone();
        let removed = Self::apply(&mut next, op)?;
        state.tables = next;
        self.bump(&mut state, true);
        Ok(removed)
    }

    async fn replace_all(&self, tables: Tables, hash: String) -> Result<(), StoreError> {
        let mut state = self
            .state
            .write()
            .map_err(|_| StoreError::Internal("store lock poisoned".into()))?;
        state.tables = tables;
        state.hash = hash;
        self.bump(&mut state, false);
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn config_hash(&self) -> String {
        match self.state.read() {
            Ok(s) => s.hash.clone(),
            Err(poisoned) => poisoned.into_inner().hash.clone(),
        }
    }

    fn database(&self) -> Option<DatabaseStatus> {
        None
    }

    async fn set_health(&self, health: HealthOverride) -> Result<(), StoreError> {
        let _ = self.health.send(health);
        Ok(())
    }

    fn health_events(&self) -> broadcast::Receiver<HealthOverride> {
        self.health.subscribe()
    }
}
