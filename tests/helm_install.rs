//! The Helm chart on the real control plane and worker node: `helm install` runs the operator
//! under the chart's ServiceAccount and RBAC, `helm upgrade` rolls it, `helm uninstall` leaves
//! the CRDs, grants and token Secrets. Needs root on Linux, like tests/node.rs (`make test`
//! leaves both out where the node cannot run, and says so).

#[path = "support/helm.rs"]
mod chart;
mod common;
#[path = "support/operator.rs"]
mod operator;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use chart::{CHART, NAMESPACE, RELEASE, helm, run_ok};
use operator::{create_grant, create_secret, grant, key_secret, wait_for, wait_ready};

fn kubectl(args: &[&str]) -> String {
    run_ok(
        &format!("kubectl {}", args.join(" ")),
        common::control_plane()
            .kubectl()
            .args(args)
            .output()
            .expect("run kubectl"),
    )
}

/// helm with the test control plane's admin kubeconfig.
fn helm_on_cluster(args: &[&str]) -> String {
    let plane = common::control_plane();
    let output = helm()
        .env("KUBECONFIG", &plane.kubeconfig_path)
        .args(args)
        .output()
        .expect("run helm");
    run_ok(&format!("helm {}", args.join(" ")), output)
}

/// The operator image built by hack/image.sh, imported into the node's containerd.
fn operator_image_on_the_node() -> (String, String) {
    let node = common::node();
    let root = common::process::repo_root();
    let output = Command::new(root.join("hack/image.sh"))
        .current_dir(root)
        .output()
        .expect("run hack/image.sh");
    let image = run_ok("hack/image.sh", output).trim().to_string();
    node.import_image(&root.join("target/image/sas-operator.tar"));
    let (repository, tag) = image.rsplit_once(':').expect("image reference has a tag");
    (repository.to_string(), tag.to_string())
}

async fn operator_pods(client: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(
            &ListParams::default().labels(
                "app.kubernetes.io/name=sas-operator,app.kubernetes.io/component=controller",
            ),
        )
        .await
        .expect("list the operator's pods")
        .items
}

/// Install, use, upgrade and uninstall as a user would, in that order (each step needs the
/// one before it): the operator runs under the chart's ServiceAccount and RBAC and makes a
/// grant Ready whose token a consumer pod uses; an upgrade with a changed value rolls the
/// Deployment; an uninstall leaves the CRDs, the grant and its token Secret.
#[tokio::test]
async fn helm_install_upgrade_and_uninstall_on_the_node() {
    let (repository, tag) = operator_image_on_the_node();
    let plane = common::control_plane();
    let client = plane.client().await;
    // The namespace as docs/helm.md creates it: the pods must meet the restricted standard.
    kubectl(&["create", "namespace", NAMESPACE]);
    kubectl(&[
        "label",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let values = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-test-values.json");
    std::fs::write(
        &values,
        json!({
            "image": {"repository": repository, "tag": tag},
            // The grants name this binary's Azurite endpoints.
            "storageEndpoints": {"allow": operator::storage_endpoints_to_allow().split(',').collect::<Vec<_>>()},
        })
        .to_string(),
    )
    .expect("write the values file");
    let values = values.to_str().expect("a UTF-8 path");

    // 1. helm install: two Ready pods under the chart's ServiceAccount.
    helm_on_cluster(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--values",
        values,
        "--wait",
        "--timeout",
        "180s",
    ]);
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    let installed = deployments
        .get(RELEASE)
        .await
        .expect("the chart's Deployment");
    assert_eq!(
        installed.status.as_ref().and_then(|s| s.ready_replicas),
        Some(2)
    );
    let pods = operator_pods(&client).await;
    assert_eq!(pods.len(), 2, "two operator pods");
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("sas-operator"));
        assert_eq!(
            spec.node_name.as_deref(),
            Some(common::node().name.as_str())
        );
    }
    // The ServiceAccount's rights are the chart's ClusterRole, nothing more or less.
    let can_i = |verb: &str, resource: &str| {
        plane
            .kubectl()
            .args(["auth", "can-i", verb, resource, "--all-namespaces", "--as"])
            .arg(format!("system:serviceaccount:{NAMESPACE}:sas-operator"))
            .output()
            .expect("run kubectl auth can-i")
            .status
            .success()
    };
    assert!(can_i("watch", "sasgrants.sas-operator.io"));
    assert!(can_i("patch", "secrets"));
    assert!(
        !can_i("delete", "secrets"),
        "the operator never deletes Secrets"
    );

    // 2. A grant becomes Ready, and a consumer pod uses its token.
    let ns = common::test_namespace(&client, "helm").await;
    let azurite = common::azurite();
    operator::Storage::default()
        .create_container(
            &azurite.blob_endpoint,
            "helm",
            &operator::admin_token(&azurite.account, &azurite.key),
        )
        .await;
    create_secret(
        &client,
        &ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    create_grant(
        &client,
        &ns,
        &grant(
            "helm",
            json!({"container": {"name": "helm"}}),
            "rwl",
            json!({}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "helm", "True", "TokenValid").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let token_before = operator::data(&secrets.get("helm").await.unwrap(), "sasToken");
    let consumer: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "consumer"},
        "spec": {
            // Azurite listens on the host's loopback only.
            "hostNetwork": true,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
            "containers": [{
                "name": "consumer",
                "image": common::node().consumer_image,
                "imagePullPolicy": "Never",
                "env": [{"name": "INTERVAL", "value": "1s"}],
                "volumeMounts": [{"name": "sas", "mountPath": "/var/run/sas", "readOnly": true}],
            }],
            "volumes": [{"name": "sas", "secret": {"secretName": "helm"}}],
        }
    }))
    .expect("a Pod");
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &consumer)
        .await
        .expect("create the consumer pod");
    let round = wait_for(
        "the consumer's first round with the grant's token",
        Duration::from_secs(120),
        || async {
            let output = plane
                .kubectl()
                .args(["logs", "-n", &ns, "consumer"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["event"] == "round")
        },
    )
    .await;
    assert_eq!(round["ok"], true, "the consumer's request failed: {round}");

    // 3. helm upgrade with a changed value rolls the Deployment to new pods.
    let old_pods: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let old_generation = installed.metadata.generation.unwrap_or_default();
    helm_on_cluster(&[
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--values",
        values,
        "--set",
        "logLevel=debug",
        "--wait",
        "--timeout",
        "180s",
    ]);
    let upgraded = deployments.get(RELEASE).await.unwrap();
    assert!(upgraded.metadata.generation.unwrap_or_default() > old_generation);
    let env = upgraded
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "SAS_OPERATOR_LOG_LEVEL" && e.value.as_deref() == Some("debug")),
        "{env:?}"
    );
    let new_pods = wait_for(
        "the upgrade's two Ready pods, none of them an old one",
        Duration::from_secs(120),
        || async {
            let pods: Vec<String> = operator_pods(&client)
                .await
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .filter_map(|p| p.metadata.name)
                .collect();
            (pods.len() == 2 && pods.iter().all(|p| !old_pods.contains(p))).then_some(pods)
        },
    )
    .await;
    eprintln!("helm upgrade rolled {old_pods:?} to {new_pods:?}");

    // 4. helm uninstall removes the operator but leaves the CRDs, the grant and its Secret.
    helm_on_cluster(&["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"]);
    assert!(
        deployments.get_opt(RELEASE).await.unwrap().is_none(),
        "uninstall removed the Deployment"
    );
    // A CRD being deleted is still listed (Terminating) while its objects go: it must have
    // no deletion timestamp at all.
    for crd in [
        "sasgrants.sas-operator.io",
        "sasissuers.sas-operator.io",
        "clustersasissuers.sas-operator.io",
    ] {
        let output = common::control_plane()
            .kubectl()
            .args([
                "get",
                "crd",
                crd,
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ])
            .output()
            .expect("run kubectl get crd");
        assert!(
            output.status.success(),
            "helm uninstall deleted the CRD {crd}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let deletion = String::from_utf8_lossy(&output.stdout);
        assert_eq!(deletion, "", "helm uninstall deleted the CRD {crd}");
    }
    let grants = Api::<sas_operator::crd::SasGrant>::namespaced(client.clone(), &ns);
    let grant = grants
        .get("helm")
        .await
        .expect("the grant outlives the uninstall");
    assert!(grant.metadata.deletion_timestamp.is_none());
    // Its owner alive, the token Secret is not garbage-collected; the token is unchanged.
    let secret = secrets
        .get("helm")
        .await
        .expect("the token Secret outlives the uninstall");
    assert!(secret.metadata.deletion_timestamp.is_none());
    assert_eq!(operator::data(&secret, "sasToken"), token_before);

    // 5. Installing again adopts the kept CRDs, and the grant is served again.
    helm_on_cluster(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--values",
        values,
        "--wait",
        "--timeout",
        "180s",
    ]);
    wait_ready(&client, &ns, "helm", "True", "TokenValid").await;
}
