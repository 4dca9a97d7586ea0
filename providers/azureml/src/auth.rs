//! Entra ID credentials: which `azure_identity` credential a target's `credential` names.
//!
//! | `credential` | azure_identity | needs |
//! |---|---|---|
//! | `clientSecret` | `ClientSecretCredential` | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` |
//! | `workloadIdentity` | `WorkloadIdentityCredential` | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE` |
//! | `managedIdentity` | `ManagedIdentityCredential` | the host's identity (`AZURE_CLIENT_ID` picks a user-assigned one) |
//! | `cli` | `AzureCliCredential` | a signed-in `az` |
//! | `auto` (default) | the first of the above whose variable is set: `AZURE_CLIENT_SECRET`, `AZURE_FEDERATED_TOKEN_FILE`, `IDENTITY_ENDPOINT`; else `cli` | |
//!
//! The target's `authorityHost` reaches the first two through `ClientOptions.cloud` (a
//! custom cloud); a managed identity and the CLI get their tokens from the host and `az`,
//! which know their cloud themselves.
//!
//! # Architecture Invariant
//! No secret leaves this module: errors name the variables that are missing, never a value,
//! and the credentials' own caches hold the tokens (refreshed before they expire), so a
//! token is asked for on every call and never stored by mlctl.

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, ProviderError};
use mlctl_spec::{AzureCredential, AzureEmulator, AzuremlTarget};
use std::path::PathBuf;
use std::sync::Arc;

/// The token the fake ARM server accepts: not a secret (the fake checks only that one is sent).
pub(crate) const EMULATOR_TOKEN: &str = "mlctl-fake-arm";

/// The credential kinds `auto` chooses between, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
    Cli,
    /// `emulator: fake-arm` without a `credential`: [`EMULATOR_TOKEN`].
    Emulator,
}

impl Chosen {
    /// The target's word for it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Chosen::ClientSecret => "clientSecret",
            Chosen::WorkloadIdentity => "workloadIdentity",
            Chosen::ManagedIdentity => "managedIdentity",
            Chosen::Cli => "cli",
            Chosen::Emulator => "the fake ARM server's fixed token",
        }
    }
}

/// Which credential a target gets with the environment `env` (a variable set to an empty
/// string counts as unset, as azure_identity reads it).
pub(crate) fn choose(target: &AzuremlTarget, env: &dyn Fn(&str) -> Option<String>) -> Chosen {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    match target.credential {
        None if target.emulator == Some(AzureEmulator::FakeArm) => Chosen::Emulator,
        Some(AzureCredential::ClientSecret) => Chosen::ClientSecret,
        Some(AzureCredential::WorkloadIdentity) => Chosen::WorkloadIdentity,
        Some(AzureCredential::ManagedIdentity) => Chosen::ManagedIdentity,
        Some(AzureCredential::Cli) => Chosen::Cli,
        None | Some(AzureCredential::Auto) => {
            if set("AZURE_CLIENT_SECRET") {
                Chosen::ClientSecret
            } else if set("AZURE_FEDERATED_TOKEN_FILE") {
                Chosen::WorkloadIdentity
            } else if set("IDENTITY_ENDPOINT") {
                Chosen::ManagedIdentity
            } else {
                Chosen::Cli
            }
        }
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The credential of a target, from the process environment.
///
/// # Errors
/// `PermissionDenied` naming the variables a chosen credential needs and lacks;
/// `Invalid` for an `authorityHost` that is not an https URL.
pub(crate) fn credential(target: &AzuremlTarget) -> Result<Arc<dyn TokenCredential>> {
    credential_with(target, &process_env)
}

/// [`credential`] with the environment `env`.
pub(crate) fn credential_with(
    target: &AzuremlTarget,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenCredential>> {
    let chosen = choose(target, env);
    let client_options = client_options(target.authority_host.as_deref())?;
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let require = |names: &[&str]| -> Result<Vec<String>> {
        let missing: Vec<&str> = names.iter().copied().filter(|n| get(n).is_none()).collect();
        if !missing.is_empty() {
            return Err(missing_vars(chosen, target.credential.is_none(), &missing));
        }
        Ok(names.iter().map(|n| get(n).unwrap_or_default()).collect())
    };
    let built: azure_core::Result<Arc<dyn TokenCredential>> = match chosen {
        Chosen::Emulator => return Ok(Arc::new(EmulatorCredential)),
        Chosen::ClientSecret => {
            let v = require(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"])?;
            ClientSecretCredential::new(
                &v[0],
                v[1].clone(),
                Secret::new(v[2].clone()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        Chosen::WorkloadIdentity => {
            let v = require(&[
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "AZURE_FEDERATED_TOKEN_FILE",
            ])?;
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                tenant_id: Some(v[0].clone()),
                client_id: Some(v[1].clone()),
                token_file_path: Some(PathBuf::from(&v[2])),
            }))
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        Chosen::ManagedIdentity => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: get("AZURE_CLIENT_ID").map(UserAssignedId::ClientId),
                ..Default::default()
            }))
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        // The Azure CLI credential caches nothing: every call would run `az`.
        Chosen::Cli => AzureCliCredential::new(None)
            .map(|c| Arc::new(Cached::new(c)) as Arc<dyn TokenCredential>),
    };
    built.map_err(|e| {
        ProviderError::new(
            ErrorKind::PermissionDenied,
            "azureml",
            "credential",
            format!(
                "cannot set up the `{}` credential: {}",
                chosen.as_str(),
                mlctl_spec::suggest::clip(&e.to_string(), 400)
            ),
        )
    })
}

fn missing_vars(chosen: Chosen, auto: bool, missing: &[&str]) -> ProviderError {
    let list = missing
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let how = if auto {
        " (chosen by `credential: auto` from the variables set)"
    } else {
        ""
    };
    ProviderError::new(
        ErrorKind::PermissionDenied,
        "azureml",
        "credential",
        format!(
            "the `{}` credential{how} needs {list}, which {} not set; set {} in the environment, or choose another `credential` on the target (clientSecret, workloadIdentity, managedIdentity, cli)",
            chosen.as_str(),
            if missing.len() == 1 { "is" } else { "are" },
            if missing.len() == 1 { "it" } else { "them" },
        ),
    )
}

/// `ClientOptions` with the target's `authorityHost` as a custom cloud's.
///
/// # Errors
/// `Invalid` for a host that is not an https URL (azure_identity sends secrets there).
pub(crate) fn client_options(authority_host: Option<&str>) -> Result<ClientOptions> {
    let mut options = ClientOptions::default();
    if let Some(host) = authority_host {
        check_authority_host(host)?;
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_string();
        options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
    }
    Ok(options)
}

/// Refuses an `authorityHost` that is not `https://HOST[...]`.
pub(crate) fn check_authority_host(host: &str) -> Result<()> {
    let ok = host
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if ok {
        return Ok(());
    }
    Err(crate::invalid(
        "credential",
        format!(
            "`authorityHost: {}` is not an https URL; Entra ID tokens are only asked for over https (e.g. `https://login.microsoftonline.us` for Azure Government)",
            mlctl_spec::suggest::clip(host, 200)
        ),
    ))
}

/// A bearer token for `scope`, from the credential's cache or freshly asked for.
///
/// # Errors
/// `PermissionDenied`, saying which credential failed and what to check; never the token.
pub(crate) async fn token(credential: &dyn TokenCredential, scope: &str) -> Result<Secret> {
    match credential.get_token(&[scope], None).await {
        Ok(t) => Ok(t.token),
        Err(e) => Err(ProviderError::new(
            ErrorKind::PermissionDenied,
            "azureml",
            "get token",
            format!(
                "could not get an Entra ID token for `{scope}`: {}; check the target's `credential` (for `cli`, run `az login`; for clientSecret or workloadIdentity, AZURE_TENANT_ID and AZURE_CLIENT_ID)",
                mlctl_spec::suggest::clip(&e.to_string(), 600)
            ),
        )),
    }
}

/// A credential's tokens kept in memory (never on disk) until shortly before they expire,
/// for a credential that caches nothing itself (`AzureCliCredential`).
#[derive(Debug)]
pub(crate) struct Cached {
    inner: Arc<dyn TokenCredential>,
    tokens: tokio::sync::Mutex<std::collections::HashMap<String, AccessToken>>,
}

impl Cached {
    /// A token is asked for again this long before it expires.
    const MARGIN: azure_core::time::Duration = azure_core::time::Duration::minutes(5);

    pub(crate) fn new(inner: Arc<dyn TokenCredential>) -> Cached {
        Cached {
            inner,
            tokens: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for Cached {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let key = scopes.join(" ");
        // Held while asking: concurrent callers wait for one token instead of each running
        // the tool.
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&key)
            && t.expires_on - Self::MARGIN > azure_core::time::OffsetDateTime::now_utc()
        {
            return Ok(t.clone());
        }
        let t = self.inner.get_token(scopes, options).await?;
        tokens.insert(key, t.clone());
        Ok(t)
    }
}

/// The fake ARM server's token (`emulator: fake-arm` without a `credential`).
#[derive(Debug)]
pub(crate) struct EmulatorCredential;

#[async_trait::async_trait]
impl TokenCredential for EmulatorCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            EMULATOR_TOKEN,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}
