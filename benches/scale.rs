//! The scale benchmark (`make bench-scale`): the real operator binary, under deploy/'s
//! ServiceAccount, against `make testenv`'s control plane. Prints, for N grants, a Markdown
//! table to paste:
//! - cold start: time from the process start to all N grants Ready, and a bare client doing
//!   the same writes (create Secret, patch status, one Event) at the same concurrency. The two
//!   alternate (baseline, operator, baseline, operator, ..., baseline; each operator run on its
//!   own namespace of N fresh grants), and each operator run is divided by the mean of the
//!   baselines just before and after it: the ratio of every run, their median and spread;
//! - API requests per grant by verb and resource (the API server's audit log), reconciles per
//!   grant (/metrics), RSS and CPU of the operator (/proc), CPU of the API server during the cold
//!   start and during the bare client's run; CPU for N unrelated Secret events; with
//!   `SCALE_ROTATIONS=0`, steady RSS (20 s idle) after the cold start, with N unrelated Secrets
//!   and after the restart;
//! - a restart: Secret GETs, writes, time until every grant is checked again;
//! - rotation: every grant's Secret watched; each new token's lateness is the time it was seen
//!   minus when the previous token was due (validity, renewBefore and the grant's jitter, as
//!   the operator computes it): p50 / p99 / max, reconciles and writes per rotation, and
//!   whether any Secret held an expired token; rotations seen before they were due are counted
//!   (a bench built with another jitter than the operator's).
//!
//! Environment: `source target/testenv/env.sh` (KUBECONFIG, TESTENV_AUDIT_LOG), and
//! `SCALE_N` (default 1000), `SCALE_CONCURRENCY` (4), `SCALE_RUNS` (3 operator cold starts,
//! interleaved with 4 baselines), `SAS_OPERATOR_BIN` (the binary to measure; default
//! target/release/sas-operator), `SCALE_VALIDITY` / `SCALE_RENEW_BEFORE` (2m / 1m),
//! `SCALE_ROTATIONS` (rotations of every grant to measure, default 3; 0 skips),
//! `SCALE_ROTATION_CONCURRENCY` (the restarted operator's, default SCALE_CONCURRENCY). At 10,000
//! grants use `SCALE_RUNS=1` and long tokens (e.g. 8h / 2h) with `SCALE_ROTATIONS=0`: at
//! concurrency 4 the first grants fall due before the last are signed.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sas_operator::crd::SasGrant;
use sas_operator::reconcile::schedule::Renewal;
use serde_json::json;

const SA_USER: &str = "system:serviceaccount:sas-operator:sas-operator";
const KEY: &str =
    "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LQ==";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_number(name: &str, default: usize) -> usize {
    env_or(name, &default.to_string())
        .parse()
        .unwrap_or_else(|_| panic!("{name}: a number"))
}

/// How long the operator idles before its steady RSS is read (only without rotations: the
/// idling would put the restart among the first renewals).
const STEADY_AFTER_SECS: u64 = 20;

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` (make test) runs this binary without
    // it and without a test environment: like criterion's test mode, measure nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("scale bench: measures only under `make bench-scale` (cargo bench)");
        return;
    }
    let n = env_number("SCALE_N", 1000);
    let concurrency = env_number("SCALE_CONCURRENCY", 4);
    let runs = env_number("SCALE_RUNS", 3).max(1);
    let rotations_wanted = env_number("SCALE_ROTATIONS", 3);
    let rotation_concurrency = env_number("SCALE_ROTATION_CONCURRENCY", concurrency);
    let validity = env_or("SCALE_VALIDITY", "2m");
    let renew_before = env_or("SCALE_RENEW_BEFORE", "1m");
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
    let apiserver = apiserver_pid(&audit_log);
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
    // The bare client runs as the operator's ServiceAccount: the same RBAC checks per request.
    let sa_client = {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&sa_kubeconfig).expect("the SA kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("the SA client config");
        Client::try_from(config).expect("the SA client")
    };
    wait_until("the SasGrant CRD", Duration::from_secs(30), || async {
        Api::<SasGrant>::all(client.clone())
            .list_metadata(&Default::default())
            .await
            .is_ok()
    })
    .await;

    println!(
        "# scale benchmark: N={n}, concurrency {concurrency}, {runs} cold start(s), validity \
         {validity} / renewBefore {renew_before}, binary {}",
        binary.display()
    );
    // Every namespace and grant exists before any timing: one namespace per cold start (its
    // grants have no Secret yet), one for the bare client.
    let baseline_ns = namespace(&client, "scale-baseline").await;
    let mut cold_namespaces = Vec::new();
    for _ in 0..runs {
        cold_namespaces.push(namespace(&client, "scale").await);
    }
    for namespace in cold_namespaces.iter().chain([&baseline_ns]) {
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &key_secret())
            .await
            .expect("key Secret");
        create_grants(&client, namespace, n, concurrency * 4).await;
    }

    // Baseline, operator, baseline, ...: the load of a shared machine drifts within minutes,
    // so each operator run is compared with the baselines right before and after it.
    let mut baselines = Vec::new();
    let mut colds = Vec::new();
    let mut firsts = Vec::new();
    let mut apiserver_cpu_baseline = Vec::new();
    let mut apiserver_cpu_cold = Vec::new();
    let mut last = None;
    for (run, ns) in cold_namespaces.iter().enumerate() {
        // The same observer as on the operator's run: a watch of the grants it patches.
        let observer = ReadyCounter::start(&client, &baseline_ns).await;
        let cpu = cpu_seconds(apiserver);
        let started = Instant::now();
        bare_client_writes(&sa_client, &baseline_ns, n, concurrency, &format!("r{run}")).await;
        drop(observer);
        baselines.push(started.elapsed());
        apiserver_cpu_baseline.push(cpu_seconds(apiserver) - cpu);

        let port = free_port();
        let offset = file_len(&audit_log);
        let grants_ready = ReadyCounter::start(&client, ns).await;
        let cpu = cpu_seconds(apiserver);
        let started = Instant::now();
        let mut operator =
            start_operator(&binary, &sa_kubeconfig, ns, port, concurrency, work.path());
        grants_ready.wait_for(1, Duration::from_secs(60)).await;
        firsts.push(started.elapsed());
        grants_ready.wait_for(n, Duration::from_secs(900)).await;
        colds.push(started.elapsed());
        apiserver_cpu_cold.push(cpu_seconds(apiserver) - cpu);
        eprintln!(
            "cold start {}: {:.1} s, first grant Ready after {:.2} s (baseline before it {:.1} s)",
            run + 1,
            colds[run].as_secs_f64(),
            firsts[run].as_secs_f64(),
            baselines[run].as_secs_f64()
        );
        if run + 1 < runs {
            stop(&mut operator);
        } else {
            last = Some((operator, port, offset));
        }
    }
    let (mut operator, port, offset) = last.expect("at least one run");
    let ns = cold_namespaces.last().expect("at least one run").clone();
    // Every grant's Secret from now on: rotations, and whether any token is ever expired.
    let tokens = TokenWatch::start(&client, &ns, &validity, &renew_before).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // whatever the writes trigger, let it run
    let requests = requests_by(&audit_log, offset, &ns);
    let cold_reconciles = reconciles(port).await;
    let rss_cold = rss_mib(operator.id());
    let cpu_cold = cpu_seconds(operator.id());
    let observer = ReadyCounter::start(&client, &baseline_ns).await;
    let cpu = cpu_seconds(apiserver);
    let started = Instant::now();
    bare_client_writes(&sa_client, &baseline_ns, n, concurrency, "last").await;
    drop(observer);
    baselines.push(started.elapsed());
    apiserver_cpu_baseline.push(cpu_seconds(apiserver) - cpu);

    // Steady: the writes of the cold start and of the baseline are done, nothing is due.
    let measure_steady = rotations_wanted == 0;
    let steady_rss = |pid: u32| async move {
        if measure_steady {
            tokio::time::sleep(Duration::from_secs(STEADY_AFTER_SECS)).await;
            format!("{:.1} MiB", rss_mib(pid))
        } else {
            "- (SCALE_ROTATIONS=0 only)".to_string()
        }
    };
    let rss_steady_before = steady_rss(operator.id()).await;

    // N unrelated Secrets: work per Secret event must not depend on the number of grants.
    let cpu_before = cpu_seconds(operator.id());
    create_unrelated_secrets(&client, &ns, n, concurrency * 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_unrelated = cpu_seconds(operator.id()) - cpu_before;
    let rss_unrelated = steady_rss(operator.id()).await;

    // Restart: GETs and writes, time until every grant is checked again.
    stop(&mut operator);
    let restart_offset = file_len(&audit_log);
    let started = Instant::now();
    let port = free_port();
    let mut operator = start_operator(
        &binary,
        &sa_kubeconfig,
        &ns,
        port,
        rotation_concurrency,
        work.path(),
    );
    // The issue's clock starts when the caches have synced: /readyz turns 200 once the grant
    // cache holds the initial list (polled every 20 ms).
    let synced = std::cell::Cell::new(None);
    let first_ready = &synced;
    wait_until_every(
        "every grant checked after the restart",
        Duration::from_secs(600),
        Duration::from_millis(20),
        move || async move {
            // /readyz until it answers, then /metrics (a scrape of 10,000 grants' series is
            // not free: at 20 ms it would slow the operator being measured).
            if first_ready.get().is_none() {
                if is_ready(port).await {
                    first_ready.set(Some(started.elapsed()));
                }
                return false;
            }
            tokio::time::sleep(Duration::from_millis(80)).await;
            reconciles(port).await >= n as f64
        },
    )
    .await;
    let restart = started.elapsed();
    let synced = synced.get().unwrap_or(restart);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_requests = requests_by(&audit_log, restart_offset, &ns);
    let restart_reconciles = reconciles(port).await;
    // Steady: nothing due, nothing changing; what the process holds for its N grants.
    let rss_steady = steady_rss(operator.id()).await;

    let ratios: Vec<f64> = colds
        .iter()
        .enumerate()
        .map(|(i, cold)| {
            cold.as_secs_f64() / ((baselines[i] + baselines[i + 1]).as_secs_f64() / 2.0)
        })
        .collect();
    println!();
    println!("| | N={n} |");
    println!("|---|---|");
    row(
        "cold start to all Ready (median of runs; each run)",
        format!(
            "{:.1} s ({})",
            median(colds.iter().map(Duration::as_secs_f64)),
            seconds_list(&colds)
        ),
    );
    row(
        "bare client, same writes at the same concurrency (median; each, in order)",
        format!(
            "{:.1} s ({})",
            median(baselines.iter().map(Duration::as_secs_f64)),
            seconds_list(&baselines)
        ),
    );
    row(
        "ratio: cold start / mean of the baselines around it (median, min-max; each run)",
        format!(
            "{:.2}x, {:.2}-{:.2}x ({})",
            median(ratios.iter().copied()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
            ratios
                .iter()
                .map(|r| format!("{r:.2}x"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    row(
        "cold start: first grant Ready after (median)",
        format!("{:.2} s", median(firsts.iter().map(Duration::as_secs_f64))),
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
        "API server CPU: operator cold start / bare client (medians)",
        format!(
            "{:.2} s / {:.2} s",
            median(apiserver_cpu_cold.iter().copied()),
            median(apiserver_cpu_baseline.iter().copied())
        ),
    );
    row(
        &format!("operator CPU for {n} unrelated Secret events"),
        format!("{cpu_unrelated:.2} s"),
    );
    row(
        &format!(
            "operator RSS, steady ({STEADY_AFTER_SECS} s idle): before / with the {n} unrelated \
             Secrets"
        ),
        format!("{rss_steady_before} / {rss_unrelated}"),
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
        &format!("operator RSS after the restart, steady ({STEADY_AFTER_SECS} s idle)"),
        rss_steady,
    );
    row(
        "restart: time until every grant checked (process start; caches synced)",
        format!(
            "{:.1} s; {:.1} s after /readyz ({restart_reconciles:.0} reconciles)",
            restart.as_secs_f64(),
            restart.saturating_sub(synced).as_secs_f64()
        ),
    );

    if rotations_wanted > 0 {
        // Every grant rotates `rotations_wanted` times (the first about renewBefore after it
        // was signed); the counts run from here, the lateness from the cold start on.
        let offset = file_len(&audit_log);
        let reconciled_before = reconciles(port).await;
        let rotated_before = tokens.rotations();
        let deadline = Duration::from_secs(
            60 + 2
                * rotations_wanted as u64
                * sas_operator::duration::parse(&validity)
                    .expect("SCALE_VALIDITY")
                    .as_secs(),
        );
        wait_until("the rotations of every grant", deadline, || async {
            tokens.least_rotations(n) >= rotations_wanted
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let requests = requests_by(&audit_log, offset, &ns);
        let reconciled = reconciles(port).await - reconciled_before;
        let rotated = (tokens.rotations() - rotated_before).max(1);
        let rounds = [
            ("all rotations", tokens.report(|_| true)),
            (
                "the first rotation (due as fast as the cold start signed)",
                tokens.report(|round| round == 1),
            ),
            ("later rotations", tokens.report(|round| round > 1)),
        ];
        for (which, report) in &rounds {
            row(
                &format!(
                    "rotation lateness p50 / p99 / max, {which} ({} at {validity} / \
                     {renew_before}, --concurrency {rotation_concurrency})",
                    report.count
                ),
                format!(
                    "{:.2} s / {:.2} s / {:.2} s ({} before due)",
                    report.p50, report.p99, report.max, report.early
                ),
            );
        }
        let report = &rounds[0].1;
        row(
            "the operator's lateness histogram: p99 bucket",
            format!("<= {} s", lateness_p99(port).await),
        );
        row(
            "reconciles per rotation",
            format!("{:.2}", reconciled / rotated as f64),
        );
        row(
            "writes per rotation",
            per_grant(&requests, rotated, |(verb, _)| is_write(verb)),
        );
        row(
            "Secrets seen holding an expired token (longest)",
            format!("{} ({:.2} s)", report.expired, report.longest_expired),
        );
    }
    row(
        "operator RSS at the end",
        format!("{:.1} MiB", rss_mib(operator.id())),
    );
    stop(&mut operator);
    for namespace in cold_namespaces.iter().chain([&baseline_ns]) {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(namespace, &Default::default())
            .await;
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

fn seconds_list(durations: &[Duration]) -> String {
    durations
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The API server's pid, from the control plane's pids file next to its audit log.
fn apiserver_pid(audit_log: &Path) -> u32 {
    let pids = audit_log.with_file_name("pids");
    std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (pid, name) = line.split_once(' ')?;
            (name == "kube-apiserver").then(|| pid.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no kube-apiserver in {}", pids.display()))
}

/// Watches every grant Secret of a namespace: each new token's lateness (seen at minus when its
/// predecessor was due), and any token seen after its own expiry.
struct TokenWatch {
    state: Arc<Mutex<TokenState>>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct TokenState {
    /// Secret name -> (expiry of the token it holds, rotations seen).
    secrets: HashMap<String, (Timestamp, usize)>,
    /// The lateness of every rotation seen, and which rotation of its Secret it was (1, 2, ...).
    lateness: Vec<(usize, f64)>,
    expired: usize,
    longest_expired: f64,
}

struct LatenessReport {
    count: usize,
    /// Rotations seen before they were due.
    early: usize,
    p50: f64,
    p99: f64,
    max: f64,
    expired: usize,
    longest_expired: f64,
}

impl TokenWatch {
    async fn start(client: &Client, ns: &str, validity: &str, renew_before: &str) -> Self {
        let validity = sas_operator::duration::parse(validity).expect("SCALE_VALIDITY");
        let renew_before = sas_operator::duration::parse(renew_before).expect("SCALE_RENEW_BEFORE");
        let state = Arc::new(Mutex::new(TokenState::default()));
        let (listed, mut ready) = tokio::sync::watch::channel(false);
        let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=sas-operator");
        let events =
            watcher(Api::<Secret>::namespaced(client.clone(), ns), config).default_backoff();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                let seen = Timestamp::now();
                let secret = match event {
                    Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => secret,
                    Ok(watcher::Event::InitDone) => {
                        let _ = listed.send(true);
                        continue;
                    }
                    _ => continue,
                };
                let Some(expires) = secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get("expiresAt"))
                    .and_then(|value| std::str::from_utf8(&value.0).ok()?.parse().ok())
                else {
                    continue;
                };
                let uid = secret
                    .owner_references()
                    .first()
                    .map(|owner| owner.uid.clone())
                    .unwrap_or_default();
                let mut state = shared.lock().expect("token state");
                let previous = state.secrets.get(&secret.name_any()).copied();
                let rotations = match previous {
                    Some((old, rotations)) if old != expires => {
                        let due = Renewal::of(&uid, validity, renew_before).renew_at(old);
                        // Negative: renewed before the bench thinks it was due (a jitter or
                        // schedule that differs from the operator's; reported, not hidden).
                        let late = seen.duration_since(due).as_secs_f64();
                        state.lateness.push((rotations + 1, late));
                        if seen >= old {
                            state.expired += 1;
                            let expired = seen.duration_since(old).as_secs_f64();
                            state.longest_expired = state.longest_expired.max(expired);
                        }
                        rotations + 1
                    }
                    Some((_, rotations)) => rotations,
                    None => 0,
                };
                state
                    .secrets
                    .insert(secret.name_any(), (expires, rotations));
            }
        });
        ready.wait_for(|listed| *listed).await.expect("token watch");
        TokenWatch { state, _task: task }
    }

    fn rotations(&self) -> usize {
        let state = self.state.lock().expect("token state");
        state.secrets.values().map(|(_, rotations)| rotations).sum()
    }

    /// The fewest rotations any of `n` Secrets has had (0 while some are unseen).
    fn least_rotations(&self, n: usize) -> usize {
        let state = self.state.lock().expect("token state");
        if state.secrets.len() < n {
            return 0;
        }
        state
            .secrets
            .values()
            .map(|(_, rotations)| *rotations)
            .min()
            .unwrap_or(0)
    }

    /// Lateness of the rotations whose round (1 = the first after the cold start) `keep` accepts.
    fn report(&self, keep: impl Fn(usize) -> bool) -> LatenessReport {
        let state = self.state.lock().expect("token state");
        let mut lateness: Vec<f64> = state
            .lateness
            .iter()
            .filter(|(round, _)| keep(*round))
            .map(|(_, late)| *late)
            .collect();
        let early = lateness.iter().filter(|late| **late < 0.0).count();
        lateness.iter_mut().for_each(|late| *late = late.max(0.0));
        lateness.sort_by(f64::total_cmp);
        let at = |q: f64| {
            lateness
                .get(((lateness.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN)
        };
        // Any Secret whose token has passed its expiry unreplaced counts too.
        let now = Timestamp::now();
        let stale = state
            .secrets
            .values()
            .filter(|(expires, _)| *expires <= now)
            .count();
        LatenessReport {
            count: lateness.len(),
            early,
            p50: at(0.5),
            p99: at(0.99),
            max: lateness.last().copied().unwrap_or(f64::NAN),
            expired: state.expired + stale,
            longest_expired: state.longest_expired,
        }
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

async fn wait_until<F, Fut>(what: &str, timeout: Duration, done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_every(what, timeout, Duration::from_millis(100), done).await;
}

async fn wait_until_every<F, Fut>(what: &str, timeout: Duration, every: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// Whether the operator's `/readyz` answers 200 (its caches have synced).
async fn is_ready(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/readyz");
    reqwest::get(&url)
        .await
        .is_ok_and(|response| response.status().is_success())
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

/// Per grant: create its Secret, apply its status, publish one Event (as `client`: the
/// operator's ServiceAccount).
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

    /// Waits until `n` grants are Ready (polling every 10 ms: the cold start's resolution).
    async fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.ready() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} grants Ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn ready(&self) -> usize {
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
    }
}

impl Drop for ReadyCounter {
    fn drop(&mut self) {
        self._task.abort();
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
    // The API server rotates its audit log at 2 GB (hack/testenv.sh): then the requests before the rotation
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
        // A request without an object (the API probe's /readyz) is counted by its path.
        let mut resource = match object["resource"].as_str() {
            Some(resource) => resource.to_string(),
            None => event["requestURI"]
                .as_str()
                .map_or("?", |uri| uri.split('?').next().unwrap_or(uri))
                .to_string(),
        };
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
