//! Pure: whether a namespace matches a `ClusterSasIssuer`'s `allowedNamespaces`: listed in
//! `names`, or matched by the label selector (`matchLabels`, `matchExpressions`, with
//! Kubernetes' semantics) when one is given. A selector of names only allows just those; an
//! empty selector (`{}`) matches every namespace, as in Kubernetes; an absent one matches none
//! (decided by the caller).

use std::collections::BTreeMap;

use crate::crd::{NamespaceSelector, SelectorOperator};

pub fn matches(
    selector: &NamespaceSelector,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if lists(selector, namespace) {
        return true;
    }
    if !has_label_selector(selector) {
        return selector.names.is_none();
    }
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

/// Whether deciding needs the namespace's labels (so the caller reads them only then).
pub fn needs_labels(selector: &NamespaceSelector, namespace: &str) -> bool {
    has_label_selector(selector) && !lists(selector, namespace)
}

fn lists(selector: &NamespaceSelector, namespace: &str) -> bool {
    selector
        .names
        .iter()
        .flatten()
        .any(|name| name == namespace)
}

fn has_label_selector(selector: &NamespaceSelector) -> bool {
    selector.match_labels.is_some() || selector.match_expressions.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SelectorRequirement;

    /// The label part alone, for namespace "ns" (not listed by name).
    fn matches(selector: &NamespaceSelector, labels: &BTreeMap<String, String>) -> bool {
        super::matches(selector, "ns", labels)
    }

    fn names(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|n| n.to_string()).collect())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn match_labels(pairs: &[(&str, &str)]) -> NamespaceSelector {
        NamespaceSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        }
    }

    fn expression(key: &str, operator: SelectorOperator, values: &[&str]) -> NamespaceSelector {
        NamespaceSelector {
            match_expressions: Some(vec![SelectorRequirement {
                key: key.into(),
                operator,
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
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

    #[test]
    fn names_alone_allow_exactly_the_listed_namespaces() {
        let selector = NamespaceSelector {
            names: names(&["team-a", "team-b"]),
            ..Default::default()
        };
        assert!(super::matches(&selector, "team-a", &labels(&[])));
        assert!(super::matches(&selector, "team-b", &labels(&[("x", "y")])));
        assert!(!super::matches(&selector, "team-c", &labels(&[])));
        assert!(!super::matches(&selector, "team", &labels(&[])));
        assert!(
            !needs_labels(&selector, "team-c"),
            "names alone never read labels"
        );
        let none = NamespaceSelector {
            names: names(&[]),
            ..Default::default()
        };
        assert!(!super::matches(&none, "team-a", &labels(&[])));
    }

    #[test]
    fn names_or_labels_allow_a_namespace() {
        let selector = NamespaceSelector {
            names: names(&["team-a"]),
            ..match_labels(&[("storage-access", "granted")])
        };
        let granted = labels(&[("storage-access", "granted")]);
        assert!(super::matches(&selector, "team-a", &labels(&[])));
        assert!(super::matches(&selector, "team-z", &granted));
        assert!(!super::matches(&selector, "team-z", &labels(&[])));
        assert!(!needs_labels(&selector, "team-a"));
        assert!(needs_labels(&selector, "team-z"));
    }
}
