//! [`CredentialIndex`]: the request path's credential lookup, key → (credential, consumer) in one
//! hash probe.
//!
//! The tables' own indexes are persistent B-trees: cheap to copy on write, but a lookup with
//! 100,000 keys walks three of them (key → id, id → credential, id → consumer), about a dozen
//! cache lines each, ~4 µs when the key is not the one asked for a moment ago. This index answers
//! from a flat hash table (`base`) built now and then, plus a small persistent `overlay` of the
//! keys written since (a removed key is `None` there). A write touches only the overlay, so it
//! stays O(log n) and a clone stays O(1); once the overlay outgrows an eighth of the base, the next
//! write folds it into a new base (O(n), every n/8 writes: amortised O(1)).

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use imbl::HashMap as PHashMap;

use super::entity::Entity;
use crate::model::schema::Validated;

/// One credential and its consumer, as the request path needs them.
#[derive(Clone)]
pub struct CredentialEntry {
    hash: u64,
    credential: Arc<Entity>,
    consumer: Option<Arc<Entity>>,
}

impl CredentialEntry {
    /// The credential (a key-auth credential or a JWT secret).
    pub fn credential(&self) -> &Arc<Entity> {
        &self.credential
    }

    /// Its consumer; `None` only when the consumer row is missing (a mirror mid-change).
    pub fn consumer(&self) -> Option<&Arc<Entity>> {
        self.consumer.as_ref()
    }
}

/// The lookup key of a credential entity: `key` of a key-auth credential or a JWT secret.
pub fn credential_key(e: &Entity) -> Option<&str> {
    match e {
        Validated::KeyauthCredential(c) => Some(&c.key),
        Validated::JwtSecret(s) => Some(&s.key),
        _ => None,
    }
}

/// Overlays smaller than this are never folded (a small configuration never rebuilds).
const MIN_OVERLAY: usize = 1024;

/// Credential key → entry; see the module docs.
#[derive(Clone, Default)]
pub struct CredentialIndex {
    hasher: foldhash::fast::RandomState,
    base: Arc<HashTable<CredentialEntry>>,
    overlay: PHashMap<Arc<str>, Option<CredentialEntry>>,
}

impl CredentialIndex {
    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&CredentialEntry> {
        if !self.overlay.is_empty()
            && let Some(entry) = self.overlay.get(key)
        {
            return entry.as_ref();
        }
        let hash = self.hasher.hash_one(key);
        self.base
            .find(hash, |e| credential_key(&e.credential) == Some(key))
    }

    /// Index `credential` (replacing whatever had its key) with its `consumer`.
    pub fn insert(&mut self, credential: Arc<Entity>, consumer: Option<Arc<Entity>>) {
        let Some(key) = credential_key(&credential) else {
            return;
        };
        let key: Arc<str> = Arc::from(key);
        let entry = CredentialEntry {
            hash: self.hasher.hash_one(&*key),
            credential,
            consumer,
        };
        self.overlay.insert(key, Some(entry));
        self.maybe_fold();
    }

    /// Forget `key` when it belongs to `credential` (by id: a key taken over by another row
    /// stays).
    pub fn remove(&mut self, key: &str, credential: &Entity) {
        if self
            .get(key)
            .is_some_and(|e| e.credential.id() == credential.id())
        {
            self.overlay.insert(Arc::from(key), None);
            self.maybe_fold();
        }
    }

    fn maybe_fold(&mut self) {
        if self.overlay.len() > MIN_OVERLAY.max(self.base.len() / 8) {
            self.fold();
        }
    }

    /// Merge the overlay into a new base.
    pub fn fold(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        let mut base = Arc::unwrap_or_clone(std::mem::take(&mut self.base));
        base.reserve(self.overlay.len(), |e| e.hash);
        for (key, entry) in std::mem::take(&mut self.overlay) {
            let hash = self.hasher.hash_one(&*key);
            let same = |e: &CredentialEntry| credential_key(&e.credential) == Some(&*key);
            match (base.find_entry(hash, same), entry) {
                (Ok(mut slot), Some(entry)) => *slot.get_mut() = entry,
                (Ok(slot), None) => {
                    slot.remove();
                }
                (Err(_), Some(entry)) => {
                    base.insert_unique(hash, entry, |e| e.hash);
                }
                (Err(_), None) => {}
            }
        }
        self.base = Arc::new(base);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::model::schema::{Ctx, EntityKind, NoPlugins, validate};

    fn credential(key: &str) -> Arc<Entity> {
        let v = json!({"id": Uuid::new_v4(), "consumer": {"id": Uuid::new_v4()}, "key": key});
        let ctx = Ctx::new(1_700_000_000_000, &NoPlugins);
        Arc::new(validate(EntityKind::KeyauthCredentials, &v, &ctx).unwrap())
    }

    /// Number of live keys.
    fn live(index: &CredentialIndex) -> usize {
        let mut n = index.base.len();
        for (key, entry) in &index.overlay {
            let hash = index.hasher.hash_one(&**key);
            let in_base = index
                .base
                .find(hash, |e| credential_key(&e.credential) == Some(key))
                .is_some();
            n = n + usize::from(entry.is_some()) - usize::from(in_base);
        }
        n
    }

    fn id_of(index: &CredentialIndex, key: &str) -> Option<Uuid> {
        index.get(key).map(|e| e.credential().id())
    }

    #[test]
    fn overlay_and_base_agree_across_folds() {
        let mut index = CredentialIndex::default();
        let mut live_keys = std::collections::HashMap::new();
        // Enough writes for several folds, with replacements and removals on the way.
        for i in 0..5000 {
            let c = credential(&format!("key-{i}"));
            live_keys.insert(format!("key-{i}"), c.id());
            index.insert(c, None);
            if i % 3 == 0 {
                let key = format!("key-{}", i / 2);
                let c = credential(&key);
                live_keys.insert(key, c.id());
                index.insert(c, None);
            }
            if i % 7 == 0 {
                let key = format!("key-{}", i / 3);
                let entry = index.get(&key).cloned().unwrap();
                index.remove(&key, entry.credential());
                live_keys.remove(&key);
            }
        }
        assert!(index.base.len() > MIN_OVERLAY, "folded at least once");
        let before_fold = index.clone();
        index.fold();
        assert!(index.overlay.is_empty());
        for i in 0..5000 {
            let key = format!("key-{i}");
            assert_eq!(id_of(&index, &key), live_keys.get(&key).copied(), "{key}");
            assert_eq!(
                id_of(&before_fold, &key),
                live_keys.get(&key).copied(),
                "{key}"
            );
        }
        assert_eq!(live(&index), live_keys.len());
        assert_eq!(live(&before_fold), live_keys.len());
        assert!(index.get("key-5000").is_none());
    }

    #[test]
    fn removing_a_taken_over_key_keeps_the_new_owner() {
        let mut index = CredentialIndex::default();
        let old = credential("shared");
        let new = credential("shared");
        index.insert(old.clone(), None);
        index.insert(new.clone(), None);
        index.remove("shared", &old);
        assert_eq!(id_of(&index, "shared"), Some(new.id()));
        index.remove("shared", &new);
        assert!(index.get("shared").is_none());
        assert_eq!(live(&index), 0);
    }

    #[test]
    fn clones_do_not_see_later_writes() {
        let mut index = CredentialIndex::default();
        let a = credential("a");
        index.insert(a.clone(), None);
        index.fold();
        let snapshot = index.clone();
        index.remove("a", &a);
        index.insert(credential("b"), None);
        index.fold();
        assert_eq!(id_of(&snapshot, "a"), Some(a.id()));
        assert!(snapshot.get("b").is_none());
        assert!(index.get("a").is_none());
    }
}
