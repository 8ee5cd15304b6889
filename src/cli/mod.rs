//! Subcommand dispatch for the `sas-operator` binary, and `kubectl sas` (the `kubectl-sas`
//! binary) in [`kubectl`]. Nothing else in the library imports from here.

pub mod kubectl;
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
    Run(Box<RunConfig>),
    /// Print the CustomResourceDefinitions (SasGrant, SasIssuer, ClusterSasIssuer) as YAML.
    Crd {
        /// Write each CRD to DIR/<kind>.yaml (as committed under crds/) instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<std::path::PathBuf>,
        /// Also write each CRD as a Helm chart template to DIR/<kind>.yaml (as committed
        /// under charts/sas-operator/templates/crds/).
        #[arg(long, value_name = "DIR", requires = "output_dir")]
        chart_templates_dir: Option<std::path::PathBuf>,
    },
    /// Sign a one-off SAS token, like `az storage ... generate-sas`.
    Sign(Box<sign::SignArgs>),
}

/// Entry point of the binary: parse flags, dispatch, map failures to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err, SUBCOMMANDS),
    };
    match cli.command {
        Command::Sign(args) => sign::run(*args),
        Command::Crd {
            output_dir: None, ..
        } => {
            print!("{}", crate::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd {
            output_dir: Some(dir),
            chart_templates_dir,
        } => {
            let mut files: Vec<_> = crate::crd::crd_files()
                .into_iter()
                .map(|(file, yaml)| (dir.join(file), yaml))
                .collect();
            if let Some(chart_dir) = chart_templates_dir {
                files.extend(
                    crate::crd::chart_crd_templates()
                        .into_iter()
                        .map(|(file, template)| (chart_dir.join(file), template)),
                );
            }
            for (path, text) in files {
                if let Err(err) = std::fs::write(&path, text) {
                    eprintln!("error: cannot write {}: {err}", path.display());
                    return ExitCode::from(2);
                }
            }
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
            match runtime.block_on(crate::controller::run(*config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %err, "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `sas-operator`'s subcommands, as a usage error lists them.
const SUBCOMMANDS: &str = "sign, crd or run";

/// Help and version print as clap renders them; any other parse error is one line on stderr
/// and exit code 2, like every other bad input.
fn usage_error(err: clap::Error, subcommands: &str) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    eprintln!("{}", usage_line_for(&err, subcommands));
    ExitCode::from(2)
}

/// The one line for a parse error of `sas-operator`.
pub fn usage_line(err: &clap::Error) -> String {
    usage_line_for(err, SUBCOMMANDS)
}

/// The one line for a parse error of a binary whose subcommands are `subcommands` (as prose).
/// clap quotes what it could not place, and that may be a key: one given positionally, or one
/// starting with `-` (taken for a flag). So an argument is named only when it is a flag name,
/// and a rejected value never.
pub fn usage_line_for(err: &clap::Error, subcommands: &str) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let first_line = || {
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
        line
    };
    match err.kind() {
        ErrorKind::UnknownArgument => match context(ContextKind::InvalidArg) {
            Some(arg) if is_flag_name(arg) => format!("error: unexpected argument '{arg}' found"),
            _ => "error: unexpected argument (not shown, in case it is a key): every value \
                  follows its --flag; pass keys with --account-key or AZURE_STORAGE_KEY"
                .to_string(),
        },
        ErrorKind::InvalidSubcommand => format!(
            "error: unrecognized subcommand (not shown, in case it is a key): expected {subcommands}"
        ),
        // "a value is required for '--flag' but none was supplied" quotes no input.
        ErrorKind::InvalidValue if context(ContextKind::InvalidValue) == Some("") => first_line(),
        ErrorKind::InvalidValue
        | ErrorKind::ValueValidation
        | ErrorKind::NoEquals
        | ErrorKind::TooManyValues => {
            let flag = context(ContextKind::InvalidArg).unwrap_or("an argument");
            let expected = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(values)) if !values.is_empty() => {
                    format!("; expected one of: {}", values.join(", "))
                }
                _ => String::new(),
            };
            format!("error: invalid value for '{flag}' (not shown){expected}")
        }
        // These name only arguments as they are declared, never what was typed.
        ErrorKind::MissingRequiredArgument
        | ErrorKind::ArgumentConflict
        | ErrorKind::WrongNumberOfValues
        | ErrorKind::TooFewValues
        | ErrorKind::MissingSubcommand
        | ErrorKind::InvalidUtf8 => first_line(),
        _ => "error: invalid arguments; see --help".to_string(),
    }
}

/// `--lower-case-words`: what a mistyped flag looks like, and what no base64 key looks like.
fn is_flag_name(arg: &str) -> bool {
    arg.strip_prefix("--").is_some_and(|name| {
        (1..=40).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn line_for(argv: &[&str]) -> String {
        let err = Cli::try_parse_from(argv).expect_err("a parse error");
        usage_line(&err)
    }

    #[test]
    fn a_key_given_positionally_is_not_echoed() {
        for argv in [
            &["sas-operator", "sign", "blob", KEY][..],
            &["sas-operator", KEY],
            &["sas-operator", "sign", "blob", "--account-name", "a", KEY],
        ] {
            let line = line_for(argv);
            assert!(!line.contains("Eby8"), "{line}");
            assert!(line.starts_with("error: "), "{line}");
        }
    }

    #[test]
    fn a_key_starting_with_a_dash_is_not_echoed() {
        let key = "-by8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq_K1SZFPTOtr_KBHBe";
        for argv in [
            &["sas-operator", "sign", "blob", "--account-key", key][..],
            &["sas-operator", "sign", "blob", "--", key, "extra"],
            &["sas-operator", "sign", "blob", "--account-name", "a", key],
        ] {
            let line = line_for(argv);
            assert!(!line.contains("by8vd"), "{line}");
            assert!(!line.contains("-b"), "{line}");
        }
    }

    #[test]
    fn a_mistyped_flag_is_still_named() {
        assert_eq!(
            line_for(&["sas-operator", "sign", "blob", "--bogus"]),
            "error: unexpected argument '--bogus' found"
        );
    }

    #[test]
    fn a_rejected_value_is_not_echoed_but_the_choices_are() {
        let line = line_for(&["sas-operator", "run", "--log-format", KEY]);
        assert!(!line.contains("Eby8"), "{line}");
        assert!(line.contains("--log-format"), "{line}");
        assert!(line.contains("text, json"), "{line}");
    }

    #[test]
    fn a_missing_value_names_the_flag() {
        let line = line_for(&["sas-operator", "sign", "blob", "--account-key"]);
        assert!(
            line.contains("a value is required for '--account-key"),
            "{line}"
        );
    }

    #[test]
    fn flag_names_are_short_lower_case_words() {
        assert!(is_flag_name("--account-key"));
        assert!(!is_flag_name("-E"));
        assert!(!is_flag_name("--Eby8vd"));
        assert!(!is_flag_name("--bogus=value"));
        assert!(!is_flag_name(KEY));
    }
}
