//! A real control plane (etcd, kube-apiserver, kube-controller-manager) per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::process::{Served, serve};

pub struct ControlPlane {
    /// Admin kubeconfig (a token in group system:masters).
    pub kubeconfig_path: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// PEM bundle that verifies the apiserver's serving certificate.
    pub ca_cert_path: PathBuf,
    kubectl_path: PathBuf,
    audit_log_path: PathBuf,
    served: Served,
}

/// The control plane of this test binary, started on first use (takes a few seconds).
pub fn control_plane() -> &'static ControlPlane {
    static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
    CONTROL_PLANE.get_or_init(|| {
        let served = serve("control-plane");
        ControlPlane {
            kubeconfig_path: served.var("KUBECONFIG").into(),
            server: served.var("TESTENV_APISERVER").into(),
            ca_cert_path: served.var("TESTENV_APISERVER_CA").into(),
            kubectl_path: served.var("TESTENV_KUBECTL").into(),
            audit_log_path: served.var("TESTENV_AUDIT_LOG").into(),
            served,
        }
    })
}

impl ControlPlane {
    /// A new admin client. Make one per test: a client must not outlive the runtime that
    /// created it, and each `#[tokio::test]` has its own runtime.
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig_path).await
    }

    /// A token for `namespace/name` minted by TokenRequest (valid for an hour).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let response = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {namespace}/{name}: {e}"));
        response
            .status
            .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name} returned no status"))
            .token
    }

    /// A kubeconfig file authenticating as ServiceAccount `namespace/name`, for running the
    /// operator binary under exactly that ServiceAccount's RBAC. The ServiceAccount must exist.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let token = self.service_account_token(namespace, name).await;
        let path = self.served.component_dir.join(format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let ca = std::fs::read(&self.ca_cert_path).expect("read the apiserver CA bundle");
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: testenv\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: {user}\n    namespace: {namespace}\n\
             current-context: testenv\n",
            server = self.server
        );
        std::fs::write(&path, text).expect("write the ServiceAccount kubeconfig");
        path
    }

    /// A client authenticating as ServiceAccount `namespace/name` (which must exist).
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let path = self.service_account_kubeconfig(namespace, name).await;
        client_from_kubeconfig(&path).await
    }

    /// `kubectl` (same version as the server) preset with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl_path);
        command.env("KUBECONFIG", &self.kubeconfig_path);
        command
    }

    /// The KEY=VALUE file `hack/testenv.sh` wrote for this control plane (a node joins it).
    pub fn env_file(&self) -> PathBuf {
        self.served.component_dir.join("env")
    }

    /// The apiserver's audit log: one JSON event per line, at Metadata level (user, verb,
    /// resource, namespace, name, response code) for every request.
    pub fn apiserver_audit_log_path(&self) -> &Path {
        &self.audit_log_path
    }
}

async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("load kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("build a kube client")
}

/// Creates a namespace named `<prefix>-<random>` and returns its name. Give every test its own.
pub async fn test_namespace(client: &Client, prefix: &str) -> String {
    let mut prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(50)
        .collect();
    prefix = prefix.trim_matches('-').to_string();
    if prefix.is_empty() {
        prefix = "test".into();
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: Some([("sas-operator.io/test".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("create test namespace {prefix}-*: {e}"));
    created.metadata.name.expect("created namespace has a name")
}
