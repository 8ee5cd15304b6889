//! End-to-end behaviour of the controller: the real operator binary against a real
//! kube-apiserver, with every token it writes used against Azurite.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use operator::*;
use reqwest::Method;
use sas_operator::crd::SasGrant;
use serde_json::json;

/// Sets up a namespace with the Azurite dev key and a running operator.
async fn scenario(prefix: &str) -> (kube::Client, String, Operator) {
    let (client, ns) = namespace(prefix).await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let operator = Operator::start(&ns);
    (client, ns, operator)
}

fn admin() -> String {
    let azurite = common::azurite();
    admin_token(&azurite.account, &azurite.key)
}

/// Creates container `name` in Azurite holding `blobs` (path, body), with the admin token.
async fn container_with(name: &str, blobs: &[(&str, &str)]) -> String {
    let azurite = common::azurite();
    let storage = Storage::default();
    storage
        .create_container(&azurite.blob_endpoint, name, &admin())
        .await;
    for (path, body) in blobs {
        let status = storage
            .put_blob(
                &azurite.blob_endpoint,
                &format!("{name}/{path}"),
                body,
                &admin(),
            )
            .await;
        assert_eq!(status, 201, "put {name}/{path}");
    }
    name.to_string()
}

/// Creates a grant, waits for Ready, returns the target Secret's token.
async fn granted_token(client: &kube::Client, ns: &str, grant: SasGrant) -> (Secret, String) {
    let name = grant.name_any();
    create_grant(client, ns, &grant).await;
    let ready = wait_ready(client, ns, &name, "True", "TokenValid").await;
    let secret_name = ready
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or(name);
    let secret = get_secret(client, ns, &secret_name)
        .await
        .expect("target Secret exists once Ready");
    let token = data(&secret, "sasToken");
    (secret, token)
}

#[tokio::test]
async fn account_grant_token_lists_containers_in_azurite() {
    let (client, ns, operator) = scenario("account").await;
    let azurite = common::azurite();
    let grant = grant(
        "acct",
        json!({"account": {"services": "bq", "resourceTypes": "sco"}}),
        "rl",
        json!({}),
    );
    let (secret, token) = granted_token(&client, &ns, grant).await;

    let (status, body) = Storage::default()
        .send(
            Method::GET,
            format!("{}/?comp=list&{token}", azurite.blob_endpoint),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let connection_string = data(&secret, "connectionString");
    assert!(connection_string.starts_with(&format!(
        "BlobEndpoint={};QueueEndpoint={};",
        azurite.blob_endpoint, azurite.queue_endpoint
    )));
    assert!(connection_string.ends_with(&format!("SharedAccessSignature={token}")));
    assert_eq!(
        data(&secret, "sasUrl"),
        format!("{}?{token}", azurite.blob_endpoint)
    );
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn container_grant_token_lists_and_reads_blobs() {
    let (client, ns, operator) = scenario("container").await;
    let azurite = common::azurite();
    let storage = Storage::default();
    let container = container_with(&format!("c-{ns}"), &[("a.txt", "hello")]).await;

    let grant = grant(
        "data",
        json!({"container": {"name": container}}),
        "lr",
        json!({}),
    );
    let (secret, token) = granted_token(&client, &ns, grant).await;
    let (status, listing) = storage
        .list_blobs(&azurite.blob_endpoint, &container, &token)
        .await;
    assert_eq!(status, 200);
    assert!(listing.contains("a.txt"), "{listing}");
    let (status, body) = storage
        .send(
            Method::GET,
            format!("{}?{}", url_of(&secret, "a.txt"), token),
            None,
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

/// The blob URL under a container grant's `sasUrl`.
fn url_of(container_secret: &Secret, blob: &str) -> String {
    let sas_url = data(container_secret, "sasUrl");
    let container_url = sas_url.split('?').next().unwrap();
    format!("{container_url}/{blob}")
}

#[tokio::test]
async fn blob_grant_token_reads_exactly_that_blob() {
    let (client, ns, operator) = scenario("blob").await;
    let azurite = common::azurite();
    let storage = Storage::default();
    let container = container_with(
        &format!("b-{ns}"),
        &[("reports/2026.csv", "a,b"), ("other.csv", "x")],
    )
    .await;

    let grant = grant(
        "report",
        json!({"blob": {"container": container, "name": "reports/2026.csv"}}),
        "r",
        json!({}),
    );
    let (secret, token) = granted_token(&client, &ns, grant).await;
    let (status, body) = storage
        .send(Method::GET, data(&secret, "sasUrl"), None)
        .await;
    assert_eq!((status, body.as_str()), (200, "a,b"));
    let (status, _) = storage
        .send(
            Method::GET,
            format!("{}/{container}/other.csv?{token}", azurite.blob_endpoint),
            None,
        )
        .await;
    assert_eq!(status, 403, "a blob SAS must not open another blob");
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn queue_grant_token_adds_and_peeks_messages() {
    let (client, ns, operator) = scenario("queue").await;
    let azurite = common::azurite();
    let storage = Storage::default();
    let queue = format!("q-{ns}");
    storage
        .create_queue(&azurite.queue_endpoint, &queue, &admin())
        .await;

    let grant = grant("jobs", json!({"queue": {"name": queue}}), "ar", json!({}));
    let (_, token) = granted_token(&client, &ns, grant).await;
    let message = "<QueueMessage><MessageText>hi</MessageText></QueueMessage>".to_string();
    let url = format!("{}/{queue}/messages?{token}", azurite.queue_endpoint);
    let (status, _) = storage
        .send(
            Method::POST,
            url.clone(),
            Some((message, "application/xml")),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = storage
        .send(Method::GET, format!("{url}&peekonly=true"), None)
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("hi"), "{body}");
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn table_grant_token_inserts_and_queries_entities() {
    let (client, ns, operator) = scenario("table").await;
    let azurite = common::azurite();
    let storage = Storage::default();
    let table = format!("T{}", ns.replace('-', ""));
    storage
        .create_table(&azurite.table_endpoint, &table, &admin())
        .await;

    let grant = grant("orders", json!({"table": {"name": table}}), "ar", json!({}));
    let (_, token) = granted_token(&client, &ns, grant).await;
    let entity = json!({"PartitionKey": "p", "RowKey": "1", "Amount": 3}).to_string();
    let (status, text) = storage
        .send_table(
            Method::POST,
            format!("{}/{table}?{token}", azurite.table_endpoint),
            Some(entity),
        )
        .await;
    assert!(status == 201 || status == 204, "insert: {status} {text}");
    let (status, body) = storage
        .send_table(
            Method::GET,
            format!("{}/{table}()?{token}", azurite.table_endpoint),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"Amount\""), "{body}");
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn connection_string_works_with_azure_python_sdk() {
    let (client, ns, operator) = scenario("pysdk").await;
    let azurite = common::azurite();
    let container = container_with(&format!("py-{ns}"), &[("from-rust.txt", "r")]).await;

    let grant = grant(
        "py",
        json!({"account": {"services": "b", "resourceTypes": "sco"}}),
        "rl",
        json!({}),
    );
    let (secret, token) = granted_token(&client, &ns, grant).await;
    let script = format!(
        "import os\nfrom azure.storage.blob import BlobServiceClient\n\
         svc = BlobServiceClient.from_connection_string(os.environ['CS'])\n\
         print(','.join(b.name for b in svc.get_container_client('{container}').list_blobs()))\n"
    );
    let output = std::process::Command::new(oracle_python())
        .arg("-c")
        .arg(script)
        .env("CS", data(&secret, "connectionString"))
        .output()
        .expect("run the Python SDK");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr).replace(&token, "<token>")
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "from-rust.txt"
    );
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn token_is_rotated_before_it_expires_and_the_new_one_works() {
    let (client, ns, operator) = scenario("rotate").await;
    let azurite = common::azurite();
    // The shortest renewal the schema admits: in use 1m, renewed 1m before expiry.
    let spec = json!({"validity": "2m", "renewBefore": "1m"});
    let (first, first_token) = granted_token(
        &client,
        &ns,
        grant(
            "short",
            json!({"account": {"services": "b", "resourceTypes": "s"}}),
            "l",
            spec,
        ),
    )
    .await;
    let first_expiry: jiff::Timestamp = data(&first, "expiresAt").parse().unwrap();

    let rotated = wait_for("a rotated token", Duration::from_secs(90), || async {
        let secret = get_secret(&client, &ns, "short").await?;
        (data(&secret, "sasToken") != first_token).then_some(secret)
    })
    .await;
    assert!(
        jiff::Timestamp::now() < first_expiry,
        "rotation must happen before the old token expires"
    );
    let token = data(&rotated, "sasToken");
    let (status, _) = Storage::default()
        .send(
            Method::GET,
            format!("{}/?comp=list&{token}", azurite.blob_endpoint),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Status is written after the Secret, in the background: wait for it to show this token.
    let expires_at = data(&rotated, "expiresAt");
    let grants = Api::<SasGrant>::namespaced(client.clone(), &ns);
    let status = wait_for(
        "the status of the rotated token",
        Duration::from_secs(10),
        || async {
            let status = grants.get("short").await.ok()?.status?;
            (status.expires_at.as_deref() == Some(expires_at.as_str())).then_some(status)
        },
    )
    .await;
    assert_eq!(
        status.token_hash,
        Some(sas_operator::reconcile::secret::token_hash(&token))
    );
    operator.assert_logs_free_of(&[&azurite.key, &token, &first_token]);
}

#[tokio::test]
async fn a_new_account_key_is_signed_with_within_ten_seconds() {
    let (client, ns) = namespace("keyrot").await;
    let azurite = common::azurite();
    let second = &azurite.second_account;
    create_secret(
        &client,
        &ns,
        &key_secret("rotating-keys", &[("key1", &second.key1)]),
    )
    .await;
    let _operator = Operator::start(&ns);
    let mut grant = grant(
        "rot",
        json!({"account": {"services": "b", "resourceTypes": "s"}}),
        "l",
        json!({}),
    );
    grant.spec.storage_account.as_mut().unwrap().name = second.name.clone();
    grant
        .spec
        .storage_account
        .as_mut()
        .unwrap()
        .key_secret_ref
        .name = "rotating-keys".into();
    let endpoint = azurite.endpoints_for(&second.name).blob;
    grant.spec.storage_account.as_mut().unwrap().endpoints = Some(sas_operator::crd::Endpoints {
        blob: Some(endpoint.clone()),
        ..Default::default()
    });
    let (_, old_token) = granted_token(&client, &ns, grant).await;

    let changed_at = std::time::Instant::now();
    let patch = json!({"data": {"key1": base64_of(&second.key2)}});
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "rotating-keys",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let new_token = wait_for(
        "a token signed with the new key",
        Duration::from_secs(10),
        || async {
            let token = data(&get_secret(&client, &ns, "rot").await?, "sasToken");
            (token != old_token).then_some(token)
        },
    )
    .await;
    assert!(changed_at.elapsed() < Duration::from_secs(10));
    assert!(
        signed_with(&new_token, &second.name, &second.key2),
        "the new token must be signed with key2"
    );
    let (status, _) = Storage::default()
        .send(
            Method::GET,
            format!("{endpoint}/?comp=list&{new_token}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Re-signs an account token's own parameters with `key` and compares signatures.
fn signed_with(token: &str, account: &str, key: &str) -> bool {
    let params: BTreeMap<String, String> = url_params(token);
    let resign = sas_operator::sas::SasParams {
        account_name: account.into(),
        resource: sas_operator::sas::Resource::Account {
            services: params["ss"].clone(),
            resource_types: params["srt"].clone(),
        },
        permissions: Some(params["sp"].clone()),
        start: params.get("st").map(|t| t.parse().unwrap()),
        expiry: Some(params["se"].parse().unwrap()),
        ip: None,
        protocol: Some(sas_operator::sas::Protocol::HttpsAndHttp),
        version: Some(params["sv"].clone()),
        policy_id: None,
        encryption_scope: None,
        response_headers: Default::default(),
        delegation: Default::default(),
    };
    let key = sas_operator::sas::AccountKey::from_base64(key).unwrap();
    let expected =
        sas_operator::sas::sign(&resign, &sas_operator::sas::SigningKey::Account(key)).unwrap();
    url_params(&expected.token)["sig"] == params["sig"]
}

fn url_params(token: &str) -> BTreeMap<String, String> {
    token
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn steady_state_makes_no_writes_for_a_minute() {
    let (client, ns, _operator) = scenario("steady").await;
    let grants = Api::<SasGrant>::namespaced(client.clone(), &ns);
    for i in 0..20 {
        create_grant(
            &client,
            &ns,
            &grant(
                &format!("g{i}"),
                json!({"account": {"services": "b", "resourceTypes": "s"}}),
                "l",
                json!({}),
            ),
        )
        .await;
    }
    for i in 0..20 {
        wait_ready(&client, &ns, &format!("g{i}"), "True", "TokenValid").await;
    }
    // Let the writes of the first rotation and their watch echoes settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let versions = resource_versions(&client, &ns).await;
    assert_eq!(versions.len(), 40, "20 grants and 20 Secrets");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        resource_versions(&client, &ns).await,
        versions,
        "steady state must not write"
    );
    assert_eq!(
        grants.list(&Default::default()).await.unwrap().items.len(),
        20
    );
}

async fn resource_versions(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for grant in Api::<SasGrant>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
    {
        versions.insert(
            format!("grant/{}", grant.name_any()),
            grant.resource_version().unwrap(),
        );
    }
    for secret in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
    {
        if secret.name_any() != "azurite-keys" {
            versions.insert(
                format!("secret/{}", secret.name_any()),
                secret.resource_version().unwrap(),
            );
        }
    }
    versions
}

#[tokio::test]
async fn a_missing_key_secret_is_reported_and_keeps_the_valid_token() {
    let (client, ns, operator) = scenario("nokey").await;
    let (before, token) = granted_token(
        &client,
        &ns,
        grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("azurite-keys", &DeleteParams::default())
        .await
        .unwrap();
    // A spec change forces a re-sign, which now cannot find the key.
    patch_spec(&client, &ns, "g", json!({"permissions": "rl"})).await;
    let grant = wait_ready(&client, &ns, "g", "False", "KeySecretNotFound").await;
    let message = &grant.status.unwrap().conditions[0].message;
    assert!(message.contains("azurite-keys"), "{message}");
    assert_event(&client, &ns, "g", "KeySecretNotFound").await;
    let after = get_secret(&client, &ns, "g").await.unwrap();
    assert_eq!(data(&after, "sasToken"), token);
    assert_eq!(after.resource_version(), before.resource_version());
    operator.assert_logs_free_of(&[&common::azurite().key, &token]);
}

#[tokio::test]
async fn a_key_that_is_not_base64_is_reported_and_keeps_the_valid_token() {
    let (client, ns, operator) = scenario("badkey").await;
    let (before, token) = granted_token(
        &client,
        &ns,
        grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    let patch = json!({"data": {"key1": base64_of("this is not a key!")}});
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "azurite-keys",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    wait_ready(&client, &ns, "g", "False", "KeyNotBase64").await;
    assert_event(&client, &ns, "g", "KeyNotBase64").await;
    let after = get_secret(&client, &ns, "g").await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    let logs = operator.logs();
    assert!(
        !logs.contains("this is not a key!"),
        "a bad key value must not be logged"
    );
    operator.assert_logs_free_of(&[&token]);
}

#[tokio::test]
async fn letters_invalid_for_the_resource_kind_are_reported() {
    let (client, ns, _operator) = scenario("letters").await;
    // `u` and `p` are valid for queues and accounts, not for a container.
    create_grant(
        &client,
        &ns,
        &grant(
            "g",
            json!({"container": {"name": "data"}}),
            "rup",
            json!({}),
        ),
    )
    .await;
    let grant = wait_ready(&client, &ns, "g", "False", "InvalidPermission").await;
    let message = &grant.status.unwrap().conditions[0].message;
    assert!(message.contains('u'), "{message}");
    assert_event(&client, &ns, "g", "InvalidPermission").await;
    assert!(get_secret(&client, &ns, "g").await.is_none());
}

#[tokio::test]
async fn a_foreign_secret_of_the_target_name_is_left_untouched() {
    let (client, ns, _operator) = scenario("foreign").await;
    create_secret(
        &client,
        &ns,
        &unlabelled_secret("taken", &[("mine", "do not touch")]),
    )
    .await;
    let before = get_secret(&client, &ns, "taken").await.unwrap();
    let spec = json!({"target": {"secretName": "taken"}});
    create_grant(
        &client,
        &ns,
        &grant("g", json!({"container": {"name": "data"}}), "r", spec),
    )
    .await;
    wait_ready(&client, &ns, "g", "False", "SecretNotOwned").await;
    assert_event(&client, &ns, "g", "SecretNotOwned").await;
    let after = get_secret(&client, &ns, "taken").await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(after.data, before.data);
}

#[tokio::test]
async fn a_key_secret_in_another_namespace_is_never_used() {
    let (client, ns, _operator) = scenario("isolated").await;
    let other = common::test_namespace(&client, "keyowner").await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &other,
        &key_secret("elsewhere", &[("key1", &azurite.key)]),
    )
    .await;
    let mut g = grant("g", json!({"container": {"name": "data"}}), "r", json!({}));
    g.spec.storage_account.as_mut().unwrap().key_secret_ref.name = "elsewhere".into();
    create_grant(&client, &ns, &g).await;
    let grant = wait_ready(&client, &ns, "g", "False", "KeySecretNotFound").await;
    assert!(
        grant.status.unwrap().conditions[0]
            .message
            .contains("elsewhere")
    );
    assert!(get_secret(&client, &ns, "g").await.is_none());
    // A GET of that Secret by name is what borrowing another namespace's key would look like.
    let audit = std::fs::read_to_string(common::control_plane().apiserver_audit_log_path())
        .expect("audit log");
    let reads = audit
        .lines()
        .filter(|line| {
            line.contains("\"verb\":\"get\"") && line.contains("\"resource\":\"secrets\"")
        })
        .filter(|line| {
            line.contains(&format!("\"namespace\":\"{other}\""))
                && line.contains("\"name\":\"elsewhere\"")
        })
        .count();
    assert!(
        audit.contains(&format!("\"namespace\":\"{ns}\"")),
        "the audit log records this test's requests"
    );
    assert_eq!(reads, 0, "the Secret in another namespace was read");
}

#[tokio::test]
async fn deleting_a_grant_deletes_its_secret() {
    let (client, ns, _operator) = scenario("delete").await;
    granted_token(
        &client,
        &ns,
        grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    Api::<SasGrant>::namespaced(client.clone(), &ns)
        .delete("g", &DeleteParams::default())
        .await
        .unwrap();
    // kube-controller-manager's garbage collector rediscovers resource types every
    // 30 s, so right after the CRD is installed it may not know SasGrants yet; it
    // then re-checks the owner with growing back-off. 90 s covers both on a busy CI.
    wait_for(
        "the target Secret to be garbage-collected",
        Duration::from_secs(90),
        || async { get_secret(&client, &ns, "g").await.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_spec_change_re_signs_at_once() {
    let (client, ns, _operator) = scenario("respec").await;
    let (_, token) = granted_token(
        &client,
        &ns,
        grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    patch_spec(&client, &ns, "g", json!({"permissions": "rl"})).await;
    let secret = wait_for(
        "a token with the new permissions",
        Duration::from_secs(10),
        || async {
            let secret = get_secret(&client, &ns, "g").await?;
            (data(&secret, "sasToken") != token).then_some(secret)
        },
    )
    .await;
    assert!(data(&secret, "sasToken").contains("sp=rl"));
}

#[tokio::test]
async fn the_api_server_rejects_invalid_grants_with_clear_messages() {
    let (client, ns) = namespace("cel").await;
    let api = Api::<SasGrant>::namespaced(client.clone(), &ns);
    let cases = [
        (
            grant(
                "two",
                json!({"container": {"name": "a"}, "queue": {"name": "q"}}),
                "r",
                json!({}),
            ),
            "exactly one of",
        ),
        (
            grant(
                "renew",
                json!({"container": {"name": "a"}}),
                "r",
                json!({"validity": "1h", "renewBefore": "2h"}),
            ),
            "renewBefore must be shorter",
        ),
        (
            grant(
                "short",
                json!({"container": {"name": "a"}}),
                "r",
                json!({"validity": "30s"}),
            ),
            "validity must be between",
        ),
        (
            grant(
                "letters",
                json!({"container": {"name": "a"}}),
                "rz",
                json!({}),
            ),
            "permissions",
        ),
    ];
    for (grant, expected) in cases {
        let err = api
            .create(&PostParams::default(), &grant)
            .await
            .expect_err("the API server must reject it");
        assert!(
            err.to_string().contains(expected),
            "{}: {err}",
            grant.name_any()
        );
    }
}

async fn patch_spec(client: &kube::Client, ns: &str, name: &str, spec: serde_json::Value) {
    Api::<SasGrant>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .expect("patch SasGrant spec");
}

/// Waits for an Event about the grant with `reason`.
async fn assert_event(client: &kube::Client, ns: &str, grant: &str, reason: &str) {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns);
    let what = format!("a {reason} Event for {grant}");
    wait_for(&what, Duration::from_secs(10), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(grant)
            })
            .then_some(())
    })
    .await;
}
