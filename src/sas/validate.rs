//! Azure's naming rules and the shape of `sip`.

use std::net::Ipv4Addr;

use super::SasError;

fn invalid(kind: &'static str, name: &str, reason: &'static str) -> SasError {
    SasError::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    }
}

/// Whether `byte` occurs twice in a row in `text` (cheaper than a substring search, whose
/// set-up dominates on names this short).
fn repeats(text: &str, byte: u8) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|pair| pair[0] == byte && pair[1] == byte)
}

/// Storage account: 3-24 lowercase letters and digits.
pub fn account_name(name: &str) -> Result<(), SasError> {
    if !(3..=24).contains(&name.len()) {
        return Err(invalid("account", name, "must be 3 to 24 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(invalid(
            "account",
            name,
            "may contain only lowercase letters and digits",
        ));
    }
    Ok(())
}

/// The shared rule of containers, shares and queues: 3-63 characters of lowercase letters,
/// digits and hyphens; starts and ends with a letter or digit; no two hyphens in a row.
fn dns_like_name(kind: &'static str, name: &str) -> Result<(), SasError> {
    if !(3..=63).contains(&name.len()) {
        return Err(invalid(kind, name, "must be 3 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            kind,
            name,
            "may contain only lowercase letters, digits and hyphens",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid(
            kind,
            name,
            "must start and end with a letter or digit",
        ));
    }
    if repeats(name, b'-') {
        return Err(invalid(kind, name, "must not contain consecutive hyphens"));
    }
    Ok(())
}

/// Container names; the system containers `$root`, `$web` and `$logs` are allowed too.
pub fn container_name(name: &str) -> Result<(), SasError> {
    if matches!(name, "$root" | "$web" | "$logs") {
        return Ok(());
    }
    dns_like_name("container", name)
}

pub fn share_name(name: &str) -> Result<(), SasError> {
    dns_like_name("share", name)
}

pub fn queue_name(name: &str) -> Result<(), SasError> {
    dns_like_name("queue", name)
}

/// Table names: 3-63 letters and digits, starting with a letter; `tables` is reserved.
pub fn table_name(name: &str) -> Result<(), SasError> {
    if !(3..=63).contains(&name.len()) {
        return Err(invalid("table", name, "must be 3 to 63 characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "table",
            name,
            "may contain only letters and digits",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Err(invalid("table", name, "must start with a letter"));
    }
    if name.eq_ignore_ascii_case("tables") {
        return Err(invalid("table", name, "\"tables\" is reserved"));
    }
    Ok(())
}

/// Blob names: 1-1024 characters.
pub fn blob_name(name: &str) -> Result<(), SasError> {
    // Byte length bounds the char count, so counting chars is only needed for long names.
    if name.is_empty() || (name.len() > 1024 && name.chars().count() > 1024) {
        return Err(invalid("blob", name, "must be 1 to 1024 characters long"));
    }
    Ok(())
}

/// A directory or file path: non-empty segments separated by single `/`, no leading or
/// trailing `/` (the directory depth `sdd` counts the segments).
pub fn path(kind: &'static str, path: &str) -> Result<(), SasError> {
    if path.is_empty() {
        return Err(invalid(kind, path, "must not be empty"));
    }
    if path.starts_with('/') || path.ends_with('/') || repeats(path, b'/') {
        return Err(invalid(
            kind,
            path,
            "must be segments separated by single '/', without a leading or trailing '/'",
        ));
    }
    Ok(())
}

/// Stored access policy ids: 1-64 characters.
pub fn policy_id(id: &str) -> Result<(), SasError> {
    if id.is_empty() || id.chars().count() > 64 {
        return Err(invalid(
            "stored access policy",
            id,
            "must be 1 to 64 characters long",
        ));
    }
    Ok(())
}

/// `sip`: one IPv4 address, or `start-end` with start <= end.
pub fn ip(value: &str) -> Result<(), SasError> {
    let error = || SasError::InvalidIp {
        value: value.to_owned(),
    };
    let parse = |text: &str| text.parse::<Ipv4Addr>().map_err(|_| error());
    match value.split_once('-') {
        None => parse(value).map(drop),
        Some((start, end)) => {
            if parse(start)? <= parse(end)? {
                Ok(())
            } else {
                Err(error())
            }
        }
    }
}

/// The name of a header or query parameter bound with `srh`/`srq`: it is written raw into the
/// string-to-sign as `name:value` lines, so it must be non-empty and free of `:`, `,` and
/// line breaks.
pub fn request_field_name(field: &'static str, name: &str) -> Result<(), SasError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.contains([':', ',', '\n', '\r']) {
        "must not contain ':', ',' or line breaks"
    } else {
        return Ok(());
    };
    Err(SasError::InvalidRequestField {
        field,
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(result: Result<(), SasError>) -> &'static str {
        match result {
            Err(SasError::InvalidName { reason, .. }) => reason,
            other => panic!("expected InvalidName, got {other:?}"),
        }
    }

    #[test]
    fn container_names_follow_dns_rules() {
        for ok in [
            "abc",
            "my-container-1",
            "0ab",
            "$root",
            "$web",
            "$logs",
            &"a".repeat(63),
        ] {
            assert!(container_name(ok).is_ok(), "{ok}");
        }
        assert!(rejected(container_name("ab")).contains("3 to 63"));
        assert!(rejected(container_name(&"a".repeat(64))).contains("3 to 63"));
        assert!(rejected(container_name("Abc")).contains("lowercase"));
        assert!(rejected(container_name("a_c")).contains("lowercase"));
        assert!(rejected(container_name("-abc")).contains("start and end"));
        assert!(rejected(container_name("abc-")).contains("start and end"));
        assert!(rejected(container_name("a--b")).contains("consecutive"));
        assert!(container_name("$other").is_err());
    }

    #[test]
    fn share_and_queue_names_follow_the_same_rules() {
        assert!(share_name("my-share").is_ok());
        assert!(queue_name("my-queue").is_ok());
        assert!(share_name("My-Share").is_err());
        assert!(queue_name("q").is_err());
        assert!(queue_name("$root").is_err());
    }

    #[test]
    fn table_names_are_alphanumeric_and_start_with_a_letter() {
        assert!(table_name("MyTable1").is_ok());
        assert!(rejected(table_name("1table")).contains("start with a letter"));
        assert!(rejected(table_name("my-table")).contains("letters and digits"));
        assert!(rejected(table_name("ab")).contains("3 to 63"));
        assert!(rejected(table_name("Tables")).contains("reserved"));
    }

    #[test]
    fn account_names_are_lowercase_alphanumeric() {
        assert!(account_name("devstoreaccount1").is_ok());
        assert!(account_name("Dev").is_err());
        assert!(account_name("dev-store").is_err());
        assert!(account_name(&"a".repeat(25)).is_err());
    }

    #[test]
    fn paths_are_segments_without_stray_slashes() {
        assert!(path("directory", "a/b/c").is_ok());
        for bad in ["", "/a", "a/", "a//b", "/"] {
            assert!(path("directory", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_accepts_an_address_or_an_ascending_range() {
        assert!(ip("168.1.5.65").is_ok());
        assert!(ip("168.1.5.60-168.1.5.70").is_ok());
        assert!(ip("10.0.0.1-10.0.0.1").is_ok());
        for bad in [
            "",
            "168.1.5",
            "168.1.5.256",
            "a.b.c.d",
            "10.0.0.2-10.0.0.1",
            "10.0.0.1-",
            "::1",
            "10.0.0.1 ",
        ] {
            assert_eq!(
                ip(bad),
                Err(SasError::InvalidIp { value: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_field_names_cannot_break_the_string_to_sign() {
        assert!(request_field_name("request header", "x-ms-foo").is_ok());
        for bad in ["", "a:b", "a,b", "a\nb"] {
            assert!(
                request_field_name("request header", bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
