//! Where the project is on disk, and the shell every task runs in.

use std::path::{Path, PathBuf};

use xshell::Shell;

/// The workspace root (the folder above `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The reference vectors kept in the repository (`tests/golden/`, provenance in its README).
#[cfg(test)]
pub fn golden_dir() -> PathBuf {
    root().join("tests").join("golden")
}

/// A shell whose working directory is the workspace root.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}
