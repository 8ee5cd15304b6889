//! The CRD schema (admission) and the controller's own validation agree on every input.
//!
//! Thousands of seeded candidate values per field (durations, Secret names and keys,
//! endpoints, IPs, names that enter the string-to-sign) are submitted to the real API server as
//! SasGrants with a server-side dry run, and each outcome is compared with
//! `GrantPlan::from_spec` on the same object: admitted exactly when the controller accepts it,
//! and the controller never panics, whatever the input.

mod common;
#[path = "support/operator.rs"]
mod operator;

use std::time::Instant;

use futures::{StreamExt, stream};
use kube::{Api, api::PostParams};
use sas_operator::crd::SasGrant;
use sas_operator::reconcile::grant::GrantPlan;
use serde_json::{Value, json};

/// Requests in flight at once; dry runs are cheap for the server.
const CONCURRENCY: usize = 32;
const SEED: u64 = 0x5a50_6e7a_2026;

/// A small deterministic generator (xorshift64*): the same candidates on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A valid grant whose spec is then edited by a case.
fn base_spec() -> Value {
    json!({
        "storageAccount": {"name": "acct", "keySecretRef": {"name": "keys"}},
        "resource": {"container": {"name": "data"}},
        "permissions": "rl",
    })
}

struct Case {
    field: &'static str,
    value: String,
    spec: Value,
}

fn case(field: &'static str, value: String, edit: impl FnOnce(&mut Value, &str)) -> Case {
    let mut spec = base_spec();
    edit(&mut spec, &value);
    Case { field, value, spec }
}

// ---- durations ----

const UNITS: [&str; 12] = [
    "ns", "us", "µs", "μs", "ms", "s", "m", "h", "", "d", "H", "hh",
];

fn number(rng: &mut Rng) -> String {
    let digits = match rng.below(10) {
        0..=5 => 1 + rng.below(4),
        6 | 7 => 5 + rng.below(10),
        _ => 15 + rng.below(8),
    };
    let mut text: String = (0..digits)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect();
    if rng.chance(5) {
        text = format!("{}{text}", "0".repeat(rng.below(20)));
    }
    text
}

fn duration_candidate(rng: &mut Rng) -> String {
    let parts = 1 + rng.below(3);
    let mut text = String::new();
    if rng.chance(3) {
        text.push(*rng.pick(&[&'-', &'+', &' ']));
    }
    for _ in 0..parts {
        text.push_str(&number(rng));
        if rng.chance(4) {
            text.push('.');
            text.push_str(&number(rng));
        }
        let unit = if rng.chance(85) {
            UNITS[5 + rng.below(3)]
        } else {
            UNITS[rng.below(UNITS.len())]
        };
        text.push_str(unit);
    }
    text
}

/// Edge forms: Go's range, the issue's examples, length limits, what Go accepts and the
/// pattern does not.
const DURATION_EDGES: [&str; 34] = [
    "99999999999999999999h",
    "31536000000000000ns",
    "31536000000000001ns",
    "9223372036854775807ns",
    "9223372036854775808ns",
    "2562047h",
    "2562048h",
    "2562047h47m16s854775807ns",
    "2562047h47m16s854775808ns",
    "0",
    "0s",
    "1.5h",
    ".5h",
    "1.h",
    "1µs",
    "1μs",
    "-1h",
    "+1h",
    "",
    "1h ",
    "8760h",
    "8760h1ns",
    "525600m",
    "2m",
    "119s",
    "119999999999ns",
    "120000000000ns",
    "1h1h",
    "1H",
    "1d",
    "000000000000000000008760h",
    "00000000000000000008760h",
    "8h\n",
    "1h30m15s",
];

fn duration_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let validity = |spec: &mut Value, v: &str| spec["validity"] = json!(v);
    for edge in DURATION_EDGES {
        cases.push(case("validity", edge.into(), validity));
    }
    while cases.len() < count {
        cases.push(case("validity", duration_candidate(rng), validity));
    }
    cases
}

/// `renewBefore` against a few validities, around the margin `max(1m, validity/10)` in
/// nanoseconds and at random.
fn renewal_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    const VALIDITIES: [(&str, u128); 6] = [
        ("2m", 120),
        ("10m", 600),
        ("11m", 660),
        ("1h", 3600),
        ("8h", 8 * 3600),
        ("8760h", 8760 * 3600),
    ];
    let mut cases = Vec::new();
    let renewal = |validity: &'static str, renew: String| {
        case("renewBefore", renew, move |spec, r| {
            spec["validity"] = json!(validity);
            spec["renewBefore"] = json!(r);
        })
    };
    for (validity, seconds) in VALIDITIES {
        let nanos = seconds * 1_000_000_000;
        let margin = (nanos / 10).max(60_000_000_000);
        for delta in [0i128, 1, -1, 9, -9, 1_000_000_000, -1_000_000_000] {
            let renew = (nanos - margin) as i128 + delta;
            cases.push(renewal(validity, format!("{renew}ns")));
        }
        cases.push(renewal(validity, "59m59s".into()));
        cases.push(renewal(validity, format!("{seconds}s")));
        cases.push(renewal(validity, "99999999999999999999h".into()));
    }
    while cases.len() < count {
        let (validity, _) = VALIDITIES[rng.below(VALIDITIES.len())];
        cases.push(renewal(validity, duration_candidate(rng)));
    }
    cases
}

// ---- names ----

const NAME_CHARS: [&str; 24] = [
    "a", "b", "z", "0", "9", "-", ".", "a", "k", "e", "y", "s", "1", "-", "?", "/", "%", "A", "Z",
    "_", " ", "&", "=", "\n",
];

fn dns_label(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|i| {
            let inner = i > 0 && i + 1 < len && rng.chance(15);
            if inner {
                '-'
            } else {
                char::from(*rng.pick(&[&b'a', &b'q', &b'z', &b'0', &b'7']))
            }
        })
        .collect()
}

fn name_candidate(rng: &mut Rng) -> String {
    let mut name = match rng.below(4) {
        // near-valid DNS subdomains of every length, including around 253
        0 | 1 => {
            let target = match rng.below(4) {
                0 => 250 + rng.below(6),
                _ => 1 + rng.below(40),
            };
            let mut name = String::new();
            while name.len() < target {
                if !name.is_empty() {
                    name.push('.');
                }
                let len = (target - name.len()).clamp(1, 1 + rng.below(63));
                name.push_str(&dns_label(rng, len));
            }
            name
        }
        _ => (0..rng.below(20)).map(|_| rng.pick(&NAME_CHARS)).collect(),
    };
    for _ in 0..rng.below(3) {
        if rng.chance(50) && !name.is_empty() {
            let at = rng.below(name.len());
            if name.is_char_boundary(at) {
                name.insert_str(at, rng.pick(&NAME_CHARS));
            }
        }
    }
    name
}

const NAME_EDGES: [&str; 12] = [
    "?",
    "?watch=1&timeoutSeconds=3600&",
    "..",
    ".",
    "a/b",
    "%2F",
    "Keys",
    "keys",
    "k.e-y.s",
    "",
    "-keys",
    "keys-",
];

fn secret_name_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let key_secret = |spec: &mut Value, v: &str| {
        spec["storageAccount"]["keySecretRef"]["name"] = json!(v);
    };
    let target = |spec: &mut Value, v: &str| spec["target"] = json!({"secretName": v});
    for edge in NAME_EDGES {
        cases.push(case("keySecretRef.name", edge.into(), key_secret));
        cases.push(case("target.secretName", edge.into(), target));
    }
    while cases.len() < count {
        let name = name_candidate(rng);
        if rng.chance(50) {
            cases.push(case("keySecretRef.name", name, key_secret));
        } else {
            cases.push(case("target.secretName", name, target));
        }
    }
    cases
}

fn secret_key_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    const KEY_CHARS: [&str; 14] = [
        "k", "E", "y", "1", "-", "_", ".", ".", "/", "?", " ", "=", ":", "é",
    ];
    let key = |spec: &mut Value, v: &str| {
        spec["storageAccount"]["keySecretRef"]["key"] = json!(v);
    };
    let mut cases: Vec<Case> = [".", "..", "...", "..k", ".k", "k..", "key1", "", "a/b"]
        .into_iter()
        .map(|edge| case("keySecretRef.key", edge.into(), key))
        .collect();
    cases.push(case("keySecretRef.key", "k".repeat(253), key));
    cases.push(case("keySecretRef.key", "k".repeat(254), key));
    while cases.len() < count {
        let value: String = (0..1 + rng.below(8))
            .map(|_| rng.pick(&KEY_CHARS))
            .collect();
        cases.push(case("keySecretRef.key", value, key));
    }
    cases
}

// ---- endpoints ----

fn endpoint_candidate(rng: &mut Rng) -> String {
    let scheme = rng.pick(&[
        &"https://",
        &"https://",
        &"https://",
        &"http://",
        &"http://",
        &"HTTPS://",
        &"ftp://",
        &"",
        &"//",
        &"https:/",
    ]);
    let userinfo = if rng.chance(8) {
        *rng.pick(&[&"user@", &"u:p@", &"@"])
    } else {
        ""
    };
    let host = rng.pick(&[
        &"acct.blob.core.windows.net",
        &"attacker.example",
        &"localhost",
        &"localhost",
        &"127.0.0.1",
        &"127.0.0.1",
        &"127.255.255.255",
        &"127.0.0.256",
        &"127.00.0.1",
        &"127.1",
        &"[::1]",
        &"[::2]",
        &"[::1",
        &"10.0.0.1",
        &"-bad.example",
        &"a..b",
        &"localhost.attacker.example",
        &"127.0.0.1.nip.io",
        &"LOCALHOST",
        &"Acct.Blob.Core.Windows.Net",
        &"",
    ]);
    let port = if rng.chance(50) {
        *rng.pick(&[
            &":10000", &":443", &":0", &":65536", &":123456", &":", &":x", &":1:2",
        ])
    } else {
        ""
    };
    let path = if rng.chance(70) {
        *rng.pick(&[
            &"/devstoreaccount1",
            &"/",
            &"/x;SharedAccessSignature=evil",
            &"/a=b",
            &"/?q=1",
            &"#f",
            &"/a b",
            &"/a%20b",
            &"/~._-/x",
            &"/a\tb",
            &"/é",
            &"//",
            &"/acct/",
        ])
    } else {
        ""
    };
    let mut url = format!("{scheme}{userinfo}{host}{port}{path}");
    if rng.chance(10) {
        let at = rng.below(url.len() + 1);
        if url.is_char_boundary(at) {
            url.insert(at, *rng.pick(&[&';', &'=', &'?', &' ', &'\n', &'@', &'#']));
        }
    }
    url
}

fn endpoint_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    let blob = |spec: &mut Value, v: &str| {
        spec["storageAccount"]["endpoints"] = json!({"blob": v});
    };
    let mut cases = vec![
        case(
            "endpoints.blob",
            "https://attacker.example/x;SharedAccessSignature=evil".into(),
            blob,
        ),
        case(
            "endpoints.blob",
            format!("https://h/{}", "a".repeat(502)),
            blob,
        ),
        case(
            "endpoints.blob",
            format!("https://h/{}", "a".repeat(503)),
            blob,
        ),
    ];
    while cases.len() < count {
        cases.push(case("endpoints.blob", endpoint_candidate(rng), blob));
    }
    cases
}

// ---- ip ----

fn ip_candidate(rng: &mut Rng) -> String {
    let address = |rng: &mut Rng| {
        let count = if rng.chance(90) {
            4
        } else {
            3 + 2 * rng.below(2)
        };
        (0..count)
            .map(|_| {
                rng.pick(&[
                    &"0", &"1", &"9", &"10", &"99", &"100", &"127", &"199", &"200", &"249", &"250",
                    &"255", &"256", &"300", &"01", &"00", &"1a", &"", &"168",
                ])
                .to_string()
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut ip = address(rng);
    if rng.chance(40) {
        ip = format!("{ip}-{}", address(rng));
    }
    if rng.chance(5) {
        ip.push(*rng.pick(&[&' ', &'/', &':', &'-']));
    }
    ip
}

fn ip_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    let ip = |spec: &mut Value, v: &str| spec["ip"] = json!(v);
    let mut cases: Vec<Case> = [
        "10.0.0.1",
        "10.0.0.1-10.0.0.1",
        "10.0.0.2-10.0.0.1",
        "255.255.255.255-255.255.255.255",
        "1.0.0.0-0.255.255.255",
        "",
        "::1",
    ]
    .into_iter()
    .map(|edge| case("ip", edge.into(), ip))
    .collect();
    while cases.len() < count {
        cases.push(case("ip", ip_candidate(rng), ip));
    }
    cases
}

// ---- names that enter the string-to-sign ----

fn signed_name_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    const CHARS: [&str; 10] = [
        "a", "/", "\n", "\u{0}", "\u{7f}", "\u{85}", "é", "\t", " ", "\u{a0}",
    ];
    let blob = |spec: &mut Value, v: &str| {
        spec["resource"] = json!({"blob": {"container": "data", "name": v}});
    };
    let mut cases = vec![
        case("resource.blob.name", "b".repeat(1024), blob),
        case("resource.blob.name", "b".repeat(1025), blob),
        case("resource.blob.name", "é".repeat(1024), blob),
        case("resource.blob.name", String::new(), blob),
    ];
    while cases.len() < count {
        let mut value: String = "a".repeat(rng.below(4));
        for _ in 0..1 + rng.below(6) {
            value.push_str(rng.pick(&CHARS));
        }
        cases.push(case("resource.blob.name", value, blob));
    }
    cases
}

// ---- every other string field: lengths, control characters, letter sets ----

/// (field, longest admitted length, where the value goes, characters it admits).
type Setter = fn(&mut Value, &str);
const OTHER_FIELDS: [(&str, usize, Setter, &str); 12] = [
    (
        "storageAccount.name",
        24,
        |s, v| s["storageAccount"]["name"] = json!(v),
        "az09",
    ),
    (
        "permissions",
        32,
        |s, v| s["permissions"] = json!(v),
        "rwdlacup",
    ),
    (
        "resource.account.services",
        16,
        |s, v| s["resource"] = json!({"account": {"services": v, "resourceTypes": "sco"}}),
        "bqtf",
    ),
    (
        "resource.account.resourceTypes",
        16,
        |s, v| s["resource"] = json!({"account": {"services": "b", "resourceTypes": v}}),
        "sco",
    ),
    (
        "resource.container.name",
        63,
        |s, v| s["resource"] = json!({"container": {"name": v}}),
        "abz0-/ é",
    ),
    (
        "resource.queue.name",
        63,
        |s, v| s["resource"] = json!({"queue": {"name": v}}),
        "abz0-/ é",
    ),
    (
        "resource.table.startPk",
        1024,
        |s, v| s["resource"] = json!({"table": {"name": "t", "startPk": v}}),
        "abz0-/ é",
    ),
    (
        "resource.file.path",
        1024,
        |s, v| s["resource"] = json!({"file": {"share": "s", "path": v}}),
        "abz0-/ é",
    ),
    (
        "resource.blob.snapshot",
        64,
        |s, v| s["resource"] = json!({"blob": {"container": "c", "name": "b", "snapshot": v}}),
        "abz0-/ é",
    ),
    (
        "storedAccessPolicy",
        64,
        |s, v| s["storedAccessPolicy"] = json!(v),
        "abz0-/ é",
    ),
    (
        "encryptionScope",
        63,
        |s, v| s["encryptionScope"] = json!(v),
        "abz0-/ é",
    ),
    ("version", 10, |s, v| s["version"] = json!(v), "0123456789-"),
];

fn other_field_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    const CHARS: [&str; 20] = [
        "r", "l", "b", "q", "s", "c", "o", "a", "z", "0", "2", "-", "/", "é", " ", "\n", "\u{7f}",
        "\u{0}", "R", "x",
    ];
    let mut cases = Vec::new();
    while cases.len() < count {
        let (field, max, set, good) = OTHER_FIELDS[rng.below(OTHER_FIELDS.len())];
        let good: Vec<char> = good.chars().collect();
        let len = match rng.below(6) {
            0 => 0,
            1 | 2 => 1 + rng.below(4),
            _ => (max - 1 + rng.below(3)).max(1),
        };
        let value: String = if field == "version" && rng.chance(70) {
            let mut date = format!(
                "20{:02}-{:02}-{:02}",
                rng.below(100),
                rng.below(13),
                rng.below(32)
            );
            if rng.chance(30) {
                let at = rng.below(date.len());
                date.replace_range(at..at + 1, rng.pick(&CHARS));
            }
            date
        } else {
            let mut value = String::new();
            while value.chars().count() < len {
                if rng.chance(95) {
                    value.push(good[rng.below(good.len())]);
                } else {
                    value.push_str(rng.pick(&CHARS));
                }
            }
            value
        };
        let mut spec = base_spec();
        set(&mut spec, &value);
        cases.push(Case { field, value, spec });
    }
    cases
}

/// What admission said: admitted, or refused with the server's message.
async fn admitted(api: &Api<SasGrant>, grant: &SasGrant) -> Result<(), String> {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, grant).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            Err(status.message)
        }
        Err(other) => panic!("dry-run create failed for another reason: {other}"),
    }
}

#[tokio::test]
async fn admission_and_the_controller_agree_on_every_generated_spec() {
    let (client, ns) = operator::namespace("admission").await;
    let api = Api::<SasGrant>::namespaced(client, &ns);
    let mut rng = Rng(SEED);
    let mut cases = Vec::new();
    cases.extend(duration_cases(&mut rng, 2000));
    cases.extend(renewal_cases(&mut rng, 1500));
    cases.extend(secret_name_cases(&mut rng, 2500));
    cases.extend(secret_key_cases(&mut rng, 800));
    cases.extend(endpoint_cases(&mut rng, 2000));
    cases.extend(ip_cases(&mut rng, 1500));
    cases.extend(signed_name_cases(&mut rng, 800));
    cases.extend(other_field_cases(&mut rng, 3000));
    let total = cases.len();

    let started = Instant::now();
    let outcomes: Vec<(Case, Result<(), String>, bool)> = stream::iter(cases)
        .map(|case| {
            let api = api.clone();
            async move {
                let grant: SasGrant = serde_json::from_value(json!({
                    "apiVersion": "sas-operator.io/v1alpha1",
                    "kind": "SasGrant",
                    "metadata": {"name": "g"},
                    "spec": case.spec,
                }))
                .expect("every case is a well-typed SasGrant");
                let server = admitted(&api, &grant).await;
                let controller =
                    std::panic::catch_unwind(|| GrantPlan::from_spec("g", &grant.spec).is_ok())
                        .unwrap_or_else(|_| {
                            panic!(
                                "the controller panicked on {} = {:?}",
                                case.field, case.value
                            )
                        });
                (case, server, controller)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut per_field: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut disagreements = Vec::new();
    for (case, server, controller) in &outcomes {
        let counts = per_field.entry(case.field).or_default();
        if server.is_ok() {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        if server.is_ok() != *controller {
            disagreements.push(format!(
                "{} = {:?}: admission {}, controller {}",
                case.field,
                case.value,
                match server {
                    Ok(()) => "admits".to_string(),
                    Err(message) => format!("refuses ({message})"),
                },
                if *controller { "accepts" } else { "refuses" },
            ));
        }
    }
    println!("{total} dry-run grants in {elapsed:?}; admitted/refused per field: {per_field:?}");
    assert!(
        disagreements.is_empty(),
        "{} of {total} disagree, e.g.:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
    for (field, (admitted, refused)) in per_field {
        assert!(
            admitted >= 10 && refused >= 10,
            "{field}: the generator must produce both kinds ({admitted} admitted, {refused} refused)"
        );
    }
}

#[tokio::test]
async fn every_example_grant_is_admitted_and_planned() {
    let (client, ns) = operator::namespace("admission-examples").await;
    let api = Api::<SasGrant>::namespaced(client, &ns);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut grants = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("kind: SasGrant") {
            continue;
        }
        let grant: SasGrant = serde_saphyr::from_str(&text).unwrap();
        if let Err(message) = admitted(&api, &grant).await {
            panic!("{}: {message}", path.display());
        }
        GrantPlan::from_spec(&grant.metadata.name.clone().unwrap(), &grant.spec)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        grants += 1;
    }
    assert!(grants >= 5, "examples/ holds {grants} SasGrants");
}

// ---- issuers: policy and allowedNamespaces ----

/// A valid ClusterSasIssuer whose spec is then edited by a case.
fn cluster_issuer_spec() -> Value {
    json!({
        "storageAccount": {"name": "acct"},
        "accountKey": {"secretRef": {"name": "keys"}},
        "allowedNamespaces": {"matchLabels": {"storage-access": "granted"}},
        "policy": {
            "resources": {
                "container": {"names": ["{namespace}-*", "shared-reports"]},
                "blob": {"containers": ["{namespace}-*"], "names": ["reports/*"]},
                "queue": {"names": ["{namespace}-*"]},
            },
            "maxPermissions": {"container": "rl", "blob": "rw", "queue": "rap"},
            "maxValidity": "24h",
            "protocols": "https",
        },
    })
}

/// `patch` merged into `target` (`null` removes a key).
fn merged(mut target: Value, patch: Value) -> Value {
    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }
    merge(&mut target, patch);
    target
}

/// What admission says of an issuer (a dry run: nothing is stored), as any object, so that a
/// value the Rust types could not even hold is tried too.
async fn issuer_admitted(
    client: &kube::Client,
    kind: &str,
    ns: &str,
    spec: Value,
) -> Result<(), String> {
    use kube::api::{ApiResource, DynamicObject};
    use kube::core::GroupVersionKind;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sas-operator.io", "v1alpha1", kind),
        &format!("{}s", kind.to_ascii_lowercase()),
    );
    let api = match kind {
        "ClusterSasIssuer" => Api::<DynamicObject>::all_with(client.clone(), &resource),
        _ => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
    };
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "admission-issuer"},
        "spec": spec,
    }))
    .unwrap();
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            Err(status.message)
        }
        Err(other) => panic!("dry-run create of a {kind} failed for another reason: {other}"),
    }
}

#[tokio::test]
async fn issuer_policies_and_allowed_namespaces_are_checked_at_admission_as_the_controller_checks_them()
 {
    let (client, ns) = operator::namespace("admission-issuers").await;
    operator::install_deploy_directory();
    let issuers = Api::<sas_operator::crd::ClusterSasIssuer>::all(client.clone());
    operator::wait_for(
        "the ClusterSasIssuer CRD to be served",
        std::time::Duration::from_secs(30),
        || async { issuers.list_metadata(&Default::default()).await.ok() },
    )
    .await;
    // (what, the edit of the ClusterSasIssuer spec, a fragment of the refusal or None when
    // admitted, whether the controller's check of a stored policy repeats the verdict: not for
    // a missing policy or maxPermissions entry, refused per grant with the fix in the message,
    // nor for allowedNamespaces' names, only ever compared for equality).
    let long_name = "n".repeat(129);
    let cases: Vec<(&str, Value, Option<&str>, bool)> = vec![
        ("the valid issuer", json!({}), None, true),
        (
            "no policy",
            json!({"policy": null}),
            Some("a ClusterSasIssuer needs spec.policy"),
            false,
        ),
        (
            "a kind without maxPermissions",
            json!({"policy": {"resources": {"share": {"names": ["*"]}}}}),
            Some("needs its maxPermissions entry"),
            false,
        ),
        (
            "no maxPermissions at all",
            json!({"policy": {"maxPermissions": null}}),
            Some("needs its maxPermissions entry"),
            false,
        ),
        (
            "a maxPermissions entry for a kind not listed",
            json!({"policy": {"maxPermissions": {"table": "r"}}}),
            None,
            true,
        ),
        (
            "maxValidity above a year",
            json!({"policy": {"maxValidity": "8761h"}}),
            Some("maxValidity must be between 2m and 8760h"),
            true,
        ),
        (
            "maxValidity below two minutes",
            json!({"policy": {"maxValidity": "119s"}}),
            Some("maxValidity must be between 2m and 8760h"),
            true,
        ),
        (
            "maxValidity in days",
            json!({"policy": {"maxValidity": "1d"}}),
            Some("spec.policy.maxValidity"),
            true,
        ),
        (
            "maxValidity of a year",
            json!({"policy": {"maxValidity": "8760h"}}),
            None,
            true,
        ),
        (
            "protocols http alone",
            json!({"policy": {"protocols": "http"}}),
            Some("spec.policy.protocols"),
            false,
        ),
        (
            "protocols https,http",
            json!({"policy": {"protocols": "https,http"}}),
            None,
            true,
        ),
        (
            "permission letters no kind has",
            json!({"policy": {"maxPermissions": {"container": "rl!"}}}),
            Some("spec.policy.maxPermissions.container"),
            true,
        ),
        (
            "account services beyond bqtf",
            json!({"policy": {
                "resources": {"account": {"services": "bx", "resourceTypes": "sco"}},
                "maxPermissions": {"account": "r"},
            }}),
            Some("spec.policy.resources.account.services"),
            true,
        ),
        (
            "an account SAS listed with its maxPermissions",
            json!({"policy": {
                "resources": {"account": {"services": "b", "resourceTypes": "co"}},
                "maxPermissions": {"account": "rl"},
            }}),
            None,
            true,
        ),
        (
            "seventeen name patterns",
            json!({"policy": {"resources": {"queue": {"names": vec!["q"; 17]}}}}),
            Some("spec.policy.resources.queue.names"),
            true,
        ),
        (
            "a name pattern of 129 characters",
            json!({"policy": {"resources": {"queue": {"names": [long_name]}}}}),
            Some("spec.policy.resources.queue.names"),
            true,
        ),
        (
            "a line break in a pattern",
            json!({"policy": {"resources": {"container": {"names": ["a\nb"]}}}}),
            Some("spec.policy.resources.container.names"),
            true,
        ),
        (
            "an empty pattern",
            json!({"policy": {"resources": {"container": {"names": [""]}}}}),
            Some("spec.policy.resources.container.names"),
            true,
        ),
        (
            "a blob entry without containers",
            json!({"policy": {"resources": {"blob": {"containers": null}}}}),
            Some("spec.policy.resources.blob.containers"),
            false,
        ),
        (
            "no resources",
            json!({"policy": {"resources": null}}),
            Some("spec.policy.resources"),
            false,
        ),
        (
            "allowedNamespaces by name",
            json!({"allowedNamespaces": {"names": ["team-a", "team-b"]}}),
            None,
            false,
        ),
        (
            "allowedNamespaces naming a namespace that cannot exist",
            json!({"allowedNamespaces": {"names": ["Team_A"]}}),
            Some("spec.allowedNamespaces.names"),
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (what, edit, refusal, controller_repeats) in &cases {
        let spec = merged(cluster_issuer_spec(), edit.clone());
        let server = issuer_admitted(&client, "ClusterSasIssuer", &ns, spec.clone()).await;
        match (&server, refusal) {
            (Ok(()), None) => {}
            (Err(message), Some(fragment)) if message.contains(fragment) => {}
            _ => failures.push(format!(
                "{what}: expected {refusal:?}, admission said {server:?}"
            )),
        }
        if *controller_repeats {
            let policy: sas_operator::crd::IssuerPolicy =
                serde_json::from_value(spec["policy"].clone()).expect("a well-typed policy");
            let controller = sas_operator::issuer::policy::check(&policy);
            if controller.is_ok() != server.is_ok() {
                failures.push(format!(
                    "{what}: admission {server:?}, controller {controller:?}"
                ));
            }
        }
    }
    // `policy: null` is no policy either.
    let mut null_policy = cluster_issuer_spec();
    null_policy["policy"] = Value::Null;
    match issuer_admitted(&client, "ClusterSasIssuer", &ns, null_policy).await {
        Err(message) if message.contains("needs spec.policy") => {}
        other => failures.push(format!("policy: null: {other:?}")),
    }
    // A namespaced SasIssuer may go without a policy; one it has is checked the same way.
    let sas_issuer = merged(
        cluster_issuer_spec(),
        json!({"allowedNamespaces": null, "policy": null}),
    );
    if let Err(message) = issuer_admitted(&client, "SasIssuer", &ns, sas_issuer.clone()).await {
        failures.push(format!(
            "a SasIssuer without a policy was refused: {message}"
        ));
    }
    let lacking = merged(
        sas_issuer,
        json!({"policy": {"resources": {"queue": {"names": ["q"]}}}}),
    );
    match issuer_admitted(&client, "SasIssuer", &ns, lacking).await {
        Err(message) if message.contains("needs its maxPermissions entry") => {}
        other => failures.push(format!(
            "a SasIssuer policy without maxPermissions: {other:?}"
        )),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
