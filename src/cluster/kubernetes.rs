//! The Kubernetes implementation of the seam: the only place the operator writes from, and
//! where reads are served from the caches the controller's watches feed ([`super::cache`]).
//! Status and Event writes go through [`super::writer`] (in the background); the requests it
//! sends are made here too ([`ApiWrites`]).

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
use super::writer::{self, SecretWrites, Status, StatusOf, Writer};
use super::{Cluster, GrantEvent, Severity};
use crate::crd::{ClusterSasIssuer, IssuerKind, IssuerStatus, SasGrant, SasGrantStatus, SasIssuer};
use crate::credentials::KeySecret;
use crate::error::Error;
use crate::kube_client::ApiHealth;
use crate::leader::LeadershipClaim;
use crate::metrics::Metrics;
use crate::reconcile::FIELD_MANAGER;

/// Reads through caches, writes through the API server. Every write first checks the
/// leadership claim (status and Event writes again right before their request).
pub struct KubeCluster {
    client: Client,
    reporter: Reporter,
    claim: LeadershipClaim,
    caches: Arc<SecretCaches>,
    writes: Writer<ApiWrites>,
    /// When Secrets were last written: status and Events give way to them.
    secret_writes: Arc<SecretWrites>,
}

impl KubeCluster {
    /// Until the controller's watches feed [`KubeCluster::caches`], target Secrets are read by
    /// GET (a cache that has not listed yet knows nothing). Status and Event writes go out in
    /// the background as if the API server were always reachable, until
    /// [`KubeCluster::with_background_writes`] says otherwise.
    pub fn new(client: Client, reporter: Reporter, claim: LeadershipClaim) -> Self {
        let writes = Writer::new(
            ApiWrites {
                client: client.clone(),
            },
            claim.clone(),
            None,
            None,
            writer::Settings::default(),
        );
        KubeCluster {
            client,
            reporter,
            claim,
            caches: Arc::default(),
            writes,
            secret_writes: Arc::default(),
        }
    }

    /// The background writer of status and Events: it waits while `health` knows the API
    /// server unreachable, counts dropped Events in `metrics`, and bounds each request by
    /// `request_deadline` (the controller passes the reconcile deadline: a write begun under
    /// the claim ends as soon as a reconcile's would).
    pub fn with_background_writes(
        mut self,
        health: ApiHealth,
        metrics: Metrics,
        request_deadline: std::time::Duration,
    ) -> Self {
        self.writes = Writer::new(
            ApiWrites {
                client: self.client.clone(),
            },
            self.claim.clone(),
            Some(health),
            Some(metrics),
            writer::Settings {
                request_deadline,
                ..writer::Settings::default()
            },
        )
        .yielding_to(self.secret_writes.clone());
        self
    }

    /// Waits, at most `within`, for the status and Event writes handed over to finish (only
    /// while this replica may write). Returns whether all did.
    pub async fn drain_writes(&self, within: std::time::Duration) -> bool {
        self.writes.drain(within).await
    }

    /// `grant` as it will be once the status handed to the writer is written: a reconcile that
    /// runs before that write lands sees the status it already decided on, so it neither
    /// repeats a Warning Event nor skips a status change because the grant cache still shows
    /// an older status.
    pub fn with_pending_status(&self, grant: Arc<SasGrant>) -> Arc<SasGrant> {
        let of = StatusOf::Grant {
            namespace: grant.metadata.namespace.clone().unwrap_or_default(),
            name: grant.metadata.name.clone().unwrap_or_default(),
        };
        match self.writes.latest_status(&of) {
            Some(Status::Grant(pending)) if grant.status.as_ref() != Some(&pending) => {
                let mut shown = (*grant).clone();
                shown.status = Some(pending);
                Arc::new(shown)
            }
            _ => grant,
        }
    }

    /// An issuer's status as it will be once the status handed to the writer is written.
    fn pending_issuer_status(
        &self,
        kind: IssuerKind,
        namespace: Option<&str>,
        name: &str,
        current: &mut Option<IssuerStatus>,
    ) {
        let of = StatusOf::Issuer {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        if let Some(Status::Issuer(pending)) = self.writes.latest_status(&of) {
            *current = Some(pending);
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
    async fn key_secret(&self, namespace: &str, name: &str) -> Result<Option<KeySecret>, Error> {
        // Cached only where a key watch covers the namespace; elsewhere (a ClusterSasIssuer's
        // key in an unwatched namespace) every read is a GET, since nothing would invalidate it.
        if !self.caches.keys_synced(namespace) {
            let found = self.secrets(namespace).get_opt(name).await?;
            return Ok(found.as_ref().map(KeySecret::of));
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
        Ok(found.as_ref().map(KeySecret::of))
    }

    async fn target_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        let key = key_of(namespace, name);
        if !self.caches.owned_synced(namespace) || self.caches.take_dirty(&key) {
            return self.read_target(&key).await;
        }
        Ok(self.caches.owned(&key))
    }

    async fn sas_issuer(&self, namespace: &str, name: &str) -> Result<Option<SasIssuer>, Error> {
        let mut found = Api::<SasIssuer>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?;
        if let Some(issuer) = &mut found {
            let kind = IssuerKind::SasIssuer;
            self.pending_issuer_status(kind, Some(namespace), name, &mut issuer.status);
        }
        Ok(found)
    }

    async fn cluster_sas_issuer(&self, name: &str) -> Result<Option<ClusterSasIssuer>, Error> {
        let mut found = Api::<ClusterSasIssuer>::all(self.client.clone())
            .get_opt(name)
            .await?;
        if let Some(issuer) = &mut found {
            let kind = IssuerKind::ClusterSasIssuer;
            self.pending_issuer_status(kind, None, name, &mut issuer.status);
        }
        Ok(found)
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
        self.secret_writes.started();
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
        self.secret_writes.started();
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
        let of = StatusOf::Grant {
            namespace: grant.metadata.namespace.clone().unwrap_or_default(),
            name: grant.metadata.name.clone().unwrap_or_default(),
        };
        self.writes.status(of, Status::Grant(status.clone()))
    }

    async fn apply_issuer_status(
        &self,
        kind: IssuerKind,
        namespace: Option<&str>,
        name: &str,
        status: &IssuerStatus,
    ) -> Result<(), Error> {
        let of = StatusOf::Issuer {
            kind,
            // A ClusterSasIssuer has none, whatever the caller passed.
            namespace: match kind {
                IssuerKind::SasIssuer => namespace.map(str::to_string),
                IssuerKind::ClusterSasIssuer => None,
            },
            name: name.to_string(),
        };
        self.writes.status(of, Status::Issuer(status.clone()))
    }

    /// One POST per Event, nothing kept: kube's `Recorder` keeps every Event for minutes (to
    /// count repeats) and scans them all on each publish, which at 10,000 grants is most of the
    /// operator's memory and CPU. Repeats are rare here (notes carry expiry times). The Event
    /// is built now (its time is when it happened) and sent in the background.
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
        self.writes.event(event)
    }
}

/// The status and Event requests of the background writer: forced server-side apply on the
/// status subresource, and a POST per Event.
pub struct ApiWrites {
    client: Client,
}

impl writer::Transport for ApiWrites {
    type Event = K8sEvent;

    async fn write_status(&self, of: &StatusOf, status: &Status) -> Result<(), Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match (of, status) {
            (StatusOf::Grant { namespace, name }, Status::Grant(status)) => {
                let patch = json!({
                    "apiVersion": SasGrant::api_version(&()),
                    "kind": SasGrant::kind(&()),
                    "status": status,
                });
                Api::<SasGrant>::namespaced(self.client.clone(), namespace)
                    .patch_status(name, &params, &Patch::Apply(&patch))
                    .await?;
            }
            (
                StatusOf::Issuer {
                    kind,
                    namespace,
                    name,
                },
                Status::Issuer(status),
            ) => {
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
            }
            _ => {
                return Err(Error::InvalidGrant(
                    "a status of one kind was handed over for an object of another".into(),
                ));
            }
        }
        Ok(())
    }

    async fn create_event(&self, event: &K8sEvent) -> Result<(), Error> {
        let namespace = event.metadata.namespace.as_deref().unwrap_or_default();
        Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), event)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{Context, reconcile};

    /// A KubeCluster whose API server is known to be unreachable: writes stay pending.
    fn cluster_with_api_down() -> KubeCluster {
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let health = ApiHealth::new(crate::admin::Readiness::default());
        health.unreachable();
        let reporter = Reporter {
            controller: "sas-operator-tests".into(),
            instance: None,
        };
        KubeCluster::new(client, reporter, LeadershipClaim::unconditional()).with_background_writes(
            health,
            Metrics::new(),
            std::time::Duration::from_secs(1),
        )
    }

    /// A grant refused before any read (renewBefore not below validity).
    fn refused_grant() -> SasGrant {
        let spec = json!({
            "storageAccount": {"name": "acct", "keySecretRef": {"name": "keys"}},
            "resource": {"container": {"name": "data"}},
            "permissions": "r",
            "validity": "2h",
            "renewBefore": "2h",
        });
        let mut grant = SasGrant::new("app", serde_json::from_value(spec).unwrap());
        grant.metadata.namespace = Some("apps".into());
        grant.metadata.uid = Some("uid-1".into());
        grant.metadata.generation = Some(1);
        grant
    }

    #[tokio::test]
    async fn a_reconcile_before_the_status_write_lands_repeats_no_warning_and_writes_nothing_more()
    {
        let ctx = Arc::new(Context::new(
            cluster_with_api_down(),
            std::time::Duration::ZERO,
            Metrics::new(),
            std::time::Duration::from_secs(5),
        ));
        // What the grant cache holds: no status, as long as the status write is pending.
        let cached = Arc::new(refused_grant());
        let run = |ctx: &Arc<Context<KubeCluster>>| {
            let grant = ctx.cluster.with_pending_status(cached.clone());
            reconcile(grant, ctx.clone())
        };
        assert!(run(&ctx).await.is_err());
        assert_eq!(
            ctx.cluster.writes.pending(),
            (1, 1),
            "a status and a Warning"
        );
        let shown = ctx.cluster.with_pending_status(cached.clone());
        assert_eq!(
            crate::reconcile::status::ready_condition(shown.status.as_ref())
                .map(|c| c.reason.as_str()),
            Some("RenewalMarginTooShort")
        );

        assert!(run(&ctx).await.is_err());
        assert_eq!(
            ctx.cluster.writes.pending(),
            (1, 1),
            "the second reconcile saw the pending status: no second Warning"
        );

        // The lagging cache alone would have repeated the Warning.
        assert!(reconcile(cached.clone(), ctx.clone()).await.is_err());
        assert_eq!(ctx.cluster.writes.pending(), (1, 2));
    }
}
