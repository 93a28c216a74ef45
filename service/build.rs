//! Generates the gRPC code from `proto/` (with a vendored `protoc`, so no system package is
//! needed) and records the source revision for `--version` and `akidb_build_info`.

use std::{path::PathBuf, process::Command};

/// Output of `git ARGS` run in this package's folder, trimmed; `None` when git is missing, the
/// folder is not in a checkout, or the command fails.
fn git(args: &[&str]) -> Option<String> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest_dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

/// A path git names (`--git-path`), made absolute against this package's folder.
fn git_path(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(&["rev-parse", "--git-path", name])?);
    if path.is_absolute() {
        return Some(path);
    }
    Some(PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?).join(path))
}

/// Asks cargo to rerun this script when the checked-out commit changes: `HEAD` (a new branch or
/// a detached commit), the branch's own ref (a commit), and `packed-refs`. These resolve
/// through `--git-path`, so linked worktrees (where `.git` is a file) work too. Only existing
/// paths are named: cargo reruns on every build for a path that does not exist.
fn watch_revision() {
    let mut watched: Vec<PathBuf> = Vec::new();
    watched.extend(git_path("HEAD"));
    watched.extend(git_path("packed-refs"));
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git_path(&reference) {
            if path.exists() {
                watched.push(path);
            } else if let Some(parent) = path.parent() {
                // A packed ref becomes a loose file on the next commit: watch its folder.
                watched.push(parent.to_path_buf());
            }
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `AKIDB_REVISION` wins (image builds have no `.git`); else the checkout's short commit id;
    // else `unknown`.
    let revision = std::env::var("AKIDB_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    println!(
        "cargo:rustc-env=AKIDB_REVISION={}",
        revision.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=AKIDB_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    watch_revision();

    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("embedding_descriptor.bin"))
        .compile_protos(&["proto/akidb/embedding/v1/embedding.proto"], &["proto"])?;
    Ok(())
}
