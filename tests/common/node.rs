//! A worker node (containerd, kubelet, kube-scheduler) joined to this test binary's control
//! plane, so pods run for real. Root on Linux only; one per machine (see hack/node.sh).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::control_plane::control_plane;
use super::process::{Served, repo_root, serve_with};

pub struct Node {
    /// The node's name, as `kubectl get nodes` shows it.
    pub name: String,
    /// The image of the consumer workload (hack/node/consumer), imported into containerd.
    pub consumer_image: String,
    containerd_address: PathBuf,
    ctr_path: PathBuf,
    served: Served,
}

/// Why the node cannot run on this machine, if it cannot (the same check hack/node.sh makes).
pub fn unsupported_reason() -> Option<String> {
    let output = Command::new("bash")
        .arg("-c")
        .arg("source hack/lib.sh && source hack/node.sh && node_unsupported_reason")
        .current_dir(repo_root())
        .output()
        .expect("run hack/node.sh's node_unsupported_reason");
    let reason = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!reason.is_empty()).then_some(reason)
}

/// The node of this test binary, started on first use (after the control plane; seconds).
/// Panics, saying why and how to run everything else, where the node cannot run.
pub fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        if let Some(reason) = unsupported_reason() {
            panic!(
                "{reason}: the tests in tests/node.rs cannot run here. Run them as root on \
                 Linux (CI does), or run everything else with `make test`, which leaves \
                 tests/node.rs out where the node cannot run and says so."
            );
        }
        let env_file = control_plane().env_file();
        let served = serve_with(
            "node",
            &[("TESTENV_CONTROL_PLANE_ENV", env_file.as_os_str())],
        );
        Node {
            name: served.var("TESTENV_NODE_NAME").into(),
            consumer_image: served.var("TESTENV_CONSUMER_IMAGE").into(),
            containerd_address: served.var("TESTENV_CONTAINERD_ADDRESS").into(),
            ctr_path: served.var("TESTENV_CTR").into(),
            served,
        }
    })
}

impl Node {
    /// `ctr` in containerd's `k8s.io` namespace (the one the kubelet uses).
    pub fn ctr(&self) -> Command {
        let mut command = Command::new(&self.ctr_path);
        command
            .arg("--address")
            .arg(&self.containerd_address)
            .args(["-n", "k8s.io"]);
        command
    }

    /// Imports a docker-archive image tar into the node's containerd.
    pub fn import_image(&self, tar: &std::path::Path) {
        let output = self
            .ctr()
            .args(["images", "import"])
            .arg(tar)
            .output()
            .expect("run ctr images import");
        assert!(
            output.status.success(),
            "ctr images import {} failed:\n{}",
            tar.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The host pid of a running container (`containerd://<id>` or `<id>`).
    pub fn container_pid(&self, container_id: &str) -> u32 {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        let output = self
            .ctr()
            .args(["tasks", "ls"])
            .output()
            .expect("run ctr tasks ls");
        let listing = String::from_utf8_lossy(&output.stdout);
        listing
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id))
                    .then(|| fields.next().and_then(|pid| pid.parse().ok()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("container {id} has no running task:\n{listing}"))
    }
}
