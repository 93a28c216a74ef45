//! `cargo xtask ci`: everything CI checks, in one command that works on a fresh machine.

use std::time::Instant;

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::{models, python};

/// A named step and how long it took.
struct Timing {
    step: &'static str,
    seconds: f64,
}

fn step(
    timings: &mut Vec<Timing>,
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    println!("\n== xtask ci: {name}");
    let started = Instant::now();
    let result = f().with_context(|| format!("ci step `{name}` failed"));
    timings.push(Timing {
        step: name,
        seconds: started.elapsed().as_secs_f64(),
    });
    result
}

fn step_value<T>(
    timings: &mut Vec<Timing>,
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut value = None;
    step(timings, name, || {
        value = Some(f()?);
        Ok(())
    })?;
    value.ok_or_else(|| anyhow::anyhow!("step `{name}` produced nothing"))
}

/// Runs every check; stops at the first failure.
pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let mut timings = Vec::new();
    let result = (|| {
        let py = step_value(&mut timings, "python environment", || python::ensure(sh))?;
        step(&mut timings, "models", || models::fetch_all(sh))?;
        step(&mut timings, "fmt", || {
            cmd!(sh, "cargo fmt --all -- --check").run()?;
            Ok(())
        })?;
        step(&mut timings, "clippy", || {
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --locked -- -D warnings"
            )
            .run()?;
            Ok(())
        })?;
        step(&mut timings, "cargo deny (licenses, bans, sources)", || {
            crate::deny::check(sh)
        })?;
        step(
            &mut timings,
            "workflows: actionlint, rollout.yml current",
            || crate::workflows::ci(sh),
        )?;
        step(&mut timings, "cargo test", || {
            // CI=1: tests that need podman or a registry fail rather than skip when they cannot
            // install it.
            cmd!(sh, "cargo test --workspace --locked")
                .env("CI", "1")
                .run()?;
            Ok(())
        })?;
        step(
            &mut timings,
            "portable kernels (the path other CPUs than x86-64 run)",
            || portable_kernels(sh),
        )?;
        step(
            &mut timings,
            "helm chart, rollout/k8s manifests, Dockerfile",
            || crate::packaging::check(sh),
        )?;
        step(&mut timings, "end-to-end tests (pytest)", || {
            // The tests drive the real binary. Built for the whole workspace, so that features
            // unify as in `cargo test --workspace` and nothing is compiled twice.
            cmd!(sh, "cargo build --workspace --locked --bins").run()?;
            let bin = crate::project::root().join("target/debug/akidb-embed");
            cmd!(sh, "{py} -m pytest tests -q -p no:cacheprovider")
                .env("AKIDB_EMBED_BIN", bin)
                .run()?;
            Ok(())
        })?;
        step(&mut timings, "bench smoke", || {
            // A few seconds of `cargo xtask bench --quick` on the dev binary built above, so
            // the bench cannot rot; it checks that the figures are sane, not fast.
            crate::bench::smoke(sh)
        })?;
        step(&mut timings, "soak smoke", || crate::soak::smoke(sh))?;
        step(
            &mut timings,
            "fuzz: request decoding and tokenization, 20 s each",
            || crate::fuzz::ci(sh),
        )?;
        step(
            &mut timings,
            "monitoring: promtool, amtool, dashboard queries vs a scrape",
            || crate::monitoring::ci(sh),
        )?;
        step(&mut timings, "rollout on the local target", || {
            // The whole plan, a fault-injected run and a killed-and-resumed run at a time scale
            // of minutes, against real nginx, Prometheus and both services.
            cmd!(
                sh,
                "cargo test --workspace --locked --test rollout_local -- --ignored --test-threads 1"
            )
            .run()?;
            Ok(())
        })?;
        step(
            &mut timings,
            "workflows: rollout.yml under act on the local target",
            || {
                // The seven stage jobs in order, each from the state the job before uploaded,
                // approvals read from the fake GitHub's API (`cargo xtask workflows run`).
                cmd!(
                    sh,
                    "cargo test --workspace --locked --test workflows_act -- --ignored --test-threads 1 the_rollout_runs"
                )
                .run()?;
                Ok(())
            },
        )?;
        step(&mut timings, "container image (podman)", || {
            crate::packaging::image::test(sh)
        })?;
        step(
            &mut timings,
            "workflows: release.yml under act for a tag",
            || {
                // After the image step: its static binary is the release build the archive and
                // the image jobs reuse (`release::dist::binary`), so no second release build.
                cmd!(
                    sh,
                    "cargo test --workspace --locked --test workflows_act -- --ignored --test-threads 1 the_release_of_a_tag"
                )
                .run()?;
                Ok(())
            },
        )?;
        Ok::<_, anyhow::Error>(())
    })();
    println!("\n== xtask ci: timings");
    for t in &timings {
        println!("{:>8.1}s  {}", t.seconds, t.step);
    }
    result
}

/// The kernels' tests with only their portable code paths (`--features portable`), as a CPU
/// other than x86-64 runs them; and `cargo check` for aarch64 where that target is installed.
fn portable_kernels(sh: &Shell) -> anyhow::Result<()> {
    cmd!(
        sh,
        "cargo test -p akidb-kernels --features portable --locked"
    )
    .run()?;
    const ARM: &str = "aarch64-unknown-linux-gnu";
    let installed = cmd!(sh, "rustup target list --installed")
        .read()
        .unwrap_or_default();
    if installed.lines().any(|t| t.trim() == ARM) {
        cmd!(sh, "cargo check -p akidb-kernels --locked --target {ARM}").run()?;
    } else {
        println!("{ARM} is not installed (`rustup target add {ARM}`): its `cargo check` skipped");
    }
    Ok(())
}
