//! The read caches behind [`super::KubeCluster`], fed by the watches the controller runs.
//!
//! - **Owned Secrets** (label `app.kubernetes.io/managed-by=sas-operator`): from a labelled
//!   watch, slim (what the reconcile reads). Anyone may put the label on a Secret: one that
//!   names no SasGrant as its controller is kept as its version only, its data never read.
//!   Of ours, only values of the size we write are kept. Each
//!   write of ours goes into the cache at once (its response), and its `resourceVersion` is
//!   remembered so that the watch event it causes maps back to no reconcile.
//! - **Key Secrets** (label `sas-operator.io/signing-key=true`, the opt-in every key Secret
//!   needs): from a labelled watch per scope, so reading a key is a lookup and a restart reads
//!   none. Each is kept as a [`KeySecret`]: its version and its account keys, judged as the
//!   event arrives (an entry that is not an 88-character key is kept only as the reason it is
//!   refused), never its other data: whatever a tenant puts next to a key costs no memory. That watch is also what reconciles the grants of a key that appeared,
//!   changed or went away (lost its label or was deleted), after it updated the cache: a
//!   reconcile it causes reads the version that caused it, never an older one.
//! - **Unlabelled key Secrets**: a grant naming a Secret without the opt-in must still learn
//!   whether it exists (`KeySecretNotLabelled`) or not (`KeySecretNotFound`). That is one GET
//!   per (namespace, name, resourceVersion); only its version is kept (no data of a Secret
//!   that did not opt in), dropped when the metadata-only watch of all Secrets shows another
//!   version or a deletion (an epoch makes a GET raced by a newer version cache nothing). A
//!   missing Secret is a GET each time, as is a `ClusterSasIssuer`'s key in a namespace no
//!   watch covers (nothing would tell a cached copy is stale).
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

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::credentials::{KeySecret, LABEL_SIGNING_KEY, is_opted_in};
use crate::reconcile::secret::{
    ANNOTATION_INPUTS_HASH, ANNOTATION_MAC, ANNOTATION_ROTATED_AT, KEY_CONNECTION_STRING,
    KEY_EXPIRES_AT, KEY_SAS_TOKEN, KEY_SAS_URL, LABEL_MANAGED_BY, MANAGER_NAME,
};

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

/// The label selector of the key-Secret watch: exactly the Secrets opted in as signing keys.
pub fn signing_key_selector() -> String {
    format!("{LABEL_SIGNING_KEY}=true")
}

/// Whether Secret metadata carries the signing-key opt-in (what the key watch selects).
pub fn is_labelled_signing_key(meta: &ObjectMeta) -> bool {
    is_opted_in(meta)
}

/// The annotations of an owned Secret the reconcile reads (`reconcile::secret`).
const OWNED_ANNOTATIONS: [&str; 3] = [
    ANNOTATION_INPUTS_HASH,
    ANNOTATION_ROTATED_AT,
    ANNOTATION_MAC,
];
/// The data entries of an owned Secret the reconcile reads; the token first.
const OWNED_DATA: [&str; 4] = [
    KEY_SAS_TOKEN,
    KEY_SAS_URL,
    KEY_CONNECTION_STRING,
    KEY_EXPIRES_AT,
];

/// An owned Secret as the reconcile reads it (`reconcile::secret`: whose it is, the token it
/// holds and its MAC, the version a write must carry), and nothing else: at 10,000 grants the
/// full objects were the largest part of the operator's memory. The token is held once; the URL
/// and connection string, which repeat it, keep where it was.
struct OwnedSecret {
    resource_version: Option<Box<str>>,
    /// A version that needs no reconcile: written by us, or listed when the operator started
    /// (every grant is reconciled then anyway). Kept across the versions cached after it.
    known_version: Option<Box<str>>,
    /// The uid of the controller ownerReference (the API server allows one).
    controller_uid: Option<Box<str>>,
    annotations: [Option<Box<str>>; 3],
    data: [Option<Compact>; 4],
}

/// The longest data value of an owned Secret that is kept. What we write is a token, a URL
/// and a connection string of a few hundred bytes (a blob name is at most 1,024 characters);
/// a longer value is someone else's, and a Secret without it reads as incomplete, so the
/// reconcile rewrites it.
const MAX_OWNED_VALUE: usize = 16 * 1024;

/// Whether a Secret names a SasGrant as its controller: only then can it be one we wrote, and
/// only then is its data read. The label alone proves nothing: anyone may set it.
pub fn is_controlled_by_a_grant(meta: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == "SasGrant"
            && owner.api_version.starts_with("sas-operator.io/")
    })
}

/// A data value with the token cut out, and where it was.
struct Compact {
    rest: Box<[u8]>,
    token_at: Option<u32>,
}

impl Compact {
    /// Cuts `token` out of `value` where we write it: at the end (the URL's query, the
    /// connection string's last field). One comparison, linear in the token: a value shaped
    /// otherwise is kept whole rather than searched.
    fn new(value: &[u8], token: &[u8]) -> Self {
        let found = (!token.is_empty() && value.ends_with(token))
            .then(|| value.len() - token.len())
            .and_then(|at| u32::try_from(at).ok().map(|short| (at, short)));
        match found {
            Some((at, short)) => Compact {
                rest: value[..at].into(),
                token_at: Some(short),
            },
            None => Compact {
                rest: value.into(),
                token_at: None,
            },
        }
    }

    fn expand(&self, token: &[u8]) -> Vec<u8> {
        match self.token_at {
            Some(at) => {
                let (before, after) = self.rest.split_at(at as usize);
                [before, token, after].concat()
            }
            None => self.rest.to_vec(),
        }
    }
}

impl OwnedSecret {
    fn of(secret: &Secret) -> Self {
        let resource_version = secret.metadata.resource_version.as_deref().map(Into::into);
        if !is_controlled_by_a_grant(&secret.metadata) {
            // Labelled by someone else: not ours, whatever it holds. Kept as present (a grant
            // naming it gets SecretNotOwned without a GET), nothing of it read.
            return OwnedSecret {
                resource_version,
                known_version: None,
                controller_uid: None,
                annotations: Default::default(),
                data: Default::default(),
            };
        }
        let annotation = |name: &str| {
            let annotations = secret.metadata.annotations.as_ref()?;
            annotations.get(name).map(|value| value.as_str().into())
        };
        let data = |name: &str| {
            let value = &secret.data.as_ref()?.get(name)?.0;
            (value.len() <= MAX_OWNED_VALUE).then_some(&value[..])
        };
        let token = data(KEY_SAS_TOKEN).unwrap_or_default();
        OwnedSecret {
            resource_version,
            known_version: None,
            controller_uid: secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.controller == Some(true))
                .map(|owner| owner.uid.as_str().into()),
            annotations: OWNED_ANNOTATIONS.map(annotation),
            data: OWNED_DATA.map(|name| {
                data(name).map(|value| match name {
                    KEY_SAS_TOKEN => Compact::new(value, &[]),
                    _ => Compact::new(value, token),
                })
            }),
        }
    }

    /// The Secret the reconcile sees: what it reads, as it was written.
    fn to_secret(&self, (namespace, name): &Key) -> Secret {
        let token = self.data[0]
            .as_ref()
            .map(|token| token.expand(&[]))
            .unwrap_or_default();
        let annotations: BTreeMap<String, String> = OWNED_ANNOTATIONS
            .iter()
            .zip(&self.annotations)
            .filter_map(|(name, value)| Some((name.to_string(), value.as_deref()?.to_string())))
            .collect();
        let data: BTreeMap<String, ByteString> = OWNED_DATA
            .iter()
            .zip(&self.data)
            .filter_map(|(name, value)| {
                Some((name.to_string(), ByteString(value.as_ref()?.expand(&token))))
            })
            .collect();
        Secret {
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                resource_version: self.resource_version.as_deref().map(Into::into),
                labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGER_NAME.to_string())].into()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                owner_references: self.controller_uid.as_deref().map(|uid| {
                    vec![OwnerReference {
                        controller: Some(true),
                        uid: uid.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }
}

/// A Secret without the signing-key label, as last read: its version only.
#[derive(Default)]
struct UnlabelledEntry {
    secret: Option<Arc<KeySecret>>,
    /// Bumped by every version the metadata watch reports that differs from the cached one;
    /// a GET that started before a bump may have read the old version and is not cached.
    epoch: u64,
    fetch: Arc<tokio::sync::Mutex<()>>,
}

/// Relist bookkeeping of one labelled watch (owned or key Secrets).
#[derive(Default)]
pub struct Relist {
    seen: Option<HashSet<Key>>,
}

#[derive(Default)]
pub struct SecretCaches {
    /// Boxed: the table's slots stay small (it is sized for growth).
    owned: Mutex<HashMap<Key, Box<OwnedSecret>>>,
    /// Scopes (a namespace, or `None` for all) whose owned-Secret watch has listed once.
    synced: Mutex<HashSet<Option<String>>>,
    dirty: Mutex<HashSet<Key>>,
    /// Key Secrets, from the watch of the signing-key label: their account keys only.
    keys: Mutex<HashMap<Key, Arc<KeySecret>>>,
    /// Scopes whose key-Secret watch has listed once.
    keys_synced: Mutex<HashSet<Option<String>>>,
    unlabelled: Mutex<HashMap<Key, UnlabelledEntry>>,
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

    /// The cached owned Secret, if any, as the reconcile reads it (see [`OwnedSecret`]).
    pub fn owned(&self, key: &Key) -> Option<Secret> {
        lock(&self.owned)
            .get(key)
            .map(|secret| secret.to_secret(key))
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
                self.put_owned(&secret, false);
            }
            Event::Delete(secret) => {
                lock(&self.owned).remove(&key_of(&secret.metadata));
            }
            Event::Init => relist.seen = Some(HashSet::new()),
            Event::InitApply(secret) => {
                let key = key_of(&secret.metadata);
                let listed_at_start = !lock(&self.synced).contains(scope);
                self.put_owned(&secret, listed_at_start);
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

    /// Caches an owned Secret; `known` makes its version one that needs no reconcile.
    fn put_owned(&self, secret: &Secret, known: bool) {
        let key = key_of(&secret.metadata);
        let mut slim = Box::new(OwnedSecret::of(secret));
        let mut owned = lock(&self.owned);
        slim.known_version = if known {
            slim.resource_version.clone()
        } else {
            owned
                .get_mut(&key)
                .and_then(|previous| previous.known_version.take())
        };
        owned.insert(key, slim);
    }

    /// Records a Secret this replica just wrote (the API server's response).
    pub fn wrote(&self, secret: Secret) {
        let key = key_of(&secret.metadata);
        lock(&self.dirty).remove(&key);
        self.put_owned(&secret, true);
    }

    /// Records what a GET of a target Secret found.
    pub fn read(&self, key: &Key, found: Option<&Secret>) {
        match found {
            Some(secret) if is_labelled_ours(secret) => self.put_owned(secret, false),
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
        version.is_some()
            && lock(&self.owned)
                .get(key)
                .is_some_and(|owned| owned.known_version.as_deref() == version)
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

    /// Whether the key-Secret cache covering `namespace` has its initial list.
    pub fn keys_synced(&self, namespace: &str) -> bool {
        let synced = lock(&self.keys_synced);
        synced.contains(&None) || synced.contains(&Some(namespace.to_string()))
    }

    /// The cached key Secret (labelled as one), if any.
    pub fn signing_key(&self, key: &Key) -> Option<Arc<KeySecret>> {
        lock(&self.keys).get(key).cloned()
    }

    /// Applies one event of the key-Secret watch of `scope`; returns the key Secrets whose
    /// grants must re-sign (a new version, or gone), once the scope has listed: before that no
    /// grant has been reconciled, and each is once the caches are ready.
    pub fn observe_key(
        &self,
        scope: &Option<String>,
        event: kube::runtime::watcher::Event<Secret>,
        relist: &mut Relist,
    ) -> Vec<Key> {
        use kube::runtime::watcher::Event;
        let listed = lock(&self.keys_synced).contains(scope);
        let mut changed = Vec::new();
        match event {
            Event::Apply(secret) | Event::InitApply(secret) => {
                let key = key_of(&secret.metadata);
                if let Some(seen) = &mut relist.seen {
                    seen.insert(key.clone());
                }
                if self.put_key(secret) && listed {
                    changed.push(key);
                }
            }
            Event::Delete(secret) => {
                let key = key_of(&secret.metadata);
                if lock(&self.keys).remove(&key).is_some() && listed {
                    changed.push(key);
                }
            }
            Event::Init => relist.seen = Some(HashSet::new()),
            Event::InitDone => {
                if let Some(seen) = relist.seen.take() {
                    let in_scope = |key: &Key| scope.as_ref().is_none_or(|ns| *ns == key.0);
                    lock(&self.keys).retain(|key, _| {
                        let kept = !in_scope(key) || seen.contains(key);
                        if !kept && listed {
                            changed.push(key.clone());
                        }
                        kept
                    });
                }
                lock(&self.keys_synced).insert(scope.clone());
            }
        }
        changed
    }

    /// Caches a key Secret from the watch, as its account keys only (the event is dropped
    /// after); whether its version is new to the cache.
    fn put_key(&self, secret: Secret) -> bool {
        let key = key_of(&secret.metadata);
        let slim = KeySecret::of(&secret);
        drop(secret);
        // Labelled now: whatever was known of it unlabelled is stale.
        self.forget_unlabelled(&key);
        let version = slim.resource_version.clone();
        let previous = lock(&self.keys).insert(key, Arc::new(slim));
        previous.is_none_or(|previous| previous.resource_version != version)
    }

    /// The metadata of a Secret last read without the signing-key label, the lock that
    /// serialises reading it, and the epoch to hand to [`SecretCaches::read_unlabelled`].
    pub fn unlabelled(
        &self,
        key: &Key,
    ) -> (Option<Arc<KeySecret>>, Arc<tokio::sync::Mutex<()>>, u64) {
        let mut unlabelled = lock(&self.unlabelled);
        let entry = unlabelled.entry(key.clone()).or_default();
        (entry.secret.clone(), entry.fetch.clone(), entry.epoch)
    }

    /// Records what a GET of a key Secret outside the key cache found: one without the label
    /// is remembered by its version (never its data), unless a newer version was reported
    /// since `epoch`. A labelled one is left to the key watch, which is about to deliver it.
    pub fn read_unlabelled(&self, key: &Key, epoch: u64, found: Option<&Secret>) {
        let mut unlabelled = lock(&self.unlabelled);
        match found {
            Some(secret) if !is_labelled_signing_key(&secret.metadata) => {
                if let Some(entry) = unlabelled.get_mut(key)
                    && entry.epoch == epoch
                {
                    entry.secret = Some(Arc::new(KeySecret::of(secret)));
                }
            }
            // Missing, or labelled: nothing to hold (a missing one is read again next time).
            _ => {
                if unlabelled
                    .get(key)
                    .is_some_and(|entry| entry.secret.is_none())
                {
                    unlabelled.remove(key);
                }
            }
        }
    }

    fn forget_unlabelled(&self, key: &Key) {
        if let Some(entry) = lock(&self.unlabelled).get_mut(key) {
            entry.secret = None;
            entry.epoch += 1;
        }
    }

    /// Whether a metadata event of `key` at `version` is news to the grants signing with it:
    /// not a Secret the key watch holds (that watch reconciles them), and not the unlabelled
    /// version already read (a relist repeats it).
    pub fn key_event_is_news(&self, meta: &ObjectMeta) -> bool {
        let key = key_of(meta);
        if is_labelled_signing_key(meta) || lock(&self.keys).contains_key(&key) {
            return false;
        }
        let version = meta.resource_version.as_deref();
        !(version.is_some()
            && lock(&self.unlabelled).get(&key).is_some_and(|entry| {
                entry
                    .secret
                    .as_ref()
                    .and_then(|s| s.resource_version.as_deref())
                    == version
            }))
    }

    /// Applies a version of any Secret seen by the metadata watch: drops what is known of an
    /// unlabelled key Secret at another version. `None` is a deletion.
    pub fn observe_version(&self, key: &Key, version: Option<&str>) {
        let mut unlabelled = lock(&self.unlabelled);
        if let Some(entry) = unlabelled.get_mut(key) {
            let cached = entry
                .secret
                .as_ref()
                .and_then(|s| s.resource_version.as_deref());
            if version.is_none() || cached != version {
                entry.secret = None;
                entry.epoch += 1;
            }
        }
        drop(unlabelled);
        if version.is_none()
            && let Some(owned) = lock(&self.owned).get_mut(key)
        {
            owned.known_version = None;
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

    fn key_secret(name: &str, version: &str) -> Secret {
        let mut secret = secret(name, version, false);
        secret.metadata.labels = Some([(LABEL_SIGNING_KEY.to_string(), "true".to_string())].into());
        secret
    }

    /// A key-Secret watch of scope `ns` that has listed `listed`.
    fn listed_keys(listed: &[Secret]) -> (SecretCaches, Relist) {
        use kube::runtime::watcher::Event;
        let caches = SecretCaches::default();
        let mut relist = Relist::default();
        let scope = Some("ns".to_string());
        assert!(!caches.keys_synced("ns"));
        caches.observe_key(&scope, Event::Init, &mut relist);
        for secret in listed {
            let changed = caches.observe_key(&scope, Event::InitApply(secret.clone()), &mut relist);
            assert!(changed.is_empty(), "the first list re-signs nothing");
        }
        assert!(
            caches
                .observe_key(&scope, Event::InitDone, &mut relist)
                .is_empty()
        );
        assert!(caches.keys_synced("ns"));
        (caches, relist)
    }

    /// The `resourceVersion` of the cached key Secret `ns/name`.
    fn cached_key_version(caches: &SecretCaches, name: &str) -> Option<String> {
        caches.signing_key(&key(name))?.resource_version.clone()
    }

    #[test]
    fn a_key_secret_is_read_from_the_watch_and_a_new_version_re_signs_its_grants() {
        use kube::runtime::watcher::Event;
        let scope = Some("ns".to_string());
        let (caches, mut relist) = listed_keys(&[key_secret("keys", "1")]);
        assert_eq!(cached_key_version(&caches, "keys").as_deref(), Some("1"));
        let same = Event::Apply(key_secret("keys", "1"));
        assert!(caches.observe_key(&scope, same, &mut relist).is_empty());
        let newer = Event::Apply(key_secret("keys", "2"));
        assert_eq!(
            caches.observe_key(&scope, newer, &mut relist),
            vec![key("keys")]
        );
        assert_eq!(
            cached_key_version(&caches, "keys").as_deref(),
            Some("2"),
            "the grants it re-signs read the new version"
        );
    }

    #[test]
    fn a_key_secret_that_loses_its_label_or_a_relist_misses_re_signs_its_grants() {
        use kube::runtime::watcher::Event;
        let scope = Some("ns".to_string());
        let (caches, mut relist) = listed_keys(&[key_secret("a", "1"), key_secret("b", "1")]);
        let unlabelled = Event::Delete(key_secret("a", "2"));
        assert_eq!(
            caches.observe_key(&scope, unlabelled, &mut relist),
            vec![key("a")]
        );
        assert!(caches.signing_key(&key("a")).is_none());

        caches.observe_key(&scope, Event::Init, &mut relist);
        let kept = Event::InitApply(key_secret("c", "1"));
        assert_eq!(
            caches.observe_key(&scope, kept, &mut relist),
            vec![key("c")]
        );
        assert_eq!(
            caches.observe_key(&scope, Event::InitDone, &mut relist),
            vec![key("b")]
        );
        assert!(caches.signing_key(&key("b")).is_none());
    }

    #[test]
    fn an_unlabelled_secret_is_remembered_by_its_metadata_until_another_version_is_seen() {
        let caches = SecretCaches::default();
        let mut password = secret("db", "1", false);
        password.data = Some(
            [(
                "password".to_string(),
                k8s_openapi::ByteString(b"hunter22".to_vec()),
            )]
            .into(),
        );
        let (cached, _, epoch) = caches.unlabelled(&key("db"));
        assert!(cached.is_none());
        caches.read_unlabelled(&key("db"), epoch, Some(&password));
        let cached = caches.unlabelled(&key("db")).0.expect("cached");
        assert_eq!(
            cached.kept_entries(),
            0,
            "no data of a Secret that did not opt in"
        );
        assert_eq!(cached.resource_version, Some("1".into()));
        assert!(
            !caches.key_event_is_news(&password.metadata),
            "a relist repeats it"
        );

        caches.observe_version(&key("db"), Some("1"));
        assert!(
            caches.unlabelled(&key("db")).0.is_some(),
            "same version: kept"
        );
        caches.observe_version(&key("db"), Some("2"));
        assert!(
            caches.unlabelled(&key("db")).0.is_none(),
            "new version: dropped"
        );
        assert!(caches.key_event_is_news(&secret("db", "2", false).metadata));
    }

    #[test]
    fn a_read_raced_by_a_new_version_is_not_cached() {
        let caches = SecretCaches::default();
        let (_, _, epoch) = caches.unlabelled(&key("db"));
        caches.observe_version(&key("db"), Some("2"));
        caches.read_unlabelled(&key("db"), epoch, Some(&secret("db", "1", false)));
        assert!(caches.unlabelled(&key("db")).0.is_none());
    }

    #[test]
    fn metadata_events_of_labelled_keys_are_left_to_the_key_watch() {
        let (caches, _) = listed_keys(&[key_secret("keys", "1")]);
        assert!(!caches.key_event_is_news(&key_secret("keys", "2").metadata));
        // Its label removed: the key watch's deletion re-signs, after the cache dropped it.
        assert!(!caches.key_event_is_news(&secret("keys", "3", false).metadata));
        assert!(caches.key_event_is_news(&secret("other", "1", false).metadata));
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
    fn an_owned_secret_is_cached_slim_and_read_back_as_the_reconcile_needs_it() {
        use crate::reconcile::secret::{self, SecretMacKey, SignedToken};
        use crate::sas::{AccountKey, Resource, Service};
        let key_bytes = AccountKey::from_bytes(vec![7; 64]);
        let mac_key = SecretMacKey::derive(&key_bytes);
        let now: jiff::Timestamp = "2027-01-15T00:00:00Z".parse().unwrap();
        let token = "sv=2025-01-05&se=2027-01-15T08%3A00%3A00Z&sr=c&sp=r&sig=abc%2Bdef%3D";
        let signed = SignedToken {
            token: token.into(),
            expires_at: "2027-01-15T08:00:00Z".parse().unwrap(),
            rotated_at: now,
            inputs_hash: "0123abcd".into(),
            mac_key: mac_key.clone(),
        };
        let owner = OwnerReference {
            api_version: "sas-operator.io/v1alpha1".into(),
            kind: "SasGrant".into(),
            name: "app".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            ..Default::default()
        };
        let endpoints = secret::token_endpoints(
            &Resource::Container {
                container: "data".into(),
            },
            vec![(Service::Blob, "https://acct.blob.core.windows.net".into())],
        );
        let mut written = secret::desired_secret("app", "ns", owner, "app", &signed, &endpoints);
        written.metadata.resource_version = Some("9".into());
        written.metadata.uid = Some("secret-uid".into());
        let mut data = written.data.clone().unwrap();
        data.insert(
            "foreign".into(),
            ByteString(b"kept by the server, not here".to_vec()),
        );
        written.data = Some(data);
        let caches = SecretCaches::default();
        caches.wrote(written.clone());

        let cached = caches.owned(&key("app")).expect("cached");
        assert_eq!(cached.metadata.resource_version, Some("9".into()));
        assert!(secret::is_owned_by(&cached, "uid-1"));
        assert_eq!(cached.metadata.annotations, written.metadata.annotations);
        let mut expected = written.data.clone().unwrap();
        expected.remove("foreign");
        assert_eq!(
            cached.data,
            Some(expected),
            "every entry we wrote, byte for byte"
        );
        let issued = secret::issued_token(&cached, &mac_key);
        assert!(issued.complete && issued.intact, "{issued:?}");
    }

    #[test]
    fn a_value_ending_in_the_token_is_kept_without_it() {
        let compact = Compact::new(b"https://a/c?sig=1", b"sig=1");
        assert_eq!(&*compact.rest, b"https://a/c?");
        assert_eq!(compact.expand(b"sig=1"), b"https://a/c?sig=1");
    }

    #[test]
    fn a_value_not_ending_in_the_token_is_kept_as_it_is() {
        let compact = Compact::new(b"no token here", b"sig=1");
        assert_eq!(compact.expand(b"sig=1"), b"no token here");
        let compact = Compact::new(b"a?sig=1;b", b"sig=1");
        assert_eq!(&*compact.rest, b"a?sig=1;b");
        assert_eq!(compact.expand(b"sig=1"), b"a?sig=1;b");
    }

    #[test]
    fn cutting_the_token_out_is_linear_in_the_value() {
        // The worst case of a search by sliding window: a near-miss at every offset (about
        // 10^11 byte comparisons there, well under a millisecond here).
        let value = vec![b'a'; 1024 * 1024];
        let mut token = vec![b'a'; 512 * 1024];
        token.push(b'b');
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let compact = Compact::new(&value, &token);
            let _ = done.send(compact.token_at);
        });
        let token_at = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("cut within 5 s");
        assert_eq!(token_at, None);
    }

    fn labelled_ours_with_data(name: &str, entries: &[(&str, Vec<u8>)]) -> Secret {
        let mut secret = secret(name, "1", true);
        secret.data = Some(
            entries
                .iter()
                .map(|(entry, value)| (entry.to_string(), ByteString(value.clone())))
                .collect(),
        );
        secret
    }

    #[test]
    fn a_labelled_secret_no_grant_controls_is_kept_as_present_without_its_data() {
        use kube::runtime::watcher::Event;
        let caches = SecretCaches::default();
        let scope = Some("ns".to_string());
        let megabyte = vec![b'x'; 1024 * 1024];
        let foreign = labelled_ours_with_data(
            "theirs",
            &[(KEY_SAS_TOKEN, megabyte.clone()), (KEY_SAS_URL, megabyte)],
        );
        caches.observe_owned(&scope, Event::Apply(foreign), &mut Relist::default());
        let cached = caches.owned(&key("theirs")).expect("known to exist");
        assert_eq!(cached.data, Some(BTreeMap::new()), "nothing of its data");
        assert!(cached.metadata.owner_references.is_none());
        assert_eq!(cached.metadata.resource_version, Some("1".into()));
    }

    #[test]
    fn a_value_longer_than_we_ever_write_is_not_kept() {
        let mut secret = labelled_ours_with_data(
            "app",
            &[
                (KEY_SAS_TOKEN, b"sig=1".to_vec()),
                (KEY_SAS_URL, vec![b'x'; MAX_OWNED_VALUE + 1]),
            ],
        );
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "sas-operator.io/v1alpha1".into(),
            kind: "SasGrant".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let caches = SecretCaches::default();
        caches.wrote(secret);
        let data = caches.owned(&key("app")).unwrap().data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), [KEY_SAS_TOKEN]);
    }

    #[test]
    fn our_written_version_stays_known_when_the_watch_delivers_it_or_a_foreign_one() {
        use kube::runtime::watcher::Event;
        let caches = SecretCaches::default();
        let mut relist = Relist::default();
        let scope = Some("ns".to_string());
        caches.wrote(secret("app", "7", true));
        caches.observe_owned(&scope, Event::Apply(secret("app", "7", true)), &mut relist);
        assert!(caches.is_known_version(&key("app"), Some("7")));
        caches.observe_owned(&scope, Event::Apply(secret("app", "8", true)), &mut relist);
        assert!(
            !caches.is_known_version(&key("app"), Some("8")),
            "someone else's"
        );
        caches.observe_version(&key("app"), None);
        assert!(!caches.is_known_version(&key("app"), Some("7")), "deleted");
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
