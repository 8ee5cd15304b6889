//! The committed CRD YAML is generated from the Rust types and must not drift from them.

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, generated) in sas_operator::crd::crd_files() {
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("crds/{file} is committed: {err}"));
        assert!(
            committed == generated,
            "crds/{file} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn every_example_grant_is_a_valid_sas_grant() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut grants = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("kind: SasGrant") {
            continue;
        }
        let grant: sas_operator::crd::SasGrant =
            serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let name = grant.metadata.name.clone().unwrap();
        sas_operator::reconcile::grant::GrantPlan::from_spec(&name, &grant.spec)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        grants += 1;
    }
    assert_eq!(grants, 7, "examples/ holds seven SasGrants");
}

#[test]
fn every_example_issuer_is_a_valid_issuer() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut issuers = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        for document in documents {
            let (account, key, identity) = match document["kind"].as_str() {
                Some("SasIssuer") => {
                    let issuer: sas_operator::crd::SasIssuer =
                        serde_json::from_value(document).unwrap();
                    let spec = issuer.spec;
                    (
                        spec.storage_account,
                        spec.account_key,
                        spec.workload_identity,
                    )
                }
                Some("ClusterSasIssuer") => {
                    let issuer: sas_operator::crd::ClusterSasIssuer =
                        serde_json::from_value(document).unwrap();
                    assert!(issuer.spec.allowed_namespaces.is_some());
                    let spec = issuer.spec;
                    (
                        spec.storage_account,
                        spec.account_key,
                        spec.workload_identity,
                    )
                }
                _ => continue,
            };
            sas_operator::reconcile::validate::issuer(&account, key.as_ref(), identity.as_ref())
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            issuers += 1;
        }
    }
    assert_eq!(
        issuers, 2,
        "examples/ holds a SasIssuer and a ClusterSasIssuer"
    );
}
