//! Issuers: where a grant's signing key comes from.
//!
//! A grant names either an inline `storageAccount` (the short form of an account-key issuer in
//! its own namespace) or an `issuerRef`. A `SasIssuer` is looked up in the grant's namespace
//! only, so a namespace cannot borrow another namespace's credentials; a `ClusterSasIssuer`
//! keeps its credential in the operator's cluster resource namespace and serves only the
//! namespaces its `allowedNamespaces` selector matches. That check comes before anything of the
//! credential is read.

pub mod identity;
pub mod selector;

use crate::cluster::Cluster;
use crate::crd::{
    AccountKeyCredential, DEFAULT_KEY_NAME, IssuerKind, IssuerStorageAccount, KeySecretRef,
    StorageAccount, WorkloadIdentityCredential,
};
use crate::error::Error;
use crate::reconcile::grant::CredentialSource;
use crate::reconcile::validate;
use crate::sas::AccountKey;

/// What a grant signs with, once its issuer is resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The account as an inline `storageAccount` would name it (name, endpoints, and the key
    /// reference): what the grant's token is signed for and its inputs hash covers.
    pub account: StorageAccount,
    pub key: AccountKey,
}

/// An issuer's spec, whichever its kind.
struct IssuerSpec<'a> {
    kind: IssuerKind,
    name: &'a str,
    account: &'a IssuerStorageAccount,
    account_key: Option<&'a AccountKeyCredential>,
    workload_identity: Option<&'a WorkloadIdentityCredential>,
}

impl IssuerSpec<'_> {
    fn validate(&self) -> Result<(), Error> {
        validate::issuer(self.account, self.account_key, self.workload_identity).map_err(|reason| {
            Error::InvalidIssuer {
                kind: self.kind.as_str(),
                name: self.name.to_string(),
                reason,
            }
        })
    }
}

/// Resolves the signing key of a grant in `namespace`. `cluster_resource_namespace` is where
/// `ClusterSasIssuer` credentials live.
pub async fn resolve<C: Cluster>(
    cluster: &C,
    namespace: &str,
    source: &CredentialSource,
    cluster_resource_namespace: Option<&str>,
) -> Result<Resolved, Error> {
    let reference = match source {
        CredentialSource::Inline {
            key_secret,
            key_name,
        } => {
            let found = cluster
                .key_secret(namespace, key_secret)
                .await?
                .ok_or_else(|| Error::KeySecretNotFound {
                    name: key_secret.clone(),
                })?;
            let key = crate::credentials::signing_key(&found, namespace, key_secret, key_name)?;
            return Ok(Resolved {
                // The caller keeps the grant's own inline account.
                account: StorageAccount {
                    name: String::new(),
                    key_secret_ref: KeySecretRef {
                        name: key_secret.clone(),
                        key: Some(key_name.clone()),
                    },
                    endpoints: None,
                },
                key,
            });
        }
        CredentialSource::Issuer(reference) => reference,
    };
    let not_found = || Error::IssuerNotFound {
        kind: reference.kind.as_str(),
        name: reference.name.clone(),
    };
    match reference.kind {
        IssuerKind::SasIssuer => {
            let issuer = cluster
                .sas_issuer(namespace, &reference.name)
                .await?
                .ok_or_else(not_found)?;
            let spec = IssuerSpec {
                kind: IssuerKind::SasIssuer,
                name: &reference.name,
                account: &issuer.spec.storage_account,
                account_key: issuer.spec.account_key.as_ref(),
                workload_identity: issuer.spec.workload_identity.as_ref(),
            };
            spec.validate()?;
            credential_of(cluster, &spec, namespace).await
        }
        IssuerKind::ClusterSasIssuer => {
            let issuer = cluster
                .cluster_sas_issuer(&reference.name)
                .await?
                .ok_or_else(not_found)?;
            let spec = IssuerSpec {
                kind: IssuerKind::ClusterSasIssuer,
                name: &reference.name,
                account: &issuer.spec.storage_account,
                account_key: issuer.spec.account_key.as_ref(),
                workload_identity: issuer.spec.workload_identity.as_ref(),
            };
            spec.validate()?;
            // Who may use it, before anything of its credential is read.
            let labels = match &issuer.spec.allowed_namespaces {
                Some(_) => cluster.namespace_labels(namespace).await?,
                None => None,
            };
            let allowed = match (&issuer.spec.allowed_namespaces, &labels) {
                (Some(selector), Some(labels)) => selector::matches(selector, labels),
                _ => false,
            };
            if !allowed {
                return Err(Error::IssuerNotAllowed {
                    issuer: reference.name.clone(),
                    namespace: namespace.to_string(),
                });
            }
            let home =
                cluster_resource_namespace.ok_or_else(|| Error::NoClusterResourceNamespace {
                    issuer: reference.name.clone(),
                })?;
            credential_of(cluster, &spec, home).await
        }
    }
}

/// Reads the issuer's credential from `home` (its namespace, or the cluster resource
/// namespace for a `ClusterSasIssuer`).
async fn credential_of<C: Cluster>(
    cluster: &C,
    spec: &IssuerSpec<'_>,
    home: &str,
) -> Result<Resolved, Error> {
    let Some(account_key) = spec.account_key else {
        return Err(identity::IdentityError::NotAvailable.into());
    };
    let secret_ref = &account_key.secret_ref;
    let key_name = secret_ref.key.as_deref().unwrap_or(DEFAULT_KEY_NAME);
    let found = cluster
        .key_secret(home, &secret_ref.name)
        .await?
        .ok_or_else(|| Error::IssuerKeySecretNotFound {
            name: secret_ref.name.clone(),
            namespace: home.to_string(),
        })?;
    let key = crate::credentials::signing_key(&found, home, &secret_ref.name, key_name)?;
    Ok(Resolved {
        account: StorageAccount {
            name: spec.account.name.clone(),
            key_secret_ref: KeySecretRef {
                name: secret_ref.name.clone(),
                key: Some(key_name.to_string()),
            },
            endpoints: spec.account.endpoints.clone(),
        },
        key,
    })
}
