//! Logging set-up. Nothing logged anywhere may contain a key or a token.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Client libraries and the level above which they may never log, whatever the configured
/// filter says. kube-client logs whole response bodies (which can hold every Secret of a
/// namespace) at WARN when they fail to decode, and error bodies at DEBUG; its ERROR lines
/// repeat every failed request (three per failed reconcile while the API server is down), which
/// the operator already logs once per attempt with a reason: it is silenced. kube-runtime logs
/// API errors at DEBUG and WARN; its watcher logs each 403 a watch meets (a restarted API
/// server's authorizer not ready yet) at WARN with the whole `Status` debug dump, once per
/// retry, where the operator logs one WARN per outage itself: only the watcher's ERROR passes.
/// The HTTP and TLS stacks have nothing an operator needs below WARN.
const CAPPED: [(&str, LevelFilter); 9] = [
    ("kube_client", LevelFilter::OFF),
    ("kube_runtime", LevelFilter::WARN),
    ("kube_runtime::watcher", LevelFilter::ERROR),
    ("hyper", LevelFilter::WARN),
    ("hyper_util", LevelFilter::WARN),
    ("h2", LevelFilter::WARN),
    ("tower", LevelFilter::WARN),
    ("tower_http", LevelFilter::WARN),
    ("rustls", LevelFilter::WARN),
];

/// A filter that lets everything through except client libraries above their cap. It is a
/// separate layer, so no directive in `SAS_OPERATOR_LOG_LEVEL` (a target, a span filter,
/// `trace`) can lift the caps.
pub fn client_library_caps() -> Targets {
    CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |caps, (target, level)| caps.with_target(*target, *level),
    )
}

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    let output = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(client_library_caps());
    let _ = match format {
        LogFormat::Text => registry.with(output).try_init(),
        LogFormat::Json => registry.with(output.json()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn kube_client_never_logs_bodies_nor_one_line_per_failed_request() {
        let caps = client_library_caps();
        assert!(!caps.would_enable("kube_client::client", &Level::WARN));
        assert!(!caps.would_enable("kube_client::client", &Level::DEBUG));
        assert!(!caps.would_enable("kube_client::client::builder", &Level::ERROR));
    }

    #[test]
    fn the_http_stack_and_kube_runtime_are_capped_at_warn() {
        let caps = client_library_caps();
        for target in [
            "kube_runtime::controller",
            "hyper_util::client",
            "tower_http::trace",
        ] {
            assert!(!caps.would_enable(target, &Level::DEBUG), "{target}");
            assert!(caps.would_enable(target, &Level::WARN), "{target}");
        }
    }

    #[test]
    fn kube_runtimes_watcher_logs_no_status_dump_at_warn() {
        let caps = client_library_caps();
        assert!(!caps.would_enable("kube_runtime::watcher", &Level::WARN));
        assert!(caps.would_enable("kube_runtime::watcher", &Level::ERROR));
    }

    #[test]
    fn the_operators_own_logs_pass_at_every_level() {
        let caps = client_library_caps();
        assert!(caps.would_enable("sas_operator::reconcile", &Level::TRACE));
        assert!(caps.would_enable("sas_operator::controller", &Level::ERROR));
    }
}
