//! `kubectl sas inspect`: a SAS token's fields, decoded and explained, from a Secret, a grant's
//! Secret, or stdin. The signature (`sig`) is never printed, nor is input that is not a token
//! (it might be a key).

use std::io::Read as _;

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Map, Value, json};

use super::{ClusterArgs, PluginError, describe_kube_error, when};
use crate::crd::SasGrant;
use crate::reconcile::secret::KEY_SAS_TOKEN;

#[derive(Debug, Args)]
#[command(
    after_help = "Reads a token, a URL with a token, or a connection string with SharedAccessSignature=. Without SOURCE, or with -, from stdin."
)]
pub struct InspectArgs {
    /// Where the token is: `secret NAME`, `grant NAME` (the grant's target Secret), or `-`
    /// (stdin, also the default).
    #[arg(value_enum, value_name = "SOURCE")]
    pub source: Option<Source>,
    /// The Secret's or the grant's name.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The Secret's key that holds the token: sasToken (default), sasUrl or connectionString.
    #[arg(long, default_value = KEY_SAS_TOKEN)]
    pub key: String,
    /// Output format: json. Default: a table of fields.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    Secret,
    Grant,
    #[value(name = "-")]
    Stdin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
}

/// Tokens are a few hundred bytes; the cap keeps `inspect < /dev/zero` from filling memory.
pub const INPUT_LIMIT: u64 = 64 * 1024;

pub async fn run(args: InspectArgs) -> Result<String, PluginError> {
    let text = match (args.source.unwrap_or(Source::Stdin), args.name.as_deref()) {
        (Source::Stdin, None) => read_stdin()?,
        (Source::Stdin, Some(_)) => {
            return Err(PluginError::Usage(
                "a NAME goes with `inspect secret NAME` or `inspect grant NAME`, not with stdin",
            ));
        }
        (Source::Secret | Source::Grant, None) => {
            return Err(PluginError::Usage(
                "missing NAME: `inspect secret NAME` or `inspect grant NAME`",
            ));
        }
        (source, Some(name)) => read_from_cluster(&args, source, name).await?,
    };
    let token = Token::parse(&text)?;
    Ok(match args.output {
        Some(Format::Json) => token.json(Timestamp::now()),
        None => token.table(Timestamp::now()),
    })
}

fn read_stdin() -> Result<String, PluginError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(INPUT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| PluginError::Stdin(err.to_string()))?;
    if bytes.len() as u64 > INPUT_LIMIT {
        return Err(TokenError::TooLong.into());
    }
    String::from_utf8(bytes).map_err(|_| TokenError::NotAToken.into())
}

async fn read_from_cluster(
    args: &InspectArgs,
    source: Source,
    name: &str,
) -> Result<String, PluginError> {
    let cluster = args.cluster.connect().await?;
    let namespace = cluster.namespace.as_str();
    let secret_name = match source {
        Source::Grant => {
            let grants: Api<SasGrant> = Api::namespaced(cluster.client.clone(), namespace);
            let grant = get(&grants, "SasGrant", namespace, name).await?;
            target_secret_name(&grant)
        }
        _ => name.to_string(),
    };
    let secrets: Api<Secret> = Api::namespaced(cluster.client, namespace);
    let secret = get(&secrets, "Secret", namespace, &secret_name).await?;
    let data = secret.data.unwrap_or_default();
    match data.get(&args.key) {
        Some(bytes) => String::from_utf8(bytes.0.clone()).map_err(|_| TokenError::NotAToken.into()),
        None => Err(PluginError::NoSecretKey {
            namespace: namespace.to_string(),
            name: secret_name,
            key: args.key.clone(),
            present: if data.is_empty() {
                "no keys".to_string()
            } else {
                data.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// The Secret a grant writes: its status says, else its spec, else the grant's own name.
fn target_secret_name(grant: &SasGrant) -> String {
    grant
        .status
        .as_ref()
        .and_then(|status| status.secret_name.clone())
        .or_else(|| grant.spec.target.as_ref()?.secret_name.clone())
        .unwrap_or_else(|| kube::ResourceExt::name_any(grant))
}

async fn get<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<K, PluginError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(PluginError::NotFound {
            kind,
            name: name.to_string(),
            scope: format!("namespace {namespace}"),
        }),
        Err(err) => Err(PluginError::Get {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: describe_kube_error(&err),
        }),
    }
}

/// Why the input is not a token. Never quotes the input: it may be a key given by mistake.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the input is empty")]
    Empty,
    #[error("the input is longer than {} KiB; a SAS token is at most a few KiB", INPUT_LIMIT / 1024)]
    TooLong,
    #[error(
        "the input is not a SAS token (not shown, in case it is a key): expected name=value \
         pairs joined by & with sv and sig, as in a token, a URL with one, or a connection \
         string with SharedAccessSignature="
    )]
    NotAToken,
    #[error("the connection string has more than one SharedAccessSignature")]
    SeveralTokens,
    #[error("the token has field {0} twice")]
    RepeatedField(String),
    #[error("the value of field {0} is not percent-encoded UTF-8")]
    BadEncoding(String),
}

/// A token's fields in the order it carries them, decoded; the signature only as "present".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    fields: Vec<(String, String)>,
}

/// Field names are a few lower-case letters; anything else is not a token (and not echoed).
fn is_field_name(name: &str) -> bool {
    (1..=16).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase())
}

impl Token {
    /// Reads a token (`sv=...&sig=...`, with or without `?`), a URL carrying one, or a
    /// connection string's `SharedAccessSignature=`.
    pub fn parse(input: &str) -> Result<Token, TokenError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(TokenError::Empty);
        }
        let query = if input.contains("SharedAccessSignature=") {
            let mut tokens = input
                .split(';')
                .filter_map(|part| part.trim().strip_prefix("SharedAccessSignature="));
            let token = tokens.next().ok_or(TokenError::NotAToken)?;
            if tokens.next().is_some() {
                return Err(TokenError::SeveralTokens);
            }
            token
        } else {
            input.split_once('?').map_or(input, |(_, query)| query)
        };
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut fields: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or(TokenError::NotAToken)?;
            if !is_field_name(name) {
                return Err(TokenError::NotAToken);
            }
            if fields.iter().any(|(seen, _)| seen == name) {
                return Err(TokenError::RepeatedField(name.to_string()));
            }
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| TokenError::BadEncoding(name.to_string()))?;
            fields.push((name.to_string(), decoded.into_owned()));
        }
        let has = |wanted: &str| fields.iter().any(|(name, _)| name == wanted);
        if !has("sv") || !has("sig") {
            return Err(TokenError::NotAToken);
        }
        // The signature is dropped here, so no later step can print it.
        fields.retain(|(name, _)| name != "sig");
        Ok(Token { fields })
    }

    fn get(&self, wanted: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    }

    /// `account SAS`, `blob SAS`, ...: from `ss`/`srt`, `sr`, or the table name.
    pub fn kind(&self) -> &'static str {
        if self.get("ss").is_some() || self.get("srt").is_some() {
            return "account SAS";
        }
        match self.get("sr") {
            Some("b") => "blob SAS",
            Some("bs") => "blob snapshot SAS",
            Some("bv") => "blob version SAS",
            Some("c") => "container SAS",
            Some("d") => "directory SAS",
            Some("s") => "share SAS",
            Some("f") => "file SAS",
            Some(_) => "SAS of an unknown resource",
            None if self.get("tn").is_some() => "table SAS",
            None => "queue SAS",
        }
    }

    /// What key signed it: a user delegation key carries its own fields (`skoid`, ...).
    pub fn signed_with(&self) -> &'static str {
        if self.get("skoid").is_some() {
            "user delegation key"
        } else {
            "account key"
        }
    }

    fn expiry(&self) -> Option<Timestamp> {
        self.get("se")?.parse().ok()
    }

    pub fn table(&self, now: Timestamp) -> String {
        let mut rows: Vec<[String; 3]> = vec![["FIELD".into(), "VALUE".into(), "MEANING".into()]];
        for (name, value) in &self.fields {
            rows.push([name.clone(), value.clone(), explain(name, value, now)]);
        }
        rows.push([
            "sig".into(),
            "(not shown)".into(),
            "signature (HMAC-SHA256)".into(),
        ]);
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (first, second) = (width(0), width(1));
        let kind = self.kind();
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "An"
        } else {
            "A"
        };
        let key = match self.signed_with() {
            "account key" => "an account key",
            _ => "a user delegation key",
        };
        let mut out = format!("{article} {kind}, signed with {key}.\n");
        if let Some(expiry) = self.expiry() {
            let state = if expiry < now { "Expired" } else { "Expires" };
            out.push_str(&format!(
                "{state} {} ({expiry}).\n\n",
                when::relative(expiry, now)
            ));
        } else {
            out.push_str("No expiry in the token (a stored access policy gives it).\n\n");
        }
        for [name, value, meaning] in &rows {
            let line = format!("{name:first$}   {value:second$}   {meaning}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn json(&self, now: Timestamp) -> String {
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        let expiry = self.expiry();
        let value = json!({
            "kind": self.kind(),
            "signedWith": self.signed_with(),
            "expiresAt": expiry.map(|t| t.to_string()),
            "expiresInSeconds": expiry.map(|t| when::seconds_until(t, now)),
            "fields": fields,
            "signature": "present, not shown",
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// What a field means, with its letters spelled out and its times made relative.
fn explain(name: &str, value: &str, now: Timestamp) -> String {
    let time = |what: &str| match value.parse::<Timestamp>() {
        Ok(at) => format!("{what} ({})", when::relative(at, now)),
        Err(_) => format!("{what} (not an RFC 3339 time)"),
    };
    let letters = |what: &str, table: &[(char, &str)]| {
        let spelled: Vec<&str> = value
            .chars()
            .map(|c| {
                table
                    .iter()
                    .find(|(letter, _)| *letter == c)
                    .map_or("?", |(_, word)| word)
            })
            .collect();
        format!("{what}: {}", spelled.join(", "))
    };
    match name {
        "sv" => "signed version".into(),
        "ss" => letters(
            "services",
            &[('b', "blob"), ('q', "queue"), ('t', "table"), ('f', "file")],
        ),
        "srt" => letters(
            "resource types",
            &[('s', "service"), ('c', "container"), ('o', "object")],
        ),
        "sp" => "permissions".into(),
        "st" => time("start"),
        "se" => time("expiry"),
        "sip" => "allowed client IP addresses".into(),
        "spr" => "allowed protocols".into(),
        "sr" => match value {
            "b" => "resource: blob",
            "bs" => "resource: blob snapshot",
            "bv" => "resource: blob version",
            "c" => "resource: container",
            "d" => "resource: directory",
            "s" => "resource: share",
            "f" => "resource: file",
            _ => "resource: unknown",
        }
        .into(),
        "sdd" => "directory depth".into(),
        "si" => "stored access policy".into(),
        "ses" => "encryption scope".into(),
        "tn" => "table".into(),
        "spk" => "table range: start partition key".into(),
        "srk" => "table range: start row key".into(),
        "epk" => "table range: end partition key".into(),
        "erk" => "table range: end row key".into(),
        "rscc" => "response Cache-Control".into(),
        "rscd" => "response Content-Disposition".into(),
        "rsce" => "response Content-Encoding".into(),
        "rscl" => "response Content-Language".into(),
        "rsct" => "response Content-Type".into(),
        "skoid" => "delegation key: object id of its owner".into(),
        "sktid" => "delegation key: tenant id".into(),
        "skt" => time("delegation key: start"),
        "ske" => time("delegation key: expiry"),
        "sks" => "delegation key: service".into(),
        "skv" => "delegation key: version".into(),
        "skdutid" => "delegation key: delegated user's tenant id".into(),
        "saoid" => "pre-authorized user object id".into(),
        "suoid" => "unauthorized user object id (checked by ACLs)".into(),
        "scid" => "correlation id".into(),
        "sduoid" => "the only user object id allowed to use it".into(),
        "srh" => "request headers the request must carry".into(),
        "srq" => "query parameters the request must carry".into(),
        _ => "unknown field".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "q0Kz%2B9vY3hF8Wl%2FAbCdEfGhIjKlMnOpQrStUvWxYz012345%3D";
    const SIG_DECODED: &str = "q0Kz+9vY3hF8Wl/AbCdEfGhIjKlMnOpQrStUvWxYz012345=";

    fn token() -> String {
        format!("se=2030-01-01T20%3A00%3A00Z&sp=rl&spr=https%2Chttp&sv=2025-11-05&sr=c&sig={SIG}")
    }

    fn now() -> Timestamp {
        "2030-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn fields_are_decoded_in_token_order() {
        let token = Token::parse(&token()).unwrap();
        assert_eq!(token.get("se"), Some("2030-01-01T20:00:00Z"));
        assert_eq!(token.get("spr"), Some("https,http"));
        assert_eq!(token.kind(), "container SAS");
        assert_eq!(token.signed_with(), "account key");
    }

    #[test]
    fn the_signature_is_never_printed() {
        let token = Token::parse(&token()).unwrap();
        for out in [token.table(now()), token.json(now())] {
            assert!(!out.contains(SIG), "{out}");
            assert!(!out.contains(SIG_DECODED), "{out}");
            assert!(!out.contains("q0Kz"), "{out}");
        }
        assert!(token.table(now()).contains("sig"));
    }

    #[test]
    fn the_table_explains_fields_and_times() {
        let out = Token::parse(&token()).unwrap().table(now());
        assert!(
            out.starts_with("A container SAS, signed with an account key.\n"),
            "{out}"
        );
        assert!(
            out.contains("Expires in 8h (2030-01-01T20:00:00Z)."),
            "{out}"
        );
        assert!(out.contains("expiry (in 8h)"), "{out}");
        assert!(out.contains("resource: container"), "{out}");
    }

    #[test]
    fn a_url_and_a_connection_string_carry_the_same_token() {
        let plain = Token::parse(&token()).unwrap();
        let url = format!("https://acct1.blob.core.windows.net/photos?{}", token());
        let connection = format!(
            "BlobEndpoint=https://acct1.blob.core.windows.net;SharedAccessSignature={}",
            token()
        );
        assert_eq!(Token::parse(&url).unwrap(), plain);
        assert_eq!(Token::parse(&connection).unwrap(), plain);
        assert_eq!(Token::parse(&format!("?{}\n", token())).unwrap(), plain);
    }

    #[test]
    fn a_user_delegation_account_and_table_sas_are_told_apart() {
        let delegation = Token::parse("sv=2025-11-05&sr=b&skoid=o&sktid=t&sig=x").unwrap();
        assert_eq!(delegation.signed_with(), "user delegation key");
        let account = Token::parse("sv=2025-11-05&ss=bq&srt=sco&sig=x").unwrap();
        assert_eq!(account.kind(), "account SAS");
        assert!(account.table(now()).contains("services: blob, queue"));
        assert_eq!(
            Token::parse("sv=2025-11-05&tn=t1&sig=x").unwrap().kind(),
            "table SAS"
        );
    }

    #[test]
    fn a_key_is_not_a_token_and_is_not_echoed() {
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let err = Token::parse(key).unwrap_err();
        assert_eq!(err, TokenError::NotAToken);
        assert!(!err.to_string().contains("Eby8"));
    }

    #[test]
    fn a_token_needs_a_version_and_a_signature() {
        assert_eq!(
            Token::parse("sv=2025-11-05&sp=r"),
            Err(TokenError::NotAToken)
        );
        assert_eq!(Token::parse("sp=r&sig=x"), Err(TokenError::NotAToken));
        assert_eq!(Token::parse("  \n"), Err(TokenError::Empty));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        assert_eq!(
            Token::parse("sv=1&sp=r&sp=w&sig=x"),
            Err(TokenError::RepeatedField("sp".into()))
        );
    }

    #[test]
    fn odd_field_names_are_refused_without_echo() {
        let err = Token::parse("sv=1&Secret-Stuff=1&sig=x").unwrap_err();
        assert_eq!(err, TokenError::NotAToken);
    }
}
