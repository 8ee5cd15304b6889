//! Pure: when to re-sign, and how long to wait after a failure.
//!
//! Whatever a grant's spec says, one grant costs at most a few writes (Secret, status, Event)
//! per renewal: a token stays in use for at least [`min_token_age`] after it was signed, and
//! no requeue is shorter than [`MIN_REQUEUE`].

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// The largest share of `renewBefore` that jitter takes, in per mille (20 %). Grants created
/// together (a cold start signs thousands within seconds) fall due again as densely as they
/// were signed; spread over a fifth of `renewBefore` their renewals stay within what the API
/// server writes at once (`make bench-scale`: 5 % left a p99 lateness of 4 s at 2,000 grants).
const JITTER_PER_MILLE: u64 = 200;
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Retries of errors that retrying alone does not fix (403, 404, 422, ...) start here...
const SLOW_BACKOFF_BASE: Duration = Duration::from_secs(60);
/// ... and stop growing here.
const SLOW_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The shortest wait before a grant is looked at again.
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// The shortest time a token stays in use before it is renewed, whatever the grant's spec.
const MIN_TOKEN_AGE: Duration = Duration::from_secs(15);
/// How long kube-runtime's scheduler holds every request before running it, so that a burst
/// of watch events for one grant costs one reconcile. It delays the controller's own timed
/// requeues too (the scheduler adds it to every `run_at`): [`timer_requeue`] takes it off them.
pub const SCHEDULER_DEBOUNCE: Duration = Duration::from_millis(100);
/// A retry is due at the latest this long (plus the reconcile deadline) before the current
/// token expires, so that a retry that succeeds writes its successor in time.
pub const RETRY_SAFETY_MARGIN: Duration = Duration::from_secs(5);

/// How long a token of `validity` stays in use at least before renewal: 15 s or a tenth of
/// its validity, whichever is longer, but never more than half of it.
pub fn min_token_age(validity: Duration) -> Duration {
    MIN_TOKEN_AGE.max(validity / 10).min(validity / 2)
}

/// When a grant's tokens are renewed: its validity, `renewBefore` and per-object jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub validity: Duration,
    pub renew_before: Duration,
    pub jitter: Duration,
}

impl Renewal {
    /// The renewal of a grant with object `uid`.
    pub fn of(uid: &str, validity: Duration, renew_before: Duration) -> Self {
        Renewal {
            validity,
            renew_before,
            jitter: jitter(uid, renew_before),
        }
    }

    /// When a token expiring at `expires_at` is due: `renewBefore` plus jitter ahead of its
    /// expiry, but never sooner than [`min_token_age`] after it was signed (`expires_at -
    /// validity`), so neither a `renewBefore` close to the validity nor the jitter can make it
    /// due at (or before) its signing. Whole seconds (rounded down): decisions see `now` in
    /// whole seconds (SAS times have no fractions), so a fractional due time would be found due
    /// only at the next whole second, up to a second late.
    pub fn renew_at(&self, expires_at: Timestamp) -> Timestamp {
        let planned = renew_at(expires_at, self.renew_before, self.jitter);
        let signed_at = expires_at
            .checked_sub(signed(self.validity))
            .unwrap_or(Timestamp::MIN);
        let earliest = signed_at
            .checked_add(signed(min_token_age(self.validity)))
            .unwrap_or(Timestamp::MAX);
        whole_second(planned.max(earliest))
    }
}

/// `at` rounded down to a whole second.
fn whole_second(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// How long to wait before looking at a grant due at `at` again: until then, but at least
/// [`MIN_REQUEUE`].
pub fn requeue_after(now: Timestamp, at: Timestamp) -> Duration {
    until(now, at).max(MIN_REQUEUE)
}

/// The wait to hand to the controller for a grant due at `at`: [`requeue_after`] less the
/// [`SCHEDULER_DEBOUNCE`] the scheduler adds back, so that the reconcile runs when the grant is
/// due, not half a debounce later.
pub fn timer_requeue(now: Timestamp, at: Timestamp) -> Duration {
    requeue_after(now, at).saturating_sub(SCHEDULER_DEBOUNCE)
}

/// A deterministic per-object jitter of up to 20 % of `renew_before`, derived from the object's
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
    doubling(BACKOFF_BASE, BACKOFF_MAX, failures)
}

/// The backoff of errors that the same request will meet again until someone changes
/// something (403 Forbidden, 404, 422 Invalid): 1 min doubling, at most 10 min.
pub fn slow_backoff(failures: u32) -> Duration {
    doubling(SLOW_BACKOFF_BASE, SLOW_BACKOFF_MAX, failures)
}

/// How long to wait before retrying a grant whose reconcile failed, given the `backoff` its
/// failures earned and when its current token expires (if known). The wait never passes
/// `expires_at - margin`; past that point, retries halve the time left until expiry (but wait at
/// least [`MIN_REQUEUE`]). A token that has already expired gets the plain backoff: there is
/// nothing left to save, and the API server's return triggers a retry at once anyway.
pub fn retry_after(
    now: Timestamp,
    backoff: Duration,
    expires_at: Option<Timestamp>,
    margin: Duration,
) -> Duration {
    let Some(expires_at) = expires_at.filter(|expiry| *expiry > now) else {
        return backoff;
    };
    let latest = expires_at
        .checked_sub(signed(margin))
        .unwrap_or(Timestamp::MIN);
    let wait = if now < latest {
        until(now, latest)
    } else {
        until(now, expires_at) / 2
    };
    backoff.min(wait).max(MIN_REQUEUE)
}

fn doubling(base: Duration, max: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn jitter_is_stable_for_an_object_and_within_a_fifth_of_renew_before() {
        let renew_before = Duration::from_secs(3600);
        for i in 0..200 {
            let uid = format!("uid-{i}");
            let first = jitter(&uid, renew_before);
            assert_eq!(first, jitter(&uid, renew_before));
            assert!(first <= Duration::from_secs(720), "{uid}: {first:?}");
        }
    }

    #[test]
    fn jitter_spreads_grants_over_most_of_its_window() {
        let renew_before = Duration::from_secs(3600);
        let jitters: Vec<Duration> = (0..1000)
            .map(|i| jitter(&format!("uid-{i}"), renew_before))
            .collect();
        let latest = jitters.iter().max().unwrap();
        let earliest = jitters.iter().min().unwrap();
        assert!(
            *latest - *earliest >= Duration::from_secs(700),
            "{earliest:?}..{latest:?}"
        );
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

    fn renewal(validity: u64, renew_before: u64, jitter: u64) -> Renewal {
        Renewal {
            validity: Duration::from_secs(validity),
            renew_before: Duration::from_secs(renew_before),
            jitter: Duration::from_secs(jitter),
        }
    }

    #[test]
    fn a_sane_spec_renews_renew_before_plus_jitter_ahead_of_expiry() {
        let at = renewal(8 * 3600, 2 * 3600, 30).renew_at(ts("2030-01-01T08:00:00Z"));
        assert_eq!(at, ts("2030-01-01T05:59:30Z"));
    }

    #[test]
    fn renew_before_almost_the_validity_still_keeps_a_token_for_its_minimum_age() {
        // validity 1h, renewBefore 59m59s: signed at 07:00, would be due at 07:00:01.
        let at = renewal(3600, 3599, 0).renew_at(ts("2030-01-01T08:00:00Z"));
        assert_eq!(at, ts("2030-01-01T07:06:00Z"), "a tenth of the validity");
    }

    #[test]
    fn jitter_never_pushes_renewal_to_or_before_signing() {
        // 8h / 7h40m: 20 % jitter of 7h40m (92 min) would be due before the token was signed.
        let validity = 8 * 3600;
        let renew_before = 7 * 3600 + 40 * 60;
        let expires = ts("2030-01-01T08:00:00Z");
        let signed_at = ts("2030-01-01T00:00:00Z");
        for i in 0..200 {
            let policy = Renewal::of(
                &format!("uid-{i}"),
                Duration::from_secs(validity),
                Duration::from_secs(renew_before),
            );
            let at = policy.renew_at(expires);
            assert!(
                at >= signed_at + SignedDuration::from_secs(48 * 60),
                "uid-{i}: due at {at}, signed at {signed_at}"
            );
            assert!(at < expires);
        }
    }

    #[test]
    fn the_minimum_token_age_is_fifteen_seconds_or_a_tenth_and_below_half_the_validity() {
        assert_eq!(
            min_token_age(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            min_token_age(Duration::from_secs(3600)),
            Duration::from_secs(360)
        );
        assert_eq!(
            min_token_age(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn at_most_a_few_writes_per_renewal_whatever_the_spec() {
        // Simulate signing at each due time for a day: renewals per validity stay bounded.
        for (validity, renew_before) in [(60, 59), (3600, 3599), (60, 1), (8 * 3600, 7 * 3600)] {
            let policy = Renewal::of(
                "uid",
                Duration::from_secs(validity),
                Duration::from_secs(renew_before),
            );
            let mut now = ts("2030-01-01T00:00:00Z");
            let end = now + SignedDuration::from_hours(24);
            let mut signings = 0u64;
            while now < end {
                let expires = now + SignedDuration::from_secs(validity as i64);
                now = now
                    + SignedDuration::try_from(requeue_after(now, policy.renew_at(expires)))
                        .unwrap();
                signings += 1;
            }
            let per_validity = signings * validity / (24 * 3600);
            assert!(
                per_validity <= 10,
                "{validity}s/{renew_before}s: {signings} signings a day"
            );
        }
    }

    #[test]
    fn no_requeue_is_shorter_than_a_second() {
        let now = ts("2030-01-01T00:00:10Z");
        assert_eq!(requeue_after(now, ts("2030-01-01T00:00:00Z")), MIN_REQUEUE);
        assert_eq!(requeue_after(now, now), MIN_REQUEUE);
        assert_eq!(
            requeue_after(now, ts("2030-01-01T00:01:10Z")),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_renewal_is_due_at_a_whole_second() {
        // 20 % of 60 s: jitters with fractions of a second.
        for i in 0..50 {
            let policy = Renewal::of(
                &format!("uid-{i}"),
                Duration::from_secs(120),
                Duration::from_secs(60),
            );
            let at = policy.renew_at(ts("2030-01-01T00:02:00Z"));
            assert_eq!(at.subsec_nanosecond(), 0, "uid-{i}: {at}");
            assert!(at <= ts("2030-01-01T00:01:00Z") && at >= ts("2030-01-01T00:00:48Z"));
        }
    }

    #[test]
    fn a_timed_requeue_leaves_room_for_the_scheduler_debounce() {
        let now = ts("2030-01-01T00:00:10Z");
        assert_eq!(
            timer_requeue(now, ts("2030-01-01T00:01:10Z")) + SCHEDULER_DEBOUNCE,
            Duration::from_secs(60)
        );
        assert_eq!(timer_requeue(now, now) + SCHEDULER_DEBOUNCE, MIN_REQUEUE);
    }

    #[test]
    fn slow_backoff_starts_at_a_minute_and_caps_at_ten() {
        assert_eq!(slow_backoff(1), Duration::from_secs(60));
        assert_eq!(slow_backoff(2), Duration::from_secs(120));
        assert_eq!(slow_backoff(50), Duration::from_secs(600));
    }

    #[test]
    fn a_retry_never_waits_past_the_expiry_minus_the_margin() {
        let now = ts("2030-01-01T00:00:35Z");
        let expires = Some(ts("2030-01-01T00:01:00Z"));
        let margin = Duration::from_secs(10);
        // The 4th failure earned 40 s, but the token must be renewed by 00:00:50.
        assert_eq!(
            retry_after(now, backoff(4), expires, margin),
            Duration::from_secs(15)
        );
        // A shorter backoff is kept.
        assert_eq!(
            retry_after(now, backoff(1), expires, margin),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn inside_the_margin_retries_halve_the_time_left_but_wait_a_second() {
        let expires = Some(ts("2030-01-01T00:01:00Z"));
        let margin = Duration::from_secs(10);
        assert_eq!(
            retry_after(ts("2030-01-01T00:00:52Z"), backoff(5), expires, margin),
            Duration::from_secs(4)
        );
        assert_eq!(
            retry_after(ts("2030-01-01T00:00:59Z"), backoff(5), expires, margin),
            MIN_REQUEUE
        );
    }

    #[test]
    fn an_expired_or_unknown_token_gets_the_plain_backoff() {
        let now = ts("2030-01-01T00:02:00Z");
        let margin = Duration::from_secs(10);
        assert_eq!(
            retry_after(now, backoff(3), Some(ts("2030-01-01T00:01:00Z")), margin),
            backoff(3)
        );
        assert_eq!(retry_after(now, backoff(3), None, margin), backoff(3));
    }

    #[test]
    fn deadline_aware_retries_over_an_outage_shorter_than_renew_before_end_before_expiry() {
        // Due at 00:00:00, expires at 00:01:00: every retry lands before the expiry minus the
        // margin until the margin, and there are few of them.
        let expires = ts("2030-01-01T00:01:00Z");
        let margin = Duration::from_secs(10);
        let mut now = ts("2030-01-01T00:00:00Z");
        let mut attempts = vec![now];
        for failures in 1.. {
            let wait = retry_after(now, backoff(failures), Some(expires), margin);
            now += SignedDuration::try_from(wait).unwrap();
            if now >= expires {
                break;
            }
            attempts.push(now);
        }
        assert!(
            attempts.contains(&ts("2030-01-01T00:00:50Z")),
            "{attempts:?}"
        );
        assert!(attempts.len() <= 10, "{} attempts", attempts.len());
    }

    #[test]
    fn backoff_doubles_from_five_seconds_and_caps_at_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
