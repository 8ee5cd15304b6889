//! Least privilege, both directions: the operator, running under the ServiceAccount that
//! `deploy/` installs and with exactly `deploy/base/rbac.yaml`'s permissions, passes the
//! controller's end-to-end scenario (nothing it needs is missing), and the API server's audit
//! log shows it used every permission the file grants (nothing granted is superfluous).

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeSet;
use std::time::Duration;

use common::audit::{self, AuditEvent};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use operator::*;
use sas_operator::crd::SasGrant;
use serde::Deserialize;
use serde_json::json;

const OPERATOR_NAMESPACE: &str = "sas-operator";
const OPERATOR_USER: &str = "system:serviceaccount:sas-operator:sas-operator";

/// One permission: (API group, resource or resource/subresource, verb).
type Permission = (String, String, String);

#[tokio::test]
async fn the_operator_needs_exactly_the_permissions_deploy_grants() {
    let cp = common::control_plane();
    install_deploy_directory();
    let client = cp.client().await;
    let grants = Api::<SasGrant>::all(client.clone());
    wait_for(
        "the SasGrant CRD from deploy/ to be served",
        Duration::from_secs(30),
        || async { grants.list_metadata(&Default::default()).await.ok() },
    )
    .await;
    let kubeconfig = cp
        .service_account_kubeconfig(OPERATOR_NAMESPACE, "sas-operator")
        .await;
    // As the Deployment runs it: all namespaces, leader election on the Lease the Role names.
    let operator = Operator::spawn(
        "rbac-all-namespaces",
        &kubeconfig,
        &[
            "--leader-election",
            "true",
            "--lease-name",
            "sas-operator",
            "--metrics-address",
            "127.0.0.1:0",
            // Nothing listens there: a workload identity issuer's exchange fails after its
            // TokenRequest (create serviceaccounts/token), without leaving loopback.
            "--authority-host",
            "https://127.0.0.1:9",
        ],
        &[
            ("POD_NAMESPACE", OPERATOR_NAMESPACE),
            ("POD_NAME", "sas-operator-rbac-test"),
        ],
    );

    let ns = common::test_namespace(&client, "rbac").await;
    let token = run_end_to_end_scenario(&client, &ns).await;

    let used = permissions_used_by(OPERATOR_USER);
    let forbidden = forbidden_requests_of(OPERATOR_USER);
    assert!(
        forbidden.is_empty(),
        "the operator was denied (403) these requests, so deploy/base/rbac.yaml lacks them:\n{}",
        forbidden.join("\n")
    );
    let granted = permissions_granted_by_deploy_rbac();
    // Tokens only where a namespace lends a ServiceAccount: deploy/ grants none, yet the
    // workload identity issuer's TokenRequest went through (its namespace's Role).
    let token_request: Permission = (
        String::new(),
        "serviceaccounts/token".into(),
        "create".into(),
    );
    assert!(
        !granted.contains(&token_request),
        "deploy/base/rbac.yaml grants serviceaccounts/token"
    );
    assert!(
        used.contains(&token_request),
        "the operator made no TokenRequest"
    );
    let unused: Vec<&Permission> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "deploy/base/rbac.yaml grants permissions the operator never used: {unused:?}\n\
         used (apiGroup, resource, verb): {used:#?}"
    );
    operator.assert_logs_free_of(&[&common::azurite().key, &token]);
}

/// The controller's scenario, driven so that every kind of write happens at least once: a
/// first signing (Secret create), a spec change (Secret patch), status writes, a foreign
/// Secret (SecretNotOwned Event), and the same Warning twice (two Events: the operator keeps
/// no Event cache to count repeats in, so it never patches one). Returns the last token, to
/// check the logs for it.
async fn run_end_to_end_scenario(client: &Client, ns: &str) -> String {
    let azurite = common::azurite();
    let storage = Storage::default();
    let container = format!("c-{ns}");
    storage
        .create_container(
            &azurite.blob_endpoint,
            &container,
            &admin_token(&azurite.account, &azurite.key),
        )
        .await;
    create_secret(
        client,
        ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;

    // Signed and Ready; the token lists the container in Azurite.
    create_grant(
        client,
        ns,
        &grant(
            "g",
            json!({"container": {"name": container}}),
            "r",
            json!({}),
        ),
    )
    .await;
    wait_ready(client, ns, "g", "True", "TokenValid").await;
    let first = data(&get_secret(client, ns, "g").await.unwrap(), "sasToken");

    // A spec change re-signs into the existing Secret.
    Api::<SasGrant>::namespaced(client.clone(), ns)
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"permissions": "rl"}})),
        )
        .await
        .expect("patch the grant's permissions");
    let token = wait_for("the re-signed token", Duration::from_secs(30), || async {
        let token = data(&get_secret(client, ns, "g").await?, "sasToken");
        (token != first && token.contains("sp=rl")).then_some(token)
    })
    .await;
    let (status, _) = storage
        .list_blobs(&azurite.blob_endpoint, &container, &token)
        .await;
    assert_eq!(status, 200, "the operator's token must list the container");

    // A Secret of the target name that is not ours is refused with an Event.
    create_secret(
        client,
        ns,
        &unlabelled_secret("taken", &[("mine", "keep out")]),
    )
    .await;
    create_grant(
        client,
        ns,
        &grant(
            "foreign",
            json!({"container": {"name": container}}),
            "r",
            json!({"target": {"secretName": "taken"}}),
        ),
    )
    .await;
    wait_ready(client, ns, "foreign", "False", "SecretNotOwned").await;
    wait_for_event(client, ns, "foreign", "SecretNotOwned", 1).await;

    // Issuers: a SasIssuer of the namespace (get sasissuers), and a ClusterSasIssuer with its
    // key in the operator's namespace that allows this namespace by label (get
    // clustersasissuers, get namespaces).
    issued_grants_are_signed(client, ns, &container).await;

    // Break the key, fix it, break it the same way again: the same Warning twice.
    set_key(client, ns, "this is not a key!").await;
    wait_ready(client, ns, "g", "False", "KeyNotBase64").await;
    wait_for_event(client, ns, "g", "KeyNotBase64", 1).await;
    set_key(client, ns, &azurite.key).await;
    let fixed = wait_ready(client, ns, "g", "True", "TokenValid").await;
    set_key(client, ns, "this is not a key!").await;
    wait_ready(client, ns, "g", "False", "KeyNotBase64").await;
    wait_for_event(client, ns, "g", "KeyNotBase64", 2).await;

    let token_hash = fixed.status.and_then(|s| s.token_hash);
    let latest = data(&get_secret(client, ns, "g").await.unwrap(), "sasToken");
    assert_eq!(
        token_hash,
        Some(sas_operator::reconcile::secret::token_hash(&latest)),
        "the broken key must leave the last valid token in place"
    );
    latest
}

async fn issued_grants_are_signed(client: &Client, ns: &str, container: &str) {
    let azurite = common::azurite();
    let account = account_json();
    let apply = PatchParams::apply("sas-operator-tests").force();
    let issuer = json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {"storageAccount": account, "accountKey": {"secretRef": {"name": "azurite-keys"}}},
    });
    Api::<sas_operator::crd::SasIssuer>::namespaced(client.clone(), ns)
        .patch("team", &apply, &Patch::Apply(&issuer))
        .await
        .expect("apply the SasIssuer");
    create_secret(
        client,
        OPERATOR_NAMESPACE,
        &key_secret("rbac-platform-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let cluster_issuer = json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "ClusterSasIssuer",
        "metadata": {"name": "rbac-platform"},
        "spec": {
            "storageAccount": account,
            "accountKey": {"secretRef": {"name": "rbac-platform-keys"}},
            "allowedNamespaces": {"matchLabels": {"storage-access": "rbac"}},
            "policy": {
                "resources": {"container": {"names": ["c-{namespace}"]}},
                "maxPermissions": {"container": "rl"},
                "protocols": "https,http",
            },
        },
    });
    Api::<sas_operator::crd::ClusterSasIssuer>::all(client.clone())
        .patch("rbac-platform", &apply, &Patch::Apply(&cluster_issuer))
        .await
        .expect("apply the ClusterSasIssuer");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"storage-access": "rbac"}}})),
        )
        .await
        .expect("label the namespace");
    for (name, kind, issuer) in [
        ("by-issuer", "SasIssuer", "team"),
        ("by-cluster-issuer", "ClusterSasIssuer", "rbac-platform"),
    ] {
        let grant: SasGrant = serde_json::from_value(json!({
            "apiVersion": "sas-operator.io/v1alpha1",
            "kind": "SasGrant",
            "metadata": {"name": name},
            "spec": {
                "issuerRef": {"kind": kind, "name": issuer},
                "resource": {"container": {"name": container}},
                "permissions": "rl",
                "protocol": "https,http",
            },
        }))
        .unwrap();
        create_grant(client, ns, &grant).await;
        wait_ready(client, ns, name, "True", "TokenValid").await;
    }

    // A workload identity issuer: the operator requests its ServiceAccount's token (lent to it
    // by a Role of this namespace: deploy/ grants no serviceaccounts/token), then cannot reach
    // the authority host.
    let account: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "storage-signer"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
        .create(&Default::default(), &account)
        .await
        .expect("create the ServiceAccount");
    lend_service_account(client, ns, "storage-signer").await;
    let identity_issuer = json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "identity", "namespace": ns},
        "spec": {
            "storageAccount": account_json(),
            "workloadIdentity": {
                "clientId": "00000000-0000-0000-0000-000000000001",
                "tenantId": "00000000-0000-0000-0000-000000000002",
                "serviceAccountName": "storage-signer",
            },
        },
    });
    Api::<sas_operator::crd::SasIssuer>::namespaced(client.clone(), ns)
        .patch("identity", &apply, &Patch::Apply(&identity_issuer))
        .await
        .expect("apply the workload identity SasIssuer");
    let grant: SasGrant = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": "by-identity"},
        "spec": {
            "issuerRef": {"kind": "SasIssuer", "name": "identity"},
            "resource": {"container": {"name": container}},
            "permissions": "rl",
        },
    }))
    .unwrap();
    create_grant(client, ns, &grant).await;
    // The grant backs off with its issuer, naming why.
    let shown = wait_ready(client, ns, "by-identity", "False", "IssuerBackingOff").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(message.contains("EntraUnreachable"), "{message}");
}

fn account_json() -> serde_json::Value {
    let azurite = common::azurite();
    json!({"name": azurite.account, "endpoints": {"blob": azurite.blob_endpoint}})
}

async fn set_key(client: &Client, ns: &str, key: &str) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "azurite-keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"key1": encoded}})),
        )
        .await
        .expect("patch the key Secret");
}

/// Waits for Events about `grant` with `reason` observed at least `times` times in all (an
/// Event with a series counts its repetitions).
async fn wait_for_event(client: &Client, ns: &str, grant: &str, reason: &str, times: i32) {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let what = format!("a {reason} Event for {grant} seen {times} time(s)");
    wait_for(&what, Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        let seen: i32 = list
            .items
            .iter()
            .filter(|event| {
                event.reason.as_deref() == Some(reason)
                    && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(grant)
            })
            .map(|event| event.series.as_ref().map_or(1, |series| series.count))
            .sum();
        (seen >= times).then_some(())
    })
    .await;
}

fn audit_events_of(user: &str) -> Vec<AuditEvent> {
    let events: Vec<AuditEvent> = audit::events()
        .into_iter()
        .filter(|event| event.username() == user)
        .collect();
    assert!(!events.is_empty(), "the audit log has no request by {user}");
    events
}

/// Every (API group, resource[/subresource], verb) that `user` requested.
fn permissions_used_by(user: &str) -> BTreeSet<Permission> {
    audit_events_of(user)
        .into_iter()
        .filter_map(|event| {
            let object = event.object_ref?;
            let mut resource = object.resource?;
            if let Some(subresource) = object.subresource {
                resource = format!("{resource}/{subresource}");
            }
            Some((object.api_group, resource, event.verb))
        })
        .collect()
}

/// `verb requestURI` of every request by `user` that was answered 403 Forbidden.
fn forbidden_requests_of(user: &str) -> Vec<String> {
    audit_events_of(user)
        .into_iter()
        .filter(|event| event.code() == Some(403))
        .map(|event| format!("{} {}", event.verb, event.request_uri))
        .collect()
}

#[derive(Deserialize)]
struct RbacDocument {
    kind: String,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

#[derive(Deserialize)]
struct PolicyRule {
    #[serde(rename = "apiGroups")]
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// Every (API group, resource, verb) the Roles and ClusterRoles of `deploy/base/rbac.yaml` grant.
fn permissions_granted_by_deploy_rbac() -> BTreeSet<Permission> {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/base/rbac.yaml"
    ))
    .expect("read deploy/base/rbac.yaml");
    let documents: Vec<RbacDocument> =
        serde_saphyr::from_multiple(&yaml).expect("deploy/base/rbac.yaml parses");
    let mut granted = BTreeSet::new();
    for rule in documents
        .iter()
        .filter(|d| d.kind == "Role" || d.kind == "ClusterRole")
        .flat_map(|d| &d.rules)
    {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "deploy/base/rbac.yaml must not grant wildcards"
                    );
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    assert!(!granted.is_empty(), "deploy/base/rbac.yaml grants nothing");
    granted
}
