//! An in-process cluster for unit tests of the reconcile: Secrets in a map with resource
//! versions, and a record of every write. No server, no clock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;

use super::{Cluster, GrantEvent};
use crate::crd::{ClusterSasIssuer, IssuerKind, IssuerStatus, SasGrant, SasGrantStatus, SasIssuer};
use crate::credentials::KeySecret;
use crate::error::Error;

/// One write the reconcile made, in order.
#[derive(Debug, Clone)]
pub enum Write {
    CreateSecret(Secret),
    ApplySecret(Secret),
    Status(SasGrantStatus),
    Event(GrantEvent),
    IssuerStatus(String, IssuerStatus),
}

type Hook = Box<dyn FnOnce(&mut BTreeMap<(String, String), Secret>) + Send>;

#[derive(Default)]
pub struct FakeCluster {
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
    writes: Mutex<Vec<Write>>,
    reads: Mutex<u32>,
    deposed: Mutex<bool>,
    hung: Mutex<bool>,
    next_version: Mutex<u64>,
    sas_issuers: Mutex<BTreeMap<(String, String), SasIssuer>>,
    cluster_sas_issuers: Mutex<BTreeMap<String, ClusterSasIssuer>>,
    namespaces: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// ClusterSasIssuers are read with a 403, as under the namespaced install.
    cluster_issuers_forbidden: Mutex<bool>,
    /// Every Secret read, as (namespace, name), in order.
    secret_reads: Mutex<Vec<(String, String)>>,
    /// Runs once, right after the next read of a target Secret (to change the world between
    /// a read and the write that follows it).
    after_target_read: Mutex<Option<Hook>>,
    /// Every TokenRequest, as (namespace, ServiceAccount), in order.
    token_requests: Mutex<Vec<(String, String)>>,
    /// ServiceAccounts no Role lends to the operator: their TokenRequest is refused (403).
    unbound_service_accounts: Mutex<Vec<(String, String)>>,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

/// The 409 the API server answers with (`AlreadyExists` or `Conflict`).
fn conflict(reason: &str, message: String) -> Error {
    Error::Kube(kube::Error::Api(
        kube::core::Status::failure(&message, reason)
            .with_code(409)
            .boxed(),
    ))
}

impl FakeCluster {
    /// Stores `secret` (in its own namespace) with a fresh resourceVersion.
    pub fn put_secret(&self, mut secret: Secret) {
        secret.metadata.resource_version = Some(self.version());
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.secrets
            .lock()
            .unwrap()
            .insert(key(&namespace, &name), secret);
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned()
    }

    pub fn put_sas_issuer(&self, issuer: SasIssuer) {
        let namespace = issuer.metadata.namespace.clone().unwrap_or_default();
        let name = issuer.metadata.name.clone().unwrap_or_default();
        self.sas_issuers
            .lock()
            .unwrap()
            .insert(key(&namespace, &name), issuer);
    }

    pub fn delete_sas_issuer(&self, namespace: &str, name: &str) {
        self.sas_issuers
            .lock()
            .unwrap()
            .remove(&key(namespace, name));
    }

    pub fn put_cluster_sas_issuer(&self, issuer: ClusterSasIssuer) {
        let name = issuer.metadata.name.clone().unwrap_or_default();
        self.cluster_sas_issuers
            .lock()
            .unwrap()
            .insert(name, issuer);
    }

    pub fn put_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.namespaces
            .lock()
            .unwrap()
            .insert(name.to_string(), labels);
    }

    /// From now on a ClusterSasIssuer read is refused (403), as the namespaced install's RBAC
    /// refuses it.
    pub fn forbid_cluster_issuers(&self) {
        *self.cluster_issuers_forbidden.lock().unwrap() = true;
    }

    /// Every Secret read so far, as (namespace, name).
    pub fn secret_reads(&self) -> Vec<(String, String)> {
        self.secret_reads.lock().unwrap().clone()
    }

    /// Every TokenRequest so far, as (namespace, ServiceAccount).
    pub fn token_requests(&self) -> Vec<(String, String)> {
        self.token_requests.lock().unwrap().clone()
    }

    /// From now on the API server refuses TokenRequests for `namespace/name` (403), as it does
    /// when no Role lends that ServiceAccount to the operator.
    pub fn unbind_service_account(&self, namespace: &str, name: &str) {
        self.unbound_service_accounts
            .lock()
            .unwrap()
            .push(key(namespace, name));
    }

    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    pub fn reads(&self) -> u32 {
        *self.reads.lock().unwrap()
    }

    /// From now on every write fails as a deposed leader's would.
    pub fn depose(&self) {
        *self.deposed.lock().unwrap() = true;
    }

    /// From now on every read waits forever, as against a frozen API server.
    pub fn hang(&self) {
        *self.hung.lock().unwrap() = true;
    }

    pub fn after_next_target_read(
        &self,
        hook: impl FnOnce(&mut BTreeMap<(String, String), Secret>) + Send + 'static,
    ) {
        *self.after_target_read.lock().unwrap() = Some(Box::new(hook));
    }

    fn version(&self) -> String {
        let mut next = self.next_version.lock().unwrap();
        *next += 1;
        next.to_string()
    }

    fn may_write(&self) -> Result<(), Error> {
        if *self.deposed.lock().unwrap() {
            Err(Error::LeadershipLost)
        } else {
            Ok(())
        }
    }

    async fn read(&self, namespace: &str, name: &str) -> Option<Secret> {
        *self.reads.lock().unwrap() += 1;
        self.secret_reads.lock().unwrap().push(key(namespace, name));
        let hung = *self.hung.lock().unwrap();
        if hung {
            std::future::pending::<()>().await;
        }
        self.secret(namespace, name)
    }
}

impl Cluster for FakeCluster {
    async fn key_secret(&self, namespace: &str, name: &str) -> Result<Option<KeySecret>, Error> {
        Ok(self.read(namespace, name).await.as_ref().map(KeySecret::of))
    }

    async fn target_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        let found = self.read(namespace, name).await;
        if let Some(hook) = self.after_target_read.lock().unwrap().take() {
            hook(&mut self.secrets.lock().unwrap());
        }
        Ok(found)
    }

    async fn sas_issuer(&self, namespace: &str, name: &str) -> Result<Option<SasIssuer>, Error> {
        Ok(self
            .sas_issuers
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned())
    }

    async fn cluster_sas_issuer(&self, name: &str) -> Result<Option<ClusterSasIssuer>, Error> {
        if *self.cluster_issuers_forbidden.lock().unwrap() {
            return Err(Error::Kube(kube::Error::Api(
                kube::core::Status::failure(
                    &format!("clustersasissuers.sas-operator.io {name:?} is forbidden"),
                    "Forbidden",
                )
                .with_code(403)
                .boxed(),
            )));
        }
        Ok(self.cluster_sas_issuers.lock().unwrap().get(name).cloned())
    }

    async fn namespace_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        Ok(self.namespaces.lock().unwrap().get(name).cloned())
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        _audience: &str,
        _seconds: i64,
    ) -> Result<String, Error> {
        self.token_requests
            .lock()
            .unwrap()
            .push(key(namespace, name));
        if self
            .unbound_service_accounts
            .lock()
            .unwrap()
            .contains(&key(namespace, name))
        {
            return Err(Error::Kube(kube::Error::Api(
                kube::core::Status::failure(
                    &format!("cannot create resource \"serviceaccounts/token\" in namespace {namespace:?}"),
                    "Forbidden",
                )
                .with_code(403)
                .boxed(),
            )));
        }
        Ok(format!("fake-token-of-{namespace}-{name}"))
    }

    async fn create_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.may_write()?;
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        if self.secret(&namespace, &name).is_some() {
            return Err(conflict(
                "AlreadyExists",
                format!("secrets {name:?} already exists"),
            ));
        }
        self.writes
            .lock()
            .unwrap()
            .push(Write::CreateSecret(secret.clone()));
        self.put_secret(secret.clone());
        Ok(())
    }

    async fn apply_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.may_write()?;
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let stored = self.secret(&namespace, &name);
        let current = stored.and_then(|s| s.metadata.resource_version);
        if secret.metadata.resource_version.is_none() || current != secret.metadata.resource_version
        {
            return Err(conflict(
                "Conflict",
                format!("the object has been modified: secrets {name:?}"),
            ));
        }
        self.writes
            .lock()
            .unwrap()
            .push(Write::ApplySecret(secret.clone()));
        self.put_secret(secret.clone());
        Ok(())
    }

    async fn apply_status(&self, _grant: &SasGrant, status: &SasGrantStatus) -> Result<(), Error> {
        self.may_write()?;
        self.writes
            .lock()
            .unwrap()
            .push(Write::Status(status.clone()));
        Ok(())
    }

    async fn apply_issuer_status(
        &self,
        kind: IssuerKind,
        _namespace: Option<&str>,
        name: &str,
        status: &IssuerStatus,
    ) -> Result<(), Error> {
        self.may_write()?;
        self.writes.lock().unwrap().push(Write::IssuerStatus(
            format!("{}/{name}", kind.as_str()),
            status.clone(),
        ));
        Ok(())
    }

    async fn publish(&self, _grant: &SasGrant, event: GrantEvent) -> Result<(), Error> {
        self.may_write()?;
        self.writes.lock().unwrap().push(Write::Event(event));
        Ok(())
    }
}
