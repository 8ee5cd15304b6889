//! Issue 9's behaviour, pinned (its timings are in `make bench-scale`, not here): the real
//! operator under deploy/'s ServiceAccount and RBAC, the API server's audit log and /metrics.
//! One reconcile per change, reads from caches (no GET of a target Secret, no Secret GET at all
//! on a restart), and a key Secret change re-signs exactly the grants that sign with it.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use operator::{
    DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT, Operator, create_secret, data, free_local_port,
    get_secret, key_secret, namespace, wait_for, wait_ready,
};
use sas_operator::crd::SasGrant;
use sas_operator::reconcile::secret::{self, SecretMacKey};
use sas_operator::sas::AccountKey;
use serde_json::json;

/// Base64 of two different 64-byte account keys.
const KEY_A: &str =
    "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LQ==";
const KEY_B: &str =
    "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoIQ==";

/// How long a quiet operator is watched for work it should not do (a debounce is 0.5 s).
const SETTLE: Duration = Duration::from_secs(3);

fn user() -> String {
    format!("system:serviceaccount:{DEPLOY_NAMESPACE}:{DEPLOY_SERVICE_ACCOUNT}")
}

fn grant(name: &str, key_secret: &str) -> SasGrant {
    serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "storageAccount": {"name": "devstoreaccount1", "keySecretRef": {"name": key_secret}},
            "resource": {"container": {"name": "data"}},
            "permissions": "r",
            "validity": "8h",
            "renewBefore": "2h",
        },
    }))
    .expect("a valid grant")
}

async fn create_grant(client: &Client, ns: &str, grant: &SasGrant) {
    Api::<SasGrant>::namespaced(client.clone(), ns)
        .create(&Default::default(), grant)
        .await
        .expect("create grant");
}

/// The operator under deploy/'s RBAC watching `ns`, with its admin server on a known port.
async fn operator(log_name: &str, ns: &str) -> (Operator, String) {
    let address = format!("127.0.0.1:{}", free_local_port());
    let operator =
        Operator::under_deploy_rbac(log_name, &[ns], &["--metrics-address", &address]).await;
    (operator, format!("http://{address}/metrics"))
}

/// `sas_operator_reconciles_total`, once /metrics answers.
async fn reconciles(metrics_url: &str) -> u64 {
    wait_for("/metrics to answer", Duration::from_secs(30), || async {
        let body = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix("sas_operator_reconciles_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    })
    .await
}

fn audit_mark() -> usize {
    common::audit::mark()
}

/// `verb resource name` of every request the operator made in `ns` since `mark`.
fn requests_since(mark: usize, ns: &str) -> Vec<(String, String, String)> {
    common::audit::events_since(mark)
        .into_iter()
        .filter(|event| event.is_answer())
        .filter(|event| event.username() == user())
        .filter(|event| event.namespace() == Some(ns))
        .map(|event| {
            (
                event.verb.clone(),
                event.resource_path().unwrap_or_default(),
                event.name().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn writes(requests: &[(String, String, String)]) -> Vec<&(String, String, String)> {
    requests
        .iter()
        .filter(|(verb, _, _)| matches!(verb.as_str(), "create" | "update" | "patch" | "delete"))
        .collect()
}

#[tokio::test]
async fn a_new_grant_is_reconciled_once_and_its_secret_is_never_read() {
    let (client, ns) = namespace("scale-one").await;
    create_secret(&client, &ns, &key_secret("keys", &[("key1", KEY_A)])).await;
    let (_operator, metrics) = operator("scale-one", &ns).await;
    assert_eq!(reconciles(&metrics).await, 0, "nothing to reconcile yet");
    let mark = audit_mark();

    create_grant(&client, &ns, &grant("app", "keys")).await;
    wait_ready(&client, &ns, "app", "True", "TokenValid").await;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(
        reconciles(&metrics).await,
        1,
        "its own Secret and status writes must not reconcile the grant again"
    );
    let requests = requests_since(mark, &ns);
    let target_reads: Vec<_> = requests
        .iter()
        .filter(|(verb, resource, name)| verb == "get" && resource == "secrets" && name == "app")
        .collect();
    assert!(
        target_reads.is_empty(),
        "the target Secret is read from the cache: {target_reads:?}"
    );
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    for (verb, resource, _) in writes(&requests) {
        *written.entry(format!("{verb} {resource}")).or_default() += 1;
    }
    assert_eq!(
        written,
        BTreeMap::from([
            ("create events".to_string(), 1),
            ("create secrets".to_string(), 1),
            ("patch sasgrants/status".to_string(), 1),
        ]),
        "exactly the writes a new grant needs"
    );
}

#[tokio::test]
async fn a_restart_with_twenty_grants_reads_no_secret_and_writes_nothing() {
    let (client, ns) = namespace("scale-restart").await;
    create_secret(&client, &ns, &key_secret("keys", &[("key1", KEY_A)])).await;
    let names: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    for name in &names {
        create_grant(&client, &ns, &grant(name, "keys")).await;
    }
    let (mut first, _) = operator("scale-restart-1", &ns).await;
    for name in &names {
        wait_ready(&client, &ns, name, "True", "TokenValid").await;
    }
    tokio::time::sleep(SETTLE).await;
    first.terminate();
    first.wait_for_exit(Duration::from_secs(20)).await;

    let mark = audit_mark();
    let (_second, metrics) = operator("scale-restart-2", &ns).await;
    wait_for(
        "every grant checked after the restart",
        Duration::from_secs(30),
        || async { (reconciles(&metrics).await >= 20).then_some(()) },
    )
    .await;
    tokio::time::sleep(SETTLE).await;

    let requests = requests_since(mark, &ns);
    assert_eq!(writes(&requests), Vec::<&(String, String, String)>::new());
    let secret_reads: Vec<&str> = requests
        .iter()
        .filter(|(verb, resource, _)| verb == "get" && resource == "secrets")
        .map(|(_, _, name)| name.as_str())
        .collect();
    // Neither the key Secret (from the watch of signing keys) nor any target Secret.
    assert_eq!(
        secret_reads,
        Vec::<&str>::new(),
        "Secret GETs after the restart"
    );
    assert_eq!(reconciles(&metrics).await, 20, "one reconcile per grant");
}

#[tokio::test]
async fn a_key_secret_change_re_signs_exactly_the_grants_that_use_it() {
    let (client, ns) = namespace("scale-key").await;
    create_secret(&client, &ns, &key_secret("keys-a", &[("key1", KEY_A)])).await;
    create_secret(&client, &ns, &key_secret("keys-b", &[("key1", KEY_A)])).await;
    for (name, key) in [("a1", "keys-a"), ("a2", "keys-a"), ("b1", "keys-b")] {
        create_grant(&client, &ns, &grant(name, key)).await;
    }
    let (_operator, metrics) = operator("scale-key", &ns).await;
    for name in ["a1", "a2", "b1"] {
        wait_ready(&client, &ns, name, "True", "TokenValid").await;
    }
    tokio::time::sleep(SETTLE).await;
    let token = |name: &'static str| {
        let client = client.clone();
        let ns = ns.clone();
        async move { data(&get_secret(&client, &ns, name).await.unwrap(), "sasToken") }
    };
    let (a1, a2, b1) = (token("a1").await, token("a2").await, token("b1").await);
    let before = reconciles(&metrics).await;
    let b1_version = get_secret(&client, &ns, "b1")
        .await
        .unwrap()
        .resource_version();

    use base64::Engine as _;
    let new_key = base64::engine::general_purpose::STANDARD.encode(KEY_B);
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .patch(
            "keys-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"key1": new_key}})),
        )
        .await
        .expect("rotate the account key in keys-a");

    for (name, old) in [("a1", &a1), ("a2", &a2)] {
        wait_for(
            &format!("{name} re-signed with the new key"),
            Duration::from_secs(30),
            || async { (token(name).await != *old).then_some(()) },
        )
        .await;
    }
    // Signed with the new key, not the old one: the Secret's MAC is keyed by the account key.
    let new_key = SecretMacKey::derive(&AccountKey::from_base64(KEY_B).unwrap());
    for name in ["a1", "a2"] {
        let written = get_secret(&client, &ns, name).await.unwrap();
        assert!(
            secret::issued_token(&written, &new_key).intact,
            "{name} is signed with the new key"
        );
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(token("b1").await, b1, "b1 signs with another key Secret");
    assert_eq!(
        get_secret(&client, &ns, "b1")
            .await
            .unwrap()
            .resource_version(),
        b1_version,
        "b1's Secret was not written"
    );
    assert_eq!(
        reconciles(&metrics).await - before,
        2,
        "one reconcile for each grant using the changed key Secret, none for the other"
    );
}

#[tokio::test]
async fn a_key_secret_that_loses_its_label_or_goes_away_stops_signing_and_says_why() {
    let (client, ns) = namespace("scale-unlabel").await;
    create_secret(&client, &ns, &key_secret("keys", &[("key1", KEY_A)])).await;
    create_grant(&client, &ns, &grant("app", "keys")).await;
    let (_operator, _) = operator("scale-unlabel", &ns).await;
    wait_ready(&client, &ns, "app", "True", "TokenValid").await;
    let signed = data(&get_secret(&client, &ns, "app").await.unwrap(), "sasToken");

    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"sas-operator.io/signing-key": null}}})),
        )
        .await
        .expect("remove the signing-key label");
    wait_ready(&client, &ns, "app", "False", "KeySecretNotLabelled").await;

    secrets
        .delete("keys", &Default::default())
        .await
        .expect("delete the key Secret");
    wait_ready(&client, &ns, "app", "False", "KeySecretNotFound").await;
    assert_eq!(
        data(&get_secret(&client, &ns, "app").await.unwrap(), "sasToken"),
        signed,
        "the valid token is kept"
    );
}
