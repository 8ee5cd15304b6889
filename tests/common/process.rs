//! Starts a component through `hack/testenv.sh serve`, the same script `make testenv` uses.
//!
//! Statics are never dropped, so no destructor can stop the processes. Instead the script
//! reads its stdin until EOF; the write end lives only in this process, and the kernel closes
//! it when the process exits for any reason (normal exit, panic, SIGKILL). The script then
//! stops its daemons and removes their data.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running component. Holding it keeps the component alive; it is meant to live in a static.
pub struct Served {
    /// KEY=VALUE pairs the component wrote (endpoints, paths, keys).
    pub env: HashMap<String, String>,
    /// `$TESTENV_STATE/<component>`: removed with the component, a place for test files.
    pub component_dir: PathBuf,
    // Never read: kept open so the script sees EOF only when this process exits.
    _lifeline: ChildStdin,
    _stdout: ChildStdout,
    _child: Child,
}

impl Served {
    /// The value the component wrote for `key`; panics naming the key (never the value).
    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("hack/testenv.sh wrote no {key} into its env file"))
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `component` (control-plane, azurite, azurite-oauth or entra) and waits until it is
/// ready.
pub fn serve(component: &str) -> Served {
    serve_with(component, &[])
}

/// [`serve`] with extra environment for `hack/testenv.sh` (e.g. the node's control plane).
pub fn serve_with(component: &str, env: &[(&str, &std::ffi::OsStr)]) -> Served {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    let state_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "testenv-{binary}-{}-{component}",
        std::process::id()
    ));
    let log_path = state_dir.with_extension("log");
    std::fs::create_dir_all(state_dir.parent().expect("state dir has a parent"))
        .expect("create target tmp dir");
    let log = std::fs::File::create(&log_path).expect("create the testenv log file");
    let script = repo_root().join("hack/testenv.sh");
    let mut child = Command::new(&script)
        .arg("serve")
        .arg(component)
        .env("TESTENV_STATE", &state_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", script.display()));
    let lifeline = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let env_file = loop {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .expect("read hack/testenv.sh output");
        if read == 0 {
            let status = child.wait().ok();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            panic!(
                "the test environment's {component} did not start ({status:?}).\n\
                 If a component is missing, run `make tools`.\n\
                 hack/testenv.sh said:\n{log}"
            );
        }
        if let Some(path) = line.trim_end().strip_prefix("READY ") {
            break PathBuf::from(path);
        }
    };
    let _ = std::fs::remove_file(&log_path);
    let env = read_env_file(&env_file);
    Served {
        env,
        component_dir: state_dir.join(component),
        _lifeline: lifeline,
        _stdout: stdout.into_inner(),
        _child: child,
    }
}

fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
