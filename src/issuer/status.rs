//! An issuer's status, from what resolving its credential for a grant found: `Ready` when the
//! key Secret was readable and valid or a user delegation key was obtained (with the key's
//! `signedExpiry`, never its value), `Ready=False` with the failure's reason otherwise. Written
//! only when it changes, so 200 grants of one issuer write it once.

use jiff::Timestamp;

use super::Resolved;
use crate::cluster::Cluster;
use crate::crd::{GrantCondition, IssuerKind, IssuerStatus};
use crate::error::Error;
use crate::reconcile::status::CONDITION_READY;
use crate::sas::SigningKey;

pub const REASON_KEY_VALID: &str = "AccountKeyValid";
pub const REASON_DELEGATION_KEY: &str = "UserDelegationKeyObtained";

/// The issuer whose status is reported.
pub struct IssuerTarget<'a> {
    pub kind: IssuerKind,
    /// `None` for a `ClusterSasIssuer`.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub generation: Option<i64>,
    pub current: Option<&'a IssuerStatus>,
}

/// Pure: the status an issuer should show after `result`.
pub fn desired(
    current: Option<&IssuerStatus>,
    generation: Option<i64>,
    result: &Result<Resolved, Error>,
    now: Timestamp,
) -> IssuerStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let (condition_status, reason, message) = match result {
        Ok(resolved) => match &resolved.key {
            SigningKey::Account(_) => (
                "True",
                REASON_KEY_VALID,
                "the account key Secret is readable and holds an account key".to_string(),
            ),
            SigningKey::UserDelegation(key) => {
                status.signed_expiry = Some(key.signed_expiry.clone());
                (
                    "True",
                    REASON_DELEGATION_KEY,
                    format!(
                        "a user delegation key was obtained, valid until {}",
                        key.signed_expiry
                    ),
                )
            }
        },
        Err(err) => (
            "False",
            err.category(),
            crate::error::truncate_message(&err.to_string()).into_owned(),
        ),
    };
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY);
    let last_transition_time = match previous {
        Some(previous) if previous.status == condition_status => {
            previous.last_transition_time.clone()
        }
        _ => now.to_string(),
    };
    status.conditions = vec![GrantCondition {
        type_: CONDITION_READY.into(),
        status: condition_status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }];
    status
}

/// Whether a grant's failure says something about the issuer (its credential) rather than
/// about the grant (a namespace it does not allow, a grant outside its policy) or the API
/// server.
fn concerns_issuer(err: &Error) -> bool {
    !matches!(
        err,
        Error::Kube(_)
            | Error::LeadershipLost
            | Error::ReconcileTimeout { .. }
            | Error::IssuerNotAllowed { .. }
            | Error::DeniedByIssuerPolicy { .. }
            | Error::ClusterIssuersNeedClusterInstall { .. }
            // Derived from the issuer's own fetch, which reports itself.
            | Error::IssuerBackingOff { .. }
    ) && !matches!(
        err,
        Error::WorkloadIdentity(super::identity::IdentityError::Unsupported(_))
    )
}

/// Writes the issuer's status when `result` changes it. A failed write is logged, not fatal
/// (the grant's own outcome matters more), except a lost lease.
pub async fn report<C: Cluster>(
    cluster: &C,
    target: &IssuerTarget<'_>,
    result: &Result<Resolved, Error>,
    now: Timestamp,
) -> Result<(), Error> {
    if let Err(err) = result
        && !concerns_issuer(err)
    {
        return Ok(());
    }
    let desired = desired(target.current, target.generation, result, now);
    if target.current == Some(&desired) {
        return Ok(());
    }
    match cluster
        .apply_issuer_status(target.kind, target.namespace, target.name, &desired)
        .await
    {
        Err(Error::LeadershipLost) => Err(Error::LeadershipLost),
        Err(err) => {
            tracing::warn!(
                kind = target.kind.as_str(),
                issuer = target.name,
                reason = err.category(),
                error = %err,
                "could not write the issuer's status"
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{KeySecretRef, StorageAccount};
    use crate::sas::{AccountKey, UserDelegationKey};

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    fn resolved(key: SigningKey) -> Result<Resolved, Error> {
        Ok(Resolved {
            account: StorageAccount {
                name: "acct".into(),
                key_secret_ref: KeySecretRef {
                    name: String::new(),
                    key: None,
                },
                endpoints: None,
            },
            key,
        })
    }

    #[test]
    fn a_delegation_key_shows_its_expiry_and_never_its_value() {
        let value = AccountKey::from_bytes(vec![9; 64]);
        let key = UserDelegationKey {
            signed_oid: "oid".into(),
            signed_tid: "tid".into(),
            signed_start: "2030-01-01T00:00:00Z".into(),
            signed_expiry: "2030-01-01T16:00:00Z".into(),
            signed_service: "b".into(),
            signed_version: "2025-05-05".into(),
            signed_delegated_user_tid: None,
            value: value.clone(),
        };
        let status = desired(
            None,
            Some(3),
            &resolved(SigningKey::UserDelegation(key)),
            now(),
        );
        assert_eq!(
            status.signed_expiry.as_deref(),
            Some("2030-01-01T16:00:00Z")
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].reason, REASON_DELEGATION_KEY);
        let shown = serde_json::to_string(&status).unwrap();
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        assert!(!shown.contains(&encoded), "{shown}");
    }

    #[test]
    fn an_unchanged_outcome_keeps_the_status_equal_so_nothing_is_written() {
        let ok = resolved(SigningKey::Account(AccountKey::from_bytes(vec![1; 64])));
        let first = desired(None, Some(1), &ok, now());
        let later = now() + jiff::SignedDuration::from_hours(1);
        assert_eq!(desired(Some(&first), Some(1), &ok, later), first);
    }

    #[test]
    fn a_refused_namespace_is_not_the_issuers_failure() {
        assert!(!concerns_issuer(&Error::IssuerNotAllowed {
            issuer: "p".into(),
            namespace: "n".into()
        }));
        assert!(concerns_issuer(&Error::IssuerKeySecretNotFound {
            name: "k".into(),
            namespace: "n".into()
        }));
    }
}
