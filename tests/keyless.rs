//! Issuers and keyless grants, end to end on the real control plane: the real operator under
//! `deploy/`'s ServiceAccount and RBAC, the API server's audit log as the witness of what it
//! read, and Azurite as the judge of the tokens.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use operator::*;
use sas_operator::crd::{ClusterSasIssuer, SasGrant};
use serde_json::json;

const DEPLOY_USER: &str = "system:serviceaccount:sas-operator:sas-operator";

// ----- the audit log -----

/// How many times the operator's ServiceAccount read Secret `ns/name` by GET.
fn secret_reads_by_operator(ns: &str, name: &str) -> usize {
    common::audit::events()
        .iter()
        .filter(|e| e.username() == DEPLOY_USER && e.verb == "get")
        .filter(|e| {
            e.resource() == Some("secrets") && e.namespace() == Some(ns) && e.name() == Some(name)
        })
        .count()
}

// ----- fixtures -----

async fn label_namespace(client: &Client, ns: &str, labels: serde_json::Value) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label the namespace");
}

/// A `ClusterSasIssuer` for Azurite's dev account with its key in Secret `key_secret` of the
/// cluster resource namespace, allowing namespaces labelled `storage-access: <allow_label>` to
/// read and list their own container `c-<namespace>` (over http too: Azurite's).
async fn create_cluster_issuer(client: &Client, name: &str, key_secret: &str, allow_label: &str) {
    let azurite = common::azurite();
    let issuer: ClusterSasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "ClusterSasIssuer",
        "metadata": {"name": name},
        "spec": {
            "storageAccount": {
                "name": azurite.account,
                "endpoints": {"blob": azurite.blob_endpoint},
            },
            "accountKey": {"secretRef": {"name": key_secret, "key": "key1"}},
            "allowedNamespaces": {"matchLabels": {"storage-access": allow_label}},
            "policy": {
                "resources": {"container": {"names": ["c-{namespace}"]}},
                "maxPermissions": {"container": "rl"},
                "protocols": "https,http",
            },
        }
    }))
    .expect("a valid ClusterSasIssuer");
    Api::<ClusterSasIssuer>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("sas-operator-tests").force(),
            &Patch::Apply(&issuer),
        )
        .await
        .expect("apply the ClusterSasIssuer");
}

/// A container grant signed by issuer `kind/name`.
fn issued_grant(name: &str, kind: &str, issuer: &str, container: &str) -> SasGrant {
    serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "issuerRef": {"kind": kind, "name": issuer},
            "resource": {"container": {"name": container}},
            "permissions": "rl",
            "protocol": "https,http",
        }
    }))
    .expect("a valid SasGrant")
}

// ----- ClusterSasIssuer with an account key -----

#[tokio::test]
async fn a_cluster_issuer_serves_allowed_namespaces_and_never_reads_its_key_for_others() {
    let (client, platform) = namespace("platform").await;
    let allowed = common::test_namespace(&client, "allowed").await;
    let refused = common::test_namespace(&client, "refused").await;
    let operator = Operator::under_deploy_rbac(
        "keyless-cluster-issuer",
        &[&allowed, &refused],
        &["--cluster-resource-namespace", &platform],
    )
    .await;
    let azurite = common::azurite();
    let key_secret_name = format!("{platform}-keys");
    create_secret(
        &client,
        &platform,
        &key_secret(&key_secret_name, &[("key1", &azurite.key)]),
    )
    .await;
    let issuer = format!("{platform}-issuer");
    let allow = format!("granted-{platform}");
    create_cluster_issuer(&client, &issuer, &key_secret_name, &allow).await;
    label_namespace(&client, &allowed, json!({"storage-access": allow})).await;
    label_namespace(&client, &refused, json!({"storage-access": "not-this-one"})).await;
    let container = format!("c-{allowed}");
    let storage = Storage::default();
    storage
        .create_container(
            &azurite.blob_endpoint,
            &container,
            &admin_token(&azurite.account, &azurite.key),
        )
        .await;

    // The refused namespace first: nothing else has made the operator read the key yet.
    let refused_grant = issued_grant("reader", "ClusterSasIssuer", &issuer, &container);
    create_grant(&client, &refused, &refused_grant).await;
    let shown = wait_ready(&client, &refused, "reader", "False", "IssuerNotAllowed").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(message.contains(&refused), "{message}");
    assert!(get_secret(&client, &refused, "reader").await.is_none());
    assert_eq!(
        secret_reads_by_operator(&platform, &key_secret_name),
        0,
        "the key Secret was read for a namespace the issuer does not allow"
    );

    // The allowed namespace: signed with the key of the cluster resource namespace, and the
    // audit log does show that read (so the zero above is not blindness).
    create_grant(
        &client,
        &allowed,
        &issued_grant("reader", "ClusterSasIssuer", &issuer, &container),
    )
    .await;
    wait_ready(&client, &allowed, "reader", "True", "TokenValid").await;
    let token = data(
        &get_secret(&client, &allowed, "reader").await.unwrap(),
        "sasToken",
    );
    let (status, _) = storage
        .list_blobs(&azurite.blob_endpoint, &container, &token)
        .await;
    assert_eq!(status, 200, "the issuer's token lists the container");
    wait_for(
        "the audit log to show the key Secret read for the allowed grant",
        Duration::from_secs(10),
        || async { (secret_reads_by_operator(&platform, &key_secret_name) > 0).then_some(()) },
    )
    .await;
    let shown = Api::<ClusterSasIssuer>::all(client.clone())
        .get(&issuer)
        .await
        .unwrap();
    let ready = &shown.status.expect("the issuer shows status").conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AccountKeyValid"),
        "a refused namespace does not make the issuer not-ready"
    );
    // Still refused, and still nothing written for it.
    wait_ready(&client, &refused, "reader", "False", "IssuerNotAllowed").await;
    assert!(get_secret(&client, &refused, "reader").await.is_none());
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}

#[tokio::test]
async fn a_grant_cannot_use_a_sas_issuer_of_another_namespace() {
    let (client, theirs) = namespace("theirs").await;
    let mine = common::test_namespace(&client, "mine").await;
    let _operator =
        Operator::under_deploy_rbac("keyless-foreign-issuer", &[&mine, &theirs], &[]).await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &theirs,
        &key_secret("their-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let issuer: sas_operator::crd::SasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": theirs},
        "spec": {
            "storageAccount": {"name": azurite.account, "endpoints": {"blob": azurite.blob_endpoint}},
            "accountKey": {"secretRef": {"name": "their-keys"}},
        }
    }))
    .unwrap();
    Api::<sas_operator::crd::SasIssuer>::namespaced(client.clone(), &theirs)
        .create(&Default::default(), &issuer)
        .await
        .expect("create the SasIssuer");

    create_grant(
        &client,
        &mine,
        &issued_grant("borrow", "SasIssuer", "team", "data"),
    )
    .await;
    wait_ready(&client, &mine, "borrow", "False", "IssuerNotFound").await;
    // In its own namespace the same issuer signs.
    create_grant(
        &client,
        &theirs,
        &issued_grant("own", "SasIssuer", "team", "data"),
    )
    .await;
    wait_ready(&client, &theirs, "own", "True", "TokenValid").await;
    assert!(get_secret(&client, &mine, "borrow").await.is_none());
}

#[tokio::test]
async fn the_api_server_refuses_a_grant_with_both_or_neither_of_issuer_ref_and_storage_account() {
    let (client, ns) = namespace("choice").await;
    install_deploy_directory();
    let api = Api::<SasGrant>::namespaced(client.clone(), &ns);
    let mut both = grant("both", json!({"container": {"name": "c"}}), "r", json!({}));
    both.spec.issuer_ref = Some(sas_operator::crd::IssuerRef {
        kind: sas_operator::crd::IssuerKind::ClusterSasIssuer,
        name: "platform".into(),
    });
    let mut neither = both.clone();
    neither.metadata.name = Some("neither".into());
    neither.spec.issuer_ref = None;
    neither.spec.storage_account = None;
    for grant in [both, neither] {
        let err = api
            .create(&Default::default(), &grant)
            .await
            .expect_err("admitted a grant without exactly one credential");
        assert!(
            err.to_string()
                .contains("exactly one of issuerRef and storageAccount must be set"),
            "{err}"
        );
    }
}

// ----- workload identity -----

use common::entra::{AppRegistration, service_account_subject};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use sas_operator::crd::SasIssuer;

/// What the operator needs to reach the Entra emulator and Azurite over HTTPS.
fn workload_identity_args() -> Vec<String> {
    let entra = common::entra();
    let oauth = common::azurite_oauth();
    vec![
        "--authority-host".into(),
        entra.authority_host.clone(),
        "--extra-ca-file".into(),
        format!(
            "{},{}",
            entra.ca_cert_pem_path.display(),
            oauth.ca_cert_pem_path.display()
        ),
    ]
}

async fn start_operator(log_name: &str, namespaces: &[&str], extra: &[&str]) -> Operator {
    let mut args = workload_identity_args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::under_deploy_rbac(log_name, namespaces, &args).await
}

async fn create_service_account(client: &Client, ns: &str, name: &str) {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&Default::default(), &account)
        .await
        .expect("create the ServiceAccount");
}

/// A `SasIssuer` named `name` with `workloadIdentity` for `app` and ServiceAccount `account`,
/// for Azurite's HTTPS blob endpoint.
async fn create_identity_issuer(
    client: &Client,
    ns: &str,
    name: &str,
    app: &AppRegistration,
    account: &str,
) {
    let oauth = common::azurite_oauth();
    let issuer: SasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "storageAccount": {
                "name": oauth.azurite.account,
                "endpoints": {"blob": oauth.blob_endpoint},
            },
            "workloadIdentity": {
                "clientId": app.client_id,
                "tenantId": app.tenant_id,
                "serviceAccountName": account,
            },
        }
    }))
    .expect("a valid SasIssuer");
    Api::<SasIssuer>::namespaced(client.clone(), ns)
        .create(&Default::default(), &issuer)
        .await
        .expect("create the SasIssuer");
}

/// A workload identity grant over HTTPS only (the default protocol).
fn identity_grant(name: &str, issuer: &str, container: &str, spec: serde_json::Value) -> SasGrant {
    let mut value = json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "issuerRef": {"kind": "SasIssuer", "name": issuer},
            "resource": {"container": {"name": container}},
            "permissions": "rwl",
        }
    });
    if let serde_json::Value::Object(extra) = spec {
        for (key, field) in extra {
            value["spec"][key] = field;
        }
    }
    serde_json::from_value(value).expect("a valid SasGrant")
}

/// Creates `container` in Azurite (HTTPS, OAuth) with an admin bearer token.
async fn create_oauth_container(container: &str) {
    let oauth = common::azurite_oauth();
    let response = oauth
        .https_client()
        .put(format!(
            "{}/{container}?restype=container",
            oauth.blob_endpoint
        ))
        .bearer_auth(oauth.bearer_token())
        .header("x-ms-version", "2025-05-05")
        .send()
        .await
        .expect("create the container");
    assert_eq!(
        response.status().as_u16(),
        201,
        "create container {container}"
    );
}

/// Puts a blob with the SAS, then reads it back: (put status, get status, body).
async fn write_and_read_blob(container: &str, token: &str) -> (u16, u16, String) {
    let oauth = common::azurite_oauth();
    let http = oauth.https_client();
    let url = format!("{}/{container}/hello.txt?{token}", oauth.blob_endpoint);
    let put = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", "2025-05-05")
        .body("keyless")
        .send()
        .await
        .expect("put the blob")
        .status()
        .as_u16();
    let get = http
        .get(&url)
        .header("x-ms-version", "2025-05-05")
        .send()
        .await
        .expect("get the blob");
    let status = get.status().as_u16();
    (put, status, get.text().await.unwrap_or_default())
}

/// `name=value` of a SAS token's query.
fn query_field(token: &str, name: &str) -> Option<String> {
    token
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(|value| value.replace("%3A", ":"))
}

/// Waits until SasIssuer `ns/name` shows Ready `status` with `reason`.
async fn wait_issuer_ready(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> SasIssuer {
    let api = Api::<SasIssuer>::namespaced(client.clone(), ns);
    let what = format!("SasIssuer {ns}/{name} to be Ready={status} ({reason})");
    wait_for(&what, Duration::from_secs(30), || async {
        let issuer = api.get(name).await.ok()?;
        let ready = issuer
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == status && ready.reason == reason).then_some(issuer)
    })
    .await
}

/// A workload: a namespace, ServiceAccount `storage-signer` lent to the operator, and an
/// application whose federated credential names it.
async fn workload(prefix: &str) -> (Client, String, AppRegistration) {
    let (client, ns) = namespace(prefix).await;
    create_service_account(&client, &ns, "storage-signer").await;
    lend_service_account(&client, &ns, "storage-signer").await;
    let app = common::entra()
        .register_app(&service_account_subject(&ns, "storage-signer"))
        .await;
    (client, ns, app)
}

#[tokio::test]
async fn a_workload_identity_grant_holds_a_user_delegation_sas_that_reads_and_writes_blobs() {
    let (client, ns, app) = workload("keyless-wi").await;
    let operator = start_operator("keyless-workload-identity", &[&ns], &[]).await;
    create_identity_issuer(&client, &ns, "storage", &app, "storage-signer").await;
    let container = format!("c-{ns}");
    create_oauth_container(&container).await;

    create_grant(
        &client,
        &ns,
        &identity_grant("data", "storage", &container, json!({})),
    )
    .await;
    let shown = wait_ready(&client, &ns, "data", "True", "TokenValid").await;
    let token = data(&get_secret(&client, &ns, "data").await.unwrap(), "sasToken");
    assert_eq!(
        query_field(&token, "skoid").as_deref(),
        Some(app.object_id.as_str())
    );
    assert_eq!(
        query_field(&token, "sktid").as_deref(),
        Some(app.tenant_id.as_str())
    );
    let ske = query_field(&token, "ske").expect("the token names its key's expiry");
    let se = query_field(&token, "se").expect("the token has an expiry");
    assert!(se <= ske, "the token ({se}) outlives its key ({ske})");
    assert_eq!(
        shown.status.unwrap().expires_at,
        Some(se.clone()),
        "status shows the token's expiry"
    );
    let (put, get, body) = write_and_read_blob(&container, &token).await;
    assert_eq!((put, get, body.as_str()), (201, 200, "keyless"));

    let issuer =
        wait_issuer_ready(&client, &ns, "storage", "True", "UserDelegationKeyObtained").await;
    let status = issuer.status.unwrap();
    assert_eq!(
        status.signed_expiry,
        Some(ske.clone()),
        "status shows the key's expiry"
    );
    assert_eq!(status.observed_generation, issuer.metadata.generation);

    // No account key anywhere in the namespace: no Secret is a signing key, and none holds
    // Azurite's key.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let key = &common::azurite_oauth().azurite.key;
    for secret in &secrets.items {
        let labels = secret.metadata.labels.clone().unwrap_or_default();
        assert!(!labels.contains_key(sas_operator::credentials::LABEL_SIGNING_KEY));
        for value in secret.data.iter().flat_map(|d| d.values()) {
            assert!(!String::from_utf8_lossy(&value.0).contains(key.as_str()));
        }
    }
    // No JWT (ServiceAccount token or access token) and no SAS in the log.
    operator.assert_logs_free_of(&["eyJ", &token, "sig="]);
}

#[tokio::test]
async fn a_service_account_without_a_federated_credential_is_refused_and_nothing_is_written() {
    let (client, ns) = namespace("keyless-nofed").await;
    create_service_account(&client, &ns, "unfederated").await;
    lend_service_account(&client, &ns, "unfederated").await;
    // The application federates another ServiceAccount, not this one.
    let app = common::entra()
        .register_app(&service_account_subject(&ns, "someone-else"))
        .await;
    let operator = start_operator("keyless-no-federation", &[&ns], &[]).await;
    create_identity_issuer(&client, &ns, "storage", &app, "unfederated").await;
    create_grant(
        &client,
        &ns,
        &identity_grant("data", "storage", "data", json!({})),
    )
    .await;
    // The grant backs off with its issuer and names the cause; the issuer shows it.
    let shown = wait_ready(&client, &ns, "data", "False", "IssuerBackingOff").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(
        message.contains("NoFederatedCredential") && message.contains("AADSTS700213"),
        "{message}"
    );
    wait_issuer_ready(&client, &ns, "storage", "False", "NoFederatedCredential").await;
    assert!(
        get_secret(&client, &ns, "data").await.is_none(),
        "a Secret was written"
    );
    assert_eq!(
        common::entra()
            .stats()
            .await
            .for_client(&app.client_id)
            .succeeded,
        0
    );
    operator.assert_logs_free_of(&["eyJ"]);
}

#[tokio::test]
async fn a_service_account_nobody_lent_is_not_bound_until_the_commands_its_message_gives_are_run() {
    let (client, ns) = namespace("keyless-unbound").await;
    create_service_account(&client, &ns, "storage-signer").await;
    let app = common::entra()
        .register_app(&service_account_subject(&ns, "storage-signer"))
        .await;
    let operator = start_operator("keyless-unbound", &[&ns], &[]).await;
    create_identity_issuer(&client, &ns, "storage", &app, "storage-signer").await;
    let container = format!("c-{ns}");
    create_oauth_container(&container).await;
    create_grant(
        &client,
        &ns,
        &identity_grant("data", "storage", &container, json!({})),
    )
    .await;
    let shown = wait_ready(&client, &ns, "data", "False", "IssuerBackingOff").await;
    let message = shown.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("ServiceAccountNotBound"), "{message}");
    assert!(get_secret(&client, &ns, "data").await.is_none());
    let exchanges = common::entra().stats().await.for_client(&app.client_id);
    assert_eq!((exchanges.succeeded, exchanges.failed), (0, 0));
    wait_issuer_ready(&client, &ns, "storage", "False", "ServiceAccountNotBound").await;

    // A namespace admin runs exactly the commands the message gives.
    let commands = message
        .split_once("a namespace admin runs: ")
        .unwrap_or_else(|| panic!("no commands in {message:?}"))
        .1;
    let commands: Vec<&str> = commands.split("; ").collect();
    assert_eq!(commands.len(), 2, "{message}");
    for command in commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "kubectl", "{command}");
        let output = common::control_plane()
            .kubectl()
            .args(&words[1..])
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    wait_ready(&client, &ns, "data", "True", "TokenValid").await;
    let token = data(&get_secret(&client, &ns, "data").await.unwrap(), "sasToken");
    let (put, get, _) = write_and_read_blob(&container, &token).await;
    assert_eq!((put, get), (201, 200));
    operator.assert_logs_free_of(&["eyJ", &token]);
}

#[tokio::test]
async fn two_hundred_grants_on_one_issuer_cost_one_exchange_and_one_delegation_key() {
    let (client, ns, app) = workload("keyless-many").await;
    let _operator = start_operator("keyless-many", &[&ns], &["--concurrency", "8"]).await;
    create_identity_issuer(&client, &ns, "storage", &app, "storage-signer").await;
    let container = format!("c-{ns}");
    create_oauth_container(&container).await;
    const GRANTS: usize = 200;
    for index in 0..GRANTS {
        let grant = identity_grant(&format!("g-{index}"), "storage", &container, json!({}));
        create_grant(&client, &ns, &grant).await;
    }
    let api = Api::<SasGrant>::namespaced(client.clone(), &ns);
    wait_for("all 200 grants Ready", Duration::from_secs(180), || async {
        let list = api.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|g| ready_of(g) == Some(("True".into(), "TokenValid".into())))
            .count();
        (ready == GRANTS).then_some(())
    })
    .await;
    let oauth = common::azurite_oauth();
    common::eventually(
        "Azurite to log the Get User Delegation Key request",
        Duration::from_secs(10),
        || async { (oauth.user_delegation_key_requests(&app.object_id) >= 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(oauth.user_delegation_key_requests(&app.object_id), 1);
    let exchanges = common::entra().stats().await.for_client(&app.client_id);
    assert_eq!((exchanges.succeeded, exchanges.failed), (1, 0));
}

#[tokio::test]
async fn the_user_delegation_key_is_renewed_before_a_token_would_outlive_it() {
    let (client, ns, app) = workload("keyless-renew").await;
    // Keys of 4 minutes, backdated 1 minute (a quarter, as clock skew allows): 2-minute
    // tokens fit in a key for its first minute; re-signed after 80 s, they need a new one.
    let _operator = start_operator(
        "keyless-renewal",
        &[&ns],
        &["--max-user-delegation-key-lifetime", "4m"],
    )
    .await;
    create_identity_issuer(&client, &ns, "storage", &app, "storage-signer").await;
    let container = format!("c-{ns}");
    create_oauth_container(&container).await;
    create_grant(
        &client,
        &ns,
        &identity_grant("data", "storage", &container, json!({"validity": "2m"})),
    )
    .await;
    wait_ready(&client, &ns, "data", "True", "TokenValid").await;
    let first = data(&get_secret(&client, &ns, "data").await.unwrap(), "sasToken");
    let second = wait_for("the re-signed token", Duration::from_secs(150), || async {
        let token = data(&get_secret(&client, &ns, "data").await?, "sasToken");
        (token != first).then_some(token)
    })
    .await;
    for token in [&first, &second] {
        let (se, ske) = (
            query_field(token, "se").unwrap(),
            query_field(token, "ske").unwrap(),
        );
        assert!(se <= ske, "a token ({se}) outlives its key ({ske})");
    }
    assert!(
        query_field(&second, "ske") > query_field(&first, "ske"),
        "the second token is signed with a new key"
    );
    let (put, get, _) = write_and_read_blob(&container, &second).await;
    assert_eq!((put, get), (201, 200));
    assert_eq!(
        common::azurite_oauth().user_delegation_key_requests(&app.object_id),
        2
    );

    // Without its ServiceAccount the next key cannot be obtained: the grant says why, and the
    // Secret keeps the valid token it holds.
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .delete("storage-signer", &Default::default())
        .await
        .expect("delete the ServiceAccount");
    let api = Api::<SasGrant>::namespaced(client.clone(), &ns);
    wait_for(
        "the grant to fail for its ServiceAccount",
        Duration::from_secs(150),
        || async {
            let grant = api.get("data").await.ok()?;
            let message = &grant.status.as_ref()?.conditions.first()?.message;
            (ready_of(&grant) == Some(("False".into(), "IssuerBackingOff".into()))
                && message.contains("ServiceAccountNotFound"))
            .then_some(())
        },
    )
    .await;
    let kept = data(&get_secret(&client, &ns, "data").await.unwrap(), "sasToken");
    assert_eq!(kept, second, "the valid token was replaced or blanked");
    let expiry: jiff::Timestamp = query_field(&kept, "se").unwrap().parse().unwrap();
    assert!(
        expiry > jiff::Timestamp::now(),
        "the kept token is still valid"
    );
}

#[tokio::test]
async fn a_grant_waiting_for_its_issuer_is_signed_as_soon_as_the_issuer_appears() {
    let (client, ns) = namespace("keyless-late").await;
    // Only this namespace: other tests' grants are not this operator's business.
    let _operator = Operator::under_deploy_rbac("keyless-late-issuer", &[&ns], &[]).await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &key_secret("team-keys", &[("key1", &azurite.key)]),
    )
    .await;
    create_grant(
        &client,
        &ns,
        &issued_grant("early", "SasIssuer", "team", "data"),
    )
    .await;
    wait_ready(&client, &ns, "early", "False", "IssuerNotFound").await;
    // Failures are retried after 5 s, 10 s, 20 s...: by now the next retry is ~20 s away.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let issuer: sas_operator::crd::SasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {
            "storageAccount": {"name": azurite.account, "endpoints": {"blob": azurite.blob_endpoint}},
            "accountKey": {"secretRef": {"name": "team-keys"}},
        }
    }))
    .unwrap();
    Api::<sas_operator::crd::SasIssuer>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &issuer)
        .await
        .expect("create the SasIssuer");
    let started = std::time::Instant::now();
    wait_ready(&client, &ns, "early", "True", "TokenValid").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "signed {:?} after the issuer appeared: the issuer watch did not trigger it",
        started.elapsed()
    );
}
