//! The Helm chart (charts/sas-operator): `helm lint --strict`, its values schema, and the same
//! objects as the kustomize installs (deploy/, deploy/overlays/namespaced, deploy/monitoring,
//! crds/). Installing it on a real node: tests/helm_install.rs.

#[path = "support/helm.rs"]
mod chart;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use chart::{CHART, NAMESPACE, RELEASE, helm, repo_path, run_ok, tool};

/// Labels Helm charts conventionally add (the chart's `sas-operator.labels` helper) and that
/// deploy/ does not have.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

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
