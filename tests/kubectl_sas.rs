//! `kubectl sas` as a user runs it: through the real kubectl (which finds `kubectl-sas` on
//! PATH) against the real control plane and the real operator.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{Kubeconfig, NamedCluster, NamedContext};
use operator::*;
use sas_operator::crd::{ClusterSasIssuer, SasIssuer};
use serde_json::{Value, json};

/// A valid base64 account key with a recognizable shape, so tests can prove it never leaks.
const KEY: &str = "U0VDUkVULUtFWS1TSE9VTEQtTkVWRVItQVBQRUFSLTAxMjM0NTY3ODk=";

/// A directory holding only `kubectl-sas`, as krew installs it. Not the build directory
/// itself: cargo writes `kubectl-sas.d` next to the binary, and kubectl warns about that
/// non-executable `kubectl-*` file.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kubectl-plugins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the plugin directory");
        let link = dir.join("kubectl-sas");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-sas"), &link)
            .expect("link kubectl-sas into the plugin directory");
        dir
    })
}

/// `kubectl <args>` with the admin kubeconfig and only the plugin directory on PATH.
fn kubectl(args: &[&str]) -> Command {
    let mut command = common::control_plane().kubectl();
    command
        .args(args)
        .env("PATH", plugin_dir())
        .env_remove("AZURE_STORAGE_KEY")
        .env_remove("AZURE_STORAGE_ACCOUNT")
        .env_remove("SAS_OPERATOR_SAS_VERSION")
        .stdin(Stdio::null());
    command
}

/// `kubectl sas <args>`.
fn kubectl_sas(args: &[&str]) -> Output {
    let mut full = vec!["sas"];
    full.extend_from_slice(args);
    kubectl(&full).output().expect("kubectl runs")
}

/// `kubectl sas <args>` with `input` on stdin.
fn kubectl_sas_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut full = vec!["sas"];
    full.extend_from_slice(args);
    let mut child = kubectl(&full)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}; stderr: {}",
        output.status.code(),
        stderr(output)
    );
}

/// Exit code `code`, nothing on stdout, and exactly one `error:` line on stderr.
fn assert_fails(output: &Output, code: i32) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    assert_eq!(err.lines().count(), 1, "one stderr line; got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// A namespace with the Azurite key, an operator watching it, and a Ready container grant
/// `name`. Returns the namespace, the operator (stopped when dropped) and the Secret's token.
async fn ready_grant(prefix: &str, name: &str) -> (kube::Client, String, Operator, String) {
    let (client, ns) = namespace(prefix).await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let operator = Operator::start(&ns);
    let grant = grant(
        name,
        json!({"container": {"name": "photos"}}),
        "rl",
        json!({"target": {"secretName": format!("{name}-sas")}}),
    );
    create_grant(&client, &ns, &grant).await;
    wait_ready(&client, &ns, name, "True", "TokenValid").await;
    let secret = get_secret(&client, &ns, &format!("{name}-sas"))
        .await
        .expect("the target Secret exists once Ready");
    let token = data(&secret, "sasToken");
    (client, ns, operator, token)
}

/// The `sig` of a token, as the token carries it (percent-encoded) and decoded.
fn signature_forms(token: &str) -> [String; 2] {
    let sig = token
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .expect("the token has a sig")
        .to_string();
    let decoded = percent_encoding::percent_decode_str(&sig)
        .decode_utf8()
        .expect("sig is UTF-8")
        .into_owned();
    [sig, decoded]
}

#[test]
fn plugin_list_shows_kubectl_sas_without_warnings() {
    let output = kubectl(&["plugin", "list"]).output().expect("kubectl runs");
    assert_success(&output);
    let listed = stdout(&output);
    let expected = plugin_dir().join("kubectl-sas");
    assert!(
        listed
            .lines()
            .any(|line| Path::new(line.trim()) == expected),
        "kubectl plugin list: {listed}"
    );
    let err = stderr(&output);
    assert!(!err.to_lowercase().contains("warning"), "{err}");
}

#[test]
fn kubectl_runs_the_plugin_as_kubectl_sas() {
    let output = kubectl_sas(&["--help"]);
    assert_success(&output);
    let help = stdout(&output);
    assert!(help.contains("Usage: kubectl sas"), "{help}");
    for subcommand in ["status", "sign", "inspect"] {
        assert!(help.contains(subcommand), "{help}");
    }
}

#[tokio::test]
async fn status_shows_a_ready_grant_with_a_future_expiry() {
    let (_client, ns, _operator, _token) = ready_grant("kubectl-sas-status", "photos").await;

    let table = kubectl_sas(&["status", "-n", &ns]);
    assert_success(&table);
    let text = stdout(&table);
    let row: Vec<&str> = text
        .lines()
        .find(|line| line.starts_with("photos "))
        .unwrap_or_else(|| panic!("no row for the grant: {text}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..5],
        ["photos", "True", "TokenValid", "container", "photos-sas"]
    );
    let expires_in = row[5];
    assert!(
        expires_in.ends_with('h') || expires_in.ends_with('m'),
        "a fresh 8h token expires in hours: {text}"
    );
    assert_eq!(
        row.last(),
        Some(&"storageAccount/devstoreaccount1"),
        "{text}"
    );

    let json = kubectl_sas(&["status", "-n", &ns, "-o", "json"]);
    assert_success(&json);
    let value: Value = serde_json::from_str(&stdout(&json)).expect("status -o json is JSON");
    let item = &value["items"][0];
    assert_eq!(item["name"], "photos");
    assert_eq!(item["ready"], "True");
    let seconds = item["expiresInSeconds"].as_i64().expect("expiresInSeconds");
    assert!(seconds > 3600, "expires in {seconds}s");
    assert!(item["renewsInSeconds"].as_i64().expect("renewsInSeconds") > 0);
    assert!(item["lastRotationTime"].is_string());
}

#[tokio::test]
async fn status_all_namespaces_names_each_grants_namespace() {
    let (_client, ns, _operator, _token) = ready_grant("kubectl-sas-all", "everywhere").await;
    let output = kubectl_sas(&["status", "-A", "everywhere"]);
    assert_success(&output);
    let text = stdout(&output);
    assert!(text.starts_with("NAMESPACE "), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with(&format!("{ns} ")) && line.contains(" everywhere ")),
        "{text}"
    );
}

#[test]
fn sign_prints_the_same_token_as_sas_operator_sign() {
    let key = KEY;
    let args = [
        "sign",
        "blob",
        "--account-name",
        "acct1",
        "--container-name",
        "photos",
        "--name",
        "cat.jpg",
        "--permissions",
        "rw",
        "--start",
        "2030-01-01T00:00:00Z",
        "--expiry",
        "2030-01-02T00:00:00Z",
        "--https-only",
    ];
    for output_format in ["token", "json"] {
        let mut with_format = args.to_vec();
        with_format.extend(["--output", output_format]);
        let ours = kubectl(
            &std::iter::once("sas")
                .chain(with_format.clone())
                .collect::<Vec<_>>(),
        )
        .env("AZURE_STORAGE_KEY", key)
        .output()
        .expect("kubectl runs");
        let theirs = Command::new(env!("CARGO_BIN_EXE_sas-operator"))
            .args(&with_format)
            .env("AZURE_STORAGE_KEY", key)
            .env_remove("SAS_OPERATOR_SAS_VERSION")
            .output()
            .expect("sas-operator runs");
        assert_success(&ours);
        assert_success(&theirs);
        assert!(stdout(&ours).contains("sig="), "{}", stdout(&ours));
        assert_eq!(stdout(&ours), stdout(&theirs), "--output {output_format}");
    }
}

#[test]
fn sign_fails_as_sas_operator_sign_does() {
    let args = [
        "sign",
        "blob",
        "--account-name",
        "acct1",
        "--container-name",
        "c",
    ];
    let ours = kubectl_sas(&args);
    let theirs = Command::new(env!("CARGO_BIN_EXE_sas-operator"))
        .args(args)
        .env_remove("AZURE_STORAGE_KEY")
        .output()
        .expect("sas-operator runs");
    let line = assert_fails(&ours, 2);
    assert_eq!(line, stderr(&theirs));
    assert!(line.contains("--name"), "{line}");
}

/// A kubeconfig with the admin credentials and three contexts: `elsewhere` (current, a
/// namespace without grants), `grants-here` (`namespace`) and `unreachable` (no server there).
fn kubeconfig_with_contexts(namespace: &str, elsewhere: &str) -> PathBuf {
    let admin = Kubeconfig::read_from(&common::control_plane().kubeconfig_path)
        .expect("read the admin kubeconfig");
    let mut config = admin.clone();
    let context = admin.contexts[0].context.clone().expect("a context");
    let named = |name: &str, cluster: &str, ns: &str| {
        let mut context = context.clone();
        context.cluster = cluster.to_string();
        context.namespace = Some(ns.to_string());
        NamedContext {
            name: name.to_string(),
            context: Some(context),
            ..NamedContext::default()
        }
    };
    let mut unreachable: NamedCluster = admin.clusters[0].clone();
    unreachable.name = "unreachable".into();
    if let Some(cluster) = unreachable.cluster.as_mut() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        cluster.server = Some("https://127.0.0.1:1".into());
    }
    let real_cluster = admin.clusters[0].name.clone();
    config.clusters.push(unreachable);
    config.contexts = vec![
        named("elsewhere", &real_cluster, elsewhere),
        named("grants-here", &real_cluster, namespace),
        named("unreachable", "unreachable", namespace),
    ];
    config.current_context = Some("elsewhere".into());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kubectl-sas-contexts-{namespace}.kubeconfig"));
    // JSON is YAML: kubectl and kube read it alike.
    std::fs::write(&path, serde_json::to_string(&config).expect("serialize")).expect("write");
    path
}

#[tokio::test]
async fn context_selects_among_the_kubeconfigs_contexts() {
    let (client, ns) = namespace("kubectl-sas-context").await;
    let empty = common::test_namespace(&client, "kubectl-sas-empty").await;
    create_grant(
        &client,
        &ns,
        &grant("here", json!({"queue": {"name": "jobs"}}), "r", json!({})),
    )
    .await;
    let kubeconfig = kubeconfig_with_contexts(&ns, &empty);
    let kubeconfig = kubeconfig.to_str().expect("UTF-8 path");

    let current = kubectl_sas(&["status", "--kubeconfig", kubeconfig]);
    assert_success(&current);
    assert!(stdout(&current).is_empty(), "{}", stdout(&current));
    assert_eq!(
        stderr(&current),
        format!("No grants found in namespace {empty}.\n")
    );

    let selected = kubectl_sas(&[
        "status",
        "--kubeconfig",
        kubeconfig,
        "--context",
        "grants-here",
    ]);
    assert_success(&selected);
    let text = stdout(&selected);
    assert!(
        text.lines()
            .any(|line| line.starts_with("here ") && line.contains(" queue ")),
        "{text}"
    );

    let unreachable = kubectl_sas(&[
        "status",
        "--kubeconfig",
        kubeconfig,
        "--context",
        "unreachable",
    ]);
    let line = assert_fails(&unreachable, 1);
    assert!(line.contains("cannot list SasGrants"), "{line}");

    let unknown = kubectl_sas(&["status", "--kubeconfig", kubeconfig, "--context", "nope"]);
    let line = assert_fails(&unknown, 2);
    assert!(line.contains("nope"), "{line}");
}

/// Installs the SasIssuer and ClusterSasIssuer CRDs as committed, and waits until served.
async fn install_issuer_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for (file, name) in [
        ("sasissuer.yaml", "sasissuers.sas-operator.io"),
        ("clustersasissuer.yaml", "clustersasissuers.sas-operator.io"),
    ] {
        let path = common::process::repo_root().join("crds").join(file);
        let yaml = std::fs::read_to_string(&path).expect("read the CRD");
        let crd: Value = serde_saphyr::from_str(&yaml).expect("the CRD parses");
        crds.patch(
            name,
            &PatchParams::apply("sas-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply the CRD");
    }
    let issuers = Api::<SasIssuer>::all(client.clone());
    let cluster_issuers = Api::<ClusterSasIssuer>::all(client.clone());
    wait_for(
        "the issuer CRDs to be served",
        Duration::from_secs(30),
        || async {
            let namespaced = issuers.list_metadata(&Default::default()).await.ok()?;
            let cluster = cluster_issuers
                .list_metadata(&Default::default())
                .await
                .ok()?;
            Some((namespaced, cluster))
        },
    )
    .await;
}

/// Creates SasIssuer `team-key` (account key of `acct1`) in `ns`.
async fn create_account_key_issuer(client: &kube::Client, ns: &str) {
    let issuer: SasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team-key"},
        "spec": {
            "storageAccount": {"name": "acct1"},
            "accountKey": {"secretRef": {"name": "acct1-key"}},
        },
    }))
    .expect("a valid SasIssuer");
    Api::<SasIssuer>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &issuer)
        .await
        .expect("create the SasIssuer");
}

#[tokio::test]
async fn status_issuers_lists_the_namespaces_issuers_with_their_credential() {
    let (client, ns) = namespace("kubectl-sas-issuers").await;
    install_issuer_crds(&client).await;
    create_account_key_issuer(&client, &ns).await;

    let output = kubectl_sas(&["status", "issuers", "-n", &ns, "-o", "json"]);
    assert_success(&output);
    let value: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let ours: Vec<&Value> = value["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|item| item["namespace"] == ns.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{value}");
    assert_eq!(ours[0]["kind"], "SasIssuer");
    assert_eq!(ours[0]["name"], "team-key");
    assert_eq!(ours[0]["account"], "acct1");
    assert_eq!(ours[0]["credential"], "accountKey");
    assert_eq!(ours[0]["keyExpiresAt"], Value::Null);
}

#[tokio::test]
async fn status_issuers_without_cluster_read_access_warns_and_shows_the_namespaces_issuers() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let (client, ns) = namespace("kubectl-sas-viewer").await;
    install_issuer_crds(&client).await;
    create_account_key_issuer(&client, &ns).await;
    let apply = PatchParams::apply("sas-operator-tests").force();
    let account: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "viewer", "namespace": ns},
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch("viewer", &apply, &Patch::Apply(&account))
        .await
        .expect("apply the ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "issuer-viewer", "namespace": ns},
        "rules": [{"apiGroups": ["sas-operator.io"], "resources": ["sasissuers"], "verbs": ["list"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &ns)
        .patch("issuer-viewer", &apply, &Patch::Apply(&role))
        .await
        .expect("apply the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "issuer-viewer", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "issuer-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .patch("issuer-viewer", &apply, &Patch::Apply(&binding))
        .await
        .expect("apply the RoleBinding");
    let kubeconfig = common::control_plane()
        .service_account_kubeconfig(&ns, "viewer")
        .await;

    let output = kubectl_sas(&[
        "status",
        "issuers",
        "--kubeconfig",
        kubeconfig.to_str().expect("UTF-8 path"),
    ]);
    assert_success(&output);
    let warning = stderr(&output);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("warning: not allowed to list ClusterSasIssuers"),
        "{warning}"
    );
    let text = stdout(&output);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(
        rows[0].starts_with(&format!("SasIssuer   {ns}   team-key ")),
        "{text}"
    );
}

#[tokio::test]
async fn inspect_decodes_a_grants_token_and_never_prints_its_signature() {
    let (_client, ns, _operator, token) = ready_grant("kubectl-sas-inspect", "shots").await;
    let expiry = token
        .split('&')
        .find_map(|pair| pair.strip_prefix("se="))
        .map(|se| se.replace("%3A", ":"))
        .expect("the token has se");

    let from_secret = kubectl_sas(&["inspect", "secret", "shots-sas", "-n", &ns]);
    let from_grant = kubectl_sas(&["inspect", "grant", "shots", "-n", &ns]);
    let from_url = kubectl_sas(&[
        "inspect",
        "secret",
        "shots-sas",
        "--key",
        "sasUrl",
        "-n",
        &ns,
    ]);
    let from_stdin = kubectl_sas_with_stdin(&["inspect"], &token);
    let as_json = kubectl_sas_with_stdin(&["inspect", "-", "-o", "json"], &token);
    for output in [&from_secret, &from_grant, &from_url, &from_stdin, &as_json] {
        assert_success(output);
        let text = stdout(output);
        for sig in signature_forms(&token) {
            assert!(!text.contains(&sig), "sig printed in: {text}");
            assert!(!stderr(output).contains(&sig), "sig on stderr");
        }
        assert!(text.contains(&expiry), "{text}");
    }
    let table = stdout(&from_secret);
    assert!(
        table.starts_with("A container SAS, signed with an account key.\n"),
        "{table}"
    );
    assert!(table.contains("resource: container"), "{table}");
    assert_eq!(stdout(&from_grant), table);
    let value: Value = serde_json::from_str(&stdout(&as_json)).expect("JSON");
    assert_eq!(value["fields"]["sp"], "rl");
    assert!(value["fields"].get("sig").is_none(), "{value}");
    assert!(value["expiresInSeconds"].as_i64().expect("seconds") > 0);
}

#[test]
fn bad_input_exits_2_with_one_line_and_no_key() {
    let key = KEY;
    let cases: Vec<(Output, &str)> = vec![
        (kubectl_sas(&["status", "--bogus"]), "'--bogus'"),
        (
            kubectl_sas(&["status", "-A", "-n", "x"]),
            "cannot be used with",
        ),
        (
            kubectl_sas(&["status", "-o", "yaml"]),
            "expected one of: wide, json",
        ),
        (kubectl_sas(&["inspect", "secret"]), "missing NAME"),
        (
            kubectl_sas(&["rotate", "g1"]),
            "expected status, sign or inspect",
        ),
        (kubectl_sas_with_stdin(&["inspect"], key), "not a SAS token"),
        (kubectl_sas_with_stdin(&["inspect"], ""), "empty"),
        (
            kubectl_sas(&["status", "--kubeconfig", "/nonexistent/kubeconfig"]),
            "cannot load the kubeconfig",
        ),
    ];
    for (output, needle) in &cases {
        let line = assert_fails(output, 2);
        assert!(line.contains(needle), "expected {needle:?} in {line}");
        assert!(!line.contains(key), "the key was echoed: {line}");
    }
}

fn krew_manifest(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read the krew manifest");
    serde_saphyr::from_str(&text).expect("the krew manifest is YAML")
}

#[test]
fn the_krew_manifest_installs_kubectl_sas_on_linux_amd64() {
    let manifest = krew_manifest(&common::process::repo_root().join("deploy/krew/sas.yaml"));
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "sas");
    let spec = &manifest["spec"];
    assert_eq!(spec["version"], format!("v{}", env!("CARGO_PKG_VERSION")));
    let platforms = spec["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), 1);
    let platform = &platforms[0];
    assert_eq!(
        platform["selector"]["matchLabels"],
        json!({"os": "linux", "arch": "amd64"})
    );
    assert_eq!(platform["bin"], "kubectl-sas");
    let uri = platform["uri"].as_str().expect("uri");
    assert!(
        uri.ends_with(&format!(
            "/releases/download/v{}/kubectl-sas-linux-amd64.tar.gz",
            env!("CARGO_PKG_VERSION")
        )),
        "{uri}"
    );
}

#[test]
fn krew_release_fills_in_the_archives_sha256_and_owner() {
    use sha2::Digest as _;
    let out_dir = tempfile::tempdir().expect("temp dir");
    // A stand-in that answers --version like the plugin: the debug build is 200 MB to gzip.
    let binary = out_dir.path().join("stand-in");
    std::fs::write(&binary, "#!/bin/sh\necho kubectl-sas 0.1.0\n").expect("write");
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let output = Command::new(common::process::repo_root().join("hack/krew-release.sh"))
        .arg("example-org")
        .arg(&binary)
        .env("KREW_OUT_DIR", out_dir.path())
        .output()
        .expect("run hack/krew-release.sh");
    assert_success(&output);

    let archive = out_dir.path().join("kubectl-sas-linux-amd64.tar.gz");
    let digest = sha2::Sha256::digest(std::fs::read(&archive).expect("read the archive"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let manifest = krew_manifest(&out_dir.path().join("sas.yaml"));
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["sha256"], hex.as_str());
    assert!(
        platform["uri"]
            .as_str()
            .expect("uri")
            .starts_with("https://github.com/example-org/sas-operator/releases/download/"),
        "{platform}"
    );
    assert_eq!(
        manifest["spec"]["homepage"],
        "https://github.com/example-org/sas-operator"
    );

    let listing = Command::new("tar")
        .arg("-tvzf")
        .arg(&archive)
        .output()
        .expect("tar lists the archive");
    let listing = stdout(&listing);
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(entries.len(), 1, "{listing}");
    assert!(entries[0].starts_with("-rwxr-xr-x 0/0 "), "{listing}");
    assert!(entries[0].ends_with(" kubectl-sas"), "{listing}");
}
