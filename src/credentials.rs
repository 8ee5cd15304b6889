//! Reading the account key from the Secret a grant references. Only the grant's own namespace
//! is ever read: the reference has no namespace, so a grant cannot borrow another namespace's
//! key. And only a Secret its owner labelled as a signing key is used, and only when it holds
//! what an Azure account key is (64 bytes): a grant's author cannot make the operator sign with
//! an unrelated Secret (a database password) and then brute-force it from the token.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::error::Error;
use crate::sas::AccountKey;

/// The label that opts a Secret in as a signing key: `sas-operator.io/signing-key: "true"`.
pub const LABEL_SIGNING_KEY: &str = "sas-operator.io/signing-key";

/// Azure storage account keys are 64 random bytes (88 base64 characters).
pub const ACCOUNT_KEY_BYTES: usize = 64;

/// The most entries of one key Secret that are read (in name order). An Azure key Secret holds
/// one or two keys; a Secret of thousands of entries must not cost memory per entry.
pub const MAX_KEY_SECRET_ENTRIES: usize = 16;

/// The longest entry that is decoded at all: an account key is 88 base64 characters, with room
/// for whitespace around it (a trailing newline from `echo`). A longer one is not an account key
/// and is refused without being decoded or kept.
const MAX_DECODED_ENTRY: usize = 128;

/// Whether Secret metadata carries the signing-key opt-in.
pub fn is_opted_in(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_SIGNING_KEY))
        .is_some_and(|value| value == "true")
}

/// One entry of a key Secret, judged when the Secret is read: only an account key is kept, as
/// its decoded bytes; anything else only as the reason it was refused.
#[derive(Clone, Debug)]
enum KeyEntry {
    AccountKey(AccountKey),
    NotBase64,
    NotAccountKey,
}

impl KeyEntry {
    fn judge(value: &[u8]) -> Self {
        if value.len() > MAX_DECODED_ENTRY {
            return KeyEntry::NotAccountKey;
        }
        let Ok(text) = std::str::from_utf8(value) else {
            return KeyEntry::NotBase64;
        };
        match AccountKey::from_base64(text.trim()) {
            Err(_) => KeyEntry::NotBase64,
            Ok(key) if key.as_bytes().len() != ACCOUNT_KEY_BYTES => KeyEntry::NotAccountKey,
            Ok(key) => KeyEntry::AccountKey(key),
        }
    }
}

/// A key Secret as a grant signs with it, and all that is ever kept of one (cached or read):
/// its version, whether it opted in, and the verdict on each of its first
/// [`MAX_KEY_SECRET_ENTRIES`] entries. No other data: a 900 kB entry next to the key costs
/// nothing once the Secret has been read, and an unlabelled Secret's data is never looked at.
#[derive(Clone, Debug, Default)]
pub struct KeySecret {
    pub resource_version: Option<String>,
    opted_in: bool,
    entries: Vec<(String, KeyEntry)>,
    /// Whether the Secret has more entries than were read.
    more_entries: bool,
}

impl KeySecret {
    /// Judges a Secret as read from the API server; `secret` can be dropped right after.
    pub fn of(secret: &Secret) -> Self {
        let opted_in = is_opted_in(&secret.metadata);
        let mut data = secret.data.iter().flatten().filter(|_| opted_in);
        let entries = data
            .by_ref()
            .take(MAX_KEY_SECRET_ENTRIES)
            .map(|(name, value)| (name.clone(), KeyEntry::judge(&value.0)))
            .collect();
        KeySecret {
            resource_version: secret.metadata.resource_version.clone(),
            opted_in,
            entries,
            more_entries: data.next().is_some(),
        }
    }

    /// How many entries are kept (account keys and refusals).
    pub fn kept_entries(&self) -> usize {
        self.entries.len()
    }
}

/// The account key a grant signs with, from the key Secret the seam read: the Secret must have
/// opted in with the signing-key label (its data is not looked at otherwise) and hold a 64-byte
/// account key under `key`. No error contains the value.
pub fn signing_key(
    found: &KeySecret,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<AccountKey, Error> {
    if !found.opted_in {
        return Err(Error::KeySecretNotLabelled {
            name: secret.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let (secret, key) = (secret.to_string(), key.to_string());
    match found.entries.iter().find(|(name, _)| *name == key) {
        Some((_, KeyEntry::AccountKey(account_key))) => Ok(account_key.clone()),
        Some((_, KeyEntry::NotBase64)) => Err(Error::KeyNotBase64 { secret, key }),
        Some((_, KeyEntry::NotAccountKey)) => Err(Error::KeyNotAccountKey { secret, key }),
        None if found.more_entries => Err(Error::KeySecretTooManyEntries {
            secret,
            key,
            limit: MAX_KEY_SECRET_ENTRIES,
        }),
        None => Err(Error::KeyNotFound { secret, key }),
    }
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

    /// What a grant signing with entry `key` of `secret`, opted in, gets.
    fn decode_key(secret: &Secret, name: &str, key: &str) -> Result<AccountKey, Error> {
        let secret = labelled(secret.clone(), "true");
        signing_key(&KeySecret::of(&secret), "ns", name, key)
    }

    fn require_signing_key_label(
        secret: &Secret,
        namespace: &str,
        name: &str,
    ) -> Result<(), Error> {
        match signing_key(&KeySecret::of(secret), namespace, name, "key1") {
            Err(err) if err.category() == "KeySecretNotLabelled" => Err(err),
            _ => Ok(()),
        }
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

    #[test]
    fn a_key_secret_keeps_only_its_account_keys_not_the_rest_of_its_data() {
        let mut secret = labelled(secret_with("key1", ACCOUNT_KEY.as_bytes()), "true");
        let filler = vec![b'A'; 900 * 1024];
        let data = secret.data.as_mut().unwrap();
        data.insert("backup.tar".into(), ByteString(filler));
        data.insert("password".into(), ByteString(b"hunter22".to_vec()));
        let kept = KeySecret::of(&secret);
        assert_eq!(kept.kept_entries(), 3, "a verdict per entry");
        let retained = format!("{kept:?}");
        assert!(
            retained.len() < 1024,
            "no entry's content is kept: {retained}"
        );
        assert!(!retained.contains("hunter22"));
        assert_eq!(
            signing_key(&kept, "ns", "keys", "key1")
                .unwrap()
                .as_bytes()
                .len(),
            64
        );
    }

    #[test]
    fn an_entry_longer_than_an_account_key_is_refused_without_decoding_it() {
        let huge_but_base64 = base64_of(&vec![7u8; 600 * 1024]);
        let err = decode_key(&secret_with("key1", &huge_but_base64), "keys", "key1").unwrap_err();
        assert_eq!(err.category(), "KeyNotAccountKey");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn the_data_of_an_unlabelled_secret_is_not_read() {
        let kept = KeySecret::of(&secret_with("key1", ACCOUNT_KEY.as_bytes()));
        assert_eq!(kept.kept_entries(), 0);
    }

    #[test]
    fn entries_past_the_limit_are_refused_with_their_own_reason() {
        let mut secret = labelled(Secret::default(), "true");
        let data: std::collections::BTreeMap<String, ByteString> = (0..=MAX_KEY_SECRET_ENTRIES)
            .map(|at| {
                (
                    format!("key{at:02}"),
                    ByteString(ACCOUNT_KEY.as_bytes().to_vec()),
                )
            })
            .collect();
        secret.data = Some(data);
        let kept = KeySecret::of(&secret);
        assert_eq!(kept.kept_entries(), MAX_KEY_SECRET_ENTRIES);
        assert!(signing_key(&kept, "ns", "keys", "key00").is_ok());
        let last = format!("key{MAX_KEY_SECRET_ENTRIES:02}");
        let err = signing_key(&kept, "ns", "keys", &last).unwrap_err();
        assert_eq!(err.category(), "KeySecretTooManyEntries");
        assert!(err.to_string().contains(&last), "{err}");
        let absent = signing_key(
            &KeySecret::of(&labelled(Secret::default(), "true")),
            "ns",
            "keys",
            "key1",
        );
        assert_eq!(absent.unwrap_err().category(), "KeyNotFound");
    }
}
