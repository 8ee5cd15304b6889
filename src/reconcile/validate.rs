//! Pure: every rule the CRD schema enforces at admission, checked again before any API call.
//!
//! A grant stored before the schema tightened, or written past admission some other way, must
//! never put a URL fragment into a Secret name, an attacker's host into a connection string or
//! a line break into a string-to-sign. Each rule here mirrors a pattern, length or CEL rule of
//! `crate::crd` exactly (the admission property test in `tests/admission.rs` holds them to it).

use std::time::Duration;

use crate::crd::{
    AccountKeyCredential, DEFAULT_KEY_NAME, DEFAULT_VALIDITY, Endpoints, GrantResource,
    IssuerStorageAccount, KeySecretRef, SasGrantSpec, WorkloadIdentityCredential,
};
use crate::duration::{self, DurationError};

/// Kubernetes object names (DNS-1123 subdomain) and Secret data keys.
pub const NAME_MAX_LENGTH: usize = 253;
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// Namespace names (DNS-1123 label).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Entra client and tenant ids.
pub const UUID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Free text that enters a string-to-sign: anything but control characters (Unicode `Cc`,
/// which is what Rust's `char::is_control` tests).
pub const NO_CONTROL_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]+$";

/// A decimal octet 0-255 without leading zeros, as a regex literal.
macro_rules! octet {
    () => {
        "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    };
}
macro_rules! ipv4 {
    () => {
        concat!(octet!(), r"\.", octet!(), r"\.", octet!(), r"\.", octet!())
    };
}
macro_rules! hostname {
    () => {
        r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*"
    };
}

/// `a.b.c.d` or `a.b.c.d-e.f.g.h`; a CEL rule of the schema checks that a range ascends.
pub const IP_PATTERN: &str = concat!("^", ipv4!(), "(-", ipv4!(), ")?$");
pub const IP_MAX_LENGTH: usize = 31;

/// Endpoints: `https://host[:port][/path]`, or `http://` to a loopback host (emulators). No
/// userinfo, query, fragment, `;` or `=`: nothing that could add a field to a connection string.
pub const ENDPOINT_PATTERN: &str = concat!(
    r"^(https://(",
    hostname!(),
    r"|\[::1\])|http://(localhost|127\.",
    octet!(),
    r"\.",
    octet!(),
    r"\.",
    octet!(),
    r"|\[::1\]))(:[0-9]{1,5})?(/[-a-zA-Z0-9._~%]*)*$"
);
pub const ENDPOINT_MAX_LENGTH: usize = 512;

pub const ACCOUNT_NAME_MAX_LENGTH: usize = 24;
pub const PERMISSIONS_MAX_LENGTH: usize = 32;
pub const LETTERS_MAX_LENGTH: usize = 16;
pub const VERSION_MAX_LENGTH: usize = 10;
/// Containers, shares, queues and tables: Azure allows 63 characters.
pub const RESOURCE_NAME_MAX_LENGTH: usize = 63;
/// Blob names, directory and file paths, table keys: Azure allows 1024.
pub const PATH_MAX_LENGTH: usize = 1024;
pub const SNAPSHOT_MAX_LENGTH: usize = 64;
pub const POLICY_MAX_LENGTH: usize = 64;
pub const ENCRYPTION_SCOPE_MAX_LENGTH: usize = 63;

pub const MIN_VALIDITY: Duration = Duration::from_secs(120);
pub const MAX_VALIDITY: Duration = Duration::from_secs(8760 * 3600);
/// A token stays in use at least this long, and at least a tenth of its validity.
pub const MIN_USE: Duration = Duration::from_secs(60);

/// A spec value the schema would have refused, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{field} {value} is not a valid name: {reason}")]
    Name {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{field} {value} {reason}")]
    Duration {
        field: &'static str,
        value: String,
        reason: DurationError,
    },
    #[error("validity must be between 2m and 8760h (365d)")]
    ValidityOutOfRange,
    #[error("policy.maxValidity must be between 2m and 8760h (365d)")]
    MaxValidityOutOfRange,
    #[error(
        "renewBefore must be shorter than validity by at least max(1m, validity/10), so a token stays in use that long"
    )]
    RenewalMarginTooShort,
    #[error(
        "{field} {value} must be an https URL without user, query, fragment, ';' or '=' (http only to localhost, 127.0.0.0/8 or [::1])"
    )]
    Endpoint { field: &'static str, value: String },
    #[error("ip {value} must be an IPv4 address or an ascending range a.b.c.d-e.f.g.h")]
    Ip { value: String },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} {value} must not contain control characters")]
    ControlCharacter { field: &'static str, value: String },
    #[error("{field} {value} must match {pattern}")]
    Pattern {
        field: &'static str,
        value: String,
        pattern: &'static str,
    },
    #[error("exactly one of {0} must be set")]
    ExactlyOne(&'static str),
}

impl SpecError {
    /// A static CamelCase reason for the Ready condition, Events and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::Name { .. } => "InvalidName",
            SpecError::Duration { .. } => "InvalidDuration",
            SpecError::ValidityOutOfRange | SpecError::MaxValidityOutOfRange => {
                "ValidityOutOfRange"
            }
            SpecError::RenewalMarginTooShort => "RenewalMarginTooShort",
            SpecError::Endpoint { .. } => "InvalidEndpoint",
            SpecError::Ip { .. } => "InvalidIp",
            SpecError::TooLong { .. } => "FieldTooLong",
            SpecError::Empty { .. } => "EmptyField",
            SpecError::ControlCharacter { .. } => "ControlCharacter",
            SpecError::Pattern { .. } => "InvalidField",
            SpecError::ExactlyOne(_) => "InvalidCredentialChoice",
        }
    }
}

/// A grant's lifetimes, once valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub validity: Duration,
    pub renew_before: Duration,
}

/// Checks every field of `spec` as admission does; `target_secret` is the effective Secret
/// name (the spec's or the grant's own name).
pub fn spec(spec: &SasGrantSpec, target_secret: &str) -> Result<Lifetimes, SpecError> {
    match (&spec.storage_account, &spec.issuer_ref) {
        (Some(account), None) => {
            account_fields(&account.name, account.endpoints.as_ref())?;
            key_secret_ref("storageAccount.keySecretRef", &account.key_secret_ref)?;
        }
        (None, Some(issuer)) => dns_subdomain("issuerRef.name", &issuer.name)?,
        _ => return Err(SpecError::ExactlyOne("issuerRef and storageAccount")),
    }
    resource(&spec.resource)?;
    pattern_field(
        "permissions",
        &spec.permissions,
        PERMISSIONS_MAX_LENGTH,
        "^[rwdxylacupftimeo]+$",
        |p| !p.is_empty() && p.bytes().all(|b| b"rwdxylacupftimeo".contains(&b)),
    )?;
    let lifetimes = lifetimes(spec.validity.as_deref(), spec.renew_before.as_deref())?;
    if let Some(value) = &spec.ip {
        ip(value)?;
    }
    if let Some(version) = &spec.version {
        pattern_field(
            "version",
            version,
            VERSION_MAX_LENGTH,
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            is_date,
        )?;
    }
    if let Some(policy) = &spec.stored_access_policy {
        text("storedAccessPolicy", policy, POLICY_MAX_LENGTH)?;
    }
    if let Some(scope) = &spec.encryption_scope {
        text("encryptionScope", scope, ENCRYPTION_SCOPE_MAX_LENGTH)?;
    }
    dns_subdomain("target.secretName", target_secret)?;
    Ok(lifetimes)
}

/// Checks an issuer's spec (either kind) as admission does.
pub fn issuer(
    account: &IssuerStorageAccount,
    account_key: Option<&AccountKeyCredential>,
    workload_identity: Option<&WorkloadIdentityCredential>,
) -> Result<(), SpecError> {
    account_fields(&account.name, account.endpoints.as_ref())?;
    match (account_key, workload_identity) {
        (Some(key), None) => key_secret_ref("accountKey.secretRef", &key.secret_ref),
        (None, Some(identity)) => {
            uuid("workloadIdentity.clientId", &identity.client_id)?;
            uuid("workloadIdentity.tenantId", &identity.tenant_id)?;
            dns_subdomain(
                "workloadIdentity.serviceAccountName",
                &identity.service_account_name,
            )
        }
        _ => Err(SpecError::ExactlyOne("accountKey and workloadIdentity")),
    }
}

/// A storage account name and its endpoint overrides.
fn account_fields(name: &str, endpoints: Option<&Endpoints>) -> Result<(), SpecError> {
    pattern_field(
        "storageAccount.name",
        name,
        ACCOUNT_NAME_MAX_LENGTH,
        "^[a-z0-9]{3,24}$",
        |name| (3..=24).contains(&name.len()) && name.bytes().all(is_lower_alnum),
    )?;
    if let Some(endpoints) = endpoints {
        for (field, value) in [
            ("storageAccount.endpoints.blob", &endpoints.blob),
            ("storageAccount.endpoints.queue", &endpoints.queue),
            ("storageAccount.endpoints.table", &endpoints.table),
            ("storageAccount.endpoints.file", &endpoints.file),
        ] {
            if let Some(value) = value {
                endpoint(field, value)?;
            }
        }
    }
    Ok(())
}

/// A Secret name and data key (`field` is the reference's path; the key defaults to `key1`).
fn key_secret_ref(field: &'static str, reference: &KeySecretRef) -> Result<(), SpecError> {
    let (name_field, key_field) = match field {
        "accountKey.secretRef" => ("accountKey.secretRef.name", "accountKey.secretRef.key"),
        _ => (
            "storageAccount.keySecretRef.name",
            "storageAccount.keySecretRef.key",
        ),
    };
    dns_subdomain(name_field, &reference.name)?;
    secret_key(
        key_field,
        reference.key.as_deref().unwrap_or(DEFAULT_KEY_NAME),
    )
}

/// An Entra client or tenant id: a UUID in 8-4-4-4-12 hex digits.
pub fn uuid(field: &'static str, value: &str) -> Result<(), SpecError> {
    pattern_field(field, value, 36, UUID_PATTERN, |v| {
        let groups: Vec<&str> = v.split('-').collect();
        groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

fn resource(resource: &GrantResource) -> Result<(), SpecError> {
    if let Some(account) = &resource.account {
        letters(
            "resource.account.services",
            &account.services,
            "^[bqtf]+$",
            b"bqtf",
        )?;
        letters(
            "resource.account.resourceTypes",
            &account.resource_types,
            "^[sco]+$",
            b"sco",
        )?;
    }
    let name = RESOURCE_NAME_MAX_LENGTH;
    if let Some(container) = &resource.container {
        text("resource.container.name", &container.name, name)?;
    }
    if let Some(blob) = &resource.blob {
        text("resource.blob.container", &blob.container, name)?;
        text("resource.blob.name", &blob.name, PATH_MAX_LENGTH)?;
        if let Some(snapshot) = &blob.snapshot {
            text("resource.blob.snapshot", snapshot, SNAPSHOT_MAX_LENGTH)?;
        }
        if let Some(version_id) = &blob.version_id {
            text("resource.blob.versionId", version_id, SNAPSHOT_MAX_LENGTH)?;
        }
    }
    if let Some(directory) = &resource.directory {
        text("resource.directory.container", &directory.container, name)?;
        text("resource.directory.path", &directory.path, PATH_MAX_LENGTH)?;
    }
    if let Some(share) = &resource.share {
        text("resource.share.name", &share.name, name)?;
    }
    if let Some(file) = &resource.file {
        text("resource.file.share", &file.share, name)?;
        text("resource.file.path", &file.path, PATH_MAX_LENGTH)?;
    }
    if let Some(queue) = &resource.queue {
        text("resource.queue.name", &queue.name, name)?;
    }
    if let Some(table) = &resource.table {
        text("resource.table.name", &table.name, name)?;
        for (field, key) in [
            ("resource.table.startPk", &table.start_pk),
            ("resource.table.startRk", &table.start_rk),
            ("resource.table.endPk", &table.end_pk),
            ("resource.table.endRk", &table.end_rk),
        ] {
            if let Some(key) = key {
                text(field, key, PATH_MAX_LENGTH)?;
            }
        }
    }
    Ok(())
}

/// Parses and bounds `validity` and `renewBefore` (defaults: 8h, a third of validity).
pub fn lifetimes(
    validity: Option<&str>,
    renew_before: Option<&str>,
) -> Result<Lifetimes, SpecError> {
    let validity = duration_field("validity", validity.unwrap_or(DEFAULT_VALIDITY))?;
    let renew_before = renew_before
        .map(|text| duration_field("renewBefore", text))
        .transpose()?;
    if !(MIN_VALIDITY..=MAX_VALIDITY).contains(&validity) {
        return Err(SpecError::ValidityOutOfRange);
    }
    let renew_before = renew_before.unwrap_or(validity / 3);
    if !leaves_margin(validity, renew_before) {
        return Err(SpecError::RenewalMarginTooShort);
    }
    Ok(Lifetimes {
        validity,
        renew_before,
    })
}

/// `validity - renewBefore >= max(1m, validity/10)`, in exact integer nanoseconds (as CEL's
/// `m >= duration('1m') && m+m+m+m+m+m+m+m+m+m >= v`). A zero `renewBefore` leaves no time to
/// re-sign before expiry, so it must be positive too.
pub fn leaves_margin(validity: Duration, renew_before: Duration) -> bool {
    let Some(in_use) = validity.checked_sub(renew_before) else {
        return false;
    };
    !renew_before.is_zero() && in_use >= MIN_USE && in_use.as_nanos() * 10 >= validity.as_nanos()
}

pub(crate) fn duration_field(field: &'static str, text: &str) -> Result<Duration, SpecError> {
    duration::parse(text).map_err(|reason| SpecError::Duration {
        field,
        value: shown(text),
        reason,
    })
}

/// A Kubernetes object name: a DNS-1123 subdomain, as the API server validates Secret names.
pub fn dns_subdomain(field: &'static str, name: &str) -> Result<(), SpecError> {
    let invalid = |reason| SpecError::Name {
        field,
        value: shown(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.len() > NAME_MAX_LENGTH {
        return Err(invalid("must be at most 253 characters long"));
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
            && is_lower_alnum(bytes[0])
            && is_lower_alnum(bytes[bytes.len() - 1])
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(invalid(
            "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
        ))
    }
}

/// A Secret data key, as the API server validates them (config-map key rule).
pub fn secret_key(field: &'static str, key: &str) -> Result<(), SpecError> {
    let invalid = |reason| SpecError::Name {
        field,
        value: shown(key),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if key.len() > NAME_MAX_LENGTH {
        return Err(invalid("must be at most 253 characters long"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(invalid(
            "may contain only letters, digits, '-', '_' and '.'",
        ));
    }
    if key == "." || key.starts_with("..") {
        return Err(invalid("must not be '.' or start with '..'"));
    }
    Ok(())
}

/// A service endpoint: what [`ENDPOINT_PATTERN`] matches, hand-written.
pub fn endpoint(field: &'static str, url: &str) -> Result<(), SpecError> {
    if url.chars().count() > ENDPOINT_MAX_LENGTH {
        return Err(SpecError::TooLong {
            field,
            max: ENDPOINT_MAX_LENGTH,
        });
    }
    if is_endpoint(url) {
        Ok(())
    } else {
        Err(SpecError::Endpoint {
            field,
            value: shown(url),
        })
    }
}

/// Whether `url` is an endpoint safe to put into a URL and a connection string.
pub fn is_endpoint(url: &str) -> bool {
    let (rest, https) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let (host, after) = authority.split_at(end + 1);
                match after {
                    "" => (host, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (host, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host == "[::1]"
        || if https {
            is_hostname(host)
        } else {
            host == "localhost"
                || host
                    .strip_prefix("127.")
                    .is_some_and(|octets| is_octets(octets, 3))
        };
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~' | b'%'));
    port_ok && host_ok && path_ok
}

/// Dot-separated labels of letters, digits and inner hyphens.
fn is_hostname(host: &str) -> bool {
    host.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
    })
}

/// `count` dot-separated decimal octets 0-255 without leading zeros.
fn is_octets(text: &str, count: usize) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == count && parts.iter().all(|part| octet(part).is_some())
}

fn octet(text: &str) -> Option<u8> {
    let ok = (1..=3).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    ok.then(|| text.parse().ok()).flatten()
}

fn ipv4(text: &str) -> Option<u32> {
    let octets: Vec<u8> = text.split('.').map(octet).collect::<Option<_>>()?;
    let octets: [u8; 4] = octets.try_into().ok()?;
    Some(u32::from_be_bytes(octets))
}

/// `sip`: an IPv4 address, or an ascending range `a.b.c.d-e.f.g.h`.
pub fn ip(value: &str) -> Result<(), SpecError> {
    let valid = value.len() <= IP_MAX_LENGTH
        && match value.split_once('-') {
            None => ipv4(value).is_some(),
            Some((start, end)) => matches!((ipv4(start), ipv4(end)), (Some(s), Some(e)) if s <= e),
        };
    if valid {
        Ok(())
    } else {
        Err(SpecError::Ip {
            value: shown(value),
        })
    }
}

/// A non-empty string of at most `max` characters with no control characters.
pub(crate) fn text(field: &'static str, value: &str, max: usize) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(SpecError::Empty { field });
    }
    if value.chars().count() > max {
        return Err(SpecError::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(SpecError::ControlCharacter {
            field,
            value: shown(value),
        });
    }
    Ok(())
}

pub(crate) fn letters(
    field: &'static str,
    value: &str,
    pattern: &'static str,
    allowed: &[u8],
) -> Result<(), SpecError> {
    pattern_field(field, value, LETTERS_MAX_LENGTH, pattern, |v| {
        !v.is_empty() && v.bytes().all(|b| allowed.contains(&b))
    })
}

pub(crate) fn pattern_field(
    field: &'static str,
    value: &str,
    max: usize,
    pattern: &'static str,
    matches: impl Fn(&str) -> bool,
) -> Result<(), SpecError> {
    if value.chars().count() > max {
        return Err(SpecError::TooLong { field, max });
    }
    if matches(value) {
        Ok(())
    } else {
        Err(SpecError::Pattern {
            field,
            value: shown(value),
            pattern,
        })
    }
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A value for an error message: escaped (no control character reaches a log line or an
/// Event) and cut to 64 characters.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let mut cut: String = value.chars().take(MAX).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(result: Result<(), SpecError>) -> &'static str {
        result.expect_err("must be rejected").category()
    }

    #[test]
    fn a_question_mark_is_not_a_secret_name() {
        assert_eq!(category(dns_subdomain("f", "?")), "InvalidName");
    }

    #[test]
    fn a_query_string_is_not_a_secret_name() {
        let err = dns_subdomain("target.secretName", "?watch=1&timeoutSeconds=3600&").unwrap_err();
        assert_eq!(err.category(), "InvalidName");
        assert!(err.to_string().starts_with("target.secretName "), "{err}");
    }

    #[test]
    fn slashes_percent_signs_and_uppercase_are_not_in_names() {
        for bad in ["a/b", "a%2Fb", "Keys", "-a", "a-", "a..b", ".a", "a."] {
            assert!(dns_subdomain("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_names_may_be_dotted_and_253_characters_long() {
        assert!(dns_subdomain("f", "azurite-keys").is_ok());
        assert!(dns_subdomain("f", "a.b-c.0").is_ok());
        let longest = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        assert_eq!(longest.len(), 253);
        assert!(dns_subdomain("f", &longest).is_ok());
        assert!(dns_subdomain("f", &format!("{longest}c")).is_err());
        assert!(dns_subdomain("f", "").is_err());
    }

    #[test]
    fn secret_keys_follow_the_config_map_key_rule() {
        for ok in ["key1", "Key_1", ".hidden", "a.b-c", "a.."] {
            assert!(secret_key("f", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".", "..", "...x", "a/b", "a?b", "a b", &"k".repeat(254)] {
            assert_eq!(category(secret_key("f", bad)), "InvalidName", "{bad:?}");
        }
    }

    #[test]
    fn a_renewal_one_second_before_an_hour_long_validity_is_a_hot_loop() {
        assert_eq!(
            lifetimes(Some("1h"), Some("59m59s")),
            Err(SpecError::RenewalMarginTooShort)
        );
    }

    #[test]
    fn a_token_stays_in_use_at_least_a_minute() {
        assert!(lifetimes(Some("2m"), Some("1m")).is_ok());
        assert_eq!(
            lifetimes(Some("2m"), Some("61s")),
            Err(SpecError::RenewalMarginTooShort)
        );
    }

    #[test]
    fn a_token_stays_in_use_at_least_a_tenth_of_its_validity() {
        assert!(lifetimes(Some("10h"), Some("9h")).is_ok());
        assert_eq!(
            lifetimes(Some("10h"), Some("9h1ns")),
            Err(SpecError::RenewalMarginTooShort)
        );
    }

    #[test]
    fn the_default_renewal_always_leaves_the_margin() {
        for validity in ["2m", "121s", "7m", "8h", "8760h"] {
            assert!(lifetimes(Some(validity), None).is_ok(), "{validity}");
        }
    }

    #[test]
    fn renew_before_zero_or_beyond_validity_is_refused() {
        assert!(lifetimes(Some("1h"), Some("0s")).is_err());
        assert!(lifetimes(Some("1h"), Some("2h")).is_err());
        assert!(lifetimes(Some("1h"), Some("2562047h")).is_err());
    }

    #[test]
    fn validity_is_between_two_minutes_and_a_year() {
        assert_eq!(
            lifetimes(Some("119s"), None),
            Err(SpecError::ValidityOutOfRange)
        );
        assert_eq!(
            lifetimes(Some("8760h1ns"), None),
            Err(SpecError::ValidityOutOfRange)
        );
        assert!(lifetimes(Some("31536000000000000ns"), None).is_ok());
    }

    #[test]
    fn an_overflowing_validity_is_an_invalid_duration() {
        let err = lifetimes(Some("99999999999999999999h"), None).unwrap_err();
        assert_eq!(err.category(), "InvalidDuration");
    }

    #[test]
    fn https_endpoints_with_ports_and_paths_are_accepted() {
        for ok in [
            "https://acct.blob.core.windows.net",
            "https://acct.blob.core.windows.net/",
            "https://example.com:8443/acct/x_y~z.-%20",
            "http://127.0.0.1:10000/devstoreaccount1",
            "http://127.255.0.9",
            "http://localhost:10000",
            "http://[::1]:10000/acct",
            "https://[::1]",
        ] {
            assert!(is_endpoint(ok), "{ok:?}");
        }
    }

    #[test]
    fn an_attacker_endpoint_cannot_inject_a_connection_string_field() {
        assert_eq!(
            category(endpoint(
                "storageAccount.endpoints.blob",
                "https://attacker.example/x;SharedAccessSignature=evil"
            )),
            "InvalidEndpoint"
        );
    }

    #[test]
    fn endpoints_without_https_query_fragment_or_userinfo_are_refused() {
        for bad in [
            "http://attacker.example",
            "http://127.0.0.1.attacker.example",
            "http://localhost.attacker.example",
            "http://127.0.0.256",
            "http://127.00.0.1",
            "https://user@host",
            "https://user:pw@host",
            "https://host/?q",
            "https://host/#f",
            "https://host/a=b",
            "https://host/a b",
            "https://host/a\nb",
            "https://host:123456",
            "https://host:",
            "https://",
            "ftp://host",
            "HTTPS://host",
            "https://-host",
            "https://host..x",
            "//host",
            "",
        ] {
            assert!(!is_endpoint(bad), "{bad:?}");
        }
    }

    #[test]
    fn overlong_endpoints_are_too_long() {
        let url = format!("https://h/{}", "a".repeat(ENDPOINT_MAX_LENGTH));
        assert_eq!(category(endpoint("f", &url)), "FieldTooLong");
    }

    #[test]
    fn ip_is_an_address_or_an_ascending_range() {
        for ok in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255-255.255.255.255",
            "10.0.0.1-10.0.0.9",
        ] {
            assert!(ip(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "10.0.0",
            "10.0.0.01",
            "10.0.0.256",
            "10.0.0.2-10.0.0.1",
            "10.0.0.1-",
            "::1",
            " 10.0.0.1",
            "10.0.0.1/8",
            "1.2.3.4-5.6.7.8-9.9.9.9",
        ] {
            assert_eq!(category(ip(bad)), "InvalidIp", "{bad:?}");
        }
    }

    #[test]
    fn control_characters_never_reach_the_string_to_sign() {
        for bad in ["a\nb", "a\rb", "\u{0}", "a\u{7f}", "a\u{85}b"] {
            assert_eq!(category(text("f", bad, 100)), "ControlCharacter", "{bad:?}");
        }
        assert!(text("f", "ü/ñ €", 100).is_ok());
    }

    #[test]
    fn lengths_count_characters_as_the_api_server_does() {
        assert!(text("f", &"é".repeat(63), 63).is_ok());
        assert_eq!(category(text("f", &"é".repeat(64), 63)), "FieldTooLong");
    }

    #[test]
    fn error_messages_escape_and_shorten_the_value() {
        let err = dns_subdomain("f", &format!("a\n{}", "x".repeat(500))).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.len() < 300, "{message}");
    }
}
