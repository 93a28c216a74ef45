//! Configurations of BERT-family models users load from the Hub (their weights are not available
//! here, so small random-weight folders with the same configuration stand in): they load, pool as
//! their files say, and give the configured dimension.

mod common;

use akidb_embed::engine::{EmbedOptions, EmbeddingModel, Pooling};
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
