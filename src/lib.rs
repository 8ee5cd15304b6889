//! sas-operator: signs Azure Storage shared access signatures into Kubernetes Secrets and
//! keeps them fresh. Everything lives in this library; `main.rs` only dispatches.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod duration;
pub mod endpoints;
pub mod error;
pub mod fair;
pub mod grant_index;
pub mod issuer;
pub mod kube_client;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod sas;
pub mod telemetry;
