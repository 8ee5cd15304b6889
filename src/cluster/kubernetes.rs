//! The Kubernetes implementation of the seam: the only place the operator writes from, and
//! where reads are served from the caches the controller's watches feed ([`super::cache`]).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{
    Api, Client, Resource,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::events::Reporter,
};
use serde_json::json;

use super::cache::{Key, SecretCaches};
use super::{Cluster, GrantEvent, Severity};
use crate::crd::{ClusterSasIssuer, IssuerKind, IssuerStatus, SasGrant, SasGrantStatus, SasIssuer};
use crate::error::Error;
use crate::leader::LeadershipClaim;
use crate::reconcile::FIELD_MANAGER;

/// Reads through caches, writes through the API server. Every write first checks the
/// leadership claim.
pub struct KubeCluster {
    client: Client,
    reporter: Reporter,
    claim: LeadershipClaim,
    caches: Arc<SecretCaches>,
}

impl KubeCluster {
    /// Until the controller's watches feed [`KubeCluster::caches`], target Secrets are read by
    /// GET (a cache that has not listed yet knows nothing).
    pub fn new(client: Client, reporter: Reporter, claim: LeadershipClaim) -> Self {
        KubeCluster {
            client,
            reporter,
            claim,
            caches: Arc::default(),
        }
    }

    /// The caches, for the watches that feed them.
    pub fn caches(&self) -> &Arc<SecretCaches> {
        &self.caches
    }

    /// Fails unless this replica may write now. A cheap check of a shared flag and deadline,
    /// made right before each request.
    fn may_write(&self) -> Result<(), Error> {
        if self.claim.holds() {
            Ok(())
        } else {
            Err(Error::LeadershipLost)
        }
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn namespace_of(secret: &Secret) -> Result<&str, Error> {
        secret
            .metadata
            .namespace
            .as_deref()
            .ok_or_else(|| Error::InvalidGrant("a Secret to write has no namespace".into()))
    }

    /// A GET of a target Secret, remembered in the cache.
    async fn read_target(&self, key: &Key) -> Result<Option<Secret>, Error> {
        match self.secrets(&key.0).get_opt(&key.1).await {
            Ok(found) => {
                self.caches.read(key, found.as_ref());
                Ok(found)
            }
            Err(err) => {
                self.caches.mark_dirty(key.clone());
                Err(err.into())
            }
        }
    }

    /// After a 409 on create: the Secret exists though the cache did not know it. Ours (a
    /// cache behind our own write) requeues on the conflict; anyone else's is never taken over.
    async fn created_concurrently(&self, desired: &Secret, conflict: Error) -> Error {
        let key = (
            Self::namespace_of(desired).unwrap_or_default().to_string(),
            desired.metadata.name.clone().unwrap_or_default(),
        );
        let owner_uid = desired
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone())
            .unwrap_or_default();
        match self.read_target(&key).await {
            Ok(Some(found)) if crate::reconcile::secret::is_owned_by(&found, &owner_uid) => {
                conflict
            }
            Ok(Some(_)) => Error::SecretNotOwned { name: key.1 },
            Ok(None) => conflict,
            Err(err) => err,
        }
    }
}

fn key_of(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl Cluster for KubeCluster {
    async fn key_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        // Cached only where a key watch covers the namespace; elsewhere (a ClusterSasIssuer's
        // key in an unwatched namespace) every read is a GET, since nothing would invalidate it.
        if !self.caches.keys_synced(namespace) {
            return Ok(self.secrets(namespace).get_opt(name).await?);
        }
        let key = key_of(namespace, name);
        if let Some(secret) = self.caches.signing_key(&key) {
            return Ok(Some((*secret).clone()));
        }
        // Not opted in, or missing: which of the two is a GET, once per version of an
        // unlabelled Secret however many grants ask at once.
        let (cached, fetch, _) = self.caches.unlabelled(&key);
        if let Some(secret) = cached {
            return Ok(Some((*secret).clone()));
        }
        let _fetching = fetch.lock().await;
        if let Some(secret) = self.caches.signing_key(&key) {
            return Ok(Some((*secret).clone()));
        }
        let (cached, _, epoch) = self.caches.unlabelled(&key);
        if let Some(secret) = cached {
            return Ok(Some((*secret).clone()));
        }
        let found = self.secrets(namespace).get_opt(name).await?;
        self.caches.read_unlabelled(&key, epoch, found.as_ref());
        Ok(found)
    }

    async fn target_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        let key = key_of(namespace, name);
        if !self.caches.owned_synced(namespace) || self.caches.take_dirty(&key) {
            return self.read_target(&key).await;
        }
        Ok(self.caches.owned(&key))
    }

    async fn sas_issuer(&self, namespace: &str, name: &str) -> Result<Option<SasIssuer>, Error> {
        Ok(Api::<SasIssuer>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?)
    }

    async fn cluster_sas_issuer(&self, name: &str) -> Result<Option<ClusterSasIssuer>, Error> {
        Ok(Api::<ClusterSasIssuer>::all(self.client.clone())
            .get_opt(name)
            .await?)
    }

    async fn namespace_labels(
        &self,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, Error> {
        // Metadata only: the labels are all a selector needs.
        let found = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .get_metadata_opt(name)
            .await?;
        Ok(found.map(|namespace| namespace.metadata.labels.unwrap_or_default()))
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
        seconds: i64,
    ) -> Result<String, Error> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        // Not a write to any object the operator manages, but it mints a credential: only the
        // leader may.
        self.may_write()?;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(seconds),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
            self.client.clone(),
            namespace,
        )
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|err| match err {
            kube::Error::Api(status) if status.is_not_found() => Error::from(
                crate::issuer::identity::IdentityError::ServiceAccountNotFound {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                },
            ),
            other => Error::from(other),
        })?;
        issued
            .status
            .map(|status| status.token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Error::InvalidGrant("TokenRequest returned no token".into()))
    }

    async fn create_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.may_write()?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let namespace = Self::namespace_of(secret)?;
        let key = key_of(
            namespace,
            secret.metadata.name.as_deref().unwrap_or_default(),
        );
        let writing = self.caches.writing(&key);
        let result = self.secrets(namespace).create(&params, secret).await;
        if let Ok(created) = &result {
            self.caches.wrote(created.clone());
        }
        drop(writing);
        self.caches.finished_writing(&key);
        match result {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let conflict = Error::Kube(kube::Error::Api(status));
                Err(self.created_concurrently(secret, conflict).await)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn apply_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.may_write()?;
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        if secret.metadata.resource_version.is_none() {
            // Without the version that was read, a forced apply could take over anything.
            return Err(Error::UnreadSecretWrite { name: name.into() });
        }
        let namespace = Self::namespace_of(secret)?;
        let key = key_of(namespace, name);
        let writing = self.caches.writing(&key);
        let result = self
            .secrets(namespace)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(secret),
            )
            .await;
        match &result {
            Ok(written) => self.caches.wrote(written.clone()),
            // The cache was behind: read it afresh next time.
            Err(_) => self.caches.mark_dirty(key.clone()),
        }
        drop(writing);
        self.caches.finished_writing(&key);
        result?;
        Ok(())
    }

    async fn apply_status(&self, grant: &SasGrant, status: &SasGrantStatus) -> Result<(), Error> {
        self.may_write()?;
        let namespace = grant.metadata.namespace.as_deref().unwrap_or_default();
        let name = grant.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({
            "apiVersion": SasGrant::api_version(&()),
            "kind": SasGrant::kind(&()),
            "status": status,
        });
        Api::<SasGrant>::namespaced(self.client.clone(), namespace)
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }

    async fn apply_issuer_status(
        &self,
        kind: IssuerKind,
        namespace: Option<&str>,
        name: &str,
        status: &IssuerStatus,
    ) -> Result<(), Error> {
        self.may_write()?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = |api_version: String| json!({"apiVersion": api_version, "kind": kind.as_str(), "status": status});
        match (kind, namespace) {
            (IssuerKind::SasIssuer, Some(namespace)) => {
                Api::<SasIssuer>::namespaced(self.client.clone(), namespace)
                    .patch_status(
                        name,
                        &params,
                        &Patch::Apply(&patch(SasIssuer::api_version(&()).into())),
                    )
                    .await?;
            }
            _ => {
                Api::<ClusterSasIssuer>::all(self.client.clone())
                    .patch_status(
                        name,
                        &params,
                        &Patch::Apply(&patch(ClusterSasIssuer::api_version(&()).into())),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// One POST per Event, nothing kept: kube's `Recorder` keeps every Event for minutes (to
    /// count repeats) and scans them all on each publish, which at 10,000 grants is most of the
    /// operator's memory and CPU. Repeats are rare here (notes carry expiry times).
    async fn publish(&self, grant: &SasGrant, event: GrantEvent) -> Result<(), Error> {
        self.may_write()?;
        let regarding = grant.object_ref(&());
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let now = Timestamp::now();
        let event = K8sEvent {
            action: Some("Reconcile".into()),
            reason: Some(event.reason),
            note: Some(event.note),
            event_time: Some(MicroTime(now)),
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("sas-operator"),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            regarding: Some(regarding),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match event.severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
    }
}
