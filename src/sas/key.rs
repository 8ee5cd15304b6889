//! Keys: decoded once, with the HMAC key schedule precomputed so each signature only hashes
//! the string-to-sign.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SasError;

type HmacSha256 = Hmac<Sha256>;

/// A decoded account key (or user delegation key value). Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct AccountKey {
    bytes: Vec<u8>,
    /// HMAC state after absorbing the key: cloning it skips the per-signature key schedule.
    prototype: HmacSha256,
}

impl PartialEq for AccountKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for AccountKey {}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

impl AccountKey {
    /// Decodes a base64 account key. The error never contains the input.
    pub fn from_base64(encoded: &str) -> Result<Self, SasError> {
        Self::decode(encoded, "account key")
    }

    /// Decodes base64 key material; `which` names it in the error ("account key", ...).
    pub fn decode(encoded: &str, which: &'static str) -> Result<Self, SasError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SasError::KeyNotBase64 { which })?;
        if bytes.is_empty() {
            return Err(SasError::KeyNotBase64 { which });
        }
        Ok(Self::from_bytes(bytes))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let prototype =
            HmacSha256::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        AccountKey { bytes, prototype }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// HMAC-SHA256 of `message` under this key.
    pub fn hmac_sha256(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.prototype.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// base64(HMAC-SHA256(message)), held inline.
    pub fn signature(&self, message: &[u8]) -> Signature {
        let mut text = [0u8; 44];
        let written = STANDARD
            .encode_slice(self.hmac_sha256(message), &mut text)
            .expect("44 bytes hold the base64 of 32 bytes");
        debug_assert_eq!(written, 44);
        Signature(text)
    }
}

/// A SAS signature: 44 base64 characters. Its `Debug` never shows them.
pub struct Signature([u8; 44]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(<redacted>)")
    }
}

impl super::encoding::FieldValue for &Signature {
    fn is_empty(&self) -> bool {
        false
    }

    fn push_raw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }

    /// Of the base64 alphabet only `+` and `=` need escaping (`/` is kept). 32 bytes encode to
    /// 43 alphabet characters and one `=`, so only `+` needs looking for.
    fn push_encoded(&self, out: &mut Vec<u8>) {
        let (text, padding) = self.0.split_at(43);
        debug_assert_eq!(padding, b"=");
        for (index, run) in text.split(|&byte| byte == b'+').enumerate() {
            if index > 0 {
                out.extend_from_slice(b"%2B");
            }
            out.extend_from_slice(run);
        }
        out.extend_from_slice(b"%3D");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_signs_like_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe".
        let key = AccountKey::from_base64("SmVmZQ==").unwrap();
        let mac = key.hmac_sha256(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_is_standard_base64_with_padding() {
        use crate::sas::encoding::{FieldValue, into_text};
        let key = AccountKey::from_base64("SmVmZQ==").unwrap();
        let signature = key.signature(b"what do ya want for nothing?");
        let (mut raw, mut encoded) = (Vec::new(), Vec::new());
        (&signature).push_raw(&mut raw);
        (&signature).push_encoded(&mut encoded);
        assert_eq!(
            into_text(raw),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        assert_eq!(
            into_text(encoded),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM%3D"
        );
    }

    #[test]
    fn signature_encoding_matches_the_general_encoder() {
        use crate::sas::encoding::{FieldValue, push_encoded};
        let key = AccountKey::from_base64("SmVmZQ==").unwrap();
        let mut saw_plus = false;
        for message in 0..200u32 {
            let signature = key.signature(&message.to_le_bytes());
            saw_plus |= signature.0.contains(&b'+');
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            (&signature).push_encoded(&mut fast);
            push_encoded(&mut general, &signature.0);
            assert_eq!(fast, general, "message {message}");
        }
        assert!(saw_plus, "some signature contains '+'");
    }

    #[test]
    fn rejects_non_base64_without_echoing_it() {
        let err = AccountKey::from_base64("not base64 SECRET!").unwrap_err();
        assert_eq!(
            err,
            SasError::KeyNotBase64 {
                which: "account key"
            }
        );
        assert!(!err.to_string().contains("SECRET"));
    }

    #[test]
    fn rejects_an_empty_key() {
        assert!(AccountKey::from_base64("").is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = AccountKey::from_base64("SmVmZQ==").unwrap();
        assert_eq!(format!("{key:?}"), "AccountKey(<redacted>)");
    }
}
