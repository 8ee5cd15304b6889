//! Reconcile one `SasGrant`: read -> decide (pure) -> apply -> requeue.
//!
//! API calls live only in this file and `credentials`; every decision is a pure function in the
//! submodules, unit-tested without a server.

pub mod grant;
pub mod policy;
pub mod schedule;
pub mod secret;
pub mod status;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
    },
};
use serde_json::json;

use self::grant::GrantPlan;
use self::policy::{Decision, SignReason};
use self::secret::SignedToken;
use self::status::{Outcome, TokenFacts};
use crate::crd::SasGrant;
use crate::error::Error;
use crate::sas::{self, SigningKey};

/// The field manager of every write; also the `managed-by` label value.
pub const FIELD_MANAGER: &str = secret::MANAGER_NAME;

/// Where "now" comes from; tests may substitute their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub clock: Clock,
    /// How far start times are backdated for clock skew.
    pub backdate: Duration,
    pub metrics: crate::metrics::Metrics,
    /// Consecutive failures per grant uid, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        backdate: Duration,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Context {
            client,
            recorder,
            clock: Arc::new(Timestamp::now),
            backdate,
            metrics,
            failures: Mutex::default(),
        }
    }

    /// Now, in whole seconds: SAS times have second precision, and `expiresAt` must equal the
    /// token's `se` exactly.
    fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }

    fn record_failure(&self, uid: &str) -> u32 {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(uid.to_string()).or_default();
        *count += 1;
        *count
    }

    fn clear_failures(&self, uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid);
    }
}

/// The controller's reconcile function.
pub async fn reconcile(grant: Arc<SasGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    if grant.metadata.deletion_timestamp.is_some() {
        // The Secret goes with the grant through its ownerReference.
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let now = ctx.now();
    let (namespace, name) = (grant.namespace().unwrap_or_default(), grant.name_any());
    let (plan, result) = match GrantPlan::from_spec(&name, &grant.spec) {
        Ok(plan) => {
            let result = sync(&grant, &plan, &ctx, now).await;
            (Some(plan), result)
        }
        Err(err) => (None, Err(err)),
    };
    let outcome = match &result {
        Ok(facts) => Outcome::Ready(facts.clone()),
        Err(err) => Outcome::Failed {
            reason: err.category(),
            message: err.to_string(),
        },
    };
    let status_written = write_status(&grant, &ctx, plan.as_ref(), &outcome, now).await;
    ctx.metrics
        .observe_reconcile(started.elapsed().as_secs_f64());
    match (result, status_written) {
        (Ok(facts), Ok(())) => {
            ctx.clear_failures(&grant.uid().unwrap_or_default());
            ctx.metrics.set_ready(&namespace, &name, true);
            ctx.metrics
                .set_grant_schedule(&namespace, &name, facts.expires_at, facts.renews_at);
            Ok(Action::requeue(schedule::until(ctx.now(), facts.renews_at)))
        }
        (Err(err), _) | (Ok(_), Err(err)) => {
            ctx.metrics.set_ready(&namespace, &name, false);
            Err(err)
        }
    }
}

/// Retries a failed reconcile with per-grant exponential backoff.
pub fn error_policy(grant: Arc<SasGrant>, err: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&grant.uid().unwrap_or_default());
    let wait = schedule::backoff(failures);
    tracing::warn!(
        namespace = grant.namespace().as_deref().unwrap_or_default(),
        name = %grant.name_any(),
        reason = err.category(),
        error = %err,
        retry_in_seconds = wait.as_secs(),
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// Makes the target Secret hold a valid token for the grant; returns the token's facts.
async fn sync(
    grant: &SasGrant,
    plan: &GrantPlan,
    ctx: &Context,
    now: Timestamp,
) -> Result<TokenFacts, Error> {
    let namespace = grant
        .namespace()
        .ok_or_else(|| Error::InvalidGrant("SasGrant has no namespace".into()))?;
    let name = grant.name_any();
    let uid = grant.uid().unwrap_or_default();
    let key =
        crate::credentials::account_key(&ctx.client, &namespace, &plan.key_secret, &plan.key_name)
            .await?;

    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let existing = secrets.get_opt(&plan.target_secret).await?;
    if let Some(found) = &existing
        && !secret::is_owned_by(found, &uid)
    {
        return Err(Error::SecretNotOwned {
            name: plan.target_secret.clone(),
        });
    }

    let inputs_hash = secret::inputs_hash(&grant.spec, &plan.target_secret, &key);
    let jitter = schedule::jitter(&uid, plan.renew_before);
    let renew_at = |expires_at| schedule::renew_at(expires_at, plan.renew_before, jitter);
    let mac_key = secret::SecretMacKey::derive(&key);
    let issued = existing
        .as_ref()
        .map(|found| secret::issued_token(found, &mac_key));
    let reason = match policy::decide(issued.as_ref(), &inputs_hash, now, renew_at) {
        Decision::Keep { renew_at } => {
            let found = existing
                .as_ref()
                .expect("Keep is only decided for an existing Secret");
            return Ok(TokenFacts {
                expires_at: issued
                    .and_then(|i| i.expires_at)
                    .expect("Keep implies a known expiry"),
                renews_at: renew_at,
                rotated_at: secret::rotated_at(found),
                token_hash: secret::stored_token(found).map(secret::token_hash),
            });
        }
        Decision::Sign(reason) => reason,
    };

    let params = plan.sas_params(&grant.spec, now, ctx.backdate)?;
    let signed = sas::sign(&params, &SigningKey::Account(key))?;
    let expires_at = params.expiry.expect("the plan always sets an expiry");
    let services = plan
        .services()
        .into_iter()
        .map(|service| (service, grant::endpoint(&grant.spec, service)))
        .collect();
    let endpoints = secret::token_endpoints(&plan.resource, services);
    let token = SignedToken {
        token: signed.token,
        expires_at,
        rotated_at: now,
        inputs_hash,
        mac_key,
    };
    let owner = grant
        .controller_owner_ref(&())
        .expect("a stored SasGrant has a name and uid");
    let desired = secret::desired_secret(
        &plan.target_secret,
        &namespace,
        owner,
        &name,
        &token,
        &endpoints,
    );
    if existing.is_some() {
        secrets
            .patch(
                &plan.target_secret,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
    } else {
        // Create, not apply: if a foreign Secret of that name appeared since our read, this
        // fails with AlreadyExists instead of taking it over.
        secrets
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &desired,
            )
            .await?;
    }

    if let (SignReason::RenewalDue, Some(expired)) = (reason, issued.and_then(|i| i.expires_at)) {
        let lateness = now.duration_since(renew_at(expired));
        ctx.metrics
            .observe_rotation_lateness(lateness.as_secs_f64().max(0.0));
    }
    ctx.metrics.record_rotation(&namespace, &name, "success");
    let renews_at = renew_at(expires_at);
    tracing::info!(
        namespace = %namespace,
        name = %name,
        secret = %plan.target_secret,
        reason = reason.as_str(),
        expires_at = %expires_at,
        renews_at = %renews_at,
        "signed a new token"
    );
    publish(
        ctx,
        grant,
        EventType::Normal,
        if existing.is_some() {
            "Rotated"
        } else {
            "Signed"
        },
        format!(
            "signed a new token into Secret {:?} ({}); expires {expires_at}",
            plan.target_secret,
            reason.as_str()
        ),
    )
    .await;
    Ok(TokenFacts {
        expires_at,
        renews_at,
        rotated_at: Some(now),
        token_hash: Some(secret::token_hash(&token.token)),
    })
}

/// Writes status when it differs from what the grant shows, and raises a Warning Event when
/// the grant turns not-ready (or fails for a new reason). A no-op reconcile writes nothing.
async fn write_status(
    grant: &SasGrant,
    ctx: &Context,
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
            publish(ctx, grant, EventType::Warning, reason, message.clone()).await;
            let (namespace, name) = (grant.namespace().unwrap_or_default(), grant.name_any());
            ctx.metrics.record_rotation(&namespace, &name, reason);
        }
    }
    let api =
        Api::<SasGrant>::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": SasGrant::api_version(&()),
        "kind": SasGrant::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &grant.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, grant: &SasGrant, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &grant.object_ref(&())).await {
        tracing::warn!(error = %err, "could not publish an Event");
    }
}
