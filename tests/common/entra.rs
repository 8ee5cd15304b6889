//! The Entra ID token endpoint emulator (`hack/entra-emulator.mjs`) per test binary, trusting
//! the ServiceAccount tokens of this binary's control plane: it verifies a client assertion
//! with the kube-apiserver's public OIDC discovery document and JWKS (signature, issuer,
//! audience, time range) and its subject against federated credentials the tests register.
//! Its access tokens are accepted by [`super::azurite_oauth`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde::Deserialize;

use super::control_plane::{ControlPlane, control_plane};
use super::process::{Served, serve_with};

/// The audience Entra requires of a federated client assertion.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The scope that yields an access token for Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub struct Entra {
    /// `https://127.0.0.1:<port>`: the authority host, as Azure's SDKs name it.
    pub authority_host: String,
    /// The self-signed CA that issued the emulator's certificate (PEM).
    pub ca_cert_pem_path: PathBuf,
    /// The ServiceAccount issuer federated credentials name by default (the control plane's).
    pub trusted_issuer: String,
    /// One line per request: outcome and AADSTS code, never a token.
    pub log_path: PathBuf,
    served: Served,
}

impl fmt::Debug for Entra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entra")
            .field("authority_host", &self.authority_host)
            .field("trusted_issuer", &self.trusted_issuer)
            .finish_non_exhaustive()
    }
}

/// The emulator of this test binary, started on first use (after [`control_plane`], whose
/// tokens it trusts; about a second more).
pub fn entra() -> &'static Entra {
    static ENTRA: OnceLock<Entra> = OnceLock::new();
    ENTRA.get_or_init(|| {
        let control_plane = control_plane();
        let served = serve_with(
            "entra",
            &[
                ("ENTRA_TRUST_APISERVER", OsStr::new(&control_plane.server)),
                (
                    "ENTRA_TRUST_APISERVER_CA",
                    control_plane.ca_cert_path.as_os_str(),
                ),
                (
                    "ENTRA_TRUST_KUBECONFIG",
                    control_plane.kubeconfig_path.as_os_str(),
                ),
            ],
        );
        Entra {
            authority_host: served.var("ENTRA_AUTHORITY_HOST").into(),
            ca_cert_pem_path: served.var("ENTRA_CA_CERT").into(),
            trusted_issuer: served.var("ENTRA_TRUSTED_ISSUER").into(),
            log_path: served.var("ENTRA_LOG").into(),
            served,
        }
    })
}

/// An application (client id) in a tenant, as the emulator registered it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistration {
    pub tenant_id: String,
    pub client_id: String,
    /// The service principal's object id: the access token's `oid`, and `skoid` of its keys.
    pub object_id: String,
}

/// A successful token response.
#[derive(Clone, Deserialize)]
pub struct AccessToken {
    pub token_type: String,
    pub expires_in: u64,
    pub access_token: String,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

/// Entra's error response, with the HTTP status it came with.
#[derive(Clone, Debug, Deserialize)]
pub struct EntraError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    pub error_description: String,
    pub error_codes: Vec<u64>,
}

impl EntraError {
    /// `AADSTS<code>` of the first error code.
    pub fn aadsts(&self) -> String {
        format!("AADSTS{}", self.error_codes.first().copied().unwrap_or(0))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ExchangeCounts {
    pub succeeded: u64,
    pub failed: u64,
}

/// `GET /_emulator/stats`: token exchanges in total, per registered client id, and failures
/// per AADSTS code.
#[derive(Clone, Debug, Deserialize)]
pub struct EntraStats {
    pub succeeded: u64,
    pub failed: u64,
    pub clients: HashMap<String, ExchangeCounts>,
    pub errors: HashMap<String, u64>,
}

impl EntraStats {
    pub fn for_client(&self, client_id: &str) -> ExchangeCounts {
        self.clients.get(client_id).copied().unwrap_or_default()
    }
}

impl Entra {
    /// A client that trusts the emulator's CA.
    pub fn https_client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca_cert_pem_path).expect("read the Entra emulator's CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("parse the Entra emulator's CA");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("build an HTTPS client for the Entra emulator")
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`, where Azure's SDKs send the exchange.
    pub fn token_endpoint(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/oauth2/v2.0/token", self.authority_host)
    }

    /// Registers an application in a new tenant with one federated credential: the control
    /// plane's issuer, `subject` (`system:serviceaccount:NS:NAME`), [`TOKEN_EXCHANGE_AUDIENCE`].
    pub async fn register_app(&self, subject: &str) -> AppRegistration {
        self.add_federated_credential(&random_uuid(), &random_uuid(), subject, None)
            .await
    }

    /// Adds a federated credential to application `client_id` in `tenant_id` (created on first
    /// use). `issuer` defaults to the control plane's.
    pub async fn add_federated_credential(
        &self,
        tenant_id: &str,
        client_id: &str,
        subject: &str,
        issuer: Option<&str>,
    ) -> AppRegistration {
        let mut body = serde_json::json!({
            "tenantId": tenant_id,
            "clientId": client_id,
            "subject": subject,
        });
        if let Some(issuer) = issuer {
            body["issuer"] = issuer.into();
        }
        let response = self
            .https_client()
            .post(format!(
                "{}/_emulator/federated-credentials",
                self.authority_host
            ))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST a federated credential to the Entra emulator");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "registering a federated credential: {text}");
        serde_json::from_str(&text).expect("the emulator's registration response")
    }

    /// The client-credentials exchange as Azure's SDKs send it (form fields `client_id`,
    /// `scope`, `grant_type`, `client_assertion_type`, `client_assertion`).
    pub async fn exchange(
        &self,
        tenant_id: &str,
        client_id: &str,
        assertion: &str,
    ) -> Result<AccessToken, EntraError> {
        self.exchange_form(
            tenant_id,
            &[
                ("client_id", client_id),
                ("scope", STORAGE_SCOPE),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", assertion),
            ],
        )
        .await
    }

    /// Posts `form` to the token endpoint as it is (for malformed requests).
    pub async fn exchange_form(
        &self,
        tenant_id: &str,
        form: &[(&str, &str)],
    ) -> Result<AccessToken, EntraError> {
        let response = self
            .https_client()
            .post(self.token_endpoint(tenant_id))
            .form(form)
            .send()
            .await
            .expect("POST to the Entra emulator's token endpoint");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status == 200 {
            Ok(serde_json::from_str(&text).expect("a token response"))
        } else {
            let mut error: EntraError = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("HTTP {status} without Entra's error shape ({e})"));
            error.status = status;
            Err(error)
        }
    }

    pub async fn stats(&self) -> EntraStats {
        let text = self
            .https_client()
            .get(format!("{}/_emulator/stats", self.authority_host))
            .send()
            .await
            .expect("GET the Entra emulator's stats")
            .text()
            .await
            .expect("read the Entra emulator's stats");
        serde_json::from_str(&text).expect("the emulator's stats")
    }
}

// ---------------------------------------------------------------------------------------------
// ServiceAccount tokens and forged ones

/// `system:serviceaccount:NS:NAME`, the subject of a ServiceAccount token.
pub fn service_account_subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A token for ServiceAccount `namespace/name` from TokenRequest with `audiences` (empty: the
/// API server's own), valid for `expiration_seconds` (at least 600).
pub async fn service_account_token(
    control_plane: &ControlPlane,
    namespace: &str,
    name: &str,
    audiences: &[&str],
    expiration_seconds: i64,
) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(control_plane.client().await, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(expiration_seconds),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .expect("TokenRequest status")
        .token
}

/// The key the test kube-apiserver signs ServiceAccount tokens with (hack/testenv.sh keeps it
/// in `pki/` next to the serving CA). For tests that need a genuinely signed token the API
/// cannot mint, such as an expired one.
pub fn service_account_signing_key_path(control_plane: &ControlPlane) -> PathBuf {
    let path = control_plane.ca_cert_path.with_file_name("sa.key");
    assert!(path.is_file(), "no signing key at {}", path.display());
    path
}

/// A fresh 2048-bit RSA private key (PEM) in `dir`, made by openssl.
pub fn generate_rsa_key(dir: &Path) -> PathBuf {
    let path = dir.join("forger.key");
    let status = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .expect("run openssl genrsa");
    assert!(status.success(), "openssl genrsa failed");
    path
}

/// The two JSON parts of a JWT (header, claims), not verified.
pub fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("a JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url"))
            .expect("a JWT part is JSON")
    };
    (decode(), decode())
}

/// A JWT with `header` and `claims`, signed RS256 with the RSA key at `key_pem_path` (openssl).
pub fn sign_jwt_rs256(
    key_pem_path: &Path,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key_pem_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(signing_input.as_bytes())
        .expect("write the signing input to openssl");
    let output = child.wait_with_output().expect("openssl dgst output");
    assert!(output.status.success(), "openssl dgst -sign failed");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(output.stdout))
}

/// A random version-4 UUID (tenant and client ids).
pub fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("read /dev/urandom");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
