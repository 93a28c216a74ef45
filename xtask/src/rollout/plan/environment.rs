//! The GitHub environments a plan's stages wait in: who must approve, whether the person who
//! started the run may approve it, and which branches may deploy. `cargo xtask workflows
//! environments` makes GitHub match; the runner refuses a stage whose environment GitHub does not
//! protect as the plan says.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer};

/// One environment as the plan wants it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Who may approve (any one of them suffices, as on GitHub). Empty: the stage needs no
    /// approval, and the environment only scopes its secrets and variables.
    pub reviewers: Vec<Reviewer>,
    /// Whether the person who started the run is refused as its reviewer.
    #[serde(default = "yes")]
    pub prevent_self_review: bool,
    /// The branches (GitHub's name patterns) allowed to deploy to it; empty: any branch.
    #[serde(default)]
    pub branches: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Environment {
    /// Whether a stage in this environment waits for someone's approval.
    pub fn needs_approval(&self) -> bool {
        !self.reviewers.is_empty()
    }
}

/// A required reviewer: `user:<login>` or `team:<slug>` (a team of the repository's
/// organisation).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reviewer {
    /// A GitHub account.
    User(String),
    /// A team of the repository's organisation, by slug.
    Team(String),
}

impl fmt::Display for Reviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reviewer::User(login) => write!(f, "user:{login}"),
            Reviewer::Team(slug) => write!(f, "team:{slug}"),
        }
    }
}

impl FromStr for Reviewer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, name) = text
            .split_once(':')
            .ok_or_else(|| format!("reviewer `{text}` is not `user:<login>` or `team:<slug>`"))?;
        // GitHub logins and team slugs: letters, digits and hyphens (slugs also `_` and `.`).
        let fine = !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !fine {
            return Err(format!("reviewer `{text}`: `{name}` is not a GitHub name"));
        }
        match kind {
            "user" => Ok(Reviewer::User(name.to_owned())),
            "team" => Ok(Reviewer::Team(name.to_owned())),
            _ => Err(format!(
                "reviewer `{text}` is not `user:<login>` or `team:<slug>`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Reviewer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_are_users_or_teams_with_github_names() {
        assert_eq!(
            "team:release-managers".parse(),
            Ok(Reviewer::Team("release-managers".into()))
        );
        assert_eq!(
            "user:octo-cat".parse(),
            Ok(Reviewer::User("octo-cat".into()))
        );
        for bad in [
            "release-managers",
            "group:x",
            "user:",
            "user:a b",
            "team:-x",
        ] {
            assert!(bad.parse::<Reviewer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_environment_without_reviewers_needs_no_approval_and_refuses_self_review_by_default() {
        let env: Environment = serde_yaml_ng::from_str("reviewers: []").unwrap();
        assert!(!env.needs_approval());
        assert!(env.prevent_self_review);
        let env: Environment =
            serde_yaml_ng::from_str("reviewers: [team:sre]\nbranches: [main]").unwrap();
        assert!(env.needs_approval());
        assert_eq!(env.branches, ["main"]);
        assert!(serde_yaml_ng::from_str::<Environment>("reviewers: [sre]").is_err());
    }
}
