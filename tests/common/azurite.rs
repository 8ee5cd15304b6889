//! Azurite (the Azure Storage emulator) per test binary: an HTTP instance for shared-key and
//! SAS tests and an HTTPS `--oauth basic` instance for user-delegation tests.
#![allow(dead_code)]

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::process::{Served, serve};

/// An account with two keys (both accepted), for key-rotation tests.
#[derive(Clone)]
pub struct AzuriteAccount {
    pub name: String,
    /// Base64, as Azure shows account keys.
    pub key1: String,
    pub key2: String,
}

impl fmt::Debug for AzuriteAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzuriteAccount")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Path-style service endpoints of one account: `http://127.0.0.1:<port>/<account>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzuriteEndpoints {
    pub blob: String,
    pub queue: String,
    pub table: String,
}

pub struct Azurite {
    /// Endpoints of the well-known dev account `devstoreaccount1`.
    pub blob_endpoint: String,
    pub queue_endpoint: String,
    pub table_endpoint: String,
    /// `devstoreaccount1`.
    pub account: String,
    /// Microsoft's published dev-account key (base64).
    pub key: String,
    /// A second account, `sasop1`, with two freshly generated keys.
    pub second_account: AzuriteAccount,
    scheme: &'static str,
    blob_port: u16,
    queue_port: u16,
    table_port: u16,
    served: Served,
}

impl fmt::Debug for Azurite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azurite")
            .field("blob_endpoint", &self.blob_endpoint)
            .field("account", &self.account)
            .field("second_account", &self.second_account)
            .finish_non_exhaustive()
    }
}

impl Azurite {
    fn from_served(served: Served, scheme: &'static str) -> Self {
        let port = |key: &str| -> u16 {
            served
                .var(key)
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not a port"))
        };
        Azurite {
            blob_endpoint: served.var("AZURITE_BLOB_ENDPOINT").into(),
            queue_endpoint: served.var("AZURITE_QUEUE_ENDPOINT").into(),
            table_endpoint: served.var("AZURITE_TABLE_ENDPOINT").into(),
            account: served.var("AZURITE_ACCOUNT_NAME").into(),
            key: served.var("AZURITE_ACCOUNT_KEY").into(),
            second_account: AzuriteAccount {
                name: served.var("AZURITE_SECOND_ACCOUNT_NAME").into(),
                key1: served.var("AZURITE_SECOND_ACCOUNT_KEY1").into(),
                key2: served.var("AZURITE_SECOND_ACCOUNT_KEY2").into(),
            },
            scheme,
            blob_port: port("AZURITE_BLOB_PORT"),
            queue_port: port("AZURITE_QUEUE_PORT"),
            table_port: port("AZURITE_TABLE_PORT"),
            served,
        }
    }

    /// Endpoints for any configured account (e.g. `self.second_account.name`).
    pub fn endpoints_for(&self, account: &str) -> AzuriteEndpoints {
        let url = |port: u16| format!("{}://127.0.0.1:{port}/{account}", self.scheme);
        AzuriteEndpoints {
            blob: url(self.blob_port),
            queue: url(self.queue_port),
            table: url(self.table_port),
        }
    }

    pub fn second_account_endpoints(&self) -> AzuriteEndpoints {
        self.endpoints_for(&self.second_account.name)
    }

    /// `127.0.0.1:<port>` of the blob, queue and table services: what the operator's
    /// `--allow-storage-endpoint` lists for this emulator.
    pub fn host_ports(&self) -> [String; 3] {
        [self.blob_port, self.queue_port, self.table_port].map(|port| format!("127.0.0.1:{port}"))
    }
}

static AZURITE: OnceLock<Azurite> = OnceLock::new();
static AZURITE_OAUTH: OnceLock<AzuriteOauth> = OnceLock::new();

/// Azurite over HTTP with shared key and SAS auth, started on first use (about 3 s).
/// Accounts: `devstoreaccount1` (well-known key) and `second_account` (two random keys).
/// Started with `--skipApiVersionCheck --loose` so any `x-ms-version` and `ses` are accepted.
pub fn azurite() -> &'static Azurite {
    AZURITE.get_or_init(|| Azurite::from_served(serve("azurite"), "http"))
}

/// Azurite over HTTPS with `--oauth basic`: accepts bearer tokens from [`AzuriteOauth::bearer_token`]
/// (so Get User Delegation Key works) as well as shared key and SAS.
pub struct AzuriteOauth {
    /// `https://127.0.0.1:<port>/devstoreaccount1`.
    pub blob_endpoint: String,
    /// The self-signed CA that issued Azurite's certificate (PEM).
    pub ca_cert_pem_path: PathBuf,
    /// `oid` and `tid` claims of [`Self::bearer_token`]: they come back as skoid and sktid.
    pub object_id: String,
    pub tenant_id: String,
    /// Azurite's `--debug` log: every request with its headers (bearer tokens included) and
    /// every response body (user delegation keys included). Test data only.
    pub debug_log_path: PathBuf,
    /// The same accounts and ports as plain Azurite has, over HTTPS.
    pub azurite: Azurite,
}

/// The HTTPS Azurite if this test binary has started it (`azurite_oauth`), without starting it.
pub fn azurite_oauth_if_started() -> Option<&'static AzuriteOauth> {
    AZURITE_OAUTH.get()
}

pub fn azurite_oauth() -> &'static AzuriteOauth {
    AZURITE_OAUTH.get_or_init(|| {
        let served = serve("azurite-oauth");
        let ca_cert_pem_path = PathBuf::from(served.var("AZURITE_CA_CERT"));
        let debug_log_path = PathBuf::from(served.var("AZURITE_DEBUG_LOG"));
        let azurite = Azurite::from_served(served, "https");
        AzuriteOauth {
            blob_endpoint: azurite.blob_endpoint.clone(),
            ca_cert_pem_path,
            object_id: "6f1a3e0c-5b7d-4c2e-9a8f-0d1e2f3a4b5c".into(),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            debug_log_path,
            azurite,
        }
    })
}

impl AzuriteOauth {
    /// An Entra-ID-shaped bearer token valid from 5 minutes ago for an hour. Azurite's
    /// `--oauth basic` checks the claims (aud, iss, nbf, exp, iat) but not the signature.
    pub fn bearer_token(&self) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        let claims = serde_json::json!({
            "aud": "https://storage.azure.com",
            "iss": format!("https://sts.windows.net/{}/", self.tenant_id),
            "nbf": now - 300,
            "iat": now - 300,
            "exp": now + 3600,
            "oid": self.object_id,
            "tid": self.tenant_id,
        });
        let part = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        format!(
            "{}.{}.{}",
            part(&header),
            part(&claims),
            URL_SAFE_NO_PAD.encode("unsigned")
        )
    }

    /// How many Get User Delegation Key requests (any outcome) Azurite has received with a
    /// bearer token whose `oid` is `object_id`, read from its debug log. Azurite writes the log
    /// asynchronously: wait for an expected count (`common::eventually`) before asserting it
    /// did not grow further.
    pub fn user_delegation_key_requests(&self, object_id: &str) -> usize {
        let log = std::fs::read_to_string(&self.debug_log_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.debug_log_path.display()));
        // Each request's lines carry its id: the context line has the headers, a later line
        // the operation.
        let mut caller_by_request = std::collections::HashMap::new();
        let mut count = 0;
        for line in log.lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(_time), Some(request_id), Some(rest)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Some(headers) = rest
                .split_once("RequestHeaders:")
                .and_then(|(_, tail)| tail.rsplit_once(" ClientIP=").map(|(json, _)| json))
            {
                if let Some(oid) = bearer_object_id(headers) {
                    caller_by_request.insert(request_id.to_string(), oid);
                }
            } else if rest.contains("Operation=Service_GetUserDelegationKey")
                && caller_by_request.get(request_id).map(String::as_str) == Some(object_id)
            {
                count += 1;
            }
        }
        count
    }

    /// A reqwest client that trusts Azurite's self-signed CA.
    pub fn https_client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca_cert_pem_path).expect("read Azurite's CA certificate");
        let ca = reqwest::Certificate::from_pem(&pem).expect("parse Azurite's CA certificate");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("build an HTTPS client for Azurite")
    }
}

/// The `oid` claim of the bearer token in a request's logged headers (JSON), if any.
fn bearer_object_id(headers_json: &str) -> Option<String> {
    let headers: serde_json::Value = serde_json::from_str(headers_json).ok()?;
    let token = headers
        .get("authorization")?
        .as_str()?
        .strip_prefix("Bearer ")?;
    let claims = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    Some(claims.get("oid")?.as_str()?.to_string())
}
