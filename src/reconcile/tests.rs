//! The reconcile through the in-process fake of the cluster: what it reads, what it writes and
//! in which order, without a server.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;

use super::*;
use crate::cluster::fake::{FakeCluster, Write};
use crate::metrics::Metrics;

const NS: &str = "apps";
/// base64 of 64 bytes, the length of an account key.
const KEY: &str =
    "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LQ==";

fn now() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn grant(spec: serde_json::Value) -> SasGrant {
    let mut base = serde_json::json!({
        "storageAccount": {"name": "acct", "keySecretRef": {"name": "keys"}},
        "resource": {"container": {"name": "data"}},
        "permissions": "r",
        "validity": "8h",
        "renewBefore": "2h",
    });
    if let serde_json::Value::Object(extra) = spec {
        for (key, value) in extra {
            base[key] = value;
        }
    }
    let mut grant = SasGrant::new("app", serde_json::from_value(base).unwrap());
    grant.metadata.namespace = Some(NS.into());
    grant.metadata.uid = Some("uid-1".into());
    grant.metadata.generation = Some(1);
    grant
}

/// A key Secret as issue 8 wants them: opted in by label, holding a 64-byte key.
fn key_secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("keys".into()),
            namespace: Some(NS.into()),
            labels: Some(
                [(
                    "sas-operator.io/signing-key".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([("key1".to_string(), ByteString(KEY.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// A fake cluster holding the key Secret, and a context whose clock reads `now()`.
fn context() -> Arc<Context<FakeCluster>> {
    let cluster = FakeCluster::default();
    cluster.put_secret(key_secret());
    let mut ctx = Context::new(
        cluster,
        Duration::from_secs(900),
        Metrics::new(),
        Duration::from_secs(5),
    );
    ctx.clock = Arc::new(now);
    Arc::new(ctx)
}

async fn run(grant: &SasGrant, ctx: &Arc<Context<FakeCluster>>) -> Result<Action, Error> {
    reconcile(Arc::new(grant.clone()), ctx.clone()).await
}

/// The grant as the API server would show it after the reconcile's status write.
fn with_written_status(mut grant: SasGrant, writes: &[Write]) -> SasGrant {
    grant.status = writes.iter().rev().find_map(|write| match write {
        Write::Status(status) => Some(status.clone()),
        _ => None,
    });
    grant
}

fn kinds(writes: &[Write]) -> Vec<&'static str> {
    writes
        .iter()
        .map(|write| match write {
            Write::CreateSecret(_) => "create Secret",
            Write::ApplySecret(_) => "apply Secret",
            Write::Status(_) => "status",
            Write::Event(_) => "Event",
            Write::IssuerStatus(..) => "issuer status",
        })
        .collect()
}

#[tokio::test]
async fn a_new_grant_creates_its_secret_publishes_one_event_and_writes_status_once() {
    let ctx = context();
    let action = run(&grant(serde_json::json!({})), &ctx).await.unwrap();
    let writes = ctx.cluster.writes();
    assert_eq!(kinds(&writes), ["create Secret", "Event", "status"]);
    // Due 2h (plus jitter) before the 8h expiry.
    let requeue = format!("{action:?}");
    assert!(requeue.contains("requeue_after: Some("), "{requeue}");
    let secret = ctx
        .cluster
        .secret(NS, "app")
        .expect("the Secret was created");
    assert!(secret::is_owned_by(&secret, "uid-1"));
    let status = with_written_status(grant(serde_json::json!({})), &writes).status;
    let ready = status::ready_condition(status.as_ref()).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "TokenValid")
    );
}

#[tokio::test]
async fn an_up_to_date_grant_writes_nothing() {
    let ctx = context();
    let first = grant(serde_json::json!({}));
    run(&first, &ctx).await.unwrap();
    let shown = with_written_status(first, &ctx.cluster.writes());
    let before = ctx.cluster.writes().len();
    run(&shown, &ctx).await.unwrap();
    assert_eq!(
        ctx.cluster.writes().len(),
        before,
        "a no-op reconcile wrote"
    );
}

#[tokio::test]
async fn a_deposed_leader_writes_nothing_at_all() {
    let ctx = context();
    ctx.cluster.depose();
    let err = run(&grant(serde_json::json!({})), &ctx).await.unwrap_err();
    assert!(matches!(err, Error::LeadershipLost), "{err}");
    assert!(
        ctx.cluster.writes().is_empty(),
        "{:?}",
        kinds(&ctx.cluster.writes())
    );
    // Not retried: the replica stops.
    let action = error_policy(Arc::new(grant(serde_json::json!({}))), &err, ctx.clone());
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_rotation_applies_on_the_version_it_read() {
    let ctx = context();
    run(&grant(serde_json::json!({})), &ctx).await.unwrap();
    let read_version = ctx
        .cluster
        .secret(NS, "app")
        .unwrap()
        .metadata
        .resource_version;
    // A spec change makes the token stale.
    run(&grant(serde_json::json!({"permissions": "rl"})), &ctx)
        .await
        .unwrap();
    let applied = ctx
        .cluster
        .writes()
        .into_iter()
        .find_map(|write| match write {
            Write::ApplySecret(secret) => Some(secret),
            _ => None,
        })
        .expect("the Secret was re-applied");
    assert!(read_version.is_some());
    assert_eq!(applied.metadata.resource_version, read_version);
}

#[tokio::test]
async fn a_foreign_secret_recreated_between_read_and_write_is_not_taken_over() {
    let ctx = context();
    run(&grant(serde_json::json!({})), &ctx).await.unwrap();
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("app".into()),
            namespace: Some(NS.into()),
            resource_version: Some("foreign-1".into()),
            ..Default::default()
        },
        data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
        ..Default::default()
    };
    let replacement = foreign.clone();
    ctx.cluster.after_next_target_read(move |secrets| {
        secrets.insert((NS.into(), "app".into()), replacement);
    });
    let before = ctx.cluster.writes().len();
    let action = run(&grant(serde_json::json!({"permissions": "rl"})), &ctx)
        .await
        .expect("a conflict is no failure: the grant is read again soon");
    assert_eq!(action, Action::requeue(CONFLICT_RETRY));
    assert_eq!(ctx.cluster.secret(NS, "app"), Some(foreign));
    assert_eq!(
        kinds(&ctx.cluster.writes()[before..]),
        Vec::<&str>::new(),
        "neither the foreign Secret nor a Warning or status was written"
    );
}

#[tokio::test]
async fn a_missing_key_secret_is_reported_in_status_with_a_warning() {
    let ctx = context();
    let mut spec = grant(serde_json::json!({}));
    spec.spec
        .storage_account
        .as_mut()
        .unwrap()
        .key_secret_ref
        .name = "absent".into();
    let err = run(&spec, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "KeySecretNotFound");
    let writes = ctx.cluster.writes();
    assert_eq!(kinds(&writes), ["Event", "status"]);
    assert!(matches!(&writes[0], Write::Event(event)
        if event.severity == Severity::Warning && event.reason == "KeySecretNotFound"));
}

#[tokio::test]
async fn an_unlabelled_key_secret_is_never_signed_with() {
    let ctx = context();
    let mut unlabelled = key_secret();
    unlabelled.metadata.labels = None;
    ctx.cluster.put_secret(unlabelled);
    let err = run(&grant(serde_json::json!({})), &ctx).await.unwrap_err();
    assert_eq!(err.category(), "KeySecretNotLabelled");
    assert_eq!(kinds(&ctx.cluster.writes()), ["Event", "status"]);
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

#[tokio::test]
async fn a_reconcile_that_hangs_ends_at_its_deadline_without_writing() {
    let mut ctx = Context::new(
        FakeCluster::default(),
        Duration::ZERO,
        Metrics::new(),
        Duration::from_millis(50),
    );
    ctx.clock = Arc::new(now);
    let ctx = Arc::new(ctx);
    ctx.cluster.hang();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        run(&grant(serde_json::json!({})), &ctx),
    )
    .await
    .expect("the reconcile's own deadline ends it")
    .unwrap_err();
    assert_eq!(err.category(), "ReconcileTimeout");
    assert!(err.is_transient());
    assert!(ctx.cluster.writes().is_empty());
}

fn api_error(code: u16) -> Error {
    Error::Kube(kube::Error::Api(
        kube::core::Status::failure("m", "r")
            .with_code(code)
            .boxed(),
    ))
}

#[tokio::test]
async fn permanent_api_errors_back_off_slower_than_transient_ones() {
    let ctx = context();
    let g = Arc::new(grant(serde_json::json!({})));
    let transient = error_policy(g.clone(), &api_error(503), ctx.clone());
    assert_eq!(transient, Action::requeue(Duration::from_secs(5)));
    let ctx = context();
    let forbidden = error_policy(g, &api_error(403), ctx);
    assert_eq!(forbidden, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn failure_counts_of_deleted_grants_are_pruned() {
    let ctx = context();
    let g = Arc::new(grant(serde_json::json!({})));
    error_policy(g.clone(), &api_error(503), ctx.clone());
    assert_eq!(ctx.failing_grants(), 1);
    ctx.prune_failures(&HashSet::from(["uid-1".to_string()]));
    assert_eq!(ctx.failing_grants(), 1, "a live grant keeps its count");
    ctx.prune_failures(&HashSet::new());
    assert_eq!(ctx.failing_grants(), 0);
}

#[tokio::test]
async fn a_spec_that_renews_almost_at_once_is_still_requeued_after_the_minimum_token_age() {
    let ctx = context();
    let action = run(
        &grant(serde_json::json!({"validity": "1h", "renewBefore": "59m59s"})),
        &ctx,
    )
    .await;
    // Whether or not admission allows this spec, the controller never loops on it.
    if let Ok(action) = action {
        assert_eq!(action, Action::requeue(Duration::from_secs(360)));
    }
}

/// A context whose clock reads `now()` plus the seconds in the returned cell, with a reconcile
/// deadline of 5 s.
fn context_with_moving_clock() -> (Arc<Context<FakeCluster>>, Arc<std::sync::atomic::AtomicI64>) {
    context_with_deadline(Duration::from_secs(5))
}

fn context_with_deadline(
    deadline: Duration,
) -> (Arc<Context<FakeCluster>>, Arc<std::sync::atomic::AtomicI64>) {
    let cluster = FakeCluster::default();
    cluster.put_secret(key_secret());
    let mut ctx = Context::new(cluster, Duration::ZERO, Metrics::new(), deadline);
    let offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let read = offset.clone();
    ctx.clock = Arc::new(move || {
        now() + jiff::SignedDuration::from_secs(read.load(std::sync::atomic::Ordering::SeqCst))
    });
    (Arc::new(ctx), offset)
}

fn short_lived() -> SasGrant {
    grant(serde_json::json!({"validity": "2m", "renewBefore": "1m"}))
}

#[tokio::test]
async fn a_retry_never_waits_past_the_current_tokens_expiry_minus_the_margin() {
    let (ctx, clock) = context_with_moving_clock();
    let g = Arc::new(short_lived());
    run(&g, &ctx).await.unwrap();
    // The token expires at +120 s; retries must come by +110 s (deadline 5 s + margin 5 s).
    clock.store(100, std::sync::atomic::Ordering::SeqCst);
    let unreachable = Error::ReconcileTimeout {
        after: Duration::from_secs(5),
    };
    let waits: Vec<Action> = (0..3)
        .map(|_| error_policy(g.clone(), &unreachable, ctx.clone()))
        .collect();
    assert_eq!(
        waits,
        [5, 10, 10].map(|s| Action::requeue(Duration::from_secs(s))),
        "the third failure earned 20 s, but the token must be renewed by +110 s"
    );
}

#[tokio::test]
async fn a_grant_that_failed_for_want_of_the_api_server_is_overdue_when_it_is_back() {
    let (ctx, _clock) = context_with_deadline(Duration::from_millis(50));
    let g = short_lived();
    run(&g, &ctx).await.unwrap();
    assert!(
        ctx.overdue(ctx.now(), Some(NS)).is_empty(),
        "a fresh token is not overdue"
    );
    ctx.cluster.hang();
    let err = run(&g, &ctx).await.unwrap_err();
    assert!(!err.api_reachable());
    assert_eq!(
        ctx.overdue(ctx.now(), Some(NS)),
        [ObjectRef::new("app").within(NS)]
    );
    assert!(ctx.overdue(ctx.now(), Some("elsewhere")).is_empty());
}

#[tokio::test]
async fn a_grant_whose_renewal_passed_is_overdue_and_the_backoff_restarts() {
    let (ctx, clock) = context_with_moving_clock();
    let g = Arc::new(short_lived());
    run(&g, &ctx).await.unwrap();
    // Due 60 s (plus up to 3 s of jitter) before the expiry at +120 s.
    clock.store(61, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ctx.overdue(ctx.now(), None).len(), 1);
    let error = api_error(503);
    error_policy(g.clone(), &error, ctx.clone());
    error_policy(g.clone(), &error, ctx.clone());
    ctx.reset_backoff();
    assert_eq!(
        error_policy(g, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_token_is_signed_with_the_time_of_signing_not_of_the_reconcile_start() {
    let (ctx, clock) = context_with_moving_clock();
    // The reads take 30 s (a slow API server).
    let slow = clock.clone();
    ctx.cluster.after_next_target_read(move |_| {
        slow.store(30, std::sync::atomic::Ordering::SeqCst);
    });
    run(&short_lived(), &ctx).await.unwrap();
    let secret = ctx.cluster.secret(NS, "app").unwrap();
    let expires_at = &secret.data.as_ref().unwrap()[secret::KEY_EXPIRES_AT].0;
    assert_eq!(
        std::str::from_utf8(expires_at).unwrap(),
        "2030-01-01T00:02:30Z",
        "120 s of validity from the signing at +30 s"
    );
}

#[tokio::test]
async fn a_server_error_counts_as_the_api_server_not_serving_so_no_status_is_written() {
    assert!(!api_error(503).api_reachable());
    assert!(!api_error(500).api_reachable());
    assert!(api_error(409).api_reachable());
    assert!(api_error(403).api_reachable());
}

// ----- issuers -----

const PLATFORM: &str = "sas-operator";

/// A context whose cluster holds a `ClusterSasIssuer` `platform` with its key Secret in the
/// cluster resource namespace, allowing namespaces labelled `storage-access=granted`; the
/// grant's namespace carries `labels`.
fn cluster_issuer_context(labels: &[(&str, &str)]) -> Arc<Context<FakeCluster>> {
    let cluster = FakeCluster::default();
    let mut platform_key = key_secret();
    platform_key.metadata.namespace = Some(PLATFORM.into());
    platform_key.metadata.name = Some("platform-keys".into());
    cluster.put_secret(platform_key);
    let issuer: crate::crd::ClusterSasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "ClusterSasIssuer",
        "metadata": {"name": "platform"},
        "spec": {
            "storageAccount": {"name": "platformacct"},
            "accountKey": {"secretRef": {"name": "platform-keys", "key": "key1"}},
            "allowedNamespaces": {"matchLabels": {"storage-access": "granted"}},
            "policy": {
                "resources": {"container": {"names": ["{namespace}-*", "data"]}},
                "maxPermissions": {"container": "rl"},
                "maxValidity": "24h",
            },
        }
    }))
    .unwrap();
    cluster.put_cluster_sas_issuer(issuer);
    cluster.put_namespace(NS, labels);
    let mut ctx = Context::new(
        cluster,
        Duration::from_secs(900),
        Metrics::new(),
        Duration::from_secs(5),
    )
    .with_cluster_resource_namespace(Some(PLATFORM.into()));
    ctx.clock = Arc::new(now);
    Arc::new(ctx)
}

fn issued_grant(kind: &str, name: &str) -> SasGrant {
    let mut grant = grant(serde_json::json!({"issuerRef": {"kind": kind, "name": name}}));
    grant.spec.storage_account = None;
    grant
}

fn ready_reason(grant: SasGrant, writes: &[Write]) -> (String, String) {
    let status = with_written_status(grant, writes).status;
    let ready = status::ready_condition(status.as_ref()).expect("a Ready condition");
    (ready.status.clone(), ready.reason.clone())
}

#[tokio::test]
async fn a_cluster_issuer_signs_for_an_allowed_namespace_with_the_key_of_its_own_namespace() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    let grant = issued_grant("ClusterSasIssuer", "platform");
    run(&grant, &ctx).await.unwrap();
    let writes = ctx.cluster.writes();
    assert_eq!(
        kinds(&writes),
        ["issuer status", "create Secret", "Event", "status"]
    );
    assert_eq!(
        ctx.cluster.secret_reads()[0],
        (PLATFORM.to_string(), "platform-keys".to_string())
    );
    let secret = ctx.cluster.secret(NS, "app").unwrap();
    let connection =
        String::from_utf8(secret.data.as_ref().unwrap()["connectionString"].0.clone()).unwrap();
    assert!(
        connection.contains("https://platformacct.blob.core.windows.net"),
        "signed for the issuer's account: {connection}"
    );
    assert_eq!(
        ready_reason(grant, &writes),
        ("True".into(), "TokenValid".into())
    );
}

#[tokio::test]
async fn a_cluster_issuer_refuses_a_namespace_it_does_not_allow_without_reading_its_key() {
    let ctx = cluster_issuer_context(&[("storage-access", "denied")]);
    let grant = issued_grant("ClusterSasIssuer", "platform");
    run(&grant, &ctx).await.unwrap_err();
    let writes = ctx.cluster.writes();
    assert_eq!(kinds(&writes), ["Event", "status"]);
    assert_eq!(
        ready_reason(grant, &writes),
        ("False".into(), "IssuerNotAllowed".into())
    );
    assert!(
        ctx.cluster.secret_reads().is_empty(),
        "read {:?}",
        ctx.cluster.secret_reads()
    );
}

#[tokio::test]
async fn a_cluster_issuer_without_allowed_namespaces_serves_no_namespace() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    let mut issuer = ctx
        .cluster
        .cluster_sas_issuer("platform")
        .await
        .unwrap()
        .unwrap();
    issuer.spec.allowed_namespaces = None;
    ctx.cluster.put_cluster_sas_issuer(issuer);
    let grant = issued_grant("ClusterSasIssuer", "platform");
    run(&grant, &ctx).await.unwrap_err();
    assert_eq!(
        ready_reason(grant, &ctx.cluster.writes()),
        ("False".into(), "IssuerNotAllowed".into())
    );
    assert!(ctx.cluster.secret_reads().is_empty());
}

#[tokio::test]
async fn a_sas_issuer_is_looked_up_only_in_the_grants_namespace() {
    let ctx = context();
    let elsewhere: crate::crd::SasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": "other-team"},
        "spec": {
            "storageAccount": {"name": "acct"},
            "accountKey": {"secretRef": {"name": "keys"}},
        }
    }))
    .unwrap();
    ctx.cluster.put_sas_issuer(elsewhere.clone());
    let grant = issued_grant("SasIssuer", "team");
    run(&grant, &ctx).await.unwrap_err();
    assert_eq!(
        ready_reason(grant.clone(), &ctx.cluster.writes()),
        ("False".into(), "IssuerNotFound".into())
    );

    let mut here = elsewhere;
    here.metadata.namespace = Some(NS.into());
    ctx.cluster.put_sas_issuer(here);
    run(&grant, &ctx).await.unwrap();
    assert_eq!(
        ready_reason(grant, &ctx.cluster.writes()),
        ("True".into(), "TokenValid".into())
    );
}

#[tokio::test]
async fn a_workload_identity_issuer_refuses_what_a_user_delegation_sas_cannot_do_before_any_request()
 {
    let ctx = context();
    let issuer: crate::crd::SasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "keyless", "namespace": NS},
        "spec": {
            "storageAccount": {"name": "acct"},
            "workloadIdentity": {
                "clientId": "00000000-0000-0000-0000-000000000001",
                "tenantId": "00000000-0000-0000-0000-000000000002",
                "serviceAccountName": "signer",
            },
        }
    }))
    .unwrap();
    ctx.cluster.put_sas_issuer(issuer);
    for resource in [
        serde_json::json!({"queue": {"name": "q"}}),
        serde_json::json!({"table": {"name": "t"}}),
        serde_json::json!({"account": {"services": "b", "resourceTypes": "sco"}}),
        serde_json::json!({"share": {"name": "s"}}),
    ] {
        let mut grant = grant(serde_json::json!({
            "issuerRef": {"kind": "SasIssuer", "name": "keyless"},
            "resource": resource,
        }));
        grant.spec.storage_account = None;
        let err = run(&grant, &ctx).await.unwrap_err();
        assert_eq!(err.category(), "UserDelegationUnsupported", "{resource}");
        assert!(err.to_string().contains("account key"), "{err}");
    }
    assert!(ctx.cluster.secret_reads().is_empty());
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

// ----- issuer policy -----

/// The `platform` ClusterSasIssuer of [`cluster_issuer_context`], changed by `edit`.
async fn edit_platform(
    ctx: &Context<FakeCluster>,
    edit: impl FnOnce(&mut crate::crd::ClusterSasIssuerSpec),
) {
    let mut issuer = ctx
        .cluster
        .cluster_sas_issuer("platform")
        .await
        .unwrap()
        .unwrap();
    edit(&mut issuer.spec);
    ctx.cluster.put_cluster_sas_issuer(issuer);
}

fn condition_message(grant: SasGrant, writes: &[Write]) -> String {
    let status = with_written_status(grant, writes).status;
    status::ready_condition(status.as_ref())
        .expect("a Ready condition")
        .message
        .clone()
}

#[tokio::test]
async fn a_grant_outside_the_issuer_policy_is_denied_before_its_key_is_read() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    let mut grant = issued_grant("ClusterSasIssuer", "platform");
    grant.spec.resource = serde_json::from_value(
        serde_json::json!({"account": {"services": "bqtf", "resourceTypes": "sco"}}),
    )
    .unwrap();
    grant.spec.permissions = "rwdxylacupfti".into();
    grant.spec.validity = Some("8760h".into());
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "DeniedByIssuerPolicy");
    let writes = ctx.cluster.writes();
    assert_eq!(
        kinds(&writes),
        ["Event", "status"],
        "no Secret, no issuer status"
    );
    assert!(matches!(&writes[0], Write::Event(event)
        if event.severity == Severity::Warning && event.reason == "DeniedByIssuerPolicy"));
    assert_eq!(
        condition_message(grant, &writes),
        "spec.resource.account is not allowed: the issuer's policy lists no resources.account \
         (it signs container) (ClusterSasIssuer \"platform\")"
    );
    assert!(ctx.cluster.secret(NS, "app").is_none());
    assert!(
        ctx.cluster.secret_reads().is_empty(),
        "read {:?}",
        ctx.cluster.secret_reads()
    );
}

#[tokio::test]
async fn permissions_beyond_the_issuer_policy_are_denied_naming_the_field_and_the_limit() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    let mut grant = issued_grant("ClusterSasIssuer", "platform");
    grant.spec.permissions = "rwdl".into();
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.permissions \"rwdl\" exceeds the issuer's maxPermissions.container \"rl\" \
         (not allowed: \"wd\") (ClusterSasIssuer \"platform\")"
    );
    assert!(ctx.cluster.secret_reads().is_empty());
}

#[tokio::test]
async fn a_tightened_policy_denies_a_ready_grant_and_leaves_its_secret_as_it_is() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    let grant = issued_grant("ClusterSasIssuer", "platform");
    run(&grant, &ctx).await.unwrap();
    let ready = with_written_status(grant, &ctx.cluster.writes());
    let before = ctx
        .cluster
        .secret(NS, "app")
        .expect("the Secret was created");
    let writes_before = ctx.cluster.writes().len();

    edit_platform(&ctx, |spec| {
        spec.policy.as_mut().unwrap().max_permissions = Some(crate::crd::MaxPermissions {
            container: Some("l".into()),
            ..Default::default()
        });
    })
    .await;
    let err = run(&ready, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "DeniedByIssuerPolicy");
    let writes = &ctx.cluster.writes()[writes_before..];
    assert_eq!(kinds(writes), ["Event", "status"]);
    assert_eq!(
        ctx.cluster.secret(NS, "app"),
        Some(before),
        "the valid token stays in its Secret"
    );
    let denied = with_written_status(ready.clone(), writes);
    let status = denied.status.as_ref().unwrap();
    assert_eq!(
        status.expires_at,
        ready.status.as_ref().unwrap().expires_at,
        "status still shows the token the Secret holds"
    );

    edit_platform(&ctx, |spec| {
        spec.policy.as_mut().unwrap().max_permissions = Some(crate::crd::MaxPermissions {
            container: Some("rl".into()),
            ..Default::default()
        });
    })
    .await;
    run(&denied, &ctx).await.unwrap();
    assert_eq!(
        ready_reason(denied, &ctx.cluster.writes()),
        ("True".into(), "TokenValid".into())
    );
}

#[tokio::test]
async fn a_cluster_issuer_without_a_policy_signs_nothing_and_says_so_on_the_issuer() {
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    edit_platform(&ctx, |spec| spec.policy = None).await;
    let grant = issued_grant("ClusterSasIssuer", "platform");
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "IssuerPolicyRequired");
    assert!(err.to_string().contains("add spec.policy"), "{err}");
    let writes = ctx.cluster.writes();
    assert_eq!(kinds(&writes), ["issuer status", "Event", "status"]);
    assert!(matches!(&writes[0], Write::IssuerStatus(name, status)
        if name == "ClusterSasIssuer/platform"
            && status.conditions[0].reason == "IssuerPolicyRequired"));
    assert!(ctx.cluster.secret_reads().is_empty());
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

#[tokio::test]
async fn a_sas_issuer_with_a_policy_is_held_to_it_and_one_without_allows_what_its_key_allows() {
    let ctx = context();
    let mut issuer: crate::crd::SasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": NS},
        "spec": {
            "storageAccount": {"name": "acct"},
            "accountKey": {"secretRef": {"name": "keys"}},
        }
    }))
    .unwrap();
    ctx.cluster.put_sas_issuer(issuer.clone());
    let mut grant = issued_grant("SasIssuer", "team");
    grant.spec.resource = serde_json::from_value(
        serde_json::json!({"account": {"services": "bqtf", "resourceTypes": "sco"}}),
    )
    .unwrap();
    run(&grant, &ctx).await.unwrap();

    issuer.spec.policy = Some(
        serde_json::from_value(serde_json::json!({
            "resources": {"container": {"names": ["*"]}},
            "maxPermissions": {"container": "r"},
        }))
        .unwrap(),
    );
    ctx.cluster.put_sas_issuer(issuer);
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "DeniedByIssuerPolicy");
    assert!(err.to_string().ends_with("(SasIssuer \"team\")"), "{err}");
}

#[tokio::test]
async fn a_cluster_issuer_under_the_namespaced_install_is_reported_as_needing_the_cluster_install()
{
    let ctx = cluster_issuer_context(&[("storage-access", "granted")]);
    ctx.cluster.forbid_cluster_issuers();
    let grant = issued_grant("ClusterSasIssuer", "platform");
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "ClusterIssuersNeedClusterInstall");
    assert!(!err.is_transient());
    let writes = ctx.cluster.writes();
    assert_eq!(kinds(&writes), ["Event", "status"]);
    let message = condition_message(grant, &writes);
    assert!(message.contains("namespaced install"), "{message}");
    assert!(message.contains("SasIssuer of this namespace"), "{message}");
}

#[tokio::test]
async fn a_cluster_issuer_allows_a_namespace_listed_by_name_whatever_its_labels() {
    let ctx = cluster_issuer_context(&[("storage-access", "denied")]);
    edit_platform(&ctx, |spec| {
        spec.allowed_namespaces.as_mut().unwrap().names = Some(vec![NS.into()]);
    })
    .await;
    let grant = issued_grant("ClusterSasIssuer", "platform");
    run(&grant, &ctx).await.unwrap();
    assert_eq!(
        ready_reason(grant, &ctx.cluster.writes()),
        ("True".into(), "TokenValid".into())
    );
}

// ----- endpoints and ServiceAccounts -----

/// A workload identity `SasIssuer` `keyless` of the grant's namespace for ServiceAccount
/// `signer`, with `endpoints`; the context can build an Entra client (nothing is sent unless
/// the chain gets that far).
fn identity_context(endpoints: serde_json::Value) -> Arc<Context<FakeCluster>> {
    let cluster = FakeCluster::default();
    let issuer: crate::crd::SasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "keyless", "namespace": NS},
        "spec": {
            "storageAccount": {"name": "acct", "endpoints": endpoints},
            "workloadIdentity": {
                "clientId": "00000000-0000-0000-0000-000000000001",
                "tenantId": "00000000-0000-0000-0000-000000000002",
                "serviceAccountName": "signer",
            },
        }
    }))
    .unwrap();
    cluster.put_sas_issuer(issuer);
    let client = crate::issuer::identity::IdentityClient::new(
        crate::issuer::identity::DEFAULT_AUTHORITY_HOST,
        &[],
    )
    .unwrap();
    let mut ctx = Context::new(
        cluster,
        Duration::from_secs(900),
        Metrics::new(),
        Duration::from_secs(5),
    )
    .with_workload_identity(Some(client), Duration::from_secs(7 * 24 * 3600))
    .with_operator_account(crate::issuer::binding::OperatorAccount {
        namespace: Some("sas-operator".into()),
        name: Some("sas-operator".into()),
    });
    ctx.clock = Arc::new(now);
    Arc::new(ctx)
}

fn keyless_grant() -> SasGrant {
    issued_grant("SasIssuer", "keyless")
}

/// The issuer status the reconcile wrote last: (Ready status, reason, message).
fn issuer_ready(writes: &[Write]) -> (String, String, String) {
    let status = writes
        .iter()
        .rev()
        .find_map(|write| match write {
            Write::IssuerStatus(_, status) => Some(status.clone()),
            _ => None,
        })
        .expect("an issuer status was written");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    (
        ready.status.clone(),
        ready.reason.clone(),
        ready.message.clone(),
    )
}

#[tokio::test]
async fn a_workload_identity_issuer_naming_a_foreign_endpoint_is_refused_before_any_token_request()
{
    for url in [
        "https://127.0.0.1:4443/",
        "https://attacker.example/",
        "https://other.blob.core.windows.net",
        "https://acct.blob.core.windows.net.attacker.example",
    ] {
        let ctx = identity_context(serde_json::json!({"blob": url}));
        let grant = keyless_grant();
        let err = run(&grant, &ctx).await.unwrap_err();
        assert_eq!(err.category(), "EndpointNotAllowed", "{url}");
        assert!(ctx.cluster.token_requests().is_empty(), "{url}");
        let writes = ctx.cluster.writes();
        let (status, reason, message) = issuer_ready(&writes);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "EndpointNotAllowed")
        );
        assert!(
            message.contains("SasIssuer \"keyless\": storageAccount.endpoints.blob")
                && message.contains("--allow-storage-endpoint"),
            "{message}"
        );
        assert_eq!(
            ready_reason(grant, &writes),
            ("False".into(), "EndpointNotAllowed".into())
        );
        assert!(ctx.cluster.secret(NS, "app").is_none());
    }
}

#[tokio::test]
async fn a_bearer_token_never_goes_to_the_public_default_when_only_another_cloud_is_configured() {
    let mut ctx = Arc::into_inner(identity_context(serde_json::json!({}))).unwrap();
    ctx.allowed_endpoints =
        crate::endpoints::AllowedEndpoints::new(vec!["core.chinacloudapi.cn".into()], vec![]);
    let ctx = Arc::new(ctx);
    let err = run(&keyless_grant(), &ctx).await.unwrap_err();
    assert_eq!(err.category(), "EndpointNotAllowed");
    assert!(
        err.to_string()
            .contains("unset: the public cloud's default"),
        "{err}"
    );
    assert!(ctx.cluster.token_requests().is_empty());
}

#[tokio::test]
async fn a_service_account_nobody_lent_to_the_operator_is_not_bound_with_the_commands_to_bind_it() {
    let ctx = identity_context(serde_json::json!({}));
    ctx.cluster.unbind_service_account(NS, "signer");
    let grant = keyless_grant();
    let err = run(&grant, &ctx).await.unwrap_err();
    // The grant backs off with its issuer, naming the cause; the issuer shows the commands.
    assert_eq!(err.category(), "IssuerBackingOff");
    assert!(err.to_string().contains("ServiceAccountNotBound"), "{err}");
    assert_eq!(
        ctx.cluster.token_requests(),
        [(NS.to_string(), "signer".to_string())]
    );
    let writes = ctx.cluster.writes();
    assert_eq!(
        ready_reason(grant, &writes),
        ("False".into(), "IssuerBackingOff".into())
    );
    let (_, reason, message) = issuer_ready(&writes);
    assert_eq!(reason, "ServiceAccountNotBound");
    assert!(
        message.contains(
            "kubectl create rolebinding sas-operator-token-signer --role=sas-operator-token-signer \
             --serviceaccount=sas-operator:sas-operator -n apps"
        ),
        "{message}"
    );
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

#[tokio::test]
async fn a_key_signed_grant_naming_a_foreign_endpoint_reads_no_key_and_writes_no_secret() {
    let ctx = context();
    let grant = grant(serde_json::json!({
        "storageAccount": {
            "name": "acct",
            "keySecretRef": {"name": "keys"},
            "endpoints": {"queue": "https://acct.queue.core.windows.net.attacker.example"},
        },
    }));
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "EndpointNotAllowed");
    assert!(
        err.to_string()
            .starts_with("storageAccount.endpoints.queue "),
        "{err}"
    );
    assert!(ctx.cluster.secret_reads().is_empty());
    assert_eq!(kinds(&ctx.cluster.writes()), ["Event", "status"]);
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

#[tokio::test]
async fn a_key_signed_issuer_naming_a_foreign_endpoint_is_refused_and_its_grants_write_no_secret() {
    let ctx = context();
    let issuer: crate::crd::SasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team", "namespace": NS},
        "spec": {
            "storageAccount": {"name": "acct", "endpoints": {"blob": "https://attacker.example"}},
            "accountKey": {"secretRef": {"name": "keys"}},
        }
    }))
    .unwrap();
    ctx.cluster.put_sas_issuer(issuer);
    let grant = issued_grant("SasIssuer", "team");
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "EndpointNotAllowed");
    assert!(ctx.cluster.secret_reads().is_empty());
    assert_eq!(issuer_ready(&ctx.cluster.writes()).1, "EndpointNotAllowed");
    assert!(ctx.cluster.secret(NS, "app").is_none());
}

#[tokio::test]
async fn an_emulator_endpoint_the_operator_lists_is_signed_into_the_secret() {
    let grant = grant(serde_json::json!({
        "storageAccount": {
            "name": "acct",
            "keySecretRef": {"name": "keys"},
            "endpoints": {"blob": "http://127.0.0.1:10000/acct"},
        },
    }));
    let refused = context();
    assert_eq!(
        run(&grant, &refused).await.unwrap_err().category(),
        "EndpointNotAllowed"
    );
    let mut listed = Arc::into_inner(context()).unwrap();
    listed.allowed_endpoints = crate::endpoints::AllowedEndpoints::new(
        vec![crate::endpoints::PUBLIC_CLOUD_SUFFIX.into()],
        vec!["127.0.0.1:10000".into()],
    );
    let listed = Arc::new(listed);
    run(&grant, &listed).await.unwrap();
    let secret = listed
        .cluster
        .secret(NS, "app")
        .expect("the Secret was written");
    let url = String::from_utf8(secret.data.as_ref().unwrap()["sasUrl"].0.clone()).unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:10000/acct/data?"),
        "{url}"
    );
}

#[test]
fn a_renewal_wakes_at_the_first_whole_second_at_which_it_is_due() {
    let due: Timestamp = "2030-01-01T06:00:00.250Z".parse().unwrap();
    assert_eq!(wake_at(due), "2030-01-01T06:00:01Z".parse().unwrap());
    let whole: Timestamp = "2030-01-01T06:00:00Z".parse().unwrap();
    assert_eq!(wake_at(whole), whole);
}

fn delegation_key(byte: u8, expiry: &str) -> crate::sas::UserDelegationKey {
    crate::sas::UserDelegationKey {
        signed_oid: "oid".into(),
        signed_tid: "tid".into(),
        signed_start: "2029-12-31T23:45:00Z".into(),
        signed_expiry: expiry.into(),
        signed_service: "b".into(),
        signed_version: "2025-05-05".into(),
        signed_delegated_user_tid: None,
        value: crate::sas::AccountKey::from_bytes(vec![byte; 64]),
    }
}

fn secret_writes(writes: &[Write]) -> usize {
    kinds(writes)
        .iter()
        .filter(|kind| kind.contains("Secret"))
        .count()
}

#[tokio::test]
async fn a_newer_user_delegation_key_re_signs_no_token_an_earlier_key_still_covers() {
    let ctx = identity_context(serde_json::json!({}));
    // A first reconcile makes the issuer's cache entry (its fetch fails at TokenRequest).
    ctx.cluster.unbind_service_account(NS, "signer");
    let grant = keyless_grant();
    assert_eq!(
        run(&grant, &ctx).await.unwrap_err().category(),
        "IssuerBackingOff"
    );
    let issuer = format!("SasIssuer/{NS}/keyless");
    ctx.delegation_keys
        .insert_for_tests(&issuer, delegation_key(1, "2030-01-08T00:00:00Z"));
    run(&grant, &ctx).await.unwrap();
    let signed = ctx
        .cluster
        .secret(NS, "app")
        .expect("signed with the cached key");
    let token = secret::stored_token(&signed).unwrap().to_string();
    assert!(token.contains("ske=2030-01-08T00%3A00%3A00Z"), "{token}");

    // A newer key arrives (another grant needed one): this token stays.
    ctx.delegation_keys
        .insert_for_tests(&issuer, delegation_key(2, "2030-01-09T00:00:00Z"));
    let writes_before = secret_writes(&ctx.cluster.writes());
    let grant = with_written_status(grant, &ctx.cluster.writes());
    run(&grant, &ctx).await.unwrap();
    assert_eq!(
        secret_writes(&ctx.cluster.writes()),
        writes_before,
        "re-signed"
    );
    let kept = ctx.cluster.secret(NS, "app").unwrap();
    assert_eq!(secret::stored_token(&kept), Some(token.as_str()));

    // A new token is signed with the newest key.
    let mut second = keyless_grant();
    second.metadata.name = Some("second".into());
    second.metadata.uid = Some("uid-second".into());
    run(&second, &ctx).await.unwrap();
    let newest = ctx
        .cluster
        .secret(NS, "second")
        .expect("the second grant's Secret");
    assert!(
        secret::stored_token(&newest)
            .unwrap()
            .contains("ske=2030-01-09T00%3A00%3A00Z")
    );
}

#[tokio::test]
async fn the_keys_of_a_deleted_issuer_leave_the_cache() {
    let ctx = identity_context(serde_json::json!({}));
    ctx.cluster.unbind_service_account(NS, "signer");
    let grant = keyless_grant();
    run(&grant, &ctx).await.unwrap_err();
    let issuer = format!("SasIssuer/{NS}/keyless");
    ctx.delegation_keys
        .insert_for_tests(&issuer, delegation_key(1, "2030-01-08T00:00:00Z"));
    assert_eq!(ctx.delegation_keys.issuers_cached(), 1);
    ctx.cluster.delete_sas_issuer(NS, "keyless");
    let err = run(&grant, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "IssuerNotFound");
    assert_eq!(ctx.delegation_keys.issuers_cached(), 0);
}
