//! Runs the real `sas-operator run` binary against the test control plane, and helpers that
//! the controller's end-to-end tests share (grants, key Secrets, waiting, Azurite requests).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use sas_operator::crd::SasGrant;
use sas_operator::sas::{self, AccountKey, Resource, SasParams, SigningKey};
use serde_json::json;

use crate::common;

/// The operator binary running as a child process; killed when dropped (also on panic).
pub struct Operator {
    child: Child,
    pub log_path: PathBuf,
}

impl Operator {
    /// Starts the operator watching `namespace` with the admin kubeconfig.
    pub fn start(namespace: &str) -> Operator {
        Operator::start_with(namespace, &common::control_plane().kubeconfig_path, &[])
    }

    pub fn start_with(
        namespace: &str,
        kubeconfig: &std::path::Path,
        extra_args: &[&str],
    ) -> Operator {
        let mut args = vec!["--namespace", namespace];
        args.extend_from_slice(extra_args);
        Operator::spawn(
            namespace,
            kubeconfig,
            &args,
            &[
                ("SAS_OPERATOR_LEADER_ELECTION", "false"),
                ("SAS_OPERATOR_METRICS_ADDRESS", "127.0.0.1:0"),
            ],
        )
    }

    /// Starts `sas-operator run <args>` with debug logging, the test emulators' storage
    /// endpoints allowed ([`storage_endpoints_to_allow`], unless `env` sets
    /// [`ALLOW_STORAGE_ENDPOINTS_ENV`]) plus `env`, and nothing else preset:
    /// without `--namespace` it watches all namespaces, and leader election and the admin
    /// address take their defaults unless `args` or `env` set them. Logs go to
    /// `operator-logs/<log_name>.log`, so give concurrent instances distinct names.
    pub fn spawn(
        log_name: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let log_path = log_dir.join(format!("{log_name}.log"));
        let log = std::fs::File::create(&log_path).expect("create operator log");
        let allowed = match env
            .iter()
            .find(|(name, _)| *name == ALLOW_STORAGE_ENDPOINTS_ENV)
        {
            Some((_, given)) => given.to_string(),
            None => storage_endpoints_to_allow(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sas-operator"))
            .arg("run")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("SAS_OPERATOR_LOG_LEVEL", "debug")
            .env(ALLOW_STORAGE_ENDPOINTS_ENV, allowed)
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sas-operator run");
        Operator { child, log_path }
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, without releasing anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the operator");
        self.child.wait().expect("reap the operator");
    }

    /// SIGTERM: asks for a graceful shutdown.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits until the process exits, or panics after `timeout`.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the operator") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator (pid {}) did not exit within {timeout:?}",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's resident memory now and at its peak (`VmRSS`, `VmHWM` of
    /// /proc/<pid>/status), in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the operator's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Asserts that none of `secrets` (keys, tokens, signatures) appears in the logs.
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(
            !logs.is_empty(),
            "the operator wrote no logs at {}",
            self.log_path.display()
        );
        for (index, secret) in secrets.iter().enumerate() {
            assert!(!secret.is_empty());
            assert!(
                !logs.contains(secret),
                "secret #{index} appears in {}",
                self.log_path.display()
            );
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator's environment variable for `--allow-storage-endpoint`.
pub const ALLOW_STORAGE_ENDPOINTS_ENV: &str = "SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS";

/// The storage endpoints every operator the tests start may use, comma-separated: the
/// `host:port`s of this binary's Azurite (started here if it is not yet), and of its HTTPS
/// Azurite if it was started before the operator (the keyless tests' helpers start it first).
/// Set in one place: `Operator::spawn`, and the Deployment the node tests patch.
pub fn storage_endpoints_to_allow() -> String {
    let mut host_ports = common::azurite().host_ports().to_vec();
    if let Some(oauth) = common::azurite::azurite_oauth_if_started() {
        host_ports.extend(oauth.azurite.host_ports());
    }
    host_ports.join(",")
}

/// `kubectl apply -k deploy/`: CRD, namespace, ServiceAccount, RBAC, Deployment, Service.
/// No nodes or scheduler exist, so the Deployment makes no pods; the tests run the binary.
pub fn install_deploy_directory() {
    // One at a time: two concurrent first applies race to create the same objects
    // (AlreadyExists).
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let output = common::control_plane()
        .kubectl()
        .arg("apply")
        .arg("-k")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy"))
        .output()
        .expect("run kubectl apply -k deploy/");
    assert!(
        output.status.success(),
        "kubectl apply -k deploy/ failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespace and ServiceAccount `deploy/` runs the operator as.
pub const DEPLOY_NAMESPACE: &str = "sas-operator";
pub const DEPLOY_SERVICE_ACCOUNT: &str = "sas-operator";

impl Operator {
    /// Starts the operator as `deploy/` runs it: under its ServiceAccount's token, so with
    /// exactly `deploy/base/rbac.yaml`'s permissions, watching `namespaces` without leader election
    /// (plus `extra_args`). Installs `deploy/` first (idempotent).
    pub async fn under_deploy_rbac(
        log_name: &str,
        namespaces: &[&str],
        extra_args: &[&str],
    ) -> Operator {
        Operator::under_deploy_rbac_with_env(log_name, namespaces, extra_args, &[]).await
    }

    /// [`Operator::under_deploy_rbac`] with `env` besides (which may set
    /// [`ALLOW_STORAGE_ENDPOINTS_ENV`]); with no namespaces it watches all of them.
    pub async fn under_deploy_rbac_with_env(
        log_name: &str,
        namespaces: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        install_deploy_directory();
        let kubeconfig = common::control_plane()
            .service_account_kubeconfig(DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT)
            .await;
        let watched = namespaces.join(",");
        let mut args = Vec::new();
        if !namespaces.is_empty() {
            args.extend(["--namespace", watched.as_str()]);
        }
        args.extend_from_slice(extra_args);
        let mut all_env = vec![
            ("SAS_OPERATOR_LEADER_ELECTION", "false"),
            ("SAS_OPERATOR_METRICS_ADDRESS", "127.0.0.1:0"),
            // As the Deployment's downward API tells it (its namespace is the kubeconfig's).
            ("SAS_OPERATOR_SERVICE_ACCOUNT", DEPLOY_SERVICE_ACCOUNT),
        ];
        all_env.extend_from_slice(env);
        Operator::spawn(log_name, &kubeconfig, &args, &all_env)
    }
}

/// Lends ServiceAccount `ns/service_account` to `deploy/`'s operator as a namespace admin does:
/// a Role allowing `create` on `serviceaccounts/token` for that ServiceAccount only, and a
/// RoleBinding of it to the operator's ServiceAccount (what `ServiceAccountNotBound`'s
/// commands create).
pub async fn lend_service_account(client: &Client, ns: &str, service_account: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let name = format!("sas-operator-token-{service_account}");
    let apply = PatchParams::apply("sas-operator-tests").force();
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns},
        "rules": [{
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [service_account],
            "verbs": ["create"],
        }],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(&name, &apply, &Patch::Apply(&role))
        .await
        .expect("apply the Role that lends the ServiceAccount");
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": DEPLOY_SERVICE_ACCOUNT, "namespace": DEPLOY_NAMESPACE}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(&name, &apply, &Patch::Apply(&binding))
        .await
        .expect("apply the RoleBinding that lends the ServiceAccount");
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for `--metrics-address`).
pub fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Installs the committed CRD (server-side apply) and waits until it is served.
pub async fn install_crd(client: &Client) {
    static CRD: OnceLock<serde_json::Value> = OnceLock::new();
    let crd = CRD.get_or_init(|| {
        let yaml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/sasgrant.yaml"))
                .unwrap();
        serde_saphyr::from_str(&yaml).expect("crds/sasgrant.yaml parses")
    });
    let api = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone());
    api.patch(
        "sasgrants.sas-operator.io",
        &PatchParams::apply("sas-operator-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("apply the SasGrant CRD");
    let grants = Api::<SasGrant>::all(client.clone());
    wait_for(
        "the SasGrant CRD to be served",
        Duration::from_secs(30),
        || async { grants.list_metadata(&Default::default()).await.ok() },
    )
    .await;
}

/// A namespace with the CRD installed and a client; the operator is started separately.
pub async fn namespace(prefix: &str) -> (Client, String) {
    let client = common::control_plane().client().await;
    install_crd(&client).await;
    let ns = common::test_namespace(&client, prefix).await;
    (client, ns)
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A key Secret opted in as a signing key (`sas-operator.io/signing-key: "true"`).
pub fn key_secret(name: &str, entries: &[(&str, &str)]) -> Secret {
    let mut secret = unlabelled_secret(name, entries);
    secret.metadata.labels = Some(
        [(
            sas_operator::credentials::LABEL_SIGNING_KEY.to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    secret
}

/// A Secret without the signing-key label: the operator must refuse to sign with it.
pub fn unlabelled_secret(name: &str, entries: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

pub async fn create_secret(client: &Client, ns: &str, secret: &Secret) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), secret)
        .await
        .expect("create Secret");
}

/// A grant for the Azurite dev account; `spec` entries override the defaults.
pub fn grant(
    name: &str,
    resource: serde_json::Value,
    permissions: &str,
    spec: serde_json::Value,
) -> SasGrant {
    let azurite = common::azurite();
    let mut value = json!({
        "apiVersion": "sas-operator.io/v1alpha1",
        "kind": "SasGrant",
        "metadata": {"name": name},
        "spec": {
            "storageAccount": {
                "name": azurite.account,
                "keySecretRef": {"name": "azurite-keys"},
                "endpoints": {
                    "blob": azurite.blob_endpoint,
                    "queue": azurite.queue_endpoint,
                    "table": azurite.table_endpoint,
                },
            },
            "resource": resource,
            "permissions": permissions,
            "protocol": "https,http",
        }
    });
    if let serde_json::Value::Object(extra) = spec {
        for (key, field) in extra {
            value["spec"][key] = field;
        }
    }
    serde_json::from_value(value).expect("a valid SasGrant")
}

pub async fn create_grant(client: &Client, ns: &str, grant: &SasGrant) {
    Api::<SasGrant>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), grant)
        .await
        .expect("create SasGrant");
}

/// The Ready condition's (status, reason), if any.
pub fn ready_of(grant: &SasGrant) -> Option<(String, String)> {
    let condition = grant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((condition.status.clone(), condition.reason.clone()))
}

/// Waits until the grant's Ready condition has `status` and `reason`.
pub async fn wait_ready(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> SasGrant {
    let api = Api::<SasGrant>::namespaced(client.clone(), ns);
    let what = format!("SasGrant {ns}/{name} to be Ready={status} ({reason})");
    wait_for(&what, Duration::from_secs(30), || async {
        let grant = api.get(name).await.ok()?;
        (ready_of(&grant) == Some((status.to_string(), reason.to_string()))).then_some(grant)
    })
    .await
}

/// A data entry of a Secret as text.
pub fn data(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().expect("Secret has data")[key];
    String::from_utf8(bytes.0.clone()).expect("utf-8")
}

pub async fn get_secret(client: &Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("GET Secret")
}

/// An all-powerful account SAS for setting up Azurite fixtures, signed by our own library.
pub fn admin_token(account: &str, key: &str) -> String {
    let params = SasParams {
        account_name: account.into(),
        resource: Resource::Account {
            services: "bqt".into(),
            resource_types: "sco".into(),
        },
        permissions: Some("rwdlacup".into()),
        start: None,
        expiry: Some(Timestamp::now() + jiff::SignedDuration::from_hours(1)),
        ip: None,
        protocol: Some(sas::Protocol::HttpsAndHttp),
        version: None,
        policy_id: None,
        encryption_scope: None,
        response_headers: Default::default(),
        delegation: Default::default(),
    };
    let key = AccountKey::from_base64(key).expect("Azurite key is base64");
    sas::sign(&params, &SigningKey::Account(key))
        .expect("admin SAS signs")
        .token
}

/// Minimal Azurite REST calls the tests need.
pub struct Storage {
    http: reqwest::Client,
}

pub const API_VERSION: &str = "2025-11-05";

impl Default for Storage {
    fn default() -> Self {
        Storage {
            http: reqwest::Client::new(),
        }
    }
}

impl Storage {
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<(String, &str)>,
    ) -> (u16, String) {
        self.send_with(method, url, body, &[]).await
    }

    /// Table service calls: JSON without OData metadata (the service refuses Atom).
    pub async fn send_table(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<String>,
    ) -> (u16, String) {
        let headers = [
            ("accept", "application/json;odata=nometadata"),
            ("dataserviceversion", "3.0"),
        ];
        self.send_with(method, url, body.map(|b| (b, "application/json")), &headers)
            .await
    }

    async fn send_with(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<(String, &str)>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, url)
            .header("x-ms-version", API_VERSION);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((body, content_type)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("Azurite answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Lists a container's blobs with `token`: (status, XML listing).
    pub async fn list_blobs(
        &self,
        blob_endpoint: &str,
        container: &str,
        token: &str,
    ) -> (u16, String) {
        let url = format!("{blob_endpoint}/{container}?restype=container&comp=list&{token}");
        self.send(reqwest::Method::GET, url, None).await
    }

    pub async fn create_container(&self, blob_endpoint: &str, container: &str, token: &str) {
        let (status, _) = self
            .send(
                reqwest::Method::PUT,
                format!("{blob_endpoint}/{container}?restype=container&{token}"),
                None,
            )
            .await;
        assert!(status == 201 || status == 409, "create container: {status}");
    }

    pub async fn put_blob(&self, blob_endpoint: &str, path: &str, body: &str, token: &str) -> u16 {
        self.http
            .put(format!("{blob_endpoint}/{path}?{token}"))
            .header("x-ms-version", API_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body.to_string())
            .send()
            .await
            .expect("Azurite answers")
            .status()
            .as_u16()
    }

    pub async fn create_queue(&self, queue_endpoint: &str, queue: &str, token: &str) {
        let (status, _) = self
            .send(
                reqwest::Method::PUT,
                format!("{queue_endpoint}/{queue}?{token}"),
                None,
            )
            .await;
        assert!(status == 201 || status == 204, "create queue: {status}");
    }

    pub async fn create_table(&self, table_endpoint: &str, table: &str, token: &str) {
        let body = json!({"TableName": table}).to_string();
        let (status, text) = self
            .send_table(
                reqwest::Method::POST,
                format!("{table_endpoint}/Tables?{token}"),
                Some(body),
            )
            .await;
        assert!(
            status == 201 || status == 204 || status == 409,
            "create table: {status} {text}"
        );
    }
}

/// The Python interpreter of the Azure SDK venv that `hack/oracles.sh` manages.
pub fn oracle_python() -> String {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/oracles.sh"))
                .arg("--print-env")
                .output()
                .expect("run hack/oracles.sh");
            assert!(
                output.status.success(),
                "hack/oracles.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|line| line.strip_prefix("SAS_ORACLE_PYTHON=").map(str::to_string))
                .expect("hack/oracles.sh prints SAS_ORACLE_PYTHON")
        })
        .clone()
}
