//! Shared integration-test harness: a real control plane, Azurite and the Entra ID emulator,
//! one of each per test binary, started lazily on first use and stopped when the test binary
//! exits (even on a panic or a kill: see [`process`]). Use it from a test binary with
//! `mod common;`.
//!
//! Every component comes from the versioned cache that `make tools` fills; a missing one makes
//! the first test that needs it panic with a message saying to run `make tools`.
#![allow(dead_code, unused_imports)]

pub mod audit;
pub mod azure;
pub mod azurite;
pub mod control_plane;
pub mod entra;
pub mod hostile_endpoint;
pub mod node;
pub mod process;

pub use azurite::{
    Azurite, AzuriteAccount, AzuriteEndpoints, AzuriteOauth, azurite, azurite_oauth,
};
pub use control_plane::{ControlPlane, control_plane, test_namespace};
pub use entra::{Entra, entra};
pub use node::{Node, node};

/// Polls `check` every 100 ms until it returns `Some`, and returns that value; panics naming
/// `what` after `timeout`. For conditions the watch-based `kube::runtime::wait` cannot express.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
