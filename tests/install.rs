//! The install path as a new user walks it: `kubectl apply -f crds/`, `kubectl explain`, the
//! YAML examples of the README and docs/ and `deploy/`, each against the real control plane.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tests of this binary share one API server. Two `kubectl apply`s of the same CRD at once
/// both see it missing and both create it, and the second fails with AlreadyExists: every
/// apply that may create the CRDs runs under this lock.
static CREATING_APPLY: Mutex<()> = Mutex::new(());

/// Runs `kubectl apply` (built by the caller) alone among this binary's applies.
fn apply_alone(what: &str, command: &mut Command) -> String {
    let _alone = CREATING_APPLY.lock().unwrap_or_else(|e| e.into_inner());
    run_ok(what, command.output().expect("run kubectl apply"))
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

/// Every YAML document of every file in `crds/` that kubectl would read.
fn crd_documents() -> Vec<(PathBuf, Value)> {
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("crds")).expect("read crds/") {
        let path = entry.expect("crds/ entry").path();
        let kubectl_reads = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if !kubectl_reads {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a CRD file");
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        documents.extend(values.into_iter().map(|v| (path.clone(), v)));
    }
    documents
}

/// Property paths (like `spec.resource.blob.name`) whose schema has no `description`.
fn undescribed_properties(schema: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let property_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let described = property
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                missing.push(property_path.clone());
            }
            undescribed_properties(property, &property_path, missing);
        }
    }
    if let Some(items) = schema.get("items") {
        undescribed_properties(items, &format!("{path}[]"), missing);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undescribed_properties(values, &format!("{path}{{}}"), missing);
    }
}

#[test]
fn crds_directory_holds_only_custom_resource_definitions() {
    let documents = crd_documents();
    assert!(!documents.is_empty(), "crds/ holds no manifest");
    for (path, document) in &documents {
        assert_eq!(
            document["kind"],
            "CustomResourceDefinition",
            "{} holds a {} (kubectl apply -f crds/ reads every *.yaml in it)",
            path.display(),
            document["kind"]
        );
    }
}

#[test]
fn every_field_of_every_crd_has_a_description() {
    let mut missing = Vec::new();
    for (path, crd) in crd_documents() {
        let name = crd["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let versions = crd["spec"]["versions"].as_array().expect("spec.versions");
        for version in versions {
            let schema = &version["schema"]["openAPIV3Schema"];
            assert!(schema.is_object(), "{name} has no openAPIV3Schema");
            let mut fields = Vec::new();
            undescribed_properties(schema, "", &mut fields);
            let version = version["name"].as_str().unwrap_or("?");
            missing.extend(
                fields
                    .into_iter()
                    .map(|field| format!("{} {name}/{version}: {field}", path.display())),
            );
        }
    }
    assert!(
        missing.is_empty(),
        "properties without a description (`kubectl explain` shows <no description>); add a \
         `///` doc comment in src/crd.rs and run `make crds`:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn kubectl_apply_f_crds_succeeds() {
    let plane = common::control_plane();
    let stdout = apply_alone(
        "kubectl apply -f crds/",
        plane
            .kubectl()
            .current_dir(repo_root())
            .args(["apply", "-f", "crds/"]),
    );
    assert!(
        stdout.contains("customresourcedefinition.apiextensions.k8s.io/sasgrants.sas-operator.io"),
        "kubectl apply -f crds/ did not apply the SasGrant CRD:\n{stdout}"
    );
}

/// `kubectl explain` of every object in the SasGrant schema: no field lacks a description.
#[test]
fn kubectl_explain_describes_every_sas_grant_field() {
    let plane = common::control_plane();
    apply_alone(
        "kubectl apply -f crds/",
        plane
            .kubectl()
            .current_dir(repo_root())
            .args(["apply", "-f", "crds/"]),
    );
    run_ok(
        "kubectl wait for the CRD",
        plane
            .kubectl()
            .args([
                "wait",
                "--for",
                "condition=established",
                "--timeout=30s",
                "crd/sasgrants.sas-operator.io",
            ])
            .output()
            .expect("run kubectl"),
    );
    let (_, crd) = crd_documents()
        .into_iter()
        .find(|(_, crd)| crd["metadata"]["name"] == "sasgrants.sas-operator.io")
        .expect("crds/ has the SasGrant CRD");
    let mut object_paths = Vec::new();
    collect_object_paths(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "sasgrants",
        &mut object_paths,
    );
    assert!(object_paths.len() > 10, "found only {object_paths:?}");
    let mut undescribed = Vec::new();
    for path in &object_paths {
        // The OpenAPI v3 document can lag the CRD by a moment; retry until it serves the path.
        let mut explained = String::new();
        for _ in 0..50 {
            let output = plane
                .kubectl()
                .args(["explain", path])
                .output()
                .expect("run kubectl explain");
            if output.status.success() {
                explained = String::from_utf8_lossy(&output.stdout).into_owned();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(!explained.is_empty(), "kubectl explain {path} kept failing");
        if explained.contains("<no description>") {
            undescribed.push(format!("kubectl explain {path}:\n{explained}"));
        }
    }
    assert!(undescribed.is_empty(), "{}", undescribed.join("\n"));
}

/// `sasgrants.spec`, `sasgrants.spec.resource.blob`, ...: every path kubectl explain can show
/// fields of (objects with properties; the metadata schema is Kubernetes' own).
fn collect_object_paths(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    out.push(path.to_string());
    for (name, property) in properties {
        let child = format!("{path}.{name}");
        collect_object_paths(property, &child, out);
        if let Some(items) = property.get("items") {
            collect_object_paths(items, &child, out);
        }
    }
}

/// Fenced ```yaml blocks of the Markdown file `path`, with the fence's indentation removed.
fn yaml_blocks(path: &str, markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match current.as_mut() {
            None if trimmed == "```yaml" => current = Some((index + 1, indent, String::new())),
            None => {}
            Some(_) if trimmed == "```" => {
                let (start, _, text) = current.take().expect("inside a block");
                blocks.push((start, text));
            }
            Some((_, fence_indent, text)) => {
                let cut = line
                    .char_indices()
                    .take_while(|(i, c)| *i < *fence_indent && *c == ' ')
                    .count();
                text.push_str(&line[cut..]);
                text.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "{path} has an unterminated ```yaml block"
    );
    blocks
}

/// The Markdown files whose YAML examples users copy: the README, CONTRIBUTING.md and every
/// page under docs/, by path from the repository root.
fn documentation_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string(), "CONTRIBUTING.md".to_string()];
    let mut pages: Vec<String> = std::fs::read_dir(repo_root().join("docs"))
        .expect("read docs/")
        .map(|entry| {
            entry
                .expect("a docs/ entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

#[test]
fn every_yaml_example_in_the_readme_and_docs_passes_server_side_dry_run() {
    let plane = common::control_plane();
    apply_alone(
        "kubectl apply -f crds/ --server-side",
        plane
            .kubectl()
            .current_dir(repo_root())
            .args(["apply", "-f", "crds/", "--server-side"]),
    );
    let mut blocks = Vec::new();
    for path in documentation_files() {
        let markdown = std::fs::read_to_string(repo_root().join(&path))
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        for (line, yaml) in yaml_blocks(&path, &markdown) {
            blocks.push((format!("{path}:{line}"), yaml));
        }
    }
    // The pages with a grant, an issuer and a consuming Pod: a lost fence would skip them.
    for page in ["README.md", "docs/reference.md", "docs/issuers.md"] {
        assert!(
            blocks
                .iter()
                .any(|(place, _)| place.starts_with(&format!("{page}:"))),
            "{page} has no ```yaml example any more"
        );
    }
    for (place, yaml) in &blocks {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("{place}: not YAML: {e}"));
        // Examples name their namespace; it must exist for the dry run to reach validation.
        for document in &documents {
            assert!(
                document.get("kind").is_some(),
                "{place}: a YAML example is not a whole Kubernetes object:\n{yaml}"
            );
            if let Some(namespace) = document["metadata"]["namespace"].as_str() {
                let _ = plane
                    .kubectl()
                    .args(["create", "namespace", namespace])
                    .output();
                // Pods are admitted only once the namespace's default ServiceAccount exists.
                let mut exists = false;
                for _ in 0..100 {
                    let output = plane
                        .kubectl()
                        .args(["get", "serviceaccount", "default", "-n", namespace])
                        .output()
                        .expect("run kubectl");
                    if output.status.success() {
                        exists = true;
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                assert!(
                    exists,
                    "namespace {namespace} got no default ServiceAccount"
                );
            }
        }
        let mut child = plane
            .kubectl()
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write the example");
        let output = child.wait_with_output().expect("kubectl finished");
        run_ok(&format!("{place}: kubectl apply --dry-run=server"), output);
    }
}

fn kustomize_deploy() -> Vec<Value> {
    let plane = common::control_plane();
    let output = plane
        .kubectl()
        .args(["kustomize"])
        .arg(repo_root().join("deploy"))
        .output()
        .expect("run kubectl kustomize");
    let yaml = run_ok("kubectl kustomize deploy/", output);
    serde_saphyr::from_multiple(&yaml).expect("kustomize output is YAML")
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("deploy/ has no {kind}"))
}

#[test]
fn deploy_has_a_disruption_budget_keeping_one_replica_of_the_deployment() {
    let objects = kustomize_deploy();
    let deployment = find(&objects, "Deployment");
    let budget = find(&objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
        "the PodDisruptionBudget must select exactly the Deployment's pods"
    );
    assert_eq!(
        budget["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
}

#[test]
fn deploy_network_policy_admits_only_the_metrics_port() {
    let objects = kustomize_deploy();
    let deployment = find(&objects, "Deployment");
    let policy = find(&objects, "NetworkPolicy");
    let service = find(&objects, "Service");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
        "the NetworkPolicy must select exactly the Deployment's pods"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(rules.len(), 1, "one ingress rule: {rules:?}");
    let ports = rules[0]["ports"].as_array().expect("the rule names ports");
    assert_eq!(ports.len(), 1, "only the metrics port: {ports:?}");
    // The port the metrics Service scrapes, by name or number.
    let scraped = &service["spec"]["ports"][0]["targetPort"];
    let container_port = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert_eq!(container_port["name"], *scraped);
    assert!(
        ports[0]["port"] == *scraped || ports[0]["port"] == container_port["containerPort"],
        "the policy admits {:?}, the metrics scrape uses {scraped}",
        ports[0]["port"]
    );
    assert_eq!(ports[0]["protocol"], "TCP");
}

#[test]
fn deploy_applies_to_the_server() {
    let plane = common::control_plane();
    let stdout = apply_alone(
        "kubectl apply -k deploy/",
        plane
            .kubectl()
            .args(["apply", "-k"])
            .arg(repo_root().join("deploy")),
    );
    for object in [
        "poddisruptionbudget.policy/sas-operator",
        "networkpolicy.networking.k8s.io/sas-operator",
        "deployment.apps/sas-operator",
    ] {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
}

/// Behind a corporate mirror a hard-coded package host breaks the scripts: they use what the
/// machine is configured with (apt's sources, npm's registry, `go env GOPROXY`) instead.
#[test]
fn scripts_name_no_package_host() {
    let mut files = vec![repo_root().join("Makefile"), repo_root().join("Dockerfile")];
    for dir in ["hack", ".ci"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).expect("read a script directory") {
            let path = entry.expect("directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    let hosts = [
        "deb.debian.org",
        "debian.org/",
        "registry.npmjs.org",
        "npmjs",
        "proxy.golang.org",
        "golang.org/dl",
        "pypi.org",
        "pythonhosted",
        "crates.io",
        "github.com",
        "docker.io",
        "registry.k8s.io/",
    ];
    // Identifiers that Entra ID and Azure Storage put into tokens (audience and issuer claims):
    // the emulator writes them as values; nothing is ever fetched from them.
    let protocol_identifiers = [
        "api://AzureADTokenExchange",
        "https://storage.azure.com",
        "https://sts.windows.net/",
        // Go module paths: names the module proxy resolves (hack/build-promtool.sh), not hosts
        // a script downloads from.
        "github.com/prometheus/prometheus",
        "github.com/prometheus/common",
    ];
    let mut found = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            let line_without_identifiers = protocol_identifiers
                .iter()
                .fold(line.to_string(), |rest, id| rest.replace(id, ""));
            let line = line_without_identifiers.as_str();
            let named = hosts.iter().any(|host| line.contains(host));
            // A literal URL's host: `://` then a letter or digit (not `$var`, not a pattern).
            let url = line.split("://").skip(1).any(|rest| {
                rest.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && !rest.starts_with("127.0.0.1")
                    && !rest.starts_with("localhost")
            });
            if named || url {
                found.push(format!("{}:{}: {line}", path.display(), number + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "package hosts named:\n{}",
        found.join("\n")
    );
}
