//! The committed CRD YAML is generated from the Rust types and must not drift from them.

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/sasgrant.yaml"))
            .expect("crds/sasgrant.yaml is committed");
    let generated = sas_operator::crd::crd_yaml();
    assert!(
        committed == generated,
        "crds/sasgrant.yaml is stale: run `make crds` and commit the result"
    );
}
