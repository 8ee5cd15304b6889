//! The operator as pods on a real node: `deploy/` applied with only the image overridden
//! (the image built by hack/image.sh, without Docker), two replicas under the real
//! ServiceAccount token, probes, leader election and failover, and a consumer pod that uses
//! the rotating token from its mounted Secret. Needs root on Linux (see tests/common/node.rs).

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use operator::{
    Storage, admin_token, create_grant, create_secret, grant, key_secret, wait_for, wait_ready,
};

const NAMESPACE: &str = "sas-operator";
const SELECTOR: &str = "app.kubernetes.io/name=sas-operator,app.kubernetes.io/component=controller";

/// Tests that delete or inspect the operator's pods take turns.
static POD_CHURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds the operator image (hack/image.sh), imports it into the node, and applies
/// `deploy/` through an overlay that changes the image, as the README's install does with
/// `kustomize edit set image`, and allows the test's Azurite endpoints. Once per test binary;
/// waits for 2/2 replicas.
fn deployed() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let node = common::node();
        let root = common::process::repo_root();
        let image = run(
            "hack/image.sh",
            Command::new(root.join("hack/image.sh")).current_dir(root),
        )
        .trim()
        .to_string();
        node.import_image(&root.join("target/image/sas-operator.tar"));
        let (name, tag) = image.rsplit_once(':').expect("image reference has a tag");
        let overlay = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-deploy-overlay");
        std::fs::create_dir_all(&overlay).expect("create the overlay directory");
        // Besides the image, the operator may use this binary's Azurite endpoints (the
        // grants name them), as every operator the tests start.
        let allow = format!(
            "- {{name: {}, value: \"{}\"}}",
            operator::ALLOW_STORAGE_ENDPOINTS_ENV,
            operator::storage_endpoints_to_allow()
        );
        let patch = [
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata: {name: sas-operator, namespace: sas-operator}",
            "spec:",
            "  template:",
            "    spec:",
            "      containers:",
            "        - name: sas-operator",
            "          env:",
            &format!("            {allow}"),
        ]
        .join("\n      ");
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n  - {}\nimages:\n  - name: sas-operator\n    newName: {name}\n    newTag: \"{tag}\"\n\
                 patches:\n  - patch: |-\n      {patch}\n",
                relative_path(&overlay, &root.join("deploy")).display()
            ),
        )
        .expect("write the overlay");
        let plane = common::control_plane();
        run(
            "kubectl apply -k <deploy/ with the image override>",
            plane.kubectl().args(["apply", "-k"]).arg(&overlay),
        );
        run(
            "kubectl rollout status deployment/sas-operator",
            plane.kubectl().args([
                "rollout",
                "status",
                "-n",
                NAMESPACE,
                "deployment/sas-operator",
                "--timeout=120s",
            ]),
        );
        image
    })
}

/// `to` relative to directory `from` (kustomize refuses absolute resource paths).
fn relative_path(from: &std::path::Path, to: &std::path::Path) -> PathBuf {
    let from = from.canonicalize().expect("canonical overlay path");
    let to = to.canonicalize().expect("canonical deploy/ path");
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in from.components().skip(common) {
        relative.push("..");
    }
    relative.extend(to.components().skip(common));
    relative
}

async fn operator_pods(client: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("list the operator's pods")
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

async fn lease_holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get_opt("sas-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn two_ready_pods(client: &kube::Client) -> Vec<Pod> {
    wait_for(
        "two Ready operator pods",
        Duration::from_secs(120),
        || async {
            let pods = operator_pods(client).await;
            (pods.len() == 2 && pods.iter().all(is_ready)).then_some(pods)
        },
    )
    .await
}

#[tokio::test]
async fn deploy_runs_two_ready_replicas_on_the_node_under_its_service_account() {
    let image = deployed();
    let _turn = POD_CHURN.lock().await;
    let plane = common::control_plane();
    let client = plane.client().await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get("sas-operator")
        .await
        .expect("the Deployment from deploy/");
    let status = deployment.status.expect("Deployment status");
    assert_eq!(status.ready_replicas, Some(2), "{status:?}");
    let pods = two_ready_pods(&client).await;
    for pod in &pods {
        let spec = pod.spec.as_ref().expect("pod spec");
        assert_eq!(
            spec.node_name.as_deref(),
            Some(common::node().name.as_str())
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("sas-operator"));
        assert_eq!(spec.containers[0].image.as_deref(), Some(image));
        let container = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        // The kubelet's liveness probe has not restarted it; readiness made the pod Ready.
        assert_eq!(container.restart_count, 0, "{container:?}");
        assert!(container.ready, "{container:?}");
    }
    // The kubelet ran both probes on both pods and none failed (its prober metrics).
    let node_name = common::node().name.clone();
    let pod_names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let probe_counts = wait_for(
        "successful liveness and readiness probes of both pods",
        Duration::from_secs(60),
        || async {
            let metrics = run(
                "kubectl get --raw .../proxy/metrics/probes",
                plane.kubectl().args([
                    "get",
                    "--raw",
                    &format!("/api/v1/nodes/{node_name}/proxy/metrics/probes"),
                ]),
            );
            let count = |pod: &str, probe: &str, result: &str| -> f64 {
                metrics
                    .lines()
                    .filter(|l| {
                        l.starts_with("prober_probe_total{")
                            && l.contains(&format!("pod=\"{pod}\""))
                            && l.contains(&format!("probe_type=\"{probe}\""))
                            && l.contains(&format!("result=\"{result}\""))
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let mut summary = Vec::new();
            for pod in &pod_names {
                for probe in ["Liveness", "Readiness"] {
                    let (ok, failed) =
                        (count(pod, probe, "successful"), count(pod, probe, "failed"));
                    assert_eq!(failed, 0.0, "{probe} probe of {pod} failed:\n{metrics}");
                    if ok < 1.0 {
                        return None;
                    }
                    summary.push(format!("{pod} {probe}: {ok} successful"));
                }
            }
            Some(summary)
        },
    )
    .await;
    eprintln!("{}", probe_counts.join("\n"));

    // The API server saw the pods' own bound ServiceAccount tokens (the token names its pod).
    let pod_names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let audit_log = plane.apiserver_audit_log_path().to_path_buf();
    wait_for(
        "audit events from both pods' ServiceAccount tokens",
        Duration::from_secs(30),
        || {
            let audit_log = audit_log.clone();
            let pod_names = pod_names.clone();
            async move {
                let text = std::fs::read_to_string(&audit_log).ok()?;
                pod_names
                    .iter()
                    .all(|pod| {
                        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|event| {
                            event["user"]["username"]
                                == "system:serviceaccount:sas-operator:sas-operator"
                                && event["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
                                    == pod.as_str()
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn one_replica_leads_and_deleting_its_pod_moves_the_work_to_the_other() {
    deployed();
    let _turn = POD_CHURN.lock().await;
    let client = common::control_plane().client().await;
    let pods = two_ready_pods(&client).await;
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let leader = wait_for(
        "one of the operator pods to hold the Lease",
        Duration::from_secs(60),
        || async {
            lease_holder(&client)
                .await
                .filter(|holder| names.contains(holder))
        },
    )
    .await;
    let standby = names
        .iter()
        .find(|name| **name != leader)
        .expect("two pods")
        .clone();

    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader's pod");
    let started = std::time::Instant::now();
    // The leader releases the Lease on SIGTERM; the standby or the Deployment's replacement
    // pod, whichever retries first, takes it. Never the deleted pod.
    let new_leader = wait_for(
        "another operator pod to take the Lease over",
        Duration::from_secs(30),
        || async {
            let holder = lease_holder(&client).await.filter(|h| *h != leader)?;
            let live = operator_pods(&client).await;
            live.iter()
                .any(|pod| pod.metadata.name.as_deref() == Some(holder.as_str()))
                .then_some(holder)
        },
    )
    .await;
    eprintln!(
        "leader {leader} deleted; {new_leader} ({}) holds the Lease after {:.1} s",
        if new_leader == standby {
            "the standby"
        } else {
            "the replacement pod"
        },
        started.elapsed().as_secs_f64()
    );

    // The new leader does the work: a new grant becomes Ready.
    let ns = common::test_namespace(&client, "failover").await;
    let azurite = common::azurite();
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
            "after-failover",
            json!({"container": {"name": "after-failover"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    let grants = Api::<sas_operator::crd::SasGrant>::namespaced(client.clone(), &ns);
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(grant) = grants.get("after-failover").await
                && operator::ready_of(&grant) == Some(("True".into(), "TokenValid".into()))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if ready.is_err() {
        let logs = run(
            "kubectl logs of the operator",
            common::control_plane().kubectl().args([
                "logs",
                "-n",
                NAMESPACE,
                "-l",
                SELECTOR,
                "--tail=40",
                "--prefix",
            ]),
        );
        panic!(
            "the grant created after the failover is not Ready after 30 s; operator logs:\n{logs}"
        );
    }
    // The Deployment replaces the deleted pod.
    two_ready_pods(&client).await;
}

/// `/proc/<pid>/status` fields of the operator's container process, as the kernel sees it.
fn proc_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/<pid>/status")
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[tokio::test]
async fn operator_containers_run_as_non_root_on_a_read_only_root_without_capabilities() {
    deployed();
    let _turn = POD_CHURN.lock().await;
    let client = common::control_plane().client().await;
    let pods = two_ready_pods(&client).await;
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let container = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        let id = container
            .container_id
            .as_deref()
            .expect("a running container");
        let pid = common::node().container_pid(id);
        let status = proc_status(pid);
        assert_eq!(status["Uid"], "65532\t65532\t65532\t65532", "{name}: uid");
        assert_eq!(status["Gid"], "65532\t65532\t65532\t65532", "{name}: gid");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status[set], "0000000000000000", "{name}: {set}");
        }
        assert_eq!(
            status["NoNewPrivs"], "1",
            "{name}: allowPrivilegeEscalation: false"
        );
        assert_eq!(
            status["Seccomp"], "2",
            "{name}: RuntimeDefault seccomp filter"
        );
        // The root filesystem as the container's mount namespace has it.
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .expect("read /proc/<pid>/mountinfo");
        let root = mountinfo
            .lines()
            .find(|line| line.split_whitespace().nth(4) == Some("/"))
            .expect("a root mount");
        let options = root.split_whitespace().nth(5).unwrap_or("");
        assert!(
            options.split(',').any(|o| o == "ro"),
            "{name}: root filesystem is not read-only: {root}"
        );
        eprintln!(
            "{name}: pid {pid} Uid {} CapEff {} NoNewPrivs {} Seccomp {} root {options}",
            status["Uid"], status["CapEff"], status["NoNewPrivs"], status["Seccomp"]
        );
    }
}

fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn at(value: &Value) -> SystemTime {
    let text = value["at"].as_str().expect("a timestamp");
    let timestamp: jiff::Timestamp = text.parse().expect("RFC 3339");
    SystemTime::from(timestamp)
}

/// Two rotations with validity 3m and renewBefore 2m: the old token stays valid for two
/// minutes after a rotation, longer than the kubelet's refresh (up to its 1m sync period
/// plus its cache TTL), so a consumer that reads the file before each request never fails.
#[tokio::test]
async fn a_consumer_pod_uses_the_rotating_token_from_its_mounted_secret_without_a_failed_request() {
    deployed();
    let client = common::control_plane().client().await;
    let azurite = common::azurite();
    let ns = common::test_namespace(&client, "consumer").await;
    Storage::default()
        .create_container(
            &azurite.blob_endpoint,
            "consumer",
            &admin_token(&azurite.account, &azurite.key),
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
            "consumer",
            json!({"container": {"name": "consumer"}}),
            "rwl",
            json!({"validity": "3m", "renewBefore": "2m"}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "consumer", "True", "TokenValid").await;

    // When each token reached the API server, as seen from here (polled every 100 ms).
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let written = std::sync::Arc::new(Mutex::new(Vec::<(String, SystemTime)>::new()));
    let watcher = {
        let written = written.clone();
        let secrets = secrets.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(Some(secret)) = secrets.get_opt("consumer").await {
                    let hash = token_hash(&operator::data(&secret, "sasToken"));
                    let mut written = written.lock().unwrap();
                    if written.last().map(|(h, _)| h) != Some(&hash) {
                        written.push((hash, SystemTime::now()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let pod: Pod = serde_json::from_value(json!({
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
            "volumes": [{"name": "sas", "secret": {"secretName": "consumer"}}],
        }
    }))
    .expect("a Pod");
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the consumer pod");

    let plane = common::control_plane();
    let logs = || {
        run(
            "kubectl logs consumer",
            plane.kubectl().args(["logs", "-n", &ns, "consumer"]),
        )
    };
    let events = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    // Initial token plus two rotations, each used by at least one round.
    let lines = wait_for(
        "the consumer to use three tokens (two rotations)",
        Duration::from_secs(420),
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let lines = events(&logs());
            let mut used: Vec<&str> = Vec::new();
            for line in &lines {
                if line["event"] == "round"
                    && let Some(token) = line["token"].as_str()
                    && !used.contains(&token)
                {
                    used.push(token);
                }
            }
            (used.len() >= 3).then_some(lines)
        },
    )
    .await;
    watcher.abort();

    let rounds: Vec<&Value> = lines.iter().filter(|l| l["event"] == "round").collect();
    let failed: Vec<&&Value> = rounds.iter().filter(|l| l["ok"] != true).collect();
    let mut tokens: Vec<String> = Vec::new();
    for round in &rounds {
        let token = round["token"].as_str().unwrap().to_string();
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    let written = written.lock().unwrap().clone();
    let mut report = format!(
        "consumer: {} rounds (upload + download each), {} failed, tokens used in order: {tokens:?}\n",
        rounds.len(),
        failed.len()
    );
    for change in lines.iter().filter(|l| l["event"] == "token-changed") {
        let hash = change["token"].as_str().unwrap();
        if let Some((_, written_at)) = written.iter().find(|(h, _)| h == hash)
            && written.first().map(|(h, _)| h.as_str()) != Some(hash)
        {
            let delay = at(change)
                .duration_since(*written_at)
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|e| format!("-{:.1} s", e.duration().as_secs_f64()));
            report.push_str(&format!(
                "token {hash}: Secret written -> file changed in the pod: {delay}\n"
            ));
        }
    }
    eprintln!("{report}");
    std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-consumer-report.txt"),
        format!("{report}\n{}", logs()),
    )
    .ok();
    assert!(failed.is_empty(), "failed requests:\n{failed:#?}\n{report}");
    assert!(tokens.len() >= 3, "{report}");
    // Every token the consumer used is one the operator wrote, in the order it wrote them.
    let written_hashes: Vec<&str> = written.iter().map(|(h, _)| h.as_str()).collect();
    let positions: Vec<usize> = tokens
        .iter()
        .map(|t| {
            written_hashes
                .iter()
                .position(|w| w == t)
                .unwrap_or_else(|| panic!("token {t} was never in the Secret: {report}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{report}");
}
