//! The SasGrant custom resource.

pub fn crd_yaml() -> String {
    String::new()
}

/// Parses a Go-style duration such as `8h`, `90m`, `1h30m`, `45s`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let _ = text;
    Err("todo".into())
}
