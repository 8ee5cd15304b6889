//! The flags of `sas-operator run`: the runtime's configuration. Every flag also reads an
//! environment variable. The command line itself (subcommands) is `cli`'s; nothing here
//! imports from it, so the runtime never depends on the CLI.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct RunConfig {
    /// Log format.
    #[arg(
        long,
        env = "SAS_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "SAS_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Namespace to watch; repeat or comma-separate for several. Empty: all namespaces.
    #[arg(
        long = "namespace",
        env = "SAS_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// How long start times are backdated to absorb clock skew.
    #[arg(long, env = "SAS_OPERATOR_CLOCK_SKEW", default_value = "15m", value_parser = crate::crd::parse_duration)]
    pub clock_skew: std::time::Duration,
    /// Reconciles that may run at once, taken in turns by namespace.
    #[arg(long, env = "SAS_OPERATOR_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Address of the admin server: /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SAS_OPERATOR_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: std::net::SocketAddr,
    /// The longest one reconcile may take before it is abandoned and retried. With leader
    /// election it is also kept at most half the renew deadline, so that a replica that lost
    /// its lease cannot still be writing when another one starts.
    #[arg(long, env = "SAS_OPERATOR_RECONCILE_TIMEOUT", default_value = "5s", value_parser = crate::crd::parse_duration)]
    pub reconcile_timeout: std::time::Duration,
    /// On SIGTERM, how long in-flight reconciles may still run before the process exits
    /// anyway (releasing the Lease then takes at most the renew deadline).
    #[arg(long, env = "SAS_OPERATOR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = crate::crd::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Where `ClusterSasIssuer` credentials (key Secrets, ServiceAccounts) live. Default: the
    /// operator's own namespace (`POD_NAMESPACE`).
    #[arg(long, env = "SAS_OPERATOR_CLUSTER_RESOURCE_NAMESPACE")]
    pub cluster_resource_namespace: Option<String>,
    /// The Microsoft Entra authority host of workload identity issuers, as Azure's SDKs name it.
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = crate::issuer::identity::DEFAULT_AUTHORITY_HOST
    )]
    pub authority_host: String,
    /// PEM CA bundles trusted, besides the system's roots, for the authority host and the
    /// storage endpoints of workload identity issuers (a private cloud's, an emulator's).
    /// Repeat or comma-separate.
    #[arg(long, env = "SAS_OPERATOR_EXTRA_CA_FILE", value_delimiter = ',')]
    pub extra_ca_file: Vec<std::path::PathBuf>,
    /// The lifetime user delegation keys are requested for (Azure allows 7 days); a workload
    /// identity grant is valid at most half of it, so that one key serves new signings for at
    /// least half its life.
    #[arg(long, env = "SAS_OPERATOR_MAX_USER_DELEGATION_KEY_LIFETIME", default_value = "168h", value_parser = crate::crd::parse_duration)]
    pub max_user_delegation_key_lifetime: std::time::Duration,
    /// DNS suffixes of Azure Storage endpoints (comma-separated): a spec's endpoint must be
    /// `https://<account>.<service>.<suffix>` for one of them, unless listed in
    /// `--allow-storage-endpoint`. Add sovereign clouds, e.g.
    /// `core.windows.net,core.chinacloudapi.cn,core.usgovcloudapi.net`.
    #[arg(
        long,
        env = "SAS_OPERATOR_STORAGE_ENDPOINT_SUFFIXES",
        value_delimiter = ',',
        default_value = crate::endpoints::PUBLIC_CLOUD_SUFFIX,
        value_parser = crate::endpoints::parse_suffix
    )]
    pub storage_endpoint_suffixes: Vec<String>,
    /// An exact `host:port` a spec's storage endpoint may name whatever its shape (an
    /// emulator such as Azurite, a private endpoint); repeat or comma-separate. A workload
    /// identity issuer's blob endpoint there receives the storage access token.
    #[arg(
        long = "allow-storage-endpoint",
        env = "SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS",
        value_delimiter = ',',
        value_parser = crate::endpoints::parse_host_port
    )]
    pub allow_storage_endpoints: Vec<String>,
    /// The operator's own ServiceAccount (in a pod: `spec.serviceAccountName` through the
    /// downward API), named in the commands that bind a workload identity issuer's
    /// ServiceAccount to it. Its namespace is `POD_NAMESPACE`, else the client's namespace.
    #[arg(long, env = "SAS_OPERATOR_SERVICE_ACCOUNT")]
    pub operator_service_account: Option<String>,
    /// Leader election on/off, Lease name, namespace, identity and timing of the leader election.
    #[command(flatten)]
    pub lease: Box<crate::leader::LeaseArgs>,
}

impl RunConfig {
    /// The storage endpoints the operator may use (`--storage-endpoint-suffixes`,
    /// `--allow-storage-endpoint`).
    pub fn allowed_endpoints(&self) -> crate::endpoints::AllowedEndpoints {
        crate::endpoints::AllowedEndpoints::new(
            self.storage_endpoint_suffixes.clone(),
            self.allow_storage_endpoints.clone(),
        )
    }

    /// The operator's own ServiceAccount: `--operator-service-account` in `POD_NAMESPACE`,
    /// else in `client_namespace` (the client's: in a pod, the pod's own).
    pub fn operator_account(
        &self,
        client_namespace: &str,
    ) -> crate::issuer::binding::OperatorAccount {
        crate::issuer::binding::OperatorAccount {
            namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|namespace| !namespace.is_empty())
                .or_else(|| Some(client_namespace.to_string())),
            name: self.operator_service_account.clone(),
        }
    }

    /// `--cluster-resource-namespace`, else the operator's own namespace (`POD_NAMESPACE`).
    pub fn cluster_resource_namespace(&self) -> Option<String> {
        self.cluster_resource_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|namespace| !namespace.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::AllowedEndpoints;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        run: RunConfig,
    }

    fn parse(args: &[&str]) -> Result<RunConfig, clap::Error> {
        use clap::Parser;
        let mut argv = vec!["sas-operator"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).map(|flags| flags.run)
    }

    #[test]
    fn storage_endpoints_default_to_the_public_cloud_with_nothing_listed() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.allowed_endpoints(), AllowedEndpoints::default());
    }

    #[test]
    fn suffixes_comma_separate_and_listed_endpoints_repeat_or_comma_separate() {
        let config = parse(&[
            "--storage-endpoint-suffixes=core.windows.net,core.chinacloudapi.cn",
            "--allow-storage-endpoint=127.0.0.1:10000,127.0.0.1:10001",
            "--allow-storage-endpoint",
            "[::1]:10002",
        ])
        .unwrap();
        assert_eq!(
            config.allowed_endpoints(),
            AllowedEndpoints::new(
                vec!["core.windows.net".into(), "core.chinacloudapi.cn".into()],
                vec![
                    "127.0.0.1:10000".into(),
                    "127.0.0.1:10001".into(),
                    "[::1]:10002".into()
                ],
            )
        );
    }

    #[test]
    fn a_malformed_suffix_or_endpoint_fails_the_start() {
        for args in [
            ["--storage-endpoint-suffixes=windows"],
            ["--allow-storage-endpoint=http://127.0.0.1:10000"],
            ["--allow-storage-endpoint=127.0.0.1"],
        ] {
            let err = parse(&args).map(|_| ()).expect_err("a parse error");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
        }
    }
}
