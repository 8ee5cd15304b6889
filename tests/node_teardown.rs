//! The worker node changes the host while it runs (an address on lo, a bridge, network
//! namespaces, mounts, sysctls, directories under /run and /var/log): when the harness lets
//! go of it, every change is undone. Needs root on Linux, like tests/node.rs.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What the node may change, as comparable text.
fn host_state() -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    state.insert(
        "addresses on lo".into(),
        command_output("ip", &["-4", "-o", "addr", "show", "dev", "lo"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect::<Vec<_>>()
            .join(" "),
    );
    state.insert(
        "network interfaces".into(),
        command_output("ip", &["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for name in [
        "net.ipv4.ip_forward",
        "vm.overcommit_memory",
        "vm.panic_on_oom",
        "kernel.panic",
        "kernel.panic_on_oops",
        "kernel.keys.root_maxkeys",
        "kernel.keys.root_maxbytes",
    ] {
        state.insert(
            name.into(),
            command_output("sysctl", &["-n", name]).trim().into(),
        );
    }
    for path in [
        "/run/containerd",
        "/run/netns",
        "/var/log/containers",
        "/run/sas-operator-testenv-node",
        "/var/lib/sas-operator-testenv-node",
    ] {
        let entries = std::fs::read_dir(path)
            .map(|d| d.count().to_string())
            .unwrap_or_else(|_| {
                if std::path::Path::new(path).exists() {
                    "a file".into()
                } else {
                    "absent".into()
                }
            });
        state.insert(path.into(), entries);
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    mounts.sort();
    state.insert("mount points".into(), mounts.join(" "));
    state.insert(
        "containerd processes".into(),
        command_output("pgrep", &["-c", "containerd"]).trim().into(),
    );
    state.insert(
        "iptables chains".into(),
        command_output(
            "sh",
            &[
                "-c",
                "iptables-save 2>/dev/null | grep '^:' | cut -d' ' -f1 | sort",
            ],
        ),
    );
    state
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: before {v:?}, now {:?}", b.get(k)))
        .collect()
}

#[test]
fn the_node_leaves_the_host_as_it_found_it() {
    if let Some(reason) = common::node::unsupported_reason() {
        panic!("{reason}: this test needs the worker node (root on Linux)");
    }
    let plane = common::control_plane();
    let before = host_state();
    let env_file = plane.env_file();
    let node = common::process::serve_with(
        "node",
        &[("TESTENV_CONTROL_PLANE_ENV", env_file.as_os_str())],
    );
    // A pod, so that the bridge, its network namespace and its mounts exist.
    let image = node.var("TESTENV_CONSUMER_IMAGE").to_string();
    let created = plane
        .kubectl()
        .args([
            "run",
            "teardown-probe",
            "-n",
            "default",
            "--image",
            &image,
            "--image-pull-policy",
            "Never",
        ])
        .output()
        .expect("run kubectl run");
    assert!(created.status.success(), "{created:?}");
    let ready = plane
        .kubectl()
        .args([
            "wait",
            "-n",
            "default",
            "--for",
            "condition=Ready",
            "--timeout=60s",
            "pod/teardown-probe",
        ])
        .output()
        .expect("run kubectl wait");
    assert!(ready.status.success(), "{ready:?}");
    let running = host_state();
    assert!(
        differences(&before, &running).len() >= 3,
        "a running node with a pod should change the host; differences: {:?}",
        differences(&before, &running)
    );

    // The harness lets go (as when a test binary exits): the node tears itself down.
    let started = Instant::now();
    drop(node);
    loop {
        let after = host_state();
        let left = differences(&before, &after);
        if left.is_empty() {
            eprintln!(
                "host restored {:.1} s after the harness let go",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node left host changes behind:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
