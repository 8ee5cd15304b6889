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

    #[error("invalid grant: {0}")]
    InvalidSpec(#[from] crate::reconcile::validate::SpecError),

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
            Error::InvalidSpec(err) => err.category(),
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

    #[test]
    fn only_api_errors_are_transient() {
        assert!(!Error::SecretNotOwned { name: "x".into() }.is_transient());
        assert!(!Error::InvalidGrant("x".into()).is_transient());
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
