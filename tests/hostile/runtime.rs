//! Hostile grants: runtime. See tests/hostile.rs.
//!
//! The controller's runtime under stress: a deposed leader cannot write, SIGTERM ends the
//! process within its bound even with a reconcile stuck on the API server, one namespace's
//! metrics cleanup leaves the other watched namespaces' series alone, a forced apply never takes
//! over a Secret recreated since it was read, and the namespaced install confines the operator.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::events::Reporter,
};
use sas_operator::cluster::{Cluster, KubeCluster};
use sas_operator::leader::LeadershipClaim;
use serde_json::json;

use crate::common::audit::{self, AuditEvent};
use crate::{common, operator::*};

/// Logged for every token written.
const SIGNED: &str = "signed a new token";
const DEPLOY_USER: &str = "system:serviceaccount:sas-operator:sas-operator";

// ----- the audit log -----

/// Times at which `user` sent a write (of anything but the Lease) into namespace `ns`.
fn writes_by(events: &[AuditEvent], user: &str, ns: &str) -> Vec<jiff::Timestamp> {
    let mut times: Vec<jiff::Timestamp> = events
        .iter()
        .filter(|e| e.username() == user && e.is_write())
        .filter(|e| e.namespace() == Some(ns) && e.resource() != Some("leases"))
        .map(|e| e.received)
        .collect();
    times.sort();
    times
}

// ----- a second operator identity under the same RBAC -----

/// A second ServiceAccount in the operator's namespace, bound to the same ClusterRole and Lease
/// Role as deploy/'s, so that the audit log tells two replicas apart.
async fn second_operator_account(client: &Client, name: &str) -> PathBuf {
    install_deploy_directory();
    let apply = PatchParams::apply("sas-operator-tests").force();
    let account: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": DEPLOY_NAMESPACE},
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), DEPLOY_NAMESPACE)
        .patch(name, &apply, &Patch::Apply(&account))
        .await
        .expect("apply the second ServiceAccount");
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": DEPLOY_NAMESPACE}]);
    let cluster_binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sas-operator"},
        "subjects": subject,
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(name, &apply, &Patch::Apply(&cluster_binding))
        .await
        .expect("bind the ClusterRole");
    let lease_binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": DEPLOY_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sas-operator-leader-election"},
        "subjects": subject,
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), DEPLOY_NAMESPACE)
        .patch(name, &apply, &Patch::Apply(&lease_binding))
        .await
        .expect("bind the Lease Role");
    common::control_plane()
        .service_account_kubeconfig(DEPLOY_NAMESPACE, name)
        .await
}

/// A replica as the Deployment runs it (the Lease `sas-operator` in the operator's namespace),
/// watching `ns`, with a fast lease: 6 s duration, 4 s renew deadline, 1 s retry. One reconcile
/// at a time, so that a wave of re-signing keeps it busy for a while.
fn replica(ns: &str, kubeconfig: &std::path::Path, identity: &str) -> Operator {
    Operator::spawn(
        &format!("{ns}-{identity}"),
        kubeconfig,
        &[
            "--namespace",
            ns,
            "--leader-election",
            "true",
            "--lease-namespace",
            DEPLOY_NAMESPACE,
            "--lease-name",
            "sas-operator",
            "--lease-duration",
            "6s",
            "--lease-renew-deadline",
            "4s",
            "--lease-retry-period",
            "1s",
            "--concurrency",
            "1",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        &[("POD_NAME", identity)],
    )
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), DEPLOY_NAMESPACE)
        .get_opt("sas-operator")
        .await
        .expect("GET Lease")?
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

fn signal(operator: &Operator, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(operator.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {}", operator.pid());
}

/// A valid 64-byte account key other than Azurite's (tokens signed with it fail at Azurite,
/// which does not matter here: it changes every grant's inputs, so all re-sign at once).
fn other_account_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([7u8; 64])
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_writes_nothing_after_the_new_leader_has_written() {
    let (client, ns) = namespace("paused-leader").await;
    let standby_user = "sas-operator-standby";
    let standby_kubeconfig = second_operator_account(&client, standby_user).await;
    let leader_kubeconfig = common::control_plane()
        .service_account_kubeconfig(DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT)
        .await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    // The leader first, alone, so that it is the one paused.
    let mut leader = replica(&ns, &leader_kubeconfig, "paused-leader");
    wait_for(
        "the first replica to lead",
        Duration::from_secs(30),
        || async {
            (lease_holder(&client).await.as_deref() == Some("paused-leader")).then_some(())
        },
    )
    .await;
    let standby = replica(&ns, &standby_kubeconfig, "standby");
    let names: Vec<String> = (0..30).map(|i| format!("g{i}")).collect();
    for name in &names {
        let spec = json!({"validity": "2h", "renewBefore": "1h"});
        create_grant(
            &client,
            &ns,
            &grant(name, json!({"container": {"name": "data"}}), "r", spec),
        )
        .await;
    }
    for name in &names {
        wait_ready(&client, &ns, name, "True", "TokenValid").await;
    }

    // A key change re-signs every grant; pause the leader while those writes are in flight.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "azurite-keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"key1": other_account_key()}})),
        )
        .await
        .expect("change the key");
    let wave_started = leader.logs().matches(SIGNED).count();
    wait_for(
        "the re-signing wave to start",
        Duration::from_secs(10),
        || async { (leader.logs().matches(SIGNED).count() > wave_started).then_some(()) },
    )
    .await;
    signal(&leader, "STOP");
    let paused_at = Instant::now();
    wait_for("the standby to lead", Duration::from_secs(30), || async {
        (lease_holder(&client).await.as_deref() == Some("standby")).then_some(())
    })
    .await;
    let standby_identity = format!("system:serviceaccount:{DEPLOY_NAMESPACE}:{standby_user}");
    let first_standby_write = wait_for(
        "the new leader's first write",
        Duration::from_secs(30),
        || async {
            writes_by(&audit::events(), &standby_identity, &ns)
                .first()
                .copied()
        },
    )
    .await;
    let paused_for = paused_at.elapsed();
    signal(&leader, "CONT");

    // The old leader learns it lost the Lease and exits; whatever it had in flight is gone.
    let status = leader.wait_for_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "a deposed leader exits non-zero");
    for name in &names {
        wait_ready(&client, &ns, name, "True", "TokenValid").await;
    }
    let late: Vec<jiff::Timestamp> = writes_by(&audit::events(), DEPLOY_USER, &ns)
        .into_iter()
        .filter(|at| *at >= first_standby_write)
        .collect();
    assert!(
        late.is_empty(),
        "the paused leader (paused {paused_for:?}) wrote after the new leader's first write at \
         {first_standby_write}: {late:?}"
    );
    // Proof that the pause cut the leader's wave short: work it had queued or in flight was
    // left to the new leader. (Whether a reconcile was mid-request at the very instant of the
    // pause is a race; when one was, its deadline or the lapsed claim stopped it on resuming.)
    assert!(
        standby.logs().contains(SIGNED),
        "the leader finished the whole wave before the pause, so this run proved nothing"
    );
    for operator in [&leader, &standby] {
        operator.assert_logs_free_of(&[&azurite.key, &other_account_key()]);
    }
}

// ----- a TCP proxy in front of the API server that can freeze -----

/// Forwards loopback TCP to the API server; `freeze` stops forwarding on every connection
/// (the connections stay open), like a hung API server.
struct FreezingProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    async fn start() -> FreezingProxy {
        let upstream = common::control_plane()
            .server
            .trim_start_matches("https://")
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, flag.clone()));
                tokio::spawn(pump(server_read, client_write, flag.clone()));
            }
        });
        FreezingProxy { port, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// `kubeconfig` with its server pointed at this proxy (same TLS name: 127.0.0.1).
    fn kubeconfig_through(&self, kubeconfig: &std::path::Path) -> PathBuf {
        let text = std::fs::read_to_string(kubeconfig).unwrap();
        let proxied = text.replace(
            &common::control_plane().server,
            &format!("https://127.0.0.1:{}", self.port),
        );
        let path = kubeconfig.with_extension(format!("proxy-{}.kubeconfig", self.port));
        std::fs::write(&path, proxied).unwrap();
        path
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn sigterm_ends_the_operator_within_the_shutdown_timeout_while_the_api_server_hangs() {
    let (client, ns) = namespace("frozen-api").await;
    install_deploy_directory();
    let kubeconfig = common::control_plane()
        .service_account_kubeconfig(DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT)
        .await;
    let proxy = FreezingProxy::start().await;
    let mut operator = Operator::spawn(
        &format!("{ns}-frozen"),
        &proxy.kubeconfig_through(&kubeconfig),
        &[
            "--namespace",
            &ns,
            "--leader-election",
            "false",
            "--metrics-address",
            "127.0.0.1:0",
            // A reconcile may hang for a minute; shutdown may not wait for it.
            "--reconcile-timeout",
            "60s",
            "--shutdown-timeout",
            "2s",
        ],
        &[],
    );
    // No key Secret: the grant fails and is retried within seconds, through the proxy.
    create_grant(
        &client,
        &ns,
        &grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    wait_ready(&client, &ns, "g", "False", "KeySecretNotFound").await;
    proxy.freeze();
    let frozen_at_log = operator.logs().len();
    wait_for(
        "a reconcile to start against the frozen API server",
        Duration::from_secs(30),
        || async {
            operator.logs()[frozen_at_log..]
                .contains("reconciling")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    operator.terminate();
    let status = operator.wait_for_exit(Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?} with --shutdown-timeout 2s"
    );
    assert!(status.success(), "a SIGTERM exit is clean: {status:?}");
    assert!(
        operator
            .logs()
            .contains("did not finish within the shutdown timeout"),
        "no reconcile was abandoned, so the test proved nothing"
    );
}

// ----- metrics of several watched namespaces -----

async fn metrics_text(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_metrics_cleanup_keeps_the_series_of_every_watched_namespace() {
    let (client, first) = namespace("metrics-a").await;
    let second = common::test_namespace(&client, "metrics-b").await;
    let port = free_local_port();
    let address = format!("127.0.0.1:{port}");
    let _operator = Operator::under_deploy_rbac(
        &format!("{first}-metrics"),
        &[&first, &second],
        &["--metrics-address", &address],
    )
    .await;
    let azurite = common::azurite();
    for ns in [&first, &second] {
        create_secret(
            &client,
            ns,
            &key_secret("azurite-keys", &[("key1", &azurite.key)]),
        )
        .await;
        create_grant(
            &client,
            ns,
            &grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
        )
        .await;
        wait_ready(&client, ns, "g", "True", "TokenValid").await;
    }
    let series = |ns: &str| format!(r#"sas_operator_grant_ready{{namespace="{ns}",name="g"}} 1"#);
    // The cleanup runs every 30 s; each scope's run used to delete the other scope's series.
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let text = metrics_text(port).await;
        for ns in [&first, &second] {
            assert!(
                text.lines().any(|line| line == series(ns)),
                "the series of {ns} disappeared:\n{text}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ----- the forced apply's precondition, on the real API server -----

fn kube_cluster(client: &Client, claim: LeadershipClaim) -> KubeCluster {
    let reporter = Reporter {
        controller: "sas-operator-tests".into(),
        instance: None,
    };
    KubeCluster::new(client.clone(), reporter, claim)
}

fn plain_secret(ns: &str, name: &str, entries: &[(&str, &str)]) -> Secret {
    let mut secret = key_secret(name, entries);
    secret.metadata.namespace = Some(ns.into());
    secret
}

#[tokio::test]
async fn a_secret_recreated_since_it_was_read_is_never_taken_over() {
    let (client, ns) = namespace("recreated").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let cluster = kube_cluster(&client, LeadershipClaim::unconditional());
    cluster
        .create_secret(&plain_secret(&ns, "app", &[("sasToken", "old")]))
        .await
        .unwrap();
    let read = cluster.target_secret(&ns, "app").await.unwrap().unwrap();

    // Between the read and the write, someone replaces it with a Secret of their own.
    secrets.delete("app", &Default::default()).await.unwrap();
    create_secret(&client, &ns, &key_secret("app", &[("password", "theirs")])).await;
    let foreign = secrets.get("app").await.unwrap();

    let mut desired = plain_secret(&ns, "app", &[("sasToken", "new")]);
    desired.metadata.resource_version = read.metadata.resource_version.clone();
    let err = cluster.apply_secret(&desired).await.unwrap_err();
    assert!(
        matches!(&err, sas_operator::error::Error::Kube(kube::Error::Api(s)) if s.code == 409),
        "expected a 409 Conflict, got {err}"
    );
    let after = secrets.get("app").await.unwrap();
    assert_eq!(
        after.data, foreign.data,
        "the foreign Secret was overwritten"
    );
    assert_eq!(
        after.metadata.resource_version,
        foreign.metadata.resource_version
    );

    // And a write without the version that was read is refused before any request.
    let mut unversioned = desired.clone();
    unversioned.metadata.resource_version = None;
    let refused = cluster.apply_secret(&unversioned).await.unwrap_err();
    assert_eq!(refused.category(), "UnreadSecretWrite");
    assert_eq!(secrets.get("app").await.unwrap().data, foreign.data);
}

#[tokio::test]
async fn a_lapsed_claim_stops_every_write_before_it_reaches_the_api_server() {
    let (client, ns) = namespace("lapsed-claim").await;
    let claim = LeadershipClaim::held_until(Instant::now() + Duration::from_secs(60));
    let cluster = kube_cluster(&client, claim.clone());
    claim.revoke();
    let err = cluster
        .create_secret(&plain_secret(&ns, "app", &[("sasToken", "x")]))
        .await
        .unwrap_err();
    assert_eq!(err.category(), "LeadershipLost");
    assert!(!err.is_transient(), "a lost lease is never retried");
    assert!(get_secret(&client, &ns, "app").await.is_none());
}

// ----- the namespaced install -----

/// `kubectl kustomize deploy/overlays/namespaced`, with the operator's namespace renamed to
/// `operator_ns` and the watched namespace `apps` to `watched`, so that it cannot borrow the
/// cluster-wide binding other tests install for deploy/'s ServiceAccount.
pub(crate) fn rendered_namespaced_install(operator_ns: &str, watched: &str) -> String {
    let output = common::control_plane()
        .kubectl()
        .arg("kustomize")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/overlays/namespaced"
        ))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/overlays/namespaced failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8(output.stdout).unwrap();
    for kind in ["ClusterRole\n", "ClusterRoleBinding\n"] {
        assert!(
            !yaml.contains(&format!("kind: {kind}")),
            "the namespaced install must not contain a {kind}"
        );
    }
    yaml.lines()
        .map(|line| match line.trim() {
            "namespace: sas-operator" => line.replace("sas-operator", operator_ns),
            "namespace: apps" | "value: apps" => line.replace("apps", watched),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_namespaced_install_serves_its_namespace_and_cannot_read_secrets_elsewhere() {
    let (client, watched) = namespace("watched").await;
    let operator_ns = common::test_namespace(&client, "operator").await;
    let elsewhere = common::test_namespace(&client, "elsewhere").await;
    let yaml = rendered_namespaced_install(&operator_ns, &watched);
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
        apply
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
    }
    let applied = apply.wait_with_output().unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply of the namespaced install failed:\n{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let user = format!("system:serviceaccount:{operator_ns}:sas-operator");
    let kubeconfig = common::control_plane()
        .service_account_kubeconfig(&operator_ns, "sas-operator")
        .await;
    let operator = Operator::spawn(
        &format!("{watched}-namespaced"),
        &kubeconfig,
        &[
            "--namespace",
            &watched,
            "--leader-election",
            "true",
            "--lease-namespace",
            &operator_ns,
            "--metrics-address",
            "127.0.0.1:0",
        ],
        &[("POD_NAME", "namespaced")],
    );
    let azurite = common::azurite();
    create_secret(
        &client,
        &watched,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    create_grant(
        &client,
        &watched,
        &grant("g", json!({"container": {"name": "data"}}), "r", json!({})),
    )
    .await;
    wait_ready(&client, &watched, "g", "True", "TokenValid").await;
    let forbidden: Vec<String> = audit::events()
        .into_iter()
        .filter(|e| e.username() == user)
        .filter(|e| e.code() == Some(403))
        .map(|e| e.verb)
        .collect();
    assert!(
        forbidden.is_empty(),
        "the namespaced install lacks permissions the operator used: {forbidden:?}"
    );

    // The same identity cannot read Secrets in any other namespace.
    create_secret(
        &client,
        &elsewhere,
        &key_secret("private", &[("password", "theirs")]),
    )
    .await;
    let as_operator = common::control_plane()
        .service_account_client(&operator_ns, "sas-operator")
        .await;
    let denied = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    assert!(denied(
        Api::<Secret>::namespaced(as_operator.clone(), &elsewhere)
            .get("private")
            .await
            .map(|_| ())
    ));
    assert!(denied(
        Api::<Secret>::all(as_operator.clone())
            .list(&Default::default())
            .await
            .map(|_| ())
    ));
    operator.assert_logs_free_of(&[&azurite.key]);
}
