//! Hostile grants: tenancy. See tests/hostile.rs.
//!
//! A tenant who may create SasGrants in a namespace a ClusterSasIssuer allows gets only what
//! the issuer's policy allows (issue 16, attack 1: the whole account for a year was Ready), a
//! changed policy re-evaluates its grants within seconds and leaves their Secrets alone, a
//! ClusterSasIssuer without a policy is refused at admission, the namespaced install says why
//! it cannot use a ClusterSasIssuer, and the built-in `edit` role creates grants, not issuers.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use sas_operator::crd::{ClusterSasIssuer, SasGrant, SasIssuer};
use serde_json::{Value, json};

use crate::common::audit;
use crate::{common, operator::*};

const DEPLOY_USER: &str = "system:serviceaccount:sas-operator:sas-operator";

/// How soon a changed policy shows on a grant. Without the issuer watch a Ready grant would
/// look again only at its renewal, hours away.
const WITHIN_SECONDS: Duration = Duration::from_secs(10);

/// A tenant namespace, the platform's cluster resource namespace holding Azurite's key, and
/// the operator under deploy/'s RBAC watching the tenant.
struct Platform {
    client: Client,
    tenant: String,
    platform: String,
    key_secret: String,
    issuer: String,
    operator: Operator,
}

async fn platform(name: &str) -> Platform {
    let (client, tenant) = namespace(&format!("{name}-tenant")).await;
    let platform = common::test_namespace(&client, &format!("{name}-platform")).await;
    let key_name = format!("{platform}-keys");
    create_secret(
        &client,
        &platform,
        &key_secret(&key_name, &[("key1", &common::azurite().key)]),
    )
    .await;
    let operator = Operator::under_deploy_rbac(
        &format!("hostile-tenancy-{name}"),
        &[&tenant],
        &["--cluster-resource-namespace", &platform],
    )
    .await;
    Platform {
        client,
        tenant,
        issuer: format!("{platform}-issuer"),
        platform,
        key_secret: key_name,
        operator,
    }
}

/// The issue's policy for Azurite (whose endpoints are http): each namespace reads and lists
/// its own containers, for at most a day.
fn tenant_policy() -> Value {
    json!({
        "resources": {"container": {"names": ["{namespace}-*"]}},
        "maxPermissions": {"container": "rl"},
        "maxValidity": "24h",
        "protocols": "https,http",
    })
}

impl Platform {
    /// Applies the ClusterSasIssuer for Azurite's account with `allowed` and `policy`.
    async fn apply_issuer(&self, allowed: Value, policy: Value) {
        let azurite = common::azurite();
        let issuer: ClusterSasIssuer = serde_json::from_value(json!({
            "apiVersion": "sas-operator.io/v1alpha1",
            "kind": "ClusterSasIssuer",
            "metadata": {"name": self.issuer},
            "spec": {
                "storageAccount": {
                    "name": azurite.account,
                    "endpoints": {"blob": azurite.blob_endpoint},
                },
                "accountKey": {"secretRef": {"name": self.key_secret, "key": "key1"}},
                "allowedNamespaces": allowed,
                "policy": policy,
            }
        }))
        .expect("a valid ClusterSasIssuer");
        Api::<ClusterSasIssuer>::all(self.client.clone())
            .patch(
                &self.issuer,
                &PatchParams::apply("sas-operator-tests").force(),
                &Patch::Apply(&issuer),
            )
            .await
            .expect("apply the ClusterSasIssuer");
    }

    /// A grant of the tenant signed by the issuer; `spec` entries override the defaults.
    async fn create_grant(&self, name: &str, resource: Value, permissions: &str, spec: Value) {
        let mut value = json!({
            "apiVersion": "sas-operator.io/v1alpha1",
            "kind": "SasGrant",
            "metadata": {"name": name},
            "spec": {
                "issuerRef": {"kind": "ClusterSasIssuer", "name": self.issuer},
                "resource": resource,
                "permissions": permissions,
                "protocol": "https,http",
            }
        });
        if let Value::Object(extra) = spec {
            for (key, field) in extra {
                value["spec"][key] = field;
            }
        }
        let grant: SasGrant = serde_json::from_value(value).expect("a valid SasGrant");
        create_grant(&self.client, &self.tenant, &grant).await;
    }

    /// GETs of the issuer's key Secret by the operator, in the audit log.
    fn key_reads(&self) -> usize {
        audit::events()
            .iter()
            .filter(|e| e.username() == DEPLOY_USER && e.verb == "get")
            .filter(|e| e.resource() == Some("secrets"))
            .filter(|e| e.namespace() == Some(&self.platform) && e.name() == Some(&self.key_secret))
            .count()
    }

    /// Waits for a Warning Event of `reason` about `grant`.
    async fn wait_for_warning(&self, grant: &str, reason: &str) -> Event {
        let events = Api::<Event>::namespaced(self.client.clone(), &self.tenant);
        let what = format!("a {reason} Warning about {grant}");
        wait_for(&what, Duration::from_secs(30), || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|event| {
                event.type_.as_deref() == Some("Warning")
                    && event.reason.as_deref() == Some(reason)
                    && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(grant)
            })
        })
        .await
    }

    /// The Ready condition's message of a grant.
    async fn message(&self, grant: &str) -> String {
        let shown = Api::<SasGrant>::namespaced(self.client.clone(), &self.tenant)
            .get(grant)
            .await
            .expect("GET the grant");
        shown.status.expect("status").conditions[0].message.clone()
    }
}

/// Attack 1 of issue 16: an account SAS for every service and resource type, all permissions,
/// for a year. The policy never listed `account`: refused before the key is read, no Secret,
/// a Warning; a grant inside the policy is signed and its token works.
#[tokio::test]
async fn a_cluster_issuer_policy_denies_the_whole_account_and_signs_what_it_allows() {
    let platform = platform("account").await;
    let tenant = platform.tenant.clone();
    platform
        .apply_issuer(json!({"names": [tenant]}), tenant_policy())
        .await;
    platform
        .create_grant(
            "whole-account",
            json!({"account": {"services": "bqtf", "resourceTypes": "sco"}}),
            "rwdxylacupfti",
            json!({"validity": "8760h"}),
        )
        .await;
    wait_ready(
        &platform.client,
        &tenant,
        "whole-account",
        "False",
        "DeniedByIssuerPolicy",
    )
    .await;
    let message = platform.message("whole-account").await;
    assert_eq!(
        message,
        format!(
            "spec.resource.account is not allowed: the issuer's policy lists no \
             resources.account (it signs container) (ClusterSasIssuer {:?})",
            platform.issuer
        )
    );
    let event = platform
        .wait_for_warning("whole-account", "DeniedByIssuerPolicy")
        .await;
    assert_eq!(event.note.as_deref(), Some(message.as_str()));
    assert!(
        get_secret(&platform.client, &tenant, "whole-account")
            .await
            .is_none()
    );
    assert_eq!(
        platform.key_reads(),
        0,
        "the key Secret was read for a grant outside the policy"
    );

    // Inside the policy: the tenant's own container, read and list, for an hour.
    let azurite = common::azurite();
    let storage = Storage::default();
    let container = format!("{tenant}-data");
    storage
        .create_container(
            &azurite.blob_endpoint,
            &container,
            &admin_token(&azurite.account, &azurite.key),
        )
        .await;
    platform
        .create_grant(
            "own-data",
            json!({"container": {"name": container}}),
            "rl",
            json!({"validity": "1h"}),
        )
        .await;
    wait_ready(&platform.client, &tenant, "own-data", "True", "TokenValid").await;
    let token = data(
        &get_secret(&platform.client, &tenant, "own-data")
            .await
            .unwrap(),
        "sasToken",
    );
    let (status, _) = storage
        .list_blobs(&azurite.blob_endpoint, &container, &token)
        .await;
    assert_eq!(
        status, 200,
        "the token the policy allowed lists the container"
    );
    // The denied grant stays denied, with nothing written for it.
    wait_ready(
        &platform.client,
        &tenant,
        "whole-account",
        "False",
        "DeniedByIssuerPolicy",
    )
    .await;
    assert!(
        get_secret(&platform.client, &tenant, "whole-account")
            .await
            .is_none()
    );
    platform
        .operator
        .assert_logs_free_of(&[&azurite.key, &token]);
}

/// A Ready grant whose issuer's policy tightens turns `DeniedByIssuerPolicy` within seconds
/// (the operator watches ClusterSasIssuers although it watches one namespace), and its Secret
/// keeps the valid token; loosened again, the grant is Ready with that same token.
#[tokio::test]
async fn a_tightened_policy_denies_a_ready_grant_within_seconds_and_leaves_its_secret_alone() {
    let platform = platform("tighten").await;
    let tenant = platform.tenant.clone();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(platform.client.clone())
        .patch(
            &tenant,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"storage-access": tenant}}})),
        )
        .await
        .expect("label the tenant namespace");
    let by_label = json!({"matchLabels": {"storage-access": tenant}});
    platform
        .apply_issuer(by_label.clone(), tenant_policy())
        .await;
    let container = format!("{tenant}-data");
    platform
        .create_grant(
            "reader",
            json!({"container": {"name": container}}),
            "rl",
            json!({}),
        )
        .await;
    wait_ready(&platform.client, &tenant, "reader", "True", "TokenValid").await;
    let before = get_secret(&platform.client, &tenant, "reader")
        .await
        .unwrap();

    let mut tightened = tenant_policy();
    tightened["maxPermissions"]["container"] = json!("l");
    let started = Instant::now();
    platform.apply_issuer(by_label.clone(), tightened).await;
    wait_ready(
        &platform.client,
        &tenant,
        "reader",
        "False",
        "DeniedByIssuerPolicy",
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < WITHIN_SECONDS, "the denial took {elapsed:?}");
    let message = platform.message("reader").await;
    assert!(
        message.starts_with(
            "spec.permissions \"rl\" exceeds the issuer's maxPermissions.container \"l\""
        ),
        "{message}"
    );
    let after = get_secret(&platform.client, &tenant, "reader")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the Secret holding a valid token was written"
    );
    assert_eq!(after.data, before.data);

    let started = Instant::now();
    platform.apply_issuer(by_label, tenant_policy()).await;
    wait_ready(&platform.client, &tenant, "reader", "True", "TokenValid").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < WITHIN_SECONDS,
        "the grant was Ready again after {elapsed:?}"
    );
    let again = get_secret(&platform.client, &tenant, "reader")
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, before.metadata.resource_version,
        "the token the Secret held was still valid: nothing to re-sign"
    );
}

#[tokio::test]
async fn a_cluster_issuer_without_a_policy_is_refused_at_admission() {
    let (client, ns) = namespace("no-policy").await;
    install_deploy_directory();
    let issuer: ClusterSasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "ClusterSasIssuer",
        "metadata": {"name": format!("{ns}-issuer")},
        "spec": {
            "storageAccount": {"name": "acct"},
            "accountKey": {"secretRef": {"name": "keys"}},
            "allowedNamespaces": {"names": [ns]},
        }
    }))
    .unwrap();
    let api = Api::<ClusterSasIssuer>::all(client.clone());
    let refusal = wait_for(
        "the ClusterSasIssuer CRD to answer",
        Duration::from_secs(30),
        || async {
            match api.create(&PostParams::default(), &issuer).await {
                Err(kube::Error::Api(status)) if status.code == 422 => Some(status.message),
                Err(kube::Error::Api(status)) if status.code == 404 => None,
                other => panic!("expected a 422 Invalid, got {other:?}"),
            }
        },
    )
    .await;
    assert!(
        refusal.contains("a ClusterSasIssuer needs spec.policy"),
        "{refusal}"
    );
}

/// The namespaced install cannot read cluster-scoped issuers: a grant naming one is told so
/// (not a raw 403), and the operator never tried to watch them (its only 403 is that GET).
#[tokio::test]
async fn a_grant_naming_a_cluster_issuer_under_the_namespaced_install_is_told_it_needs_the_cluster_install()
 {
    let (client, watched) = namespace("ns-install").await;
    let operator_ns = common::test_namespace(&client, "ns-install-operator").await;
    let yaml = crate::runtime::rendered_namespaced_install(&operator_ns, &watched);
    let mut apply = common::control_plane()
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl apply");
    {
        use std::io::Write as _;
        let mut stdin = apply.stdin.take().unwrap();
        stdin.write_all(yaml.as_bytes()).unwrap();
    }
    let applied = apply.wait_with_output().unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply of the namespaced install failed:\n{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let user = format!("system:serviceaccount:{operator_ns}:sas-operator");
    let kubeconfig = common::control_plane()
        .service_account_kubeconfig(&operator_ns, "sas-operator")
        .await;
    let _operator = Operator::spawn(
        &format!("{watched}-namespaced"),
        &kubeconfig,
        &["--namespace", &watched],
        &[
            ("SAS_OPERATOR_LEADER_ELECTION", "false"),
            ("SAS_OPERATOR_METRICS_ADDRESS", "127.0.0.1:0"),
        ],
    );
    let grant: SasGrant = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": "platform-reader"},
        "spec": {
            "issuerRef": {"kind": "ClusterSasIssuer", "name": "platform"},
            "resource": {"container": {"name": "data"}},
            "permissions": "r",
        }
    }))
    .unwrap();
    create_grant(&client, &watched, &grant).await;
    let shown = wait_ready(
        &client,
        &watched,
        "platform-reader",
        "False",
        "ClusterIssuersNeedClusterInstall",
    )
    .await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(message.contains("namespaced install"), "{message}");
    assert!(
        message.contains("use a SasIssuer of this namespace"),
        "{message}"
    );
    let forbidden: Vec<String> = audit::events()
        .into_iter()
        .filter(|e| e.username() == user && e.code() == Some(403))
        .map(|e| format!("{} {}", e.verb, e.resource().unwrap_or_default()))
        .collect();
    assert!(
        !forbidden.is_empty(),
        "the GET of the ClusterSasIssuer was refused"
    );
    assert!(
        forbidden
            .iter()
            .all(|request| request == "get clustersasissuers"),
        "the namespaced install was refused more than the issuer's GET: {forbidden:?}"
    );
}

/// A ServiceAccount of `ns` bound there to the built-in ClusterRole `role`, and its client.
async fn bound_to(client: &Client, ns: &str, role: &str) -> Client {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": format!("{role}-user")}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("create the ServiceAccount");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{role}-user")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": format!("{role}-user"), "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind the ClusterRole");
    common::control_plane()
        .service_account_client(ns, &format!("{role}-user"))
        .await
}

/// A dry-run create (authorized like a real one, stores nothing): Ok, or the HTTP code.
async fn may_create<K>(api: &Api<K>, object: &K) -> Result<(), u16>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.code),
        Err(other) => panic!("dry-run create failed: {other}"),
    }
}

/// deploy/'s aggregated ClusterRoles: the built-in `edit` role creates SasGrants but not
/// SasIssuers (a SasIssuer signs with the namespace's keys: an admin's decision), `admin`
/// creates both, `view` reads both and creates neither.
#[tokio::test]
async fn the_built_in_edit_role_creates_grants_but_not_issuers_and_view_reads_both() {
    let (client, ns) = namespace("user-roles").await;
    install_deploy_directory();
    let editor = bound_to(&client, &ns, "edit").await;
    let admin = bound_to(&client, &ns, "admin").await;
    let viewer = bound_to(&client, &ns, "view").await;
    let grant = grant("g", json!({"container": {"name": "data"}}), "r", json!({}));
    let issuer: SasIssuer = serde_json::from_value(json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasIssuer",
        "metadata": {"name": "team"},
        "spec": {
            "storageAccount": {"name": "acct"},
            "accountKey": {"secretRef": {"name": "keys"}},
        }
    }))
    .unwrap();
    let grants = |client: &Client| Api::<SasGrant>::namespaced(client.clone(), &ns);
    let issuers = |client: &Client| Api::<SasIssuer>::namespaced(client.clone(), &ns);
    // The aggregation controller fills the built-in roles shortly after the roles appear.
    wait_for(
        "edit to include sasgrants and admin sasissuers",
        Duration::from_secs(30),
        || async {
            let edit = may_create(&grants(&editor), &grant).await.is_ok();
            let admin = may_create(&issuers(&admin), &issuer).await.is_ok();
            (edit && admin).then_some(())
        },
    )
    .await;
    assert_eq!(
        may_create(&issuers(&editor), &issuer).await,
        Err(403),
        "edit may create a SasIssuer"
    );
    assert_eq!(may_create(&grants(&admin), &grant).await, Ok(()));
    for (what, result) in [
        (
            "list sasgrants",
            grants(&viewer).list(&Default::default()).await.map(|_| ()),
        ),
        (
            "list sasissuers",
            issuers(&viewer).list(&Default::default()).await.map(|_| ()),
        ),
        (
            "list sasissuers as edit",
            issuers(&editor).list(&Default::default()).await.map(|_| ()),
        ),
    ] {
        assert!(result.is_ok(), "{what}: {result:?}");
    }
    assert_eq!(may_create(&grants(&viewer), &grant).await, Err(403));
    assert_eq!(may_create(&issuers(&viewer), &issuer).await, Err(403));
}
