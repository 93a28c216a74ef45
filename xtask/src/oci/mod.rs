//! Pushing release artifacts to OCI registries: the rollout plan's `helm_push` (a Helm chart
//! as an OCI artifact) and `image_push` (a container image from an OCI image layout), on
//! oci-client. Not for pulling or for building images: podman builds, this only ships.
//!
//! Credentials come from `AKIDB_REGISTRY_USERNAME` / `AKIDB_REGISTRY_PASSWORD` (anonymous
//! when neither is set). Registries are spoken to over HTTPS, except loopback ones and
//! `--plain-http`. A registry that is down is retried with exponential backoff; refused
//! credentials are not retried.

mod auth;
mod chart;
mod error;
mod image;
mod layout;
mod reference;
mod retry;
mod session;

use std::{fmt, path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use xshell::Shell;

pub use auth::Auth;
pub use chart::push_chart;
pub use error::OciError;
pub use image::{push_image, push_image_to};
pub use reference::{image_in_registry, ChartRegistry};
pub use retry::RetryPolicy;

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// The credentials.
    pub auth: Auth,
    /// Plain HTTP even to a registry that is not on loopback.
    pub plain_http: bool,
    /// Retries of calls that fail for want of the registry.
    pub retry: RetryPolicy,
}

impl PushOptions {
    /// Credentials from the environment, HTTPS except on loopback, the default retries.
    pub fn from_env() -> Result<Self, OciError> {
        Ok(Self {
            auth: Auth::from_env()?,
            ..Self::default()
        })
    }
}

/// What a push left in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed, e.g. `ghcr.io/akidb/charts/akidb-candle:2.0.0`.
    pub reference: String,
    /// The manifest digest, `sha256:…`, as the registry reports it.
    pub digest: String,
}

impl fmt::Display for Pushed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.reference, self.digest)
    }
}

/// `cargo xtask oci`.
#[derive(Args)]
pub struct OciArgs {
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Subcommand)]
enum OciCommand {
    /// Package a Helm chart and push it to `oci://HOST/PATH`; prints the manifest digest.
    PushChart {
        /// The chart's folder.
        #[arg(long, default_value = "charts/akidb-candle")]
        chart: PathBuf,
        /// The registry, e.g. oci://ghcr.io/akidb/charts.
        #[arg(long)]
        registry: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Push an image from an OCI layout folder or oci-archive file; prints the manifest digest.
    PushImage {
        /// The OCI layout folder or archive (`podman save --format oci-archive`).
        #[arg(long)]
        archive: PathBuf,
        /// Where it goes: HOST/NAME:TAG, or NAME:TAG with --registry.
        #[arg(long)]
        image: String,
        /// The registry host, when --image does not start with one (as in the plan's
        /// `image_push` step).
        #[arg(long)]
        registry: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Transport and retries, shared by the push commands.
#[derive(Args)]
struct Connection {
    /// Use plain HTTP (always so for loopback registries).
    #[arg(long)]
    plain_http: bool,
    /// Attempts per registry call before giving up on an unreachable registry.
    #[arg(long, default_value_t = RetryPolicy::default().attempts)]
    attempts: u32,
    /// The first wait between attempts; it doubles each time, up to 8 s.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    backoff: Duration,
}

impl Connection {
    fn options(&self) -> Result<PushOptions, OciError> {
        let mut options = PushOptions::from_env()?;
        options.plain_http = self.plain_http;
        options.retry = RetryPolicy {
            attempts: self.attempts.max(1),
            first_backoff: self.backoff,
            max_backoff: options.retry.max_backoff.max(self.backoff),
        };
        Ok(options)
    }
}

/// Runs `cargo xtask oci ...`: the digest goes to stdout, the rest to stderr.
pub fn run(sh: &Shell, args: OciArgs) -> anyhow::Result<()> {
    let pushed = match args.command {
        OciCommand::PushChart {
            chart,
            registry,
            connection,
        } => push_chart(
            sh,
            &sh.current_dir().join(chart),
            &registry,
            &connection.options()?,
        )?,
        OciCommand::PushImage {
            archive,
            image,
            registry,
            connection,
        } => {
            let archive = sh.current_dir().join(archive);
            let options = connection.options()?;
            match registry {
                Some(registry) => {
                    push_image_to(&archive, &image_in_registry(&registry, &image)?, &options)?
                }
                None => push_image(&archive, &image, &options)?,
            }
        }
    };
    eprintln!("oci: pushed {pushed}");
    println!("{}", pushed.digest);
    Ok(())
}
