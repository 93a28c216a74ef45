//! The container image (`service/Dockerfile`): hadolint, a build and run with podman, and the
//! image's OCI archive for a release (docker buildx where it is installed, else podman).
//!
//! No base image can be pulled here, so the local build replaces the Dockerfile's `build`
//! stage with a folder holding the static binary built on this machine as the release archives
//! build it (`release::dist::binary`, `--build-context build=DIR`); every other line of the
//! Dockerfile is the one users build.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use super::helm::{self, Chart, Values};
use crate::{project, tools};

/// The Dockerfile users build.
pub const DOCKERFILE: &str = "service/Dockerfile";
/// The tag of the locally built image.
const LOCAL_TAG: &str = "localhost/akidb-embed:ci";
/// The container's name while it runs.
const CONTAINER: &str = "akidb-embed-ci";
/// The Rust target of the static binary on this machine.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The image platform podman builds here.
const PLATFORM: &str = "linux/amd64";
/// How long models may take to load and warm up in the container.
const READY_WITHIN: Duration = Duration::from_secs(180);

/// Lints the Dockerfile with hadolint.
pub fn lint(sh: &Shell, hadolint: &Path) -> anyhow::Result<()> {
    let dockerfile = project::root().join(DOCKERFILE);
    cmd!(sh, "{hadolint} {dockerfile}").run()?;
    Ok(())
}

/// Removes the test container however the test ends.
struct Running<'a> {
    sh: &'a Shell,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let sh = self.sh;
        let _ = cmd!(sh, "podman rm --force --time 0 {CONTAINER}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
    }
}

/// The chart's rendered `config.toml`, so the container runs with what the pods would read.
fn chart_config(sh: &Shell) -> anyhow::Result<String> {
    let chart = Chart::new(tools::helm(sh)?, &project::root());
    let objects = chart.objects(&Values::new("default", &[]))?;
    objects
        .iter()
        .filter(|object| helm::kind(object) == "ConfigMap")
        .find_map(|object| object.get("data")?.get("config.toml")?.as_str())
        .map(str::to_string)
        .context("the chart renders no ConfigMap with config.toml")
}

/// Options of `cargo xtask container`.
#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    command: Option<ContainerCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum ContainerCommand {
    /// Build the image with podman, run it and call it (the default).
    Test,
    /// Build the image into an OCI archive, what `cargo xtask oci push-image --archive` pushes:
    /// with docker buildx for every platform where buildx is installed (GitHub's runners),
    /// else with podman for this machine's platform only, saying so.
    Archive {
        /// Where to write the archive.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The platforms to build (buildx).
        #[arg(long, value_delimiter = ',', default_value = "linux/amd64,linux/arm64")]
        platform: Vec<String>,
    },
}

/// Runs `cargo xtask container`.
pub fn run(sh: &Shell, args: ContainerArgs) -> anyhow::Result<()> {
    match args.command {
        None | Some(ContainerCommand::Test) => test(sh),
        Some(ContainerCommand::Archive { out, platform }) => archive(sh, &out, &platform),
    }
}

/// Builds the image into the OCI archive `out`.
pub fn archive(sh: &Shell, out: &Path, platforms: &[String]) -> anyhow::Result<()> {
    let root = project::root();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let buildx = cmd!(sh, "docker buildx version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if buildx {
        let dockerfile = root.join(DOCKERFILE);
        let platforms = platforms.join(",");
        let output = format!("type=oci,dest={}", out.display());
        cmd!(
            sh,
            "docker buildx build -f {dockerfile} --platform {platforms} --output {output} {root}"
        )
        .run()?;
    } else {
        println!(
            "xtask: no docker buildx here: podman builds {PLATFORM} only (asked for {})",
            platforms.join(", ")
        );
        build_local(sh)?;
        cmd!(
            sh,
            "podman save --quiet --format oci-archive -o {out} {LOCAL_TAG}"
        )
        .run()?;
    }
    println!("xtask: image archive written to {}", out.display());
    Ok(())
}

/// Builds [`LOCAL_TAG`] with podman from a static binary built on this machine.
fn build_local(sh: &Shell) -> anyhow::Result<()> {
    let root = project::root();
    tools::containers()?;
    let started = Instant::now();
    let binary = crate::release::dist::binary(sh, TARGET)?;
    println!(
        "xtask: static binary ready in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let context = root.join("target").join("container").join("context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(context.join("out"))?;
    // Stripped, as the Dockerfile's `install -s` does.
    let copy = context.join("out").join("akidb-embed");
    std::fs::copy(&binary, &copy)?;
    cmd!(sh, "strip {copy}").run()?;
    let dockerfile = root.join(DOCKERFILE);
    cmd!(
        sh,
        "podman build --quiet -f {dockerfile} --build-context build={context} -t {LOCAL_TAG} {context}"
    )
    .run()?;
    Ok(())
}

/// Builds the image with podman, runs it read-only as its non-root user with the models and
/// the chart's configuration mounted, and checks `/health/ready` and one `/api/v1/embed`.
pub fn test(sh: &Shell) -> anyhow::Result<()> {
    let root = project::root();
    build_local(sh)?;
    let config_dir = root.join("target").join("container").join("config");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(config_dir.join("config.toml"), chart_config(sh)?)?;

    crate::models::fetch_missing(sh)?;
    let models = crate::models::models_dir();
    let port = crate::project::free_port()?;
    let publish = format!("127.0.0.1:{port}:8080");
    let models_volume = format!("{}:/models:ro", models.display());
    let config_volume = format!("{}:/etc/akidb:ro", config_dir.display());
    let _ = cmd!(sh, "podman rm --force --time 0 {CONTAINER}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    cmd!(
        sh,
        "podman run --detach --name {CONTAINER} --runtime runc
            --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
            --read-only --cap-drop ALL --security-opt no-new-privileges
            -p {publish} -v {models_volume} -v {config_volume}
            -e AKIDB_CONFIG=/etc/akidb/config.toml
            {LOCAL_TAG}"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    let running = Running { sh };

    let base = format!("http://127.0.0.1:{port}");
    let result = answers(&base);
    if result.is_err() {
        let _ = cmd!(sh, "podman logs --tail 40 {CONTAINER}").run();
    }
    result?;
    // SIGTERM: the service drains and exits by itself well inside its grace period.
    let stopping = Instant::now();
    cmd!(sh, "podman stop --time 30 {CONTAINER}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let exit_code = "{{.State.ExitCode}}";
    let code = cmd!(sh, "podman inspect --format {exit_code} {CONTAINER}").read()?;
    drop(running);
    println!(
        "xtask: container stopped in {:.1}s with exit code {}",
        stopping.elapsed().as_secs_f64(),
        code.trim()
    );
    if code.trim() != "0" {
        bail!("the container exited with {} after SIGTERM", code.trim());
    }
    Ok(())
}

/// Waits for readiness, then embeds one text through the v1 API.
fn answers(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    let ready = format!("{base}/health/ready");
    loop {
        match ureq::get(&ready).timeout(Duration::from_secs(2)).call() {
            Ok(response) if response.status() == 200 => break,
            _ if Instant::now() > deadline => {
                bail!("{ready} not ready within {}s", READY_WITHIN.as_secs())
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    println!("xtask: container ready: {ready}");
    let response: serde_json::Value = ureq::post(&format!("{base}/api/v1/embed"))
        .timeout(Duration::from_secs(30))
        .send_json(serde_json::json!({"texts": ["hello world"], "model": "all-MiniLM-L6-v2"}))
        .context("POST /api/v1/embed")?
        .into_json()?;
    let dimension = response["embeddings"][0]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    if dimension != 384 {
        bail!("/api/v1/embed answered without a 384-dimension embedding: {response}");
    }
    println!("xtask: container embedded a text: {dimension} dimensions");
    Ok(())
}
