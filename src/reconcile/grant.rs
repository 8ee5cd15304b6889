//! Pure: turns a `SasGrant` spec into what the signer and the Secret writer need.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::validate::{self, Lifetimes};
use crate::crd::{DEFAULT_KEY_NAME, GrantProtocol, GrantResource, IssuerRef, SasGrantSpec};
use crate::error::Error;
use crate::sas::{self, Protocol, Resource, SasParams, Service, TableKeyRange};

/// A grant's spec, resolved: defaults applied, durations parsed, one resource chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantPlan {
    pub resource: Resource,
    /// `account`, `container`, `blob`, ... (for status and printer columns).
    pub resource_kind: &'static str,
    pub validity: Duration,
    pub renew_before: Duration,
    /// Where the signing key comes from.
    pub credential: CredentialSource,
    pub target_secret: String,
}

/// Where a grant's signing key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// The inline `storageAccount`: a key Secret in the grant's own namespace.
    Inline {
        key_secret: String,
        key_name: String,
    },
    /// A `SasIssuer` or `ClusterSasIssuer`.
    Issuer(IssuerRef),
}

impl GrantPlan {
    /// Validates every field first (see [`validate`]): nothing the schema would refuse reaches
    /// an API call or the signer, even in a grant stored before the schema tightened.
    pub fn from_spec(grant_name: &str, spec: &SasGrantSpec) -> Result<Self, Error> {
        let target_secret = spec
            .target
            .as_ref()
            .and_then(|target| target.secret_name.clone())
            .unwrap_or_else(|| grant_name.to_string());
        let Lifetimes {
            validity,
            renew_before,
        } = validate::spec(spec, &target_secret)?;
        let (resource, resource_kind) = resource_of(&spec.resource)?;
        let credential = match (&spec.storage_account, &spec.issuer_ref) {
            (_, Some(issuer)) => CredentialSource::Issuer(issuer.clone()),
            (Some(account), None) => CredentialSource::Inline {
                key_secret: account.key_secret_ref.name.clone(),
                key_name: account
                    .key_secret_ref
                    .key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_KEY_NAME.into()),
            },
            (None, None) => unreachable!("validate::spec requires one of the two"),
        };
        Ok(GrantPlan {
            resource,
            resource_kind,
            validity,
            renew_before,
            credential,
            target_secret,
        })
    }

    /// The signer's input for a token valid from `now - backdate` to `now + validity`. `spec`
    /// is the effective spec: with an issuer, its `storageAccount` is the issuer's.
    pub fn sas_params(
        &self,
        spec: &SasGrantSpec,
        now: Timestamp,
        backdate: Duration,
    ) -> Result<SasParams, Error> {
        let start = now
            .checked_sub(signed(backdate)?)
            .map_err(|_| Error::InvalidGrant("start time out of range".into()))?;
        let expiry = now
            .checked_add(signed(self.validity)?)
            .map_err(|_| Error::InvalidGrant("expiry out of range".into()))?;
        let account = spec
            .storage_account
            .as_ref()
            .ok_or_else(|| Error::InvalidGrant("no storage account resolved".into()))?;
        Ok(SasParams {
            account_name: account.name.clone(),
            resource: self.resource.clone(),
            permissions: Some(spec.permissions.clone()),
            start: Some(start),
            expiry: Some(expiry),
            ip: spec.ip.clone().filter(|ip| !ip.is_empty()),
            protocol: Some(match spec.protocol {
                Some(GrantProtocol::HttpsAndHttp) => Protocol::HttpsAndHttp,
                _ => Protocol::Https,
            }),
            version: spec.version.clone().filter(|v| !v.is_empty()),
            policy_id: spec
                .stored_access_policy
                .clone()
                .filter(|si| !si.is_empty()),
            encryption_scope: spec.encryption_scope.clone().filter(|s| !s.is_empty()),
            response_headers: Default::default(),
            delegation: Default::default(),
        })
    }

    /// The services the token is for, in Azure's canonical order `b q t f`.
    pub fn services(&self) -> Vec<Service> {
        match &self.resource {
            Resource::Account { services, .. } => [
                ('b', Service::Blob),
                ('q', Service::Queue),
                ('t', Service::Table),
                ('f', Service::File),
            ]
            .into_iter()
            .filter(|(letter, _)| services.contains(*letter))
            .map(|(_, service)| service)
            .collect(),
            other => other.service().into_iter().collect(),
        }
    }
}

/// The endpoint of `service` for the grant's account: the spec's override or Azure's default.
/// `spec` is the effective spec (with an issuer, its `storageAccount` is the issuer's).
pub fn endpoint(spec: &SasGrantSpec, service: Service) -> String {
    let account = spec.storage_account.as_ref();
    let name = account.map(|a| a.name.as_str()).unwrap_or_default();
    let overrides = account.and_then(|a| a.endpoints.as_ref());
    let configured = overrides.and_then(|e| match service {
        Service::Blob => e.blob.clone(),
        Service::Queue => e.queue.clone(),
        Service::Table => e.table.clone(),
        Service::File => e.file.clone(),
    });
    match configured {
        Some(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
        _ => sas::default_endpoint(name, service),
    }
}

fn resource_of(resource: &GrantResource) -> Result<(Resource, &'static str), Error> {
    let mut chosen = Vec::new();
    if let Some(account) = &resource.account {
        chosen.push((
            Resource::Account {
                services: account.services.clone(),
                resource_types: account.resource_types.clone(),
            },
            "account",
        ));
    }
    if let Some(container) = &resource.container {
        chosen.push((
            Resource::Container {
                container: container.name.clone(),
            },
            "container",
        ));
    }
    if let Some(blob) = &resource.blob {
        chosen.push((
            Resource::Blob {
                container: blob.container.clone(),
                blob: blob.name.clone(),
                snapshot: blob.snapshot.clone(),
                version_id: blob.version_id.clone(),
            },
            "blob",
        ));
    }
    if let Some(directory) = &resource.directory {
        chosen.push((
            Resource::Directory {
                container: directory.container.clone(),
                path: directory.path.clone(),
            },
            "directory",
        ));
    }
    if let Some(share) = &resource.share {
        chosen.push((
            Resource::Share {
                share: share.name.clone(),
            },
            "share",
        ));
    }
    if let Some(file) = &resource.file {
        chosen.push((
            Resource::File {
                share: file.share.clone(),
                path: file.path.clone(),
            },
            "file",
        ));
    }
    if let Some(queue) = &resource.queue {
        chosen.push((
            Resource::Queue {
                queue: queue.name.clone(),
            },
            "queue",
        ));
    }
    if let Some(table) = &resource.table {
        let key_range = TableKeyRange {
            start_pk: table.start_pk.clone(),
            start_rk: table.start_rk.clone(),
            end_pk: table.end_pk.clone(),
            end_rk: table.end_rk.clone(),
        };
        chosen.push((
            Resource::Table {
                table: table.name.clone(),
                key_range,
            },
            "table",
        ));
    }
    match chosen.len() {
        1 => Ok(chosen.remove(0)),
        n => Err(Error::InvalidGrant(format!(
            "exactly one of account, container, blob, directory, share, file, queue, table must be set ({n} are)"
        ))),
    }
}

fn signed(duration: Duration) -> Result<SignedDuration, Error> {
    SignedDuration::try_from(duration)
        .map_err(|_| Error::InvalidGrant("duration out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccountResource, KeySecretRef, NamedResource, StorageAccount};

    fn spec(resource: GrantResource) -> SasGrantSpec {
        SasGrantSpec {
            storage_account: Some(StorageAccount {
                name: "acct".into(),
                key_secret_ref: KeySecretRef {
                    name: "keys".into(),
                    key: None,
                },
                endpoints: None,
            }),
            issuer_ref: None,
            resource,
            permissions: "rl".into(),
            validity: None,
            renew_before: None,
            protocol: None,
            ip: None,
            version: None,
            stored_access_policy: None,
            encryption_scope: None,
            target: None,
        }
    }

    fn container(name: &str) -> GrantResource {
        GrantResource {
            container: Some(Box::new(NamedResource { name: name.into() })),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_8h_validity_a_third_to_renew_key1_and_the_grant_name() {
        let plan = GrantPlan::from_spec("app", &spec(container("data"))).unwrap();
        assert_eq!(plan.validity, Duration::from_secs(8 * 3600));
        assert_eq!(plan.renew_before, Duration::from_secs(8 * 3600 / 3));
        assert_eq!(
            plan.credential,
            CredentialSource::Inline {
                key_secret: "keys".into(),
                key_name: "key1".into()
            }
        );
        assert_eq!(plan.target_secret, "app");
        assert_eq!(plan.resource_kind, "container");
    }

    #[test]
    fn a_grant_names_exactly_one_of_issuer_ref_and_storage_account() {
        let mut both = spec(container("data"));
        both.issuer_ref = Some(IssuerRef {
            kind: crate::crd::IssuerKind::ClusterSasIssuer,
            name: "platform".into(),
        });
        let err = GrantPlan::from_spec("app", &both).unwrap_err();
        assert_eq!(err.category(), "InvalidCredentialChoice");
        let mut neither = spec(container("data"));
        neither.storage_account = None;
        let err = GrantPlan::from_spec("app", &neither).unwrap_err();
        assert_eq!(err.category(), "InvalidCredentialChoice");
        let mut issuer_only = both;
        issuer_only.storage_account = None;
        let plan = GrantPlan::from_spec("app", &issuer_only).unwrap();
        assert!(matches!(plan.credential, CredentialSource::Issuer(_)));
    }

    #[test]
    fn an_issuer_ref_name_is_a_dns_subdomain() {
        let mut grant = spec(container("data"));
        grant.storage_account = None;
        grant.issuer_ref = Some(IssuerRef {
            kind: crate::crd::IssuerKind::SasIssuer,
            name: "../other".into(),
        });
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidName");
    }

    #[test]
    fn two_resource_kinds_are_rejected() {
        let mut resource = container("data");
        resource.queue = Some(Box::new(NamedResource {
            name: "jobs".into(),
        }));
        let err = GrantPlan::from_spec("app", &spec(resource)).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn renew_before_not_shorter_than_validity_is_rejected() {
        let mut grant = spec(container("data"));
        grant.validity = Some("1h".into());
        grant.renew_before = Some("1h".into());
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "RenewalMarginTooShort");
    }

    #[test]
    fn validity_outside_two_minutes_to_a_year_is_rejected() {
        let mut grant = spec(container("data"));
        grant.validity = Some("119s".into());
        assert!(GrantPlan::from_spec("app", &grant).is_err());
        grant.validity = Some("8761h".into());
        assert!(GrantPlan::from_spec("app", &grant).is_err());
    }

    #[test]
    fn token_starts_backdated_and_expires_validity_after_now() {
        let grant = spec(container("data"));
        let plan = GrantPlan::from_spec("app", &grant).unwrap();
        let now: Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
        let params = plan
            .sas_params(&grant, now, Duration::from_secs(900))
            .unwrap();
        assert_eq!(params.start, Some("2030-01-01T11:45:00Z".parse().unwrap()));
        assert_eq!(params.expiry, Some("2030-01-01T20:00:00Z".parse().unwrap()));
        assert_eq!(params.protocol, Some(Protocol::Https));
    }

    #[test]
    fn account_services_come_in_canonical_order() {
        let resource = GrantResource {
            account: Some(Box::new(AccountResource {
                services: "tqb".into(),
                resource_types: "sco".into(),
            })),
            ..Default::default()
        };
        let plan = GrantPlan::from_spec("app", &spec(resource)).unwrap();
        assert_eq!(
            plan.services(),
            vec![Service::Blob, Service::Queue, Service::Table]
        );
    }

    #[test]
    fn endpoint_override_wins_and_loses_its_trailing_slash() {
        let mut grant = spec(container("data"));
        grant.storage_account.as_mut().unwrap().endpoints = Some(crate::crd::Endpoints {
            blob: Some("http://127.0.0.1:10000/acct/".into()),
            ..Default::default()
        });
        assert_eq!(
            endpoint(&grant, Service::Blob),
            "http://127.0.0.1:10000/acct"
        );
    }

    // A grant stored before the schema tightened reaches the controller; these never become
    // an API request or a connection string.

    #[test]
    fn a_key_secret_named_like_a_query_is_refused_before_any_request() {
        let mut grant = spec(container("data"));
        grant.storage_account.as_mut().unwrap().key_secret_ref.name = "?".into();
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidName");
        assert!(
            err.to_string().contains("storageAccount.keySecretRef.name"),
            "{err}"
        );
    }

    #[test]
    fn a_target_secret_named_like_a_watch_is_refused_before_any_request() {
        let mut grant = spec(container("data"));
        grant.target = Some(crate::crd::TargetSecret {
            secret_name: Some("?watch=1&timeoutSeconds=3600&".into()),
        });
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidName");
        assert!(err.to_string().contains("target.secretName"), "{err}");
    }

    #[test]
    fn a_grant_name_that_is_no_secret_name_is_refused_as_the_default_target() {
        let err = GrantPlan::from_spec("App", &spec(container("data"))).unwrap_err();
        assert_eq!(err.category(), "InvalidName");
    }

    #[test]
    fn a_key_name_with_a_slash_is_refused() {
        let mut grant = spec(container("data"));
        grant.storage_account.as_mut().unwrap().key_secret_ref.key = Some("../key1".into());
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidName");
    }

    #[test]
    fn an_overflowing_validity_is_refused_without_a_panic() {
        let mut grant = spec(container("data"));
        grant.validity = Some("99999999999999999999h".into());
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidDuration");
    }

    #[test]
    fn an_attacker_endpoint_is_refused() {
        let mut grant = spec(container("data"));
        grant.storage_account.as_mut().unwrap().endpoints = Some(crate::crd::Endpoints {
            blob: Some("https://attacker.example/x;SharedAccessSignature=evil".into()),
            ..Default::default()
        });
        let err = GrantPlan::from_spec("app", &grant).unwrap_err();
        assert_eq!(err.category(), "InvalidEndpoint");
    }

    #[test]
    fn a_line_break_in_a_blob_name_is_refused() {
        let resource = GrantResource {
            blob: Some(Box::new(crate::crd::BlobResource {
                container: "data".into(),
                name: "a\nb".into(),
                snapshot: None,
                version_id: None,
            })),
            ..Default::default()
        };
        let err = GrantPlan::from_spec("app", &spec(resource)).unwrap_err();
        assert_eq!(err.category(), "ControlCharacter");
    }
}
