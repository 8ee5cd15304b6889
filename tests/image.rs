//! hack/image.sh builds the operator image without Docker; the Dockerfile is what users
//! build. Both must give the same image: the same static binary build, the same files, the
//! same user, ports and entrypoint.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of the Dockerfile's final stage, continuation lines joined.
fn final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    instructions.split_off(last_from)
}

/// Runs hack/image.sh once per test binary (the tests run in parallel; two builds at once
/// would race) and reads the image tar.
fn built_image() -> (Value, Vec<String>) {
    static IMAGE: std::sync::OnceLock<(Value, Vec<String>)> = std::sync::OnceLock::new();
    IMAGE.get_or_init(build_and_read_image).clone()
}

/// Runs hack/image.sh (a no-op when the binary is unchanged) and reads the image tar.
fn build_and_read_image() -> (Value, Vec<String>) {
    let output = Command::new(repo_root().join("hack/image.sh"))
        .current_dir(repo_root())
        .output()
        .expect("run hack/image.sh");
    assert!(
        output.status.success(),
        "hack/image.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tar = repo_root().join("target/image/sas-operator.tar");
    let read = |member: &str| -> Vec<u8> {
        let output = Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg(member)
            .output()
            .expect("run tar");
        assert!(
            output.status.success(),
            "{member} missing from {}",
            tar.display()
        );
        output.stdout
    };
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).expect("manifest.json");
    let config_name = manifest[0]["Config"].as_str().expect("Config").to_string();
    let config: Value = serde_json::from_slice(&read(&config_name)).expect("image config");
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "scratch plus one layer");
    // Tests run in parallel: each gets its own file.
    let layer = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(layer.path(), read(layers[0].as_str().unwrap())).expect("write the layer");
    let listing = Command::new("tar")
        .args(["-tvf"])
        .arg(layer.path())
        .output()
        .expect("list the layer");
    // "-rwxr-xr-x 0/0 123 1970-01-01 00:00 ./sas-operator" -> "-rwxr-xr-x 0/0 /sas-operator"
    let files = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.last().unwrap().trim_start_matches('.');
            format!("{} {} {path}", fields[0], fields[1])
        })
        .collect();
    (config, files)
}

#[test]
fn the_image_built_without_docker_matches_the_dockerfiles_final_stage() {
    let stage = final_stage();
    let (config, files) = built_image();
    let config = &config["config"];
    let mut copied = Vec::new();
    for (keyword, argument) in &stage {
        match keyword.as_str() {
            "FROM" => assert_eq!(argument, "scratch", "the final stage starts from scratch"),
            "USER" => assert_eq!(config["User"], argument.as_str(), "USER"),
            "EXPOSE" => {
                for port in argument.split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_string()
                    } else {
                        format!("{port}/tcp")
                    };
                    assert!(
                        config["ExposedPorts"].get(&port).is_some(),
                        "EXPOSE {port}: {config}"
                    );
                }
            }
            "ENTRYPOINT" => {
                let entrypoint: Value =
                    serde_json::from_str(argument).expect("exec-form ENTRYPOINT");
                assert_eq!(config["Entrypoint"], entrypoint, "ENTRYPOINT");
            }
            "CMD" => {
                let cmd: Value = serde_json::from_str(argument).expect("exec-form CMD");
                assert_eq!(config["Cmd"], cmd, "CMD");
            }
            "COPY" => {
                let destination = argument.split_whitespace().last().unwrap().to_string();
                copied.push(destination);
            }
            other => {
                panic!("the final stage has {other} {argument}: teach hack/image.sh and this test")
            }
        }
    }
    if !stage.iter().any(|(k, _)| k == "CMD") {
        assert!(
            config.get("Cmd").is_none_or(Value::is_null),
            "no CMD: {config}"
        );
    }
    let mut in_image: Vec<String> = files
        .iter()
        .map(|f| f.rsplit(' ').next().unwrap().to_string())
        .collect();
    in_image.sort();
    copied.sort();
    assert_eq!(
        in_image, copied,
        "the image holds exactly what the final stage copies"
    );
    // Root-owned, the binary executable (COPY's defaults).
    assert!(
        files.contains(&"-rwxr-xr-x 0/0 /sas-operator".to_string()),
        "{files:?}"
    );
}

#[test]
fn image_sh_builds_the_binary_the_way_the_dockerfiles_build_stage_does() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let script = std::fs::read_to_string(repo_root().join("hack/image.sh")).unwrap();
    for shared in [
        "RUSTFLAGS=\"-C target-feature=+crt-static\"",
        "--release --locked --target",
        "--bin sas-operator",
        "rustc -vV | sed -n 's/^host: //p'",
        "Requesting program interpreter",
    ] {
        assert!(dockerfile.contains(shared), "Dockerfile lacks {shared}");
        assert!(script.contains(shared), "hack/image.sh lacks {shared}");
    }
    // And the result is a static executable.
    let target = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    built_image();
    let binary = repo_root().join(format!("target/{target}/release/sas-operator"));
    let elf = std::fs::read(&binary).expect("the built binary");
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF executable");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let program_headers = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let interpreted = (0..entries).any(|i| {
        let offset = program_headers + i * entry_size;
        u32::from_le_bytes(elf[offset..offset + 4].try_into().unwrap()) == PT_INTERP
    });
    assert!(
        !interpreted,
        "{} asks for a dynamic loader",
        binary.display()
    );
}
