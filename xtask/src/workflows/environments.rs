//! `cargo xtask workflows environments [--apply]`: the GitHub environments the plan's stages
//! wait in, compared with how the repository protects them (required reviewers, self-review,
//! deployment branches); `--apply` creates or updates each that differs.

use std::path::PathBuf;

use anyhow::Context;

use crate::github::{
    self,
    environments::{self, Protection},
    Repository,
};
use crate::rollout::plan::Plan;

/// Flags of `cargo xtask workflows environments`.
#[derive(Debug, clap::Args)]
pub struct EnvironmentsArgs {
    /// Create or update the environments that differ (needs a token that administers the
    /// repository); without it, print the differences and fail when there are any.
    #[arg(long)]
    apply: bool,
    /// The repository, `owner/name`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    repository: String,
    /// GitHub's API.
    #[arg(long, value_name = "URL", env = "GITHUB_API_URL", default_value = github::DEFAULT_API_URL)]
    api_url: String,
    /// The rollout plan [default: rollout/plan.yaml in the workspace]
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
}

/// Runs `cargo xtask workflows environments`.
pub fn run(args: &EnvironmentsArgs) -> anyhow::Result<()> {
    let path = args.plan.clone().unwrap_or_else(crate::project::plan_path);
    let plan = crate::rollout::load::load(&path)?;
    let repository: Repository = args.repository.parse()?;
    let token = std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .context("GITHUB_TOKEN is not set: reading environments needs a token of the repository")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let client = github::client(&args.api_url, token)?;
        reconcile(&client, &repository, &plan, args.apply).await
    })?;
    for line in &report.lines {
        println!("{line}");
    }
    anyhow::ensure!(
        args.apply || report.differing == 0,
        "{} of the plan's environments differ on GitHub: run `cargo xtask workflows environments \
         --apply` with a token that administers {repository}",
        report.differing
    );
    Ok(())
}

/// What a comparison found.
#[derive(Debug, Default)]
struct Report {
    /// One line per environment, then one per difference.
    lines: Vec<String>,
    /// How many environments differed (before `--apply`).
    differing: usize,
}

async fn reconcile(
    client: &octocrab::Octocrab,
    repository: &Repository,
    plan: &Plan,
    apply: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for name in plan.environment_names() {
        let Some(declared) = plan.environments.get(name) else {
            report.differing += 1;
            report.lines.push(format!(
                "{name}: not declared under `environments` in the plan, so nothing says who \
                 approves it (declare it to compare and apply)"
            ));
            continue;
        };
        let wanted = Protection::wanted(declared);
        let current = environments::read(client, repository, name).await?;
        let differences = match &current {
            None => vec!["missing on GitHub".to_owned()],
            Some(current) => current.differences(&wanted),
        };
        if differences.is_empty() {
            report.lines.push(format!("{name}: as the plan says"));
            continue;
        }
        report.differing += 1;
        report.lines.push(format!("{name}:"));
        report
            .lines
            .extend(differences.iter().map(|d| format!("  {d}")));
        if apply {
            environments::apply(client, repository, name, &wanted).await?;
            let verb = if current.is_none() {
                "created"
            } else {
                "updated"
            };
            report.lines.push(format!("  {verb} on GitHub"));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::fake::FakeGitHub;

    fn checked_in_plan() -> Plan {
        crate::rollout::load::load(&crate::project::plan_path()).expect("rollout/plan.yaml")
    }

    #[test]
    fn prints_each_difference_then_apply_makes_every_environment_match() {
        let fake = FakeGitHub::start();
        let repository: Repository = "akidb/akidb".parse().unwrap();
        let plan = checked_in_plan();
        fake.put_environment("canary-1", &[], false, &[]);
        fake.put_environment(
            "production",
            &["release-managers", "sre-oncall"],
            true,
            &["main"],
        );
        let reconcile_with = |apply| {
            fake.block_on(async {
                let client = github::client(&fake.url(), FakeGitHub::TOKEN.into()).unwrap();
                reconcile(&client, &repository, &plan, apply).await.unwrap()
            })
        };
        let before = reconcile_with(false);
        assert!(!fake.requests().iter().any(|r| !r.starts_with("GET ")));
        let applied = reconcile_with(true);
        let after = reconcile_with(false);
        let text = before.lines.join("\n");
        assert_eq!(before.differing, 3, "{text}");
        assert!(text.contains("production: as the plan says"), "{text}");
        assert!(
            text.contains(
                "required reviewers: GitHub has none, the plan wants team:release-managers"
            ),
            "{text}"
        );
        assert!(text.contains("canary-10:\n  missing on GitHub"), "{text}");
        assert_eq!(applied.differing, 3);
        assert_eq!(after.differing, 0, "{}", after.lines.join("\n"));
    }
}
