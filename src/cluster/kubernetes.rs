//! The Kubernetes implementation of the seam: the only place the operator writes from.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Recorder},
};
use serde_json::json;

use super::{Cluster, GrantEvent, Severity};
use crate::crd::{ClusterSasIssuer, IssuerKind, IssuerStatus, SasGrant, SasGrantStatus, SasIssuer};
use crate::error::Error;
use crate::leader::LeadershipClaim;
use crate::reconcile::FIELD_MANAGER;

/// Reads and writes through the API server. Every write first checks the leadership claim.
pub struct KubeCluster {
    client: Client,
    recorder: Recorder,
    claim: LeadershipClaim,
}

impl KubeCluster {
    pub fn new(client: Client, recorder: Recorder, claim: LeadershipClaim) -> Self {
        KubeCluster {
            client,
            recorder,
            claim,
        }
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
}

impl Cluster for KubeCluster {
    async fn key_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        Ok(self.secrets(namespace).get_opt(name).await?)
    }

    async fn target_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        Ok(self.secrets(namespace).get_opt(name).await?)
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
        self.secrets(Self::namespace_of(secret)?)
            .create(&params, secret)
            .await?;
        Ok(())
    }

    async fn apply_secret(&self, secret: &Secret) -> Result<(), Error> {
        self.may_write()?;
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        if secret.metadata.resource_version.is_none() {
            // Without the version that was read, a forced apply could take over anything.
            return Err(Error::UnreadSecretWrite { name: name.into() });
        }
        self.secrets(Self::namespace_of(secret)?)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(secret),
            )
            .await?;
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

    async fn publish(&self, grant: &SasGrant, event: GrantEvent) -> Result<(), Error> {
        self.may_write()?;
        let event = Event {
            type_: match event.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: event.reason,
            note: Some(event.note),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &grant.object_ref(&()))
            .await?;
        Ok(())
    }
}
