//! Tokenization with the model's own `tokenizer.json`, but with the truncation the model needs
//! and no padding: packaged tokenizers often bake in fixed padding (every input 128 tokens) and a
//! truncation length different from the model's `max_seq_length`.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::{EngineError, Result};

/// A tokenizer that truncates at the model's limit and leaves padding to [`TokenBatch`].
pub struct TextTokenizer {
    inner: Tokenizer,
}

/// Token ids of several inputs, padded to the longest of them.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Row-major (batch, seq_len) token ids.
    pub ids: Vec<u32>,
    /// Row-major (batch, seq_len) token type ids.
    pub type_ids: Vec<u32>,
    /// Row-major (batch, seq_len): 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Real tokens of each input, special tokens included.
    pub lengths: Vec<usize>,
    /// Length of the longest input.
    pub seq_len: usize,
}

/// The tokens of one input, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
}

impl TokenRow {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the row has no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl TokenBatch {
    /// Pads `rows` to the longest of them with `pad_id`.
    pub fn from_rows<'a>(
        rows: impl ExactSizeIterator<Item = &'a TokenRow> + Clone,
        pad_id: u32,
    ) -> Self {
        let seq_len = rows.clone().map(TokenRow::len).max().unwrap_or(0);
        let n = rows.len();
        let mut batch = TokenBatch {
            ids: vec![pad_id; n * seq_len],
            type_ids: vec![0; n * seq_len],
            mask: vec![0; n * seq_len],
            lengths: Vec::with_capacity(n),
            seq_len,
        };
        for (i, row) in rows.enumerate() {
            let start = i * seq_len;
            let len = row.len();
            batch.ids[start..start + len].copy_from_slice(&row.ids);
            batch.type_ids[start..start + len].copy_from_slice(&row.type_ids);
            batch.mask[start..start + len].fill(1);
            batch.lengths.push(len);
        }
        batch
    }

    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the batch has no inputs.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating at `max_len` tokens, and checks that it cannot produce
    /// ids beyond the model's `vocab_size`.
    pub fn load(path: &Path, max_len: usize, vocab_size: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| EngineError::invalid(path, e))?;
        let tokenizer_vocab = inner.get_vocab_size(true);
        if tokenizer_vocab > vocab_size {
            return Err(EngineError::VocabularyMismatch {
                path: path.to_path_buf(),
                tokenizer: tokenizer_vocab,
                model: vocab_size,
            });
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| EngineError::invalid(path, e))?;
        Ok(Self { inner })
    }

    /// Tokenizes `texts` (special tokens added, truncated) and pads them to the longest with `pad_id`.
    pub fn encode_batch(&self, texts: &[&str], pad_id: u32) -> Result<TokenBatch> {
        let rows = self.encode_rows(texts)?;
        Ok(TokenBatch::from_rows(rows.iter(), pad_id))
    }

    /// Tokenizes each text on its own (special tokens added, truncated), unpadded.
    pub fn encode_rows(&self, texts: &[&str]) -> Result<Vec<TokenRow>> {
        texts
            .iter()
            .map(|t| {
                self.inner
                    .encode(*t, true)
                    .map(|e| TokenRow {
                        ids: e.get_ids().to_vec(),
                        type_ids: e.get_type_ids().to_vec(),
                    })
                    .map_err(|e| EngineError::Tokenization(e.to_string()))
            })
            .collect()
    }

    /// Number of tokens `text` becomes (special tokens included, after truncation).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        self.inner
            .encode(text, true)
            .map(|e| e.len())
            .map_err(|e| EngineError::Tokenization(e.to_string()))
    }
}
