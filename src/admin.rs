//! The admin HTTP server: `/metrics`, `/healthz` and `/readyz`.
//!
//! It serves nothing that depends on a grant's data beyond the metrics' bounded labels, so it
//! can listen on all interfaces for the kubelet's probes and Prometheus.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics};

/// Whether this replica is ready to do its job; `/readyz` answers 503 until it is.
///
/// With leader election, a standby replica that is waiting for the lease should also count as
/// ready: otherwise a rolling update of a two-replica Deployment never completes, because the new
/// pod cannot become leader while an old one holds the lease.
#[derive(Clone, Debug)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    /// Whether the API server answers (see `kube_client::ApiHealth`): an operator that cannot
    /// reach it cannot rotate anything, and says so.
    api_reachable: Arc<AtomicBool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            ready: Arc::default(),
            api_reachable: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Readiness {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the replica not ready again, e.g. while it shuts down.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Records whether the API server answers.
    pub fn set_api_reachable(&self, reachable: bool) {
        self.api_reachable.store(reachable, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.api_reachable()
    }

    pub fn api_reachable(&self) -> bool {
        self.api_reachable.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    readiness: Readiness,
}

/// Binds `addr` and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_on(listener, metrics, readiness, shutdown).await
}

/// Serves on a listener that is already bound (lets callers bind port 0 and learn the port).
pub async fn serve_on(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if !state.readiness.api_reachable() {
        (StatusCode::SERVICE_UNAVAILABLE, "API server unreachable\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Response {
        status: u16,
        content_type: Option<String>,
        body: String,
    }

    /// A running admin server on a free loopback port.
    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start(metrics: Metrics, readiness: Readiness) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, metrics, readiness, async move {
            let _ = stopped.await;
        }));
        Server { addr, stop, task }
    }

    async fn get(addr: SocketAddr, path: &str) -> Response {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Response {
            status,
            content_type,
            body,
        }
    }

    #[tokio::test]
    async fn healthz_answers_ok_while_running() {
        let server = start(Metrics::new(), Readiness::default()).await;
        let response = get(server.addr, "/healthz").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok\n");
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_ready_then_ok_then_unavailable_again() {
        let readiness = Readiness::default();
        let server = start(Metrics::new(), readiness.clone()).await;

        let before = get(server.addr, "/readyz").await;
        assert_eq!((before.status, before.body.as_str()), (503, "not ready\n"));

        readiness.set_ready();
        let after = get(server.addr, "/readyz").await;
        assert_eq!((after.status, after.body.as_str()), (200, "ready\n"));

        readiness.set_not_ready();
        assert_eq!(get(server.addr, "/readyz").await.status, 503);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_while_the_api_server_is_out_of_reach() {
        let readiness = Readiness::default();
        readiness.set_ready();
        let server = start(Metrics::new(), readiness.clone()).await;

        readiness.set_api_reachable(false);
        let during = get(server.addr, "/readyz").await;
        assert_eq!(
            (during.status, during.body.as_str()),
            (503, "API server unreachable\n")
        );

        readiness.set_api_reachable(true);
        assert_eq!(get(server.addr, "/readyz").await.status, 200);
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let metrics = Metrics::new();
        metrics.follow_leadership(crate::leader::LeadershipClaim::unconditional());
        let server = start(metrics.clone(), Readiness::default()).await;
        metrics.set_ready("apps", "reports", true);

        let response = get(server.addr, "/metrics").await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.content_type.as_deref(),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(
            response.body.lines().any(
                |line| line == r#"sas_operator_grant_ready{namespace="apps",name="reports"} 1"#
            ),
            "body:\n{}",
            response.body
        );
        assert!(response.body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let server = start(Metrics::new(), Readiness::default()).await;
        assert_eq!(get(server.addr, "/debug").await.status, 404);
    }

    #[tokio::test]
    async fn shutdown_stops_the_server_and_frees_the_port() {
        let server = start(Metrics::new(), Readiness::default()).await;
        server.stop.send(()).unwrap();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), server.task)
            .await
            .expect("server did not stop within 5 s of shutdown");
        result.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    }

    #[tokio::test]
    async fn serve_reports_an_address_already_in_use() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = serve(
            addr,
            Metrics::new(),
            Readiness::default(),
            std::future::pending(),
        )
        .await
        .expect_err("binding a port that is in use must fail");
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }
}
