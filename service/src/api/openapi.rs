//! The OpenAPI document of the REST API, generated from the handlers' `#[utoipa::path]`
//! annotations and the request/response types, served at `GET /openapi.json`.

use std::sync::Arc;

use axum::{
    response::{IntoResponse, Response},
    Extension, Json,
};
use utoipa::{
    openapi::{
        security::{Http, HttpAuthScheme, SecurityScheme},
        OpenApi as Document,
    },
    OpenApi,
};

/// The document's fixed parts; the paths come from the router (see [`super::router`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AkiDB embedding service",
        description = "Sentence embeddings over the v1 API (unchanged for v1.x clients), an \
                       OpenAI-compatible API, health probes and Prometheus metrics.",
    ),
    tags(
        (name = "v1", description = "The v1.x API; errors are plain text"),
        (name = "openai", description = "OpenAI-compatible API; errors in OpenAI's envelope"),
        (name = "health", description = "Liveness and readiness"),
        (name = "observability", description = "Metrics and this document"),
    ),
    modifiers(&BearerKeys),
)]
pub struct ApiDoc;

/// Declares the optional Bearer API keys of the embedding routes.
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The served document, shared by every request.
#[derive(Clone)]
pub struct ServedDocument(pub Arc<Document>);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "observability",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object))
)]
pub async fn document(Extension(doc): Extension<ServedDocument>) -> Response {
    Json(doc.0.as_ref()).into_response()
}
