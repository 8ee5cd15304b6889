//! Hostile issuers and grants: endpoints. See tests/hostile.rs.
//!
//! A tenant who may create SasIssuers and SasGrants in their namespace, and nothing else, names
//! a host of their own as a storage endpoint: to receive the storage access token of a
//! ServiceAccount someone else lent to the operator, or to point apps at it through `sasUrl`
//! and `connectionString`. The operator refuses any endpoint that is not Azure's host for the
//! account and service (or a host:port its administrator listed) before it contacts anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Api, Client};
use sas_operator::crd::{SasGrant, SasIssuer};
use serde_json::json;

use crate::common::entra::{AppRegistration, service_account_subject};
use crate::{common, operator::*};

/// A TCP listener on loopback that counts the connections it accepts (and drops them): a
/// host the tenant controls. Counting accepts is the strongest proof that nothing was sent.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Listener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback listener");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Listener {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn create_service_account(client: &Client, ns: &str, name: &str) {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&Default::default(), &account)
        .await
        .expect("create the ServiceAccount");
}

/// A client for a tenant of `ns` who may do anything with SasIssuers and SasGrants there, and
/// nothing else (no pods, no Secrets, no `serviceaccounts/token`).
async fn tenant_client(admin: &Client, ns: &str) -> Client {
    create_service_account(admin, ns, "tenant").await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "tenant", "namespace": ns},
        "rules": [{
            "apiGroups": ["sas-operator.io"],
            "resources": ["sasissuers", "sasgrants"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&Default::default(), &role)
        .await
        .expect("create the tenant's Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "tenant", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&Default::default(), &binding)
        .await
        .expect("bind the tenant's Role");
    common::control_plane()
        .service_account_client(ns, "tenant")
        .await
}

/// A workload identity SasIssuer for `app` and ServiceAccount `storage-signer`, its blob
/// endpoint `blob_endpoint`.
pub(crate) fn identity_issuer(
    name: &str,
    ns: &str,
    app: &AppRegistration,
    blob_endpoint: &str,
) -> SasIssuer {
    serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "storageAccount": {
                "name": common::azurite_oauth().azurite.account,
                "endpoints": {"blob": blob_endpoint},
            },
            "workloadIdentity": {
                "clientId": app.client_id,
                "tenantId": app.tenant_id,
                "serviceAccountName": "storage-signer",
            },
        }
    }))
    .expect("a valid SasIssuer")
}

pub(crate) fn issued_grant(name: &str, issuer: &str) -> SasGrant {
    serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "issuerRef": {"kind": "SasIssuer", "name": issuer},
            "resource": {"container": {"name": "data"}},
            "permissions": "rl",
        }
    }))
    .expect("a valid SasGrant")
}

/// TokenRequests the operator made for ServiceAccounts of `ns`, per the audit log.
pub(crate) fn token_requests_by_operator(ns: &str) -> usize {
    let user = format!("system:serviceaccount:{DEPLOY_NAMESPACE}:{DEPLOY_SERVICE_ACCOUNT}");
    common::audit::events()
        .iter()
        .filter(|e| e.username() == user && e.verb == "create" && e.is_answer())
        .filter(|e| {
            e.resource_path().as_deref() == Some("serviceaccounts/token")
                && e.namespace() == Some(ns)
        })
        .count()
}

#[tokio::test]
async fn a_tenants_own_host_never_receives_a_connection_let_alone_a_storage_access_token() {
    let (admin, ns) = namespace("endpoint-capture").await;
    // A namespace admin lent ServiceAccount storage-signer to the operator for a legitimate
    // issuer, and its Entra application trusts it: without the endpoint rule, a token of it
    // would be exchanged and sent on.
    create_service_account(&admin, &ns, "storage-signer").await;
    lend_service_account(&admin, &ns, "storage-signer").await;
    let entra = common::entra();
    let app = entra
        .register_app(&service_account_subject(&ns, "storage-signer"))
        .await;
    let oauth = common::azurite_oauth();
    let _operator = Operator::under_deploy_rbac(
        "hostile-endpoint-capture",
        &[&ns],
        &[
            "--authority-host",
            &entra.authority_host,
            "--extra-ca-file",
            &format!(
                "{},{}",
                entra.ca_cert_pem_path.display(),
                oauth.ca_cert_pem_path.display()
            ),
        ],
    )
    .await;
    let listener = Listener::start().await;
    let tenant = tenant_client(&admin, &ns).await;
    // The tenant really holds no right to tokens.
    let own_request = Api::<ServiceAccount>::namespaced(tenant.clone(), &ns)
        .create_token_request("storage-signer", &Default::default(), &Default::default())
        .await;
    assert!(
        matches!(own_request, Err(kube::Error::Api(ref status)) if status.code == 403),
        "the tenant may request tokens itself: {own_request:?}"
    );

    let capture = format!("https://127.0.0.1:{}/", listener.port);
    Api::<SasIssuer>::namespaced(tenant.clone(), &ns)
        .create(
            &Default::default(),
            &identity_issuer("capture", &ns, &app, &capture),
        )
        .await
        .expect("the tenant creates its SasIssuer");
    Api::<SasGrant>::namespaced(tenant.clone(), &ns)
        .create(&Default::default(), &issued_grant("steal", "capture"))
        .await
        .expect("the tenant creates its SasGrant");
    let shown = wait_ready(&admin, &ns, "steal", "False", "EndpointNotAllowed").await;
    let message = &shown.status.unwrap().conditions[0].message;
    for needle in [
        "SasIssuer \"capture\": storageAccount.endpoints.blob",
        "--allow-storage-endpoint",
        "--storage-endpoint-suffixes",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    assert_eq!(
        listener.accepted(),
        0,
        "the operator connected to the tenant's host"
    );
    assert_eq!(
        token_requests_by_operator(&ns),
        0,
        "a TokenRequest was made"
    );
    let exchanges = entra.stats().await.for_client(&app.client_id);
    assert_eq!((exchanges.succeeded, exchanges.failed), (0, 0));
    assert!(get_secret(&admin, &ns, "steal").await.is_none());

    // The same ServiceAccount and application with the emulator's endpoint (listed) work, and
    // the audit log shows that TokenRequest: the zero above is not blindness.
    Api::<SasIssuer>::namespaced(admin.clone(), &ns)
        .create(
            &Default::default(),
            &identity_issuer("storage", &ns, &app, &oauth.blob_endpoint),
        )
        .await
        .expect("create the legitimate SasIssuer");
    create_grant(&admin, &ns, &issued_grant("legitimate", "storage")).await;
    wait_ready(&admin, &ns, "legitimate", "True", "TokenValid").await;
    common::eventually(
        "the audit log to show the legitimate TokenRequest",
        Duration::from_secs(10),
        || async { (token_requests_by_operator(&ns) > 0).then_some(()) },
    )
    .await;
    assert_eq!(listener.accepted(), 0);
    wait_ready(&admin, &ns, "steal", "False", "EndpointNotAllowed").await;
}

#[tokio::test]
async fn a_key_signed_grant_cannot_point_apps_at_a_foreign_host() {
    let (client, ns) = namespace("endpoint-foreign").await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let _operator = Operator::under_deploy_rbac("hostile-endpoint-foreign", &[&ns], &[]).await;
    for (name, endpoints) in [
        ("foreign-host", json!({"blob": "https://attacker.example/"})),
        (
            "lookalike-host",
            json!({"queue": "https://devstoreaccount1.queue.core.windows.net.attacker.example"}),
        ),
        (
            "other-account",
            json!({"blob": "https://someoneelse.blob.core.windows.net"}),
        ),
    ] {
        let mut grant = grant(
            name,
            json!({"container": {"name": "data"}}),
            "rl",
            json!({}),
        );
        grant.spec.storage_account.as_mut().unwrap().endpoints =
            Some(serde_json::from_value(endpoints).unwrap());
        create_grant(&client, &ns, &grant).await;
        let shown = wait_ready(&client, &ns, name, "False", "EndpointNotAllowed").await;
        let message = &shown.status.unwrap().conditions[0].message;
        assert!(
            message.starts_with("storageAccount.endpoints."),
            "{name}: {message}"
        );
        assert!(get_secret(&client, &ns, name).await.is_none(), "{name}");
    }
    // The emulator's endpoints, which the operator lists, still sign.
    create_grant(
        &client,
        &ns,
        &grant(
            "emulator",
            json!({"container": {"name": "data"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    wait_ready(&client, &ns, "emulator", "True", "TokenValid").await;
}
