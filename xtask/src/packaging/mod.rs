//! Kubernetes delivery: the Helm chart (`charts/akidb-candle`), the plain canary Ingress
//! manifests kept in sync with it (`rollout/k8s/`) and the container image
//! (`service/Dockerfile`), each checked with the real tools the project installs itself.
//! It does not talk to a cluster.

pub mod helm;
pub mod image;
pub mod manifests;
pub mod resources;
pub mod validate;

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use xshell::Shell;

use crate::{project, tools};
use helm::{Chart, Values};

/// `cargo xtask chart`.
#[derive(clap::Args)]
pub struct ChartArgs {
    #[command(subcommand)]
    command: ChartCommand,
}

#[derive(clap::Subcommand)]
enum ChartCommand {
    /// helm lint, helm template at every rollout weight, Kubernetes schemas, checkov, the
    /// values schema's refusals, the plain manifests' sync and hadolint.
    Check,
    /// Compare rollout/k8s/ with the chart, or regenerate it with --write.
    Manifests {
        /// Rewrite the files from the chart instead of comparing.
        #[arg(long)]
        write: bool,
    },
}

/// Runs `cargo xtask chart ...`.
pub fn run(sh: &Shell, args: ChartArgs) -> anyhow::Result<()> {
    match args.command {
        ChartCommand::Check => check(sh),
        ChartCommand::Manifests { write: false } => {
            manifests::check(&chart(sh)?, &project::root())?;
            println!("rollout/k8s/ matches the chart");
            Ok(())
        }
        ChartCommand::Manifests { write: true } => {
            for path in manifests::write(&chart(sh)?, &project::root())? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

fn chart(sh: &Shell) -> anyhow::Result<Chart> {
    Ok(Chart::new(tools::helm(sh)?, &project::root()))
}

/// The values every rollout stage renders with, and the chart's other switches.
pub fn rendered_values() -> Vec<Values> {
    let mut values = vec![Values::new("default", &[])];
    values.extend(
        manifests::CANARY_INGRESSES
            .iter()
            .map(|(weight, _)| manifests::canary_values(*weight)),
    );
    values.push(Values::new("primary-ingress", &["canary.enabled=false"]));
    values.push(Values::new(
        "everything-on",
        &[
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "models.source=emptyDir",
            "models.init.image=ghcr.io/akidb/models:v2.0.0",
            "apiKeys.existingSecret=akidb-api-keys",
            "ingress.tlsSecretName=akidb-tls",
            "image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    ));
    values.push(Values::new(
        "models-in-image",
        &["models.source=image", "autoscaling.enabled=false"],
    ));
    values
}

/// Values the schema must refuse, and a fragment of helm's message for each.
pub const REFUSED_VALUES: &[(&str, &str)] = &[
    ("canary.weight=-1", "canary.weight"),
    ("canary.weight=101", "canary.weight"),
    ("canary.wieght=5", "wieght"),
    ("replicas=3", "replicas"),
    ("resources.limits.memory=4GB", "resources.limits.memory"),
    ("models.source=s3", "models.source"),
];

fn timed(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    let result = f().with_context(|| format!("chart check `{name}` failed"));
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!(
        "{verdict:>6}  {name} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    result
}

/// Every container of every rendering has a memory limit no larger than the plan's
/// `slos.memory_per_pod`.
fn memory_within_plan(chart: &Chart) -> anyhow::Result<()> {
    let plan = crate::rollout::load::load(&project::plan_path())?;
    let Some(budget) = plan.slos.memory_per_pod else {
        return Ok(());
    };
    for values in rendered_values() {
        for (container, limit) in resources::memory_limits(&chart.objects(&values)?) {
            let limit = limit.with_context(|| {
                format!(
                    "container {container} ({}) has no memory limit",
                    values.name
                )
            })?;
            let bytes = resources::quantity_bytes(&limit)
                .with_context(|| format!("memory limit {limit:?} is not a quantity"))?;
            anyhow::ensure!(
                bytes <= budget.as_u64(),
                "container {container} ({}) may use {limit}, above the plan's memory_per_pod {budget}",
                values.name
            );
        }
    }
    Ok(())
}

/// Every chart and Dockerfile check; stops at the first failure.
pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let root = project::root();
    let out = root.join("target").join("chart");
    // Only this run's renders: checkov scans the whole folder.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut helm = None;
    timed("install helm", || {
        helm = Some(tools::helm(sh)?);
        Ok(())
    })?;
    let chart = Chart::new(helm.context("helm")?, &root);
    let mut validator = None;
    let mut hadolint = None;
    let mut checkov = None;
    timed("install kubernetes-validate, hadolint, checkov", || {
        validator = Some(tools::python_tool(sh, "kubernetes-validate")?);
        hadolint = Some(tools::python_tool(sh, "hadolint")?);
        checkov = Some(tools::checkov(sh)?);
        Ok(())
    })?;
    let (validator, hadolint, checkov) = (
        validator.context("kubernetes-validate")?,
        hadolint.context("hadolint")?,
        checkov.context("checkov")?,
    );

    timed("helm lint --strict", || {
        chart.lint(&Values::new("default", &[]))?;
        Ok(())
    })?;
    let mut rendered: Vec<PathBuf> = Vec::new();
    for values in rendered_values() {
        timed(&format!("helm template ({})", values.name), || {
            let path = out.join(format!("{}.yaml", values.name));
            std::fs::write(&path, chart.template(&values)?)?;
            rendered.push(path);
            Ok(())
        })?;
    }
    timed(
        &format!("kubernetes-validate --strict ({})", helm::KUBE_VERSION),
        || validate::kubernetes(sh, &validator, &rendered),
    )?;
    timed("checkov", || validate::policies(sh, &checkov, &out))?;
    timed("values schema refuses bad values", || {
        for (set, fragment) in REFUSED_VALUES {
            match chart.template(&Values::new("refused", &[set])) {
                Ok(_) => anyhow::bail!("helm template accepted --set {set}"),
                Err(helm::ChartError::Helm { stderr, .. }) if stderr.contains(fragment) => {}
                Err(other) => {
                    anyhow::bail!("--set {set} failed without naming {fragment:?}: {other}")
                }
            }
        }
        Ok(())
    })?;
    timed("memory limits within the plan's memory_per_pod", || {
        memory_within_plan(&chart)
    })?;
    timed("rollout/k8s/ matches the chart", || {
        manifests::check(&chart, &root)?;
        Ok(())
    })?;
    timed("hadolint", || image::lint(sh, &hadolint))?;
    Ok(())
}
