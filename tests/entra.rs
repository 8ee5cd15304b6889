//! The keyless chain against the real parts: a ServiceAccount token from the test
//! kube-apiserver (TokenRequest, audience `api://AzureADTokenExchange`) is exchanged at the
//! Entra ID emulator for an access token, which gets a user delegation key from Azurite
//! (HTTPS, `--oauth basic`); the project's signer signs a user delegation SAS with it.
//!
//! And the emulator's honesty where security lives: a token it must refuse (no federated
//! credential, another issuer, wrong audience, forged or unsigned, expired) is refused with
//! Entra's error shape and the AADSTS code Entra uses. Every test registers its own tenant and
//! client id, so the emulator's per-client counters and Azurite's per-`oid` counts are its own.

mod common;

use std::time::Duration;

use common::entra::{
    AppRegistration, EntraError, TOKEN_EXCHANGE_AUDIENCE, generate_rsa_key, jwt_parts, random_uuid,
    service_account_signing_key_path, service_account_subject, service_account_token,
    sign_jwt_rs256,
};
use common::{azurite_oauth, control_plane, entra, eventually, test_namespace};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use sas_operator::sas::{
    self, AccountKey, Protocol, Resource, SasParams, SigningKey, UserDelegationKey,
};

/// The `x-ms-version` of our storage requests (within what the pinned Azurite serves).
const REQUEST_VERSION: &str = "2025-05-05";
/// What TokenRequest allows at least, and what the operator will ask for at most (1 h).
const ONE_HOUR: i64 = 3600;

/// A ServiceAccount in its own namespace, and an application whose federated credential
/// names it (issuer: the test control plane, audience: api://AzureADTokenExchange).
struct Workload {
    namespace: String,
    service_account: String,
    app: AppRegistration,
}

async fn workload(prefix: &str) -> Workload {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, prefix).await;
    let service_account = "storage-signer".to_string();
    create_service_account(&namespace, &service_account).await;
    let app = entra()
        .register_app(&service_account_subject(&namespace, &service_account))
        .await;
    Workload {
        namespace,
        service_account,
        app,
    }
}

async fn create_service_account(namespace: &str, name: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(control_plane().client().await, namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap_or_else(|e| panic!("create ServiceAccount {namespace}/{name}: {e}"));
}

impl Workload {
    /// A token of this workload's ServiceAccount for `audiences`.
    async fn token_for(&self, audiences: &[&str]) -> String {
        service_account_token(
            control_plane(),
            &self.namespace,
            &self.service_account,
            audiences,
            ONE_HOUR,
        )
        .await
    }

    /// The token a workload identity client presents: audience api://AzureADTokenExchange.
    async fn exchange_token(&self) -> String {
        self.token_for(&[TOKEN_EXCHANGE_AUDIENCE]).await
    }

    async fn exchange(&self, assertion: &str) -> Result<common::entra::AccessToken, EntraError> {
        entra()
            .exchange(&self.app.tenant_id, &self.app.client_id, assertion)
            .await
    }

    async fn refused(&self, assertion: &str) -> EntraError {
        match self.exchange(assertion).await {
            Ok(token) => panic!("the emulator accepted the assertion and issued {token:?}"),
            Err(error) => error,
        }
    }
}

fn assert_refused(error: &EntraError, status: u16, oauth_error: &str, aadsts: &str) {
    assert_eq!(
        (error.status, error.error.as_str(), error.aadsts()),
        (status, oauth_error, aadsts.to_string()),
        "refusal: {error:?}"
    );
    assert!(
        error.error_description.starts_with(&format!("{aadsts}: ")),
        "error_description starts with the AADSTS code: {error:?}"
    );
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

// ---------------------------------------------------------------------------------------------
// Azurite: Get User Delegation Key with the access token, and the SAS it signs

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

fn rfc3339(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Get User Delegation Key on Azurite's blob endpoint with `access_token`: (status, body).
async fn get_user_delegation_key(access_token: &str) -> (u16, String) {
    let oauth = azurite_oauth();
    let body = format!(
        "<KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        rfc3339(now() - 300),
        rfc3339(now() + 2 * ONE_HOUR)
    );
    let response = oauth
        .https_client()
        .post(format!(
            "{}/?restype=service&comp=userdelegationkey",
            oauth.blob_endpoint
        ))
        .header("Authorization", format!("Bearer {access_token}"))
        .header("x-ms-version", REQUEST_VERSION)
        .body(body)
        .send()
        .await
        .expect("Get User Delegation Key request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn parse_user_delegation_key(xml: &str) -> UserDelegationKey {
    let field = |tag| xml_field(xml, tag).unwrap_or_else(|| panic!("key response lacks {tag}"));
    UserDelegationKey {
        signed_oid: field("SignedOid"),
        signed_tid: field("SignedTid"),
        signed_start: field("SignedStart"),
        signed_expiry: field("SignedExpiry"),
        signed_service: field("SignedService"),
        signed_version: field("SignedVersion"),
        signed_delegated_user_tid: xml_field(xml, "SignedDelegatedUserTid"),
        value: AccountKey::from_base64(&field("Value")).expect("the key value is base64"),
    }
}

/// A container SAS signed by `sas_operator::sas` with a user delegation key, HTTPS only.
fn container_user_delegation_sas(
    key: &UserDelegationKey,
    container: &str,
    permissions: &str,
) -> String {
    let params = SasParams {
        account_name: azurite_oauth().azurite.account.clone(),
        resource: Resource::Container {
            container: container.into(),
        },
        permissions: Some(permissions.into()),
        start: Some(jiff::Timestamp::from_second(now() - 300).unwrap()),
        expiry: Some(jiff::Timestamp::from_second(now() + ONE_HOUR).unwrap()),
        ip: None,
        protocol: Some(Protocol::Https),
        version: None,
        policy_id: None,
        encryption_scope: None,
        response_headers: Default::default(),
        delegation: Default::default(),
    };
    sas::sign(&params, &SigningKey::UserDelegation(key.clone()))
        .expect("sign a user delegation SAS")
        .token
}

// ---------------------------------------------------------------------------------------------
// The chain

#[tokio::test]
async fn service_account_token_is_exchanged_and_its_user_delegation_sas_writes_and_reads_a_blob() {
    let workload = workload("entra-chain").await;
    let access = workload
        .exchange(&workload.exchange_token().await)
        .await
        .expect("the exchange succeeds");
    assert_eq!(access.token_type, "Bearer");
    assert!(access.expires_in > 600, "expires_in {}", access.expires_in);
    let (_, claims) = jwt_parts(&access.access_token);
    let tenant = &workload.app.tenant_id;
    assert_eq!(claims["aud"], "https://storage.azure.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{tenant}/"));
    assert_eq!(claims["tid"], tenant.as_str());
    assert_eq!(claims["oid"], workload.app.object_id.as_str());

    let (status, body) = get_user_delegation_key(&access.access_token).await;
    assert_eq!(status, 200, "Get User Delegation Key: {body}");
    let key = parse_user_delegation_key(&body);
    assert_eq!(
        (key.signed_oid.as_str(), key.signed_tid.as_str()),
        (workload.app.object_id.as_str(), tenant.as_str()),
        "the key belongs to the exchanged identity"
    );

    // The container is made with the access token; everything after goes through the SAS.
    let oauth = azurite_oauth();
    let http = oauth.https_client();
    let container = format!("keyless-{}", &random_uuid()[..8]);
    let created = http
        .put(format!(
            "{}/{container}?restype=container",
            oauth.blob_endpoint
        ))
        .header("Authorization", format!("Bearer {}", access.access_token))
        .header("x-ms-version", REQUEST_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        201,
        "create container with the access token"
    );

    let token = container_user_delegation_sas(&key, &container, "rwcl");
    assert!(
        token.contains(&format!("skoid={}", workload.app.object_id)),
        "a user delegation SAS names its key's object id: {}",
        token.split("&sig=").next().unwrap()
    );
    let blob_url = format!("{}/{container}/hello.txt?{token}", oauth.blob_endpoint);
    let written = http
        .put(&blob_url)
        .header("x-ms-version", REQUEST_VERSION)
        .header("x-ms-blob-type", "BlockBlob")
        .body("written with a keyless SAS")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 201, "upload with the user delegation SAS");
    let read = http
        .get(&blob_url)
        .header("x-ms-version", REQUEST_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "read with the user delegation SAS");
    assert_eq!(read.text().await.unwrap(), "written with a keyless SAS");
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn service_account_without_a_federated_credential_is_refused_with_aadsts700213() {
    let workload = workload("entra-no-credential").await;
    create_service_account(&workload.namespace, "someone-else").await;
    let other_token = service_account_token(
        control_plane(),
        &workload.namespace,
        "someone-else",
        &[TOKEN_EXCHANGE_AUDIENCE],
        ONE_HOUR,
    )
    .await;
    let error = workload.refused(&other_token).await;
    assert_refused(&error, 401, "invalid_client", "AADSTS700213");
    let subject = service_account_subject(&workload.namespace, "someone-else");
    assert!(
        error.error_description.contains(&subject),
        "names the presented subject: {error:?}"
    );
}

#[tokio::test]
async fn federated_credential_for_another_issuer_is_refused_with_aadsts700211() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "entra-other-issuer").await;
    create_service_account(&namespace, "storage-signer").await;
    // Same subject, but trusted only from another cluster's issuer.
    let app = entra()
        .add_federated_credential(
            &random_uuid(),
            &random_uuid(),
            &service_account_subject(&namespace, "storage-signer"),
            Some("https://oidc.other-cluster.invalid/"),
        )
        .await;
    let token = service_account_token(
        control_plane(),
        &namespace,
        "storage-signer",
        &[TOKEN_EXCHANGE_AUDIENCE],
        ONE_HOUR,
    )
    .await;
    let error = entra()
        .exchange(&app.tenant_id, &app.client_id, &token)
        .await
        .expect_err("a token of another issuer is refused");
    assert_refused(&error, 401, "invalid_client", "AADSTS700211");
}

#[tokio::test]
async fn unknown_client_id_is_refused_with_aadsts700016() {
    let workload = workload("entra-unknown-client").await;
    let error = entra()
        .exchange(
            &workload.app.tenant_id,
            &random_uuid(),
            &workload.exchange_token().await,
        )
        .await
        .expect_err("an unknown client id is refused");
    assert_refused(&error, 400, "unauthorized_client", "AADSTS700016");
}

#[tokio::test]
async fn token_for_the_api_server_audience_is_refused_with_aadsts700212() {
    let workload = workload("entra-audience").await;
    // No audiences: the API server's own, as a token for talking to Kubernetes has.
    let kubernetes_token = workload.token_for(&[]).await;
    let (_, claims) = jwt_parts(&kubernetes_token);
    assert_ne!(claims["aud"][0], TOKEN_EXCHANGE_AUDIENCE);
    let error = workload.refused(&kubernetes_token).await;
    assert_refused(&error, 401, "invalid_client", "AADSTS700212");
}

#[tokio::test]
async fn token_signed_by_another_key_with_the_same_claims_is_refused_with_aadsts50027() {
    let workload = workload("entra-forged").await;
    let genuine = workload.exchange_token().await;
    // Header (alg, kid) and claims copied from a genuine token; only the key differs.
    let (header, claims) = jwt_parts(&genuine);
    let scratch = tempfile::tempdir().unwrap();
    let forged = sign_jwt_rs256(&generate_rsa_key(scratch.path()), &header, &claims);
    let error = workload.refused(&forged).await;
    assert_refused(&error, 401, "invalid_client", "AADSTS50027");
}

#[tokio::test]
async fn unsigned_token_with_the_same_claims_is_refused_with_aadsts50027() {
    let workload = workload("entra-unsigned").await;
    let (_, claims) = jwt_parts(&workload.exchange_token().await);
    let encode = |value: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        encode(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        encode(&claims)
    );
    let error = workload.refused(&unsigned).await;
    assert_refused(&error, 401, "invalid_client", "AADSTS50027");
}

#[tokio::test]
async fn expired_token_signed_by_the_api_server_is_refused_with_aadsts700024() {
    let workload = workload("entra-expired").await;
    // TokenRequest cannot mint an expired token (10 minutes at least), so this one is signed
    // with the API server's own key. AADSTS700024 (not 50027) shows its signature verified.
    let (header, mut claims) = jwt_parts(&workload.exchange_token().await);
    claims["iat"] = (now() - 2 * ONE_HOUR).into();
    claims["nbf"] = (now() - 2 * ONE_HOUR).into();
    claims["exp"] = (now() - 60).into();
    let signing_key = service_account_signing_key_path(control_plane());
    let expired = sign_jwt_rs256(&signing_key, &header, &claims);
    let error = workload.refused(&expired).await;
    assert_refused(&error, 401, "invalid_client", "AADSTS700024");
}

#[tokio::test]
async fn token_re_signed_by_the_api_server_key_within_its_time_range_is_accepted() {
    // The control for the expired-token test: the same re-signing, only the times differ.
    let workload = workload("entra-resigned").await;
    let (header, mut claims) = jwt_parts(&workload.exchange_token().await);
    claims["iat"] = (now() - 60).into();
    claims["nbf"] = (now() - 60).into();
    claims["exp"] = (now() + 600).into();
    let signing_key = service_account_signing_key_path(control_plane());
    let resigned = sign_jwt_rs256(&signing_key, &header, &claims);
    workload
        .exchange(&resigned)
        .await
        .expect("a token the API server's key signed, in its time range, is accepted");
}

#[tokio::test]
async fn request_without_a_client_assertion_is_refused_with_aadsts7000218() {
    let workload = workload("entra-no-assertion").await;
    let error = entra()
        .exchange_form(
            &workload.app.tenant_id,
            &[
                ("client_id", workload.app.client_id.as_str()),
                ("scope", common::entra::STORAGE_SCOPE),
                ("grant_type", "client_credentials"),
            ],
        )
        .await
        .expect_err("no assertion, no token");
    assert_refused(&error, 401, "invalid_client", "AADSTS7000218");
}

// ---------------------------------------------------------------------------------------------
// Counting, for "one exchange and one key for many grants"

#[tokio::test]
async fn stats_count_successful_and_failed_exchanges_per_client() {
    let workload = workload("entra-stats").await;
    assert_eq!(
        entra().stats().await.for_client(&workload.app.client_id),
        Default::default()
    );
    let token = workload.exchange_token().await;
    workload.exchange(&token).await.expect("first exchange");
    workload.exchange(&token).await.expect("second exchange");
    let kubernetes_token = workload.token_for(&[]).await;
    workload.refused(&kubernetes_token).await;

    let stats = entra().stats().await;
    let counts = stats.for_client(&workload.app.client_id);
    assert_eq!((counts.succeeded, counts.failed), (2, 1));
    assert!(
        stats.succeeded >= 2 && stats.failed >= 1,
        "totals: {stats:?}"
    );
    assert!(
        stats.errors.get("AADSTS700212").copied().unwrap_or(0) >= 1,
        "failures by code: {stats:?}"
    );
}

#[tokio::test]
async fn azurite_user_delegation_key_requests_are_counted_per_object_id() {
    let workload = workload("entra-key-count").await;
    let access = workload
        .exchange(&workload.exchange_token().await)
        .await
        .expect("the exchange succeeds");
    let oauth = azurite_oauth();
    let object_id = &workload.app.object_id;
    assert_eq!(oauth.user_delegation_key_requests(object_id), 0);
    for _ in 0..2 {
        let (status, body) = get_user_delegation_key(&access.access_token).await;
        assert_eq!(status, 200, "Get User Delegation Key: {body}");
    }
    // Azurite writes its log asynchronously: wait for both, then make sure there are no more.
    eventually("two counted requests", Duration::from_secs(10), || async {
        (oauth.user_delegation_key_requests(object_id) >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(oauth.user_delegation_key_requests(object_id), 2);
}
