//! Programs that come from Debian's packages (nginx, Prometheus, promtool, amtool, podman...):
//! found on PATH, or installed with apt-get when missing. Installs happen one at a time across
//! the whole process, together with the pinned downloads of `tools`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

/// Finds each `(program, package)`'s program, installing the packages of the missing ones in
/// one apt-get run. Returns the programs' paths in the order asked.
pub fn ensure_programs(wanted: &[(&str, &str)]) -> anyhow::Result<Vec<PathBuf>> {
    let _one_at_a_time = super::installing();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        println!("xtask: installing {} with apt-get", missing.join(" "));
        install(&missing)?;
    }
    wanted
        .iter()
        .map(|(program, package)| {
            which(program).with_context(|| {
                format!(
                    "{program} is still not on PATH (or in /usr/sbin, /usr/bin) after installing \
                     {package}"
                )
            })
        })
        .collect()
}

/// Finds the program `name`, installing the Debian `package` that provides it when it is
/// missing (promtool from `prometheus`, amtool from `prometheus-alertmanager`).
pub fn ensure_program(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    Ok(ensure_programs(&[(name, package)])?.remove(0))
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
pub fn which(name: &str) -> Option<PathBuf> {
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
