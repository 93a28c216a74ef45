//! The programs the local target runs but does not build: nginx (the traffic split) and
//! Prometheus (the measurements), installed from Debian when missing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use anyhow::{bail, Context};

/// The Debian packages that provide the tools.
const PACKAGES: &[&str] = &["nginx-light", "prometheus"];

static INSTALLING: Mutex<()> = Mutex::new(());

/// Where the tools are.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The nginx binary.
    pub nginx: PathBuf,
    /// The Prometheus server binary.
    pub prometheus: PathBuf,
}

impl Tools {
    /// Finds nginx and Prometheus, installing them with apt-get when either is missing.
    pub fn ensure() -> anyhow::Result<Self> {
        // Targets started at once (parallel tests) install once.
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tools) = Self::find() {
            return Ok(tools);
        }
        println!(
            "local: nginx or prometheus missing; installing {} with apt-get",
            PACKAGES.join(" ")
        );
        install(PACKAGES)?;
        Self::find().context(
            "nginx and prometheus are still not on PATH (or in /usr/sbin, /usr/bin) after \
             apt-get install",
        )
    }

    fn find() -> Option<Self> {
        Some(Self {
            nginx: which("nginx")?,
            prometheus: which("prometheus")?,
        })
    }
}

/// Finds the program `name`, installing the Debian `package` that provides it when it is
/// missing (promtool from `prometheus`, amtool from `prometheus-alertmanager`).
pub fn ensure_program(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = which(name) {
        return Ok(path);
    }
    println!("{name} missing; installing {package} with apt-get");
    install(&[package])?;
    which(name).with_context(|| {
        format!(
            "{name} is still not on PATH (or in /usr/sbin, /usr/bin) after installing {package}"
        )
    })
}

fn install(packages: &[&str]) -> anyhow::Result<()> {
    apt_get(&["update"], packages)?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt_get(&install, packages)
}

fn apt_get(args: &[&str], packages: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        // Wait for another apt or dpkg to finish rather than fail on its lock.
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| {
            format!(
                "running apt-get to install {} from Debian (elsewhere install them yourself)",
                packages.join(" ")
            )
        })?;
    if !status.success() {
        bail!(
            "apt-get {} failed ({status}); it needs root: install {} yourself",
            args.join(" "),
            packages.join(" ")
        );
    }
    Ok(())
}

/// The first `name` on PATH, or in the sbin folders a non-root PATH lacks.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
