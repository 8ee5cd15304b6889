//! A workload identity issuer uses a ServiceAccount only where a namespace admin bound it. The
//! operator holds no cluster-wide `create serviceaccounts/token`: the API server refuses its
//! TokenRequest (403) unless a Role in the ServiceAccount's namespace, limited to that
//! ServiceAccount by `resourceNames`, grants it to the operator (how cert-manager lets its
//! controller use a ServiceAccount for Vault). Whoever may create issuers in a namespace can
//! therefore not make the operator mint tokens of identities nobody agreed to lend.
//!
//! Pure: what a refused TokenRequest means, and the commands that create the binding.

use crate::error::Error;
use crate::issuer::identity::IdentityError;

/// The operator's own ServiceAccount: the subject a binding names. Unknown parts are shown as
/// placeholders in the commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorAccount {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl OperatorAccount {
    /// `namespace:name`, as `kubectl create rolebinding --serviceaccount` takes it.
    fn subject(&self) -> String {
        format!(
            "{}:{}",
            self.namespace.as_deref().unwrap_or("<operator-namespace>"),
            self.name.as_deref().unwrap_or("<operator-service-account>")
        )
    }
}

/// The name of the Role (and RoleBinding) that lends `service_account` to the operator.
pub fn role_name(service_account: &str) -> String {
    format!("sas-operator-token-{service_account}")
}

/// The two commands a namespace admin runs to let the operator request tokens of
/// `namespace/service_account`, and nothing else.
pub fn bind_commands(namespace: &str, service_account: &str, operator: &OperatorAccount) -> String {
    let role = role_name(service_account);
    format!(
        "kubectl create role {role} --verb=create --resource=serviceaccounts/token \
         --resource-name={service_account} -n {namespace}; \
         kubectl create rolebinding {role} --role={role} --serviceaccount={} -n {namespace}",
        operator.subject()
    )
}

/// What a failed TokenRequest for `namespace/service_account` means: a 403 is the missing
/// binding (the API server authorizes before it looks the ServiceAccount up, so it is also
/// the answer for one that does not exist); anything else is passed on unchanged.
pub fn token_request_failed(
    err: Error,
    namespace: &str,
    service_account: &str,
    operator: &OperatorAccount,
) -> Error {
    match err {
        Error::Kube(kube::Error::Api(status)) if status.code == 403 => {
            IdentityError::ServiceAccountNotBound {
                namespace: namespace.to_string(),
                name: service_account.to_string(),
                commands: bind_commands(namespace, service_account, operator),
            }
            .into()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("denied", "Forbidden")
                .with_code(code)
                .boxed(),
        ))
    }

    fn operator() -> OperatorAccount {
        OperatorAccount {
            namespace: Some("sas-operator".into()),
            name: Some("sas-operator".into()),
        }
    }

    #[test]
    fn a_refused_token_request_is_an_unbound_service_account_with_the_commands_to_bind_it() {
        let err = token_request_failed(api_error(403), "analytics", "signer", &operator());
        assert_eq!(err.category(), "ServiceAccountNotBound");
        assert!(!err.is_transient());
        let message = err.to_string();
        for command in [
            "kubectl create role sas-operator-token-signer --verb=create \
             --resource=serviceaccounts/token --resource-name=signer -n analytics",
            "kubectl create rolebinding sas-operator-token-signer \
             --role=sas-operator-token-signer --serviceaccount=sas-operator:sas-operator \
             -n analytics",
        ] {
            assert!(message.contains(command), "{command:?} not in {message}");
        }
    }

    #[test]
    fn other_failures_keep_their_meaning() {
        for code in [401, 404, 500] {
            let err = token_request_failed(api_error(code), "analytics", "signer", &operator());
            assert_eq!(err.category(), "KubernetesApiError", "{code}");
        }
    }

    #[test]
    fn an_unknown_operator_account_is_shown_as_a_placeholder() {
        let commands = bind_commands("ns", "sa", &OperatorAccount::default());
        assert!(
            commands.contains("--serviceaccount=<operator-namespace>:<operator-service-account>"),
            "{commands}"
        );
    }
}
