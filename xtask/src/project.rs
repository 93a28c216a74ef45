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

/// The read-only folder shared beside the repository (golden vectors, the legacy contract).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("AKIDB_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared"))
}

/// A shell whose working directory is the workspace root.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}
