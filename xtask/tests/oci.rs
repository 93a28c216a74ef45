//! `cargo xtask oci push-chart` / `push-image`, run as a user would, against a real registry:
//! Debian's `docker-registry` (the CNCF distribution registry) on a loopback port with its
//! storage in a temporary folder, installed with apt-get when missing. What was pushed is read
//! back with real clients: `helm pull`, `podman pull` and the registry's HTTP API.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use sha2::{Digest, Sha256};

const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The first `name` on PATH or in the sbin folders.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Installs Debian `packages` unless `program` is there; `Err` says why it could not.
fn ensure_debian(program: &str, packages: &[&str]) -> Result<PathBuf, String> {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = APT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = which(program) {
        return Ok(path);
    }
    println!(
        "{program} missing; installing {} with apt-get",
        packages.join(" ")
    );
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("apt-get: {e}"))
            .and_then(|s| {
                s.success()
                    .then_some(())
                    .ok_or(format!("apt-get {args:?}: {s}"))
            })
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)?;
    which(program).ok_or(format!(
        "{program} still missing after installing {packages:?}"
    ))
}

/// The project's local registry (`xtask/src/stack/registry.rs`), the one `cargo xtask
/// workflows run` serves.
#[allow(dead_code)]
#[path = "../src/stack/registry.rs"]
mod local_registry;

/// A docker-registry process on 127.0.0.1 with its storage in a temporary folder, both gone
/// on drop (the process first: fields drop in order).
struct Registry {
    _local: local_registry::LocalRegistry,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `htpasswd` = (user, password) turns on basic auth.
    fn start(htpasswd: Option<(&str, &str)>) -> Self {
        let binary = ensure_debian("docker-registry", &["docker-registry"])
            .unwrap_or_else(|e| panic!("cannot install docker-registry: {e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = htpasswd.map(|(user, password)| {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).expect("write htpasswd");
            file
        });
        let local = local_registry::LocalRegistry::start(
            &binary,
            &dir.path().join("storage"),
            auth.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Self {
            host: local.host().to_owned(),
            _local: local,
            _dir: dir,
        }
    }

    fn get(&self, path: &str, basic: Option<&str>) -> ureq::Response {
        let mut request =
            ureq::get(&format!("http://{}/v2/{path}", self.host)).set("Accept", MANIFEST_TYPES);
        if let Some(token) = basic {
            request = request.set("Authorization", &format!("Basic {token}"));
        }
        request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The manifest at `repository:reference`, with the digest the registry reports for it.
    fn manifest(
        &self,
        repository: &str,
        reference: &str,
        basic: Option<&str>,
    ) -> (String, Vec<u8>) {
        let response = self.get(&format!("{repository}/manifests/{reference}"), basic);
        let digest = response
            .header("Docker-Content-Digest")
            .expect("the registry reports a digest")
            .to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).expect("read manifest");
        (digest, body)
    }
}

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("oci")
        .args(args)
        .env_remove("AKIDB_REGISTRY_USERNAME")
        .env_remove("AKIDB_REGISTRY_PASSWORD")
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("xtask runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The digest an `xtask oci push-*` run printed (its last stdout line).
fn printed_digest(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let digest = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{}",
        text(output)
    );
    digest
}

fn chart_version() -> String {
    let chart: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("charts/akidb-candle/Chart.yaml"))
            .expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    chart["version"].as_str().expect("a version").to_string()
}

fn helm() -> PathBuf {
    let tools = root().join(".cache/tools");
    std::fs::read_dir(&tools)
        .expect(".cache/tools exists once xtask installed helm")
        .filter_map(|e| e.ok().map(|e| e.path().join("helm")))
        .find(|p| p.is_file())
        .expect("xtask installed helm")
}

fn push_chart(registry: &Registry, env: &[(&str, &str)]) -> Output {
    let target = format!("oci://{}/charts", registry.host);
    xtask(
        &[
            "push-chart",
            "--chart",
            "charts/akidb-candle",
            "--registry",
            &target,
            "--plain-http",
        ],
        env,
    )
}

#[test]
fn pushed_chart_is_what_helm_pulls_back() {
    let registry = Registry::start(None);
    let digest = printed_digest(&push_chart(&registry, &[]));
    let version = chart_version();

    let (reported, body) = registry.manifest("charts/akidb-candle", &version, None);
    assert_eq!(
        reported, digest,
        "the registry stores the manifest xtask printed"
    );
    assert_eq!(sha256(&body), digest);
    let manifest: Value = serde_json::from_slice(&body).expect("manifest JSON");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    let layer_digest = layers[0]["digest"].as_str().expect("layer digest");

    let out = tempfile::tempdir().expect("temp dir");
    let pull = Command::new(helm())
        .args([
            "pull",
            &format!("oci://{}/charts/akidb-candle", registry.host),
        ])
        .args(["--version", &version, "--plain-http", "--destination"])
        .arg(out.path())
        .output()
        .expect("helm runs");
    assert!(pull.status.success(), "{}", text(&pull));
    assert!(
        String::from_utf8_lossy(&pull.stderr).contains(&digest)
            || String::from_utf8_lossy(&pull.stdout).contains(&digest),
        "helm pulled another manifest: {}",
        text(&pull)
    );
    let tgz =
        std::fs::read(out.path().join(format!("akidb-candle-{version}.tgz"))).expect("pulled .tgz");
    assert_eq!(
        sha256(&tgz),
        layer_digest,
        "helm pulled the pushed package byte for byte"
    );

    // The package holds this chart: its files unpack to the sources.
    let unpacked = tempfile::tempdir().expect("temp dir");
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(out.path().join(format!("akidb-candle-{version}.tgz")))
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .expect("tar runs");
    assert!(tar.success());
    let unpacked = unpacked.path().join("akidb-candle");
    for file in ["values.yaml", "values.schema.json"] {
        assert_eq!(
            std::fs::read(unpacked.join(file)).expect("unpacked file"),
            std::fs::read(root().join("charts/akidb-candle").join(file)).expect("source file"),
            "{file}"
        );
    }
    // helm rewrites Chart.yaml in its own layout; the fields are the same.
    let chart_yaml = |dir: &Path| -> Value {
        serde_yaml_ng::from_str(
            &std::fs::read_to_string(dir.join("Chart.yaml")).expect("Chart.yaml"),
        )
        .expect("Chart.yaml parses")
    };
    assert_eq!(
        chart_yaml(&unpacked),
        chart_yaml(&root().join("charts/akidb-candle"))
    );
}

#[test]
fn htpasswd_registry_refuses_wrong_credentials_and_accepts_right_ones() {
    let registry = Registry::start(Some(("release", "right-password")));

    let anonymous = push_chart(&registry, &[]);
    assert!(!anonymous.status.success());
    let said = text(&anonymous);
    assert!(
        said.contains(&format!(
            "authentication to registry {} failed (anonymous)",
            registry.host
        )),
        "{said}"
    );

    let started = Instant::now();
    let wrong = push_chart(
        &registry,
        &[
            ("AKIDB_REGISTRY_USERNAME", "release"),
            ("AKIDB_REGISTRY_PASSWORD", "wrong-secret-123"),
        ],
    );
    assert!(!wrong.status.success());
    let said = text(&wrong);
    assert!(
        said.contains(&format!(
            "authentication to registry {} failed (user release)",
            registry.host
        )),
        "{said}"
    );
    assert!(
        !said.contains("wrong-secret-123"),
        "the password was printed: {said}"
    );
    assert!(
        !said.contains("unavailable after"),
        "an auth failure was retried: {said}"
    );
    // No retries: well under the 1 + 2 + 4 + 8 s the default backoff would wait.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    let right = push_chart(
        &registry,
        &[
            ("AKIDB_REGISTRY_USERNAME", "release"),
            ("AKIDB_REGISTRY_PASSWORD", "right-password"),
        ],
    );
    let digest = printed_digest(&right);
    assert!(!text(&right).contains("right-password"));
    let basic = base64_basic("release", "right-password");
    let (reported, _) = registry.manifest("charts/akidb-candle", &chart_version(), Some(&basic));
    assert_eq!(reported, digest);
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn a_registry_that_is_down_fails_after_bounded_retries() {
    // Nothing listens on a port just released.
    let host = format!("127.0.0.1:{}", free_port());
    let target = format!("oci://{host}/charts");
    let output = xtask(
        &[
            "push-chart",
            "--chart",
            "charts/akidb-candle",
            "--registry",
            &target,
            "--attempts",
            "3",
            "--backoff",
            "50ms",
        ],
        &[],
    );
    assert!(!output.status.success());
    let said = text(&output);
    assert!(
        said.contains(&format!("registry {host} unavailable after 3 attempts")),
        "{said}"
    );
}

#[test]
fn bad_references_are_refused_before_any_request() {
    let output = xtask(
        &["push-chart", "--registry", "https://ghcr.io/akidb/charts"],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("starts with oci://"),
        "{}",
        text(&output)
    );

    let layout = tempfile::tempdir().expect("temp dir");
    let output = xtask(
        &[
            "push-image",
            "--archive",
            &layout.path().display().to_string(),
            "--image",
            "akidb/embedding:v2.0.0",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not a registry host"),
        "{}",
        text(&output)
    );

    let output = xtask(
        &[
            "push-image",
            "--archive",
            "/nonexistent.tar",
            "--image",
            "127.0.0.1:1/a:v1",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("image layout /nonexistent.tar"),
        "{}",
        text(&output)
    );
}

/// Writes an OCI image layout folder by hand: one manifest, its config and a layer.
fn write_layout(dir: &Path, layer: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs folder");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).expect("write blob");
        (digest, bytes.len())
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_digest, config_size) = put(config);
    let (layer_digest, layer_size) = put(layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest JSON");
    let (manifest_digest, manifest_size) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    manifest_digest
}

#[test]
fn an_oci_layout_folder_is_pushed_byte_for_byte_and_a_corrupt_one_is_refused() {
    let registry = Registry::start(None);
    let layout = tempfile::tempdir().expect("temp dir");
    let expected = write_layout(layout.path(), b"not really a tar, but a blob all the same");
    let image = format!("{}/akidb/layout-test:v1", registry.host);
    let archive = layout.path().display().to_string();
    let digest = printed_digest(&xtask(
        &["push-image", "--archive", &archive, "--image", &image],
        &[],
    ));
    assert_eq!(digest, expected, "the layout's manifest digest is kept");
    let (reported, body) = registry.manifest("akidb/layout-test", "v1", None);
    assert_eq!(reported, expected);
    assert_eq!(sha256(&body), expected);
    // A second push finds every blob there and gives the same digest.
    let again = printed_digest(&xtask(
        &["push-image", "--archive", &archive, "--image", &image],
        &[],
    ));
    assert_eq!(again, expected);

    // A blob whose bytes do not match its digest is refused, not pushed.
    let corrupt = tempfile::tempdir().expect("temp dir");
    write_layout(corrupt.path(), b"the original layer");
    let layer = sha256(b"the original layer");
    std::fs::write(
        corrupt.path().join("blobs/sha256").join(&layer[7..]),
        b"tampered",
    )
    .expect("tamper");
    let output = xtask(
        &[
            "push-image",
            "--archive",
            &corrupt.path().display().to_string(),
            "--image",
            &format!("{}/akidb/corrupt:v1", registry.host),
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains(&format!("blob {layer} is corrupt")),
        "{}",
        text(&output)
    );
}

/// podman, installed from Debian when missing. `None` (the test skips) only where it cannot
/// be installed outside CI; in CI (`CI` set) that is a failure.
fn podman() -> Option<PathBuf> {
    match ensure_debian("podman", &["podman", "buildah", "runc"]) {
        Ok(path) => Some(path),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED: podman cannot be installed here ({e}); the image round trip did not run"
            );
            None
        }
        Err(e) => panic!("podman cannot be installed: {e}"),
    }
}

fn podman_run(podman: &Path, args: &[&str]) -> String {
    let output = Command::new(podman)
        .args(args)
        .output()
        .expect("podman runs");
    assert!(
        output.status.success(),
        "podman {args:?}: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn podman_built_image_round_trips_through_the_registry() {
    let Some(podman) = podman() else { return };
    let registry = Registry::start(None);
    let context = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        context.path().join("hello.txt"),
        format!("hello from {}\n", registry.host),
    )
    .expect("file");
    std::fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .expect("Containerfile");
    let local = format!("localhost/akidb-oci-test:{}", std::process::id());
    let context_dir = context.path().display().to_string();
    podman_run(&podman, &["build", "--quiet", "-t", &local, &context_dir]);
    let archive = context.path().join("image.tar").display().to_string();
    podman_run(
        &podman,
        &["save", "--format", "oci-archive", "-o", &archive, &local],
    );

    let remote = format!("{}/akidb/oci-test:v1", registry.host);
    let digest = printed_digest(&xtask(
        &["push-image", "--archive", &archive, "--image", &remote],
        &[],
    ));
    let (reported, _) = registry.manifest("akidb/oci-test", "v1", None);
    assert_eq!(reported, digest);

    // Pull into a store without the local build, so the pull really fetches it.
    podman_run(&podman, &["rmi", &local]);
    podman_run(&podman, &["pull", "--quiet", "--tls-verify=false", &remote]);
    let pulled = podman_run(
        &podman,
        &["image", "inspect", "--format", "{{.Digest}}", &remote],
    );
    let repo_digests = podman_run(
        &podman,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &remote,
        ],
    );
    let _ = Command::new(&podman)
        .args(["rmi", "--force", &remote])
        .output();
    assert!(
        repo_digests.contains(&format!("{}/akidb/oci-test@{digest}", registry.host)),
        "{repo_digests}"
    );
    assert_eq!(pulled, digest, "podman pulled the manifest xtask pushed");
}
