//! Names the systems downstream must accept: GitHub (environment names), Kubernetes (Deployment names, RFC 1123), semantic versioning (the release tag, which is
//! also the workspace's version) and OCI registries (where images and charts are pushed).

use super::{Checker, ValidationError};
use crate::oci::{image_in_registry, ChartRegistry};
use crate::rollout::plan::spec::{PlanSpec, StepSpec};

/// The version the workspace builds (`[workspace.package] version`), which xtask shares.
const WORKSPACE_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Checker<'_> {
    /// Every name of the plan that leaves it.
    pub(super) fn names(&mut self, plan: &PlanSpec) {
        for (at, stage) in plan.stages.iter().enumerate() {
            if let Some(name) = &stage.environment {
                if let Err(reason) = environment_name(name) {
                    let error = ValidationError::EnvironmentName {
                        stage: stage.id.clone(),
                        name: name.clone(),
                        reason,
                    };
                    self.report(&format!("stages.{at}.environment"), error);
                }
            }
            for (n, step) in stage.steps.iter().enumerate() {
                let path = format!("stages.{at}.steps.{n}.{}", step.kind());
                self.step_names(&path, &stage.id, step);
            }
        }
    }

    fn step_names(&mut self, path: &str, stage: &str, step: &StepSpec) {
        let kind = step.kind();
        let (deployment, oci) = match step {
            StepSpec::Scale(scale) => (Some(&scale.deployment), None),
            StepSpec::MlxTeardown(teardown) => (Some(&teardown.deployment), None),
            StepSpec::GaTag(tag) => {
                if let Err(error) = release_tag(stage, &tag.tag) {
                    self.report(&format!("{path}.tag"), error);
                }
                (None, None)
            }
            StepSpec::ImagePush(push) => (
                None,
                image_in_registry(&push.registry, &push.image)
                    .err()
                    .map(|e| ("image", e.to_string())),
            ),
            StepSpec::HelmPush(push) => (
                None,
                ChartRegistry::parse(&push.registry)
                    .err()
                    .map(|e| ("registry", e.to_string())),
            ),
            _ => (None, None),
        };
        if let Some(name) = deployment.filter(|name| !name.trim().is_empty()) {
            if let Err(reason) = kubernetes_name(name) {
                let error = ValidationError::KubernetesName {
                    stage: stage.to_owned(),
                    step: kind,
                    name: name.clone(),
                    reason,
                };
                self.report(&format!("{path}.deployment"), error);
            }
        }
        if let Some((field, reason)) = oci {
            let error = ValidationError::OciReference {
                stage: stage.to_owned(),
                step: kind,
                reason,
            };
            self.report(&format!("{path}.{field}"), error);
        }
    }
}

/// A GitHub environment name: at most 255 characters, no surrounding whitespace, and the
/// characters GitHub's API and its workflow syntax take unquoted.
fn environment_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.chars().count() > 255 {
        Err("it is longer than 255 characters")
    } else if name.trim() != name {
        Err("it starts or ends with whitespace")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c))
    {
        Err("use letters, digits, spaces, `-`, `_` and `.` only")
    } else {
        Ok(())
    }
}

/// An RFC 1123 DNS subdomain, as the API requires of a Deployment's name: at most 253
/// characters, labels of at most 63 separated by `.`, each of lowercase letters, digits and `-`
/// that starts and ends with a letter or digit.
fn kubernetes_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.len() > 63 {
            return Err("a label (between dots) is longer than 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("only lowercase letters, digits, `-` and `.` are allowed");
        }
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !alnum(label.chars().next()) || !alnum(label.chars().last()) {
            return Err("each label must start and end with a letter or digit");
        }
    }
    Ok(())
}

/// `v` + a semantic version equal to the workspace's (build metadata aside, which semver
/// ignores for precedence).
fn release_tag(stage: &str, tag: &str) -> Result<(), ValidationError> {
    let not_semver = |reason: String| ValidationError::TagNotSemver {
        stage: stage.to_owned(),
        tag: tag.to_owned(),
        reason,
    };
    let version = tag
        .strip_prefix('v')
        .ok_or_else(|| not_semver("it does not start with `v`".to_owned()))?;
    let version = semver::Version::parse(version).map_err(|e| not_semver(e.to_string()))?;
    let workspace =
        semver::Version::parse(WORKSPACE_VERSION).map_err(|e| not_semver(e.to_string()))?;
    if version.cmp_precedence(&workspace).is_ne() {
        return Err(ValidationError::TagNotWorkspaceVersion {
            stage: stage.to_owned(),
            tag: tag.to_owned(),
            version: WORKSPACE_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::ValidationError;
    use super::WORKSPACE_VERSION;

    fn with_environment(name: &str) -> String {
        base_with(&[(
            "environment: canary-50",
            &format!("environment: \"{name}\""),
        )])
    }

    #[test]
    fn rejects_environment_names_github_refuses() {
        for (name, reason) in [
            (" canary-50", "it starts or ends with whitespace"),
            ("canary-50 ", "it starts or ends with whitespace"),
            (
                "canary/50",
                "use letters, digits, spaces, `-`, `_` and `.` only",
            ),
            (
                "canary:50",
                "use letters, digits, spaces, `-`, `_` and `.` only",
            ),
            (&"e".repeat(256), "it is longer than 255 characters"),
        ] {
            let text = with_environment(name);
            let (line, error) = the_violation_in(&text);
            assert_eq!(line, line_of(&text, "environment: \""));
            assert_eq!(
                error,
                ValidationError::EnvironmentName {
                    stage: "half".into(),
                    name: name.into(),
                    reason,
                }
            );
        }
        load_ok(&with_environment("Canary 50_percent.v2"));
        load_ok(&with_environment(&"e".repeat(255)));
    }

    #[test]
    fn rejects_deployment_names_kubernetes_refuses() {
        for (name, reason) in [
            (
                "Akidb-MLX",
                "only lowercase letters, digits, `-` and `.` are allowed",
            ),
            (
                "akidb_mlx",
                "only lowercase letters, digits, `-` and `.` are allowed",
            ),
            (
                "-akidb",
                "each label must start and end with a letter or digit",
            ),
            (
                "akidb.",
                "each label must start and end with a letter or digit",
            ),
            (
                &"a".repeat(64),
                "a label (between dots) is longer than 63 characters",
            ),
        ] {
            let step = format!("- scale: {{deployment: \"{name}\", replicas: 1}}");
            let text = base_with(&[("#FULL", &step)]);
            let (line, error) = the_violation_in(&text);
            assert_eq!(line, line_of(&text, "- scale"));
            assert_eq!(
                error,
                ValidationError::KubernetesName {
                    stage: "full".into(),
                    step: "scale",
                    name: name.into(),
                    reason,
                }
            );
        }
        load_ok(&base_with(&[(
            "#FULL",
            "- scale: {deployment: akidb-mlx.v1, replicas: 1}",
        )]));
    }

    fn with_tag(tag: &str) -> String {
        base_with(&[(
            "#FULL",
            &format!("- ga_tag: {{tag: \"{tag}\", message: GA}}"),
        )])
    }

    #[test]
    fn rejects_a_release_tag_that_is_not_v_and_a_semantic_version() {
        for tag in [
            WORKSPACE_VERSION.to_owned(),
            "v2.0".to_owned(),
            "v02.0.0".to_owned(),
            "release-2".to_owned(),
        ] {
            let text = with_tag(&tag);
            let (line, error) = the_violation_in(&text);
            assert_eq!(line, line_of(&text, "- ga_tag"));
            assert!(
                matches!(error, ValidationError::TagNotSemver { tag: ref t, .. } if *t == tag),
                "{tag}: {error:?}"
            );
        }
        load_ok(&with_tag(&format!("v{WORKSPACE_VERSION}")));
        load_ok(&with_tag(&format!("v{WORKSPACE_VERSION}+build.7")));
    }

    #[test]
    fn rejects_a_release_tag_for_another_version_than_the_workspace() {
        let text = with_tag("v0.0.1-rc.1");
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "- ga_tag"));
        assert_eq!(
            error,
            ValidationError::TagNotWorkspaceVersion {
                stage: "full".into(),
                tag: "v0.0.1-rc.1".into(),
                version: WORKSPACE_VERSION,
            }
        );
    }

    #[test]
    fn rejects_oci_references_no_registry_takes() {
        for (step, field) in [
            (
                "- image_push: {image: akidb/embedding, registry: ghcr.io}",
                "image",
            ),
            (
                "- image_push: {image: akidb/embedding:v2.0.0, registry: ghcr}",
                "image",
            ),
            (
                "- helm_push: {chart: charts/akidb-candle, registry: https://ghcr.io/akidb}",
                "registry",
            ),
        ] {
            let text = base_with(&[("#FULL", step)]);
            let (line, error) = the_violation_in(&text);
            assert_eq!(line, line_of(&text, step), "{step}");
            assert!(
                matches!(error, ValidationError::OciReference { .. }),
                "{step} ({field}): {error:?}"
            );
        }
        load_ok(&base_with(&[(
            "#FULL",
            "- image_push: {image: akidb/embedding:v2.0.0, registry: ghcr.io}\n      \
             - helm_push: {chart: charts/akidb-candle, registry: oci://ghcr.io/akidb/charts}",
        )]));
    }

    fn load_ok(text: &str) {
        if let Err(error) = crate::rollout::load::parse(text, std::path::Path::new("plan.yaml")) {
            panic!("{error}");
        }
    }
}
