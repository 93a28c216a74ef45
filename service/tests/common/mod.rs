//! Fixtures shared by the engine's tests: where the real models and golden vectors are, and
//! small random-weight BERT-family model folders generated on the fly.

#![allow(dead_code)]

pub mod service;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Folder of the real models (`cargo xtask models` fills it).
pub fn models_dir() -> PathBuf {
    std::env::var_os("AKIDB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
}

/// A real model's folder; panics with the command to run when it is missing.
pub fn real_model(name: &str) -> PathBuf {
    let dir = models_dir().join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `cargo xtask models` first",
        dir.display()
    );
    dir
}

/// The reference vectors kept in the repository (`tests/golden/`, provenance in its README).
pub fn golden_dir() -> PathBuf {
    workspace().join("tests").join("golden")
}

/// The reference item of `model` for `text`: its token count and vector.
pub fn golden_item(model: &str, text: &str) -> (usize, Vec<f32>) {
    let path = golden_dir().join(format!("{model}.json"));
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let item = golden["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["text"] == text)
        .unwrap_or_else(|| panic!("{} has no item {text:?}", path.display()));
    let vector = item["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (item["tokens"].as_u64().unwrap() as usize, vector)
}

/// The floats of a JSON array.
pub fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Cosine a served vector reaches against its reference vector.
pub const PARITY_COSINE: f64 = 0.9999;

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Euclidean norm.
pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt()
}

/// The words of the generated tokenizers' vocabulary, after the special tokens.
const WORDS: &[&str] = &[
    "the",
    "a",
    "man",
    "is",
    "eating",
    "food",
    "vector",
    "database",
    "stores",
    "embedding",
    "##s",
    "##ing",
    "hello",
    "world",
    ".",
    ",",
    "!",
    "?",
    "rust",
    "candle",
];

/// Special tokens in the order BERT vocabularies use at their start.
const SPECIAL: &[&str] = &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Size of the generated vocabulary.
pub fn tiny_vocab_size() -> usize {
    SPECIAL.len() + WORDS.len()
}

/// A BERT WordPiece `tokenizer.json` over a tiny vocabulary.
pub fn tiny_tokenizer_json() -> Value {
    let vocab: serde_json::Map<String, Value> = SPECIAL
        .iter()
        .chain(WORDS)
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// Shape of a generated BERT-family model: the published configuration of a real model with
/// fewer layers and a tiny vocabulary, so tests stay fast.
pub struct TinyBert {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// `Some((cls, mean))` writes `modules.json` and `1_Pooling/config.json`.
    pub pooling: Option<(bool, bool)>,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
    /// Prefix of every tensor name (`bert.` in some checkpoints).
    pub prefix: &'static str,
}

impl TinyBert {
    /// Writes the folder `dir` with config, tokenizer, random weights and sentence-transformers files.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let vocab = tiny_vocab_size();
        let config = json!({
            "architectures": ["BertModel"], "model_type": "bert",
            "hidden_size": self.hidden, "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "vocab_size": vocab,
            "position_embedding_type": "absolute"
        });
        write_json(&dir.join("config.json"), &config);
        write_json(&dir.join("tokenizer.json"), &tiny_tokenizer_json());
        if let Some((cls, mean)) = self.pooling {
            let mut modules = vec![
                json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
                json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
            ];
            if self.normalize {
                modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
            }
            write_json(&dir.join("modules.json"), &json!(modules));
            std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
            write_json(
                &dir.join("1_Pooling/config.json"),
                &json!({"word_embedding_dimension": self.hidden, "pooling_mode_cls_token": cls,
                        "pooling_mode_mean_tokens": mean, "pooling_mode_max_tokens": false,
                        "pooling_mode_mean_sqrt_len_tokens": false}),
            );
        }
        if let Some(len) = self.max_seq_length {
            write_json(
                &dir.join("sentence_bert_config.json"),
                &json!({"max_seq_length": len, "do_lower_case": false}),
            );
        }
        self.write_weights(&dir.join("model.safetensors"), vocab);
    }

    fn write_weights(&self, path: &Path, vocab: usize) {
        let (h, i) = (self.hidden, self.intermediate);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![vocab, h]),
            ("embeddings.position_embeddings.weight".into(), vec![512, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..self.layers {
            let p = format!("encoder.layer.{l}.");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                shapes.push((format!("{p}{name}"), shape));
            }
        }
        let tensors: HashMap<String, Tensor> = shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = if name.ends_with("LayerNorm.weight") {
                    Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap()
                } else {
                    Tensor::randn(0f32, 0.5, shape, &Device::Cpu).unwrap()
                };
                (format!("{}{name}", self.prefix), t)
            })
            .collect();
        candle_core::safetensors::save(&tensors, path).unwrap();
    }
}

/// bge-small-en-v1.5's configuration: CLS pooling, normalised, 384 wide.
pub fn bge_small() -> TinyBert {
    TinyBert {
        hidden: 384,
        heads: 12,
        intermediate: 1536,
        layers: 2,
        pooling: Some((true, false)),
        normalize: true,
        max_seq_length: Some(512),
        prefix: "",
    }
}

/// e5-small-v2's configuration: mean pooling, normalised, 384 wide.
pub fn e5_small_v2() -> TinyBert {
    TinyBert {
        hidden: 384,
        heads: 12,
        intermediate: 1536,
        layers: 2,
        pooling: Some((false, true)),
        normalize: true,
        max_seq_length: Some(512),
        prefix: "",
    }
}

/// bert-base-uncased: a plain transformers folder (no sentence-transformers files), 768 wide,
/// with the `bert.` prefix of its checkpoint.
pub fn bert_base_uncased() -> TinyBert {
    TinyBert {
        hidden: 768,
        heads: 12,
        intermediate: 3072,
        layers: 1,
        pooling: None,
        normalize: false,
        max_seq_length: None,
        prefix: "bert.",
    }
}

/// Writes pretty JSON.
pub fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}
