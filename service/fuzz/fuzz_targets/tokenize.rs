//! Tokenization: any UTF-8 text through the default model's real `tokenizer.json` (the one
//! `cargo xtask models` fetches) gives at most the model's maximum length of ids, all inside
//! its vocabulary, and never panics.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use akidb_embed::engine::tokenizer::TextTokenizer;
use libfuzzer_sys::fuzz_target;

/// all-MiniLM-L6-v2: 512 positions, a 30522-token vocabulary.
const MAX_LEN: usize = 512;
const VOCAB: usize = 30522;

fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = std::env::var_os("AKIDB_FUZZ_TOKENIZER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../models/all-MiniLM-L6-v2/tokenizer.json")
            });
        TextTokenizer::load(&path, MAX_LEN, VOCAB)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tokenizer = tokenizer();
    if let Ok(rows) = tokenizer.encode_rows(&[text]) {
        let row = &rows[0];
        assert!(row.len() <= MAX_LEN, "{} ids", row.len());
        assert!(row.ids.iter().all(|&id| (id as usize) < VOCAB));
        assert_eq!(row.ids.len(), row.type_ids.len());
        if let Ok(count) = tokenizer.count_tokens(text) {
            assert_eq!(count, row.len());
        }
    }
});
