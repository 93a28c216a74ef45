//! The programs the local stack runs but does not build: nginx (the traffic split) and
//! Prometheus (the measurements), from Debian.

use std::path::PathBuf;

/// Where the programs are.
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
        let found = crate::tools::debian::ensure_programs(&[
            ("nginx", "nginx-light"),
            ("prometheus", "prometheus"),
        ])?;
        Ok(Self {
            nginx: found[0].clone(),
            prometheus: found[1].clone(),
        })
    }
}
