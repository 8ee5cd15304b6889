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

    #[error("invalid grant: {0}")]
    InvalidGrant(String),

    #[error("cannot sign: {0}")]
    Signing(#[from] SasError),

    #[error("Secret {name:?} exists and is not owned by this SasGrant; refusing to overwrite it")]
    SecretNotOwned { name: String },

    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("lost the leader lease")]
    LeadershipLost,

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
            Error::InvalidGrant(_) => "InvalidGrant",
            Error::Signing(err) => err.category(),
            Error::SecretNotOwned { .. } => "SecretNotOwned",
            Error::Kube(_) => "KubernetesApiError",
            Error::CrdNotInstalled => "CrdNotInstalled",
            Error::Config(_) => "InvalidConfiguration",
            Error::LeadershipLost => "LeadershipLost",
        }
    }

    /// Whether retrying the same input can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Kube(_))
    }
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

    #[test]
    fn only_api_errors_are_transient() {
        assert!(!Error::SecretNotOwned { name: "x".into() }.is_transient());
        assert!(!Error::InvalidGrant("x".into()).is_transient());
    }
}
