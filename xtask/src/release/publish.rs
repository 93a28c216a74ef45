//! `cargo xtask release publish`: the GitHub release of a tag with its assets. Every cargo-dist
//! archive of a folder is checked against its `.sha256`, a `sha256.sum` of them all is written,
//! and the archives, their checksums and the sum are attached through octocrab; an asset of the
//! same name is replaced, so a rerun converges. The release itself is the one `ga_tag` made, or
//! a new one with the release notes as its body.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::github::{
    releases::{NewRelease, Outcome, Releases},
    Repository,
};

/// What to publish, and where.
pub struct Publish {
    /// The tag whose release it is, e.g. v2.0.0.
    pub tag: String,
    /// The folder of the archives (`target/distrib`).
    pub assets: PathBuf,
    /// The release body (RELEASE_NOTES.md).
    pub notes: PathBuf,
    /// `owner/name`.
    pub repository: Repository,
    /// GitHub's API.
    pub api_url: String,
    /// A token with `contents: write`.
    pub token: String,
}

/// The archives of `dir` (`*.tar.xz`, `*.zip`), each checked against its `.sha256`, in name
/// order, with their sha256.
pub fn checked_archives(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".tar.xz") || name.ends_with(".zip")
        })
        .collect();
    archives.sort();
    anyhow::ensure!(
        !archives.is_empty(),
        "no archives (*.tar.xz, *.zip) in {}: build them with `dist build`",
        dir.display()
    );
    archives
        .into_iter()
        .map(|archive| {
            let sha256 = super::dist::checksum_matches(&archive)?;
            Ok((archive, sha256))
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks, writes `sha256.sum`, and publishes; returns a line per thing done. Nothing is sent
/// to GitHub unless every archive matches its checksum.
pub fn run(publish: &Publish) -> anyhow::Result<Vec<String>> {
    let archives = checked_archives(&publish.assets)?;
    let sum: String = archives
        .iter()
        .map(|(archive, sha256)| format!("{sha256}  {}\n", file_name(archive)))
        .collect();
    let sum_file = publish.assets.join("sha256.sum");
    std::fs::write(&sum_file, &sum).with_context(|| format!("writing {}", sum_file.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for (archive, _) in &archives {
        files.push(archive.clone());
        files.push(archive.with_file_name(format!("{}.sha256", file_name(archive))));
    }
    files.push(sum_file);
    let body = std::fs::read_to_string(&publish.notes)
        .with_context(|| format!("reading {}", publish.notes.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let releases = Releases::new(
            &publish.api_url,
            publish.repository.clone(),
            publish.token.clone(),
        )?;
        let (release, outcome) = releases
            .ensure(&NewRelease {
                tag: &publish.tag,
                commit: &publish.tag,
                name: &publish.tag,
                body: &body,
            })
            .await?;
        let mut lines = vec![format!(
            "release {} of {}: {}",
            publish.tag,
            publish.repository,
            match outcome {
                Outcome::Created => "created",
                Outcome::Existing => "exists",
            }
        )];
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let size = bytes.len();
            releases.upload(&release, &file_name(file), bytes).await?;
            lines.push(format!("attached {} ({size} bytes)", file_name(file)));
        }
        Ok(lines)
    })
}
