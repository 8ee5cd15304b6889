//! `sas-operator sign`: flags -> sas types -> token.
//!
//! Flags are taken as plain strings and checked here (not by clap) so every bad input ends as
//! exactly one `error: ...` line on stderr and exit code 2. Keys never appear in messages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::sas::{
    self, AccountKey, DelegationExtras, Protocol, Resource, ResponseHeaders, SasError, SasParams,
    Service, SigningKey, TableKeyRange, UserDelegationKey,
};

/// The kind of SAS to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Account,
    Container,
    Blob,
    Directory,
    Share,
    File,
    Queue,
    Table,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Account => "an account SAS",
            Kind::Container => "a container SAS",
            Kind::Blob => "a blob SAS",
            Kind::Directory => "a directory SAS",
            Kind::Share => "a share SAS",
            Kind::File => "a file SAS",
            Kind::Queue => "a queue SAS",
            Kind::Table => "a table SAS",
        }
    }
}

/// How the signed SAS is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The query string, without a leading `?`.
    Token,
    /// The resource URL, `?`, and the token.
    Url,
    /// `{"token","url","expiry","permissions","version"}`.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Times are RFC 3339 (2030-01-01T00:00:00Z). Bad input exits with code 2 and one line on stderr."
)]
pub struct SignArgs {
    /// What to sign: account, container, blob, directory, share, file, queue or table.
    #[arg(value_name = "KIND")]
    pub kind: String,

    /// Storage account name.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    pub account_name: Option<String>,
    /// Base64 account key. Prefer the environment variable, which stays out of `ps` and history.
    #[arg(long, env = "AZURE_STORAGE_KEY", hide_env_values = true)]
    pub account_key: Option<SecretString>,
    /// JSON file with a user delegation key (signedOid, signedTid, signedStart, signedExpiry,
    /// signedService, signedVersion, optional signedDelegatedUserTid, value); used instead of
    /// the account key.
    #[arg(long, value_name = "FILE")]
    pub user_delegation_key: Option<PathBuf>,

    /// Permission letters, any order (emitted in Azure's canonical order).
    #[arg(long)]
    pub permissions: Option<String>,
    /// Start time (RFC 3339); omitted: valid from when the service receives the request.
    #[arg(long)]
    pub start: Option<String>,
    /// Expiry time (RFC 3339); required unless --policy-name gives it.
    #[arg(long)]
    pub expiry: Option<String>,
    /// Allowed client IP: a.b.c.d or a.b.c.d-e.f.g.h.
    #[arg(long)]
    pub ip: Option<String>,
    /// Allowed protocols: `https` or `https,http`.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Shorthand for `--protocol https`.
    #[arg(long)]
    pub https_only: bool,
    /// Signed version (sv); default: the newest supported.
    #[arg(long, env = "SAS_OPERATOR_SAS_VERSION")]
    pub sas_version: Option<String>,

    /// Account SAS services, letters of `bqtf`.
    #[arg(long)]
    pub services: Option<String>,
    /// Account SAS resource types, letters of `sco`.
    #[arg(long)]
    pub resource_types: Option<String>,

    /// Container (container, blob, directory).
    #[arg(long)]
    pub container_name: Option<String>,
    /// Blob name (blob) or directory path (directory).
    #[arg(long)]
    pub name: Option<String>,
    /// Blob snapshot time (blob).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Blob version id (blob).
    #[arg(long)]
    pub version_id: Option<String>,
    /// File share (share, file).
    #[arg(long)]
    pub share_name: Option<String>,
    /// File path inside the share (file).
    #[arg(long)]
    pub path: Option<String>,
    /// Queue (queue).
    #[arg(long)]
    pub queue_name: Option<String>,
    /// Table (table).
    #[arg(long)]
    pub table_name: Option<String>,
    /// Table range: start partition key.
    #[arg(long)]
    pub start_pk: Option<String>,
    /// Table range: start row key.
    #[arg(long)]
    pub start_rk: Option<String>,
    /// Table range: end partition key.
    #[arg(long)]
    pub end_pk: Option<String>,
    /// Table range: end row key.
    #[arg(long)]
    pub end_rk: Option<String>,

    /// Stored access policy id (si).
    #[arg(long)]
    pub policy_name: Option<String>,
    /// Encryption scope (ses).
    #[arg(long)]
    pub encryption_scope: Option<String>,
    /// Response Cache-Control override (rscc).
    #[arg(long)]
    pub cache_control: Option<String>,
    /// Response Content-Disposition override (rscd).
    #[arg(long)]
    pub content_disposition: Option<String>,
    /// Response Content-Encoding override (rsce).
    #[arg(long)]
    pub content_encoding: Option<String>,
    /// Response Content-Language override (rscl).
    #[arg(long)]
    pub content_language: Option<String>,
    /// Response Content-Type override (rsct).
    #[arg(long)]
    pub content_type: Option<String>,

    /// User delegation: object id of the user the SAS is pre-authorized for (saoid).
    #[arg(long)]
    pub authorized_user_object_id: Option<String>,
    /// User delegation: object id of the user, checked by ACLs (suoid).
    #[arg(long)]
    pub unauthorized_user_object_id: Option<String>,
    /// User delegation: correlation id for audit logs (scid).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// User delegation: object id of the only user allowed to use the SAS (sduoid).
    #[arg(long)]
    pub delegated_user_object_id: Option<String>,
    /// User delegation: a request header the request must carry, `name:value` (srh); repeatable.
    #[arg(long, value_name = "NAME:VALUE")]
    pub request_header: Vec<String>,
    /// User delegation: a query parameter the request must carry, `name:value` (srq); repeatable.
    #[arg(long, value_name = "NAME:VALUE")]
    pub request_query: Vec<String>,

    /// Output: token, url or json.
    #[arg(long, default_value = "token")]
    pub output: String,
    /// Service endpoint for `url`/`json` output; default https://{account}.{service}.core.windows.net.
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// A flag value that must never be printed: its `Debug` is redacted.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretString(text.to_owned()))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why `sign` could not produce a token. Messages name the flag and never contain a key.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Sas(#[from] SasError),
    #[error(
        "unknown SAS kind {}: expected account, container, blob, directory, share, file, queue or table",
        shown(.0)
    )]
    UnknownKind(String),
    #[error("missing --{flag}: required for {context}")]
    MissingFlag {
        flag: &'static str,
        context: &'static str,
    },
    #[error("--{flag} cannot be used with {context}")]
    FlagNotAllowed {
        flag: &'static str,
        context: &'static str,
    },
    #[error("invalid --{flag} {}: {reason}", shown(value))]
    InvalidValue {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("no key: pass --account-key (or set AZURE_STORAGE_KEY) or --user-delegation-key FILE")]
    MissingKey,
    #[error("cannot use the user delegation key file {path:?}: {reason}")]
    UserDelegationKeyFile { path: PathBuf, reason: String },
}

/// A value for an error message, quoted, unless it might be a key: a key given in the wrong
/// place (positionally, or after the wrong flag) must not be printed back.
fn shown(value: &str) -> String {
    let key_like = value.len() >= 16
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b));
    if key_like {
        "(not shown: it looks like key material)".to_string()
    } else {
        format!("{value:?}")
    }
}

/// Runs `sas-operator sign`: prints the token (or URL/JSON) or one error line; exit code 2 on
/// bad input.
pub fn run(args: SignArgs) -> ExitCode {
    match render(&args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// The text `run` prints on success.
pub fn render(args: &SignArgs) -> Result<String, CliError> {
    let output =
        OutputFormat::from_str(&args.output, false).map_err(|_| CliError::InvalidValue {
            flag: "output",
            value: args.output.clone(),
            reason: "expected token, url or json",
        })?;
    let (params, key) = params_from_args(args)?;
    let signed = sas::sign(&params, &key)?;
    let url = || {
        let endpoint = match &args.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => sas::default_endpoint(&params.account_name, endpoint_service(&params.resource)),
        };
        format!(
            "{}?{}",
            sas::resource_url(&endpoint, &params.resource),
            signed.token
        )
    };
    Ok(match output {
        OutputFormat::Token => signed.token,
        OutputFormat::Url => url(),
        OutputFormat::Json => serde_json::json!({
            "token": signed.token,
            "url": url(),
            "expiry": signed.expiry.map(|t| t.to_string()),
            "permissions": signed.permissions.as_ref().map(sas::Letters::as_str),
            "version": signed.version,
        })
        .to_string(),
    })
}

/// The service whose endpoint a URL uses; an account SAS uses its first service (`bqtf` order).
fn endpoint_service(resource: &Resource) -> Service {
    if let Some(service) = resource.service() {
        return service;
    }
    let first = match resource {
        Resource::Account { services, .. } => sas::canonical_services(services)
            .ok()
            .and_then(|s| s.as_str().bytes().next()),
        _ => None,
    };
    match first {
        Some(b'q') => Service::Queue,
        Some(b't') => Service::Table,
        Some(b'f') => Service::File,
        _ => Service::Blob,
    }
}

/// Turns flags into signer inputs: pure, no clock; reads only the user delegation key file.
pub fn params_from_args(args: &SignArgs) -> Result<(SasParams, SigningKey), CliError> {
    let kind =
        Kind::from_str(&args.kind, false).map_err(|_| CliError::UnknownKind(args.kind.clone()))?;
    let context = kind.describe();
    check_resource_flags(args, kind)?;
    let required = |flag: &'static str, value: &Option<String>| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or(CliError::MissingFlag { flag, context })
    };

    let resource = match kind {
        Kind::Account => Resource::Account {
            services: required("services", &args.services)?,
            resource_types: required("resource-types", &args.resource_types)?,
        },
        Kind::Container => Resource::Container {
            container: required("container-name", &args.container_name)?,
        },
        Kind::Blob => Resource::Blob {
            container: required("container-name", &args.container_name)?,
            blob: required("name", &args.name)?,
            snapshot: args.snapshot.clone(),
            version_id: args.version_id.clone(),
        },
        Kind::Directory => Resource::Directory {
            container: required("container-name", &args.container_name)?,
            path: required("name", &args.name)?,
        },
        Kind::Share => Resource::Share {
            share: required("share-name", &args.share_name)?,
        },
        Kind::File => Resource::File {
            share: required("share-name", &args.share_name)?,
            path: required("path", &args.path)?,
        },
        Kind::Queue => Resource::Queue {
            queue: required("queue-name", &args.queue_name)?,
        },
        Kind::Table => Resource::Table {
            table: required("table-name", &args.table_name)?,
            key_range: TableKeyRange {
                start_pk: args.start_pk.clone(),
                start_rk: args.start_rk.clone(),
                end_pk: args.end_pk.clone(),
                end_rk: args.end_rk.clone(),
            },
        },
    };

    let protocol = match (args.protocol.as_deref(), args.https_only) {
        (None, false) => None,
        (None, true) | (Some("https"), _) => Some(Protocol::Https),
        (Some("https,http"), false) => Some(Protocol::HttpsAndHttp),
        (Some("https,http"), true) => {
            return Err(CliError::InvalidValue {
                flag: "protocol",
                value: "https,http".into(),
                reason: "contradicts --https-only",
            });
        }
        (Some(other), _) => {
            return Err(CliError::InvalidValue {
                flag: "protocol",
                value: other.into(),
                reason: "expected https or https,http",
            });
        }
    };

    let params = SasParams {
        account_name: args.account_name.clone().filter(|a| !a.is_empty()).ok_or(
            CliError::MissingFlag {
                flag: "account-name",
                context: "every SAS",
            },
        )?,
        resource,
        permissions: args.permissions.clone(),
        start: parse_time("start", args.start.as_deref())?,
        expiry: parse_time("expiry", args.expiry.as_deref())?,
        ip: args.ip.clone(),
        protocol,
        version: args.sas_version.clone(),
        policy_id: args.policy_name.clone(),
        encryption_scope: args.encryption_scope.clone(),
        response_headers: ResponseHeaders {
            cache_control: args.cache_control.clone(),
            content_disposition: args.content_disposition.clone(),
            content_encoding: args.content_encoding.clone(),
            content_language: args.content_language.clone(),
            content_type: args.content_type.clone(),
        },
        delegation: DelegationExtras {
            authorized_user_object_id: args.authorized_user_object_id.clone(),
            unauthorized_user_object_id: args.unauthorized_user_object_id.clone(),
            correlation_id: args.correlation_id.clone(),
            delegated_user_object_id: args.delegated_user_object_id.clone(),
            request_headers: parse_pairs("request-header", &args.request_header)?,
            request_query: parse_pairs("request-query", &args.request_query)?,
        },
    };

    // A user delegation key file wins over an account key, which may come from the environment.
    let key = match (&args.user_delegation_key, &args.account_key) {
        (Some(path), _) => SigningKey::UserDelegation(read_user_delegation_key(path)?),
        (None, Some(encoded)) => SigningKey::Account(AccountKey::from_base64(encoded.expose())?),
        (None, None) => return Err(CliError::MissingKey),
    };
    Ok((params, key))
}

/// Rejects resource flags that do not belong to `kind`, so a typo'd kind is not silently
/// signed for the wrong resource.
fn check_resource_flags(args: &SignArgs, kind: Kind) -> Result<(), CliError> {
    use Kind::*;
    let flags: [(&'static str, bool, &[Kind]); 14] = [
        ("services", args.services.is_some(), &[Account]),
        ("resource-types", args.resource_types.is_some(), &[Account]),
        (
            "container-name",
            args.container_name.is_some(),
            &[Container, Blob, Directory],
        ),
        ("name", args.name.is_some(), &[Blob, Directory]),
        ("snapshot", args.snapshot.is_some(), &[Blob]),
        ("version-id", args.version_id.is_some(), &[Blob]),
        ("share-name", args.share_name.is_some(), &[Share, File]),
        ("path", args.path.is_some(), &[File]),
        ("queue-name", args.queue_name.is_some(), &[Queue]),
        ("table-name", args.table_name.is_some(), &[Table]),
        ("start-pk", args.start_pk.is_some(), &[Table]),
        ("start-rk", args.start_rk.is_some(), &[Table]),
        ("end-pk", args.end_pk.is_some(), &[Table]),
        ("end-rk", args.end_rk.is_some(), &[Table]),
    ];
    match flags
        .iter()
        .find(|(_, given, kinds)| *given && !kinds.contains(&kind))
    {
        Some((flag, _, _)) => Err(CliError::FlagNotAllowed {
            flag,
            context: kind.describe(),
        }),
        None => Ok(()),
    }
}

fn parse_time(
    flag: &'static str,
    value: Option<&str>,
) -> Result<Option<jiff::Timestamp>, CliError> {
    value
        .map(|text| {
            text.parse::<jiff::Timestamp>()
                .map_err(|_| CliError::InvalidValue {
                    flag,
                    value: text.to_owned(),
                    reason: "expected an RFC 3339 time such as 2030-01-01T00:00:00Z",
                })
        })
        .transpose()
}

/// `name:value` pairs; the value is never echoed in an error (it may be sensitive).
fn parse_pairs(flag: &'static str, raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|pair| match pair.split_once(':') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(CliError::InvalidValue {
                flag,
                value: pair.split(':').next().unwrap_or_default().to_owned(),
                reason: "expected name:value",
            }),
        })
        .collect()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDelegationKeyFile {
    signed_oid: String,
    signed_tid: String,
    signed_start: String,
    signed_expiry: String,
    signed_service: String,
    signed_version: String,
    #[serde(default)]
    signed_delegated_user_tid: Option<String>,
    value: String,
}

/// A user delegation key file is a few hundred bytes; a larger one is a mistake (or
/// `/dev/zero`), and is refused before it is read into memory.
pub const USER_DELEGATION_KEY_FILE_LIMIT: u64 = 64 * 1024;

/// Reads at most `limit` bytes of UTF-8; a longer file is an error, not a truncated read.
fn read_capped(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {} KiB", limit / 1024));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

fn read_user_delegation_key(path: &Path) -> Result<UserDelegationKey, CliError> {
    let fail = |reason: String| CliError::UserDelegationKeyFile {
        path: path.to_owned(),
        reason,
    };
    let text = read_capped(path, USER_DELEGATION_KEY_FILE_LIMIT).map_err(fail)?;
    let file: UserDelegationKeyFile =
        serde_json::from_str(&text).map_err(|e| fail(describe_json_error(&e)))?;
    Ok(UserDelegationKey {
        signed_oid: file.signed_oid,
        signed_tid: file.signed_tid,
        signed_start: file.signed_start,
        signed_expiry: file.signed_expiry,
        signed_service: file.signed_service,
        signed_version: file.signed_version,
        signed_delegated_user_tid: file.signed_delegated_user_tid,
        value: AccountKey::decode(&file.value, "user delegation key value")?,
    })
}

/// serde_json's messages can quote input (the key value among it); keep only what is safe.
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let message = err.to_string();
    let what = match err.classify() {
        Category::Data if message.starts_with("missing field") => message
            .split(" at line")
            .next()
            .unwrap_or("missing field")
            .to_owned(),
        Category::Data => "a field has the wrong type".to_owned(),
        Category::Syntax => "not valid JSON".to_owned(),
        Category::Eof => "truncated JSON".to_owned(),
        Category::Io => "read error".to_owned(),
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: SignArgs,
    }

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn args(extra: &[&str]) -> SignArgs {
        let mut argv = vec!["sign", "--account-name", "acct1", "--account-key", KEY];
        argv.extend_from_slice(extra);
        Harness::try_parse_from(argv).expect("flags parse").args
    }

    fn error_of(extra: &[&str]) -> CliError {
        params_from_args(&args(extra))
            .map(drop)
            .expect_err("expected an error")
    }

    #[test]
    fn blob_flags_become_a_blob_resource() {
        let (params, key) = params_from_args(&args(&[
            "blob",
            "--container-name",
            "c1",
            "--name",
            "a/b.txt",
            "--permissions",
            "r",
            "--expiry",
            "2030-01-01T00:00:00Z",
        ]))
        .unwrap();
        assert_eq!(
            params.resource,
            Resource::Blob {
                container: "c1".into(),
                blob: "a/b.txt".into(),
                snapshot: None,
                version_id: None
            }
        );
        assert_eq!(params.expiry, Some("2030-01-01T00:00:00Z".parse().unwrap()));
        assert!(matches!(key, SigningKey::Account(_)));
    }

    #[test]
    fn https_only_sets_the_https_protocol() {
        let (params, _) =
            params_from_args(&args(&["queue", "--queue-name", "q1", "--https-only"])).unwrap();
        assert_eq!(params.protocol, Some(Protocol::Https));
    }

    #[test]
    fn https_only_contradicting_protocol_is_an_error() {
        let err = error_of(&[
            "queue",
            "--queue-name",
            "q1",
            "--https-only",
            "--protocol",
            "https,http",
        ]);
        assert!(err.to_string().contains("--https-only"), "{err}");
    }

    #[test]
    fn unknown_kind_is_named() {
        assert!(matches!(error_of(&["bucket"]), CliError::UnknownKind(k) if k == "bucket"));
    }

    #[test]
    fn a_missing_resource_flag_is_named() {
        assert!(matches!(
            error_of(&["blob", "--container-name", "c1"]),
            CliError::MissingFlag { flag: "name", .. }
        ));
        assert!(matches!(
            error_of(&["account", "--services", "b"]),
            CliError::MissingFlag {
                flag: "resource-types",
                ..
            }
        ));
    }

    #[test]
    fn a_flag_of_another_kind_is_rejected() {
        assert!(matches!(
            error_of(&["queue", "--queue-name", "q1", "--table-name", "t1"]),
            CliError::FlagNotAllowed {
                flag: "table-name",
                ..
            }
        ));
    }

    #[test]
    fn bad_times_name_the_flag() {
        let err = error_of(&["queue", "--queue-name", "q1", "--expiry", "tomorrow"]);
        assert!(matches!(err, CliError::InvalidValue { flag: "expiry", .. }));
    }

    #[test]
    fn request_pairs_split_at_the_first_colon() {
        let (params, _) = params_from_args(&args(&[
            "blob",
            "--container-name",
            "c1",
            "--name",
            "b",
            "--request-header",
            "x-ms-a:b:c",
        ]))
        .unwrap();
        assert_eq!(
            params.delegation.request_headers,
            vec![("x-ms-a".to_owned(), "b:c".to_owned())]
        );
        assert!(matches!(
            error_of(&[
                "blob",
                "--container-name",
                "c1",
                "--name",
                "b",
                "--request-query",
                "novalue"
            ]),
            CliError::InvalidValue {
                flag: "request-query",
                ..
            }
        ));
    }

    #[test]
    fn debug_output_of_the_flags_hides_the_account_key() {
        let debug = format!("{:?}", args(&["queue"]));
        assert!(debug.contains("account_key: Some(<redacted>)"), "{debug}");
        assert!(!debug.contains(KEY));
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        let err = serde_json::from_str::<UserDelegationKeyFile>(r#"{"value": 12345678}"#)
            .err()
            .unwrap();
        let text = describe_json_error(&err);
        assert!(!text.contains("12345678"), "{text}");
    }
}
