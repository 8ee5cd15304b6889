//! The user delegation key cache: the keys of each workload identity issuer, shared by every
//! grant of that issuer, and the one fetch that obtains its next key.
//!
//! Tenants cannot starve each other through it:
//! - A fetch (TokenRequest, Entra exchange, Get User Delegation Key) runs in a task of its own,
//!   at most one per issuer, at most [`CONCURRENT_FETCHES`] at once, each bounded by
//!   [`FETCH_TIMEOUT`]. A reconcile waits for it only within [`FETCH_GRACE`] of its start (the
//!   ordinary fetch is done by then), so a slow or silent endpoint holds no reconcile worker.
//! - A failed fetch is cached: until the issuer's next attempt ([`fetch_backoff`], per issuer,
//!   growing with consecutive failures) its grants get `IssuerBackingOff` at once, and the
//!   issuer costs one TokenRequest and one Entra call per backoff step however many grants it
//!   has.
//!
//! One tenant's key lifetime never costs another: keys are always requested for the maximum
//! lifetime (`--max-user-delegation-key-lifetime`, at most Azure's 7 days) and a grant's
//! validity is capped at half of it, so a key serves new signings for at least half its life
//! whatever the grants ask: per issuer at most one key request per half lifetime. Earlier keys
//! stay until they expire, so a grant whose token was signed with one keeps it (no re-sign)
//! when a newer key arrives.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::identity::{IdentityError, MAX_KEY_LIFETIME};
use crate::error::{CachedFailure, Error};
use crate::sas::UserDelegationKey;

/// Fetches that may run at once, all issuers together: the pool's bound (sockets, memory of
/// bodies being read).
pub const CONCURRENT_FETCHES: usize = 16;
/// The longest one fetch (TokenRequest, exchange, key request) may take once it runs.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a fetch starts the reconciles of its issuer wait for it: an ordinary fetch
/// ends well within it, so a new issuer's first grants sign at once instead of backing off.
pub const FETCH_GRACE: Duration = Duration::from_secs(1);
/// When the grants of an issuer whose fetch is still running look again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(2);
/// The first wait after a failed fetch, doubled per consecutive failure up to
/// [`MAX_FETCH_BACKOFF`].
pub const FIRST_FETCH_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(300);

/// How long an issuer waits before its next fetch after `failures` consecutive failures.
pub fn fetch_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_FETCH_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_FETCH_BACKOFF)
}

/// The work of one fetch: given the key's start and expiry, obtains it. Owns what it needs: it
/// runs in a task of its own and may outlive the reconcile that started it.
pub type Obtain = Box<
    dyn FnOnce(
            Timestamp,
            Timestamp,
        ) -> Pin<Box<dyn Future<Output = Result<UserDelegationKey, Error>> + Send>>
        + Send,
>;

/// Where an issuer's fetch stands.
#[derive(Debug, Clone)]
enum Fetch {
    Idle,
    Running {
        since: tokio::time::Instant,
    },
    Failed {
        failure: CachedFailure,
        retry_at: Timestamp,
    },
}

struct State {
    /// Unexpired keys, oldest first, each with its parsed expiry.
    keys: Vec<(UserDelegationKey, Timestamp)>,
    fetch: Fetch,
    consecutive_failures: u32,
}

/// One issuer's keys and fetch. `fingerprint` names everything that would make another key
/// (tenant, client id, ServiceAccount, endpoint): a changed issuer starts over.
struct IssuerKeys {
    fingerprint: String,
    state: Mutex<State>,
    /// Bumped when a fetch ends, waking the reconciles waiting within the grace.
    fetched: tokio::sync::watch::Sender<u64>,
}

impl IssuerKeys {
    fn new(fingerprint: &str) -> Self {
        IssuerKeys {
            fingerprint: fingerprint.to_string(),
            state: Mutex::new(State {
                keys: Vec::new(),
                fetch: Fetch::Idle,
                consecutive_failures: 0,
            }),
            fetched: tokio::sync::watch::channel(0).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a signing key request stands once the cache has looked.
enum Look {
    Key(Box<UserDelegationKey>),
    Wait(tokio::time::Instant),
    BackingOff(Error),
    Start,
}

/// The cache; one per operator process.
pub struct DelegationKeys {
    issuers: Mutex<HashMap<String, Arc<IssuerKeys>>>,
    /// The lifetime keys are requested for (`--max-user-delegation-key-lifetime`).
    max_lifetime: Duration,
    pool: Arc<tokio::sync::Semaphore>,
    fetch_timeout: Duration,
    grace: Duration,
}

impl Default for DelegationKeys {
    fn default() -> Self {
        DelegationKeys::new(MAX_KEY_LIFETIME)
    }
}

impl DelegationKeys {
    pub fn new(max_lifetime: Duration) -> Self {
        DelegationKeys {
            issuers: Mutex::default(),
            max_lifetime: max_lifetime.min(MAX_KEY_LIFETIME),
            pool: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FETCHES)),
            fetch_timeout: FETCH_TIMEOUT,
            grace: FETCH_GRACE,
        }
    }

    /// Bounds a fetch at `fetch_timeout` and the wait of a reconcile at `grace` (tests).
    pub fn with_bounds(mut self, fetch_timeout: Duration, grace: Duration) -> Self {
        self.fetch_timeout = fetch_timeout;
        self.grace = grace;
        self
    }

    /// The longest validity of a grant signed with a user delegation key: half the key
    /// lifetime, so one key serves new signings for at least half its life.
    pub fn max_validity(&self) -> Duration {
        self.max_lifetime / 2
    }

    fn issuers(&self) -> MutexGuard<'_, HashMap<String, Arc<IssuerKeys>>> {
        self.issuers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of `issuer` for `fingerprint`; a changed fingerprint replaces it.
    fn entry(&self, issuer: &str, fingerprint: &str) -> Arc<IssuerKeys> {
        let mut issuers = self.issuers();
        match issuers.get(issuer) {
            Some(found) if found.fingerprint == fingerprint => found.clone(),
            _ => {
                let fresh = Arc::new(IssuerKeys::new(fingerprint));
                issuers.insert(issuer.to_string(), fresh.clone());
                fresh
            }
        }
    }

    /// The unexpired keys of `issuer` as cached, newest first, without fetching anything: the
    /// keys a grant's current token may have been signed with.
    pub fn cached(
        &self,
        issuer: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Vec<UserDelegationKey> {
        let found = self.issuers().get(issuer).cloned();
        let Some(entry) = found.filter(|entry| entry.fingerprint == fingerprint) else {
            return Vec::new();
        };
        let state = entry.state();
        state
            .keys
            .iter()
            .rev()
            .filter(|(_, expiry)| *expiry > now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Caches `key` for the entry `issuer` already has, as a fetch would (tests).
    #[cfg(test)]
    pub(crate) fn insert_for_tests(&self, issuer: &str, key: UserDelegationKey) {
        let entry = self.issuers().get(issuer).cloned().expect("an entry");
        let mut state = entry.state();
        let expiry = key.signed_expiry.parse().expect("a key's expiry");
        state.keys.push((key, expiry));
        state.fetch = Fetch::Idle;
    }

    /// Forgets `issuer`'s keys and fetch state (the issuer was deleted).
    pub fn forget(&self, issuer: &str) {
        self.issuers().remove(issuer);
    }

    /// How many issuers have an entry.
    pub fn issuers_cached(&self) -> usize {
        self.issuers().len()
    }

    /// Drops the keys that expired, and the entries left with nothing to remember: no key,
    /// no fetch running, no backoff still in force, and no reconcile holding them.
    fn sweep(&self, now: Timestamp) {
        let stale = SignedDuration::try_from(MAX_FETCH_BACKOFF).unwrap_or_default();
        self.issuers().retain(|_, entry| {
            let mut state = entry.state();
            state.keys.retain(|(_, expiry)| *expiry > now);
            let remembered = match &state.fetch {
                Fetch::Idle => false,
                Fetch::Running { .. } => true,
                Fetch::Failed { retry_at, .. } => *retry_at + stale > now,
            };
            !state.keys.is_empty() || remembered || Arc::strong_count(entry) > 1
        });
    }

    /// A key of `issuer` valid until at least `now + validity`: a cached one, or the one the
    /// fetch `obtain` makes (started here unless one is running or the issuer backs off). Waits
    /// for a running fetch only within the grace of its start; after it, or while the issuer
    /// backs off after a failure, fails at once with `IssuerBackingOff`.
    #[allow(clippy::too_many_arguments)]
    pub async fn signing_key(
        &self,
        issuer: &str,
        label: &str,
        fingerprint: &str,
        now: Timestamp,
        validity: Duration,
        backdate: Duration,
        clock: &crate::reconcile::Clock,
        obtain: Obtain,
    ) -> Result<UserDelegationKey, Error> {
        if validity > self.max_validity() {
            return Err(IdentityError::Unsupported(format!(
                "a user delegation SAS is valid at most half the lifetime of the key it is signed with, here {}s (--max-user-delegation-key-lifetime); shorten the grant's validity",
                self.max_validity().as_secs()
            ))
            .into());
        }
        let needed_until = now + signed(validity)?;
        let entry = self.entry(issuer, fingerprint);
        let mut fetched = entry.fetched.subscribe();
        let look = self.look(&entry, label, now, needed_until, true);
        let wait_until = match look {
            Look::Key(key) => return Ok(*key),
            Look::BackingOff(err) => return Err(err),
            Look::Wait(until) => until,
            Look::Start => {
                self.sweep(now);
                // Backdated like tokens (clock skew); the span is the whole lifetime.
                let start = now - signed(backdate.min(self.max_lifetime / 4))?;
                self.start_fetch(entry.clone(), start, clock.clone(), obtain);
                tokio::time::Instant::now() + self.grace
            }
        };
        // Within the grace: wait for the fetch to end, then look once more.
        let _ = tokio::time::timeout_at(wait_until, fetched.changed()).await;
        match self.look(&entry, label, now, needed_until, false) {
            Look::Key(key) => Ok(*key),
            Look::BackingOff(err) => Err(err),
            Look::Wait(_) | Look::Start => Err(still_fetching(&entry, label)),
        }
    }

    /// What the cache has for a token needed until `needed_until`; with `may_start`, claims
    /// the fetch if none runs and the issuer does not back off.
    fn look(
        &self,
        entry: &IssuerKeys,
        label: &str,
        now: Timestamp,
        needed_until: Timestamp,
        may_start: bool,
    ) -> Look {
        let mut state = entry.state();
        if let Some((key, _)) = state
            .keys
            .iter()
            .rev()
            .find(|(_, expiry)| *expiry >= needed_until)
        {
            return Look::Key(Box::new(key.clone()));
        }
        match &state.fetch {
            Fetch::Running { since } => {
                let until = *since + self.grace;
                if tokio::time::Instant::now() < until {
                    Look::Wait(until)
                } else {
                    Look::BackingOff(backing_off(label, &state, PENDING_RECHECK))
                }
            }
            Fetch::Failed { retry_at, .. } if *retry_at > now => {
                let wait = crate::reconcile::schedule::until(now, *retry_at);
                Look::BackingOff(backing_off(label, &state, wait))
            }
            Fetch::Idle | Fetch::Failed { .. } if !may_start => {
                Look::BackingOff(backing_off(label, &state, PENDING_RECHECK))
            }
            Fetch::Idle | Fetch::Failed { .. } => {
                state.fetch = Fetch::Running {
                    since: tokio::time::Instant::now(),
                };
                Look::Start
            }
        }
    }

    /// Runs `obtain` in a task of its own, within the pool and the fetch timeout, and caches
    /// what it ends with.
    fn start_fetch(
        &self,
        entry: Arc<IssuerKeys>,
        start: Timestamp,
        clock: crate::reconcile::Clock,
        obtain: Obtain,
    ) {
        let (pool, timeout, lifetime) = (self.pool.clone(), self.fetch_timeout, self.max_lifetime);
        tokio::spawn(async move {
            let result = match pool.acquire_owned().await {
                Ok(_permit) => {
                    let expiry = start + SignedDuration::try_from(lifetime).unwrap_or_default();
                    tokio::time::timeout(timeout, obtain(start, expiry))
                        .await
                        .unwrap_or_else(|_| {
                            Err(IdentityError::FetchTimedOut {
                                after: timeout.as_secs(),
                            }
                            .into())
                        })
                        .and_then(|key| {
                            let expiry: Timestamp = key.signed_expiry.parse().map_err(|_| {
                                IdentityError::DelegationKeyBadResponse("SignedExpiry")
                            })?;
                            // It must serve new signings for half a lifetime, as asked.
                            let half = SignedDuration::try_from(lifetime / 2).unwrap_or_default();
                            if expiry < start + half {
                                return Err(IdentityError::DelegationKeyTooShort {
                                    expiry: key.signed_expiry.clone(),
                                }
                                .into());
                            }
                            Ok((key, expiry))
                        })
                }
                Err(_) => Err(Error::Config("the fetch pool is closed".into())),
            };
            let ended = clock();
            {
                let mut state = entry.state();
                match result {
                    Ok((key, expiry)) => {
                        state.keys.retain(|(_, old)| *old > ended);
                        state.keys.push((key, expiry));
                        state.consecutive_failures = 0;
                        state.fetch = Fetch::Idle;
                    }
                    Err(err) => {
                        state.consecutive_failures += 1;
                        let wait = fetch_backoff(state.consecutive_failures);
                        tracing::warn!(
                            reason = err.category(),
                            error = %crate::error::truncate_message(&err.to_string()),
                            retry_in_seconds = wait.as_secs(),
                            "could not obtain a user delegation key; the issuer backs off"
                        );
                        state.fetch = Fetch::Failed {
                            failure: CachedFailure::of(&err),
                            retry_at: ended + SignedDuration::try_from(wait).unwrap_or_default(),
                        };
                    }
                }
            }
            entry.fetched.send_modify(|generation| *generation += 1);
        });
    }
}

/// `IssuerBackingOff` while a fetch runs past the grace.
fn still_fetching(entry: &IssuerKeys, label: &str) -> Error {
    backing_off(label, &entry.state(), PENDING_RECHECK)
}

/// `IssuerBackingOff`, naming the last failure if there was one.
fn backing_off(label: &str, state: &State, retry_after: Duration) -> Error {
    let cause = match &state.fetch {
        Fetch::Failed { failure, .. } => Some(Box::new(failure.clone())),
        _ => None,
    };
    Error::IssuerBackingOff {
        issuer: label.to_string(),
        cause,
        retry_after,
    }
}

fn signed(duration: Duration) -> Result<SignedDuration, Error> {
    SignedDuration::try_from(duration)
        .map_err(|_| Error::InvalidGrant("duration out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::AccountKey;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    fn clock_at(at: Timestamp) -> crate::reconcile::Clock {
        Arc::new(move || at)
    }

    fn key_until(expiry: Timestamp, byte: u8) -> UserDelegationKey {
        UserDelegationKey {
            signed_oid: "oid".into(),
            signed_tid: "tid".into(),
            signed_start: "2030-01-01T00:00:00Z".into(),
            signed_expiry: expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            signed_service: "b".into(),
            signed_version: "2025-05-05".into(),
            signed_delegated_user_tid: None,
            value: AccountKey::from_bytes(vec![byte; 64]),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// An `Obtain` that counts its calls and answers with a key until the requested expiry.
    fn counting(calls: &Arc<AtomicU32>) -> Obtain {
        let calls = calls.clone();
        Box::new(move |_start, expiry| {
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Ok(key_until(expiry, n as u8))
            })
        })
    }

    fn failing(calls: &Arc<AtomicU32>) -> Obtain {
        let calls = calls.clone();
        Box::new(move |_, _| {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(IdentityError::EntraUnreachable("connection failed".into()).into())
            })
        })
    }

    fn never() -> Obtain {
        Box::new(|_, _| Box::pin(std::future::pending()))
    }

    async fn sign(
        keys: &DelegationKeys,
        at: Timestamp,
        validity: Duration,
        obtain: Obtain,
    ) -> Result<UserDelegationKey, Error> {
        keys.signing_key(
            "SasIssuer/ns/i",
            "SasIssuer \"i\"",
            "fp",
            at,
            validity,
            Duration::ZERO,
            &clock_at(at),
            obtain,
        )
        .await
    }

    #[test]
    fn an_issuer_backs_off_five_seconds_doubling_per_failure_up_to_five_minutes() {
        let schedule: Vec<u64> = (1..=9).map(|n| fetch_backoff(n).as_secs()).collect();
        assert_eq!(schedule, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(fetch_backoff(u32::MAX), MAX_FETCH_BACKOFF);
    }

    #[tokio::test]
    async fn keys_are_requested_for_the_whole_lifetime_whatever_the_validity() {
        let keys = DelegationKeys::default();
        let requested = Arc::new(Mutex::new(None));
        let seen = requested.clone();
        let obtain: Obtain = Box::new(move |start, expiry| {
            *seen.lock().unwrap() = Some((start, expiry));
            Box::pin(async move { Ok(key_until(expiry, 1)) })
        });
        sign(&keys, now(), HOUR, obtain).await.unwrap();
        let (start, expiry) = requested.lock().unwrap().unwrap();
        assert_eq!(
            (start, expiry),
            (now(), now() + SignedDuration::from_hours(168))
        );
    }

    #[tokio::test]
    async fn a_validity_over_half_the_key_lifetime_is_refused_before_any_request() {
        let keys = DelegationKeys::new(168 * HOUR);
        assert_eq!(keys.max_validity(), 84 * HOUR);
        let calls = Arc::new(AtomicU32::new(0));
        let err = sign(&keys, now(), 85 * HOUR, counting(&calls))
            .await
            .unwrap_err();
        assert_eq!(err.category(), "UserDelegationUnsupported");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        sign(&keys, now(), 84 * HOUR, counting(&calls))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn one_key_serves_every_signing_for_half_its_life_whatever_the_validities() {
        let keys = DelegationKeys::default();
        let calls = Arc::new(AtomicU32::new(0));
        for validity in [HOUR, 84 * HOUR, 2 * HOUR, 84 * HOUR] {
            sign(&keys, now(), validity, counting(&calls))
                .await
                .unwrap();
        }
        let half_life_later = now() + SignedDuration::from_hours(84);
        sign(&keys, half_life_later, 84 * HOUR, counting(&calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        sign(
            &keys,
            half_life_later + SignedDuration::from_secs(1),
            84 * HOUR,
            counting(&calls),
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_newer_key_leaves_the_earlier_one_for_the_tokens_it_signed() {
        let keys = DelegationKeys::default();
        let calls = Arc::new(AtomicU32::new(0));
        let first = sign(&keys, now(), 84 * HOUR, counting(&calls))
            .await
            .unwrap();
        let later = now() + SignedDuration::from_hours(100);
        let second = sign(&keys, later, 84 * HOUR, counting(&calls))
            .await
            .unwrap();
        let cached = keys.cached("SasIssuer/ns/i", "fp", later);
        assert_eq!(cached.len(), 2);
        assert_eq!(cached[0].value.as_bytes(), second.value.as_bytes());
        assert_eq!(cached[1].value.as_bytes(), first.value.as_bytes());
        // Past the first key's expiry it is gone.
        let after_first = now() + SignedDuration::from_hours(169);
        assert_eq!(keys.cached("SasIssuer/ns/i", "fp", after_first).len(), 1);
    }

    #[tokio::test]
    async fn concurrent_grants_share_one_fetch() {
        let keys = Arc::new(DelegationKeys::default());
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (keys, calls) = (keys.clone(), calls.clone());
                tokio::spawn(async move {
                    let slow_key: Obtain = Box::new(move |_, expiry| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Box::pin(async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(key_until(expiry, 1))
                        })
                    });
                    sign(&keys, now(), HOUR, slow_key).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_that_never_ends_holds_a_reconcile_only_for_the_grace() {
        let keys =
            DelegationKeys::default().with_bounds(Duration::from_secs(10), Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let err = sign(&keys, now(), HOUR, never()).await.unwrap_err();
        assert_eq!(err.category(), "IssuerBackingOff");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // The next grant of the issuer does not wait at all.
        let again = tokio::time::Instant::now();
        let err = sign(&keys, now(), HOUR, never()).await.unwrap_err();
        assert_eq!(err.category(), "IssuerBackingOff");
        assert_eq!(again.elapsed(), Duration::ZERO);
        assert!(err.to_string().contains("still obtaining"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_past_its_timeout_fails_and_the_issuer_backs_off() {
        let keys =
            DelegationKeys::default().with_bounds(Duration::from_secs(10), Duration::from_secs(1));
        sign(&keys, now(), HOUR, never()).await.unwrap_err();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let calls = Arc::new(AtomicU32::new(0));
        let err = sign(&keys, now(), HOUR, counting(&calls))
            .await
            .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "no new fetch while backing off"
        );
        let Error::IssuerBackingOff {
            cause: Some(cause), ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(cause.category, "UserDelegationKeyFetchTimedOut");
    }

    #[tokio::test]
    async fn a_failed_fetch_is_cached_until_the_issuers_next_attempt() {
        let keys = DelegationKeys::default();
        let calls = Arc::new(AtomicU32::new(0));
        let err = sign(&keys, now(), HOUR, failing(&calls)).await.unwrap_err();
        assert_eq!(err.category(), "IssuerBackingOff");
        assert!(err.to_string().contains("EntraUnreachable"), "{err}");
        // Thirty grants within the first backoff step: no new call.
        for _ in 0..30 {
            let err = sign(
                &keys,
                now() + SignedDuration::from_secs(4),
                HOUR,
                failing(&calls),
            )
            .await
            .unwrap_err();
            let Error::IssuerBackingOff { retry_after, .. } = err else {
                panic!()
            };
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // At the next step: one more attempt, then ten seconds.
        sign(
            &keys,
            now() + SignedDuration::from_secs(5),
            HOUR,
            failing(&calls),
        )
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let step = sign(
            &keys,
            now() + SignedDuration::from_secs(5),
            HOUR,
            failing(&calls),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(step, Error::IssuerBackingOff { retry_after, .. } if retry_after == Duration::from_secs(10))
        );
        // A success clears the failure.
        sign(
            &keys,
            now() + SignedDuration::from_secs(15),
            HOUR,
            counting(&calls),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_changed_issuer_starts_over_and_a_deleted_one_leaves_the_cache() {
        let keys = DelegationKeys::default();
        let calls = Arc::new(AtomicU32::new(0));
        sign(&keys, now(), HOUR, failing(&calls)).await.unwrap_err();
        // Another client id (fingerprint): no backoff inherited.
        keys.signing_key(
            "SasIssuer/ns/i",
            "i",
            "fp2",
            now(),
            HOUR,
            Duration::ZERO,
            &clock_at(now()),
            counting(&calls),
        )
        .await
        .unwrap();
        assert_eq!(keys.cached("SasIssuer/ns/i", "fp", now()).len(), 0);
        assert_eq!(keys.cached("SasIssuer/ns/i", "fp2", now()).len(), 1);
        keys.forget("SasIssuer/ns/i");
        assert_eq!(keys.issuers_cached(), 0);
    }

    #[tokio::test]
    async fn an_issuer_whose_keys_all_expired_leaves_the_cache_at_the_next_fetch() {
        let keys = DelegationKeys::default();
        let calls = Arc::new(AtomicU32::new(0));
        sign(&keys, now(), HOUR, counting(&calls)).await.unwrap();
        let week_later = now() + SignedDuration::from_hours(169);
        keys.signing_key(
            "SasIssuer/ns/other",
            "other",
            "fp",
            week_later,
            HOUR,
            Duration::ZERO,
            &clock_at(week_later),
            counting(&calls),
        )
        .await
        .unwrap();
        assert_eq!(
            keys.issuers_cached(),
            1,
            "the expired issuer is still cached"
        );
    }

    #[tokio::test]
    async fn a_key_that_expires_before_the_token_would_is_not_used() {
        let keys = DelegationKeys::default();
        let short: Obtain = Box::new(|_, _| {
            Box::pin(async { Ok(key_until(now() + SignedDuration::from_mins(30), 1)) })
        });
        let err = sign(&keys, now(), HOUR, short).await.unwrap_err();
        assert_eq!(err.category(), "IssuerBackingOff");
    }
}
