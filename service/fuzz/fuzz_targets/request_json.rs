//! Request decoding: any bytes given to the legacy (`POST /api/v1/embed`) and OpenAI
//! (`POST /v1/embeddings`) request types, and to the OpenAI handler's own parsing, must give a
//! value or an error, never a panic.
#![no_main]

use akidb_embed::api::{EmbeddingsRequest, LegacyEmbedRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<LegacyEmbedRequest>(data);
    let _ = serde_json::from_slice::<EmbeddingsRequest>(data);
    // What the handler applies before inference: the error it answers with must be built
    // without panicking either.
    let _ = akidb_embed::api::parse_embeddings_request(data);
});
