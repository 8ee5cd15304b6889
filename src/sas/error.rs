//! Why a SAS could not be signed.

/// Why a SAS could not be signed. Messages name the offending field and never contain a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// A key (account key or user delegation key value) is not valid base64.
    #[error("the {which} is not valid base64")]
    KeyNotBase64 { which: &'static str },

    /// A field the resource kind needs was not given.
    #[error("missing {field}: required for {context}")]
    MissingField {
        field: &'static str,
        context: &'static str,
    },

    /// A field this kind of SAS cannot carry.
    #[error("{field} cannot be used with {context}")]
    FieldNotAllowed {
        field: &'static str,
        context: &'static str,
    },

    /// A field the chosen signed version (`sv`) cannot carry.
    #[error("{field} needs signed version {minimum} or newer, but sv is {version}")]
    FieldNeedsVersion {
        field: &'static str,
        minimum: &'static str,
        version: String,
    },

    /// A user delegation key was given for a kind of SAS that cannot use one.
    #[error("a user delegation key cannot sign {resource}")]
    UserDelegationUnsupported { resource: &'static str },

    /// A permission letter the resource kind does not support.
    #[error("permission {letter:?} is not allowed for {resource}; allowed: {allowed}")]
    InvalidPermission {
        letter: char,
        resource: &'static str,
        allowed: &'static str,
    },

    /// A letter outside `bqtf` in an account SAS's services.
    #[error("service {letter:?} is not valid; allowed: {allowed}")]
    InvalidService { letter: char, allowed: &'static str },

    /// A letter outside `sco` in an account SAS's resource types.
    #[error("resource type {letter:?} is not valid; allowed: {allowed}")]
    InvalidResourceType { letter: char, allowed: &'static str },

    /// The signed version is malformed or outside the supported range.
    #[error("signed version {version:?} is not supported: use a date from {oldest} to {newest}")]
    UnsupportedVersion {
        version: String,
        oldest: &'static str,
        newest: &'static str,
    },

    /// Expiry at or before start (compared at the signed, whole-second precision).
    #[error("expiry must be after start")]
    ExpiryNotAfterStart,

    /// A time that cannot be written as `YYYY-MM-DDThh:mm:ssZ`.
    #[error("{field} must be between years 0001 and 9999")]
    TimeOutOfRange { field: &'static str },

    /// A resource name that breaks Azure's naming rules.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    /// `sip` that is neither one IPv4 address nor an ascending range of two.
    #[error(
        "invalid IP address or range {value:?}: expected a.b.c.d or a.b.c.d-e.f.g.h with start <= end"
    )]
    InvalidIp { value: String },

    /// A blob given both a snapshot and a version id.
    #[error("a blob SAS takes a snapshot or a version id, not both")]
    SnapshotAndVersion,

    /// A request header or query parameter name that cannot be signed.
    #[error("invalid {field} name {name:?}: {reason}")]
    InvalidRequestField {
        field: &'static str,
        name: String,
        reason: &'static str,
    },
}

impl SasError {
    /// A static, low-cardinality name for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            SasError::KeyNotBase64 { .. } => "KeyNotBase64",
            SasError::MissingField { .. } => "MissingField",
            SasError::FieldNotAllowed { .. } => "FieldNotAllowed",
            SasError::FieldNeedsVersion { .. } => "FieldNeedsVersion",
            SasError::UserDelegationUnsupported { .. } => "UserDelegationUnsupported",
            SasError::InvalidPermission { .. } => "InvalidPermission",
            SasError::InvalidService { .. } => "InvalidService",
            SasError::InvalidResourceType { .. } => "InvalidResourceType",
            SasError::UnsupportedVersion { .. } => "UnsupportedVersion",
            SasError::ExpiryNotAfterStart => "ExpiryNotAfterStart",
            SasError::TimeOutOfRange { .. } => "TimeOutOfRange",
            SasError::InvalidName { .. } => "InvalidName",
            SasError::InvalidIp { .. } => "InvalidIp",
            SasError::SnapshotAndVersion => "SnapshotAndVersion",
            SasError::InvalidRequestField { .. } => "InvalidRequestField",
        }
    }
}
