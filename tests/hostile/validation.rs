//! Hostile grants: validation. See tests/hostile.rs.
//!
//! Each hostile value below is refused by the API server at admission, and the operator (under
//! `deploy/`'s RBAC, watching the hostile namespace and a second one) keeps serving the second
//! namespace promptly and never logs the account key. The controller's own refusal of the same
//! values, for a grant stored before the schema tightened, is proven by the unit tests of
//! `reconcile::grant` and `reconcile::validate` (a looser copy of the cluster-wide CRD would
//! disturb the other tests sharing this control plane), and `tests/admission.rs` holds the
//! schema and the controller to the same verdict on thousands of generated values.

use std::time::{Duration, Instant};

use kube::{Api, Client, api::PostParams};
use sas_operator::crd::SasGrant;
use serde_json::{Value, json};

#[allow(unused_imports)]
use crate::{common, operator::*};

/// How soon a valid grant in the other namespace must be Ready.
const PROMPTLY: Duration = Duration::from_secs(15);

/// The operator under `deploy/` RBAC, watching a hostile namespace and a bystander's.
struct Scenario {
    client: Client,
    hostile: String,
    bystander: String,
    operator: Operator,
}

async fn scenario(name: &str) -> Scenario {
    let (client, hostile) = namespace(&format!("{name}-hostile")).await;
    let bystander = common::test_namespace(&client, &format!("{name}-bystander")).await;
    let key = key_secret("azurite-keys", &[("key1", &common::azurite().key)]);
    for ns in [&hostile, &bystander] {
        create_secret(&client, ns, &key).await;
    }
    let operator = Operator::under_deploy_rbac(
        &format!("hostile-validation-{name}"),
        &[&hostile, &bystander],
        &[],
    )
    .await;
    Scenario {
        client,
        hostile,
        bystander,
        operator,
    }
}

/// A container grant in the hostile namespace with `spec` entries replaced (`null` removes).
fn hostile_grant(name: &str, spec: Value) -> SasGrant {
    let mut value = serde_json::to_value(grant(
        name,
        json!({"container": {"name": "data"}}),
        "rl",
        json!({}),
    ))
    .unwrap();
    merge(&mut value["spec"], spec);
    serde_json::from_value(value).expect("a well-typed SasGrant")
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Creates `grant` and returns the API server's refusal, which must be a 422.
async fn refused(client: &Client, ns: &str, grant: &SasGrant) -> String {
    let result = Api::<SasGrant>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), grant)
        .await;
    match result {
        Err(kube::Error::Api(status)) if status.code == 422 => status.message,
        Err(other) => panic!("expected a 422 Invalid, got {other}"),
        Ok(_) => panic!("the API server admitted the hostile grant"),
    }
}

impl Scenario {
    /// The bystander namespace is served promptly and the log holds no account key.
    async fn assert_others_unaffected(&self, name: &str) {
        let started = Instant::now();
        create_grant(
            &self.client,
            &self.bystander,
            &grant(
                name,
                json!({"container": {"name": "data"}}),
                "rl",
                json!({}),
            ),
        )
        .await;
        let api = Api::<SasGrant>::namespaced(self.client.clone(), &self.bystander);
        wait_for("the bystander's grant to be Ready", PROMPTLY, || async {
            let grant = api.get(name).await.ok()?;
            (ready_of(&grant) == Some(("True".into(), "TokenValid".into()))).then_some(())
        })
        .await;
        let elapsed = started.elapsed();
        assert!(elapsed < PROMPTLY, "the bystander waited {elapsed:?}");
        let logs = self.operator.logs();
        assert!(!logs.contains("panicked"), "the operator panicked:\n{logs}");
        self.operator.assert_logs_free_of(&[&common::azurite().key]);
        // The hostile namespace holds no grant: nothing got past admission.
        let stored = Api::<SasGrant>::namespaced(self.client.clone(), &self.hostile)
            .list(&Default::default())
            .await
            .expect("list grants");
        assert!(stored.items.is_empty(), "a hostile grant was stored");
    }
}

#[tokio::test]
async fn a_key_secret_name_that_is_a_query_is_refused_at_admission() {
    let scenario = scenario("keyname").await;
    let grant = hostile_grant(
        "query",
        json!({"storageAccount": {"keySecretRef": {"name": "?"}}}),
    );
    let message = refused(&scenario.client, &scenario.hostile, &grant).await;
    assert!(
        message.contains("spec.storageAccount.keySecretRef.name"),
        "{message}"
    );
    scenario.assert_others_unaffected("keyname").await;
}

#[tokio::test]
async fn a_target_secret_name_that_opens_a_watch_is_refused_at_admission() {
    let scenario = scenario("watchname").await;
    let grant = hostile_grant(
        "watch",
        json!({"target": {"secretName": "?watch=1&timeoutSeconds=3600&"}}),
    );
    let message = refused(&scenario.client, &scenario.hostile, &grant).await;
    assert!(message.contains("spec.target.secretName"), "{message}");
    scenario.assert_others_unaffected("watchname").await;
}

#[tokio::test]
async fn a_renewal_one_second_before_expiry_is_refused_at_admission() {
    let scenario = scenario("hotloop").await;
    let grant = hostile_grant("hot", json!({"validity": "1h", "renewBefore": "59m59s"}));
    let message = refused(&scenario.client, &scenario.hostile, &grant).await;
    assert!(
        message.contains("by at least max(1m, validity/10)"),
        "{message}"
    );
    scenario.assert_others_unaffected("hotloop").await;
}

#[tokio::test]
async fn an_overflowing_duration_is_refused_and_never_panics_the_operator() {
    let scenario = scenario("overflow").await;
    for (field, spec) in [
        ("validity", json!({"validity": "99999999999999999999h"})),
        (
            "renewBefore",
            json!({"validity": "8h", "renewBefore": "99999999999999999999h"}),
        ),
    ] {
        let grant = hostile_grant(&field.to_ascii_lowercase(), spec);
        let message = refused(&scenario.client, &scenario.hostile, &grant).await;
        assert!(message.contains(&format!("spec.{field}")), "{message}");
    }
    scenario.assert_others_unaffected("overflow").await;
    let mut operator = scenario.operator;
    operator.terminate();
    let status = operator.wait_for_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "the operator must still stop cleanly: {status}"
    );
}

#[tokio::test]
async fn an_endpoint_that_injects_a_connection_string_field_is_refused_at_admission() {
    let scenario = scenario("endpoint").await;
    for (name, endpoint) in [
        (
            "inject",
            "https://attacker.example/x;SharedAccessSignature=evil",
        ),
        ("plain", "http://attacker.example/devstoreaccount1"),
        ("userinfo", "https://user@attacker.example"),
        ("query", "https://attacker.example/?a=b"),
    ] {
        let grant = hostile_grant(
            name,
            json!({"storageAccount": {"endpoints": {"blob": endpoint}}}),
        );
        let message = refused(&scenario.client, &scenario.hostile, &grant).await;
        assert!(
            message.contains("spec.storageAccount.endpoints.blob"),
            "{endpoint}: {message}"
        );
    }
    scenario.assert_others_unaffected("endpoint").await;
}

#[tokio::test]
async fn other_namespaces_are_served_promptly_while_hostile_grants_are_tried() {
    let scenario = scenario("storm").await;
    let hostile = [
        json!({"storageAccount": {"keySecretRef": {"name": "?"}}}),
        json!({"target": {"secretName": "?watch=1&timeoutSeconds=3600&"}}),
        json!({"validity": "1h", "renewBefore": "59m59s"}),
        json!({"validity": "99999999999999999999h"}),
        json!({"storageAccount": {"endpoints": {"blob": "https://attacker.example/x;SharedAccessSignature=evil"}}}),
        json!({"ip": "10.0.0.2-10.0.0.1"}),
        json!({"resource": {"container": null, "blob": {"container": "data", "name": "a\nb"}}}),
    ];
    let attempts = hostile
        .iter()
        .cycle()
        .take(70)
        .enumerate()
        .map(|(i, spec)| {
            let grant = hostile_grant(&format!("h{i}"), spec.clone());
            let (client, ns) = (scenario.client.clone(), scenario.hostile.clone());
            async move { refused(&client, &ns, &grant).await }
        });
    let (refusals, ()) = tokio::join!(
        futures::future::join_all(attempts),
        scenario.assert_others_unaffected("bystander"),
    );
    assert_eq!(refusals.len(), 70);
}
