//! [`Tables`]: the whole configuration as persistent (structurally shared) maps with their unique
//! and parent indexes.
//!
//! Cloning a `Tables` is O(1), so every admin request and every snapshot gets its own consistent
//! view without copying 100,000 consumers, and a write costs O(log n). The same value backs the
//! memory store (DB-less) and each node's mirror of Postgres.

use std::sync::Arc;

use imbl::{HashMap as PHashMap, OrdMap, OrdSet};
use uuid::Uuid;

use super::StoreError;
use super::credentials::{CredentialEntry, CredentialIndex, credential_key};
use super::entity::{Entity, OnDelete, foreign_defs, kind_index, unique_defs};
use crate::model::Config;
use crate::model::schema::{EntityKind, Validated};

/// The children of one parent, in id order. Most parents have a handful (a consumer's
/// credentials), so small sets are a shared sorted slice (tens of bytes) and only large ones use a
/// persistent B-tree (whose nodes cost about a kilobyte each).
#[derive(Clone, Debug)]
pub enum ChildSet {
    /// Up to [`ChildSet::SMALL`] ids, sorted.
    Few(Arc<[Uuid]>),
    /// More.
    Many(OrdSet<Uuid>),
}

impl Default for ChildSet {
    fn default() -> Self {
        Self::Few(Arc::from(Vec::new()))
    }
}

impl ChildSet {
    const SMALL: usize = 32;

    fn insert(&mut self, id: Uuid) {
        match self {
            Self::Few(ids) => {
                let Err(at) = ids.binary_search(&id) else {
                    return;
                };
                if ids.len() >= Self::SMALL {
                    let mut set: OrdSet<Uuid> = ids.iter().copied().collect();
                    set.insert(id);
                    *self = Self::Many(set);
                } else {
                    let mut v = ids.to_vec();
                    v.insert(at, id);
                    *ids = Arc::from(v);
                }
            }
            Self::Many(set) => {
                set.insert(id);
            }
        }
    }

    fn remove(&mut self, id: &Uuid) {
        match self {
            Self::Few(ids) => {
                if let Ok(at) = ids.binary_search(id) {
                    let mut v = ids.to_vec();
                    v.remove(at);
                    *ids = Arc::from(v);
                }
            }
            Self::Many(set) => {
                set.remove(id);
            }
        }
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        match self {
            Self::Few(ids) => ids.len(),
            Self::Many(set) => set.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids in order, starting after `after` when given.
    pub fn iter_after(&self, after: Option<Uuid>) -> Box<dyn Iterator<Item = Uuid> + '_> {
        match self {
            Self::Few(ids) => {
                let start = after.map_or(0, |a| match ids.binary_search(&a) {
                    Ok(i) => i + 1,
                    Err(i) => i,
                });
                Box::new(ids[start..].iter().copied())
            }
            Self::Many(set) => match after {
                None => Box::new(set.iter().copied()),
                Some(a) => Box::new(
                    set.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                        .copied(),
                ),
            },
        }
    }
}

/// The hash a unique index files `value` under (SipHash with fixed keys: stable in a process).
fn value_hash(value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The bounds of the entries filed under `hash`.
fn hash_range(hash: u64) -> std::ops::RangeInclusive<(u64, Uuid)> {
    (hash, Uuid::nil())..=(hash, Uuid::max())
}

/// One entity kind's rows and indexes.
#[derive(Clone, Default)]
pub struct Table {
    /// Rows ordered by id (Kong's page order).
    rows: OrdMap<Uuid, Arc<Entity>>,
    /// One index per [`unique_defs`] entry: (hash of the key value, id). A lookup reads the rows
    /// filed under the hash and keeps the one whose value matches (collisions cost a comparison).
    ///
    /// B-trees, not HAMTs: a persistent hash map with 100,000 keys spreads them ~3 to a leaf of
    /// 32 fixed slots (~50 MB per index); a B-tree's nodes stay half full. Entries hold no
    /// pointers, so the copy a write makes of a node is a plain copy: no string is cloned or
    /// freed per entry (with the text in the entries, that was a third of an admin write).
    unique: Vec<OrdSet<(u64, Uuid)>>,
    /// One index per [`foreign_defs`] entry: parent id -> child ids.
    children: Vec<OrdMap<Uuid, ChildSet>>,
}

impl Table {
    fn new(kind: EntityKind) -> Self {
        Self {
            rows: OrdMap::new(),
            unique: vec![OrdSet::new(); unique_defs(kind).len()],
            children: vec![OrdMap::new(); foreign_defs(kind).len()],
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows in id order.
    pub fn rows(&self) -> &OrdMap<Uuid, Arc<Entity>> {
        &self.rows
    }
}

/// The whole configuration, indexed.
#[derive(Clone)]
pub struct Tables {
    tables: Vec<Table>,
    /// Plugin name -> number of instances (for `GET /`'s `enabled_in_cluster`).
    plugin_names: PHashMap<String, usize>,
    /// The request path's lookups: key-auth key and JWT secret key -> credential and consumer.
    keyauth: CredentialIndex,
    jwt: CredentialIndex,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            tables: EntityKind::ALL.iter().map(|k| Table::new(*k)).collect(),
            plugin_names: PHashMap::new(),
            keyauth: CredentialIndex::default(),
            jwt: CredentialIndex::default(),
        }
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tables");
        for k in EntityKind::ALL {
            d.field(k.name(), &self.table(k).len());
        }
        d.finish()
    }
}

impl Tables {
    /// The rows of `kind`.
    pub fn table(&self, kind: EntityKind) -> &Table {
        &self.tables[kind_index(kind)]
    }

    /// One entity by id.
    pub fn get(&self, kind: EntityKind, id: Uuid) -> Option<&Arc<Entity>> {
        self.table(kind).rows.get(&id)
    }

    /// The id of the entity whose unique key `def_index` (of [`unique_defs`]) has `value`.
    pub fn by_unique(&self, kind: EntityKind, def_index: usize, value: &str) -> Option<Uuid> {
        let t = self.table(kind);
        let def = unique_defs(kind).get(def_index)?;
        t.unique
            .get(def_index)?
            .range(hash_range(value_hash(value)))
            .find_map(|&(_, id)| {
                let row = t.rows.get(&id)?;
                (row.unique_value(def).as_deref() == Some(value)).then_some(id)
            })
    }

    /// The id of the entity whose single-field unique key `field` equals `value`.
    pub fn by_field(&self, kind: EntityKind, field: &str, value: &str) -> Option<Uuid> {
        let index = unique_defs(kind).iter().position(|d| d.fields == [field])?;
        self.by_unique(kind, index, value)
    }

    /// The key-auth credential (`kind` KeyauthCredentials) or JWT secret (JwtSecrets) whose `key`
    /// is `key`, with its consumer: one hash probe, for the request path.
    pub fn credential(&self, kind: EntityKind, key: &str) -> Option<&CredentialEntry> {
        match kind {
            EntityKind::KeyauthCredentials => self.keyauth.get(key),
            EntityKind::JwtSecrets => self.jwt.get(key),
            _ => None,
        }
    }

    fn credential_index(&mut self, kind: EntityKind) -> Option<&mut CredentialIndex> {
        match kind {
            EntityKind::KeyauthCredentials => Some(&mut self.keyauth),
            EntityKind::JwtSecrets => Some(&mut self.jwt),
            _ => None,
        }
    }

    /// Re-point the credential index entries of consumer `id`'s credentials at `consumer`.
    fn refresh_credentials(&mut self, id: Uuid, consumer: Option<&Arc<Entity>>) {
        for kind in [EntityKind::KeyauthCredentials, EntityKind::JwtSecrets] {
            let credentials: Vec<Arc<Entity>> = self
                .children(kind, "consumer", id)
                .map(|s| {
                    s.iter_after(None)
                        .filter_map(|c| self.get(kind, c).cloned())
                        .collect()
                })
                .unwrap_or_default();
            let Some(index) = self.credential_index(kind) else {
                continue;
            };
            for c in credentials {
                index.insert(c, consumer.cloned());
            }
        }
    }

    /// Ids of the children of `parent` through foreign key `field` of `kind`, in id order.
    pub fn children(&self, kind: EntityKind, field: &str, parent: Uuid) -> Option<&ChildSet> {
        let index = foreign_defs(kind).iter().position(|d| d.field == field)?;
        self.table(kind).children[index].get(&parent)
    }

    /// Distinct names of configured plugins, sorted.
    pub fn plugin_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugin_names.keys().cloned().collect();
        names.sort();
        names
    }

    /// Total number of entities.
    pub fn total(&self) -> usize {
        self.tables.iter().map(Table::len).sum()
    }

    /// Check that `e` may be written (inserted, or replacing the row with the same id): its
    /// foreign keys exist and its unique keys are free.
    pub fn check(&self, e: &Entity) -> Result<(), StoreError> {
        let kind = e.kind();
        for def in foreign_defs(kind) {
            if let Some(id) = e.foreign(def.field)
                && self.get(def.target, id).is_none()
            {
                return Err(StoreError::ForeignKey {
                    field: def.field,
                    target: def.target,
                    id,
                });
            }
        }
        for (i, def) in unique_defs(kind).iter().enumerate() {
            if let Some(value) = e.unique_value(def)
                && let Some(owner) = self.by_unique(kind, i, &value)
                && owner != e.id()
            {
                let (message_key, fields) = e.unique_display(def);
                return Err(StoreError::Unique {
                    kind,
                    message_key,
                    fields,
                });
            }
        }
        Ok(())
    }

    /// Insert or replace `e` (by id) without checks, keeping every index right. A unique key held
    /// by another row (a stale mirror) is taken over.
    pub fn put(&mut self, e: Arc<Entity>) {
        let kind = e.kind();
        let id = e.id();
        if let Some(old) = self.table(kind).rows.get(&id).cloned() {
            self.unindex(&old);
        }
        self.index(&e);
        if kind == EntityKind::Consumers {
            self.refresh_credentials(id, Some(&e));
        }
        self.tables[kind_index(kind)].rows.insert(id, e);
    }

    fn index(&mut self, e: &Arc<Entity>) {
        let kind = e.kind();
        let id = e.id();
        if credential_key(e).is_some() {
            let consumer = e
                .foreign("consumer")
                .and_then(|c| self.get(EntityKind::Consumers, c).cloned());
            if let Some(index) = self.credential_index(kind) {
                index.insert(e.clone(), consumer);
            }
        }
        if let Validated::Plugin(p) = &**e {
            *self.plugin_names.entry(p.name.clone()).or_insert(0) += 1;
        }
        for (i, def) in unique_defs(kind).iter().enumerate() {
            if let Some(v) = e.unique_value(def) {
                // A row still holding the value (a stale mirror) loses it to `e`.
                if let Some(owner) = self.by_unique(kind, i, &v).filter(|o| *o != id) {
                    self.tables[kind_index(kind)].unique[i].remove(&(value_hash(&v), owner));
                }
                self.tables[kind_index(kind)].unique[i].insert((value_hash(&v), id));
            }
        }
        let t = &mut self.tables[kind_index(kind)];
        for (i, def) in foreign_defs(kind).iter().enumerate() {
            if let Some(parent) = e.foreign(def.field) {
                t.children[i].entry(parent).or_default().insert(id);
            }
        }
    }

    fn unindex(&mut self, e: &Entity) {
        let kind = e.kind();
        let id = e.id();
        if let Some(key) = credential_key(e)
            && let Some(index) = self.credential_index(kind)
        {
            index.remove(key, e);
        }
        if let Validated::Plugin(p) = e
            && let Some(n) = self.plugin_names.get_mut(&p.name)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.plugin_names.remove(&p.name);
            }
        }
        let t = &mut self.tables[kind_index(kind)];
        for (i, def) in unique_defs(kind).iter().enumerate() {
            if let Some(v) = e.unique_value(def) {
                t.unique[i].remove(&(value_hash(&v), id));
            }
        }
        for (i, def) in foreign_defs(kind).iter().enumerate() {
            if let Some(parent) = e.foreign(def.field)
                && let Some(set) = t.children[i].get_mut(&parent)
            {
                set.remove(&id);
                if set.is_empty() {
                    t.children[i].remove(&parent);
                }
            }
        }
    }

    /// The first kind whose rows restrict deleting `kind`'s row `id` (Kong: a service that still
    /// has routes).
    pub fn restricted_by(&self, kind: EntityKind, id: Uuid) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|child| {
            foreign_defs(*child).iter().any(|d| {
                d.target == kind
                    && d.on_delete == OnDelete::Restrict
                    && self
                        .children(*child, d.field, id)
                        .is_some_and(|s| !s.is_empty())
            })
        })
    }

    /// Delete a row and everything that cascades from it; returns what was removed (the row
    /// first). `restrict` refuses when a restricting child exists.
    pub fn delete(
        &mut self,
        kind: EntityKind,
        id: Uuid,
        restrict: bool,
    ) -> Result<Vec<(EntityKind, Uuid)>, StoreError> {
        if restrict && let Some(child) = self.restricted_by(kind, id) {
            return Err(StoreError::ReferencedBy {
                kind,
                referenced_by: child,
            });
        }
        let mut removed = Vec::new();
        self.delete_rec(kind, id, &mut removed);
        Ok(removed)
    }

    fn delete_rec(&mut self, kind: EntityKind, id: Uuid, removed: &mut Vec<(EntityKind, Uuid)>) {
        let Some(old) = self.tables[kind_index(kind)].rows.remove(&id) else {
            return;
        };
        self.unindex(&old);
        if kind == EntityKind::Consumers {
            self.refresh_credentials(id, None);
        }
        removed.push((kind, id));
        for child in EntityKind::ALL {
            for def in foreign_defs(child) {
                if def.target != kind {
                    continue;
                }
                let ids: Vec<Uuid> = self
                    .children(child, def.field, id)
                    .map(|s| s.iter_after(None).collect())
                    .unwrap_or_default();
                for cid in ids {
                    match def.on_delete {
                        OnDelete::Cascade => self.delete_rec(child, cid, removed),
                        // Only reached with `restrict == false` (a mirror following the database,
                        // which already refused or resolved it): drop the dangling reference's
                        // children index entry by deleting nothing else.
                        OnDelete::Restrict => {}
                    }
                }
            }
        }
    }

    /// Build tables from a validated declarative configuration (references already resolved).
    pub fn from_config(config: Config) -> Self {
        let mut t = Self::default();
        let Config {
            services,
            routes,
            upstreams,
            targets,
            consumers,
            plugins,
            keyauth_credentials,
            jwt_secrets,
            acls,
            ca_certificates,
        } = config;
        let all = services
            .into_iter()
            .map(|e| Validated::Service(Box::new(e)))
            .chain(routes.into_iter().map(|e| Validated::Route(Box::new(e))))
            .chain(
                upstreams
                    .into_iter()
                    .map(|e| Validated::Upstream(Box::new(e))),
            )
            .chain(targets.into_iter().map(Validated::Target))
            .chain(consumers.into_iter().map(Validated::Consumer))
            .chain(plugins.into_iter().map(|e| Validated::Plugin(Box::new(e))))
            .chain(
                keyauth_credentials
                    .into_iter()
                    .map(Validated::KeyauthCredential),
            )
            .chain(jwt_secrets.into_iter().map(Validated::JwtSecret))
            .chain(acls.into_iter().map(Validated::Acl))
            .chain(ca_certificates.into_iter().map(Validated::CaCertificate));
        for e in all {
            t.put(Arc::new(e));
        }
        t.keyauth.fold();
        t.jwt.fold();
        t
    }

    /// Whether the entities a snapshot compiles (services, routes, upstreams, targets, plugins,
    /// CA certificates) are the very same as in `other` (shared, unmodified tables: O(1)).
    /// False does not mean they differ, only that they may.
    pub fn same_core(&self, other: &Tables) -> bool {
        [
            EntityKind::Services,
            EntityKind::Routes,
            EntityKind::Upstreams,
            EntityKind::Targets,
            EntityKind::Plugins,
            EntityKind::CaCertificates,
        ]
        .iter()
        .all(|k| self.table(*k).rows.ptr_eq(&other.table(*k).rows))
    }

    /// The entities the proxy compiles into a snapshot (services, routes, upstreams, targets,
    /// plugins, CA certificates). Consumers and credentials are not copied: the snapshot reads them
    /// from the tables it keeps, so a reload costs the same with 10 or 100,000 consumers.
    pub fn core_config(&self) -> Config {
        let mut c = Config::default();
        for e in self.table(EntityKind::Services).rows.values() {
            if let Validated::Service(s) = &**e {
                c.services.push((**s).clone());
            }
        }
        for e in self.table(EntityKind::Routes).rows.values() {
            if let Validated::Route(r) = &**e {
                c.routes.push((**r).clone());
            }
        }
        for e in self.table(EntityKind::Upstreams).rows.values() {
            if let Validated::Upstream(u) = &**e {
                c.upstreams.push((**u).clone());
            }
        }
        for e in self.table(EntityKind::Targets).rows.values() {
            if let Validated::Target(t) = &**e {
                c.targets.push(t.clone());
            }
        }
        for e in self.table(EntityKind::Plugins).rows.values() {
            if let Validated::Plugin(p) = &**e {
                c.plugins.push((**p).clone());
            }
        }
        for e in self.table(EntityKind::CaCertificates).rows.values() {
            if let Validated::CaCertificate(ca) = &**e {
                c.ca_certificates.push(ca.clone());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Ctx, NoPlugins, validate};
    use serde_json::{Value, json};

    fn e(kind: EntityKind, v: Value) -> Arc<Entity> {
        Arc::new(validate(kind, &v, &Ctx::new(1_700_000_000_000, &NoPlugins)).unwrap())
    }

    #[test]
    fn unique_foreign_and_cascade_rules() {
        let mut t = Tables::default();
        let svc = e(EntityKind::Services, json!({"name": "a", "host": "x"}));
        t.check(&svc).unwrap();
        t.put(Arc::clone(&svc));
        let dup = e(EntityKind::Services, json!({"name": "a", "host": "y"}));
        assert!(matches!(t.check(&dup), Err(StoreError::Unique { .. })));
        // Replacing itself keeps its own key.
        t.check(&svc).unwrap();

        let sid = svc.id().to_string();
        let route = e(
            EntityKind::Routes,
            json!({"name": "r", "paths": ["/"], "service": {"id": sid}}),
        );
        t.check(&route).unwrap();
        t.put(Arc::clone(&route));
        let dangling = e(
            EntityKind::Routes,
            json!({"paths": ["/"], "service": {"id": Uuid::new_v4().to_string()}}),
        );
        assert!(matches!(
            t.check(&dangling),
            Err(StoreError::ForeignKey { .. })
        ));

        // A service with routes cannot go; its plugins cascade once the routes are gone.
        let plugin = Arc::new(Validated::Plugin(Box::new(crate::model::Plugin {
            id: Uuid::new_v4(),
            name: "cors".into(),
            instance_name: None,
            route: None,
            service: Some(svc.id().into()),
            consumer: None,
            config: json!({}),
            protocols: vec![],
            enabled: true,
            ordering: None,
            tags: None,
            created_at: 0,
            updated_at: 0,
        })));
        t.put(plugin);
        assert_eq!(t.plugin_names(), vec!["cors".to_owned()]);
        assert!(matches!(
            t.delete(EntityKind::Services, svc.id(), true),
            Err(StoreError::ReferencedBy { .. })
        ));
        t.delete(EntityKind::Routes, route.id(), true).unwrap();
        let removed = t.delete(EntityKind::Services, svc.id(), true).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(t.plugin_names().is_empty());
        assert_eq!(t.total(), 0);
        // The name is free again.
        t.check(&dup).unwrap();
    }

    #[test]
    fn child_sets_stay_ordered_across_the_small_limit() {
        let mut set = ChildSet::default();
        let mut ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            set.insert(*id);
            set.insert(*id);
        }
        ids.sort();
        assert!(matches!(set, ChildSet::Many(_)));
        assert_eq!(set.iter_after(None).collect::<Vec<_>>(), ids);
        assert_eq!(set.iter_after(Some(ids[49])).collect::<Vec<_>>(), ids[50..]);
        let mut small = ChildSet::default();
        for id in &ids[..5] {
            small.insert(*id);
        }
        small.remove(&ids[2]);
        assert_eq!(small.len(), 4);
        assert_eq!(
            small.iter_after(Some(ids[1])).collect::<Vec<_>>(),
            vec![ids[3], ids[4]]
        );
    }

    #[test]
    fn clones_are_independent() {
        let mut t = Tables::default();
        t.put(e(EntityKind::Consumers, json!({"username": "bob"})));
        let before = t.clone();
        t.put(e(EntityKind::Consumers, json!({"username": "ann"})));
        assert_eq!(before.table(EntityKind::Consumers).len(), 1);
        assert_eq!(t.table(EntityKind::Consumers).len(), 2);
        assert!(
            t.by_field(EntityKind::Consumers, "username", "ann")
                .is_some()
        );
        assert!(
            before
                .by_field(EntityKind::Consumers, "username", "ann")
                .is_none()
        );
    }

    #[test]
    fn credential_lookups_follow_consumer_and_credential_writes() {
        let username = |t: &Tables, kind, key| {
            t.credential(kind, key)
                .and_then(|c| c.consumer().cloned())
                .and_then(|c| match &*c {
                    Validated::Consumer(c) => c.username.clone(),
                    _ => None,
                })
        };
        let mut t = Tables::default();
        let bob = e(EntityKind::Consumers, json!({"username": "bob"}));
        t.put(bob.clone());
        let cref = json!({"id": bob.id()});
        let cred = e(
            EntityKind::KeyauthCredentials,
            json!({"consumer": cref, "key": "k1"}),
        );
        t.put(cred.clone());
        let secret = e(
            EntityKind::JwtSecrets,
            json!({"consumer": cref, "key": "iss"}),
        );
        t.put(secret.clone());
        let ka = EntityKind::KeyauthCredentials;
        assert_eq!(username(&t, ka, "k1").as_deref(), Some("bob"));
        assert_eq!(
            username(&t, EntityKind::JwtSecrets, "iss").as_deref(),
            Some("bob")
        );

        // Renaming the consumer reaches its credentials' entries; an older clone keeps the old.
        let before = t.clone();
        let renamed = json!({"id": bob.id(), "username": "robert"});
        t.put(e(EntityKind::Consumers, renamed));
        assert_eq!(username(&t, ka, "k1").as_deref(), Some("robert"));
        assert_eq!(username(&before, ka, "k1").as_deref(), Some("bob"));

        // A new key replaces the old one.
        t.put(e(
            ka,
            json!({"id": cred.id(), "consumer": cref, "key": "k2"}),
        ));
        assert!(t.credential(ka, "k1").is_none());
        assert_eq!(username(&t, ka, "k2").as_deref(), Some("robert"));

        // Deleting the consumer cascades to both credentials and their entries.
        t.delete(EntityKind::Consumers, bob.id(), true).unwrap();
        assert!(t.credential(ka, "k2").is_none());
        assert!(t.credential(EntityKind::JwtSecrets, "iss").is_none());
        assert!(before.credential(ka, "k1").is_some());
    }
}
