//! The user delegation key cache: one key per (issuer, service), shared by every grant of that
//! issuer. A grant signing a token valid until `T` takes the cached key only if the key is
//! valid until at least `T` (a token never outlives its key); otherwise one new key is obtained
//! for all of them, while the others wait (one exchange and one Get User Delegation Key, not
//! one per grant).
//!
//! Bound: a key is requested for twice the longest validity of the grants that used the entry
//! (so it serves new signings for at least one validity), capped at the configured maximum,
//! at most Azure's 7 days. So per issuer there is at most one exchange and one key request per
//! `lifetime - validity` of time, however many grants it has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::identity::{IdentityError, MAX_KEY_LIFETIME};
use crate::error::Error;
use crate::sas::UserDelegationKey;

#[derive(Default)]
struct Entry {
    key: Option<(UserDelegationKey, Timestamp)>,
    longest_validity: Duration,
}

/// The cache; one per operator process.
pub struct DelegationKeys {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    /// The longest lifetime a key is requested for (`--max-user-delegation-key-lifetime`).
    max_lifetime: Duration,
}

impl Default for DelegationKeys {
    fn default() -> Self {
        DelegationKeys::new(MAX_KEY_LIFETIME)
    }
}

/// How long a key is requested for, given the longest validity of its grants.
pub fn key_lifetime(longest_validity: Duration, max_lifetime: Duration) -> Duration {
    longest_validity
        .saturating_mul(2)
        .min(max_lifetime)
        .min(MAX_KEY_LIFETIME)
}

impl DelegationKeys {
    pub fn new(max_lifetime: Duration) -> Self {
        DelegationKeys {
            entries: Mutex::default(),
            max_lifetime: max_lifetime.min(MAX_KEY_LIFETIME),
        }
    }

    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// A key valid until at least `now + validity`: the cached one, or one `obtain(start,
    /// expiry)` returns (called at most once at a time per `id`).
    pub async fn get<F, Fut>(
        &self,
        id: &str,
        now: Timestamp,
        validity: Duration,
        backdate: Duration,
        obtain: F,
    ) -> Result<UserDelegationKey, Error>
    where
        F: FnOnce(Timestamp, Timestamp) -> Fut,
        Fut: std::future::Future<Output = Result<UserDelegationKey, Error>>,
    {
        let too_long = || {
            Error::from(IdentityError::Unsupported(format!(
                "a user delegation SAS cannot be valid longer than its key, at most {}s here (Azure allows 7 days); shorten the grant's validity",
                self.max_lifetime.as_secs()
            )))
        };
        if validity > self.max_lifetime {
            return Err(too_long());
        }
        let needed_until = now + signed(validity)?;
        let entry = self.entry(id);
        let mut entry = entry.lock().await;
        entry.longest_validity = entry.longest_validity.max(validity);
        if let Some((key, expiry)) = &entry.key
            && *expiry >= needed_until
        {
            return Ok(key.clone());
        }
        let lifetime = key_lifetime(entry.longest_validity, self.max_lifetime);
        // Backdated like tokens (clock skew), but never past Azure's 7-day span.
        let start = now - signed(backdate.min(MAX_KEY_LIFETIME.saturating_sub(lifetime)))?;
        let key = obtain(start, now + signed(lifetime)?).await?;
        let expiry: Timestamp = key
            .signed_expiry
            .parse()
            .map_err(|_| IdentityError::DelegationKeyBadResponse("SignedExpiry"))?;
        if expiry < needed_until {
            return Err(too_long());
        }
        entry.key = Some((key.clone(), expiry));
        Ok(key)
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

    fn key_until(expiry: Timestamp) -> UserDelegationKey {
        UserDelegationKey {
            signed_oid: "oid".into(),
            signed_tid: "tid".into(),
            signed_start: "2030-01-01T00:00:00Z".into(),
            signed_expiry: expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            signed_service: "b".into(),
            signed_version: "2025-05-05".into(),
            signed_delegated_user_tid: None,
            value: AccountKey::from_bytes(vec![7; 64]),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_key_lives_twice_the_longest_validity_at_most_seven_days() {
        assert_eq!(key_lifetime(8 * HOUR, MAX_KEY_LIFETIME), 16 * HOUR);
        assert_eq!(key_lifetime(100 * HOUR, MAX_KEY_LIFETIME), MAX_KEY_LIFETIME);
        assert_eq!(key_lifetime(8 * HOUR, 10 * HOUR), 10 * HOUR);
    }

    #[tokio::test]
    async fn many_grants_share_one_key_until_a_token_would_outlive_it() {
        let keys = DelegationKeys::default();
        let calls = AtomicU32::new(0);
        let obtain = |_start, expiry| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(key_until(expiry)) }
        };
        for _ in 0..200 {
            keys.get("issuer/b", now(), 8 * HOUR, Duration::ZERO, obtain)
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // 8h later a new 8h token still fits the 16h key; 8h and a second later it does not.
        let later = now() + SignedDuration::from_hours(8);
        keys.get("issuer/b", later, 8 * HOUR, Duration::ZERO, obtain)
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let key = keys
            .get(
                "issuer/b",
                later + SignedDuration::from_secs(1),
                8 * HOUR,
                Duration::ZERO,
                obtain,
            )
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(key.signed_expiry.as_str() > "2030-01-01T16:00:01Z");
    }

    #[tokio::test]
    async fn concurrent_grants_wait_for_one_request() {
        let keys = Arc::new(DelegationKeys::default());
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (keys, calls) = (keys.clone(), calls.clone());
                tokio::spawn(async move {
                    keys.get("i", now(), HOUR, Duration::ZERO, |_, expiry| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(key_until(expiry))
                        }
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_validity_longer_than_a_key_may_live_is_refused_before_any_request() {
        let keys = DelegationKeys::new(2 * HOUR);
        let err = keys
            .get("i", now(), 3 * HOUR, Duration::ZERO, |_, _| async {
                panic!("no request for a grant that cannot be served")
            })
            .await
            .unwrap_err();
        assert_eq!(err.category(), "UserDelegationUnsupported");
    }

    #[tokio::test]
    async fn a_key_that_expires_before_the_token_would_is_not_used() {
        let keys = DelegationKeys::default();
        let err = keys
            .get("i", now(), HOUR, Duration::ZERO, |_, _| async {
                Ok(key_until(now() + SignedDuration::from_mins(30)))
            })
            .await
            .unwrap_err();
        assert_eq!(err.category(), "UserDelegationUnsupported");
    }

    #[tokio::test]
    async fn a_failed_request_caches_nothing() {
        let keys = DelegationKeys::default();
        let failed = keys
            .get("i", now(), HOUR, Duration::ZERO, |_, _| async {
                Err(IdentityError::EntraUnreachable("connection failed".into()).into())
            })
            .await;
        assert!(failed.is_err());
        keys.get("i", now(), HOUR, Duration::ZERO, |_, expiry| async move {
            Ok(key_until(expiry))
        })
        .await
        .unwrap();
    }
}
