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
    /// Reconciles that may run at once.
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
    /// The longest lifetime a user delegation key is requested for (Azure allows 7 days);
    /// also the longest validity of a workload identity grant.
    #[arg(long, env = "SAS_OPERATOR_MAX_USER_DELEGATION_KEY_LIFETIME", default_value = "168h", value_parser = crate::crd::parse_duration)]
    pub max_user_delegation_key_lifetime: std::time::Duration,
    /// Leader election on/off, Lease name, namespace, identity and timing of the leader election.
    #[command(flatten)]
    pub lease: Box<crate::leader::LeaseArgs>,
}

impl RunConfig {
    /// `--cluster-resource-namespace`, else the operator's own namespace (`POD_NAMESPACE`).
    pub fn cluster_resource_namespace(&self) -> Option<String> {
        self.cluster_resource_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|namespace| !namespace.is_empty())
    }
}
