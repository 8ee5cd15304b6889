//! Subcommand dispatch for the `sas-operator` binary.

pub mod sign;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::RunConfig;

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
    Sign(Box<sign::SignArgs>),
}

/// Entry point of the binary: parse flags, dispatch, map failures to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    match cli.command {
        Command::Sign(args) => sign::run(*args),
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(config) => {
            crate::telemetry::init(config.log_format, &config.log_level);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the async runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(crate::controller::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %err, "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Help and version print as clap renders them; any other parse error is one line on stderr
/// and exit code 2, like every other bad input.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let rendered = err.render().to_string();
    let mut lines = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let mut line = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .to_string();
    // "the following required arguments were not provided:" names them on the next line.
    if line.ends_with(':')
        && let Some(detail) = lines.next()
    {
        line = format!("{line} {detail}");
    }
    eprintln!("{line}");
    ExitCode::from(2)
}
