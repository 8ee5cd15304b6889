//! `sas-operator sign` as a user runs it: output formats, and every bad-input path ends with
//! exit code 2, exactly one `error:` line on stderr, and no key material anywhere.

use std::process::{Command, Output};

/// A valid base64 key with a recognizable shape, so tests can prove it never leaks.
const KEY: &str = "U0VDUkVULUtFWS1TSE9VTEQtTkVWRVItQVBQRUFSLTAxMjM0NTY3ODk=";
/// Not base64, and just as recognizable.
const BAD_KEY: &str = "NOT-BASE64-SECRET-KEY-MATERIAL!!";
const EXPIRY: &str = "2030-02-03T04:05:06Z";

fn sign(args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sas-operator"));
    command
        .arg("sign")
        .args(args)
        .env_remove("AZURE_STORAGE_KEY")
        .env_remove("AZURE_STORAGE_ACCOUNT");
    command.env_remove("SAS_OPERATOR_SAS_VERSION");
    if let Some(key) = key {
        command.env("AZURE_STORAGE_KEY", key);
    }
    command.output().expect("the sas-operator binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// A valid blob SAS invocation; a flag in `extra` replaces the default of the same name.
fn blob_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--account-name", "acct1"),
        ("--container-name", "photos"),
        ("--name", "cat.jpg"),
        ("--permissions", "wr"),
        ("--expiry", EXPIRY),
    ];
    let mut args = vec!["blob"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// Asserts the failure contract: exit 2, one `error:` line naming `needle`, no key, no token.
fn assert_fails_with(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit code for error containing {needle:?}; stderr: {err}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout on error ({needle:?})"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "exactly one stderr line ({needle:?}); got: {err}"
    );
    assert!(
        err.starts_with("error: "),
        "stderr starts with 'error: '; got: {err}"
    );
    assert!(err.contains(needle), "stderr names {needle:?}; got: {err}");
    for secret in [KEY, BAD_KEY, "SECRET"] {
        assert!(
            !err.contains(secret),
            "stderr must not contain key material ({needle:?})"
        );
    }
    assert!(
        !err.contains("sig="),
        "stderr must not contain a token ({needle:?})"
    );
}

#[test]
fn token_output_is_the_bare_query_string() {
    let output = sign(&blob_args(&[]), Some(KEY));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let token = stdout(&output);
    assert!(
        token.starts_with("se=2030-02-03T04%3A05%3A06Z&sp=rw&sv=2026-10-06&sr=b&sig="),
        "token shape"
    );
    assert!(!token.starts_with('?'));
    assert_eq!(token.lines().count(), 1);
    assert!(stderr(&output).is_empty());
}

#[test]
fn account_key_flag_works_like_the_environment_variable() {
    let from_env = sign(&blob_args(&[]), Some(KEY));
    let from_flag = sign(&blob_args(&["--account-key", KEY]), None);
    assert!(from_flag.status.success(), "stderr: {}", stderr(&from_flag));
    assert_eq!(from_env.stdout, from_flag.stdout);
}

#[test]
fn url_output_prefixes_the_default_endpoint_and_encoded_path() {
    let output = sign(
        &blob_args(&["--output", "url", "--name", "dir a/cat.jpg"]),
        Some(KEY),
    );
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let url = stdout(&output);
    assert!(
        url.starts_with("https://acct1.blob.core.windows.net/photos/dir%20a/cat.jpg?se="),
        "url shape: {}",
        url.split('?').next().unwrap_or("")
    );
}

#[test]
fn url_output_uses_a_given_endpoint() {
    let endpoint = "http://127.0.0.1:10000/devstoreaccount1/";
    let output = sign(
        &blob_args(&["--output", "url", "--endpoint", endpoint]),
        Some(KEY),
    );
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(
        stdout(&output).starts_with("http://127.0.0.1:10000/devstoreaccount1/photos/cat.jpg?se=")
    );
}

#[test]
fn json_output_reports_token_url_expiry_permissions_and_version() {
    let output = sign(&blob_args(&["--output", "json"]), Some(KEY));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("stdout is JSON");
    let token = json["token"].as_str().expect("token is a string");
    assert!(token.starts_with("se="));
    assert_eq!(
        json["url"].as_str(),
        Some(format!("https://acct1.blob.core.windows.net/photos/cat.jpg?{token}").as_str())
    );
    assert_eq!(json["expiry"], EXPIRY);
    assert_eq!(json["permissions"], "rw");
    assert_eq!(json["version"], "2026-10-06");
}

#[test]
fn account_sas_url_uses_the_first_service_endpoint() {
    let args = [
        "account",
        "--account-name",
        "acct1",
        "--services",
        "qt",
        "--resource-types",
        "so",
        "--permissions",
        "rl",
        "--expiry",
        EXPIRY,
        "--output",
        "url",
    ];
    let output = sign(&args, Some(KEY));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(stdout(&output).starts_with("https://acct1.queue.core.windows.net?se="));
}

#[test]
fn every_kind_signs_from_flags() {
    let cases: [&[&str]; 8] = [
        &[
            "account",
            "--services",
            "b",
            "--resource-types",
            "o",
            "--permissions",
            "r",
        ],
        &[
            "container",
            "--container-name",
            "photos",
            "--permissions",
            "rl",
        ],
        &[
            "blob",
            "--container-name",
            "photos",
            "--name",
            "a.txt",
            "--permissions",
            "r",
            "--snapshot",
            "2030-01-01T00:00:00.0000000Z",
        ],
        &[
            "directory",
            "--container-name",
            "lake",
            "--name",
            "a/b",
            "--permissions",
            "rl",
        ],
        &[
            "share",
            "--share-name",
            "docs",
            "--permissions",
            "rl",
            "--content-type",
            "text/plain",
        ],
        &[
            "file",
            "--share-name",
            "docs",
            "--path",
            "d/r.pdf",
            "--permissions",
            "r",
        ],
        &[
            "queue",
            "--queue-name",
            "jobs",
            "--permissions",
            "rp",
            "--https-only",
            "--ip",
            "10.0.0.1-10.0.0.9",
        ],
        &[
            "table",
            "--table-name",
            "Orders",
            "--permissions",
            "r",
            "--start-pk",
            "a",
            "--end-pk",
            "b",
        ],
    ];
    for case in cases {
        let mut args = case.to_vec();
        args.extend(["--account-name", "acct1", "--expiry", EXPIRY]);
        let output = sign(&args, Some(KEY));
        assert!(
            output.status.success(),
            "{}: stderr: {}",
            case[0],
            stderr(&output)
        );
        assert!(
            stdout(&output).contains("&sig="),
            "{}: token has a signature",
            case[0]
        );
    }
}

#[test]
fn stored_policy_alone_signs_without_permissions_or_expiry() {
    let args = [
        "queue",
        "--account-name",
        "acct1",
        "--queue-name",
        "jobs",
        "--policy-name",
        "pol",
    ];
    let output = sign(&args, Some(KEY));
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(stdout(&output).starts_with("sv=2026-10-06&si=pol&sig="));
}

#[test]
fn user_delegation_key_file_signs_a_blob_sas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("udk.json");
    let udk = serde_json::json!({
        "signedOid": "11111111-1111-1111-1111-111111111111",
        "signedTid": "22222222-2222-2222-2222-222222222222",
        "signedStart": "2030-01-01T00:00:00Z",
        "signedExpiry": "2030-01-08T00:00:00Z",
        "signedService": "b",
        "signedVersion": "2026-10-06",
        "value": KEY,
    });
    std::fs::write(&path, udk.to_string()).expect("write key file");
    let path = path.to_str().expect("UTF-8 temp path");
    let output = sign(
        &blob_args(&[
            "--user-delegation-key",
            path,
            "--correlation-id",
            "corr-1",
            "--request-header",
            "x-ms-a:1",
        ]),
        None,
    );
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let token = stdout(&output);
    assert!(
        token.contains("&scid=corr-1&skoid=11111111-1111-1111-1111-111111111111&"),
        "user delegation fields"
    );
    assert!(
        token.contains("&srh=x-ms-a&sig="),
        "srh carries the header name"
    );
}

// ---- every error path ---------------------------------------------------------------------

#[test]
fn a_key_that_is_not_base64_is_rejected_without_echoing_it() {
    assert_fails_with(&sign(&blob_args(&[]), Some(BAD_KEY)), "not valid base64");
    assert_fails_with(
        &sign(&blob_args(&["--account-key", BAD_KEY]), None),
        "not valid base64",
    );
}

#[test]
fn a_missing_key_is_an_error() {
    assert_fails_with(&sign(&blob_args(&[]), None), "no key");
}

#[test]
fn an_unknown_kind_is_an_error() {
    assert_fails_with(
        &sign(&["bucket", "--account-name", "acct1"], Some(KEY)),
        "unknown SAS kind \"bucket\"",
    );
}

#[test]
fn a_missing_account_name_is_an_error() {
    let args = [
        "queue",
        "--queue-name",
        "jobs",
        "--permissions",
        "r",
        "--expiry",
        EXPIRY,
    ];
    assert_fails_with(&sign(&args, Some(KEY)), "--account-name");
}

#[test]
fn a_missing_resource_flag_is_an_error() {
    let args = [
        "blob",
        "--account-name",
        "acct1",
        "--container-name",
        "photos",
        "--permissions",
        "r",
        "--expiry",
        EXPIRY,
    ];
    assert_fails_with(&sign(&args, Some(KEY)), "missing --name");
}

#[test]
fn a_flag_for_another_kind_is_an_error() {
    assert_fails_with(
        &sign(&blob_args(&["--queue-name", "jobs"]), Some(KEY)),
        "--queue-name cannot be used",
    );
}

#[test]
fn missing_permissions_or_expiry_without_a_policy_is_an_error() {
    let base = ["queue", "--account-name", "acct1", "--queue-name", "jobs"];
    let mut no_permissions = base.to_vec();
    no_permissions.extend(["--expiry", EXPIRY]);
    assert_fails_with(&sign(&no_permissions, Some(KEY)), "missing permissions");
    let mut no_expiry = base.to_vec();
    no_expiry.extend(["--permissions", "r"]);
    assert_fails_with(&sign(&no_expiry, Some(KEY)), "missing expiry");
}

#[test]
fn an_unsupported_permission_names_the_letter_and_the_allowed_set() {
    assert_fails_with(
        &sign(&blob_args(&["--permissions", "rz"]), Some(KEY)),
        "permission 'z' is not allowed for a blob SAS; allowed: racwdxyltmei",
    );
}

#[test]
fn bad_services_and_resource_types_are_errors() {
    let account = |services: &'static str, types: &'static str| {
        vec![
            "account",
            "--account-name",
            "acct1",
            "--services",
            services,
            "--resource-types",
            types,
            "--permissions",
            "r",
            "--expiry",
            EXPIRY,
        ]
    };
    assert_fails_with(&sign(&account("bx", "o"), Some(KEY)), "service 'x'");
    assert_fails_with(&sign(&account("b", "oz"), Some(KEY)), "resource type 'z'");
}

#[test]
fn bad_times_are_errors() {
    assert_fails_with(
        &sign(&blob_args(&["--expiry", "next tuesday"]), Some(KEY)),
        "invalid --expiry",
    );
    assert_fails_with(
        &sign(&blob_args(&["--start", "2030-13-01T00:00:00Z"]), Some(KEY)),
        "invalid --start",
    );
}

#[test]
fn expiry_not_after_start_is_an_error() {
    assert_fails_with(
        &sign(&blob_args(&["--start", EXPIRY]), Some(KEY)),
        "expiry must be after start",
    );
}

#[test]
fn bad_ips_are_errors() {
    for ip in ["10.0.0", "10.0.0.9-10.0.0.1", "::1"] {
        assert_fails_with(
            &sign(&blob_args(&["--ip", ip]), Some(KEY)),
            "invalid IP address or range",
        );
    }
}

#[test]
fn bad_protocols_are_errors() {
    assert_fails_with(
        &sign(&blob_args(&["--protocol", "http"]), Some(KEY)),
        "invalid --protocol",
    );
    assert_fails_with(
        &sign(
            &blob_args(&["--protocol", "https,http", "--https-only"]),
            Some(KEY),
        ),
        "contradicts --https-only",
    );
}

#[test]
fn unsupported_versions_are_errors() {
    assert_fails_with(
        &sign(&blob_args(&["--sas-version", "2014-02-14"]), Some(KEY)),
        "signed version \"2014-02-14\" is not supported",
    );
    assert_fails_with(
        &sign(&blob_args(&["--sas-version", "latest"]), Some(KEY)),
        "is not supported",
    );
}

#[test]
fn a_field_too_new_for_the_version_names_the_field_and_minimum() {
    let output = sign(
        &blob_args(&["--sas-version", "2019-02-02", "--encryption-scope", "s1"]),
        Some(KEY),
    );
    assert_fails_with(
        &output,
        "encryption scope (ses) needs signed version 2020-12-06 or newer",
    );
}

#[test]
fn names_that_break_azure_rules_are_errors() {
    assert_fails_with(
        &sign(&blob_args(&["--container-name", "Photos"]), Some(KEY)),
        "invalid container name \"Photos\"",
    );
    let queue = [
        "queue",
        "--account-name",
        "acct1",
        "--queue-name",
        "a--b",
        "--permissions",
        "r",
        "--expiry",
        EXPIRY,
    ];
    assert_fails_with(&sign(&queue, Some(KEY)), "invalid queue name");
    let table = [
        "table",
        "--account-name",
        "acct1",
        "--table-name",
        "1table",
        "--permissions",
        "r",
        "--expiry",
        EXPIRY,
    ];
    assert_fails_with(&sign(&table, Some(KEY)), "invalid table name");
    let share = [
        "share",
        "--account-name",
        "acct1",
        "--share-name",
        "s",
        "--permissions",
        "r",
        "--expiry",
        EXPIRY,
    ];
    assert_fails_with(&sign(&share, Some(KEY)), "invalid share name");
    assert_fails_with(
        &sign(&blob_args(&["--account-name", "Acct"]), Some(KEY)),
        "invalid account name",
    );
}

#[test]
fn snapshot_and_version_id_together_are_an_error() {
    let output = sign(
        &blob_args(&["--snapshot", "s", "--version-id", "v"]),
        Some(KEY),
    );
    assert_fails_with(&output, "snapshot or a version id, not both");
}

#[test]
fn user_delegation_fields_with_an_account_key_are_errors() {
    assert_fails_with(
        &sign(&blob_args(&["--correlation-id", "c"]), Some(KEY)),
        "correlation id (scid) cannot be used",
    );
}

#[test]
fn malformed_request_pairs_are_errors_that_do_not_echo_values() {
    assert_fails_with(
        &sign(&blob_args(&["--request-header", "novalue"]), Some(KEY)),
        "invalid --request-header",
    );
}

#[test]
fn unknown_output_format_is_an_error() {
    assert_fails_with(
        &sign(&blob_args(&["--output", "yaml"]), Some(KEY)),
        "invalid --output \"yaml\"",
    );
}

#[test]
fn an_unreadable_user_delegation_key_file_is_an_error() {
    let output = sign(
        &blob_args(&["--user-delegation-key", "/nonexistent/udk.json"]),
        None,
    );
    assert_fails_with(&output, "cannot use the user delegation key file");
}

#[test]
fn a_malformed_user_delegation_key_file_never_echoes_its_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "wrong-type.json",
            format!(r#"{{"signedOid": 1, "value": "{BAD_KEY}"}}"#),
            "wrong type",
        ),
        (
            "missing.json",
            format!(r#"{{"value": "{BAD_KEY}"}}"#),
            "missing field",
        ),
        ("syntax.json", format!(r#"{{"value": "{BAD_KEY}""#), "JSON"),
        (
            "bad-value.json",
            serde_json::json!({
                "signedOid": "o", "signedTid": "t", "signedStart": "s", "signedExpiry": "e",
                "signedService": "b", "signedVersion": "2026-10-06", "value": BAD_KEY,
            })
            .to_string(),
            "user delegation key value is not valid base64",
        ),
    ];
    for (name, content, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write key file");
        let output = sign(
            &blob_args(&["--user-delegation-key", path.to_str().expect("UTF-8 path")]),
            None,
        );
        assert_fails_with(&output, needle);
    }
}

#[test]
fn help_never_shows_the_key_from_the_environment() {
    let output = sign(&["--help"], Some(KEY));
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(help.contains("--account-key"), "help lists --account-key");
    assert!(
        !help.contains(KEY),
        "help must not show AZURE_STORAGE_KEY's value"
    );
}

#[test]
fn an_unknown_flag_is_one_line_and_exit_code_two() {
    assert_fails_with(
        &sign(&blob_args(&["--bogus"]), Some(KEY)),
        "unexpected argument '--bogus'",
    );
}

#[test]
fn a_missing_kind_names_the_argument_on_one_line() {
    assert_fails_with(&sign(&[], Some(KEY)), "not provided: <KIND>");
}

// ---- a key in the wrong place is never printed back ----------------------------------------

/// A key given as an extra positional argument, or as the kind itself.
#[test]
fn a_key_passed_positionally_is_never_echoed() {
    let mut extra = blob_args(&[]);
    extra.push(KEY);
    assert_fails_with(&sign(&extra, None), "unexpected argument (not shown");
    assert_fails_with(
        &sign(&["--account-name", "acct1", KEY], None),
        "unknown SAS kind (not shown",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_sas-operator"))
        .arg(KEY)
        .output()
        .expect("the sas-operator binary runs");
    assert_fails_with(&output, "unrecognized subcommand (not shown");
}

/// clap takes a value starting with `-` for a flag and quotes it: `-S` of `-SECRET...`, the
/// whole of it after `--`.
#[test]
fn a_key_starting_with_a_dash_is_never_echoed() {
    let dash_key = "-SECRETKEY0123456789abcdefghijklmnopqrstuvwxyz_0123456789abcdefghijklmnop";
    for output in [
        sign(&blob_args(&["--account-key", dash_key]), None),
        sign(&blob_args(&["--account-key", "--", dash_key]), None),
        sign(&blob_args(&["--", dash_key]), Some(KEY)),
    ] {
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("-S"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        assert!(!err.contains(KEY), "{err}");
    }
}

#[test]
fn a_key_given_to_another_flag_is_not_echoed_in_its_error() {
    assert_fails_with(
        &sign(&blob_args(&["--expiry", KEY]), Some(KEY)),
        "invalid --expiry (not shown",
    );
}

#[test]
fn a_user_delegation_key_file_over_64_kib_is_refused_unread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.json");
    // Valid JSON (leading whitespace) just over the limit: refused for its size alone.
    let padding = " ".repeat(64 * 1024);
    std::fs::write(&path, format!(r#"{padding}{{"value": "{BAD_KEY}"}}"#)).expect("write");
    let output = sign(
        &blob_args(&["--user-delegation-key", path.to_str().expect("UTF-8 path")]),
        None,
    );
    assert_fails_with(&output, "larger than 64 KiB");
}

#[test]
fn an_endless_user_delegation_key_file_is_refused() {
    let output = sign(&blob_args(&["--user-delegation-key", "/dev/zero"]), None);
    assert_fails_with(&output, "larger than 64 KiB");
}
