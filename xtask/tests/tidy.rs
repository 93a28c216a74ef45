//! The map's invariants (`docs/ARCHITECTURE.md`, "Invariants"), checked on the source tree: what
//! must never name what, and that every source file says what it is for. A failure names the
//! file, the line and the rule.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// One invariant: no file below `folder` names any of `forbidden` (outside comments).
struct Rule {
    folder: &'static str,
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        folder: "service/src/engine",
        forbidden: &[
            "axum",
            "tonic",
            "StatusCode",
            "crate::api",
            "crate::grpc",
            "hyper",
            "std::env",
        ],
        why: "the engine (models, batching) names no transport and is configured only through \
              its settings (no environment reads or writes)",
    },
    Rule {
        folder: "service/kernels/src",
        forbidden: &[
            "akidb_embed",
            "candle_transformers",
            "axum",
            "tonic",
            "std::env",
        ],
        why: "the kernels know neither the engine nor a transport, and read no environment",
    },
    Rule {
        folder: "xtask/src/rollout/plan",
        forbidden: &[
            "run::",
            "targets::",
            "crate::stack",
            "std::process",
            "xshell",
        ],
        why: "the plan model imports no runner, no target and touches no real system",
    },
    Rule {
        folder: "xtask/src/rollout/targets/local",
        forbidden: &["kubernetes::"],
        why: "one target never imports another",
    },
    Rule {
        folder: "xtask/src/rollout/targets/kubernetes",
        forbidden: &["targets::local", "local::"],
        why: "one target never imports another",
    },
    Rule {
        folder: "xtask/src/stack",
        forbidden: &["rollout::run", "rollout::plan", "rollout::targets::local"],
        why: "the local stack knows nothing of plans, runs or the target built on it",
    },
];

/// The code of a line, without its comment.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

#[test]
fn the_architecture_invariants_hold() {
    let root = root();
    let mut broken = Vec::new();
    for rule in RULES {
        let folder = root.join(rule.folder);
        assert!(folder.is_dir(), "{} is gone: update the rule", rule.folder);
        for file in sources(&folder) {
            let text = std::fs::read_to_string(&file).expect("source file");
            for (number, line) in text.lines().enumerate() {
                for word in rule.forbidden {
                    if code(line).contains(word) {
                        broken.push(format!(
                            "{}:{}: names `{word}`: {}",
                            file.strip_prefix(&root).unwrap_or(&file).display(),
                            number + 1,
                            rule.why
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let root = root();
    let mut silent = Vec::new();
    for folder in [
        "xtask/src",
        "xtask/tests",
        "service/src",
        "service/tests",
        "service/kernels/src",
    ] {
        for file in sources(&root.join(folder)) {
            let text = std::fs::read_to_string(&file).expect("source file");
            if !text.trim_start().starts_with("//!") {
                silent.push(
                    file.strip_prefix(&root)
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        silent.is_empty(),
        "these files open without a `//!` doc comment saying what they are for:\n{}",
        silent.join("\n")
    );
}

#[test]
fn the_map_names_every_top_level_module() {
    let root = root();
    let map =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let mut missing = Vec::new();
    for folder in [
        "xtask/src",
        "xtask/src/rollout",
        "service/src",
        "service/src/engine",
    ] {
        for entry in std::fs::read_dir(root.join(folder)).expect("folder") {
            let path = entry.expect("entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if matches!(name, "mod" | "main" | "lib") || name.is_empty() {
                continue;
            }
            let shown = format!("{folder}/{name}");
            if !map.contains(&format!("`{name}")) && !map.contains(&shown) {
                missing.push(shown);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not mention these modules (keep the map true):\n{}",
        missing.join("\n")
    );
}
