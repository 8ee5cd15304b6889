//! Hostile issuers: ServiceAccounts. See tests/hostile.rs.
//!
//! With a cluster-wide `create serviceaccounts/token`, whoever could act as the operator (or
//! make it act, through an issuer) could mint a token of any ServiceAccount, a kube-system
//! controller's included. Neither install grants it: the API server itself refuses the
//! operator's TokenRequest unless a namespace admin lent that one ServiceAccount with a Role
//! limited to it by `resourceNames`. Proven here with the operator's own credentials.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Api, Client};
use sas_operator::issuer::binding::{OperatorAccount, bind_commands};
use serde_json::{Value, json};

use crate::runtime::rendered_namespaced_install;
use crate::{common, operator::*};

/// The answer to a TokenRequest for `ns/name` as the operator sends it: its HTTP status.
async fn token_request(client: &Client, ns: &str, name: &str) -> u16 {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["api://AzureADTokenExchange".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(name, &Default::default(), &request)
        .await
    {
        Ok(_) => 201,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("TokenRequest for {ns}/{name}: {other}"),
    }
}

async fn create_service_account(client: &Client, ns: &str, name: &str) {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&Default::default(), &account)
        .await
        .expect("create the ServiceAccount");
}

/// Runs `kubectl ...` commands as the cluster admin, as a namespace admin would.
fn run_as_admin(commands: &str) {
    for command in commands.split("; ") {
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
}

#[tokio::test]
async fn the_operators_own_credentials_cannot_mint_a_token_of_a_service_account_nobody_lent() {
    install_deploy_directory();
    let admin = common::control_plane().client().await;
    let ns = common::test_namespace(&admin, "sa-unlent").await;
    create_service_account(&admin, &ns, "victim").await;
    create_service_account(&admin, &ns, "bystander").await;
    let as_operator = common::control_plane()
        .service_account_client(DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT)
        .await;
    for (namespace, name) in [
        (ns.as_str(), "victim"),
        ("kube-system", "default"),
        ("kube-system", "namespace-controller"),
        (DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT),
    ] {
        assert_eq!(
            token_request(&as_operator, namespace, name).await,
            403,
            "the operator minted a token of {namespace}/{name}"
        );
    }

    // Lent with exactly the commands ServiceAccountNotBound gives: that ServiceAccount, and
    // only it, becomes usable (so the 403s above are the missing binding, not blindness).
    let operator = OperatorAccount {
        namespace: Some(DEPLOY_NAMESPACE.into()),
        name: Some(DEPLOY_SERVICE_ACCOUNT.into()),
    };
    run_as_admin(&bind_commands(&ns, "victim", &operator));
    common::eventually(
        "the lent ServiceAccount's token",
        Duration::from_secs(10),
        || async { (token_request(&as_operator, &ns, "victim").await == 201).then_some(()) },
    )
    .await;
    assert_eq!(token_request(&as_operator, &ns, "bystander").await, 403);
    assert_eq!(
        token_request(&as_operator, "kube-system", "default").await,
        403
    );
}

/// The rules of every Role and ClusterRole in a rendered install.
fn rules(documents: &[Value]) -> Vec<&Value> {
    documents
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .collect()
}

#[tokio::test]
async fn the_namespaced_install_lets_the_operator_mint_no_token_in_its_watched_namespace() {
    let admin = common::control_plane().client().await;
    let operator_ns = common::test_namespace(&admin, "sa-operator").await;
    let watched = common::test_namespace(&admin, "sa-watched").await;
    let yaml = rendered_namespaced_install(&operator_ns, &watched);
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&yaml).expect("the namespaced install is YAML");
    for rule in rules(&documents) {
        let resources = rule["resources"].as_array().unwrap();
        assert!(
            !resources.iter().any(|r| r == "serviceaccounts/token"),
            "the namespaced install grants tokens: {rule}"
        );
    }
    // Only its RBAC (the CRDs and the Deployment do not matter here).
    let rbac: Vec<&Value> = documents
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "Role" | "RoleBinding")
            )
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    let mut apply = common::control_plane()
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl apply");
    {
        use std::io::Write as _;
        let mut stdin = apply.stdin.take().unwrap();
        stdin.write_all(list.to_string().as_bytes()).unwrap();
    }
    let applied = apply.wait_with_output().unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply of the namespaced install's RBAC failed:\n{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    create_service_account(&admin, &watched, "victim").await;
    let as_operator = common::control_plane()
        .service_account_client(&operator_ns, "sas-operator")
        .await;
    // Its Role is in force in the watched namespace...
    common::eventually(
        "the namespaced install's Role to be in force",
        Duration::from_secs(10),
        || async {
            Api::<Secret>::namespaced(as_operator.clone(), &watched)
                .list(&Default::default())
                .await
                .ok()
        },
    )
    .await;
    // ...and grants no token of its ServiceAccounts.
    assert_eq!(token_request(&as_operator, &watched, "victim").await, 403);
}
