//! What tests/helm.rs and tests/helm_install.rs share: the chart, the release, and the helm
//! and kubectl that `hack/tools.sh` built (a missing one fails the test, never skips it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CHART: &str = "charts/sas-operator";
/// The release and its namespace: the names of deploy/.
pub const RELEASE: &str = "sas-operator";
pub const NAMESPACE: &str = "sas-operator";

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn run_ok(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A tool that `hack/tools.sh` built (`hack/<script> --path`); a missing one fails the test.
pub fn tool(script: &str) -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_path(script))
        .arg("--path")
        .output()
        .unwrap_or_else(|e| panic!("run {script} --path: {e}"));
    let path = PathBuf::from(run_ok(&format!("{script} --path"), output).trim());
    assert!(
        path.is_file(),
        "{} is missing: run hack/tools.sh (or {script}) first",
        path.display()
    );
    path
}

pub fn helm() -> Command {
    let mut command = Command::new(tool("hack/build-helm.sh"));
    command.current_dir(repo_path(""));
    // Helm's own state (repositories, cache) stays out of the user's home.
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, home.join(dir));
    }
    command
}
