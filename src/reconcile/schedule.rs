//! Pure: when to re-sign, and how long to wait after a failure.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// The largest share of `renewBefore` that jitter takes, in per mille (5 %).
const JITTER_PER_MILLE: u64 = 50;
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A deterministic per-object jitter of up to 5 % of `renew_before`, derived from the object's
/// uid, so grants created together spread their renewals but each one always renews at the
/// same point of its token's life.
pub fn jitter(uid: &str, renew_before: Duration) -> Duration {
    let digest = Sha256::digest(uid.as_bytes());
    let draw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 1000;
    renew_before.mul_f64((draw * JITTER_PER_MILLE) as f64 / 1_000_000.0)
}

/// When a token expiring at `expires_at` is due: `expires_at - renew_before - jitter`.
pub fn renew_at(expires_at: Timestamp, renew_before: Duration, jitter: Duration) -> Timestamp {
    let lead = SignedDuration::try_from(renew_before + jitter).unwrap_or(SignedDuration::MAX);
    expires_at.checked_sub(lead).unwrap_or(Timestamp::MIN)
}

/// How long from `now` until `at`; zero when `at` has passed.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let wait = at.duration_since(now);
    Duration::try_from(wait).unwrap_or(Duration::ZERO)
}

/// Exponential backoff after `failures` consecutive failures (1, 2, ...): 5 s doubling, at
/// most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn jitter_is_stable_for_an_object_and_within_five_percent() {
        let renew_before = Duration::from_secs(3600);
        let first = jitter("uid-a", renew_before);
        assert_eq!(first, jitter("uid-a", renew_before));
        assert!(first <= Duration::from_secs(180), "{first:?}");
    }

    #[test]
    fn jitter_differs_between_objects() {
        let renew_before = Duration::from_secs(3600);
        let distinct: std::collections::HashSet<_> = (0..20)
            .map(|i| jitter(&format!("uid-{i}"), renew_before))
            .collect();
        assert!(
            distinct.len() > 10,
            "only {} distinct jitters of 20",
            distinct.len()
        );
    }

    #[test]
    fn renewal_is_due_renew_before_plus_jitter_ahead_of_expiry() {
        let at = renew_at(
            ts("2030-01-01T08:00:00Z"),
            Duration::from_secs(7200),
            Duration::from_secs(30),
        );
        assert_eq!(at, ts("2030-01-01T05:59:30Z"));
    }

    #[test]
    fn until_a_past_time_is_zero() {
        assert_eq!(
            until(ts("2030-01-01T00:00:10Z"), ts("2030-01-01T00:00:00Z")),
            Duration::ZERO
        );
        assert_eq!(
            until(ts("2030-01-01T00:00:00Z"), ts("2030-01-01T00:00:10Z")),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_doubles_from_five_seconds_and_caps_at_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
