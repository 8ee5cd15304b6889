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
use serde::Deserialize;
use serde_json::json;

const DEPLOY_USER: &str = "system:serviceaccount:sas-operator:sas-operator";

// ----- the audit log -----

#[derive(Deserialize)]
struct AuditEvent {
    user: AuditUser,
    verb: String,
    #[serde(rename = "objectRef")]
    object_ref: Option<AuditObjectRef>,
}

#[derive(Deserialize)]
struct AuditUser {
    username: String,
}

#[derive(Deserialize)]
struct AuditObjectRef {
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

/// How many times the operator's ServiceAccount read Secret `ns/name` (get, list or watch).
fn secret_reads_by_operator(ns: &str, name: &str) -> usize {
    let path = common::control_plane().apiserver_audit_log_path();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the audit log {}: {e}", path.display()))
        .lines()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .filter(|e| e.user.username == DEPLOY_USER && e.verb == "get")
        .filter(|e| {
            e.object_ref.as_ref().is_some_and(|o| {
                o.resource.as_deref() == Some("secrets")
                    && o.namespace.as_deref() == Some(ns)
                    && o.name.as_deref() == Some(name)
            })
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
/// cluster resource namespace, allowing namespaces labelled `storage-access: <allow_label>`.
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
