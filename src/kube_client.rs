//! API clients with timeouts, the watches' retry policy, and a probe of the API server.
//!
//! Without timeouts a request to a frozen API server (or over a connection whose packets are
//! dropped) hangs until the kernel gives up, holding a worker and every rotation queued behind
//! it. Request/response calls get short connect, read and write timeouts; watches, which are
//! quiet for minutes when nothing changes, get a client without a read timeout (kube's watcher
//! has its own idle timeout) but TCP keepalive, and start over whenever the probe sees the API
//! server back after an outage: after a network partition the API server's side of an old watch
//! connection holds what it sent during the cut until its next TCP retransmission (tens of
//! seconds, up to two minutes), and nothing on the operator's side would notice.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::client::ConfigExt;
use kube::core::PartialObjectMeta;
use kube::runtime::utils::Backoff;
use kube::{Api, Client, Config};
use tokio::sync::watch;

use crate::admin::Readiness;
use crate::error::Error;

/// Connecting to the API server (TCP and TLS) takes at most this long. Not shorter: a TLS
/// handshake on a loaded node took over 3 s, and a failed connect at start-up ends the process.
/// (A reconcile is bounded by its own deadline anyway.)
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request/response call waits at most this long for the server between reads and writes.
/// The whole reconcile has its own, shorter or equal deadline.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before a failed watch is started again...
const WATCH_RETRY_FIRST: Duration = Duration::from_millis(250);
/// ... and the longest: a watch is back within half a second of the API server. (Each watch
/// waits on its own; the controller's triggers as a whole never pause, see [`NoPause`].)
const WATCH_RETRY_MAX: Duration = Duration::from_millis(500);
/// A watch connection quiet for this long is probed with TCP keepalives...
const WATCH_KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// ... every this long...
const WATCH_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// ... and given up after this many unanswered probes: a dead watch connection fails within 30 s
/// even when the probe never noticed an outage (a dropped NAT or load-balancer entry, say), and
/// the watch starts over. Each probe is one small packet each way per watch and quarter minute.
const WATCH_KEEPALIVE_RETRIES: u32 = 3;
/// How often the API server is probed while it answers...
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// ... and while it does not: recovery is noticed within a quarter of a second.
const PROBE_INTERVAL_FAILING: Duration = Duration::from_millis(250);
/// One probe gives up after this long (a frozen server reads as unreachable).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// `/readyz` reports the operator not ready once the API server has been out of reach this long
/// (one slow probe on a busy machine is not an outage).
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);

/// The two clients the operator uses.
#[derive(Clone)]
pub struct ApiClients {
    /// For request/response calls: reads, writes, Events, the Lease, the probe.
    pub requests: Client,
    /// For watches only: no read timeout, TCP keepalive.
    pub watches: Client,
}

impl ApiClients {
    /// Both clients, from the in-cluster config or the kubeconfig.
    pub async fn infer() -> Result<Self, Error> {
        let config = Config::infer()
            .await
            .map_err(|err| Error::Config(format!("no Kubernetes client config: {err}")))?;
        Self::from_config(config)
    }

    pub fn from_config(config: Config) -> Result<Self, Error> {
        let requests = Client::try_from(request_config(config.clone()))?;
        let watches = watch_client(watch_config(config))?;
        Ok(ApiClients { requests, watches })
    }
}

/// kube's default client stack (base URI, authentication, extra headers, the connect and write
/// timeouts of `config`) over a TCP connector with keepalive, which kube's own builder does not
/// offer. Without it a watch connection whose peer vanished stays open, silent, until the
/// kernel's retransmissions give up (about 15 minutes).
pub fn watch_client(config: Config) -> Result<Client, Error> {
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_keepalive(Some(WATCH_KEEPALIVE_IDLE));
    tcp.set_keepalive_interval(Some(WATCH_KEEPALIVE_INTERVAL));
    tcp.set_keepalive_retries(Some(WATCH_KEEPALIVE_RETRIES));
    let mut connector =
        hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(tcp)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

/// Every request/response call is bounded; the read timeout counts from the request, not from
/// when a pooled connection went idle.
pub fn request_config(mut config: Config) -> Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config.reset_reader_on_write = true;
    config
}

/// Watches are quiet for long stretches: no read timeout (the watcher's idle timeout and the
/// server's watch timeout end a dead one), but connecting and sending are bounded.
pub fn watch_config(mut config: Config) -> Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = None;
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config
}

/// The controller's retry policy for failed watches: 250 ms doubling to at most 500 ms, back to
/// 250 ms after any event. Kube's default grows to 30 s (and all watches of a controller share
/// it), which kept watches down for half a minute after the API server was back.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_RETRY_FIRST,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(WATCH_RETRY_MAX);
        Some(wait)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_FIRST;
    }
}

/// The controller's retry policy for its triggers as a whole: none. Each watch has its own
/// [`WatchBackoff`]; kube pauses every trigger of a controller (the reconciles of overdue grants
/// too) for as long as this says after any watch error, and a restarted API server answers a
/// few 403s (its RBAC cache) and 410s in its first seconds.
#[derive(Debug, Clone, Default)]
pub struct NoPause;

impl Iterator for NoPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoPause {
    fn reset(&mut self) {}
}

/// Whether the API server answers, as the probe and the watches see it; shared by the admin
/// server (`/readyz`), the controllers (reconciles of overdue grants when it is back) and the
/// log (one WARN per failing watch and outage, not one per retry).
#[derive(Clone)]
pub struct ApiHealth {
    state: Arc<Mutex<HealthState>>,
    /// Counts the times the API server came back after it was out of reach.
    reconnects: watch::Sender<u64>,
    readiness: Readiness,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Since when the API server has been failing (None: it answers).
    failing_since: Option<Instant>,
    /// When it last answered (a probe that started before then and failed late is stale).
    last_answer: Option<Instant>,
    /// Whether a watch failure was logged at WARN in this outage.
    watch_failure_logged: bool,
}

impl ApiHealth {
    pub fn new(readiness: Readiness) -> Self {
        ApiHealth {
            state: Arc::default(),
            reconnects: watch::channel(0).0,
            readiness,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The API server answered: if it had failed, it is back (reconciles of overdue grants
    /// follow at once).
    pub fn reachable(&self) {
        let was_failing = {
            let mut state = self.state();
            state.watch_failure_logged = false;
            state.last_answer = Some(Instant::now());
            state.failing_since.take().is_some()
        };
        self.readiness.set_api_reachable(true);
        if was_failing {
            tracing::info!(
                "the API server answers again; watching afresh and reconciling overdue grants"
            );
            self.reconnects.send_modify(|count| *count += 1);
        }
    }

    /// The API server did not answer; after [`UNREACHABLE_AFTER`] `/readyz` says so.
    pub fn unreachable(&self) {
        self.unreachable_since(Instant::now());
    }

    /// A probe started at `asked` got no answer: the API server is failing, unless it answered
    /// another probe since.
    fn unreachable_since(&self, asked: Instant) {
        let since = {
            let mut state = self.state();
            if state.last_answer.is_some_and(|answer| answer >= asked) {
                return;
            }
            *state.failing_since.get_or_insert_with(Instant::now)
        };
        if since.elapsed() >= UNREACHABLE_AFTER {
            self.readiness.set_api_reachable(false);
        }
    }

    pub fn is_failing(&self) -> bool {
        self.state().failing_since.is_some()
    }

    /// Returns once the API server is not known to be failing (at once if it is not).
    pub async fn until_reachable(&self) {
        // Subscribed before looking, so a return in between is not missed.
        let mut reconnects = self.reconnects.subscribe();
        while self.is_failing() {
            if reconnects.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether a failing watch should be logged at WARN: the first time in an outage only.
    pub fn log_watch_failure(&self) -> bool {
        !std::mem::replace(&mut self.state().watch_failure_logged, true)
    }

    /// Yields once each time the API server is back after an outage.
    pub fn reconnects(&self) -> impl Stream<Item = ()> + Send + 'static {
        let receiver = self.reconnects.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            Some(((), receiver))
        })
    }

    /// The watch stream `start` makes, made again (the old one dropped, its connection closed)
    /// each time the API server is back after an outage: a watcher starts with a list, so
    /// whatever changed while the old connection was stalled is delivered at once.
    pub fn restarted_when_back<T: 'static>(
        &self,
        start: impl FnMut() -> BoxStream<'static, T> + Send + 'static,
    ) -> BoxStream<'static, T> {
        Box::pin(RestartedWhenBack::new(Box::pin(self.reconnects()), start))
    }
}

/// See [`ApiHealth::restarted_when_back`].
struct RestartedWhenBack<T> {
    /// None once the reconnect signal is gone (never while the operator runs).
    back: Option<BoxStream<'static, ()>>,
    start: Box<dyn FnMut() -> BoxStream<'static, T> + Send>,
    current: BoxStream<'static, T>,
}

impl<T> RestartedWhenBack<T> {
    fn new(
        back: BoxStream<'static, ()>,
        mut start: impl FnMut() -> BoxStream<'static, T> + Send + 'static,
    ) -> Self {
        let current = start();
        RestartedWhenBack {
            back: Some(back),
            start: Box::new(start),
            current,
        }
    }
}

impl<T> Stream for RestartedWhenBack<T> {
    type Item = T;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        use std::task::Poll;
        let this = self.get_mut();
        while let Some(back) = this.back.as_mut() {
            match back.as_mut().poll_next(cx) {
                Poll::Ready(Some(())) => {
                    tracing::debug!("the API server is back: watching afresh");
                    this.current = (this.start)();
                }
                Poll::Ready(None) => this.back = None,
                Poll::Pending => break,
            }
        }
        this.current.as_mut().poll_next(cx)
    }
}

/// Probes the API server every second (every 250 ms while it fails, without waiting for a
/// probe that hangs) until `stopping` resolves. It serves when its `/readyz` says so or a quorum
/// read of Secrets in `namespace` (every namespace for None) succeeds: after etcd returns, the
/// API server serves requests well before its `/readyz` turns ready. A frozen server, or one
/// without etcd, reads as unreachable.
pub async fn probe(
    client: Client,
    health: ApiHealth,
    namespace: Option<String>,
    stopping: impl Future<Output = ()>,
) {
    let probing = async {
        loop {
            let asked = Instant::now();
            let (client, health_of_probe, namespace) =
                (client.clone(), health.clone(), namespace.clone());
            tokio::spawn(async move {
                let serving = tokio::time::timeout(PROBE_TIMEOUT, serves(&client, namespace))
                    .await
                    .unwrap_or(false);
                if serving {
                    health_of_probe.reachable();
                } else {
                    health_of_probe.unreachable_since(asked);
                }
            });
            let interval = if health.is_failing() {
                PROBE_INTERVAL_FAILING
            } else {
                PROBE_INTERVAL
            };
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = probing => {}
        () = stopping => {}
    }
}

/// Whether the API server answers `/readyz` or a quorum read of Secrets (what the operator
/// writes; kube-apiserver reconnects to etcd per resource, so grants can be served before
/// Secrets are), whichever first; but not while it refuses the operator's read (401/403): a
/// restarted API server is ready a second or so before its authorizer lets the operator's
/// ServiceAccount in, and a reconcile refused then would back off as if for want of RBAC.
async fn serves(client: &Client, namespace: Option<String>) -> bool {
    let ready = async {
        client
            .request_text(http_get("/readyz"))
            .await
            .map(drop)
            .map_err(drop)
    };
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), &namespace),
        None => Api::all(client.clone()),
    };
    // No resourceVersion: the API server reads etcd, not its cache. Metadata only.
    let quorum_read = async {
        secrets
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map(drop)
    };
    let refused = |err: &kube::Error| matches!(err, kube::Error::Api(status) if matches!(status.code, 401 | 403));
    match futures::future::select(Box::pin(ready), Box::pin(quorum_read)).await {
        futures::future::Either::Right((Ok(()), _)) => true,
        futures::future::Either::Right((Err(err), ready)) => !refused(&err) && ready.await.is_ok(),
        futures::future::Either::Left((Ok(()), quorum_read)) => quorum_read
            .await
            .map_or_else(|err| !refused(&err), |()| true),
        futures::future::Either::Left((Err(()), quorum_read)) => quorum_read.await.is_ok(),
    }
}

fn http_get(path: &str) -> axum::http::Request<Vec<u8>> {
    axum::http::Request::get(path)
        .body(Vec::new())
        .expect("a GET of a static path is a valid request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_retries_start_at_a_quarter_second_and_never_wait_more_than_half_a_second() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<Duration> = backoff.by_ref().take(4).collect();
        assert_eq!(waits, [250, 500, 500, 500].map(Duration::from_millis));
        backoff.reset();
        assert_eq!(backoff.next(), Some(WATCH_RETRY_FIRST));
    }

    #[test]
    fn requests_have_timeouts_and_watches_no_read_timeout() {
        let config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        let requests = request_config(config.clone());
        assert_eq!(requests.read_timeout, Some(REQUEST_TIMEOUT));
        assert_eq!(requests.write_timeout, Some(REQUEST_TIMEOUT));
        assert_eq!(requests.connect_timeout, Some(CONNECT_TIMEOUT));
        assert!(requests.reset_reader_on_write);
        let watches = watch_config(config);
        assert_eq!(watches.read_timeout, None);
        assert_eq!(watches.connect_timeout, Some(CONNECT_TIMEOUT));
    }

    #[tokio::test]
    async fn the_api_server_back_after_failing_signals_one_reconnect() {
        let readiness = Readiness::default();
        let health = ApiHealth::new(readiness.clone());
        let mut reconnects = Box::pin(health.reconnects());
        health.reachable();
        health.unreachable();
        health.unreachable();
        health.reachable();
        health.reachable();
        use futures::StreamExt;
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), reconnects.next()).await,
            Ok(Some(()))
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), reconnects.next())
                .await
                .is_err(),
            "a second reconnect without an outage in between"
        );
    }

    #[tokio::test]
    async fn every_watch_starts_afresh_when_the_api_server_is_back_and_the_stalled_one_is_dropped()
    {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let health = ApiHealth::new(Readiness::default());
        let started = Arc::new(AtomicUsize::new(0));
        // Held by every live watch stream (and the closure): tells whether old ones are dropped.
        let live = Arc::new(());
        let (count, held) = (started.clone(), live.clone());
        let mut events = health.restarted_when_back(move || {
            let watch = count.fetch_add(1, Ordering::SeqCst) + 1;
            let held = held.clone();
            futures::stream::iter([watch])
                .chain(futures::stream::pending())
                .map(move |event| {
                    let _ = &held;
                    event
                })
                .boxed()
        });
        let quiet = Duration::from_millis(50);
        assert_eq!(events.next().await, Some(1));
        assert!(tokio::time::timeout(quiet, events.next()).await.is_err());

        health.reachable();
        assert!(
            tokio::time::timeout(quiet, events.next()).await.is_err(),
            "an answer without an outage before it restarts nothing"
        );

        health.unreachable();
        health.reachable();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), events.next()).await,
            Ok(Some(2))
        );
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(
            Arc::strong_count(&live),
            3,
            "ours, the closure's and the current watch's: the stalled watch is gone"
        );
    }

    /// Answers one request with the headers of a response whose body never ends (a watch), and
    /// hands back the request and the client's port.
    async fn serve_one_watch(
        listener: tokio::net::TcpListener,
    ) -> (String, u16, tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, client) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|end| end == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the client closed before its request ended");
            request.extend_from_slice(&buffer[..read]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        (
            String::from_utf8_lossy(&request).into_owned(),
            client.port(),
            socket,
        )
    }

    /// The watch client made for a plain-HTTP test server, with a token.
    async fn watch_client_and_server() -> (Client, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut config = Config::new(url.parse().unwrap());
        config.auth_info.token = Some("watch-token".to_string().into());
        let client = watch_client(watch_config(config)).expect("build the watch client");
        (client, listener)
    }

    fn watch_request() -> axum::http::Request<kube::client::Body> {
        axum::http::Request::get("/api/v1/secrets?watch=true")
            .body(kube::client::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn the_watch_client_sends_the_configured_credentials_to_the_configured_server() {
        let (client, listener) = watch_client_and_server().await;
        let (response, (request, _, _socket)) =
            tokio::join!(client.send(watch_request()), serve_one_watch(listener));
        assert!(response.expect("the watch starts").status().is_success());
        let request = request.to_ascii_lowercase();
        assert!(
            request.starts_with("get /api/v1/secrets?watch=true "),
            "{request}"
        );
        assert!(
            request.contains("authorization: bearer watch-token\r\n"),
            "{request}"
        );
    }

    /// The kernel's own view of the client's socket (`/proc/net/tcp`): its pending timer is the
    /// keepalive timer (2), due within the keepalive idle time, not the default two hours.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn watch_connections_carry_tcp_keepalive() {
        let (client, listener) = watch_client_and_server().await;
        let server_port = listener.local_addr().unwrap().port();
        let (response, (_, client_port, _socket)) =
            tokio::join!(client.send(watch_request()), serve_one_watch(listener));
        let _watch = response.expect("the watch starts");
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let ends = format!(":{client_port:04X} 0100007F:{server_port:04X}");
        let socket = table
            .lines()
            .find(|line| line.contains(&ends))
            .unwrap_or_else(|| panic!("no socket {ends} in\n{table}"));
        let timer = socket.split_whitespace().nth(5).unwrap();
        let (kind, due) = timer.split_once(':').unwrap();
        assert_eq!(kind, "02", "the keepalive timer is armed: {socket}");
        // In clock ticks (USER_HZ, 100 per second).
        let due = u64::from_str_radix(due, 16).unwrap();
        assert!(
            due <= WATCH_KEEPALIVE_IDLE.as_secs() * 100,
            "first keepalive due in {due} ticks: {socket}"
        );
    }

    #[test]
    fn a_probe_that_failed_late_does_not_undo_a_later_answer() {
        let readiness = Readiness::default();
        let health = ApiHealth::new(readiness);
        let asked = Instant::now();
        health.reachable();
        health.unreachable_since(asked);
        assert!(!health.is_failing());
        std::thread::sleep(Duration::from_millis(2));
        health.unreachable_since(Instant::now());
        assert!(health.is_failing());
    }

    #[test]
    fn a_failing_watch_is_logged_once_per_outage() {
        let health = ApiHealth::new(Readiness::default());
        health.unreachable();
        assert!(health.log_watch_failure());
        assert!(!health.log_watch_failure());
        health.reachable();
        assert!(health.log_watch_failure());
    }

    #[test]
    fn readiness_drops_only_after_the_api_server_failed_for_a_while() {
        let readiness = Readiness::default();
        readiness.set_ready();
        let health = ApiHealth::new(readiness.clone());
        health.unreachable();
        assert!(readiness.is_ready(), "one failed probe is not an outage");
        health.state().failing_since = Some(Instant::now() - UNREACHABLE_AFTER);
        health.unreachable();
        assert!(!readiness.is_ready());
        health.reachable();
        assert!(readiness.is_ready());
    }
}
