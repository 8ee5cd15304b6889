//! Tokens per second for each SAS kind, next to a raw HMAC-SHA256 over the same
//! string-to-sign (the floor any signer pays). Target: a full token <= 1 µs and within 2x of
//! the raw HMAC.
//!
//! Run: `cargo bench --bench signer -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sas_operator::sas::{
    self, AccountKey, DelegationExtras, Protocol, Resource, ResponseHeaders, SasParams, SigningKey,
    TableKeyRange, UserDelegationKey,
};
use sha2::Sha256;

const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn params(resource: Resource, permissions: &str) -> SasParams {
    SasParams {
        account_name: "benchaccount".into(),
        resource,
        permissions: Some(permissions.into()),
        start: Some("2030-01-02T03:04:05Z".parse().expect("valid time")),
        expiry: Some("2030-02-03T04:05:06Z".parse().expect("valid time")),
        ip: None,
        protocol: Some(Protocol::Https),
        version: None,
        policy_id: None,
        encryption_scope: None,
        response_headers: ResponseHeaders::default(),
        delegation: DelegationExtras::default(),
    }
}

fn cases() -> Vec<(&'static str, SasParams, SigningKey)> {
    let account = SigningKey::Account(AccountKey::from_base64(KEY).expect("bench key is base64"));
    let user_delegation = SigningKey::UserDelegation(UserDelegationKey {
        signed_oid: "11111111-1111-1111-1111-111111111111".into(),
        signed_tid: "22222222-2222-2222-2222-222222222222".into(),
        signed_start: "2030-01-01T00:00:00Z".into(),
        signed_expiry: "2030-01-08T00:00:00Z".into(),
        signed_service: "b".into(),
        signed_version: "2026-10-06".into(),
        signed_delegated_user_tid: None,
        value: AccountKey::from_base64(KEY).expect("bench key is base64"),
    });
    let blob = Resource::Blob {
        container: "photos".into(),
        blob: "2030/01/cat.jpg".into(),
        snapshot: None,
        version_id: None,
    };
    vec![
        (
            "account",
            params(
                Resource::Account {
                    services: "bqtf".into(),
                    resource_types: "sco".into(),
                },
                "rwdlacup",
            ),
            account.clone(),
        ),
        (
            "container",
            params(
                Resource::Container {
                    container: "photos".into(),
                },
                "rl",
            ),
            account.clone(),
        ),
        ("blob", params(blob.clone(), "rw"), account.clone()),
        (
            "directory",
            params(
                Resource::Directory {
                    container: "lake".into(),
                    path: "a/b/c".into(),
                },
                "rl",
            ),
            account.clone(),
        ),
        (
            "share",
            params(
                Resource::Share {
                    share: "docs".into(),
                },
                "rl",
            ),
            account.clone(),
        ),
        (
            "file",
            params(
                Resource::File {
                    share: "docs".into(),
                    path: "dir/report.pdf".into(),
                },
                "r",
            ),
            account.clone(),
        ),
        (
            "queue",
            params(
                Resource::Queue {
                    queue: "jobs".into(),
                },
                "raup",
            ),
            account.clone(),
        ),
        (
            "table",
            params(
                Resource::Table {
                    table: "Orders2030".into(),
                    key_range: TableKeyRange::default(),
                },
                "raud",
            ),
            account.clone(),
        ),
        ("user_delegation_blob", params(blob, "rw"), user_delegation),
    ]
}

fn bench_signer(c: &mut Criterion) {
    let key_bytes = AccountKey::from_base64(KEY).expect("bench key is base64");
    for (name, params, key) in cases() {
        let message = sas::string_to_sign(&params, &key).expect("bench case signs");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.bench_function("sign_token", |b| {
            b.iter(|| sas::sign(black_box(&params), black_box(&key)).expect("bench case signs"))
        });
        // The signer's own work without the HMAC: validation and the string-to-sign.
        group.bench_function("string_to_sign_only", |b| {
            b.iter(|| {
                sas::string_to_sign(black_box(&params), black_box(&key)).expect("bench case signs")
            })
        });
        // What a naive signer pays at minimum: key schedule + HMAC over the same bytes.
        group.bench_function("raw_hmac_sha256", |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(black_box(key_bytes.as_bytes()))
                    .expect("HMAC takes any key length");
                mac.update(black_box(message.as_bytes()));
                mac.finalize().into_bytes()
            })
        });
        // The same with the key schedule precomputed, as the signer does.
        let prototype = Hmac::<Sha256>::new_from_slice(key_bytes.as_bytes())
            .expect("HMAC takes any key length");
        group.bench_function("raw_hmac_sha256_precomputed_key", |b| {
            b.iter(|| {
                let mut mac = prototype.clone();
                mac.update(black_box(message.as_bytes()));
                mac.finalize().into_bytes()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_signer);
criterion_main!(benches);
