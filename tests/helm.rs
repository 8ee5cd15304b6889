//! The Helm chart (charts/sas-operator): `helm lint --strict`, its values schema, the same
//! objects as the kustomize installs (deploy/, deploy/overlays/namespaced, deploy/monitoring,
//! crds/), and `helm install`, `helm upgrade` and `helm uninstall` on the real control plane
//! and worker node.
//!
//! helm and kubectl come from `hack/tools.sh` (hack/build-helm.sh, hack/build-kubectl.sh);
//! without them these tests fail, never skip.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use operator::{create_grant, create_secret, grant, key_secret, wait_for, wait_ready};

const CHART: &str = "charts/sas-operator";
/// The release and its namespace: the names of deploy/.
const RELEASE: &str = "sas-operator";
const NAMESPACE: &str = "sas-operator";
/// Labels Helm charts conventionally add (the chart's `sas-operator.labels` helper) and that
/// deploy/ does not have.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn run_ok(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A tool that `hack/tools.sh` built (`hack/<script> --path`); a missing one fails the test.
fn tool(script: &str) -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_path(script))
        .arg("--path")
        .output()
        .unwrap_or_else(|e| panic!("run {script} --path: {e}"));
    let path = PathBuf::from(run_ok(&format!("{script} --path"), output).trim());
    assert!(
        path.is_file(),
        "{} is missing: run hack/tools.sh (or {script}) first",
        path.display()
    );
    path
}

fn helm() -> Command {
    let mut command = Command::new(tool("hack/build-helm.sh"));
    command.current_dir(repo_path(""));
    // Helm's own state (repositories, cache) stays out of the user's home.
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, home.join(dir));
    }
    command
}

/// `helm template` of the chart as release `sas-operator` in namespace `sas-operator`.
fn helm_template(args: &[&str]) -> Vec<Value> {
    let output = helm()
        .args(["template", RELEASE, CHART, "--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("run helm template");
    parse_documents("helm template", &run_ok("helm template", output))
}

fn kustomize(directory: &str) -> Vec<Value> {
    let output = Command::new(tool("hack/build-kubectl.sh"))
        .args(["kustomize"])
        .arg(repo_path(directory))
        .output()
        .expect("run kubectl kustomize");
    parse_documents(
        &format!("kubectl kustomize {directory}"),
        &run_ok(&format!("kubectl kustomize {directory}"), output),
    )
}

fn parse_documents(what: &str, yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("{what} printed no valid YAML: {e}\n{yaml}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// (kind, namespace, name) of an object.
type ObjectKey = (String, String, String);

fn key_of(object: &Value) -> ObjectKey {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// The object without Helm's own labels and `helm.sh/` annotations (and without the maps
/// they leave empty), keyed by kind, namespace and name.
fn without_helm_metadata(objects: Vec<Value>) -> BTreeMap<ObjectKey, Value> {
    let mut keyed = BTreeMap::new();
    for mut object in objects {
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("every object has metadata");
        if let Some(Value::Object(labels)) = metadata.get_mut("labels") {
            labels.retain(|key, _| !HELM_LABELS.contains(&key.as_str()));
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.retain(|key, _| !key.starts_with("helm.sh/"));
        }
        metadata.retain(|key, value| {
            !(matches!(key.as_str(), "labels" | "annotations")
                && value.as_object().is_some_and(|map| map.is_empty()))
        });
        let key = key_of(&object);
        assert!(
            keyed.insert(key.clone(), object).is_none(),
            "{key:?} is rendered twice"
        );
    }
    keyed
}

/// `diff -u` of two objects as indented JSON.
fn diff(left_name: &str, left: &Value, right_name: &str, right: &Value) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, value: &Value| {
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap() + "\n")
            .expect("write an object for diff");
        path
    };
    let (left_path, right_path) = (write(left_name, left), write(right_name, right));
    let output = Command::new("diff")
        .arg("-u")
        .arg(&left_path)
        .arg(&right_path)
        .output()
        .expect("run diff");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the chart renders exactly the kustomize objects, object for object, besides
/// Helm's own labels; each difference is shown as a diff.
fn assert_same_objects(
    kustomize_name: &str,
    kustomized: BTreeMap<ObjectKey, Value>,
    rendered: BTreeMap<ObjectKey, Value>,
) {
    let mut problems = Vec::new();
    for (key, expected) in &kustomized {
        match rendered.get(key) {
            None => problems.push(format!("{key:?}: in {kustomize_name}, not in the chart")),
            Some(actual) if actual != expected => problems.push(format!(
                "{key:?} differs:\n{}",
                diff(kustomize_name, expected, "helm-template", actual)
            )),
            Some(_) => {}
        }
    }
    for key in rendered.keys().filter(|key| !kustomized.contains_key(*key)) {
        problems.push(format!("{key:?}: in the chart, not in {kustomize_name}"));
    }
    assert!(
        problems.is_empty(),
        "helm template differs from {kustomize_name}:\n{}",
        problems.join("\n")
    );
}

/// The kustomize install less its Namespace: Helm keeps a release's record in the release
/// namespace, which therefore exists before the chart's objects (docs/helm.md creates it with
/// the same Pod Security labels).
fn kustomized_without_namespace(directory: &str) -> BTreeMap<ObjectKey, Value> {
    let mut objects = without_helm_metadata(kustomize(directory));
    let namespace = objects
        .remove(&("Namespace".into(), String::new(), NAMESPACE.into()))
        .unwrap_or_else(|| panic!("{directory} creates the namespace {NAMESPACE}"));
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "docs/helm.md labels the namespace as {directory} does"
    );
    objects
}

#[test]
fn helm_lint_strict_passes_with_default_and_with_every_optional_object() {
    for extra in [
        &[][..],
        &[
            "--set",
            "watchNamespaces={apps,reports}",
            "--set",
            "monitoring.serviceMonitor.enabled=true",
            "--set",
            "monitoring.prometheusRule.enabled=true",
            "--set",
            "monitoring.dashboard.enabled=true",
            "--set",
            "workloadIdentity.extraCA.configMap=private-ca",
        ][..],
    ] {
        let output = helm()
            .args(["lint", "--strict", CHART])
            .args(extra)
            .output()
            .expect("run helm lint");
        let stdout = run_ok(&format!("helm lint --strict {extra:?}"), output);
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }
}

#[test]
fn the_values_schema_rejects_a_replica_count_that_is_not_a_number() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "replicaCount: \"two\"\n").expect("write the values file");
    let output = helm()
        .args(["template", RELEASE, CHART, "--values"])
        .arg(&values)
        .output()
        .expect("run helm template");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "helm template accepted it");
    assert!(
        stderr.contains("replicaCount") && stderr.contains("want integer"),
        "the error names the value and the type it wants:\n{stderr}"
    );
}

#[test]
fn the_values_schema_rejects_an_unknown_value() {
    let output = helm()
        .args(["template", RELEASE, CHART, "--set", "replicas=3"])
        .output()
        .expect("run helm template");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "helm template accepted it");
    assert!(stderr.contains("replicas"), "{stderr}");
}

#[test]
fn several_replicas_without_leader_election_are_refused() {
    let output = helm()
        .args(["template", RELEASE, CHART])
        .args(["--set", "leaderElection.enabled=false"])
        .output()
        .expect("run helm template");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "helm template accepted it");
    assert!(stderr.contains("needs leaderElection.enabled"), "{stderr}");
}

#[test]
fn default_values_render_the_cluster_wide_install_of_deploy() {
    assert_same_objects(
        "deploy/",
        kustomized_without_namespace("deploy"),
        without_helm_metadata(helm_template(&[])),
    );
}

#[test]
fn watch_namespaces_render_the_namespaced_overlay() {
    // deploy/overlays/namespaced watches the namespace `apps`.
    assert_same_objects(
        "deploy/overlays/namespaced",
        kustomized_without_namespace("deploy/overlays/namespaced"),
        without_helm_metadata(helm_template(&["--set", "watchNamespaces={apps}"])),
    );
}

#[test]
fn watching_two_namespaces_gives_each_a_role_and_the_operator_both_names() {
    let objects = helm_template(&["--set", "watchNamespaces={apps,reports}"]);
    for namespace in ["apps", "reports"] {
        for kind in ["Role", "RoleBinding"] {
            assert!(
                objects
                    .iter()
                    .any(|o| key_of(o) == (kind.into(), namespace.into(), "sas-operator".into())),
                "no {kind} in {namespace}"
            );
        }
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "sas-operator"),
        "a namespaced install has no cluster-wide access"
    );
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "SAS_OPERATOR_NAMESPACES", "value": "apps,reports"})),
        "{env}"
    );
}

#[test]
fn monitoring_values_render_deploy_monitoring() {
    let rendered = helm_template(&[
        "--set",
        "monitoring.serviceMonitor.enabled=true",
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--set",
        "monitoring.dashboard.enabled=true",
    ]);
    let monitoring: Vec<Value> = rendered
        .into_iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("ServiceMonitor" | "PrometheusRule" | "ConfigMap")
            )
        })
        .collect();
    assert_same_objects(
        "deploy/monitoring",
        without_helm_metadata(kustomize("deploy/monitoring")),
        without_helm_metadata(monitoring),
    );
}

#[test]
fn monitoring_objects_are_off_by_default() {
    let kinds: Vec<String> = helm_template(&[])
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(
            !kinds.iter().any(|k| k == kind),
            "{kind} rendered: {kinds:?}"
        );
    }
}

/// The objects of crds/*.yaml, as `kubectl apply -f crds/` reads them.
fn committed_crds() -> BTreeMap<ObjectKey, Value> {
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(repo_path("crds")).expect("read crds/") {
        let path = entry.expect("a crds/ entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).expect("read a CRD");
            crds.extend(parse_documents(&path.display().to_string(), &text));
        }
    }
    without_helm_metadata(crds)
}

#[test]
fn the_charts_crds_equal_the_crds_directory_and_are_kept_on_uninstall() {
    let rendered: Vec<Value> = helm_template(&[])
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    for crd in &rendered {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep",
            "{:?}",
            key_of(crd)
        );
    }
    // The chart labels its CRDs like every object; crds/ has no labels.
    let mut rendered = without_helm_metadata(rendered);
    for crd in rendered.values_mut() {
        crd["metadata"].as_object_mut().unwrap().remove("labels");
    }
    assert_same_objects("crds/", committed_crds(), rendered);
}

#[test]
fn crds_keep_false_lets_uninstall_delete_them_and_crds_enabled_false_leaves_them_out() {
    let not_kept = helm_template(&["--set", "crds.keep=false"]);
    let crds: Vec<&Value> = not_kept
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 3);
    for crd in crds {
        assert!(crd["metadata"].get("annotations").is_none(), "{crd}");
    }
    let without = helm_template(&["--set", "crds.enabled=false"]);
    assert!(
        !without
            .iter()
            .any(|o| o["kind"] == "CustomResourceDefinition")
    );
}

#[test]
fn every_operator_setting_becomes_its_environment_variable() {
    let objects = helm_template(&[
        "--set",
        "concurrency=8",
        "--set",
        "logLevel=debug",
        "--set",
        "logFormat=text",
        "--set",
        "clusterResourceNamespace=credentials",
        "--set",
        "workloadIdentity.authorityHost=https://login.example.test",
        "--set",
        "workloadIdentity.maxUserDelegationKeyLifetime=24h",
        "--set",
        "workloadIdentity.extraCA.configMap=private-ca",
        "--set",
        "storageEndpoints.suffixes={core.windows.net,core.chinacloudapi.cn}",
        "--set",
        "storageEndpoints.allow={127.0.0.1:10000}",
        "--set",
        "leaderElection.leaseName=other-lease",
    ]);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let env: BTreeMap<&str, &str> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    for (name, value) in [
        ("SAS_OPERATOR_CONCURRENCY", "8"),
        ("SAS_OPERATOR_LOG_LEVEL", "debug"),
        ("SAS_OPERATOR_LOG_FORMAT", "text"),
        ("SAS_OPERATOR_CLUSTER_RESOURCE_NAMESPACE", "credentials"),
        ("AZURE_AUTHORITY_HOST", "https://login.example.test"),
        ("SAS_OPERATOR_MAX_USER_DELEGATION_KEY_LIFETIME", "24h"),
        (
            "SAS_OPERATOR_EXTRA_CA_FILE",
            "/etc/sas-operator/extra-ca/ca.crt",
        ),
        (
            "SAS_OPERATOR_STORAGE_ENDPOINT_SUFFIXES",
            "core.windows.net,core.chinacloudapi.cn",
        ),
        ("SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS", "127.0.0.1:10000"),
        ("SAS_OPERATOR_LEASE_NAME", "other-lease"),
    ] {
        assert_eq!(env.get(name), Some(&value), "{name} in {env:?}");
    }
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"], "private-ca",
        "the extra CA ConfigMap is mounted"
    );
    // The leader-election Role names the Lease the operator uses.
    let role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "sas-operator-leader-election")
        .unwrap();
    assert_eq!(role["rules"][1]["resourceNames"], json!(["other-lease"]));
}

/// The flags of `sas-operator run` whose environment variable the chart sets, by value or
/// by construction; a new flag fails this test until the chart offers it or it is listed.
#[test]
fn the_chart_offers_every_environment_variable_of_the_operator() {
    let output = Command::new(env!("CARGO_BIN_EXE_sas-operator"))
        .args(["run", "--help"])
        .output()
        .expect("run sas-operator run --help");
    let help = run_ok("sas-operator run --help", output);
    let template =
        std::fs::read_to_string(repo_path(&format!("{CHART}/templates/deployment.yaml")))
            .expect("read the Deployment template");
    // Joined: a wrapped line may separate `[env:` from the name.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let variables = help.split("[env: ").skip(1).count();
    assert!(variables >= 20, "found {variables} [env: ...] in:\n{help}");
    let mut missing = Vec::new();
    for rest in help.split("[env: ").skip(1) {
        let var = rest.split(['=', ']']).next().unwrap_or_default();
        if !template.contains(&format!("\"{var}\"")) && !template.contains(&format!("name: {var}"))
        {
            missing.push(var.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "the chart sets no value for {missing:?} (charts/sas-operator/templates/deployment.yaml)"
    );
}

// ---- On the real control plane and worker node ----

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
        let deletion = kubectl(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
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
