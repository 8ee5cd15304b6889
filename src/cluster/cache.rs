//! The read caches behind [`super::KubeCluster`], fed by the watches the controller runs.
//!
//! - **Owned Secrets** (label `app.kubernetes.io/managed-by=sas-operator`): full objects from a
//!   labelled watch; they are ours, so holding their data is no wider than writing it. Each
//!   write of ours goes into the cache at once (its response), and its `resourceVersion` is
//!   remembered so that the watch event it causes maps back to no reconcile.
//! - **Key Secrets**: full objects fetched by GET once per (namespace, name, resourceVersion);
//!   an entry is dropped when the metadata-only watch of all Secrets shows another version or a
//!   deletion. Only the key Secrets that grants read are held.
//! - **Dirty** target Secrets: a change the metadata watch saw that is not ours (a foreign edit
//!   or deletion), or a write that conflicted. The next read of such a Secret is a GET, so a
//!   reconcile never decides on a cache that has not caught up with the event that caused it.
//!
//! A stale read is harmless: every write carries the `resourceVersion` read (or is a create),
//! so it fails with a 409 that requeues the grant after marking the Secret dirty.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use tokio::sync::watch;

use crate::reconcile::secret::{LABEL_MANAGED_BY, MANAGER_NAME};

/// (namespace, name).
pub type Key = (String, String);

/// The annotation `kubectl apply` leaves: a full copy of the object, never needed here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The longest a metadata event of a Secret waits for our in-flight write to it to return.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Drops what a cached object never needs: `managedFields` (often half of its bytes) and the
/// last-applied annotation.
pub fn strip_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

pub fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Whether a Secret carries the label the owned-Secret watch selects.
pub fn is_labelled_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_MANAGED_BY))
        .is_some_and(|value| value == MANAGER_NAME)
}

/// The label selector of the owned-Secret watch.
pub fn owned_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER_NAME}")
}

#[derive(Default)]
struct KeyEntry {
    secret: Option<Arc<Secret>>,
    /// Bumped by every version the metadata watch reports that differs from the cached one;
    /// a GET that started before a bump may have read the old version and is not cached.
    epoch: u64,
    fetch: Arc<tokio::sync::Mutex<()>>,
}

/// Relist bookkeeping of one owned-Secret watch.
#[derive(Default)]
pub struct Relist {
    seen: Option<HashSet<Key>>,
}

#[derive(Default)]
pub struct SecretCaches {
    owned: Mutex<HashMap<Key, Arc<Secret>>>,
    /// Scopes (a namespace, or `None` for all) whose owned-Secret watch has listed once.
    synced: Mutex<HashSet<Option<String>>>,
    /// Versions of target Secrets that need no reconcile: written by us, or listed when the
    /// operator started (every grant is reconciled then anyway).
    known_versions: Mutex<HashMap<Key, String>>,
    dirty: Mutex<HashSet<Key>>,
    keys: Mutex<HashMap<Key, KeyEntry>>,
    in_flight: Mutex<HashMap<Key, watch::Receiver<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SecretCaches {
    // ---- owned Secrets -------------------------------------------------------------------

    /// Whether the owned-Secret cache covering `namespace` has its initial list.
    pub fn owned_synced(&self, namespace: &str) -> bool {
        let synced = lock(&self.synced);
        synced.contains(&None) || synced.contains(&Some(namespace.to_string()))
    }

    /// The cached owned Secret, if any.
    pub fn owned(&self, key: &Key) -> Option<Arc<Secret>> {
        lock(&self.owned).get(key).cloned()
    }

    /// Applies one event of the owned-Secret watch of `scope`.
    pub fn observe_owned(
        &self,
        scope: &Option<String>,
        event: kube::runtime::watcher::Event<Secret>,
        relist: &mut Relist,
    ) {
        use kube::runtime::watcher::Event;
        match event {
            Event::Apply(secret) => {
                self.put_owned(secret);
            }
            Event::Delete(secret) => {
                let key = key_of(&secret.metadata);
                lock(&self.owned).remove(&key);
                lock(&self.known_versions).remove(&key);
            }
            Event::Init => relist.seen = Some(HashSet::new()),
            Event::InitApply(secret) => {
                let key = key_of(&secret.metadata);
                if !lock(&self.synced).contains(scope)
                    && let Some(version) = &secret.metadata.resource_version
                {
                    lock(&self.known_versions).insert(key.clone(), version.clone());
                }
                self.put_owned(secret);
                if let Some(seen) = &mut relist.seen {
                    seen.insert(key);
                }
            }
            Event::InitDone => {
                if let Some(seen) = relist.seen.take() {
                    let in_scope = |key: &Key| scope.as_ref().is_none_or(|ns| *ns == key.0);
                    lock(&self.owned).retain(|key, _| !in_scope(key) || seen.contains(key));
                }
                lock(&self.synced).insert(scope.clone());
            }
        }
    }

    fn put_owned(&self, mut secret: Secret) {
        strip_metadata(&mut secret.metadata);
        let key = key_of(&secret.metadata);
        lock(&self.owned).insert(key, Arc::new(secret));
    }

    /// Records a Secret this replica just wrote (the API server's response).
    pub fn wrote(&self, secret: Secret) {
        let key = key_of(&secret.metadata);
        if let Some(version) = &secret.metadata.resource_version {
            lock(&self.known_versions).insert(key.clone(), version.clone());
        }
        lock(&self.dirty).remove(&key);
        self.put_owned(secret);
    }

    /// Records what a GET of a target Secret found.
    pub fn read(&self, key: &Key, found: Option<&Secret>) {
        match found {
            Some(secret) if is_labelled_ours(secret) => self.put_owned(secret.clone()),
            Some(_) => {
                // Not labelled: the owned watch would never update or remove it, so it is not
                // cached, and the next read is a GET again.
                lock(&self.owned).remove(key);
                self.mark_dirty(key.clone());
            }
            None => {
                lock(&self.owned).remove(key);
            }
        }
    }

    /// Whether the watch event of a target Secret at `version` is one that needs no reconcile.
    pub fn is_known_version(&self, key: &Key, version: Option<&str>) -> bool {
        version.is_some() && lock(&self.known_versions).get(key).map(String::as_str) == version
    }

    pub fn mark_dirty(&self, key: Key) {
        lock(&self.dirty).insert(key);
    }

    /// Whether the next read of `key` must be a GET (and clears the mark).
    pub fn take_dirty(&self, key: &Key) -> bool {
        lock(&self.dirty).remove(key)
    }

    // ---- writes in flight ----------------------------------------------------------------

    /// Marks a write to `key` in flight until the returned guard drops.
    pub fn writing(&self, key: &Key) -> InFlight {
        let (done, wait) = watch::channel(());
        lock(&self.in_flight).insert(key.clone(), wait);
        InFlight { _done: done }
    }

    /// Forgets a finished write (its guard dropped) unless another one started since.
    pub fn finished_writing(&self, key: &Key) {
        let mut in_flight = lock(&self.in_flight);
        if in_flight
            .get(key)
            .is_some_and(|wait| wait.has_changed().is_err())
        {
            in_flight.remove(key);
        }
    }

    /// Waits until no write of ours to `key` is in flight (bounded), so that its watch event
    /// is recognised as ours rather than raced by the response.
    pub async fn settled(&self, key: &Key) {
        let wait = lock(&self.in_flight).get(key).cloned();
        if let Some(mut wait) = wait {
            // Resolves (Err) when the writer drops its sender.
            let _ = tokio::time::timeout(IN_FLIGHT_WAIT, wait.changed()).await;
            self.finished_writing(key);
        }
    }

    // ---- key Secrets ---------------------------------------------------------------------

    /// The cached key Secret and the lock that serialises fetching it.
    pub fn key(&self, key: &Key) -> (Option<Arc<Secret>>, Arc<tokio::sync::Mutex<()>>, u64) {
        let mut keys = lock(&self.keys);
        let entry = keys.entry(key.clone()).or_default();
        (entry.secret.clone(), entry.fetch.clone(), entry.epoch)
    }

    /// Caches a fetched key Secret unless a newer version was reported since `epoch`.
    pub fn fetched_key(&self, key: &Key, epoch: u64, mut secret: Secret) {
        strip_metadata(&mut secret.metadata);
        if let Some(entry) = lock(&self.keys).get_mut(key)
            && entry.epoch == epoch
        {
            entry.secret = Some(Arc::new(secret));
        }
    }

    /// Whether the key Secret cached for `key` is at `version` (nothing new to sign with).
    pub fn key_is_current(&self, key: &Key, version: Option<&str>) -> bool {
        version.is_some()
            && lock(&self.keys).get(key).is_some_and(|entry| {
                entry
                    .secret
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.as_deref())
                    == version
            })
    }

    /// Applies a version of any Secret seen by the metadata watch: drops a cached key Secret
    /// of another version. `None` is a deletion.
    pub fn observe_version(&self, key: &Key, version: Option<&str>) {
        let mut keys = lock(&self.keys);
        if let Some(entry) = keys.get_mut(key) {
            let cached = entry
                .secret
                .as_ref()
                .and_then(|s| s.metadata.resource_version.as_deref());
            if version.is_none() || cached != version {
                entry.secret = None;
                entry.epoch += 1;
            }
        }
        if version.is_none() {
            lock(&self.known_versions).remove(key);
        }
    }
}

/// A write in flight; dropping it lets waiting watch events through.
pub struct InFlight {
    _done: watch::Sender<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, version: &str, ours: bool) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.namespace = Some("ns".into());
        secret.metadata.name = Some(name.into());
        secret.metadata.resource_version = Some(version.into());
        if ours {
            secret.metadata.labels =
                Some([(LABEL_MANAGED_BY.to_string(), MANAGER_NAME.to_string())].into());
        }
        secret
    }

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn a_key_secret_is_dropped_when_another_version_is_seen() {
        let caches = SecretCaches::default();
        let (cached, _, epoch) = caches.key(&key("keys"));
        assert!(cached.is_none());
        caches.fetched_key(&key("keys"), epoch, secret("keys", "1", false));
        assert!(caches.key(&key("keys")).0.is_some());
        caches.observe_version(&key("keys"), Some("1"));
        assert!(caches.key(&key("keys")).0.is_some(), "same version: kept");
        caches.observe_version(&key("keys"), Some("2"));
        assert!(caches.key(&key("keys")).0.is_none(), "new version: dropped");
    }

    #[test]
    fn a_fetch_raced_by_a_new_version_is_not_cached() {
        let caches = SecretCaches::default();
        let (_, _, epoch) = caches.key(&key("keys"));
        caches.observe_version(&key("keys"), Some("2"));
        caches.fetched_key(&key("keys"), epoch, secret("keys", "1", false));
        assert!(caches.key(&key("keys")).0.is_none());
    }

    #[test]
    fn our_write_is_a_known_version_and_a_foreign_one_is_not() {
        let caches = SecretCaches::default();
        caches.wrote(secret("app", "7", true));
        assert!(caches.is_known_version(&key("app"), Some("7")));
        assert!(!caches.is_known_version(&key("app"), Some("8")));
        assert_eq!(
            caches.owned(&key("app")).unwrap().metadata.resource_version,
            Some("7".into())
        );
    }

    #[test]
    fn an_unlabelled_secret_read_by_get_is_not_cached_and_read_again() {
        let caches = SecretCaches::default();
        caches.read(&key("app"), Some(&secret("app", "3", false)));
        assert!(caches.owned(&key("app")).is_none());
        assert!(caches.take_dirty(&key("app")));
    }

    #[test]
    fn a_relist_drops_owned_secrets_that_are_gone_and_only_in_its_scope() {
        use kube::runtime::watcher::Event;
        let caches = SecretCaches::default();
        let scope = Some("ns".to_string());
        let mut relist = Relist::default();
        caches.observe_owned(&scope, Event::Apply(secret("gone", "1", true)), &mut relist);
        let mut other = secret("elsewhere", "1", true);
        other.metadata.namespace = Some("other".into());
        caches.observe_owned(&scope, Event::Apply(other), &mut relist);
        assert!(!caches.owned_synced("ns"));
        caches.observe_owned(&scope, Event::Init, &mut relist);
        caches.observe_owned(
            &scope,
            Event::InitApply(secret("kept", "2", true)),
            &mut relist,
        );
        caches.observe_owned(&scope, Event::InitDone, &mut relist);
        assert!(caches.owned_synced("ns"));
        assert!(caches.owned(&key("gone")).is_none());
        assert!(caches.owned(&key("kept")).is_some());
        assert!(
            caches
                .owned(&("other".into(), "elsewhere".into()))
                .is_some()
        );
        assert!(
            caches.is_known_version(&key("kept"), Some("2")),
            "listed at start"
        );
    }

    #[test]
    fn managed_fields_and_last_applied_are_stripped() {
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![Default::default()]),
            annotations: Some([(LAST_APPLIED.to_string(), "{}".to_string())].into()),
            ..Default::default()
        };
        strip_metadata(&mut meta);
        assert!(meta.managed_fields.is_none());
        assert!(meta.annotations.is_none());
    }
}
