//! nginx as the front door, splitting traffic the way ingress-nginx's canary annotations do: a
//! random per-request weight (`canary-weight`), overridden by the `X-Canary` header
//! (`canary-by-header`: `always` or `never`). Each response says which side answered in
//! `X-Served-By`, so the load generator can count the split.
//!
//! A new split is written, checked with `nginx -t`, and loaded with a graceful reload (SIGHUP):
//! old workers finish their requests, so a weight change drops none.

use std::{
    fmt::Write as _,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use super::supervisor::{Ledger, Supervised, STOP_GRACE};
use crate::project::free_port;

/// The response header that names the side that served a request.
pub const SERVED_BY: &str = "x-served-by";
/// Where nginx answers with the split it has loaded (never proxied).
const SPLIT_STATUS: &str = "/-/split";
/// How long nginx gets to start or to load a new configuration.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Percent of requests for the canary (0 to 100).
    pub canary_weight: u8,
    /// The stable (legacy) service.
    pub stable: SocketAddr,
    /// The canary (Candle) service.
    pub canary: SocketAddr,
}

/// A running nginx in front of both services.
pub struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    listen: SocketAddr,
    generation: u64,
    process: Supervised,
}

impl Nginx {
    /// Starts nginx on a free port of 127.0.0.1 with `split`, its files under `dir`.
    pub fn start(binary: &Path, dir: &Path, split: Split, ledger: &Ledger) -> anyhow::Result<Self> {
        for dir in ["tmp", "logs"].map(|sub| dir.join(sub)) {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut last_error = None;
        // The free port may be taken between finding it and nginx binding it: try again.
        for _ in 0..3 {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let generation = 1;
            let config = dir.join("nginx.conf");
            write_config(&config, &render(dir, listen, &split, generation))?;
            test_config(binary, dir, &config)?;
            let mut command = Command::new(binary);
            command
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("logs/error.log"))
                .arg("-c")
                .arg(&config)
                .args(["-g", "daemon off;"]);
            let process = Supervised::spawn("nginx", command, &dir.join("logs/nginx.out"), ledger)?;
            let mut nginx = Self {
                binary: binary.to_path_buf(),
                dir: dir.to_path_buf(),
                listen,
                generation,
                process,
            };
            match nginx.await_generation(generation) {
                Ok(()) => return Ok(nginx),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
    }

    /// The address clients send requests to.
    pub fn front_door(&self) -> SocketAddr {
        self.listen
    }

    /// The master process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Loads `split` with a graceful reload, after `nginx -t` accepted it; on any error the
    /// running configuration stays as it was.
    pub fn apply(&mut self, split: Split) -> anyhow::Result<()> {
        self.process.ensure_running()?;
        let generation = self.generation + 1;
        let config = self.dir.join("nginx.conf");
        let next = self.dir.join("nginx.conf.next");
        write_config(&next, &render(&self.dir, self.listen, &split, generation))?;
        test_config(&self.binary, &self.dir, &next)?;
        fs::rename(&next, &config).with_context(|| format!("replacing {}", config.display()))?;
        let master = Pid::from_raw(i32::try_from(self.process.pid())?);
        kill(master, Signal::SIGHUP).context("signalling nginx to reload (SIGHUP)")?;
        self.await_generation(generation).with_context(|| {
            format!(
                "nginx did not load the new split; see {}",
                self.dir.join("logs/error.log").display()
            )
        })?;
        self.generation = generation;
        Ok(())
    }

    /// Stops nginx (SIGTERM: a fast shutdown of master and workers).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.process.terminate(STOP_GRACE)
    }

    /// Waits until nginx answers with `generation` of the configuration.
    fn await_generation(&mut self, generation: u64) -> anyhow::Result<()> {
        let url = format!("http://{}{SPLIT_STATUS}", self.listen);
        let expected = format!("generation={generation} ");
        let deadline = Instant::now() + READY_TIMEOUT;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            self.process.ensure_running()?;
            // A fresh connection each time: a kept-alive one may reach an old worker.
            let body = agent
                .get(&url)
                .set("Connection", "close")
                .call()
                .ok()
                .and_then(|response| response.into_string().ok());
            if body.is_some_and(|body| body.starts_with(&expected)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nginx did not serve configuration generation {generation} at {url} within {READY_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `nginx -t` on `config`: a broken file fails here, with nginx's own message.
fn test_config(binary: &Path, dir: &Path, config: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .arg("-c")
        .arg(config)
        .output()
        .with_context(|| format!("running {} -t", binary.display()))?;
    if !output.status.success() {
        bail!(
            "nginx rejected {} (the running configuration is unchanged):\n{}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The whole nginx.conf for `split`; every path is under `dir` so that nginx needs nothing
/// outside it.
pub fn render(dir: &Path, listen: SocketAddr, split: &Split, generation: u64) -> String {
    let dir = dir.display();
    let weight = split.canary_weight.min(100);
    let mut by_weight = String::new();
    match weight {
        0 => by_weight.push_str("        *    stable;\n"),
        100 => by_weight.push_str("        *    canary;\n"),
        w => {
            let _ = write!(by_weight, "        {w}%  canary;\n        *    stable;\n");
        }
    }
    format!(
        r#"# Written by `cargo xtask rollout` (local target); generation {generation}.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    # Idle upstream connections are closed by nginx before a backend could close them under a
    # request being sent.
    upstream stable {{
        server {stable};
        keepalive 64;
        keepalive_timeout 20s;
    }}
    upstream canary {{
        server {canary};
        keepalive 64;
        keepalive_timeout 20s;
    }}

    # ingress-nginx `canary-weight`: a random side per request.
    split_clients "${{request_id}}" $canary_by_weight {{
{by_weight}    }}

    # ingress-nginx `canary-by-header`: `always` and `never` win over the weight.
    map $http_x_canary $rollout_backend {{
        always  canary;
        never   stable;
        default $canary_by_weight;
    }}

    server {{
        listen {listen};
        keepalive_requests 1000000;

        location = {SPLIT_STATUS} {{
            default_type text/plain;
            return 200 "generation={generation} canary_weight={weight}\n";
        }}

        location / {{
            proxy_pass http://$rollout_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $request_id;
            # A failing canary must show as failures, not be retried on the other side.
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            add_header X-Served-By $rollout_backend always;
        }}
    }}
}}
"#,
        stable = split.stable,
        canary = split.canary,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weight: u8) -> Split {
        Split {
            canary_weight: weight,
            stable: "127.0.0.1:8001".parse().expect("address"),
            canary: "127.0.0.1:8002".parse().expect("address"),
        }
    }

    fn render_for(weight: u8) -> String {
        render(
            Path::new("/w"),
            "127.0.0.1:9000".parse().expect("address"),
            &split(weight),
            7,
        )
    }

    #[test]
    fn weight_becomes_a_split_clients_share_of_canary() {
        let config = render_for(10);
        assert!(
            config.contains("10%  canary;\n        *    stable;"),
            "{config}"
        );
        assert!(config.contains("generation=7 canary_weight=10"), "{config}");
    }

    #[test]
    fn zero_and_full_weights_send_everything_to_one_side() {
        let zero = render_for(0);
        assert!(zero.contains("$canary_by_weight {\n        *    stable;\n    }"));
        assert!(!zero.contains("%  canary"));
        let full = render_for(100);
        assert!(full.contains("$canary_by_weight {\n        *    canary;\n    }"));
    }

    #[test]
    fn header_wins_over_the_weight_and_failures_are_not_retried() {
        let config = render_for(50);
        assert!(config.contains("always  canary;"));
        assert!(config.contains("never   stable;"));
        assert!(config.contains("default $canary_by_weight;"));
        assert!(config.contains("proxy_next_upstream off;"));
        assert!(config.contains("add_header X-Served-By $rollout_backend always;"));
        assert!(config.contains("server 127.0.0.1:8002;"));
    }

    #[test]
    fn every_path_is_inside_the_work_folder() {
        let config = render_for(1);
        for line in config
            .lines()
            .filter(|l| l.contains('/') && l.trim_end().ends_with(';'))
        {
            let line = line.trim();
            let is_path_directive = ["pid ", "error_log ", "client_body_temp_path", "_temp_path"]
                .iter()
                .any(|d| line.starts_with(d) || line.contains(d));
            if is_path_directive {
                assert!(line.contains(" /w/"), "{line}");
            }
        }
    }
}
