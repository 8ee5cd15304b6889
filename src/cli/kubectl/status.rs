//! `kubectl sas status [grants|issuers] [NAME...]`: what the operator reports in the grants'
//! and issuers' status, with times made relative. Reads status only; never a Secret.

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::{ClusterArgs, PluginError, describe_kube_error, when};
use crate::crd::{
    ClusterSasIssuer, GrantCondition, GrantResource, IssuerStatus, SasGrant, SasIssuer,
};
use crate::reconcile::status::CONDITION_READY;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `grants` (default) or `issuers` (SasIssuers and ClusterSasIssuers), then names to
    /// show (default: all). `status NAME` is `status grants NAME`.
    #[arg(value_name = "grants|issuers] [NAME")]
    pub words: Vec<String>,
    /// Output format: wide (more columns) or json. Default: a table.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Grants,
    Issuers,
}

/// What `status` was asked for: a leading `grants` or `issuers` (singular too) picks the
/// subject; any other word is already a grant's name.
pub fn subject_and_names(words: &[String]) -> (Subject, &[String]) {
    match words.split_first() {
        Some((first, rest)) if matches!(first.as_str(), "grants" | "grant" | "sasgrants") => {
            (Subject::Grants, rest)
        }
        Some((first, rest)) if matches!(first.as_str(), "issuers" | "issuer") => {
            (Subject::Issuers, rest)
        }
        _ => (Subject::Grants, words),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Json,
}

pub async fn run(args: StatusArgs) -> Result<String, PluginError> {
    let cluster = args.cluster.connect().await?;
    let scope = Scope {
        namespace: (!args.all_namespaces).then(|| cluster.namespace.clone()),
    };
    let now = Timestamp::now();
    let (subject, names) = subject_and_names(&args.words);
    match subject {
        Subject::Grants => {
            let grants = list_grants(&cluster.client, &scope).await?;
            let rows = select(grants.iter().map(grant_row).collect(), names, &scope)?;
            if rows.is_empty() && args.output != Some(Format::Json) {
                // As kubectl says it: on stderr, so stdout stays a table or nothing.
                eprintln!("No grants found in {}.", scope.describe());
            }
            Ok(render_grants(&rows, &scope, args.output, now))
        }
        Subject::Issuers => {
            let (rows, warning) = list_issuers(&cluster.client, &scope).await?;
            if let Some(warning) = warning {
                eprintln!("warning: {warning}");
            }
            let rows = select(rows, names, &scope)?;
            if rows.is_empty() && args.output != Some(Format::Json) {
                eprintln!("No issuers found in {} or the cluster.", scope.describe());
            }
            Ok(render_issuers(&rows, args.output, now))
        }
    }
}

/// One namespace, or every namespace.
pub struct Scope {
    pub namespace: Option<String>,
}

impl Scope {
    fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("namespace {namespace}"),
            None => "any namespace".to_string(),
        }
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
}

async fn list_grants(client: &Client, scope: &Scope) -> Result<Vec<SasGrant>, PluginError> {
    let api: Api<SasGrant> = scope.api(client);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|err| PluginError::List {
            what: format!("SasGrants in {}", scope.describe()),
            reason: describe_kube_error(&err),
        })?;
    Ok(list.items)
}

/// The SasIssuers of the scope and every ClusterSasIssuer. A user allowed to read only their
/// namespace still sees its issuers: a refused ClusterSasIssuer list is a warning.
async fn list_issuers(
    client: &Client,
    scope: &Scope,
) -> Result<(Vec<IssuerRow>, Option<String>), PluginError> {
    let namespaced: Api<SasIssuer> = scope.api(client);
    let mut rows: Vec<IssuerRow> = namespaced
        .list(&ListParams::default())
        .await
        .map_err(|err| PluginError::List {
            what: format!("SasIssuers in {}", scope.describe()),
            reason: describe_kube_error(&err),
        })?
        .items
        .iter()
        .map(IssuerRow::of_namespaced)
        .collect();
    let cluster_wide: Api<ClusterSasIssuer> = Api::all(client.clone());
    let warning = match cluster_wide.list(&ListParams::default()).await {
        Ok(list) => {
            rows.extend(list.items.iter().map(IssuerRow::of_cluster));
            None
        }
        Err(kube::Error::Api(status)) if status.is_forbidden() => Some(format!(
            "not allowed to list ClusterSasIssuers, showing SasIssuers only ({})",
            status.message
        )),
        Err(err) => {
            return Err(PluginError::List {
                what: "ClusterSasIssuers".to_string(),
                reason: describe_kube_error(&err),
            });
        }
    };
    Ok((rows, warning))
}

trait Named {
    /// What a name that matches nothing is reported as.
    const KIND: &'static str;
    fn name(&self) -> &str;
}

/// Keeps the rows named in `names` (all when empty); a name that matches nothing is an error.
fn select<R: Named>(rows: Vec<R>, names: &[String], scope: &Scope) -> Result<Vec<R>, PluginError> {
    if names.is_empty() {
        return Ok(rows);
    }
    if let Some(missing) = names
        .iter()
        .find(|name| !rows.iter().any(|row| row.name() == name.as_str()))
    {
        return Err(PluginError::NotFound {
            kind: R::KIND,
            name: missing.clone(),
            scope: scope.describe(),
        });
    }
    Ok(rows
        .into_iter()
        .filter(|row| names.iter().any(|name| name == row.name()))
        .collect())
}

/// What `status` shows of one grant.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRow {
    pub namespace: String,
    pub name: String,
    pub ready: Option<GrantCondition>,
    pub resource: String,
    pub secret: String,
    pub issuer: String,
    pub expires_at: Option<String>,
    pub renews_at: Option<String>,
    pub last_rotation: Option<String>,
    pub token_hash: Option<String>,
    /// Whether the status describes the current spec (`observedGeneration` = `generation`).
    pub up_to_date: bool,
}

impl Named for GrantRow {
    const KIND: &'static str = "SasGrant";
    fn name(&self) -> &str {
        &self.name
    }
}

pub fn grant_row(grant: &SasGrant) -> GrantRow {
    let status = grant.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .cloned();
    let issuer = match (&grant.spec.issuer_ref, &grant.spec.storage_account) {
        (Some(issuer), _) => format!("{}/{}", issuer.kind.as_str(), issuer.name),
        (None, Some(account)) => format!("storageAccount/{}", account.name),
        (None, None) => "-".to_string(),
    };
    let secret = status
        .secret_name
        .clone()
        .or_else(|| grant.spec.target.as_ref()?.secret_name.clone())
        .unwrap_or_else(|| grant.name_any());
    GrantRow {
        namespace: grant.namespace().unwrap_or_default(),
        name: grant.name_any(),
        ready,
        resource: status
            .resource_kind
            .clone()
            .unwrap_or_else(|| resource_kind(&grant.spec.resource).to_string()),
        secret,
        issuer,
        expires_at: status.expires_at,
        renews_at: status.renews_at,
        last_rotation: status.last_rotation_time,
        token_hash: status.token_hash,
        up_to_date: status.observed_generation == grant.metadata.generation,
    }
}

/// The kind a grant asks for, before the operator has said so in its status.
fn resource_kind(resource: &GrantResource) -> &'static str {
    let kinds = [
        (resource.account.is_some(), "account"),
        (resource.container.is_some(), "container"),
        (resource.blob.is_some(), "blob"),
        (resource.directory.is_some(), "directory"),
        (resource.share.is_some(), "share"),
        (resource.file.is_some(), "file"),
        (resource.queue.is_some(), "queue"),
        (resource.table.is_some(), "table"),
    ];
    kinds
        .iter()
        .find(|(set, _)| *set)
        .map_or("-", |(_, kind)| kind)
}

/// What `status issuers` shows of one issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerRow {
    pub kind: &'static str,
    /// None for a ClusterSasIssuer.
    pub namespace: Option<String>,
    pub name: String,
    pub ready: Option<GrantCondition>,
    pub account: String,
    pub credential: &'static str,
    /// `signedExpiry` of the user delegation key (workload identity only).
    pub key_expires_at: Option<String>,
}

impl Named for IssuerRow {
    const KIND: &'static str = "issuer";
    fn name(&self) -> &str {
        &self.name
    }
}

impl IssuerRow {
    fn of_namespaced(issuer: &SasIssuer) -> IssuerRow {
        IssuerRow::new(
            "SasIssuer",
            issuer.namespace(),
            issuer.name_any(),
            issuer.status.as_ref(),
            &issuer.spec.storage_account.name,
            issuer.spec.workload_identity.is_some(),
        )
    }

    fn of_cluster(issuer: &ClusterSasIssuer) -> IssuerRow {
        IssuerRow::new(
            "ClusterSasIssuer",
            None,
            issuer.name_any(),
            issuer.status.as_ref(),
            &issuer.spec.storage_account.name,
            issuer.spec.workload_identity.is_some(),
        )
    }

    fn new(
        kind: &'static str,
        namespace: Option<String>,
        name: String,
        status: Option<&IssuerStatus>,
        account: &str,
        workload_identity: bool,
    ) -> IssuerRow {
        IssuerRow {
            kind,
            namespace,
            name,
            ready: status.and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == CONDITION_READY)
                    .cloned()
            }),
            account: account.to_string(),
            credential: if workload_identity {
                "workloadIdentity"
            } else {
                "accountKey"
            },
            key_expires_at: status.and_then(|s| s.signed_expiry.clone()),
        }
    }
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text?.parse().ok()
}

fn dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_string()
}

fn ready_status(ready: &Option<GrantCondition>) -> String {
    dash(ready.as_ref().map(|c| c.status.as_str()))
}

fn ready_reason(ready: &Option<GrantCondition>) -> String {
    dash(ready.as_ref().map(|c| c.reason.as_str()))
}

pub fn render_grants(
    rows: &[GrantRow],
    scope: &Scope,
    format: Option<Format>,
    now: Timestamp,
) -> String {
    if format == Some(Format::Json) {
        let items: Vec<Value> = rows.iter().map(|row| grant_json(row, now)).collect();
        return pretty(json!({ "items": items }));
    }
    if rows.is_empty() {
        return String::new();
    }
    let wide = format == Some(Format::Wide);
    let all_namespaces = scope.namespace.is_none();
    let mut header = vec![];
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "READY",
        "REASON",
        "RESOURCE",
        "SECRET",
        "EXPIRES IN",
        "RENEWS IN",
        "LAST ROTATION",
        "ISSUER",
    ]);
    if wide {
        header.extend(["EXPIRES AT", "RENEWS AT", "TOKEN HASH", "MESSAGE"]);
    }
    let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for row in rows {
        let expires = parse_time(row.expires_at.as_deref());
        let renews = parse_time(row.renews_at.as_deref());
        let rotated = parse_time(row.last_rotation.as_deref());
        let mut line = vec![];
        if all_namespaces {
            line.push(row.namespace.clone());
        }
        line.extend([
            row.name.clone(),
            ready_status(&row.ready),
            ready_reason(&row.ready),
            row.resource.clone(),
            row.secret.clone(),
            expires.map_or("-".into(), |at| when::until(at, now, "expired")),
            renews.map_or("-".into(), |at| when::until(at, now, "overdue")),
            rotated.map_or("-".into(), |at| when::ago(at, now)),
            row.issuer.clone(),
        ]);
        if wide {
            line.extend([
                dash(row.expires_at.as_deref()),
                dash(row.renews_at.as_deref()),
                dash(row.token_hash.as_deref()),
                message(&row.ready, row.up_to_date),
            ]);
        }
        table.push(line);
    }
    columns(&table)
}

/// The Ready message, noting when it describes an older spec than the current one.
fn message(ready: &Option<GrantCondition>, up_to_date: bool) -> String {
    let text = dash(ready.as_ref().map(|c| c.message.as_str()));
    if up_to_date {
        text
    } else {
        format!("(for an older generation) {text}")
    }
}

fn grant_json(row: &GrantRow, now: Timestamp) -> Value {
    let expires = parse_time(row.expires_at.as_deref());
    let renews = parse_time(row.renews_at.as_deref());
    json!({
        "namespace": row.namespace,
        "name": row.name,
        "ready": row.ready.as_ref().map(|c| &c.status),
        "reason": row.ready.as_ref().map(|c| &c.reason),
        "message": row.ready.as_ref().map(|c| &c.message),
        "upToDate": row.up_to_date,
        "resource": row.resource,
        "secret": row.secret,
        "issuer": row.issuer,
        "expiresAt": row.expires_at,
        "expiresInSeconds": expires.map(|at| when::seconds_until(at, now)),
        "renewsAt": row.renews_at,
        "renewsInSeconds": renews.map(|at| when::seconds_until(at, now)),
        "lastRotationTime": row.last_rotation,
        "tokenHash": row.token_hash,
    })
}

pub fn render_issuers(rows: &[IssuerRow], format: Option<Format>, now: Timestamp) -> String {
    if format == Some(Format::Json) {
        let items: Vec<Value> = rows
            .iter()
            .map(|row| {
                let expires = parse_time(row.key_expires_at.as_deref());
                json!({
                    "kind": row.kind,
                    "namespace": row.namespace,
                    "name": row.name,
                    "ready": row.ready.as_ref().map(|c| &c.status),
                    "reason": row.ready.as_ref().map(|c| &c.reason),
                    "message": row.ready.as_ref().map(|c| &c.message),
                    "account": row.account,
                    "credential": row.credential,
                    "keyExpiresAt": row.key_expires_at,
                    "keyExpiresInSeconds": expires.map(|at| when::seconds_until(at, now)),
                })
            })
            .collect();
        return pretty(json!({ "items": items }));
    }
    if rows.is_empty() {
        return String::new();
    }
    let wide = format == Some(Format::Wide);
    let mut header = vec![
        "KIND",
        "NAMESPACE",
        "NAME",
        "READY",
        "REASON",
        "ACCOUNT",
        "CREDENTIAL",
        "KEY EXPIRES IN",
    ];
    if wide {
        header.extend(["KEY EXPIRES AT", "MESSAGE"]);
    }
    let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for row in rows {
        let expires = parse_time(row.key_expires_at.as_deref());
        let mut line = vec![
            row.kind.to_string(),
            dash(row.namespace.as_deref()),
            row.name.clone(),
            ready_status(&row.ready),
            ready_reason(&row.ready),
            row.account.clone(),
            row.credential.to_string(),
            expires.map_or("-".into(), |at| when::until(at, now, "expired")),
        ];
        if wide {
            line.extend([
                dash(row.key_expires_at.as_deref()),
                dash(row.ready.as_ref().map(|c| c.message.as_str())),
            ]);
        }
        table.push(line);
    }
    columns(&table)
}

fn pretty(value: Value) -> String {
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Left-aligned columns three spaces apart, as kubectl prints them; the last column unpadded.
fn columns(table: &[Vec<String>]) -> String {
    let count = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            table
                .iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2030-01-01T12:00:00Z";

    fn grant(status: Value) -> SasGrant {
        serde_json::from_value(json!({
            "apiVersion": "sas-operator.io/v1alpha1",
            "kind": "SasGrant",
            "metadata": {"name": "photos", "namespace": "team-a", "generation": 2},
            "spec": {
                "issuerRef": {"kind": "ClusterSasIssuer", "name": "shared"},
                "resource": {"container": {"name": "photos"}},
                "permissions": "rl",
                "target": {"secretName": "photos-sas"},
            },
            "status": status,
        }))
        .expect("a valid SasGrant")
    }

    fn ready_grant() -> SasGrant {
        grant(json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "TokenValid",
                "message": "token valid until 2030-01-01T20:00:00Z",
                "lastTransitionTime": "2030-01-01T11:50:00Z",
            }],
            "observedGeneration": 2,
            "resourceKind": "container",
            "secretName": "photos-sas",
            "expiresAt": "2030-01-01T20:00:00Z",
            "renewsAt": "2030-01-01T17:20:00Z",
            "lastRotationTime": "2030-01-01T11:50:00Z",
            "tokenHash": "ab12cd34",
        }))
    }

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn one_namespace() -> Scope {
        Scope {
            namespace: Some("team-a".into()),
        }
    }

    #[test]
    fn a_ready_grant_shows_its_expiry_renewal_and_rotation_relative_to_now() {
        let out = render_grants(&[grant_row(&ready_grant())], &one_namespace(), None, now());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "photos",
                "True",
                "TokenValid",
                "container",
                "photos-sas",
                "8h",
                "5h20m",
                "10m",
                "ClusterSasIssuer/shared"
            ]
        );
        assert!(lines[0].starts_with("NAME "), "{out}");
    }

    #[test]
    fn all_namespaces_adds_the_namespace_column() {
        let out = render_grants(
            &[grant_row(&ready_grant())],
            &Scope { namespace: None },
            None,
            now(),
        );
        assert!(out.starts_with("NAMESPACE "), "{out}");
        assert!(out.lines().nth(1).unwrap().starts_with("team-a "), "{out}");
    }

    #[test]
    fn wide_adds_absolute_times_the_token_hash_and_the_message() {
        let out = render_grants(
            &[grant_row(&ready_grant())],
            &one_namespace(),
            Some(Format::Wide),
            now(),
        );
        assert!(out.contains("TOKEN HASH"), "{out}");
        assert!(out.contains("2030-01-01T20:00:00Z"), "{out}");
        assert!(out.contains("ab12cd34"), "{out}");
        assert!(out.contains("token valid until"), "{out}");
    }

    #[test]
    fn json_gives_seconds_until_expiry_and_renewal() {
        let out = render_grants(
            &[grant_row(&ready_grant())],
            &one_namespace(),
            Some(Format::Json),
            now(),
        );
        let value: Value = serde_json::from_str(&out).unwrap();
        let item = &value["items"][0];
        assert_eq!(item["ready"], "True");
        assert_eq!(item["expiresInSeconds"], 8 * 3600);
        assert_eq!(item["renewsInSeconds"], 5 * 3600 + 20 * 60);
        assert_eq!(item["issuer"], "ClusterSasIssuer/shared");
        assert_eq!(item["upToDate"], true);
    }

    #[test]
    fn a_grant_not_yet_reconciled_shows_its_spec_and_dashes() {
        let row = grant_row(&grant(json!({})));
        assert_eq!(row.resource, "container");
        assert_eq!(row.secret, "photos-sas");
        assert!(!row.up_to_date);
        let out = render_grants(&[row], &one_namespace(), None, now());
        let cells: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "photos",
                "-",
                "-",
                "container",
                "photos-sas",
                "-",
                "-",
                "-",
                "ClusterSasIssuer/shared"
            ]
        );
    }

    #[test]
    fn an_expired_token_and_an_overdue_renewal_say_so() {
        let later: Timestamp = "2030-01-02T00:00:00Z".parse().unwrap();
        let out = render_grants(&[grant_row(&ready_grant())], &one_namespace(), None, later);
        let row = out.lines().nth(1).unwrap();
        assert!(row.contains(" expired "), "{out}");
        assert!(row.contains(" overdue "), "{out}");
    }

    #[test]
    fn a_workload_identity_issuer_shows_when_its_delegation_key_expires() {
        let issuer: SasIssuer = serde_json::from_value(json!({
            "apiVersion": "sas-operator.io/v1alpha1",
            "kind": "SasIssuer",
            "metadata": {"name": "wi", "namespace": "team-a"},
            "spec": {
                "storageAccount": {"name": "acct1"},
                "workloadIdentity": {
                    "clientId": "00000000-0000-0000-0000-000000000001",
                    "tenantId": "00000000-0000-0000-0000-000000000002",
                    "serviceAccountName": "signer",
                },
            },
            "status": {"signedExpiry": "2030-01-01T13:30:00Z"},
        }))
        .unwrap();
        let out = render_issuers(&[IssuerRow::of_namespaced(&issuer)], None, now());
        let cells: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "SasIssuer",
                "team-a",
                "wi",
                "-",
                "-",
                "acct1",
                "workloadIdentity",
                "90m"
            ]
        );
    }

    #[test]
    fn a_leading_grants_or_issuers_picks_the_subject_and_any_other_word_is_a_name() {
        let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let issuers = words(&["issuers", "team-key"]);
        assert_eq!(
            subject_and_names(&issuers),
            (Subject::Issuers, &issuers[1..])
        );
        let grants = words(&["grant", "photos"]);
        assert_eq!(subject_and_names(&grants), (Subject::Grants, &grants[1..]));
        let bare = words(&["photos", "issuers"]);
        assert_eq!(subject_and_names(&bare), (Subject::Grants, &bare[..]));
        assert_eq!(subject_and_names(&[]), (Subject::Grants, &[][..]));
    }

    #[test]
    fn a_name_that_matches_nothing_is_not_found() {
        let rows = vec![grant_row(&ready_grant())];
        let err = select(rows, &["nope".into()], &one_namespace()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SasGrant \"nope\" not found in namespace team-a"
        );
        assert_eq!(err.exit_code(), 1);
    }
}
