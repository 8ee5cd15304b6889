//! deploy/monitoring: the PrometheusRule's alerts (promtool's checks and unit tests in
//! deploy/monitoring/tests/), their runbook links, the Grafana dashboard and its ConfigMap, and
//! the real operator's /metrics, which must have every metric and label the alerts and the
//! dashboard use, and per-grant series only on the leader.
//!
//! promtool comes from `hack/tools.sh` (hack/build-promtool.sh); without it these tests fail.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kube::Client;
use operator::*;
use serde_json::{Value, json};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Labels Prometheus adds to every series of a target; the operator does not export them.
const TARGET_LABELS: [&str; 6] = ["job", "instance", "pod", "service", "endpoint", "container"];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(REPO).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn run_ok(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The promtool that `hack/tools.sh` built; a missing one fails the test, never skips it.
fn promtool() -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_path("hack/build-promtool.sh"))
        .arg("--path")
        .output()
        .expect("run hack/build-promtool.sh --path");
    let path = PathBuf::from(run_ok("hack/build-promtool.sh --path", output).trim());
    assert!(
        path.is_file(),
        "promtool is not at {}: run hack/tools.sh (or hack/build-promtool.sh) first",
        path.display()
    );
    path
}

fn prometheus_rule() -> Value {
    serde_saphyr::from_str(&read("deploy/monitoring/prometheusrule.yaml"))
        .expect("prometheusrule.yaml is YAML")
}

fn rules() -> Vec<Value> {
    prometheus_rule()["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .collect()
}

fn alert_names() -> Vec<String> {
    rules()
        .iter()
        .map(|rule| {
            rule["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned()
        })
        .collect()
}

/// A directory with the PrometheusRule's spec as a plain rule file (rules.yaml, JSON being
/// YAML) beside copies of deploy/monitoring/tests/*.yaml, as promtool reads them.
fn promtool_workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let spec = &prometheus_rule()["spec"];
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(spec).unwrap(),
    )
    .expect("write rules.yaml");
    for test_file in rule_test_files() {
        std::fs::copy(&test_file, dir.path().join(test_file.file_name().unwrap()))
            .expect("copy a rule test file");
    }
    dir
}

fn rule_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("deploy/monitoring/tests"))
        .expect("deploy/monitoring/tests")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no rule tests in deploy/monitoring/tests"
    );
    files
}

#[test]
fn promtool_checks_the_rules() {
    let dir = promtool_workdir();
    let output = Command::new(promtool())
        .args(["check", "rules"])
        .arg(dir.path().join("rules.yaml"))
        .output()
        .expect("run promtool check rules");
    let stdout = run_ok("promtool check rules", output);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", alert_names().len())),
        "{stdout}"
    );
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let dir = promtool_workdir();
    let files: Vec<PathBuf> = rule_test_files()
        .iter()
        .map(|file| dir.path().join(file.file_name().unwrap()))
        .collect();
    let output = Command::new(promtool())
        .args(["test", "rules"])
        .args(&files)
        .current_dir(dir.path())
        .output()
        .expect("run promtool test rules");
    let stdout = run_ok("promtool test rules", output);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

/// Every `alert_rule_test` of deploy/monitoring/tests: (alert name, whether it expects alerts).
fn alert_rule_tests() -> Vec<(String, bool)> {
    rule_test_files()
        .iter()
        .flat_map(|file| {
            let tests: Value = serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap())
                .expect("a rule test file is YAML");
            tests["tests"]
                .as_array()
                .expect("tests")
                .iter()
                .flat_map(|test| {
                    test["alert_rule_test"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|case| {
                    let firing = case["exp_alerts"]
                        .as_array()
                        .is_some_and(|alerts| !alerts.is_empty());
                    (case["alertname"].as_str().unwrap().to_owned(), firing)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let cases = alert_rule_tests();
    for alert in alert_names() {
        for firing in [true, false] {
            assert!(
                cases.contains(&(alert.clone(), firing)),
                "{alert} has no {} case in deploy/monitoring/tests",
                if firing { "firing" } else { "quiet" }
            );
        }
    }
}

/// GitHub's anchors of the headings of a Markdown file.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| {
            heading
                .trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_has_a_severity_a_description_and_a_runbook_anchor_in_docs() {
    let anchors = heading_anchors(&read("docs/runbooks.md"));
    for rule in rules() {
        let alert = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{alert}: severity {severity:?}"
        );
        let description = rule["annotations"]["description"].as_str().unwrap_or("");
        assert!(!description.is_empty(), "{alert} has no description");
        // An alert about grants names the grant; the others name the operator's namespace.
        let expr = rule["expr"].as_str().unwrap();
        if expr.contains("by (namespace, name)") {
            assert!(
                description.contains("{{ $labels.namespace }}/{{ $labels.name }}"),
                "{alert}'s description does not name the grant: {description}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        let (page, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} has no anchor"));
        assert!(page.ends_with("/docs/runbooks.md"), "{alert}: {url}");
        assert_eq!(
            anchor,
            alert.to_lowercase(),
            "{alert}: one anchor per alert"
        );
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/runbooks.md has no heading for #{anchor}"
        );
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/monitoring/dashboard.json")).expect("dashboard.json")
}

#[test]
fn the_dashboard_has_the_panels_operators_look_for() {
    let dashboard = dashboard();
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|panel| panel["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Soonest token expiry",
        "Grants not Ready",
        "Rotations by result",
        "Rotation lateness",
        "Reconcile duration",
        "Leader per pod",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    let lateness = dashboard_queries()
        .into_iter()
        .filter(|(_, expr, _)| expr.contains("sas_operator_rotation_lateness_seconds_bucket"))
        .map(|(_, expr, _)| expr)
        .collect::<Vec<_>>();
    for quantile in ["histogram_quantile(0.5,", "histogram_quantile(0.99,"] {
        assert!(
            lateness.iter().any(|expr| expr.starts_with(quantile)),
            "rotation lateness has no {quantile} query: {lateness:?}"
        );
    }
}

#[test]
fn the_dashboard_configmap_is_generated_from_dashboard_json_for_the_grafana_sidecar() {
    let output = common::control_plane()
        .kubectl()
        .arg("kustomize")
        .arg(repo_path("deploy/monitoring"))
        .output()
        .expect("run kubectl kustomize");
    let yaml = run_ok("kubectl kustomize deploy/monitoring", output);
    let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("kustomize output");
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ConfigMap", "PrometheusRule", "ServiceMonitor"])
    );
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["sas-operator.json"].as_str(),
        Some(read("deploy/monitoring/dashboard.json").as_str()),
        "the ConfigMap's dashboard differs from dashboard.json"
    );
}

#[test]
fn the_service_monitor_selects_deploys_metrics_service_and_keeps_the_grants_namespace() {
    let monitor: Value = serde_saphyr::from_str(&read("deploy/monitoring/servicemonitor.yaml"))
        .expect("servicemonitor.yaml");
    let output = common::control_plane()
        .kubectl()
        .arg("kustomize")
        .arg(repo_path("deploy"))
        .output()
        .expect("run kubectl kustomize");
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&run_ok("kubectl kustomize deploy/", output))
            .expect("kustomize output");
    let services: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Service").collect();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|service| {
            selector
                .iter()
                .all(|(key, value)| service["metadata"]["labels"][key] == *value)
        })
        .collect();
    assert_eq!(selected.len(), 1, "the ServiceMonitor selects {selected:?}");
    let service = selected[0];
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([service["metadata"]["namespace"]])
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    let ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|port| &port["name"])
        .collect();
    assert!(ports.contains(&&endpoint["port"]), "{ports:?}");
    assert_eq!(endpoint["honorLabels"], true);
}

// ----- The real operator's /metrics -----

/// Every PromQL expression the alerts and the dashboard use: (where, expression, labels the
/// text around it uses: a legend's `{{label}}`, an annotation's `$labels.label`).
fn queries() -> Vec<(String, String, BTreeSet<String>)> {
    let mut queries: Vec<_> = rules()
        .into_iter()
        .map(|rule| {
            let annotations = serde_json::to_string(&rule["annotations"]).unwrap();
            (
                format!("alert {}", rule["alert"].as_str().unwrap()),
                rule["expr"].as_str().unwrap().to_owned(),
                labels_after(&annotations, "$labels."),
            )
        })
        .collect();
    queries.extend(dashboard_queries());
    queries
}

fn dashboard_queries() -> Vec<(String, String, BTreeSet<String>)> {
    let dashboard = dashboard();
    let mut queries = vec![];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let legend = target["legendFormat"].as_str().unwrap_or("");
            queries.push((
                format!("panel {:?}", panel["title"].as_str().unwrap()),
                target["expr"].as_str().unwrap().to_owned(),
                labels_after(legend, "{{"),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            // label_values(metric, label)
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .expect("label_values(metric, label)");
            let (metric, label) = inner.split_once(',').unwrap();
            queries.push((
                format!("variable {}", variable["name"].as_str().unwrap()),
                metric.trim().to_owned(),
                BTreeSet::from([label.trim().to_owned()]),
            ));
        }
    }
    queries
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn labels_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.split(marker)
        .skip(1)
        .map(identifier)
        .filter(|label| !label.is_empty())
        .collect()
}

fn metrics_in(expr: &str) -> BTreeSet<String> {
    expr.match_indices("sas_operator_")
        .map(|(at, _)| identifier(&expr[at..]))
        .collect()
}

/// Labels in `by (...)`/`without (...)` clauses and in `{...}` matchers.
fn labels_in(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for keyword in ["by (", "without ("] {
        for part in expr.split(keyword).skip(1) {
            let list = part.split(')').next().unwrap();
            labels.extend(list.split(',').map(|l| l.trim().to_owned()));
        }
    }
    for part in expr.split('{').skip(1) {
        let matchers = part.split('}').next().unwrap();
        for matcher in matchers.split(',') {
            let name = identifier(matcher.trim());
            if !name.is_empty() {
                labels.insert(name);
            }
        }
    }
    labels.retain(|l| !l.is_empty());
    labels
}

/// Metric name -> the label names its samples carry, from an OpenMetrics text.
fn exposition(body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = identifier(line);
        let labels = series.entry(name.clone()).or_default();
        if let Some(rest) = line[name.len()..].strip_prefix('{') {
            let inner = rest.rsplit_once('}').expect("a closing brace").0;
            labels.extend(labels_after(&format!(",{inner}"), ","));
        }
    }
    series
}

/// The leader's /metrics with a Ready grant lacks none of the metrics or labels used.
fn assert_has_everything_queries_use(body: &str) {
    let series = exposition(body);
    let mut missing = vec![];
    for (origin, expr, mut labels) in queries() {
        let metrics = metrics_in(&expr);
        assert!(
            !metrics.is_empty(),
            "{origin} uses no sas_operator metric: {expr}"
        );
        for metric in &metrics {
            if !series.contains_key(metric) {
                missing.push(format!("{origin}: metric {metric}"));
            }
        }
        labels.extend(labels_in(&expr));
        let carried: BTreeSet<&String> = metrics
            .iter()
            .filter_map(|metric| series.get(metric))
            .flatten()
            .collect();
        // Series of the operator itself (no grant label) get the target's namespace.
        let operator_level = !carried.iter().any(|label| *label == "name");
        for label in labels {
            let from_target =
                TARGET_LABELS.contains(&label.as_str()) || (label == "namespace" && operator_level);
            if !carried.contains(&label) && !from_target {
                missing.push(format!("{origin}: label {label} on {metrics:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "/metrics lacks what the alerts or the dashboard use:\n{}\n\n{body}",
        missing.join("\n")
    );
}

/// A replica with leader election on, its admin server on a known port.
fn replica(ns: &str, identity: &str) -> (Operator, String) {
    let address = format!("127.0.0.1:{}", free_local_port());
    let operator = Operator::spawn(
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
            "monitoring",
            "--metrics-address",
            &address,
        ],
        &[("POD_NAME", identity)],
    );
    (operator, format!("http://{address}/metrics"))
}

async fn scrape(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    (response.status() == 200).then_some(())?;
    response.text().await.ok()
}

async fn ready_grant(client: &Client, ns: &str) {
    let azurite = common::azurite();
    create_secret(
        client,
        ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
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
    wait_ready(client, ns, "g", "True", "TokenValid").await;
}

fn has_line(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

#[tokio::test]
async fn the_leaders_metrics_have_every_metric_and_label_the_alerts_and_dashboard_use() {
    let (client, ns) = namespace("monitoring").await;
    let (_operator, metrics_url) = replica(&ns, "only");
    ready_grant(&client, &ns).await;
    let ready = format!(r#"sas_operator_grant_ready{{namespace="{ns}",name="g"}} 1"#);
    let body = wait_for(
        "the Ready grant in the leader's /metrics",
        Duration::from_secs(30),
        || async {
            let body = scrape(&metrics_url).await?;
            has_line(&body, &ready).then_some(body)
        },
    )
    .await;
    assert!(has_line(&body, "sas_operator_leader 1"), "{body}");
    assert!(
        has_line(
            &body,
            &format!(
                r#"sas_operator_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        "{body}"
    );
    assert_has_everything_queries_use(&body);
}

#[tokio::test]
async fn only_the_leader_exports_per_grant_series_and_leader_one() {
    let (client, ns) = namespace("monitoring-pair").await;
    let (_a, a_url) = replica(&ns, "replica-a");
    let (_b, b_url) = replica(&ns, "replica-b");
    ready_grant(&client, &ns).await;
    let grant_label = format!(r#"namespace="{ns}",name="g""#);
    // Both scraped as Prometheus would: the one with the grant's series must be the leader.
    let (leader, standby) = wait_for(
        "one replica exporting the grant",
        Duration::from_secs(30),
        || async {
            let a = scrape(&a_url).await?;
            let b = scrape(&b_url).await?;
            match (a.contains(&grant_label), b.contains(&grant_label)) {
                (true, false) => Some((a, b)),
                (false, true) => Some((b, a)),
                _ => None,
            }
        },
    )
    .await;
    assert!(has_line(&leader, "sas_operator_leader 1"), "{leader}");
    assert!(has_line(&standby, "sas_operator_leader 0"), "{standby}");
    assert!(
        !standby.contains(r#"name="g""#),
        "the standby exports per-grant series:\n{standby}"
    );
    // Both say which version runs, so SasOperatorAbsent sees either.
    for body in [&leader, &standby] {
        assert!(body.contains("sas_operator_build_info{"), "{body}");
    }
}
