//! Configurations of BERT-family models users load from the Hub (their weights are not available
//! here, so small random-weight folders with the same configuration stand in): they load, pool as
//! their files say, and give the configured dimension.

mod common;

use akidb_embed::engine::{EmbedOptions, EmbeddingModel, Implementation, Pooling};
use common::{cosine, norm, TinyBert};

const TEXTS: &[&str] = &[
    "hello world",
    "the man is eating food.",
    "",
    "vector databases!",
];

/// Pools the raw token states by hand, to check the engine against a plain implementation.
fn expected(model: &EmbeddingModel, pooling: Pooling, normalize: bool) -> Vec<Vec<f32>> {
    let batch = model.tokenize(TEXTS).unwrap();
    let (states, _) = model.token_states(&batch).unwrap();
    let states = states.to_vec3::<f32>().unwrap();
    states
        .iter()
        .zip(&batch.lengths)
        .map(|(rows, &len)| {
            let mut v = match pooling {
                Pooling::Cls => rows[0].clone(),
                Pooling::Mean => {
                    let mut acc = vec![0f32; rows[0].len()];
                    for row in &rows[..len] {
                        for (a, x) in acc.iter_mut().zip(row) {
                            *a += x / len as f32;
                        }
                    }
                    acc
                }
            };
            if normalize {
                let n = norm(&v) as f32;
                v.iter_mut().for_each(|x| *x /= n);
            }
            v
        })
        .collect()
}

fn check(spec: TinyBert, pooling: Pooling, normalize: bool, dimension: usize, max_len: usize) {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path());
    let model = EmbeddingModel::from_dir(dir.path()).unwrap();
    let info = model.info();
    assert_eq!(info.dimension, dimension);
    assert_eq!(info.pooling, pooling);
    assert_eq!(info.normalize, normalize);
    assert_eq!(info.max_seq_length, max_len);
    let out = model.embed(TEXTS, EmbedOptions::default()).unwrap();
    assert_eq!(out.vectors.len(), TEXTS.len());
    let want = expected(&model, pooling, normalize);
    for (got, want) in out.vectors.iter().zip(&want) {
        assert_eq!(got.len(), dimension);
        assert!(cosine(got, want) > 0.99999);
        assert!((norm(got) - norm(want)).abs() < 1e-3 * norm(want));
    }
    // The pooling that was not configured gives different vectors: the configured one was used.
    let other = match pooling {
        Pooling::Cls => Pooling::Mean,
        Pooling::Mean => Pooling::Cls,
    };
    let alt = model
        .embed(
            TEXTS,
            EmbedOptions {
                pooling: Some(other),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(cosine(&alt.vectors[1], &out.vectors[1]) < 0.9999);
}

#[test]
fn bge_small_en_v1_5_configuration_pools_cls_and_normalises() {
    check(common::bge_small(), Pooling::Cls, true, 384, 512);
}

#[test]
fn e5_small_v2_configuration_pools_mean_and_normalises() {
    check(common::e5_small_v2(), Pooling::Mean, true, 384, 512);
}

#[test]
fn bert_base_uncased_without_sentence_transformers_files_gives_768_dims() {
    check(common::bert_base_uncased(), Pooling::Mean, false, 768, 512);
}

#[test]
fn batched_equals_single() {
    let dir = tempfile::tempdir().unwrap();
    common::e5_small_v2().write(dir.path());
    let model = EmbeddingModel::from_dir(dir.path()).unwrap();
    let batched = model.embed(TEXTS, EmbedOptions::default()).unwrap();
    for (k, text) in TEXTS.iter().enumerate() {
        let single = model.embed(&[text], EmbedOptions::default()).unwrap();
        assert_eq!(single.token_counts[0], batched.token_counts[k]);
        assert!(cosine(&single.vectors[0], &batched.vectors[k]) > 0.99999);
    }
}

#[test]
fn empty_input_gives_no_vectors() {
    let dir = tempfile::tempdir().unwrap();
    common::bge_small().write(dir.path());
    let model = EmbeddingModel::from_dir(dir.path()).unwrap();
    let out = model.embed(&[], EmbedOptions::default()).unwrap();
    assert!(out.vectors.is_empty() && out.token_counts.is_empty());
}

/// The packed CPU implementation computes what Candle's `BertModel` computes, for every
/// configuration, at lengths on both sides of the threshold where work moves to the pool.
#[test]
fn packed_implementation_matches_candle_bert_model() {
    let long = "vector search finds documents by meaning rather than words ".repeat(12);
    let texts: Vec<&str> = TEXTS.iter().copied().chain([long.as_str()]).collect();
    for spec in [
        common::bge_small(),
        common::e5_small_v2(),
        common::bert_base_uncased(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        spec.write(dir.path());
        let packed = EmbeddingModel::from_dir_as(dir.path(), Implementation::Packed).unwrap();
        let candle = EmbeddingModel::from_dir_as(dir.path(), Implementation::Candle).unwrap();
        for batch in [&texts[..], &texts[4..], &texts[..1]] {
            let a = packed.embed(batch, EmbedOptions::default()).unwrap();
            let b = candle.embed(batch, EmbedOptions::default()).unwrap();
            assert_eq!(a.token_counts, b.token_counts);
            for (x, y) in a.vectors.iter().zip(&b.vectors) {
                let c = cosine(x, y);
                assert!(c > 0.99999, "cosine {c} between implementations");
                let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(diff <= 1e-4 * scale.max(1.0), "max difference {diff}");
            }
        }
    }
}

/// Two models running passes at once share the kernel thread pool, where a thread waiting in one
/// pass may run part of the other: every result must still be the one a lone call gives.
#[test]
fn concurrent_passes_of_two_models_give_lone_results() {
    let long = "packed batches share one pool of kernel threads ".repeat(8);
    let texts: Vec<&str> = TEXTS.iter().copied().chain([long.as_str()]).collect();
    let dirs: Vec<_> = [common::e5_small_v2(), common::bge_small()]
        .into_iter()
        .map(|spec| {
            let dir = tempfile::tempdir().unwrap();
            spec.write(dir.path());
            dir
        })
        .collect();
    let models: Vec<EmbeddingModel> = dirs
        .iter()
        .map(|d| EmbeddingModel::from_dir_as(d.path(), Implementation::Packed).unwrap())
        .collect();
    let lone: Vec<_> = models
        .iter()
        .map(|m| m.embed(&texts, EmbedOptions::default()).unwrap())
        .collect();
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (model, want) = (&models[worker % 2], &lone[worker % 2]);
            let texts = &texts;
            s.spawn(move || {
                for _ in 0..20 {
                    let got = model.embed(texts, EmbedOptions::default()).unwrap();
                    for (g, w) in got.vectors.iter().zip(&want.vectors) {
                        assert!(cosine(g, w) > 0.99999);
                    }
                }
            });
        }
    });
}
