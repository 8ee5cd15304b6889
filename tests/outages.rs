//! Outages shorter than renewBefore (issue 12). Each test injects one fault into the real
//! control plane, the operator or the network between them just as a wave of grants comes due,
//! and checks what applications and operators see: no Secret ever holds an expired token, every
//! overdue grant is rotated within seconds of the API server (or the operator) being back, new
//! grants get their Secrets within seconds after a network partition (issue 21), no replica
//! writes after it lost its lease, and an outage costs a bounded number of log lines.
//!
//! The faults hit the control plane that every test of a binary shares, so this binary holds
//! only fault tests; they take turns (`SERIAL`) and heal the control plane before and after.
//! Each test prints one `outage ...` line with what it measured (see with `--nocapture`) and
//! appends it to `target/tmp/outages.txt`.

mod common;
#[path = "support/operator.rs"]
mod operator;
#[path = "support/partition.rs"]
mod partition;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use operator::{Operator, create_secret, install_deploy_directory, key_secret, namespace};
use partition::Partition;
use sas_operator::crd::SasGrant;
use sas_operator::reconcile::schedule;
use serde_json::json;

use common::{ControlPlane, control_plane};

// ----- The faults -----

/// Grants per test, created together so that their renewals come due as one wave.
const GRANTS: usize = 30;
/// Every grant's token lifetime and renewal margin: a wave every 60 s (the shortest the
/// controller and the schema accept: 2 min validity, a token in use for at least 1 min), and an
/// outage plus the API server's recovery must stay under renewBefore.
const VALIDITY: &str = "120s";
const RENEW_BEFORE: &str = "60s";
const RENEW_BEFORE_DURATION: Duration = Duration::from_secs(60);
/// Faults start this long before the wave comes due, so that the renewals fail from the start.
const FAULT_LEAD: Duration = Duration::from_secs(2);
/// Most of renewBefore, leaving room for the API server's restart (3-10 s here).
const APISERVER_DOWN: Duration = Duration::from_secs(45);
/// Shorter: kube-apiserver's etcd client reconnects with a growing backoff, so the API server
/// is ready again only some time after etcd is (21 s after a 45 s outage, here).
const ETCD_DOWN: Duration = Duration::from_secs(25);
/// Longer than any per-request timeout the operator may use (its whole reconcile must end
/// within the lease renew deadline, 10 s by default).
const APISERVER_FROZEN: Duration = Duration::from_secs(25);
/// A network partition between the operator and the API server: most of renewBefore, like the
/// other outages. Its length hardly matters here: the connections open at the cut stay stalled
/// for good (see `support/partition.rs`).
const PARTITION: Duration = Duration::from_secs(30);
/// A grant is created this far into the partition: its watch event is sent on a stalled
/// connection.
const GRANT_DURING_PARTITION_AFTER: Duration = Duration::from_secs(5);
/// Every write the partition causes comes this soon after it ends (and long before the next
/// wave): a Secret written twice by then was written twice for one rotation.
const WRITES_SETTLE_WITHIN: SignedDuration = SignedDuration::from_secs(10);
/// How long a killed operator stays down before its restart (kubelet restarts a crashed
/// container at once the first time; a few seconds let the whole wave come due meanwhile).
const OPERATOR_DOWN: Duration = Duration::from_secs(3);
/// Leader election of the operators here: duration, renew deadline, retry period.
const LEASE: [&str; 3] = ["6s", "4s", "1s"];
const LEASE_NAME: &str = "sas-operator";

// ----- What must hold (issue 12) -----

/// Every grant whose renewal is overdue when the API server (or a new operator) is back is
/// rotated this soon after.
const MAX_RECOVERY: SignedDuration = SignedDuration::from_secs(2);
/// A grant created as soon as the API server is ready again gets its Secret this soon: the
/// operator's watches are back within seconds.
const MAX_NEW_GRANT_DELAY: SignedDuration = SignedDuration::from_secs(5);
/// Grants created during a network partition and right after it get their Secrets this soon
/// after it ends (issue 21): the operator watches afresh once its probe sees the API server.
const MAX_SECRET_AFTER_PARTITION: SignedDuration = SignedDuration::from_secs(3);
/// The operator's `/readyz` answers 200 again this soon after the API server is back (and
/// must have reported the outage: it answers 503 at some point during it).
const MAX_READY_AGAIN: SignedDuration = SignedDuration::from_secs(5);
/// WARN and ERROR lines from the fault until recovery: about one per failed attempt...
const MAX_NOISY_LINES_PER_GRANT: usize = 5;
/// ...plus a few for watches, the lease and start-up.
const NOISY_LINES_ALLOWANCE: usize = 20;
// And no ERROR line at all: an outage shorter than renewBefore is not an error; and no line
// with a whole `Status` debug dump (issue 21).

// ----- Budgets of the harness, not requirements -----

/// A cold kube-apiserver start on a busy two-core machine.
const APISERVER_START: Duration = Duration::from_secs(60);
/// How long after the last overdue token's expiry a test waits for its rotation before it
/// gives up (long enough to measure how late a slow operator is).
const PATIENCE_AFTER_EXPIRY: SignedDuration = SignedDuration::from_secs(25);

/// The control plane is shared: one fault at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn an_api_server_killed_and_restarted_leaves_no_token_expired() {
    let report = api_outage(
        "apiserver-killed",
        APISERVER_DOWN,
        ControlPlane::kill_apiserver,
        ControlPlane::restart_apiserver,
    )
    .await;
    report.assert_holds();
}

/// After etcd returns, kube-apiserver serves Secrets ~10 s before it takes writes of SasGrant
/// status (its CRD storage reconnects to etcd on its own backoff): the wave must not wait for
/// them (status and Events are written in the background).
#[tokio::test]
async fn etcd_killed_and_restarted_leaves_no_token_expired() {
    let report = api_outage(
        "etcd-killed",
        ETCD_DOWN,
        ControlPlane::kill_etcd,
        ControlPlane::restart_etcd,
    )
    .await;
    report.assert_holds();
}

#[tokio::test]
async fn an_api_server_frozen_past_the_request_timeout_leaves_no_token_expired() {
    let report = api_outage(
        "apiserver-frozen",
        APISERVER_FROZEN,
        ControlPlane::freeze_apiserver,
        ControlPlane::thaw_apiserver,
    )
    .await;
    report.assert_holds();
}

#[tokio::test]
async fn an_operator_killed_mid_wave_and_restarted_rotates_the_rest_at_once() {
    let _turn = SERIAL.lock().await;
    let scenario = Scenario::new("operator-killed").await;
    let account = scenario.replica_account("operator").await;
    // A restarted container keeps its pod's name, so it takes its own Lease back at once.
    let identity = "operator-0";
    let mut first = scenario.operator(&account, "first", Some(identity));
    scenario.wait_all_signed().await;

    scenario
        .wait_for_first_rotation_since(scenario.next_wave())
        .await;
    let fault_at = Timestamp::now();
    first.kill();
    tokio::time::sleep(OPERATOR_DOWN).await;
    let restarted_at = Timestamp::now();
    let restarted = scenario.operator(&account, "restarted", Some(identity));
    // Back once it leads again: its start-up (a debug binary on a busy machine) is not the
    // operator's recovery.
    let back_at = scenario.lease_taken(&account, restarted_at).await;
    let recovery = scenario
        .await_rotation(back_at, scenario.overdue_at(back_at))
        .await;

    let report = Report {
        fault: "operator-killed",
        fault_at,
        back_at,
        recovery,
        longest_expired: scenario.longest_expired(Timestamp::now()),
        expired_when_seen: scenario.expired_when_seen(),
        written_short: scenario.written_short(fault_at),
        went_back: scenario.went_back(),
        new_grant_delay: None,
        secrets_after_partition: Vec::new(),
        secrets_written_twice: Vec::new(),
        watch_delay: None,
        readiness: None,
        log: noisy_lines(&restarted.logs()),
        writes_after_lease_lost: Vec::new(),
    };
    report.publish();
    report.assert_holds();
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_mid_reconcile_never_writes_after_losing_it() {
    let _turn = SERIAL.lock().await;
    let scenario = Scenario::new("leader-paused").await;
    let a = scenario.replica_account("replica-a").await;
    let b = scenario.replica_account("replica-b").await;
    let replica_a = scenario.operator(&a, "a", Some("replica-a"));
    let replica_b = scenario.operator(&b, "b", Some("replica-b"));
    let holder = scenario.wait_for_lease_holder(None).await;
    let (leader, leader_account, standby, standby_account, standby_identity) = match holder.as_str()
    {
        "replica-a" => (replica_a, a, replica_b, b, "replica-b"),
        "replica-b" => (replica_b, b, replica_a, a, "replica-a"),
        other => panic!("the Lease names an unknown holder {other:?}"),
    };
    let standby_mark = standby.logs().len();
    scenario.wait_all_signed().await;

    // A new account key makes every grant due at once: a burst of GRANTS reconciles at the
    // operator's concurrency, so at its first new token the leader has more in flight.
    let key_changed_at = scenario.change_account_key().await;
    scenario.wait_for_first_rotation_since(key_changed_at).await;
    let fault_at = Timestamp::now();
    signal(&leader, "STOP");
    scenario.wait_for_lease_holder(Some(standby_identity)).await;
    // Past its lease and replaced: now let it run on from where it stopped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&leader, "CONT");

    let takeover_at = scenario.lease_taken(&standby_account, fault_at).await;
    let stale = scenario.signed_before(key_changed_at, takeover_at);
    let recovery = scenario.await_rotation(takeover_at, stale).await;
    // Give the old leader time to notice, write whatever it still would, and exit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_after_lease_lost = scenario
        .audit()
        .into_iter()
        .filter(|e| e.user == leader_account.user && e.is_write() && e.at >= takeover_at)
        .map(|e| e.describe())
        .collect();

    let report = Report {
        fault: "leader-paused",
        fault_at,
        back_at: takeover_at,
        recovery,
        longest_expired: scenario.longest_expired(Timestamp::now()),
        expired_when_seen: scenario.expired_when_seen(),
        written_short: scenario.written_short(fault_at),
        went_back: scenario.went_back(),
        new_grant_delay: None,
        secrets_after_partition: Vec::new(),
        secrets_written_twice: Vec::new(),
        watch_delay: None,
        readiness: None,
        log: noisy_lines(standby.logs().get(standby_mark..).unwrap_or_default()),
        writes_after_lease_lost,
    };
    report.publish();
    report.assert_holds();
}

/// A network partition between the operator and the API server, nothing killed (issue 21): the
/// operator's watch connections stall, so it must watch afresh once its probe sees the API
/// server again. A grant created during the cut and one right after it get their Secrets
/// within seconds of its end, every Secret is written once, and the overdue wave is rotated as
/// after any outage.
#[tokio::test]
async fn after_a_network_partition_new_grants_get_their_secrets_within_seconds() {
    let _turn = SERIAL.lock().await;
    let scenario = Scenario::new("partition").await;
    let partition = Partition::start(&control_plane().server).await;
    let account = scenario
        .replica_account("operator")
        .await
        .through(&partition.url);
    let admin_port = operator::free_local_port();
    let operator = scenario.operator_with(
        &account,
        "operator",
        None,
        &format!("127.0.0.1:{admin_port}"),
    );
    scenario.wait_all_signed().await;
    let readiness = ReadinessLog::start(admin_port);

    sleep_until(scenario.next_wave() - FAULT_LEAD).await;
    let log_mark = operator.logs().len();
    let fault_at = Timestamp::now();
    partition.cut();
    tokio::time::sleep(GRANT_DURING_PARTITION_AFTER).await;
    scenario.create_grant("during-cut").await;
    tokio::time::sleep(PARTITION - GRANT_DURING_PARTITION_AFTER).await;
    partition.heal();
    let back_at = Timestamp::now();
    scenario.create_grant("after-cut").await;
    let (during, after, recovery) = tokio::join!(
        scenario.first_token_since("during-cut", back_at),
        scenario.first_token_since("after-cut", back_at),
        scenario.await_rotation(back_at, scenario.overdue_at(back_at)),
    );
    // A second write of any Secret would come within moments.
    sleep_until(back_at + WRITES_SETTLE_WITHIN).await;

    let report = Report {
        fault: "partition",
        fault_at,
        back_at,
        recovery,
        longest_expired: scenario.longest_expired(Timestamp::now()),
        expired_when_seen: scenario.expired_when_seen(),
        written_short: scenario.written_short(fault_at),
        went_back: scenario.went_back(),
        new_grant_delay: None,
        secrets_after_partition: vec![
            ("created during the partition", during),
            ("created right after it", after),
        ],
        secrets_written_twice: scenario.secrets_written_twice(
            &account,
            fault_at,
            back_at + WRITES_SETTLE_WITHIN,
        ),
        watch_delay: scenario.watches_back_after(&account, fault_at, back_at),
        readiness: Some(readiness.around(fault_at, back_at)),
        log: noisy_lines(operator.logs().get(log_mark..).unwrap_or_default()),
        writes_after_lease_lost: Vec::new(),
    };
    report.publish();
    report.assert_holds();
}

/// The harness itself: what the fault tests rely on.
#[tokio::test]
async fn a_killed_control_plane_restarts_on_its_url_with_its_data_and_credentials() {
    let _turn = SERIAL.lock().await;
    let _healer = Healer;
    control_plane().heal().await;
    let client = control_plane().client().await;
    let ns = common::test_namespace(&client, "outage-harness").await;
    let secrets = Api::<Secret>::namespaced(client, &ns);
    secrets
        .create(
            &PostParams::default(),
            &key_secret("kept", &[("key", "value")]),
        )
        .await
        .expect("create a Secret");

    control_plane().kill_apiserver();
    control_plane().kill_etcd();
    assert!(!control_plane().apiserver_ready().await);
    control_plane().restart_etcd();
    control_plane().restart_apiserver();
    control_plane().wait_apiserver_ready(APISERVER_START).await;

    // A client made before the restart, with the old URL and token, reads the old data.
    let kept = operator::wait_for(
        "the Secret after the restart",
        Duration::from_secs(30),
        || async { secrets.get("kept").await.ok() },
    )
    .await;
    assert_eq!(operator::data(&kept, "key"), "value");

    control_plane().freeze_apiserver();
    assert!(
        !control_plane().apiserver_ready().await,
        "a frozen API server must not answer /readyz"
    );
    control_plane().thaw_apiserver();
    control_plane()
        .wait_apiserver_ready(Duration::from_secs(5))
        .await;
}

/// One operator (no leader election: a lone leader would give up its lease during any outage
/// longer than the renew deadline and exit, and nothing here restarts it), one API fault from
/// just before a wave comes due, then the API server back.
async fn api_outage(
    fault: &'static str,
    outage: Duration,
    break_api: fn(&ControlPlane),
    repair_api: fn(&ControlPlane),
) -> Report {
    let _turn = SERIAL.lock().await;
    let scenario = Scenario::new(fault).await;
    let account = scenario.replica_account("operator").await;
    let admin_port = operator::free_local_port();
    let operator = scenario.operator_with(
        &account,
        "operator",
        None,
        &format!("127.0.0.1:{admin_port}"),
    );
    scenario.wait_all_signed().await;
    let readiness = ReadinessLog::start(admin_port);

    sleep_until(scenario.next_wave() - FAULT_LEAD).await;
    let log_mark = operator.logs().len();
    let fault_at = Timestamp::now();
    break_api(control_plane());
    tokio::time::sleep(outage).await;
    repair_api(control_plane());
    let back_at = control_plane()
        .wait_apiserver_serving(APISERVER_START)
        .await;
    let (new_grant_delay, recovery) = tokio::join!(
        scenario.new_grant_delay(),
        scenario.await_rotation(back_at, scenario.overdue_at(back_at))
    );

    let watch_delay = scenario.watches_back_after(&account, fault_at, back_at);
    let report = Report {
        fault,
        fault_at,
        back_at,
        recovery,
        longest_expired: scenario.longest_expired(Timestamp::now()),
        expired_when_seen: scenario.expired_when_seen(),
        written_short: scenario.written_short(fault_at),
        went_back: scenario.went_back(),
        new_grant_delay: Some(new_grant_delay),
        secrets_after_partition: Vec::new(),
        secrets_written_twice: Vec::new(),
        watch_delay,
        readiness: Some(readiness.around(fault_at, back_at)),
        log: noisy_lines(operator.logs().get(log_mark..).unwrap_or_default()),
        writes_after_lease_lost: Vec::new(),
    };
    report.publish();
    report
}

// ----- What a test measured -----

struct Report {
    fault: &'static str,
    /// When the fault was injected.
    fault_at: Timestamp,
    /// When service was back: the API server serving, the restarted operator or the standby leading.
    back_at: Timestamp,
    recovery: Recovery,
    /// The longest any Secret held a token past its expiry (zero when none did).
    longest_expired: SignedDuration,
    /// Tokens the sampler saw in a Secret after they had expired.
    expired_when_seen: Vec<String>,
    /// Tokens written from the fault on with less than renewBefore left (signed with a clock
    /// read before a hang, for instance): due again at once, or even expired on arrival.
    written_short: Vec<String>,
    /// Secrets that went back to a token expiring earlier than the one they held.
    went_back: Vec<String>,
    /// From creating a grant right after `back_at` to its Secret (None: not within a minute).
    new_grant_delay: Option<Option<SignedDuration>>,
    /// Grants created around a network partition: from its end to each one's Secret (None:
    /// not within a minute).
    secrets_after_partition: Vec<(&'static str, Option<SignedDuration>)>,
    /// Secrets the operator wrote more than once for one rotation (audit log).
    secrets_written_twice: Vec<String>,
    /// From `back_at` until the operator watched grants and Secrets again (audit log; None: not
    /// re-established, e.g. because the connections survived).
    watch_delay: Option<SignedDuration>,
    /// The operator's `/readyz` around an API outage (None: not measured).
    readiness: Option<ReadinessAround>,
    log: NoisyLines,
    /// Writes the audit log shows from a replica after another took its Lease.
    writes_after_lease_lost: Vec<String>,
}

impl Report {
    /// Prints the figures and appends them to `target/tmp/outages.txt`.
    fn publish(&self) {
        let seconds = |d: SignedDuration| format!("{:.1}s", d.as_secs_f64());
        let line = format!(
            "outage {fault}: back after {back}; overdue {overdue}/{grants}; all rotated {recovery} after back \
             (slowest {slowest}, not rotated {missed}); longest expired {expired}; expired when seen {seen}; \
             written with under renewBefore left {short}; went back to an older token {back_count}; \
             new grant's Secret after {new_grant}; {partition}watches back after {watch}; \
             operator /readyz {readiness}; log WARN {warn} ERROR {error} Status dumps {dumps}; \
             writes after lease lost {lost}",
            fault = self.fault,
            back = seconds(self.back_at.duration_since(self.fault_at)),
            overdue = self.recovery.overdue,
            grants = GRANTS,
            recovery = match (&self.recovery.slowest, self.recovery.not_rotated.is_empty()) {
                (_, false) => "never".into(),
                (None, true) => "-".into(),
                (Some(slowest), true) => seconds(*slowest),
            },
            slowest = self.recovery.slowest.map_or("-".into(), seconds),
            missed = self.recovery.not_rotated.len(),
            expired = seconds(self.longest_expired),
            seen = self.expired_when_seen.len(),
            short = self.written_short.len(),
            back_count = self.went_back.len(),
            new_grant = match self.new_grant_delay {
                None => "-".into(),
                Some(None) => "over 60s".into(),
                Some(Some(d)) => seconds(d),
            },
            partition = self
                .secrets_after_partition
                .iter()
                .map(|(grant, delay)| {
                    let delay = delay.map_or("over 60s".into(), seconds);
                    format!("Secret of the grant {grant}: {delay} after the partition; ")
                })
                .collect::<String>(),
            watch = self.watch_delay.map_or("-".into(), seconds),
            readiness = match &self.readiness {
                None => "-".into(),
                Some(ReadinessAround {
                    unready_after: None,
                    ..
                }) => "200 throughout".into(),
                Some(ReadinessAround {
                    unready_after: Some(down),
                    ready_again_after,
                }) => format!(
                    "503 after {} of outage, 200 again {} after back",
                    seconds(*down),
                    ready_again_after.map_or("never".into(), seconds)
                ),
            },
            warn = self.log.warn,
            error = self.log.error,
            dumps = self.log.status_dumps,
            lost = self.writes_after_lease_lost.len(),
        );
        let details: Vec<String> = [
            ("writes after lease lost", &self.writes_after_lease_lost),
            ("Secrets written twice", &self.secrets_written_twice),
            ("written short", &self.written_short),
            ("went back", &self.went_back),
        ]
        .into_iter()
        .filter(|(_, items)| !items.is_empty())
        .map(|(what, items)| format!("\n  {what}: {}", items.join(", ")))
        .collect();
        let line = format!("{line}{}", details.concat());
        println!("{line}");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("outages.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{} {line}", Timestamp::now());
        }
    }

    fn assert_holds(&self) {
        let down = self.back_at.duration_since(self.fault_at);
        assert!(
            down + MAX_RECOVERY < SignedDuration::try_from(RENEW_BEFORE_DURATION).unwrap(),
            "the harness took too long to bring service back ({down:?}): the scenario needs an \
             outage plus recovery shorter than renewBefore"
        );
        assert!(
            self.recovery.overdue > 0,
            "the fault caught no due grant, so it tested nothing"
        );
        assert!(
            self.expired_when_seen.is_empty(),
            "Secrets held expired tokens: {:?}",
            self.expired_when_seen
        );
        assert_eq!(
            self.longest_expired,
            SignedDuration::ZERO,
            "a Secret held an expired token"
        );
        assert!(
            self.written_short.is_empty(),
            "tokens written with less than renewBefore left: {:?}",
            self.written_short
        );
        assert!(
            self.recovery.not_rotated.is_empty(),
            "overdue grants never rotated: {:?}",
            self.recovery.not_rotated
        );
        let slowest = self.recovery.slowest.unwrap_or(SignedDuration::ZERO);
        assert!(
            slowest <= MAX_RECOVERY,
            "the last overdue grant was rotated {slowest:?} after service was back (at most \
             {MAX_RECOVERY:?})"
        );
        if let Some(delay) = self.new_grant_delay {
            let delay = delay.expect("a grant created after the outage got no Secret in a minute");
            assert!(
                delay <= MAX_NEW_GRANT_DELAY,
                "a grant created after the outage got its Secret only {delay:?} later"
            );
        }
        for (grant, delay) in &self.secrets_after_partition {
            let delay =
                delay.unwrap_or_else(|| panic!("the grant {grant} got no Secret within a minute"));
            assert!(
                delay <= MAX_SECRET_AFTER_PARTITION,
                "the grant {grant} got its Secret {delay:?} after the partition ended (at most \
                 {MAX_SECRET_AFTER_PARTITION:?})"
            );
        }
        assert!(
            self.secrets_written_twice.is_empty(),
            "Secrets written more than once: {:?}",
            self.secrets_written_twice
        );
        if let Some(readiness) = &self.readiness {
            assert!(
                readiness.unready_after.is_some(),
                "the operator's /readyz answered 200 throughout the API outage"
            );
            let again = readiness
                .ready_again_after
                .expect("the operator's /readyz never answered 200 again");
            assert!(
                again <= MAX_READY_AGAIN,
                "the operator's /readyz answered 200 only {again:?} after the API server was back"
            );
        }
        assert!(
            self.writes_after_lease_lost.is_empty(),
            "a replica wrote after it lost its Lease: {:?}",
            self.writes_after_lease_lost
        );
        assert_eq!(
            self.log.error, 0,
            "ERROR lines over an outage shorter than renewBefore"
        );
        assert_eq!(
            self.log.status_dumps, 0,
            "log lines with a whole Status debug dump"
        );
        let noisy = self.log.warn + self.log.error;
        let budget = GRANTS * MAX_NOISY_LINES_PER_GRANT + NOISY_LINES_ALLOWANCE;
        assert!(
            noisy <= budget,
            "{noisy} WARN/ERROR lines over the outage (at most {budget})"
        );
    }
}

/// Which grants were overdue at a moment, and how soon after it they were rotated.
struct Recovery {
    overdue: usize,
    /// The latest rotation of an overdue grant after the moment (None: no grant was overdue).
    slowest: Option<SignedDuration>,
    not_rotated: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct NoisyLines {
    warn: usize,
    error: usize,
    /// Lines carrying a kube `Status` in its debug form (kube-runtime's watcher logs a 403 so).
    status_dumps: usize,
}

/// Counts WARN and ERROR lines of the operator's text log.
fn noisy_lines(log: &str) -> NoisyLines {
    let mut counts = NoisyLines::default();
    for line in log.lines() {
        if line.contains("Status { ") {
            counts.status_dumps += 1;
        }
        match line.split_whitespace().nth(1) {
            Some("WARN") => counts.warn += 1,
            Some("ERROR") => counts.error += 1,
            _ => {}
        }
    }
    counts
}

// ----- The scenario: grants, operators, and a continuous look at every Secret -----

struct Scenario {
    client: Client,
    ns: String,
    /// Grant name to uid (the uid decides the grant's renewal jitter).
    uids: BTreeMap<String, String>,
    sampler: Sampler,
    _healer: Healer,
}

/// An operator replica's own ServiceAccount, so that the audit log tells its requests apart.
struct Account {
    kubeconfig: PathBuf,
    user: String,
}

impl Account {
    /// The same account reaching the API server at `url` (a proxy).
    fn through(self, url: &str) -> Account {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read the kubeconfig");
        let server = format!("server: {}\n", control_plane().server);
        assert!(text.contains(&server), "the kubeconfig names {server}");
        let kubeconfig = self.kubeconfig.with_extension("through-proxy.kubeconfig");
        std::fs::write(
            &kubeconfig,
            text.replace(&server, &format!("server: {url}\n")),
        )
        .expect("write the kubeconfig");
        Account {
            kubeconfig,
            user: self.user,
        }
    }
}

impl Scenario {
    /// A healthy control plane, a namespace with a key Secret, and `GRANTS` grants.
    async fn new(prefix: &str) -> Scenario {
        let healer = Healer;
        control_plane().heal().await;
        let (client, ns) = namespace(&format!("outage-{prefix}")).await;
        create_secret(&client, &ns, &key_secret("keys", &[("key1", ACCOUNT_KEY)])).await;
        let sampler = Sampler::start(client.clone(), &ns);
        let grants = Api::<SasGrant>::namespaced(client.clone(), &ns);
        let mut uids = BTreeMap::new();
        for index in 0..GRANTS {
            let name = format!("g-{index:02}");
            let created = grants
                .create(&PostParams::default(), &grant(&name))
                .await
                .expect("create SasGrant");
            uids.insert(
                name,
                created.metadata.uid.expect("a created grant has a uid"),
            );
        }
        Scenario {
            client,
            ns,
            uids,
            sampler,
            _healer: healer,
        }
    }

    /// A ServiceAccount with deploy/'s ClusterRole plus the Lease in this namespace.
    async fn replica_account(&self, name: &str) -> Account {
        install_deploy_directory();
        let create = |kind: &str, result: Result<(), kube::Error>| match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => panic!("create {kind} for {name}: {error}"),
        };
        let ns = self.ns.as_str();
        let post = PostParams::default();
        let account: ServiceAccount = from_json(json!({"metadata": {"name": name}}));
        create(
            "ServiceAccount",
            Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
                .create(&post, &account)
                .await
                .map(drop),
        );
        let subjects = json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}]);
        let binding: ClusterRoleBinding = from_json(json!({
            "metadata": {"name": format!("{ns}-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sas-operator"},
            "subjects": subjects,
        }));
        create(
            "ClusterRoleBinding",
            Api::<ClusterRoleBinding>::all(self.client.clone())
                .create(&post, &binding)
                .await
                .map(drop),
        );
        let role: Role = from_json(json!({
            "metadata": {"name": "lease-holder"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update"]}],
        }));
        create(
            "Role",
            Api::<Role>::namespaced(self.client.clone(), ns)
                .create(&post, &role)
                .await
                .map(drop),
        );
        let role_binding: RoleBinding = from_json(json!({
            "metadata": {"name": format!("lease-holder-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease-holder"},
            "subjects": subjects,
        }));
        create(
            "RoleBinding",
            Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .create(&post, &role_binding)
                .await
                .map(drop),
        );
        let kubeconfig = control_plane().service_account_kubeconfig(ns, name).await;
        // RBAC reaches the authorizer's cache a moment later; the operator must not start before.
        let client = control_plane().service_account_client(ns, name).await;
        let all_grants = Api::<SasGrant>::all(client.clone());
        let leases = Api::<Lease>::namespaced(client, ns);
        operator::wait_for(
            "the replica's RBAC to take effect",
            Duration::from_secs(20),
            || async {
                let grants = all_grants
                    .list_metadata(&ListParams::default().limit(1))
                    .await;
                let lease = leases.get_opt(LEASE_NAME).await;
                (grants.is_ok() && lease.is_ok()).then_some(())
            },
        )
        .await;
        Account {
            kubeconfig,
            user: format!("system:serviceaccount:{ns}:{name}"),
        }
    }

    /// Starts the operator binary for this namespace under `account`; with an `identity` it
    /// elects a leader through the Lease in this namespace.
    fn operator(&self, account: &Account, name: &str, identity: Option<&str>) -> Operator {
        self.operator_with(account, name, identity, "127.0.0.1:0")
    }

    /// [`Self::operator`] with its admin server (`/readyz`) on `admin_address`.
    fn operator_with(
        &self,
        account: &Account,
        name: &str,
        identity: Option<&str>,
        admin_address: &str,
    ) -> Operator {
        let mut args = vec![
            "--namespace",
            self.ns.as_str(),
            "--metrics-address",
            admin_address,
        ];
        // No emulator: the grants name Azure's default endpoints, nothing to allow (and no
        // Azurite to start in the middle of a fault).
        let mut env = vec![(operator::ALLOW_STORAGE_ENDPOINTS_ENV, "")];
        match identity {
            None => env.push(("SAS_OPERATOR_LEADER_ELECTION", "false")),
            Some(identity) => {
                args.extend([
                    "--leader-election",
                    "true",
                    "--lease-namespace",
                    self.ns.as_str(),
                    "--lease-name",
                    LEASE_NAME,
                    "--lease-duration",
                    LEASE[0],
                    "--lease-renew-deadline",
                    LEASE[1],
                    "--lease-retry-period",
                    LEASE[2],
                ]);
                env.push(("POD_NAME", identity));
            }
        }
        Operator::spawn(
            &format!("{}-{name}", self.ns),
            &account.kubeconfig,
            &args,
            &env,
        )
    }

    async fn wait_all_signed(&self) {
        operator::wait_for(
            "every grant's first token",
            Duration::from_secs(60),
            || async { (self.sampler.tokens().len() >= GRANTS).then_some(()) },
        )
        .await;
    }

    /// When the grant's token expiring at `expires` is due for renewal.
    fn renew_at(&self, grant: &str, expires: Timestamp) -> Timestamp {
        let uid = &self.uids[grant];
        schedule::renew_at(
            expires,
            RENEW_BEFORE_DURATION,
            schedule::jitter(uid, RENEW_BEFORE_DURATION),
        )
    }

    /// When the first grant's current token comes due.
    fn next_wave(&self) -> Timestamp {
        self.sampler
            .tokens()
            .iter()
            .filter(|(grant, _)| self.uids.contains_key(*grant))
            .filter_map(|(grant, seen)| Some(self.renew_at(grant, seen.last()?.expires)))
            .min()
            .expect("grants have tokens")
    }

    /// Waits until some grant gets a token first seen after `since`: a wave has started.
    async fn wait_for_first_rotation_since(&self, since: Timestamp) {
        let wait = since
            .duration_since(Timestamp::now())
            .max(SignedDuration::ZERO);
        let timeout = Duration::try_from(wait).unwrap() + Duration::from_secs(20);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rotated = self.sampler.tokens().iter().any(|(grant, seen)| {
                self.uids.contains_key(grant) && seen.iter().skip(1).any(|s| s.at >= since)
            });
            if rotated {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no grant was rotated within 20 s of {since}"
            );
            // Short: a burst of rotations lasts a few hundred milliseconds.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Grants whose renewal is due by `at`, with the token they hold then.
    fn overdue_at(&self, at: Timestamp) -> BTreeMap<String, Seen> {
        self.current_tokens(at)
            .into_iter()
            .filter(|(grant, seen)| self.renew_at(grant, seen.expires) <= at)
            .collect()
    }

    /// Grants that at `at` still hold a token first seen before `change` (so signed before it).
    fn signed_before(&self, change: Timestamp, at: Timestamp) -> BTreeMap<String, Seen> {
        self.current_tokens(at)
            .into_iter()
            .filter(|(_, seen)| seen.at < change)
            .collect()
    }

    /// The token each grant held at `at`, as far as the sampler knew.
    fn current_tokens(&self, at: Timestamp) -> BTreeMap<String, Seen> {
        self.sampler
            .tokens()
            .into_iter()
            .filter(|(grant, _)| self.uids.contains_key(grant))
            .filter_map(|(grant, seen)| {
                let current = *seen.iter().rev().find(|s| s.at <= at)?;
                Some((grant, current))
            })
            .collect()
    }

    /// Waits until every grant in `stale` (grant to the token it must replace) has another
    /// token, expiring no earlier, first seen after `back_at`, or until `PATIENCE_AFTER_EXPIRY`
    /// past the last stale token's expiry; reports how soon after `back_at` the last one came.
    async fn await_rotation(&self, back_at: Timestamp, stale: BTreeMap<String, Seen>) -> Recovery {
        let give_up = stale
            .values()
            .map(|seen| seen.expires)
            .max()
            .map_or(back_at, |latest| latest + PATIENCE_AFTER_EXPIRY);
        let rotations = loop {
            let tokens = self.sampler.tokens();
            let rotations: BTreeMap<&String, Option<Timestamp>> = stale
                .iter()
                .map(|(grant, old)| {
                    let next = tokens[grant].iter().find(|s| {
                        s.token != old.token && s.expires >= old.expires && s.at >= back_at
                    });
                    (grant, next.map(|s| s.at))
                })
                .collect();
            if rotations.values().all(Option::is_some) || Timestamp::now() > give_up {
                break rotations;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Recovery {
            overdue: stale.len(),
            slowest: rotations
                .values()
                .flatten()
                .map(|at| at.duration_since(back_at).max(SignedDuration::ZERO))
                .max(),
            not_rotated: rotations
                .iter()
                .filter(|(_, at)| at.is_none())
                .map(|(grant, _)| grant.to_string())
                .collect(),
        }
    }

    /// Replaces the account key in the key Secret; returns when the API server accepted it.
    async fn change_account_key(&self) -> Timestamp {
        let patch = json!({"stringData": {"key1": SECOND_ACCOUNT_KEY}});
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .patch("keys", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("change the account key");
        Timestamp::now()
    }

    /// Creates a grant (retrying while the API server settles) and measures how long until its
    /// Secret exists.
    async fn new_grant_delay(&self) -> Option<SignedDuration> {
        let grants = Api::<SasGrant>::namespaced(self.client.clone(), &self.ns);
        let name = "late";
        let created_at = operator::wait_for(
            "the API server to accept a new grant",
            Duration::from_secs(30),
            || async {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(3),
                    grants.create(&PostParams::default(), &grant(name)),
                )
                .await;
                match attempt {
                    Ok(Ok(_)) => Some(Timestamp::now()),
                    Ok(Err(kube::Error::Api(status))) if status.is_already_exists() => {
                        Some(Timestamp::now())
                    }
                    _ => None,
                }
            },
        )
        .await;
        let deadline = created_at + SignedDuration::from_secs(60);
        loop {
            if let Some(first) = self.sampler.tokens().get(name).and_then(|s| s.first()) {
                return Some(
                    first
                        .at
                        .duration_since(created_at)
                        .max(SignedDuration::ZERO),
                );
            }
            if Timestamp::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The longest any Secret held an expired token, up to `until`: from a token's expiry to
    /// the first sight of its successor (or `until`). The sampler sees every change while
    /// connected and relists at once when it reconnects, so this errs long by its reconnect
    /// delay at most.
    fn longest_expired(&self, until: Timestamp) -> SignedDuration {
        self.sampler
            .tokens()
            .values()
            .flat_map(|seen| {
                let replaced = seen.iter().skip(1).map(|s| s.at).chain([until]);
                seen.iter()
                    .zip(replaced)
                    .map(|(token, replaced_at)| replaced_at.duration_since(token.expires))
                    .collect::<Vec<_>>()
            })
            .fold(SignedDuration::ZERO, SignedDuration::max)
    }

    /// Tokens first seen from `since` on with less than renewBefore left then. A token is
    /// signed for the whole validity; the second it is truncated to and the sampler's delay
    /// take a second or so off.
    fn written_short(&self, since: Timestamp) -> Vec<String> {
        let margin = SignedDuration::try_from(RENEW_BEFORE_DURATION).unwrap();
        self.sampler
            .tokens()
            .iter()
            .flat_map(|(grant, seen)| {
                seen.iter()
                    .filter(|s| s.at >= since && s.expires.duration_since(s.at) < margin)
                    .map(move |s| {
                        format!(
                            "{grant}: {:.0}s left when seen at {}",
                            s.expires.duration_since(s.at).as_secs_f64(),
                            s.at
                        )
                    })
            })
            .collect()
    }

    /// Secrets whose token was replaced by one expiring earlier.
    fn went_back(&self) -> Vec<String> {
        self.sampler
            .tokens()
            .iter()
            .flat_map(|(grant, seen)| {
                seen.windows(2)
                    .filter(|pair| pair[1].expires < pair[0].expires)
                    .map(move |pair| {
                        format!(
                            "{grant}: from {} back to {} at {}",
                            pair[0].expires, pair[1].expires, pair[1].at
                        )
                    })
            })
            .collect()
    }

    fn expired_when_seen(&self) -> Vec<String> {
        self.sampler
            .samples
            .lock()
            .unwrap()
            .expired_when_seen
            .clone()
    }

    /// Waits until the Lease names `holder` (or anyone, for None) and returns the holder.
    async fn wait_for_lease_holder(&self, holder: Option<&str>) -> String {
        let leases = Api::<Lease>::namespaced(self.client.clone(), &self.ns);
        operator::wait_for("the Lease holder", Duration::from_secs(30), || async {
            let current = leases
                .get_opt(LEASE_NAME)
                .await
                .ok()??
                .spec?
                .holder_identity
                .filter(|h| !h.is_empty())?;
            holder.is_none_or(|h| h == current).then_some(current)
        })
        .await
    }

    /// When `account` first wrote the Lease successfully from `since` on (audit log).
    async fn lease_taken(&self, account: &Account, since: Timestamp) -> Timestamp {
        operator::wait_for(
            "the audit log to show the Lease taken",
            Duration::from_secs(30),
            || async {
                self.audit()
                    .into_iter()
                    .find(|e| {
                        e.user == account.user
                            && e.resource == "leases"
                            && matches!(e.verb.as_str(), "update" | "create")
                            && e.code.is_some_and(|c| c < 300)
                            && e.at >= since
                    })
                    .map(|e| e.at)
            },
        )
        .await
    }

    /// Creates a grant like the scenario's (not part of its wave).
    async fn create_grant(&self, name: &str) {
        Api::<SasGrant>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &grant(name))
            .await
            .unwrap_or_else(|err| panic!("create SasGrant {name}: {err}"));
    }

    /// How long after `since` the grant's first token was seen (None: not within a minute).
    async fn first_token_since(&self, grant: &str, since: Timestamp) -> Option<SignedDuration> {
        let deadline = since + SignedDuration::from_secs(60);
        loop {
            if let Some(first) = self.sampler.tokens().get(grant).and_then(|s| s.first()) {
                return Some(first.at.duration_since(since).max(SignedDuration::ZERO));
            }
            if Timestamp::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Secrets that `account` wrote more than once from `since` until `until` (audit log).
    fn secrets_written_twice(
        &self,
        account: &Account,
        since: Timestamp,
        until: Timestamp,
    ) -> Vec<String> {
        let mut writes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for event in self.audit() {
            if event.user == account.user
                && event.resource == "secrets"
                && event.is_write()
                && event.at >= since
                && event.at < until
            {
                let name = event.name.clone().unwrap_or_default();
                writes.entry(name).or_default().push(event.describe());
            }
        }
        writes
            .into_values()
            .filter(|writes| writes.len() > 1)
            .map(|writes| writes.join(", "))
            .collect()
    }

    /// From `back_at` until `account` watched grants and Secrets again after `fault_at` (audit
    /// log; None: not re-established).
    fn watches_back_after(
        &self,
        account: &Account,
        fault_at: Timestamp,
        back_at: Timestamp,
    ) -> Option<SignedDuration> {
        let audit = self.audit();
        ["sasgrants", "secrets"]
            .map(|resource| {
                audit
                    .iter()
                    .find(|e| {
                        e.user == account.user
                            && e.verb == "watch"
                            && e.resource == resource
                            && e.stage == "ResponseStarted"
                            && e.at >= fault_at
                    })
                    .map(|e| e.at.duration_since(back_at).max(SignedDuration::ZERO))
            })
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .and_then(|delays| delays.into_iter().max())
    }

    /// This namespace's requests in the API server's audit log, in order.
    fn audit(&self) -> Vec<AuditEvent> {
        audit_events(control_plane().apiserver_audit_log_path(), &self.ns)
    }
}

/// Leaves the control plane running for the next test, even after a failed assertion.
struct Healer;

impl Drop for Healer {
    fn drop(&mut self) {
        control_plane().revive();
    }
}

/// SIGSTOP or SIGCONT to an operator process.
fn signal(operator: &Operator, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(operator.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", operator.pid());
}

async fn sleep_until(at: Timestamp) {
    let wait = at.duration_since(Timestamp::now());
    if let Ok(wait) = Duration::try_from(wait) {
        tokio::time::sleep(wait).await;
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// Any 64-byte key (an account key's length) signs; nothing here talks to storage.
const ACCOUNT_KEY: &str =
    "c2FzLW9wZXJhdG9yIG91dGFnZSB0ZXN0cyBrZXkgMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA==";
const SECOND_ACCOUNT_KEY: &str =
    "c2FzLW9wZXJhdG9yIG91dGFnZSB0ZXN0cyBrZXkgMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMQ==";

fn grant(name: &str) -> SasGrant {
    from_json(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "storageAccount": {"name": "outages", "keySecretRef": {"name": "keys"}},
            "resource": {"container": {"name": "data"}},
            "permissions": "r",
            "validity": VALIDITY,
            "renewBefore": RENEW_BEFORE,
        }
    }))
}

// ----- The sampler: every token every target Secret holds, as the watch delivers it -----

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// A hash of the token: re-signing within the same second gives the same `se`.
    token: u64,
    /// The token's `se`.
    expires: Timestamp,
    /// When the sampler first saw it.
    at: Timestamp,
}

#[derive(Default)]
struct Samples {
    /// Per grant (the Secret's grant label), each distinct token in the order seen.
    tokens: BTreeMap<String, Vec<Seen>>,
    expired_when_seen: Vec<String>,
}

struct Sampler {
    samples: Arc<Mutex<Samples>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MANAGED: &str = "app.kubernetes.io/managed-by=sas-operator";
/// Requests of the sampler give up this soon, so that a frozen API server does not stall it.
const SAMPLER_REQUEST: Duration = Duration::from_secs(2);
/// A watch this quiet is replaced by a fresh list and watch (cheap, and robust to a watch that
/// silently stopped).
const SAMPLER_QUIET: Duration = Duration::from_secs(3);

impl Sampler {
    fn start(client: Client, ns: &str) -> Sampler {
        let samples = Arc::new(Mutex::new(Samples::default()));
        let api = Api::<Secret>::namespaced(client, ns);
        let task = tokio::spawn(sample(api, samples.clone()));
        Sampler { samples, task }
    }

    fn tokens(&self) -> BTreeMap<String, Vec<Seen>> {
        self.samples.lock().unwrap().tokens.clone()
    }
}

async fn sample(api: Api<Secret>, samples: Arc<Mutex<Samples>>) {
    use tokio::time::timeout;
    loop {
        let list = match timeout(
            SAMPLER_REQUEST,
            api.list(&ListParams::default().labels(MANAGED)),
        )
        .await
        {
            Ok(Ok(list)) => list,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for secret in &list {
            observe(&samples, secret);
        }
        let version = list.metadata.resource_version.unwrap_or_default();
        let params = WatchParams::default().labels(MANAGED);
        let Ok(Ok(stream)) = timeout(SAMPLER_REQUEST, api.watch(&params, &version)).await else {
            continue;
        };
        let mut stream = stream.boxed();
        while let Ok(Some(Ok(event))) = timeout(SAMPLER_QUIET, stream.next()).await {
            match event {
                WatchEvent::Added(secret) | WatchEvent::Modified(secret) => {
                    observe(&samples, &secret)
                }
                WatchEvent::Error(_) => break,
                WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => {}
            }
        }
    }
}

fn observe(samples: &Mutex<Samples>, secret: &Secret) {
    let at = Timestamp::now();
    let Some(grant) = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("sas-operator.io/grant"))
    else {
        return;
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|data| data.get("sasToken"))
        .and_then(|bytes| std::str::from_utf8(&bytes.0).ok());
    let expires = token
        .and_then(token_expiry)
        .unwrap_or_else(|| panic!("Secret of grant {grant} holds no token with an expiry"));
    let token = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        hasher.finish()
    };
    let mut samples = samples.lock().unwrap();
    if expires <= at {
        let finding = format!("{grant}: token expired at {expires}");
        if !samples
            .expired_when_seen
            .iter()
            .any(|known| known.starts_with(&finding))
        {
            samples
                .expired_when_seen
                .push(format!("{finding}, still there at {at}"));
        }
    }
    let seen = samples.tokens.entry(grant.clone()).or_default();
    if seen.last().map(|s| s.token) != Some(token) {
        seen.push(Seen { token, expires, at });
    }
}

/// The `se` of a SAS token.
fn token_expiry(token: &str) -> Option<Timestamp> {
    let value = token.split('&').find_map(|pair| pair.strip_prefix("se="))?;
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?
        .parse()
        .ok()
}

// ----- The operator's /readyz over time -----

/// `/readyz` of an operator's admin server, polled every 100 ms: each change and when.
struct ReadinessLog {
    changes: Arc<Mutex<Vec<(Timestamp, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

struct ReadinessAround {
    /// How long into the outage `/readyz` first failed (None: it never did).
    unready_after: Option<SignedDuration>,
    /// How long after the API server was back `/readyz` answered 200 again.
    ready_again_after: Option<SignedDuration>,
}

impl ReadinessLog {
    fn start(port: u16) -> ReadinessLog {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .expect("build an HTTP client");
            let url = format!("http://127.0.0.1:{port}/readyz");
            loop {
                let ready = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                {
                    let mut changes = sink.lock().unwrap();
                    if changes.last().map(|(_, was)| *was) != Some(ready) {
                        changes.push((Timestamp::now(), ready));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ReadinessLog { changes, task }
    }

    fn around(&self, fault_at: Timestamp, back_at: Timestamp) -> ReadinessAround {
        let changes = self.changes.lock().unwrap().clone();
        let unready_at = changes
            .iter()
            .find(|(at, ready)| *at >= fault_at && !ready)
            .map(|(at, _)| *at);
        let ready_again_at = unready_at.and_then(|unready_at| {
            changes
                .iter()
                .find(|(at, ready)| *at > unready_at && *ready)
                .map(|(at, _)| *at)
        });
        ReadinessAround {
            unready_after: unready_at.map(|at| at.duration_since(fault_at)),
            ready_again_after: ready_again_at
                .map(|at| at.duration_since(back_at).max(SignedDuration::ZERO)),
        }
    }
}

impl Drop for ReadinessLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- The audit log -----

struct AuditEvent {
    at: Timestamp,
    stage: String,
    user: String,
    verb: String,
    resource: String,
    subresource: Option<String>,
    name: Option<String>,
    code: Option<u16>,
}

impl AuditEvent {
    /// A request that changed something (a Lease renewal aside).
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && self.resource != "leases"
            && self.stage == "ResponseComplete"
            && self.code.is_some_and(|code| code < 300)
    }

    fn describe(&self) -> String {
        format!(
            "{} {}{}/{} at {}",
            self.verb,
            self.resource,
            self.subresource
                .as_ref()
                .map_or(String::new(), |s| format!("/{s}")),
            self.name.as_deref().unwrap_or_default(),
            self.at
        )
    }
}

/// The audit log's events about objects in `ns`, in the order they were logged.
fn audit_events(path: &Path, ns: &str) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).expect("read the audit log");
    let text_of = |value: &serde_json::Value| value.as_str().map(str::to_string);
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["objectRef"]["namespace"] == ns)
        .filter_map(|event| {
            Some(AuditEvent {
                at: event["requestReceivedTimestamp"].as_str()?.parse().ok()?,
                stage: text_of(&event["stage"])?,
                user: text_of(&event["user"]["username"])?,
                verb: text_of(&event["verb"])?,
                resource: text_of(&event["objectRef"]["resource"])?,
                subresource: text_of(&event["objectRef"]["subresource"]),
                name: text_of(&event["objectRef"]["name"]),
                code: event["responseStatus"]["code"]
                    .as_u64()
                    .and_then(|code| u16::try_from(code).ok()),
            })
        })
        .collect()
}
