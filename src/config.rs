//! Command-line and environment configuration. Every flag also reads an environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sas-operator",
    version,
    about = "Signs Azure Storage SAS tokens into Kubernetes Secrets and rotates them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (kubeconfig from KUBECONFIG or in-cluster).
    Run(RunConfig),
    /// Print the SasGrant CustomResourceDefinition as YAML.
    Crd,
    /// Sign a one-off SAS token, like `az storage ... generate-sas`.
    Sign(Box<crate::cli::sign::SignArgs>),
}

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
}
