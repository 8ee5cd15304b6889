//! Pure: Go-style durations such as `8h`, `90m` or `1h30m`, parsed with integer arithmetic.
//!
//! The CRD's schema admits a duration when it matches [`PATTERN`] and the API server's CEL
//! `duration()` (Go's `time.ParseDuration`) parses it; this parser accepts exactly those
//! strings, so the controller and admission agree on every input. It never panics: a value
//! beyond Go's range (int64 nanoseconds, about 292 years) is an error, as it is for Go.

use std::time::Duration;

/// Digits followed by a unit, repeated. No sign, no fraction and no `µs`: Go accepts those,
/// but its fractions are rounded through floating point, and nobody needs them for a lifetime.
pub const PATTERN: &str = r"^([0-9]+(ns|us|ms|s|m|h))+$";

/// Longest duration text admitted; ample for `8760h` or `1h30m15s`, short enough to bound CEL.
pub const MAX_LENGTH: usize = 24;

/// Go's largest duration: `i64::MAX` nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_LENGTH} characters long")]
    TooLong,
    #[error("must be whole numbers each followed by a unit of ns, us, ms, s, m or h (as in 1h30m)")]
    Malformed,
    #[error("is longer than the largest duration (about 292 years)")]
    OutOfRange,
}

/// Parses `text` as the schema and CEL admit it.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.chars().count() > MAX_LENGTH {
        return Err(DurationError::TooLong);
    }
    let bytes = text.as_bytes();
    let mut total: u128 = 0;
    let mut at = 0;
    while at < bytes.len() {
        let digits_start = at;
        let mut number: u128 = 0;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            // Saturating: anything above MAX_NANOS is rejected below, and u128 keeps 24 digits
            // of any unit exact.
            number = number
                .saturating_mul(10)
                .saturating_add(u128::from(bytes[at] - b'0'));
            at += 1;
        }
        if at == digits_start {
            return Err(DurationError::Malformed);
        }
        let unit_start = at;
        while at < bytes.len() && !bytes[at].is_ascii_digit() {
            at += 1;
        }
        // Both ends sit next to an ASCII digit or at an end of the text: char boundaries.
        let nanos_per_unit: u128 = match &text[unit_start..at] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::Malformed),
        };
        total = total.saturating_add(number.saturating_mul(nanos_per_unit));
    }
    if total > MAX_NANOS {
        return Err(DurationError::OutOfRange);
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::OutOfRange)?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn whole_units_add_up() {
        assert_eq!(parse("8h"), Ok(secs(8 * 3600)));
        assert_eq!(parse("1h30m15s"), Ok(secs(5415)));
        assert_eq!(parse("90m"), Ok(secs(5400)));
        assert_eq!(parse("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn repeated_and_unordered_units_are_summed_as_go_does() {
        assert_eq!(parse("1s1h1s"), Ok(secs(3602)));
    }

    #[test]
    fn nanoseconds_summing_to_a_year_are_exact() {
        // The issue's disagreement: CEL admits it as exactly 8760h.
        assert_eq!(parse("31536000000000000ns"), Ok(secs(365 * 24 * 3600)));
    }

    #[test]
    fn twenty_nines_of_hours_is_an_error_not_a_panic() {
        assert_eq!(
            parse("99999999999999999999h"),
            Err(DurationError::OutOfRange)
        );
    }

    #[test]
    fn the_largest_go_duration_parses_and_one_nanosecond_more_does_not() {
        assert_eq!(
            parse("9223372036854775807ns"),
            Ok(Duration::from_nanos(i64::MAX as u64))
        );
        assert_eq!(
            parse("9223372036854775808ns"),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(parse("2562047h"), Ok(secs(2562047 * 3600)));
        assert_eq!(parse("2562048h"), Err(DurationError::OutOfRange));
    }

    #[test]
    fn overflow_by_summing_parts_is_out_of_range() {
        assert_eq!(parse("2562047h2562047h"), Err(DurationError::OutOfRange));
    }

    #[test]
    fn signs_fractions_and_micro_signs_are_malformed() {
        for text in [
            "-1h", "+1h", "1.5h", ".5h", "1µs", "1μs", "1", "h", "1hh", "1H", " 1h",
        ] {
            assert_eq!(parse(text), Err(DurationError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn go_zero_without_unit_is_not_admitted() {
        // Go accepts a bare "0"; the schema pattern does not, so neither do we.
        assert_eq!(parse("0"), Err(DurationError::Malformed));
    }

    #[test]
    fn empty_and_overlong_texts_are_rejected() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(
            parse(&format!("{}1s", "0".repeat(MAX_LENGTH))),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse(&format!("{}1s", "0".repeat(MAX_LENGTH - 2))),
            Ok(secs(1))
        );
    }
}
