//! Hostile Secrets: memory and CPU. See tests/hostile.rs.
//!
//! Anyone who may create Secrets in a watched namespace can label them: as signing keys (the
//! key watch reads them), or `app.kubernetes.io/managed-by=sas-operator` (the owned-Secret
//! watch reads them). Whatever those Secrets hold, the operator keeps only the account keys of
//! the first and nothing of a second it does not own, and spends no CPU searching them: its
//! peak resident memory stays under the 64 MiB the issue sets (the Deployment's limit is
//! 256 Mi), also while a restarted operator lists them all again.

use std::time::{Duration, Instant};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use sas_operator::crd::SasGrant;
use serde_json::json;

use crate::{common, operator::*};

/// The peak resident memory the operator may reach, whatever tenants label.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Labelled key Secrets a tenant fills, and the size of each one's filler entry.
const PADDED_KEY_SECRETS: usize = 120;
const FILLER_BYTES: usize = 900 * 1000;

/// Relabels of a foreign Secret, and the operator CPU they may cost together.
const RELABELS: usize = 20;
const RELABEL_CPU_LIMIT: Duration = Duration::from_secs(1);

/// The peak resident set size of process `pid` so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// The CPU time process `pid` has used (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15, in clock ticks.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf CLK_TCK")
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

/// The CPU time of `pid` once it has stopped growing (no more than a tick or two over one
/// second), or after two minutes: what the events delivered so far cost it.
async fn settled_cpu_time(pid: u32) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = cpu_time(pid);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_time(pid);
        if now.saturating_sub(last) <= Duration::from_millis(20) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// A key Secret holding the Azurite key and a filler entry of [`FILLER_BYTES`].
fn padded_key_secret(name: &str) -> Secret {
    let mut secret = key_secret(name, &[("key1", &common::azurite().key)]);
    let filler = ByteString(vec![b'x'; FILLER_BYTES]);
    secret
        .data
        .as_mut()
        .unwrap()
        .insert("filler".into(), filler);
    secret
}

/// A grant signing with entry `key` of key Secret `secret`.
fn grant_signing_with(name: &str, secret: &str, key: &str) -> SasGrant {
    let mut grant = grant(
        name,
        json!({"container": {"name": "data"}}),
        "rl",
        json!({}),
    );
    let account = grant.spec.storage_account.as_mut().unwrap();
    account.key_secret_ref.name = secret.into();
    account.key_secret_ref.key = Some(key.into());
    grant
}

/// Creates the padded key Secrets, ten at a time; the last one (by creation, so by the key
/// watch's order) is `keys-119`.
async fn create_padded_key_secrets(client: &Client, ns: &str) {
    let names: Vec<String> = (0..PADDED_KEY_SECRETS)
        .map(|at| format!("keys-{at:03}"))
        .collect();
    for chunk in names.chunks(10) {
        futures::future::join_all(
            chunk.iter().map(|name| async move {
                create_secret(client, ns, &padded_key_secret(name)).await
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn key_secrets_padded_to_900_kb_leave_the_operator_under_64_mib_also_across_a_restart() {
    let (client, ns) = namespace("hostile-keymemory").await;
    let mut operator = Operator::under_deploy_rbac("hostile-memory-keys", &[&ns], &[]).await;
    create_padded_key_secrets(&client, &ns).await;
    let last = format!("keys-{:03}", PADDED_KEY_SECRETS - 1);
    // The key watch delivers Secrets in the order they were written: once a grant signs with
    // the last one, the operator has read all of them.
    create_grant(&client, &ns, &grant_signing_with("last", &last, "key1")).await;
    wait_ready(&client, &ns, "last", "True", "TokenValid").await;
    create_grant(&client, &ns, &grant_signing_with("filler", &last, "filler")).await;
    let refused = wait_ready(&client, &ns, "filler", "False", "KeyNotAccountKey").await;
    let message = serde_json::to_string(&refused.status).unwrap();
    assert!(!message.contains("xxxxxxxx"), "{message}");
    let watching = peak_rss_kib(operator.pid());
    eprintln!("peak RSS while watching {PADDED_KEY_SECRETS} padded key Secrets: {watching} KiB");

    operator.terminate();
    operator.wait_for_exit(Duration::from_secs(30)).await;
    let restarted = Operator::under_deploy_rbac("hostile-memory-keys-restart", &[&ns], &[]).await;
    // Its controller starts once the key watch has listed every key Secret.
    create_grant(
        &client,
        &ns,
        &grant_signing_with("restarted", "keys-000", "key1"),
    )
    .await;
    wait_ready(&client, &ns, "restarted", "True", "TokenValid").await;
    let listing = peak_rss_kib(restarted.pid());
    eprintln!("peak RSS of the restarted operator: {listing} KiB");

    assert!(
        watching < RSS_LIMIT_KIB,
        "peak RSS {watching} KiB while watching"
    );
    assert!(
        listing < RSS_LIMIT_KIB,
        "peak RSS {listing} KiB across the restart"
    );
}

#[tokio::test]
async fn relabelling_a_foreign_1_mb_secret_labelled_as_ours_costs_the_operator_no_cpu() {
    let (client, ns) = namespace("hostile-relabel").await;
    let operator = Operator::under_deploy_rbac("hostile-memory-relabel", &[&ns], &[]).await;
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
            "app",
            json!({"container": {"name": "data"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "app", "True", "TokenValid").await;

    // Shaped for a sliding-window search: the token is a near-miss at every offset of the
    // other values. About 1 MB in all (a Secret's limit is 1 MiB).
    let mut token = vec![b'a'; 300_000];
    token.push(b'b');
    let mut foreign = unlabelled_secret("foreign", &[]);
    foreign.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "sas-operator".to_string(),
        )]
        .into(),
    );
    foreign.data = Some(
        [
            ("sasToken".to_string(), ByteString(token)),
            ("sasUrl".to_string(), ByteString(vec![b'a'; 340_000])),
            (
                "connectionString".to_string(),
                ByteString(vec![b'a'; 340_000]),
            ),
        ]
        .into(),
    );
    create_secret(&client, &ns, &foreign).await;
    let pid = operator.pid();
    let before = settled_cpu_time(pid).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    for relabel in 0..RELABELS {
        let patch = json!({"metadata": {"labels": {"relabelled": relabel.to_string()}}});
        secrets
            .patch("foreign", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("relabel");
    }
    let spent = settled_cpu_time(pid).await.saturating_sub(before);
    eprintln!("operator CPU for {RELABELS} relabels of a 1 MB foreign Secret: {spent:?}");
    assert!(
        spent < RELABEL_CPU_LIMIT,
        "{RELABELS} relabels cost {spent:?} of CPU"
    );

    // Still not ours: a grant naming it as its target is refused, the Secret left alone.
    let squatter = grant(
        "squatter",
        json!({"container": {"name": "data"}}),
        "rl",
        json!({"target": {"secretName": "foreign"}}),
    );
    create_grant(&client, &ns, &squatter).await;
    wait_ready(&client, &ns, "squatter", "False", "SecretNotOwned").await;
    let kept = get_secret(&client, &ns, "foreign").await.unwrap();
    assert_eq!(kept.data.unwrap()["sasUrl"].0.len(), 340_000);
}
