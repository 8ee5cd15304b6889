//! The `SasGrant` custom resource: what to sign, with which key, into which Secret.
//!
//! Validation that the API server can enforce lives here as schema patterns and CEL rules, so
//! `kubectl apply` rejects a bad grant before the controller ever sees it.

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{MAX_LENGTH as DURATION_MAX_LENGTH, PATTERN as DURATION_PATTERN};
use crate::issuer::policy::{
    POLICY_MAX_PATTERNS, POLICY_NAME_PATTERN_MAX_LENGTH, POLICY_PATH_PATTERN_MAX_LENGTH,
};
use crate::reconcile::validate::{
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, ENDPOINT_PATTERN, IP_PATTERN, NO_CONTROL_PATTERN,
    SECRET_KEY_PATTERN, UUID_PATTERN,
};

// Every pattern, length and rule here has a twin in `reconcile::validate`, which the
// controller applies before any API call; `tests/admission.rs` holds the two to agreement.

/// Letters any resource kind accepts; the controller checks the letters per kind.
const PERMISSION_PATTERN: &str = "^[rwdxylacupftimeo]+$";

pub const DEFAULT_VALIDITY: &str = "8h";
pub const DEFAULT_KEY_NAME: &str = "key1";

/// A grant of a shared access signature, signed into a Secret and re-signed before it expires.
// Each printcolumn(...) repeats `type_`/`priority`; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sas-operator.io",
    version = "v1alpha1",
    kind = "SasGrant",
    namespaced,
    shortname = "sasg",
    doc = "A grant of an Azure Storage shared access signature, kept fresh in a Secret",
    status = "SasGrantStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Resource",
        type_ = "string",
        json_path = ".status.resourceKind"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.secretName",
        priority = "1"
    ),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// A token stays in use for at least max(1m, validity/10) before it is renewed, so no spec can
// make the operator re-sign in a loop. `m+m+...` (ten times) is 10*m: CEL durations do not
// multiply; `[x].all(v, ...)` binds a name (CRD rules lack cel.bind). An out-of-range validity
// is left to its own rule.
#[x_kube(validation = Rule::new(
    "!has(self.renewBefore) || [duration(has(self.validity) ? self.validity : '8h')].all(v, v > duration('8760h') || [v - duration(self.renewBefore)].all(m, m >= duration('1m') && m+m+m+m+m+m+m+m+m+m >= v))"
).message("renewBefore must be shorter than validity by at least max(1m, validity/10), so a token stays in use that long (default validity 8h)"))]
#[x_kube(validation = Rule::new("has(self.issuerRef) != has(self.storageAccount)")
    .message("exactly one of issuerRef and storageAccount must be set"))]
#[serde(rename_all = "camelCase")]
pub struct SasGrantSpec {
    /// The short form of a same-namespace account-key issuer: the account and its key Secret.
    /// Exactly one of `storageAccount` and `issuerRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<StorageAccount>,
    /// The `SasIssuer` (same namespace) or `ClusterSasIssuer` that signs this grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// What the token grants access to: exactly one resource kind.
    pub resource: GrantResource,
    /// Permission letters, in any order; the signer emits Azure's canonical order.
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub permissions: String,
    /// Token lifetime: whole numbers with units ns, us, ms, s, m or h (`8h`, `1h30m`), between
    /// 2m and 8760h (365d). Default 8h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = DURATION_MAX_LENGTH))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('2m') && duration(self) <= duration('8760h')")
        .message("validity must be between 2m and 8760h (365d)"))]
    pub validity: Option<String>,
    /// Re-sign this long before expiry; the token must stay in use at least max(1m,
    /// validity/10) first. Default: a third of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = DURATION_MAX_LENGTH))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("renewBefore must be positive"))]
    pub renew_before: Option<String>,
    /// `https` (default) or `https,http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<GrantProtocol>,
    /// An IPv4 address or ascending range (`a.b.c.d` or `a.b.c.d-e.f.g.h`) the token is
    /// restricted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(IP_PATTERN), length(max = 31))]
    #[x_kube(validation = Rule::new(
        "!self.contains('-') || [self.split('-').map(a, a.split('.').map(o, int(o))).map(q, ((q[0] * 256 + q[1]) * 256 + q[2]) * 256 + q[3])].all(n, n[0] <= n[1])"
    ).message("an ip range must not end before it starts"))]
    pub ip: Option<String>,
    /// Signed version `sv`. Default: the newest version the signer proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), length(max = 10))]
    pub version: Option<String>,
    /// A stored access policy id (`si`) on the container, share, queue or table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 64))]
    pub stored_access_policy: Option<String>,
    /// Encryption scope (`ses`) for blob and account SAS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub encryption_scope: Option<String>,
    /// The Secret the token is written into (keys sasToken, sasUrl, connectionString, expiresAt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSecret>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccount {
    /// Storage account name.
    #[schemars(pattern(r"^[a-z0-9]{3,24}$"), length(max = 24))]
    pub name: String,
    /// A Secret in the grant's own namespace that holds the account key.
    pub key_secret_ref: KeySecretRef,
    /// Service endpoints; default `https://{name}.{service}.core.windows.net`. Each must be an
    /// https URL without user, query, fragment, `;` or `=` (http only to localhost,
    /// 127.0.0.0/8 or [::1], where emulators run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
}

/// Names a key in a Secret of the grant's namespace. There is deliberately no namespace field:
/// a grant can only use a key its own namespace can read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeySecretRef {
    /// Name of the Secret, in the grant's namespace (a DNS-1123 subdomain).
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub name: String,
    /// Key within the Secret's data. Default `key1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SECRET_KEY_PATTERN), length(max = 253))]
    #[x_kube(validation = Rule::new("self != '.' && !self.startsWith('..')")
        .message("keySecretRef.key must not be '.' or start with '..'"))]
    pub key: Option<String>,
}

/// Service endpoint URLs, each defaulting to `https://{name}.{service}.core.windows.net`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Blob service endpoint, e.g. `https://mystorage.blob.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ENDPOINT_PATTERN), length(max = 512))]
    pub blob: Option<String>,
    /// Queue service endpoint, e.g. `https://mystorage.queue.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ENDPOINT_PATTERN), length(max = 512))]
    pub queue: Option<String>,
    /// Table service endpoint, e.g. `https://mystorage.table.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ENDPOINT_PATTERN), length(max = 512))]
    pub table: Option<String>,
    /// File service endpoint, e.g. `https://mystorage.file.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ENDPOINT_PATTERN), length(max = 512))]
    pub file: Option<String>,
}

/// Exactly one resource kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.account), has(self.container), has(self.blob), has(self.directory), has(self.share), has(self.file), has(self.queue), has(self.table)].filter(x, x).size() == 1"
).message("exactly one of account, container, blob, directory, share, file, queue, table must be set"))]
pub struct GrantResource {
    /// An account SAS: the services and resource types of the whole account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Box<AccountResource>>,
    /// A service SAS for a blob container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Box<NamedResource>>,
    /// A service SAS for one blob (optionally a snapshot or version of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Box<BlobResource>>,
    /// A service SAS for a directory (ADLS Gen2, hierarchical namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<Box<DirectoryResource>>,
    /// A service SAS for a file share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Box<NamedResource>>,
    /// A service SAS for one file in a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileResource>>,
    /// A service SAS for a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Box<NamedResource>>,
    /// A service SAS for a table (optionally a partition/row key range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Box<TableResource>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountResource {
    /// Service letters of `bqtf`.
    #[schemars(pattern(r"^[bqtf]+$"), length(max = 16))]
    pub services: String,
    /// Resource type letters of `sco`.
    #[schemars(pattern(r"^[sco]+$"), length(max = 16))]
    pub resource_types: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NamedResource {
    /// Name of the container, share or queue.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.snapshot) && has(self.versionId))")
    .message("set at most one of snapshot and versionId"))]
pub struct BlobResource {
    /// Container that holds the blob.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub container: String,
    /// Blob name (path within the container).
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub name: String,
    /// A snapshot time of the blob, to grant that snapshot only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 64))]
    pub snapshot: Option<String>,
    /// A version id of the blob, to grant that version only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 64))]
    pub version_id: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DirectoryResource {
    /// Container (file system) that holds the directory.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub container: String,
    /// Directory path within the container.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub path: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileResource {
    /// Share that holds the file.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub share: String,
    /// File path within the share.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub path: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TableResource {
    /// Table name.
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 63))]
    pub name: String,
    /// First partition key of the range the token grants (`spk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub start_pk: Option<String>,
    /// First row key of the range the token grants (`srk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub start_rk: Option<String>,
    /// Last partition key of the range the token grants (`epk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub end_pk: Option<String>,
    /// Last row key of the range the token grants (`erk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NO_CONTROL_PATTERN), length(max = 1024))]
    pub end_rk: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantProtocol {
    #[serde(rename = "https")]
    Https,
    #[serde(rename = "https,http")]
    HttpsAndHttp,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSecret {
    /// Name of the Secret to write (DNS-1123 subdomain). Default: the grant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub secret_name: Option<String>,
}

/// Names the issuer of a grant. A `SasIssuer` is looked up in the grant's own namespace only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// `SasIssuer` (of the grant's namespace) or `ClusterSasIssuer`.
    pub kind: IssuerKind,
    /// The issuer's name (DNS-1123 subdomain).
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub name: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    SasIssuer,
    ClusterSasIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::SasIssuer => "SasIssuer",
            IssuerKind::ClusterSasIssuer => "ClusterSasIssuer",
        }
    }
}

/// What a `SasIssuer` or `ClusterSasIssuer` holds: the account and exactly one credential.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "sas-operator.io",
    version = "v1alpha1",
    kind = "SasIssuer",
    namespaced,
    shortname = "sasi",
    doc = "Signs SasGrants of its own namespace with an account key or a workload identity",
    status = "IssuerStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.accountKey) != has(self.workloadIdentity)")
    .message("exactly one of accountKey and workloadIdentity must be set"))]
#[serde(rename_all = "camelCase")]
pub struct SasIssuerSpec {
    pub storage_account: IssuerStorageAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<AccountKeyCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentityCredential>,
    /// What this issuer signs. Absent: everything its credential allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<IssuerPolicy>,
}

/// A cluster-wide issuer; its key Secret or ServiceAccount lives in the operator's cluster
/// resource namespace, and only namespaces matching `allowedNamespaces` may use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "sas-operator.io",
    version = "v1alpha1",
    kind = "ClusterSasIssuer",
    shortname = "csasi",
    doc = "Signs SasGrants of the namespaces it allows, with credentials kept in the operator's cluster resource namespace",
    status = "IssuerStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.accountKey) != has(self.workloadIdentity)")
    .message("exactly one of accountKey and workloadIdentity must be set"))]
#[x_kube(validation = Rule::new("has(self.policy)")
    .message("a ClusterSasIssuer needs spec.policy: the resources, permissions and validity it may sign for other namespaces"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterSasIssuerSpec {
    pub storage_account: IssuerStorageAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<AccountKeyCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentityCredential>,
    /// Namespaces whose grants may use this issuer, by name or label. Absent: none may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<NamespaceSelector>,
    /// What this issuer signs (required): a grant outside it is refused.
    // Optional here only so that an issuer stored before policies existed still reads; the
    // controller refuses it (`IssuerPolicyRequired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<IssuerPolicy>,
}

/// The storage account of an issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStorageAccount {
    /// Storage account name.
    #[schemars(pattern(r"^[a-z0-9]{3,24}$"), length(max = 24))]
    pub name: String,
    /// Service endpoints, as on a grant's `storageAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
}

/// An account key in a Secret (of the issuer's namespace; of the cluster resource namespace
/// for a `ClusterSasIssuer`), opted in with the signing-key label like any key Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountKeyCredential {
    pub secret_ref: KeySecretRef,
}

/// Microsoft Entra Workload ID: a ServiceAccount token exchanged for an Entra access token,
/// which obtains a user delegation key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityCredential {
    /// The application (client) id of the Entra identity.
    #[schemars(pattern(UUID_PATTERN), length(max = 36))]
    pub client_id: String,
    /// The directory (tenant) id.
    #[schemars(pattern(UUID_PATTERN), length(max = 36))]
    pub tenant_id: String,
    /// The ServiceAccount whose token is exchanged (in the issuer's namespace; in the cluster
    /// resource namespace for a `ClusterSasIssuer`).
    #[schemars(pattern(DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub service_account_name: String,
}

/// Namespaces by name (`names`) or by label (`matchLabels` and `matchExpressions`, as
/// Kubernetes' label selector): a namespace is allowed when `names` lists it, or when a label
/// selector is given and matches its labels. `{}` allows every namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespaces allowed by name, whatever their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(pattern(DNS_LABEL_PATTERN), length(max = 63)))]
    pub names: Option<Vec<String>>,
    /// Labels a namespace must all have, with these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<std::collections::BTreeMap<String, String>>,
    /// Requirements a namespace's labels must all meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<SelectorRequirement>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement {
    /// The label key.
    #[schemars(length(max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// What an issuer signs: the resource kinds and names, the most permissions per kind, the
/// longest validity and the protocols. A grant outside it is refused (`DeniedByIssuerPolicy`)
/// before anything of the issuer's credential is read. Name patterns are globs (`*` any run
/// of characters, `/` included; `?` one character) matching the whole name, with
/// `{namespace}` standing for the grant's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(MAX_PERMISSIONS_RULE)
    .message("every kind listed under policy.resources needs its maxPermissions entry (resources.container needs maxPermissions.container, ...): the letters its grants may ask for"))]
pub struct IssuerPolicy {
    /// The resource kinds this issuer signs, each with the names it allows. A kind not listed
    /// is refused; an account SAS only when `account` is listed.
    pub resources: PolicyResources,
    /// The most a grant may ask for, per resource kind: its permission letters must be a
    /// subset. Every kind listed under `resources` needs an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_permissions: Option<MaxPermissions>,
    /// The longest `validity` a grant may ask for (a grant without one asks for 8h), as
    /// `validity` is written, between 2m and 8760h. Default 8h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), length(max = DURATION_MAX_LENGTH))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('2m') && duration(self) <= duration('8760h')")
        .message("maxValidity must be between 2m and 8760h (365d)"))]
    pub max_validity: Option<String>,
    /// `https` (default): grants must ask for https only; `https,http` lets them allow http.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<GrantProtocol>,
}

/// `!has(resources.K) || has(maxPermissions.K)` for every kind K.
const MAX_PERMISSIONS_RULE: &str = "(!has(self.resources.account) || has(self.maxPermissions) && has(self.maxPermissions.account)) && (!has(self.resources.container) || has(self.maxPermissions) && has(self.maxPermissions.container)) && (!has(self.resources.blob) || has(self.maxPermissions) && has(self.maxPermissions.blob)) && (!has(self.resources.directory) || has(self.maxPermissions) && has(self.maxPermissions.directory)) && (!has(self.resources.share) || has(self.maxPermissions) && has(self.maxPermissions.share)) && (!has(self.resources.file) || has(self.maxPermissions) && has(self.maxPermissions.file)) && (!has(self.resources.queue) || has(self.maxPermissions) && has(self.maxPermissions.queue)) && (!has(self.resources.table) || has(self.maxPermissions) && has(self.maxPermissions.table))";

/// The resource kinds an issuer signs, each with the names it allows (glob patterns, see
/// [`IssuerPolicy`]).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResources {
    /// Account SAS: the services and resource types a grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountPolicy>,
    /// Container SAS: the container names allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<NamesPolicy>,
    /// Blob SAS: the containers, and optionally the blob names, allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobPolicy>,
    /// Directory SAS: the containers, and optionally the directory paths, allowed. A
    /// directory's SAS covers everything below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryPolicy>,
    /// Share SAS: the share names allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<NamesPolicy>,
    /// File SAS: the shares, and optionally the file paths, allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePolicy>,
    /// Queue SAS: the queue names allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<NamesPolicy>,
    /// Table SAS: the table names allowed (matched as written: case counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<NamesPolicy>,
}

/// The services and resource types of the account SAS an issuer signs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountPolicy {
    /// Service letters of `bqtf` a grant may ask for.
    #[schemars(pattern(r"^[bqtf]+$"), length(max = 16))]
    pub services: String,
    /// Resource type letters of `sco` a grant may ask for.
    #[schemars(pattern(r"^[sco]+$"), length(max = 16))]
    pub resource_types: String,
}

/// Name patterns of a container, share, queue or table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NamesPolicy {
    /// Glob patterns; `{namespace}` is the grant's namespace.
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_NAME_PATTERN_MAX_LENGTH)))]
    pub names: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BlobPolicy {
    /// Glob patterns of the container; `{namespace}` is the grant's namespace.
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_NAME_PATTERN_MAX_LENGTH)))]
    pub containers: Vec<String>,
    /// Glob patterns of the blob name (`*` crosses `/`). Absent: any blob of those containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_PATH_PATTERN_MAX_LENGTH)))]
    pub names: Option<Vec<String>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DirectoryPolicy {
    /// Glob patterns of the container; `{namespace}` is the grant's namespace.
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_NAME_PATTERN_MAX_LENGTH)))]
    pub containers: Vec<String>,
    /// Glob patterns of the directory path (`*` crosses `/`). Absent: any directory of those
    /// containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_PATH_PATTERN_MAX_LENGTH)))]
    pub paths: Option<Vec<String>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FilePolicy {
    /// Glob patterns of the share; `{namespace}` is the grant's namespace.
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_NAME_PATTERN_MAX_LENGTH)))]
    pub shares: Vec<String>,
    /// Glob patterns of the file path (`*` crosses `/`). Absent: any file of those shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = POLICY_MAX_PATTERNS), inner(pattern(NO_CONTROL_PATTERN), length(max = POLICY_PATH_PATTERN_MAX_LENGTH)))]
    pub paths: Option<Vec<String>>,
}

/// The most permission letters a grant may ask for, per resource kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MaxPermissions {
    /// Permission letters an account grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub account: Option<String>,
    /// Permission letters a container grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub container: Option<String>,
    /// Permission letters a blob grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub blob: Option<String>,
    /// Permission letters a directory grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub directory: Option<String>,
    /// Permission letters a share grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub share: Option<String>,
    /// Permission letters a file grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub file: Option<String>,
    /// Permission letters a queue grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub queue: Option<String>,
    /// Permission letters a table grant may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PERMISSION_PATTERN), length(max = 32))]
    pub table: Option<String>,
}

/// An issuer's observed state. Never holds a key or a token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// The `Ready` condition: whether the credential worked when last used, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<GrantCondition>,
    /// The issuer's `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `signedExpiry` of the current user delegation key (workload identity); never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_expiry: Option<String>,
}

/// What the controller last observed and did. Never holds a token or a key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SasGrantStatus {
    /// The `Ready` condition: whether the Secret holds a valid token, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<GrantCondition>,
    /// The grant's `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resource kind granted (account, container, blob, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_kind: Option<String>,
    /// Name of the Secret the token is written into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// RFC 3339 expiry of the token in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 time of the next scheduled re-signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews_at: Option<String>,
    /// RFC 3339 time the current token was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<String>,
    /// A short hash of the current token, so a change is visible without exposing the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantCondition {
    /// Condition type; `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason such as `TokenValid` or `KeySecretNotFound`.
    pub reason: String,
    /// Human-readable detail; never holds a token or a key.
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
    /// The grant's `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRDs as YAML, each as committed under `crds/<file>`: `SasGrant`, `SasIssuer`,
/// `ClusterSasIssuer`.
pub fn crd_files() -> Vec<(&'static str, String)> {
    [
        ("sasgrant.yaml", SasGrant::crd()),
        ("sasissuer.yaml", SasIssuer::crd()),
        ("clustersasissuer.yaml", ClusterSasIssuer::crd()),
    ]
    .into_iter()
    .map(|(file, crd)| {
        let json = serde_json::to_value(&crd).expect("a CRD always serializes");
        let mut yaml = String::from(
            "# Generated by `sas-operator crd`; do not edit. `make crds` regenerates it.\n",
        );
        yaml.push_str(&serde_saphyr::to_string(&json).expect("a CRD always serializes to YAML"));
        (file, yaml)
    })
    .collect()
}

/// The CRDs as templates of the Helm chart, each as committed under
/// `charts/sas-operator/templates/crds/<file>`: the same objects as [`crd_files`], rendered
/// only with `crds.enabled`, labelled like the chart's other objects, and kept by
/// `helm uninstall` with `crds.keep` (deleting a CRD deletes every grant, and through owner
/// references every token Secret).
pub fn chart_crd_templates() -> Vec<(&'static str, String)> {
    [
        ("sasgrant.yaml", SasGrant::crd()),
        ("sasissuer.yaml", SasIssuer::crd()),
        ("clustersasissuer.yaml", ClusterSasIssuer::crd()),
    ]
    .into_iter()
    .map(|(file, crd)| {
        let name = crd.metadata.name.clone().expect("a CRD has a name");
        let json = serde_json::to_value(&crd).expect("a CRD always serializes");
        let to_yaml = |value: serde_json::Value| {
            serde_saphyr::to_string(&value).expect("a CRD always serializes to YAML")
        };
        let head = to_yaml(serde_json::json!({
            "apiVersion": json["apiVersion"],
            "kind": json["kind"],
        }));
        // Helm reads the file as a Go template: a literal `{{` in a description must not
        // start an action.
        let spec = to_yaml(serde_json::json!({ "spec": json["spec"] }))
            .replace("{{", "{{ \"{{\" }}");
        let metadata = [
            "metadata:".to_string(),
            format!("  name: {name}"),
            "  labels:".into(),
            "    {{- include \"sas-operator.labels\" . | nindent 4 }}".into(),
            "  {{- if .Values.crds.keep }}".into(),
            "  annotations:".into(),
            "    # `helm uninstall` leaves the CRD, so every grant and token Secret stays.".into(),
            "    helm.sh/resource-policy: keep".into(),
            "  {{- end }}".into(),
        ]
        .join("\n");
        let template = format!(
            "{{{{- /* Generated by `sas-operator crd`; do not edit. `make crds` regenerates it. */}}}}\n\
             {{{{- if .Values.crds.enabled }}}}\n{head}{metadata}\n{spec}{{{{- end }}}}\n"
        );
        (file, template)
    })
    .collect()
}

/// Every CRD as one multi-document YAML stream (what `sas-operator crd` prints).
pub fn crd_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, yaml)| yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Parses a Go-style duration such as `8h`, `90m`, `1h30m`, `45s` (see [`crate::duration`]);
/// also the value parser of the duration flags.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every grant lives in the reflector store, so its inline size is paid 10,000 times at
    /// scale; the resource kinds are boxed because a grant sets exactly one of them.
    #[test]
    fn a_grant_spec_stays_small_inline() {
        eprintln!(
            "SasGrantSpec {} B, GrantResource {} B, SasGrant {} B",
            std::mem::size_of::<SasGrantSpec>(),
            std::mem::size_of::<GrantResource>(),
            std::mem::size_of::<SasGrant>()
        );
        assert!(std::mem::size_of::<GrantResource>() <= 64);
        assert!(std::mem::size_of::<SasGrantSpec>() <= 512);
    }
}
