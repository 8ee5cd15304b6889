//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! writes.
//!
//! The protocol follows client-go's leader election:
//! - A candidate takes the Lease when it has no holder, when it already names this candidate,
//!   or when its record has not changed for `leaseDurationSeconds` as measured by the
//!   candidate's own monotonic clock since it first saw that record. The Lease's `renewTime`
//!   is written for people and other tools but never compared with this machine's wall clock,
//!   so clock skew between nodes cannot make two replicas lead at once.
//! - Every write is a `replace` carrying the `resourceVersion` that was read, so of two
//!   candidates racing for the same record exactly one wins (the other gets 409 Conflict).
//! - The leader renews every retry period and counts itself deposed once it has not renewed
//!   for the renew deadline, which is shorter than the lease duration: it stops leading
//!   before any other candidate may start.
//! - Releasing clears `holderIdentity`, so a standby takes over at its next retry instead of
//!   waiting out the lease.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The `sas-operator run` flags of the leader election (flattened into the CLI's run flags;
/// this module owns them so that it imports nothing from the CLI).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// Elect a leader through a Lease so that only one replica writes (true or false).
    #[arg(long, env = "SAS_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "SAS_OPERATOR_LEASE_NAME", default_value = "sas-operator")]
    pub lease_name: String,
    /// Namespace of the Lease. Default: the client's namespace (in a pod, the pod's own).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease. Default: the host name plus a random suffix.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease stays valid after its last renewal; other replicas wait this long.
    #[arg(long, env = "SAS_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = crate::crd::parse_duration)]
    pub lease_duration: std::time::Duration,
    /// The leader steps down if it has not renewed the Lease for this long.
    #[arg(long, env = "SAS_OPERATOR_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = crate::crd::parse_duration)]
    pub lease_renew_deadline: std::time::Duration,
    /// How often the leader renews and a candidate retries.
    #[arg(long, env = "SAS_OPERATOR_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = crate::crd::parse_duration)]
    pub lease_retry_period: std::time::Duration,
}

/// Where the Lease lives, who we are, and the timing of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    /// How long others wait after the Lease's last change before taking it.
    pub lease_duration: Duration,
    /// The leader steps down when it has not renewed for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates look again (< `renew_deadline`).
    pub retry_period: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidLeaderConfig {
    #[error(
        "leader election needs retry period ({retry_period:?}) < renew deadline ({renew_deadline:?}) < lease duration ({lease_duration:?})"
    )]
    Timing {
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
    #[error("leader election needs a non-empty {0}")]
    Empty(&'static str),
}

impl LeaderElectionConfig {
    /// The election settings of `sas-operator run`, or `None` when leader election is off.
    /// `client_namespace` is used when no Lease namespace is configured: in a pod it is the
    /// pod's own namespace (from the service account), elsewhere the kubeconfig's.
    pub fn from_args(
        lease: &LeaseArgs,
        client_namespace: &str,
    ) -> Result<Option<Self>, InvalidLeaderConfig> {
        if !lease.leader_election {
            return Ok(None);
        }
        let election = Self {
            lease_name: lease.lease_name.clone(),
            lease_namespace: lease
                .lease_namespace
                .clone()
                .filter(|namespace| !namespace.is_empty())
                .unwrap_or_else(|| client_namespace.to_owned()),
            identity: lease
                .identity
                .clone()
                .filter(|identity| !identity.is_empty())
                .unwrap_or_else(default_identity),
            lease_duration: lease.lease_duration,
            renew_deadline: lease.lease_renew_deadline,
            retry_period: lease.lease_retry_period,
        };
        election.validate()?;
        Ok(Some(election))
    }

    pub fn validate(&self) -> Result<(), InvalidLeaderConfig> {
        for (field, value) in [
            ("lease name", &self.lease_name),
            ("lease namespace", &self.lease_namespace),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(InvalidLeaderConfig::Empty(field));
            }
        }
        let ordered = Duration::ZERO < self.retry_period
            && self.retry_period < self.renew_deadline
            && self.renew_deadline < self.lease_duration;
        if !ordered {
            return Err(InvalidLeaderConfig::Timing {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            });
        }
        Ok(())
    }
}

/// The host name plus a per-process random suffix: two processes on one machine (tests, a
/// developer's laptop) must never share an identity, or both would believe they lead.
pub fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sas-operator".to_owned());
    // RandomState is seeded randomly per process; hashing the pid mixes in nothing secret.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{host}_{:08x}", hasher.finish() as u32)
}

// ----- The pure decision -----

/// What a candidate needs to know of a Lease to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub lease_duration_seconds: Option<i32>,
    pub renew_time: Option<jiff::Timestamp>,
    pub resource_version: Option<String>,
}

impl LeaseRecord {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec.and_then(|spec| spec.holder_identity.clone()),
            lease_duration_seconds: spec.and_then(|spec| spec.lease_duration_seconds),
            renew_time: spec.and_then(|spec| spec.renew_time.as_ref().map(|time| time.0)),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// A record and the moment (on this process's monotonic clock) it was first seen as it is.
#[derive(Clone, Debug)]
pub struct Observation {
    pub record: LeaseRecord,
    pub since: Instant,
}

impl Observation {
    /// Keeps the old `since` while the record is unchanged; a changed record restarts it.
    pub fn update(previous: Option<Observation>, record: LeaseRecord, now: Instant) -> Self {
        match previous {
            Some(previous) if previous.record == record => previous,
            _ => Self { record, since: now },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds the Lease.
    TakeFree,
    /// The Lease already names us (e.g. this pod's previous container).
    TakeOwn,
    /// The holder has not renewed for a whole lease duration.
    TakeExpired,
    /// Someone else holds a live Lease; it expires at `until` unless renewed before.
    Wait { holder: String, until: Instant },
}

/// May `identity` take the Lease now? `default_duration` applies when the record carries no
/// (positive) `leaseDurationSeconds`.
pub fn decide(
    identity: &str,
    observation: &Observation,
    default_duration: Duration,
    now: Instant,
) -> Decision {
    let holder = match observation.record.holder.as_deref() {
        None | Some("") => return Decision::TakeFree,
        Some(holder) if holder == identity => return Decision::TakeOwn,
        Some(holder) => holder,
    };
    let duration = observation
        .record
        .lease_duration_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|&seconds| seconds > 0)
        .map_or(default_duration, Duration::from_secs);
    let until = observation.since + duration;
    if now >= until {
        Decision::TakeExpired
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
            until,
        }
    }
}

/// The spec that claims (or renews) the Lease for `identity` at `now`.
pub fn claimed_spec(
    previous: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let previous = previous.cloned().unwrap_or_default();
    let renewing = previous.holder_identity.as_deref() == Some(identity);
    let (acquire_time, lease_transitions) = if renewing {
        (
            previous.acquire_time.clone().or(Some(MicroTime(now))),
            previous.lease_transitions,
        )
    } else {
        let transitions = previous.lease_transitions.unwrap_or(0).saturating_add(1);
        (Some(MicroTime(now)), Some(transitions))
    };
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(whole_seconds_rounded_up(lease_duration)),
        acquire_time,
        renew_time: Some(MicroTime(now)),
        lease_transitions,
        ..previous
    }
}

/// The spec that gives the Lease up: no holder, so any candidate takes it at once.
pub fn released_spec(previous: Option<&LeaseSpec>, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..previous.cloned().unwrap_or_default()
    }
}

// Rounding up only ever makes others wait longer, never shorter, than we promise.
fn whole_seconds_rounded_up(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

// ----- The API side -----

/// A candidate for leadership of one Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    config: LeaderElectionConfig,
}

impl LeaderElection {
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        let api = Api::namespaced(client, &config.lease_namespace);
        Self { api, config }
    }

    pub fn config(&self) -> &LeaderElectionConfig {
        &self.config
    }

    /// Waits until this instance leads, then keeps renewing in the background.
    ///
    /// Transient API errors are logged and retried. Errors that retrying cannot fix (the
    /// Lease is forbidden to us, its namespace does not exist, the request is invalid) are
    /// returned. Cancel by dropping the future.
    pub async fn acquire(&self) -> Result<LeaderGuard, kube::Error> {
        let config = &self.config;
        tracing::info!(
            lease = %config.lease_name,
            namespace = %config.lease_namespace,
            identity = %config.identity,
            "waiting to lead"
        );
        let mut observation = None;
        let mut last_reported_holder: Option<String> = None;
        loop {
            let attempt_started = Instant::now();
            match self.try_acquire(&mut observation).await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(
                        lease = %config.lease_name,
                        identity = %config.identity,
                        "acquired the lease; leading"
                    );
                    return Ok(self.spawn_renewal(attempt_started));
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if last_reported_holder.as_ref() != Some(&holder) {
                        tracing::info!(lease = %config.lease_name, %holder, "lease is held by another replica; standing by");
                        last_reported_holder = Some(holder);
                    }
                }
                Ok(Attempt::LostRace) => {
                    tracing::debug!(lease = %config.lease_name, "another candidate wrote the lease first")
                }
                Err(error) if is_permanent(&error) => return Err(error),
                Err(error) => {
                    tracing::warn!(lease = %config.lease_name, %error, "could not read or claim the lease; retrying")
                }
            }
            tokio::time::sleep(config.retry_period).await;
        }
    }

    async fn try_acquire(
        &self,
        observation: &mut Option<Observation>,
    ) -> Result<Attempt, kube::Error> {
        let config = &self.config;
        let Some(current) = self.api.get_opt(&config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.lease_name.clone()),
                    namespace: Some(config.lease_namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed_spec(
                    None,
                    &config.identity,
                    config.lease_duration,
                    jiff::Timestamp::now(),
                )),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Acquired),
                Err(kube::Error::Api(status)) if status.is_already_exists() => {
                    Ok(Attempt::LostRace)
                }
                Err(error) => Err(error),
            };
        };
        // Observed after the response arrived: the later the observation, the later the
        // record counts as expired, which errs on the safe side.
        let seen = Observation::update(
            observation.take(),
            LeaseRecord::of(&current),
            Instant::now(),
        );
        let decision = decide(
            &config.identity,
            &seen,
            config.lease_duration,
            Instant::now(),
        );
        *observation = Some(seen);
        if let Decision::Wait { holder, .. } = decision {
            return Ok(Attempt::HeldBy(holder));
        }
        if decision == Decision::TakeExpired {
            tracing::info!(lease = %config.lease_name, "the lease expired; taking it over");
        }
        let mut claim = current;
        claim.spec = Some(claimed_spec(
            claim.spec.as_ref(),
            &config.identity,
            config.lease_duration,
            jiff::Timestamp::now(),
        ));
        match self
            .api
            .replace(&config.lease_name, &PostParams::default(), &claim)
            .await
        {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Attempt::LostRace),
            Err(error) => Err(error),
        }
    }

    fn spawn_renewal(&self, acquired_at: Instant) -> LeaderGuard {
        let (lost_sender, lost) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let claim = LeadershipClaim::held_until(acquired_at + self.config.renew_deadline);
        let task = tokio::spawn(keep_renewing(
            self.api.clone(),
            self.config.clone(),
            acquired_at,
            Loss {
                lost: lost_sender,
                claim: claim.clone(),
            },
            stopped,
        ));
        LeaderGuard {
            api: self.api.clone(),
            config: self.config.clone(),
            lost,
            claim,
            stop,
            task,
        }
    }
}

enum Attempt {
    Acquired,
    HeldBy(String),
    LostRace,
}

/// Errors that retrying will not fix.
fn is_permanent(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 404 | 422))
}

/// Proof of leadership. It renews the Lease in the background until it is released, dropped,
/// or the renewal fails for longer than the renew deadline.
///
/// Dropping it stops renewing without clearing the Lease (like a crash: others take over once
/// the lease duration has passed); [`LeaderGuard::release`] hands over at once.
pub struct LeaderGuard {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    lost: watch::Receiver<bool>,
    claim: LeadershipClaim,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LeaderGuard {
    /// Resolves once this instance no longer leads: the renewal failed for longer than the
    /// renew deadline, another candidate holds the Lease, or the guard was released or
    /// dropped. The controller must stop writing when it resolves; exiting the process and
    /// letting Kubernetes restart it as a fresh candidate is the simplest correct reaction.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            // An error means the renewal task ended, which also means we no longer lead.
            let _ = lost.wait_for(|lost| *lost).await;
        }
    }

    /// Whether this instance still counts itself the leader.
    pub fn is_leader(&self) -> bool {
        !*self.lost.borrow() && !self.task.is_finished() && self.claim.holds()
    }

    /// The claim every write checks first; it lapses on its own at the renew deadline.
    pub fn claim(&self) -> LeadershipClaim {
        self.claim.clone()
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Stops renewing and clears the Lease's holder so that a standby takes over at once.
    /// Call after the last write. Failures are logged: the Lease then simply expires.
    pub async fn release(self) {
        let Self {
            api,
            config,
            claim,
            stop,
            task,
            ..
        } = self;
        // No write may follow the release: a standby takes over at once.
        claim.revoke();
        let _ = stop.send(());
        // Wait for the renewal to stop so it cannot re-claim the Lease after we clear it.
        let _ = task.await;
        match tokio::time::timeout(config.renew_deadline, clear_holder(&api, &config)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %config.lease_name, "released the lease")
            }
            Ok(Ok(false)) => {
                tracing::info!(lease = %config.lease_name, "the lease was no longer ours to release")
            }
            Ok(Err(error)) => {
                tracing::warn!(lease = %config.lease_name, %error, "could not release the lease; it will expire")
            }
            Err(_) => {
                tracing::warn!(lease = %config.lease_name, "releasing the lease timed out; it will expire")
            }
        }
    }
}

async fn keep_renewing(
    api: Api<Lease>,
    config: LeaderElectionConfig,
    acquired_at: Instant,
    lost: Loss,
    mut stop: oneshot::Receiver<()>,
) {
    // The start of the last successful renewal request: the server wrote the record no
    // earlier, so others' clocks for it started no earlier either.
    let mut last_renewed = acquired_at;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(config.retry_period) => {}
        }
        let deadline = last_renewed + config.renew_deadline;
        let attempt_started = Instant::now();
        let outcome = tokio::select! {
            _ = &mut stop => return,
            outcome = tokio::time::timeout_at(deadline.into(), renew_once(&api, &config)) => outcome,
        };
        match outcome {
            Ok(Ok(())) => {
                last_renewed = attempt_started;
                lost.claim
                    .extend_to(attempt_started + config.renew_deadline);
            }
            Ok(Err(Renewal::Taken)) => {
                tracing::warn!(lease = %config.lease_name, "another replica holds the lease; no longer leading");
                lost.declare();
                return;
            }
            Ok(Err(Renewal::Failed(error))) if Instant::now() < deadline => {
                tracing::warn!(lease = %config.lease_name, %error, "could not renew the lease; retrying")
            }
            Ok(Err(Renewal::Failed(error))) => {
                tracing::error!(lease = %config.lease_name, %error, "could not renew the lease before the renew deadline; no longer leading");
                lost.declare();
                return;
            }
            Err(_elapsed) => {
                tracing::error!(lease = %config.lease_name, "renewing the lease timed out at the renew deadline; no longer leading");
                lost.declare();
                return;
            }
        }
    }
}

/// How the renewal task tells everyone that leadership is gone.
struct Loss {
    lost: watch::Sender<bool>,
    claim: LeadershipClaim,
}

impl Loss {
    fn declare(&self) {
        self.claim.revoke();
        self.lost.send_replace(true);
    }
}

impl Drop for Loss {
    // The renewal task ended (stopped, released, panicked): nobody renews, so nobody writes.
    fn drop(&mut self) {
        self.claim.revoke();
    }
}

/// A shared, cheap answer to "may this replica write now?", checked before every write (as
/// linkerd's policy controller and kubert's lease do). It holds while this replica holds the
/// Lease and its last successful renewal started less than the renew deadline ago, measured on
/// this process's monotonic clock. It lapses by itself when renewals stop (a paused or starved
/// process, a partition) without waiting for the renewal task to notice, so an in-flight
/// reconcile of a deposed leader cannot write after others may have taken over: they wait a
/// whole lease duration, which is longer than the renew deadline.
#[derive(Clone, Debug)]
pub struct LeadershipClaim(Option<Arc<ClaimState>>);

#[derive(Debug)]
struct ClaimState {
    origin: Instant,
    /// Nanoseconds after `origin` until which the claim holds.
    valid_until: AtomicU64,
    revoked: AtomicBool,
}

impl LeadershipClaim {
    /// The claim of a replica that runs without leader election: it always may write.
    pub fn unconditional() -> Self {
        Self(None)
    }

    /// A claim that holds until `until` unless extended or revoked.
    pub fn held_until(until: Instant) -> Self {
        let origin = Instant::now();
        let claim = Self(Some(Arc::new(ClaimState {
            origin,
            valid_until: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
        })));
        claim.extend_to(until);
        claim
    }

    /// Whether a write may start now.
    pub fn holds(&self) -> bool {
        let Some(state) = &self.0 else { return true };
        !state.revoked.load(Ordering::Acquire)
            && nanos_since(state.origin, Instant::now()) < state.valid_until.load(Ordering::Acquire)
    }

    /// Moves the end of the claim to `until` (only the renewal task calls this).
    fn extend_to(&self, until: Instant) {
        if let Some(state) = &self.0 {
            state
                .valid_until
                .store(nanos_since(state.origin, until), Ordering::Release);
        }
    }

    /// Ends the claim for good.
    pub fn revoke(&self) {
        if let Some(state) = &self.0 {
            state.revoked.store(true, Ordering::Release);
        }
    }
}

fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

enum Renewal {
    /// The Lease names someone else, or is gone.
    Taken,
    Failed(kube::Error),
}

async fn renew_once(api: &Api<Lease>, config: &LeaderElectionConfig) -> Result<(), Renewal> {
    let mut lease = match api.get_opt(&config.lease_name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Err(Renewal::Taken),
        Err(error) => return Err(Renewal::Failed(error)),
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref());
    if holder != Some(config.identity.as_str()) {
        return Err(Renewal::Taken);
    }
    lease.spec = Some(claimed_spec(
        lease.spec.as_ref(),
        &config.identity,
        config.lease_duration,
        jiff::Timestamp::now(),
    ));
    // The resourceVersion from the read makes this conditional: if anyone wrote in between,
    // the server answers 409 and the next attempt reads again.
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => Err(Renewal::Failed(error)),
    }
}

/// Clears the holder if (and only if) the Lease still names us. Returns whether it did.
async fn clear_holder(
    api: &Api<Lease>,
    config: &LeaderElectionConfig,
) -> Result<bool, kube::Error> {
    for _ in 0..3 {
        let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
            return Ok(false);
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.as_deref());
        if holder != Some(config.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(released_spec(lease.spec.as_ref(), jiff::Timestamp::now()));
        match api
            .replace(&config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";
    const FIFTEEN_SECONDS: Duration = Duration::from_secs(15);

    fn record(holder: Option<&str>, duration_seconds: Option<i32>, version: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_owned),
            lease_duration_seconds: duration_seconds,
            renew_time: None,
            resource_version: Some(version.to_owned()),
        }
    }

    fn seen_at(record: LeaseRecord, since: Instant) -> Observation {
        Observation { record, since }
    }

    #[test]
    fn a_lease_without_holder_may_be_taken() {
        let now = Instant::now();
        let observation = seen_at(record(None, Some(15), "1"), now);
        assert_eq!(
            decide(ME, &observation, FIFTEEN_SECONDS, now),
            Decision::TakeFree
        );
    }

    #[test]
    fn a_released_lease_with_empty_holder_may_be_taken() {
        let now = Instant::now();
        let observation = seen_at(record(Some(""), Some(1), "1"), now);
        assert_eq!(
            decide(ME, &observation, FIFTEEN_SECONDS, now),
            Decision::TakeFree
        );
    }

    #[test]
    fn a_lease_naming_us_may_be_taken_at_once() {
        let now = Instant::now();
        let observation = seen_at(record(Some(ME), Some(15), "1"), now);
        assert_eq!(
            decide(ME, &observation, FIFTEEN_SECONDS, now),
            Decision::TakeOwn
        );
    }

    #[test]
    fn a_lease_held_by_another_must_be_waited_out_from_when_we_first_saw_it() {
        let first_seen = Instant::now();
        let observation = seen_at(record(Some(OTHER), Some(15), "1"), first_seen);
        let almost = first_seen + Duration::from_millis(14_999);
        assert_eq!(
            decide(ME, &observation, FIFTEEN_SECONDS, almost),
            Decision::Wait {
                holder: OTHER.to_owned(),
                until: first_seen + FIFTEEN_SECONDS
            }
        );
        assert_eq!(
            decide(
                ME,
                &observation,
                FIFTEEN_SECONDS,
                first_seen + FIFTEEN_SECONDS
            ),
            Decision::TakeExpired
        );
    }

    #[test]
    fn the_holders_lease_duration_counts_not_ours() {
        let first_seen = Instant::now();
        let observation = seen_at(record(Some(OTHER), Some(60), "1"), first_seen);
        let after_our_duration = first_seen + Duration::from_secs(20);
        assert!(matches!(
            decide(ME, &observation, FIFTEEN_SECONDS, after_our_duration),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn a_missing_or_nonsensical_lease_duration_falls_back_to_ours() {
        let first_seen = Instant::now();
        for duration in [None, Some(0), Some(-5)] {
            let observation = seen_at(record(Some(OTHER), duration, "1"), first_seen);
            assert!(
                matches!(
                    decide(
                        ME,
                        &observation,
                        FIFTEEN_SECONDS,
                        first_seen + Duration::from_secs(14)
                    ),
                    Decision::Wait { .. }
                ),
                "duration {duration:?}"
            );
            assert_eq!(
                decide(
                    ME,
                    &observation,
                    FIFTEEN_SECONDS,
                    first_seen + FIFTEEN_SECONDS
                ),
                Decision::TakeExpired,
                "duration {duration:?}"
            );
        }
    }

    #[test]
    fn a_renewal_restarts_the_wait() {
        let start = Instant::now();
        let first = Observation::update(None, record(Some(OTHER), Some(15), "1"), start);
        let later = start + Duration::from_secs(10);
        let renewed = Observation::update(Some(first), record(Some(OTHER), Some(15), "2"), later);
        assert_eq!(renewed.since, later);
        assert!(matches!(
            decide(
                ME,
                &renewed,
                FIFTEEN_SECONDS,
                start + Duration::from_secs(20)
            ),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(ME, &renewed, FIFTEEN_SECONDS, later + FIFTEEN_SECONDS),
            Decision::TakeExpired
        );
    }

    #[test]
    fn an_unchanged_record_keeps_its_first_sighting() {
        let start = Instant::now();
        let first = Observation::update(None, record(Some(OTHER), Some(15), "7"), start);
        let again = Observation::update(
            Some(first),
            record(Some(OTHER), Some(15), "7"),
            start + Duration::from_secs(9),
        );
        assert_eq!(again.since, start);
    }

    #[test]
    fn a_stale_renew_time_alone_does_not_expire_a_lease() {
        // Wall clocks of different nodes disagree; only our own observation counts.
        let now = Instant::now();
        let mut stale = record(Some(OTHER), Some(15), "1");
        stale.renew_time = Some(jiff::Timestamp::UNIX_EPOCH);
        let observation = seen_at(stale, now);
        assert!(matches!(
            decide(ME, &observation, FIFTEEN_SECONDS, now),
            Decision::Wait { .. }
        ));
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn taking_over_from_another_counts_a_transition_and_restarts_acquire_time() {
        let previous = LeaseSpec {
            holder_identity: Some(OTHER.to_owned()),
            acquire_time: Some(MicroTime(at(100))),
            renew_time: Some(MicroTime(at(150))),
            lease_transitions: Some(3),
            lease_duration_seconds: Some(60),
            ..LeaseSpec::default()
        };
        let spec = claimed_spec(Some(&previous), ME, FIFTEEN_SECONDS, at(200));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(200))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(200))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let previous = LeaseSpec {
            holder_identity: Some(ME.to_owned()),
            acquire_time: Some(MicroTime(at(100))),
            renew_time: Some(MicroTime(at(150))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        let spec = claimed_spec(Some(&previous), ME, FIFTEEN_SECONDS, at(200));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.renew_time, Some(MicroTime(at(200))));
    }

    #[test]
    fn a_new_lease_starts_with_one_transition() {
        let spec = claimed_spec(None, ME, FIFTEEN_SECONDS, at(200));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    }

    #[test]
    fn the_published_duration_is_rounded_up_to_whole_seconds() {
        let spec = claimed_spec(None, ME, Duration::from_millis(1500), at(0));
        assert_eq!(spec.lease_duration_seconds, Some(2));
    }

    #[test]
    fn releasing_clears_the_holder_and_keeps_the_history() {
        let previous = claimed_spec(None, ME, FIFTEEN_SECONDS, at(100));
        let released = released_spec(Some(&previous), at(300));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, previous.lease_transitions);
        assert_eq!(released.acquire_time, previous.acquire_time);
        assert_eq!(released.renew_time, Some(MicroTime(at(300))));
        let observation = seen_at(
            LeaseRecord {
                holder: released.holder_identity.clone(),
                lease_duration_seconds: released.lease_duration_seconds,
                renew_time: None,
                resource_version: None,
            },
            Instant::now(),
        );
        assert_eq!(
            decide(OTHER, &observation, FIFTEEN_SECONDS, observation.since),
            Decision::TakeFree
        );
    }

    #[test]
    fn a_claim_holds_until_its_deadline_and_not_after() {
        let now = Instant::now();
        assert!(LeadershipClaim::held_until(now + Duration::from_secs(60)).holds());
        assert!(!LeadershipClaim::held_until(now).holds());
        let lapsed = LeadershipClaim::held_until(now - Duration::from_secs(1));
        assert!(!lapsed.holds());
    }

    #[test]
    fn a_renewal_extends_the_claim_and_a_revocation_ends_it_for_every_clone() {
        let claim = LeadershipClaim::held_until(Instant::now());
        let shared = claim.clone();
        claim.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(shared.holds());
        claim.revoke();
        assert!(!shared.holds());
        claim.extend_to(Instant::now() + Duration::from_secs(120));
        assert!(!shared.holds(), "a revoked claim stays revoked");
    }

    #[test]
    fn without_leader_election_the_claim_always_holds() {
        assert!(LeadershipClaim::unconditional().holds());
    }

    fn election_config() -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_name: "sas-operator".into(),
            lease_namespace: "sas-operator".into(),
            identity: ME.into(),
            lease_duration: FIFTEEN_SECONDS,
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    #[test]
    fn timings_must_be_retry_below_renew_deadline_below_lease_duration() {
        assert_eq!(election_config().validate(), Ok(()));
        for (lease, renew, retry) in [(10, 10, 2), (15, 2, 2), (15, 10, 0), (5, 10, 2)] {
            let config = LeaderElectionConfig {
                lease_duration: Duration::from_secs(lease),
                renew_deadline: Duration::from_secs(renew),
                retry_period: Duration::from_secs(retry),
                ..election_config()
            };
            assert!(
                matches!(config.validate(), Err(InvalidLeaderConfig::Timing { .. })),
                "lease {lease}s, renew {renew}s, retry {retry}s"
            );
        }
    }

    #[test]
    fn an_empty_identity_is_rejected() {
        let config = LeaderElectionConfig {
            identity: String::new(),
            ..election_config()
        };
        assert_eq!(
            config.validate(),
            Err(InvalidLeaderConfig::Empty("identity"))
        );
    }

    #[test]
    fn default_identities_differ_between_calls_and_name_the_host() {
        let first = default_identity();
        let second = default_identity();
        assert_ne!(first, second);
        let (host, suffix) = first.rsplit_once('_').expect("host_suffix");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 8);
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        lease: LeaseArgs,
    }

    fn run_config(args: &[&str]) -> LeaseArgs {
        use clap::Parser;
        let mut argv = vec!["sas-operator"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("valid flags").lease
    }

    #[test]
    fn run_flags_become_an_election_config() {
        let config = run_config(&[
            "--lease-name=ops",
            "--lease-namespace=infra",
            "--identity=pod-1",
            "--lease-duration=20s",
            "--lease-renew-deadline=12s",
            "--lease-retry-period=3s",
        ]);
        let election = LeaderElectionConfig::from_args(&config, "default")
            .unwrap()
            .expect("leader election is on by default");
        assert_eq!(
            election,
            LeaderElectionConfig {
                lease_name: "ops".into(),
                lease_namespace: "infra".into(),
                identity: "pod-1".into(),
                lease_duration: Duration::from_secs(20),
                renew_deadline: Duration::from_secs(12),
                retry_period: Duration::from_secs(3),
            }
        );
    }

    #[test]
    fn without_a_lease_namespace_the_clients_namespace_is_used() {
        let config = run_config(&["--identity=pod-1"]);
        let election = LeaderElectionConfig::from_args(&config, "from-client")
            .unwrap()
            .unwrap();
        assert_eq!(election.lease_namespace, "from-client");
        assert_eq!(election.lease_name, "sas-operator");
    }

    #[test]
    fn leader_election_can_be_turned_off() {
        for flag in [
            "--leader-election=false",
            "--leader-election=no",
            "--leader-election=0",
        ] {
            let config = run_config(&[flag]);
            assert_eq!(
                LeaderElectionConfig::from_args(&config, "default"),
                Ok(None),
                "{flag}"
            );
        }
    }
}
