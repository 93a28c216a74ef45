//! The project's Python environment (`.venv`): the ONNX conversion, the legacy stand-in and the
//! peers and clients the end-to-end tests drive. Installed from PyPI with pinned versions.

use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::project;

/// Pinned requirements of the environment.
const REQUIREMENTS: &str = "tests/requirements.txt";

/// Path of the environment's interpreter, after making sure the environment is installed and
/// matches the requirements file (reinstalled when the file changes).
pub fn ensure(sh: &Shell) -> anyhow::Result<PathBuf> {
    let root = project::root();
    let venv = root.join(".venv");
    let python = venv.join("bin").join("python");
    let requirements = root.join(REQUIREMENTS);
    let wanted = hex::encode(Sha256::digest(
        std::fs::read(&requirements).with_context(|| format!("reading {REQUIREMENTS}"))?,
    ));
    let stamp = venv.join(".requirements.sha256");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    println!("xtask: installing the Python environment (.venv) from {REQUIREMENTS}");
    if !python.exists() {
        cmd!(sh, "python3 -m venv {venv}")
            .run()
            .context("python3 -m venv (Debian: apt-get install python3-venv)")?;
    }
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check -r {requirements}"
    )
    .run()
    .context("pip install of the test requirements")?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}
