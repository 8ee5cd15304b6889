//! Known-answer tests: tokens and strings-to-sign recorded from Azure's SDKs for fixed inputs.
//!
//! Newest layouts: Python SDKs azure-storage-blob 12.31.1, azure-storage-queue 12.18.1,
//! azure-storage-file-share 12.27.1 (all sign sv=2026-10-06) and azure-data-tables 12.7.0
//! (signs sv=2019-02-02), generated with their `generate_*_sas(..., sts_hook=...)` functions.
//! Older layouts: JS SDKs @azure/storage-blob 12.32.0, @azure/storage-queue and
//! @azure/storage-file-share (npm), via `generate*SASQueryParameters` with an explicit `version`.
//!
//! On a mismatch the tests print the case name and the names of the differing token
//! parameters, never a token or a key.

use jiff::Timestamp;
use sas_operator::sas::{
    self, AccountKey, DelegationExtras, Protocol, Resource, ResponseHeaders, SasParams, SigningKey,
    TableKeyRange, UserDelegationKey,
};

/// Azurite's published development key (public; not a secret).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// base64("user-delegation-key-value-32-bytes!"), the user delegation key value of every case.
const UD_VALUE: &str = "dXNlci1kZWxlZ2F0aW9uLWtleS12YWx1ZS0zMi1ieXRlcyE=";
const START: &str = "2030-01-02T03:04:05Z";
const EXPIRY: &str = "2030-02-03T04:05:06Z";

fn ts(text: &str) -> Timestamp {
    text.parse().expect("test timestamps are valid")
}

fn account_key() -> SigningKey {
    SigningKey::Account(AccountKey::from_base64(KEY).expect("test key is base64"))
}

fn user_delegation_key(signed_version: &str, delegated_tid: Option<&str>) -> SigningKey {
    SigningKey::UserDelegation(UserDelegationKey {
        signed_oid: "11111111-1111-1111-1111-111111111111".into(),
        signed_tid: "22222222-2222-2222-2222-222222222222".into(),
        signed_start: "2030-01-01T00:00:00Z".into(),
        signed_expiry: "2030-01-08T00:00:00Z".into(),
        signed_service: "b".into(),
        signed_version: signed_version.into(),
        signed_delegated_user_tid: delegated_tid.map(Into::into),
        value: AccountKey::from_base64(UD_VALUE).expect("test key is base64"),
    })
}

fn params(resource: Resource, permissions: &str) -> SasParams {
    SasParams {
        account_name: "acct1".into(),
        resource,
        permissions: Some(permissions.into()),
        start: None,
        expiry: Some(ts(EXPIRY)),
        ip: None,
        protocol: None,
        version: None,
        policy_id: None,
        encryption_scope: None,
        response_headers: ResponseHeaders::default(),
        delegation: DelegationExtras::default(),
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

/// Short, non-reversible fingerprint for failure messages.
fn fingerprint(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn differing_params(actual: &str, expected: &str) -> Vec<String> {
    let split = |t: &str| {
        t.split('&')
            .map(|p| {
                p.split_once('=')
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    let (a, e) = (split(actual), split(expected));
    let names_a: Vec<_> = a.iter().map(|(n, _)| n.clone()).collect();
    let names_e: Vec<_> = e.iter().map(|(n, _)| n.clone()).collect();
    if names_a != names_e {
        return vec![format!(
            "parameter order/names: got {names_a:?}, want {names_e:?}"
        )];
    }
    a.iter()
        .zip(&e)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0.clone())
        .collect()
}

/// Signs `case` and checks the whole token and the string-to-sign against the SDK's.
fn check(
    case: &str,
    params: &SasParams,
    key: &SigningKey,
    expected_token: &str,
    expected_sts: Option<&str>,
) {
    if let Some(expected_sts) = expected_sts {
        let sts = sas::string_to_sign(params, key)
            .unwrap_or_else(|e| panic!("{case}: string_to_sign failed: {e}"));
        assert_eq!(
            sts, expected_sts,
            "{case}: string-to-sign differs from the SDK's"
        );
    }
    let signed = sas::sign(params, key).unwrap_or_else(|e| panic!("{case}: sign failed: {e}"));
    assert!(
        signed.token == expected_token,
        "{case}: token differs from the SDK's in {:?} (got #{}, want #{})",
        differing_params(&signed.token, expected_token),
        fingerprint(&signed.token),
        fingerprint(expected_token),
    );
}

/// The `sig` parameter of a token, percent-decoded.
fn sig_of(token: &str) -> String {
    let encoded = token
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .expect("token has sig");
    encoded
        .replace("%2B", "+")
        .replace("%3D", "=")
        .replace("%2F", "/")
}

/// Checks the string-to-sign and the signature (not the whole token) against the JS SDK's.
fn check_signature(
    case: &str,
    params: &SasParams,
    key: &SigningKey,
    expected_sig: &str,
    expected_sts: &str,
) {
    let sts = sas::string_to_sign(params, key)
        .unwrap_or_else(|e| panic!("{case}: string_to_sign failed: {e}"));
    assert_eq!(
        sts, expected_sts,
        "{case}: string-to-sign differs from the JS SDK's"
    );
    let signed = sas::sign(params, key).unwrap_or_else(|e| panic!("{case}: sign failed: {e}"));
    let sig = sig_of(&signed.token);
    assert!(
        sig == expected_sig,
        "{case}: signature differs from the JS SDK's (got #{}, want #{})",
        fingerprint(&sig),
        fingerprint(expected_sig)
    );
}

// ---- Python SDK answers (newest layouts) ------------------------------------------------

const ACCOUNT_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=rwdxylacupfti&sip=168.1.5.60-168.1.5.70&spr=https&sv=2026-10-06&ss=bqtf&srt=sco&ses=scope-1&sig=F3A1pF4wNpttJ0QjiCCpFHpAuUVNeJijrJsccDLbmXA%3D";
const ACCOUNT_STS: &str = "acct1\nrwdxylacupfti\nbqtf\nsco\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n168.1.5.60-168.1.5.70\nhttps\n2026-10-06\nscope-1\n";
const ACCOUNT_MIN_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=r&sv=2026-10-06&ss=b&srt=o&sig=vot6g2376Rhvhmjk5GDE8tk%2BkF95nh0LTu2tWhI6kbA%3D";
const ACCOUNT_MIN_STS: &str = "acct1\nr\nb\no\n\n2030-02-03T04:05:06Z\n\n\n2026-10-06\n\n";
const CONTAINER_POLICY_TOKEN: &str =
    "sv=2026-10-06&si=read-policy&sr=c&sig=TkpkNfXtxZsp5FUJhCxC%2BI3eF/yT%2BFFBM4ODcDIRIBk%3D";
const CONTAINER_POLICY_STS: &str =
    "\n\n\n/blob/acct1/photos\nread-policy\n\n\n2026-10-06\nc\n\n\n\n\n\n\n";
const CONTAINER_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=racwdxyltfmei&spr=https%2Chttp&sv=2026-10-06&sr=c&sig=TREOrrydkHeTHjrasWSpbdFz8A6fVrWkWdbGXqgjZ50%3D";
const CONTAINER_STS: &str = "racwdxyltfmei\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos\n\n\nhttps,http\n2026-10-06\nc\n\n\n\n\n\n\n";
const BLOB_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=rw&sip=10.0.0.1&spr=https&sv=2026-10-06&si=pol&sr=b&rscc=no-cache&rscd=attachment%3B%20filename%3Dcat.jpg&rsce=gzip&rscl=en-US&rsct=image/jpeg&ses=scope-1&sig=DonfD7yXMECfVZcmpLJQJ79URoE8TuJZH6Ry8ruLLUk%3D";
const BLOB_STS: &str = "rw\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos/2030/cat pic+1.jpg\npol\n10.0.0.1\nhttps\n2026-10-06\nb\n\nscope-1\nno-cache\nattachment; filename=cat.jpg\ngzip\nen-US\nimage/jpeg";
const BLOB_SNAPSHOT_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=r&sv=2026-10-06&sr=bs&sig=xB9PSbwEjUaGwz7OxesNg%2BcETWASeNMjbT8UKikrgkA%3D";
const BLOB_SNAPSHOT_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n\n\n\n2026-10-06\nbs\n2030-01-01T00:00:00.1234567Z\n\n\n\n\n\n";
const BLOB_VERSION_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=rx&sv=2026-10-06&sr=bv&sig=WKyse9XU%2B5Epmx7kI9sDDWntl3zPwz/UQ3kGcERKEVM%3D";
const BLOB_VERSION_STS: &str = "rx\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n\n\n\n2026-10-06\nbv\n2030-01-01T00:00:00.7654321Z\n\n\n\n\n\n";
const DIRECTORY_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=rl&sv=2026-10-06&sr=d&sdd=3&sig=KtAjCI6XXb2FhCbeu0SEy4JIOYSNPLUh2zsOwIF76B4%3D";
const DIRECTORY_STS: &str =
    "rl\n\n2030-02-03T04:05:06Z\n/blob/acct1/lake/a/b/c\n\n\n\n2026-10-06\nd\n\n\n\n\n\n\n";
const QUEUE_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=raup&sip=10.0.0.1&spr=https&sv=2026-10-06&si=qpol&sig=16Z74JGR4RHa9Xl7C%2B1W67XjXuE6tl9EpA%2BNkgNzBV4%3D";
const QUEUE_STS: &str = "raup\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/queue/acct1/jobs\nqpol\n10.0.0.1\nhttps\n2026-10-06";
const SHARE_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=rcwdl&sv=2026-10-06&sr=s&rscc=no-cache&rsct=text/plain&sig=Q7lRHcAl6eNfQdbtqYKEzBOEp0Dn3xcx43k0hDG7T90%3D";
const SHARE_STS: &str = "rcwdl\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/file/acct1/docs\n\n\n\n2026-10-06\nno-cache\n\n\n\ntext/plain";
const FILE_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=r&sv=2026-10-06&sr=f&rscd=inline&sig=nnBp8kkwY7gfxrapP92AW/K4AtjkNrrHkMYQKXb9rGM%3D";
const FILE_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/file/acct1/docs/dir one/report.pdf\n\n\n\n2026-10-06\n\ninline\n\n\n";
const TABLE_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=raud&sip=10.0.0.1-10.0.0.9&spr=https&sv=2019-02-02&tn=Orders2030&spk=p1&srk=r%201&epk=p9&erk=r9&sig=9CCON6T2eKdwoeLFxm3MgkmR8KZh4wvt7Wl0us7biYQ%3D";
const UD_BLOB_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=racwd&sip=10.0.0.1&spr=https&sv=2026-10-06&sduoid=44444444-4444-4444-4444-444444444444&sr=b&rscc=no-cache&ses=scope-1&saoid=55555555-5555-5555-5555-555555555555&suoid=66666666-6666-6666-6666-666666666666&scid=corr-7&skoid=11111111-1111-1111-1111-111111111111&sktid=22222222-2222-2222-2222-222222222222&skt=2030-01-01T00%3A00%3A00Z&ske=2030-01-08T00%3A00%3A00Z&sks=b&skv=2026-10-06&skdutid=33333333-3333-3333-3333-333333333333&srh=x-ms-meta-a,x-ms-foo&srq=comp,q&sig=CsqG5p5bbA2Kb6yQ%2BtofiZuvxp3NudK3EaQkwPt5Ems%3D";
const UD_BLOB_STS: &str = "racwd\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-10-06\n55555555-5555-5555-5555-555555555555\n66666666-6666-6666-6666-666666666666\ncorr-7\n33333333-3333-3333-3333-333333333333\n44444444-4444-4444-4444-444444444444\n10.0.0.1\nhttps\n2026-10-06\nb\n\nscope-1\nx-ms-meta-a:1\nx-ms-foo:b:c\n\n\ncomp:list\nq:x y\nno-cache\n\n\n\n";
const UD_DIRECTORY_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=rl&sv=2026-10-06&sr=d&sdd=2&skoid=11111111-1111-1111-1111-111111111111&sktid=22222222-2222-2222-2222-222222222222&skt=2030-01-01T00%3A00%3A00Z&ske=2030-01-08T00%3A00%3A00Z&sks=b&skv=2026-10-06&sig=KDF3%2BFBsTqgS0akJ0p7MztTSrapjV2MSKwQZ60VR5%2Bc%3D";
const UD_DIRECTORY_STS: &str = "rl\n\n2030-02-03T04:05:06Z\n/blob/acct1/lake/a/b\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-10-06\n\n\n\n\n\n\n\n2026-10-06\nd\n\n\n\n\n\n\n\n\n";
const UD_CONTAINER_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=rl&sv=2026-10-06&sr=c&skoid=11111111-1111-1111-1111-111111111111&sktid=22222222-2222-2222-2222-222222222222&skt=2030-01-01T00%3A00%3A00Z&ske=2030-01-08T00%3A00%3A00Z&sks=b&skv=2026-10-06&sig=5h3mszIl3gDHyKorfiYMjgt8FNTIV8xGbZ1c5E3piAI%3D";
const UD_CONTAINER_STS: &str = "rl\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-10-06\n\n\n\n\n\n\n\n2026-10-06\nc\n\n\n\n\n\n\n\n\n";
const UD_QUEUE_TOKEN: &str = "se=2030-02-03T04%3A05%3A06Z&sp=r&sv=2026-10-06&sduoid=44444444-4444-4444-4444-444444444444&skoid=11111111-1111-1111-1111-111111111111&sktid=22222222-2222-2222-2222-222222222222&skt=2030-01-01T00%3A00%3A00Z&ske=2030-01-08T00%3A00%3A00Z&sks=b&skv=2026-10-06&skdutid=33333333-3333-3333-3333-333333333333&sig=CRWdjkD/S9HMsx0HmE36whdK8ZaAGZCQ7r8mrVUQFLg%3D";
const UD_QUEUE_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/queue/acct1/jobs\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-10-06\n33333333-3333-3333-3333-333333333333\n44444444-4444-4444-4444-444444444444\n\n\n2026-10-06";
const UD_FILE_TOKEN: &str = "st=2030-01-02T03%3A04%3A05Z&se=2030-02-03T04%3A05%3A06Z&sp=rw&sv=2026-10-06&sr=f&rsct=application/pdf&skoid=11111111-1111-1111-1111-111111111111&sktid=22222222-2222-2222-2222-222222222222&skt=2030-01-01T00%3A00%3A00Z&ske=2030-01-08T00%3A00%3A00Z&sks=b&skv=2026-10-06&sig=XmOpMaMnzfERPHkjKIkfUhfTDy9csFf3Q3vddfwnpKo%3D";
const UD_FILE_STS: &str = "rw\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/file/acct1/docs/report.pdf\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-10-06\n\n\n\n\n2026-10-06\n\n\n\n\napplication/pdf";
const TABLE_STS: &str = "raud\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/table/acct1/orders2030\n\n10.0.0.1-10.0.0.9\nhttps\n2019-02-02\np1\nr 1\np9\nr9";

#[test]
fn account_sas_with_every_field_matches_python() {
    let mut p = params(
        Resource::Account {
            services: "ftqb".into(),
            resource_types: "ocs".into(),
        },
        "itfpucalyxdwr",
    );
    p.start = Some(ts(START));
    p.ip = Some("168.1.5.60-168.1.5.70".into());
    p.protocol = Some(Protocol::Https);
    p.encryption_scope = Some("scope-1".into());
    check(
        "account",
        &p,
        &account_key(),
        ACCOUNT_TOKEN,
        Some(ACCOUNT_STS),
    );
}

#[test]
fn minimal_account_sas_matches_python() {
    let p = params(
        Resource::Account {
            services: "b".into(),
            resource_types: "o".into(),
        },
        "r",
    );
    check(
        "account_min",
        &p,
        &account_key(),
        ACCOUNT_MIN_TOKEN,
        Some(ACCOUNT_MIN_STS),
    );
}

#[test]
fn container_sas_bound_to_a_stored_policy_alone_matches_python() {
    let mut p = params(
        Resource::Container {
            container: "photos".into(),
        },
        "",
    );
    p.permissions = None;
    p.expiry = None;
    p.policy_id = Some("read-policy".into());
    check(
        "container_policy",
        &p,
        &account_key(),
        CONTAINER_POLICY_TOKEN,
        Some(CONTAINER_POLICY_STS),
    );
}

#[test]
fn container_sas_with_all_permissions_matches_python() {
    let mut p = params(
        Resource::Container {
            container: "photos".into(),
        },
        "iemftlyxdwcar",
    );
    p.start = Some(ts(START));
    p.protocol = Some(Protocol::HttpsAndHttp);
    check(
        "container",
        &p,
        &account_key(),
        CONTAINER_TOKEN,
        Some(CONTAINER_STS),
    );
}

#[test]
fn blob_sas_with_policy_headers_and_scope_matches_python() {
    let mut p = params(blob("photos", "2030/cat pic+1.jpg"), "wr");
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1".into());
    p.protocol = Some(Protocol::Https);
    p.policy_id = Some("pol".into());
    p.encryption_scope = Some("scope-1".into());
    p.response_headers = ResponseHeaders {
        cache_control: Some("no-cache".into()),
        content_disposition: Some("attachment; filename=cat.jpg".into()),
        content_encoding: Some("gzip".into()),
        content_language: Some("en-US".into()),
        content_type: Some("image/jpeg".into()),
    };
    check("blob", &p, &account_key(), BLOB_TOKEN, Some(BLOB_STS));
}

#[test]
fn blob_snapshot_sas_signs_the_snapshot_but_leaves_it_out_of_the_token() {
    let resource = Resource::Blob {
        container: "photos".into(),
        blob: "cat.jpg".into(),
        snapshot: Some("2030-01-01T00:00:00.1234567Z".into()),
        version_id: None,
    };
    let p = params(resource, "r");
    check(
        "blob_snapshot",
        &p,
        &account_key(),
        BLOB_SNAPSHOT_TOKEN,
        Some(BLOB_SNAPSHOT_STS),
    );
}

#[test]
fn blob_version_sas_matches_python() {
    let resource = Resource::Blob {
        container: "photos".into(),
        blob: "cat.jpg".into(),
        snapshot: None,
        version_id: Some("2030-01-01T00:00:00.7654321Z".into()),
    };
    let p = params(resource, "xr");
    check(
        "blob_version",
        &p,
        &account_key(),
        BLOB_VERSION_TOKEN,
        Some(BLOB_VERSION_STS),
    );
}

#[test]
fn directory_sas_carries_its_depth_and_matches_python() {
    let p = params(
        Resource::Directory {
            container: "lake".into(),
            path: "a/b/c".into(),
        },
        "lr",
    );
    check(
        "directory",
        &p,
        &account_key(),
        DIRECTORY_TOKEN,
        Some(DIRECTORY_STS),
    );
}

#[test]
fn queue_sas_matches_python() {
    let mut p = params(
        Resource::Queue {
            queue: "jobs".into(),
        },
        "upar",
    );
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1".into());
    p.protocol = Some(Protocol::Https);
    p.policy_id = Some("qpol".into());
    check("queue", &p, &account_key(), QUEUE_TOKEN, Some(QUEUE_STS));
}

#[test]
fn share_sas_matches_python() {
    let mut p = params(
        Resource::Share {
            share: "docs".into(),
        },
        "ldwcr",
    );
    p.start = Some(ts(START));
    p.response_headers.cache_control = Some("no-cache".into());
    p.response_headers.content_type = Some("text/plain".into());
    check("share", &p, &account_key(), SHARE_TOKEN, Some(SHARE_STS));
}

#[test]
fn file_sas_matches_python() {
    let mut p = params(
        Resource::File {
            share: "docs".into(),
            path: "dir one/report.pdf".into(),
        },
        "r",
    );
    p.response_headers.content_disposition = Some("inline".into());
    check("file", &p, &account_key(), FILE_TOKEN, Some(FILE_STS));
}

#[test]
fn table_sas_with_key_range_matches_python() {
    let key_range = TableKeyRange {
        start_pk: Some("p1".into()),
        start_rk: Some("r 1".into()),
        end_pk: Some("p9".into()),
        end_rk: Some("r9".into()),
    };
    let mut p = params(
        Resource::Table {
            table: "Orders2030".into(),
            key_range,
        },
        "duar",
    );
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1-10.0.0.9".into());
    p.protocol = Some(Protocol::Https);
    // No explicit sv: a table SAS defaults to 2019-02-02, the version azure-data-tables 12.7.0
    // signs with.
    check("table", &p, &account_key(), TABLE_TOKEN, Some(TABLE_STS));
}

#[test]
fn user_delegation_blob_sas_with_every_extra_matches_python() {
    let mut p = params(blob("photos", "cat.jpg"), "dwcar");
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1".into());
    p.protocol = Some(Protocol::Https);
    p.encryption_scope = Some("scope-1".into());
    p.response_headers.cache_control = Some("no-cache".into());
    p.delegation = DelegationExtras {
        authorized_user_object_id: Some("55555555-5555-5555-5555-555555555555".into()),
        unauthorized_user_object_id: Some("66666666-6666-6666-6666-666666666666".into()),
        correlation_id: Some("corr-7".into()),
        delegated_user_object_id: Some("44444444-4444-4444-4444-444444444444".into()),
        request_headers: vec![
            ("x-ms-meta-a".into(), "1".into()),
            ("x-ms-foo".into(), "b:c".into()),
        ],
        request_query: vec![("comp".into(), "list".into()), ("q".into(), "x y".into())],
    };
    let key = user_delegation_key("2026-10-06", Some("33333333-3333-3333-3333-333333333333"));
    check("ud_blob", &p, &key, UD_BLOB_TOKEN, Some(UD_BLOB_STS));
}

#[test]
fn user_delegation_directory_sas_matches_python() {
    let p = params(
        Resource::Directory {
            container: "lake".into(),
            path: "a/b".into(),
        },
        "lr",
    );
    check(
        "ud_directory",
        &p,
        &user_delegation_key("2026-10-06", None),
        UD_DIRECTORY_TOKEN,
        Some(UD_DIRECTORY_STS),
    );
}

#[test]
fn user_delegation_container_sas_matches_python() {
    let p = params(
        Resource::Container {
            container: "photos".into(),
        },
        "lr",
    );
    check(
        "ud_container",
        &p,
        &user_delegation_key("2026-10-06", None),
        UD_CONTAINER_TOKEN,
        Some(UD_CONTAINER_STS),
    );
}

#[test]
fn user_delegation_queue_sas_matches_python() {
    let mut p = params(
        Resource::Queue {
            queue: "jobs".into(),
        },
        "r",
    );
    p.delegation.delegated_user_object_id = Some("44444444-4444-4444-4444-444444444444".into());
    let key = user_delegation_key("2026-10-06", Some("33333333-3333-3333-3333-333333333333"));
    check("ud_queue", &p, &key, UD_QUEUE_TOKEN, Some(UD_QUEUE_STS));
}

#[test]
fn user_delegation_file_sas_matches_python() {
    let mut p = params(
        Resource::File {
            share: "docs".into(),
            path: "report.pdf".into(),
        },
        "wr",
    );
    p.start = Some(ts(START));
    p.response_headers.content_type = Some("application/pdf".into());
    check(
        "ud_file",
        &p,
        &user_delegation_key("2026-10-06", None),
        UD_FILE_TOKEN,
        Some(UD_FILE_STS),
    );
}

const BLOB_20150405_SIG: &str = "xeWy9vd7qMC3rz5wrrf3LbhfE3LA2PMarnWPcZGAQcQ=";
const BLOB_20150405_STS: &str = "rw\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\npol\n10.0.0.1-10.0.0.9\nhttps\n2015-04-05\nno-cache\n\n\n\nimage/jpeg";
const CONTAINER_20150405_SIG: &str = "ph8AP0Ja5f1C5svcTypbLEdBoNjahGaeGl8FFBmm8jA=";
const CONTAINER_20150405_STS: &str =
    "\n\n\n/blob/acct1/photos\nread-policy\n\n\n2015-04-05\n\n\n\n\n";
const SNAPSHOT_20181109_SIG: &str = "9v5PiS3r5Gs10BtLdB1QFB5f2NKsVG7WV2NzAIvk/+w=";
const SNAPSHOT_20181109_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n\n\n\n2018-11-09\nbs\n2030-01-01T00:00:00.1234567Z\n\ninline\n\n\n";
const VERSION_20191212_SIG: &str = "zyxC5coABdN5hrCkRGhn80hwdInLo4+6t4kZqQbRfgE=";
const VERSION_20191212_STS: &str = "rxt\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n\n\n\n2019-12-12\nbv\n2030-01-01T00:00:00.7654321Z\n\n\n\n\n";
const CONTAINER_20200210_SIG: &str = "HTDgoQy6Qq1PxsbA5KXzw+/UbS3OcQUPtrPCLEahoXk=";
const CONTAINER_20200210_STS: &str = "racwdl\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos\n\n\nhttps,http\n2020-02-10\nc\n\n\n\n\n\n";
const BLOB_20201206_SIG: &str = "gaXCcbFfZd/kGGhFv6qfqTl37HOotgHTMRi9BaTNTSE=";
const BLOB_20201206_STS: &str = "rw\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n\n\n\n2020-12-06\nb\n\nscope-1\n\n\n\nen-US\n";
const ACCOUNT_20190202_SIG: &str = "qGER0VMzkRBwFCHCWdxyX1lzlSDFSHqe3pbPD+VHkT0=";
const ACCOUNT_20190202_STS: &str = "acct1\nrwdlacup\nbqf\nsco\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n168.1.5.65\nhttps\n2019-02-02\n";
const ACCOUNT_20201206_SIG: &str = "uU9mUzCTk1A1o5z3/Wmdn8yeqarD7SPfrbt9X47lVqw=";
const ACCOUNT_20201206_STS: &str =
    "acct1\nrl\nb\nc\n\n2030-02-03T04:05:06Z\n\n\n2020-12-06\nscope-1\n";
const UD_20181109_SIG: &str = "7sVG70z82MakiJK54zHDRCfwEj88hydwN52REOScFDU=";
const UD_20181109_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2018-11-09\n\n\n2018-11-09\nb\n\nno-cache\n\n\n\n";
const UD_20200210_SIG: &str = "aJZ1TZ11NDcvlti2yivcTjuUQV89YDOYtdqMx7uOVgg=";
const UD_20200210_STS: &str = "rl\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2020-02-10\n55555555-5555-5555-5555-555555555555\n\ncorr-7\n\n\n2020-02-10\nc\n\n\n\n\n\n";
const UD_20201206_SIG: &str = "f/QwR4UMrb+HMbij6qMYr5c0Lv/nTTNdCyQ2VcMrqzw=";
const UD_20201206_STS: &str = "rw\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2020-12-06\n\n\n\n10.0.0.1\n\n2020-12-06\nb\n\nscope-1\n\n\n\n\n";
const UD_20250705_SIG: &str = "n0H+IlzvfNzKfH+qt+sOvDNQdakUiRFICdVl+Cy7+6o=";
const UD_20250705_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2025-07-05\n\n\n\n33333333-3333-3333-3333-333333333333\n44444444-4444-4444-4444-444444444444\n\n\n2025-07-05\nb\n\n\n\n\n\n\n";
const UD_20260406_SIG: &str = "gImpHGbLjhPe8H5mWVSC9JqcsjZSFT7Ef/op3L7BXbE=";
const UD_20260406_STS: &str = "r\n\n2030-02-03T04:05:06Z\n/blob/acct1/photos/cat.jpg\n11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2026-04-06\n\n\n\n\n\n\n\n2026-04-06\nb\n\n\nx-ms-meta-a:1\nx-ms-foo:b:c\n\n\ncomp:list\n\n\n\n\n";
const QUEUE_20190202_SIG: &str = "VEYCVZoYEVou+cvmp6Eq7n/F5lq4vT0rgFMWXeuPNOQ=";
const QUEUE_20190202_STS: &str =
    "raup\n2030-01-02T03:04:05Z\n2030-02-03T04:05:06Z\n/queue/acct1/jobs\nqpol\n\n\n2019-02-02";
const SHARE_20190202_SIG: &str = "KuVIivdU2oI4izV90nB89hoLnNtOZkmi/Buz9HXkwdU=";
const SHARE_20190202_STS: &str =
    "rcwdl\n\n2030-02-03T04:05:06Z\n/file/acct1/docs\n\n\n\n2019-02-02\nno-cache\n\n\n\ntext/plain";
const FILE_20150405_SIG: &str = "YgXiQv+HQ9To7NDZLNHCJtzApXRdQuqJ1GzpO1L6jZA=";
const FILE_20150405_STS: &str =
    "r\n\n2030-02-03T04:05:06Z\n/file/acct1/docs/dir one/report.pdf\n\n\n\n2015-04-05\n\n\n\n\n";

// ---- JS SDK answers (older layouts) ------------------------------------------------------

fn with_version(mut p: SasParams, version: &str) -> SasParams {
    p.version = Some(version.into());
    p
}

#[test]
fn blob_sas_2015_04_05_layout_has_no_resource_line() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "wr"), "2015-04-05");
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1-10.0.0.9".into());
    p.protocol = Some(Protocol::Https);
    p.policy_id = Some("pol".into());
    p.response_headers.cache_control = Some("no-cache".into());
    p.response_headers.content_type = Some("image/jpeg".into());
    check_signature(
        "blob_20150405",
        &p,
        &account_key(),
        BLOB_20150405_SIG,
        BLOB_20150405_STS,
    );
}

#[test]
fn container_sas_2015_04_05_with_policy_only_matches_js() {
    let mut p = with_version(
        params(
            Resource::Container {
                container: "photos".into(),
            },
            "",
        ),
        "2015-04-05",
    );
    p.permissions = None;
    p.expiry = None;
    p.policy_id = Some("read-policy".into());
    check_signature(
        "container_20150405",
        &p,
        &account_key(),
        CONTAINER_20150405_SIG,
        CONTAINER_20150405_STS,
    );
}

#[test]
fn snapshot_sas_2018_11_09_signs_resource_and_snapshot() {
    let resource = Resource::Blob {
        container: "photos".into(),
        blob: "cat.jpg".into(),
        snapshot: Some("2030-01-01T00:00:00.1234567Z".into()),
        version_id: None,
    };
    let mut p = with_version(params(resource, "r"), "2018-11-09");
    p.response_headers.content_disposition = Some("inline".into());
    check_signature(
        "snapshot_20181109",
        &p,
        &account_key(),
        SNAPSHOT_20181109_SIG,
        SNAPSHOT_20181109_STS,
    );
}

#[test]
fn version_sas_2019_12_12_matches_js() {
    let resource = Resource::Blob {
        container: "photos".into(),
        blob: "cat.jpg".into(),
        snapshot: None,
        version_id: Some("2030-01-01T00:00:00.7654321Z".into()),
    };
    let p = with_version(params(resource, "txr"), "2019-12-12");
    check_signature(
        "version_20191212",
        &p,
        &account_key(),
        VERSION_20191212_SIG,
        VERSION_20191212_STS,
    );
}

#[test]
fn container_sas_2020_02_10_matches_js() {
    let mut p = with_version(
        params(
            Resource::Container {
                container: "photos".into(),
            },
            "ldwcar",
        ),
        "2020-02-10",
    );
    p.start = Some(ts(START));
    p.protocol = Some(Protocol::HttpsAndHttp);
    check_signature(
        "container_20200210",
        &p,
        &account_key(),
        CONTAINER_20200210_SIG,
        CONTAINER_20200210_STS,
    );
}

#[test]
fn blob_sas_2020_12_06_signs_the_encryption_scope() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "rw"), "2020-12-06");
    p.encryption_scope = Some("scope-1".into());
    p.response_headers.content_language = Some("en-US".into());
    check_signature(
        "blob_20201206",
        &p,
        &account_key(),
        BLOB_20201206_SIG,
        BLOB_20201206_STS,
    );
}

#[test]
fn account_sas_before_2020_12_06_has_no_encryption_scope_line() {
    let resource = Resource::Account {
        services: "fqb".into(),
        resource_types: "sco".into(),
    };
    let mut p = with_version(params(resource, "pucaldwr"), "2019-02-02");
    p.start = Some(ts(START));
    p.ip = Some("168.1.5.65".into());
    p.protocol = Some(Protocol::Https);
    check_signature(
        "account_20190202",
        &p,
        &account_key(),
        ACCOUNT_20190202_SIG,
        ACCOUNT_20190202_STS,
    );
}

#[test]
fn account_sas_2020_12_06_signs_the_encryption_scope() {
    let resource = Resource::Account {
        services: "b".into(),
        resource_types: "c".into(),
    };
    let mut p = with_version(params(resource, "lr"), "2020-12-06");
    p.encryption_scope = Some("scope-1".into());
    check_signature(
        "account_20201206",
        &p,
        &account_key(),
        ACCOUNT_20201206_SIG,
        ACCOUNT_20201206_STS,
    );
}

#[test]
fn user_delegation_sas_2018_11_09_layout_matches_js() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "r"), "2018-11-09");
    p.response_headers.cache_control = Some("no-cache".into());
    let key = user_delegation_key("2018-11-09", None);
    check_signature("ud_20181109", &p, &key, UD_20181109_SIG, UD_20181109_STS);
}

#[test]
fn user_delegation_sas_2020_02_10_signs_agent_object_and_correlation_ids() {
    let mut p = with_version(
        params(
            Resource::Container {
                container: "photos".into(),
            },
            "lr",
        ),
        "2020-02-10",
    );
    p.delegation.authorized_user_object_id = Some("55555555-5555-5555-5555-555555555555".into());
    p.delegation.correlation_id = Some("corr-7".into());
    let key = user_delegation_key("2020-02-10", None);
    check_signature("ud_20200210", &p, &key, UD_20200210_SIG, UD_20200210_STS);
}

#[test]
fn user_delegation_sas_2020_12_06_layout_matches_js() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "wr"), "2020-12-06");
    p.start = Some(ts(START));
    p.ip = Some("10.0.0.1".into());
    p.encryption_scope = Some("scope-1".into());
    let key = user_delegation_key("2020-12-06", None);
    check_signature("ud_20201206", &p, &key, UD_20201206_SIG, UD_20201206_STS);
}

#[test]
fn user_delegation_sas_2025_07_05_signs_delegated_user_fields() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "r"), "2025-07-05");
    p.delegation.delegated_user_object_id = Some("44444444-4444-4444-4444-444444444444".into());
    let key = user_delegation_key("2025-07-05", Some("33333333-3333-3333-3333-333333333333"));
    check_signature("ud_20250705", &p, &key, UD_20250705_SIG, UD_20250705_STS);
}

#[test]
fn queue_sas_2019_02_02_matches_js() {
    let mut p = with_version(
        params(
            Resource::Queue {
                queue: "jobs".into(),
            },
            "raup",
        ),
        "2019-02-02",
    );
    p.start = Some(ts(START));
    p.policy_id = Some("qpol".into());
    check_signature(
        "queue_20190202",
        &p,
        &account_key(),
        QUEUE_20190202_SIG,
        QUEUE_20190202_STS,
    );
}

#[test]
fn share_sas_2019_02_02_matches_js() {
    let mut p = with_version(
        params(
            Resource::Share {
                share: "docs".into(),
            },
            "rcwdl",
        ),
        "2019-02-02",
    );
    p.response_headers.cache_control = Some("no-cache".into());
    p.response_headers.content_type = Some("text/plain".into());
    check_signature(
        "share_20190202",
        &p,
        &account_key(),
        SHARE_20190202_SIG,
        SHARE_20190202_STS,
    );
}

#[test]
fn file_sas_2015_04_05_matches_js() {
    let resource = Resource::File {
        share: "docs".into(),
        path: "dir one/report.pdf".into(),
    };
    let p = with_version(params(resource, "r"), "2015-04-05");
    check_signature(
        "file_20150405",
        &p,
        &account_key(),
        FILE_20150405_SIG,
        FILE_20150405_STS,
    );
}

#[test]
fn user_delegation_sas_2026_04_06_signs_required_headers_and_query() {
    let mut p = with_version(params(blob("photos", "cat.jpg"), "r"), "2026-04-06");
    p.delegation.request_headers = vec![
        ("x-ms-meta-a".into(), "1".into()),
        ("x-ms-foo".into(), "b:c".into()),
    ];
    p.delegation.request_query = vec![("comp".into(), "list".into())];
    let key = user_delegation_key("2026-04-06", None);
    check_signature("ud_20260406", &p, &key, UD_20260406_SIG, UD_20260406_STS);
}
