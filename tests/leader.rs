//! Leader election on a real control plane: one leader at a time, hand-over on release,
//! take-over after a crash within the lease duration, and a deposed leader learns it.

mod common;

use std::time::{Duration, Instant};

use common::{control_plane, test_namespace};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use sas_operator::leader::{LeaderElection, LeaderElectionConfig, LeaderGuard};
use tokio::time::timeout;

const LEASE: &str = "sas-operator";
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RETRY_PERIOD: Duration = Duration::from_millis(500);
/// Time for a handful of API round trips on a busy two-core machine.
const SLACK: Duration = Duration::from_secs(2);

fn candidate(client: &kube::Client, namespace: &str, identity: &str) -> LeaderElection {
    LeaderElection::new(
        client.clone(),
        LeaderElectionConfig {
            lease_name: LEASE.into(),
            lease_namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_deadline: Duration::from_secs(3),
            retry_period: RETRY_PERIOD,
        },
    )
}

async fn lead(election: &LeaderElection) -> LeaderGuard {
    timeout(SLACK * 5, election.acquire())
        .await
        .expect("a free lease is acquired promptly")
        .expect("acquiring a free lease succeeds")
}

async fn holder(client: &kube::Client, namespace: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get(LEASE)
        .await
        .expect("read the lease");
    lease.spec.and_then(|spec| spec.holder_identity)
}

#[tokio::test]
async fn only_one_candidate_leads_while_the_leader_renews() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "leader-one").await;
    let first = lead(&candidate(&client, &namespace, "first")).await;

    let second = candidate(&client, &namespace, "second");
    let waited = timeout(LEASE_DURATION * 3, second.acquire()).await;

    assert!(
        waited.is_err(),
        "second candidate led while the first renewed"
    );
    assert!(first.is_leader());
    assert_eq!(holder(&client, &namespace).await.as_deref(), Some("first"));
}

#[tokio::test]
async fn release_hands_the_lease_over_without_waiting_it_out() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "leader-release").await;
    let first = lead(&candidate(&client, &namespace, "first")).await;
    let second = candidate(&client, &namespace, "second");
    let waiting = tokio::spawn(async move { second.acquire().await });
    tokio::time::sleep(RETRY_PERIOD * 2).await;
    assert!(
        !waiting.is_finished(),
        "second candidate led before the release"
    );

    let released = Instant::now();
    first.release().await;
    let second_guard = timeout(LEASE_DURATION, waiting)
        .await
        .expect("second candidate leads well within the lease duration after a release")
        .unwrap()
        .unwrap();

    assert!(
        released.elapsed() < RETRY_PERIOD + SLACK,
        "hand-over took {:?}",
        released.elapsed()
    );
    assert!(second_guard.is_leader());
    assert_eq!(holder(&client, &namespace).await.as_deref(), Some("second"));
}

#[tokio::test]
async fn a_leader_that_stops_renewing_is_replaced_after_the_lease_duration() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "leader-crash").await;
    let first = lead(&candidate(&client, &namespace, "first")).await;
    let second = candidate(&client, &namespace, "second");
    let waiting = tokio::spawn(async move { second.acquire().await });
    tokio::time::sleep(RETRY_PERIOD * 2).await;

    // Dropping the guard stops renewing without clearing the lease, as a crash would.
    let crashed = Instant::now();
    drop(first);
    let second_guard = timeout(LEASE_DURATION + SLACK * 2, waiting)
        .await
        .expect("second candidate takes over after the lease duration")
        .unwrap()
        .unwrap();
    let took = crashed.elapsed();

    // The first renewed at most a retry period (plus a request) before the crash, so the lease
    // was valid until about LEASE_DURATION - RETRY_PERIOD after it; taking it sooner is unsafe.
    assert!(
        took >= LEASE_DURATION - RETRY_PERIOD * 2,
        "took over after {took:?}, before the lease could have expired"
    );
    assert!(
        took <= LEASE_DURATION + RETRY_PERIOD * 2 + SLACK,
        "took over after {took:?}"
    );
    assert!(second_guard.is_leader());
    assert_eq!(holder(&client, &namespace).await.as_deref(), Some("second"));
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_learns_that_it_lost() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "leader-lost").await;
    let first = lead(&candidate(&client, &namespace, "first")).await;

    let leases = Api::<Lease>::namespaced(client.clone(), &namespace);
    // Read-modify-write; a renewal in between makes the write conflict, so try again.
    for attempt in 1.. {
        let mut lease = leases.get(LEASE).await.unwrap();
        lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
        match leases.replace(LEASE, &PostParams::default(), &lease).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < 10 => continue,
            Err(error) => panic!("overwrite the lease holder: {error}"),
        }
    }

    timeout(RETRY_PERIOD * 2 + SLACK, first.lost())
        .await
        .expect("the deposed leader's lost() resolves at its next renewal");
    assert!(!first.is_leader());
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("intruder")
    );
}

#[tokio::test]
async fn a_forbidden_lease_is_an_error_not_an_endless_wait() {
    let admin = control_plane().client().await;
    let namespace = test_namespace(&admin, "leader-forbidden").await;
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("no-rbac".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), &namespace)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let unprivileged = control_plane()
        .service_account_client(&namespace, "no-rbac")
        .await;

    let result = timeout(
        SLACK * 5,
        candidate(&unprivileged, &namespace, "first").acquire(),
    )
    .await
    .expect("acquire gives up on 403 instead of retrying forever");

    match result {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        Err(other) => panic!("expected 403 Forbidden, got {other}"),
        Ok(_) => panic!("acquired a lease without RBAC for it"),
    }
}

#[tokio::test]
async fn of_candidates_racing_for_a_new_lease_exactly_one_leads() {
    let client = control_plane().client().await;
    let namespace = test_namespace(&client, "leader-race").await;
    let racers: Vec<_> = ["one", "two", "three"]
        .into_iter()
        .map(|identity| {
            let election = candidate(&client, &namespace, identity);
            tokio::spawn(async move {
                timeout(LEASE_DURATION, election.acquire())
                    .await
                    .ok()
                    .map(|guard| guard.expect("acquire"))
            })
        })
        .collect();

    // Keep every guard alive until the end, so a winner cannot hand over mid-test.
    let mut guards = Vec::new();
    for racer in racers {
        guards.extend(racer.await.unwrap());
    }
    let leaders: Vec<&str> = guards.iter().map(LeaderGuard::identity).collect();

    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some(leaders[0])
    );
}
