//! Controller wiring: watches, the key-Secret mapping, and shutdown.
//!
//! Secrets are watched as metadata only: the operator never holds the data of Secrets in
//! memory, and GETs just the key Secret a grant references and the target Secret it owns.

use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, controller,
        events::{Recorder, Reporter},
        reflector::{ObjectRef, Store},
        watcher,
    },
};

use crate::config::RunConfig;
use crate::crd::SasGrant;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(config: RunConfig) -> Result<(), Error> {
    let client = Client::try_default().await?;
    ensure_crd_installed(&client).await?;
    let reporter = Reporter {
        controller: "sas-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        config.clock_skew,
        Metrics::new(),
    ));
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    tracing::info!(namespaces = ?config.namespaces, "starting sas-operator controller");
    future::join_all(
        scopes
            .into_iter()
            .map(|scope| run_scope(client.clone(), scope, ctx.clone(), config.concurrency)),
    )
    .await;
    tracing::info!("controller stopped");
    Ok(())
}

/// One controller over one namespace (or all of them).
async fn run_scope(client: Client, namespace: Option<String>, ctx: Arc<Context>, concurrency: u16) {
    let (grants, secrets) = match &namespace {
        Some(ns) => (
            Api::<SasGrant>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client, ns),
        ),
        None => (
            Api::<SasGrant>::all(client.clone()),
            Api::<PartialObjectMeta<Secret>>::all(client),
        ),
    };
    let controller = Controller::new(grants, watcher::Config::default().any_semantic())
        .with_config(
            controller::Config::default()
                .concurrency(concurrency)
                .debounce(std::time::Duration::from_millis(500)),
        );
    let store = controller.store();
    // Metadata only: Api<PartialObjectMeta<_>> never transfers Secret data.
    let secret_events =
        watcher(secrets, watcher::Config::default().any_semantic()).touched_objects();
    controller
        .watches_stream(secret_events, move |secret| {
            grants_touched_by(&store, &secret)
        })
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| {
            if let Err(err) = result {
                log_controller_error(&err);
            }
            future::ready(())
        })
        .await;
}

/// The grants a Secret change concerns: the grant owning it (a target Secret) and every grant
/// in its namespace that signs with it (a key Secret).
fn grants_touched_by(
    store: &Store<SasGrant>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<SasGrant>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let owners = secret
        .owner_references()
        .iter()
        .filter(|owner| {
            owner.kind == "SasGrant" && owner.api_version.starts_with("sas-operator.io/")
        })
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace));
    let signers = store
        .state()
        .into_iter()
        .filter(|grant| {
            grant.namespace().as_deref() == Some(namespace.as_str())
                && grant.spec.storage_account.key_secret_ref.name == name
        })
        .map(|grant| ObjectRef::from(grant.as_ref()));
    owners.chain(signers).collect()
}

fn log_controller_error(err: &controller::Error<Error, watcher::Error>) {
    match err {
        // Already logged with its reason by the error policy.
        controller::Error::ReconcilerFailed(_, _) => {}
        other => tracing::warn!(error = %other, "controller event"),
    }
}

/// Fails fast with a clear message when the CRD is missing, instead of a watch error loop.
async fn ensure_crd_installed(client: &Client) -> Result<(), Error> {
    match Api::<SasGrant>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(Error::CrdNotInstalled),
        Err(err) => Err(err.into()),
    }
}
