//! Workload identity: errors of the ServiceAccount token -> Entra -> user delegation key chain.

/// A failure of one step of the workload identity chain. Messages carry status codes and Entra
/// error codes, never a token, an assertion or a key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("workload identity issuers are not supported by this build yet")]
    NotAvailable,
}

impl IdentityError {
    pub fn category(&self) -> &'static str {
        match self {
            IdentityError::NotAvailable => "WorkloadIdentityUnavailable",
        }
    }
}
