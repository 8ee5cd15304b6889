//! Controller wiring: watches, the key-Secret mapping, and shutdown.
//!
//! All Secrets are watched as metadata only (the trigger of reconciles, and what invalidates
//! what is cached of unlabelled key Secrets); the operator's own Secrets (`managed-by` label)
//! and the key Secrets (`signing-key` label) are watched in full to feed [`KubeCluster`]'s
//! caches, and the key watch reconciles the grants of a key that changed. Only a change someone
//! else made reconciles a grant: status-only grant events (our own status writes) and the watch
//! events of our own Secret writes map to nothing.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    core::PartialObjectMeta,
    runtime::{
        Controller, PredicateConfig, WatchStreamExt, controller,
        events::Reporter,
        predicates,
        reflector::{self, ObjectRef, Store, reflector},
        watcher,
    },
};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Readiness};
use crate::cluster::cache::{self, SecretCaches};
use crate::cluster::{Cluster, KubeCluster};
use crate::config::RunConfig;
use crate::crd::SasGrant;
use crate::error::Error;
use crate::grant_index::GrantIndex;
use crate::kube_client::{self, ApiClients, ApiHealth, WatchBackoff};
use crate::leader::{LeaderElection, LeaderElectionConfig, LeaderGuard, LeadershipClaim};
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

/// Runs the operator until SIGTERM/SIGINT, or until leadership is lost: that is an error, so
/// Kubernetes restarts the pod as a fresh candidate and two replicas never write at once.
pub async fn run(config: RunConfig) -> Result<(), Error> {
    // Request/response calls time out; watches use a client without a read timeout.
    let clients = ApiClients::infer().await?;
    let client = clients.requests.clone();
    ensure_crd_installed(&client, config.namespaces.first()).await?;
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop.clone()));
    let health = ApiHealth::new(readiness.clone());
    tokio::spawn(kube_client::probe(
        client.clone(),
        health.clone(),
        config.namespaces.first().cloned(),
        stopped(stopping.clone()),
    ));

    // Bind first so that a taken port fails the start rather than a probe later.
    let listener = TcpListener::bind(config.metrics_address)
        .await
        .map_err(|err| {
            Error::Config(format!(
                "cannot listen on {}: {err}",
                config.metrics_address
            ))
        })?;
    let admin = tokio::spawn(admin::serve_on(
        listener,
        metrics.clone(),
        readiness.clone(),
        stopped(stopping.clone()),
    ));

    let election = LeaderElectionConfig::from_args(&config.lease, client.default_namespace())
        .map_err(|err| Error::Config(err.to_string()))?;
    let reconcile_timeout = reconcile_deadline(
        config.reconcile_timeout,
        election.as_ref().map(|e| e.renew_deadline),
    );
    let leadership = match election {
        Some(election) => {
            // A standby is healthy and ready: it serves probes and metrics, and a rollout must
            // not wait for it to lead.
            readiness.set_ready();
            let candidate = LeaderElection::new(client.clone(), election);
            let guard = tokio::select! {
                guard = candidate.acquire() => guard?,
                () = stopped(stopping.clone()) => return finish(admin, &stop).await,
            };
            readiness.set_not_ready();
            Some((stop_when_lost(&guard, &stop), guard))
        }
        None => None,
    };
    let claim = leadership
        .as_ref()
        .map_or_else(LeadershipClaim::unconditional, |(_, guard)| guard.claim());
    // `sas_operator_leader` and the per-grant series follow the claim from here on.
    metrics.follow_leadership(claim.clone());

    let reporter = Reporter {
        controller: "sas-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    // Status and Event writes go out in the background, paused while the API server is out of
    // reach: a slow status write never holds a reconcile worker.
    let cluster = KubeCluster::new(client.clone(), reporter, claim).with_background_writes(
        health.clone(),
        metrics.clone(),
        reconcile_timeout,
    );
    let identity =
        crate::issuer::identity::IdentityClient::new(&config.authority_host, &config.extra_ca_file)
            .map_err(Error::Config)?;
    let ctx = Arc::new(
        Context::new(cluster, config.clock_skew, metrics, reconcile_timeout)
            .with_cluster_resource_namespace(config.cluster_resource_namespace())
            .with_workload_identity(Some(identity), config.max_user_delegation_key_lifetime)
            .with_allowed_endpoints(config.allowed_endpoints())
            .with_operator_account(config.operator_account(client.default_namespace()))
            .with_concurrency(config.concurrency),
    );
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let cluster_issuers = config.namespaces.is_empty() || may_watch_cluster_issuers(&client).await;
    tracing::info!(
        namespaces = ?config.namespaces,
        reconcile_timeout_seconds = reconcile_timeout.as_secs_f64(),
        "starting the controller"
    );
    let all_synced = AllSynced::new(scopes.len(), readiness.clone());
    let (stores, controllers): (Vec<_>, Vec<_>) = scopes
        .into_iter()
        .map(|namespace| {
            scope_controller(
                clients.watches.clone(),
                health.clone(),
                Scope {
                    namespace,
                    cluster_issuers,
                },
                ctx.clone(),
                stopped(stopping.clone()),
                all_synced.clone(),
            )
        })
        .unzip();
    let forget = tokio::spawn(forget_deleted_grants(stores, ctx.clone()));
    let stop_began = drain_within(
        future::join_all(controllers),
        stopped(stopping.clone()),
        config.shutdown_timeout,
    )
    .await;
    forget.abort();
    tracing::info!("controller stopped");

    let lost = leadership
        .as_ref()
        .is_some_and(|(lost, _)| lost.load(Ordering::SeqCst));
    if !lost {
        // Pending status and Event writes, in what is left of the shutdown timeout (the writer
        // stops at once if the claim lapses meanwhile).
        let left = config.shutdown_timeout.saturating_sub(stop_began.elapsed());
        if !ctx.cluster.drain_writes(left).await {
            tracing::warn!(
                reason = "ShutdownTimeout",
                "status or Event writes still pending at the shutdown timeout; dropped them"
            );
        }
    }
    if let Some((lost, guard)) = leadership {
        if lost.load(Ordering::SeqCst) {
            let _ = finish(admin, &stop).await;
            return Err(Error::LeadershipLost);
        }
        guard.release().await;
    }
    finish(admin, &stop).await
}

/// The deadline of one reconcile: as configured, and with leader election at most half the
/// renew deadline, so that a reconcile started just before the lease lapses ends long before
/// another replica may lead.
pub fn reconcile_deadline(configured: Duration, renew_deadline: Option<Duration>) -> Duration {
    match renew_deadline {
        Some(renew_deadline) => configured.min(renew_deadline / 2),
        None => configured,
    }
    .max(Duration::from_millis(100))
}

/// Runs the controllers until they finish; once `stopping` resolves, gives in-flight
/// reconciles at most `grace` before dropping them, so SIGTERM always ends the process.
/// Returns when stopping began (now, if the controllers ended by themselves).
async fn drain_within(
    controllers: impl Future<Output = Vec<()>>,
    stopping: impl Future<Output = ()>,
    grace: Duration,
) -> std::time::Instant {
    let began = std::sync::OnceLock::new();
    let deadline = async {
        stopping.await;
        began.get_or_init(std::time::Instant::now);
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = controllers => {}
        () = deadline => tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "in-flight reconciles did not finish within the shutdown timeout; abandoning them"
        ),
    }
    *began.get_or_init(std::time::Instant::now)
}

/// Stops everything when leadership is lost; the returned flag tells a loss from a shutdown.
fn stop_when_lost(guard: &LeaderGuard, stop: &watch::Sender<bool>) -> Arc<AtomicBool> {
    let lost = guard.lost();
    let stop = stop.clone();
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        lost.await;
        if !*stop.borrow() {
            set.store(true, Ordering::SeqCst);
            tracing::error!("lost leadership; stopping so that no two replicas write");
        }
        let _ = stop.send(true);
    });
    flag
}

/// Marks the operator ready once every scope's cache has synced.
#[derive(Clone)]
struct AllSynced {
    remaining: Arc<AtomicUsize>,
    readiness: Readiness,
}

impl AllSynced {
    fn new(scopes: usize, readiness: Readiness) -> Self {
        AllSynced {
            remaining: Arc::new(AtomicUsize::new(scopes)),
            readiness,
        }
    }

    /// Called once per scope, when its grant cache holds the initial list.
    fn scope_synced(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.readiness.set_ready();
            tracing::info!("caches synced; ready");
        }
    }
}

/// Stops the admin server and waits for it.
async fn finish(
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: &watch::Sender<bool>,
) -> Result<(), Error> {
    let _ = stop.send(true);
    // An open keep-alive connection (a scraper) must not hold the exit up.
    match tokio::time::timeout(Duration::from_secs(2), admin).await {
        Ok(Ok(Err(err))) => Err(Error::Config(format!("admin server failed: {err}"))),
        _ => Ok(()),
    }
}

/// A future that resolves once `stopping` turns true (Send + Sync, as kube's graceful
/// shutdown requires).
fn stopped(
    mut stopping: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (done, wait) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        let _ = done.send(());
    });
    async move {
        let _ = wait.await;
    }
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight reconciles");
    let _ = stop.send(true);
}

/// What one controller watches.
struct Scope {
    /// One namespace, or all of them.
    namespace: Option<String>,
    /// Whether ClusterSasIssuers are watched too (see [`may_watch_cluster_issuers`]).
    cluster_issuers: bool,
}

/// Whether the operator may list and watch ClusterSasIssuers although it watches chosen
/// namespaces only: so with the cluster-wide install's RBAC, not the namespaced install's (its
/// watch would meet a 403 on every retry). Asked with a SelfSubjectAccessReview, which every
/// authenticated user may create; without an answer, they are not watched (a grant then sees a
/// changed ClusterSasIssuer at its next retry or renewal).
async fn may_watch_cluster_issuers(client: &Client) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let reviews = Api::<SelfSubjectAccessReview>::all(client.clone());
    for verb in ["list", "watch"] {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some("sas-operator.io".into()),
                    resource: Some("clustersasissuers".into()),
                    verb: Some(verb.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match reviews.create(&Default::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|status| status.allowed) => {}
            Ok(_) => {
                tracing::info!(
                    "ClusterSasIssuers are not watched: this install may not {verb} them (a grant naming one gets ClusterIssuersNeedClusterInstall)"
                );
                return false;
            }
            Err(err) => {
                tracing::warn!(error = %crate::error::describe_api_error(&err), "could not ask whether ClusterSasIssuers may be watched; they are not");
                return false;
            }
        }
    }
    true
}

/// One controller over one namespace (or all of them): its grant store, and the future that
/// runs it until `shutdown`. The controller starts once the owned-Secret cache has listed, so
/// that no reconcile takes a Secret of ours for a missing one.
fn scope_controller(
    client: Client,
    health: ApiHealth,
    scope: Scope,
    ctx: Arc<Context<KubeCluster>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    all_synced: AllSynced,
) -> (Store<SasGrant>, impl Future<Output = ()> + Send) {
    let Scope {
        namespace,
        cluster_issuers,
    } = scope;
    let client_for_issuers = client.clone();
    let (grants, secrets, owned) = match &namespace {
        Some(ns) => (
            Api::<SasGrant>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client, ns),
        ),
        None => (
            Api::<SasGrant>::all(client.clone()),
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            Api::<Secret>::all(client),
        ),
    };
    // Key Secrets listed in small pages, and from the latest version: a list at resourceVersion
    // 0 is served from the API server's watch cache, which ignores the page size.
    let key_config = watcher::Config::default()
        .labels(&cache::signing_key_selector())
        .page_size(KEY_SECRET_PAGE);
    let key_events = labelled_secrets(owned.clone(), key_config, &health);
    let owned_config = watcher::Config::default()
        .labels(&cache::owned_selector())
        .any_semantic();
    let owned_events = labelled_secrets(owned, owned_config, &health);
    let shutdown = shutdown.shared();
    let caches = ctx.cluster.caches().clone();
    let index = Arc::new(GrantIndex::default());
    // Readiness comes from the grant stream itself, not from a second waiter on
    // `Store::wait_until_ready`: the Controller waits on that too, and kube-runtime's
    // DelayedInit keeps only the last waiter's waker, so one of two waiters can sleep forever
    // (the operator stayed unready, or the controller started only at the next event).
    let (store, writer) = reflector::store::<SasGrant>();
    let mut synced = Some(all_synced);
    let indexed = index.clone();
    let grant_events = reflector(
        writer,
        health.restarted_when_back(move || {
            watcher(grants.clone(), watcher::Config::default().any_semantic())
                .modify(|grant: &mut SasGrant| cache::strip_metadata(&mut grant.metadata))
                .backoff(WatchBackoff::default())
                .boxed()
        }),
    )
    .inspect(move |event| {
        if let Ok(event) = event {
            indexed.observe(event);
        }
        // The first InitDone: the store now holds the initial list (relists repeat it).
        if let Ok(watcher::Event::InitDone) = event
            && let Some(synced) = synced.take()
        {
            synced.scope_synced();
        }
    })
    .applied_objects()
    // A status write (ours) does not change the generation: it reconciles nothing.
    .predicate_filter(predicates::generation, PredicateConfig::default());
    // Unbounded here: `--concurrency` is enforced by the reconciles' turns, handed out
    // round-robin by namespace (`crate::fair`), since this queue serves first in, first out.
    let controller = Controller::for_stream(grant_events, store).with_config(
        controller::Config::default()
            .concurrency(0)
            .debounce(crate::reconcile::schedule::SCHEDULER_DEBOUNCE),
    );
    let store = controller.store();
    // Metadata only: Api<PartialObjectMeta<_>> never transfers Secret data.
    let observed = caches.clone();
    let secret_events = health
        .restarted_when_back(move || {
            watcher(secrets.clone(), watcher::Config::default().any_semantic())
                .backoff(WatchBackoff::default())
                .boxed()
        })
        .then(move |event| {
            let caches = observed.clone();
            async move {
                if let Ok(event) = &event {
                    observe_secret_versions(&caches, event).await;
                }
                event
            }
        })
        .touched_objects();
    let mapper_caches = caches.clone();
    let (key_changes, changed_keys) = futures::channel::mpsc::unbounded::<cache::Key>();
    let key_index = index.clone();
    let key_triggers = changed_keys.flat_map(move |(namespace, name)| {
        let grants: Vec<ObjectRef<SasGrant>> = key_index
            .grants_using(&namespace, &name)
            .iter()
            .map(|grant| ObjectRef::new(grant).within(&namespace))
            .collect();
        futures::stream::iter(grants)
    });
    let overdue =
        reconcile::overdue_on_reconnect(health.reconnects(), ctx.clone(), namespace.clone());
    let run = controller
        .watches_stream(secret_events, move |secret| {
            grants_touched_by(&index, &mapper_caches, &secret)
        })
        .reconcile_on(overdue)
        .reconcile_on(key_triggers)
        .reconcile_on(issuer_triggers(
            client_for_issuers,
            &health,
            namespace.clone(),
            cluster_issuers,
            store.clone(),
        ))
        // Each watch waits out its own failures (above); a pause of all triggers would hold back
        // the overdue grants too, for every 403 or 410 of a restarted API server.
        .trigger_backoff(kube_client::NoPause)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            // The grant as its pending status write will leave it (see `with_pending_status`).
            |grant, ctx| reconcile::reconcile(ctx.cluster.with_pending_status(grant), ctx),
            reconcile::error_policy,
            ctx,
        )
        .for_each(move |result| {
            if let Err(err) = result {
                log_controller_error(&err, &health);
            }
            future::ready(())
        });
    let (owned_synced, owned_listed) = tokio::sync::oneshot::channel();
    let (keys_synced, keys_listed) = tokio::sync::oneshot::channel();
    let feed_keys = feed_key_secrets(
        key_events,
        namespace.clone(),
        caches.clone(),
        keys_synced,
        key_changes,
    );
    let feed = feed_owned_secrets(owned_events, namespace, caches, owned_synced);
    let run = async move {
        let feeding = tokio::spawn(feed);
        let feeding_keys = tokio::spawn(feed_keys);
        tokio::select! {
            _ = async { let _ = owned_listed.await; keys_listed.await } => run.await,
            () = shutdown => {}
        }
        feeding.abort();
        feeding_keys.abort();
    };
    (store, run)
}

/// Keeps the owned-Secret cache of one scope from `events`, a watch of the Secrets labelled as
/// ours, full objects, managedFields stripped. Signals `synced` after the first complete list.
async fn feed_owned_secrets(
    mut events: SecretEvents,
    scope: Option<String>,
    caches: Arc<SecretCaches>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut relist = cache::Relist::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let listed = matches!(event, watcher::Event::InitDone);
                caches.observe_owned(&scope, event, &mut relist);
                if listed && let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Err(err) => tracing::debug!(
                error = %describe_watch_error(&err),
                "watch of the operator's own Secrets"
            ),
        }
    }
}

/// Key Secrets are listed one at a time: any tenant may label a Secret of up to 1 MiB as a key,
/// and a list page is held whole (about four copies of it) while it is read. One request per
/// key Secret at start is cheap; at two per page the restart with 120 Secrets of 900 kB peaked
/// 7 MB higher (tests/hostile/memory.rs).
const KEY_SECRET_PAGE: u32 = 1;

type SecretEvents =
    futures::stream::BoxStream<'static, Result<watcher::Event<Secret>, watcher::Error>>;

/// Full Secrets as `config` selects them, re-watched within seconds after an outage (the
/// bounded [`WatchBackoff`], and a fresh watch when the API server is back, like every other
/// watch of the operator).
fn labelled_secrets(api: Api<Secret>, config: watcher::Config, health: &ApiHealth) -> SecretEvents {
    health.restarted_when_back(move || {
        watcher(api.clone(), config.clone())
            .backoff(WatchBackoff::default())
            .boxed()
    })
}

/// Keeps the key-Secret cache of one scope from `events`, a watch of the Secrets labelled as
/// signing keys, full objects. Signals `synced` after the first complete list; after it, sends every key
/// Secret that changed or went away to `changed` once the cache holds the change, so that the
/// reconciles it causes sign with the new key.
async fn feed_key_secrets(
    mut events: SecretEvents,
    scope: Option<String>,
    caches: Arc<SecretCaches>,
    synced: tokio::sync::oneshot::Sender<()>,
    changed: futures::channel::mpsc::UnboundedSender<cache::Key>,
) {
    let mut synced = Some(synced);
    let mut relist = cache::Relist::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let listed = matches!(event, watcher::Event::InitDone);
                for key in caches.observe_key(&scope, event, &mut relist) {
                    let _ = changed.unbounded_send(key);
                }
                if listed && let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Err(err) => tracing::debug!(
                error = %describe_watch_error(&err),
                "watch of the key Secrets"
            ),
        }
    }
}

/// Lets the caches see every version of every Secret (from the metadata watch), after any
/// write of ours to that Secret has returned, so its event is known as ours.
async fn observe_secret_versions(
    caches: &SecretCaches,
    event: &watcher::Event<PartialObjectMeta<Secret>>,
) {
    match event {
        watcher::Event::Apply(secret) | watcher::Event::InitApply(secret) => {
            let key = cache::key_of(&secret.metadata);
            caches.settled(&key).await;
            caches.observe_version(&key, secret.metadata.resource_version.as_deref());
        }
        watcher::Event::Delete(secret) => {
            let key = cache::key_of(&secret.metadata);
            caches.settled(&key).await;
            caches.observe_version(&key, None);
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// Drops the per-grant metric series and failure counts of grants that no longer exist.
/// Deletion needs no finalizer (the Secret goes by garbage collection), so reconcile never sees
/// it. Compared with the grants that have series (not with the previous tick's store), so that
/// a grant created and deleted between two ticks is forgotten too; and with the grants of every
/// watched scope at once, since the series of all scopes share one registry.
async fn forget_deleted_grants<C: Cluster>(stores: Vec<Store<SasGrant>>, ctx: Arc<Context<C>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let grants: Vec<Arc<SasGrant>> = stores.iter().flat_map(Store::state).collect();
        let live: HashSet<(String, String)> = grants
            .iter()
            .map(|grant| (grant.namespace().unwrap_or_default(), grant.name_any()))
            .collect();
        for (namespace, name) in ctx.metrics.grants() {
            if !live.contains(&(namespace.clone(), name.clone())) {
                ctx.metrics.forget_grant(&namespace, &name);
            }
        }
        ctx.prune_failures(&grants.iter().filter_map(|grant| grant.uid()).collect());
    }
}

/// The grants a Secret change concerns: the grant owning it (a target Secret), unless the
/// change is one of our own writes; and every grant in its namespace that names it as its key
/// Secret while it is not labelled as one (labelled keys reconcile their grants from the key
/// watch), unless that version was already read. Costs O(grants that use it).
fn grants_touched_by(
    index: &GrantIndex,
    caches: &SecretCaches,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<SasGrant>> {
    let key = cache::key_of(&secret.metadata);
    let version = secret.metadata.resource_version.as_deref();
    let namespace = &key.0;
    let mut touched: Vec<ObjectRef<SasGrant>> = secret
        .owner_references()
        .iter()
        .filter(|owner| {
            owner.kind == "SasGrant" && owner.api_version.starts_with("sas-operator.io/")
        })
        .map(|owner| ObjectRef::new(&owner.name).within(namespace))
        .collect();
    if !touched.is_empty() {
        if caches.is_known_version(&key, version) {
            touched.clear();
        } else {
            // Someone else changed or deleted it: the reconcile reads it afresh.
            caches.mark_dirty(key.clone());
        }
    }
    if caches.key_event_is_news(&secret.metadata) {
        touched.extend(
            index
                .grants_using(namespace, &key.1)
                .iter()
                .map(|name| ObjectRef::new(name).within(namespace)),
        );
    }
    touched
}

/// Grants to reconcile when an issuer changes (its credential, its policy): every grant of the
/// scope that names it. Issuers are watched as metadata (the reconcile GETs the one it needs).
/// `SasIssuer`s are watched in the scope; `ClusterSasIssuer`s when `cluster_issuers` (the
/// namespaced install may not list them; there a grant picks up a changed cluster issuer at
/// its next retry or renewal).
fn issuer_triggers(
    client: Client,
    health: &ApiHealth,
    namespace: Option<String>,
    cluster_issuers: bool,
    grants: Store<SasGrant>,
) -> impl futures::Stream<Item = ObjectRef<SasGrant>> + Send + 'static {
    use crate::crd::{ClusterSasIssuer, IssuerKind, SasIssuer};
    let config = || watcher::Config::default().any_semantic();
    let namespaced = match &namespace {
        Some(ns) => Api::<PartialObjectMeta<SasIssuer>>::namespaced(client.clone(), ns),
        None => Api::<PartialObjectMeta<SasIssuer>>::all(client.clone()),
    };
    let namespaced = health
        .restarted_when_back(move || {
            watcher(namespaced.clone(), config())
                .backoff(WatchBackoff::default())
                .boxed()
        })
        .touched_objects()
        .map(|found| {
            found.map(|issuer| (IssuerKind::SasIssuer, issuer.namespace(), issuer.name_any()))
        })
        .boxed();
    let changes = if cluster_issuers {
        let cluster_issuers = Api::<PartialObjectMeta<ClusterSasIssuer>>::all(client);
        let cluster = health
            .restarted_when_back(move || {
                watcher(cluster_issuers.clone(), config())
                    .backoff(WatchBackoff::default())
                    .boxed()
            })
            .touched_objects()
            .map(|found| {
                found.map(|issuer| (IssuerKind::ClusterSasIssuer, None, issuer.name_any()))
            });
        futures::stream::select(namespaced, cluster).boxed()
    } else {
        namespaced
    };
    changes
        .filter_map(|change| {
            future::ready(match change {
                Ok(change) => Some(change),
                Err(err) => {
                    // Outages: one WARN from the probe and the grant watch.
                    tracing::debug!(error = %describe_watch_error(&err), "issuer watch");
                    None
                }
            })
        })
        .flat_map(move |(kind, namespace, name)| {
            futures::stream::iter(grants_naming(&grants, kind, namespace.as_deref(), &name))
        })
}

/// The grants that name issuer `kind/name` (a `SasIssuer` only from its own namespace).
fn grants_naming(
    store: &Store<SasGrant>,
    kind: crate::crd::IssuerKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<SasGrant>> {
    store
        .state()
        .into_iter()
        .filter(|grant| {
            grant.spec.issuer_ref.as_ref().is_some_and(|reference| {
                reference.kind == kind
                    && reference.name == name
                    && (namespace.is_none() || grant.namespace().as_deref() == namespace)
            })
        })
        .map(|grant| ObjectRef::from(grant.as_ref()))
        .collect()
}

fn log_controller_error(err: &controller::Error<Error, watcher::Error>, health: &ApiHealth) {
    match err {
        // Already logged with its reason by the error policy.
        controller::Error::ReconcilerFailed(_, _) => {}
        // A grant deleted after it was queued (e.g. as overdue when the API server came back).
        controller::Error::ObjectNotFound(_) => tracing::debug!(error = %err, "controller event"),
        controller::Error::QueueError(err) => log_watch_error(err, health),
        other => tracing::warn!(error = %other, "controller event"),
    }
}

/// A watch's `410 Gone` is the normal end of a resource version: the watcher lists again. Other
/// watch failures are retried every half second while the API server is out of reach: one WARN per
/// outage, not one per retry.
fn log_watch_error(err: &watcher::Error, health: &ApiHealth) {
    if matches!(err, watcher::Error::WatchError(status) if status.code == 410) {
        tracing::debug!("a watch's resource version expired; listing again");
    } else if health.log_watch_failure() {
        tracing::warn!(
            reason = "WatchFailed",
            error = %crate::error::truncate_message(&describe_watch_error(err)),
            "a watch failed; retrying every half second until the API server answers"
        );
    } else {
        tracing::debug!(error = %describe_watch_error(err), "a watch failed again");
    }
}

/// A watch error in one line: an API error by its message, reason and code, without the whole
/// `Status` in its debug form that kube's own text appends.
fn describe_watch_error(err: &watcher::Error) -> String {
    use crate::error::describe_api_error;
    match err {
        watcher::Error::InitialListFailed(err) => {
            format!("the list failed: {}", describe_api_error(err))
        }
        watcher::Error::WatchStartFailed(err) => {
            format!("the watch did not start: {}", describe_api_error(err))
        }
        watcher::Error::WatchFailed(err) => {
            format!("the watch stream failed: {}", describe_api_error(err))
        }
        watcher::Error::WatchError(status) => {
            format!("the API server ended the watch: {status} ({})", status.code)
        }
        other => other.to_string(),
    }
}

/// Fails fast with a clear message when the CRD is missing, instead of a watch error loop.
/// Asks in a watched namespace when there are some: a namespaced install may not list
/// cluster-wide.
async fn ensure_crd_installed(client: &Client, namespace: Option<&String>) -> Result<(), Error> {
    let grants = match namespace {
        Some(namespace) => Api::<SasGrant>::namespaced(client.clone(), namespace),
        None => Api::<SasGrant>::all(client.clone()),
    };
    match grants.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(Error::CrdNotInstalled),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_leader_election_a_reconcile_ends_within_half_the_renew_deadline() {
        let five = Duration::from_secs(5);
        assert_eq!(
            reconcile_deadline(five, Some(Duration::from_secs(10))),
            five
        );
        assert_eq!(
            reconcile_deadline(five, Some(Duration::from_secs(4))),
            Duration::from_secs(2)
        );
        assert_eq!(
            reconcile_deadline(Duration::from_secs(60), None),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn shutdown_abandons_reconciles_still_running_after_the_grace_period() {
        let started = std::time::Instant::now();
        drain_within(
            future::pending::<Vec<()>>(),
            future::ready(()),
            Duration::from_millis(50),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn secret_meta(name: &str, version: &str, owner: Option<&str>) -> PartialObjectMeta<Secret> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut meta = PartialObjectMeta::<Secret>::default();
        meta.metadata.namespace = Some("ns".into());
        meta.metadata.name = Some(name.into());
        meta.metadata.resource_version = Some(version.into());
        meta.metadata.owner_references = owner.map(|owner| {
            vec![OwnerReference {
                api_version: "sas-operator.io/v1alpha1".into(),
                kind: "SasGrant".into(),
                name: owner.into(),
                uid: "uid".into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        meta
    }

    fn written(name: &str, version: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.namespace = Some("ns".into());
        secret.metadata.name = Some(name.into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    #[test]
    fn a_watch_error_is_described_without_the_status_dump() {
        let refused = kube::core::Status::failure("storage is (re)initializing", "TooManyRequests")
            .with_code(429)
            .boxed();
        let started = watcher::Error::WatchStartFailed(kube::Error::Api(refused.clone()));
        assert_eq!(
            describe_watch_error(&started),
            "the watch did not start: ApiError: storage is (re)initializing: TooManyRequests (429)"
        );
        let ended = describe_watch_error(&watcher::Error::WatchError(refused));
        assert_eq!(
            ended,
            "the API server ended the watch: storage is (re)initializing: TooManyRequests (429)"
        );
    }

    #[test]
    fn the_event_of_our_own_secret_write_reconciles_nothing_and_a_foreign_change_its_owner() {
        let (index, caches) = (GrantIndex::default(), SecretCaches::default());
        caches.wrote(written("app", "7"));
        let ours = secret_meta("app", "7", Some("app"));
        assert!(grants_touched_by(&index, &caches, &ours).is_empty());
        assert!(!caches.take_dirty(&("ns".into(), "app".into())));

        let foreign = secret_meta("app", "8", Some("app"));
        assert_eq!(
            grants_touched_by(&index, &caches, &foreign),
            vec![ObjectRef::new("app").within("ns")]
        );
        assert!(
            caches.take_dirty(&("ns".into(), "app".into())),
            "the next read is a GET"
        );
    }

    #[test]
    fn an_unlabelled_key_secret_event_reconciles_the_grants_naming_it_until_that_version_is_read() {
        let (index, caches) = (GrantIndex::default(), SecretCaches::default());
        let grant = |name: &str, key: &str| {
            let spec = serde_json::json!({
                "storageAccount": {"name": "acct", "keySecretRef": {"name": key}},
                "resource": {"container": {"name": "data"}},
                "permissions": "r",
            });
            let mut grant = SasGrant::new(name, serde_json::from_value(spec).unwrap());
            grant.metadata.namespace = Some("ns".into());
            grant
        };
        index.observe(&watcher::Event::Apply(grant("a", "keys")));
        index.observe(&watcher::Event::Apply(grant("b", "other")));
        let event = secret_meta("keys", "3", None);
        assert_eq!(
            grants_touched_by(&index, &caches, &event),
            vec![ObjectRef::new("a").within("ns")]
        );
        let key = ("ns".to_string(), "keys".to_string());
        let (_, _, epoch) = caches.unlabelled(&key);
        caches.read_unlabelled(&key, epoch, Some(&written("keys", "3")));
        assert!(
            grants_touched_by(&index, &caches, &event).is_empty(),
            "a version already read changes nothing"
        );
        let mut labelled = secret_meta("keys", "4", None);
        labelled.metadata.labels = Some(
            [(
                crate::credentials::LABEL_SIGNING_KEY.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        assert!(
            grants_touched_by(&index, &caches, &labelled).is_empty(),
            "a labelled key reconciles its grants from the key watch, once cached"
        );
    }
}
