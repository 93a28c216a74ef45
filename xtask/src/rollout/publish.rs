//! The release actions of the plan's `ga_tag`, `helm_push` and `image_push` steps. They touch
//! the same systems whatever the target (git and GitHub through octocrab, OCI registries through
//! oci-client), and only when a run is asked to publish (`--publish`): a rehearsal of the plan
//! on the local target must not tag the repository or push a release.

use std::path::PathBuf;

use anyhow::Context;

use super::{
    plan::step::{GaTag, HelmPush, ImagePush, Step},
    targets::Outcome,
};
use crate::oci::{image_in_registry, push_chart, push_image_to, PushOptions};

/// Names the container image to push, as an OCI archive or image layout folder
/// (`podman save --format oci-archive`, `docker buildx build --output type=oci`).
pub const IMAGE_ARCHIVE_ENV: &str = "AKIDB_IMAGE_ARCHIVE";

/// Whether `step` publishes (a tag and release, a chart, an image): what needs credentials.
pub fn publishes(step: &Step) -> bool {
    matches!(
        step,
        Step::GaTag(_) | Step::HelmPush(_) | Step::ImagePush(_)
    )
}

/// Why a step was skipped when the run does not publish.
fn not_publishing(what: String) -> Outcome {
    Outcome::Skipped(format!(
        "{what}: this run does not publish (pass --publish; the rollout workflow does)"
    ))
}

fn shell() -> anyhow::Result<xshell::Shell> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(crate::project::root());
    Ok(sh)
}

/// Creates the annotated tag and its GitHub release (idempotent).
pub fn ga_tag(step: &GaTag, publish: bool) -> anyhow::Result<Outcome> {
    if !publish {
        return Ok(not_publishing(format!("tag {}", step.tag)));
    }
    let summary = crate::release::ga_tag_step(&shell()?, &step.tag, step.message.as_deref())
        .with_context(|| format!("ga_tag {}", step.tag))?;
    Ok(Outcome::Done(summary))
}

/// Packages the chart and pushes it to the step's OCI registry.
pub fn helm_push(step: &HelmPush, publish: bool) -> anyhow::Result<Outcome> {
    if !publish {
        return Ok(not_publishing(format!(
            "chart {} to {}",
            step.chart, step.registry
        )));
    }
    let chart = crate::project::root().join(&step.chart);
    let pushed = push_chart(&shell()?, &chart, &step.registry, &PushOptions::from_env()?)
        .with_context(|| format!("helm_push {} to {}", step.chart, step.registry))?;
    Ok(Outcome::Done(format!("pushed {pushed}")))
}

/// Pushes the image named by [`IMAGE_ARCHIVE_ENV`] as the step's image.
pub fn image_push(step: &ImagePush, publish: bool) -> anyhow::Result<Outcome> {
    if !publish {
        return Ok(not_publishing(format!(
            "image {} to {}",
            step.image, step.registry
        )));
    }
    let archive = std::env::var_os(IMAGE_ARCHIVE_ENV)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "image_push {}: set {IMAGE_ARCHIVE_ENV} to the image as an OCI archive \
                 (podman save --format oci-archive IMAGE -o FILE), then resume",
                step.image
            )
        })?;
    let target = image_in_registry(&step.registry, &step.image)?;
    let pushed = push_image_to(&archive, &target, &PushOptions::from_env()?)
        .with_context(|| format!("image_push {} from {}", step.image, archive.display()))?;
    Ok(Outcome::Done(format!("pushed {pushed}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_published_unless_asked() {
        let tag = GaTag {
            tag: "v9.9.9".into(),
            message: None,
        };
        let chart = HelmPush {
            chart: "charts/akidb-candle".into(),
            registry: "oci://127.0.0.1:1/charts".into(),
        };
        let image = ImagePush {
            image: "akidb/embedding:v9.9.9".into(),
            registry: "127.0.0.1:1".into(),
        };
        for outcome in [
            ga_tag(&tag, false).unwrap(),
            helm_push(&chart, false).unwrap(),
            image_push(&image, false).unwrap(),
        ] {
            match outcome {
                Outcome::Skipped(why) => assert!(why.contains("--publish"), "{why}"),
                other => panic!("published without --publish: {other:?}"),
            }
        }
    }

    #[test]
    fn an_image_push_without_its_archive_says_what_to_set() {
        if std::env::var_os(IMAGE_ARCHIVE_ENV).is_some() {
            return;
        }
        let image = ImagePush {
            image: "akidb/embedding:v9.9.9".into(),
            registry: "127.0.0.1:1".into(),
        };
        let err = format!("{:#}", image_push(&image, true).unwrap_err());
        assert!(err.contains(IMAGE_ARCHIVE_ENV), "{err}");
    }
}
