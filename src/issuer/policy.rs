//! Pure: whether an issuer's `spec.policy` allows a grant: the resource kind and its names,
//! the permissions, the validity and the protocol. Checked after the issuer is found (and a
//! `ClusterSasIssuer`'s `allowedNamespaces`), before anything of its credential is read.
//!
//! A policy is an allow-list: a kind it does not list is refused, a kind without a
//! `maxPermissions` entry allows no permission (the schema refuses such a policy; one stored
//! before is refused here with the fix in the message), and an absent `maxValidity` allows the
//! default validity, 8h. The issuer's author writes the patterns; the grant's names are any
//! tenant's, so they are matched by [`glob`](super::glob), which never backtracks.

use std::time::Duration;

use super::glob;
use crate::crd::{GrantProtocol, IssuerPolicy, MaxPermissions, PolicyResources};
use crate::reconcile::validate::{self, SpecError};
use crate::sas::Resource;

/// Patterns per list: each grant is matched against at most this many per field.
pub const POLICY_MAX_PATTERNS: usize = 16;
/// A container, share, queue or table pattern (names are at most 63 characters; the rest is
/// room for `{namespace}`).
pub const POLICY_NAME_PATTERN_MAX_LENGTH: usize = 128;
/// A blob name, directory or file path pattern.
pub const POLICY_PATH_PATTERN_MAX_LENGTH: usize = 256;
/// The longest validity a policy without `maxValidity` allows: the default validity.
pub const DEFAULT_MAX_VALIDITY: &str = crate::crd::DEFAULT_VALIDITY;

const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// What a grant asks of an issuer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The grant's namespace: what `{namespace}` stands for.
    pub namespace: &'a str,
    pub resource: &'a Resource,
    pub permissions: &'a str,
    /// The grant's validity, default applied.
    pub validity: Duration,
    /// `spec.validity` as written (None: the default), for messages.
    pub validity_text: Option<&'a str>,
    pub protocol: Option<GrantProtocol>,
}

/// Why a policy refuses a grant: the grant's field and the issuer's limit, for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error(
        "spec.resource.{kind} is not allowed: the issuer's policy lists no resources.{kind} (it signs {listed})"
    )]
    KindNotListed { kind: &'static str, listed: String },
    #[error("{field} {value} matches none of the issuer's {limit} {patterns}")]
    NameNotAllowed {
        field: &'static str,
        value: String,
        limit: &'static str,
        /// The patterns with `{namespace}` replaced.
        patterns: String,
    },
    #[error(
        "{field} {value} is refused by the issuer's policy: {rule}, so that its URL cannot resolve to another resource"
    )]
    UnsafeName {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error(
        "spec.permissions {asked:?} exceeds the issuer's maxPermissions.{kind} {max:?} (not allowed: {extra:?})"
    )]
    PermissionsExceed {
        kind: &'static str,
        asked: String,
        max: String,
        extra: String,
    },
    #[error(
        "the issuer's policy lists resources.{kind} but no maxPermissions.{kind}, so it allows no permission; add maxPermissions.{kind} (the letters its grants may ask for) to the issuer"
    )]
    NoMaxPermissions { kind: &'static str },
    #[error("{field} {asked:?} exceeds the issuer's {limit} {max:?} (not allowed: {extra:?})")]
    LettersExceed {
        field: &'static str,
        asked: String,
        limit: &'static str,
        max: String,
        extra: String,
    },
    #[error("spec.validity {asked} exceeds the issuer's maxValidity {max}")]
    ValidityExceeds { asked: String, max: String },
    #[error(
        "spec.protocol \"https,http\" is not allowed: the issuer's policy allows https only (protocols: https)"
    )]
    HttpNotAllowed,
}

/// Checks `request` against `policy`; the first field out of bounds is the denial.
pub fn evaluate(policy: &IssuerPolicy, request: &Request<'_>) -> Result<(), Denial> {
    let kind = kind_of(request.resource);
    resource(&policy.resources, request, kind)?;
    permissions(policy.max_permissions.as_ref(), request.permissions, kind)?;
    validity(policy.max_validity.as_deref(), request)?;
    if request.protocol == Some(GrantProtocol::HttpsAndHttp)
        && policy.protocols != Some(GrantProtocol::HttpsAndHttp)
    {
        return Err(Denial::HttpNotAllowed);
    }
    Ok(())
}

/// Checks a policy's own fields as admission does (for an issuer stored before the schema
/// had them, or written past admission): lengths, letters, patterns and `maxValidity`.
pub fn check(policy: &IssuerPolicy) -> Result<(), SpecError> {
    let resources = &policy.resources;
    if let Some(account) = &resources.account {
        validate::letters(
            "policy.resources.account.services",
            &account.services,
            "^[bqtf]+$",
            b"bqtf",
        )?;
        validate::letters(
            "policy.resources.account.resourceTypes",
            &account.resource_types,
            "^[sco]+$",
            b"sco",
        )?;
    }
    let name = POLICY_NAME_PATTERN_MAX_LENGTH;
    let path = POLICY_PATH_PATTERN_MAX_LENGTH;
    let lists: [(&'static str, Option<&Vec<String>>, usize); 10] = [
        (
            "policy.resources.container.names",
            resources.container.as_ref().map(|c| &c.names),
            name,
        ),
        (
            "policy.resources.blob.containers",
            resources.blob.as_ref().map(|b| &b.containers),
            name,
        ),
        (
            "policy.resources.blob.names",
            resources.blob.as_ref().and_then(|b| b.names.as_ref()),
            path,
        ),
        (
            "policy.resources.directory.containers",
            resources.directory.as_ref().map(|d| &d.containers),
            name,
        ),
        (
            "policy.resources.directory.paths",
            resources.directory.as_ref().and_then(|d| d.paths.as_ref()),
            path,
        ),
        (
            "policy.resources.share.names",
            resources.share.as_ref().map(|s| &s.names),
            name,
        ),
        (
            "policy.resources.file.shares",
            resources.file.as_ref().map(|f| &f.shares),
            name,
        ),
        (
            "policy.resources.file.paths",
            resources.file.as_ref().and_then(|f| f.paths.as_ref()),
            path,
        ),
        (
            "policy.resources.queue.names",
            resources.queue.as_ref().map(|q| &q.names),
            name,
        ),
        (
            "policy.resources.table.names",
            resources.table.as_ref().map(|t| &t.names),
            name,
        ),
    ];
    for (field, patterns, max) in lists {
        let Some(patterns) = patterns else { continue };
        if patterns.len() > POLICY_MAX_PATTERNS {
            return Err(SpecError::TooLong {
                field,
                max: POLICY_MAX_PATTERNS,
            });
        }
        for pattern in patterns {
            validate::text(field, pattern, max)?;
        }
    }
    if let Some(max) = &policy.max_permissions {
        for (kind, letters) in max_permission_entries(max) {
            if let Some(letters) = letters {
                validate::pattern_field(
                    kind_field(kind),
                    letters,
                    validate::PERMISSIONS_MAX_LENGTH,
                    "^[rwdxylacupftimeo]+$",
                    |p| !p.is_empty() && p.bytes().all(|b| b"rwdxylacupftimeo".contains(&b)),
                )?;
            }
        }
    }
    if let Some(text) = &policy.max_validity {
        let max = validate::duration_field("policy.maxValidity", text)?;
        if !(validate::MIN_VALIDITY..=validate::MAX_VALIDITY).contains(&max) {
            return Err(SpecError::MaxValidityOutOfRange);
        }
    }
    Ok(())
}

fn kind_of(resource: &Resource) -> &'static str {
    match resource {
        Resource::Account { .. } => "account",
        Resource::Container { .. } => "container",
        Resource::Blob { .. } => "blob",
        Resource::Directory { .. } => "directory",
        Resource::Share { .. } => "share",
        Resource::File { .. } => "file",
        Resource::Queue { .. } => "queue",
        Resource::Table { .. } => "table",
    }
}

/// The kinds a policy lists, for a refusal's message.
fn listed_kinds(resources: &PolicyResources) -> String {
    let listed: Vec<&str> = [
        ("account", resources.account.is_some()),
        ("container", resources.container.is_some()),
        ("blob", resources.blob.is_some()),
        ("directory", resources.directory.is_some()),
        ("share", resources.share.is_some()),
        ("file", resources.file.is_some()),
        ("queue", resources.queue.is_some()),
        ("table", resources.table.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, listed)| listed.then_some(kind))
    .collect();
    if listed.is_empty() {
        "nothing".into()
    } else {
        listed.join(", ")
    }
}

/// The resource kind is listed, and its names match the listed patterns.
fn resource(
    resources: &PolicyResources,
    request: &Request<'_>,
    kind: &'static str,
) -> Result<(), Denial> {
    let not_listed = || Denial::KindNotListed {
        kind,
        listed: listed_kinds(resources),
    };
    let ns = request.namespace;
    match request.resource {
        Resource::Account {
            services,
            resource_types,
        } => {
            let allowed = resources.account.as_ref().ok_or_else(not_listed)?;
            subset(
                "spec.resource.account.services",
                services,
                "resources.account.services",
                &allowed.services,
            )?;
            subset(
                "spec.resource.account.resourceTypes",
                resource_types,
                "resources.account.resourceTypes",
                &allowed.resource_types,
            )
        }
        Resource::Container { container } => {
            let allowed = resources.container.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.container.name",
                container,
                "resources.container.names",
                &allowed.names,
                ns,
            )
        }
        Resource::Blob {
            container, blob, ..
        } => {
            let allowed = resources.blob.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.blob.container",
                container,
                "resources.blob.containers",
                &allowed.containers,
                ns,
            )?;
            path_name(
                "spec.resource.blob.name",
                blob,
                "resources.blob.names",
                allowed.names.as_deref(),
                ns,
            )
        }
        Resource::Directory { container, path } => {
            let allowed = resources.directory.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.directory.container",
                container,
                "resources.directory.containers",
                &allowed.containers,
                ns,
            )?;
            path_name(
                "spec.resource.directory.path",
                path,
                "resources.directory.paths",
                allowed.paths.as_deref(),
                ns,
            )
        }
        Resource::Share { share } => {
            let allowed = resources.share.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.share.name",
                share,
                "resources.share.names",
                &allowed.names,
                ns,
            )
        }
        Resource::File { share, path } => {
            let allowed = resources.file.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.file.share",
                share,
                "resources.file.shares",
                &allowed.shares,
                ns,
            )?;
            path_name(
                "spec.resource.file.path",
                path,
                "resources.file.paths",
                allowed.paths.as_deref(),
                ns,
            )
        }
        Resource::Queue { queue } => {
            let allowed = resources.queue.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.queue.name",
                queue,
                "resources.queue.names",
                &allowed.names,
                ns,
            )
        }
        Resource::Table { table, .. } => {
            let allowed = resources.table.as_ref().ok_or_else(not_listed)?;
            single_name(
                "spec.resource.table.name",
                table,
                "resources.table.names",
                &allowed.names,
                ns,
            )
        }
    }
}

/// A container, share, queue or table name: one URL segment, matching one of `patterns`.
fn single_name(
    field: &'static str,
    value: &str,
    limit: &'static str,
    patterns: &[String],
    namespace: &str,
) -> Result<(), Denial> {
    if value.contains(['/', '\\']) || value == "." || value == ".." {
        return Err(Denial::UnsafeName {
            field,
            value: validate::shown(value),
            rule: "a container, share, queue or table name may not contain '/' or '\\' nor be '.' or '..'",
        });
    }
    matching(field, value, limit, patterns, namespace)
}

/// A blob name, directory or file path: no `.` or `..` segment and no `\` (whatever the
/// patterns), and matching one of `patterns` when the policy lists any.
fn path_name(
    field: &'static str,
    value: &str,
    limit: &'static str,
    patterns: Option<&[String]>,
    namespace: &str,
) -> Result<(), Denial> {
    if value.contains('\\') || value.split('/').any(|s| s == "." || s == "..") {
        return Err(Denial::UnsafeName {
            field,
            value: validate::shown(value),
            rule: "a path may not contain '\\' nor a '.' or '..' segment",
        });
    }
    match patterns {
        Some(patterns) => matching(field, value, limit, patterns, namespace),
        None => Ok(()),
    }
}

fn matching(
    field: &'static str,
    value: &str,
    limit: &'static str,
    patterns: &[String],
    namespace: &str,
) -> Result<(), Denial> {
    let patterns: Vec<String> = patterns
        .iter()
        .take(POLICY_MAX_PATTERNS)
        .map(|pattern| pattern.replace(NAMESPACE_PLACEHOLDER, namespace))
        .collect();
    if patterns.iter().any(|pattern| glob::matches(pattern, value)) {
        return Ok(());
    }
    Err(Denial::NameNotAllowed {
        field,
        value: validate::shown(value),
        limit,
        patterns: format!("{patterns:?}"),
    })
}

/// The grant's letters in `asked` are all among the policy's `max`.
fn subset(field: &'static str, asked: &str, limit: &'static str, max: &str) -> Result<(), Denial> {
    let extra = beyond(asked, max);
    if extra.is_empty() {
        return Ok(());
    }
    Err(Denial::LettersExceed {
        field,
        asked: asked.into(),
        limit,
        max: max.into(),
        extra,
    })
}

/// The letters of `asked` not in `max`, each once, in `asked`'s order.
fn beyond(asked: &str, max: &str) -> String {
    let mut extra = String::new();
    for letter in asked.chars() {
        if !max.contains(letter) && !extra.contains(letter) {
            extra.push(letter);
        }
    }
    extra
}

fn permissions(
    max: Option<&MaxPermissions>,
    asked: &str,
    kind: &'static str,
) -> Result<(), Denial> {
    let entry = max.and_then(|max| {
        max_permission_entries(max)
            .into_iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, letters)| letters)
    });
    let Some(max) = entry else {
        return Err(Denial::NoMaxPermissions { kind });
    };
    let extra = beyond(asked, max);
    if extra.is_empty() {
        return Ok(());
    }
    Err(Denial::PermissionsExceed {
        kind,
        asked: asked.into(),
        max: max.clone(),
        extra,
    })
}

fn max_permission_entries(max: &MaxPermissions) -> [(&'static str, Option<&String>); 8] {
    [
        ("account", max.account.as_ref()),
        ("container", max.container.as_ref()),
        ("blob", max.blob.as_ref()),
        ("directory", max.directory.as_ref()),
        ("share", max.share.as_ref()),
        ("file", max.file.as_ref()),
        ("queue", max.queue.as_ref()),
        ("table", max.table.as_ref()),
    ]
}

fn kind_field(kind: &'static str) -> &'static str {
    match kind {
        "account" => "policy.maxPermissions.account",
        "container" => "policy.maxPermissions.container",
        "blob" => "policy.maxPermissions.blob",
        "directory" => "policy.maxPermissions.directory",
        "share" => "policy.maxPermissions.share",
        "file" => "policy.maxPermissions.file",
        "queue" => "policy.maxPermissions.queue",
        _ => "policy.maxPermissions.table",
    }
}

fn validity(max_text: Option<&str>, request: &Request<'_>) -> Result<(), Denial> {
    let (max, shown_max) = match max_text {
        // `check` ran first: an unparsable maxValidity never gets here; refuse if it does.
        Some(text) => (
            crate::duration::parse(text).unwrap_or(Duration::ZERO),
            text.to_string(),
        ),
        None => (
            crate::duration::parse(DEFAULT_MAX_VALIDITY).unwrap_or(Duration::ZERO),
            format!("{DEFAULT_MAX_VALIDITY} (the default when the policy sets none)"),
        ),
    };
    if request.validity <= max {
        return Ok(());
    }
    let asked = match request.validity_text {
        Some(text) => text.to_string(),
        None => format!("{} (the default)", crate::crd::DEFAULT_VALIDITY),
    };
    Err(Denial::ValidityExceeds {
        asked,
        max: shown_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::TableKeyRange;

    /// The issue's policy, plus file and share entries.
    fn policy() -> IssuerPolicy {
        serde_json::from_value(serde_json::json!({
            "resources": {
                "container": {"names": ["{namespace}-*", "shared-reports"]},
                "blob": {"containers": ["{namespace}-*"]},
                "queue": {"names": ["{namespace}-*"]},
            },
            "maxPermissions": {"container": "rl", "blob": "rw", "queue": "rap"},
            "maxValidity": "24h",
            "protocols": "https",
        }))
        .unwrap()
    }

    fn with(edit: serde_json::Value) -> IssuerPolicy {
        let mut value = serde_json::to_value(policy()).unwrap();
        merge(&mut value, edit);
        serde_json::from_value(value).unwrap()
    }

    fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(serde_json::Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    fn container(name: &str) -> Resource {
        Resource::Container {
            container: name.into(),
        }
    }

    fn blob(container: &str, name: &str) -> Resource {
        Resource::Blob {
            container: container.into(),
            blob: name.into(),
            snapshot: None,
            version_id: None,
        }
    }

    fn account(services: &str, resource_types: &str) -> Resource {
        Resource::Account {
            services: services.into(),
            resource_types: resource_types.into(),
        }
    }

    fn request<'a>(resource: &'a Resource, permissions: &'a str) -> Request<'a> {
        Request {
            namespace: "apps",
            resource,
            permissions,
            validity: Duration::from_secs(8 * 3600),
            validity_text: None,
            protocol: None,
        }
    }

    fn denied(policy: &IssuerPolicy, request: &Request<'_>) -> String {
        evaluate(policy, request)
            .expect_err("must be denied")
            .to_string()
    }

    #[test]
    fn a_grant_inside_the_policy_is_allowed() {
        let policy = policy();
        for (resource, permissions) in [
            (container("apps-data"), "rl"),
            (container("shared-reports"), "l"),
            (blob("apps-data", "reports/2030/summary.csv"), "rw"),
            (
                Resource::Queue {
                    queue: "apps-jobs".into(),
                },
                "pa",
            ),
        ] {
            assert_eq!(
                evaluate(&policy, &request(&resource, permissions)),
                Ok(()),
                "{resource:?}"
            );
        }
    }

    #[test]
    fn namespace_in_a_pattern_is_the_grants_namespace() {
        let policy = policy();
        let theirs = container("other-data");
        let message = denied(&policy, &request(&theirs, "r"));
        assert_eq!(
            message,
            r#"spec.resource.container.name "other-data" matches none of the issuer's resources.container.names ["apps-*", "shared-reports"]"#
        );
        let mut from_other = request(&theirs, "r");
        from_other.namespace = "other";
        assert_eq!(evaluate(&policy, &from_other), Ok(()));
    }

    #[test]
    fn names_match_whole_not_in_part() {
        let policy = policy();
        for name in [
            "x-apps-data",
            "shared-reports-2",
            "apps",
            "my-shared-reports",
        ] {
            let resource = container(name);
            assert!(
                evaluate(&policy, &request(&resource, "r")).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_kind_the_policy_does_not_list_is_denied() {
        let policy = policy();
        let table = Resource::Table {
            table: "appsdata".into(),
            key_range: TableKeyRange::default(),
        };
        assert_eq!(
            denied(&policy, &request(&table, "r")),
            "spec.resource.table is not allowed: the issuer's policy lists no resources.table (it signs container, blob, queue)"
        );
        let file = Resource::File {
            share: "apps-files".into(),
            path: "a".into(),
        };
        assert!(denied(&policy, &request(&file, "r")).starts_with("spec.resource.file "));
    }

    #[test]
    fn an_account_sas_needs_the_policy_to_list_account() {
        let whole = account("bqtf", "sco");
        let message = denied(&policy(), &request(&whole, "rwdxylacupfti"));
        assert!(
            message.starts_with("spec.resource.account is not allowed"),
            "{message}"
        );
    }

    #[test]
    fn account_services_and_resource_types_must_be_subsets() {
        let policy = with(serde_json::json!({
            "resources": {"account": {"services": "b", "resourceTypes": "co"}},
            "maxPermissions": {"account": "rl"},
        }));
        let inside = account("b", "oc");
        assert_eq!(evaluate(&policy, &request(&inside, "lr")), Ok(()));
        let services = account("bqtf", "co");
        assert_eq!(
            denied(&policy, &request(&services, "r")),
            r#"spec.resource.account.services "bqtf" exceeds the issuer's resources.account.services "b" (not allowed: "qtf")"#
        );
        let types = account("b", "sco");
        assert_eq!(
            denied(&policy, &request(&types, "r")),
            r#"spec.resource.account.resourceTypes "sco" exceeds the issuer's resources.account.resourceTypes "co" (not allowed: "s")"#
        );
    }

    #[test]
    fn permissions_must_be_a_subset_of_the_kinds_max_permissions() {
        let policy = policy();
        let resource = container("apps-data");
        assert_eq!(
            denied(&policy, &request(&resource, "rwdl")),
            r#"spec.permissions "rwdl" exceeds the issuer's maxPermissions.container "rl" (not allowed: "wd")"#
        );
        // Another kind's larger maximum does not count.
        let queue = Resource::Queue {
            queue: "apps-q".into(),
        };
        assert!(denied(&policy, &request(&queue, "rw")).contains("maxPermissions.queue"));
    }

    #[test]
    fn a_listed_kind_without_max_permissions_allows_no_permission_and_says_how_to_fix_it() {
        let policy = with(serde_json::json!({"resources": {"share": {"names": ["*"]}}}));
        let share = Resource::Share {
            share: "apps-files".into(),
        };
        assert_eq!(
            denied(&policy, &request(&share, "r")),
            "the issuer's policy lists resources.share but no maxPermissions.share, so it allows no permission; add maxPermissions.share (the letters its grants may ask for) to the issuer"
        );
        let none = with(serde_json::json!({"maxPermissions": null}));
        let resource = container("apps-data");
        assert!(denied(&none, &request(&resource, "r")).contains("no maxPermissions.container"));
    }

    #[test]
    fn validity_must_not_exceed_max_validity() {
        let policy = policy();
        let resource = container("apps-data");
        let mut year = request(&resource, "r");
        year.validity = Duration::from_secs(8760 * 3600);
        year.validity_text = Some("8760h");
        assert_eq!(
            denied(&policy, &year),
            "spec.validity 8760h exceeds the issuer's maxValidity 24h"
        );
        let mut day = request(&resource, "r");
        day.validity = Duration::from_secs(24 * 3600);
        day.validity_text = Some("1440m");
        assert_eq!(evaluate(&policy, &day), Ok(()));
    }

    #[test]
    fn the_default_validity_counts_against_max_validity() {
        let policy = with(serde_json::json!({"maxValidity": "1h"}));
        let resource = container("apps-data");
        // The grant sets no validity: it asks for 8h.
        assert_eq!(
            denied(&policy, &request(&resource, "r")),
            "spec.validity 8h (the default) exceeds the issuer's maxValidity 1h"
        );
    }

    #[test]
    fn without_max_validity_a_policy_allows_the_default_validity_only() {
        let policy = with(serde_json::json!({"maxValidity": null}));
        let resource = container("apps-data");
        assert_eq!(evaluate(&policy, &request(&resource, "r")), Ok(()));
        let mut longer = request(&resource, "r");
        longer.validity = Duration::from_secs(9 * 3600);
        longer.validity_text = Some("9h");
        assert_eq!(
            denied(&policy, &longer),
            "spec.validity 9h exceeds the issuer's maxValidity 8h (the default when the policy sets none)"
        );
    }

    #[test]
    fn http_needs_the_policy_to_allow_it() {
        let resource = container("apps-data");
        let mut http = request(&resource, "r");
        http.protocol = Some(GrantProtocol::HttpsAndHttp);
        assert_eq!(
            denied(&policy(), &http),
            "spec.protocol \"https,http\" is not allowed: the issuer's policy allows https only (protocols: https)"
        );
        assert_eq!(
            denied(&with(serde_json::json!({"protocols": null})), &http),
            denied(&policy(), &http),
            "https only is the default"
        );
        let allows = with(serde_json::json!({"protocols": "https,http"}));
        assert_eq!(evaluate(&allows, &http), Ok(()));
        let mut https = http;
        https.protocol = Some(GrantProtocol::Https);
        assert_eq!(evaluate(&policy(), &https), Ok(()));
    }

    #[test]
    fn blob_names_directory_and_file_paths_match_their_patterns_when_listed() {
        let policy = with(serde_json::json!({
            "resources": {
                "blob": {"containers": ["{namespace}-*"], "names": ["{namespace}/*"]},
                "directory": {"containers": ["lake"], "paths": ["{namespace}", "{namespace}/*"]},
                "file": {"shares": ["files"], "paths": ["{namespace}/?.txt"]},
            },
            "maxPermissions": {"blob": "r", "directory": "r", "file": "r"},
        }));
        let ok = [
            blob("apps-data", "apps/a/b.csv"),
            Resource::Directory {
                container: "lake".into(),
                path: "apps".into(),
            },
            Resource::File {
                share: "files".into(),
                path: "apps/x.txt".into(),
            },
        ];
        for resource in &ok {
            assert_eq!(
                evaluate(&policy, &request(resource, "r")),
                Ok(()),
                "{resource:?}"
            );
        }
        let theirs = blob("apps-data", "other/a.csv");
        assert!(denied(&policy, &request(&theirs, "r")).contains("resources.blob.names"));
        let wrong_container = blob("other-data", "apps/a.csv");
        assert!(
            denied(&policy, &request(&wrong_container, "r")).contains("resources.blob.containers")
        );
        let directory = Resource::Directory {
            container: "lake".into(),
            path: "other".into(),
        };
        assert!(denied(&policy, &request(&directory, "r")).contains("resources.directory.paths"));
        let file = Resource::File {
            share: "files".into(),
            path: "apps/xy.txt".into(),
        };
        assert!(denied(&policy, &request(&file, "r")).contains("resources.file.paths"));
    }

    #[test]
    fn dot_segments_and_slashes_never_pass_a_policy() {
        let policy = with(serde_json::json!({
            "resources": {"blob": {"containers": ["*"]}, "container": {"names": ["*"]}},
            "maxPermissions": {"blob": "r", "container": "r"},
        }));
        for resource in [
            blob("apps-data", "../other-data/secret"),
            blob("apps-data", "a/./b"),
            blob("apps-data", "a\\b"),
            blob("apps-data/../other", "x"),
            container("apps-x/../other"),
            container(".."),
        ] {
            let message = denied(&policy, &request(&resource, "r"));
            assert!(
                message.contains("is refused by the issuer's policy"),
                "{message}"
            );
        }
        let dots_in_names = blob("apps-data", "v1.2/..x/a..b");
        assert_eq!(evaluate(&policy, &request(&dots_in_names, "r")), Ok(()));
    }

    #[test]
    fn a_long_hostile_name_is_shown_cut_and_escaped() {
        let resource = blob("apps-data", &format!("x\u{2028}{}", "y".repeat(1000)));
        let policy = with(serde_json::json!({
            "resources": {"blob": {"containers": ["*"], "names": ["z*"]}},
        }));
        let message = denied(&policy, &request(&resource, "r"));
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn a_stored_policy_is_checked_as_admission_would() {
        assert_eq!(check(&policy()), Ok(()));
        let year = with(serde_json::json!({"maxValidity": "8761h"}));
        assert_eq!(check(&year), Err(SpecError::MaxValidityOutOfRange));
        let malformed = with(serde_json::json!({"maxValidity": "1d"}));
        assert_eq!(check(&malformed).unwrap_err().category(), "InvalidDuration");
        let letters = with(serde_json::json!({"maxPermissions": {"container": "rl!"}}));
        assert_eq!(check(&letters).unwrap_err().category(), "InvalidField");
        let many = with(serde_json::json!({"resources": {"queue": {"names": vec!["q"; 17]}}}));
        assert_eq!(check(&many).unwrap_err().category(), "FieldTooLong");
        let long = with(serde_json::json!({"resources": {"queue": {"names": ["q".repeat(129)]}}}));
        assert_eq!(check(&long).unwrap_err().category(), "FieldTooLong");
        let control = with(serde_json::json!({"resources": {"container": {"names": ["a\nb"]}}}));
        assert_eq!(check(&control).unwrap_err().category(), "ControlCharacter");
        let services = with(serde_json::json!({
            "resources": {"account": {"services": "bx", "resourceTypes": "s"}},
        }));
        assert_eq!(check(&services).unwrap_err().category(), "InvalidField");
    }
}
