#![forbid(unsafe_code)]

//! `kubectl sas`: kubectl runs any `kubectl-<name>` found on PATH as `kubectl <name>`.

fn main() -> std::process::ExitCode {
    sas_operator::cli::kubectl::main()
}
