//! Token encoding (Python's `urllib.parse.quote` with `safe='/'`) and SAS time text.

use jiff::Timestamp;

use super::SasError;

/// Whether Python's `quote(value, safe='/')` leaves `byte` as is: ASCII letters, digits,
/// `_ . - ~` and `/`.
fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~' | b'/')
}

/// Appends `value` percent-encoded exactly as the Python SDK encodes SAS query values
/// (UTF-8 bytes, uppercase hex).
pub fn push_encoded(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if is_kept(byte) {
            continue;
        }
        // A kept run is ASCII, so a non-empty run starts and ends on char boundaries.
        if run_start < index {
            out.push_str(&value[run_start..index]);
        }
        out.push('%');
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0xF) as usize] as char);
        run_start = index + 1;
    }
    out.push_str(&value[run_start..]);
}

/// `value` percent-encoded like [`push_encoded`].
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_encoded(&mut out, value);
    out
}

/// A time as `YYYY-MM-DDThh:mm:ssZ`, held inline. Sub-second precision is truncated, so the
/// token and the string-to-sign always carry the same 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SasTime([u8; 20]);

impl SasTime {
    pub fn new(field: &'static str, time: Timestamp) -> Result<Self, SasError> {
        let civil = jiff::tz::Offset::UTC.to_datetime(time);
        let year = civil.year();
        if !(1..=9999).contains(&year) {
            return Err(SasError::TimeOutOfRange { field });
        }
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for index in (at..at + width).rev() {
                text[index] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, civil.month() as u32);
        put(8, 2, civil.day() as u32);
        put(11, 2, civil.hour() as u32);
        put(14, 2, civil.minute() as u32);
        put(17, 2, civil.second() as u32);
        Ok(SasTime(text))
    }

    pub fn as_str(&self) -> &str {
        // Built only from ASCII digits and separators above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for SasTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `time` with sub-seconds dropped: the instant a SAS actually carries.
pub fn truncate_to_second(time: Timestamp) -> Timestamp {
    // Floor, like the civil time `SasTime` prints (jiff keeps sub-seconds signed).
    let second = time.as_second() - i64::from(time.subsec_nanosecond() < 0);
    Timestamp::from_second(second).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unreserved_characters_and_slash() {
        assert_eq!(encode("AZaz09_.-~/"), "AZaz09_.-~/");
    }

    #[test]
    fn encodes_reserved_characters_in_uppercase_hex() {
        assert_eq!(
            encode("a+b=c:d,e;f g&h?i#j%k"),
            "a%2Bb%3Dc%3Ad%2Ce%3Bf%20g%26h%3Fi%23j%25k"
        );
    }

    #[test]
    fn encodes_non_ascii_as_utf8_bytes() {
        assert_eq!(encode("é☃"), "%C3%A9%E2%98%83");
    }

    #[test]
    fn formats_times_at_second_precision() {
        let time: Timestamp = "2030-01-02T03:04:05.987654321Z".parse().unwrap();
        assert_eq!(
            SasTime::new("se", time).unwrap().as_str(),
            "2030-01-02T03:04:05Z"
        );
    }

    #[test]
    fn formats_times_before_1970_and_small_years() {
        let time: Timestamp = "0099-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(
            SasTime::new("st", time).unwrap().as_str(),
            "0099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn rejects_years_that_do_not_fit_four_digits() {
        let time: Timestamp = "-000001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            SasTime::new("st", time).unwrap_err(),
            SasError::TimeOutOfRange { field: "st" }
        );
    }

    #[test]
    fn truncation_drops_sub_seconds_only() {
        let time: Timestamp = "2030-01-02T03:04:05.9Z".parse().unwrap();
        assert_eq!(
            truncate_to_second(time),
            "2030-01-02T03:04:05Z".parse::<Timestamp>().unwrap()
        );
    }
}
