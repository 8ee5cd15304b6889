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
        match self {
            PermissionScope::Account => "rwdxylacupfti",
            PermissionScope::Blob => "racwdxyltmei",
            PermissionScope::Container => "racwdxyltfmei",
            PermissionScope::Directory => "racwdltmeop",
            PermissionScope::Share => "rcwdl",
            PermissionScope::File => "rcwd",
            PermissionScope::Queue => "raup",
            PermissionScope::Table => "raud",
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

    pub fn to_owned_string(self) -> String {
        self.bytes().map(char::from).collect()
    }
}

impl super::encoding::FieldValue for Letters {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_raw(&self, out: &mut String) {
        out.extend(self.bytes().map(char::from));
    }

    /// Letters are unreserved characters: the token carries them as they are.
    fn push_encoded(&self, out: &mut String) {
        self.push_raw(out);
    }
}

impl std::fmt::Debug for Letters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keeps the letters of `order` that appear in `input`, in `order`'s order. Duplicates in
/// `input` are tolerated; a letter not in `order` is reported through `reject`.
fn canonicalize(
    input: &str,
    order: &'static str,
    reject: impl Fn(char) -> SasError,
) -> Result<Letters, SasError> {
    let mut seen = 0u32;
    for letter in input.chars() {
        let index = letter
            .is_ascii()
            .then(|| order.bytes().position(|b| b == letter as u8))
            .flatten();
        match index {
            Some(index) => seen |= 1 << index,
            None => return Err(reject(letter)),
        }
    }
    let mut letters = Letters {
        buf: [0; 16],
        len: 0,
    };
    for (index, byte) in order.bytes().enumerate() {
        if seen & (1 << index) != 0 {
            letters.buf[letters.len as usize] = byte;
            letters.len += 1;
        }
    }
    Ok(letters)
}

/// Canonical permission letters for `scope`.
pub fn canonical_permissions(scope: PermissionScope, input: &str) -> Result<Letters, SasError> {
    let allowed = scope.canonical_order();
    canonicalize(input, allowed, |letter| SasError::InvalidPermission {
        letter,
        resource: scope.describe(),
        allowed,
    })
}

/// Account SAS services (`ss`) in the order the Python storage SDKs write them: b, q, t, f.
pub fn canonical_services(input: &str) -> Result<Letters, SasError> {
    const ORDER: &str = "bqtf";
    canonicalize(input, ORDER, |letter| SasError::InvalidService {
        letter,
        allowed: ORDER,
    })
}

/// Account SAS resource types (`srt`) in the order the Python storage SDKs write them: s, c, o.
pub fn canonical_resource_types(input: &str) -> Result<Letters, SasError> {
    const ORDER: &str = "sco";
    canonicalize(input, ORDER, |letter| SasError::InvalidResourceType {
        letter,
        allowed: ORDER,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(scope: PermissionScope, input: &str) -> String {
        canonical_permissions(scope, input)
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn every_scope_orders_letters_canonically() {
        for scope in [
            PermissionScope::Account,
            PermissionScope::Blob,
            PermissionScope::Container,
            PermissionScope::Directory,
            PermissionScope::Share,
            PermissionScope::File,
            PermissionScope::Queue,
            PermissionScope::Table,
        ] {
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
