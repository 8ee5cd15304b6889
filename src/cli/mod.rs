//! Subcommand dispatch for the `sas-operator` binary.

pub mod sign;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command};

/// Entry point of the binary: parse flags, dispatch, map failures to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
