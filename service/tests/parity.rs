//! The served models give the reference vectors of `tests/golden/`: cosine ≥ 0.9999 and the
//! same token count on every item, one text at a time and in one padded batch.

mod common;

use akidb_embed::engine::{EmbedOptions, EmbeddingModel, Implementation};
use common::{cosine, norm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    max_seq_length: usize,
    pooling: String,
    normalized: bool,
    dimension: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn golden(model: &str) -> Golden {
    let path = common::golden_dir().join(format!("{model}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

const MIN_COSINE: f64 = 0.9999;

fn check_against_golden(model_name: &str, implementation: Implementation) {
    let golden = golden(model_name);
    let model =
        EmbeddingModel::from_dir_as(common::real_model(model_name), implementation).unwrap();
    let info = model.info();
    assert_eq!(info.dimension, golden.dimension);
    assert_eq!(info.max_seq_length, golden.max_seq_length);
    assert_eq!(info.pooling.as_str(), golden.pooling);
    assert_eq!(info.normalize, golden.normalized);
    assert!(
        golden.items.iter().any(|i| i.text.is_empty()),
        "golden has the empty string"
    );
    assert!(
        golden
            .items
            .iter()
            .any(|i| i.tokens == golden.max_seq_length),
        "golden has truncated texts"
    );

    let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
    let batched = model.embed(&texts, EmbedOptions::default()).unwrap();
    for (k, item) in golden.items.iter().enumerate() {
        let single = model
            .embed(&[item.text.as_str()], EmbedOptions::default())
            .unwrap();
        let label = format!(
            "{model_name} ({implementation:?}) item {k} {:?}",
            item.text.chars().take(40).collect::<String>()
        );
        assert_eq!(
            single.token_counts,
            vec![item.tokens],
            "{label}: token count"
        );
        assert_eq!(
            batched.token_counts[k], item.tokens,
            "{label}: token count in a batch"
        );
        let c = cosine(&single.vectors[0], &item.embedding);
        assert!(c >= MIN_COSINE, "{label}: cosine {c} to the reference");
        let cb = cosine(&batched.vectors[k], &item.embedding);
        assert!(
            cb >= MIN_COSINE,
            "{label}: cosine {cb} to the reference in a batch"
        );
        let rel = (norm(&single.vectors[0]) - norm(&item.embedding)).abs() / norm(&item.embedding);
        assert!(rel < 1e-3, "{label}: norm differs by {rel}");
        let cs = cosine(&batched.vectors[k], &single.vectors[0]);
        assert!(cs >= 0.99999, "{label}: batched vs single cosine {cs}");
    }
}

#[test]
fn all_minilm_l6_v2_matches_reference_vectors() {
    check_against_golden("all-MiniLM-L6-v2", Implementation::Packed);
}

#[test]
fn paraphrase_minilm_l3_v2_matches_reference_vectors() {
    check_against_golden("paraphrase-MiniLM-L3-v2", Implementation::Packed);
}

#[test]
fn candle_bert_model_matches_reference_vectors_too() {
    check_against_golden("all-MiniLM-L6-v2", Implementation::Candle);
    check_against_golden("paraphrase-MiniLM-L3-v2", Implementation::Candle);
}

#[test]
fn overrides_pooling_and_normalisation_per_call() {
    let model = EmbeddingModel::from_dir(common::real_model("paraphrase-MiniLM-L3-v2")).unwrap();
    let text = ["A man is eating food."];
    let raw = model.embed(&text, EmbedOptions::default()).unwrap();
    assert!(
        (norm(&raw.vectors[0]) - 1.0).abs() > 1e-2,
        "L3 is not normalised by default"
    );
    let normalized = model
        .embed(
            &text,
            EmbedOptions {
                normalize: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    assert!((norm(&normalized.vectors[0]) - 1.0).abs() < 1e-5);
    assert!(cosine(&raw.vectors[0], &normalized.vectors[0]) > 0.99999);
    let cls = model
        .embed(
            &text,
            EmbedOptions {
                pooling: Some(akidb_embed::engine::Pooling::Cls),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        cosine(&raw.vectors[0], &cls.vectors[0]) < 0.999,
        "cls differs from mean"
    );
}

#[test]
fn ignores_the_fixed_padding_baked_into_the_packaged_tokenizer() {
    let model = EmbeddingModel::from_dir(common::real_model("all-MiniLM-L6-v2")).unwrap();
    let batch = model.tokenize(&["hello world", "a"]).unwrap();
    assert_eq!(batch.lengths, vec![4, 3]);
    assert_eq!(batch.seq_len, 4, "padded to the longest input, not to 128");
    let long = "word ".repeat(1000);
    assert_eq!(model.tokenize(&[long.as_str()]).unwrap().lengths, vec![256]);
}

/// Lowest cosine to the reference vectors that each reduced precision must keep (opt-in modes;
/// f32 keeps [`MIN_COSINE`]). Measured on the CPU, all 36 items (`-- --nocapture` prints them):
/// all-MiniLM-L6-v2 f16 0.999986, bf16 0.986 (bf16 keeps 8 bits of mantissa through every
/// layer: fine for a collection embedded wholly in bf16, not for mixing with f32 vectors).
const MIN_COSINE_F16: f64 = 0.9999;
const MIN_COSINE_BF16: f64 = 0.98;

#[test]
fn reduced_precision_stays_close_to_the_reference_vectors() {
    use akidb_embed::engine::{LoadOptions, ModelLayout, Precision};
    // Candle's CPU kernels are slow at 16 bits: one model and every third item keep this quick.
    let model_name = "paraphrase-MiniLM-L3-v2";
    let golden = golden(model_name);
    let items: Vec<&Item> = golden.items.iter().step_by(3).collect();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    for (precision, floor) in [
        (Precision::F16, MIN_COSINE_F16),
        (Precision::Bf16, MIN_COSINE_BF16),
    ] {
        let layout = ModelLayout::read(common::real_model(model_name)).unwrap();
        let options = LoadOptions {
            precision,
            ..LoadOptions::default()
        };
        let model = EmbeddingModel::load_with(layout, &candle_core::Device::Cpu, options).unwrap();
        assert_eq!(model.precision(), precision);
        let out = model.embed(&texts, EmbedOptions::default()).unwrap();
        let cosines: Vec<f64> = out
            .vectors
            .iter()
            .zip(&items)
            .map(|(v, item)| cosine(v, &item.embedding))
            .collect();
        assert!(
            cosines.iter().all(|c| c.is_finite()),
            "{model_name} {precision}: NaN"
        );
        let min = cosines.iter().cloned().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        println!("{model_name} {precision}: min cosine {min:.6}, mean {mean:.6}");
        assert!(
            min >= floor,
            "{model_name} {precision}: min cosine {min} < {floor}"
        );
    }
}

/// Lowest cosine to the reference vectors that int8 must keep on every item of both models.
/// The 0.99 promise is checked at load on the calibration texts against the f32 vectors
/// (`engine::quantization`); these 36 items are held out, and the smoothing strength chosen at
/// load depends on the host's f32 rounding: all-MiniLM-L6-v2's lowest is 0.9911 where α 0.8 is
/// chosen (the Intel Xeon of `docs/BENCHMARKS.md`), 0.9884 where α 0.6 is (an AVX2-only EPYC).
/// Quantized without smoothing it is 0.9836, which this floor still fails. `-- --nocapture`
/// prints them.
const MIN_COSINE_INT8: f64 = 0.985;

#[test]
fn int8_stays_close_to_the_reference_vectors() {
    use akidb_embed::engine::{LoadOptions, ModelLayout, Precision};
    for model_name in ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"] {
        let golden = golden(model_name);
        let texts: Vec<&str> = golden.items.iter().map(|i| i.text.as_str()).collect();
        let layout = ModelLayout::read(common::real_model(model_name)).unwrap();
        let options = LoadOptions {
            precision: Precision::Int8,
            ..LoadOptions::default()
        };
        let model = EmbeddingModel::load_with(layout, &candle_core::Device::Cpu, options).unwrap();
        assert_eq!(model.precision(), Precision::Int8);
        assert!(model.skips_padding(), "int8 runs on the packed encoder");
        let out = model.embed(&texts, EmbedOptions::default()).unwrap();
        let cosines: Vec<f64> = out
            .vectors
            .iter()
            .zip(&golden.items)
            .map(|(v, item)| cosine(v, &item.embedding))
            .collect();
        assert!(cosines.iter().all(|c| c.is_finite()), "{model_name}: NaN");
        let min = cosines.iter().cloned().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        println!(
            "{model_name} int8: min cosine {min:.6}, mean {mean:.6} over {} items",
            cosines.len()
        );
        assert!(
            min >= MIN_COSINE_INT8,
            "{model_name} int8: min cosine {min}"
        );
        assert!(min < 0.99999, "{model_name}: int8 gave f32's vectors");
        assert_eq!(
            out.token_counts,
            golden.items.iter().map(|i| i.tokens).collect::<Vec<_>>()
        );
    }
}

#[test]
fn int8_is_refused_on_candles_encoder() {
    use akidb_embed::engine::{LoadOptions, ModelLayout, Precision};
    let layout = ModelLayout::read(common::real_model("paraphrase-MiniLM-L3-v2")).unwrap();
    let options = LoadOptions {
        precision: Precision::Int8,
        encoder: Implementation::Candle,
    };
    let refused = EmbeddingModel::load_with(layout, &candle_core::Device::Cpu, options)
        .err()
        .expect("int8 on Candle's encoder is refused");
    assert!(
        refused
            .to_string()
            .contains("int8 runs on the packed encoder"),
        "{refused}"
    );
}
