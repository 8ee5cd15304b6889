//! Token encoding (Python's `urllib.parse.quote` with `safe='/'`) and SAS time text.

use jiff::Timestamp;

use super::SasError;

/// Bytes Python's `quote(value, safe='/')` leaves as they are: ASCII letters, digits,
/// `_ . - ~` and `/`.
static KEPT: [bool; 256] = {
    let mut table = [false; 256];
    let mut index = 0;
    while index < 256 {
        let byte = index as u8;
        table[index] =
            byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~' | b'/');
        index += 1;
    }
    table
};

/// `%00%01...%FF`: the escape of byte `b` is `ESCAPES[3 * b..3 * b + 3]`, so escaping is one
/// copy rather than three pushes.
const ESCAPES: &[u8; 768] = b"\
    %00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15%16%17%18%19%1A%1B%1C%1D%1E%1F\
    %20%21%22%23%24%25%26%27%28%29%2A%2B%2C%2D%2E%2F%30%31%32%33%34%35%36%37%38%39%3A%3B%3C%3D%3E%3F\
    %40%41%42%43%44%45%46%47%48%49%4A%4B%4C%4D%4E%4F%50%51%52%53%54%55%56%57%58%59%5A%5B%5C%5D%5E%5F\
    %60%61%62%63%64%65%66%67%68%69%6A%6B%6C%6D%6E%6F%70%71%72%73%74%75%76%77%78%79%7A%7B%7C%7D%7E%7F\
    %80%81%82%83%84%85%86%87%88%89%8A%8B%8C%8D%8E%8F%90%91%92%93%94%95%96%97%98%99%9A%9B%9C%9D%9E%9F\
    %A0%A1%A2%A3%A4%A5%A6%A7%A8%A9%AA%AB%AC%AD%AE%AF%B0%B1%B2%B3%B4%B5%B6%B7%B8%B9%BA%BB%BC%BD%BE%BF\
    %C0%C1%C2%C3%C4%C5%C6%C7%C8%C9%CA%CB%CC%CD%CE%CF%D0%D1%D2%D3%D4%D5%D6%D7%D8%D9%DA%DB%DC%DD%DE%DF\
    %E0%E1%E2%E3%E4%E5%E6%E7%E8%E9%EA%EB%EC%ED%EE%EF%F0%F1%F2%F3%F4%F5%F6%F7%F8%F9%FA%FB%FC%FD%FE%FF";

/// Appends `value` percent-encoded exactly as the Python SDK encodes SAS query values
/// (UTF-8 bytes, uppercase hex). The signer builds its text as bytes: every piece comes from a
/// `&str` or is ASCII, so the whole is checked as UTF-8 once at the end instead of per piece.
pub fn push_encoded(out: &mut Vec<u8>, value: &[u8]) {
    let mut run_start = 0;
    for (index, &byte) in value.iter().enumerate() {
        if KEPT[byte as usize] {
            continue;
        }
        out.extend_from_slice(&value[run_start..index]);
        let at = 3 * byte as usize;
        out.extend_from_slice(&ESCAPES[at..at + 3]);
        run_start = index + 1;
    }
    out.extend_from_slice(&value[run_start..]);
}

/// Appends `number` in decimal (`sdd`) without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut number: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// A value written raw into the string-to-sign and percent-encoded into the token.
pub trait FieldValue {
    fn is_empty(&self) -> bool;
    fn push_raw(&self, out: &mut Vec<u8>);
    fn push_encoded(&self, out: &mut Vec<u8>);
}

impl FieldValue for &str {
    fn is_empty(&self) -> bool {
        str::is_empty(self)
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn push_encoded(&self, out: &mut Vec<u8>) {
        push_encoded(out, self.as_bytes());
    }
}

impl FieldValue for &String {
    fn is_empty(&self) -> bool {
        String::is_empty(self)
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn push_encoded(&self, out: &mut Vec<u8>) {
        push_encoded(out, self.as_bytes());
    }
}

/// Text known to hold only bytes the encoder keeps (static letters, validated names and
/// versions): the token carries it as it is, without the per-byte scan.
#[derive(Debug, Clone, Copy)]
pub struct Unreserved<'a>(pub &'a str);

impl FieldValue for Unreserved<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }

    fn push_encoded(&self, out: &mut Vec<u8>) {
        debug_assert!(self.0.bytes().all(|b| KEPT[usize::from(b)]), "{:?}", self.0);
        self.push_raw(out);
    }
}

impl FieldValue for super::Protocol {
    fn is_empty(&self) -> bool {
        false
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self {
            super::Protocol::Https => b"https".as_slice(),
            super::Protocol::HttpsAndHttp => b"https,http",
        });
    }

    fn push_encoded(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self {
            super::Protocol::Https => b"https".as_slice(),
            super::Protocol::HttpsAndHttp => b"https%2Chttp",
        });
    }
}

/// Text the signer built with [`push_encoded`] and [`FieldValue`]: UTF-8 by construction.
pub fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("the signer writes only UTF-8 text and ASCII")
}

/// `value` percent-encoded like [`push_encoded`].
pub fn encode(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    push_encoded(&mut out, value.as_bytes());
    into_text(out)
}

/// A time as `YYYY-MM-DDThh:mm:ssZ`, held inline. Sub-second precision is truncated, so the
/// token and the string-to-sign always carry the same 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SasTime([u8; 20]);

impl SasTime {
    /// Inlined: returned through memory, the `Result` cost more than the arithmetic.
    #[inline(always)]
    pub fn new(field: &'static str, time: Timestamp) -> Result<Self, SasError> {
        /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
        const FIRST: i64 = -62_135_596_800;
        const LAST: i64 = 253_402_300_799;
        let seconds = floor_second(time);
        if !(FIRST..=LAST).contains(&seconds) {
            return Err(SasError::TimeOutOfRange { field });
        }
        // In range, all the arithmetic below is on small non-negative numbers.
        let since_first = (seconds - FIRST) as u64;
        let (days, second_of_day) = ((since_first / 86_400) as u32, (since_first % 86_400) as u32);
        let (year, month, day) = civil_from_days(days);
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put_two = |at: usize, value: u32| {
            text[at] = b'0' + (value / 10) as u8;
            text[at + 1] = b'0' + (value % 10) as u8;
        };
        put_two(0, year / 100);
        put_two(2, year % 100);
        put_two(5, month);
        put_two(8, day);
        put_two(11, second_of_day / 3600);
        put_two(14, second_of_day / 60 % 60);
        put_two(17, second_of_day % 60);
        Ok(SasTime(text))
    }

    pub fn as_str(&self) -> &str {
        // Built only from ASCII digits and separators above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FieldValue for SasTime {
    fn is_empty(&self) -> bool {
        false
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }

    /// Only the two `:` need escaping, and they sit at fixed positions.
    fn push_encoded(&self, out: &mut Vec<u8>) {
        let text = &self.0;
        out.extend_from_slice(&text[..13]);
        out.extend_from_slice(b"%3A");
        out.extend_from_slice(&text[14..16]);
        out.extend_from_slice(b"%3A");
        out.extend_from_slice(&text[17..]);
    }
}

impl std::fmt::Debug for SasTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whole seconds since the Unix epoch, rounded down (jiff keeps sub-seconds signed).
pub fn floor_second(time: Timestamp) -> i64 {
    time.as_second() - i64::from(time.subsec_nanosecond() < 0)
}

/// `time` with sub-seconds dropped: the instant a SAS actually carries.
pub fn truncate_to_second(time: Timestamp) -> Timestamp {
    Timestamp::from_second(floor_second(time)).unwrap_or(time)
}

/// Proleptic Gregorian (year, month, day) of a day count since 0001-01-01 (Howard Hinnant's
/// `civil_from_days`, shifted so every quantity is unsigned); hand-rolled because it is on the
/// signing hot path.
fn civil_from_days(days_since_first: u32) -> (u32, u32, u32) {
    // Hinnant counts from 0000-03-01, which is 306 days before 0001-01-01.
    let z = days_since_first + 306;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table_covers_every_byte() {
        for byte in 0..=255u8 {
            let at = 3 * byte as usize;
            assert_eq!(&ESCAPES[at..at + 3], format!("%{byte:02X}").as_bytes());
        }
    }

    #[test]
    fn sas_time_token_form_escapes_both_colons() {
        let time = SasTime::new("se", "2030-01-02T03:04:05Z".parse().unwrap()).unwrap();
        let mut out = Vec::new();
        time.push_encoded(&mut out);
        assert_eq!(into_text(out), "2030-01-02T03%3A04%3A05Z");
    }

    #[test]
    fn decimals_are_written_without_leading_zeros() {
        for number in [0, 7, 10, 1024, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, number);
            assert_eq!(into_text(out), number.to_string());
        }
    }

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
    fn civil_conversion_agrees_with_jiff_across_the_range() {
        // Every 7919th day from year 1 to 9999, plus the edges.
        let first = "0001-01-01T00:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second()
            / 86_400;
        // jiff's latest timestamp is late on 9999-12-30 (UTC).
        let last = "9999-12-30T00:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second()
            / 86_400;
        let days = (first..=last).step_by(7919).chain([first, -1, 0, 1, last]);
        for day in days {
            let time = Timestamp::from_second(day * 86_400 + 3_599).unwrap();
            let expected = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", time).unwrap();
            assert_eq!(
                SasTime::new("t", time).unwrap().as_str(),
                expected,
                "day {day}"
            );
        }
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
