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

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::crd::{
    AccountKeyCredential, DEFAULT_KEY_NAME, IssuerKind, IssuerPolicy, IssuerStorageAccount,
    KeySecretRef, SasGrantSpec, StorageAccount, WorkloadIdentityCredential,
};
use crate::endpoints::AllowedEndpoints;
use crate::error::{CachedFailure, Error};
use crate::reconcile::grant::CredentialSource;
use crate::reconcile::validate;
use crate::sas::{AccountKey, Resource, SigningKey, UserDelegationKey};

use self::binding::OperatorAccount;
use self::identity::IdentityClient;
use self::identity::IdentityError;
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
    /// the user delegation key's value.
    pub fn secret_key(&self) -> &AccountKey {
        match &self.key {
            SigningKey::Account(key) => key,
            SigningKey::UserDelegation(key) => &key.value,
        }
    }
}

/// A resolved issuer's credential: a key at hand (account keys), or a workload identity
/// issuer's user delegation keys, of which a grant needs a new one only to sign.
pub enum Credential {
    Ready(Box<Resolved>),
    Delegation(Box<DelegationSigner>),
}

/// A workload identity issuer's keys for one grant: the ones cached (the grant's current token
/// may be signed with any of them), and how to get one that a new token fits in.
pub struct DelegationSigner {
    /// The account as the grant's token is signed for.
    pub account: StorageAccount,
    /// The unexpired cached keys, newest first.
    pub cached: Vec<UserDelegationKey>,
    issuer: String,
    label: String,
    fingerprint: String,
    backdate: Duration,
    obtain: keys::Obtain,
}

impl DelegationSigner {
    /// `resolved` with `key`, one of [`Self::cached`].
    pub fn with_key(&self, key: UserDelegationKey) -> Resolved {
        Resolved {
            account: self.account.clone(),
            key: SigningKey::UserDelegation(key),
        }
    }

    /// A key valid for a token signed `now` for `validity`: a cached one, or a new one from
    /// the issuer's fetch (`IssuerBackingOff` while it runs past its grace or fails).
    pub async fn signing_key(
        self,
        keys: &DelegationKeys,
        now: Timestamp,
        validity: Duration,
        clock: &crate::reconcile::Clock,
    ) -> Result<Resolved, Error> {
        let key = keys
            .signing_key(
                &self.issuer,
                &self.label,
                &self.fingerprint,
                now,
                validity,
                self.backdate,
                clock,
                self.obtain,
            )
            .await?;
        Ok(Resolved {
            account: self.account,
            key: SigningKey::UserDelegation(key),
        })
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
    /// The clock a fetch reads when it ends (its backoff counts from then).
    pub clock: &'a crate::reconcile::Clock,
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
    generation: Option<i64>,
    status: Option<&'a crate::crd::IssuerStatus>,
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
    cluster: &Arc<C>,
    namespace: &str,
    source: &CredentialSource,
    env: &IssuerEnv<'_>,
) -> Result<Credential, Error> {
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
            return Ok(Credential::Ready(Box::new(Resolved {
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
            })));
        }
        CredentialSource::Issuer(reference) => reference,
    };
    let not_found = || Error::IssuerNotFound {
        kind: reference.kind.as_str(),
        name: reference.name.clone(),
    };
    match reference.kind {
        IssuerKind::SasIssuer => {
            let id = format!("SasIssuer/{namespace}/{}", reference.name);
            let Some(issuer) = cluster.sas_issuer(namespace, &reference.name).await? else {
                // Its keys go with it.
                env.keys.forget(&id);
                return Err(not_found());
            };
            let spec = IssuerSpec {
                kind: IssuerKind::SasIssuer,
                name: &reference.name,
                account: &issuer.spec.storage_account,
                account_key: issuer.spec.account_key.as_ref(),
                workload_identity: issuer.spec.workload_identity.as_ref(),
                policy: issuer.spec.policy.as_ref(),
                generation: issuer.metadata.generation,
                status: issuer.status.as_ref(),
            };
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
            report_resolution(cluster.as_ref(), &target, result, env.now).await
        }
        IssuerKind::ClusterSasIssuer => {
            let id = format!("ClusterSasIssuer/{}", reference.name);
            let issuer = match cluster.cluster_sas_issuer(&reference.name).await {
                // The namespaced install has no access to cluster-scoped objects.
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 403 => {
                    return Err(Error::ClusterIssuersNeedClusterInstall {
                        issuer: reference.name.clone(),
                    });
                }
                Ok(None) => {
                    env.keys.forget(&id);
                    return Err(not_found());
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
                generation: issuer.metadata.generation,
                status: issuer.status.as_ref(),
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
                status::report(cluster.as_ref(), &target, &result, env.now).await?;
                return result.map(|resolved| Credential::Ready(Box::new(resolved)));
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
                status::report(cluster.as_ref(), &target, &result, env.now).await?;
                return result.map(|resolved| Credential::Ready(Box::new(resolved)));
            }
            let home = env.cluster_resource_namespace.ok_or_else(|| {
                Error::NoClusterResourceNamespace {
                    issuer: reference.name.clone(),
                }
            })?;
            let result = credential_of(cluster, &spec, home, &id, env).await;
            report_resolution(cluster.as_ref(), &target, result, env.now).await
        }
    }
}

/// Reports a resolution in the issuer's status, except a workload identity issuer's keys:
/// its fetch reports those when it ends.
async fn report_resolution<C: Cluster>(
    cluster: &C,
    target: &status::IssuerTarget<'_>,
    result: Result<Credential, Error>,
    now: Timestamp,
) -> Result<Credential, Error> {
    let result = match result {
        Ok(Credential::Ready(resolved)) => Ok(*resolved),
        Ok(delegation @ Credential::Delegation(_)) => return Ok(delegation),
        Err(err) => Err(err),
    };
    status::report(cluster, target, &result, now).await?;
    result.map(|resolved| Credential::Ready(Box::new(resolved)))
}

/// Reads the issuer's credential from `home` (its namespace, or the cluster resource
/// namespace for a `ClusterSasIssuer`).
async fn credential_of<C: Cluster>(
    cluster: &Arc<C>,
    spec: &IssuerSpec<'_>,
    home: &str,
    id: &str,
    env: &IssuerEnv<'_>,
) -> Result<Credential, Error> {
    if let Some(identity) = spec.workload_identity {
        return workload_identity(cluster, spec, identity, home, id, env)
            .map(|signer| Credential::Delegation(Box::new(signer)));
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
    Ok(Credential::Ready(Box::new(Resolved {
        account: StorageAccount {
            name: spec.account.name.clone(),
            key_secret_ref: KeySecretRef {
                name: secret_ref.name.clone(),
                key: Some(key_name.to_string()),
            },
            endpoints: spec.account.endpoints.clone(),
        },
        key: SigningKey::Account(key),
    })))
}

/// The issuer's user delegation keys for its blob service: those cached, and the fetch
/// (ServiceAccount token -> Entra -> Get User Delegation Key) that obtains a new one when a
/// grant must sign and none fits. Nothing is requested here.
fn workload_identity<C: Cluster>(
    cluster: &Arc<C>,
    spec: &IssuerSpec<'_>,
    identity: &WorkloadIdentityCredential,
    home: &str,
    id: &str,
    env: &IssuerEnv<'_>,
) -> Result<DelegationSigner, Error> {
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
    // Anything that would make another key makes another cache entry.
    let fingerprint = format!(
        "{}/{}/{}/{home}/{blob_endpoint}/b",
        identity.tenant_id, identity.client_id, identity.service_account_name
    );
    let fetch = Fetch {
        cluster: cluster.clone(),
        client: client.clone(),
        home: home.to_string(),
        identity: identity.clone(),
        blob_endpoint,
        operator: env.operator.clone(),
        account: account.clone(),
        issuer: OwnedIssuerTarget {
            kind: spec.kind,
            namespace: (spec.kind == IssuerKind::SasIssuer).then(|| home.to_string()),
            name: spec.name.to_string(),
            generation: spec.generation,
            current: spec.status.cloned(),
        },
        clock: env.clock.clone(),
    };
    Ok(DelegationSigner {
        cached: env.keys.cached(id, &fingerprint, env.now),
        account,
        issuer: id.to_string(),
        label: spec.owner().trim_end_matches(": ").to_string(),
        fingerprint,
        backdate: env.backdate,
        obtain: Box::new(move |start, expiry| Box::pin(fetch.run(start, expiry))),
    })
}

/// An issuer as its status is written after a fetch, owned: the fetch outlives the reconcile.
struct OwnedIssuerTarget {
    kind: IssuerKind,
    namespace: Option<String>,
    name: String,
    generation: Option<i64>,
    current: Option<crate::crd::IssuerStatus>,
}

/// One fetch of a user delegation key, with everything it needs owned.
struct Fetch<C> {
    cluster: Arc<C>,
    client: IdentityClient,
    home: String,
    identity: WorkloadIdentityCredential,
    blob_endpoint: String,
    operator: OperatorAccount,
    account: StorageAccount,
    issuer: OwnedIssuerTarget,
    clock: crate::reconcile::Clock,
}

impl<C: Cluster> Fetch<C> {
    /// Obtains the key, then shows the outcome in the issuer's status (once per fetch).
    async fn run(self, start: Timestamp, expiry: Timestamp) -> Result<UserDelegationKey, Error> {
        let result = self.obtain(start, expiry).await;
        let target = status::IssuerTarget {
            kind: self.issuer.kind,
            namespace: self.issuer.namespace.as_deref(),
            name: &self.issuer.name,
            generation: self.issuer.generation,
            current: self.issuer.current.as_ref(),
        };
        let shown = match &result {
            Ok(key) => Ok(Resolved {
                account: self.account.clone(),
                key: SigningKey::UserDelegation(key.clone()),
            }),
            Err(err) => Err(Error::IssuerFetchFailed(CachedFailure::of(err))),
        };
        let _ = status::report(self.cluster.as_ref(), &target, &shown, (self.clock)()).await;
        result
    }

    async fn obtain(
        &self,
        start: Timestamp,
        expiry: Timestamp,
    ) -> Result<UserDelegationKey, Error> {
        let (home, name) = (
            self.home.as_str(),
            self.identity.service_account_name.as_str(),
        );
        let assertion = self
            .cluster
            .service_account_token(
                home,
                name,
                identity::TOKEN_EXCHANGE_AUDIENCE,
                identity::SERVICE_ACCOUNT_TOKEN_SECONDS,
            )
            .await
            .map_err(|err| binding::token_request_failed(err, home, name, &self.operator))?;
        let access_token = self
            .client
            .exchange(
                &self.identity.tenant_id,
                &self.identity.client_id,
                &assertion,
            )
            .await?;
        tracing::info!(
            issuer = %self.issuer.name,
            kind = self.issuer.kind.as_str(),
            expires_at = %expiry,
            "obtaining a user delegation key"
        );
        Ok(self
            .client
            .user_delegation_key(&self.blob_endpoint, &access_token, start, expiry)
            .await?)
    }
}
