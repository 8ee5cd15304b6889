//! Hostile grants: secrets. See tests/hostile.rs.
//!
//! A grant's author may name any Secret of their namespace as the key (a database password),
//! and anyone who may edit the target Secret may try to steer the operator through it. The
//! operator signs only with Secrets opted in by label that hold a 64-byte account key, and
//! trusts only the token in a target Secret it wrote (its `se`, under a key-derived MAC).

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use sas_operator::crd::SasGrant;
use sas_operator::sas::{self, AccountKey, Resource, SasParams, SigningKey};
use serde_json::json;

use crate::{common, operator::*};

/// How long a grant in an unrelated namespace may take to become Ready while the hostile
/// grants are being handled (a cold start of a sign-and-write takes well under a second).
const PROMPTLY: Duration = Duration::from_secs(10);

/// How long the operator may take to notice and repair a tampered target Secret: the Secret
/// watch triggers the reconcile, so seconds, not the renewal time hours away.
const AT_ONCE: Duration = Duration::from_secs(10);

/// The operator under deploy/ RBAC watching the hostile namespace and a tenant's, with its
/// admin server on a known address. Returns the operator and the admin base URL.
async fn operator_for(log_name: &str, namespaces: &[&str]) -> (Operator, String) {
    let address = format!("127.0.0.1:{}", free_local_port());
    let operator =
        Operator::under_deploy_rbac(log_name, namespaces, &["--metrics-address", &address]).await;
    (operator, format!("http://{address}"))
}

/// A normal grant in the tenant's namespace, created now: it must be Ready within
/// [`PROMPTLY`] whatever the hostile namespace holds.
async fn assert_tenant_ready_promptly(client: &Client, tenant: &str) {
    let azurite = common::azurite();
    create_secret(
        client,
        tenant,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    let started = Instant::now();
    create_grant(
        client,
        tenant,
        &grant(
            "tenant",
            json!({"container": {"name": "tenant"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    let api = Api::<SasGrant>::namespaced(client.clone(), tenant);
    wait_for("the tenant's grant to be Ready", PROMPTLY, || async {
        let found = api.get("tenant").await.ok()?;
        (ready_of(&found) == Some(("True".into(), "TokenValid".into()))).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < PROMPTLY, "the tenant's grant took {took:?}");
}

/// The Ready condition's message.
fn ready_message(grant: &SasGrant) -> String {
    grant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Every Event in `ns`, as JSON text (to grep for values that must never appear).
async fn events_text(client: &Client, ns: &str) -> String {
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list Events");
    serde_json::to_string(&events.items).expect("Events serialize")
}

/// Waits for an Event about `grant` with `reason` whose note contains `needle`.
async fn wait_for_event(client: &Client, ns: &str, grant: &str, reason: &str, needle: &str) {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let what = format!("a {reason} Event for {grant} saying {needle:?}");
    wait_for(&what, Duration::from_secs(10), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(grant)
                    && e.note.as_deref().is_some_and(|note| note.contains(needle))
            })
            .then_some(())
    })
    .await;
}

/// Asserts `value` (and its base64) appears nowhere the operator reports to: its log, the
/// grant's status, the namespace's Events.
async fn assert_never_reported(
    operator: &Operator,
    client: &Client,
    ns: &str,
    grant: &SasGrant,
    value: &str,
) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    operator.assert_logs_free_of(&[value, &encoded]);
    let status = serde_json::to_string(&grant.status).expect("status serializes");
    let events = events_text(client, ns).await;
    for (place, text) in [("status", &status), ("Events", &events)] {
        assert!(!text.contains(value), "the value appears in {place}");
        assert!(!text.contains(&encoded), "its base64 appears in {place}");
    }
}

/// A grant signing with `secret`/`key` in place of the Azurite key Secret.
fn grant_with_key(name: &str, secret: &str, key: &str) -> SasGrant {
    let mut grant = grant(
        name,
        json!({"container": {"name": "data"}}),
        "rl",
        json!({}),
    );
    grant
        .spec
        .storage_account
        .as_mut()
        .unwrap()
        .key_secret_ref
        .name = secret.into();
    grant
        .spec
        .storage_account
        .as_mut()
        .unwrap()
        .key_secret_ref
        .key = Some(key.into());
    grant
}

#[tokio::test]
async fn an_unlabelled_password_secret_is_refused_and_the_error_says_how_to_opt_in() {
    let (client, ns) = namespace("hostile-unlabelled").await;
    let (_, tenant) = namespace("hostile-unlabelled-tenant").await;
    let (operator, _) = operator_for("hostile-secrets-unlabelled", &[&ns, &tenant]).await;
    create_secret(
        &client,
        &ns,
        &unlabelled_secret("db-credentials", &[("password", "hunter22")]),
    )
    .await;
    create_grant(
        &client,
        &ns,
        &grant_with_key("steal", "db-credentials", "password"),
    )
    .await;

    let refused = wait_ready(&client, &ns, "steal", "False", "KeySecretNotLabelled").await;
    let how = "kubectl label secret db-credentials sas-operator.io/signing-key=true";
    assert!(
        ready_message(&refused).contains(how),
        "{}",
        ready_message(&refused)
    );
    wait_for_event(&client, &ns, "steal", "KeySecretNotLabelled", how).await;
    assert_tenant_ready_promptly(&client, &tenant).await;

    assert!(
        get_secret(&client, &ns, "steal").await.is_none(),
        "no target Secret is written"
    );
    let refused = Api::<SasGrant>::namespaced(client.clone(), &ns)
        .get("steal")
        .await
        .expect("GET grant");
    assert!(refused.status.as_ref().unwrap().token_hash.is_none());
    assert_never_reported(&operator, &client, &ns, &refused, "hunter22").await;
}

#[tokio::test]
async fn a_labelled_secret_that_is_not_a_64_byte_account_key_is_refused() {
    let (client, ns) = namespace("hostile-shortkey").await;
    let (_, tenant) = namespace("hostile-shortkey-tenant").await;
    let (operator, _) = operator_for("hostile-secrets-shortkey", &[&ns, &tenant]).await;
    // Valid base64 of 32 bytes: a key, but not an Azure account key.
    let short_key =
        base64::engine::general_purpose::STANDARD.encode("not-an-account-key-but-32-bytes!");
    create_secret(
        &client,
        &ns,
        &key_secret("app-password", &[("key1", &short_key)]),
    )
    .await;
    create_grant(
        &client,
        &ns,
        &grant_with_key("short", "app-password", "key1"),
    )
    .await;

    let refused = wait_ready(&client, &ns, "short", "False", "KeyNotAccountKey").await;
    assert!(
        ready_message(&refused).contains("64 bytes"),
        "{}",
        ready_message(&refused)
    );
    wait_for_event(&client, &ns, "short", "KeyNotAccountKey", "app-password").await;
    assert_tenant_ready_promptly(&client, &tenant).await;

    assert!(get_secret(&client, &ns, "short").await.is_none());
    assert_never_reported(&operator, &client, &ns, &refused, &short_key).await;
    assert_never_reported(
        &operator,
        &client,
        &ns,
        &refused,
        "not-an-account-key-but-32-bytes!",
    )
    .await;
}

/// The expiry a token carries itself: its `se`, percent-decoded.
fn se_of(token: &str) -> jiff::Timestamp {
    let value = token
        .split('&')
        .find_map(|pair| pair.strip_prefix("se="))
        .expect("the token has an se");
    value
        .replace("%3A", ":")
        .parse()
        .expect("se is an RFC 3339 time")
}

/// The value of `metric{namespace,name}` in the operator's /metrics.
async fn grant_metric(admin: &str, metric: &str, ns: &str, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{metric}{{namespace=\"{ns}\",name=\"{name}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

/// Edits data entries of a Secret as someone other than the operator would.
async fn edit_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let encoded: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(key, value)| {
            let value = base64::engine::general_purpose::STANDARD.encode(value);
            (key.to_string(), json!(value))
        })
        .collect();
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&json!({ "data": encoded })),
        )
        .await
        .expect("edit the target Secret");
}

/// A Ready grant "app" in `ns`; returns its token.
async fn ready_app_grant(client: &Client, ns: &str) -> String {
    let azurite = common::azurite();
    create_secret(
        client,
        ns,
        &key_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    create_grant(
        client,
        ns,
        &grant(
            "app",
            json!({"container": {"name": "data"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    wait_ready(client, ns, "app", "True", "TokenValid").await;
    data(&get_secret(client, ns, "app").await.unwrap(), "sasToken")
}

/// After tampering: within [`AT_ONCE`] the Secret holds a token that is none of `forged`
/// whose `expiresAt` is its own `se` again; the grant's status and the expiry metric show that
/// `se`, and a Rotated Event names SecretTampered. Returns the token. (The new token may equal
/// the original when both were signed within one second; the Event proves the re-signing.)
async fn assert_re_signed_at_once(
    client: &Client,
    admin: &str,
    ns: &str,
    forged: &[&str],
    tampered_at: Instant,
) -> String {
    let token = wait_for("the tampered Secret to be re-signed", AT_ONCE, || async {
        let secret = get_secret(client, ns, "app").await?;
        let token = data(&secret, "sasToken");
        let expires_at: jiff::Timestamp = data(&secret, "expiresAt").parse().ok()?;
        (!forged.contains(&token.as_str()) && expires_at == se_of(&token)).then_some(token)
    })
    .await;
    let took = tampered_at.elapsed();
    assert!(took < AT_ONCE, "re-signing took {took:?}");
    let expiry = se_of(&token);
    assert!(
        expiry < jiff::Timestamp::now() + jiff::SignedDuration::from_hours(9),
        "the new token's se {expiry} is the grant's validity (8h) from now"
    );

    let grants = Api::<SasGrant>::namespaced(client.clone(), ns);
    wait_for("status.expiresAt to be the token's se", AT_ONCE, || async {
        let grant = grants.get("app").await.ok()?;
        let shown: jiff::Timestamp = grant.status?.expires_at?.parse().ok()?;
        (shown == expiry).then_some(())
    })
    .await;
    let seconds = expiry.as_second() as f64;
    wait_for(
        "the expiry metric to be the token's se",
        AT_ONCE,
        || async {
            let exported = grant_metric(
                admin,
                "sas_operator_grant_expiration_timestamp_seconds",
                ns,
                "app",
            )
            .await?;
            (exported == seconds).then_some(())
        },
    )
    .await;
    wait_for_event(client, ns, "app", "Rotated", "SecretTampered").await;
    token
}

#[tokio::test]
async fn an_expires_at_edited_to_9999_is_re_signed_at_once_and_never_believed() {
    let (client, ns) = namespace("hostile-expiresat").await;
    let (_, tenant) = namespace("hostile-expiresat-tenant").await;
    let (operator, admin) = operator_for("hostile-secrets-expiresat", &[&ns, &tenant]).await;
    let original = ready_app_grant(&client, &ns).await;

    let tampered_at = Instant::now();
    edit_secret(
        &client,
        &ns,
        "app",
        &[("expiresAt", "9999-12-31T23:59:59Z")],
    )
    .await;
    let token = assert_re_signed_at_once(&client, &admin, &ns, &[], tampered_at).await;

    assert_tenant_ready_promptly(&client, &tenant).await;
    operator.assert_logs_free_of(&[&common::azurite().key, &original, &token]);
}

#[tokio::test]
async fn a_swapped_in_token_is_re_signed_at_once_even_with_every_field_made_consistent() {
    let (client, ns) = namespace("hostile-swap").await;
    let (_, tenant) = namespace("hostile-swap-tenant").await;
    let (operator, admin) = operator_for("hostile-secrets-swap", &[&ns, &tenant]).await;
    let original = ready_app_grant(&client, &ns).await;

    // A valid token for the same container, with more permissions and an expiry in 2099, and
    // every other field rewritten to agree with it: only the MAC can tell.
    let azurite = common::azurite();
    let forged = sas::sign(
        &SasParams {
            account_name: azurite.account.clone(),
            resource: Resource::Container {
                container: "data".into(),
            },
            permissions: Some("racwdl".into()),
            start: None,
            expiry: Some("2099-01-01T00:00:00Z".parse().unwrap()),
            ip: None,
            protocol: Some(sas::Protocol::HttpsAndHttp),
            version: None,
            policy_id: None,
            encryption_scope: None,
            response_headers: Default::default(),
            delegation: Default::default(),
        },
        &SigningKey::Account(AccountKey::from_base64(&azurite.key).unwrap()),
    )
    .expect("sign the forged token")
    .token;
    let url = format!("{}/data?{forged}", azurite.blob_endpoint);
    let connection_string = format!(
        "BlobEndpoint={};SharedAccessSignature={forged}",
        azurite.blob_endpoint
    );
    let tampered_at = Instant::now();
    edit_secret(
        &client,
        &ns,
        "app",
        &[
            ("sasToken", &forged),
            ("sasUrl", &url),
            ("connectionString", &connection_string),
            ("expiresAt", "2099-01-01T00:00:00Z"),
        ],
    )
    .await;
    let token = assert_re_signed_at_once(&client, &admin, &ns, &[&forged], tampered_at).await;

    assert_tenant_ready_promptly(&client, &tenant).await;
    operator.assert_logs_free_of(&[&azurite.key, &original, &forged, &token]);
}

#[tokio::test]
async fn the_opt_in_command_from_the_error_makes_the_grant_ready_within_seconds() {
    let (client, ns) = namespace("hostile-optin").await;
    let (operator, _) = operator_for("hostile-secrets-optin", &[&ns]).await;
    let azurite = common::azurite();
    create_secret(
        &client,
        &ns,
        &unlabelled_secret("azurite-keys", &[("key1", &azurite.key)]),
    )
    .await;
    create_grant(
        &client,
        &ns,
        &grant(
            "app",
            json!({"container": {"name": "data"}}),
            "rl",
            json!({}),
        ),
    )
    .await;
    let refused = wait_ready(&client, &ns, "app", "False", "KeySecretNotLabelled").await;
    assert!(get_secret(&client, &ns, "app").await.is_none());

    // Run exactly the command the message gives.
    let message = ready_message(&refused);
    let command = message
        .split("run: ")
        .nth(1)
        .expect("the message ends with the command to run");
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[..2], ["kubectl", "label"], "{command}");
    let output = common::control_plane()
        .kubectl()
        .args(&args[1..])
        .output()
        .expect("run kubectl label");
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let labelled_at = Instant::now();
    let ready = Api::<SasGrant>::namespaced(client.clone(), &ns);
    wait_for("the grant to be Ready once labelled", PROMPTLY, || async {
        let found = ready.get("app").await.ok()?;
        (ready_of(&found) == Some(("True".into(), "TokenValid".into()))).then_some(())
    })
    .await;
    assert!(labelled_at.elapsed() < PROMPTLY);
    let token = data(&get_secret(&client, &ns, "app").await.unwrap(), "sasToken");
    operator.assert_logs_free_of(&[&azurite.key, &token]);
}
