//! Files the project generates from its sources, and the one drift check for all of them:
//! `.github/workflows/rollout.yml` from the plan (`cargo xtask workflows`), the monitoring
//! files from the plan and the alert catalogue (`cargo xtask monitoring`), and `rollout/k8s/`
//! from the chart (`cargo xtask chart manifests --write`). A stale file is reported with its
//! unified diff (committed → generated) and the command that regenerates it; `rollout run` and
//! `resume` refuse to act while the plan's outputs are stale.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use similar::TextDiff;

/// A generated file: where it lives and what it must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedFile {
    /// The path, relative to the workspace root (or absolute).
    pub path: PathBuf,
    /// The whole contents.
    pub contents: String,
}

/// Why generated files could not be checked or written.
#[derive(Debug, thiserror::Error)]
pub enum GeneratedError {
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Committed files differ from what their sources generate.
    #[error("{0}")]
    Stale(Stale),
}

/// Committed files that differ from what their sources generate.
#[derive(Debug)]
pub struct Stale {
    /// Each stale file.
    pub files: Vec<StaleFile>,
    /// The command that regenerates them.
    pub command: String,
}

/// One stale file.
#[derive(Debug)]
pub struct StaleFile {
    /// The path as given.
    pub path: PathBuf,
    /// The unified diff, committed → generated; `None` when the file is missing.
    pub diff: Option<String>,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self
            .files
            .iter()
            .map(|file| file.path.display().to_string())
            .collect();
        let verb = if paths.len() == 1 {
            "differs"
        } else {
            "differ"
        };
        writeln!(
            f,
            "{} {verb} from what the sources generate: run `{}` and commit the result",
            paths.join(", "),
            self.command
        )?;
        for file in &self.files {
            match &file.diff {
                Some(diff) => write!(f, "{diff}")?,
                None => writeln!(f, "{} is missing", file.path.display())?,
            }
        }
        Ok(())
    }
}

/// Fails with each stale file's diff and `command` when a file under `root` is not what
/// `files` say.
pub fn check(root: &Path, files: &[GeneratedFile], command: &str) -> Result<(), GeneratedError> {
    let mut stale = Vec::new();
    for file in files {
        let committed = match std::fs::read_to_string(root.join(&file.path)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                stale.push(StaleFile {
                    path: file.path.clone(),
                    diff: None,
                });
                continue;
            }
            Err(source) => {
                return Err(GeneratedError::Io {
                    path: file.path.clone(),
                    source,
                })
            }
        };
        if committed != file.contents {
            let shown = file.path.display().to_string();
            let diff = TextDiff::from_lines(committed.as_str(), file.contents.as_str())
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{shown} (committed)"),
                    &format!("{shown} (generated)"),
                )
                .to_string();
            stale.push(StaleFile {
                path: file.path.clone(),
                diff: Some(diff),
            });
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(GeneratedError::Stale(Stale {
            files: stale,
            command: command.to_owned(),
        }))
    }
}

/// Writes each of `files` under `root` whose contents differ, creating folders; returns the
/// paths written.
pub fn write(root: &Path, files: &[GeneratedFile]) -> Result<Vec<PathBuf>, GeneratedError> {
    let mut written = Vec::new();
    for file in files {
        let path = root.join(&file.path);
        let io = |source| GeneratedError::Io {
            path: file.path.clone(),
            source,
        };
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.contents.as_str()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &file.contents).map_err(io)?;
        written.push(file.path.clone());
    }
    Ok(written)
}

/// The files generated from the plan at `plan` (the rollout workflow and the monitoring
/// files) are current; `rollout run` and `resume` call this before they act on the project's
/// own plan.
pub fn plan_outputs_current(plan: &Path) -> anyhow::Result<()> {
    let root = crate::project::root();
    let workflow = crate::workflows::generated_rollout(plan)?;
    check(&root, &[workflow], "cargo xtask workflows")?;
    let (monitoring, _) = crate::monitoring::generate_for(plan)?;
    check(&root, &monitoring, "cargo xtask monitoring")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> GeneratedFile {
        GeneratedFile {
            path: path.into(),
            contents: contents.into(),
        }
    }

    #[test]
    fn a_changed_file_is_reported_with_its_diff_and_the_command_and_a_missing_one_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1\ny: 2\n").unwrap();
        let files = [file("a.yaml", "x: 1\ny: 3\n"), file("b/c.json", "{}\n")];
        let error = check(dir.path(), &files, "cargo xtask regenerate").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("a.yaml, b/c.json differ from what the sources generate"),
            "{text}"
        );
        assert!(text.contains("run `cargo xtask regenerate`"), "{text}");
        assert!(text.contains("-y: 2\n+y: 3\n"), "{text}");
        assert!(text.contains("b/c.json is missing"), "{text}");

        assert_eq!(write(dir.path(), &files).unwrap().len(), 2);
        check(dir.path(), &files, "cargo xtask regenerate").unwrap();
        assert!(
            write(dir.path(), &files).unwrap().is_empty(),
            "nothing to rewrite"
        );
    }

    #[test]
    fn the_project_plans_outputs_are_current_and_a_changed_plan_makes_them_stale() {
        let plan = crate::project::plan_path();
        plan_outputs_current(&plan).unwrap();
        let text = std::fs::read_to_string(&plan).unwrap();
        let changed = text.replacen(
            "name: \"Ramp to 10%: early adopters\"",
            "name: \"Ramp to 10%: first adopters\"",
            1,
        );
        assert_ne!(changed, text, "the plan names its week-3 stage so");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("plan.yaml");
        std::fs::write(&copy, changed).unwrap();
        let error = format!("{:#}", plan_outputs_current(&copy).unwrap_err());
        assert!(error.contains("rollout.yml differs"), "{error}");
        assert!(
            error.contains("+    name: 'week-3: Ramp to 10%: first adopters'"),
            "{error}"
        );
        assert!(error.contains("run `cargo xtask workflows`"), "{error}");
    }
}
