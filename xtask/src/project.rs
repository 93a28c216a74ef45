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

/// The legacy deployment's name, in the plan, the chart and the alerts.
pub const LEGACY_DEPLOYMENT: &str = "akidb-mlx";
/// The Candle deployment's name, in the plan, the chart and the alerts.
pub const CANARY_DEPLOYMENT: &str = "akidb-candle";

/// The rollout plan every command reads unless told otherwise.
pub fn plan_path() -> PathBuf {
    root().join("rollout").join("plan.yaml")
}

/// The git user of this machine (`git config user.name`), when one is set.
pub fn git_user() -> Option<String> {
    std::process::Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picks it), for a server a test or a
/// command starts.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A shell whose working directory is the workspace root.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}
