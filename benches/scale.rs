//! The scale benchmark (`make bench-scale`): the real operator binary, under deploy/'s
//! ServiceAccount, against `make testenv`'s control plane. Prints, for N grants:
//! time from start to all Ready and a bare client doing the same writes (create Secret, patch
//! status, one Event) at the same concurrency, in the same run; API requests per grant by verb
//! and resource (the API server's audit log); reconciles per grant (/metrics); a restart (GETs,
//! writes, time until every grant is checked); RSS and CPU of the operator (/proc); CPU for N
//! unrelated Secret events; one rotation of every grant (validity 2m, renewBefore 1m):
//! lateness p99, reconciles and writes per rotation.
//!
//! Environment: `source target/testenv/env.sh` (KUBECONFIG, TESTENV_AUDIT_LOG), and
//! `SCALE_N` (default 1000), `SCALE_CONCURRENCY` (4), `SAS_OPERATOR_BIN` (the binary to
//! measure; default target/release/sas-operator), `SCALE_ROTATION=0` to skip the rotation,
//! `SCALE_VALIDITY` / `SCALE_RENEW_BEFORE` (default 2m / 1m). At 10,000 grants use long ones
//! (e.g. 8h / 2h) with `SCALE_ROTATION=0`: at concurrency 4 the first grants fall due before the
//! last are signed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sas_operator::crd::SasGrant;
use serde_json::json;

const SA_USER: &str = "system:serviceaccount:sas-operator:sas-operator";
const KEY: &str =
    "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LQ==";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` (make test) runs this binary without
    // it and without a test environment: like criterion's test mode, measure nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("scale bench: measures only under `make bench-scale` (cargo bench)");
        return;
    }
    let n: usize = env_or("SCALE_N", "1000").parse().expect("SCALE_N");
    let concurrency: usize = env_or("SCALE_CONCURRENCY", "4")
        .parse()
        .expect("concurrency");
    let rotation = env_or("SCALE_ROTATION", "1") != "0";
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = PathBuf::from(env_or(
        "SAS_OPERATOR_BIN",
        &root
            .join("target/release/sas-operator")
            .display()
            .to_string(),
    ));
    let audit_log =
        PathBuf::from(std::env::var("TESTENV_AUDIT_LOG").expect(
            "TESTENV_AUDIT_LOG: run `make testenv` and `source target/testenv/env.sh` first",
        ));
    let client = Client::try_default()
        .await
        .expect("admin client (KUBECONFIG)");
    let work = tempfile::tempdir().expect("temp dir");

    // deploy/: the CRD, the namespace, the ServiceAccount and its RBAC.
    let kubectl = env_or("TESTENV_KUBECTL", "kubectl");
    run(Command::new(&kubectl)
        .args(["apply", "-k"])
        .arg(root.join("deploy")));
    let sa_kubeconfig = work.path().join("sa.kubeconfig");
    run(Command::new(root.join("hack/testenv.sh"))
        .args(["sa-kubeconfig", "sas-operator", "sas-operator"])
        .arg(&sa_kubeconfig));
    wait_until("the SasGrant CRD", Duration::from_secs(30), || async {
        Api::<SasGrant>::all(client.clone())
            .list_metadata(&Default::default())
            .await
            .is_ok()
    })
    .await;

    let ns = namespace(&client, "scale").await;
    let baseline_ns = namespace(&client, "scale-baseline").await;
    for namespace in [&ns, &baseline_ns] {
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &key_secret())
            .await
            .expect("key Secret");
    }
    println!(
        "# scale benchmark: N={n}, concurrency {concurrency}, binary {}",
        binary.display()
    );
    // The same grants in both namespaces, created before any timing.
    create_grants(&client, &ns, n, concurrency * 4).await;
    create_grants(&client, &baseline_ns, n, concurrency * 4).await;

    // Bare client: what the operator must at least do per grant, at the same concurrency. Run
    // before and after the operator's cold start (the mean is the baseline): on a shared
    // machine the load drifts within minutes.
    let started = Instant::now();
    bare_client_writes(&client, &baseline_ns, n, concurrency, "first").await;
    let baseline_first = started.elapsed();

    // Cold start: from the process start to every grant Ready.
    let port = free_port();
    let offset = file_len(&audit_log);
    let grants_ready = ReadyCounter::start(&client, &ns).await;
    let started = Instant::now();
    let mut operator = start_operator(&binary, &sa_kubeconfig, &ns, port, concurrency, work.path());
    grants_ready.wait_for(n, Duration::from_secs(600)).await;
    let cold = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // whatever the writes trigger, let it run
    let requests = requests_by(&audit_log, offset, &ns);
    let cold_reconciles = reconciles(port).await;
    let rss_cold = rss_mib(operator.id());
    let cpu_cold = cpu_seconds(operator.id());
    let started = Instant::now();
    bare_client_writes(&client, &baseline_ns, n, concurrency, "second").await;
    let baseline_second = started.elapsed();
    let baseline = (baseline_first + baseline_second) / 2;

    // N unrelated Secrets: work per Secret event must not depend on the number of grants.
    let cpu_before = cpu_seconds(operator.id());
    create_unrelated_secrets(&client, &ns, n, concurrency * 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_unrelated = cpu_seconds(operator.id()) - cpu_before;
    let rss_unrelated = rss_mib(operator.id());

    // Restart: GETs and writes, time until every grant is checked again.
    stop(&mut operator);
    let offset = file_len(&audit_log);
    let started = Instant::now();
    let port = free_port();
    let mut operator = start_operator(&binary, &sa_kubeconfig, &ns, port, concurrency, work.path());
    wait_until(
        "every grant checked after the restart",
        Duration::from_secs(600),
        || async { reconciles(port).await >= n as f64 },
    )
    .await;
    let restart = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_requests = requests_by(&audit_log, offset, &ns);
    let restart_reconciles = reconciles(port).await;

    println!();
    println!("| | N={n} |");
    println!("|---|---|");
    row(
        "cold start to all Ready",
        format!("{:.1} s", cold.as_secs_f64()),
    );
    row(
        "bare client, same writes (mean; before / after the cold start)",
        format!(
            "{:.1} s ({:.1} / {:.1})",
            baseline.as_secs_f64(),
            baseline_first.as_secs_f64(),
            baseline_second.as_secs_f64()
        ),
    );
    row(
        "ratio",
        format!("{:.2}x", cold.as_secs_f64() / baseline.as_secs_f64()),
    );
    row(
        "API requests per new grant",
        per_grant(&requests, n, |(verb, _)| verb != "watch" && verb != "list"),
    );
    row(
        "reconciles per new grant",
        format!("{:.2}", cold_reconciles / n as f64),
    );
    row(
        "operator RSS after cold start",
        format!("{rss_cold:.1} MiB"),
    );
    row("operator CPU, cold start", format!("{cpu_cold:.2} s"));
    row(
        &format!("operator CPU for {n} unrelated Secret events"),
        format!("{cpu_unrelated:.2} s (RSS then {rss_unrelated:.1} MiB)"),
    );
    row(
        "restart: Secret GETs / writes",
        format!(
            "{} / {}",
            count(&restart_requests, |(verb, resource)| verb == "get"
                && resource == "secrets"),
            count(&restart_requests, |(verb, _)| is_write(verb))
        ),
    );
    row(
        "restart: time until every grant checked (process start)",
        format!(
            "{:.1} s ({restart_reconciles:.0} reconciles)",
            restart.as_secs_f64()
        ),
    );

    if rotation {
        // Every grant rotates once, about a minute after it was signed.
        let offset = file_len(&audit_log);
        let before = reconciles(port).await;
        let rotated = rotations(port).await;
        wait_until(
            "one rotation of every grant",
            Duration::from_secs(240),
            || async { rotations(port).await >= rotated + n as f64 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let requests = requests_by(&audit_log, offset, &ns);
        let reconciled = reconciles(port).await - before;
        row(
            "rotation (validity 2m, renewBefore 1m): lateness p99",
            format!("<= {} s (histogram bucket)", lateness_p99(port).await),
        );
        row(
            "reconciles per rotation",
            format!("{:.2}", reconciled / n as f64),
        );
        row(
            "writes per rotation",
            per_grant(&requests, n, |(verb, _)| is_write(verb)),
        );
    }
    row(
        "operator RSS at the end",
        format!("{:.1} MiB", rss_mib(operator.id())),
    );
    stop(&mut operator);
    for namespace in [&ns, &baseline_ns] {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(namespace, &Default::default())
            .await;
    }
}

fn row(what: &str, value: String) {
    println!("| {what} | {value} |");
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete")
}

fn count(
    requests: &BTreeMap<(String, String), usize>,
    keep: impl Fn(&(String, String)) -> bool,
) -> usize {
    requests
        .iter()
        .filter(|(key, _)| keep(key))
        .map(|(_, count)| count)
        .sum()
}

fn per_grant(
    requests: &BTreeMap<(String, String), usize>,
    n: usize,
    keep: impl Fn(&(String, String)) -> bool,
) -> String {
    let total = count(requests, &keep);
    let parts: Vec<String> = requests
        .iter()
        .filter(|(key, _)| keep(key))
        .map(|((verb, resource), count)| {
            format!("{} {verb} {resource}", trim(*count as f64 / n as f64))
        })
        .collect();
    format!("{} ({})", trim(total as f64 / n as f64), parts.join(", "))
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace")
        .name_any()
}

fn key_secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("keys".into()),
            labels: Some([("sas-operator.io/signing-key".into(), "true".into())].into()),
            ..Default::default()
        },
        string_data: Some([("key1".into(), KEY.into())].into()),
        ..Default::default()
    }
}

fn grant(name: &str) -> SasGrant {
    let spec = json!({
        "storageAccount": {"name": "devstoreaccount1", "keySecretRef": {"name": "keys"}},
        "resource": {"container": {"name": "data"}},
        "permissions": "r",
        "validity": env_or("SCALE_VALIDITY", "2m"),
        "renewBefore": env_or("SCALE_RENEW_BEFORE", "1m"),
    });
    SasGrant::new(name, serde_json::from_value(spec).expect("grant spec"))
}

async fn create_grants(client: &Client, ns: &str, n: usize, concurrency: usize) {
    let grants = Api::<SasGrant>::namespaced(client.clone(), ns);
    stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let grants = grants.clone();
            async move {
                grants
                    .create(&PostParams::default(), &grant(&format!("g{i}")))
                    .await
                    .expect("create grant");
            }
        })
        .await;
}

async fn create_unrelated_secrets(client: &Client, ns: &str, n: usize, concurrency: usize) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let secrets = secrets.clone();
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("unrelated-{i}")),
                        ..Default::default()
                    },
                    string_data: Some([("blob".into(), "x".repeat(4096))].into()),
                    ..Default::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .expect("create unrelated Secret");
            }
        })
        .await;
}

/// Per grant: create its Secret, apply its status, publish one Event.
async fn bare_client_writes(client: &Client, ns: &str, n: usize, concurrency: usize, round: &str) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let grants = Api::<SasGrant>::namespaced(client.clone(), ns);
    let events = Api::<Event>::namespaced(client.clone(), ns);
    // The Events' references, listed before the clock starts: three requests per grant.
    let references: std::collections::HashMap<String, _> = grants
        .list_metadata(&Default::default())
        .await
        .expect("list the baseline grants")
        .items
        .iter()
        .map(|grant| (grant.name_any(), grant.object_ref(&())))
        .collect();
    let references = &references;
    stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let (secrets, grants, events) = (secrets.clone(), grants.clone(), events.clone());
            async move {
                let name = format!("g{i}");
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("{name}-{round}")),
                        labels: Some(
                            [("app.kubernetes.io/managed-by".into(), "bench".into())].into(),
                        ),
                        ..Default::default()
                    },
                    string_data: Some([("sasToken".into(), "x".repeat(200))].into()),
                    ..Default::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .expect("baseline Secret");
                let status = json!({
                    "apiVersion": "sas-operator.io/v1alpha1", "kind": "SasGrant",
                    "status": {"conditions": [{
                        "type": "Ready", "status": "True", "reason": "TokenValid",
                        "message": "bench", "lastTransitionTime": Timestamp::now().to_string(),
                    }]},
                });
                grants
                    .patch_status(
                        &name,
                        &PatchParams::apply("bench").force(),
                        &Patch::Apply(&status),
                    )
                    .await
                    .expect("baseline status");
                let regarding = references.get(&name).cloned().unwrap_or_default();
                let now = Timestamp::now();
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                        ..Default::default()
                    },
                    event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                        now,
                    )),
                    action: Some("Reconcile".into()),
                    reason: Some("Signed".into()),
                    note: Some("bench".into()),
                    type_: Some("Normal".into()),
                    reporting_controller: Some("bench".into()),
                    reporting_instance: Some("bench".into()),
                    regarding: Some(regarding),
                    ..Default::default()
                };
                events
                    .create(&PostParams::default(), &event)
                    .await
                    .expect("baseline Event");
            }
        })
        .await;
}

/// Counts Ready grants from a watch (a list per poll would load the API server at 10,000).
struct ReadyCounter {
    store: reflector::Store<SasGrant>,
    _task: tokio::task::JoinHandle<()>,
}

impl ReadyCounter {
    async fn start(client: &Client, ns: &str) -> Self {
        let (store, writer) = reflector::store();
        let stream = reflector(
            writer,
            watcher(
                Api::<SasGrant>::namespaced(client.clone(), ns),
                Default::default(),
            ),
        )
        .applied_objects();
        let task = tokio::spawn(async move {
            stream.for_each(|_| async {}).await;
        });
        store.wait_until_ready().await.expect("grant watch");
        ReadyCounter { store, _task: task }
    }

    async fn wait_for(&self, n: usize, timeout: Duration) {
        wait_until("every grant Ready", timeout, || async {
            self.store
                .state()
                .iter()
                .filter(|grant| {
                    grant.status.as_ref().is_some_and(|status| {
                        status
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                })
                .count()
                >= n
        })
        .await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start_operator(
    binary: &Path,
    kubeconfig: &Path,
    ns: &str,
    port: u16,
    concurrency: usize,
    dir: &Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("operator.log"))
        .expect("operator log");
    Command::new(binary)
        .args(["run", "--namespace", ns, "--concurrency"])
        .arg(concurrency.to_string())
        .arg("--metrics-address")
        .arg(format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", kubeconfig)
        .env("SAS_OPERATOR_LEADER_ELECTION", "false")
        .env("SAS_OPERATOR_LOG_LEVEL", "warn")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the operator")
}

fn stop(operator: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(operator.id().to_string())
        .status();
    let _ = operator.wait();
}

async fn metrics(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    match reqwest::get(&url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Sum of the samples of a metric (any labels).
fn sample_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Reconciles so far: the counter, or the duration histogram's count where there is none.
async fn reconciles(port: u16) -> f64 {
    let text = metrics(port).await;
    sample_sum(&text, "sas_operator_reconciles_total")
        .or_else(|| sample_sum(&text, "sas_operator_reconcile_duration_seconds_count"))
        .unwrap_or(0.0)
}

async fn rotations(port: u16) -> f64 {
    let text = metrics(port).await;
    text.lines()
        .filter(|line| {
            line.starts_with("sas_operator_rotations_total{") && line.contains("result=\"success\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The upper bound of the histogram bucket holding the 99th percentile.
async fn lateness_p99(port: u16) -> String {
    let text = metrics(port).await;
    let total = sample_sum(&text, "sas_operator_rotation_lateness_seconds_count").unwrap_or(0.0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("sas_operator_rotation_lateness_seconds_bucket{le=\"")
            && let Some((bound, value)) = rest.split_once("\"} ")
            && value.parse::<f64>().unwrap_or(0.0) >= 0.99 * total
        {
            return bound.to_string();
        }
    }
    "?".into()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Requests by the operator's ServiceAccount from `offset` on, by (verb, resource), for
/// objects in `ns` or cluster-wide lists/watches.
fn requests_by(audit_log: &Path, offset: u64, ns: &str) -> BTreeMap<(String, String), usize> {
    let mut file = std::fs::File::open(audit_log).expect("audit log");
    // The API server rotates its audit log at 100 MB: then the requests before the rotation
    // are in a backup file and not counted.
    let offset = if file_len(audit_log) < offset {
        eprintln!("warning: the audit log was rotated; request counts are incomplete");
        0
    } else {
        offset
    };
    file.seek(SeekFrom::Start(offset)).expect("seek");
    let mut text = String::new();
    file.read_to_string(&mut text).expect("read audit log");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // One line per request (the ResponseComplete stage, or the start of a watch).
        let stage = event["stage"].as_str().unwrap_or_default();
        if stage != "ResponseComplete" && stage != "ResponseStarted" {
            continue;
        }
        if stage == "ResponseStarted" && event["verb"] != "watch" {
            continue;
        }
        if stage == "ResponseComplete" && event["verb"] == "watch" {
            continue;
        }
        if event["user"]["username"] != SA_USER {
            continue;
        }
        let object = &event["objectRef"];
        if object["namespace"].as_str().is_some_and(|n| n != ns) {
            continue;
        }
        let mut resource = object["resource"].as_str().unwrap_or("?").to_string();
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let verb = event["verb"].as_str().unwrap_or("?").to_string();
        *counts.entry((verb, resource)).or_default() += 1;
    }
    counts
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// User + system CPU seconds of a process (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}
