//! Pure: the target Secret we want, the guard against touching Secrets we do not own, and what
//! an existing Secret tells us about the token it holds.
//!
//! Anyone who may edit the target Secret could otherwise steer the operator through it (an
//! `expiresAt` of 9999 kept a grant Ready forever). So the token is the only source of truth
//! for its expiry (its own `se`), and everything we write is covered by a MAC under a key
//! derived from the account key: a Secret we did not write exactly is re-signed.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use sha2::{Digest, Sha256};

use super::policy::IssuedToken;
use crate::crd::SasGrantSpec;
use crate::sas::{AccountKey, Resource, Service};

pub const KEY_SAS_TOKEN: &str = "sasToken";
pub const KEY_SAS_URL: &str = "sasUrl";
pub const KEY_CONNECTION_STRING: &str = "connectionString";
pub const KEY_EXPIRES_AT: &str = "expiresAt";
const DATA_KEYS: [&str; 4] = [
    KEY_SAS_TOKEN,
    KEY_SAS_URL,
    KEY_CONNECTION_STRING,
    KEY_EXPIRES_AT,
];

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER_NAME: &str = "sas-operator";
pub const LABEL_GRANT: &str = "sas-operator.io/grant";
pub const ANNOTATION_INPUTS_HASH: &str = "sas-operator.io/inputs-hash";
pub const ANNOTATION_ROTATED_AT: &str = "sas-operator.io/rotated-at";
/// HMAC-SHA256 (hex) over the Secret's name, namespace, annotations and data, under a
/// [`SecretMacKey`].
pub const ANNOTATION_MAC: &str = "sas-operator.io/mac";

/// A signed token with what the Secret needs to say about it. Its `Debug` never shows the
/// token or the MAC key.
#[derive(Clone)]
pub struct SignedToken {
    pub token: String,
    pub expires_at: Timestamp,
    pub rotated_at: Timestamp,
    pub inputs_hash: String,
    pub mac_key: SecretMacKey,
}

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("rotated_at", &self.rotated_at)
            .field("inputs_hash", &self.inputs_hash)
            .field("mac_key", &self.mac_key)
            .finish()
    }
}

/// The key of the target Secret's integrity MAC: HMAC(account key, fixed label). Derived, so a
/// MAC is never a signature under the account key itself (it cannot be replayed as a SAS
/// signature), yet only a holder of the account key can forge one.
#[derive(Clone)]
pub struct SecretMacKey(AccountKey);

impl SecretMacKey {
    pub fn derive(account_key: &AccountKey) -> Self {
        let derived = account_key.hmac_sha256(b"sas-operator/target-secret-mac/v1");
        SecretMacKey(AccountKey::from_bytes(derived.to_vec()))
    }
}

impl std::fmt::Debug for SecretMacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretMacKey(<redacted>)")
    }
}

/// Where the token is used: one endpoint per granted service, in `b q t f` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEndpoints {
    pub resource_url: String,
    pub services: Vec<(Service, String)>,
}

/// Whether `secret` carries a controller ownerReference to the grant with `grant_uid`.
pub fn is_owned_by(secret: &Secret, grant_uid: &str) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == grant_uid)
}

/// What an owned Secret says about its token. The expiry is the token's own `se`; the
/// `expiresAt` field only has to agree with it.
pub fn issued_token(secret: &Secret, mac_key: &SecretMacKey) -> IssuedToken {
    let data = secret.data.as_ref();
    let text = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
    };
    let annotation = |key: &str| {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    };
    let token = text(KEY_SAS_TOKEN).unwrap_or_default();
    let expires_at = token_expiry(token);
    let consistent = expires_at.is_some()
        && text(KEY_EXPIRES_AT).and_then(|t| t.parse::<Timestamp>().ok()) == expires_at
        && text(KEY_SAS_URL)
            .and_then(|url| url.split_once('?'))
            .map(|(_, query)| query)
            == Some(token)
        && text(KEY_CONNECTION_STRING).is_some_and(|cs| connection_string_token(cs) == Some(token));
    let mac_verifies = annotation(ANNOTATION_MAC).is_some_and(|found| {
        let expected = secret_mac(
            mac_key,
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default(),
            annotation(ANNOTATION_INPUTS_HASH),
            annotation(ANNOTATION_ROTATED_AT),
            |key| {
                data.and_then(|d| d.get(key))
                    .map(|bytes| bytes.0.as_slice())
            },
        );
        constant_time_eq(found.as_bytes(), expected.as_bytes())
    });
    IssuedToken {
        inputs_hash: annotation(ANNOTATION_INPUTS_HASH).map(str::to_string),
        expires_at,
        complete: DATA_KEYS
            .iter()
            .all(|key| text(key).is_some_and(|v| !v.is_empty()))
            && annotation(ANNOTATION_MAC).is_some(),
        intact: mac_verifies && consistent,
    }
}

/// The expiry a SAS token carries itself (`se`), if it has exactly one that is a timestamp.
pub fn token_expiry(token: &str) -> Option<Timestamp> {
    let mut values = token
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "se")
        .map(|(_, value)| value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?
        .parse()
        .ok()
}

/// The `SharedAccessSignature` of a connection string, if it has exactly one.
fn connection_string_token(connection_string: &str) -> Option<&str> {
    let mut tokens = connection_string
        .split(';')
        .filter_map(|part| part.strip_prefix("SharedAccessSignature="));
    let token = tokens.next()?;
    tokens.next().is_none().then_some(token)
}

/// The MAC over everything we write into a target Secret, bound to its name and namespace so
/// a Secret cannot be copied under another name. Each field is length-prefixed, so no value can
/// pose as another; a missing field differs from an empty one.
fn secret_mac<'a>(
    mac_key: &SecretMacKey,
    namespace: &str,
    name: &str,
    inputs_hash: Option<&str>,
    rotated_at: Option<&str>,
    data: impl Fn(&str) -> Option<&'a [u8]>,
) -> String {
    let mut message = b"sas-operator/target-secret/v1".to_vec();
    let mut field = |value: Option<&[u8]>| match value {
        Some(value) => {
            message.push(1);
            message.extend_from_slice(&(value.len() as u64).to_be_bytes());
            message.extend_from_slice(value);
        }
        None => message.push(0),
    };
    field(Some(namespace.as_bytes()));
    field(Some(name.as_bytes()));
    field(inputs_hash.map(str::as_bytes));
    field(rotated_at.map(str::as_bytes));
    for key in DATA_KEYS {
        field(data(key));
    }
    let mac = mac_key.0.hmac_sha256(&message);
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token stored in a Secret, if any (only ever hashed, never logged).
pub fn stored_token(secret: &Secret) -> Option<&str> {
    secret
        .data
        .as_ref()?
        .get(KEY_SAS_TOKEN)
        .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
}

/// When the stored token was signed, from the Secret's annotation.
pub fn rotated_at(secret: &Secret) -> Option<Timestamp> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_ROTATED_AT)?
        .parse()
        .ok()
}

/// The Secret to server-side apply for `grant`.
pub fn desired_secret(
    name: &str,
    namespace: &str,
    owner: OwnerReference,
    grant_name: &str,
    signed: &SignedToken,
    endpoints: &TokenEndpoints,
) -> Secret {
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER_NAME.to_string()),
        (LABEL_GRANT.to_string(), grant_name.to_string()),
    ]);
    let data = BTreeMap::from([
        (KEY_SAS_TOKEN.to_string(), bytes(&signed.token)),
        (
            KEY_SAS_URL.to_string(),
            bytes(&format!("{}?{}", endpoints.resource_url, signed.token)),
        ),
        (
            KEY_CONNECTION_STRING.to_string(),
            bytes(&connection_string(&endpoints.services, &signed.token)),
        ),
        (
            KEY_EXPIRES_AT.to_string(),
            bytes(&signed.expires_at.to_string()),
        ),
    ]);
    let rotated_at = signed.rotated_at.to_string();
    let mac = secret_mac(
        &signed.mac_key,
        namespace,
        name,
        Some(&signed.inputs_hash),
        Some(&rotated_at),
        |key| data.get(key).map(|bytes| bytes.0.as_slice()),
    );
    let annotations = BTreeMap::from([
        (
            ANNOTATION_INPUTS_HASH.to_string(),
            signed.inputs_hash.clone(),
        ),
        (ANNOTATION_ROTATED_AT.to_string(), rotated_at),
        (ANNOTATION_MAC.to_string(), mac),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// `BlobEndpoint=...;QueueEndpoint=...;SharedAccessSignature=...`, as Azure's SDKs parse it.
///
/// Endpoints come validated (`validate::is_endpoint`: no `;`, `=`, query or whitespace), so no
/// field can add another. Should one ever slip through, it is left out rather than let it
/// redirect an app: a connection string without it falls back to Azure's default endpoint.
pub fn connection_string(services: &[(Service, String)], token: &str) -> String {
    let mut parts: Vec<String> = services
        .iter()
        .filter(|(_, url)| {
            let safe = super::validate::is_endpoint(url);
            debug_assert!(
                safe,
                "an unvalidated endpoint reached the connection string"
            );
            safe
        })
        .map(|(service, url)| {
            let name = match service {
                Service::Blob => "BlobEndpoint",
                Service::Queue => "QueueEndpoint",
                Service::Table => "TableEndpoint",
                Service::File => "FileEndpoint",
            };
            format!("{name}={url}")
        })
        .collect();
    parts.push(format!("SharedAccessSignature={token}"));
    parts.join(";")
}

/// The URL a `sasUrl` points at: the resource, or for an account SAS the first service's
/// endpoint (blob when granted).
pub fn token_endpoints(resource: &Resource, services: Vec<(Service, String)>) -> TokenEndpoints {
    let resource_url = match services.first() {
        Some((_, endpoint)) => crate::sas::resource_url(endpoint, resource),
        None => String::new(),
    };
    TokenEndpoints {
        resource_url,
        services,
    }
}

/// Hash of every input of a token. The key enters only through an HMAC fingerprint, so the
/// hash reveals nothing about it, yet changes when the key changes.
pub fn inputs_hash(spec: &SasGrantSpec, target_secret: &str, key: &AccountKey) -> String {
    let mut fingerprint =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    fingerprint.update(b"sas-operator/key-fingerprint");
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(spec).expect("a spec always serializes"));
    hasher.update(b"\n");
    hasher.update(target_secret.as_bytes());
    hasher.update(b"\n");
    hasher.update(fingerprint.finalize().into_bytes());
    short_hex(&hasher.finalize())
}

/// A short, non-reversible hash of a token for status.
pub fn token_hash(token: &str) -> String {
    short_hex(&Sha256::digest(token.as_bytes()))
}

fn short_hex(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "sas-operator.io/v1alpha1".into(),
            kind: "SasGrant".into(),
            name: "app".into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    const TOKEN: &str = "se=2030-01-01T08%3A00%3A00Z&sv=x&sig=y";

    fn account_key(fill: u8) -> AccountKey {
        AccountKey::from_bytes(vec![fill; 64])
    }

    fn mac_key() -> SecretMacKey {
        SecretMacKey::derive(&account_key(7))
    }

    fn signed() -> SignedToken {
        SignedToken {
            token: TOKEN.into(),
            expires_at: "2030-01-01T08:00:00Z".parse().unwrap(),
            rotated_at: "2030-01-01T00:00:00Z".parse().unwrap(),
            inputs_hash: "abc".into(),
            mac_key: mac_key(),
        }
    }

    fn set_data(secret: &mut Secret, key: &str, value: &str) {
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(key.into(), bytes(value));
    }

    fn endpoints() -> TokenEndpoints {
        TokenEndpoints {
            resource_url: "http://127.0.0.1:10000/acct/data".into(),
            services: vec![(Service::Blob, "http://127.0.0.1:10000/acct".into())],
        }
    }

    #[test]
    fn a_secret_is_owned_only_through_a_controller_reference_with_the_grant_uid() {
        let mut secret = Secret::default();
        assert!(!is_owned_by(&secret, "u1"));
        secret.metadata.owner_references = Some(vec![owner("u1", false)]);
        assert!(!is_owned_by(&secret, "u1"));
        secret.metadata.owner_references = Some(vec![owner("u2", true)]);
        assert!(!is_owned_by(&secret, "u1"));
        secret.metadata.owner_references = Some(vec![owner("u1", true)]);
        assert!(is_owned_by(&secret, "u1"));
    }

    /// The Secret for grant "app" in "ns", owned by uid "u1".
    fn app_secret() -> Secret {
        desired_secret(
            "app-sas",
            "ns",
            owner("u1", true),
            "app",
            &signed(),
            &endpoints(),
        )
    }

    #[test]
    fn the_desired_secret_holds_token_url_connection_string_and_expiry() {
        let secret = app_secret();
        let data = secret.data.as_ref().unwrap();
        let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
        assert_eq!(text(KEY_SAS_TOKEN), TOKEN);
        assert_eq!(
            text(KEY_SAS_URL),
            format!("http://127.0.0.1:10000/acct/data?{TOKEN}")
        );
        assert_eq!(
            text(KEY_CONNECTION_STRING),
            format!("BlobEndpoint=http://127.0.0.1:10000/acct;SharedAccessSignature={TOKEN}")
        );
        assert_eq!(text(KEY_EXPIRES_AT), "2030-01-01T08:00:00Z");
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            secret.metadata.labels.unwrap()[LABEL_MANAGED_BY],
            "sas-operator"
        );
    }

    #[test]
    fn the_issued_token_is_read_back_from_the_secret_we_write() {
        let secret = app_secret();
        let issued = issued_token(&secret, &mac_key());
        assert_eq!(issued.inputs_hash.as_deref(), Some("abc"));
        assert_eq!(
            issued.expires_at,
            Some("2030-01-01T08:00:00Z".parse().unwrap())
        );
        assert!(issued.complete);
        assert!(issued.intact);
        assert_eq!(
            rotated_at(&secret),
            Some("2030-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_secret_missing_a_data_key_is_incomplete() {
        let mut secret = app_secret();
        secret.data.as_mut().unwrap().remove(KEY_SAS_URL);
        assert!(!issued_token(&secret, &mac_key()).complete);
    }

    #[test]
    fn a_secret_without_its_mac_is_incomplete() {
        let mut secret = app_secret();
        secret
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(ANNOTATION_MAC);
        let issued = issued_token(&secret, &mac_key());
        assert!(!issued.complete);
        assert!(!issued.intact);
    }

    #[test]
    fn the_expiry_is_the_tokens_own_not_the_expires_at_field() {
        let mut secret = app_secret();
        set_data(&mut secret, KEY_EXPIRES_AT, "9999-12-31T23:59:59Z");
        let issued = issued_token(&secret, &mac_key());
        assert_eq!(
            issued.expires_at,
            Some("2030-01-01T08:00:00Z".parse().unwrap())
        );
        assert!(!issued.intact, "an edited expiresAt is tampering");
    }

    #[test]
    fn a_swapped_token_is_tampering_even_with_every_field_made_consistent() {
        let mut secret = app_secret();
        let swapped = "se=2099-01-01T00%3A00%3A00Z&sv=x&sig=z";
        set_data(&mut secret, KEY_SAS_TOKEN, swapped);
        set_data(
            &mut secret,
            KEY_SAS_URL,
            &format!("http://127.0.0.1:10000/acct/data?{swapped}"),
        );
        set_data(
            &mut secret,
            KEY_CONNECTION_STRING,
            &format!("BlobEndpoint=http://127.0.0.1:10000/acct;SharedAccessSignature={swapped}"),
        );
        set_data(&mut secret, KEY_EXPIRES_AT, "2099-01-01T00:00:00Z");
        assert!(!issued_token(&secret, &mac_key()).intact);
    }

    #[test]
    fn a_url_or_connection_string_that_disagrees_with_the_token_is_tampering() {
        let mut secret = app_secret();
        set_data(
            &mut secret,
            KEY_SAS_URL,
            &format!("https://attacker.example/acct/data?{TOKEN}"),
        );
        assert!(!issued_token(&secret, &mac_key()).intact);
        let mut secret = app_secret();
        set_data(
            &mut secret,
            KEY_CONNECTION_STRING,
            &format!(
                "BlobEndpoint=http://127.0.0.1:10000/acct;SharedAccessSignature={TOKEN};SharedAccessSignature=x"
            ),
        );
        assert!(!issued_token(&secret, &mac_key()).intact);
    }

    #[test]
    fn an_edited_annotation_is_tampering() {
        for annotation in [
            ANNOTATION_ROTATED_AT,
            ANNOTATION_INPUTS_HASH,
            ANNOTATION_MAC,
        ] {
            let mut secret = app_secret();
            secret
                .metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert(annotation.into(), "2031-01-01T00:00:00Z".into());
            assert!(!issued_token(&secret, &mac_key()).intact, "{annotation}");
        }
    }

    #[test]
    fn a_secret_copied_under_another_name_or_namespace_is_tampering() {
        let mut renamed = app_secret();
        renamed.metadata.name = Some("other-sas".into());
        assert!(!issued_token(&renamed, &mac_key()).intact);
        let mut moved = app_secret();
        moved.metadata.namespace = Some("other".into());
        assert!(!issued_token(&moved, &mac_key()).intact);
    }

    #[test]
    fn the_mac_only_verifies_under_the_key_it_was_written_with() {
        let other = SecretMacKey::derive(&account_key(8));
        assert!(!issued_token(&app_secret(), &other).intact);
    }

    #[test]
    fn the_mac_is_not_an_hmac_under_the_account_key_itself() {
        let secret = app_secret();
        let mac = &secret.metadata.annotations.as_ref().unwrap()[ANNOTATION_MAC];
        assert_eq!(mac.len(), 64);
        let direct = secret_mac(
            &SecretMacKey(account_key(7)),
            "ns",
            "app-sas",
            Some("abc"),
            Some("2030-01-01T00:00:00Z"),
            |key| {
                secret
                    .data
                    .as_ref()
                    .unwrap()
                    .get(key)
                    .map(|b| b.0.as_slice())
            },
        );
        assert_ne!(mac, &direct);
    }

    #[test]
    fn token_expiry_reads_one_percent_encoded_se() {
        assert_eq!(
            token_expiry("sv=1&se=2030-02-03T04%3A05%3A06Z&sig=x"),
            Some("2030-02-03T04:05:06Z".parse().unwrap())
        );
        assert_eq!(token_expiry("sv=1&sig=x"), None);
        assert_eq!(token_expiry("se=9999&sig=x"), None);
        assert_eq!(
            token_expiry("se=2030-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z"),
            None,
            "two expiries are ambiguous"
        );
        assert_eq!(token_expiry(""), None);
    }

    #[test]
    fn debug_of_every_type_holding_a_key_or_token_is_redacted() {
        use crate::sas::{Sas, SigningKey, UserDelegationKey};
        let key = AccountKey::from_bytes(b"KEYMATERIAL-KEYMATERIAL".to_vec());
        let udk = UserDelegationKey {
            signed_oid: "o".into(),
            signed_tid: "t".into(),
            signed_start: "s".into(),
            signed_expiry: "e".into(),
            signed_service: "b".into(),
            signed_version: "v".into(),
            signed_delegated_user_tid: None,
            value: key.clone(),
        };
        let sas = Sas {
            token: TOKEN.into(),
            permissions: None,
            version: "2026-10-06".into(),
            expiry: None,
        };
        let rendered = [
            format!("{key:?}"),
            format!("{:?}", SigningKey::Account(key.clone())),
            format!("{:?}", SigningKey::UserDelegation(udk)),
            format!("{sas:?}"),
            format!("{:?}", signed()),
            format!("{:?}", SecretMacKey::derive(&key)),
            format!("{:?}", key.signature(b"m")),
        ];
        let key_base64 = "S0VZTUFURVJJQUwtS0VZTUFURVJJQUw";
        for text in rendered {
            assert!(!text.contains("KEYMATERIAL"), "{text}");
            assert!(!text.contains(key_base64), "{text}");
            assert!(!text.contains("sig=y"), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
    }

    #[test]
    fn account_connection_string_lists_every_service_endpoint() {
        let services = vec![
            (Service::Blob, "https://a.blob".to_string()),
            (Service::Queue, "https://a.queue".to_string()),
        ];
        assert_eq!(
            connection_string(&services, "sig=1"),
            "BlobEndpoint=https://a.blob;QueueEndpoint=https://a.queue;SharedAccessSignature=sig=1"
        );
    }

    #[test]
    #[cfg_attr(
        debug_assertions,
        should_panic(expected = "an unvalidated endpoint reached the connection string")
    )]
    fn an_injected_endpoint_never_enters_the_connection_string() {
        let services = [(
            Service::Blob,
            "https://attacker.example/x;SharedAccessSignature=evil".to_string(),
        )];
        assert_eq!(
            connection_string(&services, "sig=1"),
            "SharedAccessSignature=sig=1"
        );
    }

    #[test]
    fn inputs_hash_changes_with_the_key_and_never_contains_it() {
        let spec: SasGrantSpec = serde_json::from_value(serde_json::json!({
            "storageAccount": {"name": "acct", "keySecretRef": {"name": "keys"}},
            "resource": {"container": {"name": "data"}},
            "permissions": "rl"
        }))
        .unwrap();
        let key_a = AccountKey::from_base64("a2V5LWE=").unwrap();
        let key_b = AccountKey::from_base64("a2V5LWI=").unwrap();
        let hash_a = inputs_hash(&spec, "app", &key_a);
        assert_eq!(hash_a, inputs_hash(&spec, "app", &key_a));
        assert_ne!(hash_a, inputs_hash(&spec, "app", &key_b));
        assert_ne!(hash_a, inputs_hash(&spec, "other", &key_a));
        assert_eq!(hash_a.len(), 16);
    }

    #[test]
    fn token_hash_is_short_and_stable() {
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
        assert_eq!(token_hash("abc").len(), 16);
    }
}
