//! `kubectl sas`, the kubectl plugin (binary `kubectl-sas`): reads grants, issuers and token
//! Secrets through the user's kubeconfig, as kubectl would; `sign` is `sas-operator sign`
//! itself (same flags, same function).
//!
//! Exit codes: 0 done; 2 bad input (flags, kubeconfig, context, input that is no token), with
//! one `error:` line on stderr; 1 the cluster refused or could not be reached, also one line.

pub mod inspect;
pub mod status;
pub mod when;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::sign;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sas",
    bin_name = "kubectl sas",
    version,
    about = "Shows sas-operator's grants and issuers, signs and inspects SAS tokens",
    after_help = "Flags go after the subcommand (kubectl sas status -n NAMESPACE). Bad input exits with code 2 and one line on stderr; a cluster error with code 1."
)]
pub struct Plugin {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Grants (default) or issuers: Ready, reason, expiry, renewal, last rotation.
    Status(status::StatusArgs),
    /// Sign a one-off SAS token: exactly `sas-operator sign`.
    Sign(Box<sign::SignArgs>),
    /// Decode a token's fields from a Secret, a grant's Secret or stdin; never prints `sig`.
    Inspect(inspect::InspectArgs),
}

/// `kubectl sas`'s subcommands, as a usage error lists them.
const SUBCOMMANDS: &str = "status, sign or inspect";

/// Which cluster and namespace: kubectl's flags of the same names and meaning.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster ServiceAccount.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: its current-context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace. Default: the context's namespace, else `default`.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A client for the cluster the flags select, and the namespace they select.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl ClusterArgs {
    pub async fn connect(&self) -> Result<Cluster, PluginError> {
        let config = self.config().await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|err| PluginError::Client(one_line(&err)))?;
        Ok(Cluster { client, namespace })
    }

    /// kubectl's order: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`; only when
    /// none is given and none exists, the in-cluster ServiceAccount.
    async fn config(&self) -> Result<Config, PluginError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let loaded = match &self.kubeconfig {
            Some(path) => match Kubeconfig::read_from(path) {
                Ok(kubeconfig) => Config::from_custom_kubeconfig(kubeconfig, &options).await,
                Err(err) => Err(err),
            },
            None => Config::from_kubeconfig(&options).await,
        };
        match loaded {
            Ok(config) => Ok(config),
            Err(err) if self.may_fall_back_to_in_cluster(&err) => Config::incluster()
                .map_err(|in_cluster| PluginError::NoConfig(one_line(&in_cluster))),
            Err(err) => Err(PluginError::Kubeconfig(describe_kubeconfig_error(&err))),
        }
    }

    fn may_fall_back_to_in_cluster(&self, err: &KubeconfigError) -> bool {
        let no_default_file = match err {
            KubeconfigError::FindPath => true,
            KubeconfigError::ReadConfig(io, _) => io.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        };
        no_default_file
            && self.kubeconfig.is_none()
            && self.context.is_none()
            && std::env::var_os("KUBECONFIG").is_none()
    }
}

/// A kubeconfig holds credentials, and a YAML error can quote the text around it: so a parse
/// error says where, never what.
fn describe_kubeconfig_error(err: &KubeconfigError) -> String {
    match err {
        KubeconfigError::Parse(_) => {
            "the kubeconfig is not valid YAML (details not shown: it may hold credentials)".into()
        }
        other => one_line(other),
    }
}

/// Why a `kubectl sas` command failed. Never holds a token, a signature or a key.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(
        "no kubeconfig ($KUBECONFIG is unset, ~/.kube/config does not exist) and not in a cluster: {0}"
    )]
    NoConfig(String),
    #[error("cannot configure a client for the cluster: {0}")]
    Client(String),
    #[error("cannot list {what}: {reason}")]
    List { what: String, reason: String },
    #[error("{kind} {name:?} not found in {scope}")]
    NotFound {
        kind: &'static str,
        name: String,
        scope: String,
    },
    #[error("cannot get {kind} {namespace}/{name}: {reason}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("Secret {namespace}/{name} has no key {key:?}; it has: {present}")]
    NoSecretKey {
        namespace: String,
        name: String,
        key: String,
        present: String,
    },
    #[error("cannot read the token from stdin: {0}")]
    Stdin(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    Usage(&'static str),
    #[error(transparent)]
    Token(#[from] inspect::TokenError),
}

impl PluginError {
    /// 2 for what the user can fix in the command line or its inputs, 1 for the cluster's
    /// answers.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Kubeconfig(_)
            | PluginError::NoConfig(_)
            | PluginError::Client(_)
            | PluginError::NoSecretKey { .. }
            | PluginError::Usage(_)
            | PluginError::Token(_) => 2,
            PluginError::List { .. }
            | PluginError::NotFound { .. }
            | PluginError::Get { .. }
            | PluginError::Stdin(_)
            | PluginError::Runtime(_) => 1,
        }
    }
}

/// An error and its causes on one line (`: `-separated), as stderr gets exactly one line.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    single_line(&text)
}

/// `text` with every run of whitespace (newlines included) as one space.
fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the API server said, briefly: its message and reason for an API error (not the whole
/// `Status` that kube's `Display` repeats), the cause chain otherwise.
pub fn describe_kube_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                format!("HTTP {}", status.code)
            } else {
                format!("{}, HTTP {}", status.reason, status.code)
            };
            single_line(&format!("{} ({reason})", status.message))
        }
        other => one_line(other),
    }
}

/// Entry point of `kubectl-sas`: parse flags, dispatch, map failures to exit codes.
pub fn main() -> ExitCode {
    let plugin = match Plugin::try_parse() {
        Ok(plugin) => plugin,
        Err(err) => return super::usage_error(err, SUBCOMMANDS),
    };
    let outcome = match plugin.command {
        // Exactly `sas-operator sign`: its own output, errors and exit codes.
        PluginCommand::Sign(args) => return sign::run(*args),
        PluginCommand::Status(args) => run_async(status::run(args)),
        PluginCommand::Inspect(args) => run_async(inspect::run(args)),
    };
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn run_async(
    command: impl std::future::Future<Output = Result<String, PluginError>>,
) -> Result<String, PluginError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| PluginError::Runtime(err.to_string()))?;
    runtime.block_on(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Plugin, clap::Error> {
        Plugin::try_parse_from(std::iter::once("kubectl-sas").chain(argv.iter().copied()))
    }

    #[test]
    fn sign_takes_exactly_the_flags_of_sas_operator_sign() {
        let argv = [
            "sign",
            "blob",
            "--account-name",
            "acct1",
            "--container-name",
            "c",
            "--name",
            "b",
            "--expiry",
            "2030-01-01T00:00:00Z",
        ];
        let plugin = parse(&argv).expect("kubectl sas sign parses");
        let operator = crate::cli::Cli::try_parse_from(
            std::iter::once("sas-operator").chain(argv.iter().copied()),
        )
        .expect("sas-operator sign parses");
        match (plugin.command, operator.command) {
            (PluginCommand::Sign(ours), crate::cli::Command::Sign(theirs)) => {
                assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
            }
            _ => panic!("both parse as sign"),
        }
    }

    #[test]
    fn sign_has_no_cluster_flags() {
        let err = parse(&["sign", "blob", "--context", "x"]).expect_err("not a sign flag");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn all_namespaces_and_a_namespace_conflict() {
        let err = parse(&["status", "-A", "-n", "x"]).expect_err("conflict");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn an_unknown_subcommand_lists_the_plugins_subcommands() {
        let err = parse(&["rotate", "g1"]).expect_err("no rotate yet");
        let line = crate::cli::usage_line_for(&err, SUBCOMMANDS);
        assert!(line.ends_with("expected status, sign or inspect"), "{line}");
        assert!(!line.contains("rotate"), "{line}");
    }

    #[test]
    fn a_kubeconfig_parse_error_quotes_nothing() {
        let err = Kubeconfig::from_yaml("users:\n- name: u\n  user: {token: s3cr3t-T0KEN\n")
            .expect_err("unterminated flow mapping");
        // kube's own message shows the lines around the error, credentials and all.
        assert!(err.to_string().contains("s3cr3t"));
        let line = describe_kubeconfig_error(&err);
        assert!(!line.contains("s3cr3t"), "{line}");
    }

    #[test]
    fn one_line_joins_causes_and_drops_newlines() {
        let err = std::io::Error::other("first\nsecond");
        assert_eq!(one_line(&err), "first second");
    }
}
