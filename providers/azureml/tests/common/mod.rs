//! Helpers shared by the azureml provider's integration tests.
//!
//! `sas`: SAS tokens for Azurite; [`container`]: a container of a test's own. The fake ARM
//! server's harness is `fake.rs` (included with `#[path]` where it is used).

#![allow(dead_code)]

pub mod sas;

/// A container of its own for `test` (created with the SAS: resource type `c`).
pub async fn container(url: &str, test: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let tag = blake3::hash(format!("{test}-{stamp}-{}", std::process::id()).as_bytes()).to_hex();
    let name: String = format!("t-{}", test.replace('_', "-"))
        .chars()
        .take(50)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
        + "-"
        + &tag[..8];
    let res = reqwest::Client::new()
        .put(format!(
            "{url}/{name}?restype=container&{}",
            sas::azurite_sas()
        ))
        .header("x-ms-version", "2021-08-06")
        .header("content-length", "0")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("MLCTL_AZURITE_URL={url} is set but Azurite does not answer: {e}")
        });
    assert_eq!(
        res.status().as_u16(),
        201,
        "creating container {name}: {}",
        res.text().await.unwrap_or_default()
    );
    name
}
