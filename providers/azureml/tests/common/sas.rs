//! Signs SAS tokens for Azurite with its public, well-known account key, since the official
//! `azure_storage_blob` has no shared-key signing (azure-sdk-for-rust issue 2975).
//!
//! An account SAS (service `b`, resource types service, container and object) as documented in
//! "Create an account SAS" for versions 2020-12-06 and later: HMAC-SHA256, keyed with the
//! base64-decoded account key, over
//! `account\npermissions\nservices\nresourcetypes\nstart\nexpiry\nip\nprotocol\nversion\nencryptionscope\n`.
//! Azurite checks the signature: a token signed with another key is refused with 403.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Azurite's account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's account key: public, the same in every Azurite (and the old storage emulator).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const VERSION: &str = "2021-08-06";

/// An account SAS for `account` signed with `key`, allowing read, write, delete, list, add
/// and create on the blob service's containers and blobs until 2099.
pub fn account_sas(account: &str, key: &str) -> String {
    let (permissions, services, types, expiry, protocol) =
        ("rwdlac", "b", "sco", "2099-01-01T00:00:00Z", "https,http");
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocol}\n{VERSION}\n\n"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("the account key is base64");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "sv={VERSION}&ss={services}&srt={types}&sp={permissions}&se={}&spr={}&sig={}",
        encode(expiry),
        encode(protocol),
        encode(&sig)
    )
}

/// Azurite's account SAS.
pub fn azurite_sas() -> String {
    account_sas(ACCOUNT, KEY)
}

/// The signature of a SAS (the `sig` value, URL-encoded as in the token).
pub fn signature(sas: &str) -> &str {
    sas.split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .unwrap_or_default()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
