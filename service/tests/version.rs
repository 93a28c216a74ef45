//! `akidb-embed --version` names the release and the commit the binary was built from.

use std::{path::Path, process::Command};

/// `(version, revision)` of the binary's `akidb-embed VERSION (REVISION)` line.
fn reported(flag: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_akidb-embed"))
        .arg(flag)
        .output()
        .expect("running akidb-embed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let line = text.trim_end();
    let rest = line
        .strip_prefix("akidb-embed ")
        .unwrap_or_else(|| panic!("not `akidb-embed VERSION (REVISION)`: {line:?}"));
    let (version, revision) = rest
        .split_once(" (")
        .and_then(|(v, r)| Some((v, r.strip_suffix(')')?)))
        .unwrap_or_else(|| panic!("not `akidb-embed VERSION (REVISION)`: {line:?}"));
    (version.to_string(), revision.to_string())
}

/// What the build should have recorded: `AKIDB_REVISION` when set, else the checkout's short
/// commit id, else `unknown`.
fn expected_revision() -> String {
    if let Some(forced) = std::env::var("AKIDB_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return forced;
    }
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[test]
fn version_is_2_0_0_with_the_revision_of_the_checkout() {
    let (version, revision) = reported("--version");

    assert_eq!(version, "2.0.0");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(revision, expected_revision());
}

#[test]
fn a_known_revision_is_a_short_commit_id() {
    let (_, revision) = reported("--version");

    if revision != "unknown" && std::env::var_os("AKIDB_REVISION").is_none() {
        assert_eq!(revision.len(), 12, "{revision}");
        assert!(
            revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{revision}"
        );
    }
}

#[test]
fn short_flag_prints_the_same() {
    assert_eq!(reported("-V"), reported("--version"));
}
