//! `cargo xtask release dist`: builds a target's cargo-dist archive (the release workflow's
//! `dist` job), then checks that it holds the `akidb-embed` binary and that its `.sha256`
//! matches.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::{project, tools};

/// The binary the archives ship.
const BINARY: &str = "akidb-embed";

/// The archive and checksum it checked.
pub struct Checked {
    /// `target/distrib/akidb-embed-TARGET.tar.xz`.
    pub archive: PathBuf,
    /// Its sha256.
    pub sha256: String,
}

/// The flags of every release build: glibc linked in, so that the archive runs on any Linux
/// of its architecture and the image needs nothing from its empty base.
pub const RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// The cargo profile of every release build (`[profile.dist]` in Cargo.toml, which cargo-dist
/// builds with).
pub const PROFILE: &str = "dist";

/// Builds the release binary of `target` as cargo-dist does (same profile, flags and target
/// folder, so either build finds the other's output fresh) and returns its path.
pub fn binary(sh: &Shell, target: &str) -> anyhow::Result<PathBuf> {
    cmd!(
        sh,
        "cargo build --profile {PROFILE} --locked -p akidb-embed --bin {BINARY} --target {target}"
    )
    .env("RUSTFLAGS", RUSTFLAGS)
    .run()?;
    Ok(target_dir(sh)?.join(target).join(PROFILE).join(BINARY))
}

/// Builds and checks the archive of `target` (default: the host's).
pub fn run(sh: &Shell, target: Option<&str>) -> anyhow::Result<Checked> {
    let dist = tools::dist(sh)?;
    let target = match target {
        Some(target) => target.to_owned(),
        None => host_target(sh)?,
    };
    cmd!(sh, "{dist} build --artifacts=local --target {target}")
        .env("RUSTFLAGS", RUSTFLAGS)
        .run()
        .context("dist build")?;
    let checked = check(sh, &target_dir(sh)?.join("distrib"), &target)?;
    println!(
        "release dist: {} holds {BINARY} and matches its .sha256 ({})",
        checked.archive.display(),
        checked.sha256
    );
    Ok(checked)
}

/// Cargo's target folder (where dist writes `distrib/`), honouring `CARGO_TARGET_DIR`.
fn target_dir(sh: &Shell) -> anyhow::Result<PathBuf> {
    let root = project::root();
    let manifest = root.join("Cargo.toml");
    let metadata = cmd!(
        sh,
        "cargo metadata --format-version 1 --no-deps --manifest-path {manifest}"
    )
    .quiet()
    .read()?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata).context("cargo metadata")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

/// The host's target triple, from rustc.
pub fn host_target(sh: &Shell) -> anyhow::Result<String> {
    let version = cmd!(sh, "rustc -vV").quiet().read()?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// The sha256 of `archive`, once it matches the `ARCHIVE.sha256` beside it (as cargo-dist writes
/// it and `sha256sum --check` reads it).
pub fn checksum_matches(archive: &Path) -> anyhow::Result<String> {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", archive.display()))?;
    let bytes = std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    let sums = archive.with_file_name(format!("{name}.sha256"));
    let written =
        std::fs::read_to_string(&sums).with_context(|| format!("reading {}", sums.display()))?;
    // `HASH *NAME` or `HASH  NAME`, as sha256sum writes and checks.
    let mut fields = written.split_whitespace();
    let (Some(expected), Some(file)) = (fields.next(), fields.next()) else {
        bail!("{}: not a sha256sum line: {written:?}", sums.display());
    };
    if file.trim_start_matches('*') != name {
        bail!("{} names {file}, not {name}", sums.display());
    }
    if !expected.eq_ignore_ascii_case(&actual) {
        bail!(
            "{} says {expected}, but the archive's sha256 is {actual}",
            sums.display()
        );
    }
    Ok(actual)
}

/// Checks `akidb-embed-TARGET.tar.xz` in `distrib` against its `.sha256` and its contents.
pub fn check(sh: &Shell, distrib: &Path, target: &str) -> anyhow::Result<Checked> {
    let name = format!("{BINARY}-{target}.tar.xz");
    let archive = distrib.join(&name);
    let actual = checksum_matches(&archive)?;
    let listing = cmd!(sh, "tar -tJf {archive}").quiet().read()?;
    let member = format!("{BINARY}-{target}/{BINARY}");
    if !listing.lines().any(|line| line == member) {
        bail!("{name} has no {member}; it holds:\n{listing}");
    }
    Ok(Checked {
        archive,
        sha256: actual,
    })
}
