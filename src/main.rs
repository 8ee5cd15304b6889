#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sas_operator::cli::main()
}
