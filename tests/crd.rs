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
fn committed_chart_crd_templates_match_the_rust_types() {
    for (file, generated) in sas_operator::crd::chart_crd_templates() {
        let path = format!(
            "{}/charts/sas-operator/templates/crds/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!("charts/sas-operator/templates/crds/{file} is committed: {err}")
        });
        assert!(
            committed == generated,
            "charts/sas-operator/templates/crds/{file} is stale: run `make crds` and commit the result"
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
                    let policy = issuer.spec.policy.as_ref();
                    let policy = policy.expect("the example SasIssuer shows a policy");
                    sas_operator::issuer::policy::check(policy)
                        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
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
                    let policy = issuer.spec.policy.as_ref();
                    let policy = policy.expect("a ClusterSasIssuer needs a policy");
                    sas_operator::issuer::policy::check(policy)
                        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
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

/// The example grants that name an example issuer (in namespace `analytics`, where the
/// examples say to apply them) ask for what its policy allows.
#[test]
fn every_example_grant_of_an_example_issuer_is_within_its_policy() {
    use sas_operator::crd::{IssuerKind, IssuerPolicy, SasGrant};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut policies: Vec<(IssuerKind, String, IssuerPolicy)> = Vec::new();
    let mut grants: Vec<SasGrant> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in serde_saphyr::from_multiple::<serde_json::Value>(&text).unwrap() {
            let name = document["metadata"]["name"].as_str().unwrap_or_default();
            let policy = serde_json::from_value(document["spec"]["policy"].clone());
            match (document["kind"].as_str(), policy) {
                (Some("SasIssuer"), Ok(Some(policy))) => {
                    policies.push((IssuerKind::SasIssuer, name.into(), policy))
                }
                (Some("ClusterSasIssuer"), Ok(Some(policy))) => {
                    policies.push((IssuerKind::ClusterSasIssuer, name.into(), policy))
                }
                (Some("SasGrant"), _) => grants.push(serde_json::from_value(document).unwrap()),
                _ => {}
            }
        }
    }
    let mut checked = 0;
    for grant in grants {
        let Some(reference) = &grant.spec.issuer_ref else {
            continue;
        };
        let name = grant.metadata.name.clone().unwrap();
        let (_, _, policy) = policies
            .iter()
            .find(|(kind, issuer, _)| *kind == reference.kind && *issuer == reference.name)
            .unwrap_or_else(|| panic!("grant {name} names an issuer examples/ does not hold"));
        let plan =
            sas_operator::reconcile::grant::GrantPlan::from_spec(&name, &grant.spec).unwrap();
        let request = sas_operator::issuer::policy::Request {
            namespace: "analytics",
            resource: &plan.resource,
            permissions: &grant.spec.permissions,
            validity: plan.validity,
            validity_text: grant.spec.validity.as_deref(),
            protocol: grant.spec.protocol,
        };
        sas_operator::issuer::policy::evaluate(policy, &request)
            .unwrap_or_else(|denial| panic!("grant {name}: {denial}"));
        checked += 1;
    }
    assert_eq!(
        checked, 2,
        "examples/ holds a grant for each example issuer"
    );
}
