//! Times as kubectl shows them: short relative durations (`45s`, `5m30s`, `7h59m`, `3d4h`).

use jiff::{SignedDuration, Timestamp};

/// kubectl's `HumanDuration` of a non-negative span: more precision when it is short.
pub fn short(span: SignedDuration) -> String {
    let seconds = span.as_secs().max(0);
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with_remainder(minutes, "m", seconds % 60, "s")
    } else if minutes < 3 * 60 {
        format!("{minutes}m")
    } else if hours < 8 {
        with_remainder(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with_remainder(days, "d", hours % 24, "h")
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        with_remainder(days / 365, "y", days % 365, "d")
    } else {
        format!("{}y", days / 365)
    }
}

fn with_remainder(whole: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{rest}{rest_unit}")
    }
}

/// How long until `at`, or `past` when it has gone by (`expired`, `overdue`).
pub fn until(at: Timestamp, now: Timestamp, past: &str) -> String {
    let left = at.duration_since(now);
    if left.is_negative() {
        past.to_string()
    } else {
        short(left)
    }
}

/// How long ago `at` was (an age, as kubectl's AGE column).
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    short(now.duration_since(at))
}

/// `in 7h59m` or `3m ago`: a time relative to `now`, for prose.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let delta = at.duration_since(now);
    if delta.is_negative() {
        format!("{} ago", short(-delta))
    } else {
        format!("in {}", short(delta))
    }
}

/// Whole seconds until `at` (negative once past), for JSON.
pub fn seconds_until(at: Timestamp, now: Timestamp) -> i64 {
    at.duration_since(now).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    #[test]
    fn short_spans_keep_seconds_and_long_ones_drop_them() {
        assert_eq!(short(secs(45)), "45s");
        assert_eq!(short(secs(119)), "119s");
        assert_eq!(short(secs(5 * 60 + 30)), "5m30s");
        assert_eq!(short(secs(10 * 60 + 30)), "10m");
        assert_eq!(short(secs(7 * 3600 + 59 * 60 + 59)), "7h59m");
        assert_eq!(short(secs(8 * 3600)), "8h");
        assert_eq!(short(secs(3 * 86400 + 4 * 3600)), "3d4h");
        assert_eq!(short(secs(40 * 86400)), "40d");
        assert_eq!(short(secs(3 * 365 * 86400)), "3y");
    }

    #[test]
    fn a_past_time_reads_as_the_given_word() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let earlier: Timestamp = "2029-12-31T23:55:00Z".parse().unwrap();
        assert_eq!(until(earlier, now, "expired"), "expired");
        assert_eq!(until(now, earlier, "expired"), "5m");
        assert_eq!(relative(earlier, now), "5m ago");
        assert_eq!(relative(now, earlier), "in 5m");
        assert_eq!(seconds_until(earlier, now), -300);
    }
}
