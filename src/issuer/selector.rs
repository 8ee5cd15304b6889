//! Pure: whether a namespace's labels match a `ClusterSasIssuer`'s `allowedNamespaces`, with
//! Kubernetes' label selector semantics. An empty selector (`{}`) matches every namespace, as
//! in Kubernetes; an absent one matches none (decided by the caller).

use std::collections::BTreeMap;

use crate::crd::{NamespaceSelector, SelectorOperator};

pub fn matches(selector: &NamespaceSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator {
            SelectorOperator::In => value.is_some_and(|v| values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn match_labels(pairs: &[(&str, &str)]) -> NamespaceSelector {
        NamespaceSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        }
    }

    fn expression(key: &str, operator: SelectorOperator, values: &[&str]) -> NamespaceSelector {
        NamespaceSelector {
            match_labels: None,
            match_expressions: Some(vec![SelectorRequirement {
                key: key.into(),
                operator,
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let selector = match_labels(&[("storage-access", "granted"), ("team", "a")]);
        assert!(matches(
            &selector,
            &labels(&[("storage-access", "granted"), ("team", "a"), ("x", "y")])
        ));
        assert!(!matches(
            &selector,
            &labels(&[("storage-access", "granted")])
        ));
        assert!(!matches(
            &selector,
            &labels(&[("storage-access", "denied"), ("team", "a")])
        ));
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let env = labels(&[("env", "prod")]);
        let none = labels(&[]);
        assert!(matches(
            &expression("env", SelectorOperator::In, &["prod", "qa"]),
            &env
        ));
        assert!(!matches(
            &expression("env", SelectorOperator::In, &["qa"]),
            &env
        ));
        assert!(!matches(
            &expression("env", SelectorOperator::In, &["prod"]),
            &none
        ));
        assert!(matches(
            &expression("env", SelectorOperator::NotIn, &["qa"]),
            &env
        ));
        assert!(matches(
            &expression("env", SelectorOperator::NotIn, &["qa"]),
            &none
        ));
        assert!(matches(
            &expression("env", SelectorOperator::Exists, &[]),
            &env
        ));
        assert!(!matches(
            &expression("env", SelectorOperator::Exists, &[]),
            &none
        ));
        assert!(matches(
            &expression("env", SelectorOperator::DoesNotExist, &[]),
            &none
        ));
    }

    #[test]
    fn an_empty_selector_matches_every_namespace() {
        assert!(matches(&NamespaceSelector::default(), &labels(&[])));
    }
}
