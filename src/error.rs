//! Errors of the controller. Every variant has a static category that becomes the `Ready`
//! condition's reason, the Event reason and the metrics label; messages name the object and
//! field at fault and never contain key material or a token.

use crate::sas::SasError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key Secret {name:?} not found in the grant's namespace")]
    KeySecretNotFound { name: String },

    #[error(
        "key Secret {name:?} is not labelled sas-operator.io/signing-key=true; to let grants \
         sign with it, run: kubectl label secret {name} sas-operator.io/signing-key=true -n {namespace}"
    )]
    KeySecretNotLabelled { name: String, namespace: String },

    #[error("key Secret {secret:?} has no data key {key:?}")]
    KeyNotFound { secret: String, key: String },

    #[error("data key {key:?} of Secret {secret:?} is not a base64 account key")]
    KeyNotBase64 { secret: String, key: String },

    #[error(
        "data key {key:?} of Secret {secret:?} is not an Azure storage account key (base64 of \
         exactly 64 bytes)"
    )]
    KeyNotAccountKey { secret: String, key: String },

    #[error(
        "data key {key:?} of Secret {secret:?} is not among its first {limit} entries (in name \
         order), the only ones read of a key Secret; keep the account key in a Secret with at \
         most {limit} entries"
    )]
    KeySecretTooManyEntries {
        secret: String,
        key: String,
        limit: usize,
    },

    #[error("invalid grant: {0}")]
    InvalidGrant(String),

    #[error("{kind} {name:?} not found{}", if *.kind == "SasIssuer" { " in the grant's namespace" } else { "" })]
    IssuerNotFound { kind: &'static str, name: String },

    #[error(
        "ClusterSasIssuer {issuer:?} does not allow grants from namespace {namespace:?} (its \
         allowedNamespaces selector does not match the namespace's labels)"
    )]
    IssuerNotAllowed { issuer: String, namespace: String },

    #[error("{kind} {name:?} is invalid: {reason}")]
    InvalidIssuer {
        kind: &'static str,
        name: String,
        reason: crate::reconcile::validate::SpecError,
    },

    #[error("key Secret {name:?} not found in namespace {namespace:?}")]
    IssuerKeySecretNotFound { name: String, namespace: String },

    #[error(
        "ClusterSasIssuer {issuer:?} cannot be used: the operator has no cluster resource \
         namespace (set --cluster-resource-namespace or POD_NAMESPACE)"
    )]
    NoClusterResourceNamespace { issuer: String },

    #[error("{denial} ({kind} {issuer:?})")]
    DeniedByIssuerPolicy {
        kind: &'static str,
        issuer: String,
        // Boxed: the largest variant sets the size of every `Result<_, Error>`.
        denial: Box<crate::issuer::policy::Denial>,
    },

    #[error(
        "ClusterSasIssuer {issuer:?} has no spec.policy, so it signs nothing: a ClusterSasIssuer \
         signs for other namespaces only what its policy allows; add spec.policy to it (see \
         docs/issuers.md, \"Issuer policy\")"
    )]
    IssuerPolicyRequired { issuer: String },

    #[error(
        "ClusterSasIssuer {issuer:?} cannot be used: the operator runs with the namespaced \
         install, which may not read cluster-scoped issuers; use a SasIssuer of this namespace, \
         or install the operator cluster-wide (deploy/)"
    )]
    ClusterIssuersNeedClusterInstall { issuer: String },

    #[error(
        "{issuer} {}",
        match cause {
            Some(cause) => format!(
                "could not obtain a user delegation key and tries again with backoff (its status shows the cause). {}: {}",
                cause.category, cause.message
            ),
            None => "is still obtaining a user delegation key; the grant is signed once it has one".to_string(),
        }
    )]
    IssuerBackingOff {
        /// `SasIssuer "name"` or `ClusterSasIssuer "name"`.
        issuer: String,
        /// The issuer's last failed fetch, if the latest one failed.
        cause: Option<Box<CachedFailure>>,
        /// When the grant looks again: the issuer's next attempt, or a short recheck while a
        /// fetch runs. Not in the message, so that it stays the same across attempts.
        retry_after: std::time::Duration,
    },

    /// An issuer's failed fetch as its own status shows it.
    #[error("{}", .0.message)]
    IssuerFetchFailed(CachedFailure),

    #[error("workload identity: {0}")]
    WorkloadIdentity(#[from] crate::issuer::identity::IdentityError),

    #[error("{0}")]
    EndpointNotAllowed(#[from] crate::endpoints::EndpointNotAllowed),

    #[error("invalid grant: {0}")]
    InvalidSpec(#[from] crate::reconcile::validate::SpecError),

    #[error("cannot sign: {0}")]
    Signing(#[from] SasError),

    #[error("Secret {name:?} exists and is not owned by this SasGrant; refusing to overwrite it")]
    SecretNotOwned { name: String },

    #[error("refusing to overwrite Secret {name:?} without the resourceVersion that was read")]
    UnreadSecretWrite { name: String },

    #[error("kubernetes API: {}", describe_api_error(.0))]
    Kube(#[from] kube::Error),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("lost the leader lease")]
    LeadershipLost,

    #[error("the reconcile did not finish within {}s", .after.as_secs())]
    ReconcileTimeout { after: std::time::Duration },

    #[error("the SasGrant CRD is not installed: run `sas-operator crd | kubectl apply -f -`")]
    CrdNotInstalled,
}

impl Error {
    /// A static CamelCase name for Ready reasons, Events and metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::KeySecretNotFound { .. } => "KeySecretNotFound",
            Error::KeyNotFound { .. } => "KeyNotFound",
            Error::KeySecretNotLabelled { .. } => "KeySecretNotLabelled",
            Error::KeyNotBase64 { .. } => "KeyNotBase64",
            Error::KeyNotAccountKey { .. } => "KeyNotAccountKey",
            Error::KeySecretTooManyEntries { .. } => "KeySecretTooManyEntries",
            Error::InvalidGrant(_) => "InvalidGrant",
            Error::IssuerNotFound { .. } => "IssuerNotFound",
            Error::IssuerNotAllowed { .. } => "IssuerNotAllowed",
            Error::InvalidIssuer { .. } => "InvalidIssuer",
            Error::IssuerKeySecretNotFound { .. } => "KeySecretNotFound",
            Error::NoClusterResourceNamespace { .. } => "NoClusterResourceNamespace",
            Error::DeniedByIssuerPolicy { .. } => "DeniedByIssuerPolicy",
            Error::IssuerPolicyRequired { .. } => "IssuerPolicyRequired",
            Error::ClusterIssuersNeedClusterInstall { .. } => "ClusterIssuersNeedClusterInstall",
            Error::IssuerBackingOff { .. } => "IssuerBackingOff",
            Error::IssuerFetchFailed(failure) => failure.category,
            Error::WorkloadIdentity(err) => err.category(),
            Error::EndpointNotAllowed(_) => "EndpointNotAllowed",
            Error::InvalidSpec(err) => err.category(),
            Error::Signing(err) => err.category(),
            Error::SecretNotOwned { .. } => "SecretNotOwned",
            Error::UnreadSecretWrite { .. } => "UnreadSecretWrite",
            Error::Kube(_) => "KubernetesApiError",
            Error::CrdNotInstalled => "CrdNotInstalled",
            Error::Config(_) => "InvalidConfiguration",
            Error::LeadershipLost => "LeadershipLost",
            Error::ReconcileTimeout { .. } => "ReconcileTimeout",
        }
    }

    /// Whether retrying the same input can succeed without anyone changing anything: the API
    /// server was unreachable, overloaded or raced us (a 409 that a re-read resolves), or the
    /// reconcile ran out of time. Not a lost lease: that replica must stop writing.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(err) => !is_permanent_api_error(err),
            Error::ReconcileTimeout { .. } => true,
            _ => false,
        }
    }

    /// An API error that the same request will meet again until someone changes something
    /// (RBAC, a namespace, the object): retried slowly, not like a transient one.
    pub fn is_permanent_api_error(&self) -> bool {
        matches!(self, Error::Kube(err) if is_permanent_api_error(err))
    }

    /// A 409: the object changed since it was read (or appeared since it was found missing).
    /// A re-read resolves it, so it requeues quickly, without a Warning or a status change.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == 409)
    }

    /// Whether the API server answered at all; when it did not, writing status or Events about
    /// the failure would fail the same way.
    pub fn api_reachable(&self) -> bool {
        match self {
            // A 5xx is the API server failing to serve (etcd down, overloaded): writes of
            // status and Events would fail the same way.
            Error::Kube(kube::Error::Api(status)) => status.code < 500,
            Error::Kube(_) | Error::ReconcileTimeout { .. } | Error::LeadershipLost => false,
            _ => true,
        }
    }
}

/// A failure remembered past the error itself (an issuer's failed fetch, shown to each of its
/// grants until its next attempt): its category and message, which carry no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFailure {
    pub category: &'static str,
    pub message: String,
}

impl CachedFailure {
    pub fn of(err: &Error) -> Self {
        CachedFailure {
            category: err.category(),
            message: truncate_message(&err.to_string()).into_owned(),
        }
    }
}

/// A kube error as text fit for status, Events and logs: an API error by its message, reason
/// and code (kube's own text appends the whole `Status` in its debug form); a response that
/// failed to decode is named, not quoted (serde's messages can carry values from the body, i.e.
/// from Secrets).
pub fn describe_api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::SerdeError(_) => "the API server's response could not be decoded".into(),
        kube::Error::Api(status) => format!("ApiError: {status} ({})", status.code),
        other => other.to_string(),
    }
}

/// 4xx answers other than 409 Conflict/AlreadyExists (a re-read fixes those), 408 Timeout and
/// 429 Too Many Requests.
fn is_permanent_api_error(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if (400..500).contains(&status.code) && !matches!(status.code, 408 | 409 | 429))
}

/// The most a message may take in status, an Event or a log line.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] bytes on a character boundary, marked with
/// `…` when cut: a message quoting attacker-controlled text cannot bloat status or Events.
pub fn truncate_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    const MARK: &str = "…";
    let mut end = MAX_MESSAGE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_static_reasons_not_messages() {
        let err = Error::KeyNotFound {
            secret: "keys".into(),
            key: "key9".into(),
        };
        assert_eq!(err.category(), "KeyNotFound");
        assert_eq!(
            err.to_string(),
            r#"key Secret "keys" has no data key "key9""#
        );
    }

    fn api_error(code: u16, reason: &str) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("message", reason)
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn an_api_error_reads_as_its_message_reason_and_code_without_a_status_dump() {
        let text = api_error(429, "TooManyRequests").to_string();
        assert_eq!(
            text,
            "kubernetes API: ApiError: message: TooManyRequests (429)"
        );
    }

    #[test]
    fn an_undecodable_response_is_never_quoted() {
        let decode = serde_json::from_str::<u32>(r#""hunter2""#).unwrap_err();
        assert!(
            decode.to_string().contains("hunter2"),
            "serde quotes values"
        );
        let err = Error::Kube(kube::Error::SerdeError(decode));
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").is_empty());
    }

    #[test]
    fn bad_input_and_a_lost_lease_are_not_transient() {
        assert!(!Error::SecretNotOwned { name: "x".into() }.is_transient());
        assert!(!Error::InvalidGrant("x".into()).is_transient());
        assert!(!Error::LeadershipLost.is_transient());
    }

    #[test]
    fn permanent_client_errors_are_not_retried_like_transient_ones() {
        for (code, reason) in [
            (400, "BadRequest"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (422, "Invalid"),
        ] {
            let err = api_error(code, reason);
            assert!(!err.is_transient(), "{code}");
            assert!(err.is_permanent_api_error(), "{code}");
        }
    }

    #[test]
    fn conflicts_throttling_server_errors_and_timeouts_are_transient() {
        for (code, reason) in [
            (409, "Conflict"),
            (409, "AlreadyExists"),
            (429, "TooManyRequests"),
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
        ] {
            let err = api_error(code, reason);
            assert!(err.is_transient(), "{code}");
            assert!(!err.is_permanent_api_error(), "{code}");
        }
        let timeout = Error::ReconcileTimeout {
            after: std::time::Duration::from_secs(5),
        };
        assert!(timeout.is_transient());
        assert_eq!(timeout.category(), "ReconcileTimeout");
        assert_eq!(
            timeout.to_string(),
            "the reconcile did not finish within 5s"
        );
    }

    #[test]
    fn short_messages_are_kept_whole() {
        assert_eq!(
            truncate_message("key Secret not found"),
            "key Secret not found"
        );
        let exact = "a".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(truncate_message(&exact), exact);
    }

    #[test]
    fn long_messages_are_cut_to_one_kibibyte_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn spec_errors_keep_their_own_reason() {
        let err = Error::from(crate::reconcile::validate::SpecError::RenewalMarginTooShort);
        assert_eq!(err.category(), "RenewalMarginTooShort");
        assert!(!err.is_transient());
    }
}
