//! Validation of [`SasParams`] into a prepared, borrowed form, and the two renderings of it:
//! the string-to-sign (layout chosen by `sv`) and the token (parameter order as the Python SDK
//! writes it).

use super::encoding::{FieldValue, SasTime, Unreserved, floor_second, push_decimal, push_encoded};
use super::key::Signature;
use super::permissions::{
    Letters, NEWEST_PERMISSION_FLOOR, PermissionScope, canonical_permissions,
    canonical_resource_types, canonical_services, permission_floor,
};
use super::version::{SignedVersion, floor};
use super::{
    AccountKey, DelegationExtras, Protocol, Resource, ResponseHeaders, SasError, SasParams,
    SigningKey, TableKeyRange, UserDelegationKey, validate,
};

/// Which string-to-sign family a SAS belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Account,
    Blob,
    File,
    Queue,
    Table,
}

/// Everything a SAS carries, validated and borrowed from the inputs.
pub(super) struct Prepared<'a> {
    layout: Layout,
    pub(super) version: SignedVersion<'a>,
    account: &'a str,
    pub(super) permissions: Option<Letters>,
    start: Option<SasTime>,
    expiry: Option<SasTime>,
    ip: Option<&'a str>,
    protocol: Option<Protocol>,
    policy_id: Option<&'a str>,
    encryption_scope: Option<&'a str>,
    services: Option<Letters>,
    resource_types: Option<Letters>,
    /// Container, share, queue or table name.
    container: &'a str,
    /// Blob name, directory path or file path.
    path: Option<&'a str>,
    sr: Option<Unreserved<'static>>,
    snapshot_time: Option<&'a str>,
    directory_depth: Option<usize>,
    /// Borrowed whole (not as five `Option<&str>`) to keep `Prepared` small: it is moved once
    /// per signature.
    response_headers: &'a ResponseHeaders,
    table_keys: Option<&'a TableKeyRange>,
    delegation: Option<(&'a UserDelegationKey, &'a DelegationExtras)>,
    pub(super) key: &'a AccountKey,
}

/// `Some(value)` unless absent or empty: an empty value is the same as no value, as in the SDK.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

const WITHOUT_POLICY: &str = "a SAS without a stored access policy";
const ACCOUNT_KEY_SAS: &str = "a SAS signed with an account key";
const USER_DELEGATION_SAS: &str = "a user delegation SAS";

fn not_allowed(field: &'static str, context: &'static str) -> SasError {
    SasError::FieldNotAllowed { field, context }
}

/// Fails with [`SasError::FieldNotAllowed`] for the first present field.
fn forbid(fields: &[(&'static str, bool)], context: &'static str) -> Result<(), SasError> {
    match fields.iter().find(|(_, given)| *given) {
        Some((field, _)) => Err(not_allowed(field, context)),
        None => Ok(()),
    }
}

pub(super) fn prepare<'a>(
    params: &'a SasParams,
    key: &'a SigningKey,
) -> Result<Prepared<'a>, SasError> {
    let version = SignedVersion::parse(
        params
            .version
            .as_deref()
            .unwrap_or(params.resource.default_version()),
    )?;
    validate::account_name(&params.account_name)?;

    let (key, delegation) = match key {
        SigningKey::Account(key) => (key, None),
        SigningKey::UserDelegation(udk) => {
            check_user_delegation_key(udk)?;
            (&udk.value, Some((udk, &params.delegation)))
        }
    };

    let (layout, scope) = match &params.resource {
        Resource::Account { .. } => (Layout::Account, PermissionScope::Account),
        Resource::Container { .. } => (Layout::Blob, PermissionScope::Container),
        Resource::Blob { .. } => (Layout::Blob, PermissionScope::Blob),
        Resource::Directory { .. } => (Layout::Blob, PermissionScope::Directory),
        Resource::Share { .. } => (Layout::File, PermissionScope::Share),
        Resource::File { .. } => (Layout::File, PermissionScope::File),
        Resource::Queue { .. } => (Layout::Queue, PermissionScope::Queue),
        Resource::Table { .. } => (Layout::Table, PermissionScope::Table),
    };

    let permissions = present(&params.permissions)
        .map(|p| canonical_permissions(scope, p))
        .transpose()?;
    if !version.at_least(NEWEST_PERMISSION_FLOOR) {
        for letter in permissions.iter().flat_map(Letters::bytes) {
            if let Some((field, minimum)) = permission_floor(scope, letter) {
                version.require(field, minimum)?;
            }
        }
    }
    let policy_id = present(&params.policy_id);
    if let Some(id) = policy_id {
        validate::policy_id(id)?;
    } else {
        if permissions.is_none() {
            return Err(SasError::MissingField {
                field: "permissions",
                context: WITHOUT_POLICY,
            });
        }
        if params.expiry.is_none() {
            return Err(SasError::MissingField {
                field: "expiry",
                context: WITHOUT_POLICY,
            });
        }
    }

    let start = params.start.map(|t| SasTime::new("start", t)).transpose()?;
    let expiry = params
        .expiry
        .map(|t| SasTime::new("expiry", t))
        .transpose()?;
    if let (Some(s), Some(e)) = (params.start, params.expiry)
        && floor_second(e) <= floor_second(s)
    {
        return Err(SasError::ExpiryNotAfterStart);
    }

    let ip = present(&params.ip);
    if let Some(ip) = ip {
        validate::ip(ip)?;
    }
    let protocol = params.protocol;

    let encryption_scope = present(&params.encryption_scope);
    let response_headers = &params.response_headers;
    let has_response_headers = response_header_values(response_headers)
        .iter()
        .any(Option::is_some);

    let extras = &params.delegation;
    let saoid = present(&extras.authorized_user_object_id).is_some();
    let suoid = present(&extras.unauthorized_user_object_id).is_some();
    let scid = present(&extras.correlation_id).is_some();
    let sduoid = present(&extras.delegated_user_object_id).is_some();
    let srh = !extras.request_headers.is_empty();
    let srq = !extras.request_query.is_empty();
    const SAOID: &str = "authorized user object id (saoid)";
    const SUOID: &str = "unauthorized user object id (suoid)";
    const SCID: &str = "correlation id (scid)";
    const SDUOID: &str = "delegated user object id (sduoid)";
    const SKDUTID: &str = "delegated user tenant id (skdutid)";
    const SRH: &str = "request headers (srh)";
    const SRQ: &str = "request query parameters (srq)";
    const SES: &str = "encryption scope (ses)";
    const RSC: &str = "response header overrides (rscc..rsct)";
    const SI: &str = "stored access policy (si)";

    if delegation.is_none() {
        forbid(
            &[
                (SAOID, saoid),
                (SUOID, suoid),
                (SCID, scid),
                (SDUOID, sduoid),
                (SRH, srh),
                (SRQ, srq),
            ],
            ACCOUNT_KEY_SAS,
        )?;
    } else {
        forbid(&[(SI, policy_id.is_some())], USER_DELEGATION_SAS)?;
        if sduoid {
            version.require(SDUOID, floor::DELEGATED_USER)?;
        }
        if delegation.is_some_and(|(udk, _)| present(&udk.signed_delegated_user_tid).is_some()) {
            version.require(SKDUTID, floor::DELEGATED_USER)?;
        }
    }

    let mut prepared = Prepared {
        layout,
        version,
        account: &params.account_name,
        permissions,
        start,
        expiry,
        ip,
        protocol,
        policy_id,
        encryption_scope,
        services: None,
        resource_types: None,
        container: "",
        path: None,
        sr: None,
        snapshot_time: None,
        directory_depth: None,
        response_headers,
        table_keys: None,
        delegation,
        key,
    };

    match &params.resource {
        Resource::Account {
            services,
            resource_types,
        } => {
            if delegation.is_some() {
                return Err(SasError::UserDelegationUnsupported {
                    resource: "an account SAS",
                });
            }
            forbid(
                &[(SI, policy_id.is_some()), (RSC, has_response_headers)],
                "an account SAS",
            )?;
            if services.is_empty() {
                return Err(SasError::MissingField {
                    field: "services",
                    context: "an account SAS",
                });
            }
            if resource_types.is_empty() {
                return Err(SasError::MissingField {
                    field: "resource types",
                    context: "an account SAS",
                });
            }
            prepared.services = Some(canonical_services(services)?);
            prepared.resource_types = Some(canonical_resource_types(resource_types)?);
            if encryption_scope.is_some() {
                version.require(SES, floor::ENCRYPTION_SCOPE)?;
            }
        }
        Resource::Container { container }
        | Resource::Blob { container, .. }
        | Resource::Directory { container, .. } => {
            validate::container_name(container)?;
            prepared.container = container;
            match &params.resource {
                Resource::Blob {
                    blob,
                    snapshot,
                    version_id,
                    ..
                } => {
                    validate::blob_name(blob)?;
                    prepared.path = Some(blob);
                    let (snapshot, version_id) = (present(snapshot), present(version_id));
                    prepared.sr = Some(match (snapshot, version_id) {
                        (Some(_), Some(_)) => return Err(SasError::SnapshotAndVersion),
                        (Some(_), None) => {
                            version.require("snapshot (sr=bs)", floor::BLOB_RESOURCE)?;
                            Unreserved("bs")
                        }
                        (None, Some(_)) => {
                            version.require("version id (sr=bv)", floor::BLOB_VERSION)?;
                            Unreserved("bv")
                        }
                        (None, None) => Unreserved("b"),
                    });
                    prepared.snapshot_time = snapshot.or(version_id);
                }
                Resource::Directory { path, .. } => {
                    validate::path("directory path", path)?;
                    version.require("directory SAS (sr=d)", floor::DIRECTORY)?;
                    prepared.path = Some(path);
                    prepared.sr = Some(Unreserved("d"));
                    // Validated: no empty segments, so the depth is one more than the slashes.
                    prepared.directory_depth =
                        Some(path.bytes().filter(|&b| b == b'/').count() + 1);
                }
                _ => prepared.sr = Some(Unreserved("c")),
            }
            if encryption_scope.is_some() {
                version.require(SES, floor::ENCRYPTION_SCOPE)?;
            }
            if delegation.is_some() {
                version.require(USER_DELEGATION_SAS, floor::USER_DELEGATION)?;
                for (field, given) in [(SAOID, saoid), (SUOID, suoid), (SCID, scid)] {
                    if given {
                        version.require(field, floor::AGENT_OBJECT_IDS)?;
                    }
                }
                for (field, names) in [(SRH, &extras.request_headers), (SRQ, &extras.request_query)]
                {
                    if !names.is_empty() {
                        version.require(field, floor::REQUEST_BINDING)?;
                        check_request_fields(field, names)?;
                    }
                }
            }
        }
        Resource::Share { share } | Resource::File { share, .. } => {
            validate::share_name(share)?;
            prepared.container = share;
            if let Resource::File { path, .. } = &params.resource {
                validate::path("file path", path)?;
                prepared.path = Some(path);
                prepared.sr = Some(Unreserved("f"));
            } else {
                prepared.sr = Some(Unreserved("s"));
            }
            forbid(&[(SES, encryption_scope.is_some())], "a file or share SAS")?;
            if delegation.is_some() {
                version.require("user delegation SAS for files", floor::DELEGATED_USER)?;
                forbid(
                    &[
                        (SAOID, saoid),
                        (SUOID, suoid),
                        (SCID, scid),
                        (SRH, srh),
                        (SRQ, srq),
                    ],
                    "a file or share SAS",
                )?;
            }
        }
        Resource::Queue { queue } => {
            validate::queue_name(queue)?;
            prepared.container = queue;
            forbid(
                &[
                    (SES, encryption_scope.is_some()),
                    (RSC, has_response_headers),
                ],
                "a queue SAS",
            )?;
            if delegation.is_some() {
                version.require("user delegation SAS for queues", floor::DELEGATED_USER)?;
                forbid(
                    &[
                        (SAOID, saoid),
                        (SUOID, suoid),
                        (SCID, scid),
                        (SRH, srh),
                        (SRQ, srq),
                    ],
                    "a queue SAS",
                )?;
            }
        }
        Resource::Table { table, key_range } => {
            validate::table_name(table)?;
            if delegation.is_some() {
                return Err(SasError::UserDelegationUnsupported {
                    resource: "a table SAS",
                });
            }
            forbid(
                &[
                    (SES, encryption_scope.is_some()),
                    (RSC, has_response_headers),
                ],
                "a table SAS",
            )?;
            prepared.container = table;
            prepared.table_keys = Some(key_range);
        }
    }
    Ok(prepared)
}

fn check_user_delegation_key(udk: &UserDelegationKey) -> Result<(), SasError> {
    const CONTEXT: &str = "a user delegation key";
    for (field, value) in [
        ("signedOid", &udk.signed_oid),
        ("signedTid", &udk.signed_tid),
        ("signedStart", &udk.signed_start),
        ("signedExpiry", &udk.signed_expiry),
        ("signedService", &udk.signed_service),
        ("signedVersion", &udk.signed_version),
    ] {
        if value.is_empty() {
            return Err(SasError::MissingField {
                field,
                context: CONTEXT,
            });
        }
    }
    Ok(())
}

fn check_request_fields(field: &'static str, pairs: &[(String, String)]) -> Result<(), SasError> {
    for (index, (name, _)) in pairs.iter().enumerate() {
        validate::request_field_name(field, name)?;
        if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(SasError::InvalidRequestField {
                field,
                name: name.clone(),
                reason: "is given more than once",
            });
        }
    }
    Ok(())
}

/// The response header overrides in string-to-sign and token order, empty ones as absent.
fn response_header_values(headers: &ResponseHeaders) -> [Option<&str>; 5] {
    [
        present(&headers.cache_control),
        present(&headers.content_disposition),
        present(&headers.content_encoding),
        present(&headers.content_language),
        present(&headers.content_type),
    ]
}

/// A table SAS's key range in string-to-sign and token order (`spk srk epk erk`).
fn table_key_values(range: Option<&TableKeyRange>) -> [Option<&str>; 4] {
    range.map_or([None; 4], |range| {
        [
            present(&range.start_pk),
            present(&range.start_rk),
            present(&range.end_pk),
            present(&range.end_rk),
        ]
    })
}

/// One string-to-sign line: the raw value (or nothing) and `\n`.
#[inline]
fn line<V: FieldValue>(out: &mut Vec<u8>, value: Option<V>) {
    if let Some(value) = value {
        value.push_raw(out);
    }
    out.push(b'\n');
}

impl Prepared<'_> {
    fn service_name(&self) -> &'static str {
        match self.layout {
            Layout::Account => "",
            Layout::Blob => "blob",
            Layout::File => "file",
            Layout::Queue => "queue",
            Layout::Table => "table",
        }
    }

    fn canonical_resource(&self, out: &mut Vec<u8>) {
        out.push(b'/');
        out.extend_from_slice(self.service_name().as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.account.as_bytes());
        out.push(b'/');
        if self.layout == Layout::Table {
            // Validated ASCII alphanumeric, so per-byte lowercasing is exact.
            out.extend(self.container.bytes().map(|b| b.to_ascii_lowercase()));
        } else {
            out.extend_from_slice(self.container.as_bytes());
        }
        if let Some(path) = self.path {
            out.push(b'/');
            out.extend_from_slice(path.as_bytes());
        }
        out.push(b'\n');
    }

    fn user_delegation_key_lines(&self, out: &mut Vec<u8>, udk: &UserDelegationKey) {
        line(out, Some(&udk.signed_oid));
        line(out, Some(&udk.signed_tid));
        line(out, Some(&udk.signed_start));
        line(out, Some(&udk.signed_expiry));
        line(out, Some(&udk.signed_service));
        line(out, Some(&udk.signed_version));
    }

    fn response_header_lines(&self, out: &mut Vec<u8>) {
        for value in response_header_values(self.response_headers) {
            line(out, value);
        }
    }

    /// Writes the string-to-sign for this SAS's layout and version into `out`.
    pub(super) fn write_string_to_sign(&self, out: &mut Vec<u8>) {
        let v = self.version;
        let permissions = self.permissions;
        if self.layout == Layout::Account {
            line(out, Some(self.account));
            line(out, permissions);
            line(out, self.services);
            line(out, self.resource_types);
            line(out, self.start);
            line(out, self.expiry);
            line(out, self.ip);
            line(out, self.protocol);
            line(out, Some(v));
            if v.at_least(floor::ENCRYPTION_SCOPE) {
                line(out, self.encryption_scope);
            }
            // The account layout keeps its trailing newline.
            return;
        }

        line(out, permissions);
        line(out, self.start);
        line(out, self.expiry);
        self.canonical_resource(out);
        match self.delegation {
            Some((udk, extras)) => {
                self.user_delegation_key_lines(out, udk);
                if self.layout == Layout::Blob && v.at_least(floor::AGENT_OBJECT_IDS) {
                    line(out, present(&extras.authorized_user_object_id));
                    line(out, present(&extras.unauthorized_user_object_id));
                    line(out, present(&extras.correlation_id));
                }
                if v.at_least(floor::DELEGATED_USER) {
                    line(out, present(&udk.signed_delegated_user_tid));
                    line(out, present(&extras.delegated_user_object_id));
                }
            }
            None => line(out, self.policy_id),
        }
        line(out, self.ip);
        line(out, self.protocol);
        line(out, Some(v));
        match self.layout {
            Layout::Blob => {
                if v.at_least(floor::BLOB_RESOURCE) {
                    line(out, self.sr);
                    line(out, self.snapshot_time);
                }
                if v.at_least(floor::ENCRYPTION_SCOPE) {
                    line(out, self.encryption_scope);
                }
                if let Some((_, extras)) = self.delegation
                    && v.at_least(floor::REQUEST_BINDING)
                {
                    for (name, value) in &extras.request_headers {
                        out.extend_from_slice(name.as_bytes());
                        out.push(b':');
                        out.extend_from_slice(value.as_bytes());
                        out.push(b'\n');
                    }
                    out.push(b'\n');
                    for (name, value) in &extras.request_query {
                        out.push(b'\n');
                        out.extend_from_slice(name.as_bytes());
                        out.push(b':');
                        out.extend_from_slice(value.as_bytes());
                    }
                    out.push(b'\n');
                }
                self.response_header_lines(out);
            }
            Layout::File => self.response_header_lines(out),
            Layout::Table => {
                for key in table_key_values(self.table_keys) {
                    line(out, key);
                }
            }
            Layout::Queue | Layout::Account => {}
        }
        // Service and user delegation layouts have no trailing newline.
        out.pop();
    }

    /// Writes the token (without `?`) in the Python SDK's parameter order; `signature` is the
    /// base64 HMAC.
    pub(super) fn write_token(&self, out: &mut Vec<u8>, signature: &Signature) {
        let mut token = Token(out);
        token.param("st", self.start);
        token.param("se", self.expiry);
        token.param("sp", self.permissions);
        token.param("sip", self.ip);
        token.param("spr", self.protocol);
        token.param("sv", Some(self.version));
        let extras = self.delegation.map(|(_, extras)| extras);
        let sduoid = extras.and_then(|e| present(&e.delegated_user_object_id));
        match self.layout {
            Layout::Account => {
                token.param("ss", self.services);
                token.param("srt", self.resource_types);
                token.param("ses", self.encryption_scope);
            }
            Layout::Blob => {
                token.param("si", self.policy_id);
                token.param("sduoid", sduoid);
                token.param("sr", self.sr);
                token.response_headers(self.response_headers);
                token.param("ses", self.encryption_scope);
                if let Some(depth) = self.directory_depth {
                    token.start("sdd");
                    push_decimal(token.0, depth);
                }
                if let Some(extras) = extras {
                    token.param("saoid", present(&extras.authorized_user_object_id));
                    token.param("suoid", present(&extras.unauthorized_user_object_id));
                    token.param("scid", present(&extras.correlation_id));
                }
                self.delegation_params(&mut token);
                if let Some(extras) = extras {
                    token.names("srh", &extras.request_headers);
                    token.names("srq", &extras.request_query);
                }
            }
            Layout::Queue => {
                token.param("si", self.policy_id);
                token.param("sduoid", sduoid);
                self.delegation_params(&mut token);
            }
            Layout::File => {
                token.param("si", self.policy_id);
                token.param("sduoid", sduoid);
                token.param("sr", self.sr);
                token.response_headers(self.response_headers);
                self.delegation_params(&mut token);
            }
            Layout::Table => {
                token.param("si", self.policy_id);
                // Validated letters and digits.
                token.param("tn", Some(Unreserved(self.container)));
                for (name, value) in ["spk", "srk", "epk", "erk"]
                    .into_iter()
                    .zip(table_key_values(self.table_keys))
                {
                    token.param(name, value);
                }
            }
        }
        token.param("sig", Some(signature));
    }

    fn delegation_params(&self, token: &mut Token<'_>) {
        if let Some((udk, _)) = self.delegation {
            token.param("skoid", Some(&udk.signed_oid));
            token.param("sktid", Some(&udk.signed_tid));
            token.param("skt", Some(&udk.signed_start));
            token.param("ske", Some(&udk.signed_expiry));
            token.param("sks", Some(&udk.signed_service));
            token.param("skv", Some(&udk.signed_version));
            token.param("skdutid", present(&udk.signed_delegated_user_tid));
        }
    }
}

/// A query string under construction.
struct Token<'o>(&'o mut Vec<u8>);

// Inlined so each parameter name is a constant-length copy rather than a `memcpy` call.
impl Token<'_> {
    #[inline(always)]
    fn start(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(b'&');
        }
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'=');
    }

    #[inline(always)]
    fn param<V: FieldValue>(&mut self, name: &str, value: Option<V>) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.start(name);
            value.push_encoded(self.0);
        }
    }

    fn response_headers(&mut self, headers: &ResponseHeaders) {
        for (name, value) in ["rscc", "rscd", "rsce", "rscl", "rsct"]
            .into_iter()
            .zip(response_header_values(headers))
        {
            self.param(name, value);
        }
    }

    /// `srh`/`srq`: each name encoded, the separating commas left literal (as the SDK does).
    fn names(&mut self, param: &str, pairs: &[(String, String)]) {
        if pairs.is_empty() {
            return;
        }
        self.start(param);
        for (index, (name, _)) in pairs.iter().enumerate() {
            if index > 0 {
                self.0.push(b',');
            }
            push_encoded(self.0, name.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NEWEST_VERSION, TABLE_DEFAULT_VERSION, sign, string_to_sign};
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn account_key() -> SigningKey {
        SigningKey::Account(AccountKey::from_base64(KEY).unwrap())
    }

    fn ud_key(delegated_tid: Option<&str>) -> SigningKey {
        SigningKey::UserDelegation(UserDelegationKey {
            signed_oid: "oid".into(),
            signed_tid: "tid".into(),
            signed_start: "2030-01-01T00:00:00Z".into(),
            signed_expiry: "2030-01-08T00:00:00Z".into(),
            signed_service: "b".into(),
            signed_version: "2026-10-06".into(),
            signed_delegated_user_tid: delegated_tid.map(Into::into),
            value: AccountKey::from_base64(KEY).unwrap(),
        })
    }

    fn params(resource: Resource) -> SasParams {
        SasParams {
            account_name: "acct1".into(),
            resource,
            permissions: Some("r".into()),
            start: None,
            expiry: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            ip: None,
            protocol: None,
            version: None,
            policy_id: None,
            encryption_scope: None,
            response_headers: ResponseHeaders::default(),
            delegation: DelegationExtras::default(),
        }
    }

    fn blob() -> Resource {
        Resource::Blob {
            container: "cont1".into(),
            blob: "b".into(),
            snapshot: None,
            version_id: None,
        }
    }

    fn queue() -> Resource {
        Resource::Queue {
            queue: "queue1".into(),
        }
    }

    fn err(p: &SasParams, key: &SigningKey) -> SasError {
        sign(p, key).expect_err("expected an error")
    }

    #[test]
    fn sign_reports_canonical_permissions_default_version_and_truncated_expiry() {
        let mut p = params(blob());
        p.permissions = Some("wr".into());
        p.expiry = Some("2030-01-01T00:00:00.999Z".parse().unwrap());
        let sas = sign(&p, &account_key()).unwrap();
        assert_eq!(sas.permissions.as_ref().map(Letters::as_str), Some("rw"));
        assert_eq!(sas.version, NEWEST_VERSION);
        assert_eq!(sas.expiry, Some("2030-01-01T00:00:00Z".parse().unwrap()));
        assert!(
            sas.token
                .starts_with("se=2030-01-01T00%3A00%3A00Z&sp=rw&sv=2026-10-06&sr=b&sig=")
        );
    }

    #[test]
    fn debug_of_a_signed_sas_hides_the_token() {
        let sas = sign(&params(blob()), &account_key()).unwrap();
        let debug = format!("{sas:?}");
        assert!(
            debug.contains("<redacted>") && !debug.contains("sig="),
            "{debug}"
        );
    }

    #[test]
    fn signing_is_deterministic() {
        let p = params(blob());
        assert_eq!(
            sign(&p, &account_key()).unwrap(),
            sign(&p, &account_key()).unwrap()
        );
    }

    #[test]
    fn permissions_are_required_without_a_policy() {
        let mut p = params(blob());
        p.permissions = None;
        assert_eq!(
            err(&p, &account_key()),
            SasError::MissingField {
                field: "permissions",
                context: WITHOUT_POLICY
            }
        );
    }

    #[test]
    fn expiry_is_required_without_a_policy() {
        let mut p = params(blob());
        p.expiry = None;
        assert_eq!(
            err(&p, &account_key()),
            SasError::MissingField {
                field: "expiry",
                context: WITHOUT_POLICY
            }
        );
    }

    #[test]
    fn a_policy_alone_needs_neither_permissions_nor_expiry() {
        let mut p = params(queue());
        p.permissions = None;
        p.expiry = None;
        p.policy_id = Some("pol".into());
        let sas = sign(&p, &account_key()).unwrap();
        assert_eq!(sas.permissions, None);
        assert!(sas.token.starts_with("sv=2026-10-06&si=pol&sig="));
    }

    #[test]
    fn expiry_must_be_after_start_at_second_precision() {
        let mut p = params(blob());
        p.start = Some("2030-01-01T00:00:00Z".parse().unwrap());
        p.expiry = Some("2030-01-01T00:00:00.5Z".parse().unwrap());
        assert_eq!(err(&p, &account_key()), SasError::ExpiryNotAfterStart);
        p.expiry = Some("2029-12-31T00:00:00Z".parse().unwrap());
        assert_eq!(err(&p, &account_key()), SasError::ExpiryNotAfterStart);
    }

    #[test]
    fn snapshot_and_version_together_are_an_error() {
        let p = params(Resource::Blob {
            container: "cont1".into(),
            blob: "b".into(),
            snapshot: Some("s".into()),
            version_id: Some("v".into()),
        });
        assert_eq!(err(&p, &account_key()), SasError::SnapshotAndVersion);
    }

    #[test]
    fn encryption_scope_needs_2020_12_06() {
        let mut p = params(blob());
        p.encryption_scope = Some("scope".into());
        p.version = Some("2019-02-02".into());
        assert_eq!(
            err(&p, &account_key()),
            SasError::FieldNeedsVersion {
                field: "encryption scope (ses)",
                minimum: "2020-12-06",
                version: "2019-02-02".into()
            }
        );
    }

    #[test]
    fn blob_features_have_version_floors() {
        let snapshot = Resource::Blob {
            container: "cont1".into(),
            blob: "b".into(),
            snapshot: Some("s".into()),
            version_id: None,
        };
        let mut p = params(snapshot);
        p.version = Some("2018-03-28".into());
        assert_eq!(err(&p, &account_key()).category(), "FieldNeedsVersion");
        let mut p = params(Resource::Directory {
            container: "cont1".into(),
            path: "d".into(),
        });
        p.version = Some("2019-12-12".into());
        assert!(matches!(
            err(&p, &account_key()),
            SasError::FieldNeedsVersion {
                minimum: "2020-02-10",
                ..
            }
        ));
    }

    #[test]
    fn newer_permission_letters_have_version_floors() {
        let mut p = params(blob());
        p.permissions = Some("rt".into());
        p.version = Some("2019-10-10".into());
        assert!(matches!(
            err(&p, &account_key()),
            SasError::FieldNeedsVersion {
                field: "permission t (tags)",
                minimum: "2019-12-12",
                ..
            }
        ));
    }

    #[test]
    fn request_binding_needs_2026_04_06() {
        let mut p = params(blob());
        p.version = Some("2025-07-05".into());
        p.delegation.request_headers = vec![("x-ms-a".into(), "1".into())];
        assert!(matches!(
            err(&p, &ud_key(None)),
            SasError::FieldNeedsVersion {
                field: "request headers (srh)",
                minimum: "2026-04-06",
                ..
            }
        ));
    }

    #[test]
    fn delegated_user_fields_need_2025_07_05() {
        let mut p = params(blob());
        p.version = Some("2020-12-06".into());
        assert!(matches!(
            err(&p, &ud_key(Some("tenant"))),
            SasError::FieldNeedsVersion {
                field: "delegated user tenant id (skdutid)",
                ..
            }
        ));
        p.delegation.delegated_user_object_id = Some("oid".into());
        assert!(matches!(
            err(&p, &ud_key(None)),
            SasError::FieldNeedsVersion {
                field: "delegated user object id (sduoid)",
                ..
            }
        ));
    }

    #[test]
    fn queue_and_file_user_delegation_need_2025_07_05() {
        let mut p = params(queue());
        p.version = Some("2024-11-04".into());
        assert!(matches!(
            err(&p, &ud_key(None)),
            SasError::FieldNeedsVersion {
                minimum: "2025-07-05",
                ..
            }
        ));
    }

    #[test]
    fn user_delegation_cannot_sign_account_or_table_sas() {
        let p = params(Resource::Account {
            services: "b".into(),
            resource_types: "o".into(),
        });
        assert_eq!(
            err(&p, &ud_key(None)),
            SasError::UserDelegationUnsupported {
                resource: "an account SAS"
            }
        );
        let p = params(Resource::Table {
            table: "t1x".into(),
            key_range: TableKeyRange::default(),
        });
        assert_eq!(
            err(&p, &ud_key(None)),
            SasError::UserDelegationUnsupported {
                resource: "a table SAS"
            }
        );
    }

    #[test]
    fn user_delegation_extras_need_a_user_delegation_key() {
        let mut p = params(blob());
        p.delegation.correlation_id = Some("c".into());
        assert_eq!(
            err(&p, &account_key()),
            SasError::FieldNotAllowed {
                field: "correlation id (scid)",
                context: ACCOUNT_KEY_SAS
            }
        );
    }

    #[test]
    fn a_user_delegation_sas_cannot_use_a_stored_policy() {
        let mut p = params(blob());
        p.policy_id = Some("pol".into());
        assert_eq!(
            err(&p, &ud_key(None)),
            SasError::FieldNotAllowed {
                field: "stored access policy (si)",
                context: USER_DELEGATION_SAS
            }
        );
    }

    #[test]
    fn fields_a_kind_cannot_carry_are_rejected() {
        let mut p = params(queue());
        p.response_headers.content_type = Some("text/plain".into());
        assert_eq!(err(&p, &account_key()).category(), "FieldNotAllowed");
        let mut p = params(Resource::Share {
            share: "s1x".into(),
        });
        p.encryption_scope = Some("scope".into());
        assert_eq!(err(&p, &account_key()).category(), "FieldNotAllowed");
        let mut p = params(Resource::Account {
            services: "b".into(),
            resource_types: "o".into(),
        });
        p.policy_id = Some("pol".into());
        assert_eq!(err(&p, &account_key()).category(), "FieldNotAllowed");
    }

    #[test]
    fn account_sas_needs_services_and_resource_types() {
        let p = params(Resource::Account {
            services: "".into(),
            resource_types: "o".into(),
        });
        assert!(matches!(
            err(&p, &account_key()),
            SasError::MissingField {
                field: "services",
                ..
            }
        ));
        let p = params(Resource::Account {
            services: "b".into(),
            resource_types: "".into(),
        });
        assert!(matches!(
            err(&p, &account_key()),
            SasError::MissingField {
                field: "resource types",
                ..
            }
        ));
        let p = params(Resource::Account {
            services: "bz".into(),
            resource_types: "o".into(),
        });
        assert_eq!(
            err(&p, &account_key()),
            SasError::InvalidService {
                letter: 'z',
                allowed: "bqtf"
            }
        );
    }

    #[test]
    fn user_delegation_key_fields_are_required() {
        let SigningKey::UserDelegation(mut key) = ud_key(None) else {
            unreachable!()
        };
        key.signed_tid.clear();
        let err = err(&params(blob()), &SigningKey::UserDelegation(key));
        assert_eq!(
            err,
            SasError::MissingField {
                field: "signedTid",
                context: "a user delegation key"
            }
        );
    }

    #[test]
    fn duplicate_request_header_names_are_rejected() {
        let mut p = params(blob());
        p.delegation.request_headers = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
        assert!(matches!(
            err(&p, &ud_key(None)),
            SasError::InvalidRequestField {
                reason: "is given more than once",
                ..
            }
        ));
    }

    #[test]
    fn invalid_names_and_ips_are_rejected_before_signing() {
        let p = params(Resource::Container {
            container: "UPPER".into(),
        });
        assert_eq!(err(&p, &account_key()).category(), "InvalidName");
        let mut p = params(blob());
        p.ip = Some("1.2.3".into());
        assert_eq!(err(&p, &account_key()).category(), "InvalidIp");
        let mut p = params(blob());
        p.account_name = "Bad-Account".into();
        assert_eq!(err(&p, &account_key()).category(), "InvalidName");
    }

    #[test]
    fn empty_optional_values_are_treated_as_absent() {
        let mut p = params(blob());
        p.ip = Some(String::new());
        p.response_headers.cache_control = Some(String::new());
        assert_eq!(
            string_to_sign(&p, &account_key()).unwrap(),
            string_to_sign(&params(blob()), &account_key()).unwrap()
        );
    }

    #[test]
    fn table_sas_defaults_to_the_table_sdk_version() {
        let p = params(Resource::Table {
            table: "MyTable".into(),
            key_range: TableKeyRange::default(),
        });
        let sas = sign(&p, &account_key()).unwrap();
        assert_eq!(sas.version, TABLE_DEFAULT_VERSION);
        assert!(sas.token.contains("&sv=2019-02-02&"));
    }

    #[test]
    fn table_canonical_resource_is_lowercased_but_tn_keeps_case() {
        let p = params(Resource::Table {
            table: "MyTable".into(),
            key_range: TableKeyRange::default(),
        });
        assert!(
            string_to_sign(&p, &account_key())
                .unwrap()
                .contains("\n/table/acct1/mytable\n")
        );
        assert!(
            sign(&p, &account_key())
                .unwrap()
                .token
                .contains("&tn=MyTable&")
        );
    }
}
