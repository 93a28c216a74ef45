//! Parity: Candle's vectors for a corpus against a reference, text by text, straight to the
//! services (not through nginx, so the split cannot pick the side).
//!
//! The corpus is a golden-vector file (`items[]` of `{text, tokens, embedding}`, with the
//! `model` and `normalized` it was made with). Against `golden`, Candle embeds each text with
//! that model and normalisation and is compared with the stored vector. Against `legacy`, both
//! services embed each text, unnormalised, with the model the legacy stand-in serves (its only
//! one), so any corpus works as a list of texts.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::{
    rollout::{plan::step::ParityReference, targets::ParityReport},
    stack::traffic::MODEL as LEGACY_MODEL,
};

/// A golden-vector file.
#[derive(Debug, Deserialize)]
pub struct Corpus {
    /// The model that made the vectors (a Hub id).
    pub model: String,
    /// Whether the stored vectors are L2-normalised.
    #[serde(default)]
    pub normalized: bool,
    /// The texts and their reference results.
    pub items: Vec<CorpusItem>,
}

/// One text of a corpus.
#[derive(Debug, Deserialize)]
pub struct CorpusItem {
    /// The input.
    pub text: String,
    /// Tokens the reference counted, special tokens included.
    pub tokens: u64,
    /// The reference vector.
    pub embedding: Vec<f64>,
}

impl Corpus {
    /// Reads a golden-vector file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading parity corpus {}", path.display()))?;
        let corpus: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a golden-vector file", path.display()))?;
        if corpus.items.is_empty() {
            bail!("parity corpus {} has no items", path.display());
        }
        Ok(corpus)
    }
}

/// What one service answered for one text.
#[derive(Debug)]
struct Embedded {
    vector: Vec<f64>,
    tokens: u64,
}

/// The embed API of one service: the legacy v1 route, or for Candle its OpenAI-compatible route,
/// so that parity requests stay out of the `/api/v1/embed` series the gates judge production
/// traffic by.
struct EmbedApi {
    url: String,
    agent: ureq::Agent,
    openai: bool,
}

impl EmbedApi {
    /// `base` is the service's root URL (`http://host:port`).
    fn new(base: &str) -> Self {
        Self {
            url: format!("{}/api/v1/embed", base.trim_end_matches('/')),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
            openai: false,
        }
    }

    fn openai(base: &str) -> Self {
        Self {
            url: format!("{}/v1/embeddings", base.trim_end_matches('/')),
            openai: true,
            ..Self::new(base)
        }
    }

    fn embed(&self, text: &str, model: &str, normalize: bool) -> anyhow::Result<Embedded> {
        let request = if self.openai {
            // The OpenAI route normalises as the model does; cosine does not depend on it.
            serde_json::json!({ "input": [text], "model": model })
        } else {
            serde_json::json!({ "texts": [text], "model": model, "normalize": normalize })
        };
        let response = match self.agent.post(&self.url).send_json(request) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                bail!("{} answered {status} for {text:?}: {body}", self.url);
            }
            Err(error) => bail!("{} cannot be reached: {error}", self.url),
        };
        if self.openai {
            let body: OpenAiResponse = response
                .into_json()
                .with_context(|| format!("reading {}'s answer for {text:?}", self.url))?;
            let first = body
                .data
                .into_iter()
                .next()
                .with_context(|| format!("{} returned no embedding for {text:?}", self.url))?;
            return Ok(Embedded {
                vector: first.embedding,
                tokens: body.usage.prompt_tokens,
            });
        }
        let body: EmbedResponse = response
            .into_json()
            .with_context(|| format!("reading {}'s answer for {text:?}", self.url))?;
        let vector = body
            .embeddings
            .into_iter()
            .next()
            .with_context(|| format!("{} returned no embedding for {text:?}", self.url))?;
        Ok(Embedded {
            vector,
            tokens: body.usage.total_tokens,
        })
    }
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f64>>,
    usage: Usage,
}

#[derive(Deserialize)]
struct Usage {
    total_tokens: u64,
}

#[derive(Deserialize)]
struct OpenAiResponse {
    data: Vec<OpenAiEmbedding>,
    usage: OpenAiUsage,
}

#[derive(Deserialize)]
struct OpenAiEmbedding {
    embedding: Vec<f64>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: u64,
}

/// Where the services listen: root URLs (`http://host:port`), straight to each service.
pub struct Services {
    /// Candle's REST API.
    pub candle: String,
    /// The legacy service's API, when it runs.
    pub legacy: Option<String>,
}

/// A finished parity check.
pub struct ParityRun {
    /// The result.
    pub report: ParityReport,
    /// The model both sides embedded with.
    pub model: String,
}

/// Compares Candle with `against` on every text of `corpus`.
pub fn check(
    services: &Services,
    corpus_path: &Path,
    against: ParityReference,
) -> anyhow::Result<ParityRun> {
    let corpus = Corpus::read(corpus_path)?;
    let candle = EmbedApi::openai(&services.candle);
    let mut report = ParityReport {
        texts: 0,
        min_cosine: 1.0,
        token_mismatches: 0,
    };
    let model = match against {
        ParityReference::Golden => {
            for item in &corpus.items {
                let got = candle.embed(&item.text, &corpus.model, corpus.normalized)?;
                record(&mut report, &got, &item.embedding, item.tokens);
            }
            corpus.model
        }
        ParityReference::Legacy => {
            let base = services
                .legacy
                .as_deref()
                .context("parity against legacy: the legacy service is not running")?;
            let legacy = EmbedApi::new(base);
            for item in &corpus.items {
                let got = candle.embed(&item.text, LEGACY_MODEL, false)?;
                let reference = legacy.embed(&item.text, LEGACY_MODEL, false)?;
                record(&mut report, &got, &reference.vector, reference.tokens);
            }
            LEGACY_MODEL.to_string()
        }
    };
    Ok(ParityRun { report, model })
}

fn record(report: &mut ParityReport, got: &Embedded, reference: &[f64], reference_tokens: u64) {
    report.texts += 1;
    report.min_cosine = report.min_cosine.min(cosine(&got.vector, reference));
    if got.tokens != reference_tokens {
        report.token_mismatches += 1;
    }
}

/// Cosine similarity; vectors of different lengths, or a zero vector, score 0.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm_a = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let norm_b = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot / (norm_a * norm_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_vectors_is_one_and_of_mismatched_lengths_zero() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-12);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn a_corpus_without_items_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.json");
        std::fs::write(&path, r#"{"model":"m","normalized":false,"items":[]}"#).expect("write");
        let error = Corpus::read(&path).expect_err("no items");
        assert!(format!("{error:#}").contains("has no items"), "{error:#}");
    }
}
