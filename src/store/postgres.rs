//! The Postgres store: many gateway nodes share one database.
//!
//! - Writes: one transaction per admin write. The row goes to its kind's table (constraints
//!   enforce Kong's unique and foreign keys; violations map to Kong's errors), a row is appended to
//!   `gwctl_changes`, and `pg_notify('gwctl_changes', ...)` announces it. The write returns after
//!   COMMIT, and the node applies it to its own mirror before answering.
//! - Reads: every node keeps a full mirror ([`Tables`]) and reads from it, so admin reads and the
//!   data plane never wait on the database and keep working while it is away.
//! - Following: a task LISTENs on `gwctl_changes` and re-reads each changed row (so applying a
//!   change twice or late is harmless); a poll every [`POLL_INTERVAL`] picks up anything the
//!   notifications missed; a lost connection is followed by a full resync once it is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::entity::{Entity, column_defs, foreign_defs, unique_defs};
use super::{DatabaseStatus, HealthOverride, Store, StoreError, Tables, WriteOp};
use crate::model::schema::EntityKind;

/// The notification channel (and change-log table).
pub const CHANNEL: &str = "gwctl_changes";
/// How often each node polls the change log as a safety net.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The largest entity (JSON text, bytes) a change notification carries; larger ones are read
/// back by the nodes (NOTIFY payloads stop at 8000 bytes, and the envelope needs some).
const NOTIFY_DATA_MAX: usize = 7000;
/// Change-log rows older than this are pruned.
const CHANGE_RETENTION: &str = "1 hour";
/// How far back (by commit time) the poll looks for change-log ids that committed out of order.
const LOOKBACK: &str = "30 seconds";

/// Postgres-backed store with a local mirror.
pub struct PgStore {
    pool: PgPool,
    node_id: Uuid,
    mirror: RwLock<Tables>,
    revision: watch::Sender<u64>,
    health: broadcast::Sender<HealthOverride>,
    reachable: AtomicBool,
    /// When this node last saw the database fail. Pooled connections made before that are
    /// checked before use (see [`pool_options`]).
    broken_at: BrokenAt,
    /// Highest change-log id applied.
    applied: AtomicI64,
    /// Change-log ids applied (or loaded) within the poll's look-back window. Ids are taken
    /// when a write starts but become visible when it commits, so a lower id can appear after a
    /// higher one was applied; the poll looks back over recent rows for ids not in this set.
    recent: Mutex<HashSet<i64>>,
    /// [`Store::lead`]: per lease key, a session of its own (out of the pool: a session-level
    /// advisory lock lives as long as its session) and whether it holds the lock.
    leases: tokio::sync::Mutex<HashMap<i64, Lease>>,
}

/// A lease's database session.
struct Lease {
    conn: sqlx::PgConnection,
    held: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("node_id", &self.node_id)
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The database cannot be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The schema is missing.
    #[error("the database has no gwctl schema; run `gwctl migrate up` first")]
    NotMigrated,
    /// Loading the configuration failed.
    #[error("loading the configuration from the database: {0}")]
    Load(String),
}

/// How long an admin write waits for a pooled connection while the database is reachable.
const BUSY_WAIT: Duration = Duration::from_secs(10);

fn unavailable(e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn table(kind: EntityKind) -> &'static str {
    kind.name()
}

/// A pooled connection idle this long is pinged before use: it may have been closed meanwhile.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// When this node last saw the database fail (`None`: never).
type BrokenAt = Arc<Mutex<Option<Instant>>>;

fn last_failure(broken_at: &BrokenAt) -> Option<Instant> {
    *broken_at
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The admin writes' connection pool. By default sqlx pings every connection before handing
/// it out, one more round trip (and database wake-up) per admin write; it pings again when the
/// connection goes back, which no option turns off. Here only the connections that may be dead
/// are pinged before use (a failed ping replaces them): those idle for [`PING_AFTER_IDLE`] or
/// more, and those older than the last failure this node saw (`broken_at`: a database restart
/// kills every connection, and the node notices at once through its listener).
fn pool_options(broken_at: BrokenAt) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(1))
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            let failed = last_failure(&broken_at);
            Box::pin(async move {
                let created = Instant::now().checked_sub(meta.age);
                let predates_failure = failed.is_some_and(|f| created.is_none_or(|c| c <= f));
                if meta.idle_for >= PING_AFTER_IDLE || predates_failure {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl PgStore {
    /// Connect, load everything, and start following changes.
    pub async fn connect(url: &str, node_id: Uuid) -> Result<Arc<Self>, ConnectError> {
        let broken_at = BrokenAt::default();
        let pool = pool_options(Arc::clone(&broken_at))
            .connect(url)
            .await
            .map_err(ConnectError::Connect)?;
        let migrated: bool =
            sqlx::query_scalar("SELECT to_regclass('public.gwctl_changes') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(ConnectError::Connect)?;
        if !migrated {
            return Err(ConnectError::NotMigrated);
        }
        let (tables, applied, recent) = load_all(&pool)
            .await
            .map_err(|e| ConnectError::Load(e.to_string()))?;
        tracing::info!(
            entities = tables.total(),
            change = applied,
            "configuration loaded from Postgres"
        );
        let store = Arc::new(Self {
            pool,
            node_id,
            mirror: RwLock::new(tables),
            revision: watch::Sender::new(0),
            health: broadcast::Sender::new(256),
            reachable: AtomicBool::new(true),
            broken_at,
            applied: AtomicI64::new(applied),
            recent: Mutex::new(recent),
            leases: tokio::sync::Mutex::new(HashMap::new()),
        });
        tokio::spawn(follow(Arc::downgrade(&store)));
        Ok(store)
    }

    /// The database failed: report it unreachable, and have pooled connections checked.
    fn mark_unreachable(&self) {
        self.reachable.store(false, Ordering::Relaxed);
        *self
            .broken_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// This node's id (written into the change log).
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    fn with_mirror<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut guard = match self.mirror.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let r = f(&mut guard);
        drop(guard);
        self.revision.send_modify(|r| *r += 1);
        r
    }

    fn note_applied(&self, change: i64) {
        self.applied.fetch_max(change, Ordering::SeqCst);
        self.with_recent(|r| {
            r.insert(change);
        });
    }

    fn with_recent<R>(&self, f: impl FnOnce(&mut HashSet<i64>) -> R) -> R {
        match self.recent.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Apply one change-log row (unless this node wrote it) and note it applied.
    async fn apply_row(&self, row: &sqlx::postgres::PgRow) -> Result<bool, sqlx::Error> {
        let change: i64 = row.try_get("id")?;
        let node: Option<Uuid> = row.try_get("node_id")?;
        let mut applied = false;
        if node != Some(self.node_id) {
            let kind: String = row.try_get("kind")?;
            let id: Option<Uuid> = row.try_get("entity_id")?;
            if let (Some(kind), Some(id)) = (EntityKind::from_name(&kind), id) {
                self.apply_change(kind, id).await?;
                applied = true;
            }
        }
        self.note_applied(change);
        Ok(applied)
    }

    /// Re-read one changed row and apply it to the mirror.
    async fn apply_change(&self, kind: EntityKind, id: Uuid) -> Result<(), sqlx::Error> {
        let sql = format!("SELECT data FROM {} WHERE id = $1", table(kind));
        let row: Option<sqlx::types::Json<Value>> = sqlx::query_scalar(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(sqlx::types::Json(data)) => match Entity::from_json(kind, data) {
                Ok(e) => self.with_mirror(|t| t.put(Arc::new(e))),
                Err(e) => tracing::error!(kind = kind.name(), %id, error = %e, "unreadable row"),
            },
            None => {
                self.with_mirror(|t| {
                    let _ = t.delete(kind, id, false);
                });
            }
        }
        Ok(())
    }

    async fn handle_notification(&self, payload: &str) -> Result<(), sqlx::Error> {
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            tracing::warn!(payload, "unreadable change notification");
            return Ok(());
        };
        let from_self = v["node"].as_str() == Some(self.node_id.to_string().as_str());
        if v["op"] == "health" {
            if let Ok(h) = serde_json::from_value::<HealthPayload>(v) {
                let _ = self.health.send(h.into());
            }
            return Ok(());
        }
        let change = v["id"].as_i64().unwrap_or_default();
        if from_self {
            self.note_applied(change);
            return Ok(());
        }
        let kind = v["kind"].as_str().and_then(EntityKind::from_name);
        let id = v["entity_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok());
        if let (Some(kind), Some(id)) = (kind, id) {
            let carried = (v["op"] == "upsert")
                .then(|| v.get("data").filter(|d| d.is_object()))
                .flatten()
                .and_then(|d| Entity::from_json(kind, d.clone()).ok())
                .filter(|e| e.id() == id);
            match carried {
                Some(e) => self.with_mirror(|t| t.put(Arc::new(e))),
                // A delete, or an entity too big for the payload: read the row.
                None => self.apply_change(kind, id).await?,
            }
        }
        self.note_applied(change);
        Ok(())
    }

    /// Apply change-log rows newer than what was applied (missed notifications), then the
    /// recent rows at or below it that were never applied (they committed after a higher id).
    async fn poll(&self) -> Result<usize, sqlx::Error> {
        let since = self.applied.load(Ordering::SeqCst);
        let rows = sqlx::query(
            "SELECT id, kind, entity_id, node_id FROM gwctl_changes WHERE id > $1 ORDER BY id \
             LIMIT 10000",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut applied = 0;
        for row in &rows {
            applied += usize::from(self.apply_row(row).await?);
        }
        // The look-back: ids only (cheap), then the rows of those never applied.
        let window: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM gwctl_changes WHERE at > now() - interval '{LOOKBACK}' AND id <= $1"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let missing: Vec<i64> = self.with_recent(|r| {
            window
                .iter()
                .copied()
                .filter(|id| !r.contains(id))
                .collect()
        });
        if !missing.is_empty() {
            let rows = sqlx::query(
                "SELECT id, kind, entity_id, node_id FROM gwctl_changes WHERE id = ANY($1) \
                 ORDER BY id",
            )
            .bind(&missing)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                applied += usize::from(self.apply_row(row).await?);
            }
        }
        // Forget what fell out of the window.
        let window: HashSet<i64> = window.into_iter().collect();
        self.with_recent(|r| r.retain(|id| *id > since || window.contains(id)));
        Ok(applied)
    }

    async fn resync(&self) -> Result<(), sqlx::Error> {
        let (tables, applied, recent) = load_all(&self.pool).await?;
        self.with_mirror(|t| *t = tables);
        self.applied.store(applied, Ordering::SeqCst);
        self.with_recent(|r| *r = recent);
        Ok(())
    }

    /// Run an admin write's statement. Every pooled connection busy (a burst of writes) is not
    /// an outage: while the database is known to be reachable the write waits for a connection,
    /// up to [`BUSY_WAIT`]; then, or on any other error, the error goes to the caller.
    async fn with_connection_wait<T, F, Fut>(&self, f: F) -> Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            match f().await {
                Err(sqlx::Error::PoolTimedOut)
                    if self.reachable.load(Ordering::Relaxed)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!("every database connection busy; waiting");
                }
                other => return other,
            }
        }
    }

    fn map_write_error(&self, e: sqlx::Error, op: &WriteOp) -> StoreError {
        let Some(db) = e.as_database_error() else {
            self.mark_unreachable();
            return unavailable(&e);
        };
        let constraint = db.constraint().unwrap_or_default().to_owned();
        let code = db.code().unwrap_or_default().to_string();
        match (code.as_str(), op) {
            ("23505", WriteOp::Insert(ent) | WriteOp::Upsert(ent)) => {
                if constraint.ends_with("_pkey") {
                    return StoreError::PrimaryKey {
                        kind: ent.kind(),
                        id: ent.id(),
                    };
                }
                if let Some(def) = unique_defs(ent.kind())
                    .iter()
                    .find(|d| d.constraint == constraint)
                {
                    let (message_key, fields) = ent.unique_display(def);
                    return StoreError::Unique {
                        kind: ent.kind(),
                        message_key,
                        fields,
                    };
                }
                StoreError::Internal(db.message().to_owned())
            }
            ("23503", WriteOp::Insert(ent) | WriteOp::Upsert(ent)) => {
                for def in foreign_defs(ent.kind()) {
                    if constraint.contains(def.column)
                        && let Some(id) = ent.foreign(def.field)
                    {
                        return StoreError::ForeignKey {
                            field: def.field,
                            target: def.target,
                            id,
                        };
                    }
                }
                StoreError::Internal(db.message().to_owned())
            }
            ("23503", WriteOp::Delete(kind, _)) => {
                let child = EntityKind::ALL
                    .into_iter()
                    .find(|k| constraint.starts_with(&format!("{}_", k.name())))
                    .unwrap_or(EntityKind::Routes);
                StoreError::ReferencedBy {
                    kind: *kind,
                    referenced_by: child,
                }
            }
            _ => StoreError::Internal(db.message().to_owned()),
        }
    }

    /// One admin write as ONE statement (one round trip, atomic on its own): the entity's
    /// insert/upsert or delete, its change-log row, and the `NOTIFY` (delivered at commit), as
    /// data-modifying CTEs. `Ok(None)`: a delete that found nothing (no change logged).
    async fn write_stmt(&self, op: &WriteOp) -> Result<Option<i64>, sqlx::Error> {
        // The change-log row and the notification, over the CTE `e` (the written entity's id,
        // and its data for an upsert). The notification carries the entity when it fits in
        // NOTIFY's 8000-byte payload, so the other nodes apply it without reading it back.
        let log_and_notify = |first: usize, data: &str| {
            let (kind, verb, node, channel) = (first, first + 1, first + 2, first + 3);
            format!(
                ", c AS (INSERT INTO gwctl_changes (kind, entity_id, op, node_id) \
                 SELECT ${kind}::text, e.id, ${verb}::text, ${node}::uuid FROM e RETURNING id, entity_id) \
                 SELECT c.id FROM c CROSS JOIN e CROSS JOIN LATERAL (SELECT pg_notify(${channel}::text, \
                 json_build_object('id', c.id, 'kind', ${kind}::text, 'entity_id', c.entity_id, \
                 'op', ${verb}::text, 'node', ${node}::uuid, 'data', {data})::text)) AS n"
            )
        };
        let row = match op {
            WriteOp::Insert(e) | WriteOp::Upsert(e) => {
                let cols = column_defs(e.kind());
                let mut names = vec!["id", "data"];
                names.extend(cols.iter().map(|c| c.column));
                let placeholders: Vec<String> =
                    (1..=names.len()).map(|i| format!("${i}")).collect();
                let mut sql = format!(
                    "WITH e AS (INSERT INTO {} ({}) VALUES ({})",
                    table(e.kind()),
                    names.join(", "),
                    placeholders.join(", ")
                );
                if matches!(op, WriteOp::Upsert(_)) {
                    let sets: Vec<String> = names[1..]
                        .iter()
                        .map(|n| format!("{n} = EXCLUDED.{n}"))
                        .collect();
                    sql.push_str(&format!(
                        " ON CONFLICT (id) DO UPDATE SET {}",
                        sets.join(", ")
                    ));
                }
                sql.push_str(" RETURNING id, data)");
                sql.push_str(&log_and_notify(
                    names.len() + 1,
                    &format!(
                        "CASE WHEN octet_length(e.data::text) <= {NOTIFY_DATA_MAX} THEN e.data END"
                    ),
                ));
                let mut q = sqlx::query_scalar::<_, i64>(&sql)
                    .bind(e.id())
                    .bind(sqlx::types::Json(e.to_json()));
                for c in cols {
                    let field = c.field;
                    if c.is_uuid {
                        q = q.bind(e.foreign(field));
                    } else {
                        q = q.bind(e.text(field).map(str::to_owned));
                    }
                }
                q.bind(e.kind().name())
                    .bind("upsert")
                    .bind(self.node_id)
                    .bind(CHANNEL)
                    .fetch_optional(&self.pool)
                    .await?
            }
            WriteOp::Delete(kind, id) => {
                let sql = format!(
                    "WITH e AS (DELETE FROM {} WHERE id = $1 RETURNING id){}",
                    table(*kind),
                    log_and_notify(2, "NULL::jsonb")
                );
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(id)
                    .bind(kind.name())
                    .bind("delete")
                    .bind(self.node_id)
                    .bind(CHANNEL)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        Ok(row)
    }
}

/// Load every table, the change-log position and the ids of the look-back window (all
/// reflected in the tables) in one consistent snapshot.
async fn load_all(pool: &PgPool) -> Result<(Tables, i64, HashSet<i64>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let applied: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM gwctl_changes")
        .fetch_one(&mut *tx)
        .await?;
    let recent: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM gwctl_changes WHERE at > now() - interval '{LOOKBACK}'"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let mut tables = Tables::default();
    for kind in EntityKind::ALL {
        let sql = format!("SELECT data FROM {}", table(kind));
        let rows: Vec<sqlx::types::Json<Value>> =
            sqlx::query_scalar(&sql).fetch_all(&mut *tx).await?;
        for sqlx::types::Json(data) in rows {
            match Entity::from_json(kind, data) {
                Ok(e) => tables.put(Arc::new(e)),
                Err(e) => {
                    tracing::error!(kind = kind.name(), error = %e, "skipping unreadable row")
                }
            }
        }
    }
    tx.commit().await?;
    Ok((tables, applied, recent.into_iter().collect()))
}

/// Follow the change log until the store is dropped.
async fn follow(store: Weak<PgStore>) {
    let mut backoff = Duration::from_millis(100);
    let mut needs_resync = false;
    loop {
        let Some(pool) = store.upgrade().map(|s| s.pool.clone()) else {
            return;
        };
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                if let Some(s) = store.upgrade() {
                    s.mark_unreachable();
                }
                tracing::warn!(error = %e, "database unreachable; serving the last configuration");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                needs_resync = true;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed");
            tokio::time::sleep(backoff).await;
            needs_resync = true;
            continue;
        }
        if needs_resync {
            let Some(s) = store.upgrade() else { return };
            match s.resync().await {
                Ok(()) => {
                    tracing::info!("database reachable again; configuration resynchronised");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resync failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        if let Some(s) = store.upgrade() {
            s.reachable.store(true, Ordering::Relaxed);
        }
        backoff = Duration::from_millis(100);
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut polls: u64 = 0;
        loop {
            tokio::select! {
                n = listener.try_recv() => {
                    let Some(s) = store.upgrade() else { return };
                    match n {
                        Ok(Some(n)) => {
                            if let Err(e) = s.handle_notification(n.payload()).await {
                                tracing::warn!(error = %e, "applying a change failed");
                                needs_resync = true;
                                break;
                            }
                        }
                        // The connection dropped: notifications may be lost.
                        Ok(None) | Err(_) => {
                            s.mark_unreachable();
                            tracing::warn!("lost the database connection; serving the last configuration");
                            needs_resync = true;
                            break;
                        }
                    }
                }
                _ = tick.tick() => {
                    let Some(s) = store.upgrade() else { return };
                    match s.poll().await {
                        Ok(n) => {
                            s.reachable.store(true, Ordering::Relaxed);
                            if n > 0 {
                                tracing::info!(changes = n, "applied changes missed by notifications");
                            }
                        }
                        Err(e) => {
                            s.mark_unreachable();
                            tracing::warn!(error = %e, "polling the change log failed");
                            needs_resync = true;
                            break;
                        }
                    }
                    polls += 1;
                    if polls.is_multiple_of(30) {
                        let sql = format!(
                            "DELETE FROM gwctl_changes WHERE at < now() - interval '{CHANGE_RETENTION}'"
                        );
                        let _ = sqlx::query(&sql).execute(&s.pool).await;
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

#[derive(serde::Deserialize)]
struct HealthPayload {
    upstream: Uuid,
    target: Uuid,
    address: Option<String>,
    healthy: bool,
}

impl From<HealthPayload> for HealthOverride {
    fn from(h: HealthPayload) -> Self {
        Self {
            upstream: h.upstream,
            target: h.target,
            address: h.address,
            healthy: h.healthy,
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn tables(&self) -> Tables {
        match self.mirror.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<Vec<(EntityKind, Uuid)>, StoreError> {
        let change = self.with_connection_wait(|| self.write_stmt(&op)).await;
        let change = change.map_err(|e| self.map_write_error(e, &op))?;
        self.reachable.store(true, Ordering::Relaxed);
        let removed = match op {
            WriteOp::Insert(e) | WriteOp::Upsert(e) => {
                self.with_mirror(|t| t.put(Arc::new(e)));
                Vec::new()
            }
            WriteOp::Delete(kind, id) => {
                if change.is_some() {
                    self.with_mirror(|t| t.delete(kind, id, false).unwrap_or_default())
                } else {
                    Vec::new()
                }
            }
        };
        if let Some(c) = change {
            self.note_applied(c);
        }
        Ok(removed)
    }

    async fn replace_all(&self, _tables: Tables, _hash: String) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "this endpoint is only available when Kong is configured to not use a database".into(),
        ))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn config_hash(&self) -> String {
        crate::declarative::config_hash(&format!(
            "postgres#{}",
            self.applied.load(Ordering::SeqCst)
        ))
    }

    fn database(&self) -> Option<DatabaseStatus> {
        Some(DatabaseStatus {
            reachable: self.reachable.load(Ordering::Relaxed),
        })
    }

    async fn set_health(&self, health: HealthOverride) -> Result<(), StoreError> {
        let payload = json!({
            "op": "health",
            "node": self.node_id,
            "upstream": health.upstream,
            "target": health.target,
            "address": health.address,
            "healthy": health.healthy,
        });
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                self.mark_unreachable();
                unavailable(&e)
            })?;
        // Our own listener delivers it too; nodes apply overrides idempotently.
        Ok(())
    }

    fn health_events(&self) -> broadcast::Receiver<HealthOverride> {
        self.health.subscribe()
    }

    /// A session-level `pg_try_advisory_lock(key)` on a session kept for the lease: held until
    /// that session ends (this node stops or loses the database), then another node's next
    /// try takes it. A holder checks its session is alive on every call.
    async fn lead(&self, key: i64) -> bool {
        let mut leases = self.leases.lock().await;
        let lease = match leases.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Ok(conn) = self.pool.acquire().await else {
                    return false;
                };
                e.insert(Lease {
                    conn: conn.detach(),
                    held: false,
                })
            }
        };
        let answer = if lease.held {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut lease.conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut lease.conn)
                .await
        };
        match answer {
            Ok(held) => {
                if held && !lease.held {
                    tracing::info!(lease = key, "this node now leads");
                }
                lease.held = held;
                held
            }
            // The session is gone, and the lock with it: start over on the next call.
            Err(e) => {
                if lease.held {
                    tracing::warn!(lease = key, error = %e, "lost the lease's database session");
                }
                leases.remove(&key);
                false
            }
        }
    }

    async fn release_leases(&self) {
        let leases = std::mem::take(&mut *self.leases.lock().await);
        for (key, mut lease) in leases {
            if lease.held {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut lease.conn)
                    .await;
                tracing::info!(lease = key, "lease released");
            }
            let _ = sqlx::Connection::close(lease.conn).await;
        }
    }
}
