//! Reading the account key from the Secret a grant references. Only the grant's own namespace
//! is ever read: the reference has no namespace, so a grant cannot borrow another namespace's
//! key.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::error::Error;
use crate::sas::AccountKey;

/// GETs `secret` in `namespace` and decodes its `key` entry as a base64 account key.
pub async fn account_key(
    client: &Client,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<AccountKey, Error> {
    let found = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(secret)
        .await?
        .ok_or_else(|| Error::KeySecretNotFound {
            name: secret.to_string(),
        })?;
    decode_key(&found, secret, key)
}

/// Decodes a key entry; whitespace around it (a trailing newline from `echo`) is ignored.
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
    AccountKey::from_base64(text.trim()).map_err(|_| not_base64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret_with(key: &str, value: &[u8]) -> Secret {
        Secret {
            data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_key_with_a_trailing_newline_decodes() {
        let secret = secret_with("key1", b"a2V5LWE=\n");
        assert!(decode_key(&secret, "keys", "key1").is_ok());
    }

    #[test]
    fn a_missing_entry_names_the_secret_and_key() {
        let err = decode_key(&secret_with("key1", b"a2V5LWE="), "keys", "key2").unwrap_err();
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
}
