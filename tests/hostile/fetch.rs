//! Hostile issuers: credential fetches. See tests/hostile.rs.
//!
//! A tenant names a host of their own as the blob endpoint of a workload identity issuer (an
//! administrator listed it, or it is an Azure host that misbehaves): it answers late, never
//! answers, or streams an endless body. The operator's workers, memory and other tenants'
//! grants must not notice.

use std::time::Duration;

use kube::{Api, Client};
use sas_operator::crd::{SasGrant, SasIssuer};
use sas_operator::issuer::keys::fetch_backoff;

use crate::common::entra::{AppRegistration, service_account_subject};
use crate::common::hostile_endpoint::{HostileEndpoint, Mode};
use crate::endpoints::{
    create_service_account, identity_issuer, issued_grant, token_requests_by_operator,
};
use crate::{common, operator::*};

/// An HTTPS client that trusts the hostile endpoint's CA, as the operator does with
/// `--extra-ca-file`.
fn client_trusting(endpoint: &HostileEndpoint) -> reqwest::Client {
    let pem = std::fs::read(&endpoint.ca_cert_path).expect("read the hostile endpoint's CA");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_hostile_endpoint_captures_slows_stalls_and_floods_as_asked() {
    let capture = HostileEndpoint::start(Mode::Capture).await;
    let client = client_trusting(&capture);
    let response = client
        .post(capture.url("/?restype=service&comp=userdelegationkey"))
        .bearer_auth("captured-token")
        .body("<KeyInfo/>")
        .send()
        .await
        .expect("the capture endpoint answers");
    assert_eq!(response.status(), 403);
    let requests = capture.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer captured-token")
    );

    let slow = HostileEndpoint::start(Mode::Slow(Duration::from_secs(1))).await;
    let started = std::time::Instant::now();
    let answered = client_trusting(&slow).get(slow.url("/")).send().await;
    assert!(answered.is_ok() && started.elapsed() >= Duration::from_secs(1));

    let never = HostileEndpoint::start(Mode::Never).await;
    let stalled = client_trusting(&never).get(never.url("/")).send().await;
    assert!(stalled.unwrap_err().is_timeout());
    assert_eq!(never.requests().len(), 1, "the request was read");

    let flood = HostileEndpoint::start(Mode::Flood {
        bytes: 1 << 30,
        declared: true,
    })
    .await;
    let mut response = client_trusting(&flood)
        .get(flood.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.content_length(), Some(1 << 30));
    let mut read = 0;
    while read < 8 << 20 {
        read += response.chunk().await.unwrap().expect("more body").len();
    }
    drop(response);
    assert!(flood.bytes_sent() >= 8 << 20);
}

/// `--allow-storage-endpoint` for this binary's emulators and `endpoints`.
fn allowing(endpoints: &[&HostileEndpoint]) -> String {
    let mut allowed = storage_endpoints_to_allow();
    for endpoint in endpoints {
        allowed.push(',');
        allowed.push_str(&endpoint.host_port);
    }
    allowed
}

/// The operator under deploy/'s RBAC watching `namespaces`, trusting the Entra emulator,
/// Azurite's HTTPS instance and the hostile endpoints, and allowed to use them; `authority`
/// overrides the Entra emulator as the authority host.
async fn start_operator(
    log_name: &str,
    namespaces: &[&str],
    hostile: &[&HostileEndpoint],
    authority: Option<&str>,
    extra_args: &[&str],
) -> Operator {
    let entra = common::entra();
    let oauth = common::azurite_oauth();
    let mut cas = vec![
        entra.ca_cert_pem_path.display().to_string(),
        oauth.ca_cert_pem_path.display().to_string(),
    ];
    cas.extend(hostile.iter().map(|e| e.ca_cert_path.display().to_string()));
    let cas = cas.join(",");
    let mut args = vec![
        "--authority-host",
        authority.unwrap_or(&entra.authority_host),
        "--extra-ca-file",
        &cas,
    ];
    args.extend_from_slice(extra_args);
    let allowed = allowing(hostile);
    Operator::under_deploy_rbac_with_env(
        log_name,
        namespaces,
        &args,
        &[(ALLOW_STORAGE_ENDPOINTS_ENV, &allowed)],
    )
    .await
}

/// A namespace whose ServiceAccount `storage-signer` is lent to the operator, and an Entra
/// application federating `federated` (`storage-signer` itself unless told otherwise).
async fn tenant_with_identity(
    prefix: &str,
    federated: Option<&str>,
) -> (Client, String, AppRegistration) {
    let (client, ns) = namespace(prefix).await;
    create_service_account(&client, &ns, "storage-signer").await;
    lend_service_account(&client, &ns, "storage-signer").await;
    let subject = service_account_subject(&ns, federated.unwrap_or("storage-signer"));
    let app = common::entra().register_app(&subject).await;
    (client, ns, app)
}

async fn create_issuer(client: &Client, ns: &str, issuer: &SasIssuer) {
    Api::<SasIssuer>::namespaced(client.clone(), ns)
        .create(&Default::default(), issuer)
        .await
        .expect("create the SasIssuer");
}

/// The grants of `ns` whose Ready condition is (`status`, `reason`).
async fn grants_showing(client: &Client, ns: &str, status: &str, reason: &str) -> usize {
    Api::<SasGrant>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|g| ready_of(g) == Some((status.into(), reason.into())))
                .count()
        })
        .unwrap_or(0)
}

/// The most fetches an issuer may start within `window` of its first: one, then one per
/// backoff step that fits.
fn attempts_within(window: Duration) -> u64 {
    let (mut attempts, mut waited) = (1, Duration::ZERO);
    while waited + fetch_backoff(attempts as u32) <= window {
        waited += fetch_backoff(attempts as u32);
        attempts += 1;
    }
    attempts
}

#[tokio::test]
async fn a_failing_issuer_with_thirty_grants_makes_one_token_request_and_one_entra_call_per_backoff_step()
 {
    // The application federates another ServiceAccount: every exchange is refused.
    let (client, ns, app) = tenant_with_identity("fetch-backoff", Some("someone-else")).await;
    let _operator = start_operator("hostile-fetch-backoff", &[&ns], &[], None, &[]).await;
    for index in 0..30 {
        create_grant(&client, &ns, &issued_grant(&format!("g{index}"), "storage")).await;
    }
    let started = std::time::Instant::now();
    let blob = common::azurite_oauth().blob_endpoint.clone();
    create_issuer(&client, &ns, &identity_issuer("storage", &ns, &app, &blob)).await;
    common::eventually(
        "all 30 grants to back off with their issuer",
        Duration::from_secs(60),
        || async {
            (grants_showing(&client, &ns, "False", "IssuerBackingOff").await == 30).then_some(())
        },
    )
    .await;
    // Long enough for a few backoff steps (5 s, 10 s, 20 s).
    tokio::time::sleep(Duration::from_secs(40).saturating_sub(started.elapsed())).await;
    let window = started.elapsed();
    let allowed = attempts_within(window);
    let entra_calls = common::entra().stats().await.for_client(&app.client_id);
    let token_requests = common::eventually(
        "the audit log to catch up",
        Duration::from_secs(5),
        || async {
            let seen = token_requests_by_operator(&ns) as u64;
            (seen >= entra_calls.failed).then_some(seen)
        },
    )
    .await;
    println!(
        "failing issuer, 30 grants: {} Entra calls and {token_requests} TokenRequests in {window:?} (at most {allowed} backoff steps)",
        entra_calls.failed
    );
    assert_eq!(entra_calls.succeeded, 0);
    assert!(
        (2..=allowed).contains(&entra_calls.failed),
        "{} Entra calls in {window:?} (at most {allowed} backoff steps, and it must retry)",
        entra_calls.failed
    );
    assert!(
        (2..=allowed).contains(&token_requests),
        "{token_requests} TokenRequests in {window:?} (at most {allowed})"
    );
    let shown = wait_ready(&client, &ns, "g0", "False", "IssuerBackingOff").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(message.contains("NoFederatedCredential"), "{message}");
}

/// A 1 GiB body, as Get User Delegation Key's answer (declared) and as Entra's (streamed
/// until the connection ends): each refused at 64 KiB, the operator's peak RSS under 64 MiB.
#[tokio::test]
async fn an_endpoint_streaming_a_gibibyte_is_refused_and_costs_the_operator_no_memory() {
    const GIB: u64 = 1 << 30;
    const PEAK_LIMIT_KIB: u64 = 64 * 1024;
    let declared = HostileEndpoint::start(Mode::Flood {
        bytes: GIB,
        declared: true,
    })
    .await;
    let streamed = HostileEndpoint::start(Mode::Flood {
        bytes: GIB,
        declared: false,
    })
    .await;

    // As the blob endpoint: the exchange succeeds, the key request meets the flood.
    let (client, ns, app) = tenant_with_identity("fetch-flood", None).await;
    let as_storage = start_operator(
        "hostile-fetch-flood-storage",
        &[&ns],
        &[&declared],
        None,
        &[],
    )
    .await;
    create_issuer(
        &client,
        &ns,
        &identity_issuer("storage", &ns, &app, &declared.url("/")),
    )
    .await;
    create_grant(&client, &ns, &issued_grant("data", "storage")).await;
    let shown = wait_ready(&client, &ns, "data", "False", "IssuerBackingOff").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(
        message.contains("ResponseTooLarge") && message.contains("65536 bytes"),
        "{message}"
    );
    assert!(get_secret(&client, &ns, "data").await.is_none());

    // As the Entra authority: the exchange's answer is the flood.
    let (client, ns, app) = tenant_with_identity("fetch-flood-entra", None).await;
    let authority = streamed.url("");
    let as_entra = start_operator(
        "hostile-fetch-flood-entra",
        &[&ns],
        &[&streamed],
        Some(authority.trim_end_matches('/')),
        &[],
    )
    .await;
    let blob = common::azurite_oauth().blob_endpoint.clone();
    create_issuer(&client, &ns, &identity_issuer("storage", &ns, &app, &blob)).await;
    create_grant(&client, &ns, &issued_grant("data", "storage")).await;
    let shown = wait_ready(&client, &ns, "data", "False", "IssuerBackingOff").await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(
        message.contains("ResponseTooLarge") && message.contains("Entra token endpoint"),
        "{message}"
    );

    for (operator, endpoint) in [(&as_storage, &declared), (&as_entra, &streamed)] {
        let (rss, peak) = operator.rss_kib();
        println!(
            "{}: RSS {rss} KiB, peak {peak} KiB, the endpoint sent {} KiB",
            operator.log_path.display(),
            endpoint.bytes_sent() / 1024
        );
        assert!(peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB");
        assert!(
            endpoint.bytes_sent() < 64 << 20,
            "the operator kept reading"
        );
        operator.assert_logs_free_of(&["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    }
}

/// A user delegation grant in `ns` naming ClusterSasIssuer `issuer`, valid `validity`.
fn cluster_issued_grant(name: &str, issuer: &str, validity: &str) -> SasGrant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "issuerRef": {"kind": "ClusterSasIssuer", "name": issuer},
            "resource": {"container": {"name": "data"}},
            "permissions": "rl",
            "validity": validity,
        }
    }))
    .expect("a valid SasGrant")
}

async fn token_of(client: &Client, ns: &str, name: &str) -> String {
    data(
        &get_secret(client, ns, name)
            .await
            .expect("the grant's Secret"),
        "sasToken",
    )
}

#[tokio::test]
async fn ten_edits_of_one_tenants_grant_request_no_key_and_re_sign_no_other_tenants_grant() {
    // The platform's namespace holds the lent ServiceAccount; two tenants share the issuer.
    let (client, platform, app) = tenant_with_identity("fetch-keys-platform", None).await;
    let tenant_a = common::test_namespace(&client, "fetch-keys-a").await;
    let tenant_b = common::test_namespace(&client, "fetch-keys-b").await;
    let oauth = common::azurite_oauth();
    let _operator = start_operator(
        "hostile-fetch-keys",
        &[&tenant_a, &tenant_b],
        &[],
        None,
        &["--cluster-resource-namespace", &platform],
    )
    .await;
    let issuer_name = format!("{platform}-shared");
    let issuer: sas_operator::crd::ClusterSasIssuer = serde_json::from_value(serde_json::json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "ClusterSasIssuer",
        "metadata": {"name": issuer_name},
        "spec": {
            "storageAccount": {"name": oauth.azurite.account, "endpoints": {"blob": oauth.blob_endpoint}},
            "workloadIdentity": {
                "clientId": app.client_id,
                "tenantId": app.tenant_id,
                "serviceAccountName": "storage-signer",
            },
            "allowedNamespaces": {"names": [tenant_a, tenant_b]},
            "policy": {
                "resources": {"container": {"names": ["data"]}},
                "maxPermissions": {"container": "rl"},
                "maxValidity": "200h",
            },
        }
    }))
    .unwrap();
    Api::<sas_operator::crd::ClusterSasIssuer>::all(client.clone())
        .create(&Default::default(), &issuer)
        .await
        .expect("create the ClusterSasIssuer");

    create_grant(
        &client,
        &tenant_b,
        &cluster_issued_grant("other", &issuer_name, "8h"),
    )
    .await;
    wait_ready(&client, &tenant_b, "other", "True", "TokenValid").await;
    let others_token = token_of(&client, &tenant_b, "other").await;
    // The attack: a validity of the key's whole lifetime is refused, not served by a
    // key per reconcile.
    create_grant(
        &client,
        &tenant_a,
        &cluster_issued_grant("week", &issuer_name, "168h"),
    )
    .await;
    let shown = wait_ready(
        &client,
        &tenant_a,
        "week",
        "False",
        "UserDelegationUnsupported",
    )
    .await;
    let message = &shown.status.unwrap().conditions[0].message;
    assert!(message.contains("half the lifetime"), "{message}");

    // The longest validity allowed, edited ten times: each edit re-signs that grant only.
    create_grant(
        &client,
        &tenant_a,
        &cluster_issued_grant("edited", &issuer_name, "84h"),
    )
    .await;
    wait_ready(&client, &tenant_a, "edited", "True", "TokenValid").await;
    let grants = Api::<SasGrant>::namespaced(client.clone(), &tenant_a);
    for edit in 1..=10 {
        let before = token_of(&client, &tenant_a, "edited").await;
        let patch = serde_json::json!({"spec": {"validity": format!("{}h", 84 - edit)}});
        grants
            .patch(
                "edited",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("edit the grant");
        wait_for(
            "the edited grant re-signed",
            Duration::from_secs(30),
            || async {
                let token = data(&get_secret(&client, &tenant_a, "edited").await?, "sasToken");
                (token != before).then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        oauth.user_delegation_key_requests(&app.object_id),
        1,
        "the edits requested user delegation keys"
    );
    let exchanges = common::entra().stats().await.for_client(&app.client_id);
    assert_eq!((exchanges.succeeded, exchanges.failed), (1, 0));
    assert_eq!(
        token_of(&client, &tenant_b, "other").await,
        others_token,
        "the other tenant's grant was re-signed"
    );
}
