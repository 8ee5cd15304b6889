//! The seam between a reconcile and the cluster: every read and write a reconcile makes goes
//! through [`Cluster`]. [`KubeCluster`] is the only code that writes to the API server, and it
//! checks the leadership claim before every write; [`fake::FakeCluster`] lets the reconcile be
//! tested in-process, without a server.
//!
//! Reads are served from caches the controller's watches feed (`cache`), inside
//! [`KubeCluster`]; the reconcile does not know.
//!
//! Status and Event writes return once handed to a background writer (`writer`): a status
//! write the API server is slow to take (after etcd returns, say) never holds a reconcile
//! worker. Secret writes stay inline: a reconcile's outcome is the Secret.

pub mod cache;
#[cfg(test)]
pub mod fake;
mod kubernetes;
pub mod writer;

use std::future::Future;

use k8s_openapi::api::core::v1::Secret;

pub use self::kubernetes::KubeCluster;
use crate::crd::{ClusterSasIssuer, IssuerKind, IssuerStatus, SasGrant, SasGrantStatus, SasIssuer};
use crate::credentials::KeySecret;
use crate::error::Error;

/// Whether an Event reports normal progress or a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An Event about a grant. `reason` is a static category; `note` is free of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEvent {
    pub severity: Severity,
    pub reason: String,
    pub note: String,
}

/// What a reconcile reads from and writes to the cluster.
///
/// Writes fail with [`Error::LeadershipLost`] once this replica may no longer write; that error
/// is final for the reconcile (never retried as transient).
pub trait Cluster: Send + Sync + 'static {
    /// The Secret holding a grant's account key, if it exists, as all that is kept of one
    /// ([`KeySecret`]: whether it opted in, and its account keys).
    fn key_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<KeySecret>, Error>> + Send;

    /// The Secret a grant writes its token into, if it exists.
    fn target_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Secret>, Error>> + Send;

    /// Creates a Secret; fails if one of that name exists (it is never taken over).
    fn create_secret(&self, secret: &Secret) -> impl Future<Output = Result<(), Error>> + Send;

    /// Replaces the content of a Secret that was read (forced server-side apply). `secret`
    /// carries the `resourceVersion` that was read, so the write fails with a conflict if the
    /// Secret was changed or replaced since: a foreign Secret recreated in between is never
    /// taken over.
    fn apply_secret(&self, secret: &Secret) -> impl Future<Output = Result<(), Error>> + Send;

    /// Writes a grant's status (server-side apply on the status subresource). May return
    /// before the write lands; a later status supersedes one not yet written.
    fn apply_status(
        &self,
        grant: &SasGrant,
        status: &SasGrantStatus,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// A `SasIssuer` of `namespace`, if it exists.
    fn sas_issuer(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SasIssuer>, Error>> + Send;

    /// A `ClusterSasIssuer`, if it exists.
    fn cluster_sas_issuer(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ClusterSasIssuer>, Error>> + Send;

    /// The labels of a namespace (for a `ClusterSasIssuer`'s `allowedNamespaces`), if it
    /// exists.
    fn namespace_labels(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<std::collections::BTreeMap<String, String>>, Error>> + Send;

    /// A token of ServiceAccount `namespace/name` for `audience`, valid `seconds` (TokenRequest).
    /// The token is a credential: never logged or shown.
    fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
        seconds: i64,
    ) -> impl Future<Output = Result<String, Error>> + Send;

    /// Writes an issuer's status (server-side apply on the status subresource); `namespace` is
    /// `None` for a `ClusterSasIssuer`. May return before the write lands.
    fn apply_issuer_status(
        &self,
        kind: IssuerKind,
        namespace: Option<&str>,
        name: &str,
        status: &IssuerStatus,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Publishes an Event about a grant. May return before it is published; an Event that
    /// cannot be published is dropped, never fatal.
    fn publish(
        &self,
        grant: &SasGrant,
        event: GrantEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}
