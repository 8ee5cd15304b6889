//! The SAS signer: pure, deterministic, no I/O and no clock (times are inputs).
//!
//! PUBLIC CONTRACT used by the CLI and the controller. The signer's owner may add items and
//! submodules, but must keep these names and shapes (or update every caller).

use jiff::Timestamp;

/// What a SAS grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// Account SAS. `services`: letters of `bqtf`; `resource_types`: letters of `sco` (any order).
    Account {
        services: String,
        resource_types: String,
    },
    Container {
        container: String,
    },
    /// `snapshot` gives sr=bs, `version_id` sr=bv; both absent: sr=b. At most one of them.
    Blob {
        container: String,
        blob: String,
        snapshot: Option<String>,
        version_id: Option<String>,
    },
    /// sr=d; `sdd` is derived from the number of path segments.
    Directory {
        container: String,
        path: String,
    },
    Share {
        share: String,
    },
    File {
        share: String,
        path: String,
    },
    Queue {
        queue: String,
    },
    Table {
        table: String,
        key_range: TableKeyRange,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableKeyRange {
    pub start_pk: Option<String>,
    pub start_rk: Option<String>,
    pub end_pk: Option<String>,
    pub end_rk: Option<String>,
}

/// The storage service a resource lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Blob,
    Queue,
    Table,
    File,
}

/// `spr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Https,
    HttpsAndHttp,
}

/// Response header overrides (`rscc`, `rscd`, `rsce`, `rscl`, `rsct`); blob and file only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_type: Option<String>,
}

/// Fields only a user delegation SAS carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegationExtras {
    pub authorized_user_object_id: Option<String>, // saoid
    pub unauthorized_user_object_id: Option<String>, // suoid
    pub correlation_id: Option<String>,            // scid
    pub delegated_user_object_id: Option<String>,  // sduoid
    pub request_headers: Vec<(String, String)>,    // srh
    pub request_query: Vec<(String, String)>,      // srq
}

/// Everything that goes into one SAS except the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasParams {
    pub account_name: String,
    pub resource: Resource,
    /// Letters in any order; emitted in canonical order. `None` only with a stored policy.
    pub permissions: Option<String>,
    pub start: Option<Timestamp>,
    /// Required unless a stored access policy supplies it.
    pub expiry: Option<Timestamp>,
    /// `a.b.c.d` or `a.b.c.d-e.f.g.h`.
    pub ip: Option<String>,
    pub protocol: Option<Protocol>,
    /// Signed version `sv`; `None` means [`NEWEST_VERSION`].
    pub version: Option<String>,
    /// Stored access policy id (`si`).
    pub policy_id: Option<String>,
    /// `ses`.
    pub encryption_scope: Option<String>,
    pub response_headers: ResponseHeaders,
    pub delegation: DelegationExtras,
}

/// A decoded account key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKey(Vec<u8>);

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

impl AccountKey {
    /// Decodes a base64 account key. The error never contains the input.
    pub fn from_base64(encoded: &str) -> Result<Self, SasError> {
        let _ = encoded;
        todo!("signer owner implements")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The fields of Get User Delegation Key's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDelegationKey {
    pub signed_oid: String,
    pub signed_tid: String,
    pub signed_start: String,
    pub signed_expiry: String,
    pub signed_service: String,
    pub signed_version: String,
    pub signed_delegated_user_tid: Option<String>,
    pub value: AccountKey,
}

#[derive(Debug, Clone)]
pub enum SigningKey {
    Account(AccountKey),
    UserDelegation(UserDelegationKey),
}

/// A signed token and the facts callers report about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sas {
    /// The query string without a leading `?`.
    pub token: String,
    /// Canonical permission letters (None when only a stored policy gives them).
    pub permissions: Option<String>,
    pub version: String,
    pub expiry: Option<Timestamp>,
}

/// The newest signed version the tests prove.
pub const NEWEST_VERSION: &str = "2026-10-06";

/// Why a SAS could not be signed. Messages name the offending field and never contain a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("{0}")]
    Invalid(String),
}

impl SasError {
    /// A static, low-cardinality name for metrics and Events.
    pub fn category(&self) -> &'static str {
        "InvalidSasRequest"
    }
}

/// Signs `params` with `key`.
pub fn sign(params: &SasParams, key: &SigningKey) -> Result<Sas, SasError> {
    let _ = (params, key);
    todo!("signer owner implements")
}

impl Resource {
    /// The service this resource lives in; `None` for an account SAS.
    pub fn service(&self) -> Option<Service> {
        todo!("signer owner implements")
    }
}

/// `https://{account}.{service}.core.windows.net`
pub fn default_endpoint(account: &str, service: Service) -> String {
    let _ = (account, service);
    todo!("signer owner implements")
}

/// The resource's URL under a service endpoint (no trailing `/` on `endpoint`), with path
/// segments percent-encoded; for an account SAS, the endpoint itself.
pub fn resource_url(endpoint: &str, resource: &Resource) -> String {
    let _ = (endpoint, resource);
    todo!("signer owner implements")
}
