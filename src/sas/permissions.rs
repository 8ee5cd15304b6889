//! Permission, service and resource-type letters: any order in, canonical order out.

use super::SasError;

/// What a set of permission letters applies to; each has its own letters and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionScope {
    Account,
    Blob,
    Container,
    Directory,
    Share,
    File,
    Queue,
    Table,
}

impl PermissionScope {
    /// The allowed letters in the canonical order the Python SDK writes them.
    pub fn canonical_order(self) -> &'static str {
        self.order().letters
    }

    fn order(self) -> &'static Order {
        static ACCOUNT: Order = Order::new("rwdxylacupfti");
        static BLOB: Order = Order::new("racwdxyltmei");
        static CONTAINER: Order = Order::new("racwdxyltfmei");
        static DIRECTORY: Order = Order::new("racwdltmeop");
        static SHARE: Order = Order::new("rcwdl");
        static FILE: Order = Order::new("rcwd");
        static QUEUE: Order = Order::new("raup");
        static TABLE: Order = Order::new("raud");
        match self {
            PermissionScope::Account => &ACCOUNT,
            PermissionScope::Blob => &BLOB,
            PermissionScope::Container => &CONTAINER,
            PermissionScope::Directory => &DIRECTORY,
            PermissionScope::Share => &SHARE,
            PermissionScope::File => &FILE,
            PermissionScope::Queue => &QUEUE,
            PermissionScope::Table => &TABLE,
        }
    }

    /// How errors name this scope.
    pub fn describe(self) -> &'static str {
        match self {
            PermissionScope::Account => "an account SAS",
            PermissionScope::Blob => "a blob SAS",
            PermissionScope::Container => "a container SAS",
            PermissionScope::Directory => "a directory SAS",
            PermissionScope::Share => "a share SAS",
            PermissionScope::File => "a file SAS",
            PermissionScope::Queue => "a queue SAS",
            PermissionScope::Table => "a table SAS",
        }
    }
}

/// The newest floor [`permission_floor`] returns: versions from here on carry every letter.
pub const NEWEST_PERMISSION_FLOOR: &str = "2021-04-10";

/// Permission letters newer than the oldest signed version, with the version that introduced
/// them (the floors the JS SDK enforces). Returns `(field, minimum)` for `letter` in `scope`.
pub fn permission_floor(
    scope: PermissionScope,
    letter: u8,
) -> Option<(&'static str, &'static str)> {
    let blob_family = matches!(
        scope,
        PermissionScope::Blob | PermissionScope::Container | PermissionScope::Directory
    );
    let account = scope == PermissionScope::Account;
    match letter {
        b'x' if blob_family || account => Some(("permission x (delete version)", "2019-10-10")),
        b'y' if blob_family || account => Some(("permission y (permanent delete)", "2019-10-10")),
        b't' if blob_family || account => Some(("permission t (tags)", "2019-12-12")),
        b'f' if account => Some(("permission f (filter by tags)", "2019-12-12")),
        b'f' if blob_family => Some(("permission f (filter by tags)", "2021-04-10")),
        b'm' if blob_family => Some(("permission m (move)", "2020-02-10")),
        b'e' if blob_family => Some(("permission e (execute)", "2020-02-10")),
        b'i' if blob_family || account => {
            Some(("permission i (set immutability policy)", "2020-08-04"))
        }
        _ => None,
    }
}

/// Up to 16 distinct ASCII letters in canonical order, held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Letters {
    buf: [u8; 16],
    len: u8,
}

impl Letters {
    pub fn as_str(&self) -> &str {
        // Only ASCII letters taken from a `&'static str` are ever stored.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.buf[..self.len as usize].iter().copied()
    }
}

impl super::encoding::FieldValue for Letters {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[..self.len as usize]);
    }

    /// Letters are unreserved characters: the token carries them as they are.
    fn push_encoded(&self, out: &mut Vec<u8>) {
        self.push_raw(out);
    }
}

impl std::fmt::Debug for Letters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A letter order as a lookup table: `positions[letter]` is the letter's index in the order plus
/// one, or 0 when the order lacks it. Built at compile time so each input letter costs one load.
struct Order {
    letters: &'static str,
    positions: [u8; 128],
}

impl Order {
    const fn new(letters: &'static str) -> Self {
        let bytes = letters.as_bytes();
        assert!(bytes.len() <= 16, "Letters holds up to 16");
        let mut positions = [0u8; 128];
        let mut index = 0;
        while index < bytes.len() {
            positions[bytes[index] as usize] = index as u8 + 1;
            index += 1;
        }
        Order { letters, positions }
    }
}

/// Keeps the letters of `order` that appear in `input`, in `order`'s order. Duplicates in
/// `input` are tolerated; a letter not in `order` is reported through `reject`. Inlined for the
/// same reason as `SasTime::new`.
#[inline]
fn canonicalize(
    input: &str,
    order: &Order,
    reject: impl Fn(char) -> SasError,
) -> Result<Letters, SasError> {
    let mut seen = 0u32;
    for (at, byte) in input.bytes().enumerate() {
        match order.positions.get(usize::from(byte)).copied().unwrap_or(0) {
            // Every byte before `at` was ASCII, so `at` starts a character.
            0 => return Err(reject(input[at..].chars().next().unwrap_or('\u{fffd}'))),
            position => seen |= 1 << (position - 1),
        }
    }
    // Built in locals and moved into `Letters` once: a counter kept in the struct went through
    // memory on every letter.
    let (mut buf, mut len) = ([0u8; 16], 0);
    let order = order.letters.as_bytes();
    while seen != 0 {
        buf[len] = order[seen.trailing_zeros() as usize];
        len += 1;
        seen &= seen - 1;
    }
    Ok(Letters {
        buf,
        len: len as u8,
    })
}

/// Canonical permission letters for `scope`.
#[inline]
pub fn canonical_permissions(scope: PermissionScope, input: &str) -> Result<Letters, SasError> {
    let order = scope.order();
    canonicalize(input, order, |letter| SasError::InvalidPermission {
        letter,
        resource: scope.describe(),
        allowed: order.letters,
    })
}

/// Account SAS services (`ss`) in the order the Python storage SDKs write them: b, q, t, f.
#[inline]
pub fn canonical_services(input: &str) -> Result<Letters, SasError> {
    static ORDER: Order = Order::new("bqtf");
    canonicalize(input, &ORDER, |letter| SasError::InvalidService {
        letter,
        allowed: ORDER.letters,
    })
}

/// Account SAS resource types (`srt`) in the order the Python storage SDKs write them: s, c, o.
#[inline]
pub fn canonical_resource_types(input: &str) -> Result<Letters, SasError> {
    static ORDER: Order = Order::new("sco");
    canonicalize(input, &ORDER, |letter| SasError::InvalidResourceType {
        letter,
        allowed: ORDER.letters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_SCOPES: [PermissionScope; 8] = [
        PermissionScope::Account,
        PermissionScope::Blob,
        PermissionScope::Container,
        PermissionScope::Directory,
        PermissionScope::Share,
        PermissionScope::File,
        PermissionScope::Queue,
        PermissionScope::Table,
    ];

    fn canon(scope: PermissionScope, input: &str) -> String {
        canonical_permissions(scope, input)
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn every_scope_orders_letters_canonically() {
        for scope in ALL_SCOPES {
            let order = scope.canonical_order();
            let reversed: String = order.chars().rev().collect();
            assert_eq!(canon(scope, &reversed), order, "{scope:?}");
        }
    }

    #[test]
    fn blob_permissions_come_out_in_sdk_order() {
        assert_eq!(canon(PermissionScope::Blob, "wlr"), "rwl");
        assert_eq!(canon(PermissionScope::Container, "lfr"), "rlf");
        assert_eq!(canon(PermissionScope::Account, "lwr"), "rwl");
        assert_eq!(canon(PermissionScope::Queue, "pura"), "raup");
        assert_eq!(canon(PermissionScope::Table, "dura"), "raud");
    }

    #[test]
    fn no_letter_needs_a_version_newer_than_the_newest_floor() {
        for scope in ALL_SCOPES {
            for letter in scope.canonical_order().bytes() {
                if let Some((field, minimum)) = permission_floor(scope, letter) {
                    assert!(minimum <= NEWEST_PERMISSION_FLOOR, "{field} in {scope:?}");
                }
            }
        }
    }

    #[test]
    fn duplicate_letters_are_tolerated() {
        assert_eq!(canon(PermissionScope::Blob, "rrwr"), "rw");
    }

    #[test]
    fn a_letter_outside_the_scope_names_the_letter_and_the_allowed_set() {
        let err = canonical_permissions(PermissionScope::File, "rl").unwrap_err();
        assert_eq!(
            err,
            SasError::InvalidPermission {
                letter: 'l',
                resource: "a file SAS",
                allowed: "rcwd"
            }
        );
        assert!(err.to_string().contains("'l'") && err.to_string().contains("rcwd"));
    }

    #[test]
    fn uppercase_and_non_ascii_letters_are_rejected() {
        assert!(canonical_permissions(PermissionScope::Blob, "R").is_err());
        assert!(canonical_permissions(PermissionScope::Blob, "ŕ").is_err());
    }

    #[test]
    fn services_and_resource_types_use_sdk_order() {
        assert_eq!(canonical_services("ftqb").unwrap().as_str(), "bqtf");
        assert_eq!(canonical_resource_types("ocs").unwrap().as_str(), "sco");
        assert_eq!(
            canonical_services("x").unwrap_err(),
            SasError::InvalidService {
                letter: 'x',
                allowed: "bqtf"
            }
        );
        assert_eq!(
            canonical_resource_types("b").unwrap_err(),
            SasError::InvalidResourceType {
                letter: 'b',
                allowed: "sco"
            }
        );
    }
}
