//! A deliberately small, independent Azure Storage signer for the harness's own checks: an
//! account SAS in the sv=2019-12-12 layout (no `ses` line). The product's signer is tested
//! against the SDK oracles; this one only has to get a request past Azurite.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// Signed version of [`account_sas`].
pub const ACCOUNT_SAS_VERSION: &str = "2019-12-12";

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// base64(HMAC-SHA256(base64decode(key), message)).
pub fn hmac_sha256_base64(key_base64: &str, message: &str) -> String {
    let key = STANDARD.decode(key_base64).expect("account key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// An account SAS query string (no leading `?`) valid from 5 minutes ago for an hour, over
/// HTTP or HTTPS. `services` like "bqt", `resource_types` like "sco", `permissions` like "rwdlac".
pub fn account_sas(
    account: &str,
    key_base64: &str,
    services: &str,
    resource_types: &str,
    permissions: &str,
) -> String {
    let now = jiff::Timestamp::now();
    let format = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let start = format(now - jiff::SignedDuration::from_secs(300));
    let expiry = format(now + jiff::SignedDuration::from_secs(3600));
    let protocol = "https,http";
    let string_to_sign = format!(
        "{account}\n{permissions}\n{services}\n{resource_types}\n{start}\n{expiry}\n\n{protocol}\n{ACCOUNT_SAS_VERSION}\n"
    );
    let signature = hmac_sha256_base64(key_base64, &string_to_sign);
    let encode = |v: &str| utf8_percent_encode(v, QUERY_VALUE).to_string();
    format!(
        "sv={ACCOUNT_SAS_VERSION}&ss={services}&srt={resource_types}&sp={permissions}&st={}&se={}&spr={}&sig={}",
        encode(&start),
        encode(&expiry),
        encode(protocol),
        encode(&signature)
    )
}
