//! Live tests: tokens from `sas-operator sign` against Azurite, the local Azure Storage
//! emulator, for every kind Azurite validates (account, container, blob, snapshot, queue,
//! table, stored access policy, and blob user delegation over HTTPS with `--oauth basic`).
//!
//! For each kind: a request the permissions allow succeeds, and a tampered signature, an
//! expired token, a missing permission and plain http on an https-only token each get 403
//! (Azurite compares `spr` with the request's scheme, so the http endpoint shows that).
//!
//! Uses the shared harness in `tests/common/`: `common::azurite()` and
//! `common::azurite_oauth()` (with its `bearer_token()`).

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::blocking::{Client, RequestBuilder};
use sha2::Sha256;

/// The `x-ms-version` our requests speak (within what the pinned Azurite serves).
const REQUEST_VERSION: &str = "2025-05-05";
const TABLE_REQUEST_VERSION: &str = "2019-02-02";

// ---------------------------------------------------------------------------------------------
// Signing through the CLI

/// Token lifetimes relative to now.
#[derive(Clone, Copy)]
enum Lifetime {
    Valid,
    Expired,
}

struct Sign<'a> {
    kind: &'a str,
    args: Vec<String>,
}

impl<'a> Sign<'a> {
    fn new(kind: &'a str) -> Self {
        let azurite = common::azurite();
        Sign {
            kind,
            args: vec![format!("--account-name={}", azurite.account)],
        }
    }

    fn arg(mut self, name: &str, value: &str) -> Self {
        self.args.push(format!("{name}={value}"));
        self
    }

    fn lifetime(self, lifetime: Lifetime) -> Self {
        let now = jiff::Timestamp::now().as_second();
        let (start, expiry) = match lifetime {
            Lifetime::Valid => (now - 300, now + 3600),
            Lifetime::Expired => (now - 7200, now - 3600),
        };
        self.arg("--start", &rfc3339(start))
            .arg("--expiry", &rfc3339(expiry))
    }

    /// Signs with the Azurite account key, passed through the environment as a user would.
    fn token(self) -> String {
        self.token_with_key(Some(&common::azurite().key.to_string()))
    }

    fn token_with_key(self, account_key: Option<&str>) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sas-operator"));
        command
            .arg("sign")
            .arg(self.kind)
            .args(&self.args)
            .env_remove("AZURE_STORAGE_KEY");
        if let Some(key) = account_key {
            command.env("AZURE_STORAGE_KEY", key);
        }
        let output = command.output().expect("run sas-operator");
        assert!(
            output.status.success(),
            "sas-operator sign {} {:?} failed: {}",
            self.kind,
            self.args,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }
}

fn rfc3339(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The same token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let (before, sig) = token.rsplit_once("sig=").expect("token has a sig");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
    format!("{before}sig={}", sig.into_iter().collect::<String>())
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}x{}x{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn client() -> Client {
    Client::builder().build().unwrap()
}

struct Response {
    status: u16,
    body: String,
    snapshot: Option<String>,
}

fn send(request: RequestBuilder) -> Response {
    let response = request.send().expect("request to Azurite");
    let status = response.status().as_u16();
    let snapshot = response
        .headers()
        .get("x-ms-snapshot")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().unwrap_or_default();
    Response {
        status,
        body,
        snapshot,
    }
}

fn blob_url(path: &str, query: &str, token: &str) -> String {
    format!(
        "{}/{path}?{query}{}{token}",
        common::azurite().blob_endpoint,
        if query.is_empty() { "" } else { "&" }
    )
}

fn queue_url(path: &str, query: &str, token: &str) -> String {
    format!(
        "{}/{path}?{query}{}{token}",
        common::azurite().queue_endpoint,
        if query.is_empty() { "" } else { "&" }
    )
}

fn table_url(path: &str, token: &str) -> String {
    format!("{}/{path}?{token}", common::azurite().table_endpoint)
}

fn blob_get(url: &str) -> Response {
    send(client().get(url).header("x-ms-version", REQUEST_VERSION))
}

fn blob_put(url: &str, body: &str) -> Response {
    send(
        client()
            .put(url)
            .header("x-ms-version", REQUEST_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body.to_string()),
    )
}

fn queue_request(method: reqwest::Method, url: &str, body: Option<&str>) -> Response {
    let mut request = client()
        .request(method, url)
        .header("x-ms-version", REQUEST_VERSION);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    send(request)
}

fn table_request(method: reqwest::Method, url: &str, body: Option<String>) -> Response {
    let mut request = client()
        .request(method, url)
        .header("x-ms-version", TABLE_REQUEST_VERSION)
        .header("Accept", "application/json;odata=nometadata");
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    send(request)
}

// ---------------------------------------------------------------------------------------------
// Fixtures, created with a broad account SAS from our own CLI (itself under test)

fn admin_token(services: &str) -> String {
    Sign::new("account")
        .arg("--services", services)
        .arg("--resource-types", "sco")
        .arg("--permissions", "rwdlacup")
        .arg("--protocol", "https,http")
        .lifetime(Lifetime::Valid)
        .token()
}

fn create_container() -> String {
    let container = unique("c");
    let created = send(
        client()
            .put(blob_url(&container, "restype=container", &admin_token("b")))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_eq!(created.status, 201, "create container: {}", created.body);
    container
}

fn upload_blob(container: &str, blob: &str, content: &str) {
    let put = blob_put(
        &blob_url(&format!("{container}/{blob}"), "", &admin_token("b")),
        content,
    );
    assert_eq!(put.status, 201, "upload blob: {}", put.body);
}

fn create_queue_with_message() -> String {
    let queue = unique("q");
    let admin = admin_token("q");
    let created = queue_request(reqwest::Method::PUT, &queue_url(&queue, "", &admin), None);
    assert_eq!(created.status, 201, "create queue: {}", created.body);
    let message = queue_request(
        reqwest::Method::POST,
        &queue_url(&format!("{queue}/messages"), "", &admin),
        Some("<QueueMessage><MessageText>aGVsbG8=</MessageText></QueueMessage>"),
    );
    assert_eq!(message.status, 201, "put message: {}", message.body);
    queue
}

fn create_table_with_entity() -> String {
    let table = unique("t");
    let admin = admin_token("t");
    let created = table_request(
        reqwest::Method::POST,
        &table_url("Tables", &admin),
        Some(format!(r#"{{"TableName":"{table}"}}"#)),
    );
    assert_eq!(created.status, 201, "create table: {}", created.body);
    let inserted = table_request(
        reqwest::Method::POST,
        &table_url(&table, &admin),
        Some(r#"{"PartitionKey":"p1","RowKey":"r1","Greeting":"hello"}"#.to_string()),
    );
    assert_eq!(inserted.status, 201, "insert entity: {}", inserted.body);
    table
}

/// Shared Key authorization for the one request no SAS may make: Set Container ACL.
fn shared_key_put(url: &str, body: &str) -> Response {
    let azurite = common::azurite();
    let parsed = reqwest::Url::parse(url).unwrap();
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut query: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect();
    query.sort();
    let mut resource = format!("/{}{}", azurite.account, parsed.path());
    for (name, value) in query {
        resource.push_str(&format!("\n{name}:{value}"));
    }
    let string_to_sign = format!(
        "PUT\n\n\n{}\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{REQUEST_VERSION}\n{resource}",
        body.len()
    );
    let key = BASE64.decode(&azurite.key).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    send(
        client()
            .put(url)
            .header("x-ms-date", date)
            .header("x-ms-version", REQUEST_VERSION)
            .header(
                "Authorization",
                format!("SharedKey {}:{signature}", azurite.account),
            )
            .body(body.to_string()),
    )
}

// ---------------------------------------------------------------------------------------------
// One scenario per kind: how to sign for it and a request that needs `granted` permissions.

/// Signs for a scenario: (permissions, lifetime, protocol) -> token.
type SignFn = Box<dyn Fn(&str, Lifetime, Option<&str>) -> String>;

struct Scenario {
    sign: SignFn,
    /// Permission letters the probe needs, and letters that do not allow it.
    granted: &'static str,
    lacking: &'static str,
    probe: Box<dyn Fn(&str) -> Response>,
    success: u16,
}

impl Scenario {
    fn token(&self, permissions: &str) -> String {
        (self.sign)(permissions, Lifetime::Valid, Some("https,http"))
    }
}

fn signer(kind: &'static str, resource_args: Vec<(&'static str, String)>) -> SignFn {
    Box::new(move |permissions, lifetime, protocol| {
        let mut sign = Sign::new(kind)
            .arg("--permissions", permissions)
            .lifetime(lifetime);
        for (name, value) in &resource_args {
            sign = sign.arg(name, value);
        }
        if let Some(protocol) = protocol {
            sign = sign.arg("--protocol", protocol);
        }
        sign.token()
    })
}

fn account_scenario() -> Scenario {
    Scenario {
        sign: signer(
            "account",
            vec![("--services", "b".into()), ("--resource-types", "s".into())],
        ),
        granted: "l",
        lacking: "rwdac",
        probe: Box::new(|token| blob_get(&blob_url("", "comp=list", token))),
        success: 200,
    }
}

fn container_scenario() -> Scenario {
    let container = create_container();
    upload_blob(&container, "listed.txt", "listed");
    Scenario {
        sign: signer("container", vec![("--container-name", container.clone())]),
        granted: "l",
        lacking: "racwd",
        probe: Box::new(move |token| {
            blob_get(&blob_url(&container, "restype=container&comp=list", token))
        }),
        success: 200,
    }
}

fn blob_scenario() -> Scenario {
    let container = create_container();
    upload_blob(&container, "dir/read me.txt", "blob content");
    let blob_args = vec![
        ("--container-name", container.clone()),
        ("--name", "dir/read me.txt".to_string()),
    ];
    Scenario {
        sign: signer("blob", blob_args),
        granted: "r",
        lacking: "acwd",
        probe: Box::new(move |token| {
            blob_get(&blob_url(
                &format!("{container}/dir/read%20me.txt"),
                "",
                token,
            ))
        }),
        success: 200,
    }
}

/// A blob with a snapshot taken before it was overwritten.
fn snapshot_fixture() -> (String, String) {
    let container = create_container();
    upload_blob(&container, "snapped.txt", "old content");
    let snapshot = send(
        client()
            .put(blob_url(
                &format!("{container}/snapped.txt"),
                "comp=snapshot",
                &admin_token("b"),
            ))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_eq!(snapshot.status, 201, "snapshot: {}", snapshot.body);
    upload_blob(&container, "snapped.txt", "new content");
    (
        container,
        snapshot
            .snapshot
            .expect("snapshot response has x-ms-snapshot"),
    )
}

fn snapshot_scenario() -> Scenario {
    let (container, snapshot) = snapshot_fixture();
    let args = vec![
        ("--container-name", container.clone()),
        ("--name", "snapped.txt".to_string()),
        ("--snapshot", snapshot.clone()),
    ];
    Scenario {
        sign: signer("blob", args),
        granted: "r",
        lacking: "d",
        probe: Box::new(move |token| {
            let query = format!("snapshot={}", percent_encode(&snapshot));
            blob_get(&blob_url(
                &format!("{container}/snapped.txt"),
                &query,
                token,
            ))
        }),
        success: 200,
    }
}

fn queue_scenario() -> Scenario {
    let queue = create_queue_with_message();
    Scenario {
        sign: signer("queue", vec![("--queue-name", queue.clone())]),
        granted: "r",
        lacking: "aup",
        probe: Box::new(move |token| {
            queue_request(
                reqwest::Method::GET,
                &queue_url(&format!("{queue}/messages"), "peekonly=true", token),
                None,
            )
        }),
        success: 200,
    }
}

fn table_scenario() -> Scenario {
    let table = create_table_with_entity();
    Scenario {
        sign: signer("table", vec![("--table-name", table.clone())]),
        granted: "r",
        lacking: "aud",
        probe: Box::new(move |token| {
            table_request(
                reqwest::Method::GET,
                &table_url(&format!("{table}()"), token),
                None,
            )
        }),
        success: 200,
    }
}

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn assert_status(response: &Response, expected: u16, what: &str) {
    assert_eq!(
        response.status, expected,
        "{what}: Azurite answered {} {}",
        response.status, response.body
    );
}

/// Error codes Azurite gives for a token it cannot authenticate (it varies by service).
const AUTHENTICATION_FAILED: &[&str] = &["AuthenticationFailed", "AuthorizationFailure"];
const PERMISSION_MISMATCH: &[&str] = &["AuthorizationPermissionMismatch"];
const PROTOCOL_MISMATCH: &[&str] = &["AuthorizationProtocolMismatch"];

/// A 403 for the stated reason, so a 403 for some other cause cannot pass the test.
fn assert_forbidden(response: &Response, codes: &[&str], what: &str) {
    assert_status(response, 403, what);
    assert!(
        codes.iter().any(|code| response.body.contains(code)),
        "{what}: expected error code {codes:?}, Azurite answered {}",
        response.body
    );
}

/// The five behaviours every kind must show, as one test each.
macro_rules! kind_tests {
    ($module:ident, $scenario:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn token_with_the_needed_permission_is_accepted() {
                let s = $scenario();
                let response = (s.probe)(&s.token(s.granted));
                assert_status(&response, s.success, "valid token");
            }

            #[test]
            fn tampered_signature_is_rejected_with_403() {
                let s = $scenario();
                assert_forbidden(
                    &(s.probe)(&tampered(&s.token(s.granted))),
                    AUTHENTICATION_FAILED,
                    "tampered signature",
                );
            }

            #[test]
            fn expired_token_is_rejected_with_403() {
                let s = $scenario();
                let token = (s.sign)(s.granted, Lifetime::Expired, None);
                assert_forbidden(&(s.probe)(&token), AUTHENTICATION_FAILED, "expired token");
            }

            #[test]
            fn token_without_the_needed_permission_is_rejected_with_403() {
                let s = $scenario();
                assert_forbidden(
                    &(s.probe)(&s.token(s.lacking)),
                    PERMISSION_MISMATCH,
                    "missing permission",
                );
            }

            #[test]
            fn https_only_token_over_http_is_rejected_with_403() {
                let s = $scenario();
                let token = (s.sign)(s.granted, Lifetime::Valid, Some("https"));
                assert_forbidden(
                    &(s.probe)(&token),
                    PROTOCOL_MISMATCH,
                    "https-only token over http",
                );
            }
        }
    };
}

kind_tests!(account, account_scenario);
kind_tests!(container, container_scenario);
kind_tests!(blob, blob_scenario);
kind_tests!(snapshot, snapshot_scenario);
kind_tests!(queue, queue_scenario);
kind_tests!(table, table_scenario);

// ---------------------------------------------------------------------------------------------
// Reads and writes beyond the probes

#[test]
fn account_sas_creates_a_container_and_uploads_and_lists_a_blob() {
    let token = Sign::new("account")
        .arg("--services", "b")
        .arg("--resource-types", "co")
        .arg("--permissions", "lcwr")
        .lifetime(Lifetime::Valid)
        .token();
    let container = unique("acct");
    let created = send(
        client()
            .put(blob_url(&container, "restype=container", &token))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_status(&created, 201, "create container");
    assert_status(
        &blob_put(&blob_url(&format!("{container}/a.txt"), "", &token), "abc"),
        201,
        "upload",
    );
    let listed = blob_get(&blob_url(&container, "restype=container&comp=list", &token));
    assert_status(&listed, 200, "list blobs");
    assert!(
        listed.body.contains("<Name>a.txt</Name>"),
        "listing misses the blob: {}",
        listed.body
    );
}

#[test]
fn account_sas_for_queue_service_adds_a_message() {
    let queue = create_queue_with_message();
    let token = Sign::new("account")
        .arg("--services", "q")
        .arg("--resource-types", "o")
        .arg("--permissions", "a")
        .lifetime(Lifetime::Valid)
        .token();
    let url = queue_url(&format!("{queue}/messages"), "", &token);
    let added = queue_request(
        reqwest::Method::POST,
        &url,
        Some("<QueueMessage><MessageText>eA==</MessageText></QueueMessage>"),
    );
    assert_status(&added, 201, "add message with account SAS");
}

#[test]
fn account_sas_for_table_service_queries_entities() {
    let table = create_table_with_entity();
    let token = Sign::new("account")
        .arg("--services", "t")
        .arg("--resource-types", "co") // Azurite files Query Entities under resource type c
        .arg("--permissions", "r")
        .lifetime(Lifetime::Valid)
        .token();
    let queried = table_request(
        reqwest::Method::GET,
        &table_url(&format!("{table}()"), &token),
        None,
    );
    assert_status(&queried, 200, "query entities with account SAS");
    assert!(
        queried.body.contains("hello"),
        "entity missing: {}",
        queried.body
    );
}

#[test]
fn blob_sas_reads_the_blob_content() {
    let s = blob_scenario();
    let response = (s.probe)(&s.token("r"));
    assert_status(&response, 200, "read blob");
    assert_eq!(response.body, "blob content");
}

#[test]
fn blob_sas_with_create_and_write_uploads_a_blob_with_unicode_name() {
    let container = create_container();
    let name = "new dir/ü 日本 + more.txt";
    let token = Sign::new("blob")
        .arg("--container-name", &container)
        .arg("--name", name)
        .arg("--permissions", "cw")
        .lifetime(Lifetime::Valid)
        .token();
    let path = format!(
        "{container}/{}",
        name.split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/")
    );
    assert_status(
        &blob_put(&blob_url(&path, "", &token), "written"),
        201,
        "upload with blob SAS",
    );
    let read = Sign::new("blob")
        .arg("--container-name", &container)
        .arg("--name", name)
        .arg("--permissions", "r")
        .lifetime(Lifetime::Valid)
        .token();
    assert_eq!(blob_get(&blob_url(&path, "", &read)).body, "written");
}

#[test]
fn snapshot_sas_reads_the_snapshot_not_the_current_blob() {
    let s = snapshot_scenario();
    let response = (s.probe)(&s.token("r"));
    assert_status(&response, 200, "read snapshot");
    assert_eq!(response.body, "old content");
}

#[test]
fn queue_sas_with_add_puts_a_message() {
    let queue = create_queue_with_message();
    let token = Sign::new("queue")
        .arg("--queue-name", &queue)
        .arg("--permissions", "a")
        .lifetime(Lifetime::Valid)
        .token();
    let url = queue_url(&format!("{queue}/messages"), "", &token);
    let added = queue_request(
        reqwest::Method::POST,
        &url,
        Some("<QueueMessage><MessageText>eQ==</MessageText></QueueMessage>"),
    );
    assert_status(&added, 201, "add message with queue SAS");
}

#[test]
fn table_sas_with_add_inserts_an_entity_and_read_returns_it() {
    let table = create_table_with_entity();
    let token = Sign::new("table")
        .arg("--table-name", &table)
        .arg("--permissions", "ar")
        .lifetime(Lifetime::Valid)
        .token();
    let inserted = table_request(
        reqwest::Method::POST,
        &table_url(&table, &token),
        Some(r#"{"PartitionKey":"p2","RowKey":"r2","Greeting":"inserted via sas"}"#.to_string()),
    );
    assert_status(&inserted, 201, "insert with table SAS");
    let queried = table_request(
        reqwest::Method::GET,
        &table_url(&format!("{table}()"), &token),
        None,
    );
    assert!(
        queried.body.contains("inserted via sas"),
        "entity missing: {}",
        queried.body
    );
}

// ---------------------------------------------------------------------------------------------
// Stored access policy

fn set_container_policy(container: &str, id: &str, permissions: &str) {
    let now = jiff::Timestamp::now().as_second();
    let acl = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><SignedIdentifiers><SignedIdentifier><Id>{id}</Id>\
         <AccessPolicy><Start>{}</Start><Expiry>{}</Expiry><Permission>{permissions}</Permission>\
         </AccessPolicy></SignedIdentifier></SignedIdentifiers>",
        rfc3339(now - 300),
        rfc3339(now + 3600)
    );
    let set = shared_key_put(&blob_url(container, "restype=container&comp=acl", ""), &acl);
    assert_status(&set, 200, "set container ACL");
}

#[test]
fn container_sas_naming_only_a_stored_policy_gets_the_policy_permissions() {
    let container = create_container();
    upload_blob(&container, "policy.txt", "via policy");
    set_container_policy(&container, "read-list", "rl");
    let token = Sign::new("container")
        .arg("--container-name", &container)
        .arg("--policy-name", "read-list")
        .token();
    let listed = blob_get(&blob_url(&container, "restype=container&comp=list", &token));
    assert_status(&listed, 200, "list with policy token");
    assert!(listed.body.contains("<Name>policy.txt</Name>"));
    let read = blob_get(&blob_url(&format!("{container}/policy.txt"), "", &token));
    assert_eq!(read.body, "via policy");
}

#[test]
fn container_sas_naming_a_policy_without_the_permission_is_rejected_with_403() {
    let container = create_container();
    set_container_policy(&container, "read-only", "r");
    let token = Sign::new("container")
        .arg("--container-name", &container)
        .arg("--policy-name", "read-only")
        .token();
    let listed = blob_get(&blob_url(&container, "restype=container&comp=list", &token));
    assert_forbidden(&listed, PERMISSION_MISMATCH, "list with a read-only policy");
}

// ---------------------------------------------------------------------------------------------
// User delegation SAS over HTTPS (`--oauth basic`)

// User delegation SAS are signed at the CLI's default (newest) sv: the pinned Azurite (3.37)
// knows the 2026-04-06 string-to-sign (3.35 stops at 2025-07-05). It signs saoid, suoid, scid,
// srh and srq as empty, so tokens carrying those cannot be checked live; the differential
// tests prove them against the SDKs.

fn oauth_client() -> Client {
    let oauth = common::azurite_oauth();
    let pem = std::fs::read(&oauth.ca_cert_pem_path).expect("read Azurite's CA certificate");
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

fn bearer(request: RequestBuilder) -> RequestBuilder {
    request
        .header(
            "Authorization",
            format!("Bearer {}", common::azurite_oauth().bearer_token()),
        )
        .header("x-ms-version", REQUEST_VERSION)
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

/// Fetches a user delegation key and writes it as the CLI's `--user-delegation-key` JSON.
fn user_delegation_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let oauth = common::azurite_oauth();
    let now = jiff::Timestamp::now().as_second();
    let body = format!(
        "<KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        rfc3339(now - 300),
        rfc3339(now + 6 * 3600)
    );
    let url = format!(
        "{}/?restype=service&comp=userdelegationkey",
        oauth.blob_endpoint
    );
    let response = send(bearer(oauth_client().post(url)).body(body));
    assert_status(&response, 200, "Get User Delegation Key");
    let field =
        |tag| xml_field(&response.body, tag).unwrap_or_else(|| panic!("key response lacks {tag}"));
    let mut key = serde_json::json!({
        "signedOid": field("SignedOid"),
        "signedTid": field("SignedTid"),
        "signedStart": field("SignedStart"),
        "signedExpiry": field("SignedExpiry"),
        "signedService": field("SignedService"),
        "signedVersion": field("SignedVersion"),
        "value": field("Value"),
    });
    if let Some(tid) = xml_field(&response.body, "SignedDelegatedUserTid") {
        key["signedDelegatedUserTid"] = tid.into();
    }
    let path = dir.join("user-delegation-key.json");
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

fn oauth_blob_fixture() -> (String, String) {
    let oauth = common::azurite_oauth();
    let container = unique("ud");
    let created = send(bearer(oauth_client().put(format!(
        "{}/{container}?restype=container",
        oauth.blob_endpoint
    ))));
    assert_status(&created, 201, "create container with bearer token");
    let put = send(
        bearer(oauth_client().put(format!("{}/{container}/delegated.txt", oauth.blob_endpoint)))
            .header("x-ms-blob-type", "BlockBlob")
            .body("delegated content"),
    );
    assert_status(&put, 201, "upload with bearer token");
    let url = format!("{}/{container}/delegated.txt", oauth.blob_endpoint);
    (container, url)
}

fn user_delegation_token(key_file: &std::path::Path, container: &str, permissions: &str) -> String {
    Sign::new("blob")
        .arg("--user-delegation-key", &key_file.display().to_string())
        .arg("--container-name", container)
        .arg("--name", "delegated.txt")
        .arg("--permissions", permissions)
        .arg("--protocol", "https")
        .lifetime(Lifetime::Valid)
        .token_with_key(None)
}

#[test]
fn user_delegation_sas_from_azurite_key_reads_blob_over_https() {
    let scratch = tempfile::tempdir().unwrap();
    let key_file = user_delegation_key_file(scratch.path());
    let (container, url) = oauth_blob_fixture();
    let token = user_delegation_token(&key_file, &container, "r");
    let response = send(
        oauth_client()
            .get(format!("{url}?{token}"))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_status(&response, 200, "read with user delegation SAS");
    assert_eq!(response.body, "delegated content");
}

#[test]
fn user_delegation_sas_with_tampered_signature_is_rejected_with_403() {
    let scratch = tempfile::tempdir().unwrap();
    let key_file = user_delegation_key_file(scratch.path());
    let (container, url) = oauth_blob_fixture();
    let token = tampered(&user_delegation_token(&key_file, &container, "r"));
    let response = send(
        oauth_client()
            .get(format!("{url}?{token}"))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_forbidden(
        &response,
        AUTHENTICATION_FAILED,
        "tampered user delegation SAS",
    );
}

#[test]
fn user_delegation_sas_without_read_is_rejected_with_403() {
    let scratch = tempfile::tempdir().unwrap();
    let key_file = user_delegation_key_file(scratch.path());
    let (container, url) = oauth_blob_fixture();
    let token = user_delegation_token(&key_file, &container, "w");
    let response = send(
        oauth_client()
            .get(format!("{url}?{token}"))
            .header("x-ms-version", REQUEST_VERSION),
    );
    assert_forbidden(
        &response,
        PERMISSION_MISMATCH,
        "user delegation SAS without r",
    );
}
