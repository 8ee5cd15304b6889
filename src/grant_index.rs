//! Grants indexed by the key Secret they sign with, so that a Secret event costs
//! O(grants that use it) instead of a scan of every grant.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::crd::SasGrant;

/// (namespace, name).
type Key = (String, String);

#[derive(Default)]
struct Inner {
    /// (namespace, key Secret name) -> names of the grants signing with it.
    by_key_secret: HashMap<Key, HashSet<String>>,
    /// (namespace, grant name) -> its key Secret name.
    key_secret_of: HashMap<Key, String>,
    /// Grants listed so far by a relist in progress.
    relisted: Option<HashSet<Key>>,
}

/// Fed by one scope's grant watch; shared with that scope's Secret mapper.
#[derive(Default)]
pub struct GrantIndex {
    inner: Mutex<Inner>,
}

impl GrantIndex {
    /// The names of the grants in `namespace` that sign with key Secret `name`.
    pub fn grants_using(&self, namespace: &str, name: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_key_secret
            .get(&(namespace.to_string(), name.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies one event of the grant watch.
    pub fn observe(&self, event: &watcher::Event<SasGrant>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(grant) => inner.insert(grant),
            watcher::Event::Delete(grant) => {
                inner.remove(&(grant.namespace().unwrap_or_default(), grant.name_any()));
            }
            watcher::Event::Init => inner.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(grant) => {
                inner.insert(grant);
                let key = (grant.namespace().unwrap_or_default(), grant.name_any());
                if let Some(relisted) = &mut inner.relisted {
                    relisted.insert(key);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = inner.relisted.take() {
                    let gone: Vec<Key> = inner
                        .key_secret_of
                        .keys()
                        .filter(|key| !relisted.contains(*key))
                        .cloned()
                        .collect();
                    for key in gone {
                        inner.remove(&key);
                    }
                }
            }
        }
    }
}

impl Inner {
    fn insert(&mut self, grant: &SasGrant) {
        let grant_key = (grant.namespace().unwrap_or_default(), grant.name_any());
        // Only inline account keys are indexed: a grant signing through an issuer learns of
        // its key from the issuer (see the issuer watches).
        let Some(account) = grant.spec.storage_account.as_ref() else {
            self.remove(&grant_key);
            return;
        };
        let key_secret = account.key_secret_ref.name.clone();
        if self.key_secret_of.get(&grant_key) == Some(&key_secret) {
            return;
        }
        self.remove(&grant_key);
        self.by_key_secret
            .entry((grant_key.0.clone(), key_secret.clone()))
            .or_default()
            .insert(grant_key.1.clone());
        self.key_secret_of.insert(grant_key, key_secret);
    }

    fn remove(&mut self, grant_key: &Key) {
        if let Some(old) = self.key_secret_of.remove(grant_key) {
            let index_key = (grant_key.0.clone(), old);
            if let Some(names) = self.by_key_secret.get_mut(&index_key) {
                names.remove(&grant_key.1);
                if names.is_empty() {
                    self.by_key_secret.remove(&index_key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, name: &str, key_secret: &str) -> SasGrant {
        let spec = serde_json::json!({
            "storageAccount": {"name": "acct", "keySecretRef": {"name": key_secret}},
            "resource": {"container": {"name": "data"}},
            "permissions": "r",
            "validity": "8h",
            "renewBefore": "2h",
        });
        let mut grant = SasGrant::new(name, serde_json::from_value(spec).unwrap());
        grant.metadata.namespace = Some(ns.into());
        grant
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[test]
    fn finds_exactly_the_grants_of_a_key_secret_in_its_namespace() {
        let index = GrantIndex::default();
        index.observe(&watcher::Event::Apply(grant("a", "g1", "keys")));
        index.observe(&watcher::Event::Apply(grant("a", "g2", "keys")));
        index.observe(&watcher::Event::Apply(grant("a", "g3", "other")));
        index.observe(&watcher::Event::Apply(grant("b", "g4", "keys")));
        assert_eq!(sorted(index.grants_using("a", "keys")), ["g1", "g2"]);
        assert_eq!(index.grants_using("b", "keys"), ["g4"]);
        assert!(index.grants_using("c", "keys").is_empty());
    }

    #[test]
    fn follows_a_changed_key_secret_and_a_deletion() {
        let index = GrantIndex::default();
        index.observe(&watcher::Event::Apply(grant("a", "g1", "keys")));
        index.observe(&watcher::Event::Apply(grant("a", "g1", "new-keys")));
        assert!(index.grants_using("a", "keys").is_empty());
        assert_eq!(index.grants_using("a", "new-keys"), ["g1"]);
        index.observe(&watcher::Event::Delete(grant("a", "g1", "new-keys")));
        assert!(index.grants_using("a", "new-keys").is_empty());
    }

    #[test]
    fn a_relist_forgets_grants_deleted_while_the_watch_was_down() {
        let index = GrantIndex::default();
        index.observe(&watcher::Event::Apply(grant("a", "gone", "keys")));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(grant("a", "kept", "keys")));
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.grants_using("a", "keys"), ["kept"]);
    }
}
