//! Signed versions (`sv`) and the feature floors that pick a string-to-sign layout.

use super::SasError;

/// The oldest signed version whose layouts this signer knows.
pub const OLDEST_VERSION: &str = "2015-04-05";

/// A validated signed version, kept as text (for the token) and as a comparable number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedVersion<'a> {
    text: &'a str,
    ordinal: u32,
}

/// Named versions where a layout or a field appears.
pub mod floor {
    /// `sr` and the snapshot time join the blob string-to-sign.
    pub const BLOB_RESOURCE: &str = "2018-11-09";
    /// Blob versions (`sr=bv`); the JS SDK's floor.
    pub const BLOB_VERSION: &str = "2019-10-10";
    /// Directory SAS (`sr=d`, `sdd`).
    pub const DIRECTORY: &str = "2020-02-10";
    /// `ses`.
    pub const ENCRYPTION_SCOPE: &str = "2020-12-06";
    /// Blob user delegation SAS (the JS SDK signs it from here).
    pub const USER_DELEGATION: &str = "2018-11-09";
    /// `saoid`, `suoid`, `scid` in blob user delegation SAS.
    pub const AGENT_OBJECT_IDS: &str = "2020-02-10";
    /// `skdutid`, `sduoid`, and queue/file user delegation SAS.
    pub const DELEGATED_USER: &str = "2025-07-05";
    /// `srh`, `srq`.
    pub const REQUEST_BINDING: &str = "2026-04-06";
}

const fn ordinal_of(text: &str) -> u32 {
    // Only called on literals known to be `YYYY-MM-DD`.
    let b = text.as_bytes();
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'-' {
            n = n * 10 + (b[i] - b'0') as u32;
        }
        i += 1;
    }
    n
}

/// `text == known` for `YYYY-MM-DD` text, as one fixed-size compare instead of a `memcmp` call.
#[inline]
fn is_exactly(text: &str, known: &str) -> bool {
    match (
        text.as_bytes().first_chunk::<10>(),
        known.as_bytes().first_chunk::<10>(),
    ) {
        (Some(head), Some(known_head)) => text.len() == known.len() && head == known_head,
        _ => text == known,
    }
}

impl<'a> SignedVersion<'a> {
    /// Parses `YYYY-MM-DD` and checks it is a real date from [`OLDEST_VERSION`] to
    /// [`super::NEWEST_VERSION`].
    #[inline]
    pub fn parse(text: &'a str) -> Result<Self, SasError> {
        // The defaults are the common case: skip re-validating them, and inline this much.
        const NEWEST: u32 = ordinal_of(super::NEWEST_VERSION);
        const TABLE_DEFAULT: u32 = ordinal_of(super::TABLE_DEFAULT_VERSION);
        if is_exactly(text, super::NEWEST_VERSION) {
            return Ok(SignedVersion {
                text,
                ordinal: NEWEST,
            });
        }
        if is_exactly(text, super::TABLE_DEFAULT_VERSION) {
            return Ok(SignedVersion {
                text,
                ordinal: TABLE_DEFAULT,
            });
        }
        Self::parse_other(text)
    }

    fn parse_other(text: &'a str) -> Result<Self, SasError> {
        let unsupported = || SasError::UnsupportedVersion {
            version: text.to_owned(),
            oldest: OLDEST_VERSION,
            newest: super::NEWEST_VERSION,
        };
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !well_formed {
            return Err(unsupported());
        }
        let ordinal = ordinal_of(text);
        let (year, month, day) = (ordinal / 10000, (ordinal / 100) % 100, ordinal % 100);
        if jiff::civil::Date::new(year as i16, month as i8, day as i8).is_err() {
            return Err(unsupported());
        }
        if ordinal < ordinal_of(OLDEST_VERSION) || ordinal > ordinal_of(super::NEWEST_VERSION) {
            return Err(unsupported());
        }
        Ok(SignedVersion { text, ordinal })
    }

    /// Whether this version is `minimum` or newer. Always inlined: the floors are constants, so
    /// their ordinals fold at compile time instead of being parsed on every check.
    #[inline(always)]
    pub fn at_least(&self, minimum: &str) -> bool {
        self.ordinal >= ordinal_of(minimum)
    }

    /// `Ok` if this version can carry `field`, else the error naming the field and the floor.
    #[inline(always)]
    pub fn require(&self, field: &'static str, minimum: &'static str) -> Result<(), SasError> {
        if self.at_least(minimum) {
            Ok(())
        } else {
            Err(self.too_old_for(field, minimum))
        }
    }

    #[cold]
    fn too_old_for(&self, field: &'static str, minimum: &'static str) -> SasError {
        SasError::FieldNeedsVersion {
            field,
            minimum,
            version: self.text.to_owned(),
        }
    }
}

/// A validated version is digits and `-`, which the token carries as they are.
impl super::encoding::FieldValue for SignedVersion<'_> {
    fn is_empty(&self) -> bool {
        false
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text.as_bytes());
    }

    fn push_encoded(&self, out: &mut Vec<u8>) {
        self.push_raw(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_oldest_and_newest_versions() {
        assert!(SignedVersion::parse(OLDEST_VERSION).is_ok());
        assert!(SignedVersion::parse(crate::sas::NEWEST_VERSION).is_ok());
    }

    #[test]
    fn rejects_versions_outside_the_known_range() {
        for text in ["2015-02-21", "2027-01-01"] {
            assert_eq!(
                SignedVersion::parse(text).unwrap_err().category(),
                "UnsupportedVersion",
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_versions() {
        for text in [
            "",
            "2020-12-6",
            "2020/12/06",
            "2020-13-06",
            "2021-02-30",
            "v2020-12-06",
            "２020-12-06",
        ] {
            assert_eq!(
                SignedVersion::parse(text).unwrap_err().category(),
                "UnsupportedVersion",
                "{text}"
            );
        }
    }

    #[test]
    fn the_defaults_are_recognised_only_when_exactly_equal() {
        assert!(is_exactly("2019-02-02", "2019-02-02"));
        assert!(!is_exactly("2019-02-02x", "2019-02-02"));
        assert!(!is_exactly("2019-02-0", "2019-02-02"));
        assert!(!is_exactly("2019-02-03", "2019-02-02"));
        assert_eq!(
            SignedVersion::parse("2026-10-06 ").unwrap_err().category(),
            "UnsupportedVersion"
        );
    }

    #[test]
    fn compares_versions_by_date() {
        let v = SignedVersion::parse("2020-12-06").unwrap();
        assert!(v.at_least("2020-12-06"));
        assert!(v.at_least("2018-11-09"));
        assert!(!v.at_least("2025-07-05"));
    }

    #[test]
    fn require_names_the_field_and_the_floor() {
        let v = SignedVersion::parse("2019-02-02").unwrap();
        let err = v.require("ses", floor::ENCRYPTION_SCOPE).unwrap_err();
        assert_eq!(
            err,
            SasError::FieldNeedsVersion {
                field: "ses",
                minimum: "2020-12-06",
                version: "2019-02-02".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "ses needs signed version 2020-12-06 or newer, but sv is 2019-02-02"
        );
    }
}
