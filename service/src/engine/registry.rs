//! The set of models a process serves, found in a models folder, with their aliases.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use candle_core::Device;

use super::{
    error::{EngineError, Result},
    layout::ModelLayout,
    model::{EmbeddingModel, LoadOptions},
};

/// Loaded models by name, with one default.
pub struct ModelRegistry {
    models: Vec<Arc<EmbeddingModel>>,
    /// Every accepted name (short name and Hub id) to an index of `models`.
    names: BTreeMap<String, usize>,
    default: Option<usize>,
}

/// A model folder that could not be loaded, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The folder.
    pub dir: std::path::PathBuf,
    /// Why it was not loaded.
    pub error: EngineError,
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            models: Vec::new(),
            names: BTreeMap::new(),
            default: None,
        }
    }

    /// Loads every model folder under `dir` (or only those named in `only`) as `options` say.
    /// Folders that fail to load are returned beside the registry so that one broken model does
    /// not stop the others.
    pub fn load_dir(
        dir: &Path,
        only: Option<&[String]>,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, Vec<LoadFailure>)> {
        let entries = std::fs::read_dir(dir).map_err(|_| EngineError::MissingFolder {
            path: dir.to_path_buf(),
        })?;
        let mut dirs: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                !name.as_deref().unwrap_or(".").starts_with('.')
            })
            .collect();
        dirs.sort();
        let mut registry = Self::new();
        let mut failures = Vec::new();
        for dir in dirs {
            let loaded = ModelLayout::read(&dir).and_then(|layout| {
                let wanted = only.is_none_or(|names| {
                    names
                        .iter()
                        .any(|n| *n == layout.name || layout.hub_id.as_deref() == Some(n.as_str()))
                });
                if wanted {
                    EmbeddingModel::load_with(layout, device, options).map(Some)
                } else {
                    Ok(None)
                }
            });
            match loaded {
                Ok(Some(model)) => registry.insert(model),
                Ok(None) => {}
                Err(error) => failures.push(LoadFailure { dir, error }),
            }
        }
        Ok((registry, failures))
    }

    /// Adds a model under its short name and Hub id; the first model becomes the default.
    pub fn insert(&mut self, model: EmbeddingModel) {
        let index = self.models.len();
        let info = model.info();
        self.names.insert(info.name.clone(), index);
        if let Some(id) = &info.hub_id {
            self.names.insert(id.clone(), index);
        }
        self.models.push(Arc::new(model));
        self.default.get_or_insert(index);
    }

    /// Makes the model called `name` the default.
    pub fn set_default(&mut self, name: &str) -> Result<()> {
        let index = self.index(name)?;
        self.default = Some(index);
        Ok(())
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| EngineError::UnknownModel {
                requested: name.to_string(),
                served: self.served_names(),
            })
    }

    /// The model called `name` (short name or Hub id), or the default for `None`.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<EmbeddingModel>> {
        let index = match name {
            Some(name) => self.index(name)?,
            None => self.default.ok_or_else(|| EngineError::UnknownModel {
                requested: "(default)".to_string(),
                served: self.served_names(),
            })?,
        };
        Ok(Arc::clone(&self.models[index]))
    }

    /// The default model, if any model is loaded.
    pub fn default_model(&self) -> Option<Arc<EmbeddingModel>> {
        self.default.map(|i| Arc::clone(&self.models[i]))
    }

    /// Every loaded model, default first.
    pub fn models(&self) -> Vec<Arc<EmbeddingModel>> {
        let mut out = self.models.to_vec();
        if let Some(d) = self.default {
            out.swap(0, d);
            out[1..].sort_by(|a, b| a.info().name.cmp(&b.info().name));
        }
        out
    }

    /// Short names of the served models, sorted.
    pub fn served_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.models.iter().map(|m| m.info().name.clone()).collect();
        names.sort();
        names
    }

    /// Whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

impl Default for ModelRegistry {
    fn default() -> Self {
        Self::new()
    }
}
