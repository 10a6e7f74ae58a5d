//! Building a kube client from `--kubeconfig` / `--context`, as kubectl does.

use anyhow::Context;

use crate::args::ClusterArgs;

static COMPONENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Name the part of Capstan making requests (the subcommand), for the User-Agent
/// `capstan/VERSION (COMPONENT)`.
pub fn set_component(name: &str) {
    let _ = COMPONENT.set(name.to_string());
}

/// A client for the cluster the flags (or $KUBECONFIG, or ~/.kube/config) name.
pub async fn client(args: &ClusterArgs) -> anyhow::Result<kube::Client> {
    Ok(kube::client::ClientBuilder::try_from(config(args).await?)
        .context("creating the Kubernetes client")?
        .with_layer(&capstan_engine::retry::RetryTransientLayer)
        .build())
}

/// [`client`] counting every request in the controller's `metrics`
/// (`capstan_kube_requests_total`).
pub async fn counted_client(
    args: &ClusterArgs,
    metrics: &capstan_controller::metrics::Metrics,
) -> anyhow::Result<kube::Client> {
    capstan_controller::metrics::kube::counted_client(config(args).await?, metrics)
        .context("creating the Kubernetes client")
}

/// The client configuration the flags name, with Capstan's User-Agent.
async fn config(args: &ClusterArgs) -> anyhow::Result<kube::Config> {
    let opts = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&opts)
            .await
            .context("loading the kubeconfig ($KUBECONFIG or ~/.kube/config); pass --kubeconfig")?,
        // $KUBECONFIG, ~/.kube/config, or — inside a pod — the service account.
        None => kube::Config::infer().await.context(
            "loading the kubeconfig ($KUBECONFIG or ~/.kube/config) or the in-cluster service account; pass --kubeconfig",
        )?,
    };
    let mut config = config;
    let agent = format!(
        "capstan/{} ({})",
        env!("CARGO_PKG_VERSION"),
        COMPONENT.get().map(String::as_str).unwrap_or("capstan")
    );
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    Ok(config)
}
