//! What the int8 precision promises, checked at load: on the calibration texts below, each
//! int8 vector's cosine to the same model's f32 vector is at least [`INT8_MIN_COSINE`]. A model
//! that falls short is refused with [`EngineError::QuantizationParity`] instead of served.
//!
//! The texts are varied on purpose (short and long, numbers, punctuation, another language),
//! because dynamic per-row quantization suffers most on rows with one outlying value.

use super::{
    error::{EngineError, Result},
    model::{EmbedOptions, EmbeddingModel},
};

/// The lowest cosine between a model's int8 and f32 vectors that int8 serves with.
pub const INT8_MIN_COSINE: f32 = 0.99;

/// The texts the promise is checked on.
pub const CALIBRATION_TEXTS: [&str; 8] = [
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Vector databases store embeddings and answer nearest-neighbour queries in milliseconds.",
    "Order #4471 shipped on 2026-03-14; 3 of 12 items (25%) are back-ordered until May.",
    "¿Dónde está la estación de tren más cercana? Necesito llegar antes de las nueve.",
    "ERROR 503: upstream timed out after 30000 ms (retry 2/5) -- see /var/log/akidb.log",
    "A long passage about the history of computing: from mechanical calculators and punched \
     cards through vacuum tubes, transistors and integrated circuits to the processors of \
     today, each generation made the machines smaller, faster and cheaper, and each changed \
     who could use them and for what.",
    "!!! ??? ...",
];

/// The texts the ranges of the int8 layers' inputs are measured on, for smoothing: others than
/// [`CALIBRATION_TEXTS`], so that the promise is checked on texts the quantization never saw.
///
/// The shortest texts matter most: an empty or one-symbol text is little more than the special
/// tokens, whose states carry the largest outlying channels.
pub const SMOOTHING_TEXTS: [&str; 9] = [
    "",
    "?",
    "ok",
    "What is the capital of France?",
    "Ingredients: 2 cups flour, 1 tsp salt, 3/4 cup water; knead for 10 minutes.",
    "The meeting moved to Thursday at 14:30 CET because the venue was double-booked.",
    "Der Zug nach München fährt um 8 Uhr vom Gleis 12 ab.",
    "def embed(texts): return model.encode(texts, normalize_embeddings=True)",
    "Customers who bought this also searched for wireless headphones, chargers and cases; \
     reviews mention battery life, comfort over long flights and how well the noise \
     cancelling works on trains.",
];

/// The lowest cosine between `quantized`'s vectors and `reference`'s on [`CALIBRATION_TEXTS`].
pub fn lowest_cosine(quantized: &EmbeddingModel, reference: &EmbeddingModel) -> Result<f32> {
    let options = EmbedOptions::default();
    let a = quantized.embed(&CALIBRATION_TEXTS, options)?;
    let b = reference.embed(&CALIBRATION_TEXTS, options)?;
    Ok(lowest_between(&a.vectors, &b.vectors))
}

/// The lowest cosine between corresponding vectors of `a` and `b` (a zero vector counts 0).
pub(crate) fn lowest_between(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| cosine(a, b))
        .fold(f32::INFINITY, f32::min)
}

/// Fails unless `lowest` keeps the promise of `promised` for `model`.
pub fn keep_promise(model: &str, lowest: f32, promised: f32) -> Result<()> {
    // A NaN cosine keeps no promise.
    if lowest >= promised {
        Ok(())
    } else {
        Err(EngineError::QuantizationParity {
            model: model.to_string(),
            cosine: lowest,
            promised,
        })
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promise_is_kept_at_or_above_its_cosine_only() {
        assert!(keep_promise("m", 0.995, INT8_MIN_COSINE).is_ok());
        assert!(keep_promise("m", INT8_MIN_COSINE, INT8_MIN_COSINE).is_ok());
        let refused = keep_promise("m", 0.98, INT8_MIN_COSINE).expect_err("below the promise");
        assert!(refused.to_string().contains("0.9800"), "{refused}");
        assert!(refused.to_string().contains("serve it in f32"), "{refused}");
        assert!(keep_promise("m", f32::NAN, INT8_MIN_COSINE).is_err());
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
    }
}
