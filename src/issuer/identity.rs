//! Workload identity: a ServiceAccount token (TokenRequest, through the seam) is exchanged with
//! Microsoft Entra for an access token (client-assertion flow), which obtains a user delegation
//! key from the blob endpoint (Get User Delegation Key). Requests are built and responses
//! parsed by pure functions; [`IdentityClient`] only sends them.
//!
//! A small hand-written client over reqwest (rustls with ring, as kube already uses) rather
//! than the Azure SDK for Rust: the two calls are a form POST and an XML POST, and the SDK would
//! bring a second reqwest, a second rustls crypto provider and a C build (aws-lc-sys).
//!
//! Nothing secret is ever formatted: the ServiceAccount token, the access token and the key's
//! value stay in local variables and the key; errors carry HTTP status and Entra/storage error
//! codes only.

use std::time::Duration;

use jiff::Timestamp;

use crate::sas::{AccountKey, UserDelegationKey};

/// The audience Entra requires of a federated client assertion.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The scope of an access token for Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The public cloud's authority host (`AZURE_AUTHORITY_HOST` overrides it).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The `x-ms-version` of Get User Delegation Key.
pub const STORAGE_REQUEST_VERSION: &str = "2025-05-05";
/// How long the ServiceAccount token asked for lives: TokenRequest's minimum, 10 minutes (it
/// is used at once, for one exchange).
pub const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 600;
/// Azure's limit on a user delegation key's lifetime, and so on a user delegation SAS's.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// A request to Entra or storage that takes longer fails (less with a short reconcile
/// deadline, see [`IdentityClient::bounded_by`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// The most of a response body read from Entra or storage: their answers are a few hundred
/// bytes, and a host that streams more cannot fill the operator's memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// A connection to Entra or storage that takes longer to set up fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure of one step of the workload identity chain. Messages carry status codes and
/// Entra or storage error codes, never a token, an assertion or a key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "Entra refused the token exchange for client id {client_id} (HTTP {status}, {code}): {hint}"
    )]
    ExchangeRefused {
        client_id: String,
        status: u16,
        code: String,
        hint: &'static str,
    },
    #[error("the Entra token endpoint could not be reached: {0}")]
    EntraUnreachable(String),
    #[error("Entra answered the token exchange with HTTP {status} and no usable token")]
    EntraBadResponse { status: u16 },
    #[error(
        "Get User Delegation Key was refused (HTTP {status}, {code}): the identity needs a role \
         that allows generateUserDelegationKey, such as Storage Blob Delegator, on the account"
    )]
    DelegationKeyForbidden { status: u16, code: String },
    #[error("Get User Delegation Key failed (HTTP {status}, {code})")]
    DelegationKeyRefused { status: u16, code: String },
    #[error("the storage blob endpoint could not be reached: {0}")]
    StorageUnreachable(String),
    #[error(
        "the {from} answered with a body larger than {limit} bytes; refused without reading it all"
    )]
    ResponseTooLarge { from: &'static str, limit: usize },
    #[error(
        "obtaining a user delegation key took longer than {after}s (TokenRequest, Entra exchange and Get User Delegation Key together); abandoned"
    )]
    FetchTimedOut { after: u64 },
    #[error("the user delegation key returned expires at {expiry}, earlier than requested")]
    DelegationKeyTooShort { expiry: String },
    #[error("the Get User Delegation Key response could not be read (missing {0})")]
    DelegationKeyBadResponse(&'static str),
    #[error("{0}")]
    Unsupported(String),
    #[error("workload identity is not configured: {0}")]
    NotConfigured(String),
    #[error("ServiceAccount {name:?} not found in namespace {namespace:?}")]
    ServiceAccountNotFound { namespace: String, name: String },
    #[error(
        "the operator may not request tokens of ServiceAccount {namespace}/{name}: no Role in \
         namespace {namespace} lends it (create on serviceaccounts/token, resourceNames \
         [{name}]). If this issuer may use it, a namespace admin runs: {commands}"
    )]
    ServiceAccountNotBound {
        namespace: String,
        name: String,
        commands: String,
    },
}

impl IdentityError {
    pub fn category(&self) -> &'static str {
        match self {
            IdentityError::ExchangeRefused { code, .. } => match code.as_str() {
                // No federated credential matches the token's issuer, subject and audience.
                "AADSTS700213" | "AADSTS70021" | "AADSTS700211" | "AADSTS700212" => {
                    "NoFederatedCredential"
                }
                "AADSTS700016" => "EntraApplicationNotFound",
                "AADSTS90002" => "EntraTenantNotFound",
                _ => "EntraExchangeRefused",
            },
            IdentityError::EntraUnreachable(_) => "EntraUnreachable",
            IdentityError::EntraBadResponse { .. } => "EntraBadResponse",
            IdentityError::DelegationKeyForbidden { .. } => "UserDelegationKeyForbidden",
            IdentityError::DelegationKeyRefused { .. } => "UserDelegationKeyFailed",
            IdentityError::StorageUnreachable(_) => "StorageUnreachable",
            IdentityError::FetchTimedOut { .. } => "UserDelegationKeyFetchTimedOut",
            IdentityError::ResponseTooLarge { .. } => "ResponseTooLarge",
            IdentityError::DelegationKeyTooShort { .. } => "UserDelegationKeyFailed",
            IdentityError::DelegationKeyBadResponse(_) => "UserDelegationKeyFailed",
            IdentityError::Unsupported(_) => "UserDelegationUnsupported",
            IdentityError::NotConfigured(_) => "WorkloadIdentityNotConfigured",
            IdentityError::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            IdentityError::ServiceAccountNotBound { .. } => "ServiceAccountNotBound",
        }
    }

    /// Whether the same request can succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IdentityError::EntraUnreachable(_)
                | IdentityError::StorageUnreachable(_)
                | IdentityError::FetchTimedOut { .. }
        ) || matches!(self, IdentityError::EntraBadResponse { status } | IdentityError::DelegationKeyRefused { status, .. } if *status >= 500 || *status == 429)
    }
}

// ----- pure: requests -----

/// A request's bound under `reconcile_deadline`: [`REQUEST_TIMEOUT`], or four fifths of the
/// deadline when that is shorter.
pub fn request_timeout(reconcile_deadline: Duration) -> Duration {
    REQUEST_TIMEOUT.min(reconcile_deadline * 4 / 5)
}

/// `{authority}/{tenant}/oauth2/v2.0/token`.
pub fn token_endpoint(authority_host: &str, tenant_id: &str) -> String {
    format!(
        "{}/{tenant_id}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/')
    )
}

/// The client-credentials form with a federated client assertion, as Azure's SDKs send it.
pub fn exchange_form<'a>(client_id: &'a str, assertion: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("client_id", client_id),
        ("scope", STORAGE_SCOPE),
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]
}

/// `{blob}/?restype=service&comp=userdelegationkey`.
pub fn delegation_key_url(blob_endpoint: &str) -> String {
    format!(
        "{}/?restype=service&comp=userdelegationkey",
        blob_endpoint.trim_end_matches('/')
    )
}

/// The `KeyInfo` body of Get User Delegation Key.
pub fn delegation_key_body(start: Timestamp, expiry: Timestamp) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        iso_seconds(start),
        iso_seconds(expiry)
    )
}

fn iso_seconds(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ----- pure: responses -----

/// The access token of a token response, or Entra's error as a refusal (its `AADSTS` code).
pub fn parse_token_response(
    client_id: &str,
    status: u16,
    body: &str,
) -> Result<String, IdentityError> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|_| IdentityError::EntraBadResponse { status })?;
    if status == 200 {
        return json
            .get("access_token")
            .and_then(|token| token.as_str())
            .filter(|token| !token.is_empty())
            .map(str::to_string)
            .ok_or(IdentityError::EntraBadResponse { status });
    }
    let code = json
        .get("error_codes")
        .and_then(|codes| codes.get(0))
        .and_then(|code| code.as_u64())
        .map(|code| format!("AADSTS{code}"))
        .ok_or(IdentityError::EntraBadResponse { status })?;
    let hint = match code.as_str() {
        "AADSTS700213" | "AADSTS70021" => {
            "no federated credential of the application matches the ServiceAccount (subject system:serviceaccount:NAMESPACE:NAME, this cluster's issuer, audience api://AzureADTokenExchange)"
        }
        "AADSTS700211" => "the federated credential names another issuer than this cluster's",
        "AADSTS700016" => "no application with this client id in the tenant",
        _ => "see the Entra error code",
    };
    Err(IdentityError::ExchangeRefused {
        client_id: client_id.to_string(),
        status,
        code,
        hint,
    })
}

/// The user delegation key of a Get User Delegation Key response.
pub fn parse_delegation_key(status: u16, body: &str) -> Result<UserDelegationKey, IdentityError> {
    if status != 200 {
        // Storage errors: <Error><Code>AuthorizationPermissionMismatch</Code>...
        let code = xml_field(body, "Code")
            .filter(|code| code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "no error code".into());
        return Err(if status == 403 {
            IdentityError::DelegationKeyForbidden { status, code }
        } else {
            IdentityError::DelegationKeyRefused { status, code }
        });
    }
    let field = |tag: &'static str| {
        xml_field(body, tag).ok_or(IdentityError::DelegationKeyBadResponse(tag))
    };
    Ok(UserDelegationKey {
        signed_oid: field("SignedOid")?,
        signed_tid: field("SignedTid")?,
        signed_start: field("SignedStart")?,
        signed_expiry: field("SignedExpiry")?,
        signed_service: field("SignedService")?,
        signed_version: field("SignedVersion")?,
        signed_delegated_user_tid: xml_field(body, "SignedDelegatedUserTid"),
        value: AccountKey::from_base64(&field("Value")?)
            .map_err(|_| IdentityError::DelegationKeyBadResponse("Value"))?,
    })
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].trim().to_string())
}

// ----- the HTTP client -----

/// Sends the exchange and Get User Delegation Key. Trusts the system's roots plus any extra CA
/// bundles (an emulator's, a private cloud's).
#[derive(Clone)]
pub struct IdentityClient {
    http: reqwest::Client,
    authority_host: String,
    /// Each request's bound, connection included.
    request_timeout: Duration,
}

impl IdentityClient {
    pub fn new(
        authority_host: &str,
        extra_ca_files: &[std::path::PathBuf],
    ) -> Result<Self, String> {
        if !authority_host.starts_with("https://") {
            return Err(format!(
                "the authority host must be an https URL, not {authority_host:?}"
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        for path in extra_ca_files {
            let pem = std::fs::read(path)
                .map_err(|err| format!("cannot read CA file {}: {err}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|err| format!("CA file {} is not PEM: {err}", path.display()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|err| format!("cannot build the HTTPS client: {err}"))?;
        Ok(IdentityClient {
            http,
            authority_host: authority_host.trim_end_matches('/').to_string(),
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Keeps each request within four fifths of the reconcile deadline: no request outlasts a
    /// reconcile, even one that waited for it.
    pub fn bounded_by(mut self, reconcile_deadline: Duration) -> Self {
        self.request_timeout = request_timeout(reconcile_deadline);
        self
    }

    /// Exchanges a ServiceAccount token for an Entra access token for Azure Storage.
    pub async fn exchange(
        &self,
        tenant_id: &str,
        client_id: &str,
        assertion: &str,
    ) -> Result<String, IdentityError> {
        let response = self
            .http
            .post(token_endpoint(&self.authority_host, tenant_id))
            .form(&exchange_form(client_id, assertion))
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|err| IdentityError::EntraUnreachable(describe(&err)))?;
        let status = response.status().as_u16();
        let body = read_capped(
            response,
            ENTRA_TOKEN_ENDPOINT,
            IdentityError::EntraUnreachable,
        )
        .await?;
        parse_token_response(client_id, status, &body)
    }

    /// Get User Delegation Key on `blob_endpoint` for `start..expiry`.
    pub async fn user_delegation_key(
        &self,
        blob_endpoint: &str,
        access_token: &str,
        start: Timestamp,
        expiry: Timestamp,
    ) -> Result<UserDelegationKey, IdentityError> {
        let response = self
            .http
            .post(delegation_key_url(blob_endpoint))
            .bearer_auth(access_token)
            .header("x-ms-version", STORAGE_REQUEST_VERSION)
            .header("Content-Type", "application/xml")
            .body(delegation_key_body(start, expiry))
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|err| IdentityError::StorageUnreachable(describe(&err)))?;
        let status = response.status().as_u16();
        let body = read_capped(
            response,
            STORAGE_BLOB_ENDPOINT,
            IdentityError::StorageUnreachable,
        )
        .await?;
        parse_delegation_key(status, &body)
    }
}

const ENTRA_TOKEN_ENDPOINT: &str = "Entra token endpoint";
const STORAGE_BLOB_ENDPOINT: &str = "storage blob endpoint (Get User Delegation Key)";

/// A response body up to [`MAX_RESPONSE_BYTES`], chunk by chunk: a larger one (declared or
/// streamed) is refused as soon as it shows, and what was read of it is dropped.
async fn read_capped(
    mut response: reqwest::Response,
    from: &'static str,
    unreachable: fn(String) -> IdentityError,
) -> Result<String, IdentityError> {
    let too_large = || IdentityError::ResponseTooLarge {
        from,
        limit: MAX_RESPONSE_BYTES,
    };
    let mut body = CappedBody::new(MAX_RESPONSE_BYTES);
    if body.declared_too_large(response.content_length()) {
        return Err(too_large());
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| unreachable(describe(&err)))?
    {
        body.push(&chunk).map_err(|_| too_large())?;
    }
    Ok(body.into_text())
}

/// Pure: a body collected up to a cap.
struct CappedBody {
    bytes: Vec<u8>,
    cap: usize,
}

/// A body went past its cap.
#[derive(Debug, PartialEq, Eq)]
struct OverCap;

impl CappedBody {
    fn new(cap: usize) -> Self {
        CappedBody {
            bytes: Vec::new(),
            cap,
        }
    }

    fn declared_too_large(&self, content_length: Option<u64>) -> bool {
        content_length.is_some_and(|length| length > self.cap as u64)
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), OverCap> {
        if self.bytes.len() + chunk.len() > self.cap {
            self.bytes = Vec::new();
            return Err(OverCap);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    fn into_text(self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A transport error without its URL's query or anything from a body.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match err.url() {
        Some(url) => format!(
            "{kind} ({}://{}{})",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_VALUE: &str =
        "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LQ==";

    #[test]
    fn the_exchange_goes_to_the_tenants_v2_token_endpoint_of_the_authority_host() {
        assert_eq!(
            token_endpoint("https://login.microsoftonline.com/", "t-1"),
            "https://login.microsoftonline.com/t-1/oauth2/v2.0/token"
        );
        let form = exchange_form("c-1", "eyJ");
        assert!(form.contains(&("client_assertion", "eyJ")));
        assert!(form.contains(&("scope", "https://storage.azure.com/.default")));
        assert!(form.contains(&("grant_type", "client_credentials")));
        assert!(form.contains(&(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        )));
    }

    #[test]
    fn get_user_delegation_key_posts_key_info_with_second_precision_times() {
        let start: Timestamp = "2030-01-01T00:00:00.5Z".parse().unwrap();
        let expiry: Timestamp = "2030-01-02T00:00:00Z".parse().unwrap();
        let body = delegation_key_body(start, expiry);
        assert!(
            body.contains(
                "<Start>2030-01-01T00:00:00Z</Start><Expiry>2030-01-02T00:00:00Z</Expiry>"
            ),
            "{body}"
        );
        assert_eq!(
            delegation_key_url("https://acct.blob.core.windows.net/"),
            "https://acct.blob.core.windows.net/?restype=service&comp=userdelegationkey"
        );
    }

    #[test]
    fn a_token_response_yields_its_access_token() {
        let body = r#"{"token_type":"Bearer","expires_in":3599,"access_token":"at-secret"}"#;
        assert_eq!(parse_token_response("c", 200, body).unwrap(), "at-secret");
    }

    #[test]
    fn an_entra_refusal_is_named_by_its_aadsts_code_without_echoing_the_description() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:a:b'. secret-ish","error_codes":[700213]}"#;
        let err = parse_token_response("c-1", 401, body).unwrap_err();
        assert_eq!(err.category(), "NoFederatedCredential");
        let message = err.to_string();
        assert!(
            message.contains("AADSTS700213") && message.contains("HTTP 401"),
            "{message}"
        );
        assert!(!message.contains("secret-ish"), "{message}");
        assert!(!err.is_transient());
        let unknown = parse_token_response("c", 400, r#"{"error_codes":[700016]}"#).unwrap_err();
        assert_eq!(unknown.category(), "EntraApplicationNotFound");
    }

    #[test]
    fn a_response_that_is_not_entras_shape_is_a_bad_response_not_a_token() {
        for (status, body) in [(200, "{}"), (200, "<html>"), (502, "bad gateway")] {
            let err = parse_token_response("c", status, body).unwrap_err();
            assert_eq!(err.category(), "EntraBadResponse", "{status} {body}");
        }
        assert!(
            parse_token_response("c", 502, "x")
                .unwrap_err()
                .is_transient()
        );
    }

    #[test]
    fn a_delegation_key_response_is_parsed_field_by_field() {
        let body = format!(
            "<?xml version=\"1.0\"?><UserDelegationKey><SignedOid>oid-1</SignedOid><SignedTid>tid-1</SignedTid><SignedStart>2030-01-01T00:00:00Z</SignedStart><SignedExpiry>2030-01-08T00:00:00Z</SignedExpiry><SignedService>b</SignedService><SignedVersion>2025-05-05</SignedVersion><Value>{KEY_VALUE}</Value></UserDelegationKey>"
        );
        let key = parse_delegation_key(200, &body).unwrap();
        assert_eq!(key.signed_oid, "oid-1");
        assert_eq!(key.signed_tid, "tid-1");
        assert_eq!(key.signed_expiry, "2030-01-08T00:00:00Z");
        assert_eq!(key.signed_service, "b");
        assert_eq!(key.value.as_bytes().len(), 64);
        let missing = parse_delegation_key(200, "<UserDelegationKey/>").unwrap_err();
        assert_eq!(missing.category(), "UserDelegationKeyFailed");
    }

    #[test]
    fn a_refused_delegation_key_names_the_storage_error_code_and_the_role_it_needs() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>x</Message></Error>";
        let err = parse_delegation_key(403, body).unwrap_err();
        assert_eq!(err.category(), "UserDelegationKeyForbidden");
        let message = err.to_string();
        assert!(
            message.contains("AuthorizationPermissionMismatch"),
            "{message}"
        );
        assert!(message.contains("Storage Blob Delegator"), "{message}");
        // A code that is not a plain identifier is not echoed.
        let odd = parse_delegation_key(400, "<Code>a b\nc</Code>").unwrap_err();
        assert!(odd.to_string().contains("no error code"));
    }

    #[test]
    fn a_body_is_read_up_to_its_cap_and_refused_past_it() {
        let mut body = CappedBody::new(8);
        assert!(!body.declared_too_large(Some(8)) && !body.declared_too_large(None));
        assert!(body.declared_too_large(Some(9)));
        body.push(b"abcd").unwrap();
        body.push(b"efgh").unwrap();
        assert_eq!(body.push(b"i"), Err(OverCap));
        assert!(body.bytes.is_empty(), "what was read is dropped");
        let mut exact = CappedBody::new(8);
        exact.push(b"12345678").unwrap();
        assert_eq!(exact.into_text(), "12345678");
    }

    #[test]
    fn a_body_too_large_is_named_with_its_limit_and_never_quoted() {
        let err = IdentityError::ResponseTooLarge {
            from: STORAGE_BLOB_ENDPOINT,
            limit: MAX_RESPONSE_BYTES,
        };
        assert_eq!(err.category(), "ResponseTooLarge");
        assert_eq!(
            err.to_string(),
            "the storage blob endpoint (Get User Delegation Key) answered with a body larger than 65536 bytes; refused without reading it all"
        );
    }

    #[test]
    fn requests_end_before_the_reconcile_deadline() {
        assert_eq!(
            request_timeout(Duration::from_secs(5)),
            Duration::from_secs(4)
        );
        assert_eq!(request_timeout(Duration::from_secs(60)), REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout(Duration::from_secs(2)),
            Duration::from_millis(1600)
        );
        assert!(CONNECT_TIMEOUT < request_timeout(Duration::from_secs(5)));
    }

    #[test]
    fn the_authority_host_must_be_https() {
        assert!(IdentityClient::new("http://login.example", &[]).is_err());
        assert!(IdentityClient::new(DEFAULT_AUTHORITY_HOST, &[]).is_ok());
    }
}
