//! Hostile grants: what a user who may create SasGrants (and SasIssuers) in one namespace, and
//! nothing else, can make the operator do. Every test runs the real operator under `deploy/`'s ServiceAccount
//! and RBAC against the real control plane, and asserts that the hostile spec is refused with
//! a clear `Ready=False` reason or an admission error, that no known secret value reaches the
//! operator's log, that other namespaces' grants are not delayed, and that writes stay bounded.
//!
//! `service_accounts` holds the operator's own credentials to the API server's verdict instead.
//!
//! One submodule per area, one test per hostile behaviour.

mod common;
#[path = "support/operator.rs"]
mod operator;

#[path = "hostile/validation.rs"]
mod validation;

#[path = "hostile/secrets.rs"]
mod secrets;

#[path = "hostile/runtime.rs"]
mod runtime;

#[path = "hostile/tenancy.rs"]
mod tenancy;

#[path = "hostile/endpoints.rs"]
mod endpoints;

#[path = "hostile/service_accounts.rs"]
mod service_accounts;

#[path = "hostile/fetch.rs"]
mod fetch;

#[path = "hostile/memory.rs"]
mod memory;
