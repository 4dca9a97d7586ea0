//! Blob Storage: the target's `storage` container, through `azure_storage_blob`.
//!
//! INTERFACE STUB: the `blob` helper replaces the bodies; the signatures are what the other
//! modules call. Names are relative to the target's prefix unless a method says otherwise.

use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, ProviderError};
use std::path::Path;

/// The target's container (and prefix), authorised by an Entra ID token or a SAS.
pub struct Blob {
    _private: (),
}

/// How blob requests are authorised.
pub enum BlobAuth {
    /// The target's `sas` (resolved from `${env:...}`), without a leading `?`.
    Sas(String),
    /// Entra ID tokens for `https://storage.azure.com/.default` from this credential.
    Token(std::sync::Arc<dyn azure_core::credentials::TokenCredential>),
}

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the SAS itself.
        f.write_str(match self {
            BlobAuth::Sas(_) => "BlobAuth::Sas(..)",
            BlobAuth::Token(_) => "BlobAuth::Token(..)",
        })
    }
}

fn stub(op: &str) -> ProviderError {
    ProviderError::new(ErrorKind::NotSupported, "azureml", op, "not built yet")
}

impl Blob {
    /// The client of the target's `storage` (`https://ACCOUNT.HOST/CONTAINER[/prefix]`).
    /// (Added by the `arm` helper for `connect`; the `blob` helper owns the body.)
    pub fn connect(
        storage_url: &str,
        auth: BlobAuth,
        settings: &crate::azure::Settings,
    ) -> Result<Blob> {
        let _ = (storage_url, auth, settings);
        Ok(Blob { _private: () })
    }

    /// The blob name (as [`Blob::key`] gives) of an https URL inside the target's container,
    /// such as a model version's `modelUri`; `None` for a URL elsewhere. (Added by the `arm`
    /// helper for the registry; the `blob` helper owns the body.)
    pub fn key_of_url(&self, url: &str) -> Option<String> {
        let _ = url;
        None
    }

    /// The name of `rel` under the target's prefix.
    pub fn key(&self, rel: &str) -> String {
        rel.to_string()
    }

    /// The https URL of a blob (a data asset's, a job input's or output's `uri`), without
    /// any SAS.
    pub fn url(&self, key: &str) -> String {
        key.to_string()
    }

    /// The bytes of a blob; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let _ = key;
        Err(stub("get blob"))
    }

    /// Writes a blob (replacing it), in blocks when large.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        let _ = (key, bytes, content_type);
        Err(stub("put blob"))
    }

    /// Uploads a file, in blocks when large.
    pub async fn upload_file(&self, path: &Path, key: &str, content_type: &str) -> Result<()> {
        let _ = (path, key, content_type);
        Err(stub("upload blob"))
    }

    /// Whether a blob exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let _ = key;
        Err(stub("blob properties"))
    }

    /// Deletes a blob; a missing one succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let _ = key;
        Err(stub("delete blob"))
    }

    /// The names of the blobs under a prefix, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let _ = prefix;
        Err(stub("list blobs"))
    }

    /// Uploads every file under `dir` to the container a SAS URL names (`startPendingUpload`
    /// gives one for code), keeping relative paths under the URL's path.
    pub async fn upload_dir_to_sas(sas_url: &str, dir: &Path) -> Result<()> {
        let _ = (sas_url, dir);
        Err(stub("upload code"))
    }
}
