//! Building the [`Azure`] context of a stack from a target.
//!
//! Connecting checks the target and sets up the clients; it makes no request. The
//! workspace is read on first use ([`Arm::workspace`]): for its `location` when the target
//! names none (online endpoints and deployments need one), and for its MLflow tracking URI.
//! So `plan` with nothing to ask of Azure works without reaching it, and a wrong
//! `subscription`, `resourceGroup` or `workspace` shows in the first call that needs them,
//! with those fields named.

use crate::Options;
use crate::arm::Arm;
use crate::azure::{Azure, Features, Settings};
use crate::blob::{Blob, BlobAuth};
use mlctl_core::ProviderConfig;
use mlctl_core::error::Result;
use mlctl_spec::{AzuremlTarget, Target};

/// The [`Azure`] context of an azureml target.
///
/// # Errors
/// `Invalid` for a target that is not azureml, or whose fields cannot name a workspace
/// (empty or with `/`), whose `endpointUrl` is not an http(s) URL, whose `authorityHost`
/// is not https, or whose `sas` is empty; `PermissionDenied` when the chosen credential
/// lacks its environment variables.
pub(crate) async fn connect(cfg: &ProviderConfig, options: Options) -> Result<Azure> {
    let Target::Azureml(target) = &cfg.target else {
        return Err(crate::invalid(
            "connect",
            format!(
                "target `{}` is a `{}` target, not `azureml`",
                cfg.target_name,
                cfg.target.provider().as_str()
            ),
        ));
    };
    let target = checked(target)?;
    let settings = options.settings.unwrap_or_else(Settings::from_env);
    let credential = match options.credential {
        Some(c) => c,
        None => crate::auth::credential(&target)?,
    };
    let arm = Arm::new(
        target.endpoint_url.as_deref(),
        &target.subscription,
        &target.resource_group,
        &target.workspace,
        credential.clone(),
        settings.clone(),
    )?
    .with_location(target.location.clone());
    let auth = match &target.sas {
        Some(sas) => BlobAuth::Sas(sas.clone()),
        None => BlobAuth::Token(credential),
    };
    let blob = std::sync::Arc::new(Blob::connect(&target.storage, auth, &settings)?);
    Ok(Azure {
        arm,
        blob,
        features: Features::of(&target),
        target,
        settings,
    })
}

/// The target with its values trimmed, or the first thing wrong with it.
pub(crate) fn checked(target: &AzuremlTarget) -> Result<AzuremlTarget> {
    let mut t = target.clone();
    for (field, value) in [
        ("subscription", &mut t.subscription),
        ("resourceGroup", &mut t.resource_group),
        ("workspace", &mut t.workspace),
        ("storage", &mut t.storage),
    ] {
        *value = value.trim().to_string();
        if value.is_empty() {
            return Err(crate::invalid(
                "connect",
                format!(
                    "the azureml target's `{field}` is empty; {}",
                    match field {
                        "subscription" =>
                            "write the subscription id, e.g. `subscription: ${env:AZURE_SUBSCRIPTION_ID}` (and set that variable)",
                        "resourceGroup" => "write the resource group of the workspace",
                        "workspace" => "write the Azure ML workspace's name",
                        _ =>
                            "write the blob container for mlctl's data, e.g. `storage: https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`",
                    }
                ),
            ));
        }
    }
    if !(t.storage.starts_with("https://") || t.storage.starts_with("http://")) {
        return Err(crate::invalid(
            "connect",
            format!(
                "`storage: {}` is not a blob container URL; write `https://ACCOUNT.blob.core.windows.net/CONTAINER[/prefix]`",
                mlctl_spec::suggest::clip(&t.storage, 200)
            ),
        ));
    }
    if let Some(host) = &t.authority_host {
        crate::auth::check_authority_host(host.trim())?;
    }
    if let Some(sas) = &mut t.sas {
        *sas = sas.trim().trim_start_matches('?').to_string();
        if sas.is_empty() {
            return Err(crate::invalid(
                "connect",
                "the target's `sas` is empty; set the variable it names to a SAS token for the storage container (or remove `sas` to use Entra ID tokens)",
            ));
        }
    }
    for v in [
        &mut t.location,
        &mut t.compute,
        &mut t.endpoint_url,
        &mut t.image,
    ] {
        if let Some(s) = v {
            *s = s.trim().to_string();
        }
        if v.as_deref().is_some_and(str::is_empty) {
            *v = None;
        }
    }
    Ok(t)
}
