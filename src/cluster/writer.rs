//! Status and Event writes in the background, so that they never hold a reconcile worker.
//!
//! After etcd returns, kube-apiserver serves Secrets seconds before it serves writes of a CRD's
//! status; written inline, those writes held every worker up to the reconcile deadline while
//! overdue grants waited. Here [`KubeCluster`](super::KubeCluster) hands a status or an Event to
//! a [`Writer`] and returns at once; the writer sends it:
//!
//! - **Status**: the newest status handed over for an object wins (older ones not yet sent are
//!   dropped), one request in flight per object, transient failures retried with backoff until
//!   it is written, superseded, or the object is gone (404). What was handed over and not yet
//!   written is what the object will show: [`Writer::latest_status`] lets readers see it, so a
//!   reconcile that runs before the write lands does not repeat its Warning Event or skip a
//!   write it needs.
//! - **Events**: a bounded number waiting (more are dropped and counted in
//!   `sas_operator_events_dropped_total`), a few attempts each, then dropped and counted.
//! - At most [`Settings::concurrency`] requests at once, each bounded by
//!   [`Settings::request_deadline`] on top of the request client's own timeouts.
//! - The leadership claim is checked when a write is handed over (a lapsed claim fails with
//!   [`Error::LeadershipLost`]) and again right before every request: nothing is sent after it
//!   lapses.
//! - Nothing is sent while the API server is known to be unreachable ([`ApiHealth`]): writes
//!   wait for it to come back (and then start their backoff over) instead of failing in a loop.
//! - One WARN line per failed request at most, with a static reason.
//! - Rotations first: while Secrets are being written (a wave of renewals, the API server just
//!   back), status and Events wait until the Secret writes pause for
//!   [`Settings::yield_quiet`], at most [`Settings::yield_max`], so that they do not slow down
//!   the writes that matter to applications.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::crd::{IssuerKind, IssuerStatus, SasGrantStatus};
use crate::error::Error;
use crate::kube_client::ApiHealth;
use crate::leader::LeadershipClaim;
use crate::metrics::Metrics;

/// The turns lane of Events (no namespace is empty).
const EVENTS_LANE: &str = "";

/// The object whose status a write sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOf {
    Grant {
        namespace: String,
        name: String,
    },
    Issuer {
        kind: IssuerKind,
        /// `None` for a `ClusterSasIssuer`.
        namespace: Option<String>,
        name: String,
    },
}

impl StatusOf {
    /// (kind, namespace, name): one slot per object.
    fn key(&self) -> (&'static str, String, String) {
        match self {
            StatusOf::Grant { namespace, name } => ("SasGrant", namespace.clone(), name.clone()),
            StatusOf::Issuer {
                kind,
                namespace,
                name,
            } => (
                kind.as_str(),
                namespace.clone().unwrap_or_default(),
                name.clone(),
            ),
        }
    }

    fn kind(&self) -> &'static str {
        self.key().0
    }

    fn namespace(&self) -> &str {
        match self {
            StatusOf::Grant { namespace, .. } => namespace,
            StatusOf::Issuer { namespace, .. } => namespace.as_deref().unwrap_or_default(),
        }
    }

    fn name(&self) -> &str {
        match self {
            StatusOf::Grant { name, .. } | StatusOf::Issuer { name, .. } => name,
        }
    }
}

/// A status to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Grant(SasGrantStatus),
    Issuer(IssuerStatus),
}

/// The requests the writer sends: the API server in the operator, a recording fake in tests.
pub trait Transport: Send + Sync + 'static {
    /// An Event as sent (built when it was handed over, so it carries that time).
    type Event: Send + Sync + 'static;

    /// Sets the status of `of` (forced server-side apply on the status subresource).
    fn write_status(
        &self,
        of: &StatusOf,
        status: &Status,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Creates an Event.
    fn create_event(&self, event: &Self::Event) -> impl Future<Output = Result<(), Error>> + Send;
}

/// How the writer paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requests in flight at most (status and Events together).
    pub concurrency: usize,
    /// Events waiting to be sent at most; more are dropped.
    pub event_capacity: usize,
    /// Attempts per Event before it is dropped.
    pub event_attempts: u32,
    /// The wait after the first failed attempt, doubling with each further failure...
    pub first_retry: Duration,
    /// ... up to this.
    pub max_retry: Duration,
    /// One request gives up after this long (the request client has its own timeouts too).
    pub request_deadline: Duration,
    /// A request waits until no Secret was written for this long...
    pub yield_quiet: Duration,
    /// ... but not longer than this.
    pub yield_max: Duration,
}

/// When the reconciles last wrote a Secret (shared by [`super::KubeCluster`] and its writer).
#[derive(Debug)]
pub struct SecretWrites {
    origin: Instant,
    /// Nanoseconds after `origin` of the last Secret write, plus one (0: none yet).
    last: AtomicU64,
}

impl Default for SecretWrites {
    fn default() -> Self {
        SecretWrites {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl SecretWrites {
    /// A Secret write starts now.
    pub fn started(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(nanos + 1, Ordering::Release);
    }

    /// How long ago the last Secret write started (None: never).
    fn since_last(&self) -> Option<Duration> {
        match self.last.load(Ordering::Acquire) {
            0 => None,
            plus_one => {
                let at = self.origin + Duration::from_nanos(plus_one - 1);
                Some(Instant::now().saturating_duration_since(at))
            }
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 4,
            event_capacity: 1024,
            event_attempts: 3,
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
            request_deadline: crate::kube_client::REQUEST_TIMEOUT,
            yield_quiet: Duration::from_millis(250),
            yield_max: Duration::from_secs(2),
        }
    }
}

/// Hands status and Event writes to background tasks. Cloning is cheap; clones share the
/// queue.
pub struct Writer<T: Transport> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T: Transport> {
    transport: T,
    claim: LeadershipClaim,
    /// None: the API server is taken to be reachable (no probe runs).
    health: Option<ApiHealth>,
    metrics: Option<Metrics>,
    settings: Settings,
    /// Secret writes to give way to.
    secret_writes: Option<Arc<SecretWrites>>,
    /// Requests in flight, in turns by namespace (Events take turns as one more lane).
    permits: Arc<crate::fair::FairGate>,
    state: Mutex<State>,
    /// Notified whenever a status slot or an Event is finished (for [`Writer::drain`]).
    progress: Notify,
}

#[derive(Default)]
struct State {
    /// One slot per object with a status write pending or in flight; a task runs per slot.
    statuses: HashMap<(&'static str, String, String), Slot>,
    /// Events handed over and not finished.
    events: usize,
    /// Whether Events are being dropped for want of room (logged once per episode).
    overflowing: bool,
}

impl State {
    /// Ends an object's slot. A cold start fills the table with a slot per grant, and a table
    /// never shrinks by itself: its room for thousands would stay for the life of the process.
    fn remove_slot(&mut self, key: &(&'static str, String, String)) {
        self.statuses.remove(key);
        let len = self.statuses.len();
        if self.statuses.capacity() > 64 && len * 4 < self.statuses.capacity() {
            self.statuses.shrink_to(len * 2);
        }
    }
}

struct Slot {
    /// The newest status handed over that no request carries yet.
    next: Option<Status>,
    /// The newest status handed over: what the object will show once the writes land.
    latest: Status,
}

/// What became of one request.
enum Sent {
    Done,
    /// The object (or its namespace) is gone.
    Gone,
    /// The same request would fail again (RBAC, validation): not retried.
    Refused(Error),
    /// Worth another try.
    Failed(Failure),
}

enum Failure {
    Api(Error),
    TimedOut,
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Api(err) => err.category(),
            Failure::TimedOut => "RequestTimeout",
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Api(err) => crate::error::truncate_message(&err.to_string()).into_owned(),
            Failure::TimedOut => "no answer within the request deadline".into(),
        }
    }
}

impl<T: Transport> Writer<T> {
    pub fn new(
        transport: T,
        claim: LeadershipClaim,
        health: Option<ApiHealth>,
        metrics: Option<Metrics>,
        settings: Settings,
    ) -> Self {
        let permits = crate::fair::FairGate::new(settings.concurrency.max(1));
        Writer {
            shared: Arc::new(Shared {
                transport,
                claim,
                health,
                metrics,
                settings,
                secret_writes: None,
                permits,
                state: Mutex::default(),
                progress: Notify::new(),
            }),
        }
    }

    /// Lets Secret writes go first (see the module documentation). Call before handing
    /// anything over.
    pub fn yielding_to(mut self, secret_writes: Arc<SecretWrites>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.secret_writes = Some(secret_writes);
        }
        self
    }

    /// Hands over the status `of` should show; it replaces any not yet sent. Fails only when
    /// this replica may no longer write.
    pub fn status(&self, of: StatusOf, status: Status) -> Result<(), Error> {
        if !self.shared.claim.holds() {
            return Err(Error::LeadershipLost);
        }
        let start = match self.shared.state().statuses.entry(of.key()) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                // Equal to the newest: already pending, or in flight (and put back if that
                // request fails).
                if slot.latest != status {
                    slot.next = Some(status.clone());
                    slot.latest = status;
                }
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(Slot {
                    next: Some(status.clone()),
                    latest: status,
                });
                true
            }
        };
        if start {
            tokio::spawn(self.shared.clone().write_status(of));
        }
        Ok(())
    }

    /// Hands over an Event. Dropped (and counted) when too many are waiting. Fails only when
    /// this replica may no longer write.
    pub fn event(&self, event: T::Event) -> Result<(), Error> {
        if !self.shared.claim.holds() {
            return Err(Error::LeadershipLost);
        }
        {
            let mut state = self.shared.state();
            if state.events >= self.shared.settings.event_capacity {
                if !std::mem::replace(&mut state.overflowing, true) {
                    tracing::warn!(
                        reason = "EventQueueFull",
                        capacity = self.shared.settings.event_capacity,
                        "too many Events waiting to be sent; dropping new ones"
                    );
                }
                drop(state);
                self.shared.dropped_event("overflow");
                return Ok(());
            }
            state.events += 1;
        }
        tokio::spawn(self.shared.clone().create_event(event));
        Ok(())
    }

    /// The newest status handed over for `of` that may not have been written yet.
    pub fn latest_status(&self, of: &StatusOf) -> Option<Status> {
        self.shared
            .state()
            .statuses
            .get(&of.key())
            .map(|slot| slot.latest.clone())
    }

    /// (objects with a status write pending, Events pending), for tests.
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        let state = self.shared.state();
        (state.statuses.len(), state.events)
    }

    /// Whether nothing is pending or in flight.
    pub fn is_idle(&self) -> bool {
        let state = self.shared.state();
        state.statuses.is_empty() && state.events == 0
    }

    /// Waits until every write handed over is finished, at most `within`; stops waiting at
    /// once when the claim has lapsed (nothing more will be written). Returns whether all
    /// were finished.
    pub async fn drain(&self, within: Duration) -> bool {
        let finished = async {
            loop {
                let progress = self.shared.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                if self.is_idle() || !self.shared.claim.holds() {
                    return;
                }
                progress.await;
            }
        };
        let _ = tokio::time::timeout(within, finished).await;
        self.is_idle()
    }
}

impl<T: Transport> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dropped_event(&self, reason: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.record_event_dropped(reason);
        }
    }

    /// Waits while the API server is known to be unreachable. Returns whether it waited.
    async fn until_reachable(&self) -> bool {
        match &self.health {
            Some(health) if health.is_failing() => {
                health.until_reachable().await;
                true
            }
            _ => false,
        }
    }

    /// Waits while Secrets are being written, at most [`Settings::yield_max`].
    async fn yield_to_secret_writes(&self) {
        let Some(secret_writes) = &self.secret_writes else {
            return;
        };
        let deadline = Instant::now() + self.settings.yield_max;
        while let Some(since) = secret_writes.since_last() {
            let now = Instant::now();
            if since >= self.settings.yield_quiet || now >= deadline {
                return;
            }
            let wait = (self.settings.yield_quiet - since).min(deadline - now);
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        (self.settings.first_retry * 2u32.pow(doublings)).min(self.settings.max_retry)
    }

    /// Sends one request under the deadline.
    async fn send(&self, request: impl Future<Output = Result<(), Error>>, event: bool) -> Sent {
        match tokio::time::timeout(self.settings.request_deadline, request).await {
            Ok(Ok(())) => Sent::Done,
            Ok(Err(Error::Kube(kube::Error::Api(status)))) if status.code == 404 => Sent::Gone,
            // An Event retried after a lost answer: the first attempt created it.
            Ok(Err(Error::Kube(kube::Error::Api(status)))) if event && status.code == 409 => {
                Sent::Done
            }
            // 401/403 are retried: a restarted API server refuses for a moment before its
            // authorizer has synced (a real lack of RBAC fails the reconcile's writes too).
            Ok(Err(Error::Kube(kube::Error::Api(status)))) if matches!(status.code, 401 | 403) => {
                Sent::Failed(Failure::Api(Error::Kube(kube::Error::Api(status))))
            }
            Ok(Err(err)) if err.is_permanent_api_error() => Sent::Refused(err),
            Ok(Err(err)) => Sent::Failed(Failure::Api(err)),
            Err(_) => Sent::Failed(Failure::TimedOut),
        }
    }

    /// The task of one object's status: sends the newest status until one is written and
    /// nothing newer waits.
    async fn write_status(self: Arc<Self>, of: StatusOf) {
        let key = of.key();
        let mut failures = 0;
        loop {
            if self.until_reachable().await {
                failures = 0;
            }
            self.yield_to_secret_writes().await;
            let permit = self.permits.enter(of.namespace()).await;
            if !self.claim.holds() {
                // Not leading: nothing more is written (the new leader writes its own).
                self.state().remove_slot(&key);
                break;
            }
            let next = {
                let mut state = self.state();
                let next = state
                    .statuses
                    .get_mut(&key)
                    .and_then(|slot| slot.next.take());
                if next.is_none() {
                    state.remove_slot(&key);
                }
                next
            };
            let Some(status) = next else { break };
            // Boxed: the request's state (kube's is about 2 KB) exists only while it is sent,
            // not in each of the thousands of tasks that wait for a permit at a cold start.
            let sent = self
                .send(Box::pin(self.transport.write_status(&of, &status)), false)
                .await;
            drop(permit);
            let finished = |this: &Self| {
                let mut state = this.state();
                let done = state
                    .statuses
                    .get(&key)
                    .is_none_or(|slot| slot.next.is_none());
                if done {
                    state.remove_slot(&key);
                }
                done
            };
            match sent {
                Sent::Done => {
                    failures = 0;
                    if finished(&self) {
                        break;
                    }
                }
                Sent::Gone => {
                    tracing::debug!(
                        kind = of.kind(),
                        namespace = of.namespace(),
                        name = of.name(),
                        "the object is gone; its status is not written"
                    );
                    self.state().remove_slot(&key);
                    break;
                }
                Sent::Refused(err) => {
                    tracing::warn!(
                        kind = of.kind(),
                        namespace = of.namespace(),
                        name = of.name(),
                        reason = err.category(),
                        error = %crate::error::truncate_message(&err.to_string()),
                        "the API server refused a status write; not retrying it"
                    );
                    if finished(&self) {
                        break;
                    }
                }
                Sent::Failed(failure) => {
                    failures += 1;
                    let wait = self.backoff(failures);
                    tracing::warn!(
                        kind = of.kind(),
                        namespace = of.namespace(),
                        name = of.name(),
                        reason = failure.reason(),
                        error = %failure.describe(),
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "a status write failed; retrying"
                    );
                    // Put back unless something newer was handed over meanwhile.
                    if let Some(slot) = self.state().statuses.get_mut(&key) {
                        slot.next.get_or_insert(status);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.progress.notify_waiters();
    }

    /// The task of one Event: a few attempts, then it is dropped.
    async fn create_event(self: Arc<Self>, event: T::Event) {
        let mut failures = 0;
        let outcome = loop {
            if self.until_reachable().await {
                failures = 0;
            }
            self.yield_to_secret_writes().await;
            let permit = self.permits.enter(EVENTS_LANE).await;
            if !self.claim.holds() {
                break None;
            }
            let sent = self
                .send(Box::pin(self.transport.create_event(&event)), true)
                .await;
            drop(permit);
            match sent {
                Sent::Done => break None,
                Sent::Gone => break Some("gone"),
                Sent::Refused(err) => {
                    tracing::warn!(
                        reason = err.category(),
                        error = %crate::error::truncate_message(&err.to_string()),
                        "the API server refused an Event; dropped it"
                    );
                    break Some("refused");
                }
                Sent::Failed(failure) => {
                    failures += 1;
                    let last = failures >= self.settings.event_attempts;
                    let wait = self.backoff(failures);
                    tracing::warn!(
                        reason = failure.reason(),
                        error = %failure.describe(),
                        attempt = failures,
                        "could not publish an Event{}",
                        if last { "; dropped it" } else { "; retrying" }
                    );
                    if last {
                        break Some("failed");
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };
        if let Some(reason) = outcome {
            self.dropped_event(reason);
        }
        {
            let mut state = self.state();
            state.events -= 1;
            if state.events <= self.settings.event_capacity / 2 {
                state.overflowing = false;
            }
        }
        self.progress.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Readiness;
    use std::time::Instant;

    /// What the fake API server was asked, and how it answers.
    #[derive(Default)]
    struct Recorder {
        /// Every status request, in order, with the claim's state when it arrived.
        statuses: Mutex<Vec<(String, Status, bool)>>,
        events: Mutex<Vec<String>>,
        /// Answers for the next requests (front first); `Ok` once exhausted.
        answers: Mutex<Vec<Answer>>,
        /// Requests in flight now, and the most at once.
        in_flight: Mutex<(usize, usize)>,
        /// How long each request takes.
        latency: Duration,
        /// The claim of the writer, to see whether it held when a request arrived.
        claim: Mutex<Option<LeadershipClaim>>,
    }

    #[derive(Clone, Copy)]
    enum Answer {
        Ok,
        Code(u16),
        Hang,
    }

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("test", "Test")
                .with_code(code)
                .boxed(),
        ))
    }

    impl Recorder {
        fn with_answers(answers: &[Answer]) -> Self {
            Recorder {
                answers: Mutex::new(answers.to_vec()),
                ..Recorder::default()
            }
        }

        async fn answer(&self) -> Result<(), Error> {
            {
                let mut flight = self.in_flight.lock().unwrap();
                flight.0 += 1;
                flight.1 = flight.1.max(flight.0);
            }
            tokio::time::sleep(self.latency).await;
            let answer = {
                let mut answers = self.answers.lock().unwrap();
                if answers.is_empty() {
                    Answer::Ok
                } else {
                    answers.remove(0)
                }
            };
            let result = match answer {
                Answer::Ok => Ok(()),
                Answer::Code(code) => Err(api_error(code)),
                Answer::Hang => std::future::pending().await,
            };
            self.in_flight.lock().unwrap().0 -= 1;
            result
        }

        fn statuses(&self) -> Vec<(String, Status, bool)> {
            self.statuses.lock().unwrap().clone()
        }
    }

    impl Transport for Arc<Recorder> {
        type Event = String;

        async fn write_status(&self, of: &StatusOf, status: &Status) -> Result<(), Error> {
            let holds = self
                .claim
                .lock()
                .unwrap()
                .as_ref()
                .is_none_or(LeadershipClaim::holds);
            self.statuses
                .lock()
                .unwrap()
                .push((of.name().to_string(), status.clone(), holds));
            self.answer().await
        }

        async fn create_event(&self, event: &String) -> Result<(), Error> {
            self.events.lock().unwrap().push(event.clone());
            self.answer().await
        }
    }

    fn grant(name: &str) -> StatusOf {
        StatusOf::Grant {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    /// A grant status told apart by its observed generation.
    fn status(generation: i64) -> Status {
        Status::Grant(SasGrantStatus {
            observed_generation: Some(generation),
            ..SasGrantStatus::default()
        })
    }

    fn quick() -> Settings {
        Settings {
            first_retry: Duration::from_millis(20),
            max_retry: Duration::from_millis(80),
            request_deadline: Duration::from_millis(200),
            ..Settings::default()
        }
    }

    fn writer(recorder: &Arc<Recorder>, health: Option<ApiHealth>) -> Writer<Arc<Recorder>> {
        writer_with(recorder, LeadershipClaim::unconditional(), health, quick())
    }

    fn writer_with(
        recorder: &Arc<Recorder>,
        claim: LeadershipClaim,
        health: Option<ApiHealth>,
        settings: Settings,
    ) -> Writer<Arc<Recorder>> {
        *recorder.claim.lock().unwrap() = Some(claim.clone());
        Writer::new(
            recorder.clone(),
            claim,
            health,
            Some(Metrics::new()),
            settings,
        )
    }

    /// A transport whose requests hold 16 KiB while they wait for the answer.
    struct Heavy;

    impl Transport for Heavy {
        type Event = String;

        async fn write_status(&self, _: &StatusOf, _: &Status) -> Result<(), Error> {
            let state = [1u8; 16 * 1024];
            tokio::task::yield_now().await;
            assert_eq!(state[16 * 1024 - 1], 1);
            Ok(())
        }

        async fn create_event(&self, _: &String) -> Result<(), Error> {
            self.write_status(&grant("e"), &status(1)).await
        }
    }

    #[test]
    fn a_waiting_write_task_does_not_carry_the_state_of_its_request() {
        let shared = Writer::new(
            Heavy,
            LeadershipClaim::unconditional(),
            None,
            None,
            Settings::default(),
        )
        .shared;
        let status_task = std::mem::size_of_val(&shared.clone().write_status(grant("g")));
        let event_task = std::mem::size_of_val(&shared.clone().create_event("e".into()));
        // Thousands of these wait at a cold start; the request is sent by at most a few.
        assert!(status_task < 2048, "a status task takes {status_task} B");
        assert!(event_task < 2048, "an Event task takes {event_task} B");
    }

    #[tokio::test]
    async fn the_status_table_gives_back_its_room_once_the_backlog_is_written() {
        let recorder = Arc::new(Recorder::default());
        let writer = writer(&recorder, None);
        for i in 0..2000 {
            writer.status(grant(&format!("g{i}")), status(1)).unwrap();
        }
        assert!(writer.shared.state().statuses.capacity() >= 2000);
        drained(&writer).await;
        assert_eq!(recorder.statuses().len(), 2000);
        let capacity = writer.shared.state().statuses.capacity();
        assert!(capacity <= 64, "room for {capacity} slots kept");
    }

    async fn drained(writer: &Writer<Arc<Recorder>>) {
        assert!(
            writer.drain(Duration::from_secs(5)).await,
            "writes still pending"
        );
    }

    #[tokio::test]
    async fn handing_over_returns_at_once_while_the_request_hangs() {
        let recorder = Arc::new(Recorder::with_answers(&[Answer::Hang]));
        let writer = writer(&recorder, None);
        let started = Instant::now();
        writer.status(grant("a"), status(1)).unwrap();
        writer.event("Rotated".into()).unwrap();
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(writer.latest_status(&grant("a")), Some(status(1)));
    }

    #[tokio::test]
    async fn the_newest_status_wins_and_those_superseded_before_sending_are_never_sent() {
        let recorder = Arc::new(Recorder {
            latency: Duration::from_millis(50),
            ..Recorder::default()
        });
        let writer = writer(&recorder, None);
        for generation in 1..=5 {
            writer.status(grant("a"), status(generation)).unwrap();
        }
        tokio::task::yield_now().await;
        writer.status(grant("a"), status(6)).unwrap();
        writer.status(grant("a"), status(7)).unwrap();
        drained(&writer).await;
        let sent: Vec<Status> = recorder.statuses().into_iter().map(|(_, s, _)| s).collect();
        assert_eq!(sent.last(), Some(&status(7)), "{sent:?}");
        assert!(sent.len() <= 2, "superseded statuses were sent: {sent:?}");
        assert_eq!(
            recorder.in_flight.lock().unwrap().1,
            1,
            "one request per object"
        );
        assert_eq!(
            writer.latest_status(&grant("a")),
            None,
            "written: nothing pending"
        );
    }

    #[tokio::test]
    async fn requests_in_flight_are_bounded_across_objects() {
        let recorder = Arc::new(Recorder {
            latency: Duration::from_millis(30),
            ..Recorder::default()
        });
        let settings = Settings {
            concurrency: 3,
            ..quick()
        };
        let writer = writer_with(&recorder, LeadershipClaim::unconditional(), None, settings);
        for i in 0..12 {
            writer.status(grant(&format!("g{i}")), status(1)).unwrap();
        }
        drained(&writer).await;
        assert_eq!(recorder.statuses().len(), 12);
        assert_eq!(recorder.in_flight.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_written() {
        let recorder = Arc::new(Recorder::with_answers(&[
            Answer::Code(500),
            Answer::Hang,
            Answer::Code(429),
            Answer::Code(403),
        ]));
        let writer = writer(&recorder, None);
        writer.status(grant("a"), status(1)).unwrap();
        drained(&writer).await;
        let sent = recorder.statuses();
        assert_eq!(sent.len(), 5, "four failures, then written: {sent:?}");
        assert!(sent.iter().all(|(_, s, _)| *s == status(1)));
    }

    #[tokio::test]
    async fn a_deleted_object_or_a_refused_write_ends_the_retries() {
        let recorder = Arc::new(Recorder::with_answers(&[
            Answer::Code(404),
            Answer::Code(422),
        ]));
        let writer = writer(&recorder, None);
        writer.status(grant("gone"), status(1)).unwrap();
        writer.status(grant("invalid"), status(1)).unwrap();
        drained(&writer).await;
        assert_eq!(recorder.statuses().len(), 2, "no retry");
    }

    #[tokio::test]
    async fn nothing_is_sent_once_the_claim_has_lapsed() {
        let recorder = Arc::new(Recorder {
            latency: Duration::from_millis(50),
            ..Recorder::default()
        });
        let claim = LeadershipClaim::held_until(Instant::now() + Duration::from_secs(60));
        let settings = Settings {
            concurrency: 1,
            ..quick()
        };
        let writer = writer_with(&recorder, claim.clone(), None, settings);
        for i in 0..5 {
            writer.status(grant(&format!("g{i}")), status(1)).unwrap();
        }
        writer.event("Rotated".into()).unwrap();
        // The first request is in flight; the others wait for it. Then the lease is lost.
        tokio::time::sleep(Duration::from_millis(10)).await;
        claim.revoke();
        assert!(matches!(
            writer.status(grant("late"), status(1)),
            Err(Error::LeadershipLost)
        ));
        assert!(matches!(
            writer.event("late".into()),
            Err(Error::LeadershipLost)
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = recorder.statuses();
        assert_eq!(
            sent.len(),
            1,
            "only the request begun while leading: {sent:?}"
        );
        assert!(sent.iter().all(|(_, _, held)| *held));
        assert!(recorder.events.lock().unwrap().is_empty());
        assert!(writer.drain(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn nothing_is_sent_while_the_api_server_is_unreachable_and_all_of_it_after() {
        let recorder = Arc::new(Recorder::default());
        let health = ApiHealth::new(Readiness::default());
        health.unreachable();
        let writer = writer(&recorder, Some(health.clone()));
        writer.status(grant("a"), status(1)).unwrap();
        writer.status(grant("b"), status(1)).unwrap();
        writer.event("Rotated".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(recorder.statuses().is_empty());
        assert!(recorder.events.lock().unwrap().is_empty());
        writer.status(grant("a"), status(2)).unwrap();

        health.reachable();
        drained(&writer).await;
        let mut sent: Vec<(String, Status)> = recorder
            .statuses()
            .into_iter()
            .map(|(name, s, _)| (name, s))
            .collect();
        sent.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            sent,
            vec![("a".into(), status(2)), ("b".into(), status(1))],
            "one request each, the newest status"
        );
        assert_eq!(
            *recorder.events.lock().unwrap(),
            vec!["Rotated".to_string()]
        );
    }

    #[tokio::test]
    async fn events_beyond_the_queue_are_dropped_and_counted() {
        let recorder = Arc::new(Recorder::with_answers(&[Answer::Hang; 8]));
        let metrics = Metrics::new();
        let settings = Settings {
            event_capacity: 3,
            concurrency: 8,
            ..quick()
        };
        let writer = Writer::new(
            recorder.clone(),
            LeadershipClaim::unconditional(),
            None,
            Some(metrics.clone()),
            settings,
        );
        for i in 0..5 {
            writer.event(format!("e{i}")).unwrap();
        }
        assert!(
            metrics
                .encode()
                .lines()
                .any(|line| line == r#"sas_operator_events_dropped_total{reason="overflow"} 2"#),
            "{}",
            metrics.encode()
        );
    }

    #[tokio::test]
    async fn an_event_is_tried_a_few_times_then_dropped_and_counted() {
        let recorder = Arc::new(Recorder::with_answers(&[Answer::Code(503); 10]));
        let metrics = Metrics::new();
        let writer = Writer::new(
            recorder.clone(),
            LeadershipClaim::unconditional(),
            None,
            Some(metrics.clone()),
            quick(),
        );
        writer.event("Rotated".into()).unwrap();
        drained(&writer).await;
        assert_eq!(recorder.events.lock().unwrap().len(), 3);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|line| line == r#"sas_operator_events_dropped_total{reason="failed"} 1"#)
        );
    }

    #[tokio::test]
    async fn an_event_whose_first_answer_was_lost_is_not_sent_again_after_a_conflict() {
        let recorder = Arc::new(Recorder::with_answers(&[Answer::Hang, Answer::Code(409)]));
        let writer = writer(&recorder, None);
        writer.event("Rotated".into()).unwrap();
        drained(&writer).await;
        assert_eq!(recorder.events.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn status_and_events_wait_while_secrets_are_written_but_not_for_ever() {
        let recorder = Arc::new(Recorder::default());
        let settings = Settings {
            yield_quiet: Duration::from_millis(100),
            yield_max: Duration::from_millis(600),
            ..quick()
        };
        let secret_writes = Arc::new(SecretWrites::default());
        let writer = writer_with(&recorder, LeadershipClaim::unconditional(), None, settings)
            .yielding_to(secret_writes.clone());
        // A wave of Secret writes, one every 20 ms for 300 ms.
        let wave = {
            let secret_writes = secret_writes.clone();
            tokio::spawn(async move {
                for _ in 0..15 {
                    secret_writes.started();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        writer.status(grant("a"), status(1)).unwrap();
        writer.event("Rotated".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(recorder.statuses().is_empty(), "sent during the wave");
        assert!(recorder.events.lock().unwrap().is_empty());
        wave.await.unwrap();
        drained(&writer).await;
        assert_eq!(recorder.statuses().len(), 1);

        // Secret writes that never pause hold a status back at most `yield_max`.
        let busy = tokio::spawn(async move {
            loop {
                secret_writes.started();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let handed = Instant::now();
        writer.status(grant("b"), status(1)).unwrap();
        drained(&writer).await;
        busy.abort();
        assert!(
            handed.elapsed() < Duration::from_secs(2),
            "{:?}",
            handed.elapsed()
        );
    }

    #[tokio::test]
    async fn a_status_still_pending_is_what_readers_see() {
        let recorder = Arc::new(Recorder::with_answers(&[Answer::Code(503); 3]));
        let writer = writer(&recorder, None);
        writer.status(grant("a"), status(1)).unwrap();
        assert_eq!(writer.latest_status(&grant("a")), Some(status(1)));
        assert_eq!(writer.latest_status(&grant("b")), None);
        drained(&writer).await;
        assert_eq!(writer.latest_status(&grant("a")), None);
    }
}
