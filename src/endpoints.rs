//! Which storage endpoints the operator may use. A spec's endpoint ends up in `sasUrl` and
//! `connectionString`, which apps trust, and a workload identity issuer's blob endpoint
//! receives a bearer token for Azure Storage: every endpoint is attacker-controlled until this
//! rule accepts it.
//!
//! An endpoint is allowed iff it is Azure's own `https://<account>.<service>.<suffix>` (the
//! account of the grant or issuer, the service of the field, a suffix of
//! `--storage-endpoint-suffixes`; no port but 443, no path beyond `/`), or its exact
//! `host:port` (the port defaulted from the scheme) is listed in `--allow-storage-endpoint`:
//! emulators and private endpoints the operator's administrator vouches for. Everything else
//! (other hosts, other accounts' hosts, IP literals, loopback, `http`, userinfo...) is refused.
//!
//! Pure: nothing here resolves a name or opens a connection.

use crate::crd::Endpoints;

/// The public cloud's storage suffix, the default of `--storage-endpoint-suffixes`.
pub const PUBLIC_CLOUD_SUFFIX: &str = "core.windows.net";
const SUFFIXES_FLAG: &str = "--storage-endpoint-suffixes";
const ALLOW_FLAG: &str = "--allow-storage-endpoint";
const ALLOW_ENV: &str = "SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS";
/// A flag value longer than this is refused at start (a DNS name has at most 253 characters).
const MAX_FLAG_VALUE: usize = 260;

/// The operator's rule for storage endpoints (from its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedEndpoints {
    /// DNS suffixes such as `core.windows.net`, lowercase, without leading or trailing dot.
    suffixes: Vec<String>,
    /// Exact `host:port` pairs, the host lowercase (an IPv6 literal in brackets).
    listed: Vec<String>,
}

impl Default for AllowedEndpoints {
    /// The public cloud, nothing listed.
    fn default() -> Self {
        AllowedEndpoints {
            suffixes: vec![PUBLIC_CLOUD_SUFFIX.to_string()],
            listed: Vec::new(),
        }
    }
}

/// Why an endpoint is refused: static text, nothing learned from the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    NotHttpUrl,
    Userinfo,
    QueryOrFragment,
    Characters,
    BadPort,
    NotHttps,
    Port(u16),
    Path,
    Host,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NotHttpUrl => f.write_str("it is not an http(s) URL"),
            Why::Userinfo => f.write_str("it carries userinfo"),
            Why::QueryOrFragment => f.write_str("it carries a query or a fragment"),
            Why::Characters => f.write_str(
                "its host carries characters a DNS name or IP literal does not (percent-encoding, \
                 whitespace, non-ASCII...)",
            ),
            Why::BadPort => f.write_str("its port is not a number from 1 to 65535"),
            Why::NotHttps => f.write_str("it is http, not https"),
            Why::Port(port) => write!(f, "its port is {port}, not 443"),
            Why::Path => f.write_str("it has a path; an Azure endpoint has none"),
            Why::Host => f.write_str("its host is not the account's host of this service"),
        }
    }
}

/// A refused endpoint: the field, the rule, and how an administrator allows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} is not an allowed storage endpoint ({why}): it must be \
     https://{account}.{service}.<suffix> with <suffix> one of {suffixes} ({SUFFIXES_FLAG}), \
     or the operator's administrator must list its exact host:port{listing} in {ALLOW_FLAG} \
     ({ALLOW_ENV})"
)]
pub struct EndpointNotAllowed {
    field: String,
    why: Why,
    account: String,
    service: &'static str,
    suffixes: String,
    /// ` <host:port>`, when the endpoint has one to list.
    listing: String,
}

/// An endpoint taken apart: only what the rule looks at.
struct Parts<'a> {
    https: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

impl AllowedEndpoints {
    /// `suffixes` and `listed` as [`parse_suffix`] and [`parse_host_port`] return them; empty
    /// entries (an empty environment variable) are nothing.
    pub fn new(suffixes: Vec<String>, listed: Vec<String>) -> Self {
        let given = |entries: Vec<String>| entries.into_iter().filter(|e| !e.is_empty()).collect();
        AllowedEndpoints {
            suffixes: given(suffixes),
            listed: given(listed),
        }
    }

    /// Whether `url` may be used as the `service` (`blob`, `queue`, `table`, `file`) endpoint
    /// of storage account `account`.
    pub fn check(&self, url: &str, account: &str, service: &str) -> Result<(), Why> {
        let parts = parse(url)?;
        if self
            .listed
            .iter()
            .any(|listed| *listed == host_port(parts.host, parts.port))
        {
            return Ok(());
        }
        let suffix = parts
            .host
            .strip_prefix(account)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(service))
            .and_then(|rest| rest.strip_prefix('.'));
        if !suffix.is_some_and(|suffix| self.suffixes.iter().any(|s| s == suffix)) {
            return Err(Why::Host);
        }
        if !parts.https {
            return Err(Why::NotHttps);
        }
        if parts.port != 443 {
            return Err(Why::Port(parts.port));
        }
        if !matches!(parts.path, "" | "/") {
            return Err(Why::Path);
        }
        Ok(())
    }

    /// Checks every endpoint an account names (`owner` prefixes the field in the message, e.g.
    /// `SasIssuer "team": `). An endpoint left out is Azure's public default, built from the
    /// validated account name: nothing to check.
    pub fn check_account(
        &self,
        owner: &str,
        account: &str,
        endpoints: Option<&Endpoints>,
    ) -> Result<(), EndpointNotAllowed> {
        let Some(endpoints) = endpoints else {
            return Ok(());
        };
        for (service, url) in [
            ("blob", &endpoints.blob),
            ("queue", &endpoints.queue),
            ("table", &endpoints.table),
            ("file", &endpoints.file),
        ] {
            if let Some(url) = url.as_deref().filter(|url| !url.is_empty()) {
                let field = format!("{owner}storageAccount.endpoints.{service}");
                self.check_field(&field, url, account, service)?;
            }
        }
        Ok(())
    }

    /// Checks one endpoint, named `field` in the message.
    pub fn check_field(
        &self,
        field: &str,
        url: &str,
        account: &str,
        service: &'static str,
    ) -> Result<(), EndpointNotAllowed> {
        self.check(url, account, service)
            .map_err(|why| EndpointNotAllowed {
                field: field.to_string(),
                why,
                account: account.to_string(),
                service,
                suffixes: self.suffixes.join(", "),
                listing: parse(url)
                    .map(|parts| format!(" {}", host_port(parts.host, parts.port)))
                    .unwrap_or_default(),
            })
    }
}

fn host_port(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Takes `http(s)://host[:port][/path]` apart, refusing anything else: userinfo, a query or a
/// fragment anywhere, and a host that is not plain DNS letters, digits, `-` and `.` or a
/// bracketed IPv6 literal (so no percent-encoding, whitespace or Unicode look-alikes).
fn parse(url: &str) -> Result<Parts<'_>, Why> {
    let (rest, https) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else {
        return Err(Why::NotHttpUrl);
    };
    if url.contains(['?', '#']) {
        return Err(Why::QueryOrFragment);
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(Why::Userinfo);
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        Some(port) => parse_port(port).ok_or(Why::BadPort)?,
        None if https => 443,
        None => 80,
    };
    if !is_host(host) {
        return Err(Why::Characters);
    }
    Ok(Parts {
        https,
        host,
        port,
        path,
    })
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), Why> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(Why::Characters)? + 1;
        let (host, after) = authority.split_at(end);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or(Why::BadPort),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    let digits = (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|port| *port != 0)
}

/// Plain DNS characters, or a bracketed IPv6 literal of hex digits, `:` and `.`.
fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A `--storage-endpoint-suffixes` entry: a DNS suffix of two or more labels, such as
/// `core.windows.net` or `core.chinacloudapi.cn` (a leading dot is dropped; lowercased). An
/// empty entry is nothing.
pub fn parse_suffix(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let suffix = text.strip_prefix('.').unwrap_or(text).to_ascii_lowercase();
    let labels: Vec<&str> = suffix.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    // The last label has a letter: a suffix is a DNS name, never the tail of an IP address.
    let top_level_ok = labels
        .last()
        .is_some_and(|label| label.bytes().any(|b| b.is_ascii_lowercase()));
    if suffix.len() <= MAX_FLAG_VALUE
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && top_level_ok
    {
        Ok(suffix)
    } else {
        Err(format!(
            "{text:?} is not a DNS suffix of two or more labels, such as {PUBLIC_CLOUD_SUFFIX}"
        ))
    }
}

/// A `--allow-storage-endpoint` entry: `host:port` exactly, the host a DNS name, an IPv4
/// address or a bracketed IPv6 literal (lowercased). An empty entry is nothing.
pub fn parse_host_port(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let refuse = || {
        format!(
            "{text:?} is not host:port, such as 127.0.0.1:10000 or [::1]:10000 or myaccount.blob.example.internal:443"
        )
    };
    if text.len() > MAX_FLAG_VALUE {
        return Err(refuse());
    }
    let lower = text.to_ascii_lowercase();
    match split_host_port(&lower) {
        Ok((host, Some(port)))
            if is_host(host)
                && !host.starts_with('.')
                && !host.ends_with('.')
                && !host.contains("..") =>
        {
            let port = parse_port(port).ok_or_else(refuse)?;
            Ok(host_port(host, port))
        }
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(listed: &[&str]) -> AllowedEndpoints {
        AllowedEndpoints::new(
            vec![
                PUBLIC_CLOUD_SUFFIX.into(),
                "core.chinacloudapi.cn".into(),
                "core.usgovcloudapi.net".into(),
            ],
            listed
                .iter()
                .map(|entry| parse_host_port(entry).unwrap())
                .collect(),
        )
    }

    #[test]
    fn the_accounts_own_https_host_under_a_configured_suffix_is_allowed() {
        let rule = allowed(&[]);
        for (url, service) in [
            ("https://acct.blob.core.windows.net", "blob"),
            ("https://acct.blob.core.windows.net/", "blob"),
            ("https://acct.blob.core.windows.net:443/", "blob"),
            ("https://acct.queue.core.windows.net", "queue"),
            ("https://acct.table.core.chinacloudapi.cn", "table"),
            ("https://acct.file.core.usgovcloudapi.net/", "file"),
        ] {
            assert_eq!(rule.check(url, "acct", service), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_hosts_accounts_services_schemes_ports_and_paths_are_refused() {
        let rule = allowed(&[]);
        for (url, service, why) in [
            // Other hosts, and hosts that only look like the account's.
            ("https://evil.com", "blob", Why::Host),
            (
                "https://acct.blob.core.windows.net.evil.com",
                "blob",
                Why::Host,
            ),
            ("https://acct.blob.core.windows.net.", "blob", Why::Host),
            ("https://ACCT.BLOB.CORE.WINDOWS.NET", "blob", Why::Host),
            ("https://acct.blob.windows.net", "blob", Why::Host),
            ("https://xacct.blob.core.windows.net", "blob", Why::Host),
            ("https://acct.blob.evilcore.windows.net", "blob", Why::Host),
            ("https://acct.blob.core.cloudapi.de", "blob", Why::Host),
            // Another account's host; the blob host in the queue field.
            ("https://other.blob.core.windows.net", "blob", Why::Host),
            ("https://acct.blob.core.windows.net", "queue", Why::Host),
            ("https://acct.dfs.core.windows.net", "blob", Why::Host),
            // IP literals, the unspecified address, loopback.
            ("https://127.0.0.1:10000/", "blob", Why::Host),
            ("https://0.0.0.0/", "blob", Why::Host),
            ("https://[::1]:443/", "blob", Why::Host),
            ("https://[::ffff:127.0.0.1]/", "blob", Why::Host),
            ("http://localhost:10000/acct", "blob", Why::Host),
            ("https://169.254.169.254/", "blob", Why::Host),
            // The right host, the wrong way.
            ("http://acct.blob.core.windows.net", "blob", Why::NotHttps),
            (
                "https://acct.blob.core.windows.net:8443",
                "blob",
                Why::Port(8443),
            ),
            ("https://acct.blob.core.windows.net/x", "blob", Why::Path),
            ("https://acct.blob.core.windows.net//", "blob", Why::Path),
            // Userinfo, fragments, queries, percent-encoding, odd characters.
            (
                "https://acct.blob.core.windows.net@evil.com",
                "blob",
                Why::Userinfo,
            ),
            (
                "https://evil.com#.blob.core.windows.net",
                "blob",
                Why::QueryOrFragment,
            ),
            (
                "https://evil.com?.blob.core.windows.net",
                "blob",
                Why::QueryOrFragment,
            ),
            (
                "https://acct%2eblob.core.windows.net",
                "blob",
                Why::Characters,
            ),
            (
                "https://acct.blob.core.windows.net%00.evil.com",
                "blob",
                Why::Characters,
            ),
            (
                "https://acct.blob.core.windows.net\\@evil.com",
                "blob",
                Why::Userinfo,
            ),
            (
                "https://acct.blob.core.windows.net\\.evil.com",
                "blob",
                Why::Characters,
            ),
            (
                "https://acct.blob.core.windows.net .evil.com",
                "blob",
                Why::Characters,
            ),
            (
                "https://аcct.blob.core.windows.net",
                "blob",
                Why::Characters,
            ),
            ("https://acct.blob.core.windows.net:0", "blob", Why::BadPort),
            (
                "https://acct.blob.core.windows.net:65536",
                "blob",
                Why::BadPort,
            ),
            ("https://acct.blob.core.windows.net:", "blob", Why::BadPort),
            ("https://[::1", "blob", Why::Characters),
            ("https://", "blob", Why::Characters),
            (
                "HTTPS://acct.blob.core.windows.net",
                "blob",
                Why::NotHttpUrl,
            ),
            ("//acct.blob.core.windows.net", "blob", Why::NotHttpUrl),
            ("ftp://acct.blob.core.windows.net", "blob", Why::NotHttpUrl),
        ] {
            assert_eq!(
                rule.check(url, "acct", service),
                Err(why),
                "{url} as {service}"
            );
        }
    }

    #[test]
    fn a_listed_host_port_is_allowed_whatever_its_shape_and_only_on_that_port() {
        let rule = allowed(&["127.0.0.1:10000", "[::1]:10001", "LocalHost:80"]);
        for url in [
            "http://127.0.0.1:10000/devstoreaccount1",
            "https://127.0.0.1:10000/",
            "http://[::1]:10001/acct",
            "http://localhost/acct",
            "http://localhost:80",
        ] {
            assert_eq!(rule.check(url, "acct", "blob"), Ok(()), "{url}");
        }
        for url in [
            "http://127.0.0.1:10001/devstoreaccount1",
            "http://127.0.0.1/",
            "https://localhost/acct",
            "http://[::1]:10000/",
            "http://LOCALHOST/acct",
            "http://127.0.0.1.evil.com:10000/",
        ] {
            assert_eq!(rule.check(url, "acct", "blob"), Err(Why::Host), "{url}");
        }
    }

    #[test]
    fn only_the_suffixes_configured_count() {
        let public_only = AllowedEndpoints::default();
        assert_eq!(
            public_only.check("https://acct.blob.core.chinacloudapi.cn", "acct", "blob"),
            Err(Why::Host)
        );
        let sovereign_only = AllowedEndpoints::new(vec!["core.chinacloudapi.cn".into()], vec![]);
        assert_eq!(
            sovereign_only.check("https://acct.blob.core.windows.net", "acct", "blob"),
            Err(Why::Host)
        );
    }

    #[test]
    fn a_refusal_names_the_field_the_rule_and_the_flags_without_the_url() {
        let rule = allowed(&[]);
        let endpoints = Endpoints {
            queue: Some("https://127.0.0.1:4443/steal?x".into()),
            ..Default::default()
        };
        let err = rule
            .check_account("SasIssuer \"team\": ", "acct", Some(&endpoints))
            .unwrap_err();
        let message = err.to_string();
        for needle in [
            "SasIssuer \"team\": storageAccount.endpoints.queue",
            "https://acct.queue.<suffix>",
            "core.windows.net, core.chinacloudapi.cn, core.usgovcloudapi.net",
            "--storage-endpoint-suffixes",
            "--allow-storage-endpoint",
            "SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
        assert!(!message.contains("steal"), "{message}");
        let err = rule
            .check_field("f", "https://127.0.0.1:4443/", "acct", "blob")
            .unwrap_err();
        assert!(
            err.to_string().contains("host:port 127.0.0.1:4443 in"),
            "{err}"
        );
    }

    #[test]
    fn empty_flag_entries_are_nothing() {
        assert_eq!(
            AllowedEndpoints::new(
                vec![parse_suffix("").unwrap()],
                vec![parse_host_port("").unwrap()]
            ),
            AllowedEndpoints::new(vec![], vec![])
        );
    }

    #[test]
    fn an_account_without_endpoints_uses_azures_defaults_and_passes() {
        let rule = AllowedEndpoints::default();
        assert_eq!(rule.check_account("", "acct", None), Ok(()));
        let empty = Endpoints {
            blob: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(rule.check_account("", "acct", Some(&empty)), Ok(()));
    }

    #[test]
    fn flag_values_are_suffixes_and_exact_host_ports() {
        assert_eq!(
            parse_suffix("core.windows.net").unwrap(),
            "core.windows.net"
        );
        assert_eq!(
            parse_suffix(".Core.ChinaCloudApi.cn").unwrap(),
            "core.chinacloudapi.cn"
        );
        for bad in [
            "net",
            "core..net",
            "core.windows.net.",
            "1.0.0.1",
            "-a.net",
            "a b.net",
            "*.net",
        ] {
            assert!(parse_suffix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_host_port("127.0.0.1:10000").unwrap(),
            "127.0.0.1:10000"
        );
        assert_eq!(parse_host_port("[::1]:443").unwrap(), "[::1]:443");
        assert_eq!(
            parse_host_port("Azurite.Local:8443").unwrap(),
            "azurite.local:8443"
        );
        for bad in [
            "127.0.0.1",
            "localhost:",
            "localhost:0",
            "localhost:99999",
            "http://localhost:10000",
            "user@localhost:10000",
            "local%68ost:10000",
            ".local:1",
            "[::1]",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
    }
}
