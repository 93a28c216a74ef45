//! A real OCI registry on 127.0.0.1: Debian's `docker-registry` (the CNCF distribution
//! registry), anonymous or behind an htpasswd file, storing under a folder of the caller's,
//! stopped on drop. Pushes to it
//! go over plain HTTP (a loopback registry); `helm pull` and `podman pull --tls-verify=false`
//! read it back. Self-contained, so that integration tests can include it.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// A running registry.
pub struct LocalRegistry {
    child: Child,
    host: String,
}

impl LocalRegistry {
    /// Starts `binary` (`docker-registry`) on a free loopback port, storing under `storage`
    /// (created if missing; a registry started again on the same folder serves what was
    /// pushed before), with basic auth from `htpasswd` (bcrypt entries) if given, and waits
    /// until it answers.
    pub fn start(
        binary: &Path,
        storage: &Path,
        htpasswd: Option<&Path>,
    ) -> anyhow::Result<LocalRegistry> {
        std::fs::create_dir_all(storage)
            .with_context(|| format!("creating {}", storage.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = storage.join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.join("data").display()
        );
        if let Some(file) = htpasswd {
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: akidb\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, text)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let registry = LocalRegistry { child, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // 200 anonymous, 401 behind auth: either way it is serving.
            match ureq::get(&format!("http://{}/v2/", registry.host)).call() {
                Ok(_) | Err(ureq::Error::Status(401, _)) => return Ok(registry),
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("the registry at {} did not start: {e}", registry.host)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
