//! `capstan render`: print the desired set.

use std::process::ExitCode;

use capstan_engine::destination::Destination;
use capstan_engine::render::Scopes;
use clap::Args;
use serde_json::{Value, json};

use crate::args::{ClusterArgs, Format, SourceArgs};

/// Print the desired set a source renders to (no cluster needed).
#[derive(Debug, Args)]
pub struct RenderCommand {
    #[command(flatten)]
    source: SourceArgs,
    /// Namespace given to namespaced objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Use this cluster's discovery to know which kinds are namespaced and what Helm's
    /// `.Capabilities` say, and read `--values-from` from it.
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "yaml")]
    output: Format,
}

pub async fn run(args: RenderCommand) -> anyhow::Result<ExitCode> {
    let (scopes, cluster) = if args.cluster.kubeconfig.is_some() || args.cluster.context.is_some() {
        let client = crate::kube::client(&args.cluster).await?;
        let dest = Destination::new(client, &args.namespace);
        let from = crate::source::from_cluster(&dest, &args.source.render).await?;
        (dest.scopes().await?, Some(from))
    } else {
        (Scopes::builtin(), None)
    };
    let checkout = crate::source::checkout(&args.source, None).await?;
    let desired = crate::source::render(
        &checkout,
        &args.source.render,
        &args.namespace,
        &scopes,
        cluster.as_ref(),
    )
    .await?;
    match args.output {
        Format::Json => {
            let items: Vec<&Value> = desired.iter().map(|d| &d.object).collect();
            crate::print::json(&json!({"apiVersion": "v1", "kind": "List", "items": items}));
        }
        _ => {
            for d in &desired {
                crate::print::out(&format!(
                    "---\n# Source: {}\n{}",
                    d.origin,
                    capstan_engine::diff::to_yaml(&d.object)
                ));
            }
        }
    }
    eprintln!(
        "rendered {} objects from {}",
        desired.len(),
        checkout.describe()
    );
    Ok(ExitCode::SUCCESS)
}
