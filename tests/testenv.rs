//! Proves the test environment is real: a Kubernetes control plane whose controllers run, RBAC
//! that is enforced, and an Azurite that authenticates requests.
mod common;

use std::time::Duration;

use common::azure::account_sas;
use common::{azurite, azurite_oauth, control_plane, eventually, test_namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(60);

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn server_reports_kubernetes_1_33_or_newer() {
    let version = control_plane()
        .client()
        .await
        .apiserver_version()
        .await
        .unwrap();
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap();
    assert_eq!(version.major, "1");
    assert!(minor >= 33, "server is {}", version.git_version);
}

#[tokio::test]
async fn kubectl_is_within_one_minor_of_the_server() {
    let output = control_plane()
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let versions: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let minor = |which: &str| -> i64 {
        versions[which]["minor"]
            .as_str()
            .unwrap()
            .trim_end_matches('+')
            .parse()
            .unwrap()
    };
    let skew = (minor("clientVersion") - minor("serverVersion")).abs();
    assert!(skew <= 1, "kubectl/server versions: {versions}");
}

#[tokio::test]
async fn custom_resource_definition_is_applied_and_served() {
    let client = control_plane().client().await;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.testenv.example.com" },
        "spec": {
            "group": "testenv.example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "size": { "type": "integer" } } }
                } } }
            }]
        }
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(
            crds,
            "widgets.testenv.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .unwrap();

    let namespace = test_namespace(&client, "crd").await;
    let gvk = GroupVersionKind::gvk("testenv.example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client, &namespace, &ApiResource::from_gvk(&gvk));
    let mut widget = DynamicObject::new("w1", &ApiResource::from_gvk(&gvk));
    widget.data = serde_json::json!({ "spec": { "size": 3 } });
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let read = widgets.get("w1").await.unwrap();
    assert_eq!(read.data["spec"]["size"], 3);
}

#[tokio::test]
async fn owned_secret_is_garbage_collected_after_its_owner_is_deleted() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "gc").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("owner", &namespace),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut owned = Secret {
        metadata: meta("owned", &namespace),
        ..Default::default()
    };
    owned.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..Default::default()
    }]);
    let owned = secrets
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();

    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    let owned_uid = owned.metadata.uid.unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(secrets.clone(), "owned", conditions::is_deleted(&owned_uid)),
    )
    .await
    .expect("the garbage collector deletes the owned Secret in time")
    .unwrap();
    assert!(secrets.get_opt("owned").await.unwrap().is_none());
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "delete-me").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("content", &namespace),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    let uid = namespaces
        .get(&namespace)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(
        WAIT,
        await_condition(namespaces.clone(), &namespace, conditions::is_deleted(&uid)),
    )
    .await
    .expect("the namespace controller finishes deleting the namespace in time")
    .unwrap();
    assert!(namespaces.get_opt(&namespace).await.unwrap().is_none());
}

/// A ServiceAccount allowed to read ConfigMaps (and nothing else) in `namespace`.
async fn config_map_reader(admin: &Client, namespace: &str) -> &'static str {
    let name = "configmap-reader";
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta(name, namespace),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let role = Role {
        metadata: meta(name, namespace),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: meta(name, namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    name
}

fn status_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("expected an API answer, got {other}"),
    }
}

#[tokio::test]
async fn service_account_client_is_allowed_what_its_role_grants() {
    let admin = control_plane().client().await;
    let namespace = test_namespace(&admin, "rbac-allowed").await;
    let account = config_map_reader(&admin, &namespace).await;
    let client = control_plane()
        .service_account_client(&namespace, account)
        .await;

    let listed = Api::<ConfigMap>::namespaced(client, &namespace)
        .list(&Default::default())
        .await;
    assert_eq!(status_code(listed), 200);
}

#[tokio::test]
async fn service_account_client_is_forbidden_what_its_role_does_not_grant() {
    let admin = control_plane().client().await;
    let namespace = test_namespace(&admin, "rbac-forbidden").await;
    let account = config_map_reader(&admin, &namespace).await;
    let client = control_plane()
        .service_account_client(&namespace, account)
        .await;

    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await;
    assert_eq!(status_code(secrets), 403);
    let created = Api::<ConfigMap>::namespaced(client, &namespace)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("nope", &namespace),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status_code(created), 403);
}

#[tokio::test]
async fn service_account_kubeconfig_drives_kubectl_under_its_rbac() {
    let admin = control_plane().client().await;
    let namespace = test_namespace(&admin, "rbac-kubectl").await;
    let account = config_map_reader(&admin, &namespace).await;
    let kubeconfig = control_plane()
        .service_account_kubeconfig(&namespace, account)
        .await;

    let can_i = |verb: &str, resource: &str| {
        let output = control_plane()
            .kubectl()
            .env("KUBECONFIG", &kubeconfig)
            .args(["auth", "can-i", verb, resource])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(can_i("list", "configmaps"), "yes");
    assert_eq!(can_i("list", "secrets"), "no");
}

#[tokio::test]
async fn audit_log_records_who_did_what() {
    let admin = control_plane().client().await;
    let namespace = test_namespace(&admin, "audit").await;
    Api::<ConfigMap>::namespaced(admin, &namespace)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("audited", &namespace),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let is_our_create = |event: &serde_json::Value| {
        event["verb"] == "create"
            && event["objectRef"]["resource"] == "configmaps"
            && event["objectRef"]["namespace"] == namespace.as_str()
            && event["objectRef"]["name"] == "audited"
    };
    // The ResponseComplete event is written just after the response: poll briefly for it.
    let path = control_plane().apiserver_audit_log_path();
    let event = eventually("the ConfigMap creation in the audit log", WAIT, || async {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(is_our_create)
    })
    .await;
    assert_eq!(event["user"]["username"], "admin");
    assert_eq!(event["responseStatus"]["code"], 201);
}

#[tokio::test]
async fn azurite_round_trips_a_blob_with_an_account_sas() {
    let azurite = azurite();
    let sas = account_sas(&azurite.account, &azurite.key, "b", "sco", "rwdlac");
    let http = reqwest::Client::new();
    let container = format!("{}/roundtrip", azurite.blob_endpoint);

    let created = http
        .put(format!("{container}?restype=container&{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let put = http
        .put(format!("{container}/hello.txt?{sas}"))
        .header("x-ms-blob-type", "BlockBlob")
        .body("hello from the harness")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    let got = http
        .get(format!("{container}/hello.txt?{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "hello from the harness");
}

#[tokio::test]
async fn azurite_rejects_a_sas_signed_with_a_wrong_key() {
    let azurite = azurite();
    let sas = account_sas(
        &azurite.account,
        &azurite.second_account.key1,
        "b",
        "sco",
        "rl",
    );
    let listed = reqwest::get(format!("{}?comp=list&{sas}", azurite.blob_endpoint))
        .await
        .unwrap();
    assert_eq!(listed.status(), 403);
}

#[tokio::test]
async fn azurite_second_account_accepts_both_of_its_keys() {
    let azurite = azurite();
    let account = &azurite.second_account;
    let endpoint = azurite.second_account_endpoints().blob;
    for key in [&account.key1, &account.key2] {
        let sas = account_sas(&account.name, key, "b", "sco", "rl");
        let listed = reqwest::get(format!("{endpoint}?comp=list&{sas}"))
            .await
            .unwrap();
        assert_eq!(listed.status(), 200, "{}", listed.text().await.unwrap());
    }
}

#[tokio::test]
async fn azurite_oauth_issues_a_user_delegation_key_for_a_bearer_token() {
    let oauth = azurite_oauth();
    let now = jiff::Timestamp::now();
    let at = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        at(now),
        at(now + jiff::SignedDuration::from_secs(3600))
    );
    let response = oauth
        .https_client()
        .post(format!(
            "{}/?restype=service&comp=userdelegationkey",
            oauth.blob_endpoint
        ))
        .bearer_auth(oauth.bearer_token())
        .header("x-ms-version", "2025-11-05")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let xml = response.text().await.unwrap();
    assert!(
        xml.contains(&format!("<SignedOid>{}</SignedOid>", oauth.object_id)),
        "no SignedOid for our token"
    );
    assert!(
        xml.contains(&format!("<SignedTid>{}</SignedTid>", oauth.tenant_id)),
        "no SignedTid for our token"
    );
}

#[tokio::test]
async fn azurite_oauth_rejects_a_request_without_credentials() {
    let oauth = azurite_oauth();
    let response = oauth
        .https_client()
        .post(format!(
            "{}/?restype=service&comp=userdelegationkey",
            oauth.blob_endpoint
        ))
        .header("x-ms-version", "2025-11-05")
        .body("<KeyInfo/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}
