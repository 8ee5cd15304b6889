//! Running the operator: leader election with two replicas (failover after a crash, handover
//! on SIGTERM, one write per due time) and the admin server (metrics, health, readiness).

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use operator::*;
use reqwest::Method;
use sas_operator::crd::SasGrant;
use serde_json::json;

/// Log line the operator writes for every new token it writes.
const SIGNED_LOG: &str = "signed a new token";

/// One of two replicas competing for the Lease `lease` in `ns`, identified by `identity`
/// (given as POD_NAME, so it also names the Events this replica reports).
fn replica(ns: &str, lease: &str, identity: &str, timing: [&str; 3]) -> Operator {
    let [duration, renew_deadline, retry_period] = timing;
    Operator::spawn(
        &format!("{ns}-{identity}"),
        &common::control_plane().kubeconfig_path,
        &[
            "--namespace",
            ns,
            "--leader-election",
            "true",
            "--lease-namespace",
            ns,
            "--lease-name",
            lease,
            "--lease-duration",
            duration,
            "--lease-renew-deadline",
            renew_deadline,
            "--lease-retry-period",
            retry_period,
            "--metrics-address",
            "127.0.0.1:0",
        ],
        &[("POD_NAME", identity)],
    )
}

async fn lease_holder(client: &Client, ns: &str, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(lease)
        .await
        .expect("GET Lease")?
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// Starts replicas `a` and `b` and returns (leader, its identity, standby, its identity).
async fn elect(
    client: &Client,
    ns: &str,
    lease: &str,
    timing: [&str; 3],
) -> (Operator, String, Operator, String) {
    let a = replica(ns, lease, "replica-a", timing);
    let b = replica(ns, lease, "replica-b", timing);
    let holder = wait_for("a leader", Duration::from_secs(30), || {
        lease_holder(client, ns, lease)
    })
    .await;
    match holder.as_str() {
        "replica-a" => (a, holder, b, "replica-b".into()),
        "replica-b" => (b, holder, a, "replica-a".into()),
        other => panic!("the Lease names an unknown holder {other:?}"),
    }
}

async fn key_secret_for_azurite(client: &Client, ns: &str) {
    let azurite = common::azurite();
    create_secret(
        client,
        ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
}

/// One observed write of a target Secret.
#[derive(Clone, Debug)]
struct Write {
    at: Instant,
    expires_at: String,
    token: String,
}

/// Records every new version of Secret `name` in `ns` as the watch delivers it.
fn record_writes(client: Client, ns: &str, name: &str) -> (Arc<Mutex<Vec<Write>>>, AbortOnDrop) {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let api = Api::<Secret>::namespaced(client, ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let sink = writes.clone();
    let task = tokio::spawn(async move {
        let mut versions = std::collections::HashSet::new();
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(secret) = event else { continue };
            // A relist repeats versions already seen; only a new resourceVersion is a write.
            if versions.insert(secret.metadata.resource_version.clone()) {
                sink.lock().unwrap().push(Write {
                    at: Instant::now(),
                    expires_at: data(&secret, "expiresAt"),
                    token: data(&secret, "sasToken"),
                });
            }
        }
    });
    (writes, AbortOnDrop(task))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn writes_so_far(writes: &Mutex<Vec<Write>>) -> Vec<Write> {
    writes.lock().unwrap().clone()
}

/// Asserts one write per due time: distinct expiries, and consecutive writes at least 20 s
/// apart (the grants below renew every ~30 s).
fn assert_one_write_per_due_time(writes: &[Write]) {
    let expiries: Vec<&str> = writes.iter().map(|w| w.expires_at.as_str()).collect();
    let distinct: std::collections::BTreeSet<&str> = expiries.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        writes.len(),
        "two writes carried the same expiry: {expiries:?}"
    );
    let gaps: Vec<Duration> = writes
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_secs(20)),
        "writes closer than one renewal apart (a double rotation): gaps {gaps:?}, expiries {expiries:?}"
    );
}

/// Identities that reported Signed/Rotated Events in `ns` (the Recorder names POD_NAME).
async fn writers_by_events(client: &Client, ns: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| matches!(e.reason.as_deref(), Some("Signed" | "Rotated")))
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect()
}

async fn lists_blobs(token: &str) -> u16 {
    let azurite = common::azurite();
    Storage::default()
        .send(
            Method::GET,
            format!("{}/?comp=list&{token}", azurite.blob_endpoint),
            None,
        )
        .await
        .0
}

const FAST_LEASE: [&str; 3] = ["6s", "4s", "1s"];
const FAST_LEASE_DURATION: Duration = Duration::from_secs(6);

#[tokio::test]
async fn a_standby_takes_over_a_killed_leader_and_rotates_once_per_due_time() {
    let (client, ns) = namespace("failover").await;
    key_secret_for_azurite(&client, &ns).await;
    let (mut leader, leader_id, standby, standby_id) =
        elect(&client, &ns, "failover", FAST_LEASE).await;
    let (writes, _watch) = record_writes(client.clone(), &ns, "short");
    create_grant(
        &client,
        &ns,
        &grant(
            "short",
            json!({"account": {"services": "b", "resourceTypes": "s"}}),
            "l",
            // The shortest renewal the schema admits: in use 1m, renewed 1m before expiry.
            json!({"validity": "2m", "renewBefore": "1m"}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "short", "True", "TokenValid").await;
    wait_for(
        "the leader's first rotation",
        Duration::from_secs(90),
        || async { (writes_so_far(&writes).len() >= 2).then_some(()) },
    )
    .await;

    // While the leader lives, only it writes.
    assert!(
        !standby.logs().contains(SIGNED_LOG),
        "the standby signed a token while the leader was alive"
    );
    let writers = writers_by_events(&client, &ns).await;
    assert!(
        !writers.is_empty() && writers.iter().all(|w| *w == leader_id),
        "Signed/Rotated Events must all come from the leader {leader_id}: {writers:?}"
    );

    let writes_before_kill = writes_so_far(&writes).len();
    let killed_at = Instant::now();
    leader.kill();
    let slack = Duration::from_secs(3);
    wait_for(
        "the standby to hold the Lease",
        FAST_LEASE_DURATION + slack,
        || async {
            (lease_holder(&client, &ns, "failover").await.as_deref() == Some(&standby_id))
                .then_some(())
        },
    )
    .await;
    let takeover = killed_at.elapsed();
    assert!(
        takeover <= FAST_LEASE_DURATION + slack,
        "takeover took {takeover:?}"
    );

    let rotated = wait_for(
        "a rotation by the new leader",
        Duration::from_secs(90),
        || async {
            let all = writes_so_far(&writes);
            (all.len() > writes_before_kill).then(|| all.last().cloned().unwrap())
        },
    )
    .await;
    assert_eq!(
        lists_blobs(&rotated.token).await,
        200,
        "the new leader's token must work"
    );
    assert!(standby.logs().contains(SIGNED_LOG));
    let all = writes_so_far(&writes);
    assert_one_write_per_due_time(&all);
    let mut secrets = vec![common::azurite().key.clone()];
    secrets.extend(all.iter().map(|w| w.token.clone()));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    leader.assert_logs_free_of(&secrets);
    standby.assert_logs_free_of(&secrets);
}

#[tokio::test]
async fn sigterm_exits_zero_and_releases_the_lease_to_the_standby() {
    let (client, ns) = namespace("handover").await;
    key_secret_for_azurite(&client, &ns).await;
    // A long lease: a takeover in a fraction of it can only come from a release.
    let lease_duration = Duration::from_secs(20);
    let (mut leader, _, standby, standby_id) =
        elect(&client, &ns, "handover", ["20s", "10s", "1s"]).await;
    create_grant(
        &client,
        &ns,
        &grant(
            "g",
            json!({"account": {"services": "b", "resourceTypes": "s"}}),
            "l",
            json!({}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "g", "True", "TokenValid").await;
    let token = data(&get_secret(&client, &ns, "g").await.unwrap(), "sasToken");

    let terminated_at = Instant::now();
    leader.terminate();
    let status = leader.wait_for_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    wait_for("the standby to hold the Lease", lease_duration, || async {
        (lease_holder(&client, &ns, "handover").await.as_deref() == Some(&standby_id)).then_some(())
    })
    .await;
    let handover = terminated_at.elapsed();
    assert!(
        handover < lease_duration / 4,
        "handover took {handover:?}: the lease was not released, it expired"
    );
    let azurite_key = common::azurite().key.clone();
    leader.assert_logs_free_of(&[&azurite_key, &token]);
    standby.assert_logs_free_of(&[&azurite_key, &token]);
}

/// An operator (no leader election) whose admin server listens on a known port.
fn operator_with_admin(ns: &str) -> (Operator, String) {
    let address = format!("127.0.0.1:{}", free_local_port());
    let operator = Operator::start_with(
        ns,
        &common::control_plane().kubeconfig_path,
        &["--metrics-address", &address],
    );
    (operator, format!("http://{address}"))
}

async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn scrape(admin: &str) -> String {
    let url = format!("{admin}/metrics");
    let (status, body) = wait_for("/metrics to answer", Duration::from_secs(30), || {
        http_get(&url)
    })
    .await;
    assert_eq!(status, 200, "/metrics");
    body
}

/// The value of the sample `metric{labels}` (labels in exposition order), if present.
fn sample(body: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let prefix = if labels.is_empty() {
        format!("{metric} ")
    } else {
        format!("{metric}{{{}}} ", labels.join(","))
    };
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().expect("a numeric sample"))
}

fn unix_seconds(rfc3339: &str) -> f64 {
    let at: jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
    at.as_second() as f64
}

async fn ready_grant(client: &Client, ns: &str) -> (SasGrant, Secret) {
    key_secret_for_azurite(client, ns).await;
    create_grant(
        client,
        ns,
        &grant(
            "g",
            json!({"account": {"services": "b", "resourceTypes": "s"}}),
            "l",
            json!({}),
        ),
    )
    .await;
    let grant = wait_ready(client, ns, "g", "True", "TokenValid").await;
    let secret = get_secret(client, ns, "g").await.unwrap();
    (grant, secret)
}

#[tokio::test]
async fn metrics_show_a_ready_grants_expiry_renewal_rotations_and_reconcile_durations() {
    let (client, ns) = namespace("metrics").await;
    let (operator, admin) = operator_with_admin(&ns);
    let (grant, secret) = ready_grant(&client, &ns).await;
    let labels = [("namespace", ns.as_str()), ("name", "g")];
    let expires_at = unix_seconds(&data(&secret, "expiresAt"));
    // The gauges are set just after the status write that made the grant Ready.
    let body = wait_for(
        "the grant's expiry in /metrics",
        Duration::from_secs(10),
        || async {
            let body = scrape(&admin).await;
            let exported = sample(
                &body,
                "sas_operator_grant_expiration_timestamp_seconds",
                &labels,
            );
            (exported == Some(expires_at)).then_some(body)
        },
    )
    .await;
    let renews_at = unix_seconds(grant.status.as_ref().unwrap().renews_at.as_deref().unwrap());
    assert_eq!(
        sample(
            &body,
            "sas_operator_grant_renewal_timestamp_seconds",
            &labels
        ),
        Some(renews_at),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sas_operator_grant_ready", &labels),
        Some(1.0),
        "{body}"
    );
    let success = [
        ("namespace", ns.as_str()),
        ("name", "g"),
        ("result", "success"),
    ];
    assert!(
        sample(&body, "sas_operator_rotations_total", &success).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        sample(&body, "sas_operator_reconcile_duration_seconds_count", &[]).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        sample(
            &body,
            "sas_operator_reconcile_duration_seconds_bucket",
            &[("le", "+Inf")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{body}"
    );
    let token = data(&secret, "sasToken");
    assert!(!body.contains(&token));
    operator.assert_logs_free_of(&[&common::azurite().key, &token]);
}

#[tokio::test]
async fn failed_rotations_are_counted_by_static_reason_never_by_error_text() {
    let (client, ns) = namespace("metricsfail").await;
    let (operator, admin) = operator_with_admin(&ns);
    let (_, secret) = ready_grant(&client, &ns).await;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("azurite-keys", &DeleteParams::default())
        .await
        .expect("delete the key Secret");
    // A spec change forces a re-sign, which now cannot find the key.
    Api::<SasGrant>::namespaced(client.clone(), &ns)
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"permissions": "rl"}})),
        )
        .await
        .expect("patch the grant");
    wait_ready(&client, &ns, "g", "False", "KeySecretNotFound").await;

    let failed = [
        ("namespace", ns.as_str()),
        ("name", "g"),
        ("result", "KeySecretNotFound"),
    ];
    let body = wait_for(
        "a KeySecretNotFound rotation in /metrics",
        Duration::from_secs(10),
        || async {
            let body = scrape(&admin).await;
            (sample(&body, "sas_operator_rotations_total", &failed).unwrap_or(0.0) >= 1.0)
                .then_some(body)
        },
    )
    .await;
    assert_eq!(
        sample(
            &body,
            "sas_operator_grant_ready",
            &[("namespace", ns.as_str()), ("name", "g")]
        ),
        Some(0.0),
        "{body}"
    );
    for result in body.split("result=\"").skip(1) {
        let value = result.split('"').next().unwrap();
        assert!(
            !value.is_empty() && value.chars().all(|c| c.is_ascii_alphabetic()),
            "result labels must be static categories, got {value:?}"
        );
    }
    // The condition message names the missing Secret; a label must not carry it.
    assert!(!body.contains("azurite-keys"), "{body}");
    let token = data(&secret, "sasToken");
    operator.assert_logs_free_of(&[&common::azurite().key, &token]);
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let (client, ns) = namespace("health").await;
    let (operator, admin) = operator_with_admin(&ns);
    for path in ["/healthz", "/readyz"] {
        let url = format!("{admin}{path}");
        wait_for(
            &format!("{path} to answer 200"),
            Duration::from_secs(30),
            || async { (http_get(&url).await?.0 == 200).then_some(()) },
        )
        .await;
    }
    // And while it works: a grant becomes Ready and the probes still pass.
    let (_, secret) = ready_grant(&client, &ns).await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = http_get(&format!("{admin}{path}")).await.expect(path);
        assert_eq!(status, 200, "{path}");
    }
    operator.assert_logs_free_of(&[&common::azurite().key, &data(&secret, "sasToken")]);
}

#[tokio::test]
async fn a_deleted_grants_series_disappear_within_35_seconds() {
    let (client, ns) = namespace("metricsgone").await;
    let (operator, admin) = operator_with_admin(&ns);
    let (_, secret) = ready_grant(&client, &ns).await;
    let series = format!("namespace=\"{ns}\",name=\"g\"");
    wait_for(
        "the grant's series in /metrics",
        Duration::from_secs(10),
        || async { scrape(&admin).await.contains(&series).then_some(()) },
    )
    .await;
    Api::<SasGrant>::namespaced(client.clone(), &ns)
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete the grant");
    // The controller forgets deleted grants every 30 s.
    wait_for(
        "the deleted grant's series to disappear",
        Duration::from_secs(35),
        || async { (!scrape(&admin).await.contains(&series)).then_some(()) },
    )
    .await;
    operator.assert_logs_free_of(&[&common::azurite().key, &data(&secret, "sasToken")]);
}
