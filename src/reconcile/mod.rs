//! Reconcile one `SasGrant`: read -> decide (pure) -> write -> requeue.
//!
//! Every read and write goes through the [`Cluster`] seam; every decision is a pure function in
//! the submodules, unit-tested without a server. The whole reconcile runs under a deadline
//! below the lease's renew deadline.

pub mod grant;
pub mod policy;
pub mod schedule;
pub mod secret;
pub mod status;
pub mod validate;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt, runtime::controller::Action};

use self::grant::GrantPlan;
use self::policy::{Decision, SignReason};
use self::schedule::Renewal;
use self::secret::SignedToken;
use self::status::{Outcome, TokenFacts};
use crate::cluster::{Cluster, GrantEvent, Severity};
use crate::crd::{SasGrant, SasGrantSpec};
use crate::error::Error;
use crate::sas;

/// The field manager of every write; also the `managed-by` label value.
pub const FIELD_MANAGER: &str = secret::MANAGER_NAME;

/// How soon a grant whose write conflicted is reconciled again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// Reconciles at once unless `--concurrency` says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;

/// Where "now" comes from; tests may substitute their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context<C> {
    /// Shared with the credential fetches, which outlive a reconcile.
    pub cluster: Arc<C>,
    pub clock: Clock,
    /// How far start times are backdated for clock skew.
    pub backdate: Duration,
    pub metrics: crate::metrics::Metrics,
    /// The deadline of one reconcile (below the lease's renew deadline).
    pub timeout: Duration,
    /// Consecutive failures per grant uid, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Where `ClusterSasIssuer` credentials live (`--cluster-resource-namespace`).
    pub cluster_resource_namespace: Option<String>,
    /// The Entra and storage client of workload identity issuers.
    pub identity: Option<crate::issuer::identity::IdentityClient>,
    /// User delegation keys, one per (issuer, service).
    pub delegation_keys: crate::issuer::keys::DelegationKeys,
    /// The storage endpoints specs may name (`--storage-endpoint-suffixes`,
    /// `--allow-storage-endpoint`).
    pub allowed_endpoints: crate::endpoints::AllowedEndpoints,
    /// The operator's own ServiceAccount, named in the commands that bind an issuer's to it.
    pub operator_account: crate::issuer::binding::OperatorAccount,
    /// Per grant uid: when it needs work next and when its current token expires, so that a
    /// retry never waits past the expiry and the API server's return reconciles overdue grants.
    schedules: Mutex<HashMap<String, Scheduled>>,
    /// The reconciles that may run at once (`--concurrency`), taken in turns by namespace.
    pub turns: Arc<crate::fair::FairGate>,
}

/// What the last reconcile of a grant learned about its timing.
#[derive(Debug, Clone, Default)]
struct Scheduled {
    namespace: String,
    name: String,
    /// When the grant's token is due for renewal (None: not known yet).
    renews_at: Option<Timestamp>,
    /// When the token its Secret holds expires (None: no token, or not known).
    expires_at: Option<Timestamp>,
    /// The last attempt failed because the API server did not answer.
    failed_unreachable: bool,
}

impl<C: Cluster> Context<C> {
    pub fn new(
        cluster: C,
        backdate: Duration,
        metrics: crate::metrics::Metrics,
        timeout: Duration,
    ) -> Self {
        Context {
            cluster: Arc::new(cluster),
            clock: Arc::new(Timestamp::now),
            backdate,
            metrics,
            timeout,
            failures: Mutex::default(),
            schedules: Mutex::default(),
            cluster_resource_namespace: None,
            identity: None,
            delegation_keys: Default::default(),
            allowed_endpoints: Default::default(),
            operator_account: Default::default(),
            turns: crate::fair::FairGate::new(DEFAULT_CONCURRENCY),
        }
    }

    /// Sets how many reconciles may run at once (`--concurrency`).
    pub fn with_concurrency(mut self, concurrency: u16) -> Self {
        self.turns = crate::fair::FairGate::new(usize::from(concurrency));
        self
    }

    /// Sets the storage endpoints specs may name.
    pub fn with_allowed_endpoints(mut self, allowed: crate::endpoints::AllowedEndpoints) -> Self {
        self.allowed_endpoints = allowed;
        self
    }

    /// Sets the operator's own ServiceAccount.
    pub fn with_operator_account(
        mut self,
        account: crate::issuer::binding::OperatorAccount,
    ) -> Self {
        self.operator_account = account;
        self
    }

    /// Sets the workload identity client and the cap on user delegation key lifetimes.
    pub fn with_workload_identity(
        mut self,
        identity: Option<crate::issuer::identity::IdentityClient>,
        max_key_lifetime: Duration,
    ) -> Self {
        // No request outlasts a reconcile.
        self.identity = identity.map(|client| client.bounded_by(self.timeout));
        // A reconcile waits for a fetch at most a quarter of its deadline.
        self.delegation_keys = crate::issuer::keys::DelegationKeys::new(max_key_lifetime)
            .with_bounds(
                crate::issuer::keys::FETCH_TIMEOUT,
                crate::issuer::keys::FETCH_GRACE.min(self.timeout / 4),
            );
        self
    }

    /// Sets where `ClusterSasIssuer` credentials live.
    pub fn with_cluster_resource_namespace(mut self, namespace: Option<String>) -> Self {
        self.cluster_resource_namespace = namespace;
        self
    }

    /// Now, in whole seconds: SAS times have second precision, and `expiresAt` must equal the
    /// token's `se` exactly.
    fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn schedules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scheduled>> {
        self.schedules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates what is known about a grant's timing.
    fn note(&self, grant: &SasGrant, update: impl FnOnce(&mut Scheduled)) {
        let mut schedules = self.schedules();
        let entry = schedules
            .entry(grant.uid().unwrap_or_default())
            .or_insert_with(|| Scheduled {
                namespace: grant.namespace().unwrap_or_default(),
                name: grant.name_any(),
                ..Scheduled::default()
            });
        update(entry);
    }

    /// When the token a grant's Secret holds expires, as far as known.
    fn token_expiry(&self, uid: &str) -> Option<Timestamp> {
        self.schedules().get(uid).and_then(|s| s.expires_at)
    }

    /// The grants in `namespace` (every namespace for None) that need a reconcile at `now`:
    /// renewal due, or the last attempt failed for want of the API server.
    pub fn overdue(&self, now: Timestamp, namespace: Option<&str>) -> Vec<ObjectRef<SasGrant>> {
        self.schedules()
            .values()
            .filter(|s| namespace.is_none_or(|ns| ns == s.namespace))
            .filter(|s| s.failed_unreachable || s.renews_at.is_some_and(|at| at <= now))
            .map(|s| ObjectRef::new(&s.name).within(&s.namespace))
            .collect()
    }

    /// Starts every grant's backoff over (the API server is back).
    pub fn reset_backoff(&self) {
        self.failures().clear();
    }

    /// Forgets the failure counts and schedules of grants whose uid is not in `live` (deleted
    /// grants).
    pub fn prune_failures(&self, live: &HashSet<String>) {
        self.failures().retain(|uid, _| live.contains(uid));
        self.schedules().retain(|uid, _| live.contains(uid));
    }

    /// How many grants have a failure count (for tests and diagnostics).
    pub fn failing_grants(&self) -> usize {
        self.failures().len()
    }
}

/// The controller's reconcile function.
pub async fn reconcile<C: Cluster>(
    grant: Arc<SasGrant>,
    ctx: Arc<Context<C>>,
) -> Result<Action, Error> {
    if grant.metadata.deletion_timestamp.is_some() {
        // The Secret goes with the grant through its ownerReference.
        return Ok(Action::await_change());
    }
    // The controller starts every due reconcile; it works in its namespace's turn. Boxed, so
    // that a reconcile waiting for its turn is small.
    let turn = ctx
        .turns
        .enter(grant.namespace().as_deref().unwrap_or_default())
        .await;
    let result = Box::pin(reconcile_in_turn(grant, ctx)).await;
    drop(turn);
    result
}

/// [`reconcile`], once it is its namespace's turn.
async fn reconcile_in_turn<C: Cluster>(
    grant: Arc<SasGrant>,
    ctx: Arc<Context<C>>,
) -> Result<Action, Error> {
    tracing::debug!(
        namespace = grant.namespace().as_deref().unwrap_or_default(),
        name = %grant.name_any(),
        "reconciling"
    );
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(ctx.timeout, reconcile_grant(&grant, &ctx))
        .await
        .unwrap_or(Err(Error::ReconcileTimeout { after: ctx.timeout }));
    ctx.metrics
        .observe_reconcile(started.elapsed().as_secs_f64());
    let (namespace, name) = (grant.namespace().unwrap_or_default(), grant.name_any());
    match result {
        Ok(facts) => {
            ctx.failures().remove(&grant.uid().unwrap_or_default());
            ctx.note(&grant, |s| {
                s.renews_at = Some(facts.renews_at);
                s.expires_at = Some(facts.expires_at);
                s.failed_unreachable = false;
            });
            ctx.metrics.set_ready(&namespace, &name, true);
            ctx.metrics
                .set_grant_schedule(&namespace, &name, facts.expires_at, facts.renews_at);
            Ok(Action::requeue(schedule::timer_requeue(
                (ctx.clock)(),
                wake_at(facts.renews_at),
            )))
        }
        // A read that was behind a write: the next read is fresh (the seam marked it).
        Err(err) if err.is_conflict() => {
            tracing::debug!(namespace = %namespace, name = %name, "conflict; reading again");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        Err(err) => {
            ctx.metrics.set_ready(&namespace, &name, false);
            let unreachable = !err.api_reachable();
            ctx.note(&grant, |s| s.failed_unreachable = unreachable);
            Err(err)
        }
    }
}

/// Each time `reconnects` yields (the API server is back after an outage), starts every
/// grant's backoff over and yields the grants in `namespace` that are overdue, for the
/// controller to reconcile at once instead of at their next backoff.
pub fn overdue_on_reconnect<C: Cluster>(
    reconnects: impl Stream<Item = ()> + Send + 'static,
    ctx: Arc<Context<C>>,
    namespace: Option<String>,
) -> impl Stream<Item = ObjectRef<SasGrant>> + Send + 'static {
    reconnects.flat_map(move |()| {
        ctx.reset_backoff();
        futures::stream::iter(ctx.overdue(ctx.now(), namespace.as_deref()))
    })
}

/// When to look at a grant due at `renews_at` again. Decisions see `now` in whole seconds, so
/// waking within the second of a fractional `renews_at` would find nothing due yet and cost a
/// second reconcile: wake at the next whole second. (Renewals are due at whole seconds, see
/// [`Renewal::renew_at`]; this only guards against a fractional time from elsewhere.)
fn wake_at(renews_at: Timestamp) -> Timestamp {
    if renews_at.subsec_nanosecond() == 0 {
        return renews_at;
    }
    Timestamp::from_second(renews_at.as_second() + 1).unwrap_or(renews_at)
}

/// Retries a failed reconcile: transient errors with per-grant exponential backoff, errors
/// that only a change fixes slowly, and a lost lease not at all (the process stops). No retry
/// waits past the current token's expiry minus a margin (the reconcile deadline and
/// [`schedule::RETRY_SAFETY_MARGIN`]). One WARN line per failed attempt.
pub fn error_policy<C: Cluster>(grant: Arc<SasGrant>, err: &Error, ctx: Arc<Context<C>>) -> Action {
    if matches!(err, Error::LeadershipLost) {
        tracing::warn!(name = %grant.name_any(), "not leading any more; dropped the reconcile");
        return Action::await_change();
    }
    if let Error::IssuerBackingOff { retry_after, .. } = err {
        // The issuer's schedule, not the grant's: its grants come back for its next attempt,
        // spread over a fifth of the wait so that they do not all arrive at once.
        let uid = grant.uid().unwrap_or_default();
        let wait = schedule::retry_after(
            ctx.now(),
            *retry_after + schedule::jitter(&uid, *retry_after),
            ctx.token_expiry(&uid),
            ctx.timeout + schedule::RETRY_SAFETY_MARGIN,
        );
        tracing::debug!(
            namespace = grant.namespace().as_deref().unwrap_or_default(),
            name = %grant.name_any(),
            reason = err.category(),
            retry_in_seconds = wait.as_secs_f64(),
            "the issuer backs off"
        );
        return Action::requeue(wait);
    }
    let failures = {
        let mut failures = ctx.failures();
        let count = failures.entry(grant.uid().unwrap_or_default()).or_default();
        *count += 1;
        *count
    };
    let backoff = if err.is_permanent_api_error() {
        schedule::slow_backoff(failures)
    } else {
        schedule::backoff(failures)
    };
    let wait = schedule::retry_after(
        ctx.now(),
        backoff,
        ctx.token_expiry(&grant.uid().unwrap_or_default()),
        ctx.timeout + schedule::RETRY_SAFETY_MARGIN,
    );
    tracing::warn!(
        namespace = grant.namespace().as_deref().unwrap_or_default(),
        name = %grant.name_any(),
        reason = err.category(),
        error = %crate::error::truncate_message(&err.to_string()),
        retry_in_seconds = wait.as_secs(),
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// Syncs the Secret, then shows the outcome in status (unless the API server is out of reach
/// or this replica lost its lease: then nothing more is written).
async fn reconcile_grant<C: Cluster>(
    grant: &SasGrant,
    ctx: &Context<C>,
) -> Result<TokenFacts, Error> {
    let now = ctx.now();
    let (plan, result) = match GrantPlan::from_spec(&grant.name_any(), &grant.spec) {
        Ok(plan) => {
            let result = sync(grant, &plan, ctx, now).await;
            (Some(plan), result)
        }
        Err(err) => (None, Err(err)),
    };
    if let Err(err) = &result
        && (!err.api_reachable() || err.is_conflict())
    {
        return result;
    }
    let outcome = match &result {
        Ok(facts) => Outcome::Ready(facts.clone()),
        Err(err) => Outcome::Failed {
            reason: err.category(),
            message: err.to_string(),
        },
    };
    let written = write_status(grant, ctx, plan.as_ref(), &outcome, now).await;
    let facts = result?;
    written?;
    Ok(facts)
}

/// Makes the target Secret hold a valid token for the grant; returns the token's facts.
async fn sync<C: Cluster>(
    grant: &SasGrant,
    plan: &GrantPlan,
    ctx: &Context<C>,
    now: Timestamp,
) -> Result<TokenFacts, Error> {
    let namespace = grant
        .namespace()
        .ok_or_else(|| Error::InvalidGrant("SasGrant has no namespace".into()))?;
    let name = grant.name_any();
    let uid = grant.uid().unwrap_or_default();
    let env = crate::issuer::IssuerEnv {
        cluster_resource_namespace: ctx.cluster_resource_namespace.as_deref(),
        identity: ctx.identity.as_ref(),
        keys: &ctx.delegation_keys,
        now,
        clock: &ctx.clock,
        validity: plan.validity,
        resource: &plan.resource,
        backdate: ctx.backdate,
        grant: &grant.spec,
        endpoints: &ctx.allowed_endpoints,
        operator: &ctx.operator_account,
    };
    // An inline account's endpoints, before its key is read (an issuer's are checked where
    // it is resolved).
    if let (grant::CredentialSource::Inline { .. }, Some(account)) =
        (&plan.credential, &grant.spec.storage_account)
    {
        ctx.allowed_endpoints
            .check_account("", &account.name, account.endpoints.as_ref())?;
    }
    let credential =
        crate::issuer::resolve(&ctx.cluster, &namespace, &plan.credential, &env).await?;

    let existing = ctx
        .cluster
        .target_secret(&namespace, &plan.target_secret)
        .await?;
    if let Some(found) = &existing
        && !secret::is_owned_by(found, &uid)
    {
        return Err(Error::SecretNotOwned {
            name: plan.target_secret.clone(),
        });
    }
    let renewal = Renewal::of(&uid, plan.validity, plan.renew_before);
    ctx.note(grant, |s| {
        s.expires_at = existing
            .as_ref()
            .and_then(secret::stored_token)
            .and_then(secret::token_expiry);
    });
    let keep = |judged: &Judged, renew_at: Timestamp| {
        let found = existing
            .as_ref()
            .expect("Keep is only decided for an existing Secret");
        TokenFacts {
            expires_at: judged
                .issued
                .as_ref()
                .and_then(|i| i.expires_at)
                .expect("Keep implies a known expiry"),
            renews_at: renew_at,
            rotated_at: secret::rotated_at(found),
            token_hash: secret::stored_token(found).map(secret::token_hash),
        }
    };
    let (resolved, judged, reason) = match credential {
        crate::issuer::Credential::Ready(resolved) => {
            let resolved = *resolved;
            let judged = Judged::of(grant, plan, &resolved, existing.as_ref(), now, &renewal);
            match judged.decision {
                Decision::Keep { renew_at } => return Ok(keep(&judged, renew_at)),
                Decision::Sign(reason) => (resolved, judged, reason),
            }
        }
        crate::issuer::Credential::Delegation(signer) => {
            let signer = *signer;
            // The current token may be signed with any key still cached: kept if it verifies
            // under one (a newer key re-signs nothing), else a key a new token fits in.
            let mut verified = None;
            for key in signer.cached.clone() {
                let resolved = signer.with_key(key);
                let judged = Judged::of(grant, plan, &resolved, existing.as_ref(), now, &renewal);
                match judged.decision {
                    Decision::Keep { renew_at } => return Ok(keep(&judged, renew_at)),
                    Decision::Sign(reason) if judged.signed_with_this_key() => {
                        verified = Some((judged, reason));
                        break;
                    }
                    Decision::Sign(_) => {}
                }
            }
            match signer
                .signing_key(&ctx.delegation_keys, now, plan.validity, &ctx.clock)
                .await
            {
                Ok(resolved) => {
                    let judged =
                        Judged::of(grant, plan, &resolved, existing.as_ref(), now, &renewal);
                    let reason = match (&verified, judged.decision) {
                        (Some((_, reason)), _) => *reason,
                        (None, Decision::Sign(reason)) => reason,
                        (None, Decision::Keep { renew_at }) => {
                            return Ok(keep(&judged, renew_at));
                        }
                    };
                    (resolved, judged, reason)
                }
                // `IssuerBackingOff`: Ready=False until a key comes; the Secret keeps the
                // token it holds.
                Err(err) => return Err(err),
            }
        }
    };
    let Judged {
        inputs_hash,
        mac_key,
        issued,
        spec,
        ..
    } = judged;
    let signing_key = resolved.key.clone();

    // Times are read when signing, not when the reconcile started: the reads above may have
    // taken a while, and the token must have its whole validity when it is written (the write
    // below is bounded by the request timeout and the reconcile deadline).
    let signed_at = ctx.now();
    let params = plan.sas_params(&spec, signed_at, ctx.backdate)?;
    let signed = sas::sign(&params, &signing_key)?;
    let expires_at = params.expiry.expect("the plan always sets an expiry");
    let services = plan
        .services()
        .into_iter()
        .map(|service| (service, grant::endpoint(&spec, service)))
        .collect();
    let token = SignedToken {
        token: signed.token,
        expires_at,
        rotated_at: signed_at,
        inputs_hash,
        mac_key,
    };
    let owner = grant
        .controller_owner_ref(&())
        .expect("a stored SasGrant has a name and uid");
    let mut desired = secret::desired_secret(
        &plan.target_secret,
        &namespace,
        owner,
        &name,
        &token,
        &secret::token_endpoints(&plan.resource, services),
    );
    match &existing {
        Some(found) => {
            // Written on the version we read: if the Secret was replaced since (a foreign one
            // recreated under the name), the write conflicts instead of taking it over.
            desired.metadata.resource_version = found.metadata.resource_version.clone();
            ctx.cluster.apply_secret(&desired).await?;
        }
        // Create, not apply: a foreign Secret that appeared since our read makes it fail.
        None => ctx.cluster.create_secret(&desired).await?,
    }

    if let (SignReason::RenewalDue, Some(expired)) = (reason, issued.and_then(|i| i.expires_at)) {
        // Against the clock, not `signed_at` (whole seconds): the histogram resolves 10 ms.
        let lateness = (ctx.clock)().duration_since(renewal.renew_at(expired));
        ctx.metrics
            .observe_rotation_lateness(lateness.as_secs_f64().max(0.0));
    }
    ctx.metrics.record_rotation(&namespace, &name, "success");
    let renews_at = renewal.renew_at(expires_at);
    tracing::info!(
        namespace = %namespace,
        name = %name,
        secret = %plan.target_secret,
        reason = reason.as_str(),
        expires_at = %expires_at,
        renews_at = %renews_at,
        "signed a new token"
    );
    let note = format!(
        "signed a new token into Secret {:?} ({}); expires {expires_at}",
        plan.target_secret,
        reason.as_str()
    );
    let reason = if existing.is_some() {
        "Rotated"
    } else {
        "Signed"
    };
    publish(ctx, grant, Severity::Normal, reason, note).await?;
    Ok(TokenFacts {
        expires_at,
        renews_at,
        rotated_at: Some(signed_at),
        token_hash: Some(secret::token_hash(&token.token)),
    })
}

/// What the target Secret says under one candidate key: the inputs hash and MAC key a token
/// signed with it carries, and whether to sign.
struct Judged {
    /// The spec as signed: with an issuer, its `storageAccount` is the issuer's, so a change to
    /// the issuer's account or endpoints changes the inputs hash and re-signs.
    spec: SasGrantSpec,
    inputs_hash: String,
    mac_key: secret::SecretMacKey,
    issued: Option<policy::IssuedToken>,
    decision: Decision,
}

impl Judged {
    fn of(
        grant: &SasGrant,
        plan: &GrantPlan,
        resolved: &crate::issuer::Resolved,
        existing: Option<&k8s_openapi::api::core::v1::Secret>,
        now: Timestamp,
        renewal: &Renewal,
    ) -> Judged {
        let spec = match &plan.credential {
            grant::CredentialSource::Inline { .. } => grant.spec.clone(),
            grant::CredentialSource::Issuer(_) => SasGrantSpec {
                storage_account: Some(resolved.account.clone()),
                ..grant.spec.clone()
            },
        };
        let key = resolved.secret_key();
        let inputs_hash = secret::inputs_hash(&spec, &plan.target_secret, key);
        let mac_key = secret::SecretMacKey::derive(key);
        let issued = existing.map(|found| secret::issued_token(found, &mac_key));
        let decision = policy::decide(issued.as_ref(), &inputs_hash, now, |expiry| {
            renewal.renew_at(expiry)
        });
        Judged {
            spec,
            inputs_hash,
            mac_key,
            issued,
            decision,
        }
    }

    /// Whether the Secret's token was signed with this key (its MAC verifies under it).
    fn signed_with_this_key(&self) -> bool {
        self.issued.as_ref().is_some_and(|issued| issued.intact)
    }
}

/// Writes status when it differs from what the grant shows, and raises a Warning Event when
/// the grant turns not-ready (or fails for a new reason). A no-op reconcile writes nothing.
async fn write_status<C: Cluster>(
    grant: &SasGrant,
    ctx: &Context<C>,
    plan: Option<&GrantPlan>,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), Error> {
    let current = grant.status.as_ref();
    let desired = status::desired_status(
        current,
        grant.metadata.generation,
        plan.map(|p| p.resource_kind),
        plan.map(|p| p.target_secret.as_str()),
        outcome,
        now,
    );
    if current == Some(&desired) {
        return Ok(());
    }
    if let Outcome::Failed { reason, message } = outcome {
        let before = status::ready_condition(current);
        if before.is_none_or(|c| c.reason != *reason || c.message != *message) {
            publish(ctx, grant, Severity::Warning, reason, message.clone()).await?;
            let (namespace, name) = (grant.namespace().unwrap_or_default(), grant.name_any());
            ctx.metrics.record_rotation(&namespace, &name, reason);
        }
    }
    ctx.cluster.apply_status(grant, &desired).await
}

/// Publishes an Event. Failing to is logged, not fatal, except when this replica lost its
/// lease: then the reconcile must stop writing at once.
async fn publish<C: Cluster>(
    ctx: &Context<C>,
    grant: &SasGrant,
    severity: Severity,
    reason: &str,
    note: String,
) -> Result<(), Error> {
    let event = GrantEvent {
        severity,
        reason: reason.into(),
        // Messages carry spec values: bounded, so a hostile spec cannot bloat Events.
        note: crate::error::truncate_message(&note).into_owned(),
    };
    match ctx.cluster.publish(grant, event).await {
        Err(Error::LeadershipLost) => Err(Error::LeadershipLost),
        Err(err) => {
            tracing::warn!(reason = err.category(), error = %err, "could not publish an Event");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
