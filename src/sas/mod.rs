//! The SAS signer: pure, deterministic, no I/O and no clock (times are inputs).
//!
//! PUBLIC CONTRACT used by the CLI and the controller. The signer's owner may add items and
//! submodules, but must keep these names and shapes (or update every caller).

mod encoding;
mod error;
mod key;
mod permissions;
mod string_to_sign;
mod url;
mod validate;
mod version;

use std::borrow::Cow;

use jiff::Timestamp;

pub use encoding::encode as percent_encode;
pub use error::SasError;
pub use key::AccountKey;
pub use permissions::{
    Letters, PermissionScope, canonical_permissions, canonical_resource_types, canonical_services,
};
pub use url::{default_endpoint, resource_url};
pub use version::OLDEST_VERSION;

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
    /// Signed version `sv`; `None` means [`NEWEST_VERSION`], or [`TABLE_DEFAULT_VERSION`] for a
    /// table SAS.
    pub version: Option<String>,
    /// Stored access policy id (`si`).
    pub policy_id: Option<String>,
    /// `ses`.
    pub encryption_scope: Option<String>,
    pub response_headers: ResponseHeaders,
    pub delegation: DelegationExtras,
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

/// A signed token and the facts callers report about it. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Sas {
    /// The query string without a leading `?`.
    pub token: String,
    /// Canonical permission letters (None when only a stored policy gives them); held inline.
    pub permissions: Option<Letters>,
    /// `sv`; borrowed when the default applied, so a typical token allocates only itself.
    pub version: Cow<'static, str>,
    pub expiry: Option<Timestamp>,
}

impl std::fmt::Debug for Sas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sas")
            .field("token", &"<redacted>")
            .field("permissions", &self.permissions)
            .field("version", &self.version)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// The newest signed version the tests prove.
pub const NEWEST_VERSION: &str = "2026-10-06";

/// The default `sv` of a table SAS: the version Azure's table SDKs (azure-data-tables) sign
/// with, and the newest the Table service documents; the table layout is the same in every sv.
pub const TABLE_DEFAULT_VERSION: &str = "2019-02-02";

/// Signs `params` with `key`.
pub fn sign(params: &SasParams, key: &SigningKey) -> Result<Sas, SasError> {
    let prepared = string_to_sign::prepare(params, key)?;
    // Sized for the common case so the buffer rarely grows; the token reuses it.
    let mut buffer = Vec::with_capacity(384);
    prepared.write_string_to_sign(&mut buffer);
    let signature = prepared.key.signature(&buffer);
    buffer.clear();
    prepared.write_token(&mut buffer, &signature);
    Ok(Sas {
        token: encoding::into_text(buffer),
        permissions: prepared.permissions,
        version: match &params.version {
            Some(version) => Cow::Owned(version.clone()),
            None => Cow::Borrowed(params.resource.default_version()),
        },
        expiry: params.expiry.map(encoding::truncate_to_second),
    })
}

/// The exact string `sign` would HMAC for `params` and `key` (for tests and debugging; it holds
/// no key material).
pub fn string_to_sign(params: &SasParams, key: &SigningKey) -> Result<String, SasError> {
    let prepared = string_to_sign::prepare(params, key)?;
    let mut message = Vec::with_capacity(256);
    prepared.write_string_to_sign(&mut message);
    Ok(encoding::into_text(message))
}

impl Resource {
    /// The `sv` signed when none is given.
    pub fn default_version(&self) -> &'static str {
        match self {
            Resource::Table { .. } => TABLE_DEFAULT_VERSION,
            _ => NEWEST_VERSION,
        }
    }

    /// The service this resource lives in; `None` for an account SAS.
    pub fn service(&self) -> Option<Service> {
        match self {
            Resource::Account { .. } => None,
            Resource::Container { .. } | Resource::Blob { .. } | Resource::Directory { .. } => {
                Some(Service::Blob)
            }
            Resource::Share { .. } | Resource::File { .. } => Some(Service::File),
            Resource::Queue { .. } => Some(Service::Queue),
            Resource::Table { .. } => Some(Service::Table),
        }
    }
}
