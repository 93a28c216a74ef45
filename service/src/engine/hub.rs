//! Model folders from the HuggingFace Hub, by id, through the `hf-hub` cache.
//!
//! Online users name a Hub id and get the same folder layout as a local model. With `offline`
//! (the caller's setting, `HF_HUB_OFFLINE=1` included) only files already in the cache are used,
//! and a missing one is an error. hf-hub itself reads its own variables for the cache and the
//! server (`HF_HOME`, `HF_ENDPOINT`): its conventions, left to it.

use std::path::PathBuf;

use super::error::{EngineError, Result};

/// Files a BERT-family sentence-transformers model needs; the last ones are optional.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];
const OPTIONAL: &[&str] = &[
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// Fetches (or, offline, finds in the cache) the files of Hub model `id` and returns the folder
/// that holds them, ready for [`super::ModelLayout::read`].
#[cfg(feature = "hub")]
pub fn fetch(id: &str, offline: bool) -> Result<PathBuf> {
    use hf_hub::{api::sync::ApiBuilder, Cache, Repo};

    let mut snapshot: Option<PathBuf> = None;
    let mut remember = |file: &str, path: PathBuf| {
        if file == "config.json" {
            snapshot = path.parent().map(PathBuf::from);
        }
    };
    if offline {
        let cache = Cache::from_env();
        let repo = cache.repo(Repo::model(id.to_string()));
        for file in REQUIRED {
            let path = repo.get(file).ok_or_else(|| {
                EngineError::Hub(format!(
                    "{id}: {file} is not in the local cache and offline mode is on"
                ))
            })?;
            remember(file, path);
        }
    } else {
        let api = ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| EngineError::Hub(e.to_string()))?;
        let repo = api.model(id.to_string());
        for file in REQUIRED {
            let path = repo
                .get(file)
                .map_err(|e| EngineError::Hub(format!("{id}: {file}: {e}")))?;
            remember(file, path);
        }
        for file in OPTIONAL {
            // sentence-transformers files are absent from plain transformers repos.
            let _ = repo.get(file);
        }
    }
    snapshot.ok_or_else(|| EngineError::Hub(format!("{id}: no config.json")))
}

/// Without the `hub` feature, loading by id is refused with a clear message.
#[cfg(not(feature = "hub"))]
pub fn fetch(id: &str, _offline: bool) -> Result<PathBuf> {
    let _ = (REQUIRED, OPTIONAL);
    Err(EngineError::Hub(format!(
        "cannot load {id}: this build has no Hub support (build with the `hub` feature)"
    )))
}

/// The layout of Hub model `id`, named by the id's last segment and aliased by the id itself.
pub fn layout(id: &str, offline: bool) -> Result<super::ModelLayout> {
    let dir = fetch(id, offline)?;
    let mut layout = super::ModelLayout::read(dir)?;
    layout.name = id.rsplit('/').next().unwrap_or(id).to_string();
    layout.hub_id = Some(id.to_string());
    Ok(layout)
}
