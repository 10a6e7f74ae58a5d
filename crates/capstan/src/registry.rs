//! From registry flags to the engine's registry client.

use anyhow::Context;
use capstan_engine::images::registry::{Credentials, RegistryClient, ScanOptions, registry_host};

use crate::args::RegistryArgs;

/// Every tag of `image`, with the credentials the flags give.
pub async fn tags(image: &str, args: &RegistryArgs) -> anyhow::Result<Vec<String>> {
    let creds = match (
        &args.docker_config,
        &args.registry_username,
        &args.registry_password,
    ) {
        (Some(file), _, _) => {
            let json = std::fs::read(file)
                .with_context(|| format!("reading the Docker config {}", file.display()))?;
            Credentials::from_docker_config(&json, &registry_host(image)?)
                .with_context(|| format!("the Docker config {}", file.display()))?
        }
        (None, user, Some(password)) => Some(Credentials::new(
            user.clone().unwrap_or_default(),
            password.clone(),
        )),
        (None, Some(_), None) => anyhow::bail!(
            "--registry-username needs a password or token (CAPSTAN_REGISTRY_PASSWORD)"
        ),
        (None, None, None) => None,
    };
    let client = RegistryClient::new(ScanOptions {
        insecure: args.insecure,
        ..Default::default()
    })?;
    Ok(client.tags(image, creds.as_ref()).await?)
}
