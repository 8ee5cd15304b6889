//! Issuers: where a grant's signing key comes from.
//!
//! A grant names either an inline `storageAccount` (the short form of an account-key issuer in
//! its own namespace) or an `issuerRef`. A `SasIssuer` is looked up in the grant's namespace
//! only, so a namespace cannot borrow another namespace's credentials; a `ClusterSasIssuer`
//! keeps its credential in the operator's cluster resource namespace and serves only the
//! namespaces its `allowedNamespaces` selector matches. Then the issuer's `policy` decides what
//! it signs (required on a `ClusterSasIssuer`). Both checks come before anything of the
//! credential is read.

pub mod binding;
pub mod glob;
pub mod identity;
pub mod keys;
pub mod policy;
pub mod selector;
pub mod status;

use std::time::Duration;

use jiff::Timestamp;

use crate::cluster::Cluster;
use crate::crd::{
    AccountKeyCredential, DEFAULT_KEY_NAME, IssuerKind, IssuerPolicy, IssuerStorageAccount,
    KeySecretRef, SasGrantSpec, StorageAccount, WorkloadIdentityCredential,
};
use crate::endpoints::AllowedEndpoints;
use crate::error::Error;
use crate::reconcile::grant::CredentialSource;
use crate::reconcile::validate;
use crate::sas::{AccountKey, Resource, SigningKey};

use self::binding::OperatorAccount;
use self::identity::{IdentityClient, IdentityError};
use self::keys::DelegationKeys;

/// What a grant signs with, once its issuer is resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The account as an inline `storageAccount` would name it (name, endpoints, and the key
    /// reference): what the grant's token is signed for and its inputs hash covers.
    pub account: StorageAccount,
    pub key: SigningKey,
}

impl Resolved {
    /// The secret the grant's Secret MAC and inputs hash are keyed with: the account key, or
    /// the user delegation key's value (a renewed key re-signs).
    pub fn secret_key(&self) -> &AccountKey {
        match &self.key {
            SigningKey::Account(key) => key,
            SigningKey::UserDelegation(key) => &key.value,
        }
    }
}

/// What resolving a grant's issuer needs besides the cluster.
pub struct IssuerEnv<'a> {
    /// Where `ClusterSasIssuer` credentials live.
    pub cluster_resource_namespace: Option<&'a str>,
    /// The Entra and storage client (workload identity); `None` when it could not be built.
    pub identity: Option<&'a IdentityClient>,
    pub keys: &'a DelegationKeys,
    pub now: Timestamp,
    /// The grant's token validity: a key must outlive the token.
    pub validity: Duration,
    /// The grant's resource (a user delegation SAS serves blob resources only).
    pub resource: &'a Resource,
    pub backdate: Duration,
    /// The grant's spec: what the issuer's policy is checked against.
    pub grant: &'a SasGrantSpec,
    /// The storage endpoints the operator may use.
    pub endpoints: &'a AllowedEndpoints,
    /// The operator's own ServiceAccount, for the commands that bind an issuer's to it.
    pub operator: &'a OperatorAccount,
}

/// An issuer's spec, whichever its kind.
struct IssuerSpec<'a> {
    kind: IssuerKind,
    name: &'a str,
    account: &'a IssuerStorageAccount,
    account_key: Option<&'a AccountKeyCredential>,
    workload_identity: Option<&'a WorkloadIdentityCredential>,
    policy: Option<&'a IssuerPolicy>,
}

impl IssuerSpec<'_> {
    fn validate(&self) -> Result<(), Error> {
        validate::issuer(self.account, self.account_key, self.workload_identity)
            .and_then(|()| self.policy.map_or(Ok(()), policy::check))
            .map_err(|reason| Error::InvalidIssuer {
                kind: self.kind.as_str(),
                name: self.name.to_string(),
                reason,
            })
    }

    /// Whether the issuer's policy allows the grant of `namespace`. A `SasIssuer` without a
    /// policy allows everything its credential allows (its namespace's own key or identity);
    /// a `ClusterSasIssuer` without one signs nothing.
    fn admit(&self, namespace: &str, env: &IssuerEnv<'_>) -> Result<(), Error> {
        let Some(policy) = self.policy else {
            return match self.kind {
                IssuerKind::SasIssuer => Ok(()),
                IssuerKind::ClusterSasIssuer => Err(Error::IssuerPolicyRequired {
                    issuer: self.name.to_string(),
                }),
            };
        };
        let request = policy::Request {
            namespace,
            resource: env.resource,
            permissions: &env.grant.permissions,
            validity: env.validity,
            validity_text: env.grant.validity.as_deref(),
            protocol: env.grant.protocol,
        };
        policy::evaluate(policy, &request).map_err(|denial| Error::DeniedByIssuerPolicy {
            kind: self.kind.as_str(),
            issuer: self.name.to_string(),
            denial: Box::new(denial),
        })
    }

    /// Its endpoints against the operator's rule, before anything of its credential is read.
    fn check_endpoints(&self, allowed: &AllowedEndpoints) -> Result<(), Error> {
        allowed
            .check_account(
                &self.owner(),
                &self.account.name,
                self.account.endpoints.as_ref(),
            )
            .map_err(Error::from)
    }

    /// `SasIssuer "name": `, the prefix of its fields in messages.
    fn owner(&self) -> String {
        format!("{} {:?}: ", self.kind.as_str(), self.name)
    }
}

/// Resolves the signing key of a grant in `namespace`. `cluster_resource_namespace` is where
/// `ClusterSasIssuer` credentials live.
pub async fn resolve<C: Cluster>(
    cluster: &C,
    namespace: &str,
    source: &CredentialSource,
    env: &IssuerEnv<'_>,
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
                key: SigningKey::Account(key),
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
                policy: issuer.spec.policy.as_ref(),
            };
            let id = format!("SasIssuer/{namespace}/{}", reference.name);
            let result = match spec
                .validate()
                .and_then(|()| spec.check_endpoints(env.endpoints))
                .and_then(|()| spec.admit(namespace, env))
            {
                Ok(()) => credential_of(cluster, &spec, namespace, &id, env).await,
                Err(err) => Err(err),
            };
            let target = status::IssuerTarget {
                kind: IssuerKind::SasIssuer,
                namespace: Some(namespace),
                name: &reference.name,
                generation: issuer.metadata.generation,
                current: issuer.status.as_ref(),
            };
            status::report(cluster, &target, &result, env.now).await?;
            result
        }
        IssuerKind::ClusterSasIssuer => {
            let issuer = match cluster.cluster_sas_issuer(&reference.name).await {
                // The namespaced install has no access to cluster-scoped objects.
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 403 => {
                    return Err(Error::ClusterIssuersNeedClusterInstall {
                        issuer: reference.name.clone(),
                    });
                }
                found => found?.ok_or_else(not_found)?,
            };
            let spec = IssuerSpec {
                kind: IssuerKind::ClusterSasIssuer,
                name: &reference.name,
                account: &issuer.spec.storage_account,
                account_key: issuer.spec.account_key.as_ref(),
                workload_identity: issuer.spec.workload_identity.as_ref(),
                policy: issuer.spec.policy.as_ref(),
            };
            let target = status::IssuerTarget {
                kind: IssuerKind::ClusterSasIssuer,
                namespace: None,
                name: &reference.name,
                generation: issuer.metadata.generation,
                current: issuer.status.as_ref(),
            };
            if let Err(err) = spec
                .validate()
                .and_then(|()| spec.check_endpoints(env.endpoints))
            {
                let result = Err(err);
                status::report(cluster, &target, &result, env.now).await?;
                return result;
            }
            // Who may use it, before anything of its credential is read.
            let allowed = match &issuer.spec.allowed_namespaces {
                Some(selector) => {
                    let labels = if selector::needs_labels(selector, namespace) {
                        cluster.namespace_labels(namespace).await?
                    } else {
                        Some(Default::default())
                    };
                    labels.is_some_and(|labels| selector::matches(selector, namespace, &labels))
                }
                None => false,
            };
            if !allowed {
                return Err(Error::IssuerNotAllowed {
                    issuer: reference.name.clone(),
                    namespace: namespace.to_string(),
                });
            }
            // What it signs, before anything of its credential is read.
            if let Err(err) = spec.admit(namespace, env) {
                let result = Err(err);
                status::report(cluster, &target, &result, env.now).await?;
                return result;
            }
            let home = env.cluster_resource_namespace.ok_or_else(|| {
                Error::NoClusterResourceNamespace {
                    issuer: reference.name.clone(),
                }
            })?;
            let id = format!("ClusterSasIssuer/{}", reference.name);
            let result = credential_of(cluster, &spec, home, &id, env).await;
            status::report(cluster, &target, &result, env.now).await?;
            result
        }
    }
}

/// Reads the issuer's credential from `home` (its namespace, or the cluster resource
/// namespace for a `ClusterSasIssuer`).
async fn credential_of<C: Cluster>(
    cluster: &C,
    spec: &IssuerSpec<'_>,
    home: &str,
    id: &str,
    env: &IssuerEnv<'_>,
) -> Result<Resolved, Error> {
    if let Some(identity) = spec.workload_identity {
        return workload_identity(cluster, spec, identity, home, id, env).await;
    }
    let Some(account_key) = spec.account_key else {
        unreachable!("a validated issuer has exactly one credential");
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
        key: SigningKey::Account(key),
    })
}

/// A user delegation key for the issuer's blob service: cached, or obtained through the
/// ServiceAccount token -> Entra -> Get User Delegation Key chain.
async fn workload_identity<C: Cluster>(
    cluster: &C,
    spec: &IssuerSpec<'_>,
    identity: &WorkloadIdentityCredential,
    home: &str,
    id: &str,
    env: &IssuerEnv<'_>,
) -> Result<Resolved, Error> {
    // What a user delegation SAS cannot do is refused before any request.
    let blob = matches!(
        env.resource,
        Resource::Container { .. } | Resource::Blob { .. } | Resource::Directory { .. }
    );
    if !blob {
        return Err(IdentityError::Unsupported(
            "a workload identity issuer signs user delegation SAS for blob resources (container, blob, directory) only; account and table SAS need an account key".into(),
        )
        .into());
    }
    let client = env.identity.ok_or_else(|| {
        IdentityError::NotConfigured("the Entra client could not be built at start".into())
    })?;
    let account = StorageAccount {
        name: spec.account.name.clone(),
        // A user delegation SAS names no key Secret; the reference stays empty.
        key_secret_ref: KeySecretRef {
            name: String::new(),
            key: None,
        },
        endpoints: spec.account.endpoints.clone(),
    };
    let blob_endpoint = crate::reconcile::grant::endpoint(
        &crate::crd::SasGrantSpec {
            storage_account: Some(account.clone()),
            issuer_ref: None,
            resource: Default::default(),
            permissions: String::new(),
            validity: None,
            renew_before: None,
            protocol: None,
            ip: None,
            version: None,
            stored_access_policy: None,
            encryption_scope: None,
            target: None,
        },
        crate::sas::Service::Blob,
    );
    // The one endpoint that receives a bearer token, checked right before the chain that
    // sends it one (whatever checked the issuer before): a refused endpoint costs no
    // TokenRequest, no Entra call and no connection.
    let field = match account.endpoints.as_ref().and_then(|e| e.blob.as_deref()) {
        Some(url) if !url.is_empty() => format!("{}storageAccount.endpoints.blob", spec.owner()),
        _ => format!(
            "{}storageAccount.endpoints.blob (unset: the public cloud's default)",
            spec.owner()
        ),
    };
    env.endpoints
        .check_field(&field, &blob_endpoint, &account.name, "blob")?;
    // The cache entry changes with anything that would make another key.
    let id = format!(
        "{id}/{}/{}/{}/{home}/{blob_endpoint}/b",
        identity.tenant_id, identity.client_id, identity.service_account_name
    );
    let key = env
        .keys
        .get(
            &id,
            env.now,
            env.validity,
            env.backdate,
            |start, expiry| async move {
                let assertion = cluster
                    .service_account_token(
                        home,
                        &identity.service_account_name,
                        identity::TOKEN_EXCHANGE_AUDIENCE,
                        identity::SERVICE_ACCOUNT_TOKEN_SECONDS,
                    )
                    .await
                    .map_err(|err| {
                        binding::token_request_failed(
                            err,
                            home,
                            &identity.service_account_name,
                            env.operator,
                        )
                    })?;
                let access_token = client
                    .exchange(&identity.tenant_id, &identity.client_id, &assertion)
                    .await?;
                tracing::info!(
                    issuer = %spec.name,
                    kind = spec.kind.as_str(),
                    expires_at = %expiry,
                    "obtaining a user delegation key"
                );
                Ok(client
                    .user_delegation_key(&blob_endpoint, &access_token, start, expiry)
                    .await?)
            },
        )
        .await?;
    Ok(Resolved {
        account,
        key: SigningKey::UserDelegation(key),
    })
}
