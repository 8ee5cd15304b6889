//! `sas-operator sign`: flags -> sas types -> token. (Signer owner implements.)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SignArgs {}

pub fn run(args: SignArgs) -> ExitCode {
    let _ = args;
    ExitCode::from(2)
}
