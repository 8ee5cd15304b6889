//! Reading the account key from the Secret a grant references. Only the grant's own namespace
//! is ever read: the reference has no namespace, so a grant cannot borrow another namespace's
//! key. And only a Secret its owner labelled as a signing key is used, and only when it holds
//! what an Azure account key is (64 bytes): a grant's author cannot make the operator sign with
//! an unrelated Secret (a database password) and then brute-force it from the token.

use k8s_openapi::api::core::v1::Secret;

use crate::error::Error;
use crate::sas::AccountKey;

/// The label that opts a Secret in as a signing key: `sas-operator.io/signing-key: "true"`.
pub const LABEL_SIGNING_KEY: &str = "sas-operator.io/signing-key";

/// Azure storage account keys are 64 random bytes (88 base64 characters).
pub const ACCOUNT_KEY_BYTES: usize = 64;

/// The account key a grant signs with, from the key Secret the seam read: the Secret must have
/// opted in with the signing-key label (its data is not looked at otherwise) and hold a 64-byte
/// account key under `key`.
pub fn signing_key(
    found: &Secret,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<AccountKey, Error> {
    require_signing_key_label(found, namespace, secret)?;
    decode_key(found, secret, key)
}

/// The Secret must carry the opt-in label; its data is not looked at otherwise.
pub fn require_signing_key_label(
    found: &Secret,
    namespace: &str,
    secret: &str,
) -> Result<(), Error> {
    let labelled = found
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_SIGNING_KEY))
        .is_some_and(|value| value == "true");
    if labelled {
        Ok(())
    } else {
        Err(Error::KeySecretNotLabelled {
            name: secret.to_string(),
            namespace: namespace.to_string(),
        })
    }
}

/// Decodes a key entry; whitespace around it (a trailing newline from `echo`) is ignored. The
/// decoded key must be exactly [`ACCOUNT_KEY_BYTES`] long. No error contains the value.
pub fn decode_key(found: &Secret, secret: &str, key: &str) -> Result<AccountKey, Error> {
    let not_found = || Error::KeyNotFound {
        secret: secret.to_string(),
        key: key.to_string(),
    };
    let raw = found
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(not_found)?;
    let not_base64 = || Error::KeyNotBase64 {
        secret: secret.to_string(),
        key: key.to_string(),
    };
    let text = std::str::from_utf8(&raw.0).map_err(|_| not_base64())?;
    let decoded = AccountKey::from_base64(text.trim()).map_err(|_| not_base64())?;
    if decoded.as_bytes().len() != ACCOUNT_KEY_BYTES {
        return Err(Error::KeyNotAccountKey {
            secret: secret.to_string(),
            key: key.to_string(),
        });
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use k8s_openapi::ByteString;

    /// Azurite's published development key: a real-shaped 64-byte account key.
    const ACCOUNT_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn secret_with(key: &str, value: &[u8]) -> Secret {
        Secret {
            data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        }
    }

    fn labelled(mut secret: Secret, value: &str) -> Secret {
        secret.metadata.labels = Some([(LABEL_SIGNING_KEY.to_string(), value.to_string())].into());
        secret
    }

    fn base64_of(bytes: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    #[test]
    fn an_account_key_with_a_trailing_newline_decodes() {
        let secret = secret_with("key1", format!("{ACCOUNT_KEY}\n").as_bytes());
        let key = decode_key(&secret, "keys", "key1").unwrap();
        assert_eq!(key.as_bytes().len(), 64);
    }

    #[test]
    fn a_missing_entry_names_the_secret_and_key() {
        let err =
            decode_key(&secret_with("key1", ACCOUNT_KEY.as_bytes()), "keys", "key2").unwrap_err();
        assert_eq!(err.category(), "KeyNotFound");
        assert!(err.to_string().contains("\"key2\""));
    }

    #[test]
    fn a_value_that_is_not_base64_is_rejected_without_echoing_it() {
        let err =
            decode_key(&secret_with("key1", b"not base64 at all!"), "keys", "key1").unwrap_err();
        assert_eq!(err.category(), "KeyNotBase64");
        assert!(!err.to_string().contains("not base64 at all"));
    }

    #[test]
    fn a_password_that_happens_to_be_base64_is_not_an_account_key() {
        // "hunter22" is valid base64 (6 bytes): before keys had to be 64 bytes it signed.
        let err = decode_key(
            &secret_with("password", b"hunter22"),
            "db-credentials",
            "password",
        )
        .unwrap_err();
        assert_eq!(err.category(), "KeyNotAccountKey");
        assert!(!err.to_string().contains("hunter22"), "{err}");
    }

    #[test]
    fn only_exactly_64_decoded_bytes_are_an_account_key() {
        for length in [1, 32, 63, 65, 128] {
            let secret = secret_with("key1", &base64_of(&vec![7u8; length]));
            let err = decode_key(&secret, "keys", "key1").unwrap_err();
            assert_eq!(err.category(), "KeyNotAccountKey", "{length} bytes");
        }
        let secret = secret_with("key1", &base64_of(&[7u8; 64]));
        assert!(decode_key(&secret, "keys", "key1").is_ok());
    }

    #[test]
    fn an_unlabelled_key_secret_is_refused_with_the_command_that_opts_it_in() {
        let secret = secret_with("password", b"hunter22");
        let err = require_signing_key_label(&secret, "team-a", "db-credentials").unwrap_err();
        assert_eq!(err.category(), "KeySecretNotLabelled");
        let message = err.to_string();
        assert!(
            message.contains(
                "kubectl label secret db-credentials sas-operator.io/signing-key=true -n team-a"
            ),
            "{message}"
        );
        assert!(!message.contains("hunter22"));
    }

    #[test]
    fn only_the_label_value_true_opts_in() {
        let secret = secret_with("key1", ACCOUNT_KEY.as_bytes());
        for value in ["false", "True", "yes", ""] {
            let err = require_signing_key_label(&labelled(secret.clone(), value), "ns", "keys")
                .unwrap_err();
            assert_eq!(
                err.category(),
                "KeySecretNotLabelled",
                "label value {value:?}"
            );
        }
        assert!(require_signing_key_label(&labelled(secret, "true"), "ns", "keys").is_ok());
    }
}
