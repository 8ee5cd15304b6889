//! Pure: the target Secret we want, the guard against touching Secrets we do not own, and what
//! an existing Secret tells us about the token it holds.

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

/// A signed token with what the Secret needs to say about it.
#[derive(Debug, Clone)]
pub struct SignedToken {
    pub token: String,
    pub expires_at: Timestamp,
    pub rotated_at: Timestamp,
    pub inputs_hash: String,
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

/// What an owned Secret says about its token.
pub fn issued_token(secret: &Secret) -> IssuedToken {
    let data = secret.data.as_ref();
    let text = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
    };
    IssuedToken {
        inputs_hash: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_INPUTS_HASH))
            .cloned(),
        expires_at: text(KEY_EXPIRES_AT).and_then(|t| t.parse().ok()),
        complete: DATA_KEYS
            .iter()
            .all(|key| text(key).is_some_and(|v| !v.is_empty())),
    }
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
    let annotations = BTreeMap::from([
        (
            ANNOTATION_INPUTS_HASH.to_string(),
            signed.inputs_hash.clone(),
        ),
        (
            ANNOTATION_ROTATED_AT.to_string(),
            signed.rotated_at.to_string(),
        ),
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

    fn signed() -> SignedToken {
        SignedToken {
            token: "sv=x&sig=y".into(),
            expires_at: "2030-01-01T08:00:00Z".parse().unwrap(),
            rotated_at: "2030-01-01T00:00:00Z".parse().unwrap(),
            inputs_hash: "abc".into(),
        }
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
        assert_eq!(text(KEY_SAS_TOKEN), "sv=x&sig=y");
        assert_eq!(
            text(KEY_SAS_URL),
            "http://127.0.0.1:10000/acct/data?sv=x&sig=y"
        );
        assert_eq!(
            text(KEY_CONNECTION_STRING),
            "BlobEndpoint=http://127.0.0.1:10000/acct;SharedAccessSignature=sv=x&sig=y"
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
        let issued = issued_token(&secret);
        assert_eq!(issued.inputs_hash.as_deref(), Some("abc"));
        assert_eq!(
            issued.expires_at,
            Some("2030-01-01T08:00:00Z".parse().unwrap())
        );
        assert!(issued.complete);
        assert_eq!(
            rotated_at(&secret),
            Some("2030-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_secret_missing_a_data_key_is_incomplete() {
        let mut secret = app_secret();
        secret.data.as_mut().unwrap().remove(KEY_SAS_URL);
        assert!(!issued_token(&secret).complete);
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
